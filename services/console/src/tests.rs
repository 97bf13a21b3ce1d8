use super::*;
use console_api::{Bytes, Client, MAX_READ, dispatch};
use std::cell::RefCell;
use tessera_idl::testing::Loopback;
use tessera_idl::{CallError, CapSlot, Message};

/// Records each write the console makes.
#[derive(Default)]
struct Lines(Vec<Vec<u8>>);

impl Output for Lines {
    fn write(&mut self, bytes: &[u8]) {
        self.0.push(bytes.to_vec());
    }
}

impl Lines {
    fn text(&self) -> Vec<String> {
        self.0.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect()
    }
}

fn console() -> Console<Lines> {
    Console::new(Lines::default())
}

#[test]
fn lines_are_prefixed_with_the_registered_name_or_the_badge() {
    let mut c = console();
    c.write(Badge(7), b"hello\n");
    c.set_name(Badge(7), b"vid").unwrap();
    c.write(Badge(7), b"again\n");
    c.write(Badge(0), b"unbadged\n");
    c.write(Badge(u64::MAX), b"big\n");
    assert_eq!(
        c.output().text(),
        ["[badge 7] hello\n", "[vid] again\n", "[badge 0] unbadged\n", "[badge 18446744073709551615] big\n"]
    );
}

#[test]
fn partial_lines_wait_for_their_newline_per_client() {
    let mut c = console();
    c.set_name(Badge(2), b"a").unwrap();
    c.set_name(Badge(3), b"b").unwrap();
    c.write(Badge(2), b"foo");
    c.write(Badge(3), b"bar\nqu");
    c.write(Badge(2), b"baz\n");
    assert_eq!(c.pending(Badge(3)), b"qu");
    c.write(Badge(3), b"ux\n\n");
    assert_eq!(c.output().text(), ["[b] bar\n", "[a] foobaz\n", "[b] quux\n", "[b] \n"]);
    assert_eq!(c.pending(Badge(2)), b"");
    // Each line is one write: lines never interleave.
    assert_eq!(c.output().0.len(), 4);
}

#[test]
fn an_overlong_line_is_printed_in_bounded_pieces() {
    let mut c = console();
    let long: Vec<u8> = (0..MAX_LINE * 2 + 10).map(|i| b'a' + (i % 26) as u8).collect();
    c.write(Badge(4), &long);
    assert_eq!(c.output().0.len(), 2);
    assert_eq!(c.pending(Badge(4)).len(), 10);
    c.write(Badge(4), b"\n");
    let lines = c.output().text();
    assert_eq!(lines.len(), 3);
    let rejoined: String = lines.iter().map(|l| l.strip_prefix("[badge 4] ").unwrap().trim_end_matches('\n')).collect();
    assert_eq!(rejoined.as_bytes(), &long[..]);
    assert!(c.output().0.iter().all(|l| l.len() <= MAX_OUTPUT_LINE));
}

#[test]
fn control_characters_cannot_forge_or_rewrite_lines() {
    let mut c = console();
    c.set_name(Badge(5), b"hostile").unwrap();
    c.write(Badge(5), b"x\r[supervisor] fake\x1b[2K\x07\ttab\x7f\xc3\xa9\r\n");
    assert_eq!(c.output().text(), ["[hostile] x[supervisor] fake?[2K?\ttab?\u{e9}\n"]);
    // A newline always starts a new prefixed line.
    c.write(Badge(5), b"a\n[supervisor] b\n");
    assert_eq!(c.output().text()[2], "[hostile] [supervisor] b\n");
}

#[test]
fn a_full_partial_table_evicts_the_least_recently_used_line() {
    let mut c = console();
    for badge in 1..=MAX_PARTIAL as u64 {
        c.write(Badge(badge), format!("from {badge}").as_bytes());
    }
    c.write(Badge(1), b", touched");
    assert!(c.output().0.is_empty());
    c.write(Badge(100), b"newcomer");
    // Badge 2 was the least recently used.
    assert_eq!(c.output().text(), ["[badge 2] from 2\n"]);
    assert_eq!(c.pending(Badge(2)), b"");
    assert_eq!(c.pending(Badge(1)), b"from 1, touched");
    assert_eq!(c.pending(Badge(100)), b"newcomer");
}

