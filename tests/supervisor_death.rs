//! The supervisor's death follows the boot-time policy (issue #15): the
//! manifest's `[system] on_supervisor_death`, which the bootfs header
//! carries to the kernel. In `tests/manifests/supervisor-death.toml` the
//! supervisor faults on purpose (ud2, its own `kill_every_ms`) 1500 ms after
//! its start while the console and the heartbeat run on CPU 1. The kernel
//! must stop both CPUs, report what died and then power off with status 4
//! ("halt") or reset the machine, which boots again ("reboot").
//!
//! QEMU only: the runner's `--reboots 1` lets QEMU start the machine again
//! once (it runs without `-no-reboot`) and ends the run at the second reset.

mod common;

use common::{Boot, Emulator, assert_in_order, boot, manifest, test_dir};

const TIMEOUT: u64 = 60;
const REPORT: &str = "kernel: the root task (supervisor) died: its thread ";
const FAULT: &str = "faulted with no handler: #UD (vector 6, error 0x0) at rip ";
const STOPPED: &str = "kernel: other CPUs stopped: 1 of 1 (NMI)";
const BANNER: &str = "Tessera v0.1.0 microkernel";

/// The serial lines from the `n`th report on (0: the first).
fn from_report(run: &Boot, n: usize) -> Vec<&str> {
    let at = run.serial.lines().enumerate().filter(|(_, l)| l.contains(REPORT)).nth(n);
    let Some((at, _)) = at else { run.fail(&format!("no report number {}", n + 1)) };
    run.serial.lines().skip(at).collect()
}

/// No task printed after the report (through the console or directly):
/// the other CPU was stopped, and the supervisor is dead.
#[track_caller]
fn quiet_after(run: &Boot, lines: &[&str]) {
    if let Some(line) = lines.iter().take_while(|l| !l.contains("tessera: ")).find(|l| l.starts_with('[')) {
        run.fail(&format!("a task printed after the report: {line:?}"));
    }
}

#[test]
fn qemu_supervisor_death_halts_the_machine() {
    let name = "qemu_supervisor_death_halts_the_machine";
    let m = manifest("supervisor-death.toml");
    let run = boot(name, Emulator::Qemu, TIMEOUT, &["--smp", "2", "--manifest", &m]);
    run.assert_serial_contains("task supervisor (root): ring 3, priority 31, entry ");
    assert_in_order(
        &run,
        &[
            "on its death: halt",
            "[heartbeat] beat 1",
            "[supervisor] fault injection: the supervisor faults on purpose (ud2)",
            REPORT,
            STOPPED,
            "kernel: nothing can restart the system; on_supervisor_death = \"halt\": powering off",
            "tessera: halted status=4",
        ],
    );
    run.assert_serial_contains(FAULT);
    quiet_after(&run, &from_report(&run, 0));
    run.assert_serial_lacks("KERNEL PANIC");
    run.assert_serial_lacks("tessera: reset");
    run.assert_halted(4);
    run.assert_exit_code(4);
}

#[test]
fn qemu_supervisor_death_reboots_the_machine() {
    let name = "qemu_supervisor_death_reboots_the_machine";
    let text = std::fs::read_to_string(manifest("supervisor-death.toml")).expect("read the manifest");
    let rebooting = text.replace("on_supervisor_death = \"halt\"", "on_supervisor_death = \"reboot\"");
    assert_ne!(text, rebooting, "the manifest names its policy");
    // Not in the test's own directory, which the boot empties.
    let m = test_dir(&format!("{name}-manifest")).join("supervisor-death-reboot.toml");
    std::fs::write(&m, rebooting).expect("write the manifest");
    let m = m.to_string_lossy();
    let run = boot(name, Emulator::Qemu, TIMEOUT, &["--smp", "2", "--reboots", "1", "--manifest", &m]);
    let reset = "kernel: nothing can restart the system; on_supervisor_death = \"reboot\": resetting the machine";
    // The machine went through the firmware and the loader again: a second
    // boot, whose supervisor died the same way, and the second reset ended
    // the run.
    let one_boot = [
        "tessera-loader v0.1.0",
        BANNER,
        "on its death: reboot",
        "[heartbeat] beat 1",
        REPORT,
        STOPPED,
        reset,
        "tessera: reset",
    ];
    assert_in_order(&run, &[one_boot, one_boot].concat());
    run.assert_serial_contains(FAULT);
    quiet_after(&run, &from_report(&run, 0));
    quiet_after(&run, &from_report(&run, 1));
    run.assert_serial_lacks("tessera: halted");
    run.assert_serial_lacks("KERNEL PANIC");
    run.assert_exit_code(tessera::EXIT_RESET);
}
