use super::*;

mod long;
use crate::entry::{FLAT_CODE_DESCRIPTOR, FLAT_DATA_DESCRIPTOR, LONG_CODE_DESCRIPTOR};
use long::plan_long;
use tlfs::{segment_register_from_value, table_register_from_value};

const MIB: u64 = 1 << 20;
const RAM: u64 = 256 * MIB;

/// A synthetic bzImage: boot sector and setup (`setup_sects` + 1 sectors),
/// then `kernel_len` bytes of "protected-mode kernel".
#[derive(Clone)]
struct BzImage {
    setup_sects: u8,
    version: u16,
    loadflags: u8,
    kernel_len: usize,
    relocatable: bool,
    alignment: u32,
    pref_address: u64,
    init_size: u32,
    initrd_addr_max: u32,
    cmdline_size: u32,
    xloadflags: u16,
}

impl BzImage {
    fn new() -> BzImage {
        BzImage {
            setup_sects: 3,
            version: 0x020f,
            loadflags: loadflags::LOADED_HIGH | loadflags::CAN_USE_HEAP,
            kernel_len: 0x3000,
            relocatable: true,
            alignment: 0x20_0000,
            pref_address: 0x100_0000,
            init_size: 0x40_0000,
            initrd_addr_max: 0x7fff_ffff,
            cmdline_size: 0x7ff,
            xloadflags: xloadflags::KERNEL_64 | xloadflags::CAN_BE_LOADED_ABOVE_4G,
        }
    }

    fn build(&self) -> std::vec::Vec<u8> {
        let sects = if self.setup_sects == 0 { 4 } else { usize::from(self.setup_sects) };
        let setup = (sects + 1) * 512;
        let mut f = vec![0u8; setup + self.kernel_len];
        let mut put = |at: usize, bytes: &[u8]| f[at..at + bytes.len()].copy_from_slice(bytes);
        put(offset::SETUP_SECTS, &[self.setup_sects]);
        put(offset::SYSSIZE, &((self.kernel_len as u32).div_ceil(16)).to_le_bytes());
        put(offset::BOOT_FLAG, &BOOT_FLAG.to_le_bytes());
        put(offset::JUMP, &[0xeb, 0x6a]); // header ends at 0x26c
        put(offset::HEADER_MAGIC, HEADER_MAGIC);
        put(offset::VERSION, &self.version.to_le_bytes());
        put(offset::LOADFLAGS, &[self.loadflags]);
        put(offset::CODE32_START, &0x10_0000u32.to_le_bytes());
        put(offset::INITRD_ADDR_MAX, &self.initrd_addr_max.to_le_bytes());
        put(offset::KERNEL_ALIGNMENT, &self.alignment.to_le_bytes());
        put(offset::RELOCATABLE_KERNEL, &[u8::from(self.relocatable)]);
        put(offset::MIN_ALIGNMENT, &[21]);
        put(offset::XLOADFLAGS, &self.xloadflags.to_le_bytes());
        put(offset::CMDLINE_SIZE, &self.cmdline_size.to_le_bytes());
        put(offset::PREF_ADDRESS, &self.pref_address.to_le_bytes());
        put(offset::INIT_SIZE, &self.init_size.to_le_bytes());
        for (i, b) in f[setup..].iter_mut().enumerate() {
            *b = (i % 251) as u8 + 1;
        }
        f
    }
}

fn request<'a>(kernel: &'a [u8], initrd: &'a [u8], cmdline: &'a str, map: &'a [E820Entry]) -> LinuxRequest<'a> {
    LinuxRequest { kernel, initrd, cmdline, ram_size: RAM, memory_map: map, entry: BootEntry::Protected32 }
}

fn plan_standard<'a>(
    kernel: &'a [u8],
    initrd: &'a [u8],
    cmdline: &'a str,
    area: &'a mut [u8; LOW_AREA_LEN],
) -> Result<LinuxPlan<'a>, LinuxError> {
    let map: &'static [E820Entry] = Box::leak(Box::new(standard_memory_map(RAM)));
    plan(&request(kernel, initrd, cmdline, map), area)
}

