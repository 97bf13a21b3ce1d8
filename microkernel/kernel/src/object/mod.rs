//! Kernel objects and the tables that hold them.
//!
//! Every object lives in a bounded pool sized at build time; a capability
//! names it by type and pool index (`kerncore::cap::ObjRef`). Capabilities,
//! IPC and scheduling state are `kerncore`'s; this module adds what ring 0
//! needs besides: address spaces, saved register state, frames and device
//! ranges. When the last capability to an object goes, the object is
//! destroyed here.

pub mod invoke;
pub mod syscall;
pub mod transfer;
pub mod vm;

use crate::arch::addrspace::AddressSpace;
use crate::arch::idt::TrapFrame;
use crate::arch::memory;
use abi::{Badge, ObjectType};
use kerncore::cap::{CSpace, CapTable, Capability, ObjRef, Removed};
use kerncore::frames::Frames;
use kerncore::ipc::{EndpointId, Ipc, NotificationId};
use kerncore::paging::PAGE_SIZE;
use kerncore::sched::{Ceiling, SchedParams, ThreadId};

pub const MAX_TASKS: usize = 32;
pub const MAX_THREADS: usize = 64;
pub const MAX_ENDPOINTS: usize = 64;
pub const MAX_NOTIFICATIONS: usize = 32;
pub const MAX_MEMORY_OBJECTS: usize = 512;
pub const MAX_IO_RANGES: usize = 64;
pub const MAX_SCHED_CONTEXTS: usize = 64;
pub const MAX_UNTYPED: usize = 16;
pub const MAX_INTERRUPTS: usize = 40;
/// Capability slots per task.
pub const CSPACE_SLOTS: u32 = 128;
pub const CAP_SLOTS: usize = MAX_TASKS * CSPACE_SLOTS as usize;
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
    pub phys: u64,
    pub pages: u64,
    /// Frames from the pool (freed on destruction); `None` for boot modules.
    pub frames: Option<Frames>,
    /// The untyped pool whose quota paid for it.
    pub untyped: Option<u32>,
    /// (task, user address, pages) of each mapping.
    pub mappings: heapless::Vec<(u32, u64, u64), MAX_MAPPINGS>,
}

pub struct Untyped {
    /// Pages that may still be retyped into memory objects or sub-pools.
    pub pages_left: u64,
    /// Pages it was made with, returned to `parent` when it goes.
    pub pages: u64,
    pub parent: Option<u32>,
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
}

