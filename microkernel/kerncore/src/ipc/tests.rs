use super::*;
use crate::sched::Priority;
use std::collections::HashMap;
use std::vec::Vec;

type Sys = Ipc<16, 4, 4>;

/// A fake arch layer: records deliveries, refuses messages over `max_len`.
struct Wire {
    max_len: u8,
    log: Vec<(u16, u16, Kind, u32, Badge)>,
}

impl Default for Wire {
    fn default() -> Self {
        Wire { max_len: 64, log: Vec::new() }
    }
}

impl Transfer for Wire {
    fn transfer(&mut self, from: ThreadId, to: ThreadId, kind: Kind, msg: Message) -> Result<MessageInfo, ErrorCode> {
        if msg.info.length() > self.max_len {
            return Err(ErrorCode::MESSAGE_TOO_LONG);
        }
        self.log.push((from.0, to.0, kind, msg.info.label(), msg.badge));
        Ok(msg.info.with_non_blocking(false).with_caps(if msg.grant { msg.info.caps() } else { 0 }))
    }
}

fn info(label: u32) -> MessageInfo {
    MessageInfo::new().with_label(label)
}

fn msg(label: u32, badge: u64) -> Message {
    Message { badge: Badge(badge), info: info(label), grant: false }
}

fn nb(label: u32) -> Message {
    Message { badge: Badge(0), info: info(label).with_non_blocking(true), grant: false }
}

/// Started threads at the given priorities, one endpoint, one notification.
fn setup(prios: &[u64]) -> (Sys, Vec<ThreadId>, EndpointId, NotificationId) {
    let mut ipc = Sys::new(5);
    let threads = prios
        .iter()
        .map(|&p| {
            let t = ipc.alloc_thread().unwrap();
            let params = SchedParams { priority: Priority::new(p).unwrap(), ..SchedParams::DEFAULT };
            ipc.configure(t, params).unwrap();
            ipc.resume(t).unwrap();
            t
        })
        .collect();
    let ep = ipc.alloc_endpoint().unwrap();
    let ntf = ipc.alloc_notification().unwrap();
    ipc.check().unwrap();
    (ipc, threads, ep, ntf)
}

fn ok(label: u32, badge: u64) -> Option<SyscallResult> {
    Some(SyscallResult::ok(info(label), Badge(badge)))
}

fn err(e: ErrorCode) -> Option<SyscallResult> {
    Some(SyscallResult::error(e))
}

#[test]
fn call_and_reply_round_trip_both_ways_round() {
    let (mut ipc, t, ep, _) = setup(&[5, 5]);
    let (client, server) = (t[0], t[1]);
    let mut x = Wire::default();

    // Server first: it waits, the call rendezvouses.
    ipc.recv(server, ep, Block::Forever, &mut x).unwrap();
    assert_eq!(ipc.state(server), ThreadState::BlockedRecv { ep });
    assert!(!ipc.scheduler().is_runnable(server), "a blocked thread is never ready");
    ipc.call(client, ep, msg(1, 7), &mut x).unwrap();
    assert_eq!(ipc.state(client), ThreadState::BlockedReply { server });
    assert_eq!(ipc.take_result(server), ok(1, 7));
    assert_eq!(ipc.reply_target(server), Some(client));
    ipc.check().unwrap();
    ipc.reply(server, info(2), &mut x).unwrap();
    assert_eq!(ipc.take_result(server), Some(SyscallResult::OK));
    assert_eq!(ipc.take_result(client), ok(2, 0));
    assert_eq!(ipc.state(client), ThreadState::Runnable);

    // Client first: it queues, the receive rendezvouses.
    ipc.call(client, ep, msg(3, 7), &mut x).unwrap();
    assert_eq!(ipc.state(client), ThreadState::BlockedSend { ep, is_call: true });
    ipc.recv(server, ep, Block::Forever, &mut x).unwrap();
    assert_eq!(ipc.take_result(server), ok(3, 7));
    assert_eq!(ipc.state(client), ThreadState::BlockedReply { server });
    ipc.reply(server, info(4), &mut x).unwrap();
    assert_eq!(ipc.take_result(client), ok(4, 0));
    assert_eq!(
        x.log,
        [
            (0, 1, Kind::Call, 1, Badge(7)),
            (1, 0, Kind::Reply, 2, Badge(0)),
            (0, 1, Kind::Call, 3, Badge(7)),
            (1, 0, Kind::Reply, 4, Badge(0))
        ]
    );
    ipc.check().unwrap();
}

#[test]
fn a_reply_is_given_once() {
    let (mut ipc, t, ep, _) = setup(&[5, 5]);
    let mut x = Wire::default();
    ipc.reply(t[1], info(0), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[1]), err(ErrorCode::INVALID_STATE), "reply with no caller");
    ipc.recv(t[1], ep, Block::Forever, &mut x).unwrap();
    ipc.call(t[0], ep, msg(1, 0), &mut x).unwrap();
    ipc.reply(t[1], info(2), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[1]), Some(SyscallResult::OK));
    ipc.reply(t[1], info(3), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[1]), err(ErrorCode::INVALID_STATE), "second reply");
    assert_eq!(ipc.take_result(t[0]), ok(2, 0));
    assert_eq!(x.log.len(), 2);
}

#[test]
fn a_plain_send_does_not_wait_for_a_reply() {
    let (mut ipc, t, ep, _) = setup(&[5, 5]);
    let mut x = Wire::default();
    ipc.send(t[0], ep, msg(1, 3), &mut x).unwrap();
    assert_eq!(ipc.state(t[0]), ThreadState::BlockedSend { ep, is_call: false });
    ipc.recv(t[1], ep, Block::Forever, &mut x).unwrap();
    assert_eq!(ipc.take_result(t[1]), ok(1, 3));
    assert_eq!(ipc.take_result(t[0]), Some(SyscallResult::OK));
    assert_eq!(ipc.state(t[0]), ThreadState::Runnable);
    assert_eq!(ipc.reply_target(t[1]), None);
    // And with the receiver waiting first.
    ipc.recv(t[1], ep, Block::Forever, &mut x).unwrap();
    ipc.send(t[0], ep, msg(2, 3), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[0]), Some(SyscallResult::OK));
    assert_eq!(ipc.take_result(t[1]), ok(2, 3));
    ipc.check().unwrap();
}

#[test]
fn reply_recv_serves_clients_in_a_loop() {
    let (mut ipc, t, ep, _) = setup(&[9, 5, 5, 5]);
    let (server, clients) = (t[0], &t[1..]);
    let mut x = Wire::default();
    for (i, &c) in clients.iter().enumerate() {
        ipc.call(c, ep, msg(10 + i as u32, 100 + i as u64), &mut x).unwrap();
    }
    // The first reply_recv has nobody to reply to and just receives.
    ipc.reply_recv(server, ep, info(0), Block::Forever, &mut x).unwrap();
    for (i, &c) in clients.iter().enumerate() {
        assert_eq!(ipc.take_result(server), ok(10 + i as u32, 100 + i as u64));
        ipc.reply_recv(server, ep, info(20 + i as u32), Block::Forever, &mut x).unwrap();
        assert_eq!(ipc.take_result(c), ok(20 + i as u32, 0));
        ipc.check().unwrap();
    }
    assert_eq!(ipc.state(server), ThreadState::BlockedRecv { ep });
    assert_eq!(ipc.schedule(0), Some(clients[0]));
}

