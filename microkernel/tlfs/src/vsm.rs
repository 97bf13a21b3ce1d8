//! Virtual Secure Mode (TLFS 15): trust levels, the VSM registers, the VTL
//! control area of the VP assist page, and the inputs of the VSM calls, of
//! HvStartVirtualProcessor (7.10.3) and of HvTranslateVirtualAddress (9.4.6).
//! Register names are [`HvRegisterName`]'s `VSM_*` and `CR_INTERCEPT_*`;
//! call codes are [`crate::HvCallCode`]'s.
//!
//! Bitfields declare every reserved field; those whose other bits are RsvdZ
//! have `DEFINED_BITS` and `has_reserved_bits`. What TLFS 6.0b does not
//! print (the native layouts of 15.15.2 and 15.15.3, the VP status, the
//! partition configuration and VINA registers, the entry reasons) follows
//! the Hyper-V headers (OpenVMM's `hvdef`, Linux's `hvgdk`); where 6.0b's
//! drawing disagrees with them (the capabilities register, the default
//! protection mask) the headers win, as guests are built against them. Each
//! item says which.

use crate::hypercall::HvInputVtl;
use crate::{
    HvCacheType, HvMapGpaFlags, HvPartitionId, HvRegisterName, HvX64SegmentRegister, HvX64TableRegister,
    cpuid::HvPartitionPrivilegeMask, hypercall::HvRegisterValue, msr::HV_PAGE_SIZE, segment_register_value,
    table_register_value,
};
use abi::open_enum;
use bitfield_struct::bitfield;
use core::mem::{offset_of, size_of};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `HV_VTL` (15.2): a virtual trust level, 0 the least privileged.
pub type HvVtl = u8;
/// VTLs the architecture allows (15.2: "up to 16 levels").
pub const HV_VTL_COUNT_MAX: u8 = 16;
/// `HV_NUM_VTLS`: VTLs the 6.0b hypervisor implements (15.2).
pub const HV_NUM_VTLS: u8 = 2;
/// `HV_INVALID_VTL` (15.2).
pub const HV_INVALID_VTL: HvVtl = 0xff;
/// `HV_VTL_ALL` (15.2).
pub const HV_VTL_ALL: HvVtl = 0xf;

impl HvPartitionPrivilegeMask {
    /// VSM needs AccessVsm, AccessVpRegisters and AccessSynicRegs (15.3.1).
    pub const fn vsm_available(self) -> bool {
        self.access_vsm() && self.access_vp_registers() && self.access_synic_regs()
    }
}

impl HvMapGpaFlags {
    /// `HV_MAP_GPA_PERMISSIONS_NONE`: a lower VTL's access to the page is a
    /// secure intercept to the VTL that set it (15.9.2).
    pub const NO_ACCESS: HvMapGpaFlags = HvMapGpaFlags::new();
    /// Read, write, kernel and user execute: the default protection (15.5.1.2).
    pub const ALL_ACCESS: HvMapGpaFlags = HvMapGpaFlags::from_bits(HvMapGpaFlags::DEFINED_BITS);
}

/// `DEFINED_BITS` and `has_reserved_bits` for bitfields whose other bits are RsvdZ.
macro_rules! rsvdz {
    ($($ty:ident($bits:ty) = $mask:expr;)*) => {$(
        impl $ty {
            /// The bits TLFS defines; the rest are RsvdZ.
            pub const DEFINED_BITS: $bits = $mask;

            /// True if a reserved bit is set.
            pub const fn has_reserved_bits(self) -> bool {
                self.into_bits() & !Self::DEFINED_BITS != 0
            }
        }
    )*};
}

// ---------------------------------------------------------------------------
// VSM registers (15.3, 15.5, 15.8, 15.12.4, 15.13.4)
// ---------------------------------------------------------------------------

/// `HV_REGISTER_VSM_CODE_PAGE_OFFSETS` (15.8): where the VTL call and VTL
/// return sequences sit in the hypercall page.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvRegisterVsmCodePageOffsets {
    #[bits(12)]
    pub vtl_call_offset: u16,
    #[bits(12)]
    pub vtl_return_offset: u16,
    #[bits(40)]
    pub reserved: u64,
}

/// `HV_REGISTER_VSM_VP_STATUS` (15.3.3.2), per VP, read-only. 6.0b names
/// the fields without a drawing; the positions are the Hyper-V headers'.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvRegisterVsmVpStatus {
    #[bits(4)]
    pub active_vtl: u8,
    pub active_mbec_enabled: bool,
    #[bits(11)]
    pub reserved0: u16,
    /// Bit n: VTL n is enabled on the VP.
    pub enabled_vtl_set: u16,
    pub reserved1: u32,
}

