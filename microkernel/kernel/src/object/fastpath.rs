//! The fast paths' decoding (ARCHITECTURE §4.7): a CALL or a blocking
//! REPLY_RECV with a register-only message (a VP's answer may be longer),
//! and a VM exit forwarded to its handler, checked here and in
//! `kerncore::ipc::fast`, switch straight to the peer on this CPU. Any
//! other syscall, and any of these that is unusual, takes the general path
//! (`syscall::handle`, `ipc.fault_with`) unchanged: the fast path declines
//! before it changes anything.

use super::syscall::RESERVED_INFO_SHIFT;
use super::transfer::{Xfer, registers, set_registers};
use super::{CAP_SLOTS, Kernel};
use abi::{CapSlot, ErrorCode, MessageInfo, ObjectType, Rights, Sysnum};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use kerncore::ipc::{EndpointId, Fast, Handoff, Kind, Message, Transfer};
use kerncore::sched::ThreadId;

/// Off with the boot option `ipc=slow`.
static ENABLED: AtomicBool = AtomicBool::new(true);

/// What the fast path took: CALLs, REPLY_RECVs, VM exits.
static TAKEN: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

pub fn set_enabled(on: bool) {
    ENABLED.store(on, Relaxed);
}

/// (CALLs, REPLY_RECVs, VM exits) the fast path took so far.
pub fn taken() -> (u64, u64, u64) {
    (TAKEN[0].load(Relaxed), TAKEN[1].load(Relaxed), TAKEN[2].load(Relaxed))
}

/// How the fast path moves a message to its peer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Move {
    /// The four register words, between threads of tasks.
    Registers,
    /// A VP's exit message to its handler, or the handler's answer to the
    /// VP: as the slow path's transfer does it.
    Kernel(Kind),
}

/// The kernel's part of a fast switch (`kerncore::ipc::Handoff`).
struct Peer<'k> {
    xfer: Xfer<'k, CAP_SLOTS>,
    from: ThreadId,
    msg: Message,
    how: Move,
}

impl Handoff for Peer<'_> {
    fn eligible(&self, peer: ThreadId) -> bool {
        let thread = &self.xfer.threads[usize::from(peer.0)];
        // Only an answer resumes a VP (its entry is `vm::run`).
        let vp_ok = thread.vcpu.is_none() || self.how == Move::Kernel(Kind::FaultReply);
        thread.alive && vp_ok && (thread.task.is_some() || thread.vcpu.is_some())
    }

    fn transfer(&mut self, peer: ThreadId) -> Result<(), ErrorCode> {
        match self.how {
            Move::Registers => {
                let words = registers(&self.xfer.threads[usize::from(self.from.0)].context);
                set_registers(&mut self.xfer.threads[usize::from(peer.0)].context, words);
                Ok(())
            }
            Move::Kernel(kind) => self.xfer.transfer(self.from, peer, kind, self.msg).map(drop),
        }
    }
}

/// The syscall thread `t` (running on `cpu`) made, on the fast path:
/// `Switched(next)`, with `next` now `cpu`'s current with its registers and
/// result set, `Ended` (a failed answer: schedule as usual), or `Declined`
/// if the general path must handle it (nothing changed). Only when no
/// tick, deadline or interrupt is due (`Kernel::nothing_due`), so that the
/// general path's catching up has nothing to do either.
pub fn syscall(k: &mut Kernel, t: ThreadId, cpu: usize) -> Fast {
    if !ENABLED.load(Relaxed) {
        return Fast::Declined;
    }
    let frame = &k.threads[usize::from(t.0)].context;
    let (number, info, timeout) = (Sysnum(frame.rax), MessageInfo::from_bits(frame.rsi), frame.r12);
    if !matches!(number, Sysnum::CALL | Sysnum::REPLY_RECV)
        || info.into_bits() >> RESERVED_INFO_SHIFT != 0
        || !k.nothing_due()
    {
        return Fast::Declined;
    }
    // As `syscall::dispatch`: the deadline flag is the syscall's, never
    // part of a message.
    let raw_info = info;
    let info = info.with_tsc_deadline(false);
    let Some(slot) = u32::try_from(frame.rdi).ok().map(CapSlot) else { return Fast::Declined };
    let Some(cspace) = k.cspace_of(t) else { return Fast::Declined };
    let Kernel { ipc, threads, tasks, caps, vcpus, .. } = k;
    let (needed, counter) = match number {
        Sysnum::CALL if info.label() < abi::labels::KERNEL_FIRST => (Rights::new().with_send(true), &TAKEN[0]),
        Sysnum::REPLY_RECV => (Rights::new().with_receive(true), &TAKEN[1]),
        _ => return Fast::Declined,
    };
    let Ok((_, cap)) = caps.lookup(cspace, slot, ObjectType::ENDPOINT, needed) else { return Fast::Declined };
    let ep = EndpointId(cap.object.index);
    let fast = if number == Sysnum::CALL {
        let msg = Message { badge: cap.badge, info, grant: cap.rights.grant() };
        let mut peer = Peer { xfer: Xfer { threads, tasks, caps, vcpus }, from: t, msg, how: Move::Registers };
        ipc.fast_call(t, ep, msg, cpu, &mut peer)
    } else {
        // The reply's grant does not matter: a fast reply moves no capability.
        let msg = Message { badge: abi::Badge(0), info, grant: false };
        let how = if ipc.owes_fault_answer(t) { Move::Kernel(Kind::FaultReply) } else { Move::Registers };
        let mut peer = Peer { xfer: Xfer { threads, tasks, caps, vcpus }, from: t, msg, how };
        ipc.fast_reply_recv(t, ep, info, super::syscall::block(raw_info, timeout), cpu, &mut peer)
    };
    if fast != Fast::Declined {
        counter.fetch_add(1, Relaxed);
    }
    fast
}

/// A VP's exit, forwarded to its handler `(ep, badge)` with `info` (the
/// message is in the VP's `exit`), on the fast path: true if the handler
/// was waiting on `cpu` and now runs there, the VP waiting for its answer.
pub fn exit(k: &mut Kernel, t: ThreadId, handler: (EndpointId, abi::Badge), info: MessageInfo, cpu: usize) -> bool {
    if !ENABLED.load(Relaxed) {
        return false;
    }
    let Kernel { ipc, threads, tasks, caps, vcpus, .. } = k;
    let msg = Message { badge: handler.1, info, grant: false };
    let mut peer = Peer { xfer: Xfer { threads, tasks, caps, vcpus }, from: t, msg, how: Move::Kernel(Kind::Fault) };
    let switched = matches!(ipc.fast_fault(t, handler.0, msg, cpu, &mut peer), Fast::Switched(_));
    if switched {
        TAKEN[2].fetch_add(1, Relaxed);
    }
    switched
}
