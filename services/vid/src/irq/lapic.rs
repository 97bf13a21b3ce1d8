//! A VP's local APIC (SDM vol. 3 ch. 11): the xAPIC MMIO page, the x2APIC
//! MSRs (0x800–0xBFF), IA32_APIC_BASE and IA32_TSC_DEADLINE, interrupt
//! acceptance (IRR/ISR/TMR, TPR/PPR) and the timer.
//!
//! MMIO: a register is the first 4 bytes of its 16-byte slot. Reads of any
//! size see those bytes (the rest of the slot, and reserved registers, read
//! 0); only 4-byte writes at a slot's start take effect. A reserved
//! register sets ESR "illegal register address". The page reads all ones
//! and ignores writes unless the APIC is in xAPIC mode.
//!
//! Interrupts arrive through [`Lapic::accept`] (and the timer and error
//! LVTs); the caller injects [`Lapic::pending_vector`] and reports it with
//! [`Lapic::acknowledge`]. Messages the APIC sends (IPIs) and level EOIs
//! are [`LapicEffect`]s for the caller to route.

use super::apic_timer::{ApicTimer, DIVIDE_BITS, TimerMode};
use super::{DeliveryMode, Destination, GeneralProtection, Message};
use bitfield_struct::bitfield;

mod regs;
#[cfg(test)]
mod tests;

/// The xAPIC page's default address.
pub const APIC_DEFAULT_BASE: u64 = 0xfee0_0000;
pub use x86defs::msr::IA32_APIC_BASE as MSR_APIC_BASE;
/// CPUID.01H:EDX.APIC: an on-chip APIC, globally enabled.
pub const CPUID_LEAF1_EDX_APIC: u32 = 1 << 9;
/// IA32_TSC_DEADLINE.
pub const MSR_TSC_DEADLINE: u32 = 0x6e0;
/// The x2APIC MSR range; MSR `X2APIC_FIRST + (offset >> 4)` is the register at
/// MMIO `offset`.
pub const X2APIC_FIRST: u32 = 0x800;
pub const X2APIC_LAST: u32 = 0xbff;
/// Guest physical address bits: the base must fit (CPUID has no leaf 0x8000_0008, so 36).
pub const PHYS_BITS: u32 = 36;
/// Version register: version 0x14, max LVT entry 5, no EOI-broadcast suppression.
pub const VERSION: u32 = 0x14 | ((LVT_COUNT as u32 - 1) << 16);

/// Register offsets in the xAPIC page.
pub mod reg {
    pub const ID: u32 = 0x20;
    pub const VERSION: u32 = 0x30;
    pub const TPR: u32 = 0x80;
    pub const APR: u32 = 0x90;
    pub const PPR: u32 = 0xa0;
    pub const EOI: u32 = 0xb0;
    pub const RRD: u32 = 0xc0;
    pub const LDR: u32 = 0xd0;
    pub const DFR: u32 = 0xe0;
    pub const SVR: u32 = 0xf0;
    pub const ISR: u32 = 0x100;
    pub const TMR: u32 = 0x180;
    pub const IRR: u32 = 0x200;
    pub const ESR: u32 = 0x280;
    pub const ICR_LOW: u32 = 0x300;
    pub const ICR_HIGH: u32 = 0x310;
    pub const LVT_TIMER: u32 = 0x320;
    pub const LVT_ERROR: u32 = 0x370;
    pub const TIMER_INITIAL: u32 = 0x380;
    pub const TIMER_CURRENT: u32 = 0x390;
    pub const TIMER_DIVIDE: u32 = 0x3e0;
    pub const SELF_IPI: u32 = 0x3f0;
}

/// LVT entries, in register order from 0x320: timer, thermal, performance
/// counters, LINT0, LINT1, error (no CMCI).
pub const LVT_COUNT: usize = 6;
pub const LVT_TIMER: usize = 0;
pub const LVT_LINT0: usize = 3;
pub const LVT_LINT1: usize = 4;
pub const LVT_ERROR: usize = 5;
/// Writable bits of each LVT entry, and the read-only status bits.
const LVT_WRITABLE: [u32; LVT_COUNT] = [0x7_00ff, 0x1_07ff, 0x1_07ff, 0x1_a7ff, 0x1_a7ff, 0x1_00ff];
const LVT_STATUS: u32 = 1 << 12 | 1 << 14;

/// ESR bits.
pub mod esr {
    pub const SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
    pub const RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;
    pub const ILLEGAL_REGISTER: u32 = 1 << 7;
}

const SVR_WRITABLE: u32 = 0x3ff;
const SVR_ENABLE: u32 = 1 << 8;
/// ICR bits defined in x2APIC mode (delivery status is not).
const ICR_X2APIC_DEFINED: u64 = 0xffff_ffff_000c_cfff;

