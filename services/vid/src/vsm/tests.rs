use super::*;
use tlfs::vsm::HvEnablePartitionVtlFlags;
use tlfs::zerocopy::FromZeros;

const VPS: u32 = 4;

/// What 15.3.1 asks for VSM.
fn vsm_privileges() -> HvPartitionPrivilegeMask {
    HvPartitionPrivilegeMask::new().with_access_vsm(true).with_access_vp_registers(true).with_access_synic_regs(true)
}

fn partition() -> PartitionVsm {
    PartitionVsm::new(vsm_privileges(), VPS).unwrap()
}

const fn at(vp: HvVpIndex, vtl: HvVtl) -> VtlCaller {
    VtlCaller { vp, vtl }
}

fn enable_partition(target_vtl: HvVtl) -> HvInputEnablePartitionVtl {
    HvInputEnablePartitionVtl {
        partition_id: HvPartitionId::SELF.0,
        target_vtl,
        flags: HvEnablePartitionVtlFlags::new(),
        reserved_z0: 0,
        reserved_z1: 0,
    }
}

/// A 64-bit context (protected mode, paging, long mode), told apart by `rip`.
fn context(rip: u64) -> HvInitialVpContext {
    let mut c = HvInitialVpContext::new_zeroed();
    c.rip = rip;
    c.cr0 = CR0_PE | 1 << 31;
    c.cr4 = 1 << 5;
    c.efer = 0x500;
    c
}

fn enable_vp(vp_index: HvVpIndex, target_vtl: HvVtl) -> HvInputEnableVpVtl {
    HvInputEnableVpVtl {
        partition_id: HvPartitionId::SELF.0,
        vp_index,
        target_vtl,
        reserved: [0; 3],
        context: context(0x1000 + u64::from(vp_index)),
    }
}

/// A partition with VTL 1 enabled, and on VP 0 (from VTL 0 on VP 0).
fn vtl1_on_vp0() -> PartitionVsm {
    let mut p = partition();
    p.enable_partition_vtl(&enable_partition(1), at(0, 0)).unwrap();
    p.enable_vp_vtl(&enable_vp(0, 1), at(0, 0)).unwrap();
    p
}

/// `call` fails with `status` and leaves the state as it was.
#[track_caller]
fn refused<T: core::fmt::Debug>(
    p: &mut PartitionVsm,
    status: HvError,
    call: impl FnOnce(&mut PartitionVsm) -> HvResult<T>,
) {
    let before = p.clone();
    assert_eq!(call(p).unwrap_err(), status);
    assert_eq!(*p, before, "a refused call changed the state");
}

fn config(bits: u64) -> HvRegisterVsmPartitionConfig {
    HvRegisterVsmPartitionConfig::from_bits(bits)
}

fn vp_status(p: &PartitionVsm, vp: HvVpIndex) -> (HvVtl, VtlSet) {
    let s = p.vp_status(vp).unwrap();
    assert!(!s.active_mbec_enabled());
    (s.active_vtl(), s.enabled_vtl_set())
}

#[test]
fn vp_count_is_bounded_by_the_partition_limit() {
    assert!(PartitionVsm::new(vsm_privileges(), 0).is_none());
    assert!(PartitionVsm::new(vsm_privileges(), MAX_VPS_PER_PARTITION as u32 + 1).is_none());
    let p = PartitionVsm::new(vsm_privileges(), MAX_VPS_PER_PARTITION as u32).unwrap();
    assert_eq!(p.vp_count(), MAX_VPS_PER_PARTITION as u32);
    assert!(p.vp_status(MAX_VPS_PER_PARTITION as u32 - 1).is_ok());
    assert_eq!(partition().vp_status(VPS), Err(HvError::INVALID_VP_INDEX));
}

#[test]
fn a_partition_starts_in_vtl0_alone() {
    // 15.3.4: every VP in VTL 0, no other VTL enabled.
    let p = partition();
    let status = p.partition_status();
    assert_eq!(status.enabled_vtl_set(), 0b1);
    assert_eq!(status.maximum_vtl(), 1);
    assert_eq!(status.mbec_enabled_vtl_set(), 0);
    assert_eq!(status.into_bits(), 0b1 | 1 << 16);
    for vp in 0..VPS {
        assert_eq!(vp_status(&p, vp), (0, 0b1));
    }
    assert_eq!(p.default_protection(), HvMapGpaFlags::ALL_ACCESS);
    assert!(!p.vtl_protection_enabled() && !p.lower_vtl_startup_denied());
}

