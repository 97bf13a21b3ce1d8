//! Every MSR of [`msr::LIST`] read and written with wild values, EFER with
//! the bits the architecture refuses, the whole synthetic range, and
//! random MSR numbers.
//!
//! - Guest MSRs (syscall, SYSENTER, FS/GS bases) pass through to the VP: a
//!   canonical address reads back as written. A non-canonical one is #GP
//!   on hardware; an emulator may take it (reported, not required).
//! - Host MSRs never reach the host: whatever the guest sees (a value, an
//!   ignored write, #GP) is required only to come back; the host's health
//!   is checked outside (the neighbour's canaries, the services).
//! - EFER: reserved bits, NXE without NX, or LME changed under paging are
//!   #GP, with EFER unchanged; LMA is the CPU's.
//! - Synthetic MSRs: those the partition is not offered are #GP (TLFS
//!   Appendix C); the writable ones take what is written, the read-only
//!   ones refuse writes.
//!
//! Each MSR's value is written back at the end (IA32_APIC_BASE, the bases).

use super::{Ctx, Failures, Outcome, say};
use crate::hw::{rdmsr_checked, wrmsr_checked};
use guest_testkernel::hostile::msr::{self, Kind};
use guest_testkernel::hostile::{Tally, canonical, is_canonical, wild_value};
use guest_testkernel::tlfs::msr as syn;
use guest_testkernel::{Test, detail};

const TEST: Test = Test::HostileMsr;
const WRITES_PER_MSR: u32 = 12;
const RANDOM_MSRS: u32 = 400;

/// How a synthetic MSR the partition is offered takes a write.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Reads back what was written.
    ReadWrite,
    /// #GP, the value unchanged.
    ReadOnly,
    /// #GP; the value moves on its own (a clock).
    Clock,
}

/// Synthetic MSRs of the `hyperv` profile without side effects. Page
/// MSRs, RESET, the crash control, ICR and GUEST_IDLE have effects of
/// their own and are left to the overlay, log and conformance tests.
const SYNTHETIC: &[(u32, Access)] = &[
    (syn::GUEST_OS_ID, Access::ReadWrite),
    (syn::VP_INDEX, Access::ReadOnly),
    (syn::VP_RUNTIME, Access::Clock),
    (syn::TIME_REF_COUNT, Access::Clock),
    (syn::TSC_FREQUENCY, Access::ReadOnly),
    (syn::APIC_FREQUENCY, Access::ReadOnly),
    (syn::CRASH_P0, Access::ReadWrite),
    (syn::CRASH_P0 + 1, Access::ReadWrite),
    (syn::CRASH_P0 + 2, Access::ReadWrite),
    (syn::CRASH_P0 + 3, Access::ReadWrite),
    (syn::CRASH_P0 + 4, Access::ReadWrite),
];

/// Synthetic MSRs whose access has effects the spray must not cause (a
/// page written over RAM, a reset, an idle VP, an IPI, a crash report).
fn has_effects(number: u32) -> bool {
    const EFFECTS: [u32; 7] = [
        syn::HYPERCALL,
        syn::RESET,
        syn::REFERENCE_TSC,
        syn::ICR,
        syn::VP_ASSIST_PAGE,
        syn::GUEST_IDLE,
        syn::CRASH_CTL,
    ];
    EFFECTS.contains(&number)
}

fn nx() -> bool {
    crate::hw::cpuid(0x8000_0001, 0).edx & (1 << 20) != 0
}

