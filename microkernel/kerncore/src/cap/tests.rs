use super::*;
use std::collections::{HashMap, HashSet};
use std::vec::Vec;

const EP: ObjRef = ObjRef { kind: ObjectType::ENDPOINT, index: 7 };
const NTF: ObjRef = ObjRef { kind: ObjectType::NOTIFICATION, index: 1 };
const MEM: ObjRef = ObjRef { kind: ObjectType::MEMORY, index: 3 };

fn rights(bits: u32) -> Rights {
    Rights::from_bits(bits)
}

fn id(index: u32) -> SlotId {
    SlotId(index)
}

/// Runs `f` on a thread with a stack big enough for tables of 100k+ slots.
fn big_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new().stack_size(512 << 20).spawn(f).unwrap().join().unwrap();
}

impl<const N: usize> CapTable<N> {
    /// [`CapTable::check_links`], and that every capability to an object
    /// is in one object ring (test only, O(N)).
    fn check(&self) {
        self.check_links().unwrap();
        let mut objects: HashMap<ObjRef, usize> = HashMap::new();
        for cap in self.slots.iter().filter_map(|s| s.cap) {
            *objects.entry(cap.object).or_default() += 1;
        }
        for (object, count) in objects {
            let start = self.slots.iter().position(|s| s.cap.is_some_and(|c| c.object == object)).unwrap() as u32;
            let (mut n, mut len) = (self.slots[start as usize].obj_next, 1);
            while n != start {
                len += 1;
                n = self.slots[n as usize].obj_next;
            }
            assert_eq!(len, count, "{object:?} is split over several rings");
        }
    }
}

#[test]
fn lookup_checks_range_null_emptiness_type_and_rights() {
    let mut t = CapTable::<64>::new();
    let cs = CSpace { base: 16, len: 8 };
    let rw = rights(0b11);
    let slot = t.resolve(cs, CapSlot(3)).unwrap();
    assert_eq!(slot.index(), 19);
    t.insert_root(slot, Capability::new(MEM, rw)).unwrap();

    assert_eq!(
        t.lookup(cs, CapSlot(3), ObjectType::MEMORY, Rights::new().with_read(true)),
        Ok((slot, Capability::new(MEM, rw)))
    );
    assert_eq!(t.lookup(cs, CapSlot(3), ObjectType::MEMORY, rw).map(|(s, _)| s), Ok(slot));
    assert_eq!(t.lookup(cs, CapSlot::NULL, ObjectType::MEMORY, Rights::NONE), Err(ErrorCode::INVALID_CAPABILITY));
    assert_eq!(t.lookup(cs, CapSlot(8), ObjectType::MEMORY, Rights::NONE), Err(ErrorCode::INVALID_CAPABILITY));
    assert_eq!(t.lookup(cs, CapSlot(u32::MAX), ObjectType::MEMORY, Rights::NONE), Err(ErrorCode::INVALID_CAPABILITY));
    assert_eq!(t.lookup(cs, CapSlot(4), ObjectType::MEMORY, Rights::NONE), Err(ErrorCode::INVALID_CAPABILITY));
    assert_eq!(t.lookup(cs, CapSlot(3), ObjectType::ENDPOINT, Rights::NONE), Err(ErrorCode::WRONG_TYPE));
    assert_eq!(
        t.lookup(cs, CapSlot(3), ObjectType::MEMORY, Rights::new().with_execute(true)),
        Err(ErrorCode::NO_RIGHTS)
    );
    assert_eq!(t.lookup_any(cs, CapSlot(3)).map(|(_, c)| c.object), Ok(MEM));
    assert_eq!(t.lookup_any(cs, CapSlot(2)), Err(ErrorCode::INVALID_CAPABILITY));
    // Another space does not see the slot; a space past the table's end is refused.
    assert_eq!(t.lookup_any(CSpace { base: 0, len: 16 }, CapSlot(3)), Err(ErrorCode::INVALID_CAPABILITY));
    assert_eq!(t.resolve(CSpace { base: 60, len: 8 }, CapSlot(5)), Err(ErrorCode::INVALID_CAPABILITY));
    assert_eq!(t.resolve(CSpace { base: u32::MAX, len: 8 }, CapSlot(5)), Err(ErrorCode::INVALID_CAPABILITY));
    t.check();
}

