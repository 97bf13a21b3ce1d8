//! The TLFS synthetic MSRs (Appendix C) a partition's
//! [`EnlightenmentProfile`] gives it: their per-partition and per-VP state
//! and one handler for RDMSR and WRMSR.
//!
//! Pure logic: the caller passes the guest's memory ([`Guest`]), the TSC
//! now and the VP's run time ([`Now`]), and the host's frequencies
//! ([`HostClock`]); the handler returns what the access does
//! ([`SynMsrOutcome`]) or that it raises #GP ([`Gp`]). What the VID must do
//! besides (forward to its APIC model, idle the VP, reset the partition,
//! report a crash) is in the outcome.
//!
//! # Overlay pages
//!
//! The hypercall, reference TSC and VP assist pages (and the SIM and SIEF
//! pages) overlay the GPA space: [`crate::overlay`] keeps the RAM they
//! cover and gives it back when they are disabled or moved. The guest must
//! put them on RAM, which Linux and Windows do: a GPA that is not RAM
//! raises #GP for the hypercall and VP assist pages (TLFS 3.13: a
//! hypercall page "beyond the bounds of the GPA space" is #GP), and leaves
//! the reference TSC page inaccessible (TLFS 12.7.1 says so, without #GP).
//! Re-enabling a page (any write of the MSR with Enable set) writes its
//! contents again.

use crate::guest::Guest;
use crate::messaging::{Delivered, Delivery};
use crate::overlay::{Overlay, Overlays};
use crate::profile::EnlightenmentProfile;
use crate::synic::{Post, Raised, SynicVp};
use abi::limits::MAX_VPS_PER_PARTITION;
use sysimage::Enlightenment;
use tlfs::msr::{
    HV_CRASH_MAX_MESSAGE, HV_CRASH_PARAMETERS, HV_PAGE_SIZE, HV_REFERENCE_TSC_SEQUENCE_INVALID,
    HV_X64_MSR_HYPERVISOR_RANGE, HvCrashCtlRegContents, HvReferenceTscPage, HvSynicPage, HvX64Msr,
    HvX64MsrHypercallContents, HvX64MsrReferenceTscContents, HvX64MsrResetContents, HvX64MsrTprContents,
    HvX64MsrVpAssistPageContents,
};
use tlfs::zerocopy::{FromZeros, IntoBytes};

/// 100 ns units per second: the reference time's rate.
pub const REFERENCE_HZ: u64 = 10_000_000;

/// The processor vendor: which instruction the hypercall page calls with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    /// VMCALL.
    Intel,
    /// VMMCALL.
    Amd,
}

/// The hypercall page code (TLFS 3.13): the hypercall instruction, then a
/// near return, which is all a guest may assume of the page.
pub const fn hypercall_code(vendor: Vendor) -> [u8; 4] {
    match vendor {
        Vendor::Intel => [0x0f, 0x01, 0xc1, 0xc3], // vmcall; ret
        Vendor::Amd => [0x0f, 0x01, 0xd9, 0xc3],   // vmmcall; ret
    }
}

/// Where the VTL call and VTL return sequences are in the hypercall page
/// of a partition with VSM (`HvRegisterVsmCodePageOffsets`, TLFS 15.8).
pub const VTL_CALL_OFFSET: usize = 0x10;
pub const VTL_RETURN_OFFSET: usize = 0x20;

/// A VTL call (`code` 0x11) or return (0x12) sequence for a 64-bit VTL:
/// the caller's control input (RCX, 15.6.1, 15.7.1) moved to RAX, the call
/// code into RCX, the hypercall instruction, a near return.
pub const fn vtl_sequence(vendor: Vendor, code: u8) -> [u8; 12] {
    let [a, b, c, _] = hypercall_code(vendor);
    // mov rax, rcx; mov ecx, code; vmcall/vmmcall; ret
    [0x48, 0x89, 0xc8, 0xb9, code, 0, 0, 0, a, b, c, 0xc3]
}

/// The whole hypercall page: the code, with VSM the VTL call and return
/// sequences, then INT3s, so a call anywhere else traps instead of sliding.
pub fn hypercall_page(vendor: Vendor, vsm: bool) -> [u8; HV_PAGE_SIZE] {
    let mut page = [0xcc; HV_PAGE_SIZE];
    let code = hypercall_code(vendor);
    page[..code.len()].copy_from_slice(&code);
    if vsm {
        for (at, code) in [(VTL_CALL_OFFSET, 0x11), (VTL_RETURN_OFFSET, 0x12)] {
            let sequence = vtl_sequence(vendor, code);
            page[at..at + sequence.len()].copy_from_slice(&sequence);
        }
    }
    page
}

