//! Hypervisor synthetic MSRs (TLFS Appendix C) and the layouts of the ones
//! Tessera implements, and the reference TSC page (TLFS 12.7).
//!
//! The privilege each MSR needs is on its [`HvX64Msr`] constant. Attributes
//! (R, W, R/W) are Appendix C's, except `HV_X64_MSR_REFERENCE_TSC`, which
//! the appendix calls R but 12.7.1 makes read/write (its own section wins).

use abi::open_enum;
use bitfield_struct::bitfield;
use core::mem::size_of;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// MSRs 0x4000_0000..=0x4000_00FF are reserved for the hypervisor: Intel
/// and AMD never define architectural MSRs there.
pub const HV_X64_MSR_HYPERVISOR_RANGE: core::ops::RangeInclusive<u32> = 0x4000_0000..=0x4000_00FF;

open_enum! {
    /// Synthetic MSR numbers (TLFS Appendix C), with the privilege (of
    /// [`crate::cpuid::HvPartitionPrivilegeMask`], or feature of
    /// [`crate::cpuid::HvFeaturesEdx`]) each needs.
    pub struct HvX64Msr(u32) {
        /// R/W, AccessHypercallMsrs: [`HvGuestOsId`] (TLFS 2.6).
        GUEST_OS_ID = 0x4000_0000,
        /// R/W, AccessHypercallMsrs: [`HvX64MsrHypercallContents`] (TLFS 3.13).
        HYPERCALL = 0x4000_0001,
        /// R, AccessVpIndex: the VP index (TLFS 7.8.1).
        VP_INDEX = 0x4000_0002,
        /// R/W, AccessResetReg: [`HvX64MsrResetContents`].
        RESET = 0x4000_0003,
        /// R, AccessVpRunTimeReg: the VP's run time in 100 ns units (TLFS 7.9.1).
        VP_RUNTIME = 0x4000_0010,
        /// R, AccessPartitionReferenceCounter: 100 ns units since the
        /// partition was created (TLFS 12.4).
        TIME_REF_COUNT = 0x4000_0020,
        /// R/W, AccessPartitionReferenceTsc: [`HvX64MsrReferenceTscContents`].
        REFERENCE_TSC = 0x4000_0021,
        /// R, AccessFrequencyRegs: the TSC frequency in Hz.
        TSC_FREQUENCY = 0x4000_0022,
        /// R, AccessFrequencyRegs: the local APIC timer frequency in Hz.
        APIC_FREQUENCY = 0x4000_0023,
        /// R/W, no privilege listed: non-privileged instruction execution prevention.
        NPIEP_CONFIG = 0x4000_0040,
        /// W, AccessIntrCtrlRegs: [`HvX64MsrEoiContents`] (TLFS 10.2.3.1).
        EOI = 0x4000_0070,
        /// R/W, AccessIntrCtrlRegs: ICR high (63:32) and low (31:0) (TLFS 10.2.3.2).
        ICR = 0x4000_0071,
        /// R/W, AccessIntrCtrlRegs: [`HvX64MsrTprContents`] (TLFS 10.2.3.3).
        TPR = 0x4000_0072,
        /// R/W, AccessIntrCtrlRegs: [`HvX64MsrVpAssistPageContents`] (TLFS 7.8.7).
        VP_ASSIST_PAGE = 0x4000_0073,
        /// R/W, AccessSynicRegs (TLFS 11.8).
        SCONTROL = 0x4000_0080,
        /// R, AccessSynicRegs.
        SVERSION = 0x4000_0081,
        /// R/W, AccessSynicRegs.
        SIEFP = 0x4000_0082,
        /// R/W, AccessSynicRegs.
        SIMP = 0x4000_0083,
        /// W, AccessSynicRegs.
        EOM = 0x4000_0084,
        /// R/W, AccessSynicRegs; `SINT1`..`SINT15` follow at 0x4000_0091..=0x4000_009F.
        SINT0 = 0x4000_0090,
        SINT15 = 0x4000_009F,
        /// R/W, AccessSyntheticTimerRegs; `STIMERn_CONFIG` is at
        /// 0x4000_00B0 + 2n and `STIMERn_COUNT` at 0x4000_00B1 + 2n, n < 4.
        STIMER0_CONFIG = 0x4000_00B0,
        STIMER3_COUNT = 0x4000_00B7,
        /// R, AccessGuestIdleReg: a read idles the VP until an interrupt (TLFS 7.5).
        GUEST_IDLE = 0x4000_00F0,
        /// R/W, GuestCrashMsrsAvailable: crash parameters (TLFS 4.3).
        CRASH_P0 = 0x4000_0100,
        CRASH_P1 = 0x4000_0101,
        CRASH_P2 = 0x4000_0102,
        /// With CrashMessage: the message's guest-physical address.
        CRASH_P3 = 0x4000_0103,
        /// With CrashMessage: the message's length in bytes (at most 4096).
        CRASH_P4 = 0x4000_0104,
        /// R/W, GuestCrashMsrsAvailable: [`HvCrashCtlRegContents`].
        CRASH_CTL = 0x4000_0105,
        /// R/W, AccessReenlightenmentControls (TLFS 16.6).
        REENLIGHTENMENT_CONTROL = 0x4000_0106,
        TSC_EMULATION_CONTROL = 0x4000_0107,
        TSC_EMULATION_STATUS = 0x4000_0108,
        /// R/W, AccessSyntheticTimerRegs (TLFS 12.6).
        STIME_UNHALTED_TIMER_CONFIG = 0x4000_0114,
        STIME_UNHALTED_TIMER_COUNT = 0x4000_0115,
    }
}

