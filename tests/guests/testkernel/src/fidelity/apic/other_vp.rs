//! The second VP, for x2APIC IPIs between processors (SDM 11.12.9,
//! 11.12.10.1): started by INIT-SIPI-SIPI while the BSP is still in xAPIC
//! mode, it enters x2APIC mode itself and waits in HLT; the BSP's 64-bit
//! ICR IPI wakes it, and it answers with one to the BSP. Then it goes back
//! to xAPIC mode (through disabled) and stops, so a later test can start
//! it again as it expects.
//!
//! The two processors take turns: the fault fixups of `hw` are shared, so
//! only one of them does checked MSR accesses at a time.

use super::{APIC_BASE_MSR, BASE_EN, BASE_EXTD, VEC_AP, VEC_REPLY, count, rd, wait_for, wr, x2};
use crate::ap;
use crate::checks::{Checks, fail_unless};
use crate::hw;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use guest_testkernel::{Detail, detail};

/// The AP's APIC ID: the MADT's second processor (the partition's VP 1).
const AP_ID: u8 = 1;
/// How long the BSP waits for each of the AP's steps.
const STEP_MS: u64 = 500;

const STATE_NONE: u64 = 0;
const STATE_X2APIC: u64 = 1;
const STATE_FAILED: u64 = 2;
const STATE_PARKED: u64 = 3;

static STATE: AtomicU64 = AtomicU64::new(STATE_NONE);
/// The x2APIC ID the AP read from MSR 802H.
static X2APIC_ID: AtomicU64 = AtomicU64::new(u64::MAX);
/// The AP's turn to answer (true) and to leave (after [`DONE`]).
static ANSWER: AtomicBool = AtomicBool::new(false);
static DONE: AtomicBool = AtomicBool::new(false);
/// The answer's WRMSR: 0 not yet, then [`SENT`] or [`FAULTED`].
static ANSWERED: AtomicU64 = AtomicU64::new(0);
const SENT: u64 = 1;
const FAULTED: u64 = 2;

/// Spins (interrupts as they are) until `done()` or `ms` passed.
fn spin_until(ms: u64, done: impl Fn() -> bool) -> bool {
    let start = hw::rdtsc();
    while !done() {
        if hw::rdtsc().wrapping_sub(start) > hw::tsc_hz() / 1000 * ms {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// Starts the AP (the BSP in xAPIC mode, its PIT paces the waits).
pub(super) fn start(magic: u32, info: u64) -> Result<(), Detail> {
    let vector = ap::prepare(magic, info, ap_entry)?;
    hw::start_timer();
    let sent = ap::start_one(AP_ID, vector);
    hw::stop_timer();
    sent?;
    if !spin_until(STEP_MS, || STATE.load(Ordering::Acquire) != STATE_NONE) {
        return Err(detail!("AP {AP_ID} did not come up"));
    }
    match STATE.load(Ordering::Acquire) {
        STATE_X2APIC => Ok(()),
        _ => Err(detail!("AP {AP_ID} could not enter x2APIC mode")),
    }
}

/// The BSP, in x2APIC mode, and the AP exchange IPIs through the ICR.
pub(super) fn ipis(c: &mut Checks) {
    let id = X2APIC_ID.load(Ordering::Acquire);
    c.require(
        "the AP's x2APIC ID is its VP index (SDM 11.12.8)",
        fail_unless(id == u64::from(AP_ID), detail!("AP read {id:#x}")),
    );
    let before = count(VEC_AP);
    // The AP answers once woken by this IPI.
    let replies = count(VEC_REPLY);
    ANSWER.store(true, Ordering::Release);
    let sent = wr(x2::ICR, id << 32 | u64::from(VEC_AP));
    let taken = spin_until(STEP_MS, || count(VEC_AP) > before);
    c.require(
        "64-bit ICR IPI to the other VP's x2APIC ID is delivered (SDM 11.12.9)",
        fail_unless(sent.is_ok() && taken, detail!("wrmsr {sent:?}, taken {taken}")),
    );
    let got = wait_for(VEC_REPLY, replies + 1, STEP_MS) - replies;
    // The IPI may arrive before the AP has seen its WRMSR return.
    spin_until(STEP_MS, || ANSWERED.load(Ordering::Acquire) != 0);
    let answered = ANSWERED.load(Ordering::Acquire);
    c.require(
        "the other VP's x2APIC IPI reaches this one (SDM 11.12.10.1)",
        fail_unless(answered == SENT && got == 1, detail!("taken {got}, AP's WRMSR {answered}")),
    );
}

/// Sends the AP back to xAPIC mode and waits until it stopped.
pub(super) fn park(c: &mut Checks) {
    if STATE.load(Ordering::Acquire) != STATE_X2APIC {
        return;
    }
    DONE.store(true, Ordering::Release);
    let id = X2APIC_ID.load(Ordering::Acquire);
    let _ = wr(x2::ICR, id << 32 | u64::from(VEC_AP));
    let parked = spin_until(STEP_MS, || STATE.load(Ordering::Acquire) == STATE_PARKED);
    c.require("the AP leaves x2APIC mode through disabled (SDM 11.12.5)", fail_unless(parked, detail!("no answer")));
}

/// Where the trampoline lands: on the AP's own stack, interrupts off.
extern "C" fn ap_entry(_slot: u32) -> ! {
    hw::load_idt();
    let base = hw::rdmsr(APIC_BASE_MSR);
    let entered = wr(APIC_BASE_MSR, base | BASE_EXTD).is_ok() && wr(x2::SVR, 0x1ff).is_ok() && wr(x2::TPR, 0).is_ok();
    X2APIC_ID.store(rd(x2::ID).unwrap_or(u64::MAX), Ordering::Release);
    STATE.store(if entered { STATE_X2APIC } else { STATE_FAILED }, Ordering::Release);
    if entered {
        while !ANSWER.load(Ordering::Acquire) {
            hw::halt_once();
        }
        // The BSP's x2APIC ID is 0 (the MADT's boot processor).
        let sent = wr(x2::ICR, u64::from(VEC_REPLY));
        ANSWERED.store(if sent.is_ok() { SENT } else { FAULTED }, Ordering::Release);
        while !DONE.load(Ordering::Acquire) {
            hw::halt_once();
        }
        let _ = wr(APIC_BASE_MSR, base & !(BASE_EN | BASE_EXTD));
        let _ = wr(APIC_BASE_MSR, base);
        STATE.store(STATE_PARKED, Ordering::Release);
    }
    loop {
        // SAFETY: stops this CPU with interrupts off; only INIT or NMI wakes it.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) }
    }
}
