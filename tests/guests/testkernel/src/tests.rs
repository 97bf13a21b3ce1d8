use super::multiboot::{self, Buffer, Memory};
use super::*;
use core::fmt::Write;

fn names(cmdline: &str) -> Vec<String> {
    selection(cmdline)
        .map(|s| match s {
            Selected::Test(t) => t.name().to_string(),
            Selected::Unknown(n) => format!("?{n}"),
        })
        .collect()
}

#[test]
fn every_test_has_a_unique_name_that_parses_back() {
    for t in Test::ALL {
        assert_eq!(Test::from_name(t.name()), Some(t));
    }
    let mut all: Vec<_> = Test::ALL.iter().map(|t| t.name()).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), Test::ALL.len());
    assert_eq!(Test::from_name("UART"), None);
    for t in Test::explicit() {
        assert_eq!(Test::from_name(t.name()), Some(t));
        assert!(!Test::ALL.contains(&t), "{t:?} runs only when named");
        assert!(!all.contains(&t.name()));
    }
    let mut explicit: Vec<_> = Test::explicit().map(|t| t.name()).collect();
    explicit.sort();
    explicit.dedup();
    assert_eq!(explicit.len(), Test::EXPLICIT.len() + Test::HOSTILE.len() + Test::FIDELITY.len());
}

#[test]
fn tests_all_is_the_eight_cases() {
    assert_eq!(names("tests=all"), ["uart", "multiboot", "cpuid", "portio", "hlt", "unmapped", "mmio", "readonly"]);
}

#[test]
fn the_tlfs_group_selects_its_tests_in_order() {
    assert_eq!(names("tests=tlfs"), ["tlfs-cpuid", "tlfs-msr", "tlfs-hypercall", "tlfs-synic", "tlfs-stimer"]);
    assert_eq!(
        names("tests=uart,tlfs,hlt"),
        ["uart", "tlfs-cpuid", "tlfs-msr", "tlfs-hypercall", "tlfs-synic", "tlfs-stimer", "hlt"]
    );
    assert_eq!(names("tests=tlfs-msr"), ["tlfs-msr"]);
    assert_eq!(names("tests=tlfs,tlfs"), names("tests=tlfs-cpuid,tlfs-msr,tlfs-hypercall,tlfs-synic,tlfs-stimer,tlfs"));
    assert_eq!(names("tests=tlfs,"), ["tlfs-cpuid", "tlfs-msr", "tlfs-hypercall", "tlfs-synic", "tlfs-stimer"]);
    for (group, tests) in Test::GROUPS {
        assert_eq!(Test::from_name(group), None, "a group is not also a test");
        // `all` stands for the standard tests; other groups hold only explicit ones.
        let standard = group == "all";
        assert!(tests.iter().all(|t| standard || Test::explicit().any(|e| e == *t)), "groups hold only explicit tests");
    }
    assert!(!names("tests=all").iter().any(|n| n.starts_with("tlfs")));
}

#[test]
fn the_vsm_test_runs_only_when_named() {
    assert_eq!(names("tests=vsm"), ["vsm"]);
    assert!(!names("tests=all").contains(&"vsm".to_string()) && !names("tests=tlfs").contains(&"vsm".to_string()));
    assert!(Test::explicit().any(|t| t == Test::Vsm));
    assert_eq!(names("tests=vsmbench"), ["vsmbench"]);
    assert!(!names("tests=all").contains(&"vsmbench".to_string()));
}

#[test]
fn explicit_tests_are_selected_by_name() {
    assert_eq!(names("tests=isolation mark=alpha"), ["isolation"]);
    assert_eq!(names("tests=crash"), ["crash"]);
    assert_eq!(names("tests=uart,isolation,crash"), ["uart", "isolation", "crash"]);
    assert_eq!(names("tests=smp cpus=2"), ["smp"]);
    assert_eq!(names("tests=smpbench cpus=4"), ["smpbench"]);
    assert_eq!(names("tests=busy"), ["busy"]);
    assert_eq!(names("tests=turns cpus=2"), ["turns"]);
}

