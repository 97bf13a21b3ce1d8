//! Virtual Secure Mode (TLFS 15) as the VID keeps it: which VTLs a
//! partition and its VPs have enabled, the VSM registers, and the rules of
//! HvEnablePartitionVtl and HvEnableVpVtl (15.4, 15.15.3, 15.15.4) and
//! VSM's part of HvStartVirtualProcessor (7.10.3). Pure state: the
//! hypercall handlers (`hypercall/calls.rs`) use it, and ask ring 0 for
//! what it must do through [`VtlKernel`] (ARCHITECTURE §6.5).
//!
//! Only VTL 0 and VTL 1 are offered ([`MAXIMUM_VTL`] = 1, 6.0b's
//! `HV_NUM_VTLS` = 2), without MBEC ([`VSM_CAPABILITIES`]). VTL 1 has one
//! [`HvRegisterVsmPartitionConfig`] and, per VP, one
//! [`HvRegisterVsmVpSecureVtlConfig`] (of VTL 0).
//!
//! # Statuses and their order
//!
//! A call's failures return the statuses its 15.15 table lists. A VTL
//! already enabled is `INVALID_VTL_STATE`, 6.0b's status; the headers'
//! `VTL_ALREADY_ENABLED` (0x86, which OpenVMM returns) is not in 6.0b's
//! tables and is not used. A partition other than `HV_PARTITION_ID_SELF`
//! is `ACCESS_DENIED`, as in the VID's other calls: a guest has no child
//! partitions, and 3.12.2 prefers the status that reveals least.
//!
//! The enabling calls check, in this order (3.12.2: access first, state
//! last): the privileges and the partition (`ACCESS_DENIED`); the input
//! (`INVALID_PARAMETER`, `INVALID_VP_INDEX`, `INVALID_REGISTER_VALUE`);
//! who may enable the VTL (`ACCESS_DENIED`); the VTL's state
//! (`INVALID_VTL_STATE`). A failed call changes nothing.
//!
//! Register writes follow 7.10.1: a reserved bit, or a feature not
//! offered, is `INVALID_PARAMETER`; a value the register's state refuses
//! (a write-once field changed) is `INVALID_REGISTER_VALUE`; a VTL writing
//! a higher VTL's register is `ACCESS_DENIED`, and one whose VTL is not
//! enabled `INVALID_VTL_STATE`.

use abi::ErrorCode;
use abi::limits::MAX_VPS_PER_PARTITION;
use tlfs::cpuid::HvPartitionPrivilegeMask;
use tlfs::hypercall::HvRegisterValue;
use tlfs::vsm::{
    HV_NUM_VTLS, HvInitialVpContext, HvInputEnablePartitionVtl, HvInputEnableVpVtl, HvRegisterVsmCapabilities,
    HvRegisterVsmCodePageOffsets, HvRegisterVsmPartitionConfig, HvRegisterVsmPartitionStatus,
    HvRegisterVsmVpSecureVtlConfig, HvRegisterVsmVpStatus, HvVtl,
};
use tlfs::{HV_VP_INDEX_SELF, HvError, HvMapGpaFlags, HvPartitionId, HvRegisterName, HvResult, HvVpIndex};
use x86defs::CR0_PE;

/// The highest VTL offered (`MaximumVtl`, 15.3.3.1).
pub const MAXIMUM_VTL: HvVtl = HV_NUM_VTLS - 1;

/// A set of VTLs: bit n is VTL n (15.3.3).
pub type VtlSet = u16;

/// True if `set` holds `vtl`; never for a VTL beyond the 16 of 15.2.
pub const fn has_vtl(set: VtlSet, vtl: HvVtl) -> bool {
    vtl < VtlSet::BITS as u8 && set & (1 << vtl) != 0
}

/// VTL 0 alone: how every partition and VP starts and resets (15.3.4).
const VTL0_ONLY: VtlSet = 1;

