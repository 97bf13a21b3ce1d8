//! Ring-3 services under the capability kernel, in both emulators: the
//! default appliance's tasks start with their capabilities; a crash-looping
//! task is restarted with back-off while the rest keeps running. (The
//! hostile task has its own file, `hostile_task.rs`.)

mod common;

use common::{Boot, Emulator, assert_in_order, boot, count_before, manifest};

const QEMU_TIMEOUT: u64 = 60;
const BOCHS_TIMEOUT: u64 = 150;

fn default_appliance(run: &Boot) {
    run.assert_serial_contains("task supervisor (root): ring 3, priority 31");
    for cap in ["self", "untyped", "bootfs", "ioports", "thread", "sched"] {
        run.assert_serial_contains(&format!(" {cap:<12} "));
    }
    for (task, caps) in [
        ("console", "console(endpoint), io0(io-ports)"),
        ("scheduler", "sched:vid(sched-context)"),
        ("partition-manager", "partition-manager(endpoint), console(endpoint)"),
        ("vid", "vid(endpoint), console(endpoint), partition-manager(endpoint)"),
        ("broker", "broker(endpoint), console(endpoint), partition-manager(endpoint)"),
    ] {
        let line = run.assert_serial_contains(&format!("[supervisor] started {task}: ring 3"));
        if !line.contains(caps) {
            run.fail(&format!("{task} was started without {caps}: {line}"));
        }
        run.assert_serial_contains(&format!("[{task}] ready, serving {task}"));
    }
    run.assert_serial_lacks("faulted");
    run.assert_halted(0);
}

/// The VID's demo partition: a real-mode guest under AMD SVM with nested
/// paging, whose port I/O reaches the VID as TLFS intercept messages.
fn demo_partition_runs(run: &Boot) {
    assert_in_order(
        run,
        &[
            "[vid] demo: real-mode guest at 0x1000, 64 KiB of RAM; starting its VP",
            "[vid] demo: Hello from a Tessera partition",
            "[vid] demo: guest reported status 1 through port 0xf4 after 32 exits",
            "[vid] ready, serving vid",
        ],
    );
}

/// Tasks without an I/O-port capability execute `in`/`out` themselves:
/// every access faults with #GP (the TSS has no I/O permission bitmap) and
/// the machine runs on; none ends it through QEMU's exit port.
fn ports_need_a_capability(run: &Boot) {
    for (task, probe) in [
        ("hostile-port-in-20", "in from port 0x20"),
        ("hostile-port-in-64", "in from port 0x64"),
        ("hostile-port-in-71", "in from port 0x71"),
        ("hostile-port-out-f4", "out 0x2a to port 0xf4"),
    ] {
        assert_in_order(
            run,
            &[
                &format!("[{task}] {probe} without an I/O-port capability; this must fault"),
                &format!("[supervisor] {task} faulted: #GP general protection (vector 13, error 0x0)"),
            ],
        );
        run.assert_serial_contains(&format!("[supervisor] {task} is not restarted"));
    }
    run.assert_serial_lacks("FAIL");
    run.assert_serial_contains("[heartbeat] beat 5");
    run.assert_halted(0);
}

fn crash_loop_backs_off(run: &Boot) {
    assert_in_order(
        run,
        &[
            "[crasher] panicked at",
            "[supervisor] crasher faulted: #UD invalid opcode (vector 6",
            "[supervisor] restarting crasher in 10 ticks (restart 1)",
            "[supervisor] restarting crasher in 20 ticks (restart 2)",
            "[supervisor] restarting crasher in 40 ticks (restart 3)",
            "[supervisor] restarting crasher in 80 ticks (restart 4)",
            "[supervisor] restarting crasher in 160 ticks (restart 5)",
            "[supervisor] crasher keeps crashing: giving up after 5 restarts",
        ],
    );
    let starts = run.serial.lines().filter(|l| l.contains("[supervisor] started crasher")).count();
    if starts != 6 {
        run.fail(&format!("crasher started {starts} times, expected 6 (first start and 5 restarts)"));
    }
    // The crash loop does not starve the rest: every beat happens.
    run.assert_serial_contains("[heartbeat] beat 5");
    run.assert_serial_contains("[heartbeat] done");
    run.assert_halted(0);
}

#[test]
fn qemu_services_default_appliance() {
    let run = boot("qemu_services_default_appliance", Emulator::Qemu, QEMU_TIMEOUT, &[]);
    default_appliance(&run);
    demo_partition_runs(&run);
}

#[test]
fn qemu_ports_need_a_capability() {
    let m = manifest("hostile-ports.toml");
    ports_need_a_capability(&boot("qemu_ports_need_a_capability", Emulator::Qemu, QEMU_TIMEOUT, &["--manifest", &m]));
}

#[test]
fn bochs_ports_need_a_capability() {
    let m = manifest("hostile-ports.toml");
    ports_need_a_capability(&boot(
        "bochs_ports_need_a_capability",
        Emulator::Bochs,
        BOCHS_TIMEOUT,
        &["--manifest", &m],
    ));
}

#[test]
fn qemu_crash_loop_backs_off() {
    let m = manifest("crash.toml");
    crash_loop_backs_off(&boot("qemu_crash_loop_backs_off", Emulator::Qemu, QEMU_TIMEOUT, &["--manifest", &m]));
}

#[test]
fn bochs_crash_loop_backs_off() {
    let m = manifest("crash.toml");
    crash_loop_backs_off(&boot("bochs_crash_loop_backs_off", Emulator::Bochs, BOCHS_TIMEOUT, &["--manifest", &m]));
}

