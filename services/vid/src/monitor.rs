//! Monitored notifications (TLFS 11.7): the VID inspects the monitor page
//! of each monitor connection its partition holds, and makes the
//! HvSignalEvent that a trigger asks for on the partition's behalf.
//!
//! The page ([`tlfs::monitor`]) is common to the two partitions, which set
//! and read it while the VID does: every change is one compare-exchange of
//! a trigger group's word. An inspection, for each enabled group:
//! - arms a pending trigger that is not armed, noting the time;
//! - fires a trigger armed at least its latency ago: clears `Pending` and
//!   `Armed` together, then signals its parameter's connection and flag (a
//!   failed signal is discarded, TLFS 11.10.8.2);
//! - disarms an armed trigger the guest withdrew (`Pending` clear).
//!
//! So a notification comes no earlier than its latency after the trigger
//! was first seen pending. Inspections follow the lowest latency given in
//! an enabled group (a group that gives none: [`MIN_LATENCY`]), clamped to
//! [`MIN_LATENCY`]..=[`MAX_LATENCY`], and wait [`IDLE_PERIOD`] while no
//! group is enabled. The minimum keeps the VID's own turns (a few hundred
//! µs under Bochs) well inside the period, so inspecting never starves the
//! guests.

use core::sync::atomic::{AtomicU64, Ordering};
use tlfs::monitor::{
    GROUP_ENABLE_MASK, HvMonitorParameter, HvMonitorTriggerGroup, MONITOR_GROUPS, MONITOR_PAGE_WORDS, MONITOR_TRIGGERS,
    TRIGGER_STATE_WORD, TRIGGERS_PER_GROUP, latency_word, parameter_word, trigger_group_word,
};

/// The shortest wait between inspections a latency hint gets, in the
/// TLFS's 100 ns units (1 ms).
pub const MIN_LATENCY: u64 = 10_000;
/// The longest (1 s).
pub const MAX_LATENCY: u64 = 10_000_000;
/// Between inspections of a page with every group disabled (10 ms).
pub const IDLE_PERIOD: u64 = 100_000;

/// 100 ns units per second.
const UNITS_PER_SECOND: u64 = 10_000_000;

/// The HvSignalEvent a trigger asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal {
    pub connection_id: u32,
    pub flag_number: u16,
}

/// Triggers fired in one inspection at most; the rest fire at the next,
/// [`MIN_LATENCY`] on: a guest cannot make the VID signal more often.
pub const MAX_FIRES: u32 = 32;
/// Tries of a trigger group's compare-exchange in one inspection: a group
/// the guests keep changing waits for the next.
const CAS_TRIES: usize = 8;

/// A monitor page the VID inspects for its partition: the monitor
/// connection it belongs to, its words (the guests change them meanwhile),
/// the event connections a trigger may name, and the VID's state for it.
pub struct MonitorPage<'m> {
    pub connection_id: u32,
    pub words: &'m [AtomicU64],
    /// The partition's event connections to the monitor port's party. The
    /// page is the port party's to write too: a parameter naming any other
    /// connection of the partition is discarded, so the port's side cannot
    /// make the VID signal, as this partition, to a third.
    pub targets: heapless::Vec<u32, MAX_TARGETS>,
    pub monitor: Monitor,
}

/// Event connections a monitor page may signal: as many as a system declares.
pub const MAX_TARGETS: usize = sysimage::manifest::MAX_CONNECTIONS;

impl MonitorPage<'_> {
    /// Inspects the page at TSC `now`, calling `signal` for each
    /// notification that names one of [`MonitorPage::targets`] (the others
    /// are discarded, like a refused signal).
    pub fn inspect(&mut self, now: u64, mut signal: impl FnMut(Signal)) {
        let targets = &self.targets;
        self.monitor.inspect(self.words, now, |s| {
            if targets.contains(&s.connection_id) {
                signal(s);
            }
        });
    }
}

/// What the VID keeps of one monitor page: when it armed each trigger.
pub struct Monitor {
    /// Per trigger, group-major: the time (TSC) it was armed, if it is.
    armed_at: [Option<u64>; MONITOR_TRIGGERS],
    /// TSC ticks per 100 ns unit, times 2^16.
    ticks_per_unit: u64,
    /// The next inspection (TSC).
    due: u64,
}

impl Monitor {
    /// State for a page, with the TSC at `tsc_hz`; inspected first at once.
    pub fn new(tsc_hz: u64) -> Monitor {
        let ticks_per_unit = u64::try_from((u128::from(tsc_hz) << 16) / u128::from(UNITS_PER_SECOND)).unwrap_or(1);
        Monitor { armed_at: [None; MONITOR_TRIGGERS], ticks_per_unit: ticks_per_unit.max(1), due: 0 }
    }

    /// When the next inspection is due (TSC).
    pub fn due(&self) -> u64 {
        self.due
    }