/// `HvRegisterVsmCapabilities` (15.3.2). DR6 is private to each VTL
/// (Dr6Shared = 0, the 15.11.1.2 list): the same on both vendors, and VTL 0
/// never sees VTL 1's debug status (SVM keeps DR6 in the VMCB; on VMX ring
/// 0 switches it with the context). No MBEC (MbecVtlMask = 0, §6.5). VTL 1
/// may deny lower VTLs VP startup (15.5.1.4).
pub const VSM_CAPABILITIES: HvRegisterVsmCapabilities =
    HvRegisterVsmCapabilities::new().with_dr6_shared(false).with_mbec_vtl_mask(0).with_deny_lower_vtl_startup(true);

/// `HvRegisterVsmCodePageOffsets` (15.8): the same in every VTL's
/// hypercall page ([`crate::synthetic::hypercall_page`]).
pub const CODE_PAGE_OFFSETS: HvRegisterVsmCodePageOffsets = HvRegisterVsmCodePageOffsets::new()
    .with_vtl_call_offset(crate::synthetic::VTL_CALL_OFFSET as u16)
    .with_vtl_return_offset(crate::synthetic::VTL_RETURN_OFFSET as u16);

/// What VTL 1 may set in its [`HvRegisterVsmPartitionConfig`]. The
/// intercept flags need secure intercepts (15.13), not built.
const CONFIG_OFFERED: u64 = HvRegisterVsmPartitionConfig::new()
    .with_enable_vtl_protection(true)
    .with_default_vtl_protection_mask(0xf)
    .with_zero_memory_on_reset(true)
    .with_deny_lower_vtl_startup(true)
    .into_bits();

/// VTL 1's configuration when it is enabled: ZeroMemOnReset is "on by
/// default" (15.5.1.3), the rest clear.
const CONFIG_INITIAL: HvRegisterVsmPartitionConfig =
    HvRegisterVsmPartitionConfig::new().with_zero_memory_on_reset(true);

/// One of the protections of 15.9.3 (none, R, RX, RW, RWX): write or
/// execute needs read. UMX is ignored without MBEC (15.10).
pub const fn is_protection_type(mask: HvMapGpaFlags) -> bool {
    mask.readable() || !(mask.writable() || mask.kernel_executable())
}

/// The highest VTL of `set` below `vtl`.
fn highest_below(set: VtlSet, vtl: HvVtl) -> Option<HvVtl> {
    let below = u32::from(set) & ((1u32 << vtl.min(16)) - 1);
    (below != 0).then(|| (u32::BITS - 1 - below.leading_zeros()) as HvVtl)
}

/// The launch rules of 15.15.3 (and the first of 15.15.4): a VTL may
/// enable a lower VTL, or a higher one if it is the highest VTL enabled
/// below that one (VTLs need not be consecutive, 15.4).
fn may_launch(enabled: VtlSet, caller: HvVtl, target: HvVtl) -> bool {
    target < caller || (target > caller && highest_below(enabled, target) == Some(caller))
}

