use crate::testing::{Failing, Loopback};
use crate::*;
use abi::REGISTER_WORDS;
use std::cell::RefCell;
use std::collections::VecDeque;

mod demo {
    use crate::{Bytes, ServiceError, interface};

    code_enum! {
        pub enum Color {
            Red = 1,
            Green = 2,
        }
    }

    interface! {
        /// An interface exercising every supported type.
        pub interface Demo {
            fn add(a: u64, b: u64) -> u64 = 1;
            fn narrow(a: u8, b: u16, c: u32, flag: bool) -> (u8, u16, u32, bool) = 2;
            fn echo(bytes: &[u8]) -> Bytes = 3;
            /// Only badge 1 may call it.
            fn tagged(tag: u64, bytes: &[u8]) -> Result<u64, ServiceError> = 4;
            fn nothing() = 5;
            fn maybe(x: Option<u32>) -> Option<u32> = 0x40;
            fn checked(x: u64) -> Result<(u64, bool), ServiceError> = 0xfffe_ffff;
            fn paint(color: Color) -> Result<Color, ServiceError> = 6;
        }
    }
}

use demo::{Client, Color, Server, dispatch, ops};

#[derive(Default)]
struct DemoServer {
    calls: usize,
    last_caller: Option<Badge>,
    last_bytes: Vec<u8>,
}

impl Server for DemoServer {
    fn add(&mut self, caller: Badge, a: u64, b: u64) -> u64 {
        self.calls += 1;
        self.last_caller = Some(caller);
        a.wrapping_add(b)
    }

    fn narrow(&mut self, _: Badge, a: u8, b: u16, c: u32, flag: bool) -> (u8, u16, u32, bool) {
        self.calls += 1;
        (a, b, c, !flag)
    }

    fn echo(&mut self, _: Badge, bytes: &[u8]) -> Bytes {
        self.calls += 1;
        self.last_bytes = bytes.to_vec();
        Bytes::from_slice(bytes).unwrap()
    }

    fn tagged(&mut self, caller: Badge, tag: u64, bytes: &[u8]) -> Result<u64, ServiceError> {
        self.calls += 1;
        if caller != Badge(1) {
            return Err(ServiceError::PermissionDenied);
        }
        Ok(tag + bytes.len() as u64)
    }

    fn nothing(&mut self, _: Badge) {
        self.calls += 1;
    }

    fn maybe(&mut self, _: Badge, x: Option<u32>) -> Option<u32> {
        self.calls += 1;
        x.map(|x| x + 1)
    }

    fn checked(&mut self, _: Badge, x: u64) -> Result<(u64, bool), ServiceError> {
        self.calls += 1;
        if x == 0 { Err(ServiceError::InvalidArgument) } else { Ok((x, x.is_multiple_of(2))) }
    }

    fn paint(&mut self, _: Badge, color: Color) -> Result<Color, ServiceError> {
        self.calls += 1;
        match color {
            Color::Red => Ok(Color::Green),
            Color::Green => Err(ServiceError::NotSupported),
        }
    }
}

fn with_client<R>(badge: Badge, f: impl FnOnce(&Client<&dyn Transport>, &RefCell<DemoServer>) -> R) -> R {
    let server = RefCell::new(DemoServer::default());
    let transport =
        Loopback::new(badge, |caller, request: &Message| dispatch(&mut *server.borrow_mut(), caller, request));
    let client = Client::new(&transport as &dyn Transport, CapSlot(7));
    f(&client, &server)
}

fn raw(label: u32, words: &[u64]) -> (Message, usize) {
    let mut server = DemoServer::default();
    let reply = dispatch(&mut server, Badge(1), &Message::from_words(label, words).unwrap());
    (reply, server.calls)
}

fn malformed(error: DecodeError) -> Message {
    Message::from_words(ProtocolError::MALFORMED_REQUEST.0, &[error.code()]).unwrap()
}