fn interrupts_reach_a_user_driver(run: &Boot) {
    run.assert_serial_contains("ISA IRQ 0 arrives on GSI 2");
    run.assert_serial_contains("[supervisor] started irq-test: ring 3, priority 10, caps: console(endpoint), io0(io-ports), irq(notification), irq2(interrupt)");
    assert_in_order(
        run,
        &[
            "[irq-test] interrupt 1 on GSI 2 (bits 0x1)",
            "[irq-test] interrupt 5 on GSI 2 (bits 0x1)",
            "[irq-test] took 5 of 5 interrupts on GSI 2",
        ],
    );
    run.assert_halted(0);
}

#[test]
fn qemu_interrupts_reach_a_user_driver() {
    let m = manifest("irq.toml");
    interrupts_reach_a_user_driver(&boot(
        "qemu_interrupts_reach_a_user_driver",
        Emulator::Qemu,
        QEMU_TIMEOUT,
        &["--manifest", &m],
    ));
}

#[test]
fn bochs_interrupts_reach_a_user_driver() {
    let m = manifest("irq.toml");
    interrupts_reach_a_user_driver(&boot(
        "bochs_interrupts_reach_a_user_driver",
        Emulator::Bochs,
        BOCHS_TIMEOUT,
        &["--manifest", &m],
    ));
}

/// TSC deadlines (the ABI's Timeouts): a task waits 500 deadlines 1 ms
/// apart; none may end early, and each must end within the 1 ms the
/// synthetic timers allow (issue #11), where the 10 ms tick made them 1
/// to 10 ms late. `mode` is the timer mode the kernel must report.
fn deadlines_are_on_time(run: &Boot, mode: &str) {
    run.assert_serial_contains(&format!("tickless, {mode} mode"));
    let line = run.assert_serial_contains("[deadline] deadline: 500 waits of 1 ms: ");
    let field = |suffix| count_before(line, suffix).unwrap_or_else(|| run.fail(&format!("no {suffix:?} in {line:?}")));
    let (early, mean, max) = (field(" early"), field(" us, max"), field(" us, 500 in"));
    let total = line.find(" in ").and_then(|at| count_before(&line[at..], " us"));
    let total = total.unwrap_or_else(|| run.fail(&format!("no total time in {line:?}")));
    eprintln!("{mode}: {early} early, lateness mean {mean} us, max {max} us, 500 waits in {total} us");
    if early != 0 || max >= 1_000 || mean >= 250 || line.contains("did not time out") {
        run.fail(&format!("deadlines early or late: {line:?}"));
    }
    // 500 waits of 1 ms with the lateness above: not the 10 ms tick's 5 s.
    if !(500_000..=1_000_000).contains(&total) {
        run.fail(&format!("500 waits of 1 ms took {total} us: {line:?}"));
    }
    for name in ["0", "now", "now-1"] {
        let line = run.assert_serial_contains(&format!("deadline: passed deadline {name}: "));
        if !line.contains("Err(TIMEOUT) after") || count_before(line, " us").is_none_or(|us| us >= 1_000) {
            run.fail(&format!("a passed deadline did not return at once with TIMEOUT: {line:?}"));
        }
    }
    run.assert_serial_contains("deadline: a 1-tick timeout: Err(TIMEOUT)");
    run.assert_serial_contains("[deadline] deadline: done");
    run.assert_halted(0);
}

/// QEMU's CPUs have no TSC-deadline timer: one-shot mode, under `-icount
/// shift=0,sleep=off`: the TSC a virtual clock that an idle machine warps
/// to its next timer, so the bounds hold on a loaded host (with `sleep=on`
/// idle time follows the host's clock, and a busy host made a wait 3 ms
/// late).
#[test]
fn qemu_tsc_deadlines_wake_on_time() {
    let m = manifest("deadline.toml");
    let run = boot(
        "qemu_tsc_deadlines_wake_on_time",
        Emulator::Qemu,
        QEMU_TIMEOUT,
        &["--manifest", &m, "--qemu-arg=-icount", "--qemu-arg=shift=0,sleep=off"],
    );
    deadlines_are_on_time(&run, "one-shot");
}

/// Bochs' CPU has the TSC-deadline timer, and `timer=one-shot` keeps the
/// kernel from using it.
#[test]
fn bochs_tsc_deadlines_wake_on_time() {
    let m = manifest("deadline.toml");
    let run = boot("bochs_tsc_deadlines_wake_on_time", Emulator::Bochs, BOCHS_TIMEOUT, &["--manifest", &m]);
    deadlines_are_on_time(&run, "TSC-deadline");
    let run = boot(
        "bochs_tsc_deadlines_wake_on_time_one_shot",
        Emulator::Bochs,
        BOCHS_TIMEOUT,
        &["--manifest", &m, "--cmdline", "timer=one-shot"],
    );
    deadlines_are_on_time(&run, "one-shot");
}

