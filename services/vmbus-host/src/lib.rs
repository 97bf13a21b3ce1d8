//! The VMBus host's protocol: the control messages Linux 6.1's `hv_vmbus`
//! sends on the VMBus message connection when it connects and unloads,
//! and the host's answers (`include/linux/hyperv.h`: the
//! `vmbus_channel_message_header` and the messages after it).
//!
//! Pure and host-tested. A guest's message is an allegation: [`Host::handle`]
//! reads only what the payload holds, refuses what is short or unknown
//! ([`Outcome::Ignored`], nothing is answered) and never panics.
//!
//! | guest sends | host answers |
//! |---|---|
//! | `INITIATE_CONTACT` (14) with a version | `VERSION_RESPONSE` (15): supported if it is one of [`VERSIONS`] and names the SINT and VP the host's port delivers to |
//! | `REQUESTOFFERS` (3), once connected | `ALLOFFERS_DELIVERED` (4): no channel is offered |
//! | `UNLOAD` (16) | `UNLOAD_RESPONSE` (17); the host is disconnected |
//!
//! Linux tries its versions newest first and takes the first the host
//! supports, so the negotiated version is the newest both know. Versions
//! 5.0 and later send `INITIATE_CONTACT` on connection
//! [`MESSAGE_CONNECTION_ID`] (4) and take the connection ID of later
//! messages from the response; older ones use connection 1 and are not
//! offered. Without device channels, 5.0 to 5.3 differ in nothing this host
//! answers (their additions concern channels).

#![no_std]
#![forbid(unsafe_code)]

/// The HV message type of VMBus messages, both ways (`vmbus_post_msg`
/// posts with 1; Hyper-V's and QEMU's hosts answer with it).
pub const MESSAGE_TYPE: u32 = 1;
/// The connection Linux posts `INITIATE_CONTACT` on for versions 5.0 and
/// later (`VMBUS_MESSAGE_CONNECTION_ID_4`), and the one the host tells it
/// to keep using.
pub const MESSAGE_CONNECTION_ID: u32 = 4;
/// The SINT Linux receives VMBus messages on (`VMBUS_MESSAGE_SINT`).
pub const MESSAGE_SINT: u8 = 2;
/// The VP the host's answers go to (`VMBUS_CONNECT_CPU` 0's VP).
pub const MESSAGE_VP: u32 = 0;

/// `enum vmbus_channel_message_type` values used here.
pub mod msgtype {
    pub const REQUESTOFFERS: u32 = 3;
    pub const ALLOFFERS_DELIVERED: u32 = 4;
    pub const INITIATE_CONTACT: u32 = 14;
    pub const VERSION_RESPONSE: u32 = 15;
    pub const UNLOAD: u32 = 16;
    pub const UNLOAD_RESPONSE: u32 = 17;
}

/// A VMBus protocol version: major in the high 16 bits, minor in the low.
pub const fn version(major: u16, minor: u16) -> u32 {
    (major as u32) << 16 | minor as u32
}

/// The versions the host supports, newest first: 5.3 to 5.0
/// (`VERSION_WIN10_V5_3` .. `VERSION_WIN10_V5`).
pub const VERSIONS: [u32; 4] = [version(5, 3), version(5, 2), version(5, 1), version(5, 0)];

/// `sizeof(struct vmbus_channel_message_header)`: `msgtype`, padding.
pub const HEADER_LEN: usize = 8;
/// `sizeof(struct vmbus_channel_initiate_contact)` (packed): the header,
/// `vmbus_version_requested`, `target_vcpu`, the interrupt page (or
/// `msg_sint`, `msg_vtl` from 5.0 on) and two monitor pages.
pub const INITIATE_CONTACT_LEN: usize = HEADER_LEN + 4 + 4 + 8 + 8 + 8;
/// `sizeof(struct vmbus_channel_version_response)` (packed): the header,
/// `version_supported`, `connection_state`, padding, `msg_conn_id`.
pub const VERSION_RESPONSE_LEN: usize = HEADER_LEN + 1 + 1 + 2 + 4;
/// The longest answer.
pub const MAX_REPLY_LEN: usize = VERSION_RESPONSE_LEN;

