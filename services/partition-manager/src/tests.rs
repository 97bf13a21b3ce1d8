use super::*;
use partition_manager_api::{ATTACH_CAPS, Client, dispatch, hv_status};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use tessera_idl::testing::Loopback;
use tessera_idl::{ErrorCode, Message};
use tlfs::HvStatus;

const VID: Badge = Badge(5);
const OTHER: Badge = Badge(6);
const RW: u32 = 0b0011;
const RX: u32 = 0b0101;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Object {
    Memory { pages: u64 },
    Partition,
    Vp,
    Monitor { vp: CapSlot, badge: u64, ticks: u64 },
    Copy { of: CapSlot, rights: Handout },
}

/// A kernel that checks what the real one checks for the operations the
/// manager uses, and records what it was asked.
#[derive(Default)]
struct Fake {
    next: u32,
    live: BTreeMap<CapSlot, Object>,
    /// (partition, gpa, pages, access, memory, offset) of each map.
    maps: Vec<(CapSlot, u64, u64, GuestAccess, CapSlot, u64)>,
    unmaps: Vec<(CapSlot, u64, u64)>,
    core_exclusive: BTreeSet<CapSlot>,
    registers: BTreeMap<(CapSlot, u32), u64>,
    filled: BTreeMap<CapSlot, Vec<u8>>,
    revoked: BTreeSet<CapSlot>,
    /// (partition, VP index) of each VP put into a partition; the others'
    /// registers are refused (INVALID_STATE), as the kernel does.
    configured: BTreeMap<CapSlot, (CapSlot, u32)>,
    /// The kernel has no VP_SET_MONITOR.
    no_monitors: bool,
    /// VP_CONFIGURE fails (NO_RIGHTS).
    refuse_configure: bool,
    /// Untyped pages left.
    quota: u64,
    /// PARTITION_UNMAP fails with this.
    refuse_unmap: Option<ErrorCode>,
    /// VPs started (by their VID): VP_SUSPEND stops them, VP_RESET refuses
    /// them (INVALID_STATE), as the kernel does.
    started: BTreeSet<CapSlot>,
    /// ("suspend" or "reset", VP) of each VP operation that succeeded.
    vp_ops: Vec<(&'static str, CapSlot)>,
}

impl Fake {
    fn new() -> Fake {
        Fake { quota: 1 << 20, ..Fake::default() }
    }

    fn make(&mut self, object: Object) -> CapSlot {
        self.next += 1;
        let slot = CapSlot(self.next + 10);
        self.live.insert(slot, object);
        slot
    }

    fn pages(&self, memory: CapSlot) -> Result<u64, ErrorCode> {
        match self.live.get(&memory) {
            Some(Object::Memory { pages }) => Ok(*pages),
            Some(_) => Err(ErrorCode::WRONG_TYPE),
            None => Err(ErrorCode::INVALID_CAPABILITY),
        }
    }

    fn expect(&self, cap: CapSlot, kind: Object) -> Result<(), ErrorCode> {
        match self.live.get(&cap) {
            Some(o) if core::mem::discriminant(o) == core::mem::discriminant(&kind) => Ok(()),
            Some(_) => Err(ErrorCode::WRONG_TYPE),
            None => Err(ErrorCode::INVALID_CAPABILITY),
        }
    }

    fn count(&self, kind: Object) -> usize {
        self.live.values().filter(|o| core::mem::discriminant(*o) == core::mem::discriminant(&kind)).count()
    }
}

impl Kernel for Fake {
    fn create_memory(&mut self, pages: u64) -> Result<CapSlot, ErrorCode> {
        self.quota = self.quota.checked_sub(pages).ok_or(ErrorCode::OUT_OF_MEMORY)?;
        Ok(self.make(Object::Memory { pages }))
    }

    fn create_partition(&mut self) -> Result<CapSlot, ErrorCode> {
        Ok(self.make(Object::Partition))
    }

    fn create_vp(&mut self) -> Result<CapSlot, ErrorCode> {
        let vp = self.make(Object::Vp);
        for (name, value) in [(HvRegisterName::RFLAGS, 2), (HvRegisterName::CR0, 0x6000_0010)] {
            self.registers.insert((vp, name.0), value);
        }
        Ok(vp)
    }

    fn configure_vp(&mut self, vp: CapSlot, partition: CapSlot, index: u32) -> Result<(), ErrorCode> {
        self.expect(vp, Object::Vp)?;
        self.expect(partition, Object::Partition)?;
        if self.refuse_configure {
            return Err(ErrorCode::NO_RIGHTS);
        }
        self.configured.insert(vp, (partition, index));
        Ok(())
    }

    fn fill(&mut self, memory: CapSlot, bytes: &[u8]) -> Result<(), ErrorCode> {
        self.pages(memory)?;
        self.filled.insert(memory, bytes.to_vec());
        Ok(())
    }

    fn map(
        &mut self,
        partition: CapSlot,
        memory: CapSlot,
        gpa: u64,
        access: GuestAccess,
        offset: u64,
        pages: u64,
    ) -> Result<(), ErrorCode> {
        self.expect(partition, Object::Partition)?;
        let size = self.pages(memory)?;
        if !access.read {
            return Err(ErrorCode::NO_RIGHTS);
        }
        if pages == 0 || offset + pages > size || !gpa.is_multiple_of(PAGE) {
            return Err(ErrorCode::INVALID_ARGUMENT);
        }
        self.maps.push((partition, gpa, pages, access, memory, offset));
        Ok(())
    }

    fn set_core_exclusive(&mut self, partition: CapSlot) -> Result<(), ErrorCode> {
        self.expect(partition, Object::Partition)?;
        self.core_exclusive.insert(partition);
        Ok(())
    }

    fn unmap(&mut self, partition: CapSlot, gpa: u64, pages: u64) -> Result<(), ErrorCode> {
        self.expect(partition, Object::Partition)?;
        if let Some(e) = self.refuse_unmap {
            return Err(e);
        }
        self.unmaps.push((partition, gpa, pages));
        Ok(())
    }

    fn get_register(&mut self, vp: CapSlot, name: u32) -> Result<(u64, u64), ErrorCode> {
        self.expect(vp, Object::Vp)?;
        if !self.configured.contains_key(&vp) {
            return Err(ErrorCode::INVALID_STATE);
        }
        Ok((self.registers.get(&(vp, name)).copied().unwrap_or(0), 0))
    }

    fn set_register(&mut self, vp: CapSlot, name: u32, low: u64, _high: u64) -> Result<(), ErrorCode> {
        self.expect(vp, Object::Vp)?;
        if !self.configured.contains_key(&vp) {
            return Err(ErrorCode::INVALID_STATE);
        }
        self.registers.insert((vp, name), low);
        Ok(())
    }

    fn set_monitor(&mut self, vp: CapSlot, badge: u64, ticks: u64) -> Result<CapSlot, ErrorCode> {
        self.expect(vp, Object::Vp)?;
        if self.no_monitors {
            return Err(ErrorCode::INVALID_OPERATION);
        }
        Ok(self.make(Object::Monitor { vp, badge, ticks }))
    }

    fn suspend_vp(&mut self, vp: CapSlot) -> Result<(), ErrorCode> {
        self.expect(vp, Object::Vp)?;
        if !self.started.remove(&vp) {
            return Err(ErrorCode::INVALID_STATE);
        }
        self.vp_ops.push(("suspend", vp));
        Ok(())
    }

    fn reset_vp(&mut self, vp: CapSlot) -> Result<(), ErrorCode> {
        self.expect(vp, Object::Vp)?;
        if self.started.contains(&vp) || !self.configured.contains_key(&vp) {
            return Err(ErrorCode::INVALID_STATE);
        }
        self.vp_ops.push(("reset", vp));
        Ok(())
    }

    fn derive(&mut self, cap: CapSlot, rights: Handout) -> Result<CapSlot, ErrorCode> {
        if !self.live.contains_key(&cap) {
            return Err(ErrorCode::INVALID_CAPABILITY);
        }
        Ok(self.make(Object::Copy { of: cap, rights }))
    }

    fn revoke(&mut self, cap: CapSlot) -> Result<(), ErrorCode> {
        self.live.get(&cap).ok_or(ErrorCode::INVALID_CAPABILITY)?;
        self.revoked.insert(cap);
        Ok(())
    }