fn new_area() -> Box<[u8; LOW_AREA_LEN]> {
    Box::new([0; LOW_AREA_LEN])
}

fn rd(bytes: &[u8], at: usize, width: usize) -> u64 {
    bytes[at..at + width].iter().rev().fold(0, |acc, &b| acc << 8 | u64::from(b))
}

fn render(plan: &LinuxPlan<'_>) -> std::vec::Vec<u8> {
    let mut ram = vec![0xccu8; RAM as usize];
    plan.apply(&mut ram).unwrap();
    ram
}

#[test]
fn the_header_is_read() {
    let file = BzImage::new().build();
    let h = parse_header(&file).unwrap();
    assert_eq!((h.version, h.setup_sects, h.syssize), (0x020f, 3, 0x300));
    assert_eq!((h.kernel_offset(), h.header_end), (0x800, 0x26c));
    assert!(h.relocatable && h.has_64bit_entry());
    assert_eq!((h.kernel_alignment, h.pref_address, h.init_size), (0x20_0000, 0x100_0000, 0x40_0000));
    assert_eq!((h.cmdline_size, h.initrd_addr_max, h.code32_start), (0x7ff, 0x7fff_ffff, 0x10_0000));
    // setup_sects 0 means 4.
    let file = BzImage { setup_sects: 0, ..BzImage::new() }.build();
    assert_eq!(parse_header(&file).unwrap().kernel_offset(), 0xa00);
}

#[test]
fn malformed_headers_are_refused_with_the_reason() {
    let good = BzImage::new().build();
    let mut f = good.clone();
    f[offset::BOOT_FLAG] = 0;
    assert_eq!(parse_header(&f), Err(LinuxError::NoBootFlag));
    let mut f = good.clone();
    f[offset::HEADER_MAGIC] = b'X';
    assert_eq!(parse_header(&f), Err(LinuxError::NoHeaderMagic));
    let f = BzImage { version: 0x020b, ..BzImage::new() }.build();
    assert_eq!(parse_header(&f), Err(LinuxError::ProtocolTooOld { version: 0x020b }));
    let mut f = good.clone();
    f[offset::JUMP + 1] = 0x10;
    assert_eq!(parse_header(&f), Err(LinuxError::BadHeaderLength { end: 0x212 }));
    f[offset::JUMP + 1] = 0xff;
    assert_eq!(parse_header(&f), Err(LinuxError::BadHeaderLength { end: 0x301 }));
    let f = BzImage { loadflags: 0, ..BzImage::new() }.build();
    assert_eq!(parse_header(&f), Err(LinuxError::NotBzImage));
    let f = BzImage { alignment: 0x3000, ..BzImage::new() }.build();
    assert_eq!(parse_header(&f), Err(LinuxError::BadAlignment { alignment: 0x3000 }));
    let f = BzImage { alignment: 0x800, ..BzImage::new() }.build();
    assert_eq!(parse_header(&f), Err(LinuxError::BadAlignment { alignment: 0x800 }));
    let f = BzImage { init_size: 0x2000, ..BzImage::new() }.build();
    assert_eq!(parse_header(&f), Err(LinuxError::InitSizeTooSmall { init_size: 0x2000, kernel_len: 0x3000 }));
    // A non-relocatable kernel's alignment does not matter.
    let f = BzImage { relocatable: false, alignment: 0, ..BzImage::new() }.build();
    assert!(parse_header(&f).is_ok());

    let mut f = good.clone();
    f[offset::SYSSIZE..offset::SYSSIZE + 4].copy_from_slice(&0x301u32.to_le_bytes());
    assert_eq!(parse_header(&f), Err(LinuxError::BadSyssize { syssize: 0x301, available: 0x3000 }));
    f[offset::SYSSIZE..offset::SYSSIZE + 4].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(parse_header(&f), Err(LinuxError::BadSyssize { syssize: 0, available: 0x3000 }));
    let mut f = good.clone();
    f[offset::SETUP_SECTS] = 200;
    assert_eq!(parse_header(&f), Err(LinuxError::SetupBeyondFile { kernel_offset: 201 * 512, len: good.len() }));
}

