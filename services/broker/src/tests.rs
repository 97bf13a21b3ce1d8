use super::*;
use broker_api::{Client, dispatch};
use partition_manager_api::hv_status;
use std::cell::RefCell;
use tessera_idl::testing::Loopback;
use tessera_idl::{CapSlot, Message};
use tlfs::HvStatus;

const SUP: Badge = SUPERVISOR_BADGE;
/// The VID of partitions 0 and 1, and the VID of partition 2.
const VID_A: Badge = Badge(5);
const VID_B: Badge = Badge(6);
const P0: u64 = 0;
const P1: u64 = 1;
const P2: u64 = 2;
const MESSAGE: u32 = 1;
const EVENT: u32 = 2;
const MONITOR: u32 = 3;

/// Partitions 0 (2 VPs) and 1 (1 VP) run by VID_A, 2 (4 VPs) by VID_B,
/// every SINT of every VP taking messages and events.
fn registered() -> Broker {
    let mut b = Broker::new();
    for (vid, p, vcpus) in [(VID_A, P0, 2), (VID_A, P1, 1), (VID_B, P2, 4)] {
        b.register_partition(SUP, vid.0, p, vcpus).unwrap();
        for vp in 0..vcpus {
            b.synic_state(vid, p, vp, u32::MAX).unwrap();
        }
    }
    b
}

/// As the manifest declares them: connection 0x10 of P0 to message port 7
/// of P2 (VP 3, SINT 2); connection 0x11 of P0 to event port 8 of P2
/// (VP 1, SINT 3, flags 100..=103); connection 0x10 of P2 to message port
/// 7 of P0 (VP 1, SINT 5); connection 0x12 of P0 to its own monitor port 9.
fn connected() -> Broker {
    let mut b = registered();
    b.create_port(SUP, P2, 7, P0, MESSAGE, 3, 2, 0, 0).unwrap();
    b.connect_port(SUP, P0, 0x10, P2, 7).unwrap();
    b.create_port(SUP, P2, 8, P0, EVENT, 1, 3, 100, 4).unwrap();
    b.connect_port(SUP, P0, 0x11, P2, 8).unwrap();
    b.create_port(SUP, P0, 7, P2, MESSAGE, 1, 5, 0, 0).unwrap();
    b.connect_port(SUP, P2, 0x10, P0, 7).unwrap();
    b.create_port(SUP, P0, 9, P0, MONITOR, 0, 1, 0, 0).unwrap();
    b.connect_port(SUP, P0, 0x12, P0, 9).unwrap();
    b
}

fn message(vp: u32, sint: u32, port: u32, message_type: u32, payload: &[u8]) -> Delivery {
    Delivery::Message { vp, sint, port, message_type, payload: Bytes::from_slice(payload).unwrap() }
}

#[test]
fn only_the_supervisor_registers_and_declares() {
    let mut b = Broker::new();
    assert_eq!(b.register_partition(VID_A, VID_A.0, P0, 1), Err(HvError::ACCESS_DENIED));
    assert_eq!(b.register_partition(SUP, VID_A.0, MAX_PARTITIONS as u64, 1), Err(HvError::INVALID_PARTITION_ID));
    assert_eq!(b.register_partition(SUP, VID_A.0, P0, 0), Err(HvError::INVALID_PARAMETER));
    assert_eq!(b.register_partition(SUP, VID_A.0, P0, MAX_VPS + 1), Err(HvError::INVALID_PARAMETER));
    let mut b = registered();
    assert_eq!(b.create_port(VID_A, P2, 7, P0, MESSAGE, 0, 2, 0, 0), Err(HvError::ACCESS_DENIED));
    b.create_port(SUP, P2, 7, P0, MESSAGE, 0, 2, 0, 0).unwrap();
    assert_eq!(b.connect_port(VID_A, P0, 1, P2, 7), Err(HvError::ACCESS_DENIED));
    b.connect_port(SUP, P0, 1, P2, 7).unwrap();
    assert_eq!(b.disconnect_port(VID_A, P0, 1), Err(HvError::ACCESS_DENIED));
    assert_eq!(b.delete_port(VID_B, P2, 7), Err(HvError::ACCESS_DENIED));
    assert_eq!((b.port_count(), b.connection_count()), (1, 1));
}

