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

#[cfg(target_os = "none")]
fn main() {
    use tessera_rt::{ErrorCode, caps, log, recv_timeout};
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

tessera_rt::entry!(main);
