//! SynIC messages (TLFS 11.10.4) and the hypervisor messages carried in them
//! (TLFS 13): the x64 intercept messages Tessera's kernel sends to the VID
//! for VM exits, and the error and timer messages.
//!
//! Every layout is `#[repr(C)]` with zerocopy derives, so a message is read
//! and written as bytes without a pointer cast. Reserved fields are explicit
//! and sizes are pinned by const asserts.
//!
//! TLFS 6.0b prints the message header and the bitfields of chapter 13 but
//! not the payload structures themselves; those layouts, and the fields the
//! document leaves unnamed, follow the published Hyper-V headers (the same
//! layouts as OpenVMM's `tlfs` and Linux's `hvhdk.h`). Each such place says
//! so where it is declared.
//!
//! # Building and parsing
//!
//! [`HvMessageBody`] is the typed form; [`HvMessage::from_body`] builds the
//! 256-byte message from it and [`HvMessage::parse`] checks and reads one
//! back, refusing unknown types and short payloads with an
//! [`HvMessageError`]. [`HvMessage::to_words`] and [`HvMessage::from_words`]
//! carry a message as [`HV_MESSAGE_WORDS`] IPC words.

use crate::{HvMessageType, HvPartitionId, HvPortId, HvVpIndex};
use abi::open_enum;
use bitfield_struct::bitfield;
use core::mem::size_of;
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// `HV_MESSAGE_SIZE`: a SynIC message slot.
pub const HV_MESSAGE_SIZE: usize = 256;
/// `HV_MESSAGE_MAX_PAYLOAD_BYTE_COUNT`.
pub const HV_MESSAGE_MAX_PAYLOAD_BYTE_COUNT: usize = 240;
/// `HV_MESSAGE_MAX_PAYLOAD_QWORD_COUNT`.
pub const HV_MESSAGE_MAX_PAYLOAD_QWORD_COUNT: usize = 30;
/// IPC words one [`HvMessage`] takes ([`HvMessage::to_words`]).
pub const HV_MESSAGE_WORDS: usize = HV_MESSAGE_SIZE / size_of::<u64>();

const _: () = assert!(HV_MESSAGE_WORDS == 32);
const _: () = assert!(HV_MESSAGE_WORDS <= abi::MAX_MESSAGE_WORDS);

// ---------------------------------------------------------------------------
// The message (TLFS 11.10.3, 11.10.4)
// ---------------------------------------------------------------------------

/// `HV_MESSAGE_FLAGS` (TLFS 11.10.3).
#[bitfield(u8)]
#[derive(PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvMessageFlags {
    /// More messages are queued for this SINT: write EOM after emptying the slot.
    pub message_pending: bool,
    /// Tessera's, reserved in the TLFS, only in an exit's message to the
    /// VID: ring 0 holds posted port writes of the partition
    /// (`PARTITION_POST_PORT`) that came before this exit.
    pub posted_writes: bool,
    #[bits(6)]
    pub reserved: u8,
}

/// `HV_MESSAGE_HEADER` (TLFS 11.10.4).
///
/// The order of `PayloadSize`, `MessageFlags` and `Reserved` is that of the
/// Hyper-V headers, which guests rely on (`PayloadSize` at byte 4). TLFS
/// 6.0b disagrees with itself here: 11.10.4 declares `Reserved` (2 bytes),
/// then `MessageFlags`, then `PayloadSize` (byte 7), and 13.3.1 draws three
/// reserved bytes before `PayloadSize`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvMessageHeader {
    pub message_type: HvMessageType,
    /// Bytes of payload, not counting this header.
    pub payload_size: u8,
    pub message_flags: HvMessageFlags,
    pub reserved: u16,
    /// `OriginationId`: the union of `Sender` (an [`HvPartitionId`], for
    /// intercepts) and `Port` (an [`HvPortId`], for posted messages); zero for
    /// timer messages.
    pub origination_id: u64,
}

const _: () = assert!(size_of::<HvMessageHeader>() == 16);

impl HvMessageHeader {
    /// `Sender`: the partition whose VP caused an intercept message.
    pub const fn sender(&self) -> HvPartitionId {
        HvPartitionId(self.origination_id)
    }

    /// `Port`: the port a posted message arrived on; `None` if the value is
    /// not a well-formed port ID.
    pub fn port(&self) -> Option<HvPortId> {
        u32::try_from(self.origination_id).ok().and_then(HvPortId::new)
    }
}

