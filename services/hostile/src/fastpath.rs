//! Confusing the IPC fast path (ARCHITECTURE §4.7): a server thread of its
//! own echoes calls, and the task calls it in ways the fast path must
//! decline or get exactly right: wrong rights, a badged capability (the
//! reply carries no badge), a kernel label, a message too long for
//! registers, capabilities to transfer without GRANT, and endpoints
//! destroyed under a blocked caller and under the waiting server. Each
//! line is the same whatever path the kernel takes (`ipc=slow` boots with
//! the general path alone; `tests/fastpath.rs` compares the two runs).

use crate::objects::{Own, bits, delete, report};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use tessera_rt::abi::{Rights, Sysnum, labels};
use tessera_rt::{CapSlot, ErrorCode, Message, MessageInfo, ObjectType, Operation, invoke, sys};

/// The task's priority (`tests/manifests/hostile.toml`): its threads run at it.
const PRIORITY: u64 = 10;
/// Where the threads' stack pages are mapped.
const STACKS_AT: u64 = 0x6e00_0000;
const PAGE: u64 = 4096;
const BADGE: u64 = 0xfa57;
/// Calls the echo makes before the checked ones: the server is then
/// waiting in its receive, where the fast path finds it.
const WARM_UP: u32 = 20;
/// Yields that let a thread of its own reach its next block.
const YIELDS: u32 = 4;

/// The endpoint the server serves, and what ended it (error + 1).
static SERVED: AtomicU32 = AtomicU32::new(0);
static SERVER_ENDED: AtomicU64 = AtomicU64::new(0);
/// The endpoint the blocked caller calls, and how its call ended (error + 1).
static CALLED: AtomicU32 = AtomicU32::new(0);
static CALLER_ENDED: AtomicU64 = AtomicU64::new(0);

/// Echoes every call: the sender's badge, its first two words and its label.
fn server() -> ! {
    let ep = u64::from(SERVED.load(SeqCst));
    let mut got = sys::syscall(Sysnum::RECV, ep, MessageInfo::new(), [0; 4], 0);
    while got.error == ErrorCode::OK {
        let reply = MessageInfo::new().with_label(got.info.label()).with_length(4);
        let words = [got.badge, got.mrs[0], got.mrs[1], u64::from(got.info.label())];
        got = sys::syscall(Sysnum::REPLY_RECV, ep, reply, words, 0);
    }
    SERVER_ENDED.store(got.error.0 + 1, SeqCst);
    exit()
}

/// Calls an endpoint nobody serves: it blocks until the endpoint goes.
fn blocked_caller() -> ! {
    let info = MessageInfo::new().with_label(1).with_length(1);
    let got = sys::syscall(Sysnum::CALL, u64::from(CALLED.load(SeqCst)), info, [1, 0, 0, 0], 0);
    CALLER_ENDED.store(got.error.0 + 1, SeqCst);
    exit()
}

fn exit() -> ! {
    loop {
        let _ = sys::syscall(Sysnum::EXIT, 0, MessageInfo::new(), [0; 4], 0);
    }
}

/// Starts `entry` on a thread of its own with a stack page at `stack_at`;
/// returns the thread, its context and its stack.
fn start(own: &mut Own, entry: fn() -> !, stack_at: u64) -> Result<[CapSlot; 3], ErrorCode> {
    let sched = own.retype(ObjectType::SCHED_CONTEXT, 0)?;
    invoke(sched, Operation::SCHED_CONFIGURE, &[PRIORITY, 0, 0])?;
    let stack = own.retype(ObjectType::MEMORY, 1)?;
    let rw = Rights::new().with_read(true).with_write(true);
    invoke(own.task, Operation::TASK_MAP, &[u64::from(stack.0), stack_at, bits(rw), 1])?;
    let thread = own.retype(ObjectType::THREAD, 0)?;
    let args = [u64::from(own.task.0), entry as usize as u64, stack_at + PAGE - 8, 0, 0, u64::from(sched.0), 0];
    invoke(thread, Operation::THREAD_CONFIGURE, &args)?;
    invoke(thread, Operation::THREAD_START, &[])?;
    Ok([thread, sched, stack])
}

fn call(slot: CapSlot, info: MessageInfo, words: [u64; 4]) -> sys::SysReturn {
    sys::syscall(Sysnum::CALL, u64::from(slot.0), info, words, 0)
}

/// Lets the task's other threads (at its priority) run until they block.
fn yield_now() {
    for _ in 0..YIELDS {
        let _ = sys::syscall(Sysnum::YIELD, 0, MessageInfo::new(), [0; 4], 0);
    }
}

/// How a thread of its own ended (the error its thread stored + 1 in
/// `cell`), once it has: the task yields until then.
fn await_end(cell: &AtomicU64) -> ErrorCode {
    loop {
        match cell.load(SeqCst) {
            0 => yield_now(),
            code => return ErrorCode(code - 1),
        }
    }
}

