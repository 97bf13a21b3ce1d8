//! x86-64 4-level page tables, built and audited over abstract memory.
//!
//! The same format serves the kernel's own tables and, later, AMD nested
//! page tables. The builder enforces W^X: a mapping is never both writable
//! and executable, and [`audit`] checks a whole hierarchy for it.

use bitfield_struct::bitfield;

pub use x86defs::PAGE_SIZE;
pub const LARGE_PAGE_SIZE: u64 = 2 << 20;
pub const HUGE_PAGE_SIZE: u64 = 1 << 30;
const ENTRIES: usize = 512;
const PHYS_MASK: u64 = (1 << 52) - 1;

/// One entry of any level. Bit 7 is PS in PDPT/PD entries and PAT in a PTE.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct PageTableEntry {
    pub present: bool,
    pub writable: bool,
    pub user: bool,
    pub write_through: bool,
    pub cache_disable: bool,
    pub accessed: bool,
    pub dirty: bool,
    pub page_size: bool,
    pub global: bool,
    #[bits(3)]
    pub available: u8,
    /// Physical frame number (address bits 12..=51). For 2 MiB and 1 GiB
    /// leaves, bit 12 of the address is PAT and is always left clear here.
    #[bits(40)]
    pub frame: u64,
    /// Bits 52..=62: software-available, or protection keys if enabled.
    #[bits(11)]
    pub available_high: u16,
    pub no_execute: bool,
}

impl PageTableEntry {
    pub fn address(&self) -> u64 {
        self.frame() << 12
    }

    pub fn with_address(self, phys: u64) -> Self {
        self.with_frame((phys & PHYS_MASK) >> 12)
    }
}

/// Storage for page tables: frames addressed by physical address.
pub trait PageTableMemory {
    /// A zeroed 4 KiB frame for a new table, or `None` when out of memory.
    fn alloc_table(&mut self) -> Option<u64>;
    fn read_entry(&self, table: u64, index: usize) -> u64;
    fn write_entry(&mut self, table: u64, index: usize, value: u64);
}

/// Page-table memory that hands out at most `left` new tables and counts
/// them in `used`, so each table can be charged to whoever asked for it.
pub struct Budgeted<'m, M: PageTableMemory> {
    pub mem: &'m mut M,
    pub left: u64,
    pub used: u64,
}

impl<'m, M: PageTableMemory> Budgeted<'m, M> {
    pub fn new(mem: &'m mut M, left: u64) -> Self {
        Budgeted { mem, left, used: 0 }
    }
}

impl<M: PageTableMemory> PageTableMemory for Budgeted<'_, M> {
    fn alloc_table(&mut self) -> Option<u64> {
        if self.left == 0 {
            return None;
        }
        let table = self.mem.alloc_table()?;
        self.left -= 1;
        self.used += 1;
        Some(table)
    }

    fn read_entry(&self, table: u64, index: usize) -> u64 {
        self.mem.read_entry(table, index)
    }

    fn write_entry(&mut self, table: u64, index: usize, value: u64) {
        self.mem.write_entry(table, index, value);
    }
}

/// Memory type of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caching {
    WriteBack,
    /// PCD|PWT: strong uncached, for device registers.
    Uncached,
}

/// Rights of a mapping as requested by its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapFlags {
    pub writable: bool,
    pub executable: bool,
    pub user: bool,
    pub global: bool,
    pub caching: Caching,
}

impl MapFlags {
    pub const KERNEL_TEXT: MapFlags = MapFlags::kernel(false, true);
    pub const KERNEL_RODATA: MapFlags = MapFlags::kernel(false, false);
    pub const KERNEL_DATA: MapFlags = MapFlags::kernel(true, false);
    pub const KERNEL_MMIO: MapFlags =
        MapFlags { writable: true, executable: false, user: false, global: true, caching: Caching::Uncached };