/// `HV_MESSAGE` (TLFS 11.10.4): one 256-byte SynIC message slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvMessage {
    pub header: HvMessageHeader,
    pub payload: [u64; HV_MESSAGE_MAX_PAYLOAD_QWORD_COUNT],
}

const _: () = assert!(size_of::<HvMessage>() == HV_MESSAGE_SIZE);
const _: () = assert!(size_of::<[u64; HV_MESSAGE_MAX_PAYLOAD_QWORD_COUNT]>() == HV_MESSAGE_MAX_PAYLOAD_BYTE_COUNT);

/// Why a message could not be read or built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HvMessageError {
    /// The input was not exactly one message: [`HV_MESSAGE_SIZE`] bytes or
    /// [`HV_MESSAGE_WORDS`] words (`expected` and `actual` in those units).
    Length { expected: usize, actual: usize },
    /// No payload layout is defined here for this type: unknown values,
    /// `NONE` (an empty slot) and named types this crate does not decode.
    UnsupportedType(HvMessageType),
    /// A payload (or a header's `PayloadSize`) larger than
    /// [`HV_MESSAGE_MAX_PAYLOAD_BYTE_COUNT`].
    PayloadTooLong(usize),
    /// `PayloadSize` is smaller than the layout of `message_type`.
    PayloadTooShort { message_type: HvMessageType, expected: usize, actual: usize },
}

/// `size_of::<P>()` as a `PayloadSize`, refused at compile time if it does not fit.
const fn payload_size_of<P>() -> u8 {
    let size = size_of::<P>();
    assert!(size <= HV_MESSAGE_MAX_PAYLOAD_BYTE_COUNT);
    // Lossless: checked against 240 just above.
    size as u8
}

impl HvMessage {
    /// An empty slot (`HvMessageTypeNone`, everything zero).
    pub fn empty() -> HvMessage {
        HvMessage::new_zeroed()
    }

    /// True if the slot is empty (its type is `HvMessageTypeNone`).
    pub fn is_empty(&self) -> bool {
        self.header.message_type == HvMessageType::NONE
    }

    /// A message of `message_type` whose payload is `payload`, with no flags.
    fn with_payload<P: IntoBytes + Immutable>(
        message_type: HvMessageType,
        origination_id: u64,
        payload: &P,
    ) -> HvMessage {
        let payload_size = const { payload_size_of::<P>() };
        let mut message = HvMessage::empty();
        message.header.message_type = message_type;
        message.header.payload_size = payload_size;
        message.header.origination_id = origination_id;
        // Cannot fail: `payload_size_of` pinned the size to at most 240 bytes.
        let written = payload.write_to_prefix(message.payload.as_mut_bytes());
        debug_assert!(written.is_ok());
        message
    }

    /// The message carrying `body`: its type, `PayloadSize` = the layout's
    /// size, no flags. `origination_id` is the sender partition for
    /// intercepts and zero for timer messages (TLFS 11.10.4).
    pub fn from_body(body: &HvMessageBody, origination_id: u64) -> HvMessage {
        let message_type = body.message_type();
        match body {
            HvMessageBody::UnmappedGpa(p) | HvMessageBody::GpaIntercept(p) => {
                HvMessage::with_payload(message_type, origination_id, p)
            }
            HvMessageBody::TimerExpired(p) => HvMessage::with_payload(message_type, origination_id, p),
            HvMessageBody::InvalidVpRegisterValue(p) => HvMessage::with_payload(message_type, origination_id, p),
            HvMessageBody::UnrecoverableException(p) => HvMessage::with_payload(message_type, origination_id, p),
            HvMessageBody::UnsupportedFeature(p) => HvMessage::with_payload(message_type, origination_id, p),
            HvMessageBody::X64IoPortIntercept(p) => HvMessage::with_payload(message_type, origination_id, p),
            HvMessageBody::MsrIntercept(p) => HvMessage::with_payload(message_type, origination_id, p),
            HvMessageBody::X64CpuidIntercept(p) => HvMessage::with_payload(message_type, origination_id, p),
            HvMessageBody::ExceptionIntercept(p) => HvMessage::with_payload(message_type, origination_id, p),
            HvMessageBody::X64ApicEoi(p) => HvMessage::with_payload(message_type, origination_id, p),
            HvMessageBody::X64Halt(p) => HvMessage::with_payload(message_type, origination_id, p),
            HvMessageBody::HypercallIntercept(p) => HvMessage::with_payload(message_type, origination_id, p),
        }
    }

