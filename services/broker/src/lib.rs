//! The broker's logic: TLFS ports and connections between partitions, and
//! the messages and events sent through them (TLFS 11.6, 11.10, 11.11).
//!
//! Pure state, host-tested. The supervisor registers which VID (by badge)
//! runs which partition and declares the manifest's connections; a VID
//! then resolves, posts and signals on the connections its partitions hold
//! and fetches what was sent to them (see `broker_api` for the rules and
//! the delivery path). Every argument is an allegation, checked here once;
//! a refusal is a TLFS status.
//!
//! Storage is fixed: [`MAX_PORTS`] ports, each with room for
//! [`QUEUE_DEPTH`] messages and a bit per event flag (about 1.3 KiB a
//! port), so the broker needs no heap; its task keeps it on its stack.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub use broker_api::QUEUE_DEPTH;
use broker_api::{Bytes, MAX_TASK_PARTIES, Server, TASK_PARTY_BASE, accepting, delivery};
use tessera_idl::{Badge, SUPERVISOR_BADGE};
use tlfs::{
    HV_MESSAGE_MAX_PAYLOAD_BYTE_COUNT, HV_SYNIC_SINT_COUNT, HvConnectionId, HvError, HvPortId, HvPortType, HvResult,
    HvVpIndex,
};

/// Ports the broker holds.
pub const MAX_PORTS: usize = 32;
/// Connections the broker holds.
pub const MAX_CONNECTIONS: usize = 32;
/// Partitions (manifest indices `0..MAX_PARTITIONS`).
pub const MAX_PARTITIONS: usize = abi::limits::MAX_PARTITIONS;
/// Parties: the partitions, then the services (`broker_api::task_party`).
pub const MAX_PARTIES: usize = MAX_PARTITIONS + MAX_TASK_PARTIES as usize;
/// VPs of one partition.
pub const MAX_VPS: u32 = abi::limits::MAX_VPS_PER_PARTITION as u32;
/// Event flags of one SINT (its part of the SIEF page, TLFS 11.9).
pub const EVENT_FLAGS: u32 = 2048;
/// The message-type bit reserved for the hypervisor's own messages.
pub const HYPERVISOR_MESSAGE_BIT: u32 = 0x8000_0000;

/// A port: where messages or events sent through its connections go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Port {
    /// The partition (manifest index) it belongs to.
    pub partition: u64,
    pub id: HvPortId,
    /// The one partition that may connect.
    pub connection_partition: u64,
    pub port_type: HvPortType,
    pub target_vp: HvVpIndex,
    pub target_sint: u32,
    /// Event ports: the first flag and how many (0 for other types).
    pub base_flag: u32,
    pub flag_count: u32,
}

/// A connection: a partition's handle on a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection {
    pub partition: u64,
    pub id: HvConnectionId,
    pub port_partition: u64,
    pub port_id: HvPortId,
}

/// One thing for a partition's VID to put into a VP's SynIC. Handed over
/// as it is made, never stored, so the size of a message does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A message for the SIM slot of `sint` of `vp`, from port `port`.
    Message { vp: u32, sint: u32, port: u32, message_type: u32, payload: Bytes },
    /// Flag `flag` (within the SINT's flags) of `sint` of `vp`, from port `port`.
    Event { vp: u32, sint: u32, port: u32, flag: u32 },
}

/// A queued message; `seq` orders messages across a partition's ports.
#[derive(Clone, Copy)]
struct Pending {
    seq: u64,
    message_type: u32,
    len: u8,
    payload: [u8; HV_MESSAGE_MAX_PAYLOAD_BYTE_COUNT],
}

const FLAG_WORDS: usize = EVENT_FLAGS as usize / 64;

