use super::*;
use crate::{HvError, HvStatus, HvX64SegmentAttributes};
use zerocopy::FromZeros;

/// Little-endian bytes of `words`, as the VID reads an input page.
fn bytes(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Every bit outside `defined` (and only those) is reported reserved, and
/// `defined` is what setting every named field gives.
fn check_rsvdz(defined: u64, named: u64, reserved: impl Fn(u64) -> bool) {
    assert_eq!(named, defined, "DEFINED_BITS {defined:#x} but the named fields are {named:#x}");
    for bit in 0..64 {
        assert_eq!(reserved(1 << bit), defined & 1 << bit == 0, "bit {bit}");
    }
}

#[test]
fn vsm_statuses_have_the_header_values() {
    // Named by 7.10.3 and 15.15, missing from Appendix B.
    assert_eq!(HvStatus::INVALID_VTL_STATE.0, 0x0051);
    assert_eq!(HvStatus::VTL_ALREADY_ENABLED.0, 0x0086);
    assert_eq!(HvError::INVALID_VTL_STATE.status(), HvStatus(0x51));
    assert_eq!(HvError::try_from(0x86), Ok(HvError::VTL_ALREADY_ENABLED));
    assert_eq!(HvStatus(0x51).name(), Some("INVALID_VTL_STATE"));
}

#[test]
fn vsm_register_names_have_their_7_8_2_values() {
    let expected = [
        (HvRegisterName::VP_ASSIST_PAGE, 0x0009_0013),
        (HvRegisterName::VSM_CODE_PAGE_OFFSETS, 0x000D_0002),
        (HvRegisterName::VSM_VP_STATUS, 0x000D_0003),
        (HvRegisterName::VSM_PARTITION_STATUS, 0x000D_0004),
        (HvRegisterName::VSM_VINA, 0x000D_0005),
        (HvRegisterName::VSM_CAPABILITIES, 0x000D_0006),
        (HvRegisterName::VSM_PARTITION_CONFIG, 0x000D_0007),
        (HvRegisterName::VSM_VP_SECURE_CONFIG_VTL0, 0x000D_0010),
        (HvRegisterName::VSM_VP_SECURE_CONFIG_VTL14, 0x000D_001E),
        (HvRegisterName::VSM_VP_WAIT_FOR_TLB_LOCK, 0x000D_0020),
        (HvRegisterName::CR_INTERCEPT_CONTROL, 0x000E_0000),
        (HvRegisterName::CR_INTERCEPT_CR0_MASK, 0x000E_0001),
        (HvRegisterName::CR_INTERCEPT_CR4_MASK, 0x000E_0002),
        (HvRegisterName::CR_INTERCEPT_IA32_MISC_ENABLE_MASK, 0x000E_0003),
    ];
    for (name, value) in expected {
        assert_eq!(name.0, value, "{name:?}");
    }
    assert_eq!(HvRegisterName::vsm_vp_secure_config(1), Some(HvRegisterName(0x000D_0011)));
    assert_eq!(HvRegisterName::vsm_vp_secure_config(14), Some(HvRegisterName::VSM_VP_SECURE_CONFIG_VTL14));
    assert_eq!(HvRegisterName::vsm_vp_secure_config(15), None);
    assert_eq!(HvRegisterName(0x000D_0013).vsm_vp_secure_config_vtl(), Some(3));
    assert_eq!(HvRegisterName::VSM_PARTITION_CONFIG.vsm_vp_secure_config_vtl(), None);
    assert_eq!(HvRegisterName(0x000D_001F).vsm_vp_secure_config_vtl(), None);
}

#[test]
fn status_registers_have_their_15_3_layouts() {
    // 15.8: call offset 11:0, return offset 23:12.
    let offsets = HvRegisterVsmCodePageOffsets::new().with_vtl_call_offset(0x123).with_vtl_return_offset(0xabc);
    assert_eq!(offsets.into_bits(), 0xab_c123);
    check_rsvdz(
        HvRegisterVsmCodePageOffsets::DEFINED_BITS,
        HvRegisterVsmCodePageOffsets::from_bits(u64::MAX).with_reserved(0).into_bits(),
        |b| HvRegisterVsmCodePageOffsets::from_bits(b).has_reserved_bits(),
    );
    // 15.3.3.2 (headers' positions): ActiveVtl 3:0, ActiveMbecEnabled 4, EnabledVtlSet 31:16.
    assert_eq!(HvRegisterVsmVpStatus::new().with_active_vtl(1).into_bits(), 1);
    assert_eq!(HvRegisterVsmVpStatus::new().with_active_mbec_enabled(true).into_bits(), 0x10);
    assert_eq!(HvRegisterVsmVpStatus::new().with_enabled_vtl_set(0b11).into_bits(), 0x3_0000);
    assert_eq!(HvRegisterVsmVpStatus::from_bits(0x1_0040).reserved0(), 2);
    // 15.3.3.1: EnabledVtlSet 15:0, MaximumVtl 19:16, MbecEnabledVtlSet 35:20.
    let status =
        HvRegisterVsmPartitionStatus::new().with_enabled_vtl_set(3).with_maximum_vtl(1).with_mbec_enabled_vtl_set(2);
    assert_eq!(status.into_bits(), 0x0021_0003);
    assert_eq!(HvRegisterVsmPartitionStatus::from_bits(1 << 36).reserved(), 1);
    // 15.3.2 as the headers have it: Dr6Shared 0, MbecVtlMask 16:1, DenyLowerVtlStartup 17.
    assert_eq!(HvRegisterVsmCapabilities::new().with_dr6_shared(true).into_bits(), 1);
    assert_eq!(HvRegisterVsmCapabilities::new().with_mbec_vtl_mask(0b10).into_bits(), 0b100);
    assert_eq!(HvRegisterVsmCapabilities::new().with_deny_lower_vtl_startup(true).into_bits(), 1 << 17);
    assert!(!HvRegisterVsmCapabilities::from_bits(1 << 63).dr6_shared(), "not 6.0b's drawing");
}

#[test]
fn configuration_registers_have_their_15_5_layouts() {
    let config = HvRegisterVsmPartitionConfig::new();
    assert_eq!(config.with_enable_vtl_protection(true).into_bits(), 1);
    assert_eq!(config.with_default_vtl_protection_mask(0xf).into_bits(), 0x1e);
    assert_eq!(config.with_zero_memory_on_reset(true).into_bits(), 1 << 5);
    assert_eq!(config.with_deny_lower_vtl_startup(true).into_bits(), 1 << 6);
    assert_eq!(config.with_intercept_vp_startup(true).into_bits(), 1 << 9);
    assert_eq!(config.with_intercept_page(true).into_bits(), 1 << 12);
    // Read and kernel execute: HV_MAP_GPA bits 0 and 2.
    let rx = config.with_default_vtl_protection_mask(0b0101).default_protection();
    assert!(rx.readable() && rx.kernel_executable() && !rx.writable() && !rx.user_executable());
    check_rsvdz(
        HvRegisterVsmPartitionConfig::DEFINED_BITS,
        HvRegisterVsmPartitionConfig::from_bits(u64::MAX).with_reserved(0).into_bits(),
        |b| HvRegisterVsmPartitionConfig::from_bits(b).has_reserved_bits(),
    );
    // 15.5.2: MbecEnabled 0, TlbLocked 1.
    let secure = HvRegisterVsmVpSecureVtlConfig::new().with_tlb_locked(true);
    assert_eq!(secure.into_bits(), 2);
    assert_eq!(secure.with_mbec_enabled(true).into_bits(), 3);
    check_rsvdz(
        HvRegisterVsmVpSecureVtlConfig::DEFINED_BITS,
        HvRegisterVsmVpSecureVtlConfig::from_bits(u64::MAX).with_reserved(0).into_bits(),
        |b| HvRegisterVsmVpSecureVtlConfig::from_bits(b).has_reserved_bits(),
    );
    // VINA (headers): vector 7:0, enabled 8, auto-reset 9, auto-EOI 10.
    let vina = HvRegisterVsmVina::new().with_vector(0x30).with_enabled(true).with_auto_reset(true);
    assert_eq!(vina.into_bits(), 0x330);
    assert_eq!(HvRegisterVsmVina::new().with_auto_eoi(true).into_bits(), 0x400);
    check_rsvdz(
        HvRegisterVsmVina::DEFINED_BITS,
        HvRegisterVsmVina::from_bits(u64::MAX).with_reserved(0).into_bits(),
        |b| HvRegisterVsmVina::from_bits(b).has_reserved_bits(),
    );
}

#[test]
fn cr_intercept_control_bits_are_the_15_13_4_comments() {
    let c = HvRegisterCrInterceptControl::new();
    let drawn = [
        (c.with_cr0_write(true), 0x1),
        (c.with_cr4_write(true), 0x2),
        (c.with_xcr0_write(true), 0x4),
        (c.with_ia32_misc_enable_read(true), 0x8),
        (c.with_ia32_misc_enable_write(true), 0x10),
        (c.with_msr_lstar_read(true), 0x20),
        (c.with_msr_star_write(true), 0x100),
        (c.with_apic_base_msr_read(true), 0x800),
        (c.with_msr_efer_write(true), 0x4000),
        (c.with_gdtr_write(true), 0x8000),
        (c.with_tr_write(true), 0x4_0000),
        (c.with_msr_sysenter_cs_write(true), 0x8_0000),
        (c.with_msr_sfmask_write(true), 0x40_0000),
        (c.with_msr_tsc_aux_write(true), 0x80_0000),
        (c.with_msr_sgx_launch_control_write(true), 0x100_0000),
    ];
    for (value, bit) in drawn {
        assert_eq!(value.into_bits(), bit);
    }
    check_rsvdz(
        HvRegisterCrInterceptControl::DEFINED_BITS,
        HvRegisterCrInterceptControl::from_bits(u64::MAX).with_reserved(0).into_bits(),
        |b| HvRegisterCrInterceptControl::from_bits(b).has_reserved_bits(),
    );
}

#[test]
fn registers_round_trip_through_their_fields() {
    let mut rng = fastrand::Rng::with_seed(0x7653_0015);
    for _ in 0..1000 {
        let raw = rng.u64(..);
        let s = HvRegisterVsmVpStatus::from_bits(raw);
        let rebuilt = HvRegisterVsmVpStatus::new()
            .with_active_vtl(s.active_vtl())
            .with_active_mbec_enabled(s.active_mbec_enabled())
            .with_reserved0(s.reserved0())
            .with_enabled_vtl_set(s.enabled_vtl_set())
            .with_reserved1(s.reserved1());
        assert_eq!(rebuilt.into_bits(), raw);
        let p = HvRegisterVsmPartitionStatus::from_bits(raw);
        let rebuilt = HvRegisterVsmPartitionStatus::new()
            .with_enabled_vtl_set(p.enabled_vtl_set())
            .with_maximum_vtl(p.maximum_vtl())
            .with_mbec_enabled_vtl_set(p.mbec_enabled_vtl_set())
            .with_reserved(p.reserved());
        assert_eq!(rebuilt.into_bits(), raw);
        let c = HvRegisterVsmCapabilities::from_bits(raw);
        let rebuilt = HvRegisterVsmCapabilities::new()
            .with_dr6_shared(c.dr6_shared())
            .with_mbec_vtl_mask(c.mbec_vtl_mask())
            .with_deny_lower_vtl_startup(c.deny_lower_vtl_startup())
            .with_reserved(c.reserved());
        assert_eq!(rebuilt.into_bits(), raw);
        let r = HvTranslateGvaResult::from_bits(raw);
        let rebuilt = HvTranslateGvaResult::from_code(r.code())
            .with_cache_type(r.cache_type())
            .with_overlay_page(r.overlay_page())
            .with_reserved(r.reserved());
        assert_eq!(rebuilt.into_bits(), raw);
    }
}

#[test]
fn vtl_entry_and_return() {
    assert_eq!(
        [
            HvVtlEntryReason::RESERVED,
            HvVtlEntryReason::VTL_CALL,
            HvVtlEntryReason::INTERRUPT,
            HvVtlEntryReason::INTERCEPT
        ]
        .map(|r| r.0),
        [0, 1, 2, 3]
    );
    assert!(!HvVtlCallInput::from_bits(0).has_reserved_bits());
    assert!(HvVtlCallInput::from_bits(1).has_reserved_bits());
    let fast = HvVtlReturnInput::from_bits(1);
    assert!(fast.fast_return() && !fast.has_reserved_bits());
    assert!(HvVtlReturnInput::from_bits(2).has_reserved_bits());
    assert!(HvVtlReturnInput::from_bits(1 << 63).has_reserved_bits());
}

#[test]
fn vtl_control_sits_at_offset_8_of_the_assist_page() {
    let mut page = HvVpAssistPage::new_zeroed();
    page.apic_assist = 1;
    page.vtl_control = HvVpVtlControl {
        entry_reason: HvVtlEntryReason::INTERCEPT,
        vina_status: HvVinaStatus::new().with_vina_asserted(true),
        reserved_z00: 0,
        reserved_z01: 0,
        vtl_return_x64_rax: 0x1111_2222_3333_4444,
        vtl_return_x64_rcx: 0x5555_6666_7777_8888,
    };
    let b = page.as_bytes();
    assert_eq!(b.len(), 4096);
    assert_eq!(&b[0..4], &1u32.to_le_bytes());
    assert_eq!(&b[8..12], &3u32.to_le_bytes(), "entry reason");
    assert_eq!(b[12], 1, "VinaAsserted");
    assert_eq!(&b[16..24], &0x1111_2222_3333_4444u64.to_le_bytes());
    assert_eq!(&b[24..32], &0x5555_6666_7777_8888u64.to_le_bytes());
    assert!(b[32..].iter().all(|&x| x == 0));
    assert_eq!(page.vtl_control.vtl_return_x86(), [0x3333_4444, 0x1111_2222, 0x7777_8888]);
    // The guest writes the area; the hypervisor reads it back at the offset.
    let control = HvVpVtlControl::read_from_bytes(&b[HV_VP_VTL_CONTROL_OFFSET..][..24]).unwrap();
    assert_eq!(control, page.vtl_control);
}

#[test]
fn modify_vtl_protection_mask_parses_from_words() {
    // Flags RW (bits 0, 1), target VTL 1 with UseTargetVtl, in the high word.
    let input = HvInputModifyVtlProtectionMask::read_from_bytes(&bytes(&[u64::MAX, 0x11 << 32 | 0x3])).unwrap();
    assert_eq!(input.partition(), HvPartitionId::SELF);
    assert!(input.map_flags.readable() && input.map_flags.writable() && !input.map_flags.kernel_executable());
    assert_eq!((input.target_vtl.target_vtl(), input.target_vtl.use_target_vtl()), (1, true));
    assert!(!input.has_reserved_bits());
    for bad in [0x11 << 32 | 0x10, 0x31 << 32, 1 << 40, 1 << 63] {
        let input = HvInputModifyVtlProtectionMask::read_from_bytes(&bytes(&[5, bad])).unwrap();
        assert!(input.has_reserved_bits(), "{bad:#x}");
    }
    assert_eq!(HvMapGpaFlags::NO_ACCESS.into_bits(), 0);
    assert_eq!(HvMapGpaFlags::ALL_ACCESS.into_bits(), 0xf);
}

#[test]
fn enable_partition_vtl_parses_from_words() {
    let input = HvInputEnablePartitionVtl::read_from_bytes(&bytes(&[u64::MAX, 0x0101])).unwrap();
    assert_eq!((input.partition(), input.target_vtl), (HvPartitionId::SELF, 1));
    assert!(input.flags.enable_mbec() && !input.has_reserved_bits());
    assert_eq!(HvEnablePartitionVtlFlags::new().with_enable_mbec(true).into_bits(), 1);
    for bad in [0x0201, 1 << 16, 1 << 32, 1 << 63] {
        let input = HvInputEnablePartitionVtl::read_from_bytes(&bytes(&[u64::MAX, bad])).unwrap();
        assert!(input.has_reserved_bits(), "{bad:#x}");
    }
}

/// An `HvEnableVpVtl`/`HvStartVirtualProcessor` input at the offsets of the
/// 15.15.4 and 7.10.3 tables: each 8-byte slot holds its own offset, except
/// the table registers' limits (bits 48..63 of their first word).
fn initial_context_words() -> [u64; 30] {
    let mut words: [u64; 30] = core::array::from_fn(|i| 0x1000 + 8 * i as u64);
    words[0] = 7; // partition
    words[1] = 1 << 32 | 3; // VP 3, VTL 1
    words[21] = 0x0fff << 48; // IDTR limit, pad zero
    words[23] = 0x0027 << 48; // GDTR limit
    words
}

#[test]
fn enable_vp_vtl_and_start_vp_parse_from_the_native_tables() {
    let input = HvInputEnableVpVtl::read_from_bytes(&bytes(&initial_context_words())).unwrap();
    assert_eq!((input.partition(), input.vp_index, input.target_vtl), (HvPartitionId(7), 3, 1));
    assert!(!input.has_reserved_bits());
    let c = &input.context;
    assert_eq!((c.rip, c.rsp, c.rflags), (0x1010, 0x1018, 0x1020));
    assert_eq!((c.cs.base, c.ds.base, c.ldtr.base), (0x1028, 0x1038, 0x1098));
    assert_eq!((c.tr.base, c.tr.limit, c.tr.selector), (0x1088, 0x1090, 0));
    assert_eq!((c.idtr.base, c.idtr.limit), (0x10b0, 0x0fff));
    assert_eq!((c.gdtr.base, c.gdtr.limit), (0x10c0, 0x27));
    assert_eq!((c.efer, c.cr0, c.cr3, c.cr4, c.msr_cr_pat), (0x10c8, 0x10d0, 0x10d8, 0x10e0, 0x10e8));
    let start = HvInputStartVirtualProcessor::read_from_bytes(&bytes(&initial_context_words())).unwrap();
    assert_eq!(start, input);
    let mut words = initial_context_words();
    words[1] |= 1 << 40;
    assert!(HvInputStartVirtualProcessor::read_from_bytes(&bytes(&words)).unwrap().has_reserved_bits());
}

#[test]
fn initial_context_becomes_register_values() {
    let mut context = HvInitialVpContext::new_zeroed();
    context.rip = 0xffff_8000_0000_1000;
    context.cs = HvX64SegmentRegister {
        base: 0,
        limit: 0xffff_ffff,
        selector: 0x10,
        attributes: HvX64SegmentAttributes::from_bits(0xa09b),
    };
    context.gdtr = HvX64TableRegister { pad: [0; 3], limit: 0x57, base: 0x9000 };
    context.msr_cr_pat = 0x0007_0406_0007_0406;
    let registers = context.registers();
    let find = |name| registers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v).unwrap();
    assert_eq!(find(HvRegisterName::RIP), HvRegisterValue { low: 0xffff_8000_0000_1000, high: 0 });
    assert_eq!(find(HvRegisterName::CS), HvRegisterValue { low: 0, high: 0xa09b_0010_ffff_ffff });
    assert_eq!(find(HvRegisterName::GDTR), HvRegisterValue { low: 0x57 << 48, high: 0x9000 });
    assert_eq!(find(HvRegisterName::PAT).low, 0x0007_0406_0007_0406);
    // A table register's bytes are its 128-bit register value.
    assert_eq!(context.gdtr.as_bytes(), find(HvRegisterName::GDTR).as_bytes());
    let mut names: Vec<u32> = registers.iter().map(|(n, _)| n.0).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), HV_INITIAL_VP_CONTEXT_REGISTERS, "each register once");
}

