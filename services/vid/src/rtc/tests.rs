use super::calendar::DateTime;
use super::*;

const HZ: u64 = 1_000_000_000;
/// 2026-12-07 00:30:15 UTC, a Monday.
const T0: u64 = 1_796_603_415;

fn rtc() -> Rtc {
    Rtc::new(T0, 0, HZ)
}

fn ms(n: u64) -> u64 {
    n * HZ / 1000
}

#[test]
fn the_calendar_converts_both_ways_and_rolls_over() {
    let t = DateTime::from_unix(T0);
    assert_eq!((t.year, t.month, t.day, t.hour, t.minute, t.second, t.weekday), (2026, 12, 7, 0, 30, 15, 2));
    assert_eq!(t.to_unix(), T0);
    for unix in [0, 951_782_400 /* 2000-02-29 */, 4_107_542_399 /* 2100-02-28 23:59:59 */] {
        assert_eq!(DateTime::from_unix(unix).to_unix(), unix);
    }
    let mut t = DateTime::from_unix(4_107_542_399);
    t.tick();
    assert_eq!((t.year, t.month, t.day, t.hour), (2100, 3, 1, 0), "2100 is no leap year");
    assert_eq!(t, DateTime::from_unix(4_107_542_400));
    let mut t = DateTime::from_unix(1_798_761_599); // 2026-12-31 23:59:59
    t.tick();
    assert_eq!((t.year, t.month, t.day, t.weekday), (2027, 1, 1, 6), "a Friday");
}

#[test]
fn time_reads_in_bcd_by_default_and_advances_one_second_per_second() {
    let mut r = rtc();
    assert_eq!(r.read(reg::SECONDS, 0), 0x15);
    assert_eq!(r.read(reg::MINUTES, 0), 0x30);
    assert_eq!(r.read(reg::YEAR, 0), 0x26);
    assert_eq!(r.read(CENTURY, 0), 0x20);
    assert_eq!(r.read(reg::MONTH, 0), 0x12);
    assert_eq!(r.read(reg::DAY_OF_WEEK, 0), 2);
    assert_eq!(r.read(reg::SECONDS, ms(999)), 0x15);
    assert_eq!(r.read(reg::SECONDS, ms(1000)), 0x16);
    assert_eq!(r.read(reg::SECONDS, ms(45_000)), 0x00);
    assert_eq!(r.read(reg::MINUTES, ms(45_000)), 0x31);
    assert_eq!(r.unix_time(ms(3_600_000)), T0 + 3600);
    assert_eq!(r.read(reg::D, 0), D_VRT);
}

#[test]
fn binary_and_12_hour_modes() {
    let mut r = Rtc::new(T0 + 13 * 3600, 0, HZ); // 13:30:15
    r.write(reg::B, B_DM | B_24H, 0);
    assert_eq!((r.read(reg::HOURS, 0), r.read(reg::SECONDS, 0), r.read(reg::YEAR, 0)), (13, 15, 26));
    r.write(reg::B, B_DM, 0);
    assert_eq!(r.read(reg::HOURS, 0), 0x80 | 1, "1 PM");
    r.write(reg::B, 0, 0);
    assert_eq!(r.read(reg::HOURS, 0), 0x80 | 0x01);
    r.write(reg::HOURS, 0x12, 0); // 12 AM: midnight
    assert_eq!(r.unix_time(0) % 86_400, 30 * 60 + 15);
    r.write(reg::HOURS, 0x80 | 0x12, 0); // 12 PM: noon
    assert_eq!(r.unix_time(0) % 86_400, 12 * 3600 + 30 * 60 + 15);
    r.write(reg::B, B_24H, 0);
    r.write(reg::YEAR, 0x99, 0);
    r.write(CENTURY, 0x19, 0);
    assert_eq!(DateTime::from_unix(r.unix_time(0)).year, 1999);
}

#[test]
fn uip_rises_244_us_before_each_update_and_set_stops_updates() {
    let mut r = rtc();
    assert_eq!(r.read(reg::A, ms(500)) & A_UIP, 0);
    let uip_at = HZ - HZ * UIP_MICROS / 1_000_000;
    assert_eq!(r.read(reg::A, uip_at - 1000) & A_UIP, 0);
    assert_ne!(r.read(reg::A, uip_at + 1000) & A_UIP, 0);
    assert_eq!(r.read(reg::SECONDS, uip_at + 1000), 0x15, "old time during UIP");
    assert_eq!(r.read(reg::A, HZ) & A_UIP, 0);
    assert_eq!(r.read(reg::SECONDS, HZ), 0x16);
    r.write(reg::B, B_24H | B_SET | B_UIE, HZ);
    assert_eq!(r.read(reg::B, HZ) & B_UIE, 0, "SET clears UIE");
    r.write(reg::SECONDS, 0x42, HZ);
    assert_eq!(r.read(reg::SECONDS, 5 * HZ), 0x42, "no update while SET");
    assert_eq!(r.read(reg::A, 6 * HZ - 1000) & A_UIP, 0);
    r.write(reg::B, B_24H, 5 * HZ);
    assert_eq!(r.read(reg::SECONDS, 6 * HZ), 0x43);
}

