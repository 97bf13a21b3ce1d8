use super::*;
use sysimage::{Enlightenment, Enlightenments};
use tlfs::zerocopy::FromBytes;

use crate::guest::TestRam as Ram;

const GHZ: HostClock = HostClock { tsc_hz: 1_000_000_000, apic_hz: 200_000_000 };
const CREATED: u64 = 1000;
const OS_ID: u64 = 0x8100_0000_0000_0000;

fn partition(set: Enlightenments, vendor: Vendor) -> SyntheticPartition {
    SyntheticPartition::new(EnlightenmentProfile::new(set, 16, 2).unwrap(), vendor, GHZ, CREATED)
}

fn hyperv() -> SyntheticPartition {
    partition(Enlightenments::HYPERV, Vendor::Intel)
}

fn rd(p: &SyntheticPartition, msr: HvX64Msr) -> Result<SynMsrOutcome, Gp> {
    p.rdmsr(3, msr.0, Now { tsc: CREATED, vp_runtime: 77 })
}

fn wr(p: &mut SyntheticPartition, msr: HvX64Msr, value: u64, ram: &mut Ram) -> Result<SynMsrOutcome, Gp> {
    p.wrmsr(3, msr.0, value, ram, Now::default())
}

use SynMsrOutcome::{Read, Written};

#[test]
fn tsc_scale_is_exact() {
    assert_eq!(tsc_scale(1_000_000_000), Some(184_467_440_737_095_516));
    assert_eq!(tsc_scale(3_000_000_000), Some(61_489_146_912_365_172));
    assert_eq!(tsc_scale(2_500_000_000), Some(73_786_976_294_838_206));
    assert_eq!(tsc_scale(10_000_001), Some(18_446_742_229_035_328_712));
    assert_eq!(tsc_scale(10_000_000), None);
    assert_eq!(tsc_scale(0), None);
}

#[test]
fn hypercall_page_bytes_for_both_vendors() {
    for (vendor, code) in [(Vendor::Intel, [0x0f, 0x01, 0xc1, 0xc3]), (Vendor::Amd, [0x0f, 0x01, 0xd9, 0xc3])] {
        let mut p = partition(Enlightenments::HYPERV, vendor);
        let mut ram = Ram::new();
        assert_eq!(wr(&mut p, HvX64Msr::GUEST_OS_ID, OS_ID, &mut ram), Ok(Written));
        assert_eq!(wr(&mut p, HvX64Msr::HYPERCALL, 0x5001, &mut ram), Ok(Written));
        assert_eq!(rd(&p, HvX64Msr::HYPERCALL), Ok(Read(0x5001)));
        let page = ram.page(5);
        assert_eq!(page[..4], code);
        assert!(page[4..].iter().all(|&b| b == 0xcc));
        assert!(ram.page(4).iter().chain(ram.page(6)).all(|&b| b == 0xaa));
    }
}

#[test]
fn the_hypercall_page_needs_a_guest_os_id() {
    let mut p = hyperv();
    let mut ram = Ram::new();
    // Enable stays 0 while the OS ID is 0; nothing is written.
    assert_eq!(wr(&mut p, HvX64Msr::HYPERCALL, 0x5001, &mut ram), Ok(Written));
    assert_eq!(rd(&p, HvX64Msr::HYPERCALL), Ok(Read(0x5000)));
    assert!(ram.page(5).iter().all(|&b| b == 0xaa));
    wr(&mut p, HvX64Msr::GUEST_OS_ID, OS_ID, &mut ram).unwrap();
    assert_eq!(rd(&p, HvX64Msr::GUEST_OS_ID), Ok(Read(OS_ID)));
    wr(&mut p, HvX64Msr::HYPERCALL, 0x5001, &mut ram).unwrap();
    assert_eq!(rd(&p, HvX64Msr::HYPERCALL), Ok(Read(0x5001)));
    // Clearing the OS ID disables it.
    wr(&mut p, HvX64Msr::GUEST_OS_ID, 0, &mut ram).unwrap();
    assert_eq!(rd(&p, HvX64Msr::HYPERCALL), Ok(Read(0x5000)));
}

