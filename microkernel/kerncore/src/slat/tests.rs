//! The walker's rules, checked for both formats.

use super::*;
use crate::ept::EptFormat;
use crate::npt::NptFormat;
use crate::paging::tests::FakeMemory;
use std::vec::Vec;

const MIB: u64 = 1 << 20;

fn with_mapper<F: SlatFormat + Copy>(
    format: F,
    config: SlatConfig,
    body: impl FnOnce(&mut SlatMapper<'_, F, FakeMemory>),
) {
    let mut mem = FakeMemory::new();
    let root = SlatMapper::<F, FakeMemory>::new_root(&mut mem).unwrap();
    let mut m = SlatMapper::new(&mut mem, root, format, config);
    body(&mut m);
}

/// Runs the body with a fresh EPT mapper, then with a fresh NPT mapper.
macro_rules! for_both_formats {
    ($config:expr, |$m:ident| $body:block) => {{
        with_mapper(EptFormat::default(), $config, |$m| $body);
        with_mapper(NptFormat, $config, |$m| $body);
    }};
}

fn leaves<F: SlatFormat, M: PageTableMemory>(m: &SlatMapper<'_, F, M>, gpa: u64, len: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut g = gpa;
    while g < gpa + len {
        match m.translate(g) {
            Some(t) => {
                out.push((g, t.page_size));
                g += t.page_size;
            }
            None => g += PAGE_SIZE,
        }
    }
    out
}

#[test]
fn small_and_large_leaves_translate() {
    for_both_formats!(SlatConfig::default(), |m| {
        // 4 KiB up to the 2 MiB boundary, then one 2 MiB leaf, then 4 KiB.
        m.map(0x1f_e000, 0x9f_e000, 2 * MIB + 0x3000, GuestRights::ALL).unwrap();
        assert_eq!(
            leaves(m, 0x1f_e000, 2 * MIB + 0x3000),
            [(0x1f_e000, PAGE_SIZE), (0x1f_f000, PAGE_SIZE), (0x20_0000, 2 * MIB), (0x40_0000, PAGE_SIZE)]
        );
        let t = m.translate(0x2a_b123).unwrap();
        assert_eq!(t, GuestTranslation { hpa: 0xaa_b123, rights: GuestRights::ALL, page_size: 2 * MIB });
        assert_eq!(m.translate(0x40_1000), None);
    });
}

#[test]
fn large_pages_need_matching_alignment_on_both_sides() {
    for_both_formats!(SlatConfig::default(), |m| {
        m.map(0x20_0000, 0x30_1000, 2 * MIB, GuestRights::READ).unwrap();
        assert_eq!(m.translate(0x20_0000).unwrap().page_size, PAGE_SIZE);
    });
    let small_only = SlatConfig { large_pages: false, ..SlatConfig::default() };
    for_both_formats!(small_only, |m| {
        m.map(0x20_0000, 0x40_0000, 2 * MIB, GuestRights::READ).unwrap();
        assert_eq!(m.translate(0x20_0000).unwrap().page_size, PAGE_SIZE);
    });
}

#[test]
fn overlap_is_refused_without_changes() {
    for_both_formats!(SlatConfig::default(), |m| {
        m.map(0x5000, 0x10_5000, PAGE_SIZE, GuestRights::READ).unwrap();
        let before = leaves(m, 0, 4 * MIB);
        assert_eq!(
            m.map(0x1000, 0x20_1000, 8 * PAGE_SIZE, GuestRights::ALL),
            Err(GuestMapError::AlreadyMapped { gpa: 0x5000 })
        );
        assert_eq!(leaves(m, 0, 4 * MIB), before);
        // A large leaf blocks every page under it.
        m.map(0x40_0000, 0x40_0000, 2 * MIB, GuestRights::READ).unwrap();
        assert_eq!(
            m.map(0x3f_f000, 0x1000, 2 * PAGE_SIZE, GuestRights::READ),
            Err(GuestMapError::AlreadyMapped { gpa: 0x40_0000 })
        );
        assert_eq!(m.translate(0x3f_f000), None);
    });
}

#[test]
fn running_out_of_tables_leaves_no_translation() {
    for_both_formats!(SlatConfig::default(), |m| {
        // Four tables exist; the rest of the range needs two more page tables.
        m.map(0, 0, PAGE_SIZE, GuestRights::READ).unwrap();
        m.mem.limit = Some(4);
        let err = m.map(0x20_0000 - PAGE_SIZE, 0x100_0000, 2 * MIB + 2 * PAGE_SIZE, GuestRights::ALL);
        assert_eq!(err, Err(GuestMapError::OutOfMemory));
        assert_eq!(leaves(m, 0, 8 * MIB), [(0, PAGE_SIZE)]);
        m.mem.limit = None;
        m.map(0x20_0000 - PAGE_SIZE, 0x100_0000 - PAGE_SIZE, 2 * MIB + 2 * PAGE_SIZE, GuestRights::ALL).unwrap();
    });
}

#[test]
fn unmap_reports_every_leaf_and_frees_the_range() {
    for_both_formats!(SlatConfig::default(), |m| {
        m.map(0x1f_f000, 0x7f_f000, 2 * MIB + 0x3000, GuestRights::READ_WRITE).unwrap();
        let mut removed = Vec::new();
        m.unmap(0x1f_f000, 2 * MIB + 0x3000, |r| removed.push(r)).unwrap();
        assert_eq!(
            removed,
            [
                RemovedMapping { gpa: 0x1f_f000, hpa: 0x7f_f000, size: PAGE_SIZE },
                RemovedMapping { gpa: 0x20_0000, hpa: 0x80_0000, size: 2 * MIB },
                RemovedMapping { gpa: 0x40_0000, hpa: 0xa0_0000, size: PAGE_SIZE },
                RemovedMapping { gpa: 0x40_1000, hpa: 0xa0_1000, size: PAGE_SIZE },
            ]
        );
        assert!(leaves(m, 0, 8 * MIB).is_empty());
    });
}

#[test]
fn unmap_refuses_holes_and_partial_large_leaves_whole() {
    for_both_formats!(SlatConfig::default(), |m| {
        m.map(0x1000, 0x1000, PAGE_SIZE, GuestRights::READ).unwrap();
        m.map(0x3000, 0x3000, PAGE_SIZE, GuestRights::READ).unwrap();
        m.map(0x20_0000, 0x20_0000, 2 * MIB, GuestRights::READ).unwrap();
        let before = leaves(m, 0, 4 * MIB);
        let none = |_| panic!("nothing may be reported");
        assert_eq!(m.unmap(0x1000, 3 * PAGE_SIZE, none), Err(GuestMapError::NotMapped { gpa: 0x2000 }));
        assert_eq!(m.unmap(0x20_0000, PAGE_SIZE, none), Err(GuestMapError::SplitsLargePage { gpa: 0x20_0000 }));
        assert_eq!(m.unmap(0x3000, 0x20_0000, none), Err(GuestMapError::NotMapped { gpa: 0x4000 }));
        assert_eq!(leaves(m, 0, 4 * MIB), before);
    });
}

#[test]
fn an_emptied_small_table_is_reused_instead_of_a_large_leaf() {
    for_both_formats!(SlatConfig::default(), |m| {
        m.map(0x20_0000, 0x20_0000, PAGE_SIZE, GuestRights::READ).unwrap();
        m.unmap(0x20_0000, PAGE_SIZE, |_| {}).unwrap();
        m.map(0x20_0000, 0x40_0000, 2 * MIB, GuestRights::READ).unwrap();
        assert_eq!(m.translate(0x3f_f000).unwrap().hpa, 0x5f_f000);
        assert_eq!(m.translate(0x20_0000).unwrap().page_size, PAGE_SIZE);
    });
}

#[test]
fn alignment_and_address_limits() {
    let narrow = SlatConfig { phys_addr_width: PhysAddrWidth::new(39).unwrap(), large_pages: true };
    for_both_formats!(narrow, |m| {
        let r = GuestRights::READ;
        assert_eq!(m.map(0x1001, 0, PAGE_SIZE, r), Err(GuestMapError::Misaligned));
        assert_eq!(m.map(0x1000, 0x10, PAGE_SIZE, r), Err(GuestMapError::Misaligned));
        assert_eq!(m.map(0x1000, 0, 0, r), Err(GuestMapError::Misaligned));
        assert_eq!(m.map(0x1000, 0, 0x800, r), Err(GuestMapError::Misaligned));
        assert_eq!(m.guest_limit(), 1 << 39);
        assert_eq!(m.map((1 << 39) - PAGE_SIZE, 0, 2 * PAGE_SIZE, r), Err(GuestMapError::GuestAddressTooLarge));
        assert_eq!(m.map(0, (1 << 39) - PAGE_SIZE, 2 * PAGE_SIZE, r), Err(GuestMapError::HostAddressTooLarge));
        assert_eq!(m.map(u64::MAX - 0xfff, 0, PAGE_SIZE, r), Err(GuestMapError::GuestAddressTooLarge));
        assert_eq!(m.map(0, u64::MAX - 0xfff, PAGE_SIZE, r), Err(GuestMapError::HostAddressTooLarge));
        m.map((1 << 39) - PAGE_SIZE, (1 << 39) - PAGE_SIZE, PAGE_SIZE, r).unwrap();
        assert_eq!(m.translate(1 << 39), None);
        assert_eq!(m.unmap(1 << 39, PAGE_SIZE, |_| {}), Err(GuestMapError::GuestAddressTooLarge));
    });
    for_both_formats!(SlatConfig::default(), |m| {
        // Guest-physical addresses are not virtual: no canonical hole, but
        // a 4-level walk ends at 2^48.
        assert_eq!(m.guest_limit(), 1 << 48);
        m.map(1 << 47, (1 << 52) - 2 * MIB, 2 * MIB, GuestRights::READ).unwrap();
        assert_eq!(m.translate((1 << 47) + 0x1234).unwrap().hpa, (1 << 52) - 2 * MIB + 0x1234);
        assert_eq!(
            m.map((1 << 48) - PAGE_SIZE, 0, 2 * PAGE_SIZE, GuestRights::READ),
            Err(GuestMapError::GuestAddressTooLarge)
        );
    });
    assert_eq!(PhysAddrWidth::new(35), None);
    assert_eq!(PhysAddrWidth::new(53), None);
    assert_eq!(PhysAddrWidth::new(52), Some(PhysAddrWidth::MAX));
}

#[test]
fn tables_are_listed_children_first_and_root_last() {
    for_both_formats!(SlatConfig::default(), |m| {
        m.map(0, 0, PAGE_SIZE, GuestRights::READ).unwrap();
        m.map(0x20_0000, 0x20_0000, 2 * MIB, GuestRights::READ).unwrap();
        m.map(1 << 40, 0, PAGE_SIZE, GuestRights::READ).unwrap();
        let mut tables = Vec::new();
        m.for_each_table(|t| tables.push(t));
        // Root, 2 PDPTs, 2 PDs, 2 PTs; the 2 MiB leaf has no table.
        assert_eq!(tables.len(), 7);
        assert_eq!(*tables.last().unwrap(), m.root());
        let mut unique = tables.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 7);
    });
}

