//! ACPI tables for a guest (ACPI 6.5), so an unmodified Linux finds its
//! interrupt controllers and CPUs and can power off: [`build`] writes them
//! into a buffer that becomes guest memory, and [`Pm1`] models the fixed
//! hardware registers they describe.
//!
//! # Guest memory
//!
//! The tables fill one region at `base_gpa`: meant to be the BIOS area at
//! [`DEFAULT_BASE_GPA`] (0xE0000, [`REGION_SIZE`] = 64 KiB), where Linux
//! scans for the RSDP on 16-byte boundaries when it is not given one. The
//! region's layout (offsets from `base_gpa`):
//!
//! | offset  | table | length |
//! |---------|-------|--------|
//! | `0x000` | RSDP (revision 2) | 36 |
//! | `0x040` | FACS (64-byte aligned) | 64 |
//! | `0x080` | XSDT → FADT, MADT | 52 |
//! | `0x0c0` | RSDT → FADT, MADT | 44 |
//! | `0x100` | FADT (revision 6) → FACS, DSDT | 276 |
//! | `0x240` | DSDT (`\_S5_`) | 50 |
//! | `0x280` | MADT | 82 + 8 per VP |
//!
//! [`region_len`] is the bytes used (at most `0xaca`, for [`MAX_VPS`]).
//! `base_gpa` must be 64-byte aligned and the region must lie below 4 GiB
//! (the RSDT and the FADT's legacy fields hold 32-bit addresses).
//!
//! # Ports
//!
//! | port | register | width |
//! |------|----------|-------|
//! | `0x600` | PM1a_EVT_BLK: PM1_STS (`0x600`), PM1_EN (`0x602`) | 4 |
//! | `0x604` | PM1a_CNT_BLK: PM1_CNT | 2 |
//! | `0x608` | RESET_REG: writing [`RESET_VALUE`] (1) resets | 1 |
//!
//! No PM timer, no GPE blocks, no SMI command port (so the platform is
//! always in ACPI mode and SCI_EN reads 1). The SCI is ISA IRQ 9, wired to
//! GSI 9 level-triggered, active-high; nothing raises it yet.
//!
//! # What the VID does with this
//!
//! 1. Builds the tables into a [`REGION_SIZE`] buffer and copies (or maps)
//!    it into guest RAM at `base_gpa`.
//! 2. Marks `base_gpa .. base_gpa + REGION_SIZE` reserved in the e820 map.
//! 3. Optionally puts [`AcpiTables::rsdp_gpa`] in the boot parameters'
//!    `acpi_rsdp_addr` (offset 0x070) so Linux need not scan.
//! 4. Routes port I/O for which [`Pm1::claims_port`] is true to one [`Pm1`]
//!    per partition, stops the partition on [`Pm1Effect::PowerOff`],
//!    restarts (or stops) it on [`Pm1Effect::Reset`], and refuses
//!    [`Pm1Effect::Sleep`] as unsupported.
//! 5. Keeps APIC ID = VP index (the MADT says so) and its I/O APIC at
//!    `0xFEC00000` with GSI base 0, ISA IRQ 0 on pin 2.

pub mod aml;
mod pm1;
#[cfg(test)]
mod tests;

pub use pm1::{Pm1, Pm1Control, Pm1Effect, Pm1Enable, Pm1Status};

use bitfield_struct::bitfield;
use core::mem::size_of;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

// ---------------------------------------------------------------------------
// Platform choices
// ---------------------------------------------------------------------------

/// Where the VID is meant to put the tables: the BIOS area Linux scans.
pub const DEFAULT_BASE_GPA: u64 = 0xe0000;
/// The region the VID reserves for them.
pub const REGION_SIZE: usize = 0x10000;

