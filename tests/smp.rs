//! SMP bring-up: every CPU of the MADT is started, set up and schedules
//! (`arch::smp`, `trap::run_ap`), or is kept off with `cpus=1`.
//!
//! The `smp: cpu N online: APIC ID M (read by the CPU itself)` lines carry
//! what each AP found on itself: the APIC ID it read from its own local
//! APIC and whether it turned on SVM or VMX; the boot CPU only prints them.

mod common;

use common::{Emulator, assert_in_order, boot, manifest};

const QEMU_TIMEOUT: u64 = 90;
const BOCHS_TIMEOUT: u64 = 180;

/// QEMU (multi-threaded TCG: one host thread per emulated CPU, QEMU's
/// default for x86 on an x86 host) with 4 CPUs: all 4 come online, each AP
/// with its own APIC ID and SVM on, and the system runs on.
#[test]
fn qemu_every_cpu_comes_online() {
    let run = boot("qemu_every_cpu_comes_online", Emulator::Qemu, QEMU_TIMEOUT, &["--smp", "4"]);
    run.assert_serial_contains("cpus: 4 in MADT (APIC IDs 0 (boot), 1, 2, 3)");
    for cpu in 1..4 {
        run.assert_serial_contains(&format!(
            "smp: cpu {cpu} online: APIC ID {cpu} (read by the CPU itself), SVM on, machine checks on (10 banks)"
        ));
    }
    assert_in_order(
        &run,
        &[
            "timer: local APIC tick",
            "cpus: 4 online of 4 in MADT (APIC IDs 0 (boot), 1, 2, 3)",
            "boot: done",
            "[console] ready",
        ],
    );
    run.assert_serial_lacks("did not answer");
    run.assert_serial_lacks("EXCEPTION:");
    run.assert_halted(0);
    run.assert_exit_code(0);
}

/// `cpus=1` keeps the APs off: no AP starts, the banner says why.
#[test]
fn qemu_cpus_1_keeps_the_aps_off() {
    let run =
        boot("qemu_cpus_1_keeps_the_aps_off", Emulator::Qemu, QEMU_TIMEOUT, &["--smp", "4", "--cmdline", "cpus=1"]);
    run.assert_serial_contains(
        "cpus: 1 online of 4 in MADT (APIC IDs 0 (boot), 1 (off: cpus=), 2 (off: cpus=), 3 (off: cpus=))",
    );
    run.assert_serial_lacks("smp: cpu");
    run.assert_serial_lacks("ignoring unknown option");
    run.assert_halted(0);
}

/// `test=smp-silent-ap`: the first AP gets INIT but no STARTUP. The boot
/// CPU gives up on it after its timeout, reports it, stops it with INIT and
/// starts the others; boot goes on.
#[test]
fn qemu_an_ap_that_never_answers_is_skipped() {
    let run = boot(
        "qemu_an_ap_that_never_answers_is_skipped",
        Emulator::Qemu,
        QEMU_TIMEOUT,
        &["--smp", "4", "--cmdline", "test=smp-silent-ap"],
    );
    assert_in_order(
        &run,
        &[
            "smp: cpu 1 (APIC ID 1) did not answer within 2000 ms; skipped",
            "smp: cpu 2 online: APIC ID 2 (read by the CPU itself)",
            "smp: cpu 3 online: APIC ID 3 (read by the CPU itself)",
            "cpus: 3 online of 4 in MADT (APIC IDs 0 (boot), 1 (no answer), 2, 3)",
            "boot: done",
        ],
    );
    run.assert_serial_lacks("APIC ID 1 (read by the CPU itself)");
    run.assert_halted(0);
}

