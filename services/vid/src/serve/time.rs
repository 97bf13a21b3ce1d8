//! Between exits: the partitions' timers, the interruptions they post,
//! INIT and SIPI, and the root policy's decisions on when each VP runs.

use super::{Running, Vp, say};
use crate::exits::Vmm;
use crate::host::{Kernel, Until};
use crate::logs::Kind;
use crate::root::{ApState, Busy, Op};
use abi::limits::MAX_VPS_PER_PARTITION;
use abi::{CapSlot, ErrorCode};
use tlfs::HvRegisterName;

/// The root policy's decisions for one partition.
type Ops = heapless::Vec<Op, MAX_VPS_PER_PARTITION>;

/// Carries out the root policy's decisions on partition `r`'s VPs.
fn apply(kernel: &impl Kernel, r: &mut Running<'_>, ops: &[Op]) {
    for &op in ops {
        let Some(vp) = r.vps.get(op_vp(op)) else { continue };
        let done = match op {
            Op::Start(_) => kernel.start_vp(vp.cap),
            Op::Suspend(_) => kernel.suspend_vp(vp.cap),
        };
        if let Err(e) = done {
            if let (Op::Suspend(v), Some(policy)) = (op, r.root.as_mut()) {
                policy.suspend_failed(v);
            }
            say(kernel, &mut r.logs, r.name, Kind::Event, format_args!("root scheduler: {op:?} failed: {e:?}"));
        }
    }
}

const fn op_vp(op: Op) -> usize {
    match op {
        Op::Start(v) | Op::Suspend(v) => v,
    }
}

/// Root policy: VP 0 halted with nothing pending, so the APs it holds run.
pub(super) fn vp0_halts(kernel: &impl Kernel, r: &mut Running<'_>) {
    let mut ops = Ops::new();
    if let Some(policy) = r.root.as_mut() {
        policy.vp0_halts(|op| {
            let _ = ops.push(op);
        });
    }
    apply(kernel, r, &ops);
}

/// Root policy: VP 0 is about to run, so the APs are held first (`Err`:
/// AP `exited` of this partition waits for the loop's reply and runs on
/// after it; VP 0 must wait for that reply).
fn vp0_runs(kernel: &impl Kernel, r: &mut Running<'_>, exited: Option<usize>) -> Result<(), Busy> {
    let Some(policy) = r.root.as_mut() else { return Ok(()) };
    let aps = r.vps.iter().enumerate().map(|(index, vp)| ApState { index, started: vp.started, halted: vp.halted });
    let mut ops = Ops::new();
    policy.vp0_runs(aps, exited, |op| {
        let _ = ops.push(op);
    })?;
    apply(kernel, r, &ops);
    Ok(())
}

/// What [`keep_time`] found for the loop to act on.
pub(super) struct Turn {
    /// The partition whose boot processor an INIT reset.
    pub reset: Option<usize>,
    /// An INIT named the VP that exited: the reply must stop it.
    pub parked: bool,
    /// Root policy: VP 0 is to be woken once the AP that exited has its
    /// reply (the loop replies, then keeps time again).
    pub again: bool,
}

/// How long the loop may wait for the next exit: at most `ticks` kernel
/// ticks (0: no limit; its own rechecks and input polls, which need no
/// more precision than the tick's), and no later than the TSC `deadline`
/// of the earliest device timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Wait {
    pub ticks: u64,
    pub deadline: Option<u64>,
}

