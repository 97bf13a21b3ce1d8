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
