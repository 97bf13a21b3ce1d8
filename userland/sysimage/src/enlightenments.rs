//! Enlightenment profiles: which parts of the Hyper-V interface (TLFS) a
//! partition's VID presents to its guest, as a bit set carried in the
//! compiled manifest ([`crate::manifest::Partition::enlightenments`]).
//!
//! This is the one list of enlightenments: the manifest tool takes its TOML
//! keys from [`Enlightenment::name`], and the VID derives its CPUID leaves
//! and synthetic MSRs from the set. [`Enlightenments::check`] is the one
//! coherence check, run by the tool and again by [`crate::Manifest::parse`]:
//! dependencies the TLFS states are enforced, and features the VID does not
//! implement can be named but not enabled (none today).

use serde::{Deserialize, Serialize};

/// One enlightenment. The discriminant is its bit in [`Enlightenments`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Enlightenment {
    /// `HV_X64_MSR_GUEST_OS_ID` and `HV_X64_MSR_HYPERCALL` (AccessHypercallMsrs).
    Hypercall = 0,
    /// `HV_X64_MSR_VP_INDEX` (AccessVpIndex).
    VpIndex = 1,
    /// `HV_X64_MSR_VP_RUNTIME` (AccessVpRunTimeReg).
    VpRuntime = 2,
    /// `HV_X64_MSR_TIME_REF_COUNT` (AccessPartitionReferenceCounter).
    TimeRefCount = 3,
    /// `HV_X64_MSR_REFERENCE_TSC` and its page (AccessPartitionReferenceTsc).
    ReferenceTsc = 4,
    /// `HV_X64_MSR_EOI`, `ICR`, `TPR` and `VP_ASSIST_PAGE` (AccessIntrCtrlRegs),
    /// and the recommendation to use them.
    ApicMsrs = 5,
    /// `HV_X64_MSR_TSC_FREQUENCY`, `APIC_FREQUENCY` (AccessFrequencyRegs).
    FrequencyMsrs = 6,
    /// `HV_X64_MSR_GUEST_IDLE` (AccessGuestIdleReg).
    GuestIdle = 7,
    /// `HV_X64_MSR_CRASH_P0..P4`, `CRASH_CTL` (GuestCrashMsrsAvailable).
    CrashMsrs = 8,
    /// `HV_X64_MSR_RESET` (AccessResetReg), and the recommendation to use it.
    Reset = 9,
    /// Recommend `HvFlushVirtualAddressSpace`/`List` for remote TLB flushes.
    RemoteTlbFlush = 10,
    /// Recommend `HvSendSyntheticClusterIpi`.
    ClusterIpi = 11,
    /// Recommend the `Ex` (sparse VP set) forms of those hypercalls.
    ExProcessorMasks = 12,
    /// Recommend relaxed timing (no watchdogs on interrupt latency).
    RelaxedTiming = 13,
    /// Report a spinlock retry count, for `HvNotifyLongSpinWait`.
    LongSpinWait = 14,
    /// The synthetic interrupt controller (AccessSynicRegs; SINT polling).
    Synic = 15,
    /// Synthetic timers (AccessSyntheticTimerRegs, direct mode).
    SyntheticTimers = 16,
    /// Virtual Secure Mode (AccessVsm, with AccessVpRegisters; TLFS 15):
    /// VTL 0 and VTL 1. Only in the `"hyperv-vsm"` profile.
    Vsm = 17,
}

impl Enlightenment {
    /// Every enlightenment, in bit order.
    pub const ALL: [Enlightenment; 18] = [
        Enlightenment::Hypercall,
        Enlightenment::VpIndex,
        Enlightenment::VpRuntime,
        Enlightenment::TimeRefCount,
        Enlightenment::ReferenceTsc,
        Enlightenment::ApicMsrs,
        Enlightenment::FrequencyMsrs,
        Enlightenment::GuestIdle,
        Enlightenment::CrashMsrs,
        Enlightenment::Reset,
        Enlightenment::RemoteTlbFlush,
        Enlightenment::ClusterIpi,
        Enlightenment::ExProcessorMasks,
        Enlightenment::RelaxedTiming,
        Enlightenment::LongSpinWait,
        Enlightenment::Synic,
        Enlightenment::SyntheticTimers,
        Enlightenment::Vsm,
    ];

