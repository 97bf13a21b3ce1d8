//! The broker's interface: the registry of TLFS ports (TLFS 11.10.6) and
//! connections (11.10.7) between partitions.
//!
//! Operation numbers are the TLFS hypercall codes; failures carry TLFS
//! statuses. A port belongs to its partition and names the one partition
//! that may connect to it; a connection ID is unique within its partition
//! and leads to one port. The partition manager's
//! `partition_manager_api::hv_status` turns any call result into a status.

#![no_std]
#![forbid(unsafe_code)]

use tlfs::HvCallCode;
pub use tlfs::{HvError, HvStatus};

/// Name of the endpoint the broker serves.
pub const ENDPOINT: &str = "broker";

tessera_idl::interface! {
    /// TLFS ports and connections.
    pub interface Broker {
        /// HvCreatePort: port `port_id` (24 bits) of `port_partition`, to
        /// which `connection_partition` may connect; `port_type` is an
        /// `HV_PORT_TYPE` (1 message, 2 event, 3 monitor); messages and
        /// events go to SINT `target_sint` (< 16) of VP `target_vp`.
        /// `INVALID_PORT_ID` if the port exists.
        fn create_port(port_partition: u64, port_id: u32, connection_partition: u64, port_type: u32, target_vp: u32, target_sint: u32)
            -> Result<(), HvError> = HvCallCode::CREATE_PORT.0 as u32;

        /// HvDeletePort; connections to the port are removed with it.
        fn delete_port(port_partition: u64, port_id: u32) -> Result<(), HvError> = HvCallCode::DELETE_PORT.0 as u32;

        /// HvConnectPort: connection `connection_id` (24 bits) of
        /// `connection_partition` to the port. `ACCESS_DENIED` if the port
        /// does not admit that partition, `INVALID_CONNECTION_ID` if the
        /// connection exists.
        fn connect_port(connection_partition: u64, connection_id: u32, port_partition: u64, port_id: u32)
            -> Result<(), HvError> = HvCallCode::CONNECT_PORT.0 as u32;

        /// HvDisconnectPort.
        fn disconnect_port(connection_partition: u64, connection_id: u32) -> Result<(), HvError> = HvCallCode::DISCONNECT_PORT.0 as u32;

        /// Where a connection leads (a Tessera query, for the delivery path):
        /// (port partition, port ID, port type, target VP, target SINT).
        fn resolve(connection_partition: u64, connection_id: u32) -> Result<(u64, u32, u32, u32, u32), HvError> = 0x1_0000;
    }
}
