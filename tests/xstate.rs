//! Extended and debug state between tasks, VPs and partitions, and the
//! intercepts ring 0 handles itself, in both emulators (QEMU: AMD SVM,
//! Bochs: Intel VMX).
//!
//! - A task cannot read a guest's XMM registers: `xstate-probe` runs a VP
//!   with a marker in XMM0 and then faults (#NM) on its own SSE read.
//! - Two partitions at once keep their own DR0-DR3, DR7, XCR0 and XMM/YMM
//!   registers (`tests/manifests/state-isolation.toml`).
//! - XSETBV's refusals, INVD/WBINVD/RDPMC, #DB for each cause and #AC at
//!   CPL 3 behave as on hardware (the test kernel's `state` group).

mod common;

use common::{Boot, Emulator, assert_in_order, boot, manifest};

const QEMU_TIMEOUT: u64 = 60;
const BOCHS_TIMEOUT: u64 = 150;

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

/// Each partition reads back the register state it set from its mark
/// while the other ran with its own.
fn partitions_keep_their_own_state(run: &Boot) {
    for (p, xcr0, vector) in [("alpha", "0x7", "YMM0"), ("beta", "0x3", "XMM0")] {
        let set = run.assert_serial_contains(&format!("[vid] {p}: testkernel: state-isolation: mark {p}: DR0 "));
        if !set.contains(&format!("XCR0 {xcr0}, {vector} ")) {
            run.fail(&format!("{p} did not set XCR0 {xcr0} and {vector}: {set}"));
        }
        run.assert_serial_contains(&format!("[vid] {p}: testkernel: state-isolation: ok"));
        run.assert_serial_contains(&format!("[vid] {p}: testkernel: done: 1 passed, 0 failed"));
        run.assert_serial_contains(&format!("[vid] {p}: guest reported status 1"));
    }
    // They overlapped: both set their state before either checked it.
    let position = |needle: &str| run.serial.find(needle).unwrap_or_else(|| run.fail(&format!("no {needle:?}")));
    let set = ["alpha", "beta"].map(|p| position(&format!("[vid] {p}: testkernel: state-isolation: mark")));
    let checked = ["alpha", "beta"].map(|p| position(&format!("[vid] {p}: testkernel: state-isolation: ok")));
    if set.iter().max() > checked.iter().min() {
        run.fail("the partitions did not overlap: one checked its state before the other set its own");
    }
    run.assert_serial_lacks("FAIL");
    run.assert_halted(0);
}

#[test]
fn qemu_partitions_keep_their_own_state() {
    let m = manifest("state-isolation.toml");
    let run = boot("qemu_partitions_keep_their_own_state", Emulator::Qemu, QEMU_TIMEOUT, &["--manifest", &m]);
    partitions_keep_their_own_state(&run);
}

#[test]
fn bochs_partitions_keep_their_own_state() {
    let m = manifest("state-isolation.toml");
    let run = boot("bochs_partitions_keep_their_own_state", Emulator::Bochs, BOCHS_TIMEOUT, &["--manifest", &m]);
    partitions_keep_their_own_state(&run);
}

/// The test kernel's `state` group, with the `lacks=` list of what the
/// emulator does not implement; `checked` are the lines only a CPU that
/// has everything prints.
fn guest_state_and_intercepts(run: &Boot, checked: &[&str]) {
    for line in [
        "testkernel: xsetbv: 10 cases and CPL 3 as the SDM says",
        "testkernel: intercepts: INVD and WBINVD completed, RDPMC raised #GP(0)",
        "testkernel: debug: single step: #DB at ",
        "testkernel: debug: data breakpoint: #DB at ",
        "testkernel: debug: instruction breakpoint: #DB at ",
    ]
    .iter()
    .chain(checked)
    {
        run.assert_serial_contains(&format!("[vid] guest: {line}"));
    }
    for test in ["xsetbv", "intercepts", "debug", "alignment"] {
        run.assert_serial_contains(&format!("[vid] guest: testkernel: {test}: ok"));
    }
    run.assert_serial_contains("[vid] guest: testkernel: done: 4 passed, 0 failed");
    run.assert_serial_contains("[vid] guest: guest reported status 1");
    run.assert_serial_lacks("FAIL");
    run.assert_halted(0);
}

/// QEMU 7.2's TCG has no alignment checking, no ICEBP and no DR7.GD: the
/// test kernel says so for each (`lacks=`) instead of testing it.
#[test]
fn qemu_guest_state_and_intercepts() {
    let kernel = env!("TESSERA_GUEST_TEST_KERNEL");
    let args = ["--guest", kernel, "--guest-cmdline", "tests=state lacks=ac,icebp,gd"];
    let run = boot("qemu_guest_state_and_intercepts", Emulator::Qemu, QEMU_TIMEOUT, &args);
    guest_state_and_intercepts(
        &run,
        &[
            "testkernel: debug: ICEBP: #UD: this CPU does not know INT1 (lacks=icebp)",
            "testkernel: debug: general detect: no #DB: this CPU ignores DR7.GD (lacks=gd)",
            "testkernel: alignment: no #AC: this CPU does not check alignment (lacks=ac)",
        ],
    );
}

#[test]
fn bochs_guest_state_and_intercepts() {
    let kernel = env!("TESSERA_GUEST_TEST_KERNEL");
    let args = ["--guest", kernel, "--guest-cmdline", "tests=state"];
    let run = boot("bochs_guest_state_and_intercepts", Emulator::Bochs, BOCHS_TIMEOUT, &args);
    guest_state_and_intercepts(
        &run,
        &[
            "testkernel: debug: ICEBP: #DB at ",
            "testkernel: debug: general detect: #DB at ",
            "testkernel: alignment: #AC(0) at ",
        ],
    );
}