#[test]
fn ports_and_connections_follow_the_tlfs_rules() {
    let mut b = registered();
    assert_eq!(b.create_port(SUP, 5, 7, P0, MESSAGE, 0, 2, 0, 0), Err(HvError::INVALID_PARTITION_ID), "unregistered");
    assert_eq!(b.create_port(SUP, P2, 7, u64::MAX, MESSAGE, 0, 2, 0, 0), Err(HvError::INVALID_PARTITION_ID));
    assert_eq!(b.create_port(SUP, P2, 0x0100_0000, P0, MESSAGE, 0, 2, 0, 0), Err(HvError::INVALID_PARAMETER));
    for bad_type in [0, 4, u32::MAX] {
        assert_eq!(b.create_port(SUP, P2, 1, P0, bad_type, 0, 0, 0, 0), Err(HvError::INVALID_PARAMETER));
    }
    assert_eq!(b.create_port(SUP, P2, 1, P0, MESSAGE, 0, 16, 0, 0), Err(HvError::INVALID_PARAMETER));
    assert_eq!(b.create_port(SUP, P2, 1, P0, MESSAGE, 4, 0, 0, 0), Err(HvError::INVALID_VP_INDEX), "P2 has 4 VPs");
    assert_eq!(b.create_port(SUP, P2, 1, P0, MESSAGE, 0, 0, 1, 1), Err(HvError::INVALID_PARAMETER), "flags");
    assert_eq!(b.create_port(SUP, P2, 1, P0, EVENT, 0, 0, 0, 0), Err(HvError::INVALID_PARAMETER), "no flags");
    assert_eq!(b.create_port(SUP, P2, 1, P0, EVENT, 0, 0, 2047, 2), Err(HvError::INVALID_PARAMETER));
    assert_eq!(b.create_port(SUP, P2, 1, P0, EVENT, 0, 0, u32::MAX, 2), Err(HvError::INVALID_PARAMETER));
    b.create_port(SUP, P2, 1, P0, EVENT, 3, 15, 2047, 1).unwrap();
    assert_eq!(
        b.create_port(SUP, P2, 1, P0, MESSAGE, 0, 0, 0, 0),
        Err(HvError::INVALID_PORT_ID),
        "unique per partition"
    );
    b.create_port(SUP, P1, 1, P0, MESSAGE, 0, 0, 0, 0).unwrap();

    b.connect_port(SUP, P0, 100, P2, 1).unwrap();
    assert_eq!(b.connect_port(SUP, P1, 101, P2, 1), Err(HvError::ACCESS_DENIED), "P2's port admits only P0");
    assert_eq!(b.connect_port(SUP, P0, 100, P1, 1), Err(HvError::INVALID_CONNECTION_ID), "unique per partition");
    assert_eq!(b.connect_port(SUP, P0, 101, P2, 2), Err(HvError::INVALID_PORT_ID), "no such port");
    assert_eq!(b.connect_port(SUP, P0, 0xff00_0001, P1, 1), Err(HvError::INVALID_PARAMETER));
    b.connect_port(SUP, P0, 101, P1, 1).unwrap();

    let port = *b.resolve(VID_A, P0, 100).unwrap();
    assert_eq!(
        (port.partition, port.id.get(), port.port_type, port.target_vp, port.target_sint),
        (P2, 1, HvPortType::EVENT, 3, 15)
    );
    b.disconnect_port(SUP, P0, 100).unwrap();
    assert_eq!(b.disconnect_port(SUP, P0, 100), Err(HvError::INVALID_CONNECTION_ID));
    assert_eq!(b.resolve(VID_A, P0, 100), Err(HvError::INVALID_CONNECTION_ID));
}