/// `HV_REGISTER_VSM_PARTITION_STATUS` (15.3.3.1), per partition, read-only.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvRegisterVsmPartitionStatus {
    /// Bit n: VTL n is enabled for the partition.
    pub enabled_vtl_set: u16,
    #[bits(4)]
    pub maximum_vtl: u8,
    /// Bit n: MBEC is enabled for VTL n.
    pub mbec_enabled_vtl_set: u16,
    #[bits(28)]
    pub reserved: u32,
}

/// `HV_X64_REGISTER_VSM_CAPABILITIES` (15.3.2), read-only. TLFS 6.0b draws
/// the fields from bit 63 down (Dr6Shared 63, MbecVtlMask 62:47,
/// DenyLowerVtlStartup 46); the Hyper-V headers (OpenVMM, Linux, OP-TEE)
/// declare them from bit 0, and this follows them.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvRegisterVsmCapabilities {
    /// DR6 is shared between VTLs (else private, 15.11).
    pub dr6_shared: bool,
    /// Bit n: MBEC can be enabled for VTL n.
    pub mbec_vtl_mask: u16,
    /// A VTL may deny VP startup and reset by lower VTLs (15.5.1.4).
    pub deny_lower_vtl_startup: bool,
    #[bits(46)]
    pub reserved: u64,
}

/// `HV_REGISTER_VSM_PARTITION_CONFIG` (15.5.1), one per VTL above 0. 6.0b
/// describes EnableVtlProtection, DefaultVtlProtectionMask, ZeroMemOnReset,
/// DenyLowerVtlStartup and InterceptVpStartup without a drawing; positions,
/// and the other intercept flags, are the Hyper-V headers'.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvRegisterVsmPartitionConfig {
    /// Write-once; needed before the VTL sets protections (15.5.1.1).
    pub enable_vtl_protection: bool,
    /// See [`HvRegisterVsmPartitionConfig::default_protection`].
    #[bits(4)]
    pub default_vtl_protection_mask: u8,
    /// Zero the partition's memory on reset (15.5.1.3).
    pub zero_memory_on_reset: bool,
    /// Lower VTLs may not start or reset VPs (15.5.1.4).
    pub deny_lower_vtl_startup: bool,
    pub intercept_acceptance: bool,
    pub intercept_enable_vtl_protection: bool,
    /// Starting or resetting a VP is an intercept to this VTL (15.5.1.5).
    pub intercept_vp_startup: bool,
    pub intercept_cpuid_unimplemented: bool,
    pub intercept_unrecoverable_exception: bool,
    pub intercept_page: bool,
    #[bits(51)]
    pub reserved: u64,
}

impl HvRegisterVsmPartitionConfig {
    /// The default protection of lower VTLs' pages. 15.5.1.2 lists bit 2 as
    /// user and bit 3 as kernel execute; the headers make the mask an
    /// `HV_MAP_GPA_FLAGS` value (bit 2 kernel, bit 3 user), as here.
    pub const fn default_protection(self) -> HvMapGpaFlags {
        HvMapGpaFlags::from_bits(self.default_vtl_protection_mask() as u32)
    }
}

/// `HV_REGISTER_VSM_VINA` (15.12.4): 6.0b describes VINA and its auto-reset
/// option without a layout; this is the Hyper-V headers'.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvRegisterVsmVina {
    /// The interrupt VINA raises in this VTL.
    pub vector: u8,
    pub enabled: bool,
    /// VinaAsserted is cleared on each entry to this VTL.
    pub auto_reset: bool,
    pub auto_eoi: bool,
    #[bits(53)]
    pub reserved: u64,
}

/// `HV_REGISTER_VSM_VP_SECURE_VTL_CONFIG` (15.5.2): a higher VTL's
/// configuration of a lower one, register [`HvRegisterName::vsm_vp_secure_config`].
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvRegisterVsmVpSecureVtlConfig {
    /// MBEC for the lower VTL (15.10).
    pub mbec_enabled: bool,
    /// The lower VTL's address space flushes wait until it is cleared.
    pub tlb_locked: bool,
    #[bits(62)]
    pub reserved: u64,
}

