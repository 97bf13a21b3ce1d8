//! The broker's interface: TLFS ports (TLFS 11.10.6) and connections
//! (11.10.7) between partitions, and the messages and events sent through
//! them (`HvPostMessage`, `HvSignalEvent`, TLFS 11.11).
//!
//! Operation numbers are the TLFS hypercall codes; failures carry TLFS
//! statuses. The partition manager's `partition_manager_api::hv_status`
//! turns any call result into a status.
//!
//! # Who may do what
//!
//! Partitions are named by their manifest index. The supervisor (the only
//! badge authority) tells the broker which VID runs which partition
//! ([`Client::register_partition`]) and declares the manifest's
//! `[[connections]]` with [`Client::create_port`] and
//! [`Client::connect_port`]: the policy of who may talk to whom is the
//! manifest's, so ports and connections are made, connected and removed on
//! the supervisor's capability only (`ACCESS_DENIED` otherwise). A VID
//! speaks for the partitions registered for its badge: it resolves, posts
//! and signals on their connections, and fetches their deliveries; for a
//! partition it does not run it gets `ACCESS_DENIED`.
//!
//! # Parties: partitions and services
//!
//! A port's owner and a connection's holder is a *party*: a partition,
//! named by its manifest index, or a root service (a task, such as the
//! VMBus host) that the manifest's `[[connections]]` names, named by
//! [`task_party`] of its task index. The supervisor registers a service
//! like a partition of one VP, with the service's own badge as its
//! speaker: only that task may fetch what reaches its ports and post on
//! its connections, so a service serves only the ports the manifest gives
//! it. Below, "partition" means either.
//!
//! # The delivery path
//!
//! The broker never calls a VID (calls go uphill: the broker runs above
//! every VID that uses it). A message or event sent through a connection is
//! queued at the port (a message port holds [`QUEUE_DEPTH`] messages, then
//! `INSUFFICIENT_BUFFERS`; event flags are bits, set once however often
//! they are signalled), and the broker signals the notification of the
//! port partition's VID ([`NOTIFY_PREFIX`]). That VID then calls
//! [`Client::fetch`] for its partition until `NO_DATA`, and puts each
//! delivery into the target VP's SynIC (SIM slot or SIEF flag).
//!
//! # The target's SynIC state
//!
//! A sender is answered `INVALID_SYNIC_STATE` (TLFS 11.11.1, 11.11.2) when
//! the target VP's SynIC cannot take what it sends. The broker cannot ask
//! the target's VID (calls go uphill), so each VID tells it, with
//! [`Client::synic_state`], which SINTs of each VP accept messages and
//! events ([`accepting`]) whenever that changes, before the VP runs on;
//! the rules themselves are the VID's. A registered partition starts with
//! none accepting (a SynIC at reset is disabled). Services have no SynIC:
//! their ports always accept.

#![no_std]
#![forbid(unsafe_code)]

pub use tessera_idl::Bytes;
use tlfs::HvCallCode;
pub use tlfs::{HvError, HvStatus};

/// Name of the endpoint the broker serves.
pub const ENDPOINT: &str = "broker";

/// Messages a message port holds until its partition's VID fetches them.
pub const QUEUE_DEPTH: usize = 4;

/// The broker's capability to the notification of the VID with badge `b`
/// is named `notify:<b>` (decimal) in its startup page; the VID's own
/// capability to it (receive) is [`VID_NOTIFICATION`].
pub const NOTIFY_PREFIX: &str = "notify:";

/// The VID's name for the notification the broker signals when one of its
/// partitions has deliveries to fetch.
pub const VID_NOTIFICATION: &str = "broker-events";

/// A task party's name for the notification the broker signals when its
/// ports have deliveries: this prefix and its party number (decimal), so
/// the task learns its party from it.
pub const PARTY_NOTIFICATION_PREFIX: &str = "broker-party:";

