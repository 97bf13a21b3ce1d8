//! The scheduler's logic: which scheduling contexts it holds, the policy
//! table it applies at start, and priority changes on the supervisor's
//! request. The kernel operation (`SCHED_CONFIGURE`) is behind
//! [`SchedControl`], so all of it runs on the host.
//!
//! # Policy
//!
//! [`POLICY`] names the tasks whose scheduling the policy overrides at
//! start. Every other task keeps the priority the supervisor gave it from
//! the manifest (`system.toml`), which stays the one place service
//! priorities are written (its "calls go uphill" rule depends on them).
//! The policy's job is bounding tasks that must not monopolise a CPU: the
//! fault-test tasks run at the lowest priority with a budget. It can only
//! lower: each context's ceiling is its task's manifest priority (the
//! supervisor sets it), and the kernel refuses anything above.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod classic;
pub mod runtime;

use abi::startup::NAME_LEN;
use abi::{CapSlot, ErrorCode};
use runtime::Runtime;
use scheduler_api::{MAX_PRIORITY, SUPERVISOR_BADGE, Server, ServiceError};
use tessera_idl::Badge;

/// Scheduling contexts the scheduler can hold.
pub const MAX_CONTEXTS: usize = 16;

/// Scheduling parameters for one task: `budget` ticks of CPU per `period`
/// ticks (both 0: unlimited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub task: &'static str,
    pub priority: u8,
    pub budget: u64,
    pub period: u64,
}

/// The policy applied at start (see the module documentation).
pub const POLICY: &[Policy] = &[
    Policy { task: "hostile", priority: 1, budget: 2, period: 10 },
    Policy { task: "crasher", priority: 1, budget: 2, period: 10 },
];

const _: () = {
    let mut i = 0;
    while i < POLICY.len() {
        assert!(POLICY[i].priority <= MAX_PRIORITY, "POLICY: priority out of range");
        assert!(POLICY[i].budget <= POLICY[i].period, "POLICY: budget longer than its period");
        i += 1;
    }
};

/// `SCHED_CONFIGURE` on a scheduling-context capability.
pub trait SchedControl {
    fn configure(&mut self, context: CapSlot, priority: u8, budget: u64, period: u64) -> Result<(), ErrorCode>;

    /// `SCHED_CONFIGURE` with all six words (a VP's classic parameters).
    fn configure_classic(&mut self, context: CapSlot, words: &[u64; 6]) -> Result<(), ErrorCode>;

    /// Deletes a capability the scheduler no longer needs.
    fn release(&mut self, slot: CapSlot);

    /// VP `vp` of partition `partition`, on logical processor `lp`, now
    /// runs with `params` (a run-time change; the task logs it).
    fn applied(&mut self, _partition: &[u8], _vp: u32, _lp: u32, _params: &classic::ScParams) {}
}

#[derive(Clone, Copy, Debug)]
struct Context {
    name: [u8; NAME_LEN],
    name_len: usize,
    slot: CapSlot,
    badge: Option<Badge>,
    /// What the scheduler last applied, if anything.
    applied: Option<(u8, u64, u64)>,
}

impl Context {
    fn name(&self) -> &[u8] {
        &self.name[..self.name_len]
    }
}

/// What applying the policy did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyReport {
    /// Contexts configured.
    pub applied: usize,
    /// Contexts the kernel refused to configure.
    pub failed: usize,
    /// Policy entries for tasks whose context the scheduler does not hold.
    pub absent: usize,
}

pub struct Scheduler<C: SchedControl> {
    control: C,
    contexts: [Option<Context>; MAX_CONTEXTS],
    /// Classic parameters at run time: the VPs the VIDs attached.
    classic: Runtime,
    /// A capability that came with the request being served, until an
    /// operation takes it.
    received: Option<CapSlot>,
}

impl<C: SchedControl> Scheduler<C> {
    /// A scheduler on a machine of `lps` logical processors.
    pub fn new(control: C, lps: u32) -> Self {
        Scheduler { control, contexts: [None; MAX_CONTEXTS], classic: Runtime::new(lps), received: None }
    }

    /// The capability (checked to be a scheduling context) that came with
    /// the next request; [`Scheduler::unused`] after dispatching it.
    pub fn offer(&mut self, context: Option<CapSlot>) {
        self.received = context;
    }

    /// What the request left untaken of the offered capability.
    pub fn unused(&mut self) -> Option<CapSlot> {
        self.received.take()
    }

    /// VPs attached for the classic policy.
    pub fn classic_vps(&self) -> usize {
        self.classic.vps()
    }

    pub fn control(&self) -> &C {
        &self.control
    }

    pub fn control_mut(&mut self) -> &mut C {
        &mut self.control
    }

