//! ACPI tables for a guest (ACPI 6.5), so an unmodified guest finds its
//! interrupt controllers, CPUs, PM timer and reset register and can power
//! off: [`build`] writes them into a buffer that becomes guest memory, and
//! [`Pm1`] models the fixed hardware registers they describe. The table
//! layouts are in [`tables`], the AML encoders in [`aml`].
//!
//! # Guest memory
//!
//! The tables fill one region at `base_gpa`: for every partition, the BIOS
//! read-only area at [`DEFAULT_BASE_GPA`] (0xE0000, [`REGION_SIZE`] =
//! 64 KiB), where an OS that is given no RSDP finds it by scanning 16-byte
//! boundaries (ACPI 6.5 5.2.5.1). The region's layout (offsets from
//! `base_gpa`):
//!
//! | offset  | table | length |
//! |---------|-------|--------|
//! | `0x000` | RSDP (revision 2) | 36 |
//! | `0x080` | XSDT → FADT, MADT | 52 |
//! | `0x0c0` | RSDT → FADT, MADT | 44 |
//! | `0x100` | FADT (revision 6) → FACS, DSDT | 276 |
//! | `0x240` | DSDT (`\_S5_`, `\_SB.VMBS`) | 86 |
//! | `0x2c0` | MADT | 82 + 8 per VP |
//!
//! [`region_len`] is the bytes used (at most `0xb0a`, for [`MAX_MADT_VPS`]).
//! `base_gpa` must be 64-byte aligned and the region must lie below 4 GiB
//! (the RSDP, the RSDT and the FADT's legacy fields hold 32-bit addresses).
//!
//! The FACS is not in the region: it is read/write memory the OS writes
//! (the waking vector, the global lock; ACPI 6.5 5.2.10), so the VID puts
//! [`facs`] in RAM at [`AcpiConfig::facs_gpa`] (64-byte aligned, below
//! 4 GiB): the first bytes of the EBDA, [`DEFAULT_FACS_GPA`], which the
//! memory maps reserve.
//!
//! # Ports
//!
//! | port | register | width |
//! |------|----------|-------|
//! | `0x600` | PM1a_EVT_BLK: PM1_STS (`0x600`), PM1_EN (`0x602`) | 4 |
//! | `0x604` | PM1a_CNT_BLK: PM1_CNT | 2 |
//! | `0x608` | RESET_REG: writing [`RESET_VALUE`] (1) resets | 1 |
//! | `0x60c` | PM_TMR_BLK: the 32-bit PM timer at [`PM_TIMER_HZ`] | 4 |
//!
//! No GPE blocks, no SMI command port (so the platform is always in ACPI
//! mode and SCI_EN reads 1). The SCI is ISA IRQ 9, wired to GSI 9
//! level-triggered, active-high; nothing raises it yet (not even the PM
//! timer's TMR_STS, which PM1_STS shows).
//!
//! # What the VID does with this
//!
//! 1. Builds the tables into the partition's RAM pages at
//!    [`DEFAULT_BASE_GPA`], which the partition manager maps into the guest
//!    read-only (`partition_manager_api::layout::BIOS_AREA`): the guest
//!    reads the tables there, its writes are dropped. Writes the FACS at
//!    [`DEFAULT_FACS_GPA`] in RAM.
//! 2. Marks the BIOS area and the EBDA with the FACS reserved in the e820
//!    map and the Multiboot memory map.
//! 3. For Linux, also puts [`AcpiTables::rsdp_gpa`] in the boot
//!    parameters' `acpi_rsdp_addr` (offset 0x070) so it need not scan.
//! 4. Routes port I/O of PM1's windows ([`crate::bus::PORT_ROUTES`]) to one
//!    [`Pm1`] per partition, whose PM timer counts from the partition's
//!    creation; stops the partition on [`Pm1Effect::PowerOff`], resets it
//!    on [`Pm1Effect::Reset`], and refuses [`Pm1Effect::Sleep`] as
//!    unsupported.
//! 5. Keeps APIC ID = VP index (the MADT says so) and its I/O APIC at
//!    `0xFEC00000` with GSI base 0, ISA IRQ 0 on pin 2.

pub mod aml;
mod pm1;
pub mod tables;
#[cfg(test)]
mod tests;

pub use pm1::{PM_TIMER_BITS, PM_TIMER_HZ, Pm1, Pm1Control, Pm1Effect, Pm1Enable, Pm1Status, PmTimer};
pub use tables::*;

use core::mem::size_of;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromZeros, Immutable, IntoBytes};

// ---------------------------------------------------------------------------
// Platform choices
// ---------------------------------------------------------------------------

