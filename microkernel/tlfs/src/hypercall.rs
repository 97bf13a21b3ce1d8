//! The hypercall ABI (TLFS 3): call codes, the control value a caller puts
//! in RCX (or EDX:EAX), the result value returned in RAX (or EDX:EAX), the
//! partition privileges that gate calls (TLFS 4.2.2), and the input and
//! output layouts of the calls Tessera implements.
//!
//! Bitfields declare every reserved field and give the mask of the bits the
//! TLFS defines, so a validator refuses reserved bits without hand-written
//! shifts. Layouts are zerocopy `#[repr(C)]` with pinned sizes. Values the
//! TLFS 6.0b text leaves out (the `HV_FLUSH_*` flags, the input of
//! HvGetVpIndexFromApicId and HvNotifyLongSpinWait) follow the published
//! Hyper-V headers; each place says so.

use crate::{HvPartitionId, HvRegisterName};
use abi::open_enum;
use bitfield_struct::bitfield;
use core::mem::size_of;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

open_enum! {
    /// Hypercall call codes (TLFS Appendix A, 3.14). They double as the
    /// services' operation numbers for the partition-management calls.
    pub struct HvCallCode(u16) {
        FLUSH_VIRTUAL_ADDRESS_SPACE = 0x0002,
        FLUSH_VIRTUAL_ADDRESS_LIST = 0x0003,
        NOTIFY_LONG_SPIN_WAIT = 0x0008,
        SEND_SYNTHETIC_CLUSTER_IPI = 0x000B,
        /// `HvCallModifyVtlProtectionMask` (15.15.2): [`crate::vsm::HvInputModifyVtlProtectionMask`].
        MODIFY_VTL_PROTECTION_MASK = 0x000C,
        /// `HvCallEnablePartitionVtl` (15.15.3): [`crate::vsm::HvInputEnablePartitionVtl`].
        ENABLE_PARTITION_VTL = 0x000D,
        /// `HvCallEnableVpVtl` (15.15.4): [`crate::vsm::HvInputEnableVpVtl`].
        ENABLE_VP_VTL = 0x000F,
        /// `HvCallVtlCall` (15.15.5): control in RCX, [`crate::vsm::HvVtlCallInput`].
        VTL_CALL = 0x0011,
        /// `HvCallVtlReturn` (15.15.6): control in RCX, [`crate::vsm::HvVtlReturnInput`].
        VTL_RETURN = 0x0012,
        FLUSH_VIRTUAL_ADDRESS_SPACE_EX = 0x0013,
        FLUSH_VIRTUAL_ADDRESS_LIST_EX = 0x0014,
        SEND_SYNTHETIC_CLUSTER_IPI_EX = 0x0015,
        CREATE_PARTITION = 0x0040,
        INITIALIZE_PARTITION = 0x0041,
        FINALIZE_PARTITION = 0x0042,
        DELETE_PARTITION = 0x0043,
        MAP_GPA_PAGES = 0x004B,
        UNMAP_GPA_PAGES = 0x004C,
        CREATE_VP = 0x004E,
        GET_VP_REGISTERS = 0x0050,
        SET_VP_REGISTERS = 0x0051,
        /// `HvTranslateVirtualAddress` (9.4.6): [`crate::vsm::HvInputTranslateVirtualAddress`].
        TRANSLATE_VIRTUAL_ADDRESS = 0x0052,
        DELETE_PORT = 0x0058,
        DISCONNECT_PORT = 0x005B,
        POST_MESSAGE = 0x005C,
        SIGNAL_EVENT = 0x005D,
        CREATE_PORT = 0x0095,
        CONNECT_PORT = 0x0096,
        /// `HvCallStartVirtualProcessor` (7.10.3): [`crate::vsm::HvInputStartVirtualProcessor`].
        START_VIRTUAL_PROCESSOR = 0x0099,
        GET_VP_INDEX_FROM_APIC_ID = 0x009A,
        /// `HvExtCallQueryCapabilities`: the first extended hypercall (3.14).
        EXT_QUERY_CAPABILITIES = 0x8001,
    }
}

impl HvCallCode {
    /// Codes above this are extended hypercalls (TLFS 3.14).
    pub const EXTENDED_BASE: u16 = 0x8000;