#[test]
fn capabilities_offer_no_mbec_and_a_private_dr6() {
    // The headers' layout: Dr6Shared bit 0, MbecVtlMask 16:1, DenyLowerVtlStartup 17.
    assert_eq!(VSM_CAPABILITIES.into_bits(), 1 << 17);
    assert!(!VSM_CAPABILITIES.dr6_shared());
    assert_eq!(VSM_CAPABILITIES.mbec_vtl_mask(), 0);
    assert!(VSM_CAPABILITIES.deny_lower_vtl_startup());
}

#[test]
fn vtl0_enables_vtl1_for_the_partition_once() {
    let mut p = partition();
    p.enable_partition_vtl(&enable_partition(1), at(2, 0)).unwrap();
    assert_eq!(p.enabled_vtls(), 0b11);
    assert_eq!(p.partition_status().enabled_vtl_set(), 0b11);
    // Enabling a VTL for the partition does not enable it on a VP (15.4.1).
    for vp in 0..VPS {
        assert_eq!(vp_status(&p, vp), (0, 0b1));
    }
    // Again: 6.0b's INVALID_VTL_STATE, not the headers' VTL_ALREADY_ENABLED.
    refused(&mut p, HvError::INVALID_VTL_STATE, |p| p.enable_partition_vtl(&enable_partition(1), at(0, 0)));
}

#[test]
fn enable_partition_vtl_launch_rules() {
    let mut p = vtl1_on_vp0();
    // 15.15.3 rule 1: VTL 1 may enable VTL 0, which is enabled already.
    refused(&mut p, HvError::INVALID_VTL_STATE, |p| p.enable_partition_vtl(&enable_partition(0), at(0, 1)));
    // Neither rule lets a VTL enable itself.
    refused(&mut p, HvError::ACCESS_DENIED, |p| p.enable_partition_vtl(&enable_partition(1), at(0, 1)));
    let mut p = partition();
    refused(&mut p, HvError::ACCESS_DENIED, |p| p.enable_partition_vtl(&enable_partition(0), at(0, 0)));
}

#[test]
fn launch_rules_hold_for_more_vtls() {
    // 15.15.3 over sets the VID does not offer, VTLs not consecutive (15.4).
    let set = |vtls: &[HvVtl]| vtls.iter().fold(0, |s, v| s | 1 << v);
    assert!(may_launch(set(&[0]), 0, 1));
    assert!(may_launch(set(&[0]), 0, 2), "VTL 0 is the highest below 2");
    assert!(!may_launch(set(&[0, 1]), 0, 2), "VTL 1 is");
    assert!(may_launch(set(&[0, 1]), 1, 2));
    assert!(may_launch(set(&[0, 2]), 0, 1));
    assert!(!may_launch(set(&[0, 2]), 0, 3));
    assert!(may_launch(set(&[0, 2]), 2, 3));
    assert!(may_launch(set(&[0, 2]), 2, 1), "a lower VTL, always");
    assert!(may_launch(set(&[0, 1, 2]), 2, 0));
    for v in 0..16 {
        assert!(!may_launch(set(&[0, 1, 2]), v, v), "VTL {v} enabling itself");
    }
    assert_eq!(highest_below(set(&[0, 3, 15]), 15), Some(3));
    assert_eq!(highest_below(set(&[0, 3, 15]), 0xff), Some(15));
    assert_eq!(highest_below(set(&[3]), 3), None);
    assert!(has_vtl(0x8000, 15) && !has_vtl(0xffff, 16) && !has_vtl(0xffff, 0xff));
}

#[test]
fn enable_partition_vtl_refuses_bad_input() {
    let mut p = partition();
    let with = |f: fn(&mut HvInputEnablePartitionVtl)| {
        let mut input = enable_partition(1);
        f(&mut input);
        input
    };
    let invalid = [
        with(|i| i.flags = HvEnablePartitionVtlFlags::new().with_enable_mbec(true)),
        with(|i| i.flags = HvEnablePartitionVtlFlags::from_bits(0x80)),
        with(|i| i.flags = HvEnablePartitionVtlFlags::from_bits(0x02)),
        with(|i| i.reserved_z0 = 1),
        with(|i| i.reserved_z1 = 0x8000_0000),
        with(|i| i.target_vtl = 2),
        with(|i| i.target_vtl = 15),
        with(|i| i.target_vtl = tlfs::vsm::HV_INVALID_VTL),
    ];
    for input in invalid {
        refused(&mut p, HvError::INVALID_PARAMETER, |p| p.enable_partition_vtl(&input, at(0, 0)));
    }
}

