//! The exit loop over a fake kernel ([`super::fake`]): each test scripts
//! what the loop receives and checks what it replied and did.

use super::fake::{Fake, NOT_HELD, Step, TSC_HZ, VpCall, hlt, out, wrmsr};
use super::{Boot, EntryWords, Running, Setup, serve};
use crate::exits::tests::PIT_AT_100_HZ;
use crate::exits::{Action, Stop, Vmm, VmmConfig, updates as list};
use crate::host::{BrokerEvents, Until};
use crate::monitor::{Monitor, MonitorPage};
use crate::uart::UART_LINE_STATUS;
use abi::{CapSlot, ErrorCode, labels};
use core::sync::atomic::{AtomicU64, Ordering};
use tessera_idl::testing::Loopback;
use tessera_idl::{Badge, Message, Transport};
use tlfs::{HvMessage, HvRegisterName, HvX64PendingInterruptionRegister};
use vid_api::{Client, ExitKind, PartitionState};

/// Guest memory of one test partition.
struct Memory {
    ram: Vec<u8>,
    beneath: Vec<u8>,
}

impl Memory {
    fn new(vps: usize) -> Memory {
        Memory { ram: vec![0; 0x20_0000], beneath: vec![0; crate::overlay::slots(vps) * 4096] }
    }
}

/// The capability of VP `v` of the VID's partition `k`.
fn vp_cap(k: usize, v: usize) -> CapSlot {
    CapSlot(100 + (k * 16 + v) as u32)
}

/// The VID's `k`-th partition, manifest partition `k + 10`, ID `k + 20`
/// at the partition manager, with VP 0 started.
fn partition<'m>(memory: &'m mut Memory, k: usize, vps: usize, kernel: &Fake) -> Running<'m> {
    let mut r = unstarted(memory, k, vps);
    r.start(kernel).unwrap();
    r
}

/// [`partition`] with no VP started.
fn unstarted(memory: &mut Memory, k: usize, vps: usize) -> Running<'_> {
    Running::new(Setup {
        name: "guest",
        index: k as u64 + 10,
        managed: Some(k as u64 + 20),
        partition: CapSlot(50 + k as u32),
        vps: (0..vps).map(|v| vp_cap(k, v)).collect(),
        ram: &mut memory.ram,
        beneath: &mut memory.beneath,
        vmm: Vmm::with_config(VmmConfig { vps: vps as u32, ..VmmConfig::default() }),
        root: false,
        monitors: Default::default(),
        on_reset: sysimage::OnReset::Restart,
        boot: None,
    })
}

fn exit(k: usize, vp: usize, message: HvMessage) -> Step {
    Step::Exit { k, vp, message }
}

/// The (name, low, high) updates of an exit's reply, after its count.
fn updates(reply: &Message) -> Vec<(HvRegisterName, u64, u64)> {
    let words = reply.words();
    assert_eq!(words[0] as usize * 3, words.len() - 1, "{words:?}");
    words[1..].chunks(3).map(|c| (HvRegisterName(c[0] as u32), c[1], c[2])).collect()
}

fn posts_interruption(reply: &Message) -> bool {
    updates(reply).iter().any(|(n, _, _)| *n == HvRegisterName::PENDING_INTERRUPTION)
}

/// The vector of an interruption posted outside a reply to VP `vp`.
fn posted_vectors(kernel: &Fake, vp: CapSlot) -> Vec<u16> {
    let name = u64::from(HvRegisterName::PENDING_INTERRUPTION.0);
    let calls = kernel.vp_calls.borrow();
    let posts = calls.iter().filter_map(|c| match c {
        VpCall::SetRegisters(cap, words) if *cap == vp && words[..2] == [1, name] => Some(words[2]),
        _ => None,
    });
    posts.map(|v| HvX64PendingInterruptionRegister::from_bits(v).interruption_vector()).collect()
}

/// [`PIT_AT_100_HZ`] as exits of partition `k`'s VP 0.
fn pit_at_100_hz(k: usize) -> Vec<Step> {
    PIT_AT_100_HZ.into_iter().map(|(port, value)| exit(k, 0, out(port, value))).collect()
}

/// The first IRQ 0 of [`pit_at_100_hz`] armed at TSC 0, 10 ms on.
const FIRST_IRQ0: std::ops::RangeInclusive<u64> = 9_000_000..=10_100_000;

/// x2APIC mode, then INIT or SIPI (`icr`) from VP 0 to VP 1.
fn to_vp1(icr: u64) -> Step {
    exit(0, 0, wrmsr(0x830, 1 << 32 | icr))
}

const X2APIC_ON: u64 = 0xfee0_0000 | 0x900 | 0x400;
const INIT: u64 = 0x4500;
const SIPI_AT_0X10: u64 = 0x4610;

#[test]
fn an_exit_is_answered_with_a_resume_carrying_its_register_words() {
    let kernel = Fake::new([exit(0, 0, out(0x80, 1))]);
    let mut memory = Memory::new(1);
    let mut running = [partition(&mut memory, 0, 1, &kernel)];
    assert_eq!(serve(&kernel, &kernel, &mut running, TSC_HZ), Err(ErrorCode::PEER_GONE));
    let replies = kernel.replies_to(0, 0);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].label(), labels::VP_RESUME);
    assert_eq!(replies[0].words(), [1, u64::from(HvRegisterName::RIP.0), 0x1002, 0]);
    assert_eq!(running[0].exits, 1);
}

