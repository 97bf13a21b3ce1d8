//! The capability table and its derivation tree (after seL4's CDT).
//!
//! One global table of slots; each task's capability space ([`CSpace`]) is a
//! contiguous range of it whose slot 0 is never filled. Every use of a
//! capability goes through [`CapTable::lookup`].
//!
//! Each slot carries two intrusive structures, so no operation allocates:
//!
//! - **Derivation tree.** A node has `first_child` and sits in a circular
//!   ring of siblings (`prev`/`next`). Only the first node of a ring
//!   (`is_first`) keeps a valid `parent`; the others' copy is stale and never
//!   read. That makes delete (children re-linked to the grandparent) and move
//!   O(1) however many children a node has. Revocation walks the subtree in
//!   post-order without a stack, so chain depth is unbounded.
//! - **Object ring.** All capabilities naming the same object are linked in
//!   a circle (`obj_prev`/`obj_next`): this is the table's per-object
//!   reference count. A removal reports [`Removed::last`] when the ring
//!   empties, and the kernel then destroys the object.

use abi::{Badge, CapSlot, ErrorCode, ObjectType, Rights};

/// A kernel object: its type and its index in the kernel's pool for that type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ObjRef {
    pub kind: ObjectType,
    pub index: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    pub object: ObjRef,
    pub rights: Rights,
    pub badge: Badge,
}

impl Capability {
    /// An unbadged capability.
    pub const fn new(object: ObjRef, rights: Rights) -> Self {
        Capability { object, rights, badge: Badge(0) }
    }
}

/// A slot of the global table. Only [`CapTable::resolve`] makes one, so a
/// `SlotId` is always in range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotId(u32);

impl SlotId {
    pub const fn index(self) -> u32 {
        self.0
    }
}

/// A task's capability space: table slots `base .. base + len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSpace {
    pub base: u32,
    pub len: u32,
}

/// A capability a removal took out of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "the last capability to an object obliges the kernel to destroy it"]
pub struct Removed {
    pub slot: SlotId,
    pub cap: Capability,
    /// No capability to `cap.object` remains anywhere in the table.
    pub last: bool,
}

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Slot {
    cap: Option<Capability>,
    /// Valid only when `is_first` (see the module documentation).
    parent: u32,
    first_child: u32,
    prev: u32,
    next: u32,
    is_first: bool,
    obj_prev: u32,
    obj_next: u32,
}

impl Slot {
    const EMPTY: Slot = Slot {
        cap: None,
        parent: NIL,
        first_child: NIL,
        prev: NIL,
        next: NIL,
        is_first: false,
        obj_prev: NIL,
        obj_next: NIL,
    };
}

/// The global capability table of `N` slots.
pub struct CapTable<const N: usize> {
    slots: [Slot; N],
}

impl<const N: usize> Default for CapTable<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> CapTable<N> {
    pub const fn new() -> Self {
        const { assert!(N < NIL as usize, "slot indices are u32 with a sentinel") };
        CapTable { slots: [Slot::EMPTY; N] }
    }

    /// The table slot for `slot` of `cspace`, which may be empty. The null
    /// slot and slots outside the space (or the table) are INVALID_CAPABILITY.
    pub fn resolve(&self, cspace: CSpace, slot: CapSlot) -> Result<SlotId, ErrorCode> {
        if slot == CapSlot::NULL || slot.0 >= cspace.len {
            return Err(ErrorCode::INVALID_CAPABILITY);
        }
        match cspace.base.checked_add(slot.0) {
            Some(index) if (index as usize) < N => Ok(SlotId(index)),
            _ => Err(ErrorCode::INVALID_CAPABILITY),
        }
    }

    /// The capability in a slot.
    pub fn get(&self, slot: SlotId) -> Option<Capability> {
        self.slots[slot.0 as usize].cap
    }

    /// The one check every use of a capability goes through: the slot holds
    /// a capability to an object of type `expected` with at least `needed`.
    pub fn lookup(
        &self,
        cspace: CSpace,
        slot: CapSlot,
        expected: ObjectType,
        needed: Rights,
    ) -> Result<(SlotId, Capability), ErrorCode> {
        let (id, cap) = self.lookup_any(cspace, slot)?;
        if cap.object.kind != expected {
            return Err(ErrorCode::WRONG_TYPE);
        }
        if !cap.rights.contains(needed) {
            return Err(ErrorCode::NO_RIGHTS);
        }
        Ok((id, cap))
    }

