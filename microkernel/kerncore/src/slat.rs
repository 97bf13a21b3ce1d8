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
//! - [`SlatMapper::protect`] narrows what a range may do below what the
//!   map granted, and [`SlatMapper::hold_write`] withholds one page's
//!   write; each keeps what it withholds in bits the CPU ignores, so
//!   neither gives back what the other withholds, and the map's grant
//!   always comes back whole ([`SlatMapper::granted`]). A leaf with every
//!   right withheld has none in hardware (EPT RWX=0, NPT P=0) yet stays a
//!   mapping: translated (with no right), unmapped, never overlapped.
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

    pub const fn union(self, other: GuestRights) -> GuestRights {
        GuestRights {
            read: self.read || other.read,
            write: self.write || other.write,
            execute: self.execute || other.execute,
        }
    }

    /// The rights of `self` that `other` lacks.
    pub const fn without(self, other: GuestRights) -> GuestRights {
        GuestRights {
            read: self.read && !other.read,
            write: self.write && !other.write,
            execute: self.execute && !other.execute,
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

    /// The CPU sees a page or a table: what the hardware walk needs.
    fn is_present(&self, entry: Self::Entry) -> bool;
    /// The entry maps a page (perhaps with every right withheld) or
    /// points to a table: what the walker needs.
    fn is_mapped(&self, entry: Self::Entry) -> bool {
        self.is_present(entry) || entry.into() & software_bits::<Self>() != 0
    }
    /// Bit 7: the entry at level 1 or 2 is a leaf.
    fn is_large(&self, entry: Self::Entry) -> bool;
    fn address(&self, entry: Self::Entry) -> u64;
    /// The rights this entry grants (a walk intersects them over the levels).
    fn rights(&self, entry: Self::Entry) -> GuestRights;
    /// An entry pointing to `table`, granting everything: the leaf decides.
    fn table_entry(&self, table: u64) -> Self::Entry;
    /// A write-back leaf mapping `hpa`, 2 MiB if `large`.
    fn leaf_entry(&self, hpa: u64, rights: GuestRights, large: bool) -> Self::Entry;
    /// `leaf` granting `rights` in hardware (NONE: not present to the
    /// CPU), its address and other bits kept. `rights` is NONE or passes
    /// [`Self::check_rights`].
    fn with_rights(&self, leaf: Self::Entry, rights: GuestRights) -> Self::Entry;
    /// Whether the format (and CPU) can express `rights`.
    fn check_rights(&self, rights: GuestRights) -> Result<(), GuestMapError>;

    /// A leaf bit the CPU ignores (bit 52: EPT ignores 52-56, NPT leaves
    /// 52-58 to software), set while [`SlatMapper::hold_write`] withholds
    /// the write access the map granted.
    const WRITE_HELD_BIT: u64 = 1 << 52;
    /// Leaf bits the CPU ignores, set for each right the map granted that
    /// [`SlatMapper::protect`] withholds.
    const READ_WITHHELD_BIT: u64 = 1 << 53;
    const WRITE_WITHHELD_BIT: u64 = 1 << 54;
    const EXECUTE_WITHHELD_BIT: u64 = 1 << 55;
}

/// Every software bit of a leaf: none is ever set in a table pointer.
pub const fn software_bits<F: SlatFormat + ?Sized>() -> u64 {
    F::WRITE_HELD_BIT | F::READ_WITHHELD_BIT | F::WRITE_WITHHELD_BIT | F::EXECUTE_WITHHELD_BIT
}

/// Bit 7 marks a large leaf and bits 12..=51 hold the address, in both
/// formats; a split copies every other bit to the smaller leaves.
const LARGE_BIT: u64 = 1 << 7;
const ADDRESS_BITS: u64 = ((1 << 52) - 1) & !(PAGE_SIZE - 1);

/// What a leaf grants and withholds; its hardware rights follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LeafRights {
    /// What the map granted.
    granted: GuestRights,
    /// Withheld by a protection (a subset of `granted`).
    protected: GuestRights,
    /// Write withheld by [`SlatMapper::hold_write`] (only if granted).
    held: bool,
}

