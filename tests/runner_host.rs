//! Tests of the runner itself that need no emulator: its command line, the
//! supervision logic (driven by fake "emulators" written in sh) and the
//! `iso` subcommand, and the QEMU and gdb command lines of `--gdb`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use tessera::run::{Ending, SerialSource, Supervise, supervise};

fn opts(test: &str, deadline_ms: Option<u64>, grace_ms: u64) -> Supervise {
    Supervise {
        deadline: deadline_ms.map(Duration::from_millis),
        exit_grace: Duration::from_millis(grace_ms),
        resets_allowed: 0,
        reset_grace: Duration::from_millis(grace_ms),
        echo: false,
        serial_log: common::test_dir(test).join("serial.log"),
        progress: None,
    }
}

/// Run `script` under sh with its stdout as the serial pipe.
fn fake_pipe(script: &str, opts: &Supervise) -> tessera::run::Outcome {
    let mut child =
        Command::new("sh").args(["-c", script]).stdin(Stdio::null()).stdout(Stdio::piped()).spawn().expect("spawn sh");
    let out = child.stdout.take().unwrap();
    supervise(child, SerialSource::Pipe(Box::new(out)), opts).expect("supervise")
}

#[test]
fn host_help_explains_every_option() {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera")).arg("--help").output().expect("run tessera --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--emulator",
        "--timeout",
        "--smp",
        "--memory",
        "--cmdline",
        "--serial-log",
        "--qemu-arg",
        "--bochs-cpu",
        "--firmware",
        "--guest",
        "--guest-module",
        "--guest-cmdline",
        "--guest-memory",
        "--vcpus",
        "guest reported status",
        "exit=idle",
        "Ctrl-A X",
        "--reboots",
        "123",
        "124",
        "125",
        "test",
        "iso",
    ] {
        assert!(help.contains(needle), "--help does not mention {needle:?}:\n{help}");
    }
    for sub in ["test", "iso", "fuzz"] {
        let out = Command::new(env!("CARGO_BIN_EXE_tessera")).args([sub, "--help"]).output().unwrap();
        assert!(out.status.success(), "tessera {sub} --help failed");
    }
}

#[test]
fn host_rejects_bad_arguments() {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera")).args(["--emulator", "vmware"]).output().expect("run tessera");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn host_guest_options_need_a_guest() {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["--vcpus", "2", "--timeout", "5"])
        .output()
        .expect("run tessera");
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["--guest", "k", "--vcpus", "17"])
        .output()
        .expect("run tessera");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn host_guest_that_does_not_exist_is_reported_before_booting() {
    let dir = common::test_dir("host_guest_that_does_not_exist_is_reported_before_booting");
    let missing = dir.join("no-such-kernel");
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("--guest")
        .arg(&missing)
        .args(["--timeout", "5"])
        .env("TESSERA_WORK_DIR", dir.join("work"))
        .stdin(Stdio::null())
        .output()
        .expect("run tessera");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("partition \"guest\": image: cannot read"), "{stderr}");
    assert!(stderr.contains("no-such-kernel"), "{stderr}");
    // The generated manifest is kept for inspection.
    let images = dir.join("work/images");
    let generated = images.read_dir().unwrap().next().unwrap().unwrap().path().join("guest.toml");
    let text = std::fs::read_to_string(&generated).unwrap();
    assert!(text.contains("[partitions.guest]"), "{text}");
}

#[test]
fn host_rejects_uefi_with_bochs() {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["--emulator", "bochs", "--firmware", "uefi", "--timeout", "5"])
        .stdin(Stdio::null())
        .output()
        .expect("run tessera");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--firmware uefi needs --emulator qemu"), "{stderr}");
}

