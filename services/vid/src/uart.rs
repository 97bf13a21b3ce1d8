//! A 16550A UART (National Semiconductor PC16550D), as COM1 of a PC: ports
//! 0x3f8–0x3ff, ISA IRQ 4 gated by MCR.OUT2.
//!
//! Enough for Linux's 8250 driver to detect a 16550A (`autoconfig()`: the
//! IER and loopback tests, the FIFO bits of IIR, the EFR/16750/XScale probes
//! that a 16550A fails, and the FIFO-size count in loopback) and to run it
//! with interrupts: received data (with the FIFO trigger level), THR empty,
//! line status (overrun) and modem status, in the datasheet's priorities.
//!
//! # Model
//!
//! - **Transmit is instant.** A byte written to THR goes to the output sink
//!   at once (in loopback mode, into the receive FIFO instead), so LSR.THRE
//!   and LSR.TEMT are always set. The THR-empty interrupt follows the
//!   datasheet: it is pending after every THR write and whenever IER.ETBEI
//!   goes from 0 to 1 (the transmitter being empty); reading IIR when it is
//!   the reported source, or writing THR, clears it.
//! - **Receive** has a 16-byte FIFO (one byte, RBR, when FCR.0 is clear).
//!   Host input enters through [`Uart::push_input`], which never overruns:
//!   it takes at most [`Uart::rx_space`] bytes and the VID keeps the rest
//!   for later (backpressure). A byte looped back from THR into a full FIFO
//!   is an overrun (LSR.OE, a line-status interrupt), as on the chip.
//! - **No time.** Below the FCR trigger level, waiting data reports the
//!   character-timeout interrupt (IIR 0x0c) at once instead of after four
//!   character times; at or above it, received-data-available (0x04).
//!   Baud rate, word length, parity and break are stored, never applied.
//! - **Modem inputs** are those of a connected terminal (CTS, DSR, DCD
//!   asserted, RI not). In loopback mode they are RTS, DTR, OUT1 and OUT2,
//!   with the delta bits set on every change; the serial input is
//!   disconnected ([`Uart::rx_space`] is 0) and the IRQ line is off (the
//!   modem outputs, OUT2 included, are forced inactive on the pins).
//!
//! # Integration (VID port handler)
//!
//! - **Port exits** for [`COM1_BASE`]..[`COM1_BASE`]` + 8`: a read returns
//!   [`Uart::read_sized`]`(port - COM1_BASE, size)`, a write calls
//!   [`Uart::write_sized`]`(port - COM1_BASE, size, value, &mut sink)` where
//!   `sink` feeds each byte to the guest's console line assembly
//!   (`GuestConsole::byte`, printing the lines it returns). String I/O
//!   (`rep outsb`) is the same, one element at a time.
//! - **The IRQ**: after every UART access (reads too: IIR, RBR, LSR and MSR
//!   reads clear interrupt conditions) and after every
//!   [`Uart::push_input`], compare [`Uart::irq_level`] with the level last
//!   given and, if it changed, call `Interrupts::set_irq(COM1_IRQ, level)`
//!   (merging its effects). The line is edge-triggered on the PIC and the
//!   I/O APIC; Linux's handler loops on IIR until "no interrupt", so a
//!   condition that is re-raised while the line stays high is still served.
//! - **Input**: when [`Uart::rx_space`] is non-zero, ask the console for
//!   that many bytes (`console_api::Client::read(space)`, which does not
//!   block; the VID needs a `console-api` dependency and the manifest's
//!   console capability, and must be the console's first reader) and
//!   [`Uart::push_input`] them, then update the IRQ as above. Each read is
//!   an IPC, so poll on a timer rather than on every UART access (Linux
//!   reads LSR for every byte it prints): e.g. a VID deadline every 10 ms
//!   while the partition runs, which also wakes a VP halted waiting for a
//!   key. Bytes the model did not take must be kept by the VID and offered
//!   again; reading at most `rx_space()` bytes leaves none.

#[cfg(test)]
mod tests;

