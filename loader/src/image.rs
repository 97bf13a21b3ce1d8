//! Building the kernel's initial address space: its ELF segments with their
//! own rights, a boot stack under a guard page, and the NX direct map of
//! physical memory. All frames come from one bump arena, so the kernel can be
//! told exactly which physical range the loader used on its behalf.

use crate::PhysMemory;
use bootinfo::{DIRECT_MAP_BASE, KERNEL_STACK_SIZE, KERNEL_STACK_TOP, MemoryRegion};
use kerncore::memmap;
use kerncore::paging::{MapError, MapFlags, Mapper, PAGE_SIZE, PageTableMemory};
use elf::ElfBytes;
use elf::abi;
use elf::endian::LittleEndian;

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
    Elf(&'static str),
    /// A kernel segment asks to be writable and executable at once.
    WritableExecutableSegment { vaddr: u64 },
    /// A kernel segment lies outside the top 2 GiB.
    SegmentOutsideKernelSpace { vaddr: u64 },
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
            LoadError::Elf(what) => write!(f, "bad kernel ELF: {what}"),
            LoadError::WritableExecutableSegment { vaddr } => {
                write!(f, "kernel segment at {vaddr:#x} is both writable and executable")
            }
            LoadError::SegmentOutsideKernelSpace { vaddr } => {
                write!(f, "kernel segment at {vaddr:#x} is outside the top 2 GiB")
            }
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
    let file = ElfBytes::<LittleEndian>::minimal_parse(elf).map_err(|_| LoadError::Elf("not a little-endian ELF"))?;
    let header = file.ehdr;
    if header.class != elf::file::Class::ELF64 || header.e_machine != abi::EM_X86_64 || header.e_type != abi::ET_EXEC {
        return Err(LoadError::Elf("not an x86-64 executable"));
    }
    let root = Mapper::new_root(arena)?;
    let mut segments = 0;
    let phdrs = file.segments().ok_or(LoadError::Elf("no program headers"))?;
    for ph in phdrs.iter() {
        if ph.p_type != abi::PT_LOAD || ph.p_memsz == 0 {
            continue;
        }
        let (vaddr, memsz, flags) = (ph.p_vaddr, ph.p_memsz, ph.p_flags);
        let (writable, executable) = (flags & abi::PF_W != 0, flags & abi::PF_X != 0);
        if writable && executable {
            return Err(LoadError::WritableExecutableSegment { vaddr });
        }
        if vaddr < KERNEL_SPACE || vaddr.checked_add(memsz).is_none() {
            return Err(LoadError::SegmentOutsideKernelSpace { vaddr });
        }
        let data = file.segment_data(&ph).map_err(|_| LoadError::Elf("segment data outside the file"))?;
        if data.len() as u64 > memsz {
            return Err(LoadError::Elf("segment file size exceeds its memory size"));
        }
        let page_offset = vaddr % PAGE_SIZE;
        let span = (page_offset + memsz).next_multiple_of(PAGE_SIZE);
        let phys = arena.alloc(span).ok_or(LoadError::OutOfMemory)?;
        arena.write(phys + page_offset, data).ok_or(LoadError::OutOfMemory)?;
        let rights = MapFlags::kernel(writable, executable);
        let mut mapper = Mapper::new(arena, root);
        mapper.large_pages = false;
        mapper.map(vaddr - page_offset, phys, span, rights)?;
        segments += 1;
    }
    if segments == 0 {
        return Err(LoadError::Elf("no loadable segments"));
    }
    let stack = arena.alloc(KERNEL_STACK_SIZE).ok_or(LoadError::OutOfMemory)?;
    let mut mapper = Mapper::new(arena, root);
    mapper.map(KERNEL_STACK_TOP - KERNEL_STACK_SIZE, stack, KERNEL_STACK_SIZE, MapFlags::KERNEL_DATA)?;
    Ok(LoadedKernel { entry: header.e_entry, root, stack_top: KERNEL_STACK_TOP, segments })
}

/// Maps the physical spans [`memmap::direct_map_spans`] selects into the
/// direct map, read-write and never executable. Returns the end of the
/// highest byte covered.
pub fn map_direct<M: PhysMemory + PhysMemoryMut>(arena: &mut Arena<M>, root: u64, map: &[MemoryRegion]) -> Result<u64, LoadError> {
    let spans = memmap::direct_map_spans::<{ bootinfo::MAX_MEMORY_REGIONS }>(map).map_err(|_| LoadError::OutOfMemory)?;
    let mut mapper = Mapper::new(arena, root);
    for &(start, end) in &spans {
        mapper.map(DIRECT_MAP_BASE + start, start, end - start, MapFlags::KERNEL_DATA)?;
    }
    Ok(spans.last().map_or(0, |s| s.1))
}

#[cfg(test)]
mod tests;
