//! Microsoft Hypervisor Top-Level Functional Specification (TLFS 6.0b)
//! definitions, with TLFS names: the one source of TLFS numbers and layouts
//! for the Tessera kernel and its services.
//!
//! Guest- and caller-supplied codes are open enums ([`abi::open_enum!`]), so
//! an unknown value is representable and is refused by a `match`, never
//! transmuted. Errors are [`HvError`], a non-zero status, as in OpenVMM's
//! `hvdef`. Only what the services use so far is here; the section of the
//! specification is given for each group.
//!
//! SynIC messages and the intercept messages the kernel sends the VID for VM
//! exits (TLFS 11.10, 13) are zerocopy layouts: see [`HvMessage`] and
//! [`HvMessageBody`]. Virtual Secure Mode (TLFS 15) is in [`vsm`], ahead of
//! its use.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use abi::open_enum;
use bitfield_struct::bitfield;
use core::num::NonZeroU16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub mod cpuid;
pub mod exit_state;
pub mod hypercall;
mod message;
pub mod monitor;
pub mod msr;
pub mod vsm;

pub use hypercall::HvCallCode;
pub use message::*;
/// The zerocopy this crate's layouts implement, for `as_bytes` and friends.
pub use zerocopy;

open_enum! {
    /// Hypercall status codes (TLFS Appendix B).
    pub struct HvStatus(u16) {
        SUCCESS = 0x0000,
        INVALID_HYPERCALL_CODE = 0x0002,
        INVALID_HYPERCALL_INPUT = 0x0003,
        INVALID_ALIGNMENT = 0x0004,
        INVALID_PARAMETER = 0x0005,
        ACCESS_DENIED = 0x0006,
        INVALID_PARTITION_STATE = 0x0007,
        OPERATION_DENIED = 0x0008,
        UNKNOWN_PROPERTY = 0x0009,
        PROPERTY_VALUE_OUT_OF_RANGE = 0x000A,
        INSUFFICIENT_MEMORY = 0x000B,
        PARTITION_TOO_DEEP = 0x000C,
        INVALID_PARTITION_ID = 0x000D,
        INVALID_VP_INDEX = 0x000E,
        INVALID_PORT_ID = 0x0011,
        INVALID_CONNECTION_ID = 0x0012,
        INSUFFICIENT_BUFFERS = 0x0013,
        NOT_ACKNOWLEDGED = 0x0014,
        INVALID_VP_STATE = 0x0015,
        ACKNOWLEDGED = 0x0016,
        INVALID_SAVE_RESTORE_STATE = 0x0017,
        INVALID_SYNIC_STATE = 0x0018,
        OBJECT_IN_USE = 0x0019,
        INVALID_PROXIMITY_DOMAIN_INFO = 0x001A,
        NO_DATA = 0x001B,
        INACTIVE = 0x001C,
        NO_RESOURCES = 0x001D,
        FEATURE_UNAVAILABLE = 0x001E,
        INVALID_REGISTER_VALUE = 0x0050,
        /// Named by TLFS 6.0b (7.10.3, 15.15) but missing from Appendix B;
        /// the value is the Hyper-V headers'.
        INVALID_VTL_STATE = 0x0051,
        OPERATION_FAILED = 0x0071,
        /// Not in TLFS 6.0b; the Hyper-V headers' status for enabling an
        /// enabled VTL.
        VTL_ALREADY_ENABLED = 0x0086,
    }
}

/// A failed hypercall status: never [`HvStatus::SUCCESS`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct HvError(NonZeroU16);

macro_rules! hv_errors {
    ($($name:ident),* $(,)?) => {
        impl HvError {
            $(pub const $name: HvError = HvError::from_status(HvStatus::$name).unwrap();)*
        }
    };
}

hv_errors!(
    INVALID_HYPERCALL_CODE,
    INVALID_HYPERCALL_INPUT,
    INVALID_ALIGNMENT,
    INVALID_PARAMETER,
    ACCESS_DENIED,
    INVALID_PARTITION_STATE,
    OPERATION_DENIED,
    INSUFFICIENT_MEMORY,
    INVALID_PARTITION_ID,
    INVALID_VP_INDEX,
    INVALID_PORT_ID,
    INVALID_CONNECTION_ID,
    INSUFFICIENT_BUFFERS,
    INVALID_VP_STATE,
    OBJECT_IN_USE,
    NO_DATA,
    NO_RESOURCES,
    FEATURE_UNAVAILABLE,
    INVALID_REGISTER_VALUE,
    INVALID_SYNIC_STATE,
    OPERATION_FAILED,
    INVALID_VTL_STATE,
    VTL_ALREADY_ENABLED,
);