#[test]
fn a_vid_speaks_only_for_its_partitions_and_their_connections() {
    let mut b = connected();
    // VID_B does not run P0: whatever it asks for P0 is refused.
    assert_eq!(b.resolve(VID_B, P0, 0x10), Err(HvError::ACCESS_DENIED));
    assert_eq!(b.post_message(VID_B, P0, 0x10, 1, b"x"), Err(HvError::ACCESS_DENIED));
    assert_eq!(b.signal_event(VID_B, P0, 0x11, 0), Err(HvError::ACCESS_DENIED));
    assert_eq!(b.fetch(VID_B, P0), Err(HvError::ACCESS_DENIED));
    assert_eq!(b.post_message(VID_A, 99, 0x10, 1, b"x"), Err(HvError::ACCESS_DENIED), "no such partition");
    assert_eq!(b.post_message(SUP, P0, 0x10, 1, b"x"), Err(HvError::ACCESS_DENIED), "nor the supervisor");
    // P1 (VID_A's too) does not hold P0's connections: the same ID is refused.
    assert_eq!(b.resolve(VID_A, P1, 0x10), Err(HvError::INVALID_CONNECTION_ID));
    assert_eq!(b.post_message(VID_A, P1, 0x10, 1, b"x"), Err(HvError::INVALID_CONNECTION_ID));
    assert_eq!(b.signal_event(VID_A, P1, 0x11, 0), Err(HvError::INVALID_CONNECTION_ID));
    assert_eq!(b.post_message(VID_A, P0, 0x0100_0010, 1, b"x"), Err(HvError::INVALID_CONNECTION_ID), "reserved bits");
    // P2 holds its own connection 0x10, to P0.
    assert_eq!(b.resolve(VID_B, P2, 0x10).map(|p| (p.partition, p.id.get())), Ok((P0, 7)));
    assert_eq!(b.resolve(VID_A, P0, 0x10).map(|p| (p.partition, p.id.get())), Ok((P2, 7)));
    // Nothing was queued by the refusals.
    assert_eq!(b.fetch(VID_B, P2), Err(HvError::NO_DATA));
    assert_eq!(b.fetch(VID_A, P0), Err(HvError::NO_DATA));
}

#[test]
fn post_message_checks_its_parameters_and_the_port() {
    let mut b = connected();
    for bad_type in [0, HYPERVISOR_MESSAGE_BIT, HYPERVISOR_MESSAGE_BIT | 1, u32::MAX] {
        assert_eq!(b.post_message(VID_A, P0, 0x10, bad_type, b"x"), Err(HvError::INVALID_PARAMETER), "{bad_type:#x}");
    }
    assert_eq!(b.post_message(VID_A, P0, 0x10, 1, &[0; 241]), Err(HvError::INVALID_PARAMETER));
    assert_eq!(b.post_message(VID_A, P0, 0x11, 1, b"x"), Err(HvError::INVALID_PORT_ID), "an event port");
    assert_eq!(b.post_message(VID_A, P0, 0x12, 1, b"x"), Err(HvError::INVALID_PORT_ID), "a monitor port");
    b.post_message(VID_A, P0, 0x10, 0x7fff_ffff, &[0xab; 240]).unwrap();
    b.post_message(VID_A, P0, 0x10, 1, &[]).unwrap();
    assert_eq!(b.fetch(VID_B, P2), Ok(message(3, 2, 7, 0x7fff_ffff, &[0xab; 240])));
    assert_eq!(b.fetch(VID_B, P2), Ok(message(3, 2, 7, 1, &[])));
}

#[test]
fn signal_event_checks_the_flag_number_and_the_port() {
    let mut b = connected();
    assert_eq!(b.signal_event(VID_A, P0, 0x11, 4), Err(HvError::INVALID_PARAMETER), "4 flags");
    assert_eq!(b.signal_event(VID_A, P0, 0x11, u32::MAX), Err(HvError::INVALID_PARAMETER));
    assert_eq!(b.signal_event(VID_A, P0, 0x10, 0), Err(HvError::INVALID_PORT_ID), "a message port");
    assert_eq!(b.signal_event(VID_A, P0, 0x12, 0), Err(HvError::INVALID_PORT_ID), "a monitor port");
    assert_eq!(b.fetch(VID_B, P2), Err(HvError::NO_DATA));
    // A flag is a bit: signalled twice, delivered once; numbers are the SINT's.
    b.signal_event(VID_A, P0, 0x11, 3).unwrap();
    b.signal_event(VID_A, P0, 0x11, 3).unwrap();
    b.signal_event(VID_A, P0, 0x11, 0).unwrap();
    assert_eq!(b.fetch(VID_B, P2), Ok(Delivery::Event { vp: 1, sint: 3, port: 8, flag: 100 }));
    assert_eq!(b.fetch(VID_B, P2), Ok(Delivery::Event { vp: 1, sint: 3, port: 8, flag: 103 }));
    assert_eq!(b.fetch(VID_B, P2), Err(HvError::NO_DATA));
}

