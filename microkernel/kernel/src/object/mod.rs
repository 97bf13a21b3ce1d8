//! Kernel objects and the tables that hold them.
//!
//! Every object lives in a bounded pool sized at build time; a capability
//! names it by type and pool index (`kerncore::cap::ObjRef`). Capabilities,
//! IPC and scheduling state are `kerncore`'s; this module adds what ring 0
//! needs besides: address spaces, saved register state, frames and device
//! ranges. When the last capability to an object goes, the object is
//! destroyed here.

pub mod fastpath;
pub mod invoke;
pub mod syscall;
pub mod transfer;
pub mod vm;

use crate::arch::addrspace::AddressSpace;
use crate::arch::idt::TrapFrame;
use crate::arch::memory;
use abi::limits::tables;
use abi::{Badge, Entries, EntryKind, ObjectType};
use kerncore::cap::{CSpace, CapTable, Capability, ObjRef, Removed};
use kerncore::frames::Runs;
use kerncore::ipc::{EndpointId, Ipc, NotificationId};
use kerncore::mapping::{self, Mapping};
use kerncore::paging::PAGE_SIZE;
use kerncore::quota::Quotas;
use kerncore::sched::{Ceiling, SchedParams, ThreadId};

// The tables untyped pools hand out entries of (`abi::limits::tables`).
pub const MAX_TASKS: usize = tables::TASKS;
/// Threads and VPs: each VP is a thread too.
pub const MAX_THREADS: usize = tables::THREADS + tables::VPS;
pub const MAX_ENDPOINTS: usize = tables::ENDPOINTS;
pub const MAX_NOTIFICATIONS: usize = tables::NOTIFICATIONS;
pub const MAX_MEMORY_OBJECTS: usize = tables::MEMORY_OBJECTS;
pub const MAX_SCHED_CONTEXTS: usize = tables::SCHED_CONTEXTS;
pub const MAX_UNTYPED: usize = tables::UNTYPED_POOLS;
// Issued from ranges only the root task holds with CONTROL, never from an
// untyped.
pub const MAX_IO_RANGES: usize = tables::IO_RANGES;
/// Ticks `Kernel::take_ticks` counts one by one; a longer gap since the
/// last entry is measured with a division instead.
const TICKS_TO_ADD: u64 = 8;
pub const MAX_INTERRUPTS: usize = tables::INTERRUPTS;
/// Capability slots per task, but task 0's (the root task's: the kernel
/// creates it first and it never ends), which has [`ROOT_CSPACE_SLOTS`].
pub const CSPACE_SLOTS: u32 = abi::limits::CSPACE_SLOTS;
pub const ROOT_CSPACE_SLOTS: u32 = abi::limits::ROOT_CSPACE_SLOTS;
pub const CAP_SLOTS: usize = ROOT_CSPACE_SLOTS as usize + (MAX_TASKS - 1) * CSPACE_SLOTS as usize;
/// Mappings one memory object can have at once.
pub const MAX_MAPPINGS: usize = 4;
/// Ticks of a round-robin time slice.
pub const TIMESLICE_TICKS: u32 = 2;

pub struct Task {
    pub space: AddressSpace,
    pub cspace: CSpace,
}

/// The arch half of a thread control block; kerncore holds the IPC half.
pub struct Thread {
    /// User registers while the thread is not running. Entry stubs save
    /// straight into it, so it must never move: threads live in a static.
    pub context: TrapFrame,
    pub alive: bool,
    pub task: Option<u32>,
    /// (user address, physical frame) of the IPC buffer.
    pub ipc_buffer: Option<(u64, u64)>,
    /// Where faults go, from the capability given at configuration.
    pub fault_handler: Option<(EndpointId, Badge)>,
    /// The fault being reported, as message words.
    pub fault: abi::FaultMessage,
    pub started: bool,
    /// The virtual processor this thread runs, if it is one.
    pub vcpu: Option<u32>,
}

impl Thread {
    pub const DEAD: Thread = Thread {
        context: TrapFrame::ZERO,
        alive: false,
        task: None,
        ipc_buffer: None,
        fault_handler: None,
        fault: abi::FaultMessage { vector: 0, error_code: 0, rip: 0, address: 0, rsp: 0 },
        started: false,
        vcpu: None,
    };
}

