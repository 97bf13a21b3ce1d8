//! User address spaces: one top-level table per task whose upper half is
//! the kernel's (shared, never changed at that level) and whose lower half
//! holds the task's own 4 KiB mappings.

use super::memory::{DirectMap, kernel_root};
use kerncore::paging::{Budgeted, Caching, MapError, MapFlags, Mapper, PAGE_SIZE, PageTableMemory};

const KERNEL_HALF: core::ops::Range<usize> = 256..512;

/// Rights of a user mapping. W^X is enforced by the mapper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserRights {
    pub writable: bool,
    pub executable: bool,
}

#[derive(Debug)]
pub struct AddressSpace {
    root: u64,
}

impl AddressSpace {
    /// A new space sharing the kernel half of the boot page tables.
    pub fn new() -> Result<AddressSpace, MapError> {
        let mut mem = DirectMap;
        let root = Mapper::new_root(&mut mem)?;
        let kernel = kernel_root();
        for slot in KERNEL_HALF {
            let entry = mem.read_entry(kernel, slot);
            mem.write_entry(root, slot, entry);
        }
        Ok(AddressSpace { root })
    }

    /// Maps `[virt, virt+len)` to `[phys, ...)` for ring 3, adding at most
    /// `tables` page tables; returns the outcome and the tables it added
    /// (a refused map adds no translation, but may leave empty tables).
    pub fn map(
        &mut self,
        virt: u64,
        phys: u64,
        len: u64,
        rights: UserRights,
        tables: u64,
    ) -> (Result<(), MapError>, u64) {
        if virt < abi::USER_MIN || virt.checked_add(len).is_none_or(|end| end > abi::USER_END) {
            return (Err(MapError::NonCanonical), 0);
        }
        let flags = MapFlags {
            writable: rights.writable,
            executable: rights.executable,
            user: true,
            global: false,
            caching: Caching::WriteBack,
        };
        let mut direct = DirectMap;
        let mut mem = Budgeted::new(&mut direct, tables);
        let mut mapper = Mapper::new(&mut mem, self.root);
        mapper.large_pages = false;
        let outcome = mapper.map(virt, phys, len, flags);
        (outcome, mem.used)
    }

    /// The physical address behind a user page mapped writable, if any.
    pub fn translate_writable(&self, virt: u64) -> Option<u64> {
        let t = kerncore::paging::translate(&DirectMap, self.root, virt)?;
        (t.user && t.writable && virt < abi::USER_END).then_some(t.phys)
    }

    /// Unmaps `[virt, virt+len)` and flushes what this CPU may have cached.
    pub fn unmap(&mut self, virt: u64, len: u64) -> Result<(), MapError> {
        if virt < abi::USER_MIN || virt.checked_add(len).is_none_or(|end| end > abi::USER_END) {
            return Err(MapError::NonCanonical);
        }
        let active = self.is_active();
        let mut mem = DirectMap;
        let mut mapper = Mapper::new(&mut mem, self.root);
        let unmapped = mapper.unmap(virt, len, |page, _| {
            if active {
                // SAFETY: invalidating a TLB entry has no other effect.
                unsafe { x86::tlb::flush(page as usize) };
            }
        });
        // An inactive space has no TLB entries on a CPU: without PCIDs a
        // CR3 load flushes all non-global entries, and user pages are never
        // global. Other CPUs that have it loaded flush before this returns.
        super::ipi::shoot_down_space(self.root);
        unmapped
    }

    /// Unmaps whatever pages `[virt, virt+len)` has (teardown: it cannot fail).
    pub fn unmap_present(&mut self, virt: u64, len: u64) {
        let active = self.is_active();
        let end = virt.saturating_add(len).min(abi::USER_END);
        let mut mem = DirectMap;
        let mut mapper = Mapper::new(&mut mem, self.root);
        mapper.unmap_present(virt.max(abi::USER_MIN), end.saturating_sub(virt.max(abi::USER_MIN)), |page, _| {
            if active {
                // SAFETY: invalidating a TLB entry has no other effect.
                unsafe { x86::tlb::flush(page as usize) };
            }
        });
        super::ipi::shoot_down_space(self.root);
    }

    fn is_active(&self) -> bool {
        super::cpu::cr3() & !(PAGE_SIZE - 1) == self.root
    }

    /// Frees the space's page tables. The caller has switched away from it.
    pub fn destroy(self) {
        if self.is_active() {
            // SAFETY: the kernel half is identical in every space; leaving
            // for the boot tables changes nothing the kernel uses.
            unsafe { x86::controlregs::cr3_write(kernel_root()) };
            super::ipi::loaded_space(kernel_root());
        }
        // No CPU may hold (or walk) tables that are freed.
        super::ipi::leave_space_everywhere(self.root);
        super::memory::free_user_tables(self.root);
    }

    /// Makes this the current address space (no-op if it already is).
    pub fn activate(&self) {
        if !self.is_active() {
            // SAFETY: `root` is a complete top-level table whose kernel half
            // is the kernel's own, so the kernel keeps running unchanged.
            unsafe { x86::controlregs::cr3_write(self.root) };
            super::ipi::loaded_space(self.root);
        }
    }
}
