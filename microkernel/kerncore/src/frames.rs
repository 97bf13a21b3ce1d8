//! Physical frame bookkeeping on top of a buddy allocator.
//!
//! Only whole, page-aligned frames inside `Usable` regions (and above a
//! floor that keeps low memory for real-mode trampolines) enter the pool.
//! An allocation is a [`Frames`] token that must be handed back to free it,
//! so a double free does not type-check.

use crate::paging::PAGE_SIZE;
use bootinfo::{MemoryKind, MemoryRegion};
use buddy_system_allocator::FrameAllocator;

/// A run of allocated frames. Deliberately neither `Clone` nor `Copy`.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "dropping a Frames token leaks the frames"]
pub struct Frames {
    start: u64,
    count: usize,
}

impl Frames {
    pub fn start(&self) -> u64 {
        self.start
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn len_bytes(&self) -> u64 {
        self.count as u64 * PAGE_SIZE
    }

    /// Gives up ownership, e.g. for a page table whose frame is tracked by
    /// the table hierarchy itself.
    pub fn leak(self) -> u64 {
        self.start
    }

    /// Takes back ownership of frames given up with [`Frames::leak`]. The
    /// caller vouches that `start`/`count` came from exactly such a leak and
    /// that nothing uses the frames any more.
    pub fn reclaim(start: u64, count: usize) -> Frames {
        Frames { start, count }
    }
}

pub struct FramePool {
    buddy: FrameAllocator<32>,
    total: u64,
    free: u64,
}

impl Default for FramePool {
    fn default() -> Self {
        Self::new()
    }
}

impl FramePool {
    pub const fn new() -> Self {
        FramePool { buddy: FrameAllocator::new(), total: 0, free: 0 }
    }

    /// Adds every whole usable frame at or above `floor`; returns how many.
    pub fn add_usable(&mut self, map: &[MemoryRegion], floor: u64) -> u64 {
        let mut added = 0;
        for region in map.iter().filter(|r| r.kind == MemoryKind::Usable) {
            let start = region.start.max(floor).next_multiple_of(PAGE_SIZE);
            let end = region.end & !(PAGE_SIZE - 1);
            if end <= start {
                continue;
            }
            let (first, last) = ((start / PAGE_SIZE) as usize, (end / PAGE_SIZE) as usize);
            self.buddy.add_frame(first, last);
            added += (last - first) as u64;
        }
        self.total += added;
        self.free += added;
        added
    }

    /// `count` contiguous frames, aligned to `count` rounded up to a power of two.
    pub fn alloc(&mut self, count: usize) -> Option<Frames> {
        if count == 0 {
            return None;
        }
        let first = self.buddy.alloc(count)?;
        let reserved = count.next_power_of_two() as u64;
        self.free -= reserved;
        Some(Frames { start: first as u64 * PAGE_SIZE, count })
    }

    pub fn free(&mut self, frames: Frames) {
        self.buddy.dealloc((frames.start / PAGE_SIZE) as usize, frames.count);
        self.free += frames.count.next_power_of_two() as u64;
    }

    pub fn total_frames(&self) -> u64 {
        self.total
    }

    pub fn free_frames(&self) -> u64 {
        self.free
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MemoryKind::*;

    fn r(start: u64, end: u64, kind: MemoryKind) -> MemoryRegion {
        MemoryRegion::new(start, end, kind)
    }

    fn qemu_like_map() -> [MemoryRegion; 5] {
        [
            r(0, 0x9_fc00, Usable),
            r(0x10_0000, 0x20_0000, Kernel),
            r(0x20_0000, 0x20_0800, Usable), // less than a frame after alignment
            r(0x20_0800, 0x20_5123, Usable), // unaligned on both ends
            r(0x30_0000, 0x40_0000, Usable),
        ]
    }

    #[test]
    fn only_whole_usable_frames_above_the_floor_are_added() {
        let mut pool = FramePool::new();
        let added = pool.add_usable(&qemu_like_map(), 0x10_0000);
        // [0x201000, 0x205000) = 4 frames, [0x300000, 0x400000) = 256 frames.
        assert_eq!(added, 4 + 256);
        assert_eq!(pool.total_frames(), 260);
        assert_eq!(pool.free_frames(), 260);
    }

    #[test]
    fn allocations_stay_inside_usable_memory() {
        let map = qemu_like_map();
        let mut pool = FramePool::new();
        pool.add_usable(&map, 0x10_0000);
        let mut held = std::vec::Vec::new();
        while let Some(f) = pool.alloc(1) {
            let inside = map.iter().any(|r| r.kind == Usable && r.start <= f.start() && f.start() + PAGE_SIZE <= r.end);
            assert!(inside, "frame {:#x} outside usable memory", f.start());
            assert!(f.start() >= 0x10_0000);
            held.push(f);
        }
        assert_eq!(held.len(), 260);
        assert_eq!(pool.free_frames(), 0);
        let mut starts: std::vec::Vec<_> = held.iter().map(Frames::start).collect();
        starts.sort_unstable();
        starts.dedup();
        assert_eq!(starts.len(), 260, "no frame handed out twice");
        for f in held {
            pool.free(f);
        }
        assert_eq!(pool.free_frames(), 260);
    }

    #[test]
    fn multi_frame_allocations_are_aligned_and_accounted() {
        let mut pool = FramePool::new();
        pool.add_usable(&[r(0x40_0000, 0x80_0000, Usable)], 0);
        let f = pool.alloc(3).unwrap();
        assert_eq!(f.start() % (4 * PAGE_SIZE), 0);
        assert_eq!(f.len_bytes(), 3 * PAGE_SIZE);
        assert_eq!(pool.free_frames(), 1024 - 4);
        pool.free(f);
        assert_eq!(pool.free_frames(), 1024);
        // After freeing, the buddies merged: the largest block is available again.
        let all = pool.alloc(1024).unwrap();
        assert_eq!(all.start(), 0x40_0000);
    }

    #[test]
    fn exhaustion_and_zero_requests_return_none() {
        let mut pool = FramePool::new();
        assert!(pool.alloc(1).is_none());
        pool.add_usable(&[r(0, 0x2000, Usable)], 0);
        assert!(pool.alloc(0).is_none());
        assert!(pool.alloc(4).is_none());
        assert!(pool.alloc(2).is_some());
        assert!(pool.alloc(1).is_none());
    }
}