/// `TscScale` of the reference TSC page (TLFS 12.7.3): 2^64 · 10^7 / tsc_hz,
/// rounded down, so that `(tsc · scale) >> 64` counts 100 ns units. `None`
/// if it does not fit in 64 bits (a TSC at 10 MHz or slower, or 0 Hz).
pub const fn tsc_scale(tsc_hz: u64) -> Option<u64> {
    if tsc_hz <= REFERENCE_HZ {
        return None;
    }
    Some((((REFERENCE_HZ as u128) << 64) / tsc_hz as u128) as u64)
}

/// `(a · b) >> 64`.
const fn mul_high(a: u64, b: u64) -> u64 {
    ((a as u128 * b as u128) >> 64) as u64
}

/// True for an MSR this module owns: the hypervisor range
/// 0x4000_0000..=0x4000_00FF and the TLFS MSRs beyond it (the crash MSRs at
/// 0x4000_0100..). The rest stay with [`crate::msr`].
pub fn is_synthetic(msr: u32) -> bool {
    HV_X64_MSR_HYPERVISOR_RANGE.contains(&msr) || HvX64Msr(msr).is_defined()
}

/// The host clocks the VID reports to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostClock {
    /// The guest-visible TSC's frequency.
    pub tsc_hz: u64,
    /// The local APIC timer's frequency.
    pub apic_hz: u64,
}

/// What changes between accesses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// The guest-visible TSC at the access.
    pub tsc: u64,
    /// The VP's run time so far, in 100 ns units.
    pub vp_runtime: u64,
}

/// Why an access raises #GP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gp {
    /// Not an MSR the profile gives the partition (or no such MSR).
    NotAvailable,
    /// A write to a read-only MSR.
    ReadOnly,
    /// A read of a write-only MSR (`HV_X64_MSR_EOI`).
    WriteOnly,
    /// A reserved bit the TLFS makes RsvdZ is set.
    ReservedBits,
    /// The page the MSR names is not guest RAM.
    NotRam,
    /// The VP index is beyond [`MAX_VPS_PER_PARTITION`].
    VpIndex,
}

/// An APIC register access for the VID's APIC model (TLFS 10.2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicAccess {
    /// A write to EOI.
    Eoi,
    /// A read of ICR: high in 63:32, low in 31:0.
    ReadIcr,
    /// A write of ICR (a write of ICR low sends the IPI).
    WriteIcr(u64),
    /// A read of TPR (bits 7:0).
    ReadTpr,
    /// A write of TPR.
    WriteTpr(u8),
}

/// A crash message the guest gave (CrashMessage with CrashNotify).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrashMessage {
    /// Guest-physical address (`CRASH_P3`).
    pub gpa: u64,
    /// Bytes, at most [`HV_CRASH_MAX_MESSAGE`] (`CRASH_P4`, clamped).
    pub len: usize,
}

impl CrashMessage {
    /// Reads the message from guest RAM into `buf` (at most `buf.len()`
    /// bytes); `None` if it is not RAM.
    pub fn read<'b>(&self, guest: &mut impl Guest, buf: &'b mut [u8]) -> Option<&'b [u8]> {
        let n = self.len.min(buf.len());
        guest.read(self.gpa, &mut buf[..n]).then_some(&buf[..n])
    }
}

/// What an access to a synthetic MSR does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynMsrOutcome {
    /// A read's value (for EDX:EAX).
    Read(u64),
    /// A write, done (or ignored, as the TLFS says).
    Written,
    /// Forward to the APIC model; a read completes with its value.
    Apic(ApicAccess),
    /// `HV_X64_MSR_GUEST_IDLE` was read (value 0): the VP sleeps until an
    /// interrupt arrives, even a masked one (TLFS 7.5).
    Idle,
    /// `HV_X64_MSR_RESET` was written with bit 0: reset the partition
    /// (and [`SyntheticPartition::reset`] it).
    Reset,
    /// `HV_X64_MSR_CRASH_CTL` was written with CrashNotify: report and log
    /// `CRASH_P0..P4` (and the message, if any).
    GuestCrash { p: [u64; HV_CRASH_PARAMETERS], message: Option<CrashMessage> },
}

