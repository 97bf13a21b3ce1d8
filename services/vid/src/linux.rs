//! Loading a Linux bzImage with an initrd through the x86 32-bit boot
//! protocol (the kernel's `Documentation/x86/boot.rst`).
//!
//! [`plan`] reads the kernel file, the initrd and the command line, all of
//! them untrusted, and says what to write where in guest RAM and what the
//! boot processor's registers must hold, like the Multiboot loader
//! ([`crate::loader`]) and in the same form ([`Write`]s, [`RegisterValue`]s
//! from [`crate::entry`]). It copies nothing but into the caller's
//! low-area buffer, so it runs (and is tested) on the host. Every malformed
//! input is a [`LinuxError`], never a panic.
//!
//! # The kernel
//!
//! The real-mode setup header at 0x1f1 must have the boot flag 0xAA55, the
//! `HdrS` magic, protocol 2.12 or later, `LOADED_HIGH` (a bzImage) and a
//! length (`0x202 + byte 0x201`) inside the file and `boot_params`. The
//! protected-mode kernel is the file after the `setup_sects + 1` sectors of
//! setup (0 sectors means 4); it must hold `syssize` paragraphs, and
//! `init_size` must cover it. The setup code itself is not loaded: the
//! 32-bit entry skips it.
//!
//! # Guest-physical layout
//!
//! The caller describes guest memory as an e820 table
//! ([`LinuxRequest::memory_map`]; [`standard_memory_map`] is RAM below
//! 0x9fc00, the reserved legacy hole up to 1 MiB, RAM from 1 MiB to the end).
//! Everything the plan writes, and the kernel's whole decompression
//! footprint, must lie in RAM entries of it and below `ram_size`:
//!
//! - the low area at [`LOW_AREA`]: `boot_params` (the "zero page", 4 KiB),
//!   the GDT, the NUL-terminated command line and, for the 64-bit entry,
//!   page tables ([`low_area`] offsets);
//! - the protected-mode kernel at `pref_address` when the kernel is
//!   relocatable, `pref_address` is `kernel_alignment`-aligned and
//!   `init_size` bytes fit there; otherwise at 1 MiB ([`HIGH_RAM_START`]),
//!   from where the decompressor moves itself. Its footprint, which nothing
//!   else may touch, runs to `max(load + file bytes, run + init_size)`,
//!   where `run` is where `startup_32` decompresses to
//!   (`max(align_up(load, kernel_alignment), pref_address)` if
//!   relocatable, else `pref_address`);
//! - the initrd page-aligned at the top of the highest RAM entry that holds
//!   it below `initrd_addr_max` and `ram_size`, above the footprint.
//!
//! # Zero page
//!
//! Zeroed, then the file's setup header copied in at 0x1f1, and:
//! `type_of_loader` 0xff (undefined loader), `code32_start` = the load
//! address, `ramdisk_image`/`ramdisk_size` (+ `ext_` high halves, 0 below
//! 4 GiB), `cmd_line_ptr` (+ `ext_`), `setup_data` 0, `hardware_subarch` 0
//! (PC), `CAN_USE_HEAP` and `KEEP_SEGMENTS` cleared in `loadflags` (the
//! heap is for the real-mode setup, which does not run), and the e820
//! table (`e820_entries` at 0x1e8, 20-byte entries at 0x2d0).
//!
//! # Machine state
//!
//! [`BootEntry::Protected32`], the 32-bit boot protocol:
//! [`entry::flat_protected_mode`] at `code32_start` with [`LINUX_GDT`]:
//! `CS` = `__BOOT_CS` (0x10, flat execute/read), `DS`/`ES`/`FS`/`GS`/`SS` =
//! `__BOOT_DS` (0x18, flat read/write), GDTR at the GDT in the low area,
//! paging off, interrupts off, `ESI` = the zero page, `EBP` = `EDI` = `EBX`
//! = 0. No stack is needed: `startup_32` makes one in `boot_params`.
//!
//! [`BootEntry::Long64`], the 64-bit boot protocol (kernels with
//! `XLF_KERNEL_64`): the same, but in long mode at `startup_64` (load
//! address + 0x200) with [`LINUX_GDT64`] (`__BOOT_CS` a 64-bit code
//! segment), CR0.PG, CR4.PAE, EFER.LME and LMA set, and CR3 at page tables
//! in the low area that identity-map the first 4 GiB with 2 MiB pages
//! (covering the kernel's footprint, the zero page, the command line and
//! the initrd, as the protocol asks).