/// PM1a_EVT_BLK: PM1_STS then PM1_EN, two bytes each.
pub const PM1A_EVT_BLK: u16 = 0x600;
pub const PM1_EVT_LEN: u8 = 4;
/// PM1a_CNT_BLK: PM1_CNT.
pub const PM1A_CNT_BLK: u16 = 0x604;
pub const PM1_CNT_LEN: u8 = 2;
/// RESET_REG (a one-byte I/O register) and the value that resets.
pub const RESET_PORT: u16 = 0x608;
pub const RESET_VALUE: u8 = 0x01;
/// The SCI: ISA IRQ 9, identity-mapped to GSI 9.
pub const SCI_IRQ: u8 = 9;
/// `\_S5_`'s SLP_TYPa (and SLP_TYPb): what PM1_CNT.SLP_TYP holds to power off.
pub const SLP_TYP_S5: u8 = 5;

pub const LOCAL_APIC_ADDRESS: u32 = 0xfee0_0000;
pub const IO_APIC_ADDRESS: u32 = 0xfec0_0000;
pub const IO_APIC_ID: u8 = 0;
/// The I/O APIC pin the PIT's IRQ 0 is wired to (the usual override).
pub const PIT_GSI: u32 = 2;
/// xAPIC IDs are 8 bits and 0xFF is the broadcast ID.
pub const MAX_VPS: u32 = 255;

pub const OEM_ID: [u8; 6] = *b"TESSRA";
pub const OEM_TABLE_ID: [u8; 8] = *b"TESSERA ";
pub const OEM_REVISION: u32 = 1;
pub const CREATOR_ID: [u8; 4] = *b"TSRA";
pub const CREATOR_REVISION: u32 = 1;

// ---------------------------------------------------------------------------
// Layout of the region
// ---------------------------------------------------------------------------

pub const RSDP_OFFSET: usize = 0x000;
pub const FACS_OFFSET: usize = 0x040;
pub const XSDT_OFFSET: usize = 0x080;
pub const RSDT_OFFSET: usize = 0x0c0;
pub const FADT_OFFSET: usize = 0x100;
pub const DSDT_OFFSET: usize = 0x240;
pub const MADT_OFFSET: usize = 0x280;

/// The tables the XSDT and RSDT list.
const TABLES: usize = 2;
const XSDT_LEN: usize = size_of::<SdtHeader>() + 8 * TABLES;
const RSDT_LEN: usize = size_of::<SdtHeader>() + 4 * TABLES;
/// The DSDT's AML: room for it between the DSDT and the MADT.
const DSDT_AML_CAPACITY: usize = MADT_OFFSET - DSDT_OFFSET - size_of::<SdtHeader>();

const _: () = assert!(RSDP_OFFSET + size_of::<Rsdp>() <= FACS_OFFSET);
const _: () = assert!(FACS_OFFSET.is_multiple_of(64) && FACS_OFFSET + size_of::<Facs>() <= XSDT_OFFSET);
const _: () = assert!(XSDT_OFFSET + XSDT_LEN <= RSDT_OFFSET);
const _: () = assert!(RSDT_OFFSET + RSDT_LEN <= FADT_OFFSET);
const _: () = assert!(FADT_OFFSET + size_of::<Fadt>() <= DSDT_OFFSET);
const _: () = assert!(region_len(MAX_VPS) <= REGION_SIZE);

/// The MADT's length for `vps` processors.
pub const fn madt_len(vps: u32) -> usize {
    size_of::<MadtHeader>()
        + size_of::<MadtIoApic>()
        + 2 * size_of::<MadtInterruptOverride>()
        + size_of::<MadtLocalApicNmi>()
        + vps as usize * size_of::<MadtLocalApic>()
}

/// The bytes of the region the tables use for `vps` processors.
pub const fn region_len(vps: u32) -> usize {
    MADT_OFFSET + madt_len(vps)
}

// ---------------------------------------------------------------------------
// Table layouts (ACPI 6.5 chapter 5)
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------