#[test]
fn host_marker_sets_the_status() {
    let o = opts("host_marker_sets_the_status", Some(20_000), 5_000);
    let outcome = fake_pipe(r"printf 'Tessera v0.1.0\r\ntessera: halted status=3\r\n'; exit 7", &o);
    assert_eq!(outcome.ending, Ending::Halted(3));
    assert_eq!(outcome.exit_code(), 3);
    assert!(!outcome.killed);
    let log = std::fs::read_to_string(&o.serial_log).unwrap();
    assert!(log.contains("Tessera v0.1.0\r\n"), "serial log is raw: {log:?}");
}

#[test]
fn host_deadline_kills_a_hung_emulator() {
    let o = opts("host_deadline_kills_a_hung_emulator", Some(500), 5_000);
    let outcome = fake_pipe("echo booting; exec sleep 60", &o);
    assert_eq!(outcome.ending, Ending::TimedOut);
    assert_eq!(outcome.exit_code(), tessera::EXIT_TIMEOUT);
    assert!(outcome.killed);
    assert!(outcome.elapsed < Duration::from_secs(10), "took {:?}", outcome.elapsed);
}

#[test]
fn host_emulator_stuck_after_marker_is_killed() {
    let o = opts("host_emulator_stuck_after_marker_is_killed", Some(60_000), 300);
    let outcome = fake_pipe("echo 'tessera: halted status=0'; exec sleep 60", &o);
    assert_eq!(outcome.ending, Ending::Halted(0));
    assert!(outcome.killed);
    assert!(outcome.elapsed < Duration::from_secs(10), "took {:?}", outcome.elapsed);
}

#[test]
fn host_a_reset_beyond_those_allowed_ends_the_run() {
    // QEMU with -no-reboot: the reset is an exit.
    let o = opts("host_reset_exits", Some(20_000), 5_000);
    let outcome = fake_pipe("echo 'tessera: reset'; exit 0", &o);
    assert_eq!(outcome.ending, Ending::Reset(1));
    assert_eq!(outcome.exit_code(), tessera::EXIT_RESET);
    assert!(!outcome.killed);
    // An emulator that starts the machine again: one reset allowed, the
    // second ends the run, without waiting for the deadline.
    let o =
        Supervise { resets_allowed: 1, reset_grace: Duration::ZERO, ..opts("host_reset_again", Some(20_000), 5_000) };
    let script =
        "echo 'Tessera'; echo 'tessera: reset'; echo 'Tessera'; echo 'tessera: reset'; echo 'Tessera'; exec sleep 60";
    let outcome = fake_pipe(script, &o);
    assert_eq!(outcome.ending, Ending::Reset(2));
    assert!(outcome.killed);
    assert!(outcome.elapsed < Duration::from_secs(10), "took {:?}", outcome.elapsed);
    // Only the kernel's own line counts.
    let o = opts("host_reset_quoted", Some(20_000), 5_000);
    let outcome = fake_pipe("echo '[task] tessera: reset requested'; exit 0", &o);
    assert_eq!(outcome.ending, Ending::NoMarker);
}

#[test]
fn host_exit_without_marker() {
    let o = opts("host_exit_without_marker", Some(20_000), 5_000);
    let outcome = fake_pipe("echo 'tessera: halted'; exit 0", &o);
    assert_eq!(outcome.ending, Ending::NoMarker);
    assert_eq!(outcome.exit_code(), tessera::EXIT_NO_MARKER);
}

#[test]
fn host_serial_file_is_followed() {
    let o = opts("host_serial_file_is_followed", Some(20_000), 5_000);
    let file = o.serial_log.with_file_name("serial.out");
    std::fs::write(&file, "").unwrap();
    let script = format!(
        "echo 'Tessera v0.1.0' >> '{f}'; sleep 0.3; printf 'tessera: halted status=1' >> '{f}'; exit 1",
        f = file.display()
    );
    let child = Command::new("sh").args(["-c", &script]).stdin(Stdio::null()).spawn().unwrap();
    let outcome = supervise(child, SerialSource::File(file), &o).expect("supervise");
    // The last line has no newline: it must still count.
    assert_eq!(outcome.ending, Ending::Halted(1));
    let log = std::fs::read_to_string(&o.serial_log).unwrap();
    assert_eq!(log, "Tessera v0.1.0\ntessera: halted status=1");
}

