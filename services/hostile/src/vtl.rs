//! Ring 0's part of VSM (TLFS 15) as a VMM drives it: a VP with a context
//! per VTL and a partition with a second-level view per VTL. A real-mode
//! guest reads one data page from VTL 0 and from VTL 1; once VTL 0 may not
//! read it, VTL 0's read exits and VTL 1's still works, and each exit names
//! the VTL it came from. The operations' refusals come first.

use crate::guest::{get, set};
use crate::objects::{Own, WINDOW, bits, delete, report};
use hostile::Check;
use tessera_rt::abi::{Rights, labels};
use tessera_rt::memory::Window;
use tessera_rt::{CapSlot, ErrorCode, Message, ObjectType, Operation, invoke, log};
use tlfs::{HvMessage, HvMessageBody, HvRegisterName};

/// VTL 0's code, then VTL 1's, then the data page, one page each.
const VTL0_CODE: u64 = 0x1000;
const VTL1_CODE: u64 = 0x2000;
const DATA: u64 = 0x3000;
const SECRET: u8 = 0x5a;
/// Real mode: `mov al, [0x3000]`, `out <port>, al`, `hlt`.
const fn code(port: u8) -> [u8; 6] {
    [0xa0, 0x00, 0x30, 0xe6, port, 0xf4]
}
const VTL0_PORT: u8 = 0xe0;
const VTL1_PORT: u8 = 0xe2;

struct VsmGuest {
    partition: CapSlot,
    vp: CapSlot,
    memory: CapSlot,
    exits: CapSlot,
    exit_cap: CapSlot,
    /// What pays for the views' tables.
    untyped: CapSlot,
}

impl VsmGuest {
    fn new(own: &mut Own) -> Result<VsmGuest, ErrorCode> {
        let memory = own.retype(ObjectType::MEMORY, 3)?;
        let partition = own.retype(ObjectType::PARTITION, 0)?;
        let vp = own.retype(ObjectType::VP, 0)?;
        let exits = own.retype(ObjectType::ENDPOINT, 0)?;
        let exit_cap = own.slot();
        let guest = VsmGuest { partition, vp, memory, exits, exit_cap, untyped: own.untyped };
        invoke(exits, Operation::CAP_MINT, &[u64::from(exit_cap.0), bits(Rights::new().with_send(true)), 1])?;
        let mut window = Window::map(own.task, memory, WINDOW, 0, 3, true)?;
        if let Some(bytes) = window.bytes_mut() {
            bytes[..6].copy_from_slice(&code(VTL0_PORT));
            bytes[0x1000..0x1006].copy_from_slice(&code(VTL1_PORT));
            bytes[0x2000] = SECRET;
        }
        window.unmap(own.task)?;
        let all = Rights::new().with_read(true).with_write(true).with_execute(true);
        invoke(partition, Operation::PARTITION_MAP, &[u64::from(memory.0), VTL0_CODE, bits(all), 3])?;
        invoke(vp, Operation::VP_CONFIGURE, &[u64::from(partition.0), 0])?;
        invoke(vp, Operation::VP_SET_HANDLER, &[u64::from(exit_cap.0), 0])?;
        set(vp, HvRegisterName::RIP, VTL0_CODE)?;
        Ok(guest)
    }

    fn end(self) {
        let _ = invoke(self.vp, Operation::VP_SUSPEND, &[]);
        for slot in [self.vp, self.partition, self.exit_cap, self.exits, self.memory] {
            delete(slot);
        }
    }
}

/// What one exit said: its VTL and what it was.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// A port write of AL.
    Out {
        vtl: u8,
        port: u16,
        al: u8,
    },
    /// A refused access to a GPA.
    Memory {
        vtl: u8,
        gpa: u64,
    },
    Other,
}

fn seen(words: &[u64]) -> Seen {
    match HvMessage::from_words(words).ok().and_then(|m| m.parse().ok()) {
        Some(HvMessageBody::X64IoPortIntercept(m)) => {
            Seen::Out { vtl: m.header.execution_state.vtl(), port: m.port_number, al: m.rax as u8 }
        }
        Some(HvMessageBody::UnmappedGpa(m) | HvMessageBody::GpaIntercept(m)) => {
            Seen::Memory { vtl: m.header.execution_state.vtl(), gpa: m.guest_physical_address }
        }
        _ => Seen::Other,
    }
}