/// A call's outcome as one line: the error, the reply's badge, label and words.
fn outcome(r: &sys::SysReturn) -> (ErrorCode, u64, u32, [u64; 4]) {
    (r.error, r.badge, r.info.label(), if r.error == ErrorCode::OK { r.mrs } else { [0; 4] })
}

pub fn confuse_the_fast_path(own: &mut Own) {
    let result = (|| -> Result<(), ErrorCode> {
        let ep = own.retype(ObjectType::ENDPOINT, 0)?;
        SERVED.store(ep.0, SeqCst);
        let server = start(own, server, STACKS_AT)?;
        let echo = MessageInfo::new().with_label(7).with_length(2);
        let warm = (0..WARM_UP)
            .all(|i| outcome(&call(ep, echo, [i.into(), 2, 0, 0])) == (ErrorCode::OK, 0, 7, [0, i.into(), 2, 7]));
        report("fast path: echo calls to a server thread", warm, format_args!("{WARM_UP} round trips"));

        // A badged capability: the server sees the badge, the caller's reply has none.
        let badged = own.slot();
        let send = bits(Rights::new().with_send(true));
        invoke(ep, Operation::CAP_MINT, &[u64::from(badged.0), send, BADGE])?;
        let got = outcome(&call(badged, echo, [5, 6, 0, 0]));
        report(
            "fast path: a call through a badged capability",
            got == (ErrorCode::OK, 0, 7, [BADGE, 5, 6, 7]),
            format_args!("{got:x?} (expected the badge to the server only)"),
        );

        // Rights the operation needs and the capability lacks.
        let receive_only = own.slot();
        invoke(ep, Operation::CAP_DERIVE, &[u64::from(receive_only.0), bits(Rights::new().with_receive(true))])?;
        let got = call(receive_only, echo, [0; 4]).error;
        report("fast path: CALL without SEND", got == ErrorCode::NO_RIGHTS, format_args!("{got:?}"));
        let got = sys::syscall(Sysnum::REPLY_RECV, u64::from(badged.0), echo, [0; 4], 0).error;
        report("fast path: REPLY_RECV without RECEIVE", got == ErrorCode::NO_RIGHTS, format_args!("{got:?}"));

        // A label only the kernel gives, words past the registers (the
        // server has no IPC buffer) and a capability without GRANT.
        let forged = MessageInfo::new().with_label(labels::NOTIFICATION);
        let got = call(ep, forged, [0; 4]).error;
        report("fast path: a call with a kernel label", got == ErrorCode::INVALID_ARGUMENT, format_args!("{got:?}"));
        let long = MessageInfo::new().with_label(7).with_length(6);
        let got = call(ep, long, [0; 4]).error;
        report(
            "fast path: six words to a server without an IPC buffer",
            got == ErrorCode::MESSAGE_TOO_LONG,
            format_args!("{got:?}"),
        );
        let request = Message::from_words(7, &[1, 2]).unwrap_or(Message::new(7));
        let got = tessera_rt::call_with_caps(badged, &request, &[ep]).err().unwrap_or(ErrorCode::OK);
        report(
            "fast path: a capability through a capability without GRANT",
            got == ErrorCode::NO_RIGHTS,
            format_args!("{got:?}"),
        );
        let got = outcome(&call(ep, echo, [8, 9, 0, 0]));
        report(
            "fast path: the server still answers after the refusals",
            got == (ErrorCode::OK, 0, 7, [0, 8, 9, 7]),
            format_args!("{got:x?}"),
        );

        // An endpoint destroyed under a caller blocked on it.
        let nobody = own.retype(ObjectType::ENDPOINT, 0)?;
        CALLED.store(nobody.0, SeqCst);
        let caller = start(own, blocked_caller, STACKS_AT + PAGE)?;
        yield_now();
        delete(nobody);
        let ended = await_end(&CALLER_ENDED);
        report(
            "fast path: endpoint destroyed under a blocked caller",
            ended == ErrorCode::PEER_GONE,
            format_args!("{ended:?}"),
        );

        // The server's endpoint destroyed while it waits in REPLY_RECV.
        delete(badged);
        delete(receive_only);
        delete(ep);
        let ended = await_end(&SERVER_ENDED);
        report(
            "fast path: endpoint destroyed under the waiting server",
            ended == ErrorCode::PEER_GONE,
            format_args!("{ended:?}"),
        );
        let _ = invoke(own.task, Operation::TASK_UNMAP, &[STACKS_AT, 2]);
        server.into_iter().chain(caller).for_each(delete);
        Ok(())
    })();
    if let Err(e) = result {
        report("fast path: the checks", false, format_args!("could not run: {e:?}"));
    }
    own.reset();
}
