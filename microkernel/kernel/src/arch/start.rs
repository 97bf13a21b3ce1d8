//! The kernel's entry point: where the loader jumps.

use bootinfo::BootInfo;

/// Entered from the loader on the boot stack with the boot information's
/// direct-map address in RDI.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text.entry")]
extern "sysv64" fn kernel_entry(boot_info: *const BootInfo) -> ! {
    // SAFETY: the loader passes the direct-map address of a BootInfo it
    // wrote, page-aligned; `boot::start` checks its header before anything
    // else is used.
    crate::boot::start(unsafe { &*boot_info })
}