#[test]
fn unmap_present_removes_what_is_there_around_holes() {
    for_both_formats!(SlatConfig::default(), |m| {
        m.map(0x1f_f000, 0x7f_f000, 2 * MIB + 0x3000, GuestRights::READ_WRITE).unwrap();
        m.unmap(0x40_0000, PAGE_SIZE, |_| {}).unwrap();
        let mut removed = Vec::new();
        m.unmap_present(0x1f_f000, 2 * MIB + 0x3000, |r| removed.push(r));
        assert_eq!(
            removed,
            [
                RemovedMapping { gpa: 0x1f_f000, hpa: 0x7f_f000, size: PAGE_SIZE },
                RemovedMapping { gpa: 0x20_0000, hpa: 0x80_0000, size: 2 * MIB },
                RemovedMapping { gpa: 0x40_1000, hpa: 0xa0_1000, size: PAGE_SIZE },
            ]
        );
        assert!(leaves(m, 0, 8 * MIB).is_empty());
    });
}

#[test]
fn held_writes_come_back_only_where_the_map_granted_them() {
    for_both_formats!(SlatConfig::default(), |m| {
        m.map(0x1000, 0x8000, PAGE_SIZE, GuestRights::ALL).unwrap();
        m.map(0x2000, 0x9000, PAGE_SIZE, GuestRights::READ_EXECUTE).unwrap();
        let rights = |m: &SlatMapper<'_, _, _>, gpa| m.translate(gpa).unwrap().rights;
        assert_eq!(m.hold_write(0x1000, true), Ok(true));
        assert_eq!(rights(m, 0x1000), GuestRights::READ_EXECUTE);
        assert_eq!(m.translate(0x1000).unwrap().hpa, 0x8000);
        assert_eq!(m.hold_write(0x1000, true), Ok(false), "held twice is one hold");
        assert_eq!(m.hold_write(0x1000, false), Ok(true));
        assert_eq!(rights(m, 0x1000), GuestRights::ALL);
        assert_eq!(m.hold_write(0x1000, false), Ok(false));
        // A read-only page neither gains write by a give-back nor changes.
        assert_eq!(m.hold_write(0x2000, false), Ok(false));
        assert_eq!(m.hold_write(0x2000, true), Ok(false));
        assert_eq!(m.hold_write(0x2000, false), Ok(false));
        assert_eq!(rights(m, 0x2000), GuestRights::READ_EXECUTE);
        assert_eq!(m.hold_write(0x3000, true), Err(GuestMapError::NotMapped { gpa: 0x3000 }));
        assert_eq!(m.hold_write(0x1800, true), Err(GuestMapError::Misaligned));
        // Unmapping a held page and mapping it again grants write afresh.
        m.hold_write(0x1000, true).unwrap();
        m.unmap(0x1000, PAGE_SIZE, |_| {}).unwrap();
        m.map(0x1000, 0x8000, PAGE_SIZE, GuestRights::ALL).unwrap();
        assert_eq!(rights(m, 0x1000), GuestRights::ALL);
        assert_eq!(m.hold_write(0x1000, false), Ok(false));
    });
}

