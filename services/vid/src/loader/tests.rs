use super::*;
use std::vec::Vec;
use tlfs::segment_register_from_value;

const MIB: u64 = 1 << 20;
const EM_386: u16 = 3;
const EM_X86_64: u16 = 62;

// ---------------------------------------------------------------------------
// A tiny writer of ELF32/ELF64 executables and Multiboot headers
// ---------------------------------------------------------------------------

#[derive(Clone)]
struct Seg {
    paddr: u64,
    vaddr: u64,
    data: Vec<u8>,
    memsz: u64,
    /// Program header type (PT_LOAD unless a test wants another).
    kind: u32,
}

fn seg(addr: u64, data: Vec<u8>, memsz: u64) -> Seg {
    Seg { paddr: addr, vaddr: addr, data, memsz, kind: 1 }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn mb_header(flags: u32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&HEADER_MAGIC.to_le_bytes());
    h.extend_from_slice(&flags.to_le_bytes());
    h.extend_from_slice(&0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(flags)).to_le_bytes());
    h
}

#[derive(Clone)]
struct Elf {
    class64: bool,
    machine: u16,
    etype: u16,
    entry: u64,
    segs: Vec<Seg>,
    header: Vec<u8>,
}

impl Elf {
    fn new(class64: bool, entry: u64, segs: Vec<Seg>) -> Elf {
        let machine = if class64 { EM_X86_64 } else { EM_386 };
        Elf {
            class64,
            machine,
            etype: 2,
            entry,
            segs,
            header: mb_header(header_flags::PAGE_ALIGN | header_flags::MEMORY_INFO),
        }
    }

    fn ehdr_size(&self) -> usize {
        if self.class64 { 64 } else { 52 }
    }

    fn phdr_size(&self) -> usize {
        if self.class64 { 56 } else { 32 }
    }

    /// Header, program headers, the Multiboot header, then each segment's bytes.
    fn build(&self) -> Vec<u8> {
        let phoff = self.ehdr_size();
        let mut offset = (phoff + self.phdr_size() * self.segs.len()).next_multiple_of(4);
        let header_at = offset;
        offset += self.header.len();
        let mut offsets = Vec::new();
        for s in &self.segs {
            offset = offset.next_multiple_of(16);
            offsets.push(offset);
            offset += s.data.len();
        }
        let mut f = vec![0u8; offset];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = if self.class64 { 2 } else { 1 };
        f[5] = 1;
        f[6] = 1;
        put16(&mut f, 16, self.etype);
        put16(&mut f, 18, self.machine);
        put32(&mut f, 20, 1);
        let n = self.segs.len() as u16;
        if self.class64 {
            put64(&mut f, 24, self.entry);
            put64(&mut f, 32, phoff as u64);
            put16(&mut f, 52, 64);
            put16(&mut f, 54, 56);
            put16(&mut f, 56, n);
        } else {
            put32(&mut f, 24, self.entry as u32);
            put32(&mut f, 28, phoff as u32);
            put16(&mut f, 40, 52);
            put16(&mut f, 42, 32);
            put16(&mut f, 44, n);
        }
        for (i, (s, &at)) in self.segs.iter().zip(&offsets).enumerate() {
            let ph = phoff + i * self.phdr_size();
            put32(&mut f, ph, s.kind);
            if self.class64 {
                put32(&mut f, ph + 4, 7);
                put64(&mut f, ph + 8, at as u64);
                put64(&mut f, ph + 16, s.vaddr);
                put64(&mut f, ph + 24, s.paddr);
                put64(&mut f, ph + 32, s.data.len() as u64);
                put64(&mut f, ph + 40, s.memsz);
                put64(&mut f, ph + 48, 0x1000);
            } else {
                put32(&mut f, ph + 4, at as u32);
                put32(&mut f, ph + 8, s.vaddr as u32);
                put32(&mut f, ph + 12, s.paddr as u32);
                put32(&mut f, ph + 16, s.data.len() as u32);
                put32(&mut f, ph + 20, s.memsz as u32);
                put32(&mut f, ph + 24, 7);
                put32(&mut f, ph + 28, 0x1000);
            }
            f[at..at + s.data.len()].copy_from_slice(&s.data);
        }
        f[header_at..header_at + self.header.len()].copy_from_slice(&self.header);
        f
    }
}

