//! Building the kernel's initial address space: its ELF segments with their
//! own rights, a boot stack under a guard page, and the NX direct map of
//! physical memory. All frames come from one bump arena, so the kernel can be
//! told exactly which physical range the loader used on its behalf.

use crate::PhysMemory;
use bootinfo::{DIRECT_MAP_BASE, KERNEL_STACK_SIZE, KERNEL_STACK_TOP, MemoryRegion};
use elfload::ElfError;
use kerncore::memmap;
use kerncore::paging::{MapError, MapFlags, Mapper, PAGE_SIZE, PageTableMemory};

/// Write access to physical memory.
pub trait PhysMemoryMut {
    fn bytes_mut(&mut self, addr: u64, len: u64) -> Option<&mut [u8]>;
}

/// A bump allocator over `[start, end)` that zeroes what it hands out.
pub struct Arena<M: PhysMemory + PhysMemoryMut> {
    mem: M,
    start: u64,
    next: u64,
    end: u64,
}

impl<M: PhysMemory + PhysMemoryMut> Arena<M> {
    pub fn new(mem: M, start: u64, end: u64) -> Self {
        let start = start.next_multiple_of(PAGE_SIZE);
        Arena { mem, start, next: start, end }
    }

    /// `len` bytes (rounded up to pages), zeroed.
    pub fn alloc(&mut self, len: u64) -> Option<u64> {
        let len = len.checked_next_multiple_of(PAGE_SIZE)?;
        let at = self.next;
        let next = at.checked_add(len)?;
        if next > self.end {
            return None;
        }
        self.mem.bytes_mut(at, len)?.fill(0);
        self.next = next;
        Some(at)
    }

    /// Read access to the memory behind the arena.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// The range handed out so far.
    pub fn used(&self) -> (u64, u64) {
        (self.start, self.next)
    }

    pub fn write(&mut self, addr: u64, bytes: &[u8]) -> Option<()> {
        self.mem.bytes_mut(addr, bytes.len() as u64)?.copy_from_slice(bytes);
        Some(())
    }
}

impl<M: PhysMemory + PhysMemoryMut> PageTableMemory for Arena<M> {
    fn alloc_table(&mut self) -> Option<u64> {
        self.alloc(PAGE_SIZE)
    }

    fn read_entry(&self, table: u64, index: usize) -> u64 {
        // Only tables this arena allocated are walked, so the read succeeds.
        let at = table + 8 * index as u64;
        self.mem.u64_at(at).unwrap_or(0)
    }

    fn write_entry(&mut self, table: u64, index: usize, value: u64) {
        let at = table + 8 * index as u64;
        if let Some(slot) = self.mem.bytes_mut(at, 8) {
            slot.copy_from_slice(&value.to_le_bytes());
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// The kernel ELF is malformed, or a segment is W+X or outside the top 2 GiB.
    Elf(ElfError),
    OutOfMemory,
    Map(MapError),
}

impl From<MapError> for LoadError {
    fn from(e: MapError) -> Self {
        match e {
            MapError::OutOfMemory => LoadError::OutOfMemory,
            other => LoadError::Map(other),
        }
    }
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LoadError::Elf(e) => write!(f, "bad kernel ELF: {e}"),
            LoadError::OutOfMemory => write!(f, "out of memory while loading the kernel"),
            LoadError::Map(e) => write!(f, "mapping failed: {e:?}"),
        }
    }
}

const KERNEL_SPACE: u64 = 0xffff_ffff_8000_0000;

/// Where the kernel ended up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadedKernel {
    pub entry: u64,
    pub root: u64,
    pub stack_top: u64,
    /// Number of PT_LOAD segments mapped.
    pub segments: usize,
}

/// Loads `elf` into frames from `arena` and maps it, with a boot stack,
/// into a new hierarchy. The direct map is added by [`map_direct`].
pub fn load_kernel<M: PhysMemory + PhysMemoryMut>(arena: &mut Arena<M>, elf: &[u8]) -> Result<LoadedKernel, LoadError> {
    let image = elfload::plan(elf, KERNEL_SPACE..u64::MAX).map_err(LoadError::Elf)?;
    let root = Mapper::new_root(arena)?;
    for segment in &image.segments {
        let len = segment.pages * PAGE_SIZE;
        let phys = arena.alloc(len).ok_or(LoadError::OutOfMemory)?;
        arena.write(phys + segment.offset_in_page, segment.data).ok_or(LoadError::OutOfMemory)?;
        let mut mapper = Mapper::new(arena, root);
        mapper.large_pages = false;
        mapper.map(segment.start, phys, len, MapFlags::kernel(segment.writable, segment.executable))?;
    }
    let stack = arena.alloc(KERNEL_STACK_SIZE).ok_or(LoadError::OutOfMemory)?;
    let mut mapper = Mapper::new(arena, root);
    mapper.map(KERNEL_STACK_TOP - KERNEL_STACK_SIZE, stack, KERNEL_STACK_SIZE, MapFlags::KERNEL_DATA)?;
    Ok(LoadedKernel { entry: image.entry, root, stack_top: KERNEL_STACK_TOP, segments: image.segments.len() })
}

/// Maps the physical spans [`memmap::direct_map_spans`] selects into the
/// direct map, read-write and never executable. Returns the end of the
/// highest byte covered.
pub fn map_direct<M: PhysMemory + PhysMemoryMut>(
    arena: &mut Arena<M>,
    root: u64,
    map: &[MemoryRegion],
) -> Result<u64, LoadError> {
    let spans =
        memmap::direct_map_spans::<{ bootinfo::MAX_MEMORY_REGIONS }>(map).map_err(|_| LoadError::OutOfMemory)?;
    let mut mapper = Mapper::new(arena, root);
    for &(start, end) in &spans {
        mapper.map(DIRECT_MAP_BASE + start, start, end - start, MapFlags::KERNEL_DATA)?;
    }
    Ok(spans.last().map_or(0, |s| s.1))
}

#[cfg(test)]
mod tests;