/// COM1's first port.
pub const COM1_BASE: u16 = 0x3f8;
/// COM1's data register (transmitter holding / receiver buffer).
pub const UART_DATA: u16 = COM1_BASE + reg::RBR_THR_DLL;
/// COM1's line status register: the guest polls it before writing.
pub const UART_LINE_STATUS: u16 = COM1_BASE + reg::LSR;
/// COM1's ISA IRQ.
pub const COM1_IRQ: u8 = 4;
/// Ports the UART decodes from its base.
pub const PORTS: u16 = 8;
/// Bytes the receive FIFO holds (a 16550A's).
pub const FIFO_SIZE: usize = 16;

/// Register offsets from the base (DLAB: LCR bit 7).
pub mod reg {
    /// Read: receiver buffer; write: transmitter holding; DLAB: divisor latch low.
    pub const RBR_THR_DLL: u16 = 0;
    /// Interrupt enable; DLAB: divisor latch high.
    pub const IER_DLM: u16 = 1;
    /// Read: interrupt identification; write: FIFO control.
    pub const IIR_FCR: u16 = 2;
    pub const LCR: u16 = 3;
    pub const MCR: u16 = 4;
    pub const LSR: u16 = 5;
    pub const MSR: u16 = 6;
    pub const SCR: u16 = 7;
}

/// Interrupt enable register bits (bits 7:4 are 0 on a 16550A).
pub mod ier {
    /// Received data available (and character timeout).
    pub const ERBFI: u8 = 1 << 0;
    /// Transmitter holding register empty.
    pub const ETBEI: u8 = 1 << 1;
    /// Receiver line status.
    pub const ELSI: u8 = 1 << 2;
    /// Modem status.
    pub const EDSSI: u8 = 1 << 3;
    pub const WRITABLE: u8 = 0x0f;
}

/// Interrupt identification register values.
pub mod iir {
    /// Bit 0: no interrupt pending.
    pub const NO_INTERRUPT: u8 = 0x01;
    pub const MODEM_STATUS: u8 = 0x00;
    pub const THR_EMPTY: u8 = 0x02;
    pub const RECEIVED_DATA: u8 = 0x04;
    pub const LINE_STATUS: u8 = 0x06;
    /// FIFO mode only: data below the trigger level is waiting.
    pub const CHARACTER_TIMEOUT: u8 = 0x0c;
    /// Bits 7:6: the FIFOs are enabled (FCR bit 0).
    pub const FIFOS_ENABLED: u8 = 0xc0;
}

/// FIFO control register bits.
pub mod fcr {
    pub const ENABLE: u8 = 1 << 0;
    pub const CLEAR_RX: u8 = 1 << 1;
    pub const CLEAR_TX: u8 = 1 << 2;
    /// Bits 7:6: receive trigger level, 1, 4, 8 or 14 bytes.
    pub const TRIGGER_SHIFT: u8 = 6;
    pub const TRIGGER_LEVELS: [usize; 4] = [1, 4, 8, 14];
}

/// Line control register bits.
pub mod lcr {
    /// Divisor latch access.
    pub const DLAB: u8 = 1 << 7;
}

/// Modem control register bits (bits 7:5 are 0 on a 16550A).
pub mod mcr {
    pub const DTR: u8 = 1 << 0;
    pub const RTS: u8 = 1 << 1;
    pub const OUT1: u8 = 1 << 2;
    /// On PCs, enables the UART's IRQ line.
    pub const OUT2: u8 = 1 << 3;
    pub const LOOP: u8 = 1 << 4;
    pub const WRITABLE: u8 = 0x1f;
}

/// Line status register bits.
pub mod lsr {
    pub const DR: u8 = 1 << 0;
    pub const OE: u8 = 1 << 1;
    pub const THRE: u8 = 1 << 5;
    pub const TEMT: u8 = 1 << 6;
}