/// Where the VID puts the tables: the BIOS read-only area OSes scan.
pub const DEFAULT_BASE_GPA: u64 = 0xe0000;
/// Where the VID puts the FACS: the start of the EBDA, the last KiB of low
/// RAM (reserved in the memory maps), read/write.
pub const DEFAULT_FACS_GPA: u64 = 0x9_fc00;
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
/// PM_TMR_BLK: the 32-bit PM timer ([`PM_TIMER_HZ`], TMR_VAL_EXT set).
pub const PM_TMR_BLK: u16 = 0x60c;
pub const PM_TMR_LEN: u8 = 4;
/// The CMOS RTC's index port: the FADT's RTC fields describe the device
/// there, if the VID models one.
pub const CMOS_INDEX_PORT: u16 = 0x70;
/// The CMOS RAM index of the RTC's century byte (the PC/AT's), which the
/// FADT's CENTURY names when the partition has a CMOS RTC.
pub const CMOS_CENTURY: u8 = 0x32;
/// The SCI: ISA IRQ 9, identity-mapped to GSI 9.
pub const SCI_IRQ: u8 = 9;
/// `\_S5_`'s SLP_TYPa (and SLP_TYPb): what PM1_CNT.SLP_TYP holds to power off.
pub const SLP_TYP_S5: u8 = 5;

pub const LOCAL_APIC_ADDRESS: u32 = 0xfee0_0000;
pub const IO_APIC_ADDRESS: u32 = 0xfec0_0000;
pub const IO_APIC_ID: u8 = 0;
/// The I/O APIC pin the PIT's IRQ 0 is wired to (the usual override).
pub const PIT_GSI: u32 = 2;
/// Most VPs the tables can describe: xAPIC IDs are 8 bits and 0xFF is the
/// broadcast ID (the partition's own bound, `MAX_VPS_PER_PARTITION`, is lower).
pub const MAX_MADT_VPS: u32 = 255;

pub const OEM_ID: [u8; 6] = *b"TESSRA";
pub const OEM_TABLE_ID: [u8; 8] = *b"TESSERA ";
pub const OEM_REVISION: u32 = 1;
pub const CREATOR_ID: [u8; 4] = *b"TSRA";
pub const CREATOR_REVISION: u32 = 1;

// ---------------------------------------------------------------------------
// Layout of the region
// ---------------------------------------------------------------------------

pub const RSDP_OFFSET: usize = 0x000;
pub const XSDT_OFFSET: usize = 0x080;
pub const RSDT_OFFSET: usize = 0x0c0;
pub const FADT_OFFSET: usize = 0x100;
pub const DSDT_OFFSET: usize = 0x240;
pub const MADT_OFFSET: usize = 0x2c0;

/// The tables the XSDT and RSDT list.
const TABLES: usize = 2;
const XSDT_LEN: usize = size_of::<SdtHeader>() + 8 * TABLES;
const RSDT_LEN: usize = size_of::<SdtHeader>() + 4 * TABLES;
/// The DSDT's AML: room for it between the DSDT and the MADT.
const DSDT_AML_CAPACITY: usize = MADT_OFFSET - DSDT_OFFSET - size_of::<SdtHeader>();

const _: () = assert!(RSDP_OFFSET + size_of::<Rsdp>() <= XSDT_OFFSET);
const _: () = assert!(XSDT_OFFSET + XSDT_LEN <= RSDT_OFFSET);
const _: () = assert!(RSDT_OFFSET + RSDT_LEN <= FADT_OFFSET);
const _: () = assert!(FADT_OFFSET + size_of::<Fadt>() <= DSDT_OFFSET);
const _: () = assert!(region_len(MAX_MADT_VPS) <= REGION_SIZE);

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
// Building
// ---------------------------------------------------------------------------

/// What the guest is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcpiConfig {
    /// Virtual processors: APIC IDs and ACPI processor UIDs `0..vps`.
    pub vps: u32,
    /// The VID models the CMOS RTC at ports 0x70/0x71: the FADT's CENTURY
    /// names [`CMOS_CENTURY`]. If not, IAPC_BOOT_ARCH says "CMOS RTC not
    /// present" and Linux leaves the RTC alone.
    pub cmos_rtc: bool,
    /// Where the VID puts the FACS ([`facs`]): 64-byte aligned, below 4 GiB,
    /// in RAM the guest may write and the memory maps reserve.
    pub facs_gpa: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// No VP, or more than [`MAX_MADT_VPS`].
    VpCount(u32),
    /// `out` is shorter than the `needed` bytes.
    RegionTooSmall { needed: usize },
    /// `base_gpa` or the FACS's address is not 64-byte aligned.
    Misaligned(u64),
    /// The region (or the FACS) does not end below 4 GiB.
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

