//! The 8254 PIT (ports 0x40–0x43, 1.193182 MHz) and port 0x61 (channel 2's
//! gate, speaker enable, refresh toggle and channel 2's output).
//!
//! Counts are derived from `now` (TSC ticks) and the time a count was
//! loaded. Modes 0, 2 and 3 are modelled; 1 and 5 count like 0 and 4 from
//! the load (no gate trigger), 4 like 0 with a one-tick pulse; BCD is
//! recorded but counting is binary. A new count takes effect at once, also
//! in modes 2 and 3. Channel 0's output rising edges are IRQ 0
//! ([`Pit::poll`]).

use super::{scale, scale_up};

#[cfg(test)]
mod tests;

/// The PIT's input clock.
pub const PIT_HZ: u64 = 1_193_182;
pub const CHANNEL0: u16 = 0x40;
pub const CHANNEL2: u16 = 0x42;
pub const MODE_PORT: u16 = 0x43;
/// System control port B.
pub const PORT_61: u16 = 0x61;
/// Port 0x61 bits: gate 2 and speaker enable (and two NMI controls) are
/// written; refresh toggle and OUT2 are read.
pub const P61_GATE2: u8 = 1;
pub const P61_WRITABLE: u8 = 0x0f;
pub const P61_REFRESH: u8 = 1 << 4;
pub const P61_OUT2: u8 = 1 << 5;

/// Access modes (control word bits 5:4).
const ACCESS_LO: u8 = 1;
const ACCESS_HI: u8 = 2;
const ACCESS_LOHI: u8 = 3;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Channel {
    mode: u8,
    access: u8,
    bcd: bool,
    /// The count N (1..=65536).
    reload: u32,
    loaded: bool,
    gate: bool,
    write_lo: Option<u8>,
    read_hi_next: bool,
    latch: Option<u16>,
    status: Option<u8>,
    null_count: bool,
    /// Ticks counted before `run_start`, and when counting (re)started.
    base_ticks: u64,
    run_start: Option<u64>,
    /// Output rising edges already reported.
    edges: u64,
}

impl Channel {
    fn new(gate: bool) -> Channel {
        Channel { access: ACCESS_LOHI, reload: 0x1_0000, gate, ..Channel::default() }
    }

    fn periodic(&self) -> bool {
        matches!(self.mode, 2 | 3)
    }

    fn elapsed(&self, now: u64, tsc_hz: u64) -> u64 {
        self.base_ticks + self.run_start.map_or(0, |s| scale(now.saturating_sub(s), PIT_HZ, tsc_hz))
    }

    /// The counting element's value at `now`.
    pub fn count(&self, now: u64, tsc_hz: u64) -> u16 {
        if !self.loaded {
            return self.reload as u16;
        }
        let (n, t) = (u64::from(self.reload), self.elapsed(now, tsc_hz));
        let value = match self.mode {
            2 => n - t % n,
            3 => {
                let high = n.div_ceil(2);
                let phase = t % n;
                let k = if phase < high { phase } else { phase - high };
                (n & !1).saturating_sub(2 * k)
            }
            _ => n.wrapping_sub(t),
        };
        value as u16
    }

    /// OUT at `now`.
    pub fn output(&self, now: u64, tsc_hz: u64) -> bool {
        if !self.loaded {
            return self.mode != 0;
        }
        if self.periodic() && !self.gate {
            return true;
        }
        let (n, t) = (u64::from(self.reload), self.elapsed(now, tsc_hz));
        match self.mode {
            0 | 1 => t >= n,
            2 => t % n != n - 1,
            3 => t % n < n.div_ceil(2),
            _ => t != n,
        }
    }

    fn status_byte(&self, now: u64, tsc_hz: u64) -> u8 {
        u8::from(self.output(now, tsc_hz)) << 7
            | u8::from(self.null_count) << 6
            | self.access << 4
            | self.mode << 1
            | u8::from(self.bcd)
    }

    fn control(&mut self, value: u8) {
        let mode = (value >> 1) & 7;
        *self = Channel {
            mode: if mode >= 6 { mode - 4 } else { mode },
            access: (value >> 4) & 3,
            bcd: value & 1 != 0,
            null_count: true,
            gate: self.gate,
            reload: self.reload,
            ..Channel::default()
        };
    }

    fn load(&mut self, count: u16, now: u64) {
        self.reload = match (count, self.bcd) {
            (0, false) => 0x1_0000,
            (0, true) => 10_000,
            (n, _) => u32::from(n),
        };
        self.loaded = true;
        self.null_count = false;
        self.base_ticks = 0;
        self.edges = 0;
        self.run_start = self.gate.then_some(now);
    }

    fn write(&mut self, value: u8, now: u64) {
        match self.access {
            ACCESS_LO => self.load(u16::from(value), now),
            ACCESS_HI => self.load(u16::from(value) << 8, now),
            _ => match self.write_lo.take() {
                Some(lo) => self.load(u16::from_le_bytes([lo, value]), now),
                None => {
                    self.write_lo = Some(value);
                    if self.mode == 0 {
                        self.loaded = false;
                    }
                }
            },
        }
    }

