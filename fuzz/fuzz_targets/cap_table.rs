//! kerncore's capability table (`CapTable`): any sequence of insert, derive,
//! mint, delete, revoke, move and clear-space operations on a small table.
//!
//! Oracles: after every operation the table matches a naive model (slot ->
//! capability and parent, children re-parented to the grandparent on
//! removal): the same result or error, the same contents and parents,
//! revocation removes exactly the descendants, and `Removed::last` is
//! reported exactly when no capability to the object remains;
//! `CapTable::check_links` holds; lookups agree with the model.

#![no_main]

use abi::{Badge, CapSlot, ErrorCode, ObjectType, Rights};
use arbitrary::Arbitrary;
use kerncore::cap::{CSpace, CapTable, Capability, ObjRef, Removed, SlotId};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

const N: u32 = 24;
const ALL: CSpace = CSpace { base: 0, len: N };
const OBJECTS: [ObjRef; 5] = [
    ObjRef { kind: ObjectType::ENDPOINT, index: 7 },
    ObjRef { kind: ObjectType::NOTIFICATION, index: 1 },
    ObjRef { kind: ObjectType::MEMORY, index: 3 },
    ObjRef { kind: ObjectType::ENDPOINT, index: 2 },
    ObjRef { kind: ObjectType::UNTYPED, index: 0 },
];

#[derive(Arbitrary, Debug)]
enum Op {
    InsertRoot { dest: u8, object: u8, rights: u32 },
    InsertChild { parent: u8, dest: u8, object: u8, rights: u32 },
    Derive { src: u8, dest: u8, rights: u32 },
    Mint { src: u8, dest: u8, rights: u32, badge: u8 },
    Delete { slot: u8 },
    Revoke { slot: u8 },
    Move { src: u8, dest: u8 },
    Clear { base: u8, len: u8 },
    Lookup { slot: u8, kind: u8, rights: u32 },
}

/// Slots 1..N (slot 0 of the space is the null slot).
fn slot(t: &CapTable<{ N as usize }>, s: u8) -> SlotId {
    t.resolve(ALL, CapSlot(1 + u32::from(s) % (N - 1))).expect("inside the space")
}

/// The naive model: slot -> (capability, parent).
#[derive(Default)]
struct Model(HashMap<u32, (Capability, Option<u32>)>);