/// `HV_REGISTER_CR_INTERCEPT_CONTROL` (15.13.4): which lower-VTL accesses
/// are secure intercepts.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvRegisterCrInterceptControl {
    pub cr0_write: bool,
    pub cr4_write: bool,
    pub xcr0_write: bool,
    pub ia32_misc_enable_read: bool,
    pub ia32_misc_enable_write: bool,
    pub msr_lstar_read: bool,
    pub msr_lstar_write: bool,
    pub msr_star_read: bool,
    pub msr_star_write: bool,
    pub msr_cstar_read: bool,
    pub msr_cstar_write: bool,
    pub apic_base_msr_read: bool,
    pub apic_base_msr_write: bool,
    pub msr_efer_read: bool,
    pub msr_efer_write: bool,
    pub gdtr_write: bool,
    pub idtr_write: bool,
    pub ldtr_write: bool,
    pub tr_write: bool,
    pub msr_sysenter_cs_write: bool,
    pub msr_sysenter_eip_write: bool,
    pub msr_sysenter_esp_write: bool,
    pub msr_sfmask_write: bool,
    pub msr_tsc_aux_write: bool,
    pub msr_sgx_launch_control_write: bool,
    #[bits(39)]
    pub reserved: u64,
}

rsvdz! {
    HvRegisterVsmCodePageOffsets(u64) = 0x00ff_ffff;
    HvRegisterVsmPartitionConfig(u64) = 0x1fff;
    HvRegisterVsmVina(u64) = 0x7ff;
    HvRegisterVsmVpSecureVtlConfig(u64) = 0x3;
    HvRegisterCrInterceptControl(u64) = 0x01ff_ffff;
}

// ---------------------------------------------------------------------------
// VTL entry and exit (15.6, 15.7, 15.8)
// ---------------------------------------------------------------------------

/// The VTL call control input (15.6.1): all RsvdZ; a set bit is #UD
/// (15.6.1.1).
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvVtlCallInput {
    pub reserved: u64,
}

/// The VTL return control input (15.7.1); a reserved bit set is #UD (15.7.2).
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvVtlReturnInput {
    /// Leave the lower VTL's RAX and RCX as they are; else they are loaded
    /// from [`HvVpVtlControl`] (15.7.1.1).
    pub fast_return: bool,
    #[bits(63)]
    pub reserved: u64,
}

rsvdz! {
    HvVtlCallInput(u64) = 0;
    HvVtlReturnInput(u64) = 0x1;
}

open_enum! {
    /// `HV_VTL_ENTRY_REASON` (15.6.1.2): why the hypervisor entered the
    /// VTL. 6.0b names the type without values; these are the headers'.
    #[derive(IntoBytes, FromBytes, Immutable, KnownLayout)]
    pub struct HvVtlEntryReason(u32) {
        RESERVED = 0,
        /// A VTL call from a lower VTL.
        VTL_CALL = 1,
        /// An interrupt for this VTL (15.12.2).
        INTERRUPT = 2,
        /// A secure intercept (15.13).
        INTERCEPT = 3,
    }
}

/// `VinaStatus` of [`HvVpVtlControl`] (15.8.2).
#[bitfield(u8)]
#[derive(PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvVinaStatus {
    /// The VINA line is asserted; the VTL clears it to be told again (15.12.4).
    pub vina_asserted: bool,
    #[bits(7)]
    pub reserved: u8,
}

/// `HV_VP_VTL_CONTROL` (15.8.2): each VTL above 0 has one, at
/// [`HV_VP_VTL_CONTROL_OFFSET`] in its VP assist page.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvVpVtlControl {
    /// Written by the hypervisor on each entry.
    pub entry_reason: HvVtlEntryReason,
    pub vina_status: HvVinaStatus,
    pub reserved_z00: u8,
    pub reserved_z01: u16,
    /// `VtlReturnX64Rax`: loaded on a VTL return that is not fast.
    pub vtl_return_x64_rax: u64,
    /// `VtlReturnX64Rcx`.
    pub vtl_return_x64_rcx: u64,
}

impl HvVpVtlControl {
    /// The 32-bit view of the return registers: `VtlReturnX86Eax`, `Ecx`
    /// and `Edx` overlay the two x64 words.
    pub const fn vtl_return_x86(&self) -> [u32; 3] {
        [self.vtl_return_x64_rax as u32, (self.vtl_return_x64_rax >> 32) as u32, self.vtl_return_x64_rcx as u32]
    }
}

