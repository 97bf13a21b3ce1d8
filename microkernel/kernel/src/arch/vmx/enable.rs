//! Enabling VMX on this CPU: capability checks, the controls every VMCS
//! gets ([`Vmx`]), VMXON, and the CPU's current-VMCS tracking.

use super::insn::{
    INVEPT_ALL_CONTEXT, INVEPT_SINGLE_CONTEXT, INVVPID_ALL_CONTEXT, INVVPID_SINGLE_CONTEXT, read_msr, vmxon,
};
use crate::arch::memory;
use core::sync::atomic::{AtomicU64, Ordering};
use kerncore::virt::{EptVpidCap, VirtSupport};
use kerncore::vmx::{
    self, ControlCapability, EntryControls, ExitControls, PinBasedControls, PrimaryControls, SecondaryControls,
    VmxBasic, msr as cap_msr,
};
use platform::println;
use x86::controlregs::{Cr0, Cr4};
use x86::msr::IA32_FEATURE_CONTROL;

/// IA32_FEATURE_CONTROL: the lock bit and "VMX outside SMX" (SDM Vol. 3C §24.7).
const FEATURE_CONTROL_LOCKED: u64 = 1 << 0;
const FEATURE_CONTROL_VMX_OUTSIDE_SMX: u64 = 1 << 2;

/// The controls every VMCS gets, fitted to this CPU.
#[derive(Clone, Copy)]
pub(super) struct Controls {
    pub(super) pin: PinBasedControls,
    pub(super) primary: PrimaryControls,
    pub(super) secondary: SecondaryControls,
    pub(super) exit: ExitControls,
    pub(super) entry: EntryControls,
}

/// What `enable` found and set up.
pub(super) struct Vmx {
    pub(super) revision: u32,
    pub(super) controls: Controls,
    cr0_fixed: (u64, u64),
    cr4_fixed: (u64, u64),
    /// All ones: every RDMSR and WRMSR exits.
    pub(super) msr_bitmap: u64,
    /// The INVEPT type to flush one EPT hierarchy with.
    pub(super) invept: u64,
    /// The INVVPID type to flush one VPID with, if VPIDs are on.
    pub(super) invvpid: Option<u64>,
    /// The VMX-preemption timer value every entry starts with (about one
    /// kernel tick), if the CPU has the timer.
    pub(super) preemption_timer: Option<u32>,
    /// NMI-window exiting may be turned on (it needs virtual NMIs).
    pub(super) nmi_window: bool,
}

impl Vmx {
    /// CR0 bits the host owns: those VMX fixes (to 1: NE; PE and PG are
    /// free for an unrestricted guest) and those fixed to 0 (reserved).
    /// The guest reads them from the read shadow; writing a value that
    /// differs there exits, and ring 0 emulates the write (`kerncore::cr`).
    /// The CPU runs the guest with NE set whatever the guest wrote: NE
    /// only selects how x87 errors are reported, and a guest that clears
    /// it (SDM Vol. 3A §2.5, "for PC-style error reporting") loses only
    /// the FERR#/IGNNE# emulation no VP has. A guest that keeps NE set, as
    /// Linux does, writes CR0 without an exit.
    pub(super) fn cr0_mask(&self) -> u64 {
        let free = (Cr0::CR0_PROTECTED_MODE | Cr0::CR0_ENABLE_PAGING).bits() as u64;
        (self.cr0_fixed.0 & !free) | !self.cr0_fixed.1
    }

    /// CR4 bits the host owns: VMXE (fixed to 1, but the guest reads 0
    /// and may write 0 without an exit), those fixed to 0, and every bit
    /// not offered to guests (`arch::vm::cr4_offered`): setting one exits
    /// and gets #GP, so a guest never runs with a feature whose state VMX
    /// does not switch (SMXE, CET, PKS, Key Locker, ...).
    pub(super) fn cr4_mask(&self) -> u64 {
        self.cr4_fixed.0 | !self.cr4_fixed.1 | !crate::arch::vm::cr4_offered()
    }

