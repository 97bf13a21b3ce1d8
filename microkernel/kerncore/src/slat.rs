//! Second-level address translation: guest-physical to host-physical
//! mappings, shared by Intel EPT ([`crate::ept`]) and AMD nested paging
//! ([`crate::npt`]).
//!
//! Both are 4-level trees of 512-entry tables: 4 KiB leaves at level 0,
//! and 2 MiB (level 1) or 1 GiB (level 2) leaves marked by bit 7. Only the
//! entry bits differ, so one walker, [`SlatMapper`], does the work over a
//! [`SlatFormat`] that builds and reads entries. Both backends therefore
//! give the arch seam the same calls, rights, errors and guarantees:
//!
//! - Addresses and lengths are 4 KiB aligned. The guest range must lie below
//!   the guest-physical limit: 2^48 for a 4-level walk, or 2^MAXPHYADDR if
//!   that is smaller (a guest cannot form a larger physical address). The
//!   host range must lie below 2^MAXPHYADDR: entry bits at or above it are
//!   reserved (an EPT misconfiguration, or an #NPF with RSV set).
//! - [`SlatMapper::map`] refuses any overlap and then changes nothing. It
//!   allocates every table it needs before it writes the first leaf, so
//!   running out of memory leaves no new translation either (only empty
//!   tables, which stay in the hierarchy and are freed with it).
//! - [`SlatMapper::unmap`] removes whole leaves and reports each one so the
//!   caller can flush (INVEPT, or a TLB flush of the ASID). A range with a
//!   hole, or one that would cut a large leaf, is refused whole.
//! - Write and execute together are allowed. What a guest does with its
//!   own memory is the guest's business (a guest kernel loads and runs code
//!   in the same RAM); these tables only bound what the guest can reach.
//!   W^X for the hypervisor's own address space is [`crate::paging`]'s job.

use crate::paging::{HUGE_PAGE_SIZE, LARGE_PAGE_SIZE, PAGE_SIZE, PageTableMemory};

/// Guest-physical bits a 4-level walk translates.
const WALK_BITS: u8 = 48;
const ENTRIES: usize = 512;
const LEVELS: u32 = 4;

/// What a guest may do with a guest-physical page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestRights {
    pub read: bool,
    pub write: bool,
    pub execute: bool,
}

impl GuestRights {
    pub const NONE: GuestRights = GuestRights { read: false, write: false, execute: false };
    pub const READ: GuestRights = GuestRights { read: true, write: false, execute: false };
    pub const READ_WRITE: GuestRights = GuestRights { read: true, write: true, execute: false };
    pub const READ_EXECUTE: GuestRights = GuestRights { read: true, write: false, execute: true };
    /// Ordinary guest RAM.
    pub const ALL: GuestRights = GuestRights { read: true, write: true, execute: true };
    /// Execute-only: EPT only, and only where the CPU supports it.
    pub const EXECUTE_ONLY: GuestRights = GuestRights { read: false, write: false, execute: true };

    pub const fn intersect(self, other: GuestRights) -> GuestRights {
        GuestRights {
            read: self.read && other.read,
            write: self.write && other.write,
            execute: self.execute && other.execute,
        }
    }

    pub const fn is_none(self) -> bool {
        !self.read && !self.write && !self.execute
    }
}

/// A physical-address width (MAXPHYADDR, CPUID 0x8000_0008 EAX bits 7:0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysAddrWidth(u8);

impl PhysAddrWidth {
    /// The architectural maximum.
    pub const MAX: PhysAddrWidth = PhysAddrWidth(52);
    /// The smallest width a 64-bit CPU reports.
    pub const MIN_BITS: u8 = 36;

    /// `None` unless `bits` is within [`Self::MIN_BITS`]..=52.
    pub const fn new(bits: u8) -> Option<PhysAddrWidth> {
        if bits >= Self::MIN_BITS && bits <= Self::MAX.0 { Some(PhysAddrWidth(bits)) } else { None }
    }

    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The first address beyond the width.
    pub const fn limit(self) -> u64 {
        1 << self.0
    }
}

/// Limits of the machine the tables are built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlatConfig {
    /// The host's MAXPHYADDR; also caps guest-physical addresses.
    pub phys_addr_width: PhysAddrWidth,
    /// Use 2 MiB leaves where alignment and the range permit.
    pub large_pages: bool,
}

