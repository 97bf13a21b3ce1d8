//! The Hyper-V *root* scheduler's policy (`[scheduler] policy = "root"`):
//! the hypervisor makes no VP scheduling decisions of its own; the VID
//! decides when each VP of a partition may be in guest mode, through the
//! kernel's capability-checked run/stop interface (`VP_START`,
//! `VP_SUSPEND` on a VP capability with the run right).
//!
//! The policy here is the demonstration one of issue #10: **the
//! application processors (VP 1 and up) run only while VP 0 is halted**.
//! [`RootPolicy`] is the pure state machine; the exit loop
//! (`partitions::serve`) applies the [`Op`]s it returns:
//!
//! - when the VID answers VP 0's HLT with a halt (nothing pending), the
//!   APs it holds are started again ([`RootPolicy::vp0_halts`]);
//! - before VP 0 runs again (the VID posts it an interruption, which
//!   wakes it), every started AP is held ([`RootPolicy::vp0_runs`]): a
//!   running one is suspended (`VP_SUSPEND` returns once it is out of
//!   guest mode), a halted one is only *gated*, the VID posting it nothing
//!   while VP 0 runs (in the kernel a halted VP runs only for an
//!   interruption the VID posted);
//! - an AP a SIPI starts while VP 0 runs gets its start-up state but is
//!   started only when VP 0 halts ([`RootPolicy::sipi`]).

use core::fmt;

/// What the exit loop must do to a VP for the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `VP_START` the VP (held suspended until now).
    Start(usize),
    /// `VP_SUSPEND` the VP (in guest mode, or ready to be).
    Suspend(usize),
}

/// What the loop knows of an AP when VP 0 is to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApState {
    pub index: usize,
    /// Started (by a SIPI) and not stopped since.
    pub started: bool,
    /// Halted (the VID answered its HLT with a halt, nothing pending).
    pub halted: bool,
}

/// Why VP 0 cannot run yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Busy(pub usize);

impl fmt::Display for Busy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VP {} waits for the reply to its exit", self.0)
    }
}

/// The root policy of one partition (VP indices below 64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootPolicy {
    /// VP 0 is halted: the APs may run.
    vp0_halted: bool,
    /// APs the policy suspended (or a SIPI started only logically).
    suspended: u64,
    /// Halted APs the VID must not wake (post nothing to).
    gated: u64,
}

impl Default for RootPolicy {
    fn default() -> Self {
        Self::new()
    }
}

fn bit(v: usize) -> u64 {
    1u64.checked_shl(v as u32).unwrap_or(0)
}

impl RootPolicy {
    /// VP 0 runs first; no AP is started.
    pub const fn new() -> RootPolicy {
        RootPolicy { vp0_halted: false, suspended: 0, gated: 0 }
    }

    /// VP 0 is halted (the APs' turn).
    pub fn vp0_halted(&self) -> bool {
        self.vp0_halted
    }

    /// Whether VP `v` may be in guest mode now.
    pub fn may_run(&self, v: usize) -> bool {
        v == 0 || (self.vp0_halted && self.suspended & bit(v) == 0)
    }

    /// Whether the VID may post an interruption to AP `v` now (which would
    /// wake it if halted). VP 0's posts go through [`vp0_runs`](Self::vp0_runs).
    pub fn may_post(&self, v: usize) -> bool {
        v != 0 && self.may_run(v) && self.gated & bit(v) == 0
    }

    /// Whether AP `v` is held suspended by the policy (not started in the
    /// kernel, though started for the guest).
    pub fn held(&self, v: usize) -> bool {
        self.suspended & bit(v) != 0
    }

    /// VP 0 halted with nothing pending: the held APs run again. Calls `op`
    /// with the `Start`s to make, lowest VP first.
    pub fn vp0_halts(&mut self, mut op: impl FnMut(Op)) {
        self.vp0_halted = true;
        self.gated = 0;
        let held = core::mem::take(&mut self.suspended);
        (1..64).filter(|&v| held & bit(v) != 0).for_each(|v| op(Op::Start(v)));
    }

    /// VP 0 is to run (the VID posts it an interruption or answers its exit
    /// with a resume): every started AP is held first, a running one
    /// suspended (`op` gets the `Suspend`s), a halted one gated. `Err` if
    /// an AP that runs waits for the reply to its exit (`exited`): it cannot
    /// be suspended before that reply, so VP 0 must wait for the next turn
    /// of the loop; nothing changes then.
    pub fn vp0_runs(
        &mut self,
        aps: impl Iterator<Item = ApState> + Clone,
        exited: Option<usize>,
        mut op: impl FnMut(Op),
    ) -> Result<(), Busy> {
        if !self.vp0_halted {
            return Ok(());
        }
        let running = |a: &ApState| a.index != 0 && a.started && !a.halted && self.suspended & bit(a.index) == 0;
        if let Some(a) = aps.clone().find(|a| running(a) && Some(a.index) == exited) {
            return Err(Busy(a.index));
        }
        for a in aps.filter(|a| a.index != 0 && a.started) {
            if a.halted {
                self.gated |= bit(a.index);
            } else if self.suspended & bit(a.index) == 0 {
                self.suspended |= bit(a.index);
                op(Op::Suspend(a.index));
            }
        }
        self.vp0_halted = false;
        Ok(())
    }

