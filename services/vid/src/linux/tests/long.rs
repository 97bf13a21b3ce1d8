//! The 64-bit boot protocol: long mode, the identity map, `XLF_KERNEL_64`.

use super::*;

pub(super) fn plan_long<'a>(
    kernel: &'a [u8],
    initrd: &'a [u8],
    area: &'a mut [u8; LOW_AREA_LEN],
) -> Result<LinuxPlan<'a>, LinuxError> {
    let map: &'static [E820Entry] = Box::leak(Box::new(standard_memory_map(RAM)));
    let request = LinuxRequest { entry: BootEntry::Long64, ..request(kernel, initrd, "console=ttyS0", map) };
    plan(&request, area)
}

/// Walks 4-level page tables with 2 MiB pages in `ram` from `cr3`.
fn translate(ram: &[u8], cr3: u64, va: u64) -> Option<u64> {
    let pml4e = rd(ram, (cr3 + 8 * ((va >> 39) & 511)) as usize, 8);
    let pdpte = rd(ram, ((pml4e & !0xfff) + 8 * ((va >> 30) & 511)) as usize, 8);
    let pde = rd(ram, ((pdpte & !0xfff) + 8 * ((va >> 21) & 511)) as usize, 8);
    let present = |e: u64| e & 1 == 1;
    (present(pml4e) && present(pdpte) && present(pde) && pde & 0x80 != 0)
        .then_some((pde & !0x1f_ffff) | (va & 0x1f_ffff))
}

#[test]
fn the_64_bit_entry_starts_in_long_mode_with_an_identity_map() {
    let file = BzImage::new().build();
    let initrd = vec![9u8; 0x5000];
    let mut area = new_area();
    let plan = plan_long(&file, &initrd, &mut area).unwrap();
    assert_eq!(plan.entry_point, plan.kernel.start + 0x200);
    let cr3 = plan.page_tables.expect("page tables");
    assert_eq!(cr3, LOW_AREA + low_area::PAGE_TABLES as u64);
    assert_eq!(plan.writes.last().unwrap().data.len(), LOW_AREA_LEN);
    let get = |name: HvRegisterName| plan.registers.iter().find(|r| r.0 == name).map(|r| (r.1, r.2)).unwrap();
    assert_eq!(get(HvRegisterName::RIP).0, plan.entry_point);
    assert_eq!(get(HvRegisterName::RSI).0, plan.boot_params);
    assert_eq!(get(HvRegisterName::CR3).0, cr3);
    assert_eq!(get(HvRegisterName::CR0).0, 0x8000_0011, "PG, ET, PE");
    assert_eq!(get(HvRegisterName::CR4).0, 0x20, "PAE");
    assert_eq!(get(HvRegisterName::EFER).0, 0x500, "LME, LMA");
    assert_eq!(get(HvRegisterName::RFLAGS).0, 0x2);
    let cs = segment_register_from_value(get(HvRegisterName::CS).0, get(HvRegisterName::CS).1);
    assert_eq!(cs.selector, 0x10);
    assert!(cs.attributes.long() && !cs.attributes.default() && cs.attributes.present());
    let ds = segment_register_from_value(get(HvRegisterName::DS).0, get(HvRegisterName::DS).1);
    assert_eq!((ds.selector, ds.attributes.into_bits()), (0x18, 0xc093));
    assert_eq!(plan.registers.len(), MAX_REGISTERS);

    let ram = render(&plan);
    assert_eq!(rd(&ram, plan.gdt as usize + 0x10, 8), LONG_CODE_DESCRIPTOR);
    assert_eq!(rd(&ram, plan.gdt as usize + 0x18, 8), FLAT_DATA_DESCRIPTOR);
    for va in [
        0,
        plan.boot_params,
        plan.cmdline,
        plan.gdt,
        cr3,
        plan.entry_point,
        plan.footprint.end - 1,
        plan.initrd.start,
        plan.initrd.end - 1,
        0xfee0_0000,
        IDENTITY_MAPPED - 1,
    ] {
        assert_eq!(translate(&ram, cr3, va), Some(va), "{va:#x} identity-mapped");
    }
    assert_eq!(translate(&ram, cr3, IDENTITY_MAPPED), None, "nothing above 4 GiB");
    // The zero page and command line are the same as for the 32-bit entry.
    assert_eq!(rd(&ram, plan.boot_params as usize + offset::CMD_LINE_PTR, 4), plan.cmdline);
    assert_eq!(&ram[plan.cmdline as usize..][..14], b"console=ttyS0\0");
}

#[test]
fn the_64_bit_entry_needs_xlf_kernel_64() {
    let file = BzImage { xloadflags: xloadflags::CAN_BE_LOADED_ABOVE_4G, ..BzImage::new() }.build();
    let mut area = new_area();
    assert_eq!(plan_long(&file, &[], &mut area).err(), Some(LinuxError::No64BitEntry));
    let mut area = new_area();
    assert!(plan_standard(&file, &[], "", &mut area).is_ok(), "the 32-bit entry does not need it");
}
