//! The `xstate-probe` test task: can a task see a guest's extended state?
//!
//! It makes a partition and a VP of its own (from its untyped memory),
//! puts [`MARKER`] in the VP's XMM0 and starts it; the VP, with no memory
//! mapped, exits at once to the task, so the registers of the CPU held the
//! VP's state a moment ago. It reads the VP's XMM0 back through the kernel
//! (the marker: the state was there), stops the VP, and then reads XMM0
//! itself with an SSE instruction. That must raise #NM, which the
//! supervisor reports (`xstate-probe faulted: #NM ...`); a read that
//! returns is logged as a FAIL, with what it saw.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("xstate-probe is a Tessera task; it runs only on the bare target (x86_64-unknown-none).");
}

#[cfg(target_os = "none")]
mod task {
    use abi::{CapSlot, ErrorCode, ObjectType, Rights, labels};
    use tessera_rt::{Message, Operation, arch, caps, invoke, log};
    use tlfs::HvRegisterName;

    /// What the VP's XMM0 holds: (low, high).
    const MARKER: (u64, u64) = (0x5445_5353_4552_4121, 0x584d_4d30_2d6d_6b21);

    fn retype(untyped: CapSlot, kind: ObjectType, dest: CapSlot) -> Result<(), ErrorCode> {
        tessera_rt::untyped::retype(untyped, kind, dest, 0)
    }

    /// Runs the VP with the marker until its first exit; returns the
    /// VP's XMM0 as the kernel reads it then.
    fn run_vp(untyped: CapSlot) -> Result<(u64, u64), ErrorCode> {
        let first = caps::first_unnamed_slot().0;
        let [partition, vp, exits, exit_cap] = core::array::from_fn(|i| CapSlot(first + i as u32));
        retype(untyped, ObjectType::PARTITION, partition)?;
        retype(untyped, ObjectType::VP, vp)?;
        retype(untyped, ObjectType::ENDPOINT, exits)?;
        let send = u64::from(Rights::new().with_send(true).into_bits());
        invoke(exits, Operation::CAP_MINT, &[u64::from(exit_cap.0), send, 1])?;
        // Into its partition as VP 0 (CONTROL), then its exits to `exits` (RUN).
        invoke(vp, Operation::VP_CONFIGURE, &[u64::from(partition.0), 0])?;
        invoke(vp, Operation::VP_SET_HANDLER, &[u64::from(exit_cap.0), 0])?;
        let xmm0 = u64::from(HvRegisterName::XMM0.0);
        invoke(vp, Operation::VP_SET_REGISTERS, &[1, xmm0, MARKER.0, MARKER.1])?;
        invoke(vp, Operation::VP_START, &[])?;
        let exit = tessera_rt::recv(exits)?;
        if exit.message.label() != labels::VM_EXIT {
            log!("the VP's first message has label {}, not VM_EXIT: FAIL", exit.message.label());
        }
        let seen = invoke(vp, Operation::VP_GET_REGISTERS, &[1, xmm0])?;
        let words = seen.words();
        let xmm = (words.first().copied().unwrap_or(0), words.get(1).copied().unwrap_or(0));
        let mut stop = Message::new(labels::VP_STOP);
        let _ = stop.push(0);
        tessera_rt::reply(&stop)?;
        Ok(xmm)
    }

    pub fn main() {
        log!("starting");
        let Some(untyped) = caps::find("untyped", ObjectType::UNTYPED) else {
            log!("no untyped memory to make a VP from: FAIL");
            return;
        };
        match run_vp(untyped) {
            Ok(xmm) => log!(
                "the VP ran with XMM0 = {:#018x}_{:016x} ({})",
                xmm.1,
                xmm.0,
                if xmm == MARKER { "the marker" } else { "not the marker: FAIL" }
            ),
            Err(e) => {
                log!("running a VP failed: {e:?}: FAIL");
                return;
            }
        }
        log!("reading XMM0 with an SSE instruction; this must fault (#NM)");
        let seen = arch::probe_xmm0();
        let whose = if seen == MARKER { "the guest's marker" } else { "no #NM" };
        log!("read XMM0 = {:#018x}_{:016x} ({whose}): FAIL", seen.1, seen.0);
    }
}

tessera_rt::entry!(task::main);