use core::fmt;
use core::ops::Range;
use heapless::Vec;
use tlfs::HvRegisterName;

use crate::entry::{
    self, CpuMode, FLAT_CODE_DESCRIPTOR, FLAT_DATA_DESCRIPTOR, FlatGdt, LONG_CODE_DESCRIPTOR, MAX_REGISTERS,
    SET_REGISTERS_WORDS,
};
pub use crate::entry::{RegisterValue, Write};
use crate::loader::{HIGH_RAM_START, MAX_RAM, PAGE_SIZE};

mod header;
pub use header::{
    BOOT_FLAG, HEADER_MAGIC, SetupHeader, TYPE_OF_LOADER_UNDEFINED, loadflags, offset, parse_header, xloadflags,
};

/// The GDT of the 32-bit boot protocol: `__BOOT_CS` = 0x10, `__BOOT_DS` = 0x18.
pub const GDT: [u64; 4] = [0, 0, FLAT_CODE_DESCRIPTOR, FLAT_DATA_DESCRIPTOR];
pub const LINUX_GDT: FlatGdt = FlatGdt { descriptors: &GDT, code: 0x10, data: 0x18 };
/// The GDT of the 64-bit boot protocol: `__BOOT_CS` a 64-bit code segment.
pub const GDT64: [u64; 4] = [0, 0, LONG_CODE_DESCRIPTOR, FLAT_DATA_DESCRIPTOR];
pub const LINUX_GDT64: FlatGdt = FlatGdt { descriptors: &GDT64, code: 0x10, data: 0x18 };
/// `startup_64` is this far into the protected-mode kernel.
pub const STARTUP_64_OFFSET: u64 = 0x200;
/// The 64-bit entry identity-maps this much, with 2 MiB pages.
pub const IDENTITY_MAPPED: u64 = 4 << 30;

/// Oldest boot protocol accepted: 2.12 (64-bit kernels, `xloadflags`).
pub const MIN_PROTOCOL: u16 = 0x020c;
/// End of the low RAM the standard e820 map reports: the last KiB below the
/// partition's `LOW_RAM_END` is reserved as an EBDA, then the legacy hole.
pub const E820_LOW_RAM_END: u64 = crate::loader::EBDA;
const _: () = assert!(E820_LOW_RAM_END < crate::loader::LOW_RAM_END);
/// Longest command line accepted, without its NUL (the kernel's own
/// `cmdline_size` may be smaller).
pub const MAX_CMDLINE: usize = 4095;
/// Most e820 entries `boot_params` holds.
pub const MAX_E820: usize = 128;
/// Guest-physical start of the low area (zero page, GDT, command line).
pub const LOW_AREA: u64 = 0x1_0000;
/// Bytes of the low area: a buffer this large is what [`plan`] takes.
pub const LOW_AREA_LEN: usize = low_area::PAGE_TABLES + low_area::PAGE_TABLES_LEN;
const _: () = assert!(low_area::CMDLINE + MAX_CMDLINE < low_area::PAGE_TABLES);

/// Offsets inside the low area.
pub mod low_area {
    /// `boot_params`, 4 KiB: what ESI points at.
    pub const BOOT_PARAMS: usize = 0;
    pub const BOOT_PARAMS_LEN: usize = 0x1000;
    /// The GDT: what GDTR points at.
    pub const GDT: usize = 0x1000;
    /// The command line, NUL-terminated.
    pub const CMDLINE: usize = 0x1100;
    /// 64-bit entry only: the identity map of the first 4 GiB (CR3): the
    /// PML4, one PDPT, then four page directories of 2 MiB pages.
    pub const PAGE_TABLES: usize = 0x3000;
    pub const PAGE_TABLES_LEN: usize = 6 * 0x1000;
}