    /// [`lookup`](Self::lookup) without the type and rights checks.
    pub fn lookup_any(&self, cspace: CSpace, slot: CapSlot) -> Result<(SlotId, Capability), ErrorCode> {
        let id = self.resolve(cspace, slot)?;
        let cap = self.get(id).ok_or(ErrorCode::INVALID_CAPABILITY)?;
        Ok((id, cap))
    }

    /// Places a capability with no parent (a new object, or boot-time
    /// grants). Rights outside [`Rights::ALL`] are dropped. O(N): it searches
    /// the table for capabilities to the same object to share its count.
    pub fn insert_root(&mut self, dest: SlotId, cap: Capability) -> Result<(), ErrorCode> {
        self.empty(dest)?;
        let d = dest.0;
        let cap = Capability { rights: cap.rights.intersect(Rights::ALL), ..cap };
        let peer = self.slots.iter().position(|s| s.cap.is_some_and(|c| c.object == cap.object));
        self.slots[d as usize] =
            Slot { cap: Some(cap), parent: NIL, first_child: NIL, prev: d, next: d, is_first: true, ..Slot::EMPTY };
        match peer {
            Some(p) => self.obj_link(p as u32, d),
            None => (self.slots[d as usize].obj_prev, self.slots[d as usize].obj_next) = (d, d),
        }
        Ok(())
    }

    /// Puts the first capability to a new object into the empty `dest` as a
    /// child of `parent` (the untyped pool or range it was made from), so
    /// revoking `parent` removes it. No other capability may name the object.
    pub fn insert_child(&mut self, parent: SlotId, dest: SlotId, cap: Capability) -> Result<(), ErrorCode> {
        self.occupied(parent)?;
        self.empty(dest)?;
        if self.slots.iter().any(|s| s.cap.is_some_and(|c| c.object == cap.object)) {
            return Err(ErrorCode::INVALID_STATE);
        }
        let d = dest.0;
        self.tree_link(parent.0, d, Capability { rights: cap.rights.intersect(Rights::ALL), ..cap });
        (self.slots[d as usize].obj_prev, self.slots[d as usize].obj_next) = (d, d);
        Ok(())
    }

    /// Copies `src` into the empty `dest` as its child, with the rights of
    /// both: rights only ever shrink. The badge is kept.
    pub fn derive(&mut self, src: SlotId, dest: SlotId, rights: Rights) -> Result<Capability, ErrorCode> {
        let parent = self.occupied(src)?;
        self.empty(dest)?;
        let cap = Capability { rights: parent.rights.intersect(rights), ..parent };
        self.add_child(src.0, dest.0, cap);
        Ok(cap)
    }

    /// [`derive`](Self::derive) and set a badge. Only endpoint and
    /// notification capabilities that carry no badge yet can be minted
    /// (else INVALID_OPERATION), and the badge must be non-zero (else
    /// INVALID_ARGUMENT).
    pub fn mint(&mut self, src: SlotId, dest: SlotId, rights: Rights, badge: Badge) -> Result<Capability, ErrorCode> {
        let parent = self.occupied(src)?;
        if !matches!(parent.object.kind, ObjectType::ENDPOINT | ObjectType::NOTIFICATION) || parent.badge != Badge(0) {
            return Err(ErrorCode::INVALID_OPERATION);
        }
        if badge == Badge(0) {
            return Err(ErrorCode::INVALID_ARGUMENT);
        }
        self.empty(dest)?;
        let cap = Capability { rights: parent.rights.intersect(rights), badge, ..parent };
        self.add_child(src.0, dest.0, cap);
        Ok(cap)
    }

    /// Empties a slot. Its children survive, re-linked to its parent.
    pub fn delete(&mut self, slot: SlotId) -> Result<Removed, ErrorCode> {
        self.occupied(slot)?;
        Ok(self.remove(slot.0))
    }

    /// Deletes every descendant of `slot`, in every capability space, and
    /// keeps `slot` itself. Each removal is reported to `on_removed`, which
    /// must not touch this table: work that does (destroying a task clears
    /// its space) is queued by the caller. Returns how many were removed.
    pub fn revoke(&mut self, slot: SlotId, mut on_removed: impl FnMut(Removed)) -> Result<usize, ErrorCode> {
        self.occupied(slot)?;
        let root = slot.0;
        let mut count = 0;
        let mut cur = root;
        // Post-order: descend through first children to a leaf, remove it,
        // continue from its parent. Each node is entered and left once.
        loop {
            let child = self.slots[cur as usize].first_child;
            if child != NIL {
                cur = child;
                continue;
            }
            if cur == root {
                return Ok(count);
            }
            // `cur` was reached as a first child, so its parent link is valid.
            let parent = self.slots[cur as usize].parent;
            on_removed(self.remove(cur));
            count += 1;
            cur = parent;
        }
    }