/// IA32_APIC_BASE.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct ApicBase {
    #[bits(8)]
    __: u8,
    pub bsp: bool,
    __: bool,
    pub x2apic: bool,
    pub enable: bool,
    #[bits(52)]
    pub page: u64,
}

/// An LVT entry.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct Lvt {
    pub vector: u8,
    #[bits(3)]
    pub delivery_mode: DeliveryMode,
    __: bool,
    pub delivery_pending: bool,
    pub active_low: bool,
    pub remote_irr: bool,
    pub level: bool,
    pub masked: bool,
    #[bits(2)]
    pub timer_mode: u8,
    #[bits(13)]
    __: u16,
}

/// The interrupt command register (xAPIC: ICR high in bits 63:32).
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct Icr {
    pub vector: u8,
    #[bits(3)]
    pub delivery_mode: DeliveryMode,
    pub logical: bool,
    pub delivery_pending: bool,
    __: bool,
    pub assert: bool,
    pub level: bool,
    #[bits(2)]
    __: u8,
    #[bits(2)]
    pub shorthand: u8,
    #[bits(12)]
    __: u16,
    /// x2APIC destination; xAPIC uses bits 31:24 of it.
    pub destination: u32,
}

/// 256 one-bit flags by vector (IRR, ISR, TMR).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VectorBits(pub [u32; 8]);

impl VectorBits {
    pub fn get(&self, v: u8) -> bool {
        self.0[usize::from(v >> 5)] & (1 << (v & 31)) != 0
    }

    pub fn set(&mut self, v: u8, on: bool) {
        let word = &mut self.0[usize::from(v >> 5)];
        *word = if on { *word | 1 << (v & 31) } else { *word & !(1 << (v & 31)) };
    }

    pub fn highest(&self) -> Option<u8> {
        (0..8u8)
            .rev()
            .find(|&i| self.0[usize::from(i)] != 0)
            .map(|i| i * 32 + (31 - self.0[usize::from(i)].leading_zeros()) as u8)
    }
}

/// What a register write asks of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LapicEffect {
    None,
    /// Send this message (IPI): the caller finds the destinations.
    Ipi(Message),
    /// The EOI retired this level-triggered vector: tell the I/O APIC.
    LevelEoi(u8),
}

/// The Hyper-V synthetic APIC MSRs (HV_X64_MSR_EOI, _ICR, _TPR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HvApicMsr {
    Eoi,
    Icr,
    Tpr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lapic {
    vp: u32,
    base: ApicBase,
    id: u32,
    tpr: u32,
    ldr: u32,
    dfr: u32,
    svr: u32,
    irr: VectorBits,
    isr: VectorBits,
    tmr: VectorBits,
    esr: u32,
    esr_pending: u32,
    icr: Icr,
    lvt: [Lvt; LVT_COUNT],
    timer: ApicTimer,
    nmi: bool,
    /// Vectors delivered with an implicit EOI (the SynIC's AutoEOI SINTs,
    /// TLFS 11.8.5): acknowledged without entering the ISR.
    auto_eoi: VectorBits,
    /// An EOI the guest may do through its VP assist page (TLFS 10.3.5):
    /// the VID set `NoEoiRequired` for an injected interrupt and has not
    /// seen the guest clear it.
    lazy_eoi: bool,
}

impl Lapic {
    /// VP `vp`'s APIC at power-up: xAPIC mode at the default base, ID =
    /// `vp`, software-disabled. VP 0 is the BSP, with LINT0 in ExtINT mode
    /// (virtual wire, as firmware leaves it).
    pub fn new(vp: u32, tsc_hz: u64, apic_hz: u64) -> Lapic {
        let base = ApicBase::new().with_enable(true).with_bsp(vp == 0).with_page(APIC_DEFAULT_BASE >> 12);
        let mut lapic = Lapic {
            vp,
            base,
            id: vp << 24,
            tpr: 0,
            ldr: 0,
            dfr: u32::MAX,
            svr: 0xff,
            irr: VectorBits::default(),
            isr: VectorBits::default(),
            tmr: VectorBits::default(),
            esr: 0,
            esr_pending: 0,
            icr: Icr::new(),
            lvt: [Lvt::new().with_masked(true); LVT_COUNT],
            timer: ApicTimer::new(tsc_hz, apic_hz),
            nmi: false,
            auto_eoi: VectorBits::default(),
            lazy_eoi: false,
        };
        if vp == 0 {
            lapic.lvt[LVT_LINT0] = Lvt::new().with_delivery_mode(DeliveryMode::EXTINT);
        }
        lapic
    }

