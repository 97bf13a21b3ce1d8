use super::*;

#[test]
fn control_values_encode_the_fields_of_3_7() {
    assert_eq!(Control::new(call::NOTIFY_LONG_SPIN_WAIT).fast().0, 0x1_0008);
    let c = Control::new(call::FLUSH_VIRTUAL_ADDRESS_LIST).reps(3, 1);
    assert_eq!(c.0, 0x0001_0003_0000_0003);
    assert_eq!((c.rep_count(), c.rep_start()), (3, 1));
    assert_eq!(c.reps(0xfff, 0xfff).0, 0x0fff_0fff_0000_0003);
    assert_eq!(c.reps(0x1005, 0).rep_count(), 5, "12 bits");
    assert_eq!(Control::new(0x13).variable_header(2).0, 0x13 | 2 << 17);
    assert_eq!(Control::new(0x8001).with_bits(CONTROL_RESERVED_BIT).0, 0x8000_8001);
    // Nothing the builders set is reserved (63:60, 47:44, 31:27).
    let reserved = 0xf000_f000_f800_0000u64;
    let all = Control::new(0xffff).fast().reps(0xfff, 0xfff).variable_header(0x1ff).with_bits(1 << 26);
    assert_eq!(all.0 & reserved, 0);
    assert_eq!(all.0 | reserved, u64::MAX);
    assert_ne!(CONTROL_RESERVED_BIT & reserved, 0);
    assert_ne!(CONTROL_RESERVED_HIGH_BIT & reserved, 0);
}

#[test]
fn results_decode_status_and_reps_completed() {
    assert_eq!(Outcome::from_rax(0), Outcome { status: 0, reps: 0 });
    assert_eq!(Outcome::from_rax(0xffff_f003_ffff_0005), Outcome { status: 5, reps: 3 });
    assert_eq!(Outcome::from_rax(0x0000_0fff_0000_0000).reps, 0xfff);
    assert_eq!(format!("{}", Outcome::from_rax(0x2_0000_0000)), "SUCCESS (0x0), 2 reps");
    assert!(expect_status(Outcome::from_rax(6), status::ACCESS_DENIED).is_ok());
    let e = expect_status(Outcome::from_rax(2), status::SUCCESS).unwrap_err();
    assert_eq!(e.as_str(), "got INVALID_HYPERCALL_CODE (0x2)");
    assert_eq!(status::name(0x4444), "?");
}

#[test]
fn the_hypercall_page_must_start_with_a_call_instruction_and_ret() {
    assert_eq!(hypercall_sequence([0x0f, 0x01, 0xc1, 0xc3]).unwrap(), HypercallInstruction::Vmcall);
    assert_eq!(hypercall_sequence([0x0f, 0x01, 0xd9, 0xc3]).unwrap(), HypercallInstruction::Vmmcall);
    for bad in [[0; 4], [0x0f, 0x01, 0xc1, 0x90], [0x0f, 0x01, 0xd9, 0xc2], [0xc3, 0x0f, 0x01, 0xc1]] {
        assert!(hypercall_sequence(bad).is_err(), "{bad:02x?}");
    }
    assert_eq!(vendor_instruction(b"GenuineIntel"), Some(HypercallInstruction::Vmcall));
    assert_eq!(vendor_instruction(b"AuthenticAMD"), Some(HypercallInstruction::Vmmcall));
    assert_eq!(vendor_instruction(b"HygonGenuine"), Some(HypercallInstruction::Vmmcall));
    assert_eq!(vendor_instruction(b"TesseraVirt!"), None);
}