#[test]
fn host_iso_subcommand_writes_image() {
    let dir = common::test_dir("host_iso_subcommand_writes_image");
    let iso = dir.join("tessera.iso");
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["iso", "--cmdline", "test=fault-pf", "--out"])
        .arg(&iso)
        .env("TESSERA_WORK_DIR", dir.join("work"))
        .stdin(Stdio::null())
        .output()
        .expect("run tessera iso");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tessera iso failed:\n{stderr}");
    let size = std::fs::metadata(&iso).map(|m| m.len()).unwrap_or(0);
    assert!(size > 1 << 20, "ISO is missing or tiny ({size} bytes):\n{stderr}");
    let cfg = std::fs::read_to_string(
        dir.join("work/runs").read_dir().unwrap().next().unwrap().unwrap().path().join("grub.cfg"),
    )
    .expect("grub.cfg next to the staging tree");
    assert!(cfg.contains("multiboot2 /boot/tessera-loader.elf test=fault-pf\n"), "{cfg}");
    assert!(cfg.contains("module2 /boot/microkernel.elf microkernel\n"), "{cfg}");
}

/// `--gdb` with a fake `qemu-system-x86_64` first on PATH that records its
/// arguments and halts at once: QEMU gets the stub on the chosen port with
/// its CPUs stopped (`-S`), and the runner prints the `gdb` command with
/// the symbol files of the kernel, the loader and the task, then attaching.
#[test]
fn host_gdb_starts_the_stub_and_prints_the_gdb_command() {
    let dir = common::test_dir("host_gdb_starts_the_stub_and_prints_the_gdb_command");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let args_file = dir.join("qemu-args");
    let fake = bin.join("qemu-system-x86_64");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done > '{}'\necho 'tessera: halted status=0'\nexit 1\n",
            args_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let tessera = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
        cmd.env("PATH", &path).env("TESSERA_WORK_DIR", dir.join("work")).stdin(Stdio::null());
        cmd
    };

    let out = tessera().args(["--gdb", "4321", "--gdb-task", "vid", "--timeout", "20"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let qemu_args = std::fs::read_to_string(&args_file).unwrap();
    let qemu_args: Vec<&str> = qemu_args.lines().collect();
    let at = qemu_args.iter().position(|a| *a == "-gdb").unwrap_or_else(|| panic!("no -gdb: {qemu_args:?}"));
    assert_eq!(qemu_args[at..at + 3], ["-gdb", "tcp:127.0.0.1:4321", "-S"]);

    let gdb = stderr.lines().find(|l| l.starts_with("gdb ")).unwrap_or_else(|| panic!("no gdb command:\n{stderr}"));
    let tasks = tessera::images::task_dir();
    let kernel = tessera::images::kernel_elf();
    let expected = format!(
        "gdb -q -ex 'set confirm off' -ex 'set pagination off' -ex 'file {}' -ex 'add-symbol-file {}' \
         -ex 'add-symbol-file {}' -ex 'target remote 127.0.0.1:4321'",
        kernel.display(),
        tasks.join("tessera-loader").display(),
        tasks.join("vid").display()
    );
    assert_eq!(gdb, expected);
    for file in [kernel.to_path_buf(), tasks.join("tessera-loader"), tasks.join("vid")] {
        assert!(file.is_file(), "{} is not built", file.display());
    }

    // Bochs has no stub here, and a task must be one that was built.
    let out = tessera().args(["--emulator", "bochs", "--gdb", "--timeout", "5"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--gdb needs --emulator qemu"));
    let out = tessera().args(["--gdb", "--gdb-task", "no-such-task", "--timeout", "5"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no such task binary") && stderr.contains("supervisor"), "{stderr}");
}
