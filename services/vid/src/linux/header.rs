//! The real-mode kernel header of a bzImage (`boot.rst`, "The real-mode
//! kernel header"): its offsets, flags and the checks [`parse_header`] makes.

use super::{LinuxError, MIN_PROTOCOL};
use crate::loader::PAGE_SIZE;

/// Byte offsets in `boot_params` (and, from 0x1f1, the file's setup header).
pub mod offset {
    pub const EXT_RAMDISK_IMAGE: usize = 0x0c0;
    pub const EXT_RAMDISK_SIZE: usize = 0x0c4;
    pub const EXT_CMD_LINE_PTR: usize = 0x0c8;
    pub const E820_ENTRIES: usize = 0x1e8;
    pub const SENTINEL: usize = 0x1ef;
    pub const SETUP_HEADER: usize = 0x1f1;
    pub const SETUP_SECTS: usize = 0x1f1;
    pub const SYSSIZE: usize = 0x1f4;
    pub const BOOT_FLAG: usize = 0x1fe;
    pub const JUMP: usize = 0x200;
    pub const HEADER_MAGIC: usize = 0x202;
    pub const VERSION: usize = 0x206;
    pub const TYPE_OF_LOADER: usize = 0x210;
    pub const LOADFLAGS: usize = 0x211;
    pub const CODE32_START: usize = 0x214;
    pub const RAMDISK_IMAGE: usize = 0x218;
    pub const RAMDISK_SIZE: usize = 0x21c;
    pub const HEAP_END_PTR: usize = 0x224;
    pub const CMD_LINE_PTR: usize = 0x228;
    pub const INITRD_ADDR_MAX: usize = 0x22c;
    pub const KERNEL_ALIGNMENT: usize = 0x230;
    pub const RELOCATABLE_KERNEL: usize = 0x234;
    pub const MIN_ALIGNMENT: usize = 0x235;
    pub const XLOADFLAGS: usize = 0x236;
    pub const CMDLINE_SIZE: usize = 0x238;
    pub const HARDWARE_SUBARCH: usize = 0x23c;
    pub const SETUP_DATA: usize = 0x250;
    pub const PREF_ADDRESS: usize = 0x258;
    pub const INIT_SIZE: usize = 0x260;
    /// The header fields this loader reads end here.
    pub const READ_END: usize = 0x264;
    /// `boot_params` fields after the setup header start here.
    pub const HEADER_LIMIT: usize = 0x290;
    pub const E820_TABLE: usize = 0x2d0;
}

pub const BOOT_FLAG: u16 = 0xAA55;
pub const HEADER_MAGIC: &[u8; 4] = b"HdrS";
/// `type_of_loader` for a boot loader without an assigned ID.
pub const TYPE_OF_LOADER_UNDEFINED: u8 = 0xff;

/// `loadflags` bits.
pub mod loadflags {
    pub const LOADED_HIGH: u8 = 1 << 0;
    pub const KASLR_FLAG: u8 = 1 << 1;
    pub const QUIET_FLAG: u8 = 1 << 5;
    pub const KEEP_SEGMENTS: u8 = 1 << 6;
    pub const CAN_USE_HEAP: u8 = 1 << 7;
}

/// `xloadflags` bits.
pub mod xloadflags {
    pub const KERNEL_64: u16 = 1 << 0;
    pub const CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
    pub const EFI_HANDOVER_32: u16 = 1 << 2;
    pub const EFI_HANDOVER_64: u16 = 1 << 3;
    pub const EFI_KEXEC: u16 = 1 << 4;
}

/// The fields of the setup header this loader uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupHeader {
    /// Boot protocol version, e.g. 0x020f for 2.15.
    pub version: u16,
    /// Sectors of real-mode setup after the boot sector (0 read as 4).
    pub setup_sects: u8,
    /// The protected-mode kernel's size in 16-byte paragraphs.
    pub syssize: u32,
    pub loadflags: u8,
    pub code32_start: u32,
    pub initrd_addr_max: u32,
    pub kernel_alignment: u32,
    pub relocatable: bool,
    pub min_alignment: u8,
    pub xloadflags: u16,
    pub cmdline_size: u32,
    pub pref_address: u64,
    pub init_size: u32,
    /// End of the header in the file (`0x202 + byte 0x201`).
    pub header_end: usize,
}