    pub const fn kernel(writable: bool, executable: bool) -> MapFlags {
        MapFlags { writable, executable, user: false, global: true, caching: Caching::WriteBack }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Address or length not 4 KiB aligned, or the length is zero.
    Misaligned,
    /// The virtual range is not canonical or wraps.
    NonCanonical,
    /// The physical address is beyond 52 bits.
    PhysicalTooLarge,
    /// Part of the range is mapped already.
    AlreadyMapped {
        virt: u64,
    },
    /// Part of the range is not mapped (by a 4 KiB page) and cannot be unmapped.
    NotMapped {
        virt: u64,
    },
    /// Writable and executable at once.
    WritableAndExecutable,
    OutOfMemory,
}

/// Canonical for 48-bit virtual addresses.
pub fn is_canonical(virt: u64) -> bool {
    let top = virt >> 47;
    top == 0 || top == (1 << 17) - 1
}

fn index(virt: u64, level: u32) -> usize {
    ((virt >> (12 + 9 * level)) & 0x1ff) as usize
}

fn level_size(level: u32) -> u64 {
    PAGE_SIZE << (9 * level)
}

/// Builds mappings into the hierarchy rooted at `root`.
pub struct Mapper<'m, M: PageTableMemory> {
    mem: &'m mut M,
    root: u64,
    /// Allow 2 MiB / 1 GiB leaves where alignment permits.
    pub large_pages: bool,
}

impl<'m, M: PageTableMemory> Mapper<'m, M> {
    pub fn new(mem: &'m mut M, root: u64) -> Self {
        Mapper { mem, root, large_pages: true }
    }

    /// Allocates an empty root table.
    pub fn new_root(mem: &mut M) -> Result<u64, MapError> {
        mem.alloc_table().ok_or(MapError::OutOfMemory)
    }

    pub fn root(&self) -> u64 {
        self.root
    }