    pub const fn is_extended(self) -> bool {
        self.0 > Self::EXTENDED_BASE
    }
}

/// Size of a hypercall input or output page; parameter lists may not cross it.
pub const HV_PAGE_SIZE: u64 = 4096;
/// Hypercall parameter GPAs are 8-byte aligned (TLFS 3.6).
pub const HV_HYPERCALL_ALIGNMENT: u64 = 8;
/// Register fast input: RDX and R8 (TLFS 3.7).
pub const HV_FAST_INPUT_BYTES: usize = 16;
/// XMM fast input and output: RDX, R8 and XMM0-XMM5 (TLFS 3.7.2, 3.8.1).
pub const HV_XMM_FAST_BYTES: usize = 112;
/// XMM registers of the XMM fast convention.
pub const HV_XMM_FAST_REGISTERS: usize = 6;
/// Largest rep count (and rep start index) the control value can carry.
pub const HV_MAX_REP_COUNT: u16 = 0xfff;

const _: () = assert!(HV_FAST_INPUT_BYTES + HV_XMM_FAST_REGISTERS * 16 == HV_XMM_FAST_BYTES);

/// The hypercall input value (TLFS 3.7): RCX, or EDX:EAX for 32-bit callers.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvHypercallInput {
    /// An [`HvCallCode`]; see [`HvHypercallInput::code`].
    pub call_code: u16,
    /// Register (and XMM) calling convention.
    pub fast: bool,
    /// Qwords of variable header after the fixed header (3.7.1).
    #[bits(9)]
    pub variable_header_size: u16,
    /// For the L0 hypervisor in a nested setup; Tessera is L0.
    pub is_nested: bool,
    #[bits(5)]
    pub reserved0: u8,
    #[bits(12)]
    pub rep_count: u16,
    #[bits(4)]
    pub reserved1: u8,
    #[bits(12)]
    pub rep_start_index: u16,
    #[bits(4)]
    pub reserved2: u8,
}

impl HvHypercallInput {
    /// The bits TLFS defines; the rest are RsvdZ.
    pub const DEFINED_BITS: u64 = 0x0fff_0fff_07ff_ffff;

    pub const fn code(self) -> HvCallCode {
        HvCallCode(self.call_code())
    }

    /// True if a reserved bit is set.
    pub const fn has_reserved_bits(self) -> bool {
        self.0 & !Self::DEFINED_BITS != 0
    }
}

/// The hypercall result value (TLFS 3.8): RAX, or EDX:EAX for 32-bit callers.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvHypercallOutput {
    /// An [`crate::HvStatus`]; see [`HvHypercallOutput::status`].
    pub call_status: u16,
    pub reserved0: u16,
    /// Total reps completed, counted from the start of the list.
    #[bits(12)]
    pub reps_completed: u16,
    #[bits(20)]
    pub reserved1: u32,
}

impl HvHypercallOutput {
    pub const fn status(self) -> crate::HvStatus {
        crate::HvStatus(self.call_status())
    }
}

const _: () = assert!(size_of::<HvHypercallInput>() == 8);
const _: () = assert!(size_of::<HvHypercallOutput>() == 8);

pub use crate::cpuid::HvPartitionPrivilegeMask;

/// `HV_INPUT_VTL` (TLFS 15.15.1): the VTL a call targets.
#[bitfield(u8)]
#[derive(PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvInputVtl {
    #[bits(4)]
    pub target_vtl: u8,
    /// Without it the call targets the caller's VTL.
    pub use_target_vtl: bool,
    #[bits(3)]
    pub reserved: u8,
}

impl HvInputVtl {
    pub const DEFINED_BITS: u8 = 0x1f;

    /// True if the input names VTL 0 or the caller's VTL with no reserved bit
    /// set: the only target of a partition without VSM.
    pub const fn is_vtl0_or_self(self) -> bool {
        self.0 & !Self::DEFINED_BITS == 0 && (!self.use_target_vtl() || self.target_vtl() == 0)
    }
}

