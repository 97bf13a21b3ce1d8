//! Services that die and come back (issue #15): fault injection
//! (`kill_every_ms`, `kill_limit` in `tests/manifests/recovery.toml`) kills
//! the console five times, the scheduler six times and the broker four
//! times while a two-VP partition runs a guest test suite through them.
//! The supervisor restarts each (a healthy run starts its back-off
//! afresh), the scheduler applies its policy again at its starts, the
//! broker hears of the partition again, the console's output resumes with
//! every task's name, and the guest finishes its suite. The kills overlap:
//! the scheduler starts again while the console is down, when the
//! supervisor must not wait on a server it has to restart (it did: the
//! system stopped there).

mod common;

use common::{Boot, Emulator, boot, manifest};

const QEMU_TIMEOUT: u64 = 90;
const CONSOLE_KILLS: usize = 5;
const SCHEDULER_KILLS: usize = 6;
const BROKER_KILLS: usize = 4;

fn lines_with<'a>(run: &'a Boot, needle: &'a str) -> impl Iterator<Item = (usize, &'a str)> + 'a {
    run.serial.lines().enumerate().filter(move |(_, l)| l.contains(needle))
}

fn count(run: &Boot, needle: &str) -> usize {
    lines_with(run, needle).count()
}

/// Occurrences of `needle` in what the services' console wrote: the
/// serial output with the supervisor's lines taken out. The supervisor
/// writes COM1 itself, so its line can land inside one the console was
/// writing (seen once: "[partition-manager] restarted: 1 partition recov"
/// + two supervisor lines + "ered from the journal ...").
fn count_from_console(run: &Boot, needle: &str) -> usize {
    let (mut text, mut rest) = (String::with_capacity(run.serial.len()), run.serial.as_str());
    while let Some(at) = rest.find("[supervisor] ") {
        text.push_str(&rest[..at]);
        rest = rest[at..].split_once('\n').map_or("", |(_, after)| after);
    }
    text.push_str(rest);
    text.matches(needle).count()
}

fn killed_and_restarted(run: &Boot, task: &str, kills: usize) {
    for kill in 1..=kills {
        run.assert_serial_contains(&format!("[supervisor] fault injection: killing {task} after "));
        run.assert_serial_contains(&format!("(kill {kill})"));
    }
    let killed = count(run, &format!("fault injection: killing {task} "));
    let started = count(run, &format!("[supervisor] started {task}: ring 3"));
    if killed != kills || started != kills + 1 {
        run.fail(&format!("{task}: {killed} kills and {started} starts, expected {kills} and {}", kills + 1));
    }
}

#[test]
fn qemu_killed_services_come_back_and_the_guest_runs_on() {
    let m = manifest("recovery.toml");
    let run =
        boot("qemu_killed_services_come_back_and_the_guest_runs_on", Emulator::Qemu, QEMU_TIMEOUT, &["--manifest", &m]);
    killed_and_restarted(&run, "console", CONSOLE_KILLS);
    killed_and_restarted(&run, "scheduler", SCHEDULER_KILLS);
    killed_and_restarted(&run, "broker", BROKER_KILLS);
    // At least once the scheduler started while the console was down.
    let console_kills: Vec<usize> = lines_with(&run, "fault injection: killing console ").map(|(i, _)| i).collect();
    let console_starts: Vec<usize> = lines_with(&run, "[supervisor] started console: ").map(|(i, _)| i).collect();
    let overlapped = lines_with(&run, "[supervisor] started scheduler: ").any(|(s, _)| {
        console_kills.iter().any(|&k| k < s && console_starts.iter().find(|&&c| c > k).is_none_or(|&c| c > s))
    });
    if !overlapped {
        run.fail("the scheduler never started while the console was down: the overlap was not exercised");
    }
    // Output resumes, named, after the console's last start: the guest's,
    // and a scheduler started again applying its policy. (Lines a killed
    // console was printing are lost; ones sent while it was down come out
    // when it is back, some before their task is named again.)
    let last_start = *console_starts.last().expect("the console started");
    let after: Vec<&str> = run.serial.lines().skip(last_start + 1).collect();
    if !after.iter().any(|l| l.starts_with("[vid] guest: ")) {
        run.fail("no named line of the guest's after the console's last start");
    }
    if !after.iter().any(|l| l.starts_with("[scheduler] policy applied to ")) {
        run.fail("no scheduler started after the console's last start applied its policy");
    }
    run.assert_serial_contains("[vid] guest: testkernel: done: 8 passed, 0 failed");
    // Another VID's partition ran its suite across the kills, never reset.
    run.assert_serial_contains("other: testkernel: done: 6 passed, 0 failed");
    run.assert_serial_lacks("other: reset");
    run.assert_serial_lacks("keeps crashing");
    run.assert_serial_lacks("faulted");
    run.assert_serial_lacks("[supervisor] cannot");
    // The broker, started again while the console was down (its first line
    // waits for the console), held no one up; it heard of the partition.
    run.assert_serial_lacks("to the broker:");
    run.assert_halted(0);
}