/// The VID's emulated timers keep partition reference time (issue #11's
/// accuracy; the guest's `tests=timers`): the PIT, the local APIC timer
/// and the synthetic timer STIMER0 (direct mode) periodic at 1 kHz fire
/// 1000 times in 1 s of `TIME_REF_COUNT` within 2 %, and 50 one-shots of
/// 1 ms of the local APIC timer (timed by the TSC) and of STIMER0 (timed in
/// reference time at the handler's TSC, through the reference TSC page)
/// fire never early and less than 1 ms late. Timed with the MSR after the
/// handler, Bochs' STIMER0 one-shots looked 0.9 ms late on average: most of
/// it was that read's own exit.
/// With the VID's waits rounded to the 10 ms tick the periodic timers fired
/// about 100 times a second.
fn emulated_timers_keep_time(run: &Boot) {
    for what in ["pit", "local APIC timer", "STIMER0"] {
        let line = run.assert_serial_contains(&format!("testkernel: timers: {what} at 1000 Hz: "));
        let fired = count_before(line, " interrupts").unwrap_or_else(|| run.fail(&format!("no count in {line:?}")));
        if fired.abs_diff(1000) > 20 {
            run.fail(&format!("{what}: {fired} interrupts in 1 s of reference time, not 1000 within 2 %"));
        }
    }
    run.assert_serial_contains("testkernel: timers: STIMER0 one-shots timed by the reference TSC page at the handler");
    for what in ["one-shots of 1 ms", "STIMER0 one-shots of 1 ms"] {
        let line = run.assert_serial_contains(&format!("testkernel: timers: 50 {what}: "));
        let early = count_before(line, " early");
        let max = line.rfind("max ").and_then(|at| count_before(&line[at..], " us"));
        let (Some(early), Some(max)) = (early, max) else { run.fail(&format!("no counts in {line:?}")) };
        if early != 0 || max >= 1_000 {
            run.fail(&format!("{what} early or late: {line:?}"));
        }
    }
    run.assert_serial_contains("testkernel: timers: ok");
    run.assert_serial_contains("testkernel: done: 1 passed, 0 failed");
    run.assert_halted(0);
}

/// Under `-icount shift=0,sleep=off`, as the deadline test (with
/// `sleep=on` a busy host made the PIT fire 965 times).
#[test]
fn qemu_emulated_timers_keep_time() {
    let m = manifest("timers.toml");
    let args = ["--manifest", &m, "--qemu-arg=-icount", "--qemu-arg=shift=0,sleep=off"];
    emulated_timers_keep_time(&boot("qemu_emulated_timers_keep_time", Emulator::Qemu, QEMU_TIMEOUT, &args));
}

#[test]
fn bochs_emulated_timers_keep_time() {
    let m = manifest("timers.toml");
    let args = ["--manifest", &m];
    emulated_timers_keep_time(&boot("bochs_emulated_timers_keep_time", Emulator::Bochs, BOCHS_TIMEOUT, &args));
}

/// The README's "compose your own system" example builds and boots.
#[test]
fn qemu_readme_example_manifest_boots() {
    let m = format!("{}/examples/minimal.toml", env!("CARGO_MANIFEST_DIR"));
    let run = boot("qemu_readme_example_manifest_boots", Emulator::Qemu, QEMU_TIMEOUT, &["--manifest", &m]);
    run.assert_serial_contains("[supervisor] started console: ring 3");
    run.assert_serial_contains("[supervisor] started heartbeat: ring 3");
    assert_in_order(&run, &["[heartbeat] beat 1", "[heartbeat] beat 5", "[heartbeat] done"]);
    run.assert_halted(0);
}

/// The same demo partition on Intel VMX with EPT (Bochs).
#[test]
fn bochs_demo_partition_runs() {
    let run = boot("bochs_demo_partition_runs", Emulator::Bochs, BOCHS_TIMEOUT, &[]);
    run.assert_serial_contains("virt: Intel VMX with EPT");
    demo_partition_runs(&run);
    run.assert_halted(0);
}

/// The guest test kernel (a Multiboot v1 kernel built here) in a partition
/// next to the default appliance: every test case passes and the guest
/// reports success through the test-exit port.
fn guest_test_suite_passes(run: &Boot) {
    run.assert_serial_contains("[supervisor] started vid: ring 3");
    // The command line starts with the kernel's (bootfs) file name, as GRUB
    // and QEMU's -kernel pass it (Multiboot 0.6.96 3.3).
    run.assert_serial_contains(
        "[vid] guest: Multiboot kernel at 0x100010, 64 MiB of RAM, command line \"guest0:image tests=all\"",
    );
    run.assert_serial_contains("[vid] guest: testkernel: command line \"guest0:image tests=all\"");
    for case in ["uart", "multiboot", "cpuid", "portio", "hlt", "unmapped", "mmio", "readonly"] {
        run.assert_serial_contains(&format!("[vid] guest: testkernel: {case}: ok"));
    }
    run.assert_serial_contains("[vid] guest: write to read-only GPA 0xff000");
    posted_lines_are_whole(run);
    assert_in_order(
        run,
        &["[vid] guest: testkernel: done: 8 passed, 0 failed", "[vid] guest: guest reported status 1"],
    );
    assert_in_order(
        run,
        &[
            "[partition-manager] guest: created as partition 1 (64 MiB of RAM, 1 VP) for vid",
            "[vid] guest: the partition manager holds it as partition 1",
            "[vid] guest: guest reported status 1",
            "[vid] guest: partition 1 is Finalized at the partition manager",
        ],
    );
    run.assert_serial_lacks("FAIL");
}

/// The `uart` case's posted lines (THR writes ring 0 keeps for the VID,
/// with IER, LCR and MCR writes among them and a flood longer than ring
/// 0's buffer) come out whole and in order, each line exactly once, and
/// ring 0 did keep some of them.
fn posted_lines_are_whole(run: &Boot) {
    let expected: Vec<String> = (0..12)
        .map(|i| {
            let letters: String = (0..80).map(|j| char::from(b'a' + ((7 * i + 3 * j) % 26) as u8)).collect();
            format!("[vid] guest: testkernel: uart: posted {i:02} {letters}")
        })
        .collect();
    let shown: Vec<&str> = run.serial.lines().filter(|l| l.contains("testkernel: uart: posted ")).collect();
    let shown: Vec<&str> = shown.iter().map(|l| &l[l.find("[vid] guest: ").unwrap_or(0)..]).collect();
    if shown != expected {
        run.fail(&format!("the posted lines differ:\n{shown:#?}\nexpected\n{expected:#?}"));
    }
    let posted = run.assert_serial_contains("[vid] guest: COM1 bytes posted in ring 0: ");
    if count_after(run, posted, "ring 0: ") < 80 * 12 / 2 {
        run.fail(&format!("too few writes were posted: {posted}"));
    }
}