#[test]
fn names_are_validated_and_bounded() {
    let mut c = console();
    assert_eq!(c.set_name(Badge(1), b""), Err(ServiceError::InvalidArgument));
    assert_eq!(c.set_name(Badge(1), &[b'a'; MAX_NAME_LEN + 1]), Err(ServiceError::InvalidArgument));
    assert_eq!(c.set_name(Badge(1), b"two words"), Err(ServiceError::InvalidArgument));
    assert_eq!(c.set_name(Badge(1), b"nl\n"), Err(ServiceError::InvalidArgument));
    assert_eq!(c.set_name(Badge(1), &[b'a'; MAX_NAME_LEN]), Ok(()));
    for badge in 2..=MAX_NAMES as u64 {
        c.set_name(Badge(badge), b"x").unwrap();
    }
    assert_eq!(c.set_name(Badge(99), b"late"), Err(ServiceError::NoResources));
    // Renaming a known client still works when the table is full.
    assert_eq!(c.set_name(Badge(2), b"renamed"), Ok(()));
    assert_eq!(c.name_of(Badge(2)), Some(&b"renamed"[..]));
    assert_eq!(c.name_of(Badge(99)), None);
}

#[test]
fn the_console_s_own_lines_carry_its_name() {
    let mut c = console();
    c.log_own("console: ready, serving console");
    assert_eq!(c.output().text(), ["[console] console: ready, serving console\n"]);
}

#[test]
fn only_the_supervisor_may_name_clients() {
    // The console behind the generated dispatch, called through the generated client.
    let server = RefCell::new(console());
    let transport =
        Loopback::new(Badge(9), |badge, request: &Message| dispatch(&mut *server.borrow_mut(), badge, request));
    let client = Client::new(&transport, CapSlot(3));

    // A task trying to pass itself off as the supervisor is refused.
    assert_eq!(client.name_client(9, b"supervisor"), Ok(Err(ServiceError::PermissionDenied)));
    assert_eq!(client.name_client(1, b"supervisor"), Ok(Err(ServiceError::PermissionDenied)));
    client.write(b"still anonymous\n").unwrap().unwrap();

    transport.set_badge(SUPERVISOR);
    assert_eq!(client.name_client(9, b"hostile"), Ok(Ok(())));
    assert_eq!(client.name_client(9, b"bad name"), Ok(Err(ServiceError::InvalidArgument)));
    client.write(b"supervisor speaking\n").unwrap().unwrap();

    transport.set_badge(Badge(9));
    client.write(b"named now\n").unwrap().unwrap();
    assert_eq!(
        server.borrow().output().text(),
        ["[badge 9] still anonymous\n", "[badge 1] supervisor speaking\n", "[hostile] named now\n"]
    );
}

#[test]
fn malformed_requests_are_answered_and_print_nothing() {
    let mut c = console();
    for (label, words) in [
        (console_api::ops::write, vec![]),
        (console_api::ops::write, vec![100, 0]),
        (console_api::ops::write, vec![1, 0x4141]),
        (console_api::ops::name_client, vec![9]),
        (console_api::ops::write, vec![0, 0]),
        (77, vec![]),
    ] {
        let reply = dispatch(&mut c, Badge(9), &Message::from_words(label, &words).unwrap());
        assert_ne!(reply.label(), tessera_idl::REPLY_OK, "label {label} words {words:?}");
    }
    assert!(c.output().0.is_empty());

    let transport =
        Loopback::new(Badge(9), |_, _: &Message| Message::new(tessera_idl::ProtocolError::UNKNOWN_OPERATION.0));
    assert_eq!(Client::new(&transport, CapSlot(3)).write(b"x"), Err(CallError::UnknownOperation));
}