/// How the kernel is entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootEntry {
    /// The 32-bit boot protocol: `code32_start` in flat protected mode.
    Protected32,
    /// The 64-bit boot protocol: `startup_64` (load address + 0x200) in
    /// long mode with the first 4 GiB identity-mapped; needs `XLF_KERNEL_64`.
    Long64,
}

/// An e820 memory type (open: any value is representable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Type(pub u32);

impl E820Type {
    pub const RAM: E820Type = E820Type(1);
    pub const RESERVED: E820Type = E820Type(2);
    pub const ACPI: E820Type = E820Type(3);
    pub const NVS: E820Type = E820Type(4);
    pub const UNUSABLE: E820Type = E820Type(5);
}

/// One e820 entry: `[addr, addr + size)` of `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: E820Type,
}

impl E820Entry {
    pub const fn new(addr: u64, size: u64, kind: E820Type) -> E820Entry {
        E820Entry { addr, size, kind }
    }

    /// The range, if it does not wrap.
    fn range(&self) -> Option<Range<u64>> {
        Some(self.addr..self.addr.checked_add(self.size)?)
    }
}

/// The map of a partition with nothing but RAM: RAM below [`E820_LOW_RAM_END`],
/// reserved up to 1 MiB (EBDA, legacy hole, BIOS area), RAM from 1 MiB to
/// `ram_size`. A VID that maps devices in RAM's range describes them itself.
pub fn standard_memory_map(ram_size: u64) -> [E820Entry; 3] {
    [
        E820Entry::new(0, E820_LOW_RAM_END, E820Type::RAM),
        E820Entry::new(E820_LOW_RAM_END, HIGH_RAM_START - E820_LOW_RAM_END, E820Type::RESERVED),
        E820Entry::new(HIGH_RAM_START, ram_size.saturating_sub(HIGH_RAM_START), E820Type::RAM),
    ]
}

/// Everything the loader reads.
#[derive(Clone, Copy, Debug)]
pub struct LinuxRequest<'a> {
    /// The bzImage file.
    pub kernel: &'a [u8],
    /// The initrd (possibly empty: no initrd).
    pub initrd: &'a [u8],
    pub cmdline: &'a str,
    /// Guest RAM in bytes: a multiple of 4 KiB, above 1 MiB, at most
    /// [`MAX_RAM`]; the VID's buffer starts at guest-physical 0.
    pub ram_size: u64,
    /// The e820 table the kernel is given (at most [`MAX_E820`] entries,
    /// non-overlapping, RAM entries below `ram_size`).
    pub memory_map: &'a [E820Entry],
    pub entry: BootEntry,
}

/// What to do to start the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxPlan<'a> {
    pub header: SetupHeader,
    /// Where the protected-mode kernel is written (`code32_start`, EIP).
    pub kernel: Range<u64>,
    /// The kernel's decompression footprint (includes `kernel`).
    pub footprint: Range<u64>,
    /// Where the initrd is written (empty at 0 without one).
    pub initrd: Range<u64>,
    /// The zero page (ESI), the GDT (GDTR) and the command line.
    pub boot_params: u64,
    pub gdt: u64,
    pub cmdline: u64,
    /// RIP at entry: `code32_start`, or `startup_64`.
    pub entry_point: u64,
    /// 64-bit entry: CR3, the identity map in the low area.
    pub page_tables: Option<u64>,
    /// The kernel, the initrd (if any), the low area. They never overlap.
    pub writes: Vec<Write<'a>, 3>,
    /// The boot processor's initial state (32-bit boot protocol).
    pub registers: Vec<RegisterValue, MAX_REGISTERS>,
}

impl LinuxPlan<'_> {
    /// Carries out the writes on `ram`, whose byte 0 is guest-physical 0.
    /// Nothing is written unless every write fits.
    pub fn apply(&self, ram: &mut [u8]) -> Result<(), LinuxError> {
        entry::apply(&self.writes, ram).map_err(|e| LinuxError::OutsideBuffer { gpa: e.gpa, len: e.len })
    }

    /// The words of a `VP_SET_REGISTERS` invocation.
    pub fn set_registers_words(&self) -> Vec<u64, SET_REGISTERS_WORDS> {
        entry::set_registers_words(&self.registers)
    }
}