pub struct MemoryObject {
    /// Its frames, in page order: runs of contiguous frames (one, for a
    /// boot module), so its size needs no contiguous free memory.
    pub runs: Runs,
    /// The runs came from the pool (freed on destruction); false for boot
    /// modules.
    pub owned: bool,
    /// Every place it is mapped: a task (owner = task index) or a
    /// partition (owner = [`PARTITION_OWNER`] + index). Exactly what is
    /// mapped, never less (see `kerncore::mapping`).
    pub mappings: heapless::Vec<Mapping, MAX_MAPPINGS>,
}

impl MemoryObject {
    pub fn pages(&self) -> u64 {
        self.runs.pages()
    }
}

/// What an object cost, and which untyped pool paid (`None`: the kernel,
/// for what it makes at boot).
#[derive(Clone, Copy, Default)]
pub struct Charge {
    pub pool: Option<u32>,
    pub pages: u64,
    /// It took one entry of its kind from `pool` (everything retyped does;
    /// the root task, whose page tables alone its pool pays for, does not).
    pub entry: bool,
}

/// The charge of every object made from an untyped pool, by object.
pub struct Charges {
    memory: [Charge; MAX_MEMORY_OBJECTS],
    task: [Charge; MAX_TASKS],
    /// Threads and VPs (a VP is a thread).
    thread: [Charge; MAX_THREADS],
    endpoint: [Charge; MAX_ENDPOINTS],
    notification: [Charge; MAX_NOTIFICATIONS],
    sched: [Charge; MAX_SCHED_CONTEXTS],
    partition: [Charge; vm::MAX_PARTITIONS],
}

const NO_CHARGE: Charge = Charge { pool: None, pages: 0, entry: false };

impl Charges {
    const fn new() -> Charges {
        Charges {
            memory: [NO_CHARGE; MAX_MEMORY_OBJECTS],
            task: [NO_CHARGE; MAX_TASKS],
            thread: [NO_CHARGE; MAX_THREADS],
            endpoint: [NO_CHARGE; MAX_ENDPOINTS],
            notification: [NO_CHARGE; MAX_NOTIFICATIONS],
            sched: [NO_CHARGE; MAX_SCHED_CONTEXTS],
            partition: [NO_CHARGE; vm::MAX_PARTITIONS],
        }
    }

    pub fn of(&mut self, object: ObjRef) -> Option<&mut Charge> {
        let i = object.index as usize;
        match object.kind {
            ObjectType::MEMORY => self.memory.get_mut(i),
            ObjectType::TASK => self.task.get_mut(i),
            ObjectType::THREAD | ObjectType::VP => self.thread.get_mut(i),
            ObjectType::ENDPOINT => self.endpoint.get_mut(i),
            ObjectType::NOTIFICATION => self.notification.get_mut(i),
            ObjectType::SCHED_CONTEXT => self.sched.get_mut(i),
            ObjectType::PARTITION => self.partition.get_mut(i),
            _ => None,
        }
    }

    fn all(&mut self) -> impl Iterator<Item = &mut Charge> {
        self.memory
            .iter_mut()
            .chain(self.task.iter_mut())
            .chain(self.thread.iter_mut())
            .chain(self.endpoint.iter_mut())
            .chain(self.notification.iter_mut())
            .chain(self.sched.iter_mut())
            .chain(self.partition.iter_mut())
    }
}

#[derive(Clone, Copy)]
pub struct IoRange {
    pub base: u16,
    /// Up to 65536 (the whole port space).
    pub count: u32,
}

impl IoRange {
    pub fn contains(&self, port: u64, width: u64) -> bool {
        let end = u64::from(self.base) + u64::from(self.count);
        port >= u64::from(self.base) && port.checked_add(width).is_some_and(|e| e <= end)
    }
}

/// A range of interrupt lines (GSIs); a single line once issued.
#[derive(Clone, Copy)]
pub struct Interrupt {
    pub first: u32,
    pub count: u32,
    /// Notification and bits signalled when the (single) line fires.
    pub binding: Option<(NotificationId, u64)>,
    /// Unmasked and waiting to fire.
    pub armed: bool,
}

#[derive(Clone, Copy)]
pub struct SchedContext {
    /// Always within `ceiling`.
    pub params: SchedParams,
    /// The most it may be configured with (`SCHED_LIMIT` only lowers it).
    pub ceiling: Ceiling,
    pub bound: Option<ThreadId>,
    /// The CPU its thread runs on (seL4 MCS: a context belongs to a core).
    pub cpu: usize,
}