impl LeafRights {
    /// What the CPU lets the guest do.
    fn effective(self) -> GuestRights {
        let held = GuestRights { write: self.held, ..GuestRights::NONE };
        self.granted.without(self.protected).without(held)
    }
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
    /// and fetches go on. Giving back restores only what the map granted
    /// and no protection withholds: a page mapped read-only stays so.
    /// Returns whether the hardware rights changed (flush the partition's
    /// translations then).
    pub fn hold_write(&mut self, gpa: u64, held: bool) -> Result<bool, GuestMapError> {
        self.guest_range(gpa, PAGE_SIZE)?;
        let leaf = self.leaf_at(gpa).ok_or(GuestMapError::NotMapped { gpa })?;
        if leaf.level != 0 {
            return Err(GuestMapError::SplitsLargePage { gpa });
        }
        let old = self.leaf_rights(leaf.entry);
        Ok(self.set_leaf_rights(&leaf, LeafRights { held, ..old }))
    }

    /// Lets every 4 KiB page of `[gpa, gpa+len)` do what the map granted
    /// and `allowed` allows (less a held write); `allowed` NONE is no
    /// access, the page staying mapped. Replaces the range's earlier
    /// protection. Returns whether any leaf changed (flush then).
    ///
    /// `allowed` must be NONE or rights the format can express (so NPT
    /// refuses write-only and execute-only). Every page must be mapped.
    /// A large leaf the range covers only in part is split first (its
    /// other pages keep their translation); one it covers whole stays
    /// large. A refusal changes nothing; running out of memory changes no
    /// translation, though a split done before it stays (its table is
    /// freed with the hierarchy).
    pub fn protect(&mut self, gpa: u64, len: u64, allowed: GuestRights) -> Result<bool, GuestMapError> {
        if !allowed.is_none() {
            self.format.check_rights(allowed)?;
        }
        let end = self.guest_range(gpa, len)?;
        let mut g = gpa;
        while g < end {
            let leaf = self.leaf_at(g).ok_or(GuestMapError::NotMapped { gpa: g })?;
            g = (g & !(level_size(leaf.level) - 1)) + level_size(leaf.level);
        }
        // Tables first: only the splits allocate, and they keep every translation.
        let mut changed = false;
        for edge in [gpa, end - PAGE_SIZE] {
            while let Some(leaf) = self.leaf_at(edge).filter(|l| l.level > 0) {
                let size = level_size(leaf.level);
                let base = edge & !(size - 1);
                if base >= gpa && base + size <= end {
                    break;
                }
                self.split(&leaf)?;
                changed = true;
            }
        }
        let mut g = gpa;
        while g < end {
            let Some(leaf) = self.leaf_at(g) else { break };
            let old = self.leaf_rights(leaf.entry);
            let protected = old.granted.without(allowed);
            changed |= self.set_leaf_rights(&leaf, LeafRights { protected, ..old });
            g = (g & !(level_size(leaf.level) - 1)) + level_size(leaf.level);
        }
        Ok(changed)
    }

    /// Takes every protection away: each page is left what the map granted
    /// but a held write (a partition that loses its VTL 1, TLFS 15.3.4).
    /// Returns whether a leaf changed.
    pub fn lift_protections(&mut self) -> bool {
        self.lift_in(self.root, LEVELS - 1)
    }

    fn lift_in(&mut self, table: u64, level: u32) -> bool {
        let mut changed = false;
        for index in 0..ENTRIES {
            let entry = self.entry(table, index);
            if !self.format.is_mapped(entry) {
                continue;
            }
            if self.is_leaf(entry, level) {
                let rights = LeafRights { protected: GuestRights::NONE, ..self.leaf_rights(entry) };
                changed |= self.set_leaf_rights(&Leaf { table, index, level, entry }, rights);
            } else {
                changed |= self.lift_in(self.format.address(entry), level - 1);
            }
        }
        changed
    }

    /// What the map granted the page at `gpa`, whatever a protection or a
    /// held write withholds now.
    pub fn granted(&self, gpa: u64) -> Option<GuestRights> {
        if gpa >= self.guest_limit() {
            return None;
        }
        self.leaf_at(gpa).map(|leaf| self.leaf_rights(leaf.entry).granted)
    }

    /// Maps every leaf of this hierarchy into `dest` with the rights the
    /// map granted it (no protection, no held write), as large as `dest`'s
    /// config allows. Refuses an overlap with what `dest` holds. On an
    /// error `dest` holds some of the leaves, each translating correctly:
    /// the caller frees it.
    pub fn copy_into<M2: PageTableMemory>(&self, dest: &mut SlatMapper<'_, F, M2>) -> Result<(), GuestMapError> {
        self.try_for_each_leaf(self.root, LEVELS - 1, 0, &mut |gpa, level, entry| {
            let size = level_size(level);
            let hpa = self.format.address(entry) & !(size - 1);
            dest.map(gpa, hpa, size, self.leaf_rights(entry).granted)
        })
    }