/// VSM's ring-0 operations on one partition (`abi::invoke`'s
/// PARTITION_ENABLE_VTL, VP_ENABLE_VTL, VP_SWITCH_VTL, VP_SET_REGISTERS),
/// as the enabling calls need them.
pub trait VtlKernel {
    /// PARTITION_ENABLE_VTL.
    fn enable_partition_vtl(&mut self, vtl: HvVtl) -> Result<(), ErrorCode>;
    /// VP `vp` may be in guest mode now (neither at an exit nor waiting
    /// to be started): ring 0 cannot change its VTLs.
    fn may_run(&self, vp: HvVpIndex) -> bool;
    /// VP_ENABLE_VTL of `vtl` on `vp`, then `registers` set in it (switched
    /// there and back to `active`, the VP's VTL). `Err` before the VTL was
    /// made: nothing changed; `Ok(Err)`: made, registers refused.
    fn enable_vp_vtl(
        &mut self,
        vp: HvVpIndex,
        vtl: HvVtl,
        active: HvVtl,
        registers: &[(HvRegisterName, HvRegisterValue)],
    ) -> Result<Result<(), ErrorCode>, ErrorCode>;
    /// VTL 0's access to RAM page `gpn` narrowed to `mask`
    /// (PARTITION_PROTECT), and recorded for the VID's own accesses
    /// ([`protect::Protections`]). `INVALID_PARAMETER` for a page that is
    /// not RAM or a mask that is no protection type (15.9.3),
    /// `INSUFFICIENT_MEMORY` when the table or ring 0 has no room; nothing
    /// changes then.
    fn protect(&mut self, _gpn: u64, _mask: HvMapGpaFlags) -> HvResult<()> {
        Err(HvError::INVALID_PARTITION_STATE)
    }
    /// VTL 0's access to all of the partition's RAM narrowed to `mask`,
    /// the default of 15.5.1.2 (PARTITION_PROTECT), and made the VID's
    /// table's default. Statuses as [`protect`](Self::protect)'s; a
    /// refusal leaves every page as it was.
    fn protect_default(&mut self, _mask: HvMapGpaFlags) -> HvResult<()> {
        Err(HvError::INVALID_PARTITION_STATE)
    }
    /// VP_SWITCH_VTL of the VP at its exit, `vp`.
    fn switch_vtl(&mut self, vp: HvVpIndex, vtl: HvVtl) -> Result<(), ErrorCode>;
    /// A register of VTL `vtl` of the VP at its exit, `vp`, which runs in
    /// `active`: switched there, read, switched back.
    fn vtl_register(
        &mut self,
        vp: HvVpIndex,
        vtl: HvVtl,
        active: HvVtl,
        name: HvRegisterName,
    ) -> Result<(u64, u64), ErrorCode>;
}

/// The status of a ring-0 refusal of an enabling call: memory, the VTL's
/// or VP's state (ring 0 disagrees with the VID), or else the partition's.
pub fn kernel_status(e: ErrorCode, state: HvError) -> HvError {
    match e {
        ErrorCode::OUT_OF_MEMORY => HvError::INSUFFICIENT_MEMORY,
        ErrorCode::INVALID_STATE => state,
        ErrorCode::INVALID_ARGUMENT => HvError::INVALID_REGISTER_VALUE,
        _ => HvError::INVALID_PARTITION_STATE,
    }
}

/// The VP that made a call, and the VTL it runs in (the intercept's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VtlCaller {
    pub vp: HvVpIndex,
    pub vtl: HvVtl,
}

/// What a successful HvEnableVpVtl asks of ring 0: a context for `vtl` on
/// `vp`, which starts from `context` at its first entry (15.15.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnabledVpVtl {
    pub vp: HvVpIndex,
    pub vtl: HvVtl,
    pub context: HvInitialVpContext,
}

/// A VP's VSM state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct VpVsm {
    enabled: VtlSet,
    /// Not changed by enabling a VTL (15.15.4).
    active: HvVtl,
    /// VTL 1's initial context, from HvEnableVpVtl until ring 0 takes it.
    vtl1_context: Option<HvInitialVpContext>,
    /// VTL 1's HvRegisterVsmVpSecureConfigVtl0 (15.5.2).
    vtl0_secure_config: HvRegisterVsmVpSecureVtlConfig,
    /// Where each VTL continues when next entered: past the VTL call or
    /// return it left by (15.7.1); `None` before it left once.
    resume: [Option<u64>; HV_NUM_VTLS as usize],
}

impl VpVsm {
    const INITIAL: VpVsm = VpVsm {
        enabled: VTL0_ONLY,
        active: 0,
        vtl1_context: None,
        vtl0_secure_config: HvRegisterVsmVpSecureVtlConfig::new(),
        resume: [None; HV_NUM_VTLS as usize],
    };
}

