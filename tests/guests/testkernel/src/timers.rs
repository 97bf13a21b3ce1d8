//! The timers test (`tests=timers`): the VID's emulated timers against
//! partition reference time (`HV_X64_MSR_TIME_REF_COUNT`, 100 ns units),
//! the accuracy issue #11 asks of them:
//!
//! 1. the PIT (channel 0, IRQ 0 through the 8259) at 1 kHz fires 1000
//!    times in 1 s of reference time, within 2 %;
//! 2. the local APIC timer, periodic at 1 kHz (its rate from
//!    `HV_X64_MSR_APIC_FREQUENCY`), the same;
//! 3. [`ONE_SHOTS`] one-shots of the local APIC timer, each 1 ms from
//!    when it is armed: none fires before its time (by the TSC the
//!    handler reads first thing), and each less than 1 ms late;
//! 4. the synthetic timer STIMER0 in direct mode (its APIC vector, TLFS
//!    12.2), periodic at 1 ms, the same, and as one-shots 1 ms of
//!    reference time ahead (an absolute COUNT), timed in reference time
//!    at the handler's TSC through the reference TSC page (TLFS 12.7, as
//!    Linux reads the time: no exit), or with the MSR once the interrupt
//!    came where the page is not offered (late by that read's exit):
//!    never early, and each less than 1 ms late.
//!
//! It halts between interrupts. With the VID's waits rounded up to the
//! kernel's 10 ms ticks, the periodic timers fired about 100 times a
//! second and the one-shots up to 10 ms late.

use crate::hw::{self, hv::Page};
use crate::println;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use guest_testkernel::tlfs::msr;
use guest_testkernel::{Detail, detail};

/// The local APIC timer's vector.
pub const VECTOR: u8 = 0x40;
/// One-shots measured.
const ONE_SHOTS: u64 = 50;
/// Reference time counted: 1 s in 100 ns units.
const SECOND: u64 = 10_000_000;

const LVT_TIMER: u64 = 0x320;
const TIMER_INITIAL: u64 = 0x380;
const TIMER_DIVIDE: u64 = 0x3e0;
const LAPIC_EOI: u64 = 0xb0;
const LVT_PERIODIC: u32 = 1 << 17;
const LVT_MASKED: u32 = 1 << 16;
/// Divide configuration 1011: by 1.
const DIVIDE_BY_1: u32 = 0b1011;

/// Set while the test runs: before, the vector is none of its business.
static ACTIVE: AtomicBool = AtomicBool::new(false);
static FIRED: AtomicU64 = AtomicU64::new(0);
/// The TSC when the last timer interrupt came in.
static LAST: AtomicU64 = AtomicU64::new(0);

/// The trap handler's share: true if `vector` was the timer's.
pub fn interrupt(vector: u64) -> bool {
    if vector != u64::from(VECTOR) || !ACTIVE.load(Ordering::Relaxed) {
        return false;
    }
    LAST.store(hw::rdtsc(), Ordering::Relaxed);
    FIRED.fetch_add(1, Ordering::Relaxed);
    hw::write32(hw::LAPIC_BASE + LAPIC_EOI, 0);
    true
}

fn reference_time() -> Result<u64, Detail> {
    hw::rdmsr_checked(msr::TIME_REF_COUNT).map_err(|_| detail!("rdmsr TIME_REF_COUNT faulted"))
}

/// The reference TSC page's (scale, offset), once it is enabled and valid
/// (TLFS 12.7.2: a sequence of 0 says "use the MSR").
fn reference_tsc_page() -> Option<(u64, u64)> {
    hw::wrmsr_checked(msr::REFERENCE_TSC, Page::ReferenceTsc.addr() | msr::PAGE_ENABLE).ok()?;
    let sequence = Page::ReferenceTsc.read_u32(0);
    (sequence != 0 && sequence != u32::MAX).then(|| (Page::ReferenceTsc.read_u64(8), Page::ReferenceTsc.read_u64(16)))
}

/// Reference time at TSC `tsc` by the page's formula (TLFS 12.7.3).
fn reference_at((scale, offset): (u64, u64), tsc: u64) -> u64 {
    ((u128::from(tsc) * u128::from(scale)) >> 64) as u64 + offset
}

/// How much `count` grows over 1 s of reference time, halting between
/// interrupts.
fn over_a_second(count: impl Fn() -> u64) -> Result<u64, Detail> {
    let (start, before) = (reference_time()?, count());
    while reference_time()?.wrapping_sub(start) < SECOND {
        hw::halt_once();
    }
    Ok(count() - before)
}

fn within_two_percent(what: &str, fired: u64) -> Result<(), Detail> {
    println!("testkernel: timers: {what} at 1000 Hz: {fired} interrupts in 1 s of reference time");
    if fired.abs_diff(1000) > 20 {
        return Err(detail!("{what}: {fired} interrupts in 1 s, not 1000 within 2 %"));
    }
    Ok(())
}

