//! The tick clock on the TSC, and when a CPU's timer must next fire.
//!
//! The scheduler's tick ([`abi::TICK_HZ`]) is a count of TSC periods:
//! tick `n` begins when the TSC reaches `base + n * per_tick`. A CPU's
//! timer (one-shot or TSC-deadline) is armed for the earlier of its next
//! tick boundary and the earliest TSC deadline of a thread at home on it
//! ([`crate::ipc::Ipc::next_deadline`]); an interrupt that finds no new
//! tick only expires deadlines.

/// The tick clock: `per_tick` TSC cycles a tick from `base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TickClock {
    pub base: u64,
    pub per_tick: u64,
}

impl TickClock {
    /// From the calibrated TSC frequency (`tsc_hz`, 0 if unknown: then a
    /// tick per cycle, never a division by zero) and `ticks_per_second`.
    pub const fn new(base: u64, tsc_hz: u64, ticks_per_second: u64) -> TickClock {
        let per_tick = match tsc_hz.checked_div(ticks_per_second) {
            Some(per_tick) => per_tick,
            None => tsc_hz,
        };
        TickClock { base, per_tick: if per_tick == 0 { 1 } else { per_tick } }
    }

    /// Ticks begun by TSC `now` since `base` (0 before it: a TSC another CPU
    /// read a little behind).
    pub const fn ticks_at(self, now: u64) -> u64 {
        now.saturating_sub(self.base) / self.per_tick
    }

    /// The TSC at which the tick after the one `now` is in begins.
    pub const fn next_boundary(self, now: u64) -> u64 {
        self.base.saturating_add((self.ticks_at(now) + 1).saturating_mul(self.per_tick))
    }

    /// [`next_boundary`](Self::next_boundary) from `cached`, the boundary
    /// it gave at an earlier TSC (0: none): `cached` while `now` is before
    /// it, the one after it while `now` is within that tick (a timer
    /// interrupt at its boundary), else found by division.
    pub const fn next_boundary_from(self, cached: u64, now: u64) -> u64 {
        if now < cached {
            return cached;
        }
        // A wrap makes `after` small: then found by division, as it should.
        let after = cached.wrapping_add(self.per_tick);
        if cached != 0 && now < after { after } else { self.next_boundary(now) }
    }
}

/// When a timer must next fire at TSC `now`, given the next tick boundary
/// `tick` (from [`TickClock::next_boundary`], or a cached copy while `now`
/// is still before it): `tick`, or `deadline` if sooner (a passed one:
/// `now`).
pub const fn wake_at(now: u64, tick: u64, deadline: Option<u64>) -> u64 {
    match deadline {
        Some(d) => {
            let d = if d > now { d } else { now };
            if d < tick { d } else { tick }
        }
        None => tick,
    }
}

/// The local APIC timer's counts per TSC cycle as a 32.32 fixed-point
/// factor, rounded up: one multiplication converts a wait in cycles to
/// counts that never end before it (no division on the way out of ring 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountsPerCycle(u64);

impl CountsPerCycle {
    /// From the calibrated frequencies; a zero `tsc_hz` gives the factor
    /// that saturates every conversion (the longest wait, re-armed later).
    pub fn new(counts_per_second: u64, tsc_hz: u64) -> CountsPerCycle {
        if tsc_hz == 0 {
            return CountsPerCycle(u64::MAX);
        }
        let factor = (u128::from(counts_per_second) << 32).div_ceil(u128::from(tsc_hz));
        CountsPerCycle(u64::try_from(factor).unwrap_or(u64::MAX))
    }

    /// The factor as stored in an atomic, and back.
    pub const fn into_bits(self) -> u64 {
        self.0
    }

    pub const fn from_bits(bits: u64) -> CountsPerCycle {
        CountsPerCycle(bits)
    }

