use super::*;
use crate::BufferMemory;

const BASE: u64 = 0x9000;

/// A little builder for fake physical memory at `BASE`.
struct Image(std::vec::Vec<u8>);

impl Image {
    fn new(size: usize) -> Self {
        Image(vec![0; size])
    }
    fn put(&mut self, addr: u64, bytes: &[u8]) {
        let at = (addr - BASE) as usize;
        self.0[at..at + bytes.len()].copy_from_slice(bytes);
    }
    fn put32(&mut self, addr: u64, v: u32) {
        self.put(addr, &v.to_le_bytes());
    }
    fn put64(&mut self, addr: u64, v: u64) {
        self.put(addr, &v.to_le_bytes());
    }
    fn mem(&self) -> BufferMemory<'_> {
        BufferMemory { base: BASE, data: &self.0 }
    }
}

fn mb1_image() -> Image {
    let mut img = Image::new(0x1000);
    let info = BASE;
    img.put32(info, v1::FLAG_CMDLINE | v1::FLAG_MODS | v1::FLAG_MMAP | v1::FLAG_LOADER_NAME);
    img.put32(info + 16, (BASE + 0x200) as u32);
    img.put(BASE + 0x200, b"exit=idle test=fault-pf\0");
    img.put32(info + 64, (BASE + 0x240) as u32);
    img.put(BASE + 0x240, b"qemu\0");
    // Two modules.
    img.put32(info + 20, 2);
    img.put32(info + 24, (BASE + 0x300) as u32);
    for (i, (start, end, name)) in
        [(0x20_0000u32, 0x21_0000u32, 0x380u64), (0x21_0000, 0x21_0100, 0x3c0)].iter().enumerate()
    {
        let e = BASE + 0x300 + 16 * i as u64;
        img.put32(e, *start);
        img.put32(e + 4, *end);
        img.put32(e + 8, (BASE + name) as u32);
    }
    img.put(BASE + 0x380, b"/path/microkernel.elf microkernel\0");
    img.put(BASE + 0x3c0, b"bootfs\0");
    // Memory map: three entries of size 20.
    let map = BASE + 0x400;
    let entries = [(0u64, 0x9_fc00u64, 1u32), (0xf_0000, 0x1_0000, 2), (0x10_0000, 0xff0_0000, 1)];
    for (i, (base, len, kind)) in entries.iter().enumerate() {
        let e = map + 24 * i as u64;
        img.put32(e, 20);
        img.put64(e + 4, *base);
        img.put64(e + 12, *len);
        img.put32(e + 20, *kind);
    }
    img.put32(info + 44, 72);
    img.put32(info + 48, map as u32);
    img
}

#[test]
fn multiboot1_information_is_read() {
    let img = mb1_image();
    let mem = img.mem();
    let s = parse(&mem, MB1_BOOTLOADER_MAGIC, BASE).unwrap();
    assert_eq!(s.protocol, Protocol::Multiboot1);
    assert_eq!(s.cmdline, "exit=idle test=fault-pf");
    assert_eq!(s.bootloader_name, "qemu");
    assert_eq!(
        s.modules.as_slice(),
        &[
            RawModule { start: 0x20_0000, end: 0x21_0000, name: "/path/microkernel.elf microkernel" },
            RawModule { start: 0x21_0000, end: 0x21_0100, name: "bootfs" },
        ]
    );
    assert_eq!(
        s.memory.as_slice(),
        &[
            MemoryRegion::new(0, 0x9_fc00, MemoryKind::Usable),
            MemoryRegion::new(0xf_0000, 0x10_0000, MemoryKind::Reserved),
            MemoryRegion::new(0x10_0000, 0x1000_0000, MemoryKind::Usable),
        ]
    );
    assert_eq!(s.rsdp, None);
}

#[test]
fn multiboot1_without_memory_map_is_refused() {
    let mut img = mb1_image();
    img.put32(BASE, v1::FLAG_CMDLINE);
    assert_eq!(parse(&img.mem(), MB1_BOOTLOADER_MAGIC, BASE).unwrap_err(), BootError::NoMemoryMap);
}

#[test]
fn multiboot1_bad_pointers_are_errors() {
    let mut img = mb1_image();
    img.put32(BASE + 16, 0xdead_0000);
    assert_eq!(
        parse(&img.mem(), MB1_BOOTLOADER_MAGIC, BASE).unwrap_err(),
        BootError::Unreadable { what: "command line", addr: 0xdead_0000 }
    );
    let mut img = mb1_image();
    img.put32(BASE + 20, 1000);
    assert_eq!(parse(&img.mem(), MB1_BOOTLOADER_MAGIC, BASE).unwrap_err(), BootError::TooManyModules);
    let mut img = mb1_image();
    img.put32(BASE + 0x400, 4); // entry size below the minimum
    assert!(matches!(parse(&img.mem(), MB1_BOOTLOADER_MAGIC, BASE), Err(BootError::Malformed(_))));
}

#[test]
fn unknown_magic_is_refused() {
    let img = mb1_image();
    assert_eq!(parse(&img.mem(), 0x1234, BASE).unwrap_err(), BootError::UnknownMagic(0x1234));
}

