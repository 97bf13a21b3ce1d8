//! The I/O APIC (82093AA, version 0x11: no EOI register, so the local
//! APICs' EOI broadcast retires level-triggered interrupts): IOREGSEL at
//! offset 0 and IOWIN at 0x10 of its page, 24 redirection entries.
//!
//! An input is asserted or not ([`Ioapic::set_irq`]); the polarity bit
//! describes the wire to the guest and is not applied. An edge entry sends
//! on assertion while unmasked (a masked edge is lost) and ignores remote
//! IRR; a level entry sends while asserted, unmasked and without remote
//! IRR, which it then sets until the EOI of its vector (a local APIC's EOI
//! broadcast: [`Ioapic::eoi`]); if the line is still asserted then, it
//! sends again. What is sent is a [`Message`] the caller routes to the
//! local APICs; if none accepts a level one (all disabled),
//! [`Ioapic::not_accepted`] clears its remote IRR again. Delivery is
//! immediate, so an entry's delivery status reads 0 (idle).

use super::{DeliveryMode, Destination, Message};
use bitfield_struct::bitfield;

#[cfg(test)]
mod tests;

/// The I/O APIC's page.
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// Its ID (the MADT's I/O APIC ID).
pub const IOAPIC_ID: u32 = 0;
pub const PINS: usize = 24;
/// Version 0x11, maximum redirection entry 23.
pub const VERSION: u32 = 0x11 | ((PINS as u32 - 1) << 16);
/// Register offsets in the page.
pub const IOREGSEL: u64 = 0x00;
pub const IOWIN: u64 = 0x10;
/// Register indices.
pub const REG_ID: u8 = 0;
pub const REG_VERSION: u8 = 1;
pub const REG_ARBITRATION: u8 = 2;
pub const REG_REDIRECTION: u8 = 0x10;
/// Writable bits of an entry's low half and high half.
const LOW_WRITABLE: u32 = 0x1_afff;
const HIGH_WRITABLE: u32 = 0xff00_0000;

/// A redirection table entry.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct Redirection {
    pub vector: u8,
    #[bits(3)]
    pub delivery_mode: DeliveryMode,
    pub logical: bool,
    pub delivery_pending: bool,
    pub active_low: bool,
    pub remote_irr: bool,
    pub level: bool,
    pub masked: bool,
    #[bits(39)]
    __: u64,
    pub destination: u8,
}