/// Per-VP synthetic state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct SyntheticVp {
    vp_assist_page: HvX64MsrVpAssistPageContents,
    synic: SynicVp,
    /// Vectors its SynIC raised, for [`SyntheticPartition::take_raised`].
    raised: Raised,
}

/// VTL 1's own synthetic MSRs (TLFS 15.11.1 keeps them private per VTL):
/// the guest OS ID, the hypercall page and each VP's assist page, where
/// its VTL control is (15.8.1). The others are VTL 0's, shared.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Vtl1Msrs {
    guest_os_id: u64,
    hypercall: HvX64MsrHypercallContents,
    vp_assist_page: [HvX64MsrVpAssistPageContents; MAX_VPS_PER_PARTITION],
}

/// A partition's synthetic MSR state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntheticPartition {
    profile: EnlightenmentProfile,
    vendor: Vendor,
    clock: HostClock,
    /// The TSC when the partition was created: reference time 0.
    created_tsc: u64,
    guest_os_id: u64,
    hypercall: HvX64MsrHypercallContents,
    reference_tsc: HvX64MsrReferenceTscContents,
    /// The last `TscSequence` written; 0 before the first.
    tsc_sequence: u32,
    crash: [u64; HV_CRASH_PARAMETERS],
    vps: [SyntheticVp; MAX_VPS_PER_PARTITION],
    /// Bit v: VP v's SynIC is not [`SynicVp::idle`] (a timer armed or
    /// waiting, a port's message held). Kept at every change of a SynIC,
    /// so a poll, the deadline and [`SyntheticPartition::holds_message`]
    /// look at those VPs only.
    busy: VpBits,
    overlays: Overlays,
    vtl1: Vtl1Msrs,
}

/// A bit per VP.
type VpBits = u64;
const _: () = assert!(MAX_VPS_PER_PARTITION <= VpBits::BITS as usize, "a bit per VP");

impl SyntheticPartition {
    /// The state at partition creation, at TSC `created_tsc`.
    pub fn new(profile: EnlightenmentProfile, vendor: Vendor, clock: HostClock, created_tsc: u64) -> Self {
        SyntheticPartition {
            profile,
            vendor,
            clock,
            created_tsc,
            guest_os_id: 0,
            hypercall: HvX64MsrHypercallContents::new(),
            reference_tsc: HvX64MsrReferenceTscContents::new(),
            tsc_sequence: 0,
            crash: [0; HV_CRASH_PARAMETERS],
            vps: [SyntheticVp::default(); MAX_VPS_PER_PARTITION],
            busy: 0,
            overlays: Overlays::default(),
            vtl1: Vtl1Msrs {
                guest_os_id: 0,
                hypercall: HvX64MsrHypercallContents::new(),
                vp_assist_page: [HvX64MsrVpAssistPageContents::new(); MAX_VPS_PER_PARTITION],
            },
        }
    }

    /// VP `vp`'s SynIC may have changed: its bit in `busy` follows.
    fn track(&mut self, vp: usize) {
        let bit = 1 << vp;
        if self.vps[vp].synic.idle() {
            self.busy &= !bit;
        } else {
            self.busy |= bit;
        }
    }

    /// The VPs whose SynIC is not idle, lowest first.
    fn busy_vps(&self) -> impl Iterator<Item = usize> + use<> {
        let mut bits = self.busy;
        core::iter::from_fn(move || {
            let v = bits.trailing_zeros() as usize;
            bits &= bits.wrapping_sub(1);
            (v < MAX_VPS_PER_PARTITION).then_some(v)
        })
    }

    pub fn profile(&self) -> &EnlightenmentProfile {
        &self.profile
    }

    /// `HV_X64_MSR_GUEST_OS_ID` (for CPUID leaf 0x4000_0002).
    pub fn guest_os_id(&self) -> u64 {
        self.guest_os_id
    }

    /// A system reset: every MSR back to its initial value, the hypercall
    /// MSR's Locked bit included (only a reset clears it, TLFS 3.13). The
    /// reference time keeps counting from partition creation.
    pub fn reset(&mut self) {
        *self = SyntheticPartition::new(self.profile, self.vendor, self.clock, self.created_tsc);
    }