impl Default for SlatConfig {
    fn default() -> Self {
        SlatConfig { phys_addr_width: PhysAddrWidth::MAX, large_pages: true }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestMapError {
    /// An address or the length is not 4 KiB aligned, or the length is zero.
    Misaligned,
    /// The guest range reaches past the guest-physical limit.
    GuestAddressTooLarge,
    /// The host range reaches past MAXPHYADDR.
    HostAddressTooLarge,
    /// Part of the guest range is mapped already.
    AlreadyMapped {
        gpa: u64,
    },
    /// Part of the guest range is not mapped.
    NotMapped {
        gpa: u64,
    },
    /// The range covers only part of a large leaf, which is never split.
    SplitsLargePage {
        gpa: u64,
    },
    /// No right at all: that is "not mapped", not a mapping.
    NoAccess,
    /// Writable but not readable (an EPT misconfiguration; NPT cannot express it).
    WriteWithoutRead,
    /// Executable but not readable, where the format or the CPU cannot express it.
    ExecuteWithoutRead,
    OutOfMemory,
}

/// Where a guest-physical address leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestTranslation {
    pub hpa: u64,
    /// The rights of every level along the walk, intersected.
    pub rights: GuestRights,
    pub page_size: u64,
}

/// A leaf [`SlatMapper::unmap`] removed: flush it before reusing `hpa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemovedMapping {
    pub gpa: u64,
    pub hpa: u64,
    pub size: u64,
}

/// The entry format of one kind of second-level tables.
pub trait SlatFormat {
    type Entry: Copy + From<u64> + Into<u64>;

    /// The entry maps a page or points to a table.
    fn is_present(&self, entry: Self::Entry) -> bool;
    /// Bit 7: the entry at level 1 or 2 is a leaf.
    fn is_large(&self, entry: Self::Entry) -> bool;
    fn address(&self, entry: Self::Entry) -> u64;
    /// The rights this entry grants (a walk intersects them over the levels).
    fn rights(&self, entry: Self::Entry) -> GuestRights;
    /// An entry pointing to `table`, granting everything: the leaf decides.
    fn table_entry(&self, table: u64) -> Self::Entry;
    /// A write-back leaf mapping `hpa`, 2 MiB if `large`.
    fn leaf_entry(&self, hpa: u64, rights: GuestRights, large: bool) -> Self::Entry;
    /// Whether the format (and CPU) can express `rights`.
    fn check_rights(&self, rights: GuestRights) -> Result<(), GuestMapError>;

    /// A leaf's write-permission bit.
    const WRITE_BIT: u64;
    /// A leaf bit the CPU ignores (bit 52: EPT ignores 52-56, NPT leaves
    /// 52-58 to software), set while [`SlatMapper::hold_write`] withholds
    /// the write access the map granted.
    const WRITE_HELD_BIT: u64 = 1 << 52;
}

fn index(gpa: u64, level: u32) -> usize {
    ((gpa >> (12 + 9 * level)) & 0x1ff) as usize
}

const fn level_size(level: u32) -> u64 {
    PAGE_SIZE << (9 * level)
}

const _: () = assert!(level_size(1) == LARGE_PAGE_SIZE && level_size(2) == HUGE_PAGE_SIZE);

/// A leaf found by a walk.
struct Leaf<E> {
    table: u64,
    index: usize,
    level: u32,
    entry: E,
}

/// Builds, removes and walks guest-physical mappings in the hierarchy rooted at `root`.
pub struct SlatMapper<'m, F: SlatFormat, M: PageTableMemory> {
    mem: &'m mut M,
    root: u64,
    format: F,
    config: SlatConfig,
}

impl<'m, F: SlatFormat, M: PageTableMemory> SlatMapper<'m, F, M> {
    pub fn new(mem: &'m mut M, root: u64, format: F, config: SlatConfig) -> Self {
        SlatMapper { mem, root, format, config }
    }

    /// Allocates an empty root table.
    pub fn new_root(mem: &mut M) -> Result<u64, GuestMapError> {
        mem.alloc_table().ok_or(GuestMapError::OutOfMemory)
    }

    pub fn root(&self) -> u64 {
        self.root
    }

    pub fn format(&self) -> &F {
        &self.format
    }

    pub fn config(&self) -> SlatConfig {
        self.config
    }

    /// The first guest-physical address beyond what can be mapped.
    pub fn guest_limit(&self) -> u64 {
        self.config.phys_addr_width.limit().min(1 << WALK_BITS)
    }

