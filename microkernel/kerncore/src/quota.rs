//! Untyped quotas: who pays for each page and each table entry the kernel
//! hands out.
//!
//! An untyped pool is a quota of pages and of kernel-table entries of each
//! kind (`abi::Entries`), not a range of frames. Every object made from it
//! is charged to it: a memory object its pages, every other object its cost
//! in kernel memory (`abi::cost`), each one entry of its kind, and a
//! sub-pool its whole size, its whole entry quota and one untyped entry.
//! The accounting is exact:
//!
//! - `used` and `entries_used` of a pool are the sums of what is charged
//!   to it now.
//! - Releasing a pool gives back to its parent only the part nobody uses;
//!   what its objects and sub-pools still hold stays charged to the parent,
//!   and the kernel moves their charges there ([`Quotas::release`] says
//!   where). So deleting a pool never creates quota, and no charge ever
//!   names a pool that is gone (a reused index is never credited for an
//!   object it did not pay for).
//! - The root pool is given what is free of every kernel table, so the
//!   entries charged anywhere never exceed a table: no task can empty one
//!   beyond its own quota.

use abi::{Entries, EntryKind};

/// One pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    /// Pages it was made with.
    pub size: u64,
    /// Pages charged to it now (objects, kernel memory and sub-pools).
    pub used: u64,
    /// Entries it was made with.
    pub entries: Entries,
    /// Entries charged to it now (one per object, and each sub-pool's
    /// quota and its own untyped entry).
    pub entries_used: Entries,
    pub parent: Option<u32>,
}

impl Pool {
    fn new(size: u64, entries: Entries, parent: Option<u32>) -> Pool {
        Pool { size, used: 0, entries, entries_used: Entries::NONE, parent }
    }

    pub fn left(&self) -> u64 {
        self.size - self.used
    }

