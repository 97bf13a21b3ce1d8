//! The MC146818 real-time clock and its CMOS RAM (ports 0x70 index, 0x71
//! data), as the PC/AT has it: the time of day and calendar (registers
//! 0x00–0x09, plus the century byte at [`CENTURY`], which the FADT's
//! CENTURY field names), the alarm, the periodic, alarm and update-ended
//! interrupts on IRQ 8, registers A–D, and battery-backed RAM 0x0E–0x7F.
//! References are to the MC146818A datasheet (Motorola, "MC146818A
//! real-time clock plus RAM", sections "Address map", "Time, calendar and
//! alarm locations", "Update cycle", "Interrupts", "Register A".."D").
//!
//! Time is derived from `now` (TSC ticks) like the PIT's counts: the clock
//! holds the time of the current second and the TSC at which that second
//! began; an access or [`Rtc::poll`] first catches up to `now`. The divider
//! chain is phase-locked to the seconds (every periodic rate divides a
//! second), so periodic flags fall at whole multiples of the period from
//! the second's start.
//!
//! Port 0x70's bit 7 is the NMI mask of the PC (not the RTC's): it is kept
//! and readable through [`Rtc::nmi_disabled`]; the index is bits 6:0.

#[cfg(test)]
mod tests;

pub use x86defs::cmos::{
    A_UIP, B_24H, B_DM, CENTURY, DATA_PORT, INDEX_PORT, calendar, from_bcd, read_clock as read_host_clock, reg, to_bcd,
};

use calendar::DateTime;

/// The RTC's interrupt line (ISA IRQ 8).
pub const RTC_IRQ: u8 = 8;
/// Bytes of CMOS RAM the index reaches (7 bits).
pub const CMOS_BYTES: usize = 128;
/// The first byte of general-purpose (battery-backed) RAM.
pub const RAM_START: u8 = 0x0e;

/// Register A: DV2–DV0, RS3–RS0 (UIP: [`A_UIP`]).
const A_DV: u8 = 0x70;
const A_RS: u8 = 0x0f;
/// DV = 010: a 32.768 kHz time base, running (the PC's setting).
pub const A_DV_32768: u8 = 0x20;
/// Register B.
pub const B_SET: u8 = 0x80;
pub const B_PIE: u8 = 0x40;
pub const B_AIE: u8 = 0x20;
pub const B_UIE: u8 = 0x10;
pub const B_SQWE: u8 = 0x08;
pub const B_DSE: u8 = 0x01;
/// Register C: IRQF, PF, AF, UF (read-only, cleared by a read).
pub const C_IRQF: u8 = 0x80;
pub const C_PF: u8 = 0x40;
pub const C_AF: u8 = 0x20;
pub const C_UF: u8 = 0x10;
/// Register D: valid RAM and time (the battery is good).
pub const D_VRT: u8 = 0x80;
/// An alarm byte with its two top bits set matches every value ("don't
/// care", datasheet "Time, calendar and alarm locations").
pub const DONT_CARE: u8 = 0xc0;
use x86defs::cmos::PM;

/// The update-in-progress window before the new time shows: t_BUC, 244
/// µs, then the update cycle itself, t_UC, 1984 µs with the 32.768 kHz
/// time base (datasheet "Update cycle": UIP rises 244 µs before the update
/// cycle begins and falls when it ends; the time bytes hold the old time
/// until then here).
pub const UIP_MICROS: u64 = 244 + 1984;
/// Lost periodic interrupts kept for later: a quarter of a second's worth.
pub const LOST_KEPT_DIVISOR: u64 = 4;
/// The divider leaves reset: the first update comes half a second later
/// (datasheet "Register A", DV2–DV0).
const FIRST_UPDATE_MILLIS: u64 = 500;

/// The periodic interrupt's rate for register A's RS3–RS0 with the 32.768
/// kHz time base (datasheet table "Periodic interrupt rate"), in Hz;
/// `None` for RS = 0 (off).
pub const fn periodic_hz(rs: u8) -> Option<u64> {
    match rs & A_RS {
        0 => None,
        1 => Some(256),
        2 => Some(128),
        rs => Some(32768 >> (rs - 1)),
    }
}

