//! AMD nested page tables: guest-physical to host-physical mappings.
//!
//! Nested tables use the long-mode format ([`PageTableEntry`]), walked as
//! user accesses (APM Vol. 2 §15.25, "Nested Paging"), so every level
//! carries the U bit: an entry without it faults (PLATFORM.md saw this
//! under QEMU too). Reads are implied by presence; writes need RW at every
//! level; execute is withheld with NX, which is reserved unless the host
//! runs with EFER.NXE (Tessera's kernel refuses to boot without NX, so it
//! always does).
//!
//! Mappings are built by [`crate::slat`]'s walker rather than
//! [`crate::paging::Mapper`], which is made for the hypervisor's own space:
//! it refuses W+X (guest RAM needs it), checks virtual canonicality
//! (guest-physical addresses are not virtual), unmaps only 4 KiB leaves and
//! has no all-or-nothing rule for running out of memory. Sharing the walker
//! with EPT gives both backends the same rules.

use crate::paging::{PageTableEntry, PageTableMemory};
use crate::slat::{GuestMapError, GuestRights, SlatFormat, SlatMapper, software_bits};

/// The nested-paging entry format for [`SlatMapper`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NptFormat;

impl SlatFormat for NptFormat {
    type Entry = PageTableEntry;

    // The held bit is the first of the software-available high bits.
    const WRITE_HELD_BIT: u64 = PageTableEntry::new().with_available_high(1).into_bits();
    // Then a protection's: read, write, execute (bits 53, 54, 55).
    const READ_WITHHELD_BIT: u64 = PageTableEntry::new().with_available_high(2).into_bits();
    const WRITE_WITHHELD_BIT: u64 = PageTableEntry::new().with_available_high(4).into_bits();
    const EXECUTE_WITHHELD_BIT: u64 = PageTableEntry::new().with_available_high(8).into_bits();

    fn is_present(&self, entry: PageTableEntry) -> bool {
        entry.present()
    }

    fn is_large(&self, entry: PageTableEntry) -> bool {
        entry.page_size()
    }

    fn address(&self, entry: PageTableEntry) -> u64 {
        entry.address()
    }

    /// Nothing without U, since the nested walk is a user access.
    fn rights(&self, entry: PageTableEntry) -> GuestRights {
        if !entry.present() || !entry.user() {
            return GuestRights::NONE;
        }
        GuestRights { read: true, write: entry.writable(), execute: !entry.no_execute() }
    }

    fn table_entry(&self, table: u64) -> PageTableEntry {
        PageTableEntry::new().with_present(true).with_writable(true).with_user(true).with_address(table)
    }

    /// PWT, PCD and PAT clear: write-back under the host's PAT.
    fn leaf_entry(&self, hpa: u64, rights: GuestRights, large: bool) -> PageTableEntry {
        PageTableEntry::new()
            .with_present(true)
            .with_user(true)
            .with_writable(rights.write)
            .with_no_execute(!rights.execute)
            .with_page_size(large)
            .with_address(hpa)
    }

    /// Read is presence, so no read is no access at all.
    fn with_rights(&self, leaf: PageTableEntry, rights: GuestRights) -> PageTableEntry {
        leaf.with_present(rights.read).with_writable(rights.write).with_no_execute(!rights.execute)
    }

    fn check_rights(&self, rights: GuestRights) -> Result<(), GuestMapError> {
        match rights {
            GuestRights { read: true, .. } => Ok(()),
            GuestRights { write: true, .. } => Err(GuestMapError::WriteWithoutRead),
            GuestRights { execute: true, .. } => Err(GuestMapError::ExecuteWithoutRead),
            _ => Err(GuestMapError::NoAccess),
        }
    }
}

// The held and withheld bits lie in bits 52-58, left to software.
const _: () = assert!(software_bits::<NptFormat>() & !(0x7f << 52) == 0);

/// Builds nested page tables; see [`SlatMapper`] for map, unmap and translate.
pub type NptMapper<'m, M> = SlatMapper<'m, NptFormat, M>;

impl<M: PageTableMemory> SlatMapper<'_, NptFormat, M> {
    /// The VMCB's N_CR3: the root's address with PWT and PCD clear, so the
    /// walk itself is write-back.
    pub fn ncr3(&self) -> u64 {
        PageTableEntry::new().with_address(self.root()).address()
    }
}

#[cfg(test)]
mod tests;