/// Modem status register bits.
pub mod msr {
    pub const DCTS: u8 = 1 << 0;
    pub const DDSR: u8 = 1 << 1;
    /// Trailing edge of RI (it went from 1 to 0).
    pub const TERI: u8 = 1 << 2;
    pub const DDCD: u8 = 1 << 3;
    pub const CTS: u8 = 1 << 4;
    pub const DSR: u8 = 1 << 5;
    pub const RI: u8 = 1 << 6;
    pub const DCD: u8 = 1 << 7;
    pub const DELTAS: u8 = 0x0f;
}

/// The modem inputs of a connected terminal: clear to send, data set
/// ready, carrier detect.
const TERMINAL_LINES: u8 = msr::CTS | msr::DSR | msr::DCD;

/// The receive FIFO (or, with FIFOs disabled, RBR: capacity 1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct RxFifo {
    bytes: [u8; FIFO_SIZE],
    head: usize,
    len: usize,
}

impl RxFifo {
    fn push(&mut self, b: u8) {
        if self.len < FIFO_SIZE {
            self.bytes[(self.head + self.len) % FIFO_SIZE] = b;
            self.len += 1;
        }
    }

    fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let b = self.bytes[self.head];
        self.head = (self.head + 1) % FIFO_SIZE;
        self.len -= 1;
        Some(b)
    }

    /// Replaces the newest byte (a 16450-mode overrun destroys RBR's byte).
    fn overwrite_last(&mut self, b: u8) {
        if self.len > 0 {
            self.bytes[(self.head + self.len - 1) % FIFO_SIZE] = b;
        }
    }

    fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

/// One 16550A.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uart {
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    fifo_enabled: bool,
    trigger: usize,
    rx: RxFifo,
    /// What RBR reads when the FIFO is empty: the last byte read.
    last_rx: u8,
    overrun: bool,
    thr_empty_pending: bool,
    /// MSR bits 7:4 as last seen, and the delta bits 3:0 since MSR was read.
    modem_lines: u8,
    modem_deltas: u8,
}

impl Default for Uart {
    fn default() -> Uart {
        Uart::new()
    }
}

impl Uart {
    /// The UART after a master reset (the divisor, undefined on the chip,
    /// is 12: 9600 baud).
    pub const fn new() -> Uart {
        Uart {
            ier: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            dll: 12,
            dlm: 0,
            fifo_enabled: false,
            trigger: 1,
            rx: RxFifo { bytes: [0; FIFO_SIZE], head: 0, len: 0 },
            last_rx: 0,
            overrun: false,
            thr_empty_pending: false,
            modem_lines: TERMINAL_LINES,
            modem_deltas: 0,
        }
    }

    /// The offset of `port` if it is one of COM1's.
    pub const fn com1_offset(port: u16) -> Option<u16> {
        match port.checked_sub(COM1_BASE) {
            Some(offset) if offset < PORTS => Some(offset),
            _ => None,
        }
    }

    const fn dlab(&self) -> bool {
        self.lcr & lcr::DLAB != 0
    }

    const fn looped(&self) -> bool {
        self.mcr & mcr::LOOP != 0
    }

    const fn rx_capacity(&self) -> usize {
        if self.fifo_enabled { FIFO_SIZE } else { 1 }
    }

    /// Whether the guest enabled the receive interrupt (IER's ERBFI): it
    /// reads its serial line (Linux's 8250 driver does once the tty is
    /// open; a guest that only writes never does).
    pub const fn receiving(&self) -> bool {
        self.ier & ier::ERBFI != 0
    }

    /// Bytes [`Uart::push_input`] would take now: the free room in the
    /// receive FIFO (RBR without FIFOs), 0 in loopback mode (the serial
    /// input is disconnected).
    pub const fn rx_space(&self) -> usize {
        if self.looped() { 0 } else { self.rx_capacity() - self.rx.len }
    }

