//! The partition's interrupt platform: a local APIC per VP, the I/O APIC,
//! the PIC pair and the PIT, with the wiring between them.
//!
//! Integration contract (what the VID calls):
//! - MMIO intercepts: [`Interrupts::claims_mmio`], then
//!   [`Interrupts::mmio_read`]/[`Interrupts::mmio_write`] (a VP sees its own
//!   APIC page; the I/O APIC page is shared).
//! - Port intercepts: the device bus routes the PIC and PIT windows
//!   ([`crate::bus::PORT_ROUTES`]) to `port_read`/`port_write`.
//! - MSR intercepts: [`Interrupts::msr_read`]/[`Interrupts::msr_write`]
//!   (IA32_APIC_BASE, IA32_TSC_DEADLINE, x2APIC); `Err` means inject #GP(0).
//!   The Hyper-V EOI/ICR/TPR MSRs go to `hv_apic_msr_read`/`_write`.
//! - Devices: [`Interrupts::set_irq`] (ISA IRQ) or [`Interrupts::set_gsi`].
//! - Before resuming a VP: [`Interrupts::highest_pending`] with its
//!   interruptibility; if `Some`, inject the vector
//!   [`Interrupts::acknowledge`] returns. If none is injectable but
//!   [`Interrupts::has_pending`], ask for an interrupt-window exit. A VP
//!   halted with RFLAGS.IF set wakes when `has_pending` (with IF clear,
//!   only for an NMI). If CR8 is not intercepted, sync it first
//!   ([`Interrupts::set_cr8`]).
//! - Time: wake by [`Interrupts::next_deadline`] (TSC ticks) and call
//!   [`Interrupts::poll`]; the deadline may change after any access.
//! - [`Effects`] of every call: kick those VPs (they re-check pending),
//!   reset and park the INIT ones, start the SIPI ones.

use super::ioapic::{self, Ioapic};
use super::lapic::{self, HvApicMsr, Lapic, LapicEffect};
use super::pic::Pic;
use super::pit::Pit;
use super::{
    DeliveryMode, Destination, Effects, GeneralProtection, Interrupt, Interruptibility, MAX_VPS_PER_PARTITION, Message,
    VpSet,
};

#[cfg(test)]
mod tests;

/// The platform's shape and clocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// VPs (1..=16); VP 0 is the BSP, the others wait for SIPI.
    pub vps: u32,
    /// TSC frequency: `now` is in TSC ticks.
    pub tsc_hz: u64,
    /// The APIC timer's input (bus) clock.
    pub apic_hz: u64,
}

/// The I/O APIC pin of ISA IRQ `irq`: IRQ 0 is on pin 2 (the MADT's
/// interrupt source override), the others on their own pin.
pub const fn isa_gsi(irq: u8) -> usize {
    if irq == 0 { 2 } else { irq as usize }
}

#[derive(Clone, Debug)]
pub struct Interrupts {
    lapics: heapless::Vec<Lapic, MAX_VPS_PER_PARTITION>,
    ioapic: Ioapic,
    pic: Pic,
    pit: Pit,
    waiting_for_sipi: VpSet,
}

impl Interrupts {
    pub fn new(config: Config) -> Interrupts {
        let vps = config.vps.clamp(1, MAX_VPS_PER_PARTITION as u32);
        let mut lapics = heapless::Vec::new();
        let mut waiting_for_sipi = VpSet::default();
        for vp in 0..vps {
            let _ = lapics.push(Lapic::new(vp, config.tsc_hz, config.apic_hz));
            if vp != 0 {
                waiting_for_sipi.insert(vp);
            }
        }
        Interrupts { lapics, ioapic: Ioapic::new(), pic: Pic::new(), pit: Pit::new(config.tsc_hz), waiting_for_sipi }
    }

    pub fn vps(&self) -> u32 {
        self.lapics.len() as u32
    }

    pub fn lapic(&self, vp: u32) -> Option<&Lapic> {
        self.lapics.get(vp as usize)
    }

    pub fn lapic_mut(&mut self, vp: u32) -> Option<&mut Lapic> {
        self.lapics.get_mut(vp as usize)
    }

    pub const fn ioapic(&self) -> &Ioapic {
        &self.ioapic
    }

    pub const fn pic(&self) -> &Pic {
        &self.pic
    }

    pub const fn pit(&self) -> &Pit {
        &self.pit
    }

    /// VPs waiting for a SIPI (after INIT, or APs never started).
    pub const fn waiting_for_sipi(&self) -> VpSet {
        self.waiting_for_sipi
    }

