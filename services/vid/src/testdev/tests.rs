use super::*;

fn req(conn: u8, ctl: u8, vp: u8, sint: u8) -> u32 {
    Request { conn, ctl, vp, sint }.encode()
}

#[test]
fn requests_decode_as_kvm_unit_tests_encode_them() {
    // synic_ctl(ctl, vcpu, sint, conn): conn << 24 | ctl << 16 | vcpu << 8 | sint.
    assert_eq!(Request::decode(0x2a04_010e), Request { conn: 0x2a, ctl: 4, vp: 1, sint: 14 });
    assert_eq!(req(0x2a, 4, 1, 14), 0x2a04_010e);
    for v in [0u32, 0xffff_ffff, 0x0103_0207, 0x8000_0001] {
        assert_eq!(Request::decode(v).encode(), v);
    }
}

#[test]
fn routes_are_created_fired_and_destroyed_per_vp_and_sint() {
    let mut d = TestDev::new(2);
    assert_eq!(d.request(req(0, ctl::SINT_ROUTE_CREATE, 1, 5)), PortEffect::Done);
    assert_eq!(d.request(req(0, ctl::SINT_ROUTE_SET_SINT, 1, 5)), PortEffect::AssertSint { vp: 1, sint: 5 });
    // The conn byte plays no part in a route.
    assert_eq!(d.request(req(9, ctl::SINT_ROUTE_SET_SINT, 1, 5)), PortEffect::AssertSint { vp: 1, sint: 5 });
    assert!(matches!(d.request(req(0, ctl::SINT_ROUTE_SET_SINT, 0, 5)), PortEffect::Refused { .. }), "VP 0's SINT 5");
    assert!(matches!(d.request(req(0, ctl::SINT_ROUTE_SET_SINT, 1, 4)), PortEffect::Refused { .. }), "SINT 4");
    assert!(
        matches!(d.request(req(0, ctl::SINT_ROUTE_CREATE, 1, 5)), PortEffect::Refused { why: "the route exists", .. }),
        "a duplicate"
    );
    assert_eq!(d.request(req(0, ctl::SINT_ROUTE_DESTROY, 1, 5)), PortEffect::Done);
    assert!(matches!(d.request(req(0, ctl::SINT_ROUTE_SET_SINT, 1, 5)), PortEffect::Refused { .. }), "destroyed");
    assert!(matches!(d.request(req(0, ctl::SINT_ROUTE_DESTROY, 1, 5)), PortEffect::Refused { .. }), "twice");
}

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    let mut d = TestDev::new(2);
    let before = d.clone();
    for (value, why) in [
        (req(0, ctl::SINT_ROUTE_CREATE, 2, 0), "no such VP"),
        (req(0, ctl::SINT_ROUTE_CREATE, 0xff, 0), "no such VP"),
        (req(0, ctl::SINT_ROUTE_CREATE, 0, 16), "SINT above 15"),
        (req(1, ctl::MSG_CONN_CREATE, 0, 0xff), "SINT above 15"),
        (req(1, ctl::EVT_CONN_CREATE, 5, 0), "no such VP"),
        (req(0, 0, 0, 0), "unknown ctl"),
        (req(0, 8, 0, 0), "unknown ctl"),
        (req(3, ctl::MSG_CONN_DESTROY, 0, 0), "no such connection"),
        (req(3, ctl::EVT_CONN_DESTROY, 0, 0), "no such connection"),
    ] {
        assert_eq!(d.request(value), PortEffect::Refused { request: value, why }, "{value:#x}");
    }
    assert_eq!(d, before);
}

#[test]
fn connections_are_found_by_id_and_kinds_are_apart() {
    let mut d = TestDev::new(2);
    assert_eq!(d.request(req(7, ctl::MSG_CONN_CREATE, 1, 3)), PortEffect::Done);
    assert_eq!(d.request(req(7, ctl::EVT_CONN_CREATE, 0, 2)), PortEffect::Done);
    assert_eq!(d.message_target(7), Some(SintTarget { vp: 1, sint: 3 }));
    assert_eq!(d.event_target(7), Some(SintTarget { vp: 0, sint: 2 }));
    assert_eq!(d.message_target(8), None);
    assert_eq!(d.message_target(7 + 256), None, "IDs above 255 are the broker's");
    assert_eq!(d.message_target(u32::MAX), None);
    assert!(matches!(d.request(req(7, ctl::MSG_CONN_CREATE, 0, 0)), PortEffect::Refused { .. }), "duplicate");
    assert_eq!(d.message_target(7), Some(SintTarget { vp: 1, sint: 3 }), "kept");
    // Destroyed by ID alone, whatever VP and SINT the request names.
    assert_eq!(d.request(req(7, ctl::MSG_CONN_DESTROY, 0xff, 0xff)), PortEffect::Done);
    assert_eq!(d.message_target(7), None);
    assert_eq!(d.event_target(7), Some(SintTarget { vp: 0, sint: 2 }));
    assert_eq!(d.request(req(7, ctl::EVT_CONN_DESTROY, 0, 0)), PortEffect::Done);
    assert_eq!(d.event_target(7), None);
}

#[test]
fn connections_are_bounded() {
    let mut d = TestDev::new(1);
    for conn in 0..MAX_CONNECTIONS as u8 {
        assert_eq!(d.request(req(conn, ctl::MSG_CONN_CREATE, 0, 1)), PortEffect::Done);
    }
    let over = req(0xff, ctl::MSG_CONN_CREATE, 0, 1);
    assert_eq!(d.request(over), PortEffect::Refused { request: over, why: "too many connections" });
    assert_eq!(d.message_target(0xff), None);
    assert_eq!(d.request(req(3, ctl::MSG_CONN_DESTROY, 0, 0)), PortEffect::Done);
    assert_eq!(d.request(over), PortEffect::Done, "room again");
    assert_eq!(d.message_target(0xff), Some(SintTarget { vp: 0, sint: 1 }));
    assert_eq!(d.message_target(31), Some(SintTarget { vp: 0, sint: 1 }), "the rest kept");
    assert_eq!(d.message_target(3), None);
}

#[test]
fn only_32_bit_writes_to_the_port_are_requests() {
    let mut d = TestDev::new(1);
    let mut console = |_| panic!("no output");
    let mut a = PortAccess { now: 0, console: &mut console };
    let create = u64::from(req(0, ctl::SINT_ROUTE_CREATE, 0, 1));
    assert!(matches!(d.write(PORT, 2, create, &mut a), PortEffect::Refused { .. }));
    assert!(matches!(d.write(PORT + 1, 4, create, &mut a), PortEffect::Refused { .. }));
    assert_eq!(d.write(PORT, 4, create | 0xdead_0000_0000_0000, &mut a), PortEffect::Done, "high RAX ignored");
    assert_eq!(d.read(PORT, 4, &mut a), 0xffff_ffff);
    assert_eq!(d.read(PORT, 1, &mut a), 0xff);
}
