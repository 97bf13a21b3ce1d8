//! The port reads ring 0 answers for a partition's VID without an exit: a
//! set of floating ports, which nothing claims, answered as an empty ISA
//! bus does (reads all ones, writes dropped; `PARTITION_SET_FLOATING_PORTS`),
//! and a few latched byte reads (`PARTITION_LATCH_PORT`). The VID says
//! which; ring 0 only looks them up.

use abi::limits::MAX_LATCHED_PORTS;

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
}