#[test]
fn queued_senders_are_served_by_priority_then_fifo() {
    let (mut ipc, t, ep, _) = setup(&[3, 9, 5, 9, 3, 20]);
    let mut x = Wire::default();
    for (i, &s) in t[..5].iter().enumerate() {
        ipc.send(s, ep, msg(i as u32, 0), &mut x).unwrap();
    }
    ipc.check().unwrap();
    let mut order = Vec::new();
    for _ in 0..5 {
        ipc.recv(t[5], ep, Block::Forever, &mut x).unwrap();
        order.push(ipc.take_result(t[5]).unwrap().info.label());
    }
    assert_eq!(order, [1, 3, 2, 0, 4]);
}

#[test]
fn queued_receivers_and_waiters_are_served_by_priority_then_fifo() {
    let (mut ipc, t, ep, ntf) = setup(&[3, 9, 5, 9, 20]);
    let mut x = Wire::default();
    for &r in &t[..4] {
        ipc.recv(r, ep, Block::Forever, &mut x).unwrap();
    }
    let mut order = Vec::new();
    for i in 0..4 {
        ipc.send(t[4], ep, msg(i, 0), &mut x).unwrap();
        let woken = t[..4].iter().position(|&r| ipc.state(r) == ThreadState::Runnable && ipc.take_result(r).is_some());
        order.push(woken.unwrap());
    }
    assert_eq!(order, [1, 3, 2, 0]);

    for &w in &t[..4] {
        ipc.wait(w, ntf, Block::Forever).unwrap();
    }
    let mut order = Vec::new();
    for i in 0..4 {
        ipc.signal(ntf, 1 << i).unwrap();
        let woken = t[..4].iter().position(|&w| ipc.state(w) == ThreadState::Runnable && ipc.take_result(w).is_some());
        order.push(woken.unwrap());
    }
    assert_eq!(order, [1, 3, 2, 0]);
    ipc.check().unwrap();
}

#[test]
fn raising_a_queued_threads_priority_moves_it_forward() {
    let (mut ipc, t, ep, _) = setup(&[3, 3, 3, 20]);
    let mut x = Wire::default();
    for (i, &s) in t[..3].iter().enumerate() {
        ipc.send(s, ep, msg(i as u32, 0), &mut x).unwrap();
    }
    ipc.configure(t[2], SchedParams { priority: Priority::new(4).unwrap(), ..SchedParams::DEFAULT }).unwrap();
    ipc.check().unwrap();
    ipc.recv(t[3], ep, Block::Forever, &mut x).unwrap();
    assert_eq!(ipc.take_result(t[3]), ok(2, 0));
}

#[test]
fn non_blocking_variants_fail_with_would_block() {
    let (mut ipc, t, ep, ntf) = setup(&[5, 5]);
    let mut x = Wire::default();
    ipc.send(t[0], ep, nb(1), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[0]), err(ErrorCode::WOULD_BLOCK));
    ipc.call(t[0], ep, nb(1), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[0]), err(ErrorCode::WOULD_BLOCK));
    ipc.recv(t[0], ep, Block::Poll, &mut x).unwrap();
    assert_eq!(ipc.take_result(t[0]), err(ErrorCode::WOULD_BLOCK));
    ipc.wait(t[0], ntf, Block::Poll).unwrap();
    assert_eq!(ipc.take_result(t[0]), err(ErrorCode::WOULD_BLOCK));
    assert_eq!(ipc.state(t[0]), ThreadState::Runnable);
    assert!(x.log.is_empty());

    // With a partner waiting they succeed.
    ipc.recv(t[1], ep, Block::Forever, &mut x).unwrap();
    ipc.send(t[0], ep, nb(2), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[0]), Some(SyscallResult::OK));
    assert_eq!(ipc.take_result(t[1]), ok(2, 0));
    ipc.send(t[1], ep, msg(3, 0), &mut x).unwrap();
    ipc.recv(t[0], ep, Block::Poll, &mut x).unwrap();
    assert_eq!(ipc.take_result(t[0]), ok(3, 0));
    ipc.signal(ntf, 0b100).unwrap();
    ipc.wait(t[0], ntf, Block::Poll).unwrap();
    assert_eq!(ipc.take_result(t[0]), ok(0, 0b100));
    ipc.check().unwrap();
}

#[test]
fn receive_and_wait_time_out_on_ticks() {
    let (mut ipc, t, ep, ntf) = setup(&[5, 5, 5]);
    let mut x = Wire::default();
    ipc.recv(t[0], ep, Block::from_abi(false, 3), &mut x).unwrap();
    ipc.wait(t[1], ntf, Block::Ticks(1)).unwrap();
    ipc.recv(t[2], ep, Block::Ticks(5), &mut x).unwrap();
    ipc.check().unwrap();
    ipc.tick();
    assert_eq!(ipc.take_result(t[1]), err(ErrorCode::TIMEOUT));
    assert_eq!(ipc.state(t[1]), ThreadState::Runnable);
    ipc.tick();
    assert_eq!(ipc.state(t[0]), ThreadState::BlockedRecv { ep });
    ipc.tick();
    assert_eq!(ipc.take_result(t[0]), err(ErrorCode::TIMEOUT));
    // A message before the deadline cancels the timeout.
    ipc.send(t[1], ep, msg(8, 0), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[2]), ok(8, 0));
    for _ in 0..10 {
        ipc.tick();
    }
    assert_eq!(ipc.take_result(t[2]), None);
    assert_eq!(Block::from_abi(false, 0), Block::Forever);
    assert_eq!(Block::from_abi(true, 9), Block::Poll);
    ipc.check().unwrap();
}

#[test]
fn tsc_deadlines_expire_in_order_and_only_when_passed() {
    let (mut ipc, t, ep, ntf) = setup(&[5, 5, 5, 5]);
    let mut x = Wire::default();
    ipc.recv(t[0], ep, Block::from_tsc_deadline(false, 3_000, 1_000), &mut x).unwrap();
    ipc.wait(t[1], ntf, Block::Tsc(2_000)).unwrap();
    ipc.recv(t[2], ep, Block::Tsc(2_000), &mut x).unwrap();
    ipc.recv(t[3], ep, Block::Tsc(u64::MAX), &mut x).unwrap();
    ipc.check().unwrap();
    assert_eq!(ipc.earliest_deadline(), Some(2_000));
    assert_eq!(ipc.next_deadline(0), Some(2_000));
    // Ticks do not expire TSC deadlines, however many pass.
    for _ in 0..50 {
        ipc.tick();
    }
    assert_eq!(ipc.state(t[1]), ThreadState::BlockedWait { ntf });
    ipc.expire_deadlines(1_999);
    assert_eq!(ipc.state(t[1]), ThreadState::BlockedWait { ntf }, "never before the deadline");
    ipc.expire_deadlines(2_000);
    assert_eq!(ipc.take_result(t[1]), err(ErrorCode::TIMEOUT));
    assert_eq!(ipc.take_result(t[2]), err(ErrorCode::TIMEOUT));
    assert_eq!(ipc.state(t[0]), ThreadState::BlockedRecv { ep });
    assert_eq!(ipc.next_deadline(0), Some(3_000));
    ipc.check().unwrap();
    // A message before the deadline takes the thread off the list.
    ipc.send(t[1], ep, msg(4, 0), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[0]), ok(4, 0));
    assert_eq!(ipc.next_deadline(0), Some(u64::MAX));
    ipc.expire_deadlines(u64::MAX - 1);
    assert_eq!(ipc.state(t[3]), ThreadState::BlockedRecv { ep });
    ipc.expire_deadlines(u64::MAX);
    assert_eq!(ipc.take_result(t[3]), err(ErrorCode::TIMEOUT));
    assert_eq!((ipc.earliest_deadline(), ipc.has_pending_events()), (None, false));
    ipc.check().unwrap();
}

