//! Kernel-table entries, by kind: what an untyped pool hands out besides
//! pages. Every kernel object lives in a fixed table shared by all tasks
//! ([`crate::limits::tables`]); an untyped pool carries a quota of entries
//! of each kind, and making an object takes one entry of its kind from the
//! pool it comes from, as its pages do. So a task can empty its own quota,
//! never a table.
//!
//! On the wire (`UNTYPED_RETYPE` of a sub-pool, `CAP_IDENTIFY` of an
//! untyped) an [`Entries`] is [`EntryKind::COUNT`] words, one per kind in
//! [`EntryKind::ALL`] order.

use crate::ObjectType;
use crate::limits::tables;

/// A kind of kernel-table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    Task,
    /// A thread that is not a VP.
    Thread,
    Endpoint,
    Notification,
    SchedContext,
    Partition,
    Vp,
    Memory,
    /// A sub-pool (an untyped made from an untyped).
    Untyped,
}

impl EntryKind {
    pub const COUNT: usize = 9;
    /// Every kind, in wire order.
    pub const ALL: [EntryKind; Self::COUNT] = [
        EntryKind::Task,
        EntryKind::Thread,
        EntryKind::Endpoint,
        EntryKind::Notification,
        EntryKind::SchedContext,
        EntryKind::Partition,
        EntryKind::Vp,
        EntryKind::Memory,
        EntryKind::Untyped,
    ];

    /// The entry an object of type `kind` takes; `None` for types not made
    /// from an untyped pool.
    pub const fn of(kind: ObjectType) -> Option<EntryKind> {
        Some(match kind {
            ObjectType::TASK => EntryKind::Task,
            ObjectType::THREAD => EntryKind::Thread,
            ObjectType::ENDPOINT => EntryKind::Endpoint,
            ObjectType::NOTIFICATION => EntryKind::Notification,
            ObjectType::SCHED_CONTEXT => EntryKind::SchedContext,
            ObjectType::PARTITION => EntryKind::Partition,
            ObjectType::VP => EntryKind::Vp,
            ObjectType::MEMORY => EntryKind::Memory,
            ObjectType::UNTYPED => EntryKind::Untyped,
            _ => return None,
        })
    }

    /// Its name in manifests (`objects = { threads = 2 }`) and messages.
    pub const fn name(self) -> &'static str {
        match self {
            EntryKind::Task => "tasks",
            EntryKind::Thread => "threads",
            EntryKind::Endpoint => "endpoints",
            EntryKind::Notification => "notifications",
            EntryKind::SchedContext => "sched_contexts",
            EntryKind::Partition => "partitions",
            EntryKind::Vp => "vps",
            EntryKind::Memory => "memory_objects",
            EntryKind::Untyped => "untyped_pools",
        }
    }

    /// The kind named `name` (see [`Self::name`]).
    pub fn named(name: &str) -> Option<EntryKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Entries of its kernel table.
    pub const fn table(self) -> usize {
        match self {
            EntryKind::Task => tables::TASKS,
            EntryKind::Thread => tables::THREADS,
            EntryKind::Endpoint => tables::ENDPOINTS,
            EntryKind::Notification => tables::NOTIFICATIONS,
            EntryKind::SchedContext => tables::SCHED_CONTEXTS,
            EntryKind::Partition => tables::PARTITIONS,
            EntryKind::Vp => tables::VPS,
            EntryKind::Memory => tables::MEMORY_OBJECTS,
            EntryKind::Untyped => tables::UNTYPED_POOLS,
        }
    }
}

/// A count of entries of each kind: a pool's quota, or what is used or
/// left of one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Entries(pub [u16; EntryKind::COUNT]);

impl Entries {
    pub const NONE: Entries = Entries([0; EntryKind::COUNT]);

    /// Every kernel table, whole.
    pub const TABLES: Entries = {
        let mut counts = [0; EntryKind::COUNT];
        let mut i = 0;
        while i < EntryKind::COUNT {
            counts[i] = EntryKind::ALL[i].table() as u16;
            i += 1;
        }
        Entries(counts)
    };

    /// One entry of `kind`.
    pub const fn one(kind: EntryKind) -> Entries {
        Entries::NONE.with(kind, 1)
    }

