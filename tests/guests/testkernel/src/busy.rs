//! The busy test (`tests=busy`), for the classic scheduler's tests
//! (`tests/classic.rs`): the VP spins, always ready to run, for
//! [`STOP`] of partition reference time (`HV_X64_MSR_TIME_REF_COUNT`,
//! 100 ns units, counted from the partition's creation), and reports how
//! much it ran (`HV_X64_MSR_VP_RUNTIME`, 100 ns of guest time) between
//! [`START`] and [`END`]. Partitions started together are all busy over
//! that window, so their runtimes there are their shares of the CPU.
//!
//! It reads the two MSRs (each an exit to the VID) only every
//! [`CHECK_MS`] of TSC time, so the exits cost little of its turn. A VP
//! that is not running when the reference time passes an edge reads it
//! when it runs next: its runtime did not grow in between, so the edge's
//! runtime is exact up to the [`CHECK_MS`] it may spin before it looks.
//!
//! It also counts, in the window, the gaps of more than [`GAP_US`] between
//! two readings of the TSC in its loop: the times it did not run (another
//! VP did, or its exit was being handled), so the report says how its
//! runtime was cut into turns.

use crate::hw;
use crate::println;
use guest_testkernel::tlfs::msr;
use guest_testkernel::{Detail, detail};

/// The window, in 100 ns of reference time: 1 s to 4 s.
pub const START: u64 = 10_000_000;
pub const END: u64 = 40_000_000;
/// When it stops spinning: 5 s.
pub const STOP: u64 = 50_000_000;
/// How often it reads the reference time, in ms of TSC time.
const CHECK_MS: u64 = 5;
/// A longer pause between two TSC readings of its loop is a gap.
const GAP_US: u64 = 500;

fn read(name: &str, msr: u32) -> Result<u64, Detail> {
    hw::rdmsr_checked(msr).map_err(|_| detail!("rdmsr {name} ({msr:#x}) faulted"))
}

pub fn run(tsc_hz: u64) -> Result<(), Detail> {
    let step = tsc_hz / 1000 * CHECK_MS;
    let gap = tsc_hz / 1_000_000 * GAP_US;
    // (reference time, runtime) when it first saw each edge passed.
    let (mut first, mut last) = (None, None);
    let (mut checks, mut gaps, mut before) = (0u64, 0u64, hw::rdtsc());
    loop {
        let t0 = hw::rdtsc();
        loop {
            let now = hw::rdtsc();
            if now.wrapping_sub(before) > gap && first.is_some() && last.is_none() {
                gaps += 1;
            }
            before = now;
            if now.wrapping_sub(t0) >= step {
                break;
            }
            core::hint::spin_loop();
        }
        checks += 1;
        let now = read("TIME_REF_COUNT", msr::TIME_REF_COUNT)?;
        if first.is_none() && now >= START {
            first = Some((now, read("VP_RUNTIME", msr::VP_RUNTIME)?));
        }
        if last.is_none() && now >= END {
            last = Some((now, read("VP_RUNTIME", msr::VP_RUNTIME)?));
        }
        // The exits just taken are no gap in its run.
        before = hw::rdtsc();
        if now >= STOP {
            break;
        }
    }
    let (Some((t0, r0)), Some((t1, r1))) = (first, last) else {
        return Err(detail!("the reference time passed {STOP} without the window's edges"));
    };
    if t0 >= END {
        return Err(detail!("it first ran at reference time {t0}, after the window ({START}..{END})"));
    }
    let ms = |units: u64| units / 10_000;
    println!("testkernel: busy: runtime {} us in {}..{} ms", r1.wrapping_sub(r0) / 10, ms(START), ms(END));
    println!("testkernel: busy: edges at {} and {} us, {checks} checks, {gaps} gaps", t0 / 10, t1 / 10);
    Ok(())
}
