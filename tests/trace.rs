//! `tessera trace` (boot option `trace=on`): the kernel records VM exits,
//! syscalls and context switches and prints its report when the system
//! ends; the runner decodes it. Booted on the small benchmark system
//! (`tests/manifests/bench.toml`, one CPU, `-icount shift=0`), whose guest
//! writes port 0x80 a thousand times, each write an exit forwarded to the
//! VID, and whose IPC client and server call each other a thousand times.

mod common;

use std::time::Duration;

use kerncore::trace::ExitKind;

const TIMEOUT_SECS: u64 = 120;

#[test]
fn qemu_trace_breaks_down_the_exits_of_a_small_system() {
    let name = "qemu_trace_breaks_down_the_exits_of_a_small_system";
    let manifest = common::manifest("bench.toml");
    let timeout = TIMEOUT_SECS.to_string();
    let args = ["trace", "--manifest", &manifest, "--smp", "1", "--timeout", &timeout];
    let run = common::run(name, &args, Duration::from_secs(TIMEOUT_SECS + 60));
    run.assert_exit_code(0);
    let Some(report) = tessera::trace::parse(&run.serial) else { run.fail("no complete trace report") };
    let detail = |kind: ExitKind, code: u64| {
        report.details.iter().find(|(k, d, _)| *k == kind && *d == code).map(|(_, _, c)| *c).unwrap_or_default()
    };
    // Each of the guest's port writes went to the VID and back.
    let port = detail(ExitKind::IoOut, 0x80);
    if port.count < 1000 || port.forwarded != port.count || port.handled == 0 || port.sent == 0 {
        run.fail(&format!("port 0x80: {port:?}"));
    }
    let reasons = tessera::trace::by_reason(&report);
    let host = reasons.iter().find(|(k, _)| *k == ExitKind::HostInterrupt).map(|(_, c)| *c).unwrap_or_default();
    if host.count == 0 || host.forwarded != 0 || host.handled == 0 {
        run.fail(&format!("host interrupts, handled in ring 0: {host:?}"));
    }
    // The benchmark's IPC round trips and the VID's replies to the exits.
    let calls = |name: &str| report.syscalls.iter().find(|(n, _)| abi::Sysnum(u64::from(*n)).name() == Some(name));
    if calls("CALL").is_none_or(|(_, n)| *n < 1000) || calls("REPLY_RECV").is_none_or(|(_, n)| *n < 2000) {
        run.fail(&format!("syscalls: {:?}", report.syscalls));
    }
    if report.records.is_empty() || report.switches.iter().all(|(_, n)| *n == 0) {
        run.fail("no events or no context switches");
    }
    // The runner's tables.
    let out = std::fs::read_to_string(run.dir.join("runner.out")).unwrap_or_default();
    for needle in ["Exits by reason, all partitions:", "io-out port 0x80", "host-interrupt", "Timeline: the last 40"] {
        if !out.contains(needle) {
            run.fail(&format!("the runner's output lacks {needle:?}:\n{out}"));
        }
    }
}
