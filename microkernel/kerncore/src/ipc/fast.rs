//! The IPC fast path's state changes (after seL4's `fastpath.c`): a CALL
//! that finds its server waiting, a REPLY_RECV that answers a caller or a
//! VP's exit and finds no sender queued, and a VM exit that finds its
//! handler waiting, each switching straight from one thread to the other
//! on the same CPU.
//!
//! Each gives the state exactly as the slow path ([`Ipc::call`],
//! [`Ipc::reply_recv`] or [`Ipc::fault_with`], then [`Ipc::schedule`])
//! leaves it when that schedule picks the same thread. Anything unusual
//! declines ([`Fast::Declined`]) with nothing changed, and the slow path
//! runs: a message with capabilities or longer than the registers (a VM
//! exit's may be longer: its words come from the kernel), a thread fault,
//! a receive that would not block, a peer on another CPU, one not alone at the highest ready
//! priority or out of budget, a queued sender, a bound notification with
//! bits. The arch layer's [`Handoff`] checks what it alone knows of the
//! peer (alive, a VP or not) and moves the message, once every check has
//! passed and before anything changes.
//!
//! The host tests run the same operation sequences both ways and compare
//! the whole state after every step (`fast/tests.rs`).

use super::{Block, EndpointId, Ipc, Message, ReplyRight, SyscallResult, ThreadState, Where};
use crate::sched::{ThreadId, Turn};
use abi::{Badge, ErrorCode, MessageInfo, REGISTER_WORDS};

/// What a fast path did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fast {
    /// Nothing: the slow path must run.
    Declined,
    /// The CPU's current thread is now this one, with its result set.
    Switched(ThreadId),
    /// The syscall ended with an error result (the reply's transfer
    /// failed, as the slow path's would): schedule as after the slow path.
    Ended,
}

/// The arch layer's part of a fast switch to `peer`.
pub trait Handoff {
    /// The fast path may switch to `peer` (the arch layer can run it).
    fn eligible(&self, peer: ThreadId) -> bool;
    /// Moves the message to `peer`. For a call or a fault, an error
    /// declines, so it must write nothing unless it succeeds; for a
    /// reply, it ends the syscall with that error, as the slow path's.
    fn transfer(&mut self, peer: ThreadId) -> Result<(), ErrorCode>;
}

/// What the receiver of a message without capabilities learns: the label
/// and length (as the arch layer's transfer reports it).
pub fn delivered_info(info: MessageInfo) -> MessageInfo {
    MessageInfo::new().with_label(info.label()).with_length(info.length())
}

/// Travels in registers alone.
fn registers_only(info: MessageInfo) -> bool {
    usize::from(info.length()) <= REGISTER_WORDS && info.caps() == 0
}

impl<const T: usize, const E: usize, const N: usize> Ipc<T, E, N> {
    /// True if `t` holds the reply right of a fault or VM exit: its reply
    /// is an answer ([`Kind::FaultReply`](super::Kind::FaultReply)).
    pub fn owes_fault_answer(&self, t: ThreadId) -> bool {
        matches!(self.threads.get(usize::from(t.0)).map(|tcb| tcb.reply), Some(ReplyRight::Caller { fault: true, .. }))
    }

    /// CALL of `t`, running on `cpu`, on endpoint `ep`, when a receiver
    /// waits there that `eligible` accepts and that would run next on
    /// `cpu`. Switches to the receiver; `t` waits for its reply.
    pub fn fast_call(
        &mut self,
        t: ThreadId,
        ep: EndpointId,
        msg: Message,
        cpu: usize,
        peer: &mut impl Handoff,
    ) -> Fast {
        if !registers_only(msg.info) {
            return Fast::Declined;
        }
        self.fast_deliver(t, ep, msg, cpu, false, peer)
    }

    /// A VM exit (or other kernel-made fault message) of `t`, the VP thread
    /// running on `cpu`, to its handler's endpoint `ep`, as
    /// [`fault_with`](Ipc::fault_with) sends it, when the handler waits
    /// there. Switches to the handler; `t` waits for its answer.
    pub fn fast_fault(
        &mut self,
        t: ThreadId,
        ep: EndpointId,
        msg: Message,
        cpu: usize,
        peer: &mut impl Handoff,
    ) -> Fast {
        if msg.info.caps() != 0 || msg.grant {
            return Fast::Declined;
        }
        self.fast_deliver(t, ep, msg, cpu, true, peer)
    }

