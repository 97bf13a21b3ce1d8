//! VM-execution, VM-exit and VM-entry controls (SDM Vol. 3C §25.6-25.8)
//! and how to fit them to what the CPU allows (SDM Vol. 3D Appendix A).

use bitfield_struct::bitfield;

pub use crate::virt::SecondaryControls;

/// The VMX capability MSRs are among these (SDM Vol. 4, Table 2-2).
pub use x86defs::msr;

/// IA32_VMX_BASIC (SDM A.1).
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct VmxBasic {
    #[bits(31)]
    pub vmcs_revision: u32,
    pub _reserved0: bool,
    /// Bytes to allocate for a VMXON region or VMCS (at most 4096).
    #[bits(13)]
    pub vmcs_size: u16,
    #[bits(3)]
    pub _reserved1: u8,
    /// VMXON, VMCS and related addresses are limited to 32 bits.
    pub physical_address_32bit: bool,
    pub dual_monitor_smm: bool,
    /// Memory type for the VMCS and related structures: 6 = write-back.
    #[bits(4)]
    pub vmcs_memory_type: u8,
    pub ins_outs_exit_information: bool,
    /// The IA32_VMX_TRUE_*_CTLS MSRs exist and are the ones to adjust against.
    pub true_controls: bool,
    /// VM entry may inject a hardware exception with or without an error code.
    pub no_error_code_consistency_check: bool,
    #[bits(7)]
    pub _reserved2: u8,
}

/// Pin-based VM-execution controls (SDM §25.6.1). Bits 1, 2 and 4 are
/// reserved "default1": [`ControlCapability::adjust`] sets them.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct PinBasedControls {
    pub external_interrupt_exiting: bool,
    #[bits(2)]
    pub _reserved0: u8,
    pub nmi_exiting: bool,
    pub _reserved1: bool,
    pub virtual_nmis: bool,
    pub activate_preemption_timer: bool,
    pub process_posted_interrupts: bool,
    #[bits(24)]
    pub _reserved2: u32,
}

/// Primary processor-based VM-execution controls (SDM §25.6.2).
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct PrimaryControls {
    #[bits(2)]
    pub _reserved0: u8,
    pub interrupt_window_exiting: bool,
    pub use_tsc_offsetting: bool,
    #[bits(3)]
    pub _reserved1: u8,
    pub hlt_exiting: bool,
    pub _reserved2: bool,
    pub invlpg_exiting: bool,
    pub mwait_exiting: bool,
    pub rdpmc_exiting: bool,
    pub rdtsc_exiting: bool,
    #[bits(2)]
    pub _reserved3: u8,
    pub cr3_load_exiting: bool,
    pub cr3_store_exiting: bool,
    pub activate_tertiary_controls: bool,
    pub _reserved4: bool,
    pub cr8_load_exiting: bool,
    pub cr8_store_exiting: bool,
    pub use_tpr_shadow: bool,
    pub nmi_window_exiting: bool,
    pub mov_dr_exiting: bool,
    pub unconditional_io_exiting: bool,
    pub use_io_bitmaps: bool,
    pub _reserved5: bool,
    pub monitor_trap_flag: bool,
    pub use_msr_bitmaps: bool,
    pub monitor_exiting: bool,
    pub pause_exiting: bool,
    pub activate_secondary_controls: bool,
}

/// Primary VM-exit controls (SDM §25.7.1).
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct ExitControls {
    #[bits(2)]
    pub _reserved0: u8,
    pub save_debug_controls: bool,
    #[bits(6)]
    pub _reserved1: u8,
    /// The host runs in 64-bit mode after the exit.
    pub host_address_space_size: bool,
    #[bits(2)]
    pub _reserved2: u8,
    pub load_ia32_perf_global_ctrl: bool,
    #[bits(2)]
    pub _reserved3: u8,
    pub acknowledge_interrupt_on_exit: bool,
    #[bits(2)]
    pub _reserved4: u8,
    pub save_ia32_pat: bool,
    pub load_ia32_pat: bool,
    pub save_ia32_efer: bool,
    pub load_ia32_efer: bool,
    pub save_preemption_timer_value: bool,
    pub clear_ia32_bndcfgs: bool,
    pub conceal_vmx_from_pt: bool,
    pub clear_ia32_rtit_ctl: bool,
    pub clear_ia32_lbr_ctl: bool,
    pub clear_uinv: bool,
    pub load_cet_state: bool,
    pub load_pkrs: bool,
    pub save_ia32_perf_global_ctl: bool,
    pub activate_secondary_controls: bool,
}

/// VM-entry controls (SDM §25.8.1).
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct EntryControls {
    #[bits(2)]
    pub _reserved0: u8,
    pub load_debug_controls: bool,
    #[bits(6)]
    pub _reserved1: u8,
    /// The guest runs in IA-32e mode after entry (must match guest EFER.LMA).
    pub ia32e_mode_guest: bool,
    pub entry_to_smm: bool,
    pub deactivate_dual_monitor_treatment: bool,
    pub _reserved2: bool,
    pub load_ia32_perf_global_ctrl: bool,
    pub load_ia32_pat: bool,
    pub load_ia32_efer: bool,
    pub load_ia32_bndcfgs: bool,
    pub conceal_vmx_from_pt: bool,
    pub load_ia32_rtit_ctl: bool,
    pub load_uinv: bool,
    pub load_cet_state: bool,
    pub load_guest_ia32_lbr_ctl: bool,
    pub load_pkrs: bool,
    #[bits(9)]
    pub _reserved3: u16,
}

/// What a VMX control capability MSR allows (SDM A.3.1): the low half has
/// a 1 for every control that must be 1, the high half a 0 for every
/// control that must be 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlCapability(pub u64);

/// Required controls the CPU cannot set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnsupportedControls {
    pub missing: u32,
}

impl ControlCapability {
    pub const fn must_be_one(self) -> u32 {
        self.0 as u32
    }

    pub const fn may_be_one(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The control value to write: every bit of `required`, each bit of
    /// `optional` the CPU allows, and every bit the CPU forces on. Fails,
    /// naming the bits, if a required control cannot be 1.
    ///
    /// Adjust the pin-based, primary and exit/entry controls against the
    /// TRUE_ MSRs when [`VmxBasic::true_controls`] is set, else against the
    /// plain ones; secondary controls have only IA32_VMX_PROCBASED_CTLS2.
    pub fn adjust<T>(self, required: T, optional: T) -> Result<T, UnsupportedControls>
    where
        T: From<u32>,
        u32: From<T>,
    {
        let (required, optional) = (u32::from(required), u32::from(optional));
        let missing = required & !self.may_be_one();
        if missing != 0 {
            return Err(UnsupportedControls { missing });
        }
        Ok(T::from((required | optional | self.must_be_one()) & self.may_be_one()))
    }

    /// Whether `value` obeys both halves.
    pub fn allows(self, value: u32) -> bool {
        value & self.must_be_one() == self.must_be_one() && value & !self.may_be_one() == 0
    }
}

/// CR0 or CR4 as VMX operation requires it (SDM A.7, A.8): bits set in
/// FIXED0 forced on, bits clear in FIXED1 forced off. With unrestricted
/// guest, CR0.PE and CR0.PG may stay clear in a guest even though FIXED0
/// sets them; clear them after this when that is meant.
pub const fn apply_fixed_bits(value: u64, fixed0: u64, fixed1: u64) -> u64 {
    (value | fixed0) & fixed1
}