    fn all(&self) -> VpSet {
        VpSet(((1u32 << self.lapics.len()) - 1) as u16)
    }

    /// Whether `gpa` is VP `vp`'s APIC page (where IA32_APIC_BASE puts it,
    /// or the default) or the I/O APIC's.
    pub fn claims_mmio(&self, vp: u32, gpa: u64) -> bool {
        let page = gpa & !0xfff;
        let apic = self.lapic(vp).is_some_and(|l| l.base().page() << 12 == page);
        apic || page == lapic::APIC_DEFAULT_BASE || Ioapic::claims(gpa)
    }

    /// For an APIC page `gpa` of `vp`: its APIC if the page is its xAPIC
    /// page now, `Some(None)` if the page is unused (reads all ones).
    fn own_apic_page(&mut self, vp: u32, gpa: u64) -> Option<Option<&mut Lapic>> {
        if !self.claims_mmio(vp, gpa) {
            return None;
        }
        let lapic = self.lapics.get_mut(vp as usize)?;
        Some((lapic.mmio_base() == Some(gpa & !0xfff)).then_some(lapic))
    }

    pub fn mmio_read(&mut self, vp: u32, gpa: u64, size: u8, now: u64) -> Option<u64> {
        if Ioapic::claims(gpa) {
            return Some(self.ioapic.mmio_read(gpa & 0xfff, size));
        }
        let lapic = self.own_apic_page(vp, gpa)?;
        match lapic {
            Some(lapic) => Some(lapic.mmio_read(gpa & 0xfff, size, now)),
            None => Some(u64::MAX >> (64 - 8 * u32::from(size.clamp(1, 8)))),
        }
    }

    pub fn mmio_write(&mut self, vp: u32, gpa: u64, size: u8, value: u64, now: u64) -> Option<Effects> {
        if Ioapic::claims(gpa) {
            let sent = self.ioapic.mmio_write(gpa & 0xfff, size, value);
            return Some(sent.map_or_else(Effects::default, |(pin, m)| self.redirect(pin, m)));
        }
        let Some(lapic) = self.own_apic_page(vp, gpa)? else {
            return Some(Effects::default());
        };
        let effect = lapic.mmio_write(gpa & 0xfff, size, value, now);
        Some(self.apply(vp, effect))
    }

    pub const fn claims_port(port: u16) -> bool {
        Pic::claims(port) || Pit::claims(port)
    }

    /// A port read of `size` bytes: each byte from its own port (0xff for
    /// ports not modelled); `None` if the first port is not one of ours.
    pub fn port_read(&mut self, port: u16, size: u8, now: u64) -> Option<u64> {
        if !Self::claims_port(port) {
            return None;
        }
        Some((0..size.clamp(1, 4)).fold(0, |acc, i| {
            let p = port.wrapping_add(u16::from(i));
            let byte = if Pic::claims(p) {
                self.pic.port_read(p)
            } else if Pit::claims(p) {
                self.pit.port_read(p, now)
            } else {
                0xff
            };
            acc | u64::from(byte) << (8 * i)
        }))
    }

    pub fn port_write(&mut self, port: u16, size: u8, value: u64, now: u64) -> Option<Effects> {
        if !Self::claims_port(port) {
            return None;
        }
        for i in 0..size.clamp(1, 4) {
            let p = port.wrapping_add(u16::from(i));
            let byte = (value >> (8 * i)) as u8;
            if Pic::claims(p) {
                self.pic.port_write(p, byte);
            } else if Pit::claims(p) {
                self.pit.port_write(p, byte, now);
            }
        }
        // Unmasking or EOI at the PIC may let a request through.
        Some(self.kick_extint())
    }

    pub fn msr_read(&mut self, vp: u32, msr: u32, now: u64) -> Option<Result<u64, GeneralProtection>> {
        self.lapics.get_mut(vp as usize)?.msr_read(msr, now)
    }

    pub fn msr_write(&mut self, vp: u32, msr: u32, value: u64, now: u64) -> Option<Result<Effects, GeneralProtection>> {
        let result = self.lapics.get_mut(vp as usize)?.msr_write(msr, value, now)?;
        Some(result.map(|effect| self.apply(vp, effect)))
    }

    pub fn hv_apic_msr_read(&self, vp: u32, msr: HvApicMsr) -> Result<u64, GeneralProtection> {
        self.lapic(vp).ok_or(GeneralProtection)?.hv_msr_read(msr)
    }

