//! Typed system calls.
//!
//! Messages are [`Message`]s: the first [`REGISTER_WORDS`] words travel in
//! registers, the rest through the IPC buffer; capabilities to transfer are
//! named in the IPC buffer. Every call returns the kernel's [`ErrorCode`] as
//! the `Err` of a `Result`.

use crate::{arch, ipc_buffer, sys};
use abi::invoke::Operation;
use abi::{Badge, CapSlot, ErrorCode, MAX_MESSAGE_WORDS, MAX_TRANSFER_CAPS, MessageInfo, REGISTER_WORDS, Sysnum};
use tessera_idl::{Message, Receiver, Transport};

/// A message received, with the sender's badge and the number of
/// capabilities that arrived (in the slots named by
/// [`ipc_buffer::set_receive_slots`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub badge: Badge,
    pub message: Message,
    pub caps: u8,
}

/// Puts `message` and `caps` where the kernel expects them.
#[inline]
fn stage(message: &Message, caps: &[CapSlot], non_blocking: bool) -> Result<(MessageInfo, [u64; 4]), ErrorCode> {
    if caps.len() > MAX_TRANSFER_CAPS {
        return Err(ErrorCode::INVALID_ARGUMENT);
    }
    let words = message.words();
    if words.len() > REGISTER_WORDS {
        ipc_buffer::write_words(REGISTER_WORDS, &words[REGISTER_WORDS..])?;
    }
    if !caps.is_empty() {
        ipc_buffer::set_send_caps(caps)?;
    }
    // Zero past the message's length: a message keeps those words zero.
    let mrs = message.register_words();
    let info = message.info().with_caps(caps.len() as u8).with_non_blocking(non_blocking);
    Ok((info, mrs))
}

/// Writes what the kernel returned into `message`; returns the badge and
/// the number of capabilities received.
#[inline]
fn collect(ret: sys::SysReturn, message: &mut Message) -> Result<(Badge, u8), ErrorCode> {
    ret.error.result()?;
    let len = usize::from(ret.info.length()).min(MAX_MESSAGE_WORDS);
    // `len` is at most MAX_MESSAGE_WORDS, so this cannot fail. Every word
    // below it is written here, so only the words it drops are cleared.
    let _ = message.set_received(ret.info.label(), len, ret.mrs);
    if len > REGISTER_WORDS {
        ipc_buffer::read_words(REGISTER_WORDS, &mut message.words_mut()[REGISTER_WORDS..]);
    }
    Ok((Badge(ret.badge), ret.info.caps()))
}

/// One syscall that sends `message` (if any words) and receives into it.
/// Inlined, so each wrapper's constant arguments (no capabilities, no
/// timeout) fold away.
#[inline]
fn transfer(
    sysnum: Sysnum,
    slot: CapSlot,
    message: &mut Message,
    caps: &[CapSlot],
    non_blocking: bool,
    timeout: u64,
) -> Result<(Badge, u8), ErrorCode> {
    transfer_until(sysnum, slot, message, caps, non_blocking, Until::Ticks(timeout))
}

#[inline(always)]
fn transfer_until(
    sysnum: Sysnum,
    slot: CapSlot,
    message: &mut Message,
    caps: &[CapSlot],
    non_blocking: bool,
    until: Until,
) -> Result<(Badge, u8), ErrorCode> {
    let (info, mrs) = stage(message, caps, non_blocking)?;
    let (info, r12) = until.encode(info);
    collect(sys::syscall(sysnum, u64::from(slot.0), info, mrs, r12), message)
}

/// How long a receive or wait may block (the ABI's Timeouts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// At most this many ticks ([`abi::TICK_HZ`]); 0: for ever.
    Ticks(u64),
    /// Until the TSC reaches this absolute deadline (one passed, 0
    /// included, times out at once once what is there is taken).
    Tsc(u64),
}

