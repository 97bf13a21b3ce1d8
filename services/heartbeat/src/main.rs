//! The `heartbeat` test task: logs `beat 1` … `beat 5`, one every 20
//! ticks, by receiving with a timeout on an endpoint nobody sends to. Tests
//! use it as a witness that the system keeps running while other tasks
//! fault or crash-loop.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("heartbeat is a Tessera task; it runs only on the bare target (x86_64-unknown-none).");
}

#[cfg(target_os = "none")]
fn main() {
    use tessera_rt::{ErrorCode, caps, log, recv_timeout};
    const BEATS: u32 = 5;
    const INTERVAL_TICKS: u64 = 20;
    let Some(clock) = caps::endpoint("heartbeat") else {
        log!("no \"heartbeat\" endpoint to time the beats with");
        return;
    };
    for beat in 1..=BEATS {
        match recv_timeout(clock, INTERVAL_TICKS) {
            Err(ErrorCode::TIMEOUT) => log!("beat {beat}"),
            other => log!("beat {beat}: unexpected {:?}", other.map(|r| r.badge)),
        }
    }
    log!("done");
}

tessera_rt::entry!(main);
