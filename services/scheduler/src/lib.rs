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

use abi::startup::NAME_LEN;
use abi::{CapSlot, ErrorCode};
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
}

impl<C: SchedControl> Scheduler<C> {
    pub fn new(control: C) -> Self {
        Scheduler { control, contexts: [None; MAX_CONTEXTS] }
    }

    pub fn control(&self) -> &C {
        &self.control
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
}

#[cfg(test)]
mod tests;