/// `test=lockup`: CPU 1 spins in ring 0 with interrupts off once it is
/// online. The boot CPU sees its heartbeat stop, says so, and CPU 1,
/// woken by an NMI, reports where it was (in the test's spin, called from
/// `run_ap`) before the machine stops: a hung CPU is reported, not silent.
#[test]
fn qemu_a_cpu_stuck_in_ring_0_is_reported() {
    let run = lockup_run("qemu_a_cpu_stuck_in_ring_0_is_reported", "test=lockup exit=never");
    assert_in_order(
        &run,
        &[
            "lockup test: cpu 1 will spin in ring 0 with interrupts off once it is online",
            "kernel: lockup: cpu 0 sees CPUs 0x2 (bit per CPU) take no timer interrupt for 10 s",
            "kernel: lockup: cpu 1 (APIC ID 1) was at rip=",
        ],
    );
    assert_reported_in_ring_0(&run);
}

/// `test=lockup-held`: CPU 1 hangs the same way holding the kernel lock,
/// so the boot CPU spins for the lock with interrupts off and takes no
/// timer interrupt either. The wait itself notices: the same holder kept
/// the lock 10 s, and the others (CPU 1) report where they are.
#[test]
fn qemu_a_cpu_stuck_holding_the_kernel_lock_is_reported() {
    let run = lockup_run("qemu_a_cpu_stuck_holding_the_kernel_lock_is_reported", "test=lockup-held exit=never");
    assert_in_order(
        &run,
        &[
            "lockup test: cpu 1 will spin in ring 0 with interrupts off holding the kernel lock once it is online",
            "kernel: lockup: cpu 0 waited 10 s for the kernel lock, held all along by one CPU",
            "kernel: lockup: cpu 1 (APIC ID 1) was at rip=",
        ],
    );
    assert_reported_in_ring_0(&run);
}

fn lockup_run(test: &str, cmdline: &str) -> common::Boot {
    boot(test, Emulator::Qemu, QEMU_TIMEOUT, &["--smp", "2", "--cmdline", cmdline])
}

fn assert_reported_in_ring_0(run: &common::Boot) {
    let report = run.assert_serial_contains("kernel: lockup: cpu 1 (APIC ID 1) was at rip=");
    let cs = report.rsplit("cs=").next().unwrap_or("");
    if !cs.starts_with("0x8") {
        run.fail(&format!("the stuck CPU was not reported in ring 0: {report}"));
    }
    run.assert_serial_contains("  backtrace: 0x");
    run.assert_serial_lacks("EXCEPTION");
    // `platform::ExitStatus::Panic`.
    run.assert_halted(1);
}

/// Bochs (Intel VMX) with 2 CPUs, lean: the AP comes online with VMX on
/// (its own VMXON region) and the minimal system runs to its end.
#[test]
fn bochs_every_cpu_comes_online() {
    let minimal = format!("{}/examples/minimal.toml", env!("CARGO_MANIFEST_DIR"));
    let run =
        boot("bochs_every_cpu_comes_online", Emulator::Bochs, BOCHS_TIMEOUT, &["--smp", "2", "--manifest", &minimal]);
    run.assert_serial_contains("smp: cpu 1 online: APIC ID 1 (read by the CPU itself), VMX on");
    run.assert_serial_contains("cpus: 2 online of 2 in MADT (APIC IDs 0 (boot), 1)");
    run.assert_serial_lacks("EXCEPTION:");
    run.assert_halted(0);
}

/// Four VPs of one partition on four CPUs (the VID puts VP i on CPU i):
/// the test kernel's APs start and check in, every CPU ran a VP, and the
/// kernel saw VPs in guest mode on several CPUs at the same time, and
/// tasks in user mode alongside.
#[test]
fn qemu_vps_and_threads_run_on_different_cpus_at_once() {
    let m = manifest("smp4.toml");
    let run = boot(
        "qemu_vps_and_threads_run_on_different_cpus_at_once",
        Emulator::Qemu,
        QEMU_TIMEOUT,
        &["--smp", "4", "--manifest", &m],
    );
    assert_in_order(
        &run,
        &[
            "cpus: 4 online of 4 in MADT",
            "[vid] smp4: 4 VPs; the application processors wait for INIT and SIPI",
            "[vid] smp4: testkernel: smp: 3 of 3 APs up",
            "[vid] smp4: testkernel: smp: ok",
            "kernel: every thread is blocked and nothing can wake one (exit=idle)",
        ],
    );
    run.assert_serial_lacks("stays on the boot CPU");
    for cpu in 0..4 {
        let (_, guest) = run.run_counters(cpu);
        if guest == 0 {
            run.fail(&format!("CPU {cpu} never entered guest mode: its VP did not run there"));
        }
    }
    let (user, _) = run.run_counters(0);
    if user == 0 {
        run.fail("the tasks never ran on the boot CPU");
    }
    let (outside, guests) = run.most_at_once();
    if guests < 2 || outside < 2 {
        run.fail(&format!("never two CPUs outside ring 0 at once ({outside}, {guests} in guest mode)"));
    }
    run.assert_serial_lacks("FAIL");
    run.assert_serial_lacks("EXCEPTION:");
    run.assert_halted(0);
}