/// Resumes the VP at its exit (RIP set to `rip` if given) and waits for the next.
fn resume(guest: &VsmGuest, rip: Option<u64>) -> Result<Seen, ErrorCode> {
    let mut reply = Message::new(labels::VP_RESUME);
    let words = match rip {
        Some(rip) => &[1, u64::from(HvRegisterName::RIP.0), rip, 0][..],
        None => &[0][..],
    };
    for &w in words {
        let _ = reply.push(w);
    }
    let got = tessera_rt::reply_recv_timeout(guest.exits, &reply, 100)?;
    Ok(seen(got.message.words()))
}

const INVALID_STATE: &[ErrorCode] = &[ErrorCode::INVALID_STATE];
const INVALID_ARGUMENT: &[ErrorCode] = &[ErrorCode::INVALID_ARGUMENT];
const BAD_ADDRESS: &[ErrorCode] = &[ErrorCode::BAD_ADDRESS];

fn refused(what: &'static str, expected: &'static [ErrorCode], got: Result<Message, ErrorCode>) {
    log!("{}", Check { what, expected }.report(got.map(drop)));
}

pub fn vtl_contexts_and_views(own: &mut Own) {
    match VsmGuest::new(own) {
        Ok(guest) => {
            run(&guest);
            guest.end();
        }
        Err(e) => report("VTL probe", false, format_args!("could not set up: {e:?}")),
    }
    own.reset();
}

fn run(g: &VsmGuest) {
    let (partition, vp) = (g.partition, g.vp);
    // Without VTL 1.
    refused(
        "PARTITION_PROTECT without VTL 1",
        INVALID_STATE,
        invoke(partition, Operation::PARTITION_PROTECT, &[DATA, 1, 0]),
    );
    refused("VP_ENABLE_VTL 1 in a partition without it", INVALID_STATE, invoke(vp, Operation::VP_ENABLE_VTL, &[1]));
    refused("VP_SWITCH_VTL 1 without it", INVALID_STATE, invoke(vp, Operation::VP_SWITCH_VTL, &[1]));
    refused(
        "PARTITION_HOLD_WRITE in VTL 1's view without it",
        INVALID_STATE,
        invoke(partition, Operation::PARTITION_HOLD_WRITE, &[VTL0_CODE, 1, 1]),
    );
    refused("PARTITION_ENABLE_VTL 2", INVALID_ARGUMENT, invoke(partition, Operation::PARTITION_ENABLE_VTL, &[2]));
    // With it.
    let before = bytes_left(g.untyped);
    let enabled = invoke(partition, Operation::PARTITION_ENABLE_VTL, &[1]).map(drop);
    log!("{}", Check { what: "PARTITION_ENABLE_VTL 1", expected: &[] }.report_allowed(enabled));
    refused("PARTITION_ENABLE_VTL 1 again", INVALID_STATE, invoke(partition, Operation::PARTITION_ENABLE_VTL, &[1]));
    refused("VP_ENABLE_VTL 2", INVALID_ARGUMENT, invoke(vp, Operation::VP_ENABLE_VTL, &[2]));
    let enabled = invoke(vp, Operation::VP_ENABLE_VTL, &[1]).map(drop);
    log!("{}", Check { what: "VP_ENABLE_VTL 1", expected: &[] }.report_allowed(enabled));
    refused("VP_ENABLE_VTL 1 again", INVALID_STATE, invoke(vp, Operation::VP_ENABLE_VTL, &[1]));
    let write_only = bits(Rights::new().with_write(true));
    refused(
        "PARTITION_PROTECT write without read",
        INVALID_ARGUMENT,
        invoke(partition, Operation::PARTITION_PROTECT, &[DATA, 1, write_only]),
    );
    refused(
        "PARTITION_PROTECT of an unmapped page",
        BAD_ADDRESS,
        invoke(partition, Operation::PARTITION_PROTECT, &[0x9000, 1, 0]),
    );
    if let Err(e) = contexts(g) {
        report("VTL contexts probe", false, format_args!("could not run: {e:?}"));
    }
    if let Err(e) = disable(g, before) {
        report("VTL disable probe", false, format_args!("could not run: {e:?}"));
    }
}

