//! The legacy 8254 PIT, used as a known-frequency reference to calibrate
//! the local APIC timer and for short busy waits (channel 2), and by the
//! NMI test as a periodic source (channel 0).

use x86::io::{inb, outb};

pub const PIT_HZ: u64 = 1_193_182;
const CHANNEL0_DATA: u16 = 0x40;
const CHANNEL2_DATA: u16 = 0x42;
const COMMAND: u16 = 0x43;
const GATE_PORT: u16 = 0x61;
/// Channel 2, lobyte/hibyte, mode 0 (interrupt on terminal count), binary.
const CHANNEL2_ONE_SHOT: u8 = 0b1011_0000;
/// Channel 0, lobyte/hibyte, mode 2 (rate generator), binary.
const CHANNEL0_PERIODIC: u8 = 0b0011_0100;
const GATE: u8 = 1 << 0;
const SPEAKER: u8 = 1 << 1;
const OUT2: u8 = 1 << 5;

/// Starts PIT channel 2 counting down `micros` microseconds (at most about
/// 54 ms), calls `on_start` right after, and busy-waits until it expires.
pub fn one_shot(micros: u64, on_start: impl FnOnce()) {
    let ticks = (PIT_HZ * micros / 1_000_000).clamp(1, 0xffff) as u16;
    // SAFETY: ports 0x42, 0x43 and 0x61 belong to the PIT and the system
    // control port, which nothing else in the kernel drives.
    unsafe {
        let control = inb(GATE_PORT) & !(SPEAKER | GATE);
        outb(GATE_PORT, control);
        outb(COMMAND, CHANNEL2_ONE_SHOT);
        outb(CHANNEL2_DATA, ticks as u8);
        outb(CHANNEL2_DATA, (ticks >> 8) as u8);
        outb(GATE_PORT, control | GATE);
        on_start();
        while inb(GATE_PORT) & OUT2 == 0 {
            core::hint::spin_loop();
        }
    }
}

/// Starts channel 0 pulsing its output (ISA IRQ 0) `hz` times a second.
pub fn start_periodic(hz: u64) {
    let divisor = (PIT_HZ / hz.max(1)).clamp(2, 0xffff) as u16;
    // SAFETY: ports 0x40 and 0x43 belong to the PIT; channel 0 is used by
    // nothing else in the kernel (calibration and delays use channel 2).
    unsafe {
        outb(COMMAND, CHANNEL0_PERIODIC);
        outb(CHANNEL0_DATA, divisor as u8);
        outb(CHANNEL0_DATA, (divisor >> 8) as u8);
    }
}

/// Busy-waits for about `micros` microseconds.
pub fn delay_us(mut micros: u64) {
    while micros > 0 {
        let step = micros.min(50_000);
        one_shot(step, || ());
        micros -= step;
    }
}