/// Bochs (Intel VMX) with 2 CPUs and the two-VP test kernel: VP 1 runs on
/// CPU 1, so its VMCS is set up on CPU 0 (VP_CONFIGURE by the VID) and
/// moves: VMCLEAR there, VMPTRLD, host state rewritten and VMLAUNCH here.
#[test]
fn bochs_a_vp_moves_to_its_own_cpu() {
    let m = manifest("smp.toml");
    let run =
        boot("bochs_a_vp_moves_to_its_own_cpu", Emulator::Bochs, BOCHS_TIMEOUT, &["--smp", "2", "--manifest", &m]);
    assert_in_order(
        &run,
        &[
            "cpus: 2 online of 2 in MADT",
            "[vid] smp: testkernel: smp: AP 1 up",
            "[vid] smp: testkernel: smp: 1 of 1 APs up and 1 IPIs",
            "[vid] smp: testkernel: smp: ok",
        ],
    );
    if run.run_counters(1).1 == 0 {
        run.fail("VP 1 never entered guest mode on CPU 1");
    }
    run.assert_serial_lacks("FAIL");
    run.assert_serial_lacks("EXCEPTION:");
    run.assert_halted(0);
}

/// A task's manifest `cpu`: the supervisor puts the ipc-bench server's
/// scheduling context on CPU 1, which then serves every call of the
/// client on the boot CPU (1100 round trips: each a user entry there).
#[test]
fn qemu_a_task_runs_on_its_manifest_cpu() {
    let m = manifest("smp-ipc-bench.toml");
    let run =
        boot("qemu_a_task_runs_on_its_manifest_cpu", Emulator::Qemu, QEMU_TIMEOUT, &["--smp", "2", "--manifest", &m]);
    assert_in_order(
        &run,
        &[
            "cpus: 2 online of 2 in MADT",
            "[supervisor] bench-server runs on CPU 1",
            "[supervisor] started bench-server: ring 3, priority 20",
            "[bench-client-across] bench: ipc call+reply round trip across CPUs: ",
            "kernel: every thread is blocked and nothing can wake one (exit=idle)",
        ],
    );
    let (user, _) = run.run_counters(1);
    if user < 1100 {
        run.fail(&format!("CPU 1 entered user mode {user} times: the server did not serve there"));
    }
    run.assert_serial_lacks("stays on CPU 0");
    run.assert_halted(0);
}

/// On a machine without the manifest's CPU the task stays on the boot CPU:
/// the supervisor says so and the system runs as it would.
#[test]
fn qemu_a_task_whose_cpu_is_missing_stays_on_the_boot_cpu() {
    let m = manifest("smp-ipc-bench.toml");
    let run = boot(
        "qemu_a_task_whose_cpu_is_missing_stays_on_the_boot_cpu",
        Emulator::Qemu,
        QEMU_TIMEOUT,
        &["--smp", "1", "--manifest", &m],
    );
    assert_in_order(
        &run,
        &[
            "[supervisor] bench-server stays on CPU 0: it cannot go to CPU 1 (INVALID_ARGUMENT; CPUs online: 1)",
            "[supervisor] started bench-server: ring 3, priority 20",
            "[bench-client-across] bench: ipc call+reply round trip across CPUs: ",
        ],
    );
    run.assert_serial_lacks("runs on CPU 1");
    run.assert_halted(0);
}
