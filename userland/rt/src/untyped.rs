//! Untyped pools: typed `UNTYPED_RETYPE` and what `CAP_IDENTIFY` says is
//! left of a pool, so no task assembles their words itself.

use abi::invoke::{IDENTIFY_UNTYPED_WORDS, RETYPE_POOL_WORDS};
use abi::{CapSlot, Entries, ObjectType};

/// The words of an `UNTYPED_RETYPE` that makes an object of `kind` (not a
/// sub-pool) in slot `dest`, of `pages` pages if it is a memory object.
pub fn object_request(kind: ObjectType, dest: CapSlot, pages: u64) -> [u64; 3] {
    [u64::from(kind.0), u64::from(dest.0), pages]
}

/// The words of an `UNTYPED_RETYPE` that makes a sub-pool of `pages` pages
/// and `entries` in slot `dest`.
pub fn pool_request(dest: CapSlot, pages: u64, entries: Entries) -> [u64; RETYPE_POOL_WORDS] {
    let mut words = [0; RETYPE_POOL_WORDS];
    words[..3].copy_from_slice(&object_request(ObjectType::UNTYPED, dest, pages));
    words[3..].copy_from_slice(&entries.to_words());
    words
}

/// What is left of a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Left {
    pub bytes: u64,
    pub entries: Entries,
    /// Bytes free in the kernel's frame pool, machine-wide: what the
    /// quota can be backed with at the moment.
    pub machine_free: u64,
}

impl Left {
    /// From the words of `CAP_IDENTIFY`'s reply; `None` unless they are an
    /// untyped's.
    pub fn from_identify(words: &[u64]) -> Option<Left> {
        if words.len() != IDENTIFY_UNTYPED_WORDS || words[0] != u64::from(ObjectType::UNTYPED.0) {
            return None;
        }
        let (entries, free) = words[4..].split_at(abi::EntryKind::COUNT);
        Some(Left { bytes: words[3], entries: Entries::from_words(entries)?, machine_free: free[0] })
    }
}

#[cfg(target_os = "none")]
mod current {
    use super::*;
    use crate::{ErrorCode, Operation, invoke};

    /// Makes an object of `kind` (not a sub-pool: [`retype_pool`]) in
    /// slot `dest`, of `pages` pages if it is a memory object.
    pub fn retype(untyped: CapSlot, kind: ObjectType, dest: CapSlot, pages: u64) -> Result<(), ErrorCode> {
        invoke(untyped, Operation::UNTYPED_RETYPE, &object_request(kind, dest, pages)).map(drop)
    }

    /// Makes a sub-pool of `pages` pages and `entries` in slot `dest`.
    pub fn retype_pool(untyped: CapSlot, dest: CapSlot, pages: u64, entries: Entries) -> Result<(), ErrorCode> {
        invoke(untyped, Operation::UNTYPED_RETYPE, &pool_request(dest, pages, entries)).map(drop)
    }

    /// What is left of the pool; INVALID_STATE if the kernel's answer is
    /// not an untyped's.
    pub fn left(untyped: CapSlot) -> Result<Left, ErrorCode> {
        let reply = invoke(untyped, Operation::CAP_IDENTIFY, &[])?;
        Left::from_identify(reply.words()).ok_or(ErrorCode::INVALID_STATE)
    }
}

#[cfg(target_os = "none")]
pub use current::*;

#[cfg(test)]
mod tests {
    use super::*;
    use abi::EntryKind;

    #[test]
    fn requests_carry_the_type_slot_pages_and_entry_quota() {
        assert_eq!(object_request(ObjectType::MEMORY, CapSlot(9), 4), [6, 9, 4]);
        let entries = Entries::one(EntryKind::Thread).with(EntryKind::Memory, 3);
        let words = pool_request(CapSlot(7), 16, entries);
        assert_eq!(words[..3], [u64::from(ObjectType::UNTYPED.0), 7, 16]);
        assert_eq!(Entries::from_words(&words[3..]), Some(entries));
    }

    #[test]
    fn what_is_left_comes_only_from_an_untyped_reply() {
        let entries = Entries::one(EntryKind::Vp);
        let mut words = [0u64; IDENTIFY_UNTYPED_WORDS];
        words[0] = u64::from(ObjectType::UNTYPED.0);
        words[3] = 8192;
        words[4..IDENTIFY_UNTYPED_WORDS - 1].copy_from_slice(&entries.to_words());
        words[IDENTIFY_UNTYPED_WORDS - 1] = 1 << 30;
        assert_eq!(Left::from_identify(&words), Some(Left { bytes: 8192, entries, machine_free: 1 << 30 }));
        assert_eq!(Left::from_identify(&words[..4]), None);
        words[0] = u64::from(ObjectType::MEMORY.0);
        assert_eq!(Left::from_identify(&words), None);
    }
}