#[test]
fn translate_virtual_address_parses_from_words() {
    // 9.3.4: validate read 0x1, write 0x2, execute 0x4, privilege exempt
    // 0x8, set page table bits 0x10, TLB flush inhibit 0x20; VTL in 63:56.
    let flags = 0x11 << 56 | 0x23;
    let input =
        HvInputTranslateVirtualAddress::read_from_bytes(&bytes(&[u64::MAX, 2, flags, 0xffff_8000_0000])).unwrap();
    assert_eq!((input.partition(), input.vp_index, input.gva_page), (HvPartitionId::SELF, 2, 0xffff_8000_0000));
    let f = input.control_flags;
    assert!(f.validate_read() && f.validate_write() && !f.validate_execute() && f.tlb_flush_inhibit());
    assert_eq!((f.input_vtl().use_target_vtl(), f.input_vtl().target_vtl()), (true, 1));
    assert!(f.validates_access() && !input.has_reserved_bits());
    let only = |bits| HvTranslateGvaControlFlags::from_bits(bits);
    assert_eq!(only(0x8).into_bits(), HvTranslateGvaControlFlags::new().with_privilege_exempt(true).into_bits());
    assert_eq!(only(0x10), HvTranslateGvaControlFlags::new().with_set_page_table_bits(true));
    assert!(!only(0x8 | 0x10 | 0x20).validates_access());
    assert!(only(0x4).validates_access());
    // Bits 6..10 are the headers' (SMAP, shadow stack): defined, but not in 6.0b.
    assert!(only(1 << 10).shadow_stack() && !only(1 << 10).has_reserved_bits());
    assert_eq!(HvTranslateGvaControlFlags::TLFS_6_0B_BITS & 1 << 6, 0);
    for bad in [1 << 11, 1 << 55] {
        assert!(only(bad).has_reserved_bits(), "{bad:#x}");
    }
    // A reserved bit of the input VTL byte.
    let input = HvInputTranslateVirtualAddress::read_from_bytes(&bytes(&[1, 0, 1 << 63 | 1, 0])).unwrap();
    assert!(input.has_reserved_bits());
}