    /// The set holding only this one.
    pub const fn set(self) -> Enlightenments {
        Enlightenments(1 << self as u32)
    }

    /// Its key in a manifest (`[partitions.NAME.enlightenments]`).
    pub const fn name(self) -> &'static str {
        match self {
            Enlightenment::Hypercall => "hypercall",
            Enlightenment::VpIndex => "vp_index",
            Enlightenment::VpRuntime => "vp_runtime",
            Enlightenment::TimeRefCount => "time_ref_count",
            Enlightenment::ReferenceTsc => "reference_tsc",
            Enlightenment::ApicMsrs => "apic_msrs",
            Enlightenment::FrequencyMsrs => "frequency_msrs",
            Enlightenment::GuestIdle => "guest_idle",
            Enlightenment::CrashMsrs => "crash_msrs",
            Enlightenment::Reset => "reset",
            Enlightenment::RemoteTlbFlush => "remote_tlb_flush",
            Enlightenment::ClusterIpi => "cluster_ipi",
            Enlightenment::ExProcessorMasks => "ex_processor_masks",
            Enlightenment::RelaxedTiming => "relaxed_timing",
            Enlightenment::LongSpinWait => "long_spin_wait",
            Enlightenment::Synic => "synic",
            Enlightenment::SyntheticTimers => "synthetic_timers",
            Enlightenment::Vsm => "vsm",
        }
    }

    /// The enlightenment with manifest key `name`.
    pub fn from_name(name: &str) -> Option<Enlightenment> {
        Enlightenment::ALL.into_iter().find(|e| e.name() == name)
    }

    /// What must be enabled with it, besides [`Enlightenments::INTERFACE`]
    /// (which every enlightenment needs): the TLFS's dependencies. The
    /// reference TSC page falls back on `TIME_REF_COUNT` (12.7.3); synthetic
    /// timers count in reference time and signal through the SynIC (12.5);
    /// VSM needs AccessSynicRegs (15.3.1) and the VP assist page, where each
    /// VTL above 0 has its VTL control (15.8.1; `apic_msrs` grants it).
    pub const fn requires(self) -> Enlightenments {
        match self {
            Enlightenment::ReferenceTsc => Enlightenment::TimeRefCount.set(),
            Enlightenment::SyntheticTimers => {
                Enlightenments(Enlightenment::Synic.set().0 | Enlightenment::TimeRefCount.set().0)
            }
            Enlightenment::Vsm => Enlightenments(Enlightenment::Synic.set().0 | Enlightenment::ApicMsrs.set().0),
            _ => Enlightenments::NONE,
        }
    }

    /// One of these must be enabled with it: the `Ex` processor masks are
    /// a format of the flush and cluster-IPI hypercalls (TLFS 2.4.5).
    pub const fn requires_one_of(self) -> Enlightenments {
        match self {
            Enlightenment::ExProcessorMasks => {
                Enlightenments(Enlightenment::RemoteTlbFlush.set().0 | Enlightenment::ClusterIpi.set().0)
            }
            _ => Enlightenments::NONE,
        }
    }

    /// False for those the VID does not implement, and so refuses: none
    /// today (the check stays for the next one named before it is built).
    pub const fn is_implemented(self) -> bool {
        true
    }

    /// True for those the `"hyperv"` profile holds: every implemented one
    /// but VSM (Linux 6.1 then takes the synthetic timer in direct mode as
    /// its clock event device from boot; the VID's timer waits are
    /// tickless). VSM is `"hyperv-vsm"`'s: a guest not built for VTL 1 is
    /// not offered AccessVsm.
    pub const fn in_hyperv_profile(self) -> bool {
        self.is_implemented() && !matches!(self, Enlightenment::Vsm)
    }
}