    /// VP `vp`'s SINTs that take messages and events
    /// ([`SynicVp::accepting`]); none without a SynIC.
    pub fn accepting(&self, vp: u32) -> u32 {
        if !self.profile.has(Enlightenment::Synic) {
            return 0;
        }
        self.vps.get(vp as usize).map_or(0, |v| v.synic.accepting())
    }

    /// Takes every overlay page away (a partition reset): the RAM beneath
    /// comes back and the hypercall page's held write access is given back.
    pub fn uncover_all(&mut self, guest: &mut impl Guest) {
        self.overlays.uncover_all(guest);
    }

    /// Whether `gpa` is on a page the guest may not write (the hypercall
    /// page, TLFS 3.13): its write is #GP.
    /// Whether an overlay page covers GPA page `gpn`.
    pub fn overlay_at(&self, gpn: u64) -> bool {
        self.overlays.covers(gpn)
    }

    pub fn read_only_overlay(&self, gpa: u64) -> bool {
        self.overlays.read_only_at(gpa >> 12)
    }

    /// The reference time at TSC `tsc`: 100 ns units since creation. With a
    /// usable scale it is the reference TSC page's formula, so the MSR and
    /// the page agree exactly; else (a TSC at 10 MHz or less) it is
    /// computed directly.
    pub fn time_ref_count(&self, tsc: u64) -> u64 {
        match tsc_scale(self.clock.tsc_hz) {
            Some(scale) => mul_high(tsc, scale).wrapping_sub(mul_high(self.created_tsc, scale)),
            None if self.clock.tsc_hz == 0 => 0,
            None => {
                let ticks = tsc.saturating_sub(self.created_tsc) as u128;
                (ticks * REFERENCE_HZ as u128 / self.clock.tsc_hz as u128) as u64
            }
        }
    }

    /// The reference TSC page's contents with sequence `sequence`:
    /// `tsc_sequence` 0 (use the MSR) if the TSC frequency gives no scale.
    pub fn reference_tsc_page(&self, sequence: u32) -> HvReferenceTscPage {
        let mut page = HvReferenceTscPage::new_zeroed();
        if let Some(scale) = tsc_scale(self.clock.tsc_hz) {
            page.tsc_sequence = sequence;
            page.tsc_scale = scale;
            page.tsc_offset = 0u64.wrapping_sub(mul_high(self.created_tsc, scale)) as i64;
        } else {
            page.tsc_sequence = HV_REFERENCE_TSC_SEQUENCE_INVALID;
        }
        page
    }

    /// The enlightenment an MSR needs, `None` if Tessera has no such MSR.
    fn needs(msr: HvX64Msr) -> Option<Enlightenment> {
        Some(match msr {
            HvX64Msr::GUEST_OS_ID | HvX64Msr::HYPERCALL => Enlightenment::Hypercall,
            HvX64Msr::VP_INDEX => Enlightenment::VpIndex,
            HvX64Msr::RESET => Enlightenment::Reset,
            HvX64Msr::VP_RUNTIME => Enlightenment::VpRuntime,
            HvX64Msr::TIME_REF_COUNT => Enlightenment::TimeRefCount,
            HvX64Msr::REFERENCE_TSC => Enlightenment::ReferenceTsc,
            HvX64Msr::TSC_FREQUENCY | HvX64Msr::APIC_FREQUENCY => Enlightenment::FrequencyMsrs,
            HvX64Msr::EOI | HvX64Msr::ICR | HvX64Msr::TPR | HvX64Msr::VP_ASSIST_PAGE => Enlightenment::ApicMsrs,
            HvX64Msr::GUEST_IDLE => Enlightenment::GuestIdle,
            m if SynicVp::is_synic_msr(m) => Enlightenment::Synic,
            m if SynicVp::is_stimer_msr(m) => Enlightenment::SyntheticTimers,
            m if m.0 >= HvX64Msr::CRASH_P0.0 && m.0 <= HvX64Msr::CRASH_CTL.0 => Enlightenment::CrashMsrs,
            _ => return None,
        })
    }

    /// The MSR if the profile gives it.
    fn available(&self, msr: u32) -> Result<HvX64Msr, Gp> {
        let msr = HvX64Msr(msr);
        match Self::needs(msr) {
            Some(e) if self.profile.has(e) => Ok(msr),
            _ => Err(Gp::NotAvailable),
        }
    }

