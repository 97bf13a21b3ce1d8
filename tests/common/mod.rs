//! Shared helpers for the emulator boot tests.
//!
//! [`boot`] runs the real `tessera` binary (always with `--timeout` and a
//! per-test `--serial-log`) and returns its exit code and the serial
//! console; [`run`] does the same for any subcommand. Every assertion helper on [`Boot`] panics with the tail of the
//! serial log and the runner's own messages, so a failure explains itself.
//!
//! Each test owns `target/tessera/test-runs/<test-name>/`: `serial.log`,
//! `runner.out` and `runner.err` (the runner's stdout and stderr) and
//! `work/` (the runner's run directories: ISO, bochsrc, bochs.log, ...).

#![allow(dead_code)] // Each test crate uses a different subset.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How many serial lines a failure message shows.
const TAIL_LINES: usize = 60;

/// The emulator a test boots in.
#[derive(Clone, Copy, Debug)]
pub enum Emulator {
    Qemu,
    Bochs,
}

impl Emulator {
    fn arg(self) -> &'static str {
        match self {
            Emulator::Qemu => "qemu",
            Emulator::Bochs => "bochs",
        }
    }
}

/// The path of `tests/manifests/<name>`.
pub fn manifest(name: &str) -> String {
    format!("{}/tests/manifests/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Asserts that lines containing each needle appear in this order.
#[track_caller]
pub fn assert_in_order(run: &Boot, needles: &[&str]) {
    let mut lines = run.serial.lines();
    for needle in needles {
        if !lines.by_ref().any(|line| line.contains(needle)) {
            run.fail(&format!("no line containing {needle:?} after the previous ones ({needles:?})"));
        }
    }
}

/// `target/tessera/test-runs/<test_name>/`, emptied.
pub fn test_dir(test_name: &str) -> PathBuf {
    // CARGO_TARGET_TMPDIR is `<target>/tmp` for integration tests.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("CARGO_TARGET_TMPDIR has a parent");
    let dir = target.join("tessera").join("test-runs").join(test_name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// One finished run of the runner.
pub struct Boot {
    pub test_name: String,
    /// The runner's exit code (-1 if it was killed by a signal).
    pub code: i32,
    /// The serial console as recorded by the runner (`\r` removed).
    pub serial: String,
    /// The runner's stderr: its own `[tessera]` messages.
    pub runner_messages: String,
    pub serial_log: PathBuf,
    pub dir: PathBuf,
}

/// Run `tessera --emulator <emulator> --timeout <timeout> <args>` (see [`run`]).
///
/// The runner enforces the deadline itself; as a last resort this helper
/// kills it 60 s after the deadline, so a test can never hang.
pub fn boot(test_name: &str, emulator: Emulator, timeout_secs: u64, args: &[&str]) -> Boot {
    let timeout = timeout_secs.to_string();
    let mut all = vec!["--emulator", emulator.arg(), "--timeout", &timeout];
    all.extend_from_slice(args);
    run(test_name, &all, Duration::from_secs(timeout_secs + 60))
}

/// Run `tessera <args> --serial-log <test dir>/serial.log` with the test's
/// own work directory and no stdin, killing it (and failing) if it has not
/// finished after `hard_limit`.
pub fn run(test_name: &str, args: &[&str], hard_limit: Duration) -> Boot {
    let dir = test_dir(test_name);
    let serial_log = dir.join("serial.log");
    let stdout = File::create(dir.join("runner.out")).expect("create runner.out");
    let stderr = File::create(dir.join("runner.err")).expect("create runner.err");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.args(args)
        .arg("--serial-log")
        .arg(&serial_log)
        .env("TESSERA_WORK_DIR", dir.join("work"))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    eprintln!("[{test_name}] running {cmd:?}");
    let mut child = cmd.spawn().expect("start the tessera runner");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the runner") {
            break status;
        }
        if start.elapsed() > hard_limit {
            let _ = child.kill();
            let _ = child.wait();
            let partial = read_boot(test_name, -1, &serial_log, &dir);
            partial.fail(&format!(
                "the runner itself did not finish within {} s (its own deadline and a margin); killed it",
                hard_limit.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let boot = read_boot(test_name, status.code().unwrap_or(-1), &serial_log, &dir);
    eprintln!(
        "[{test_name}] runner exited with {} after {:.1} s; serial log {}",
        boot.code,
        start.elapsed().as_secs_f64(),
        serial_log.display()
    );
    boot
}

fn read_boot(test_name: &str, code: i32, serial_log: &Path, dir: &Path) -> Boot {
    let serial = fs::read(serial_log).map(|b| String::from_utf8_lossy(&b).replace('\r', "")).unwrap_or_default();
    let runner_messages = fs::read_to_string(dir.join("runner.err")).unwrap_or_default();
    Boot {
        test_name: test_name.to_owned(),
        code,
        serial,
        runner_messages,
        serial_log: serial_log.to_path_buf(),
        dir: dir.to_path_buf(),
    }
}

impl Boot {
    /// Panic with `msg`, the tail of the serial log and the runner's messages.
    #[track_caller]
    pub fn fail(&self, msg: &str) -> ! {
        let lines: Vec<&str> = self.serial.lines().collect();
        let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
        panic!(
            "[{}] {msg}\n\
             runner exit code: {}\n\
             ---- last {} serial lines ({}) ----\n{}\n\
             ---- runner messages ----\n{}\
             ---- all files of this run: {} ----",
            self.test_name,
            self.code,
            tail.len(),
            self.serial_log.display(),
            tail.join("\n"),
            self.runner_messages,
            self.dir.display(),
        );
    }

    /// The serial line holding `needle`, if any.
    pub fn line_with(&self, needle: &str) -> Option<&str> {
        self.serial.lines().find(|l| l.contains(needle))
    }

    /// Assert that some serial line contains `needle`; returns that line.
    #[track_caller]
    pub fn assert_serial_contains(&self, needle: &str) -> &str {
        match self.line_with(needle) {
            Some(line) => line,
            None => self.fail(&format!("serial output has no line containing {needle:?}")),
        }
    }

    /// Assert that no serial line contains `needle`.
    #[track_caller]
    pub fn assert_serial_lacks(&self, needle: &str) {
        if let Some(line) = self.line_with(needle) {
            self.fail(&format!("serial output unexpectedly contains {needle:?}: {line:?}"));
        }
    }

    /// Assert the runner's exit code.
    #[track_caller]
    pub fn assert_exit_code(&self, expected: i32) {
        if self.code != expected {
            self.fail(&format!("expected runner exit code {expected}, got {}", self.code));
        }
    }

    /// Assert the W^X audit line reports zero writable+executable mappings.
    #[track_caller]
    pub fn assert_wx_clean(&self) {
        let line = self.assert_serial_contains("paging: W^X audit:");
        match count_before(line, " writable+executable") {
            Some(0) => {}
            Some(n) => self.fail(&format!("W^X audit found {n} writable+executable mappings: {line:?}")),
            None => self.fail(&format!("cannot read the W^X audit line: {line:?}")),
        }
    }

    /// Assert the kernel's final line is `tessera: halted status=<status>`.
    #[track_caller]
    pub fn assert_halted(&self, status: u8) {
        let expected = format!("tessera: halted status={status}");
        let last = self.serial.lines().rev().find(|l| l.contains("tessera: halted status="));
        match last {
            Some(line) if line.trim_end().ends_with(&expected) => {}
            Some(line) => self.fail(&format!("expected {expected:?}, found {line:?}")),
            None => self.fail(&format!("the kernel never printed {expected:?}")),
        }
    }

    /// The kernel's run counters for CPU `cpu` (`kernel: cpu N: U user
    /// entries, G guest entries`, printed at `exit=idle`), as (U, G).
    #[track_caller]
    pub fn run_counters(&self, cpu: u32) -> (u64, u64) {
        let line = self.assert_serial_contains(&format!("kernel: cpu {cpu}: "));
        match (count_before(line, " user entries"), count_before(line, " guest entries")) {
            (Some(user), Some(guest)) => (user, guest),
            _ => self.fail(&format!("no run counters in {line:?}")),
        }
    }

    /// The most CPUs the kernel saw outside ring 0 at once, and the most
    /// of them in guest mode.
    #[track_caller]
    pub fn most_at_once(&self) -> (u64, u64) {
        let line = self.assert_serial_contains("kernel: at most ");
        match (count_before(line, " CPUs ran threads at once"), count_before(line, " of them guests")) {
            (Some(outside), Some(guests)) => (outside, guests),
            _ => self.fail(&format!("no concurrency count in {line:?}")),
        }
    }

    /// The value after `key` (e.g. `error=`) on the first line holding it,
    /// parsed as hexadecimal with an optional `0x`.
    #[track_caller]
    pub fn hex_field(&self, key: &str) -> u64 {
        let line = self.assert_serial_contains(key);
        let start = line.find(key).unwrap() + key.len();
        let rest = line[start..].trim_start_matches("0x");
        let digits: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
        u64::from_str_radix(&digits, 16)
            .unwrap_or_else(|_| self.fail(&format!("{key} is not followed by a hex number: {line:?}")))
    }
}

/// The decimal number just before `suffix` in `line`.
pub fn count_before(line: &str, suffix: &str) -> Option<u64> {
    let head = &line[..line.find(suffix)?];
    let digits: String = head.chars().rev().take_while(char::is_ascii_digit).collect();
    digits.chars().rev().collect::<String>().parse().ok()
}