    /// The host-physical address and rights `gpa` translates to (no right
    /// at all where a protection withholds every one).
    pub fn translate(&self, gpa: u64) -> Option<GuestTranslation> {
        if gpa >= self.guest_limit() {
            return None;
        }
        let mut rights = GuestRights::ALL;
        let mut table = self.root;
        for level in (0..LEVELS).rev() {
            let entry = self.entry(table, index(gpa, level));
            if !self.format.is_mapped(entry) {
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
                if self.format.is_mapped(entry) && !self.is_leaf(entry, level) {
                    self.visit_tables(self.format.address(entry), level - 1, f);
                }
            }
        }
        f(table);
    }

    /// Calls `f` with every leaf under `table` (at `level`, mapping from
    /// `base`), in address order, until it fails.
    fn try_for_each_leaf(
        &self,
        table: u64,
        level: u32,
        base: u64,
        f: &mut impl FnMut(u64, u32, F::Entry) -> Result<(), GuestMapError>,
    ) -> Result<(), GuestMapError> {
        for i in 0..ENTRIES {
            let entry = self.entry(table, i);
            let gpa = base + i as u64 * level_size(level);
            if !self.format.is_mapped(entry) {
                continue;
            }
            if self.is_leaf(entry, level) {
                f(gpa, level, entry)?;
            } else {
                self.try_for_each_leaf(self.format.address(entry), level - 1, gpa, f)?;
            }
        }
        Ok(())
    }

    fn leaf_rights(&self, leaf: F::Entry) -> LeafRights {
        let bits: u64 = leaf.into();
        let protected = GuestRights {
            read: bits & F::READ_WITHHELD_BIT != 0,
            write: bits & F::WRITE_WITHHELD_BIT != 0,
            execute: bits & F::EXECUTE_WITHHELD_BIT != 0,
        };
        let held = bits & F::WRITE_HELD_BIT != 0;
        let held_write = GuestRights { write: held, ..GuestRights::NONE };
        let granted = self.format.rights(leaf).union(protected).union(held_write);
        LeafRights { granted, protected, held }
    }

    /// Writes `rights` into `leaf` (what is withheld of nothing granted is
    /// dropped); returns whether the hardware rights changed.
    fn set_leaf_rights(&mut self, leaf: &Leaf<F::Entry>, rights: LeafRights) -> bool {
        let rights = LeafRights {
            protected: rights.protected.intersect(rights.granted),
            held: rights.held && rights.granted.write,
            ..rights
        };
        let effective = rights.effective();
        let mut bits: u64 = self.format.with_rights(leaf.entry, effective).into() & !software_bits::<F>();
        for (withheld, bit) in [
            (rights.held, F::WRITE_HELD_BIT),
            (rights.protected.read, F::READ_WITHHELD_BIT),
            (rights.protected.write, F::WRITE_WITHHELD_BIT),
            (rights.protected.execute, F::EXECUTE_WITHHELD_BIT),
        ] {
            if withheld {
                bits |= bit;
            }
        }
        if bits != leaf.entry.into() {
            self.mem.write_entry(leaf.table, leaf.index, bits);
        }
        self.format.rights(leaf.entry) != effective
    }

    /// Replaces the large `leaf` with a table of 512 leaves one level
    /// down, with the same rights and software bits: no translation changes.
    fn split(&mut self, leaf: &Leaf<F::Entry>) -> Result<(), GuestMapError> {
        let table = self.mem.alloc_table().ok_or(GuestMapError::OutOfMemory)?;
        let size = level_size(leaf.level);
        let child_size = level_size(leaf.level - 1);
        let bits: u64 = leaf.entry.into();
        let hpa = self.format.address(leaf.entry) & !(size - 1);
        let mut template = bits & !ADDRESS_BITS;
        if leaf.level == 1 {
            template &= !LARGE_BIT;
        }
        for i in 0..ENTRIES {
            self.mem.write_entry(table, i, template | (hpa + i as u64 * child_size));
        }
        self.mem.write_entry(leaf.table, leaf.index, self.format.table_entry(table).into());
        Ok(())
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
            if !self.format.is_mapped(entry) {
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
            if !self.format.is_mapped(entry) {
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
            if !self.format.is_mapped(entry) {
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
            if !self.format.is_mapped(entry) {
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