#[test]
fn truncated_files_are_refused() {
    let good = BzImage::new().build();
    for len in [0, 1, 0x1f1, 0x202, 0x263] {
        assert_eq!(parse_header(&good[..len]), Err(LinuxError::TooShort { len }));
    }
    for len in [0x264, 0x400, 0x800] {
        assert_eq!(parse_header(&good[..len]), Err(LinuxError::SetupBeyondFile { kernel_offset: 0x800, len }));
    }
    assert!(matches!(parse_header(&good[..0x2000]), Err(LinuxError::BadSyssize { .. })));
}

#[test]
fn random_corruption_and_garbage_never_panic() {
    let good = BzImage::new().build();
    let map = standard_memory_map(RAM);
    let mut rng = fastrand::Rng::with_seed(0x1234_5678_9abc_def1);
    let mut accepted = 0;
    for round in 0..3000 {
        let mut f = if round % 10 == 0 { (0..rng.usize(..0x1000)).map(|_| rng.u8(..)).collect() } else { good.clone() };
        // Corrupt header bytes mostly, so parsing gets far.
        for _ in 0..rng.u32(1..=6) {
            if f.is_empty() {
                break;
            }
            let at = if rng.u32(..4) == 0 { rng.usize(..f.len()) } else { 0x1f0 + rng.usize(..0x80) };
            if at < f.len() {
                f[at] = rng.u8(..);
            }
        }
        let len = if rng.u32(..5) == 0 { rng.usize(..=f.len()) } else { f.len() };
        let f = &f[..len];
        let _ = parse_header(f);
        let mut area = new_area();
        let ram_size = if rng.u32(..8) == 0 { rng.u64(..) } else { RAM };
        let request = LinuxRequest {
            kernel: f,
            initrd: &[1, 2, 3],
            cmdline: "console=ttyS0",
            ram_size,
            memory_map: &map,
            entry: BootEntry::Protected32,
        };
        if let Ok(planned) = plan(&request, &mut area) {
            accepted += 1;
            assert!(planned.footprint.end <= planned.initrd.start);
            assert_eq!(planned.registers.len(), MAX_REGISTERS);
        }
    }
    assert!(accepted > 0, "some corruptions are harmless");
}

#[test]
fn a_relocatable_kernel_loads_at_pref_address_and_the_initrd_at_the_top() {
    let file = BzImage::new().build();
    let initrd = vec![0x5a; 0x1801];
    let mut area = new_area();
    let plan = plan_standard(&file, &initrd, "console=ttyS0", &mut area).unwrap();
    assert_eq!(plan.kernel, 0x100_0000..0x100_3000);
    assert_eq!(plan.footprint, 0x100_0000..0x140_0000);
    assert_eq!(plan.initrd, RAM - 0x2000..RAM - 0x2000 + 0x1801);
    assert_eq!((plan.boot_params, plan.gdt, plan.cmdline), (0x1_0000, 0x1_1000, 0x1_1100));
    assert!(plan.cmdline + 14 < 0x9_0000);
    assert_eq!(plan.writes.len(), 3);
    assert_eq!(plan.writes[0], Write { gpa: 0x100_0000, data: &file[0x800..], zero: 0 });
    assert_eq!(plan.writes[1], Write { gpa: plan.initrd.start, data: &initrd, zero: 0 });
    assert_eq!(plan.writes[2].gpa, LOW_AREA);
    assert_eq!(plan.writes[2].data.len(), low_area::CMDLINE + 14);
}

