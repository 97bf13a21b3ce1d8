use super::*;
use elf::abi;
use elf32conv::fixtures::elf64;
use kerncore::paging::{audit, translate};

const RAM_BASE: u64 = 0x40_0000;

/// Fake RAM at `RAM_BASE`.
struct Ram {
    data: std::vec::Vec<u8>,
}

impl Ram {
    fn new(size: usize) -> Self {
        Ram { data: vec![0xcc; size] }
    }
}

impl PhysMemory for Ram {
    fn bytes(&self, addr: u64, len: u64) -> Option<&[u8]> {
        let start = usize::try_from(addr.checked_sub(RAM_BASE)?).ok()?;
        self.data.get(start..start + len as usize)
    }
}

impl PhysMemoryMut for Ram {
    fn bytes_mut(&mut self, addr: u64, len: u64) -> Option<&mut [u8]> {
        let start = usize::try_from(addr.checked_sub(RAM_BASE)?).ok()?;
        self.data.get_mut(start..start + len as usize)
    }
}

const TEXT: u64 = 0xffff_ffff_8000_0000;
const DATA: u64 = 0xffff_ffff_8000_2000;

fn kernel_elf(data_flags: u32) -> std::vec::Vec<u8> {
    elf64(
        abi::EM_X86_64,
        TEXT + 0x10,
        &[(TEXT, 0x1100, &[0x90; 0x1100], abi::PF_R | abi::PF_X), (DATA + 0x40, 0x3000, &[1, 2, 3], data_flags)],
    )
}

#[test]
fn kernel_segments_get_their_own_rights() {
    let mut arena = Arena::new(Ram::new(0x10_0000), RAM_BASE, RAM_BASE + 0x10_0000);
    let k = load_kernel(&mut arena, &kernel_elf(abi::PF_R | abi::PF_W)).unwrap();
    assert_eq!((k.entry, k.segments, k.stack_top), (TEXT + 0x10, 2, KERNEL_STACK_TOP));
    let mem = &arena;
    let text = translate(mem, k.root, TEXT + 0x1000).unwrap();
    assert!(text.executable && !text.writable);
    let data = translate(mem, k.root, DATA + 0x40).unwrap();
    assert!(data.writable && !data.executable);
    assert_eq!(arena.memory().bytes(data.phys, 3).unwrap(), &[1, 2, 3]);
    // Bytes past the file size are zero (bss), not what was in RAM before.
    assert_eq!(arena.memory().bytes(data.phys + 3, 8).unwrap(), &[0; 8]);
    // The last page of a segment whose memory size exceeds its file size is mapped.
    assert!(translate(mem, k.root, DATA + 0x3000).is_some());
    // The stack is mapped below its top with a guard page under it.
    assert!(translate(mem, k.root, KERNEL_STACK_TOP - 8).unwrap().writable);
    assert!(translate(mem, k.root, KERNEL_STACK_TOP - KERNEL_STACK_SIZE - 8).is_none());
    assert_eq!(audit(mem, k.root).writable_executable, 0);
}

#[test]
fn writable_executable_segments_are_refused() {
    let mut arena = Arena::new(Ram::new(0x10_0000), RAM_BASE, RAM_BASE + 0x10_0000);
    let err = load_kernel(&mut arena, &kernel_elf(abi::PF_R | abi::PF_W | abi::PF_X)).unwrap_err();
    assert_eq!(err, LoadError::Elf(ElfError::WritableAndExecutable { vaddr: DATA + 0x40 }));
}

#[test]
fn low_segments_and_bad_files_are_refused() {
    let mut arena = Arena::new(Ram::new(0x10_0000), RAM_BASE, RAM_BASE + 0x10_0000);
    let low = elf64(abi::EM_X86_64, 0x1000, &[(0x1000, 0x10, &[0; 16], abi::PF_R | abi::PF_X)]);
    assert_eq!(load_kernel(&mut arena, &low).unwrap_err(), LoadError::Elf(ElfError::OutsideRange { vaddr: 0x1000 }));
    assert!(matches!(load_kernel(&mut arena, b"garbage"), Err(LoadError::Elf(_))));
    let arm = elf64(abi::EM_AARCH64, TEXT, &[(TEXT, 0x10, &[0; 16], abi::PF_R)]);
    assert!(matches!(load_kernel(&mut arena, &arm), Err(LoadError::Elf(_))));
}

#[test]
fn a_small_arena_runs_out_cleanly() {
    let mut arena = Arena::new(Ram::new(0x10_0000), RAM_BASE, RAM_BASE + 0x3000);
    assert_eq!(load_kernel(&mut arena, &kernel_elf(abi::PF_R | abi::PF_W)).unwrap_err(), LoadError::OutOfMemory);
}

#[test]
fn direct_map_covers_every_region_without_execute() {
    use bootinfo::MemoryKind::*;
    let mut arena = Arena::new(Ram::new(0x10_0000), RAM_BASE, RAM_BASE + 0x10_0000);
    let root = Mapper::new_root(&mut arena).unwrap();
    let map = [
        MemoryRegion::new(0, 0x9_fc00, Usable),
        MemoryRegion::new(0x9_fc00, 0xa_0000, Reserved), // shares a page with the one before
        MemoryRegion::new(0xf_0000, 0x10_0000, Reserved),
        MemoryRegion::new(0x10_0000, 0x800_0000, Usable),
    ];
    let top = map_direct(&mut arena, root, &map).unwrap();
    assert_eq!(top, 0x800_0000);
    for phys in [0, 0x9_fc00, 0xf_0000, 0x40_0000, 0x7ff_ffff] {
        // Every byte of RAM and of the low 1 MiB is reachable.
        let t = translate(&arena, root, DIRECT_MAP_BASE + phys).unwrap();
        assert_eq!(t.phys, phys);
        assert!(t.writable && !t.executable);
    }
    assert!(translate(&arena, root, DIRECT_MAP_BASE + 0xc_0000).is_some(), "the low 1 MiB is always mapped");
    assert!(translate(&arena, root, DIRECT_MAP_BASE + 0x800_0000).is_none(), "nothing past RAM is mapped");
    assert_eq!(audit(&arena, root).writable_executable, 0);
}