#[test]
fn every_error_path_of_the_mutators() {
    let mut t = CapTable::<16>::new();
    t.insert_root(id(1), Capability::new(EP, Rights::ALL)).unwrap();
    assert_eq!(t.insert_root(id(1), Capability::new(EP, Rights::ALL)), Err(ErrorCode::SLOT_OCCUPIED));
    assert_eq!(t.derive(id(2), id(3), Rights::ALL), Err(ErrorCode::INVALID_CAPABILITY));
    assert_eq!(t.derive(id(1), id(1), Rights::ALL), Err(ErrorCode::SLOT_OCCUPIED));
    assert_eq!(t.mint(id(2), id(3), Rights::ALL, Badge(1)), Err(ErrorCode::INVALID_CAPABILITY));
    assert_eq!(t.mint(id(1), id(1), Rights::ALL, Badge(1)), Err(ErrorCode::SLOT_OCCUPIED));
    assert_eq!(t.delete(id(2)), Err(ErrorCode::INVALID_CAPABILITY));
    assert_eq!(t.revoke(id(2), |_| panic!()), Err(ErrorCode::INVALID_CAPABILITY));
    assert_eq!(t.move_cap(id(2), id(3)), Err(ErrorCode::INVALID_CAPABILITY));
    assert_eq!(t.move_cap(id(1), id(1)), Err(ErrorCode::SLOT_OCCUPIED));
    t.derive(id(1), id(2), Rights::ALL).unwrap();
    assert_eq!(t.move_cap(id(1), id(2)), Err(ErrorCode::SLOT_OCCUPIED));
    // Failed calls changed nothing.
    assert_eq!(t.slots.iter().filter(|s| s.cap.is_some()).count(), 2);
    t.check();
}

#[test]
fn rights_only_shrink_exhaustively() {
    let mut t = CapTable::<8>::new();
    for have in 0..128 {
        t.insert_root(id(1), Capability::new(MEM, rights(have))).unwrap();
        for asked in 0..128 {
            let child = t.derive(id(1), id(2), rights(asked)).unwrap();
            assert_eq!(child.rights, rights(have & asked));
            assert!(rights(have).contains(child.rights) && rights(asked).contains(child.rights));
            // A grandchild asking for everything still gets no more than its parent.
            assert_eq!(t.derive(id(2), id(3), Rights::ALL).unwrap().rights, rights(have & asked));
            for needed in 0..128 {
                let ok = t.lookup(CSpace { base: 0, len: 8 }, CapSlot(3), ObjectType::MEMORY, rights(needed)).is_ok();
                assert_eq!(ok, have & asked & needed == needed);
            }
            assert_eq!(t.revoke(id(2), |r| assert!(!r.last)), Ok(1));
            assert!(!t.delete(id(2)).unwrap().last);
        }
        assert!(t.delete(id(1)).unwrap().last);
    }
    // Reserved bits never enter the table.
    t.insert_root(id(1), Capability::new(MEM, Rights::from_bits(u32::MAX))).unwrap();
    assert_eq!(t.get(id(1)).unwrap().rights, Rights::ALL);
    assert_eq!(t.derive(id(1), id(2), Rights::from_bits(u32::MAX)).unwrap().rights, Rights::ALL);
    t.check();
}

