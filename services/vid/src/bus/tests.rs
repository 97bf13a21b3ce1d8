use super::*;
use crate::acpi::Pm1;
use crate::irq::Interrupts;
use crate::uart::Uart;

fn full() -> PortBus {
    PortBus::with(|_| true).expect("no overlap")
}

#[test]
fn the_static_table_has_no_overlap_and_every_window_is_routed() {
    let bus = full();
    for r in PORT_ROUTES {
        assert_eq!(bus.route(r.first), Some(r.device), "{r:?}");
        assert_eq!(bus.route(r.first + r.count - 1), Some(r.device), "{r:?}");
    }
}

/// The bus routes exactly what the chain of `claims_port` checks it
/// replaces claimed, port by port.
#[test]
fn routes_match_the_devices_own_claims_on_every_port() {
    let bus = full();
    for port in 0..=u16::MAX {
        let expected = if Uart::com1_offset(port).is_some() {
            Some(PortId::Uart)
        } else if Pm1::claims_port(port) {
            Some(PortId::Pm1)
        } else if Interrupts::claims_port(port) {
            Some(PortId::Interrupts)
        } else if port == crate::portio::TEST_EXIT {
            Some(PortId::DebugExit)
        } else if (crate::testdev::PORT..crate::testdev::PORT + 4).contains(&port) {
            Some(PortId::HvTestDev)
        } else if crate::rtc::Rtc::claims(port) {
            Some(PortId::Rtc)
        } else if crate::reset_ports::Kbc::claims(port) {
            Some(PortId::Kbc)
        } else if port == crate::reset_ports::RESET_CONTROL {
            Some(PortId::ResetControl)
        } else {
            None
        };
        assert_eq!(bus.route(port), expected, "port {port:#x}");
    }
}

#[test]
fn overlapping_windows_are_refused() {
    let mut bus = full();
    let uart = PortRoute { first: 0x3f8, count: 8, device: PortId::Uart };
    let clash = PortRoute { first: 0x3fc, count: 8, device: PortId::DebugExit };
    assert_eq!(bus.add(clash), Err(Overlap(clash, uart)));
    // Touching is not overlapping.
    let next = PortRoute { first: 0x400, count: 1, device: PortId::DebugExit };
    assert_eq!(bus.add(next), Ok(()));
    assert_eq!(bus.route(0x400), Some(PortId::DebugExit));
    // A window that ends at 0xffff does not wrap.
    let top = PortRoute { first: 0xfff0, count: 0x10, device: PortId::DebugExit };
    assert_eq!(bus.add(top), Ok(()));
    assert_eq!(bus.route(0xffff), Some(PortId::DebugExit));
    assert_eq!(bus.route(0), None);
}

#[test]
fn a_bus_holds_only_the_devices_it_is_given() {
    let bus = PortBus::with(|d| d == PortId::Uart).unwrap();
    assert_eq!(bus.route(0x3f8), Some(PortId::Uart));
    assert_eq!(bus.route(0x20), None);
    assert_eq!(bus.route(crate::portio::TEST_EXIT), None);
    let without = PortBus::with(|d| d != PortId::HvTestDev).unwrap();
    assert_eq!(without.route(0x3000), None);
    assert_eq!(without.route(0x3f8), Some(PortId::Uart));
}

#[test]
fn a_full_bus_refuses_more() {
    let mut bus = PortBus::with(|_| false).unwrap();
    for i in 0..MAX_PORT_ROUTES as u16 {
        bus.add(PortRoute { first: 0x1000 + i, count: 1, device: PortId::DebugExit }).unwrap();
    }
    assert!(bus.add(PortRoute { first: 0x2000, count: 1, device: PortId::DebugExit }).is_err());
}

#[test]
fn unclaimed_ports_read_all_ones_and_ignore_writes() {
    let mut console = |_| panic!("no output");
    let mut a = PortAccess { now: 0, console: &mut console };
    assert_eq!(Unclaimed.read(0x80, 1, &mut a), 0xff);
    assert_eq!(Unclaimed.read(0x80, 2, &mut a), 0xffff);
    assert_eq!(Unclaimed.read(0x80, 4, &mut a), 0xffff_ffff);
    assert_eq!(Unclaimed.write(0x80, 4, 0x1234, &mut a), PortEffect::Done);
    assert_eq!(DebugExit.write(0xf4, 1, 0x1_0000_0103, &mut a), PortEffect::TestExit(3));
}

#[test]
fn mmio_windows_do_not_overlap_and_route_their_pages() {
    for (i, a) in MMIO_ROUTES.iter().enumerate() {
        for b in &MMIO_ROUTES[i + 1..] {
            assert!(a.base + a.len <= b.base || b.base + b.len <= a.base, "{a:?} {b:?}");
        }
        assert_eq!(mmio_route(a.base), Some(a.device));
        assert_eq!(mmio_route(a.base + a.len - 1), Some(a.device));
    }
    assert_eq!(mmio_route(crate::mmio::TEST_DEVICE + 0x1000), None);
    assert_eq!(mmio_route(0xfebf_ffff), None);
}

#[test]
fn the_unclaimed_ports_are_the_gaps_between_windows() {
    let bus = PortBus::with(|_| true).unwrap();
    let runs = bus.unclaimed();
    // Every port is claimed or in exactly one run, in order.
    let mut next = 0;
    for &(first, count) in &runs {
        assert!(first >= next && count > 0, "runs in order, not empty: {runs:?}");
        assert!((next..first).all(|p| bus.route(p as u16).is_some()), "a claimed port between runs");
        assert!((first..first + count).all(|p| bus.route(p as u16).is_none()), "a run holds a claimed port");
        next = first + count;
    }
    assert!((next..1 << 16).all(|p| bus.route(p as u16).is_some()));
    // PCI configuration (0xCF8-0xCFF, but 0xCF9's reset control) floats.
    assert!(runs.iter().any(|&(f, c)| f <= 0xcfc && 0xcff < f + c));
    assert!(bus.route(0xcf9).is_some());
}