#[test]
fn the_ports_nothing_claims_float_and_nothing_else() {
    let kernel = Fake::new([]);
    let mut memory = Memory::new(1);
    let mut running = [partition(&mut memory, 0, 1, &kernel)];
    assert_eq!(serve(&kernel, &kernel, &mut running, TSC_HZ), Err(ErrorCode::PEER_GONE));
    let floated = kernel.floated.borrow();
    // First everything an earlier instance floated is taken back.
    assert_eq!(floated[0], (0, 1 << 16, false));
    let runs = &floated[1..];
    assert!(runs.iter().all(|&(_, _, on)| on));
    let floats = |port: u32| runs.iter().any(|&(f, c, _)| f <= port && port < f + c);
    assert!(floats(0xcfc) && floats(0x270), "PCI configuration and an unused port float");
    let bus = &running[0].vmm.ports;
    assert!((0..1 << 16).all(|p| floats(p) == bus.route(p as u16).is_none()), "exactly the unclaimed ports");
}

#[test]
fn com1_line_status_is_latched_while_reading_it_changes_nothing() {
    // An exit, then typed input arrives (the fake console has none, so
    // push it by hand between two loops).
    let kernel = Fake::new([exit(0, 0, out(0x80, 1))]);
    let mut memory = Memory::new(1);
    let mut running = [partition(&mut memory, 0, 1, &kernel)];
    assert_eq!(serve(&kernel, &kernel, &mut running, TSC_HZ), Err(ErrorCode::PEER_GONE));
    let idle = crate::uart::lsr::THRE | crate::uart::lsr::TEMT;
    assert_eq!(kernel.latched.borrow().as_slice(), [(UART_LINE_STATUS, None), (UART_LINE_STATUS, Some(idle))]);
    // Data waiting: DR set, before the interrupt that tells of it.
    running[0].vmm.push_input(b"x");
    super::latch_line_status(&kernel, &mut running[0]);
    assert_eq!(kernel.latched.borrow().last(), Some(&(UART_LINE_STATUS, Some(idle | crate::uart::lsr::DR))));
    // Unchanged: no call.
    let calls = kernel.latched.borrow().len();
    super::latch_line_status(&kernel, &mut running[0]);
    assert_eq!(kernel.latched.borrow().len(), calls);
}

#[test]
fn a_stopped_partitions_com1_answers_are_left_alone() {
    // The partition manager finalized it (its capability may be gone):
    // nothing is unlatched or unposted on it.
    let kernel = Fake::new([exit(0, 0, out(0x80, 1))]);
    let mut memory = Memory::new(1);
    let mut running = [partition(&mut memory, 0, 1, &kernel)];
    assert_eq!(serve(&kernel, &kernel, &mut running, TSC_HZ), Err(ErrorCode::PEER_GONE));
    assert!(running[0].posting, "COM1's THR is posted while the guest runs");
    let (latched, posts) = (kernel.latched.borrow().len(), kernel.posts.borrow().len());
    running[0].stopped = true;
    super::latch_line_status(&kernel, &mut running[0]);
    assert_eq!((kernel.latched.borrow().len(), kernel.posts.borrow().len()), (latched, posts));
}

#[test]
fn a_halted_vp_is_woken_when_its_timer_fires() {
    let mut script = pit_at_100_hz(0);
    script.extend([exit(0, 0, hlt(0x202)), Step::Timeout]);
    let kernel = Fake::new(script);
    let mut memory = Memory::new(1);
    let mut running = [partition(&mut memory, 0, 1, &kernel)];
    assert_eq!(serve(&kernel, &kernel, &mut running, TSC_HZ), Err(ErrorCode::PEER_GONE));
    let replies = kernel.replies_to(0, 0);
    assert_eq!(replies.last().unwrap().label(), labels::VP_HALT);
    // The wait after the halt ends at the PIT's first IRQ 0, a TSC deadline.
    let waits = kernel.waits.borrow();
    let Until::Tsc(deadline) = waits[waits.len() - 2] else { panic!("{waits:?}") };
    assert!(FIRST_IRQ0.contains(&deadline), "{deadline}");
    // Then IRQ 0 (vector 0x20) is posted, which wakes the VP.
    assert_eq!(kernel.tsc.get(), deadline);
    assert_eq!(posted_vectors(&kernel, vp_cap(0, 0)), [0x20]);
    // The next wait ends at the next IRQ 0, one period on.
    let Until::Tsc(next) = waits[waits.len() - 1] else { panic!("{waits:?}") };
    assert!((9_900_000..=10_100_000).contains(&(next - deadline)), "{next}");
}

/// The exit of a VP the kernel holds an interruption for (the header shows
/// it) is answered without one, though IRQ 0 is due: it would replace the
/// one held; nor is one posted while the kernel holds it.
#[test]
fn a_reply_never_replaces_an_interruption_the_header_shows_pending() {
    for shown in [false, true] {
        let mut message = out(0x80, 0);
        if shown {
            let header = tlfs::HvX64InterceptMessageHeader {
                execution_state: tlfs::HvX64VpExecutionState::new().with_cr0_pe(true).with_interruption_pending(true),
                ..super::fake::header(0x1000, 2, tlfs::HvInterceptAccessType::WRITE)
            };
            let body = match message.parse().unwrap() {
                tlfs::HvMessageBody::X64IoPortIntercept(io) => {
                    tlfs::HvMessageBody::X64IoPortIntercept(tlfs::HvX64IoPortInterceptMessage { header, ..io })
                }
                other => panic!("{other:?}"),
            };
            message = HvMessage::from_body(&body, 0);
        }
        let mut script = pit_at_100_hz(0);
        script.extend([Step::At(*FIRST_IRQ0.end()), exit(0, 0, message), Step::Timeout]);
        let kernel = Fake::new(script);
        if shown {
            let held = HvX64PendingInterruptionRegister::new().with_interruption_pending(true);
            kernel.pending.borrow_mut().insert(vp_cap(0, 0), held.with_interruption_vector(0x30).into_bits());
        }
        let mut memory = Memory::new(1);
        let mut running = [partition(&mut memory, 0, 1, &kernel)];
        assert_eq!(serve(&kernel, &kernel, &mut running, TSC_HZ), Err(ErrorCode::PEER_GONE));
        let last = kernel.replies_to(0, 0).pop().unwrap();
        assert_eq!(posts_interruption(&last), !shown, "shown: {shown}");
        assert_eq!(posted_vectors(&kernel, vp_cap(0, 0)), [0u16; 0], "shown: {shown}");
    }
}