    pub fn hv_apic_msr_write(&mut self, vp: u32, msr: HvApicMsr, value: u64) -> Result<Effects, GeneralProtection> {
        let effect = self.lapics.get_mut(vp as usize).ok_or(GeneralProtection)?.hv_msr_write(msr, value)?;
        Ok(self.apply(vp, effect))
    }

    /// VP `vp`'s guest did its lazy EOI ([`Lapic::complete_lazy_eoi`]).
    pub fn complete_lazy_eoi(&mut self, vp: u32) -> Effects {
        match self.lapics.get_mut(vp as usize) {
            Some(lapic) => {
                let effect = lapic.complete_lazy_eoi();
                self.apply(vp, effect)
            }
            None => Effects::default(),
        }
    }

    fn apply(&mut self, vp: u32, effect: LapicEffect) -> Effects {
        match effect {
            LapicEffect::None => Effects::default(),
            LapicEffect::Ipi(message) => self.deliver(Some(vp), message),
            LapicEffect::LevelEoi(vector) => {
                let mut resent = heapless::Vec::<(usize, Message), { ioapic::PINS }>::new();
                self.ioapic.eoi(vector, |pin, m| {
                    let _ = resent.push((pin, m));
                });
                let mut effects = Effects::default();
                for (pin, m) in resent {
                    effects.merge(self.redirect(pin, m));
                }
                effects
            }
        }
    }

    /// The VPs a message reaches from `source` (`None`: the I/O APIC).
    pub fn destinations(&self, source: Option<u32>, dest: Destination) -> VpSet {
        let mut set = VpSet::default();
        let others = |set: &mut VpSet| {
            for l in &self.lapics {
                if Some(l.vp()) != source {
                    set.insert(l.vp());
                }
            }
        };
        match dest {
            Destination::SelfOnly => {
                if let Some(vp) = source {
                    set.insert(vp);
                }
            }
            Destination::All => set = self.all(),
            Destination::AllButSelf => others(&mut set),
            Destination::Physical(id) => {
                self.lapics.iter().filter(|l| l.apic_id() == id).for_each(|l| set.insert(l.vp()))
            }
            Destination::Logical(mda) => {
                self.lapics.iter().filter(|l| l.matches_logical(mda)).for_each(|l| set.insert(l.vp()))
            }
        }
        set
    }

    /// Delivers a message. Lowest priority goes to the lowest-numbered VP
    /// of the destinations whose APIC is software-enabled (as KVM picks
    /// among those; SDM 11.6.2.4 leaves the arbitration to the model), as
    /// fixed.
    pub fn deliver(&mut self, source: Option<u32>, message: Message) -> Effects {
        self.deliver_counted(source, message).0
    }

    /// Delivers I/O APIC pin `pin`'s message; a level one no APIC accepted
    /// leaves its remote IRR clear.
    fn redirect(&mut self, pin: usize, message: Message) -> Effects {
        let (effects, accepted) = self.deliver_counted(None, message);
        if message.level && !accepted {
            self.ioapic.not_accepted(pin);
        }
        effects
    }

    /// [`Interrupts::deliver`], and whether a fixed or lowest-priority
    /// message was accepted by some APIC.
    fn deliver_counted(&mut self, source: Option<u32>, message: Message) -> (Effects, bool) {
        let mut targets = self.destinations(source, message.dest);
        if message.mode == DeliveryMode::LOWEST_PRIORITY {
            let enabled = targets.iter().find(|&vp| self.lapics[vp as usize].enabled());
            targets = enabled.or(targets.iter().next()).map_or(VpSet::default(), |vp| VpSet(1 << vp));
        }
        let mut effects = Effects::default();
        let mut accepted = false;
        for vp in targets.iter() {
            let lapic = &mut self.lapics[vp as usize];
            match message.mode {
                DeliveryMode::FIXED | DeliveryMode::LOWEST_PRIORITY => {
                    accepted |= lapic.accept(message.vector, message.level);
                    effects.kick.insert(vp);
                }
                DeliveryMode::NMI => {
                    lapic.accept_nmi();
                    effects.kick.insert(vp);
                }
                DeliveryMode::INIT => {
                    lapic.init();
                    self.waiting_for_sipi.insert(vp);
                    effects.init.insert(vp);
                }
                DeliveryMode::STARTUP if self.waiting_for_sipi.contains(vp) => {
                    self.waiting_for_sipi.0 &= !(1 << vp);
                    effects.sipi.insert(vp);
                    effects.sipi_vector = message.vector;
                }
                _ => {}
            }
        }
        (effects, accepted)
    }

