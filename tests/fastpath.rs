//! The IPC fast path against the general path on real boots (ARCHITECTURE
//! §4.7): the same systems booted with the fast path (the default) and with
//! `ipc=slow` (every syscall on the general path) must print the same
//! results, and the fast path must have run in the first and not at all in
//! the second. The host tests of `kerncore::ipc::fast` compare the two
//! state machines after every step; these compare the kernels around them.

mod common;

use common::{Boot, Emulator, boot, manifest};

const QEMU_TIMEOUT: u64 = 90;

/// The kernel's count at exit=idle: (CALLs, REPLY_RECVs, VM exits) the
/// fast path took.
fn fast_path_taken(run: &Boot) -> (u64, u64, u64) {
    let line = run.assert_serial_contains("kernel: IPC fast path took ");
    let numbers: Vec<u64> =
        line.split(|c: char| !c.is_ascii_digit()).filter(|w| !w.is_empty()).filter_map(|w| w.parse().ok()).collect();
    match numbers[..] {
        [calls, replies, exits] => (calls, replies, exits),
        _ => run.fail(&format!("cannot read the fast path's count from `{line}`")),
    }
}

/// Lines of `run` that contain `marker`, in order.
fn lines_with<'a>(run: &'a Boot, marker: &str) -> Vec<&'a str> {
    run.serial.lines().filter(|l| l.contains(marker)).collect()
}

/// The hostile task's fast-path probes (wrong rights, a badged capability,
/// a kernel label, words past the registers, a capability without GRANT,
/// endpoints destroyed under a blocked caller and under the waiting
/// server) give the same line for line results both ways, every one `ok`.
#[test]
fn qemu_hostile_fast_path_probes_agree_with_the_slow_path() {
    let m = manifest("hostile.toml");
    let fast = boot("qemu_hostile_fast_path_probes_fast", Emulator::Qemu, QEMU_TIMEOUT, &["--manifest", &m]);
    let slow = boot(
        "qemu_hostile_fast_path_probes_slow",
        Emulator::Qemu,
        QEMU_TIMEOUT,
        &["--manifest", &m, "--cmdline", "ipc=slow"],
    );
    for run in [&fast, &slow] {
        run.assert_halted(0);
        run.assert_serial_lacks("FAIL");
    }
    let (probes_fast, probes_slow) =
        (lines_with(&fast, "[hostile] fast path:"), lines_with(&slow, "[hostile] fast path:"));
    if probes_fast.len() < 10 || probes_fast != probes_slow {
        fast.fail(&format!("the fast path's probes differ from the slow path's:\n{probes_fast:#?}\n{probes_slow:#?}"));
    }
    let (calls, replies, _) = fast_path_taken(&fast);
    if calls < 20 || replies < 20 {
        fast.fail(&format!("the fast path took only {calls} calls and {replies} reply-receives"));
    }
    if fast_path_taken(&slow) != (0, 0, 0) {
        slow.fail("the fast path ran with ipc=slow");
    }
}

/// The guest test suite (its VID's exits, the console, the supervisor) on
/// the general path alone: every fast path falls back to it, so it must
/// stay whole.
#[test]
fn qemu_guest_suite_on_the_slow_path() {
    let args = ["--guest", env!("TESSERA_GUEST_TEST_KERNEL"), "--guest-cmdline", "tests=all", "--cmdline", "ipc=slow"];
    let run = boot("qemu_guest_suite_on_the_slow_path", Emulator::Qemu, QEMU_TIMEOUT, &args);
    run.assert_serial_contains("[vid] guest: testkernel: cpuid: ok");
    run.assert_serial_lacks("FAIL");
    run.assert_halted(0);
    if fast_path_taken(&run) != (0, 0, 0) {
        run.fail("the fast path ran with ipc=slow");
    }
}

/// A call to a server on another CPU: the fast path declines (the peer is
/// not on this CPU) and the general path wakes it with an IPI, both ways.
#[test]
fn qemu_calls_across_cpus_take_the_general_path() {
    let m = manifest("smp-ipc-bench.toml");
    for (name, cmdline) in [("qemu_calls_across_cpus_fast", "bench"), ("qemu_calls_across_cpus_slow", "bench ipc=slow")]
    {
        let run = boot(name, Emulator::Qemu, QEMU_TIMEOUT, &["--manifest", &m, "--smp", "2", "--cmdline", cmdline]);
        run.assert_serial_contains("bench: ipc call+reply round trip across CPUs: ");
        run.assert_halted(0);
        // The server's first receive and the client's calls cross CPUs:
        // none of the benchmark's 1,100 round trips is a fast one.
        let (calls, _, _) = fast_path_taken(&run);
        if calls > 10 {
            run.fail(&format!("{calls} calls across CPUs took the fast path"));
        }
    }
}