/// The partition manager killed twice while three partitions of three VIDs
/// run (`recovery-pm.toml`): each new instance gets the capabilities the
/// last one made back in the same slots and reads its table from its
/// journal; the partitions run on untouched, their VIDs finalize them
/// through the new instance when their suites end, and it is their VPs'
/// monitor again (gamma's VID, killed for good after the restarts, leaves
/// gamma's VP stopped and reported by the new instance).
#[test]
fn qemu_a_killed_partition_manager_recovers_its_partitions() {
    let m = manifest("recovery-pm.toml");
    let run = boot(
        "qemu_a_killed_partition_manager_recovers_its_partitions",
        Emulator::Qemu,
        QEMU_TIMEOUT,
        &["--manifest", &m],
    );
    killed_and_restarted(&run, "partition-manager", 2);
    // Each kill: the capabilities kept, then all three partitions recovered.
    let kills: Vec<usize> = lines_with(&run, "fault injection: killing partition-manager ").map(|(i, _)| i).collect();
    for (n, &kill) in kills.iter().enumerate() {
        let next = kills.get(n + 1).copied().unwrap_or(usize::MAX);
        let within = |needle: &str| lines_with(&run, needle).any(|(i, _)| i > kill && i < next);
        if !within("[supervisor] partition-manager: kept ")
            || !within("[partition-manager] restarted: 3 partitions recovered from the journal (0 dropped, ")
        {
            run.fail(&format!("kill {}: no kept capabilities and recovery of all three partitions after it", n + 1));
        }
    }
    if count_from_console(&run, "[partition-manager] restarted: 3 partitions recovered from the journal") != 2 {
        run.fail("expected two recoveries of all three partitions");
    }
    let last_start = lines_with(&run, "[supervisor] started partition-manager: ").map(|(i, _)| i).last();
    let after = |needle: &str| lines_with(&run, needle).any(|(i, _)| Some(i) > last_start);
    for line in [
        "[vid] alpha: testkernel: done: 6 passed, 0 failed",
        "[vid] alpha: partition 1 is Finalized at the partition manager",
        "[vid-b] beta: testkernel: done: 6 passed, 0 failed",
        "[vid-b] beta: partition 2 is Finalized at the partition manager",
        "[supervisor] fault injection: killing vid-c after ",
        "[partition-manager] partition gamma: VP 0 stopped: ",
    ] {
        if !after(line) {
            run.fail(&format!("not after the partition manager's last start: {line}"));
        }
    }
    run.assert_serial_lacks("cannot create the partition");
    run.assert_serial_lacks("could not be returned");
    run.assert_serial_lacks("did not finalize");
    run.assert_serial_lacks("[supervisor] partition-manager faulted");
    run.assert_halted(0);
}

/// The kernel's free memory and the supervisor's pool as the supervisor
/// reports them (`label`: which report).
fn memory_report(run: &Boot, label: &str) -> (u64, u64) {
    const REPORT: &str = "[supervisor] kernel memory: ";
    let line = run
        .serial
        .lines()
        .find(|l| l.contains(REPORT) && l.contains(label))
        .unwrap_or_else(|| run.fail(&format!("no memory report {label}")));
    // From the report on: the supervisor writes COM1 itself, and its line
    // may land inside a console line that carries numbers of its own.
    let report = &line[line.find(REPORT).unwrap_or(0)..];
    let numbers: Vec<u64> = report.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    match numbers[..] {
        [free, left, ..] => (free, left),
        _ => run.fail(&format!("a memory report without its figures: {line}")),
    }
}