#[test]
fn all_in_a_list_stands_for_the_eight_cases() {
    let mut with_smp: Vec<String> = Test::ALL.iter().map(|t| t.name().to_string()).collect();
    with_smp.push("smp".into());
    assert_eq!(names("tests=all,smp cpus=4"), with_smp);
    assert_eq!(names("tests=smp,all")[0], "smp");
    assert_eq!(names("tests=smp,all").len(), 9);
    assert_eq!(names("tests=all,all").len(), 16);
    assert_eq!(Test::from_name("all"), None, "a group is no test");
}

#[test]
fn options_are_parsed_like_tests() {
    assert_eq!(mark_option("tests=isolation mark=alpha"), Some("alpha"));
    assert_eq!(mark_option("mark=alpha tests=isolation mark=beta"), Some("beta"));
    assert_eq!(mark_option("/boot/tk  mark=x  quiet"), Some("x"));
    assert_eq!(mark_option("tests=isolation"), None);
    assert_eq!(mark_option("remark=x markx=y mark"), None);
    assert_eq!(mark_option("mark="), Some(""));
    assert_eq!(option("a=1 b=2 a=3", "a"), Some("3"));
    assert_eq!(option("ab=1", "a"), None);
    assert_eq!(tests_option("tests=isolation mark=alpha"), Some("isolation"));
}

#[test]
fn the_kernels_file_name_first_on_the_command_line_is_no_option() {
    // As the VID, GRUB (`multiboot /boot/k args`) and QEMU (`-kernel`) pass it.
    for name in ["guest0:image", "/boot/guest-testkernel", "target/x86_64/guest-testkernel"] {
        let line = format!("{name} tests=smp,uart cpus=2");
        assert_eq!(names(&line), ["smp", "uart"]);
        assert_eq!(option(&line, "cpus"), Some("2"));
        assert_eq!(mark_option(&line), None);
    }
    // The name alone: every test, as with no command line.
    assert_eq!(names("/boot/guest-testkernel").len(), Test::ALL.len());
}

#[test]
fn the_isolation_record_is_prefix_mark_and_zeros() {
    let r = isolation::record("alpha").unwrap();
    assert_eq!(r.len(), 64);
    assert_eq!(&r[..23], b"TESSERA-ISOLATION:alpha");
    assert!(r[23..].iter().all(|&b| b == 0));
    assert_eq!(isolation::describe(&r).as_str(), "alpha");
    assert_eq!(isolation::describe(&isolation::record("beta").unwrap()).as_str(), "beta");

    let longest = "m".repeat(isolation::MAX_MARK);
    let r = isolation::record(&longest).unwrap();
    assert_eq!(r[63], 0);
    assert_eq!(isolation::describe(&r).as_str(), longest);
    assert!(isolation::record(&"m".repeat(isolation::MAX_MARK + 1)).is_err());
    assert!(isolation::record("").is_err());
    assert!(isolation::record("a\u{e9}").is_err());
    assert!(isolation::record("a b").is_err());

    // Not a record: shown escaped, trailing zeros dropped.
    let mut junk = [0u8; 64];
    assert_eq!(isolation::describe(&junk).as_str(), "");
    junk[..3].copy_from_slice(b"ab\xff");
    assert_eq!(isolation::describe(&junk).as_str(), "ab\\xff");
    // A record with bytes after its terminating zero is not well-formed.
    let mut r = isolation::record("alpha").unwrap();
    r[40] = b'z';
    assert!(isolation::describe(&r).as_str().starts_with("TESSERA-ISOLATION:alpha\\x00"));
}

#[test]
fn the_command_line_selects_tests() {
    let all: Vec<String> = Test::ALL.iter().map(|t| t.name().to_string()).collect();
    assert_eq!(names(""), all);
    assert_eq!(names("tests=all"), all);
    assert_eq!(names("/boot/testkernel tests=all quiet"), all);
    assert_eq!(names("tests=cpuid,uart"), ["cpuid", "uart"]);
    assert_eq!(names("tests=uart,,hlt,"), ["uart", "hlt"]);
    assert_eq!(names("tests=uart,bogus"), ["uart", "?bogus"]);
    assert_eq!(names("tests=uart tests=mmio"), ["mmio"]);
    assert_eq!(names("tests="), Vec::<String>::new());
    assert_eq!(tests_option("a=b  tests=x,y c"), Some("x,y"));
    assert_eq!(tests_option("nottests=x"), None);
}

