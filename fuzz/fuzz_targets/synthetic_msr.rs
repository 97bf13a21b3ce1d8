//! The synthetic MSR handler (`vid::synthetic::SyntheticPartition`): a
//! partition with any profile and host clock, then any sequence of RDMSR,
//! WRMSR and resets from any VP.
//!
//! Oracles: a refused access (#GP) changes neither the partition nor guest
//! memory; a write touches guest memory only inside the overlay page its
//! value names or the one it uncovers; GUEST_OS_ID and HYPERCALL read back what was written (TLFS
//! 3.13: Locked holds until reset, Enable stays clear without an OS ID);
//! a reset is the state at creation; TIME_REF_COUNT is the reference TSC
//! page's formula and never runs backwards.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sysimage::Enlightenments;
use tessera_fuzz::Ram;
use tlfs::msr::{HV_REFERENCE_TSC_SEQUENCE_INVALID, HvX64Msr, HvX64MsrHypercallContents};
use vid::profile::EnlightenmentProfile;
use vid::synthetic::{HostClock, Now, SynMsrOutcome, SyntheticPartition, Vendor};

/// Guest RAM pages; page 5 is read-only.
const PAGES: usize = 6;
const ROM_PAGE: u64 = 5;

const MSRS: [HvX64Msr; 26] = [
    HvX64Msr::GUEST_OS_ID,
    HvX64Msr::HYPERCALL,
    HvX64Msr::VP_INDEX,
    HvX64Msr::RESET,
    HvX64Msr::VP_RUNTIME,
    HvX64Msr::TIME_REF_COUNT,
    HvX64Msr::REFERENCE_TSC,
    HvX64Msr::TSC_FREQUENCY,
    HvX64Msr::APIC_FREQUENCY,
    HvX64Msr::NPIEP_CONFIG,
    HvX64Msr::EOI,
    HvX64Msr::ICR,
    HvX64Msr::TPR,
    HvX64Msr::VP_ASSIST_PAGE,
    HvX64Msr::SCONTROL,
    HvX64Msr::SINT0,
    HvX64Msr::STIMER0_CONFIG,
    HvX64Msr::GUEST_IDLE,
    HvX64Msr::CRASH_P0,
    HvX64Msr::CRASH_P1,
    HvX64Msr::CRASH_P2,
    HvX64Msr::CRASH_P3,
    HvX64Msr::CRASH_P4,
    HvX64Msr::CRASH_CTL,
    HvX64Msr::REENLIGHTENMENT_CONTROL,
    HvX64Msr::STIME_UNHALTED_TIMER_COUNT,
];

#[derive(Arbitrary, Debug)]
enum Msr {
    Known(u8),
    Raw(u32),
}

/// A value: raw, or an overlay-page MSR value naming a page near RAM.
#[derive(Arbitrary, Debug)]
enum Value {
    Raw(u64),
    Page { low_bits: u16, gpn: u8 },
}

#[derive(Arbitrary, Debug)]
enum Op {
    Read { vp: u8, msr: Msr, tsc_step: u32, vp_runtime: u64 },
    Write { vp: u8, msr: Msr, value: Value },
    Reset,
}

#[derive(Arbitrary, Debug)]
struct Input {
    enlightenments: Option<u32>,
    amd: bool,
    tsc_hz: u64,
    apic_hz: u64,
    created_tsc: u64,
    ops: Vec<Op>,
}

fn msr(m: &Msr) -> u32 {
    match *m {
        Msr::Known(i) => MSRS[usize::from(i) % MSRS.len()].0,
        Msr::Raw(m) => m,
    }
}

/// The overlay page an MSR's value names, for the MSRs that have one.
fn overlay_page(msr: u32, value: u64) -> Option<u64> {
    let overlay =
        [HvX64Msr::HYPERCALL, HvX64Msr::REFERENCE_TSC, HvX64Msr::VP_ASSIST_PAGE, HvX64Msr::SIMP, HvX64Msr::SIEFP];
    overlay.contains(&HvX64Msr(msr)).then_some(value >> 12)
}

/// The page of VP `vp`'s message slots: a SynIC or timer register's write
/// may deliver a message there at once (EOM, a timer already due).
fn message_page(p: &SyntheticPartition, vp: u32, msr: u32) -> Option<u64> {
    let synic = HvX64Msr(msr).0 >= HvX64Msr::SCONTROL.0 && HvX64Msr(msr).0 <= HvX64Msr::STIMER3_COUNT.0;
    let simp = p.rdmsr(vp, HvX64Msr::SIMP.0, Now::default());
    match simp {
        Ok(SynMsrOutcome::Read(v)) if synic => Some(v >> 12),
        _ => None,
    }
}