#[test]
fn a_kernel_that_cannot_go_to_pref_address_loads_at_1_mib() {
    // Not relocatable: at 1 MiB, decompressing at pref_address.
    let file = BzImage { relocatable: false, ..BzImage::new() }.build();
    let mut area = new_area();
    let plan = plan_standard(&file, &[], "", &mut area).unwrap();
    assert_eq!(plan.kernel.start, 0x10_0000);
    assert_eq!(plan.footprint, 0x10_0000..0x140_0000);
    assert_eq!(plan.initrd, 0..0);
    assert_eq!(plan.writes.len(), 2, "no initrd write");
    // pref_address not aligned: at 1 MiB, running at the next aligned address >= pref.
    let file = BzImage { pref_address: 0x100_1000, ..BzImage::new() }.build();
    let mut area = new_area();
    let plan = plan_standard(&file, &[], "", &mut area).unwrap();
    assert_eq!(plan.kernel.start, 0x10_0000);
    assert_eq!(plan.footprint, 0x10_0000..0x100_1000 + 0x40_0000);
    // pref_address below 1 MiB, not relocatable: refused.
    let file = BzImage { pref_address: 0x8_0000, relocatable: false, ..BzImage::new() }.build();
    let mut area = new_area();
    assert_eq!(plan_standard(&file, &[], "", &mut area).err(), Some(LinuxError::KernelBelow1MiB { start: 0x8_0000 }));
}

#[test]
fn the_zero_page_holds_the_header_the_pointers_and_the_e820_table() {
    let file = BzImage::new().build();
    let initrd = vec![7u8; 0x10_0000];
    let mut area = new_area();
    let plan = plan_standard(&file, &initrd, "console=ttyS0 quiet", &mut area).unwrap();
    let ram = render(&plan);
    let bp = &ram[plan.boot_params as usize..][..4096];
    // The setup header copied, then the loader's fields.
    assert_eq!(&bp[offset::HEADER_MAGIC..offset::HEADER_MAGIC + 4], b"HdrS");
    assert_eq!(rd(bp, offset::VERSION, 2), 0x020f);
    assert_eq!(rd(bp, offset::INIT_SIZE, 4), 0x40_0000);
    assert_eq!(bp[offset::TYPE_OF_LOADER], 0xff);
    assert_eq!(bp[offset::LOADFLAGS], loadflags::LOADED_HIGH, "CAN_USE_HEAP cleared");
    assert_eq!(rd(bp, offset::CODE32_START, 4), plan.kernel.start);
    assert_eq!(rd(bp, offset::RAMDISK_IMAGE, 4), plan.initrd.start);
    assert_eq!(rd(bp, offset::RAMDISK_SIZE, 4), 0x10_0000);
    assert_eq!(rd(bp, offset::EXT_RAMDISK_IMAGE, 4), 0);
    assert_eq!(rd(bp, offset::EXT_RAMDISK_SIZE, 4), 0);
    assert_eq!(rd(bp, offset::CMD_LINE_PTR, 4), plan.cmdline);
    assert_eq!(rd(bp, offset::EXT_CMD_LINE_PTR, 4), 0);
    assert_eq!(rd(bp, offset::SETUP_DATA, 8), 0);
    assert_eq!(bp[offset::SENTINEL], 0);
    // Nothing before the header but the e820 count; nothing after it but the table.
    assert!(bp[..offset::E820_ENTRIES].iter().all(|&b| b == 0));
    assert!(bp[0x26c..offset::E820_TABLE].iter().all(|&b| b == 0));
    assert_eq!(bp[offset::E820_ENTRIES], 3);
    let entry = |i: usize| {
        let at = offset::E820_TABLE + 20 * i;
        (rd(bp, at, 8), rd(bp, at + 8, 8), rd(bp, at + 16, 4))
    };
    assert_eq!(entry(0), (0, 0x9_fc00, 1));
    assert_eq!(entry(1), (0x9_fc00, 0x10_0000 - 0x9_fc00, 2));
    assert_eq!(entry(2), (0x10_0000, RAM - 0x10_0000, 1));
    assert!(bp[offset::E820_TABLE + 60..].iter().all(|&b| b == 0));
    // The command line, NUL-terminated; the kernel and initrd bytes.
    assert_eq!(&ram[plan.cmdline as usize..][..20], b"console=ttyS0 quiet\0");
    assert_eq!(&ram[plan.kernel.start as usize..plan.kernel.end as usize], &file[0x800..]);
    assert!(ram[plan.initrd.start as usize..plan.initrd.end as usize].iter().all(|&b| b == 7));
}