impl SchedContext {
    /// A new context under `ceiling`, at the least it permits, on the boot CPU.
    pub const fn new(ceiling: Ceiling) -> SchedContext {
        SchedContext { params: ceiling.lowest(), ceiling, bound: None, cpu: 0 }
    }
}

/// All kernel state. There is one, in a static, behind a lock taken with
/// interrupts off (see `crate::trap`).
pub struct Kernel {
    pub caps: CapTable<CAP_SLOTS>,
    pub ipc: Ipc<MAX_THREADS, MAX_ENDPOINTS, MAX_NOTIFICATIONS>,
    pub tasks: [Option<Task>; MAX_TASKS],
    pub threads: [Thread; MAX_THREADS],
    pub memory: [Option<MemoryObject>; MAX_MEMORY_OBJECTS],
    /// Untyped pools: quotas, and who is charged for what.
    pub quota: Quotas<MAX_UNTYPED>,
    pub charges: Charges,
    pub io: [Option<IoRange>; MAX_IO_RANGES],
    pub sched: [Option<SchedContext>; MAX_SCHED_CONTEXTS],
    pub interrupts: [Option<Interrupt>; MAX_INTERRUPTS],
    pub partitions: [Option<vm::Partition>; vm::MAX_PARTITIONS],
    pub vcpus: [Option<vm::Vcpu>; vm::MAX_VP_OBJECTS],
    /// Timer ticks already fed to the scheduler.
    pub ticks_seen: u64,
    /// The TSC at which the tick after `ticks_seen` begins (0: not known).
    next_tick_tsc: u64,
    /// Bit v set for every VP object v whose exit awaits its handler's
    /// answer (and, lazily cleared, some that no longer do): the VPs a
    /// tick's `watch_vps` looks at.
    pub awaiting_vps: u32,
    /// Objects to destroy once the capability table is free (`reap`).
    pub doomed: Doomed,
    /// Each partition's floating ports (`PARTITION_SET_FLOATING_PORTS`),
    /// by partition index: answered in ring 0 (`vm::ring0::floating_port`).
    pub floating_ports: [kerncore::portset::PortSet; vm::MAX_PARTITIONS],
    /// Each partition's latched port reads (`PARTITION_LATCH_PORT`).
    pub latched_ports: [kerncore::portset::PortLatches; vm::MAX_PARTITIONS],
    /// Each partition's posted port writes (`PARTITION_POST_PORT`), kept
    /// under the kernel lock, so its VPs append one at a time.
    pub posted_writes: [kerncore::portset::PostedWrites; vm::MAX_PARTITIONS],
}

/// Memory-object mapping owners at and above this are partitions.
pub const PARTITION_OWNER: u32 = 0x8000_0000;

/// Objects whose last capability went away, to destroy once the capability
/// table is no longer borrowed: a bit per object of every pool
/// (`kerncore::doomed`), so one operation may end any number of objects.
pub type Doomed = kerncore::doomed::Doomed<{ DOOMED_KINDS.len() }, { MAX_MEMORY_OBJECTS.div_ceil(64) }>;

/// The kinds of object that are destroyed.
const DOOMED_KINDS: [ObjectType; 11] = [
    ObjectType::ENDPOINT,
    ObjectType::NOTIFICATION,
    ObjectType::THREAD,
    ObjectType::VP,
    ObjectType::TASK,
    ObjectType::PARTITION,
    ObjectType::MEMORY,
    ObjectType::SCHED_CONTEXT,
    ObjectType::IO_PORTS,
    ObjectType::INTERRUPT,
    ObjectType::UNTYPED,
];
// The memory pool is the largest: every pool fits the set.
const _: () = assert!(
    MAX_MEMORY_OBJECTS >= MAX_THREADS
        && MAX_MEMORY_OBJECTS >= MAX_ENDPOINTS
        && MAX_MEMORY_OBJECTS >= MAX_TASKS
        && MAX_MEMORY_OBJECTS >= MAX_IO_RANGES
        && MAX_MEMORY_OBJECTS >= MAX_INTERRUPTS
        && MAX_MEMORY_OBJECTS >= MAX_SCHED_CONTEXTS
);

