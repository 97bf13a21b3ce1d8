//! What the `vsm` test expects of a partition with the `hyperv-vsm`
//! profile: the numbers and layouts of TLFS 6.0b chapter 15, written from
//! the specification (the host tests compare them with the `tlfs` crate).
//!
//! Where 6.0b prints no layout or value (the VP status register, the entry
//! reasons, the input of HvEnablePartitionVtl, `INVALID_VTL_STATE`) the
//! Hyper-V headers' are used, and each item says so. Where 6.0b and the
//! headers disagree, 6.0b is followed: the capabilities register
//! ([`Capabilities::read`]).

use super::Outcome;
use crate::Detail;

/// The VTLs 6.0b implements (`HV_NUM_VTLS`, 15.2).
pub const NUM_VTLS: u8 = 2;

/// `HV_INPUT_VTL` (15.15.1) naming `vtl`: TargetVtl in 3:0, UseTargetVtl.
pub const fn input_vtl(vtl: u8) -> u8 {
    (vtl & 0xf) | 1 << 4
}

/// `HV_X64_REGISTER_VSM_CAPABILITIES` (15.3.2) as 6.0b draws it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    pub dr6_shared: bool,
    pub mbec_vtl_mask: u16,
    pub deny_lower_vtl_startup: bool,
    /// The bits no field covers, ReservedZ.
    pub reserved: u64,
}

impl Capabilities {
    /// The Hyper-V headers' layout, which guests read (Windows' secure
    /// kernel, Linux): Dr6Shared 0, MbecVtlMask 16:1, DenyLowerVtlStartup
    /// 17, ReservedZ 63:18. 6.0b draws the same fields from bit 63 down
    /// (Dr6Shared 63, MbecVtlMask 62:47, DenyLowerVtlStartup 46); no value
    /// that offers DenyLowerVtlStartup reads the same both ways, and this
    /// test follows what guests read ([`Capabilities::read_as_drawn`] is
    /// for the informational line).
    pub const fn read(value: u64) -> Capabilities {
        Capabilities {
            dr6_shared: value & 1 != 0,
            mbec_vtl_mask: (value >> 1) as u16,
            deny_lower_vtl_startup: (value >> 17) & 1 != 0,
            reserved: value >> 18,
        }
    }

    /// 6.0b's drawing of the same value.
    pub const fn read_as_drawn(value: u64) -> Capabilities {
        Capabilities {
            dr6_shared: value >> 63 != 0,
            mbec_vtl_mask: (value >> 47) as u16,
            deny_lower_vtl_startup: (value >> 46) & 1 != 0,
            reserved: value & ((1 << 46) - 1),
        }
    }
}

/// `HV_REGISTER_VSM_PARTITION_STATUS` (15.3.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionStatus {
    pub enabled_vtl_set: u16,
    pub maximum_vtl: u8,
    pub mbec_enabled_vtl_set: u16,
    /// Bits 63:36, ReservedZ.
    pub reserved: u64,
}

impl PartitionStatus {
    pub const fn read(value: u64) -> PartitionStatus {
        PartitionStatus {
            enabled_vtl_set: value as u16,
            maximum_vtl: ((value >> 16) & 0xf) as u8,
            mbec_enabled_vtl_set: (value >> 20) as u16,
            reserved: value >> 36,
        }
    }
}

/// `HV_REGISTER_VSM_VP_STATUS` (15.3.3.2). 6.0b names the fields without a
/// drawing; the positions are the headers': ActiveVtl 3:0,
/// ActiveMbecEnabled 4, EnabledVtlSet 31:16, the rest reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VpStatus {
    pub active_vtl: u8,
    pub active_mbec_enabled: bool,
    pub enabled_vtl_set: u16,
    pub reserved: u64,
}

impl VpStatus {
    pub const fn read(value: u64) -> VpStatus {
        VpStatus {
            active_vtl: (value & 0xf) as u8,
            active_mbec_enabled: value & 1 << 4 != 0,
            enabled_vtl_set: (value >> 16) as u16,
            reserved: value & !0xffff_001f,
        }
    }
}

/// `HV_REGISTER_VSM_CODE_PAGE_OFFSETS` (15.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodePageOffsets {
    pub vtl_call: u16,
    pub vtl_return: u16,
    /// Bits 63:24, ReservedZ.
    pub reserved: u64,
}

impl CodePageOffsets {
    pub const fn read(value: u64) -> CodePageOffsets {
        CodePageOffsets {
            vtl_call: (value & 0xfff) as u16,
            vtl_return: ((value >> 12) & 0xfff) as u16,
            reserved: value >> 24,
        }
    }
}

