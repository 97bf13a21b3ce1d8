//! The `hostile-pools` instance: with an untyped quota of its own
//! (`tests/manifests/hostile-pools.toml`), it makes objects of each kind
//! until the kernel refuses. The refusal must come from its quota (its
//! entries of that kind, or its pages), not from a kernel table every task
//! shares running out: a reserve pool it carved first must still make one
//! of that kind afterwards. Then it holds all the threads and tasks it can
//! make and takes every one that frees up, while the crasher beside it
//! crashes: the supervisor must still restart it each time, as it must
//! restart any service, whatever one task does with its quota.

use crate::objects::{Own, delete, report};
use abi::{Entries, EntryKind};
use tessera_rt::untyped::{self, Left};
use tessera_rt::{CapSlot, ErrorCode, ObjectType, Operation, invoke, log};

const PAGE: u64 = 4096;
/// Objects one loop keeps (its capability space has 128 slots).
const MOST: usize = 100;

/// Each kind, the pages it costs (`abi::cost`) and the pages to retype it with.
const KINDS: [(ObjectType, u64, u64); 9] = [
    (ObjectType::THREAD, abi::cost::THREAD, 0),
    (ObjectType::TASK, abi::cost::TASK, 0),
    (ObjectType::ENDPOINT, abi::cost::ENDPOINT, 0),
    (ObjectType::NOTIFICATION, abi::cost::NOTIFICATION, 0),
    (ObjectType::SCHED_CONTEXT, abi::cost::SCHED_CONTEXT, 0),
    (ObjectType::PARTITION, abi::cost::PARTITION, 0),
    (ObjectType::VP, abi::cost::VP, 0),
    (ObjectType::MEMORY, 1, 1),
    (ObjectType::UNTYPED, 1, 1),
];

/// Makes one object of `kind` from `from` into a fresh slot (a sub-pool
/// with no entries of its own).
fn make(own: &mut Own, from: CapSlot, kind: ObjectType, pages: u64) -> Result<CapSlot, ErrorCode> {
    let slot = own.slot();
    let made = if kind == ObjectType::UNTYPED {
        untyped::retype_pool(from, slot, pages, Entries::NONE)
    } else {
        untyped::retype(from, kind, slot, pages)
    };
    made.map(|()| slot)
}

/// Makes objects of `kind` from the task's untyped until refused, into `made`.
fn until_refused(
    own: &mut Own,
    kind: ObjectType,
    pages: u64,
    made: &mut heapless::Vec<CapSlot, MOST>,
) -> Result<(), ErrorCode> {
    loop {
        let slot = make(own, own.untyped, kind, pages)?;
        if made.push(slot).is_err() {
            delete(slot);
            return Err(ErrorCode::INVALID_STATE);
        }
    }
}

/// A reserve: one entry of every kind, and the pages to make one of each.
fn reserve(own: &mut Own) -> Result<CapSlot, ErrorCode> {
    let pages = KINDS.iter().map(|k| k.1).sum();
    let entries = EntryKind::ALL.into_iter().fold(Entries::NONE, |e, k| e.with(k, 1));
    let slot = own.slot();
    untyped::retype_pool(own.untyped, slot, pages, entries).map(|()| slot)
}

pub fn probe(own: &mut Own) {
    let reserve = match reserve(own) {
        Ok(slot) => slot,
        Err(e) => {
            report("pool: carve a reserve pool", false, format_args!("{e:?} (expected OK)"));
            return;
        }
    };
    // The slots after the reserve's, reused kind after kind.
    let own = &mut Own::new(own.task, own.untyped, CapSlot(reserve.0 + 1));
    for (kind, cost, pages) in KINDS {
        let mut made = heapless::Vec::<CapSlot, MOST>::new();
        let refused = until_refused(own, kind, pages, &mut made).err().unwrap_or(ErrorCode::OK);
        let left = left(own.untyped);
        let entry = EntryKind::of(kind).expect("every kind here is made from an untyped");
        let spent = left.pages < cost || left.entries.is_some_and(|e| e.get(entry) == 0);
        let from_reserve = make(own, reserve, kind, pages);
        report(
            &pool_line(kind),
            refused == ErrorCode::OUT_OF_MEMORY && spent && from_reserve.is_ok(),
            format_args!(
                "{} made, {refused:?}, {} left; reserve: {:?} (expected quota spent, reserve OK)",
                made.len(),
                Shown(left, entry),
                from_reserve.err().unwrap_or(ErrorCode::OK)
            ),
        );
        if let Ok(slot) = from_reserve {
            delete(slot);
        }
        for slot in made.iter().rev() {
            delete(*slot);
        }
        own.reset();
    }
    delete(reserve);
    own.reset();
    hold_and_grab(own);
}

/// What the supervisor needs to start (or restart) a task, besides memory.
const START_NEEDS: [ObjectType; 2] = [ObjectType::THREAD, ObjectType::TASK];
/// Ticks it keeps taking what frees up: past the crasher's last restart
/// (10 + 20 + 40 + 80 + 160 ticks after its first crash).
const GRAB_TICKS: u64 = 400;

/// Holds all the threads and tasks it can make, then takes every one that
/// frees up, tick after tick: when the crasher crashes and the supervisor
/// releases its task and thread, they are gone before its restart, unless
/// the task's own quota stops it.
fn hold_and_grab(own: &mut Own) {
    let Ok(nap) = make(own, own.untyped, ObjectType::NOTIFICATION, 0) else {
        report("pool: make a notification to sleep on", false, format_args!("refused (expected OK)"));
        return;
    };
    let mut held = 0;
    for kind in START_NEEDS {
        let mut made = heapless::Vec::<CapSlot, MOST>::new();
        let _ = until_refused(own, kind, 0, &mut made);
        held += made.len();
    }
    log!("pool: holding {held} threads and tasks; taking any that free up while the supervisor restarts the crasher");
    let (mut taken, mut spare) = (0, own.slot());
    let until = tessera_rt::ticks() + GRAB_TICKS;
    while tessera_rt::ticks() < until {
        for kind in START_NEEDS {
            if untyped::retype(own.untyped, kind, spare, 0).is_ok() {
                taken += 1;
                spare = own.slot();
            }
        }
        let _ = tessera_rt::wait_timeout(nap, 1);
    }
    log!("pool: took {taken} more as they freed up");
}

/// What is left of a pool: its pages (`CAP_IDENTIFY`'s size word) and its
/// entries, if the kernel says.
#[derive(Clone, Copy)]
struct PoolLeft {
    pages: u64,
    entries: Option<Entries>,
}

fn left(pool: CapSlot) -> PoolLeft {
    let reply = invoke(pool, Operation::CAP_IDENTIFY, &[]);
    let words = reply.as_ref().map_or(&[][..], |m| m.words());
    PoolLeft {
        pages: words.get(3).map_or(0, |bytes| bytes / PAGE),
        entries: Left::from_identify(words).map(|l| l.entries),
    }
}

/// What is left of the pool, for the log: pages and the kind's entries
/// (`?` if the kernel does not say).
struct Shown(PoolLeft, EntryKind);

impl core::fmt::Display for Shown {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} pages, ", self.0.pages)?;
        match self.0.entries {
            Some(e) => write!(f, "{} entries", e.get(self.1)),
            None => f.write_str("? entries"),
        }
    }
}

fn pool_line(kind: ObjectType) -> heapless::String<64> {
    let mut s = heapless::String::new();
    let _ = core::fmt::write(&mut s, format_args!("pool: retype {kind:?} until refused"));
    s
}
