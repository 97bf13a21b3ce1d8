//! kerncore's IPC state machine and scheduler (`Ipc`): any sequence of
//! syscalls by the running thread (send, call, receive, reply,
//! reply-receive, wait, yield, fault, exit), timer ticks, signals, and
//! kernel operations on any thread or object (suspend, resume, free,
//! configure, destroy), some of them misuse.
//!
//! Oracles: `Ipc::check` (every thread in exactly one place, queues and
//! scheduler consistent) after every step; the scheduler runs a thread of
//! the highest ready priority; syscalls of the running thread on live
//! objects succeed; misuse is refused; each message a thread reads back is
//! the last one delivered to it (label and badge).

#![no_main]

use abi::{Badge, ErrorCode, MessageInfo};
use kerncore::ipc::{Block, EndpointId, Ipc, Kind, Message, NotificationId, Transfer};
use kerncore::sched::{Priority, SchedParams, ThreadId};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use tessera_fuzz::Reader;

const T: usize = 8;
const E: usize = 3;
const N: usize = 2;

/// The arch layer's part: records deliveries, refuses messages over 40 words.
#[derive(Default)]
struct Wire {
    log: Vec<(u16, Kind, u32, Badge)>,
}

impl Transfer for Wire {
    fn transfer(&mut self, _from: ThreadId, to: ThreadId, kind: Kind, msg: Message) -> Result<MessageInfo, ErrorCode> {
        if msg.info.length() > 40 {
            return Err(ErrorCode::MESSAGE_TOO_LONG);
        }
        self.log.push((to.0, kind, msg.info.label(), msg.badge));
        Ok(msg.info.with_non_blocking(false).with_caps(if msg.grant { msg.info.caps() } else { 0 }))
    }
}

fn prio(p: u8) -> SchedParams {
    SchedParams { priority: Priority::new(u64::from(p % 4)).expect("a valid priority"), ..SchedParams::DEFAULT }
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let mut ipc = Ipc::<T, E, N>::new(2);
    let mut x = Wire::default();
    for _ in 0..T {
        let t = ipc.alloc_thread().expect("a free thread");
        ipc.configure(t, prio(r.u8())).expect("configure a new thread");
        ipc.resume(t).expect("start a new thread");
    }
    let mut eps: Vec<EndpointId> = (0..E).map(|_| ipc.alloc_endpoint().expect("a free endpoint")).collect();
    let mut ntfs: Vec<NotificationId> =
        (0..N).map(|_| ipc.alloc_notification().expect("a free notification")).collect();
    let mut expected: HashMap<u16, (u32, Badge)> = HashMap::new();
    let mut label = 0u32;
    for step in 0..512 {
        let (op, a, b, c) = (r.u8(), r.u8(), r.u8(), r.u8());
        if op == 0 && a == 0 && b == 0 {
            break; // the input is used up
        }
        let current = ipc.schedule(0);
        match current {
            Some(cur) => {
                let top = ipc.scheduler().highest_ready(0);
                assert!(
                    top.is_none_or(|p| !p.is_higher_than(ipc.scheduler().priority(cur))),
                    "step {step}: not the highest"
                );
                // A bound notification's bits end a receive with no message.
                let message = |r: &kerncore::ipc::SyscallResult| {
                    r.info.label() != 0 && r.info.label() != abi::labels::NOTIFICATION
                };
                if let Some(res) = ipc.take_result(cur).filter(|r| r.error.is_ok() && message(r)) {
                    assert_eq!(
                        expected.remove(&cur.0),
                        Some((res.info.label(), res.badge)),
                        "step {step}: wrong message read"
                    );
                }
            }
            None => assert_eq!(ipc.scheduler().highest_ready(0), None, "step {step}: idle with a thread ready"),
        }
        label += 1;
        let ep = eps[usize::from(a) % E];
        let ntf = ntfs[usize::from(a) % N];
        let m = Message {
            badge: Badge(u64::from(b % 3)),
            info: MessageInfo::new().with_label(label).with_length(c % 48).with_non_blocking(b & 0x80 != 0),
            grant: b & 0x40 != 0,
        };
        let block = [Block::Poll, Block::Forever, Block::Ticks(1 + u64::from(c % 4))][usize::from(b >> 4) % 3];
        let other = ThreadId(u16::from(c) % (T as u16 + 2));
        let before = x.log.len();
        let syscall =
            |res: Result<(), ErrorCode>| assert_eq!(res, Ok(()), "step {step}: a syscall of the running thread failed");
        match (current, op % 27) {
            (Some(cur), 0..=2) => syscall(ipc.send(cur, ep, m, &mut x)),
            (Some(cur), 3..=5) => syscall(ipc.call(cur, ep, m, &mut x)),
            (Some(cur), 6..=8) => syscall(ipc.recv(cur, ep, block, &mut x)),
            (Some(cur), 9..=10) => syscall(ipc.reply(cur, m.info, &mut x)),
            (Some(cur), 11..=12) => syscall(ipc.reply_recv(cur, ep, m.info, block, &mut x)),
            (Some(cur), 13) => syscall(ipc.wait(cur, ntf, block)),
            (Some(_), 14) => ipc.yield_current(0),
            (Some(cur), 15) => syscall(ipc.fault(cur, (b & 1 != 0).then_some((ep, Badge(9))), &mut x)),
            (Some(cur), 16) if b & 7 == 0 => syscall(ipc.exit(cur)),
            (_, 17..=19) => ipc.tick(),
            (_, 20) => syscall(ipc.signal(ntf, 1 << (c % 64))),
            (_, 21) => {
                if b & 3 == 0 {
                    let _ = ipc.suspend(other);
                } else {
                    let _ = ipc.resume(other);
                }
            }
            (_, 22) => match ipc.free_thread(other) {
                Ok(()) => {
                    expected.remove(&other.0);
                    let t = ipc.alloc_thread().expect("the freed thread");
                    assert_eq!(t, other);
                    ipc.configure(t, prio(b)).expect("configure a new thread");
                    ipc.resume(t).expect("start a new thread");
                }
                Err(_) => assert!(usize::from(other.0) >= T, "step {step}: a thread of the pool cannot be freed"),
            },
            (_, 23) => {
                let i = usize::from(a) % E;
                ipc.destroy_endpoint(eps[i]).expect("destroy a live endpoint");
                assert!(ipc.destroy_endpoint(eps[i]).is_err(), "an endpoint destroyed twice");
                eps[i] = ipc.alloc_endpoint().expect("a free endpoint");
            }
            (_, 24) => {
                let i = usize::from(a) % N;
                ipc.destroy_notification(ntfs[i]).expect("destroy a live notification");
                ntfs[i] = ipc.alloc_notification().expect("a free notification");
            }
            (_, 25) => {
                let res = ipc.configure(other, prio(b));
                assert_eq!(res.is_ok(), usize::from(other.0) < T, "step {step}: configure {other:?}: {res:?}");
            }
            (_, 26) => {
                let _ = if b & 1 == 0 { ipc.bind_notification(ntf, other) } else { ipc.unbind_notification(other) };
            }
            _ => {}
        }
        for &(to, kind, label, badge) in &x.log[before..] {
            let badge = if matches!(kind, Kind::Reply | Kind::FaultReply) { Badge(0) } else { badge };
            if kind != Kind::FaultReply {
                expected.insert(to, (label, badge));
            }
        }
        if let Err(e) = ipc.check() {
            panic!("step {step}: {e}");
        }
    }
});