    /// A message with an arbitrary type and payload bytes (a posted message,
    /// or a type this crate has no layout for). Refuses more than 240 bytes.
    pub fn from_raw(
        message_type: HvMessageType,
        origination_id: u64,
        payload: &[u8],
    ) -> Result<HvMessage, HvMessageError> {
        let too_long = HvMessageError::PayloadTooLong(payload.len());
        let payload_size = u8::try_from(payload.len()).map_err(|_| too_long)?;
        let mut message = HvMessage::empty();
        let slot = message.payload.as_mut_bytes().get_mut(..payload.len()).ok_or(too_long)?;
        slot.copy_from_slice(payload);
        message.header.message_type = message_type;
        message.header.payload_size = payload_size;
        message.header.origination_id = origination_id;
        Ok(message)
    }

    /// The first `PayloadSize` bytes of the payload, or all 240 if
    /// `PayloadSize` claims more.
    pub fn payload_bytes(&self) -> &[u8] {
        let bytes = self.payload.as_bytes();
        bytes.get(..usize::from(self.header.payload_size)).unwrap_or(bytes)
    }

    /// Reads the payload as `P`, checking `PayloadSize` against its layout.
    /// A larger `PayloadSize` (up to 240) is accepted, so a sender may append
    /// fields; bytes past the layout are ignored.
    fn read_payload<P: FromBytes>(&self) -> Result<P, HvMessageError> {
        let message_type = self.header.message_type;
        let actual = usize::from(self.header.payload_size);
        let expected = size_of::<P>();
        if actual > HV_MESSAGE_MAX_PAYLOAD_BYTE_COUNT {
            return Err(HvMessageError::PayloadTooLong(actual));
        }
        let too_short = HvMessageError::PayloadTooShort { message_type, expected, actual };
        if actual < expected {
            return Err(too_short);
        }
        P::read_from_prefix(self.payload.as_bytes()).map(|(payload, _)| payload).map_err(|_| too_short)
    }

    /// Checks and decodes the message. Never panics: any input is either a
    /// [`HvMessageBody`] or an [`HvMessageError`]. Reserved fields are kept
    /// as they are, not checked.
    pub fn parse(&self) -> Result<HvMessageBody, HvMessageError> {
        let body = match self.header.message_type {
            HvMessageType::UNMAPPED_GPA => HvMessageBody::UnmappedGpa(self.read_payload()?),
            HvMessageType::GPA_INTERCEPT => HvMessageBody::GpaIntercept(self.read_payload()?),
            HvMessageType::TIMER_EXPIRED => HvMessageBody::TimerExpired(self.read_payload()?),
            HvMessageType::INVALID_VP_REGISTER_VALUE => HvMessageBody::InvalidVpRegisterValue(self.read_payload()?),
            HvMessageType::UNRECOVERABLE_EXCEPTION => HvMessageBody::UnrecoverableException(self.read_payload()?),
            HvMessageType::UNSUPPORTED_FEATURE => HvMessageBody::UnsupportedFeature(self.read_payload()?),
            HvMessageType::X64_IO_PORT_INTERCEPT => HvMessageBody::X64IoPortIntercept(self.read_payload()?),
            HvMessageType::MSR_INTERCEPT => HvMessageBody::MsrIntercept(self.read_payload()?),
            HvMessageType::X64_CPUID_INTERCEPT => HvMessageBody::X64CpuidIntercept(self.read_payload()?),
            HvMessageType::EXCEPTION_INTERCEPT => HvMessageBody::ExceptionIntercept(self.read_payload()?),
            HvMessageType::X64_APIC_EOI => HvMessageBody::X64ApicEoi(self.read_payload()?),
            HvMessageType::X64_HALT => HvMessageBody::X64Halt(self.read_payload()?),
            HvMessageType::HYPERCALL_INTERCEPT => HvMessageBody::HypercallIntercept(self.read_payload()?),
            other => return Err(HvMessageError::UnsupportedType(other)),
        };
        Ok(body)
    }

