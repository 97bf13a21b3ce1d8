//! VP register values ring 0 itself loads into the CPU around a guest's
//! run: a VMM (here: the task running a VP of its own) must not be able to
//! set one the CPU refuses, as that load would fault in ring 0. Each is
//! tried through `VP_SET_REGISTERS` and through the reply to an exit; one
//! that is taken is then run, so what ring 0 does with it shows.

use crate::guest::{Guest, get, set};
use crate::objects::{Own, report};
use hostile::{Check, verdict};
use tessera_rt::abi::labels;
use tessera_rt::{ErrorCode, Message, Operation, invoke, log};
use tlfs::{HvRegisterName, HvX64SegmentAttributes, HvX64SegmentRegister};

/// Values the CPU refuses to load (#GP in ring 0 on VMX, where the world
/// switch writes KERNEL_GS_BASE with WRMSR and DR6 with MOV).
const BAD: [(&str, HvRegisterName, u64); 3] = [
    ("a non-canonical KERNEL_GS_BASE", HvRegisterName::KERNEL_GS_BASE, 0x8000_0000_0000_0000),
    ("DR6 with bit 32 set", HvRegisterName::DR6, 0x1_ffff_0ff0),
    ("DR7 with bit 32 set", HvRegisterName::DR7, 0x1_0000_0400),
];
const REFUSED: &[ErrorCode] = &[ErrorCode::INVALID_ARGUMENT];

/// Each bad value through `VP_SET_REGISTERS`, then through an exit's reply.
pub fn loaded_registers_are_checked(own: &mut Own) {
    for (what, name, value) in BAD {
        let outcome = (|| -> Result<Result<(), ErrorCode>, ErrorCode> {
            let guest = Guest::new(own)?;
            let got = set(guest.vp, name, value);
            if got.is_ok() {
                // Taken: let the VP enter the guest with it.
                let _ = guest.first_exit();
            }
            guest.end();
            Ok(got)
        })();
        own.reset();
        let check = Check { what, expected: REFUSED };
        match outcome {
            Ok(got) => log!("VP_SET_REGISTERS {}", check.report(got)),
            Err(e) => report("VP_SET_REGISTERS probe", false, format_args!("could not run: {e:?}")),
        }
    }
    let (what, name, value) = BAD[0];
    let outcome = (|| -> Result<Result<(), ErrorCode>, ErrorCode> {
        let guest = Guest::new(own)?;
        guest.first_exit()?;
        let mut resume = Message::new(labels::VP_RESUME);
        for w in [1, u64::from(name.0), value, 0] {
            let _ = resume.push(w);
        }
        let got = tessera_rt::reply(&resume);
        if got.is_ok() {
            // Taken: the VP runs on with it, to its `hlt`.
            let _ = tessera_rt::recv_timeout(guest.exits, 100);
        }
        guest.end();
        Ok(got)
    })();
    own.reset();
    let check = Check { what, expected: REFUSED };
    match outcome {
        Ok(got) => log!("exit reply with {}", check.report(got)),
        Err(e) => report("exit reply probe", false, format_args!("could not run: {e:?}")),
    }
}

/// The second registers of [`a_refused_register_sets_none`]'s messages:
/// a value ring 0 refuses, a register it does not write, a malformed
/// pending interruption (an NMI with vector 3).
const SECOND: [(&str, HvRegisterName, u64); 3] = [
    ("a non-canonical KERNEL_GS_BASE", HvRegisterName::KERNEL_GS_BASE, 0x8000_0000_0000_0000),
    ("VP_RUNTIME (read-only)", HvRegisterName::VP_RUNTIME, 0),
    ("an NMI with vector 3", HvRegisterName::PENDING_INTERRUPTION, 1 | 2 << 1 | 3 << 16),
];

