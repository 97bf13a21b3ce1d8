//! Service interfaces for Tessera tasks, written once.
//!
//! An interface is declared with [`interface!`]; the macro generates, from
//! that one definition, the operation numbers, a [`Client`](self#generated-items)
//! stub that marshals arguments into a [`Message`] and performs a CALL, a
//! `Server` trait, and a `dispatch` function that unmarshals a request,
//! calls the trait method with the caller's badge and marshals the reply.
//! Each service puts its interface in its own `services/<name>-api` crate,
//! so clients depend on the interface, never on the server.
//!
//! Everything here is pure and host-tested; the kernel binding (the
//! [`Transport`] and [`Receiver`] that really trap into ring 0) is in
//! `tessera-rt`. A request from another task is an *allegation*: `dispatch`
//! checks the label, every word and every length, and answers a malformed
//! request with an error reply; it never panics.
//!
//! # Wire format
//!
//! A request's label is the operation number; its words are the arguments in
//! order. A reply's label is [`REPLY_OK`] and its words are the return value,
//! or a [`ProtocolError`] label (unknown operation, malformed request). Per
//! type (see [`wire`]): integers and `bool` take one word each (range
//! checked); `&[u8]` is a length word followed by the bytes packed
//! little-endian, eight per word, zero-padded; `Result<T, E>` is a word 0
//! followed by `T`, or a word 1 followed by `E`'s `u64` code; `Option<T>`
//! likewise; tuples are their fields in order; `()` is nothing. Trailing
//! words are malformed.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod interface;
mod message;
pub mod testing;
pub mod wire;

pub use abi::{Badge, CapSlot, ErrorCode, MAX_MESSAGE_WORDS};
pub use message::{Message, MessageFull};
pub use wire::{Arg, Bytes, Decode, DecodeError, Decoder, Encode, Encoder, MAX_BYTES};

/// The badge the supervisor keeps for itself on every endpoint capability
/// it holds (a system convention: the supervisor mints the badges, and the
/// services that take orders only from it check for this one).
pub const SUPERVISOR_BADGE: Badge = Badge(1);

/// Label of a successful reply; its words are the encoded return value.
pub const REPLY_OK: u32 = 0;

abi::open_enum! {
    /// Label of a reply that rejects the request before any operation ran.
    pub struct ProtocolError(u32) {
        /// The request's label names no operation of the interface.
        UNKNOWN_OPERATION = 1,
        /// The request's words do not decode; MR0 is the [`DecodeError`] code.
        MALFORMED_REQUEST = 2,
        /// The return value did not fit in a message (a server bug).
        REPLY_TOO_LONG = 3,
    }
}

/// Why a client call failed before the server's answer could be returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallError {
    /// The arguments do not fit in one message.
    RequestTooLong,
    /// The CALL itself failed (no such capability, no right, server gone, ...).
    Kernel(ErrorCode),
    /// The server does not know the operation.
    UnknownOperation,
    /// The server could not decode the request.
    Malformed(DecodeError),
    /// The server answered with a label this protocol does not define.
    Rejected(u32),
    /// The reply could not be decoded as the operation's return type.
    BadReply(DecodeError),
}

/// The client side of IPC: send a request on an endpoint and wait for the reply.
///
/// The message is the request on the way in and the reply on the way out, so
/// a call needs one message buffer, not two (tasks have small stacks).
pub trait Transport {
    fn call(&self, endpoint: CapSlot, message: &mut Message) -> Result<(), ErrorCode>;
}

impl<T: Transport + ?Sized> Transport for &T {
    fn call(&self, endpoint: CapSlot, message: &mut Message) -> Result<(), ErrorCode> {
        (**self).call(endpoint, message)
    }
}

/// A transport that calls again when the server died with the call in
/// hand (`PEER_GONE`: its reply right went with it). The endpoint outlives
/// the server, so the repeated call waits there for the instance the
/// supervisor starts next. For requests that are safe to repeat, to a
/// server that restarts (the partition manager): a request the dead
/// instance had completed is repeated as well.
#[derive(Clone, Copy, Debug, Default)]
pub struct Retrying<T>(pub T);

/// Calls a [`Retrying`] transport repeats before it gives up.
pub const RETRIES: u32 = 2;

impl<T: Transport> Transport for Retrying<T> {
    fn call(&self, endpoint: CapSlot, message: &mut Message) -> Result<(), ErrorCode> {
        let sent = message.clone();
        let mut tries = 0;
        loop {
            match self.0.call(endpoint, message) {
                Err(ErrorCode::PEER_GONE) if tries < RETRIES => {
                    tries += 1;
                    message.clone_from(&sent);
                }
                done => return done,
            }
        }
    }
}

/// The server side of IPC: receive requests and answer them, in one buffer.
pub trait Receiver {
    /// Waits for the next request, written into `message`; returns the sender's badge.
    fn recv(&self, endpoint: CapSlot, message: &mut Message) -> Result<Badge, ErrorCode>;
    /// Replies with `message` to the last caller, then waits for the next
    /// request, written into `message`.
    fn reply_recv(&self, endpoint: CapSlot, message: &mut Message) -> Result<Badge, ErrorCode>;
}

/// The server loop: receive a request, let `handler` turn it into the reply
/// in place, reply and receive the next request, forever.
///
/// If a reply cannot be delivered (the caller died, or the request was a
/// one-way SEND with nobody to answer), the loop falls back to a plain
/// receive. It returns only when receiving itself fails (e.g. the endpoint
/// capability is gone), with that error.
pub fn serve<R, H>(receiver: &R, endpoint: CapSlot, mut handler: H) -> ErrorCode
where
    R: Receiver + ?Sized,
    H: FnMut(Badge, &mut Message),
{
    let mut message = Message::new(0);
    let mut next = receiver.recv(endpoint, &mut message);
    loop {
        let badge = match next {
            Ok(badge) => badge,
            Err(error) => return error,
        };
        handler(badge, &mut message);
        next = match receiver.reply_recv(endpoint, &mut message) {
            Ok(badge) => Ok(badge),
            Err(_) => receiver.recv(endpoint, &mut message),
        };
    }
}

