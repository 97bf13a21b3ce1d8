//! HvPostMessage and HvSignalEvent (TLFS 11.11.1, 11.11.2): the checks the
//! VID makes, what it passes to the broker, and the broker's answers, each
//! status of the calls' tables.

use super::*;
use tlfs::hypercall::{HvInputPostMessage, HvInputSignalEvent};
use tlfs::zerocopy::IntoBytes;

fn post_input(connection_id: u32, message_type: u32, payload: &[u8]) -> HvInputPostMessage {
    let mut input = HvInputPostMessage {
        connection_id,
        reserved: 0,
        message_type,
        payload_size: payload.len() as u32,
        payload: [0; 240],
    };
    input.payload[..payload.len()].copy_from_slice(payload);
    input
}

fn post(input: &HvInputPostMessage, partition: &mut Partition) -> HvStatus {
    let mut mem = Mem::new();
    mem.put(IN, input.as_bytes());
    status(&call(control(HvCallCode::POST_MESSAGE), &mut mem, partition))
}

fn signal_fast(connection_id: u32, flag_number: u16, reserved: u16, partition: &mut Partition) -> HvStatus {
    let input = HvInputSignalEvent { connection_id, flag_number, reserved };
    let rdx = u64::from_le_bytes(input.as_bytes().try_into().unwrap());
    let who = caller(control(HvCallCode::SIGNAL_EVENT).with_fast(true), rdx, 0);
    status(&run(&who, &mut Mem::new(), partition))
}

#[test]
fn post_message_passes_the_connection_type_and_payload_to_the_broker() {
    let mut p = Partition::new(2);
    let payload: Vec<u8> = (0..13).map(|i| 0xa0 + i).collect();
    assert_eq!(post(&post_input(0x10, 0x42, &payload), &mut p), HvStatus::SUCCESS);
    assert_eq!(p.posts, vec![(0x10, 0x42, payload)]);
    // The largest payload, and an empty one.
    let full = [0x5a; 240];
    assert_eq!(post(&post_input(0x10, 7, &full), &mut p), HvStatus::SUCCESS);
    assert_eq!(post(&post_input(0x10, 7, &[]), &mut p), HvStatus::SUCCESS);
    assert_eq!(p.posts[1].2, full.to_vec());
    assert!(p.posts[2].2.is_empty());
}

#[test]
fn post_message_refuses_what_the_vid_checks_without_asking_the_broker() {
    let mut p = Partition::new(1);
    // PayloadSize above 240.
    let mut big = post_input(0x10, 1, &[1; 240]);
    big.payload_size = 241;
    assert_eq!(post(&big, &mut p), HvStatus::INVALID_PARAMETER);
    big.payload_size = u32::MAX;
    assert_eq!(post(&big, &mut p), HvStatus::INVALID_PARAMETER);
    // RsvdZ.
    let mut reserved = post_input(0x10, 1, &[1]);
    reserved.reserved = 1 << 31;
    assert_eq!(post(&reserved, &mut p), HvStatus::INVALID_PARAMETER);
    // Message type 0 (HvMessageTypeNone) and the hypervisor's types.
    assert_eq!(post(&post_input(0x10, 0, &[1]), &mut p), HvStatus::INVALID_PARAMETER);
    assert_eq!(post(&post_input(0x10, 0x8000_0000, &[1]), &mut p), HvStatus::INVALID_PARAMETER);
    assert_eq!(post(&post_input(0x10, 0x8000_0010, &[1]), &mut p), HvStatus::INVALID_PARAMETER);
    assert!(p.untouched());
}