fn guest_args() -> [&'static str; 4] {
    ["--guest", env!("TESSERA_GUEST_TEST_KERNEL"), "--guest-cmdline", "tests=all"]
}

#[test]
fn qemu_guest_test_suite() {
    guest_test_suite_passes(&boot("qemu_guest_test_suite", Emulator::Qemu, QEMU_TIMEOUT, &guest_args()));
}

/// Guest RAM at its real cost (issue #15, acceptance 4): a 768 MiB
/// partition (`tests/manifests/big-guest.toml`) boots in a machine the
/// runner sizes at its RAM plus the system's (960 MiB), so the guest has
/// more than half of the machine; the test kernel writes every page of its
/// RAM and reads it back. Before guest RAM was made of runs it was one
/// buddy block of the next power of two (1 GiB), which this machine cannot
/// hold: the partition manager's retype was refused (`cannot create the
/// partition: status 0xb`, INSUFFICIENT_MEMORY).
#[test]
fn qemu_guest_ram_is_more_than_half_the_machine() {
    let m = manifest("big-guest.toml");
    let run =
        boot("qemu_guest_ram_is_more_than_half_the_machine", Emulator::Qemu, QEMU_TIMEOUT * 2, &["--manifest", &m]);
    let usable_mib = count_before(run.assert_serial_contains("memory: "), " MiB usable")
        .unwrap_or_else(|| run.fail("no \"memory: N MiB usable\" line"));
    let guest_mib = 768;
    if usable_mib >= 2 * guest_mib {
        run.fail(&format!("the machine has {usable_mib} MiB usable: not less than twice the guest's {guest_mib} MiB"));
    }
    run.assert_serial_contains("[partition-manager] big: created as partition 1 (768 MiB of RAM, 1 VP) for vid");
    let ram = run.assert_serial_contains("[vid] big: testkernel: ram: ");
    let pages = count_before(ram, " pages (").unwrap_or_else(|| run.fail("no page count in the ram line"));
    // All of it but the first 2 MiB or so (the kernel, its boot information).
    if pages < (guest_mib - 4) * 256 {
        run.fail(&format!("the guest wrote {pages} pages of its RAM"));
    }
    run.assert_serial_contains("[vid] big: testkernel: ram: ok");
    assert_in_order(&run, &["[vid] big: testkernel: done: 9 passed, 0 failed", "[vid] big: guest reported status 1"]);
    run.assert_serial_lacks("FAIL");
    run.assert_halted(0);
}

#[test]
fn bochs_guest_test_suite() {
    guest_test_suite_passes(&boot("bochs_guest_test_suite", Emulator::Bochs, BOCHS_TIMEOUT, &guest_args()));
}

/// The number after `label` in `line` (e.g. "ring 3: 12" -> 12).
fn count_after(run: &Boot, line: &str, label: &str) -> u64 {
    let at = line.find(label).unwrap_or_else(|| run.fail(&format!("no {label:?} in {line:?}"))) + label.len();
    let digits: String = line[at..].trim_start().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| run.fail(&format!("no number after {label:?} in {line:?}")))
}

/// With `test=nmi` the kernel sends itself NMIs for the whole run: PIT
/// channel 0 routed as NMI (they land in ring 3, ring 0 and the guest) and
/// self-NMIs in syscalls, right before guest entry and inside the world
/// switch. The guest suite passes (with `isolation`, whose long spin in
/// guest mode the periodic NMIs hit), every NMI is counted, none is fatal.
fn nmis_are_harmless(run: &Boot) {
    for case in ["uart", "multiboot", "cpuid", "portio", "hlt", "unmapped", "mmio", "readonly", "isolation"] {
        run.assert_serial_contains(&format!("[vid] guest: testkernel: {case}: ok"));
    }
    assert_in_order(
        run,
        &["[vid] guest: testkernel: done: 9 passed, 0 failed", "[vid] guest: guest reported status 1"],
    );
    run.assert_serial_lacks("FAIL");
    run.assert_serial_contains("nmi test: PIT channel 0 at 1000 Hz routed as NMI on GSI 2");
    run.assert_serial_contains("nmi: first NMI, in ring");
    run.assert_serial_lacks("EXCEPTION");
    let summary = run.assert_serial_contains("nmi: in all ");
    for label in ["ring 3:", "ring 0:"] {
        if count_after(run, summary, label) == 0 {
            run.fail(&format!("no NMI counted at {label:?}: {summary}"));
        }
    }
    // The guest spins for a while (isolation): NMIs must end its runs then,
    // not wait until it leaves (VMX without virtual NMIs let 1 of 5662 in).
    if count_after(run, summary, "; ") < 20 {
        run.fail(&format!("too few NMIs arrived while the guest ran: {summary}"));
    }
    let sent = run.assert_serial_contains("nmi test: sent ");
    for label in ["sent ", "syscalls, ", "guest entry, "] {
        if count_after(run, sent, label) == 0 {
            run.fail(&format!("no self-NMI after {label:?}: {sent}"));
        }
    }
    run.assert_halted(0);
}

fn nmi_args() -> [&'static str; 6] {
    [
        "--guest",
        env!("TESSERA_GUEST_TEST_KERNEL"),
        "--guest-cmdline",
        "tests=all,isolation mark=nmi",
        "--cmdline",
        "test=nmi exit=idle",
    ]
}

#[test]
fn qemu_nmis_are_harmless_in_every_context() {
    nmis_are_harmless(&boot("qemu_nmis_are_harmless_in_every_context", Emulator::Qemu, QEMU_TIMEOUT, &nmi_args()));
}