    /// `cycles` as timer counts, rounded up (a count more where the
    /// product is whole: never early), at least 1 (0 stops the timer), at
    /// most `u32::MAX` (a later wake re-arms).
    pub const fn counts(self, cycles: u64) -> u32 {
        let scaled = (cycles as u128 * self.0 as u128) >> 32;
        if scaled >= u32::MAX as u128 { u32::MAX } else { scaled as u32 + 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact conversion of TSC cycles to timer counts that
    /// [`CountsPerCycle`] approximates from above: rounded up, at least 1
    /// (0 stops the timer), at most `u32::MAX`.
    fn cycles_to_counts(cycles: u64, counts_per_second: u64, tsc_hz: u64) -> u32 {
        if tsc_hz == 0 {
            return u32::MAX;
        }
        let counts = (u128::from(cycles) * u128::from(counts_per_second)).div_ceil(u128::from(tsc_hz));
        u32::try_from(counts).unwrap_or(u32::MAX).max(1)
    }

    /// When a CPU's timer must next fire at TSC `now` without a cached
    /// boundary: its next tick, or `deadline` if sooner.
    fn next_wake(clock: TickClock, now: u64, deadline: Option<u64>) -> u64 {
        wake_at(now, clock.next_boundary(now), deadline)
    }

    const CLOCK: TickClock = TickClock::new(1_000, 1_000_000_000, 100);

    #[test]
    fn ticks_count_whole_tsc_periods_from_base() {
        assert_eq!(CLOCK.per_tick, 10_000_000);
        assert_eq!(CLOCK.ticks_at(0), 0, "a TSC behind base is tick 0");
        assert_eq!(CLOCK.ticks_at(1_000 + 9_999_999), 0);
        assert_eq!(CLOCK.ticks_at(1_000 + 10_000_000), 1);
        assert_eq!(CLOCK.ticks_at(u64::MAX), (u64::MAX - 1_000) / 10_000_000);
        assert_eq!(CLOCK.next_boundary(1_000), 1_000 + 10_000_000);
        assert_eq!(CLOCK.next_boundary(1_000 + 10_000_000), 1_000 + 20_000_000, "on a boundary: the next one");
        assert_eq!(CLOCK.next_boundary(u64::MAX), u64::MAX);
    }

    #[test]
    fn a_clock_without_frequency_never_divides_by_zero() {
        let c = TickClock::new(5, 0, 100);
        assert_eq!(c.per_tick, 1);
        assert_eq!(c.ticks_at(10), 5);
        assert_eq!(TickClock::new(0, 1_000, 0).per_tick, 1_000);
    }

    #[test]
    fn the_next_wake_is_the_earlier_of_the_tick_and_the_deadline() {
        let now = 1_000 + 3_000_000;
        assert_eq!(next_wake(CLOCK, now, None), 1_000 + 10_000_000);
        assert_eq!(next_wake(CLOCK, now, Some(now + 1_000_000)), now + 1_000_000);
        assert_eq!(next_wake(CLOCK, now, Some(u64::MAX)), 1_000 + 10_000_000, "far future: the tick");
        assert_eq!(next_wake(CLOCK, now, Some(5)), now, "passed: at once");
        assert_eq!(next_wake(CLOCK, now, Some(0)), now);
    }

    #[test]
    fn counts_round_up_and_stay_in_the_register() {
        // 1 GHz TSC, 62.5 MHz timer: 16 cycles a count.
        assert_eq!(cycles_to_counts(16, 62_500_000, 1_000_000_000), 1);
        assert_eq!(cycles_to_counts(17, 62_500_000, 1_000_000_000), 2, "never early");
        assert_eq!(cycles_to_counts(0, 62_500_000, 1_000_000_000), 1, "0 would stop the timer");
        assert_eq!(cycles_to_counts(u64::MAX, 62_500_000, 1_000_000_000), u32::MAX);
        assert_eq!(cycles_to_counts(100, 62_500_000, 0), u32::MAX);
    }

    #[test]
    fn the_fixed_point_factor_is_never_early_and_late_by_at_most_a_count() {
        for (per_second, hz) in [
            (62_500_000, 1_000_000_000),
            (1_000_000_000 / 16, 2_893_212_345),
            (6_250_000, 3_000_000_000),
            (1, 7),
            (999, 1_000),
        ] {
            let factor = CountsPerCycle::new(per_second, hz);
            for cycles in [0u64, 1, 15, 16, 17, 1_000, 999_999, 10_000_000, 123_456_789, 1 << 40] {
                let exact = cycles_to_counts(cycles, per_second, hz);
                let fast = factor.counts(cycles);
                assert!(fast >= exact, "{cycles} cycles at {per_second}/{hz}: {fast} < {exact}");
                // The factor's rounding adds under one count per 2^32 cycles.
                let slack = 1 + (cycles >> 32) as u32;
                assert!(
                    fast <= exact.saturating_add(slack),
                    "{cycles} cycles at {per_second}/{hz}: {fast} > {exact} + {slack}"
                );
            }
        }
        assert_eq!(CountsPerCycle::new(62_500_000, 0).counts(100), u32::MAX);
        assert_eq!(CountsPerCycle::new(62_500_000, 1_000_000_000).counts(u64::MAX), u32::MAX);
    }

    #[test]
    fn a_cached_boundary_is_kept_stepped_or_found_again() {
        let first = CLOCK.next_boundary(1_000);
        assert_eq!(CLOCK.next_boundary_from(0, 1_000), first, "none cached: found");
        assert_eq!(CLOCK.next_boundary_from(first, first - 1), first, "still ahead: kept");
        assert_eq!(CLOCK.next_boundary_from(first, first), first + CLOCK.per_tick, "reached: one tick on");
        let later = first + 5 * CLOCK.per_tick + 7;
        assert_eq!(CLOCK.next_boundary_from(first, later), CLOCK.next_boundary(later), "ticks behind: found");
        for now in [first, first + 1, first + CLOCK.per_tick - 1, later] {
            assert_eq!(CLOCK.next_boundary_from(first, now), CLOCK.next_boundary(now), "TSC {now}");
        }
    }
}
