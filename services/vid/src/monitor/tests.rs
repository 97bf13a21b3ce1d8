use super::*;
use tlfs::monitor::HvMonitorTriggerGroup as Group;

/// 10 MHz: one TSC tick per 100 ns unit.
const HZ: u64 = 10_000_000;

fn page() -> Vec<AtomicU64> {
    (0..MONITOR_PAGE_WORDS).map(|_| AtomicU64::new(0)).collect()
}

fn enable(page: &[AtomicU64], groups: u32) {
    page[TRIGGER_STATE_WORD].store(u64::from(groups), Ordering::Relaxed);
}

fn set_latency(page: &[AtomicU64], trigger: usize, units: u16) {
    let (word, shift) = latency_word(trigger);
    let old = page[word].load(Ordering::Relaxed) & !(0xffff << shift);
    page[word].store(old | u64::from(units) << shift, Ordering::Relaxed);
}

fn set_parameter(page: &[AtomicU64], trigger: usize, connection_id: u32, flag_number: u16) {
    page[parameter_word(trigger)].store(u64::from(flag_number) << 32 | u64::from(connection_id), Ordering::Relaxed);
}

/// What a guest does: Pending set and Armed cleared, together.
fn trigger(page: &[AtomicU64], group: usize, bit: u32) {
    let w = &page[trigger_group_word(group)];
    let g = Group::from_word(w.load(Ordering::Relaxed));
    w.store(Group { pending: g.pending | 1 << bit, armed: g.armed & !(1 << bit) }.to_word(), Ordering::Relaxed);
}

fn group(page: &[AtomicU64], group: usize) -> Group {
    Group::from_word(page[trigger_group_word(group)].load(Ordering::Relaxed))
}

fn inspect(m: &mut Monitor, page: &[AtomicU64], now: u64) -> Vec<Signal> {
    let mut signals = Vec::new();
    m.inspect(page, now, |s| signals.push(s));
    signals
}

#[test]
fn a_trigger_fires_once_no_earlier_than_its_latency() {
    let (p, mut m) = (page(), Monitor::new(HZ));
    enable(&p, 0b1);
    set_latency(&p, 3, 20_000);
    set_parameter(&p, 3, 0x11, 3);
    trigger(&p, 0, 3);
    assert_eq!(inspect(&mut m, &p, 1_000), [], "first seen: armed");
    assert_eq!(group(&p, 0), Group { pending: 1 << 3, armed: 1 << 3 });
    assert_eq!(inspect(&mut m, &p, 1_000 + 19_999), [], "before its latency");
    assert_eq!(inspect(&mut m, &p, 1_000 + 20_000), [Signal { connection_id: 0x11, flag_number: 3 }]);
    assert_eq!(group(&p, 0), Group::default(), "cleared together");
    assert_eq!(inspect(&mut m, &p, 100_000), [], "once");
}

#[test]
fn the_next_inspection_follows_the_lowest_latency_and_an_armed_deadline() {
    let (p, mut m) = (page(), Monitor::new(HZ));
    inspect(&mut m, &p, 0);
    assert_eq!(m.due(), IDLE_PERIOD, "nothing enabled");
    enable(&p, 0b1);
    inspect(&mut m, &p, 0);
    assert_eq!(m.due(), MIN_LATENCY, "a group that gives no latency");
    enable(&p, 0b10);
    for t in 32..64 {
        set_latency(&p, t, 50_000);
    }
    set_latency(&p, 40, 30_000);
    inspect(&mut m, &p, 1_000);
    assert_eq!(m.due(), 31_000, "group 1's lowest latency");
    set_latency(&p, 40, 5);
    inspect(&mut m, &p, 1_000);
    assert_eq!(m.due(), 1_000 + MIN_LATENCY, "clamped up");
    set_latency(&p, 40, 30_000);
    trigger(&p, 1, 8);
    inspect(&mut m, &p, 2_000);
    inspect(&mut m, &p, 20_000);
    assert_eq!(m.due(), 2_000 + 30_000, "when the armed trigger's latency has passed");
}

#[test]
fn disabled_groups_are_not_inspected_and_forget_their_arming() {
    let (p, mut m) = (page(), Monitor::new(HZ));
    set_latency(&p, 32, 10_000);
    trigger(&p, 1, 0);
    enable(&p, 0b1);
    assert_eq!(inspect(&mut m, &p, 0), []);
    assert_eq!(inspect(&mut m, &p, 1_000_000), []);
    assert_eq!(group(&p, 1), Group { pending: 1, armed: 0 }, "untouched");
    enable(&p, 0b11);
    inspect(&mut m, &p, 1_000_000);
    enable(&p, 0b1);
    inspect(&mut m, &p, 1_005_000);
    enable(&p, 0b11);
    assert_eq!(inspect(&mut m, &p, 1_011_000), [], "armed again when enabled again, not from the first arming");
    assert_eq!(inspect(&mut m, &p, 1_021_000).len(), 1);
}

