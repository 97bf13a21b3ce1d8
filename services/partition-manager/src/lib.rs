//! The partition manager's logic: partitions, their lifecycle, virtual
//! processors, guest-physical mappings and VP registers, with TLFS status
//! codes for every refusal.
//!
//! This is the bookkeeping only. The hardware side (kernel partition and VP
//! capabilities, EPT/NPT mappings, the VMCS/VMCB register state) comes in a
//! later issue and will sit behind these same checks, so a request that is
//! refused here never reaches the kernel.
//!
//! Checks run in the order TLFS recommends (privilege first, so a caller
//! that does not own a partition learns nothing about it): unknown
//! partition, then `ACCESS_DENIED`, then the partition's state, then the
//! arguments.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use partition_manager_api::{PartitionState, Server};
use tessera_idl::Badge;
use tlfs::{HvError, HvMapGpaFlags, HvRegisterName, HvResult};

/// Partitions that can exist at once.
pub const MAX_PARTITIONS: usize = 4;
/// Virtual processors per partition (VP indices `0..MAX_VPS`).
pub const MAX_VPS: usize = 4;
/// Distinct guest-physical mappings per partition.
pub const MAX_GPA_RANGES: usize = 16;
/// Guest-physical addresses are below 2^52 (the architectural maximum), so
/// guest page numbers are below 2^40.
pub const GPA_PAGE_LIMIT: u64 = 1 << 40;

/// The registers a VP keeps, in storage order.
const REGISTERS: [HvRegisterName; 24] = [
    HvRegisterName::RAX,
    HvRegisterName::RCX,
    HvRegisterName::RDX,
    HvRegisterName::RBX,
    HvRegisterName::RSP,
    HvRegisterName::RBP,
    HvRegisterName::RSI,
    HvRegisterName::RDI,
    HvRegisterName::R8,
    HvRegisterName::R9,
    HvRegisterName::R10,
    HvRegisterName::R11,
    HvRegisterName::R12,
    HvRegisterName::R13,
    HvRegisterName::R14,
    HvRegisterName::R15,
    HvRegisterName::RIP,
    HvRegisterName::RFLAGS,
    HvRegisterName::CR0,
    HvRegisterName::CR2,
    HvRegisterName::CR3,
    HvRegisterName::CR4,
    HvRegisterName::CR8,
    HvRegisterName::EFER,
];

/// RFLAGS bits that are reserved: 1 must be set, 3, 5, 15 and 22..63 clear.
const RFLAGS_FIXED_ONE: u64 = 1 << 1;
const RFLAGS_RESERVED_ZERO: u64 = (1 << 3) | (1 << 5) | (1 << 15) | !((1 << 22) - 1);

fn register_index(name: u32) -> Option<usize> {
    REGISTERS.iter().position(|r| r.0 == name)
}