/// A set of [`Enlightenment`]s; encoded as its bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Enlightenments(u32);

/// Why a set of enlightenments cannot be given to a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnlightenmentError {
    /// Bits that name no enlightenment.
    UnknownBits(u32),
    /// The VID does not implement it yet.
    Unimplemented(Enlightenment),
    /// Some enlightenment is enabled, but not all of
    /// [`Enlightenments::INTERFACE`]: `missing`.
    Interface { missing: Enlightenments },
    /// `feature` needs `missing`.
    Requires { feature: Enlightenment, missing: Enlightenments },
    /// `feature` needs one of a set, and none is enabled.
    RequiresOneOf { feature: Enlightenment, one_of: Enlightenments },
}

impl core::fmt::Display for EnlightenmentError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            EnlightenmentError::UnknownBits(bits) => write!(f, "unknown enlightenment bits {bits:#x}"),
            EnlightenmentError::Unimplemented(e) => {
                write!(f, "{} is not implemented by the VID yet, so it cannot be enabled", e.name())
            }
            EnlightenmentError::Interface { missing } => {
                write!(
                    f,
                    "the \"Hv#1\" interface promises hypercall and vp_index (TLFS 3.13), so any enlightenment needs them: missing "
                )?;
                list(f, missing, " and ")
            }
            EnlightenmentError::Requires { feature, missing } => {
                write!(f, "{} requires ", feature.name())?;
                list(f, missing, " and ")
            }
            EnlightenmentError::RequiresOneOf { feature, one_of } => {
                write!(f, "{} requires ", feature.name())?;
                list(f, one_of, " or ")
            }
        }
    }
}

/// `a`, `a and b`, `a, b and c` (with `last` before the last).
fn list(f: &mut core::fmt::Formatter<'_>, set: Enlightenments, last: &str) -> core::fmt::Result {
    let n = set.iter().count();
    for (i, e) in set.iter().enumerate() {
        let sep = if i == 0 {
            ""
        } else if i + 1 == n {
            last
        } else {
            ", "
        };
        write!(f, "{sep}{}", e.name())?;
    }
    Ok(())
}

impl Enlightenments {
    /// What the `"Hv#1"` signature promises (`GUEST_OS_ID`, `HYPERCALL`,
    /// `VP_INDEX`; TLFS 3.13 step 2): any enlightenment needs these.
    pub const INTERFACE: Enlightenments =
        Enlightenments(Enlightenment::Hypercall.set().0 | Enlightenment::VpIndex.set().0);

    /// No enlightenments: no hypervisor leaves, no synthetic MSRs.
    pub const NONE: Enlightenments = Enlightenments(0);

    /// Profile `"hyperv"`: every enlightenment the VID implements
    /// ([`Enlightenment::in_hyperv_profile`]).
    pub const HYPERV: Enlightenments = {
        let mut bits = 0;
        let mut i = 0;
        while i < Enlightenment::ALL.len() {
            if Enlightenment::ALL[i].in_hyperv_profile() {
                bits |= Enlightenment::ALL[i].set().0;
            }
            i += 1;
        }
        Enlightenments(bits)
    };

    /// Profile `"hyperv-vsm"`: `"hyperv"` and VSM (TLFS 15).
    pub const HYPERV_VSM: Enlightenments = Enlightenments(Enlightenments::HYPERV.0 | Enlightenment::Vsm.set().0);

