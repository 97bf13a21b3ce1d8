//! Rate limits for log lines that a less trusted party can make someone
//! print: a guest through its VID, a guest or a VMM through ring 0. Without
//! them a guest that repeats what logs a line owns the shared console and
//! the CPU time of everyone who prints it.
//!
//! [`LogLimit`] is a token bucket counted in ticks: `burst` lines at once,
//! then one every `ticks_per_line`. A line over the limit is held back and
//! counted; the next line let through says how many went before it
//! ([`Verdict::Log`]), and [`LogLimit::take_held_back`] gives the count for
//! a closing summary. Used by the kernel (`vm_log!`) and the VID (per
//! partition), each with its own limits.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

/// What to do with a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Print it; `held_back` lines were held back since the last one
    /// printed (say so first when not 0).
    Log { held_back: u64 },
    /// Do not print it (it is counted).
    Hold,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogLimit {
    burst: u32,
    ticks_per_line: u64,
    tokens: u32,
    /// The tick the bucket was last refilled up to.
    refilled: u64,
    /// Held back since the last line let through.
    held_back: u64,
    /// Held back and not yet reported by a line or a summary.
    unreported: u64,
}

impl LogLimit {
    /// A full bucket of `burst` lines (at least 1) refilled with one line
    /// every `ticks_per_line` ticks (at least 1).
    pub const fn new(burst: u32, ticks_per_line: u64) -> LogLimit {
        LogLimit {
            burst: if burst == 0 { 1 } else { burst },
            ticks_per_line: if ticks_per_line == 0 { 1 } else { ticks_per_line },
            tokens: if burst == 0 { 1 } else { burst },
            refilled: 0,
            held_back: 0,
            unreported: 0,
        }
    }

    /// A line at tick `now` (ticks never go back; if they seem to, no
    /// refill happens).
    pub fn check(&mut self, now: u64) -> Verdict {
        if now > self.refilled {
            let lines = (now - self.refilled) / self.ticks_per_line;
            if lines > 0 {
                let room = u64::from(self.burst - self.tokens);
                self.tokens += lines.min(room) as u32;
                self.refilled =
                    if self.tokens == self.burst { now } else { self.refilled + lines * self.ticks_per_line };
            }
        }
        if self.tokens == 0 {
            self.held_back += 1;
            self.unreported += 1;
            return Verdict::Hold;
        }
        self.tokens -= 1;
        let held_back = core::mem::take(&mut self.held_back);
        self.unreported = 0;
        Verdict::Log { held_back }
    }

    /// Lines held back that no line let through has reported yet (for a
    /// summary at the end), and forgets them.
    pub fn take_held_back(&mut self) -> u64 {
        self.held_back = 0;
        core::mem::take(&mut self.unreported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_one_line_per_period() {
        let mut l = LogLimit::new(3, 10);
        for _ in 0..3 {
            assert_eq!(l.check(0), Verdict::Log { held_back: 0 });
        }
        assert_eq!(l.check(0), Verdict::Hold);
        assert_eq!(l.check(9), Verdict::Hold);
        assert_eq!(l.check(10), Verdict::Log { held_back: 2 }, "the line that passes reports the two held back");
        assert_eq!(l.check(11), Verdict::Hold);
        assert_eq!(l.check(20), Verdict::Log { held_back: 1 });
    }

    #[test]
    fn the_bucket_refills_to_the_burst_and_no_further() {
        let mut l = LogLimit::new(2, 5);
        assert_eq!(l.check(0), Verdict::Log { held_back: 0 });
        assert_eq!(l.check(0), Verdict::Log { held_back: 0 });
        let passed = (0..10).filter(|_| l.check(1000) != Verdict::Hold).count();
        assert_eq!(passed, 2, "a long pause refills only the burst");
    }

    #[test]
    fn a_flood_is_bounded_by_the_rate_whatever_its_size() {
        let mut l = LogLimit::new(16, 50);
        let (mut logged, mut reported) = (0, 0);
        for i in 0..1_000_000u64 {
            // A million lines over 1000 ticks (10 s at 100 Hz).
            if let Verdict::Log { held_back } = l.check(i / 1000) {
                logged += 1;
                reported += held_back;
            }
        }
        assert_eq!(logged, 16 + 999 / 50);
        assert_eq!(reported + l.take_held_back(), 1_000_000 - logged, "every line held back is reported once");
        assert_eq!(l.take_held_back(), 0);
    }

    #[test]
    fn the_summary_counts_only_what_no_line_reported() {
        let mut l = LogLimit::new(1, 10);
        assert_eq!(l.check(0), Verdict::Log { held_back: 0 });
        assert_eq!(l.check(1), Verdict::Hold);
        assert_eq!(l.check(10), Verdict::Log { held_back: 1 });
        assert_eq!(l.take_held_back(), 0);
        assert_eq!(l.check(11), Verdict::Hold);
        assert_eq!(l.take_held_back(), 1);
        assert_eq!(l.check(30), Verdict::Log { held_back: 0 }, "the summary reported it");
    }

    #[test]
    fn time_going_back_refills_nothing_and_zero_arguments_are_one() {
        let mut l = LogLimit::new(0, 0);
        assert_eq!(l.check(100), Verdict::Log { held_back: 0 });
        assert_eq!(l.check(50), Verdict::Hold);
        assert_eq!(l.check(101), Verdict::Log { held_back: 1 });
    }
}