/// `HV_REGISTER_VSM_PARTITION_CONFIG` (15.5.1): 6.0b describes the fields
/// without a drawing; these positions are the headers'.
pub mod partition_config {
    /// Write-once (15.5.1.1).
    pub const ENABLE_VTL_PROTECTION: u64 = 1 << 0;
    /// DefaultVtlProtectionMask, bits 4:1 (15.5.1.2).
    pub const DEFAULT_PROTECTION_MASK: u64 = 0xf << 1;
    /// "On by default" (15.5.1.3).
    pub const ZERO_MEMORY_ON_RESET: u64 = 1 << 5;
}

/// `HV_VP_VTL_CONTROL` (15.8.2) in the VP assist page (7.8.7.2: after
/// ApicAssist and ReservedZ0, 4 bytes each), and its fields' offsets in the
/// page.
pub mod control {
    pub const OFFSET: usize = 8;
    /// `HV_VTL_ENTRY_REASON`, 4 bytes.
    pub const ENTRY_REASON: usize = OFFSET;
    pub const VINA_STATUS: usize = OFFSET + 4;
    pub const RETURN_RAX: usize = OFFSET + 8;
    pub const RETURN_RCX: usize = OFFSET + 16;
}

/// `HV_VTL_ENTRY_REASON` (15.6.1.2): 6.0b names the type without values;
/// these are the headers'.
pub mod entry_reason {
    pub const VTL_CALL: u32 = 1;
    pub const INTERRUPT: u32 = 2;
    pub const INTERCEPT: u32 = 3;
}

/// The VTL call control input (15.6.1): every bit RsvdZ.
pub const VTL_CALL_CONTROL: u64 = 0;
/// The VTL return control input (15.7.1): bit 0 is a fast return.
pub const VTL_RETURN_FAST: u64 = 1;
/// A reserved bit of either (#UD, 15.6.1.1 item 4, 15.7.2 item 2).
pub const VTL_CONTROL_RESERVED_BIT: u64 = 1 << 1;

/// `HV_ENABLE_PARTITION_VTL_FLAGS` (15.15.3): EnableMbec; bits 7:1 reserved.
pub const ENABLE_MBEC: u8 = 1;
pub const ENABLE_FLAGS_RESERVED_BIT: u8 = 1 << 1;

/// The input of HvEnablePartitionVtl (15.15.3). 6.0b omits the table; the
/// headers': TargetPartitionId, TargetVtl (an `HV_VTL`), Flags, 6 bytes
/// RsvdZ.
pub fn enable_partition_vtl(partition: u64, target_vtl: u8, flags: u8) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&partition.to_le_bytes());
    b[8] = target_vtl;
    b[9] = flags;
    b
}

/// The `HV_MAP_GPA_*` flags of HvModifyVtlProtectionMask (15.9.3,
/// 15.15.2). 6.0b gives no values; the headers'.
pub mod map_gpa {
    pub const NO_ACCESS: u32 = 0;
    pub const READABLE: u32 = 1;
    pub const WRITABLE: u32 = 2;
    pub const KERNEL_EXECUTABLE: u32 = 4;
    pub const USER_EXECUTABLE: u32 = 8;
    pub const ALL: u32 = READABLE | WRITABLE | KERNEL_EXECUTABLE | USER_EXECUTABLE;
}

/// The input of HvModifyVtlProtectionMask (15.15.2, a rep call) for one
/// page: TargetPartitionId, MapFlags, TargetVtl (an `HV_INPUT_VTL`), 3
/// bytes RsvdZ, then the GpaPageList. 6.0b omits the table; the headers'.
pub fn modify_vtl_protection_mask(partition: u64, flags: u32, input_vtl: u8, gpa_page: u64) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[..8].copy_from_slice(&partition.to_le_bytes());
    b[8..12].copy_from_slice(&flags.to_le_bytes());
    b[12] = input_vtl;
    b[16..].copy_from_slice(&gpa_page.to_le_bytes());
    b
}

/// `HV_X64_SEGMENT_REGISTER` (7.9.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Segment {
    pub base: u64,
    pub limit: u32,
    pub selector: u16,
    pub attributes: u16,
}

impl Segment {
    /// Attributes (7.9.5): type 3:0, S 4, DPL 6:5, P 7, AVL 12, L 13, D/B
    /// 14, G 15. A 64-bit ring-0 code segment.
    pub const CODE64: u16 = 0xa09b;
    /// A ring-0 data segment (writable, accessed, 4 KiB granularity, D/B).
    pub const DATA: u16 = 0xc093;
    /// A busy 64-bit TSS.
    pub const TSS_BUSY: u16 = 0x8b;

