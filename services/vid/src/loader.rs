//! Loading a Multiboot v1 kernel into a partition's guest-physical memory.
//!
//! [`plan`] reads a kernel file, its modules and a command line, all of them
//! untrusted, and says what to write where in guest RAM and what the boot
//! processor's registers must hold for the kernel to start as the Multiboot
//! Specification 0.6.96 (§3.1 the OS image, §3.2 the machine state, §3.3 the
//! boot information) has it. It copies nothing and touches no memory but the
//! caller's boot-area buffer, so it runs (and is tested) on the host; the
//! VID applies the [`Plan`] through its window onto guest RAM and passes
//! [`Plan::registers`] to `VP_SET_REGISTERS`. Every malformed input is a
//! [`LoadError`], never a panic.
//!
//! # Kernels
//!
//! The Multiboot header is searched in the first 8 KiB of the file, 4-byte
//! aligned, with a valid checksum. Then:
//!
//! - header flag 16 (`MULTIBOOT_AOUT_KLUDGE`) set: the header's address
//!   fields say what to load (§3.1.3; `load_end_addr` 0 = to the end of the
//!   file, `bss_end_addr` 0 = no bss), whatever the file format;
//! - otherwise an ELF executable: ELF32 (`EM_386`), or ELF64 (`EM_X86_64`)
//!   whose segments and entry lie below 4 GiB and whose entry is 32-bit
//!   protected-mode code — what Tessera's own images and the guest test
//!   kernel are (64-bit code behind a `.code32` stub), so they load without
//!   `elf32conv`. `PT_LOAD` segments are placed at their physical address
//!   (`p_paddr`), as GRUB does; the entry point is translated from virtual
//!   to physical through the segment that contains it. Writable and
//!   executable segments are accepted (it is the guest's business); overlaps
//!   and anything outside guest RAM are not.
//!
//! Header flags 0 (page-aligned modules) and 1 (memory information) are
//! always honoured. Flag 2 (a video mode) and the undefined required bits
//! 3–15 cannot be satisfied, so such a kernel is refused
//! ([`LoadError::UnsupportedRequirements`]), as §3.1.2 demands; undefined
//! optional bits 17–31 are ignored.
//!
//! # Guest-physical layout
//!
//! RAM is `[0, LOW_RAM_END)` and `[HIGH_RAM_START, ram_size)`: the legacy
//! hole from 640 KiB to 1 MiB is not RAM (the partition has read-only
//! memory there: the BIOS area from [`BIOS_AREA`] holds the ACPI tables),
//! and `ram_size` is at most [`MAX_RAM`] so the 32-bit device window above
//! 3 GiB stays free. The last KiB of low RAM, from [`EBDA`], is the VID's
//! (the ACPI FACS, as a PC's EBDA): the kernel may not be loaded there. The kernel goes where its headers say. Modules
//! follow it, each 4 KiB-aligned, from the first page at or above
//! `max(kernel end, 1 MiB)`; then one 4 KiB-aligned boot area holding, at
//! fixed offsets ([`boot_area`]), the Multiboot information, the GDT, the
//! memory map, the module list and the strings.
//!
//! # Machine state (§3.2)
//!
//! [`Plan::registers`] holds, as `(name, low, high)` TLFS register values:
//! `EAX = 0x2BADB002`, `EBX` = the information's address, `EIP` = the
//! entry, `EFLAGS = 0x2` (IF and VM clear), `CR0 = PE | ET` (paging off),
//! `CR3 = CR4 = EFER = 0`, `CS` = selector 0x08, base 0, limit 4 GiB, a
//! 32-bit execute/read code segment (accessed, DB, G), `DS`/`ES`/`FS`/`GS`/
//! `SS` = selector 0x10, a flat 32-bit read/write data segment. The
//! specification leaves GDTR undefined; it is loaded with a valid three-entry
//! GDT in the boot area ([`GDT`], accessed bits preset so the CPU never
//! writes it), so the kernel may reload segment registers before it builds
//! its own. IDTR is base 0, limit 0 (an exception before the kernel loads
//! its own IDT shuts the guest down, which the VID sees). `TR` is a busy
//! 32-bit TSS and `LDTR` an empty LDT, base 0, so the state passes the entry
//! checks of both SVM and VMX. `ESP` is undefined (left as the VP has it);
//! A20 is always on in a partition.
//!
//! # Multiboot information (§3.3)
//!
//! Flags 0 (`mem_lower` = 639, `mem_upper` = KiB above 1 MiB), 2 (the
//! command line: the kernel's file name, a space and its arguments, as
//! GRUB's `multiboot FILE ARGS` and QEMU's `-kernel FILE -append ARGS` pass
//! it), 3 (the modules, each with its string, `mod_end` exclusive), 6 (a
//! memory map as a PC BIOS reports it: available below [`EBDA`], the EBDA
//! to 640 KiB ACPI NVS (type 4: the FACS, read/write), the BIOS area from
//! [`BIOS_AREA`] to 1 MiB reserved (type 2: read-only memory holding the
//! ACPI tables), available from 1 MiB to `ram_size`) and 9
//! (`boot_loader_name` = "Tessera VID").
//! The memory map does not fence off the kernel, the modules or the boot
//! area: as with every Multiboot loader, the kernel must keep them until it
//! is done with them. The plan assumes nothing about RAM it does not write,
//! except that the kernel's bss is zero-filled explicitly.

