//! Multiboot v1 and v2 boot information, parsed into one neutral form.

use crate::PhysMemory;
use bootinfo::{MemoryKind, MemoryRegion};
use heapless::Vec;

/// EAX value a Multiboot v1 loader passes.
pub const MB1_BOOTLOADER_MAGIC: u32 = 0x2bad_b002;
/// EAX value a Multiboot v2 loader passes.
pub const MB2_BOOTLOADER_MAGIC: u32 = 0x36d7_6289;

pub const MAX_FIRMWARE_REGIONS: usize = 96;
pub const MAX_RAW_MODULES: usize = bootinfo::MAX_MODULES;
const MAX_STRING: u64 = 4096;
/// Bigger than any sane Multiboot v2 information block.
const MAX_MB2_INFO: u32 = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Multiboot1,
    Multiboot2,
}

impl Protocol {
    pub fn number(self) -> u32 {
        match self {
            Protocol::Multiboot1 => 1,
            Protocol::Multiboot2 => 2,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawModule<'a> {
    pub start: u64,
    pub end: u64,
    pub name: &'a str,
}

/// What the boot loader told us, before the loader adds its own ranges.
#[derive(Debug)]
pub struct BootSources<'a> {
    pub protocol: Protocol,
    pub cmdline: &'a str,
    pub bootloader_name: &'a str,
    pub memory: Vec<MemoryRegion, MAX_FIRMWARE_REGIONS>,
    pub modules: Vec<RawModule<'a>, MAX_RAW_MODULES>,
    /// Physical address of an RSDP the boot loader handed over (v2 only).
    pub rsdp: Option<u64>,
    /// The information block itself, which must survive until it is copied.
    pub info: (u64, u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError {
    UnknownMagic(u32),
    /// A pointer or length in the information leads outside readable memory.
    Unreadable {
        what: &'static str,
        addr: u64,
    },
    /// A structure is internally inconsistent.
    Malformed(&'static str),
    NoMemoryMap,
    TooManyRegions,
    TooManyModules,
}

impl core::fmt::Display for BootError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BootError::UnknownMagic(m) => {
                write!(f, "not started by a Multiboot loader (magic {m:#x})")
            }
            BootError::Unreadable { what, addr } => {
                write!(f, "{what} at {addr:#x} is not readable")
            }
            BootError::Malformed(what) => write!(f, "malformed boot information: {what}"),
            BootError::NoMemoryMap => write!(f, "the boot loader passed no memory map"),
            BootError::TooManyRegions => {
                write!(f, "more than {MAX_FIRMWARE_REGIONS} memory regions")
            }
            BootError::TooManyModules => write!(f, "more than {MAX_RAW_MODULES} boot modules"),
        }
    }
}

/// The kernel's arguments: the command line without the image path that
/// QEMU and GRUB put in front of it.
pub fn kernel_arguments(cmdline: &str) -> &str {
    let trimmed = cmdline.trim_start();
    let first = trimmed.split_ascii_whitespace().next().unwrap_or("");
    if first.contains('/') || first.ends_with(".elf") || first.ends_with(".elf32") {
        trimmed[first.len()..].trim_start()
    } else {
        trimmed
    }
}

/// Parses whichever protocol `magic` names.
pub fn parse<'a, M: PhysMemory>(mem: &'a M, magic: u32, info: u64) -> Result<BootSources<'a>, BootError> {
    match magic {
        MB1_BOOTLOADER_MAGIC => parse_v1(mem, info),
        MB2_BOOTLOADER_MAGIC => parse_v2(mem, info),
        other => Err(BootError::UnknownMagic(other)),
    }
}

/// Memory types shared by Multiboot v1 and v2 (and E820).
fn memory_kind(kind: u32) -> MemoryKind {
    match kind {
        1 => MemoryKind::Usable,
        3 => MemoryKind::AcpiReclaimable,
        4 => MemoryKind::AcpiNvs,
        5 => MemoryKind::Defective,
        _ => MemoryKind::Reserved,
    }
}

