use super::*;

fn read(m: &mut Msrs, msr: u32) -> MsrResult {
    m.access(0, msr, None, 1234).0
}

fn write(m: &mut Msrs, msr: u32, v: u64) -> MsrResult {
    m.access(0, msr, Some(v), 1234).0
}

#[test]
fn pat_reserved_types_are_refused() {
    assert!(pat_valid(PAT_RESET));
    assert!(pat_valid(0x0706_0504_0100_0706));
    for t in [2u64, 3, 8, 0xff] {
        for i in 0..8 {
            assert!(!pat_valid(PAT_RESET & !(0xff << (i * 8)) | t << (i * 8)), "type {t} in entry {i}");
        }
    }
}

#[test]
fn misc_enable_reads_back_its_writable_bits_only() {
    let mut m = Msrs::default();
    assert_eq!(read(&mut m, num::MISC_ENABLE), MsrResult::Read(0x1801));
    assert_eq!(write(&mut m, num::MISC_ENABLE, 0x1800 | 1 << 16), MsrResult::Written);
    assert_eq!(read(&mut m, num::MISC_ENABLE), MsrResult::Read(0x1800 | 1 << 16));
    // Performance monitoring available: read-only 0, the write ignored.
    assert_eq!(write(&mut m, num::MISC_ENABLE, 0x1881), MsrResult::Written);
    assert_eq!(read(&mut m, num::MISC_ENABLE), MsrResult::Read(0x1801));
    // BTS/PEBS unavailable changed, MONITOR FSM, limit CPUID, XD disable,
    // reserved: #GP, nothing changed.
    for v in [0x0801, 0x1001, 0x1801 | 1 << 18, 0x1801 | 1 << 22, 0x1801 | 1 << 34, 0x1801 | 1 << 40] {
        assert_eq!(write(&mut m, num::MISC_ENABLE, v), MsrResult::Fault, "{v:#x}");
    }
    assert_eq!(read(&mut m, num::MISC_ENABLE), MsrResult::Read(0x1801));
}

#[test]
fn mtrrs_hold_what_firmware_leaves_and_refuse_reserved_bits_and_types() {
    let mut m = Msrs::default();
    assert_eq!(read(&mut m, num::MTRRCAP), MsrResult::Read(0x508));
    assert_eq!(write(&mut m, num::MTRRCAP, 0x508), MsrResult::Fault, "read-only");
    assert_eq!(read(&mut m, num::MTRR_DEF_TYPE), MsrResult::Read(0xc06));
    assert_eq!(read(&mut m, 0x200), MsrResult::Read(0xc000_0000));
    assert_eq!(read(&mut m, 0x201), MsrResult::Read(0xf_c000_0800));
    assert_eq!(read(&mut m, 0x259), MsrResult::Read(0));
    // Default type: types 2, 3, 7 and bits outside 0-7, 10, 11 refused.
    for v in [2, 3, 7, 0x106, 1 << 12 | 6] {
        assert_eq!(write(&mut m, num::MTRR_DEF_TYPE, v), MsrResult::Fault, "{v:#x}");
    }
    assert_eq!(write(&mut m, num::MTRR_DEF_TYPE, 0x800), MsrResult::Written);
    assert_eq!(read(&mut m, num::MTRR_DEF_TYPE), MsrResult::Read(0x800));
    // Fixed ranges: every byte a valid type.
    assert_eq!(write(&mut m, 0x26f, 0x0001_0405_0600_0106), MsrResult::Written);
    assert_eq!(write(&mut m, 0x26f, 0x0700_0000_0000_0000), MsrResult::Fault);
    assert_eq!(read(&mut m, 0x26f), MsrResult::Read(0x0001_0405_0600_0106));
    // Variable: PHYSBASE bits 8-11 and from MAXPHYADDR (36) up, PHYSMASK
    // bits 0-10 and from 36 up.
    assert_eq!(write(&mut m, 0x20e, 0x8000_0006), MsrResult::Written);
    assert_eq!(write(&mut m, 0x20f, 0xf_8000_0800), MsrResult::Written);
    for (msr, v) in [(0x20e, 0x8000_0106), (0x20e, 1 << 36 | 6), (0x20e, 0x8000_0002), (0x20f, 0xf_8000_0801)] {
        assert_eq!(write(&mut m, msr, v), MsrResult::Fault, "{msr:#x} {v:#x}");
    }
    assert_eq!(write(&mut m, 0x20f, 1 << 36 | 0x800), MsrResult::Fault);
    assert_eq!(read(&mut m, 0x20e), MsrResult::Read(0x8000_0006));
    // Stored per VP: VP 1 still has the firmware's.
    assert_eq!(m.access(1, num::MTRR_DEF_TYPE, None, 0).0, MsrResult::Read(0xc06));
    assert_eq!(read(&mut m, 0x210), MsrResult::Fault, "a ninth pair does not exist");
}

#[test]
fn the_model_specific_msrs_guests_touch() {
    let mut m = Msrs::default();
    assert_eq!(read(&mut m, num::TSC), MsrResult::Read(1234));
    assert_eq!(m.access(0, num::TSC, Some(5), 0), (MsrResult::Ignored, true), "reported once");
    assert_eq!(m.access(0, num::TSC, Some(5), 0), (MsrResult::Ignored, false));
    assert_eq!(read(&mut m, num::FEATURE_CONTROL), MsrResult::Read(1));
    assert_eq!(write(&mut m, num::FEATURE_CONTROL, 5), MsrResult::Fault, "locked");
    assert_eq!(read(&mut m, num::UCODE_REV), MsrResult::Read(1 << 32));
    assert_eq!(write(&mut m, num::UCODE_REV, 0), MsrResult::Written);
    for msr in num::AMD_PERF_FIRST..=num::AMD_PERF_LAST {
        assert_eq!(read(&mut m, msr), MsrResult::Read(0));
        assert_eq!(write(&mut m, msr, 0x43_0076), MsrResult::Ignored);
    }
    assert_eq!(read(&mut m, num::AMD_VM_CR), MsrResult::Read(0x18));
    assert_eq!(write(&mut m, num::AMD_VM_CR, 0), MsrResult::Ignored, "locked: SVMDIS and LOCK ignored");
    assert_eq!(write(&mut m, num::AMD_VM_CR, 1), MsrResult::Fault);
    assert_eq!(read(&mut m, num::AMD_HWCR), MsrResult::Read(0));
    assert_eq!(write(&mut m, num::AMD_HWCR, 1 << 6), MsrResult::Ignored);
    assert_eq!(write(&mut m, num::AMD_HWCR, 1 << 18), MsrResult::Fault);
    assert_eq!(read(&mut m, num::AMD_SYSCFG), MsrResult::Read(0));
    assert_eq!(write(&mut m, num::AMD_SYSCFG, 1 << 19), MsrResult::Fault);
    // Not offered: TSC_ADJUST, SPEC_CTRL, PRED_CMD, ARCH_CAPABILITIES,
    // TSC_AUX, the MCA MSRs, VM_HSAVE_PA.
    for msr in [0x3b, 0x48, 0x49, 0x10a, 0xc000_0103, 0x179, 0x17a, 0x400, 0xc001_0117] {
        assert_eq!(read(&mut m, msr), MsrResult::Fault, "{msr:#x}");
    }
}
