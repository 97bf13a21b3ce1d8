//! Guests' DR0-DR3, switched lazily.
//!
//! A VP starts with every debug-register access intercepted and its DR7
//! disabling all breakpoints, so the hardware DR0-DR3 (perhaps another
//! VP's) are neither visible to it nor used. Its first access, or a VMM
//! setting one of its debug registers, makes it *active*: the intercept is
//! dropped (the access is executed again, natively: no decoding), and from
//! then on its DR0-DR3 are loaded before its entry when the hardware holds
//! another VP's, and read back after every exit. DR6 and DR7 are part of
//! the VMCB (SVM) or VMCS and the VMX world switch; the host's DR7 keeps
//! every breakpoint disabled (a VM exit disables them), and ring 3 cannot
//! read debug registers, so a guest's addresses reach nobody else.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

/// The VP (by its extended-state frame, `VpHardware`'s name for it) whose DR0-DR3 the hardware holds (0: none).
static OWNERS: [AtomicU64; super::smp::MAX_CPUS] = [const { AtomicU64::new(0) }; super::smp::MAX_CPUS];

fn owner() -> &'static AtomicU64 {
    super::percpu::local(&OWNERS)
}

/// Loads `dr` into DR0-DR3 unless VP `id` owns them already.
pub fn load(id: u64, dr: &[u64; 4]) {
    if owner().swap(id, Ordering::Relaxed) == id {
        return;
    }
    // SAFETY: DR0-DR3 only hold addresses; the host's DR7 enables no
    // breakpoint, so they have no effect in ring 0 or ring 3.
    unsafe {
        asm!("mov dr0, {}", in(reg) dr[0], options(nomem, nostack, preserves_flags));
        asm!("mov dr1, {}", in(reg) dr[1], options(nomem, nostack, preserves_flags));
        asm!("mov dr2, {}", in(reg) dr[2], options(nomem, nostack, preserves_flags));
        asm!("mov dr3, {}", in(reg) dr[3], options(nomem, nostack, preserves_flags));
    }
}

/// Reads DR0-DR3 back after the owner's exit (the guest writes them without exits).
pub fn save(dr: &mut [u64; 4]) {
    // SAFETY: reading debug registers in ring 0 has no side effects.
    unsafe {
        asm!("mov {}, dr0", out(reg) dr[0], options(nomem, nostack, preserves_flags));
        asm!("mov {}, dr1", out(reg) dr[1], options(nomem, nostack, preserves_flags));
        asm!("mov {}, dr2", out(reg) dr[2], options(nomem, nostack, preserves_flags));
        asm!("mov {}, dr3", out(reg) dr[3], options(nomem, nostack, preserves_flags));
    }
}

/// VP `id`'s values changed outside the hardware (or it goes away): load
/// them afresh next time.
pub fn forget(id: u64) {
    let _ = owner().compare_exchange(id, 0, Ordering::Relaxed, Ordering::Relaxed);
}