#[test]
fn bochs_nmis_are_harmless_in_every_context() {
    nmis_are_harmless(&boot("bochs_nmis_are_harmless_in_every_context", Emulator::Bochs, BOCHS_TIMEOUT, &nmi_args()));
}

/// Bochs' Tiger Lake says (CPUID, ARCH_CAPABILITIES) that it needs IBPB and
/// VERW and has them, so they run at every switch while the guest suite
/// passes (its RDCL_NO makes the L1D flush unneeded: no emulator here
/// exercises it).
#[test]
fn bochs_mitigations_run_where_the_cpu_needs_them() {
    let [guest, kernel, cmdline, tests] = guest_args();
    let args = [guest, kernel, cmdline, tests, "--bochs-cpu", "tigerlake"];
    let run = boot("bochs_mitigations_run_where_the_cpu_needs_them", Emulator::Bochs, BOCHS_TIMEOUT, &args);
    run.assert_serial_contains(
        "mitigations: ibpb on task and partition switch, rsb fill on vm exit and task switch, \
         verw on vm entry and return to ring 3; l1d flush: not needed (ARCH_CAPABILITIES.RDCL_NO)",
    );
    run.assert_serial_lacks("cpu: warning:");
    guest_test_suite_passes(&run);
    run.assert_halted(0);
}

/// Two partitions at once: each reads back its own mark at the same
/// guest-physical address after the other has written its own.
fn two_partitions_are_isolated(run: &Boot) {
    for p in ["alpha", "beta"] {
        run.assert_serial_contains(&format!("[vid] {p}: testkernel: isolation: mark {p} at 0x300000"));
        run.assert_serial_contains(&format!("[vid] {p}: testkernel: isolation: ok"));
        run.assert_serial_contains(&format!("[vid] {p}: testkernel: done: 4 passed, 0 failed"));
        run.assert_serial_contains(&format!("[vid] {p}: guest reported status 1"));
    }
    // They really ran at the same time: both marked before either checked.
    let position = |needle: &str| run.serial.find(needle).unwrap_or_else(|| run.fail(&format!("no {needle:?}")));
    let marks =
        position("[vid] alpha: testkernel: isolation: mark").max(position("[vid] beta: testkernel: isolation: mark"));
    let checks =
        position("[vid] alpha: testkernel: isolation: ok").min(position("[vid] beta: testkernel: isolation: ok"));
    if marks > checks {
        run.fail("the partitions did not overlap: one finished its isolation check before the other wrote its mark");
    }
    run.assert_serial_lacks("FAIL");
    run.assert_halted(0);
}

#[test]
fn qemu_two_partitions_are_isolated() {
    let m = manifest("two-guests.toml");
    two_partitions_are_isolated(&boot(
        "qemu_two_partitions_are_isolated",
        Emulator::Qemu,
        QEMU_TIMEOUT,
        &["--manifest", &m],
    ));
}

#[test]
fn bochs_two_partitions_are_isolated() {
    let m = manifest("two-guests.toml");
    two_partitions_are_isolated(&boot(
        "bochs_two_partitions_are_isolated",
        Emulator::Bochs,
        BOCHS_TIMEOUT,
        &["--manifest", &m],
    ));
}

/// The manifest's connections reach the broker: the supervisor declares
/// every port and connection when it starts (nobody else may), the broker
/// may signal the notification of the VID of every port's partition, and
/// that VID may wait on it (bound to its thread); a VID whose partitions
/// have no port gets none.
/// The guests run as before.
#[test]
fn qemu_connections_are_declared_to_the_broker() {
    let m = manifest("connections.toml");
    let run = boot("qemu_connections_are_declared_to_the_broker", Emulator::Qemu, QEMU_TIMEOUT, &["--manifest", &m]);
    // Start order: supervisor, console, partition-manager, broker, vid
    // (badge 5, runs alpha and beta, both with ports), vid-gamma (gamma: none).
    let broker = run.assert_serial_contains("[supervisor] started broker: ring 3");
    if !broker.contains("broker(endpoint), console(endpoint), notify:5(notification)") || broker.contains("notify:6") {
        run.fail(&format!("the broker should signal vid's notification only: {broker}"));
    }
    let vid = run.assert_serial_contains("[supervisor] started vid: ring 3");
    if !vid.contains("broker(endpoint)") || !vid.contains("broker-events(notification)") {
        run.fail(&format!("vid should use the broker and wait on broker-events: {vid}"));
    }
    // The kernel binds it to the VID's thread: no polling for deliveries.
    run.assert_serial_contains("[vid] broker-events bound to this thread");
    let gamma = run.assert_serial_contains("[supervisor] started vid-gamma: ring 3");
    if gamma.contains("broker-events") {
        run.fail(&format!("vid-gamma runs no port's partition: {gamma}"));
    }
    assert_in_order(
        &run,
        &["[broker] ready, serving broker", "[broker] 4 ports, 4 connections", "[supervisor] started vid: ring 3"],
    );
    run.assert_serial_lacks("cannot declare connection");
    run.assert_serial_lacks("cannot register partition");
    for (vid, partition) in [("vid", "alpha"), ("vid", "beta"), ("vid-gamma", "gamma")] {
        run.assert_serial_contains(&format!("[{vid}] {partition}: testkernel: isolation: ok"));
    }
    run.assert_serial_lacks("faulted");
    run.assert_serial_lacks("FAIL");
    run.assert_halted(0);
}

