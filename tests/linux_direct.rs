//! Debian's Linux kernel with the busybox initramfs, booted directly in QEMU
//! TCG (no Tessera): `tessera linux direct`, the baseline the Tessera boot
//! of the same guest is compared with. The first run fetches the packages
//! with apt (see `tessera linux fetch`); later runs use the cache in
//! `target/linux/`. The boot takes 20–30 s of wall time on a busy 2-core machine.

mod common;

use std::time::Duration;

use tessera::linux::{EXPECTED, MARKER};

/// The runner's own deadline for QEMU; this test kills the runner 120 s
/// later (the fetch may download about 70 MB first).
const TIMEOUT_SECS: u64 = 240;

#[test]
fn linux_direct_boots_to_a_shell_that_answers() {
    let name = "linux_direct_boots_to_a_shell_that_answers";
    let timeout = TIMEOUT_SECS.to_string();
    let run = common::run(name, &["linux", "direct", "--timeout", &timeout], Duration::from_secs(TIMEOUT_SECS + 120));
    run.assert_serial_contains("Linux version 6.1");
    run.assert_serial_contains(MARKER);
    let answer = run.assert_serial_contains(EXPECTED);
    if answer.trim() != EXPECTED {
        run.fail(&format!("the command's output line is {answer:?}, not just {EXPECTED:?}"));
    }
    run.assert_serial_contains("reboot: Power down");
    run.assert_serial_lacks("Kernel panic");
    run.assert_exit_code(0);
    if !run.runner_messages.contains("exited after") {
        run.fail("the runner did not report the wall time");
    }
    eprintln!("[{name}] {}", run.runner_messages.lines().find(|l| l.contains("exited after")).unwrap_or_default());
}