#[test]
fn translate_virtual_address_output_layout() {
    let out = HvOutputTranslateVirtualAddress {
        translation_result: HvTranslateGvaResult::from_code(HvTranslateGvaResultCode::SUCCESS)
            .with_cache_type(HvCacheType::X64_WRITE_BACK.0 as u8)
            .with_overlay_page(true),
        gpa_page: 0x1234,
    };
    assert_eq!(out.as_bytes(), bytes(&[6 << 32 | 1 << 40, 0x1234]));
    let parsed = HvOutputTranslateVirtualAddress::read_from_bytes(&bytes(&[5, 0x99])).unwrap();
    assert_eq!(parsed.translation_result.code(), HvTranslateGvaResultCode::GPA_NO_READ_ACCESS);
    assert_eq!(HvTranslateGvaResult::from_bits(6 << 32).cache(), HvCacheType::X64_WRITE_BACK);
    let valid: Vec<u32> = (0..10).filter(|&c| HvTranslateGvaResultCode(c).gpa_page_valid()).collect();
    assert_eq!(valid, [0, 4, 5, 6, 7]);
    assert_eq!(HvTranslateGvaResultCode::INTERCEPT.0, 8);
}

#[test]
fn vsm_needs_three_privileges() {
    let all = HvPartitionPrivilegeMask::new()
        .with_access_vsm(true)
        .with_access_vp_registers(true)
        .with_access_synic_regs(true);
    assert!(all.vsm_available());
    assert!(!all.with_access_vsm(false).vsm_available());
    assert!(!all.with_access_vp_registers(false).vsm_available());
    assert!(!all.with_access_synic_regs(false).vsm_available());
}

#[test]
fn vtl_constants() {
    assert_eq!((HV_NUM_VTLS, HV_VTL_COUNT_MAX, HV_INVALID_VTL, HV_VTL_ALL), (2, 16, 0xff, 0xf));
}