/// An answer's payload (the VMBus message, header first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    bytes: [u8; MAX_REPLY_LEN],
    len: usize,
}

impl Reply {
    fn header_only(msgtype: u32) -> Reply {
        let mut bytes = [0; MAX_REPLY_LEN];
        bytes[..4].copy_from_slice(&msgtype.to_le_bytes());
        Reply { bytes, len: HEADER_LEN }
    }

    fn version_response(supported: bool) -> Reply {
        let mut r = Reply::header_only(msgtype::VERSION_RESPONSE);
        r.bytes[8] = u8::from(supported);
        // connection_state 0, padding 0.
        r.bytes[12..16].copy_from_slice(&MESSAGE_CONNECTION_ID.to_le_bytes());
        r.len = VERSION_RESPONSE_LEN;
        r
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The answer's `msgtype`.
    pub fn msgtype(&self) -> u32 {
        u32::from_le_bytes([self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]])
    }
}

/// Why a message got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// Not of [`MESSAGE_TYPE`].
    MessageType(u32),
    /// Shorter than its message (`msgtype`, or 0 if not even a header).
    Short { msgtype: u32, len: usize },
    /// A message this host does not serve (channel messages: it offers none).
    Unhandled(u32),
    /// `REQUESTOFFERS` before a version was agreed.
    NotConnected,
}

/// What became of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A version was asked for: `accepted` if the host supports it (the
    /// host is then connected at it); `reply` is the `VERSION_RESPONSE`.
    Contact {
        requested: u32,
        accepted: bool,
        reply: Reply,
    },
    /// Offers were requested: `reply` is `ALLOFFERS_DELIVERED`.
    Offers {
        reply: Reply,
    },
    /// The guest unloaded: `reply` is `UNLOAD_RESPONSE`.
    Unloaded {
        reply: Reply,
    },
    Ignored(Ignored),
}

impl Outcome {
    /// The answer to post back, if any.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            Outcome::Contact { reply, .. } | Outcome::Offers { reply } | Outcome::Unloaded { reply } => Some(reply),
            Outcome::Ignored(_) => None,
        }
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

/// One partition's VMBus connection, as its host sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Host {
    /// The version agreed on, once connected.
    pub version: Option<u32>,
}

impl Host {
    pub const fn new() -> Host {
        Host { version: None }
    }

    /// Handles one message of type `message_type` with `payload` (as the
    /// SIM slot held it) and says what to answer.
    pub fn handle(&mut self, message_type: u32, payload: &[u8]) -> Outcome {
        if message_type != MESSAGE_TYPE {
            return Outcome::Ignored(Ignored::MessageType(message_type));
        }
        if payload.len() < HEADER_LEN {
            return Outcome::Ignored(Ignored::Short { msgtype: 0, len: payload.len() });
        }
        let msgtype = u32_at(payload, 0);
        match msgtype {
            msgtype::INITIATE_CONTACT => {
                if payload.len() < INITIATE_CONTACT_LEN {
                    return Outcome::Ignored(Ignored::Short { msgtype, len: payload.len() });
                }
                let requested = u32_at(payload, 8);
                let target_vcpu = u32_at(payload, 12);
                let msg_sint = payload[16];
                // The host's port delivers to one VP and SINT (the manifest's).
                let accepted = VERSIONS.contains(&requested) && target_vcpu == MESSAGE_VP && msg_sint == MESSAGE_SINT;
                self.version = accepted.then_some(requested);
                Outcome::Contact { requested, accepted, reply: Reply::version_response(accepted) }
            }
            msgtype::REQUESTOFFERS if self.version.is_none() => Outcome::Ignored(Ignored::NotConnected),
            msgtype::REQUESTOFFERS => Outcome::Offers { reply: Reply::header_only(msgtype::ALLOFFERS_DELIVERED) },
            msgtype::UNLOAD => {
                self.version = None;
                Outcome::Unloaded { reply: Reply::header_only(msgtype::UNLOAD_RESPONSE) }
            }
            other => Outcome::Ignored(Ignored::Unhandled(other)),
        }
    }
}

#[cfg(test)]
mod tests;