#[test]
fn text_cuts_off_what_does_not_fit() {
    let mut t = Text::<8>::new();
    write!(t, "abcdef").unwrap();
    write!(t, "ghij").unwrap();
    assert_eq!(t.as_str(), "abcdefgh");
    let mut t = Text::<4>::new();
    write!(t, "aé€").unwrap(); // 1 + 2 bytes fit, the 3-byte char does not
    assert_eq!(t.as_str(), "aé");
    assert_eq!(detail!("x={}", 5).as_str(), "x=5");
    assert_eq!(format!("{}", detail!("y")), "y");
}

#[test]
fn the_vendor_must_be_printable() {
    // "GenuineIntel": EBX "Genu", EDX "ineI", ECX "ntel".
    let w = |s: &[u8; 4]| u32::from_le_bytes(*s);
    assert_eq!(&cpuid_vendor(w(b"Genu"), w(b"ineI"), w(b"ntel")).unwrap(), b"GenuineIntel");
    assert!(cpuid_vendor(0, 0, 0).is_err());
    assert!(cpuid_vendor(w(b"    "), w(b"    "), w(b"    ")).is_err());
    assert!(cpuid_vendor(w(b"Genu"), w(b"ine\x80"), w(b"ntel")).is_err());
}

/// A hand-made boot information in a buffer at 0x10000.
struct Boot {
    bytes: Vec<u8>,
}

const BASE: u64 = 0x10000;
const INFO: u64 = BASE;
const MMAP: u64 = BASE + 0x100;
const MODS: u64 = BASE + 0x200;
const STRINGS: u64 = BASE + 0x300;
const KERNEL: core::ops::Range<u64> = 0x10_0000..0x10_8000;

impl Boot {
    fn new(flags: u32) -> Boot {
        let mut b = Boot { bytes: vec![0; 0x1000] };
        b.put32(INFO, flags);
        b.put32(INFO + 4, 639);
        b.put32(INFO + 8, 31 * 1024);
        b.put32(INFO + 16, STRINGS as u32);
        b.bytes[(STRINGS - BASE) as usize..][..10].copy_from_slice(b"tests=all\0");
        b.mmap(&[(0, 0x9fc00, 1), (0xf0000, 0x10000, 2), (0x10_0000, 31 << 20, 1)]);
        b
    }

    fn put32(&mut self, at: u64, v: u32) {
        self.bytes[(at - BASE) as usize..][..4].copy_from_slice(&v.to_le_bytes());
    }

    fn put64(&mut self, at: u64, v: u64) {
        self.bytes[(at - BASE) as usize..][..8].copy_from_slice(&v.to_le_bytes());
    }

    fn mmap(&mut self, entries: &[(u64, u64, u32)]) {
        for (i, &(base, len, kind)) in entries.iter().enumerate() {
            let at = MMAP + 24 * i as u64;
            self.put32(at, 20);
            self.put64(at + 4, base);
            self.put64(at + 12, len);
            self.put32(at + 20, kind);
        }
        self.put32(INFO + 44, 24 * entries.len() as u32);
        self.put32(INFO + 48, MMAP as u32);
    }

    fn modules(&mut self, mods: &[(u32, u32)]) {
        let flags = self.mem().u32_at(INFO).unwrap();
        self.put32(INFO, flags | multiboot::FLAG_MODS);
        self.put32(INFO + 20, mods.len() as u32);
        self.put32(INFO + 24, MODS as u32);
        for (i, &(start, end)) in mods.iter().enumerate() {
            let at = MODS + 16 * i as u64;
            self.put32(at, start);
            self.put32(at + 4, end);
            self.put32(at + 8, STRINGS as u32);
        }
    }

    fn mem(&self) -> Buffer<'_> {
        Buffer { base: BASE, bytes: &self.bytes }
    }

    fn check(&self) -> Result<multiboot::Summary, String> {
        multiboot::check(&self.mem(), multiboot::BOOTLOADER_MAGIC, INFO, KERNEL).map_err(|d| d.as_str().to_string())
    }
}