    /// Host input for the guest: takes as many of `bytes` as there is room
    /// for ([`Uart::rx_space`]) and returns that count; the caller keeps
    /// the rest. Never causes an overrun.
    pub fn push_input(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.rx_space());
        bytes[..n].iter().for_each(|&b| self.rx.push(b));
        n
    }

    /// A byte reaching the receiver (from loopback): into the FIFO, or an
    /// overrun if it is full.
    fn receive(&mut self, b: u8) {
        if self.rx.len < self.rx_capacity() {
            self.rx.push(b);
        } else {
            self.overrun = true;
            if !self.fifo_enabled {
                self.rx.overwrite_last(b);
            }
        }
    }

    /// The modem inputs now: the terminal's, or the outputs in loopback.
    fn modem_inputs(&self) -> u8 {
        if !self.looped() {
            return TERMINAL_LINES;
        }
        let m = self.mcr;
        let bit = |out: u8, input: u8| if m & out != 0 { input } else { 0 };
        bit(mcr::RTS, msr::CTS) | bit(mcr::DTR, msr::DSR) | bit(mcr::OUT1, msr::RI) | bit(mcr::OUT2, msr::DCD)
    }

    /// Latches the delta bits for inputs that changed.
    fn update_modem_lines(&mut self) {
        let new = self.modem_inputs();
        let changed = new ^ self.modem_lines;
        for (line, delta) in [(msr::CTS, msr::DCTS), (msr::DSR, msr::DDSR), (msr::DCD, msr::DDCD)] {
            if changed & line != 0 {
                self.modem_deltas |= delta;
            }
        }
        if changed & msr::RI != 0 && new & msr::RI == 0 {
            self.modem_deltas |= msr::TERI;
        }
        self.modem_lines = new;
    }

    /// The highest-priority enabled interrupt (its IIR identification).
    fn pending(&self) -> Option<u8> {
        if self.ier & ier::ELSI != 0 && self.overrun {
            return Some(iir::LINE_STATUS);
        }
        if self.ier & ier::ERBFI != 0 && self.rx.len > 0 {
            let below_trigger = self.fifo_enabled && self.rx.len < self.trigger;
            return Some(if below_trigger { iir::CHARACTER_TIMEOUT } else { iir::RECEIVED_DATA });
        }
        if self.ier & ier::ETBEI != 0 && self.thr_empty_pending {
            return Some(iir::THR_EMPTY);
        }
        if self.ier & ier::EDSSI != 0 && self.modem_deltas != 0 {
            return Some(iir::MODEM_STATUS);
        }
        None
    }

    /// What a read of LSR answers now if that read has no side effect (no
    /// overrun for it to clear): a value ring 0 may answer for the VID
    /// until the state changes (`PARTITION_LATCH_PORT`).
    pub fn latchable_line_status(&self) -> Option<u8> {
        let data = if self.rx.len > 0 { lsr::DR } else { 0 };
        (!self.overrun).then_some(lsr::THRE | lsr::TEMT | data)
    }

    /// Whether a byte write to THR now has no effect the guest can see but
    /// the byte going out: DLAB clear, the THR-empty interrupt off (its
    /// pending flag is read only with it on, and an IER write that turns
    /// it on sets it anyway), no loopback, and LSR latchable (THRE and
    /// TEMT read set whatever is written). Ring 0 may then keep such
    /// writes for the VID to take later (`PARTITION_POST_PORT`), which
    /// sends each drained byte to the output sink.
    pub fn postable_thr(&self) -> bool {
        self.thr_write_only_sends() && self.latchable_line_status().is_some()
    }

    /// [`Uart::postable_thr`] but for LSR (which the caller latched).
    pub fn thr_write_only_sends(&self) -> bool {
        self.lcr & lcr::DLAB == 0 && self.ier & ier::ETBEI == 0 && self.mcr & mcr::LOOP == 0
    }

    /// The UART's IRQ line as a PC wires it: an enabled interrupt is
    /// pending and MCR.OUT2 is set (and not forced off by loopback).
    pub fn irq_level(&self) -> bool {
        self.pending().is_some() && self.mcr & mcr::OUT2 != 0 && !self.looped()
    }

    /// A byte read of register `offset` (0–7; other offsets read 0xff).
    /// Reads have the chip's side effects: RBR pops the FIFO, IIR clears a
    /// reported THR-empty interrupt, LSR clears OE, MSR clears the deltas.
    pub fn port_read(&mut self, offset: u16) -> u8 {
        match offset {
            reg::RBR_THR_DLL if self.dlab() => self.dll,
            reg::RBR_THR_DLL => {
                if let Some(b) = self.rx.pop() {
                    self.last_rx = b;
                }
                self.last_rx
            }
            reg::IER_DLM if self.dlab() => self.dlm,
            reg::IER_DLM => self.ier,
            reg::IIR_FCR => {
                let id = self.pending();
                if id == Some(iir::THR_EMPTY) {
                    self.thr_empty_pending = false;
                }
                let fifos = if self.fifo_enabled { iir::FIFOS_ENABLED } else { 0 };
                fifos | id.unwrap_or(iir::NO_INTERRUPT)
            }
            reg::LCR => self.lcr,
            reg::MCR => self.mcr,
            reg::LSR => {
                let mut value = lsr::THRE | lsr::TEMT;
                if self.rx.len > 0 {
                    value |= lsr::DR;
                }
                if core::mem::take(&mut self.overrun) {
                    value |= lsr::OE;
                }
                value
            }
            reg::MSR => self.modem_lines | core::mem::take(&mut self.modem_deltas),
            reg::SCR => self.scr,
            _ => 0xff,
        }
    }

    /// A byte write of `value` to register `offset` (0–7; others are
    /// ignored). A transmitted byte goes to `sink` (not in loopback mode).
    pub fn port_write(&mut self, offset: u16, value: u8, sink: &mut impl FnMut(u8)) {
        match offset {
            reg::RBR_THR_DLL if self.dlab() => self.dll = value,
            reg::RBR_THR_DLL => {
                if self.looped() {
                    self.receive(value);
                } else {
                    sink(value);
                }
                // Sent at once: THR is empty again.
                self.thr_empty_pending = true;
            }
            reg::IER_DLM if self.dlab() => self.dlm = value,
            reg::IER_DLM => {
                let value = value & ier::WRITABLE;
                if value & ier::ETBEI == 0 {
                    self.thr_empty_pending = false;
                } else if self.ier & ier::ETBEI == 0 {
                    self.thr_empty_pending = true;
                }
                self.ier = value;
            }
            reg::IIR_FCR => self.write_fcr(value),
            reg::LCR => self.lcr = value,
            reg::MCR => {
                self.mcr = value & mcr::WRITABLE;
                self.update_modem_lines();
            }
            reg::SCR => self.scr = value,
            // LSR and MSR writes are for factory testing only.
            _ => {}
        }
    }

    fn write_fcr(&mut self, value: u8) {
        let enable = value & fcr::ENABLE != 0;
        if enable != self.fifo_enabled {
            // Changing modes empties the FIFOs.
            self.rx.clear();
            self.fifo_enabled = enable;
        }
        // The other bits are programmed only with FCR.0 set.
        if !enable {
            return;
        }
        if value & fcr::CLEAR_RX != 0 {
            self.rx.clear();
        }
        self.trigger = fcr::TRIGGER_LEVELS[usize::from(value >> fcr::TRIGGER_SHIFT)];
    }

    /// A read of `size` bytes (1, 2 or 4) from `offset`: byte reads of
    /// consecutive registers, little-endian, as the ISA bus splits it.
    pub fn read_sized(&mut self, offset: u16, size: u8) -> u32 {
        (0..u16::from(size.clamp(1, 4)))
            .map(|i| u32::from(self.port_read(offset.saturating_add(i))) << (8 * i))
            .fold(0, |acc, b| acc | b)
    }

    /// A write of the low `size` bytes (1, 2 or 4) of `value` to `offset`,
    /// as byte writes of consecutive registers.
    pub fn write_sized(&mut self, offset: u16, size: u8, value: u64, sink: &mut impl FnMut(u8)) {
        for (i, b) in value.to_le_bytes().into_iter().take(usize::from(size.clamp(1, 4))).enumerate() {
            self.port_write(offset.saturating_add(i as u16), b, sink);
        }
    }
}
