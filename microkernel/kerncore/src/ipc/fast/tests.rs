//! The fast path against the slow path: random operation sequences on two
//! CPUs, where every CALL and REPLY_RECV is tried both ways from the same
//! state. A fast switch must leave exactly the state the slow path and its
//! schedule leave, and a decline must change nothing.

use super::super::*;
use crate::sched::Priority;
use std::vec::Vec;

type Sys = Ipc<12, 3, 2>;

/// The arch layer's transfer, as far as the fast path can see it: label,
/// length and the capabilities moved (all of them, when granted).
struct Wire;

impl Transfer for Wire {
    fn transfer(&mut self, _: ThreadId, _: ThreadId, kind: Kind, msg: Message) -> Result<MessageInfo, ErrorCode> {
        if kind == Kind::FaultReply {
            return Ok(MessageInfo::new());
        }
        let caps = if msg.grant { msg.info.caps() } else { 0 };
        Ok(delivered_info(msg.info).with_caps(caps))
    }
}

const CPUS: usize = 2;
/// Threads the arch layer refuses to the fast path (VPs, say).
const INELIGIBLE: u16 = 9;

fn eligible(t: ThreadId) -> bool {
    t.0 != INELIGIBLE
}

fn setup(rng: &mut fastrand::Rng) -> (Sys, Vec<ThreadId>) {
    let mut ipc = Sys::new(3);
    let threads: Vec<ThreadId> = (0..10)
        .map(|i| {
            let t = ipc.alloc_thread().unwrap();
            let priority = Priority::new(rng.u64(3..6)).unwrap();
            let params = if i % 4 == 3 {
                SchedParams::budgeted(priority, rng.u32(1..3), 4)
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
    declined: u32,
}

/// One step for `t`, running on `cpu`: a CALL or REPLY_RECV both ways,
/// or another operation the slow way only.
fn step(ipc: &mut Sys, rng: &mut fastrand::Rng, t: ThreadId, cpu: usize, threads: &[ThreadId], taken: &mut Taken) {
    let ep = EndpointId(rng.u32(0..3));
    let x = &mut Wire;
    match rng.u8(0..12) {
        0..=3 => {
            let msg = Message { badge: Badge(rng.u64(0..3)), info: random_info(rng), grant: rng.bool() };
            let mut fast = ipc.clone();
            let next = fast.fast_call(t, ep, msg, cpu, eligible);
            ipc.call(t, ep, msg, x).unwrap();
            compare(&fast, ipc, next, cpu, &mut taken.calls, &mut taken.declined);
        }
        4..=7 => {
            let info = random_info(rng);
            let block = if rng.u8(0..6) == 0 { Block::Ticks(2) } else { Block::Forever };
            let mut fast = ipc.clone();
            let next = if block == Block::Forever { fast.fast_reply_recv(t, ep, info, cpu, eligible) } else { None };
            ipc.reply_recv(t, ep, info, block, x).unwrap();
            compare(&fast, ipc, next, cpu, &mut taken.replies, &mut taken.declined);
        }
        8 => ipc.recv(t, ep, Block::Forever, x).unwrap(),
        9 => ipc.send(t, ep, Message { badge: Badge(0), info: random_info(rng), grant: false }, x).unwrap(),
        10 => {
            let handler = (rng.u8(0..3) != 0).then_some((ep, Badge(5)));
            ipc.fault(t, handler, x).unwrap();
        }
        _ => ipc.signal(NotificationId(rng.u32(0..2)), 1 << rng.u32(0..4)).unwrap(),
    }
    if rng.u8(0..15) == 0 {
        ipc.tick();
    }
    if rng.u8(0..40) == 0 {
        ipc.set_cpu(threads[rng.usize(0..threads.len())], rng.usize(0..CPUS));
    }
}

/// `fast`: the state the fast path left (`next`: the thread it switched
/// to). `slow`: the state the slow path left; its schedule runs here.
fn compare(fast: &Sys, slow: &mut Sys, next: Option<ThreadId>, cpu: usize, hits: &mut u32, declined: &mut u32) {
    match next {
        Some(n) => {
            assert_eq!(slow.schedule(cpu), Some(n), "the slow path runs another thread");
            assert_eq!(fast, slow, "the fast path left another state");
            *hits += 1;
        }
        None => *declined += 1,
    }
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
    eprintln!("fast calls {}, fast replies {}, declined {}", taken.calls, taken.replies, taken.declined);
    assert!(taken.calls > 1000, "only {} fast calls", taken.calls);
    assert!(taken.replies > 1000, "only {} fast replies", taken.replies);
    assert!(taken.declined > 1000, "only {} declines", taken.declined);
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
        if ipc.fast_call(t, ep, msg, cpu, eligible).is_none() {
            assert_eq!(before, ipc, "a declined fast call changed the state");
            declined += 1;
        }
        let Some(t) = ipc.schedule(cpu) else { continue };
        let before = ipc.clone();
        if ipc.fast_reply_recv(t, ep, random_info(&mut rng), cpu, eligible).is_none() {
            assert_eq!(before, ipc, "a declined fast reply changed the state");
            declined += 1;
            ipc.recv(t, ep, Block::Forever, &mut Wire).unwrap();
        }
        ipc.check().unwrap();
    }
    assert!(declined > 1000, "only {declined} declines");
}