const FLAGS: u32 = multiboot::FLAG_MEMORY | multiboot::FLAG_CMDLINE | multiboot::FLAG_MMAP;

#[test]
fn a_good_boot_information_passes() {
    let mut b = Boot::new(FLAGS);
    b.modules(&[(0x20_0000, 0x20_0123), (0x20_1000, 0x20_1000)]);
    let summary = b.check().unwrap();
    assert_eq!(summary.mmap_entries, 3);
    assert_eq!(summary.available, 0x9fc00 + (31 << 20));
    assert_eq!(summary.ram_end, 32 << 20);
    assert_eq!(summary.info.mods_count, 2);
    let mut buf = [0; 64];
    assert_eq!(multiboot::c_string(&b.mem(), u64::from(summary.info.cmdline), &mut buf), Some("tests=all"));
    assert_eq!(multiboot::past_ram(&b.mem(), &summary), 32 << 20);
}

#[test]
fn bad_boot_information_is_reported() {
    let b = Boot::new(FLAGS);
    let bad_magic = multiboot::check(&b.mem(), 0x36d7_6289, INFO, KERNEL).unwrap_err();
    assert!(bad_magic.as_str().starts_with("magic 0x36d76289"), "{bad_magic}");
    assert!(multiboot::check(&b.mem(), multiboot::BOOTLOADER_MAGIC, 0x5000, KERNEL).is_err());
    assert!(Boot::new(multiboot::FLAG_MEMORY).check().unwrap_err().contains("lack"));

    let mut b = Boot::new(FLAGS);
    b.put32(INFO + 4, 641);
    assert!(b.check().unwrap_err().contains("mem_lower"));

    let mut b = Boot::new(FLAGS);
    b.mmap(&[(0, 0x9fc00, 2)]);
    assert!(b.check().unwrap_err().contains("no available RAM"));

    let mut b = Boot::new(FLAGS);
    b.mmap(&[(0, 0x9fc00, 1), (0x10_0000, 0x4000, 1)]);
    assert!(b.check().unwrap_err().contains("not in available RAM"));

    let mut b = Boot::new(FLAGS);
    b.put32(MMAP + 24, 12);
    assert!(b.check().unwrap_err().contains("has size 12"));

    let mut b = Boot::new(FLAGS);
    b.put32(INFO + 44, 0x10_0000);
    assert!(b.check().is_err(), "a memory map running off the end is caught");

    let mut b = Boot::new(FLAGS);
    b.modules(&[(0x20_0800, 0x20_1000)]);
    assert!(b.check().unwrap_err().contains("not page-aligned"));

    let mut b = Boot::new(FLAGS);
    b.modules(&[(0x20_1000, 0x20_0000)]);
    assert!(b.check().unwrap_err().contains("before its start"));

    let mut b = Boot::new(FLAGS);
    b.modules(&[(0x10_7000, 0x10_9000)]);
    assert!(b.check().unwrap_err().contains("overlaps the kernel"));

    let mut b = Boot::new(FLAGS);
    b.modules(&[]);
    b.put32(INFO + 20, 1000);
    assert!(b.check().unwrap_err().contains("1000 modules"));

    let b = Boot::new(FLAGS);
    let err = multiboot::check(&b.mem(), multiboot::BOOTLOADER_MAGIC, INFO, BASE..BASE + 0x2000).unwrap_err();
    assert!(err.as_str().contains("overlaps the kernel"), "{err}");
}

#[test]
fn too_many_mmap_entries_stop_the_walk() {
    let mut b = Boot::new(FLAGS);
    b.bytes.resize(0x10000, 0);
    let many: Vec<_> = (0..200).map(|i| (i << 20, 1 << 20, 1)).collect();
    b.mmap(&many);
    assert!(b.check().unwrap_err().contains("more than"));
}