#[test]
fn hypercall_msr_reserved_bits_locking_and_bad_pages() {
    let mut p = hyperv();
    let mut ram = Ram::new();
    wr(&mut p, HvX64Msr::GUEST_OS_ID, OS_ID, &mut ram).unwrap();
    // RsvdP bits 11:2 are not kept.
    wr(&mut p, HvX64Msr::HYPERCALL, 0x3ffd, &mut ram).unwrap();
    assert_eq!(rd(&p, HvX64Msr::HYPERCALL), Ok(Read(0x3001)));
    // A page beyond RAM is #GP and changes nothing.
    assert_eq!(wr(&mut p, HvX64Msr::HYPERCALL, 0x10_0001, &mut ram), Err(Gp::NotRam));
    assert_eq!(rd(&p, HvX64Msr::HYPERCALL), Ok(Read(0x3001)));
    // Locked: later writes are ignored, until a reset.
    wr(&mut p, HvX64Msr::HYPERCALL, 0x3003, &mut ram).unwrap();
    assert_eq!(wr(&mut p, HvX64Msr::HYPERCALL, 0x7001, &mut ram), Ok(Written));
    assert_eq!(wr(&mut p, HvX64Msr::HYPERCALL, 0, &mut ram), Ok(Written));
    assert_eq!(rd(&p, HvX64Msr::HYPERCALL), Ok(Read(0x3003)));
    assert!(ram.page(7).iter().all(|&b| b == 0xaa));
    p.reset();
    assert_eq!(rd(&p, HvX64Msr::HYPERCALL), Ok(Read(0)));
    assert_eq!(rd(&p, HvX64Msr::GUEST_OS_ID), Ok(Read(0)));
}

#[test]
fn reference_time_counts_100ns_since_creation() {
    let p = hyperv();
    let at = |tsc| p.rdmsr(0, HvX64Msr::TIME_REF_COUNT.0, Now { tsc, vp_runtime: 0 });
    assert_eq!(at(CREATED), Ok(Read(0)));
    assert_eq!(at(CREATED + 1_000_000_000), Ok(Read(10_000_000)));
    assert_eq!(at(CREATED + 123_456_789), Ok(Read(1_234_568)));
    assert_eq!(at(1 << 40), Ok(Read(10_995_116_268)));
    // A TSC too slow for a 64-bit scale: computed directly.
    let slow = HostClock { tsc_hz: 5_000_000, apic_hz: 0 };
    let p = SyntheticPartition::new(*hyperv().profile(), Vendor::Intel, slow, 10);
    assert_eq!(p.time_ref_count(10 + 5_000_000), 10_000_000);
    assert_eq!(p.reference_tsc_page(7).tsc_sequence, 0);
}

#[test]
fn the_reference_tsc_page_agrees_with_the_msr() {
    let mut p = hyperv();
    let mut ram = Ram::new();
    assert_eq!(wr(&mut p, HvX64Msr::REFERENCE_TSC, 0x9ffe, &mut ram), Ok(Written)); // not enabled
    assert_eq!(rd(&p, HvX64Msr::REFERENCE_TSC), Ok(Read(0x9000)));
    assert!(ram.page(9).iter().all(|&b| b == 0xaa));
    wr(&mut p, HvX64Msr::REFERENCE_TSC, 0x9001, &mut ram).unwrap();
    let page = HvReferenceTscPage::read_from_bytes(ram.page(9)).unwrap();
    assert_eq!(page.tsc_sequence, 1);
    assert_eq!(page.tsc_scale, 184_467_440_737_095_516);
    assert_eq!(page.tsc_offset, -9);
    assert!(page.reserved2.iter().all(|&q| q == 0) && page.reserved1 == 0);
    for tsc in [CREATED, CREATED + 1, CREATED + 999_999_999, 1 << 40, u64::MAX / 3] {
        assert_eq!(page.reference_time(tsc), p.time_ref_count(tsc), "tsc {tsc}");
    }
    // Moving (or re-enabling) writes it again with the next sequence.
    wr(&mut p, HvX64Msr::REFERENCE_TSC, 0xa001, &mut ram).unwrap();
    let page = HvReferenceTscPage::read_from_bytes(ram.page(0xa)).unwrap();
    assert_eq!((page.tsc_sequence, page.tsc_scale), (2, 184_467_440_737_095_516));
    // Beyond RAM: stored, but the page is simply not there (no #GP).
    assert_eq!(wr(&mut p, HvX64Msr::REFERENCE_TSC, 0x10_0001, &mut ram), Ok(Written));
    assert_eq!(rd(&p, HvX64Msr::REFERENCE_TSC), Ok(Read(0x10_0001)));
}

