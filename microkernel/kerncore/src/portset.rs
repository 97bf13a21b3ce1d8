//! The port reads ring 0 answers for a partition's VID without an exit: a
//! set of floating ports, which nothing claims, answered as an empty ISA
//! bus does (reads all ones, writes dropped; `PARTITION_SET_FLOATING_PORTS`),
//! a few latched byte reads (`PARTITION_LATCH_PORT`), and the byte
//! writes ring 0 keeps for the VID to take later, in order (posted writes,
//! `PARTITION_POST_PORT`). The VID says which; ring 0 only looks them up.

use abi::limits::{MAX_LATCHED_PORTS, MAX_POSTED_PORTS, MAX_POSTED_WRITES};

/// Ports in the x86 I/O space.
pub const PORTS: u32 = 1 << 16;

const WORDS: usize = (PORTS / 64) as usize;

#[derive(Clone, PartialEq, Eq)]
pub struct PortSet([u64; WORDS]);

impl PortSet {
    pub const EMPTY: PortSet = PortSet([0; WORDS]);

    /// Adds (`on`) or removes ports `first..first + count`; `None` (and
    /// nothing changed) if that range leaves the I/O space or is empty.
    pub fn set(&mut self, first: u32, count: u32, on: bool) -> Option<()> {
        let end = first.checked_add(count).filter(|&end| count != 0 && end <= PORTS)?;
        // A word at a time (at most 1,024 under the kernel lock): each
        // word's bits from `first` up to `end`.
        let mut port = first;
        while port < end {
            let (word, bit) = ((port / 64) as usize, port % 64);
            let bits = (end - port).min(64 - bit);
            let mask = if bits == 64 { u64::MAX } else { ((1u64 << bits) - 1) << bit };
            if on {
                self.0[word] |= mask;
            } else {
                self.0[word] &= !mask;
            }
            port += bits;
        }
        Some(())
    }

    /// True if every port of an access of `size` bytes at `port` is in the
    /// set (an access that would wrap past 0xFFFF is not).
    pub fn holds(&self, port: u16, size: u8) -> bool {
        let first = u32::from(port);
        (first..first + u32::from(size)).all(|p| p < PORTS && self.0[(p / 64) as usize] & (1 << (p % 64)) != 0)
    }
}

/// Ports whose byte reads answer a fixed value, at most
/// [`MAX_LATCHED_PORTS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortLatches([Option<(u16, u8)>; MAX_LATCHED_PORTS]);

impl PortLatches {
    pub const NONE: PortLatches = PortLatches([None; MAX_LATCHED_PORTS]);

    /// Latches `port` at `value`, or ends its latch (`None`); `None` back
    /// if a new latch finds no room (nothing changed).
    pub fn set(&mut self, port: u16, value: Option<u8>) -> Option<()> {
        let at = self.0.iter().position(|l| l.is_some_and(|(p, _)| p == port));
        match (at, value) {
            (Some(i), Some(v)) => self.0[i] = Some((port, v)),
            (Some(i), None) => self.0[i] = None,
            (None, Some(v)) => *self.0.iter_mut().find(|l| l.is_none())? = Some((port, v)),
            (None, None) => {}
        }
        Some(())
    }

    /// The value a byte read of `port` answers, if latched.
    pub fn byte(&self, port: u16) -> Option<u8> {
        self.0.iter().flatten().find(|&&(p, _)| p == port).map(|&(_, v)| v)
    }
}

/// A partition's posted ports and the byte writes to them that its VID
/// has not drained yet, oldest first, at most [`MAX_POSTED_WRITES`].
///
/// Writes are kept only while the buffer is *open*: the first write to a
/// posted port after the VID found the buffer empty (or changed a post)
/// exits, which opens it, so the VID always knows when writes may be
/// waiting and drains them by its own deadline even if the guest never
/// exits again. A drain that finds nothing closes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostedWrites {
    ports: [Option<u16>; MAX_POSTED_PORTS],
    writes: [(u16, u8); MAX_POSTED_WRITES],
    len: usize,
    open: bool,
}

impl PostedWrites {
    pub const NONE: PostedWrites =
        PostedWrites { ports: [None; MAX_POSTED_PORTS], writes: [(0, 0); MAX_POSTED_WRITES], len: 0, open: false };

    /// Posts writes to `port` (`on`) or not; `None` back if a new port
    /// finds no room (nothing changed). What was posted stays; the buffer
    /// closes (the next posted write exits).
    pub fn post(&mut self, port: u16, on: bool) -> Option<()> {
        let at = self.ports.iter().position(|&p| p == Some(port));
        match (at, on) {
            (Some(i), false) => self.ports[i] = None,
            (None, true) => *self.ports.iter_mut().find(|p| p.is_none())? = Some(port),
            _ => {}
        }
        self.open = false;
        Some(())
    }