#[test]
fn fetch_event_takes_flags_and_leaves_messages_queued() {
    let mut b = connected();
    b.post_message(VID_A, P0, 0x10, 1, b"first").unwrap();
    b.signal_event(VID_A, P0, 0x11, 2).unwrap();
    assert_eq!(b.fetch_event(VID_A, P2), Err(HvError::ACCESS_DENIED), "not its VID");
    assert_eq!(b.fetch_event(VID_B, P2), Ok(Delivery::Event { vp: 1, sint: 3, port: 8, flag: 102 }));
    assert_eq!(b.fetch_event(VID_B, P2), Err(HvError::NO_DATA), "the message stays");
    assert_eq!(b.fetch(VID_B, P2), Ok(message(3, 2, 7, 1, b"first")));
    assert_eq!(b.fetch(VID_B, P2), Err(HvError::NO_DATA));
}

#[test]
fn a_port_queue_is_bounded() {
    let mut b = connected();
    for i in 0..QUEUE_DEPTH as u8 {
        b.post_message(VID_A, P0, 0x10, 1, &[i]).unwrap();
    }
    assert_eq!(b.post_message(VID_A, P0, 0x10, 1, b"full"), Err(HvError::INSUFFICIENT_BUFFERS));
    // Another port's queue is its own.
    b.post_message(VID_B, P2, 0x10, 2, b"to P0").unwrap();
    // Fetching one makes room for one.
    assert_eq!(b.fetch(VID_B, P2), Ok(message(3, 2, 7, 1, &[0])));
    b.post_message(VID_A, P0, 0x10, 1, b"again").unwrap();
    assert_eq!(b.post_message(VID_A, P0, 0x10, 1, b"full"), Err(HvError::INSUFFICIENT_BUFFERS));
}

#[test]
fn fetch_gives_events_first_then_messages_in_posted_order() {
    let mut b = connected();
    // Two message ports of P2: a second one, from P1.
    b.create_port(SUP, P2, 20, P1, MESSAGE, 0, 4, 0, 0).unwrap();
    b.connect_port(SUP, P1, 0x10, P2, 20).unwrap();
    b.post_message(VID_A, P0, 0x10, 1, b"first").unwrap();
    b.post_message(VID_A, P1, 0x10, 2, b"second").unwrap();
    b.post_message(VID_A, P0, 0x10, 3, b"third").unwrap();
    b.signal_event(VID_A, P0, 0x11, 1).unwrap();
    assert_eq!(b.fetch(VID_B, P2), Ok(Delivery::Event { vp: 1, sint: 3, port: 8, flag: 101 }));
    assert_eq!(b.fetch(VID_B, P2), Ok(message(3, 2, 7, 1, b"first")));
    assert_eq!(b.fetch(VID_B, P2), Ok(message(0, 4, 20, 2, b"second")));
    assert_eq!(b.fetch(VID_B, P2), Ok(message(3, 2, 7, 3, b"third")));
    assert_eq!(b.fetch(VID_B, P2), Err(HvError::NO_DATA));
    // A self-connection delivers to the sender's own partition.
    b.create_port(SUP, P0, 30, P0, MESSAGE, 1, 0, 0, 0).unwrap();
    b.connect_port(SUP, P0, 0x30, P0, 30).unwrap();
    b.post_message(VID_A, P0, 0x30, 9, b"me").unwrap();
    assert_eq!(b.fetch(VID_A, P1), Err(HvError::NO_DATA), "P1 is another partition");
    assert_eq!(b.fetch(VID_A, P0), Ok(message(1, 0, 30, 9, b"me")));
}

#[test]
fn the_port_partitions_vid_is_notified_once_per_round() {
    let mut b = connected();
    assert_eq!(b.take_notifications(), [None; MAX_PARTIES]);
    b.post_message(VID_A, P0, 0x10, 1, b"x").unwrap();
    b.signal_event(VID_A, P0, 0x11, 0).unwrap();
    let mut expected = [None; MAX_PARTIES];
    expected[0] = Some(VID_B);
    assert_eq!(b.take_notifications(), expected, "P2's VID, once");
    assert_eq!(b.take_notifications(), [None; MAX_PARTIES]);
    // Refused sends notify nobody.
    assert_eq!(b.post_message(VID_A, P0, 0x10, 0, b"x"), Err(HvError::INVALID_PARAMETER));
    assert_eq!(b.take_notifications(), [None; MAX_PARTIES]);
    b.post_message(VID_B, P2, 0x10, 1, b"x").unwrap();
    expected[0] = Some(VID_A);
    assert_eq!(b.take_notifications(), expected);
}