#[test]
fn reference_time_follows_12_7_3() {
    // scale 2^63 halves the TSC; the offset is signed.
    assert_eq!(reference_time(1000, 1 << 63, 0), 500);
    assert_eq!(reference_time(1000, 1 << 63, -100), 400);
    assert_eq!(reference_time(u64::MAX, u64::MAX, 0), u64::MAX - 1, "128-bit product");
    // A 2.5 GHz TSC: scale = 10^7 * 2^64 / 2.5e9; one second of TSC is 10^7 units.
    let scale = ((REFERENCE_HZ as u128) << 64) / 2_500_000_000u128;
    let t = reference_time(2_500_000_000, scale as u64, 0);
    assert!(t.abs_diff(REFERENCE_HZ) <= 1, "{t}");
    assert_eq!(expected_reference_delta(2_500_000_000, 2_500_000_000), REFERENCE_HZ);
    assert_eq!(expected_reference_delta(250, 2_500_000_000), 1);
    assert_eq!(expected_reference_delta(5, 0), 0);
    assert!(within(110, 100, 10, 0) && within(90, 100, 10, 0) && !within(111, 100, 10, 0));
    assert!(within(115, 100, 10, 5) && !within(0, u64::MAX, 50, 0));
    assert!(within_bracket(90, 100, 200, 10, 0) && within_bracket(220, 100, 200, 10, 0));
    assert!(!within_bracket(89, 100, 200, 10, 0) && !within_bracket(221, 100, 200, 10, 0));
    assert!(within_bracket(85, 100, 200, 10, 5) && !within_bracket(84, 100, 200, 10, 5));
    assert!(!within_bracket(u64::MAX, 0, u64::MAX - 1, 0, 0));
}

#[test]
fn strings_and_bit_lists_are_shown_plainly() {
    let w = |s: &[u8; 4]| u32::from_le_bytes(*s);
    assert_eq!(&leaf_string(w(b"Micr"), w(b"osof"), w(b"t Hv")), &cpuid::VENDOR);
    assert_eq!(printable::<12>(b"ab\x00c\xff").as_str(), "ab.c.");
    let bits = [(1, "a"), (2, "b"), (4, "c")];
    assert_eq!(bits_not_matching::<32>(0b010, &bits, true).as_str(), "a, c");
    assert_eq!(bits_not_matching::<32>(0b010, &bits, false).as_str(), "b");
    assert_eq!(bits_not_matching::<32>(0b111, &bits, true).as_str(), "");
}

#[test]
fn the_guest_os_id_is_linux_in_the_open_source_encoding() {
    assert_eq!(GUEST_OS_ID_LINUX >> 63, 1);
    assert_eq!((GUEST_OS_ID_LINUX >> 56) & 0x7f, 1, "OS type Linux (2.6.2.1)");
    assert_eq!((GUEST_OS_ID_LINUX >> 48) & 0xff, 0);
    assert_eq!((GUEST_OS_ID_LINUX >> 16) & 0xffff_ffff, 0x0006_0100);
}

