//! A guest of the hostile task's own: a partition with one VP whose code
//! makes one port exit and halts, for the probes that need a VP to run.

use crate::objects::{Own, WINDOW, bits, delete};
use tessera_rt::abi::Rights;
use tessera_rt::memory::Window;
use tessera_rt::{CapSlot, ErrorCode, ObjectType, Operation, invoke};
use tlfs::{HvMessage, HvMessageBody, HvRegisterName};

/// Real mode at this GPA: `out 0xe0, al` then `hlt`.
const CODE_GPA: u64 = 0x1000;
const CODE: [u8; 3] = [0xe6, 0xe0, 0xf4];

/// A partition of its own with one VP at [`CODE_GPA`], its exits to `exits`.
pub(crate) struct Guest {
    pub(crate) partition: CapSlot,
    pub(crate) vp: CapSlot,
    code: CapSlot,
    pub(crate) exits: CapSlot,
    exit_cap: CapSlot,
}

impl Guest {
    pub(crate) fn new(own: &mut Own) -> Result<Guest, ErrorCode> {
        let code = own.retype(ObjectType::MEMORY, 1)?;
        let partition = own.retype(ObjectType::PARTITION, 0)?;
        let vp = own.retype(ObjectType::VP, 0)?;
        let exits = own.retype(ObjectType::ENDPOINT, 0)?;
        let exit_cap = own.slot();
        let guest = Guest { partition, vp, code, exits, exit_cap };
        invoke(exits, Operation::CAP_MINT, &[u64::from(exit_cap.0), bits(Rights::new().with_send(true)), 1])?;
        let mut window = Window::map(own.task, code, WINDOW, 0, 1, true)?;
        if let Some(bytes) = window.bytes_mut() {
            bytes[..CODE.len()].copy_from_slice(&CODE);
        }
        window.unmap(own.task)?;
        let rx = Rights::new().with_read(true).with_execute(true);
        invoke(partition, Operation::PARTITION_MAP, &[u64::from(code.0), CODE_GPA, bits(rx), 1])?;
        invoke(vp, Operation::VP_CONFIGURE, &[u64::from(partition.0), 0])?;
        invoke(vp, Operation::VP_SET_HANDLER, &[u64::from(exit_cap.0), 0])?;
        set(vp, HvRegisterName::RIP, CODE_GPA)?;
        Ok(guest)
    }

    /// Runs the VP to its first exit, which it leaves unanswered.
    pub(crate) fn run_to_exit(&self) -> Result<HvMessageBody, ErrorCode> {
        invoke(self.vp, Operation::VP_START, &[])?;
        let got = tessera_rt::recv_timeout(self.exits, 100)?;
        HvMessage::from_words(got.message.words()).ok().and_then(|m| m.parse().ok()).ok_or(ErrorCode::INVALID_STATE)
    }

    /// Runs the VP to its first exit (the `out`), which it leaves unanswered.
    pub(crate) fn first_exit(&self) -> Result<(), ErrorCode> {
        match self.run_to_exit()? {
            HvMessageBody::X64IoPortIntercept(_) => Ok(()),
            _ => Err(ErrorCode::INVALID_STATE),
        }
    }

    pub(crate) fn end(self) {
        let _ = invoke(self.vp, Operation::VP_SUSPEND, &[]);
        for slot in [self.vp, self.partition, self.exit_cap, self.exits, self.code] {
            delete(slot);
        }
    }
}

pub(crate) fn get(vp: CapSlot, name: HvRegisterName) -> Result<u64, ErrorCode> {
    let reply = invoke(vp, Operation::VP_GET_REGISTERS, &[1, u64::from(name.0)])?;
    reply.words().first().copied().ok_or(ErrorCode::INVALID_STATE)
}

pub(crate) fn set(vp: CapSlot, name: HvRegisterName, value: u64) -> Result<(), ErrorCode> {
    invoke(vp, Operation::VP_SET_REGISTERS, &[1, u64::from(name.0), value, 0]).map(drop)
}
