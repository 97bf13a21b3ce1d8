//! Debian's Linux kernel with the busybox initramfs, booted directly in QEMU
//! TCG (no Tessera): `tessera linux direct`, the baseline the Tessera boot
//! of the same guest is compared with. The first run fetches the packages
//! with apt (see `tessera linux fetch`); later runs use the cache in
//! `target/linux/`. The boot takes 20–30 s of wall time on a busy 2-core machine.

mod common;

use std::fs::{self, File};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tessera::linux::{EXPECTED, MARKER};

/// The runner's own deadline for QEMU; this test kills the runner 120 s
/// later (the fetch may download about 70 MB first).
const TIMEOUT_SECS: u64 = 240;

#[test]
fn linux_direct_boots_to_a_shell_that_answers() {
    let name = "linux_direct_boots_to_a_shell_that_answers";
    let dir = common::test_dir(name);
    let serial_log = dir.join("serial.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.args(["linux", "direct", "--timeout", &TIMEOUT_SECS.to_string()])
        .arg("--serial-log")
        .arg(&serial_log)
        .env("TESSERA_WORK_DIR", dir.join("work"))
        .stdin(Stdio::null())
        .stdout(File::create(dir.join("runner.out")).expect("create runner.out"))
        .stderr(File::create(dir.join("runner.err")).expect("create runner.err"));
    eprintln!("[{name}] running {cmd:?}");
    let mut child = cmd.spawn().expect("start the tessera runner");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the runner") {
            break Some(status);
        }
        if start.elapsed() > Duration::from_secs(TIMEOUT_SECS + 120) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let run = common::Boot {
        test_name: name.to_owned(),
        code: status.and_then(|s| s.code()).unwrap_or(-1),
        serial: fs::read(&serial_log).map(|b| String::from_utf8_lossy(&b).replace('\r', "")).unwrap_or_default(),
        runner_messages: fs::read_to_string(dir.join("runner.err")).unwrap_or_default(),
        serial_log: serial_log.clone(),
        dir: dir.clone(),
    };
    if status.is_none() {
        run.fail("the runner did not finish in time; killed it");
    }
    run.assert_serial_contains("Linux version 6.1");
    run.assert_serial_contains(MARKER);
    let answer = run.assert_serial_contains(EXPECTED);
    if answer.trim() != EXPECTED {
        run.fail(&format!("the command's output line is {answer:?}, not just {EXPECTED:?}"));
    }
    run.assert_serial_contains("reboot: Power down");
    run.assert_serial_lacks("Kernel panic");
    run.assert_exit_code(0);
    if !run.runner_messages.contains("QEMU exited after") {
        run.fail("the runner did not report the wall time");
    }
    eprintln!("[{name}] {}", run.runner_messages.lines().find(|l| l.contains("QEMU exited after")).unwrap_or_default());
}
