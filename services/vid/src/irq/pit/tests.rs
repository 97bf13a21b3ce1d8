use super::*;

/// 10 TSC ticks per PIT tick.
const TSC_HZ: u64 = PIT_HZ * 10;

fn tick(n: u64) -> u64 {
    n * 10
}

fn pit() -> Pit {
    Pit::new(TSC_HZ)
}

fn load(pit: &mut Pit, port: u16, control: u8, count: u16, now: u64) {
    pit.port_write(MODE_PORT, control, now);
    let [lo, hi] = count.to_le_bytes();
    pit.port_write(port, lo, now);
    pit.port_write(port, hi, now);
}

fn read16(pit: &mut Pit, port: u16, now: u64) -> u16 {
    let lo = pit.port_read(port, now);
    u16::from_le_bytes([lo, pit.port_read(port, now)])
}

#[test]
fn mode2_rate_generator() {
    let mut p = pit();
    load(&mut p, CHANNEL0, 0x34, 1000, 0);
    assert_eq!(read16(&mut p, CHANNEL0, tick(250)), 750);
    assert_eq!(read16(&mut p, CHANNEL0, tick(1250)), 750);
    assert!(p.channels[0].output(tick(998), TSC_HZ));
    assert!(!p.channels[0].output(tick(999), TSC_HZ));
    assert_eq!(p.next_deadline(), Some(tick(1000)));
    assert!(!p.poll(tick(1000) - 1));
    assert!(p.poll(tick(1000)));
    assert_eq!(p.next_deadline(), Some(tick(2000)));
    // Missed periods are one IRQ; the phase is kept.
    assert!(p.poll(tick(4500)));
    assert!(!p.poll(tick(4900)));
    assert_eq!(p.next_deadline(), Some(tick(5000)));
}

#[test]
fn mode3_square_wave() {
    let mut p = pit();
    load(&mut p, CHANNEL0, 0x36, 100, 0);
    let ch = &p.channels[0];
    assert!(ch.output(tick(49), TSC_HZ) && !ch.output(tick(50), TSC_HZ) && ch.output(tick(100), TSC_HZ));
    assert_eq!(ch.count(tick(10), TSC_HZ), 80);
    assert_eq!(ch.count(tick(60), TSC_HZ), 80);
    assert_eq!(p.next_deadline(), Some(tick(100)));
    // An odd count is high one tick longer.
    load(&mut p, CHANNEL0, 0x36, 5, 0);
    let ch = &p.channels[0];
    assert!(ch.output(tick(2), TSC_HZ) && !ch.output(tick(3), TSC_HZ) && !ch.output(tick(4), TSC_HZ));
    // Count 0 is 65536: about 18.2 Hz.
    load(&mut p, CHANNEL0, 0x36, 0, 0);
    assert_eq!(p.next_deadline(), Some(tick(65536)));
}

#[test]
fn latch_and_read_back() {
    let mut p = pit();
    load(&mut p, CHANNEL0, 0x34, 0x1234, 0);
    // Counter latch: the value at the latch, read later, once.
    p.port_write(MODE_PORT, 0x00, tick(0x34));
    assert_eq!(read16(&mut p, CHANNEL0, tick(0x200)), 0x1200);
    assert_eq!(read16(&mut p, CHANNEL0, tick(0x200)), 0x1034);
    // A second latch before the read does not overwrite the first.
    p.port_write(MODE_PORT, 0x00, tick(0x34));
    p.port_write(MODE_PORT, 0x00, tick(0x200));
    assert_eq!(read16(&mut p, CHANNEL0, tick(0x300)), 0x1200);
    // Read-back of status then count: output high, lohi, mode 2, binary.
    p.port_write(MODE_PORT, 0xc2, tick(0x234));
    assert_eq!(p.port_read(CHANNEL0, tick(0x300)), 0x80 | 0x30 | 0x04);
    assert_eq!(read16(&mut p, CHANNEL0, tick(0x300)), 0x1000);
    // Status right after a control word: null count, output low (mode 0).
    p.port_write(MODE_PORT, 0x30, 0);
    p.port_write(MODE_PORT, 0xe2, 0);
    assert_eq!(p.port_read(CHANNEL0, 0), 0x40 | 0x30);
}

#[test]
fn byte_access_modes() {
    let mut p = pit();
    p.port_write(MODE_PORT, 0x10, 0);
    p.port_write(CHANNEL0, 0x20, 0);
    assert_eq!(p.port_read(CHANNEL0, tick(4)), 0x1c);
    p.port_write(MODE_PORT, 0x20, 0);
    p.port_write(CHANNEL0, 0x01, 0);
    assert_eq!(p.port_read(CHANNEL0, tick(1)), 0x00);
    assert_eq!(p.channels[0].count(tick(1), TSC_HZ), 0xff);
}

#[test]
fn mode0_on_channel2_with_the_gate() {
    // Linux's pit_calibrate_tsc: gate on, speaker off, mode 0, count, poll OUT2.
    let mut p = pit();
    let p61 = p.port_read(PORT_61, 0);
    p.port_write(PORT_61, (p61 & !0x02) | 0x01, 0);
    load(&mut p, CHANNEL2, 0xb0, 11932, 0);
    assert_eq!(p.port_read(PORT_61, tick(11931)) & P61_OUT2, 0);
    assert_eq!(p.port_read(PORT_61, tick(11932)) & P61_OUT2, P61_OUT2);
    assert_eq!(p.port_read(PORT_61, 0) & 0x0f, 0x01);
    // Mode 0 output is low from the control word; the gate pauses the count.
    load(&mut p, CHANNEL2, 0xb0, 100, 0);
    p.port_write(PORT_61, 0, tick(40));
    assert_eq!(read16(&mut p, CHANNEL2, tick(500)), 60);
    p.port_write(PORT_61, 1, tick(1000));
    assert_eq!(read16(&mut p, CHANNEL2, tick(1010)), 50);
    assert_eq!(p.port_read(PORT_61, tick(1059)) & P61_OUT2, 0);
    assert_eq!(p.port_read(PORT_61, tick(1060)) & P61_OUT2, P61_OUT2);
    // Channel 2 is not IRQ 0.
    assert_eq!(p.next_deadline(), None);
}

#[test]
fn refresh_toggles() {
    let mut p = pit();
    let a = p.port_read(PORT_61, 0) & P61_REFRESH;
    let b = p.port_read(PORT_61, tick(18)) & P61_REFRESH;
    assert_ne!(a, b);
}

#[test]
fn mode0_interrupt_on_terminal_count() {
    let mut p = pit();
    load(&mut p, CHANNEL0, 0x30, 500, tick(100));
    assert_eq!(p.next_deadline(), Some(tick(600)));
    assert!(p.poll(tick(700)));
    assert_eq!(p.next_deadline(), None);
    assert!(!p.poll(tick(100_000)));
    // Linux's PIT shutdown: mode 0, count 0: one IRQ after 65536 ticks, then none.
    load(&mut p, CHANNEL0, 0x30, 0, 0);
    assert_eq!(p.next_deadline(), Some(tick(65536)));
}
