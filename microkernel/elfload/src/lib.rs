//! Planning how an ELF executable is loaded, for every loader in Tessera:
//! the boot loader (the microkernel), the kernel (the root task) and the
//! supervisor (the other tasks). The file is untrusted input: every
//! segment is checked before anyone copies a byte.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use core::ops::Range;
use elf::ElfBytes;
use elf::abi;
use elf::endian::LittleEndian;

pub use x86defs::PAGE_SIZE;
pub const MAX_SEGMENTS: usize = 8;

/// One loadable segment, widened to whole pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    /// First page's address.
    pub start: u64,
    pub pages: u64,
    /// Where the file bytes start inside the first page.
    pub offset_in_page: u64,
    /// The bytes to copy; the rest of the pages is zero.
    pub data: &'a [u8],
    pub writable: bool,
    pub executable: bool,
}

impl Segment<'_> {
    pub fn end(&self) -> u64 {
        self.start + self.pages * PAGE_SIZE
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image<'a> {
    pub entry: u64,
    pub segments: heapless::Vec<Segment<'a>, MAX_SEGMENTS>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    NotElf,
    NotX86_64Executable,
    NoProgramHeaders,
    NoLoadableSegments,
    TooManySegments,
    /// File data outside the file, or larger than the segment.
    BadSegment {
        vaddr: u64,
    },
    WritableAndExecutable {
        vaddr: u64,
    },
    OutsideRange {
        vaddr: u64,
    },
    /// Two segments share a page.
    Overlap {
        vaddr: u64,
    },
    EntryNotExecutable {
        entry: u64,
    },
}

impl core::fmt::Display for ElfError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ElfError::NotElf => write!(f, "not a little-endian 64-bit ELF file"),
            ElfError::NotX86_64Executable => write!(f, "not an x86-64 executable"),
            ElfError::NoProgramHeaders => write!(f, "no program headers"),
            ElfError::NoLoadableSegments => write!(f, "no loadable segments"),
            ElfError::TooManySegments => write!(f, "more than {MAX_SEGMENTS} loadable segments"),
            ElfError::BadSegment { vaddr } => write!(f, "segment at {vaddr:#x} has bad file data"),
            ElfError::WritableAndExecutable { vaddr } => {
                write!(f, "segment at {vaddr:#x} is writable and executable")
            }
            ElfError::OutsideRange { vaddr } => {
                write!(f, "segment at {vaddr:#x} is outside the allowed range")
            }
            ElfError::Overlap { vaddr } => write!(f, "segment at {vaddr:#x} overlaps another"),
            ElfError::EntryNotExecutable { entry } => {
                write!(f, "entry point {entry:#x} is not in an executable segment")
            }
        }
    }
}

/// Validates `bytes` and returns its segments, each inside `range`.
pub fn plan(bytes: &[u8], range: Range<u64>) -> Result<Image<'_>, ElfError> {
    let file = ElfBytes::<LittleEndian>::minimal_parse(bytes).map_err(|_| ElfError::NotElf)?;
    let header = file.ehdr;
    if header.class != elf::file::Class::ELF64 {
        return Err(ElfError::NotElf);
    }
    if header.e_machine != abi::EM_X86_64 || header.e_type != abi::ET_EXEC {
        return Err(ElfError::NotX86_64Executable);
    }
    let phdrs = file.segments().ok_or(ElfError::NoProgramHeaders)?;
    let mut segments: heapless::Vec<Segment<'_>, MAX_SEGMENTS> = heapless::Vec::new();
    for ph in phdrs.iter().filter(|ph| ph.p_type == abi::PT_LOAD && ph.p_memsz > 0) {
        let vaddr = ph.p_vaddr;
        let (writable, executable) = (ph.p_flags & abi::PF_W != 0, ph.p_flags & abi::PF_X != 0);
        if writable && executable {
            return Err(ElfError::WritableAndExecutable { vaddr });
        }
        let data = file.segment_data(&ph).map_err(|_| ElfError::BadSegment { vaddr })?;
        if data.len() as u64 > ph.p_memsz {
            return Err(ElfError::BadSegment { vaddr });
        }
        let end = vaddr.checked_add(ph.p_memsz).ok_or(ElfError::OutsideRange { vaddr })?;
        if vaddr < range.start || end > range.end {
            return Err(ElfError::OutsideRange { vaddr });
        }
        let start = vaddr & !(PAGE_SIZE - 1);
        let segment = Segment {
            start,
            pages: (end - start).div_ceil(PAGE_SIZE),
            offset_in_page: vaddr - start,
            data,
            writable,
            executable,
        };
        if segments.iter().any(|s| segment.start < s.end() && s.start < segment.end()) {
            return Err(ElfError::Overlap { vaddr });
        }
        segments.push(segment).map_err(|_| ElfError::TooManySegments)?;
    }
    if segments.is_empty() {
        return Err(ElfError::NoLoadableSegments);
    }
    let entry = header.e_entry;
    if !segments.iter().any(|s| s.executable && s.start <= entry && entry < s.end()) {
        return Err(ElfError::EntryNotExecutable { entry });
    }
    Ok(Image { entry, segments })
}