    /// A message from exactly [`HV_MESSAGE_SIZE`] bytes (no alignment needed).
    pub fn from_bytes(bytes: &[u8]) -> Result<HvMessage, HvMessageError> {
        HvMessage::read_from_bytes(bytes)
            .map_err(|_| HvMessageError::Length { expected: HV_MESSAGE_SIZE, actual: bytes.len() })
    }

    /// The message as IPC words: word `i` holds bytes `8*i..8*i+8` in the
    /// machine's (little-endian) order, so word 0 is `MessageType |
    /// PayloadSize << 32 | MessageFlags << 40` and word 1 the origination ID.
    pub fn to_words(&self) -> [u64; HV_MESSAGE_WORDS] {
        zerocopy::transmute!(*self)
    }

    /// The inverse of [`HvMessage::to_words`].
    pub fn from_word_array(words: [u64; HV_MESSAGE_WORDS]) -> HvMessage {
        zerocopy::transmute!(words)
    }

    /// [`HvMessage::from_words`] without a copy: the words seen as a message.
    pub fn ref_from_words(words: &[u64]) -> Result<&HvMessage, HvMessageError> {
        let words: &[u64; HV_MESSAGE_WORDS] =
            words.try_into().map_err(|_| HvMessageError::Length { expected: HV_MESSAGE_WORDS, actual: words.len() })?;
        Ok(zerocopy::transmute_ref!(words))
    }

    /// A message from exactly [`HV_MESSAGE_WORDS`] IPC words; the content is
    /// checked by [`HvMessage::parse`], not here.
    pub fn from_words(words: &[u64]) -> Result<HvMessage, HvMessageError> {
        <[u64; HV_MESSAGE_WORDS]>::try_from(words)
            .map(HvMessage::from_word_array)
            .map_err(|_| HvMessageError::Length { expected: HV_MESSAGE_WORDS, actual: words.len() })
    }
}

/// The decoded payload of a message, named after its `HV_MESSAGE_TYPE`.
///
/// No allocator is assumed, so payloads are held inline (at most 240 bytes,
/// the size of the message they come from).
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HvMessageBody {
    UnmappedGpa(HvX64MemoryInterceptMessage),
    GpaIntercept(HvX64MemoryInterceptMessage),
    TimerExpired(HvTimerMessagePayload),
    InvalidVpRegisterValue(HvInvalidVpRegisterMessage),
    UnrecoverableException(HvX64UnrecoverableExceptionMessage),
    UnsupportedFeature(HvX64UnsupportedFeatureMessage),
    X64IoPortIntercept(HvX64IoPortInterceptMessage),
    MsrIntercept(HvX64MsrInterceptMessage),
    X64CpuidIntercept(HvX64CpuidInterceptMessage),
    ExceptionIntercept(HvX64ExceptionInterceptMessage),
    X64ApicEoi(HvX64ApicEoiMessage),
    X64Halt(HvX64HaltMessage),
    HypercallIntercept(HvX64HypercallInterceptMessage),
}

impl HvMessageBody {
    pub const fn message_type(&self) -> HvMessageType {
        match self {
            HvMessageBody::UnmappedGpa(_) => HvMessageType::UNMAPPED_GPA,
            HvMessageBody::GpaIntercept(_) => HvMessageType::GPA_INTERCEPT,
            HvMessageBody::TimerExpired(_) => HvMessageType::TIMER_EXPIRED,
            HvMessageBody::InvalidVpRegisterValue(_) => HvMessageType::INVALID_VP_REGISTER_VALUE,
            HvMessageBody::UnrecoverableException(_) => HvMessageType::UNRECOVERABLE_EXCEPTION,
            HvMessageBody::UnsupportedFeature(_) => HvMessageType::UNSUPPORTED_FEATURE,
            HvMessageBody::X64IoPortIntercept(_) => HvMessageType::X64_IO_PORT_INTERCEPT,
            HvMessageBody::MsrIntercept(_) => HvMessageType::MSR_INTERCEPT,
            HvMessageBody::X64CpuidIntercept(_) => HvMessageType::X64_CPUID_INTERCEPT,
            HvMessageBody::ExceptionIntercept(_) => HvMessageType::EXCEPTION_INTERCEPT,
            HvMessageBody::X64ApicEoi(_) => HvMessageType::X64_APIC_EOI,
            HvMessageBody::X64Halt(_) => HvMessageType::X64_HALT,
            HvMessageBody::HypercallIntercept(_) => HvMessageType::HYPERCALL_INTERCEPT,
        }
    }