#[test]
fn divider_reset_stops_the_clock_and_the_first_update_comes_half_a_second_after() {
    let mut r = rtc();
    r.write(reg::A, 0x70 | 6, 0);
    assert_eq!(r.read(reg::SECONDS, 10 * HZ), 0x15);
    r.write(reg::A, A_DV_32768 | 6, 10 * HZ);
    assert_eq!(r.read(reg::SECONDS, 10 * HZ + ms(499)), 0x15);
    assert_eq!(r.read(reg::SECONDS, 10 * HZ + ms(501)), 0x16);
}

#[test]
fn periodic_interrupts_at_the_selected_rate_and_register_c_clears_on_read() {
    assert_eq!(
        (periodic_hz(0), periodic_hz(1), periodic_hz(3), periodic_hz(6), periodic_hz(15)),
        (None, Some(256), Some(8192), Some(1024), Some(2))
    );
    let mut r = rtc();
    r.write(reg::B, B_24H | B_PIE, 0);
    assert!(!r.irq_level());
    let mut raised = 0;
    let mut now = 0;
    while now < ms(100) {
        let next = r.next_deadline().expect("PIE: a deadline");
        assert!(next > now);
        now = next;
        if r.poll(now) {
            raised += 1;
            assert_eq!(r.read(reg::C, now), C_IRQF | C_PF);
            assert!(!r.irq_level(), "reading C deasserts IRQ 8");
            assert_eq!(r.read(reg::C, now), 0);
        }
    }
    assert!((101..=103).contains(&raised), "1024 Hz over 100 ms: {raised}");
    // Without PIE, PF is set but IRQ 8 stays low.
    r.write(reg::B, B_24H, now);
    assert_eq!(r.next_deadline(), None);
    assert!(!r.poll(now + ms(10)));
    assert_eq!(r.read(reg::C, now + ms(10)), C_PF);
}

#[test]
fn update_ended_and_alarm_interrupts() {
    let mut r = rtc();
    // No periodic rate: PF (set whatever PIE says) stays out of C.
    r.write(reg::A, A_DV_32768, 0);
    r.write(reg::B, B_24H | B_UIE, 0);
    assert_eq!(r.next_deadline(), Some(HZ));
    assert!(r.poll(HZ));
    assert_eq!(r.read(reg::C, HZ), C_IRQF | C_UF);
    // Alarm at :20 of any minute and hour; UIE off.
    r.write(reg::B, B_24H | B_AIE, HZ);
    r.write(reg::SECONDS_ALARM, 0x20, HZ);
    r.write(reg::MINUTES_ALARM, DONT_CARE, HZ);
    r.write(reg::HOURS_ALARM, 0xff, HZ);
    for s in 2..5 {
        assert!(!r.poll(s * HZ), "no alarm at :{}", 15 + s);
        assert_eq!(r.read(reg::C, s * HZ), C_UF, "UF without UIE: no IRQF");
    }
    assert!(r.poll(5 * HZ), "alarm at :20");
    assert_eq!(r.read(reg::SECONDS, 5 * HZ), 0x20);
    assert_eq!(r.read(reg::C, 5 * HZ), C_IRQF | C_AF | C_UF);
    // An alarm hour that does not match never fires.
    r.write(reg::HOURS_ALARM, 0x05, 5 * HZ);
    assert!(!r.poll(65 * HZ));
    assert_eq!(r.read(reg::C, 65 * HZ) & C_AF, 0);
}

#[test]
fn the_index_port_keeps_the_nmi_mask_and_ram_survives_a_reset() {
    let mut r = rtc();
    r.port_write(INDEX_PORT, 0x80 | 0x40, 0);
    assert!(r.nmi_disabled());
    r.port_write(DATA_PORT, 0x5a, 0);
    assert_eq!(r.port_read(DATA_PORT, 0), 0x5a);
    assert_eq!(r.port_read(INDEX_PORT, 0), 0xc0);
    r.port_write(INDEX_PORT, reg::SECONDS | 0x80, 0);
    assert_eq!(r.port_read(DATA_PORT, 0), 0x15, "reads work with NMIs masked");
    r.write(reg::B, B_24H | B_PIE, 0);
    r.write(reg::C, 0xff, 0);
    r.reset(ms(10));
    assert!(!r.nmi_disabled());
    assert_eq!(r.read(0x40, ms(10)), 0x5a, "battery-backed RAM");
    assert_eq!(r.read(reg::B, ms(10)), B_24H, "interrupt enables cleared");
    assert_eq!(r.read(reg::SECONDS, 2 * HZ), 0x17, "the time keeps running");
}