#[test]
fn deleting_a_port_removes_its_connections_and_deliveries() {
    let mut b = connected();
    b.post_message(VID_A, P0, 0x10, 1, b"x").unwrap();
    b.delete_port(SUP, P2, 7).unwrap();
    assert_eq!(b.delete_port(SUP, P2, 7), Err(HvError::INVALID_PORT_ID));
    assert_eq!(b.post_message(VID_A, P0, 0x10, 1, b"x"), Err(HvError::INVALID_CONNECTION_ID));
    assert_eq!(b.fetch(VID_B, P2), Err(HvError::NO_DATA));
    // Re-created (a restarted broker is told again), it starts empty.
    b.create_port(SUP, P2, 7, P0, MESSAGE, 3, 2, 0, 0).unwrap();
    b.connect_port(SUP, P0, 0x10, P2, 7).unwrap();
    assert_eq!(b.fetch(VID_B, P2), Err(HvError::NO_DATA));
}

#[test]
fn the_tables_are_bounded() {
    let mut b = registered();
    for i in 0..MAX_PORTS as u32 {
        b.create_port(SUP, P2, i, P0, MESSAGE, 0, 0, 0, 0).unwrap();
    }
    assert_eq!(b.create_port(SUP, P2, 999, P0, MESSAGE, 0, 0, 0, 0), Err(HvError::INSUFFICIENT_MEMORY));
    for i in 0..MAX_CONNECTIONS as u32 {
        b.connect_port(SUP, P0, i, P2, i).unwrap();
    }
    assert_eq!(b.connect_port(SUP, P0, 999, P2, 0), Err(HvError::INSUFFICIENT_MEMORY));
    b.disconnect_port(SUP, P0, 3).unwrap();
    b.connect_port(SUP, P0, 999, P2, 0).unwrap();
}

#[test]
fn the_interface_carries_tlfs_statuses_end_to_end() {
    let server = RefCell::new(connected());
    let as_vid = |badge: Badge| {
        let server = &server;
        Loopback::new(badge, move |b, request: &Message| dispatch(&mut *server.borrow_mut(), b, request))
    };
    let (a, b, sup) = (as_vid(VID_A), as_vid(VID_B), as_vid(SUP));
    let (a, b, sup) = (Client::new(&a, CapSlot(5)), Client::new(&b, CapSlot(5)), Client::new(&sup, CapSlot(5)));
    assert_eq!(hv_status(&a.post_message(P0, 0x10, 0x42, &[7; 240])), HvStatus::SUCCESS);
    assert_eq!(hv_status(&a.post_message(P0, 0x10, 0x8000_0042, b"")), HvStatus::INVALID_PARAMETER);
    assert_eq!(hv_status(&a.post_message(P1, 0x10, 1, b"")), HvStatus::INVALID_CONNECTION_ID);
    assert_eq!(hv_status(&b.post_message(P0, 0x10, 1, b"")), HvStatus::ACCESS_DENIED);
    assert_eq!(hv_status(&a.signal_event(P0, 0x11, 2)), HvStatus::SUCCESS);
    assert_eq!(hv_status(&a.signal_event(P0, 0x10, 2)), HvStatus::INVALID_PORT_ID);
    for _ in 1..QUEUE_DEPTH {
        assert_eq!(hv_status(&a.post_message(P0, 0x10, 1, b"")), HvStatus::SUCCESS);
    }
    assert_eq!(hv_status(&a.post_message(P0, 0x10, 1, b"")), HvStatus::INSUFFICIENT_BUFFERS);
    assert_eq!(b.fetch(P2), Ok(Ok((delivery::EVENT, 1, 3, 8, 102, Bytes::new()))));
    assert_eq!(b.fetch(P2), Ok(Ok((delivery::MESSAGE, 3, 2, 7, 0x42, Bytes::from_slice(&[7; 240]).unwrap()))));
    assert_eq!(hv_status(&a.fetch(P2)), HvStatus::ACCESS_DENIED);
    assert_eq!(a.resolve(P0, 0x10), Ok(Ok((P2, 7, MESSAGE, 3, 2))));
    assert_eq!(hv_status(&a.create_port(P2, 50, P0, MESSAGE, 0, 0, 0, 0)), HvStatus::ACCESS_DENIED);
    assert_eq!(hv_status(&sup.create_port(P2, 50, P0, MESSAGE, 0, 0, 0, 0)), HvStatus::SUCCESS);
    assert_eq!(hv_status(&sup.register_partition(VID_A.0, 3, 1)), HvStatus::SUCCESS);
    assert_eq!(hv_status(&a.register_partition(VID_A.0, 4, 1)), HvStatus::ACCESS_DENIED);
}