#[test]
fn an_ap_is_parked_on_init_and_started_on_sipi() {
    let script = [X2APIC_ON].map(|v| exit(0, 0, wrmsr(0x1b, v)));
    let kernel = Fake::new(script.into_iter().chain([
        to_vp1(INIT),
        to_vp1(SIPI_AT_0X10),
        exit(0, 1, out(0x80, 0)),
        to_vp1(INIT),
        to_vp1(SIPI_AT_0X10),
    ]));
    let mut memory = Memory::new(2);
    let mut running = [partition(&mut memory, 0, 2, &kernel)];
    assert_eq!(serve(&kernel, &kernel, &mut running, TSC_HZ), Err(ErrorCode::PEER_GONE));
    let ap = vp_cap(0, 1);
    let calls: Vec<VpCall> = kernel
        .vp_calls
        .borrow()
        .iter()
        .filter(|c| matches!(c, VpCall::Start(v) | VpCall::Suspend(v) | VpCall::SetRegisters(v, _) if *v == ap))
        .map(|c| match c {
            VpCall::SetRegisters(v, _) => VpCall::SetRegisters(*v, vec![]),
            other => other.clone(),
        })
        .collect();
    let started = |calls: &[VpCall]| {
        calls.len() >= 2
            && calls[..calls.len() - 1].iter().all(|c| matches!(c, VpCall::SetRegisters(..)))
            && calls.last() == Some(&VpCall::Start(ap))
    };
    // The first INIT finds it not started; SIPI sets its start-up state
    // and starts it; the second INIT parks it; the second SIPI starts it.
    let suspend = calls.iter().position(|c| *c == VpCall::Suspend(ap)).expect("parked on INIT");
    assert!(started(&calls[..suspend]), "{calls:?}");
    assert!(started(&calls[suspend + 1..]), "{calls:?}");
    assert!(kernel.logged("VP 1 started by SIPI at 0x1000:0000"));
    assert_eq!(kernel.replies_to(0, 1)[0].label(), labels::VP_RESUME);
}

/// Partition 0 (two VPs, both running) ends when VP 0 writes the test-exit
/// port; partition 1 runs on.
fn one_of_two_partitions_ends(after: Vec<Step>) -> (Fake, [usize; 2]) {
    let mut script = vec![exit(0, 0, wrmsr(0x1b, X2APIC_ON)), to_vp1(INIT), to_vp1(SIPI_AT_0X10)];
    script.push(exit(0, 0, out(0xf4, 3)));
    script.extend(after);
    let kernel = Fake::new(script);
    let (mut m0, mut m1) = (Memory::new(2), Memory::new(1));
    let mut running = [partition(&mut m0, 0, 2, &kernel), partition(&mut m1, 1, 1, &kernel)];
    assert_eq!(serve(&kernel, &kernel, &mut running, TSC_HZ), Err(ErrorCode::PEER_GONE));
    assert!(running[0].stopped && !running[1].stopped);
    let exits = [running[0].exits as usize, running[1].exits as usize];
    (kernel, exits)
}

#[test]
fn a_partition_ending_stops_its_other_vps_and_reports_to_the_registry() {
    let (kernel, _) = one_of_two_partitions_ends(vec![]);
    let last = kernel.replies_to(0, 0).pop().unwrap();
    assert_eq!((last.label(), last.words()), (labels::VP_STOP, &[0][..]));
    let calls = kernel.vp_calls.borrow();
    assert_eq!(calls.last(), Some(&VpCall::Suspend(vp_cap(0, 1))), "VP 1 is stopped");
    assert!(!calls.contains(&VpCall::Suspend(vp_cap(0, 0))), "VP 0 is stopped by its reply");
    assert!(!calls.contains(&VpCall::Suspend(vp_cap(1, 0))), "the other partition runs on");
    assert_eq!(*kernel.stopped.borrow(), [Some(20)]);
    assert!(kernel.logged("guest: guest reported status 7 after 4 exits"));
}

#[test]
fn an_exit_of_an_ended_or_unknown_partition_leaves_its_vp_stopped() {
    let after = vec![exit(0, 1, out(0x80, 0)), exit(3, 0, out(0x80, 0)), exit(1, 0, out(0x80, 0))];
    let (kernel, exits) = one_of_two_partitions_ends(after);
    for (k, vp) in [(0, 1), (3, 0)] {
        let reply = kernel.replies_to(k, vp).pop().unwrap();
        assert_eq!((reply.label(), reply.words()), (labels::VP_STOP, &[0][..]), "partition {k} VP {vp}");
    }
    assert_eq!(kernel.replies_to(1, 0)[0].label(), labels::VP_RESUME);
    assert_eq!(exits, [4, 1], "the ended partition's exit is not counted");
}

#[test]
fn a_broker_delivery_arrives_by_the_bound_notification() {
    let event = (crate::messaging::KIND_EVENT, 0, 2, 1, 5, tessera_idl::Bytes::default());
    let kernel = Fake::new([exit(0, 0, out(0x80, 0)), Step::Broker { partition: 10, deliveries: vec![event] }]);
    kernel.events.set(Some(BrokerEvents::Bound));
    let mut memory = Memory::new(1);
    let mut running = [partition(&mut memory, 0, 1, &kernel)];
    assert_eq!(serve(&kernel, &kernel, &mut running, TSC_HZ), Err(ErrorCode::PEER_GONE));
    // Once at the start (nothing), then after the signal until NO_DATA.
    assert_eq!(*kernel.fetched.borrow(), [10, 10, 10]);
    assert!(kernel.queued.borrow()[&10].is_empty());
    // No SynIC here takes it; the notification has no reply.
    assert!(kernel.logged("no SynIC takes it; dropped"), "{:?}", kernel.log.borrow());
    assert_eq!(kernel.replies.borrow().len(), 1);
}

