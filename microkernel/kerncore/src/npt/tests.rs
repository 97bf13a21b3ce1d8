use super::*;
use crate::paging::tests::FakeMemory;
use crate::slat::{GuestTranslation, SlatConfig};

fn setup() -> (FakeMemory, u64) {
    let mut mem = FakeMemory::new();
    let root = NptMapper::new_root(&mut mem).unwrap();
    (mem, root)
}

#[test]
fn entries_carry_the_user_bit_at_every_level() {
    // P|RW|US, NX: readable and writable data.
    assert_eq!(u64::from(NptFormat.leaf_entry(0x20_0000, GuestRights::READ_WRITE, false)), 0x8000_0000_0020_0007);
    // P|US: read and execute.
    assert_eq!(u64::from(NptFormat.leaf_entry(0x20_0000, GuestRights::READ_EXECUTE, false)), 0x20_0005);
    // P|RW|US|PS, executable: 2 MiB of guest RAM.
    assert_eq!(u64::from(NptFormat.leaf_entry(0x4000_0000, GuestRights::ALL, true)), 0x4000_0087);
    assert_eq!(u64::from(NptFormat.table_entry(0x100_0000)), 0x100_0007);

    let (mut mem, root) = setup();
    let mut m = NptMapper::new(&mut mem, root, NptFormat, SlatConfig::default());
    m.map(0x1000, 0x9000, 0x1000, GuestRights::READ).unwrap();
    let mut table = root;
    for level in (0..4).rev() {
        let e = PageTableEntry::from(mem.read_entry(table, (0x1000usize >> (12 + 9 * level)) & 0x1ff));
        assert!(e.present() && e.user(), "level {level}: {e:?}");
        table = e.address();
    }
    assert_eq!(table, 0x9000);
}

#[test]
fn write_and_execute_together_are_allowed_for_guest_ram() {
    let (mut mem, root) = setup();
    let mut m = NptMapper::new(&mut mem, root, NptFormat, SlatConfig::default());
    m.map(0, 0x4000_0000, 4 << 20, GuestRights::ALL).unwrap();
    let t = m.translate(0x30_0010).unwrap();
    assert_eq!(t, GuestTranslation { hpa: 0x4030_0010, rights: GuestRights::ALL, page_size: 2 << 20 });
    assert_eq!(m.ncr3(), root);
}

#[test]
fn read_is_implied_so_rights_without_it_are_refused() {
    let (mut mem, root) = setup();
    let mut m = NptMapper::new(&mut mem, root, NptFormat, SlatConfig::default());
    let write_only = GuestRights { read: false, write: true, execute: false };
    assert_eq!(m.map(0, 0, 4096, write_only), Err(GuestMapError::WriteWithoutRead));
    assert_eq!(m.map(0, 0, 4096, GuestRights::EXECUTE_ONLY), Err(GuestMapError::ExecuteWithoutRead));
    assert_eq!(m.map(0, 0, 4096, GuestRights::NONE), Err(GuestMapError::NoAccess));
}

#[test]
fn an_entry_without_the_user_bit_grants_nothing() {
    let (mut mem, root) = setup();
    NptMapper::new(&mut mem, root, NptFormat, SlatConfig::default())
        .map(0, 0x8000, 4096, GuestRights::READ_WRITE)
        .unwrap();
    let pml4e = PageTableEntry::from(mem.read_entry(root, 0));
    mem.write_entry(root, 0, pml4e.with_user(false).into());
    let m = NptMapper::new(&mut mem, root, NptFormat, SlatConfig::default());
    assert_eq!(m.translate(0).unwrap().rights, GuestRights::NONE);
}