#[test]
fn a_large_leaf_is_not_split_to_hold_a_write() {
    for_both_formats!(SlatConfig::default(), |m| {
        m.map(0x20_0000, 0x40_0000, 2 * MIB, GuestRights::ALL).unwrap();
        assert_eq!(m.hold_write(0x20_1000, true), Err(GuestMapError::SplitsLargePage { gpa: 0x20_1000 }));
        assert_eq!(m.translate(0x20_1000).unwrap().rights, GuestRights::ALL);
    });
}

const RW: GuestRights = GuestRights::READ_WRITE;
const RX: GuestRights = GuestRights::READ_EXECUTE;
const ALL: GuestRights = GuestRights::ALL;
const NONE: GuestRights = GuestRights::NONE;

fn rights<F: SlatFormat, M: PageTableMemory>(m: &SlatMapper<'_, F, M>, gpa: u64) -> GuestRights {
    m.translate(gpa).unwrap().rights
}

/// Every page's (hpa, rights) in `[gpa, gpa+len)`: what a guest sees.
fn view<F: SlatFormat, M: PageTableMemory>(
    m: &SlatMapper<'_, F, M>,
    gpa: u64,
    len: u64,
) -> Vec<Option<(u64, GuestRights)>> {
    (gpa..gpa + len).step_by(PAGE_SIZE as usize).map(|g| m.translate(g).map(|t| (t.hpa, t.rights))).collect()
}