/// What the guest is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcpiConfig {
    /// Virtual processors: APIC IDs and ACPI processor UIDs `0..vps`.
    pub vps: u32,
    /// The VID models the CMOS RTC at ports 0x70/0x71. If not, the FADT
    /// says so and Linux leaves the RTC alone.
    pub cmos_rtc: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// No VP, or more than [`MAX_VPS`].
    VpCount(u32),
    /// `out` is shorter than the `needed` bytes.
    RegionTooSmall { needed: usize },
    /// `base_gpa` is not 64-byte aligned (the FACS must be).
    Misaligned(u64),
    /// The region does not end below 4 GiB.
    AboveFourGiB(u64),
    /// The DSDT's AML did not fit its room.
    AmlTooLarge,
}

/// Where [`build`] put each table (guest physical addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcpiTables {
    /// For `boot_params.acpi_rsdp_addr`.
    pub rsdp_gpa: u64,
    pub xsdt_gpa: u64,
    pub rsdt_gpa: u64,
    pub fadt_gpa: u64,
    pub facs_gpa: u64,
    pub dsdt_gpa: u64,
    pub madt_gpa: u64,
    /// Bytes of the region used, from `base_gpa` ([`region_len`]).
    pub len: usize,
}

/// The DSDT's AML: `Name (\_S5, Package (4) { 5, 5, 0, 0 })`, so writing
/// SLP_TYP 5 with SLP_EN to PM1a_CNT powers off (PM1b is absent, so the
/// second value is unused).
pub fn dsdt_aml() -> Result<aml::Aml<DSDT_AML_CAPACITY>, aml::AmlOverflow> {
    let mut stream = aml::Aml::new();
    let s5 = u64::from(SLP_TYP_S5);
    aml::name(&mut stream, b"_S5_", |a| aml::integer_package(a, &[s5, s5, 0, 0]))?;
    Ok(stream)
}

/// `0 - sum(bytes)`: the byte that makes `bytes` sum to 0.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_sub(*b))
}

fn header(signature: &[u8; 4], length: usize, revision: u8) -> SdtHeader {
    SdtHeader {
        signature: *signature,
        length: U32::new(length as u32),
        revision,
        checksum: 0,
        oem_id: OEM_ID,
        oem_table_id: OEM_TABLE_ID,
        oem_revision: U32::new(OEM_REVISION),
        creator_id: CREATOR_ID,
        creator_revision: U32::new(CREATOR_REVISION),
    }
}

/// Copies `value`'s bytes to `out[offset..]`; returns the offset after it.
/// The region's length is checked before anything is written.
fn put(out: &mut [u8], offset: usize, value: &(impl IntoBytes + Immutable + ?Sized)) -> usize {
    let bytes = value.as_bytes();
    out[offset..offset + bytes.len()].copy_from_slice(bytes);
    offset + bytes.len()
}

/// Sets the checksum of the table of `len` bytes at `offset`.
fn seal(out: &mut [u8], offset: usize, len: usize) {
    out[offset + SDT_CHECKSUM_OFFSET] = 0;
    out[offset + SDT_CHECKSUM_OFFSET] = checksum(&out[offset..offset + len]);
}