    /// Records the context of task `task` (from a `sched:<task>` capability).
    pub fn add_context(&mut self, task: &str, slot: CapSlot) -> Result<(), ServiceError> {
        let bytes = task.as_bytes();
        if bytes.is_empty() || bytes.len() > NAME_LEN {
            return Err(ServiceError::InvalidArgument);
        }
        if self.find_name(bytes).is_some() {
            return Err(ServiceError::InvalidArgument);
        }
        let entry = self.contexts.iter_mut().find(|c| c.is_none()).ok_or(ServiceError::NoResources)?;
        let mut name = [0; NAME_LEN];
        name[..bytes.len()].copy_from_slice(bytes);
        *entry = Some(Context { name, name_len: bytes.len(), slot, badge: None, applied: None });
        Ok(())
    }

    /// How many contexts it holds.
    pub fn contexts(&self) -> usize {
        self.contexts.iter().flatten().count()
    }

    fn find_name(&mut self, name: &[u8]) -> Option<&mut Context> {
        self.contexts.iter_mut().flatten().find(|c| c.name() == name)
    }

    fn find_badge(&mut self, badge: Badge) -> Option<&mut Context> {
        self.contexts.iter_mut().flatten().find(|c| c.badge == Some(badge))
    }

    /// Configures every held context `policy` names.
    pub fn apply_policy(&mut self, policy: &[Policy]) -> PolicyReport {
        let mut report = PolicyReport::default();
        for p in policy {
            let Some(context) = self.contexts.iter_mut().flatten().find(|c| c.name() == p.task.as_bytes()) else {
                report.absent += 1;
                continue;
            };
            match self.control.configure(context.slot, p.priority, p.budget, p.period) {
                Ok(()) => {
                    context.applied = Some((p.priority, p.budget, p.period));
                    report.applied += 1;
                }
                Err(_) => report.failed += 1,
            }
        }
        report
    }

    /// The priority last applied to task `name`.
    pub fn priority_of(&self, name: &str) -> Option<u8> {
        self.contexts.iter().flatten().find(|c| c.name() == name.as_bytes()).and_then(|c| c.applied).map(|(p, _, _)| p)
    }
}

impl<C: SchedControl> Server for Scheduler<C> {
    fn register_task(&mut self, caller: Badge, badge: u64, name: &[u8]) -> Result<(), ServiceError> {
        if caller != SUPERVISOR_BADGE {
            return Err(ServiceError::PermissionDenied);
        }
        // A badge names one task: forget it wherever else it was recorded.
        if let Some(previous) = self.find_badge(Badge(badge)) {
            previous.badge = None;
        }
        let context = self.find_name(name).ok_or(ServiceError::NotFound)?;
        context.badge = Some(Badge(badge));
        Ok(())
    }

    fn set_priority(&mut self, caller: Badge, task_badge: u64, priority: u8) -> Result<(), ServiceError> {
        if caller != SUPERVISOR_BADGE {
            return Err(ServiceError::PermissionDenied);
        }
        if priority > MAX_PRIORITY {
            return Err(ServiceError::InvalidArgument);
        }
        let Some(context) = self.contexts.iter_mut().flatten().find(|c| c.badge == Some(Badge(task_badge))) else {
            return Err(ServiceError::NotFound);
        };
        let (_, budget, period) = context.applied.unwrap_or((0, 0, 0));
        self.control.configure(context.slot, priority, budget, period).map_err(|_| ServiceError::Failed)?;
        context.applied = Some((priority, budget, period));
        Ok(())
    }

    fn priority(&mut self, _caller: Badge, task_badge: u64) -> Result<u8, ServiceError> {
        let context = self.find_badge(Badge(task_badge)).ok_or(ServiceError::NotFound)?;
        context.applied.map(|(p, _, _)| p).ok_or(ServiceError::NotFound)
    }

    fn attach_vp(
        &mut self,
        caller: Badge,
        partition: &[u8],
        vp: u32,
        lp: u32,
        reserve: u32,
        cap: u32,
        weight: u32,
    ) -> Result<(), ServiceError> {
        let context = self.received.take();
        let params = classic::Classic { reserve, cap, weight };
        match self.classic.attach(caller, context, partition, vp, lp, params) {
            Ok(old) => {
                if let Some(old) = old {
                    self.control.release(old);
                }
                Ok(())
            }
            Err(e) => {
                // Refused: the context is not kept.
                self.received = context;
                Err(e)
            }
        }
    }

    fn set_classic(
        &mut self,
        caller: Badge,
        partition: &[u8],
        reserve: u32,
        cap: u32,
        weight: u32,
    ) -> Result<(), ServiceError> {
        self.classic.set(&mut self.control, caller, partition, classic::Classic { reserve, cap, weight })
    }

    fn classic(&mut self, _caller: Badge, partition: &[u8]) -> Result<(u32, u32, u32), ServiceError> {
        self.classic.get(partition)
    }

    fn register_partition(&mut self, caller: Badge, vid_badge: u64, name: &[u8]) -> Result<(), ServiceError> {
        if caller != SUPERVISOR_BADGE {
            return Err(ServiceError::PermissionDenied);
        }
        self.classic.assign(Badge(vid_badge), name)
    }
}

#[cfg(test)]
mod tests;
