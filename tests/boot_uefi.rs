//! Boot test on UEFI: QEMU (TCG, AMD SVM + NPT) with OVMF booting the GRUB
//! ISO from its CD-ROM (`tessera --firmware uefi`), the path a UEFI machine
//! takes with a USB stick. GRUB's x86_64-efi image loads the loader with
//! `multiboot2` and hands over in 32-bit protected mode with boot services
//! exited. Runs the real runner binary.

mod common;

use common::{Emulator, boot};

/// A boot takes about 5 s alone (OVMF start-up is most of it); tests run
/// in parallel on 2 cores, so the margin is wide.
const TIMEOUT_SECS: u64 = 90;

#[test]
fn qemu_uefi_boot_iso() {
    let run = boot("qemu_uefi_boot_iso", Emulator::Qemu, TIMEOUT_SECS, &["--firmware", "uefi", "--smp", "2"]);
    // The runner really started OVMF with the ISO, not -kernel.
    let qemu_line = run
        .runner_messages
        .lines()
        .find(|l| l.contains("$ qemu-system-x86_64"))
        .unwrap_or_else(|| run.fail("the runner did not echo the QEMU command"));
    if !qemu_line.contains(" -bios ") || !qemu_line.contains(" -cdrom ") {
        run.fail(&format!("QEMU was not started with -bios and -cdrom: {qemu_line}"));
    }
    run.assert_serial_contains("Tessera v0.1.0");
    run.assert_serial_contains("tessera-loader: Multiboot v2 from \"GRUB");
    // The kernel options travelled through grub.cfg.
    run.assert_serial_contains("command line \"exit=idle\"");
    run.assert_serial_contains("virt: AMD SVM with NPT");
    run.assert_serial_contains("cpus: 2 in MADT");
    run.assert_serial_contains("acpi: RSDP at");
    run.assert_wx_clean();
    run.assert_serial_contains("boot: done");
    run.assert_serial_lacks("EXCEPTION:");
    run.assert_halted(0);
    run.assert_exit_code(0);
}