/// Builds a Multiboot v2 block from (type, payload) tags.
fn mb2_image(tags: &[(u32, std::vec::Vec<u8>)]) -> Image {
    let mut body = vec![0u8; 8];
    for (kind, payload) in tags {
        let size = 8 + payload.len() as u32;
        body.extend_from_slice(&kind.to_le_bytes());
        body.extend_from_slice(&size.to_le_bytes());
        body.extend_from_slice(payload);
        while !body.len().is_multiple_of(8) {
            body.push(0);
        }
    }
    body.extend_from_slice(&[0, 0, 0, 0, 8, 0, 0, 0]);
    let total = body.len() as u32;
    body[..4].copy_from_slice(&total.to_le_bytes());
    let mut img = Image::new(0x1000);
    img.put(BASE, &body);
    img
}

fn mmap_payload(entries: &[(u64, u64, u32)]) -> std::vec::Vec<u8> {
    let mut p = std::vec::Vec::new();
    p.extend_from_slice(&24u32.to_le_bytes());
    p.extend_from_slice(&0u32.to_le_bytes());
    for (base, len, kind) in entries {
        p.extend_from_slice(&base.to_le_bytes());
        p.extend_from_slice(&len.to_le_bytes());
        p.extend_from_slice(&kind.to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes());
    }
    p
}

fn module_payload(start: u32, end: u32, name: &str) -> std::vec::Vec<u8> {
    let mut p = std::vec::Vec::new();
    p.extend_from_slice(&start.to_le_bytes());
    p.extend_from_slice(&end.to_le_bytes());
    p.extend_from_slice(name.as_bytes());
    p.push(0);
    p
}

#[test]
fn multiboot2_information_is_read() {
    let mut rsdp = b"RSD PTR ".to_vec();
    rsdp.resize(36, 0);
    let img = mb2_image(&[
        (v2::TAG_CMDLINE, b"exit=idle\0".to_vec()),
        (v2::TAG_LOADER_NAME, b"GRUB 2.06\0".to_vec()),
        (v2::TAG_MODULE, module_payload(0x30_0000, 0x30_8000, "microkernel")),
        (v2::TAG_MMAP, mmap_payload(&[(0, 0x9_fc00, 1), (0x10_0000, 0x700_0000, 1), (0x7fe_0000, 0x2_0000, 3)])),
        (99, vec![1, 2, 3]), // unknown tags are skipped
        (v2::TAG_ACPI_NEW, rsdp),
    ]);
    let mem = img.mem();
    let s = parse(&mem, MB2_BOOTLOADER_MAGIC, BASE).unwrap();
    assert_eq!(s.protocol, Protocol::Multiboot2);
    assert_eq!((s.cmdline, s.bootloader_name), ("exit=idle", "GRUB 2.06"));
    assert_eq!(s.modules.as_slice(), &[RawModule { start: 0x30_0000, end: 0x30_8000, name: "microkernel" }]);
    assert_eq!(s.memory.len(), 3);
    assert_eq!(s.memory[2], MemoryRegion::new(0x7fe_0000, 0x800_0000, MemoryKind::AcpiReclaimable));
    let rsdp = s.rsdp.unwrap();
    assert_eq!(img.mem().bytes(rsdp, 8).unwrap(), b"RSD PTR ");
    assert_eq!(s.info.0, BASE);
}

#[test]
fn multiboot2_tag_overrunning_the_block_is_refused() {
    let mut img = mb2_image(&[(v2::TAG_MMAP, mmap_payload(&[(0, 0x1000, 1)]))]);
    img.put32(BASE + 12, 0x4000); // first tag's size
    assert_eq!(parse(&img.mem(), MB2_BOOTLOADER_MAGIC, BASE).unwrap_err(), BootError::Malformed("tag size"));
}

#[test]
fn multiboot2_string_must_end_inside_its_tag() {
    let img =
        mb2_image(&[(v2::TAG_CMDLINE, b"no terminator".to_vec()), (v2::TAG_MMAP, mmap_payload(&[(0, 0x1000, 1)]))]);
    assert!(matches!(
        parse(&img.mem(), MB2_BOOTLOADER_MAGIC, BASE),
        Err(BootError::Unreadable { what: "command line", .. })
    ));
}

#[test]
fn multiboot2_needs_a_memory_map_and_sane_size() {
    let img = mb2_image(&[(v2::TAG_CMDLINE, b"x\0".to_vec())]);
    assert_eq!(parse(&img.mem(), MB2_BOOTLOADER_MAGIC, BASE).unwrap_err(), BootError::NoMemoryMap);
    let mut img = mb2_image(&[]);
    img.put32(BASE, 4);
    assert!(matches!(parse(&img.mem(), MB2_BOOTLOADER_MAGIC, BASE), Err(BootError::Malformed(_))));
    let mut img = mb2_image(&[]);
    img.put32(BASE, 0x10_0000); // larger than the readable memory
    assert!(matches!(parse(&img.mem(), MB2_BOOTLOADER_MAGIC, BASE), Err(BootError::Unreadable { .. })));
}

#[test]
fn wrapping_regions_are_refused() {
    let img = mb2_image(&[(v2::TAG_MMAP, mmap_payload(&[(u64::MAX - 10, 100, 1)]))]);
    assert_eq!(parse(&img.mem(), MB2_BOOTLOADER_MAGIC, BASE).unwrap_err(), BootError::Malformed("memory region wraps"));
}

#[test]
fn image_path_is_dropped_from_the_command_line() {
    assert_eq!(kernel_arguments("/boot/tessera-loader.elf exit=idle test=fault-pf"), "exit=idle test=fault-pf");
    assert_eq!(kernel_arguments("target/x/tessera-loader.elf32"), "");
    assert_eq!(kernel_arguments("loader.elf exit=idle"), "exit=idle");
    assert_eq!(kernel_arguments("exit=idle"), "exit=idle");
    assert_eq!(kernel_arguments(""), "");
}
