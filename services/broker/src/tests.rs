use super::*;
use broker_api::{Client, dispatch};
use partition_manager_api::hv_status;
use std::cell::RefCell;
use tessera_idl::testing::Loopback;
use tessera_idl::{CapSlot, Message};
use tlfs::HvStatus;

const PM: Badge = Badge(4);
const OTHER: Badge = Badge(9);
const P1: u64 = 1;
const P2: u64 = 2;
const MESSAGE: u32 = 1;
const EVENT: u32 = 2;

#[test]
fn ports_and_connections_follow_the_tlfs_rules() {
    let mut b = Broker::new();
    b.create_port(PM, P1, 7, P2, MESSAGE, 0, 2).unwrap();
    assert_eq!(
        b.create_port(PM, P1, 7, P2, EVENT, 0, 2),
        Err(HvError::INVALID_PORT_ID),
        "port IDs are unique per partition"
    );
    b.create_port(PM, P2, 7, P1, EVENT, 1, 3).unwrap();

    b.connect_port(PM, P2, 100, P1, 7).unwrap();
    assert_eq!(b.connect_port(PM, P2, 100, P2, 7), Err(HvError::ACCESS_DENIED), "P2's port admits only P1");
    assert_eq!(
        b.connect_port(PM, P2, 100, P1, 7),
        Err(HvError::INVALID_CONNECTION_ID),
        "connection IDs are unique per partition"
    );
    assert_eq!(b.connect_port(PM, P2, 101, P1, 8), Err(HvError::INVALID_PORT_ID), "no such port");
    b.connect_port(PM, P1, 100, P2, 7).unwrap();

    let port = b.resolve(P2, 100).unwrap();
    assert_eq!((port.partition, port.id.get(), port.port_type, port.target_sint), (P1, 7, HvPortType::MESSAGE, 2));
    assert_eq!(b.resolve(P1, 100).unwrap().port_type, HvPortType::EVENT);

    b.disconnect_port(PM, P2, 100).unwrap();
    assert_eq!(b.disconnect_port(PM, P2, 100), Err(HvError::INVALID_CONNECTION_ID));
    assert_eq!(b.resolve(P2, 100), Err(HvError::INVALID_CONNECTION_ID));
}

#[test]
fn deleting_a_port_removes_its_connections() {
    let mut b = Broker::new();
    b.create_port(PM, P1, 1, P2, MESSAGE, 0, 0).unwrap();
    b.connect_port(PM, P2, 5, P1, 1).unwrap();
    b.connect_port(PM, P2, 6, P1, 1).unwrap();
    assert_eq!(b.connection_count(), 2);
    b.delete_port(PM, P1, 1).unwrap();
    assert_eq!((b.port_count(), b.connection_count()), (0, 0));
    assert_eq!(b.delete_port(PM, P1, 1), Err(HvError::INVALID_PORT_ID));
    assert_eq!(b.resolve(P2, 5), Err(HvError::INVALID_CONNECTION_ID));
}

#[test]
fn malformed_arguments_are_invalid_parameters() {
    let mut b = Broker::new();
    assert_eq!(b.create_port(PM, 0, 1, P2, MESSAGE, 0, 0), Err(HvError::INVALID_PARTITION_ID));
    assert_eq!(b.create_port(PM, P1, 1, u64::MAX, MESSAGE, 0, 0), Err(HvError::INVALID_PARTITION_ID));
    assert_eq!(b.create_port(PM, P1, 0x0100_0000, P2, MESSAGE, 0, 0), Err(HvError::INVALID_PARAMETER));
    for bad_type in [0, 4, u32::MAX] {
        assert_eq!(b.create_port(PM, P1, 1, P2, bad_type, 0, 0), Err(HvError::INVALID_PARAMETER));
    }
    assert_eq!(b.create_port(PM, P1, 1, P2, MESSAGE, 0, 16), Err(HvError::INVALID_PARAMETER));
    b.create_port(PM, P1, 0x00ff_ffff, P2, 3, 0, 15).unwrap();
    assert_eq!(b.connect_port(PM, P2, 0xff00_0001, P1, 0x00ff_ffff), Err(HvError::INVALID_PARAMETER));
    assert_eq!(b.connect_port(PM, 0, 1, P1, 0x00ff_ffff), Err(HvError::INVALID_PARTITION_ID));
    assert_eq!(b.disconnect_port(PM, P2, 0x0100_0000), Err(HvError::INVALID_PARAMETER));
}

#[test]
fn only_the_creator_removes_ports_and_connections() {
    let mut b = Broker::new();
    b.create_port(PM, P1, 1, P2, MESSAGE, 0, 0).unwrap();
    b.connect_port(PM, P2, 1, P1, 1).unwrap();
    assert_eq!(b.disconnect_port(OTHER, P2, 1), Err(HvError::ACCESS_DENIED));
    assert_eq!(b.delete_port(OTHER, P1, 1), Err(HvError::ACCESS_DENIED));
    assert_eq!((b.port_count(), b.connection_count()), (1, 1));
}

#[test]
fn the_tables_are_bounded() {
    let mut b = Broker::new();
    for i in 0..MAX_PORTS as u32 {
        b.create_port(PM, P1, i, P2, MESSAGE, 0, 0).unwrap();
    }
    assert_eq!(b.create_port(PM, P1, 999, P2, MESSAGE, 0, 0), Err(HvError::INSUFFICIENT_MEMORY));
    for i in 0..MAX_CONNECTIONS as u32 {
        b.connect_port(PM, P2, i, P1, i).unwrap();
    }
    assert_eq!(b.connect_port(PM, P2, 999, P1, 0), Err(HvError::INSUFFICIENT_MEMORY));
    b.disconnect_port(PM, P2, 3).unwrap();
    b.connect_port(PM, P2, 999, P1, 0).unwrap();
}

#[test]
fn the_interface_carries_tlfs_statuses_end_to_end() {
    let server = RefCell::new(Broker::new());
    let transport = Loopback::new(PM, |badge, request: &Message| dispatch(&mut *server.borrow_mut(), badge, request));
    let broker = Client::new(&transport, CapSlot(5));
    assert_eq!(hv_status(&broker.create_port(P1, 3, P2, EVENT, 1, 4)), HvStatus::SUCCESS);
    assert_eq!(hv_status(&broker.create_port(P1, 3, P2, EVENT, 1, 4)), HvStatus::INVALID_PORT_ID);
    assert_eq!(hv_status(&broker.connect_port(P2, 9, P1, 3)), HvStatus::SUCCESS);
    assert_eq!(broker.resolve(P2, 9), Ok(Ok((P1, 3, EVENT, 1, 4))));
    assert_eq!(hv_status(&broker.connect_port(P2, 9, P1, 3)), HvStatus::INVALID_CONNECTION_ID);
    assert_eq!(hv_status(&broker.disconnect_port(P2, 10)), HvStatus::INVALID_CONNECTION_ID);
    assert_eq!(hv_status(&broker.delete_port(P1, 3)), HvStatus::SUCCESS);
    assert_eq!(hv_status(&broker.resolve(P2, 9)), HvStatus::INVALID_CONNECTION_ID);
}
