//! The `heartbeat` test task: logs `beat 1` … `beat 5`, one every 20
//! ticks, by receiving with a timeout on an endpoint nobody sends to. Tests
//! use it as a witness that the system keeps running while other tasks
//! fault or crash-loop.
//!
//! A task of this binary named `pulse` is the finer witness of the hostile
//! guest tests: [`PULSE_BEATS`] beats every [`PULSE_TICKS`] ticks, timed
//! with the kernel's tick count, and a line every [`PULSE_REPORT`] beats
//! with the longest gap between two beats (the interval when nothing
//! starves it): `pulse: beats 1-50: longest gap 5 ticks`, and at the end
//! `pulse: done: 400 beats, longest gap N ticks`.
//!
//! A task named `deadline` measures the kernel's TSC deadlines (the ABI's
//! Timeouts): after 20 ticks, [`DEADLINE_WAITS`] receives, each until
//! the TSC is 1 ms further, counting the waits that ended before their
//! deadline and the mean and longest lateness: `deadline: 500 waits of 1 ms: 0 early,
//! lateness mean M us, max N us, 500 in T us`; then deadlines already
//! passed (0, the TSC just read) and a 1-tick timeout for comparison.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("heartbeat is a Tessera task; it runs only on the bare target (x86_64-unknown-none).");
}

/// The pulse: beats, ticks between them, beats per report line.
#[cfg(target_os = "none")]
const PULSE_BEATS: u32 = 400;
#[cfg(target_os = "none")]
const PULSE_TICKS: u64 = 5;
#[cfg(target_os = "none")]
const PULSE_REPORT: u32 = 50;

/// Waits of 1 ms the `deadline` task measures.
#[cfg(target_os = "none")]
const DEADLINE_WAITS: u64 = 500;

#[cfg(target_os = "none")]
fn main() {
    use tessera_rt::{ErrorCode, caps, log, recv_timeout};
    if let Some(clock) = caps::endpoint("deadline") {
        return deadlines(clock);
    }
    const BEATS: u32 = 5;
    const INTERVAL_TICKS: u64 = 20;
    let Some(clock) = caps::endpoint("heartbeat").or_else(|| caps::endpoint("pulse")) else {
        log!("no \"heartbeat\" endpoint to time the beats with");
        return;
    };
    if tessera_rt::startup::task_name() == "pulse" {
        return pulse(clock);
    }
    for beat in 1..=BEATS {
        match recv_timeout(clock, INTERVAL_TICKS) {
            Err(ErrorCode::TIMEOUT) => log!("beat {beat}"),
            other => log!("beat {beat}: unexpected {:?}", other.map(|r| r.badge)),
        }
    }
    log!("done");
}

#[cfg(target_os = "none")]
fn pulse(clock: tessera_rt::CapSlot) {
    use tessera_rt::{ErrorCode, log, recv_timeout, ticks};
    let (mut last, mut longest, mut overall) = (ticks(), 0, 0);
    for beat in 1..=PULSE_BEATS {
        if let other @ (Ok(_) | Err(ErrorCode::CANCELLED | ErrorCode::PEER_GONE)) = recv_timeout(clock, PULSE_TICKS) {
            log!("beat {beat}: unexpected {:?}", other.map(|r| r.badge));
        }
        let now = ticks();
        longest = longest.max(now - last);
        last = now;
        if beat % PULSE_REPORT == 0 {
            log!("beats {}-{beat}: longest gap {longest} ticks", beat + 1 - PULSE_REPORT);
            overall = overall.max(longest);
            longest = 0;
        }
    }
    log!("done: {PULSE_BEATS} beats, longest gap {overall} ticks");
}

#[cfg(target_os = "none")]
fn deadlines(clock: tessera_rt::CapSlot) {
    use tessera_rt::arch::rdtsc;
    use tessera_rt::{ErrorCode, Until, log, recv_timeout, recv_until};
    let hz = tessera_rt::startup::tsc_hz();
    if hz == 0 {
        log!("deadline: no TSC frequency in the startup page");
        return;
    }
    let us = |cycles: u64| (u128::from(cycles) * 1_000_000 / u128::from(hz)) as u64;
    // Let the boot settle first: the supervisor and the console, above it,
    // are still starting the system (their work would count as lateness).
    let _ = recv_timeout(clock, 20);
    let period = hz / 1_000;
    let (mut early, mut late_sum, mut late_max, mut odd) = (0, 0u64, 0u64, 0);
    let start = rdtsc();
    for _ in 0..DEADLINE_WAITS {
        let deadline = rdtsc() + period;
        if recv_until(clock, Until::Tsc(deadline)).err() != Some(ErrorCode::TIMEOUT) {
            odd += 1;
        }
        let now = rdtsc();
        match now.checked_sub(deadline) {
            None => early += 1,
            Some(late) => (late_sum, late_max) = (late_sum + late, late_max.max(late)),
        }
    }
    let total = rdtsc() - start;
    log!(
        "deadline: {DEADLINE_WAITS} waits of 1 ms: {early} early, lateness mean {} us, max {} us, {DEADLINE_WAITS} in {} us{}",
        us(late_sum / DEADLINE_WAITS),
        us(late_max),
        us(total),
        if odd == 0 { "" } else { " (some did not time out)" }
    );
    // Deadlines already passed return at once with TIMEOUT.
    for (name, deadline) in [("0", 0), ("now", rdtsc()), ("now-1", rdtsc() - 1)] {
        let before = rdtsc();
        let result = recv_until(clock, Until::Tsc(deadline));
        log!("deadline: passed deadline {name}: {:?} after {} us", result.map(|r| r.badge), us(rdtsc() - before));
    }
    // The tick form, for comparison: a wait of one tick.
    let before = rdtsc();
    let result = recv_timeout(clock, 1);
    log!("deadline: a 1-tick timeout: {:?} after {} us", result.map(|r| r.badge), us(rdtsc() - before));
    log!("deadline: done");
}

tessera_rt::entry!(main);
