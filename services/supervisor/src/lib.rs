//! The supervisor's decisions, free of syscalls so they are tested on the
//! host: which capabilities each task gets under which names, how slots of
//! the supervisor's own capability space are handed out, and when a crashed
//! task is started again.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use abi::{Entries, Rights};
use sysimage::manifest::{
    EndpointIndex, IoPortRange, MAX_ENDPOINTS, MAX_INTERRUPTS, MAX_IO_RANGES, MAX_SERVES, MAX_TASKS, MAX_USES,
    Manifest, PARTITION_MANAGER, Restart, TaskIndex,
};

const PAGE_SIZE: u64 = sysimage::PAGE_SIZE;

// What the supervisor can hold and give is derived from the manifest's
// limits, so that every manifest `Manifest::parse` accepts starts; the
// kernel's sizes it depends on are asserted against them.

/// Most capabilities one task is given ([`grants`]): its endpoints, I/O
/// ranges, untyped and `self`, `bootfs`, `irq` and its lines, the broker's
/// notifications of every other task but the supervisor (the broker's
/// `notify:*`), its own broker notification (a VID's, or a task party's),
/// and the scheduler's context of every task but the supervisor.
pub const MAX_GRANTS: usize =
    MAX_SERVES + MAX_USES + MAX_IO_RANGES + 2 + 1 + 1 + MAX_INTERRUPTS + (MAX_TASKS - 2) + 2 + (MAX_TASKS - 1);
const _: () = assert!(MAX_GRANTS <= abi::startup::MAX_STARTUP_CAPS, "every grant is listed in the startup page");
const _: () = assert!(MAX_GRANTS < abi::limits::CSPACE_SLOTS as usize, "every grant fits the task's slots");
/// Capability names are manifest names, some behind a prefix.
pub const SCHED_PREFIX: &str = "sched:";
const _: () = assert!(
    sysimage::MAX_NAME_LEN + SCHED_PREFIX.len() <= abi::startup::NAME_LEN,
    "every task and capability name fits the startup page"
);

/// Slots the supervisor holds for one running task, at most: its task,
/// one memory object per ELF segment, its stack, memory, IPC buffer and
/// startup page, its fault capability and thread, each I/O range, its
/// untyped, its `irq` notification and each interrupt line.
pub const MAX_HELD: usize = 1 + elfload::MAX_SEGMENTS + 4 + 2 + MAX_IO_RANGES + 1 + 1 + MAX_INTERRUPTS;
/// The supervisor's own capabilities to services (badge 1): the console,
/// the scheduler and the broker.
pub const MAX_SERVICE_CAPS: usize = 4;
/// Slots of what the supervisor makes once: its fault and nap endpoints,
/// the manifest's endpoints, a scheduling context and a broker
/// notification per task but itself, and its capabilities to services.
pub const SHARED_SLOTS: usize = 2 + MAX_ENDPOINTS + 2 * (MAX_TASKS - 1) + MAX_SERVICE_CAPS;
/// Slots the supervisor hands out: everything it holds with every task
/// running at its most.
pub const SLOTS: usize = SHARED_SLOTS + (MAX_TASKS - 1) * MAX_HELD + KEPT_SLOTS;
/// The partition manager's own capabilities (every slot of its space past
/// slot 0) that the supervisor keeps across the manager's restart.
pub const KEPT_SLOTS: usize = abi::limits::CSPACE_SLOTS as usize - 1;
/// The kernel's grants to the root task fill its first slots (`self`, an
/// image segment each, stack, memory, IPC buffer, bootfs, untyped,
/// ioports, interrupts, thread, sched, startup: 11 + the segments, after
/// the null slot 0); the supervisor's slots follow them.
pub const ROOT_NAMED_SLOTS: usize = 1 + 11 + elfload::MAX_SEGMENTS;
const _: () = assert!(
    ROOT_NAMED_SLOTS + SLOTS <= abi::limits::ROOT_CSPACE_SLOTS as usize,
    "the root task's capability space holds the supervisor at the manifest's limits"
);

/// The task that receives every other task's scheduling context.
pub const SCHEDULER_TASK: &str = "scheduler";

/// The badge a task's endpoint capabilities carry: its start-order index
/// plus one, so the supervisor (task 0) is badge 1, as the console expects.
pub fn badge_of(task: TaskIndex) -> u64 {
    task.badge()
}

