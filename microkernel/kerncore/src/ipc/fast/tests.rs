//! The fast path against the slow path: random operation sequences on two
//! CPUs, where every CALL and REPLY_RECV is tried both ways from the same
//! state. A fast switch must leave exactly the state the slow path and its
//! schedule leave, and a decline must change nothing.

use super::super::*;
use super::{Fast, Handoff};
use crate::sched::Priority;
use std::vec::Vec;

type Sys = Ipc<12, 3, 2>;

/// The arch layer's transfer, as far as the fast path can see it: label,
/// length and the capabilities moved (all of them, when granted). An
/// answer to a fault labelled [`REFUSED`] fails, as a VP's handler's
/// register update the kernel refuses.
struct Wire;

const REFUSED: u32 = 13;

fn answer(info: MessageInfo) -> Result<(), ErrorCode> {
    if info.label() == REFUSED { Err(ErrorCode::INVALID_ARGUMENT) } else { Ok(()) }
}

impl Transfer for Wire {
    fn transfer(&mut self, _: ThreadId, _: ThreadId, kind: Kind, msg: Message) -> Result<MessageInfo, ErrorCode> {
        if kind == Kind::FaultReply {
            return answer(msg.info).map(|()| MessageInfo::new());
        }
        let caps = if msg.grant { msg.info.caps() } else { 0 };
        Ok(delivered_info(msg.info).with_caps(caps))
    }
}

const CPUS: usize = 2;
/// Threads the arch layer refuses to the fast path (VPs, say).
const INELIGIBLE: u16 = 9;

/// The arch layer's part: refuses [`INELIGIBLE`], and an answer to a fault
/// when `answer` refuses it.
struct Peer {
    answering: Option<MessageInfo>,
    /// The transfer fails before it writes anything (a VM exit's words
    /// that do not fit the handler's buffer): the fast path must decline.
    refuse: bool,
}

impl Handoff for Peer {
    fn eligible(&self, peer: ThreadId) -> bool {
        peer.0 != INELIGIBLE
    }

    fn transfer(&mut self, _: ThreadId) -> Result<(), ErrorCode> {
        if self.refuse {
            return Err(ErrorCode::MESSAGE_TOO_LONG);
        }
        self.answering.map_or(Ok(()), answer)
    }
}

fn setup(rng: &mut fastrand::Rng) -> (Sys, Vec<ThreadId>) {
    let mut ipc = Sys::new(3);
    let threads: Vec<ThreadId> = (0..10)
        .map(|i| {
            let t = ipc.alloc_thread().unwrap();
            let priority = Priority::new(rng.u64(3..6)).unwrap();
            let params = if i % 4 == 3 {
                SchedParams::budgeted(priority, rng.u32(1..3), 4)
            } else if i % 4 == 2 {
                // A reserve: its effective priority changes with time.
                let reserve_priority = Priority::new(u64::from(priority.level()) + 1).unwrap();
                SchedParams { priority, period: 4, reserve: 2, reserve_priority, ..SchedParams::DEFAULT }
            } else {
                SchedParams { priority, ..SchedParams::DEFAULT }
            };
            ipc.configure(t, params).unwrap();
            ipc.set_cpu(t, i % CPUS);
            ipc.resume(t).unwrap();
            t
        })
        .collect();
    for _ in 0..3 {
        ipc.alloc_endpoint().unwrap();
    }
    let ntf = ipc.alloc_notification().unwrap();
    ipc.bind_notification(ntf, threads[1]).unwrap();
    ipc.alloc_notification().unwrap();
    (ipc, threads)
}

fn random_info(rng: &mut fastrand::Rng) -> MessageInfo {
    let length = if rng.u8(0..8) == 0 { rng.u8(5..9) } else { rng.u8(0..5) };
    let caps = if rng.u8(0..10) == 0 { 1 } else { 0 };
    MessageInfo::new().with_label(rng.u32(1..50)).with_length(length).with_caps(caps)
}

