use super::*;
use std::collections::HashMap;

/// Page tables in a hash map, handing out frames from a fake physical range.
#[derive(Default)]
pub(crate) struct FakeMemory {
    tables: HashMap<u64, [u64; ENTRIES]>,
    next: u64,
    pub limit: Option<usize>,
}

impl FakeMemory {
    pub(crate) fn new() -> Self {
        FakeMemory { tables: HashMap::new(), next: 0x100_0000, limit: None }
    }
}

impl PageTableMemory for FakeMemory {
    fn alloc_table(&mut self) -> Option<u64> {
        if self.limit.is_some_and(|l| self.tables.len() >= l) {
            return None;
        }
        let frame = self.next;
        self.next += PAGE_SIZE;
        self.tables.insert(frame, [0; ENTRIES]);
        Some(frame)
    }

    fn read_entry(&self, table: u64, index: usize) -> u64 {
        self.tables.get(&table).expect("walk reached a frame that is not a table")[index]
    }

    fn write_entry(&mut self, table: u64, index: usize, value: u64) {
        self.tables.get_mut(&table).expect("write to a frame that is not a table")[index] = value;
    }
}

fn setup() -> (FakeMemory, u64) {
    let mut mem = FakeMemory::new();
    let root = Mapper::new_root(&mut mem).unwrap();
    (mem, root)
}

const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;

#[test]
fn entry_layout_matches_the_manual() {
    let e =
        PageTableEntry::new().with_present(true).with_writable(true).with_no_execute(true).with_address(0x1234_5000);
    assert_eq!(u64::from(e), 0x8000_0000_1234_5003);
    assert_eq!(e.address(), 0x1234_5000);
    assert_eq!(u64::from(PageTableEntry::new().with_page_size(true).with_global(true)), 0x180);
}

#[test]
fn small_mapping_translates_with_rights() {
    let (mut mem, root) = setup();
    let mut m = Mapper::new(&mut mem, root);
    m.map(KERNEL_BASE, 0x20_0000, 3 * PAGE_SIZE, MapFlags::KERNEL_TEXT).unwrap();
    let t = m.translate(KERNEL_BASE + PAGE_SIZE + 0x10).unwrap();
    assert_eq!(t.phys, 0x20_1010);
    assert!(t.executable && !t.writable && !t.user);
    assert_eq!(t.page_size, PAGE_SIZE);
    assert!(m.translate(KERNEL_BASE + 3 * PAGE_SIZE).is_none());
}

#[test]
fn large_pages_are_used_when_aligned() {
    let (mut mem, root) = setup();
    let mut m = Mapper::new(&mut mem, root);
    let base = 0xffff_8000_0000_0000;
    // 1 GiB + 2 MiB + 4 KiB: one huge, one large, one small leaf.
    let len = HUGE_PAGE_SIZE + LARGE_PAGE_SIZE + PAGE_SIZE;
    m.map(base, 0, len, MapFlags::KERNEL_DATA).unwrap();
    assert_eq!(m.translate(base + 5).unwrap().page_size, HUGE_PAGE_SIZE);
    assert_eq!(m.translate(base + HUGE_PAGE_SIZE + 7).unwrap().page_size, LARGE_PAGE_SIZE);
    let last = m.translate(base + HUGE_PAGE_SIZE + LARGE_PAGE_SIZE).unwrap();
    assert_eq!((last.page_size, last.phys), (PAGE_SIZE, HUGE_PAGE_SIZE + LARGE_PAGE_SIZE));
    let report = audit(&mem, root);
    assert_eq!(report.mappings, 3);
    assert_eq!(report.writable_executable, 0);
}

#[test]
fn large_pages_can_be_disabled() {
    let (mut mem, root) = setup();
    let mut m = Mapper::new(&mut mem, root);
    m.large_pages = false;
    m.map(0x40_0000, 0x40_0000, LARGE_PAGE_SIZE, MapFlags::KERNEL_RODATA).unwrap();
    assert_eq!(audit(&mem, root).mappings, 512);
}