fuzz_target!(|input: Input| {
    let set = input.enlightenments.map(Enlightenments::from_bits).unwrap_or(Enlightenments::HYPERV);
    let profile = EnlightenmentProfile::new(set, 64, 4).unwrap_or_else(|_| {
        EnlightenmentProfile::new(Enlightenments::HYPERV, 64, 4).expect("the hyperv profile is valid")
    });
    let vendor = if input.amd { Vendor::Amd } else { Vendor::Intel };
    let clock = HostClock { tsc_hz: input.tsc_hz, apic_hz: input.apic_hz };
    let created = SyntheticPartition::new(profile, vendor, clock, input.created_tsc);
    let mut p = created.clone();
    let mut ram = Ram::new(PAGES, Some(ROM_PAGE));
    let mut tsc = input.created_tsc;
    let mut last_time = 0u64;
    for op in input.ops.iter().take(32) {
        match op {
            Op::Read { vp, msr: m, tsc_step, vp_runtime } => {
                let Some(next) = tsc.checked_add(u64::from(*tsc_step)) else { continue };
                tsc = next;
                let m = msr(m);
                let result = p.rdmsr(u32::from(*vp), m, Now { tsc, vp_runtime: *vp_runtime });
                let time = p.time_ref_count(tsc);
                assert!(time >= last_time, "TIME_REF_COUNT went back from {last_time} to {time} at TSC {tsc}");
                last_time = time;
                let page = p.reference_tsc_page(1);
                if page.tsc_sequence != HV_REFERENCE_TSC_SEQUENCE_INVALID {
                    assert_eq!(page.reference_time(tsc), time, "the TSC page and TIME_REF_COUNT disagree at {tsc}");
                }
                if let (HvX64Msr::TIME_REF_COUNT, Ok(v)) = (HvX64Msr(m), result) {
                    assert_eq!(v, SynMsrOutcome::Read(time));
                }
            }
            Op::Write { vp, msr: m, value } => {
                let m = msr(m);
                let value = match *value {
                    Value::Raw(v) => v,
                    Value::Page { low_bits, gpn } => u64::from(low_bits & 0xfff) | u64::from(gpn % 8) << 12,
                };
                let (before, ram_before) = (p.clone(), ram.clone());
                let result = p.wrmsr(u32::from(*vp), m, value, &mut ram, Now { tsc, vp_runtime: 0 });
                match result {
                    Err(gp) => {
                        assert_eq!(p, before, "#GP ({gp:?}) after changing the partition");
                        assert_eq!(ram, ram_before, "#GP ({gp:?}) after writing guest memory");
                    }
                    Ok(_) => {
                        // The page named, the message page, and the page
                        // the overlay uncovers (GUEST_OS_ID := 0 disables
                        // the hypercall page).
                        let uncovered = if HvX64Msr(m) == HvX64Msr::GUEST_OS_ID { HvX64Msr::HYPERCALL.0 } else { m };
                        let old = match before.rdmsr(u32::from(*vp), uncovered, Now::default()) {
                            Ok(SynMsrOutcome::Read(old)) => overlay_page(uncovered, old),
                            _ => None,
                        };
                        let pages = [overlay_page(m, value), message_page(&before, u32::from(*vp), m), old];
                        for gpn in ram.pages_changed_since(&ram_before) {
                            assert!(pages.contains(&Some(gpn)), "WRMSR {m:#x} = {value:#x} wrote page {gpn:#x}");
                        }
                        let read = |p: &SyntheticPartition, m: HvX64Msr| p.rdmsr(0, m.0, Now::default());
                        if HvX64Msr(m) == HvX64Msr::GUEST_OS_ID {
                            assert_eq!(read(&p, HvX64Msr::GUEST_OS_ID), Ok(SynMsrOutcome::Read(value)));
                        }
                        if HvX64Msr(m) == HvX64Msr::HYPERCALL {
                            let old = before.rdmsr(0, m, Now::default());
                            let Ok(SynMsrOutcome::Read(old)) = old else { panic!("HYPERCALL unreadable: {old:?}") };
                            let want = if HvX64MsrHypercallContents::from_bits(old).locked() {
                                old
                            } else {
                                let new = HvX64MsrHypercallContents::from_bits(value).with_reserved_p(0);
                                new.with_enable(new.enable() && p.guest_os_id() != 0).into_bits()
                            };
                            assert_eq!(read(&p, HvX64Msr::HYPERCALL), Ok(SynMsrOutcome::Read(want)));
                        }
                        if p.guest_os_id() == 0 {
                            let hc = read(&p, HvX64Msr::HYPERCALL);
                            if let Ok(SynMsrOutcome::Read(bits)) = hc {
                                assert!(
                                    !HvX64MsrHypercallContents::from_bits(bits).enable(),
                                    "enabled without an OS ID"
                                );
                            }
                        }
                    }
                }
            }
            Op::Reset => {
                p.reset();
                assert_eq!(p, created, "a reset is not the state at creation");
            }
        }
    }
});