#![forbid(unsafe_code)]

use core::fmt;
use core::ops::Range;
use heapless::Vec;
use tlfs::HvRegisterName;

use crate::entry::{self, FLAT_CODE_DESCRIPTOR, FLAT_DATA_DESCRIPTOR};
pub use crate::entry::{
    CR0_AT_ENTRY, FlatGdt, MAX_REGISTERS, RFLAGS_AT_ENTRY, RegisterValue, SET_REGISTERS_WORDS, Write, flat_attributes,
};

/// The Multiboot v1 header's magic (§3.1.1).
pub const HEADER_MAGIC: u32 = 0x1BAD_B002;
/// What a Multiboot v1 loader leaves in EAX (§3.2).
pub const BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;
/// The header must lie entirely in this many first bytes of the file.
pub const HEADER_SEARCH: usize = 8192;

/// Multiboot header flags (§3.1.2).
pub mod header_flags {
    /// Modules must be 4 KiB-aligned.
    pub const PAGE_ALIGN: u32 = 1 << 0;
    /// The information must include `mem_*` (and the memory map if there is one).
    pub const MEMORY_INFO: u32 = 1 << 1;
    /// The information must include the video mode table.
    pub const VIDEO_MODE: u32 = 1 << 2;
    /// The address fields of the header are valid (the "a.out kludge").
    pub const AOUT_KLUDGE: u32 = 1 << 16;
    /// The required bits: a loader must refuse a kernel asking for one it cannot satisfy.
    pub const REQUIRED: u32 = 0xffff;
    /// The required bits this loader satisfies.
    pub const SUPPORTED: u32 = PAGE_ALIGN | MEMORY_INFO;
}

/// Multiboot information flags (§3.3).
pub mod info_flags {
    pub const MEMORY: u32 = 1 << 0;
    pub const BOOT_DEVICE: u32 = 1 << 1;
    pub const CMDLINE: u32 = 1 << 2;
    pub const MODS: u32 = 1 << 3;
    pub const AOUT_SYMS: u32 = 1 << 4;
    pub const ELF_SHDR: u32 = 1 << 5;
    pub const MMAP: u32 = 1 << 6;
    pub const DRIVES: u32 = 1 << 7;
    pub const CONFIG_TABLE: u32 = 1 << 8;
    pub const BOOT_LOADER_NAME: u32 = 1 << 9;
    pub const APM_TABLE: u32 = 1 << 10;
    pub const VBE: u32 = 1 << 11;
    pub const FRAMEBUFFER: u32 = 1 << 12;
    /// What [`super::plan`] provides.
    pub const PROVIDED: u32 = MEMORY | CMDLINE | MODS | MMAP | BOOT_LOADER_NAME;
}

/// Byte offsets of the Multiboot information fields (§3.3).
pub mod info_offset {
    pub const FLAGS: usize = 0;
    pub const MEM_LOWER: usize = 4;
    pub const MEM_UPPER: usize = 8;
    pub const BOOT_DEVICE: usize = 12;
    pub const CMDLINE: usize = 16;
    pub const MODS_COUNT: usize = 20;
    pub const MODS_ADDR: usize = 24;
    pub const SYMS: usize = 28;
    pub const MMAP_LENGTH: usize = 44;
    pub const MMAP_ADDR: usize = 48;
    pub const DRIVES_LENGTH: usize = 52;
    pub const DRIVES_ADDR: usize = 56;
    pub const CONFIG_TABLE: usize = 60;
    pub const BOOT_LOADER_NAME: usize = 64;
    pub const APM_TABLE: usize = 68;
    pub const VBE_CONTROL_INFO: usize = 72;
    pub const FRAMEBUFFER_ADDR: usize = 88;
    /// The whole structure, up to and including the framebuffer colour info.
    pub const SIZE: usize = 116;
}

/// Offsets inside the boot area (from its 4 KiB-aligned start).
pub mod boot_area {
    /// The Multiboot information: what EBX points at.
    pub const INFO: usize = 0;
    /// The GDT (three descriptors): what GDTR points at.
    pub const GDT: usize = 0x78;
    /// The memory map: [`MMAP_ENTRIES`] entries of [`MMAP_ENTRY_SIZE`] bytes.
    pub const MMAP: usize = 0x90;
    /// The module list: [`MODULE_ENTRY_SIZE`] bytes per module.
    pub const MODS: usize = MMAP + MMAP_ENTRIES * MMAP_ENTRY_SIZE;
    /// One memory-map entry: `size` (20, not counting itself), `base_addr`,
    /// `length`, `type`.
    pub const MMAP_ENTRY_SIZE: usize = 24;
    /// Low RAM, the EBDA, the BIOS area, high RAM.
    pub const MMAP_ENTRIES: usize = 4;
    /// One module: `mod_start`, `mod_end`, `string`, reserved.
    pub const MODULE_ENTRY_SIZE: usize = 16;
    /// Strings follow the module list: the boot loader's name, the command
    /// line, then each module's string, each NUL-terminated.
    pub const fn strings(modules: usize) -> usize {
        MODS + modules * MODULE_ENTRY_SIZE
    }
}