    /// Whether byte writes to `port` are posted (kept while there is room).
    pub fn posts(&self, port: u16) -> bool {
        self.ports.contains(&Some(port))
    }

    /// Keeps a byte write of `value` to `port` if that port is posted, the
    /// buffer open and there is room: true if kept (the write is done),
    /// false if it must exit as any other write (a posted port's write
    /// that exits opens the buffer).
    pub fn write(&mut self, port: u16, value: u8) -> bool {
        if !self.posts(port) {
            return false;
        }
        if !self.open || self.len == MAX_POSTED_WRITES {
            self.open = true;
            return false;
        }
        self.writes[self.len] = (port, value);
        self.len += 1;
        true
    }

    /// The writes kept, oldest first.
    pub fn pending(&self) -> &[(u16, u8)] {
        &self.writes[..self.len]
    }

    /// Takes the writes kept into `words` as `PARTITION_DRAIN_POSTED`
    /// replies: their count, then two a word (`port << 8 | byte`, the
    /// first in the low half); the words used back.
    pub fn drain(&mut self, words: &mut [u64; 1 + MAX_POSTED_WRITES / 2]) -> usize {
        let n = core::mem::take(&mut self.len);
        self.open = n != 0;
        words[0] = n as u64;
        for (word, pair) in words[1..].iter_mut().zip(self.writes[..n].chunks(2)) {
            let entry = |&(port, byte): &(u16, u8)| u64::from(port) << 8 | u64::from(byte);
            *word = pair.iter().rev().fold(0, |acc, w| acc << 32 | entry(w));
        }
        1 + n.div_ceil(2)
    }
}

