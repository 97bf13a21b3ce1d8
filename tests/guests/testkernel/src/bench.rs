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

/// What every line of the kernel starts with.
pub const PREFIX: &str = "testkernel: ";

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