#[test]
fn a_passed_tsc_deadline_polls_with_timeout() {
    let (mut ipc, t, ep, ntf) = setup(&[5, 5]);
    let mut x = Wire::default();
    assert_eq!(Block::from_tsc_deadline(false, 0, 10), Block::Expired);
    assert_eq!(Block::from_tsc_deadline(false, 10, 10), Block::Expired);
    assert_eq!(Block::from_tsc_deadline(false, 11, 10), Block::Tsc(11));
    assert_eq!(Block::from_tsc_deadline(true, 11, 10), Block::Poll);
    ipc.recv(t[0], ep, Block::Expired, &mut x).unwrap();
    assert_eq!(ipc.take_result(t[0]), err(ErrorCode::TIMEOUT));
    ipc.wait(t[0], ntf, Block::Expired).unwrap();
    assert_eq!(ipc.take_result(t[0]), err(ErrorCode::TIMEOUT));
    assert_eq!(ipc.state(t[0]), ThreadState::Runnable);
    // What is already there is taken, deadline or not.
    ipc.signal(ntf, 0b10).unwrap();
    ipc.wait(t[0], ntf, Block::Expired).unwrap();
    assert_eq!(ipc.take_result(t[0]), ok(0, 0b10));
    ipc.send(t[1], ep, nb(6), &mut x).unwrap();
    ipc.check().unwrap();
}

#[test]
fn each_cpu_learns_the_earliest_deadline_of_its_own_threads() {
    let (mut ipc, t, ep, _) = setup(&[5, 5, 5, 5, 5, 5, 5, 5]);
    let mut x = Wire::default();
    for (i, &th) in t.iter().enumerate() {
        ipc.set_cpu(th, i % 2);
    }
    ipc.take_kicks();
    // Deadlines 800, 700, ..., 100: the odd threads (CPU 1) have the
    // earliest, 100.
    for (i, &th) in t.iter().enumerate() {
        ipc.recv(th, ep, Block::Tsc(800 - 100 * i as u64), &mut x).unwrap();
    }
    ipc.check().unwrap();
    assert_eq!((ipc.next_deadline(0), ipc.next_deadline(1), ipc.next_deadline(2)), (Some(200), Some(100), None));
    ipc.expire_deadlines(150);
    assert_eq!(ipc.take_result(t[7]), err(ErrorCode::TIMEOUT));
    assert_eq!((ipc.next_deadline(0), ipc.next_deadline(1)), (Some(200), Some(300)));
    // A blocked thread moved to CPU 2 takes its deadline there, and CPU 2
    // is kicked to arm its timer for it.
    ipc.take_kicks();
    ipc.set_cpu(t[6], 2);
    assert_ne!(ipc.take_kicks() & 1 << 2, 0);
    assert_eq!((ipc.next_deadline(0), ipc.next_deadline(2)), (Some(400), Some(200)));
    // Expiry wakes threads of every CPU, each on its own.
    ipc.expire_deadlines(500);
    for &th in &t[3..7] {
        assert_eq!(ipc.take_result(th), err(ErrorCode::TIMEOUT));
    }
    assert_eq!(ipc.scheduler().cpu_of(t[6]), 2);
    assert_eq!((ipc.next_deadline(0), ipc.next_deadline(1), ipc.next_deadline(2)), (Some(600), Some(700), None));
    // Suspending or ending a thread takes it off the list.
    ipc.suspend(t[2]).unwrap();
    ipc.free_thread(t[1]).unwrap();
    assert_eq!((ipc.next_deadline(0), ipc.next_deadline(1)), (Some(800), None));
    ipc.check().unwrap();
}

#[test]
fn the_receiver_learns_each_senders_badge() {
    let (mut ipc, t, ep, _) = setup(&[5, 5, 5]);
    let mut x = Wire::default();
    ipc.send(t[0], ep, msg(1, 0xaaaa), &mut x).unwrap();
    ipc.call(t[1], ep, msg(2, 0xbbbb), &mut x).unwrap();
    ipc.recv(t[2], ep, Block::Forever, &mut x).unwrap();
    assert_eq!(ipc.take_result(t[2]).unwrap().badge, Badge(0xaaaa));
    ipc.recv(t[2], ep, Block::Forever, &mut x).unwrap();
    assert_eq!(ipc.take_result(t[2]).unwrap().badge, Badge(0xbbbb));
}

#[test]
fn capabilities_travel_only_with_grant() {
    let (mut ipc, t, ep, _) = setup(&[5, 5]);
    let mut x = Wire::default();
    let with_caps = |grant| Message { badge: Badge(0), info: info(1).with_caps(2), grant };
    ipc.recv(t[1], ep, Block::Forever, &mut x).unwrap();
    ipc.call(t[0], ep, with_caps(false), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[1]).unwrap().info.caps(), 0);
    // The reply may carry capabilities if the caller's capability had GRANT.
    ipc.reply(t[1], info(2).with_caps(1), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[0]).unwrap().info.caps(), 0);
    ipc.recv(t[1], ep, Block::Forever, &mut x).unwrap();
    ipc.call(t[0], ep, with_caps(true), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[1]).unwrap().info.caps(), 2);
    ipc.reply(t[1], info(2).with_caps(1), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[0]).unwrap().info.caps(), 1);
}

#[test]
fn a_message_too_long_fails_the_sender_and_the_receiver_keeps_waiting() {
    let (mut ipc, t, ep, _) = setup(&[5, 5, 5, 5]);
    let mut x = Wire { max_len: 4, ..Wire::default() };
    let long = |label| Message { badge: Badge(0), info: info(label).with_length(5), grant: false };

    ipc.recv(t[0], ep, Block::Forever, &mut x).unwrap();
    ipc.send(t[1], ep, long(1), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[1]), err(ErrorCode::MESSAGE_TOO_LONG));
    ipc.call(t[1], ep, long(1), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[1]), err(ErrorCode::MESSAGE_TOO_LONG));
    assert_eq!(ipc.state(t[0]), ThreadState::BlockedRecv { ep });
    ipc.send(t[1], ep, msg(2, 0), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[0]), ok(2, 0));

    // Queued senders: the bad one fails, the receiver takes the next.
    ipc.call(t[1], ep, long(3), &mut x).unwrap();
    ipc.send(t[2], ep, msg(4, 0), &mut x).unwrap();
    ipc.recv(t[0], ep, Block::Forever, &mut x).unwrap();
    assert_eq!(ipc.take_result(t[1]), err(ErrorCode::MESSAGE_TOO_LONG));
    assert_eq!(ipc.state(t[1]), ThreadState::Runnable);
    assert_eq!(ipc.take_result(t[0]), ok(4, 0));

    // A reply too long fails the server, which keeps the right and can retry.
    ipc.recv(t[0], ep, Block::Forever, &mut x).unwrap();
    ipc.call(t[3], ep, msg(5, 0), &mut x).unwrap();
    ipc.take_result(t[0]);
    ipc.reply(t[0], info(6).with_length(9), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[0]), err(ErrorCode::MESSAGE_TOO_LONG));
    assert_eq!(ipc.state(t[3]), ThreadState::BlockedReply { server: t[0] });
    ipc.reply_recv(t[0], ep, info(6).with_length(9), Block::Forever, &mut x).unwrap();
    assert_eq!(ipc.take_result(t[0]), err(ErrorCode::MESSAGE_TOO_LONG));
    assert_eq!(ipc.state(t[0]), ThreadState::Runnable, "a failed reply does not receive");
    ipc.reply(t[0], info(6), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[3]), ok(6, 0));
    ipc.check().unwrap();
}