/// Whether `value` is acceptable for register `name`.
fn register_value_ok(name: HvRegisterName, value: u64) -> bool {
    match name {
        HvRegisterName::RFLAGS => value & RFLAGS_FIXED_ONE != 0 && value & RFLAGS_RESERVED_ZERO == 0,
        HvRegisterName::CR8 => value <= 0xf,
        _ => true,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Vp {
    registers: [u64; REGISTERS.len()],
}

impl Vp {
    /// Architectural reset values where the register has one (RFLAGS 0x2,
    /// CR0 0x6000_0010), else zero.
    fn new() -> Vp {
        let mut registers = [0; REGISTERS.len()];
        for (value, name) in registers.iter_mut().zip(REGISTERS) {
            *value = match name {
                HvRegisterName::RFLAGS => RFLAGS_FIXED_ONE,
                HvRegisterName::CR0 => 0x6000_0010,
                _ => 0,
            };
        }
        Vp { registers }
    }
}

/// `count` guest pages from page number `first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpaRange {
    pub first: u64,
    pub count: u64,
    pub flags: HvMapGpaFlags,
}

impl GpaRange {
    pub const fn end(&self) -> u64 {
        self.first + self.count
    }

    fn overlaps(&self, first: u64, end: u64) -> bool {
        self.first < end && first < self.end()
    }
}

/// Not `Copy`: a partition is large, and copies of it are never wanted.
#[derive(Debug)]
struct Partition {
    id: u64,
    owner: Badge,
    state: PartitionState,
    vps: [Option<Vp>; MAX_VPS],
    gpa: [Option<GpaRange>; MAX_GPA_RANGES],
}

/// Every partition the manager knows.
pub struct PartitionManager {
    partitions: [Option<Partition>; MAX_PARTITIONS],
    next_id: u64,
}

impl Default for PartitionManager {
    fn default() -> Self {
        Self::new()
    }
}

/// Checks a page range: non-empty and below [`GPA_PAGE_LIMIT`]; returns its end.
fn page_range(first: u64, count: u64) -> HvResult<u64> {
    match first.checked_add(count) {
        Some(end) if count > 0 && end <= GPA_PAGE_LIMIT => Ok(end),
        _ => Err(HvError::INVALID_PARAMETER),
    }
}

impl PartitionManager {
    pub const fn new() -> PartitionManager {
        PartitionManager { partitions: [const { None }; MAX_PARTITIONS], next_id: 1 }
    }

    /// The partition `id`, if `caller` owns it.
    fn owned(&mut self, caller: Badge, id: u64) -> HvResult<&mut Partition> {
        let partition =
            self.partitions.iter_mut().flatten().find(|p| p.id == id).ok_or(HvError::INVALID_PARTITION_ID)?;
        if partition.owner != caller {
            return Err(HvError::ACCESS_DENIED);
        }
        Ok(partition)
    }

    /// The partition `id`, if `caller` owns it and it is in `state`.
    fn owned_in(&mut self, caller: Badge, id: u64, state: PartitionState) -> HvResult<&mut Partition> {
        let partition = self.owned(caller, id)?;
        if partition.state != state {
            return Err(HvError::INVALID_PARTITION_STATE);
        }
        Ok(partition)
    }

    fn vp(&mut self, caller: Badge, id: u64, vp_index: u32) -> HvResult<&mut Vp> {
        let partition = self.owned_in(caller, id, PartitionState::Active)?;
        partition.vps.get_mut(vp_index as usize).and_then(Option::as_mut).ok_or(HvError::INVALID_VP_INDEX)
    }

    pub fn create_partition(&mut self, caller: Badge, flags: u64) -> HvResult<u64> {
        if flags != 0 {
            return Err(HvError::INVALID_PARAMETER);
        }
        let slot = self.partitions.iter_mut().find(|p| p.is_none()).ok_or(HvError::INSUFFICIENT_MEMORY)?;
        let id = self.next_id;
        self.next_id = id.checked_add(1).ok_or(HvError::INSUFFICIENT_MEMORY)?;
        *slot = Some(Partition {
            id,
            owner: caller,
            state: PartitionState::Created,
            vps: [None; MAX_VPS],
            gpa: [None; MAX_GPA_RANGES],
        });
        Ok(id)
    }

    pub fn initialize_partition(&mut self, caller: Badge, id: u64) -> HvResult<()> {
        self.owned_in(caller, id, PartitionState::Created)?.state = PartitionState::Active;
        Ok(())
    }

    pub fn finalize_partition(&mut self, caller: Badge, id: u64) -> HvResult<()> {
        self.owned_in(caller, id, PartitionState::Active)?.state = PartitionState::Finalized;
        Ok(())
    }

    pub fn delete_partition(&mut self, caller: Badge, id: u64) -> HvResult<()> {
        if self.owned(caller, id)?.state == PartitionState::Active {
            return Err(HvError::INVALID_PARTITION_STATE);
        }
        for slot in &mut self.partitions {
            if slot.as_ref().is_some_and(|p| p.id == id) {
                *slot = None;
            }
        }
        Ok(())
    }

    pub fn partition_state(&mut self, caller: Badge, id: u64) -> HvResult<PartitionState> {
        Ok(self.owned(caller, id)?.state)
    }

    pub fn create_vp(&mut self, caller: Badge, id: u64, vp_index: u32) -> HvResult<()> {
        let partition = self.owned_in(caller, id, PartitionState::Active)?;
        match partition.vps.get_mut(vp_index as usize) {
            Some(slot @ None) => {
                *slot = Some(Vp::new());
                Ok(())
            }
            // Out of range, or that VP exists already.
            _ => Err(HvError::INVALID_VP_INDEX),
        }
    }

    pub fn map_gpa_pages(&mut self, caller: Badge, id: u64, first: u64, count: u64, flags: u32) -> HvResult<()> {
        let partition = self.owned_in(caller, id, PartitionState::Active)?;
        let end = page_range(first, count)?;
        if !HvMapGpaFlags::is_valid(flags) {
            return Err(HvError::INVALID_PARAMETER);
        }
        let flags = HvMapGpaFlags::from_bits(flags);
        if flags.writable() && !flags.readable() {
            return Err(HvError::INVALID_PARAMETER);
        }
        if partition.gpa.iter().flatten().any(|r| r.overlaps(first, end)) {
            return Err(HvError::INVALID_PARAMETER);
        }
        let slot = partition.gpa.iter_mut().find(|r| r.is_none()).ok_or(HvError::INSUFFICIENT_MEMORY)?;
        *slot = Some(GpaRange { first, count, flags });
        Ok(())
    }

    pub fn unmap_gpa_pages(&mut self, caller: Badge, id: u64, first: u64, count: u64) -> HvResult<()> {
        let partition = self.owned_in(caller, id, PartitionState::Active)?;
        let end = page_range(first, count)?;
        // Build the new table aside and commit it only if everything fits.
        let mut kept = [None; MAX_GPA_RANGES];
        let mut len = 0;
        let mut keep = |range: GpaRange| -> HvResult<()> {
            let slot = kept.get_mut(len).ok_or(HvError::INSUFFICIENT_MEMORY)?;
            *slot = Some(range);
            len += 1;
            Ok(())
        };
        for range in partition.gpa.iter().flatten() {
            if !range.overlaps(first, end) {
                keep(*range)?;
                continue;
            }
            if range.first < first {
                keep(GpaRange { first: range.first, count: first - range.first, flags: range.flags })?;
            }
            if range.end() > end {
                keep(GpaRange { first: end, count: range.end() - end, flags: range.flags })?;
            }
        }
        partition.gpa = kept;
        Ok(())
    }

    pub fn get_vp_register(&mut self, caller: Badge, id: u64, vp_index: u32, name: u32) -> HvResult<u64> {
        let vp = self.vp(caller, id, vp_index)?;
        let index = register_index(name).ok_or(HvError::INVALID_PARAMETER)?;
        Ok(vp.registers[index])
    }

    pub fn set_vp_register(&mut self, caller: Badge, id: u64, vp_index: u32, name: u32, value: u64) -> HvResult<()> {
        let vp = self.vp(caller, id, vp_index)?;
        let index = register_index(name).ok_or(HvError::INVALID_PARAMETER)?;
        if !register_value_ok(HvRegisterName(name), value) {
            return Err(HvError::INVALID_REGISTER_VALUE);
        }
        vp.registers[index] = value;
        Ok(())
    }

    /// The guest-physical mappings of partition `id`, sorted by page.
    pub fn mappings(&self, id: u64) -> impl Iterator<Item = GpaRange> + '_ {
        let partition = self.partitions.iter().flatten().find(|p| p.id == id);
        let mut ranges = partition.map_or([None; MAX_GPA_RANGES], |p| p.gpa);
        ranges.sort_unstable_by_key(|r| r.map_or(u64::MAX, |r| r.first));
        ranges.into_iter().flatten()
    }

    /// How many partitions exist.
    pub fn count(&self) -> usize {
        self.partitions.iter().flatten().count()
    }
}