pub fn run(ctx: &Ctx) -> Outcome {
    let (mut f, mut t) = (Failures::new(TEST), Tally::default());
    let mut rng = ctx.rng(TEST);
    let mut accepted_non_canonical = 0;

    for &(number, name, kind) in msr::LIST {
        let original = rdmsr_checked(number);
        t.note(original.is_err());
        for _ in 0..WRITES_PER_MSR {
            let value = match kind {
                Kind::Guest { address: true } if rng.bool() => canonical(rng.u64(..)),
                _ => wild_value(&mut rng, original.unwrap_or(0)),
            };
            let wrote = wrmsr_checked(number, value);
            t.note(wrote.is_err());
            let back = rdmsr_checked(number);
            if let Kind::Guest { address: true } = kind {
                if is_canonical(value) {
                    f.require(wrote.is_ok() && back == Ok(value), || {
                        detail!("{name}: wrote {value:#x} ({wrote:?}), read {back:x?}")
                    });
                } else if wrote.is_ok() {
                    accepted_non_canonical += 1;
                }
            }
        }
        if let Ok(v) = original {
            restore(&mut f, number, name, v);
        }
    }
    // WRMSR of a non-canonical address is #GP (SDM Vol. 2B WRMSR): the CPU
    // checks it, or ring 0 where the emulated CPU does not (QEMU's SVM).
    f.require(accepted_non_canonical == 0, || {
        detail!("{accepted_non_canonical} non-canonical addresses taken without #GP")
    });

    efer(&mut f, &mut t, &mut rng);
    synthetic(ctx, &mut f, &mut t, &mut rng);

    // Random MSR numbers (but the synthetic range, x2APIC and the two
    // above: covered), read and written.
    let mut faults = 0;
    for _ in 0..RANDOM_MSRS {
        let number = match rng.u8(0..3) {
            0 => rng.u32(0..0x2000),
            1 => rng.u32(0xc000_0000..0xc000_2000) | if rng.bool() { 0x1_0000 } else { 0 },
            _ => rng.u32(..),
        };
        if (0x4000_0000..0x4000_0200).contains(&number)
            || (0x800..0x900).contains(&number)
            || number == msr::EFER
            || number == 0x1b
            || msr::LIST.iter().any(|&(n, _, _)| n == number)
        {
            continue;
        }
        let read = rdmsr_checked(number);
        let wrote = wrmsr_checked(number, wild_value(&mut rng, read.unwrap_or(0)));
        t.note(read.is_err());
        t.note(wrote.is_err());
        faults += u32::from(read.is_err()) + u32::from(wrote.is_err());
        if let Ok(v) = read {
            let _ = wrmsr_checked(number, v);
        }
    }
    say!(TEST, "random MSR numbers: {faults} accesses raised a fault");
    f.finish(&t)
}

/// Writes `value` back; IA32_APIC_BASE may need a disabled step between
/// (x2APIC cannot go straight back to xAPIC).
fn restore(f: &mut Failures, number: u32, name: &str, value: u64) {
    let mut wrote = wrmsr_checked(number, value);
    if wrote.is_err() && number == 0x1b {
        let _ = wrmsr_checked(number, value & !(3 << 10));
        wrote = wrmsr_checked(number, value);
    }
    let back = rdmsr_checked(number);
    if number == 0x1b || matches!(msr::LIST.iter().find(|e| e.0 == number), Some((_, _, Kind::Guest { .. }))) {
        f.require(wrote.is_ok() && back == Ok(value), || detail!("{name}: restoring {value:#x}: {wrote:?}, {back:x?}"));
    }
}

fn efer(f: &mut Failures, t: &mut Tally, rng: &mut fastrand::Rng) {
    let nx = nx();
    let Ok(current) = rdmsr_checked(msr::EFER) else {
        f.fail(detail!("EFER cannot be read"));
        return;
    };
    f.require(current & (msr::EFER_LME | msr::EFER_LMA) == msr::EFER_LME | msr::EFER_LMA, || {
        detail!("EFER reads {current:#x} in long mode (LME and LMA expected)")
    });
    for _ in 0..64 {
        let value = match rng.u8(0..4) {
            0 => current ^ (1 << rng.u32(0..64)),
            1 => current & !msr::EFER_LME,
            2 => current | msr::EFER_NXE,
            _ => wild_value(rng, current),
        };
        let faults = msr::efer_write_faults(current, value, nx);
        let wrote = wrmsr_checked(msr::EFER, value);
        t.note(wrote.is_err());
        let back = rdmsr_checked(msr::EFER);
        let expected = if faults { current } else { (value & !msr::EFER_LMA) | (current & msr::EFER_LMA) };
        let gp = wrote.as_ref().is_err_and(|f| f.is_gp());
        f.require(gp == faults && back == Ok(expected), || {
            detail!("EFER := {value:#x} (from {current:#x}): {wrote:?}, reads {back:x?}, expected {expected:#x}")
        });
        // Back to where it was, for the next case.
        let _ = wrmsr_checked(msr::EFER, current);
    }
}