fn fadt(base: u32, config: &AcpiConfig) -> Fadt {
    let flags = FadtFlags::new()
        .with_wbinvd(true)
        .with_proc_c1(true)
        .with_pwr_button(true)
        .with_slp_button(true)
        .with_reset_reg_sup(true);
    let boot_arch = IapcBootArch::new().with_vga_not_present(true).with_cmos_rtc_not_present(!config.cmos_rtc);
    let dsdt = base + DSDT_OFFSET as u32;
    let facs = base + FACS_OFFSET as u32;
    let mut fadt = Fadt::new_zeroed();
    fadt.header = header(b"FACP", size_of::<Fadt>(), FADT_REVISION);
    fadt.firmware_ctrl = U32::new(facs);
    fadt.dsdt = U32::new(dsdt);
    fadt.sci_int = U16::new(SCI_IRQ.into());
    fadt.pm1a_evt_blk = U32::new(PM1A_EVT_BLK.into());
    fadt.pm1a_cnt_blk = U32::new(PM1A_CNT_BLK.into());
    fadt.pm1_evt_len = PM1_EVT_LEN;
    fadt.pm1_cnt_len = PM1_CNT_LEN;
    fadt.p_lvl2_lat = U16::new(C2_UNSUPPORTED);
    fadt.p_lvl3_lat = U16::new(C3_UNSUPPORTED);
    fadt.iapc_boot_arch = U16::new(boot_arch.into_bits());
    fadt.flags = U32::new(flags.into_bits());
    fadt.reset_reg = Gas::io(RESET_PORT, 1, GAS_ACCESS_BYTE);
    fadt.reset_value = RESET_VALUE;
    // X_FIRMWARE_CTRL stays 0: FIRMWARE_CTRL is used when it is.
    fadt.x_dsdt = U64::new(dsdt.into());
    // Access size 0 (legacy): the OS splits the event block into its two
    // registers and uses their width.
    fadt.x_pm1a_evt_blk = Gas::io(PM1A_EVT_BLK, PM1_EVT_LEN, 0);
    fadt.x_pm1a_cnt_blk = Gas::io(PM1A_CNT_BLK, PM1_CNT_LEN, 0);
    fadt
}

fn facs() -> Facs {
    let mut facs = Facs::new_zeroed();
    facs.signature = *b"FACS";
    facs.length = U32::new(size_of::<Facs>() as u32);
    facs.version = 2;
    facs
}

/// Writes the MADT at `offset`; returns its length.
fn madt(out: &mut [u8], offset: usize, vps: u32) -> usize {
    let len = madt_len(vps);
    let mut at = put(
        out,
        offset,
        &MadtHeader {
            header: header(b"APIC", len, MADT_REVISION),
            local_apic_address: U32::new(LOCAL_APIC_ADDRESS),
            flags: U32::new(MADT_PCAT_COMPAT),
        },
    );
    for vp in 0..vps {
        // vps <= MAX_VPS (checked by `build`): the ID fits and is not 0xFF.
        let id = vp as u8;
        let lapic = MadtLocalApic {
            entry_type: MADT_LOCAL_APIC,
            length: size_of::<MadtLocalApic>() as u8,
            processor_uid: id,
            apic_id: id,
            flags: U32::new(LocalApicFlags::new().with_enabled(true).into_bits()),
        };
        at = put(out, at, &lapic);
    }
    let ioapic = MadtIoApic {
        entry_type: MADT_IO_APIC,
        length: size_of::<MadtIoApic>() as u8,
        io_apic_id: IO_APIC_ID,
        reserved: 0,
        address: U32::new(IO_APIC_ADDRESS),
        gsi_base: U32::new(0),
    };
    at = put(out, at, &ioapic);
    let overrides = [
        // The PIT's IRQ 0 arrives on pin 2; ISA's edge/active-high applies.
        (0, PIT_GSI, MpsIntiFlags::new()),
        // The SCI: level-triggered, active-high (ACPI's default is low).
        (SCI_IRQ, SCI_IRQ.into(), MpsIntiFlags::new().with_polarity(INTI_ACTIVE_HIGH).with_trigger_mode(INTI_LEVEL)),
    ];
    for (source, gsi, flags) in overrides {
        let iso = MadtInterruptOverride {
            entry_type: MADT_INTERRUPT_OVERRIDE,
            length: size_of::<MadtInterruptOverride>() as u8,
            bus: 0,
            source,
            gsi: U32::new(gsi),
            flags: U16::new(flags.into_bits()),
        };
        at = put(out, at, &iso);
    }
    let nmi = MadtLocalApicNmi {
        entry_type: MADT_LOCAL_APIC_NMI,
        length: size_of::<MadtLocalApicNmi>() as u8,
        processor_uid: ALL_PROCESSORS,
        flags: U16::new(MpsIntiFlags::new().into_bits()),
        lint: 1,
    };
    at = put(out, at, &nmi);
    debug_assert_eq!(at - offset, len);
    len
}

