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
//!
//! QEMU before 9.1 loads DR7 at VMRUN and #VMEXIT by plain assignment: a
//! breakpoint the guest armed with MOV stays armed in the host after the
//! exit (an instruction breakpoint raises #DB in ring 0; `idt` resumes it),
//! and its bookkeeping no longer matches DR7, so a later DR7 write removes
//! a data breakpoint as if it were an instruction one and corrupts QEMU's
//! lists (it crashed with SIGSEGV). Under SVM the host's DR7 is
//! [`DR7_HOST_SVM`] and [`disarm_after_exit`] undoes the guest's
//! breakpoints at once after each exit; on hardware both change nothing.
//! The same emulator arms nothing at VMRUN either, so a breakpoint the
//! guest armed before an exit would stay unarmed after it: [`rearm`] arms
//! it in the host just before the entry, with GIF=0 (no NMI runs host code
//! until `svm::run` has disarmed again after the exit), and for that run
//! the guest's DR7 writes exit, one at a time let through natively. On
//! hardware that only repeats what VMRUN does; a guest breakpoint on a
//! host address in that window is a ring-0 #DB, which `idt` resumes.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};
use kerncore::debugreg::{DR7_HOST_SVM, dr7_steps_to_disarm};

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

fn write_dr7(value: u64) {
    // SAFETY: `value` enables no breakpoint (`DR7_HOST_SVM` and the steps
    // of `dr7_steps_to_disarm` have no enable bit) and sets no reserved
    // bit (the guest's upper half is dropped there).
    unsafe { asm!("mov dr7, {}", in(reg) value, options(nomem, nostack, preserves_flags)) };
}

/// Just before an SVM entry: arms the guest's breakpoints in the host, for
/// an emulator whose VMRUN does not. `value` is what `dr7_to_rearm` made
/// of the guest's DR7 (the guest's DR7 writes must exit for that run).
pub fn rearm(value: u64) {
    // SAFETY: DR0-DR3 hold this VP's addresses (`load` ran before the
    // entry) and `value` is the guest's DR7 that VMRUN loads next, without
    // GD and reserved bits (`dr7_to_rearm`). A breakpoint matching in ring
    // 0 before VMRUN raises only a #DB, which `idt` resumes.
    unsafe { asm!("mov dr7, {}", in(reg) value, options(nomem, nostack, preserves_flags)) };
}

/// Sets this CPU's DR7 to the SVM host's (`svm::enable`; CR4.DE is set).
pub fn set_host_dr7() {
    write_dr7(DR7_HOST_SVM);
}

/// After an SVM exit whose guest left `guest_dr7`: disarms whatever the
/// guest armed, if the emulator left it armed (see the module comment).
#[inline]
pub fn disarm_after_exit(guest_dr7: u64) {
    if let Some(steps) = dr7_steps_to_disarm(guest_dr7) {
        for value in steps {
            write_dr7(value);
        }
    }
}
