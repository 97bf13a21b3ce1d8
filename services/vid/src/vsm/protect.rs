//! VTL 1's protections of VTL 0's pages (TLFS 15.9) as the VID keeps them,
//! to refuse VTL 0 what ring 0 refuses it: every access the VID makes to
//! guest memory on VTL 0's behalf (emulated accesses, string I/O,
//! hypercall parameters, overlay pages) is checked here (ARCHITECTURE
//! §6.5).
//!
//! Bounded: one default mask for every page (RWX until VTL 1 enables
//! protections, then its DefaultVtlProtectionMask, 15.5.1.2) and a sorted
//! table of the pages set apart from it, at most
//! [`MAX_VTL_PROTECTED_PAGES`]; a page set back to the default leaves the
//! table.

use abi::limits::MAX_VTL_PROTECTED_PAGES;
use tlfs::{HvError, HvMapGpaFlags, HvResult};

const PAGE_SHIFT: u32 = 12;
/// An entry is `gpn << MASK_BITS | mask`.
const MASK_BITS: u32 = 4;
const MASK: u64 = (1 << MASK_BITS) - 1;

/// What an access needs of a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Read,
    Write,
    Execute,
}

impl Need {
    /// True if `mask` allows it. Without MBEC, KMX governs every execute
    /// (15.10).
    pub const fn allowed_by(self, mask: HvMapGpaFlags) -> bool {
        match self {
            Need::Read => mask.readable(),
            Need::Write => mask.writable(),
            Need::Execute => mask.kernel_executable(),
        }
    }
}

/// VTL 0's protections of one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protections {
    default: HvMapGpaFlags,
    pages: heapless::Vec<u64, MAX_VTL_PROTECTED_PAGES>,
}

impl Default for Protections {
    fn default() -> Self {
        Self::new()
    }
}

impl Protections {
    /// No protection: every page RWX.
    pub const fn new() -> Protections {
        Protections { default: HvMapGpaFlags::from_bits(HvMapGpaFlags::DEFINED_BITS), pages: heapless::Vec::new() }
    }

    /// Back to no protection (a reset, 15.3.4).
    pub fn reset(&mut self) {
        *self = Protections::new();
    }

    /// True if VTL 0 may be refused something (a quick test first).
    pub fn any(&self) -> bool {
        !self.pages.is_empty() || self.default.into_bits() & 0x7 != 0x7
    }

    /// The default mask (15.5.1.2); pages set to it leave the table.
    pub fn set_default(&mut self, mask: HvMapGpaFlags) {
        self.default = mask;
        let default = u64::from(mask.into_bits()) & MASK;
        self.pages.retain(|e| *e & MASK != default);
    }

    fn find(&self, gpn: u64) -> Result<usize, usize> {
        self.pages.binary_search_by_key(&gpn, |e| e >> MASK_BITS)
    }

    /// Page `gpn`'s protection.
    pub fn get(&self, gpn: u64) -> HvMapGpaFlags {
        match self.find(gpn) {
            Ok(i) => HvMapGpaFlags::from_bits((self.pages[i] & MASK) as u32),
            Err(_) => self.default,
        }
    }

    /// True if [`set`](Self::set) of `gpn` to `mask` would succeed: the
    /// table has room, or needs none.
    pub fn fits(&self, gpn: u64, mask: HvMapGpaFlags) -> bool {
        gpn >> (u64::BITS - MASK_BITS) == 0 && (self.find(gpn).is_ok() || mask == self.default || !self.pages.is_full())
    }

    /// Sets page `gpn` to `mask`; `INSUFFICIENT_MEMORY` (nothing changed)
    /// if the table is full.
    pub fn set(&mut self, gpn: u64, mask: HvMapGpaFlags) -> HvResult<()> {
        if !self.fits(gpn, mask) {
            return Err(HvError::INSUFFICIENT_MEMORY);
        }
        let entry = gpn << MASK_BITS | u64::from(mask.into_bits()) & MASK;
        match (self.find(gpn), mask == self.default) {
            (Ok(i), true) => {
                self.pages.remove(i);
            }
            (Ok(i), false) => self.pages[i] = entry,
            (Err(_), true) => {}
            (Err(i), false) => self.pages.insert(i, entry).map_err(|_| HvError::INSUFFICIENT_MEMORY)?,
        }
        Ok(())
    }

    /// True if VTL 0 may do `need` on every page of `gpa..gpa + len`.
    pub fn allows(&self, gpa: u64, len: usize, need: Need) -> bool {
        if !self.any() {
            return true;
        }
        let first = gpa >> PAGE_SHIFT;
        let last = gpa.saturating_add((len as u64).max(1) - 1) >> PAGE_SHIFT;
        (first..=last).all(|gpn| need.allowed_by(self.get(gpn)))
    }

    /// The pages set apart from the default, at most
    /// [`MAX_VTL_PROTECTED_PAGES`].
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }
}

/// Ring 0's rights (`PARTITION_PROTECT`) for a TLFS mask; write or
/// execute without read is `INVALID_PARAMETER` (15.9.3). Without MBEC
/// KMX governs execute and UMX is ignored (15.10).
pub fn rights(mask: HvMapGpaFlags) -> HvResult<abi::Rights> {
    if !super::is_protection_type(mask) {
        return Err(HvError::INVALID_PARAMETER);
    }
    Ok(abi::Rights::NONE.with_read(mask.readable()).with_write(mask.writable()).with_execute(mask.kernel_executable()))
}

#[cfg(test)]
mod tests;