#[test]
fn scalars_round_trip_and_the_caller_badge_reaches_the_server() {
    with_client(Badge(42), |client, server| {
        assert_eq!(client.add(2, 40), Ok(42));
        assert_eq!(client.add(u64::MAX, 1), Ok(0));
        assert_eq!(server.borrow().last_caller, Some(Badge(42)));
        assert_eq!(client.narrow(0xff, 0xffff, u32::MAX, true), Ok((0xff, 0xffff, u32::MAX, false)));
        assert_eq!(client.narrow(0, 0, 0, false), Ok((0, 0, 0, true)));
        assert_eq!(client.nothing(), Ok(()));
        assert_eq!(client.maybe(None), Ok(None));
        assert_eq!(client.maybe(Some(6)), Ok(Some(7)));
        assert_eq!(client.checked(4), Ok(Ok((4, true))));
        assert_eq!(client.checked(0), Ok(Err(ServiceError::InvalidArgument)));
        assert_eq!(client.paint(Color::Red), Ok(Ok(Color::Green)));
        assert_eq!(client.paint(Color::Green), Ok(Err(ServiceError::NotSupported)));
        assert_eq!(client.endpoint(), CapSlot(7));
        assert_eq!(server.borrow().calls, 11);
    });
}

#[test]
fn byte_payloads_round_trip_at_every_length() {
    with_client(Badge(1), |client, server| {
        for len in (0..=24).chain([MAX_BYTES - 9, MAX_BYTES - 8, MAX_BYTES - 1, MAX_BYTES]) {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 1) as u8).collect();
            let echoed = client.echo(&data).unwrap();
            assert_eq!(echoed.as_slice(), &data[..], "length {len}");
            assert_eq!(server.borrow().last_bytes, data);
        }
        let too_long = vec![0xaa; MAX_BYTES + 1];
        assert_eq!(client.echo(&too_long).unwrap_err(), CallError::RequestTooLong);
        // A byte payload after another argument has one word less.
        assert_eq!(client.tagged(1, &too_long[..MAX_BYTES - 8]), Ok(Ok(1 + MAX_BYTES as u64 - 8)));
        assert_eq!(client.tagged(1, &too_long[..MAX_BYTES - 7]), Err(CallError::RequestTooLong));
    });
}

#[test]
fn payload_encoding_is_length_then_little_endian_words() {
    let mut message = Message::new(3);
    b"hello, world".encode(&mut Encoder::new(&mut message)).unwrap();
    assert_eq!(message.words(), &[12, u64::from_le_bytes(*b"hello, w"), u64::from_le_bytes(*b"orld\0\0\0\0")]);
}

#[test]
fn server_errors_come_back_as_typed_errors() {
    with_client(Badge(2), |client, _| {
        assert_eq!(client.tagged(5, b"abc"), Ok(Err(ServiceError::PermissionDenied)));
    });
    with_client(Badge(1), |client, _| {
        assert_eq!(client.tagged(5, b"abc"), Ok(Ok(8)));
    });
}

#[test]
fn kernel_failures_are_reported_as_such() {
    let client = Client::new(Failing(ErrorCode::PEER_GONE), CapSlot(3));
    assert_eq!(client.add(1, 2), Err(CallError::Kernel(ErrorCode::PEER_GONE)));
}

#[test]
fn unknown_operations_are_rejected_without_calling_the_server() {
    for label in [0, 7, 0x41, 0xffff_0001, u32::MAX] {
        let (reply, calls) = raw(label, &[1, 2]);
        assert_eq!(reply, Message::new(ProtocolError::UNKNOWN_OPERATION.0), "label {label:#x}");
        assert_eq!(calls, 0);
    }
}

