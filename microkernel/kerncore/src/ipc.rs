//! The IPC and notification state machine (after seL4 and NOVA).
//!
//! [`Ipc`] owns fixed pools of threads, endpoints and notifications, and the
//! [`Scheduler`]. It decides who blocks, who wakes and with what result; it
//! never touches registers or memory. Copying a message is the arch layer's
//! [`Transfer`], called exactly at a rendezvous.
//!
//! # How the arch layer drives it
//!
//! 1. Decode the syscall and look the capability up in the
//!    [`CapTable`](crate::cap::CapTable); on an error, [`Ipc::complete`] the
//!    caller with it.
//! 2. Call the operation (`send`, `call`, `recv`, ...) for the calling
//!    thread. Every operation leaves each thread whose syscall finished
//!    (the caller, a woken peer) with a [`SyscallResult`] in its control
//!    block, and blocked threads off the scheduler. An `Err` from an
//!    operation means the kernel itself broke a precondition (the caller is
//!    not runnable, an id is out of range or dead); nothing changed.
//! 3. [`Ipc::schedule`]`(cpu)` picks the thread to run on this CPU. Before
//!    returning to user mode in thread `t`, write [`Ipc::take_result`]`(t)`,
//!    if any, into `rax` (error), `rsi` (info) and `rdi` (badge). No result
//!    means `t` was not in a syscall (preempted, resumed after a fault or a
//!    start).
//! 4. On the timer interrupt of the CPU that keeps the global clock call
//!    [`Ipc::tick`] (it charges every CPU's running thread), then
//!    [`Ipc::schedule`].
//! 5. After any of these, [`Ipc::take_kicks`] names the CPUs whose choice
//!    may have changed (a thread woken onto their queue, their running
//!    thread blocked or moved): send each but this one a reschedule IPI,
//!    on which it calls [`Ipc::schedule`] for itself.
//!
//! Each thread waits and runs on its home CPU ([`Ipc::set_cpu`]); whichever
//! CPU wakes it (a send, a reply, a signal, a timeout) queues it there.
//!
//! # Endpoints
//!
//! A synchronous rendezvous. Blocked senders and receivers wait in queues
//! ordered by priority, FIFO within a priority; an endpoint never has both
//! waiting. A `call` that reaches a receiver hands it a one-shot reply right
//! (kept in the receiver's control block) and blocks the caller until the
//! reply. A server must reply before it receives again: `recv` drops a reply
//! right still held, and its caller gets PEER_GONE.

use crate::sched::{SchedParams, Scheduler, ThreadId};

mod fast;
use abi::{Badge, ErrorCode, FaultMessage, MessageInfo, labels};
pub use fast::{Fast, Handoff, delivered_info};

/// An endpoint, by its index in the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EndpointId(pub u32);

/// A notification, by its index in the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NotificationId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadState {
    /// Never started, exited, or a free pool entry.
    Inactive,
    /// Running, ready or out of budget: the scheduler's business.
    Runnable,
    /// Queued on an endpoint with a message (a call, or a fault, if `is_call`).
    BlockedSend { ep: EndpointId, is_call: bool },
    /// Queued on an endpoint waiting for a message.
    BlockedRecv { ep: EndpointId },
    /// Called `server`, which holds the reply right.
    BlockedReply { server: ThreadId },
    /// Queued on a notification waiting for bits.
    BlockedWait { ntf: NotificationId },
    /// Stopped by [`Ipc::suspend`].
    Suspended,
    /// Faulted with no handler, or the handler went away before replying.
    Faulted,
}

/// How long a receive or wait may block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// Not at all: WOULD_BLOCK.
    Poll,
    Forever,
    /// At most this many ticks, then TIMEOUT.
    Ticks(u64),
    /// Until the TSC reaches this absolute deadline, then TIMEOUT (the
    /// arch layer arms this CPU's timer for it: [`Ipc::next_deadline`]).
    Tsc(u64),
    /// A TSC deadline already passed: as [`Block::Poll`], but TIMEOUT.
    Expired,
}

impl Block {
    /// From the syscall: the non-blocking flag and the timeout register (0 = forever).
    pub const fn from_abi(non_blocking: bool, timeout: u64) -> Block {
        match (non_blocking, timeout) {
            (true, _) => Block::Poll,
            (false, 0) => Block::Forever,
            (false, ticks) => Block::Ticks(ticks),
        }
    }

    /// From the syscall with [`MessageInfo::tsc_deadline`] set: the
    /// timeout register is an absolute TSC `deadline`, `now` the TSC as the
    /// kernel read it. Any value is valid: one at or before `now` (0
    /// included) has passed.
    pub const fn from_tsc_deadline(non_blocking: bool, deadline: u64, now: u64) -> Block {
        match non_blocking {
            true => Block::Poll,
            false if deadline <= now => Block::Expired,
            false => Block::Tsc(deadline),
        }
    }
}

/// Why a message travels; tells [`Transfer`] where to take it from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Send,
    Call,
    /// Made by the kernel for a faulting thread: the words of its
    /// [`FaultMessage`], not its registers.
    Fault,
    Reply,
    /// The reply to a fault: applies to the faulted thread's state, which
    /// then resumes.
    FaultReply,
}

/// A message as the sender offers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    /// From the sender's capability (0 for replies); the receiver learns it.
    pub badge: Badge,
    pub info: MessageInfo,
    /// Capabilities may travel: the sender's capability had GRANT (for a
    /// reply: the caller's had).
    pub grant: bool,
}

/// Copies a message between two threads: registers, IPC buffer, and with
/// `msg.grant` the capabilities. Implemented by the arch layer.
///
/// Called exactly when a sender meets a receiver, with both still in their
/// pre-rendezvous states:
/// - `send`/`call`/`fault` of `from` finding `to` queued as receiver;
/// - `recv`/`reply_recv` of `to` finding `from` queued as sender (again for
///   the next sender if it fails);
/// - `reply`/`reply_recv` of `from` to the caller `to`.
///
/// It returns the info the receiver sees (length and capabilities actually
/// transferred). An error goes to the sender (`from`) only: its send or
/// reply fails with it, and the receiver keeps waiting. Never called for
/// notifications.
pub trait Transfer {
    fn transfer(&mut self, from: ThreadId, to: ThreadId, kind: Kind, msg: Message) -> Result<MessageInfo, ErrorCode>;
}