impl Until {
    /// The MessageInfo flag and `r12` the kernel reads.
    fn encode(self, info: MessageInfo) -> (MessageInfo, u64) {
        match self {
            Until::Ticks(ticks) => (info, ticks),
            Until::Tsc(deadline) => (info.with_tsc_deadline(true), deadline),
        }
    }
}

/// Sends `request` on `endpoint` (needs SEND) and waits for the reply.
pub fn call(endpoint: CapSlot, request: &Message) -> Result<Message, ErrorCode> {
    let mut message = request.clone();
    call_in_place(endpoint, &mut message)?;
    Ok(message)
}

/// [`call`] with one buffer: `message` is the request, then the reply.
pub fn call_in_place(endpoint: CapSlot, message: &mut Message) -> Result<(), ErrorCode> {
    transfer(Sysnum::CALL, endpoint, message, &[], false, 0).map(drop)
}

/// [`call`], transferring `caps` with the request (needs GRANT on the
/// endpoint); the reply may carry capabilities too.
pub fn call_with_caps(endpoint: CapSlot, request: &Message, caps: &[CapSlot]) -> Result<Received, ErrorCode> {
    let mut message = request.clone();
    let (badge, caps) = transfer(Sysnum::CALL, endpoint, &mut message, caps, false, 0)?;
    Ok(Received { badge, message, caps })
}

/// Sends `message` on `endpoint` without waiting for a reply; blocks until
/// a receiver takes it.
pub fn send(endpoint: CapSlot, message: &Message) -> Result<(), ErrorCode> {
    send_with_caps(endpoint, message, &[], false)
}

/// [`send`], but fails with `WOULD_BLOCK` instead of blocking.
pub fn try_send(endpoint: CapSlot, message: &Message) -> Result<(), ErrorCode> {
    send_with_caps(endpoint, message, &[], true)
}

/// [`send`] transferring `caps`, blocking or not.
pub fn send_with_caps(
    endpoint: CapSlot,
    message: &Message,
    caps: &[CapSlot],
    non_blocking: bool,
) -> Result<(), ErrorCode> {
    let (info, mrs) = stage(message, caps, non_blocking)?;
    sys::syscall(Sysnum::SEND, u64::from(endpoint.0), info, mrs, 0).error.result()
}

/// Waits for a message on `endpoint` (needs RECEIVE).
pub fn recv(endpoint: CapSlot) -> Result<Received, ErrorCode> {
    recv_timeout(endpoint, 0)
}

/// [`recv`], giving up with `TIMEOUT` after `ticks` (0 = never).
pub fn recv_timeout(endpoint: CapSlot, ticks: u64) -> Result<Received, ErrorCode> {
    let mut message = Message::new(0);
    let (badge, caps) = transfer(Sysnum::RECV, endpoint, &mut message, &[], false, ticks)?;
    Ok(Received { badge, message, caps })
}

/// [`recv`], giving up with `TIMEOUT` at `until`.
pub fn recv_until(endpoint: CapSlot, until: Until) -> Result<Received, ErrorCode> {
    let mut message = Message::new(0);
    let (badge, caps) = transfer_until(Sysnum::RECV, endpoint, &mut message, &[], false, until)?;
    Ok(Received { badge, message, caps })
}

/// [`recv`] into `message`; returns the badge and the capabilities received.
pub fn recv_in_place(endpoint: CapSlot, message: &mut Message) -> Result<(Badge, u8), ErrorCode> {
    message.clear(0);
    transfer(Sysnum::RECV, endpoint, message, &[], false, 0)
}

/// Replies to the last caller.
pub fn reply(message: &Message) -> Result<(), ErrorCode> {
    let (info, mrs) = stage(message, &[], false)?;
    sys::syscall(Sysnum::REPLY, 0, info, mrs, 0).error.result()
}

/// Replies to the last caller, then waits for a message on `endpoint`.
pub fn reply_recv(endpoint: CapSlot, reply: &Message) -> Result<Received, ErrorCode> {
    let mut message = reply.clone();
    let (badge, caps) = reply_recv_in_place(endpoint, &mut message)?;
    Ok(Received { badge, message, caps })
}