#[test]
fn the_broker_fits_its_tasks_stack() {
    // The task keeps it on its 128 KiB stack (system.toml), with room to
    // serve: a request, a reply and a fetched message besides.
    let size = core::mem::size_of::<Broker>();
    assert!(size <= 64 << 10, "{size} bytes");
}

/// A service (task 3, badge 9) owns message port 0x40 that P2's connection
/// 4 leads to, and holds connection 1 to P2's message port 0x41 (VP 0,
/// SINT 2): the VMBus host's arrangement.
#[test]
fn a_service_serves_the_port_a_partitions_connection_targets() {
    const HOST: Badge = Badge(9);
    let host = broker_api::task_party(3);
    let mut b = registered();
    assert_eq!(b.register_partition(SUP, HOST.0, host, 2), Err(HvError::INVALID_PARAMETER), "a service has one VP");
    let beyond = broker_api::task_party(broker_api::MAX_TASK_PARTIES as u8);
    assert_eq!(b.register_partition(SUP, HOST.0, beyond, 1), Err(HvError::INVALID_PARTITION_ID));
    assert_eq!(b.register_partition(SUP, HOST.0, MAX_PARTITIONS as u64, 1), Err(HvError::INVALID_PARTITION_ID));
    b.register_partition(SUP, HOST.0, host, 1).unwrap();
    b.create_port(SUP, host, 0x40, P2, MESSAGE, 0, 0, 0, 0).unwrap();
    b.connect_port(SUP, P2, 4, host, 0x40).unwrap();
    b.create_port(SUP, P2, 0x41, host, MESSAGE, 0, 2, 0, 0).unwrap();
    b.connect_port(SUP, host, 1, P2, 0x41).unwrap();
    let _ = b.take_notifications();

    // The guest posts; only the service is told, and only it may fetch.
    b.post_message(VID_B, P2, 4, 1, b"contact").unwrap();
    assert_eq!(b.take_notifications()[..2], [Some(HOST), None]);
    assert_eq!(b.fetch(VID_B, host), Err(HvError::ACCESS_DENIED));
    assert_eq!(b.fetch(VID_A, host), Err(HvError::ACCESS_DENIED));
    assert_eq!(b.fetch(HOST, host), Ok(message(0, 0, 0x40, 1, b"contact")));
    assert_eq!(b.fetch(HOST, host), Err(HvError::NO_DATA));

    // The service answers on its own connection, and speaks for nobody else.
    assert_eq!(b.post_message(HOST, P2, 4, 1, b"forged"), Err(HvError::ACCESS_DENIED));
    assert_eq!(b.post_message(HOST, host, 4, 1, b"x"), Err(HvError::INVALID_CONNECTION_ID));
    b.post_message(HOST, host, 1, 1, b"version").unwrap();
    assert_eq!(b.take_notifications()[..2], [Some(VID_B), None]);
    assert_eq!(b.fetch(VID_B, P2), Ok(message(0, 2, 0x41, 1, b"version")));
    // A partition's VID cannot reach the service's connection either.
    assert_eq!(b.resolve(VID_B, host, 1), Err(HvError::ACCESS_DENIED));
}

