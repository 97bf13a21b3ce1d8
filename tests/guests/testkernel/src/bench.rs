//! The figures of the `smpbench` test: timed samples summed up as a mean
//! and a least, printed as the line `tessera bench` parses, `bench: <what>:
//! <mean> cycles (min <least>)`. Cycles are TSC ticks; under QEMU with
//! `-icount` they count instructions.

use crate::Text;
use crate::protocol::CONSOLE_LINE_MAX;
use core::fmt::Write;

/// The samples of one figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Samples {
    total: u64,
    count: u64,
    least: u64,
}

impl Samples {
    pub const fn new() -> Samples {
        Samples { total: 0, count: 0, least: u64::MAX }
    }

    pub fn add(&mut self, cycles: u64) {
        self.total = self.total.saturating_add(cycles);
        self.count += 1;
        self.least = self.least.min(cycles);
    }

    pub const fn count(&self) -> u64 {
        self.count
    }

    /// The mean, rounded down (0 without samples).
    pub fn mean(&self) -> u64 {
        self.total.checked_div(self.count).unwrap_or(0)
    }

    /// The least sample (0 without samples).
    pub const fn least(&self) -> u64 {
        if self.count == 0 { 0 } else { self.least }
    }
}

impl Default for Samples {
    fn default() -> Self {
        Self::new()
    }
}

/// The line the kernel prints for figure `what` (without its
/// `testkernel: ` prefix), cut to what fits one console line with it.
pub fn line(what: &str, samples: &Samples) -> Text<{ CONSOLE_LINE_MAX - PREFIX.len() - 1 }> {
    let mut text = Text::new();
    let _ = write!(text, "bench: {what}: {} cycles (min {})", samples.mean(), samples.least());
    text
}

/// The name of the `exitbench` figure of exit `exit` (`CPUID`, `port
/// read`) in a partition of `cpus` VPs, its VID where `vid` says
/// (`cross-cpu`: on another CPU than the VP; `priority`: at another
/// priority than the default systems'); `None` for an unknown `vid`.
pub fn exit_figure(exit: &str, cpus: u32, vid: Option<&str>) -> Option<Text<96>> {
    let mut text = Text::new();
    let _ = match (vid, cpus) {
        (None, 1) => write!(text, "vm exit forwarded to the VID and back ({exit})"),
        (None, n) => write!(text, "vm exit forwarded to the VID and back ({exit}, {n} VPs in the partition)"),
        (Some("cross-cpu"), _) => write!(text, "vm exit forwarded to a VID on another CPU ({exit})"),
        (Some("priority"), _) => write!(text, "vm exit forwarded to a VID at a different priority ({exit})"),
        _ => return None,
    };
    Some(text)
}

/// What every line of the kernel starts with.
pub const PREFIX: &str = "testkernel: ";

/// A periodic timer's ticks against its schedule, in reference time (100
/// ns units): tick i is due `(i + 1) * period` after `start`, when it was
/// enabled; lateness is its arrival minus that, an interval the time
/// since the previous arrival (the first: since `start`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Jitter {
    pub ticks: u64,
    /// Arrivals before their due time (the TLFS forbids them).
    pub early: u64,
    pub late_mean: u64,
    pub late_max: u64,
    pub interval_min: u64,
    pub interval_max: u64,
    /// The intervals' standard deviation, rounded down.
    pub interval_sd: u64,
}

impl Jitter {
    /// The summary of `arrivals` (in order) of a timer of `period` enabled at `start`.
    pub fn of(start: u64, period: u64, arrivals: &[u64]) -> Jitter {
        let mut j = Jitter { ticks: arrivals.len() as u64, interval_min: u64::MAX, ..Jitter::default() };
        let (mut late_sum, mut sum, mut squares, mut last) = (0u128, 0u128, 0u128, start);
        for (i, &at) in arrivals.iter().enumerate() {
            let due = start.wrapping_add(period.wrapping_mul(i as u64 + 1));
            match at.checked_sub(due) {
                None => j.early += 1,
                Some(late) => (late_sum, j.late_max) = (late_sum + u128::from(late), j.late_max.max(late)),
            }
            let interval = at.wrapping_sub(last);
            (j.interval_min, j.interval_max) = (j.interval_min.min(interval), j.interval_max.max(interval));
            (sum, squares) = (sum + u128::from(interval), squares + u128::from(interval) * u128::from(interval));
            last = at;
        }
        let n = u128::from(j.ticks.max(1));
        j.late_mean = (late_sum / n) as u64;
        // Variance (n Σx² - (Σx)²) / n², exact in integers.
        j.interval_sd = isqrt((n * squares).saturating_sub(sum * sum) / (n * n)) as u64;
        if j.ticks == 0 {
            j.interval_min = 0;
        }
        j
    }
}

/// The integer square root (Newton's method; no floating point here).
fn isqrt(v: u128) -> u128 {
    if v < 2 {
        return v;
    }
    let mut x = v;
    let mut y = x.div_ceil(2);
    while y < x {
        x = y;
        y = (x + v / x) / 2;
    }
    x
}