/// One hundred kills and restarts each of the console, the scheduler, the
/// partition manager, the broker and the VID (`recovery-churn.toml`): the
/// kernel's free memory and the supervisor's pool after the last restart
/// are within 32 pages (`PHASE_SLACK`) of where they were after the first (issue
/// #15, acceptance 5); each VID instance took its partition back and
/// restarted it, and the last saw its suite through.
#[test]
fn qemu_a_hundred_restarts_of_each_service_leak_nothing() {
    const KILLS: usize = 100;
    // Each reading is taken right after a restart, and may catch the VID
    // before it has rebuilt its partition's second-level tables and VP
    // state (a CI run: 16 pages of the kernel's memory and 11 of the pool,
    // the 16 MiB guest's 11 tables, with the guest not yet entered; equal
    // readings once it ran). 32 pages stays far below the least leak the
    // test must catch: a page at each restart of any one service is 99
    // pages between the two readings.
    const PHASE_SLACK: u64 = 32 * 4096;
    let m = manifest("recovery-churn.toml");
    let run = boot("qemu_a_hundred_restarts_of_each_service_leak_nothing", Emulator::Qemu, 400, &["--manifest", &m]);
    for service in ["console", "scheduler", "partition-manager", "broker", "vid"] {
        killed_and_restarted(&run, service, KILLS);
    }
    // (Without the task's prefix: a line the console printed before it
    // named the manager again carries its badge.)
    if count_from_console(&run, "restarted: 1 partition recovered from the journal (0 dropped") != KILLS {
        run.fail("the partition manager did not recover its partition at each of its restarts");
    }
    let first = memory_report(&run, "(after the first restart of every task killed)");
    let last = memory_report(&run, "(after the last)");
    println!("kernel memory free, supervisor's pool: after the first restarts {first:?}, after the last {last:?}");
    if first.0.abs_diff(last.0) > PHASE_SLACK || first.1.abs_diff(last.1) > PHASE_SLACK {
        run.fail(&format!("memory moved by more than {PHASE_SLACK} bytes: {first:?} -> {last:?}"));
    }
    // (A line the console printed while the VID was not yet named again
    // carries its badge.)
    let restarts = count_from_console(&run, "guest: reset by VID restart; restarting");
    if restarts != KILLS {
        run.fail(&format!("{restarts} of the {KILLS} VID instances took their partition back and restarted it"));
    }
    run.assert_serial_contains("guest: testkernel: done: 7 passed, 0 failed");
    run.assert_serial_lacks("keeps crashing");
    run.assert_serial_lacks("faulted");
    run.assert_serial_lacks("[supervisor] cannot");
    run.assert_halted(0);
}

/// The index of the first serial line containing `needle`, failing without one.
#[track_caller]
fn first(run: &Boot, needle: &str) -> usize {
    match lines_with(run, needle).next() {
        Some((i, _)) => i,
        None => run.fail(&format!("no line contains {needle:?}")),
    }
}

