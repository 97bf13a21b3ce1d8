use super::*;

/// `INITIATE_CONTACT` as Linux 6.1's `vmbus_negotiate_version` fills it
/// for versions 5.0 and later.
fn contact(version: u32, vcpu: u32, sint: u8) -> [u8; INITIATE_CONTACT_LEN] {
    let mut m = [0; INITIATE_CONTACT_LEN];
    m[..4].copy_from_slice(&msgtype::INITIATE_CONTACT.to_le_bytes());
    m[8..12].copy_from_slice(&version.to_le_bytes());
    m[12..16].copy_from_slice(&vcpu.to_le_bytes());
    m[16] = sint;
    m[24..32].copy_from_slice(&0x1234_5000u64.to_le_bytes());
    m
}

fn header(msgtype: u32) -> [u8; HEADER_LEN] {
    let mut m = [0; HEADER_LEN];
    m[..4].copy_from_slice(&msgtype.to_le_bytes());
    m
}

/// Linux's loop: newest first until one is supported.
fn negotiate(host: &mut Host, offered: &[u32]) -> Option<u32> {
    for &v in offered {
        match host.handle(MESSAGE_TYPE, &contact(v, MESSAGE_VP, MESSAGE_SINT)) {
            Outcome::Contact { accepted: true, reply, .. } => {
                assert_eq!(reply.as_bytes()[8], 1);
                return Some(v);
            }
            Outcome::Contact { accepted: false, reply, .. } => assert_eq!(reply.as_bytes()[8], 0),
            other => panic!("{other:?}"),
        }
    }
    None
}

#[test]
fn the_newest_common_version_is_negotiated() {
    // Linux 6.1's list (vmbus_versions[]), newest first.
    let linux: [u32; 10] = [
        version(5, 3),
        version(5, 2),
        version(5, 1),
        version(5, 0),
        version(4, 1),
        version(4, 0),
        version(3, 0),
        version(2, 4),
        version(1, 1),
        version(0, 13),
    ];
    let mut host = Host::new();
    assert_eq!(negotiate(&mut host, &linux), Some(version(5, 3)));
    assert_eq!(host.version, Some(version(5, 3)));
    // A guest that knows 6.0 first and 5.1 next gets 5.1.
    let mut host = Host::new();
    assert_eq!(negotiate(&mut host, &[version(6, 0), version(5, 1)]), Some(version(5, 1)));
    // Nothing older than 5.0 (connection 1) is offered.
    assert_eq!(negotiate(&mut Host::new(), &linux[4..]), None);
}

#[test]
fn the_version_response_is_laid_out_as_linux_reads_it() {
    let mut host = Host::new();
    let out = host.handle(MESSAGE_TYPE, &contact(version(5, 2), 0, 2));
    let reply = out.reply().unwrap();
    assert_eq!(reply.msgtype(), msgtype::VERSION_RESPONSE);
    // msgtype, padding, version_supported, connection_state, padding, msg_conn_id.
    assert_eq!(reply.as_bytes(), [15, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0]);
    assert_eq!(out, Outcome::Contact { requested: version(5, 2), accepted: true, reply: *reply });
}

#[test]
fn a_contact_for_another_vp_or_sint_is_refused() {
    for (vcpu, sint) in [(1, MESSAGE_SINT), (MESSAGE_VP, 3)] {
        let mut host = Host::new();
        let out = host.handle(MESSAGE_TYPE, &contact(version(5, 3), vcpu, sint));
        assert!(matches!(out, Outcome::Contact { accepted: false, .. }), "{out:?}");
        assert_eq!(host.version, None);
    }
}

#[test]
fn offers_are_all_delivered_at_once_but_only_when_connected() {
    let mut host = Host::new();
    let request = header(msgtype::REQUESTOFFERS);
    assert_eq!(host.handle(MESSAGE_TYPE, &request), Outcome::Ignored(Ignored::NotConnected));
    negotiate(&mut host, &VERSIONS).unwrap();
    let out = host.handle(MESSAGE_TYPE, &request);
    let reply = out.reply().unwrap();
    assert_eq!(reply.as_bytes(), header(msgtype::ALLOFFERS_DELIVERED));
}

#[test]
fn unload_is_answered_and_disconnects() {
    let mut host = Host::new();
    negotiate(&mut host, &VERSIONS).unwrap();
    let out = host.handle(MESSAGE_TYPE, &header(msgtype::UNLOAD));
    assert_eq!(out.reply().unwrap().as_bytes(), header(msgtype::UNLOAD_RESPONSE));
    assert_eq!(host.version, None);
    // Linux may connect again (kexec).
    assert_eq!(negotiate(&mut host, &VERSIONS), Some(VERSIONS[0]));
}

#[test]
fn short_unknown_or_foreign_messages_get_no_answer() {
    let mut host = Host::new();
    assert_eq!(host.handle(2, &header(msgtype::UNLOAD)), Outcome::Ignored(Ignored::MessageType(2)));
    assert_eq!(host.handle(MESSAGE_TYPE, &[14, 0, 0]), Outcome::Ignored(Ignored::Short { msgtype: 0, len: 3 }));
    let short = &contact(version(5, 3), 0, 2)[..INITIATE_CONTACT_LEN - 1];
    assert_eq!(
        host.handle(MESSAGE_TYPE, short),
        Outcome::Ignored(Ignored::Short { msgtype: msgtype::INITIATE_CONTACT, len: INITIATE_CONTACT_LEN - 1 })
    );
    // Channel messages (OPENCHANNEL) and nonsense: no channel exists.
    for t in [5, 25, u32::MAX] {
        assert_eq!(host.handle(MESSAGE_TYPE, &header(t)), Outcome::Ignored(Ignored::Unhandled(t)));
    }
    assert_eq!(host.version, None);
    // Every length of every message type: no panic, an answer only when whole.
    let mut buf = [0u8; 240];
    for t in 0..30u32 {
        buf[..4].copy_from_slice(&t.to_le_bytes());
        for len in 0..=buf.len() {
            let out = Host::new().handle(MESSAGE_TYPE, &buf[..len]);
            if let Some(r) = out.reply() {
                assert!(len >= HEADER_LEN && r.as_bytes().len() <= MAX_REPLY_LEN);
            }
        }
    }
}