#[test]
fn the_vp_assist_page_is_per_vp_and_starts_zeroed() {
    let mut p = hyperv();
    let mut ram = Ram::new();
    assert_eq!(p.wrmsr(1, HvX64Msr::VP_ASSIST_PAGE.0, 0xbfff, &mut ram, Now::default()), Ok(Written));
    assert!(ram.page(0xb).iter().all(|&b| b == 0));
    let now = Now::default();
    assert_eq!(p.rdmsr(1, HvX64Msr::VP_ASSIST_PAGE.0, now), Ok(Read(0xb001)));
    assert_eq!(p.rdmsr(2, HvX64Msr::VP_ASSIST_PAGE.0, now), Ok(Read(0)));
    assert_eq!(p.wrmsr(2, HvX64Msr::VP_ASSIST_PAGE.0, 0x20_0001, &mut ram, Now::default()), Err(Gp::NotRam));
    assert_eq!(p.wrmsr(16, HvX64Msr::VP_ASSIST_PAGE.0, 0xc001, &mut ram, Now::default()), Err(Gp::VpIndex));
    // Disabling keeps the address and uncovers the RAM.
    ram.0[0xb000] = 1;
    assert_eq!(p.wrmsr(1, HvX64Msr::VP_ASSIST_PAGE.0, 0xb000, &mut ram, Now::default()), Ok(Written));
    assert_eq!((p.rdmsr(1, HvX64Msr::VP_ASSIST_PAGE.0, now), ram.0[0xb000]), (Ok(Read(0xb000)), 0xaa));
}

#[test]
fn read_only_values() {
    let p = hyperv();
    assert_eq!(rd(&p, HvX64Msr::VP_INDEX), Ok(Read(3)));
    assert_eq!(rd(&p, HvX64Msr::VP_RUNTIME), Ok(Read(77)));
    assert_eq!(rd(&p, HvX64Msr::TSC_FREQUENCY), Ok(Read(1_000_000_000)));
    assert_eq!(rd(&p, HvX64Msr::APIC_FREQUENCY), Ok(Read(200_000_000)));
    assert_eq!(rd(&p, HvX64Msr::RESET), Ok(Read(0)));
    assert_eq!(rd(&p, HvX64Msr::GUEST_IDLE), Ok(SynMsrOutcome::Idle));
}

#[test]
fn writes_to_read_only_msrs_and_reads_of_eoi_are_gp() {
    let mut p = hyperv();
    let mut ram = Ram::new();
    for msr in [
        HvX64Msr::VP_INDEX,
        HvX64Msr::VP_RUNTIME,
        HvX64Msr::TIME_REF_COUNT,
        HvX64Msr::TSC_FREQUENCY,
        HvX64Msr::APIC_FREQUENCY,
        HvX64Msr::GUEST_IDLE,
    ] {
        assert_eq!(wr(&mut p, msr, 0, &mut ram), Err(Gp::ReadOnly), "{msr:?}");
    }
    assert_eq!(rd(&p, HvX64Msr::EOI), Err(Gp::WriteOnly));
    assert_eq!(wr(&mut p, HvX64Msr::TPR, 0x100, &mut ram), Err(Gp::ReservedBits));
}

