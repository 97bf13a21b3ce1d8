//! Each call's own checks and effects.

use super::*;
use tlfs::HvPartitionId;
use tlfs::hypercall::{
    HvFlushFlags, HvGenericSetFormat, HvInputFlushVirtualAddress, HvInputFlushVirtualAddressEx,
    HvInputGetVpIndexFromApicId, HvInputSendSyntheticClusterIpiEx, HvRegisterAssoc, HvVpSetHeader,
};

fn flush_input(address_space: u64, flags: u64, mask: u64) -> HvInputFlushVirtualAddress {
    HvInputFlushVirtualAddress { address_space, flags: HvFlushFlags::from_bits(flags), processor_mask: mask }
}

const ALL_PROCESSORS: u64 = 1;
const ALL_SPACES: u64 = 2;
const NON_GLOBAL: u64 = 4;

fn flush(mem: &mut Mem, p: &mut Partition, input: HvInputFlushVirtualAddress) -> HvStatus {
    mem.put(IN, input.as_bytes());
    status(&call(control(HvCallCode::FLUSH_VIRTUAL_ADDRESS_SPACE), mem, p))
}

#[test]
fn flush_space_names_vps_and_address_spaces() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(3));
    assert_eq!(flush(&mut mem, &mut p, flush_input(0x5000, NON_GLOBAL, 0b1_0110)), HvStatus::SUCCESS);
    assert_eq!(flush(&mut mem, &mut p, flush_input(u64::MAX, ALL_SPACES | ALL_PROCESSORS, 0)), HvStatus::SUCCESS);
    assert_eq!(
        p.flushes,
        [
            // VP 4 is not in the partition.
            (vec![1, 2], Flush { address_space: Some(0x5000), non_global_only: true }, None),
            (vec![0, 1, 2], Flush { address_space: None, non_global_only: false }, None),
        ]
    );
}

#[test]
fn flush_space_refuses_what_9_4_2_lists() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(3));
    for input in [
        flush_input(0x5000, 0x8, 1),        // reserved flag
        flush_input(0x5000, 1 << 63, 1),    // reserved flag
        flush_input(1 << 52, 0, 1),         // reserved CR3 bit
        flush_input(0x5000, 0, 0),          // no processor
        flush_input(0x5000, ALL_SPACES, 0), // no processor
    ] {
        assert_eq!(flush(&mut mem, &mut p, input), HvStatus::INVALID_PARAMETER, "{input:?}");
    }
    assert!(p.untouched());
}

#[test]
fn flush_list_refuses_non_global_only_and_passes_ranges() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(2));
    mem.put(IN, flush_input(0x5000, NON_GLOBAL, 1).as_bytes());
    mem.put(IN + 24, [0x7000_0003u64, 0xffff_8000_0000_0000].as_bytes());
    let list = control(HvCallCode::FLUSH_VIRTUAL_ADDRESS_LIST).with_rep_count(2);
    let outcome = call(list, &mut mem, &mut p);
    assert_eq!((status(&outcome), outcome.result().unwrap().reps_completed()), (HvStatus::INVALID_PARAMETER, 0));
    mem.put(IN, flush_input(0x5000, 0, 1).as_bytes());
    let outcome = call(list, &mut mem, &mut p);
    assert_eq!((status(&outcome), outcome.result().unwrap().reps_completed()), (HvStatus::SUCCESS, 2));
    let flush = Flush { address_space: Some(0x5000), non_global_only: false };
    assert_eq!(p.flushes, [(vec![0], flush, Some(vec![0x7000_0003, 0xffff_8000_0000_0000]))]);
}

/// An Ex flush of `banks` (lowest first) under `valid_banks_mask`.
fn flush_ex(mem: &mut Mem, p: &mut Partition, format: u64, valid: u64, banks: &[u64], flags: u64) -> HvStatus {
    let input = HvInputFlushVirtualAddressEx {
        address_space: 0x5000,
        flags: HvFlushFlags::from_bits(flags),
        processor_set: HvVpSetHeader { format: HvGenericSetFormat(format), valid_banks_mask: valid },
    };
    mem.put(IN, input.as_bytes());
    mem.put(IN + 32, banks.as_bytes());
    let c = control(HvCallCode::FLUSH_VIRTUAL_ADDRESS_SPACE_EX).with_variable_header_size(banks.len() as u16);
    status(&call(c, mem, p))
}