fn push_region<const N: usize>(
    out: &mut Vec<MemoryRegion, N>,
    base: u64,
    len: u64,
    kind: u32,
) -> Result<(), BootError> {
    if len == 0 {
        return Ok(());
    }
    let end = base.checked_add(len).ok_or(BootError::Malformed("memory region wraps"))?;
    out.push(MemoryRegion::new(base, end, memory_kind(kind))).map_err(|_| BootError::TooManyRegions)
}

fn string<'a, M: PhysMemory>(mem: &'a M, addr: u64, what: &'static str) -> Result<&'a str, BootError> {
    mem.c_str(addr, MAX_STRING).ok_or(BootError::Unreadable { what, addr })
}

mod v1 {
    pub const FLAG_CMDLINE: u32 = 1 << 2;
    pub const FLAG_MODS: u32 = 1 << 3;
    pub const FLAG_MMAP: u32 = 1 << 6;
    pub const FLAG_LOADER_NAME: u32 = 1 << 9;
    pub const INFO_SIZE: u64 = 0x58;
    pub const OFF_CMDLINE: u64 = 16;
    pub const OFF_MODS_COUNT: u64 = 20;
    pub const OFF_MODS_ADDR: u64 = 24;
    pub const OFF_MMAP_LENGTH: u64 = 44;
    pub const OFF_MMAP_ADDR: u64 = 48;
    pub const OFF_LOADER_NAME: u64 = 64;
    pub const MODULE_SIZE: u64 = 16;
}

fn parse_v1<M: PhysMemory>(mem: &M, info: u64) -> Result<BootSources<'_>, BootError> {
    let unreadable = |what, addr| BootError::Unreadable { what, addr };
    let field = |off: u64| mem.u32_at(info + off).ok_or(unreadable("Multiboot v1 information", info + off));
    let flags = field(0)?;

    let cmdline =
        if flags & v1::FLAG_CMDLINE != 0 { string(mem, field(v1::OFF_CMDLINE)?.into(), "command line")? } else { "" };
    let bootloader_name = if flags & v1::FLAG_LOADER_NAME != 0 {
        string(mem, field(v1::OFF_LOADER_NAME)?.into(), "boot loader name")?
    } else {
        ""
    };

    let mut memory = Vec::new();
    if flags & v1::FLAG_MMAP == 0 {
        return Err(BootError::NoMemoryMap);
    }
    let (mmap, mmap_len) = (u64::from(field(v1::OFF_MMAP_ADDR)?), u64::from(field(v1::OFF_MMAP_LENGTH)?));
    let mut at = mmap;
    while at < mmap + mmap_len {
        // Each entry is preceded by its size, which excludes the size field.
        let size = u64::from(mem.u32_at(at).ok_or(unreadable("memory map entry", at))?);
        if size < 20 {
            return Err(BootError::Malformed("memory map entry shorter than 20 bytes"));
        }
        let base = mem.u64_at(at + 4).ok_or(unreadable("memory map entry", at))?;
        let len = mem.u64_at(at + 12).ok_or(unreadable("memory map entry", at))?;
        let kind = mem.u32_at(at + 20).ok_or(unreadable("memory map entry", at))?;
        push_region(&mut memory, base, len, kind)?;
        at += size + 4;
    }

    let mut modules = Vec::new();
    if flags & v1::FLAG_MODS != 0 {
        let (count, table) = (u64::from(field(v1::OFF_MODS_COUNT)?), u64::from(field(v1::OFF_MODS_ADDR)?));
        if count > MAX_RAW_MODULES as u64 {
            return Err(BootError::TooManyModules);
        }
        for i in 0..count {
            let entry = table + i * v1::MODULE_SIZE;
            let word = |off| mem.u32_at(entry + off).ok_or(unreadable("module entry", entry));
            let (start, end) = (u64::from(word(0)?), u64::from(word(4)?));
            if end < start {
                return Err(BootError::Malformed("module ends before it starts"));
            }
            let name_ptr = word(8)?;
            let name = if name_ptr == 0 { "" } else { string(mem, name_ptr.into(), "module name")? };
            modules.push(RawModule { start, end, name }).map_err(|_| BootError::TooManyModules)?;
        }
    }

    Ok(BootSources {
        protocol: Protocol::Multiboot1,
        cmdline,
        bootloader_name,
        memory,
        modules,
        rsdp: None,
        info: (info, info + v1::INFO_SIZE),
    })
}