    /// VPs whose LINT0 passes the PIC's request, if it has one.
    fn kick_extint(&self) -> Effects {
        let mut effects = Effects::default();
        if self.pic.output().is_some() {
            self.lapics.iter().filter(|l| l.accepts_extint()).for_each(|l| effects.kick.insert(l.vp()));
        }
        effects
    }

    /// ISA IRQ `irq` (0–15) is at `level`: the PIC's line and the I/O
    /// APIC's pin ([`isa_gsi`]).
    pub fn set_irq(&mut self, irq: u8, level: bool) -> Effects {
        self.pic.set_irq(irq, level);
        let mut effects = self.kick_extint();
        if let Some(m) = self.ioapic.set_irq(isa_gsi(irq), level) {
            effects.merge(self.redirect(isa_gsi(irq), m));
        }
        effects
    }

    /// I/O APIC pin `gsi` is at `level` (for GSIs 16–23).
    pub fn set_gsi(&mut self, gsi: usize, level: bool) -> Effects {
        match self.ioapic.set_irq(gsi, level) {
            Some(m) => self.redirect(gsi, m),
            None => Effects::default(),
        }
    }

    /// The interrupt to inject into `vp` now: an NMI, the PIC's vector
    /// through LINT0 (ExtINT), or the APIC's highest deliverable vector.
    pub fn highest_pending(&self, vp: u32, state: Interruptibility) -> Option<Interrupt> {
        let lapic = self.lapic(vp)?;
        if lapic.nmi_pending() && !state.nmi_blocked && !state.shadow {
            return Some(Interrupt::Nmi);
        }
        if !state.rflags_if || state.shadow {
            return None;
        }
        if lapic.accepts_extint()
            && let Some(vector) = self.pic.output()
        {
            return Some(Interrupt::ExtInt(vector));
        }
        lapic.pending_vector(true, false).map(Interrupt::Fixed)
    }

    /// The guest's CR8 (from an intercept, or a MOV to CR8): TPR = CR8 << 4.
    pub fn set_cr8(&mut self, vp: u32, cr8: u64) {
        if let Some(lapic) = self.lapic_mut(vp) {
            lapic.set_tpr(((cr8 & 0xf) << 4) as u8);
        }
    }

    /// Whether `vp` has an interrupt waiting, whatever its RFLAGS.IF: it
    /// wakes from HLT, or wants an interrupt window.
    pub fn has_pending(&self, vp: u32) -> bool {
        self.lapic(vp).is_some_and(|l| {
            l.nmi_pending() || (l.accepts_extint() && self.pic.output().is_some()) || l.highest_deliverable().is_some()
        })
    }

    /// The caller injected `interrupt` into `vp`: returns the vector to
    /// inject (the PIC's INTA may give a different one, or its spurious 7).
    pub fn acknowledge(&mut self, vp: u32, interrupt: Interrupt) -> u8 {
        let Some(lapic) = self.lapics.get_mut(vp as usize) else {
            return interrupt.vector();
        };
        match interrupt {
            Interrupt::Nmi => {
                lapic.acknowledge_nmi();
                2
            }
            Interrupt::ExtInt(_) => self.pic.acknowledge(),
            Interrupt::Fixed(vector) => {
                lapic.acknowledge(vector);
                vector
            }
        }
    }

    /// The earliest TSC at which [`Interrupts::poll`] has work: an APIC
    /// timer, or the PIT's IRQ 0 if it is unmasked at the PIC or I/O APIC.
    pub fn next_deadline(&self) -> Option<u64> {
        let irq0 = self.pic.unmasked(0) || self.ioapic.unmasked(isa_gsi(0));
        let pit = self.pit.next_deadline().filter(|_| irq0);
        self.lapics.iter().filter_map(Lapic::next_deadline).chain(pit).min()
    }

    /// Fires what is due at `now`: APIC timers, and PIT channel 0 as a
    /// pulse on IRQ 0.
    pub fn poll(&mut self, now: u64) -> Effects {
        let mut effects = Effects::default();
        for lapic in &mut self.lapics {
            if lapic.poll(now) {
                effects.kick.insert(lapic.vp());
            }
        }
        if self.pit.poll(now) {
            effects.merge(self.set_irq(0, true));
            effects.merge(self.set_irq(0, false));
        }
        effects
    }
}
