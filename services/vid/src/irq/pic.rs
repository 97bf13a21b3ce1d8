//! The 8259A PIC pair (master at 0x20/0x21, slave at 0xa0/0xa1, cascaded
//! on master IR2) and the ELCR (0x4d0/0x4d1, edge/level per line).
//!
//! Enough for Linux's probe and init (ICW1–4, OCW1 mask readback, OCW2 EOIs
//! and rotation, OCW3 IRR/ISR select and poll) and for delivery in
//! virtual-wire mode: [`Pic::output`] is the vector the pair asks the CPU
//! for (through LINT0 as ExtINT), [`Pic::acknowledge`] is INTA. Not
//! modelled: special fully nested mode, special mask mode (accepted,
//! ignored), buffered mode, and polling through the cascade.

#[cfg(test)]
mod tests;

pub const MASTER_CMD: u16 = 0x20;
pub const MASTER_DATA: u16 = 0x21;
pub const SLAVE_CMD: u16 = 0xa0;
pub const SLAVE_DATA: u16 = 0xa1;
pub const ELCR_MASTER: u16 = 0x4d0;
pub const ELCR_SLAVE: u16 = 0x4d1;
/// The master input the slave is wired to.
pub const CASCADE_IRQ: u8 = 2;
/// ELCR bits that can be level: not IRQ 0, 1, 2, 8, 13.
const ELCR_MASKS: [u8; 2] = [0xf8, 0xde];

/// One 8259A.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chip {
    pub irr: u8,
    pub isr: u8,
    pub imr: u8,
    /// Vector base from ICW2 (bits 7:3).
    pub base: u8,
    pub elcr: u8,
    /// Input levels now.
    lines: u8,
    /// 0: operational; 1, 2, 3: expecting ICW2, ICW3, ICW4.
    init_step: u8,
    icw4: bool,
    single: bool,
    pub auto_eoi: bool,
    rotate_on_auto_eoi: bool,
    read_isr: bool,
    poll: bool,
    /// The line with the lowest priority is `priority_add - 1`.
    priority_add: u8,
}

impl Chip {
    /// The priority (0 highest) of the highest-priority bit in `bits`.
    fn best(&self, bits: u8) -> Option<u8> {
        // Priority p is line (p + priority_add) & 7: rotated so, the best
        // is the lowest bit set.
        (bits != 0).then(|| bits.rotate_right(u32::from(self.priority_add)).trailing_zeros() as u8)
    }

    fn line_of(&self, priority: u8) -> u8 {
        (priority + self.priority_add) & 7
    }

    /// The line this chip asks to deliver, given the extra request lines
    /// `extra`. None while it is being initialized (ICW1 to its last ICW):
    /// ICW1 cleared its mask, and its vector base (ICW2) and mode are not
    /// set yet, so it raises no request until initialization is over
    /// (8259A datasheet, "Initialization Command Words": an IR input
    /// generates an interrupt "following initialization"). An edge that
    /// comes meanwhile stays in the IRR, delivered at the new base after.
    fn output(&self, extra: u8) -> Option<u8> {
        if self.init_step != 0 {
            return None;
        }
        let pending = self.best((self.irr | extra) & !self.imr)?;
        match self.best(self.isr) {
            Some(busy) if busy <= pending => None,
            _ => Some(self.line_of(pending)),
        }
    }

    fn set_line(&mut self, line: u8, level: bool) {
        let bit = 1 << (line & 7);
        if self.elcr & bit != 0 {
            self.irr = if level { self.irr | bit } else { self.irr & !bit };
        } else if level && self.lines & bit == 0 {
            self.irr |= bit;
        }
        self.lines = if level { self.lines | bit } else { self.lines & !bit };
    }

    fn ack(&mut self, line: u8) {
        let bit = 1 << line;
        if self.auto_eoi {
            if self.rotate_on_auto_eoi {
                self.priority_add = (line + 1) & 7;
            }
        } else {
            self.isr |= bit;
        }
        if self.elcr & bit == 0 {
            self.irr &= !bit;
        }
    }

    fn write_command(&mut self, value: u8) {
        if value & 0x10 != 0 {
            // ICW1: reset and start the init sequence.
            *self = Chip { elcr: self.elcr, irr: self.irr & self.elcr, lines: self.lines, ..Chip::default() };
            self.init_step = 1;
            self.icw4 = value & 1 != 0;
            self.single = value & 2 != 0;
        } else if value & 0x08 != 0 {
            // OCW3.
            self.poll = value & 0x04 != 0;
            if value & 0x02 != 0 {
                self.read_isr = value & 1 != 0;
            }
        } else {
            // OCW2.
            let specific = value & 7;
            match value >> 5 {
                0 | 4 => self.rotate_on_auto_eoi = value & 0x80 != 0,
                cmd @ (1 | 5) => {
                    if let Some(p) = self.best(self.isr) {
                        let line = self.line_of(p);
                        self.isr &= !(1 << line);
                        if cmd == 5 {
                            self.priority_add = (line + 1) & 7;
                        }
                    }
                }
                3 => self.isr &= !(1 << specific),
                6 => self.priority_add = (specific + 1) & 7,
                7 => {
                    self.isr &= !(1 << specific);
                    self.priority_add = (specific + 1) & 7;
                }
                _ => {}
            }
        }
    }

