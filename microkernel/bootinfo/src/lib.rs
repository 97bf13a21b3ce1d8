//! The one typed structure the loader hands to the microkernel.
//!
//! Both sides are built from this crate by the same compiler, and the
//! structure is `repr(C)` with fixed-capacity arrays, so nothing here
//! depends on allocation or on layout guesses. The kernel still checks
//! `magic` and `version` before it trusts anything else.

#![no_std]
#![forbid(unsafe_code)]

/// "TESSBOOT" in little-endian ASCII.
pub const BOOT_INFO_MAGIC: u64 = u64::from_le_bytes(*b"TESSBOOT");
/// Bumped whenever the layout of [`BootInfo`] changes.
pub const BOOT_INFO_VERSION: u32 = 1;

pub const MAX_MEMORY_REGIONS: usize = 128;
pub const MAX_MODULES: usize = 16;
pub const MAX_CMDLINE: usize = 512;
pub const MAX_MODULE_NAME: usize = 64;

/// Start of the kernel's direct map of physical memory (PML4 slot 256).
pub const DIRECT_MAP_BASE: u64 = 0xffff_8000_0000_0000;
/// Where the kernel's boot stack ends (grows down); a guard page lies below it.
pub const KERNEL_STACK_TOP: u64 = 0xffff_ff80_0000_0000;
/// Size of the boot stack the loader maps for the kernel.
pub const KERNEL_STACK_SIZE: u64 = 64 * 1024;
/// Start of the kernel's window for device (uncached) mappings.
pub const MMIO_WINDOW_BASE: u64 = 0xffff_ff00_0000_0000;
/// Size of that window.
pub const MMIO_WINDOW_SIZE: u64 = 1 << 30;

/// What a physical range holds. Loader-produced; the kernel only frees `Usable`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MemoryKind {
    /// Free RAM the kernel may allocate.
    Usable = 1,
    /// Firmware-reserved or otherwise unusable.
    Reserved = 2,
    /// ACPI tables; reclaimable once parsed.
    AcpiReclaimable = 3,
    /// ACPI non-volatile storage.
    AcpiNvs = 4,
    /// Memory reported as defective.
    Defective = 5,
    /// The kernel image, its boot stack, page tables and this structure.
    Kernel = 6,
    /// A boot module (other than the kernel image).
    Module = 7,
    /// The loader itself; reclaimable once the kernel runs.
    Loader = 8,
}

impl MemoryKind {
    pub const fn name(self) -> &'static str {
        match self {
            MemoryKind::Usable => "usable",
            MemoryKind::Reserved => "reserved",
            MemoryKind::AcpiReclaimable => "acpi-reclaimable",
            MemoryKind::AcpiNvs => "acpi-nvs",
            MemoryKind::Defective => "defective",
            MemoryKind::Kernel => "kernel",
            MemoryKind::Module => "module",
            MemoryKind::Loader => "loader",
        }
    }
}

/// A half-open physical range `[start, end)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    pub start: u64,
    pub end: u64,
    pub kind: MemoryKind,
    pub _reserved: u32,
}

impl MemoryRegion {
    pub const EMPTY: MemoryRegion = MemoryRegion { start: 0, end: 0, kind: MemoryKind::Reserved, _reserved: 0 };

    pub const fn new(start: u64, end: u64, kind: MemoryKind) -> Self {
        MemoryRegion { start, end, kind, _reserved: 0 }
    }

    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// A boot module: a physical range plus the name it was given.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Module {
    pub start: u64,
    pub end: u64,
    pub name: FixedStr<MAX_MODULE_NAME>,
}

impl Module {
    pub const EMPTY: Module = Module { start: 0, end: 0, name: FixedStr::EMPTY };
}

/// A bounded, NUL-free UTF-8 string stored inline.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedStr<const N: usize> {
    len: u32,
    bytes: [u8; N],
}

impl<const N: usize> FixedStr<N> {
    pub const EMPTY: Self = FixedStr { len: 0, bytes: [0; N] };

    /// Copies `s`, cutting it at a character boundary if it does not fit.
    pub fn new(s: &str) -> Self {
        let mut cut = s.len().min(N);
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut bytes = [0; N];
        bytes[..cut].copy_from_slice(&s.as_bytes()[..cut]);
        FixedStr { len: cut as u32, bytes }
    }

    /// The stored text. A corrupted length or invalid UTF-8 yields "".
    pub fn as_str(&self) -> &str {
        let len = (self.len as usize).min(N);
        core::str::from_utf8(&self.bytes[..len]).unwrap_or("")
    }
}