impl Kernel {
    pub const fn new() -> Kernel {
        Kernel {
            caps: CapTable::new(),
            ipc: Ipc::new(TIMESLICE_TICKS),
            tasks: [const { None }; MAX_TASKS],
            threads: [Thread::DEAD; MAX_THREADS],
            memory: [const { None }; MAX_MEMORY_OBJECTS],
            quota: Quotas::new(),
            charges: Charges::new(),
            io: [const { None }; MAX_IO_RANGES],
            sched: [const { None }; MAX_SCHED_CONTEXTS],
            interrupts: [const { None }; MAX_INTERRUPTS],
            partitions: [const { None }; vm::MAX_PARTITIONS],
            vcpus: [const { None }; vm::MAX_VP_OBJECTS],
            ticks_seen: 0,
            next_tick_tsc: 0,
            awaiting_vps: 0,
            doomed: Doomed::new(DOOMED_KINDS),
            floating_ports: [const { kerncore::portset::PortSet::EMPTY }; vm::MAX_PARTITIONS],
            latched_ports: [kerncore::portset::PortLatches::NONE; vm::MAX_PARTITIONS],
            posted_writes: [kerncore::portset::PostedWrites::NONE; vm::MAX_PARTITIONS],
        }
    }

    pub fn task(&self, index: u32) -> Option<&Task> {
        self.tasks.get(index as usize)?.as_ref()
    }

    pub fn cspace_of(&self, thread: ThreadId) -> Option<CSpace> {
        let task = self.threads.get(usize::from(thread.0))?.task?;
        Some(self.task(task)?.cspace)
    }

    /// The slot range a task at `index` owns.
    pub fn cspace_for(index: usize) -> CSpace {
        match index.checked_sub(1) {
            None => CSpace { base: 0, len: ROOT_CSPACE_SLOTS },
            Some(i) => CSpace { base: ROOT_CSPACE_SLOTS + i as u32 * CSPACE_SLOTS, len: CSPACE_SLOTS },
        }
    }

    /// Creates a task with an empty address space and capability space.
    pub fn create_task(&mut self) -> Result<u32, abi::ErrorCode> {
        let index = self.tasks.iter().position(Option::is_none).ok_or(abi::ErrorCode::OUT_OF_MEMORY)?;
        let space = AddressSpace::new().map_err(|_| abi::ErrorCode::OUT_OF_MEMORY)?;
        self.tasks[index] = Some(Task { space, cspace: Self::cspace_for(index) });
        Ok(index as u32)
    }

    /// Creates a memory object of `pages` zeroed frames.
    pub fn create_memory(&mut self, pages: u64) -> Result<u32, abi::ErrorCode> {
        let index = self.memory.iter().position(Option::is_none).ok_or(abi::ErrorCode::OUT_OF_MEMORY)?;
        let count = usize::try_from(pages).map_err(|_| abi::ErrorCode::INVALID_ARGUMENT)?;
        let runs = memory::alloc_runs(count).ok_or(abi::ErrorCode::OUT_OF_MEMORY)?;
        self.memory[index] = Some(MemoryObject { runs, owned: true, mappings: heapless::Vec::new() });
        Ok(index as u32)
    }

    /// Charges `pages` to `pool` for `object` (on top of what it has).
    pub fn charge(&mut self, object: ObjRef, pool: Option<u32>, pages: u64) -> Result<(), abi::ErrorCode> {
        self.quota.charge(pool, pages, Entries::NONE).map_err(|_| abi::ErrorCode::OUT_OF_MEMORY)?;
        if let Some(c) = self.charges.of(object) {
            c.pool = pool;
            c.pages += pages;
        }
        Ok(())
    }

    /// Gives back what `tables` page tables of `owner`'s hierarchy, freed
    /// before `owner` goes, were charged.
    pub fn credit_tables(&mut self, owner: ObjRef, tables: u64) {
        if let Some(c) = self.charges.of(owner) {
            let pages = tables.saturating_mul(abi::cost::PAGE_TABLE).min(c.pages);
            c.pages -= pages;
            let pool = c.pool;
            self.quota.credit(pool, pages, Entries::NONE);
        }
    }

    /// Gives back everything `object` was charged: its pages, and its entry.
    pub fn uncharge(&mut self, object: ObjRef) {
        if let Some(c) = self.charges.of(object).map(core::mem::take) {
            let entry = EntryKind::of(object.kind).filter(|_| c.entry).map_or(Entries::NONE, Entries::one);
            self.quota.credit(c.pool, c.pages, entry);
        }
    }