#[test]
fn mint_badges_unbadged_endpoints_and_notifications_only() {
    let mut t = CapTable::<16>::new();
    t.insert_root(id(1), Capability::new(EP, Rights::ALL)).unwrap();
    t.insert_root(id(2), Capability::new(NTF, Rights::ALL)).unwrap();
    t.insert_root(id(3), Capability::new(MEM, Rights::ALL)).unwrap();

    let send = Rights::new().with_send(true);
    let minted = t.mint(id(1), id(4), send, Badge(0xbeef)).unwrap();
    assert_eq!(minted, Capability { object: EP, rights: send, badge: Badge(0xbeef) });
    assert_eq!(t.mint(id(2), id(5), Rights::ALL, Badge(1)).unwrap().badge, Badge(1));

    assert_eq!(t.mint(id(3), id(6), Rights::ALL, Badge(1)), Err(ErrorCode::INVALID_OPERATION));
    assert_eq!(t.mint(id(1), id(6), Rights::ALL, Badge(0)), Err(ErrorCode::INVALID_ARGUMENT));
    assert_eq!(t.mint(id(4), id(6), Rights::ALL, Badge(2)), Err(ErrorCode::INVALID_OPERATION), "re-badging");
    assert_eq!(t.mint(id(1), id(4), Rights::ALL, Badge(2)), Err(ErrorCode::SLOT_OCCUPIED));
    assert!(t.get(id(6)).is_none());

    // Deriving a badged capability keeps the badge and can only shrink rights.
    let copy = t.derive(id(4), id(6), Rights::ALL).unwrap();
    assert_eq!(copy, minted);
    // Minted capabilities are children: revoking the original removes them.
    let mut gone = Vec::new();
    assert_eq!(t.revoke(id(1), |r| gone.push(r.slot)), Ok(2));
    gone.sort();
    assert_eq!(gone, [id(4), id(6)]);
    t.check();
}

#[test]
fn delete_relinks_children_to_the_grandparent() {
    let mut t = CapTable::<16>::new();
    t.insert_root(id(1), Capability::new(MEM, Rights::ALL)).unwrap();
    t.derive(id(1), id(2), Rights::ALL).unwrap();
    t.derive(id(2), id(3), Rights::ALL).unwrap();
    t.derive(id(2), id(4), Rights::ALL).unwrap();
    t.derive(id(1), id(5), Rights::ALL).unwrap();
    assert_eq!(t.parent(id(3)), Some(id(2)));
    assert_eq!(t.parent(id(4)), Some(id(2)));

    let removed = t.delete(id(2)).unwrap();
    assert_eq!((removed.slot, removed.last), (id(2), false));
    assert_eq!(t.parent(id(3)), Some(id(1)));
    assert_eq!(t.parent(id(4)), Some(id(1)));
    assert_eq!(t.parent(id(5)), Some(id(1)));
    t.check();

    // Deleting the root leaves the children as roots.
    let _ = t.delete(id(1)).unwrap();
    for s in [3, 4, 5] {
        assert_eq!(t.parent(id(s)), None);
    }
    assert!(t.parent(id(1)).is_none());
    t.check();
    // Revoking one former sibling touches only its own (empty) subtree.
    assert_eq!(t.revoke(id(4), |_| panic!()), Ok(0));
    assert!(t.get(id(3)).is_some() && t.get(id(5)).is_some());
}

#[test]
fn last_reference_is_reported_once_per_object() {
    let mut t = CapTable::<16>::new();
    t.insert_root(id(1), Capability::new(EP, Rights::ALL)).unwrap();
    // A second root to the same object shares its count.
    t.insert_root(id(2), Capability::new(EP, Rights::ALL)).unwrap();
    t.insert_root(id(3), Capability::new(MEM, Rights::ALL)).unwrap();
    t.derive(id(1), id(4), Rights::ALL).unwrap();
    t.mint(id(2), id(5), Rights::ALL, Badge(9)).unwrap();
    t.move_cap(id(5), id(9)).unwrap();

    assert!(!t.delete(id(1)).unwrap().last);
    let mut lasts = Vec::new();
    assert_eq!(t.revoke(id(2), |r| lasts.push(r.last)), Ok(1));
    assert_eq!(lasts, [false]);
    assert!(!t.delete(id(4)).unwrap().last);
    assert!(t.delete(id(2)).unwrap().last);
    assert!(t.delete(id(3)).unwrap().last);
    t.check();
}

#[test]
fn move_keeps_the_place_in_the_tree() {
    let mut t = CapTable::<16>::new();
    t.insert_root(id(1), Capability::new(MEM, Rights::ALL)).unwrap();
    t.derive(id(1), id(2), Rights::ALL).unwrap();
    t.derive(id(1), id(3), Rights::ALL).unwrap();
    t.derive(id(2), id(4), Rights::ALL).unwrap();
    t.move_cap(id(2), id(10)).unwrap();
    assert!(t.get(id(2)).is_none());
    assert_eq!(t.parent(id(10)), Some(id(1)));
    assert_eq!(t.parent(id(4)), Some(id(10)));
    t.move_cap(id(1), id(11)).unwrap();
    assert_eq!(t.parent(id(10)), Some(id(11)));
    assert_eq!(t.parent(id(3)), Some(id(11)));
    t.check();
    assert_eq!(t.revoke(id(11), |_| {}), Ok(3));
    t.check();
}