/// A broker started again asks for the SynIC state it lost (its fetch says
/// it has not heard it): the VID reports every VP's, then fetches again.
#[test]
fn a_broker_started_again_hears_every_vps_synic_state() {
    let kernel = Fake::new([exit(0, 0, out(0x80, 0)), Step::Broker { partition: 10, deliveries: vec![] }]);
    kernel.events.set(Some(BrokerEvents::Bound));
    kernel.synic_unknown.borrow_mut().insert(10);
    let mut memory = Memory::new(2);
    let mut running = [partition(&mut memory, 0, 2, &kernel)];
    assert_eq!(serve(&kernel, &kernel, &mut running, TSC_HZ), Err(ErrorCode::PEER_GONE));
    // A SynIC at reset takes nothing: both VPs say so, once.
    assert_eq!(*kernel.synic_reports.borrow(), [(10, 0, 0), (10, 1, 0)]);
    assert!(kernel.fetched.borrow().len() >= 2, "fetched again after reporting");
}

/// A request as a client of `vid_api` words it.
fn request(call: impl FnOnce(&Client<&dyn Transport>)) -> Message {
    let captured = std::cell::RefCell::new(None);
    let transport = Loopback::new(Badge(0), |_, request: &Message| {
        *captured.borrow_mut() = Some(request.clone());
        Message::new(u32::MAX)
    });
    call(&Client::new(&transport as &dyn Transport, CapSlot(1)));
    captured.into_inner().unwrap()
}

/// What `call` makes of `reply` as a client of `vid_api`.
fn decode<T>(reply: &Message, call: impl FnOnce(&Client<&dyn Transport>) -> T) -> T {
    let transport = Loopback::new(Badge(0), |_, _: &Message| reply.clone());
    call(&Client::new(&transport as &dyn Transport, CapSlot(1)))
}

#[test]
fn clients_are_answered_between_exits_and_may_stop_a_partition() {
    let client = 3;
    let ask = |message: Message| Step::Request { badge: client, message };
    let kernel = Fake::new([
        exit(0, 0, out(0x80, 0)),
        exit(1, 0, hlt(0x202)),
        ask(request(|c| _ = c.status())),
        ask(request(|c| _ = c.partition_status(11))),
        ask(request(|c| _ = c.partition_exits(11, ExitKind::Halt))),
        ask(request(|c| _ = c.partition_status(12))),
        ask(request(|c| _ = c.stop_partition(10))),
        ask(request(|c| _ = c.partition_status(10))),
        ask(request(|c| _ = c.status())),
        ask(request(|c| _ = c.stop_partition(11))),
    ]);
    let (mut m0, mut m1) = (Memory::new(1), Memory::new(1));
    let mut running = [partition(&mut m0, 0, 1, &kernel), partition(&mut m1, 1, 1, &kernel)];
    // Stopping the last partition ends the loop (its answer sent first).
    assert_eq!(serve(&kernel, &kernel, &mut running, TSC_HZ), Ok(()));
    let replies: Vec<Message> =
        kernel.replies.borrow().iter().filter(|(b, _)| *b == client).map(|(_, m)| m.clone()).collect();
    assert_eq!(decode(&replies[0], |c| c.status()), Ok((2, 2)));
    assert_eq!(decode(&replies[1], |c| c.partition_status(11)), Ok(Ok((PartitionState::Running, 1, 1))));
    assert_eq!(decode(&replies[2], |c| c.partition_exits(11, ExitKind::Halt)), Ok(Ok(1)));
    assert_eq!(decode(&replies[3], |c| c.partition_status(12)), Ok(Err(vid_api::ServiceError::NotFound)));
    assert_eq!(decode(&replies[4], |c| c.stop_partition(10)), Ok(Ok(())));
    assert_eq!(decode(&replies[5], |c| c.partition_status(10)), Ok(Ok((PartitionState::Stopped, 1, 1))));
    assert_eq!(decode(&replies[6], |c| c.status()), Ok((1, 2)));
    assert_eq!(decode(&replies[7], |c| c.stop_partition(11)), Ok(Ok(())));
    assert_eq!(replies.len(), 8);
    assert!(kernel.vp_calls.borrow().contains(&VpCall::Suspend(vp_cap(0, 0))), "its running VP is stopped");
    assert_eq!(*kernel.stopped.borrow(), [Some(20), Some(21)]);
    assert!(kernel.logged("guest: stopped at the request of badge 3 after 1 exits"));
}

#[test]
fn exit_badges_are_above_every_client_badge_and_name_partition_and_vp() {
    use abi::limits::MAX_VPS_PER_PARTITION;
    for (k, vp) in [(0, 0), (3, MAX_VPS_PER_PARTITION - 1)] {
        assert_eq!(super::exit_of(super::exit_badge(k, vp)), Some((k, vp)));
    }
    for client in [1, 2, 0x100, u64::from(u32::MAX), scheduler_api::CONTROL_BADGE | 9] {
        assert_eq!(super::exit_of(client), None, "{client:#x}");
    }
}

/// A monitor page with group 0 enabled, every trigger's latency 2 ms, and
/// triggers 3 (connection 0x11, flag 3), 4 (a connection the broker
/// refuses) and 5 (connection 0x13) pending.
fn monitor_page() -> Vec<AtomicU64> {
    use tlfs::monitor::{TRIGGER_STATE_WORD, latency_word, parameter_word, trigger_group_word};
    let words: Vec<AtomicU64> = (0..tlfs::monitor::MONITOR_PAGE_WORDS).map(|_| AtomicU64::new(0)).collect();
    words[TRIGGER_STATE_WORD].store(1, Ordering::Relaxed);
    for t in 0..32 {
        let (word, shift) = latency_word(t);
        words[word].fetch_or(20_000 << shift, Ordering::Relaxed);
    }
    words[parameter_word(3)].store(3 << 32 | 0x11, Ordering::Relaxed);
    words[parameter_word(4)].store(u64::from(NOT_HELD), Ordering::Relaxed);
    words[parameter_word(5)].store(0x13, Ordering::Relaxed);
    words[trigger_group_word(0)].store(0b111 << 3, Ordering::Relaxed);
    words
}