/// A service's party number is this plus its manifest task index.
pub const TASK_PARTY_BASE: u64 = 0x100;
/// Task indices a party can have (the manifest's task limit).
pub const MAX_TASK_PARTIES: u64 = 16;

/// The party of the task with manifest index `task`.
pub const fn task_party(task: u8) -> u64 {
    TASK_PARTY_BASE + task as u64
}

/// The SINTs of a VP that take posted messages and signalled events, one
/// bit each, as [`Client::synic_state`] reports them.
pub mod accepting {
    /// SINT `sint` (< 16) takes messages: SCONTROL and the SIM page enabled.
    pub const fn messages(sint: u32) -> u32 {
        1 << sint
    }

    /// SINT `sint` (< 16) takes events: SCONTROL and the SIEF page enabled,
    /// the SINT unmasked.
    pub const fn events(sint: u32) -> u32 {
        1 << (16 + sint)
    }
}

/// What [`Client::fetch`] hands over (its first word).
pub mod delivery {
    /// A message for the SIM slot of SINT `sint` of VP `vp`.
    pub const MESSAGE: u32 = 1;
    /// Event flag `flag` (its number within the SINT's flags) of SINT
    /// `sint` of VP `vp`, to be set in the SIEF page.
    pub const EVENT: u32 = 2;
}