/// Everything the microkernel learns from the loader.
#[repr(C)]
#[derive(Clone, Debug)]
pub struct BootInfo {
    pub magic: u64,
    pub version: u32,
    /// Which boot protocol started the loader (1 or 2 for Multiboot v1/v2).
    pub boot_protocol: u32,
    /// Physical address of the ACPI RSDP, or 0 if none was found.
    pub rsdp: u64,
    /// Base of the direct map of physical memory (see [`DIRECT_MAP_BASE`]).
    pub direct_map_base: u64,
    /// Exclusive end of the physical range covered by the direct map.
    pub direct_map_end: u64,
    /// Physical address of the top-level page table the kernel runs on.
    pub kernel_page_table: u64,
    /// Physical range of the kernel image as loaded.
    pub kernel_image: MemoryRegion,
    pub memory_map_len: u32,
    pub module_count: u32,
    pub memory_map: [MemoryRegion; MAX_MEMORY_REGIONS],
    pub modules: [Module; MAX_MODULES],
    pub cmdline: FixedStr<MAX_CMDLINE>,
    pub bootloader_name: FixedStr<MAX_MODULE_NAME>,
}

impl BootInfo {
    pub const fn empty() -> Self {
        BootInfo {
            magic: BOOT_INFO_MAGIC,
            version: BOOT_INFO_VERSION,
            boot_protocol: 0,
            rsdp: 0,
            direct_map_base: DIRECT_MAP_BASE,
            direct_map_end: 0,
            kernel_page_table: 0,
            kernel_image: MemoryRegion::EMPTY,
            memory_map_len: 0,
            module_count: 0,
            memory_map: [MemoryRegion::EMPTY; MAX_MEMORY_REGIONS],
            modules: [Module::EMPTY; MAX_MODULES],
            cmdline: FixedStr::EMPTY,
            bootloader_name: FixedStr::EMPTY,
        }
    }

    /// True if the header matches what this build of the kernel expects.
    pub fn is_valid(&self) -> bool {
        self.magic == BOOT_INFO_MAGIC && self.version == BOOT_INFO_VERSION
    }

    pub fn memory_map(&self) -> &[MemoryRegion] {
        &self.memory_map[..(self.memory_map_len as usize).min(MAX_MEMORY_REGIONS)]
    }

    pub fn modules(&self) -> &[Module] {
        &self.modules[..(self.module_count as usize).min(MAX_MODULES)]
    }

    /// Appends a region; false if the table is full.
    pub fn push_region(&mut self, region: MemoryRegion) -> bool {
        let len = self.memory_map_len as usize;
        if len >= MAX_MEMORY_REGIONS {
            return false;
        }
        self.memory_map[len] = region;
        self.memory_map_len += 1;
        true
    }

    /// Appends a module; false if the table is full.
    pub fn push_module(&mut self, module: Module) -> bool {
        let len = self.module_count as usize;
        if len >= MAX_MODULES {
            return false;
        }
        self.modules[len] = module;
        self.module_count += 1;
        true
    }

    /// Bytes of RAM of the given kind.
    pub fn total(&self, kind: MemoryKind) -> u64 {
        self.memory_map().iter().filter(|r| r.kind == kind).map(MemoryRegion::len).sum()
    }
}

// The structure crosses a privilege-free but compiler-version boundary only
// inside one build; pin its size so accidental growth is noticed.
const _: () = assert!(core::mem::size_of::<BootInfo>() < 16 * 1024);
const _: () = assert!(core::mem::size_of::<MemoryRegion>() == 24);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_str_cuts_at_char_boundary() {
        let s: FixedStr<4> = FixedStr::new("abcé");
        assert_eq!(s.as_str(), "abc");
        let t: FixedStr<8> = FixedStr::new("abcé");
        assert_eq!(t.as_str(), "abcé");
    }

    #[test]
    fn tables_refuse_overflow() {
        let mut info = BootInfo::empty();
        for i in 0..MAX_MODULES {
            assert!(info.push_module(Module { start: i as u64, end: i as u64 + 1, name: FixedStr::new("m") }));
        }
        assert!(!info.push_module(Module::EMPTY));
        assert_eq!(info.modules().len(), MAX_MODULES);
    }

    #[test]
    fn corrupted_counts_are_clamped() {
        let mut info = BootInfo::empty();
        info.memory_map_len = u32::MAX;
        assert_eq!(info.memory_map().len(), MAX_MEMORY_REGIONS);
        info.magic = 0;
        assert!(!info.is_valid());
    }
}