#[test]
fn msrs_outside_the_profile_are_gp() {
    let mut ram = Ram::new();
    let mut none = SyntheticPartition::new(EnlightenmentProfile::NONE, Vendor::Intel, GHZ, 0);
    for msr in [0x4000_0000, 0x4000_0001, 0x4000_0002, 0x4000_0021, 0x4000_0073, 0x4000_00f0, 0x4000_0105] {
        assert_eq!(none.rdmsr(0, msr, Now::default()), Err(Gp::NotAvailable), "{msr:#x}");
        assert_eq!(none.wrmsr(0, msr, 1, &mut ram, Now::default()), Err(Gp::NotAvailable), "{msr:#x}");
    }
    // Under "hyperv" without the SynIC and timers: theirs, and MSRs
    // Tessera does not implement, are #GP too.
    let no_synic = Enlightenments::HYPERV.with(Enlightenment::SyntheticTimers, false).with(Enlightenment::Synic, false);
    let mut p = partition(no_synic, Vendor::Intel);
    for msr in [0x4000_0004, 0x4000_0080, 0x4000_0090, 0x4000_00b0, 0x4000_0040, 0x4000_00ff, 0x4000_0106] {
        assert_eq!(p.rdmsr(0, msr, Now::default()), Err(Gp::NotAvailable), "{msr:#x}");
        assert_eq!(p.wrmsr(0, msr, 0, &mut ram, Now::default()), Err(Gp::NotAvailable), "{msr:#x}");
    }
    // Without crash_msrs, the crash MSRs.
    let mut q = partition(Enlightenments::HYPERV.with(Enlightenment::CrashMsrs, false), Vendor::Amd);
    assert_eq!(wr(&mut q, HvX64Msr::CRASH_P0, 1, &mut ram), Err(Gp::NotAvailable));
    assert_eq!(rd(&q, HvX64Msr::CRASH_CTL), Err(Gp::NotAvailable));
    // Which MSRs are this module's.
    assert!(is_synthetic(0x4000_0000) && is_synthetic(0x4000_00ff) && is_synthetic(0x4000_0105));
    assert!(!is_synthetic(0xc000_0080) && !is_synthetic(0x3fff_ffff) && !is_synthetic(0x4000_0200));
}

#[test]
fn apic_msrs_go_to_the_apic_model() {
    let mut p = hyperv();
    let mut ram = Ram::new();
    use ApicAccess::*;
    assert_eq!(wr(&mut p, HvX64Msr::EOI, 0, &mut ram), Ok(SynMsrOutcome::Apic(Eoi)));
    assert_eq!(wr(&mut p, HvX64Msr::ICR, 0x3_0000_40fe, &mut ram), Ok(SynMsrOutcome::Apic(WriteIcr(0x3_0000_40fe))));
    assert_eq!(rd(&p, HvX64Msr::ICR), Ok(SynMsrOutcome::Apic(ReadIcr)));
    assert_eq!(wr(&mut p, HvX64Msr::TPR, 0x20, &mut ram), Ok(SynMsrOutcome::Apic(WriteTpr(0x20))));
    assert_eq!(rd(&p, HvX64Msr::TPR), Ok(SynMsrOutcome::Apic(ReadTpr)));
}

