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