#[test]
fn monitor_pages_signal_on_their_partitions_behalf_no_sooner_than_the_latency() {
    let words = monitor_page();
    let kernel = Fake::new([exit(0, 0, out(0x80, 0)), Step::Timeout, Step::Timeout]);
    kernel.events.set(Some(BrokerEvents::Bound));
    let mut memory = Memory::new(1);
    let mut running = [partition(&mut memory, 0, 1, &kernel)];
    let targets = [0x11, NOT_HELD].into_iter().collect();
    let page = MonitorPage { connection_id: 0x12, words: &words, targets, monitor: Monitor::new(TSC_HZ) };
    running[0].monitors.push(page).ok().unwrap();
    assert_eq!(serve(&kernel, &kernel, &mut running, TSC_HZ), Err(ErrorCode::PEER_GONE));
    // Armed at TSC 0; the loop waits until the latency has passed, then
    // signals triggers 3 and 4 on manifest partition 10's behalf (the
    // broker's refusal of 4 is discarded) and clears all three; trigger 5
    // names no event connection of the page's (its port party may write
    // the page too): discarded, not signalled.
    assert!(kernel.waits.borrow().contains(&Until::Tsc(2_000_000)), "{:?}", kernel.waits.borrow());
    assert_eq!(*kernel.signals.borrow(), [(10, 0x11, 3, 2_000_000), (10, NOT_HELD, 0, 2_000_000)]);
    assert_eq!(words[tlfs::monitor::trigger_group_word(0)].load(Ordering::Relaxed), 0);
    assert!(running[0].exits == 1 && !running[0].stopped);
}

#[test]
fn a_stopped_partitions_monitor_pages_are_not_inspected() {
    let words = monitor_page();
    let kernel = Fake::new([exit(1, 0, out(0x80, 0)), Step::Timeout, Step::Timeout]);
    kernel.events.set(Some(BrokerEvents::Bound));
    let (mut stopped, mut live) = (Memory::new(1), Memory::new(1));
    let mut running = [partition(&mut stopped, 0, 1, &kernel), partition(&mut live, 1, 1, &kernel)];
    let targets = [0x11, NOT_HELD].into_iter().collect();
    running[0]
        .monitors
        .push(MonitorPage { connection_id: 0x12, words: &words, targets, monitor: Monitor::new(TSC_HZ) })
        .ok();
    running[0].stopped = true;
    assert_eq!(serve(&kernel, &kernel, &mut running, TSC_HZ), Err(ErrorCode::PEER_GONE));
    assert!(kernel.signals.borrow().is_empty());
    assert_eq!(words[tlfs::monitor::trigger_group_word(0)].load(Ordering::Relaxed), 0b111 << 3, "not even armed");
}

#[test]
fn an_exit_answered_after_the_loop_ends_stays_stopped() {
    let kernel = Fake::new([]);
    let mut memory = Memory::new(1);
    let mut running = [partition(&mut memory, 0, 1, &kernel)];
    let message = Message::from_words(labels::VM_EXIT, &out(0x80, 0).to_words()).unwrap();
    let reply = super::answer(&kernel, &kernel, &mut running, super::exit_badge(0, 0), message);
    assert_eq!((reply.label(), reply.words()), (labels::VP_STOP, &[0][..]));
}

fn boot() -> Boot<'static> {
    Boot {
        name: "guest",
        image: "guest:image",
        cmdline: "",
        vcpus: 2,
        kernel: &[],
        modules: heapless::Vec::new(),
        memory: 0x20_0000,
        load: load_marker,
    }
}

/// The test's guest loader: a marker byte at 0x1000, entry at 0x1000.
fn load_marker(_: &Boot<'_>, ram: &mut [u8]) -> Result<EntryWords, ErrorCode> {
    ram[0x1000] = 0xe9;
    Ok(crate::entry::set_registers_words(&[(HvRegisterName::RIP, 0x1000, 0)]))
}

#[test]
fn a_reset_restarts_the_partition_with_its_guest_loaded_again_and_the_cmos_kept() {
    // CMOS byte 0x40 := 7, RAM dirtied, then a hard reset through 0xCF9,
    // then one through the keyboard controller.
    let kernel = Fake::new([
        exit(0, 0, out(0x70, 0x40)),
        exit(0, 0, out(0x71, 7)),
        exit(0, 0, out(0xcf9, 0x06)),
        exit(0, 0, out(0x64, 0xfe)),
    ]);
    let mut memory = Memory::new(2);
    memory.ram[0x2000] = 0x55;
    let mut r = partition(&mut memory, 0, 2, &kernel);
    r.boot = Some(boot());
    let mut running = [r];
    assert_eq!(serve(&kernel, &kernel, &mut running, TSC_HZ), Err(ErrorCode::PEER_GONE));
    assert!(kernel.logged("guest: reset by port 0xCF9; restarting (1)"), "{:?}", kernel.log.borrow());
    assert!(kernel.logged("guest: reset by the keyboard controller; restarting (2)"));
    let r = &mut running[0];
    assert!(!r.stopped);
    assert_eq!((r.ram[0x1000], r.ram[0x2000]), (0xe9, 0), "loaded again over zeroed RAM");
    assert_eq!(r.vmm.rtc.read(0x40, 0), 7, "CMOS RAM survives");
    let calls = kernel.vp_calls.borrow();
    let entry = crate::entry::set_registers_words(&[(HvRegisterName::RIP, 0x1000, 0)]).to_vec();
    let vp0 = vp_cap(0, 0);
    let at = calls.iter().position(|c| *c == VpCall::SetRegisters(vp0, entry.clone())).expect("entry state set");
    assert!(calls[..at].contains(&VpCall::Suspend(vp0)), "stopped first");
    let reset = calls.iter().position(|c| *c == VpCall::Reset(vp0)).expect("VP 0 back to power-on");
    assert!(reset < at, "reset before its entry state");
    assert!(calls.contains(&VpCall::Reset(vp_cap(0, 1))), "the AP back to power-on too");
    assert_eq!(calls[at + 1], VpCall::Start(vp0));
    assert!(!calls.contains(&VpCall::Start(vp_cap(0, 1))), "the AP waits for SIPI");
}