/// How the broker names a connection's party: a partition by its index, a
/// task by `broker_api::task_party`.
pub fn broker_party(party: sysimage::manifest::Party) -> u64 {
    match party {
        sysimage::manifest::Party::Partition(k) => u64::from(k.0),
        sysimage::manifest::Party::Task(t) => broker_api::task_party(t.0),
    }
}

const _: () = assert!(sysimage::manifest::MAX_TASKS as u64 <= broker_api::MAX_TASK_PARTIES);

/// The task a badge names, if any.
pub fn task_of(badge: u64, manifest: &Manifest<'_>) -> Option<TaskIndex> {
    let index = badge.checked_sub(1)?;
    let index = u8::try_from(index).ok()?;
    (usize::from(index) < manifest.tasks.len()).then_some(TaskIndex(index))
}

/// What a named capability of a task is made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Receive on an endpoint the task serves.
    Serve(EndpointIndex),
    /// Send to an endpoint, badged with the task's badge.
    Use(EndpointIndex),
    /// A range of I/O ports.
    Io(IoPortRange),
    /// Another task's scheduling context (for the scheduler).
    Sched(TaskIndex),
    /// The notification the task's interrupt lines signal (named "irq").
    IrqNotification,
    /// An interrupt line, bound to the "irq" notification's bit `bit`.
    Irq { gsi: u32, bit: u8 },
    /// A pool of this many pages of untyped memory and these kernel-table
    /// entries (named "untyped").
    Untyped { pages: u64, objects: Entries },
    /// The task's own task capability (named "self"), so it can map the
    /// memory it makes from its untyped pool.
    OwnTask,
    /// The boot image, read-only (named "bootfs"), for a VID that loads
    /// the guest kernels of its partitions from it.
    BootImage,
    /// The notification the broker signals when partitions of VID `vid`
    /// (or the task `vid` itself, owning a port) have deliveries (one per
    /// VID of a port's partition or task owning a port, made once, as
    /// endpoints are): the broker's capability may only signal it
    /// (`signal`, named `notify:<badge>`), the VID's may only wait on it
    /// (named `broker_api::VID_NOTIFICATION`).
    Deliveries { vid: TaskIndex, signal: bool },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub name: heapless::String<{ abi::startup::NAME_LEN }>,
    pub source: Source,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanError {
    NoSuchTask,
    TooManyGrants,
    NameTooLong,
}

fn named(name: &str, source: Source) -> Result<Grant, PlanError> {
    let mut s = heapless::String::new();
    s.push_str(name).map_err(|_| PlanError::NameTooLong)?;
    Ok(Grant { name: s, source })
}