#[test]
fn only_the_own_partition_may_be_named() {
    // ACCESS_DENIED, checked before the input (3.12.2).
    let mut p = partition();
    for partition_id in [0, 1, 0x10, HvPartitionId::SELF.0 - 1] {
        for reserved_z0 in [0, 1] {
            let input = HvInputEnablePartitionVtl { partition_id, reserved_z0, ..enable_partition(1) };
            refused(&mut p, HvError::ACCESS_DENIED, |p| p.enable_partition_vtl(&input, at(0, 0)));
        }
        for target_vtl in [1, 7] {
            let input = HvInputEnableVpVtl { partition_id, target_vtl, ..enable_vp(0, 1) };
            refused(&mut p, HvError::ACCESS_DENIED, |p| p.enable_vp_vtl(&input, at(0, 0)));
        }
    }
}

#[test]
fn vsm_needs_all_three_privileges() {
    // 15.3.1: AccessVsm, AccessVpRegisters and AccessSynicRegs.
    let lacking = [
        vsm_privileges().with_access_vsm(false),
        vsm_privileges().with_access_vp_registers(false),
        vsm_privileges().with_access_synic_regs(false),
    ];
    for privileges in lacking {
        let mut p = PartitionVsm::new(privileges, VPS).unwrap();
        refused(&mut p, HvError::ACCESS_DENIED, |p| p.enable_partition_vtl(&enable_partition(1), at(0, 0)));
        refused(&mut p, HvError::ACCESS_DENIED, |p| p.enable_vp_vtl(&enable_vp(0, 1), at(0, 0)));
    }
}

#[test]
fn the_partition_comes_before_the_vp() {
    // 15.4.2, 15.15.4: "it must first be enabled for the partition".
    let mut p = partition();
    refused(&mut p, HvError::INVALID_VTL_STATE, |p| p.enable_vp_vtl(&enable_vp(0, 1), at(0, 0)));
}

#[test]
fn enable_vp_vtl_records_the_context_and_keeps_the_active_vtl() {
    let mut p = partition();
    p.enable_partition_vtl(&enable_partition(1), at(0, 0)).unwrap();
    let done = p.enable_vp_vtl(&enable_vp(0, 1), at(0, 0)).unwrap();
    assert_eq!(done, EnabledVpVtl { vp: 0, vtl: 1, context: context(0x1000) });
    // 15.15.4: "This call does not change the active VTL."
    assert_eq!(vp_status(&p, 0), (0, 0b11));
    assert_eq!(vp_status(&p, 1), (0, 0b1));
    assert_eq!(p.partition_status().enabled_vtl_set(), 0b11);
    assert_eq!(p.take_initial_context(0), Some(context(0x1000)));
    assert_eq!(p.take_initial_context(0), None, "taken once");
    assert_eq!(p.take_initial_context(1), None);
    assert_eq!(p.take_initial_context(VPS), None);
}

#[test]
fn the_first_vp_may_be_any_vp() {
    // 15.4.2 does not single out VP 0: VTL 0 on VP 2 enables VTL 1 on VP 3.
    let mut p = partition();
    p.enable_partition_vtl(&enable_partition(1), at(2, 0)).unwrap();
    assert_eq!(p.enable_vp_vtl(&enable_vp(3, 1), at(2, 0)).unwrap().vp, 3);
    assert_eq!(vp_status(&p, 3), (0, 0b11));
    assert_eq!(vp_status(&p, 2), (0, 0b1));
}

#[test]
fn after_the_first_vp_only_vtl1_enables_vtl1() {
    // 15.15.4: "Once the target VTL is enabled on a VP, all other calls to
    // enable the VTL must come from equal or greater VTLs."
    let mut p = vtl1_on_vp0();
    refused(&mut p, HvError::ACCESS_DENIED, |p| p.enable_vp_vtl(&enable_vp(1, 1), at(0, 0)));
    refused(&mut p, HvError::ACCESS_DENIED, |p| p.enable_vp_vtl(&enable_vp(1, 1), at(1, 0)));
    let done = p.enable_vp_vtl(&enable_vp(1, 1), at(0, 1)).unwrap();
    assert_eq!((done.vp, done.vtl), (1, 1));
    assert_eq!(vp_status(&p, 1), (0, 0b11));
    assert_eq!(p.take_initial_context(1), Some(context(0x1001)));
    // "This hypercall will fail if called to enable a VTL that is already
    // enabled for a VP."
    refused(&mut p, HvError::INVALID_VTL_STATE, |p| p.enable_vp_vtl(&enable_vp(1, 1), at(0, 1)));
    refused(&mut p, HvError::INVALID_VTL_STATE, |p| p.enable_vp_vtl(&enable_vp(0, 1), at(0, 1)));
    // VTL 0 is enabled on every VP.
    refused(&mut p, HvError::INVALID_VTL_STATE, |p| p.enable_vp_vtl(&enable_vp(2, 0), at(0, 1)));
    refused(&mut p, HvError::INVALID_VTL_STATE, |p| p.enable_vp_vtl(&enable_vp(2, 0), at(2, 0)));
}