/// Why a kernel cannot be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinuxError {
    /// The file is shorter than the setup header.
    TooShort {
        len: usize,
    },
    /// No 0xAA55 at 0x1fe.
    NoBootFlag,
    /// No `HdrS` at 0x202: not a Linux kernel, or older than protocol 2.00.
    NoHeaderMagic,
    ProtocolTooOld {
        version: u16,
    },
    /// The header's length (from byte 0x201) is outside what this loader reads and `boot_params` holds.
    BadHeaderLength {
        end: usize,
    },
    /// `LOADED_HIGH` clear: a zImage, which loads at 0x10000.
    NotBzImage,
    SetupBeyondFile {
        kernel_offset: usize,
        len: usize,
    },
    /// `syssize` is 0 or more than the file holds after setup.
    BadSyssize {
        syssize: u32,
        available: u64,
    },
    /// A relocatable kernel's `kernel_alignment` is not a power of two of at least 4 KiB.
    BadAlignment {
        alignment: u32,
    },
    InitSizeTooSmall {
        init_size: u32,
        kernel_len: u64,
    },
    RamSize {
        ram_size: u64,
    },
    CmdlineTooLong {
        len: usize,
        max: usize,
    },
    CmdlineHasNul,
    /// The e820 table: the reason.
    BadMemoryMap(&'static str),
    /// A range the plan needs is not inside RAM of the map and below `ram_size`.
    NotInRam {
        what: &'static str,
        start: u64,
        end: u64,
    },
    /// The kernel (or where it decompresses to) would start below 1 MiB, over the low area.
    KernelBelow1MiB {
        start: u64,
    },
    /// No RAM for the initrd above the kernel's footprint and below `initrd_addr_max`.
    InitrdDoesNotFit {
        size: u64,
    },
    /// [`BootEntry::Long64`] for a kernel without `XLF_KERNEL_64`.
    No64BitEntry,
    /// [`LinuxPlan::apply`]: the write does not fit the buffer.
    OutsideBuffer {
        gpa: u64,
        len: u64,
    },
}

impl fmt::Display for LinuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LinuxError::TooShort { len } => write!(f, "{len} bytes is too short for a Linux setup header"),
            LinuxError::NoBootFlag => write!(f, "no boot flag 0xaa55 at 0x1fe"),
            LinuxError::NoHeaderMagic => write!(f, "no \"HdrS\" at 0x202: not a Linux bzImage"),
            LinuxError::ProtocolTooOld { version } => {
                write!(f, "boot protocol {}.{:02} is older than 2.12", version >> 8, version & 0xff)
            }
            LinuxError::BadHeaderLength { end } => write!(f, "the setup header would end at {end:#x}"),
            LinuxError::NotBzImage => write!(f, "LOADED_HIGH is clear: a zImage, not a bzImage"),
            LinuxError::SetupBeyondFile { kernel_offset, len } => {
                write!(f, "the setup code ends at {kernel_offset:#x}, beyond the {len:#x}-byte file")
            }
            LinuxError::BadSyssize { syssize, available } => {
                write!(f, "syssize {syssize:#x} paragraphs does not match the {available:#x} bytes after setup")
            }
            LinuxError::BadAlignment { alignment } => {
                write!(f, "kernel_alignment {alignment:#x} is not a power of two of at least 4 KiB")
            }
            LinuxError::InitSizeTooSmall { init_size, kernel_len } => {
                write!(f, "init_size {init_size:#x} is smaller than the {kernel_len:#x}-byte kernel")
            }
            LinuxError::RamSize { ram_size } => write!(
                f,
                "guest RAM size {ram_size:#x} must be a multiple of 4 KiB, above 1 MiB and at most {MAX_RAM:#x}"
            ),
            LinuxError::CmdlineTooLong { len, max } => {
                write!(f, "the command line has {len} bytes; the kernel takes at most {max}")
            }
            LinuxError::CmdlineHasNul => write!(f, "the command line contains a NUL byte"),
            LinuxError::BadMemoryMap(why) => write!(f, "bad e820 table: {why}"),
            LinuxError::NotInRam { what, start, end } => {
                write!(f, "the {what} ({start:#x}..{end:#x}) is not inside guest RAM")
            }
            LinuxError::KernelBelow1MiB { start } => {
                write!(f, "the kernel would run at {start:#x}, below 1 MiB")
            }
            LinuxError::InitrdDoesNotFit { size } => {
                write!(f, "no RAM for the {size:#x}-byte initrd above the kernel and below initrd_addr_max")
            }
            LinuxError::No64BitEntry => write!(f, "the kernel has no 64-bit entry (XLF_KERNEL_64 clear)"),
            LinuxError::OutsideBuffer { gpa, len } => {
                write!(f, "write of {len:#x} bytes at {gpa:#x} lies outside guest RAM")
            }
        }
    }
}

