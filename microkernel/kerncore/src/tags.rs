//! TLB tags (SVM ASIDs, VMX VPIDs) per VP, handed out per CPU a generation
//! at a time, as KVM does.
//!
//! Each CPU has a [`TagPool`]: tags `1..limit` in order. A VP keeps the tag
//! it got on a CPU for as long as it stays there and that CPU's generation
//! lasts; a VP that needs its TLB entries gone (its partition's mappings
//! changed, the guest asked for a flush, it came from another CPU) takes a
//! fresh tag instead of flushing. When a CPU runs out of tags it starts a
//! new generation: every VP there takes a fresh tag at its next entry. The
//! entry that starts it flushes every tag of the CPU (SVM; VMX with
//! all-context INVVPID), or each tag is flushed as it is handed out again
//! (VMX with single-context INVVPID only): either way no entry cached
//! under a tag reaches another VP.
//!
//! So two VPs never share a tag on a CPU, and a tag a VP gets holds no
//! translations but its own.

/// A CPU's tags.
#[derive(Clone, Copy, Debug)]
pub struct TagPool {
    /// The next tag to hand out.
    next: u32,
    /// One past the highest tag (the hardware's count: ASID 0 and VPID 0
    /// are the host's).
    limit: u32,
    /// Starts at 1: a [`VpTag`] of generation 0 is no tag.
    generation: u64,
}

/// What a VP holds: its tag on the CPU it last ran on, and the
/// generation it was handed out in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VpTag {
    pub tag: u32,
    generation: u64,
}

/// The tag a VP enters with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub tag: u32,
    /// A new generation began: flushing every tag now makes every tag of
    /// this generation clean when it is handed out.
    pub flush_all: bool,
    /// The tag was handed out before, in an earlier generation: without
    /// `flush_all` at the start of this one, flush this tag now.
    pub reused: bool,
}

impl TagPool {
    /// Tags `1..limit`; a `limit` below 2 (no tags to hand out) acts as 2:
    /// every entry then starts a generation and flushes everything.
    pub const fn new(limit: u32) -> TagPool {
        TagPool { next: 1, limit: if limit < 2 { 2 } else { limit }, generation: 1 }
    }

    /// The tag for `vp`'s entry on this pool's CPU: the one it holds if it
    /// got it here in this generation and `fresh` is false, else a new one.
    /// `vp` must be the tag the VP got on this CPU (a VP that moved passes
    /// `fresh`).
    pub fn enter(&mut self, vp: &mut VpTag, fresh: bool) -> Entry {
        if !fresh && vp.generation == self.generation {
            return Entry { tag: vp.tag, flush_all: false, reused: false };
        }
        let mut flush_all = false;
        if self.next >= self.limit {
            self.generation += 1;
            self.next = 1;
            flush_all = true;
        }
        *vp = VpTag { tag: self.next, generation: self.generation };
        self.next += 1;
        Entry { tag: vp.tag, flush_all, reused: self.generation > 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vp_keeps_its_tag_until_it_needs_a_fresh_one() {
        let mut pool = TagPool::new(16);
        let (mut a, mut b) = (VpTag::default(), VpTag::default());
        let clean = |tag| Entry { tag, flush_all: false, reused: false };
        assert_eq!(pool.enter(&mut a, false), clean(1));
        assert_eq!(pool.enter(&mut b, false), clean(2));
        assert_eq!(pool.enter(&mut a, false), clean(1));
        assert_eq!(pool.enter(&mut a, true), clean(3));
        assert_eq!(pool.enter(&mut a, false), clean(3));
    }

    #[test]
    fn running_out_starts_a_generation_that_flushes_once_and_renews_everyone() {
        let mut pool = TagPool::new(4);
        let mut vps = [VpTag::default(); 3];
        for (i, vp) in vps.iter_mut().enumerate() {
            assert_eq!(pool.enter(vp, false).tag, i as u32 + 1);
        }
        let wrapped = pool.enter(&mut vps[0], true);
        assert_eq!(wrapped, Entry { tag: 1, flush_all: true, reused: true });
        // The others held tags of the old generation: fresh ones, reused
        // (clean already if the first entry flushed all).
        assert_eq!(pool.enter(&mut vps[1], false), Entry { tag: 2, flush_all: false, reused: true });
        assert_eq!(pool.enter(&mut vps[2], false), Entry { tag: 3, flush_all: false, reused: true });
        // Held in this generation: kept, nothing to flush.
        assert_eq!(pool.enter(&mut vps[2], false), Entry { tag: 3, flush_all: false, reused: false });
    }

    #[test]
    fn no_two_vps_hold_one_tag_in_a_generation() {
        // Any sequence of entries: within a generation each tag is handed
        // out once, and a VP's tag is always of the current generation.
        let mut pool = TagPool::new(5);
        let mut vps = [VpTag::default(); 7];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..10_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed % 7) as usize;
            let fresh = seed & 0x100 != 0;
            pool.enter(&mut vps[i], fresh);
            let current: std::vec::Vec<u32> =
                vps.iter().filter(|v| v.generation == pool.generation).map(|v| v.tag).collect();
            let mut sorted = current.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), current.len(), "a tag held twice: {vps:?}");
            assert!(current.iter().all(|&t| (1..5).contains(&t)));
        }
    }

    #[test]
    fn a_pool_without_tags_flushes_at_every_new_entry() {
        let mut pool = TagPool::new(0);
        let mut a = VpTag::default();
        assert_eq!(pool.enter(&mut a, false), Entry { tag: 1, flush_all: false, reused: false });
        assert_eq!(pool.enter(&mut a, true), Entry { tag: 1, flush_all: true, reused: true });
    }
}