    fn delete(&mut self, cap: CapSlot) {
        if let Some(Object::Memory { pages }) = self.live.remove(&cap) {
            self.quota += pages;
        }
    }
}

type Pm = PartitionManager<Fake>;

/// A manifest partition of `memory` bytes and `vcpus` VPs run by [`VID`].
fn spec(memory: u64, vcpus: u8) -> Spec<'static> {
    Spec { name: "linux", index: 0, vid: VID, memory, vcpus, exit_timeout_ms: 5000, core_exclusive: false }
}

/// An Active partition with 8 MiB of RAM, no VPs and nothing mapped.
fn active() -> (Pm, u64) {
    let mut pm = PartitionManager::new(Fake::new());
    let id = pm.create_from_manifest(&spec(8 << 20, 0)).unwrap();
    pm.unmap_gpa_pages(VID, id, 0, 2048).unwrap();
    assert_eq!(pm.mappings(id).count(), 0);
    (pm, id)
}

#[test]
fn the_full_lifecycle_runs_in_order() {
    let mut pm = PartitionManager::new(Fake::new());
    let id = pm.create_partition(VID, 0).unwrap();
    assert_ne!(id, 0);
    assert_eq!(pm.partition_state(VID, id), Ok(PartitionState::Created));
    pm.initialize_partition(VID, id).unwrap();
    assert_eq!(pm.partition_state(VID, id), Ok(PartitionState::Active));
    pm.create_vp(VID, id, 0).unwrap();
    // A partition made over IPC has no guest RAM to map.
    assert_eq!(pm.map_gpa_pages(VID, id, 0, 16, RW), Err(HvError::INSUFFICIENT_MEMORY));
    pm.set_vp_register(VID, id, 0, HvRegisterName::RIP.0, 0x1000).unwrap();
    pm.finalize_partition(VID, id).unwrap();
    assert_eq!(pm.partition_state(VID, id), Ok(PartitionState::Finalized));
    pm.delete_partition(VID, id).unwrap();
    assert_eq!(pm.partition_state(VID, id), Err(HvError::INVALID_PARTITION_ID));
    assert_eq!(pm.count(), 0);
    // The partition, the VP and its monitor capability are gone.
    assert!(pm.kernel().live.is_empty(), "{:?}", pm.kernel().live);
}

#[test]
fn a_never_initialized_partition_can_be_deleted() {
    let mut pm = PartitionManager::new(Fake::new());
    let id = pm.create_partition(VID, 0).unwrap();
    assert_eq!(pm.delete_partition(VID, id), Ok(()));
}

#[test]
fn operations_in_the_wrong_state_are_refused() {
    let state_error = Err(HvError::INVALID_PARTITION_STATE);
    let mut pm = PartitionManager::new(Fake::new());
    let id = pm.create_partition(VID, 0).unwrap();

    // Created: only initialize, delete and the state query.
    assert_eq!(pm.finalize_partition(VID, id), state_error);
    assert_eq!(pm.create_vp(VID, id, 0), state_error);
    assert_eq!(pm.map_gpa_pages(VID, id, 0, 1, RW), state_error);
    assert_eq!(pm.unmap_gpa_pages(VID, id, 0, 1), state_error);
    assert_eq!(pm.get_vp_register(VID, id, 0, HvRegisterName::RAX.0), Err(HvError::INVALID_PARTITION_STATE));
    assert_eq!(pm.set_vp_register(VID, id, 0, HvRegisterName::RAX.0, 1), state_error);

    // Active: not initialize again, not delete.
    pm.initialize_partition(VID, id).unwrap();
    assert_eq!(pm.initialize_partition(VID, id), state_error);
    assert_eq!(pm.delete_partition(VID, id), state_error);
    pm.create_vp(VID, id, 0).unwrap();

    // Finalized: only delete.
    pm.finalize_partition(VID, id).unwrap();
    assert_eq!(pm.initialize_partition(VID, id), state_error);
    assert_eq!(pm.finalize_partition(VID, id), state_error);
    assert_eq!(pm.create_vp(VID, id, 1), state_error);
    assert_eq!(pm.map_gpa_pages(VID, id, 0, 1, RW), state_error);
    assert_eq!(pm.get_vp_register(VID, id, 0, HvRegisterName::RAX.0), Err(HvError::INVALID_PARTITION_STATE));
    assert_eq!(pm.delete_partition(VID, id), Ok(()));
}

#[test]
fn unknown_ids_and_other_owners_are_refused_before_the_state_is_revealed() {
    let (mut pm, id) = active();
    for bad in [0, id + 1, u64::MAX] {
        assert_eq!(pm.initialize_partition(VID, bad), Err(HvError::INVALID_PARTITION_ID));
        assert_eq!(pm.delete_partition(VID, bad), Err(HvError::INVALID_PARTITION_ID));
    }
    // Another task gets ACCESS_DENIED, not INVALID_PARTITION_STATE.
    assert_eq!(pm.initialize_partition(OTHER, id), Err(HvError::ACCESS_DENIED));
    assert_eq!(pm.delete_partition(OTHER, id), Err(HvError::ACCESS_DENIED));
    assert_eq!(pm.finalize_partition(OTHER, id), Err(HvError::ACCESS_DENIED));
    assert_eq!(pm.create_vp(OTHER, id, 0), Err(HvError::ACCESS_DENIED));
    assert_eq!(pm.map_gpa_pages(OTHER, id, 0, 1, RW), Err(HvError::ACCESS_DENIED));
    assert_eq!(pm.partition_state(OTHER, id), Err(HvError::ACCESS_DENIED));
    assert_eq!(pm.partition_state(VID, id), Ok(PartitionState::Active));
}

#[test]
fn the_partition_table_is_bounded_and_ids_are_never_reused() {
    let mut pm = PartitionManager::new(Fake::new());
    assert_eq!(pm.create_partition(VID, 1), Err(HvError::INVALID_PARAMETER));
    let ids: Vec<u64> = (0..MAX_PARTITIONS).map(|_| pm.create_partition(VID, 0).unwrap()).collect();
    assert_eq!(pm.create_partition(VID, 0), Err(HvError::INSUFFICIENT_MEMORY));
    pm.delete_partition(VID, ids[1]).unwrap();
    let again = pm.create_partition(OTHER, 0).unwrap();
    assert!(!ids.contains(&again));
    assert_eq!(pm.initialize_partition(VID, ids[1]), Err(HvError::INVALID_PARTITION_ID));
}

#[test]
fn the_manager_alone_puts_each_vp_into_its_partition_with_its_index() {
    let mut pm = PartitionManager::new(Fake::new());
    pm.create_from_manifest(&spec(8 << 20, 3)).unwrap();
    let id = pm.create_partition(VID, 0).unwrap();
    pm.initialize_partition(VID, id).unwrap();
    pm.create_vp(VID, id, 5).unwrap();
    let k = pm.kernel();
    let mut placed: Vec<(CapSlot, u32)> = k.configured.values().copied().collect();
    placed.sort();
    let partitions: Vec<CapSlot> = k.live.iter().filter(|(_, o)| **o == Object::Partition).map(|(c, _)| *c).collect();
    let [first, second] = partitions[..] else { panic!("{partitions:?}") };
    assert_eq!(placed, [(first, 0), (first, 1), (first, 2), (second, 5)]);
}

#[test]
fn a_vp_the_kernel_will_not_configure_is_not_kept() {
    let mut pm = PartitionManager::new(Fake { refuse_configure: true, ..Fake::new() });
    assert_eq!(pm.create_from_manifest(&spec(8 << 20, 1)), Err(HvError::ACCESS_DENIED));
    assert!(pm.kernel().live.is_empty(), "{:?}", pm.kernel().live);
}

#[test]
fn vps_are_created_once_within_range() {
    let (mut pm, id) = active();
    for vp in 0..MAX_VPS_PER_PARTITION as u32 {
        pm.create_vp(VID, id, vp).unwrap();
    }
    assert_eq!(pm.create_vp(VID, id, 0), Err(HvError::INVALID_VP_INDEX));
    assert_eq!(pm.create_vp(VID, id, MAX_VPS_PER_PARTITION as u32), Err(HvError::INVALID_VP_INDEX));
    assert_eq!(pm.create_vp(VID, id, u32::MAX), Err(HvError::INVALID_VP_INDEX));
}