#[test]
fn the_vp_starts_as_the_32_bit_boot_protocol_says() {
    let file = BzImage::new().build();
    let mut area = new_area();
    let plan = plan_standard(&file, &[1], "", &mut area).unwrap();
    let get = |name: HvRegisterName| {
        let found: std::vec::Vec<_> = plan.registers.iter().filter(|r| r.0 == name).collect();
        assert_eq!(found.len(), 1, "{name:?} set exactly once");
        (found[0].1, found[0].2)
    };
    assert_eq!(get(HvRegisterName::RIP), (0x100_0000, 0));
    assert_eq!(get(HvRegisterName::RSI), (plan.boot_params, 0));
    for name in [HvRegisterName::RBP, HvRegisterName::RDI, HvRegisterName::RBX] {
        assert_eq!(get(name), (0, 0), "{name:?}");
    }
    assert_eq!(get(HvRegisterName::RFLAGS), (0x2, 0), "interrupts off");
    assert_eq!(get(HvRegisterName::CR0).0 & 0x8000_0001, 1, "protected mode, paging off");
    assert_eq!(get(HvRegisterName::EFER), (0, 0));
    let cs = segment_register_from_value(get(HvRegisterName::CS).0, get(HvRegisterName::CS).1);
    assert_eq!((cs.base, cs.limit, cs.selector, cs.attributes.into_bits()), (0, 0xffff_ffff, 0x10, 0xc09b));
    for name in [HvRegisterName::DS, HvRegisterName::ES, HvRegisterName::SS] {
        let s = segment_register_from_value(get(name).0, get(name).1);
        assert_eq!((s.base, s.limit, s.selector, s.attributes.into_bits()), (0, 0xffff_ffff, 0x18, 0xc093));
    }
    let (gdt, limit) = table_register_from_value(get(HvRegisterName::GDTR).0, get(HvRegisterName::GDTR).1);
    assert_eq!((gdt, limit), (plan.gdt, 31));
    let ram = render(&plan);
    assert_eq!(rd(&ram, gdt as usize + 0x10, 8), FLAT_CODE_DESCRIPTOR);
    assert_eq!(rd(&ram, gdt as usize + 0x18, 8), FLAT_DATA_DESCRIPTOR);
    let words = plan.set_registers_words();
    assert_eq!(words.len(), 1 + 3 * MAX_REGISTERS);
    assert_eq!(words[0], MAX_REGISTERS as u64);
}

#[test]
fn the_command_line_is_checked() {
    let file = BzImage { cmdline_size: 8, ..BzImage::new() }.build();
    let mut area = new_area();
    assert_eq!(plan_standard(&file, &[], "12345678", &mut area).map(|p| p.cmdline), Ok(0x1_1100));
    let mut area = new_area();
    assert_eq!(
        plan_standard(&file, &[], "123456789", &mut area).err(),
        Some(LinuxError::CmdlineTooLong { len: 9, max: 8 })
    );
    let file = BzImage { cmdline_size: u32::MAX, ..BzImage::new() }.build();
    let long = "x".repeat(MAX_CMDLINE + 1);
    let mut area = new_area();
    assert_eq!(
        plan_standard(&file, &[], &long, &mut area).err(),
        Some(LinuxError::CmdlineTooLong { len: MAX_CMDLINE + 1, max: MAX_CMDLINE })
    );
    let mut area = new_area();
    assert_eq!(plan_standard(&file, &[], "a\0b", &mut area).err(), Some(LinuxError::CmdlineHasNul));
    let mut area = new_area();
    let longest = "y".repeat(MAX_CMDLINE);
    let plan = plan_standard(&file, &[], &longest, &mut area).unwrap();
    assert_eq!(plan.writes.last().unwrap().data.len(), low_area::CMDLINE + MAX_CMDLINE + 1);
}