/// [`reply_recv`], giving up the wait with `TIMEOUT` after `ticks` (0 =
/// never); the reply is sent either way.
pub fn reply_recv_timeout(endpoint: CapSlot, reply: &Message, ticks: u64) -> Result<Received, ErrorCode> {
    let mut message = reply.clone();
    let (badge, caps) = transfer(Sysnum::REPLY_RECV, endpoint, &mut message, &[], false, ticks)?;
    Ok(Received { badge, message, caps })
}

/// [`reply_recv`], giving up the wait with `TIMEOUT` at `until`; the
/// reply is sent either way.
pub fn reply_recv_until(endpoint: CapSlot, reply: &Message, until: Until) -> Result<Received, ErrorCode> {
    let mut message = reply.clone();
    let (badge, caps) = transfer_until(Sysnum::REPLY_RECV, endpoint, &mut message, &[], false, until)?;
    Ok(Received { badge, message, caps })
}

/// [`reply_recv`] with one buffer: `message` is the reply, then the next request.
pub fn reply_recv_in_place(endpoint: CapSlot, message: &mut Message) -> Result<(Badge, u8), ErrorCode> {
    transfer(Sysnum::REPLY_RECV, endpoint, message, &[], false, 0)
}

/// [`reply_recv_until`] with the caller's buffers: replies `reply`, then
/// receives into `into` (left as it was on an error, `TIMEOUT` included).
pub fn reply_recv_into_until(
    endpoint: CapSlot,
    reply: &Message,
    into: &mut Message,
    until: Until,
) -> Result<(Badge, u8), ErrorCode> {
    let (info, mrs) = stage(reply, &[], false)?;
    let (info, r12) = until.encode(info);
    collect(sys::syscall(Sysnum::REPLY_RECV, u64::from(endpoint.0), info, mrs, r12), into)
}

/// [`recv_until`] into `message` (left as it was on an error).
pub fn recv_in_place_until(endpoint: CapSlot, message: &mut Message, until: Until) -> Result<(Badge, u8), ErrorCode> {
    let (info, r12) = until.encode(MessageInfo::new());
    collect(sys::syscall(Sysnum::RECV, u64::from(endpoint.0), info, [0; REGISTER_WORDS], r12), message)
}

/// [`reply_recv_in_place`], transferring `caps` with the reply (the
/// caller's endpoint capability needs GRANT, else the reply fails with
/// `NO_RIGHTS` and the syscall ends there).
pub fn reply_recv_with_caps(
    endpoint: CapSlot,
    message: &mut Message,
    caps: &[CapSlot],
) -> Result<(Badge, u8), ErrorCode> {
    transfer(Sysnum::REPLY_RECV, endpoint, message, caps, false, 0)
}

/// Sets `bits` on a notification (needs SEND).
pub fn signal(notification: CapSlot, bits: u64) -> Result<(), ErrorCode> {
    let info = MessageInfo::new().with_length(1);
    sys::syscall(Sysnum::SIGNAL, u64::from(notification.0), info, [bits, 0, 0, 0], 0).error.result()
}

fn wait_with(notification: CapSlot, non_blocking: bool, ticks: u64) -> Result<u64, ErrorCode> {
    wait_with_until(notification, non_blocking, Until::Ticks(ticks))
}

fn wait_with_until(notification: CapSlot, non_blocking: bool, until: Until) -> Result<u64, ErrorCode> {
    let (info, r12) = until.encode(MessageInfo::new().with_non_blocking(non_blocking));
    let ret = sys::syscall(Sysnum::WAIT, u64::from(notification.0), info, [0; 4], r12);
    // The kernel returns the bits where a receive returns the badge (rdi).
    ret.error.result().map(|()| ret.badge)
}

/// Waits for bits on a notification (needs RECEIVE) and returns them.
pub fn wait(notification: CapSlot) -> Result<u64, ErrorCode> {
    wait_with(notification, false, 0)
}