/// A port with what waits in it.
#[derive(Clone, Copy)]
struct Slot {
    port: Port,
    queue: [Option<Pending>; QUEUE_DEPTH],
    /// Pending event flags, relative to `base_flag`.
    flags: [u64; FLAG_WORDS],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Registered {
    vid: Badge,
    vcpus: u32,
    /// By VP: the SINTs that take messages and events
    /// (`broker_api::accepting`), as its VID last reported.
    accepting: [u32; MAX_VPS as usize],
    /// Its SynIC state is known: a SynIC at reset at the first start, or
    /// what its VID reported (a service has none). A broker started again
    /// (`started_again`) knows nothing of the SynICs of partitions that ran
    /// meanwhile: until their VID reports, a fetch asks for it
    /// (`INVALID_SYNIC_STATE`) and posts and signals to them are taken.
    heard: bool,
}

pub struct Broker {
    /// By party slot ([`party_slot`]).
    partitions: [Option<Registered>; MAX_PARTIES],
    ports: [Option<Slot>; MAX_PORTS],
    connections: [Option<Connection>; MAX_CONNECTIONS],
    /// The next message's sequence number.
    seq: u64,
    /// Parties (bit = party slot) that received something since their
    /// speakers were last notified.
    unnotified: u32,
    /// The supervisor said this instance follows one that ran
    /// (`started_again`): partitions registered since have an unknown
    /// SynIC state.
    started_again: bool,
}

const _: () = assert!(MAX_PARTIES <= 32);

/// The table slot of party `party`: a partition's index, or a service's
/// after the partitions'.
pub fn party_slot(party: u64) -> Option<usize> {
    if party < MAX_PARTITIONS as u64 {
        return Some(party as usize);
    }
    let task = party.checked_sub(TASK_PARTY_BASE).filter(|&t| t < MAX_TASK_PARTIES)?;
    Some(MAX_PARTITIONS + task as usize)
}

impl Default for Broker {
    fn default() -> Self {
        Self::new()
    }
}

fn port_id(raw: u32) -> HvResult<HvPortId> {
    HvPortId::new(raw).ok_or(HvError::INVALID_PARAMETER)
}

fn connection_id(raw: u32) -> HvResult<HvConnectionId> {
    HvConnectionId::new(raw).ok_or(HvError::INVALID_PARAMETER)
}

fn supervisor(caller: Badge) -> HvResult<()> {
    if caller == SUPERVISOR_BADGE { Ok(()) } else { Err(HvError::ACCESS_DENIED) }
}

impl Broker {
    pub const fn new() -> Broker {
        Broker {
            partitions: [None; MAX_PARTIES],
            ports: [None; MAX_PORTS],
            connections: [None; MAX_CONNECTIONS],
            seq: 0,
            unnotified: 0,
            started_again: false,
        }
    }

    pub fn port(&self, partition: u64, id: u32) -> Option<&Port> {
        self.slot_of(partition, id).map(|i| &self.ports[i].as_ref().expect("slot_of finds a port").port)
    }

    fn slot_of(&self, partition: u64, id: u32) -> Option<usize> {
        self.ports.iter().position(|s| s.is_some_and(|s| s.port.partition == partition && s.port.id.get() == id))
    }

    pub fn connection(&self, partition: u64, id: u32) -> Option<&Connection> {
        self.connections.iter().flatten().find(|c| c.partition == partition && c.id.get() == id)
    }

    pub fn port_count(&self) -> usize {
        self.ports.iter().flatten().count()
    }

    pub fn connection_count(&self) -> usize {
        self.connections.iter().flatten().count()
    }

    /// The registered partition `partition`, for the supervisor's calls.
    fn registered(&self, partition: u64) -> HvResult<Registered> {
        let k = party_slot(partition).ok_or(HvError::INVALID_PARTITION_ID)?;
        self.partitions[k].ok_or(HvError::INVALID_PARTITION_ID)
    }

    /// The partition `partition` if `caller` speaks for it (its VID, or
    /// the service itself; `ACCESS_DENIED` otherwise).
    fn speaks_for(&self, caller: Badge, partition: u64) -> HvResult<u64> {
        match party_slot(partition).and_then(|k| self.partitions[k]) {
            Some(r) if r.vid == caller => Ok(partition),
            _ => Err(HvError::ACCESS_DENIED),
        }
    }