/// The MC146818 and its CMOS RAM.
#[derive(Clone, Debug)]
pub struct Rtc {
    tsc_hz: u64,
    /// Port 0x70: bits 6:0 the index, bit 7 the NMI mask.
    index: u8,
    nmi_disabled: bool,
    /// Every byte the index reaches; the time, alarm and status bytes are
    /// kept apart ([`Rtc::time`], registers A–C) and these are unused there.
    cmos: [u8; CMOS_BYTES],
    /// The time of the current second (binary, 24-hour).
    time: DateTime,
    /// The TSC at which the current second began.
    second_start: u64,
    /// The divider was held in reset: time stopped (no `second_start`).
    halted: bool,
    reg_a: u8,
    reg_b: u8,
    reg_c: u8,
    /// A TSC at which a second began: the divider chain's phase, from
    /// which periodic ticks are counted.
    anchor: u64,
    /// Index of the last periodic tick counted since `anchor`.
    periodic_seen: u64,
    /// Periodic interrupts lost while PF was still set (the guest had not
    /// read register C yet): each is raised again as soon as register C is
    /// read, as QEMU's `driftfix=slew` does, so a guest that counts RTC
    /// interrupts keeps time when the host delays its VP. At most
    /// [`LOST_KEPT_DIVISOR`]th of a second's worth is kept: a backlog is
    /// delivered back to back, which a guest's other work waits for.
    lost: u64,
    irq: bool,
    rises: u64,
    /// Before this TSC [`Rtc::catch_up`] finds nothing to do (no update,
    /// no periodic tick), as it left the registers; 0 after any change it
    /// did not make.
    idle_until: u64,
}

impl Rtc {
    /// An RTC showing `unix` (seconds since 1970, UTC) at TSC `now`, with
    /// the PC BIOS's settings: 32.768 kHz, 1024 Hz rate selected (RS = 6),
    /// 24-hour BCD, no interrupt enabled.
    pub fn new(unix: u64, now: u64, tsc_hz: u64) -> Rtc {
        Rtc {
            tsc_hz: tsc_hz.max(1),
            index: 0,
            nmi_disabled: false,
            cmos: [0; CMOS_BYTES],
            time: DateTime::from_unix(unix),
            second_start: now,
            anchor: now,
            halted: false,
            reg_a: A_DV_32768 | 6,
            reg_b: B_24H,
            reg_c: 0,
            periodic_seen: 0,
            lost: 0,
            irq: false,
            rises: 0,
            idle_until: 0,
        }
    }

    /// The RTC after a partition reset: the time keeps running and the RAM
    /// keeps its bytes (the battery); the NMI mask and the index are
    /// cleared, the interrupt enables and flags cleared (RESET pin:
    /// datasheet "RESET": PIE, AIE, UIE, SQWE and IRQF, PF, AF, UF clear).
    pub fn reset(&mut self, now: u64) {
        self.catch_up(now);
        self.index = 0;
        self.nmi_disabled = false;
        self.reg_b &= !(B_PIE | B_AIE | B_UIE | B_SQWE);
        self.reg_c = 0;
        self.irq = false;
        self.idle_until = 0;
    }

    /// Whether the guest set port 0x70's bit 7: NMIs are masked at the
    /// platform (for NMI delivery to honour).
    pub const fn nmi_disabled(&self) -> bool {
        self.nmi_disabled
    }

    /// The level of IRQ 8: register C's IRQF.
    pub const fn irq_level(&self) -> bool {
        self.irq
    }

    /// The time the RTC shows, in seconds since 1970 (UTC).
    pub fn unix_time(&mut self, now: u64) -> u64 {
        self.catch_up(now);
        self.time.to_unix()
    }

    pub const fn claims(port: u16) -> bool {
        port == INDEX_PORT || port == DATA_PORT
    }

    /// A byte read at port 0x70 (the index as written, NMI bit included, as
    /// most chipsets read it back) or 0x71.
    pub fn port_read(&mut self, port: u16, now: u64) -> u8 {
        match port {
            INDEX_PORT => self.index | if self.nmi_disabled { 0x80 } else { 0 },
            _ => self.read(self.index, now),
        }
    }

    /// A byte written at port 0x70 or 0x71.
    pub fn port_write(&mut self, port: u16, value: u8, now: u64) {
        match port {
            INDEX_PORT => {
                self.index = value & 0x7f;
                self.nmi_disabled = value & 0x80 != 0;
            }
            _ => self.write(self.index, value, now),
        }
    }

    /// CMOS byte `index` (0..128).
    pub fn read(&mut self, index: u8, now: u64) -> u8 {
        self.catch_up(now);
        let index = index & 0x7f;
        match index {
            reg::SECONDS => self.encode(self.time.second),
            reg::MINUTES => self.encode(self.time.minute),
            reg::HOURS => self.encode_hour(self.time.hour),
            reg::DAY_OF_WEEK => self.encode(self.time.weekday),
            reg::DAY_OF_MONTH => self.encode(self.time.day),
            reg::MONTH => self.encode(self.time.month),
            reg::YEAR => self.encode((self.time.year % 100) as u8),
            CENTURY => self.encode((self.time.year / 100) as u8),
            reg::A => self.reg_a | if self.in_update(now) { A_UIP } else { 0 },
            reg::B => self.reg_b,
            reg::C => {
                // Read-to-clear: every flag and IRQF, which deasserts IRQ 8
                // (datasheet "Register C").
                let c = self.reg_c;
                self.reg_c = 0;
                self.irq = false;
                self.idle_until = 0;
                if self.lost > 0 && self.reg_b & B_PIE != 0 {
                    self.lost -= 1;
                    self.reg_c = C_PF;
                    self.update_irq();
                }
                c
            }
            reg::D => D_VRT,
            _ => self.cmos[usize::from(index)],
        }
    }