/// Writes a 1 GiB leaf, which `map` never builds.
fn map_huge<F: SlatFormat, M: PageTableMemory>(m: &mut SlatMapper<'_, F, M>, gpa: u64, hpa: u64, r: GuestRights) {
    let table = m.table_for(gpa, 2).unwrap();
    let leaf = m.format.leaf_entry(hpa, r, true);
    m.mem.write_entry(table, index(gpa, 2), leaf.into());
}

/// An empty hierarchy of `m`'s format and config in `mem`.
fn empty_like<'m, F: SlatFormat + Copy>(
    m: &SlatMapper<'_, F, FakeMemory>,
    mem: &'m mut FakeMemory,
) -> SlatMapper<'m, F, FakeMemory> {
    let root = SlatMapper::<F, FakeMemory>::new_root(mem).unwrap();
    SlatMapper::new(mem, root, *m.format(), m.config())
}

#[test]
fn protect_narrows_exactly_the_range() {
    for_both_formats!(SlatConfig::default(), |m| {
        m.map(0x1000, 0x10_1000, 8 * PAGE_SIZE, ALL).unwrap();
        let before = view(m, 0, 16 * PAGE_SIZE);
        assert_eq!(m.protect(0x3000, 3 * PAGE_SIZE, RX), Ok(true));
        for (i, page) in view(m, 0, 16 * PAGE_SIZE).into_iter().enumerate() {
            let g = i as u64 * PAGE_SIZE;
            let want = before[i].map(|(hpa, r)| (hpa, if (0x3000..0x6000).contains(&g) { RX } else { r }));
            assert_eq!(page, want, "page {g:#x}");
        }
        assert_eq!(m.granted(0x4000), Some(ALL));
        assert_eq!(m.protect(0x3000, 3 * PAGE_SIZE, RX), Ok(false), "the same protection again");
        // A hole anywhere refuses the whole range.
        let before = view(m, 0, 16 * PAGE_SIZE);
        assert_eq!(m.protect(0x8000, 2 * PAGE_SIZE, NONE), Err(GuestMapError::NotMapped { gpa: 0x9000 }));
        assert_eq!(m.protect(0, 2 * PAGE_SIZE, NONE), Err(GuestMapError::NotMapped { gpa: 0 }));
        assert_eq!(m.protect(0x1800, PAGE_SIZE, NONE), Err(GuestMapError::Misaligned));
        assert_eq!(m.protect(0x1000, 0, NONE), Err(GuestMapError::Misaligned));
        assert_eq!(view(m, 0, 16 * PAGE_SIZE), before);
    });
}