/// The two lines for the jitter of `mode`'s ticks (without the
/// `testkernel: ` prefix), which `tessera bench` parses, in 100 ns units:
/// `bench: stimer lateness (<mode>): <ticks> ticks, <early> early, mean
/// <m> max <m> (100 ns)` and `bench: stimer intervals (<mode>): <min>..<max>
/// sd <sd> (100 ns)`.
pub fn jitter_lines(mode: &str, j: &Jitter) -> [Text<{ CONSOLE_LINE_MAX - PREFIX.len() - 1 }>; 2] {
    let (mut late, mut intervals) = (Text::new(), Text::new());
    let _ = write!(
        late,
        "bench: stimer lateness ({mode}): {} ticks, {} early, mean {} max {} (100 ns)",
        j.ticks, j.early, j.late_mean, j.late_max
    );
    let _ = write!(
        intervals,
        "bench: stimer intervals ({mode}): {}..{} sd {} (100 ns)",
        j.interval_min, j.interval_max, j.interval_sd
    );
    [late, intervals]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_sum_up_as_mean_and_least() {
        let mut s = Samples::new();
        assert_eq!((s.mean(), s.least(), s.count()), (0, 0, 0));
        for cycles in [300, 100, 200, 201] {
            s.add(cycles);
        }
        assert_eq!((s.mean(), s.least(), s.count()), (200, 100, 4));
        s.add(u64::MAX);
        assert_eq!(s.mean(), u64::MAX / 5, "the total saturates");
    }

    #[test]
    fn exit_figures_are_named_by_where_the_vid_runs() {
        let name = |exit, cpus, vid| exit_figure(exit, cpus, vid).map(|t| t.as_str().to_string());
        assert_eq!(name("CPUID", 1, None).unwrap(), "vm exit forwarded to the VID and back (CPUID)");
        assert_eq!(
            name("CPUID", 2, None).unwrap(),
            "vm exit forwarded to the VID and back (CPUID, 2 VPs in the partition)"
        );
        assert_eq!(name("CPUID", 1, Some("cross-cpu")).unwrap(), "vm exit forwarded to a VID on another CPU (CPUID)");
        assert_eq!(
            name("CPUID", 1, Some("priority")).unwrap(),
            "vm exit forwarded to a VID at a different priority (CPUID)"
        );
        assert_eq!(name("CPUID", 1, Some("elsewhere")), None);
        // The longest printed fits a console line with its figures: the
        // CPUID figure with a VP of every index (`exits` times port reads
        // with one VP only).
        let mut s = Samples::new();
        s.add(999_999);
        let longest = name("CPUID", 16, None).unwrap();
        assert!(line(&longest, &s).as_str().ends_with(" (min 999999)"));
    }

    #[test]
    fn jitter_is_measured_against_the_schedule() {
        // Due at 110, 120, 130, 140: on time, 3 late, 1 late, 5 early.
        let j = Jitter::of(100, 10, &[110, 123, 131, 135]);
        assert_eq!((j.ticks, j.early, j.late_mean, j.late_max), (4, 1, 1, 3));
        // Intervals 10, 13, 8, 4: mean 8.75, variance 10.6875.
        assert_eq!((j.interval_min, j.interval_max, j.interval_sd), (4, 13, 3));
        let steady = Jitter::of(0, 10_000, &[10_000, 20_000, 30_000]);
        assert_eq!((steady.early, steady.late_max, steady.interval_min, steady.interval_sd), (0, 0, 10_000, 0));
        assert_eq!(Jitter::of(5, 1, &[]), Jitter::default());
        let [late, intervals] = jitter_lines("message mode", &Jitter::of(100, 10, &[110, 123, 131, 135]));
        assert_eq!(late.as_str(), "bench: stimer lateness (message mode): 4 ticks, 1 early, mean 1 max 3 (100 ns)");
        assert_eq!(intervals.as_str(), "bench: stimer intervals (message mode): 4..13 sd 3 (100 ns)");
        // Eight digits each (10 s) still fit whole.
        let n = 99_999_999;
        let big =
            Jitter { ticks: n, early: n, late_mean: n, late_max: n, interval_min: n, interval_max: n, interval_sd: n };
        assert!(jitter_lines("message mode", &big).iter().all(|l| l.as_str().ends_with(" (100 ns)")));
        assert_eq!(
            (isqrt(0), isqrt(1), isqrt(15), isqrt(16), isqrt(u128::from(u64::MAX))),
            (0, 1, 3, 4, u128::from(u32::MAX))
        );
    }

    #[test]
    fn the_line_is_what_tessera_bench_parses_and_fits_the_console() {
        let mut s = Samples::new();
        s.add(12_345);
        s.add(12_347);
        let what = "ipi to a VP in guest mode on another CPU (delivery latency)";
        let text = line(what, &s);
        assert_eq!(text.as_str(), format!("bench: {what}: 12346 cycles (min 12345)"));
        // Nine digits each still fit whole.
        let mut big = Samples::new();
        big.add(999_999_999);
        let long = line(what, &big);
        assert!(long.as_str().ends_with(": 999999999 cycles (min 999999999)"), "cut: {}", long.as_str());
    }
}
