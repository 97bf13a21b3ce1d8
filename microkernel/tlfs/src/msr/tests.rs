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

#[test]
fn synic_and_stimer_msr_numbers() {
    // TLFS 11.8 and 12.5.
    assert_eq!(HvX64Msr::sint(0), Some(HvX64Msr::SINT0));
    assert_eq!(HvX64Msr::sint(15), Some(HvX64Msr::SINT15));
    assert_eq!(HvX64Msr::sint(16), None);
    assert_eq!(HvX64Msr(0x4000_0095).sint_index(), Some(5));
    assert_eq!(HvX64Msr::EOM.sint_index(), None);
    assert_eq!(HvX64Msr::stimer_config(2), Some(HvX64Msr(0x4000_00B4)));
    assert_eq!(HvX64Msr::stimer_count(3), Some(HvX64Msr::STIMER3_COUNT));
    assert_eq!(HvX64Msr::stimer_count(4), None);
    assert_eq!(HvX64Msr(0x4000_00B5).stimer_index(), Some((2, true)));
    assert_eq!(HvX64Msr(0x4000_00B0).stimer_index(), Some((0, false)));
    assert_eq!(HvX64Msr(0x4000_00B8).stimer_index(), None);
}

#[test]
fn synic_register_layouts() {
    // TLFS 11.8.5: vector 7:0, masked 16, auto-EOI 17, polling 18.
    let sint = HvSynicSint::new().with_vector(0x40).with_auto_eoi(true).with_polling(true);
    assert_eq!(sint.into_bits(), 0x6_0040);
    assert_eq!(HvSynicSint::INITIAL.into_bits(), 0x1_0000);
    assert!(HvSynicSint::from_bits(0x1_0000).masked());
    // 11.8.3/11.8.4: enable 0, RsvdP 11:1, GPN 63:12.
    let page = HvSynicPage::from_bits(0x1234_5ffe);
    assert!(!page.enable() && page.gpn() == 0x12345 && page.reserved_p() == 0x7ff);
    assert_eq!(HvSynicScontrol::new().with_enable(true).into_bits(), 1);
    // 12.5.1: enable 0, periodic 1, lazy 2, auto-enable 3, vector 11:4,
    // direct 12, RsvdZ 15:13, SINTx 19:16, RsvdZ 63:20.
    let c = HvStimerConfig::new()
        .with_enable(true)
        .with_periodic(true)
        .with_lazy(true)
        .with_auto_enable(true)
        .with_apic_vector(0xab)
        .with_direct_mode(true)
        .with_sintx(3);
    assert_eq!(c.into_bits(), 0x3_1abf);
    assert!(!c.reserved_set());
    assert!(HvStimerConfig::from_bits(1 << 13).reserved_set());
    assert!(HvStimerConfig::from_bits(1 << 20).reserved_set());
    assert!(HvStimerConfig::from_bits(1 << 63).reserved_set());
}

#[test]
fn synic_page_layouts() {
    // TLFS 11.9: 16 message slots of 256 bytes; 16 blocks of 2048 flags.
    assert_eq!(HvSynicSimPage::slot_offset(0), 0);
    assert_eq!(HvSynicSimPage::slot_offset(3), 0x300);
    assert_eq!(HvSynicSiefPage::flag_position(0, 0), (0, 0));
    assert_eq!(HvSynicSiefPage::flag_position(2, 9), (0x201, 1));
    assert_eq!(HvSynicSiefPage::flag_position(15, HV_EVENT_FLAGS_COUNT - 1), (0xfff, 7));
    let mut page = HvSynicSiefPage::new_zeroed();
    page.sints[1].flags[2] = 0x80;
    assert_eq!(page.as_bytes()[0x102], 0x80);
    let mut sim = HvSynicSimPage::new_zeroed();
    sim.slots[2].header.message_type = crate::HvMessageType::TIMER_EXPIRED;
    assert_eq!(&sim.as_bytes()[0x200..0x204], &0x8000_0010u32.to_le_bytes());
}