#[test]
fn rights_the_format_cannot_express_are_refused() {
    for_both_formats!(SlatConfig::default(), |m| {
        m.map(0x1000, 0x10_1000, PAGE_SIZE, ALL).unwrap();
        let write_only = GuestRights { read: false, write: true, execute: false };
        let write_execute = GuestRights { read: false, write: true, execute: true };
        assert_eq!(m.protect(0x1000, PAGE_SIZE, write_only), Err(GuestMapError::WriteWithoutRead));
        assert_eq!(m.protect(0x1000, PAGE_SIZE, write_execute), Err(GuestMapError::WriteWithoutRead));
        // NPT never, EPT not on a CPU without execute-only leaves.
        let x = GuestRights::EXECUTE_ONLY;
        assert_eq!(m.protect(0x1000, PAGE_SIZE, x), Err(GuestMapError::ExecuteWithoutRead));
        assert_eq!(rights(m, 0x1000), ALL);
    });
    with_mapper(EptFormat { execute_only: true }, SlatConfig::default(), |m| {
        m.map(0x1000, 0x10_1000, PAGE_SIZE, RX).unwrap();
        m.map(0x2000, 0x10_2000, PAGE_SIZE, RW).unwrap();
        assert_eq!(m.protect(0x1000, 2 * PAGE_SIZE, GuestRights::EXECUTE_ONLY), Ok(true));
        assert_eq!(rights(m, 0x1000), GuestRights::EXECUTE_ONLY);
        assert_eq!(rights(m, 0x2000), NONE, "nothing granted is allowed");
    });
}

#[test]
fn a_page_without_access_stays_a_mapping() {
    for_both_formats!(SlatConfig::default(), |m| {
        m.map(0x1000, 0x10_1000, 2 * PAGE_SIZE, RW).unwrap();
        assert_eq!(m.protect(0x1000, PAGE_SIZE, NONE), Ok(true));
        let leaf = m.leaf_at(0x1000).unwrap();
        assert!(!m.format.is_present(leaf.entry), "the CPU sees no page");
        assert_eq!(m.format.address(leaf.entry), 0x10_1000);
        let t = m.translate(0x1000).unwrap();
        assert_eq!(t, GuestTranslation { hpa: 0x10_1000, rights: NONE, page_size: PAGE_SIZE });
        assert_eq!(m.granted(0x1000), Some(RW));
        assert_eq!(m.map(0x1000, 0x20_0000, PAGE_SIZE, RW), Err(GuestMapError::AlreadyMapped { gpa: 0x1000 }));
        assert_eq!(m.hold_write(0x1000, true), Ok(false), "no hardware right changes");
        let mut removed = Vec::new();
        m.unmap(0x1000, 2 * PAGE_SIZE, |r| removed.push(r)).unwrap();
        assert_eq!(
            removed,
            [
                RemovedMapping { gpa: 0x1000, hpa: 0x10_1000, size: PAGE_SIZE },
                RemovedMapping { gpa: 0x2000, hpa: 0x10_2000, size: PAGE_SIZE },
            ]
        );
        assert_eq!(m.translate(0x1000), None);
        assert_eq!(m.granted(0x1000), None);
        // Mapped again, it is granted afresh: nothing withheld, nothing held.
        m.map(0x1000, 0x10_1000, PAGE_SIZE, RW).unwrap();
        assert_eq!(rights(m, 0x1000), RW);
        // Teardown finds it too.
        m.protect(0x1000, PAGE_SIZE, NONE).unwrap();
        let mut removed = Vec::new();
        m.unmap_present(0, 4 * PAGE_SIZE, |r| removed.push(r));
        assert_eq!(removed, [RemovedMapping { gpa: 0x1000, hpa: 0x10_1000, size: PAGE_SIZE }]);
    });
}

#[test]
fn execute_withheld_on_npt_is_nx() {
    with_mapper(NptFormat, SlatConfig::default(), |m| {
        m.map(0x1000, 0x10_1000, PAGE_SIZE, ALL).unwrap();
        m.protect(0x1000, PAGE_SIZE, RW).unwrap();
        let entry = m.leaf_at(0x1000).unwrap().entry;
        assert!(entry.present() && entry.writable() && entry.no_execute());
    });
}