#[test]
fn the_largest_write_is_accepted_and_split_into_lines() {
    let mut c = console();
    let payload = vec![b'z'; tessera_idl::MAX_BYTES];
    let mut request = Message::new(console_api::ops::write);
    tessera_idl::Encode::encode(&payload[..], &mut tessera_idl::Encoder::new(&mut request)).unwrap();
    let reply = dispatch(&mut c, Badge(3), &request);
    assert_eq!(reply, Message::from_words(tessera_idl::REPLY_OK, &[0]).unwrap());
    assert_eq!(c.output().0.len(), tessera_idl::MAX_BYTES / MAX_LINE);
    assert_eq!(c.pending(Badge(3)).len(), tessera_idl::MAX_BYTES % MAX_LINE);
}

/// Input typed on a script: `poll` hands out the bytes in order.
#[derive(Default)]
struct Typing(std::collections::VecDeque<u8>);

impl Typing {
    fn type_in(&mut self, bytes: &[u8]) {
        self.0.extend(bytes);
    }
}

impl Input for Typing {
    fn poll(&mut self) -> Option<u8> {
        self.0.pop_front()
    }
}

fn console_with_input() -> Console<Lines, Typing> {
    Console::with_input(Lines::default(), Typing::default())
}

/// A request through the generated client stub, served by [`Console::handle`].
fn read_through_client(c: &RefCell<Console<Lines, Typing>>, badge: Badge, max: u32) -> Result<Vec<u8>, ServiceError> {
    let transport = Loopback::new(badge, |badge, request: &Message| {
        let mut message = request.clone();
        c.borrow_mut().handle(badge, &mut message);
        message
    });
    Client::new(&transport, CapSlot(3)).read(max).unwrap().map(|b| b.as_slice().to_vec())
}

#[test]
fn typed_bytes_are_read_in_order_without_waiting() {
    let c = RefCell::new(console_with_input());
    assert_eq!(read_through_client(&c, Badge(4), 16), Ok(vec![]));
    c.borrow_mut().input.type_in(b"ls -l\r");
    assert_eq!(read_through_client(&c, Badge(4), 3), Ok(b"ls ".to_vec()));
    assert_eq!(read_through_client(&c, Badge(4), 0), Ok(vec![]));
    assert_eq!(read_through_client(&c, Badge(4), 100), Ok(b"-l\r".to_vec()));
    assert_eq!(read_through_client(&c, Badge(4), 100), Ok(vec![]));
    // Reading prints nothing.
    assert!(c.borrow().output().0.is_empty());
}

#[test]
fn the_first_reader_owns_the_input() {
    let c = RefCell::new(console_with_input());
    c.borrow_mut().input.type_in(b"secret");
    assert_eq!(read_through_client(&c, Badge(7), 2), Ok(b"se".to_vec()));
    // Nobody else, not even the supervisor, gets any of it.
    assert_eq!(read_through_client(&c, Badge(8), 10), Err(ServiceError::PermissionDenied));
    assert_eq!(read_through_client(&c, SUPERVISOR, 10), Err(ServiceError::PermissionDenied));
    assert_eq!(read_through_client(&c, Badge(7), 10), Ok(b"cret".to_vec()));
}

#[test]
fn bytes_typed_while_serving_other_requests_are_kept_up_to_the_buffer() {
    let mut c = console_with_input();
    let typed: Vec<u8> = (0..INPUT_BUFFER + 100).map(|i| (i % 251) as u8).collect();
    c.input.type_in(&typed[..10]);
    // A write request drains the UART into the buffer.
    let mut request = Message::new(console_api::ops::write);
    tessera_idl::Encode::encode(&b"hi\n"[..], &mut tessera_idl::Encoder::new(&mut request)).unwrap();
    c.handle(Badge(2), &mut request);
    assert_eq!(request.label(), tessera_idl::REPLY_OK);
    assert_eq!(c.typed_len(), 10);
    assert!(c.input.0.is_empty());
    // A full buffer leaves the rest in the UART.
    c.input.type_in(&typed[10..]);
    c.take_input();
    assert_eq!(c.typed_len(), INPUT_BUFFER);
    assert_eq!(c.input.0.len(), 100);
    let mut got = Vec::new();
    loop {
        let chunk = c.read(Badge(5), 100).unwrap();
        if chunk.as_slice().is_empty() {
            break;
        }
        got.extend_from_slice(chunk.as_slice());
    }
    assert_eq!(got, typed);
    assert_eq!(c.output().text(), ["[badge 2] hi\n"]);
}

