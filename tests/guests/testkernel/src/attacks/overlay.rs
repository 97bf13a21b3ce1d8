//! Garbage over the overlay pages (TLFS 5.2.1): the hypercall page, the
//! reference TSC page and the VP assist page.
//!
//! - Hypercall page: "attempts to write to the hypercall page will result
//!   in a protection (#GP) exception" (3.13). Writes at random offsets
//!   must each raise #GP, change nothing, and leave a page that works.
//! - Reference TSC page: the hypervisor writes it and never reads it back;
//!   garbage there is the guest's own problem, and enabling it again
//!   restores a valid page (a sequence neither 0 nor 0xFFFFFFFF, the same
//!   scale), while TIME_REF_COUNT keeps counting.
//! - VP assist page: the guest's to write (lazy EOI and the like);
//!   garbage must not change what HV_X64_MSR_EOI does, and enabling the
//!   page again hands it back zeroed.

use super::{Ctx, Failures, Outcome, say};
use crate::hw::hv::{self, Page};
use crate::hw::{self, rdmsr_checked, wrmsr_checked};
use crate::tlfs_suite;
use guest_testkernel::hostile::Tally;
use guest_testkernel::tlfs::{self, call, msr, status};
use guest_testkernel::{Test, detail};

const TEST: Test = Test::HostileOverlay;

fn spray(page: Page, rng: &mut fastrand::Rng) {
    for offset in (0..4096).step_by(8) {
        page.write(offset, &rng.u64(..).to_le_bytes());
    }
}

/// A fast HvCallNotifyLongSpinWait through the page: SUCCESS, or what went wrong.
fn spin_wait() -> Result<u16, hw::Fault> {
    let control = tlfs::Control::new(call::NOTIFY_LONG_SPIN_WAIT).fast().0;
    hv::hypercall(control, 1, 0).map(|r| r.rax as u16)
}

pub fn run(ctx: &Ctx) -> Outcome {
    let (mut f, mut t) = (Failures::new(TEST), Tally::default());
    if !ctx.hyperv {
        say!(TEST, "no Hyper-V interface: nothing to overlay");
        return f.finish(&t);
    }
    let mut rng = ctx.rng(TEST);

    // The hypercall page.
    let page = tlfs_suite::hypercall_page();
    f.require(page.is_ok(), || detail!("hypercall page: {page:?}"));
    for round in 0..8 {
        let at = rng.usize(..4096);
        let mut before = [0u8];
        Page::Hypercall.read(at, &mut before);
        let written = hw::write8_checked(Page::Hypercall.addr() + at as u64, !before[0]);
        let mut after = [0u8];
        Page::Hypercall.read(at, &mut after);
        t.note(written.is_err());
        let call = spin_wait();
        f.require(matches!(written, Err(fault) if fault.is_gp()) && after == before && call == Ok(status::SUCCESS), || {
            detail!("round {round}: a write at +{at:#x} gave {written:?} (TLFS 3.13: #GP), the byte {:#x} -> {:#x}, then a call {call:?}", before[0], after[0])
        });
    }

    // The reference TSC page.
    let enable = Page::ReferenceTsc.addr() | msr::PAGE_ENABLE;
    let wrote = wrmsr_checked(msr::REFERENCE_TSC, enable);
    f.require(wrote.is_ok(), || detail!("REFERENCE_TSC enable: {wrote:?}"));
    let scale = Page::ReferenceTsc.read_u64(8);
    let before = rdmsr_checked(msr::TIME_REF_COUNT);
    for round in 0..8 {
        spray(Page::ReferenceTsc, &mut rng);
        t.note(false);
        let count = rdmsr_checked(msr::TIME_REF_COUNT);
        f.require(count.is_ok(), || detail!("TIME_REF_COUNT after garbage: {count:?}"));
        let wrote = wrmsr_checked(msr::REFERENCE_TSC, enable);
        let sequence = Page::ReferenceTsc.read_u32(0);
        let scale_now = Page::ReferenceTsc.read_u64(8);
        f.require(wrote.is_ok() && sequence != 0xffff_ffff && scale_now == scale, || {
            detail!(
                "round {round}: enabled again {wrote:?}: sequence {sequence:#x}, scale {scale_now:#x} (was {scale:#x})"
            )
        });
    }
    let after = rdmsr_checked(msr::TIME_REF_COUNT);
    f.require(matches!((before, after), (Ok(b), Ok(a)) if a >= b), || {
        detail!("TIME_REF_COUNT went from {before:?} to {after:?}")
    });

    // The VP assist page.
    let enable = Page::VpAssist.addr() | msr::PAGE_ENABLE;
    for round in 0..8 {
        let wrote = wrmsr_checked(msr::VP_ASSIST_PAGE, enable);
        let zeroed = (0..4096).step_by(8).all(|at| Page::VpAssist.read_u64(at) == 0);
        f.require(wrote.is_ok() && zeroed, || detail!("round {round}: enabled {wrote:?}, zeroed {zeroed}"));
        spray(Page::VpAssist, &mut rng);
        let eoi = wrmsr_checked(msr::EOI, 0);
        t.note(eoi.is_err());
        f.require(eoi.is_ok(), || detail!("round {round}: EOI over a garbage assist page: {eoi:?}"));
    }
    // Disabled again, as the rest of the run expects nothing of them.
    let _ = wrmsr_checked(msr::VP_ASSIST_PAGE, 0);
    let _ = wrmsr_checked(msr::REFERENCE_TSC, 0);
    f.finish(&t)
}
