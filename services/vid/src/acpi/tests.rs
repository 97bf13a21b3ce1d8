//! The tables are read back the way an OS reads them: by raw offsets from
//! the specification (not through this module's structs), starting from an
//! RSDP found by scanning the region.

use super::aml::{self, Aml, AmlOverflow};
use super::*;
use core::mem::offset_of;

const BASE: u64 = DEFAULT_BASE_GPA;

fn built(vps: u32) -> (std::vec::Vec<u8>, AcpiTables) {
    let mut region = vec![0xaa; REGION_SIZE];
    let tables = build(&AcpiConfig { vps, cmos_rtc: false, facs_gpa: DEFAULT_FACS_GPA }, &mut region, BASE).unwrap();
    (region, tables)
}

fn u8_at(region: &[u8], gpa: u64, offset: usize) -> u8 {
    region[(gpa - BASE) as usize + offset]
}

fn u16_at(region: &[u8], gpa: u64, offset: usize) -> u16 {
    let at = (gpa - BASE) as usize + offset;
    u16::from_le_bytes(region[at..at + 2].try_into().unwrap())
}

fn u32_at(region: &[u8], gpa: u64, offset: usize) -> u32 {
    let at = (gpa - BASE) as usize + offset;
    u32::from_le_bytes(region[at..at + 4].try_into().unwrap())
}

fn u64_at(region: &[u8], gpa: u64, offset: usize) -> u64 {
    let at = (gpa - BASE) as usize + offset;
    u64::from_le_bytes(region[at..at + 8].try_into().unwrap())
}

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b))
}

/// The table at `gpa`: checks its signature, OEM fields and checksum and
/// returns its bytes.
fn table<'a>(region: &'a [u8], gpa: u64, signature: &[u8; 4]) -> &'a [u8] {
    let at = (gpa - BASE) as usize;
    assert_eq!(&region[at..at + 4], signature);
    let len = u32_at(region, gpa, 4) as usize;
    let bytes = &region[at..at + len];
    assert_eq!(sum(bytes), 0, "{} checksum", std::str::from_utf8(signature).unwrap());
    assert_eq!(&bytes[10..16], b"TESSRA");
    assert_eq!(&bytes[16..24], b"TESSERA ");
    bytes
}

/// Linux's `acpi_find_root_pointer`: the first 16-byte aligned "RSD PTR "
/// whose ACPI 1.0 checksum (and, from revision 2, extended checksum) holds.
fn scan_for_rsdp(region: &[u8]) -> Option<u64> {
    (0..region.len() - 36).step_by(16).find_map(|at| {
        let candidate = &region[at..];
        let v1 = &candidate[..20];
        let valid = candidate.starts_with(b"RSD PTR ")
            && sum(v1) == 0
            && (candidate[15] < 2 || sum(&candidate[..u32_at(region, BASE + at as u64, 20) as usize]) == 0);
        valid.then_some(BASE + at as u64)
    })
}

#[test]
fn the_rsdp_is_found_by_scanning_and_leads_to_every_table() {
    let (region, tables) = built(4);
    let rsdp = scan_for_rsdp(&region).expect("no RSDP");
    assert_eq!(rsdp, tables.rsdp_gpa);
    assert_eq!(rsdp, 0xe0000);
    assert_eq!(u8_at(&region, rsdp, 15), 2, "revision");
    assert_eq!(u32_at(&region, rsdp, 20), 36, "length");
    assert_eq!(&region[9..15], b"TESSRA");

    let xsdt = u64_at(&region, rsdp, 24);
    let rsdt = u64::from(u32_at(&region, rsdp, 16));
    assert_eq!((xsdt, rsdt), (tables.xsdt_gpa, tables.rsdt_gpa));
    let xsdt_bytes = table(&region, xsdt, b"XSDT");
    let rsdt_bytes = table(&region, rsdt, b"RSDT");
    assert_eq!((xsdt_bytes.len(), rsdt_bytes.len()), (36 + 16, 36 + 8));
    let listed: std::vec::Vec<u64> = (0..2).map(|i| u64_at(&region, xsdt, 36 + 8 * i)).collect();
    assert_eq!(listed, [tables.fadt_gpa, tables.madt_gpa]);
    let listed32: std::vec::Vec<u64> = (0..2).map(|i| u32_at(&region, rsdt, 36 + 4 * i).into()).collect();
    assert_eq!(listed32, listed);

    assert_eq!(table(&region, tables.fadt_gpa, b"FACP").len(), 276);
    assert_eq!(table(&region, tables.madt_gpa, b"APIC").len(), 44 + 4 * 8 + 12 + 2 * 10 + 6);
    let dsdt = u64_at(&region, tables.fadt_gpa, 140);
    assert_eq!(dsdt, tables.dsdt_gpa);
    table(&region, dsdt, b"DSDT");
    // The FACS is outside the region, where the configuration says.
    let facs = u64::from(u32_at(&region, tables.fadt_gpa, 36));
    assert_eq!((facs, tables.facs_gpa), (0x9_fc00, 0x9_fc00));
    assert_eq!(u64_at(&region, tables.fadt_gpa, 132), 0, "X_FIRMWARE_CTRL: FIRMWARE_CTRL is used");
    let facs = super::facs();
    let facs = facs.as_bytes();
    assert_eq!((&facs[..4], facs.len()), (&b"FACS"[..], 64));
    assert_eq!(u32::from_le_bytes(facs[4..8].try_into().unwrap()), 64, "length");
    assert_eq!(facs[32], 2, "version");
    assert!(facs[8..32].iter().chain(&facs[33..]).all(|b| *b == 0), "no waking vector, the global lock free");

    // The layout the module documents.
    assert_eq!(
        [tables.xsdt_gpa, tables.rsdt_gpa, tables.fadt_gpa, tables.dsdt_gpa, tables.madt_gpa],
        [0xe0080, 0xe00c0, 0xe0100, 0xe0240, 0xe02c0]
    );
    assert_eq!(tables.len, 0x2c0 + 44 + 4 * 8 + 38);
    // Nothing past the tables is touched.
    assert!(region[tables.len..].iter().all(|b| *b == 0xaa));
}