#[test]
fn clear_cspace_empties_one_space_only() {
    let mut t = CapTable::<32>::new();
    let a = CSpace { base: 0, len: 16 };
    let b = CSpace { base: 16, len: 16 };
    let slot = |cs: CSpace, s: u32| SlotId(cs.base + s);
    t.insert_root(slot(a, 1), Capability::new(EP, Rights::ALL)).unwrap();
    t.derive(slot(a, 1), slot(a, 2), Rights::ALL).unwrap();
    t.derive(slot(a, 2), slot(b, 1), Rights::ALL).unwrap();
    t.insert_root(slot(a, 3), Capability::new(MEM, Rights::ALL)).unwrap();
    let mut removed = Vec::new();
    assert_eq!(t.clear_cspace(a, |r| removed.push((r.slot, r.last))), 3);
    assert_eq!(removed, [(slot(a, 1), false), (slot(a, 2), false), (slot(a, 3), true)]);
    assert_eq!(t.parent(slot(b, 1)), None);
    assert!(t.get(slot(b, 1)).is_some());
    assert_eq!(t.clear_cspace(CSpace { base: 30, len: 100 }, |_| {}), 0);
    t.check();
}

#[test]
fn revoke_a_chain_100k_deep_without_recursion() {
    big_stack(|| {
        const DEPTH: u32 = 100_000;
        let mut t = Box::new(CapTable::<{ DEPTH as usize + 8 }>::new());
        t.insert_root(id(1), Capability::new(EP, Rights::ALL)).unwrap();
        t.insert_root(id(DEPTH + 5), Capability::new(MEM, Rights::ALL)).unwrap();
        for i in 1..DEPTH {
            t.derive(id(i), id(i + 1), Rights::ALL).unwrap();
        }
        t.check();
        // Revoking the middle removes exactly the lower half.
        let mid = DEPTH / 2;
        let mut seen = HashSet::new();
        let n = t.revoke(id(mid), |r| assert!(seen.insert(r.slot.index()) && !r.last)).unwrap();
        assert_eq!(n as u32, DEPTH - mid);
        assert_eq!(seen, (mid + 1..=DEPTH).collect());
        assert!((1..=mid).all(|i| t.get(id(i)).is_some()));
        assert!(!t.has_children(id(mid)));
        // Deleting a link in the middle of what remains keeps the chain whole.
        let _ = t.delete(id(mid / 2)).unwrap();
        assert_eq!(t.parent(id(mid / 2 + 1)), Some(id(mid / 2 - 1)));
        t.check();
        let mut lasts = 0;
        assert_eq!(t.revoke(id(1), |r| lasts += r.last as u32), Ok(mid as usize - 2));
        assert_eq!(lasts, 0);
        assert!(t.delete(id(1)).unwrap().last);
        assert!(t.get(id(DEPTH + 5)).is_some());
        t.check();
    });
}

#[test]
fn revoke_a_tree_100k_wide() {
    big_stack(|| {
        const WIDTH: u32 = 100_000;
        let mut t = Box::new(CapTable::<{ WIDTH as usize + 16 }>::new());
        t.insert_root(id(1), Capability::new(EP, Rights::ALL)).unwrap();
        t.derive(id(1), id(2), Rights::ALL).unwrap();
        t.derive(id(1), id(3), Rights::ALL).unwrap();
        for i in 0..WIDTH {
            t.mint(id(2), id(10 + i), Rights::ALL, Badge(i as u64 + 1)).unwrap();
        }
        // Deleting and moving the parent of 100k children is O(1).
        t.move_cap(id(2), id(4)).unwrap();
        let _ = t.delete(id(4)).unwrap();
        assert_eq!(t.parent(id(10 + WIDTH / 2)), Some(id(1)));
        t.check();
        // Revoking a sibling leaves them alone; revoking the root removes all.
        assert_eq!(t.revoke(id(3), |_| panic!()), Ok(0));
        let mut removed = 0usize;
        assert_eq!(t.revoke(id(1), |r| removed += !r.last as usize), Ok(WIDTH as usize + 1));
        assert_eq!(removed, WIDTH as usize + 1);
        assert!(t.delete(id(1)).unwrap().last);
        t.check();
    });
}