pub fn run(tsc_hz: u64) -> Result<(), Detail> {
    // 1. The PIT: rate generator with 1193 (1000.15 Hz).
    hw::start_timer();
    hw::outb(0x43, 0x34);
    hw::outb(0x40, (1193u16 & 0xff) as u8);
    hw::outb(0x40, (1193u16 >> 8) as u8);
    let pit = over_a_second(hw::timer_ticks);
    hw::stop_timer();
    within_two_percent("pit", pit?)?;

    // 2. The local APIC timer, periodic.
    hw::lapic_enable();
    let apic_hz = hw::rdmsr_checked(msr::APIC_FREQUENCY).unwrap_or(0);
    if apic_hz < 1_000_000 {
        return Err(detail!("HV_X64_MSR_APIC_FREQUENCY reads {apic_hz}"));
    }
    let per_ms = u32::try_from(apic_hz / 1000).map_err(|_| detail!("APIC frequency {apic_hz} too high"))?;
    let lapic = |offset, value| hw::write32(hw::LAPIC_BASE + offset, value);
    ACTIVE.store(true, Ordering::Relaxed);
    lapic(TIMER_DIVIDE, DIVIDE_BY_1);
    lapic(LVT_TIMER, u32::from(VECTOR) | LVT_PERIODIC);
    lapic(TIMER_INITIAL, per_ms);
    let periodic = over_a_second(|| FIRED.load(Ordering::Relaxed));
    lapic(TIMER_INITIAL, 0);
    lapic(LVT_TIMER, u32::from(VECTOR) | LVT_MASKED);
    within_two_percent("local APIC timer", periodic?)?;
    // A period that fired as the timer stopped may still be on its way
    // (pending at the VID or in the IRR): taken here, it is not mistaken
    // for an early one-shot.
    let ms = tsc_hz / 1000;
    hw::interrupt_window(10 * ms, || false);

    // 3. One-shots of 1 ms.
    lapic(LVT_TIMER, u32::from(VECTOR));
    let (mut early, mut late_sum, mut late_max) = (0u64, 0u64, 0u64);
    for _ in 0..ONE_SHOTS {
        let before = FIRED.load(Ordering::Relaxed);
        let armed = hw::rdtsc();
        lapic(TIMER_INITIAL, per_ms);
        let due = armed + ms;
        while FIRED.load(Ordering::Relaxed) == before {
            hw::halt_once();
        }
        match LAST.load(Ordering::Relaxed).checked_sub(due) {
            None => early += 1,
            Some(late) => (late_sum, late_max) = (late_sum + late, late_max.max(late)),
        }
    }
    lapic(LVT_TIMER, u32::from(VECTOR) | LVT_MASKED);
    report("one-shots of 1 ms", early, late_sum, late_max, tsc_hz, true)?;

    // 4. STIMER0, direct mode on the same vector.
    let stimer = |config: u64, count: u64| {
        hw::wrmsr_checked(msr::STIMER0_CONFIG + 1, count)
            .and_then(|()| hw::wrmsr_checked(msr::STIMER0_CONFIG, config))
            .map_err(|_| detail!("STIMER0 refused config {config:#x}, count {count}"))
    };
    stimer(STIMER_ENABLE | STIMER_PERIODIC | STIMER_DIRECT | u64::from(VECTOR) << 4, 10_000)?;
    let periodic = over_a_second(|| FIRED.load(Ordering::Relaxed));
    stimer(0, 0)?;
    within_two_percent("STIMER0", periodic?)?;
    let (mut early, mut late_sum, mut late_max) = (0u64, 0u64, 0u64);
    let page = reference_tsc_page();
    for _ in 0..ONE_SHOTS {
        let before = FIRED.load(Ordering::Relaxed);
        let due = reference_time()? + 10_000;
        stimer(STIMER_ENABLE | STIMER_DIRECT | u64::from(VECTOR) << 4, due)?;
        while FIRED.load(Ordering::Relaxed) == before {
            hw::halt_once();
        }
        let came = match page {
            Some(page) => reference_at(page, LAST.load(Ordering::Relaxed)),
            None => reference_time()?,
        };
        match came.checked_sub(due) {
            None => early += 1,
            Some(late) => (late_sum, late_max) = (late_sum + late, late_max.max(late)),
        }
    }
    ACTIVE.store(false, Ordering::Relaxed);
    // Printed after the one-shots: the console line would delay the first.
    let how = if page.is_some() { "by the reference TSC page at the handler" } else { "by TIME_REF_COUNT after it" };
    println!("testkernel: timers: STIMER0 one-shots timed {how}");
    // In 100 ns units: as TSC cycles at 10 MHz.
    report("STIMER0 one-shots of 1 ms", early, late_sum, late_max, 10_000_000, true)
}

/// STIMERx_CONFIG bits (TLFS 12.5.1).
const STIMER_ENABLE: u64 = 1;
const STIMER_PERIODIC: u64 = 1 << 1;
const STIMER_DIRECT: u64 = 1 << 12;

/// Prints and checks [`ONE_SHOTS`] one-shots' lateness (in cycles of a
/// `tsc_hz` clock): none early, and (`bounded`) each under 1 ms late.
fn report(what: &str, early: u64, late_sum: u64, late_max: u64, tsc_hz: u64, bounded: bool) -> Result<(), Detail> {
    let us = |tsc: u64| tsc * 1_000_000 / tsc_hz.max(1);
    let (mean, max) = (us(late_sum / ONE_SHOTS), us(late_max));
    println!("testkernel: timers: {ONE_SHOTS} {what}: {early} early, lateness mean {mean} us, max {max} us");
    if early != 0 || (bounded && max >= 1000) {
        return Err(detail!("{what}: {early} early, up to {max} us late"));
    }
    Ok(())
}