/// A partition's VSM state (VTLs 0 and 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionVsm {
    /// AccessVsm, AccessVpRegisters and AccessSynicRegs (15.3.1).
    available: bool,
    enabled: VtlSet,
    /// VTL 1's HvRegisterVsmPartitionConfig (15.5.1).
    vtl1_config: HvRegisterVsmPartitionConfig,
    vp_count: u32,
    vps: [VpVsm; MAX_VPS_PER_PARTITION],
}

impl PartitionVsm {
    /// A partition of `vp_count` VPs (1..=[`MAX_VPS_PER_PARTITION`]) in
    /// VTL 0; VSM is usable with `privileges`' VSM set (15.3.1).
    pub fn new(privileges: HvPartitionPrivilegeMask, vp_count: u32) -> Option<PartitionVsm> {
        (1..=MAX_VPS_PER_PARTITION as u32).contains(&vp_count).then(|| PartitionVsm {
            available: privileges.vsm_available(),
            enabled: VTL0_ONLY,
            vtl1_config: CONFIG_INITIAL,
            vp_count,
            vps: [VpVsm::INITIAL; MAX_VPS_PER_PARTITION],
        })
    }

    /// A partition reset: VTL 0 alone on every VP (15.3.4), VTL 1's
    /// configuration cleared (15.5.1.2).
    pub fn reset(&mut self) {
        self.enabled = VTL0_ONLY;
        self.vtl1_config = CONFIG_INITIAL;
        self.vps = [VpVsm::INITIAL; MAX_VPS_PER_PARTITION];
    }

    pub const fn vp_count(&self) -> u32 {
        self.vp_count
    }

    /// The VTLs enabled for the partition.
    pub const fn enabled_vtls(&self) -> VtlSet {
        self.enabled
    }

    fn vp(&self, vp: HvVpIndex) -> HvResult<&VpVsm> {
        self.vps[..self.vp_count as usize].get(vp as usize).ok_or(HvError::INVALID_VP_INDEX)
    }

    fn vp_mut(&mut self, vp: HvVpIndex) -> HvResult<&mut VpVsm> {
        self.vps[..self.vp_count as usize].get_mut(vp as usize).ok_or(HvError::INVALID_VP_INDEX)
    }

    /// The privileges (15.3.1) and the partition named.
    fn vsm_access(&self, partition: HvPartitionId) -> HvResult<()> {
        if !self.available || partition != HvPartitionId::SELF {
            return Err(HvError::ACCESS_DENIED);
        }
        Ok(())
    }

    /// HvEnablePartitionVtl (15.15.3).
    pub fn enable_partition_vtl(&mut self, input: &HvInputEnablePartitionVtl, caller: VtlCaller) -> HvResult<()> {
        self.enable_partition_vtl_with(input, caller, |_| Ok(()))
    }

    /// [`PartitionVsm::enable_partition_vtl`] that has `ring0` make the
    /// VTL once the call's checks pass; recorded only if it did.
    pub fn enable_partition_vtl_with(
        &mut self,
        input: &HvInputEnablePartitionVtl,
        caller: VtlCaller,
        ring0: impl FnOnce(HvVtl) -> HvResult<()>,
    ) -> HvResult<()> {
        self.vsm_access(input.partition())?;
        // EnableMbec: no VTL may have MBEC (MbecVtlMask = 0, 15.10.2).
        if input.has_reserved_bits() || input.flags.enable_mbec() || input.target_vtl > MAXIMUM_VTL {
            return Err(HvError::INVALID_PARAMETER);
        }
        if !may_launch(self.enabled, caller.vtl, input.target_vtl) {
            return Err(HvError::ACCESS_DENIED);
        }
        if has_vtl(self.enabled, input.target_vtl) {
            return Err(HvError::INVALID_VTL_STATE);
        }
        ring0(input.target_vtl)?;
        self.enabled |= 1 << input.target_vtl;
        Ok(())
    }

