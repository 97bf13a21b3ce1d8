//! Marshalling of interface arguments and return values into message words.
//!
//! [`Encode`] writes a value; [`Decode`] reads one back and checks it
//! (range, length, padding), so a decoded value is always well-formed.
//! [`Arg`] lets an operation take a borrowed argument (`&[u8]`): the server
//! decodes into an owned buffer and lends the method a slice of it.

use crate::message::{Message, MessageFull};
use abi::MAX_MESSAGE_WORDS;

/// Most bytes a `&[u8]` argument can carry: every word but its length word.
pub const MAX_BYTES: usize = (MAX_MESSAGE_WORDS - 1) * 8;

/// Why a message did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The message ends before the value does.
    Truncated,
    /// A word is out of range for its type (an integer too wide, a `bool`
    /// other than 0 or 1, an unknown error code, non-zero padding).
    BadValue,
    /// A byte payload's length is larger than the message can hold or than
    /// the words that follow it.
    BadLength,
    /// Words follow the last value.
    TrailingWords,
}

impl DecodeError {
    pub const fn code(self) -> u64 {
        match self {
            DecodeError::Truncated => 1,
            DecodeError::BadValue => 2,
            DecodeError::BadLength => 3,
            DecodeError::TrailingWords => 4,
        }
    }

    pub const fn from_code(code: u64) -> Option<DecodeError> {
        match code {
            1 => Some(DecodeError::Truncated),
            2 => Some(DecodeError::BadValue),
            3 => Some(DecodeError::BadLength),
            4 => Some(DecodeError::TrailingWords),
            _ => None,
        }
    }
}

/// Appends words to a message.
pub struct Encoder<'a> {
    message: &'a mut Message,
}

impl<'a> Encoder<'a> {
    pub fn new(message: &'a mut Message) -> Encoder<'a> {
        Encoder { message }
    }

    pub fn word(&mut self, word: u64) -> Result<(), MessageFull> {
        self.message.push(word)
    }

    /// A length word, then the bytes packed little-endian, zero-padded.
    pub fn bytes(&mut self, bytes: &[u8]) -> Result<(), MessageFull> {
        if bytes.len() > MAX_BYTES || self.message.len() + 1 + bytes.len().div_ceil(8) > MAX_MESSAGE_WORDS {
            return Err(MessageFull);
        }
        self.word(bytes.len() as u64)?;
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.word(u64::from_le_bytes(word))?;
        }
        Ok(())
    }
}

/// Reads words from a message, front to back.
pub struct Decoder<'a> {
    words: &'a [u64],
}

impl<'a> Decoder<'a> {
    pub fn new(words: &'a [u64]) -> Decoder<'a> {
        Decoder { words }
    }

    pub fn word(&mut self) -> Result<u64, DecodeError> {
        let (&first, rest) = self.words.split_first().ok_or(DecodeError::Truncated)?;
        self.words = rest;
        Ok(first)
    }

    /// Words not yet read.
    pub fn remaining(&self) -> usize {
        self.words.len()
    }

    /// Reads a length-prefixed byte payload into `out`, returning its length.
    pub fn bytes_into(&mut self, out: &mut [u8; MAX_BYTES]) -> Result<usize, DecodeError> {
        let len = self.word()?;
        if len > MAX_BYTES as u64 {
            return Err(DecodeError::BadLength);
        }
        let len = len as usize;
        let words = len.div_ceil(8);
        if words > self.words.len() {
            return Err(DecodeError::BadLength);
        }
        let (payload, rest) = self.words.split_at(words);
        for (i, word) in payload.iter().enumerate() {
            let bytes = word.to_le_bytes();
            let take = (len - i * 8).min(8);
            if bytes[take..].iter().any(|&b| b != 0) {
                return Err(DecodeError::BadValue);
            }
            out[i * 8..i * 8 + take].copy_from_slice(&bytes[..take]);
        }
        self.words = rest;
        Ok(len)
    }

    /// Succeeds if every word was read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.words.is_empty() { Ok(()) } else { Err(DecodeError::TrailingWords) }
    }
}

/// A value that can be written into message words.
pub trait Encode {
    fn encode(&self, encoder: &mut Encoder<'_>) -> Result<(), MessageFull>;
}

/// A value that can be read back from message words, checked.
pub trait Decode: Sized {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError>;
}

/// An operation argument type. `Owned` is what the server decodes into;
/// `borrow` produces the argument the method receives.
pub trait Arg<'a>: Sized {
    type Owned: Decode;
    fn borrow(owned: &'a Self::Owned) -> Self;
}

impl<'a, T: Decode + Clone> Arg<'a> for T {
    type Owned = T;
    fn borrow(owned: &'a T) -> T {
        owned.clone()
    }
}

impl<'a> Arg<'a> for &'a [u8] {
    type Owned = Bytes;
    fn borrow(owned: &'a Bytes) -> &'a [u8] {
        owned.as_slice()
    }
}

impl<T: Encode + ?Sized> Encode for &T {
    fn encode(&self, encoder: &mut Encoder<'_>) -> Result<(), MessageFull> {
        (**self).encode(encoder)
    }
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl Encode for $t {
            fn encode(&self, encoder: &mut Encoder<'_>) -> Result<(), MessageFull> {
                encoder.word(u64::from(*self))
            }
        }