#[test]
fn the_largest_read_fits_one_reply() {
    let c = RefCell::new(console_with_input());
    let typed = vec![b'k'; MAX_READ + 10];
    c.borrow_mut().input.type_in(&typed);
    // A larger `max` is cut to what a reply carries.
    assert_eq!(read_through_client(&c, Badge(4), u32::MAX).map(|b| b.len()), Ok(MAX_READ));
    assert_eq!(read_through_client(&c, Badge(4), u32::MAX), Ok(vec![b'k'; 10]));
    // One more byte would not fit.
    let mut reply = Message::new(0);
    tessera_idl::set_reply(&mut reply, &Ok::<_, ServiceError>(Bytes::from_slice(&typed[..MAX_READ + 1]).unwrap()));
    assert_eq!(reply.label(), tessera_idl::ProtocolError::REPLY_TOO_LONG.0);
}

#[test]
fn a_console_without_input_reads_nothing() {
    let mut c = console();
    assert_eq!(c.read(Badge(3), 10).map(|b| b.as_slice().len()), Ok(0));
    let reply = dispatch(&mut c, Badge(3), &Message::from_words(console_api::ops::read, &[1 << 32]).unwrap());
    assert_eq!(reply.label(), tessera_idl::ProtocolError::MALFORMED_REQUEST.0);
}

/// A 16550's LSR and RBR as the console sees them; the log records port
/// accesses.
#[derive(Default)]
struct FakeUart {
    rx: std::collections::VecDeque<(u8, u8)>,
    /// LSR reads before the transmitter reports empty.
    busy_polls: u32,
    absent: bool,
    fails: bool,
    log: Vec<String>,
}

impl UartPorts for FakeUart {
    fn inb(&mut self, offset: u16) -> Option<u8> {
        if self.fails {
            return None;
        }
        if self.absent {
            return Some(0xff);
        }
        Some(match offset {
            uart::LSR => {
                let empty = if self.busy_polls > 0 {
                    self.busy_polls -= 1;
                    0
                } else {
                    uart::LSR_TEMT | 0x20
                };
                empty | self.rx.front().map_or(0, |&(_, errors)| uart::LSR_DR | errors)
            }
            uart::RBR => self.rx.pop_front().map_or(0, |(b, _)| b),
            _ => 0,
        })
    }

    fn outb(&mut self, offset: u16, value: u8) -> Option<()> {
        self.log.push(format!("out {offset} {value:#04x} after {} busy", self.busy_polls));
        (!self.fails).then_some(())
    }
}

#[test]
fn the_receiver_reads_rbr_when_data_is_ready_and_drops_bad_bytes() {
    let mut r = Receiver(FakeUart::default());
    assert_eq!(r.poll(), None);
    r.0.rx.extend([(b'a', 0), (0, 1 << 4), (b'?', 1 << 3), (b'b', 0)]);
    assert_eq!(r.poll(), Some(b'a'));
    // A break and a framing error are skipped.
    assert_eq!(r.poll(), Some(b'b'));
    assert_eq!(r.poll(), None);
    // No UART (all ones) or a refused port: no input.
    r.0.absent = true;
    assert_eq!(r.poll(), None);
    r.0.absent = false;
    r.0.fails = true;
    r.0.rx.push_back((b'c', 0));
    assert_eq!(r.poll(), None);
}

#[test]
fn fifos_are_enabled_after_the_transmitter_drains() {
    let mut uart = FakeUart { busy_polls: 3, ..FakeUart::default() };
    assert_eq!(enable_fifos(&mut uart), Some(()));
    // FCR: FIFOs on, the receive FIFO cleared, the transmit FIFO kept.
    assert_eq!(uart.log, ["out 2 0x03 after 0 busy"]);
    // A transmitter that never drains delays it only boundedly.
    let mut stuck = FakeUart { busy_polls: u32::MAX, ..FakeUart::default() };
    assert_eq!(enable_fifos(&mut stuck), Some(()));
    assert_eq!(stuck.log.len(), 1);
    let mut refused = FakeUart { fails: true, ..FakeUart::default() };
    assert_eq!(enable_fifos(&mut refused), None);
}