    /// HvEnableVpVtl (15.15.4). `HV_VP_INDEX_SELF` names the caller's VP
    /// (7.8.1). The first VP given a VTL may be any VP, enabled by a lower
    /// VTL under [`may_launch`]'s rules; once one VP has it, only that VTL
    /// or a higher one may enable it on others.
    pub fn enable_vp_vtl(&mut self, input: &HvInputEnableVpVtl, caller: VtlCaller) -> HvResult<EnabledVpVtl> {
        self.enable_vp_vtl_with(input, caller, |_| (true, Ok(())))
    }

    /// [`PartitionVsm::enable_vp_vtl`] that has `ring0` make the VP's VTL
    /// and set its context once the call's checks pass: it answers whether
    /// the VTL was made (then recorded, the context applied) and the
    /// call's status.
    pub fn enable_vp_vtl_with(
        &mut self,
        input: &HvInputEnableVpVtl,
        caller: VtlCaller,
        ring0: impl FnOnce(&EnabledVpVtl) -> (bool, HvResult<()>),
    ) -> HvResult<EnabledVpVtl> {
        self.vsm_access(input.partition())?;
        let target = input.target_vtl;
        if input.has_reserved_bits() || target > MAXIMUM_VTL {
            return Err(HvError::INVALID_PARAMETER);
        }
        let vp = if input.vp_index == HV_VP_INDEX_SELF { caller.vp } else { input.vp_index };
        self.vp(vp)?;
        // No real mode above VTL 0 (15.11.3).
        if target > 0 && input.context.cr0 & CR0_PE == 0 {
            return Err(HvError::INVALID_REGISTER_VALUE);
        }
        let vps = &self.vps[..self.vp_count as usize];
        let allowed = if vps.iter().any(|v| has_vtl(v.enabled, target)) {
            caller.vtl >= target
        } else {
            may_launch(self.enabled, caller.vtl, target)
        };
        if !allowed {
            return Err(HvError::ACCESS_DENIED);
        }
        // The partition first (15.4.2), and not twice on a VP.
        if !has_vtl(self.enabled, target) || has_vtl(vps[vp as usize].enabled, target) {
            return Err(HvError::INVALID_VTL_STATE);
        }
        let enabled = EnabledVpVtl { vp, vtl: target, context: input.context };
        let (made, status) = ring0(&enabled);
        if made {
            let state = self.vp_mut(vp)?;
            state.enabled |= 1 << target;
            // Only VTL 1 can get here: VTL 0 is enabled everywhere.
            state.vtl1_context = Some(input.context);
        }
        status.map(|()| enabled)
    }

    /// The VTL `vp` runs in.
    pub fn active_vtl(&self, vp: HvVpIndex) -> HvResult<HvVtl> {
        Ok(self.vp(vp)?.active)
    }

    /// Whether VSM is offered (15.3.1).
    pub const fn available(&self) -> bool {
        self.available
    }

    /// The VTL a register call of `caller` targets on `vp` (15.15.1): its
    /// own, or the input's; a higher one is `ACCESS_DENIED`, one not
    /// enabled on the VP `INVALID_VTL_STATE`.
    pub fn register_vtl(&self, vp: HvVpIndex, input: tlfs::hypercall::HvInputVtl, caller: HvVtl) -> HvResult<HvVtl> {
        if input.into_bits() & !tlfs::hypercall::HvInputVtl::DEFINED_BITS != 0 {
            return Err(HvError::INVALID_PARAMETER);
        }
        let vtl = if input.use_target_vtl() { input.target_vtl() } else { caller };
        if vtl > caller {
            return Err(HvError::ACCESS_DENIED);
        }
        if !has_vtl(self.vp(vp)?.enabled, vtl) {
            return Err(HvError::INVALID_VTL_STATE);
        }
        Ok(vtl)
    }