#[test]
fn deleting_an_endpoint_wakes_its_queues_with_peer_gone() {
    let (mut ipc, t, ep, _) = setup(&[5, 5, 5, 5, 5]);
    let ep2 = ipc.alloc_endpoint().unwrap();
    let mut x = Wire::default();
    ipc.send(t[0], ep, msg(1, 0), &mut x).unwrap();
    ipc.call(t[1], ep, msg(2, 0), &mut x).unwrap();
    // t[3] called t[4] over ep2 and waits for the reply.
    ipc.recv(t[4], ep2, Block::Forever, &mut x).unwrap();
    ipc.call(t[3], ep2, msg(3, 0), &mut x).unwrap();
    ipc.recv(t[2], ep2, Block::Ticks(10), &mut x).unwrap();

    ipc.destroy_endpoint(ep).unwrap();
    assert_eq!(ipc.take_result(t[0]), err(ErrorCode::PEER_GONE));
    assert_eq!(ipc.take_result(t[1]), err(ErrorCode::PEER_GONE));
    ipc.destroy_endpoint(ep2).unwrap();
    assert_eq!(ipc.take_result(t[2]), err(ErrorCode::PEER_GONE));
    assert_eq!(ipc.state(t[3]), ThreadState::BlockedReply { server: t[4] }, "the server can still reply");
    ipc.check().unwrap();
    ipc.take_result(t[4]);
    ipc.reply(t[4], info(4), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[3]), ok(4, 0));
    // Using a dead endpoint is the kernel's error, and changes nothing.
    assert_eq!(ipc.send(t[0], ep, msg(1, 0), &mut x), Err(ErrorCode::INVALID_ARGUMENT));
    assert_eq!(ipc.destroy_endpoint(ep), Err(ErrorCode::INVALID_ARGUMENT));
    assert_eq!(ipc.take_result(t[0]), None);
    for _ in 0..20 {
        ipc.tick();
    }
    ipc.check().unwrap();
}

#[test]
fn a_caller_gets_peer_gone_when_its_server_dies() {
    for kill in [Sys::suspend as fn(&mut Sys, ThreadId) -> Result<(), ErrorCode>, Sys::exit, Sys::free_thread] {
        let (mut ipc, t, ep, _) = setup(&[5, 5]);
        let mut x = Wire::default();
        ipc.recv(t[1], ep, Block::Forever, &mut x).unwrap();
        ipc.call(t[0], ep, msg(1, 0), &mut x).unwrap();
        kill(&mut ipc, t[1]).unwrap();
        assert_eq!(ipc.take_result(t[0]), err(ErrorCode::PEER_GONE));
        assert_eq!(ipc.state(t[0]), ThreadState::Runnable);
        ipc.check().unwrap();
    }
}

/// The supervisor's deadlock (issue #15): it calls a server, which takes
/// the call and faults; its fault goes to the supervisor's fault endpoint,
/// which the supervisor, waiting for the reply, never receives from. The
/// fault fails the call at once.
#[test]
fn a_server_that_faults_fails_the_call_it_took() {
    let (mut ipc, t, ep, _) = setup(&[5, 5]);
    let faults = ipc.alloc_endpoint().unwrap();
    let mut x = Wire::default();
    ipc.recv(t[1], ep, Block::Forever, &mut x).unwrap();
    ipc.call(t[0], ep, msg(1, 0), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[1]), ok(1, 0));
    ipc.fault(t[1], Some((faults, Badge(2))), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[0]), err(ErrorCode::PEER_GONE));
    assert_eq!(ipc.state(t[0]), ThreadState::Runnable);
    // The fault is queued for the (now free) caller to receive.
    ipc.recv(t[0], faults, Block::Poll, &mut x).unwrap();
    let r = ipc.take_result(t[0]).unwrap();
    assert_eq!((r.info.label(), r.badge), (labels::FAULT, Badge(2)));
    ipc.check().unwrap();
}

#[test]
fn a_server_gets_peer_gone_replying_to_a_dead_caller() {
    let (mut ipc, t, ep, _) = setup(&[5, 5, 5]);
    let mut x = Wire::default();
    ipc.recv(t[1], ep, Block::Forever, &mut x).unwrap();
    ipc.call(t[0], ep, msg(1, 0), &mut x).unwrap();
    ipc.free_thread(t[0]).unwrap();
    ipc.check().unwrap();
    assert_eq!(ipc.reply_target(t[1]), None);
    ipc.reply(t[1], info(2), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[1]), err(ErrorCode::PEER_GONE));
    ipc.reply(t[1], info(2), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[1]), err(ErrorCode::INVALID_STATE));
    // reply_recv skips a dead caller and receives.
    let c = ipc.alloc_thread().unwrap();
    ipc.resume(c).unwrap();
    ipc.recv(t[1], ep, Block::Forever, &mut x).unwrap();
    ipc.call(c, ep, msg(3, 0), &mut x).unwrap();
    ipc.suspend(c).unwrap();
    ipc.send(t[2], ep, msg(4, 0), &mut x).unwrap();
    ipc.reply_recv(t[1], ep, info(5), Block::Forever, &mut x).unwrap();
    assert_eq!(ipc.take_result(t[1]), ok(4, 0));
    // The suspended caller's call was cancelled, reported when it resumes.
    ipc.resume(c).unwrap();
    assert_eq!(ipc.take_result(c), err(ErrorCode::CANCELLED));
    assert!(!x.log.iter().any(|&(_, to, ..)| to == c.0), "no reply reached the suspended caller");
    ipc.check().unwrap();
}

#[test]
fn receiving_again_drops_an_unanswered_caller() {
    let (mut ipc, t, ep, ntf) = setup(&[5, 5]);
    let mut x = Wire::default();
    ipc.recv(t[1], ep, Block::Forever, &mut x).unwrap();
    ipc.call(t[0], ep, msg(1, 0), &mut x).unwrap();
    // Waiting on a notification keeps the right (reply when the event comes).
    ipc.wait(t[1], ntf, Block::Forever).unwrap();
    ipc.signal(ntf, 1).unwrap();
    assert_eq!(ipc.reply_target(t[1]), Some(t[0]));
    ipc.recv(t[1], ep, Block::Poll, &mut x).unwrap();
    assert_eq!(ipc.take_result(t[0]), err(ErrorCode::PEER_GONE));
    ipc.check().unwrap();
}

#[test]
fn nested_calls_keep_each_reply_right() {
    let (mut ipc, t, ep, _) = setup(&[5, 5, 5]);
    let inner = ipc.alloc_endpoint().unwrap();
    let mut x = Wire::default();
    ipc.recv(t[1], ep, Block::Forever, &mut x).unwrap();
    ipc.recv(t[2], inner, Block::Forever, &mut x).unwrap();
    ipc.call(t[0], ep, msg(1, 0), &mut x).unwrap();
    ipc.call(t[1], inner, msg(2, 0), &mut x).unwrap();
    ipc.check().unwrap();
    ipc.reply(t[2], info(3), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[1]), ok(3, 0));
    ipc.reply(t[1], info(4), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[0]), ok(4, 0));
    ipc.check().unwrap();
}