#[test]
fn vp_index_self_names_the_caller() {
    let mut p = vtl1_on_vp0();
    let done = p.enable_vp_vtl(&enable_vp(HV_VP_INDEX_SELF, 1), at(2, 1)).unwrap();
    assert_eq!(done.vp, 2);
    assert_eq!(vp_status(&p, 2), (0, 0b11));
    assert_eq!(vp_status(&p, 3), (0, 0b1));
}

#[test]
fn enable_vp_vtl_refuses_bad_input() {
    let mut p = partition();
    p.enable_partition_vtl(&enable_partition(1), at(0, 0)).unwrap();
    let with = |f: fn(&mut HvInputEnableVpVtl)| {
        let mut input = enable_vp(0, 1);
        f(&mut input);
        input
    };
    for input in [
        with(|i| i.reserved = [0, 0, 1]),
        with(|i| i.reserved = [0x80, 0, 0]),
        with(|i| i.target_vtl = 2),
        with(|i| i.target_vtl = 0xff),
    ] {
        refused(&mut p, HvError::INVALID_PARAMETER, |p| p.enable_vp_vtl(&input, at(0, 0)));
    }
    for vp_index in [VPS, MAX_VPS_PER_PARTITION as u32, tlfs::HvVpIndex::MAX] {
        let input = HvInputEnableVpVtl { vp_index, ..enable_vp(0, 1) };
        refused(&mut p, HvError::INVALID_VP_INDEX, |p| p.enable_vp_vtl(&input, at(0, 0)));
    }
    // No real mode above VTL 0 (15.11.3).
    let real = with(|i| i.context.cr0 &= !CR0_PE);
    refused(&mut p, HvError::INVALID_REGISTER_VALUE, |p| p.enable_vp_vtl(&real, at(0, 0)));
    // The VP index before the context, the input before the state.
    let bad_vp = HvInputEnableVpVtl { vp_index: VPS, ..real };
    refused(&mut p, HvError::INVALID_VP_INDEX, |p| p.enable_vp_vtl(&bad_vp, at(0, 0)));
    refused(&mut partition(), HvError::INVALID_REGISTER_VALUE, |p| p.enable_vp_vtl(&real, at(0, 0)));
    // And it still works.
    assert!(p.enable_vp_vtl(&enable_vp(0, 1), at(0, 0)).is_ok());
}

#[test]
fn the_active_vtl_must_be_enabled_on_the_vp() {
    let mut p = vtl1_on_vp0();
    refused(&mut p, HvError::INVALID_VTL_STATE, |p| p.set_active_vtl(1, 1));
    refused(&mut p, HvError::INVALID_VTL_STATE, |p| p.set_active_vtl(0, 2));
    refused(&mut p, HvError::INVALID_VTL_STATE, |p| p.set_active_vtl(0, 0xff));
    refused(&mut p, HvError::INVALID_VP_INDEX, |p| p.set_active_vtl(VPS, 0));
    p.set_active_vtl(0, 1).unwrap();
    assert_eq!(vp_status(&p, 0), (1, 0b11));
    assert_eq!(p.vp_status(0).unwrap().into_bits(), 1 | 0b11 << 16);
    assert_eq!(vp_status(&p, 1), (0, 0b1));
    p.set_active_vtl(0, 0).unwrap();
    assert_eq!(vp_status(&p, 0), (0, 0b11));
}