/// A VID that dies (issue #15, `tests/manifests/recovery-vid.toml`):
/// vid-a is killed once while its partitions run their suites. The
/// partition manager reports the stop; the new instance takes both back:
/// `a` (`on_reset = "restart"`) restarts from power-on and runs its whole
/// suite again, `a-stop` (`on_reset = "stop"`) stays stopped. vid-b's
/// partition runs on across it and finishes its suite, never stopped or
/// reset.
#[test]
fn qemu_a_killed_vid_takes_its_partitions_back_and_the_other_vid_runs_on() {
    let m = manifest("recovery-vid.toml");
    let name = "qemu_a_killed_vid_takes_its_partitions_back_and_the_other_vid_runs_on";
    // Guest time by instruction count (`-icount shift=auto`), not the
    // host's clock: a's exit limit is 50 ms, and a host that stalls QEMU
    // that long while vid-a is still alive (CI, two cores, two QEMUs)
    // stopped a before the kill, with nothing of the product at fault.
    let icount = ["--qemu-arg=-icount", "--qemu-arg=shift=auto"];
    let run = boot(name, Emulator::Qemu, QEMU_TIMEOUT, &["--manifest", &m, icount[0], icount[1]]);
    let kill = first(&run, "[supervisor] fault injection: killing vid-a after ");
    killed_and_restarted(&run, "vid-a", 1);
    let done = "testkernel: done: 7 passed, 0 failed";
    let done_b = done;
    // Mid-run: neither of vid-a's suites had ended.
    for p in ["a", "a-stop"] {
        if lines_with(&run, &format!("[vid-a] {p}: testkernel: done:")).any(|(i, _)| i < kill) {
            run.fail(&format!("{p} finished its suite before vid-a was killed: nothing was interrupted"));
        }
    }
    // The stop is reported by the partition manager and by the new
    // instance. a's exit time limit is short: its VP's monitor stops it
    // before vid-a is back. a-stop's is not: whether its monitor stopped
    // it (its exit was with vid-a when it died) or the new instance found
    // it still running depends on where the kill fell.
    let reported = [
        ("a", "[partition-manager] partition a: VP 0 stopped: its VID "),
        ("a", "[partition-manager] partition a: attached again after its VID was gone; its VPs are back at power-on"),
        ("a", "[vid-a] a: stopped because its VID died: its VPs' monitor stopped it"),
        ("a-stop", "[vid-a] a-stop: stopped because its VID died: "),
    ];
    for (p, line) in reported {
        if first(&run, line) < kill {
            run.fail(&format!("{p}: stopped before vid-a was killed"));
        }
    }
    let a_stop = lines_with(&run, "[partition-manager] partition a-stop: ").filter(|&(i, _)| i > kill);
    if !a_stop
        .map(|(_, l)| l)
        .any(|l| l.contains(": VP 0 stopped: its VID ") || l.contains(": stopped: its VID is gone"))
    {
        run.fail("the partition manager never reported a-stop stopped");
    }
    // a restarts from scratch and runs its whole suite again.
    let restart = first(&run, "[vid-a] a: reset by VID restart; restarting (1)");
    let finished = first(&run, &format!("[vid-a] a: {done}"));
    if finished < restart {
        run.fail("a's suite ended before its restart, and not after");
    }
    // a-stop stays stopped and finalized.
    first(&run, "[vid-a] a-stop: stopped by its VID's restart; left stopped (on_reset = \"stop\")");
    first(&run, "[vid-a] a-stop: partition 2 is Finalized at the partition manager");
    run.assert_serial_lacks("[vid-a] a-stop: testkernel: done:");
    run.assert_serial_lacks("a-stop: reset by");
    // b runs on across the kill, untouched, and finishes its suite.
    if first(&run, &format!("[vid-b] b: {done_b}")) < kill {
        run.fail("b finished before vid-a was killed: it did not run on across the kill");
    }
    run.assert_serial_lacks("[vid-b] b: reset by");
    run.assert_serial_lacks("[vid-b] b: stopped");
    run.assert_serial_lacks("partition b: ");
    run.assert_serial_lacks("keeps crashing");
    run.assert_serial_lacks("faulted");
    run.assert_serial_lacks("EXCEPTION");
    run.assert_halted(0);
}

/// The broker killed while three partitions of two VIDs boot
/// (`recovery-broker.toml`): it comes back with the manifest's ports and
/// connections, and the partitions' messaging suites, which run after its
/// restart, pass whole (posts, events, monitored notifications, refusals).
#[test]
fn qemu_a_killed_broker_comes_back_with_its_ports_and_connections() {
    let m = manifest("recovery-broker.toml");
    let run = boot(
        "qemu_a_killed_broker_comes_back_with_its_ports_and_connections",
        Emulator::Qemu,
        QEMU_TIMEOUT,
        &["--manifest", &m],
    );
    killed_and_restarted(&run, "broker", 1);
    let restarted = lines_with(&run, "[supervisor] started broker: ").map(|(i, _)| i).last();
    let first_message = first(&run, "testkernel: messaging: ");
    if restarted.is_none_or(|r| r > first_message) {
        run.fail("the messaging suites began before the broker started again: the kill came too late");
    }
    for (vid, partition) in [("vid", "alpha"), ("vid", "beta"), ("vid-gamma", "gamma")] {
        run.assert_serial_contains(&format!("[{vid}] {partition}: testkernel: messaging: ok"));
        run.assert_serial_contains(&format!("[{vid}] {partition}: testkernel: done: 3 passed, 0 failed"));
    }
    run.assert_serial_lacks("cannot declare");
    run.assert_serial_lacks("faulted");
    run.assert_halted(0);
}
