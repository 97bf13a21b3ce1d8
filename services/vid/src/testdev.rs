//! A device compatible with QEMU's `hyperv-testdev` (I/O port 0x3000), as
//! kvm-unit-tests' `hyperv_synic` and `hyperv_connections` drive it: a
//! 32-bit `out` of `conn << 24 | ctl << 16 | vp << 8 | sint` makes the
//! partition's own sources of SynIC interrupts, messages and events.
//!
//! - ctl 1 and 2 create and destroy a SINT route (VP, SINT); ctl 3 fires
//!   it: the SINT is asserted as for an external source, with no message
//!   (its vector unless masked or polled; auto-EOI as the SINT says).
//! - ctl 4 and 5 create and destroy message connection `conn`: a message
//!   posted on it (HvPostMessage) is echoed into the (VP, SINT) slot.
//! - ctl 6 and 7 create and destroy event connection `conn`: HvSignalEvent
//!   on it sets flag `conn` (its base; one flag) of the (VP, SINT).
//!
//! The connections are the partition's own: the VID looks them up before
//! asking the broker ([`TestDev::message_target`], [`TestDev::event_target`]).
//! A request the device cannot honour (an unknown VP, a SINT above 15, a
//! route or connection that exists already, or is missing) is ignored and
//! reported ([`PortEffect::Refused`]), where QEMU asserts.

use crate::bus::{PortAccess, PortDevice, PortEffect};
use tlfs::msr::HV_SYNIC_SINTS;
use x86decode::size_mask;

/// The device's port, and how many it decodes (QEMU's region).
pub const PORT: u16 = 0x3000;
pub const PORT_COUNT: u16 = 4;

/// Connections of each kind a partition may have at once (kvm-unit-tests
/// makes one of each per VP; IDs are the request's top byte).
pub const MAX_CONNECTIONS: usize = 32;

/// The request's `ctl` byte.
pub mod ctl {
    pub const SINT_ROUTE_CREATE: u8 = 1;
    pub const SINT_ROUTE_DESTROY: u8 = 2;
    pub const SINT_ROUTE_SET_SINT: u8 = 3;
    pub const MSG_CONN_CREATE: u8 = 4;
    pub const MSG_CONN_DESTROY: u8 = 5;
    pub const EVT_CONN_CREATE: u8 = 6;
    pub const EVT_CONN_DESTROY: u8 = 7;
}

/// One request, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub conn: u8,
    pub ctl: u8,
    pub vp: u8,
    pub sint: u8,
}

impl Request {
    pub const fn decode(value: u32) -> Request {
        Request { conn: (value >> 24) as u8, ctl: (value >> 16) as u8, vp: (value >> 8) as u8, sint: value as u8 }
    }

    pub const fn encode(self) -> u32 {
        (self.conn as u32) << 24 | (self.ctl as u32) << 16 | (self.vp as u32) << 8 | self.sint as u32
    }
}

/// Where a route or connection delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SintTarget {
    pub vp: u32,
    pub sint: u8,
}

/// The device's state for one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestDev {
    vps: u32,
    /// Per VP, bit n: a route to SINT n exists.
    routes: [u16; crate::irq::MAX_VPS_PER_PARTITION],
    /// (ID, VP, SINT) of each connection, kept small (the VID's
    /// partitions live on its stack).
    messages: Connections,
    events: Connections,
}

type Connections = heapless::Vec<(u8, u8, u8), MAX_CONNECTIONS>;

fn find(list: &Connections, connection_id: u32) -> Option<SintTarget> {
    let &(_, vp, sint) = list.iter().find(|c| u32::from(c.0) == connection_id)?;
    Some(SintTarget { vp: u32::from(vp), sint })
}

impl TestDev {
    /// The device of a partition of `vps` VPs, with nothing created.
    pub fn new(vps: u32) -> TestDev {
        TestDev {
            vps: vps.min(crate::irq::MAX_VPS_PER_PARTITION as u32),
            routes: [0; crate::irq::MAX_VPS_PER_PARTITION],
            messages: Connections::new(),
            events: Connections::new(),
        }
    }

