//! Debian's unmodified Linux kernel with the busybox initramfs, booted as
//! partition `guest` of Tessera in QEMU (TCG, AMD SVM + NPT): `tessera linux
//! tessera`. The runner types at the guest's shell through the VID's COM1
//! and the guest powers off through ACPI S5, which ends the system. The
//! first run fetches the packages with apt (see `tessera linux fetch`). The
//! boot takes 25–40 s of wall time on a busy 2-core machine.
//!
//! Every boot also checks the synthetic timer and VMBus: `/init` loads
//! `hv_vmbus`, which finds the DSDT's VMBus device and connects to the
//! system's `vmbus-host` (the newest version both know), and the boot CPU's
//! clock event device is STIMER0 (direct mode).

mod common;

use std::time::Duration;

use tessera::linux::{EXPECTED, HYPERV_CLOCKEVENT, MARKER, POWERED_OFF, REBOOT, nproc_answer};

/// The runner's own deadline; this test kills the runner 120 s later (the
/// fetch may download about 70 MB first).
const TIMEOUT_SECS: u64 = 240;

/// How the VID prefixes the guest's console lines.
const GUEST_PREFIX: &str = "[vid] guest: ";

#[test]
fn linux_under_tessera_boots_to_a_shell_that_answers() {
    let name = "linux_under_tessera_boots_to_a_shell_that_answers";
    let timeout = TIMEOUT_SECS.to_string();
    let run = common::run(name, &["linux", "tessera", "--timeout", &timeout], Duration::from_secs(TIMEOUT_SECS + 120));
    answers_and_powers_off(name, &run, 1, "exited after");
}

/// `reboot -f` at the shell resets the machine (Linux's default order:
/// the FADT's reset register first); the VID restarts the partition (the
/// default `on_reset`), Linux boots again, and the second boot's shell
/// answers before powering off.
#[test]
fn linux_under_tessera_reboots_and_its_shell_answers_again() {
    let name = "linux_under_tessera_reboots_and_its_shell_answers_again";
    let timeout = (2 * TIMEOUT_SECS).to_string();
    let args = ["linux", "tessera", "--reboot", "--timeout", &timeout];
    let run = common::run(name, &args, Duration::from_secs(2 * TIMEOUT_SECS + 120));
    common::assert_in_order(
        &run,
        &[
            MARKER,
            &format!("{GUEST_PREFIX}{EXPECTED}"),
            REBOOT,
            "[vid] guest: reset by ",
            MARKER,
            &format!("{GUEST_PREFIX}{EXPECTED}"),
        ],
    );
    run.assert_serial_contains("; restarting (1)");
    run.assert_serial_lacks("restarting (2)");
    answers_and_powers_off(name, &run, 1, "exited after");
}

/// Two VPs, on the two CPUs QEMU has: the BSP starts the AP with INIT-SIPI-SIPI
/// through the VID's local APIC, Linux brings both up, sends its IPIs by
/// hypercall, and `nproc` counts two.
#[test]
fn linux_with_two_vps_under_tessera_brings_both_up() {
    let name = "linux_with_two_vps_under_tessera_brings_both_up";
    let timeout = TIMEOUT_SECS.to_string();
    let args = ["linux", "tessera", "--vcpus", "2", "--timeout", &timeout];
    let run = common::run(name, &args, Duration::from_secs(TIMEOUT_SECS + 120));
    run.assert_serial_contains("smp: Brought up 1 node, 2 CPUs");
    run.assert_serial_contains("Hyper-V: Using IPI hypercalls");
    run.assert_serial_contains("VP 1 started by SIPI");
    answers_and_powers_off(name, &run, 2, "exited after");
    // QEMU has 2 CPUs: VP 1 ran on the second.
    if run.run_counters(1).1 == 0 {
        run.fail("VP 1 never entered guest mode on CPU 1");
    }
}

/// Bochs's run of the whole boot takes about ten minutes here.
const BOCHS_TIMEOUT_SECS: u64 = 1800;

/// The same boot under Bochs (Intel VMX with EPT). Its COM1 is an output
/// file, so nobody types: `/init` runs the command itself
/// (`tessera.selftest` on the kernel command line) and powers off.
#[test]
#[ignore = "Bochs takes about ten minutes: cargo test --release --test linux_tessera -- --ignored"]
fn linux_under_tessera_in_bochs_answers_and_powers_off() {
    let name = "linux_under_tessera_in_bochs_answers_and_powers_off";
    let timeout = BOCHS_TIMEOUT_SECS.to_string();
    let args = ["linux", "tessera", "--emulator", "bochs", "--timeout", &timeout];
    let run = common::run(name, &args, Duration::from_secs(BOCHS_TIMEOUT_SECS + 120));
    answers_and_powers_off(name, &run, 1, "exited after");
}