    /// The common intercept header (TLFS 13.2.2), for the payloads that start with one.
    pub const fn intercept_header(&self) -> Option<&HvX64InterceptMessageHeader> {
        match self {
            HvMessageBody::UnmappedGpa(p) | HvMessageBody::GpaIntercept(p) => Some(&p.header),
            HvMessageBody::UnrecoverableException(p) => Some(&p.header),
            HvMessageBody::X64IoPortIntercept(p) => Some(&p.header),
            HvMessageBody::MsrIntercept(p) => Some(&p.header),
            HvMessageBody::X64CpuidIntercept(p) => Some(&p.header),
            HvMessageBody::ExceptionIntercept(p) => Some(&p.header),
            HvMessageBody::X64Halt(p) => Some(&p.header),
            HvMessageBody::HypercallIntercept(p) => Some(&p.header),
            HvMessageBody::TimerExpired(_)
            | HvMessageBody::InvalidVpRegisterValue(_)
            | HvMessageBody::UnsupportedFeature(_)
            | HvMessageBody::X64ApicEoi(_) => None,
        }
    }

    /// The VP the message is about, where the payload names one.
    pub const fn vp_index(&self) -> Option<HvVpIndex> {
        match self {
            HvMessageBody::InvalidVpRegisterValue(p) => Some(p.vp_index),
            HvMessageBody::UnsupportedFeature(p) => Some(p.vp_index),
            HvMessageBody::X64ApicEoi(p) => Some(p.vp_index),
            other => match other.intercept_header() {
                Some(header) => Some(header.vp_index),
                None => None,
            },
        }
    }
}

// ---------------------------------------------------------------------------
// Register and enum types used by the payloads
// ---------------------------------------------------------------------------

/// `HV_X64_SEGMENT_REGISTER` attributes (TLFS 7.9.5): the descriptor's
/// access-rights bits as a VMCS/VMCB keeps them.
#[bitfield(u16)]
#[derive(PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvX64SegmentAttributes {
    #[bits(4)]
    pub segment_type: u8,
    pub non_system_segment: bool,
    #[bits(2)]
    pub descriptor_privilege_level: u8,
    pub present: bool,
    #[bits(4)]
    pub reserved: u8,
    pub available: bool,
    pub long: bool,
    pub default: bool,
    pub granularity: bool,
}

/// `HV_X64_SEGMENT_REGISTER` (TLFS 7.9.5).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvX64SegmentRegister {
    pub base: u64,
    pub limit: u32,
    pub selector: u16,
    pub attributes: HvX64SegmentAttributes,
}

const _: () = assert!(size_of::<HvX64SegmentRegister>() == 16);

open_enum! {
    /// `HV_INTERCEPT_ACCESS_TYPE`: what the intercepted event did. TLFS 6.0b
    /// names it (13.2.2: "read, write, or execute") without values; these
    /// are the Hyper-V headers' `HV_INTERCEPT_ACCESS_*`.
    #[derive(IntoBytes, FromBytes, Immutable, KnownLayout)]
    pub struct HvInterceptAccessType(u8) {
        READ = 0,
        WRITE = 1,
        EXECUTE = 2,
    }
}

/// `HV_X64_VP_EXECUTION_STATE` (TLFS 13.2.3).
///
/// TLFS 6.0b draws bits 7–15 as reserved; bits 7–10 carry the VP's active
/// VTL (TLFS 15) and bits 11–13 the later flags of the Hyper-V headers.
#[bitfield(u16)]
#[derive(PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvX64VpExecutionState {
    /// CPL: 0 in real mode, 3 in virtual-8086 mode, else CS.RPL.
    #[bits(2)]
    pub cpl: u8,
    pub cr0_pe: bool,
    pub cr0_am: bool,
    pub efer_lma: bool,
    /// A debug register is armed: emulation must honour breakpoints.
    pub debug_active: bool,
    /// The intercept happened while delivering an interruption, which is
    /// held pending and re-delivered on resume (TLFS 7.9.3).
    pub interruption_pending: bool,
    /// The active VTL (Hyper-V headers; reserved in TLFS 6.0b's drawing).
    #[bits(4)]
    pub vtl: u8,
    /// Hyper-V headers; reserved in TLFS 6.0b.
    pub enclave_mode: bool,
    /// STI/MOV SS blocking is in effect (Hyper-V headers; reserved in TLFS 6.0b).
    pub interrupt_shadow: bool,
    /// Hyper-V headers; reserved in TLFS 6.0b.
    pub virtualization_fault_active: bool,
    #[bits(2)]
    pub reserved: u8,
}

