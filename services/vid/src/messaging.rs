//! Messages and events between partitions (TLFS 11.6, 11.10, 11.11), the
//! VID's side: the broker ([`crate::hypercall`]'s HvPostMessage and
//! HvSignalEvent go to it through [`Connections`]) queues them at their
//! ports, and the VID of a port's partition fetches each [`Delivery`] and
//! puts it into the target VP's SynIC ([`crate::exits::Vmm::deliver`]).
//!
//! What the broker hands over is an allegation like any input: a delivery
//! whose kind, VP, SINT, flag, message type or payload size is out of
//! range is refused here ([`Delivery::from_fetch`] answers `None`).

use tlfs::msr::{HV_EVENT_FLAGS_COUNT, HV_SYNIC_SINTS};
use tlfs::zerocopy::{FromZeros, IntoBytes};
use tlfs::{HV_MESSAGE_MAX_PAYLOAD_BYTE_COUNT, HvError, HvMessage, HvMessageType, HvResult};

/// The broker as the hypercall handlers use it, for the calling partition.
pub trait Connections {
    /// HvPostMessage on the partition's connection `connection_id`.
    fn post_message(&mut self, connection_id: u32, message_type: u32, payload: &[u8]) -> HvResult<()>;
    /// HvSignalEvent on the partition's connection `connection_id`.
    fn signal_event(&mut self, connection_id: u32, flag_number: u16) -> HvResult<()>;
    /// VP `vp`'s SINTs now take what `accepting` says
    /// (`broker_api::accepting`): senders through the broker are refused
    /// with `INVALID_SYNIC_STATE` where they do not.
    fn synic_state(&mut self, _vp: u32, _accepting: u32) -> HvResult<()> {
        Ok(())
    }
}

/// A partition without a broker holds no connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoConnections;

impl Connections for NoConnections {
    fn post_message(&mut self, _: u32, _: u32, _: &[u8]) -> HvResult<()> {
        Err(HvError::INVALID_CONNECTION_ID)
    }

    fn signal_event(&mut self, _: u32, _: u16) -> HvResult<()> {
        Err(HvError::INVALID_CONNECTION_ID)
    }
}

pub const KIND_MESSAGE: u32 = broker_api::delivery::MESSAGE;
pub const KIND_EVENT: u32 = broker_api::delivery::EVENT;

/// One thing the broker delivers to a VP of this VID's partition. Taken
/// one at a time and there is no heap: not boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A message for SINT `sint`'s slot; its origination ID is the port.
    Message { vp: u32, sint: u8, message: HvMessage },
    /// Event flag `flag` (within the SINT's 2048) of SINT `sint`.
    Event { vp: u32, sint: u8, flag: u32 },
}

impl Delivery {
    /// What one `fetch` answered: (kind, VP, SINT, port ID, message type or
    /// flag number, payload), checked against a partition of `vps` VPs.
    pub fn from_fetch(
        kind: u32,
        vp: u32,
        sint: u32,
        port_id: u32,
        value: u32,
        payload: &[u8],
        vps: u32,
    ) -> Option<Delivery> {
        if vp >= vps || sint as usize >= HV_SYNIC_SINTS {
            return None;
        }
        let sint = sint as u8;
        match kind {
            KIND_MESSAGE => {
                let guest_type = value != 0 && value & 0x8000_0000 == 0;
                if !guest_type || payload.len() > HV_MESSAGE_MAX_PAYLOAD_BYTE_COUNT {
                    return None;
                }
                Some(Delivery::Message { vp, sint, message: message(port_id, value, payload) })
            }
            KIND_EVENT if value < HV_EVENT_FLAGS_COUNT && payload.is_empty() => {
                Some(Delivery::Event { vp, sint, flag: value })
            }
            _ => None,
        }
    }

    /// The target VP.
    pub const fn vp(&self) -> u32 {
        match *self {
            Delivery::Message { vp, .. } | Delivery::Event { vp, .. } => vp,
        }
    }
}

/// The SIM-slot message of a post to port `port_id` (TLFS 11.10.3: the
/// type and size as posted, `OriginationId` the port, no flags).
pub fn message(port_id: u32, message_type: u32, payload: &[u8]) -> HvMessage {
    let mut m = HvMessage::new_zeroed();
    let n = payload.len().min(HV_MESSAGE_MAX_PAYLOAD_BYTE_COUNT);
    m.header.message_type = HvMessageType(message_type);
    m.header.payload_size = n as u8;
    m.header.origination_id = u64::from(port_id);
    m.payload.as_mut_bytes()[..n].copy_from_slice(&payload[..n]);
    m
}

/// What became of a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivered {
    /// In the SIM slot or the SIEF page (the SINT raised unless masked or
    /// polled, or, for an event, unless the flag was already set).
    Done,
    /// The slot is busy (or the SynIC or SIMP off): the VP holds the
    /// message until EOM or until they are enabled.
    Held,
    /// Dropped: the partition has no SynIC, the VP already holds a
    /// message, or (for an event) its SIEF page or SINT is off
    /// (`INVALID_SYNIC_STATE`, which no sender is told).
    Dropped,
}

/// `message of type T (N bytes) from port P for VP V, SINT S` or
/// `event flag F for VP V, SINT S`.
impl core::fmt::Display for Delivery {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Delivery::Message { vp, sint, message } => write!(
                f,
                "message of type {:#x} ({} bytes) from port {:#x} for VP {vp}, SINT {sint}",
                message.header.message_type.0, message.header.payload_size, message.header.origination_id
            ),
            Delivery::Event { vp, sint, flag } => write!(f, "event flag {flag} for VP {vp}, SINT {sint}"),
        }
    }
}