/// A naive model: slot -> (capability, parent).
#[derive(Default)]
struct Model {
    slots: HashMap<u32, (Capability, Option<u32>)>,
}

impl Model {
    fn children(&self, p: u32) -> Vec<u32> {
        self.slots.iter().filter(|(_, (_, parent))| *parent == Some(p)).map(|(&s, _)| s).collect()
    }

    fn remove(&mut self, s: u32) -> (Capability, bool) {
        let (cap, parent) = self.slots.remove(&s).unwrap();
        for c in self.children(s) {
            self.slots.get_mut(&c).unwrap().1 = parent;
        }
        let last = !self.slots.values().any(|(c, _)| c.object == cap.object);
        (cap, last)
    }

    fn descendants(&self, s: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let mut todo = self.children(s);
        while let Some(n) = todo.pop() {
            todo.extend(self.children(n));
            out.push(n);
        }
        out
    }
}

#[test]
fn random_operations_match_a_naive_model() {
    const N: usize = 48;
    let mut rng = fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d);
    let mut t = CapTable::<N>::new();
    let mut m = Model::default();
    let objects = [EP, NTF, MEM, ObjRef { kind: ObjectType::ENDPOINT, index: 2 }];
    for step in 0..20_000 {
        let (a, b) = (rng.u32(..N as u32), rng.u32(..N as u32));
        let r = rights(rng.u32(..128));
        match rng.u32(..8) {
            0 => {
                let cap = Capability::new(objects[rng.usize(..4)], Rights::ALL);
                let want = if m.slots.contains_key(&a) { Err(ErrorCode::SLOT_OCCUPIED) } else { Ok(()) };
                assert_eq!(t.insert_root(id(a), cap), want);
                if want.is_ok() {
                    m.slots.insert(a, (cap, None));
                }
            }
            1 | 2 => match (m.slots.get(&a).copied(), m.slots.contains_key(&b)) {
                (None, _) => assert_eq!(t.derive(id(a), id(b), r), Err(ErrorCode::INVALID_CAPABILITY)),
                (Some(_), true) => {
                    assert_eq!(t.derive(id(a), id(b), r), Err(ErrorCode::SLOT_OCCUPIED))
                }
                (Some((cap, _)), false) => {
                    let new = Capability { rights: cap.rights.intersect(r), ..cap };
                    assert_eq!(t.derive(id(a), id(b), r), Ok(new));
                    m.slots.insert(b, (new, Some(a)));
                }
            },
            3 => {
                let badge = Badge(rng.u64(..3));
                let got = t.mint(id(a), id(b), r, badge);
                let want = match m.slots.get(&a).copied() {
                    None => Err(ErrorCode::INVALID_CAPABILITY),
                    Some((cap, _)) if cap.object.kind == ObjectType::MEMORY || cap.badge != Badge(0) => {
                        Err(ErrorCode::INVALID_OPERATION)
                    }
                    Some(_) if badge == Badge(0) => Err(ErrorCode::INVALID_ARGUMENT),
                    Some(_) if m.slots.contains_key(&b) => Err(ErrorCode::SLOT_OCCUPIED),
                    Some((cap, _)) => Ok(Capability { rights: cap.rights.intersect(r), badge, ..cap }),
                };
                assert_eq!(got, want);
                if let Ok(new) = want {
                    m.slots.insert(b, (new, Some(a)));
                }
            }
            4 => match t.delete(id(a)) {
                Err(e) => assert!(e == ErrorCode::INVALID_CAPABILITY && !m.slots.contains_key(&a)),
                Ok(removed) => assert_eq!((removed.cap, removed.last), m.remove(a)),
            },
            5 => {
                let mut got = Vec::new();
                match t.revoke(id(a), |r| got.push(r)) {
                    Err(_) => assert!(!m.slots.contains_key(&a)),
                    Ok(n) => {
                        let mut want: Vec<u32> = m.descendants(a);
                        assert_eq!(n, want.len());
                        want.sort();
                        let mut slots: Vec<u32> = got.iter().map(|r| r.slot.0).collect();
                        slots.sort();
                        assert_eq!(slots, want);
                        // Removed in post-order: report `last` as the model sees it.
                        for r in got {
                            assert_eq!((r.cap, r.last), m.remove(r.slot.0));
                        }
                    }
                }
            }
            6 => {
                let want = match (m.slots.contains_key(&a), m.slots.contains_key(&b)) {
                    (false, _) => Err(ErrorCode::INVALID_CAPABILITY),
                    (true, true) => Err(ErrorCode::SLOT_OCCUPIED),
                    (true, false) => Ok(()),
                };
                assert_eq!(t.move_cap(id(a), id(b)), want);
                if want.is_ok() {
                    let entry = m.slots.remove(&a).unwrap();
                    m.slots.insert(b, entry);
                    for e in m.slots.values_mut() {
                        if e.1 == Some(a) {
                            e.1 = Some(b);
                        }
                    }
                }
            }
            _ => {
                let cs = CSpace { base: a, len: rng.u32(..8) };
                let mut got = Vec::new();
                t.clear_cspace(cs, |r| got.push(r));
                for r in got {
                    assert_eq!((r.cap, r.last), m.remove(r.slot.0));
                }
            }
        }
        if step % 64 == 0 {
            t.check();
        }
        for s in 0..N as u32 {
            let model = m.slots.get(&s);
            assert_eq!(t.get(id(s)), model.map(|e| e.0), "step {step} slot {s}");
            if let Some(&(_, parent)) = model {
                assert_eq!(t.parent(id(s)), parent.map(id), "step {step} parent of {s}");
            }
        }
    }
}