#[test]
fn flush_space_ex_takes_sparse_and_all_sets() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(70));
    // Banks 0 and 2: VPs 0, 5 and 130; 130 is beyond the partition.
    assert_eq!(flush_ex(&mut mem, &mut p, 0, 0b101, &[0x21, 0x4], 0), HvStatus::SUCCESS);
    // Bank 1: VPs 69 (the last) and 70 (beyond).
    assert_eq!(flush_ex(&mut mem, &mut p, 0, 0b10, &[0b11 << 5], 0), HvStatus::SUCCESS);
    assert_eq!(flush_ex(&mut mem, &mut p, 1, 0, &[], 0), HvStatus::SUCCESS);
    // All processors ignores even a malformed set.
    assert_eq!(flush_ex(&mut mem, &mut p, 7, 0, &[], ALL_PROCESSORS), HvStatus::SUCCESS);
    let vps: Vec<Vec<u32>> = p.flushes.iter().map(|(vps, _, _)| vps.clone()).collect();
    assert_eq!(vps, [vec![0, 5], vec![69], (0..70).collect(), (0..70).collect()]);
}

#[test]
fn flush_space_ex_refuses_bad_sets() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(70));
    // Unknown format, fewer banks than the mask names, an all-zero set.
    assert_eq!(flush_ex(&mut mem, &mut p, 2, 0, &[], 0), HvStatus::INVALID_PARAMETER);
    assert_eq!(flush_ex(&mut mem, &mut p, 0, 0b11, &[1], 0), HvStatus::INVALID_PARAMETER);
    assert_eq!(flush_ex(&mut mem, &mut p, 0, 0b1, &[0], 0), HvStatus::INVALID_PARAMETER);
    assert_eq!(flush_ex(&mut mem, &mut p, 0, 0, &[], 0), HvStatus::INVALID_PARAMETER);
    assert_eq!(flush_ex(&mut mem, &mut p, 1, 0, &[], 0x10), HvStatus::INVALID_PARAMETER);
    assert!(p.untouched());
}

#[test]
fn flush_list_ex_reads_ranges_after_the_banks() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(70));
    let input = HvInputFlushVirtualAddressEx {
        address_space: 0,
        flags: HvFlushFlags::from_bits(ALL_SPACES),
        processor_set: HvVpSetHeader { format: HvGenericSetFormat::SPARSE_4K, valid_banks_mask: 0b10 },
    };
    mem.put(IN, input.as_bytes());
    mem.put(IN + 32, [1u64 << 2, 0x9000, 0xa001].as_bytes());
    let c = control(HvCallCode::FLUSH_VIRTUAL_ADDRESS_LIST_EX).with_variable_header_size(1).with_rep_count(2);
    let outcome = call(c, &mut mem, &mut p);
    assert_eq!((status(&outcome), outcome.result().unwrap().reps_completed()), (HvStatus::SUCCESS, 2));
    let flush = Flush { address_space: None, non_global_only: false };
    assert_eq!(p.flushes, [(vec![66], flush, Some(vec![0x9000, 0xa001]))]);
}

#[test]
fn ipi_vectors_vtl_and_reserved_bytes_are_checked() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(2));
    let send = |mem: &mut Mem, p: &mut Partition, input: HvInputSendSyntheticClusterIpi| {
        mem.put(IN, input.as_bytes());
        status(&call(control(HvCallCode::SEND_SYNTHETIC_CLUSTER_IPI), mem, p))
    };
    for vector in [0, 2, 0x0f, 0x100, u32::MAX] {
        assert_eq!(send(&mut mem, &mut p, ipi(vector, 1)), HvStatus::INVALID_PARAMETER, "{vector:#x}");
    }
    let vtl1 = HvInputSendSyntheticClusterIpi { target_vtl: HvInputVtl::from_bits(0x11), ..ipi(0x30, 1) };
    assert_eq!(send(&mut mem, &mut p, vtl1), HvStatus::INVALID_PARAMETER);
    let reserved = HvInputSendSyntheticClusterIpi { reserved: [0, 1, 0], ..ipi(0x30, 1) };
    assert_eq!(send(&mut mem, &mut p, reserved), HvStatus::INVALID_PARAMETER);
    assert!(p.untouched());
    for vector in [0x10, 0xff] {
        assert_eq!(send(&mut mem, &mut p, ipi(vector, u64::MAX)), HvStatus::SUCCESS);
    }
    assert_eq!(p.ipis, [(0x10, vec![0, 1]), (0xff, vec![0, 1])]);
}