    /// A VSM register of `vp` as VTL `vtl` reads it (15.3, 15.5); `None`
    /// for a register that is not VSM's.
    pub fn get_register(&self, vp: HvVpIndex, vtl: HvVtl, name: HvRegisterName) -> Option<HvResult<u64>> {
        Some(match name {
            HvRegisterName::VSM_CAPABILITIES => Ok(VSM_CAPABILITIES.into_bits()),
            HvRegisterName::VSM_CODE_PAGE_OFFSETS => Ok(CODE_PAGE_OFFSETS.into_bits()),
            HvRegisterName::VSM_PARTITION_STATUS => Ok(self.partition_status().into_bits()),
            HvRegisterName::VSM_VP_STATUS => self.vp_status(vp).map(HvRegisterVsmVpStatus::into_bits),
            HvRegisterName::VSM_PARTITION_CONFIG => self.partition_config(vtl).map(|c| c.into_bits()),
            HvRegisterName::VSM_VP_SECURE_CONFIG_VTL0 => self.vp_secure_config(vtl, vp).map(|c| c.into_bits()),
            _ => return None,
        })
    }

    /// A VSM register of `vp` written by VTL `vtl`; `None` for a register
    /// that is not VSM's. The status registers and the capabilities are
    /// read-only (`INVALID_PARAMETER`, 7.10.1).
    pub fn set_register(
        &mut self,
        vp: HvVpIndex,
        vtl: HvVtl,
        name: HvRegisterName,
        value: u64,
    ) -> Option<HvResult<()>> {
        Some(match name {
            HvRegisterName::VSM_CAPABILITIES | HvRegisterName::VSM_PARTITION_STATUS | HvRegisterName::VSM_VP_STATUS => {
                Err(HvError::INVALID_PARAMETER)
            }
            HvRegisterName::VSM_PARTITION_CONFIG => {
                self.write_partition_config(vtl, HvRegisterVsmPartitionConfig::from_bits(value))
            }
            HvRegisterName::VSM_VP_SECURE_CONFIG_VTL0 => {
                self.write_vp_secure_config(vtl, vp, HvRegisterVsmVpSecureVtlConfig::from_bits(value))
            }
            _ => return None,
        })
    }

    /// VTL 1's initial context on `vp`, once, for ring 0 to apply.
    pub fn take_initial_context(&mut self, vp: HvVpIndex) -> Option<HvInitialVpContext> {
        self.vp_mut(vp).ok()?.vtl1_context.take()
    }

    /// Records that `vp` now runs in `vtl` (a VTL call, return or
    /// intercept): it must be enabled on the VP. A return to a lower VTL
    /// releases the TLB locks the VP holds (15.5.2.2).
    pub fn set_active_vtl(&mut self, vp: HvVpIndex, vtl: HvVtl) -> HvResult<()> {
        let state = self.vp_mut(vp)?;
        if !has_vtl(state.enabled, vtl) {
            return Err(HvError::INVALID_VTL_STATE);
        }
        if vtl < state.active {
            state.vtl0_secure_config = state.vtl0_secure_config.with_tlb_locked(false);
        }
        state.active = vtl;
        Ok(())
    }

    /// The VTL a VTL call (`call`) or return of `vp` in VTL `from` goes to:
    /// the next VTL enabled above (15.6.1.1: none is skipped), or the
    /// highest enabled below (15.7); `None` if there is none (#UD).
    pub fn switch_target(&self, vp: HvVpIndex, from: HvVtl, call: bool) -> Option<HvVtl> {
        let enabled = self.vp(vp).ok()?.enabled;
        if call {
            (from.checked_add(1)?..=MAXIMUM_VTL).find(|&v| has_vtl(enabled, v))
        } else {
            highest_below(enabled, from)
        }
    }

    /// Records that `vp` switched from VTL `from`, which continues at
    /// `resume` when next entered, to `to` (a VTL call or return): where
    /// `to` continues, `None` at its first entry (its initial context).
    pub fn switch(&mut self, vp: HvVpIndex, from: HvVtl, resume: u64, to: HvVtl) -> HvResult<Option<u64>> {
        self.set_active_vtl(vp, to)?;
        let state = self.vp_mut(vp)?;
        let slot = |vtl: HvVtl| usize::from(vtl).min(HV_NUM_VTLS as usize - 1);
        state.resume[slot(from)] = Some(resume);
        Ok(state.resume[slot(to)].take())
    }