#[test]
fn a_guest_that_resets_in_a_loop_ends_after_its_burst() {
    // RESTART_BURST restarts, then one reset more within the window.
    let resets = [(); super::restart::RESTART_BURST as usize + 1].map(|()| exit(0, 0, out(0xcf9, 0x06)));
    let kernel = Fake::new(resets);
    let mut memory = Memory::new(1);
    let mut r = partition(&mut memory, 0, 1, &kernel);
    r.boot = Some(boot());
    let mut running = [r];
    assert_eq!(serve(&kernel, &kernel, &mut running, TSC_HZ), Ok(()));
    let burst = super::restart::RESTART_BURST;
    assert!(kernel.logged(&format!("guest: reset by port 0xCF9; restarting ({burst})")), "{:?}", kernel.log.borrow());
    assert!(running[0].stopped, "the reset after the burst ends it");
    assert!(kernel.logged("guest: guest reset by port 0xCF9 at rip 0x1000; the partition ends"));
}

#[test]
fn a_reset_under_the_stop_policy_ends_the_partition() {
    let kernel = Fake::new([exit(0, 0, out(0xcf9, 0x06))]);
    let mut memory = Memory::new(1);
    let mut r = partition(&mut memory, 0, 1, &kernel);
    r.boot = Some(boot());
    r.on_reset = sysimage::OnReset::Stop;
    let mut running = [r];
    assert_eq!(serve(&kernel, &kernel, &mut running, TSC_HZ), Ok(()));
    assert!(running[0].stopped);
    assert!(
        kernel.logged("guest: guest reset by port 0xCF9 at rip 0x1000; the partition ends after 1 exits"),
        "{:?}",
        kernel.log.borrow()
    );
}

#[test]
fn init_at_the_boot_processor_restarts_the_partition() {
    // VP 0 in x2APIC mode sends INIT to APIC ID 0, itself.
    let kernel = Fake::new([exit(0, 0, wrmsr(0x1b, X2APIC_ON)), exit(0, 0, wrmsr(0x830, INIT))]);
    let mut memory = Memory::new(1);
    let mut r = partition(&mut memory, 0, 1, &kernel);
    r.boot = Some(boot());
    let mut running = [r];
    assert_eq!(serve(&kernel, &kernel, &mut running, TSC_HZ), Err(ErrorCode::PEER_GONE));
    assert!(kernel.logged("guest: INIT at VP 0, the boot processor: a reset"), "{:?}", kernel.log.borrow());
    assert!(kernel.logged("guest: reset by INIT at the boot processor; restarting (1)"));
    assert!(!running[0].stopped);
    assert_eq!(kernel.vp_calls.borrow().last(), Some(&VpCall::Start(vp_cap(0, 0))));
}

#[test]
fn a_partition_init_restarted_has_its_new_uarts_answers_in_ring_0_before_it_runs_again() {
    // The divisor latch keeps COM1's THR from being posted; INIT at the
    // BSP resets the partition, whose new UART may post again: ring 0
    // hears so before the loop waits (the latch the loop makes after a
    // reset; keep_time's came before it).
    let dlab = exit(0, 0, out(crate::uart::COM1_BASE + crate::uart::reg::LCR, 0x80));
    let kernel = Fake::new([exit(0, 0, wrmsr(0x1b, X2APIC_ON)), dlab, exit(0, 0, wrmsr(0x830, INIT))]);
    let mut memory = Memory::new(1);
    let mut r = partition(&mut memory, 0, 1, &kernel);
    r.boot = Some(boot());
    let mut running = [r];
    assert_eq!(serve(&kernel, &kernel, &mut running, TSC_HZ), Err(ErrorCode::PEER_GONE));
    assert!(kernel.logged("guest: reset by INIT at the boot processor; restarting (1)"));
    assert_eq!(thr_posts(&kernel), [false, true, false, true]);
    assert!(running[0].posting);
}

#[test]
fn the_reply_says_whether_it_posts_an_interruption() {
    let interruption = (HvRegisterName::PENDING_INTERRUPTION, 0x8000_0030);
    let mut vmm = Vmm::new();
    let mut reply = Message::new(0);
    for (action, posts) in [
        (Action::Resume(list(&[(HvRegisterName::RIP, 2), interruption])), true),
        (Action::Halt(list(&[interruption])), true),
        (Action::Resume(list(&[(HvRegisterName::RIP, 2), (HvRegisterName::RAX, 1)])), false),
        (Action::Halt(list(&[(HvRegisterName::RIP, 2)])), false),
        (Action::Stop(Stop::PowerOff), false),
    ] {
        assert_eq!(super::reply_for(&action, &mut vmm, &mut reply), posts, "{action:?}");
        assert_eq!(posts_interruption(&reply), posts, "{action:?}");
    }
}

