//! The fidelity suite (issue #14): the test kernel's `tests=fidelity` in a
//! two-VP partition checks the virtual machine against the SDM, the APM and
//! the ACPI specification, one line per check, under QEMU (AMD SVM + NPT)
//! and Bochs (Intel VMX + EPT).

mod common;

use common::{Boot, Emulator, assert_in_order, boot, manifest};

const QEMU_TIMEOUT: u64 = 90;
const BOCHS_TIMEOUT: u64 = 240;

/// The fidelity group's tests, in the order the test kernel runs them.
const GROUP: [&str; 8] = [
    "fidelity-cpuid",
    "fidelity-msr",
    "fidelity-cr",
    "fidelity-apic",
    "fidelity-nmi",
    "fidelity-rtc",
    "fidelity-pm-timer",
    "fidelity-acpi",
];

fn fidelity_suite_passes(run: &Boot) {
    // The Multiboot command line starts with the kernel's file name
    // (Multiboot 0.6.96 3.3): its bootfs name.
    run.assert_serial_contains("[vid] fidelity: testkernel: command line \"guest0:image tests=fidelity cpus=2\"");
    for test in GROUP {
        run.assert_serial_contains(&format!("[vid] fidelity: testkernel: {test}: ok"));
    }
    run.assert_serial_lacks(": FAIL");
    run.assert_serial_contains(&format!("[vid] fidelity: testkernel: done: {} passed, 0 failed", GROUP.len()));
}

#[test]
fn qemu_fidelity_suite_passes() {
    let m = manifest("fidelity.toml");
    fidelity_suite_passes(&boot("qemu_fidelity_suite_passes", Emulator::Qemu, QEMU_TIMEOUT, &["--manifest", &m]));
}

#[test]
fn bochs_fidelity_suite_passes() {
    let m = manifest("fidelity.toml");
    fidelity_suite_passes(&boot("bochs_fidelity_suite_passes", Emulator::Bochs, BOCHS_TIMEOUT, &["--manifest", &m]));
}

/// The resets `tests=fidelity-reset` makes, in boot order, as the VID names them.
const RESET_SOURCES: [&str; 5] =
    ["port 0xCF9", "the keyboard controller", "the ACPI reset register", "HV_X64_MSR_RESET", "a triple fault"];

/// `tests/manifests/fidelity-reset.toml`: partition `rebooter` resets by
/// each source in turn and restarts each time (boot counter in CMOS RAM);
/// `stopper`, whose policy is "stop", resets once and ends.
fn every_reset_source_restarts_the_partition(run: &Boot) {
    let mut expected = Vec::new();
    for (n, by) in RESET_SOURCES.iter().enumerate() {
        expected.push(format!("[vid] rebooter: testkernel: fidelity-reset: resetting by {by}"));
        expected.push(format!("[vid] rebooter: reset by {by}; restarting ({})", n + 1));
        expected.push(format!("[vid] rebooter: testkernel: fidelity-reset: boot {}", n + 2));
    }
    expected.push("[vid] rebooter: testkernel: fidelity: came back after 5 resets, one by each source: ok".into());
    expected.push("[vid] rebooter: testkernel: fidelity-reset: ok".into());
    expected.push("[vid] rebooter: guest reported status 1".into());
    assert_in_order(run, &expected.iter().map(String::as_str).collect::<Vec<_>>());
    run.assert_serial_lacks("[vid] rebooter: testkernel: fidelity: guest RAM is cleared at a restart (the VID loads the guest again over zeroed RAM): FAIL");
    run.assert_serial_lacks(": FAIL");
    assert_in_order(
        run,
        &[
            "[vid] stopper: testkernel: fidelity-reset: resetting by port 0xCF9; the partition must end",
            "[vid] stopper: guest reset by port 0xCF9 at rip",
        ],
    );
    run.assert_serial_lacks("[vid] stopper: reset by");
}

#[test]
fn qemu_every_reset_source_restarts_the_partition() {
    let m = manifest("fidelity-reset.toml");
    let name = "qemu_every_reset_source_restarts_the_partition";
    every_reset_source_restarts_the_partition(&boot(name, Emulator::Qemu, QEMU_TIMEOUT, &["--manifest", &m]));
}

#[test]
fn bochs_every_reset_source_restarts_the_partition() {
    let m = manifest("fidelity-reset.toml");
    let name = "bochs_every_reset_source_restarts_the_partition";
    every_reset_source_restarts_the_partition(&boot(name, Emulator::Bochs, BOCHS_TIMEOUT, &["--manifest", &m]));
}