    /// VSM's checks of HvStartVirtualProcessor (7.10.3) starting `vp` in
    /// `target_vtl`: no higher than the caller's VTL, enabled on the VP
    /// (15.4.2), and not from VTL 0 if VTL 1 denies it (15.5.1.4). The
    /// call's handler checks the rest (the VP not started, the context).
    pub fn start_vp_vtl(&self, vp: HvVpIndex, target_vtl: HvVtl, caller: VtlCaller) -> HvResult<()> {
        if target_vtl > caller.vtl || (caller.vtl == 0 && self.lower_vtl_startup_denied()) {
            return Err(HvError::ACCESS_DENIED);
        }
        if !has_vtl(self.vp(vp)?.enabled, target_vtl) {
            return Err(HvError::INVALID_VTL_STATE);
        }
        Ok(())
    }

    /// `HvRegisterVsmPartitionStatus` (15.3.3.1).
    pub fn partition_status(&self) -> HvRegisterVsmPartitionStatus {
        HvRegisterVsmPartitionStatus::new()
            .with_enabled_vtl_set(self.enabled)
            .with_maximum_vtl(MAXIMUM_VTL)
            .with_mbec_enabled_vtl_set(0)
    }

    /// `HvRegisterVsmVpStatus` of `vp` (15.3.3.2).
    pub fn vp_status(&self, vp: HvVpIndex) -> HvResult<HvRegisterVsmVpStatus> {
        let state = self.vp(vp)?;
        Ok(HvRegisterVsmVpStatus::new()
            .with_active_vtl(state.active)
            .with_active_mbec_enabled(false)
            .with_enabled_vtl_set(state.enabled))
    }

    /// Who may access VTL 1's partition configuration: VTL 1 (15.5.1:
    /// VTL 0 has no instance, and may not touch a higher VTL's).
    fn config_access(&self, caller_vtl: HvVtl) -> HvResult<()> {
        if caller_vtl == 0 {
            return Err(HvError::ACCESS_DENIED);
        }
        if caller_vtl > MAXIMUM_VTL || !has_vtl(self.enabled, caller_vtl) {
            return Err(HvError::INVALID_VTL_STATE);
        }
        Ok(())
    }

    /// `HvRegisterVsmPartitionConfig` read by `caller_vtl`.
    pub fn partition_config(&self, caller_vtl: HvVtl) -> HvResult<HvRegisterVsmPartitionConfig> {
        self.config_access(caller_vtl)?;
        Ok(self.vtl1_config)
    }

    /// `HvRegisterVsmPartitionConfig` written by `caller_vtl` (15.5.1).
    /// Once EnableVtlProtection is set it stays set (15.5.1.1) and the
    /// mask it was set with stays (15.5.1.2: "set at the time the VTL is
    /// enabled", read as the VTL's protections).
    pub fn write_partition_config(&mut self, caller_vtl: HvVtl, value: HvRegisterVsmPartitionConfig) -> HvResult<()> {
        self.config_access(caller_vtl)?;
        if value.into_bits() & !CONFIG_OFFERED != 0 || !is_protection_type(value.default_protection()) {
            return Err(HvError::INVALID_PARAMETER);
        }
        let old = self.vtl1_config;
        if old.enable_vtl_protection()
            && (!value.enable_vtl_protection()
                || value.default_vtl_protection_mask() != old.default_vtl_protection_mask())
        {
            return Err(HvError::INVALID_REGISTER_VALUE);
        }
        self.vtl1_config = value;
        Ok(())
    }