    /// RDMSR of `msr` by VP `vp`.
    pub fn rdmsr(&self, vp: u32, msr: u32, now: Now) -> Result<SynMsrOutcome, Gp> {
        let read = |v| Ok(SynMsrOutcome::Read(v));
        match self.available(msr)? {
            HvX64Msr::GUEST_OS_ID => read(self.guest_os_id),
            HvX64Msr::HYPERCALL => read(self.hypercall.into_bits()),
            HvX64Msr::VP_INDEX => read(vp.into()),
            HvX64Msr::RESET => read(0),
            HvX64Msr::VP_RUNTIME => read(now.vp_runtime),
            HvX64Msr::TIME_REF_COUNT => read(self.time_ref_count(now.tsc)),
            HvX64Msr::REFERENCE_TSC => read(self.reference_tsc.into_bits()),
            HvX64Msr::TSC_FREQUENCY => read(self.clock.tsc_hz),
            HvX64Msr::APIC_FREQUENCY => read(self.clock.apic_hz),
            HvX64Msr::EOI => Err(Gp::WriteOnly),
            HvX64Msr::ICR => Ok(SynMsrOutcome::Apic(ApicAccess::ReadIcr)),
            HvX64Msr::TPR => Ok(SynMsrOutcome::Apic(ApicAccess::ReadTpr)),
            HvX64Msr::VP_ASSIST_PAGE => read(self.vp(vp)?.vp_assist_page.into_bits()),
            HvX64Msr::GUEST_IDLE => Ok(SynMsrOutcome::Idle),
            m if SynicVp::is_synic_msr(m) || SynicVp::is_stimer_msr(m) => read(self.vp(vp)?.synic.read(m)?),
            HvX64Msr::CRASH_CTL => {
                read(HvCrashCtlRegContents::new().with_crash_notify(true).with_crash_message(true).into_bits())
            }
            m => read(self.crash[(m.0 - HvX64Msr::CRASH_P0.0) as usize]),
        }
    }