#[test]
fn post_message_is_a_memory_call_gated_on_post_messages() {
    let mut p = Partition::new(1);
    let mut mem = Mem::new();
    mem.put(IN, post_input(0x10, 1, &[1]).as_bytes());
    let mut who = caller(control(HvCallCode::POST_MESSAGE), IN, 0);
    who.privileges = all_privileges().with_post_messages(false);
    assert_eq!(status(&run(&who, &mut mem, &mut p)), HvStatus::ACCESS_DENIED);
    // SignalEvents does not grant it.
    who.privileges = HvPartitionPrivilegeMask::new().with_signal_events(true);
    assert_eq!(status(&run(&who, &mut mem, &mut p)), HvStatus::ACCESS_DENIED);
    // Its 256-byte input does not fit the fast registers: not a fast call.
    let fast = caller(control(HvCallCode::POST_MESSAGE).with_fast(true), 0x10, 1);
    assert_eq!(status(&run(&fast, &mut mem, &mut p)), HvStatus::INVALID_HYPERCALL_INPUT);
    // Not a rep call; the input GPA is checked as any memory call's.
    let rep = control(HvCallCode::POST_MESSAGE).with_rep_count(1);
    assert_eq!(status(&run(&caller(rep, IN, 0), &mut mem, &mut p)), HvStatus::INVALID_HYPERCALL_INPUT);
    assert_eq!(
        status(&run(&caller(control(HvCallCode::POST_MESSAGE), IN + 4, 0), &mut mem, &mut p)),
        HvStatus::INVALID_ALIGNMENT
    );
    // 256 bytes from 0xf08 cross the page.
    assert_eq!(
        status(&run(&caller(control(HvCallCode::POST_MESSAGE), IN + 0xf08, 0), &mut mem, &mut p)),
        HvStatus::INVALID_ALIGNMENT
    );
    assert_eq!(
        status(&run(&caller(control(HvCallCode::POST_MESSAGE), RAM_END, 0), &mut mem, &mut p)),
        HvStatus::INVALID_ALIGNMENT
    );
    assert!(p.untouched());
    // Its output GPA is ignored (it has no output).
    assert_eq!(status(&run(&caller(control(HvCallCode::POST_MESSAGE), IN, 0x3), &mut mem, &mut p)), HvStatus::SUCCESS);
}

#[test]
fn post_message_returns_the_brokers_statuses_of_its_table() {
    for e in [
        HvError::ACCESS_DENIED,
        HvError::INVALID_PARAMETER,
        HvError::INVALID_CONNECTION_ID,
        HvError::INVALID_PORT_ID,
        HvError::INSUFFICIENT_BUFFERS,
        HvError::INVALID_VP_INDEX,
        HvError::INVALID_SYNIC_STATE,
    ] {
        let mut p = Partition::new(1);
        p.broker = Err(e);
        assert_eq!(post(&post_input(0x10, 1, &[1, 2]), &mut p), e.status(), "{e:?}");
        assert_eq!(p.posts.len(), 1);
    }
    // Anything else (a broker gone, or one answering nonsense) is a
    // connection that cannot be used.
    for e in
        [HvError::OPERATION_FAILED, HvError::NO_DATA, HvError::INVALID_HYPERCALL_CODE, HvError::INSUFFICIENT_MEMORY]
    {
        let mut p = Partition::new(1);
        p.broker = Err(e);
        assert_eq!(post(&post_input(0x10, 1, &[1, 2]), &mut p), HvStatus::INVALID_CONNECTION_ID, "{e:?}");
    }
}

#[test]
fn signal_event_is_a_fast_call_gated_on_signal_events() {
    let mut p = Partition::new(1);
    assert_eq!(signal_fast(0x11, 3, 0, &mut p), HvStatus::SUCCESS);
    assert_eq!(p.signals, vec![(0x11, 3)]);
    // RsvdZ.
    assert_eq!(signal_fast(0x11, 3, 1, &mut p), HvStatus::INVALID_PARAMETER);
    assert_eq!(signal_fast(0x11, 3, 0x8000, &mut p), HvStatus::INVALID_PARAMETER);
    assert_eq!(p.signals.len(), 1);
    // Without the privilege (PostMessages does not grant it).
    let input = HvInputSignalEvent { connection_id: 0x11, flag_number: 0, reserved: 0 };
    let rdx = u64::from_le_bytes(input.as_bytes().try_into().unwrap());
    let mut who = caller(control(HvCallCode::SIGNAL_EVENT).with_fast(true), rdx, 0);
    who.privileges = HvPartitionPrivilegeMask::new().with_post_messages(true);
    assert_eq!(status(&run(&who, &mut Mem::new(), &mut p)), HvStatus::ACCESS_DENIED);
    assert_eq!(p.signals.len(), 1);
    // The memory form reads the same 8 bytes.
    let mut mem = Mem::new();
    mem.put(IN, HvInputSignalEvent { connection_id: 0x12, flag_number: 0x7ff, reserved: 0 }.as_bytes());
    assert_eq!(status(&call(control(HvCallCode::SIGNAL_EVENT), &mut mem, &mut p)), HvStatus::SUCCESS);
    assert_eq!(p.signals[1], (0x12, 0x7ff));
}