    /// Maps `[virt, virt+len)` to `[phys, phys+len)`.
    pub fn map(&mut self, virt: u64, phys: u64, len: u64, flags: MapFlags) -> Result<(), MapError> {
        if flags.writable && flags.executable {
            return Err(MapError::WritableAndExecutable);
        }
        if len == 0 || !(virt | phys | len).is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Misaligned);
        }
        let last = virt.checked_add(len - 1).ok_or(MapError::NonCanonical)?;
        if !is_canonical(virt) || !is_canonical(last) || (virt >> 63) != (last >> 63) {
            return Err(MapError::NonCanonical);
        }
        let phys_last = phys.checked_add(len - 1).ok_or(MapError::PhysicalTooLarge)?;
        if phys_last > PHYS_MASK {
            return Err(MapError::PhysicalTooLarge);
        }
        // Check the whole range first so a failure leaves nothing half-mapped.
        let mut v = virt;
        while v <= last {
            let span = self.hole_at(v).ok_or(MapError::AlreadyMapped { virt: v })?;
            match (v & !(span - 1)).checked_add(span) {
                Some(next) => v = next,
                None => break,
            }
        }
        // Tables first: only this step allocates, and it adds no
        // translation, so running out of memory leaves nothing half-mapped
        // (only empty tables, freed with the hierarchy).
        let mut offset = 0;
        while offset < len {
            let (v, p, left) = (virt + offset, phys + offset, len - offset);
            let level = self.leaf_level(v, p, left);
            self.table_for(v, level, flags)?;
            offset += level_size(level);
        }
        // The same plan again: every table exists now, so nothing can fail.
        let mut offset = 0;
        while offset < len {
            let (v, p, left) = (virt + offset, phys + offset, len - offset);
            let level = self.leaf_level(v, p, left);
            self.map_one(v, p, level, flags)?;
            offset += level_size(level);
        }
        Ok(())
    }

    /// The table at `leaf_level` on the walk to `virt`, allocating missing ones.
    fn table_for(&mut self, virt: u64, leaf_level: u32, flags: MapFlags) -> Result<u64, MapError> {
        let mut table = self.root;
        for level in (leaf_level + 1..=3).rev() {
            let i = index(virt, level);
            let mut entry = PageTableEntry::from(self.mem.read_entry(table, i));
            if !entry.present() {
                let next = self.mem.alloc_table().ok_or(MapError::OutOfMemory)?;
                entry = PageTableEntry::new().with_present(true).with_writable(true).with_address(next);
            } else if entry.page_size() {
                return Err(MapError::AlreadyMapped { virt });
            }
            // Intermediate levels are permissive; the leaf decides.
            entry = entry.with_user(entry.user() || flags.user);
            self.mem.write_entry(table, i, entry.into());
            table = entry.address();
        }
        Ok(table)
    }

    /// The largest leaf that fits the alignment, the length left, and the
    /// tables already there: a large leaf cannot go where a (possibly
    /// empty) table of smaller pages exists.
    fn leaf_level(&self, virt: u64, phys: u64, left: u64) -> u32 {
        if self.large_pages {
            let hole = self.hole_at(virt).unwrap_or(0);
            for level in [2, 1] {
                let size = level_size(level);
                if (virt | phys).is_multiple_of(size) && left >= size && hole >= size {
                    return level;
                }
            }
        }
        0
    }

    fn map_one(&mut self, virt: u64, phys: u64, leaf_level: u32, flags: MapFlags) -> Result<(), MapError> {
        let table = self.table_for(virt, leaf_level, flags)?;
        let i = index(virt, leaf_level);
        if PageTableEntry::from(self.mem.read_entry(table, i)).present() {
            return Err(MapError::AlreadyMapped { virt });
        }
        let uncached = flags.caching == Caching::Uncached;
        let leaf = PageTableEntry::new()
            .with_present(true)
            .with_writable(flags.writable)
            .with_user(flags.user)
            .with_global(flags.global && !flags.user)
            .with_write_through(uncached)
            .with_cache_disable(uncached)
            .with_page_size(leaf_level > 0)
            .with_no_execute(!flags.executable)
            .with_address(phys);
        self.mem.write_entry(table, i, leaf.into());
        Ok(())
    }

    /// Removes the 4 KiB leaves of `[virt, virt+len)`. Every page must be
    /// mapped by a 4 KiB leaf, else nothing is removed. Returns the physical
    /// address each removed page had, through `removed`, so the caller can
    /// flush the TLB for it.
    pub fn unmap(&mut self, virt: u64, len: u64, mut removed: impl FnMut(u64, u64)) -> Result<(), MapError> {
        if len == 0 || !(virt | len).is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Misaligned);
        }
        let last = virt.checked_add(len - 1).ok_or(MapError::NonCanonical)?;
        if !is_canonical(virt) || !is_canonical(last) {
            return Err(MapError::NonCanonical);
        }
        let mut v = virt;
        while v <= last {
            match self.translate(v) {
                Some(t) if t.page_size == PAGE_SIZE => {}
                _ => return Err(MapError::NotMapped { virt: v }),
            }
            v += PAGE_SIZE;
        }
        let mut v = virt;
        while v <= last {
            removed(v, self.clear_leaf(v));
            v += PAGE_SIZE;
        }
        Ok(())
    }

    /// Clears the 4 KiB leaf that maps `virt`; returns the address it had.
    fn clear_leaf(&mut self, virt: u64) -> u64 {
        let table = self.leaf_table(virt);
        let i = index(virt, 0);
        let entry = PageTableEntry::from(self.mem.read_entry(table, i));
        self.mem.write_entry(table, i, 0);
        entry.address()
    }

    /// Removes whatever 4 KiB leaves `[virt, virt+len)` has, skipping holes,
    /// and reports each through `removed`: teardown, which cannot fail.
    /// Large leaves (never in user spaces) are left alone.
    pub fn unmap_present(&mut self, virt: u64, len: u64, mut removed: impl FnMut(u64, u64)) {
        let mut v = virt & !(PAGE_SIZE - 1);
        let end = virt.saturating_add(len);
        while v < end {
            if self.translate(v).is_some_and(|t| t.page_size == PAGE_SIZE) {
                removed(v, self.clear_leaf(v));
            }
            v += PAGE_SIZE;
        }
    }

    /// The level-0 table that maps `virt` (which must be mapped by a 4 KiB leaf).
    fn leaf_table(&self, virt: u64) -> u64 {
        let mut table = self.root;
        for level in (1..=3).rev() {
            table = PageTableEntry::from(self.mem.read_entry(table, index(virt, level))).address();
        }
        table
    }

    /// If `virt` is unmapped, the size of the aligned unmapped span around it.
    fn hole_at(&self, virt: u64) -> Option<u64> {
        let mut table = self.root;
        for level in (0..=3).rev() {
            let entry = PageTableEntry::from(self.mem.read_entry(table, index(virt, level)));
            if !entry.present() {
                return Some(level_size(level));
            }
            if level == 0 || (entry.page_size() && level <= 2) {
                return None;
            }
            table = entry.address();
        }
        None
    }

    /// The physical address and effective rights `virt` translates to.
    pub fn translate(&self, virt: u64) -> Option<Translation> {
        translate(self.mem, self.root, virt)
    }
}