#[test]
fn writable_and_executable_is_refused() {
    let (mut mem, root) = setup();
    let flags = MapFlags { writable: true, executable: true, ..MapFlags::KERNEL_DATA };
    let err = Mapper::new(&mut mem, root).map(KERNEL_BASE, 0, PAGE_SIZE, flags);
    assert_eq!(err, Err(MapError::WritableAndExecutable));
    assert_eq!(audit(&mem, root).mappings, 0);
}

#[test]
fn bad_ranges_are_refused() {
    let (mut mem, root) = setup();
    let mut m = Mapper::new(&mut mem, root);
    let f = MapFlags::KERNEL_DATA;
    assert_eq!(m.map(0x1001, 0, PAGE_SIZE, f), Err(MapError::Misaligned));
    assert_eq!(m.map(0x1000, 0x10, PAGE_SIZE, f), Err(MapError::Misaligned));
    assert_eq!(m.map(0x1000, 0, 0, f), Err(MapError::Misaligned));
    assert_eq!(m.map(0x0000_8000_0000_0000, 0, PAGE_SIZE, f), Err(MapError::NonCanonical));
    // Crossing from the lower half into the hole.
    assert_eq!(m.map(0x0000_7fff_ffff_f000, 0, 2 * PAGE_SIZE, f), Err(MapError::NonCanonical));
    assert_eq!(m.map(0xffff_ffff_ffff_f000, 0, 2 * PAGE_SIZE, f), Err(MapError::NonCanonical));
    assert_eq!(m.map(0x1000, 1 << 52, PAGE_SIZE, f), Err(MapError::PhysicalTooLarge));
}

#[test]
fn overlaps_are_refused_and_leave_nothing_behind() {
    let (mut mem, root) = setup();
    let mut m = Mapper::new(&mut mem, root);
    m.map(0x20_0000 + PAGE_SIZE, 0x9000, PAGE_SIZE, MapFlags::KERNEL_DATA).unwrap();
    let err = m.map(0x20_0000, 0x50_0000, 4 * PAGE_SIZE, MapFlags::KERNEL_RODATA);
    assert_eq!(err, Err(MapError::AlreadyMapped { virt: 0x20_1000 }));
    assert!(m.translate(0x20_0000).is_none(), "a refused map must not be half-done");
    // A large leaf blocks a small mapping inside it too.
    m.map(0x4000_0000, 0, LARGE_PAGE_SIZE, MapFlags::KERNEL_DATA).unwrap();
    assert_eq!(
        m.map(0x4000_0000 + PAGE_SIZE, 0, PAGE_SIZE, MapFlags::KERNEL_DATA),
        Err(MapError::AlreadyMapped { virt: 0x4000_1000 })
    );
}

#[test]
fn out_of_memory_is_an_error() {
    let (mut mem, root) = setup();
    mem.limit = Some(2);
    let err = Mapper::new(&mut mem, root).map(KERNEL_BASE, 0, PAGE_SIZE, MapFlags::KERNEL_DATA);
    assert_eq!(err, Err(MapError::OutOfMemory));
}

#[test]
fn audit_finds_writable_executable_leaves() {
    let (mut mem, root) = setup();
    let mut m = Mapper::new(&mut mem, root);
    m.map(KERNEL_BASE, 0x10_0000, PAGE_SIZE, MapFlags::KERNEL_TEXT).unwrap();
    m.map(KERNEL_BASE + PAGE_SIZE, 0x10_1000, PAGE_SIZE, MapFlags::KERNEL_DATA).unwrap();
    assert_eq!(audit(&mem, root).writable_executable, 0);
    // Corrupt the data leaf by hand: clear NX.
    let t = translate(&mem, root, KERNEL_BASE + PAGE_SIZE).unwrap();
    assert!(t.writable && !t.executable);
    let leaf_table = walk_to_leaf_table(&mem, root, KERNEL_BASE + PAGE_SIZE);
    let i = index(KERNEL_BASE + PAGE_SIZE, 0);
    let e = PageTableEntry::from(mem.read_entry(leaf_table, i)).with_no_execute(false);
    mem.write_entry(leaf_table, i, e.into());
    let report = audit(&mem, root);
    assert_eq!(report.mappings, 2);
    assert_eq!(report.writable_executable, 1);
    assert_eq!(report.first_violation, Some(KERNEL_BASE + PAGE_SIZE));
}