/// `HV_FLUSH_FLAGS` (TLFS 9.4.2). The values are the Hyper-V headers'; TLFS
/// 6.0b names the flags without values. `HV_FLUSH_USE_EXTENDED_RANGE_FORMAT`
/// (bit 3 in later headers) is not in 6.0b and stays reserved.
#[bitfield(u64)]
#[derive(PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvFlushFlags {
    /// `HV_FLUSH_ALL_PROCESSORS`: the processor mask or set is ignored.
    pub all_processors: bool,
    /// `HV_FLUSH_ALL_VIRTUAL_ADDRESS_SPACES`: the address space is ignored.
    pub all_virtual_address_spaces: bool,
    /// `HV_FLUSH_NON_GLOBAL_MAPPINGS_ONLY`: global entries may stay (space
    /// flushes only; invalid for list flushes).
    pub non_global_mappings_only: bool,
    #[bits(61)]
    pub reserved: u64,
}

impl HvFlushFlags {
    pub const DEFINED_BITS: u64 = 0x7;

    pub const fn has_reserved_bits(self) -> bool {
        self.0 & !Self::DEFINED_BITS != 0
    }
}

/// A GVA range of a list flush (TLFS 9.4.4): a page and the number of pages
/// after it, 1 to 4096 pages in all.
#[bitfield(u64)]
#[derive(PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvGvaRange {
    #[bits(12)]
    pub additional_pages: u16,
    #[bits(52)]
    pub page_number: u64,
}

impl HvGvaRange {
    /// The first byte of the range.
    pub const fn base(self) -> u64 {
        self.page_number() << 12
    }

    pub const fn page_count(self) -> u64 {
        self.additional_pages() as u64 + 1
    }
}

open_enum! {
    /// `HV_GENERIC_SET_FORMAT` (TLFS 7.8.7.3).
    #[derive(IntoBytes, FromBytes, Immutable, KnownLayout)]
    pub struct HvGenericSetFormat(u64) {
        /// `HvGenericSetSparse4k`: banks of 64 VPs named by a valid-bank mask.
        SPARSE_4K = 0,
        /// `HvGenericSetAll`: every VP of the partition.
        ALL = 1,
    }
}

/// The fixed part of an `HV_VP_SET` (TLFS 7.8.7.3); one `u64` bank follows
/// for each bit of `valid_banks_mask`, in the variable header.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvVpSetHeader {
    pub format: HvGenericSetFormat,
    pub valid_banks_mask: u64,
}

/// VPs per bank of a sparse set.
pub const HV_VP_SET_BANK_SIZE: u32 = 64;
/// Banks a sparse set can name: one per bit of the valid-bank mask.
pub const HV_VP_SET_MAX_BANKS: usize = 64;

/// Input of HvFlushVirtualAddressSpace and the header of
/// HvFlushVirtualAddressList (TLFS 9.4.2, 9.4.4).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvInputFlushVirtualAddress {
    /// A CR3 value.
    pub address_space: u64,
    pub flags: HvFlushFlags,
    /// Bit n names VP n.
    pub processor_mask: u64,
}

/// Fixed header of HvFlushVirtualAddressSpaceEx and ...ListEx (TLFS 9.4.3,
/// 9.4.5): the set's banks are the variable header.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvInputFlushVirtualAddressEx {
    pub address_space: u64,
    pub flags: HvFlushFlags,
    pub processor_set: HvVpSetHeader,
}

/// Input of HvSendSyntheticClusterIpi (TLFS 10.5.2).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvInputSendSyntheticClusterIpi {
    /// 0x10..=0xff.
    pub vector: u32,
    pub target_vtl: HvInputVtl,
    pub reserved: [u8; 3],
    pub processor_mask: u64,
}

/// Fixed header of HvSendSyntheticClusterIpiEx (TLFS 10.5.3): the set's
/// banks are the variable header.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvInputSendSyntheticClusterIpiEx {
    pub vector: u32,
    pub target_vtl: HvInputVtl,
    pub reserved: [u8; 3],
    pub processor_set: HvVpSetHeader,
}

/// Lowest vector a synthetic cluster IPI may carry (TLFS 10.5.2).
pub const HV_IPI_VECTOR_MIN: u32 = 0x10;
/// Highest vector a synthetic cluster IPI may carry.
pub const HV_IPI_VECTOR_MAX: u32 = 0xff;