/// The capabilities `task` gets, in slot order, named as the task will look
/// them up: an endpoint under its name (both for serving and using), I/O
/// ranges as `io0`, `io1`, …, interrupt lines as `irq<GSI>` with the
/// notification they signal as `irq` (bit i for the i-th line), and for the
/// scheduler `sched:<task>` for every task but the supervisor.
pub fn grants(manifest: &Manifest<'_>, task: TaskIndex) -> Result<heapless::Vec<Grant, MAX_GRANTS>, PlanError> {
    let t = manifest.task(task).ok_or(PlanError::NoSuchTask)?;
    let mut out = heapless::Vec::new();
    let mut push = |g: Grant| out.push(g).map_err(|_| PlanError::TooManyGrants);
    for &ep in &t.serves {
        push(named(manifest.endpoint(ep).ok_or(PlanError::NoSuchTask)?.name, Source::Serve(ep))?)?;
    }
    for u in &t.uses {
        push(named(u.name, Source::Use(u.endpoint))?)?;
    }
    for (i, &range) in t.io_ports.iter().enumerate() {
        let mut name: heapless::String<8> = heapless::String::new();
        let _ = core::fmt::write(&mut name, format_args!("io{i}"));
        push(named(&name, Source::Io(range))?)?;
    }
    if t.untyped > 0 {
        push(named("untyped", Source::Untyped { pages: t.untyped / PAGE_SIZE, objects: t.objects })?)?;
        push(named("self", Source::OwnTask)?)?;
    }
    let manages_partitions = !manifest.partitions.is_empty() && manifest.partition_manager() == Some(task);
    if manifest.partitions_of(task).next().is_some() || manages_partitions {
        push(named("bootfs", Source::BootImage)?)?;
    }
    if !t.interrupts.is_empty() {
        push(named("irq", Source::IrqNotification)?)?;
        for (bit, gsi) in t.interrupts.iter().enumerate() {
            let mut name: heapless::String<16> = heapless::String::new();
            let _ = core::fmt::write(&mut name, format_args!("irq{}", gsi.0));
            push(named(&name, Source::Irq { gsi: gsi.0, bit: bit as u8 })?)?;
        }
    }
    // The broker's notifications: the broker signals, the VID (or the
    // task owning a port) waits.
    if manifest.broker() == Some(task) {
        for vid in manifest.notified_tasks() {
            let mut name: heapless::String<{ abi::startup::NAME_LEN }> = heapless::String::new();
            core::fmt::write(&mut name, format_args!("{}{}", broker_api::NOTIFY_PREFIX, badge_of(vid)))
                .map_err(|_| PlanError::NameTooLong)?;
            push(named(&name, Source::Deliveries { vid, signal: true })?)?;
        }
    }
    // A VID's is "broker-events"; a task party's names its party.
    let vid_of_port = manifest
        .partitions
        .iter()
        .enumerate()
        .any(|(k, p)| p.vid == task && manifest.is_port_partition(sysimage::manifest::PartitionIndex(k as u8)));
    if vid_of_port {
        push(named(broker_api::VID_NOTIFICATION, Source::Deliveries { vid: task, signal: false })?)?;
    }
    if manifest.task_parties().any(|t| t == task) {
        let mut name: heapless::String<{ abi::startup::NAME_LEN }> = heapless::String::new();
        let party = broker_api::task_party(task.0);
        core::fmt::write(&mut name, format_args!("{}{party}", broker_api::PARTY_NOTIFICATION_PREFIX))
            .map_err(|_| PlanError::NameTooLong)?;
        push(named(&name, Source::Deliveries { vid: task, signal: false })?)?;
    }
    if t.name == SCHEDULER_TASK {
        for (i, other) in manifest.tasks.iter().enumerate().skip(1) {
            let mut name: heapless::String<{ abi::startup::NAME_LEN }> = heapless::String::new();
            core::fmt::write(&mut name, format_args!("{SCHED_PREFIX}{}", other.name))
                .map_err(|_| PlanError::NameTooLong)?;
            push(named(&name, Source::Sched(TaskIndex(i as u8)))?)?;
        }
    }
    Ok(out)
}

/// The rights of the endpoint capability a `Serve` or `Use` grant gives
/// `task`: a server receives, a client sends. Partitions add four: the
/// partition manager may also send on its own endpoint (it mints the badged
/// capabilities its VPs' monitor reports arrive on), so may a VID on the
/// endpoints it serves (it mints its VPs' exit capabilities there, so it
/// answers its clients while its partitions run), a VID's capability
/// to it carries grant, so the manager's replies can carry the capabilities
/// of the partitions it hands over, and a VID's capability to the
/// scheduler carries grant, so it can hand over its VPs' scheduling
/// contexts (`scheduler_api`'s `attach_vp`).
pub fn endpoint_rights(manifest: &Manifest<'_>, task: TaskIndex, endpoint: EndpointIndex, serves: bool) -> Rights {
    let name = manifest.endpoint(endpoint).map(|e| e.name);
    let is_manager_endpoint = name == Some(PARTITION_MANAGER);
    let runs_partitions = manifest.partitions_of(task).next().is_some();
    if serves {
        let mints = (is_manager_endpoint && !manifest.partitions.is_empty()) || runs_partitions;
        Rights::new().with_receive(true).with_send(mints)
    } else {
        let takes_caps = is_manager_endpoint || name == Some(scheduler_api::ENDPOINT);
        Rights::new().with_send(true).with_grant(takes_caps && runs_partitions)
    }
}