    /// The CR0 the guest runs with when it asks for `value`.
    pub(super) fn guest_cr0(&self, value: u64) -> u64 {
        let free = (Cr0::CR0_PROTECTED_MODE | Cr0::CR0_ENABLE_PAGING).bits() as u64;
        (vmx::apply_fixed_bits(value, self.cr0_fixed.0, self.cr0_fixed.1) & !free) | (value & free)
    }

    pub(super) fn guest_cr4(&self, value: u64) -> u64 {
        vmx::apply_fixed_bits(value, self.cr4_fixed.0, self.cr4_fixed.1)
    }
}

pub(super) static VMX: spin::Once<Vmx> = spin::Once::new();

/// CR4 bits VMX operation lets a guest have (all without VMX).
pub fn cr4_settable() -> u64 {
    VMX.get().map_or(u64::MAX, |v| v.cr4_fixed.1)
}

/// Per CPU: the VMCS current on it (0: none).
static CURRENTS: [AtomicU64; crate::arch::smp::MAX_CPUS] = [const { AtomicU64::new(0) }; crate::arch::smp::MAX_CPUS];

/// The VMCS current on this CPU.
pub(super) fn current() -> &'static AtomicU64 {
    crate::arch::percpu::local(&CURRENTS)
}

/// A VMX-capable CPU's EPT/VPID capabilities, as detected at boot.
pub(super) fn ept_vpid_caps() -> EptVpidCap {
    match crate::boot::virt_support() {
        Some(VirtSupport::Vmx(v)) => v.ept_vpid.unwrap_or_default(),
        _ => EptVpidCap::new(),
    }
}

/// Reads a control capability MSR and fits `required` (and what the CPU
/// forces) to it.
fn fit<T>(msr: u32, required: T) -> Result<T, &'static str>
where
    T: From<u32>,
    u32: From<T>,
{
    ControlCapability(read_msr(msr)).adjust(required, T::from(0)).map_err(|missing| {
        println!("vmx: capability MSR {msr:#x} lacks required controls {:#x}", missing.missing);
        "the CPU lacks a VMX control the kernel needs"
    })
}

/// Each CPU's VMXON region (by `percpu::index`), 0 until VMX is on there.
static VMXON_REGIONS: [AtomicU64; crate::arch::smp::MAX_CPUS] =
    [const { AtomicU64::new(0) }; crate::arch::smp::MAX_CPUS];

/// Turns VMX on for this CPU: the controls once for all CPUs, then this
/// CPU's VMXON region and VMXON. Idempotent.
pub fn enable() -> Result<(), &'static str> {
    let cpu = crate::arch::percpu::index();
    if VMXON_REGIONS[cpu].load(Ordering::Relaxed) != 0 {
        return Ok(());
    }
    let control = read_msr(IA32_FEATURE_CONTROL);
    if control & FEATURE_CONTROL_LOCKED == 0 || control & FEATURE_CONTROL_VMX_OUTSIDE_SMX == 0 {
        return Err("IA32_FEATURE_CONTROL is not locked with VMX enabled");
    }
    let vmx = VMX.try_call_once(configure)?;
    let vmxon_region = memory::alloc_frames(1).ok_or("out of memory for VMX host state")?;
    memory::write_phys(vmxon_region.start(), &vmx.revision.to_le_bytes());
    let (cr0_fixed, cr4_fixed) = (vmx.cr0_fixed, vmx.cr4_fixed);
    // SAFETY: CR0 and CR4 get the bits VMX operation requires (SDM A.7,
    // A.8) on top of the kernel's own: CR4.VMXE and, at most, CR0.NE,
    // which only selects native x87 error reporting (the kernel uses no
    // x87). Nothing else changes: the fixed-1 masks allow every bit the
    // kernel sets.
    unsafe {
        let cr4 = x86::controlregs::cr4().bits() as u64 | Cr4::CR4_ENABLE_VMX.bits() as u64;
        x86::controlregs::cr4_write(Cr4::from_bits_truncate(
            vmx::apply_fixed_bits(cr4, cr4_fixed.0, cr4_fixed.1) as usize
        ));
        let cr0 = x86::controlregs::cr0().bits() as u64;
        x86::controlregs::cr0_write(Cr0::from_bits_truncate(
            vmx::apply_fixed_bits(cr0, cr0_fixed.0, cr0_fixed.1) as usize
        ));
    }
    if let Err(e) = vmxon(vmxon_region.start()) {
        println!("vmx: VMXON failed: {e:?}");
        memory::free_frames(vmxon_region);
        return Err("VMXON failed");
    }
    VMXON_REGIONS[cpu].store(vmxon_region.leak(), Ordering::Relaxed);
    Ok(())
}