#[test]
fn crash_msrs_report_a_guest_crash() {
    let mut p = hyperv();
    let mut ram = Ram::new();
    assert_eq!(rd(&p, HvX64Msr::CRASH_CTL), Ok(Read(0xc000_0000_0000_0000)));
    for n in 0..5 {
        wr(&mut p, HvX64Msr::crash_p(n).unwrap(), 0x10 + n as u64, &mut ram).unwrap();
    }
    assert_eq!(rd(&p, HvX64Msr::CRASH_P2), Ok(Read(0x12)));
    // Without CrashNotify nothing happens.
    assert_eq!(wr(&mut p, HvX64Msr::CRASH_CTL, 1 << 62, &mut ram), Ok(Written));
    let p5 = [0x10, 0x11, 0x12, 0x13, 0x14];
    assert_eq!(
        wr(&mut p, HvX64Msr::CRASH_CTL, 1 << 63, &mut ram),
        Ok(SynMsrOutcome::GuestCrash { p: p5, message: None })
    );
    // With a message: P3 is its GPA and P4 its length, at most 4096.
    ram.0[0x3000..0x3005].copy_from_slice(b"oops!");
    wr(&mut p, HvX64Msr::CRASH_P3, 0x3000, &mut ram).unwrap();
    wr(&mut p, HvX64Msr::CRASH_P4, 5, &mut ram).unwrap();
    let Ok(SynMsrOutcome::GuestCrash { p: params, message: Some(m) }) =
        wr(&mut p, HvX64Msr::CRASH_CTL, 0xc000_0000_0000_0000, &mut ram)
    else {
        panic!("no crash message");
    };
    assert_eq!(params, [0x10, 0x11, 0x12, 0x3000, 5]);
    let mut buf = [0; 64];
    assert_eq!(m.read(&mut ram, &mut buf), Some(&b"oops!"[..]));
    wr(&mut p, HvX64Msr::CRASH_P4, 1 << 40, &mut ram).unwrap();
    let outcome = wr(&mut p, HvX64Msr::CRASH_CTL, 0xc000_0000_0000_0000, &mut ram);
    assert!(matches!(outcome, Ok(SynMsrOutcome::GuestCrash { message: Some(CrashMessage { len: 4096, .. }), .. })));
}

#[test]
fn reset_and_idle() {
    let mut p = hyperv();
    let mut ram = Ram::new();
    assert_eq!(wr(&mut p, HvX64Msr::RESET, 0, &mut ram), Ok(Written));
    assert_eq!(wr(&mut p, HvX64Msr::RESET, 1, &mut ram), Ok(SynMsrOutcome::Reset));
    let now = Now::default();
    assert_eq!(p.access(0, HvX64Msr::GUEST_IDLE.0, None, &mut ram, now), Ok(SynMsrOutcome::Idle));
    assert_eq!(p.access(0, HvX64Msr::GUEST_IDLE.0, Some(0), &mut ram, now), Err(Gp::ReadOnly));
}

#[test]
fn synic_and_timer_msrs_need_their_enlightenments() {
    // AccessSynicRegs and AccessSyntheticTimerRegs (TLFS 11.8, 12.5).
    let mut ram = Ram::new();
    let mut p = partition(Enlightenments::HYPERV.with(Enlightenment::SyntheticTimers, false), Vendor::Intel);
    assert_eq!(rd(&p, HvX64Msr::SVERSION), Ok(Read(1)));
    assert_eq!(rd(&p, HvX64Msr::SINT15), Ok(Read(0x1_0000)));
    assert_eq!(rd(&p, HvX64Msr::STIMER0_CONFIG), Err(Gp::NotAvailable), "no timers without their bit");
    assert_eq!(wr(&mut p, HvX64Msr::SVERSION, 0, &mut ram), Err(Gp::ReadOnly));
    assert_eq!(wr(&mut p, HvX64Msr::SINT0, 0x0f, &mut ram), Err(Gp::ReservedBits));
    assert_eq!(p.rdmsr(16, HvX64Msr::SCONTROL.0, Now::default()), Err(Gp::VpIndex));
}

#[test]
fn timers_report_their_deadline_in_tsc_ticks() {
    let set = Enlightenments::HYPERV.with(Enlightenment::Synic, true).with(Enlightenment::SyntheticTimers, true);
    let mut p = partition(set, Vendor::Intel);
    let mut ram = Ram::new();
    assert_eq!(p.next_deadline(), None);
    // A one-shot at reference time 1000 (100 us) on VP 3, direct mode.
    let at = Now { tsc: CREATED, vp_runtime: 0 };
    p.wrmsr(3, HvX64Msr::STIMER0_CONFIG.0 + 1, 1000, &mut ram, at).unwrap();
    let direct = tlfs::msr::HvStimerConfig::new().with_enable(true).with_direct_mode(true).with_apic_vector(0x31);
    p.wrmsr(3, HvX64Msr::STIMER0_CONFIG.0, direct.into_bits(), &mut ram, at).unwrap();
    let deadline = p.next_deadline().unwrap();
    // 1 GHz: 100 ticks per 100 ns, from CREATED; at most a unit late.
    assert!(p.time_ref_count(deadline) >= 1000);
    assert!(deadline <= CREATED + 1001 * 100, "{deadline}");
    p.poll(deadline - 200, &mut ram);
    assert!(p.take_raised(3).is_empty(), "not before its time");
    p.poll(deadline, &mut ram);
    assert_eq!(p.take_raised(3).iter().collect::<Vec<_>>(), vec![0x31]);
    assert_eq!(p.next_deadline(), None, "a one-shot");
}