#[test]
fn everything_must_fit_in_ram() {
    let file = BzImage::new().build();
    for ram_size in [0, MIB, MIB + 1, 4 << 30] {
        let map = standard_memory_map(RAM);
        let mut area = new_area();
        let request = LinuxRequest {
            kernel: &file,
            initrd: &[],
            cmdline: "",
            ram_size,
            memory_map: &map,
            entry: BootEntry::Protected32,
        };
        assert_eq!(plan(&request, &mut area).err(), Some(LinuxError::RamSize { ram_size }));
    }
    // 16 MiB of RAM: pref_address + init_size does not fit, nor from 1 MiB.
    let map = standard_memory_map(16 * MIB);
    let mut area = new_area();
    let request = LinuxRequest {
        kernel: &file,
        initrd: &[],
        cmdline: "",
        ram_size: 16 * MIB,
        memory_map: &map,
        entry: BootEntry::Protected32,
    };
    assert_eq!(
        plan(&request, &mut area).err(),
        Some(LinuxError::NotInRam { what: "kernel and its decompression footprint", start: MIB, end: 0x140_0000 })
    );
    // An initrd that only fits over the kernel.
    let map = standard_memory_map(23 * MIB);
    let initrd = vec![0; 4 * MIB as usize];
    let mut area = new_area();
    let request = LinuxRequest {
        kernel: &file,
        initrd: &initrd,
        cmdline: "",
        ram_size: 23 * MIB,
        memory_map: &map,
        entry: BootEntry::Protected32,
    };
    assert_eq!(plan(&request, &mut area).err(), Some(LinuxError::InitrdDoesNotFit { size: 4 * MIB }));
    // initrd_addr_max bounds it.
    let file = BzImage { initrd_addr_max: 0x7ff_ffff, ..BzImage::new() }.build();
    let map = standard_memory_map(RAM);
    let mut area = new_area();
    let request = LinuxRequest {
        kernel: &file,
        initrd: &initrd,
        cmdline: "",
        ram_size: RAM,
        memory_map: &map,
        entry: BootEntry::Protected32,
    };
    assert_eq!(plan(&request, &mut area).unwrap().initrd, 0x800_0000 - 4 * MIB..0x800_0000);
    let file = BzImage { initrd_addr_max: 0x141_0000, ..BzImage::new() }.build();
    let mut area = new_area();
    let request = LinuxRequest {
        kernel: &file,
        initrd: &initrd,
        cmdline: "",
        ram_size: RAM,
        memory_map: &map,
        entry: BootEntry::Protected32,
    };
    assert_eq!(plan(&request, &mut area).err(), Some(LinuxError::InitrdDoesNotFit { size: 4 * MIB }));
}

#[test]
fn the_vid_describes_its_own_layout() {
    let file = BzImage::new().build();
    let initrd = vec![3u8; 0x3000];
    // A device window at 128 MiB splits RAM; the initrd goes below the hole's
    // top RAM entry's end, i.e. at the end of the highest RAM entry.
    let map = [
        E820Entry::new(0, E820_LOW_RAM_END, E820Type::RAM),
        E820Entry::new(0xf_0000, 0x1_0000, E820Type::RESERVED),
        E820Entry::new(MIB, 127 * MIB, E820Type::RAM),
        E820Entry::new(128 * MIB, MIB, E820Type::RESERVED),
        E820Entry::new(129 * MIB, 64 * MIB, E820Type::RAM),
    ];
    let mut area = new_area();
    let planned = plan(&request(&file, &initrd, "", &map), &mut area).unwrap();
    assert_eq!(planned.initrd.start, 193 * MIB - 0x3000);
    let ram = render(&planned);
    assert_eq!(ram[planned.boot_params as usize + offset::E820_ENTRIES], 5);
    // Low area not RAM.
    let map = [E820Entry::new(MIB, 127 * MIB, E820Type::RAM)];
    let mut area = new_area();
    assert!(matches!(
        plan(&request(&file, &[], "", &map), &mut area),
        Err(LinuxError::NotInRam { start: 0x1_0000, .. })
    ));
}

