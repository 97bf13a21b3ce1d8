//! The local APIC timer (SDM vol. 3 11.5.4): one-shot and periodic modes
//! counting the initial count down at the APIC timer frequency over the
//! divide value, and TSC-deadline mode (IA32_TSC_DEADLINE). Time is TSC
//! ticks; the model computes the count from the time it was loaded.

use super::{scale, scale_up};

/// The timer mode field of the LVT timer register (bits 18:17).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerMode {
    OneShot,
    Periodic,
    TscDeadline,
}

impl TimerMode {
    /// The mode of field value `bits`; the reserved value 3 counts as one-shot.
    pub const fn from_bits(bits: u8) -> TimerMode {
        match bits & 3 {
            1 => TimerMode::Periodic,
            2 => TimerMode::TscDeadline,
            _ => TimerMode::OneShot,
        }
    }
}

/// The divide configuration register's defined bits (0, 1 and 3).
pub const DIVIDE_BITS: u32 = 0b1011;

/// The divisor of a divide configuration value: bits 3,1:0 = 111 is 1,
/// otherwise `2 << value`.
pub const fn divisor(divide: u32) -> u64 {
    let code = (divide & 3) | ((divide >> 1) & 4);
    if code == 7 { 1 } else { 2 << code }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApicTimer {
    tsc_hz: u64,
    apic_hz: u64,
    mode: TimerMode,
    initial: u32,
    divide: u32,
    /// TSC when the count was (re)loaded.
    start: u64,
    /// Counting in one-shot or periodic mode.
    armed: bool,
    /// Whole periods already reported (periodic mode).
    periods: u64,
    /// IA32_TSC_DEADLINE; 0 is disarmed.
    deadline: u64,
    /// [`ApicTimer::next_fire`], kept as the state changes: every exit
    /// asks for it, and the periods need a 128-bit division.
    fire: Option<u64>,
}

impl ApicTimer {
    /// A stopped timer for a TSC of `tsc_hz` and an APIC timer (bus) clock
    /// of `apic_hz`.
    pub const fn new(tsc_hz: u64, apic_hz: u64) -> ApicTimer {
        ApicTimer {
            tsc_hz,
            apic_hz,
            mode: TimerMode::OneShot,
            initial: 0,
            divide: 0,
            start: 0,
            armed: false,
            periods: 0,
            deadline: 0,
            fire: None,
        }
    }

    /// Back to the reset state, keeping the clocks.
    pub fn reset(&mut self) {
        *self = ApicTimer::new(self.tsc_hz, self.apic_hz);
    }

    /// The TSC and APIC timer frequencies.
    pub const fn clocks(&self) -> (u64, u64) {
        (self.tsc_hz, self.apic_hz)
    }

    pub const fn mode(&self) -> TimerMode {
        self.mode
    }

    pub const fn initial(&self) -> u32 {
        self.initial
    }

    pub const fn divide(&self) -> u32 {
        self.divide
    }

    /// APIC timer ticks (before the divider) between the load and `now`.
    fn ticks_since_start(&self, now: u64) -> u64 {
        scale(now.saturating_sub(self.start), self.apic_hz, self.tsc_hz)
    }

    /// The TSC at which `ticks` APIC timer ticks have passed since the load.
    fn tsc_after(&self, ticks: u64) -> u64 {
        self.start.saturating_add(scale_up(ticks, self.tsc_hz, self.apic_hz))
    }

    /// Counter decrements of one period, in APIC timer ticks.
    fn period(&self) -> u64 {
        u64::from(self.initial) * divisor(self.divide)
    }

    /// The LVT timer mode changed: a change to or from TSC-deadline mode
    /// disarms the timer (SDM 11.5.4.1).
    pub fn set_mode(&mut self, mode: TimerMode, now: u64) {
        if (mode == TimerMode::TscDeadline) != (self.mode == TimerMode::TscDeadline) {
            self.armed = false;
            self.deadline = 0;
            self.initial = 0;
        } else if mode != self.mode && self.armed {
            // One-shot <-> periodic: the count goes on from the start of
            // the current period.
            let period = self.period().max(1);
            self.start = self.tsc_after(self.ticks_since_start(now) / period * period);
            self.periods = 0;
        }
        self.mode = mode;
        self.fire = self.due();
    }

    /// A write of the initial count: (re)starts the count, 0 stops it.
    /// Ignored in TSC-deadline mode.
    pub fn set_initial(&mut self, value: u32, now: u64) {
        if self.mode == TimerMode::TscDeadline {
            return;
        }
        self.initial = value;
        self.start = now;
        self.periods = 0;
        self.armed = value != 0;
        self.fire = self.due();
    }

    /// A write of the divide configuration: a running count goes on from
    /// its current value at the new rate.
    pub fn set_divide(&mut self, value: u32, now: u64) {
        let value = value & DIVIDE_BITS;
        if self.armed && self.mode != TimerMode::TscDeadline {
            let done = u64::from(self.initial - self.current(now));
            self.divide = value;
            let ticks = done * divisor(value);
            self.start = now.saturating_sub(scale_up(ticks, self.tsc_hz, self.apic_hz));
            self.periods = 0;
        }
        self.divide = value;
        self.fire = self.due();
    }

    /// The current count register.
    pub fn current(&self, now: u64) -> u32 {
        if !self.armed || self.mode == TimerMode::TscDeadline || self.initial == 0 {
            return 0;
        }
        let done = self.ticks_since_start(now) / divisor(self.divide);
        let initial = u64::from(self.initial);
        let left = match self.mode {
            TimerMode::Periodic => initial - done % initial,
            _ => initial.saturating_sub(done),
        };
        left as u32
    }

    /// IA32_TSC_DEADLINE as read: 0 outside TSC-deadline mode or once fired.
    pub fn deadline(&self, now: u64) -> u64 {
        if self.mode == TimerMode::TscDeadline && now < self.deadline { self.deadline } else { 0 }
    }

    /// A write of IA32_TSC_DEADLINE (ignored outside TSC-deadline mode).
    pub fn set_deadline(&mut self, value: u64) {
        if self.mode == TimerMode::TscDeadline {
            self.deadline = value;
        }
        self.fire = self.due();
    }

    /// The TSC at which the timer next fires, if it is armed.
    pub const fn next_fire(&self) -> Option<u64> {
        self.fire
    }

    /// [`ApicTimer::next_fire`] computed from the state.
    fn due(&self) -> Option<u64> {
        match self.mode {
            TimerMode::TscDeadline => (self.deadline != 0).then_some(self.deadline),
            TimerMode::OneShot => self.armed.then(|| self.tsc_after(self.period())),
            TimerMode::Periodic => self.armed.then(|| self.tsc_after(self.period().saturating_mul(self.periods + 1))),
        }
    }

    /// Retires the expiries up to `now`; true if the timer fired (once
    /// however many periods passed).
    pub fn poll(&mut self, now: u64) -> bool {
        match self.next_fire() {
            Some(at) if now >= at => {
                match self.mode {
                    TimerMode::TscDeadline => self.deadline = 0,
                    TimerMode::OneShot => self.armed = false,
                    TimerMode::Periodic => self.periods = self.ticks_since_start(now) / self.period(),
                }
                self.fire = self.due();
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ApicTimer, TimerMode};

    /// The fire time kept as the state changes is the one the state gives,
    /// after every kind of change, in every mode (a change that forgot
    /// to keep it would leave a stale one: a timer late or early).
    #[test]
    fn the_kept_fire_time_follows_every_change() {
        let mut timer = ApicTimer::new(3_000_000_000, 100_000_000);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut now = 0u64;
        let mut fired = 0;
        let modes = [TimerMode::OneShot, TimerMode::Periodic, TimerMode::TscDeadline];
        for _ in 0..20_000 {
            let r = next();
            now += r % 5_000;
            match r >> 61 {
                0 => timer.set_mode(modes[(r >> 20) as usize % 3], now),
                1 | 2 => timer.set_initial((r >> 24) as u32 % 2_000, now),
                3 => timer.set_divide((r >> 24) as u32, now),
                4 => timer.set_deadline(now + (r >> 24) % 10_000),
                5 => timer.reset(),
                _ => fired += u32::from(timer.poll(now)),
            }
            assert_eq!(timer.next_fire(), timer.due(), "{timer:?}");
        }
        assert!(fired > 100, "{fired} fired");
    }
}