/// `HV_VP_ASSIST_PAGE` (7.8.7.2) as TLFS 6.0b lays it out; the rest of the
/// page is RsvdZ.
#[repr(C)]
#[derive(Clone, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvVpAssistPage {
    /// `HV_VIRTUAL_APIC_ASSIST`.
    pub apic_assist: u32,
    pub reserved_z0: u32,
    pub vtl_control: HvVpVtlControl,
    /// `HV_NESTED_ENLIGHTENMENTS_CONTROL`: Features low, HypercallControls high.
    pub nested_enlightenments_control: u64,
    pub enlighten_vm_entry: u8,
    pub reserved_z1: [u8; 7],
    pub current_nested_vmcs: u64,
    pub synthetic_time_unhalted_timer_expired: u8,
    pub reserved_z2: [u8; 7],
    /// `HV_VIRTUALIZATION_FAULT_INFORMATION` (16-byte aligned).
    pub virtualization_fault_information: [u64; 2],
    pub reserved_z_padding: [u8; HV_PAGE_SIZE - 80],
}

/// Where [`HvVpVtlControl`] is in the VP assist page.
pub const HV_VP_VTL_CONTROL_OFFSET: usize = offset_of!(HvVpAssistPage, vtl_control);

const _: () = assert!(size_of::<HvVpVtlControl>() == 24);
const _: () = assert!(HV_VP_VTL_CONTROL_OFFSET == 8);
const _: () = assert!(offset_of!(HvVpAssistPage, virtualization_fault_information) == 64);
const _: () = assert!(size_of::<HvVpAssistPage>() == HV_PAGE_SIZE);

// ---------------------------------------------------------------------------
// Hypercall inputs and outputs (15.15, 7.10.3, 9.4.6)
// ---------------------------------------------------------------------------

/// Header of HvModifyVtlProtectionMask (15.15.2; 6.0b omits the table, the
/// layout is the headers'). Rep elements are `u64` GPA page numbers.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvInputModifyVtlProtectionMask {
    pub partition_id: u64,
    /// The lower VTL's new access; [`HvMapGpaFlags::NO_ACCESS`] is allowed.
    pub map_flags: HvMapGpaFlags,
    pub target_vtl: HvInputVtl,
    pub reserved: [u8; 3],
}

impl HvInputModifyVtlProtectionMask {
    pub const fn partition(&self) -> HvPartitionId {
        HvPartitionId(self.partition_id)
    }

    /// True if a RsvdZ bit is set (flags, input VTL or padding).
    pub fn has_reserved_bits(&self) -> bool {
        !HvMapGpaFlags::is_valid(self.map_flags.into_bits())
            || self.target_vtl.into_bits() & !HvInputVtl::DEFINED_BITS != 0
            || self.reserved != [0; 3]
    }
}

/// `HV_ENABLE_PARTITION_VTL_FLAGS` (15.15.3).
#[bitfield(u8)]
#[derive(PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvEnablePartitionVtlFlags {
    /// MBEC may be used in the VTL (15.10.2).
    pub enable_mbec: bool,
    #[bits(7)]
    pub reserved: u8,
}

rsvdz! {
    HvEnablePartitionVtlFlags(u8) = 0x1;
}

/// Input of HvEnablePartitionVtl (15.15.3; 6.0b omits the table, the
/// layout is the headers').
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvInputEnablePartitionVtl {
    pub partition_id: u64,
    /// The VTL to enable: an [`HvVtl`], not an [`HvInputVtl`].
    pub target_vtl: HvVtl,
    pub flags: HvEnablePartitionVtlFlags,
    pub reserved_z0: u16,
    pub reserved_z1: u32,
}

impl HvInputEnablePartitionVtl {
    pub const fn partition(&self) -> HvPartitionId {
        HvPartitionId(self.partition_id)
    }

    /// True if a RsvdZ bit is set.
    pub const fn has_reserved_bits(&self) -> bool {
        self.flags.has_reserved_bits() || self.reserved_z0 != 0 || self.reserved_z1 != 0
    }
}

/// `HV_INITIAL_VP_CONTEXT` (7.10.3, 15.15.4): the state a VP starts in
/// (protected or long mode; real mode is skipped).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvInitialVpContext {
    pub rip: u64,
    pub rsp: u64,
    pub rflags: u64,
    pub cs: HvX64SegmentRegister,
    pub ds: HvX64SegmentRegister,
    pub es: HvX64SegmentRegister,
    pub fs: HvX64SegmentRegister,
    pub gs: HvX64SegmentRegister,
    pub ss: HvX64SegmentRegister,
    pub tr: HvX64SegmentRegister,
    pub ldtr: HvX64SegmentRegister,
    pub idtr: HvX64TableRegister,
    pub gdtr: HvX64TableRegister,
    pub efer: u64,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    /// IA32_PAT.
    pub msr_cr_pat: u64,
}

