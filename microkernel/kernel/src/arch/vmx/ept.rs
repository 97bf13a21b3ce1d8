//! Extended page tables: the partition's second-level translations.

use super::enable::ept_vpid_caps;
use crate::arch::memory::DirectMap;
use kerncore::ept::EptMapper;
use kerncore::slat::{GuestMapError, GuestRights, PhysAddrWidth};

/// A mapper over the EPT at `root`: the CPU's EPT format (execute-only
/// leaves where it has them) and MAXPHYADDR, 4 KiB leaves only so that any
/// page can be unmapped on its own.
fn ept<M: kerncore::paging::PageTableMemory>(mem: &mut M, root: u64) -> EptMapper<'_, M> {
    let width = PhysAddrWidth::new(crate::arch::cpu::physical_address_bits()).unwrap_or(PhysAddrWidth::MAX);
    EptMapper::for_cpu(mem, root, width, ept_vpid_caps().with_pde_2mb(false))
}

pub fn ept_new_root(mem: &mut DirectMap) -> Result<u64, GuestMapError> {
    EptMapper::new_root(mem)
}

pub fn ept_map<M: kerncore::paging::PageTableMemory>(
    mem: &mut M,
    root: u64,
    gpa: u64,
    hpa: u64,
    len: u64,
    rights: GuestRights,
) -> Result<(), GuestMapError> {
    ept(mem, root).map(gpa, hpa, len, rights)
}

/// Narrows the range's rights below what the map granted (see `SlatMapper::protect`).
pub fn ept_protect<M: kerncore::paging::PageTableMemory>(
    mem: &mut M,
    root: u64,
    gpa: u64,
    len: u64,
    allowed: GuestRights,
) -> Result<bool, GuestMapError> {
    ept(mem, root).protect(gpa, len, allowed)
}

/// Maps every leaf of the EPT at `from` into the one at `to`, with the rights the map granted.
pub fn ept_copy<M: kerncore::paging::PageTableMemory>(
    source: &mut DirectMap,
    from: u64,
    dest: &mut M,
    to: u64,
) -> Result<(), GuestMapError> {
    ept(source, from).copy_into(&mut ept(dest, to))
}

/// Takes every protection of the EPT at `root` away.
pub fn ept_lift_protections(mem: &mut DirectMap, root: u64) -> bool {
    ept(mem, root).lift_protections()
}

/// Removes mappings; the partition's next run flushes them with INVEPT.
pub fn ept_unmap(mem: &mut DirectMap, root: u64, gpa: u64, len: u64) -> Result<(), GuestMapError> {
    ept(mem, root).unmap(gpa, len, |_| {})
}

/// Withholds or gives back one page's write access; flushed like `ept_unmap`.
pub fn ept_hold_write(mem: &mut DirectMap, root: u64, gpa: u64, held: bool) -> Result<bool, GuestMapError> {
    ept(mem, root).hold_write(gpa, held)
}

/// Removes whatever leaves a range has (teardown); flushed like `ept_unmap`.
pub fn ept_unmap_present(mem: &mut DirectMap, root: u64, gpa: u64, len: u64) {
    ept(mem, root).unmap_present(gpa, len, |_| {});
}

/// Every table of the hierarchy, children first and the root last.
pub fn ept_tables(mem: &mut DirectMap, root: u64, f: &mut impl FnMut(u64)) {
    ept(mem, root).for_each_table(f);
}

/// Where `gpa` translates to, with its rights.
pub fn ept_translate(mem: &mut DirectMap, root: u64, gpa: u64) -> Option<kerncore::slat::GuestTranslation> {
    ept(mem, root).translate(gpa)
}