#[test]
fn starting_a_vp_in_a_vtl() {
    let mut p = vtl1_on_vp0();
    p.enable_vp_vtl(&enable_vp(1, 1), at(0, 1)).unwrap();
    assert_eq!(p.start_vp_vtl(1, 0, at(0, 0)), Ok(()));
    assert_eq!(p.start_vp_vtl(1, 1, at(0, 1)), Ok(()));
    assert_eq!(p.start_vp_vtl(1, 0, at(0, 1)), Ok(()));
    // Not in a VTL above the caller's, nor one the VP lacks (15.4.2).
    assert_eq!(p.start_vp_vtl(1, 1, at(0, 0)), Err(HvError::ACCESS_DENIED));
    assert_eq!(p.start_vp_vtl(2, 1, at(0, 1)), Err(HvError::INVALID_VTL_STATE));
    assert_eq!(p.start_vp_vtl(2, 2, at(0, 1)), Err(HvError::ACCESS_DENIED));
    assert_eq!(p.start_vp_vtl(VPS, 0, at(0, 0)), Err(HvError::INVALID_VP_INDEX));
    assert_eq!(p.start_vp_vtl(HV_VP_INDEX_SELF, 0, at(0, 0)), Err(HvError::INVALID_VP_INDEX));
    // DenyLowerVtlStartup (15.5.1.4): VTL 0 may not, VTL 1 still may.
    p.write_partition_config(1, HvRegisterVsmPartitionConfig::new().with_deny_lower_vtl_startup(true)).unwrap();
    assert_eq!(p.start_vp_vtl(2, 0, at(0, 0)), Err(HvError::ACCESS_DENIED));
    assert_eq!(p.start_vp_vtl(VPS, 0, at(0, 0)), Err(HvError::ACCESS_DENIED), "access first");
    assert_eq!(p.start_vp_vtl(2, 0, at(0, 1)), Ok(()));
}

#[test]
fn only_vtl1_has_the_partition_config() {
    // 15.5.1: one instance per VTL above 0; no VTL modifies a higher one's.
    let mut p = partition();
    refused(&mut p, HvError::ACCESS_DENIED, |p| p.write_partition_config(0, config(1)));
    assert_eq!(p.partition_config(0), Err(HvError::ACCESS_DENIED));
    // A VTL 1 caller before VTL 1 is enabled (the VID would not make one).
    refused(&mut p, HvError::INVALID_VTL_STATE, |p| p.write_partition_config(1, config(1)));
    refused(&mut p, HvError::INVALID_VTL_STATE, |p| p.write_partition_config(2, config(1)));
    let mut p = vtl1_on_vp0();
    refused(&mut p, HvError::ACCESS_DENIED, |p| p.write_partition_config(0, config(1)));
    // ZeroMemOnReset is on by default (15.5.1.3).
    assert_eq!(p.partition_config(1), Ok(config(1 << 5)));
}

#[test]
fn partition_config_refuses_reserved_bits_and_intercepts() {
    let mut p = vtl1_on_vp0();
    // Bits 7-12 are the intercepts, not offered; 13-63 are reserved.
    for bit in 7..64 {
        refused(&mut p, HvError::INVALID_PARAMETER, |p| p.write_partition_config(1, config(1 << bit)));
    }
}

#[test]
fn default_protection_mask_is_a_15_9_3_protection() {
    // None, R, RX, RW, RWX; UMX (bit 3) is ignored without MBEC.
    let valid = [0b0000, 0b0001, 0b0101, 0b0011, 0b0111];
    for mask in 0u8..16 {
        let mut p = vtl1_on_vp0();
        let value = HvRegisterVsmPartitionConfig::new().with_default_vtl_protection_mask(mask);
        let ok = valid.contains(&(mask & 0b0111));
        if ok {
            p.write_partition_config(1, value).unwrap();
            assert_eq!(p.partition_config(1), Ok(value), "mask {mask:#06b}");
        } else {
            refused(&mut p, HvError::INVALID_PARAMETER, |p| p.write_partition_config(1, value));
        }
    }
}