fn put16(f: &mut [u8], at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(f: &mut [u8], at: usize, v: u32) {
    f[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(f: &mut [u8], at: usize, v: u64) {
    f[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get32(ram: &[u8], at: u64) -> u32 {
    u32::from_le_bytes(ram[at as usize..at as usize + 4].try_into().unwrap())
}

fn get64(ram: &[u8], at: u64) -> u64 {
    u64::from_le_bytes(ram[at as usize..at as usize + 8].try_into().unwrap())
}

fn c_str(ram: &[u8], at: u64) -> &str {
    let tail = &ram[at as usize..];
    std::str::from_utf8(&tail[..tail.iter().position(|&b| b == 0).unwrap()]).unwrap()
}

/// The kernel of most tests: text at 1 MiB, data + bss at 1 MiB + 8 KiB.
fn text() -> Vec<u8> {
    pattern(0x1800, 1)
}

fn data() -> Vec<u8> {
    pattern(0x100, 7)
}

fn kernel(class64: bool) -> Elf {
    Elf::new(class64, 0x10_0040, vec![seg(0x10_0000, text(), 0x1800), seg(0x10_2000, data(), 0x3000)])
}

fn modules() -> Vec<(String, Vec<u8>)> {
    vec![("mod-a arg".into(), pattern(0x1234, 3)), ("b".into(), vec![]), ("c".into(), pattern(0x1000, 9))]
}

/// The kernel's file name and its arguments; the kernel sees [`FULL_CMDLINE`].
const NAME: &str = "/boot/kernel";
const CMDLINE: &str = "console=ttyS0 tests=all";
const FULL_CMDLINE: &str = "/boot/kernel console=ttyS0 tests=all";
const RAM: u64 = 16 * MIB;

fn plan_of<'a>(
    kernel: &'a [u8],
    modules: &'a [Module<'a>],
    cmdline: &'a str,
    ram_size: u64,
    area: &'a mut [u8],
) -> Result<Plan<'a>, LoadError> {
    plan(&LoadRequest { kernel, name: NAME, modules, cmdline, ram_size }, area)
}

fn module_refs(mods: &[(String, Vec<u8>)]) -> Vec<Module<'_>> {
    mods.iter().map(|(s, b)| Module { string: s, bytes: b }).collect()
}

/// Guest RAM after the plan, with 0xAA wherever the plan writes nothing.
fn render(plan: &Plan<'_>, ram_size: u64) -> Vec<u8> {
    let mut ram = vec![0xaa; ram_size as usize];
    plan.apply(&mut ram).unwrap();
    ram
}

/// Plans the ELF32 test kernel with [`modules`] and [`CMDLINE`] in [`RAM`],
/// and hands `check` the plan and the rendered guest RAM.
fn with_standard_load(check: impl FnOnce(&Plan<'_>, &[u8])) {
    let file = kernel(false).build();
    let mods = modules();
    let refs = module_refs(&mods);
    let mut area = vec![0; BOOT_AREA_MAX];
    let plan = plan_of(&file, &refs, CMDLINE, RAM, &mut area).unwrap();
    check(&plan, &render(&plan, RAM));
}

fn load_err(kernel: &[u8]) -> LoadError {
    let mut area = vec![0; BOOT_AREA_MAX];
    plan_of(kernel, &[], "", RAM, &mut area).unwrap_err()
}

// ---------------------------------------------------------------------------
// The full plan of one kernel, byte by byte
// ---------------------------------------------------------------------------

/// The boot area of the standard case, built by hand from the
/// specification's offsets: at 0x108000, three modules.
fn expected_boot_area() -> Vec<u8> {
    let base = 0x10_8000u32;
    let mut a = vec![0u8; 0x15f];
    // Strings: after 0xf0 + 3 * 16 = 0x120.
    a[0x120..0x12c].copy_from_slice(b"Tessera VID\0");
    a[0x12c..0x151].copy_from_slice(b"/boot/kernel console=ttyS0 tests=all\0");
    a[0x151..0x15b].copy_from_slice(b"mod-a arg\0");
    a[0x15b..0x15d].copy_from_slice(b"b\0");
    a[0x15d..0x15f].copy_from_slice(b"c\0");
    // The information (spec §3.3).
    put32(&mut a, 0, 0x24d); // mem, cmdline, mods, mmap, boot_loader_name
    put32(&mut a, 4, 639);
    put32(&mut a, 8, 15 * 1024);
    put32(&mut a, 16, base + 0x12c);
    put32(&mut a, 20, 3);
    put32(&mut a, 24, base + 0xf0);
    put32(&mut a, 44, 96);
    put32(&mut a, 48, base + 0x90);
    put32(&mut a, 64, base + 0x120);
    // GDT at 0x78.
    put64(&mut a, 0x78, 0);
    put64(&mut a, 0x80, 0x00cf_9b00_0000_ffff);
    put64(&mut a, 0x88, 0x00cf_9300_0000_ffff);
    // Memory map at 0x90: size, base_addr, length, type. Low RAM, the
    // EBDA with the FACS (ACPI NVS, type 4), the BIOS area with the tables
    // (reserved, type 2), high RAM.
    for (i, (start, len, kind)) in
        [(0, 0x9_fc00, 1), (0x9_fc00, 0x400, 4), (0xe_0000, 0x2_0000, 2), (0x10_0000, 15 * MIB, 1)]
            .into_iter()
            .enumerate()
    {
        put32(&mut a, 0x90 + 24 * i, 20);
        put64(&mut a, 0x94 + 24 * i, start);
        put64(&mut a, 0x9c + 24 * i, len);
        put32(&mut a, 0xa4 + 24 * i, kind);
    }
    // Modules at 0xf0: start, end, string, reserved.
    for (i, (start, end, string)) in [
        (0x10_5000, 0x10_6234, base + 0x151),
        (0x10_7000, 0x10_7000, base + 0x15b),
        (0x10_7000, 0x10_8000, base + 0x15d),
    ]
    .into_iter()
    .enumerate()
    {
        put32(&mut a, 0xf0 + 16 * i, start);
        put32(&mut a, 0xf4 + 16 * i, end);
        put32(&mut a, 0xf8 + 16 * i, string);
    }
    a
}

fn standard_plan_checks(plan: &Plan<'_>, mods: &[(String, Vec<u8>)]) {
    assert_eq!(plan.entry, 0x10_0040);
    assert_eq!(plan.kernel, 0x10_0000..0x10_5000);
    assert_eq!(plan.modules.as_slice(), [0x10_5000..0x10_6234, 0x10_7000..0x10_7000, 0x10_7000..0x10_8000]);
    assert_eq!(plan.boot_area, 0x10_8000..0x10_815f);
    assert_eq!((plan.info, plan.gdt), (0x10_8000, 0x10_8078));
    assert_eq!(plan.header_flags, 3);

    let boot = expected_boot_area();
    let expected = [
        Write { gpa: 0x10_0000, data: &text(), zero: 0 },
        Write { gpa: 0x10_2000, data: &data(), zero: 0x2f00 },
        Write { gpa: 0x10_5000, data: &mods[0].1, zero: 0 },
        // The empty module is not a write.
        Write { gpa: 0x10_7000, data: &mods[2].1, zero: 0 },
        Write { gpa: 0x10_8000, data: &boot, zero: 0 },
    ];
    assert_eq!(plan.writes.as_slice(), expected);

    // Every byte of RAM: what the writes say, and the sentinel elsewhere.
    let ram = render(plan, RAM);
    let mut want = vec![0xaau8; RAM as usize];
    for w in &expected {
        let at = w.gpa as usize;
        want[at..at + w.data.len()].copy_from_slice(w.data);
        want[at + w.data.len()..at + w.data.len() + w.zero as usize].fill(0);
    }
    assert!(ram == want, "guest RAM differs from the expected image");
}

#[test]
fn an_elf32_kernel_is_planned_byte_by_byte() {
    let file = kernel(false).build();
    let mods = modules();
    let refs = module_refs(&mods);
    let mut area = vec![0x55; BOOT_AREA_MAX];
    let plan = plan_of(&file, &refs, CMDLINE, RAM, &mut area).unwrap();
    assert_eq!(plan.format, KernelFormat::Elf32);
    assert_eq!(plan.header_offset, 52 + 2 * 32);
    standard_plan_checks(&plan, &mods);
}

#[test]
fn an_elf64_kernel_with_a_32_bit_entry_gives_the_same_plan() {
    let mods = modules();
    let refs = module_refs(&mods);
    let (f32, f64) = (kernel(false).build(), kernel(true).build());
    let (mut a32, mut a64) = (vec![0; BOOT_AREA_MAX], vec![0; BOOT_AREA_MAX]);
    let p32 = plan_of(&f32, &refs, CMDLINE, RAM, &mut a32).unwrap();
    let p64 = plan_of(&f64, &refs, CMDLINE, RAM, &mut a64).unwrap();
    assert_eq!(p64.format, KernelFormat::Elf64);
    standard_plan_checks(&p64, &mods);
    assert_eq!((p32.writes, p32.registers), (p64.writes, p64.registers));
}

#[test]
fn elf32conv_output_loads_like_its_elf64_input() {
    let mods = modules();
    let refs = module_refs(&mods);
    // elf32conv keeps only the segments: put the Multiboot header in the text.
    let mut with_header = kernel(true);
    let mut text = text();
    text[0x20..0x2c].copy_from_slice(&mb_header(3));
    with_header.segs[0].data = text;
    with_header.header = vec![];
    let f64h = with_header.build();
    let f32 = elf32conv::convert(&f64h).unwrap();
    let (mut a, mut b) = (vec![0; BOOT_AREA_MAX], vec![0; BOOT_AREA_MAX]);
    let p64 = plan_of(&f64h, &refs, CMDLINE, RAM, &mut a).unwrap();
    let p32 = plan_of(&f32, &refs, CMDLINE, RAM, &mut b).unwrap();
    assert_eq!(p32.format, KernelFormat::Elf32);
    assert_eq!((p32.entry, &p32.writes, &p32.registers), (p64.entry, &p64.writes, &p64.registers));
}

#[test]
fn the_information_reads_back_through_the_specification_offsets() {
    with_standard_load(|plan, ram| {
        let info = plan.info;
        use info_offset as off;
        let field = |o: usize| get32(ram, info + o as u64);
        assert_eq!(field(off::FLAGS), info_flags::PROVIDED);
        assert_eq!(info_flags::PROVIDED, 0x24d);
        assert_eq!((field(off::MEM_LOWER), field(off::MEM_UPPER)), (639, 15360));
        assert_eq!(c_str(ram, field(off::CMDLINE).into()), FULL_CMDLINE);
        assert_eq!(c_str(ram, field(off::BOOT_LOADER_NAME).into()), "Tessera VID");
        assert_eq!(field(off::MODS_COUNT), 3);
        for (i, (string, bytes)) in modules().iter().enumerate() {
            let m = u64::from(field(off::MODS_ADDR)) + 16 * i as u64;
            let (start, end) = (get32(ram, m), get32(ram, m + 4));
            assert_eq!(start % 4096, 0, "modules are page-aligned");
            assert_eq!(&ram[start as usize..end as usize], bytes.as_slice());
            assert_eq!(c_str(ram, get32(ram, m + 8).into()), string);
            assert_eq!(get32(ram, m + 12), 0);
            assert!(u64::from(start) >= plan.kernel.end);
        }
        // Memory map: walk it as a kernel does (size excludes itself).
        let (mut at, end) =
            (u64::from(field(off::MMAP_ADDR)), u64::from(field(off::MMAP_ADDR) + field(off::MMAP_LENGTH)));
        let mut regions = Vec::new();
        while at < end {
            regions.push((get64(ram, at + 4), get64(ram, at + 12), get32(ram, at + 20)));
            at += u64::from(get32(ram, at)) + 4;
        }
        assert_eq!(regions, [(0, 0x9_fc00, 1), (0x9_fc00, 0x400, 4), (0xe_0000, 0x2_0000, 2), (MIB, RAM - MIB, 1)]);
        // Fields this loader does not provide stay zero.
        for o in [off::BOOT_DEVICE, off::SYMS, off::DRIVES_LENGTH, off::DRIVES_ADDR, off::CONFIG_TABLE, off::APM_TABLE]
        {
            assert_eq!(field(o), 0, "offset {o}");
        }
        assert!(ram[(info as usize + off::VBE_CONTROL_INFO)..(info as usize + off::SIZE)].iter().all(|&b| b == 0));
        // The boot area lies above the kernel and every module.
        assert!(plan.boot_area.start >= plan.modules.iter().map(|m| m.end).max().unwrap());
        assert_eq!(plan.boot_area.start % 4096, 0);
    });
}

#[test]
fn the_command_line_is_the_kernels_name_then_its_arguments() {
    let file = kernel(false).build();
    for (name, args, seen) in [
        ("/boot/kernel", "a=1 b", "/boot/kernel a=1 b"),
        ("/boot/kernel", "", "/boot/kernel"),
        ("", "a=1", "a=1"),
        ("", "", ""),
    ] {
        let mut area = vec![0; BOOT_AREA_MAX];
        let request = LoadRequest { kernel: &file, name, modules: &[], cmdline: args, ram_size: RAM };
        let plan = plan(&request, &mut area).unwrap();
        let ram = render(&plan, RAM);
        assert_eq!(c_str(&ram, get32(&ram, plan.info + info_offset::CMDLINE as u64).into()), seen);
        assert_eq!(plan.boot_area.end - plan.boot_area.start, boot_area_len(&request) as u64);
    }
    let mut area = vec![0; BOOT_AREA_MAX];
    let request = LoadRequest { kernel: &file, name: "a\0", modules: &[], cmdline: "", ram_size: RAM };
    assert_eq!(plan(&request, &mut area).unwrap_err(), LoadError::StringHasNul { module: None });
}

#[test]
fn tesseras_own_multiboot_parser_reads_the_information() {
    with_standard_load(|plan, ram| {
        let mem = tessera_loader::BufferMemory { base: 0, data: ram };
        let sources = tessera_loader::multiboot::parse(&mem, BOOTLOADER_MAGIC, plan.info).unwrap();
        assert_eq!(sources.protocol, tessera_loader::multiboot::Protocol::Multiboot1);
        assert_eq!((sources.cmdline, sources.bootloader_name), (FULL_CMDLINE, "Tessera VID"));
        let (usable, reserved) = (bootinfo::MemoryKind::Usable, bootinfo::MemoryKind::Reserved);
        assert_eq!(
            sources.memory.as_slice(),
            [
                bootinfo::MemoryRegion::new(0, 0x9_fc00, usable),
                bootinfo::MemoryRegion::new(0x9_fc00, 0xa_0000, bootinfo::MemoryKind::AcpiNvs),
                bootinfo::MemoryRegion::new(0xe_0000, MIB, reserved),
                bootinfo::MemoryRegion::new(MIB, RAM, usable)
            ]
        );
        let got: Vec<_> = sources.modules.iter().map(|m| (m.start, m.end, m.name)).collect();
        assert_eq!(
            got,
            [(0x10_5000, 0x10_6234, "mod-a arg"), (0x10_7000, 0x10_7000, "b"), (0x10_7000, 0x10_8000, "c")]
        );
    });
}

#[test]
fn the_guest_test_kernels_own_checks_pass() {
    use guest_testkernel::multiboot;
    with_standard_load(|plan, ram| {
        let mem = multiboot::Buffer { base: 0, bytes: ram };
        let summary = multiboot::check(&mem, BOOTLOADER_MAGIC, plan.info, plan.kernel.clone()).unwrap();
        assert_eq!(summary.ram_end, RAM);
        assert_eq!(summary.available, 0x9_fc00 + RAM - MIB);
        assert_eq!(multiboot::past_ram(&mem, &summary), RAM);
        assert_eq!(guest_testkernel::tests_option(FULL_CMDLINE), Some("all"));
    });
}

#[test]
fn the_guest_test_kernels_devices_lie_outside_ram() {
    use guest_testkernel::protocol::*;
    let ram = |addr: u64| (addr < LOW_RAM_END) || (HIGH_RAM_START..MAX_RAM).contains(&addr);
    for addr in [TEST_DEVICE, TEST_ROM, UNMAPPED_HIGH] {
        assert!(!ram(addr), "{addr:#x} must not be RAM at any size");
    }
    assert_eq!(crate::exits::UART_DATA, UART_DATA);
    assert_eq!(crate::exits::UART_LINE_STATUS, UART_LINE_STATUS);
    assert_eq!(crate::exits::TEST_EXIT, TEST_EXIT);
}

// ---------------------------------------------------------------------------
// The initial state
// ---------------------------------------------------------------------------

#[test]
fn the_vp_starts_as_section_3_2_says() {
    let file = kernel(false).build();
    let mut area = vec![0; BOOT_AREA_MAX];
    let plan = plan_of(&file, &[], "", RAM, &mut area).unwrap();
    let get = |name: HvRegisterName| {
        let found: Vec<_> = plan.registers.iter().filter(|r| r.0 == name).collect();
        assert_eq!(found.len(), 1, "{name:?} set once");
        (found[0].1, found[0].2)
    };
    assert_eq!(get(HvRegisterName::RAX), (0x2bad_b002, 0));
    assert_eq!(get(HvRegisterName::RBX), (plan.info, 0));
    assert_eq!(get(HvRegisterName::RIP), (0x10_0040, 0));
    assert_eq!(get(HvRegisterName::RFLAGS), (0x2, 0));
    let cr0 = get(HvRegisterName::CR0).0;
    assert_eq!(cr0 & 1, 1, "PE");
    assert_eq!(cr0 & (1 << 31), 0, "paging off");
    assert_eq!(get(HvRegisterName::EFER), (0, 0));
    assert_eq!(get(HvRegisterName::CR4), (0, 0));

    let cs = segment_register_from_value(get(HvRegisterName::CS).0, get(HvRegisterName::CS).1);
    assert_eq!((cs.base, cs.limit, cs.selector), (0, 0xffff_ffff, 0x08));
    assert_eq!(cs.attributes.into_bits(), 0xc09b);
    let a = cs.attributes;
    assert!(a.present() && a.non_system_segment() && a.default() && a.granularity() && !a.long());
    assert_eq!((a.segment_type(), a.descriptor_privilege_level()), (0xb, 0));
    for name in [HvRegisterName::DS, HvRegisterName::ES, HvRegisterName::FS, HvRegisterName::GS, HvRegisterName::SS] {
        let (low, high) = get(name);
        let s = segment_register_from_value(low, high);
        assert_eq!((s.base, s.limit, s.selector, s.attributes.into_bits()), (0, 0xffff_ffff, 0x10, 0xc093), "{name:?}");
    }
    // GDTR points at the GDT in the boot area, whose descriptors match the
    // hidden parts of CS and the data segments.
    let (gdt, limit) = tlfs::table_register_from_value(get(HvRegisterName::GDTR).0, get(HvRegisterName::GDTR).1);
    assert_eq!((gdt, limit), (plan.gdt, 23));
    let ram = render(&plan, RAM);
    let descriptor = |selector: u64| get64(&ram, gdt + selector);
    assert_eq!(descriptor(0), 0);
    for (selector, attributes) in [(0x08, 0xc09bu16), (0x10, 0xc093)] {
        let d = descriptor(selector);
        let base = (d >> 16) & 0xff_ffff | ((d >> 56) << 24);
        let limit = (d & 0xffff) | ((d >> 48) & 0xf) << 16;
        let access = (d >> 40) & 0xff;
        let flags = (d >> 52) & 0xf;
        assert_eq!((base, limit), (0, 0xf_ffff));
        assert_eq!(access, u64::from(attributes & 0xff));
        assert_eq!(flags, u64::from(attributes >> 12));
    }
    assert_eq!(tlfs::table_register_from_value(get(HvRegisterName::IDTR).0, get(HvRegisterName::IDTR).1), (0, 0));
    let tr = segment_register_from_value(get(HvRegisterName::TR).0, get(HvRegisterName::TR).1);
    assert_eq!((tr.attributes.segment_type(), tr.attributes.present()), (0xb, true));
    let ldtr = segment_register_from_value(get(HvRegisterName::LDTR).0, get(HvRegisterName::LDTR).1);
    assert_eq!((ldtr.attributes.segment_type(), ldtr.attributes.present()), (0x2, true));
}

#[test]
fn the_registers_fit_one_set_registers_invocation() {
    let file = kernel(true).build();
    let mut area = vec![0; BOOT_AREA_MAX];
    let plan = plan_of(&file, &[], "", RAM, &mut area).unwrap();
    assert!(plan.registers.len() <= MAX_REGISTERS);
    let words = plan.set_registers_words();
    assert_eq!(words.len(), 1 + 3 * plan.registers.len());
    assert!(words.len() <= 64, "one IPC message");
    assert_eq!(words[0], plan.registers.len() as u64);
    for (i, &(name, low, high)) in plan.registers.iter().enumerate() {
        assert_eq!(&words[1 + 3 * i..4 + 3 * i], [u64::from(name.0), low, high]);
    }
}

// ---------------------------------------------------------------------------
// Other kernels and layouts
// ---------------------------------------------------------------------------

#[test]
fn a_higher_half_kernel_loads_at_its_physical_address_and_enters_there() {
    let mut elf = kernel(false);
    for s in &mut elf.segs {
        s.vaddr += 0xc000_0000;
    }
    elf.entry = 0xc010_0040;
    let file = elf.build();
    let mut area = vec![0; BOOT_AREA_MAX];
    let plan = plan_of(&file, &[], "", RAM, &mut area).unwrap();
    assert_eq!(plan.entry, 0x10_0040);
    assert_eq!(plan.writes[0].gpa, 0x10_0000);
    assert_eq!(plan.writes[1].gpa, 0x10_2000);
}

#[test]
fn non_load_and_empty_segments_are_ignored() {
    let mut elf = kernel(false);
    elf.segs.push(Seg { kind: 4, ..seg(0x50_0000, vec![1, 2, 3], 3) }); // PT_NOTE
    elf.segs.push(Seg { kind: 0x6474_e551, ..seg(0, vec![], 0) }); // PT_GNU_STACK
    elf.segs.push(seg(0x90_0000, vec![], 0)); // an empty PT_LOAD
    let file = elf.build();
    let mut area = vec![0; BOOT_AREA_MAX];
    let plan = plan_of(&file, &[], "", RAM, &mut area).unwrap();
    assert_eq!(plan.writes.len(), 3);
    assert_eq!(plan.kernel, 0x10_0000..0x10_5000);
}

#[test]
fn a_kernel_in_low_memory_keeps_modules_and_information_above_1_mib() {
    let elf = Elf::new(false, 0x8000, vec![seg(0x8000, pattern(0x100, 0), 0x2000)]);
    let file = elf.build();
    let mods = modules();
    let refs = module_refs(&mods);
    let mut area = vec![0; BOOT_AREA_MAX];
    let plan = plan_of(&file, &refs, "", RAM, &mut area).unwrap();
    assert_eq!(plan.kernel, 0x8000..0xa000);
    assert_eq!(plan.modules[0].start, MIB);
    assert!(plan.boot_area.start > MIB);
    let ram = render(&plan, RAM);
    assert_eq!(&ram[0x8000..0x8100], pattern(0x100, 0).as_slice());
    assert!(ram[0x8100..0xa000].iter().all(|&b| b == 0), "bss");
}

#[test]
fn the_boot_area_may_end_exactly_at_the_end_of_ram() {
    let file = kernel(false).build();
    let mods = modules();
    let refs = module_refs(&mods);
    let mut area = vec![0; BOOT_AREA_MAX];
    // The standard case's boot area is 0x108000..0x10815f.
    let ram = 0x10_9000;
    let plan = plan_of(&file, &refs, CMDLINE, ram, &mut area).unwrap();
    assert_eq!(plan.boot_area, 0x10_8000..0x10_815f);
    let mut area = vec![0; BOOT_AREA_MAX];
    let big = vec![("big".to_string(), vec![0; 0x1000])];
    let big_refs = module_refs(&big);
    let err = plan_of(&file, &big_refs, CMDLINE, 0x10_6000, &mut area).unwrap_err();
    assert_eq!(
        err,
        LoadError::OutOfRam { end: 0x10_6000 + boot_area::strings(1) as u64 + 12 + FULL_CMDLINE.len() as u64 + 1 + 4 }
    );
    let mut area = vec![0; BOOT_AREA_MAX];
    let err = plan_of(&file, &big_refs, CMDLINE, 0x10_5000, &mut area).unwrap_err();
    assert_eq!(err, LoadError::OutOfRam { end: 0x10_6000 });
}

#[test]
fn an_aout_kludge_kernel_loads_from_its_header_fields() {
    // A flat binary loaded at 2 MiB; the header 0x40 bytes in.
    let load = 2 * MIB as u32;
    let mut file = pattern(0x3000, 5);
    let flags = header_flags::AOUT_KLUDGE | header_flags::PAGE_ALIGN;
    let header = mb_header(flags);
    file[0x40..0x4c].copy_from_slice(&header);
    let fields = |file: &mut Vec<u8>, load_end: u32, bss_end: u32, entry: u32| {
        for (i, v) in [load + 0x40, load, load_end, bss_end, entry].into_iter().enumerate() {
            put32(file, 0x4c + 4 * i, v);
        }
    };
    fields(&mut file, 0, load + 0x5000, load + 0x100);
    let mut area = vec![0; BOOT_AREA_MAX];
    let plan = plan_of(&file, &[], "k", RAM, &mut area).unwrap();
    assert_eq!(plan.format, KernelFormat::AoutKludge);
    assert_eq!(plan.entry, load + 0x100);
    assert_eq!(plan.writes[0], Write { gpa: u64::from(load), data: &file, zero: 0x2000 });
    assert_eq!(plan.kernel, u64::from(load)..u64::from(load) + 0x5000);
    assert_eq!(plan.boot_area.start, u64::from(load) + 0x5000);

    // load_end_addr cuts the file; no bss.
    let mut file2 = file.clone();
    fields(&mut file2, load + 0x1000, 0, load + 0x100);
    let mut area = vec![0; BOOT_AREA_MAX];
    let plan = plan_of(&file2, &[], "k", RAM, &mut area).unwrap();
    assert_eq!(plan.writes[0], Write { gpa: u64::from(load), data: &file2[..0x1000], zero: 0 });

    // The header may sit past the start of what is loaded: the file offset
    // is the header's minus (header_addr - load_addr).
    let mut file3 = vec![0xee; 0x20];
    file3.extend_from_slice(&file);
    for (i, v) in [load + 0x40, load, 0, 0, load].into_iter().enumerate() {
        put32(&mut file3, 0x20 + 0x4c + 4 * i, v);
    }
    let mut area = vec![0; BOOT_AREA_MAX];
    let plan = plan_of(&file3, &[], "k", RAM, &mut area).unwrap();
    assert_eq!(plan.writes[0], Write { gpa: u64::from(load), data: &file3[0x20..], zero: 0 });

    // The kludge wins over an ELF file's own headers.
    let mut elf = kernel(false);
    elf.header = mb_header(flags);
    elf.header.extend_from_slice(&[0; 20]);
    let mut bytes = elf.build();
    let h = find_header(&bytes).unwrap().offset as u32;
    for (i, v) in [load + h, load, 0, 0, load].into_iter().enumerate() {
        put32(&mut bytes, h as usize + 12 + 4 * i, v);
    }
    let mut area = vec![0; BOOT_AREA_MAX];
    let plan = plan_of(&bytes, &[], "", RAM, &mut area).unwrap();
    assert_eq!((plan.format, plan.writes[0].gpa, plan.writes[0].data), (KernelFormat::AoutKludge, 2 * MIB, &bytes[..]));
}

#[test]
fn aout_kludge_errors() {
    let load = 2 * MIB as u32;
    let build = |fields: [u32; 5], len: usize| {
        let mut file = vec![0u8; len];
        file[0x40..0x4c].copy_from_slice(&mb_header(header_flags::AOUT_KLUDGE));
        for (i, v) in fields.into_iter().enumerate() {
            put32(&mut file, 0x4c + 4 * i, v);
        }
        file
    };
    let ok = [load + 0x40, load, 0, 0, load];
    assert!(plan_of(&build(ok, 0x1000), &[], "", RAM, &mut vec![0; BOOT_AREA_MAX]).is_ok());
    let cases: [([u32; 5], LoadError); 8] = [
        ([load, load + 0x40, 0, 0, load], LoadError::BadAoutHeader("load_addr above header_addr")),
        ([load + 0x100, load, 0, 0, load], LoadError::BadAoutHeader("load_addr lies before the start of the file")),
        ([load + 0x40, load, load - 1, 0, load], LoadError::BadAoutHeader("load_end_addr below load_addr")),
        (
            [load + 0x40, load, load + 0x1001, 0, load],
            LoadError::BadAoutHeader("load_end_addr beyond the end of the file"),
        ),
        (
            [load + 0x40, load, 0, load + 0x10, load],
            LoadError::BadAoutHeader("bss_end_addr below the end of the loaded data"),
        ),
        ([load + 0x40, load, 0, 0, load + 0x1000], LoadError::EntryOutsideImage { entry: u64::from(load) + 0x1000 }),
        ([0xa_0040, 0xa_0000, 0, 0, 0xa_0000], LoadError::SegmentOutsideRam { start: 0xa_0000, end: 0xa_1000 }),
        // The EBDA (the FACS) is not the kernel's.
        ([0x9_f040, 0x9_f000, 0, 0, 0x9_f000], LoadError::SegmentOutsideRam { start: 0x9_f000, end: 0xa_0000 }),
    ];
    for (fields, err) in cases {
        assert_eq!(load_err(&build(fields, 0x1000)), err, "{fields:x?}");
    }
    // The kludge fields must be in the file and in the first 8 KiB.
    let mut short = build(ok, 0x1000);
    short.truncate(0x5c);
    assert_eq!(load_err(&short), LoadError::HeaderTruncated { offset: 0x40 });
    let mut late = vec![0u8; 0x3000];
    late[0x1ff0..0x1ffc].copy_from_slice(&mb_header(header_flags::AOUT_KLUDGE));
    assert_eq!(load_err(&late), LoadError::HeaderTruncated { offset: 0x1ff0 });
    // Nothing to load.
    let mut empty = build([load + 0x40, load, load, 0, load], 0x1000);
    empty.truncate(0x60);
    assert_eq!(load_err(&empty), LoadError::NoLoadableSegments);
}

// ---------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------

#[test]
fn the_header_must_be_found_with_a_valid_checksum_in_the_first_8_kib() {
    assert_eq!(load_err(&[]), LoadError::NoMultibootHeader);
    assert_eq!(load_err(&[0; 100]), LoadError::NoMultibootHeader);
    let mut file = kernel(false).build();
    let at = find_header(&file).unwrap().offset;
    file[at + 8] ^= 1;
    assert_eq!(load_err(&file), LoadError::BadChecksum { offset: at });
    // Misaligned: not found.
    let mut file = vec![0u8; 0x100];
    file[0x41..0x4d].copy_from_slice(&mb_header(3));
    assert_eq!(load_err(&file), LoadError::NoMultibootHeader);
    // Past 8 KiB: not found; the last aligned slot that fits is.
    let mut file = vec![0u8; 0x3000];
    file[0x2000..0x200c].copy_from_slice(&mb_header(3));
    assert_eq!(find_header(&file), Err(LoadError::NoMultibootHeader));
    file[0x1ff4..0x2000].copy_from_slice(&mb_header(3));
    assert_eq!(find_header(&file), Ok(Header { offset: 0x1ff4, flags: 3 }));
    // A bad magic candidate before a good one is skipped.
    let mut file = kernel(false).build();
    let good = find_header(&file).unwrap().offset;
    let mut bad = mb_header(3);
    bad[8] ^= 0xff;
    file[0x30..0x3c].copy_from_slice(&bad);
    assert_eq!(find_header(&file).unwrap().offset, good);
}

#[test]
fn required_features_the_loader_lacks_are_refused_and_optional_ones_ignored() {
    for (flags, bits) in [(header_flags::VIDEO_MODE, 4), (1 << 3, 8), (1 << 15 | 1 << 2 | 1, 0x8004)] {
        let mut elf = kernel(false);
        elf.header = mb_header(flags);
        assert_eq!(load_err(&elf.build()), LoadError::UnsupportedRequirements { bits }, "{flags:#x}");
    }
    let mut elf = kernel(false);
    elf.header = mb_header(1 << 17 | 1 << 31);
    assert!(plan_of(&elf.build(), &[], "", RAM, &mut vec![0; BOOT_AREA_MAX]).is_ok());
}

#[test]
fn elf_files_this_loader_cannot_run_are_refused() {
    let variant = |f: &dyn Fn(&mut Elf)| {
        let mut elf = kernel(false);
        f(&mut elf);
        load_err(&elf.build())
    };
    assert_eq!(variant(&|e| e.machine = EM_X86_64), LoadError::BadElf("an ELF32 kernel must be for i386"));
    let mut e64 = kernel(true);
    e64.machine = EM_386;
    assert_eq!(load_err(&e64.build()), LoadError::BadElf("an ELF64 kernel must be for x86-64"));
    assert_eq!(variant(&|e| e.etype = 3), LoadError::BadElf("not an executable"));
    assert_eq!(variant(&|e| e.segs.clear()), LoadError::NoLoadableSegments);
    assert_eq!(variant(&|e| e.segs.iter_mut().for_each(|s| s.kind = 4)), LoadError::NoLoadableSegments);
    assert_eq!(variant(&|e| e.entry = 0x10_5000), LoadError::EntryOutsideImage { entry: 0x10_5000 });
    assert_eq!(variant(&|e| e.segs[1].memsz = 0x80), LoadError::SegmentFileLargerThanMemory { index: 1 });
    assert_eq!(
        variant(&|e| e.segs[1].paddr = 0x10_1000),
        LoadError::SegmentsOverlap { first: 0x10_0000, second: 0x10_1000 }
    );
    let mut adjacent = kernel(false);
    adjacent.segs[1].paddr = 0x10_1800;
    assert!(plan_of(&adjacent.build(), &[], "", RAM, &mut vec![0; BOOT_AREA_MAX]).is_ok(), "adjacent segments");
    assert_eq!(
        variant(&|e| e.segs[1].paddr = RAM - 0x1000),
        LoadError::SegmentOutsideRam { start: RAM - 0x1000, end: RAM + 0x2000 }
    );
    assert_eq!(
        variant(&|e| e.segs[1].paddr = 0x9_f000),
        LoadError::SegmentOutsideRam { start: 0x9_f000, end: 0xa_2000 }
    );
    assert_eq!(
        variant(&|e| e.segs = (0..17).map(|i| seg(MIB + i * 0x1000, vec![], 0x10)).collect()),
        LoadError::TooManySegments
    );

    let mut file = kernel(false).build();
    file[4] = 3;
    assert_eq!(load_err(&file), LoadError::BadElf("unknown class"));
    let mut file = kernel(false).build();
    file[5] = 2;
    assert_eq!(load_err(&file), LoadError::BadElf("not little-endian"));
    let mut file = kernel(false).build();
    file[6] = 0;
    assert_eq!(load_err(&file), LoadError::BadElf("unknown version"));
    let mut file = kernel(false).build();
    file[0] = 0;
    assert_eq!(load_err(&file), LoadError::NotElf);
    let mut file = kernel(false).build();
    put16(&mut file, 42, 16);
    assert_eq!(load_err(&file), LoadError::BadElf("program header entries too small"));
    let mut file = kernel(false).build();
    put32(&mut file, 28, 0xffff_fff0);
    assert_eq!(load_err(&file), LoadError::BadElf("program headers outside the file"));
    let mut file = kernel(false).build();
    put32(&mut file, 52 + 32 + 4, 0xffff_0000); // second segment's p_offset
    assert_eq!(load_err(&file), LoadError::SegmentOutsideFile { index: 1 });
}

#[test]
fn elf64_addresses_beyond_guest_ram_are_refused_without_overflow() {
    let mut e = kernel(true);
    e.segs[1].paddr = 0x1_0000_0000;
    assert_eq!(load_err(&e.build()), LoadError::SegmentOutsideRam { start: 0x1_0000_0000, end: 0x1_0000_3000 });
    let mut e = kernel(true);
    e.segs[1].paddr = u64::MAX - 0x100;
    assert_eq!(load_err(&e.build()), LoadError::SegmentOutsideRam { start: u64::MAX - 0x100, end: u64::MAX });
    let mut e = kernel(true);
    e.segs[1].memsz = u64::MAX;
    assert!(matches!(load_err(&e.build()), LoadError::SegmentOutsideRam { .. }));
    let mut e = kernel(true);
    e.entry = 0xffff_ffff_8010_0040;
    assert_eq!(load_err(&e.build()), LoadError::EntryOutsideImage { entry: 0xffff_ffff_8010_0040 });
}

#[test]
fn requests_beyond_the_limits_are_refused() {
    let file = kernel(false).build();
    let mut area = vec![0; BOOT_AREA_MAX];
    for ram_size in [0, MIB, MIB + 0x800, MAX_RAM + PAGE_SIZE, u64::MAX] {
        assert_eq!(plan_of(&file, &[], "", ram_size, &mut area).unwrap_err(), LoadError::RamSize { ram_size });
    }
    assert!(plan_of(&file, &[], "", MAX_RAM, &mut area).is_ok());

    let long = "x".repeat(MAX_CMDLINE + 1);
    assert_eq!(plan_of(&file, &[], &long, RAM, &mut area).unwrap_err(), LoadError::CmdlineTooLong);
    // The limit counts the name and its space.
    let most = &long[NAME.len() + 2..];
    assert!(plan_of(&file, &[], most, RAM, &mut area).is_ok());
    assert_eq!(plan_of(&file, &[], &long[NAME.len() + 1..], RAM, &mut area).unwrap_err(), LoadError::CmdlineTooLong);
    assert_eq!(plan_of(&file, &[], "a\0b", RAM, &mut area).unwrap_err(), LoadError::StringHasNul { module: None });
    let many = vec![Module { string: "m", bytes: &[] }; MAX_MODULES + 1];
    assert_eq!(plan_of(&file, &many, "", RAM, &mut area).unwrap_err(), LoadError::TooManyModules);
    let name = "n".repeat(MAX_MODULE_STRING + 1);
    let bad = [Module { string: "ok", bytes: &[] }, Module { string: &name, bytes: &[] }];
    assert_eq!(plan_of(&file, &bad, "", RAM, &mut area).unwrap_err(), LoadError::ModuleStringTooLong { module: 1 });
    let nul = [Module { string: "a\0", bytes: &[] }];
    assert_eq!(plan_of(&file, &nul, "", RAM, &mut area).unwrap_err(), LoadError::StringHasNul { module: Some(0) });

    // The largest request fits BOOT_AREA_MAX exactly.
    let big: Vec<_> = (0..MAX_MODULES).map(|_| Module { string: &name[1..], bytes: &[1] }).collect();
    let cmdline = &long[1..];
    let request = LoadRequest { kernel: &file, name: "", modules: &big, cmdline, ram_size: RAM };
    assert_eq!(boot_area_len(&request), BOOT_AREA_MAX);
    let mut area = vec![0; BOOT_AREA_MAX];
    assert!(plan(&request, &mut area).is_ok());
    let mut small = vec![0; BOOT_AREA_MAX - 1];
    assert_eq!(plan(&request, &mut small).unwrap_err(), LoadError::BootAreaTooSmall { needed: BOOT_AREA_MAX });

    // Modules that do not fit in RAM.
    let huge = vec![0u8; 2 * MIB as usize];
    let mods = [Module { string: "huge", bytes: &huge }];
    let mut area = vec![0; BOOT_AREA_MAX];
    assert_eq!(plan_of(&file, &mods, "", 2 * MIB, &mut area).unwrap_err(), LoadError::OutOfRam { end: 0x30_5000 });
}

#[test]
fn apply_refuses_a_buffer_smaller_than_the_plan() {
    let file = kernel(false).build();
    let mut area = vec![0; BOOT_AREA_MAX];
    let plan = plan_of(&file, &[], "", RAM, &mut area).unwrap();
    let mut ram = vec![0; 0x10_3000];
    assert_eq!(plan.apply(&mut ram), Err(LoadError::OutsideBuffer { gpa: 0x10_2000, len: 0x3000 }));
}

#[test]
fn errors_display_without_panicking() {
    let all = [
        LoadError::RamSize { ram_size: 1 },
        LoadError::NoMultibootHeader,
        LoadError::BadChecksum { offset: 4 },
        LoadError::HeaderTruncated { offset: 4 },
        LoadError::UnsupportedRequirements { bits: 4 },
        LoadError::NotElf,
        LoadError::BadElf("x"),
        LoadError::BadAoutHeader("y"),
        LoadError::NoLoadableSegments,
        LoadError::TooManySegments,
        LoadError::SegmentOutsideFile { index: 1 },
        LoadError::SegmentFileLargerThanMemory { index: 1 },
        LoadError::SegmentOutsideRam { start: 1, end: 2 },
        LoadError::SegmentsOverlap { first: 1, second: 2 },
        LoadError::EntryOutsideImage { entry: 1 },
        LoadError::TooManyModules,
        LoadError::CmdlineTooLong,
        LoadError::StringHasNul { module: None },
        LoadError::StringHasNul { module: Some(2) },
        LoadError::ModuleStringTooLong { module: 1 },
        LoadError::OutOfRam { end: 1 },
        LoadError::BootAreaTooSmall { needed: 1 },
        LoadError::OutsideBuffer { gpa: 1, len: 2 },
    ];
    for e in all {
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(LoadError::StringHasNul { module: Some(2) }.to_string(), "module 2's string contains a NUL byte");
}

// ---------------------------------------------------------------------------
// Hostile files
// ---------------------------------------------------------------------------

#[test]
fn every_truncation_of_a_kernel_is_an_error_or_a_plan_never_a_panic() {
    for class64 in [false, true] {
        let file = kernel(class64).build();
        for len in 0..file.len() {
            let mut area = vec![0; BOOT_AREA_MAX];
            let _ = plan_of(&file[..len], &[], "", RAM, &mut area);
        }
    }
}

#[test]
fn random_corruption_never_panics() {
    let mut rng = fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d);
    let mut planned = 0;
    let mut ram = vec![0; RAM as usize];
    for class64 in [false, true] {
        let file = kernel(class64).build();
        for _ in 0..5000 {
            let mut f = file.clone();
            // Corrupt the headers (the first 256 bytes), where the decisions are.
            for _ in 0..rng.u32(1..=4) {
                let at = rng.usize(..256);
                f[at] = rng.u8(..);
            }
            let mut area = vec![0; BOOT_AREA_MAX];
            if let Ok(plan) = plan_of(&f, &[], "x", RAM, &mut area) {
                planned += 1;
                // Whatever was accepted stays inside RAM and applies.
                plan.apply(&mut ram).unwrap();
                for w in &plan.writes {
                    assert!(in_ram(&w.range(), RAM), "{w:x?}");
                }
            }
        }
    }
    assert!(planned > 0, "some corruptions are harmless");
}

/// The real guest test kernel, when it has been built for the bare target
/// (`cargo build --release --target x86_64-unknown-none -p guest-testkernel
/// --target-dir target/bare`); skipped otherwise.
#[test]
fn the_built_guest_test_kernel_loads() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/bare/x86_64-unknown-none/release/guest-testkernel");
    let Ok(file) = std::fs::read(path) else {
        eprintln!("skipped: {path} not built");
        return;
    };
    let mut area = vec![0; BOOT_AREA_MAX];
    let plan = plan_of(&file, &[], "tests=all", 32 * MIB, &mut area).unwrap();
    assert_eq!(plan.format, KernelFormat::Elf64);
    assert_eq!(plan.kernel.start, MIB);
    assert_eq!(plan.header_flags, 3);
    assert!(plan.kernel.contains(&u64::from(plan.entry)));
    let ram = render(&plan, 32 * MIB);
    let mem = guest_testkernel::multiboot::Buffer { base: 0, bytes: &ram };
    guest_testkernel::multiboot::check(&mem, BOOTLOADER_MAGIC, plan.info, plan.kernel.clone()).unwrap();
}

/// Found while writing the `multiboot_loader` fuzz target: translating the
/// entry through a segment whose physical address is near 2^64 overflowed
/// (a panic with overflow checks, a wrapped entry without).
#[test]
fn an_entry_translated_past_the_top_of_memory_is_refused() {
    let mut top = seg(0x10_0000, text(), 0x2000);
    top.paddr = 0xffff_ffff_ffff_f000;
    let file = Elf::new(true, 0x10_1800, vec![top]).build();
    assert_eq!(load_err(&file), LoadError::SegmentOutsideRam { start: 0xffff_ffff_ffff_f000, end: u64::MAX });
}
