//! The scheduler's interface: scheduling policy in ring 3.
//!
//! The scheduler holds the scheduling-context capabilities of other tasks,
//! named `sched:<task>` in its startup page, and changes their priority with
//! `SCHED_CONFIGURE`. Tasks are named on the wire by the badge their
//! endpoint capabilities carry, which only the supervisor knows: it tells
//! the scheduler with `register_task`. Changing priorities is the
//! supervisor's privilege too, so no task can raise its own.
//!
//! # Classic scheduler parameters at run time
//!
//! Under `[scheduler] policy = "classic"` each VID hands the scheduler a
//! copy of every VP scheduling context it made (`attach_vp`, the context
//! transferred with the request: only a capability with **grant** can carry
//! it, and the supervisor gives grant on this endpoint only to the tasks
//! that run partitions; it also tells the scheduler which VID runs which
//! partition, `register_partition`, and a VID may attach only those). The
//! scheduler then changes a partition's reserve,
//! cap and weight on request (`set_classic`) and re-applies
//! `SCHED_CONFIGURE` to every VP on the logical processors it touches.
//!
//! **Authority is a capability**: the request must arrive on a capability
//! carrying [`CONTROL_BADGE`]. Only the supervisor mints badges, and it
//! sets that bit on the capability of a task whose manifest says
//! `uses = ["sched-control"]` ([`CONTROL_ENDPOINT`], an endpoint the
//! scheduler serves in name: the capability the task gets is to this
//! endpoint, badged with its own badge and the bit). A task without it,
//! its plain `scheduler` capability included, gets `PermissionDenied`.

#![no_std]
#![forbid(unsafe_code)]

pub use tessera_idl::{SUPERVISOR_BADGE, ServiceError};

/// Name of the endpoint the scheduler serves.
pub const ENDPOINT: &str = "scheduler";

/// The manifest's name for the authority over classic parameters: a task
/// that `uses` it gets a capability to [`ENDPOINT`] with [`CONTROL_BADGE`].
/// The scheduler must serve it too (the manifest's rule for `uses`), and
/// never receives on it.
pub const CONTROL_ENDPOINT: &str = "sched-control";

/// The badge bit of the capability that may change classic parameters
/// (above every task badge, which is a start index + 1).
pub const CONTROL_BADGE: u64 = 1 << 32;

/// Longest partition name (the manifest's rule).
pub const PARTITION_NAME_LEN: usize = 32;

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

        /// A VID hands over VP `vp` of its partition `partition`: the VP's
        /// scheduling context travels with the request (CONTROL), the VP
        /// runs on logical processor `lp`, with the partition's `reserve`,
        /// `cap` and `weight` (TLFS units, `scheduler::classic`), as the VID
        /// configured it. All of it is the VID's allegation: the context
        /// must be one (`InvalidArgument` without it), the numbers within
        /// the manifest's rules and `lp` an online CPU (`InvalidArgument`),
        /// and the partition one the supervisor registered for the
        /// caller's badge (`PermissionDenied` otherwise). The same VP
        /// attached again (a VID restarted) replaces its context.
        /// `NoResources` when the tables are full.
        fn attach_vp(partition: &[u8], vp: u32, lp: u32, reserve: u32, cap: u32, weight: u32)
            -> Result<(), ServiceError> = 4;

        /// Sets partition `partition`'s classic `reserve`, `cap` and
        /// `weight` and re-applies the scheduling of every attached VP on
        /// the logical processors its VPs run on. Only on a capability with
        /// [`CONTROL_BADGE`] (`PermissionDenied`). `NotFound` for a
        /// partition no VID attached; `InvalidArgument` for parameters the
        /// manifest would refuse (`scheduler::classic::Classic::check`) or
        /// reserves that no longer fit the processors (`check_all`), and
        /// then nothing changes. `Failed` if the kernel refused a context's
        /// new parameters (those it took keep them).
        fn set_classic(partition: &[u8], reserve: u32, cap: u32, weight: u32) -> Result<(), ServiceError> = 5;

        /// Partition `partition`'s classic parameters as the scheduler
        /// holds them: `(reserve, cap, weight)`. `NotFound` if no VID
        /// attached it. Anyone may read them.
        fn classic(partition: &[u8]) -> Result<(u32, u32, u32), ServiceError> = 6;

        /// Records that partition `name` is run by the task with badge
        /// `vid_badge` (the manifest's `vid`), the only one that may attach
        /// its VPs. Supervisor only (`PermissionDenied`); `InvalidArgument`
        /// for a bad name, `NoResources` when the table is full.
        fn register_partition(vid_badge: u64, name: &[u8]) -> Result<(), ServiceError> = 7;
    }
}