impl HvError {
    /// `None` for [`HvStatus::SUCCESS`].
    pub const fn from_status(status: HvStatus) -> Option<HvError> {
        match NonZeroU16::new(status.0) {
            Some(code) => Some(HvError(code)),
            None => None,
        }
    }

    pub const fn status(self) -> HvStatus {
        HvStatus(self.0.get())
    }
}

impl core::fmt::Debug for HvError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "HvError({:?})", self.status())
    }
}

/// The wire form used by service interfaces: the TLFS status as a `u64`.
impl From<HvError> for u64 {
    fn from(error: HvError) -> u64 {
        u64::from(error.0.get())
    }
}

/// Zero (success) and values wider than a status are refused.
impl TryFrom<u64> for HvError {
    type Error = u64;
    fn try_from(code: u64) -> Result<HvError, u64> {
        u16::try_from(code).ok().and_then(|c| HvError::from_status(HvStatus(c))).ok_or(code)
    }
}

pub type HvResult<T> = Result<T, HvError>;

/// The status a hypercall returning `result` reports.
pub fn status_of<T>(result: &HvResult<T>) -> HvStatus {
    match result {
        Ok(_) => HvStatus::SUCCESS,
        Err(e) => e.status(),
    }
}

/// A partition identifier (`HV_PARTITION_ID`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct HvPartitionId(pub u64);

impl HvPartitionId {
    /// Never names a partition.
    pub const INVALID: HvPartitionId = HvPartitionId(0);
    /// "The calling partition".
    pub const SELF: HvPartitionId = HvPartitionId(u64::MAX);
}

/// Virtual processor index (`HV_VP_INDEX`).
pub type HvVpIndex = u32;

/// `HV_VP_INDEX_SELF` (7.8.1): the calling VP, in a call that takes a VP index.
pub const HV_VP_INDEX_SELF: HvVpIndex = u32::MAX - 1;

/// Number of synthetic interrupt sources per virtual processor (`HV_SYNIC_SINT_COUNT`).
pub const HV_SYNIC_SINT_COUNT: u32 = 16;

/// Port IDs and connection IDs are 24 bits; the high 8 are reserved (TLFS 11.10.6/7).
pub const HV_ID_MASK: u32 = 0x00ff_ffff;

/// A port ID (`HV_PORT_ID`): 24 bits, high 8 reserved and zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HvPortId(u32);

