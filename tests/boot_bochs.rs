//! Boot tests in Bochs (Intel VMX + EPT, booted from a GRUB ISO). Each runs
//! the real runner binary, which SIGKILLs Bochs at the deadline.

mod common;

use common::{Emulator, boot};

/// Bochs emulates at ~80 MIPS; a boot takes seconds, the margin is wide.
const TIMEOUT_SECS: u64 = 120;

#[test]
fn bochs_boot_banner() {
    let run = boot("bochs_boot_banner", Emulator::Bochs, TIMEOUT_SECS, &[]);
    run.assert_serial_contains("Tessera v0.1.0");
    run.assert_serial_contains("virt: Intel VMX with EPT");
    // Bochs' Haswell has neither MD_CLEAR nor L1D_FLUSH (no microcode
    // updates), nor IBPB; it has SMEP but not SMAP or UMIP.
    run.assert_serial_contains(
        "mitigations: rsb fill on vm exit and task switch; ibpb: unavailable (CPUID enumerates no IBPB); \
         verw: needed, but CPUID enumerates no MD_CLEAR; l1d flush: needed, but CPUID enumerates no L1D_FLUSH",
    );
    run.assert_serial_lacks("cpu: warning: no SMEP");
    run.assert_serial_contains("cpu: warning: no SMAP: ");
    run.assert_serial_contains("cpus: 1 in MADT");
    run.assert_serial_contains("cpus: 1 online of 1 in MADT (APIC IDs 0 (boot))");
    run.assert_wx_clean();
    run.assert_serial_contains("boot: done");
    run.assert_serial_lacks("EXCEPTION:");
    run.assert_halted(0);
    run.assert_exit_code(0);
}