        impl Decode for $t {
            fn decode(decoder: &mut Decoder<'_>) -> Result<$t, DecodeError> {
                <$t>::try_from(decoder.word()?).map_err(|_| DecodeError::BadValue)
            }
        }
    )*};
}

unsigned!(u8, u16, u32, u64);

impl Encode for bool {
    fn encode(&self, encoder: &mut Encoder<'_>) -> Result<(), MessageFull> {
        encoder.word(u64::from(*self))
    }
}

impl Decode for bool {
    fn decode(decoder: &mut Decoder<'_>) -> Result<bool, DecodeError> {
        match decoder.word()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::BadValue),
        }
    }
}

impl Encode for () {
    fn encode(&self, _: &mut Encoder<'_>) -> Result<(), MessageFull> {
        Ok(())
    }
}

impl Decode for () {
    fn decode(_: &mut Decoder<'_>) -> Result<(), DecodeError> {
        Ok(())
    }
}

impl Encode for [u8] {
    fn encode(&self, encoder: &mut Encoder<'_>) -> Result<(), MessageFull> {
        encoder.bytes(self)
    }
}

/// An owned byte payload of up to [`MAX_BYTES`] bytes: what a `&[u8]`
/// argument decodes into, and a return type for bytes.
#[derive(Clone)]
pub struct Bytes {
    len: usize,
    buf: [u8; MAX_BYTES],
}

impl Bytes {
    pub const fn new() -> Bytes {
        Bytes { len: 0, buf: [0; MAX_BYTES] }
    }

    /// `None` if `bytes` is longer than [`MAX_BYTES`].
    pub fn from_slice(bytes: &[u8]) -> Option<Bytes> {
        let mut out = Bytes::new();
        out.buf.get_mut(..bytes.len())?.copy_from_slice(bytes);
        out.len = bytes.len();
        Some(out)
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Default for Bytes {
    fn default() -> Bytes {
        Bytes::new()
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Bytes) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Bytes {}

impl core::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Bytes({:?})", self.as_slice())
    }
}

impl Encode for Bytes {
    fn encode(&self, encoder: &mut Encoder<'_>) -> Result<(), MessageFull> {
        encoder.bytes(self.as_slice())
    }
}

impl Decode for Bytes {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Bytes, DecodeError> {
        let mut out = Bytes::new();
        out.len = decoder.bytes_into(&mut out.buf)?;
        Ok(out)
    }
}

/// `Ok(v)`: word 0, then `v`. `Err(e)`: word 1, then `e`'s code.
impl<T: Encode, E: Copy + Into<u64>> Encode for Result<T, E> {
    fn encode(&self, encoder: &mut Encoder<'_>) -> Result<(), MessageFull> {
        match self {
            Ok(value) => {
                encoder.word(0)?;
                value.encode(encoder)
            }
            Err(error) => {
                encoder.word(1)?;
                encoder.word((*error).into())
            }
        }
    }
}

impl<T: Decode, E: TryFrom<u64>> Decode for Result<T, E> {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Result<T, E>, DecodeError> {
        match decoder.word()? {
            0 => Ok(Ok(T::decode(decoder)?)),
            1 => E::try_from(decoder.word()?).map(Err).map_err(|_| DecodeError::BadValue),
            _ => Err(DecodeError::BadValue),
        }
    }
}

/// `None`: word 0. `Some(v)`: word 1, then `v`.
impl<T: Encode> Encode for Option<T> {
    fn encode(&self, encoder: &mut Encoder<'_>) -> Result<(), MessageFull> {
        match self {
            None => encoder.word(0),
            Some(value) => {
                encoder.word(1)?;
                value.encode(encoder)
            }
        }
    }
}

impl<T: Decode> Decode for Option<T> {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Option<T>, DecodeError> {
        match decoder.word()? {
            0 => Ok(None),
            1 => Ok(Some(T::decode(decoder)?)),
            _ => Err(DecodeError::BadValue),
        }
    }
}

macro_rules! tuple {
    ($($name:ident)+) => {
        impl<$($name: Encode),+> Encode for ($($name,)+) {
            #[allow(non_snake_case)]
            fn encode(&self, encoder: &mut Encoder<'_>) -> Result<(), MessageFull> {
                let ($($name,)+) = self;
                $($name.encode(encoder)?;)+
                Ok(())
            }
        }

        impl<$($name: Decode),+> Decode for ($($name,)+) {
            fn decode(decoder: &mut Decoder<'_>) -> Result<($($name,)+), DecodeError> {
                Ok(($($name::decode(decoder)?,)+))
            }
        }
    };
}

tuple!(A);
tuple!(A B);
tuple!(A B C);
tuple!(A B C D);
tuple!(A B C D E);
tuple!(A B C D E F);