/// [`wait`], giving up with `TIMEOUT` after `ticks` (0 = never).
pub fn wait_timeout(notification: CapSlot, ticks: u64) -> Result<u64, ErrorCode> {
    wait_with(notification, false, ticks)
}

/// [`wait`], giving up with `TIMEOUT` at `until`.
pub fn wait_until(notification: CapSlot, until: Until) -> Result<u64, ErrorCode> {
    wait_with_until(notification, false, until)
}

/// The bits pending on a notification, without blocking (`WOULD_BLOCK` if none).
pub fn poll(notification: CapSlot) -> Result<u64, ErrorCode> {
    wait_with(notification, true, 0)
}

/// Performs `operation` on the object `cap` names, with `args` as MR0...;
/// the results are the returned message's words.
pub fn invoke(cap: CapSlot, operation: Operation, args: &[u64]) -> Result<Message, ErrorCode> {
    let mut message = Message::from_words(operation.0, args).ok_or(ErrorCode::MESSAGE_TOO_LONG)?;
    invoke_in_place(cap, &mut message)?;
    Ok(message)
}

/// [`invoke`] with one buffer: `message` is the request (its label the
/// operation), then the results.
pub fn invoke_in_place(cap: CapSlot, message: &mut Message) -> Result<(), ErrorCode> {
    transfer(Sysnum::INVOKE, cap, message, &[], false, 0).map(drop)
}

/// The kernel's tick count (abi::TICK_HZ per second), monotonic.
pub fn ticks() -> u64 {
    sys::syscall(Sysnum::GET_TICKS, 0, MessageInfo::new(), [0; 4], 0).badge
}

/// Gives up the rest of the time slice.
pub fn yield_now() {
    let _ = sys::syscall(Sysnum::YIELD, 0, MessageInfo::new(), [0; 4], 0);
}

/// Ends the calling thread.
pub fn exit() -> ! {
    let _ = sys::syscall(Sysnum::EXIT, 0, MessageInfo::new(), [0; 4], 0);
    // EXIT does not return; if it ever did, fault so the supervisor hears of it.
    arch::trap()
}

/// The kernel, as the transport of interface clients and the receiver of
/// servers: `console_api::Client::new(Kernel, slot)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Kernel;

impl Transport for Kernel {
    fn call(&self, endpoint: CapSlot, message: &mut Message) -> Result<(), ErrorCode> {
        call_in_place(endpoint, message)
    }
}

/// The kernel as a transport whose calls never wait for a receiver: one
/// to a server that is not waiting at its endpoint (busy, or dead and not
/// yet restarted) fails at once with WOULD_BLOCK. For the supervisor, which
/// restarts the servers it calls and so must never wait on one.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoWait;

impl Transport for NoWait {
    fn call(&self, endpoint: CapSlot, message: &mut Message) -> Result<(), ErrorCode> {
        transfer(Sysnum::CALL, endpoint, message, &[], true, 0).map(drop)
    }
}

impl Receiver for Kernel {
    fn recv(&self, endpoint: CapSlot, message: &mut Message) -> Result<Badge, ErrorCode> {
        recv_in_place(endpoint, message).map(|(badge, _)| badge)
    }

    fn reply_recv(&self, endpoint: CapSlot, message: &mut Message) -> Result<Badge, ErrorCode> {
        reply_recv_in_place(endpoint, message).map(|(badge, _)| badge)
    }
}

/// Serves `endpoint` forever with `handler`, which turns each request into
/// its reply in place (typically an interface's `dispatch_in_place`); see
/// [`tessera_idl::serve`]. If receiving fails for good, logs why and exits.
pub fn serve(endpoint: CapSlot, handler: impl FnMut(Badge, &mut Message)) -> ! {
    let error = tessera_idl::serve(&Kernel, endpoint, handler);
    crate::log!("cannot receive on slot {}: {:?}; exiting", endpoint.0, error);
    exit()
}