#[test]
fn every_overlay_page_uncovers_the_ram_beneath() {
    // (MSR, enabling value at GPN 9, disabling value)
    let pages = [
        (HvX64Msr::HYPERCALL, 0x9001, 0x9000),
        (HvX64Msr::REFERENCE_TSC, 0x9001, 0x9000),
        (HvX64Msr::VP_ASSIST_PAGE, 0x9001, 0x9000),
        (HvX64Msr::SIMP, 0x9001, 0x9000),
        (HvX64Msr::SIEFP, 0x9001, 0x9000),
    ];
    for (msr, on, off) in pages {
        let mut p = hyperv();
        let mut ram = Ram::new();
        wr(&mut p, HvX64Msr::GUEST_OS_ID, OS_ID, &mut ram).unwrap();
        let pattern: Vec<u8> = (0..HV_PAGE_SIZE).map(|i| (i * 7 + 3) as u8).collect();
        ram.0[0x9000..0xa000].copy_from_slice(&pattern);
        assert_eq!(wr(&mut p, msr, on, &mut ram), Ok(Written), "{msr:?}");
        assert_ne!(ram.page(9), &pattern[..], "{msr:?} covers the page");
        // Moved to GPN 10: GPN 9 is RAM again.
        assert_eq!(wr(&mut p, msr, on + 0x1000, &mut ram), Ok(Written), "{msr:?}");
        assert_eq!(ram.page(9), &pattern[..], "{msr:?} moved away");
        assert!(ram.page(10).iter().any(|&b| b != 0xaa) || msr == HvX64Msr::REFERENCE_TSC);
        assert_eq!(wr(&mut p, msr, on, &mut ram), Ok(Written), "{msr:?}");
        assert!(ram.page(10).iter().all(|&b| b == 0xaa), "{msr:?} moved back");
        assert_eq!(wr(&mut p, msr, off, &mut ram), Ok(Written), "{msr:?}");
        assert_eq!(ram.page(9), &pattern[..], "{msr:?} disabled");
    }
}

#[test]
fn clearing_the_guest_os_id_uncovers_the_hypercall_page() {
    let mut p = hyperv();
    let mut ram = Ram::new();
    wr(&mut p, HvX64Msr::GUEST_OS_ID, OS_ID, &mut ram).unwrap();
    wr(&mut p, HvX64Msr::HYPERCALL, 0x5001, &mut ram).unwrap();
    assert_eq!(ram.page(5)[..3], hypercall_code(Vendor::Intel)[..3]);
    wr(&mut p, HvX64Msr::GUEST_OS_ID, 0, &mut ram).unwrap();
    assert!(ram.page(5).iter().all(|&b| b == 0xaa));
}

/// At partition creation: reference time 0.
const AT: Now = Now { tsc: CREATED, vp_runtime: 0 };

/// The busy set agrees with every VP's SynIC.
fn busy_agrees(p: &SyntheticPartition) {
    for (v, s) in p.vps.iter().enumerate() {
        assert_eq!(p.busy >> v & 1 == 1, !s.synic.idle(), "VP {v}");
    }
}

/// VP `vp`'s SynIC on, its SIM page at `gpn`, SINT 2 on vector 0x52.
fn synic_on(p: &mut SyntheticPartition, vp: u32, gpn: u64, ram: &mut Ram) {
    let sint2 = HvX64Msr(HvX64Msr::SINT0.0 + 2);
    for (msr, value) in [(HvX64Msr::SCONTROL, 1), (HvX64Msr::SIMP, gpn << 12 | 1), (sint2, 0x52)] {
        p.wrmsr(vp, msr.0, value, ram, AT).unwrap();
    }
}