#[test]
fn past_ram_skips_reserved_regions_after_ram() {
    let mut b = Boot::new(FLAGS);
    // As QEMU reports 256 MiB: RAM ends at 0x0ffe0000, reserved to 256 MiB, BIOS at the top.
    b.mmap(&[
        (0, 0x9fc00, 1),
        (0x9fc00, 0x400, 2),
        (0x10_0000, 0x0ffe_0000 - 0x10_0000, 1),
        (0x0ffe_0000, 0x2_0000, 2),
        (0xfffc_0000, 0x4_0000, 2),
    ]);
    let summary = multiboot::check(&b.mem(), multiboot::BOOTLOADER_MAGIC, INFO, KERNEL).unwrap();
    assert_eq!(summary.ram_end, 0x0ffe_0000);
    assert_eq!(multiboot::past_ram(&b.mem(), &summary), 0x1000_0000);
    // An unaligned end is rounded up to a page.
    b.mmap(&[(0x10_0000, 0x10_0800, 1)]);
    let summary = multiboot::check(&b.mem(), multiboot::BOOTLOADER_MAGIC, INFO, KERNEL).unwrap();
    assert_eq!(multiboot::past_ram(&b.mem(), &summary), 0x20_1000);
}

#[test]
fn strings_and_memory_reads_are_bounded() {
    let b = Boot::new(FLAGS);
    let mem = b.mem();
    let mut small = [0; 4];
    assert_eq!(multiboot::c_string(&mem, STRINGS, &mut small), None, "longer than the buffer");
    let mut buf = [0; 16];
    assert_eq!(multiboot::c_string(&mem, BASE + 0xfff, &mut buf), Some(""));
    assert_eq!(multiboot::c_string(&mem, 0x5000, &mut buf), None);
    assert_eq!(mem.u32_at(BASE + 0xffd), None);
    assert_eq!(mem.u32_at(u64::MAX - 1), None);
    let mut bad = Boot::new(FLAGS);
    bad.bytes[(STRINGS - BASE) as usize] = 0xff;
    assert_eq!(multiboot::c_string(&bad.mem(), STRINGS, &mut buf), None, "not UTF-8");
}

#[test]
fn protocol_addresses_stay_clear_of_each_other() {
    use protocol::*;
    assert_eq!(&TEST_DEVICE_ID_VALUE.to_le_bytes(), b"TESS");
    const { assert!(TEST_ROM >= 0xa_0000 && TEST_ROM + 0x1000 <= 0x10_0000, "the ROM is in the legacy hole") };
    const { assert!(UNMAPPED_HIGH >= 0xc000_0000 && UNMAPPED_HIGH < TEST_DEVICE) };
    const { assert!(TEST_DEVICE.is_multiple_of(0x1000) && TEST_ROM.is_multiple_of(0x1000)) };
    for port in [UART_DATA, UART_LINE_STATUS, TEST_EXIT] {
        assert_ne!(port, UNEMULATED_PORT);
    }
}

// ---- smp ------------------------------------------------------------------

#[test]
fn the_cpu_count_comes_from_the_command_line() {
    assert_eq!(smp::cpus_option("tests=smp cpus=2"), Ok(2));
    assert_eq!(smp::cpus_option("cpus=1"), Ok(1));
    assert_eq!(smp::cpus_option("cpus=3 tests=smp cpus=16"), Ok(16));
    for bad in ["cpus=0", "cpus=17", "cpus=", "cpus=+2", "cpus=two", "cpus=0x2", "cpus=-1", "cpus=99999999999"] {
        let err = smp::cpus_option(bad).unwrap_err();
        assert!(err.as_str().contains("expected 1 to 16"), "{bad}: {err}");
    }
    assert!(smp::cpus_option("tests=smp").unwrap_err().as_str().contains("no cpus="));
    assert!(smp::cpus_option("ncpus=2").is_err());
}

#[test]
fn interrupt_commands_are_encoded_as_the_sdm_gives_them() {
    // SDM Vol. 3A 8.4.4.1: INIT 0x000C4500 / SIPI 0x000C46XX broadcast; here to one ID.
    assert_eq!(smp::Icr::init(3), smp::Icr { low: 0x0000_4500, high: 0x0300_0000 });
    assert_eq!(smp::Icr::startup(1, 0x08), smp::Icr { low: 0x0000_4608, high: 0x0100_0000 });
    assert_eq!(smp::Icr::fixed(0, smp::IPI_VECTOR), smp::Icr { low: 0x0000_4040, high: 0 });
    assert_eq!(smp::Icr::fixed(0xff, 0xfe).high, 0xff00_0000);
    assert_eq!(smp::lapic::id(0x0500_0000), 5);
    assert_eq!(smp::lapic::cpuid_id(0x0208_0800), 2);
}

