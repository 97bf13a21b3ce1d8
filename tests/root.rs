//! The Hyper-V root scheduler (issue #10, acceptance point 5): the
//! hypervisor makes no VP scheduling decision of its own; the VID decides
//! when each VP runs through `VP_START` and `VP_SUSPEND`. Its
//! demonstration policy runs VP 1 only while VP 0 is halted
//! (`services/vid/src/root.rs`).
//!
//! One guest of two VPs on a 2-CPU QEMU machine, VP 0 on CPU 0 and VP 1
//! on CPU 1 (`tests/manifests/root-turns.toml`), runs the test kernel's
//! `turns` test: VP 0 alternates 50 ms busy and 50 ms halted for 2 s of
//! reference time while VP 1 spins, and each reports its
//! `HV_X64_MSR_VP_RUNTIME` over that window. Under the root policy VP 1's
//! runtime must be about VP 0's halted time and well below the window;
//! the control (`root-turns-kernel.toml`, no `[scheduler]`) shows that
//! without it VP 1, alone on its CPU, runs nearly the whole window. The
//! kernel's count of CPUs in guest mode at once (sampled at every guest
//! entry) must be 1 under the policy and is 2 without it.

mod common;

use common::{Boot, Emulator, assert_in_order, boot, count_before, manifest};

const QEMU_TIMEOUT: u64 = 60;

/// What the guest reported, in µs.
#[derive(Debug)]
struct Turns {
    window: u64,
    vp0: u64,
    halted: u64,
    cycles: u64,
    vp1: u64,
}

/// The number after `key` in `line`.
fn field(run: &Boot, line: &str, key: &str) -> u64 {
    let at = line.find(key).unwrap_or_else(|| run.fail(&format!("no {key:?} in {line:?}")));
    let digits: String = line[at + key.len()..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| run.fail(&format!("no number after {key:?} in {line:?}")))
}

fn run(test: &str, name: &str) -> (Boot, Turns) {
    let m = manifest(name);
    let run = boot(test, Emulator::Qemu, QEMU_TIMEOUT, &["--smp", "2", "--manifest", &m]);
    assert_in_order(&run, &["cpus: 2 online of 2 in MADT", "[vid] ready, serving vid"]);
    let line = run.assert_serial_contains("[vid] turns: testkernel: turns: window ");
    let turns = Turns {
        window: field(&run, line, "window "),
        vp0: field(&run, line, "VP 0 runtime "),
        halted: field(&run, line, "halted "),
        cycles: count_before(line, " cycles").unwrap_or_else(|| run.fail(&format!("no cycles in {line:?}"))),
        vp1: field(&run, line, "VP 1 runtime "),
    };
    let pct = |us: u64| 100.0 * us as f64 / turns.window as f64;
    eprintln!(
        "[{test}] window {} us: VP 0 ran {} us ({:.1} %), halted {} us ({:.1} %) in {} cycles; VP 1 ran {} us ({:.1} %)",
        turns.window,
        turns.vp0,
        pct(turns.vp0),
        turns.halted,
        pct(turns.halted),
        turns.cycles,
        turns.vp1,
        pct(turns.vp1)
    );
    run.assert_serial_lacks("FAIL");
    run.assert_serial_lacks("EXCEPTION:");
    run.assert_serial_lacks("root scheduler: Start");
    run.assert_serial_lacks("root scheduler: Suspend");
    // Each VP entered guest mode on its own CPU.
    for cpu in [0, 1] {
        if run.run_counters(cpu).1 == 0 {
            run.fail(&format!("no VP entered guest mode on CPU {cpu}"));
        }
    }
    run.assert_halted(0);
    (run, turns)
}

/// VP 0 progressed through the window: about half of it busy.
fn assert_vp0_progressed(run: &Boot, t: &Turns) {
    if t.window < 1_900_000 || t.cycles < 10 {
        run.fail(&format!("the window was {} us in {} cycles: {t:?}", t.window, t.cycles));
    }
    if t.vp0 * 100 < t.window * 30 {
        run.fail(&format!("VP 0 ran {} us of the {} us window, under 30 %: {t:?}", t.vp0, t.window));
    }
}