#[test]
fn vtl_protection_and_its_mask_are_write_once() {
    let rw = 0b0011;
    let mut p = vtl1_on_vp0();
    // Before protection is enabled the mask may change, and means nothing.
    p.write_partition_config(1, HvRegisterVsmPartitionConfig::new().with_default_vtl_protection_mask(rw)).unwrap();
    p.write_partition_config(1, HvRegisterVsmPartitionConfig::new().with_default_vtl_protection_mask(0b0001)).unwrap();
    assert_eq!(p.default_protection(), HvMapGpaFlags::ALL_ACCESS);
    let on = HvRegisterVsmPartitionConfig::new().with_enable_vtl_protection(true).with_default_vtl_protection_mask(rw);
    p.write_partition_config(1, on).unwrap();
    assert!(p.vtl_protection_enabled());
    assert_eq!(p.default_protection(), HvMapGpaFlags::new().with_readable(true).with_writable(true));
    // 15.5.1.1: EnableVtlProtection stays; 15.5.1.2: so does the mask.
    refused(&mut p, HvError::INVALID_REGISTER_VALUE, |p| {
        p.write_partition_config(1, on.with_enable_vtl_protection(false))
    });
    refused(&mut p, HvError::INVALID_REGISTER_VALUE, |p| {
        p.write_partition_config(1, on.with_default_vtl_protection_mask(0b0111))
    });
    refused(&mut p, HvError::INVALID_REGISTER_VALUE, |p| p.write_partition_config(1, config(0)));
    // The other fields may change.
    let more = on.with_zero_memory_on_reset(true).with_deny_lower_vtl_startup(true);
    p.write_partition_config(1, more).unwrap();
    assert!(p.lower_vtl_startup_denied());
    p.write_partition_config(1, on).unwrap();
    assert!(!p.lower_vtl_startup_denied());
    assert_eq!(p.partition_config(1), Ok(on));
}

#[test]
fn vp_secure_config_is_vtl1s_on_each_vp() {
    let mut p = vtl1_on_vp0();
    let locked = HvRegisterVsmVpSecureVtlConfig::new().with_tlb_locked(true);
    // 15.5.2: a higher VTL's register.
    refused(&mut p, HvError::ACCESS_DENIED, |p| p.write_vp_secure_config(0, 0, locked));
    assert_eq!(p.vp_secure_config(0, 0), Err(HvError::ACCESS_DENIED));
    // VTL 1 is not enabled on VP 1: no instance there.
    refused(&mut p, HvError::INVALID_VTL_STATE, |p| p.write_vp_secure_config(1, 1, locked));
    assert_eq!(p.vp_secure_config(1, 1), Err(HvError::INVALID_VTL_STATE));
    refused(&mut p, HvError::INVALID_VP_INDEX, |p| p.write_vp_secure_config(1, VPS, locked));
    // MBEC is not offered (15.10.2); bits 2-63 are reserved.
    let mbec = HvRegisterVsmVpSecureVtlConfig::new().with_mbec_enabled(true);
    refused(&mut p, HvError::INVALID_PARAMETER, |p| p.write_vp_secure_config(1, 0, mbec));
    for bit in 2..64 {
        let value = HvRegisterVsmVpSecureVtlConfig::from_bits(1 << bit);
        refused(&mut p, HvError::INVALID_PARAMETER, |p| p.write_vp_secure_config(1, 0, value));
    }
    // TlbLocked is recorded, per VP (15.5.2.2).
    assert!(!p.vtl0_tlb_locked(0));
    p.write_vp_secure_config(1, 0, locked).unwrap();
    assert_eq!(p.vp_secure_config(1, 0), Ok(locked));
    assert!(p.vtl0_tlb_locked(0) && !p.vtl0_tlb_locked(1) && !p.vtl0_tlb_locked(VPS));
    p.write_vp_secure_config(1, 0, HvRegisterVsmVpSecureVtlConfig::new()).unwrap();
    assert!(!p.vtl0_tlb_locked(0));
    // A return to VTL 0 releases the locks (15.5.2.2); a call up keeps them.
    p.write_vp_secure_config(1, 0, locked).unwrap();
    p.set_active_vtl(0, 1).unwrap();
    assert!(p.vtl0_tlb_locked(0), "entering VTL 1 keeps the lock");
    p.set_active_vtl(0, 0).unwrap();
    assert!(!p.vtl0_tlb_locked(0), "the return to VTL 0 released it");
}

#[test]
fn reset_returns_to_vtl0_alone() {
    // 15.3.4; 15.5.1.2: the mask "is only cleared by a partition reset".
    let mut p = vtl1_on_vp0();
    p.enable_vp_vtl(&enable_vp(1, 1), at(0, 1)).unwrap();
    p.set_active_vtl(1, 1).unwrap();
    let on = HvRegisterVsmPartitionConfig::new().with_enable_vtl_protection(true).with_default_vtl_protection_mask(1);
    p.write_partition_config(1, on).unwrap();
    p.write_vp_secure_config(1, 1, HvRegisterVsmVpSecureVtlConfig::new().with_tlb_locked(true)).unwrap();
    assert_ne!(p, partition());
    p.reset();
    assert_eq!(p, partition());
    assert_eq!(p.default_protection(), HvMapGpaFlags::ALL_ACCESS);
    // And VTL 1 can be enabled again.
    assert!(p.enable_partition_vtl(&enable_partition(1), at(0, 0)).is_ok());
}