    /// WRMSR of `value` to `msr` by VP `vp` at `now`; overlay pages (and
    /// SynIC messages) are written into `guest`.
    pub fn wrmsr(
        &mut self,
        vp: u32,
        msr: u32,
        value: u64,
        guest: &mut impl Guest,
        now: Now,
    ) -> Result<SynMsrOutcome, Gp> {
        const WRITTEN: Result<SynMsrOutcome, Gp> = Ok(SynMsrOutcome::Written);
        match self.available(msr)? {
            m if SynicVp::is_synic_msr(m) || SynicVp::is_stimer_msr(m) => {
                self.vp(vp)?;
                let page = |o: fn(u32) -> Overlay| Some((o(vp), HvSynicPage::from_bits(value)));
                let overlay = match m {
                    HvX64Msr::SIMP => page(Overlay::Simp),
                    HvX64Msr::SIEFP => page(Overlay::Siefp),
                    _ => None,
                };
                // Covered before the SynIC zeroes a newly enabled page; not
                // RAM: the page "will not be accessible", no #GP (11.8.3).
                match overlay {
                    Some((o, p)) if p.enable() => {
                        if !self.overlays.cover(o, p.gpn(), guest) {
                            self.overlays.uncover(o, guest);
                        }
                    }
                    Some((o, _)) => self.overlays.uncover(o, guest),
                    None => {}
                }
                let reference = self.time_ref_count(now.tsc);
                let v = &mut self.vps[vp as usize];
                let written = v.synic.write(m, value, reference, guest, &mut v.raised);
                self.track(vp as usize);
                written?;
                WRITTEN
            }
            HvX64Msr::GUEST_OS_ID => {
                self.guest_os_id = value;
                if value == 0 {
                    // "If the guest OS identity is cleared to zero after the
                    // hypercall page has been enabled, it will become
                    // disabled" (TLFS 3.13), locked or not: the lock keeps
                    // the page from moving, which this does not do.
                    self.hypercall.set_enable(false);
                    self.overlays.uncover(Overlay::Hypercall, guest);
                }
                WRITTEN
            }
            HvX64Msr::HYPERCALL => {
                let page = hypercall_page(self.vendor, self.profile.has(Enlightenment::Vsm));
                let (os, hypercall) = (self.guest_os_id, &mut self.hypercall);
                write_hypercall(hypercall, os, (Overlay::Hypercall, &mut self.overlays), value, &page, guest)
            }
            HvX64Msr::REFERENCE_TSC => {
                let new = HvX64MsrReferenceTscContents::from_bits(value).with_reserved_p(0);
                self.reference_tsc = new;
                if new.enable() {
                    self.tsc_sequence = match self.tsc_sequence.wrapping_add(1) {
                        0 | u32::MAX => 1,
                        s => s,
                    };
                    let page = self.reference_tsc_page(self.tsc_sequence);
                    // Not RAM: "the reference TSC page will not be
                    // accessible to the guest" (TLFS 12.7.1), no #GP.
                    if self.overlays.cover(Overlay::ReferenceTsc, new.gpn(), guest) {
                        let _ = guest.write(new.gpn() << 12, page.as_bytes());
                    } else {
                        self.overlays.uncover(Overlay::ReferenceTsc, guest);
                    }
                } else {
                    self.overlays.uncover(Overlay::ReferenceTsc, guest);
                }
                WRITTEN
            }
            HvX64Msr::RESET => {
                let reset = HvX64MsrResetContents::from_bits(value).reset();
                Ok(if reset { SynMsrOutcome::Reset } else { SynMsrOutcome::Written })
            }
            // TLFS 10.2.3.1 draws bits 63:32 "Ignored" and describes them
            // "RsvdZ": ignored, as drawn.
            HvX64Msr::EOI => Ok(SynMsrOutcome::Apic(ApicAccess::Eoi)),
            HvX64Msr::ICR => Ok(SynMsrOutcome::Apic(ApicAccess::WriteIcr(value))),
            HvX64Msr::TPR => {
                let tpr = HvX64MsrTprContents::from_bits(value);
                if tpr.reserved() != 0 {
                    return Err(Gp::ReservedBits);
                }
                Ok(SynMsrOutcome::Apic(ApicAccess::WriteTpr(tpr.tpr())))
            }
            HvX64Msr::VP_ASSIST_PAGE => {
                self.vp(vp)?;
                let new = HvX64MsrVpAssistPageContents::from_bits(value).with_reserved_p(0);
                // The page starts zeroed (no lazy EOI pending, no nested
                // state), as a fresh overlay would.
                if new.enable() {
                    if !self.overlays.cover(Overlay::Assist(vp), new.gpn(), guest) {
                        return Err(Gp::NotRam);
                    }
                    let _ = guest.write(new.gpn() << 12, &[0; HV_PAGE_SIZE]);
                } else {
                    self.overlays.uncover(Overlay::Assist(vp), guest);
                }
                self.vps[vp as usize].vp_assist_page = new;
                WRITTEN
            }
            HvX64Msr::CRASH_CTL => {
                let ctl = HvCrashCtlRegContents::from_bits(value);
                if !ctl.crash_notify() {
                    return WRITTEN;
                }
                let message = ctl.crash_message().then(|| CrashMessage {
                    gpa: self.crash[3],
                    len: usize::try_from(self.crash[4]).unwrap_or(usize::MAX).min(HV_CRASH_MAX_MESSAGE),
                });
                Ok(SynMsrOutcome::GuestCrash { p: self.crash, message })
            }
            m if m.0 >= HvX64Msr::CRASH_P0.0 && m.0 < HvX64Msr::CRASH_CTL.0 => {
                self.crash[(m.0 - HvX64Msr::CRASH_P0.0) as usize] = value;
                WRITTEN
            }
            // VP_INDEX, VP_RUNTIME, TIME_REF_COUNT, the frequencies, GUEST_IDLE.
            _ => Err(Gp::ReadOnly),
        }
    }

    /// Fires the synthetic timers due at TSC `now` and retries their
    /// waiting messages (into `guest`'s SIM pages).
    pub fn poll(&mut self, now: u64, guest: &mut impl Guest) {
        // An idle SynIC's poll does nothing: only the busy ones are polled.
        if !self.profile.has(Enlightenment::Synic) || self.busy == 0 {
            return;
        }
        let reference = self.time_ref_count(now);
        for vp in self.busy_vps() {
            let v = &mut self.vps[vp];
            v.synic.poll(reference, guest, &mut v.raised);
            self.track(vp);
        }
    }