/// Registers an [`HvInitialVpContext`] sets.
pub const HV_INITIAL_VP_CONTEXT_REGISTERS: usize = 18;

impl HvInitialVpContext {
    /// The context as register values, in layout order: what starting the
    /// VP writes.
    pub fn registers(&self) -> [(HvRegisterName, HvRegisterValue); HV_INITIAL_VP_CONTEXT_REGISTERS] {
        let word = |low| HvRegisterValue { low, high: 0 };
        let segment = |s| {
            let (low, high) = segment_register_value(s);
            HvRegisterValue { low, high }
        };
        let table = |t: &HvX64TableRegister| {
            let (low, high) = table_register_value(t.base, t.limit);
            HvRegisterValue { low, high }
        };
        use HvRegisterName as R;
        [
            (R::RIP, word(self.rip)),
            (R::RSP, word(self.rsp)),
            (R::RFLAGS, word(self.rflags)),
            (R::CS, segment(&self.cs)),
            (R::DS, segment(&self.ds)),
            (R::ES, segment(&self.es)),
            (R::FS, segment(&self.fs)),
            (R::GS, segment(&self.gs)),
            (R::SS, segment(&self.ss)),
            (R::TR, segment(&self.tr)),
            (R::LDTR, segment(&self.ldtr)),
            (R::IDTR, table(&self.idtr)),
            (R::GDTR, table(&self.gdtr)),
            (R::EFER, word(self.efer)),
            (R::CR0, word(self.cr0)),
            (R::CR3, word(self.cr3)),
            (R::CR4, word(self.cr4)),
            (R::PAT, word(self.msr_cr_pat)),
        ]
    }
}

/// Input of HvEnableVpVtl (15.15.4) and of HvStartVirtualProcessor
/// (7.10.3): the same layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvInputVpInitialContext {
    pub partition_id: u64,
    pub vp_index: u32,
    /// The VTL to enable or start the VP in: an [`HvVtl`].
    pub target_vtl: HvVtl,
    pub reserved: [u8; 3],
    pub context: HvInitialVpContext,
}

/// Input of HvEnableVpVtl (15.15.4).
pub type HvInputEnableVpVtl = HvInputVpInitialContext;
/// Input of HvStartVirtualProcessor (7.10.3).
pub type HvInputStartVirtualProcessor = HvInputVpInitialContext;

impl HvInputVpInitialContext {
    pub const fn partition(&self) -> HvPartitionId {
        HvPartitionId(self.partition_id)
    }

    /// True if the RsvdZ padding is not zero.
    pub fn has_reserved_bits(&self) -> bool {
        self.reserved != [0; 3]
    }
}

/// `HV_TRANSLATE_GVA_CONTROL_FLAGS` (9.3.4). Bits 6-10 are the Hyper-V
/// headers' (later than 6.0b, which reserves them).
#[bitfield(u64)]
#[derive(PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvTranslateGvaControlFlags {
    pub validate_read: bool,
    pub validate_write: bool,
    pub validate_execute: bool,
    /// Check access as at CPL 0.
    pub privilege_exempt: bool,
    /// Set accessed (and, with `validate_write`, dirty) bits on the walk.
    pub set_page_table_bits: bool,
    /// Set TlbFlushInhibit on success (9.1.4).
    pub tlb_flush_inhibit: bool,
    /// Headers: check as a supervisor access whatever the CPL.
    pub supervisor_access: bool,
    /// Headers: check as a user access whatever the CPL.
    pub user_access: bool,
    /// Headers: apply SMAP as if RFLAGS.AC were 0.
    pub enforce_smap: bool,
    /// Headers: ignore SMAP, as if RFLAGS.AC were 1.
    pub override_smap: bool,
    /// Headers: a shadow-stack access.
    pub shadow_stack: bool,
    #[bits(45)]
    pub reserved: u64,
    /// `HV_TRANSLATE_GVA_INPUT_VTL_MASK`: whose page tables to walk.
    #[bits(8)]
    pub input_vtl: HvInputVtl,
}

rsvdz! {
    HvTranslateGvaControlFlags(u64) = 0xff00_0000_0000_07ff;
}