    /// Maps `[gpa, gpa+len)` to `[hpa, hpa+len)` with `rights`, write-back.
    pub fn map(&mut self, gpa: u64, hpa: u64, len: u64, rights: GuestRights) -> Result<(), GuestMapError> {
        self.format.check_rights(rights)?;
        let end = self.guest_range(gpa, len)?;
        if !hpa.is_multiple_of(PAGE_SIZE) {
            return Err(GuestMapError::Misaligned);
        }
        if hpa.checked_add(len).is_none_or(|hpa_end| hpa_end > self.config.phys_addr_width.limit()) {
            return Err(GuestMapError::HostAddressTooLarge);
        }
        let mut g = gpa;
        while g < end {
            let hole = self.hole_at(g).ok_or(GuestMapError::AlreadyMapped { gpa: g })?;
            g = (g & !(hole - 1)) + hole;
        }
        // Tables first: only this step allocates, and it adds no translation.
        let mut offset = 0;
        while offset < len {
            let level = self.leaf_level(gpa + offset, hpa + offset, len - offset);
            self.table_for(gpa + offset, level)?;
            offset += level_size(level);
        }
        // The same plan again: every table exists now, so nothing can fail.
        let mut offset = 0;
        while offset < len {
            let (g, h) = (gpa + offset, hpa + offset);
            let level = self.leaf_level(g, h, len - offset);
            let table = self.table_for(g, level)?;
            let leaf = self.format.leaf_entry(h, rights, level > 0);
            self.mem.write_entry(table, index(g, level), leaf.into());
            offset += level_size(level);
        }
        Ok(())
    }

    /// Removes the leaves of `[gpa, gpa+len)`, reporting each through `removed`.
    /// Every page must be mapped and every leaf must lie wholly inside the
    /// range, else nothing is removed.
    pub fn unmap(&mut self, gpa: u64, len: u64, mut removed: impl FnMut(RemovedMapping)) -> Result<(), GuestMapError> {
        let end = self.guest_range(gpa, len)?;
        let mut g = gpa;
        while g < end {
            let leaf = self.leaf_at(g).ok_or(GuestMapError::NotMapped { gpa: g })?;
            let size = level_size(leaf.level);
            let base = g & !(size - 1);
            if base < gpa || base + size > end {
                return Err(GuestMapError::SplitsLargePage { gpa: g });
            }
            g = base + size;
        }
        let mut g = gpa;
        while g < end {
            let Some(leaf) = self.leaf_at(g) else { break };
            let size = level_size(leaf.level);
            self.mem.write_entry(leaf.table, leaf.index, 0);
            removed(RemovedMapping { gpa: g, hpa: self.format.address(leaf.entry) & !(size - 1), size });
            g += size;
        }
        Ok(())
    }

    /// Removes whatever leaves `[gpa, gpa+len)` has, skipping holes, and
    /// reports each: teardown, which cannot fail. A large leaf that reaches
    /// into the range goes whole.
    pub fn unmap_present(&mut self, gpa: u64, len: u64, mut removed: impl FnMut(RemovedMapping)) {
        let end = gpa.saturating_add(len).min(self.guest_limit());
        let mut g = gpa & !(PAGE_SIZE - 1);
        while g < end {
            match self.leaf_at(g) {
                Some(leaf) => {
                    let size = level_size(leaf.level);
                    let base = g & !(size - 1);
                    self.mem.write_entry(leaf.table, leaf.index, 0);
                    removed(RemovedMapping { gpa: base, hpa: self.format.address(leaf.entry) & !(size - 1), size });
                    g = base + size;
                }
                None => g += PAGE_SIZE,
            }
        }
    }

    /// Withholds (`held`) or gives back the write access the map granted
    /// the 4 KiB page at `gpa`, so a write faults to the VMM while reads
    /// and fetches go on. Giving back restores only what the map granted:
    /// a page mapped read-only stays so. Returns whether the leaf changed
    /// (flush the partition's translations then).
    pub fn hold_write(&mut self, gpa: u64, held: bool) -> Result<bool, GuestMapError> {
        self.guest_range(gpa, PAGE_SIZE)?;
        let leaf = self.leaf_at(gpa).ok_or(GuestMapError::NotMapped { gpa })?;
        if leaf.level != 0 {
            return Err(GuestMapError::SplitsLargePage { gpa });
        }
        let old: u64 = leaf.entry.into();
        let (writable, was_held) = (old & F::WRITE_BIT != 0, old & F::WRITE_HELD_BIT != 0);
        let new = match (held, writable, was_held) {
            (true, true, _) => (old & !F::WRITE_BIT) | F::WRITE_HELD_BIT,
            (false, _, true) => (old & !F::WRITE_HELD_BIT) | F::WRITE_BIT,
            _ => old,
        };
        if new != old {
            self.mem.write_entry(leaf.table, leaf.index, new);
        }
        Ok(new != old)
    }