#[test]
fn notifications_accumulate_bits_until_taken() {
    let (mut ipc, t, _, ntf) = setup(&[5, 5]);
    ipc.signal(ntf, 0b01).unwrap();
    ipc.signal(ntf, 0b10).unwrap();
    assert_eq!(ipc.pending_bits(ntf), Some(0b11));
    ipc.wait(t[0], ntf, Block::Forever).unwrap();
    assert_eq!(ipc.take_result(t[0]), ok(0, 0b11));
    assert_eq!(ipc.pending_bits(ntf), Some(0));
    ipc.wait(t[0], ntf, Block::Forever).unwrap();
    ipc.signal(ntf, 0).unwrap();
    assert_eq!(ipc.state(t[0]), ThreadState::BlockedWait { ntf }, "no bits, no wakeup");
    ipc.signal(ntf, 0b1000).unwrap();
    assert_eq!(ipc.take_result(t[0]), ok(0, 0b1000));
    // Only one waiter wakes per signal; the bits go to it.
    ipc.wait(t[0], ntf, Block::Forever).unwrap();
    ipc.wait(t[1], ntf, Block::Forever).unwrap();
    ipc.signal(ntf, 0b1).unwrap();
    assert_eq!(ipc.take_result(t[0]), ok(0, 0b1));
    assert_eq!(ipc.state(t[1]), ThreadState::BlockedWait { ntf });
    ipc.destroy_notification(ntf).unwrap();
    assert_eq!(ipc.take_result(t[1]), err(ErrorCode::PEER_GONE));
    assert_eq!(ipc.pending_bits(ntf), None);
    assert_eq!(ipc.signal(ntf, 1), Err(ErrorCode::INVALID_ARGUMENT));
    ipc.check().unwrap();
}

/// seL4's bound notification: a receive on any endpoint also ends when the
/// receiver's notification has bits (label NOTIFICATION, the bits as
/// badge), whether they were there first or come while it waits; a
/// message still gets through after, and waiters on the notification
/// itself come first.
#[test]
fn a_bound_notification_ends_a_receive() {
    let (mut ipc, t, ep, ntf) = setup(&[5, 5, 5]);
    let mut x = Wire::default();
    ipc.bind_notification(ntf, t[0]).unwrap();
    assert_eq!(ipc.bind_notification(ntf, t[1]), Err(ErrorCode::INVALID_STATE), "one thread per notification");
    assert_eq!(ipc.bound_notification(t[0]), Some(ntf));
    // Bits first: the receive ends at once.
    ipc.signal(ntf, 0b101).unwrap();
    ipc.recv(t[0], ep, Block::Forever, &mut x).unwrap();
    assert_eq!(ipc.take_result(t[0]), ok(labels::NOTIFICATION, 0b101));
    assert_eq!(ipc.pending_bits(ntf), Some(0));
    // Bits while it waits: woken out of the endpoint's queue.
    ipc.recv(t[0], ep, Block::Forever, &mut x).unwrap();
    assert_eq!(ipc.state(t[0]), ThreadState::BlockedRecv { ep });
    ipc.check().unwrap();
    ipc.signal(ntf, 0b10).unwrap();
    assert_eq!(ipc.state(t[0]), ThreadState::Runnable);
    assert_eq!(ipc.take_result(t[0]), ok(labels::NOTIFICATION, 0b10));
    ipc.check().unwrap();
    // A message reaches it as before, with no notification pending.
    ipc.recv(t[0], ep, Block::Forever, &mut x).unwrap();
    ipc.send(t[1], ep, msg(7, 3), &mut x).unwrap();
    assert_eq!(ipc.take_result(t[0]), ok(7, 3));
    // A thread waiting on the notification itself takes the bits first.
    ipc.recv(t[0], ep, Block::Forever, &mut x).unwrap();
    ipc.wait(t[2], ntf, Block::Forever).unwrap();
    ipc.signal(ntf, 1).unwrap();
    assert_eq!(ipc.take_result(t[2]), ok(0, 1));
    assert_eq!(ipc.state(t[0]), ThreadState::BlockedRecv { ep });
    // With no waiter on the notification, the next bits go to the receiver.
    ipc.signal(ntf, 0b1000).unwrap();
    assert_eq!(ipc.take_result(t[0]), ok(labels::NOTIFICATION, 0b1000));
    // Unbound: bits stay for WAIT, and a receive blocks.
    ipc.unbind_notification(t[0]).unwrap();
    assert_eq!(ipc.unbind_notification(t[0]), Err(ErrorCode::INVALID_STATE));
    ipc.signal(ntf, 0b1).unwrap();
    ipc.recv(t[0], ep, Block::Poll, &mut x).unwrap();
    assert_eq!(ipc.take_result(t[0]), err(ErrorCode::WOULD_BLOCK));
    assert_eq!(ipc.pending_bits(ntf), Some(1));
    // Bound while it waits in a receive, with bits already there: taken.
    ipc.recv(t[0], ep, Block::Forever, &mut x).unwrap();
    ipc.bind_notification(ntf, t[0]).unwrap();
    assert_eq!(ipc.take_result(t[0]), ok(labels::NOTIFICATION, 1));
    ipc.check().unwrap();
    ipc.unbind_notification(t[0]).unwrap();
    // Freed thread or destroyed notification: the binding goes with it.
    ipc.bind_notification(ntf, t[1]).unwrap();
    ipc.free_thread(t[1]).unwrap();
    ipc.check().unwrap();
    ipc.bind_notification(ntf, t[0]).unwrap();
    ipc.destroy_notification(ntf).unwrap();
    assert_eq!(ipc.bound_notification(t[0]), None);
    ipc.check().unwrap();
}

#[test]
fn faults_become_calls_to_the_handler() {
    let (mut ipc, t, ep, _) = setup(&[5, 5]);
    let (faulter, handler) = (t[0], t[1]);
    let mut x = Wire::default();
    ipc.recv(handler, ep, Block::Forever, &mut x).unwrap();
    ipc.fault(faulter, Some((ep, Badge(42))), &mut x).unwrap();
    let r = ipc.take_result(handler).unwrap();
    assert_eq!((r.info.label(), r.info.length() as usize, r.badge), (labels::FAULT, FaultMessage::WORDS, Badge(42)));
    assert_eq!(ipc.state(faulter), ThreadState::BlockedReply { server: handler });
    ipc.reply(handler, info(0), &mut x).unwrap();
    assert_eq!(ipc.state(faulter), ThreadState::Runnable);
    assert_eq!(ipc.take_result(faulter), None, "a fault is not a syscall");
    assert_eq!(x.log[1].2, Kind::FaultReply);

    // Queued fault, then the handler's endpoint goes away: Faulted, no result.
    ipc.fault(faulter, Some((ep, Badge(42))), &mut x).unwrap();
    assert_eq!(ipc.state(faulter), ThreadState::BlockedSend { ep, is_call: true });
    ipc.check().unwrap();
    ipc.destroy_endpoint(ep).unwrap();
    assert_eq!(ipc.state(faulter), ThreadState::Faulted);
    assert_eq!(ipc.take_result(faulter), None);
    ipc.resume(faulter).unwrap();

    // No handler: Faulted until resumed; a dying handler leaves it Faulted.
    ipc.fault(faulter, None, &mut x).unwrap();
    assert_eq!(ipc.state(faulter), ThreadState::Faulted);
    assert!(!ipc.scheduler().is_runnable(faulter));
    ipc.resume(faulter).unwrap();
    let ep = ipc.alloc_endpoint().unwrap();
    ipc.recv(handler, ep, Block::Forever, &mut x).unwrap();
    ipc.fault(faulter, Some((ep, Badge(1))), &mut x).unwrap();
    ipc.exit(handler).unwrap();
    assert_eq!(ipc.state(faulter), ThreadState::Faulted);
    assert_eq!(ipc.take_result(faulter), None);
    ipc.check().unwrap();
}