#[test]
fn startup_vectors_name_conventional_memory_pages() {
    assert_eq!(smp::startup_vector(0x8000), Some(0x08));
    assert_eq!(smp::startup_vector(0x1000), Some(0x01));
    assert_eq!(smp::startup_vector(0x9f000), Some(0x9f));
    for bad in [0, 0x8001, 0xa0000, 0xb8000, 0x10_0000, 0x1_0000_8000] {
        assert_eq!(smp::startup_vector(bad), None, "{bad:#x}");
    }
}

#[test]
fn identities_must_agree() {
    const BASE: u64 = 0xfee0_0000 | 1 << 11;
    assert_eq!(smp::identity(0, 0x0000_0800, BASE | 1 << 8, true), Ok(0));
    assert_eq!(smp::identity(0x0300_0000, 0x0308_0800, BASE, false), Ok(3));
    let err = |r: Result<u8, Detail>| r.unwrap_err().as_str().to_string();
    assert!(err(smp::identity(0x0100_0000, 0x0200_0800, BASE, false)).contains("register says 1, CPUID"));
    assert!(err(smp::identity(0, 0, BASE | 1 << 8, false)).contains("BSP flag wrong for an AP"));
    assert!(err(smp::identity(0, 0, 0xfee0_0000 | 1 << 8, true)).contains("not enabled"));
    assert!(err(smp::identity(0, 0, 0xfec0_0900, true)).contains("not enabled at 0xfee00000"));
    assert!(err(smp::identity(0x0100_0000, 0x0100_0000, BASE, true)).contains("BSP flag wrong for the BSP"));
}

fn params() -> smp::trampoline::Params {
    smp::trampoline::Params {
        page: 0x8000,
        image_len: 0x100,
        gdt: 0xe0,
        gdt_len: 32,
        protected: 0x40,
        long: 0x80,
        cr3: 0x10_3000,
        entry: 0x10_2345,
        stacks: 0x12_0000,
        stack_size: 0x4000,
        slots: 16,
    }
}

#[test]
fn the_parameter_block_has_the_layout_the_trampoline_reads() {
    use smp::trampoline::*;
    let b = params().bytes().unwrap();
    let at = |offset: u64| (offset - PARAMS) as usize;
    let u16_at = |o| u16::from_le_bytes(b[at(o)..][..2].try_into().unwrap());
    let u32_at = |o| u32::from_le_bytes(b[at(o)..][..4].try_into().unwrap());
    let u64_at = |o| u64::from_le_bytes(b[at(o)..][..8].try_into().unwrap());
    assert_eq!((u16_at(GDT_POINTER), u32_at(GDT_POINTER + 2)), (31, 0x80e0));
    assert_eq!((u32_at(PROTECTED_JUMP), u16_at(PROTECTED_JUMP + 4)), (0x8040, CODE32));
    assert_eq!((u32_at(LONG_JUMP), u16_at(LONG_JUMP + 4)), (0x8080, CODE64));
    assert_eq!(u32_at(CR3), 0x10_3000);
    assert_eq!(u64_at(ENTRY), 0x10_2345);
    assert_eq!((u64_at(STACKS), u64_at(STACK_SIZE)), (0x12_0000, 0x4000));
    assert_eq!((u32_at(SLOTS), u32_at(NEXT_SLOT)), (16, 0));
    assert_eq!(PARAMS + PARAMS_LEN as u64, 0xf40);
    const { assert!(PARAMS + PARAMS_LEN as u64 <= 0x1000) };

    let err = |p: Params| p.bytes().unwrap_err().as_str().to_string();
    assert!(err(Params { image_len: 0xf01, ..params() }).contains("past its parameters"));
    assert!(err(Params { long: 0x101, ..params() }).contains("labels outside"));
    assert!(err(Params { gdt: 0xf0, ..params() }).contains("labels outside"));
    assert!(err(Params { cr3: 1 << 32, ..params() }).contains("above 4 GiB"));
    assert!(err(Params { page: 0xa0000, ..params() }).contains("cannot be started"));
    assert!(err(Params { stack_size: 0x4008, ..params() }).contains("unaligned"));
    assert!(err(Params { slots: 0, ..params() }).contains("unaligned"));
}