    pub fn entries_left(&self) -> Entries {
        self.entries.saturating_sub(&self.entries_used)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaError {
    /// No such pool.
    NoPool,
    /// The pool has fewer pages or entries left than asked for.
    Exhausted,
    /// Every pool index is taken.
    NoIndex,
}

/// Every pool, by index.
pub struct Quotas<const N: usize> {
    pools: [Option<Pool>; N],
}

impl<const N: usize> Default for Quotas<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// What a sub-pool takes from its parent besides its pages.
fn carved(entries: &Entries) -> Option<Entries> {
    entries.checked_add(&Entries::one(EntryKind::Untyped))
}

impl<const N: usize> Quotas<N> {
    pub const fn new() -> Self {
        Quotas { pools: [None; N] }
    }

    pub fn get(&self, index: u32) -> Option<&Pool> {
        self.pools.get(index as usize)?.as_ref()
    }

    /// Pools in existence.
    pub fn count(&self) -> usize {
        self.pools.iter().flatten().count()
    }

    /// A pool with no parent (the root task's).
    pub fn create_root(&mut self, pages: u64, entries: Entries) -> Result<u32, QuotaError> {
        let index = self.pools.iter().position(Option::is_none).ok_or(QuotaError::NoIndex)?;
        self.pools[index] = Some(Pool::new(pages, entries, None));
        Ok(index as u32)
    }

    /// A sub-pool of `pages` and `entries`, charged whole to `parent` with
    /// one untyped entry; nothing changes if `parent` cannot pay for it.
    pub fn carve(&mut self, parent: u32, pages: u64, entries: Entries) -> Result<u32, QuotaError> {
        let index = self.pools.iter().position(Option::is_none).ok_or(QuotaError::NoIndex)?;
        self.charge(Some(parent), pages, carved(&entries).ok_or(QuotaError::Exhausted)?)?;
        self.pools[index] = Some(Pool::new(pages, entries, Some(parent)));
        Ok(index as u32)
    }

    /// Charges `pages` and `entries` to `pool` (`None`: the kernel's own,
    /// unlimited); nothing changes unless both fit.
    pub fn charge(&mut self, pool: Option<u32>, pages: u64, entries: Entries) -> Result<(), QuotaError> {
        let Some(index) = pool else { return Ok(()) };
        let p = self.pools.get_mut(index as usize).and_then(Option::as_mut).ok_or(QuotaError::NoPool)?;
        if pages > p.left() || !p.entries_left().covers(&entries) {
            return Err(QuotaError::Exhausted);
        }
        p.used += pages;
        p.entries_used = p.entries_used.checked_add(&entries).ok_or(QuotaError::Exhausted)?;
        Ok(())
    }

    /// Gives back `pages` and `entries` charged to `pool` earlier.
    pub fn credit(&mut self, pool: Option<u32>, pages: u64, entries: Entries) {
        if let Some(p) = pool.and_then(|i| self.pools.get_mut(i as usize)?.as_mut()) {
            p.used = p.used.saturating_sub(pages);
            p.entries_used = p.entries_used.saturating_sub(&entries);
        }
    }

    /// Ends pool `index`. Its unused pages and entries, and its own
    /// untyped entry, go back to its parent; what it still has charged
    /// (objects and sub-pools) stays charged to the parent. Returns
    /// `Some(new_owner)` for the kernel to move every charge naming `index`
    /// to (`new_owner` is `None` for a root pool), or `None` if there was
    /// no such pool.
    pub fn release(&mut self, index: u32) -> Option<Option<u32>> {
        let pool = self.pools.get_mut(index as usize)?.take()?;
        self.credit(pool.parent, pool.left(), pool.entries_left());
        self.credit(pool.parent, 0, Entries::one(EntryKind::Untyped));
        for child in self.pools.iter_mut().flatten() {
            if child.parent == Some(index) {
                child.parent = pool.parent;
            }
        }
        Some(pool.parent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: Entries = Entries::NONE;

    fn threads(n: u16) -> Entries {
        Entries::NONE.with(EntryKind::Thread, n)
    }

    #[test]
    fn deleting_a_sub_pool_returns_only_what_it_did_not_use() {
        let mut q: Quotas<4> = Quotas::new();
        let root = q.create_root(100, NONE).unwrap();
        let child = q.carve(root, 60, NONE).unwrap_err();
        assert_eq!(child, QuotaError::Exhausted, "the root has no untyped entry to give");
        let mut q: Quotas<4> = Quotas::new();
        let root = q.create_root(100, Entries::TABLES).unwrap();
        let child = q.carve(root, 60, NONE).unwrap();
        q.charge(Some(child), 50, NONE).unwrap();
        assert_eq!(q.release(child), Some(Some(root)));
        // The 50 pages still live are the root's now; 10 came back.
        assert_eq!(q.get(root).unwrap().used, 50);
        // The retype, retype, delete loop cannot grow memory.
        let child = q.carve(root, 50, NONE).unwrap();
        assert_eq!(q.carve(root, 1, NONE), Err(QuotaError::Exhausted));
        q.charge(Some(child), 50, NONE).unwrap();
        q.release(child);
        assert_eq!(q.get(root).unwrap().left(), 0);
    }

    #[test]
    fn a_pool_hands_out_only_its_own_entries() {
        let mut q: Quotas<4> = Quotas::new();
        let root = q.create_root(100, threads(3).with(EntryKind::Untyped, 1)).unwrap();
        assert_eq!(q.carve(root, 10, threads(4)), Err(QuotaError::Exhausted), "more than the parent has");
        assert_eq!(q.get(root).unwrap().used, 0, "a refused carve changes nothing");
        let child = q.carve(root, 10, threads(2)).unwrap();
        assert_eq!(q.get(root).unwrap().entries_left(), threads(1));
        assert_eq!(q.carve(root, 1, NONE), Err(QuotaError::Exhausted), "its one untyped entry is spent");
        q.charge(Some(child), 1, threads(1)).unwrap();
        q.charge(Some(child), 1, threads(1)).unwrap();
        assert_eq!(q.charge(Some(child), 1, threads(1)), Err(QuotaError::Exhausted), "pages left, no entry");
        assert_eq!(q.get(child).unwrap().used, 2, "a refused charge changes nothing");
        // Releasing it returns its own entry and none of the two still live.
        q.release(child);
        assert_eq!(q.get(root).unwrap().entries_left(), threads(1).with(EntryKind::Untyped, 1));
        q.credit(Some(root), 2, threads(2));
        assert_eq!(q.get(root).unwrap().entries_left(), threads(3).with(EntryKind::Untyped, 1));
    }

    #[test]
    fn grandchildren_move_up_when_their_parent_goes() {
        let mut q: Quotas<4> = Quotas::new();
        let root = q.create_root(10, Entries::TABLES).unwrap();
        let a = q.carve(root, 8, threads(4).with(EntryKind::Untyped, 1)).unwrap();
        let b = q.carve(a, 5, threads(2)).unwrap();
        q.release(a);
        assert_eq!(q.get(b).unwrap().parent, Some(root));
        assert_eq!(q.get(root).unwrap().used, 5);
        // b's quota and its own entry stay charged to the root.
        assert_eq!(q.get(root).unwrap().entries_used, threads(2).with(EntryKind::Untyped, 1));
        q.release(b);
        assert_eq!(q.get(root).unwrap().used, 0);
        assert_eq!(q.get(root).unwrap().entries_used, NONE);
    }

    /// Random carves, charges, credits and releases against a model of
    /// who holds what: a pool's `used` and `entries_used` are always
    /// exactly what is charged to it, no pool ever has more used than its
    /// size, and the pages and entries held anywhere (objects and pools)
    /// never exceed what the root was given: no table can be emptied
    /// beyond the quotas.
    #[test]
    fn accounting_is_exact_under_random_operations() {
        const N: usize = 8;
        let kinds = EntryKind::ALL;
        for seed in 0..300 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut q: Quotas<N> = Quotas::new();
            let given = Entries(core::array::from_fn(|_| rng.u16(0..12))).with(EntryKind::Untyped, N as u16 - 1);
            let root = q.create_root(64, given).unwrap();
            // Live object charges: (pool, pages, entries).
            let mut objects: std::vec::Vec<(Option<u32>, u64, Entries)> = std::vec::Vec::new();
            for _ in 0..300 {
                let pool = rng.u32(0..N as u32);
                match rng.u8(0..4) {
                    0 => {
                        if q.get(pool).is_some() {
                            let entries = Entries(core::array::from_fn(|_| rng.u16(0..4)));
                            let _ = q.carve(pool, rng.u64(1..20), entries);
                        }
                    }
                    1 => {
                        let pages = rng.u64(0..10);
                        let entries = Entries::one(kinds[rng.usize(0..kinds.len() - 1)]);
                        if q.charge(Some(pool), pages, entries).is_ok() {
                            objects.push((Some(pool), pages, entries));
                        }
                    }
                    2 if !objects.is_empty() => {
                        let (p, pages, entries) = objects.swap_remove(rng.usize(0..objects.len()));
                        q.credit(p, pages, entries);
                    }
                    _ if pool != root => {
                        if let Some(owner) = q.release(pool) {
                            for o in objects.iter_mut().filter(|o| o.0 == Some(pool)) {
                                o.0 = owner;
                            }
                        }
                    }
                    _ => {}
                }
                let sum = |it: &mut dyn Iterator<Item = Entries>| it.fold(NONE, |a, e| a.checked_add(&e).unwrap());
                for i in 0..N as u32 {
                    let Some(p) = q.get(i) else { continue };
                    let subs = (0..N as u32).filter_map(|c| q.get(c)).filter(|c| c.parent == Some(i));
                    let objs = objects.iter().filter(|o| o.0 == Some(i));
                    let pages: u64 = objs.clone().map(|o| o.1).sum::<u64>() + subs.clone().map(|c| c.size).sum::<u64>();
                    assert_eq!(p.used, pages, "seed {seed}: pool {i}");
                    let entries = sum(&mut objs.map(|o| o.2).chain(subs.map(|c| carved(&c.entries).unwrap())));
                    assert_eq!(p.entries_used, entries, "seed {seed}: pool {i}");
                    assert!(p.used <= p.size && p.entries.covers(&p.entries_used));
                }
                let held: u64 = objects.iter().map(|o| o.1).sum();
                assert!(held <= 64, "seed {seed}: {held} pages live from a 64-page root");
                let pools = (0..N as u32).filter(|&i| i != root && q.get(i).is_some()).count() as u16;
                let taken = sum(&mut objects.iter().map(|o| o.2)).with(EntryKind::Untyped, pools);
                assert!(given.covers(&taken), "seed {seed}: {taken:?} entries taken from a root given {given:?}");
            }
        }
    }
}
