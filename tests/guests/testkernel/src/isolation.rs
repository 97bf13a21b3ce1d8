use super::{Detail, Text};
use core::fmt::Write;

/// Guest-physical (and, identity-mapped, virtual) address of the record.
pub const ADDRESS: u64 = 0x30_0000;
pub const RECORD_LEN: usize = 64;
pub const PREFIX: &[u8] = b"TESSERA-ISOLATION:";
/// Longest mark: the record keeps at least one terminating zero.
pub const MAX_MARK: usize = RECORD_LEN - PREFIX.len() - 1;
/// The wait for the other partition: until the TSC advanced this much...
pub const WAIT_TSC: u64 = 1 << 28;
/// ...or this many iterations passed, whichever comes first.
pub const WAIT_ITERATIONS: u64 = 1 << 28;

pub type Record = [u8; RECORD_LEN];

/// The record for `mark`: 1 to [`MAX_MARK`] printable ASCII characters.
pub fn record(mark: &str) -> Result<Record, Detail> {
    if mark.is_empty() || mark.len() > MAX_MARK {
        return Err(detail!("mark is {} bytes, expected 1 to {MAX_MARK}", mark.len()));
    }
    if !mark.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(detail!("mark {mark:?} is not printable ASCII"));
    }
    let mut r = [0; RECORD_LEN];
    r[..PREFIX.len()].copy_from_slice(PREFIX);
    r[PREFIX.len()..][..mark.len()].copy_from_slice(mark.as_bytes());
    Ok(r)
}

/// What a record read back says: its mark if it is a well-formed
/// record, else its bytes escaped (trailing zeros left out).
pub fn describe(r: &Record) -> Text<64> {
    let mut text = Text::new();
    if let Some(rest) = r.strip_prefix(PREFIX) {
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        let (mark, pad) = rest.split_at(end);
        if pad.iter().all(|&b| b == 0)
            && let Ok(mark) = core::str::from_utf8(mark)
        {
            let _ = text.write_str(mark);
            return text;
        }
    }
    let len = r.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let _ = write!(text, "{}", r[..len].escape_ascii());
    text
}