/// Timer 0 of `vp`: a one-shot at reference time `at`, messages to SINT 2.
fn one_shot(p: &mut SyntheticPartition, vp: u32, at: u64, ram: &mut Ram) {
    let config = tlfs::msr::HvStimerConfig::new().with_enable(true).with_sintx(2);
    p.wrmsr(vp, HvX64Msr::STIMER0_CONFIG.0 + 1, at, ram, AT).unwrap();
    p.wrmsr(vp, HvX64Msr::STIMER0_CONFIG.0, config.into_bits(), ram, AT).unwrap();
}

fn slot_type(ram: &Ram, gpn: u64, sint: usize) -> u32 {
    let at = ((gpn as usize) << 12) + sint * 256;
    u32::from_le_bytes(ram.0[at..at + 4].try_into().unwrap())
}

/// Only the VPs whose SynIC has work are polled: a timer armed by WRMSR, a
/// timer's message waiting for EOM, a port's message held for its slot all
/// keep their VP polled, on any VP; EOM, delivery and reset make it idle.
#[test]
fn every_synic_with_work_is_polled() {
    let set = Enlightenments::HYPERV.with(Enlightenment::Synic, true).with(Enlightenment::SyntheticTimers, true);
    let mut p = partition(set, Vendor::Intel);
    let mut ram = Ram::new();
    let timer = tlfs::HvMessageType::TIMER_EXPIRED.0;
    assert_eq!(p.busy, 0);
    synic_on(&mut p, 5, 8, &mut ram);
    busy_agrees(&p);
    assert_eq!(p.busy, 0, "an enabled SynIC alone has nothing to poll");
    // A reserved bit: #GP, nothing armed.
    assert!(p.wrmsr(5, HvX64Msr::STIMER0_CONFIG.0, 1 << 40, &mut ram, AT).is_err());
    busy_agrees(&p);
    one_shot(&mut p, 5, 1000, &mut ram);
    busy_agrees(&p);
    assert_eq!(p.busy, 1 << 5);
    let deadline = p.next_deadline().expect("VP 5's timer");
    p.poll(deadline, &mut ram);
    assert_eq!(slot_type(&ram, 8, 2), timer);
    assert_eq!(p.take_raised(5).iter().collect::<Vec<_>>(), vec![0x52]);
    busy_agrees(&p);
    assert_eq!((p.busy, p.next_deadline()), (0, None), "the one-shot fired");

    // Again, with the slot still full: the message waits for EOM.
    one_shot(&mut p, 5, 2000, &mut ram);
    let deadline = p.next_deadline().unwrap();
    p.poll(deadline, &mut ram);
    busy_agrees(&p);
    assert_eq!((p.busy, p.next_deadline()), (1 << 5, None), "expired, its message waits");
    ram.0[(8 << 12) + 2 * 256..][..4].fill(0);
    p.poll(deadline + 1, &mut ram);
    assert_eq!(slot_type(&ram, 8, 2), timer, "a poll retries it");
    busy_agrees(&p);
    assert_eq!(p.busy, 0);

    // A port's message for VP 9 behind a full slot is held until EOM.
    synic_on(&mut p, 9, 9, &mut ram);
    let message = |text: &[u8]| Delivery::Message { vp: 9, sint: 2, message: crate::messaging::message(7, 0x41, text) };
    assert_eq!(p.deliver(&message(b"one"), &mut ram), Delivered::Done);
    busy_agrees(&p);
    assert_eq!(p.deliver(&message(b"two"), &mut ram), Delivered::Held);
    busy_agrees(&p);
    assert_eq!(p.busy, 1 << 9);
    assert!(p.holds_message());
    p.poll(u64::MAX / 2, &mut ram);
    assert!(p.holds_message(), "the slot is still full");
    ram.0[(9 << 12) + 2 * 256..][..4].fill(0);
    p.wrmsr(9, HvX64Msr::EOM.0, 0, &mut ram, AT).unwrap();
    busy_agrees(&p);
    assert!(!p.holds_message());
    assert_eq!((p.busy, slot_type(&ram, 9, 2)), (0, 0x41));

    // A reset leaves nothing armed.
    synic_on(&mut p, 15, 10, &mut ram);
    one_shot(&mut p, 15, 5000, &mut ram);
    assert_eq!(p.busy, 1 << 15);
    p.reset();
    busy_agrees(&p);
    assert_eq!((p.busy, p.next_deadline()), (0, None));
}

