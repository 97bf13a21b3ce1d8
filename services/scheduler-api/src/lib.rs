//! The scheduler's interface: scheduling policy in ring 3.
//!
//! The scheduler holds the scheduling-context capabilities of other tasks,
//! named `sched:<task>` in its startup page, and changes their priority with
//! `SCHED_CONFIGURE`. Tasks are named on the wire by the badge their
//! endpoint capabilities carry, which only the supervisor knows: it tells
//! the scheduler with `register_task`. Changing priorities is the
//! supervisor's privilege too, so no task can raise its own.

#![no_std]
#![forbid(unsafe_code)]

pub use tessera_idl::{SUPERVISOR_BADGE, ServiceError};

/// Name of the endpoint the scheduler serves.
pub const ENDPOINT: &str = "scheduler";

/// Prefix of the names of the scheduling-context capabilities it holds.
pub const SCHED_CAP_PREFIX: &str = "sched:";

/// Highest priority: the ABI's scheduling-context range (0..=31).
pub const MAX_PRIORITY: u8 = abi::invoke::MAX_PRIORITY as u8;

tessera_idl::interface! {
    /// Scheduling policy.
    pub interface Scheduler {
        /// Records that `badge` is task `name`'s badge (`name` as in its
        /// `sched:<name>` capability). Supervisor only (`PermissionDenied`);
        /// `NotFound` if the scheduler holds no context for `name`.
        fn register_task(badge: u64, name: &[u8]) -> Result<(), ServiceError> = 1;

        /// Sets the priority of the task with `task_badge` to `priority`
        /// (0..=[`MAX_PRIORITY`], else `InvalidArgument`), keeping its budget.
        /// Supervisor only; `NotFound` for an unregistered badge; `Failed`
        /// if the kernel refused `SCHED_CONFIGURE`, as it does above the
        /// task's manifest priority (its scheduling context's ceiling).
        fn set_priority(task_badge: u64, priority: u8) -> Result<(), ServiceError> = 2;

        /// The priority the scheduler last applied to the task with
        /// `task_badge` (`NotFound` if none).
        fn priority(task_badge: u64) -> Result<u8, ServiceError> = 3;
    }
}