impl Redirection {
    /// The message this entry sends.
    pub fn message(self) -> Message {
        let dest = u32::from(self.destination());
        let dest = match (self.logical(), dest) {
            (false, 0xff) => Destination::All,
            (false, d) => Destination::Physical(d),
            (true, d) => Destination::Logical(d),
        };
        Message { mode: self.delivery_mode(), vector: self.vector(), level: self.level(), dest }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ioapic {
    id: u32,
    select: u8,
    entries: [Redirection; PINS],
    /// Asserted inputs, one bit per pin.
    asserted: u32,
}

impl Default for Ioapic {
    fn default() -> Ioapic {
        Ioapic::new()
    }
}

impl Ioapic {
    /// At reset every entry is masked.
    pub const fn new() -> Ioapic {
        Ioapic { id: IOAPIC_ID, select: 0, entries: [Redirection::new().with_masked(true); PINS], asserted: 0 }
    }

    pub const fn claims(gpa: u64) -> bool {
        gpa & !0xfff == IOAPIC_BASE
    }

    pub fn entry(&self, pin: usize) -> Option<Redirection> {
        self.entries.get(pin).copied()
    }

    /// Whether pin `pin` can send (it is unmasked).
    pub fn unmasked(&self, pin: usize) -> bool {
        self.entries.get(pin).is_some_and(|e| !e.masked())
    }

    fn read_register(&self, index: u8) -> u32 {
        match index {
            REG_ID | REG_ARBITRATION => self.id << 24,
            REG_VERSION => VERSION,
            0x10..=0x3f => {
                let bits = self.entries[usize::from((index - REG_REDIRECTION) / 2)].into_bits();
                if index & 1 == 0 { bits as u32 } else { (bits >> 32) as u32 }
            }
            _ => 0,
        }
    }

    /// A read of `size` bytes at `offset` in the page: IOREGSEL and IOWIN
    /// are the first 4 bytes of their 16-byte slots; the rest reads 0.
    pub fn mmio_read(&self, offset: u64, size: u8) -> u64 {
        let value = match offset & 0xff0 {
            IOREGSEL => u32::from(self.select),
            IOWIN => self.read_register(self.select),
            _ => 0,
        };
        (0..u64::from(size.clamp(1, 8))).fold(0, |acc, i| {
            let at = (offset & 0xf) + i;
            acc | if at < 4 { u64::from((value >> (8 * at)) & 0xff) << (8 * i) } else { 0 }
        })
    }

    /// A write at `offset`: IOREGSEL takes 1- or 4-byte writes, IOWIN
    /// 4-byte ones. Unmasking an asserted level input sends its message
    /// (returned with its pin).
    pub fn mmio_write(&mut self, offset: u64, size: u8, value: u64) -> Option<(usize, Message)> {
        match (offset & 0xfff, size) {
            (IOREGSEL, 1 | 4) => self.select = value as u8,
            (IOWIN, 4) => return self.write_register(self.select, value as u32),
            _ => {}
        }
        None
    }

    fn write_register(&mut self, index: u8, value: u32) -> Option<(usize, Message)> {
        match index {
            REG_ID => self.id = (value >> 24) & 0xf,
            0x10..=0x3f => {
                let pin = usize::from((index - REG_REDIRECTION) / 2);
                let old = self.entries[pin].into_bits();
                let bits = if index & 1 == 0 {
                    (old & !u64::from(LOW_WRITABLE)) | u64::from(value & LOW_WRITABLE)
                } else {
                    (old & 0xffff_ffff) | u64::from(value & HIGH_WRITABLE) << 32
                };
                let mut entry = Redirection::from_bits(bits);
                if !entry.level() {
                    entry.set_remote_irr(false);
                }
                self.entries[pin] = entry;
                return self.service(pin).map(|m| (pin, m));
            }
            _ => {}
        }
        None
    }

    /// Sends pin `pin`'s level interrupt if it is due.
    fn service(&mut self, pin: usize) -> Option<Message> {
        let entry = &mut self.entries[pin];
        if self.asserted & (1 << pin) == 0 || entry.masked() || !entry.level() || entry.remote_irr() {
            return None;
        }
        entry.set_remote_irr(true);
        Some(entry.message())
    }

    /// Input `pin` is asserted (`level`) or not. Returns the message sent.
    pub fn set_irq(&mut self, pin: usize, level: bool) -> Option<Message> {
        if pin >= PINS {
            return None;
        }
        let bit = 1u32 << pin;
        let was = self.asserted & bit != 0;
        self.asserted = if level { self.asserted | bit } else { self.asserted & !bit };
        let entry = self.entries[pin];
        if entry.level() {
            self.service(pin)
        } else if level && !was && !entry.masked() {
            Some(entry.message())
        } else {
            None
        }
    }

    /// The EOI broadcast of `vector`: level entries with that vector drop
    /// remote IRR, and those still asserted send again (`send`, with the pin).
    pub fn eoi(&mut self, vector: u8, mut send: impl FnMut(usize, Message)) {
        for pin in 0..PINS {
            let entry = &mut self.entries[pin];
            if entry.level() && entry.remote_irr() && entry.vector() == vector {
                entry.set_remote_irr(false);
                if let Some(message) = self.service(pin) {
                    send(pin, message);
                }
            }
        }
    }

    /// No local APIC accepted pin `pin`'s level message: remote IRR is set
    /// only by an acceptance (82093AA 3.2.4), so no EOI will come for it.
    pub fn not_accepted(&mut self, pin: usize) {
        if let Some(entry) = self.entries.get_mut(pin) {
            entry.set_remote_irr(false);
        }
    }
}