#[test]
fn registers_start_at_reset_values_and_are_checked() {
    let (mut pm, id) = active();
    assert_eq!(pm.get_vp_register(VID, id, 0, HvRegisterName::RIP.0), Err(HvError::INVALID_VP_INDEX));
    pm.create_vp(VID, id, 0).unwrap();
    assert_eq!(pm.get_vp_register(VID, id, 0, HvRegisterName::RFLAGS.0), Ok(2));
    assert_eq!(pm.get_vp_register(VID, id, 0, HvRegisterName::CR0.0), Ok(0x6000_0010));
    assert_eq!(pm.get_vp_register(VID, id, 0, HvRegisterName::R15.0), Ok(0));
    for (name, value) in
        [(HvRegisterName::RAX, u64::MAX), (HvRegisterName::CR3, 0x1000), (HvRegisterName::RFLAGS, 0x202)]
    {
        pm.set_vp_register(VID, id, 0, name.0, value).unwrap();
        assert_eq!(pm.get_vp_register(VID, id, 0, name.0), Ok(value));
    }
    // Segment registers are 128-bit and XMM registers are not kept: unknown names.
    for name in [0, 0x0006_0001, 0x0003_0000, 0x0002_0012] {
        assert_eq!(pm.get_vp_register(VID, id, 0, name), Err(HvError::INVALID_PARAMETER));
        assert_eq!(pm.set_vp_register(VID, id, 0, name, 0), Err(HvError::INVALID_PARAMETER));
    }
    for (name, value) in
        [(HvRegisterName::RFLAGS, 0), (HvRegisterName::RFLAGS, 0x2 | 1 << 22), (HvRegisterName::CR8, 16)]
    {
        assert_eq!(pm.set_vp_register(VID, id, 0, name.0, value), Err(HvError::INVALID_REGISTER_VALUE));
    }
    assert_eq!(pm.get_vp_register(VID, id, 0, HvRegisterName::RFLAGS.0), Ok(0x202));
}

#[test]
fn mappings_are_checked_and_never_overlap() {
    let (mut pm, id) = active();
    pm.map_gpa_pages(VID, id, 0x100, 0x10, RW).unwrap();
    for (first, count) in [(0x100, 1), (0xff, 2), (0x10f, 1), (0x0, 0x1000)] {
        assert_eq!(
            pm.map_gpa_pages(VID, id, first, count, RW),
            Err(HvError::INVALID_PARAMETER),
            "{first:#x}+{count:#x}"
        );
    }
    pm.map_gpa_pages(VID, id, 0x110, 1, RX).unwrap();
    pm.map_gpa_pages(VID, id, 0xff, 1, 0).unwrap();
    // Empty, out of range, overflowing, reserved flags, write without read.
    assert_eq!(pm.map_gpa_pages(VID, id, 0, 0, RW), Err(HvError::INVALID_PARAMETER));
    assert_eq!(pm.map_gpa_pages(VID, id, GPA_PAGE_LIMIT - 1, 2, RW), Err(HvError::INVALID_PARAMETER));
    assert_eq!(pm.map_gpa_pages(VID, id, u64::MAX, 2, RW), Err(HvError::INVALID_PARAMETER));
    assert_eq!(pm.map_gpa_pages(VID, id, 0x200, 1, 0x10), Err(HvError::INVALID_PARAMETER));
    assert_eq!(pm.map_gpa_pages(VID, id, 0x200, 1, 0b0010), Err(HvError::INVALID_PARAMETER));
    // Beyond guest RAM: the kernel refuses, and nothing is recorded.
    assert_eq!(pm.map_gpa_pages(VID, id, GPA_PAGE_LIMIT - 1, 1, RW), Err(HvError::INVALID_PARAMETER));
    assert_eq!(pm.map_gpa_pages(VID, id, 2047, 2, RW), Err(HvError::INVALID_PARAMETER));
    pm.map_gpa_pages(VID, id, 2047, 1, RW).unwrap();
    let firsts: Vec<u64> = pm.mappings(id).map(|r| r.first).collect();
    assert_eq!(firsts, [0xff, 0x100, 0x110, 2047]);
    // The page without access was recorded, not mapped; the others reached
    // the kernel with their GPA, RAM offset and rights.
    let maps: Vec<(u64, u64, GuestAccess, u64)> = pm
        .kernel()
        .maps
        .iter()
        .skip(5)
        .map(|&(_, gpa, pages, access, _, offset)| (gpa, pages, access, offset))
        .collect();
    let rw = GuestAccess { read: true, write: true, execute: false };
    let rx = GuestAccess { read: true, write: false, execute: true };
    assert_eq!(maps, [(0x100 * PAGE, 0x10, rw, 0x100), (0x110 * PAGE, 1, rx, 0x110), (2047 * PAGE, 1, rw, 2047)]);
}

#[test]
fn the_mapping_table_is_bounded() {
    let (mut pm, id) = active();
    for i in 0..MAX_GPA_RANGES as u64 {
        pm.map_gpa_pages(VID, id, i * 2, 1, RW).unwrap();
    }
    assert_eq!(pm.map_gpa_pages(VID, id, 1000, 1, RW), Err(HvError::INSUFFICIENT_MEMORY));
    pm.unmap_gpa_pages(VID, id, 0, 1).unwrap();
    pm.map_gpa_pages(VID, id, 1000, 1, RW).unwrap();
}

#[test]
fn unmapping_removes_exactly_the_range_splitting_mappings() {
    let (mut pm, id) = active();
    pm.map_gpa_pages(VID, id, 0, 10, RW).unwrap();
    pm.map_gpa_pages(VID, id, 20, 10, RX).unwrap();
    pm.unmap_gpa_pages(VID, id, 4, 2).unwrap();
    let ranges: Vec<(u64, u64, u32)> = pm.mappings(id).map(|r| (r.first, r.count, r.flags.into_bits())).collect();
    assert_eq!(ranges, [(0, 4, RW), (6, 4, RW), (20, 10, RX)]);
    // Across mappings and holes, clipping both ends.
    pm.unmap_gpa_pages(VID, id, 8, 14).unwrap();
    let ranges: Vec<(u64, u64)> = pm.mappings(id).map(|r| (r.first, r.count)).collect();
    assert_eq!(ranges, [(0, 4), (6, 2), (22, 8)]);
    // Unmapping nothing is fine; bad ranges are not.
    pm.unmap_gpa_pages(VID, id, 100, 5).unwrap();
    assert_eq!(pm.unmap_gpa_pages(VID, id, 0, 0), Err(HvError::INVALID_PARAMETER));
    assert_eq!(pm.unmap_gpa_pages(OTHER, id, 0, 1), Err(HvError::ACCESS_DENIED));
}

#[test]
fn an_unmap_that_would_overflow_the_table_changes_nothing() {
    let (mut pm, id) = active();
    pm.map_gpa_pages(VID, id, 0, 1000, RW).unwrap();
    for i in 1..MAX_GPA_RANGES as u64 {
        pm.map_gpa_pages(VID, id, 1000 + i * 2, 1, RW).unwrap();
    }
    let before: Vec<GpaRange> = pm.mappings(id).collect();
    assert_eq!(pm.unmap_gpa_pages(VID, id, 10, 1), Err(HvError::INSUFFICIENT_MEMORY));
    assert_eq!(pm.mappings(id).collect::<Vec<_>>(), before);
    // Trimming an end needs no extra slot.
    pm.unmap_gpa_pages(VID, id, 0, 1).unwrap();
    assert_eq!(pm.mappings(id).next().map(|r| (r.first, r.count)), Some((1, 999)));
}

