//! The table layouts (ACPI 6.5 chapter 5) as zerocopy structs: every
//! multi-byte field is little-endian and unaligned (`U16`/`U32`/`U64`), so
//! a struct is exactly the bytes of the table, with no padding, and its size
//! is pinned by a const assert. Flag words are `bitfield-struct` types,
//! stored in the tables as their bits. Field names are the specification's,
//! lower-cased.

use bitfield_struct::bitfield;
use core::mem::size_of;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Root System Description Pointer (5.2.5.3), revision 2.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct Rsdp {
    pub signature: [u8; 8],
    /// Makes the first 20 bytes (the ACPI 1.0 RSDP) sum to 0.
    pub checksum: u8,
    pub oem_id: [u8; 6],
    pub revision: u8,
    pub rsdt_address: U32,
    pub length: U32,
    pub xsdt_address: U64,
    /// Makes all 36 bytes sum to 0.
    pub extended_checksum: u8,
    pub reserved: [u8; 3],
}

pub const RSDP_SIGNATURE: [u8; 8] = *b"RSD PTR ";
/// The ACPI 1.0 part of the RSDP, which `checksum` covers.
pub const RSDP_V1_LEN: usize = 20;

/// System Description Table Header (5.2.6).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct SdtHeader {
    pub signature: [u8; 4],
    /// The whole table, header included.
    pub length: U32,
    pub revision: u8,
    /// Makes the whole table sum to 0.
    pub checksum: u8,
    pub oem_id: [u8; 6],
    pub oem_table_id: [u8; 8],
    pub oem_revision: U32,
    pub creator_id: [u8; 4],
    pub creator_revision: U32,
}

/// The header's checksum byte.
pub const SDT_CHECKSUM_OFFSET: usize = 9;

/// Generic Address Structure (5.2.3.2).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct Gas {
    pub space_id: u8,
    pub bit_width: u8,
    pub bit_offset: u8,
    /// 0: undefined (legacy), 1: byte, 2: word, 3: dword, 4: qword.
    pub access_size: u8,
    pub address: U64,
}

/// `Gas::space_id`: system I/O space.
pub const GAS_SYSTEM_IO: u8 = 1;
/// `Gas::access_size`: byte access.
pub const GAS_ACCESS_BYTE: u8 = 1;
pub const GAS_ACCESS_DWORD: u8 = 3;

impl Gas {
    /// A register of `len` bytes at I/O `port`, accessed as its length says.
    pub const fn io(port: u16, len: u8, access_size: u8) -> Gas {
        Gas { space_id: GAS_SYSTEM_IO, bit_width: len * 8, bit_offset: 0, access_size, address: U64::new(port as u64) }
    }
}

/// FADT Flags (5.2.9, table 5.10).
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct FadtFlags {
    pub wbinvd: bool,
    pub wbinvd_flush: bool,
    pub proc_c1: bool,
    pub p_lvl2_up: bool,
    /// The power button is a control-method device, or absent.
    pub pwr_button: bool,
    /// The sleep button is a control-method device, or absent.
    pub slp_button: bool,
    pub fix_rtc: bool,
    pub rtc_s4: bool,
    pub tmr_val_ext: bool,
    pub dck_cap: bool,
    pub reset_reg_sup: bool,
    pub sealed_case: bool,
    pub headless: bool,
    pub cpu_sw_slp: bool,
    pub pci_exp_wak: bool,
    pub use_platform_clock: bool,
    pub s4_rtc_sts_valid: bool,
    pub remote_power_on_capable: bool,
    pub force_apic_cluster_model: bool,
    pub force_apic_physical_destination_mode: bool,
    pub hw_reduced_acpi: bool,
    pub low_power_s0_idle_capable: bool,
    #[bits(2)]
    pub persistent_cpu_caches: u8,
    #[bits(8)]
    pub reserved: u8,
}

/// IA-PC Boot Architecture Flags (5.2.9.3, table 5.11).
#[bitfield(u16)]
#[derive(PartialEq, Eq)]
pub struct IapcBootArch {
    /// ISA/LPC legacy devices (e.g. the parallel port) are present.
    pub legacy_devices: bool,
    /// An 8042 keyboard controller is present.
    pub i8042: bool,
    pub vga_not_present: bool,
    pub msi_not_supported: bool,
    pub pcie_aspm_controls: bool,
    pub cmos_rtc_not_present: bool,
    #[bits(10)]
    pub reserved: u16,
}

