//! The monitor page inspection (`vid::monitor`, TLFS 11.7): a page both
//! guests write at will, inspected by the VID at rising times.
//!
//! Operations: a guest writes any word of the page (as a whole, or sets a
//! trigger the TLFS way: Pending on, Armed off), time passes, the VID
//! inspects. Oracles: an inspection writes only the trigger group words,
//! and there only clears Pending bits it fires and sets or clears Armed
//! bits; it fires at most `MAX_FIRES`; a trigger fires only if it was
//! pending and armed, and no sooner than its latency after the inspection
//! that armed it; a fired trigger is clear afterwards; each signal carries
//! the parameter word of the trigger it names; the next inspection is never
//! in the past.

#![no_main]

use arbitrary::Arbitrary;
use core::sync::atomic::{AtomicU64, Ordering};
use libfuzzer_sys::fuzz_target;
use tlfs::monitor::{
    HvMonitorParameter, HvMonitorTriggerGroup, MONITOR_GROUPS, MONITOR_PAGE_WORDS, MONITOR_TRIGGERS,
    TRIGGERS_PER_GROUP, latency_word, parameter_word, trigger_group_word,
};
use vid::monitor::{MAX_FIRES, MAX_LATENCY, MIN_LATENCY, Monitor, Signal};

/// One TSC tick per 100 ns: latencies are ticks.
const HZ: u64 = 10_000_000;

#[derive(Arbitrary, Debug)]
enum Op {
    /// A guest stores `value` at word `word` (modulo the page).
    Write { word: u16, value: u64 },
    /// A guest sets trigger `trigger` (modulo 128) as the TLFS says.
    Trigger { trigger: u8 },
    /// Time moves on by `ticks`, then the VID inspects.
    Inspect { ticks: u32 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    ops: Vec<Op>,
}

fn group_words(page: &[AtomicU64]) -> Vec<u64> {
    (0..MONITOR_GROUPS).map(|g| page[trigger_group_word(g)].load(Ordering::Relaxed)).collect()
}

fuzz_target!(|input: Input| {
    let page: Vec<AtomicU64> = (0..MONITOR_PAGE_WORDS).map(|_| AtomicU64::new(0)).collect();
    let mut monitor = Monitor::new(HZ);
    let mut now = 0u64;
    // When the model last saw each trigger armed by an inspection.
    let mut armed_at: [Option<u64>; MONITOR_TRIGGERS] = [None; MONITOR_TRIGGERS];
    for op in input.ops.iter().take(64) {
        match *op {
            Op::Write { word, value } => {
                let w = usize::from(word) % MONITOR_PAGE_WORDS;
                page[w].store(value, Ordering::Relaxed);
                if (0..MONITOR_GROUPS).any(|g| trigger_group_word(g) == w) {
                    // The guest rewrote the group: arming starts afresh.
                    let g = (0..MONITOR_GROUPS).find(|&g| trigger_group_word(g) == w).unwrap();
                    armed_at[g * TRIGGERS_PER_GROUP..][..TRIGGERS_PER_GROUP].fill(None);
                }
            }
            Op::Trigger { trigger } => {
                let t = usize::from(trigger) % MONITOR_TRIGGERS;
                let (g, bit) = (t / TRIGGERS_PER_GROUP, t % TRIGGERS_PER_GROUP);
                let w = &page[trigger_group_word(g)];
                let old = HvMonitorTriggerGroup::from_word(w.load(Ordering::Relaxed));
                let new = HvMonitorTriggerGroup { pending: old.pending | 1 << bit, armed: old.armed & !(1 << bit) };
                w.store(new.to_word(), Ordering::Relaxed);
                armed_at[t] = None;
            }
            Op::Inspect { ticks } => {
                now = now.saturating_add(u64::from(ticks));
                let before: Vec<u64> = page.iter().map(|w| w.load(Ordering::Relaxed)).collect();
                let groups_before = group_words(&page);
                let mut signals: Vec<Signal> = Vec::new();
                monitor.inspect(&page, now, |s| signals.push(s));
                assert!(monitor.due() >= now, "the next inspection is in the past");
                assert!(signals.len() <= MAX_FIRES as usize, "{} signals", signals.len());
                // Only the trigger group words change.
                for (i, w) in page.iter().enumerate() {
                    if !(0..MONITOR_GROUPS).any(|g| trigger_group_word(g) == i) {
                        assert_eq!(w.load(Ordering::Relaxed), before[i], "word {i} changed");
                    }
                }
                let mut fired = Vec::new();
                for g in 0..MONITOR_GROUPS {
                    let old = HvMonitorTriggerGroup::from_word(groups_before[g]);
                    let new = HvMonitorTriggerGroup::from_word(page[trigger_group_word(g)].load(Ordering::Relaxed));
                    // Pending bits only go, and only where they were pending and armed.
                    assert_eq!(new.pending & !old.pending, 0, "a Pending bit set by the VID");
                    let cleared = old.pending & !new.pending;
                    assert_eq!(cleared & !old.armed, 0, "fired without being armed");
                    // Armed never outlives Pending in a group the VID rewrote.
                    if new != old {
                        assert_eq!(new.armed & !new.pending, 0, "armed without pending");
                    }
                    for bit in 0..TRIGGERS_PER_GROUP {
                        let t = g * TRIGGERS_PER_GROUP + bit;
                        if cleared & (1 << bit) != 0 {
                            let (word, shift) = latency_word(t);
                            let latency = u64::from((before[word] >> shift) as u16).clamp(MIN_LATENCY, MAX_LATENCY);
                            // Armed by an inspection the model saw: no sooner than its latency.
                            if let Some(at) = armed_at[t] {
                                assert!(
                                    now - at >= latency,
                                    "trigger {t} fired {} after arming, latency {latency}",
                                    now - at
                                );
                            }
                            fired.push(t);
                            armed_at[t] = None;
                        } else if new.armed & (1 << bit) != 0 && old.armed & (1 << bit) == 0 {
                            armed_at[t] = Some(now);
                        } else if new.armed & (1 << bit) == 0 {
                            armed_at[t] = None;
                        }
                    }
                }
                assert_eq!(fired.len(), signals.len(), "one signal per trigger fired");
                for (t, s) in fired.iter().zip(&signals) {
                    let p = HvMonitorParameter::from_word(before[parameter_word(*t)]);
                    assert_eq!((s.connection_id, s.flag_number), (p.connection_id, p.flag_number), "trigger {t}");
                }
            }
        }
    }
});