/// The writes in the words a `PARTITION_DRAIN_POSTED` replied (`words[0]`
/// their count), oldest first, as (port, byte): at most as many as the
/// words hold.
pub fn drained(words: &[u64]) -> impl Iterator<Item = (u16, u8)> + '_ {
    let n = words.first().map_or(0, |&n| usize::try_from(n).unwrap_or(usize::MAX));
    words.iter().skip(1).flat_map(|&w| [w as u32, (w >> 32) as u32]).take(n).map(|e| ((e >> 8) as u16, e as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_go_in_and_out_whole() {
        let mut s = PortSet::EMPTY;
        assert_eq!(s.set(0xcf8, 8, true), Some(()));
        assert!(s.holds(0xcf8, 4) && s.holds(0xcfc, 4) && s.holds(0xcff, 1));
        assert!(!s.holds(0xcf7, 1) && !s.holds(0xcfe, 4), "an access reaching past the set is not held");
        assert_eq!(s.set(0xcfa, 1, false), Some(()));
        assert!(!s.holds(0xcf8, 4) && s.holds(0xcfb, 1));
    }

    #[test]
    fn word_at_a_time_matches_port_at_a_time() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut s = PortSet::EMPTY;
        let mut model = std::vec![false; PORTS as usize];
        for _ in 0..2000 {
            let first = rng.u32(0..PORTS);
            let count = rng.u32(1..=(PORTS - first).min(300));
            let on = rng.bool();
            s.set(first, count, on).unwrap();
            model[first as usize..(first + count) as usize].fill(on);
        }
        assert!((0..PORTS).all(|p| s.holds(p as u16, 1) == model[p as usize]));
        s.set(0, PORTS, true).unwrap();
        assert!(s.holds(0, 4) && s.holds(0xffff, 1));
    }

    #[test]
    fn latches_take_a_port_each_up_to_the_limit() {
        let mut l = PortLatches::NONE;
        assert_eq!(l.set(0x3fd, Some(0x60)), Some(()));
        assert_eq!(l.byte(0x3fd), Some(0x60));
        assert_eq!(l.set(0x3fd, Some(0x61)), Some(()));
        assert_eq!(l.byte(0x3fd), Some(0x61), "a port has one latch");
        for port in 1..MAX_LATCHED_PORTS as u16 {
            assert_eq!(l.set(port, Some(0)), Some(()));
        }
        let full = l;
        assert_eq!(l.set(0x80, Some(1)), None);
        assert_eq!(l, full, "a latch that finds no room changes nothing");
        assert_eq!(l.set(0x3fd, None), Some(()));
        assert_eq!(l.byte(0x3fd), None);
        assert_eq!(l.set(0x3fd, None), Some(()), "ending no latch is no error");
    }

    #[test]
    fn bad_ranges_change_nothing() {
        let mut s = PortSet::EMPTY;
        assert_eq!(s.set(0xffff, 2, true), None);
        assert_eq!(s.set(0, 0, true), None);
        assert_eq!(s.set(u32::MAX, 2, true), None);
        assert!(s == PortSet::EMPTY);
        assert_eq!(s.set(0xfffe, 2, true), Some(()));
        assert!(s.holds(0xfffe, 2) && !s.holds(0xffff, 2), "no wrap past the last port");
    }

    #[test]
    fn posted_writes_keep_their_order_until_full() {
        let mut w = PostedWrites::NONE;
        assert!(!w.write(0x3f8, b'x'), "an unposted port exits");
        assert_eq!(w.post(0x3f8, true), Some(()));
        assert!(w.posts(0x3f8) && !w.posts(0x3f9));
        assert_eq!(w.post(0x2f8, true), Some(()));
        assert!(!w.write(0x3f8, b'o'), "the first posted write exits: it opens the buffer");
        let text: std::vec::Vec<(u16, u8)> =
            (0..MAX_POSTED_WRITES).map(|i| (if i % 7 == 3 { 0x2f8 } else { 0x3f8 }, i as u8)).collect();
        for &(port, b) in &text {
            assert!(w.write(port, b));
        }
        assert!(!w.write(0x3f8, b'!'), "a full buffer makes the write exit");
        assert_eq!(w.pending(), &text[..]);
        let mut words = [0; 1 + MAX_POSTED_WRITES / 2];
        let used = w.drain(&mut words);
        assert_eq!(used, 1 + MAX_POSTED_WRITES / 2);
        assert_eq!(drained(&words[..used]).collect::<std::vec::Vec<_>>(), text);
        assert!(w.pending().is_empty(), "a drain empties it");
        assert!(w.write(0x3f8, b'a') && w.write(0x3f8, b'b') && w.write(0x2f8, b'c'));
        let used = w.drain(&mut words);
        assert_eq!(used, 3, "three writes take two words after the count");
        assert_eq!(
            drained(&words[..used]).collect::<std::vec::Vec<_>>(),
            [(0x3f8, b'a'), (0x3f8, b'b'), (0x2f8, b'c')]
        );
        assert_eq!(w.drain(&mut words), 1);
        assert_eq!(words[0], 0, "nothing kept, nothing drained");
        assert!(!w.write(0x3f8, b'z'), "a drain that found nothing closed it: the next write exits");
        assert!(w.write(0x3f8, b'z'), "and opened it again");
    }

    /// Every kept write follows, since the buffer was last found empty or
    /// a post changed, a write that exited: the VID learns of each burst.
    #[test]
    fn a_burst_starts_with_a_write_that_exits() {
        let mut w = PostedWrites::NONE;
        let mut words = [0; 1 + MAX_POSTED_WRITES / 2];
        w.post(0x3f8, true).unwrap();
        assert!(!w.write(0x3f8, 1) && w.write(0x3f8, 2));
        w.post(0x3f9, true).unwrap();
        assert!(!w.write(0x3f8, 3), "a post closes it");
        assert!(w.write(0x3f8, 4));
        assert_eq!(w.drain(&mut words), 2, "2 and 4 were kept");
        assert!(w.write(0x3f8, 5), "a drain that took writes leaves it open");
        w.drain(&mut words);
        assert_eq!(w.drain(&mut words), 1);
        assert!(!w.write(0x3f8, 6), "an empty drain closed it");
    }

    #[test]
    fn ending_a_post_keeps_what_was_posted() {
        let mut w = PostedWrites::NONE;
        w.post(0x3f8, true).unwrap();
        assert!(!w.write(0x3f8, 0) && w.write(0x3f8, 1));
        w.post(0x3f8, false).unwrap();
        assert!(!w.write(0x3f8, 2), "no longer posted: it exits");
        assert_eq!(w.pending(), &[(0x3f8, 1)]);
        w.post(0x3f8, false).unwrap();
        assert_eq!(w.post(0x3f8, true), Some(()));
        assert_eq!(w.post(0x3f8, true), Some(()), "posting twice takes one place");
        for port in 1..MAX_POSTED_PORTS as u16 {
            assert_eq!(w.post(port, true), Some(()));
        }
        let full = w;
        assert_eq!(w.post(0x81, true), None);
        assert_eq!(w, full, "a post that finds no room changes nothing");
        w = PostedWrites::NONE;
        assert!(w.pending().is_empty() && !w.write(0x3f8, 3), "cleared: nothing posted, nothing kept");
    }

    #[test]
    fn drained_reads_no_more_than_the_words_hold() {
        assert_eq!(drained(&[]).count(), 0);
        assert_eq!(drained(&[5, 0x0003_f862_0003_f861]).collect::<std::vec::Vec<_>>(), [(0x3f8, b'a'), (0x3f8, b'b')]);
    }
}
