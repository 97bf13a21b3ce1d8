use super::*;
use crate::guest::TestRam;

const P: u64 = PRESENT;
const RW: u64 = WRITABLE;
const US: u64 = USER;
/// GVA 4 MiB + 0x5000: PML4 0, PDPT 0, PD 2, PT 5.
const GVA_PAGE: u64 = (4 << 20 | 0x5000) >> 12;

fn put(ram: &mut TestRam, gpa: u64, value: u64) {
    assert!(ram.write(gpa, &value.to_le_bytes()));
}

fn get(ram: &mut TestRam, gpa: u64) -> u64 {
    let mut b = [0; 8];
    assert!(ram.read(gpa, &mut b));
    u64::from_le_bytes(b)
}

/// 4-level tables at 0x1000 (PML4), 0x2000, 0x3000, 0x4000 mapping
/// [`GVA_PAGE`] to GPA 0x9000 with `leaf` flags (upper levels P|RW|US).
fn four_level(leaf: u64) -> TestRam {
    let mut ram = TestRam::new();
    put(&mut ram, 0x1000, 0x2000 | P | RW | US);
    put(&mut ram, 0x2000, 0x3000 | P | RW | US);
    put(&mut ram, 0x3000 + 2 * 8, 0x4000 | P | RW | US);
    put(&mut ram, 0x4000 + 5 * 8, 0x9000 | leaf);
    ram
}

const LONG: PagingRegisters = PagingRegisters {
    cr0: CR0_PG | CR0_WP | 1,
    cr3: 0x1000,
    cr4: CR4_PAE,
    efer: EFER_LMA | EFER_NXE,
    rflags: 2,
    cpl: 0,
};
const FEATURES: PagingFeatures = PagingFeatures { phys_bits: 40, huge_pages: true };

fn flags() -> HvTranslateGvaControlFlags {
    HvTranslateGvaControlFlags::new()
}

fn read() -> HvTranslateGvaControlFlags {
    flags().with_validate_read(true)
}

fn code(ram: &mut TestRam, regs: &PagingRegisters, f: HvTranslateGvaControlFlags) -> (Code, u64) {
    let t = translate_gva(ram, regs, FEATURES, f, GVA_PAGE, |_| false);
    (t.result.code(), t.gpa_page)
}

#[test]
fn a_present_page_translates_write_back() {
    let mut ram = four_level(P | RW | US);
    let t = translate_gva(&mut ram, &LONG, FEATURES, read(), GVA_PAGE, |gpn| gpn == 9);
    assert_eq!(t.result.code(), Code::SUCCESS);
    assert_eq!(t.gpa_page, 9);
    assert_eq!(t.result.cache(), HvCacheType::X64_WRITE_BACK);
    assert!(t.result.overlay_page());
}

#[test]
fn a_missing_entry_is_not_present_and_a_table_outside_ram_is_unmapped() {
    let mut ram = four_level(RW | US);
    assert_eq!(code(&mut ram, &LONG, read()).0, Code::PAGE_NOT_PRESENT);
    let mut ram = four_level(P | RW);
    put(&mut ram, 0x3000 + 2 * 8, 0x7_0000 | P | RW);
    assert_eq!(code(&mut ram, &LONG, read()), (Code::GPA_UNMAPPED, 0x70));
    let noncanonical = translate_gva(&mut ram, &LONG, FEATURES, read(), 0x8000_0000_0000 >> 12, |_| false);
    assert_eq!(noncanonical.result.code(), Code::PAGE_NOT_PRESENT);
}

#[test]
fn writes_honour_read_only_pages_as_cr0_wp_says() {
    let mut ram = four_level(P | US);
    let write = flags().with_validate_write(true);
    assert_eq!(code(&mut ram, &LONG, write).0, Code::PRIVILEGE_VIOLATION);
    let no_wp = PagingRegisters { cr0: LONG.cr0 & !CR0_WP, ..LONG };
    assert_eq!(code(&mut ram, &no_wp, write).0, Code::SUCCESS);
    let user = PagingRegisters { cpl: 3, ..no_wp };
    assert_eq!(code(&mut ram, &user, write).0, Code::PRIVILEGE_VIOLATION, "WP does not excuse user writes");
}

