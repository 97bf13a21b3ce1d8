//! Physical frame bookkeeping on top of a buddy allocator.
//!
//! Only whole, page-aligned frames inside `Usable` regions (and above a
//! floor that keeps low memory for real-mode trampolines) enter the pool.
//! An allocation is a [`Frames`] token that must be handed back to free it,
//! so a double free does not type-check.
//!
//! A memory object is not one allocation but [`Runs`]: the pool's free
//! blocks, largest first ([`FramePool::alloc_runs`]), so an object of N
//! pages costs N frames (not the next power of two) and needs no free
//! contiguous memory of its size: fragmentation stops an object only when
//! it would take more than [`MAX_RUNS`] pieces.

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

/// Most runs one memory object is made of.
pub const MAX_RUNS: usize = abi::limits::MEMORY_RUNS;
// A run list of the largest partition RAM, unfragmented, is its binary
// digits: at most one run per bit of a page count below 2^32.
const _: () = assert!(MAX_RUNS >= 2 && MAX_RUNS <= 64);

/// The frames of one memory object: runs of contiguous frames, in the
/// object's page order (page 0 is the first run's first frame). Neither
/// `Clone` nor `Copy`: it owns its frames as [`Frames`] does.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "dropping Runs leaks their frames"]
pub struct Runs {
    runs: heapless::Vec<Frames, MAX_RUNS>,
    pages: u64,
}

impl Runs {
    /// One run (e.g. a boot module the kernel does not own).
    pub fn single(frames: Frames) -> Runs {
        let pages = frames.count as u64;
        let mut runs = heapless::Vec::new();
        // One run always fits (MAX_RUNS >= 2).
        let _ = runs.push(frames);
        Runs { runs, pages }
    }

    /// Pages in all runs.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// How many runs.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The runs, in page order.
    pub fn runs(&self) -> &[Frames] {
        &self.runs
    }

    /// The physically contiguous pieces of pages `offset..offset + pages`,
    /// as (physical address, pages), in page order. A range past the end
    /// yields only what lies inside.
    pub fn segments(&self, offset: u64, pages: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let end = offset.saturating_add(pages);
        let mut first = 0u64;
        self.runs.iter().filter_map(move |run| {
            let (run_first, run_end) = (first, first + run.count as u64);
            first = run_end;
            let (from, to) = (offset.max(run_first), end.min(run_end));
            (from < to).then(|| (run.start + (from - run_first) * PAGE_SIZE, to - from))
        })
    }

    /// The physical address of byte `offset` of the object, and how many
    /// bytes from there are contiguous (to the end of its run).
    pub fn phys(&self, offset: u64) -> Option<(u64, u64)> {
        let (page, within) = (offset / PAGE_SIZE, offset % PAGE_SIZE);
        let (phys, pages) = self.segments(page, u64::MAX).next()?;
        Some((phys + within, pages * PAGE_SIZE - within))
    }

