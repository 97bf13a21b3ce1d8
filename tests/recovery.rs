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
    if count(&run, "[partition-manager] restarted: 3 partitions recovered from the journal") != 2 {
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