#[test]
fn objects_made_from_a_pool_are_its_children_and_go_with_it() {
    const UNTYPED: ObjRef = ObjRef { kind: ObjectType::UNTYPED, index: 0 };
    let mut t: CapTable<16> = CapTable::new();
    t.insert_root(id(1), Capability::new(UNTYPED, Rights::ALL)).unwrap();
    t.insert_child(id(1), id(2), Capability::new(MEM, Rights::ALL)).unwrap();
    t.insert_child(id(1), id(3), Capability::new(EP, Rights::ALL)).unwrap();
    t.derive(id(3), id(4), rights(0b1000)).unwrap();
    t.check();
    assert_eq!(t.parent(id(2)), Some(id(1)));
    // A second "first capability" to an existing object is refused.
    assert_eq!(t.insert_child(id(1), id(5), Capability::new(MEM, Rights::ALL)), Err(ErrorCode::INVALID_STATE));
    assert_eq!(t.insert_child(id(9), id(5), Capability::new(NTF, Rights::ALL)), Err(ErrorCode::INVALID_CAPABILITY));
    let mut last = Vec::new();
    let removed = t.revoke(id(1), |r| last.push((r.cap.object, r.last))).unwrap();
    assert_eq!(removed, 3);
    last.sort_by_key(|(o, _)| (o.kind, o.index));
    assert_eq!(last, [(EP, false), (EP, true), (MEM, true)]);
    t.check();
}

#[test]
fn check_links_finds_broken_rings_and_trees() {
    let build = || {
        let mut t = CapTable::<8>::new();
        t.insert_root(id(1), Capability::new(EP, Rights::ALL)).unwrap();
        t.derive(id(1), id(2), Rights::ALL).unwrap();
        t.derive(id(1), id(3), Rights::ALL).unwrap();
        t.check_links().unwrap();
        t
    };
    let broken = |f: &dyn Fn(&mut CapTable<8>)| {
        let mut t = build();
        f(&mut t);
        t.check_links().err()
    };
    assert_eq!(broken(&|t| t.slots[2].prev = 1), Some("sibling ring broken"));
    assert_eq!(broken(&|t| t.slots[2].obj_next = 2), Some("object ring broken"));
    assert_eq!(broken(&|t| t.slots[3].is_first = true), Some("two firsts in a ring"));
    assert_eq!(broken(&|t| t.slots[5].next = 2), Some("an empty slot has links"));
    assert_eq!(broken(&|t| t.slots[2].next = 99), Some("a link leaves the table"));
    assert_eq!(
        broken(&|t| t.slots[3].cap = Some(Capability::new(NTF, Rights::ALL))),
        Some("an object ring holds two objects")
    );
}