mod v2 {
    pub const TAG_END: u32 = 0;
    pub const TAG_CMDLINE: u32 = 1;
    pub const TAG_LOADER_NAME: u32 = 2;
    pub const TAG_MODULE: u32 = 3;
    pub const TAG_MMAP: u32 = 6;
    pub const TAG_ACPI_OLD: u32 = 14;
    pub const TAG_ACPI_NEW: u32 = 15;
}

fn parse_v2<M: PhysMemory>(mem: &M, info: u64) -> Result<BootSources<'_>, BootError> {
    let unreadable = |what, addr| BootError::Unreadable { what, addr };
    let total = mem.u32_at(info).ok_or(unreadable("Multiboot v2 information", info))?;
    if !(16..=MAX_MB2_INFO).contains(&total) {
        return Err(BootError::Malformed("Multiboot v2 information size"));
    }
    let end = info + u64::from(total);
    mem.bytes(info, total.into()).ok_or(unreadable("Multiboot v2 information", info))?;

    let mut sources = BootSources {
        protocol: Protocol::Multiboot2,
        cmdline: "",
        bootloader_name: "",
        memory: Vec::new(),
        modules: Vec::new(),
        rsdp: None,
        info: (info, end),
    };
    let mut saw_mmap = false;
    let (mut rsdp_old, mut rsdp_new) = (None, None);
    let mut tag = info + 8;
    loop {
        if tag + 8 > end {
            return Err(BootError::Malformed("tags run past the end without an end tag"));
        }
        let kind = mem.u32_at(tag).ok_or(unreadable("tag", tag))?;
        let size = u64::from(mem.u32_at(tag + 4).ok_or(unreadable("tag", tag))?);
        if size < 8 || tag + size > end {
            return Err(BootError::Malformed("tag size"));
        }
        let body = tag + 8;
        // Strings are bounded by their tag, not just by a NUL.
        let tag_string = |at: u64, what| mem.c_str(at, tag + size - at).ok_or(BootError::Unreadable { what, addr: at });
        match kind {
            v2::TAG_END => break,
            v2::TAG_CMDLINE => sources.cmdline = tag_string(body, "command line")?,
            v2::TAG_LOADER_NAME => sources.bootloader_name = tag_string(body, "boot loader name")?,
            v2::TAG_MODULE => {
                if size < 17 {
                    return Err(BootError::Malformed("module tag too short"));
                }
                let start = u64::from(mem.u32_at(body).ok_or(unreadable("module tag", tag))?);
                let mod_end = u64::from(mem.u32_at(body + 4).ok_or(unreadable("module tag", tag))?);
                if mod_end < start {
                    return Err(BootError::Malformed("module ends before it starts"));
                }
                let name = tag_string(body + 8, "module name")?;
                sources.modules.push(RawModule { start, end: mod_end, name }).map_err(|_| BootError::TooManyModules)?;
            }
            v2::TAG_MMAP => {
                let entry_size = u64::from(mem.u32_at(body).ok_or(unreadable("memory map tag", tag))?);
                if entry_size < 24 || entry_size % 8 != 0 {
                    return Err(BootError::Malformed("memory map entry size"));
                }
                let mut at = body + 8;
                while at + entry_size <= tag + size {
                    let base = mem.u64_at(at).ok_or(unreadable("memory map entry", at))?;
                    let len = mem.u64_at(at + 8).ok_or(unreadable("memory map entry", at))?;
                    let kind = mem.u32_at(at + 16).ok_or(unreadable("memory map entry", at))?;
                    push_region(&mut sources.memory, base, len, kind)?;
                    at += entry_size;
                }
                saw_mmap = true;
            }
            v2::TAG_ACPI_OLD if size >= 8 + 20 => rsdp_old = Some(body),
            v2::TAG_ACPI_NEW if size >= 8 + 36 => rsdp_new = Some(body),
            _ => {}
        }
        tag += size.next_multiple_of(8);
    }
    if !saw_mmap {
        return Err(BootError::NoMemoryMap);
    }
    // The tags hold a copy of the RSDP itself; point at that copy.
    sources.rsdp = rsdp_new.or(rsdp_old);
    Ok(sources)
}

#[cfg(test)]
mod tests;