impl HvPortId {
    /// `None` if a reserved bit is set.
    pub const fn new(raw: u32) -> Option<HvPortId> {
        if raw & !HV_ID_MASK == 0 { Some(HvPortId(raw)) } else { None }
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

/// A connection ID (`HV_CONNECTION_ID`): 24 bits, high 8 reserved and zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HvConnectionId(u32);

impl HvConnectionId {
    /// `None` if a reserved bit is set.
    pub const fn new(raw: u32) -> Option<HvConnectionId> {
        if raw & !HV_ID_MASK == 0 { Some(HvConnectionId(raw)) } else { None }
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

open_enum! {
    /// `HV_PORT_TYPE` (TLFS 11.10.6).
    pub struct HvPortType(u32) {
        MESSAGE = 1,
        EVENT = 2,
        MONITOR = 3,
    }
}

/// Access granted by `HvMapGpaPages` and, to a lower VTL, by
/// `HvModifyVtlProtectionMask` (`HV_MAP_GPA_FLAGS`; values from the
/// Hyper-V headers, as in OpenVMM: TLFS 6.0b lists the calls but not the flags).
#[bitfield(u32)]
#[derive(PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvMapGpaFlags {
    pub readable: bool,
    pub writable: bool,
    pub kernel_executable: bool,
    pub user_executable: bool,
    #[bits(28)]
    pub _reserved: u32,
}

impl HvMapGpaFlags {
    /// The bits TLFS defines; the rest are reserved and must be zero.
    pub const DEFINED_BITS: u32 = 0xf;

    /// True if no reserved bit is set in `bits`.
    pub const fn is_valid(bits: u32) -> bool {
        bits & !Self::DEFINED_BITS == 0
    }
}

open_enum! {
    /// `HV_MESSAGE_TYPE` (TLFS 11.10.2): the type of a SynIC message, and of
    /// an intercept message. TLFS names are kept (`MSR_INTERCEPT` and
    /// `EXCEPTION_INTERCEPT` have no `X64_`); payload layouts are in
    /// [`HvMessageBody`].
    #[derive(IntoBytes, FromBytes, Immutable, KnownLayout)]
    pub struct HvMessageType(u32) {
        NONE = 0x0000_0000,
        UNMAPPED_GPA = 0x8000_0000,
        GPA_INTERCEPT = 0x8000_0001,
        TIMER_EXPIRED = 0x8000_0010,
        INVALID_VP_REGISTER_VALUE = 0x8000_0020,
        UNRECOVERABLE_EXCEPTION = 0x8000_0021,
        UNSUPPORTED_FEATURE = 0x8000_0022,
        TLB_PAGE_SIZE_MISMATCH = 0x8000_0023,
        EVENT_LOG_BUFFERS_COMPLETE = 0x8000_0040,
        HYPERCALL_INTERCEPT = 0x8000_0050,
        X64_IO_PORT_INTERCEPT = 0x8001_0000,
        MSR_INTERCEPT = 0x8001_0001,
        X64_CPUID_INTERCEPT = 0x8001_0002,
        EXCEPTION_INTERCEPT = 0x8001_0003,
        X64_APIC_EOI = 0x8001_0004,
        X64_LEGACY_FP_ERROR = 0x8001_0005,
        REGISTER_INTERCEPT = 0x8001_0006,
        /// `HvMessageTypeX64Halt`: not in TLFS 6.0b; the value is the
        /// Hyper-V headers' (as in OpenVMM and Linux).
        X64_HALT = 0x8001_0007,
    }
}

impl HvMessageType {
    /// Types with this bit set are the hypervisor's; guests cannot send them.
    pub const HYPERVISOR_MASK: u32 = 0x8000_0000;

    /// True for the messages a VP's intercept handler receives.
    pub const fn is_intercept(self) -> bool {
        matches!(
            self,
            HvMessageType::UNMAPPED_GPA
                | HvMessageType::GPA_INTERCEPT
                | HvMessageType::HYPERCALL_INTERCEPT
                | HvMessageType::X64_IO_PORT_INTERCEPT
                | HvMessageType::MSR_INTERCEPT
                | HvMessageType::X64_CPUID_INTERCEPT
                | HvMessageType::EXCEPTION_INTERCEPT
                | HvMessageType::X64_APIC_EOI
                | HvMessageType::X64_LEGACY_FP_ERROR
                | HvMessageType::REGISTER_INTERCEPT
                | HvMessageType::X64_HALT
        )
    }
}

open_enum! {
    /// `HV_REGISTER_NAME` values (TLFS 7.8.2) of the x64 registers.
    /// Segment and table registers are 128-bit values: see
    /// [`HvX64SegmentRegister`] and [`table_register_value`].
    #[derive(IntoBytes, FromBytes, Immutable, KnownLayout)]
    pub struct HvRegisterName(u32) {
        /// [`HvX64PendingInterruptionRegister`]: an event to deliver on resume.
        PENDING_INTERRUPTION = 0x0001_0002,
        /// [`HvX64InterruptStateRegister`]: interrupt shadow, NMI masking.
        INTERRUPT_STATE = 0x0001_0003,
        RAX = 0x0002_0000,
        RCX = 0x0002_0001,
        RDX = 0x0002_0002,
        RBX = 0x0002_0003,
        RSP = 0x0002_0004,
        RBP = 0x0002_0005,
        RSI = 0x0002_0006,
        RDI = 0x0002_0007,
        R8 = 0x0002_0008,
        R9 = 0x0002_0009,
        R10 = 0x0002_000A,
        R11 = 0x0002_000B,
        R12 = 0x0002_000C,
        R13 = 0x0002_000D,
        R14 = 0x0002_000E,
        R15 = 0x0002_000F,
        RIP = 0x0002_0010,
        RFLAGS = 0x0002_0011,
        XMM0 = 0x0003_0000,
        XMM1 = 0x0003_0001,
        XMM2 = 0x0003_0002,
        XMM3 = 0x0003_0003,
        XMM4 = 0x0003_0004,
        XMM5 = 0x0003_0005,
        XMM6 = 0x0003_0006,
        XMM7 = 0x0003_0007,
        XMM8 = 0x0003_0008,
        XMM9 = 0x0003_0009,
        XMM10 = 0x0003_000A,
        XMM11 = 0x0003_000B,
        XMM12 = 0x0003_000C,
        XMM13 = 0x0003_000D,
        XMM14 = 0x0003_000E,
        XMM15 = 0x0003_000F,
        CR0 = 0x0004_0000,
        CR2 = 0x0004_0001,
        CR3 = 0x0004_0002,
        CR4 = 0x0004_0003,
        CR8 = 0x0004_0004,
        /// `HvX64RegisterXfem`: XCR0.
        XFEM = 0x0004_0005,
        DR0 = 0x0005_0000,
        DR1 = 0x0005_0001,
        DR2 = 0x0005_0002,
        DR3 = 0x0005_0003,
        DR6 = 0x0005_0004,
        DR7 = 0x0005_0005,
        ES = 0x0006_0000,
        CS = 0x0006_0001,
        SS = 0x0006_0002,
        DS = 0x0006_0003,
        FS = 0x0006_0004,
        GS = 0x0006_0005,
        LDTR = 0x0006_0006,
        TR = 0x0006_0007,
        IDTR = 0x0007_0000,
        GDTR = 0x0007_0001,
        TSC = 0x0008_0000,
        EFER = 0x0008_0001,
        KERNEL_GS_BASE = 0x0008_0002,
        APIC_BASE = 0x0008_0003,
        PAT = 0x0008_0004,
        SYSENTER_EIP = 0x0008_0006,
        SYSENTER_ESP = 0x0008_0007,
        LSTAR = 0x0008_0009,
        CSTAR = 0x0008_000A,
        /// `HvX64RegisterVpRuntime`: the VP's run time in 100 ns units (7.9.1).
        VP_RUNTIME = 0x0009_0000,
        /// `HvRegisterVpAssistPage` (7.10.1): the VP assist page MSR's value.
        VP_ASSIST_PAGE = 0x0009_0013,
        // VSM registers (7.8.2, 15.3, 15.5, 15.8, 15.12.4): layouts in [`vsm`].
        /// [`vsm::HvRegisterVsmCodePageOffsets`], read-only.
        VSM_CODE_PAGE_OFFSETS = 0x000D_0002,
        /// [`vsm::HvRegisterVsmVpStatus`], read-only.
        VSM_VP_STATUS = 0x000D_0003,
        /// [`vsm::HvRegisterVsmPartitionStatus`], read-only.
        VSM_PARTITION_STATUS = 0x000D_0004,
        /// [`vsm::HvRegisterVsmVina`].
        VSM_VINA = 0x000D_0005,
        /// [`vsm::HvRegisterVsmCapabilities`], read-only.
        VSM_CAPABILITIES = 0x000D_0006,
        /// [`vsm::HvRegisterVsmPartitionConfig`], one per VTL above 0.
        VSM_PARTITION_CONFIG = 0x000D_0007,
        /// [`vsm::HvRegisterVsmVpSecureVtlConfig`] of VTL 0; VTL n's is
        /// 0x000D_0010 + n, n < 15: see [`HvRegisterName::vsm_vp_secure_config`].
        VSM_VP_SECURE_CONFIG_VTL0 = 0x000D_0010,
        VSM_VP_SECURE_CONFIG_VTL14 = 0x000D_001E,
        /// `HvRegisterVsmVpWaitForTlbLock` (7.8.2; 6.0b gives no layout).
        VSM_VP_WAIT_FOR_TLB_LOCK = 0x000D_0020,
        /// [`vsm::HvRegisterCrInterceptControl`] (15.13.4).
        CR_INTERCEPT_CONTROL = 0x000E_0000,
        /// Secure intercept mask registers (15.13.4.1): only the set bits'
        /// accesses are intercepted.
        CR_INTERCEPT_CR0_MASK = 0x000E_0001,
        CR_INTERCEPT_CR4_MASK = 0x000E_0002,
        CR_INTERCEPT_IA32_MISC_ENABLE_MASK = 0x000E_0003,
    }
}

open_enum! {
    /// `HV_X64_PENDING_INTERRUPTION_TYPE` (TLFS 7.9.3); the values are
    /// the VMX interruption types.
    pub struct HvX64PendingInterruptionType(u8) {
        INTERRUPT = 0,
        NMI = 2,
        EXCEPTION = 3,
        SOFTWARE_INTERRUPT = 4,
        PRIVILEGED_SOFTWARE_EXCEPTION = 5,
        SOFTWARE_EXCEPTION = 6,
    }
}

/// `HV_X64_PENDING_INTERRUPTION_REGISTER` (TLFS 7.9.3): an interruption
/// the hypervisor delivers through the guest's IDT when the VP resumes.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvX64PendingInterruptionRegister {
    pub interruption_pending: bool,
    /// An [`HvX64PendingInterruptionType`].
    #[bits(3)]
    pub interruption_type: u8,
    pub deliver_error_code: bool,
    /// For software interrupts and exceptions: the instruction's length.
    #[bits(4)]
    pub instruction_length: u8,
    #[bits(7)]
    pub reserved: u8,
    pub interruption_vector: u16,
    pub error_code: u32,
}

impl HvX64PendingInterruptionRegister {
    /// A pending interruption of `kind` at `vector`, with an error code if
    /// given (software events also need their instruction length).
    pub fn pending(kind: HvX64PendingInterruptionType, vector: u8, error_code: Option<u32>) -> Self {
        HvX64PendingInterruptionRegister::new()
            .with_interruption_pending(true)
            .with_interruption_type(kind.0)
            .with_deliver_error_code(error_code.is_some())
            .with_interruption_vector(u16::from(vector))
            .with_error_code(error_code.unwrap_or(0))
    }

    /// The type as an open enum.
    pub fn kind(&self) -> HvX64PendingInterruptionType {
        HvX64PendingInterruptionType(self.interruption_type())
    }
}

/// `HV_X64_INTERRUPT_STATE_REGISTER` (TLFS 7.9.2).
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvX64InterruptStateRegister {
    /// STI or MOV SS blocks interrupts for one instruction.
    pub interrupt_shadow: bool,
    pub nmi_masked: bool,
    #[bits(62)]
    pub reserved: u64,
}

impl HvRegisterName {
    /// `HvRegisterVsmVpSecureConfigVtl<vtl>`, `vtl < 15` (a VTL configures
    /// those below it, so VTL 15 has none).
    pub const fn vsm_vp_secure_config(vtl: u8) -> Option<HvRegisterName> {
        if vtl < vsm::HV_VTL_COUNT_MAX - 1 {
            Some(HvRegisterName(HvRegisterName::VSM_VP_SECURE_CONFIG_VTL0.0 + vtl as u32))
        } else {
            None
        }
    }

    /// The VTL whose `HvRegisterVsmVpSecureConfigVtl<n>` this is.
    pub const fn vsm_vp_secure_config_vtl(self) -> Option<u8> {
        if self.0 >= HvRegisterName::VSM_VP_SECURE_CONFIG_VTL0.0
            && self.0 <= HvRegisterName::VSM_VP_SECURE_CONFIG_VTL14.0
        {
            Some((self.0 - HvRegisterName::VSM_VP_SECURE_CONFIG_VTL0.0) as u8)
        } else {
            None
        }
    }

    /// The debug register number of `DR0`..`DR3`.
    pub const fn dr_index(self) -> Option<usize> {
        if self.0 >= HvRegisterName::DR0.0 && self.0 <= HvRegisterName::DR3.0 {
            Some((self.0 - HvRegisterName::DR0.0) as usize)
        } else {
            None
        }
    }

    /// The XMM register number of `XMM0`..`XMM15`.
    pub const fn xmm_index(self) -> Option<usize> {
        if self.0 >= HvRegisterName::XMM0.0 && self.0 <= HvRegisterName::XMM15.0 {
            Some((self.0 - HvRegisterName::XMM0.0) as usize)
        } else {
            None
        }
    }
}

/// A segment register as a 128-bit register value: (low, high) words.
pub fn segment_register_value(segment: &HvX64SegmentRegister) -> (u64, u64) {
    let high =
        u64::from(segment.limit) | u64::from(segment.selector) << 32 | u64::from(segment.attributes.into_bits()) << 48;
    (segment.base, high)
}

/// The segment register a 128-bit register value holds.
pub fn segment_register_from_value(low: u64, high: u64) -> HvX64SegmentRegister {
    HvX64SegmentRegister {
        base: low,
        limit: high as u32,
        selector: (high >> 32) as u16,
        attributes: HvX64SegmentAttributes::from_bits((high >> 48) as u16),
    }
}

/// `HV_X64_TABLE_REGISTER` (TLFS 7.9.6): GDTR or IDTR as it is laid out in
/// a 128-bit register value and in `HV_INITIAL_VP_CONTEXT`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvX64TableRegister {
    pub pad: [u16; 3],
    pub limit: u16,
    pub base: u64,
}

const _: () = assert!(core::mem::size_of::<HvX64TableRegister>() == 16);

/// An `HV_X64_TABLE_REGISTER` (GDTR, IDTR) as (low, high): the limit in
/// bits 48..63 of the low word (after three reserved u16s), the base high.
pub fn table_register_value(base: u64, limit: u16) -> (u64, u64) {
    (u64::from(limit) << 48, base)
}

/// (base, limit) of a table register value.
pub fn table_register_from_value(low: u64, high: u64) -> (u64, u16) {
    (high, (low >> 48) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_and_table_registers_round_trip_through_two_words() {
        let cs = HvX64SegmentRegister {
            base: 0x1000,
            limit: 0xffff_ffff,
            selector: 0x08,
            attributes: HvX64SegmentAttributes::from_bits(0xc09b),
        };
        let (low, high) = segment_register_value(&cs);
        assert_eq!((low, high), (0x1000, 0xc09b_0008_ffff_ffff));
        assert_eq!(segment_register_from_value(low, high), cs);
        assert_eq!(table_register_from_value(table_register_value(0x2000, 0x27).0, 0x2000), (0x2000, 0x27));
    }

    #[test]
    fn errors_are_never_success_and_round_trip_as_u64() {
        assert_eq!(HvError::from_status(HvStatus::SUCCESS), None);
        assert_eq!(HvError::INVALID_PARTITION_STATE.status(), HvStatus(7));
        for e in [HvError::INVALID_HYPERCALL_CODE, HvError::INSUFFICIENT_MEMORY, HvError::INVALID_CONNECTION_ID] {
            assert_eq!(HvError::try_from(u64::from(e)), Ok(e));
        }
        assert_eq!(HvError::try_from(0), Err(0));
        assert_eq!(HvError::try_from(0x1_0000), Err(0x1_0000));
        // Unknown but well-formed statuses stay representable.
        assert_eq!(HvError::try_from(0x1234).map(HvError::status), Ok(HvStatus(0x1234)));
        assert_eq!(status_of::<()>(&Ok(())), HvStatus::SUCCESS);
        assert_eq!(status_of::<()>(&Err(HvError::ACCESS_DENIED)), HvStatus::ACCESS_DENIED);
        assert_eq!(format!("{:?}", HvError::INVALID_PARAMETER), "HvError(INVALID_PARAMETER)");
    }

    #[test]
    fn the_statuses_the_services_promise_have_their_tlfs_values() {
        assert_eq!(HvStatus::SUCCESS.0, 0);
        assert_eq!(HvStatus::INVALID_HYPERCALL_CODE.0, 2);
        assert_eq!(HvStatus::INVALID_PARAMETER.0, 5);
        assert_eq!(HvStatus::ACCESS_DENIED.0, 6);
        assert_eq!(HvStatus::INVALID_PARTITION_STATE.0, 7);
        assert_eq!(HvStatus::INSUFFICIENT_MEMORY.0, 0xB);
        assert_eq!(HvStatus::INVALID_PORT_ID.0, 0x11);
        assert_eq!(HvStatus::INVALID_CONNECTION_ID.0, 0x12);
    }

    #[test]
    fn ids_refuse_reserved_bits() {
        assert_eq!(HvPortId::new(0x00ff_ffff).map(HvPortId::get), Some(0x00ff_ffff));
        assert_eq!(HvPortId::new(0x0100_0000), None);
        assert_eq!(HvConnectionId::new(5).map(HvConnectionId::get), Some(5));
        assert_eq!(HvConnectionId::new(0x8000_0000), None);
    }

    #[test]
    fn intercept_message_types_are_recognised() {
        assert!(HvMessageType::X64_IO_PORT_INTERCEPT.is_intercept());
        assert!(HvMessageType(0x8001_0002).is_intercept());
        assert!(!HvMessageType::NONE.is_intercept());
        assert!(!HvMessageType::TIMER_EXPIRED.is_intercept());
        assert!(HvMessageType(0x8001_0007).is_intercept());
        assert!(!HvMessageType(0x8001_0008).is_intercept());
        assert!(!HvMessageType::UNRECOVERABLE_EXCEPTION.is_intercept());
    }

    #[test]
    fn map_flags_layout() {
        let rw = HvMapGpaFlags::new().with_readable(true).with_writable(true);
        assert_eq!(rw.into_bits(), 3);
        assert_eq!(HvMapGpaFlags::new().with_user_executable(true).into_bits(), 8);
        assert!(HvMapGpaFlags::is_valid(0xf) && !HvMapGpaFlags::is_valid(0x10));
    }
}
