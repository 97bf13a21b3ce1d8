//! The order of the SVM world switch's instructions, read from the kernel's
//! source (a host test: no emulator).
//!
//! VMLOAD loads the guest's FS, GS, TR, LDTR, KERNEL_GS_BASE and syscall
//! MSRs into the CPU. Any host event taken while they are loaded (an NMI,
//! an SMI, an interrupt) would run the host's handler on the guest's TR
//! (so the guest's IST stacks) and GS base. Only GIF = 0 holds every event
//! off, so CLGI must come before the first guest-state instruction and STGI
//! after the host's state is back. TCG takes interrupts only at
//! translation-block boundaries, so the race cannot be provoked reliably in
//! QEMU: this test guards the order instead.

use std::path::Path;

/// The first words of `svm_world_switch`'s lines (mnemonics), in order,
/// without comments and labels.
fn svm_world_switch() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("microkernel/kernel/src/arch/svm.rs");
    let source = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let start = source.find("svm_world_switch:").expect("svm.rs defines svm_world_switch");
    let mut body = &source[start + "svm_world_switch:".len()..];
    // To the end of the `global_asm!`: its template may be split around
    // macro-made pieces (the RSB fill), whose lines count for nothing here.
    body = &body[..body.find("\n);").expect("the global_asm! ends")];
    let mut without_comments = String::new();
    let mut rest = body;
    while let Some(open) = rest.find("/*") {
        without_comments.push_str(&rest[..open]);
        rest = &rest[open + rest[open..].find("*/").expect("comments end") + 2..];
    }
    without_comments.push_str(rest);
    without_comments
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|word| !word.ends_with(':') && !word.starts_with('{'))
        .map(str::to_string)
        .collect()
}

fn positions(code: &[String], mnemonic: &str) -> Vec<usize> {
    code.iter().enumerate().filter(|(_, m)| *m == mnemonic).map(|(i, _)| i).collect()
}

#[test]
fn svm_world_switch_holds_gif_clear_while_guest_state_is_loaded() {
    let code = svm_world_switch();
    let clgi = positions(&code, "clgi");
    let stgi = positions(&code, "stgi");
    let vmrun = positions(&code, "vmrun");
    let state: Vec<usize> =
        positions(&code, "vmload").into_iter().chain(positions(&code, "vmsave")).chain(vmrun.clone()).collect();
    assert_eq!((clgi.len(), stgi.len(), vmrun.len()), (1, 1, 1), "one CLGI, one STGI, one VMRUN: {code:?}");
    let (first_state, last_state) = (state.iter().min().unwrap(), state.iter().max().unwrap());
    assert!(
        clgi[0] < *first_state,
        "CLGI (at {}) must precede the first VMSAVE/VMLOAD/VMRUN (at {first_state}): {code:?}",
        clgi[0]
    );
    assert!(
        stgi[0] > *last_state,
        "STGI (at {}) must follow the last VMLOAD (at {last_state}), which puts the host's state back: {code:?}",
        stgi[0]
    );
    // Interrupts are let in only by VMRUN (IF=1 makes them exit the guest)
    // and stay off after it: STI before VMRUN, CLI before STGI.
    let (sti, cli) = (positions(&code, "sti"), positions(&code, "cli"));
    assert!(sti.len() == 1 && sti[0] > clgi[0] && sti[0] < vmrun[0], "STI belongs between CLGI and VMRUN: {code:?}");
    assert!(cli.len() == 1 && cli[0] > vmrun[0] && cli[0] < stgi[0], "CLI belongs between VMRUN and STGI: {code:?}");
}
