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
    let vmrun = positions(&code, "vmrun");
    let state: Vec<usize> =
        positions(&code, "vmload").into_iter().chain(positions(&code, "vmsave")).chain(vmrun.clone()).collect();
    assert_eq!((clgi.len(), vmrun.len()), (1, 1), "one CLGI, one VMRUN: {code:?}");
    assert!(positions(&code, "stgi").is_empty(), "GIF stays 0 on return (`run` sets it): {code:?}");
    let first_state = state.iter().min().unwrap();
    assert!(
        clgi[0] < *first_state,
        "CLGI (at {}) must precede the first VMSAVE/VMLOAD/VMRUN (at {first_state}): {code:?}",
        clgi[0]
    );
    // Interrupts are let in only by VMRUN (IF=1 makes them exit the guest)
    // and stay off after it: STI before VMRUN, CLI after it.
    let (sti, cli) = (positions(&code, "sti"), positions(&code, "cli"));
    assert!(sti.len() == 1 && sti[0] > clgi[0] && sti[0] < vmrun[0], "STI belongs between CLGI and VMRUN: {code:?}");
    assert!(cli.len() == 1 && cli[0] > vmrun[0], "CLI belongs after VMRUN: {code:?}");
}

/// `run` calls the world switch, which returns with GIF=0 and the host's
/// state back; it sets GIF (STGI) only after disarming what the guest left
/// armed (`dr::disarm_after_exit`), and the re-arming before the switch
/// comes after a CLGI of its own.
#[test]
fn svm_run_sets_gif_only_after_the_guests_breakpoints_are_disarmed() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("microkernel/kernel/src/arch/svm.rs");
    let source = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let start = source.find("\nfn run(").expect("svm.rs has fn run");
    let body = &source[start..start + source[start..].find("\n}\n").expect("fn run ends")];
    let at = |needle: &str| body.find(needle).unwrap_or_else(|| panic!("fn run has no {needle:?}"));
    let (rearm, switch) = (at("dr::rearm("), at("svm_world_switch("));
    let (disarm, set) = (at("disarm_after_exit("), at("set_gif();"));
    // The CLGI in the re-arming's own block, not one earlier in `run`.
    let block = body[..rearm].rfind("if let Some(").expect("the re-arming is conditional");
    assert!(body[block..rearm].contains("clear_gif();"), "CLGI, then the re-arming");
    assert!(rearm < switch, "the re-arming, then the switch");
    assert!(switch < disarm && disarm < set, "the switch, then the disarming, then STGI");
    assert_eq!(body.matches("set_gif();").count(), 1, "one STGI, at the end");
    let set_gif = &source[source.find("fn set_gif()").expect("set_gif")..];
    assert!(set_gif[..set_gif.find("\n}\n").unwrap()].contains("\"stgi\""), "set_gif executes STGI");
}