fn ipi_ex(mem: &mut Mem, p: &mut Partition, format: HvGenericSetFormat, valid: u64, banks: &[u64]) -> HvStatus {
    let input = HvInputSendSyntheticClusterIpiEx {
        vector: 0xe0,
        target_vtl: HvInputVtl::new(),
        reserved: [0; 3],
        processor_set: HvVpSetHeader { format, valid_banks_mask: valid },
    };
    mem.put(IN, input.as_bytes());
    mem.put(IN + 24, banks.as_bytes());
    let c = control(HvCallCode::SEND_SYNTHETIC_CLUSTER_IPI_EX).with_variable_header_size(banks.len() as u16);
    status(&call(c, mem, p))
}

#[test]
fn ipi_ex_reaches_every_vp_of_a_large_partition_through_sparse_banks() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(130));
    for vp in 0..130u32 {
        let bank = vp / 64;
        // Name the VP, and VP 4095 in the last bank, which does not exist.
        let (valid, banks) = (1 << bank | 1 << 63, [1u64 << (vp % 64), 1 << 63]);
        assert_eq!(ipi_ex(&mut mem, &mut p, HvGenericSetFormat::SPARSE_4K, valid, &banks), HvStatus::SUCCESS);
        assert_eq!(p.ipis.pop(), Some((0xe0, vec![vp])), "VP {vp}");
    }
    // The TLFS 7.8.7.5 example: VPs 0, 5 and 130 of a 200-VP partition.
    p.vps = 200;
    assert_eq!(ipi_ex(&mut mem, &mut p, HvGenericSetFormat::SPARSE_4K, 0x5, &[0x21, 0x04]), HvStatus::SUCCESS);
    assert_eq!(ipi_ex(&mut mem, &mut p, HvGenericSetFormat::ALL, 0, &[]), HvStatus::SUCCESS);
    // An empty set sends nothing and is not an error.
    assert_eq!(ipi_ex(&mut mem, &mut p, HvGenericSetFormat::SPARSE_4K, 0, &[]), HvStatus::SUCCESS);
    assert_eq!(p.ipis, [(0xe0, vec![0, 5, 130]), (0xe0, (0..200).collect()), (0xe0, vec![])]);
    assert_eq!(ipi_ex(&mut mem, &mut p, HvGenericSetFormat(2), 0, &[]), HvStatus::INVALID_PARAMETER);
    assert_eq!(ipi_ex(&mut mem, &mut p, HvGenericSetFormat::SPARSE_4K, 0b111, &[1, 1]), HvStatus::INVALID_PARAMETER);
}

#[test]
fn ipi_ex_by_xmm_fast_input() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(100));
    // Vector and set header in RDX, R8 and XMM0 low; two banks in XMM0 high and XMM1 low.
    let c = control(HvCallCode::SEND_SYNTHETIC_CLUSTER_IPI_EX).with_fast(true).with_variable_header_size(2);
    let who = caller(c, 0x40, HvGenericSetFormat::SPARSE_4K.0);
    let mut xmm = [0b11u128 | 1 << 64, 1 << 35, 0, 0, 0, 0];
    assert_eq!(status(&handle(&who, &mut xmm, &mut mem, &mut p)), HvStatus::SUCCESS);
    assert_eq!(p.ipis, [(0x40, vec![0, 99])]);
}

#[test]
fn long_spin_waits_reach_the_target_with_the_calling_vp() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(2));
    let outcome = run(&caller(control(HvCallCode::NOTIFY_LONG_SPIN_WAIT).with_fast(true), 4096, 0), &mut mem, &mut p);
    assert_eq!(status(&outcome), HvStatus::SUCCESS);
    assert_eq!(p.spins, [(1, 4096)]);
}

#[test]
fn get_vp_registers_writes_values_and_stops_at_the_first_bad_name() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(2));
    p.regs.insert((1, HvRegisterName::RIP.0), HvRegisterValue { low: 0xfff0, high: 0 });
    p.regs.insert((1, HvRegisterName::GDTR.0), HvRegisterValue { low: 0x27 << 48, high: 0x9000 });
    mem.put(IN, registers_header(1).as_bytes());
    mem.put(IN + 16, [HvRegisterName::RIP.0, HvRegisterName::GDTR.0, 0x1234, HvRegisterName::RIP.0].as_bytes());
    let get = control(HvCallCode::GET_VP_REGISTERS);
    let outcome = call(get.with_rep_count(2), &mut mem, &mut p);
    assert_eq!((status(&outcome), outcome.result().unwrap().reps_completed()), (HvStatus::SUCCESS, 2));
    assert_eq!(mem.get(OUT, 32), [0xfff0u64, 0, 0x27 << 48, 0x9000].as_bytes());
    let outcome = call(get.with_rep_count(4), &mut mem, &mut p);
    assert_eq!((status(&outcome), outcome.result().unwrap().reps_completed()), (HvStatus::INVALID_PARAMETER, 2));
    // Resuming past the bad name finishes the list.
    let outcome = call(get.with_rep_count(4).with_rep_start_index(3), &mut mem, &mut p);
    assert_eq!((status(&outcome), outcome.result().unwrap().reps_completed()), (HvStatus::SUCCESS, 4));
    assert_eq!(mem.get(OUT + 48, 8), 0xfff0u64.as_bytes());
}