#[test]
fn a_reallowed_page_gets_back_exactly_what_the_map_granted() {
    for_both_formats!(SlatConfig::default(), |m| {
        m.map(0x1000, 0x10_1000, PAGE_SIZE, GuestRights::READ).unwrap();
        m.map(0x2000, 0x10_2000, PAGE_SIZE, RX).unwrap();
        m.map(0x3000, 0x10_3000, PAGE_SIZE, ALL).unwrap();
        assert_eq!(m.protect(0x1000, 3 * PAGE_SIZE, ALL), Ok(false), "allowing all narrows nothing");
        for allowed in [NONE, GuestRights::READ, RW, RX, ALL] {
            m.protect(0x1000, 3 * PAGE_SIZE, allowed).unwrap();
            m.protect(0x1000, 3 * PAGE_SIZE, ALL).unwrap();
            assert_eq!(rights(m, 0x1000), GuestRights::READ, "after {allowed:?}");
            assert_eq!(rights(m, 0x2000), RX, "after {allowed:?}");
            assert_eq!(rights(m, 0x3000), ALL, "after {allowed:?}");
        }
        m.protect(0x1000, 3 * PAGE_SIZE, RW).unwrap();
        let r = GuestRights::READ;
        assert_eq!([rights(m, 0x1000), rights(m, 0x2000), rights(m, 0x3000)], [r, r, RW]);
    });
}

#[test]
fn splitting_a_large_leaf_keeps_every_other_page() {
    for_both_formats!(SlatConfig::default(), |m| {
        m.map(0x20_0000, 0x40_0000, 2 * MIB, ALL).unwrap();
        m.map(0x40_0000, 0x60_0000, 2 * MIB, RW).unwrap();
        // A range wholly over one large leaf leaves it large.
        assert_eq!(m.protect(0x40_0000, 2 * MIB, GuestRights::READ), Ok(true));
        assert_eq!(m.translate(0x40_0000).unwrap().page_size, 2 * MIB);
        assert_eq!(rights(m, 0x5f_f000), GuestRights::READ);
        assert_eq!(m.granted(0x5f_f000), Some(RW));
        // Two pages across the boundary split both.
        assert_eq!(m.protect(0x3f_f000, 2 * PAGE_SIZE, NONE), Ok(true));
        for (i, page) in view(m, 0x20_0000, 4 * MIB).into_iter().enumerate() {
            let g = 0x20_0000 + i as u64 * PAGE_SIZE;
            let want = match g {
                0x3f_f000 | 0x40_0000 => NONE,
                ..0x40_0000 => ALL,
                _ => GuestRights::READ,
            };
            assert_eq!(page, Some((g + 0x20_0000, want)), "page {g:#x}");
            assert_eq!(m.translate(g).unwrap().page_size, PAGE_SIZE);
        }
        assert_eq!(m.granted(0x40_0000), Some(RW));
        assert_eq!(m.granted(0x20_0000), Some(ALL));
        // Split leaves are what a map of 4 KiB pages builds.
        let leaf: u64 = m.leaf_at(0x20_0000).unwrap().entry.into();
        assert_eq!(leaf, m.format.leaf_entry(0x40_0000, ALL, false).into());
        // The split leaves still carry the large leaf's protection.
        assert_eq!(m.protect(0x40_1000, PAGE_SIZE, ALL), Ok(true));
        assert_eq!(rights(m, 0x40_1000), RW);
    });
}

#[test]
fn a_1_gib_leaf_splits_down_to_the_page() {
    for_both_formats!(SlatConfig::default(), |m| {
        map_huge(m, 1 << 30, 3 << 30, ALL);
        let page = (1 << 30) + 5 * MIB + 0x3000;
        assert_eq!(m.protect(page, PAGE_SIZE, RX), Ok(true));
        assert_eq!(leaves(m, (1 << 30) + 4 * MIB, 2 * MIB).len(), 512);
        assert_eq!(leaves(m, 1 << 30, 4 * MIB), [(1 << 30, 2 * MIB), ((1 << 30) + 2 * MIB, 2 * MIB)]);
        let leaf: u64 = m.leaf_at(1 << 30).unwrap().entry.into();
        assert_eq!(leaf, m.format.leaf_entry(3 << 30, ALL, true).into());
        let mut g = 1 << 30;
        while g < 2 << 30 {
            let want = if g == page { RX } else { ALL };
            assert_eq!(m.translate(g).map(|t| (t.hpa, t.rights)), Some((g + (2 << 30), want)), "{g:#x}");
            g += if (g & !(2 * MIB - 1)) == (page & !(2 * MIB - 1)) { PAGE_SIZE } else { 2 * MIB - PAGE_SIZE };
        }
    });
}