#[test]
fn a_partition_its_vids_last_instance_left_restarts_from_scratch() {
    let kernel = Fake::new([]);
    let mut memory = Memory::new(2);
    memory.ram[0x2000] = 0x55;
    let mut r = unstarted(&mut memory, 0, 2);
    r.boot = Some(boot());
    super::after_vid_restart(&kernel, &kernel, &mut r, 0);
    assert!(kernel.logged("guest: reset by VID restart; restarting (1)"), "{:?}", kernel.log.borrow());
    assert!(!r.stopped && kernel.stopped.borrow().is_empty());
    assert_eq!((r.ram[0x1000], r.ram[0x2000]), (0xe9, 0), "loaded again over zeroed RAM");
    let calls = kernel.vp_calls.borrow();
    let vp0 = vp_cap(0, 0);
    let entry = crate::entry::set_registers_words(&[(HvRegisterName::RIP, 0x1000, 0)]).to_vec();
    let partition = r.partition;
    assert_eq!(
        calls[..],
        [
            VpCall::Reset(vp0),
            VpCall::Reset(vp_cap(0, 1)),
            VpCall::DisablePartitionVtl(partition, 1),
            VpCall::SetRegisters(vp0, entry),
            VpCall::Start(vp0)
        ],
        "nothing was started to stop; every VP from power-on, no VTL 1 (the last instance may have enabled it), \
         VP 0 at the entry"
    );
}

#[test]
fn a_partition_its_vids_last_instance_left_stays_stopped_under_the_stop_policy() {
    let kernel = Fake::new([]);
    let mut memory = Memory::new(1);
    let mut r = unstarted(&mut memory, 0, 1);
    r.boot = Some(boot());
    r.on_reset = sysimage::OnReset::Stop;
    super::after_vid_restart(&kernel, &kernel, &mut r, 0);
    assert!(r.stopped);
    assert_eq!(*kernel.stopped.borrow(), [Some(20)], "finalized at the partition manager");
    assert!(
        kernel.logged("guest: stopped by its VID's restart; left stopped (on_reset = \"stop\") after 0 exits"),
        "{:?}",
        kernel.log.borrow()
    );
    assert!(!kernel.vp_calls.borrow().iter().any(|c| matches!(c, VpCall::Start(_))));
}

#[test]
fn the_loop_waits_without_a_limit_unless_a_guest_reads_its_serial_line_or_left_a_line_unfinished() {
    // A port write; then COM1's IER enables the receive interrupt (the
    // guest reads its serial line); then it is disabled and a byte is
    // written without a newline.
    let com1 = crate::uart::COM1_BASE;
    let steps = [exit(0, 0, out(0x80, 1)), exit(0, 0, out(com1 + 1, 1)), exit(0, 0, out(com1 + 1, 0))];
    let kernel = Fake::new(steps.into_iter().chain([exit(0, 0, out(com1, u64::from(b'>')))]));
    kernel.input.set(true);
    let mut memory = Memory::new(1);
    let mut running = [partition(&mut memory, 0, 1, &kernel)];
    assert_eq!(serve(&kernel, &kernel, &mut running, TSC_HZ), Err(ErrorCode::PEER_GONE));
    // The first receive, then one after each exit; after the byte, the
    // deadline of the writes the guest may post next comes before the
    // unfinished line's.
    let waits = kernel.waits.borrow();
    let ticks = |t| Until::Ticks(t);
    let drain = Until::Tsc(TSC_HZ / super::POSTED_DRAINS_PER_SECOND);
    const { assert!(super::deliver::PROMPT_TICKS * (TSC_HZ / abi::TICK_HZ) > TSC_HZ / super::POSTED_DRAINS_PER_SECOND) };
    assert_eq!(*waits, [ticks(0), ticks(0), ticks(super::deliver::INPUT_POLL_TICKS), ticks(0), drain]);
}

/// The posts of COM1's THR the loop made (`PARTITION_POST_PORT`), in order.
fn thr_posts(kernel: &Fake) -> Vec<bool> {
    let posts = kernel.posts.borrow();
    posts.iter().filter(|(port, _)| *port == crate::uart::UART_DATA).map(|&(_, on)| on).collect()
}

#[test]
fn com1_thr_is_posted_only_while_a_write_does_nothing_else() {
    use crate::uart::{COM1_BASE, reg};
    let at = |r: u16, v: u64| exit(0, 0, out(COM1_BASE + r, v));
    let kernel = Fake::new([
        exit(0, 0, out(0x80, 1)),
        // THR-empty interrupt on, then off again.
        at(reg::IER_DLM, 0x02),
        at(reg::IER_DLM, 0x05),
        // The divisor latch, then 8N1.
        at(reg::LCR, 0x80),
        at(reg::LCR, 0x03),
        // Loopback, then OUT2 with DTR and RTS.
        at(reg::MCR, 0x10),
        at(reg::MCR, 0x0b),
    ]);
    let mut memory = Memory::new(1);
    let mut running = [partition(&mut memory, 0, 1, &kernel)];
    assert_eq!(serve(&kernel, &kernel, &mut running, TSC_HZ), Err(ErrorCode::PEER_GONE));
    // An instance starts with it off; a UART at reset may post.
    assert_eq!(thr_posts(&kernel), [false, true, false, true, false, true, false, true]);
    assert!(running[0].posting);
    // Typed input with an overrun to clear: LSR is not latched, and so
    // THR is not posted.
    running[0].vmm.push_input(&[b'k'; 17]);
    running[0].vmm.uart.port_write(reg::MCR, 0x1b, &mut |_| {});
    running[0].vmm.uart.port_write(reg::RBR_THR_DLL, b'o', &mut |_| {});
    super::latch_line_status(&kernel, &mut running[0]);
    assert_eq!(running[0].latched_lsr, None);
    assert_eq!(thr_posts(&kernel).last(), Some(&false));
}