/// The legacy hole (640 KiB – 1 MiB) is not RAM: the partition's layout.
pub use partition_manager_api::layout::{BIOS_AREA, HIGH_RAM_START, LOW_RAM_END};
/// The last KiB of low RAM, reserved as a PC's extended BIOS data area:
/// the VID keeps the ACPI FACS there.
pub const EBDA: u64 = 0x9_fc00;
/// Memory-map types (§3.3, with the ACPI address range types): usable RAM,
/// reserved (not RAM for the OS), ACPI NVS (firmware's, read/write).
pub const MMAP_AVAILABLE: u32 = 1;
pub const MMAP_RESERVED: u32 = 2;
pub const MMAP_ACPI_NVS: u32 = 4;
/// Most guest RAM the loader describes: the 32-bit window above is for devices.
pub const MAX_RAM: u64 = 0xC000_0000;
pub use x86defs::PAGE_SIZE;

pub const MAX_SEGMENTS: usize = 16;
pub const MAX_MODULES: usize = 16;
/// Longest command line, the kernel's name included, without its NUL.
pub const MAX_CMDLINE: usize = 4095;
/// Longest module string, without its NUL.
pub const MAX_MODULE_STRING: usize = 255;
/// The boot loader's name in the information.
pub const BOOT_LOADER_NAME: &str = "Tessera VID";
/// A boot-area buffer this large is enough for every request [`plan`] accepts.
pub const BOOT_AREA_MAX: usize = boot_area::strings(MAX_MODULES)
    + BOOT_LOADER_NAME.len()
    + 1
    + MAX_CMDLINE
    + 1
    + MAX_MODULES * (MAX_MODULE_STRING + 1);
/// Kernel segments, modules and the boot area.
pub const MAX_WRITES: usize = MAX_SEGMENTS + MAX_MODULES + 1;
/// The GDT in the boot area: null, flat 32-bit code (0x08), flat data (0x10),
/// accessed bits set.
pub const GDT: [u64; 3] = [0, FLAT_CODE_DESCRIPTOR, FLAT_DATA_DESCRIPTOR];
pub const CODE_SELECTOR: u16 = 0x08;
pub const DATA_SELECTOR: u16 = 0x10;
/// [`GDT`] with its selectors, for [`entry::flat_protected_mode`].
pub const FLAT_GDT: FlatGdt = FlatGdt { descriptors: &GDT, code: CODE_SELECTOR, data: DATA_SELECTOR };

/// A boot module: the string the kernel sees for it, and its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Module<'a> {
    /// The module's string in the information (its name and arguments).
    pub string: &'a str,
    pub bytes: &'a [u8],
}

/// Everything the loader reads.
#[derive(Clone, Copy, Debug)]
pub struct LoadRequest<'a> {
    pub kernel: &'a [u8],
    /// The kernel's file name: the command line's first word (none if empty).
    pub name: &'a str,
    pub modules: &'a [Module<'a>],
    /// The kernel's arguments: the command line after its name.
    pub cmdline: &'a str,
    /// Guest RAM in bytes: a multiple of 4 KiB, above 1 MiB, at most [`MAX_RAM`].
    pub ram_size: u64,
}

/// How the kernel image was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFormat {
    Elf32,
    Elf64,
    AoutKludge,
}

/// What to do to start the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan<'a> {
    pub format: KernelFormat,
    /// File offset of the Multiboot header, and its flags.
    pub header_offset: usize,
    pub header_flags: u32,
    /// The physical entry point (32-bit protected mode).
    pub entry: u32,
    /// The kernel's extent in guest-physical memory, bss included.
    pub kernel: Range<u64>,
    /// Each module's `[mod_start, mod_end)`.
    pub modules: Vec<Range<u64>, MAX_MODULES>,
    /// The boot area (information, GDT, memory map, module list, strings).
    pub boot_area: Range<u64>,
    /// Address of the Multiboot information (EBX).
    pub info: u64,
    /// Address of the GDT (GDTR base).
    pub gdt: u64,
    /// In order: the kernel's segments, the modules, the boot area. They
    /// never overlap.
    pub writes: Vec<Write<'a>, MAX_WRITES>,
    /// The boot processor's initial state (§3.2).
    pub registers: Vec<RegisterValue, MAX_REGISTERS>,
}