impl Wait {
    /// The sooner of both limits of each.
    pub fn min(self, other: Wait) -> Wait {
        let ticks = match (self.ticks, other.ticks) {
            (0, t) | (t, 0) => t,
            (a, b) => a.min(b),
        };
        let deadline = match (self.deadline, other.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Wait { ticks, deadline }
    }

    /// The kernel's form of the wait at TSC `now`: the device deadline if
    /// it comes before the tick limit can (a tick limit of `ticks` ends at
    /// most `ticks * tick_tsc` from now), else the tick limit.
    pub fn until(self, now: u64, tick_tsc: u64) -> Until {
        match self.deadline {
            Some(d) if self.ticks == 0 || d <= now.saturating_add(self.ticks.saturating_mul(tick_tsc)) => Until::Tsc(d),
            _ => Until::Ticks(self.ticks),
        }
    }
}

/// Marks a VP stopped where it is (INIT, or a SIPI that failed).
fn stopped(vp: &mut Vp) {
    (vp.started, vp.halted, vp.posted) = (false, false, false);
}

/// Fires the partitions' timers (but partition `polled`'s, which were
/// polled at `now` already), parks APs an INIT named and starts those a
/// SIPI named, posts interruptions to VPs other than `exited` (whose reply
/// carries its own) whose slot is free, and returns how long to wait for
/// the next exit (no limit: no timer, wait for ever; a device timer's TSC
/// deadline no sooner than `min_wait` from `now`) and what the loop must
/// do about INITs.
pub(super) fn keep_time(
    kernel: &impl Kernel,
    running: &mut [Running<'_>],
    exited: Option<(usize, usize)>,
    polled: Option<usize>,
    now: u64,
    min_wait: u64,
) -> (Wait, Turn) {
    let mut next: Option<u64> = None;
    let mut recheck = false;
    let (mut reset, mut parked, mut again) = (None, false, false);
    for (k, r) in running.iter_mut().enumerate().filter(|(_, r)| !r.stopped) {
        if polled != Some(k) {
            r.vmm.poll_with(now, &mut super::view::RamOnly(r.ram, r.beneath, Some(&r.protections)));
        }
        // Before any interrupt below lets a VP see what changed the UART.
        super::latch_line_status(kernel, r);
        let mut effects = core::mem::take(&mut r.vmm.effects);
        let name = r.name;
        for v in effects.init.iter() {
            if v == 0 {
                reset = Some(k);
                continue;
            }
            // The root policy forgets it (true: held, not started in the kernel).
            let held = r.root.as_mut().is_some_and(|p| p.stopped(v as usize));
            if exited == Some((k, v as usize)) {
                // It waits for this loop's reply, which stops it.
                if let Some(vp) = r.vps.get_mut(v as usize) {
                    stopped(vp);
                }
                parked = true;
                continue;
            }
            if let (true, Some(vp)) = (held, r.vps.get_mut(v as usize)) {
                stopped(vp);
                continue;
            }
            if let Some(vp) = r.vps.get_mut(v as usize).filter(|vp| vp.started) {
                // INIT: the AP stops where it is and waits for a SIPI.
                match kernel.suspend_vp(vp.cap) {
                    Ok(()) => stopped(vp),
                    Err(e) => {
                        say(kernel, &mut r.logs, name, Kind::Event, format_args!("VP {v} cannot take INIT: {e:?}"));
                    }
                }
            }
        }
        effects.init = Default::default();
        for v in effects.sipi.iter() {
            if let Some(vp) = r.vps.get_mut(v as usize).filter(|vp| !vp.started) {
                // Root policy: while VP 0 runs, the AP gets its start-up
                // state and waits for VP 0 to halt.
                let now = r.root.as_mut().is_none_or(|p| p.sipi(v as usize));
                match start_ap(kernel, vp.cap, effects.sipi_vector, r.vmm.cpuid.signature(), now) {
                    Ok(()) => {
                        (vp.started, vp.halted, vp.posted) = (true, false, false);
                        let at = u16::from(effects.sipi_vector) << 8;
                        let held = if now { "" } else { " (it runs when VP 0 halts)" };
                        let line = format_args!("VP {v} started by SIPI at {at:#x}:0000{held}");
                        say(kernel, &mut r.logs, name, Kind::Event, line);
                    }
                    Err(e) => {
                        if let Some(p) = r.root.as_mut() {
                            p.stopped(v as usize);
                        }
                        say(kernel, &mut r.logs, name, Kind::Event, format_args!("VP {v} cannot start: {e:?}"));
                    }
                }
            }
        }
        for v in 0..r.vps.len() {
            if !r.vps[v].started {
                continue;
            }
            if exited != Some((k, v)) {
                match &r.root {
                    None => post(kernel, &mut r.vmm, v as u32, &mut r.vps[v]),
                    Some(p) if v != 0 => {
                        if p.may_post(v) {
                            post(kernel, &mut r.vmm, v as u32, &mut r.vps[v]);
                        }
                    }
                    // Root policy: a post wakes a halted VP 0, so the APs
                    // are held first.
                    Some(_) => {
                        let wakes = r.vps[0].halted && (r.vmm.irq.has_pending(0) || r.vmm.wakes_from_idle(0));
                        let exited_ap = exited.filter(|&(e, _)| e == k).map(|(_, a)| a);
                        if wakes && vp0_runs(kernel, r, exited_ap).is_err() {
                            again = true;
                        } else {
                            post(kernel, &mut r.vmm, 0, &mut r.vps[0]);
                            if wakes && r.vps[0].halted {
                                // Nothing was posted after all: still the APs' turn.
                                vp0_halts(kernel, r);
                            }
                        }
                    }
                }
            }
            let vp = &r.vps[v];
            recheck |= vp.posted && !vp.halted && r.vmm.irq.has_pending(v as u32);
            // An interrupt waiting behind a lazy EOI (EOI assist) the guest
            // may do without an exit: looked at again within a tick.
            recheck |= r.vmm.irq.lapic(v as u32).is_some_and(|l| l.lazy_eoi() && l.requested());
        }
        next = match (next, r.vmm.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    // A VP with an interruption it could not take yet is looked at again
    // within a tick.
    let wait = Wait { ticks: u64::from(recheck), deadline: next.map(|d| d.max(now.saturating_add(min_wait))) };
    (wait, Turn { reset, parked, again })
}

/// Posts VP `v`'s next interruption when its slot in the kernel is free
/// (which wakes it if it halted).
fn post(kernel: &impl Kernel, vmm: &mut Vmm, v: u32, vp: &mut Vp) {
    if vp.posted && !vp.halted {
        // A running VP's slot empties when the guest takes the
        // interruption: ask the kernel.
        vp.posted = pending_interruption(kernel, vp.cap).unwrap_or(true);
    }
    if vp.posted {
        return;
    }
    if let Some(value) = vmm.interruption_for(v) {
        let name = u64::from(HvRegisterName::PENDING_INTERRUPTION.0);
        match kernel.set_registers(vp.cap, &[1, name, value, 0]) {
            Ok(()) => (vp.posted, vp.halted, vp.sent) = (true, false, true),
            // The models hand out only what the kernel takes
            // (`kerncore::event`): this is a bug, and must not be silent.
            Err(e) => {
                kernel.log(format_args!("VP {v}: the kernel refused interruption {value:#x} ({e:?}); it is lost"))
            }
        }
    } else if vmm.wakes_from_idle(v) {
        // An interrupt it cannot take yet ends its guest idle state all
        // the same (TLFS 7.5): stopped and started again, it resumes after
        // the MSR read with nothing injected. (`vp.halted` may be false
        // here: a halt answered while an interruption it had taken
        // meanwhile still counted as posted.)
        if kernel.suspend_vp(vp.cap).and_then(|()| kernel.start_vp(vp.cap)).is_ok() {
            vp.halted = false;
            vmm.woke(v);
        }
    }
}

/// Starts an AP as a SIPI after INIT does: the architectural state of
/// [`crate::entry::startup_state`], real mode at `vector << 8`:0000, EDX
/// the partition's processor signature; with `run` false, only the state (the root policy starts it later).
fn start_ap(kernel: &impl Kernel, vp: CapSlot, vector: u8, signature: u32, run: bool) -> Result<(), ErrorCode> {
    for registers in crate::entry::startup_state(vector, signature) {
        kernel.set_registers(vp, &crate::entry::set_registers_words(&registers))?;
    }
    if !run {
        return Ok(());
    }
    kernel.start_vp(vp)
}

/// Whether the kernel still holds an interruption for the VP.
pub(super) fn pending_interruption(kernel: &impl Kernel, vp: CapSlot) -> Option<bool> {
    let (value, _) = kernel.register(vp, HvRegisterName::PENDING_INTERRUPTION).ok()?;
    Some(tlfs::HvX64PendingInterruptionRegister::from_bits(value).interruption_pending())
}