#[derive(Default)]
struct Taken {
    calls: u32,
    replies: u32,
    faults: u32,
    answers: u32,
    refused: u32,
    declined: u32,
}

/// One step for `t`, running on `cpu`: a CALL, REPLY_RECV or kernel-made
/// fault both ways, or another operation the slow way only.
fn step(ipc: &mut Sys, rng: &mut fastrand::Rng, t: ThreadId, cpu: usize, threads: &[ThreadId], taken: &mut Taken) {
    let ep = EndpointId(rng.u32(0..3));
    let x = &mut Wire;
    match rng.u8(0..13) {
        0..=3 => {
            let msg = Message { badge: Badge(rng.u64(0..3)), info: random_info(rng), grant: rng.bool() };
            let mut fast = ipc.clone();
            let got = fast.fast_call(t, ep, msg, cpu, &mut Peer { answering: None, refuse: false });
            ipc.call(t, ep, msg, x).unwrap();
            taken.count(compare(&fast, ipc, got, cpu), |t| &mut t.calls);
        }
        4..=7 => {
            let mut info = random_info(rng);
            if rng.u8(0..8) == 0 {
                info = info.with_label(REFUSED);
            }
            let block = match rng.u8(0..8) {
                0 => Block::Ticks(2),
                1 => Block::Tsc(rng.u64(0..100)),
                2 => Block::Poll,
                _ => Block::Forever,
            };
            let answering = matches!(ipc.threads[usize::from(t.0)].reply, ReplyRight::Caller { fault: true, .. });
            let mut fast = ipc.clone();
            let got = fast.fast_reply_recv(
                t,
                ep,
                info,
                block,
                cpu,
                &mut Peer { answering: answering.then_some(info), refuse: false },
            );
            ipc.reply_recv(t, ep, info, block, x).unwrap();
            let got = compare(&fast, ipc, got, cpu);
            taken.count(got, if answering { |t: &mut Taken| &mut t.answers } else { |t: &mut Taken| &mut t.replies });
        }
        8 => ipc.recv(t, ep, if rng.bool() { Block::Forever } else { Block::Tsc(rng.u64(0..100)) }, x).unwrap(),
        9 => ipc.send(t, ep, Message { badge: Badge(0), info: random_info(rng), grant: false }, x).unwrap(),
        10 => {
            let handler = (rng.u8(0..3) != 0).then_some((ep, Badge(5)));
            ipc.fault(t, handler, x).unwrap();
        }
        11 => {
            // A VM exit: a kernel-made message, longer than the registers.
            let info = MessageInfo::new().with_label(labels::VM_EXIT).with_length(rng.u8(2..40));
            let handler = (ep, Badge(rng.u64(1..3)));
            let mut fast = ipc.clone();
            let msg = Message { badge: handler.1, info, grant: false };
            let refuse = rng.u8(0..8) == 0;
            let before = fast.clone();
            let got = fast.fast_fault(t, ep, msg, cpu, &mut Peer { answering: None, refuse });
            if refuse || got == Fast::Declined {
                assert_eq!(got, Fast::Declined);
                assert_eq!(fast, before, "a declined fast fault changed the state");
            }
            ipc.fault_with(t, Some(handler), info, x).unwrap();
            taken.count(compare(&fast, ipc, got, cpu), |t| &mut t.faults);
        }
        _ => ipc.signal(NotificationId(rng.u32(0..2)), 1 << rng.u32(0..4)).unwrap(),
    }
    if rng.u8(0..15) == 0 {
        ipc.tick();
        ipc.expire_deadlines(rng.u64(0..100));
    }
    if rng.u8(0..40) == 0 {
        ipc.set_cpu(threads[rng.usize(0..threads.len())], rng.usize(0..CPUS));
    }
}