    /// Puts a port's delivery into its VP's SynIC ([`SynicVp::deliver`],
    /// [`SynicVp::signal_event`]); the vectors raised wait in
    /// [`SyntheticPartition::take_raised`].
    pub fn deliver(&mut self, delivery: &Delivery, guest: &mut impl Guest) -> Delivered {
        if !self.profile.has(Enlightenment::Synic) {
            return Delivered::Dropped;
        }
        let vp = delivery.vp() as usize;
        let Some(v) = self.vps.get_mut(vp) else { return Delivered::Dropped };
        let done = match delivery {
            Delivery::Message { sint, message, .. } => {
                match v.synic.deliver(usize::from(*sint), message, guest, &mut v.raised) {
                    Post::Delivered => Delivered::Done,
                    Post::Busy => Delivered::Held,
                    Post::Unavailable => Delivered::Dropped,
                }
            }
            Delivery::Event { sint, flag, .. } => {
                match v.synic.signal_event(usize::from(*sint), *flag, guest, &mut v.raised) {
                    Ok(_) => Delivered::Done,
                    Err(_) => Delivered::Dropped,
                }
            }
        };
        self.track(vp);
        done
    }

    /// Asserts SINT `sint` of VP `vp` for an external source
    /// ([`SynicVp::assert_sint`]); false if nothing was raised.
    pub fn assert_sint(&mut self, vp: u32, sint: u8) -> bool {
        if !self.profile.has(Enlightenment::Synic) {
            return false;
        }
        let Some(v) = self.vps.get_mut(vp as usize) else { return false };
        let raised = v.synic.assert_sint(usize::from(sint), &mut v.raised);
        self.track(vp as usize);
        raised
    }

    /// True while a VP holds a port's message for its slot: the VID
    /// fetches no more deliveries for the partition until it is delivered,
    /// so the rest stay queued at the broker (which answers
    /// `INSUFFICIENT_BUFFERS` to senders when a port's queue is full).
    pub fn holds_message(&self) -> bool {
        self.busy_vps().any(|v| self.vps[v].synic.holds_message())
    }

    /// The TSC at which [`SyntheticPartition::poll`] next has a timer to
    /// fire: the earliest synthetic timer, converted from reference time.
    pub fn next_deadline(&self) -> Option<u64> {
        if !self.profile.has(Enlightenment::SyntheticTimers) {
            return None;
        }
        // A VP with a timer armed is busy.
        let due = self.busy_vps().filter_map(|v| self.vps[v].synic.next_due()).min()?;
        self.tsc_at(due)
    }

    /// The first TSC whose reference time is at least `reference` (a few
    /// 100 ns late at most); `None` without a TSC frequency.
    pub fn tsc_at(&self, reference: u64) -> Option<u64> {
        let hz = self.clock.tsc_hz;
        if hz == 0 {
            return None;
        }
        let ticks = (u128::from(reference) + 1) * u128::from(hz) / u128::from(REFERENCE_HZ);
        let mut tsc = self.created_tsc.saturating_add(u64::try_from(ticks).unwrap_or(u64::MAX));
        // The page's scale is rounded down: make sure of it.
        for _ in 0..64 {
            if self.time_ref_count(tsc) >= reference {
                break;
            }
            tsc = tsc.saturating_add(hz / REFERENCE_HZ + 1);
        }
        Some(tsc)
    }

    /// Whether VP `vp`'s SynIC raised vectors [`take_raised`] would give.
    ///
    /// [`take_raised`]: SyntheticPartition::take_raised
    pub fn has_raised(&self, vp: u32) -> bool {
        self.vps.get(vp as usize).is_some_and(|v| !v.raised.is_empty())
    }

    /// The vectors VP `vp`'s SynIC raised since the last call, for its
    /// local APIC.
    pub fn take_raised(&mut self, vp: u32) -> Raised {
        self.vps.get_mut(vp as usize).map(|v| core::mem::take(&mut v.raised)).unwrap_or_default()
    }

    /// VP `vp`'s assist page's GPA, if it is enabled.
    pub fn vp_assist_page(&self, vp: u32) -> Option<u64> {
        let page = self.vps.get(vp as usize)?.vp_assist_page;
        page.enable().then(|| page.gpn() << 12)
    }

    /// VP `vp`'s SynIC (for the vectors with AutoEOI, and for posting).
    pub fn synic(&self, vp: u32) -> Option<&SynicVp> {
        self.vps.get(vp as usize).map(|v| &v.synic)
    }

    fn vp(&self, vp: u32) -> Result<&SyntheticVp, Gp> {
        self.vps.get(vp as usize).ok_or(Gp::VpIndex)
    }