    /// `register_partition` (see the interface).
    pub fn register_partition(&mut self, caller: Badge, vid: u64, partition: u64, vcpus: u32) -> HvResult<()> {
        supervisor(caller)?;
        let k = party_slot(partition).ok_or(HvError::INVALID_PARTITION_ID)?;
        let max_vps = if k < MAX_PARTITIONS { MAX_VPS } else { 1 };
        if !(1..=max_vps).contains(&vcpus) || vid == SUPERVISOR_BADGE.0 {
            return Err(HvError::INVALID_PARAMETER);
        }
        // A SynIC at reset takes nothing; a service has none and takes all.
        let all = if k < MAX_PARTITIONS { 0 } else { u32::MAX };
        let heard = k >= MAX_PARTITIONS || !self.started_again;
        self.partitions[k] = Some(Registered { vid: Badge(vid), vcpus, accepting: [all; MAX_VPS as usize], heard });
        Ok(())
    }

    /// `create_port` (see the interface).
    #[allow(clippy::too_many_arguments)]
    pub fn create_port(
        &mut self,
        caller: Badge,
        port_partition: u64,
        id: u32,
        connection_partition: u64,
        port_type: u32,
        target_vp: u32,
        target_sint: u32,
        base_flag: u32,
        flag_count: u32,
    ) -> HvResult<()> {
        supervisor(caller)?;
        let owner = self.registered(port_partition)?;
        self.registered(connection_partition)?;
        let id = port_id(id)?;
        let port_type = match HvPortType(port_type) {
            t @ (HvPortType::MESSAGE | HvPortType::EVENT | HvPortType::MONITOR) => t,
            _ => return Err(HvError::INVALID_PARAMETER),
        };
        if target_sint >= HV_SYNIC_SINT_COUNT {
            return Err(HvError::INVALID_PARAMETER);
        }
        let flags_ok = if port_type == HvPortType::EVENT {
            flag_count > 0 && base_flag.checked_add(flag_count).is_some_and(|end| end <= EVENT_FLAGS)
        } else {
            base_flag == 0 && flag_count == 0
        };
        if !flags_ok {
            return Err(HvError::INVALID_PARAMETER);
        }
        if target_vp >= owner.vcpus {
            return Err(HvError::INVALID_VP_INDEX);
        }
        if self.slot_of(port_partition, id.get()).is_some() {
            return Err(HvError::INVALID_PORT_ID);
        }
        let slot = self.ports.iter_mut().find(|p| p.is_none()).ok_or(HvError::INSUFFICIENT_MEMORY)?;
        let port = Port {
            partition: port_partition,
            id,
            connection_partition,
            port_type,
            target_vp,
            target_sint,
            base_flag,
            flag_count,
        };
        *slot = Some(Slot { port, queue: [None; QUEUE_DEPTH], flags: [0; FLAG_WORDS] });
        Ok(())
    }

    /// `delete_port`: its connections and what waits in it go with it.
    pub fn delete_port(&mut self, caller: Badge, port_partition: u64, id: u32) -> HvResult<()> {
        supervisor(caller)?;
        self.registered(port_partition)?;
        let id = port_id(id)?;
        let i = self.slot_of(port_partition, id.get()).ok_or(HvError::INVALID_PORT_ID)?;
        self.ports[i] = None;
        for connection in &mut self.connections {
            if connection.is_some_and(|c| c.port_partition == port_partition && c.port_id == id) {
                *connection = None;
            }
        }
        Ok(())
    }

    pub fn connect_port(
        &mut self,
        caller: Badge,
        connection_partition: u64,
        id: u32,
        port_partition: u64,
        port: u32,
    ) -> HvResult<()> {
        supervisor(caller)?;
        self.registered(connection_partition)?;
        self.registered(port_partition)?;
        let id = connection_id(id)?;
        let port_id = port_id(port)?;
        let target = self.port(port_partition, port_id.get()).ok_or(HvError::INVALID_PORT_ID)?;
        if target.connection_partition != connection_partition {
            return Err(HvError::ACCESS_DENIED);
        }
        if self.connection(connection_partition, id.get()).is_some() {
            return Err(HvError::INVALID_CONNECTION_ID);
        }
        let slot = self.connections.iter_mut().find(|c| c.is_none()).ok_or(HvError::INSUFFICIENT_MEMORY)?;
        *slot = Some(Connection { partition: connection_partition, id, port_partition, port_id });
        Ok(())
    }

