use super::*;
use crate::HvStatus;
use zerocopy::FromZeros;

#[test]
fn call_codes_have_their_appendix_a_values() {
    assert_eq!(HvCallCode::FLUSH_VIRTUAL_ADDRESS_SPACE.0, 0x0002);
    assert_eq!(HvCallCode::FLUSH_VIRTUAL_ADDRESS_LIST.0, 0x0003);
    assert_eq!(HvCallCode::NOTIFY_LONG_SPIN_WAIT.0, 0x0008);
    assert_eq!(HvCallCode::SEND_SYNTHETIC_CLUSTER_IPI.0, 0x000b);
    assert_eq!(HvCallCode::FLUSH_VIRTUAL_ADDRESS_SPACE_EX.0, 0x0013);
    assert_eq!(HvCallCode::FLUSH_VIRTUAL_ADDRESS_LIST_EX.0, 0x0014);
    assert_eq!(HvCallCode::SEND_SYNTHETIC_CLUSTER_IPI_EX.0, 0x0015);
    assert_eq!(HvCallCode::GET_VP_REGISTERS.0, 0x0050);
    assert_eq!(HvCallCode::SET_VP_REGISTERS.0, 0x0051);
    assert_eq!(HvCallCode::GET_VP_INDEX_FROM_APIC_ID.0, 0x009a);
    // VSM and related calls.
    assert_eq!(HvCallCode::MODIFY_VTL_PROTECTION_MASK.0, 0x000c);
    assert_eq!(HvCallCode::ENABLE_PARTITION_VTL.0, 0x000d);
    assert_eq!(HvCallCode::ENABLE_VP_VTL.0, 0x000f);
    assert_eq!(HvCallCode::VTL_CALL.0, 0x0011);
    assert_eq!(HvCallCode::VTL_RETURN.0, 0x0012);
    assert_eq!(HvCallCode::TRANSLATE_VIRTUAL_ADDRESS.0, 0x0052);
    assert_eq!(HvCallCode::START_VIRTUAL_PROCESSOR.0, 0x0099);
    assert_eq!(HvCallCode(0x000e).name(), None, "HvCallDisablePartitionVtl is not defined here");
    assert_eq!(HvCallCode::EXT_QUERY_CAPABILITIES.0, 0x8001);
    assert!(HvCallCode::EXT_QUERY_CAPABILITIES.is_extended());
    assert!(!HvCallCode(0x8000).is_extended() && !HvCallCode::GET_VP_REGISTERS.is_extended());
    assert_eq!(HvCallCode(0x1234).name(), None);
}

#[test]
fn the_control_value_has_the_tlfs_3_7_layout() {
    let control = HvHypercallInput::new()
        .with_call_code(0x0014)
        .with_fast(true)
        .with_variable_header_size(0x1ff)
        .with_is_nested(true)
        .with_rep_count(0xfff)
        .with_rep_start_index(0xabc);
    assert_eq!(control.into_bits(), 0x0abc_0fff_07ff_0014);
    let all = control.with_call_code(0xffff).with_rep_start_index(0xfff);
    assert_eq!(all.into_bits(), HvHypercallInput::DEFINED_BITS);
    assert_eq!(control.code(), HvCallCode::FLUSH_VIRTUAL_ADDRESS_LIST_EX);
    assert!(!control.has_reserved_bits());
    // Each reserved field alone is refused.
    for bit in [27, 31, 44, 47, 60, 63] {
        assert!(HvHypercallInput::from_bits(1 << bit).has_reserved_bits(), "bit {bit}");
    }
    assert!(HvHypercallInput::from_bits(1 << 26).is_nested());
    assert_eq!(HvHypercallInput::from_bits(1 << 17).variable_header_size(), 1);
    assert_eq!(HvHypercallInput::from_bits(1 << 32).rep_count(), 1);
    assert_eq!(HvHypercallInput::from_bits(1 << 48).rep_start_index(), 1);
}

#[test]
fn the_result_value_has_the_tlfs_3_8_layout() {
    let result = HvHypercallOutput::new().with_call_status(HvStatus::INVALID_PARAMETER.0).with_reps_completed(7);
    assert_eq!(result.into_bits(), 0x0000_0007_0000_0005);
    assert_eq!(result.status(), HvStatus::INVALID_PARAMETER);
    assert_eq!(HvHypercallOutput::from_bits(0xfff << 32).reps_completed(), 0xfff);
}