    /// Entries of every table in use, counted (at boot: the root pool gets
    /// the rest).
    pub fn entries_in_use(&self) -> Entries {
        let count = |n: usize| n as u16;
        let threads = self.threads.iter().filter(|t| t.alive && t.vcpu.is_none()).count();
        Entries::NONE
            .with(EntryKind::Task, count(self.tasks.iter().flatten().count()))
            .with(EntryKind::Thread, count(threads))
            .with(EntryKind::Endpoint, count(self.ipc.endpoints_in_use()))
            .with(EntryKind::Notification, count(self.ipc.notifications_in_use()))
            .with(EntryKind::SchedContext, count(self.sched.iter().flatten().count()))
            .with(EntryKind::Partition, count(self.partitions.iter().flatten().count()))
            .with(EntryKind::Vp, count(self.vcpus.iter().flatten().count()))
            .with(EntryKind::Memory, count(self.memory.iter().flatten().count()))
            .with(EntryKind::Untyped, count(self.quota.count()))
    }

    /// The pool that pays for the page tables of a task or partition, and
    /// how many tables it can still pay for.
    pub fn table_budget(&mut self, owner: ObjRef) -> (Option<u32>, u64) {
        let pool = self.charges.of(owner).and_then(|c| c.pool);
        let left = match pool {
            Some(p) => self.quota.get(p).map_or(0, |q| q.left() / abi::cost::PAGE_TABLE),
            None => u64::MAX,
        };
        (pool, left)
    }

    /// Charges `tables` page tables just added to `owner`'s hierarchy.
    pub fn charge_tables(&mut self, owner: ObjRef, tables: u64) {
        let (pool, _) = self.table_budget(owner);
        // Within the budget `table_budget` gave, so this cannot fail.
        let _ = self.charge(owner, pool, tables * abi::cost::PAGE_TABLE);
    }

    /// Reports the removals of a capability operation: objects whose last
    /// capability went are queued in `doomed`.
    pub fn note_removed(doomed: &mut Doomed, removed: Removed) {
        if removed.last {
            doomed.push(removed.cap.object);
        }
    }

    /// Destroys queued objects, which may queue more (a task's capabilities).
    pub fn reap(&mut self) {
        let any = !self.doomed.is_empty();
        while let Some(object) = self.doomed.pop() {
            self.destroy(object);
        }
        if any {
            self.watch_vps();
        }
    }