#[test]
fn a_withdrawn_trigger_is_disarmed_and_a_rearmed_one_waits_again() {
    let (p, mut m) = (page(), Monitor::new(HZ));
    enable(&p, 0b1);
    set_latency(&p, 0, 10_000);
    trigger(&p, 0, 0);
    inspect(&mut m, &p, 0);
    // The guest takes it back (Pending cleared, Armed left set).
    p[trigger_group_word(0)].store(Group { pending: 0, armed: 1 }.to_word(), Ordering::Relaxed);
    assert_eq!(inspect(&mut m, &p, 5_000), []);
    assert_eq!(group(&p, 0), Group::default(), "disarmed");
    trigger(&p, 0, 0);
    assert_eq!(inspect(&mut m, &p, 12_000), [], "armed afresh");
    assert_eq!(inspect(&mut m, &p, 21_999), []);
    assert_eq!(inspect(&mut m, &p, 22_000).len(), 1);
}

#[test]
fn a_trigger_retriggered_while_armed_is_armed_again() {
    let (p, mut m) = (page(), Monitor::new(HZ));
    enable(&p, 0b1);
    set_latency(&p, 1, 10_000);
    trigger(&p, 0, 1);
    inspect(&mut m, &p, 0);
    // The guest modifies Pending again: Armed goes back to 0.
    trigger(&p, 0, 1);
    assert_eq!(inspect(&mut m, &p, 10_000), [], "not armed at this inspection");
    assert_eq!(inspect(&mut m, &p, 19_999), []);
    assert_eq!(inspect(&mut m, &p, 20_000).len(), 1);
}

#[test]
fn an_armed_bit_it_did_not_set_counts_from_when_it_saw_it() {
    let (p, mut m) = (page(), Monitor::new(HZ));
    enable(&p, 0b1);
    set_latency(&p, 2, 10_000);
    p[trigger_group_word(0)].store(Group { pending: 1 << 2, armed: 1 << 2 }.to_word(), Ordering::Relaxed);
    assert_eq!(inspect(&mut m, &p, 50_000), []);
    assert_eq!(inspect(&mut m, &p, 60_000).len(), 1);
}

#[test]
fn many_triggers_fire_in_one_inspection_in_order() {
    let (p, mut m) = (page(), Monitor::new(HZ));
    enable(&p, 0b1001);
    for (t, c) in [(0usize, 1u32), (31, 2), (96, 3), (127, 4)] {
        set_parameter(&p, t, c, t as u16);
    }
    for (g, b) in [(0, 0), (0, 31), (3, 0), (3, 31)] {
        trigger(&p, g, b);
    }
    inspect(&mut m, &p, 0);
    let fired: Vec<u32> = inspect(&mut m, &p, MAX_LATENCY).iter().map(|s| s.connection_id).collect();
    assert_eq!(fired, [1, 2, 3, 4]);
}

#[test]
fn the_guests_changes_between_read_and_write_are_kept() {
    // A compare-exchange that loses to the guest starts again from what it wrote.
    let (p, mut m) = (page(), Monitor::new(HZ));
    enable(&p, 0b1);
    trigger(&p, 0, 4);
    inspect(&mut m, &p, 0);
    trigger(&p, 0, 5);
    inspect(&mut m, &p, 1);
    assert_eq!(group(&p, 0), Group { pending: 0b11 << 4, armed: 0b11 << 4 });
}

#[test]
fn latency_converts_with_the_tsc_rate() {
    let (p, mut m) = (page(), Monitor::new(3_000_000_000));
    enable(&p, 0b1);
    set_latency(&p, 0, 20_000);
    trigger(&p, 0, 0);
    inspect(&mut m, &p, 0);
    assert_eq!(inspect(&mut m, &p, 5_999_000), [], "1.9997 ms at 3 GHz");
    assert_eq!(inspect(&mut m, &p, 6_000_000).len(), 1, "2 ms");
}

#[test]
fn a_page_of_the_wrong_size_is_left_alone() {
    let mut m = Monitor::new(HZ);
    let short: Vec<AtomicU64> = (0..8).map(|_| AtomicU64::new(u64::MAX)).collect();
    assert_eq!(inspect(&mut m, &short, 0), []);
    assert!(short.iter().all(|w| w.load(Ordering::Relaxed) == u64::MAX));
}

#[test]
fn at_most_max_fires_per_inspection_and_the_rest_a_minimum_latency_on() {
    let (p, mut m) = (page(), Monitor::new(HZ));
    enable(&p, 0b11);
    for g in 0..2 {
        for b in 0..32 {
            trigger(&p, g, b);
        }
    }
    inspect(&mut m, &p, 0);
    assert_eq!(inspect(&mut m, &p, MIN_LATENCY).len(), MAX_FIRES as usize);
    assert_eq!(m.due(), 2 * MIN_LATENCY, "the others wait");
    assert_eq!(group(&p, 1), Group { pending: u32::MAX, armed: u32::MAX }, "still armed");
    assert_eq!(inspect(&mut m, &p, 2 * MIN_LATENCY).len(), 32);
    assert_eq!(group(&p, 1), Group::default());
}