    fn bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.base.to_le_bytes());
        b[8..12].copy_from_slice(&self.limit.to_le_bytes());
        b[12..14].copy_from_slice(&self.selector.to_le_bytes());
        b[14..].copy_from_slice(&self.attributes.to_le_bytes());
        b
    }
}

/// `HV_X64_TABLE_REGISTER` (7.9.6): Pad[3], Limit, Base.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Table {
    pub limit: u16,
    pub base: u64,
}

impl Table {
    fn bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[6..8].copy_from_slice(&self.limit.to_le_bytes());
        b[8..].copy_from_slice(&self.base.to_le_bytes());
        b
    }
}

/// `HV_INITIAL_VP_CONTEXT` (15.15.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct InitialContext {
    pub rip: u64,
    pub rsp: u64,
    pub rflags: u64,
    pub cs: Segment,
    pub ds: Segment,
    pub es: Segment,
    pub fs: Segment,
    pub gs: Segment,
    pub ss: Segment,
    pub tr: Segment,
    pub ldtr: Segment,
    pub idtr: Table,
    pub gdtr: Table,
    pub efer: u64,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub pat: u64,
}

/// The size of HvEnableVpVtl's input: the header (16 bytes) and the context.
pub const ENABLE_VP_VTL_INPUT: usize = 240;

/// The input of HvEnableVpVtl as 15.15.4 draws it: TargetPartitionId,
/// VpIndex, TargetVtl, 3 bytes RsvdZ (`reserved`), the context from 16.
pub fn enable_vp_vtl(partition: u64, vp: u32, vtl: u8, reserved: u8, c: &InitialContext) -> [u8; ENABLE_VP_VTL_INPUT] {
    let mut b = [0u8; ENABLE_VP_VTL_INPUT];
    b[..8].copy_from_slice(&partition.to_le_bytes());
    b[8..12].copy_from_slice(&vp.to_le_bytes());
    b[12] = vtl;
    b[13] = reserved;
    let words = [c.rip, c.rsp, c.rflags];
    for (i, w) in words.iter().enumerate() {
        b[16 + 8 * i..24 + 8 * i].copy_from_slice(&w.to_le_bytes());
    }
    for (i, s) in [c.cs, c.ds, c.es, c.fs, c.gs, c.ss, c.tr, c.ldtr].iter().enumerate() {
        b[40 + 16 * i..56 + 16 * i].copy_from_slice(&s.bytes());
    }
    b[168..184].copy_from_slice(&c.idtr.bytes());
    b[184..200].copy_from_slice(&c.gdtr.bytes());
    for (i, w) in [c.efer, c.cr0, c.cr3, c.cr4, c.pat].iter().enumerate() {
        b[200 + 8 * i..208 + 8 * i].copy_from_slice(&w.to_le_bytes());
    }
    b
}

/// The header of HvGetVpRegisters/HvSetVpRegisters (7.10.1) with an
/// `HV_INPUT_VTL` (`input_vtl`, 0 for the caller's VTL) at byte 12.
pub fn vp_registers_header(partition: u64, vp: u32, input_vtl: u8) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&partition.to_le_bytes());
    b[8..12].copy_from_slice(&vp.to_le_bytes());
    b[12] = input_vtl;
    b
}

/// A status among `allowed`: where several error conditions hold at once
/// the TLFS leaves the choice to the hypervisor (3.12.2).
pub fn expect_one_of(got: Outcome, allowed: &[u16]) -> Result<(), Detail> {
    if allowed.contains(&got.status) { Ok(()) } else { Err(detail!("got {got}")) }
}

/// The values the VTL call test puts in the shared registers (15.11.2.2)
/// on `round`, for `from` VTL: RBX, RDX, RSI, RDI, RBP, R8-R15 (13
/// registers, the frame's order), each distinct.
pub fn shared_pattern(round: u32, from: u8) -> [u64; 13] {
    core::array::from_fn(|i| {
        0x7e55_0000_0000_0000 | u64::from(from) << 40 | u64::from(round) << 16 | ((i as u64 + 1) * 0x111)
    })
}

/// The XMM values for `round` and `from` (16 registers, 15.11.2.2).
pub fn xmm_pattern(round: u32, from: u8) -> [u128; 16] {
    core::array::from_fn(|i| {
        let low = 0x584d_4d00_0000_0000 | u64::from(from) << 32 | u64::from(round) << 8 | i as u64;
        u128::from(!low) << 64 | u128::from(low)
    })
}