#[test]
fn vp_register_calls_reach_only_the_callers_own_vps_at_vtl0() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(2));
    let get = control(HvCallCode::GET_VP_REGISTERS).with_rep_count(1);
    let set = control(HvCallCode::SET_VP_REGISTERS).with_rep_count(1);
    let cases = [
        (HvInputGetSetVpRegisters { partition_id: 5, ..registers_header(0) }, HvStatus::ACCESS_DENIED),
        (
            HvInputGetSetVpRegisters { partition_id: HvPartitionId::INVALID.0, ..registers_header(0) },
            HvStatus::ACCESS_DENIED,
        ),
        (registers_header(2), HvStatus::INVALID_VP_INDEX),
        (
            HvInputGetSetVpRegisters { input_vtl: HvInputVtl::from_bits(0x12), ..registers_header(0) },
            HvStatus::INVALID_PARAMETER,
        ),
        (HvInputGetSetVpRegisters { reserved: [0, 0, 1], ..registers_header(0) }, HvStatus::INVALID_PARAMETER),
    ];
    for (header, expected) in cases {
        mem.put(IN, header.as_bytes());
        for c in [get, set] {
            let outcome = call(c, &mut mem, &mut p);
            assert_eq!((status(&outcome), outcome.result().unwrap().reps_completed()), (expected, 0), "{header:?}");
        }
    }
    assert!(p.untouched());
}

#[test]
fn set_vp_registers_applies_each_association() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(2));
    mem.put(IN, registers_header(0).as_bytes());
    let assoc = |name: HvRegisterName, low: u64| HvRegisterAssoc {
        name,
        padding: [0xffff_ffff; 3], // padding is ignored
        value: HvRegisterValue { low, high: 0 },
    };
    let list = [assoc(HvRegisterName::RIP, 0x8000), assoc(HvRegisterName::CR3, 0x9000), assoc(HvRegisterName(7), 0)];
    mem.put(IN + 16, list.as_bytes());
    let outcome = call(control(HvCallCode::SET_VP_REGISTERS).with_rep_count(3), &mut mem, &mut p);
    assert_eq!((status(&outcome), outcome.result().unwrap().reps_completed()), (HvStatus::INVALID_PARAMETER, 2));
    assert_eq!(p.regs.get(&(0, HvRegisterName::RIP.0)), Some(&HvRegisterValue { low: 0x8000, high: 0 }));
    assert_eq!(p.regs.get(&(0, HvRegisterName::CR3.0)), Some(&HvRegisterValue { low: 0x9000, high: 0 }));
    assert_eq!(p.regs.len(), 2);
}

#[test]
fn get_vp_index_from_apic_id_maps_each_id() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(4));
    let header = HvInputGetVpIndexFromApicId {
        partition_id: HvPartitionId::SELF.0,
        target_vtl: HvInputVtl::new(),
        reserved: [0; 7],
    };
    mem.put(IN, header.as_bytes());
    mem.put(IN + 16, [6u32, 0, 2, 3].as_bytes());
    let c = control(HvCallCode::GET_VP_INDEX_FROM_APIC_ID);
    let outcome = call(c.with_rep_count(3), &mut mem, &mut p);
    assert_eq!((status(&outcome), outcome.result().unwrap().reps_completed()), (HvStatus::SUCCESS, 3));
    assert_eq!(mem.get(OUT, 12), [3u32, 0, 1].as_bytes());
    let outcome = call(c.with_rep_count(4), &mut mem, &mut p);
    assert_eq!((status(&outcome), outcome.result().unwrap().reps_completed()), (HvStatus::INVALID_PARAMETER, 3));
    mem.put(IN, HvInputGetVpIndexFromApicId { partition_id: 9, ..header }.as_bytes());
    assert_eq!(status(&call(c.with_rep_count(1), &mut mem, &mut p)), HvStatus::ACCESS_DENIED);
}

#[test]
fn query_capabilities_reports_no_extended_hypercalls() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(1));
    mem.put(OUT, &[0xff; 8]);
    let outcome = call(control(HvCallCode::EXT_QUERY_CAPABILITIES), &mut mem, &mut p);
    assert_eq!(status(&outcome), HvStatus::SUCCESS);
    assert_eq!(mem.get(OUT, 8), [0; 8]);
}