#[test]
fn malformed_requests_get_an_error_reply_and_never_reach_the_server() {
    let cases: &[(u32, &[u64], DecodeError)] = &[
        // Too short.
        (ops::add, &[], DecodeError::Truncated),
        (ops::add, &[1], DecodeError::Truncated),
        (ops::narrow, &[1, 2, 3], DecodeError::Truncated),
        (ops::echo, &[], DecodeError::Truncated),
        (ops::tagged, &[9], DecodeError::Truncated),
        (ops::maybe, &[1], DecodeError::Truncated),
        // Too long.
        (ops::add, &[1, 2, 3], DecodeError::TrailingWords),
        (ops::nothing, &[0], DecodeError::TrailingWords),
        (ops::echo, &[0, 0], DecodeError::TrailingWords),
        (ops::echo, &[3, 0x030201, 0], DecodeError::TrailingWords),
        // Values out of range.
        (ops::narrow, &[0x100, 0, 0, 0], DecodeError::BadValue),
        (ops::narrow, &[0, 0x1_0000, 0, 0], DecodeError::BadValue),
        (ops::narrow, &[0, 0, 0x1_0000_0000, 0], DecodeError::BadValue),
        (ops::narrow, &[0, 0, 0, 2], DecodeError::BadValue),
        (ops::maybe, &[2, 0], DecodeError::BadValue),
        (ops::maybe, &[1, 1 << 32], DecodeError::BadValue),
        (ops::paint, &[0], DecodeError::BadValue),
        (ops::paint, &[3], DecodeError::BadValue),
        // Byte payloads whose length lies.
        (ops::echo, &[9, 1], DecodeError::BadLength),
        (ops::echo, &[1], DecodeError::BadLength),
        (ops::echo, &[MAX_BYTES as u64 + 1], DecodeError::BadLength),
        (ops::echo, &[u64::MAX, 0, 0], DecodeError::BadLength),
        // Non-zero padding after the last byte.
        (ops::echo, &[1, 0x0100], DecodeError::BadValue),
        (ops::echo, &[7, 0xff00_0000_0000_0000], DecodeError::BadValue),
    ];
    for &(label, words, error) in cases {
        let (reply, calls) = raw(label, words);
        assert_eq!(reply, malformed(error), "label {label}, words {words:x?}");
        assert_eq!(calls, 0, "label {label}, words {words:x?}");
    }
}

#[test]
fn a_full_length_byte_payload_is_accepted() {
    let mut words = vec![MAX_BYTES as u64];
    words.extend(std::iter::repeat_n(u64::MAX, MAX_BYTES / 8));
    assert_eq!(words.len(), MAX_MESSAGE_WORDS);
    let (reply, calls) = raw(ops::echo, &words);
    assert_eq!(calls, 1);
    assert_eq!(reply.label(), REPLY_OK);
    assert_eq!(reply.words(), &words[..]);
}

#[test]
fn clients_reject_replies_that_do_not_decode() {
    let reply_with = |reply: Message| Loopback::new(Badge(1), move |_, _: &Message| reply.clone());
    let check = |reply: Message, expected: CallError| {
        let transport = reply_with(reply);
        assert_eq!(Client::new(&transport, CapSlot(1)).add(1, 2), Err(expected));
    };
    check(Message::new(REPLY_OK), CallError::BadReply(DecodeError::Truncated));
    check(Message::from_words(REPLY_OK, &[1, 2]).unwrap(), CallError::BadReply(DecodeError::TrailingWords));
    check(Message::new(ProtocolError::UNKNOWN_OPERATION.0), CallError::UnknownOperation);
    check(malformed(DecodeError::BadLength), CallError::Malformed(DecodeError::BadLength));
    check(Message::new(ProtocolError::MALFORMED_REQUEST.0), CallError::Malformed(DecodeError::BadValue));
    check(Message::new(ProtocolError::REPLY_TOO_LONG.0), CallError::Rejected(3));
    check(Message::new(77), CallError::Rejected(77));

    // A Result reply with an unknown error code or a bad discriminant.
    let transport = reply_with(Message::from_words(REPLY_OK, &[1, 99]).unwrap());
    assert_eq!(Client::new(&transport, CapSlot(1)).tagged(1, b""), Err(CallError::BadReply(DecodeError::BadValue)));
    let transport = reply_with(Message::from_words(REPLY_OK, &[2, 0]).unwrap());
    assert_eq!(Client::new(&transport, CapSlot(1)).tagged(1, b""), Err(CallError::BadReply(DecodeError::BadValue)));
}

#[test]
fn replies_that_do_not_fit_are_reported_not_truncated() {
    let big = (Bytes::from_slice(&[1; MAX_BYTES]).unwrap(), 5u64);
    assert_eq!(reply_with(&big), Message::new(ProtocolError::REPLY_TOO_LONG.0));
    let fits = (Bytes::from_slice(&[1; MAX_BYTES - 8]).unwrap(), 5u64);
    assert_eq!(reply_with(&fits).len(), MAX_MESSAGE_WORDS);
}