/// TLFS 11.11.1 and 11.11.2: `INVALID_SYNIC_STATE` when the target VP's
/// SynIC cannot take it, as its VID last reported; nothing is queued.
#[test]
fn the_target_synic_state_is_checked_as_its_vid_reported_it() {
    let mut b = Broker::new();
    b.register_partition(SUP, VID_A.0, P0, 2).unwrap();
    b.register_partition(SUP, VID_B.0, P2, 4).unwrap();
    b.create_port(SUP, P2, 7, P0, MESSAGE, 3, 2, 0, 0).unwrap();
    b.connect_port(SUP, P0, 0x10, P2, 7).unwrap();
    b.create_port(SUP, P2, 8, P0, EVENT, 1, 3, 100, 4).unwrap();
    b.connect_port(SUP, P0, 0x11, P2, 8).unwrap();
    // Registered: a SynIC at reset takes nothing.
    assert_eq!(b.post_message(VID_A, P0, 0x10, 1, b"x"), Err(HvError::INVALID_SYNIC_STATE));
    assert_eq!(b.signal_event(VID_A, P0, 0x11, 0), Err(HvError::INVALID_SYNIC_STATE));
    // Parameters are checked first.
    assert_eq!(b.signal_event(VID_A, P0, 0x11, 4), Err(HvError::INVALID_PARAMETER));
    // Only the partition's own VID reports, for a VP it has.
    let both = accepting::messages(2) | accepting::events(3);
    assert_eq!(b.synic_state(VID_A, P2, 3, both), Err(HvError::ACCESS_DENIED));
    assert_eq!(b.synic_state(VID_B, P2, 4, both), Err(HvError::INVALID_VP_INDEX));
    // VP 3's SINT 2 takes messages; VP 1's SINT 3 does not take events yet.
    b.synic_state(VID_B, P2, 3, accepting::messages(2)).unwrap();
    b.post_message(VID_A, P0, 0x10, 1, b"x").unwrap();
    assert_eq!(b.signal_event(VID_A, P0, 0x11, 0), Err(HvError::INVALID_SYNIC_STATE));
    b.synic_state(VID_B, P2, 1, accepting::events(3) | accepting::messages(3)).unwrap();
    b.signal_event(VID_A, P0, 0x11, 0).unwrap();
    // A SINT masked again (events off, messages still on).
    b.synic_state(VID_B, P2, 1, accepting::messages(3)).unwrap();
    assert_eq!(b.signal_event(VID_A, P0, 0x11, 1), Err(HvError::INVALID_SYNIC_STATE));
    // Only what was accepted was queued.
    assert_eq!(b.fetch(VID_B, P2), Ok(Delivery::Event { vp: 1, sint: 3, port: 8, flag: 100 }));
    assert_eq!(b.fetch(VID_B, P2), Ok(message(3, 2, 7, 1, b"x")));
    assert_eq!(b.fetch(VID_B, P2), Err(HvError::NO_DATA));
    // Registered again (a restarted partition): its SynIC is at reset.
    b.register_partition(SUP, VID_B.0, P2, 4).unwrap();
    assert_eq!(b.post_message(VID_A, P0, 0x10, 1, b"x"), Err(HvError::INVALID_SYNIC_STATE));
}

/// A broker started again knows nothing of the SynICs of partitions that
/// ran meanwhile: until a partition's VID reports one, its fetches ask for
/// it (`INVALID_SYNIC_STATE`). At the first start it has a SynIC at reset.
#[test]
fn a_partition_whose_synic_state_is_unheard_is_asked_for_it() {
    let mut b = Broker::new();
    // At the first start a partition has a SynIC at reset, known.
    b.register_partition(SUP, VID_A.0, P0, 2).unwrap();
    assert_eq!(b.fetch(VID_A, P0), Err(HvError::NO_DATA));
    let mut b = Broker::new();
    assert_eq!(b.started_again(VID_A), Err(HvError::ACCESS_DENIED));
    b.started_again(SUP).unwrap();
    b.register_partition(SUP, VID_A.0, P0, 2).unwrap();
    assert_eq!(b.fetch(VID_A, P0), Err(HvError::INVALID_SYNIC_STATE));
    assert_eq!(b.fetch_event(VID_A, P0), Err(HvError::INVALID_SYNIC_STATE));
    // Another VID learns nothing.
    assert_eq!(b.fetch(VID_B, P0), Err(HvError::ACCESS_DENIED));
    b.synic_state(VID_A, P0, 1, 0).unwrap();
    assert_eq!(b.fetch(VID_A, P0), Err(HvError::NO_DATA));
}