    pub(super) fn destroy(&mut self, object: ObjRef) {
        let index = object.index as usize;
        match object.kind {
            ObjectType::ENDPOINT => {
                let _ = self.ipc.destroy_endpoint(EndpointId(object.index));
                // Faults of threads that reported to it now have no handler,
                // and a reused endpoint must not receive them.
                for thread in self.threads.iter_mut() {
                    if thread.fault_handler.is_some_and(|(ep, _)| ep.0 == object.index) {
                        thread.fault_handler = None;
                    }
                }
                // Nor a VP's stop report, with the badge of a capability to
                // the endpoint that went.
                for vcpu in self.vcpus.iter_mut().flatten() {
                    if vcpu.monitor.is_some_and(|(ep, _)| ep.0 == object.index) {
                        vcpu.monitor = None;
                    }
                }
            }
            ObjectType::NOTIFICATION => {
                let _ = self.ipc.destroy_notification(NotificationId(object.index));
                // A line bound to it would signal whatever is made next at
                // its index: it is unbound and masked until bound again.
                for line in self.interrupts.iter_mut().flatten() {
                    if line.binding.is_some_and(|(ntf, _)| ntf.0 == object.index) {
                        (line.binding, line.armed) = (None, false);
                        crate::arch::ioapic::set(line.first, true);
                    }
                }
            }
            ObjectType::THREAD => self.destroy_thread(ThreadId(object.index as u16)),
            ObjectType::TASK => self.destroy_task(object.index),
            ObjectType::VP => self.destroy_thread(ThreadId(object.index as u16)),
            ObjectType::PARTITION => {
                if let Some(mut partition) = self.partitions.get_mut(index).and_then(Option::take) {
                    for mem in self.memory.iter_mut().flatten() {
                        mem.mappings.retain(|m| m.owner != PARTITION_OWNER + object.index);
                    }
                    for vcpu in self.vcpus.iter_mut().flatten() {
                        if vcpu.partition == Some(object.index) {
                            vcpu.partition = None;
                            vcpu.hw.forget_slat();
                        }
                    }
                    // No CPU may still walk (or hold translations from) the
                    // tables: its VPs in guest mode elsewhere leave first.
                    partition.shoot_down(object.index);
                    for view in partition.views() {
                        let _ = crate::arch::vm::slat::free(partition.backend, view);
                    }
                    // Nothing of the guest stays behind: its posted output.
                    self.clear_port_answers(index);
                }
            }
            ObjectType::MEMORY => {
                if let Some(mem) = self.memory.get_mut(index).and_then(Option::take) {
                    for (phys, pages) in mem.runs.segments(0, mem.pages()) {
                        self.forget_ipc_buffers(|_| true, phys, pages * PAGE_SIZE, false);
                    }
                    // Records match what is mapped; removing what is present
                    // cannot fail, so no translation to these frames survives.
                    for m in &mem.mappings {
                        if let Some(p) = m.owner.checked_sub(PARTITION_OWNER) {
                            self.unmap_guest(p, m.at, m.pages);
                        } else if let Some(t) = self.tasks.get_mut(m.owner as usize).and_then(Option::as_mut) {
                            t.space.unmap_present(m.at, m.pages * PAGE_SIZE);
                        }
                    }
                    if mem.owned {
                        memory::free_runs(mem.runs);
                    } else {
                        mem.runs.into_frames().for_each(|f| _ = f.leak());
                    }
                }
            }
            ObjectType::SCHED_CONTEXT => {
                // Its thread runs on as one configured with no context does
                // (priority 0, no budget limit): what any holder of a thread
                // gets, so neither the context's priority nor its entry is
                // kept for free.
                if let Some(t) = self.sched.get_mut(index).and_then(Option::take).and_then(|sc| sc.bound) {
                    let _ = self.ipc.configure(t, SchedParams::DEFAULT);
                    self.ipc.set_cpu(t, 0);
                }
            }
            ObjectType::IO_PORTS => {
                if let Some(slot) = self.io.get_mut(index) {
                    *slot = None;
                }
            }
            ObjectType::INTERRUPT => {
                if let Some(line) = self.interrupts.get_mut(index).and_then(Option::take).filter(|l| l.count == 1) {
                    crate::arch::ioapic::set(line.first, true);
                }
            }
            ObjectType::UNTYPED => self.release_untyped(object.index),
            _ => {}
        }
        self.uncharge(object);
    }

    fn destroy_thread(&mut self, t: ThreadId) {
        let Some(thread) = self.threads.get_mut(usize::from(t.0)) else {
            return;
        };
        if !thread.alive {
            return;
        }
        // Off every CPU before its frame or VP state can be reused: out of
        // user mode, and its VP out of guest mode with its state given up
        // where it is (never through a slot already emptied).
        let _ = self.ipc.exit(t);
        crate::arch::ipi::wait_out(crate::arch::ipi::Outside::User(t.0));
        let vp = self.threads[usize::from(t.0)].vcpu;
        if let Some(vcpu) = vp.and_then(|v| self.vcpus.get_mut(v as usize)?.as_mut()) {
            vcpu.hw.quiesce();
        }
        if let Some(vcpu) = vp.and_then(|v| self.vcpus.get_mut(v as usize)?.take()) {
            vcpu.hw.release();
        }
        let thread = &mut self.threads[usize::from(t.0)];
        *thread = Thread::DEAD;
        let _ = self.ipc.free_thread(t);
        for sc in self.sched.iter_mut().flatten() {
            if sc.bound == Some(t) {
                sc.bound = None;
            }
        }
    }

    /// A task goes with its threads, its mappings and its capabilities.
    fn destroy_task(&mut self, index: u32) {
        let Some(task) = self.tasks.get_mut(index as usize).and_then(Option::take) else {
            return;
        };
        // Its threads stop for good; each stays (with what it was charged)
        // until its last capability goes, so no capability ever names a
        // reused entry.
        for t in 0..MAX_THREADS {
            let thread = &mut self.threads[t];
            if thread.alive && thread.task == Some(index) {
                (thread.task, thread.started, thread.ipc_buffer, thread.fault_handler) = (None, false, None, None);
                let id = ThreadId(t as u16);
                let _ = self.ipc.exit(id);
                for sc in self.sched.iter_mut().flatten().filter(|sc| sc.bound == Some(id)) {
                    sc.bound = None;
                }
            }
        }
        for mem in self.memory.iter_mut().flatten() {
            mem.mappings.retain(|m| m.owner != index);
        }
        let Kernel { caps, doomed, .. } = self;
        caps.clear_cspace(task.cspace, |removed| Self::note_removed(doomed, removed));
        task.space.destroy();
    }

