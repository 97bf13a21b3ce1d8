//! Extended and debug state between tasks, VPs and partitions, and the
//! intercepts ring 0 handles itself, in both emulators (QEMU: AMD SVM,
//! Bochs: Intel VMX).
//!
//! - A task cannot read a guest's XMM registers: `xstate-probe` runs a VP
//!   with a marker in XMM0 and then faults (#NM) on its own SSE read.

mod common;

use common::{Boot, Emulator, boot};

const QEMU_TIMEOUT: u64 = 60;
const BOCHS_TIMEOUT: u64 = 150;

fn manifest(name: &str) -> String {
    format!("{}/tests/manifests/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Asserts that lines containing each needle appear in this order.
#[track_caller]
fn assert_in_order(run: &Boot, needles: &[&str]) {
    let mut lines = run.serial.lines();
    for needle in needles {
        if !lines.by_ref().any(|line| line.contains(needle)) {
            run.fail(&format!("no line containing {needle:?} after the previous ones ({needles:?})"));
        }
    }
}

fn task_cannot_see_guest_xstate(run: &Boot) {
    assert_in_order(
        run,
        &[
            "[xstate-probe] the VP ran with XMM0 = 0x584d4d302d6d6b21_5445535345524121 (the marker)",
            "[xstate-probe] reading XMM0 with an SSE instruction; this must fault (#NM)",
            "[supervisor] xstate-probe faulted: #NM device not available (vector 7, error 0x0)",
            "[supervisor] xstate-probe is not restarted",
        ],
    );
    run.assert_serial_lacks("FAIL");
    run.assert_halted(0);
}

#[test]
fn qemu_task_cannot_see_guest_xstate() {
    let m = manifest("xstate.toml");
    let run = boot("qemu_task_cannot_see_guest_xstate", Emulator::Qemu, QEMU_TIMEOUT, &["--manifest", &m]);
    task_cannot_see_guest_xstate(&run);
}

#[test]
fn bochs_task_cannot_see_guest_xstate() {
    let m = manifest("xstate.toml");
    let run = boot("bochs_task_cannot_see_guest_xstate", Emulator::Bochs, BOCHS_TIMEOUT, &["--manifest", &m]);
    task_cannot_see_guest_xstate(&run);
}
