//! What a partition may make the VID print: every line its guest causes
//! (its console, the events the exit handlers report, its APs' starts and
//! halts, its crash notifications) passes a rate limit of its own, so a
//! guest that repeats what logs a line neither owns the shared console nor
//! spends the VID's, the partition manager's and the console service's time
//! (their work runs at priorities above every partition). What is held
//! back is counted, said before a line let through (at most once every
//! [`NOTE_TICKS`]), and summed up when the partition ends.
//!
//! The console's limit is about a 115,200-baud line's worth (100 lines of
//! 120 bytes a second, after a burst of 500: Linux's boot log fits); other
//! lines a guest causes are diagnostics, 2 a second after a burst of 20.

use lograte::{LogLimit, Verdict};

/// Ticks are the kernel's (100 a second).
pub const CONSOLE_BURST: u32 = 500;
pub const CONSOLE_TICKS_PER_LINE: u64 = 1;
pub const EVENT_BURST: u32 = 20;
pub const EVENT_TICKS_PER_LINE: u64 = 50;
/// The least time between two notes of lines held back.
pub const NOTE_TICKS: u64 = 100;

/// What to do with a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    /// Print it, after a note that this many lines were held back, if any.
    Print {
        held_back: Option<u64>,
    },
    Hold,
}

/// Which limit a line falls under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A line of the guest's console.
    Console,
    /// Anything else the guest makes the VID say.
    Event,
}

/// One partition's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionLogs {
    console: LogLimit,
    events: LogLimit,
    /// Held back, in all, by kind.
    held_console: u64,
    held_events: u64,
    /// Held back and not yet noted; when the last note was.
    unnoted: u64,
    noted_at: Option<u64>,
}

impl Default for PartitionLogs {
    fn default() -> PartitionLogs {
        PartitionLogs::new()
    }
}

impl PartitionLogs {
    pub const fn new() -> PartitionLogs {
        PartitionLogs {
            console: LogLimit::new(CONSOLE_BURST, CONSOLE_TICKS_PER_LINE),
            events: LogLimit::new(EVENT_BURST, EVENT_TICKS_PER_LINE),
            held_console: 0,
            held_events: 0,
            unnoted: 0,
            noted_at: None,
        }
    }

    /// A line of `kind` at tick `now`: print it (after a note of how many
    /// were held back, when there are some and the last note is
    /// [`NOTE_TICKS`] old) or not.
    pub fn check(&mut self, kind: Kind, now: u64) -> Line {
        let (limit, held) = match kind {
            Kind::Console => (&mut self.console, &mut self.held_console),
            Kind::Event => (&mut self.events, &mut self.held_events),
        };
        match limit.check(now) {
            Verdict::Hold => {
                *held += 1;
                Line::Hold
            }
            Verdict::Log { held_back } => {
                self.unnoted += held_back;
                let due = self.noted_at.is_none_or(|at| now.saturating_sub(at) >= NOTE_TICKS);
                if self.unnoted != 0 && due {
                    self.noted_at = Some(now);
                    Line::Print { held_back: Some(core::mem::take(&mut self.unnoted)) }
                } else {
                    Line::Print { held_back: None }
                }
            }
        }
    }

    /// Lines held back over the partition's life: (console, other), if any.
    pub fn held_back(&self) -> Option<(u64, u64)> {
        (self.held_console + self.held_events != 0).then_some((self.held_console, self.held_events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_and_events_have_limits_of_their_own() {
        let mut logs = PartitionLogs::new();
        let passed = |logs: &mut PartitionLogs, kind, n| (0..n).filter(|_| logs.check(kind, 0) != Line::Hold).count();
        assert_eq!(passed(&mut logs, Kind::Event, 100), EVENT_BURST as usize);
        assert_eq!(passed(&mut logs, Kind::Console, 1000), CONSOLE_BURST as usize, "events do not use the console's");
        assert_eq!(logs.held_back(), Some((500, 80)));
        assert_eq!(logs.check(Kind::Event, EVENT_TICKS_PER_LINE), Line::Print { held_back: Some(80) });
        assert_eq!(PartitionLogs::new().held_back(), None);
    }

    #[test]
    fn notes_of_lines_held_back_come_at_most_once_a_second() {
        let mut logs = PartitionLogs::new();
        for _ in 0..CONSOLE_BURST + 10 {
            logs.check(Kind::Console, 0);
        }
        assert_eq!(logs.check(Kind::Console, 1), Line::Print { held_back: Some(10) });
        logs.check(Kind::Console, 1);
        assert_eq!(logs.check(Kind::Console, 2), Line::Print { held_back: None }, "noted a tick ago: kept");
        logs.check(Kind::Console, 2);
        assert_eq!(logs.check(Kind::Console, 1 + NOTE_TICKS), Line::Print { held_back: Some(2) });
    }

    #[test]
    fn a_flood_of_a_minute_prints_what_the_rates_allow() {
        let mut logs = PartitionLogs::new();
        let mut printed = 0u64;
        for tick in 0..6000u64 {
            for _ in 0..100 {
                printed += u64::from(logs.check(Kind::Event, tick) != Line::Hold);
                printed += u64::from(logs.check(Kind::Console, tick) != Line::Hold);
            }
        }
        let bound =
            u64::from(EVENT_BURST + CONSOLE_BURST) + 6000 / EVENT_TICKS_PER_LINE + 6000 / CONSOLE_TICKS_PER_LINE;
        assert!(printed <= bound, "{printed} lines of 1,200,000 printed, at most {bound}");
    }
}