#[test]
fn running_out_of_memory_in_a_split_changes_no_translation() {
    for_both_formats!(SlatConfig::default(), |m| {
        // Root, PDPT and PD: no table is left for the split.
        m.map(0x20_0000, 0x40_0000, 2 * MIB, RW).unwrap();
        m.mem.limit = Some(3);
        let before = view(m, 0x20_0000, 2 * MIB);
        assert_eq!(m.protect(0x20_1000, PAGE_SIZE, NONE), Err(GuestMapError::OutOfMemory));
        assert_eq!(view(m, 0x20_0000, 2 * MIB), before);
        assert_eq!(m.translate(0x20_1000).unwrap().page_size, 2 * MIB);
    });
    for_both_formats!(SlatConfig::default(), |m| {
        // A 1 GiB leaf splits to 2 MiB, then has no table for the page.
        map_huge(m, 1 << 30, 3 << 30, ALL);
        m.protect(1 << 30, 1 << 30, RX).unwrap();
        // Root and PDPT: one table is left, for the PD.
        m.mem.limit = Some(3);
        let sample = |m: &SlatMapper<'_, _, _>| view(m, (1 << 30) + 6 * MIB, 2 * MIB + PAGE_SIZE);
        let before = sample(m);
        assert_eq!(m.protect((1 << 30) + 7 * MIB, PAGE_SIZE, NONE), Err(GuestMapError::OutOfMemory));
        assert_eq!(sample(m), before);
        assert_eq!(m.translate((1 << 30) + 7 * MIB).unwrap().page_size, 2 * MIB, "the first split stays");
        assert_eq!(rights(m, (1 << 30) + 300 * MIB), RX);
        m.mem.limit = None;
        assert_eq!(m.protect((1 << 30) + 7 * MIB, PAGE_SIZE, NONE), Ok(true));
        assert_eq!(rights(m, (1 << 30) + 7 * MIB), NONE);
        assert_eq!(rights(m, (1 << 30) + 7 * MIB + PAGE_SIZE), RX);
    });
}

#[test]
fn a_held_write_and_a_protection_compose() {
    for_both_formats!(SlatConfig::default(), |m| {
        m.map(0x1000, 0x10_1000, PAGE_SIZE, ALL).unwrap();
        // Held first: a protection allowing write does not give it back.
        assert_eq!(m.hold_write(0x1000, true), Ok(true));
        assert_eq!(m.protect(0x1000, PAGE_SIZE, RW), Ok(true));
        assert_eq!(rights(m, 0x1000), GuestRights::READ);
        assert_eq!(m.protect(0x1000, PAGE_SIZE, ALL), Ok(true));
        assert_eq!(rights(m, 0x1000), RX);
        assert_eq!(m.hold_write(0x1000, false), Ok(true));
        assert_eq!(rights(m, 0x1000), ALL);
        // Protected first: giving back a held write does not restore it.
        assert_eq!(m.protect(0x1000, PAGE_SIZE, RX), Ok(true));
        assert_eq!(m.hold_write(0x1000, true), Ok(false));
        assert_eq!(m.hold_write(0x1000, false), Ok(false));
        assert_eq!(rights(m, 0x1000), RX);
        // Held while protected: still held once the protection goes.
        assert_eq!(m.hold_write(0x1000, true), Ok(false));
        assert_eq!(m.protect(0x1000, PAGE_SIZE, ALL), Ok(false));
        assert_eq!(rights(m, 0x1000), RX);
        assert_eq!(m.hold_write(0x1000, false), Ok(true));
        assert_eq!(rights(m, 0x1000), ALL);
        // No access and a hold: each gives back only its own.
        m.hold_write(0x1000, true).unwrap();
        m.protect(0x1000, PAGE_SIZE, NONE).unwrap();
        assert_eq!(rights(m, 0x1000), NONE);
        assert_eq!(m.hold_write(0x1000, false), Ok(false));
        assert_eq!(m.hold_write(0x1000, true), Ok(false));
        m.protect(0x1000, PAGE_SIZE, ALL).unwrap();
        assert_eq!(rights(m, 0x1000), RX);
        assert_eq!(m.granted(0x1000), Some(ALL));
    });
}