#[test]
fn suspending_a_blocked_thread_cancels_its_syscall() {
    let (mut ipc, t, ep, ntf) = setup(&[5, 5, 5]);
    let mut x = Wire::default();
    ipc.recv(t[0], ep, Block::Ticks(3), &mut x).unwrap();
    ipc.wait(t[1], ntf, Block::Forever).unwrap();
    ipc.suspend(t[0]).unwrap();
    ipc.suspend(t[1]).unwrap();
    ipc.check().unwrap();
    for _ in 0..5 {
        ipc.tick();
    }
    ipc.signal(ntf, 1).unwrap();
    assert_eq!(ipc.state(t[0]), ThreadState::Suspended);
    assert_eq!(ipc.pending_bits(ntf), Some(1));
    ipc.resume(t[0]).unwrap();
    assert_eq!(ipc.take_result(t[0]), err(ErrorCode::CANCELLED));
    assert_eq!(ipc.resume(t[0]), Err(ErrorCode::INVALID_STATE));
    // A runnable thread's completed result survives suspension.
    ipc.complete(t[2], SyscallResult::OK);
    ipc.suspend(t[2]).unwrap();
    ipc.resume(t[2]).unwrap();
    assert_eq!(ipc.take_result(t[2]), Some(SyscallResult::OK));
    ipc.check().unwrap();
}

#[test]
fn kernel_misuse_is_refused_without_effect() {
    let (mut ipc, t, ep, ntf) = setup(&[5, 5]);
    let mut x = Wire::default();
    ipc.recv(t[0], ep, Block::Forever, &mut x).unwrap();
    assert_eq!(ipc.send(t[0], ep, msg(1, 0), &mut x), Err(ErrorCode::INVALID_STATE));
    assert_eq!(ipc.wait(t[0], ntf, Block::Forever), Err(ErrorCode::INVALID_STATE));
    assert_eq!(ipc.send(ThreadId(15), ep, msg(1, 0), &mut x), Err(ErrorCode::INVALID_ARGUMENT));
    assert_eq!(ipc.send(ThreadId(999), ep, msg(1, 0), &mut x), Err(ErrorCode::INVALID_ARGUMENT));
    assert_eq!(ipc.recv(t[1], EndpointId(99), Block::Forever, &mut x), Err(ErrorCode::INVALID_ARGUMENT));
    assert_eq!(ipc.wait(t[1], NotificationId(3), Block::Forever), Err(ErrorCode::INVALID_ARGUMENT));
    assert_eq!(ipc.state(t[0]), ThreadState::BlockedRecv { ep });
    assert_eq!(ipc.take_result(t[1]), None);
    assert!(x.log.is_empty());
    // Pools run out.
    while ipc.alloc_thread().is_ok() {}
    assert_eq!(ipc.alloc_thread(), Err(ErrorCode::OUT_OF_MEMORY));
    while ipc.alloc_endpoint().is_ok() {}
    assert_eq!(ipc.alloc_endpoint(), Err(ErrorCode::OUT_OF_MEMORY));
    while ipc.alloc_notification().is_ok() {}
    assert_eq!(ipc.alloc_notification(), Err(ErrorCode::OUT_OF_MEMORY));
    // What is in use is counted (the kernel gives the root pool the rest).
    let (endpoints, notifications) = (ipc.endpoints_in_use(), ipc.notifications_in_use());
    assert!(endpoints > 0 && notifications > 0);
    ipc.destroy_notification(NotificationId(0)).unwrap();
    assert_eq!((ipc.endpoints_in_use(), ipc.notifications_in_use()), (endpoints, notifications - 1));
    ipc.check().unwrap();
}

#[test]
fn the_scheduler_runs_the_woken_higher_priority_receiver_first() {
    let (mut ipc, t, ep, _) = setup(&[20, 5]);
    let (server, client) = (t[0], t[1]);
    let mut x = Wire::default();
    assert_eq!(ipc.schedule(0), Some(server));
    ipc.recv(server, ep, Block::Forever, &mut x).unwrap();
    assert_eq!(ipc.schedule(0), Some(client));
    ipc.send(client, ep, msg(1, 0), &mut x).unwrap();
    assert_eq!(ipc.schedule(0), Some(server), "the woken server preempts its client");
    ipc.yield_current(0);
    assert_eq!(ipc.schedule(0), Some(server));
    assert_eq!(ipc.take_result(server), Some(SyscallResult::OK), "yield completes");
}

/// Thousands of random operations, checking after each that every thread is
/// in exactly one place and that the highest priority runs.
#[test]
fn random_operations_keep_every_thread_in_one_place() {
    random_operations(&[0]);
}

/// The same on several CPUs, threads moving between them: each operation is
/// the running thread's of a random CPU, and every CPU that was not kicked
/// runs the thread its `schedule` would pick.
#[test]
fn random_operations_on_several_cpus_keep_every_thread_in_one_place() {
    random_operations(&[0, 1, 3]);
}

/// True if `schedule(cpu)` would change nothing.
fn settled<const T: usize, const E: usize, const N: usize>(ipc: &Ipc<T, E, N>, cpu: usize) -> bool {
    let s = ipc.scheduler();
    match s.current(cpu) {
        Some(c) => s.cpu_of(c) == cpu && s.highest_ready(cpu).is_none_or(|p| !p.is_higher_than(s.priority(c))),
        None => s.highest_ready(cpu).is_none(),
    }
}

