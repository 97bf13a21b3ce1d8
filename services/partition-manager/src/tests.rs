use super::*;
use partition_manager_api::{Client, dispatch, hv_status};
use std::cell::RefCell;
use tessera_idl::testing::Loopback;
use tessera_idl::{CapSlot, Message};
use tlfs::HvStatus;

const VID: Badge = Badge(5);
const OTHER: Badge = Badge(6);
const RW: u32 = 0b0011;
const RX: u32 = 0b0101;

fn active() -> (PartitionManager, u64) {
    let mut pm = PartitionManager::new();
    let id = pm.create_partition(VID, 0).unwrap();
    pm.initialize_partition(VID, id).unwrap();
    (pm, id)
}

#[test]
fn the_full_lifecycle_runs_in_order() {
    let mut pm = PartitionManager::new();
    let id = pm.create_partition(VID, 0).unwrap();
    assert_ne!(id, 0);
    assert_eq!(pm.partition_state(VID, id), Ok(PartitionState::Created));
    pm.initialize_partition(VID, id).unwrap();
    assert_eq!(pm.partition_state(VID, id), Ok(PartitionState::Active));
    pm.create_vp(VID, id, 0).unwrap();
    pm.map_gpa_pages(VID, id, 0, 16, RW).unwrap();
    pm.set_vp_register(VID, id, 0, HvRegisterName::RIP.0, 0x1000).unwrap();
    pm.finalize_partition(VID, id).unwrap();
    assert_eq!(pm.partition_state(VID, id), Ok(PartitionState::Finalized));
    pm.delete_partition(VID, id).unwrap();
    assert_eq!(pm.partition_state(VID, id), Err(HvError::INVALID_PARTITION_ID));
    assert_eq!(pm.count(), 0);
}

#[test]
fn a_never_initialized_partition_can_be_deleted() {
    let mut pm = PartitionManager::new();
    let id = pm.create_partition(VID, 0).unwrap();
    assert_eq!(pm.delete_partition(VID, id), Ok(()));
}

#[test]
fn operations_in_the_wrong_state_are_refused() {
    let state_error = Err(HvError::INVALID_PARTITION_STATE);
    let mut pm = PartitionManager::new();
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
    let mut pm = PartitionManager::new();
    assert_eq!(pm.create_partition(VID, 1), Err(HvError::INVALID_PARAMETER));
    let ids: Vec<u64> = (0..MAX_PARTITIONS).map(|_| pm.create_partition(VID, 0).unwrap()).collect();
    assert_eq!(pm.create_partition(VID, 0), Err(HvError::INSUFFICIENT_MEMORY));
    pm.delete_partition(VID, ids[1]).unwrap();
    let again = pm.create_partition(OTHER, 0).unwrap();
    assert!(!ids.contains(&again));
    assert_eq!(pm.initialize_partition(VID, ids[1]), Err(HvError::INVALID_PARTITION_ID));
}

#[test]
fn vps_are_created_once_within_range() {
    let (mut pm, id) = active();
    for vp in 0..MAX_VPS as u32 {
        pm.create_vp(VID, id, vp).unwrap();
    }
    assert_eq!(pm.create_vp(VID, id, 0), Err(HvError::INVALID_VP_INDEX));
    assert_eq!(pm.create_vp(VID, id, MAX_VPS as u32), Err(HvError::INVALID_VP_INDEX));
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
    pm.map_gpa_pages(VID, id, GPA_PAGE_LIMIT - 1, 1, RW).unwrap();
    let firsts: Vec<u64> = pm.mappings(id).map(|r| r.first).collect();
    assert_eq!(firsts, [0xff, 0x100, 0x110, GPA_PAGE_LIMIT - 1]);
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
    let server = RefCell::new(PartitionManager::new());
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
    let mut manager = PartitionManager::new();
    let reply = dispatch(&mut manager, VID, &Message::from_words(0x4e, &[1, 1 << 32]).unwrap());
    assert_eq!(reply.label(), tessera_idl::ProtocolError::MALFORMED_REQUEST.0);
    let reply = dispatch(&mut manager, VID, &Message::new(0x44));
    assert_eq!(reply.label(), tessera_idl::ProtocolError::UNKNOWN_OPERATION.0);
}