impl Plan<'_> {
    /// Carries out the writes on `ram`, whose byte 0 is guest-physical 0.
    /// Nothing is written unless every write fits.
    pub fn apply(&self, ram: &mut [u8]) -> Result<(), LoadError> {
        entry::apply(&self.writes, ram).map_err(|e| LoadError::OutsideBuffer { gpa: e.gpa, len: e.len })
    }

    /// The words of a `VP_SET_REGISTERS` invocation: the count, then
    /// (name, low, high) for each register.
    pub fn set_registers_words(&self) -> Vec<u64, SET_REGISTERS_WORDS> {
        entry::set_registers_words(&self.registers)
    }
}

/// Why a kernel cannot be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// Not a multiple of 4 KiB, not above 1 MiB, or above [`MAX_RAM`].
    RamSize {
        ram_size: u64,
    },
    /// No Multiboot v1 header in the first 8 KiB.
    NoMultibootHeader,
    /// A header magic at `offset` whose checksum does not add up (and no valid one).
    BadChecksum {
        offset: usize,
    },
    /// The header's fields run past the first 8 KiB or the file.
    HeaderTruncated {
        offset: usize,
    },
    /// Required header flags this loader cannot satisfy (video mode, undefined bits).
    UnsupportedRequirements {
        bits: u32,
    },
    /// No a.out kludge and not an ELF file.
    NotElf,
    /// An ELF file this loader does not take: the reason.
    BadElf(&'static str),
    /// Inconsistent a.out kludge address fields: the reason.
    BadAoutHeader(&'static str),
    NoLoadableSegments,
    TooManySegments,
    /// A segment's file bytes are outside the file.
    SegmentOutsideFile {
        index: usize,
    },
    /// A segment's file size exceeds its memory size.
    SegmentFileLargerThanMemory {
        index: usize,
    },
    /// A segment is not entirely inside guest RAM (or wraps).
    SegmentOutsideRam {
        start: u64,
        end: u64,
    },
    /// Two segments share bytes: their physical starts.
    SegmentsOverlap {
        first: u64,
        second: u64,
    },
    /// The entry point is not inside a loaded segment.
    EntryOutsideImage {
        entry: u64,
    },
    TooManyModules,
    CmdlineTooLong,
    /// The command line (`None`) or module `Some(i)`'s string has a NUL byte.
    StringHasNul {
        module: Option<usize>,
    },
    ModuleStringTooLong {
        module: usize,
    },
    /// The modules and the boot area do not fit: they would end at `end`.
    OutOfRam {
        end: u64,
    },
    /// The caller's boot-area buffer is shorter than `needed`.
    BootAreaTooSmall {
        needed: usize,
    },
    /// [`Plan::apply`]: the write does not fit the buffer.
    OutsideBuffer {
        gpa: u64,
        len: u64,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LoadError::RamSize { ram_size } => write!(
                f,
                "guest RAM size {ram_size:#x} must be a multiple of 4 KiB, above 1 MiB and at most {MAX_RAM:#x}"
            ),
            LoadError::NoMultibootHeader => write!(f, "no Multiboot v1 header in the first 8 KiB"),
            LoadError::BadChecksum { offset } => write!(f, "the Multiboot header at {offset:#x} has a bad checksum"),
            LoadError::HeaderTruncated { offset } => {
                write!(f, "the Multiboot header at {offset:#x} runs past the first 8 KiB or the file")
            }
            LoadError::UnsupportedRequirements { bits } => {
                write!(f, "the kernel requires Multiboot features {bits:#x} this loader does not provide")
            }
            LoadError::NotElf => write!(f, "not an ELF file and no a.out kludge in the Multiboot header"),
            LoadError::BadElf(why) => write!(f, "unsupported ELF file: {why}"),
            LoadError::BadAoutHeader(why) => write!(f, "bad a.out kludge: {why}"),
            LoadError::NoLoadableSegments => write!(f, "nothing to load"),
            LoadError::TooManySegments => write!(f, "more than {MAX_SEGMENTS} loadable segments"),
            LoadError::SegmentOutsideFile { index } => write!(f, "segment {index} lies outside the file"),
            LoadError::SegmentFileLargerThanMemory { index } => {
                write!(f, "segment {index} has more file bytes than memory bytes")
            }
            LoadError::SegmentOutsideRam { start, end } => {
                write!(f, "segment {start:#x}..{end:#x} is not inside guest RAM")
            }
            LoadError::SegmentsOverlap { first, second } => {
                write!(f, "segments at {first:#x} and {second:#x} overlap")
            }
            LoadError::EntryOutsideImage { entry } => write!(f, "entry point {entry:#x} is not in a loaded segment"),
            LoadError::TooManyModules => write!(f, "more than {MAX_MODULES} modules"),
            LoadError::CmdlineTooLong => write!(f, "command line longer than {MAX_CMDLINE} bytes"),
            LoadError::StringHasNul { module: None } => write!(f, "the command line contains a NUL byte"),
            LoadError::StringHasNul { module: Some(i) } => write!(f, "module {i}'s string contains a NUL byte"),
            LoadError::ModuleStringTooLong { module } => {
                write!(f, "module {module}'s string is longer than {MAX_MODULE_STRING} bytes")
            }
            LoadError::OutOfRam { end } => {
                write!(f, "the modules and boot information would end at {end:#x}, beyond RAM")
            }
            LoadError::BootAreaTooSmall { needed } => write!(f, "the boot-area buffer needs {needed} bytes"),
            LoadError::OutsideBuffer { gpa, len } => {
                write!(f, "write of {len:#x} bytes at {gpa:#x} lies outside guest RAM")
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Reading the file
// ---------------------------------------------------------------------------

fn le(bytes: &[u8], offset: usize, width: usize) -> Option<u64> {
    let field = bytes.get(offset..offset.checked_add(width)?)?;
    Some(field.iter().rev().fold(0u64, |acc, &b| acc << 8 | u64::from(b)))
}

fn le32(bytes: &[u8], offset: usize) -> Option<u32> {
    le(bytes, offset, 4).map(|v| v as u32)
}

/// A Multiboot header found in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub offset: usize,
    pub flags: u32,
}

/// Finds the Multiboot v1 header (§3.1.1): 4-byte aligned, entirely in the
/// first 8 KiB, magic + flags + checksum = 0.
pub fn find_header(file: &[u8]) -> Result<Header, LoadError> {
    let searched = &file[..file.len().min(HEADER_SEARCH)];
    let mut bad = None;
    for offset in (0..searched.len().saturating_sub(11)).step_by(4) {
        if le32(searched, offset) != Some(HEADER_MAGIC) {
            continue;
        }
        let (Some(flags), Some(checksum)) = (le32(searched, offset + 4), le32(searched, offset + 8)) else {
            continue;
        };
        if HEADER_MAGIC.wrapping_add(flags).wrapping_add(checksum) == 0 {
            return Ok(Header { offset, flags });
        }
        bad.get_or_insert(offset);
    }
    Err(bad.map_or(LoadError::NoMultibootHeader, |offset| LoadError::BadChecksum { offset }))
}

/// A piece of the kernel to load: file bytes at a physical address, then zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment<'a> {
    start: u64,
    data: &'a [u8],
    memsz: u64,
    vaddr: u64,
}

impl Segment<'_> {
    fn end(&self) -> Option<u64> {
        self.start.checked_add(self.memsz)
    }
}

struct Image<'a> {
    format: KernelFormat,
    entry: u64,
    segments: Vec<Segment<'a>, MAX_SEGMENTS>,
}

