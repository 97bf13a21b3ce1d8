//! Capacity that matches the manifest (issue #15): a manifest at the
//! tool's maximum starts every task. `tests/manifests/capacity-max.toml`
//! has the most tasks, endpoints, partitions and untyped pools, and tasks
//! with the most capabilities one task may hold; the supervisor must start
//! each (its slots and per-task tables are derived from the manifest's
//! limits), restart the crashing ones at the limits, and the partitions
//! must all run.

mod common;

use common::{Boot, Emulator, boot, manifest};

const QEMU_TIMEOUT: u64 = 90;

/// The tasks of the manifest besides the supervisor, in start order.
const TASKS: [&str; 15] = [
    "console",
    "partition-manager",
    "vid",
    "vid2",
    "s1",
    "s2",
    "s3",
    "s4",
    "s5",
    "s6",
    "scheduler",
    "c1",
    "c2",
    "c3",
    "c4",
];

fn started_line<'a>(run: &'a Boot, task: &str) -> &'a str {
    run.assert_serial_contains(&format!("[supervisor] started {task}: ring 3"))
}

fn every_task_starts(run: &Boot) {
    run.assert_serial_contains("[supervisor] system \"capacity-max\": 16 tasks, 32 endpoints");
    for task in TASKS {
        started_line(run, task);
    }
    run.assert_serial_lacks("cannot start");
    run.assert_serial_lacks("OUT_OF_MEMORY");

    // The most capabilities: every grant is installed and listed.
    let scheduler = started_line(run, "scheduler");
    for task in &TASKS {
        if !scheduler.contains(&format!("sched:{task}(sched-context)")) {
            run.fail(&format!("the scheduler was started without sched:{task}: {scheduler}"));
        }
    }
    let c1 = started_line(run, "c1");
    for cap in ["io3(io-ports)", "untyped(untyped)", "irq(notification)", "irq7(interrupt)"] {
        if !c1.contains(cap) {
            run.fail(&format!("c1 was started without {cap}: {c1}"));
        }
    }
    run.assert_serial_contains("[supervisor] started c3: ring 3, priority 15, caps: console(endpoint)");
    run.assert_serial_contains("irq16(interrupt), irq17(interrupt), irq18(interrupt), irq19(interrupt), irq20(interrupt), irq21(interrupt), irq22(interrupt), irq23(interrupt)");

    // The crashers are restarted at the limits, each time in full, then
    // given up (which frees their interrupt lines, so the machine idles).
    for task in ["c1", "c2", "c3", "c4"] {
        let starts = run.serial.matches(&format!("[supervisor] started {task}: ring 3")).count();
        if starts != 6 {
            run.fail(&format!("{task} started {starts} times, not 1 + 5 restarts"));
        }
        run.assert_serial_contains(&format!("[supervisor] {task} keeps crashing: giving up after 5 restarts"));
    }

    // The partitions, four on each VID.
    for (vid, partitions) in [("vid", 0..4), ("vid2", 4..8)] {
        for p in partitions {
            run.assert_serial_contains(&format!("[{vid}] p{p}: testkernel: done: 1 passed, 0 failed"));
            run.assert_serial_contains(&format!("[{vid}] p{p}: guest reported status 1"));
        }
    }
    run.assert_serial_contains("[s1] beat 5");
    run.assert_halted(0);
}

#[test]
fn qemu_a_manifest_at_the_limits_starts_every_task() {
    let m = manifest("capacity-max.toml");
    every_task_starts(&boot(
        "qemu_a_manifest_at_the_limits_starts_every_task",
        Emulator::Qemu,
        QEMU_TIMEOUT,
        &["--manifest", &m],
    ));
}
