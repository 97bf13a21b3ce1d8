//! Intel extended page tables: guest-physical to host-physical mappings.
//!
//! Formats from SDM Vol. 3C §29.3 ("The Extended Page Table Mechanism",
//! tables "Format of an EPT PML4 Entry" through "Format of an EPT
//! Page-Table Entry") and §25.6.11 ("Extended-Page-Table Pointer"). The
//! walking, validation and all-or-nothing rules are [`crate::slat`]'s; this
//! module supplies the entry format and the EPTP.
//!
//! Choices:
//! - Leaves are write-back with "ignore PAT" clear, so the guest's PAT still
//!   chooses the memory type within its own memory, as on bare metal.
//! - Writable without readable is refused (an EPT misconfiguration).
//!   Execute-only is allowed only when the CPU reports it
//!   ([`EptVpidCap::execute_only`]).
//! - Read, write and execute together are allowed (see [`crate::slat`]).
//! - Bit 2 grants execute to every mode unless mode-based execute control
//!   (MBEC) is on; no Bochs model has MBEC. Leaves set user-execute (bit 10)
//!   equal to execute so that turning MBEC on later keeps the meaning.
//! - Accessed and dirty flags are left clear; the CPU sets them only when
//!   the EPTP enables them.

use crate::paging::PageTableMemory;
use crate::slat::{GuestMapError, GuestRights, PhysAddrWidth, SlatConfig, SlatFormat, SlatMapper, software_bits};
use crate::virt::EptVpidCap;
use bitfield_struct::bitfield;

const PHYS_MASK: u64 = (1 << 52) - 1;

abi::open_enum! {
    /// EPT memory type (leaf bits 5:3, EPTP bits 2:0). Other values are
    /// reserved: in a leaf they are an EPT misconfiguration.
    pub struct EptMemoryType(u8) {
        UNCACHEABLE = 0,
        WRITE_COMBINING = 1,
        WRITE_THROUGH = 4,
        WRITE_PROTECTED = 5,
        WRITE_BACK = 6,
    }
}

impl EptMemoryType {
    pub const fn from_bits(bits: u8) -> Self {
        EptMemoryType(bits)
    }

    pub const fn into_bits(self) -> u8 {
        self.0
    }
}

/// An entry of any EPT level. Bits 3-6 and 9 mean something only in a leaf
/// (reserved in a PML4E and a table pointer); bit 7 is reserved in a PML4E
/// and ignored in a PTE; bits 57-61 and 63 are leaf-only features.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct EptEntry {
    pub read: bool,
    pub write: bool,
    /// Execute, or supervisor-mode execute when MBEC is enabled.
    pub execute: bool,
    #[bits(3)]
    pub memory_type: EptMemoryType,
    pub ignore_pat: bool,
    /// A 2 MiB (PDE) or 1 GiB (PDPTE) leaf.
    pub large_page: bool,
    pub accessed: bool,
    pub dirty: bool,
    /// User-mode execute, when MBEC is enabled; ignored otherwise.
    pub user_execute: bool,
    pub _ignored0: bool,
    /// Physical frame number (address bits 12..=51). Bits at or above the
    /// CPU's MAXPHYADDR are reserved.
    #[bits(40)]
    pub frame: u64,
    #[bits(5)]
    pub _ignored1: u8,
    pub verify_guest_paging: bool,
    pub paging_write_access: bool,
    pub _ignored2: bool,
    pub supervisor_shadow_stack: bool,
    pub sub_page_write_permissions: bool,
    pub _ignored3: bool,
    /// Suppress #VE (leaves only, with EPT-violation #VE enabled).
    pub suppress_ve: bool,
}

impl EptEntry {
    pub fn address(&self) -> u64 {
        self.frame() << 12
    }

    pub fn with_address(self, phys: u64) -> Self {
        self.with_frame((phys & PHYS_MASK) >> 12)
    }

    /// Bits 2:0 not all clear (MBEC, which also counts bit 10, is not used).
    pub fn is_present(&self) -> bool {
        self.read() || self.write() || self.execute()
    }
}

