use super::*;
use zerocopy::FromZeros;

#[test]
fn msr_numbers_are_appendix_c() {
    assert_eq!(HvX64Msr::HYPERCALL.0, 0x4000_0001);
    assert_eq!(HvX64Msr::REFERENCE_TSC.0, 0x4000_0021);
    assert_eq!(HvX64Msr::VP_ASSIST_PAGE.0, 0x4000_0073);
    assert_eq!(HvX64Msr::GUEST_IDLE.0, 0x4000_00F0);
    assert_eq!(HvX64Msr::crash_p(4), Some(HvX64Msr(0x4000_0104)));
    assert_eq!(HvX64Msr::crash_p(5), None);
    assert_eq!(HvX64Msr::CRASH_CTL.0, 0x4000_0105);
    assert!(HvX64Msr(0x4000_0095).is_defined() && HvX64Msr(0x4000_00B3).is_defined());
    assert!(!HvX64Msr(0x4000_0004).is_defined() && !HvX64Msr(0x4000_1002).is_defined());
}

#[test]
fn msr_layouts() {
    let h = HvX64MsrHypercallContents::new().with_enable(true).with_locked(true).with_gpn(0x1234);
    assert_eq!(h.into_bits(), 0x0123_4003);
    assert_eq!(HvX64MsrReferenceTscContents::from_bits(0xabc_d001).gpn(), 0xabcd);
    assert_eq!(HvX64MsrVpAssistPageContents::from_bits(0x5000).with_enable(true).into_bits(), 0x5001);
    let ctl = HvCrashCtlRegContents::new().with_crash_notify(true).with_crash_message(true);
    assert_eq!(ctl.into_bits(), 0xC000_0000_0000_0000);
    assert_eq!(HvX64MsrTprContents::from_bits(0x1_00).reserved(), 1);
    assert_eq!(HvX64MsrIcrContents::from_bits(0x0000_0003_0000_40fe).icr_high(), 3);
    assert_eq!(HvGuestOsId::new().with_os_type(true).into_bits(), 1 << 63);
    assert_eq!(HvGuestOsId::new().with_vendor_id(1).into_bits(), 1 << 48);
}

#[test]
fn reference_tsc_page_layout_and_formula() {
    let mut page = HvReferenceTscPage::new_zeroed();
    page.tsc_sequence = 1;
    page.tsc_scale = 1 << 63; // half the TSC rate
    page.tsc_offset = -10;
    let bytes = page.as_bytes();
    assert_eq!(bytes.len(), 4096);
    assert_eq!(&bytes[0..4], &1u32.to_le_bytes());
    assert_eq!(&bytes[8..16], &(1u64 << 63).to_le_bytes());
    assert_eq!(&bytes[16..24], &(-10i64).to_le_bytes());
    assert_eq!(page.reference_time(1000), 490);
}
