//! VP register values ring 0 itself loads into the CPU around a guest's
//! run: a VMM (here: the task running a VP of its own) must not be able to
//! set one the CPU refuses, as that load would fault in ring 0. Each is
//! tried through `VP_SET_REGISTERS` and through the reply to an exit; one
//! that is taken is then run, so what ring 0 does with it shows.

use crate::guest::{Guest, set};
use crate::objects::{Own, report};
use hostile::Check;
use tessera_rt::abi::labels;
use tessera_rt::{ErrorCode, Message, log};
use tlfs::HvRegisterName;

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