impl HvX64Msr {
    /// `HV_X64_MSR_CRASH_P0` + `n`, `n < 5`.
    pub const fn crash_p(n: usize) -> Option<HvX64Msr> {
        if n < HV_CRASH_PARAMETERS { Some(HvX64Msr(HvX64Msr::CRASH_P0.0 + n as u32)) } else { None }
    }

    /// True for every MSR the TLFS defines for guests: the SynIC and
    /// synthetic timer ranges included, the root-only nested MSRs not.
    pub const fn is_defined(self) -> bool {
        self.name().is_some()
            || (self.0 >= HvX64Msr::SINT0.0 && self.0 <= HvX64Msr::SINT15.0)
            || (self.0 >= HvX64Msr::STIMER0_CONFIG.0 && self.0 <= HvX64Msr::STIMER3_COUNT.0)
    }
}

/// Number of `HV_X64_MSR_CRASH_Pn` registers.
pub const HV_CRASH_PARAMETERS: usize = 5;
/// Longest crash message (`CRASH_P4` with CrashMessage), bytes.
pub const HV_CRASH_MAX_MESSAGE: usize = 4096;
/// The size of overlay pages (hypercall, reference TSC, VP assist).
pub const HV_PAGE_SIZE: usize = 4096;

/// `HV_X64_MSR_GUEST_OS_ID` in the encoding recommended for proprietary
/// operating systems (TLFS 2.6.1). Open-source guests use another encoding
/// with `os_type` set; the hypervisor only cares whether it is zero.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvGuestOsId {
    pub build_number: u16,
    pub service_version: u8,
    pub minor_version: u8,
    pub major_version: u8,
    pub os_id: u8,
    #[bits(15)]
    pub vendor_id: u16,
    /// 1: an open-source OS.
    pub os_type: bool,
}

/// `HV_X64_MSR_HYPERCALL` (TLFS 3.13).
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvX64MsrHypercallContents {
    /// The hypercall page is enabled (stays 0 while the guest OS ID is 0).
    pub enable: bool,
    /// The MSR is immutable until system reset.
    pub locked: bool,
    /// RsvdP: the guest preserves them; the hypervisor ignores them.
    #[bits(10)]
    pub reserved_p: u16,
    /// Guest page number of the hypercall page.
    #[bits(52)]
    pub gpn: u64,
}

/// `HV_X64_MSR_REFERENCE_TSC` (TLFS 12.7.1).
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvX64MsrReferenceTscContents {
    pub enable: bool,
    /// RsvdP.
    #[bits(11)]
    pub reserved_p: u16,
    /// Guest page number of the reference TSC page.
    #[bits(52)]
    pub gpn: u64,
}

/// `HV_X64_MSR_VP_ASSIST_PAGE` (TLFS 7.8.7.1).
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvX64MsrVpAssistPageContents {
    pub enable: bool,
    /// RsvdP.
    #[bits(11)]
    pub reserved_p: u16,
    /// Guest page number of the VP assist page.
    #[bits(52)]
    pub gpn: u64,
}

/// `HV_X64_MSR_RESET`: writing 1 to bit 0 resets the partition.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvX64MsrResetContents {
    pub reset: bool,
    #[bits(63)]
    pub reserved: u64,
}

/// `HV_X64_MSR_EOI` (TLFS 10.2.3.1): write-only.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvX64MsrEoiContents {
    pub eoi_value: u32,
    /// Drawn "Ignored", described "RsvdZ".
    pub reserved: u32,
}

/// `HV_X64_MSR_ICR` (TLFS 10.2.3.2).
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvX64MsrIcrContents {
    pub icr_low: u32,
    pub icr_high: u32,
}

/// `HV_X64_MSR_TPR` (TLFS 10.2.3.3).
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvX64MsrTprContents {
    pub tpr: u8,
    /// RsvdZ.
    #[bits(56)]
    pub reserved: u64,
}

/// `HV_CRASH_CTL_REG_CONTENTS` (TLFS 4.3.2; the structure is not printed in
/// 6.0b, the bits are the Hyper-V headers').
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvCrashCtlRegContents {
    #[bits(62)]
    pub reserved: u64,
    /// With `crash_notify`: `CRASH_P3`/`CRASH_P4` locate a message.
    pub crash_message: bool,
    /// `CRASH_P0..P4` are written: log them.
    pub crash_notify: bool,
}

/// `HV_REFERENCE_TSC_PAGE` (TLFS 12.7.2, the layout of the Hyper-V headers:
/// 6.0b names the fields in 12.7.3 but does not print the structure).
///
/// `ReferenceTime = ((VirtualTsc * tsc_scale) >> 64) + tsc_offset`, in
/// 100 ns units, valid while `tsc_sequence` is non-zero and unchanged.
#[repr(C)]
#[derive(Clone, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvReferenceTscPage {
    pub tsc_sequence: u32,
    pub reserved1: u32,
    pub tsc_scale: u64,
    pub tsc_offset: i64,
    pub reserved2: [u64; 509],
}

const _: () = assert!(size_of::<HvReferenceTscPage>() == HV_PAGE_SIZE);

/// `tsc_sequence` telling the guest the page is not usable: read
/// `HV_X64_MSR_TIME_REF_COUNT` instead.
pub const HV_REFERENCE_TSC_SEQUENCE_INVALID: u32 = 0;

impl HvReferenceTscPage {
    /// The reference time the page gives for a TSC value.
    pub const fn reference_time(&self, tsc: u64) -> u64 {
        ((((tsc as u128) * (self.tsc_scale as u128)) >> 64) as u64).wrapping_add(self.tsc_offset as u64)
    }
}

#[cfg(test)]
mod tests;