#[test]
fn the_host_clock_is_read_in_either_mode() {
    let bcd = |i: u8| match i {
        reg::A => 0x26,
        reg::B => 0x02,
        reg::SECONDS => 0x15,
        reg::MINUTES => 0x30,
        reg::HOURS => 0x00,
        reg::DAY_OF_MONTH => 0x07,
        reg::MONTH => 0x12,
        reg::YEAR => 0x26,
        CENTURY => 0x20,
        _ => 0,
    };
    assert_eq!(read_host_clock(bcd), Some(T0));
    let mut r = rtc();
    r.write(reg::B, B_DM, 0);
    assert_eq!(read_host_clock(|i| r.read(i, ms(200))), Some(T0));
    // No century byte kept: the 2000s.
    assert_eq!(read_host_clock(|i| if i == CENTURY { 0 } else { bcd(i) }), Some(T0));
    assert_eq!(read_host_clock(|i| if i == reg::A { 0x80 } else { bcd(i) }), None, "UIP never clears");
    assert_eq!(read_host_clock(|i| if i == reg::MONTH { 0x13 } else { bcd(i) }), None);
}

#[test]
fn polling_register_c_sees_every_periodic_flag() {
    let mut r = rtc();
    r.write(reg::A, A_DV_32768 | 9, 0); // 128 Hz
    let start = ms(300) + 12_345;
    r.read(reg::C, start);
    let mut flags = 0;
    let mut now = start;
    while now < start + HZ {
        now += 300_000 + now % 7_919;
        flags += u64::from(r.read(reg::C, now) & C_PF != 0);
    }
    assert!((127..=129).contains(&flags), "{flags} flags in one second at 128 Hz");
}

#[test]
fn periodic_interrupts_lost_to_a_late_handler_come_again_after_register_c_is_read() {
    let mut r = rtc();
    r.write(reg::A, A_DV_32768 | 9, 0); // 128 Hz
    r.write(reg::B, B_24H | B_PIE, 0);
    let period = HZ / 128;
    // Nobody looks until 3.5 periods: three ticks, one edge.
    assert!(r.poll(period * 7 / 2));
    assert_eq!(r.read(reg::C, period * 7 / 2), C_IRQF | C_PF);
    assert!(r.irq_level(), "one lost tick raised again");
    assert_eq!(r.read(reg::C, period * 7 / 2), C_IRQF | C_PF);
    assert!(r.irq_level(), "the second");
    assert_eq!(r.read(reg::C, period * 7 / 2), C_IRQF | C_PF);
    assert!(!r.irq_level(), "caught up");
    // Disabling PIE forgets the backlog.
    r.poll(period * 10);
    r.write(reg::B, B_24H, period * 10);
    assert_eq!(r.read(reg::C, period * 10), C_PF);
    assert_eq!(r.read(reg::C, period * 10), 0);
}

#[test]
fn at_most_a_quarter_second_of_lost_periodic_interrupts_is_kept() {
    let mut r = rtc();
    r.write(reg::A, A_DV_32768 | 9, 0); // 128 Hz
    r.write(reg::B, B_24H | B_PIE, 0);
    // A second late: 128 ticks, one edge, 32 kept.
    assert!(r.poll(HZ + 1000));
    let mut raised = 0;
    while r.read(reg::C, HZ + 1000) & C_IRQF != 0 {
        raised += 1;
    }
    assert_eq!(raised, 1 + 128 / LOST_KEPT_DIVISOR);
}

#[test]
fn a_catch_up_skipped_while_idle_leaves_the_same_clock() {
    // The same accesses and polls to two RTCs, one made to forget before
    // each when it is idle (so it always catches up in full): the same
    // state after every step, the idle bound included.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut skipping, mut full) = (rtc(), rtc());
    let mut now = 0;
    for step in 0..20_000 {
        now += random() % ms(3);
        full.idle_until = 0;
        match random() % 10 {
            0 => {
                let a = [0x26, 0x23, 0x2f, 0x20, 0x76][(random() % 5) as usize];
                skipping.write(reg::A, a, now);
                full.write(reg::A, a, now);
            }
            1 => {
                let b = random() as u8 & (B_SET | B_PIE | B_AIE | B_UIE | B_24H);
                skipping.write(reg::B, b, now);
                full.write(reg::B, b, now);
            }
            2 => assert_eq!(skipping.read(reg::C, now), full.read(reg::C, now), "step {step}"),
            3 => assert_eq!(skipping.read(reg::SECONDS, now), full.read(reg::SECONDS, now), "step {step}"),
            _ => assert_eq!(skipping.poll(now), full.poll(now), "step {step}"),
        }
        assert_eq!(format!("{skipping:?}"), format!("{full:?}"), "step {step}");
    }
}