/// The same with two VPs under Bochs (Intel VMX), on two CPUs (`cpu:
/// count=2`): VP 1 runs on the second, so its VMCS moves between CPUs
/// (VMCLEAR on one, VMPTRLD on the other) whenever the VID reads it.
#[test]
#[ignore = "Bochs takes over ten minutes: cargo test --release --test linux_tessera -- --ignored"]
fn linux_with_two_vps_under_tessera_in_bochs_brings_both_up() {
    let name = "linux_with_two_vps_under_tessera_in_bochs_brings_both_up";
    let timeout = BOCHS_TIMEOUT_SECS.to_string();
    let args = ["linux", "tessera", "--emulator", "bochs", "--smp", "2", "--vcpus", "2", "--timeout", &timeout];
    let run = common::run(name, &args, Duration::from_secs(BOCHS_TIMEOUT_SECS + 120));
    run.assert_serial_contains("smp: Brought up 1 node, 2 CPUs");
    run.assert_serial_contains("Hyper-V: Using IPI hypercalls");
    answers_and_powers_off(name, &run, 2, "exited after");
    if run.run_counters(1).1 == 0 {
        run.fail("VP 1 never entered guest mode on CPU 1");
    }
}

fn answers_and_powers_off(name: &str, run: &common::Boot, vps: u8, summary_marker: &str) {
    // Linux found the Hyper-V interface Tessera offers, and uses it.
    run.assert_serial_contains("Hypervisor detected: Microsoft Hyper-V");
    run.assert_serial_contains("clocksource: Switched to clocksource hyperv_clocksource_tsc_page");
    run.assert_serial_contains("Hyper-V: Using hypercall for remote TLB flush");
    // CPUID offers x2APIC and the TSC-deadline timer, as the VID's local
    // APIC has them: Linux switches to x2APIC mode (its physical
    // destination mode, as on Hyper-V) and finds the deadline timer.
    run.assert_serial_contains("TSC deadline timer available");
    run.assert_serial_contains("x2apic enabled");
    run.assert_serial_contains("Switched APIC routing to physical x2apic");
    run.assert_serial_contains("Hyper-V: Using enlightened APIC (x2apic mode)");
    run.assert_serial_lacks("x2apic disabled");
    // hv_vmbus connected to the VMBus host at the newest version both
    // know, and asked for offers (none) before the shell came up.
    let v = vmbus_host::VERSIONS[0];
    run.assert_serial_contains(&format!("hv_vmbus: Vmbus version:{}.{}", v >> 16, v & 0xffff));
    run.assert_serial_contains(&format!(
        "[vmbus-host] port 0x1: InitiateContact for version {}.{}: accepted",
        v >> 16,
        v & 0xffff
    ));
    run.assert_serial_contains("[vmbus-host] port 0x1: RequestOffers: AllOffersDelivered (no channels)");
    run.assert_serial_lacks("insmod hv_vmbus.ko failed");
    run.assert_serial_contains(MARKER);
    // The synthetic timer (direct mode) is CPU 0's clock event device.
    // An answer starts or ends its line: a kernel message printed at the
    // same moment (say `hrtimer: interrupt took ...` under load) may share it.
    for answer in [EXPECTED, &nproc_answer(vps), HYPERV_CLOCKEVENT] {
        let answered = run.serial.lines().any(|l| {
            l.strip_prefix(GUEST_PREFIX)
                .is_some_and(|rest| rest.starts_with(answer) || rest.trim_end().ends_with(answer))
        });
        if !answered {
            run.fail(&format!("no serial line is {GUEST_PREFIX:?} then {answer:?} (at its start or end)"));
        }
    }
    run.assert_serial_contains(&format!("{GUEST_PREFIX}{POWERED_OFF}"));
    run.assert_serial_lacks("Kernel panic");
    run.assert_halted(0);
    run.assert_exit_code(0);
    let summary = run.runner_messages.lines().find(|l| l.contains(summary_marker));
    eprintln!("[{name}] {}", summary.unwrap_or_else(|| run.fail("the runner did not report the wall time")));
}