    /// INIT (or a global disable): the power-up state but for the ID, the
    /// base MSR and the x2APIC mode (SDM 11.4.7.3).
    pub fn init(&mut self) {
        let (base, id, auto_eoi) = (self.base, self.id, self.auto_eoi);
        let (tsc_hz, apic_hz) = self.timer.clocks();
        *self = Lapic::new(self.vp, tsc_hz, apic_hz);
        // The SINTs' AutoEOI is the SynIC's, which INIT does not reset.
        self.auto_eoi = auto_eoi;
        self.lvt[LVT_LINT0] = Lvt::new().with_masked(true);
        self.base = base;
        self.id = id;
        if base.x2apic() {
            self.enter_x2apic();
        }
    }

    pub const fn vp(&self) -> u32 {
        self.vp
    }

    pub const fn base(&self) -> ApicBase {
        self.base
    }

    /// The xAPIC page's address, if the page is in use (xAPIC mode).
    pub fn mmio_base(&self) -> Option<u64> {
        (self.base.enable() && !self.base.x2apic()).then(|| self.base.page() << 12)
    }

    /// CPUID.01H:EDX as this VP sees it: the APIC flag (bit 9) is clear
    /// while IA32_APIC_BASE.EN is (SDM 11.4.3).
    pub const fn cpuid_leaf1_edx(&self, edx: u32) -> u32 {
        if self.base.enable() { edx } else { edx & !CPUID_LEAF1_EDX_APIC }
    }

    pub const fn x2apic(&self) -> bool {
        self.base.x2apic()
    }

    /// Globally and software enabled.
    pub const fn enabled(&self) -> bool {
        self.base.enable() && self.svr & SVR_ENABLE != 0
    }

    /// The APIC ID: 8 bits in xAPIC mode, the VP index in x2APIC mode.
    pub const fn apic_id(&self) -> u32 {
        if self.base.x2apic() { self.vp } else { self.id >> 24 }
    }

    pub const fn ldr(&self) -> u32 {
        self.ldr
    }

    pub const fn lvt(&self, index: usize) -> Lvt {
        self.lvt[index]
    }

    pub const fn irr(&self) -> &VectorBits {
        &self.irr
    }

    pub const fn isr(&self) -> &VectorBits {
        &self.isr
    }

    pub const fn tmr(&self) -> &VectorBits {
        &self.tmr
    }

    pub const fn esr(&self) -> u32 {
        self.esr
    }

    pub const fn tpr(&self) -> u32 {
        self.tpr
    }

    /// Sets TPR (bits 7:0), as a guest MOV to CR8 does (`cr8 << 4`).
    pub fn set_tpr(&mut self, tpr: u8) {
        self.tpr = u32::from(tpr);
    }

    /// Processor priority: TPR, or the class of the highest in-service vector.
    pub fn ppr(&self) -> u32 {
        let isrv = self.isr.highest().map_or(0, u32::from);
        if self.tpr >> 4 >= isrv >> 4 { self.tpr } else { isrv & 0xf0 }
    }

    /// Whether a logical destination `mda` (8 bits from xAPIC senders and
    /// the I/O APIC, 32 bits in x2APIC mode) names this APIC.
    pub fn matches_logical(&self, mda: u32) -> bool {
        if self.base.x2apic() {
            return mda >> 16 == self.ldr >> 16 && mda & self.ldr & 0xffff != 0;
        }
        let logical = self.ldr >> 24;
        if self.dfr >> 28 == 0xf {
            mda & logical & 0xff != 0
        } else {
            let cluster = (mda >> 4) & 0xf;
            (cluster == 0xf || cluster == logical >> 4) && mda & logical & 0xf != 0
        }
    }

    /// A fixed (or lowest-priority) interrupt arrives: IRR is set, and TMR
    /// says whether it is level-triggered. Dropped while the APIC is
    /// disabled (globally, or by software: SDM 11.4.7.2); vectors 0–15 set
    /// "receive illegal vector" instead. True if the APIC accepted it.
    pub fn accept(&mut self, vector: u8, level: bool) -> bool {
        if !self.enabled() {
            return false;
        }
        if vector < 16 {
            self.error(esr::RECEIVE_ILLEGAL_VECTOR);
            return false;
        }
        self.irr.set(vector, true);
        self.tmr.set(vector, level);
        true
    }

    /// An NMI arrives (if the APIC is globally enabled).
    pub fn accept_nmi(&mut self) {
        if self.base.enable() {
            self.nmi = true;
        }
    }

    pub const fn nmi_pending(&self) -> bool {
        self.nmi
    }