    fn read(&mut self, now: u64, tsc_hz: u64) -> u8 {
        if let Some(status) = self.status.take() {
            return status;
        }
        let value = self.latch.unwrap_or_else(|| self.count(now, tsc_hz));
        let [lo, hi] = value.to_le_bytes();
        match self.access {
            ACCESS_LO => {
                self.latch = None;
                lo
            }
            ACCESS_HI => {
                self.latch = None;
                hi
            }
            _ if self.read_hi_next => {
                self.read_hi_next = false;
                self.latch = None;
                hi
            }
            _ => {
                self.read_hi_next = true;
                lo
            }
        }
    }

    fn set_gate(&mut self, gate: bool, now: u64, tsc_hz: u64) {
        if gate == self.gate {
            return;
        }
        self.gate = gate;
        if !self.loaded {
            return;
        }
        if self.periodic() {
            // A rising gate restarts the count; a low one stops it.
            self.base_ticks = 0;
            self.edges = 0;
            self.run_start = gate.then_some(now);
        } else if gate {
            self.run_start = Some(now);
        } else {
            self.base_ticks = self.elapsed(now, tsc_hz);
            self.run_start = None;
        }
    }

    /// Output rising edges by `t` ticks: one per period, or one at the
    /// terminal count.
    fn edges_by(&self, t: u64) -> u64 {
        let n = u64::from(self.reload);
        if self.periodic() { t / n } else { u64::from(t >= n) }
    }

    fn next_edge(&self, tsc_hz: u64) -> Option<u64> {
        let start = self.run_start.filter(|_| self.loaded)?;
        let k = self.edges + 1;
        if !self.periodic() && k > 1 {
            return None;
        }
        let ticks = k.saturating_mul(u64::from(self.reload)).saturating_sub(self.base_ticks);
        Some(start.saturating_add(scale_up(ticks, tsc_hz, PIT_HZ)))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pit {
    tsc_hz: u64,
    pub channels: [Channel; 3],
    port61: u8,
}

impl Pit {
    /// Channels 0 and 1 have their gates high; channel 2's is port 0x61 bit 0.
    pub fn new(tsc_hz: u64) -> Pit {
        Pit { tsc_hz, channels: [Channel::new(true), Channel::new(true), Channel::new(false)], port61: 0 }
    }

    pub const fn claims(port: u16) -> bool {
        matches!(port, CHANNEL0..=MODE_PORT | PORT_61)
    }

    pub fn port_read(&mut self, port: u16, now: u64) -> u8 {
        let tsc_hz = self.tsc_hz;
        match port {
            CHANNEL0..=CHANNEL2 => self.channels[usize::from(port - CHANNEL0)].read(now, tsc_hz),
            PORT_61 => {
                // DRAM refresh toggles every 15.085 us (18 PIT ticks).
                let refresh = (scale(now, PIT_HZ, tsc_hz) / 18) & 1 != 0;
                let out2 = self.channels[2].output(now, tsc_hz);
                self.port61 | if refresh { P61_REFRESH } else { 0 } | if out2 { P61_OUT2 } else { 0 }
            }
            _ => 0xff,
        }
    }

    pub fn port_write(&mut self, port: u16, value: u8, now: u64) {
        let tsc_hz = self.tsc_hz;
        match port {
            CHANNEL0..=CHANNEL2 => self.channels[usize::from(port - CHANNEL0)].write(value, now),
            MODE_PORT => self.control(value, now),
            PORT_61 => {
                self.port61 = value & P61_WRITABLE;
                self.channels[2].set_gate(value & P61_GATE2 != 0, now, tsc_hz);
            }
            _ => {}
        }
    }

    fn control(&mut self, value: u8, now: u64) {
        let tsc_hz = self.tsc_hz;
        let select = usize::from(value >> 6);
        if select == 3 {
            // Read-back: bit 5 clear latches counts, bit 4 clear statuses.
            for (i, ch) in self.channels.iter_mut().enumerate() {
                if value & (2 << i) == 0 {
                    continue;
                }
                if value & 0x20 == 0 && ch.latch.is_none() {
                    ch.latch = Some(ch.count(now, tsc_hz));
                    ch.read_hi_next = false;
                }
                if value & 0x10 == 0 && ch.status.is_none() {
                    ch.status = Some(ch.status_byte(now, tsc_hz));
                }
            }
            return;
        }
        let ch = &mut self.channels[select];
        if (value >> 4) & 3 == 0 {
            // Counter latch command.
            if ch.latch.is_none() {
                ch.latch = Some(ch.count(now, tsc_hz));
                ch.read_hi_next = false;
            }
        } else {
            ch.control(value);
        }
    }

    /// When channel 0's output next rises (IRQ 0), in TSC ticks.
    pub fn next_deadline(&self) -> Option<u64> {
        self.channels[0].next_edge(self.tsc_hz)
    }

    /// True if channel 0's output rose since the last poll (once however
    /// many times it did).
    pub fn poll(&mut self, now: u64) -> bool {
        let ch = &mut self.channels[0];
        if !ch.loaded || ch.run_start.is_none() {
            return false;
        }
        let edges = ch.edges_by(ch.elapsed(now, self.tsc_hz));
        let fired = edges > ch.edges;
        ch.edges = edges;
        fired
    }
}