/// Effective result of a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    pub phys: u64,
    pub writable: bool,
    pub executable: bool,
    pub user: bool,
    pub page_size: u64,
}

pub fn translate<M: PageTableMemory + ?Sized>(mem: &M, root: u64, virt: u64) -> Option<Translation> {
    if !is_canonical(virt) {
        return None;
    }
    let (mut writable, mut executable, mut user) = (true, true, true);
    let mut table = root;
    for level in (0..=3).rev() {
        let entry = PageTableEntry::from(mem.read_entry(table, index(virt, level)));
        if !entry.present() {
            return None;
        }
        writable &= entry.writable();
        executable &= !entry.no_execute();
        user &= entry.user();
        if level == 0 || (entry.page_size() && level <= 2) {
            let size = level_size(level);
            let base = entry.address() & !(size - 1);
            return Some(Translation { phys: base + (virt & (size - 1)), writable, executable, user, page_size: size });
        }
        table = entry.address();
    }
    None
}

/// What [`audit`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Audit {
    /// Leaf mappings (of any size).
    pub mappings: u64,
    /// Leaves that are both writable and executable.
    pub writable_executable: u64,
    /// Leaves executable from user mode.
    pub user_executable: u64,
    /// The first W+X leaf, if any.
    pub first_violation: Option<u64>,
}

/// Walks the whole hierarchy and counts leaves that break W^X.
pub fn audit<M: PageTableMemory + ?Sized>(mem: &M, root: u64) -> Audit {
    let mut report = Audit::default();
    audit_table(mem, root, 3, 0, (true, true, true), &mut report);
    report
}

fn audit_table<M: PageTableMemory + ?Sized>(
    mem: &M,
    table: u64,
    level: u32,
    base: u64,
    inherited: (bool, bool, bool),
    report: &mut Audit,
) {
    for i in 0..ENTRIES {
        let entry = PageTableEntry::from(mem.read_entry(table, i));
        if !entry.present() {
            continue;
        }
        let mut virt = base | ((i as u64) << (12 + 9 * level));
        if level == 3 && i >= 256 {
            virt |= 0xffff_0000_0000_0000;
        }
        let rights = (inherited.0 && entry.writable(), inherited.1 && !entry.no_execute(), inherited.2 && entry.user());
        if level == 0 || (entry.page_size() && level <= 2) {
            report.mappings += 1;
            if rights.0 && rights.1 {
                report.writable_executable += 1;
                report.first_violation.get_or_insert(virt);
            }
            if rights.1 && rights.2 {
                report.user_executable += 1;
            }
        } else {
            audit_table(mem, entry.address(), level - 1, virt, rights, report);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
