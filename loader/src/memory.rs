//! Physical memory as the loader sees it: the identity map of 0..4 GiB the
//! entry stub built. This is the only place the loader turns addresses into
//! references.

use tessera_loader::PhysMemory;
use tessera_loader::image::PhysMemoryMut;

/// Everything below this is identity-mapped.
const IDENTITY_LIMIT: u64 = 4 << 30;

/// Physical memory through the boot identity map.
pub struct IdentityMemory;

fn in_identity_map(addr: u64, len: u64) -> bool {
    addr != 0 && addr.checked_add(len).is_some_and(|end| end <= IDENTITY_LIMIT)
}

impl PhysMemory for IdentityMemory {
    fn bytes(&self, addr: u64, len: u64) -> Option<&[u8]> {
        if len == 0 {
            return Some(&[]);
        }
        if !in_identity_map(addr, len) {
            return None;
        }
        // SAFETY: [addr, addr+len) lies inside the identity map, which maps
        // every address below 4 GiB. The loader is single-threaded and the
        // only writer is `bytes_mut` on ranges the arena owns, which are
        // never borrowed through `bytes` at the same time.
        Some(unsafe { core::slice::from_raw_parts(addr as *const u8, len as usize) })
    }
}

impl PhysMemoryMut for IdentityMemory {
    fn bytes_mut(&mut self, addr: u64, len: u64) -> Option<&mut [u8]> {
        if len == 0 {
            return Some(&mut []);
        }
        if !in_identity_map(addr, len) {
            return None;
        }
        // SAFETY: as for `bytes`; `&mut self` keeps this the only live slice
        // created through this value.
        Some(unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len as usize) })
    }
}

unsafe extern "C" {
    static __loader_text_start: u8;
    static __loader_text_end: u8;
    static __loader_data_start: u8;
    static __loader_data_end: u8;
}

/// (text, data) ranges of the loader image, from the linker script.
pub fn loader_image() -> ((u64, u64), (u64, u64)) {
    let addr = |sym: &u8| sym as *const u8 as u64;
    // SAFETY: linker-defined symbols; only their addresses are taken.
    unsafe {
        ((addr(&__loader_text_start), addr(&__loader_text_end)), (addr(&__loader_data_start), addr(&__loader_data_end)))
    }
}

/// Switches to the kernel's address space and stack and jumps to its entry.
///
/// # Safety
/// `root` must map this function's code identically, `stack_top` and
/// `entry` must be mapped in it, and `boot_info` must be valid there.
pub unsafe fn enter_kernel(root: u64, stack_top: u64, entry: u64, boot_info: u64) -> ! {
    // SAFETY: the caller guarantees the new address space maps this code,
    // the stack and the entry point; nothing after the jump returns here.
    unsafe {
        core::arch::asm!(
            "mov cr3, {root}",
            "mov rsp, {stack}",
            "xor ebp, ebp",
            "push 0",          // a null return address ends backtraces
            "jmp {entry}",
            root = in(reg) root,
            stack = in(reg) stack_top,
            entry = in(reg) entry,
            in("rdi") boot_info,
            options(noreturn)
        )
    }
}

/// Moves the boot information to its final frame.
///
/// # Safety
/// `phys` must be identity-mapped, aligned for `BootInfo`, owned by the
/// caller and large enough to hold one.
pub unsafe fn write_boot_info(phys: u64, info: bootinfo::BootInfo) {
    // SAFETY: guaranteed by the caller.
    unsafe { core::ptr::write(phys as *mut bootinfo::BootInfo, info) }
}