#[test]
fn every_checksum_fails_when_a_byte_changes() {
    let (mut region, tables) = built(2);
    region[(tables.madt_gpa - BASE) as usize + 50] ^= 1;
    assert_ne!(sum(&region[(tables.madt_gpa - BASE) as usize..][..madt_len(2)]), 0);
    region[(tables.rsdp_gpa - BASE) as usize + 24] ^= 1;
    assert_eq!(scan_for_rsdp(&region), None);
}

#[test]
fn the_fadt_fields_linux_reads_are_at_their_offsets() {
    // The struct's layout against ACPI 6.5 table 5.9.
    assert_eq!(offset_of!(Fadt, firmware_ctrl), 36);
    assert_eq!(offset_of!(Fadt, dsdt), 40);
    assert_eq!(offset_of!(Fadt, preferred_pm_profile), 45);
    assert_eq!(offset_of!(Fadt, sci_int), 46);
    assert_eq!(offset_of!(Fadt, smi_cmd), 48);
    assert_eq!(offset_of!(Fadt, pm1a_evt_blk), 56);
    assert_eq!(offset_of!(Fadt, pm1a_cnt_blk), 64);
    assert_eq!(offset_of!(Fadt, pm_tmr_blk), 76);
    assert_eq!(offset_of!(Fadt, gpe0_blk), 80);
    assert_eq!(offset_of!(Fadt, pm1_evt_len), 88);
    assert_eq!(offset_of!(Fadt, pm_tmr_len), 91);
    assert_eq!(offset_of!(Fadt, p_lvl2_lat), 96);
    assert_eq!(offset_of!(Fadt, century), 108);
    assert_eq!(offset_of!(Fadt, iapc_boot_arch), 109);
    assert_eq!(offset_of!(Fadt, flags), 112);
    assert_eq!(offset_of!(Fadt, reset_reg), 116);
    assert_eq!(offset_of!(Fadt, reset_value), 128);
    assert_eq!(offset_of!(Fadt, fadt_minor_version), 131);
    assert_eq!(offset_of!(Fadt, x_firmware_ctrl), 132);
    assert_eq!(offset_of!(Fadt, x_dsdt), 140);
    assert_eq!(offset_of!(Fadt, x_pm1a_evt_blk), 148);
    assert_eq!(offset_of!(Fadt, x_pm1a_cnt_blk), 172);
    assert_eq!(offset_of!(Fadt, x_pm_tmr_blk), 208);
    assert_eq!(offset_of!(Fadt, sleep_control_reg), 244);
    assert_eq!(offset_of!(Fadt, hypervisor_vendor_identity), 268);

    // The values, read by offset.
    let (region, t) = built(1);
    let f = t.fadt_gpa;
    assert_eq!(u8_at(&region, f, 8), 6, "revision");
    assert_eq!(u32_at(&region, f, 40), 0xe0240, "DSDT");
    assert_eq!(u16_at(&region, f, 46), 9, "SCI_INT");
    assert_eq!(u32_at(&region, f, 48), 0, "SMI_CMD: always in ACPI mode");
    assert_eq!(u32_at(&region, f, 56), 0x600, "PM1a_EVT_BLK");
    assert_eq!(u32_at(&region, f, 60), 0, "PM1b_EVT_BLK");
    assert_eq!(u32_at(&region, f, 64), 0x604, "PM1a_CNT_BLK");
    assert_eq!(u32_at(&region, f, 68), 0, "PM1b_CNT_BLK");
    assert_eq!(u32_at(&region, f, 76), 0x60c, "PM_TMR_BLK");
    assert_eq!(u32_at(&region, f, 80), 0, "GPE0_BLK");
    assert_eq!(u8_at(&region, f, 88), 4, "PM1_EVT_LEN");
    assert_eq!(u8_at(&region, f, 89), 2, "PM1_CNT_LEN");
    assert_eq!(u8_at(&region, f, 91), 4, "PM_TMR_LEN");
    assert_eq!(u8_at(&region, f, 108), 0, "CENTURY: no CMOS RTC");
    assert_eq!(u16_at(&region, f, 96), 101, "P_LVL2_LAT: no C2");
    assert_eq!(u16_at(&region, f, 98), 1001, "P_LVL3_LAT: no C3");
    // IAPC_BOOT_ARCH: no legacy devices, no 8042, VGA not present, no CMOS RTC.
    assert_eq!(u16_at(&region, f, 109), (1 << 2) | (1 << 5));
    // FLAGS: WBINVD, PROC_C1, PWR_BUTTON, SLP_BUTTON, TMR_VAL_EXT (a
    // 32-bit PM timer), RESET_REG_SUP; not HW_REDUCED_ACPI.
    let flags = u32_at(&region, f, 112);
    assert_eq!(flags, (1 << 0) | (1 << 2) | (1 << 4) | (1 << 5) | (1 << 8) | (1 << 10));
    assert_eq!(flags & (1 << 20), 0);
    // RESET_REG: system I/O, 8 bits, byte access, at 0x608; RESET_VALUE 1.
    assert_eq!(&region[(f - BASE) as usize + 116..][..4], [1, 8, 0, 1]);
    assert_eq!(u64_at(&region, f, 120), 0x608);
    assert_eq!(u8_at(&region, f, 128), 1);
    assert_eq!(u64_at(&region, f, 140), 0xe0240, "X_DSDT");
    // X_PM1a_EVT_BLK and X_PM1a_CNT_BLK: system I/O, widths 32 and 16.
    assert_eq!(&region[(f - BASE) as usize + 148..][..4], [1, 32, 0, 0]);
    assert_eq!(u64_at(&region, f, 152), 0x600);
    assert_eq!(&region[(f - BASE) as usize + 172..][..4], [1, 16, 0, 0]);
    assert_eq!(u64_at(&region, f, 176), 0x604);
    // X_PM_TMR_BLK: system I/O, 32 bits, dword access.
    assert_eq!(&region[(f - BASE) as usize + 208..][..4], [1, 32, 0, 3]);
    assert_eq!(u64_at(&region, f, 212), 0x60c);
    // The other extended blocks are absent.
    assert!(region[(f - BASE) as usize + 184..][..24].iter().all(|b| *b == 0));
    assert!(region[(f - BASE) as usize + 220..][..56].iter().all(|b| *b == 0));

    // With the CMOS RTC modelled, only VGA is flagged absent, and CENTURY
    // names the RTC's century byte.
    let mut with_rtc = vec![0; REGION_SIZE];
    build(&AcpiConfig { vps: 1, cmos_rtc: true, facs_gpa: DEFAULT_FACS_GPA }, &mut with_rtc, BASE).unwrap();
    assert_eq!(u16_at(&with_rtc, f, 109), 1 << 2);
    assert_eq!(u8_at(&with_rtc, f, 108), 0x32);
    assert_eq!(sum(&with_rtc[(f - BASE) as usize..][..276]), 0);
}