    pub fn disconnect_port(&mut self, caller: Badge, connection_partition: u64, id: u32) -> HvResult<()> {
        supervisor(caller)?;
        self.registered(connection_partition)?;
        let id = connection_id(id)?;
        let slot = self
            .connections
            .iter_mut()
            .find(|c| c.is_some_and(|c| c.partition == connection_partition && c.id == id))
            .ok_or(HvError::INVALID_CONNECTION_ID)?;
        *slot = None;
        Ok(())
    }

    /// The slot of the port connection `id` of partition `k` leads to:
    /// `INVALID_CONNECTION_ID` for a connection it does not hold (a
    /// reserved bit set included: no connection has that ID).
    fn target(&self, k: u64, id: u32) -> HvResult<usize> {
        let connection = self.connection(k, id).ok_or(HvError::INVALID_CONNECTION_ID)?;
        // Deleting a port removes its connections, so the port exists.
        self.slot_of(connection.port_partition, connection.port_id.get()).ok_or(HvError::INVALID_PORT_ID)
    }

    /// The port connection `id` of partition `partition` (run by `caller`) leads to.
    pub fn resolve(&self, caller: Badge, partition: u64, id: u32) -> HvResult<&Port> {
        let k = self.speaks_for(caller, partition)?;
        let i = self.target(k, id)?;
        Ok(&self.ports[i].as_ref().expect("target finds a port").port)
    }

    /// HvPostMessage (see the interface for the statuses).
    pub fn post_message(
        &mut self,
        caller: Badge,
        partition: u64,
        id: u32,
        message_type: u32,
        payload: &[u8],
    ) -> HvResult<()> {
        let k = self.speaks_for(caller, partition)?;
        if message_type == 0
            || message_type & HYPERVISOR_MESSAGE_BIT != 0
            || payload.len() > HV_MESSAGE_MAX_PAYLOAD_BYTE_COUNT
        {
            return Err(HvError::INVALID_PARAMETER);
        }
        let i = self.target(k, id)?;
        let seq = self.seq;
        let slot = self.ports[i].as_mut().expect("target finds a port");
        if slot.port.port_type != HvPortType::MESSAGE {
            return Err(HvError::INVALID_PORT_ID);
        }
        let port = slot.port;
        self.target_accepts(&port, accepting::messages(port.target_sint))?;
        let slot = self.ports[i].as_mut().expect("target finds a port");
        let free = slot.queue.iter_mut().find(|m| m.is_none()).ok_or(HvError::INSUFFICIENT_BUFFERS)?;
        let mut pending =
            Pending { seq, message_type, len: payload.len() as u8, payload: [0; HV_MESSAGE_MAX_PAYLOAD_BYTE_COUNT] };
        pending.payload[..payload.len()].copy_from_slice(payload);
        *free = Some(pending);
        self.seq += 1;
        self.mark(slot_partition(&self.ports[i]));
        Ok(())
    }

    /// HvSignalEvent (see the interface for the statuses).
    pub fn signal_event(&mut self, caller: Badge, partition: u64, id: u32, flag_number: u32) -> HvResult<()> {
        let k = self.speaks_for(caller, partition)?;
        let i = self.target(k, id)?;
        let slot = self.ports[i].as_mut().expect("target finds a port");
        if slot.port.port_type != HvPortType::EVENT {
            return Err(HvError::INVALID_PORT_ID);
        }
        if flag_number >= slot.port.flag_count {
            return Err(HvError::INVALID_PARAMETER);
        }
        let port = slot.port;
        self.target_accepts(&port, accepting::events(port.target_sint))?;
        let slot = self.ports[i].as_mut().expect("target finds a port");
        slot.flags[flag_number as usize / 64] |= 1 << (flag_number % 64);
        self.mark(slot_partition(&self.ports[i]));
        Ok(())
    }

    /// `INVALID_SYNIC_STATE` unless `port`'s target VP accepts on `bit`
    /// (TLFS 11.11.1, 11.11.2), as its VID last reported. A partition not
    /// heard from since this broker started (it started again) is taken to
    /// accept until its VID reports: what is queued waits for its fetch, and
    /// the VID delivers it by the SynIC's state then (a message waits for
    /// the SIM page, an event for a SIEF page off is dropped), so a sender
    /// is not refused for what this instance does not know.
    fn target_accepts(&self, port: &Port, bit: u32) -> HvResult<()> {
        let target = party_slot(port.partition).and_then(|k| self.partitions[k]);
        if target.is_some_and(|r| !r.heard) {
            return Ok(());
        }
        let accepting = target.and_then(|r| r.accepting.get(port.target_vp as usize).copied()).unwrap_or(0);
        if accepting & bit == 0 { Err(HvError::INVALID_SYNIC_STATE) } else { Ok(()) }
    }