    /// Moves a capability to the empty `dest`, keeping its place in the tree.
    pub fn move_cap(&mut self, src: SlotId, dest: SlotId) -> Result<(), ErrorCode> {
        self.occupied(src)?;
        self.empty(dest)?;
        let (s, d) = (src.0, dest.0);
        let node = self.slots[s as usize];
        self.slots[d as usize] = node;
        self.slots[s as usize] = Slot::EMPTY;
        if node.next == s {
            (self.slots[d as usize].prev, self.slots[d as usize].next) = (d, d);
        } else {
            self.slots[node.prev as usize].next = d;
            self.slots[node.next as usize].prev = d;
        }
        if node.is_first && node.parent != NIL {
            self.slots[node.parent as usize].first_child = d;
        }
        if node.first_child != NIL {
            self.slots[node.first_child as usize].parent = d;
        }
        if node.obj_next == s {
            (self.slots[d as usize].obj_prev, self.slots[d as usize].obj_next) = (d, d);
        } else {
            self.slots[node.obj_prev as usize].obj_next = d;
            self.slots[node.obj_next as usize].obj_prev = d;
        }
        Ok(())
    }

    /// Deletes every capability of a space (task destruction); derived
    /// capabilities elsewhere survive as with [`delete`](Self::delete).
    /// Returns how many were removed.
    pub fn clear_cspace(&mut self, cspace: CSpace, mut on_removed: impl FnMut(Removed)) -> usize {
        let start = (cspace.base as usize).min(N);
        let end = (cspace.base as usize).saturating_add(cspace.len as usize).min(N);
        let mut count = 0;
        for index in start..end {
            if self.slots[index].cap.is_some() {
                on_removed(self.remove(index as u32));
                count += 1;
            }
        }
        count
    }

    /// The slot `slot` was derived from, if it is still there (or its
    /// nearest surviving ancestor). O(number of siblings).
    pub fn parent(&self, slot: SlotId) -> Option<SlotId> {
        self.slots[slot.0 as usize].cap?;
        let mut node = slot.0;
        while !self.slots[node as usize].is_first {
            node = self.slots[node as usize].prev;
        }
        let parent = self.slots[node as usize].parent;
        (parent != NIL).then_some(SlotId(parent))
    }

    /// True if capabilities were derived from `slot` and not yet removed.
    pub fn has_children(&self, slot: SlotId) -> bool {
        self.slots[slot.0 as usize].first_child != NIL
    }