#[cfg(test)]
mod tests {
    use super::*;
    use elf32conv::fixtures::elf64;

    const USER: Range<u64> = 0x1000..0x8000_0000_0000;
    const RX: u32 = abi::PF_R | abi::PF_X;
    const RW: u32 = abi::PF_R | abi::PF_W;

    #[test]
    fn segments_are_widened_to_pages() {
        let file = elf64(
            abi::EM_X86_64,
            0x20_1010,
            &[(0x20_1000, 0x1800, &[0x90; 0x100], RX), (0x20_3010, 0x20, &[1, 2], RW)],
        );
        let image = plan(&file, USER).unwrap();
        assert_eq!(image.entry, 0x20_1010);
        assert_eq!(image.segments.len(), 2);
        let text = image.segments[0];
        assert_eq!((text.start, text.pages, text.offset_in_page, text.data.len()), (0x20_1000, 2, 0, 0x100));
        assert!(text.executable && !text.writable);
        let data = image.segments[1];
        assert_eq!((data.start, data.pages, data.offset_in_page, data.data), (0x20_3000, 1, 0x10, &[1u8, 2][..]));
    }

    #[test]
    fn every_bad_file_is_refused() {
        let wx = elf64(abi::EM_X86_64, 0x20_1000, &[(0x20_1000, 0x10, &[0; 16], RX | abi::PF_W)]);
        assert_eq!(plan(&wx, USER), Err(ElfError::WritableAndExecutable { vaddr: 0x20_1000 }));
        let kernel = elf64(abi::EM_X86_64, 0xffff_ffff_8000_0000, &[(0xffff_ffff_8000_0000, 0x10, &[0; 16], RX)]);
        assert_eq!(plan(&kernel, USER), Err(ElfError::OutsideRange { vaddr: 0xffff_ffff_8000_0000 }));
        let zero_page = elf64(abi::EM_X86_64, 0x10, &[(0x0, 0x10, &[0; 16], RX)]);
        assert_eq!(plan(&zero_page, USER), Err(ElfError::OutsideRange { vaddr: 0 }));
        let overlap =
            elf64(abi::EM_X86_64, 0x20_1000, &[(0x20_1000, 0x10, &[0; 16], RX), (0x20_1800, 0x10, &[0; 16], RW)]);
        assert_eq!(plan(&overlap, USER), Err(ElfError::Overlap { vaddr: 0x20_1800 }));
        let bad_entry =
            elf64(abi::EM_X86_64, 0x20_3000, &[(0x20_1000, 0x10, &[0; 16], RX), (0x20_3000, 0x10, &[0; 16], RW)]);
        assert_eq!(plan(&bad_entry, USER), Err(ElfError::EntryNotExecutable { entry: 0x20_3000 }));
        let wrapping = elf64(abi::EM_X86_64, 0x20_1000, &[(u64::MAX - 8, 0x100, &[], RX)]);
        assert_eq!(plan(&wrapping, USER), Err(ElfError::OutsideRange { vaddr: u64::MAX - 8 }));
        let arm = elf64(abi::EM_AARCH64, 0x20_1000, &[(0x20_1000, 0x10, &[0; 16], RX)]);
        assert_eq!(plan(&arm, USER), Err(ElfError::NotX86_64Executable));
        assert_eq!(plan(b"\x7fELF garbage", USER), Err(ElfError::NotElf));
        let empty = elf64(abi::EM_X86_64, 0x20_1000, &[]);
        assert_eq!(plan(&empty, USER), Err(ElfError::NoLoadableSegments));
    }

    #[test]
    fn truncated_files_are_refused_not_read_past() {
        let file = elf64(abi::EM_X86_64, 0x20_1000, &[(0x20_1000, 0x2000, &[0x90; 0x1000], RX)]);
        for cut in [16, 64, 100, file.len() - 1] {
            assert!(plan(&file[..cut], USER).is_err(), "cut at {cut}");
        }
    }
}