fn random_operations(cpus: &[usize]) {
    const T: usize = 12;
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut rng = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut ipc = Ipc::<T, 3, 2>::new(2);
    let mut x = Wire { max_len: 40, ..Wire::default() };
    let prio = |p| SchedParams { priority: Priority::new(p).unwrap(), ..SchedParams::DEFAULT };
    for _ in 0..T {
        let t = ipc.alloc_thread().unwrap();
        ipc.configure(t, prio(rng(3))).unwrap();
        ipc.resume(t).unwrap();
    }
    let mut eps: Vec<EndpointId> = (0..3).map(|_| ipc.alloc_endpoint().unwrap()).collect();
    let mut ntfs: Vec<NotificationId> = (0..2).map(|_| ipc.alloc_notification().unwrap()).collect();
    // What each thread should read back: label and badge of the last message delivered to it.
    let mut expected: HashMap<u16, (u32, Badge)> = HashMap::new();
    let mut outcomes: HashMap<ErrorCode, usize> = HashMap::new();
    let mut label = 0u32;
    // The TSC, which the steps advance; receives and waits may block until
    // a deadline on it (or find it passed).
    let mut tsc = 0u64;

    let mut verified = 0;
    // CPUs kicked that have not scheduled since.
    let mut owed = 0u32;
    for step in 0..20_000 {
        let cpu = if cpus.len() > 1 { cpus[rng(cpus.len() as u64) as usize] } else { cpus[0] };
        let current = ipc.schedule(cpu);
        owed &= !(1 << cpu);
        if let Some(c) = current {
            let top = ipc.scheduler().highest_ready(cpu);
            assert!(top.is_none_or(|p| !p.is_higher_than(ipc.scheduler().priority(c))), "step {step}");
            if let Some(r) = ipc.take_result(c) {
                *outcomes.entry(r.error).or_default() += 1;
                if r.error.is_ok() && r.info.label() != 0 {
                    assert_eq!(expected.remove(&c.0), Some((r.info.label(), r.badge)), "step {step}");
                    verified += 1;
                }
            }
        } else {
            assert_eq!(ipc.scheduler().highest_ready(cpu), None);
        }
        label += 1;
        let ep = eps[rng(3) as usize];
        let ntf = ntfs[rng(2) as usize];
        let m = Message {
            badge: Badge(rng(3)),
            info: info(label).with_length(rng(48) as u8).with_non_blocking(rng(4) == 0),
            grant: false,
        };
        let deadline = Block::from_tsc_deadline(false, tsc + rng(40), tsc);
        let block = [Block::Poll, Block::Forever, Block::Ticks(1 + rng(4)), deadline][rng(4) as usize];
        let before = x.log.len();
        match (current, rng(24)) {
            (Some(c), 0..=2) => ipc.send(c, ep, m, &mut x).unwrap(),
            (Some(c), 3..=5) => ipc.call(c, ep, m, &mut x).unwrap(),
            (Some(c), 6..=8) => ipc.recv(c, ep, block, &mut x).unwrap(),
            (Some(c), 9..=10) => ipc.reply(c, m.info, &mut x).unwrap(),
            (Some(c), 11..=12) => ipc.reply_recv(c, ep, m.info, block, &mut x).unwrap(),
            (Some(c), 13) => ipc.wait(c, ntf, block).unwrap(),
            (Some(c), 14) => ipc.yield_current_checked(cpu, c),
            (Some(c), 15) if rng(4) == 0 => {
                ipc.fault(c, [None, Some((ep, Badge(9)))][rng(2) as usize], &mut x).unwrap()
            }
            (Some(c), 16) if rng(8) == 0 => ipc.exit(c).unwrap(),
            (_, 17..=18) => ipc.tick(),
            (_, 19) => {
                tsc += 8;
                ipc.expire_deadlines(tsc);
            }
            (_, 20) => ipc.signal(ntf, 1 << rng(4)).unwrap(),
            (_, 21) => {
                let t = ThreadId(rng(T as u64) as u16);
                if rng(3) == 0 { ipc.suspend(t).unwrap() } else { ipc.resume(t).unwrap_or(()) }
            }
            (_, 22) => {
                let t = ThreadId(rng(T as u64) as u16);
                match rng(4) {
                    0 => {
                        ipc.free_thread(t).unwrap();
                        expected.remove(&t.0);
                        let t2 = ipc.alloc_thread().unwrap();
                        assert_eq!(t2, t);
                        ipc.configure(t, prio(rng(3))).unwrap();
                        ipc.resume(t).unwrap();
                    }
                    1 => {
                        let i = rng(3) as usize;
                        ipc.destroy_endpoint(eps[i]).unwrap();
                        eps[i] = ipc.alloc_endpoint().unwrap();
                    }
                    2 => {
                        let i = rng(2) as usize;
                        ipc.destroy_notification(ntfs[i]).unwrap();
                        ntfs[i] = ipc.alloc_notification().unwrap();
                    }
                    _ => ipc.configure(t, prio(rng(3))).unwrap(),
                }
            }
            (_, 23) if cpus.len() > 1 => {
                let t = ThreadId(rng(T as u64) as u16);
                ipc.set_cpu(t, cpus[rng(cpus.len() as u64) as usize]);
            }
            _ => {}
        }
        // Each delivery to a thread is what it must read back next.
        for &(_, to, kind, label, badge) in &x.log[before..] {
            let badge = if matches!(kind, Kind::Reply | Kind::FaultReply) { Badge(0) } else { badge };
            if kind != Kind::FaultReply {
                expected.insert(to, (label, badge));
            }
        }
        if let Err(e) = ipc.check() {
            panic!("step {step}: {e}");
        }
        owed |= ipc.take_kicks();
        for &c in cpus {
            assert!(owed & 1 << c != 0 || settled(&ipc, c), "step {step}: CPU {c} needs a kick it did not get");
        }
    }
    for e in
        [ErrorCode::OK, ErrorCode::WOULD_BLOCK, ErrorCode::TIMEOUT, ErrorCode::MESSAGE_TOO_LONG, ErrorCode::PEER_GONE]
    {
        assert!(outcomes.get(&e).copied().unwrap_or(0) > 5, "{e:?} too rare: {outcomes:?}");
    }
    std::println!("{} deliveries, {verified} read back, outcomes {outcomes:?}", x.log.len());
    assert!(x.log.len() > 1000 && verified > 500, "only {} deliveries, {verified} read back", x.log.len());
}

impl<const T: usize, const E: usize, const N: usize> Ipc<T, E, N> {
    fn yield_current_checked(&mut self, cpu: usize, c: ThreadId) {
        assert_eq!(self.current(cpu), Some(c));
        self.yield_current(cpu);
    }
}

/// Finding 9: a VP's exits are its own work. The handler's ticks while it
/// holds the reply right are charged to the faulting thread, which after
/// the reply continues its turn ahead of an equal that waited, until its
/// slice (its own time and its handler's) is spent.
#[test]
fn a_fault_handler_works_on_the_faulting_threads_time() {
    let (mut ipc, t, ep, _) = setup(&[0, 0, 9]);
    let (vp, other, handler) = (t[0], t[1], t[2]);
    let mut x = Wire::default();
    ipc.recv(handler, ep, Block::Forever, &mut x).unwrap();
    assert_eq!(ipc.schedule(0), Some(vp));
    let mut exits = 0;
    // The VP exits, the handler takes a tick over each, then replies.
    while ipc.schedule(0) == Some(vp) {
        exits += 1;
        ipc.fault(vp, Some((ep, Badge(1))), &mut x).unwrap();
        assert_eq!(ipc.schedule(0), Some(handler));
        ipc.tick();
        assert_eq!(ipc.schedule(0), Some(handler), "the handler keeps the CPU while it works");
        ipc.reply_recv(handler, ep, info(0), Block::Forever, &mut x).unwrap();
        ipc.check().unwrap();
        assert!(exits <= 5, "the VP kept the CPU past its slice");
    }
    assert_eq!(exits, 5, "five exits of one handler tick fill the slice of 5");
    assert_eq!(ipc.schedule(0), Some(other), "then the equal that waited runs");
}

/// Who runs after each of `n` ticks.
fn tick_and_schedule(ipc: &mut Sys, n: usize) -> Vec<Option<ThreadId>> {
    (0..n)
        .map(|_| {
            ipc.tick();
            ipc.check().unwrap();
            ipc.schedule(0)
        })
        .collect()
}

/// A handler that holds a fault's reply right and never replies works on
/// the faulting thread's time only while that thread has time to give:
/// after the donor's budget, its own budget is spent, so holding a reply
/// right never lifts a scheduling context's limit (r1 review: on 3040756
/// the handler ran on for good, charged nothing).
#[test]
fn a_handler_that_never_replies_is_held_to_its_own_budget() {
    let (mut ipc, t, ep, _) = setup(&[0, 0, 9]);
    let (faulter, idle, handler) = (t[0], t[1], t[2]);
    let budgeted = |budget| SchedParams::budgeted(Priority::new(9).unwrap(), budget, 100);
    ipc.configure(handler, budgeted(2)).unwrap();
    ipc.configure(faulter, SchedParams::budgeted(Priority::new(0).unwrap(), 3, 100)).unwrap();
    let mut x = Wire::default();
    ipc.suspend(idle).unwrap();
    ipc.recv(handler, ep, Block::Forever, &mut x).unwrap();
    assert_eq!(ipc.schedule(0), Some(faulter));
    ipc.fault(faulter, Some((ep, Badge(1))), &mut x).unwrap();
    ipc.resume(idle).unwrap();
    assert_eq!(ipc.schedule(0), Some(handler));
    // The handler spins with the reply right: 3 ticks are the faulter's,
    // then 2 its own; after that it waits for its next period.
    let ran = tick_and_schedule(&mut ipc, 10);
    assert_eq!(ran.iter().filter(|&&r| r == Some(handler)).count(), 4, "{ran:?}");
    assert_eq!(ran[9], Some(idle), "the handler's budget is spent: {ran:?}");
}