#[test]
fn nx_or_read_only_at_a_higher_level_wins() {
    let (mut mem, root) = setup();
    let mut m = Mapper::new(&mut mem, root);
    m.map(0x1000, 0x1000, PAGE_SIZE, MapFlags::KERNEL_TEXT).unwrap();
    // Make the leaf W+X, then take W away at the PML4 level: no violation.
    let leaf_table = walk_to_leaf_table(&mem, root, 0x1000);
    let e = PageTableEntry::from(mem.read_entry(leaf_table, 1)).with_writable(true);
    mem.write_entry(leaf_table, 1, e.into());
    assert_eq!(audit(&mem, root).writable_executable, 1);
    let top = PageTableEntry::from(mem.read_entry(root, 0)).with_writable(false);
    mem.write_entry(root, 0, top.into());
    assert_eq!(audit(&mem, root).writable_executable, 0);
    assert!(!translate(&mem, root, 0x1000).unwrap().writable);
}

#[test]
fn user_mappings_mark_the_path_user() {
    let (mut mem, root) = setup();
    let mut m = Mapper::new(&mut mem, root);
    m.map(0x40_0000, 0x80_0000, PAGE_SIZE, MapFlags::KERNEL_DATA).unwrap();
    let user = MapFlags { user: true, global: false, ..MapFlags::KERNEL_TEXT };
    m.map(0x40_1000, 0x80_1000, PAGE_SIZE, user).unwrap();
    assert!(m.translate(0x40_1000).unwrap().user);
    assert!(!m.translate(0x40_0000).unwrap().user, "the kernel leaf stays supervisor-only");
    assert_eq!(audit(&mem, root).user_executable, 1);
}

#[test]
fn uncached_mappings_set_pcd_and_pwt() {
    let (mut mem, root) = setup();
    Mapper::new(&mut mem, root).map(0xffff_ff00_0000_0000, 0xfee0_0000, PAGE_SIZE, MapFlags::KERNEL_MMIO).unwrap();
    let table = walk_to_leaf_table(&mem, root, 0xffff_ff00_0000_0000);
    let leaf = PageTableEntry::from(mem.read_entry(table, 0));
    assert!(leaf.cache_disable() && leaf.write_through() && leaf.no_execute());
}

fn walk_to_leaf_table(mem: &FakeMemory, root: u64, virt: u64) -> u64 {
    let mut table = root;
    for level in (1..=3).rev() {
        table = PageTableEntry::from(mem.read_entry(table, index(virt, level))).address();
    }
    table
}

#[test]
fn unmap_removes_small_pages_and_reports_them() {
    let (mut mem, root) = setup();
    let mut m = Mapper::new(&mut mem, root);
    let user = MapFlags { user: true, global: false, ..MapFlags::KERNEL_DATA };
    m.map(0x40_0000, 0x80_0000, 3 * PAGE_SIZE, user).unwrap();
    let mut seen = std::vec::Vec::new();
    m.unmap(0x40_1000, 2 * PAGE_SIZE, |v, p| seen.push((v, p))).unwrap();
    assert_eq!(seen, [(0x40_1000, 0x80_1000), (0x40_2000, 0x80_2000)]);
    assert!(m.translate(0x40_0000).is_some());
    assert!(m.translate(0x40_1000).is_none());
    // Unmapping something not mapped fails and changes nothing.
    assert_eq!(m.unmap(0x40_0000, 2 * PAGE_SIZE, |_, _| {}), Err(MapError::NotMapped { virt: 0x40_1000 }));
    assert!(m.translate(0x40_0000).is_some());
    // Large leaves cannot be partly unmapped.
    m.map(0x4000_0000, 0, LARGE_PAGE_SIZE, MapFlags::KERNEL_DATA).unwrap();
    assert_eq!(m.unmap(0x4000_0000, PAGE_SIZE, |_, _| {}), Err(MapError::NotMapped { virt: 0x4000_0000 }));
    assert_eq!(m.unmap(0x4000_0001, PAGE_SIZE, |_, _| {}), Err(MapError::Misaligned));
}