/// HvPostMessage and HvSignalEvent between partitions (TLFS 11.11), through
/// the broker: alpha and beta (one VID) post messages to each other and
/// signal each other's event flags, each message arriving in its SINT's
/// slot with its type, size, payload and port, on its SINT's vector; a
/// busy slot gets MessagePending and its next message after EOM; a full
/// port queue answers INSUFFICIENT_BUFFERS; every refusal of alpha's
/// connections has its status; gamma (another VID, no connection) gets
/// INVALID_CONNECTION_ID for the others' connection IDs.
#[test]
fn qemu_partitions_post_messages_and_signal_events() {
    let m = manifest("messaging.toml");
    let run =
        boot("qemu_partitions_post_messages_and_signal_events", Emulator::Qemu, QEMU_TIMEOUT, &["--manifest", &m]);
    messages_and_events_pass(&run);
}

/// The same under Bochs (VMX + EPT).
#[test]
fn bochs_partitions_post_messages_and_signal_events() {
    let m = manifest("messaging.toml");
    let run =
        boot("bochs_partitions_post_messages_and_signal_events", Emulator::Bochs, BOCHS_TIMEOUT, &["--manifest", &m]);
    messages_and_events_pass(&run);
}

/// The start of alpha's line on its monitored notifications (TLFS 11.7).
const MONITOR_ALPHA: &str = "monitor: trigger 3 of group 0 (connection 0x11 flag 3, latency 20000) signalled after ";
const MONITOR_REFUSED: &str = "monitor: trigger 4 (connection 0x7777, not held) cleared after ";
const MONITOR_DISABLED: &str = "monitor: trigger 0 of disabled group 1 still pending after ";

/// alpha's monitored notifications, in reference time (100 ns): trigger 3
/// no earlier than its latency (2 ms) and within 1 s; trigger 4 (a
/// connection alpha does not hold) cleared within 1 s all the same;
/// trigger 0 of the disabled group 1 still pending after 50 ms.
/// alpha's monitored notifications came no sooner than their latency (2 ms,
/// in 100 ns units) and within a second; the disabled group's stayed
/// pending for at least 50 ms.
fn monitored_notifications_took_their_time(run: &Boot, alpha: &dyn Fn(&str) -> String) {
    let after = |what: &str| {
        let line = run.assert_serial_contains(&alpha(what));
        let n = line.split(what).nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u64>().ok();
        Some((n?, line))
    };
    let checks: [(&str, &dyn Fn(u64) -> bool); 3] = [
        (MONITOR_ALPHA, &|t| (20_000..10_000_000).contains(&t)),
        (MONITOR_REFUSED, &|t| t < 10_000_000),
        (MONITOR_DISABLED, &|t| t >= 500_000),
    ];
    for (what, expected) in checks {
        match after(what) {
            Some((t, _)) if expected(t) => {}
            other => run.fail(&format!("alpha's monitored notifications took the wrong times: {other:?}")),
        }
    }
}

fn messages_and_events_pass(run: &Boot) {
    let line = |vid: &str, partition: &str, text: &str| format!("[{vid}] {partition}: testkernel: messaging: {text}");
    // Each partition's lines in its order (the two interleave as they run).
    let alpha = |text: &str| line("vid", "alpha", text);
    let beta = |text: &str| line("vid", "beta", text);
    let alpha_lines = [
        alpha("beta's SynIC not yet on: "),
        alpha("post to beta: SUCCESS"),
        alpha("message type 0x42 size 14 port 0x20 flags 0x0 on SINT2 vector 0xd4"),
        alpha("payload \"pong from beta\""),
        alpha("signal beta's flag 1: SUCCESS"),
        alpha("received event flag 11 on SINT3 vector 0xd5"),
        alpha(MONITOR_ALPHA),
        alpha(MONITOR_REFUSED),
        alpha(MONITOR_DISABLED),
        alpha("post on connection 0x99: INVALID_CONNECTION_ID"),
        alpha("post to an event port: INVALID_PORT_ID"),
        alpha("post to a monitor port: INVALID_PORT_ID"),
        alpha("signal a message port: INVALID_PORT_ID"),
        alpha("signal flag 4 of 4: INVALID_PARAMETER"),
        alpha("signal with RsvdZ set: INVALID_PARAMETER"),
        alpha("post 241 bytes: INVALID_PARAMETER"),
        alpha("post with RsvdZ set: INVALID_PARAMETER"),
        alpha("post type 0: INVALID_PARAMETER"),
        alpha("post type 0x80000001: INVALID_PARAMETER"),
        // One message held for the busy slot, QUEUE_DEPTH (4) at the port.
        alpha("post 6 to beta's busy slot: INSUFFICIENT_BUFFERS"),
        alpha("signal beta's flag 2: SUCCESS"),
        alpha("message type 0x44 size 12 port 0x20 flags 0x0 on SINT2 vector 0xd4"),
        alpha("payload \"SINT3 masked\""),
        // The target's SynIC state, as its VID told the broker (11.11.2).
        alpha("signal beta's masked SINT3: INVALID_SYNIC_STATE"),
        "[vid] alpha: testkernel: messaging: ok".to_string(),
    ];
    assert_in_order(run, &alpha_lines.iter().map(String::as_str).collect::<Vec<_>>());
    let beta_lines = [
        beta("message type 0x41 size 15 port 0x20 flags 0x0 on SINT2 vector 0xd4"),
        beta("payload \"ping from alpha\""),
        beta("post to alpha: SUCCESS"),
        beta("received event flag 6 on SINT3 vector 0xd5"),
        beta("signal alpha's flag 1: SUCCESS"),
        // alpha's monitored notification: flag 3 of connection 0x11, and
        // the page alpha wrote, at beta's own GPA.
        beta("received event flag 8 on SINT3 vector 0xd5"),
        beta("monitor: flag 8 of SINT3 came; page 0x2100000 has connection 0x11 flag 3, latency 20000"),
        beta("received event flag 7 on SINT3 vector 0xd5"),
        beta("monitor: no other flag (flags 5 and 8 of SINT3 clear)"),
        beta("busy slot: type 0x41 flags 0x1"),
        // The first message posted to the busy slot, delivered on EOM (the
        // next one may already wait for it, with MessagePending).
        beta("message type 0x43 size 8 port 0x20 flags 0x"),
        beta("payload 0000000000000000"),
        beta("post to alpha that SINT3 is masked: SUCCESS"),
        "[vid] beta: testkernel: messaging: ok".to_string(),
    ];
    assert_in_order(run, &beta_lines.iter().map(String::as_str).collect::<Vec<_>>());
    monitored_notifications_took_their_time(run, &alpha);
    for refusal in [
        "post on alpha's connection 0x10: INVALID_CONNECTION_ID",
        "signal on alpha's connection 0x11: INVALID_CONNECTION_ID",
        "post on beta's connection 0x13: INVALID_CONNECTION_ID",
    ] {
        run.assert_serial_contains(&line("vid-gamma", "gamma", refusal));
    }
    run.assert_serial_contains("[vid-gamma] gamma: testkernel: messaging: ok");
    run.assert_serial_lacks("dropped");
    run.assert_serial_lacks("faulted");
    run.assert_serial_lacks("FAIL");
    run.assert_halted(0);
}