#[test]
fn random_requests_never_panic_the_dispatcher() {
    let mut rng = fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d);
    let mut server = DemoServer::default();
    for _ in 0..20_000 {
        let label = rng.u32(..8);
        let label = if label == 7 { ops::checked } else { label };
        let len = rng.usize(..=MAX_MESSAGE_WORDS);
        let words: Vec<u64> = (0..len)
            .map(|_| match rng.u32(..4) {
                0 => 0,
                1 => 1,
                2 => rng.u64(..600),
                _ => rng.u64(..),
            })
            .collect();
        let reply = dispatch(&mut server, Badge(rng.u64(..)), &Message::from_words(label, &words).unwrap());
        assert!(reply.label() <= ProtocolError::REPLY_TOO_LONG.0);
    }
}

#[test]
fn messages_are_bounded_and_keep_their_tail_clear() {
    assert!(Message::from_words(1, &[0; MAX_MESSAGE_WORDS]).is_some());
    assert!(Message::from_words(1, &[0; MAX_MESSAGE_WORDS + 1]).is_none());
    let mut full = Message::from_words(1, &[5; MAX_MESSAGE_WORDS]).unwrap();
    assert_eq!(full.push(1), Err(MessageFull));
    full.set_len(2).unwrap();
    full.set_len(4).unwrap();
    assert_eq!(full.words(), &[5, 5, 0, 0]);
    assert_eq!(full.set_len(MAX_MESSAGE_WORDS + 1), Err(MessageFull));
    assert_eq!(full.info().label(), 1);
    assert_eq!(full.info().length(), 4);
    assert_eq!(full.info().caps(), 0);
    full.clear(9);
    assert_eq!((full.label(), full.len()), (9, 0));
    full.set_len(2).unwrap();
    assert_eq!(full.words(), &[0, 0], "cleared words read back as zero");
}

#[test]
fn register_words_and_received_messages_keep_the_tail_clear() {
    let registers = [7, 8, 9, 10];
    for old in [0, 2, REGISTER_WORDS, REGISTER_WORDS + 3, MAX_MESSAGE_WORDS] {
        for len in [0, 1, REGISTER_WORDS, REGISTER_WORDS + 2, MAX_MESSAGE_WORDS] {
            let mut message = Message::from_words(1, &[5; MAX_MESSAGE_WORDS][..old]).unwrap();
            message.set_received(3, len, registers).unwrap();
            assert_eq!((message.label(), message.len()), (3, len));
            let expected: Vec<u64> =
                (0..len).map(|i| if i < REGISTER_WORDS { registers[i] } else { 5 * u64::from(i < old) }).collect();
            assert_eq!(message.words(), &expected[..], "from {old} words to {len}");
            message.set_len(MAX_MESSAGE_WORDS).unwrap();
            assert!(message.words()[len..].iter().all(|&w| w == 0), "tail past {len} clear");
            let head: Vec<u64> = (0..REGISTER_WORDS).map(|i| if i < len { message.words()[i] } else { 0 }).collect();
            message.set_len(len).unwrap();
            assert_eq!(message.register_words()[..], head[..]);
            message.clear(4);
            message.set_len(MAX_MESSAGE_WORDS).unwrap();
            assert!(message.words().iter().all(|&w| w == 0), "cleared from {len} words");
        }
    }
    let mut message = Message::new(1);
    assert_eq!(message.set_received(1, MAX_MESSAGE_WORDS + 1, registers), Err(MessageFull));
}

#[test]
fn code_enums_round_trip_and_refuse_unknown_codes() {
    for &e in ServiceError::ALL {
        assert_eq!(ServiceError::try_from(u64::from(e)), Ok(e));
    }
    assert_eq!(ServiceError::try_from(0), Err(0));
    assert_eq!(ServiceError::try_from(7), Err(7));
    assert_eq!(ServiceError::PermissionDenied.name(), "PermissionDenied");
    for code in 1..=4 {
        assert_eq!(DecodeError::from_code(code).map(DecodeError::code), Some(code));
    }
    assert_eq!(DecodeError::from_code(0), None);
}

/// A scripted kernel: queued receive results, and a log of the replies.
struct Script {
    incoming: RefCell<VecDeque<Result<(Badge, Message), ErrorCode>>>,
    reply_fails: RefCell<VecDeque<bool>>,
    replies: RefCell<Vec<Message>>,
    recvs: RefCell<usize>,
}

impl Script {
    fn next(&self, message: &mut Message) -> Result<Badge, ErrorCode> {
        let (badge, request) = self.incoming.borrow_mut().pop_front().unwrap_or(Err(ErrorCode::INVALID_CAPABILITY))?;
        *message = request;
        Ok(badge)
    }
}