impl SchedContext {
    /// A new context under `ceiling`, at the least it permits.
    pub const fn new(ceiling: Ceiling) -> SchedContext {
        SchedContext { params: ceiling.lowest(), ceiling, bound: None }
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
    pub untyped: [Option<Untyped>; MAX_UNTYPED],
    pub io: [Option<IoRange>; MAX_IO_RANGES],
    pub sched: [Option<SchedContext>; MAX_SCHED_CONTEXTS],
    pub interrupts: [Option<Interrupt>; MAX_INTERRUPTS],
    pub partitions: [Option<vm::Partition>; vm::MAX_PARTITIONS],
    pub vcpus: [Option<vm::Vcpu>; vm::MAX_VP_OBJECTS],
    /// Timer ticks already fed to the scheduler.
    pub ticks_seen: u64,
}

/// Memory-object mapping owners at and above this are partitions.
pub const PARTITION_OWNER: u32 = 0x8000_0000;

/// Objects whose last capability went away, to destroy once the capability
/// table is no longer borrowed.
pub type Doomed = heapless::Deque<ObjRef, 64>;

impl Kernel {
    pub const fn new() -> Kernel {
        Kernel {
            caps: CapTable::new(),
            ipc: Ipc::new(TIMESLICE_TICKS),
            tasks: [const { None }; MAX_TASKS],
            threads: [Thread::DEAD; MAX_THREADS],
            memory: [const { None }; MAX_MEMORY_OBJECTS],
            untyped: [const { None }; MAX_UNTYPED],
            io: [const { None }; MAX_IO_RANGES],
            sched: [const { None }; MAX_SCHED_CONTEXTS],
            interrupts: [const { None }; MAX_INTERRUPTS],
            partitions: [const { None }; vm::MAX_PARTITIONS],
            vcpus: [const { None }; vm::MAX_VP_OBJECTS],
            ticks_seen: 0,
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
        CSpace { base: index as u32 * CSPACE_SLOTS, len: CSPACE_SLOTS }
    }

    /// Creates a task with an empty address space and capability space.
    pub fn create_task(&mut self) -> Result<u32, abi::ErrorCode> {
        let index = self.tasks.iter().position(Option::is_none).ok_or(abi::ErrorCode::OUT_OF_MEMORY)?;
        let space = AddressSpace::new().map_err(|_| abi::ErrorCode::OUT_OF_MEMORY)?;
        self.tasks[index] = Some(Task { space, cspace: Self::cspace_for(index) });
        Ok(index as u32)
    }

    /// Creates a memory object of `pages` zeroed frames.
    pub fn create_memory(&mut self, pages: u64, untyped: Option<u32>) -> Result<u32, abi::ErrorCode> {
        let index = self.memory.iter().position(Option::is_none).ok_or(abi::ErrorCode::OUT_OF_MEMORY)?;
        let count = usize::try_from(pages).map_err(|_| abi::ErrorCode::INVALID_ARGUMENT)?;
        let frames = memory::alloc_frames(count).ok_or(abi::ErrorCode::OUT_OF_MEMORY)?;
        self.memory[index] = Some(MemoryObject {
            phys: frames.start(),
            pages,
            frames: Some(frames),
            untyped,
            mappings: heapless::Vec::new(),
        });
        Ok(index as u32)
    }

    /// Reports the removals of a capability operation: objects whose last
    /// capability went are queued in `doomed`.
    pub fn note_removed(doomed: &mut Doomed, removed: Removed) {
        if removed.last {
            // A full queue only delays destruction of the overflow to never;
            // 64 exceeds any single operation on these pool sizes.
            let _ = doomed.push_back(removed.cap.object);
        }
    }

    /// Destroys queued objects, which may queue more (a task's capabilities).
    pub fn reap(&mut self, doomed: &mut Doomed) {
        let any = !doomed.is_empty();
        while let Some(object) = doomed.pop_front() {
            self.destroy(object, doomed);
        }
        if any {
            self.watch_vps();
        }
    }

    fn destroy(&mut self, object: ObjRef, doomed: &mut Doomed) {
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
            }
            ObjectType::NOTIFICATION => {
                let _ = self.ipc.destroy_notification(NotificationId(object.index));
            }
            ObjectType::THREAD => self.destroy_thread(ThreadId(object.index as u16)),
            ObjectType::TASK => self.destroy_task(object.index, doomed),
            ObjectType::VP => self.destroy_thread(ThreadId(object.index as u16)),
            ObjectType::PARTITION => {
                if let Some(partition) = self.partitions.get_mut(index).and_then(Option::take) {
                    for mem in self.memory.iter_mut().flatten() {
                        mem.mappings.retain(|m| m.0 != PARTITION_OWNER + object.index);
                    }
                    for vcpu in self.vcpus.iter_mut().flatten() {
                        if vcpu.partition == Some(object.index) {
                            vcpu.partition = None;
                        }
                    }
                    crate::arch::vm::slat::free(partition.backend, partition.root);
                }
            }
            ObjectType::MEMORY => {
                if let Some(mem) = self.memory.get_mut(index).and_then(Option::take) {
                    self.forget_ipc_buffers(|_| true, mem.phys, mem.pages * PAGE_SIZE, false);
                    for &(owner, vaddr, pages) in &mem.mappings {
                        if let Some(p) = owner.checked_sub(PARTITION_OWNER) {
                            self.unmap_guest(p, vaddr, pages);
                        } else if let Some(t) = self.tasks.get_mut(owner as usize).and_then(Option::as_mut) {
                            let _ = t.space.unmap(vaddr, pages * PAGE_SIZE);
                        }
                    }
                    if let Some(untyped) = mem.untyped.and_then(|u| self.untyped.get_mut(u as usize)?.as_mut()) {
                        untyped.pages_left += mem.pages;
                    }
                    if let Some(frames) = mem.frames {
                        memory::free_frames(frames);
                    }
                }
            }
            ObjectType::SCHED_CONTEXT => {
                if let Some(slot) = self.sched.get_mut(index) {
                    *slot = None;
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
            ObjectType::UNTYPED => self.release_untyped(index),
            _ => {}
        }
    }

    fn destroy_thread(&mut self, t: ThreadId) {
        let Some(thread) = self.threads.get_mut(usize::from(t.0)) else {
            return;
        };
        if !thread.alive {
            return;
        }
        if let Some(vcpu) = thread.vcpu.and_then(|v| self.vcpus.get_mut(v as usize)?.take()) {
            vcpu.hw.release();
        }
        let thread = &mut self.threads[usize::from(t.0)];
        *thread = Thread::DEAD;
        let _ = self.ipc.exit(t);
        let _ = self.ipc.free_thread(t);
        for sc in self.sched.iter_mut().flatten() {
            if sc.bound == Some(t) {
                sc.bound = None;
            }
        }
    }

    /// A task goes with its threads, its mappings and its capabilities.
    fn destroy_task(&mut self, index: u32, doomed: &mut Doomed) {
        let Some(task) = self.tasks.get_mut(index as usize).and_then(Option::take) else {
            return;
        };
        for t in 0..MAX_THREADS {
            if self.threads[t].alive && self.threads[t].task == Some(index) {
                self.destroy_thread(ThreadId(t as u16));
            }
        }
        for mem in self.memory.iter_mut().flatten() {
            mem.mappings.retain(|m| m.0 != index);
        }
        self.caps.clear_cspace(task.cspace, |removed| Self::note_removed(doomed, removed));
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
    /// they go; the quota it was carved from returns to its parent now.
    pub fn release_untyped(&mut self, index: usize) {
        let Some(pool) = self.untyped.get_mut(index).and_then(Option::take) else { return };
        if let Some(parent) = pool.parent.and_then(|p| self.untyped.get_mut(p as usize)?.as_mut()) {
            parent.pages_left += pool.pages;
        }
    }

    /// Removes guest mappings; the partition's VPs flush before running again.
    pub fn unmap_guest(&mut self, partition: u32, gpa: u64, pages: u64) {
        let Some(p) = self.partitions.get_mut(partition as usize).and_then(Option::as_mut) else { return };
        let _ = crate::arch::vm::slat::unmap(p.backend, p.root, gpa, pages * PAGE_SIZE);
        p.flush = true;
    }

    /// Signals the notifications bound to lines that fired. A line stays
    /// masked until its task acknowledges it.
    pub fn deliver_interrupts(&mut self) {
        let fired = crate::arch::apic::take_pending_interrupts();
        if fired == 0 {
            return;
        }
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

    /// Feeds timer ticks that arrived since the last call to the scheduler.
    pub fn catch_up_ticks(&mut self) {
        let now = crate::arch::apic::ticks();
        if self.ticks_seen >= now {
            return;
        }
        while self.ticks_seen < now {
            self.ipc.tick();
            self.ticks_seen += 1;
        }
        self.watch_vps();
        crate::arch::nmi::log_if_due(now);
    }

    /// Installs a new object's first capability in `task`'s `slot`.
    pub fn grant(&mut self, task: u32, slot: abi::CapSlot, cap: Capability) -> Result<(), abi::ErrorCode> {
        let cspace = self.task(task).ok_or(abi::ErrorCode::INVALID_STATE)?.cspace;
        let dest = self.caps.resolve(cspace, slot)?;
        self.caps.insert_root(dest, cap)
    }
}