    /// Drops the IPC buffer of threads (matching `which`) whose buffer lies in
    /// `[start, start+len)` — a user address range if `virtual_range`, else a
    /// physical one — so the kernel never writes a frame that was unmapped
    /// or freed. Such a thread then sends and receives register words only.
    pub fn forget_ipc_buffers(&mut self, which: impl Fn(&Thread) -> bool, start: u64, len: u64, virtual_range: bool) {
        for thread in self.threads.iter_mut().filter(|t| t.alive && which(t)) {
            if let Some((vaddr, phys)) = thread.ipc_buffer {
                let at = if virtual_range { vaddr } else { phys };
                if at >= start && at - start < len {
                    thread.ipc_buffer = None;
                }
            }
        }
    }

    /// Ends an untyped pool. Objects made from it keep their frames until
    /// they go, and stay charged to its parent; only the unused part of its
    /// quota returns to the parent now (see `kerncore::quota`).
    pub fn release_untyped(&mut self, index: u32) {
        let Some(owner) = self.quota.release(index) else { return };
        for charge in self.charges.all().filter(|c| c.pool == Some(index)) {
            charge.pool = owner;
        }
    }

    /// Removes whatever guest mappings `[gpa, gpa + pages)` has (teardown:
    /// it cannot fail); the partition's VPs flush before running again.
    pub fn unmap_guest(&mut self, partition: u32, gpa: u64, pages: u64) {
        let Some(p) = self.partitions.get_mut(partition as usize).and_then(Option::as_mut) else { return };
        for view in p.views() {
            crate::arch::vm::slat::unmap_present(p.backend, view, gpa, pages.saturating_mul(PAGE_SIZE));
        }
        p.shoot_down(partition);
    }

    /// Checks an unmap of `[at, at + pages)` from `owner` before anything
    /// changes: every page must be recorded (so mapped), and every record
    /// it cuts must still fit once split.
    pub fn check_unmap(&self, owner: u32, at: u64, pages: u64) -> Result<(), abi::ErrorCode> {
        let records = self.memory.iter().flatten().flat_map(|m| m.mappings.iter());
        if pages == 0
            || !at.is_multiple_of(PAGE_SIZE)
            || mapping::covered(records, owner, at, pages, PAGE_SIZE) != pages
        {
            return Err(abi::ErrorCode::INVALID_ARGUMENT);
        }
        for mem in self.memory.iter().flatten() {
            if mapping::covered(&mem.mappings, owner, at, pages, PAGE_SIZE) > 0 {
                mapping::cut(&mem.mappings, owner, at, pages, PAGE_SIZE).map_err(|_| abi::ErrorCode::OUT_OF_MEMORY)?;
            }
        }
        Ok(())
    }

    /// Cuts `[at, at + pages)` of `owner` out of the records, once
    /// [`Self::check_unmap`] passed and the pages are unmapped.
    pub fn record_unmap(&mut self, owner: u32, at: u64, pages: u64) {
        for mem in self.memory.iter_mut().flatten() {
            if let Ok(rest) = mapping::cut(&mem.mappings, owner, at, pages, PAGE_SIZE) {
                mem.mappings = rest;
            }
        }
    }

    /// Signals the notifications bound to lines that fired. A line stays
    /// masked until its task acknowledges it.
    #[inline]
    pub fn deliver_interrupts(&mut self) {
        let fired = crate::arch::apic::take_pending_interrupts();
        if fired != 0 {
            self.signal_lines(fired);
        }
    }

    #[inline(never)]
    fn signal_lines(&mut self, fired: u32) {
        for line in self.interrupts.iter_mut().flatten() {
            if line.count == 1 && fired & (1 << line.first) != 0 {
                line.armed = false;
                if let Some((ntf, bits)) = line.binding {
                    let _ = self.ipc.signal(ntf, bits);
                }
            }
        }
    }