impl HvTranslateGvaControlFlags {
    /// The bits TLFS 6.0b defines: `HV_TRANSLATE_GVA_CONTROL_MASK` and the
    /// input VTL.
    pub const TLFS_6_0B_BITS: u64 = 0xff00_0000_0000_003f;

    /// At least one access to validate: else HV_STATUS_INVALID_PARAMETER (9.4.6).
    pub const fn validates_access(self) -> bool {
        self.validate_read() || self.validate_write() || self.validate_execute()
    }
}

/// Input of HvTranslateVirtualAddress (9.4.6).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvInputTranslateVirtualAddress {
    pub partition_id: u64,
    pub vp_index: u32,
    pub padding: u32,
    pub control_flags: HvTranslateGvaControlFlags,
    /// Guest virtual page number.
    pub gva_page: u64,
}

impl HvInputTranslateVirtualAddress {
    pub const fn partition(&self) -> HvPartitionId {
        HvPartitionId(self.partition_id)
    }

    /// True if a reserved flag (or a reserved bit of the input VTL) is set.
    pub const fn has_reserved_bits(&self) -> bool {
        self.control_flags.has_reserved_bits() || self.control_flags.input_vtl().reserved() != 0
    }
}

open_enum! {
    /// `HV_TRANSLATE_GVA_RESULT_CODE` (9.3.4). The text of 6.0b lost the
    /// values of `PAGE_NOT_PRESENT` and `INVALID_PAGE_TABLE_FLAGS`; they are
    /// the sequence's, as in the headers.
    pub struct HvTranslateGvaResultCode(u32) {
        SUCCESS = 0,
        PAGE_NOT_PRESENT = 1,
        PRIVILEGE_VIOLATION = 2,
        INVALID_PAGE_TABLE_FLAGS = 3,
        GPA_UNMAPPED = 4,
        GPA_NO_READ_ACCESS = 5,
        GPA_NO_WRITE_ACCESS = 6,
        GPA_ILLEGAL_OVERLAY_ACCESS = 7,
        /// A higher VTL or a nested hypervisor intercepted the access.
        INTERCEPT = 8,
    }
}

impl HvTranslateGvaResultCode {
    /// The output's GPA page is meaningful: the translation, or the page
    /// the walk could not access (9.4.6).
    pub const fn gpa_page_valid(self) -> bool {
        matches!(
            self,
            Self::SUCCESS
                | Self::GPA_UNMAPPED
                | Self::GPA_NO_READ_ACCESS
                | Self::GPA_NO_WRITE_ACCESS
                | Self::GPA_ILLEGAL_OVERLAY_ACCESS
        )
    }
}

/// `HV_TRANSLATE_GVA_RESULT` (9.3.4).
#[bitfield(u64)]
#[derive(PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvTranslateGvaResult {
    /// An [`HvTranslateGvaResultCode`]; see [`HvTranslateGvaResult::code`].
    pub result_code: u32,
    /// An [`HvCacheType`] (on success); see [`HvTranslateGvaResult::cache`].
    pub cache_type: u8,
    /// The GPA is a hypervisor overlay page.
    pub overlay_page: bool,
    #[bits(23)]
    pub reserved: u32,
}

impl HvTranslateGvaResult {
    /// A result with no cache type and no overlay.
    pub const fn from_code(code: HvTranslateGvaResultCode) -> Self {
        HvTranslateGvaResult::new().with_result_code(code.0)
    }

    pub const fn code(self) -> HvTranslateGvaResultCode {
        HvTranslateGvaResultCode(self.result_code())
    }

    pub const fn cache(self) -> HvCacheType {
        HvCacheType(self.cache_type() as u32)
    }
}

/// Output of HvTranslateVirtualAddress (9.4.6).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvOutputTranslateVirtualAddress {
    pub translation_result: HvTranslateGvaResult,
    /// See [`HvTranslateGvaResultCode::gpa_page_valid`].
    pub gpa_page: u64,
}

const _: () = assert!(size_of::<HvInputModifyVtlProtectionMask>() == 16);
const _: () = assert!(size_of::<HvInputEnablePartitionVtl>() == 16);
const _: () = assert!(size_of::<HvInitialVpContext>() == 224);
const _: () = assert!(size_of::<HvInputVpInitialContext>() == 240);
const _: () = assert!(offset_of!(HvInputVpInitialContext, context) == 16);
const _: () = assert!(size_of::<HvInputTranslateVirtualAddress>() == 32);
const _: () = assert!(size_of::<HvOutputTranslateVirtualAddress>() == 16);

#[cfg(test)]
mod tests;