    /// Carries out one request.
    pub fn request(&mut self, value: u32) -> PortEffect {
        let r = Request::decode(value);
        let refused = |why| PortEffect::Refused { request: value, why };
        if !(ctl::SINT_ROUTE_CREATE..=ctl::EVT_CONN_DESTROY).contains(&r.ctl) {
            return refused("unknown ctl");
        }
        // Connections are destroyed by ID alone (as in QEMU).
        let by_id = matches!(r.ctl, ctl::MSG_CONN_DESTROY | ctl::EVT_CONN_DESTROY);
        if !by_id && u32::from(r.vp) >= self.vps {
            return refused("no such VP");
        }
        if !by_id && usize::from(r.sint) >= HV_SYNIC_SINTS {
            return refused("SINT above 15");
        }
        let connection = (r.conn, r.vp, r.sint);
        let bit = 1u16 << (r.sint & 15);
        let route = &mut self.routes[usize::from(r.vp) % crate::irq::MAX_VPS_PER_PARTITION];
        match r.ctl {
            ctl::SINT_ROUTE_CREATE if *route & bit != 0 => refused("the route exists"),
            ctl::SINT_ROUTE_CREATE => {
                *route |= bit;
                PortEffect::Done
            }
            ctl::SINT_ROUTE_DESTROY | ctl::SINT_ROUTE_SET_SINT if *route & bit == 0 => refused("no such route"),
            ctl::SINT_ROUTE_DESTROY => {
                *route &= !bit;
                PortEffect::Done
            }
            ctl::SINT_ROUTE_SET_SINT => PortEffect::AssertSint { vp: u32::from(r.vp), sint: r.sint },
            ctl::MSG_CONN_CREATE => create(&mut self.messages, connection, value),
            ctl::MSG_CONN_DESTROY => destroy(&mut self.messages, r.conn, value),
            ctl::EVT_CONN_CREATE => create(&mut self.events, connection, value),
            _ => destroy(&mut self.events, r.conn, value),
        }
    }

    /// Where a message posted on `connection_id` is echoed, if the device
    /// made that connection.
    pub fn message_target(&self, connection_id: u32) -> Option<SintTarget> {
        find(&self.messages, connection_id)
    }

    /// Where HvSignalEvent on `connection_id` sets its flag (the flag is
    /// `connection_id`), if the device made that connection.
    pub fn event_target(&self, connection_id: u32) -> Option<SintTarget> {
        find(&self.events, connection_id)
    }
}

fn create(list: &mut Connections, connection: (u8, u8, u8), value: u32) -> PortEffect {
    if list.iter().any(|c| c.0 == connection.0) {
        return PortEffect::Refused { request: value, why: "the connection exists" };
    }
    match list.push(connection) {
        Ok(()) => PortEffect::Done,
        Err(_) => PortEffect::Refused { request: value, why: "too many connections" },
    }
}

/// Destroys a connection; QEMU finds it by ID alone, and so does this.
fn destroy(list: &mut Connections, conn: u8, value: u32) -> PortEffect {
    match list.iter().position(|c| c.0 == conn) {
        Some(i) => {
            list.swap_remove(i);
            PortEffect::Done
        }
        None => PortEffect::Refused { request: value, why: "no such connection" },
    }
}

/// Only a 32-bit write to [`PORT`] is a request (QEMU's region takes 4
/// bytes); anything else is ignored. Reads return all ones.
impl PortDevice for TestDev {
    fn read(&mut self, _: u16, size: u8, _: &mut PortAccess) -> u64 {
        size_mask(size)
    }

    fn write(&mut self, port: u16, size: u8, value: u64, _: &mut PortAccess) -> PortEffect {
        if port != PORT || size != 4 {
            return PortEffect::Refused { request: value as u32, why: "not a 32-bit write to port 0x3000" };
        }
        self.request(value as u32)
    }
}

#[cfg(test)]
mod tests;