/// An MADT entry: its type and bytes.
fn madt_entries(region: &[u8], madt: u64) -> std::vec::Vec<(u8, std::vec::Vec<u8>)> {
    let len = u32_at(region, madt, 4) as usize;
    let bytes = &region[(madt - BASE) as usize..][..len];
    let mut entries = std::vec::Vec::new();
    let mut at = 44;
    while at < len {
        let (kind, entry_len) = (bytes[at], bytes[at + 1] as usize);
        assert!(entry_len >= 2 && at + entry_len <= len, "entry at {at}");
        entries.push((kind, bytes[at..at + entry_len].to_vec()));
        at += entry_len;
    }
    assert_eq!(at, len);
    entries
}

#[test]
fn the_madt_describes_every_vp_the_ioapic_and_the_overrides() {
    let (region, t) = built(3);
    assert_eq!(u32_at(&region, t.madt_gpa, 36), 0xfee0_0000, "local APIC address");
    assert_eq!(u32_at(&region, t.madt_gpa, 40), 1, "PCAT_COMPAT");
    let entries = madt_entries(&region, t.madt_gpa);
    let expected: std::vec::Vec<(u8, std::vec::Vec<u8>)> = vec![
        // Processor Local APIC: UID = APIC ID = VP index, enabled.
        (0, vec![0, 8, 0, 0, 1, 0, 0, 0]),
        (0, vec![0, 8, 1, 1, 1, 0, 0, 0]),
        (0, vec![0, 8, 2, 2, 1, 0, 0, 0]),
        // I/O APIC 0 at 0xFEC00000, GSI base 0.
        (1, vec![1, 12, 0, 0, 0x00, 0x00, 0xc0, 0xfe, 0, 0, 0, 0]),
        // ISA IRQ 0 -> GSI 2, conforming.
        (2, vec![2, 10, 0, 0, 2, 0, 0, 0, 0, 0]),
        // ISA IRQ 9 (SCI) -> GSI 9, active high (1), level (3 << 2).
        (2, vec![2, 10, 0, 9, 9, 0, 0, 0, 0x0d, 0]),
        // NMI on LINT1 of every processor.
        (4, vec![4, 6, 0xff, 0, 0, 1]),
    ];
    assert_eq!(entries, expected);
}