/// The controls, the fixed CR bits and the MSR bitmap every CPU shares,
/// fitted to the capability MSRs (the same on every CPU).
fn configure() -> Result<Vmx, &'static str> {
    let basic = VmxBasic::from(read_msr(cap_msr::IA32_VMX_BASIC));
    if basic.vmcs_size() > 4096 || basic.vmcs_memory_type() != 6 || basic.physical_address_32bit() {
        return Err("the VMCS needs more than a write-back 4 KiB frame");
    }
    let (pin_msr, primary_msr, exit_msr, entry_msr) = if basic.true_controls() {
        (
            cap_msr::IA32_VMX_TRUE_PINBASED_CTLS,
            cap_msr::IA32_VMX_TRUE_PROCBASED_CTLS,
            cap_msr::IA32_VMX_TRUE_EXIT_CTLS,
            cap_msr::IA32_VMX_TRUE_ENTRY_CTLS,
        )
    } else {
        (
            cap_msr::IA32_VMX_PINBASED_CTLS,
            cap_msr::IA32_VMX_PROCBASED_CTLS,
            cap_msr::IA32_VMX_EXIT_CTLS,
            cap_msr::IA32_VMX_ENTRY_CTLS,
        )
    };
    // The preemption timer, where there is one, bounds every guest run to
    // about a tick (see `preemption_timer_value`). Virtual NMIs keep the
    // guest's NMI blocking (after an NMI the VMM injected, until its IRET)
    // apart from the host's: without them that blocking would hold off the
    // host's own NMIs for as long as the guest runs (SDM §26.6.1).
    let pin = ControlCapability(read_msr(pin_msr))
        .adjust(
            PinBasedControls::new()
                .with_external_interrupt_exiting(true)
                .with_nmi_exiting(true)
                .with_virtual_nmis(true),
            PinBasedControls::new().with_activate_preemption_timer(true),
        )
        .map_err(|_| "the CPU lacks external-interrupt or NMI exiting, or virtual NMIs")?;
    // CR8 accesses exit: without a TPR shadow a 64-bit guest would write
    // the host's own APIC TPR and could hold off every host interrupt. As
    // under SVM, RDPMC, MONITOR, MWAIT and debug-register accesses (until
    // the VP's first, see `dr`) exit, and so do XSETBV and INVD (always)
    // and WBINVD.
    let primary = fit(
        primary_msr,
        PrimaryControls::new()
            .with_hlt_exiting(true)
            .with_rdpmc_exiting(true)
            .with_monitor_exiting(true)
            .with_mwait_exiting(true)
            .with_mov_dr_exiting(true)
            .with_cr8_load_exiting(true)
            .with_cr8_store_exiting(true)
            .with_unconditional_io_exiting(true)
            .with_use_msr_bitmaps(true)
            .with_activate_secondary_controls(true),
    )?;
    let nmi_window = ControlCapability(read_msr(primary_msr))
        .adjust(PrimaryControls::new(), PrimaryControls::new().with_nmi_window_exiting(true))
        .is_ok_and(|c| c.nmi_window_exiting());
    let caps = ept_vpid_caps();
    let secondary_cap = ControlCapability(read_msr(cap_msr::IA32_VMX_PROCBASED_CTLS2));
    let invvpid = if caps.invvpid_single_context() {
        Some(INVVPID_SINGLE_CONTEXT)
    } else if caps.invvpid_all_context() {
        Some(INVVPID_ALL_CONTEXT)
    } else {
        None
    };
    // VPIDs only where INVVPID can flush them. RDTSCP and INVPCID raise
    // #UD in a guest unless enabled; they run natively, as under SVM.
    let secondary = secondary_cap
        .adjust(
            SecondaryControls::new().with_enable_ept(true).with_unrestricted_guest(true).with_wbinvd_exiting(true),
            SecondaryControls::new()
                .with_enable_vpid(invvpid.is_some())
                .with_enable_rdtscp(true)
                .with_enable_invpcid(true),
        )
        .map_err(|_| "the CPU lacks EPT, unrestricted guest or WBINVD exiting")?;
    let exit = fit(
        exit_msr,
        ExitControls::new()
            .with_host_address_space_size(true)
            .with_save_debug_controls(true)
            .with_save_ia32_pat(true)
            .with_load_ia32_pat(true)
            .with_save_ia32_efer(true)
            .with_load_ia32_efer(true),
    )?;
    let entry = fit(
        entry_msr,
        EntryControls::new().with_load_debug_controls(true).with_load_ia32_pat(true).with_load_ia32_efer(true),
    )?;
    if exit.acknowledge_interrupt_on_exit() || primary.use_io_bitmaps() || entry.ia32e_mode_guest() {
        return Err("the CPU forces a VMX control the kernel cannot use");
    }
    let invept = if caps.invept_single_context() {
        INVEPT_SINGLE_CONTEXT
    } else if caps.invept_all_context() {
        INVEPT_ALL_CONTEXT
    } else {
        return Err("the CPU has no INVEPT type the kernel can use");
    };
    let cr0_fixed = (read_msr(cap_msr::IA32_VMX_CR0_FIXED0), read_msr(cap_msr::IA32_VMX_CR0_FIXED1));
    let cr4_fixed = (read_msr(cap_msr::IA32_VMX_CR4_FIXED0), read_msr(cap_msr::IA32_VMX_CR4_FIXED1));

    let msr_bitmap = memory::alloc_frames(1).ok_or("out of memory for VMX host state")?;
    memory::fill_phys(msr_bitmap.start(), msr_bitmap.len_bytes(), 0xff);
    // The syscall and segment-base MSRs are the guest's own: the VMCS
    // switches the SYSENTER and FS/GS bases, `world_switch` the rest.
    for msr in kerncore::intercept::PASS_THROUGH_MSRS {
        if let Some((read, write, bit)) = kerncore::intercept::vmx_msr_bitmap_bit(msr) {
            for byte in [read, write] {
                let mut b = [0u8];
                memory::read_phys(msr_bitmap.start() + byte as u64, &mut b);
                memory::write_phys(msr_bitmap.start() + byte as u64, &[b[0] & !(1 << bit)]);
            }
        }
    }
    let revision = basic.vmcs_revision();
    let msr_bitmap = msr_bitmap.leak();
    let preemption_timer = pin.activate_preemption_timer().then(preemption_timer_value);
    Ok(Vmx {
        revision,
        controls: Controls { pin, primary, secondary, exit, entry },
        cr0_fixed,
        cr4_fixed,
        msr_bitmap,
        invept,
        invvpid: invvpid.filter(|_| secondary.enable_vpid()),
        preemption_timer,
        nmi_window,
    })
}