    /// A write of CMOS byte `index`.
    pub fn write(&mut self, index: u8, value: u8, now: u64) {
        self.catch_up(now);
        let index = index & 0x7f;
        match index {
            reg::SECONDS => self.time.second = self.decode(value).min(59),
            reg::MINUTES => self.time.minute = self.decode(value).min(59),
            reg::HOURS => self.time.hour = self.decode_hour(value),
            reg::DAY_OF_WEEK => self.time.weekday = self.decode(value).clamp(1, 7),
            reg::DAY_OF_MONTH => self.time.day = self.decode(value).clamp(1, 31),
            reg::MONTH => self.time.month = self.decode(value).clamp(1, 12),
            reg::YEAR => self.time.year = self.time.year / 100 * 100 + u16::from(self.decode(value).min(99)),
            CENTURY => self.time.year = u16::from(self.decode(value).min(99)) * 100 + self.time.year % 100,
            reg::A => self.write_a(value, now),
            reg::B => {
                let mut b = value;
                if b & B_PIE == 0 {
                    self.lost = 0;
                }
                // SET stops updates and clears UIE (datasheet "Register B").
                if b & B_SET != 0 {
                    b &= !B_UIE;
                }
                self.reg_b = b;
            }
            // C and D are read-only.
            reg::C | reg::D => {}
            _ => self.cmos[usize::from(index)] = value,
        }
        self.update_irq();
        self.idle_until = 0;
    }

    /// Register A: UIP is read-only; a divider change into or out of reset
    /// stops or restarts the time.
    fn write_a(&mut self, value: u8, now: u64) {
        let running = |a: u8| a & A_DV <= A_DV_32768;
        let was = running(self.reg_a);
        let rate_changed = (self.reg_a ^ value) & A_RS != 0;
        self.reg_a = value & !A_UIP;
        if rate_changed {
            // Counting starts again at the new rate, in phase with the seconds.
            self.lost = 0;
            self.anchor = self.second_start;
            self.periodic_seen = self.periodic_index(now);
        }
        match (was, running(self.reg_a)) {
            (true, false) => self.halted = true,
            (false, true) => {
                // The first update comes half a second after the reset ends.
                self.halted = false;
                let half = self.tsc_hz * FIRST_UPDATE_MILLIS / 1000;
                self.second_start = now.saturating_sub(half);
                self.anchor = self.second_start;
                self.periodic_seen = self.periodic_index(now);
                self.lost = 0;
            }
            _ => {}
        }
    }