    /// The host-physical address and rights `gpa` translates to.
    pub fn translate(&self, gpa: u64) -> Option<GuestTranslation> {
        if gpa >= self.guest_limit() {
            return None;
        }
        let mut rights = GuestRights::ALL;
        let mut table = self.root;
        for level in (0..LEVELS).rev() {
            let entry = self.entry(table, index(gpa, level));
            if !self.format.is_present(entry) {
                return None;
            }
            rights = rights.intersect(self.format.rights(entry));
            if self.is_leaf(entry, level) {
                let size = level_size(level);
                let base = self.format.address(entry) & !(size - 1);
                return Some(GuestTranslation { hpa: base + (gpa & (size - 1)), rights, page_size: size });
            }
            table = self.format.address(entry);
        }
        None
    }

    /// Calls `f` with every table of the hierarchy, children before their
    /// parent and the root last, so the frames can be freed in that order.
    pub fn for_each_table(&self, mut f: impl FnMut(u64)) {
        self.visit_tables(self.root, LEVELS - 1, &mut f);
    }

    fn visit_tables(&self, table: u64, level: u32, f: &mut impl FnMut(u64)) {
        if level > 0 {
            for i in 0..ENTRIES {
                let entry = self.entry(table, i);
                if self.format.is_present(entry) && !self.is_leaf(entry, level) {
                    self.visit_tables(self.format.address(entry), level - 1, f);
                }
            }
        }
        f(table);
    }

    /// The end of `[gpa, gpa+len)` once it is aligned, non-empty and below the limit.
    fn guest_range(&self, gpa: u64, len: u64) -> Result<u64, GuestMapError> {
        if len == 0 || !(gpa | len).is_multiple_of(PAGE_SIZE) {
            return Err(GuestMapError::Misaligned);
        }
        match gpa.checked_add(len) {
            Some(end) if end <= self.guest_limit() => Ok(end),
            _ => Err(GuestMapError::GuestAddressTooLarge),
        }
    }

    fn entry(&self, table: u64, i: usize) -> F::Entry {
        F::Entry::from(self.mem.read_entry(table, i))
    }

    fn is_leaf(&self, entry: F::Entry, level: u32) -> bool {
        level == 0 || ((level == 1 || level == 2) && self.format.is_large(entry))
    }

    /// 2 MiB when enabled, aligned on both sides, covered by the rest of the
    /// range and its level-1 slot is empty (an emptied 4 KiB table stays and
    /// is used instead); else 4 KiB.
    fn leaf_level(&self, gpa: u64, hpa: u64, left: u64) -> u32 {
        let large = self.config.large_pages
            && (gpa | hpa).is_multiple_of(LARGE_PAGE_SIZE)
            && left >= LARGE_PAGE_SIZE
            && self.slot_is_empty(gpa, 1);
        if large { 1 } else { 0 }
    }

    /// Whether nothing is present at `level` on the walk to `gpa`.
    fn slot_is_empty(&self, gpa: u64, level: u32) -> bool {
        let mut table = self.root;
        for l in (level..LEVELS).rev() {
            let entry = self.entry(table, index(gpa, l));
            if !self.format.is_present(entry) {
                return true;
            }
            if l == level || self.is_leaf(entry, l) {
                return false;
            }
            table = self.format.address(entry);
        }
        false
    }

    /// The table at `level` on the walk to `gpa`, allocating missing ones above it.
    fn table_for(&mut self, gpa: u64, level: u32) -> Result<u64, GuestMapError> {
        let mut table = self.root;
        for l in (level + 1..LEVELS).rev() {
            let i = index(gpa, l);
            let mut entry = self.entry(table, i);
            if !self.format.is_present(entry) {
                let next = self.mem.alloc_table().ok_or(GuestMapError::OutOfMemory)?;
                entry = self.format.table_entry(next);
                self.mem.write_entry(table, i, entry.into());
            } else if self.is_leaf(entry, l) {
                return Err(GuestMapError::AlreadyMapped { gpa });
            }
            table = self.format.address(entry);
        }
        Ok(table)
    }

    /// If `gpa` is unmapped, the size of the aligned unmapped span around it.
    fn hole_at(&self, gpa: u64) -> Option<u64> {
        let mut table = self.root;
        for level in (0..LEVELS).rev() {
            let entry = self.entry(table, index(gpa, level));
            if !self.format.is_present(entry) {
                return Some(level_size(level));
            }
            if self.is_leaf(entry, level) {
                return None;
            }
            table = self.format.address(entry);
        }
        None
    }

    fn leaf_at(&self, gpa: u64) -> Option<Leaf<F::Entry>> {
        let mut table = self.root;
        for level in (0..LEVELS).rev() {
            let i = index(gpa, level);
            let entry = self.entry(table, i);
            if !self.format.is_present(entry) {
                return None;
            }
            if self.is_leaf(entry, level) {
                return Some(Leaf { table, index: i, level, entry });
            }
            table = self.format.address(entry);
        }
        None
    }
}

#[cfg(test)]
pub(crate) mod tests;