#[test]
fn user_accesses_need_user_pages_unless_exempt() {
    let mut ram = four_level(P | RW);
    let user = PagingRegisters { cpl: 3, ..LONG };
    assert_eq!(code(&mut ram, &user, read()).0, Code::PRIVILEGE_VIOLATION);
    assert_eq!(code(&mut ram, &user, read().with_privilege_exempt(true)).0, Code::SUCCESS);
    assert_eq!(code(&mut ram, &LONG, read().with_user_access(true)).0, Code::PRIVILEGE_VIOLATION);
    // A supervisor page above, a user leaf: still refused.
    let mut ram = four_level(P | RW | US);
    put(&mut ram, 0x2000, 0x3000 | P | RW);
    assert_eq!(code(&mut ram, &user, read()).0, Code::PRIVILEGE_VIOLATION);
}

#[test]
fn xd_refuses_fetches_with_nxe_and_is_reserved_without() {
    let mut ram = four_level(P | RW | US | XD);
    let fetch = flags().with_validate_execute(true);
    assert_eq!(code(&mut ram, &LONG, fetch).0, Code::PRIVILEGE_VIOLATION);
    assert_eq!(code(&mut ram, &LONG, read()).0, Code::SUCCESS);
    let no_nxe = PagingRegisters { efer: EFER_LMA, ..LONG };
    assert_eq!(code(&mut ram, &no_nxe, read()).0, Code::INVALID_PAGE_TABLE_FLAGS);
}

#[test]
fn reserved_bits_are_invalid_flags() {
    // An address bit at MAXPHYADDR (40).
    let mut ram = four_level(P | RW | US | 1 << 40);
    assert_eq!(code(&mut ram, &LONG, read()).0, Code::INVALID_PAGE_TABLE_FLAGS);
    // PS in a PML4E.
    let mut ram = four_level(P | RW | US);
    put(&mut ram, 0x1000, 0x2000 | P | RW | US | LARGE);
    assert_eq!(code(&mut ram, &LONG, read()).0, Code::INVALID_PAGE_TABLE_FLAGS);
    // A 2 MiB page with bit 13 set.
    let mut ram = four_level(P | RW | US);
    put(&mut ram, 0x3000 + 2 * 8, 0x20_0000 | 1 << 13 | P | RW | US | LARGE);
    assert_eq!(code(&mut ram, &LONG, read()).0, Code::INVALID_PAGE_TABLE_FLAGS);
}

#[test]
fn large_pages_translate_and_1_gib_ones_need_the_feature() {
    let mut ram = four_level(P | RW | US);
    put(&mut ram, 0x3000 + 2 * 8, 0x60_0000 | P | RW | US | LARGE);
    assert_eq!(code(&mut ram, &LONG, read()), (Code::SUCCESS, (0x60_0000 + 0x5000) >> 12));
    put(&mut ram, 0x2000, 0x4000_0000 | P | RW | US | LARGE);
    assert_eq!(code(&mut ram, &LONG, read()), (Code::SUCCESS, (0x4000_0000 + (4 << 20) + 0x5000) >> 12));
    let t =
        translate_gva(&mut ram, &LONG, PagingFeatures { huge_pages: false, ..FEATURES }, read(), GVA_PAGE, |_| false);
    assert_eq!(t.result.code(), Code::INVALID_PAGE_TABLE_FLAGS);
}

#[test]
fn accessed_and_dirty_bits_are_set_only_when_asked() {
    let mut ram = four_level(P | RW | US);
    assert_eq!(code(&mut ram, &LONG, read()).0, Code::SUCCESS);
    assert_eq!(get(&mut ram, 0x4000 + 5 * 8) & (ACCESSED | DIRTY), 0);
    assert_eq!(code(&mut ram, &LONG, read().with_set_page_table_bits(true)).0, Code::SUCCESS);
    for at in [0x1000, 0x2000, 0x3000 + 2 * 8, 0x4000 + 5 * 8] {
        assert_eq!(get(&mut ram, at) & ACCESSED, ACCESSED, "{at:#x}");
    }
    assert_eq!(get(&mut ram, 0x4000 + 5 * 8) & DIRTY, 0, "a read sets no dirty bit");
    let write = flags().with_validate_write(true).with_set_page_table_bits(true);
    assert_eq!(code(&mut ram, &LONG, write).0, Code::SUCCESS);
    assert_eq!(get(&mut ram, 0x4000 + 5 * 8) & DIRTY, DIRTY);
    assert_eq!(get(&mut ram, 0x3000 + 2 * 8) & DIRTY, 0, "only the leaf");
    // A refused write sets no dirty bit.
    let mut ram = four_level(P | US);
    assert_eq!(code(&mut ram, &LONG, write).0, Code::PRIVILEGE_VIOLATION);
    assert_eq!(get(&mut ram, 0x4000 + 5 * 8) & DIRTY, 0);
}