/// VTL 1's guest OS ID, hypercall page and assist page are its own (TLFS
/// 15.11.1); its hypercall page is held read-only in its own view and has
/// the VTL call and return sequences (15.8).
#[test]
fn vtl1_has_its_own_hypercall_and_assist_pages() {
    let mut p = partition(Enlightenments::HYPERV_VSM, Vendor::Amd);
    let mut ram = Ram::new();
    let at = |p: &mut SyntheticPartition, vtl, msr: HvX64Msr, write, ram: &mut Ram| {
        p.access_vtl((3, vtl), msr.0, write, ram, Now::default())
    };
    // VTL 0's page, with the sequences too (a VSM partition's).
    at(&mut p, 0, HvX64Msr::GUEST_OS_ID, Some(OS_ID), &mut ram).unwrap();
    at(&mut p, 0, HvX64Msr::HYPERCALL, Some(0x5001), &mut ram).unwrap();
    // VTL 1 has no guest OS ID yet: its page stays disabled.
    at(&mut p, 1, HvX64Msr::HYPERCALL, Some(0x6001), &mut ram).unwrap();
    assert_eq!(at(&mut p, 1, HvX64Msr::HYPERCALL, None, &mut ram), Ok(Read(0x6000)));
    assert!(ram.page(6).iter().all(|&b| b == 0xaa));
    at(&mut p, 1, HvX64Msr::GUEST_OS_ID, Some(OS_ID + 1), &mut ram).unwrap();
    at(&mut p, 1, HvX64Msr::HYPERCALL, Some(0x6001), &mut ram).unwrap();
    assert_eq!(ram.2, [(5, 0), (6, 1)], "each page held in its VTL's view");
    let call = vtl_sequence(Vendor::Amd, 0x11);
    assert_eq!(call, [0x48, 0x89, 0xc8, 0xb9, 0x11, 0, 0, 0, 0x0f, 0x01, 0xd9, 0xc3]);
    assert_eq!(ram.page(6)[VTL_CALL_OFFSET..VTL_CALL_OFFSET + 12], call);
    assert_eq!(ram.page(6)[VTL_RETURN_OFFSET + 4], 0x12);
    assert_eq!(ram.page(5)[VTL_CALL_OFFSET..VTL_CALL_OFFSET + 12], call);
    // VTL 0's MSRs are untouched.
    assert_eq!(at(&mut p, 0, HvX64Msr::GUEST_OS_ID, None, &mut ram), Ok(Read(OS_ID)));
    assert_eq!(at(&mut p, 0, HvX64Msr::HYPERCALL, None, &mut ram), Ok(Read(0x5001)));
    // The assist pages.
    at(&mut p, 1, HvX64Msr::VP_ASSIST_PAGE, Some(0x7001), &mut ram).unwrap();
    assert_eq!((p.vtl1_assist_page(3), p.vp_assist_page(3)), (Some(0x7000), None));
    // VTL 1 clears its guest OS ID: its page goes, VTL 0's stays.
    at(&mut p, 1, HvX64Msr::GUEST_OS_ID, Some(0), &mut ram).unwrap();
    assert!(ram.page(6).iter().all(|&b| b == 0xaa));
    assert_eq!(ram.2, [(5, 0)]);
    // Without VSM the page has no sequences.
    assert!(hypercall_page(Vendor::Amd, false)[4..].iter().all(|&b| b == 0xcc));
}