/// Writes the ACPI tables for `config` into `out`, which the VID places in
/// guest memory at `base_gpa` (see the module documentation for the
/// layout). Bytes of `out` past [`region_len`] are left as they are.
pub fn build(config: &AcpiConfig, out: &mut [u8], base_gpa: u64) -> Result<AcpiTables, AcpiError> {
    if config.vps == 0 || config.vps > MAX_VPS {
        return Err(AcpiError::VpCount(config.vps));
    }
    let len = region_len(config.vps);
    if out.len() < len {
        return Err(AcpiError::RegionTooSmall { needed: len });
    }
    if !base_gpa.is_multiple_of(64) {
        return Err(AcpiError::Misaligned(base_gpa));
    }
    let base = match base_gpa.checked_add(len as u64) {
        Some(end) if end <= 1 << 32 => base_gpa as u32,
        _ => return Err(AcpiError::AboveFourGiB(base_gpa)),
    };
    let aml = dsdt_aml().map_err(|_| AcpiError::AmlTooLarge)?;
    let gpa = |offset: usize| base + offset as u32;
    out[..len].fill(0);

    // FACS, FADT, DSDT, MADT.
    put(out, FACS_OFFSET, &facs());
    put(out, FADT_OFFSET, &fadt(base, config));
    seal(out, FADT_OFFSET, size_of::<Fadt>());
    let dsdt_len = size_of::<SdtHeader>() + aml.len();
    let at = put(out, DSDT_OFFSET, &header(b"DSDT", dsdt_len, 2));
    put(out, at, aml.as_slice());
    seal(out, DSDT_OFFSET, dsdt_len);
    madt(out, MADT_OFFSET, config.vps);
    seal(out, MADT_OFFSET, madt_len(config.vps));

    // XSDT and RSDT, listing the FADT then the MADT.
    let listed = [gpa(FADT_OFFSET), gpa(MADT_OFFSET)];
    let mut at = put(out, XSDT_OFFSET, &header(b"XSDT", XSDT_LEN, 1));
    for table in listed {
        at = put(out, at, &U64::new(table.into()));
    }
    seal(out, XSDT_OFFSET, XSDT_LEN);
    let mut at = put(out, RSDT_OFFSET, &header(b"RSDT", RSDT_LEN, 1));
    for table in listed {
        at = put(out, at, &U32::new(table));
    }
    seal(out, RSDT_OFFSET, RSDT_LEN);

    // RSDP: the ACPI 1.0 checksum over its first 20 bytes, then the
    // extended one over all of it.
    let mut rsdp = Rsdp {
        signature: RSDP_SIGNATURE,
        checksum: 0,
        oem_id: OEM_ID,
        revision: 2,
        rsdt_address: U32::new(gpa(RSDT_OFFSET)),
        length: U32::new(size_of::<Rsdp>() as u32),
        xsdt_address: U64::new(gpa(XSDT_OFFSET).into()),
        extended_checksum: 0,
        reserved: [0; 3],
    };
    rsdp.checksum = checksum(&rsdp.as_bytes()[..RSDP_V1_LEN]);
    rsdp.extended_checksum = checksum(rsdp.as_bytes());
    put(out, RSDP_OFFSET, &rsdp);

    let at = |offset: usize| u64::from(gpa(offset));
    Ok(AcpiTables {
        rsdp_gpa: at(RSDP_OFFSET),
        xsdt_gpa: at(XSDT_OFFSET),
        rsdt_gpa: at(RSDT_OFFSET),
        fadt_gpa: at(FADT_OFFSET),
        facs_gpa: at(FACS_OFFSET),
        dsdt_gpa: at(DSDT_OFFSET),
        madt_gpa: at(MADT_OFFSET),
        len,
    })
}