fn check_memory_map(map: &[E820Entry], ram_size: u64) -> Result<(), LinuxError> {
    if map.is_empty() {
        return Err(LinuxError::BadMemoryMap("no entries"));
    }
    if map.len() > MAX_E820 {
        return Err(LinuxError::BadMemoryMap("more than 128 entries"));
    }
    for (i, e) in map.iter().enumerate() {
        let range = e.range().ok_or(LinuxError::BadMemoryMap("an entry wraps around"))?;
        if e.size == 0 {
            return Err(LinuxError::BadMemoryMap("an entry is empty"));
        }
        if e.kind == E820Type::RAM && range.end > ram_size {
            return Err(LinuxError::BadMemoryMap("a RAM entry goes beyond ram_size"));
        }
        // Every earlier entry was checked not to wrap.
        if map[..i].iter().any(|o| o.addr < range.end && range.start < o.addr + o.size) {
            return Err(LinuxError::BadMemoryMap("entries overlap"));
        }
    }
    Ok(())
}

/// Whether `range` lies inside one RAM entry of `map`.
fn in_ram(map: &[E820Entry], range: &Range<u64>) -> bool {
    map.iter()
        .filter(|e| e.kind == E820Type::RAM)
        .filter_map(E820Entry::range)
        .any(|r| r.start <= range.start && range.end <= r.end)
}

fn require_ram(map: &[E820Entry], what: &'static str, range: Range<u64>) -> Result<(), LinuxError> {
    if in_ram(map, &range) { Ok(()) } else { Err(LinuxError::NotInRam { what, start: range.start, end: range.end }) }
}

fn align_up(value: u64, alignment: u64) -> Option<u64> {
    Some(value.checked_add(alignment - 1)? & !(alignment - 1))
}

/// Where the protected-mode kernel goes, and its footprint.
fn place_kernel(header: &SetupHeader, len: u64, map: &[E820Entry]) -> Result<(Range<u64>, Range<u64>), LinuxError> {
    let init_size = u64::from(header.init_size);
    let alignment = u64::from(header.kernel_alignment);
    let pref = header.pref_address;
    let at_pref = pref.checked_add(init_size).map(|end| pref..end);
    let load = match at_pref {
        Some(r)
            if header.relocatable && pref >= HIGH_RAM_START && pref.is_multiple_of(alignment) && in_ram(map, &r) =>
        {
            pref
        }
        _ => HIGH_RAM_START,
    };
    // Where startup_32 decompresses to (arch/x86/boot/compressed/head_64.S).
    let run = if header.relocatable { align_up(load, alignment).map_or(u64::MAX, |a| a.max(pref)) } else { pref };
    let overflow = LinuxError::NotInRam { what: "kernel", start: load, end: u64::MAX };
    let kernel = load..load + len;
    let end = run.checked_add(init_size).ok_or(overflow)?.max(kernel.end);
    let footprint = load.min(run)..end;
    if footprint.start < HIGH_RAM_START {
        return Err(LinuxError::KernelBelow1MiB { start: footprint.start });
    }
    require_ram(map, "kernel and its decompression footprint", footprint.clone())?;
    Ok((kernel, footprint))
}