    /// [`SyntheticPartition::access`] by VP `vp` in VTL `vtl`: VTL 1's
    /// guest OS ID, hypercall and assist page MSRs are its own ([`Vtl1Msrs`]).
    pub fn access_vtl(
        &mut self,
        (vp, vtl): (u32, u8),
        msr: u32,
        write: Option<u64>,
        guest: &mut impl Guest,
        now: Now,
    ) -> Result<SynMsrOutcome, Gp> {
        let private = matches!(HvX64Msr(msr), HvX64Msr::GUEST_OS_ID | HvX64Msr::HYPERCALL | HvX64Msr::VP_ASSIST_PAGE);
        if vtl == 0 || !private {
            return self.access(vp, msr, write, guest, now);
        }
        let m = self.available(msr)?;
        self.vp(vp)?;
        let v1 = &mut self.vtl1;
        let Some(value) = write else {
            return Ok(SynMsrOutcome::Read(match m {
                HvX64Msr::GUEST_OS_ID => v1.guest_os_id,
                HvX64Msr::HYPERCALL => v1.hypercall.into_bits(),
                _ => v1.vp_assist_page[vp as usize].into_bits(),
            }));
        };
        match m {
            HvX64Msr::GUEST_OS_ID => {
                v1.guest_os_id = value;
                if value == 0 {
                    v1.hypercall.set_enable(false);
                    self.overlays.uncover(Overlay::Vtl1Hypercall, guest);
                }
                Ok(SynMsrOutcome::Written)
            }
            HvX64Msr::HYPERCALL => {
                let page = hypercall_page(self.vendor, true);
                let overlay = (Overlay::Vtl1Hypercall, &mut self.overlays);
                write_hypercall(&mut v1.hypercall, v1.guest_os_id, overlay, value, &page, guest)
            }
            _ => {
                let new = HvX64MsrVpAssistPageContents::from_bits(value).with_reserved_p(0);
                if new.enable() {
                    if !self.overlays.cover(Overlay::Vtl1Assist(vp), new.gpn(), guest) {
                        return Err(Gp::NotRam);
                    }
                    let _ = guest.write(new.gpn() << 12, &[0; HV_PAGE_SIZE]);
                } else {
                    self.overlays.uncover(Overlay::Vtl1Assist(vp), guest);
                }
                v1.vp_assist_page[vp as usize] = new;
                Ok(SynMsrOutcome::Written)
            }
        }
    }

    /// VP `vp`'s VTL 1 assist page's GPA, if it is enabled.
    pub fn vtl1_assist_page(&self, vp: u32) -> Option<u64> {
        let page = self.vtl1.vp_assist_page.get(vp as usize)?;
        page.enable().then(|| page.gpn() << 12)
    }

    /// RDMSR (`write` is `None`) or WRMSR, as [`SyntheticPartition::rdmsr`]
    /// and [`SyntheticPartition::wrmsr`].
    pub fn access(
        &mut self,
        vp: u32,
        msr: u32,
        write: Option<u64>,
        guest: &mut impl Guest,
        now: Now,
    ) -> Result<SynMsrOutcome, Gp> {
        match write {
            Some(value) => self.wrmsr(vp, msr, value, guest, now),
            None => self.rdmsr(vp, msr, now),
        }
    }
}

/// `HV_X64_MSR_HYPERCALL` (TLFS 3.13) of one VTL: `hypercall`, with its
/// guest OS ID `os` and its overlay. Once Locked is set, writes are
/// ignored until [`SyntheticPartition::reset`]; Enable stays 0 while the
/// guest OS ID is 0; enabling covers the GPA with `page` (and a page that
/// is not RAM is #GP, nothing changed), disabling uncovers it.
fn write_hypercall(
    hypercall: &mut HvX64MsrHypercallContents,
    os: u64,
    (overlay, overlays): (Overlay, &mut Overlays),
    value: u64,
    page: &[u8; HV_PAGE_SIZE],
    guest: &mut impl Guest,
) -> Result<SynMsrOutcome, Gp> {
    if hypercall.locked() {
        return Ok(SynMsrOutcome::Written);
    }
    let mut new = HvX64MsrHypercallContents::from_bits(value).with_reserved_p(0);
    if os == 0 {
        new.set_enable(false);
    }
    if new.enable() {
        if !overlays.cover(overlay, new.gpn(), guest) {
            return Err(Gp::NotRam);
        }
        let _ = guest.write(new.gpn() << 12, page);
    } else {
        overlays.uncover(overlay, guest);
    }
    *hypercall = new;
    Ok(SynMsrOutcome::Written)
}

#[cfg(test)]
mod tests;
