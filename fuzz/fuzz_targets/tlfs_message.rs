//! TLFS message parsing (`tlfs`): any 256 bytes as a SynIC message (and as
//! IPC words), any words as the exit state that follows an intercept, and
//! any control value as a hypercall input.
//!
//! Oracles: a message that parses rebuilds (`from_body`) to the same type
//! and layout bytes and parses to the same body; bytes and words carry the
//! same message; the exit state hands out only words it was given, at the
//! place its mask says.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tlfs::exit_state::{ExitState, TransferredState};
use tlfs::hypercall::HvHypercallInput;
use tlfs::zerocopy::IntoBytes;
use tlfs::{HV_MESSAGE_SIZE, HvMessage};

fuzz_target!(|data: &[u8]| {
    let (message, rest) = data.split_at(data.len().min(HV_MESSAGE_SIZE));
    let Ok(m) = HvMessage::from_bytes(message) else { return };
    let words = m.to_words();
    assert_eq!(HvMessage::from_words(&words).map(|w| w.as_bytes().to_vec()), Ok(message.to_vec()));
    let _ = m.payload_bytes();
    if let Ok(body) = m.parse() {
        assert_eq!(body.message_type(), m.header.message_type);
        let rebuilt = HvMessage::from_body(&body, m.header.origination_id);
        assert_eq!(rebuilt.parse(), Ok(body), "a parsed body does not survive a rebuild");
        assert_eq!(rebuilt.header.message_type, m.header.message_type);
        let len = usize::from(rebuilt.header.payload_size);
        assert!(len <= usize::from(m.header.payload_size), "rebuilt payload longer than the original");
        assert_eq!(rebuilt.payload_bytes(), &m.payload.as_bytes()[..len]);
        let _ = (body.intercept_header(), body.vp_index());
    }

    let words: Vec<u64> = rest.chunks(8).map(|c| c.iter().rev().fold(0u64, |a, &b| a << 8 | u64::from(b))).collect();
    let Some((&mask, words)) = words.split_first() else { return };
    if let Some(state) = ExitState::from_wire(mask) {
        let transferred = TransferredState::new(state, words);
        let mut at = 0;
        for (name, n) in state.registers() {
            let want = match (words.get(at), n) {
                (Some(&low), 1) => Some((low, 0)),
                (Some(&low), _) => words.get(at + 1).map(|&high| (low, high)),
                (None, _) => None,
            };
            assert_eq!(transferred.get(name), want, "{name:?} of {state:?}");
            at += n;
        }
        assert_eq!(at, state.words());
    }
    let control = HvHypercallInput::from_bits(mask);
    assert_eq!(control.has_reserved_bits(), mask & !HvHypercallInput::DEFINED_BITS != 0);
    let _ = control.code().is_extended();
});
