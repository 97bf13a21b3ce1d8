use super::*;

#[test]
fn signatures_have_their_tlfs_values() {
    assert_eq!(HV_CPUID_INTERFACE_SIGNATURE, 0x3123_7648);
    assert_eq!(vendor_registers(HV_CPUID_VENDOR_MICROSOFT), [0x7263_694D, 0x666F_736F, 0x7648_2074]);
    assert_eq!(HvCpuidFunction::NESTED_OPTIMIZATIONS.0, 0x4000_000A);
}

#[test]
fn privilege_bits_sit_where_the_tlfs_counts_them() {
    let low = |m: HvPartitionPrivilegeMask| m.registers()[0];
    let high = |m: HvPartitionPrivilegeMask| m.registers()[1];
    let m = HvPartitionPrivilegeMask::new;
    assert_eq!(low(m().with_access_vp_run_time_reg(true)), 1 << 0);
    assert_eq!(low(m().with_access_intr_ctrl_regs(true)), 1 << 4);
    assert_eq!(low(m().with_access_hypercall_msrs(true)), 1 << 5);
    assert_eq!(low(m().with_access_vp_index(true)), 1 << 6);
    assert_eq!(low(m().with_access_reset_reg(true)), 1 << 7);
    assert_eq!(low(m().with_access_partition_reference_tsc(true)), 1 << 9);
    assert_eq!(low(m().with_access_frequency_regs(true)), 1 << 11);
    assert_eq!(low(m().with_access_reenlightenment_controls(true)), 1 << 13);
    assert_eq!(high(m().with_post_messages(true)), 1 << 4);
    assert_eq!(high(m().with_debugging(true)), 1 << 11);
    assert_eq!(high(m().with_access_vsm(true)), 1 << 16);
    assert_eq!(high(m().with_enable_extended_hypercalls(true)), 1 << 20);
    assert_eq!(high(m().with_start_virtual_processor(true)), 1 << 21);
}

#[test]
fn feature_and_recommendation_bits() {
    assert_eq!(HvFeaturesEdx::new().with_guest_idle_available(true).into_bits(), 1 << 5);
    assert_eq!(HvFeaturesEdx::new().with_frequency_regs_available(true).into_bits(), 1 << 8);
    assert_eq!(HvFeaturesEdx::new().with_guest_crash_regs_available(true).into_bits(), 1 << 10);
    assert_eq!(HvFeaturesEdx::new().with_hypercall_msr_lock_available(true).into_bits(), 1 << 18);
    assert_eq!(HvFeaturesEdx::new().with_lbr_available(true).into_bits(), 1 << 26);
    let r = HvEnlightenmentInformation::new;
    assert_eq!(r().with_use_hypercall_for_remote_flush(true).into_bits(), 1 << 2);
    assert_eq!(r().with_use_relaxed_timing(true).into_bits(), 1 << 5);
    assert_eq!(r().with_use_synthetic_cluster_ipi(true).into_bits(), 1 << 10);
    assert_eq!(r().with_use_ex_processor_masks(true).into_bits(), 1 << 11);
    assert_eq!(r().with_no_non_architectural_core_sharing(true).into_bits(), 1 << 18);
    assert_eq!(HvHardwareFeatures::new().with_second_level_address_translation_in_use(true).into_bits(), 1 << 3);
    assert_eq!(HvNestedOptimizations::new().with_enlightened_msr_bitmap(true).into_bits(), 1 << 19);
    assert_eq!(HvNestedFeaturesEax::new().with_access_reenlightenment_controls(true).into_bits(), 1 << 12);
    assert_eq!(HvSvmFeatures::new().with_max_pasid_space_pasid_count(1).into_bits(), 1 << 11);
}

#[test]
fn version_and_limits_registers() {
    let v = HvVersionInfo {
        build_number: 7,
        major: 1,
        minor: 2,
        service_pack: 3,
        service_branch: 4,
        service_number: 0x0123_4567,
    };
    assert_eq!(v.registers(), [7, 0x0001_0002, 3, 0x0423_4567]);
    let l = HvImplementationLimits { max_virtual_processors: 16, max_logical_processors: 2, max_interrupt_vectors: 0 };
    assert_eq!(l.registers(), [16, 2, 0, 0]);
}