    /// TSC ticks of `units` of 100 ns.
    fn ticks(&self, units: u64) -> u64 {
        u64::try_from((u128::from(units) * u128::from(self.ticks_per_unit)) >> 16).unwrap_or(u64::MAX)
    }

    /// Inspects `page` at TSC `now`: arms, fires (calling `signal` for each
    /// notification, in trigger order) and disarms as the module says, and
    /// sets the next inspection. A page of the wrong size is left alone.
    pub fn inspect(&mut self, page: &[AtomicU64], now: u64, mut signal: impl FnMut(Signal)) {
        if page.len() != MONITOR_PAGE_WORDS {
            self.due = now.saturating_add(self.ticks(IDLE_PERIOD));
            return;
        }
        let enabled = page[TRIGGER_STATE_WORD].load(Ordering::Acquire) as u32 & GROUP_ENABLE_MASK;
        let mut next = IDLE_PERIOD;
        let mut wake = u64::MAX;
        let mut budget = MAX_FIRES;
        for group in (0..MONITOR_GROUPS).filter(|g| enabled & (1 << g) != 0) {
            let given = |bit: usize| hint(page, group * TRIGGERS_PER_GROUP + bit);
            let latency = |bit: usize| given(bit).clamp(MIN_LATENCY, MAX_LATENCY);
            let lowest = (0..TRIGGERS_PER_GROUP).map(given).filter(|&l| l != 0).min().unwrap_or(MIN_LATENCY);
            next = next.min(lowest.clamp(MIN_LATENCY, MAX_LATENCY));
            let fired = self.inspect_group(page, group, now, &latency, budget);
            budget -= fired.count_ones();
            for bit in (0..TRIGGERS_PER_GROUP).filter(|b| fired & (1 << b) != 0) {
                let p = HvMonitorParameter::from_word(
                    page[parameter_word(group * TRIGGERS_PER_GROUP + bit)].load(Ordering::Acquire),
                );
                signal(Signal { connection_id: p.connection_id, flag_number: p.flag_number });
            }
            // An armed trigger fires as soon as its latency has passed.
            for bit in 0..TRIGGERS_PER_GROUP {
                if let Some(at) = self.armed_at[group * TRIGGERS_PER_GROUP + bit] {
                    wake = wake.min(at.saturating_add(self.ticks(latency(bit))));
                }
            }
        }
        // Triggers of groups the guest disabled are forgotten: a group is
        // armed afresh when it is enabled again.
        for group in (0..MONITOR_GROUPS).filter(|g| enabled & (1 << g) == 0) {
            self.armed_at[group * TRIGGERS_PER_GROUP..][..TRIGGERS_PER_GROUP].fill(None);
        }
        self.due = now.saturating_add(self.ticks(next)).min(wake.max(now));
        if budget == 0 {
            self.due = self.due.max(now.saturating_add(self.ticks(MIN_LATENCY)));
        }
    }

    /// One group's arming and firing (at most `budget` triggers), in one
    /// compare-exchange; returns the triggers fired.
    fn inspect_group(
        &mut self,
        page: &[AtomicU64],
        group: usize,
        now: u64,
        latency: &dyn Fn(usize) -> u64,
        budget: u32,
    ) -> u32 {
        let word = &page[trigger_group_word(group)];
        let base = group * TRIGGERS_PER_GROUP;
        let mut seen = word.load(Ordering::Acquire);
        for _ in 0..CAS_TRIES {
            let g = HvMonitorTriggerGroup::from_word(seen);
            // Armed in the page but not by this VID (a restart, or the
            // guest): counts from now.
            let mut due = 0u32;
            for bit in (0..TRIGGERS_PER_GROUP).filter(|b| g.pending & g.armed & (1 << b) != 0) {
                let at = self.armed_at[base + bit].unwrap_or(now);
                if now.saturating_sub(at) >= self.ticks(latency(bit)) && due.count_ones() < budget {
                    due |= 1 << bit;
                }
            }
            let arm = g.pending & !g.armed;
            let next = HvMonitorTriggerGroup { pending: g.pending & !due, armed: (g.armed | arm) & g.pending & !due };
            match word.compare_exchange(seen, next.to_word(), Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    for bit in 0..TRIGGERS_PER_GROUP {
                        let slot = &mut self.armed_at[base + bit];
                        if next.armed & (1 << bit) == 0 {
                            *slot = None;
                        } else if arm & (1 << bit) != 0 || slot.is_none() {
                            *slot = Some(now);
                        }
                    }
                    return due;
                }
                Err(changed) => seen = changed,
            }
        }
        0
    }
}

/// Trigger `trigger`'s latency hint as given (0: none).
fn hint(page: &[AtomicU64], trigger: usize) -> u64 {
    let (word, shift) = latency_word(trigger);
    u64::from((page[word].load(Ordering::Relaxed) >> shift) as u16)
}

#[cfg(test)]
mod tests;
