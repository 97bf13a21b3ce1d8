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

// ---------------------------------------------------------------------------
// The SynIC (TLFS 11.8, 11.9) and synthetic timers (TLFS 12.5)
// ---------------------------------------------------------------------------

/// Synthetic interrupt sources (SINT0..SINT15), message slots and
/// event-flag blocks per VP: [`crate::HV_SYNIC_SINT_COUNT`] as an index bound.
pub const HV_SYNIC_SINTS: usize = crate::HV_SYNIC_SINT_COUNT as usize;
/// Synthetic timers per VP (STIMER0..STIMER3).
pub const HV_SYNIC_STIMER_COUNT: usize = 4;
/// `SVERSION`'s value (TLFS 11.8.2): the first SynIC version.
pub const HV_SYNIC_VERSION: u64 = 1;
/// The lowest SINT vector (TLFS 11.8.5: "Valid values for vector are
/// 16-255 inclusive").
pub const HV_SYNIC_FIRST_VALID_VECTOR: u8 = 16;
/// Event flags per SINT in the SIEF page (TLFS 11.9): 256 bytes of bits.
pub const HV_EVENT_FLAGS_COUNT: u32 = 256 * 8;
/// Bytes of one SINT's event flags in the SIEF page.
pub const HV_EVENT_FLAGS_BYTES: usize = 256;

/// `HV_SYNIC_EVENT_FLAGS` (TLFS 11.10.5): one SINT's 2048 event flags,
/// flag `n` is bit `n % 8` of byte `n / 8`. The SIEF page is 16 of them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvSynicEventFlags {
    pub flags: [u8; HV_EVENT_FLAGS_BYTES],
}

/// The SIM page (TLFS 11.9): one [`crate::HvMessage`] slot per SINT.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvSynicSimPage {
    pub slots: [crate::HvMessage; HV_SYNIC_SINTS],
}

/// The SIEF page (TLFS 11.9): one [`HvSynicEventFlags`] per SINT.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvSynicSiefPage {
    pub sints: [HvSynicEventFlags; HV_SYNIC_SINTS],
}

const _: () = assert!(size_of::<HvSynicEventFlags>() == HV_EVENT_FLAGS_BYTES);
const _: () = assert!(size_of::<HvSynicSimPage>() == HV_PAGE_SIZE);
const _: () = assert!(size_of::<HvSynicSiefPage>() == HV_PAGE_SIZE);

impl HvSynicSimPage {
    /// Byte offset of SINT `sint`'s message slot.
    pub const fn slot_offset(sint: usize) -> usize {
        sint * crate::HV_MESSAGE_SIZE
    }
}

impl HvSynicSiefPage {
    /// Byte offset, in the SIEF page, of the byte holding flag `flag` of
    /// SINT `sint`, and the flag's bit in it.
    pub const fn flag_position(sint: usize, flag: u32) -> (usize, u8) {
        (sint * HV_EVENT_FLAGS_BYTES + (flag / 8) as usize, (flag % 8) as u8)
    }
}

impl HvX64Msr {
    /// `HV_X64_MSR_SINTn`, `n < 16`.
    pub const fn sint(n: usize) -> Option<HvX64Msr> {
        if n < HV_SYNIC_SINTS { Some(HvX64Msr(HvX64Msr::SINT0.0 + n as u32)) } else { None }
    }

    /// `HV_X64_MSR_STIMERn_CONFIG`, `n < 4`.
    pub const fn stimer_config(n: usize) -> Option<HvX64Msr> {
        if n < HV_SYNIC_STIMER_COUNT { Some(HvX64Msr(HvX64Msr::STIMER0_CONFIG.0 + 2 * n as u32)) } else { None }
    }

    /// `HV_X64_MSR_STIMERn_COUNT`, `n < 4`.
    pub const fn stimer_count(n: usize) -> Option<HvX64Msr> {
        if n < HV_SYNIC_STIMER_COUNT { Some(HvX64Msr(HvX64Msr::STIMER0_CONFIG.0 + 2 * n as u32 + 1)) } else { None }
    }

    /// The SINT this MSR is, if it is one of `SINT0..SINT15`.
    pub const fn sint_index(self) -> Option<usize> {
        if self.0 >= HvX64Msr::SINT0.0 && self.0 <= HvX64Msr::SINT15.0 {
            Some((self.0 - HvX64Msr::SINT0.0) as usize)
        } else {
            None
        }
    }

    /// The timer and whether it is the COUNT register (else CONFIG), if this
    /// is one of `STIMER0_CONFIG..STIMER3_COUNT`.
    pub const fn stimer_index(self) -> Option<(usize, bool)> {
        if self.0 >= HvX64Msr::STIMER0_CONFIG.0 && self.0 <= HvX64Msr::STIMER3_COUNT.0 {
            let n = self.0 - HvX64Msr::STIMER0_CONFIG.0;
            Some(((n / 2) as usize, n % 2 == 1))
        } else {
            None
        }
    }
}

/// `HV_X64_MSR_SCONTROL` (TLFS 11.8.1).
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvSynicScontrol {
    /// Messages and event flags may be posted to this VP's SynIC.
    pub enable: bool,
    /// RsvdP.
    #[bits(63)]
    pub reserved_p: u64,
}

/// `HV_X64_MSR_SIMP` (TLFS 11.8.4) and `HV_X64_MSR_SIEFP` (11.8.3): the
/// same layout.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvSynicPage {
    pub enable: bool,
    /// RsvdP.
    #[bits(11)]
    pub reserved_p: u16,
    /// Guest page number of the page.
    #[bits(52)]
    pub gpn: u64,
}

/// `HV_X64_MSR_SINTx` (TLFS 11.8.5).
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvSynicSint {
    /// 16..=255 (lower is #GP unless the SINT is masked).
    pub vector: u8,
    /// RsvdP.
    pub reserved_p1: u8,
    pub masked: bool,
    /// An implicit EOI on delivery: the vector never enters the ISR.
    pub auto_eoi: bool,
    /// Unmasked for messages and flags, but no interrupt is generated.
    pub polling: bool,
    /// RsvdP.
    #[bits(45)]
    pub reserved_p2: u64,
}

impl HvSynicSint {
    /// The value at VP creation: masked. (TLFS 11.8.5 prints 0 but says
    /// "all synthetic interrupt sources are masked by default"; Hyper-V and
    /// the guests that read it expect 0x10000.)
    pub const INITIAL: HvSynicSint = HvSynicSint::new().with_masked(true);
}

/// `HV_X64_MSR_STIMERx_CONFIG` (TLFS 12.5.1).
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvStimerConfig {
    pub enable: bool,
    pub periodic: bool,
    pub lazy: bool,
    /// A non-zero write of COUNT sets `enable`.
    pub auto_enable: bool,
    /// Direct mode's interrupt vector.
    pub apic_vector: u8,
    /// Assert `apic_vector` on expiry instead of sending a message (12.2).
    pub direct_mode: bool,
    /// RsvdZ.
    #[bits(3)]
    pub reserved_z1: u8,
    /// The SINT the timer's messages go to (0 is not allowed while enabled).
    #[bits(4)]
    pub sintx: u8,
    /// RsvdZ.
    #[bits(44)]
    pub reserved_z2: u64,
}

impl HvStimerConfig {
    /// True if a RsvdZ bit is set.
    pub const fn reserved_set(self) -> bool {
        self.reserved_z1() != 0 || self.reserved_z2() != 0
    }
}

#[cfg(test)]
mod tests;