    /// `started_again` (see the interface).
    pub fn started_again(&mut self, caller: Badge) -> HvResult<()> {
        supervisor(caller)?;
        self.started_again = true;
        Ok(())
    }

    /// `synic_state` (see the interface).
    pub fn synic_state(&mut self, caller: Badge, partition: u64, vp: u32, accepting: u32) -> HvResult<()> {
        let k = party_slot(self.speaks_for(caller, partition)?).ok_or(HvError::INVALID_PARTITION_ID)?;
        let r = self.partitions[k].as_mut().ok_or(HvError::ACCESS_DENIED)?;
        if vp >= r.vcpus {
            return Err(HvError::INVALID_VP_INDEX);
        }
        // A service's ports always accept: it has no SynIC to report.
        if k < MAX_PARTITIONS {
            r.accepting[vp as usize] = accepting;
        }
        r.heard = true;
        Ok(())
    }

    fn mark(&mut self, partition: u64) {
        if let Some(k) = party_slot(partition) {
            self.unnotified |= 1 << k;
        }
    }

    /// The next event flag for partition `partition` (run by `caller`), by
    /// port slot, then flag; messages stay queued. A VID whose VP holds a
    /// message for a busy slot takes events this way, and messages only
    /// once it has room for one.
    pub fn fetch_event(&mut self, caller: Badge, partition: u64) -> HvResult<Delivery> {
        let k = self.speaks_for(caller, partition)?;
        if party_slot(k).and_then(|s| self.partitions[s].as_ref()).is_some_and(|r| !r.heard) {
            return Err(HvError::INVALID_SYNIC_STATE);
        }
        let mine = |s: &Option<Slot>| s.as_ref().is_some_and(|s| s.port.partition == k);
        for slot in self.ports.iter_mut().filter(|s| mine(s)).flatten() {
            if let Some(w) = slot.flags.iter().position(|&w| w != 0) {
                let bit = slot.flags[w].trailing_zeros();
                slot.flags[w] &= !(1 << bit);
                let p = slot.port;
                let flag = p.base_flag + w as u32 * 64 + bit;
                return Ok(Delivery::Event { vp: p.target_vp, sint: p.target_sint, port: p.id.get(), flag });
            }
        }
        Err(HvError::NO_DATA)
    }

    /// The next delivery for partition `partition` (run by `caller`):
    /// event flags first (by port slot, then flag), then the oldest message.
    pub fn fetch(&mut self, caller: Badge, partition: u64) -> HvResult<Delivery> {
        match self.fetch_event(caller, partition) {
            Err(HvError::NO_DATA) => {}
            other => return other,
        }
        let k = partition;
        let mine = |s: &Option<Slot>| s.as_ref().is_some_and(|s| s.port.partition == k);
        let oldest = self
            .ports
            .iter()
            .enumerate()
            .filter(|(_, s)| mine(s))
            .flat_map(|(i, s)| s.iter().flat_map(move |s| s.queue.iter().enumerate().map(move |(q, m)| (i, q, m))))
            .filter_map(|(i, q, m)| m.map(|m| (m.seq, i, q)))
            .min();
        let (_, i, q) = oldest.ok_or(HvError::NO_DATA)?;
        let slot = self.ports[i].as_mut().expect("found above");
        let m = slot.queue[q].take().expect("found above");
        let p = slot.port;
        let payload = Bytes::from_slice(&m.payload[..usize::from(m.len)]).expect("240 bytes fit");
        Ok(Delivery::Message {
            vp: p.target_vp,
            sint: p.target_sint,
            port: p.id.get(),
            message_type: m.message_type,
            payload,
        })
    }