tessera_idl::interface! {
    /// TLFS ports and connections, and delivery through them.
    pub interface Broker {
        /// HvCreatePort (supervisor only): port `port_id` (24 bits) of
        /// partition `port_partition`, to which `connection_partition` may
        /// connect; `port_type` is an `HV_PORT_TYPE` (1 message, 2 event,
        /// 3 monitor); deliveries go to SINT `target_sint` (< 16) of VP
        /// `target_vp`; an event port's flags are `base_flag` and the
        /// `flag_count` after it, inside one SINT's 2048 (both 0 for other
        /// types). `INVALID_PARTITION_ID` for an unregistered partition,
        /// `INVALID_VP_INDEX` for a VP it does not have, `INVALID_PORT_ID`
        /// if the port exists.
        fn create_port(port_partition: u64, port_id: u32, connection_partition: u64, port_type: u32, target_vp: u32, target_sint: u32, base_flag: u32, flag_count: u32)
            -> Result<(), HvError> = HvCallCode::CREATE_PORT.0 as u32;

        /// HvDeletePort (supervisor only); connections to the port and its
        /// pending deliveries go with it.
        fn delete_port(port_partition: u64, port_id: u32) -> Result<(), HvError> = HvCallCode::DELETE_PORT.0 as u32;

        /// HvConnectPort (supervisor only): connection `connection_id` (24
        /// bits) of `connection_partition` to the port. `ACCESS_DENIED` if
        /// the port does not admit that partition, `INVALID_CONNECTION_ID`
        /// if the connection exists.
        fn connect_port(connection_partition: u64, connection_id: u32, port_partition: u64, port_id: u32)
            -> Result<(), HvError> = HvCallCode::CONNECT_PORT.0 as u32;

        /// HvDisconnectPort (supervisor only).
        fn disconnect_port(connection_partition: u64, connection_id: u32) -> Result<(), HvError> = HvCallCode::DISCONNECT_PORT.0 as u32;

        /// Where a connection of the caller's partition leads (a Tessera
        /// query): (port partition, port ID, port type, target VP, target
        /// SINT). `ACCESS_DENIED` for a partition the caller does not run,
        /// `INVALID_CONNECTION_ID` for a connection it does not hold.
        fn resolve(connection_partition: u64, connection_id: u32) -> Result<(u64, u32, u32, u32, u32), HvError> = 0x1_0000;

        /// Records that partition `partition` (its manifest index, or a
        /// service's [`task_party`]), of `vcpus` VPs (1 for a service), is
        /// spoken for by the task with badge `vid_badge` (its VID, or the
        /// service itself). Supervisor only (`ACCESS_DENIED`);
        /// `INVALID_PARTITION_ID` for a party beyond the broker's table,
        /// `INVALID_PARAMETER` for a VP count out of range.
        fn register_partition(vid_badge: u64, partition: u64, vcpus: u32) -> Result<(), HvError> = 0x1_0001;

        /// HvPostMessage for partition `partition`, run by the caller, on
        /// its connection `connection_id`: a message of type `message_type`
        /// with `payload` (at most 240 bytes). `ACCESS_DENIED` for a
        /// partition the caller does not run; `INVALID_PARAMETER` for a type
        /// of 0 or with the hypervisor's bit 31, or a longer payload;
        /// `INVALID_CONNECTION_ID` for a connection the partition does not
        /// hold; `INVALID_PORT_ID` if the port is not a message port;
        /// `INVALID_SYNIC_STATE` if the target SINT takes no messages
        /// ([`accepting`]); `INSUFFICIENT_BUFFERS` when it holds
        /// [`QUEUE_DEPTH`] messages.
        fn post_message(partition: u64, connection_id: u32, message_type: u32, payload: &[u8])
            -> Result<(), HvError> = HvCallCode::POST_MESSAGE.0 as u32;

        /// HvSignalEvent for partition `partition`, run by the caller:
        /// sets flag `flag_number` (relative to the port's base flag) of
        /// the event port its connection `connection_id` leads to.
        /// `ACCESS_DENIED`, `INVALID_CONNECTION_ID` as for `post_message`;
        /// `INVALID_PORT_ID` if the port is not an event port;
        /// `INVALID_PARAMETER` for a flag number not below its flag count;
        /// `INVALID_SYNIC_STATE` if the target SINT takes no events.
        fn signal_event(partition: u64, connection_id: u32, flag_number: u32)
            -> Result<(), HvError> = HvCallCode::SIGNAL_EVENT.0 as u32;

        /// Takes the next delivery for partition `partition`, run by the
        /// caller (`ACCESS_DENIED` otherwise): pending event flags first
        /// (by port, then flag), then messages in the order they were
        /// posted. (kind ([`delivery`]), target VP, target SINT, port ID,
        /// message type or flag number, payload (empty for an event)).
        /// `NO_DATA` when nothing is pending; `INVALID_SYNIC_STATE` when this
        /// broker has not heard the partition's SynIC state
        /// ([`Client::synic_state`]) since it started (it started again
        /// while the partition ran): report every VP's, then fetch again.
        fn fetch(partition: u64) -> Result<(u32, u32, u32, u32, u32, Bytes), HvError> = 0x1_0002;

        /// [`Broker::fetch`]'s event flags only: messages stay queued (a
        /// VID whose VP holds a message for a busy slot still takes
        /// events). `NO_DATA` when no flag is pending.
        fn fetch_event(partition: u64) -> Result<(u32, u32, u32, u32, u32, Bytes), HvError> = 0x1_0003;

        /// VP `vp` of partition `partition`, run by the caller
        /// (`ACCESS_DENIED` otherwise), now accepts on the SINTs
        /// `accepting` names ([`accepting`]): posts and signals to a SINT
        /// it does not accept on are `INVALID_SYNIC_STATE` from now on.
        /// `INVALID_VP_INDEX` for a VP the partition does not have.
        fn synic_state(partition: u64, vp: u32, accepting: u32) -> Result<(), HvError> = 0x1_0004;

        /// This broker started again while partitions ran: the SynIC state
        /// of each partition registered from now on is unknown until its
        /// VID reports it; meanwhile posts and signals to it are taken
        /// (delivered by its SynIC's state when its VID fetches them) and
        /// its VID's fetches answer `INVALID_SYNIC_STATE` (report every
        /// VP's, then fetch again). At the first start partitions have a
        /// SynIC at reset, which takes nothing. Supervisor only
        /// (`ACCESS_DENIED`).
        fn started_again() -> Result<(), HvError> = 0x1_0005;
    }
}
