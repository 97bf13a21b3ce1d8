//! A partition's enlightenment profile: the [`Enlightenments`] its manifest
//! gives it, checked, and the partition limits the hypervisor CPUID leaves
//! report. The CPUID bits ([`crate::cpuid`]) and which synthetic MSRs exist
//! ([`crate::synthetic`]) both derive from it, so a guest is never told of a
//! facility the VID does not implement.

use sysimage::{Enlightenment, EnlightenmentError, Enlightenments};
use tlfs::cpuid::{
    HV_SPINLOCK_RETRIES_NEVER_NOTIFY, HvEnlightenmentInformation, HvFeaturesEdx, HvPartitionPrivilegeMask,
};

/// Spinlock retries before `HvNotifyLongSpinWait` (leaf 0x4000_0004 EBX)
/// with [`Enlightenment::LongSpinWait`]: Hyper-V's usual 4095.
pub const LONG_SPIN_WAIT_RETRIES: u32 = 0xfff;

/// What of the TLFS interface one partition gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnlightenmentProfile {
    enlightenments: Enlightenments,
    /// Leaf 0x4000_0005 EAX: the most VPs the partition can have.
    pub max_vps: u32,
    /// Leaf 0x4000_0005 EBX: the host's logical processors (0: not reported).
    pub max_logical_processors: u32,
}

impl EnlightenmentProfile {
    /// No enlightenments: bare hardware as far as the guest can tell.
    pub const NONE: EnlightenmentProfile =
        EnlightenmentProfile { enlightenments: Enlightenments::NONE, max_vps: 0, max_logical_processors: 0 };

    /// A profile for a partition of at most `max_vps` VPs on a host of
    /// `logical_processors`; refuses what [`Enlightenments::check`] refuses
    /// (the dependencies).
    pub fn new(
        enlightenments: Enlightenments,
        max_vps: u32,
        logical_processors: u32,
    ) -> Result<EnlightenmentProfile, EnlightenmentError> {
        enlightenments.check()?;
        Ok(EnlightenmentProfile { enlightenments, max_vps, max_logical_processors: logical_processors })
    }

    pub const fn enlightenments(&self) -> Enlightenments {
        self.enlightenments
    }

    pub const fn has(&self, e: Enlightenment) -> bool {
        self.enlightenments.contains(e)
    }

    /// True if the guest sees a hypervisor: CPUID.1:ECX[31] and the
    /// `"Hv#1"` leaves.
    pub const fn hypervisor_present(&self) -> bool {
        !self.enlightenments.is_empty()
    }

    /// Leaf 0x4000_0003 EAX:EBX. Of the hypercall privileges (the high
    /// half) only AccessVsm and AccessVpRegisters (with VSM) and
    /// PostMessages and SignalEvents are granted, the last two with the
    /// SynIC ([`Enlightenments::post_messages`], the rule the manifest's
    /// `[[connections]]` check shares): a message or event arrives through
    /// a SINT, and which connections a partition holds is the manifest's
    /// (checked by the broker), so the privilege alone opens no channel.
    /// Partition management (CreatePort, ConnectPort, ...) is the
    /// supervisor's, never a guest's; the flush and IPI hypercalls need no
    /// privilege.
    pub fn privileges(&self) -> HvPartitionPrivilegeMask {
        let has = |e| self.has(e);
        HvPartitionPrivilegeMask::new()
            .with_access_vp_run_time_reg(has(Enlightenment::VpRuntime))
            .with_access_partition_reference_counter(has(Enlightenment::TimeRefCount))
            .with_access_synic_regs(has(Enlightenment::Synic))
            .with_post_messages(self.enlightenments.post_messages())
            .with_signal_events(self.enlightenments.signal_events())
            .with_access_synthetic_timer_regs(has(Enlightenment::SyntheticTimers))
            .with_access_intr_ctrl_regs(has(Enlightenment::ApicMsrs))
            .with_access_hypercall_msrs(has(Enlightenment::Hypercall))
            .with_access_vp_index(has(Enlightenment::VpIndex))
            .with_access_reset_reg(has(Enlightenment::Reset))
            .with_access_partition_reference_tsc(has(Enlightenment::ReferenceTsc))
            .with_access_guest_idle_reg(has(Enlightenment::GuestIdle))
            .with_access_frequency_regs(has(Enlightenment::FrequencyMsrs))
            // VSM is AccessVsm with AccessVpRegisters (15.3.1): VTL 1 reads
            // and sets the VSM registers through HvGet/SetVpRegisters.
            .with_access_vsm(has(Enlightenment::Vsm))
            .with_access_vp_registers(has(Enlightenment::Vsm))
    }

    /// Leaf 0x4000_0003 EDX.
    pub fn features(&self) -> HvFeaturesEdx {
        HvFeaturesEdx::new()
            .with_guest_idle_available(self.has(Enlightenment::GuestIdle))
            .with_frequency_regs_available(self.has(Enlightenment::FrequencyMsrs))
            .with_guest_crash_regs_available(self.has(Enlightenment::CrashMsrs))
            .with_hypercall_msr_lock_available(self.has(Enlightenment::Hypercall))
            // The hypercall ABI's XMM fast input and output (TLFS 3.7.2):
            // the kernel sends XMM0-5 with every hypercall intercept and
            // takes XMM updates in the reply.
            .with_xmm_registers_for_fast_hypercall_available(self.has(Enlightenment::Hypercall))
            .with_fast_hypercall_output_available(self.has(Enlightenment::Hypercall))
            // SINTx polling (TLFS 11.8.5) with the SynIC; direct-mode timers
            // (12.2) with the timers: every VP has a local APIC.
            .with_sint_polling_mode_available(self.enlightenments.sint_polling())
            .with_direct_synthetic_timers(self.enlightenments.direct_synthetic_timers())
    }

    /// Leaf 0x4000_0004 EAX.
    pub fn recommendations(&self) -> HvEnlightenmentInformation {
        HvEnlightenmentInformation::new()
            .with_use_hypercall_for_remote_flush(self.has(Enlightenment::RemoteTlbFlush))
            .with_use_apic_msrs(self.has(Enlightenment::ApicMsrs))
            .with_use_hv_register_for_reset(self.has(Enlightenment::Reset))
            .with_use_relaxed_timing(self.has(Enlightenment::RelaxedTiming))
            .with_use_synthetic_cluster_ipi(self.has(Enlightenment::ClusterIpi))
            .with_use_ex_processor_masks(self.has(Enlightenment::ExProcessorMasks))
    }

    /// Leaf 0x4000_0004 EBX.
    pub const fn spinlock_retries(&self) -> u32 {
        if self.has(Enlightenment::LongSpinWait) { LONG_SPIN_WAIT_RETRIES } else { HV_SPINLOCK_RETRIES_NEVER_NOTIFY }
    }
}