#[test]
fn a_large_range_over_an_emptied_table_maps_small_pages_and_completely() {
    let (mut mem, root) = setup();
    let mut m = Mapper::new(&mut mem, root);
    let user = MapFlags { user: true, global: false, ..MapFlags::KERNEL_DATA };
    // Leave an empty page table behind at 0x40_0000..0x60_0000.
    m.map(0x40_0000, 0x80_0000, PAGE_SIZE, user).unwrap();
    m.unmap(0x40_0000, PAGE_SIZE, |_, _| {}).unwrap();
    m.map(0x40_0000, 0x100_0000, LARGE_PAGE_SIZE, user).unwrap();
    let first = m.translate(0x40_0000).unwrap();
    assert_eq!((first.phys, first.page_size), (0x100_0000, PAGE_SIZE));
    assert_eq!(m.translate(0x5f_f000).unwrap().phys, 0x11f_f000);
}

#[test]
fn running_out_of_tables_half_way_leaves_no_translation() {
    let (mut mem, root) = setup();
    let user = MapFlags { writable: true, executable: false, user: true, global: false, caching: Caching::WriteBack };
    let mut m = Mapper::new(&mut mem, root);
    m.large_pages = false;
    m.map(0x1f_0000, 0x100_0000, PAGE_SIZE, user).unwrap();
    // The next three pages straddle into a page table that does not exist yet.
    let mut budgeted = Budgeted::new(&mut mem, 0);
    let mut m = Mapper::new(&mut budgeted, root);
    m.large_pages = false;
    assert_eq!(m.map(0x1f_0000, 0x200_0000, PAGE_SIZE, user), Err(MapError::AlreadyMapped { virt: 0x1f_0000 }));
    assert_eq!(m.map(0x20_0000 - 2 * PAGE_SIZE, 0x200_0000, 3 * PAGE_SIZE, user), Err(MapError::OutOfMemory));
    assert_eq!(translate(&mem, root, 0x20_0000 - 2 * PAGE_SIZE), None, "no page of a refused map is left");
    let mut budgeted = Budgeted::new(&mut mem, 1);
    let mut m = Mapper::new(&mut budgeted, root);
    m.large_pages = false;
    m.map(0x20_0000 + PAGE_SIZE, 0x200_0000, PAGE_SIZE, user).unwrap();
    assert_eq!((budgeted.used, budgeted.left), (1, 0), "the one new table is counted");
}

#[test]
fn unmap_present_skips_holes_and_cannot_fail() {
    let (mut mem, root) = setup();
    let user = MapFlags { writable: false, executable: false, user: true, global: false, caching: Caching::WriteBack };
    let mut m = Mapper::new(&mut mem, root);
    m.large_pages = false;
    m.map(0x40_0000, 0x100_0000, 4 * PAGE_SIZE, user).unwrap();
    m.unmap(0x40_1000, PAGE_SIZE, |_, _| {}).unwrap();
    let mut removed = std::vec::Vec::new();
    m.unmap_present(0x40_0000, 8 * PAGE_SIZE, |v, p| removed.push((v, p)));
    assert_eq!(removed, [(0x40_0000, 0x100_0000), (0x40_2000, 0x100_2000), (0x40_3000, 0x100_3000)]);
    assert!(m.translate(0x40_3000).is_none());
}