/// The `InstructionLength` byte of the intercept header. TLFS 6.0b calls
/// the byte `InstructionLength`; the Hyper-V headers give it 4 bits (an x86
/// instruction is at most 15 bytes) and put CR8 in the high 4.
#[bitfield(u8)]
#[derive(PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvX64InstructionLength {
    /// Zero if unknown: the receiver must decode the instruction. Always
    /// set for CPUID, I/O port and MSR intercepts (TLFS 13.2.2).
    #[bits(4)]
    pub instruction_length: u8,
    /// CR8 (Hyper-V headers: set only for some partition kinds); zero otherwise.
    #[bits(4)]
    pub cr8: u8,
}

open_enum! {
    /// `HV_CACHE_TYPE` (TLFS 9.3.3).
    #[derive(IntoBytes, FromBytes, Immutable, KnownLayout)]
    pub struct HvCacheType(u32) {
        X64_UNCACHED = 0,
        X64_WRITE_COMBINING = 1,
        X64_WRITE_THROUGH = 4,
        X64_WRITE_PROTECTED = 5,
        X64_WRITE_BACK = 6,
    }
}

// ---------------------------------------------------------------------------
// Intercept messages (TLFS 13.2)
// ---------------------------------------------------------------------------

/// `HV_X64_INTERCEPT_MESSAGE_HEADER` (TLFS 13.2.2): the common start of
/// every x64 memory access and processor intercept payload.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvX64InterceptMessageHeader {
    pub vp_index: HvVpIndex,
    pub instruction_length_and_cr8: HvX64InstructionLength,
    pub intercept_access_type: HvInterceptAccessType,
    pub execution_state: HvX64VpExecutionState,
    pub cs_segment: HvX64SegmentRegister,
    pub rip: u64,
    pub rflags: u64,
}

const _: () = assert!(size_of::<HvX64InterceptMessageHeader>() == 0x28);

impl HvX64InterceptMessageHeader {
    /// The length of the intercepted instruction, zero if unknown.
    pub const fn instruction_length(&self) -> u8 {
        self.instruction_length_and_cr8.instruction_length()
    }
}

/// The first `count` of `bytes`, at most all 16.
fn instruction_prefix(bytes: &[u8; 16], count: u8) -> &[u8] {
    bytes.get(..usize::from(count)).unwrap_or(bytes)
}

/// Copies up to 16 bytes of `instruction` and returns how many were kept.
fn store_instruction(bytes: &mut [u8; 16], instruction: &[u8]) -> u8 {
    *bytes = [0; 16];
    let kept = instruction.len().min(bytes.len());
    for (dst, src) in bytes.iter_mut().zip(instruction) {
        *dst = *src;
    }
    u8::try_from(kept).unwrap_or(16)
}

macro_rules! instruction_bytes_accessors {
    ($($ty:ty),*) => {$(
        impl $ty {
            /// The instruction bytes the hypervisor fetched: the first
            /// `instruction_byte_count` of `instruction_bytes` (at most 16).
            pub fn instruction(&self) -> &[u8] {
                instruction_prefix(&self.instruction_bytes, self.instruction_byte_count)
            }

            /// Stores up to 16 bytes of `instruction` and their count.
            pub fn set_instruction(&mut self, instruction: &[u8]) {
                self.instruction_byte_count = store_instruction(&mut self.instruction_bytes, instruction);
            }
        }
    )*};
}

instruction_bytes_accessors!(HvX64IoPortInterceptMessage, HvX64MemoryInterceptMessage, HvX64ExceptionInterceptMessage);

/// `HV_X64_IO_PORT_ACCESS_INFO` (TLFS 13.2.4).
#[bitfield(u8)]
#[derive(PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvX64IoPortAccessInfo {
    /// 1, 2 or 4: the access in bytes (001b, 010b, 100b); other values are reserved.
    #[bits(3)]
    pub access_size: u8,
    /// INS or OUTS.
    pub string_op: bool,
    /// A `rep` prefix (meaningful for string operations only).
    pub rep_prefix: bool,
    #[bits(3)]
    pub reserved: u8,
}

