//! Intel VMX with EPT: the second backend behind `arch::vm` (SDM Vol. 3C,
//! chapters 24-29).
//!
//! - `enable` checks IA32_FEATURE_CONTROL, fits CR0/CR4 to the fixed bits,
//!   works out the execution controls against the capability MSRs
//!   (`kerncore::vmx::ControlCapability::adjust`) and enters VMX operation
//!   with VMXON. It fails, naming what is missing, rather than running
//!   guests half-configured.
//! - Each VP ([`Vp`]) owns its VMCS and a little software state
//!   (`vp::VpState`): whether it was launched, and the guest state VMX does
//!   not switch (CR2, DR6, IA32_KERNEL_GS_BASE, the SYSCALL MSRs; RAX lives
//!   in `vm::GuestGprs::rax`). The VMCS current on this CPU is tracked so
//!   that a VMPTRLD happens only when switching VPs.
//! - Every guest port access, MSR access, CPUID, HLT, CR8 access, external
//!   interrupt and NMI exits, and the VMX-preemption timer ends every run
//!   after about a tick (see `enable::preemption_timer_value` for the Bochs
//!   quirk that needs it). Acknowledge-interrupt-on-exit is off: a host
//!   interrupt stays pending in the local APIC until the kernel lets it in
//!   after the exit (`cpu::take_pending_interrupts`), as with SVM.
//! - The bits VMX fixes are host-owned with read shadows: the guest's CR4
//!   hides VMXE, and its CR0 reads NE as the guest wrote it while the CPU
//!   keeps it set. A write that would change an owned bit exits, and ring
//!   0 emulates it (`object::vm::control_registers`; see
//!   `enable::Vmx::cr0_mask`).
//! - A VMX instruction that fails, or a VM entry that fails, is reported as
//!   `ExitReason::Other` with a code no exit reason has (`insn::FAILED_*`,
//!   or the exit-reason field with bit 31 set) and logged on the kernel
//!   console; it never panics.
//!
//! Every CPU enables VMX with its own VMXON region (`enable`); guests
//! run on the boot CPU only for now, so the current-VMCS pointer and the
//! host state written into a VMCS are the boot CPU's.
//!
//! The modules: `insn` (the VMX instructions), `enable` (VMXON and the
//! controls), `vp` (the VP object: `vm::VpOps` for VMX), `vmcs` (setting a
//! VMCS up), `run` (the world switch and exit decoding), `events`
//! (injection and the interrupt window), `registers` (registers by TLFS
//! name) and `ept`. `unsafe` is allowed only in `insn`, `enable`, `vmcs`
//! and `run`.

#[allow(unsafe_code)]
mod enable;
mod ept;
mod events;
#[allow(unsafe_code)]
mod insn;
mod registers;
#[allow(unsafe_code)]
mod run;
#[allow(unsafe_code)]
mod vmcs;
mod vp;

pub use enable::cr4_settable;
pub use enable::enable;
pub use ept::{
    ept_copy, ept_hold_write, ept_lift_protections, ept_map, ept_new_root, ept_protect, ept_tables, ept_translate,
    ept_unmap, ept_unmap_present,
};
pub use vp::Vp;

pub const IMPLEMENTED: bool = true;

/// VMCLEARs `vmcs` on this CPU for a VP moving to another (`vm::release_here`).
pub fn release_here(vmcs: u64) {
    vmcs::release(vmcs, true);
}