#[test]
fn smep_and_smap_bind_supervisor_accesses_to_user_pages() {
    let mut ram = four_level(P | RW | US);
    let smep = PagingRegisters { cr4: LONG.cr4 | CR4_SMEP, ..LONG };
    assert_eq!(code(&mut ram, &smep, flags().with_validate_execute(true)).0, Code::PRIVILEGE_VIOLATION);
    assert_eq!(code(&mut ram, &smep, read()).0, Code::SUCCESS);
    let smap = PagingRegisters { cr4: LONG.cr4 | CR4_SMAP, ..LONG };
    assert_eq!(code(&mut ram, &smap, read()).0, Code::PRIVILEGE_VIOLATION);
    let ac = PagingRegisters { rflags: 2 | RFLAGS_AC, ..smap };
    assert_eq!(code(&mut ram, &ac, read()).0, Code::SUCCESS);
    assert_eq!(code(&mut ram, &ac, read().with_enforce_smap(true)).0, Code::PRIVILEGE_VIOLATION);
    assert_eq!(code(&mut ram, &smap, read().with_override_smap(true)).0, Code::SUCCESS);
}

#[test]
fn without_paging_addresses_map_one_to_one_in_32_bits() {
    let mut ram = TestRam::new();
    let off = PagingRegisters { cr0: 1, ..LONG };
    let t = translate_gva(&mut ram, &off, FEATURES, read(), 0x1_2345_6789, |_| false);
    assert_eq!((t.result.code(), t.gpa_page), (Code::SUCCESS, 0x5_6789), "the page within 4 GiB");
}

#[test]
fn pae_and_32_bit_walks() {
    // PAE: PDPTEs at 0x1000 (32-byte aligned), PD at 0x2000, PT at 0x3000.
    let mut ram = TestRam::new();
    put(&mut ram, 0x1000, 0x2000 | P);
    put(&mut ram, 0x2000 + 2 * 8, 0x3000 | P | RW | US);
    put(&mut ram, 0x3000 + 5 * 8, 0x9000 | P | RW | US);
    let pae = PagingRegisters { efer: EFER_NXE, ..LONG };
    assert_eq!(code(&mut ram, &pae, read().with_set_page_table_bits(true)), (Code::SUCCESS, 9));
    assert_eq!(get(&mut ram, 0x1000) & ACCESSED, 0, "PAE's PDPTEs have no accessed bit");
    put(&mut ram, 0x1000, 0x2000 | P | RW);
    assert_eq!(code(&mut ram, &pae, read()).0, Code::INVALID_PAGE_TABLE_FLAGS, "bit 1 of a PAE PDPTE");
    // 32-bit: PD at 0x1000, PT at 0x2000; a 4 MiB page with PSE.
    let mut ram = TestRam::new();
    let w = |ram: &mut TestRam, at: u64, v: u32| assert!(ram.write(at, &v.to_le_bytes()));
    w(&mut ram, 0x1000 + 4, 0x2000 | 7);
    w(&mut ram, 0x2000 + 5 * 4, 0x9000 | 7);
    let flat = PagingRegisters { cr4: 0, efer: 0, ..LONG };
    assert_eq!(code(&mut ram, &flat, read()), (Code::SUCCESS, 9));
    w(&mut ram, 0x1000 + 4, 0x80_0000 | 0x87);
    let pse = PagingRegisters { cr4: CR4_PSE, ..flat };
    assert_eq!(code(&mut ram, &pse, read()), (Code::SUCCESS, (0x80_0000 + 0x5000) >> 12));
}
