//! Boot tests in QEMU (TCG, AMD SVM + NPT). Each runs the real runner binary.

mod common;

use common::{Emulator, boot};

/// Generous: a boot takes seconds, but tests run in parallel on 2 cores.
const TIMEOUT_SECS: u64 = 90;

#[test]
fn qemu_boot_banner() {
    let run = boot("qemu_boot_banner", Emulator::Qemu, TIMEOUT_SECS, &["--smp", "2"]);
    run.assert_serial_contains("Tessera v0.1.0");
    run.assert_serial_contains("virt: AMD SVM with NPT");
    // qemu64 is an AMD CPU without IBPB, SMEP, SMAP or UMIP.
    run.assert_serial_contains(
        "mitigations: rsb fill on vm exit and task switch; ibpb: unavailable (CPUID enumerates no IBPB); \
         verw: not needed (AMD: no MDS); l1d flush: not needed (AMD: no L1TF)",
    );
    for missing in ["SMEP", "SMAP", "UMIP"] {
        run.assert_serial_contains(&format!("cpu: warning: no {missing}: "));
    }
    run.assert_serial_contains("cpus: 2 in MADT");
    run.assert_wx_clean();
    run.assert_serial_contains("timer: local APIC tick");
    run.assert_serial_contains("boot: done");
    run.assert_serial_lacks("EXCEPTION:");
    run.assert_halted(0);
    run.assert_exit_code(0);
}

/// `test=fault-pf`: a deliberate page fault on an unmapped address must
/// produce a full exception report and halt with status 2, never a hang.
#[test]
fn qemu_fault_page_fault() {
    let run = boot("qemu_fault_page_fault", Emulator::Qemu, TIMEOUT_SECS, &["--cmdline", "test=fault-pf"]);
    run.assert_serial_contains("Tessera v0.1.0");
    let headline = run.assert_serial_contains("EXCEPTION:");
    if !headline.contains("#PF") {
        run.fail(&format!("expected a #PF exception report, got {headline:?}"));
    }
    for field in ["error=", "rip=", "cr2=", "rax=", "r15="] {
        run.assert_serial_contains(field);
    }
    // Not-present fault: bit 0 (P) of the error code is clear.
    let error = run.hex_field("error=0x");
    if error & 1 != 0 {
        run.fail(&format!("a fault on an unmapped address must have P=0 in its error code, got {error:#x}"));
    }
    run.assert_halted(2);
    run.assert_exit_code(2);
}

/// `test=fault-wp`: a write to kernel text must fault as a protection
/// violation on write (error code bits P and W set) and halt with status 2.
#[test]
fn qemu_fault_write_kernel_text() {
    let run = boot("qemu_fault_write_kernel_text", Emulator::Qemu, TIMEOUT_SECS, &["--cmdline", "test=fault-wp"]);
    let headline = run.assert_serial_contains("EXCEPTION:");
    if !headline.contains("#PF") {
        run.fail(&format!("expected a #PF exception report, got {headline:?}"));
    }
    for field in ["rip=", "cr2=", "rax=", "r15="] {
        run.assert_serial_contains(field);
    }
    let error = run.hex_field("error=0x");
    if error & 0b11 != 0b11 {
        run.fail(&format!("expected a protection violation on write (error & 3 == 3), got error={error:#x}"));
    }
    run.assert_halted(2);
    run.assert_exit_code(2);
}

/// Sends `command` to QEMU's human monitor through the QMP socket at
/// `socket`, once the serial log at `serial` shows `ready`.
fn monitor_command_when(serial: std::path::PathBuf, ready: &'static str, socket: std::path::PathBuf, command: String) {
    use std::io::{BufRead, BufReader, Write};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(TIMEOUT_SECS);
    while !std::fs::read_to_string(&serial).is_ok_and(|s| s.contains(ready)) {
        if std::time::Instant::now() > deadline {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let stream = loop {
        match std::os::unix::net::UnixStream::connect(&socket) {
            Ok(stream) => break stream,
            Err(_) if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(20)),
            Err(_) => return,
        }
    };
    let mut reader = BufReader::new(stream.try_clone().expect("clone the QMP socket"));
    let mut writer = stream;
    let mut line = String::new();
    let mut send = |json: String| {
        let _ = writer.write_all(json.as_bytes());
        line.clear();
        let _ = reader.read_line(&mut line);
    };
    send(String::new()); // the greeting
    send("{\"execute\":\"qmp_capabilities\"}\n".into());
    send(format!("{{\"execute\":\"human-monitor-command\",\"arguments\":{{\"command-line\":\"{command}\"}}}}\n"));
}

/// A machine check in the host (QEMU's monitor command `mce` injects an
/// uncorrected error into bank 1 while the kernel runs) must end in a
/// report of the bank and a halt with status 2. Without CR4.MCE the CPU
/// shuts down instead (QEMU: triple fault) and nothing is reported.
#[test]
fn qemu_host_machine_check_halts_with_a_report() {
    const NAME: &str = "qemu_host_machine_check_halts_with_a_report";
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("a target directory");
    let serial = target.join("tessera").join("test-runs").join(NAME).join("serial.log");
    // The log of an earlier run must not look like this one's.
    let _ = std::fs::remove_file(&serial);
    let socket = std::env::temp_dir().join(format!("tessera-mce-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let qmp = format!("unix:{},server=on,wait=off", socket.display());
    // VAL | UC | EN, MCG_STATUS RIPV | MCIP: uncorrected, restartable.
    let inject = "mce 0 1 0xb000000000000000 0x5 0x1234000 0".to_string();
    let injector = std::thread::spawn({
        let socket = socket.clone();
        move || monitor_command_when(serial, "boot: done", socket, inject)
    });
    // A system without guests (QEMU TCG would hand a #MC that lands in a
    // guest straight to the guest's IDT, intercept or not), never idle.
    let minimal = format!("{}/examples/minimal.toml", env!("CARGO_MANIFEST_DIR"));
    let run = boot(
        NAME,
        Emulator::Qemu,
        TIMEOUT_SECS,
        &["--manifest", &minimal, "--cmdline", "exit=never", "--qemu-arg=-qmp", &format!("--qemu-arg={qmp}")],
    );
    let _ = injector.join();
    let _ = std::fs::remove_file(&socket);
    run.assert_serial_contains("mce: machine-check exceptions on, 10 banks reporting");
    let place = run.assert_serial_contains("mce: machine check in ring");
    if !place.contains("MCG_STATUS 0x5") {
        run.fail(&format!("the report does not give MCG_STATUS: {place}"));
    }
    run.assert_serial_contains("mce:   bank 1: status 0xb000000000000000, address 0x0");
    run.assert_serial_contains("mce: uncorrected error in the host: halting the machine");
    run.assert_halted(2);
}