/// Two registers, the second refused: neither is set, through
/// `VP_SET_REGISTERS` (RAX) and through an exit's reply (RIP, which
/// would have moved the guest on).
pub fn a_refused_register_sets_none(own: &mut Own) {
    for (second, bad_name, bad) in SECOND {
        let pair = |name: HvRegisterName, value: u64| [2, u64::from(name.0), value, 0, u64::from(bad_name.0), bad, 0];
        let outcome = (|| -> Result<(Result<(), ErrorCode>, u64, u64), ErrorCode> {
            let guest = Guest::new(own)?;
            let before = get(guest.vp, HvRegisterName::RAX)?;
            let got = invoke(guest.vp, Operation::VP_SET_REGISTERS, &pair(HvRegisterName::RAX, !before)).map(drop);
            let after = get(guest.vp, HvRegisterName::RAX)?;
            guest.end();
            Ok((got, before, after))
        })();
        own.reset();
        unchanged("VP_SET_REGISTERS of RAX", second, "RAX", outcome);
        let outcome = (|| -> Result<(Result<(), ErrorCode>, u64, u64), ErrorCode> {
            let guest = Guest::new(own)?;
            guest.first_exit()?;
            let before = get(guest.vp, HvRegisterName::RIP)?;
            let resume = Message::from_words(labels::VP_RESUME, &pair(HvRegisterName::RIP, before.wrapping_add(2)))
                .ok_or(ErrorCode::INVALID_ARGUMENT)?;
            let got = tessera_rt::reply(&resume);
            let after = get(guest.vp, HvRegisterName::RIP)?;
            guest.end();
            Ok((got, before, after))
        })();
        own.reset();
        unchanged("exit reply with RIP", second, "RIP", outcome);
    }
}

/// Reports a message of two registers (`what` and `second`): refused, the
/// first (`first`) unchanged.
fn unchanged(what: &str, second: &str, first: &str, outcome: Result<(Result<(), ErrorCode>, u64, u64), ErrorCode>) {
    match outcome {
        Ok((got, before, after)) => log!(
            "{what} and {second} -> {got:?}, {first} {before:#x} -> {after:#x} (expected INVALID_ARGUMENT, {first} unchanged): {}",
            verdict(got == Err(ErrorCode::INVALID_ARGUMENT) && after == before)
        ),
        Err(e) => log!("{what} and {second} -> could not run: {e:?}: {}", verdict(false)),
    }
}

/// 32-bit flat segments at CPL 3: code (non-conforming, readable) and data.
const USER_CODE: HvX64SegmentRegister = flat(0x1b, 0xb);
const USER_DATA: HvX64SegmentRegister = flat(0x23, 0x3);
/// CR0.PE and ET; RFLAGS with IOPL 3 (so `out` is allowed at CPL 3) and bit 1.
const PROTECTED_CR0: u64 = 0x11;
const IOPL3_RFLAGS: u64 = 0x3002;

const fn flat(selector: u16, segment_type: u8) -> HvX64SegmentRegister {
    let attributes = HvX64SegmentAttributes::new()
        .with_segment_type(segment_type)
        .with_non_system_segment(true)
        .with_descriptor_privilege_level(3)
        .with_present(true)
        .with_default(true)
        .with_granularity(true);
    HvX64SegmentRegister { base: 0, limit: 0xffff_ffff, selector, attributes }
}

/// A VMM that puts its VP in protected mode at CPL 3 through
/// `VP_SET_REGISTERS` (SS with DPL 3): the CPL is SS.DPL on both backends.
/// Under SVM the CPU takes the CPL from the VMCB's own field, which setting
/// SS must update; the port exit that follows reports the CPL the guest
/// ran at.
pub fn cpl_follows_ss(own: &mut Own) {
    let outcome = (|| -> Result<Option<u8>, ErrorCode> {
        let guest = Guest::new(own)?;
        set(guest.vp, HvRegisterName::CR0, PROTECTED_CR0)?;
        for (name, segment) in [(HvRegisterName::CS, USER_CODE), (HvRegisterName::SS, USER_DATA)] {
            let (low, high) = tlfs::segment_register_value(&segment);
            invoke(guest.vp, Operation::VP_SET_REGISTERS, &[1, u64::from(name.0), low, high])?;
        }
        set(guest.vp, HvRegisterName::RFLAGS, IOPL3_RFLAGS)?;
        let cpl = guest.run_to_exit().ok().and_then(|body| Some(body.intercept_header()?.execution_state.cpl()));
        guest.end();
        Ok(cpl)
    })();
    own.reset();
    let what = "the port exit of a VP set to protected mode with SS.DPL 3 by VP_SET_REGISTERS";
    match outcome {
        Ok(cpl) => {
            report(what, cpl == Some(3), format_args!("reports CPL {cpl:?} (expected Some(3): the CPL is SS.DPL)"))
        }
        Err(e) => report(what, false, format_args!("could not run: {e:?}")),
    }
}