impl Model {
    fn children(&self, p: u32) -> Vec<u32> {
        self.0.iter().filter(|(_, (_, parent))| *parent == Some(p)).map(|(&s, _)| s).collect()
    }
    fn remove(&mut self, s: u32) -> (Capability, bool) {
        let (cap, parent) = self.0.remove(&s).expect("removed from the model");
        for c in self.children(s) {
            self.0.get_mut(&c).unwrap().1 = parent;
        }
        (cap, !self.0.values().any(|(c, _)| c.object == cap.object))
    }
    fn descendants(&self, s: u32) -> Vec<u32> {
        let (mut out, mut todo) = (Vec::new(), self.children(s));
        while let Some(n) = todo.pop() {
            todo.extend(self.children(n));
            out.push(n);
        }
        out.sort();
        out
    }
    fn check_removed(&mut self, removed: &Removed) {
        assert_eq!((removed.cap, removed.last), self.remove(removed.slot.index()), "removal of {removed:?}");
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut t = CapTable::<{ N as usize }>::new();
    let mut m = Model::default();
    let object = |o: u8| OBJECTS[usize::from(o) % OBJECTS.len()];
    for op in ops.iter().take(256) {
        match *op {
            Op::InsertRoot { dest, object: o, rights } => {
                let (d, cap) = (slot(&t, dest), Capability::new(object(o), Rights::from_bits(rights)));
                let want = if m.0.contains_key(&d.index()) { Err(ErrorCode::SLOT_OCCUPIED) } else { Ok(()) };
                assert_eq!(t.insert_root(d, cap), want);
                if want.is_ok() {
                    let cap = Capability { rights: cap.rights.intersect(Rights::ALL), ..cap };
                    m.0.insert(d.index(), (cap, None));
                }
            }
            Op::InsertChild { parent, dest, object: o, rights } => {
                let (p, d) = (slot(&t, parent), slot(&t, dest));
                let cap = Capability::new(object(o), Rights::from_bits(rights));
                let want = if !m.0.contains_key(&p.index()) {
                    Err(ErrorCode::INVALID_CAPABILITY)
                } else if m.0.contains_key(&d.index()) {
                    Err(ErrorCode::SLOT_OCCUPIED)
                } else if m.0.values().any(|(c, _)| c.object == cap.object) {
                    Err(ErrorCode::INVALID_STATE)
                } else {
                    Ok(())
                };
                assert_eq!(t.insert_child(p, d, cap), want);
                if want.is_ok() {
                    let cap = Capability { rights: cap.rights.intersect(Rights::ALL), ..cap };
                    m.0.insert(d.index(), (cap, Some(p.index())));
                }
            }
            Op::Derive { src, dest, rights } => {
                let (s, d, r) = (slot(&t, src), slot(&t, dest), Rights::from_bits(rights));
                let want = match (m.0.get(&s.index()).copied(), m.0.contains_key(&d.index())) {
                    (None, _) => Err(ErrorCode::INVALID_CAPABILITY),
                    (Some(_), true) => Err(ErrorCode::SLOT_OCCUPIED),
                    (Some((cap, _)), false) => Ok(Capability { rights: cap.rights.intersect(r), ..cap }),
                };
                assert_eq!(t.derive(s, d, r), want);
                if let Ok(new) = want {
                    m.0.insert(d.index(), (new, Some(s.index())));
                }
            }
            Op::Mint { src, dest, rights, badge } => {
                let (s, d, r, badge) =
                    (slot(&t, src), slot(&t, dest), Rights::from_bits(rights), Badge(u64::from(badge % 4)));
                let want = match m.0.get(&s.index()).copied() {
                    None => Err(ErrorCode::INVALID_CAPABILITY),
                    Some((cap, _))
                        if !matches!(cap.object.kind, ObjectType::ENDPOINT | ObjectType::NOTIFICATION)
                            || cap.badge != Badge(0) =>
                    {
                        Err(ErrorCode::INVALID_OPERATION)
                    }
                    Some(_) if badge == Badge(0) => Err(ErrorCode::INVALID_ARGUMENT),
                    Some(_) if m.0.contains_key(&d.index()) => Err(ErrorCode::SLOT_OCCUPIED),
                    Some((cap, _)) => Ok(Capability { rights: cap.rights.intersect(r), badge, ..cap }),
                };
                assert_eq!(t.mint(s, d, r, badge), want);
                if let Ok(new) = want {
                    m.0.insert(d.index(), (new, Some(s.index())));
                }
            }
            Op::Delete { slot: s } => match t.delete(slot(&t, s)) {
                Err(e) => assert!(e == ErrorCode::INVALID_CAPABILITY && !m.0.contains_key(&slot(&t, s).index())),
                Ok(removed) => m.check_removed(&removed),
            },
            Op::Revoke { slot: s } => {
                let s = slot(&t, s);
                let mut got = Vec::new();
                match t.revoke(s, |r| got.push(r)) {
                    Err(e) => assert!(e == ErrorCode::INVALID_CAPABILITY && !m.0.contains_key(&s.index())),
                    Ok(n) => {
                        let mut slots: Vec<u32> = got.iter().map(|r| r.slot.index()).collect();
                        slots.sort();
                        assert_eq!((n, slots), (got.len(), m.descendants(s.index())));
                        for r in &got {
                            m.check_removed(r);
                        }
                        assert!(m.0.contains_key(&s.index()) && !t.has_children(s));
                    }
                }
            }
            Op::Move { src, dest } => {
                let (s, d) = (slot(&t, src), slot(&t, dest));
                let want = match (m.0.contains_key(&s.index()), m.0.contains_key(&d.index())) {
                    (false, _) => Err(ErrorCode::INVALID_CAPABILITY),
                    (true, true) => Err(ErrorCode::SLOT_OCCUPIED),
                    (true, false) => Ok(()),
                };
                assert_eq!(t.move_cap(s, d), want);
                if want.is_ok() {
                    let entry = m.0.remove(&s.index()).unwrap();
                    m.0.insert(d.index(), entry);
                    for e in m.0.values_mut() {
                        if e.1 == Some(s.index()) {
                            e.1 = Some(d.index());
                        }
                    }
                }
            }
            Op::Clear { base, len } => {
                let cs = CSpace { base: u32::from(base % 32), len: u32::from(len % 32) };
                let mut got = Vec::new();
                let n = t.clear_cspace(cs, |r| got.push(r));
                assert_eq!(n, got.len());
                for r in &got {
                    assert!(r.slot.index() >= cs.base && r.slot.index() < cs.base + cs.len, "{r:?} outside {cs:?}");
                    m.check_removed(r);
                }
                for s in cs.base..(cs.base + cs.len).min(N) {
                    assert!(!m.0.contains_key(&s), "slot {s} survived clearing {cs:?}");
                }
            }
            Op::Lookup { slot: s, kind, rights } => {
                let cs = CSpace { base: 0, len: N };
                let (kind, needed) = (object(kind).kind, Rights::from_bits(rights));
                let got = t.lookup(cs, CapSlot(u32::from(s) % (N + 2)), kind, needed);
                let want = match u32::from(s) % (N + 2) {
                    0 => Err(ErrorCode::INVALID_CAPABILITY),
                    i if i >= N => Err(ErrorCode::INVALID_CAPABILITY),
                    i => match m.0.get(&i) {
                        None => Err(ErrorCode::INVALID_CAPABILITY),
                        Some((c, _)) if c.object.kind != kind => Err(ErrorCode::WRONG_TYPE),
                        Some((c, _)) if !c.rights.contains(needed) => Err(ErrorCode::NO_RIGHTS),
                        Some((c, _)) => Ok(*c),
                    },
                };
                assert_eq!(got.map(|(_, c)| c), want);
            }
        }
        if let Err(e) = t.check_links() {
            panic!("after {op:?}: {e}");
        }
        for s in 1..N {
            let id = t.resolve(ALL, CapSlot(s)).unwrap();
            let model = m.0.get(&s);
            assert_eq!(t.get(id), model.map(|e| e.0), "slot {s} after {op:?}");
            if let Some(&(_, parent)) = model {
                assert_eq!(t.parent(id).map(SlotId::index), parent, "parent of {s} after {op:?}");
                assert_eq!(t.has_children(id), !m.children(s).is_empty(), "children of {s} after {op:?}");
            }
        }
    }
});
