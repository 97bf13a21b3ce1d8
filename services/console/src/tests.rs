use super::*;
use console_api::{Client, dispatch};
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