#[test]
fn the_interface_carries_tlfs_statuses_end_to_end() {
    let server = RefCell::new(PartitionManager::new(Fake::new()));
    let transport = Loopback::new(VID, |badge, request: &Message| dispatch(&mut *server.borrow_mut(), badge, request));
    let pm = Client::new(&transport, CapSlot(4));

    let id = pm.create_partition(0).unwrap().unwrap();
    assert_eq!(hv_status(&pm.finalize_partition(id)), HvStatus::INVALID_PARTITION_STATE);
    assert_eq!(hv_status(&pm.initialize_partition(id)), HvStatus::SUCCESS);
    assert_eq!(pm.partition_state(id), Ok(Ok(PartitionState::Active)));
    assert_eq!(hv_status(&pm.create_vp(id, 0)), HvStatus::SUCCESS);
    assert_eq!(hv_status(&pm.set_vp_register(id, 0, HvRegisterName::RIP.0, 0xfff0)), HvStatus::SUCCESS);
    assert_eq!(pm.get_vp_register(id, 0, HvRegisterName::RIP.0), Ok(Ok(0xfff0)));
    assert_eq!(hv_status(&pm.map_gpa_pages(id, 0, 1, 0x10)), HvStatus::INVALID_PARAMETER);
    assert_eq!(hv_status(&pm.create_partition(7)), HvStatus::INVALID_PARAMETER);

    transport.set_badge(OTHER);
    assert_eq!(hv_status(&pm.delete_partition(id)), HvStatus::ACCESS_DENIED);

    // A request the server cannot decode is an input error, an unknown
    // operation an unknown hypercall code.
    let mut manager = PartitionManager::new(Fake::new());
    let reply = dispatch(&mut manager, VID, &Message::from_words(0x4e, &[1, 1 << 32]).unwrap());
    assert_eq!(reply.label(), tessera_idl::ProtocolError::MALFORMED_REQUEST.0);
    let reply = dispatch(&mut manager, VID, &Message::new(0x44));
    assert_eq!(reply.label(), tessera_idl::ProtocolError::UNKNOWN_OPERATION.0);
}

#[test]
fn a_manifest_partition_gets_ram_rom_and_vps_mapped_as_the_layout_says() {
    let mut pm = PartitionManager::new(Fake::new());
    let id = pm.create_from_manifest(&spec(16 << 20, 2)).unwrap();
    assert_eq!(pm.partition_state(VID, id), Ok(PartitionState::Active));
    let k = pm.kernel();
    assert_eq!((k.count(Object::Memory { pages: 0 }), k.count(Object::Partition), k.count(Object::Vp)), (3, 1, 2));
    let rom = *k.filled.keys().next().unwrap();
    assert_eq!(k.filled[&rom], ROM_SIGNATURE);
    let maps: Vec<(u64, u64, GuestAccess, u64, bool)> = k
        .maps
        .iter()
        .map(|&(_, gpa, pages, access, memory, offset)| (gpa, pages, access, offset, memory == rom))
        .collect();
    let rwx = GuestAccess { read: true, write: true, execute: true };
    let rx = GuestAccess { read: true, write: false, execute: true };
    assert_eq!(
        maps,
        [
            (0, 0xa0, rwx, 0, false),
            (0x10_0000, 4096 - 256, rwx, 256, false),
            (0xa_0000, 0x40, rx, 0, false),
            (0xe_0000, 0x1f, rx, 0xe0, false),
            (0xf_f000, 1, rx, 0, true)
        ]
    );
    // Each VP reports to the manager on its own monitor badge.
    let monitors: Vec<(u64, u64)> = k
        .live
        .values()
        .filter_map(|o| match o {
            Object::Monitor { badge, ticks, .. } => Some((*badge, *ticks)),
            _ => None,
        })
        .collect();
    assert_eq!(monitors, [(monitor_badge(0, 0), 500), (monitor_badge(0, 1), 500)]);
    let ranges: Vec<(u64, u64)> = pm.mappings(id).map(|r| (r.first, r.count)).collect();
    assert_eq!(ranges, [(0, 0xa0), (0xa0, 0x40), (0xe0, 0x1f), (0xff, 1), (0x100, 4096 - 256)]);
    // Another task cannot see it.
    assert_eq!(pm.partition_state(OTHER, id), Err(HvError::ACCESS_DENIED));
}

#[test]
fn a_manifest_partition_that_does_not_fit_leaves_nothing_behind() {
    let mut pm = PartitionManager::new(Fake::new());
    pm.kernel().quota = 100;
    assert_eq!(pm.create_from_manifest(&spec(8 << 20, 1)), Err(HvError::INSUFFICIENT_MEMORY));
    assert!(pm.kernel().live.is_empty(), "{:?}", pm.kernel().live);
    assert_eq!(pm.count(), 0);
    assert_eq!(pm.kernel().quota, 100);
    // Bad sizes never reach the kernel.
    for bad in [spec((8 << 20) + 1, 1), spec(1 << 20, 1), spec(8 << 20, MAX_VPS_PER_PARTITION as u8 + 1)] {
        assert_eq!(pm.create_from_manifest(&bad), Err(HvError::INVALID_PARAMETER));
    }
    assert!(pm.kernel().live.is_empty());
}

#[test]
fn without_vp_monitors_in_the_kernel_vps_are_still_made() {
    let mut fake = Fake::new();
    fake.no_monitors = true;
    let mut pm = PartitionManager::new(fake);
    let id = pm.create_from_manifest(&spec(8 << 20, 1)).unwrap();
    assert_eq!(pm.kernel().count(Object::Vp), 1);
    assert_eq!(pm.attach(VID, 0, 1).map(|(got, _, vps, _)| (got, vps)), Ok((id, 1)));
}

#[test]
fn only_the_named_vid_attaches_a_partition_and_gets_its_capabilities() {
    let mut pm = PartitionManager::new(Fake::new());
    let id = pm.create_from_manifest(&spec(8 << 20, 2)).unwrap();
    assert_eq!(pm.attach(OTHER, 0, 1), Err(HvError::ACCESS_DENIED));
    assert!(pm.outgoing().is_empty());
    assert_eq!(pm.attach(VID, 1, 1), Err(HvError::INVALID_PARTITION_ID));
    assert_eq!(pm.attach(VID, 0, 1), Ok((id, 8 << 20, 2, Handover::First)));
    let kinds: Vec<Object> = pm.outgoing().iter().map(|c| pm.kernel.live[c]).collect();
    let [
        Object::Copy { of: ram, rights: r0 },
        Object::Copy { of: part, rights: r1 },
        Object::Copy { of: vp, rights: r2 },
    ] = kinds[..]
    else {
        panic!("{kinds:?}")
    };
    assert_eq!((r0, r1, r2), (Handout::RamReadWrite, Handout::Run, Handout::Run), "a VID never gets control");
    assert_eq!(pm.kernel.live[&ram], Object::Memory { pages: 2048 });
    assert_eq!((pm.kernel.live[&part], pm.kernel.live[&vp]), (Object::Partition, Object::Vp));
    // The copies go once the reply is sent.
    let copies = pm.outgoing().to_vec();
    pm.release_outgoing();
    assert!(copies.iter().all(|c| !pm.kernel.live.contains_key(c)));
    // VP 1 on its own; not another's, not one that does not exist.
    assert_eq!(pm.attach_vp(OTHER, id, 1), Err(HvError::ACCESS_DENIED));
    assert_eq!(pm.attach_vp(VID, id, 2), Err(HvError::INVALID_VP_INDEX));
    assert_eq!(pm.attach_vp(VID, id, 1), Ok(()));
    assert_eq!(pm.outgoing().len(), 1);
    // A finalized partition is not handed out.
    pm.finalize_partition(VID, id).unwrap();
    assert_eq!(pm.attach(VID, 0, 1), Err(HvError::INVALID_PARTITION_STATE));
    assert_eq!(pm.attach_vp(VID, id, 1), Err(HvError::INVALID_PARTITION_STATE));
}

#[test]
fn the_interface_hands_out_partitions_with_tlfs_statuses() {
    let mut manager = PartitionManager::new(Fake::new());
    let id = manager.create_from_manifest(&spec(8 << 20, 1)).unwrap();
    let server = RefCell::new(manager);
    let transport =
        Loopback::new(OTHER, |badge, request: &Message| dispatch(&mut *server.borrow_mut(), badge, request));
    let pm = Client::new(&transport, CapSlot(4));
    assert_eq!(hv_status(&pm.attach(0, 1)), HvStatus::ACCESS_DENIED);
    transport.set_badge(VID);
    assert_eq!(pm.attach(0, 1), Ok(Ok((id, 8 << 20, 1, Handover::First))));
    assert_eq!(server.borrow().outgoing().len(), ATTACH_CAPS);
    assert_eq!(hv_status(&pm.attach(3, 1)), HvStatus::INVALID_PARTITION_ID);
}

