//! The broker's logic: a bounded registry of TLFS ports and connections.
//!
//! Pure state for now: creating, connecting, disconnecting and deleting, with
//! the TLFS status of every refusal. Delivering messages and events through
//! the registry (SynIC) comes with the VID's device work. Whoever creates a
//! port or a connection (by badge) is the only one who may remove it.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use broker_api::Server;
use tessera_idl::Badge;
use tlfs::{HV_SYNIC_SINT_COUNT, HvConnectionId, HvError, HvPartitionId, HvPortId, HvPortType, HvResult, HvVpIndex};

/// Ports the registry holds.
pub const MAX_PORTS: usize = 32;
/// Connections the registry holds.
pub const MAX_CONNECTIONS: usize = 32;

/// A port: where messages or events sent through its connections go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Port {
    pub partition: u64,
    pub id: HvPortId,
    /// The one partition that may connect.
    pub connection_partition: u64,
    pub port_type: HvPortType,
    pub target_vp: HvVpIndex,
    pub target_sint: u32,
    owner: Badge,
}

/// A connection: a partition's handle on a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection {
    pub partition: u64,
    pub id: HvConnectionId,
    pub port_partition: u64,
    pub port_id: HvPortId,
    owner: Badge,
}

pub struct Broker {
    ports: [Option<Port>; MAX_PORTS],
    connections: [Option<Connection>; MAX_CONNECTIONS],
}

impl Default for Broker {
    fn default() -> Self {
        Self::new()
    }
}

fn partition(id: u64) -> HvResult<u64> {
    if id == HvPartitionId::INVALID.0 || id == HvPartitionId::SELF.0 {
        // The broker acts for no partition of its own: "self" means nothing here.
        Err(HvError::INVALID_PARTITION_ID)
    } else {
        Ok(id)
    }
}

fn port_id(raw: u32) -> HvResult<HvPortId> {
    HvPortId::new(raw).ok_or(HvError::INVALID_PARAMETER)
}

fn connection_id(raw: u32) -> HvResult<HvConnectionId> {
    HvConnectionId::new(raw).ok_or(HvError::INVALID_PARAMETER)
}

impl Broker {
    pub const fn new() -> Broker {
        Broker { ports: [None; MAX_PORTS], connections: [None; MAX_CONNECTIONS] }
    }

    pub fn port(&self, partition: u64, id: u32) -> Option<&Port> {
        self.ports.iter().flatten().find(|p| p.partition == partition && p.id.get() == id)
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
    ) -> HvResult<()> {
        let port_partition = partition(port_partition)?;
        let connection_partition = partition(connection_partition)?;
        let id = port_id(id)?;
        let port_type = match HvPortType(port_type) {
            t @ (HvPortType::MESSAGE | HvPortType::EVENT | HvPortType::MONITOR) => t,
            _ => return Err(HvError::INVALID_PARAMETER),
        };
        if target_sint >= HV_SYNIC_SINT_COUNT {
            return Err(HvError::INVALID_PARAMETER);
        }
        if self.port(port_partition, id.get()).is_some() {
            return Err(HvError::INVALID_PORT_ID);
        }
        let slot = self.ports.iter_mut().find(|p| p.is_none()).ok_or(HvError::INSUFFICIENT_MEMORY)?;
        *slot = Some(Port {
            partition: port_partition,
            id,
            connection_partition,
            port_type,
            target_vp,
            target_sint,
            owner: caller,
        });
        Ok(())
    }

    pub fn delete_port(&mut self, caller: Badge, port_partition: u64, id: u32) -> HvResult<()> {
        let port_partition = partition(port_partition)?;
        let id = port_id(id)?;
        let slot = self
            .ports
            .iter_mut()
            .find(|p| p.is_some_and(|p| p.partition == port_partition && p.id == id))
            .ok_or(HvError::INVALID_PORT_ID)?;
        if slot.is_some_and(|p| p.owner != caller) {
            return Err(HvError::ACCESS_DENIED);
        }
        *slot = None;
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
        let connection_partition = partition(connection_partition)?;
        let port_partition = partition(port_partition)?;
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
        *slot = Some(Connection { partition: connection_partition, id, port_partition, port_id, owner: caller });
        Ok(())
    }

    pub fn disconnect_port(&mut self, caller: Badge, connection_partition: u64, id: u32) -> HvResult<()> {
        let connection_partition = partition(connection_partition)?;
        let id = connection_id(id)?;
        let slot = self
            .connections
            .iter_mut()
            .find(|c| c.is_some_and(|c| c.partition == connection_partition && c.id == id))
            .ok_or(HvError::INVALID_CONNECTION_ID)?;
        if slot.is_some_and(|c| c.owner != caller) {
            return Err(HvError::ACCESS_DENIED);
        }
        *slot = None;
        Ok(())
    }

    /// The port a connection leads to.
    pub fn resolve(&self, connection_partition: u64, id: u32) -> HvResult<&Port> {
        let connection = self
            .connection(partition(connection_partition)?, connection_id(id)?.get())
            .ok_or(HvError::INVALID_CONNECTION_ID)?;
        // Deleting a port removes its connections, so the port exists.
        self.port(connection.port_partition, connection.port_id.get()).ok_or(HvError::INVALID_PORT_ID)
    }
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
        _caller: Badge,
        connection_partition: u64,
        connection_id: u32,
    ) -> HvResult<(u64, u32, u32, u32, u32)> {
        let port = Broker::resolve(self, connection_partition, connection_id)?;
        Ok((port.partition, port.id.get(), port.port_type.0, port.target_vp, port.target_sint))
    }
}

#[cfg(test)]
mod tests;