    fn write_data(&mut self, value: u8) {
        match self.init_step {
            1 => {
                self.base = value & 0xf8;
                self.init_step = match (self.single, self.icw4) {
                    (false, _) => 2,
                    (true, true) => 3,
                    (true, false) => 0,
                };
            }
            2 => self.init_step = if self.icw4 { 3 } else { 0 },
            3 => {
                self.auto_eoi = value & 2 != 0;
                self.init_step = 0;
            }
            _ => self.imr = value,
        }
    }
}

/// The master and slave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pic {
    pub chips: [Chip; 2],
}

impl Default for Pic {
    fn default() -> Pic {
        Pic::new()
    }
}

impl Pic {
    pub fn new() -> Pic {
        Pic { chips: [Chip::default(), Chip::default()] }
    }

    pub const fn claims(port: u16) -> bool {
        matches!(port, MASTER_CMD | MASTER_DATA | SLAVE_CMD | SLAVE_DATA | ELCR_MASTER | ELCR_SLAVE)
    }

    /// The slave's request, seen by the master as a level on IR2.
    fn cascade(&self) -> u8 {
        if self.chips[1].output(0).is_some() { 1 << CASCADE_IRQ } else { 0 }
    }

    /// ISA IRQ `irq` (0–15) is at `level`.
    pub fn set_irq(&mut self, irq: u8, level: bool) {
        if irq < 16 {
            self.chips[usize::from(irq >> 3)].set_line(irq & 7, level);
        }
    }

    /// Whether IRQ `irq` is unmasked (its IMR bit, and the cascade's).
    pub fn unmasked(&self, irq: u8) -> bool {
        let [m, s] = &self.chips;
        match irq {
            0..8 => m.imr & (1 << irq) == 0,
            8..16 => m.imr & (1 << CASCADE_IRQ) == 0 && s.imr & (1 << (irq - 8)) == 0,
            _ => false,
        }
    }

    /// The vector the pair presents on INTR, if it asserts INTR.
    pub fn output(&self) -> Option<u8> {
        let [m, s] = &self.chips;
        match m.output(self.cascade())? {
            CASCADE_IRQ => Some(s.base | s.output(0).unwrap_or(7)),
            line => Some(m.base | line),
        }
    }

    /// INTA: the vector, with the line moved to in-service. Without a
    /// request it is the spurious IRQ 7 (no in-service bit).
    pub fn acknowledge(&mut self) -> u8 {
        let cascade = self.cascade();
        let Some(line) = self.chips[0].output(cascade) else {
            return self.chips[0].base | 7;
        };
        self.chips[0].ack(line);
        if line != CASCADE_IRQ {
            return self.chips[0].base | line;
        }
        match self.chips[1].output(0) {
            Some(s) => {
                self.chips[1].ack(s);
                self.chips[1].base | s
            }
            None => self.chips[1].base | 7,
        }
    }

    pub fn port_read(&mut self, port: u16) -> u8 {
        let index = usize::from(port == SLAVE_CMD || port == SLAVE_DATA);
        let cascade = self.cascade();
        let chip = &mut self.chips[index];
        match port {
            MASTER_CMD | SLAVE_CMD if chip.poll => {
                chip.poll = false;
                let extra = if index == 0 { cascade } else { 0 };
                match chip.output(extra) {
                    Some(line) => {
                        chip.ack(line);
                        0x80 | line
                    }
                    None => 0,
                }
            }
            MASTER_CMD | SLAVE_CMD if chip.read_isr => chip.isr,
            MASTER_CMD | SLAVE_CMD => chip.irr,
            MASTER_DATA | SLAVE_DATA => chip.imr,
            ELCR_MASTER => self.chips[0].elcr,
            ELCR_SLAVE => self.chips[1].elcr,
            _ => 0xff,
        }
    }

    pub fn port_write(&mut self, port: u16, value: u8) {
        match port {
            MASTER_CMD => self.chips[0].write_command(value),
            SLAVE_CMD => self.chips[1].write_command(value),
            MASTER_DATA => self.chips[0].write_data(value),
            SLAVE_DATA => self.chips[1].write_data(value),
            ELCR_MASTER | ELCR_SLAVE => {
                let i = usize::from(port == ELCR_SLAVE);
                self.chips[i].elcr = value & ELCR_MASKS[i];
            }
            _ => {}
        }
    }
}
