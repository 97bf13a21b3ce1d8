//! The Hyper-V *core* scheduler (issue #10, acceptance point 4): SMT
//! siblings never run VPs of different partitions at the same time, and
//! every partition progresses.
//!
//! A QEMU machine of one socket of 2 cores x 2 threads (`--smp 4
//! --smp-threads 2`: CPUs 0, 1 and 2, 3 are siblings) runs two guests of two
//! VPs each, alpha on CPUs 0 and 2 and beta on CPUs 1 and 3
//! (`tests/manifests/core-turns.toml`), both running the test kernel's
//! `turns` test (VP 0 alternates 50 ms busy and 50 ms halted for 2 s of
//! reference time while VP 1 spins; each reports its
//! `HV_X64_MSR_VP_RUNTIME`). Under `[scheduler] policy = "core"` the
//! partition manager makes both partitions core-exclusive, and the kernel
//! enters a VP only while no sibling runs another partition's VP, the
//! partitions taking turns on each core. The kernel counts, right before
//! every guest entry, the entries that found a sibling in guest mode with
//! another partition: 0 under the policy; the control
//! (`core-turns-kernel.toml`, no `[scheduler]`) must count some, so the
//! counter can fail.

mod common;

use common::{Boot, Emulator, assert_in_order, boot, count_before, manifest};

const QEMU_TIMEOUT: u64 = 90;

/// The number after `key` in `line`.
fn field(run: &Boot, line: &str, key: &str) -> u64 {
    let at = line.find(key).unwrap_or_else(|| run.fail(&format!("no {key:?} in {line:?}")));
    let digits: String = line[at + key.len()..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| run.fail(&format!("no number after {key:?} in {line:?}")))
}

/// (violations, guest entries checked) from the kernel's report.
fn sibling_counter(run: &Boot) -> (u64, u64) {
    let line = run.assert_serial_contains("kernel: core scheduling: ");
    match (count_before(line, " sibling violations"), count_before(line, " guest entries")) {
        (Some(violations), Some(entries)) => (violations, entries),
        _ => run.fail(&format!("no sibling counter in {line:?}")),
    }
}

/// Boots `name` on the 2 x 2 machine; checks that both partitions' VPs
/// progressed and returns the run and the sibling counter.
fn run(test: &str, name: &str) -> (Boot, (u64, u64)) {
    let m = manifest(name);
    let run = boot(test, Emulator::Qemu, QEMU_TIMEOUT, &["--smp", "4", "--smp-threads", "2", "--manifest", &m]);
    assert_in_order(&run, &["cpus: 4 online of 4 in MADT", "[vid] ready, serving vid"]);
    for p in ["alpha", "beta"] {
        let line = run.assert_serial_contains(&format!("[vid] {p}: testkernel: turns: window "));
        let window = field(&run, line, "window ");
        let vp0 = field(&run, line, "VP 0 runtime ");
        let vp1 = field(&run, line, "VP 1 runtime ");
        let pct = |us: u64| 100.0 * us as f64 / window.max(1) as f64;
        eprintln!(
            "[{test}] {p}: window {window} us: VP 0 ran {vp0} us ({:.1} %), VP 1 ran {vp1} us ({:.1} %)",
            pct(vp0),
            pct(vp1)
        );
        if window < 1_900_000 {
            run.fail(&format!("{p}: the window was {window} us: {line:?}"));
        }
        // Progress: VP 1 spins the whole window, and ran at least 10 % of
        // it; VP 0 ran at least most of its first 50 ms busy period (the
        // second partition's VP 0 sees few of the VID's PIT ticks, with or
        // without the policy, so its cycles are not counted on).
        if vp1 * 10 < window {
            run.fail(&format!("{p}: VP 1 ran {vp1} us of the {window} us window, under 10 %"));
        }
        if vp0 < 40_000 {
            run.fail(&format!("{p}: VP 0 ran {vp0} us, under 40 ms"));
        }
    }
    run.assert_serial_lacks("FAIL");
    run.assert_serial_lacks("EXCEPTION:");
    for cpu in 0..4 {
        if run.run_counters(cpu).1 == 0 {
            run.fail(&format!("no VP entered guest mode on CPU {cpu}"));
        }
    }
    run.assert_halted(0);
    let counter = sibling_counter(&run);
    eprintln!("[{test}] {} sibling violations in {} guest entries", counter.0, counter.1);
    (run, counter)
}

#[test]
fn qemu_core_scheduling_keeps_siblings_in_one_partition() {
    let (run, (violations, entries)) = run("qemu_core_scheduling_keeps_siblings_in_one_partition", "core-turns.toml");
    if entries < 100 {
        run.fail(&format!("only {entries} guest entries were checked against the siblings"));
    }
    if violations != 0 {
        run.fail(&format!("{violations} of {entries} guest entries found a sibling in another partition"));
    }
}

#[test]
fn qemu_without_the_core_policy_siblings_mix_partitions() {
    let (run, (violations, entries)) =
        run("qemu_without_the_core_policy_siblings_mix_partitions", "core-turns-kernel.toml");
    if violations == 0 {
        run.fail(&format!("no sibling violation in {entries} guest entries without the core policy"));
    }
}
