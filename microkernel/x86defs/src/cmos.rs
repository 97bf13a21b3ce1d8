//! The PC's MC146818 real-time clock as software reads it (MC146818A
//! datasheet, Motorola, "Address map", "Register A".."B", "Time, calendar
//! and alarm locations"): the index and data ports, the register map, the
//! bits a reader needs, and [`read_clock`], which ring 0 uses once at boot
//! for the host's time of day. The VID's emulated RTC uses the same map.

pub mod calendar;

use calendar::DateTime;

/// The index port (bit 7: the PC's NMI disable) and the data port.
pub const INDEX_PORT: u16 = 0x70;
pub const DATA_PORT: u16 = 0x71;
/// The century byte (PC/AT convention), BCD or binary as register B says.
pub const CENTURY: u8 = 0x32;

/// Register indices (datasheet "Address map").
pub mod reg {
    pub const SECONDS: u8 = 0x00;
    pub const SECONDS_ALARM: u8 = 0x01;
    pub const MINUTES: u8 = 0x02;
    pub const MINUTES_ALARM: u8 = 0x03;
    pub const HOURS: u8 = 0x04;
    pub const HOURS_ALARM: u8 = 0x05;
    pub const DAY_OF_WEEK: u8 = 0x06;
    pub const DAY_OF_MONTH: u8 = 0x07;
    pub const MONTH: u8 = 0x08;
    pub const YEAR: u8 = 0x09;
    pub const A: u8 = 0x0a;
    pub const B: u8 = 0x0b;
    pub const C: u8 = 0x0c;
    pub const D: u8 = 0x0d;
}

/// Register A: update in progress (read-only).
pub const A_UIP: u8 = 0x80;
/// Register B: data mode binary (set) or BCD (clear).
pub const B_DM: u8 = 0x04;
/// Register B: hours 24 (set) or 12 with bit 7 the PM flag (clear).
pub const B_24H: u8 = 0x02;
/// The 12-hour mode's PM flag in the hours bytes.
pub const PM: u8 = 0x80;

pub const fn to_bcd(v: u8) -> u8 {
    ((v / 10) << 4) | (v % 10)
}

/// A BCD byte's value (digits above 9 count as they are, as the chip's
/// adders would not: no panic, a wrong but bounded value).
pub const fn from_bcd(v: u8) -> u8 {
    (v >> 4) * 10 + (v & 0x0f)
}

/// Reads a running MC146818 through `read` of a CMOS index: waits for UIP
/// to clear (a bounded number of reads), then reads the time twice until
/// two reads agree. Seconds since 1970 (UTC, as PC clocks under Linux
/// hypervisors keep it), or `None` if the clock never settles or shows no
/// valid date.
pub fn read_clock(mut read: impl FnMut(u8) -> u8) -> Option<u64> {
    /// Reads of register A waiting for UIP to clear (an update is 2 ms at most).
    const UIP_READS: usize = 100_000;
    let mut snapshot = || {
        (0..UIP_READS).find(|_| read(reg::A) & A_UIP == 0)?;
        let b = read(reg::B);
        let bytes =
            [reg::SECONDS, reg::MINUTES, reg::HOURS, reg::DAY_OF_MONTH, reg::MONTH, reg::YEAR, CENTURY].map(&mut read);
        Some((b, bytes))
    };
    let (b, bytes) = (0..4).find_map(|_| {
        let first = snapshot()?;
        (snapshot()? == first).then_some(first)
    })?;
    let value = |v: u8| if b & B_DM != 0 { v } else { from_bcd(v) };
    let [second, minute, hour, day, month, year, century] = bytes;
    let hour = if b & B_24H != 0 { value(hour) } else { value(hour & !PM) % 12 + if hour & PM != 0 { 12 } else { 0 } };
    // A century byte that is not kept (0, or nonsense) means the 2000s.
    let century = match value(century) {
        19..=21 => u16::from(value(century)),
        _ => 20,
    };
    let time = DateTime {
        year: century * 100 + u16::from(value(year)),
        month: value(month),
        day: value(day),
        hour,
        minute: value(minute),
        second: value(second),
        weekday: 1,
    };
    time.valid().then(|| time.to_unix())
}
