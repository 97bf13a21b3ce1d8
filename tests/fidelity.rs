//! The fidelity suite (issue #14): the test kernel's `tests=fidelity` in a
//! two-VP partition checks the virtual machine against the SDM, the APM and
//! the ACPI specification, one line per check, under QEMU (AMD SVM + NPT)
//! and Bochs (Intel VMX + EPT).

mod common;

use common::{Boot, Emulator, boot, manifest};

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