/// VTL 1 goes as at a reset: VTL 0 reads the page again.
fn disable(g: &VsmGuest, before: u64) -> Result<(), ErrorCode> {
    let (partition, vp) = (g.partition, g.vp);
    invoke(partition, Operation::PARTITION_PROTECT, &[DATA, 1, 0])?;
    refused(
        "PARTITION_DISABLE_VTL 1 while a VP has VTL 1",
        INVALID_STATE,
        invoke(partition, Operation::PARTITION_DISABLE_VTL, &[1]),
    );
    invoke(vp, Operation::VP_SUSPEND, &[])?;
    invoke(vp, Operation::VP_RESET, &[])?;
    let disabled = invoke(partition, Operation::PARTITION_DISABLE_VTL, &[1]).map(drop);
    log!("{}", Check { what: "PARTITION_DISABLE_VTL 1 after VP_RESET", expected: &[] }.report_allowed(disabled));
    let after = bytes_left(g.untyped);
    report(
        "the untyped after PARTITION_DISABLE_VTL has what it had before PARTITION_ENABLE_VTL",
        after == before,
        format_args!("{after} bytes, {before} before"),
    );
    refused("PARTITION_DISABLE_VTL 1 again", INVALID_STATE, invoke(partition, Operation::PARTITION_DISABLE_VTL, &[1]));
    set(vp, HvRegisterName::RIP, VTL0_CODE)?;
    invoke(vp, Operation::VP_START, &[])?;
    let after = seen(tessera_rt::recv_timeout(g.exits, 100)?.message.words());
    let want = Seen::Out { vtl: 0, port: u16::from(VTL0_PORT), al: SECRET };
    report("VTL 0 reads the page it could not once VTL 1 is gone", after == want, format_args!("{after:?}"));
    Ok(())
}

/// Shared and private registers across a switch, then the two views.
fn contexts(g: &VsmGuest) -> Result<(), ErrorCode> {
    let (partition, vp) = (g.partition, g.vp);
    set(vp, HvRegisterName::RBX, 0x1234)?;
    invoke(vp, Operation::VP_SWITCH_VTL, &[1])?;
    let (rip1, rbx1) = (get(vp, HvRegisterName::RIP)?, get(vp, HvRegisterName::RBX)?);
    set(vp, HvRegisterName::RIP, VTL1_CODE)?;
    invoke(vp, Operation::VP_SWITCH_VTL, &[0])?;
    let rip0 = get(vp, HvRegisterName::RIP)?;
    report(
        "VP_SWITCH_VTL keeps RIP per VTL and shares RBX",
        rip1 != VTL0_CODE && rbx1 == 0x1234 && rip0 == VTL0_CODE,
        format_args!("VTL 1 RIP {rip1:#x} RBX {rbx1:#x}, VTL 0 RIP {rip0:#x}"),
    );

    invoke(vp, Operation::VP_START, &[])?;
    let first = seen(tessera_rt::recv_timeout(g.exits, 100)?.message.words());
    let want = Seen::Out { vtl: 0, port: u16::from(VTL0_PORT), al: SECRET };
    report("VTL 0 reads the data page", first == want, format_args!("{first:?}"));

    invoke(partition, Operation::PARTITION_PROTECT, &[DATA, 1, 0])?;
    let denied = resume(g, Some(VTL0_CODE))?;
    let want = Seen::Memory { vtl: 0, gpa: DATA };
    report("VTL 0's read of the page it may not read exits", denied == want, format_args!("{denied:?}"));

    invoke(vp, Operation::VP_SWITCH_VTL, &[1])?;
    let upper = resume(g, None)?;
    let want = Seen::Out { vtl: 1, port: u16::from(VTL1_PORT), al: SECRET };
    report("VTL 1 reads the page VTL 0 may not", upper == want, format_args!("{upper:?}"));

    invoke(vp, Operation::VP_SWITCH_VTL, &[0])?;
    let read_only = bits(Rights::new().with_read(true));
    invoke(partition, Operation::PARTITION_PROTECT, &[DATA, 1, read_only])?;
    let again = resume(g, Some(VTL0_CODE))?;
    let want = Seen::Out { vtl: 0, port: u16::from(VTL0_PORT), al: SECRET };
    report("VTL 0 reads the page once allowed again", again == want, format_args!("{again:?}"));
    Ok(())
}

/// The bytes left in an untyped (`CAP_IDENTIFY` MR3).
fn bytes_left(untyped: CapSlot) -> u64 {
    invoke(untyped, Operation::CAP_IDENTIFY, &[]).ok().and_then(|m| m.words().get(3).copied()).unwrap_or(0)
}