    /// `deliver`'s rendezvous on the fast path, for a call or a `fault`.
    fn fast_deliver(
        &mut self,
        t: ThreadId,
        ep: EndpointId,
        msg: Message,
        cpu: usize,
        fault: bool,
        peer: &mut impl Handoff,
    ) -> Fast {
        let Some(r) = self.fast_receiver(t, ep, peer) else { return Fast::Declined };
        if !self.sched.can_hand_over(cpu, t, r) || peer.transfer(r).is_err() {
            return Fast::Declined;
        }
        self.threads[usize::from(t.0)].in_fault = fault;
        self.sched.hand_over(cpu, t, r, Turn::New);
        // `wake` of the receiver, but for the scheduling.
        self.unblock(r);
        let receiver = &mut self.threads[usize::from(r.0)];
        receiver.state = ThreadState::Runnable;
        receiver.result = Some(SyscallResult::ok(delivered_info(msg.info), msg.badge));
        self.await_reply(t, r, msg.grant, fault);
        Fast::Switched(r)
    }

    /// The receiver waiting on `ep` that `t` (runnable) would meet, if the
    /// fast path may take it.
    fn fast_receiver(&mut self, t: ThreadId, ep: EndpointId, peer: &impl Handoff) -> Option<ThreadId> {
        self.runnable(t).ok()?;
        let e = self.endpoint(ep).ok()?;
        let r = self.queue_head(Where::Receivers(e))?;
        peer.eligible(r).then_some(r)
    }

    /// REPLY_RECV of `t`, running on `cpu`, on endpoint `ep` with a reply
    /// of `info`, blocking as `block` says (for ever or until a deadline;
    /// not a poll), when `t` owes a caller, or a VP its
    /// exit's answer, that `eligible` accepts and that would run next on
    /// `cpu`, and the receive would block. A failed transfer ends the
    /// syscall with its error ([`Fast::Ended`]), as the slow path's would.
    /// Else switches to the caller; `t` waits on `ep`.
    pub fn fast_reply_recv(
        &mut self,
        t: ThreadId,
        ep: EndpointId,
        info: MessageInfo,
        block: Block,
        cpu: usize,
        peer: &mut impl Handoff,
    ) -> Fast {
        if info.caps() != 0 || matches!(block, Block::Poll | Block::Expired) || self.runnable(t).is_err() {
            return Fast::Declined;
        }
        let Ok(e) = self.endpoint(ep) else { return Fast::Declined };
        let ReplyRight::Caller { thread: c, fault, .. } = self.threads[usize::from(t.0)].reply else {
            return Fast::Declined;
        };
        let turn = if fault { Turn::Continued } else { Turn::New };
        let bits_waiting =
            self.threads[usize::from(t.0)].bound.is_some_and(|n| self.notifications[n as usize].bits != 0);
        if bits_waiting
            || (!fault && !registers_only(info))
            || self.endpoints[e].senders.head != super::NONE
            || self.threads[usize::from(c.0)].timed
            || !peer.eligible(c)
            || !self.sched.can_hand_over(cpu, t, c)
        {
            return Fast::Declined;
        }
        if let Err(error) = peer.transfer(c) {
            // `reply_recv`'s failed reply: the right is kept, no receive.
            self.complete(t, SyscallResult::error(error));
            return Fast::Ended;
        }
        self.sched.hand_over(cpu, t, c, turn);
        // `reply_to_caller`, but for the scheduling.
        self.threads[usize::from(t.0)].reply = ReplyRight::None;
        let caller = &mut self.threads[usize::from(c.0)];
        (caller.in_fault, caller.state) = (false, ThreadState::Runnable);
        if !fault {
            caller.result = Some(SyscallResult::ok(delivered_info(info), Badge(0)));
        }
        // `receive`'s block, with the scheduler's part done by `hand_over`.
        self.threads[usize::from(t.0)].state = ThreadState::BlockedRecv { ep };
        self.queue_insert(Where::Receivers(e), t);
        self.arm_timeout(t, block);
        Fast::Switched(c)
    }
}

#[cfg(test)]
mod tests;