impl Receiver for Script {
    fn recv(&self, _: CapSlot, message: &mut Message) -> Result<Badge, ErrorCode> {
        *self.recvs.borrow_mut() += 1;
        self.next(message)
    }

    fn reply_recv(&self, _: CapSlot, message: &mut Message) -> Result<Badge, ErrorCode> {
        if self.reply_fails.borrow_mut().pop_front().unwrap_or(false) {
            return Err(ErrorCode::PEER_GONE);
        }
        self.replies.borrow_mut().push(message.clone());
        self.next(message)
    }
}

#[test]
fn the_server_loop_answers_each_request_and_survives_dead_callers() {
    let add = |a, b| Message::from_words(ops::add, &[a, b]).unwrap();
    let script = Script {
        incoming: RefCell::new(VecDeque::from([
            Ok((Badge(3), add(1, 2))),
            Ok((Badge(4), add(3, 4))),
            Ok((Badge(5), Message::new(999))),
            Err(ErrorCode::INVALID_CAPABILITY),
        ])),
        // The second caller dies before its reply.
        reply_fails: RefCell::new(VecDeque::from([false, true, false])),
        replies: RefCell::new(Vec::new()),
        recvs: RefCell::new(0),
    };
    let mut server = DemoServer::default();
    let error = serve(&script, CapSlot(1), |badge, message| demo::dispatch_in_place(&mut server, badge, message));
    assert_eq!(error, ErrorCode::INVALID_CAPABILITY);
    assert_eq!(server.calls, 2);
    let replies = script.replies.borrow();
    assert_eq!(replies[0], Message::from_words(REPLY_OK, &[3]).unwrap());
    assert_eq!(replies[1], Message::new(ProtocolError::UNKNOWN_OPERATION.0));
    assert_eq!(replies.len(), 2);
    // The initial receive, one after the failed reply, and one after the
    // final reply-receive failed (which is how the loop notices the
    // endpoint itself is gone).
    assert_eq!(*script.recvs.borrow(), 3);
}

/// A transport whose server dies with the first `deaths` calls in hand,
/// then echoes the request's first word plus one.
struct Dying {
    deaths: core::cell::Cell<u32>,
    calls: core::cell::Cell<u32>,
}

impl Transport for Dying {
    fn call(&self, _: CapSlot, message: &mut Message) -> Result<(), ErrorCode> {
        self.calls.set(self.calls.get() + 1);
        let request = message.words()[0];
        // A dead server leaves the buffer as it pleases.
        message.clear(0x77);
        if self.deaths.get() > 0 {
            self.deaths.set(self.deaths.get() - 1);
            return Err(ErrorCode::PEER_GONE);
        }
        message.push(request + 1).unwrap();
        Ok(())
    }
}

#[test]
fn a_call_the_server_died_with_is_made_again_with_the_same_request() {
    let dying = |deaths: u32| Dying { deaths: deaths.into(), calls: 0.into() };
    let mut message = Message::new(5);
    message.push(41).unwrap();
    let t = Retrying(dying(RETRIES));
    assert_eq!(t.call(CapSlot(1), &mut message), Ok(()));
    assert_eq!((message.words(), t.0.calls.get()), (&[42][..], RETRIES + 1));
    // It gives up after RETRIES more; other errors are not repeated.
    let mut message = Message::new(5);
    message.push(41).unwrap();
    let t = Retrying(dying(RETRIES + 1));
    assert_eq!(t.call(CapSlot(1), &mut message), Err(ErrorCode::PEER_GONE));
    assert_eq!(t.0.calls.get(), RETRIES + 1);
}

#[test]
fn words_past_the_length_stay_zero_through_set_len() {
    let mut grown = Message::from_words(3, &[1, 2, 3, 4, 5]).unwrap();
    grown.set_len(2).unwrap();
    assert_eq!(grown, Message::from_words(3, &[1, 2]).unwrap(), "a shrink clears what it drops");
    grown.set_len(4).unwrap();
    assert_eq!(grown.words(), &[1, 2, 0, 0], "a grow after a shrink shows zeros");
    grown.clear(3);
    grown.set_len(abi::MAX_MESSAGE_WORDS).unwrap();
    assert!(grown.words().iter().all(|&w| w == 0));
}