/// Where ELF32 and ELF64 keep the fields the loader reads: (offset, width).
struct ElfLayout {
    format: KernelFormat,
    machine: u16,
    entry: (usize, usize),
    phoff: (usize, usize),
    phentsize: usize,
    phnum: usize,
    phdr_size: usize,
    p_offset: (usize, usize),
    p_vaddr: (usize, usize),
    p_paddr: (usize, usize),
    p_filesz: (usize, usize),
    p_memsz: (usize, usize),
}

const ELF32: ElfLayout = ElfLayout {
    format: KernelFormat::Elf32,
    machine: 3, // EM_386
    entry: (24, 4),
    phoff: (28, 4),
    phentsize: 42,
    phnum: 44,
    phdr_size: 32,
    p_offset: (4, 4),
    p_vaddr: (8, 4),
    p_paddr: (12, 4),
    p_filesz: (16, 4),
    p_memsz: (20, 4),
};

const ELF64: ElfLayout = ElfLayout {
    format: KernelFormat::Elf64,
    machine: 62, // EM_X86_64
    entry: (24, 8),
    phoff: (32, 8),
    phentsize: 54,
    phnum: 56,
    phdr_size: 56,
    p_offset: (8, 8),
    p_vaddr: (16, 8),
    p_paddr: (24, 8),
    p_filesz: (32, 8),
    p_memsz: (40, 8),
};

const PT_LOAD: u64 = 1;
const ET_EXEC: u64 = 2;