    /// The speakers to notify: those of a partition that received
    /// something since the last call (each badge once).
    pub fn take_notifications(&mut self) -> [Option<Badge>; MAX_PARTIES] {
        let mut out = [None; MAX_PARTIES];
        let mut n = 0;
        for k in 0..MAX_PARTIES {
            if self.unnotified & (1 << k) == 0 {
                continue;
            }
            if let Some(r) = self.partitions[k]
                && !out[..n].contains(&Some(r.vid))
            {
                out[n] = Some(r.vid);
                n += 1;
            }
        }
        self.unnotified = 0;
        out
    }
}

fn slot_partition(slot: &Option<Slot>) -> u64 {
    slot.as_ref().map_or(0, |s| s.port.partition)
}

impl Server for Broker {
    fn create_port(
        &mut self,
        caller: Badge,
        port_partition: u64,
        port_id: u32,
        connection_partition: u64,
        port_type: u32,
        target_vp: u32,
        target_sint: u32,
        base_flag: u32,
        flag_count: u32,
    ) -> HvResult<()> {
        Broker::create_port(
            self,
            caller,
            port_partition,
            port_id,
            connection_partition,
            port_type,
            target_vp,
            target_sint,
            base_flag,
            flag_count,
        )
    }

    fn delete_port(&mut self, caller: Badge, port_partition: u64, port_id: u32) -> HvResult<()> {
        Broker::delete_port(self, caller, port_partition, port_id)
    }

    fn connect_port(
        &mut self,
        caller: Badge,
        connection_partition: u64,
        connection_id: u32,
        port_partition: u64,
        port_id: u32,
    ) -> HvResult<()> {
        Broker::connect_port(self, caller, connection_partition, connection_id, port_partition, port_id)
    }

    fn disconnect_port(&mut self, caller: Badge, connection_partition: u64, connection_id: u32) -> HvResult<()> {
        Broker::disconnect_port(self, caller, connection_partition, connection_id)
    }

    fn resolve(
        &mut self,
        caller: Badge,
        connection_partition: u64,
        connection_id: u32,
    ) -> HvResult<(u64, u32, u32, u32, u32)> {
        let port = Broker::resolve(self, caller, connection_partition, connection_id)?;
        Ok((port.partition, port.id.get(), port.port_type.0, port.target_vp, port.target_sint))
    }

    fn register_partition(&mut self, caller: Badge, vid_badge: u64, partition: u64, vcpus: u32) -> HvResult<()> {
        Broker::register_partition(self, caller, vid_badge, partition, vcpus)
    }

    fn post_message(
        &mut self,
        caller: Badge,
        partition: u64,
        connection_id: u32,
        message_type: u32,
        payload: &[u8],
    ) -> HvResult<()> {
        Broker::post_message(self, caller, partition, connection_id, message_type, payload)
    }

    fn signal_event(&mut self, caller: Badge, partition: u64, connection_id: u32, flag_number: u32) -> HvResult<()> {
        Broker::signal_event(self, caller, partition, connection_id, flag_number)
    }

    fn fetch(&mut self, caller: Badge, partition: u64) -> HvResult<(u32, u32, u32, u32, u32, Bytes)> {
        Ok(Self::wire(Broker::fetch(self, caller, partition)?))
    }

    fn fetch_event(&mut self, caller: Badge, partition: u64) -> HvResult<(u32, u32, u32, u32, u32, Bytes)> {
        Ok(Self::wire(Broker::fetch_event(self, caller, partition)?))
    }

    fn synic_state(&mut self, caller: Badge, partition: u64, vp: u32, accepting: u32) -> HvResult<()> {
        Broker::synic_state(self, caller, partition, vp, accepting)
    }

    fn started_again(&mut self, caller: Badge) -> HvResult<()> {
        Broker::started_again(self, caller)
    }
}

impl Broker {
    /// A delivery as `fetch` answers it.
    fn wire(d: Delivery) -> (u32, u32, u32, u32, u32, Bytes) {
        match d {
            Delivery::Message { vp, sint, port, message_type, payload } => {
                (delivery::MESSAGE, vp, sint, port, message_type, payload)
            }
            Delivery::Event { vp, sint, port, flag } => (delivery::EVENT, vp, sint, port, flag, Bytes::new()),
        }
    }
}

#[cfg(test)]
mod tests;
