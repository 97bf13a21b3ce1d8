use super::*;
use crate::paging::tests::FakeMemory;
use crate::slat::{GuestTranslation, RemovedMapping};

fn setup() -> (FakeMemory, u64) {
    let mut mem = FakeMemory::new();
    let root = EptMapper::new_root(&mut mem).unwrap();
    (mem, root)
}

#[test]
fn entry_layout_matches_the_manual() {
    // R|W|X (bits 0-2), WB (6 << 3), user-execute (bit 10).
    let leaf = EptFormat::default().leaf_entry(0x1234_5000, GuestRights::ALL, false);
    assert_eq!(u64::from(leaf), 0x1234_5437);
    // R|W, WB, large page (bit 7).
    let large = EptFormat::default().leaf_entry(0x4020_0000, GuestRights::READ_WRITE, true);
    assert_eq!(u64::from(large), 0x4020_00b3);
    // A table pointer: RWX and user-execute, no memory type (reserved there).
    assert_eq!(u64::from(EptFormat::default().table_entry(0x100_0000)), 0x100_0407);
    let e = EptEntry::from(0x8000_0000_0000_0000 | 0x0200_0000_0000_0000 | 0x240 | 0x100);
    assert!(e.suppress_ve() && e.verify_guest_paging() && e.ignore_pat() && e.dirty() && e.accessed());
    assert!(!e.is_present());
    assert_eq!(EptEntry::new().with_memory_type(EptMemoryType::UNCACHEABLE).memory_type(), EptMemoryType(0));
    assert_eq!(format!("{:?}", EptMemoryType(2)), "EptMemoryType(0x2)");
}

#[test]
fn eptp_is_write_back_four_levels() {
    let eptp = Eptp::write_back_4_level(0x100_0000, false);
    assert_eq!(u64::from(eptp), 0x100_001e);
    assert_eq!(u64::from(Eptp::write_back_4_level(0x100_0000, true)), 0x100_005e);
    assert_eq!(eptp.page_walk_levels(), 4);
    assert_eq!(eptp.address(), 0x100_0000);
    assert_eq!(eptp.memory_type(), EptMemoryType::WRITE_BACK);
    let (mut mem, root) = setup();
    let m = EptMapper::new(&mut mem, root, EptFormat::default(), SlatConfig::default());
    assert_eq!(m.eptp(true).address(), root);
    assert!(m.eptp(true).accessed_dirty_enable());
}

#[test]
fn guest_ram_is_mapped_rwx_write_back() {
    let (mut mem, root) = setup();
    let mut m = EptMapper::new(&mut mem, root, EptFormat::default(), SlatConfig::default());
    m.map(0, 0x800_0000, 4 << 20, GuestRights::ALL).unwrap();
    let t = m.translate(0x20_1234).unwrap();
    assert_eq!(t, GuestTranslation { hpa: 0x820_1234, rights: GuestRights::ALL, page_size: 2 << 20 });
    // Walk by hand: every level is RWX, the leaf is a WB 2 MiB page.
    let pml4e = EptEntry::from(mem.read_entry(root, 0));
    let pdpte = EptEntry::from(mem.read_entry(pml4e.address(), 0));
    let pde = EptEntry::from(mem.read_entry(pdpte.address(), 1));
    assert!(pml4e.read() && pml4e.write() && pml4e.execute() && !pml4e.large_page());
    assert_eq!(u64::from(pde), 0x820_0000 | 0x4b7);
}

#[test]
fn misconfigurations_are_refused() {
    let (mut mem, root) = setup();
    let mut m = EptMapper::new(&mut mem, root, EptFormat::default(), SlatConfig::default());
    let write_only = GuestRights { read: false, write: true, execute: false };
    let write_execute = GuestRights { read: false, write: true, execute: true };
    assert_eq!(m.map(0, 0, 4096, write_only), Err(GuestMapError::WriteWithoutRead));
    assert_eq!(m.map(0, 0, 4096, write_execute), Err(GuestMapError::WriteWithoutRead));
    assert_eq!(m.map(0, 0, 4096, GuestRights::NONE), Err(GuestMapError::NoAccess));
    assert_eq!(m.map(0, 0, 4096, GuestRights::EXECUTE_ONLY), Err(GuestMapError::ExecuteWithoutRead));
    assert_eq!(m.translate(0), None);
}

#[test]
fn execute_only_follows_the_cpu() {
    let cap = EptVpidCap::new().with_execute_only(true).with_pde_2mb(false);
    let (mut mem, root) = setup();
    let mut m = EptMapper::for_cpu(&mut mem, root, PhysAddrWidth::new(39).unwrap(), cap);
    assert!(!m.config().large_pages);
    m.map(0, 0x20_0000, 2 << 20, GuestRights::EXECUTE_ONLY).unwrap();
    let t = m.translate(0x1000).unwrap();
    assert_eq!((t.rights, t.page_size), (GuestRights::EXECUTE_ONLY, 4096));
    assert_eq!(
        u64::from(EptEntry::from(0x20_0000 | 0x434)),
        u64::from(m.format().leaf_entry(0x20_0000, GuestRights::EXECUTE_ONLY, false))
    );
    assert_eq!(m.map(1 << 39, 0, 4096, GuestRights::READ), Err(GuestMapError::GuestAddressTooLarge));
}

#[test]
fn rights_intersect_over_levels_and_unmap_reports_pages() {
    let (mut mem, root) = setup();
    EptMapper::new(&mut mem, root, EptFormat::default(), SlatConfig::default())
        .map(0x1000, 0x5000, 0x2000, GuestRights::READ_EXECUTE)
        .unwrap();
    // Take execute away at the PML4 level: the walk must see it.
    let pml4e = EptEntry::from(mem.read_entry(root, 0));
    mem.write_entry(root, 0, pml4e.with_execute(false).into());
    let mut m = EptMapper::new(&mut mem, root, EptFormat::default(), SlatConfig::default());
    assert_eq!(m.translate(0x1000).unwrap().rights, GuestRights::READ);
    let mut removed = std::vec::Vec::new();
    m.unmap(0x1000, 0x2000, |r| removed.push(r)).unwrap();
    assert_eq!(
        removed,
        [
            RemovedMapping { gpa: 0x1000, hpa: 0x5000, size: 4096 },
            RemovedMapping { gpa: 0x2000, hpa: 0x6000, size: 4096 },
        ]
    );
    assert_eq!(m.translate(0x1000), None);
}