/// Under the root policy VP 1 runs only while VP 0 is halted: its runtime
/// is about VP 0's halted time (at least half of it, and no more than it
/// plus 5 % of the window for the switches), at most 65 % of the window.
#[test]
fn qemu_the_vid_runs_vp1_only_while_vp0_is_halted() {
    let (run, t) = run("qemu_the_vid_runs_vp1_only_while_vp0_is_halted", "root-turns.toml");
    run.assert_serial_contains("[vid] turns: root scheduler: the VID runs VP 1 and up only while VP 0 is halted");
    run.assert_serial_contains("[vid] turns: VP 1 started by SIPI at ");
    assert_vp0_progressed(&run, &t);
    if t.vp1 * 100 > t.window * 65 {
        run.fail(&format!("VP 1 ran {} us of the {} us window, over 65 %: {t:?}", t.vp1, t.window));
    }
    if t.vp1 > t.halted + t.window / 20 {
        run.fail(&format!(
            "VP 1 ran {} us, more than VP 0 was halted ({} us) + 5 % of the window: {t:?}",
            t.vp1, t.halted
        ));
    }
    if t.vp1 * 2 < t.halted {
        run.fail(&format!("VP 1 ran {} us, under half the {} us VP 0 was halted: {t:?}", t.vp1, t.halted));
    }
    // The kernel's own count: no guest entry on one CPU found the other
    // CPU in guest mode.
    if run.most_at_once().1 != 1 {
        run.fail(&format!("the kernel saw {} CPUs in guest mode at once", run.most_at_once().1));
    }
}

/// The control: with the kernel's own scheduling, VP 1 alone on CPU 1
/// runs nearly the whole window whatever VP 0 does.
#[test]
fn qemu_without_the_root_policy_vp1_runs_the_whole_window() {
    let (run, t) = run("qemu_without_the_root_policy_vp1_runs_the_whole_window", "root-turns-kernel.toml");
    run.assert_serial_lacks("root scheduler:");
    assert_vp0_progressed(&run, &t);
    if t.vp1 * 100 < t.window * 85 {
        run.fail(&format!("VP 1 ran {} us of the {} us window, under 85 %: {t:?}", t.vp1, t.window));
    }
    if run.most_at_once().1 != 2 {
        run.fail(&format!("the kernel saw {} CPUs in guest mode at once, not 2", run.most_at_once().1));
    }
}

/// The smp test under the root policy, 4 VPs on 4 CPUs: VP 0 sends each AP
/// INIT and SIPI while it runs, so each AP waits for VP 0's next halt; each
/// AP's IPI to VP 0 comes in the AP's own exit, whose reply the VID gives
/// before it suspends the AP and wakes VP 0. Every AP still comes up and
/// its IPI arrives.
#[test]
fn qemu_aps_started_by_sipi_wait_for_vp0_to_halt() {
    let m = manifest("root-smp4.toml");
    let run = boot(
        "qemu_aps_started_by_sipi_wait_for_vp0_to_halt",
        Emulator::Qemu,
        QEMU_TIMEOUT,
        &["--smp", "4", "--manifest", &m],
    );
    assert_in_order(
        &run,
        &[
            "cpus: 4 online of 4 in MADT",
            "[vid] smp4: root scheduler: the VID runs VP 1 and up only while VP 0 is halted",
            "[vid] smp4: VP 1 started by SIPI at 0x",
            "[vid] smp4: testkernel: smp: 3 of 3 APs up and 3 IPIs",
            "[vid] smp4: testkernel: smp: ok",
        ],
    );
    for v in 1..4 {
        let line = run.assert_serial_contains(&format!("[vid] smp4: VP {v} started by SIPI at "));
        if !line.ends_with("(it runs when VP 0 halts)") {
            run.fail(&format!("VP {v} was started while VP 0 ran: {line:?}"));
        }
    }
    run.assert_serial_lacks("root scheduler: Start");
    run.assert_serial_lacks("root scheduler: Suspend");
    run.assert_serial_lacks("FAIL");
    run.assert_serial_lacks("EXCEPTION:");
    run.assert_halted(0);
}