fn parse_elf(file: &[u8]) -> Result<Image<'_>, LoadError> {
    if file.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err(LoadError::NotElf);
    }
    let layout = match file.get(4) {
        Some(1) => &ELF32,
        Some(2) => &ELF64,
        _ => return Err(LoadError::BadElf("unknown class")),
    };
    let truncated = LoadError::BadElf("truncated header");
    if file.get(5) != Some(&1) {
        return Err(LoadError::BadElf("not little-endian"));
    }
    if file.get(6) != Some(&1) {
        return Err(LoadError::BadElf("unknown version"));
    }
    if le(file, 16, 2).ok_or(truncated)? != ET_EXEC {
        return Err(LoadError::BadElf("not an executable"));
    }
    if le(file, 18, 2).ok_or(truncated)? != u64::from(layout.machine) {
        return Err(LoadError::BadElf(if layout.format == KernelFormat::Elf32 {
            "an ELF32 kernel must be for i386"
        } else {
            "an ELF64 kernel must be for x86-64"
        }));
    }
    let field = |(offset, width): (usize, usize)| le(file, offset, width).ok_or(truncated);
    let entry = field(layout.entry)?;
    let phoff = field(layout.phoff)?;
    let phentsize = field((layout.phentsize, 2))? as usize;
    let phnum = field((layout.phnum, 2))? as usize;
    if phnum == 0 {
        return Err(LoadError::NoLoadableSegments);
    }
    if phentsize < layout.phdr_size {
        return Err(LoadError::BadElf("program header entries too small"));
    }
    let phoff = usize::try_from(phoff).map_err(|_| LoadError::BadElf("program headers outside the file"))?;
    let table_end = phentsize.checked_mul(phnum).and_then(|len| len.checked_add(phoff));
    if table_end.is_none_or(|end| end > file.len()) {
        return Err(LoadError::BadElf("program headers outside the file"));
    }

    let mut segments = Vec::new();
    for index in 0..phnum {
        let ph = &file[phoff + index * phentsize..][..layout.phdr_size];
        let get = |(offset, width): (usize, usize)| le(ph, offset, width).unwrap_or(0);
        if le(ph, 0, 4) != Some(PT_LOAD) {
            continue;
        }
        let (offset, filesz, memsz) = (get(layout.p_offset), get(layout.p_filesz), get(layout.p_memsz));
        if filesz > memsz {
            return Err(LoadError::SegmentFileLargerThanMemory { index });
        }
        if memsz == 0 {
            continue;
        }
        let data = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(filesz).ok())
            .and_then(|(offset, len)| file.get(offset..offset.checked_add(len)?))
            .ok_or(LoadError::SegmentOutsideFile { index })?;
        let segment = Segment { start: get(layout.p_paddr), data, memsz, vaddr: get(layout.p_vaddr) };
        segments.push(segment).map_err(|_| LoadError::TooManySegments)?;
    }
    if segments.is_empty() {
        return Err(LoadError::NoLoadableSegments);
    }
    // The entry is virtual; the CPU starts with paging off. A segment
    // that runs past 2^64 is outside RAM, as `check_segments` says later.
    let s = segments
        .iter()
        .find(|s| entry >= s.vaddr && entry - s.vaddr < s.memsz)
        .ok_or(LoadError::EntryOutsideImage { entry })?;
    let entry =
        s.start.checked_add(entry - s.vaddr).ok_or(LoadError::SegmentOutsideRam { start: s.start, end: u64::MAX })?;
    Ok(Image { format: layout.format, entry, segments })
}

/// The a.out kludge (§3.1.3): header_addr, load_addr, load_end_addr,
/// bss_end_addr, entry_addr at header offsets 12..32.
fn parse_aout(file: &[u8], header: Header) -> Result<Image<'_>, LoadError> {
    let end = header.offset + 32;
    if end > file.len() || end > HEADER_SEARCH {
        return Err(LoadError::HeaderTruncated { offset: header.offset });
    }
    let field = |i: usize| u64::from(le32(file, header.offset + 12 + 4 * i).unwrap_or(0));
    let (header_addr, load_addr, load_end_addr, bss_end_addr, entry) =
        (field(0), field(1), field(2), field(3), field(4));
    let back = header_addr.checked_sub(load_addr).ok_or(LoadError::BadAoutHeader("load_addr above header_addr"))?;
    let file_start = (header.offset as u64)
        .checked_sub(back)
        .ok_or(LoadError::BadAoutHeader("load_addr lies before the start of the file"))?;
    let available = file.len() as u64 - file_start;
    let load_len = if load_end_addr == 0 {
        available
    } else {
        let len =
            load_end_addr.checked_sub(load_addr).ok_or(LoadError::BadAoutHeader("load_end_addr below load_addr"))?;
        if len > available {
            return Err(LoadError::BadAoutHeader("load_end_addr beyond the end of the file"));
        }
        len
    };
    let load_end = load_addr + load_len;
    let memsz = if bss_end_addr == 0 {
        load_len
    } else {
        let bss = bss_end_addr
            .checked_sub(load_end)
            .ok_or(LoadError::BadAoutHeader("bss_end_addr below the end of the loaded data"))?;
        load_len + bss
    };
    if memsz == 0 {
        return Err(LoadError::NoLoadableSegments);
    }
    if entry < load_addr || entry - load_addr >= memsz {
        return Err(LoadError::EntryOutsideImage { entry });
    }
    let data = &file[file_start as usize..(file_start + load_len) as usize];
    let mut segments = Vec::new();
    let _ = segments.push(Segment { start: load_addr, data, memsz, vaddr: load_addr });
    Ok(Image { format: KernelFormat::AoutKludge, entry, segments })
}

fn in_ram(range: &Range<u64>, ram_size: u64) -> bool {
    (range.end <= EBDA) || (range.start >= HIGH_RAM_START && range.end <= ram_size)
}