#[test]
fn a_copy_has_what_the_map_granted() {
    for_both_formats!(SlatConfig::default(), |m| {
        m.map(0x1000, 0x10_1000, 3 * PAGE_SIZE, ALL).unwrap();
        m.map(0x4000, 0x10_4000, PAGE_SIZE, RX).unwrap();
        m.map(0x20_0000, 0x40_0000, 2 * MIB, RW).unwrap();
        m.map(0x40_0000, 0x60_0000, 2 * MIB, ALL).unwrap();
        map_huge(m, 1 << 30, 3 << 30, RX);
        m.protect(0x1000, PAGE_SIZE, NONE).unwrap();
        m.hold_write(0x2000, true).unwrap();
        m.protect(0x3000, 2 * PAGE_SIZE, GuestRights::READ).unwrap();
        m.protect(0x20_1000, PAGE_SIZE, NONE).unwrap();
        m.protect(1 << 30, PAGE_SIZE, NONE).unwrap();
        let mut mem = FakeMemory::new();
        let mut copy = empty_like(m, &mut mem);
        m.copy_into(&mut copy).unwrap();
        let granted = [(0x1000, 0x10_1000, ALL), (0x2000, 0x10_2000, ALL), (0x3000, 0x10_3000, ALL)];
        for (g, hpa, r) in granted.into_iter().chain([(0x4000, 0x10_4000, RX), (0x20_1000, 0x40_1000, RW)]) {
            assert_eq!(copy.translate(g).map(|t| (t.hpa, t.rights)), Some((hpa, r)), "{g:#x}");
        }
        // Same leaves, sizes too: split ones small, large ones large.
        assert_eq!(leaves(&copy, 0, 8 * MIB), leaves(m, 0, 8 * MIB));
        assert_eq!(copy.translate(0x40_0000).unwrap().page_size, 2 * MIB);
        // The 1 GiB leaf comes back as 2 MiB ones, the split part as pages.
        assert_eq!(copy.translate((1 << 30) + 0x1000).unwrap().rights, RX);
        assert_eq!(copy.translate((1 << 30) + 0x1000).unwrap().page_size, PAGE_SIZE);
        let t = copy.translate((1 << 30) + 900 * MIB + 0x1234).unwrap();
        assert_eq!(t, GuestTranslation { hpa: (3 << 30) + 900 * MIB + 0x1234, rights: RX, page_size: 2 * MIB });
        // The source is unchanged.
        assert_eq!(rights(m, 0x1000), NONE);
        assert_eq!(rights(m, 0x2000), RX);
        // A copy over what is there is refused.
        assert_eq!(m.copy_into(&mut copy), Err(GuestMapError::AlreadyMapped { gpa: 0x1000 }));
    });
}

#[test]
fn a_copy_out_of_memory_holds_only_correct_translations() {
    for_both_formats!(SlatConfig::default(), |m| {
        m.map(0x1000, 0x10_1000, PAGE_SIZE, ALL).unwrap();
        m.map(0x20_0000, 0x40_0000, 2 * MIB, RW).unwrap();
        m.map(1 << 40, 0x80_0000, PAGE_SIZE, RX).unwrap();
        m.protect(0x1000, PAGE_SIZE, NONE).unwrap();
        let mut mem = FakeMemory::new();
        mem.limit = Some(5);
        let mut copy = empty_like(m, &mut mem);
        assert_eq!(m.copy_into(&mut copy), Err(GuestMapError::OutOfMemory));
        assert_eq!(copy.translate(0x1000).map(|t| (t.hpa, t.rights)), Some((0x10_1000, ALL)));
        assert_eq!(copy.translate(0x20_0000).map(|t| (t.hpa, t.rights)), Some((0x40_0000, RW)));
        assert_eq!(copy.translate(1 << 40), None);
    });
}

#[test]
fn lifting_protections_leaves_what_the_map_granted_and_the_held_write() {
    for_both_formats!(SlatConfig::default(), |m| {
        m.map(0x1000, 0x10_1000, 4 * PAGE_SIZE, ALL).unwrap();
        m.map(0x8000, 0x10_8000, PAGE_SIZE, GuestRights::READ).unwrap();
        m.map(0x20_0000, 0x40_0000, 2 * MIB, ALL).unwrap();
        assert!(!m.lift_protections(), "nothing to lift");
        m.protect(0x1000, PAGE_SIZE, NONE).unwrap();
        m.protect(0x2000, PAGE_SIZE, RX).unwrap();
        m.hold_write(0x3000, true).unwrap();
        m.protect(0x3000, PAGE_SIZE, GuestRights::READ).unwrap();
        m.protect(0x8000, PAGE_SIZE, NONE).unwrap();
        m.protect(0x20_0000, 2 * MIB, GuestRights::READ).unwrap();
        assert!(m.lift_protections());
        assert_eq!(rights(m, 0x1000), ALL);
        assert_eq!(rights(m, 0x2000), ALL);
        assert_eq!(rights(m, 0x3000), RX, "the held write stays held");
        assert_eq!(rights(m, 0x4000), ALL);
        assert_eq!(rights(m, 0x8000), GuestRights::READ, "never more than the map granted");
        assert_eq!(rights(m, 0x20_0000), ALL);
        assert_eq!(m.translate(0x20_0000).unwrap().page_size, 2 * MIB);
        assert!(!m.lift_protections(), "lifted once");
    });
}