impl HvX64IoPortAccessInfo {
    /// True if the size is one TLFS defines and no reserved bit is set.
    pub const fn is_valid(self) -> bool {
        matches!(self.access_size(), 1 | 2 | 4) && self.reserved() == 0
    }
}

/// `HV_X64_IO_PORT_INTERCEPT_MESSAGE`: `IN`, `OUT`, `INS`, `OUTS` on an
/// intercepted port (layout from the Hyper-V headers).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvX64IoPortInterceptMessage {
    pub header: HvX64InterceptMessageHeader,
    pub port_number: u16,
    pub access_info: HvX64IoPortAccessInfo,
    pub instruction_byte_count: u8,
    pub reserved: u32,
    pub rax: u64,
    pub instruction_bytes: [u8; 16],
    pub ds_segment: HvX64SegmentRegister,
    pub es_segment: HvX64SegmentRegister,
    pub rcx: u64,
    pub rsi: u64,
    pub rdi: u64,
}

const _: () = assert!(size_of::<HvX64IoPortInterceptMessage>() == 0x80);

/// `HV_X64_MEMORY_ACCESS_INFO` (TLFS 13.2.6). TLFS 6.0b describes only
/// `GvaValid` and draws no layout; the others are the Hyper-V headers'.
#[bitfield(u8)]
#[derive(PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvX64MemoryAccessInfo {
    /// `guest_virtual_address` holds a valid GVA.
    pub gva_valid: bool,
    /// The GVA and GPA are of the same access (Hyper-V headers).
    pub gva_gpa_valid: bool,
    /// A hypercall's output is still to be written (Hyper-V headers).
    pub hypercall_output_pending: bool,
    /// Hyper-V headers.
    pub tlb_locked_no_overlay: bool,
    #[bits(4)]
    pub reserved: u8,
}

/// `HV_X64_MEMORY_INTERCEPT_MESSAGE`: the payload of
/// `HvMessageTypeUnmappedGpa` and `HvMessageTypeGpaIntercept` (layout from
/// the Hyper-V headers).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvX64MemoryInterceptMessage {
    pub header: HvX64InterceptMessageHeader,
    pub cache_type: HvCacheType,
    pub instruction_byte_count: u8,
    pub memory_access_info: HvX64MemoryAccessInfo,
    /// The TPR priority class (Hyper-V headers); zero if not reported.
    pub tpr_priority: u8,
    pub reserved: u8,
    pub guest_virtual_address: u64,
    pub guest_physical_address: u64,
    pub instruction_bytes: [u8; 16],
}

const _: () = assert!(size_of::<HvX64MemoryInterceptMessage>() == 0x50);

/// `HV_X64_CPUID_INTERCEPT_MESSAGE`: the guest's inputs and the results the
/// hypervisor would return (layout from the Hyper-V headers).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvX64CpuidInterceptMessage {
    pub header: HvX64InterceptMessageHeader,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rbx: u64,
    pub default_result_rax: u64,
    pub default_result_rcx: u64,
    pub default_result_rdx: u64,
    pub default_result_rbx: u64,
}

const _: () = assert!(size_of::<HvX64CpuidInterceptMessage>() == 0x68);

/// `HV_X64_HYPERCALL_INTERCEPT_MESSAGE`: a VMCALL/VMMCALL with the
/// registers of both calling conventions (TLFS 3.7/3.8) and XMM0..XMM5 for
/// XMM fast calls, each XMM register as (low, high). TLFS 6.0b names the
/// message type only; the layout is the Hyper-V headers'.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvX64HypercallInterceptMessage {
    pub header: HvX64InterceptMessageHeader,
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub r8: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub xmm: [[u64; 2]; 6],
    /// Bit 0: the call came from an isolated VTL (Hyper-V headers); 0 here.
    pub flags: u32,
    pub reserved: u32,
}

const _: () = assert!(size_of::<HvX64HypercallInterceptMessage>() == 0xc8);

/// `HV_X64_MSR_INTERCEPT_MESSAGE`: `RDMSR`/`WRMSR` (the header's access
/// type says which); `rdx:rax` is the value written (layout from the
/// Hyper-V headers).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvX64MsrInterceptMessage {
    pub header: HvX64InterceptMessageHeader,
    pub msr_number: u32,
    pub reserved: u32,
    pub rdx: u64,
    pub rax: u64,
}