#[test]
fn bad_memory_maps_are_refused() {
    let file = BzImage::new().build();
    let ram = E820Entry::new(0, RAM, E820Type::RAM);
    let cases: [(&[E820Entry], &str); 5] = [
        (&[], "no entries"),
        (&[ram, E820Entry::new(1, u64::MAX, E820Type::RESERVED)], "an entry wraps around"),
        (&[ram, E820Entry::new(RAM, 0, E820Type::RESERVED)], "an entry is empty"),
        (&[E820Entry::new(0, RAM + 0x1000, E820Type::RAM)], "a RAM entry goes beyond ram_size"),
        (&[ram, E820Entry::new(RAM - 0x1000, 0x2000, E820Type::RESERVED)], "entries overlap"),
    ];
    for (map, why) in cases {
        let mut area = new_area();
        assert_eq!(plan(&request(&file, &[], "", map), &mut area).err(), Some(LinuxError::BadMemoryMap(why)));
    }
    let many = [E820Entry::new(0, 1, E820Type::RESERVED); MAX_E820 + 1];
    let mut area = new_area();
    assert_eq!(
        plan(&request(&file, &[], "", &many), &mut area).err(),
        Some(LinuxError::BadMemoryMap("more than 128 entries"))
    );
}

#[test]
fn apply_refuses_a_buffer_smaller_than_the_plan() {
    let file = BzImage::new().build();
    let mut area = new_area();
    let plan = plan_standard(&file, &[], "", &mut area).unwrap();
    let mut ram = vec![0u8; 0x100_1000];
    assert_eq!(plan.apply(&mut ram), Err(LinuxError::OutsideBuffer { gpa: 0x100_0000, len: 0x3000 }));
    assert!(ram.iter().all(|&b| b == 0), "nothing written");
}

#[test]
fn errors_display_without_panicking() {
    let all = [
        LinuxError::TooShort { len: 1 },
        LinuxError::NoBootFlag,
        LinuxError::NoHeaderMagic,
        LinuxError::ProtocolTooOld { version: 0x0201 },
        LinuxError::BadHeaderLength { end: 1 },
        LinuxError::NotBzImage,
        LinuxError::SetupBeyondFile { kernel_offset: 1, len: 1 },
        LinuxError::BadSyssize { syssize: 1, available: 1 },
        LinuxError::BadAlignment { alignment: 3 },
        LinuxError::InitSizeTooSmall { init_size: 1, kernel_len: 2 },
        LinuxError::RamSize { ram_size: 1 },
        LinuxError::CmdlineTooLong { len: 2, max: 1 },
        LinuxError::CmdlineHasNul,
        LinuxError::BadMemoryMap("x"),
        LinuxError::NotInRam { what: "initrd", start: 1, end: 2 },
        LinuxError::KernelBelow1MiB { start: 1 },
        LinuxError::InitrdDoesNotFit { size: 1 },
        LinuxError::No64BitEntry,
        LinuxError::OutsideBuffer { gpa: 1, len: 2 },
    ];
    for e in all {
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(LinuxError::ProtocolTooOld { version: 0x0201 }.to_string(), "boot protocol 2.01 is older than 2.12");
}

/// Debian's kernel, if `cargo run -- linux fetch` has put it in `target/linux/`.
fn debian_kernel() -> Option<std::vec::Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/linux");
    let path = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))?;
    std::fs::read(path).ok()
}

#[test]
#[ignore = "needs Debian's kernel in target/linux/ (cargo run -- linux fetch)"]
fn debians_kernel_plans() {
    let file = debian_kernel().expect("no target/linux/vmlinuz-*: run `cargo run -- linux fetch` first");
    let header = parse_header(&file).unwrap();
    assert!(header.version >= MIN_PROTOCOL && header.relocatable && header.has_64bit_entry());
    let initrd = vec![0u8; 2 * MIB as usize];
    let mut area = new_area();
    let plan = plan_standard(&file, &initrd, "console=ttyS0", &mut area).unwrap();
    assert_eq!(plan.kernel.start, header.pref_address);
    assert!(plan.footprint.end <= plan.initrd.start && plan.initrd.end <= RAM);
    let mut area = new_area();
    let plan = plan_long(&file, &initrd, &mut area).unwrap();
    assert_eq!(plan.entry_point, header.pref_address + 0x200);
}