fn check_segments(segments: &[Segment<'_>], ram_size: u64) -> Result<Range<u64>, LoadError> {
    let mut extent: Option<Range<u64>> = None;
    for (i, s) in segments.iter().enumerate() {
        let end = s.end().ok_or(LoadError::SegmentOutsideRam { start: s.start, end: u64::MAX })?;
        if !in_ram(&(s.start..end), ram_size) {
            return Err(LoadError::SegmentOutsideRam { start: s.start, end });
        }
        for other in &segments[..i] {
            // Both ends were checked when `other` was.
            if s.start < other.start + other.memsz && other.start < end {
                return Err(LoadError::SegmentsOverlap { first: other.start, second: s.start });
            }
        }
        extent = Some(match extent {
            None => s.start..end,
            Some(e) => e.start.min(s.start)..e.end.max(end),
        });
    }
    extent.ok_or(LoadError::NoLoadableSegments)
}

fn align_up(value: u64) -> Option<u64> {
    Some(value.checked_add(PAGE_SIZE - 1)? & !(PAGE_SIZE - 1))
}

impl<'a> LoadRequest<'a> {
    /// The command line the kernel sees, in pieces: the name, a space if
    /// both are there, the arguments.
    pub fn command_line(&self) -> [&'a str; 3] {
        let space = if self.name.is_empty() || self.cmdline.is_empty() { "" } else { " " };
        [self.name, space, self.cmdline]
    }
}

fn cmdline_parts<'a>(request: &LoadRequest<'a>) -> [&'a str; 3] {
    request.command_line()
}

fn cmdline_len(request: &LoadRequest<'_>) -> usize {
    cmdline_parts(request).iter().map(|p| p.len()).sum()
}

/// Bytes of boot area `request` needs (what [`plan`] checks the buffer against).
pub fn boot_area_len(request: &LoadRequest<'_>) -> usize {
    boot_area::strings(request.modules.len())
        + BOOT_LOADER_NAME.len()
        + 1
        + cmdline_len(request)
        + 1
        + request.modules.iter().map(|m| m.string.len() + 1).sum::<usize>()
}

fn check_strings(request: &LoadRequest<'_>) -> Result<(), LoadError> {
    if request.modules.len() > MAX_MODULES {
        return Err(LoadError::TooManyModules);
    }
    if cmdline_len(request) > MAX_CMDLINE {
        return Err(LoadError::CmdlineTooLong);
    }
    if cmdline_parts(request).iter().any(|p| p.as_bytes().contains(&0)) {
        return Err(LoadError::StringHasNul { module: None });
    }
    for (i, m) in request.modules.iter().enumerate() {
        if m.string.len() > MAX_MODULE_STRING {
            return Err(LoadError::ModuleStringTooLong { module: i });
        }
        if m.string.as_bytes().contains(&0) {
            return Err(LoadError::StringHasNul { module: Some(i) });
        }
    }
    Ok(())
}

/// The boot processor's state at the entry (§3.2).
fn registers(entry: u32, info: u64, gdt: u64) -> Vec<RegisterValue, MAX_REGISTERS> {
    let gprs = [(HvRegisterName::RAX, u64::from(BOOTLOADER_MAGIC)), (HvRegisterName::RBX, info)];
    entry::flat_protected_mode(entry, gdt, &FLAT_GDT, &gprs)
}

/// Writes `bytes` at `at`, returning the end.
fn put(area: &mut [u8], at: usize, bytes: &[u8]) -> usize {
    area[at..at + bytes.len()].copy_from_slice(bytes);
    at + bytes.len()
}

fn put32(area: &mut [u8], at: usize, value: u64) {
    // Every address and size written here is below MAX_RAM (< 4 GiB).
    put(area, at, &(value as u32).to_le_bytes());
}

/// Appends a NUL-terminated string, returning its guest address and the next offset.
fn put_string(area: &mut [u8], at: usize, base: u64, s: &str) -> (u64, usize) {
    put_strings(area, at, base, &[s])
}

/// Appends the concatenation of `parts`, NUL-terminated, returning its guest
/// address and the next offset.
fn put_strings(area: &mut [u8], at: usize, base: u64, parts: &[&str]) -> (u64, usize) {
    let end = parts.iter().fold(at, |end, part| put(area, end, part.as_bytes()));
    area[end] = 0;
    (base + at as u64, end + 1)
}