const _: () = assert!(size_of::<HvX64MsrInterceptMessage>() == 0x40);

/// `HV_X64_EXCEPTION_INFO` (TLFS 13.2.5).
#[bitfield(u8)]
#[derive(PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvX64ExceptionInfo {
    /// `error_code` is valid.
    pub error_code_valid: bool,
    /// Raised by an instruction such as INT3 (Hyper-V headers; reserved in TLFS 6.0b).
    pub software_exception: bool,
    #[bits(6)]
    pub reserved: u8,
}

/// `HV_X64_EXCEPTION_INTERCEPT_MESSAGE`: an intercepted exception vector
/// (layout from the Hyper-V headers). It fills the whole 240-byte payload.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvX64ExceptionInterceptMessage {
    pub header: HvX64InterceptMessageHeader,
    pub exception_vector: u16,
    pub exception_info: HvX64ExceptionInfo,
    pub instruction_byte_count: u8,
    pub error_code: u32,
    /// CR2 for #PF, DR6 for #DB.
    pub exception_parameter: u64,
    pub reserved: u64,
    pub instruction_bytes: [u8; 16],
    pub ds_segment: HvX64SegmentRegister,
    pub ss_segment: HvX64SegmentRegister,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rbx: u64,
    pub rsp: u64,
    pub rbp: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

const _: () = assert!(size_of::<HvX64ExceptionInterceptMessage>() == HV_MESSAGE_MAX_PAYLOAD_BYTE_COUNT);

/// `HV_X64_UNRECOVERABLE_EXCEPTION_MESSAGE`: the VP hit an exception it
/// cannot continue from (a triple fault). The header is all there is
/// (layout from the Hyper-V headers).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvX64UnrecoverableExceptionMessage {
    pub header: HvX64InterceptMessageHeader,
}

const _: () = assert!(size_of::<HvX64UnrecoverableExceptionMessage>() == 0x28);

/// `HV_X64_HALT_MESSAGE`: the VP executed `HLT` (type and layout from the
/// Hyper-V headers; TLFS 6.0b has neither).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvX64HaltMessage {
    pub header: HvX64InterceptMessageHeader,
}

const _: () = assert!(size_of::<HvX64HaltMessage>() == 0x28);

// ---------------------------------------------------------------------------
// Error and notification messages
// ---------------------------------------------------------------------------

/// `HV_X64_INVALID_VP_REGISTER_MESSAGE`: a VP could not resume because a
/// register holds an invalid value (TLFS 7.3; layout from the Hyper-V headers).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvInvalidVpRegisterMessage {
    pub vp_index: HvVpIndex,
    pub reserved: u32,
}

const _: () = assert!(size_of::<HvInvalidVpRegisterMessage>() == 8);

open_enum! {
    /// `HV_X64_UNSUPPORTED_FEATURE_CODE` (Hyper-V headers).
    #[derive(IntoBytes, FromBytes, Immutable, KnownLayout)]
    pub struct HvUnsupportedFeatureCode(u32) {
        INTERCEPT = 1,
        TASK_SWITCH_TSS = 2,
    }
}

/// `HV_X64_UNSUPPORTED_FEATURE_MESSAGE` (layout from the Hyper-V headers).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvX64UnsupportedFeatureMessage {
    pub vp_index: HvVpIndex,
    pub feature_code: HvUnsupportedFeatureCode,
    pub feature_parameter: u64,
}

const _: () = assert!(size_of::<HvX64UnsupportedFeatureMessage>() == 16);

/// `HV_X64_APIC_EOI_MESSAGE`: the guest EOI'd a level-triggered interrupt
/// (TLFS 10.3.4; layout from the Hyper-V headers).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvX64ApicEoiMessage {
    pub vp_index: HvVpIndex,
    pub interrupt_vector: u32,
}

const _: () = assert!(size_of::<HvX64ApicEoiMessage>() == 8);

/// `HvMessageTimerExpired`'s payload (TLFS 13.3.1).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvTimerMessagePayload {
    /// The synthetic timer, 0 to 3.
    pub timer_index: u32,
    pub reserved: u32,
    /// When the timer was due, in 100 ns units of the partition's reference time.
    pub expiration_time: u64,
    /// When the message was put in the SIM slot, in the same units.
    pub delivery_time: u64,
}

const _: () = assert!(size_of::<HvTimerMessagePayload>() == 24);

#[cfg(test)]
mod tests;