#[test]
fn privilege_bits_are_where_cpuid_reports_them() {
    let p = HvPartitionPrivilegeMask::new();
    assert_eq!(p.with_access_vp_index(true).into_bits(), 1 << 6);
    assert_eq!(p.with_access_reenlightenment_controls(true).into_bits(), 1 << 13);
    assert_eq!(p.with_create_partitions(true).into_bits(), 1 << 32);
    assert_eq!(p.with_post_messages(true).into_bits(), 1 << 36);
    assert_eq!(p.with_debugging(true).into_bits(), 1 << 43);
    assert_eq!(p.with_access_vsm(true).into_bits(), 1 << 48);
    assert_eq!(p.with_access_vp_registers(true).into_bits(), 1 << 49);
    assert_eq!(p.with_enable_extended_hypercalls(true).into_bits(), 1 << 52);
    assert_eq!(p.with_start_virtual_processor(true).into_bits(), 1 << 53);
    let named = HvPartitionPrivilegeMask::from_bits(u64::MAX)
        .with_reserved1(0)
        .with_reserved_35(false)
        .with_reserved2(0)
        .with_reserved_45(false)
        .with_reserved_46(false)
        .with_reserved_47(false)
        .with_reserved_50(false)
        .with_reserved_51(false)
        .with_reserved3(0);
    assert_eq!(named.into_bits(), HvPartitionPrivilegeMask::DEFINED_BITS);
}

#[test]
fn flush_flags_and_gva_ranges() {
    let f = HvFlushFlags::new().with_all_processors(true).with_all_virtual_address_spaces(true);
    assert_eq!(f.into_bits(), 3);
    assert_eq!(HvFlushFlags::new().with_non_global_mappings_only(true).into_bits(), 4);
    assert!(!HvFlushFlags::from_bits(7).has_reserved_bits());
    assert!(HvFlushFlags::from_bits(8).has_reserved_bits());
    let r = HvGvaRange::from_bits(0xffff_8000_1234_5003);
    assert_eq!((r.base(), r.page_count()), (0xffff_8000_1234_5000, 4));
    assert_eq!(HvGvaRange::from_bits(0xfff).page_count(), 4096);
}

#[test]
fn input_vtl_accepts_only_vtl0_or_self() {
    assert!(HvInputVtl::from_bits(0).is_vtl0_or_self());
    assert!(HvInputVtl::from_bits(0x10).is_vtl0_or_self());
    assert!(HvInputVtl::from_bits(0x01).is_vtl0_or_self(), "target ignored without use_target_vtl");
    assert!(!HvInputVtl::from_bits(0x11).is_vtl0_or_self());
    assert!(!HvInputVtl::from_bits(0x20).is_vtl0_or_self());
}

#[test]
fn input_layouts_match_the_native_interface_tables() {
    let ipi = HvInputSendSyntheticClusterIpi {
        vector: 0x31,
        target_vtl: HvInputVtl::new(),
        reserved: [0; 3],
        processor_mask: 0x8000_0000_0000_0001,
    };
    assert_eq!(ipi.as_bytes(), [0x31, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x80]);
    let mut ex = HvInputFlushVirtualAddressEx::new_zeroed();
    ex.processor_set.format = HvGenericSetFormat::ALL;
    ex.processor_set.valid_banks_mask = 5;
    assert_eq!(&ex.as_bytes()[16..], [1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]);
    let assoc =
        HvRegisterAssoc { name: HvRegisterName::RIP, padding: [0; 3], value: HvRegisterValue { low: 0x1122, high: 0 } };
    assert_eq!(&assoc.as_bytes()[..4], 0x0002_0010u32.to_le_bytes());
    assert_eq!(&assoc.as_bytes()[16..18], [0x22, 0x11]);
    let hdr = HvInputGetSetVpRegisters::read_from_bytes(&[0xff; 16]).unwrap();
    assert_eq!((hdr.partition(), hdr.vp_index, hdr.input_vtl.into_bits()), (HvPartitionId::SELF, u32::MAX, 0xff));
    assert_eq!(HvGenericSetFormat(2).name(), None);
}