/// The initrd at the top of the highest RAM entry that holds it.
fn place_initrd(
    header: &SetupHeader,
    size: u64,
    ram_size: u64,
    above: u64,
    map: &[E820Entry],
) -> Result<Range<u64>, LinuxError> {
    if size == 0 {
        return Ok(0..0);
    }
    let limit = (u64::from(header.initrd_addr_max) + 1).min(ram_size);
    let mut best: Option<u64> = None;
    for r in map.iter().filter(|e| e.kind == E820Type::RAM).filter_map(E820Entry::range) {
        let top = r.end.min(limit);
        let Some(start) = top.checked_sub(size).map(|s| s & !(PAGE_SIZE - 1)) else {
            continue;
        };
        if start >= r.start && start >= above && best.is_none_or(|b| start > b) {
            best = Some(start);
        }
    }
    best.map(|start| start..start + size).ok_or(LinuxError::InitrdDoesNotFit { size })
}

fn put(area: &mut [u8], at: usize, bytes: &[u8]) {
    area[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Fills the zero page (4 KiB).
fn fill_boot_params(bp: &mut [u8], file: &[u8], plan: &LinuxPlan<'_>, map: &[E820Entry]) {
    use offset as off;
    bp.fill(0);
    put(bp, off::SETUP_HEADER, &file[off::SETUP_HEADER..plan.header.header_end]);
    bp[off::TYPE_OF_LOADER] = TYPE_OF_LOADER_UNDEFINED;
    bp[off::LOADFLAGS] = plan.header.loadflags & !(loadflags::CAN_USE_HEAP | loadflags::KEEP_SEGMENTS);
    // Every address here is below MAX_RAM (< 4 GiB); the ext_ halves stay 0
    // but are written for the record.
    let split = |v: u64| ((v as u32).to_le_bytes(), ((v >> 32) as u32).to_le_bytes());
    put(bp, off::CODE32_START, &(plan.kernel.start as u32).to_le_bytes());
    let (image, ext_image) = split(plan.initrd.start);
    let (size, ext_size) = split(plan.initrd.end - plan.initrd.start);
    let (cmdline, ext_cmdline) = split(plan.cmdline);
    put(bp, off::RAMDISK_IMAGE, &image);
    put(bp, off::EXT_RAMDISK_IMAGE, &ext_image);
    put(bp, off::RAMDISK_SIZE, &size);
    put(bp, off::EXT_RAMDISK_SIZE, &ext_size);
    put(bp, off::CMD_LINE_PTR, &cmdline);
    put(bp, off::EXT_CMD_LINE_PTR, &ext_cmdline);
    put(bp, off::HEAP_END_PTR, &[0, 0]);
    put(bp, off::HARDWARE_SUBARCH, &[0; 4]);
    put(bp, off::SETUP_DATA, &[0; 8]);
    bp[off::SENTINEL] = 0;
    bp[off::E820_ENTRIES] = map.len() as u8;
    for (i, e) in map.iter().enumerate() {
        let at = off::E820_TABLE + 20 * i;
        put(bp, at, &e.addr.to_le_bytes());
        put(bp, at + 8, &e.size.to_le_bytes());
        put(bp, at + 16, &e.kind.0.to_le_bytes());
    }
}

/// Page-table entry bits.
const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const HUGE: u64 = 1 << 7;

/// The identity map of [`IDENTITY_MAPPED`] bytes at guest address `base`:
/// PML4, PDPT, then one page directory per GiB.
fn fill_identity_map(tables: &mut [u8], base: u64) {
    const PAGE: usize = PAGE_SIZE as usize;
    const HUGE_PAGE: u64 = 2 << 20;
    let entry = |tables: &mut [u8], table: usize, index: usize, value: u64| {
        put(tables, table * PAGE + index * 8, &value.to_le_bytes());
    };
    entry(tables, 0, 0, (base + PAGE as u64) | PRESENT | WRITABLE);
    let directories = (IDENTITY_MAPPED >> 30) as usize;
    for gib in 0..directories {
        let directory = 2 + gib;
        entry(tables, 1, gib, (base + (directory * PAGE) as u64) | PRESENT | WRITABLE);
        for index in 0..512 {
            let address = ((gib as u64) << 30) | (index as u64 * HUGE_PAGE);
            entry(tables, directory, index, address | PRESENT | WRITABLE | HUGE);
        }
    }
}

/// Plans loading `request`; the zero page, GDT and command line are built
/// in `area`, which the plan's last write refers to.
pub fn plan<'a>(request: &LinuxRequest<'a>, area: &'a mut [u8; LOW_AREA_LEN]) -> Result<LinuxPlan<'a>, LinuxError> {
    let ram_size = request.ram_size;
    if !ram_size.is_multiple_of(PAGE_SIZE) || ram_size <= HIGH_RAM_START || ram_size > MAX_RAM {
        return Err(LinuxError::RamSize { ram_size });
    }
    let header = parse_header(request.kernel)?;
    let cmdline = request.cmdline.as_bytes();
    let max = (header.cmdline_size as usize).min(MAX_CMDLINE);
    if cmdline.len() > max {
        return Err(LinuxError::CmdlineTooLong { len: cmdline.len(), max });
    }
    if cmdline.contains(&0) {
        return Err(LinuxError::CmdlineHasNul);
    }
    let map = request.memory_map;
    check_memory_map(map, ram_size)?;

    if request.entry == BootEntry::Long64 && !header.has_64bit_entry() {
        return Err(LinuxError::No64BitEntry);
    }
    let needed = match request.entry {
        BootEntry::Protected32 => low_area::CMDLINE + cmdline.len() + 1,
        BootEntry::Long64 => LOW_AREA_LEN,
    };
    require_ram(map, "boot parameters, GDT and command line", LOW_AREA..LOW_AREA + needed as u64)?;
    let image = &request.kernel[header.kernel_offset()..];
    let (kernel, footprint) = place_kernel(&header, image.len() as u64, map)?;
    let initrd = place_initrd(&header, request.initrd.len() as u64, ram_size, footprint.end, map)?;

    let mut plan = LinuxPlan {
        header,
        kernel: kernel.clone(),
        footprint,
        initrd: initrd.clone(),
        boot_params: LOW_AREA + low_area::BOOT_PARAMS as u64,
        gdt: LOW_AREA + low_area::GDT as u64,
        cmdline: LOW_AREA + low_area::CMDLINE as u64,
        entry_point: match request.entry {
            BootEntry::Protected32 => kernel.start,
            BootEntry::Long64 => kernel.start + STARTUP_64_OFFSET,
        },
        page_tables: (request.entry == BootEntry::Long64).then_some(LOW_AREA + low_area::PAGE_TABLES as u64),
        writes: Vec::new(),
        registers: Vec::new(),
    };
    area.fill(0);
    fill_boot_params(&mut area[..low_area::BOOT_PARAMS_LEN], request.kernel, &plan, map);
    let gdt = if request.entry == BootEntry::Long64 { &LINUX_GDT64 } else { &LINUX_GDT };
    gdt.write(&mut area[low_area::GDT..]);
    put(area, low_area::CMDLINE, cmdline);
    if let Some(cr3) = plan.page_tables {
        fill_identity_map(&mut area[low_area::PAGE_TABLES..], cr3);
    }
    let area: &'a [u8] = &area[..needed];

    let _ = plan.writes.push(Write { gpa: kernel.start, data: image, zero: 0 });
    if !request.initrd.is_empty() {
        let _ = plan.writes.push(Write { gpa: initrd.start, data: request.initrd, zero: 0 });
    }
    let _ = plan.writes.push(Write { gpa: LOW_AREA, data: area, zero: 0 });
    // In RAM, hence below 4 GiB.
    let gprs = [
        (HvRegisterName::RSI, plan.boot_params),
        (HvRegisterName::RBP, 0),
        (HvRegisterName::RDI, 0),
        (HvRegisterName::RBX, 0),
    ];
    let mode = match plan.page_tables {
        Some(cr3) => CpuMode::Long64 { cr3 },
        None => CpuMode::Protected32,
    };
    plan.registers = entry::flat_entry(mode, plan.entry_point, plan.gdt, gdt, &gprs);
    Ok(plan)
}

#[cfg(test)]
mod tests;