    /// True if an interrupt line is unmasked with a task waiting on it.
    pub fn interrupts_armed(&self) -> bool {
        self.interrupts.iter().flatten().any(|l| l.armed)
    }

    /// Partition `index` has no floating, latched or posted ports, and no
    /// posted writes (when it is made, and when it is destroyed).
    pub fn clear_port_answers(&mut self, index: usize) {
        self.floating_ports[index] = kerncore::portset::PortSet::EMPTY;
        self.latched_ports[index] = kerncore::portset::PortLatches::NONE;
        self.posted_writes[index] = kerncore::portset::PostedWrites::NONE;
    }

    /// Feeds timer ticks that began since the last call to the scheduler,
    /// and wakes the threads whose TSC deadline passed: one TSC read, and
    /// no division until the next tick boundary passes.
    #[inline(always)]
    pub fn catch_up_ticks(&mut self) {
        let tsc = crate::arch::cpu::timestamp();
        if tsc >= self.next_tick_tsc || self.ipc.earliest_deadline().is_some_and(|d| d <= tsc) {
            self.catch_up(tsc);
        }
    }

    /// [`catch_up_ticks`](Self::catch_up_ticks) when a tick or a deadline is due.
    #[inline(never)]
    fn catch_up(&mut self, tsc: u64) {
        if tsc >= self.next_tick_tsc {
            self.take_ticks(tsc);
        }
        if let Some(deadline) = self.ipc.earliest_deadline()
            && deadline <= tsc
        {
            self.expire_deadlines(tsc);
        }
    }

    /// Out of line: most kernel entries find no deadline passed, and
    /// `catch_up_ticks` stays small enough to inline.
    #[inline(never)]
    fn expire_deadlines(&mut self, tsc: u64) {
        self.ipc.expire_deadlines(tsc);
    }

    /// True if no tick, TSC deadline or device interrupt is due: what
    /// `catch_up_ticks` and `deliver_interrupts` would find nothing to do
    /// for (the IPC fast path runs only then).
    #[inline]
    pub fn nothing_due(&self) -> bool {
        let tsc = crate::arch::cpu::timestamp();
        tsc < self.next_tick_tsc
            && self.ipc.earliest_deadline().is_none_or(|d| d > tsc)
            && !crate::arch::apic::interrupts_pending()
    }

    /// Arms this CPU's timer for its next tick or the earliest TSC deadline
    /// of its threads: call last before leaving ring 0 (to user or guest
    /// mode, or to idle). Nothing to do while it is armed no later than
    /// every deadline (it is never later than the next tick): a deadline
    /// since cancelled costs at most an early interrupt, which re-arms.
    #[inline]
    pub fn arm_timer(&self) {
        let armed = crate::arch::apic::armed();
        if armed != 0 && self.ipc.earliest_deadline().is_none_or(|d| d >= armed) {
            return;
        }
        crate::arch::apic::arm(self.ipc.next_deadline(crate::arch::percpu::index()));
    }

    /// Feeds the ticks begun by TSC `tsc` (at or past `next_tick_tsc`): one
    /// addition a tick, a division only to find the first boundary or after
    /// a long gap.
    #[inline(never)]
    fn take_ticks(&mut self, tsc: u64) {
        let Some(clock) = crate::arch::apic::clock() else { return };
        let mut next = self.next_tick_tsc;
        let mut begun = 0;
        if next == 0 || tsc.saturating_sub(next) >= clock.per_tick.saturating_mul(TICKS_TO_ADD) {
            next = clock.next_boundary(tsc);
            begun = clock.ticks_at(tsc).saturating_sub(self.ticks_seen);
        } else {
            while tsc >= next {
                next += clock.per_tick;
                begun += 1;
            }
        }
        self.next_tick_tsc = next;
        if begun == 0 {
            return;
        }
        self.ticks_seen += begun;
        for _ in 0..begun {
            self.ipc.tick();
        }
        self.watch_vps();
        crate::arch::nmi::log_if_due(self.ticks_seen);
    }

    /// Installs a new object's first capability in `task`'s `slot`.
    pub fn grant(&mut self, task: u32, slot: abi::CapSlot, cap: Capability) -> Result<(), abi::ErrorCode> {
        let cspace = self.task(task).ok_or(abi::ErrorCode::INVALID_STATE)?.cspace;
        let dest = self.caps.resolve(cspace, slot)?;
        self.caps.insert_root(dest, cap)
    }
}