impl Taken {
    /// Counts what the fast path did: a switch in `hits`' counter.
    fn count(&mut self, got: Fast, hits: fn(&mut Taken) -> &mut u32) {
        match got {
            Fast::Switched(_) => *hits(self) += 1,
            Fast::Ended => self.refused += 1,
            Fast::Declined => self.declined += 1,
        }
    }
}

/// `fast`: the state the fast path left (`got`: what it did). `slow`: the
/// state the slow path left; its schedule runs here.
fn compare(fast: &Sys, slow: &mut Sys, got: Fast, cpu: usize) -> Fast {
    match got {
        Fast::Switched(n) => {
            assert_eq!(slow.schedule(cpu), Some(n), "the slow path runs another thread");
            assert_eq!(fast, slow, "the fast path left another state");
        }
        Fast::Ended => assert_eq!(fast, slow, "the fast path's failed reply left another state"),
        Fast::Declined => {}
    }
    got
}

#[test]
fn fast_path_agrees_with_the_slow_path_on_random_sequences() {
    let mut taken = Taken::default();
    for seed in 0..600 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let (mut ipc, threads) = setup(&mut rng);
        for _ in 0..400 {
            let cpu = rng.usize(0..CPUS);
            let Some(t) = ipc.schedule(cpu) else {
                // Nothing runs here: wake someone, or let time pass.
                ipc.signal(NotificationId(0), 1).unwrap();
                ipc.tick();
                // Threads blocked for good (every one waiting on another):
                // resume one as a supervisor would after a restart.
                let stuck = threads[rng.usize(0..threads.len())];
                if !ipc.scheduler().is_runnable(stuck) && rng.u8(0..4) == 0 {
                    ipc.suspend(stuck).unwrap();
                    ipc.resume(stuck).unwrap();
                }
                continue;
            };
            step(&mut ipc, &mut rng, t, cpu, &threads, &mut taken);
            ipc.check().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        }
    }
    let Taken { calls, replies, faults, answers, refused, declined } = taken;
    eprintln!(
        "fast: {calls} calls, {replies} replies, {faults} faults, {answers} answers, {refused} refused, {declined} declined"
    );
    assert!(calls > 1000 && replies > 500 && faults > 300 && answers > 150, "too few fast switches");
    assert!(refused > 20 && declined > 1000, "too few refusals or declines");
}

#[test]
fn a_declined_fast_path_changes_nothing() {
    let mut rng = fastrand::Rng::with_seed(7);
    let (mut ipc, threads) = setup(&mut rng);
    let mut declined = 0;
    for _ in 0..20_000 {
        let cpu = rng.usize(0..CPUS);
        let Some(t) = ipc.schedule(cpu) else {
            ipc.signal(NotificationId(0), 1).unwrap();
            ipc.tick();
            let stuck = threads[rng.usize(0..threads.len())];
            if !ipc.scheduler().is_runnable(stuck) {
                ipc.suspend(stuck).unwrap();
                ipc.resume(stuck).unwrap();
            }
            continue;
        };
        let ep = EndpointId(rng.u32(0..3));
        let before = ipc.clone();
        let msg = Message { badge: Badge(1), info: random_info(&mut rng), grant: false };
        if ipc.fast_call(t, ep, msg, cpu, &mut Peer { answering: None, refuse: false }) == Fast::Declined {
            assert_eq!(before, ipc, "a declined fast call changed the state");
            declined += 1;
        }
        let Some(t) = ipc.schedule(cpu) else { continue };
        let before = ipc.clone();
        if ipc.fast_reply_recv(
            t,
            ep,
            random_info(&mut rng),
            Block::Forever,
            cpu,
            &mut Peer { answering: None, refuse: false },
        ) == Fast::Declined
        {
            assert_eq!(before, ipc, "a declined fast reply changed the state");
            declined += 1;
            ipc.recv(t, ep, Block::Forever, &mut Wire).unwrap();
        }
        ipc.check().unwrap();
    }
    assert!(declined > 1000, "only {declined} declines");
}