#[test]
fn finalizing_revokes_the_vids_capabilities_and_deleting_frees_everything() {
    let mut pm = PartitionManager::new(Fake::new());
    let quota = pm.kernel().quota;
    let id = pm.create_from_manifest(&spec(8 << 20, 2)).unwrap();
    let objects: BTreeSet<CapSlot> = pm.kernel().live.keys().copied().collect();
    pm.finalize_partition(VID, id).unwrap();
    let monitors: BTreeSet<CapSlot> =
        pm.kernel().live.iter().filter(|(_, o)| matches!(o, Object::Monitor { .. })).map(|(c, _)| *c).collect();
    let expected: BTreeSet<CapSlot> = objects.difference(&monitors).copied().collect();
    assert_eq!(pm.kernel().revoked, expected);
    pm.delete_partition(VID, id).unwrap();
    assert!(pm.kernel().live.is_empty(), "{:?}", pm.kernel().live);
    assert_eq!(pm.kernel().quota, quota);
}

#[test]
fn a_vp_stop_report_finalizes_the_partition() {
    let mut pm = PartitionManager::new(Fake::new());
    let id = pm.create_from_manifest(&spec(8 << 20, 2)).unwrap();
    let report = abi::VpStopReport {
        reason: abi::VpStopReason::HANDLER_TIMED_OUT,
        vp_index: 1,
        message_type: 0x8001_0000,
        rip: 0x10_0020,
    };
    // Client badges and unknown VPs or partitions are not monitor reports.
    assert_eq!(pm.vp_stopped(VID.0, &report.to_words()), None);
    assert_eq!(pm.vp_stopped(monitor_badge(0, 2), &report.to_words()), None);
    assert_eq!(pm.vp_stopped(monitor_badge(1, 0), &report.to_words()), None);
    assert_eq!(pm.vp_stopped(monitor_badge(0, 1), &[1, 2]), None);
    assert_eq!(pm.partition_state(VID, id), Ok(PartitionState::Active));

    let notice = pm.vp_stopped(monitor_badge(0, 1), &report.to_words()).unwrap();
    assert_eq!(
        notice.to_string(),
        "partition linux: VP 1 stopped: its VID did not answer in 5000 ms (exit message type 0x80010000 at rip \
         0x100020); partition 1 is Finalized"
    );
    assert_eq!(pm.partition_state(VID, id), Ok(PartitionState::Finalized));
    assert!(!pm.kernel().revoked.is_empty());
    let gone = abi::VpStopReport { reason: abi::VpStopReason::HANDLER_GONE, ..report };
    let notice = pm.vp_stopped(monitor_badge(0, 0), &gone.to_words()).unwrap();
    assert!(notice.to_string().starts_with("partition linux: VP 0 stopped: its VID is gone"), "{notice}");
    // The VID may still delete it.
    pm.delete_partition(VID, id).unwrap();
}

/// A 2-VP manifest partition its VID attached and started VP 0 of:
/// (manager, ID, VP 0, VP 1).
fn running() -> (Pm, u64, CapSlot, CapSlot) {
    let mut pm = PartitionManager::new(Fake::new());
    let id = pm.create_from_manifest(&spec(8 << 20, 2)).unwrap();
    assert_eq!(pm.attach(VID, 0, 1), Ok((id, 8 << 20, 2, Handover::First)));
    pm.release_outgoing();
    let vp = |n: u32| *pm.kernel.configured.iter().find(|(_, (_, i))| *i == n).unwrap().0;
    let (vp0, vp1) = (vp(0), vp(1));
    pm.kernel().started.insert(vp0);
    assert_eq!(pm.take_reattached(), None);
    (pm, id, vp0, vp1)
}

/// Whether the writable RAM of partition `id` (GPA pages 0..0xa0 and
/// 0x100..0x800) was unmapped and mapped again with its RAM, and nothing
/// else was.
fn ram_mapped_again(pm: &mut Pm, id: u64) -> bool {
    let ram = pm.partitions.iter().flatten().find(|p| p.id == id).and_then(|p| p.objects.ram).unwrap().0;
    let unmaps: Vec<(u64, u64)> = pm.kernel().unmaps.iter().map(|&(_, gpa, pages)| (gpa, pages)).collect();
    let maps: Vec<(u64, u64, CapSlot, u64)> =
        pm.kernel().maps.iter().rev().take(2).rev().map(|&(_, gpa, pages, _, m, off)| (gpa, pages, m, off)).collect();
    unmaps == [(0, 0xa0), (0x10_0000, 0x700)] && maps == [(0, 0xa0, ram, 0), (0x10_0000, 0x700, ram, 0x100)]
}

#[test]
fn a_new_instance_of_its_vid_takes_back_a_partition_its_monitor_stopped() {
    let (mut pm, id, vp0, vp1) = running();
    // The VID dies: the monitor stops VP 0 (the kernel's VP is no longer
    // started) and the partition is Finalized.
    pm.kernel().started.remove(&vp0);
    let gone = abi::VpStopReport { reason: abi::VpStopReason::HANDLER_GONE, vp_index: 0, message_type: 0, rip: 0 };
    pm.vp_stopped(monitor_badge(0, 0), &gone.to_words()).unwrap();
    assert_eq!(pm.partition_state(VID, id), Ok(PartitionState::Finalized));
    let revoked = pm.kernel().revoked.len();
    // Another task cannot take it, and nothing is reset for it.
    assert_eq!(pm.attach(OTHER, 0, 1), Err(HvError::ACCESS_DENIED));
    assert!(pm.outgoing().is_empty() && pm.kernel().vp_ops.is_empty());
    assert_eq!(pm.partition_state(VID, id), Ok(PartitionState::Finalized));
    // Its VID, restarted, takes it back: both VPs at power-on, Active,
    // handed out as at the first attach.
    assert_eq!(pm.attach(VID, 0, 1), Ok((id, 8 << 20, 2, Handover::Stopped)));
    assert_eq!(pm.kernel().vp_ops, [("reset", vp0), ("reset", vp1)]);
    assert_eq!(pm.partition_state(VID, id), Ok(PartitionState::Active));
    assert_eq!(pm.outgoing().len(), ATTACH_CAPS);
    assert!(pm.kernel().revoked.len() >= revoked);
    assert!(ram_mapped_again(&mut pm, id));
    assert_eq!(
        pm.take_reattached().unwrap().to_string(),
        "partition linux: attached again after its VID was gone; its VPs are back at power-on and partition 1 is \
         Active for the new instance"
    );
    assert_eq!(pm.take_reattached(), None);
    pm.release_outgoing();
    assert_eq!(pm.attach_vp(VID, id, 1), Ok(()));
    // Taken back, it is watched again: a later stop finalizes it again.
    pm.kernel().started.insert(vp0);
    pm.vp_stopped(monitor_badge(0, 1), &gone.to_words()).unwrap();
    assert_eq!(pm.partition_state(VID, id), Ok(PartitionState::Finalized));
}

#[test]
fn a_partition_left_running_by_its_vid_is_stopped_and_reset_when_it_attaches_again() {
    let (mut pm, id, vp0, vp1) = running();
    // Another task cannot take it over, nor stop it.
    assert_eq!(pm.attach(OTHER, 0, 1), Err(HvError::ACCESS_DENIED));
    assert!(pm.kernel().vp_ops.is_empty() && pm.kernel().unmaps.is_empty());
    let revoked_before = pm.kernel().revoked.clone();
    assert!(revoked_before.is_empty());
    // The same instance attaching again (its reply was lost with a
    // manager that died, and `Retrying` called again) gets it as before.
    assert_eq!(pm.attach(VID, 0, 1), Ok((id, 8 << 20, 2, Handover::First)));
    assert!(pm.kernel().vp_ops.is_empty() && pm.kernel().revoked.is_empty());
    assert_eq!(pm.take_reattached(), None);
    pm.release_outgoing();
    // Its VID, restarted before any monitor stopped a VP: the started VP
    // is suspended, every VP reset, the old capabilities revoked.
    assert_eq!(pm.attach(VID, 0, 2), Ok((id, 8 << 20, 2, Handover::Running)));
    assert_eq!(pm.kernel().vp_ops, [("suspend", vp0), ("reset", vp0), ("reset", vp1)]);
    assert!(pm.kernel().revoked.contains(&vp0) && pm.kernel().revoked.contains(&vp1));
    assert!(ram_mapped_again(&mut pm, id));
    assert_eq!(pm.partition_state(VID, id), Ok(PartitionState::Active));
    let notice = pm.take_reattached().unwrap().to_string();
    assert!(notice.starts_with("partition linux: stopped: its VID is gone"), "{notice}");
}