#[test]
fn posted_writes_go_out_before_the_exit_that_follows_them() {
    let kernel = Fake::new([
        // Posting goes on after this exit.
        exit(0, 0, out(0x80, 0)),
        // Ring 0 kept "ab" before VP 0's write of 'c' exited.
        Step::Kept(vec![(0x3f8, b'a'), (0x3f8, b'b')]),
        exit(0, 0, out(0x3f8, u64::from(b'c'))),
        exit(0, 0, out(0x3f8, u64::from(b'\n'))),
        exit(0, 0, out(0x80, 0)),
        exit(0, 0, out(0x3f8, u64::from(b'd'))),
    ]);
    let mut memory = Memory::new(1);
    let mut running = [partition(&mut memory, 0, 1, &kernel)];
    assert_eq!(serve(&kernel, &kernel, &mut running, TSC_HZ), Err(ErrorCode::PEER_GONE));
    assert!(kernel.logged("guest: abc"), "{:?}", kernel.log.borrow());
    assert!(!kernel.logged("guest: c"));
    // One at the instance's start; then one before the exit ring 0
    // flagged (posted writes waiting), and none before the others.
    let drains = kernel.drains.borrow();
    assert_eq!(drains.len(), 2);
    assert_eq!(drains[1], [(0x3f8, b'a'), (0x3f8, b'b')]);
}

#[test]
fn posted_writes_are_drained_by_their_deadline_and_then_no_more() {
    let delay = TSC_HZ / super::POSTED_DRAINS_PER_SECOND;
    let kernel = Fake::new([
        exit(0, 0, out(0x80, 0)),
        // A forwarded write arms the deadline; the guest then posts, and
        // does not exit.
        exit(0, 0, out(0x3f8, u64::from(b'x'))),
        Step::Kept(vec![(0x3f8, b'y'), (0x3f8, b'\n')]),
        Step::Timeout,
        Step::Timeout,
        Step::Timeout,
    ]);
    let mut memory = Memory::new(1);
    let mut running = [partition(&mut memory, 0, 1, &kernel)];
    assert_eq!(serve(&kernel, &kernel, &mut running, TSC_HZ), Err(ErrorCode::PEER_GONE));
    assert!(kernel.logged("guest: xy"), "{:?}", kernel.log.borrow());
    // The deadline after the write; again after a drain that took
    // something; none once one took nothing.
    let waits = kernel.waits.borrow();
    assert_eq!(waits[2..], [Until::Tsc(delay), Until::Tsc(2 * delay), Until::Ticks(0), Until::Ticks(0)]);
}

/// What an earlier instance let ring 0 keep goes out before the new one
/// resets the partition, with posting off before any VP starts (the
/// takeover runs before `after_vid_restart`, as `partitions` does).
#[test]
fn a_new_instance_sends_what_ring_0_kept_before_it_restarts_the_partition() {
    let kernel = Fake::new([]);
    kernel.kept.borrow_mut().extend([(0x3f8, b'b'), (0x3f8, b'y'), (0x3f8, b'e'), (0x3f8, b'\n')]);
    let mut memory = Memory::new(2);
    let mut r = unstarted(&mut memory, 0, 2);
    r.boot = Some(boot());
    super::take_over(&kernel, &mut r, TSC_HZ);
    super::after_vid_restart(&kernel, &kernel, &mut r, 0);
    let log = kernel.log.borrow();
    let at = |line: &str| log.iter().position(|l| l.contains(line));
    let (bye, restart) = (at("guest: bye"), at("guest: reset by VID restart; restarting (1)"));
    assert!(bye.is_some() && bye < restart, "{log:?}");
    assert_eq!(thr_posts(&kernel), [false], "posting off before the VPs start");
    assert!(kernel.kept.borrow().is_empty());
}

/// A restart takes VTL 1 away after the VPs' resets; a partition without
/// it (INVALID_STATE) restarts all the same, another refusal ends it.
#[test]
fn a_restart_takes_vtl1_away() {
    for (refusal, ends) in [(ErrorCode::INVALID_STATE, false), (ErrorCode::INVALID_CAPABILITY, true)] {
        let kernel = Fake::new([]);
        kernel.vtl_refusal.set(Some(refusal));
        let mut memory = Memory::new(1);
        let mut r = unstarted(&mut memory, 0, 1);
        r.boot = Some(boot());
        super::after_vid_restart(&kernel, &kernel, &mut r, 0);
        assert_eq!(r.stopped, ends, "{refusal:?}");
        assert!(kernel.vp_calls.borrow().contains(&VpCall::DisablePartitionVtl(r.partition, 1)));
    }
}

/// HvEnableVpVtl's ring-0 part: the VTL made, then its initial context set
/// in it (register access acts on the active VTL), then back.
#[test]
fn enabling_a_vps_vtl_sets_its_context_in_that_vtl_and_switches_back() {
    use tlfs::vsm::HvInitialVpContext;
    use tlfs::zerocopy::FromZeros;
    let fake = Fake::new([]);
    let registers = HvInitialVpContext::new_zeroed().registers();
    let vp = CapSlot(9);
    assert_eq!(super::view::enable_vp_vtl(&fake, vp, 1, 0, &registers), Ok(Ok(())));
    let calls = fake.vp_calls.borrow().clone();
    let [VpCall::EnableVpVtl(a, 1), VpCall::SwitchVtl(b, 1), VpCall::SetRegisters(c, words), VpCall::SwitchVtl(d, 0)] =
        &calls[..]
    else {
        panic!("{calls:?}")
    };
    assert!([a, b, c, d].iter().all(|&&cap| cap == vp));
    assert_eq!((words[0], words.len(), words[1]), (18, 1 + 3 * 18, u64::from(HvRegisterName::RIP.0)));
    // Refused: nothing switched, nothing set.
    let fake = Fake::new([]);
    fake.vtl_refusal.set(Some(ErrorCode::OUT_OF_MEMORY));
    assert_eq!(super::view::enable_vp_vtl(&fake, vp, 1, 0, &registers), Err(ErrorCode::OUT_OF_MEMORY));
    assert_eq!(*fake.vp_calls.borrow(), [VpCall::EnableVpVtl(vp, 1)]);
}