    pub const fn get(&self, kind: EntryKind) -> u16 {
        self.0[kind as usize]
    }

    pub const fn with(mut self, kind: EntryKind, count: u16) -> Entries {
        self.0[kind as usize] = count;
        self
    }

    /// True if every count is at least `other`'s.
    pub fn covers(&self, other: &Entries) -> bool {
        self.0.iter().zip(other.0).all(|(&a, b)| a >= b)
    }

    /// The sum, or `None` if a count overflows.
    pub fn checked_add(&self, other: &Entries) -> Option<Entries> {
        let mut out = *self;
        for (a, b) in out.0.iter_mut().zip(other.0) {
            *a = a.checked_add(b)?;
        }
        Some(out)
    }

    /// The difference, or `None` if `other` does not fit in `self`.
    pub fn checked_sub(&self, other: &Entries) -> Option<Entries> {
        let mut out = *self;
        for (a, b) in out.0.iter_mut().zip(other.0) {
            *a = a.checked_sub(b)?;
        }
        Some(out)
    }

    /// The difference, each count at least 0.
    pub fn saturating_sub(&self, other: &Entries) -> Entries {
        let mut out = *self;
        for (a, b) in out.0.iter_mut().zip(other.0) {
            *a = a.saturating_sub(b);
        }
        out
    }

    /// The kinds with a count, and their counts.
    pub fn iter(&self) -> impl Iterator<Item = (EntryKind, u16)> + '_ {
        EntryKind::ALL.into_iter().map(|k| (k, self.get(k)))
    }

    /// As message words, in [`EntryKind::ALL`] order.
    pub fn to_words(&self) -> [u64; EntryKind::COUNT] {
        self.0.map(u64::from)
    }

    /// From [`EntryKind::COUNT`] message words; `None` if there are not
    /// that many or a count is larger than any table can be.
    pub fn from_words(words: &[u64]) -> Option<Entries> {
        let words: &[u64; EntryKind::COUNT] = words.try_into().ok()?;
        let mut out = Entries::NONE;
        for (count, &word) in out.0.iter_mut().zip(words) {
            *count = u16::try_from(word).ok()?;
        }
        Some(out)
    }
}

// Every table fits a count.
const _: () = {
    let mut i = 0;
    while i < EntryKind::COUNT {
        assert!(EntryKind::ALL[i].table() <= u16::MAX as usize);
        assert!(EntryKind::ALL[i] as usize == i);
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_name_their_tables_and_object_types() {
        assert_eq!(Entries::TABLES.get(EntryKind::Thread), tables::THREADS as u16);
        assert_eq!(Entries::TABLES.get(EntryKind::Memory), 512);
        assert_eq!(EntryKind::of(ObjectType::VP), Some(EntryKind::Vp));
        assert_eq!(EntryKind::of(ObjectType::IO_PORTS), None);
        for kind in EntryKind::ALL {
            assert_eq!(EntryKind::named(kind.name()), Some(kind));
        }
        assert_eq!(EntryKind::named("thread"), None);
    }

    #[test]
    fn entries_add_and_subtract_per_kind() {
        let a = Entries::one(EntryKind::Vp).with(EntryKind::Memory, 3);
        let b = Entries::one(EntryKind::Memory);
        assert_eq!(a.checked_sub(&b), Some(Entries::one(EntryKind::Vp).with(EntryKind::Memory, 2)));
        assert_eq!(b.checked_sub(&a), None);
        assert_eq!(b.saturating_sub(&a), Entries::NONE);
        assert!(a.covers(&b) && !b.covers(&a));
        assert_eq!(a.checked_add(&b).map(|e| e.get(EntryKind::Memory)), Some(4));
        assert_eq!(Entries::NONE.with(EntryKind::Task, u16::MAX).checked_add(&Entries::one(EntryKind::Task)), None);
    }

    #[test]
    fn entries_round_trip_as_words_and_refuse_bad_ones() {
        let e = Entries::TABLES.with(EntryKind::Untyped, 0);
        assert_eq!(Entries::from_words(&e.to_words()), Some(e));
        assert_eq!(Entries::from_words(&[1; EntryKind::COUNT - 1]), None);
        let mut big = [0; EntryKind::COUNT];
        big[2] = 1 << 16;
        assert_eq!(Entries::from_words(&big), None);
    }
}