/// Replaces `message` with the reply carrying `value`: [`REPLY_OK`] and the
/// encoded value, or [`ProtocolError::REPLY_TOO_LONG`] if it does not fit.
pub fn set_reply<T: Encode + ?Sized>(message: &mut Message, value: &T) {
    message.clear(REPLY_OK);
    if value.encode(&mut Encoder::new(message)).is_err() {
        message.clear(ProtocolError::REPLY_TOO_LONG.0);
    }
}

/// Replaces `message` with the error reply for an unknown operation.
pub fn set_unknown_operation(message: &mut Message) {
    message.clear(ProtocolError::UNKNOWN_OPERATION.0);
}

/// Replaces `message` with the error reply for a request that does not decode.
pub fn set_malformed(message: &mut Message, error: DecodeError) {
    message.clear(ProtocolError::MALFORMED_REQUEST.0);
    // One word always fits in an empty message.
    let _ = message.push(error.code());
}

/// The reply carrying `value` (see [`set_reply`]).
pub fn reply_with<T: Encode + ?Sized>(value: &T) -> Message {
    let mut reply = Message::new(REPLY_OK);
    set_reply(&mut reply, value);
    reply
}

/// Replaces `message` with a request: operation `op`, arguments written by `args`.
pub fn encode_request(
    message: &mut Message,
    op: u32,
    args: impl FnOnce(&mut Encoder<'_>) -> Result<(), MessageFull>,
) -> Result<(), CallError> {
    message.clear(op);
    args(&mut Encoder::new(message)).map_err(|_| CallError::RequestTooLong)
}

/// Decodes a reply as `T`, or turns its error label into a [`CallError`].
pub fn decode_reply<T: Decode>(reply: &Message) -> Result<T, CallError> {
    match ProtocolError(reply.label()) {
        ProtocolError(REPLY_OK) => {
            let mut decoder = Decoder::new(reply.words());
            let value = T::decode(&mut decoder).map_err(CallError::BadReply)?;
            decoder.finish().map_err(CallError::BadReply)?;
            Ok(value)
        }
        ProtocolError::UNKNOWN_OPERATION => Err(CallError::UnknownOperation),
        ProtocolError::MALFORMED_REQUEST => {
            let detail = reply.words().first().copied().and_then(DecodeError::from_code);
            Err(CallError::Malformed(detail.unwrap_or(DecodeError::BadValue)))
        }
        ProtocolError(other) => Err(CallError::Rejected(other)),
    }
}

/// Declares a fieldless enum coded as a `u64`: an error usable as the `E`
/// of a `Result<T, E>` in an interface, or a state/kind usable as an
/// argument or return value. It gets `code()`, `name()`, `ALL`,
/// `From<E> for u64`, `TryFrom<u64>` (unknown codes are refused, so a
/// request carrying one is malformed) and [`Encode`]/[`Decode`] (one word).
/// Codes must be distinct (checked at compile time).
///
/// ```
/// tessera_idl::code_enum! {
///     /// Why a frobnication failed.
///     pub enum FrobError {
///         TooBig = 1,
///         Busy = 2,
///     }
/// }
/// assert_eq!(u64::from(FrobError::Busy), 2);
/// assert_eq!(FrobError::try_from(1), Ok(FrobError::TooBig));
/// assert!(FrobError::try_from(3).is_err());
/// ```
#[macro_export]
macro_rules! code_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $code:expr),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub const fn code(self) -> u64 {
                match self {
                    $($name::$variant => $code,)+
                }
            }

            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => stringify!($variant),)+
                }
            }
        }

        impl ::core::convert::From<$name> for u64 {
            fn from(e: $name) -> u64 {
                e.code()
            }
        }

        impl ::core::convert::TryFrom<u64> for $name {
            type Error = u64;
            fn try_from(code: u64) -> ::core::result::Result<$name, u64> {
                $(if code == $code {
                    return Ok($name::$variant);
                })+
                Err(code)
            }
        }

        impl $crate::Encode for $name {
            fn encode(&self, encoder: &mut $crate::Encoder<'_>) -> ::core::result::Result<(), $crate::MessageFull> {
                encoder.word(self.code())
            }
        }

        impl $crate::Decode for $name {
            fn decode(decoder: &mut $crate::Decoder<'_>) -> ::core::result::Result<$name, $crate::DecodeError> {
                <$name as ::core::convert::TryFrom<u64>>::try_from(decoder.word()?).map_err(|_| $crate::DecodeError::BadValue)
            }
        }

        const _: () = {
            let codes: &[u64] = &[$($code),+];
            let mut i = 0;
            while i < codes.len() {
                let mut j = i + 1;
                while j < codes.len() {
                    assert!(codes[i] != codes[j], "code_enum!: two variants share a code");
                    j += 1;
                }
                i += 1;
            }
        };
    };
}

code_enum! {
    /// The errors most services need, as `u64` codes on the wire.
    pub enum ServiceError {
        /// The caller's badge is not allowed to do this.
        PermissionDenied = 1,
        /// An argument is out of range or malformed.
        InvalidArgument = 2,
        /// The operation is defined but not implemented (yet).
        NotSupported = 3,
        /// The named thing does not exist.
        NotFound = 4,
        /// A bounded table is full.
        NoResources = 5,
        /// A kernel operation the service needed failed.
        Failed = 6,
    }
}

#[cfg(test)]
mod tests;