/// Fills the boot area, which starts at guest address `base`.
fn fill_boot_area(area: &mut [u8], base: u64, request: &LoadRequest<'_>, modules: &[Range<u64>]) {
    use info_offset as off;
    area.fill(0);
    let ram_size = request.ram_size;

    FLAT_GDT.write(&mut area[boot_area::GDT..]);

    // Memory map.
    let regions: [(u64, u64, u32); boot_area::MMAP_ENTRIES] = [
        (0, EBDA, MMAP_AVAILABLE),
        (EBDA, LOW_RAM_END - EBDA, MMAP_ACPI_NVS),
        (BIOS_AREA, HIGH_RAM_START - BIOS_AREA, MMAP_RESERVED),
        (HIGH_RAM_START, ram_size - HIGH_RAM_START, MMAP_AVAILABLE),
    ];
    for (i, (start, len, kind)) in regions.into_iter().enumerate() {
        let at = boot_area::MMAP + i * boot_area::MMAP_ENTRY_SIZE;
        put32(area, at, (boot_area::MMAP_ENTRY_SIZE - 4) as u64);
        put(area, at + 4, &start.to_le_bytes());
        put(area, at + 12, &len.to_le_bytes());
        put32(area, at + 20, kind.into());
    }

    // Strings, then the module list that points at them.
    let mut at = boot_area::strings(modules.len());
    let (name, next) = put_string(area, at, base, BOOT_LOADER_NAME);
    let (cmdline, next) = put_strings(area, next, base, &cmdline_parts(request));
    at = next;
    for (i, (range, module)) in modules.iter().zip(request.modules).enumerate() {
        let (string, next) = put_string(area, at, base, module.string);
        at = next;
        let entry = boot_area::MODS + i * boot_area::MODULE_ENTRY_SIZE;
        put32(area, entry, range.start);
        put32(area, entry + 4, range.end);
        put32(area, entry + 8, string);
    }

    put32(area, off::FLAGS, u64::from(info_flags::PROVIDED));
    put32(area, off::MEM_LOWER, EBDA / 1024);
    put32(area, off::MEM_UPPER, (ram_size - HIGH_RAM_START) / 1024);
    put32(area, off::CMDLINE, cmdline);
    put32(area, off::MODS_COUNT, modules.len() as u64);
    put32(area, off::MODS_ADDR, base + boot_area::MODS as u64);
    put32(area, off::MMAP_LENGTH, (boot_area::MMAP_ENTRIES * boot_area::MMAP_ENTRY_SIZE) as u64);
    put32(area, off::MMAP_ADDR, base + boot_area::MMAP as u64);
    put32(area, off::BOOT_LOADER_NAME, name);
}

/// Plans loading `request`. The Multiboot information and the other
/// generated structures are written into `area` (at least
/// [`boot_area_len`] bytes; [`BOOT_AREA_MAX`] always suffices), which the
/// plan's last write then refers to.
pub fn plan<'a>(request: &LoadRequest<'a>, area: &'a mut [u8]) -> Result<Plan<'a>, LoadError> {
    let ram_size = request.ram_size;
    if !ram_size.is_multiple_of(PAGE_SIZE) || ram_size <= HIGH_RAM_START || ram_size > MAX_RAM {
        return Err(LoadError::RamSize { ram_size });
    }
    let header = find_header(request.kernel)?;
    let unsupported = header.flags & header_flags::REQUIRED & !header_flags::SUPPORTED;
    if unsupported != 0 {
        return Err(LoadError::UnsupportedRequirements { bits: unsupported });
    }
    let image = if header.flags & header_flags::AOUT_KLUDGE != 0 {
        parse_aout(request.kernel, header)?
    } else {
        parse_elf(request.kernel)?
    };
    let kernel = check_segments(&image.segments, ram_size)?;
    // In RAM, hence below 4 GiB.
    let entry = image.entry as u32;
    check_strings(request)?;

    // Modules, then the boot area, above the kernel and 1 MiB.
    let out_of_ram = |end| LoadError::OutOfRam { end };
    let mut cursor = align_up(kernel.end.max(HIGH_RAM_START)).ok_or(out_of_ram(u64::MAX))?;
    let mut modules: Vec<Range<u64>, MAX_MODULES> = Vec::new();
    for module in request.modules {
        let end = cursor + module.bytes.len() as u64;
        if end > ram_size {
            return Err(out_of_ram(end));
        }
        let _ = modules.push(cursor..end);
        cursor = align_up(end).ok_or(out_of_ram(end))?;
    }
    let needed = boot_area_len(request);
    let area_end = cursor + needed as u64;
    if area_end > ram_size {
        return Err(out_of_ram(area_end));
    }
    let area = area.get_mut(..needed).ok_or(LoadError::BootAreaTooSmall { needed })?;
    fill_boot_area(area, cursor, request, &modules);
    let area: &'a [u8] = area;

    let mut writes = Vec::new();
    for s in &image.segments {
        let _ = writes.push(Write { gpa: s.start, data: s.data, zero: s.memsz - s.data.len() as u64 });
    }
    for (range, module) in modules.iter().zip(request.modules) {
        if !module.bytes.is_empty() {
            let _ = writes.push(Write { gpa: range.start, data: module.bytes, zero: 0 });
        }
    }
    let _ = writes.push(Write { gpa: cursor, data: area, zero: 0 });

    let info = cursor + boot_area::INFO as u64;
    let gdt = cursor + boot_area::GDT as u64;
    Ok(Plan {
        format: image.format,
        header_offset: header.offset,
        header_flags: header.flags,
        entry,
        kernel,
        modules,
        boot_area: cursor..area_end,
        info,
        gdt,
        writes,
        registers: registers(entry, info, gdt),
    })
}

#[cfg(test)]
mod tests;
