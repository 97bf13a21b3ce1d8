//! ELF64 → ELF32 for the loader.
//!
//! QEMU's `-kernel` accepts Multiboot v1 kernels only as ELF32. The loader
//! is compiled as x86-64 code (with a 32-bit entry stub) and linked below
//! 4 GiB, so its loadable segments can be described by an ELF32 file
//! unchanged. Only program headers are emitted: that is all Multiboot
//! loaders read.

#![forbid(unsafe_code)]

use object::elf;
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, LittleEndian as LE};
use std::fmt;

#[derive(Debug, PartialEq, Eq)]
pub enum ConvertError {
    Parse(String),
    NotX86_64,
    /// A loadable segment does not fit in 32-bit addresses.
    SegmentAbove4G {
        vaddr: u64,
        memsz: u64,
    },
    EntryAbove4G(u64),
    NoLoadableSegments,
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvertError::Parse(e) => write!(f, "not a valid ELF64 file: {e}"),
            ConvertError::NotX86_64 => write!(f, "not an x86-64 ELF file"),
            ConvertError::SegmentAbove4G { vaddr, memsz } => {
                write!(f, "segment at {vaddr:#x} (+{memsz:#x}) does not fit below 4 GiB")
            }
            ConvertError::EntryAbove4G(e) => write!(f, "entry point {e:#x} is above 4 GiB"),
            ConvertError::NoLoadableSegments => write!(f, "no PT_LOAD segments"),
        }
    }
}

impl std::error::Error for ConvertError {}

const EHDR32_SIZE: usize = 52;
const PHDR32_SIZE: usize = 32;

struct Segment<'a> {
    flags: u32,
    vaddr: u32,
    paddr: u32,
    memsz: u32,
    align: u32,
    data: &'a [u8],
}

/// Converts `input` (ELF64, x86-64) into an ELF32 (EM_386) image holding the
/// same loadable segments at the same addresses.
pub fn convert(input: &[u8]) -> Result<Vec<u8>, ConvertError> {
    let file = ElfFile64::<Endianness>::parse(input).map_err(|e| ConvertError::Parse(e.to_string()))?;
    let header = file.elf_header();
    let endian = file.endian();
    if header.e_machine(endian) != elf::EM_X86_64 {
        return Err(ConvertError::NotX86_64);
    }
    let entry = header.e_entry(endian);
    let entry = u32::try_from(entry).map_err(|_| ConvertError::EntryAbove4G(entry))?;

    let mut segments = Vec::new();
    for ph in file.elf_program_headers() {
        if ph.p_type(endian) != elf::PT_LOAD {
            continue;
        }
        let vaddr = ph.p_vaddr(endian);
        let memsz = ph.p_memsz(endian);
        let too_high = || ConvertError::SegmentAbove4G { vaddr, memsz };
        let end = vaddr.checked_add(memsz).ok_or_else(too_high)?;
        if end > 1 << 32 {
            return Err(too_high());
        }
        let data = ph.data(endian, input).map_err(|_| ConvertError::Parse("segment data out of bounds".into()))?;
        segments.push(Segment {
            flags: ph.p_flags(endian),
            vaddr: vaddr as u32,
            paddr: u32::try_from(ph.p_paddr(endian)).map_err(|_| too_high())?,
            memsz: memsz as u32,
            align: u32::try_from(ph.p_align(endian)).unwrap_or(0x1000),
            data,
        });
    }
    if segments.is_empty() {
        return Err(ConvertError::NoLoadableSegments);
    }
    Ok(write_elf32(entry, &segments))
}

fn write_elf32(entry: u32, segments: &[Segment<'_>]) -> Vec<u8> {
    let phoff = EHDR32_SIZE;
    let data_start = phoff + PHDR32_SIZE * segments.len();
    let mut out = Vec::new();

    // ELF identification and header.
    out.extend_from_slice(&elf::ELFMAG);
    out.extend_from_slice(&[elf::ELFCLASS32, elf::ELFDATA2LSB, elf::EV_CURRENT, elf::ELFOSABI_NONE]);
    out.resize(16, 0);
    push16(&mut out, elf::ET_EXEC);
    push16(&mut out, elf::EM_386);
    push32(&mut out, u32::from(elf::EV_CURRENT));
    push32(&mut out, entry);
    push32(&mut out, phoff as u32);
    push32(&mut out, 0); // e_shoff: no section headers
    push32(&mut out, 0); // e_flags
    push16(&mut out, EHDR32_SIZE as u16);
    push16(&mut out, PHDR32_SIZE as u16);
    push16(&mut out, segments.len() as u16);
    push16(&mut out, 0); // e_shentsize
    push16(&mut out, 0); // e_shnum
    push16(&mut out, 0); // e_shstrndx
    debug_assert_eq!(out.len(), EHDR32_SIZE);

    // Segment data follows the headers; each file offset is congruent to its
    // address modulo the page size, as loaders that map pages expect.
    let mut offsets = Vec::new();
    let mut cursor = data_start;
    for seg in segments {
        let page = 0x1000;
        let want = seg.vaddr as usize % page;
        let pad = (want + page - cursor % page) % page;
        cursor += pad;
        offsets.push(cursor);
        cursor += seg.data.len();
    }
    for (seg, &offset) in segments.iter().zip(&offsets) {
        push32(&mut out, elf::PT_LOAD);
        push32(&mut out, offset as u32);
        push32(&mut out, seg.vaddr);
        push32(&mut out, seg.paddr);
        push32(&mut out, seg.data.len() as u32);
        push32(&mut out, seg.memsz);
        push32(&mut out, seg.flags);
        push32(&mut out, seg.align);
    }
    for (seg, &offset) in segments.iter().zip(&offsets) {
        out.resize(offset, 0);
        out.extend_from_slice(seg.data);
    }
    out
}

fn push16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn push32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A loadable segment read back: (vaddr, memsz, file bytes).
pub type Segment32 = (u32, u32, Vec<u8>);

/// Reads back what [`convert`] wrote: the entry point and the segments.
pub fn inspect_elf32(image: &[u8]) -> Result<(u32, Vec<Segment32>), ConvertError> {
    let header = elf::FileHeader32::<LE>::parse(image).map_err(|e| ConvertError::Parse(e.to_string()))?;
    let phdrs = header.program_headers(LE, image).map_err(|e| ConvertError::Parse(e.to_string()))?;
    let segments = phdrs
        .iter()
        .filter(|ph| ph.p_type(LE) == elf::PT_LOAD)
        .map(|ph| {
            let data = ph.data(LE, image).map(<[u8]>::to_vec).unwrap_or_default();
            (ph.p_vaddr(LE), ph.p_memsz(LE), data)
        })
        .collect();
    Ok((header.e_entry(LE), segments))
}

#[doc(hidden)]
pub mod fixtures;

#[cfg(test)]
mod tests;