#[test]
fn the_madt_scales_to_the_largest_vp_count() {
    let (region, t) = built(MAX_MADT_VPS);
    let entries = madt_entries(&region, t.madt_gpa);
    let lapics: std::vec::Vec<_> = entries.iter().filter(|(kind, _)| *kind == 0).collect();
    assert_eq!(lapics.len(), 255);
    for (i, (_, entry)) in lapics.iter().enumerate() {
        assert_eq!((entry[2], entry[3], entry[4]), (i as u8, i as u8, 1));
    }
    assert_ne!(lapics.last().unwrap().1[3], 0xff, "0xFF is the broadcast APIC ID");
    assert_eq!(t.len, region_len(MAX_MADT_VPS));
    table(&region, t.madt_gpa, b"APIC");
}

#[test]
fn bad_configurations_and_regions_are_refused() {
    let mut region = vec![0; REGION_SIZE];
    let config = |vps| AcpiConfig { vps, cmos_rtc: false, facs_gpa: DEFAULT_FACS_GPA };
    assert_eq!(build(&config(0), &mut region, BASE), Err(AcpiError::VpCount(0)));
    assert_eq!(build(&config(256), &mut region, BASE), Err(AcpiError::VpCount(256)));
    let needed = region_len(8);
    assert_eq!(build(&config(8), &mut region[..needed - 1], BASE), Err(AcpiError::RegionTooSmall { needed }));
    assert!(build(&config(8), &mut region[..needed], BASE).is_ok());
    assert_eq!(build(&config(1), &mut region, BASE + 16), Err(AcpiError::Misaligned(BASE + 16)));
    let high = (1u64 << 32) - 0x100;
    assert_eq!(build(&config(1), &mut region, high), Err(AcpiError::AboveFourGiB(high)));
    assert_eq!(build(&config(1), &mut region, u64::MAX - 63), Err(AcpiError::AboveFourGiB(u64::MAX - 63)));
    let facs = |facs_gpa| AcpiConfig { vps: 1, cmos_rtc: false, facs_gpa };
    assert_eq!(build(&facs(0x9_fc20), &mut region, BASE), Err(AcpiError::Misaligned(0x9_fc20)));
    let high = (1u64 << 32) - 0x40;
    assert!(build(&facs(high), &mut region, BASE).is_ok());
    assert_eq!(build(&facs(1 << 32), &mut region, BASE), Err(AcpiError::AboveFourGiB(1 << 32)));
    assert_eq!(build(&facs(u64::MAX - 63), &mut region, BASE), Err(AcpiError::AboveFourGiB(u64::MAX - 63)));
    // The highest region that fits.
    let top = (1u64 << 32) - region_len(1).next_multiple_of(64) as u64;
    assert_eq!(build(&config(1), &mut region, top).unwrap().rsdp_gpa, top);
}

// ---------------------------------------------------------------------------
// AML
// ---------------------------------------------------------------------------

/// A decoded AML term: just what the DSDT uses.
#[derive(Debug, PartialEq)]
enum Term {
    Name([u8; 4], Box<Term>),
    Package(std::vec::Vec<Term>),
    Integer(u64),
}

/// Decodes a `PkgLength` at `aml[0]`: (the length it encodes, its bytes).
fn decode_pkg_length(aml: &[u8]) -> (usize, usize) {
    let extra = (aml[0] >> 6) as usize;
    if extra == 0 {
        return ((aml[0] & 0x3f) as usize, 1);
    }
    assert_eq!(aml[0] & 0x30, 0, "bits 4-5 are reserved in a multi-byte PkgLength");
    let mut len = (aml[0] & 0xf) as usize;
    for i in 0..extra {
        len |= (aml[1 + i] as usize) << (4 + 8 * i);
    }
    (len, 1 + extra)
}