fn synthetic(ctx: &Ctx, f: &mut Failures, t: &mut Tally, rng: &mut fastrand::Rng) {
    if !ctx.hyperv {
        return;
    }
    // The hypervisor range: every MSR the partition is not offered is #GP.
    let offered =
        |n: u32| SYNTHETIC.iter().any(|&(m, _)| m == n) || has_effects(n) || is_offered_apic(n) || is_offered_synic(n);
    let mut refused = 0;
    for number in 0x4000_0000..0x4000_0100 {
        if offered(number) {
            continue;
        }
        let read = rdmsr_checked(number);
        let wrote = wrmsr_checked(number, rng.u64(..));
        t.note(read.is_err());
        t.note(wrote.is_err());
        refused += u32::from(read.is_err() && wrote.is_err());
        let both_gp = read.as_ref().is_err_and(|f| f.is_gp()) && wrote.as_ref().is_err_and(|f| f.is_gp());
        f.require(both_gp, || detail!("synthetic MSR {number:#x} not offered: read {read:x?}, write {wrote:?}"));
    }
    say!(TEST, "{refused} synthetic MSRs not offered raised #GP on read and write");
    for &(number, access) in SYNTHETIC {
        let original = rdmsr_checked(number);
        for _ in 0..WRITES_PER_MSR {
            let value = rng.u64(..);
            let wrote = wrmsr_checked(number, value);
            t.note(wrote.is_err());
            let back = rdmsr_checked(number);
            let gp = wrote.as_ref().is_err_and(|f| f.is_gp());
            let ok = match access {
                Access::ReadWrite => wrote.is_ok() && back == Ok(value),
                Access::ReadOnly => gp && back == original,
                Access::Clock => gp && back.is_ok(),
            };
            f.require(ok, || detail!("synthetic {number:#x} := {value:#x}: {wrote:?}, reads {back:x?}"));
        }
        if let (Ok(v), Access::ReadWrite) = (original, access) {
            let _ = wrmsr_checked(number, v);
        }
    }
    // TPR: bits above 7:0 are reserved.
    let tpr = wrmsr_checked(syn::TPR, 1 << (8 + rng.u32(0..56)));
    t.note(tpr.is_err());
    f.require(tpr.as_ref().is_err_and(|f| f.is_gp()), || detail!("TPR with a reserved bit: {tpr:?}"));
    let _ = wrmsr_checked(syn::TPR, 0);
}

/// The SynIC's and the synthetic timers' MSRs, where CPUID 0x40000003
/// grants them (EAX bit 2 AccessSynicRegs, bit 3
/// AccessSyntheticTimerRegs; TLFS 11.8, 12.5): SCONTROL, SVERSION, SIEFP,
/// SIMP, EOM, SINT0-15, STIMER0-3 CONFIG and COUNT. Left to the
/// conformance tests: their pages cover RAM and their SINTs interrupt.
fn is_offered_synic(number: u32) -> bool {
    let privileges = crate::hw::cpuid(0x4000_0003, 0).eax;
    let synic = privileges & 1 << 2 != 0 && matches!(number, 0x4000_0080..=0x4000_0084 | 0x4000_0090..=0x4000_009f);
    let timers = privileges & 1 << 3 != 0 && (0x4000_00b0..=0x4000_00b7).contains(&number);
    synic || timers
}

/// The APIC MSRs of the `hyperv` profile (EOI is write-only, TPR checked above).
fn is_offered_apic(number: u32) -> bool {
    number == syn::EOI || number == syn::TPR
}