    /// The named profiles, for the manifest: `"none"`, `"hyperv"` and
    /// `"hyperv-vsm"`.
    pub const PROFILES: [(&'static str, Enlightenments); 3] = [
        ("none", Enlightenments::NONE),
        ("hyperv", Enlightenments::HYPERV),
        ("hyperv-vsm", Enlightenments::HYPERV_VSM),
    ];

    /// The profile called `name`.
    pub fn profile(name: &str) -> Option<Enlightenments> {
        Enlightenments::PROFILES.iter().find(|(n, _)| *n == name).map(|&(_, set)| set)
    }

    pub const fn from_bits(bits: u32) -> Enlightenments {
        Enlightenments(bits)
    }

    pub const fn bits(self) -> u32 {
        self.0
    }

    pub const fn contains(self, e: Enlightenment) -> bool {
        self.0 & e.set().0 != 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// This set with `e` enabled or disabled.
    #[must_use]
    pub const fn with(self, e: Enlightenment, enabled: bool) -> Enlightenments {
        if enabled { Enlightenments(self.0 | e.set().0) } else { Enlightenments(self.0 & !e.set().0) }
    }

    /// The enlightenments in the set, in bit order (unknown bits skipped).
    pub fn iter(self) -> impl Iterator<Item = Enlightenment> {
        Enlightenment::ALL.into_iter().filter(move |e| self.contains(*e))
    }

    /// Every problem with the set, in bit order, unknown bits first; `f` is
    /// called once for each.
    pub fn for_each_error(self, mut f: impl FnMut(EnlightenmentError)) {
        let known = Enlightenment::ALL.iter().fold(0, |bits, e| bits | e.set().0);
        if self.0 & !known != 0 {
            f(EnlightenmentError::UnknownBits(self.0 & !known));
        }
        let interface_missing = Enlightenments(Enlightenments::INTERFACE.0 & !self.0);
        if !self.is_empty() && !interface_missing.is_empty() {
            f(EnlightenmentError::Interface { missing: interface_missing });
        }
        for feature in self.iter() {
            if !feature.is_implemented() {
                f(EnlightenmentError::Unimplemented(feature));
            }
            let missing = Enlightenments(feature.requires().0 & !self.0);
            if !missing.is_empty() {
                f(EnlightenmentError::Requires { feature, missing });
            }
            let one_of = feature.requires_one_of();
            if !one_of.is_empty() && one_of.0 & self.0 == 0 {
                f(EnlightenmentError::RequiresOneOf { feature, one_of });
            }
        }
    }

    /// The hypercall privilege PostMessages (`HvPostMessage`, TLFS
    /// 11.11.1; leaf 0x4000_0003 EBX bit 4): granted with the SynIC, as
    /// messages arrive in a SIM slot. Which connections a partition holds
    /// is the manifest's, so the privilege alone opens no channel.
    pub const fn post_messages(self) -> bool {
        self.contains(Enlightenment::Synic)
    }

    /// The hypercall privilege SignalEvents (`HvSignalEvent`, TLFS
    /// 11.11.2; EBX bit 5): granted with the SynIC, as flags arrive in a
    /// SIEF page.
    pub const fn signal_events(self) -> bool {
        self.contains(Enlightenment::Synic)
    }

    /// SINT polling (leaf 0x4000_0003 EDX bit 17, TLFS 11.8.5): a SINT
    /// setting, so with the SynIC.
    pub const fn sint_polling(self) -> bool {
        self.contains(Enlightenment::Synic)
    }

    /// Direct-mode synthetic timers (EDX bit 19, TLFS 12.2): with the
    /// timers, as a direct timer asserts its vector at the VP's local APIC
    /// and every VP has one (the VID's, CPUID.1:EDX.APIC), whatever the
    /// profile. The APIC MSRs (`apic_msrs`) are another way to reach that
    /// APIC, which direct mode does not need: its EOI may go to the xAPIC
    /// page.
    pub const fn direct_synthetic_timers(self) -> bool {
        self.contains(Enlightenment::SyntheticTimers)
    }

    /// The first problem [`Enlightenments::for_each_error`] finds.
    pub fn check(self) -> Result<(), EnlightenmentError> {
        let mut first = None;
        self.for_each_error(|e| {
            first.get_or_insert(e);
        });
        first.map_or(Ok(()), Err)
    }
}