    /// The mask of an HvModifyVtlProtectionMask by `caller_vtl`
    /// (15.15.2), checked in 3.12.2's order: the partition and VSM
    /// (`ACCESS_DENIED`); reserved bits, a mask that is no protection type
    /// (15.9.3) (`INVALID_PARAMETER`); a target VTL not below the
    /// caller's, as a VTL protects only lower ones (15.9.1:
    /// `ACCESS_DENIED`); EnableVtlProtection not set (15.5.1.1:
    /// `INVALID_VTL_STATE`).
    pub fn protection_mask(
        &self,
        input: &tlfs::vsm::HvInputModifyVtlProtectionMask,
        caller_vtl: HvVtl,
    ) -> HvResult<HvMapGpaFlags> {
        self.vsm_access(input.partition())?;
        if input.has_reserved_bits() || !is_protection_type(input.map_flags) {
            return Err(HvError::INVALID_PARAMETER);
        }
        let vtl = input.target_vtl;
        let target = if vtl.use_target_vtl() { vtl.target_vtl() } else { caller_vtl };
        if target >= caller_vtl {
            return Err(HvError::ACCESS_DENIED);
        }
        if !self.vtl_protection_enabled() {
            return Err(HvError::INVALID_VTL_STATE);
        }
        Ok(input.map_flags)
    }

    /// The protection of VTL 0's pages that VTL 1 has not set: RWX until
    /// VTL 1 enables protections, then its mask (15.5.1.2).
    pub fn default_protection(&self) -> HvMapGpaFlags {
        if self.vtl1_config.enable_vtl_protection() {
            self.vtl1_config.default_protection()
        } else {
            HvMapGpaFlags::ALL_ACCESS
        }
    }

    /// VTL 1 protections may be applied (15.4 step 3, 15.5.1.1).
    pub const fn vtl_protection_enabled(&self) -> bool {
        self.vtl1_config.enable_vtl_protection()
    }

    /// VTL 0 may not start or reset VPs (15.5.1.4): for SIPI and
    /// HvStartVirtualProcessor once wired.
    pub const fn lower_vtl_startup_denied(&self) -> bool {
        self.vtl1_config.deny_lower_vtl_startup()
    }

    /// Who may access `vp`'s HvRegisterVsmVpSecureConfigVtl0: VTL 1, once
    /// enabled on that VP (15.5.2: a higher VTL's register).
    fn secure_config_access(&self, caller_vtl: HvVtl, vp: HvVpIndex) -> HvResult<()> {
        if caller_vtl == 0 {
            return Err(HvError::ACCESS_DENIED);
        }
        if caller_vtl > MAXIMUM_VTL || !has_vtl(self.vp(vp)?.enabled, caller_vtl) {
            return Err(HvError::INVALID_VTL_STATE);
        }
        Ok(())
    }

    /// `HvRegisterVsmVpSecureConfigVtl0` of `vp`, read by `caller_vtl`.
    pub fn vp_secure_config(&self, caller_vtl: HvVtl, vp: HvVpIndex) -> HvResult<HvRegisterVsmVpSecureVtlConfig> {
        self.secure_config_access(caller_vtl, vp)?;
        Ok(self.vp(vp)?.vtl0_secure_config)
    }

    /// `HvRegisterVsmVpSecureConfigVtl0` of `vp` written by `caller_vtl`
    /// (15.5.2): MbecEnabled is refused, as no VTL has MBEC (15.10.2);
    /// TlbLocked is recorded (15.5.2.2).
    pub fn write_vp_secure_config(
        &mut self,
        caller_vtl: HvVtl,
        vp: HvVpIndex,
        value: HvRegisterVsmVpSecureVtlConfig,
    ) -> HvResult<()> {
        self.secure_config_access(caller_vtl, vp)?;
        if value.has_reserved_bits() || value.mbec_enabled() {
            return Err(HvError::INVALID_PARAMETER);
        }
        self.vp_mut(vp)?.vtl0_secure_config = value;
        Ok(())
    }

    /// VTL 0's flushes on `vp` wait for VTL 1 (15.5.2.2).
    pub fn vtl0_tlb_locked(&self, vp: HvVpIndex) -> bool {
        self.vp(vp).is_ok_and(|state| state.vtl0_secure_config.tlb_locked())
    }
}

pub mod protect;

#[cfg(test)]
mod tests;
