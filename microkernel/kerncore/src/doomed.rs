//! Objects whose last capability went, waiting to be destroyed.
//!
//! One bit per object of every pool, so no operation, however many
//! capabilities it ends (a revoke, a task's whole capability space), can
//! overflow it: every object it queues is destroyed. A count keeps the
//! common case, nothing queued, to one comparison.

use crate::cap::ObjRef;
use abi::ObjectType;

/// Kinds of object `K`, each pool at most `64 * W` objects.
pub struct Doomed<const K: usize, const W: usize> {
    sets: [(ObjectType, [u64; W]); K],
    count: usize,
}

impl<const K: usize, const W: usize> Doomed<K, W> {
    /// An empty set for objects of `kinds`.
    pub const fn new(kinds: [ObjectType; K]) -> Self {
        let mut sets = [(ObjectType(0), [0; W]); K];
        let mut i = 0;
        while i < K {
            sets[i].0 = kinds[i];
            i += 1;
        }
        Doomed { sets, count: 0 }
    }

    /// Queues `object` (once, however often it is pushed); false for a kind
    /// or an index the set does not cover.
    pub fn push(&mut self, object: ObjRef) -> bool {
        let i = object.index as usize;
        let Some((_, bits)) = self.sets.iter_mut().find(|(kind, _)| *kind == object.kind) else { return false };
        let Some(word) = bits.get_mut(i / 64) else { return false };
        if *word & (1 << (i % 64)) == 0 {
            *word |= 1 << (i % 64);
            self.count += 1;
        }
        true
    }

    /// Takes a queued object, if any.
    pub fn pop(&mut self) -> Option<ObjRef> {
        if self.count == 0 {
            return None;
        }
        for (kind, bits) in self.sets.iter_mut() {
            if let Some(w) = bits.iter().position(|&b| b != 0) {
                let bit = bits[w].trailing_zeros() as usize;
                bits[w] &= !(1 << bit);
                self.count -= 1;
                return Some(ObjRef { kind: *kind, index: (w * 64 + bit) as u32 });
            }
        }
        None
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_any_number_of_objects_each_once() {
        let mut d: Doomed<2, 8> = Doomed::new([ObjectType::MEMORY, ObjectType::THREAD]);
        for i in 0..512 {
            assert!(d.push(ObjRef { kind: ObjectType::MEMORY, index: i }));
        }
        assert!(d.push(ObjRef { kind: ObjectType::THREAD, index: 3 }));
        assert!(d.push(ObjRef { kind: ObjectType::THREAD, index: 3 }));
        assert!(!d.push(ObjRef { kind: ObjectType::MEMORY, index: 512 }));
        assert!(!d.push(ObjRef { kind: ObjectType::ENDPOINT, index: 0 }));
        let mut popped = std::vec::Vec::new();
        while let Some(o) = d.pop() {
            popped.push(o);
        }
        assert_eq!(popped.len(), 513);
        assert!(d.is_empty());
        assert_eq!(popped[512], ObjRef { kind: ObjectType::THREAD, index: 3 });
    }
}