/// The same handler, unlimited, still takes turns with its equals once the
/// faulting thread's slice is spent (on 3040756 its own slice was never
/// charged, so an equal that waited never ran).
#[test]
fn a_handler_that_never_replies_takes_turns_with_its_equals() {
    let (mut ipc, t, ep, _) = setup(&[0, 9, 9]);
    let (faulter, equal, handler) = (t[0], t[1], t[2]);
    let mut x = Wire::default();
    ipc.suspend(equal).unwrap();
    ipc.recv(handler, ep, Block::Forever, &mut x).unwrap();
    assert_eq!(ipc.schedule(0), Some(faulter));
    ipc.fault(faulter, Some((ep, Badge(1))), &mut x).unwrap();
    ipc.resume(equal).unwrap();
    assert_eq!(ipc.schedule(0), Some(handler));
    let ran = tick_and_schedule(&mut ipc, 20);
    assert!(ran.contains(&Some(equal)), "the equal never ran: {ran:?}");
}

// ---- CPUs ----

/// A thread woken by a thread of another CPU waits on its own CPU, which is
/// kicked; a higher priority there does not preempt the waker's CPU.
#[test]
fn a_thread_woken_from_another_cpu_waits_on_its_own() {
    let (mut ipc, t, ep, ntf) = setup(&[1, 9, 9]);
    let (client, server, waiter) = (t[0], t[1], t[2]);
    let mut x = Wire::default();
    ipc.set_cpu(server, 1);
    ipc.set_cpu(waiter, 2);
    assert_eq!((ipc.schedule(1), ipc.schedule(2)), (Some(server), Some(waiter)));
    ipc.recv(server, ep, Block::Forever, &mut x).unwrap();
    ipc.wait(waiter, ntf, Block::Forever).unwrap();
    assert_eq!((ipc.schedule(0), ipc.schedule(1), ipc.schedule(2)), (Some(client), None, None));
    ipc.take_kicks();

    ipc.send(client, ep, msg(7, 0), &mut x).unwrap();
    ipc.check().unwrap();
    assert_eq!(ipc.take_kicks(), 1 << 1, "only the receiver's CPU is told");
    assert_eq!(ipc.schedule(0), Some(client), "the priority 9 receiver does not preempt CPU 0");
    assert_eq!(ipc.schedule(1), Some(server));
    assert_eq!(ipc.take_result(server), ok(7, 0));
    assert_eq!(ipc.running_on(server), Some(1));

    // A signal from CPU 1 (or an interrupt anywhere) wakes the waiter on CPU 2.
    ipc.signal(ntf, 0b100).unwrap();
    assert_eq!(ipc.take_kicks(), 1 << 2);
    assert_eq!(ipc.schedule(2), Some(waiter));
    assert_eq!(ipc.take_result(waiter), ok(0, 0b100));
    assert_eq!((ipc.current(0), ipc.current(1), ipc.current(2)), (Some(client), Some(server), Some(waiter)));
    ipc.check().unwrap();
}

/// A VP on CPU 1 faults to a handler on CPU 0: the handler's ticks are the
/// VP's while CPU 1 is idle, and the reply resumes the VP's turn on CPU 1.
#[test]
fn a_fault_reply_resumes_the_thread_on_its_home_cpu() {
    let (mut ipc, t, ep, _) = setup(&[0, 9, 0]);
    let (vp, handler, other) = (t[0], t[1], t[2]);
    let mut x = Wire::default();
    ipc.configure(vp, SchedParams::budgeted(Priority::LOWEST, 4, 100)).unwrap();
    ipc.set_cpu(vp, 1);
    ipc.recv(handler, ep, Block::Forever, &mut x).unwrap();
    assert_eq!((ipc.schedule(0), ipc.schedule(1)), (Some(other), Some(vp)));
    ipc.fault(vp, Some((ep, Badge(1))), &mut x).unwrap();
    assert_eq!(ipc.take_kicks(), 1 << 0 | 1 << 1, "the handler woke on CPU 0; CPU 1 lost its thread");
    assert_eq!((ipc.schedule(0), ipc.schedule(1)), (Some(handler), None));
    ipc.tick();
    ipc.tick();
    ipc.check().unwrap();
    assert_eq!(ipc.scheduler().remaining_budget(vp), Some(2), "the handler worked on the VP's budget");
    ipc.reply(handler, info(0), &mut x).unwrap();
    ipc.check().unwrap();
    assert_eq!(ipc.take_kicks(), 1 << 1, "the VP resumes on CPU 1");
    assert_eq!(ipc.scheduler().highest_ready(0), Some(Priority::LOWEST), "only the preempted thread");
    assert_eq!(ipc.schedule(1), Some(vp));
    assert_eq!(ipc.schedule(0), Some(handler));
    // Two ticks of budget left, then CPU 1 idles until the next period.
    assert_eq!(ipc.scheduler().remaining_budget(vp), Some(2));
    ipc.tick();
    assert_eq!(ipc.take_kicks(), 0);
    ipc.tick();
    assert_eq!(ipc.take_kicks(), 1 << 1);
    assert!(ipc.scheduler().is_depleted(vp));
    assert_eq!((ipc.schedule(0), ipc.schedule(1)), (Some(handler), None));
    ipc.check().unwrap();
}

#[test]
fn timeouts_wake_threads_on_their_home_cpu() {
    let (mut ipc, t, ep, _) = setup(&[3, 0]);
    let mut x = Wire::default();
    ipc.set_cpu(t[0], 2);
    assert_eq!(ipc.schedule(2), Some(t[0]));
    ipc.recv(t[0], ep, Block::Ticks(2), &mut x).unwrap();
    assert_eq!(ipc.schedule(0), Some(t[1]));
    ipc.take_kicks();
    ipc.tick();
    assert_eq!(ipc.take_kicks(), 0);
    ipc.tick();
    ipc.check().unwrap();
    assert_eq!(ipc.take_kicks(), 1 << 2);
    assert_eq!((ipc.schedule(0), ipc.schedule(2)), (Some(t[1]), Some(t[0])));
    assert_eq!(ipc.take_result(t[0]), err(ErrorCode::TIMEOUT));
}

#[test]
fn suspending_a_thread_running_on_another_cpu_kicks_that_cpu() {
    let (mut ipc, t, _, _) = setup(&[3, 3]);
    ipc.set_cpu(t[1], 4);
    assert_eq!((ipc.schedule(0), ipc.schedule(4)), (Some(t[0]), Some(t[1])));
    ipc.take_kicks();
    ipc.suspend(t[1]).unwrap();
    assert_eq!(ipc.take_kicks(), 1 << 4);
    assert_eq!((ipc.current(4), ipc.running_on(t[1])), (None, None));
    assert_eq!(ipc.schedule(4), None);
    // Resumed, it runs on its home again; moved while running, it goes at the next schedule.
    ipc.resume(t[1]).unwrap();
    assert_eq!(ipc.schedule(4), Some(t[1]));
    ipc.set_cpu(t[1], 0);
    assert_eq!(ipc.take_kicks(), 1 << 4);
    assert_eq!((ipc.cpu_of(t[1]), ipc.running_on(t[1])), (0, Some(4)));
    assert_eq!(ipc.schedule(4), None);
    assert_eq!(ipc.take_kicks(), 1 << 0);
    assert_eq!(ipc.schedule(0), Some(t[0]), "behind the equal running there");
    ipc.yield_current(0);
    assert_eq!(ipc.schedule(0), Some(t[1]));
    ipc.check().unwrap();
}

#[test]
fn a_freed_thread_comes_back_on_cpu_0() {
    let (mut ipc, t, _, _) = setup(&[3]);
    ipc.set_cpu(t[0], 5);
    assert_eq!(ipc.schedule(5), Some(t[0]));
    ipc.free_thread(t[0]).unwrap();
    assert_eq!(ipc.current(5), None);
    let again = ipc.alloc_thread().unwrap();
    assert_eq!((again, ipc.cpu_of(again)), (t[0], 0));
    ipc.resume(again).unwrap();
    assert_eq!((ipc.schedule(5), ipc.schedule(0)), (None, Some(again)));
    ipc.check().unwrap();
}