/// How a thread's syscall ended: `rax`, `rsi`, `rdi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallResult {
    pub error: ErrorCode,
    pub info: MessageInfo,
    /// The sender's badge for a receive; the bits for a wait.
    pub badge: Badge,
}

impl SyscallResult {
    pub const OK: SyscallResult = SyscallResult::ok(MessageInfo::new(), Badge(0));

    pub const fn ok(info: MessageInfo, badge: Badge) -> Self {
        SyscallResult { error: ErrorCode::OK, info, badge }
    }

    pub const fn error(error: ErrorCode) -> Self {
        SyscallResult { error, info: MessageInfo::new(), badge: Badge(0) }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReplyRight {
    None,
    Caller {
        thread: ThreadId,
        grant: bool,
        fault: bool,
    },
    /// The caller died: replying fails with PEER_GONE.
    Gone,
}

enum ReplyOutcome {
    Replied,
    NoCaller,
    CallerGone,
    Failed(ErrorCode),
}

const NONE: u16 = u16::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Link {
    next: u16,
    prev: u16,
}

const UNLINKED: Link = Link { next: NONE, prev: NONE };

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tcb {
    in_use: bool,
    state: ThreadState,
    /// The message of a blocked sender.
    msg: Message,
    /// Blocked on behalf of a fault, not a syscall: no result to deliver.
    in_fault: bool,
    /// The reply right this thread holds as a server.
    reply: ReplyRight,
    result: Option<SyscallResult>,
    /// Links of the endpoint or notification queue.
    queue: Link,
    /// In a timeout list, expiring at `deadline`: in ticks, or in TSC
    /// units if `on_tsc` (then in the TSC deadline list).
    timed: bool,
    on_tsc: bool,
    deadline: u64,
    timer: Link,
    /// Its bound notification ([`Ipc::bind_notification`]), by index.
    bound: Option<u32>,
}

impl Tcb {
    const FREE: Tcb = Tcb {
        in_use: false,
        state: ThreadState::Inactive,
        msg: Message { badge: Badge(0), info: MessageInfo::new(), grant: false },
        in_fault: false,
        reply: ReplyRight::None,
        result: None,
        queue: UNLINKED,
        timed: false,
        on_tsc: false,
        deadline: 0,
        timer: UNLINKED,
        bound: None,
    };

    /// What a queued sender is sending.
    fn kind(&self) -> Kind {
        match self.state {
            ThreadState::BlockedSend { is_call: true, .. } if self.in_fault => Kind::Fault,
            ThreadState::BlockedSend { is_call: true, .. } => Kind::Call,
            _ => Kind::Send,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Queue {
    head: u16,
    tail: u16,
}

impl Queue {
    const EMPTY: Queue = Queue { head: NONE, tail: NONE };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Endpoint {
    alive: bool,
    senders: Queue,
    receivers: Queue,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Notification {
    alive: bool,
    bits: u64,
    waiters: Queue,
    /// The thread it is bound to (index), or NONE.
    bound: u16,
}

/// Which queue a blocked thread is in.
#[derive(Clone, Copy)]
enum Where {
    Senders(usize),
    Receivers(usize),
    Waiters(usize),
}

/// Threads, endpoints and notifications in fixed pools, and the scheduler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipc<const THREADS: usize, const ENDPOINTS: usize, const NOTIFICATIONS: usize> {
    sched: Scheduler<THREADS>,
    threads: [Tcb; THREADS],
    endpoints: [Endpoint; ENDPOINTS],
    notifications: [Notification; NOTIFICATIONS],
    /// Threads with a deadline in ticks, soonest first.
    timeouts: Queue,
    /// Threads with a deadline in TSC units, soonest first.
    tsc_timeouts: Queue,
}

impl<const T: usize, const E: usize, const N: usize> Ipc<T, E, N> {
    /// `timeslice`: see [`Scheduler::new`].
    pub const fn new(timeslice: u32) -> Self {
        Ipc {
            sched: Scheduler::new(timeslice),
            threads: [Tcb::FREE; T],
            endpoints: [Endpoint { alive: false, senders: Queue::EMPTY, receivers: Queue::EMPTY }; E],
            notifications: [Notification { alive: false, bits: 0, waiters: Queue::EMPTY, bound: NONE }; N],
            timeouts: Queue::EMPTY,
            tsc_timeouts: Queue::EMPTY,
        }
    }

    /// True if a future tick can make a thread runnable on its own: a
    /// receive or wait with a timeout, or a budget to refill. When nothing
    /// is runnable and this is false, only an interrupt can wake the system.
    pub fn has_pending_events(&self) -> bool {
        self.timeouts.head != NONE || self.tsc_timeouts.head != NONE || self.sched.has_depleted()
    }

    // ---- TSC deadlines ----

    /// Wakes every thread whose TSC deadline is at or before `now` with
    /// TIMEOUT, whatever its CPU (each goes to its home CPU's queue; see
    /// [`take_kicks`](Self::take_kicks)). Call on every entry to the
    /// kernel with the TSC just read.
    pub fn expire_deadlines(&mut self, now: u64) {
        while self.tsc_timeouts.head != NONE && self.threads[self.tsc_timeouts.head as usize].deadline <= now {
            let t = ThreadId(self.tsc_timeouts.head);
            self.wake(t, Some(SyscallResult::error(ErrorCode::TIMEOUT)));
        }
    }

    /// The earliest TSC deadline of any thread, if one waits for one (a
    /// cheap look before [`expire_deadlines`](Self::expire_deadlines)).
    pub fn earliest_deadline(&self) -> Option<u64> {
        (self.tsc_timeouts.head != NONE).then(|| self.threads[self.tsc_timeouts.head as usize].deadline)
    }

    /// The earliest TSC deadline of a thread at home on `cpu`: what that
    /// CPU's timer must wake it for (besides its next tick). O(threads
    /// with a TSC deadline).
    pub fn next_deadline(&self, cpu: usize) -> Option<u64> {
        let mut t = self.tsc_timeouts.head;
        while t != NONE {
            if self.sched.cpu_of(ThreadId(t)) == cpu {
                return Some(self.threads[t as usize].deadline);
            }
            t = self.threads[t as usize].timer.next;
        }
        None
    }

    pub fn scheduler(&self) -> &Scheduler<T> {
        &self.sched
    }

    // ---- Scheduling ----

    /// The thread to run next on `cpu` (see [`Scheduler::schedule`]);
    /// `None`: idle. `cpu` is below [`MAX_CPUS`](abi::limits::MAX_CPUS),
    /// as for every `cpu` argument here.
    pub fn schedule(&mut self, cpu: usize) -> Option<ThreadId> {
        self.sched.schedule(cpu)
    }

    /// The thread chosen by `cpu`'s last [`schedule`](Self::schedule), if
    /// it still runs there.
    pub fn current(&self, cpu: usize) -> Option<ThreadId> {
        self.sched.current(cpu)
    }

    /// `cpu`'s running thread gives up its slice (the YIELD syscall, which
    /// completes with OK).
    pub fn yield_current(&mut self, cpu: usize) {
        if let Some(t) = self.sched.current(cpu) {
            self.complete(t, SyscallResult::OK);
            self.sched.yield_current(cpu);
        }
    }

    /// A tick of the global clock: budgets and time slices of every CPU's
    /// running thread, then expired receive/wait timeouts (TIMEOUT). Call
    /// [`schedule`](Self::schedule) afterwards on this CPU, and have the
    /// CPUs of [`take_kicks`](Self::take_kicks) do so.
    pub fn tick(&mut self) {
        // A handler working on a thread's fault or VM exit works on its
        // time (the donor of the scheduler's `tick`).
        let threads = &self.threads;
        self.sched.tick(|c| match threads[c.0 as usize].reply {
            ReplyRight::Caller { thread, fault: true, .. } => Some(thread),
            _ => None,
        });
        let now = self.sched.now();
        while self.timeouts.head != NONE && self.threads[self.timeouts.head as usize].deadline <= now {
            let t = ThreadId(self.timeouts.head);
            self.wake(t, Some(SyscallResult::error(ErrorCode::TIMEOUT)));
        }
    }

    /// Moves a thread of the pool to `cpu`, its new home (see
    /// [`Scheduler::set_cpu`]): it waits, wakes and runs there from now on,
    /// whatever its state.
    pub fn set_cpu(&mut self, t: ThreadId, cpu: usize) {
        let tcb = &self.threads[t.0 as usize];
        if tcb.timed && tcb.on_tsc && self.sched.cpu_of(t) != cpu {
            // Its new CPU arms its timer for the deadline when it next
            // schedules: have it do so now.
            self.sched.kick(cpu);
        }
        self.sched.set_cpu(t, cpu);
    }

    /// A thread's home CPU.
    pub fn cpu_of(&self, t: ThreadId) -> usize {
        self.sched.cpu_of(t)
    }

    /// The CPU a thread is running on, if it is running.
    pub fn running_on(&self, t: ThreadId) -> Option<usize> {
        self.sched.running_on(t)
    }

    /// The CPUs that must call [`schedule`](Self::schedule) after what was
    /// done since the last call (bit c: CPU c), cleared; see
    /// [`Scheduler::take_kicks`]. The kernel drops its own CPU's bit and
    /// sends the others a reschedule IPI.
    pub fn take_kicks(&mut self) -> u32 {
        self.sched.take_kicks()
    }

    // ---- Results ----

    /// Records how the syscall of a runnable thread ended (for syscalls
    /// this module does not handle, or errors found before reaching it).
    pub fn complete(&mut self, t: ThreadId, result: SyscallResult) {
        self.threads[t.0 as usize].result = Some(result);
    }

    /// The result to write into `t`'s registers before it returns to user
    /// mode, once.
    pub fn take_result(&mut self, t: ThreadId) -> Option<SyscallResult> {
        self.threads[t.0 as usize].result.take()
    }

    pub fn state(&self, t: ThreadId) -> ThreadState {
        self.threads[t.0 as usize].state
    }

    /// The caller `t` owes a reply to, if it is still waiting.
    pub fn reply_target(&self, t: ThreadId) -> Option<ThreadId> {
        match self.threads[t.0 as usize].reply {
            ReplyRight::Caller { thread, .. } => Some(thread),
            _ => None,
        }
    }

    // ---- Thread lifecycle ----

    /// A free thread, Inactive, at [`SchedParams::DEFAULT`], at home on CPU
    /// 0 (whatever CPU it had in an earlier life); OUT_OF_MEMORY if none.
    pub fn alloc_thread(&mut self) -> Result<ThreadId, ErrorCode> {
        let index = self.threads.iter().position(|t| !t.in_use).ok_or(ErrorCode::OUT_OF_MEMORY)?;
        let t = ThreadId(index as u16);
        self.threads[index] = Tcb { in_use: true, ..Tcb::FREE };
        self.sched.configure(t, SchedParams::DEFAULT);
        self.sched.set_cpu(t, 0);
        Ok(t)
    }

    /// Stops a thread as [`exit`](Self::exit) does and returns it to the pool.
    pub fn free_thread(&mut self, t: ThreadId) -> Result<(), ErrorCode> {
        self.stop(t, ThreadState::Inactive)?;
        if let Some(n) = self.threads[t.0 as usize].bound {
            self.notifications[n as usize].bound = NONE;
        }
        self.threads[t.0 as usize] = Tcb::FREE;
        Ok(())
    }

    /// Applies a scheduling context's parameters; a queued thread moves to
    /// its new place in the queue.
    pub fn configure(&mut self, t: ThreadId, params: SchedParams) -> Result<(), ErrorCode> {
        self.thread(t)?;
        self.sched.configure(t, params);
        if let Some(w) = self.where_queued(t) {
            self.queue_remove(w, t);
            self.queue_insert(w, t);
        }
        Ok(())
    }

    /// Makes an Inactive, Suspended or Faulted thread runnable. It resumes
    /// with no result (a restarted syscall gets the CANCELLED it was left with).
    pub fn resume(&mut self, t: ThreadId) -> Result<(), ErrorCode> {
        self.thread(t)?;
        match self.threads[t.0 as usize].state {
            ThreadState::Inactive | ThreadState::Suspended | ThreadState::Faulted => {
                self.threads[t.0 as usize].state = ThreadState::Runnable;
                self.sched.make_ready(t);
                Ok(())
            }
            _ => Err(ErrorCode::INVALID_STATE),
        }
    }

    /// Stops a thread wherever it is: off every queue; a syscall it was
    /// blocked in ends with CANCELLED; a caller waiting for its reply gets
    /// PEER_GONE; a server owing it a reply will get PEER_GONE.
    pub fn suspend(&mut self, t: ThreadId) -> Result<(), ErrorCode> {
        self.stop(t, ThreadState::Suspended)
    }

    /// The EXIT syscall, or a thread being torn down: as
    /// [`suspend`](Self::suspend), ending Inactive with no result.
    pub fn exit(&mut self, t: ThreadId) -> Result<(), ErrorCode> {
        self.stop(t, ThreadState::Inactive)?;
        self.threads[t.0 as usize].result = None;
        Ok(())
    }

    /// A thread faulted. With a handler endpoint (and the badge of that
    /// capability) it calls the handler with a [`labels::FAULT`] message and
    /// waits for the reply; without one, or if the handler goes away, it is
    /// Faulted until resumed.
    ///
    /// A call it had taken and not answered fails at once with
    /// `PEER_GONE`: a faulted thread cannot answer it, and its caller may
    /// be the very handler that would tear it down (the supervisor, calling
    /// a server that faults), which would otherwise wait for ever.
    pub fn fault(
        &mut self,
        t: ThreadId,
        handler: Option<(EndpointId, Badge)>,
        x: &mut impl Transfer,
    ) -> Result<(), ErrorCode> {
        self.runnable(t)?;
        self.drop_reply(t);
        let info = MessageInfo::new().with_label(labels::FAULT).with_length(FaultMessage::WORDS as u8);
        self.fault_with(t, handler, info, x)
    }

    /// [`fault`](Self::fault) with a message of the kernel's choosing (a VM
    /// exit: label `VM_EXIT`, an `HV_MESSAGE`). The handler's reply is a
    /// [`Kind::FaultReply`] transfer to `t`, which then runs again.
    pub fn fault_with(
        &mut self,
        t: ThreadId,
        handler: Option<(EndpointId, Badge)>,
        info: MessageInfo,
        x: &mut impl Transfer,
    ) -> Result<(), ErrorCode> {
        self.runnable(t)?;
        match handler {
            None => {
                self.sched.block(t);
                self.threads[t.0 as usize].state = ThreadState::Faulted;
            }
            Some((ep, badge)) => {
                let ep = self.endpoint(ep)?;
                self.threads[t.0 as usize].in_fault = true;
                self.deliver(t, ep, Message { badge, info, grant: false }, Kind::Fault, x);
            }
        }
        Ok(())
    }

    // ---- Endpoints ----

    /// A free endpoint; OUT_OF_MEMORY if none.
    pub fn alloc_endpoint(&mut self) -> Result<EndpointId, ErrorCode> {
        let index = self.endpoints.iter().position(|e| !e.alive).ok_or(ErrorCode::OUT_OF_MEMORY)?;
        self.endpoints[index].alive = true;
        Ok(EndpointId(index as u32))
    }

    /// Endpoints that exist.
    pub fn endpoints_in_use(&self) -> usize {
        self.endpoints.iter().filter(|e| e.alive).count()
    }

    /// Destroys an endpoint: every thread queued on it fails with PEER_GONE
    /// (callers already waiting for a reply keep waiting for their server).
    pub fn destroy_endpoint(&mut self, ep: EndpointId) -> Result<(), ErrorCode> {
        let e = self.endpoint(ep)?;
        for q in [Where::Senders(e), Where::Receivers(e)] {
            while let Some(t) = self.queue_head(q) {
                self.fail(t, ErrorCode::PEER_GONE);
            }
        }
        self.endpoints[e].alive = false;
        Ok(())
    }

    /// SEND: delivers to the first waiting receiver, else blocks (or
    /// WOULD_BLOCK if `msg.info` is non-blocking). OK once delivered.
    pub fn send(&mut self, t: ThreadId, ep: EndpointId, msg: Message, x: &mut impl Transfer) -> Result<(), ErrorCode> {
        self.runnable(t)?;
        let ep = self.endpoint(ep)?;
        self.deliver(t, ep, msg, Kind::Send, x);
        Ok(())
    }

    /// CALL: as [`send`](Self::send), then waits for the reply, whose
    /// message and info become the call's result.
    pub fn call(&mut self, t: ThreadId, ep: EndpointId, msg: Message, x: &mut impl Transfer) -> Result<(), ErrorCode> {
        self.runnable(t)?;
        let ep = self.endpoint(ep)?;
        self.deliver(t, ep, msg, Kind::Call, x);
        Ok(())
    }

    /// RECV: takes the first queued sender's message (result: its info and
    /// badge), else blocks as `block` says. A reply right still held is
    /// dropped first (its caller gets PEER_GONE).
    pub fn recv(&mut self, t: ThreadId, ep: EndpointId, block: Block, x: &mut impl Transfer) -> Result<(), ErrorCode> {
        self.runnable(t)?;
        let ep = self.endpoint(ep)?;
        self.drop_reply(t);
        self.receive(t, ep, block, x);
        Ok(())
    }

    /// REPLY: wakes the caller with the message. Fails with INVALID_STATE
    /// if there is no caller (never called, or already replied), PEER_GONE
    /// if the caller died, or the [`Transfer`] error (the right is kept).
    pub fn reply(&mut self, t: ThreadId, info: MessageInfo, x: &mut impl Transfer) -> Result<(), ErrorCode> {
        self.runnable(t)?;
        let result = match self.reply_to_caller(t, info, x) {
            ReplyOutcome::Replied => SyscallResult::OK,
            ReplyOutcome::NoCaller => SyscallResult::error(ErrorCode::INVALID_STATE),
            ReplyOutcome::CallerGone => SyscallResult::error(ErrorCode::PEER_GONE),
            ReplyOutcome::Failed(e) => SyscallResult::error(e),
        };
        self.complete(t, result);
        Ok(())
    }

    /// REPLY_RECV: replies if a caller is owed one (a dead or absent
    /// caller is skipped), then receives. If the reply's [`Transfer`]
    /// fails, the syscall ends with that error and does not receive.
    pub fn reply_recv(
        &mut self,
        t: ThreadId,
        ep: EndpointId,
        info: MessageInfo,
        block: Block,
        x: &mut impl Transfer,
    ) -> Result<(), ErrorCode> {
        self.runnable(t)?;
        let ep = self.endpoint(ep)?;
        match self.reply_to_caller(t, info, x) {
            ReplyOutcome::Failed(e) => self.complete(t, SyscallResult::error(e)),
            ReplyOutcome::Replied | ReplyOutcome::NoCaller | ReplyOutcome::CallerGone => self.receive(t, ep, block, x),
        }
        Ok(())
    }

    // ---- Notifications ----

    /// A free notification with no bits; OUT_OF_MEMORY if none.
    pub fn alloc_notification(&mut self) -> Result<NotificationId, ErrorCode> {
        let index = self.notifications.iter().position(|n| !n.alive).ok_or(ErrorCode::OUT_OF_MEMORY)?;
        self.notifications[index] = Notification { alive: true, bits: 0, waiters: Queue::EMPTY, bound: NONE };
        Ok(NotificationId(index as u32))
    }

    /// Notifications that exist.
    pub fn notifications_in_use(&self) -> usize {
        self.notifications.iter().filter(|n| n.alive).count()
    }

    /// Destroys a notification: its waiters fail with PEER_GONE.
    pub fn destroy_notification(&mut self, ntf: NotificationId) -> Result<(), ErrorCode> {
        let n = self.notification(ntf)?;
        while let Some(t) = self.queue_head(Where::Waiters(n)) {
            self.fail(t, ErrorCode::PEER_GONE);
        }
        let bound = self.notifications[n].bound;
        if bound != NONE {
            self.threads[usize::from(bound)].bound = None;
        }
        self.notifications[n] = Notification { alive: false, bits: 0, waiters: Queue::EMPTY, bound: NONE };
        Ok(())
    }

    /// Binds notification `ntf` to thread `t` (seL4's bound notification):
    /// from now on a receive of `t` on any endpoint also ends when `ntf`
    /// has bits, with label [`labels::NOTIFICATION`] and the bits as badge
    /// (taken), so one thread serves an endpoint and a notification
    /// without polling. A thread has at most one, a notification at most
    /// one thread (INVALID_STATE otherwise).
    pub fn bind_notification(&mut self, ntf: NotificationId, t: ThreadId) -> Result<(), ErrorCode> {
        self.thread(t)?;
        let n = self.notification(ntf)?;
        if self.threads[t.0 as usize].bound.is_some() || self.notifications[n].bound != NONE {
            return Err(ErrorCode::INVALID_STATE);
        }
        self.threads[t.0 as usize].bound = Some(n as u32);
        self.notifications[n].bound = t.0;
        // Bound while it waits in a receive, with bits already there.
        if self.notifications[n].bits != 0
            && matches!(self.threads[t.0 as usize].state, ThreadState::BlockedRecv { .. })
        {
            let bits = core::mem::take(&mut self.notifications[n].bits);
            self.wake(t, Some(Self::notified(bits)));
        }
        Ok(())
    }

    /// Unbinds `t`'s notification; INVALID_STATE if it has none.
    pub fn unbind_notification(&mut self, t: ThreadId) -> Result<(), ErrorCode> {
        self.thread(t)?;
        let n = self.threads[t.0 as usize].bound.take().ok_or(ErrorCode::INVALID_STATE)?;
        self.notifications[n as usize].bound = NONE;
        Ok(())
    }

    /// `t`'s bound notification, if any.
    pub fn bound_notification(&self, t: ThreadId) -> Option<NotificationId> {
        self.threads.get(t.0 as usize)?.bound.map(NotificationId)
    }

    /// The result of a receive its bound notification ends: the bits, taken.
    fn notified(bits: u64) -> SyscallResult {
        SyscallResult::ok(MessageInfo::new().with_label(labels::NOTIFICATION), Badge(bits))
    }

    /// SIGNAL (or an interrupt): ORs `bits` in; if a thread waits, the
    /// first one gets all bits (in its badge) and they are cleared. Never
    /// blocks; a signalling thread's result is the caller's to
    /// [`complete`](Self::complete).
    pub fn signal(&mut self, ntf: NotificationId, bits: u64) -> Result<(), ErrorCode> {
        let n = self.notification(ntf)?;
        self.notifications[n].bits |= bits;
        if self.notifications[n].bits == 0 {
            return Ok(());
        }
        if let Some(w) = self.queue_head(Where::Waiters(n)) {
            let bits = core::mem::take(&mut self.notifications[n].bits);
            self.wake(w, Some(SyscallResult::ok(MessageInfo::new(), Badge(bits))));
            return Ok(());
        }
        // A bound thread blocked in a receive takes them there.
        let bound = self.notifications[n].bound;
        if bound != NONE && matches!(self.threads[usize::from(bound)].state, ThreadState::BlockedRecv { .. }) {
            let bits = core::mem::take(&mut self.notifications[n].bits);
            self.wake(ThreadId(bound), Some(Self::notified(bits)));
        }
        Ok(())
    }

    /// WAIT: takes and clears the bits if any are set (result badge: the
    /// bits), else blocks as `block` says.
    pub fn wait(&mut self, t: ThreadId, ntf: NotificationId, block: Block) -> Result<(), ErrorCode> {
        self.runnable(t)?;
        let n = self.notification(ntf)?;
        let bits = core::mem::take(&mut self.notifications[n].bits);
        match (bits, block) {
            (0, Block::Poll) => self.complete(t, SyscallResult::error(ErrorCode::WOULD_BLOCK)),
            (0, Block::Expired) => self.complete(t, SyscallResult::error(ErrorCode::TIMEOUT)),
            (0, _) => self.block(t, ThreadState::BlockedWait { ntf }, block),
            (bits, _) => self.complete(t, SyscallResult::ok(MessageInfo::new(), Badge(bits))),
        }
        Ok(())
    }

    /// Bits set and not yet taken.
    pub fn pending_bits(&self, ntf: NotificationId) -> Option<u64> {
        let n = self.notifications.get(ntf.0 as usize)?;
        n.alive.then_some(n.bits)
    }

    // ---- The state machine ----

    /// `t` (runnable) sends on endpoint `ep`: rendezvous or queue.
    fn deliver(&mut self, t: ThreadId, ep: usize, msg: Message, kind: Kind, x: &mut impl Transfer) {
        let Some(r) = self.queue_head(Where::Receivers(ep)) else {
            if msg.info.non_blocking() && kind != Kind::Fault {
                self.complete(t, SyscallResult::error(ErrorCode::WOULD_BLOCK));
            } else {
                self.threads[t.0 as usize].msg = msg;
                let state = ThreadState::BlockedSend { ep: EndpointId(ep as u32), is_call: kind != Kind::Send };
                self.block(t, state, Block::Forever);
            }
            return;
        };
        match x.transfer(t, r, kind, msg) {
            Ok(info) => {
                self.wake(r, Some(SyscallResult::ok(info, msg.badge)));
                if kind == Kind::Send {
                    self.complete(t, SyscallResult::OK);
                } else {
                    self.await_reply(t, r, msg.grant, kind == Kind::Fault);
                    self.sched.block(t);
                }
            }
            Err(e) if kind == Kind::Fault => self.fail(t, e),
            Err(e) => self.complete(t, SyscallResult::error(e)),
        }
    }

    /// `t` (runnable, holding no reply right) receives on `ep`.
    fn receive(&mut self, t: ThreadId, ep: usize, block: Block, x: &mut impl Transfer) {
        // Its bound notification's bits first, as seL4 does.
        if let Some(n) = self.threads[t.0 as usize].bound {
            let bits = core::mem::take(&mut self.notifications[n as usize].bits);
            if bits != 0 {
                self.complete(t, Self::notified(bits));
                return;
            }
        }
        while let Some(s) = self.queue_head(Where::Senders(ep)) {
            let sender = &self.threads[s.0 as usize];
            let (msg, kind) = (sender.msg, sender.kind());
            match x.transfer(s, t, kind, msg) {
                Ok(info) => {
                    self.complete(t, SyscallResult::ok(info, msg.badge));
                    if kind == Kind::Send {
                        self.wake(s, Some(SyscallResult::OK));
                    } else {
                        self.unblock(s);
                        self.await_reply(s, t, msg.grant, kind == Kind::Fault);
                    }
                    return;
                }
                // The sender's message failed; the receiver tries the next.
                Err(e) => self.fail(s, e),
            }
        }
        match block {
            Block::Poll => self.complete(t, SyscallResult::error(ErrorCode::WOULD_BLOCK)),
            Block::Expired => self.complete(t, SyscallResult::error(ErrorCode::TIMEOUT)),
            _ => self.block(t, ThreadState::BlockedRecv { ep: EndpointId(ep as u32) }, block),
        }
    }

    /// `caller`'s message reached `server`: the caller waits for the reply.
    fn await_reply(&mut self, caller: ThreadId, server: ThreadId, grant: bool, fault: bool) {
        self.threads[server.0 as usize].reply = ReplyRight::Caller { thread: caller, grant, fault };
        self.threads[caller.0 as usize].state = ThreadState::BlockedReply { server };
    }

    fn reply_to_caller(&mut self, t: ThreadId, info: MessageInfo, x: &mut impl Transfer) -> ReplyOutcome {
        match self.threads[t.0 as usize].reply {
            ReplyRight::None => ReplyOutcome::NoCaller,
            ReplyRight::Gone => {
                self.threads[t.0 as usize].reply = ReplyRight::None;
                ReplyOutcome::CallerGone
            }
            ReplyRight::Caller { thread: c, grant, fault } => {
                let kind = if fault { Kind::FaultReply } else { Kind::Reply };
                match x.transfer(t, c, kind, Message { badge: Badge(0), info, grant }) {
                    Ok(info) => {
                        self.threads[t.0 as usize].reply = ReplyRight::None;
                        self.threads[c.0 as usize].in_fault = false;
                        if fault {
                            // It continues its turn on its home CPU (its handler's time was its own).
                            self.unblock(c);
                            self.threads[c.0 as usize].state = ThreadState::Runnable;
                            self.sched.resume_turn_by(c, Some(t));
                        } else {
                            self.wake(c, Some(SyscallResult::ok(info, Badge(0))));
                        }
                        ReplyOutcome::Replied
                    }
                    Err(e) => ReplyOutcome::Failed(e),
                }
            }
        }
    }

    /// A server gives up the reply right it holds; its caller gets PEER_GONE.
    fn drop_reply(&mut self, t: ThreadId) {
        if let ReplyRight::Caller { thread, .. } =
            core::mem::replace(&mut self.threads[t.0 as usize].reply, ReplyRight::None)
        {
            self.fail(thread, ErrorCode::PEER_GONE);
        }
    }

    /// Ends a blocked (or runnable) thread's operation with an error. A
    /// thread blocked on a fault has no syscall to fail: it is Faulted.
    fn fail(&mut self, t: ThreadId, error: ErrorCode) {
        if self.threads[t.0 as usize].in_fault {
            self.unblock(t);
            self.sched.block(t);
            let tcb = &mut self.threads[t.0 as usize];
            (tcb.in_fault, tcb.state) = (false, ThreadState::Faulted);
        } else {
            self.wake(t, Some(SyscallResult::error(error)));
        }
    }

    /// Makes a thread runnable, off any queue and timeout.
    fn wake(&mut self, t: ThreadId, result: Option<SyscallResult>) {
        self.unblock(t);
        let tcb = &mut self.threads[t.0 as usize];
        tcb.state = ThreadState::Runnable;
        if result.is_some() {
            tcb.result = result;
        }
        self.sched.make_ready(t);
    }

    /// Blocks a runnable thread in `state`, queued where that state says.
    fn block(&mut self, t: ThreadId, state: ThreadState, block: Block) {
        self.sched.block(t);
        self.threads[t.0 as usize].state = state;
        if let Some(w) = self.where_queued(t) {
            self.queue_insert(w, t);
        }
        self.arm_timeout(t, block);
    }

    /// Puts a thread that just blocked as `block` says on its timeout list.
    fn arm_timeout(&mut self, t: ThreadId, block: Block) {
        match block {
            Block::Ticks(ticks) => self.timer_insert(t, self.sched.now().saturating_add(ticks), false),
            Block::Tsc(deadline) => self.timer_insert(t, deadline, true),
            Block::Poll | Block::Forever | Block::Expired => {}
        }
    }

    /// Takes a thread off its endpoint/notification queue and the timeouts.
    fn unblock(&mut self, t: ThreadId) {
        if let Some(w) = self.where_queued(t) {
            self.queue_remove(w, t);
        }
        if self.threads[t.0 as usize].timed {
            self.timer_remove(t);
        }
    }

    fn stop(&mut self, t: ThreadId, end: ThreadState) -> Result<(), ErrorCode> {
        self.thread(t)?;
        let tcb = self.threads[t.0 as usize];
        match tcb.state {
            ThreadState::Runnable => self.sched.block(t),
            ThreadState::BlockedSend { .. } | ThreadState::BlockedRecv { .. } | ThreadState::BlockedWait { .. } => {
                self.unblock(t);
            }
            ThreadState::BlockedReply { server } => self.threads[server.0 as usize].reply = ReplyRight::Gone,
            ThreadState::Inactive | ThreadState::Suspended | ThreadState::Faulted => {}
        }
        let in_syscall = !matches!(
            tcb.state,
            ThreadState::Runnable | ThreadState::Inactive | ThreadState::Suspended | ThreadState::Faulted
        );
        if in_syscall && !tcb.in_fault {
            self.threads[t.0 as usize].result = Some(SyscallResult::error(ErrorCode::CANCELLED));
        }
        let tcb = &mut self.threads[t.0 as usize];
        (tcb.state, tcb.in_fault) = (end, false);
        self.drop_reply(t);
        Ok(())
    }

    // ---- Validation ----

    fn thread(&self, t: ThreadId) -> Result<(), ErrorCode> {
        match self.threads.get(t.0 as usize) {
            Some(tcb) if tcb.in_use => Ok(()),
            _ => Err(ErrorCode::INVALID_ARGUMENT),
        }
    }

    fn runnable(&self, t: ThreadId) -> Result<(), ErrorCode> {
        self.thread(t)?;
        match self.threads[t.0 as usize].state {
            ThreadState::Runnable => Ok(()),
            _ => Err(ErrorCode::INVALID_STATE),
        }
    }

    fn endpoint(&self, ep: EndpointId) -> Result<usize, ErrorCode> {
        match self.endpoints.get(ep.0 as usize) {
            Some(e) if e.alive => Ok(ep.0 as usize),
            _ => Err(ErrorCode::INVALID_ARGUMENT),
        }
    }

    fn notification(&self, ntf: NotificationId) -> Result<usize, ErrorCode> {
        match self.notifications.get(ntf.0 as usize) {
            Some(n) if n.alive => Ok(ntf.0 as usize),
            _ => Err(ErrorCode::INVALID_ARGUMENT),
        }
    }

    // ---- Queues ----

    fn where_queued(&self, t: ThreadId) -> Option<Where> {
        match self.threads[t.0 as usize].state {
            ThreadState::BlockedSend { ep, .. } => Some(Where::Senders(ep.0 as usize)),
            ThreadState::BlockedRecv { ep } => Some(Where::Receivers(ep.0 as usize)),
            ThreadState::BlockedWait { ntf } => Some(Where::Waiters(ntf.0 as usize)),
            _ => None,
        }
    }

    fn queue(&mut self, w: Where) -> &mut Queue {
        match w {
            Where::Senders(e) => &mut self.endpoints[e].senders,
            Where::Receivers(e) => &mut self.endpoints[e].receivers,
            Where::Waiters(n) => &mut self.notifications[n].waiters,
        }
    }

    fn queue_head(&mut self, w: Where) -> Option<ThreadId> {
        let head = self.queue(w).head;
        (head != NONE).then_some(ThreadId(head))
    }

    /// Inserts behind every thread of its priority or higher.
    fn queue_insert(&mut self, w: Where, t: ThreadId) {
        let q = self.queue(w);
        if q.head == NONE {
            // The common case (a server waiting alone): no order to find.
            (q.head, q.tail) = (t.0, t.0);
            self.threads[t.0 as usize].queue = UNLINKED;
            return;
        }
        let prio = self.sched.priority(t);
        let mut after = self.queue(w).tail;
        while after != NONE && prio.is_higher_than(self.sched.priority(ThreadId(after))) {
            after = self.threads[after as usize].queue.prev;
        }
        let mut q = *self.queue(w);
        link_after(&mut q, &mut self.threads, |tcb| &mut tcb.queue, after, t.0);
        *self.queue(w) = q;
    }

    fn queue_remove(&mut self, w: Where, t: ThreadId) {
        let mut q = *self.queue(w);
        unlink(&mut q, &mut self.threads, |tcb| &mut tcb.queue, t.0);
        *self.queue(w) = q;
    }

    /// Inserts behind every deadline at or before this one, in the tick
    /// list or (`tsc`) the TSC deadline list.
    fn timer_insert(&mut self, t: ThreadId, deadline: u64, tsc: bool) {
        let mut list = if tsc { self.tsc_timeouts } else { self.timeouts };
        let mut after = list.tail;
        while after != NONE && self.threads[after as usize].deadline > deadline {
            after = self.threads[after as usize].timer.prev;
        }
        let tcb = &mut self.threads[t.0 as usize];
        (tcb.timed, tcb.on_tsc, tcb.deadline) = (true, tsc, deadline);
        link_after(&mut list, &mut self.threads, |tcb| &mut tcb.timer, after, t.0);
        *(if tsc { &mut self.tsc_timeouts } else { &mut self.timeouts }) = list;
    }

    fn timer_remove(&mut self, t: ThreadId) {
        let list = if self.threads[t.0 as usize].on_tsc { &mut self.tsc_timeouts } else { &mut self.timeouts };
        unlink(list, &mut self.threads, |tcb| &mut tcb.timer, t.0);
        let tcb = &mut self.threads[t.0 as usize];
        (tcb.timed, tcb.on_tsc) = (false, false);
    }

    /// Checks that every thread is in exactly one place and every queue is
    /// well formed (for tests and kernel self-checks; O(threads)).
    pub fn check(&self) -> Result<(), &'static str> {
        self.sched.check()?;
        // How often each thread appears in an IPC queue, and in the timeout list.
        let (mut queued, mut timed) = ([0usize; T], [0usize; T]);
        let mut walk = |q: &Queue, link: fn(&Tcb) -> Link, ordered: bool| -> Result<(), &'static str> {
            let (mut t, mut prev, mut len) = (q.head, NONE, 0);
            while t != NONE {
                let l = link(&self.threads[t as usize]);
                len += 1;
                if l.prev != prev || !self.threads[t as usize].in_use || len > T {
                    return Err("queue links");
                }
                if ordered {
                    queued[t as usize] += 1;
                    if prev != NONE
                        && self.sched.priority(ThreadId(t)).is_higher_than(self.sched.priority(ThreadId(prev)))
                    {
                        return Err("queue out of priority order");
                    }
                } else if core::mem::replace(&mut timed[t as usize], 1) != 0
                    || prev != NONE && self.threads[prev as usize].deadline > self.threads[t as usize].deadline
                {
                    return Err("timeout list");
                }
                (prev, t) = (t, l.next);
            }
            if q.tail != prev { Err("queue tail") } else { Ok(()) }
        };
        for e in &self.endpoints {
            walk(&e.senders, |t| t.queue, true)?;
            walk(&e.receivers, |t| t.queue, true)?;
            if e.senders.head != NONE && e.receivers.head != NONE {
                return Err("senders and receivers both waiting");
            }
            if !e.alive && (e.senders != Queue::EMPTY || e.receivers != Queue::EMPTY) {
                return Err("threads queued on a dead endpoint");
            }
        }
        for n in &self.notifications {
            walk(&n.waiters, |t| t.queue, true)?;
            if n.waiters.head != NONE && n.bits != 0 {
                return Err("waiters while bits are pending");
            }
            if !n.alive && n.waiters != Queue::EMPTY {
                return Err("threads queued on a dead notification");
            }
        }
        // Bindings are one-to-one, between live objects, and a bound
        // thread never waits in a receive while its bits are pending.
        for (i, n) in self.notifications.iter().enumerate() {
            if n.bound == NONE {
                continue;
            }
            let tcb = &self.threads[usize::from(n.bound)];
            if !n.alive || !tcb.in_use || tcb.bound != Some(i as u32) {
                return Err("notification binding");
            }
            if n.bits != 0 && matches!(tcb.state, ThreadState::BlockedRecv { .. }) {
                return Err("a bound receiver waits while its bits are pending");
            }
        }
        for tcb in &self.threads {
            if let Some(n) = tcb.bound
                && self.notifications.get(n as usize).is_none_or(|n| n.bound == NONE)
            {
                return Err("thread binding");
            }
        }
        walk(&self.timeouts, |t| t.timer, false)?;
        let mut tsc_timed = [false; T];
        let mut t = self.tsc_timeouts.head;
        while t != NONE {
            tsc_timed[t as usize] = true;
            t = self.threads[t as usize].timer.next;
        }
        walk(&self.tsc_timeouts, |t| t.timer, false)?;
        for (i, tcb) in self.threads.iter().enumerate() {
            let t = ThreadId(i as u16);
            let in_queue = match tcb.state {
                ThreadState::BlockedSend { ep, .. } => self.endpoints[ep.0 as usize].contains(&self.threads, t, true),
                ThreadState::BlockedRecv { ep } => self.endpoints[ep.0 as usize].contains(&self.threads, t, false),
                ThreadState::BlockedWait { ntf } => {
                    self.notifications[ntf.0 as usize].waiters.contains(&self.threads, t)
                }
                _ => false,
            };
            if queued[i] != usize::from(in_queue) || in_queue != self.where_queued(t).is_some() {
                return Err("thread not in exactly the queue its state names");
            }
            if self.sched.is_runnable(t) != (tcb.state == ThreadState::Runnable) {
                return Err("runnable state out of step with the scheduler");
            }
            if timed[i] != usize::from(tcb.timed) || tsc_timed[i] != (tcb.timed && tcb.on_tsc) {
                return Err("timeout flag out of step with the timeout list");
            }
            if tcb.timed && !matches!(tcb.state, ThreadState::BlockedRecv { .. } | ThreadState::BlockedWait { .. }) {
                return Err("timeout on a thread that is not receiving or waiting");
            }
            if let ThreadState::BlockedReply { server } = tcb.state
                && !matches!(self.threads[server.0 as usize].reply, ReplyRight::Caller { thread, .. } if thread == t)
            {
                return Err("caller waiting for a server that owes it nothing");
            }
            if let ReplyRight::Caller { thread, .. } = tcb.reply
                && self.threads[thread.0 as usize].state != (ThreadState::BlockedReply { server: t })
            {
                return Err("reply right to a thread not waiting for it");
            }
            if matches!(tcb.state, ThreadState::BlockedRecv { .. }) && tcb.reply != ReplyRight::None {
                return Err("receiving while holding a reply right");
            }
            if tcb.in_fault
                && !matches!(
                    tcb.state,
                    ThreadState::BlockedSend { is_call: true, .. } | ThreadState::BlockedReply { .. }
                )
            {
                return Err("fault flag outside a fault call");
            }
            if !tcb.in_use && (tcb.state != ThreadState::Inactive || tcb.reply != ReplyRight::None || tcb.timed) {
                return Err("free thread in use");
            }
        }
        Ok(())
    }
}

impl Endpoint {
    fn contains<const T: usize>(&self, threads: &[Tcb; T], t: ThreadId, senders: bool) -> bool {
        if senders { self.senders.contains(threads, t) } else { self.receivers.contains(threads, t) }
    }
}

impl Queue {
    fn contains<const T: usize>(&self, threads: &[Tcb; T], t: ThreadId) -> bool {
        let mut n = self.head;
        while n != NONE {
            if n == t.0 {
                return true;
            }
            n = threads[n as usize].queue.next;
        }
        false
    }
}

/// Links `t` into `q` after `after` (`NONE`: at the head).
fn link_after<const T: usize>(
    q: &mut Queue,
    threads: &mut [Tcb; T],
    link: fn(&mut Tcb) -> &mut Link,
    after: u16,
    t: u16,
) {
    let next = if after == NONE { q.head } else { link(&mut threads[after as usize]).next };
    *link(&mut threads[t as usize]) = Link { next, prev: after };
    match after {
        NONE => q.head = t,
        a => link(&mut threads[a as usize]).next = t,
    }
    match next {
        NONE => q.tail = t,
        n => link(&mut threads[n as usize]).prev = t,
    }
}

fn unlink<const T: usize>(q: &mut Queue, threads: &mut [Tcb; T], link: fn(&mut Tcb) -> &mut Link, t: u16) {
    let Link { next, prev } = *link(&mut threads[t as usize]);
    match prev {
        NONE => q.head = next,
        p => link(&mut threads[p as usize]).next = next,
    }
    match next {
        NONE => q.tail = prev,
        n => link(&mut threads[n as usize]).prev = prev,
    }
    *link(&mut threads[t as usize]) = UNLINKED;
}

#[cfg(test)]
mod tests;