/// The endpoint and badge of the capability a task's `uses = [name]`
/// gives it: the endpoint it names, badged with the task's badge; but
/// `sched-control` ([`scheduler_api::CONTROL_ENDPOINT`]) is the authority
/// over classic scheduler parameters, a capability to the `scheduler`
/// endpoint of the same server with [`scheduler_api::CONTROL_BADGE`] added
/// to the badge (the scheduler receives on one endpoint).
pub fn use_source(manifest: &Manifest<'_>, task: TaskIndex, endpoint: EndpointIndex) -> (EndpointIndex, u64) {
    let badge = badge_of(task);
    let Some(e) = manifest.endpoint(endpoint).filter(|e| e.name == scheduler_api::CONTROL_ENDPOINT) else {
        return (endpoint, badge);
    };
    let scheduler = manifest.endpoints.iter().position(|s| s.name == scheduler_api::ENDPOINT && s.server == e.server);
    match scheduler {
        Some(i) => (EndpointIndex(i as u8), badge | scheduler_api::CONTROL_BADGE),
        None => (endpoint, badge),
    }
}

/// Free slots of the supervisor's capability space: a bitmap over
/// `[first, first + N)`.
pub struct Slots<const N: usize> {
    first: u32,
    used: [bool; N],
}

impl<const N: usize> Slots<N> {
    pub const fn new(first: u32) -> Self {
        Slots { first, used: [false; N] }
    }

    pub fn take(&mut self) -> Option<abi::CapSlot> {
        let i = self.used.iter().position(|u| !u)?;
        self.used[i] = true;
        Some(abi::CapSlot(self.first + i as u32))
    }

    /// Returns a slot; slots outside the range or already free are ignored.
    pub fn give_back(&mut self, slot: abi::CapSlot) {
        if let Some(u) = slot.0.checked_sub(self.first).and_then(|i| self.used.get_mut(i as usize)) {
            *u = false;
        }
    }

    pub fn free(&self) -> usize {
        self.used.iter().filter(|u| !**u).count()
    }
}

/// Restart policy for a crashing task: wait 10 ticks, then twice as long
/// after every further crash (capped at 640), and give up after
/// [`Backoff::MAX_RESTARTS`] restarts in a row, so a crash loop cannot
/// starve the system. A run that lasted [`Backoff::healthy_after`] counts
/// as healthy: the crash that ends it starts the back-off afresh, so a
/// service that fails now and then over months is always restarted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backoff {
    /// Restarts since the last healthy run.
    restarts: u32,
    /// Restarts in all.
    total: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    RestartAfter(u64),
    GiveUp { restarts: u32 },
    Never,
}

impl Backoff {
    pub const MAX_RESTARTS: u32 = 5;
    pub const FIRST_DELAY: u64 = 10;
    pub const MAX_DELAY: u64 = 640;
    /// The shortest run that counts as healthy, in ticks.
    pub const HEALTHY_MIN: u64 = 50;

    /// The delay before restart `n` (0 the first) in a row.
    const fn delay(n: u32) -> u64 {
        let shift = if n < 16 { n } else { 16 };
        let d = Self::FIRST_DELAY << shift;
        if d < Self::MAX_DELAY { d } else { Self::MAX_DELAY }
    }

    /// How many ticks a run must last to count as healthy after `restarts`
    /// restarts in a row: four times the last delay, at least
    /// [`HEALTHY_MIN`](Self::HEALTHY_MIN).
    pub const fn healthy_after(restarts: u32) -> u64 {
        let last = if restarts == 0 { 0 } else { 4 * Self::delay(restarts - 1) };
        if last > Self::HEALTHY_MIN { last } else { Self::HEALTHY_MIN }
    }

    /// Called when the task crashed after running `ran` ticks since its
    /// last start; says what to do.
    pub fn on_crash(&mut self, policy: Restart, ran: u64) -> Decision {
        if policy == Restart::Never {
            return Decision::Never;
        }
        if ran >= Self::healthy_after(self.restarts) {
            self.restarts = 0;
        }
        if self.restarts >= Self::MAX_RESTARTS {
            return Decision::GiveUp { restarts: self.restarts };
        }
        let delay = Self::delay(self.restarts);
        self.restarts += 1;
        self.total += 1;
        Decision::RestartAfter(delay)
    }

    /// Restarts in a row (since its last healthy run).
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Restarts in all.
    pub fn total(&self) -> u32 {
        self.total
    }
}

/// Human-readable CPU exception names for fault reports.
pub fn exception_name(vector: u64) -> &'static str {
    match vector {
        0 => "#DE divide error",
        3 => "#BP breakpoint",
        6 => "#UD invalid opcode",
        7 => "#NM device not available",
        13 => "#GP general protection",
        14 => "#PF page fault",
        17 => "#AC alignment check",
        _ => "exception",
    }
}

#[cfg(test)]
mod tests;