/// The SynIC through QEMU's `hyperv-testdev` (issue #11, acceptance 2; the
/// guest's `tests=testdev` on 2 VPs): routes fired from VP 0 interrupt VP 1
/// (auto-EOI out of service, a polled SINT silent, a destroyed route
/// ignored and logged), the echo connection's messages with a busy slot
/// and redelivery after EOM, an event flag's one interrupt, and
/// `INVALID_SYNIC_STATE` for a SynIC without the page or SINT a post or
/// signal needs. In Bochs it
/// takes about 13 s.
fn testdev_passes(run: &Boot) {
    let line = |text: &str| format!("[vid] testdev: testkernel: testdev: {text}");
    let lines = [
        line("VP 1 up, SINT5, SINT6 (auto-EOI) and SINT7 (polled) set"),
        line("route to VP 1 SINT5 fired from VP 0: vector 0xd6 taken 1 times, in service: true"),
        line("route to VP 1 SINT6 fired from VP 0: vector 0xd7 taken 1 times, in service: false"),
        line("route to VP 1 SINT7 (polled) fired from VP 0: 0 interrupts"),
        "[vid] testdev: hyperv-testdev request 0x00030105 ignored: no such route".to_string(),
        line("destroyed route fired: 1 interrupts"),
        line("post on echo connection 1: SUCCESS"),
        line("echo in SINT2: type 0x51 size 8 port 0x1 flags 0x0 \"echo one\" (1 interrupts)"),
        line("post while the slot is busy: SUCCESS"),
        line("busy slot: type 0x51 flags 0x1"),
        line("post while one waits: INSUFFICIENT_BUFFERS"),
        line("echo in SINT2: type 0x52 size 8 port 0x1 flags 0x0 \"echo two\" (1 interrupts)"),
        line("post on destroyed connection 1: INVALID_CONNECTION_ID"),
        line("signal event connection 9: SUCCESS"),
        line("flag 9 of SINT3 set: true, 1 interrupts"),
        line("signal again while the flag is set: SUCCESS"),
        line("flag already set: 0 more interrupts"),
        line("signal flag 1 of the one-flag port: INVALID_PARAMETER"),
        line("signal destroyed event connection 9: INVALID_CONNECTION_ID"),
        line("post to VP 1 without a SIM page: INVALID_SYNIC_STATE"),
        line("signal VP 1 without a SIEF page: INVALID_SYNIC_STATE"),
        line("signal VP 0's masked SINT4: INVALID_SYNIC_STATE"),
        line("ok"),
    ];
    assert_in_order(run, &lines.iter().map(String::as_str).collect::<Vec<_>>());
    run.assert_serial_lacks("faulted");
    run.assert_serial_lacks("FAIL");
    run.assert_halted(0);
}

#[test]
fn qemu_testdev_drives_the_synic() {
    let m = manifest("testdev.toml");
    testdev_passes(&boot("qemu_testdev_drives_the_synic", Emulator::Qemu, QEMU_TIMEOUT, &["--manifest", &m]));
}

#[test]
fn bochs_testdev_drives_the_synic() {
    let m = manifest("testdev.toml");
    testdev_passes(&boot("bochs_testdev_drives_the_synic", Emulator::Bochs, BOCHS_TIMEOUT, &["--manifest", &m]));
}

/// A guest that triple-faults stops only its own partition.
#[test]
fn qemu_guest_crash_leaves_others_running() {
    let m = manifest("guest-crash.toml");
    let run = boot("qemu_guest_crash_leaves_others_running", Emulator::Qemu, QEMU_TIMEOUT, &["--manifest", &m]);
    assert_in_order(
        &run,
        &[
            "[vid] crasher: testkernel: crash: triple-faulting on purpose",
            "[vid] crasher: guest stopped (triple fault or shutdown)",
        ],
    );
    // The partition manager follows: the crashed partition is finalized
    // there, the survivor only once its own guest ends.
    let id = |name: &str| {
        let needle = format!("[vid] {name}: the partition manager holds it as partition ");
        let at = run.serial.find(&needle).unwrap_or_else(|| run.fail(&format!("no {needle:?}"))) + needle.len();
        run.serial[at..].split_whitespace().next().unwrap_or_default().to_string()
    };
    let (crasher, survivor) = (id("crasher"), id("survivor"));
    assert_ne!(crasher, survivor, "two partitions share one partition-manager ID");
    assert_in_order(
        &run,
        &[
            "[vid] crasher: guest stopped (triple fault or shutdown)",
            &format!("[vid] crasher: partition {crasher} is Finalized at the partition manager"),
        ],
    );
    assert_in_order(
        &run,
        &[
            "[vid] survivor: guest reported status 1",
            &format!("[vid] survivor: partition {survivor} is Finalized at the partition manager"),
        ],
    );
    run.assert_serial_contains("[vid] survivor: testkernel: done: 8 passed, 0 failed");
    run.assert_serial_contains("[vid] survivor: guest reported status 1");
    run.assert_halted(0);
}