/// The VMX-preemption timer value for about one kernel tick: the TSC is
/// measured against the PIT, and the timer counts down once every 2^N TSC
/// cycles, N from IA32_VMX_MISC bits 4:0 (SDM §26.5.1, A.6).
///
/// External-interrupt exiting alone should give ring 0 every host
/// interrupt, but Bochs 2.7 re-evaluates which events are masked only when
/// RFLAGS.IF changes, and its VM entry loads the guest's RFLAGS before it
/// enters non-root operation: a guest entered with IF clear takes no
/// external-interrupt exit until it touches IF (a guest spinning with
/// interrupts off would hold the CPU for good). The timer bounds every
/// run, so the kernel sees its tick whatever the guest does.
fn preemption_timer_value() -> u32 {
    const SAMPLE_US: u64 = 10_000;
    let mut start = 0;
    crate::arch::pit::one_shot(SAMPLE_US, || start = crate::arch::cpu::timestamp());
    let cycles = crate::arch::cpu::timestamp().wrapping_sub(start);
    let per_tick = cycles.saturating_mul(1_000_000) / (SAMPLE_US * crate::arch::apic::TICK_HZ);
    let rate = read_msr(cap_msr::IA32_VMX_MISC) & 0x1f;
    u32::try_from(per_tick >> rate).unwrap_or(u32::MAX).max(1)
}
