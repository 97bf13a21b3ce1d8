//! Untyped quotas: who pays for each page the kernel hands out.
//!
//! An untyped pool is a quota of pages, not a range of frames. Every object
//! made from it is charged to it: a memory object its pages, every other
//! object its cost in kernel memory (`abi::cost`), and a sub-pool its whole
//! size. The accounting is exact:
//!
//! - `used` of a pool is the sum of what is charged to it now.
//! - Releasing a pool gives back to its parent only the part nobody uses;
//!   what its objects and sub-pools still hold stays charged to the parent,
//!   and the kernel moves their charges there ([`Quotas::release`] says
//!   where). So deleting a pool never creates quota, and no charge ever
//!   names a pool that is gone (a reused index is never credited for an
//!   object it did not pay for).

/// One pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    /// Pages it was made with.
    pub size: u64,
    /// Pages charged to it now (objects, kernel memory and sub-pools).
    pub used: u64,
    pub parent: Option<u32>,
}

impl Pool {
    pub fn left(&self) -> u64 {
        self.size - self.used
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaError {
    /// No such pool.
    NoPool,
    /// The pool has fewer pages left than asked for.
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

impl<const N: usize> Quotas<N> {
    pub const fn new() -> Self {
        Quotas { pools: [None; N] }
    }

    pub fn get(&self, index: u32) -> Option<&Pool> {
        self.pools.get(index as usize)?.as_ref()
    }

    /// A pool with no parent (the root task's).
    pub fn create_root(&mut self, pages: u64) -> Result<u32, QuotaError> {
        let index = self.pools.iter().position(Option::is_none).ok_or(QuotaError::NoIndex)?;
        self.pools[index] = Some(Pool { size: pages, used: 0, parent: None });
        Ok(index as u32)
    }

    /// A sub-pool of `pages`, charged whole to `parent`.
    pub fn carve(&mut self, parent: u32, pages: u64) -> Result<u32, QuotaError> {
        let index = self.pools.iter().position(Option::is_none).ok_or(QuotaError::NoIndex)?;
        self.charge(Some(parent), pages)?;
        self.pools[index] = Some(Pool { size: pages, used: 0, parent: Some(parent) });
        Ok(index as u32)
    }

    /// Charges `pages` to `pool` (`None`: the kernel's own, unlimited).
    pub fn charge(&mut self, pool: Option<u32>, pages: u64) -> Result<(), QuotaError> {
        let Some(index) = pool else { return Ok(()) };
        let p = self.pools.get_mut(index as usize).and_then(Option::as_mut).ok_or(QuotaError::NoPool)?;
        if pages > p.left() {
            return Err(QuotaError::Exhausted);
        }
        p.used += pages;
        Ok(())
    }

    /// Gives back `pages` charged to `pool` earlier.
    pub fn credit(&mut self, pool: Option<u32>, pages: u64) {
        if let Some(p) = pool.and_then(|i| self.pools.get_mut(i as usize)?.as_mut()) {
            p.used = p.used.saturating_sub(pages);
        }
    }

    /// Ends pool `index`. Its unused pages go back to its parent; what it
    /// still has charged (objects and sub-pools) stays charged to the
    /// parent. Returns `Some(new_owner)` for the kernel to move every
    /// charge naming `index` to (`new_owner` is `None` for a root pool),
    /// or `None` if there was no such pool.
    pub fn release(&mut self, index: u32) -> Option<Option<u32>> {
        let pool = self.pools.get_mut(index as usize)?.take()?;
        self.credit(pool.parent, pool.left());
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

    #[test]
    fn deleting_a_sub_pool_returns_only_what_it_did_not_use() {
        let mut q: Quotas<4> = Quotas::new();
        let root = q.create_root(100).unwrap();
        let child = q.carve(root, 60).unwrap();
        q.charge(Some(child), 50).unwrap();
        assert_eq!(q.release(child), Some(Some(root)));
        // The 50 pages still live are the root's now; 10 came back.
        assert_eq!(q.get(root).unwrap().used, 50);
        // The retype, retype, delete loop cannot grow memory.
        let child = q.carve(root, 50).unwrap();
        assert_eq!(q.carve(root, 1), Err(QuotaError::Exhausted));
        q.charge(Some(child), 50).unwrap();
        q.release(child);
        assert_eq!(q.get(root).unwrap().left(), 0);
    }

    #[test]
    fn grandchildren_move_up_when_their_parent_goes() {
        let mut q: Quotas<4> = Quotas::new();
        let root = q.create_root(10).unwrap();
        let a = q.carve(root, 8).unwrap();
        let b = q.carve(a, 5).unwrap();
        q.release(a);
        assert_eq!(q.get(b).unwrap().parent, Some(root));
        assert_eq!(q.get(root).unwrap().used, 5);
        q.release(b);
        assert_eq!(q.get(root).unwrap().used, 0);
    }

    /// Random carves, charges, credits and releases against a model of
    /// who holds what: a pool's `used` is always exactly what is charged to
    /// it, no pool ever has more used than its size, and the pages charged
    /// anywhere never exceed the root's size.
    #[test]
    fn accounting_is_exact_under_random_operations() {
        const N: usize = 8;
        for seed in 0..300 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut q: Quotas<N> = Quotas::new();
            let root = q.create_root(64).unwrap();
            // Live object charges: (pool, pages).
            let mut objects: std::vec::Vec<(Option<u32>, u64)> = std::vec::Vec::new();
            for _ in 0..300 {
                let pool = rng.u32(0..N as u32);
                match rng.u8(0..4) {
                    0 => {
                        if q.get(pool).is_some() {
                            let _ = q.carve(pool, rng.u64(1..20));
                        }
                    }
                    1 => {
                        let pages = rng.u64(0..10);
                        if q.charge(Some(pool), pages).is_ok() {
                            objects.push((Some(pool), pages));
                        }
                    }
                    2 if !objects.is_empty() => {
                        let (p, pages) = objects.swap_remove(rng.usize(0..objects.len()));
                        q.credit(p, pages);
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
                for i in 0..N as u32 {
                    let Some(p) = q.get(i) else { continue };
                    let objs: u64 = objects.iter().filter(|o| o.0 == Some(i)).map(|o| o.1).sum();
                    let subs: u64 =
                        (0..N as u32).filter_map(|c| q.get(c)).filter(|c| c.parent == Some(i)).map(|c| c.size).sum();
                    assert_eq!(p.used, objs + subs, "seed {seed}: pool {i}");
                    assert!(p.used <= p.size);
                }
                let held: u64 = objects.iter().map(|o| o.1).sum();
                assert!(held <= 64, "seed {seed}: {held} pages live from a 64-page root");
            }
        }
    }
}