#[test]
fn a_partition_whose_vp_cannot_be_reset_is_not_handed_out() {
    let (mut pm, id, vp0, _) = running();
    // The kernel refuses the reset (a VP the fake still sees started).
    pm.kernel().configured.remove(&vp0);
    pm.kernel().started.remove(&vp0);
    assert_eq!(pm.attach(VID, 0, 2), Err(HvError::INVALID_VP_STATE));
    assert!(pm.outgoing().is_empty());
    assert_eq!(pm.take_reattached(), None);
    let _ = id;
}

#[test]
fn exit_time_limits_are_kernel_ticks() {
    assert_eq!((ticks(0), ticks(5000), ticks(1), ticks(60_000)), (0, 500, 1, 6000));
    let mut pm = PartitionManager::new(Fake::new());
    pm.create_from_manifest(&Spec { exit_timeout_ms: 0, ..spec(8 << 20, 1) }).unwrap();
    let limits: Vec<u64> = pm
        .kernel()
        .live
        .values()
        .filter_map(|o| match o {
            Object::Monitor { ticks, .. } => Some(*ticks),
            _ => None,
        })
        .collect();
    assert_eq!(limits, [0]);
}

#[test]
fn monitor_badges_never_look_like_client_badges() {
    for client in 1..=16 {
        assert_eq!(monitor_of(client), None);
    }
    assert_eq!(monitor_of(monitor_badge(7, 15)), Some((7, 15)));
    assert_ne!(monitor_badge(0, 0), 0);
}

#[test]
fn kernel_refusals_become_tlfs_statuses() {
    for (error, status) in [
        (ErrorCode::INVALID_ARGUMENT, HvError::INVALID_PARAMETER),
        (ErrorCode::BAD_ADDRESS, HvError::INVALID_PARAMETER),
        (ErrorCode::INVALID_STATE, HvError::INVALID_VP_STATE),
        (ErrorCode::NO_RIGHTS, HvError::ACCESS_DENIED),
        (ErrorCode::WRONG_TYPE, HvError::ACCESS_DENIED),
        (ErrorCode::INVALID_CAPABILITY, HvError::ACCESS_DENIED),
        (ErrorCode::OUT_OF_MEMORY, HvError::INSUFFICIENT_MEMORY),
        (ErrorCode::INVALID_OPERATION, HvError::OPERATION_FAILED),
    ] {
        assert_eq!(hv_error(error), status, "{error:?}");
    }
}

#[test]
fn the_endpoint_name_is_the_manifests() {
    assert_eq!(partition_manager_api::ENDPOINT, sysimage::manifest::PARTITION_MANAGER);
}

#[test]
fn a_guest_crash_is_kept_for_its_vid_only() {
    let mut pm = PartitionManager::new(Fake::new());
    let id = pm.create_from_manifest(&spec(16 << 20, 1)).unwrap();
    assert_eq!(pm.crash_report(VID, id), Ok(None));
    assert_eq!(pm.report_guest_crash(OTHER, id, [1, 2, 3, 4, 5]), Err(HvError::ACCESS_DENIED));
    assert_eq!(pm.crashes(), 0);
    pm.report_guest_crash(VID, id, [0x1e, 2, 3, 4, 5]).unwrap();
    assert_eq!(pm.crash_report(VID, id), Ok(Some([0x1e, 2, 3, 4, 5])));
    assert_eq!(pm.crashes(), 1);
    assert_eq!(pm.last_crash().map(|(_, p)| p), Some([0x1e, 2, 3, 4, 5]));
    assert_eq!(pm.report_guest_crash(VID, id + 100, [0; 5]), Err(HvError::INVALID_PARTITION_ID));
}

#[test]
fn the_core_policy_makes_the_partition_core_exclusive() {
    let mut pm = PartitionManager::new(Fake::new());
    pm.create_from_manifest(&spec(8 << 20, 2)).unwrap();
    assert!(pm.kernel().core_exclusive.is_empty());
    pm.create_from_manifest(&Spec { name: "other", index: 1, core_exclusive: true, ..spec(8 << 20, 2) }).unwrap();
    let partitions: Vec<CapSlot> =
        pm.kernel().live.iter().filter(|(_, o)| matches!(o, Object::Partition)).map(|(slot, _)| *slot).collect();
    assert_eq!(partitions.len(), 2);
    // Only the second.
    assert_eq!(pm.kernel().core_exclusive.iter().copied().collect::<Vec<_>>(), [partitions[1]]);
}

// ---- Monitor pages (TLFS 11.7.4).