/// The VMBus device's `_HID`, which Linux's `hv_vmbus` binds to (it also
/// takes "VMBus", Hyper-V's spelling).
pub const VMBUS_HID: &str = "VMBUS";

/// The DSDT's AML: `Name (\_S5, Package (4) { 5, 5, 0, 0 })`, so writing
/// SLP_TYP 5 with SLP_EN to PM1a_CNT powers off (PM1b is absent, so the
/// second value is unused); and `Device (\_SB.VMBS)` with `_HID`
/// [`VMBUS_HID`] and an empty `_CRS` (no MMIO window: no device channel
/// needs one yet; `hv_vmbus` refuses a device without `_CRS`), where Linux
/// finds VMBus. Its messages travel by HvPostMessage, not by this device.
pub fn dsdt_aml() -> Result<aml::Aml<DSDT_AML_CAPACITY>, aml::AmlOverflow> {
    let mut stream = aml::Aml::new();
    let s5 = u64::from(SLP_TYP_S5);
    aml::name(&mut stream, b"_S5_", |a| aml::integer_package(a, &[s5, s5, 0, 0]))?;
    aml::device(&mut stream, b"_SB_", b"VMBS", |d| {
        aml::name(d, b"_HID", |a| aml::string(a, VMBUS_HID))?;
        aml::name(d, b"_CRS", |a| aml::buffer(a, &aml::END_TAG))
    })?;
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
        .with_tmr_val_ext(PM_TIMER_BITS == 32)
        .with_reset_reg_sup(true);
    let boot_arch = IapcBootArch::new().with_vga_not_present(true).with_cmos_rtc_not_present(!config.cmos_rtc);
    let dsdt = base + DSDT_OFFSET as u32;
    // `build` checked that it fits.
    let facs = config.facs_gpa as u32;
    let mut fadt = Fadt::new_zeroed();
    fadt.header = header(b"FACP", size_of::<Fadt>(), FADT_REVISION);
    fadt.firmware_ctrl = U32::new(facs);
    fadt.dsdt = U32::new(dsdt);
    fadt.sci_int = U16::new(SCI_IRQ.into());
    fadt.pm1a_evt_blk = U32::new(PM1A_EVT_BLK.into());
    fadt.pm1a_cnt_blk = U32::new(PM1A_CNT_BLK.into());
    fadt.pm_tmr_blk = U32::new(PM_TMR_BLK.into());
    fadt.pm1_evt_len = PM1_EVT_LEN;
    fadt.pm1_cnt_len = PM1_CNT_LEN;
    fadt.pm_tmr_len = PM_TMR_LEN;
    if config.cmos_rtc {
        fadt.century = CMOS_CENTURY;
    }
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
    fadt.x_pm_tmr_blk = Gas::io(PM_TMR_BLK, PM_TMR_LEN, GAS_ACCESS_DWORD);
    fadt
}

/// The FACS (ACPI 6.5 5.2.10) the FADT names: version 2, no waking vector,
/// the global lock free. The VID writes it at [`AcpiConfig::facs_gpa`].
pub fn facs() -> Facs {
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
        // vps <= MAX_MADT_VPS (checked by `build`): the ID fits and is not 0xFF.
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
    if config.vps == 0 || config.vps > MAX_MADT_VPS {
        return Err(AcpiError::VpCount(config.vps));
    }
    let len = region_len(config.vps);
    if out.len() < len {
        return Err(AcpiError::RegionTooSmall { needed: len });
    }
    for gpa in [base_gpa, config.facs_gpa] {
        if !gpa.is_multiple_of(64) {
            return Err(AcpiError::Misaligned(gpa));
        }
    }
    if config.facs_gpa.checked_add(size_of::<Facs>() as u64).is_none_or(|end| end > 1 << 32) {
        return Err(AcpiError::AboveFourGiB(config.facs_gpa));
    }
    let base = match base_gpa.checked_add(len as u64) {
        Some(end) if end <= 1 << 32 => base_gpa as u32,
        _ => return Err(AcpiError::AboveFourGiB(base_gpa)),
    };
    let aml = dsdt_aml().map_err(|_| AcpiError::AmlTooLarge)?;
    let gpa = |offset: usize| base + offset as u32;
    out[..len].fill(0);

    // FADT, DSDT, MADT.
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
        facs_gpa: config.facs_gpa,
        dsdt_gpa: at(DSDT_OFFSET),
        madt_gpa: at(MADT_OFFSET),
        len,
    })
}
