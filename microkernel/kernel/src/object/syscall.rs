//! The syscall choke point: the registers of the calling thread are an
//! allegation until decoded and checked here. Every capability use goes
//! through `CapTable::lookup` with the type and rights the operation needs.

use super::Kernel;
use super::transfer::Xfer;
use abi::{CapSlot, ErrorCode, MessageInfo, ObjectType, Rights, Sysnum};
use kerncore::ipc::{Block, EndpointId, Message, NotificationId, SyscallResult};
use kerncore::sched::ThreadId;

/// MessageInfo bits from here up are reserved and must be zero.
pub(super) const RESERVED_INFO_SHIFT: u32 = 43;

/// What the thread asked for, decoded from its saved registers.
struct Request {
    number: Sysnum,
    cap: CapSlot,
    info: MessageInfo,
    timeout: u64,
    arg0: u64,
}

fn decode(k: &Kernel, t: ThreadId) -> Request {
    let frame = &k.threads[usize::from(t.0)].context;
    Request {
        number: Sysnum(frame.rax),
        // A slot beyond u32 cannot exist: it maps to an invalid slot.
        cap: CapSlot(u32::try_from(frame.rdi).unwrap_or(u32::MAX)),
        info: MessageInfo::from_bits(frame.rsi),
        timeout: frame.r12,
        arg0: frame.rdx,
    }
}

fn rights(f: impl FnOnce(Rights) -> Rights) -> Rights {
    f(Rights::new())
}

/// Handles the syscall the current thread `t` made.
pub fn handle(k: &mut Kernel, t: ThreadId) {
    let req = decode(k, t);
    let result = dispatch(k, t, &req);
    if let Err(error) = result {
        k.ipc.complete(t, SyscallResult::error(error));
    }
}

fn endpoint(
    k: &Kernel,
    t: ThreadId,
    slot: CapSlot,
    needed: Rights,
) -> Result<(EndpointId, kerncore::cap::Capability), ErrorCode> {
    let cspace = k.cspace_of(t).ok_or(ErrorCode::INVALID_STATE)?;
    let (_, cap) = k.caps.lookup(cspace, slot, ObjectType::ENDPOINT, needed)?;
    Ok((EndpointId(cap.object.index), cap))
}

fn notification(
    k: &Kernel,
    t: ThreadId,
    slot: CapSlot,
    needed: Rights,
) -> Result<(NotificationId, kerncore::cap::Capability), ErrorCode> {
    let cspace = k.cspace_of(t).ok_or(ErrorCode::INVALID_STATE)?;
    let (_, cap) = k.caps.lookup(cspace, slot, ObjectType::NOTIFICATION, needed)?;
    Ok((NotificationId(cap.object.index), cap))
}

/// How a receive or wait with `info` and `timeout` (R12) blocks.
pub(super) fn block(info: MessageInfo, timeout: u64) -> Block {
    if info.tsc_deadline() {
        Block::from_tsc_deadline(info.non_blocking(), timeout, crate::arch::cpu::timestamp())
    } else {
        Block::from_abi(info.non_blocking(), timeout)
    }
}

/// Runs the request. `Err` completes the syscall with that error; `Ok`
/// means kerncore already recorded the outcome (or the thread blocked).
fn dispatch(k: &mut Kernel, t: ThreadId, req: &Request) -> Result<(), ErrorCode> {
    if req.info.into_bits() >> RESERVED_INFO_SHIFT != 0 {
        return Err(ErrorCode::INVALID_ARGUMENT);
    }
    // How a receive or wait blocks: decoded by those alone (a TSC read
    // for a deadline). The flag is the syscall's, never part of a message.
    let blocking = || block(req.info, req.timeout);
    let info = req.info.with_tsc_deadline(false);
    let req = &Request { info, ..*req };
    match req.number {
        Sysnum::CALL | Sysnum::SEND => {
            if req.info.label() >= abi::labels::KERNEL_FIRST {
                return Err(ErrorCode::INVALID_ARGUMENT);
            }
            let (ep, cap) = endpoint(k, t, req.cap, rights(|r| r.with_send(true)))?;
            let msg = Message { badge: cap.badge, info: req.info, grant: cap.rights.grant() };
            let Kernel { ipc, threads, tasks, caps, vcpus, .. } = k;
            let mut xfer = Xfer { threads, tasks, caps, vcpus };
            if req.number == Sysnum::CALL {
                ipc.call(t, ep, msg, &mut xfer).map_err(|_| ErrorCode::INVALID_STATE)
            } else {
                ipc.send(t, ep, msg, &mut xfer).map_err(|_| ErrorCode::INVALID_STATE)
            }
        }
        Sysnum::RECV => {
            let (ep, _) = endpoint(k, t, req.cap, rights(|r| r.with_receive(true)))?;
            let Kernel { ipc, threads, tasks, caps, vcpus, .. } = k;
            ipc.recv(t, ep, blocking(), &mut Xfer { threads, tasks, caps, vcpus }).map_err(|_| ErrorCode::INVALID_STATE)
        }
        Sysnum::REPLY_RECV => {
            let (ep, _) = endpoint(k, t, req.cap, rights(|r| r.with_receive(true)))?;
            let Kernel { ipc, threads, tasks, caps, vcpus, .. } = k;
            ipc.reply_recv(t, ep, req.info, blocking(), &mut Xfer { threads, tasks, caps, vcpus })
                .map_err(|_| ErrorCode::INVALID_STATE)
        }
        Sysnum::REPLY => {
            let Kernel { ipc, threads, tasks, caps, vcpus, .. } = k;
            ipc.reply(t, req.info, &mut Xfer { threads, tasks, caps, vcpus }).map_err(|_| ErrorCode::INVALID_STATE)
        }
        Sysnum::SIGNAL => {
            let (n, cap) = notification(k, t, req.cap, rights(|r| r.with_send(true)))?;
            // A badged notification capability signals its badge's bits.
            let bits = if cap.badge.0 != 0 { cap.badge.0 } else { req.arg0 };
            k.ipc.signal(n, bits).map_err(|_| ErrorCode::INVALID_STATE)?;
            k.ipc.complete(t, SyscallResult::OK);
            Ok(())
        }
        Sysnum::WAIT => {
            let (n, _) = notification(k, t, req.cap, rights(|r| r.with_receive(true)))?;
            k.ipc.wait(t, n, blocking()).map_err(|_| ErrorCode::INVALID_STATE)
        }
        Sysnum::INVOKE => {
            let outcome = super::invoke::invoke(k, t, req.cap, req.info);
            k.reap();
            let info = outcome?;
            // The invoked operation may have ended the caller itself.
            if k.threads[usize::from(t.0)].alive {
                k.ipc.complete(t, SyscallResult::ok(info, abi::Badge(0)));
            }
            Ok(())
        }
        Sysnum::YIELD => {
            k.ipc.complete(t, SyscallResult::OK);
            k.ipc.yield_current(crate::arch::percpu::index());
            Ok(())
        }
        Sysnum::GET_TICKS => {
            k.ipc.complete(t, SyscallResult::ok(MessageInfo::new(), abi::Badge(k.ticks_seen)));
            Ok(())
        }
        Sysnum::EXIT => {
            let _ = k.ipc.exit(t);
            Ok(())
        }
        _ => Err(ErrorCode::INVALID_SYSCALL),
    }
}
