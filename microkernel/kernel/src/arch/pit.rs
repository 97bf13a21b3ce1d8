//! The legacy 8254 PIT, used only as a known-frequency reference to
//! calibrate the local APIC timer and for short busy waits.

use x86::io::{inb, outb};

pub const PIT_HZ: u64 = 1_193_182;
const CHANNEL2_DATA: u16 = 0x42;
const COMMAND: u16 = 0x43;
const GATE_PORT: u16 = 0x61;
/// Channel 2, lobyte/hibyte, mode 0 (interrupt on terminal count), binary.
const CHANNEL2_ONE_SHOT: u8 = 0b1011_0000;
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

/// Busy-waits for about `micros` microseconds.
pub fn delay_us(mut micros: u64) {
    while micros > 0 {
        let step = micros.min(50_000);
        one_shot(step, || ());
        micros -= step;
    }
}