    /// The TSC at which [`Rtc::poll`] next has an interrupt to raise: the
    /// next periodic tick with PIE, the next update with UIE or AIE; none
    /// while IRQ 8 is already asserted (the flags gather on their own).
    pub fn next_deadline(&self) -> Option<u64> {
        if self.halted || self.irq {
            return None;
        }
        let mut next: Option<u64> = None;
        if self.reg_b & (B_UIE | B_AIE) != 0 && self.reg_b & B_SET == 0 {
            next = Some(self.second_start.saturating_add(self.tsc_hz));
        }
        if self.reg_b & B_PIE != 0
            && let Some(hz) = periodic_hz(self.reg_a)
        {
            let tick = self.periodic_seen + 1;
            let at = self.anchor.saturating_add(crate::irq::scale_up(tick, self.tsc_hz, hz));
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        next
    }

    /// Catches up to `now`; true if IRQ 8 rose.
    pub fn poll(&mut self, now: u64) -> bool {
        let before = self.irq;
        self.catch_up(now);
        !before && self.irq
    }

    /// Whether `now` is in the [`UIP_MICROS`] before an update (UIP).
    fn in_update(&self, now: u64) -> bool {
        if self.halted || self.reg_b & B_SET != 0 {
            return false;
        }
        let window = crate::irq::scale_up(UIP_MICROS, self.tsc_hz, 1_000_000);
        let next = self.second_start.saturating_add(self.tsc_hz);
        now < next && next - now <= window
    }

    /// Periodic ticks from `anchor` to `now`.
    fn periodic_index(&self, now: u64) -> u64 {
        periodic_hz(self.reg_a).map_or(0, |hz| crate::irq::scale(now.saturating_sub(self.anchor), hz, self.tsc_hz))
    }

    /// Runs the clock to `now`: each second an update (UF; AF when the
    /// alarm matches), and PF at each periodic tick.
    fn catch_up(&mut self, now: u64) {
        if self.halted || now < self.idle_until {
            return;
        }
        if now >= self.second_start + self.tsc_hz {
            let seconds = (now - self.second_start) / self.tsc_hz;
            self.second_start += seconds * self.tsc_hz;
            if self.reg_b & B_SET == 0 {
                self.advance(seconds);
            }
        }
        let tick = self.periodic_index(now);
        if tick > self.periodic_seen {
            // Ticks beyond the first, and the first if PF is still set,
            // raise no interrupt of their own.
            let merged = tick - self.periodic_seen - u64::from(self.reg_c & C_PF == 0);
            self.periodic_seen = tick;
            self.reg_c |= C_PF;
            if self.reg_b & B_PIE != 0 {
                let cap = periodic_hz(self.reg_a).unwrap_or(0) / LOST_KEPT_DIVISOR;
                self.lost = (self.lost + merged).min(cap);
            }
        }
        self.update_irq();
        // The next second's update, or the next periodic tick (the first
        // TSC at which `periodic_index` passes `periodic_seen`).
        let tick = periodic_hz(self.reg_a).map_or(u64::MAX, |hz| {
            self.anchor.saturating_add(crate::irq::scale_up(self.periodic_seen.saturating_add(1), self.tsc_hz, hz))
        });
        self.idle_until = self.second_start.saturating_add(self.tsc_hz).min(tick);
    }

    /// `seconds` updates: the alarm is compared at each (a long gap is
    /// jumped, compared once at the end).
    fn advance(&mut self, seconds: u64) {
        /// Updates compared one by one; beyond, the gap is jumped.
        const STEPPED: u64 = 86_400;
        let (jump, stepped) = if seconds > STEPPED { (seconds - 1, 1) } else { (0, seconds) };
        if jump > 0 {
            self.time = DateTime::from_unix(self.time.to_unix().saturating_add(jump));
        }
        for _ in 0..stepped {
            self.time.tick();
            self.reg_c |= C_UF;
            if self.alarm_matches() {
                self.reg_c |= C_AF;
            }
        }
    }

    /// The alarm bytes against the time as the registers show it.
    fn alarm_matches(&self) -> bool {
        let hit = |alarm: u8, now: u8| alarm & DONT_CARE == DONT_CARE || alarm == now;
        hit(self.cmos[usize::from(reg::SECONDS_ALARM)], self.encode(self.time.second))
            && hit(self.cmos[usize::from(reg::MINUTES_ALARM)], self.encode(self.time.minute))
            && hit(self.cmos[usize::from(reg::HOURS_ALARM)], self.encode_hour(self.time.hour))
    }

    /// IRQF = (PF and PIE) or (AF and AIE) or (UF and UIE) (datasheet
    /// "Register C"), and IRQ 8 with it: an enable cleared lowers it, an
    /// enable set on a flag already set raises it at once.
    fn update_irq(&mut self) {
        let enabled = self.reg_c & self.reg_b & (C_PF | C_AF | C_UF) != 0;
        if enabled {
            self.reg_c |= C_IRQF;
        } else {
            self.reg_c &= !C_IRQF;
        }
        if enabled && !self.irq {
            self.rises = self.rises.wrapping_add(1);
        }
        self.irq = enabled;
    }

    /// How many times IRQ 8 rose so far (wrapping): a read of register C
    /// that lowers it and raises it again at once (a lost periodic
    /// interrupt) is a new edge for the PIC though the level did not change.
    pub const fn rises(&self) -> u64 {
        self.rises
    }

    fn binary(&self) -> bool {
        self.reg_b & B_DM != 0
    }

    fn encode(&self, v: u8) -> u8 {
        if self.binary() { v } else { to_bcd(v) }
    }

    fn decode(&self, v: u8) -> u8 {
        if self.binary() { v } else { from_bcd(v) }
    }

    /// Hours 0–23 in the register's form: 24-hour, or 1–12 with PM in bit 7.
    fn encode_hour(&self, hour: u8) -> u8 {
        if self.reg_b & B_24H != 0 {
            return self.encode(hour);
        }
        let pm = if hour >= 12 { PM } else { 0 };
        let twelve = match hour % 12 {
            0 => 12,
            h => h,
        };
        self.encode(twelve) | pm
    }

    fn decode_hour(&self, value: u8) -> u8 {
        if self.reg_b & B_24H != 0 {
            return self.decode(value).min(23);
        }
        let twelve = self.decode(value & !PM).clamp(1, 12) % 12;
        twelve + if value & PM != 0 { 12 } else { 0 }
    }
}