/// Fixed ACPI Description Table (5.2.9), revision 6. Field names are the
/// specification's, lower-cased.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct Fadt {
    pub header: SdtHeader,
    pub firmware_ctrl: U32,
    pub dsdt: U32,
    /// INT_MODEL in ACPI 1.0.
    pub reserved0: u8,
    pub preferred_pm_profile: u8,
    pub sci_int: U16,
    pub smi_cmd: U32,
    pub acpi_enable: u8,
    pub acpi_disable: u8,
    pub s4bios_req: u8,
    pub pstate_cnt: u8,
    pub pm1a_evt_blk: U32,
    pub pm1b_evt_blk: U32,
    pub pm1a_cnt_blk: U32,
    pub pm1b_cnt_blk: U32,
    pub pm2_cnt_blk: U32,
    pub pm_tmr_blk: U32,
    pub gpe0_blk: U32,
    pub gpe1_blk: U32,
    pub pm1_evt_len: u8,
    pub pm1_cnt_len: u8,
    pub pm2_cnt_len: u8,
    pub pm_tmr_len: u8,
    pub gpe0_blk_len: u8,
    pub gpe1_blk_len: u8,
    pub gpe1_base: u8,
    pub cst_cnt: u8,
    pub p_lvl2_lat: U16,
    pub p_lvl3_lat: U16,
    pub flush_size: U16,
    pub flush_stride: U16,
    pub duty_offset: u8,
    pub duty_width: u8,
    pub day_alrm: u8,
    pub mon_alrm: u8,
    pub century: u8,
    /// [`IapcBootArch`].
    pub iapc_boot_arch: U16,
    pub reserved1: u8,
    /// [`FadtFlags`].
    pub flags: U32,
    pub reset_reg: Gas,
    pub reset_value: u8,
    pub arm_boot_arch: U16,
    pub fadt_minor_version: u8,
    pub x_firmware_ctrl: U64,
    pub x_dsdt: U64,
    pub x_pm1a_evt_blk: Gas,
    pub x_pm1b_evt_blk: Gas,
    pub x_pm1a_cnt_blk: Gas,
    pub x_pm1b_cnt_blk: Gas,
    pub x_pm2_cnt_blk: Gas,
    pub x_pm_tmr_blk: Gas,
    pub x_gpe0_blk: Gas,
    pub x_gpe1_blk: Gas,
    pub sleep_control_reg: Gas,
    pub sleep_status_reg: Gas,
    pub hypervisor_vendor_identity: U64,
}

pub const FADT_REVISION: u8 = 6;
/// P_LVL2_LAT above 100 µs: C2 is not supported.
pub const C2_UNSUPPORTED: u16 = 101;
/// P_LVL3_LAT above 1000 µs: C3 is not supported.
pub const C3_UNSUPPORTED: u16 = 1001;

/// Firmware ACPI Control Structure (5.2.10). No checksum.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct Facs {
    pub signature: [u8; 4],
    pub length: U32,
    pub hardware_signature: U32,
    pub firmware_waking_vector: U32,
    pub global_lock: U32,
    pub flags: U32,
    pub x_firmware_waking_vector: U64,
    pub version: u8,
    pub reserved0: [u8; 3],
    pub ospm_flags: U32,
    pub reserved1: [u8; 24],
}

/// MADT header (5.2.12).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct MadtHeader {
    pub header: SdtHeader,
    pub local_apic_address: U32,
    /// Bit 0: PCAT_COMPAT (dual 8259s are present too).
    pub flags: U32,
}

pub const MADT_REVISION: u8 = 5;
pub const MADT_PCAT_COMPAT: u32 = 1;

/// MADT entry types (5.2.12, table 5.22).
pub const MADT_LOCAL_APIC: u8 = 0;
pub const MADT_IO_APIC: u8 = 1;
pub const MADT_INTERRUPT_OVERRIDE: u8 = 2;
pub const MADT_LOCAL_APIC_NMI: u8 = 4;

/// Processor Local APIC flags (table 5.23).
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct LocalApicFlags {
    pub enabled: bool,
    pub online_capable: bool,
    #[bits(30)]
    pub reserved: u32,
}

/// MPS INTI flags (table 5.26).
#[bitfield(u16)]
#[derive(PartialEq, Eq)]
pub struct MpsIntiFlags {
    /// 0: conforms to the bus, 1: active high, 3: active low.
    #[bits(2)]
    pub polarity: u8,
    /// 0: conforms to the bus, 1: edge, 3: level.
    #[bits(2)]
    pub trigger_mode: u8,
    #[bits(12)]
    pub reserved: u16,
}

pub const INTI_ACTIVE_HIGH: u8 = 1;
pub const INTI_LEVEL: u8 = 3;

/// Processor Local APIC Structure (5.2.12.2).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct MadtLocalApic {
    pub entry_type: u8,
    pub length: u8,
    pub processor_uid: u8,
    pub apic_id: u8,
    /// [`LocalApicFlags`].
    pub flags: U32,
}

/// I/O APIC Structure (5.2.12.3).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct MadtIoApic {
    pub entry_type: u8,
    pub length: u8,
    pub io_apic_id: u8,
    pub reserved: u8,
    pub address: U32,
    pub gsi_base: U32,
}

/// Interrupt Source Override Structure (5.2.12.5).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct MadtInterruptOverride {
    pub entry_type: u8,
    pub length: u8,
    /// 0: ISA.
    pub bus: u8,
    pub source: u8,
    pub gsi: U32,
    /// [`MpsIntiFlags`].
    pub flags: U16,
}

/// Local APIC NMI Structure (5.2.12.7).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct MadtLocalApicNmi {
    pub entry_type: u8,
    pub length: u8,
    /// 0xFF: all processors.
    pub processor_uid: u8,
    /// [`MpsIntiFlags`].
    pub flags: U16,
    /// The LINTn input the NMI arrives on.
    pub lint: u8,
}

pub const ALL_PROCESSORS: u8 = 0xff;

const _: () = assert!(size_of::<Rsdp>() == 36);
const _: () = assert!(size_of::<SdtHeader>() == 36);
const _: () = assert!(size_of::<Gas>() == 12);
const _: () = assert!(size_of::<Fadt>() == 276);
const _: () = assert!(size_of::<Facs>() == 64);
const _: () = assert!(size_of::<MadtHeader>() == 44);
const _: () = assert!(size_of::<MadtLocalApic>() == 8);
const _: () = assert!(size_of::<MadtIoApic>() == 12);
const _: () = assert!(size_of::<MadtInterruptOverride>() == 10);
const _: () = assert!(size_of::<MadtLocalApicNmi>() == 6);
