//! The IPC fast path's decoding (ARCHITECTURE §3.4): a CALL or a
//! blocking REPLY_RECV with a register-only message, checked here and in
//! `kerncore::ipc::fast`, switches straight to the peer on this CPU. Any
//! other syscall, and any of these that is unusual, takes the general path
//! (`syscall::handle`) unchanged: the fast path declines before it changes
//! anything.

use super::Kernel;
use super::syscall::RESERVED_INFO_SHIFT;
use super::transfer::{registers, set_registers};
use abi::{CapSlot, MessageInfo, ObjectType, Rights, Sysnum};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use kerncore::ipc::{EndpointId, Message};
use kerncore::sched::ThreadId;

/// Off with the boot option `ipc=slow`.
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Syscalls the fast path took: CALLs, REPLY_RECVs.
static TAKEN: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

pub fn set_enabled(on: bool) {
    ENABLED.store(on, Relaxed);
}

/// (CALLs, REPLY_RECVs) the fast path took so far.
pub fn taken() -> (u64, u64) {
    (TAKEN[0].load(Relaxed), TAKEN[1].load(Relaxed))
}

/// The syscall thread `t` (running on `cpu`) made, on the fast path: the
/// thread to run next, now `cpu`'s current with its registers and result
/// set; `None` if the general path must handle it (nothing changed). Only
/// when no tick, deadline or interrupt is due (`Kernel::nothing_due`), so
/// that the general path's catching up has nothing to do either.
pub fn syscall(k: &mut Kernel, t: ThreadId, cpu: usize) -> Option<ThreadId> {
    if !ENABLED.load(Relaxed) {
        return None;
    }
    let frame = &k.threads[usize::from(t.0)].context;
    let (number, info, timeout) = (Sysnum(frame.rax), MessageInfo::from_bits(frame.rsi), frame.r12);
    if !matches!(number, Sysnum::CALL | Sysnum::REPLY_RECV)
        || info.into_bits() >> RESERVED_INFO_SHIFT != 0
        || info.tsc_deadline()
        || !k.nothing_due()
    {
        return None;
    }
    let slot = CapSlot(u32::try_from(frame.rdi).ok()?);
    let cspace = k.cspace_of(t)?;
    let Kernel { ipc, threads, caps, .. } = k;
    // The peer: a thread of a task, not a VP (its entry is `vm::run`).
    let eligible = |p: ThreadId| {
        let thread = &threads[usize::from(p.0)];
        thread.alive && thread.vcpu.is_none() && thread.task.is_some()
    };
    let (next, counter) = match number {
        Sysnum::CALL if info.label() < abi::labels::KERNEL_FIRST => {
            let (_, cap) = caps.lookup(cspace, slot, ObjectType::ENDPOINT, Rights::new().with_send(true)).ok()?;
            let msg = Message { badge: cap.badge, info, grant: cap.rights.grant() };
            (ipc.fast_call(t, EndpointId(cap.object.index), msg, cpu, eligible)?, &TAKEN[0])
        }
        Sysnum::REPLY_RECV if !info.non_blocking() && timeout == 0 => {
            let (_, cap) = caps.lookup(cspace, slot, ObjectType::ENDPOINT, Rights::new().with_receive(true)).ok()?;
            (ipc.fast_reply_recv(t, EndpointId(cap.object.index), info, cpu, eligible)?, &TAKEN[1])
        }
        _ => return None,
    };
    counter.fetch_add(1, Relaxed);
    let words = registers(&threads[usize::from(t.0)].context);
    set_registers(&mut threads[usize::from(next.0)].context, words);
    Some(next)
}