/// Decodes one term at the start of `aml`: (term, bytes used).
fn decode(aml: &[u8]) -> (Term, usize) {
    match aml[0] {
        aml::ZERO_OP => (Term::Integer(0), 1),
        aml::ONE_OP => (Term::Integer(1), 1),
        prefix @ (aml::BYTE_PREFIX | aml::WORD_PREFIX | aml::DWORD_PREFIX | aml::QWORD_PREFIX) => {
            let n = match prefix {
                aml::BYTE_PREFIX => 1,
                aml::WORD_PREFIX => 2,
                aml::DWORD_PREFIX => 4,
                _ => 8,
            };
            let mut bytes = [0; 8];
            bytes[..n].copy_from_slice(&aml[1..1 + n]);
            (Term::Integer(u64::from_le_bytes(bytes)), 1 + n)
        }
        aml::NAME_OP => {
            let seg: [u8; 4] = aml[1..5].try_into().unwrap();
            assert!(seg.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_'));
            let (value, used) = decode(&aml[5..]);
            (Term::Name(seg, Box::new(value)), 5 + used)
        }
        aml::PACKAGE_OP => {
            let (len, len_bytes) = decode_pkg_length(&aml[1..]);
            let count = aml[1 + len_bytes] as usize;
            let end = 1 + len;
            let mut at = 2 + len_bytes;
            let mut elements = std::vec::Vec::new();
            while at < end {
                let (element, used) = decode(&aml[at..end]);
                elements.push(element);
                at += used;
            }
            assert_eq!(at, end, "the package's PkgLength covers its elements exactly");
            assert_eq!(elements.len(), count, "NumElements");
            (Term::Package(elements), end)
        }
        op => panic!("unexpected opcode {op:#x}"),
    }
}

#[test]
fn the_dsdt_declares_s5_with_sleep_type_5() {
    let (region, t) = built(1);
    let dsdt = table(&region, t.dsdt_gpa, b"DSDT");
    assert_eq!(dsdt[8], 2, "revision 2: 64-bit integers");
    let body = &dsdt[36..][..14];
    assert_eq!(body, [0x08, b'_', b'S', b'5', b'_', 0x12, 0x08, 0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00]);
    let (term, used) = decode(body);
    assert_eq!(used, body.len());
    let ints = |v: &[u64]| Term::Package(v.iter().map(|i| Term::Integer(*i)).collect());
    assert_eq!(term, Term::Name(*b"_S5_", Box::new(ints(&[5, 5, 0, 0]))));
}

#[test]
fn the_dsdt_declares_the_vmbus_device_after_s5() {
    let (region, t) = built(1);
    let dsdt = table(&region, t.dsdt_gpa, b"DSDT");
    assert_eq!(u32::from_le_bytes(dsdt[4..8].try_into().unwrap()) as usize, dsdt.len());
    let device = &dsdt[36 + 14..];
    #[rustfmt::skip]
    let want: &[u8] = &[
        0x5b, 0x82, 34,                                   // Device, PkgLength (itself + 33)
        0x5c, 0x2e, b'_', b'S', b'B', b'_', b'V', b'M', b'B', b'S', // \_SB.VMBS
        0x08, b'_', b'H', b'I', b'D', 0x0d, b'V', b'M', b'B', b'U', b'S', 0, // Name (_HID, "VMBUS")
        0x08, b'_', b'C', b'R', b'S', 0x11, 5, 0x0a, 2, 0x79, 0x00, // Name (_CRS, Buffer (2) { EndTag })
    ];
    assert_eq!(device, want);
    assert_eq!(decode_pkg_length(&device[2..]), (device.len() - 2, 1), "the device's PkgLength covers it exactly");
}

#[test]
fn pkg_length_takes_the_shortest_encoding_that_counts_itself() {
    for body in [0, 1, 62, 63, 64, 200, 4093, 4094, 4095, 70_000, 1_048_573, 1_048_574, 5_000_000] {
        let mut out: Aml<8> = Aml::new();
        aml::pkg_length(&mut out, body).unwrap();
        let (len, used) = decode_pkg_length(&out);
        assert_eq!(used, out.len());
        assert_eq!(len, body + used, "body {body}");
        let shortest = match body + 1 {
            ..=63 => 1,
            _ if body + 2 < 1 << 12 => 2,
            _ if body + 3 < 1 << 20 => 3,
            _ => 4,
        };
        assert_eq!(used, shortest, "body {body}");
    }
    assert_eq!(aml::pkg_length(&mut Aml::<8>::new(), aml::PKG_LENGTH_MAX), Err(AmlOverflow));
    assert_eq!(aml::pkg_length(&mut Aml::<1>::new(), 100), Err(AmlOverflow));
}

#[test]
fn integers_take_their_shortest_encoding() {
    for (value, encoded) in [
        (0u64, &[0x00][..]),
        (1, &[0x01]),
        (5, &[0x0a, 5]),
        (0x100, &[0x0b, 0, 1]),
        (0x1_0000, &[0x0c, 0, 0, 1, 0]),
        (0x1_0000_0000, &[0x0e, 0, 0, 0, 0, 1, 0, 0, 0]),
    ] {
        let mut out: Aml<16> = Aml::new();
        aml::integer(&mut out, value).unwrap();
        assert_eq!(out.as_slice(), encoded, "{value:#x}");
        assert_eq!(decode(&out), (Term::Integer(value), encoded.len()));
    }
}

#[test]
fn long_packages_round_trip() {
    let elements: std::vec::Vec<u64> = (0..40).map(|i| 0x1000 + i).collect();
    let mut out: Aml<256> = Aml::new();
    aml::name(&mut out, b"BIG_", |a| aml::integer_package(a, &elements)).unwrap();
    assert_eq!(out[6] >> 6, 1, "a two-byte PkgLength");
    let (term, used) = decode(&out);
    assert_eq!(used, out.len());
    let expected = Term::Package(elements.iter().map(|i| Term::Integer(*i)).collect());
    assert_eq!(term, Term::Name(*b"BIG_", Box::new(expected)));
    // Too many for its buffer.
    let mut small: Aml<16> = Aml::new();
    assert_eq!(aml::integer_package(&mut small, &elements), Err(AmlOverflow));
}

// ---------------------------------------------------------------------------
// PM1
// ---------------------------------------------------------------------------

const SLP_EN: u64 = 1 << 13;

fn slp_typ(typ: u64) -> u64 {
    typ << 10
}

#[test]
fn pm1_claims_its_ports_only() {
    let claimed: std::vec::Vec<u16> = (0..=u16::MAX).filter(|p| Pm1::claims_port(*p)).collect();
    assert_eq!(claimed, [0x600, 0x601, 0x602, 0x603, 0x604, 0x605, 0x608, 0x60c, 0x60d, 0x60e, 0x60f]);
    let mut pm1 = Pm1::new();
    assert_eq!(pm1.port_read(0x606, 1, 0), None);
    assert_eq!(pm1.port_write(0x5ff, 2, 0xffff, 0), None);
    assert_eq!(pm1.port_read(0x604, 8, 0), None, "not an I/O size");
    assert_eq!(pm1.port_write(0x604, 3, 0, 0), None);
}

#[test]
fn sci_en_reads_one_whatever_is_written() {
    let mut pm1 = Pm1::new();
    assert_eq!(pm1.port_read(0x604, 2, 0), Some(1));
    assert_eq!(pm1.port_write(0x604, 2, 0, 0), Some(Pm1Effect::Done));
    assert_eq!(pm1.port_read(0x604, 2, 0), Some(1));
    assert_eq!(pm1.port_read(0x604, 1, 0), Some(1));
    assert_eq!(pm1.port_read(0x605, 1, 0), Some(0));
    // BM_RLD is kept; GBL_RLS reads 0, reserved bits read 0.
    pm1.port_write(0x604, 2, 0b110, 0);
    assert_eq!(pm1.port_read(0x604, 2, 0), Some(0b011));
    pm1.port_write(0x604, 2, 0xc3f8, 0);
    assert_eq!(pm1.port_read(0x604, 2, 0), Some(0b001));
}

#[test]
fn writing_slp_typ_5_with_slp_en_powers_off() {
    // ACPICA's acpi_hw_legacy_sleep: read PM1_CNT, write SLP_TYP, then
    // SLP_TYP | SLP_EN.
    let mut pm1 = Pm1::new();
    let cnt = pm1.port_read(0x604, 2, 0).unwrap();
    assert_eq!(pm1.port_write(0x604, 2, cnt | slp_typ(5), 0), Some(Pm1Effect::Done));
    assert_eq!(pm1.port_read(0x604, 2, 0), Some(1 | slp_typ(5)), "SLP_TYP is kept, SLP_EN is not");
    assert_eq!(pm1.port_write(0x604, 2, cnt | slp_typ(5) | SLP_EN, 0), Some(Pm1Effect::PowerOff));
    assert_eq!(pm1.port_read(0x604, 2, 0), Some(1 | slp_typ(5)));

    // SLP_EN in a byte write to the high half uses the SLP_TYP held.
    let mut pm1 = Pm1::new();
    pm1.port_write(0x604, 2, slp_typ(5), 0);
    assert_eq!(pm1.port_write(0x605, 1, (slp_typ(5) | SLP_EN) >> 8, 0), Some(Pm1Effect::PowerOff));
}

#[test]
fn other_sleep_types_are_reported_not_entered() {
    let mut pm1 = Pm1::new();
    assert_eq!(pm1.port_write(0x604, 2, slp_typ(3) | SLP_EN, 0), Some(Pm1Effect::Sleep(3)));
    assert_eq!(pm1.port_write(0x604, 2, slp_typ(0) | SLP_EN, 0), Some(Pm1Effect::Sleep(0)));
    assert_eq!(pm1.port_write(0x604, 2, slp_typ(5), 0), Some(Pm1Effect::Done), "no SLP_EN");
}

#[test]
fn the_reset_register_resets_on_its_value_only() {
    let mut pm1 = Pm1::new();
    assert_eq!(pm1.port_write(0x608, 1, 0, 0), Some(Pm1Effect::Done));
    assert_eq!(pm1.port_write(0x608, 1, 2, 0), Some(Pm1Effect::Done));
    assert_eq!(pm1.port_write(0x608, 1, u64::from(RESET_VALUE), 0), Some(Pm1Effect::Reset));
    assert_eq!(pm1.port_read(0x608, 1, 0), Some(0));
}

#[test]
fn pm1_status_is_write_one_to_clear_and_enable_is_read_write() {
    let mut pm1 = Pm1::new();
    assert_eq!(pm1.port_read(0x600, 4, 0), Some(0));
    pm1.raise(Pm1Status::new().with_pwrbtn_sts(true).with_tmr_sts(true));
    assert_eq!(pm1.port_read(0x600, 2, 0), Some(0x101));
    assert!(!pm1.sci_pending());
    // Enable the power button: the SCI is due.
    assert_eq!(pm1.port_write(0x602, 2, 1 << 8, 0), Some(Pm1Effect::Done));
    assert!(pm1.sci_pending());
    // One 32-bit read covers PM1_STS and PM1_EN.
    assert_eq!(pm1.port_read(0x600, 4, 0), Some((1 << 8) << 16 | 0x101));
    // Writing 0 clears nothing; writing 1 clears that bit only.
    pm1.port_write(0x600, 2, 0, 0);
    assert_eq!(pm1.port_read(0x600, 2, 0), Some(0x101));
    pm1.port_write(0x600, 2, 1 << 8, 0);
    assert_eq!(pm1.port_read(0x600, 2, 0), Some(0x1));
    assert!(!pm1.sci_pending());
    // Unimplemented enable bits stay 0.
    pm1.port_write(0x602, 2, 0xffff, 0);
    let en = Pm1Enable::new().with_tmr_en(true).with_gbl_en(true).with_pwrbtn_en(true);
    let en = en.with_slpbtn_en(true).with_rtc_en(true);
    assert_eq!(pm1.port_read(0x602, 2, 0), Some(en.into_bits().into()));
    // A 32-bit write clears status and sets enable together.
    pm1.port_write(0x600, 4, 0xffff, 0);
    assert_eq!(pm1.port_read(0x600, 4, 0), Some(0));
}

#[test]
fn accesses_running_past_pm1_read_ones_and_drop_writes() {
    let mut pm1 = Pm1::new();
    // 0x604-0x605 are PM1_CNT, 0x606-0x607 are nobody's.
    assert_eq!(pm1.port_read(0x604, 4, 0), Some(0xffff_0001));
    assert_eq!(pm1.port_write(0x604, 4, 0xffff_0000 | slp_typ(5) | SLP_EN, 0), Some(Pm1Effect::PowerOff));
    assert_eq!(pm1.port_read(0x608, 4, 0), Some(0xffff_ff00));
    // One write reaching PM1_CNT's high byte and the reset register.
    let mut pm1 = Pm1::new();
    assert_eq!(pm1.port_write(0x605, 4, 0x0100_0000 | (slp_typ(3) >> 8), 0), Some(Pm1Effect::Reset));
    assert_eq!(pm1.port_read(0x604, 2, 0), Some(1 | slp_typ(3)), "the PM1_CNT byte still lands");
}

// ---------------------------------------------------------------------------
// PM timer
// ---------------------------------------------------------------------------

/// A 2 GHz TSC from TSC 1000.
const TIMER: PmTimer = PmTimer { tsc_hz: 2_000_000_000, origin: 1000 };

fn tsc_after(seconds_num: u64, seconds_den: u64) -> u64 {
    TIMER.origin + TIMER.tsc_hz * seconds_num / seconds_den
}

#[test]
fn the_pm_timer_counts_at_3_579545_mhz_from_its_origin() {
    let mut pm1 = Pm1::with_timer(TIMER);
    assert_eq!(pm1.port_read(PM_TMR_BLK, 4, TIMER.origin), Some(0));
    assert_eq!(pm1.port_read(PM_TMR_BLK, 4, 0), Some(0), "before the origin");
    assert_eq!(pm1.port_read(PM_TMR_BLK, 4, tsc_after(1, 1)), Some(PM_TIMER_HZ));
    assert_eq!(pm1.port_read(PM_TMR_BLK, 4, tsc_after(1, 10)), Some(357_954));
    // Byte and word reads see the same counter.
    let now = tsc_after(7, 3);
    let whole = pm1.port_read(PM_TMR_BLK, 4, now).unwrap();
    assert_eq!(pm1.port_read(PM_TMR_BLK, 2, now), Some(whole & 0xffff));
    assert_eq!(pm1.port_read(PM_TMR_BLK + 2, 1, now), Some((whole >> 16) & 0xff));
    // Monotonic between wraps.
    let mut last = 0;
    for n in 0..1000 {
        let v = pm1.port_read(PM_TMR_BLK, 4, tsc_after(n, 7)).unwrap();
        assert!(v >= last, "{v} after {last}");
        last = v;
    }
    // Writes are dropped and have no effect.
    assert_eq!(pm1.port_write(PM_TMR_BLK, 4, 0, now), Some(Pm1Effect::Done));
    assert_eq!(pm1.port_read(PM_TMR_BLK, 4, now), Some(whole));
    // A timer without a clock stands at 0.
    assert_eq!(Pm1::new().port_read(PM_TMR_BLK, 4, 1 << 40), Some(0));
}

#[test]
fn the_pm_timer_wraps_at_32_bits_and_sets_tmr_sts_when_bit_31_toggles() {
    let mut pm1 = Pm1::with_timer(TIMER);
    let at_ticks = |ticks: u64| TIMER.origin + (u128::from(ticks) * 2_000_000_000 / 3_579_545) as u64 + 1;
    let tmr_sts = |pm1: &mut Pm1, now| pm1.port_read(PM1A_EVT_BLK, 2, now).unwrap() & 1;
    let before = at_ticks((1 << 31) - 10);
    assert!(pm1.port_read(PM_TMR_BLK, 4, before).unwrap() < 1 << 31);
    assert_eq!(tmr_sts(&mut pm1, before), 0);
    let after = at_ticks((1 << 31) + 10);
    assert!(pm1.port_read(PM_TMR_BLK, 4, after).unwrap() >= 1 << 31);
    assert_eq!(tmr_sts(&mut pm1, after), 1, "bit 31 went 0 -> 1");
    // Write 1 to clear; it stays clear until the next toggle.
    pm1.port_write(PM1A_EVT_BLK, 2, 1, after);
    assert_eq!(tmr_sts(&mut pm1, after), 0);
    let wrapped = at_ticks((1 << 32) + 10);
    let v = pm1.port_read(PM_TMR_BLK, 4, wrapped).unwrap();
    assert!(v < 100, "wrapped to {v}");
    assert_eq!(tmr_sts(&mut pm1, wrapped), 1, "bit 31 went 1 -> 0");
    // No SCI unless TMR_EN.
    assert!(!pm1.sci_pending());
}

// ---------------------------------------------------------------------------
// The guest test kernel's reader
// ---------------------------------------------------------------------------

#[test]
fn the_guest_test_kernel_discovers_the_tables_in_the_bios_area() {
    use guest_testkernel::acpi as guest;
    use guest_testkernel::multiboot::{Buffer, Memory};
    // Guest memory from 0 to 1 MiB: zeroed, the tables at 0xE0000.
    let mut memory = vec![0u8; 0x10_0000];
    let config = AcpiConfig { vps: 2, cmos_rtc: true, facs_gpa: DEFAULT_FACS_GPA };
    build(&config, &mut memory[BASE as usize..][..REGION_SIZE], BASE).unwrap();
    memory[DEFAULT_FACS_GPA as usize..][..64].copy_from_slice(facs().as_bytes());
    let mem = Buffer { base: 0, bytes: &memory };

    let found = guest::discover(&mem).expect("an RSDP in the BIOS area");
    assert_eq!(found.rsdp_at, BASE);
    assert!(found.rsdp.checksum_ok && found.rsdp.extended_checksum_ok);
    assert_eq!(found.rsdp.revision, 2);
    let (rsdt, xsdt) = (found.rsdt.unwrap(), found.xsdt.unwrap());
    assert_eq!((&rsdt.signature, &xsdt.signature), (b"RSDT", b"XSDT"));
    assert!(rsdt.checksum_ok && xsdt.checksum_ok);
    assert_eq!(guest::entries(&mem, &rsdt, 4), found.listed);

    let madt = guest::find_table(&mem, &found.listed, b"APIC").unwrap();
    let madt = guest::read_madt(&mem, &madt).unwrap();
    let ids: std::vec::Vec<(u8, u8, u32)> = madt.processors.iter().map(|p| (p.uid, p.apic_id, p.flags)).collect();
    assert_eq!(ids, [(0, 0, 1), (1, 1, 1)]);
    assert_eq!(madt.io_apics.as_slice(), [guest::IoApic { id: 0, address: 0xfec0_0000, gsi_base: 0 }]);
    assert!(madt.overrides.iter().any(|o| (o.bus, o.source, o.gsi) == (0, 0, 2)));
    assert_eq!(madt.other, 1, "the local APIC NMI entry");

    let fadt = guest::find_table(&mem, &found.listed, b"FACP").unwrap();
    assert!(fadt.checksum_ok);
    let fadt = guest::read_fadt(&mem, &fadt).unwrap();
    assert_eq!(fadt.pm_timer_port(), u64::from(PM_TMR_BLK));
    assert_ne!(fadt.flags & guest::FADT_TMR_VAL_EXT, 0);
    assert_ne!(fadt.flags & guest::FADT_RESET_REG_SUP, 0);
    assert_eq!((fadt.reset_reg.space, fadt.reset_reg.address, fadt.reset_value), (1, 0x608, 1));
    assert_eq!(fadt.iapc_boot_arch & guest::BOOT_ARCH_CMOS_RTC_NOT_PRESENT, 0);
    assert_eq!(fadt.century, CMOS_CENTURY);
    let mut facs_signature = [0u8; 4];
    assert!(mem.read(fadt.firmware_ctrl.into(), &mut facs_signature) && &facs_signature == b"FACS");
    let dsdt = guest::read_sdt(&mem, fadt.dsdt()).unwrap();
    assert!(dsdt.checksum_ok && &dsdt.signature == b"DSDT");

    // A checksum off by one byte hides the RSDP from the scan.
    memory[BASE as usize + 8] ^= 1;
    assert_eq!(guest::find_rsdp(&Buffer { base: 0, bytes: &memory }), None);
    // An EBDA named in the BDA is searched first.
    memory[BASE as usize + 8] ^= 1;
    let rsdp: std::vec::Vec<u8> = memory[BASE as usize..][..36].to_vec();
    memory[0x9_fc00 + 0x30..][..36].copy_from_slice(&rsdp);
    memory[0x40e..0x410].copy_from_slice(&0x9fc0u16.to_le_bytes());
    assert_eq!(guest::find_rsdp(&Buffer { base: 0, bytes: &memory }), Some(0x9_fc30));
}