    /// A SIPI starts AP `v`: true if it may start now; false if the VID
    /// only gives it its start-up state and holds it (started when VP 0
    /// halts).
    pub fn sipi(&mut self, v: usize) -> bool {
        self.gated &= !bit(v);
        if self.may_run(v) {
            return true;
        }
        self.suspended |= bit(v);
        false
    }

    /// An INIT or a halt with interrupts off stopped AP `v` (it waits for a
    /// SIPI): the policy forgets it. True if it was held suspended (not
    /// started in the kernel: nothing to suspend).
    pub fn stopped(&mut self, v: usize) -> bool {
        let held = self.held(v);
        self.suspended &= !bit(v);
        self.gated &= !bit(v);
        held
    }

    /// An AP the policy suspended whose `VP_SUSPEND` failed: it is not held.
    pub fn suspend_failed(&mut self, v: usize) {
        self.suspended &= !bit(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ap(index: usize, started: bool, halted: bool) -> ApState {
        ApState { index, started, halted }
    }

    fn runs(p: &mut RootPolicy, aps: &[ApState], exited: Option<usize>) -> Result<Vec<Op>, Busy> {
        let mut ops = Vec::new();
        p.vp0_runs(aps.iter().copied(), exited, |o| ops.push(o)).map(|()| ops)
    }

    fn halts(p: &mut RootPolicy) -> Vec<Op> {
        let mut ops = Vec::new();
        p.vp0_halts(|o| ops.push(o));
        ops
    }

    #[test]
    fn aps_run_only_while_vp0_is_halted() {
        let mut p = RootPolicy::new();
        assert!(p.may_run(0) && !p.may_run(1));
        // VP 0 sends INIT, SIPI: the AP is held.
        assert!(!p.sipi(1));
        assert!(p.held(1) && !p.may_post(1));
        // VP 0 halts: the AP starts.
        assert_eq!(halts(&mut p), [Op::Start(1)]);
        assert!(p.may_run(1) && p.may_post(1) && !p.held(1));
        // VP 0 is woken: the running AP is suspended first.
        let aps = [ap(1, true, false), ap(2, false, false)];
        assert_eq!(runs(&mut p, &aps, None), Ok(vec![Op::Suspend(1)]));
        assert!(!p.may_run(1) && !p.may_post(1) && p.held(1));
        // VP 0 runs on: nothing more to do; it halts again: started again.
        assert_eq!(runs(&mut p, &aps, None), Ok(vec![]));
        assert_eq!(halts(&mut p), [Op::Start(1)]);
    }

    #[test]
    fn a_halted_ap_is_gated_not_suspended() {
        let mut p = RootPolicy::new();
        assert!(!p.sipi(1) && !p.sipi(2));
        assert_eq!(halts(&mut p), [Op::Start(1), Op::Start(2)]);
        let aps = [ap(1, true, true), ap(2, true, false)];
        assert_eq!(runs(&mut p, &aps, None), Ok(vec![Op::Suspend(2)]));
        // Nothing may be posted to the halted AP while VP 0 runs.
        assert!(!p.may_post(1) && !p.held(1));
        // Once VP 0 halts, it may be woken again; only AP 2 needs a start.
        assert_eq!(halts(&mut p), [Op::Start(2)]);
        assert!(p.may_post(1) && p.may_post(2));
    }

    #[test]
    fn vp0_waits_for_an_ap_whose_exit_is_being_answered() {
        let mut p = RootPolicy::new();
        assert!(!p.sipi(1));
        halts(&mut p);
        let aps = [ap(1, true, false)];
        assert_eq!(runs(&mut p, &aps, Some(1)), Err(Busy(1)));
        // Nothing changed: the APs still run, VP 0 stays halted.
        assert!(p.vp0_halted() && p.may_run(1));
        // An AP whose exit is answered with a halt is not in the way.
        assert_eq!(runs(&mut p, &[ap(1, true, true)], Some(1)), Ok(vec![]));
        assert!(!p.vp0_halted() && !p.may_post(1));
    }

    #[test]
    fn a_sipi_while_vp0_is_halted_starts_at_once_and_init_forgets() {
        let mut p = RootPolicy::new();
        halts(&mut p);
        assert!(p.sipi(3));
        runs(&mut p, &[ap(3, true, false)], None).unwrap();
        assert!(p.held(3));
        // INIT: it waits for a SIPI; it was not started in the kernel.
        assert!(p.stopped(3));
        assert!(!p.held(3));
        assert_eq!(halts(&mut p), []);
        assert!(!p.stopped(3));
    }

    #[test]
    fn a_failed_suspend_is_not_a_hold() {
        let mut p = RootPolicy::new();
        assert!(!p.sipi(1));
        halts(&mut p);
        runs(&mut p, &[ap(1, true, false)], None).unwrap();
        p.suspend_failed(1);
        assert_eq!(halts(&mut p), []);
    }
}