/// The EPT pointer, VMCS field [`crate::vmx::VmcsField::EPT_POINTER`].
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct Eptp {
    /// Memory type of the paging structures: uncacheable or write-back.
    #[bits(3)]
    pub memory_type: EptMemoryType,
    /// Walk length minus one: 3 for 4 levels.
    #[bits(3)]
    pub page_walk_length_minus_1: u8,
    pub accessed_dirty_enable: bool,
    pub supervisor_shadow_stack_enforcement: bool,
    #[bits(4)]
    pub _reserved0: u8,
    /// PML4 table frame number.
    #[bits(40)]
    pub frame: u64,
    #[bits(12)]
    pub _reserved1: u16,
}

impl Eptp {
    /// Write-back 4-level walk of the PML4 at `root`, with accessed/dirty
    /// flags if asked (the CPU must report [`EptVpidCap::accessed_dirty`]).
    pub fn write_back_4_level(root: u64, accessed_dirty: bool) -> Eptp {
        Eptp::new()
            .with_memory_type(EptMemoryType::WRITE_BACK)
            .with_page_walk_length_minus_1(3)
            .with_accessed_dirty_enable(accessed_dirty)
            .with_frame((root & PHYS_MASK) >> 12)
    }

    pub fn address(&self) -> u64 {
        self.frame() << 12
    }

    pub fn page_walk_levels(&self) -> u8 {
        self.page_walk_length_minus_1() + 1
    }
}

/// The EPT entry format for [`SlatMapper`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EptFormat {
    /// The CPU supports execute-only leaves.
    pub execute_only: bool,
}

impl EptFormat {
    pub fn from_caps(cap: EptVpidCap) -> Self {
        EptFormat { execute_only: cap.execute_only() }
    }
}

impl SlatFormat for EptFormat {
    type Entry = EptEntry;

    fn is_present(&self, entry: EptEntry) -> bool {
        entry.is_present()
    }

    fn is_large(&self, entry: EptEntry) -> bool {
        entry.large_page()
    }

    fn address(&self, entry: EptEntry) -> u64 {
        entry.address()
    }

    fn rights(&self, entry: EptEntry) -> GuestRights {
        GuestRights { read: entry.read(), write: entry.write(), execute: entry.execute() }
    }

    fn table_entry(&self, table: u64) -> EptEntry {
        EptEntry::new().with_read(true).with_write(true).with_execute(true).with_user_execute(true).with_address(table)
    }

    fn leaf_entry(&self, hpa: u64, rights: GuestRights, large: bool) -> EptEntry {
        EptEntry::new()
            .with_read(rights.read)
            .with_write(rights.write)
            .with_execute(rights.execute)
            .with_user_execute(rights.execute)
            .with_memory_type(EptMemoryType::WRITE_BACK)
            .with_large_page(large)
            .with_address(hpa)
    }

    /// No right at all is not present to the CPU.
    fn with_rights(&self, leaf: EptEntry, rights: GuestRights) -> EptEntry {
        leaf.with_read(rights.read)
            .with_write(rights.write)
            .with_execute(rights.execute)
            .with_user_execute(rights.execute)
    }

    fn check_rights(&self, rights: GuestRights) -> Result<(), GuestMapError> {
        if rights.is_none() {
            Err(GuestMapError::NoAccess)
        } else if rights.write && !rights.read {
            Err(GuestMapError::WriteWithoutRead)
        } else if rights.execute && !rights.read && !self.execute_only {
            Err(GuestMapError::ExecuteWithoutRead)
        } else {
            Ok(())
        }
    }
}

// The held and withheld bits lie in bits 52-56, which a leaf ignores.
const _: () = assert!(software_bits::<EptFormat>() & !(0x1f << 52) == 0);

/// Builds EPT hierarchies; see [`SlatMapper`] for map, unmap and translate.
pub type EptMapper<'m, M> = SlatMapper<'m, EptFormat, M>;

impl<'m, M: PageTableMemory> SlatMapper<'m, EptFormat, M> {
    /// A mapper for this CPU: execute-only and 2 MiB leaves as `cap` reports.
    pub fn for_cpu(mem: &'m mut M, root: u64, width: PhysAddrWidth, cap: EptVpidCap) -> Self {
        let config = SlatConfig { phys_addr_width: width, large_pages: cap.pde_2mb() };
        SlatMapper::new(mem, root, EptFormat::from_caps(cap), config)
    }

    /// The EPTP for this hierarchy.
    pub fn eptp(&self, accessed_dirty: bool) -> Eptp {
        Eptp::write_back_4_level(self.root(), accessed_dirty)
    }
}

#[cfg(test)]
mod tests;