#[test]
fn the_trampoline_page_is_free_conventional_ram() {
    let kernel = KERNEL;
    let b = Boot::new(FLAGS);
    let summary = b.check().unwrap();
    assert_eq!(smp::trampoline_page(&b.mem(), &summary, INFO, &kernel), Ok(0x8000));

    // 0x8000 reserved: the lowest free page instead.
    let mut b = Boot::new(FLAGS);
    b.mmap(&[(0, 0x8000, 2), (0x8000, 0x1000, 2), (0x9000, 0x96c00, 1), (0x10_0000, 31 << 20, 1)]);
    let summary = b.check().unwrap();
    assert_eq!(smp::trampoline_page(&b.mem(), &summary, INFO, &kernel), Ok(0x9000));

    // A kernel low in memory, and boot information, are skipped.
    let b = Boot::new(FLAGS);
    let summary = b.check().unwrap();
    assert_eq!(smp::trampoline_page(&b.mem(), &summary, INFO, &(0x1000..0x9000)), Ok(0x9000));
    let low = 0x1000..0x10_0000;
    assert!(smp::trampoline_page(&b.mem(), &summary, INFO, &low).unwrap_err().as_str().contains("no free page"));
    // The information, its memory map, module list and strings are at 0x10000..0x10301.
    let page = smp::trampoline_page(&b.mem(), &summary, INFO, &(0x1000..0x10000)).unwrap();
    assert_eq!(page, 0x11000);

    // A module below 1 MiB, and its string.
    let mut b = Boot::new(FLAGS);
    b.modules(&[(0x8000, 0x8800)]);
    let summary = b.check().unwrap();
    assert_eq!(smp::trampoline_page(&b.mem(), &summary, INFO, &kernel), Ok(0x1000));
    let summary = b.check().unwrap();
    let page = smp::trampoline_page(&b.mem(), &summary, INFO, &(0x1000..0x8000)).unwrap();
    assert_eq!(page, 0x9000);
}

#[test]
fn the_verdict_names_missing_stray_and_repeated_aps() {
    let (mut seen, wrong) = ([0u8; 256], [false; 256]);
    seen[1] = 1;
    seen[2] = 1;
    seen[3] = 1;
    assert_eq!(smp::verdict(4, 0, &seen, &wrong, 3), Ok(()));
    assert_eq!(smp::verdict(1, 0, &[0; 256], &wrong, 0), Ok(()), "one CPU: no APs");
    let why = |r: Result<(), Detail>| r.unwrap_err().as_str().to_string();
    assert_eq!(why(smp::verdict(4, 0, &seen, &wrong, 2)), "2 IPIs (vector 0x40) from 3 APs");
    assert_eq!(why(smp::verdict(5, 0, &seen, &wrong, 3)), "missing: 4; 3 arrivals for 4 APs");
    assert_eq!(why(smp::verdict(3, 0, &seen, &wrong, 3)), "unexpected: 3; 3 arrivals for 2 APs");
    let mut twice = seen;
    twice[2] = 2;
    twice[0] = 1;
    assert_eq!(why(smp::verdict(4, 0, &twice, &wrong, 3)), "unexpected: 0; twice: 2; 5 arrivals for 3 APs");
    let mut bad = wrong;
    bad[3] = true;
    assert_eq!(why(smp::verdict(4, 0, &seen, &bad, 3)), "misidentified: 3; 3 arrivals for 3 APs");
    // Another BSP: the APs are the other IDs.
    let mut others = [0u8; 256];
    others[0] = 1;
    assert_eq!(smp::verdict(2, 1, &others, &wrong, 1), Ok(()));
}