    /// Gives the runs up, to free or leak each.
    pub fn into_frames(self) -> impl Iterator<Item = Frames> {
        self.runs.into_iter()
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

    /// `pages` frames as [`Runs`]: the largest power of two that fits what
    /// is left, halved while no such block is free, until all are taken.
    /// `None` (and nothing taken) if the pool has fewer free frames or they
    /// are in more than [`MAX_RUNS`] pieces.
    pub fn alloc_runs(&mut self, pages: usize) -> Option<Runs> {
        if pages == 0 || pages as u64 > self.free {
            return None;
        }
        let mut runs = Runs { runs: heapless::Vec::new(), pages: pages as u64 };
        let mut left = pages;
        let mut size = prev_power_of_two(left);
        while left > 0 {
            // A block this large is not free, so no larger one is: the
            // size only shrinks.
            let run = if runs.runs.is_full() { None } else { self.alloc(size) };
            match run {
                Some(run) => {
                    left -= size;
                    // Checked not full above.
                    let _ = runs.runs.push(run);
                    if left > 0 {
                        size = size.min(prev_power_of_two(left));
                    }
                }
                None if size > 1 && !runs.runs.is_full() => size /= 2,
                None => {
                    self.free_runs(runs);
                    return None;
                }
            }
        }
        Some(runs)
    }

    /// Gives back every run.
    pub fn free_runs(&mut self, runs: Runs) {
        for run in runs.into_frames() {
            self.free(run);
        }
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

/// The largest power of two not above `n` (n > 0).
fn prev_power_of_two(n: usize) -> usize {
    1 << (usize::BITS - 1 - n.leading_zeros())
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

    /// Every page of `runs` in order, by physical address.
    fn pages_of(runs: &Runs) -> std::vec::Vec<u64> {
        runs.segments(0, runs.pages()).flat_map(|(phys, n)| (0..n).map(move |i| phys + i * PAGE_SIZE)).collect()
    }

    #[test]
    fn runs_cost_their_pages_not_the_next_power_of_two() {
        let mut pool = FramePool::new();
        pool.add_usable(&[r(0, 1024 * PAGE_SIZE, Usable)], 0);
        // 3 GiB is to 4 GiB what 768 pages are to 1024: two runs, and the
        // rest stays free.
        let runs = pool.alloc_runs(768).unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs.pages(), 768);
        assert_eq!(pool.free_frames(), 256);
        let pages = pages_of(&runs);
        assert_eq!(pages.len(), 768);
        let mut distinct = pages.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 768);
        // Each run is aligned to its size.
        for run in runs.runs() {
            assert!(run.count().is_power_of_two());
            assert_eq!(run.start() % (run.count() as u64 * PAGE_SIZE), 0);
        }
        pool.free_runs(runs);
        assert_eq!(pool.free_frames(), 1024);
        assert_eq!(pool.alloc(1024).unwrap().start(), 0, "the buddies merged again");
    }

    #[test]
    fn segments_and_phys_follow_the_page_order() {
        let mut pool = FramePool::new();
        pool.add_usable(&[r(0, 64 * PAGE_SIZE, Usable)], 0);
        let runs = pool.alloc_runs(7).unwrap();
        let pages = pages_of(&runs);
        for offset in 0..7u64 {
            for count in 0..=7 - offset {
                let got: std::vec::Vec<u64> = runs
                    .segments(offset, count)
                    .flat_map(|(phys, n)| (0..n).map(move |i| phys + i * PAGE_SIZE))
                    .collect();
                assert_eq!(got, pages[offset as usize..(offset + count) as usize]);
            }
            let (phys, left) = runs.phys(offset * PAGE_SIZE + 5).unwrap();
            assert_eq!(phys, pages[offset as usize] + 5);
            assert!(left > 0 && left % PAGE_SIZE == PAGE_SIZE - 5);
        }
        assert!(runs.phys(7 * PAGE_SIZE).is_none());
        assert_eq!(runs.segments(5, 100).map(|(_, n)| n).sum::<u64>(), 2, "clipped at the end");
        pool.free_runs(runs);
    }

    #[test]
    fn fragmented_free_memory_still_makes_an_object_of_most_of_it() {
        let mut pool = FramePool::new();
        pool.add_usable(&[r(0, 4096 * PAGE_SIZE, Usable)], 0);
        let mut rng = fastrand::Rng::with_seed(15);
        // Lifetimes of mixed sizes: allocate, keep some, free others.
        let mut live: std::vec::Vec<Runs> = std::vec::Vec::new();
        for _ in 0..50 {
            let size = [1, 3, 17, 64, 100, 255, 300][rng.usize(..7)];
            if let Some(runs) = pool.alloc_runs(size) {
                live.push(runs);
            }
            if live.len() > 6 {
                let victim = live.swap_remove(rng.usize(..live.len()));
                pool.free_runs(victim);
            }
        }
        let free = pool.free_frames() as usize;
        // The largest free block is well short of it...
        assert!(pool.alloc(free * 4 / 5).is_none());
        // ...but the pieces make it.
        let big = pool.alloc_runs(free * 4 / 5).expect("80% of free memory in runs");
        assert_eq!(pool.free_frames() as usize, free - free * 4 / 5);
        pool.free_runs(big);
        for runs in live {
            pool.free_runs(runs);
        }
        assert_eq!(pool.free_frames(), 4096, "every frame came back");
    }

    #[test]
    fn too_many_pieces_or_too_few_frames_take_nothing() {
        let mut pool = FramePool::new();
        pool.add_usable(&[r(0, 256 * PAGE_SIZE, Usable)], 0);
        assert!(pool.alloc_runs(257).is_none());
        assert!(pool.alloc_runs(0).is_none());
        // Keep every other frame: the free memory is 128 single frames.
        let all: std::vec::Vec<Frames> = (0..256).map(|_| pool.alloc(1).unwrap()).collect();
        let mut kept = std::vec::Vec::new();
        for (i, f) in all.into_iter().enumerate() {
            if i % 2 == 0 { pool.free(f) } else { kept.push(f) }
        }
        assert_eq!(pool.free_frames(), 128);
        assert!(pool.alloc_runs(MAX_RUNS + 1).is_none());
        assert_eq!(pool.free_frames(), 128, "a refused object gives back what it took");
        let most = pool.alloc_runs(MAX_RUNS).unwrap();
        assert_eq!(most.len(), MAX_RUNS);
        pool.free_runs(most);
        for f in kept {
            pool.free(f);
        }
        assert_eq!(pool.free_frames(), 256);
    }
}