impl Server for PartitionManager {
    fn create_partition(&mut self, caller: Badge, flags: u64) -> HvResult<u64> {
        PartitionManager::create_partition(self, caller, flags)
    }

    fn initialize_partition(&mut self, caller: Badge, partition: u64) -> HvResult<()> {
        PartitionManager::initialize_partition(self, caller, partition)
    }

    fn finalize_partition(&mut self, caller: Badge, partition: u64) -> HvResult<()> {
        PartitionManager::finalize_partition(self, caller, partition)
    }

    fn delete_partition(&mut self, caller: Badge, partition: u64) -> HvResult<()> {
        PartitionManager::delete_partition(self, caller, partition)
    }

    fn create_vp(&mut self, caller: Badge, partition: u64, vp_index: u32) -> HvResult<()> {
        PartitionManager::create_vp(self, caller, partition, vp_index)
    }

    fn map_gpa_pages(
        &mut self,
        caller: Badge,
        partition: u64,
        gpa_page: u64,
        page_count: u64,
        flags: u32,
    ) -> HvResult<()> {
        PartitionManager::map_gpa_pages(self, caller, partition, gpa_page, page_count, flags)
    }

    fn unmap_gpa_pages(&mut self, caller: Badge, partition: u64, gpa_page: u64, page_count: u64) -> HvResult<()> {
        PartitionManager::unmap_gpa_pages(self, caller, partition, gpa_page, page_count)
    }

    fn get_vp_register(&mut self, caller: Badge, partition: u64, vp_index: u32, name: u32) -> HvResult<u64> {
        PartitionManager::get_vp_register(self, caller, partition, vp_index, name)
    }

    fn set_vp_register(&mut self, caller: Badge, partition: u64, vp_index: u32, name: u32, value: u64) -> HvResult<()> {
        PartitionManager::set_vp_register(self, caller, partition, vp_index, name, value)
    }

    fn partition_state(&mut self, caller: Badge, partition: u64) -> HvResult<PartitionState> {
        PartitionManager::partition_state(self, caller, partition)
    }
}

#[cfg(test)]
mod tests;