#[test]
fn parameter_blocks_have_the_tlfs_layouts() {
    let f = input::flush(0x1000, 3, 1);
    assert_eq!(&f[..8], &0x1000u64.to_le_bytes());
    assert_eq!(&f[8..16], &3u64.to_le_bytes());
    assert_eq!(&f[16..], &1u64.to_le_bytes());
    let x = input::flush_ex_all(0, 2);
    assert_eq!(&x[16..24], &1u64.to_le_bytes());
    assert_eq!(&x[24..], &[0; 8], "valid-bank mask 0");
    assert_eq!(input::gva_range(0x12_3456, 2), 0x12_3002);
    assert_eq!(input::cluster_ipi_fast(0x30, 1), (0x30, 1));
    let e = input::cluster_ipi_ex_all(0x30);
    assert_eq!(&e[..8], &[0x30, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&e[8..16], &1u64.to_le_bytes());
    let r = input::vp_registers_header(PARTITION_SELF, 2);
    assert_eq!(&r[..8], &[0xff; 8]);
    assert_eq!(&r[8..], &[2, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&input::vp_index_from_apic_id_header(PARTITION_SELF)[8..], &[0; 8]);
}

/// The numbers here and the `tlfs` crate's (the VID's) must agree: both are
/// read from the same specification, independently.
#[test]
fn numbers_agree_with_the_tlfs_crate() {
    use ::tlfs::HvStatus;
    use ::tlfs::cpuid::{HvEnlightenmentInformation, HvFeaturesEdx, HvPartitionPrivilegeMask as P};
    use ::tlfs::hypercall::{HvCallCode as C, HvFlushFlags};
    use ::tlfs::msr::HvX64Msr as M;

    for (ours, theirs) in [
        (msr::GUEST_OS_ID, M::GUEST_OS_ID),
        (msr::HYPERCALL, M::HYPERCALL),
        (msr::VP_INDEX, M::VP_INDEX),
        (msr::RESET, M::RESET),
        (msr::VP_RUNTIME, M::VP_RUNTIME),
        (msr::TIME_REF_COUNT, M::TIME_REF_COUNT),
        (msr::REFERENCE_TSC, M::REFERENCE_TSC),
        (msr::TSC_FREQUENCY, M::TSC_FREQUENCY),
        (msr::APIC_FREQUENCY, M::APIC_FREQUENCY),
        (msr::EOI, M::EOI),
        (msr::ICR, M::ICR),
        (msr::TPR, M::TPR),
        (msr::VP_ASSIST_PAGE, M::VP_ASSIST_PAGE),
        (msr::SCONTROL, M::SCONTROL),
        (msr::STIMER0_CONFIG, M::STIMER0_CONFIG),
        (msr::GUEST_IDLE, M::GUEST_IDLE),
        (msr::CRASH_P0, M::CRASH_P0),
        (msr::CRASH_CTL, M::CRASH_CTL),
    ] {
        assert_eq!(ours, theirs.0, "{theirs:?}");
    }
    for (ours, theirs) in [
        (call::FLUSH_VIRTUAL_ADDRESS_SPACE, C::FLUSH_VIRTUAL_ADDRESS_SPACE),
        (call::FLUSH_VIRTUAL_ADDRESS_LIST, C::FLUSH_VIRTUAL_ADDRESS_LIST),
        (call::NOTIFY_LONG_SPIN_WAIT, C::NOTIFY_LONG_SPIN_WAIT),
        (call::SEND_SYNTHETIC_CLUSTER_IPI, C::SEND_SYNTHETIC_CLUSTER_IPI),
        (call::FLUSH_VIRTUAL_ADDRESS_SPACE_EX, C::FLUSH_VIRTUAL_ADDRESS_SPACE_EX),
        (call::FLUSH_VIRTUAL_ADDRESS_LIST_EX, C::FLUSH_VIRTUAL_ADDRESS_LIST_EX),
        (call::SEND_SYNTHETIC_CLUSTER_IPI_EX, C::SEND_SYNTHETIC_CLUSTER_IPI_EX),
        (call::GET_VP_REGISTERS, C::GET_VP_REGISTERS),
        (call::SET_VP_REGISTERS, C::SET_VP_REGISTERS),
        (call::GET_VP_INDEX_FROM_APIC_ID, C::GET_VP_INDEX_FROM_APIC_ID),
        (call::EXT_QUERY_CAPABILITIES, C::EXT_QUERY_CAPABILITIES),
    ] {
        assert_eq!(ours, theirs.0, "{theirs:?}");
    }
    assert!(C(call::UNDEFINED).name().is_none(), "the undefined code must stay undefined");
    for (ours, theirs) in [
        (status::SUCCESS, HvStatus::SUCCESS),
        (status::INVALID_HYPERCALL_CODE, HvStatus::INVALID_HYPERCALL_CODE),
        (status::INVALID_HYPERCALL_INPUT, HvStatus::INVALID_HYPERCALL_INPUT),
        (status::INVALID_ALIGNMENT, HvStatus::INVALID_ALIGNMENT),
        (status::INVALID_PARAMETER, HvStatus::INVALID_PARAMETER),
        (status::ACCESS_DENIED, HvStatus::ACCESS_DENIED),
    ] {
        assert_eq!(ours, theirs.0);
    }
    assert_eq!(PARTITION_SELF, ::tlfs::HvPartitionId::SELF.0);
    assert_eq!(register::RSP, ::tlfs::HvRegisterName::RSP.0);
    assert_eq!(register::RIP, ::tlfs::HvRegisterName::RIP.0);
    assert_eq!(register::RFLAGS, ::tlfs::HvRegisterName::RFLAGS.0);

    let low = |p: P| p.into_bits() as u32;
    let high = |p: P| (p.into_bits() >> 32) as u32;
    use cpuid::{hypercall_privilege as hp, privilege as p};
    assert_eq!(p::ACCESS_VP_RUN_TIME_REG, low(P::new().with_access_vp_run_time_reg(true)));
    assert_eq!(p::ACCESS_PARTITION_REFERENCE_COUNTER, low(P::new().with_access_partition_reference_counter(true)));
    assert_eq!(p::ACCESS_SYNIC_REGS, low(P::new().with_access_synic_regs(true)));
    assert_eq!(p::ACCESS_SYNTHETIC_TIMER_REGS, low(P::new().with_access_synthetic_timer_regs(true)));
    assert_eq!(p::ACCESS_INTR_CTRL_REGS, low(P::new().with_access_intr_ctrl_regs(true)));
    assert_eq!(p::ACCESS_HYPERCALL_MSRS, low(P::new().with_access_hypercall_msrs(true)));
    assert_eq!(p::ACCESS_VP_INDEX, low(P::new().with_access_vp_index(true)));
    assert_eq!(p::ACCESS_RESET_REG, low(P::new().with_access_reset_reg(true)));
    assert_eq!(p::ACCESS_PARTITION_REFERENCE_TSC, low(P::new().with_access_partition_reference_tsc(true)));
    assert_eq!(p::ACCESS_GUEST_IDLE_REG, low(P::new().with_access_guest_idle_reg(true)));
    assert_eq!(p::ACCESS_FREQUENCY_REGS, low(P::new().with_access_frequency_regs(true)));
    assert_eq!(hp::ACCESS_VP_REGISTERS, high(P::new().with_access_vp_registers(true)));
    assert_eq!(hp::ENABLE_EXTENDED_HYPERCALLS, high(P::new().with_enable_extended_hypercalls(true)));

    use cpuid::{features as f, recommend as r};
    assert_eq!(f::GUEST_IDLE, HvFeaturesEdx::new().with_guest_idle_available(true).into_bits());
    assert_eq!(f::FREQUENCY_REGS, HvFeaturesEdx::new().with_frequency_regs_available(true).into_bits());
    assert_eq!(f::GUEST_CRASH_MSRS, HvFeaturesEdx::new().with_guest_crash_regs_available(true).into_bits());
    let e = HvEnlightenmentInformation::new;
    assert_eq!(r::REMOTE_FLUSH_HYPERCALL, e().with_use_hypercall_for_remote_flush(true).into_bits());
    assert_eq!(r::APIC_MSRS, e().with_use_apic_msrs(true).into_bits());
    assert_eq!(r::RESET_MSR, e().with_use_hv_register_for_reset(true).into_bits());
    assert_eq!(r::RELAXED_TIMING, e().with_use_relaxed_timing(true).into_bits());
    assert_eq!(r::SYNTHETIC_CLUSTER_IPI, e().with_use_synthetic_cluster_ipi(true).into_bits());
    assert_eq!(r::EX_PROCESSOR_MASKS, e().with_use_ex_processor_masks(true).into_bits());

    let flags = HvFlushFlags::new;
    assert_eq!(flush::ALL_PROCESSORS, flags().with_all_processors(true).into_bits());
    assert_eq!(flush::ALL_VIRTUAL_ADDRESS_SPACES, flags().with_all_virtual_address_spaces(true).into_bits());
    assert_eq!(flush::NON_GLOBAL_MAPPINGS_ONLY, flags().with_non_global_mappings_only(true).into_bits());
    assert_eq!(GENERIC_SET_ALL, ::tlfs::hypercall::HvGenericSetFormat::ALL.0);
    assert_eq!(cpuid::VENDOR, ::tlfs::cpuid::HV_CPUID_VENDOR_MICROSOFT);
    assert_eq!(u32::from_le_bytes(cpuid::SIGNATURE), ::tlfs::cpuid::HV_CPUID_INTERFACE_SIGNATURE);
    assert_eq!(cpuid::MIN_MAX_LEAF, ::tlfs::cpuid::HV_CPUID_MIN_MAX_FUNCTION);
    assert_eq!(msr::CRASH_NOTIFY, ::tlfs::msr::HvCrashCtlRegContents::new().with_crash_notify(true).into_bits());
}

#[test]
fn check_lines_fit_the_vids_console_line() {
    let line = |what, v| check_line(what, v).as_str().to_string();
    assert_eq!(line("VP_INDEX is 0", Verdict::Ok("")), "testkernel: tlfs: VP_INDEX is 0: ok");
    assert_eq!(line("x", Verdict::Ok("3 calls")), "testkernel: tlfs: x: ok (3 calls)");
    assert_eq!(line("x", Verdict::Fail("got SUCCESS (0x0)")), "testkernel: tlfs: x: FAIL got SUCCESS (0x0)");
    assert_eq!(line("x", Verdict::Informational("no IPI")), "testkernel: tlfs: x: informational: no IPI");
    let long = "y".repeat(200);
    for v in [Verdict::Ok(&long), Verdict::Fail(&long), Verdict::Informational(&long)] {
        let l = line("a check", v);
        assert_eq!(l.len(), CHECK_LINE_MAX, "{l}");
        assert!(l.contains("yy..") && l.starts_with("testkernel: tlfs: a check: "), "{l}");
    }
    assert!(line("a check", Verdict::Ok(&long)).ends_with("..)"));
    // Cut on a character boundary.
    let accents = "\u{e9}".repeat(100);
    assert!(line("a check", Verdict::Fail(&accents)).ends_with(".."));
    // A name too long for any detail keeps its verdict.
    let name = "n".repeat(100);
    assert_eq!(line(&name, Verdict::Fail("why")), format!("testkernel: tlfs: {name}: FAIL"));
    const { assert!(CHECK_LINE_MAX < crate::protocol::CONSOLE_LINE_MAX) };
}

#[test]
fn the_monitor_page_has_the_layout_of_11_10_9() {
    use monitor::{Trigger, parameter};
    // TriggerGroup[4] at 8, Latency[4][32] at 576, Parameter[4][32] at 1088.
    assert_eq!(Trigger::new(0, 0).group_offset(), 8);
    assert_eq!(Trigger::new(3, 31).group_offset(), 32);
    assert_eq!(Trigger::new(0, 0).latency_offset(), 576);
    assert_eq!(Trigger::new(1, 0).latency_offset(), 576 + 64);
    assert_eq!(Trigger::new(3, 31).latency_offset(), 830);
    assert_eq!(Trigger::new(0, 3).parameter_offset(), 1088 + 24);
    assert_eq!(Trigger::new(1, 0).parameter_offset(), 1088 + 256);
    assert_eq!(Trigger::new(3, 31).parameter_offset(), 2104);
    assert_eq!(parameter(0x11, 3), 0x0000_0003_0000_0011);
    assert_eq!(parameter(u32::MAX, u16::MAX) >> 48, 0, "RsvdZ stays zero");
}

#[test]
fn setting_a_trigger_sets_pending_and_clears_armed() {
    let t = monitor::Trigger::new(2, 3);
    assert_eq!((t.pending(), t.armed(), t.group_enable()), (1 << 3, 1 << 35, 1 << 2));
    assert_eq!(t.to_string(), "trigger 3 of group 2");
    assert_eq!(t.set(0), 1 << 3);
    assert_eq!(t.set(1 << 35 | 1 << 3), 1 << 3);
    // Other triggers' bits are left alone.
    assert_eq!(t.set(1 << 36 | 1 << 4 | 1), 1 << 36 | 1 << 4 | 1 << 3 | 1);
}

#[test]
fn the_monitor_page_option_is_a_page_below_4_gib() {
    let page = |cmdline| monitor::page_option(cmdline, "monitor").map_err(|e| e.as_str().to_string());
    assert_eq!(page("tests=messaging monitor=0x2000000"), Ok(0x200_0000));
    assert_eq!(page("tests=messaging"), Err("no monitor=<gpa> on the command line".into()));
    assert_eq!(page("monitor=33554432"), Err("monitor=33554432: expected a 0x-hex address".into()));
    assert_eq!(page("monitor=0x2000010"), Err("monitor=0x2000010: not a page below 4 GiB".into()));
    assert_eq!(page("monitor=0x100000000"), Err("monitor=0x100000000: not a page below 4 GiB".into()));
}

/// The VSM numbers and layouts (`tlfs::vsm`) against the `tlfs` crate's,
/// but the capabilities register, where this test follows 6.0b's drawing
/// and the crate the headers'.
#[test]
fn vsm_numbers_and_layouts_agree_with_the_tlfs_crate() {
    use ::tlfs::HvRegisterName as R;
    use ::tlfs::HvStatus;
    use ::tlfs::hypercall::HvCallCode as C;
    use ::tlfs::vsm as theirs;
    use core::mem::{offset_of, size_of};
    use vsm::*;

    for (ours, t) in [
        (call::ENABLE_PARTITION_VTL, C::ENABLE_PARTITION_VTL),
        (call::ENABLE_VP_VTL, C::ENABLE_VP_VTL),
        (call::VTL_CALL, C::VTL_CALL),
        (call::VTL_RETURN, C::VTL_RETURN),
        (call::MODIFY_VTL_PROTECTION_MASK, C::MODIFY_VTL_PROTECTION_MASK),
    ] {
        assert_eq!(ours, t.0, "{t:?}");
    }
    for (ours, t) in [
        (status::INVALID_PARTITION_ID, HvStatus::INVALID_PARTITION_ID),
        (status::INVALID_VP_INDEX, HvStatus::INVALID_VP_INDEX),
        (status::INVALID_REGISTER_VALUE, HvStatus::INVALID_REGISTER_VALUE),
        (status::INVALID_VTL_STATE, HvStatus::INVALID_VTL_STATE),
        (status::OPERATION_DENIED, HvStatus::OPERATION_DENIED),
    ] {
        assert_eq!(ours, t.0);
    }
    let flags = ::tlfs::HvMapGpaFlags::new;
    assert_eq!(map_gpa::READABLE, flags().with_readable(true).into_bits());
    assert_eq!(map_gpa::WRITABLE, flags().with_writable(true).into_bits());
    assert_eq!(map_gpa::KERNEL_EXECUTABLE, flags().with_kernel_executable(true).into_bits());
    assert_eq!(map_gpa::USER_EXECUTABLE, flags().with_user_executable(true).into_bits());
    assert_eq!(map_gpa::ALL, ::tlfs::HvMapGpaFlags::DEFINED_BITS);
    let input = modify_vtl_protection_mask(0x1122, map_gpa::READABLE, input_vtl(0), 0x345);
    assert_eq!(input[..8], 0x1122u64.to_le_bytes());
    assert_eq!(input[8..12], 1u32.to_le_bytes());
    assert_eq!((input[12], &input[13..16]), (0x10, &[0u8; 3][..]));
    assert_eq!(input[16..], 0x345u64.to_le_bytes());
    assert_eq!(status::name(status::INVALID_VTL_STATE), "INVALID_VTL_STATE");
    for (ours, t) in [
        (register::CR0, R::CR0),
        (register::CR3, R::CR3),
        (register::CR4, R::CR4),
        (register::VSM_CODE_PAGE_OFFSETS, R::VSM_CODE_PAGE_OFFSETS),
        (register::VSM_VP_STATUS, R::VSM_VP_STATUS),
        (register::VSM_PARTITION_STATUS, R::VSM_PARTITION_STATUS),
        (register::VSM_CAPABILITIES, R::VSM_CAPABILITIES),
        (register::VSM_PARTITION_CONFIG, R::VSM_PARTITION_CONFIG),
    ] {
        assert_eq!(ours, t.0, "{t:?}");
    }
    let high = |p: ::tlfs::cpuid::HvPartitionPrivilegeMask| (p.into_bits() >> 32) as u32;
    let p = ::tlfs::cpuid::HvPartitionPrivilegeMask::new;
    assert_eq!(cpuid::hypercall_privilege::ACCESS_VSM, high(p().with_access_vsm(true)));
    assert_eq!(NUM_VTLS, theirs::HV_NUM_VTLS);
    let input = ::tlfs::hypercall::HvInputVtl::new().with_target_vtl(1).with_use_target_vtl(true);
    assert_eq!(input_vtl(1), input.into_bits());

    let status = theirs::HvRegisterVsmPartitionStatus::new()
        .with_enabled_vtl_set(0b11)
        .with_maximum_vtl(1)
        .with_mbec_enabled_vtl_set(0b10);
    let read = PartitionStatus::read(status.into_bits());
    assert_eq!((read.enabled_vtl_set, read.maximum_vtl, read.mbec_enabled_vtl_set, read.reserved), (3, 1, 2, 0));
    assert_eq!(PartitionStatus::read(1 << 36).reserved, 1);
    let vp =
        theirs::HvRegisterVsmVpStatus::new().with_active_vtl(1).with_active_mbec_enabled(true).with_enabled_vtl_set(3);
    let read = VpStatus::read(vp.into_bits());
    assert_eq!((read.active_vtl, read.active_mbec_enabled, read.enabled_vtl_set, read.reserved), (1, true, 3, 0));
    assert_eq!(VpStatus::read(1 << 5 | 1 << 40).reserved, 1 << 5 | 1 << 40);
    let offsets = theirs::HvRegisterVsmCodePageOffsets::new().with_vtl_call_offset(0x123).with_vtl_return_offset(0x456);
    assert_eq!(
        CodePageOffsets::read(offsets.into_bits()),
        CodePageOffsets { vtl_call: 0x123, vtl_return: 0x456, reserved: 0 }
    );

    // The capabilities register: the test reads the headers' layout, and
    // 6.0b's drawing is not it.
    let caps = theirs::HvRegisterVsmCapabilities::new()
        .with_dr6_shared(true)
        .with_mbec_vtl_mask(2)
        .with_deny_lower_vtl_startup(true);
    assert_eq!(
        Capabilities::read(caps.into_bits()),
        Capabilities { dr6_shared: true, mbec_vtl_mask: 2, deny_lower_vtl_startup: true, reserved: 0 }
    );
    assert_eq!(
        Capabilities::read_as_drawn(1 << 63 | 2 << 47 | 1 << 46),
        Capabilities { dr6_shared: true, mbec_vtl_mask: 2, deny_lower_vtl_startup: true, reserved: 0 }
    );
    assert_ne!(Capabilities::read_as_drawn(caps.into_bits()).reserved, 0, "6.0b reads the headers' fields as reserved");
    assert_eq!(Capabilities::read(0), Capabilities::read_as_drawn(0));

    let config = theirs::HvRegisterVsmPartitionConfig::new;
    assert_eq!(partition_config::ENABLE_VTL_PROTECTION, config().with_enable_vtl_protection(true).into_bits());
    assert_eq!(partition_config::DEFAULT_PROTECTION_MASK, config().with_default_vtl_protection_mask(0xf).into_bits());
    assert_eq!(partition_config::ZERO_MEMORY_ON_RESET, config().with_zero_memory_on_reset(true).into_bits());
    assert_eq!(control::OFFSET, theirs::HV_VP_VTL_CONTROL_OFFSET);
    let c = theirs::HV_VP_VTL_CONTROL_OFFSET;
    assert_eq!(control::ENTRY_REASON, c + offset_of!(theirs::HvVpVtlControl, entry_reason));
    assert_eq!(control::VINA_STATUS, c + offset_of!(theirs::HvVpVtlControl, vina_status));
    assert_eq!(control::RETURN_RAX, c + offset_of!(theirs::HvVpVtlControl, vtl_return_x64_rax));
    assert_eq!(control::RETURN_RCX, c + offset_of!(theirs::HvVpVtlControl, vtl_return_x64_rcx));
    assert_eq!(entry_reason::VTL_CALL, theirs::HvVtlEntryReason::VTL_CALL.0);
    assert_eq!(entry_reason::INTERRUPT, theirs::HvVtlEntryReason::INTERRUPT.0);
    assert_eq!(entry_reason::INTERCEPT, theirs::HvVtlEntryReason::INTERCEPT.0);
    assert!(theirs::HvVtlReturnInput::from_bits(VTL_RETURN_FAST).fast_return());
    assert!(!theirs::HvVtlReturnInput::from_bits(VTL_RETURN_FAST).has_reserved_bits());
    assert!(theirs::HvVtlReturnInput::from_bits(VTL_CONTROL_RESERVED_BIT).has_reserved_bits());
    assert!(theirs::HvVtlCallInput::from_bits(VTL_CONTROL_RESERVED_BIT).has_reserved_bits());
    assert!(!theirs::HvVtlCallInput::from_bits(VTL_CALL_CONTROL).has_reserved_bits());
    assert_eq!(ENABLE_MBEC, theirs::HvEnablePartitionVtlFlags::new().with_enable_mbec(true).into_bits());
    assert!(theirs::HvEnablePartitionVtlFlags::from_bits(ENABLE_FLAGS_RESERVED_BIT).has_reserved_bits());

    // The inputs: HvEnablePartitionVtl's and HvEnableVpVtl's field offsets.
    assert_eq!(size_of::<theirs::HvInputEnablePartitionVtl>(), enable_partition_vtl(0, 0, 0).len());
    let b = enable_partition_vtl(0x1122, 1, 0x80);
    assert_eq!(u64::from_le_bytes(b[..8].try_into().unwrap()), 0x1122);
    assert_eq!(b[offset_of!(theirs::HvInputEnablePartitionVtl, target_vtl)], 1);
    assert_eq!(b[offset_of!(theirs::HvInputEnablePartitionVtl, flags)], 0x80);
    type I = theirs::HvInputVpInitialContext;
    type X = theirs::HvInitialVpContext;
    assert_eq!(size_of::<I>(), ENABLE_VP_VTL_INPUT);
    let segment = |n: u16| Segment { base: 0x1000 * u64::from(n), limit: 0xffff, selector: 8 * n, attributes: 0xa09b };
    let context = InitialContext {
        rip: 0x11,
        rsp: 0x22,
        rflags: 0x2,
        cs: segment(1),
        ds: segment(2),
        es: segment(3),
        fs: segment(4),
        gs: segment(5),
        ss: segment(6),
        tr: segment(7),
        ldtr: segment(8),
        idtr: Table { limit: 0xfff, base: 0x9000 },
        gdtr: Table { limit: 0x3f, base: 0xa000 },
        efer: 0x500,
        cr0: 0x8000_0011,
        cr3: 0xb000,
        cr4: 0x20,
        pat: 0x0007_0406_0007_0406,
    };
    let b = enable_vp_vtl(0x33, 2, 1, 0, &context);
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    assert_eq!(word(offset_of!(I, partition_id)), 0x33);
    assert_eq!(b[offset_of!(I, vp_index)], 2);
    assert_eq!(b[offset_of!(I, target_vtl)], 1);
    let at = |field: usize| offset_of!(I, context) + field;
    assert_eq!(word(at(offset_of!(X, rip))), 0x11);
    assert_eq!(word(at(offset_of!(X, rsp))), 0x22);
    assert_eq!(word(at(offset_of!(X, rflags))), 0x2);
    let seg = |field: usize| {
        let s = at(field);
        let limit = u32::from_le_bytes(b[s + 8..s + 12].try_into().unwrap());
        let selector = u16::from_le_bytes(b[s + 12..s + 14].try_into().unwrap());
        (word(s), limit, selector, u16::from_le_bytes(b[s + 14..s + 16].try_into().unwrap()))
    };
    assert_eq!(offset_of!(::tlfs::HvX64SegmentRegister, selector), 12);
    assert_eq!(offset_of!(::tlfs::HvX64SegmentRegister, attributes), 14);
    for (n, field) in [
        offset_of!(X, cs),
        offset_of!(X, ds),
        offset_of!(X, es),
        offset_of!(X, fs),
        offset_of!(X, gs),
        offset_of!(X, ss),
        offset_of!(X, tr),
        offset_of!(X, ldtr),
    ]
    .into_iter()
    .enumerate()
    {
        let n = n as u16 + 1;
        assert_eq!(seg(field), (0x1000 * u64::from(n), 0xffff, 8 * n, 0xa09b), "segment {n}");
    }
    assert_eq!(offset_of!(::tlfs::HvX64TableRegister, limit), 6);
    let table =
        |field: usize| (u16::from_le_bytes(b[at(field) + 6..at(field) + 8].try_into().unwrap()), word(at(field) + 8));
    assert_eq!(table(offset_of!(X, idtr)), (0xfff, 0x9000));
    assert_eq!(table(offset_of!(X, gdtr)), (0x3f, 0xa000));
    assert_eq!(word(at(offset_of!(X, efer))), 0x500);
    assert_eq!(word(at(offset_of!(X, cr0))), 0x8000_0011);
    assert_eq!(word(at(offset_of!(X, cr3))), 0xb000);
    assert_eq!(word(at(offset_of!(X, cr4))), 0x20);
    assert_eq!(word(at(offset_of!(X, msr_cr_pat))), 0x0007_0406_0007_0406);
    assert_eq!(enable_vp_vtl(0, 0, 1, 0x40, &context)[13], 0x40, "the RsvdZ byte after TargetVtl");

    let header = vp_registers_header(PARTITION_SELF, 0, input_vtl(0));
    assert_eq!(header[12], 0x10);
    assert_eq!(header[..12], input::vp_registers_header(PARTITION_SELF, 0)[..12]);
    assert!(expect_one_of(Outcome::from_rax(6), &[5, 6]).is_ok());
    assert!(expect_one_of(Outcome::from_rax(0), &[5, 6]).is_err());
}

#[test]
fn vsm_patterns_are_distinct_per_register_round_and_vtl() {
    let a = vsm::shared_pattern(1, 0);
    let mut all: Vec<u64> = a.to_vec();
    all.extend(vsm::shared_pattern(2, 0));
    all.extend(vsm::shared_pattern(1, 1));
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 39);
    let x = vsm::xmm_pattern(3, 1);
    assert!(x.iter().all(|v| *v != 0 && (*v >> 64) as u64 != *v as u64));
    assert_ne!(vsm::xmm_pattern(3, 0), x);
}