impl SetupHeader {
    /// File offset of the protected-mode kernel.
    pub fn kernel_offset(&self) -> usize {
        (usize::from(if self.setup_sects == 0 { 4 } else { self.setup_sects }) + 1) * 512
    }

    /// Whether the kernel has a 64-bit entry at load address + 0x200.
    pub fn has_64bit_entry(&self) -> bool {
        self.xloadflags & xloadflags::KERNEL_64 != 0
    }
}

fn le(bytes: &[u8], at: usize, width: usize) -> u64 {
    // Callers check the length first.
    bytes[at..at + width].iter().rev().fold(0u64, |acc, &b| acc << 8 | u64::from(b))
}

/// Reads and checks the setup header of `file`.
pub fn parse_header(file: &[u8]) -> Result<SetupHeader, LinuxError> {
    if file.len() < offset::READ_END {
        return Err(LinuxError::TooShort { len: file.len() });
    }
    if le(file, offset::BOOT_FLAG, 2) != u64::from(BOOT_FLAG) {
        return Err(LinuxError::NoBootFlag);
    }
    if &file[offset::HEADER_MAGIC..offset::HEADER_MAGIC + 4] != HEADER_MAGIC {
        return Err(LinuxError::NoHeaderMagic);
    }
    let version = le(file, offset::VERSION, 2) as u16;
    if version < MIN_PROTOCOL {
        return Err(LinuxError::ProtocolTooOld { version });
    }
    let header_end = offset::HEADER_MAGIC + usize::from(file[offset::JUMP + 1]);
    if !(offset::READ_END..=offset::HEADER_LIMIT).contains(&header_end) {
        return Err(LinuxError::BadHeaderLength { end: header_end });
    }
    let header = SetupHeader {
        version,
        setup_sects: file[offset::SETUP_SECTS],
        syssize: le(file, offset::SYSSIZE, 4) as u32,
        loadflags: file[offset::LOADFLAGS],
        code32_start: le(file, offset::CODE32_START, 4) as u32,
        initrd_addr_max: le(file, offset::INITRD_ADDR_MAX, 4) as u32,
        kernel_alignment: le(file, offset::KERNEL_ALIGNMENT, 4) as u32,
        relocatable: file[offset::RELOCATABLE_KERNEL] != 0,
        min_alignment: file[offset::MIN_ALIGNMENT],
        xloadflags: le(file, offset::XLOADFLAGS, 2) as u16,
        cmdline_size: le(file, offset::CMDLINE_SIZE, 4) as u32,
        pref_address: le(file, offset::PREF_ADDRESS, 8),
        init_size: le(file, offset::INIT_SIZE, 4) as u32,
        header_end,
    };
    if header.loadflags & loadflags::LOADED_HIGH == 0 {
        return Err(LinuxError::NotBzImage);
    }
    let kernel_offset = header.kernel_offset();
    if kernel_offset >= file.len() {
        return Err(LinuxError::SetupBeyondFile { kernel_offset, len: file.len() });
    }
    let kernel_len = (file.len() - kernel_offset) as u64;
    let sys_bytes = u64::from(header.syssize) * 16;
    if header.syssize == 0 || sys_bytes > kernel_len {
        return Err(LinuxError::BadSyssize { syssize: header.syssize, available: kernel_len });
    }
    if header.relocatable
        && (!header.kernel_alignment.is_power_of_two() || u64::from(header.kernel_alignment) < PAGE_SIZE)
    {
        return Err(LinuxError::BadAlignment { alignment: header.kernel_alignment });
    }
    if u64::from(header.init_size) < kernel_len {
        return Err(LinuxError::InitSizeTooSmall { init_size: header.init_size, kernel_len });
    }
    Ok(header)
}