/// Manifest partition `index`, named `name`, of 8 MiB and one VP, run by `vid`.
fn numbered(name: &'static str, index: u32, vid: Badge) -> Spec<'static> {
    Spec { name, index, vid, ..spec(8 << 20, 1) }
}

/// Monitor connection 0x12, held by partition 0 (page at 32 MiB), to the
/// port of partition 1 (page at 33 MiB).
const MONITOR: MonitorSpec =
    MonitorSpec { connection_id: 0x12, from: 0, from_page: 0x200_0000, to: Some((1, 0x210_0000)) };

/// The monitor-page mappings the fake kernel was asked for: (partition,
/// GPA, pages, access, memory, offset).
fn page_maps(k: &Fake) -> Vec<(CapSlot, u64, u64, GuestAccess, CapSlot, u64)> {
    k.maps
        .iter()
        .copied()
        .filter(|m| matches!(k.live.get(&m.4), Some(Object::Memory { pages: 1 })) && m.1 >= 8 << 20)
        .collect()
}

/// The PARTITION objects, in creation order.
fn partition_objects(k: &Fake) -> Vec<CapSlot> {
    k.live.iter().filter(|(_, o)| **o == Object::Partition).map(|(c, _)| *c).collect()
}

#[test]
fn a_monitor_page_is_made_once_and_mapped_in_both_partitions() {
    let mut pm = PartitionManager::new(Fake::new());
    pm.declare_monitor(3, MONITOR).unwrap();
    let alpha = pm.create_from_manifest(&numbered("alpha", 0, VID)).unwrap();
    let pages = pm.kernel().count(Object::Memory { pages: 0 });
    let beta = pm.create_from_manifest(&numbered("beta", 1, OTHER)).unwrap();
    // The second build made no page of its own for it: RAM, ROM, legacy.
    assert_eq!(pm.kernel().count(Object::Memory { pages: 0 }), pages + 3);
    let k = pm.kernel();
    let [a, b] = partition_objects(k)[..] else { panic!() };
    let rw = GuestAccess { read: true, write: true, execute: false };
    let maps = page_maps(k);
    let page = maps[0].4;
    assert_eq!(maps, [(a, 0x200_0000, 1, rw, page, 0), (b, 0x210_0000, 1, rw, page, 0)]);
    assert_eq!(k.live[&page], Object::Memory { pages: 1 });
    // Each partition's table has it, so no mapping can overlap it.
    let at = |id| pm.mappings(id).filter(|r| r.count == 1 && r.first >= 0x2000).map(|r| (r.first, r.flags.into_bits()));
    assert_eq!(at(alpha).collect::<Vec<_>>(), [(0x2000, RW)]);
    assert_eq!(at(beta).collect::<Vec<_>>(), [(0x2100, RW)]);
    assert_eq!(pm.map_gpa_pages(VID, alpha, 0x2000, 1, RW), Err(HvError::INVALID_PARAMETER));
}

#[test]
fn a_monitor_page_is_made_by_whichever_partition_is_built_first() {
    let mut pm = PartitionManager::new(Fake::new());
    pm.declare_monitor(0, MONITOR).unwrap();
    // The port's partition first.
    pm.create_from_manifest(&numbered("beta", 1, OTHER)).unwrap();
    let page = page_maps(pm.kernel())[0].4;
    // The holder can take it as soon as it is built.
    pm.create_from_manifest(&numbered("alpha", 0, VID)).unwrap();
    let maps = page_maps(pm.kernel());
    assert_eq!(maps.iter().map(|m| (m.1, m.4)).collect::<Vec<_>>(), [(0x210_0000, page), (0x200_0000, page)]);
    assert_eq!(pm.attach_monitor(VID, 0, 0x12), Ok(0x200_0000));
    // A partition built alone maps its side; its peer may never come.
    let mut pm = PartitionManager::new(Fake::new());
    pm.declare_monitor(0, MONITOR).unwrap();
    pm.create_from_manifest(&numbered("alpha", 0, VID)).unwrap();
    assert_eq!(page_maps(pm.kernel()).len(), 1);
    assert_eq!(pm.attach_monitor(VID, 0, 0x12), Ok(0x200_0000));
}

#[test]
fn a_self_connection_sees_its_page_at_two_gpas_and_a_tasks_port_at_none() {
    let mut pm = PartitionManager::new(Fake::new());
    let own = MonitorSpec { to: Some((0, 0x300_0000)), ..MONITOR };
    pm.declare_monitor(0, own).unwrap();
    // A task's port: only the holder maps it.
    pm.declare_monitor(1, MonitorSpec { connection_id: 0x13, from_page: 0x400_0000, to: None, ..MONITOR }).unwrap();
    pm.create_from_manifest(&numbered("alpha", 0, VID)).unwrap();
    let maps = page_maps(pm.kernel());
    assert_eq!(maps.iter().map(|m| m.1).collect::<Vec<_>>(), [0x200_0000, 0x300_0000, 0x400_0000]);
    assert_eq!(maps[0].4, maps[1].4);
    assert_ne!(maps[0].4, maps[2].4);
    assert_eq!(pm.attach_monitor(VID, 0, 0x13), Ok(0x400_0000));
}

#[test]
fn only_the_holders_vid_attaches_a_monitor_page() {
    let mut pm = PartitionManager::new(Fake::new());
    pm.declare_monitor(0, MONITOR).unwrap();
    pm.create_from_manifest(&numbered("alpha", 0, VID)).unwrap();
    pm.create_from_manifest(&numbered("beta", 1, OTHER)).unwrap();
    // Privilege first: the port's VID may not attach alpha.
    assert_eq!(pm.attach_monitor(OTHER, 0, 0x12), Err(HvError::ACCESS_DENIED));
    assert_eq!(pm.attach_monitor(OTHER, 0, 0x99), Err(HvError::ACCESS_DENIED));
    assert!(pm.outgoing().is_empty());
    assert_eq!(pm.attach_monitor(VID, 7, 0x12), Err(HvError::INVALID_PARTITION_ID));
    // Unknown IDs, and the port's side: beta holds no monitor connection.
    assert_eq!(pm.attach_monitor(VID, 0, 0x99), Err(HvError::INVALID_CONNECTION_ID));
    assert_eq!(pm.attach_monitor(OTHER, 1, 0x12), Err(HvError::INVALID_CONNECTION_ID));
    assert!(pm.outgoing().is_empty());

    assert_eq!(pm.attach_monitor(VID, 0, 0x12), Ok(0x200_0000));
    let page = page_maps(pm.kernel())[0].4;
    let handed: Vec<Object> = pm.outgoing().iter().map(|c| pm.kernel.live[c]).collect();
    assert_eq!(handed, [Object::Copy { of: page, rights: Handout::RamReadWrite }]);
    assert_eq!(handed.len(), partition_manager_api::ATTACH_MONITOR_CAPS);
}

#[test]
fn the_interface_hands_out_monitor_pages_with_tlfs_statuses() {
    let mut manager = PartitionManager::new(Fake::new());
    manager.declare_monitor(0, MONITOR).unwrap();
    manager.create_from_manifest(&numbered("alpha", 0, VID)).unwrap();
    let server = RefCell::new(manager);
    let transport =
        Loopback::new(OTHER, |badge, request: &Message| dispatch(&mut *server.borrow_mut(), badge, request));
    let pm = Client::new(&transport, CapSlot(4));
    assert_eq!(hv_status(&pm.attach_monitor(0, 0x12)), HvStatus::ACCESS_DENIED);
    transport.set_badge(VID);
    assert_eq!(hv_status(&pm.attach_monitor(0, 0x11)), HvStatus::INVALID_CONNECTION_ID);
    assert_eq!(pm.attach_monitor(0, 0x12), Ok(Ok(0x200_0000)));
    assert_eq!(server.borrow().outgoing().len(), partition_manager_api::ATTACH_MONITOR_CAPS);
}

#[test]
fn monitor_declarations_are_checked() {
    let mut pm = PartitionManager::new(Fake::new());
    assert_eq!(pm.declare_monitor(MAX_MONITORS, MONITOR), Err(HvError::INVALID_PARAMETER));
    let unaligned = MonitorSpec { from_page: 0x200_0800, ..MONITOR };
    assert_eq!(pm.declare_monitor(0, unaligned), Err(HvError::INVALID_PARAMETER));
    let beyond = MonitorSpec { to: Some((1, GPA_PAGE_LIMIT * PAGE)), ..MONITOR };
    assert_eq!(pm.declare_monitor(0, beyond), Err(HvError::INVALID_PARAMETER));
    pm.declare_monitor(0, MONITOR).unwrap();
    assert_eq!(pm.declare_monitor(0, MONITOR), Err(HvError::INVALID_PARAMETER));
    // Too late once a partition of it exists: its build would have mapped it.
    pm.create_from_manifest(&numbered("beta", 1, OTHER)).unwrap();
    assert_eq!(
        pm.declare_monitor(1, MonitorSpec { connection_id: 0x13, ..MONITOR }),
        Err(HvError::INVALID_PARTITION_STATE)
    );
    // A page over the partition's own mappings is refused before it is
    // made, and the partition's objects go.
    let mut pm = PartitionManager::new(Fake::new());
    pm.declare_monitor(0, MonitorSpec { from_page: 0x10_0000, ..MONITOR }).unwrap();
    assert_eq!(pm.create_from_manifest(&numbered("alpha", 0, VID)), Err(HvError::INVALID_PARAMETER));
    assert_eq!(pm.count(), 0);
    assert!(pm.kernel().live.is_empty(), "{:?}", pm.kernel().live);
}

#[test]
fn a_monitor_page_outlives_its_partitions_and_its_vid_loses_it_on_finalize() {
    let mut pm = PartitionManager::new(Fake::new());
    pm.declare_monitor(0, MONITOR).unwrap();
    let alpha = pm.create_from_manifest(&numbered("alpha", 0, VID)).unwrap();
    let beta = pm.create_from_manifest(&numbered("beta", 1, OTHER)).unwrap();
    let page = page_maps(pm.kernel())[0].4;
    // Finalizing the port's partition takes nothing from the holder's VID.
    pm.finalize_partition(OTHER, beta).unwrap();
    assert!(!pm.kernel().revoked.contains(&page));
    pm.delete_partition(OTHER, beta).unwrap();
    assert_eq!(pm.attach_monitor(VID, 0, 0x12), Ok(0x200_0000));
    pm.release_outgoing();
    // Finalizing the holder revokes the copies its VID got.
    pm.finalize_partition(VID, alpha).unwrap();
    assert!(pm.kernel().revoked.contains(&page));
    assert_eq!(pm.attach_monitor(VID, 0, 0x12), Err(HvError::INVALID_PARTITION_STATE));
    pm.delete_partition(VID, alpha).unwrap();
    // With both partitions gone the page stays, and it alone.
    let live: Vec<Object> = pm.kernel().live.values().copied().collect();
    assert_eq!(live, [Object::Memory { pages: 1 }]);
}

/// A journal area, as the task maps it.
fn journal_area() -> Vec<u8> {
    vec![0; (JOURNAL_PAGES * PAGE) as usize]
}

/// A manager that restarted with the capabilities of `old`'s kernel
/// (the supervisor returns them to the same slots) and `area`'s table.
fn restarted(old: &mut Pm, area: &[u8], gone: &[CapSlot]) -> (Pm, Restored) {
    let mut kernel = core::mem::take(old.kernel());
    for cap in gone {
        kernel.live.remove(cap);
    }
    let mut pm = PartitionManager::new(kernel);
    let live = pm.kernel().live.clone();
    let holds = |cap: CapSlot, held: Held| {
        matches!(
            (live.get(&cap), held),
            (Some(Object::Partition), Held::Partition)
                | (Some(Object::Memory { .. }), Held::Memory)
                | (Some(Object::Vp), Held::Vp)
                | (Some(Object::Monitor { .. }), Held::Endpoint)
        )
    };
    let mut dropped = Vec::new();
    let restored = pm.restore(journal::latest(area).expect("a whole copy"), holds, |c| dropped.push(c)).unwrap();
    assert_eq!(dropped.is_empty(), restored.dropped == 0, "dropped capabilities {dropped:?}");
    (pm, restored)
}

/// What a manager's table says of a partition, for comparing two: its
/// state and its mappings (first page, pages, flags).
type View = (Result<PartitionState, HvError>, Vec<(u64, u64, u32)>);

fn view(pm: &mut Pm, owner: Badge, id: u64) -> View {
    let mappings = pm.mappings(id).map(|r| (r.first, r.count, r.flags.into_bits())).collect();
    (pm.partition_state(owner, id), mappings)
}

#[test]
fn a_restarted_manager_recovers_its_table_from_the_journal() {
    let mut pm = PartitionManager::new(Fake::new());
    pm.declare_monitor(0, MONITOR).unwrap();
    let alpha = pm.create_from_manifest(&Spec { vcpus: 2, ..numbered("alpha", 0, VID) }).unwrap();
    let beta = pm.create_from_manifest(&numbered("beta", 1, OTHER)).unwrap();
    let made = pm.create_partition(VID, 0).unwrap();
    pm.report_guest_crash(OTHER, beta, [1, 2, 3, 4, 5]).unwrap();
    assert_eq!(pm.attach(OTHER, 1, 1).map(|a| a.3), Ok(Handover::First));
    pm.release_outgoing();
    let mut area = journal_area();
    pm.save(&mut area);
    let before: Vec<_> = [(VID, alpha), (OTHER, beta), (VID, made)].map(|(o, id)| view(&mut pm, o, id)).into();
    let slots: BTreeSet<CapSlot> = pm.slots().collect();

    let (mut pm, restored) = restarted(&mut pm, &area, &[]);
    assert_eq!(restored, Restored { partitions: 3, dropped: 0 });
    let after: Vec<_> = [(VID, alpha), (OTHER, beta), (VID, made)].map(|(o, id)| view(&mut pm, o, id)).into();
    assert_eq!(before, after);
    assert_eq!(pm.slots().collect::<BTreeSet<_>>(), slots);
    assert_eq!(pm.crash_report(OTHER, beta), Ok(Some([1, 2, 3, 4, 5])));
    // Ownership is kept: another task still learns nothing.
    assert_eq!(pm.partition_state(OTHER, alpha), Err(HvError::ACCESS_DENIED));
    // It is its VPs' monitor again: a stop report names the partition.
    let report = abi::VpStopReport { reason: abi::VpStopReason::HANDLER_GONE, vp_index: 1, message_type: 0, rip: 0 };
    let notice = pm.vp_stopped(monitor_badge(0, 1), &report.to_words()).expect("a VP of alpha");
    assert_eq!((notice.partition.as_str(), notice.id), ("alpha", alpha));
    assert_eq!(pm.partition_state(VID, alpha), Ok(PartitionState::Finalized));
    // How each was handed out is kept: beta's VID instance that attached
    // it gets it as before, a new one takes it back running, and alpha's,
    // stopped by its monitor.
    assert_eq!(pm.attach(OTHER, 1, 1).map(|a| a.3), Ok(Handover::First));
    pm.release_outgoing();
    assert_eq!(pm.attach(OTHER, 1, 2).map(|a| a.3), Ok(Handover::Running));
    assert_eq!(pm.attach(VID, 0, 1).map(|a| a.3), Ok(Handover::Stopped));
    pm.release_outgoing();
    // IDs are not reused; delete still frees every object of the partition.
    assert!(pm.create_partition(VID, 0).unwrap() > made);
    for (owner, id) in [(VID, alpha), (OTHER, beta)] {
        pm.finalize_partition(owner, id).unwrap();
        pm.delete_partition(owner, id).unwrap();
    }
    let left: Vec<_> = pm.kernel().live.values().filter(|o| matches!(o, Object::Memory { pages: 2.. })).collect();
    assert!(left.is_empty(), "RAM left after deleting both manifest partitions: {left:?}");
}

#[test]
fn a_partition_whose_capability_went_is_dropped() {
    let mut pm = PartitionManager::new(Fake::new());
    let alpha = pm.create_from_manifest(&numbered("alpha", 0, VID)).unwrap();
    let beta = pm.create_from_manifest(&numbered("beta", 1, OTHER)).unwrap();
    let mut area = journal_area();
    pm.save(&mut area);
    let vp = pm.vp(OTHER, beta, 0).unwrap();
    let (mut pm, restored) = restarted(&mut pm, &area, &[vp]);
    assert_eq!(restored, Restored { partitions: 1, dropped: 1 });
    assert_eq!(pm.partition_state(VID, alpha), Ok(PartitionState::Active));
    assert_eq!(pm.partition_state(OTHER, beta), Err(HvError::INVALID_PARTITION_ID));
}

#[test]
fn a_torn_write_leaves_the_older_copy_and_an_unchanged_table_is_not_written() {
    let mut pm = PartitionManager::new(Fake::new());
    let alpha = pm.create_from_manifest(&numbered("alpha", 0, VID)).unwrap();
    let mut area = journal_area();
    pm.save(&mut area);
    let first = area.clone();
    pm.save(&mut area);
    // The second copy's payload was written, but not its header.
    let half = area.len() / 2;
    assert_eq!(journal::latest(&area), journal::latest(&first));
    assert!(area[half..half + 32].iter().all(|&b| b == 0));
    // A change goes to the second copy; torn, the first still reads.
    pm.finalize_partition(VID, alpha).unwrap();
    pm.save(&mut area);
    assert_ne!(journal::latest(&area), journal::latest(&first));
    let newest = journal::latest(&area).unwrap().to_vec();
    area[half + 100] ^= 1;
    assert_eq!(journal::latest(&area), journal::latest(&first));
    area[half + 100] ^= 1;
    assert_eq!(journal::latest(&area), Some(&newest[..]));
    // The next change goes to the first copy, and wins.
    pm.delete_partition(VID, alpha).unwrap();
    pm.save(&mut area);
    let (mut pm, restored) = restarted(&mut pm, &area, &[]);
    assert_eq!(restored, Restored { partitions: 0, dropped: 0 });
    assert_eq!(pm.partition_state(VID, alpha), Err(HvError::INVALID_PARTITION_ID));
    // Neither copy whole: nothing to read.
    assert_eq!(journal::latest(&journal_area()), None);
}

/// A partition a VP's monitor stopped that its (slow, living) VID then
/// finalizes itself ended: a later instance of the VID does not take it back.
#[test]
fn a_partition_its_vid_finalized_after_its_monitor_stays_ended() {
    let (mut pm, id, _, _) = running();
    let gone = abi::VpStopReport { reason: abi::VpStopReason::HANDLER_TIMED_OUT, vp_index: 0, message_type: 0, rip: 0 };
    pm.vp_stopped(monitor_badge(0, 0), &gone.to_words()).unwrap();
    assert_eq!(pm.finalize_partition(VID, id), Err(HvError::INVALID_PARTITION_STATE));
    assert_eq!(pm.attach(VID, 0, 2), Err(HvError::INVALID_PARTITION_STATE));
}

/// A manager that died between unmapping a range and mapping it again in
/// a take-back leaves it unmapped, its journal still listing it: the attach
/// made again maps it (the kernel's INVALID_ARGUMENT for a range not
/// mapped); any other refusal still fails it.
#[test]
fn a_take_back_cut_short_by_the_managers_death_is_finished_by_the_next() {
    let (mut pm, id, _, _) = running();
    pm.kernel().refuse_unmap = Some(ErrorCode::INVALID_ARGUMENT);
    assert_eq!(pm.attach(VID, 0, 2).map(|a| a.3), Ok(Handover::Running));
    let ram = pm.partitions.iter().flatten().find(|p| p.id == id).and_then(|p| p.objects.ram).unwrap().0;
    assert!(pm.kernel().maps.iter().filter(|m| m.4 == ram && m.1 == 0).count() >= 2, "RAM at GPA 0 mapped again");
    pm.release_outgoing();
    pm.kernel().refuse_unmap = Some(ErrorCode::NO_RIGHTS);
    assert_eq!(pm.attach(VID, 0, 3), Err(HvError::ACCESS_DENIED));
}