#[test]
fn signal_event_from_a_32_bit_caller_reads_ebx_ecx() {
    let mut p = Partition::new(1);
    let control = control(HvCallCode::SIGNAL_EVENT).with_fast(true).into_bits();
    let mut who = caller(HvHypercallInput::new(), 0, 0);
    who.mode = CpuMode::Protected32;
    // Input in EBX:ECX: connection ID in ECX, flag number in EBX's low half.
    who.regs = CallerRegisters {
        rax: control & 0xffff_ffff,
        rdx: control >> 32,
        rbx: 9,
        rcx: 0x11,
        ..CallerRegisters::default()
    };
    assert_eq!(status(&run(&who, &mut Mem::new(), &mut p)), HvStatus::SUCCESS);
    assert_eq!(p.signals, vec![(0x11, 9)]);
}

#[test]
fn signal_event_returns_the_brokers_statuses_of_its_table() {
    for e in [
        HvError::ACCESS_DENIED,
        HvError::INVALID_PARAMETER,
        HvError::INVALID_CONNECTION_ID,
        HvError::INVALID_PORT_ID,
        HvError::INVALID_VP_INDEX,
        HvError::INVALID_SYNIC_STATE,
    ] {
        let mut p = Partition::new(1);
        p.broker = Err(e);
        assert_eq!(signal_fast(0x11, 0, 0, &mut p), e.status(), "{e:?}");
    }
    // INSUFFICIENT_BUFFERS is not HvSignalEvent's (flags are bits, never
    // queued): an answer outside the table.
    for e in [HvError::INSUFFICIENT_BUFFERS, HvError::OPERATION_FAILED, HvError::NO_DATA] {
        let mut p = Partition::new(1);
        p.broker = Err(e);
        assert_eq!(signal_fast(0x11, 0, 0, &mut p), HvStatus::INVALID_CONNECTION_ID, "{e:?}");
    }
}

#[test]
fn without_a_broker_no_connection_exists() {
    // The trait's defaults: a partition whose VID has no broker.
    struct Alone;
    impl HypercallTarget for Alone {
        fn vp_count(&self) -> u32 {
            1
        }
        fn flush_tlb(&mut self, _: &VpSet, _: Flush, _: Option<&[HvGvaRange]>) {}
        fn send_ipi(&mut self, _: u8, _: &VpSet) {}
        fn long_spin_wait(&mut self, _: HvVpIndex, _: u64) {}
        fn get_vp_register(&mut self, _: HvVpIndex, _: HvRegisterName) -> HvResult<HvRegisterValue> {
            Err(HvError::INVALID_PARAMETER)
        }
        fn set_vp_register(&mut self, _: HvVpIndex, _: HvRegisterName, _: HvRegisterValue) -> HvResult<()> {
            Err(HvError::INVALID_PARAMETER)
        }
        fn apic_id_to_vp_index(&self, _: u32) -> Option<HvVpIndex> {
            None
        }

        fn paging_features(&self) -> crate::translate::PagingFeatures {
            crate::translate::PagingFeatures { phys_bits: 40, huge_pages: false }
        }

        fn overlay_at(&self, _: u64) -> bool {
            false
        }
    }
    let mut mem = Mem::new();
    mem.put(IN, post_input(0x10, 1, &[1]).as_bytes());
    let who = caller(control(HvCallCode::POST_MESSAGE), IN, 0);
    assert_eq!(
        handle(&who, &mut [0u128; 6], &mut mem, &mut Alone).result().unwrap().status(),
        HvStatus::INVALID_CONNECTION_ID
    );
    let who = caller(control(HvCallCode::SIGNAL_EVENT).with_fast(true), 0x11, 0);
    assert_eq!(
        handle(&who, &mut [0u128; 6], &mut mem, &mut Alone).result().unwrap().status(),
        HvStatus::INVALID_CONNECTION_ID
    );
}