    /// The structural invariants of both rings and the tree, in O(N) and
    /// without allocating (for tests and fuzzing): every link of an
    /// occupied slot leads to an occupied slot that links back, empty slots
    /// have no links, an object ring names one object, a sibling ring has
    /// exactly one first node, whose parent (if any) points back at it.
    /// That every capability to an object is in a single ring is left to
    /// the caller (it needs a map; removals report it through
    /// [`Removed::last`]).
    pub fn check_links(&self) -> Result<(), &'static str> {
        let slot = |i: u32| self.slots.get(i as usize).ok_or("a link leaves the table");
        for (i, s) in (0u32..).zip(&self.slots) {
            let Some(cap) = s.cap else {
                if (s.prev, s.next, s.first_child, s.obj_prev, s.obj_next) != (NIL, NIL, NIL, NIL, NIL) {
                    return Err("an empty slot has links");
                }
                continue;
            };
            if !Rights::is_valid(cap.rights.into_bits()) {
                return Err("invalid rights");
            }
            if slot(s.next)?.prev != i {
                return Err("sibling ring broken");
            }
            let obj_next = slot(s.obj_next)?;
            if obj_next.obj_prev != i {
                return Err("object ring broken");
            }
            if obj_next.cap.map(|c| c.object) != Some(cap.object) {
                return Err("an object ring holds two objects");
            }
            if s.first_child != NIL {
                let c = slot(s.first_child)?;
                if !(c.is_first && c.parent == i && c.cap.is_some()) {
                    return Err("first child does not lead its ring");
                }
            }
        }
        // Sibling links are now a permutation of the occupied slots, so
        // every walk below ends; each ring is walked from its first only.
        let mut firsts = 0usize;
        for (i, s) in (0u32..).zip(&self.slots) {
            if s.cap.is_none() || !s.is_first {
                continue;
            }
            firsts += 1;
            if s.parent != NIL && slot(s.parent)?.first_child != i {
                return Err("a parent does not lead to its first child");
            }
            let mut n = s.next;
            while n != i {
                if self.slots[n as usize].is_first {
                    return Err("two firsts in a ring");
                }
                n = self.slots[n as usize].next;
            }
        }
        if firsts > self.slots.iter().filter(|s| s.cap.is_some()).count() {
            return Err("more rings than capabilities");
        }
        Ok(())
    }

    fn occupied(&self, slot: SlotId) -> Result<Capability, ErrorCode> {
        self.get(slot).ok_or(ErrorCode::INVALID_CAPABILITY)
    }

    fn empty(&self, slot: SlotId) -> Result<(), ErrorCode> {
        match self.get(slot) {
            Some(_) => Err(ErrorCode::SLOT_OCCUPIED),
            None => Ok(()),
        }
    }

    /// Fills the empty slot `c` with `cap` as the last child of `p`, naming
    /// the same object as `p`.
    fn add_child(&mut self, p: u32, c: u32, cap: Capability) {
        self.tree_link(p, c, cap);
        self.obj_link(p, c);
    }

    /// Fills the empty slot `c` with `cap` as the last child of `p` in the
    /// derivation tree only.
    fn tree_link(&mut self, p: u32, c: u32, cap: Capability) {
        self.slots[c as usize] = Slot { cap: Some(cap), ..Slot::EMPTY };
        let first = self.slots[p as usize].first_child;
        if first == NIL {
            self.slots[p as usize].first_child = c;
            let s = &mut self.slots[c as usize];
            (s.prev, s.next, s.is_first, s.parent) = (c, c, true, p);
        } else {
            let last = self.slots[first as usize].prev;
            (self.slots[c as usize].prev, self.slots[c as usize].next) = (last, first);
            self.slots[last as usize].next = c;
            self.slots[first as usize].prev = c;
        }
    }

    /// Puts `new` into the object ring of `peer`.
    fn obj_link(&mut self, peer: u32, new: u32) {
        let after = self.slots[peer as usize].obj_next;
        (self.slots[new as usize].obj_prev, self.slots[new as usize].obj_next) = (peer, after);
        self.slots[peer as usize].obj_next = new;
        self.slots[after as usize].obj_prev = new;
    }

    /// Empties occupied slot `x`, splicing its children into its place.
    fn remove(&mut self, x: u32) -> Removed {
        let node = self.slots[x as usize];
        let cap = node.cap.expect("remove of an empty slot");
        let parent = if node.is_first { node.parent } else { NIL };
        let alone = node.next == x;
        let child = node.first_child;
        if child != NIL {
            if !alone {
                let last = self.slots[child as usize].prev;
                self.slots[node.prev as usize].next = child;
                self.slots[child as usize].prev = node.prev;
                self.slots[last as usize].next = node.next;
                self.slots[node.next as usize].prev = last;
            }
            // The children's ring was headed by `child`; it now heads the
            // merged ring only if `x` headed its own.
            if node.is_first {
                self.slots[child as usize].parent = parent;
                self.set_first_child(parent, child);
            } else {
                self.slots[child as usize].is_first = false;
            }
        } else if alone {
            self.set_first_child(parent, NIL);
        } else {
            self.slots[node.prev as usize].next = node.next;
            self.slots[node.next as usize].prev = node.prev;
            if node.is_first {
                let heir = &mut self.slots[node.next as usize];
                (heir.is_first, heir.parent) = (true, parent);
                self.set_first_child(parent, node.next);
            }
        }
        let last = node.obj_next == x;
        if !last {
            self.slots[node.obj_prev as usize].obj_next = node.obj_next;
            self.slots[node.obj_next as usize].obj_prev = node.obj_prev;
        }
        self.slots[x as usize] = Slot::EMPTY;
        Removed { slot: SlotId(x), cap, last }
    }

    fn set_first_child(&mut self, parent: u32, child: u32) {
        if parent != NIL {
            self.slots[parent as usize].first_child = child;
        }
    }
}

#[cfg(test)]
mod tests;
