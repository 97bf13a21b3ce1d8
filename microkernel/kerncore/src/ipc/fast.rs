//! The IPC fast path's state changes (after seL4's `fastpath.c`): a CALL
//! that finds its server waiting, and a REPLY_RECV that answers a caller
//! and finds no sender queued, each switching straight from one thread to
//! the other on the same CPU.
//!
//! Each returns the thread to run, with the state exactly as the slow path
//! ([`Ipc::call`] or [`Ipc::reply_recv`], then [`Ipc::schedule`]) leaves
//! it when that schedule picks the same thread. Anything unusual declines
//! (`None`) with nothing changed, and the slow path runs: a message with
//! capabilities or longer than the registers, a fault or VM exit on either
//! side, a timeout, a peer on another CPU, one not at the highest ready
//! priority or out of budget, a queued sender, a bound notification with
//! bits. The arch layer copies the register words after a switch (such a
//! message cannot fail to transfer) and checks what it alone knows of the
//! peer through `eligible` (alive, not a VP).
//!
//! The host tests run the same operation sequences both ways and compare
//! the whole state after every step (`tests.rs`, `fast_path_*`).

use super::{Ipc, Message, ReplyRight, SyscallResult, ThreadState, Where};
use crate::sched::ThreadId;
use abi::{Badge, MessageInfo, REGISTER_WORDS};

/// What the receiver of a register-only message learns: the label and
/// length, no capabilities (as the arch layer's transfer reports it).
pub fn delivered_info(info: MessageInfo) -> MessageInfo {
    MessageInfo::new().with_label(info.label()).with_length(info.length())
}

/// Travels in registers alone, so its transfer cannot fail.
fn registers_only(info: MessageInfo) -> bool {
    usize::from(info.length()) <= REGISTER_WORDS && info.caps() == 0
}

impl<const T: usize, const E: usize, const N: usize> Ipc<T, E, N> {
    /// CALL of `t`, running on `cpu`, on endpoint `ep`: the fast path when
    /// a receiver waits there that `eligible` accepts and that would run
    /// next on `cpu`. Returns that receiver, now running on `cpu` with its
    /// result set, and `t` waiting for its reply.
    pub fn fast_call(
        &mut self,
        t: ThreadId,
        ep: super::EndpointId,
        msg: Message,
        cpu: usize,
        eligible: impl Fn(ThreadId) -> bool,
    ) -> Option<ThreadId> {
        if !registers_only(msg.info) || self.runnable(t).is_err() {
            return None;
        }
        let e = self.endpoint(ep).ok()?;
        let r = self.queue_head(Where::Receivers(e))?;
        if self.threads[usize::from(r.0)].timed || !eligible(r) || !self.sched.hand_over(cpu, t, r) {
            return None;
        }
        // `deliver`'s rendezvous of a call, with `wake` minus the scheduling.
        self.queue_remove(Where::Receivers(e), r);
        let receiver = &mut self.threads[usize::from(r.0)];
        receiver.state = ThreadState::Runnable;
        receiver.result = Some(SyscallResult::ok(delivered_info(msg.info), msg.badge));
        self.await_reply(t, r, msg.grant, false);
        Some(r)
    }

    /// REPLY_RECV of `t`, running on `cpu`, on endpoint `ep` with a reply
    /// of `info`, blocking for ever: the fast path when `t` owes a caller
    /// (not a fault) that `eligible` accepts and that would run next on
    /// `cpu`, and the receive would block. Returns the caller, now running
    /// on `cpu` with its result set, and `t` waiting on `ep`.
    pub fn fast_reply_recv(
        &mut self,
        t: ThreadId,
        ep: super::EndpointId,
        info: MessageInfo,
        cpu: usize,
        eligible: impl Fn(ThreadId) -> bool,
    ) -> Option<ThreadId> {
        if !registers_only(info) || self.runnable(t).is_err() {
            return None;
        }
        let e = self.endpoint(ep).ok()?;
        let ReplyRight::Caller { thread: c, fault: false, .. } = self.threads[usize::from(t.0)].reply else {
            return None;
        };
        let bits_waiting =
            self.threads[usize::from(t.0)].bound.is_some_and(|n| self.notifications[n as usize].bits != 0);
        if bits_waiting
            || self.endpoints[e].senders.head != super::NONE
            || self.threads[usize::from(c.0)].timed
            || !eligible(c)
            || !self.sched.hand_over(cpu, t, c)
        {
            return None;
        }
        // `reply_to_caller`, with `wake` minus the scheduling.
        self.threads[usize::from(t.0)].reply = ReplyRight::None;
        let caller = &mut self.threads[usize::from(c.0)];
        (caller.in_fault, caller.state) = (false, ThreadState::Runnable);
        caller.result = Some(SyscallResult::ok(delivered_info(info), Badge(0)));
        // `receive`'s block, with the scheduler's part done by `hand_over`.
        self.threads[usize::from(t.0)].state = ThreadState::BlockedRecv { ep };
        self.queue_insert(Where::Receivers(e), t);
        Some(c)
    }
}

#[cfg(test)]
mod tests;