    /// The NMI was injected.
    pub fn acknowledge_nmi(&mut self) {
        self.nmi = false;
    }

    /// LINT0 passes the 8259's INTR through (ExtINT, unmasked) or the APIC
    /// is globally disabled (INTR goes to the CPU directly).
    pub fn accepts_extint(&self) -> bool {
        let lint0 = self.lvt[LVT_LINT0];
        !self.base.enable() || (!lint0.masked() && lint0.delivery_mode() == DeliveryMode::EXTINT)
    }

    /// The highest IRR vector whose class is above PPR's, ignoring RFLAGS.IF.
    pub fn highest_deliverable(&self) -> Option<u8> {
        self.irr.highest().filter(|&v| u32::from(v >> 4) > self.ppr() >> 4)
    }

    /// The vector to inject now, if the VP is interruptible.
    pub fn pending_vector(&self, rflags_if: bool, shadow: bool) -> Option<u8> {
        if rflags_if && !shadow { self.highest_deliverable() } else { None }
    }

    /// The caller injected `vector`: IRR to ISR, or, for an auto-EOI
    /// vector, out of the IRR only (the EOI is implicit, TLFS 11.8.5).
    pub fn acknowledge(&mut self, vector: u8) {
        if self.irr.get(vector) {
            self.irr.set(vector, false);
            self.isr.set(vector, !self.auto_eoi.get(vector));
        }
    }

    /// Whether the interrupt `vector`, just acknowledged, needs no EOI exit
    /// (TLFS 10.3.5, `NoEoiRequired`): it is in service, edge-triggered,
    /// no interrupt is pending behind it (its EOI would reveal one), and no
    /// other lazy EOI is outstanding (the bit counts one). If so, its EOI
    /// is outstanding from now: [`Lapic::complete_lazy_eoi`].
    pub fn offer_lazy_eoi(&mut self, vector: u8) -> bool {
        let offer = !self.lazy_eoi
            && self.isr.highest() == Some(vector)
            && !self.tmr.get(vector)
            && self.irr.highest().is_none();
        self.lazy_eoi |= offer;
        offer
    }

    pub const fn lazy_eoi(&self) -> bool {
        self.lazy_eoi
    }

    /// The guest cleared `NoEoiRequired`: the EOI it stood for.
    pub fn complete_lazy_eoi(&mut self) -> LapicEffect {
        if !core::mem::take(&mut self.lazy_eoi) {
            return LapicEffect::None;
        }
        self.eoi()
    }

    /// The VID cleared `NoEoiRequired` (an interrupt waits behind the one
    /// in service, or the page went away): the guest writes the EOI.
    pub fn withdraw_lazy_eoi(&mut self) {
        self.lazy_eoi = false;
    }

    /// Whether an interrupt is requested (in the IRR).
    pub fn requested(&self) -> bool {
        self.irr.highest().is_some()
    }

    /// The vectors delivered with an implicit EOI (from the SynIC's SINTs).
    pub fn set_auto_eoi(&mut self, vectors: VectorBits) {
        self.auto_eoi = vectors;
    }

    pub const fn auto_eoi(&self) -> &VectorBits {
        &self.auto_eoi
    }

    /// EOI: retires the highest in-service vector.
    pub fn eoi(&mut self) -> LapicEffect {
        match self.isr.highest() {
            Some(v) => {
                self.isr.set(v, false);
                if self.tmr.get(v) { LapicEffect::LevelEoi(v) } else { LapicEffect::None }
            }
            None => LapicEffect::None,
        }
    }

    fn error(&mut self, bits: u32) {
        self.esr_pending |= bits;
        let lvt = self.lvt[LVT_ERROR];
        if self.enabled() && !lvt.masked() {
            if lvt.vector() < 16 {
                self.esr_pending |= esr::RECEIVE_ILLEGAL_VECTOR;
            } else {
                self.irr.set(lvt.vector(), true);
                self.tmr.set(lvt.vector(), false);
            }
        }
    }

    /// The TSC at which [`Lapic::poll`] has work (the timer fires), if any.
    pub fn next_deadline(&self) -> Option<u64> {
        if self.lvt[LVT_TIMER].masked() { None } else { self.timer.next_fire() }
    }

    /// Fires the timer if its time has come; true if an interrupt was raised.
    pub fn poll(&mut self, now: u64) -> bool {
        if !self.timer.poll(now) {
            return false;
        }
        let lvt = self.lvt[LVT_TIMER];
        if lvt.masked() || !self.enabled() {
            return false;
        }
        // An illegal vector raises the error interrupt instead: kicked too.
        self.accept(lvt.vector(), false);
        true
    }

    pub const fn timer(&self) -> &ApicTimer {
        &self.timer
    }
}