/// A VID that dies or never answers leaves its VPs stopped and reported;
/// a healthy VID's partition runs its whole suite meanwhile.
#[test]
fn qemu_vid_failures_stop_only_their_vps() {
    let m = manifest("vid-failures.toml");
    let run = boot("qemu_vid_failures_stop_only_their_vps", Emulator::Qemu, QEMU_TIMEOUT, &["--manifest", &m]);
    assert_in_order(
        &run,
        &[
            "[vid-dies] exiting on purpose with the exit at rip",
            "[partition-manager] partition orphan: VP 0 stopped: its VID is gone (exit message type 0x80010000",
        ],
    );
    assert_in_order(
        &run,
        &[
            "[vid-stalls] never answering the exit at rip",
            "[partition-manager] partition stalled: VP 0 stopped: its VID did not answer in 1000 ms (exit message type \
             0x80010000",
        ],
    );
    run.assert_serial_contains("[vid] bystander: testkernel: done: 8 passed, 0 failed");
    run.assert_serial_contains("[vid] bystander: guest reported status 1");
    run.assert_halted(0);
}

/// The TLFS conformance guest (`tests=tlfs`): the Hyper-V CPUID leaves,
/// synthetic MSRs (EOI assist among them), hypercalls, SynIC and synthetic
/// timers, with their error cases, in a partition with the `hyperv` enlightenments and `synic` and
/// `synthetic_timers`.
fn tlfs_conformance_passes(run: &Boot) {
    assert_in_order(
        run,
        &[
            "[vid] conformance: testkernel: tlfs-cpuid: ok",
            "[vid] conformance: testkernel: tlfs: EOI assist: NoEoiRequired set, no EOI written, the vector out of service (10.3.5): ok",
            "[vid] conformance: testkernel: tlfs: EOI assist: the same vector delivered again, assisted: ok",
            "[vid] conformance: guest crash reported: P0 0x7e550000 P1 0x7e550001 P2 0x7e550002 P3 0x7e550003 P4 0x7e550004",
            "[partition-manager] partition conformance: guest crash reported: P0 0x7e550000 P1 0x7e550001 P2 0x7e550002 P3 0x7e550003 P4 0x7e550004",
            "[vid] conformance: testkernel: tlfs-msr: ok",
            "[vid] conformance: testkernel: tlfs-hypercall: ok",
            "[vid] conformance: testkernel: tlfs: busy slot: MessagePending set, the first message kept (11.10.3): ok",
            "[vid] conformance: testkernel: tlfs: second message redelivered after EOM: ok",
            "[vid] conformance: testkernel: tlfs: auto-EOI: the vector never in service, no EOI written (11.8.5): ok",
            "[vid] conformance: testkernel: tlfs-synic: ok",
            "[vid] conformance: testkernel: tlfs: direct mode: the APIC vector, no message (12.2): ok",
            "[vid] conformance: testkernel: tlfs: direct mode: 3 periods of 1 ms take at least 3 ms (12.5.2): ok",
            "[vid] conformance: testkernel: tlfs-stimer: ok",
            "[vid] conformance: testkernel: done: 5 passed, 0 failed",
            "[vid] conformance: guest reported status 1",
        ],
    );
    run.assert_serial_lacks("FAIL");
    run.assert_halted(0);
}

#[test]
fn qemu_tlfs_conformance() {
    let m = manifest("tlfs-conformance.toml");
    tlfs_conformance_passes(&boot("qemu_tlfs_conformance", Emulator::Qemu, QEMU_TIMEOUT, &["--manifest", &m]));
}

#[test]
fn bochs_tlfs_conformance() {
    let m = manifest("tlfs-conformance.toml");
    tlfs_conformance_passes(&boot("bochs_tlfs_conformance", Emulator::Bochs, BOCHS_TIMEOUT, &["--manifest", &m]));
}

/// A partition with two VPs: the test kernel starts its AP with INIT and
/// SIPI through the VID's local APIC, the AP checks in with its own APIC ID
/// and sends the BSP an IPI.
fn smp_guest_passes(run: &Boot) {
    assert_in_order(
        run,
        &[
            "[vid] smp: 2 VPs; the application processors wait for INIT and SIPI",
            "[vid] smp: testkernel: smp: AP 1 up",
            "[vid] smp: testkernel: smp: 1 of 1 APs up and 1 IPIs",
            "[vid] smp: testkernel: smp: ok",
            "[vid] smp: guest reported status 1",
        ],
    );
    run.assert_serial_lacks("FAIL");
    run.assert_halted(0);
}

#[test]
fn qemu_smp_guest() {
    let m = manifest("smp.toml");
    smp_guest_passes(&boot("qemu_smp_guest", Emulator::Qemu, QEMU_TIMEOUT, &["--manifest", &m]));
}

#[test]
fn bochs_smp_guest() {
    let m = manifest("smp.toml");
    smp_guest_passes(&boot("bochs_smp_guest", Emulator::Bochs, BOCHS_TIMEOUT, &["--manifest", &m]));
}