/// Header of HvGetVpRegisters and HvSetVpRegisters (TLFS 7.10.1, 7.10.2).
/// Get's rep elements are [`HvRegisterName`]s and its outputs
/// [`HvRegisterValue`]s; Set's rep elements are [`HvRegisterAssoc`]s.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvInputGetSetVpRegisters {
    /// An [`HvPartitionId`].
    pub partition_id: u64,
    pub vp_index: u32,
    pub input_vtl: HvInputVtl,
    pub reserved: [u8; 3],
}

impl HvInputGetSetVpRegisters {
    pub const fn partition(&self) -> HvPartitionId {
        HvPartitionId(self.partition_id)
    }
}

/// A 128-bit register value (`HV_REGISTER_VALUE`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvRegisterValue {
    pub low: u64,
    pub high: u64,
}

/// A rep element of HvSetVpRegisters (`HV_REGISTER_ASSOC`, TLFS 7.10.1):
/// the value is at offset 16.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvRegisterAssoc {
    pub name: HvRegisterName,
    pub padding: [u32; 3],
    pub value: HvRegisterValue,
}

/// Header of HvGetVpIndexFromApicId (TLFS 7.10.4; the layout is the
/// Hyper-V headers', the TLFS table is missing). Rep elements are `u32`
/// APIC IDs; outputs are `u32` VP indices.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvInputGetVpIndexFromApicId {
    pub partition_id: u64,
    pub target_vtl: HvInputVtl,
    pub reserved: [u8; 7],
}

impl HvInputGetVpIndexFromApicId {
    pub const fn partition(&self) -> HvPartitionId {
        HvPartitionId(self.partition_id)
    }
}

/// Input of HvNotifyLongSpinWait (TLFS 14.5.1, `HV_INPUT_NOTIFY_LONG_SPIN_WAIT`
/// in the Hyper-V headers): how long the caller has spun.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvInputNotifyLongSpinWait {
    pub long_spin_wait_count: u64,
}

/// Input of HvPostMessage (TLFS 11.11.1, `HV_INPUT_POST_MESSAGE`): the
/// caller's connection, a message type (bit 31 is the hypervisor's), the
/// payload's size in bytes and the payload.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvInputPostMessage {
    pub connection_id: u32,
    pub reserved: u32,
    pub message_type: u32,
    pub payload_size: u32,
    pub payload: [u8; crate::HV_MESSAGE_MAX_PAYLOAD_BYTE_COUNT],
}

const _: () = assert!(size_of::<HvInputPostMessage>() == 256);

/// Input of HvSignalEvent (TLFS 11.11.2, `HV_INPUT_SIGNAL_EVENT`), a fast
/// call: the caller's connection and a flag number relative to the port's
/// base flag.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvInputSignalEvent {
    pub connection_id: u32,
    pub flag_number: u16,
    pub reserved: u16,
}

const _: () = assert!(size_of::<HvInputSignalEvent>() == 8);

/// Output of HvExtCallQueryCapabilities (TLFS 3.14.1): the extended
/// hypercalls available.
#[bitfield(u64)]
#[derive(PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvExtCapabilities {
    pub get_boot_zeroed_memory: bool,
    pub memory_heat_hint: bool,
    pub epf_setup: bool,
    pub scheduler_assist_setup: bool,
    pub memory_heat_hint_async: bool,
    #[bits(59)]
    pub reserved: u64,
}

const _: () = assert!(size_of::<HvVpSetHeader>() == 16);
const _: () = assert!(size_of::<HvInputFlushVirtualAddress>() == 24);
const _: () = assert!(size_of::<HvInputFlushVirtualAddressEx>() == 32);
const _: () = assert!(size_of::<HvInputSendSyntheticClusterIpi>() == 16);
const _: () = assert!(size_of::<HvInputSendSyntheticClusterIpiEx>() == 24);
const _: () = assert!(size_of::<HvInputGetSetVpRegisters>() == 16);
const _: () = assert!(size_of::<HvRegisterValue>() == 16);
const _: () = assert!(size_of::<HvRegisterAssoc>() == 32);
const _: () = assert!(size_of::<HvInputGetVpIndexFromApicId>() == 16);
const _: () = assert!(size_of::<HvInputNotifyLongSpinWait>() == 8);
const _: () = assert!(size_of::<HvExtCapabilities>() == 8);

#[cfg(test)]
mod tests;
