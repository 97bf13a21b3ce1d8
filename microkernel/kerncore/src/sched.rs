//! Fixed-priority scheduler with per-thread budgets (mechanism only), one
//! run queue per CPU.
//!
//! - 32 priorities, 0 lowest; a bitmap of non-empty ready queues finds the
//!   highest in O(1). A higher-priority ready thread always runs first.
//! - FIFO round-robin within a priority: a thread gets its slice (its
//!   context's `slice` ticks, or the scheduler's `timeslice` when that is
//!   0), then goes to the tail of its queue. A thread preempted by a higher
//!   priority goes back to the head and keeps the rest of its slice. Equals
//!   with different slices share their CPU in proportion to them (weighted
//!   round robin, one tick the unit).
//! - Budgets (the scheduling-context mechanism): `budget` ticks of every
//!   `period` ticks, counted from when the thread was configured; period 0
//!   (or budget 0 with a reserve, below) means unlimited. A thread that
//!   spends its budget is *depleted*: off the ready queues until its next
//!   period begins.
//! - Reserves: the first `reserve` ticks a thread runs in each period it is
//!   queued and runs at `reserve_priority` (at or above its priority); once
//!   they are spent it goes on at its own priority, at the tail of its
//!   queue, and the next period raises it again, a ready thread at once
//!   (it moves to the tail of the higher queue). Its *effective* priority
//!   ([`Scheduler::effective_priority`]) is the one it is queued and
//!   preempts at. A reserve needs a period; under a limited budget it is
//!   part of the budget (`reserve <= budget`).
//! - Work done for another thread is that thread's: while a handler works
//!   on a thread's fault or VM exit, ticks are charged to the faulting
//!   thread's slice and budget (the donor of [`Scheduler::tick`]), and when
//!   the handler's reply lets it run again it continues its turn
//!   ([`Scheduler::resume_turn`]): at the head of its queue with what is
//!   left of its slice, as a preempted thread, and ahead of an equal that
//!   its CPU ran meanwhile (with the handler on another CPU, the CPU does
//!   not wait for the reply; without this, a thread whose every exit is
//!   handled elsewhere would lose a whole slice of an equal at each). Once the faulting thread's
//!   slice or budget is spent, the handler pays its own ticks again. So a VP that exits as fast as
//!   it can gets no more of the CPU than one that computes, and one whose
//!   exits are slow to handle does not lose its turn at each exit.
//!
//! # CPUs
//!
//! As in seL4, each of the [`MAX_CPUS`] CPUs has its own ready queues, its
//! own depleted list and its own running thread, and the rules above hold
//! per CPU: priorities on one CPU never preempt a thread on another. A
//! thread's *home* CPU ([`Scheduler::cpu_of`], 0 until set) is its affinity:
//! the CPU whose queues it waits on and the only one that picks it. It
//! moves only when told to ([`Scheduler::set_cpu`]); a thread moved while it
//! runs stays its old CPU's current until that CPU next calls
//! [`Scheduler::schedule`], which hands it over.
//!
//! Time is one global clock: each [`Scheduler::tick`] charges every CPU's
//! running thread (or its donor) a tick. Changes made on one CPU that
//! concern another (a thread woken onto its queue above what it runs, its
//! running thread blocked, depleted or moved away) set that CPU's bit in the
//! kick mask, which the kernel takes with [`Scheduler::take_kicks`] and
//! turns into reschedule IPIs.
//!
//! Every `cpu: usize` argument is a CPU index the caller has validated,
//! below [`MAX_CPUS`] (the kernel's own CPU number); it is not checked
//! beyond a debug assertion.
//!
//! Every thread is in exactly one place: running (one CPU's `current`), a
//! ready queue or the depleted list of its home CPU, or none (not runnable:
//! the IPC layer knows why). Which threads to run, where and at what
//! priority is policy, set from outside through [`Scheduler::configure`]
//! and [`Scheduler::set_cpu`].

use abi::ErrorCode;
use abi::invoke::MAX_PRIORITY;
use abi::limits::MAX_CPUS;

/// A thread, by its index in the kernel's thread pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ThreadId(pub u16);

impl ThreadId {
    const fn at(self) -> usize {
        self.0 as usize
    }
}

/// Number of priority levels.
pub const PRIORITIES: usize = MAX_PRIORITY as usize + 1;
const _: () = assert!(PRIORITIES <= u32::BITS as usize, "one bitmap word");

/// A priority level: 0 is the lowest, [`Priority::HIGHEST`] the highest.
///
/// Deliberately not `Ord`: compare with [`is_higher_than`](Self::is_higher_than).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Priority(u8);

impl Priority {
    pub const LOWEST: Priority = Priority(0);
    pub const HIGHEST: Priority = Priority(MAX_PRIORITY as u8);

    /// `None` above [`Priority::HIGHEST`].
    pub const fn new(level: u64) -> Option<Priority> {
        if level <= MAX_PRIORITY { Some(Priority(level as u8)) } else { None }
    }

    pub const fn level(self) -> u8 {
        self.0
    }

    /// True if `self` is served before `other`.
    pub const fn is_higher_than(self, other: Priority) -> bool {
        self.0 > other.0
    }
}

/// The longest slice a context may ask for, in ticks (a minute at 100 Hz).
pub const MAX_SLICE: u32 = 6000;

/// What a scheduling context says about its thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedParams {
    pub priority: Priority,
    /// Ticks the thread may run per period; ignored when `period` is 0;
    /// 0 with a period (only with a reserve): unlimited.
    pub budget: u32,
    /// Ticks; 0 means unlimited budget (and no reserve).
    pub period: u32,
    /// Ticks per round-robin turn; 0: the scheduler's `timeslice`.
    pub slice: u32,
    /// Ticks of each period run at `reserve_priority`; 0: none.
    pub reserve: u32,
    /// At or above `priority`; [`Priority::LOWEST`] when there is no reserve.
    pub reserve_priority: Priority,
}

impl SchedParams {
    /// Lowest priority, no budget limit, the default slice, no reserve.
    pub const DEFAULT: SchedParams = SchedParams {
        priority: Priority::LOWEST,
        budget: 0,
        period: 0,
        slice: 0,
        reserve: 0,
        reserve_priority: Priority::LOWEST,
    };

    /// `priority` with `budget` ticks per `period` (0: unlimited), the
    /// default slice and no reserve; not validated.
    pub const fn budgeted(priority: Priority, budget: u32, period: u32) -> SchedParams {
        SchedParams { priority, budget, period, ..SchedParams::DEFAULT }
    }

    /// Validates `SCHED_CONFIGURE` arguments (MR0..MR2, as before slices
    /// and reserves existed): see [`from_abi_full`](Self::from_abi_full),
    /// with the default slice and no reserve.
    pub fn from_abi(priority: u64, budget: u64, period: u64) -> Result<SchedParams, ErrorCode> {
        Self::from_abi_full(priority, budget, period, 0, 0, 0)
    }

    /// Validates `SCHED_CONFIGURE` arguments: a priority up to
    /// [`MAX_PRIORITY`]; for a limited budget `0 < budget <= period`; a
    /// slice up to [`MAX_SLICE`]; a reserve only with a period, within the
    /// budget when it is limited (budget 0 with a period and a reserve: an
    /// unlimited budget), at a `reserve_priority` from `priority` up to
    /// [`MAX_PRIORITY`]. Without a reserve, `reserve_priority` is ignored.
    pub fn from_abi_full(
        priority: u64,
        budget: u64,
        period: u64,
        slice: u64,
        reserve: u64,
        reserve_priority: u64,
    ) -> Result<SchedParams, ErrorCode> {
        const INVALID: ErrorCode = ErrorCode::INVALID_ARGUMENT;
        let priority = Priority::new(priority).ok_or(INVALID)?;
        let period = u32::try_from(period).map_err(|_| INVALID)?;
        let budget = if period == 0 { 0 } else { u32::try_from(budget).map_err(|_| INVALID)? };
        let slice = u32::try_from(slice).ok().filter(|&s| s <= MAX_SLICE).ok_or(INVALID)?;
        let reserve = u32::try_from(reserve).map_err(|_| INVALID)?;
        if budget > period || (budget == 0 && period != 0 && reserve == 0) {
            return Err(INVALID);
        }
        let reserve_priority = if reserve == 0 {
            Priority::LOWEST
        } else {
            let p = Priority::new(reserve_priority).ok_or(INVALID)?;
            let within = if budget == 0 { reserve <= period } else { reserve <= budget };
            if period == 0 || !within || priority.is_higher_than(p) {
                return Err(INVALID);
            }
            p
        };
        Ok(SchedParams { priority, budget, period, slice, reserve, reserve_priority })
    }

    const fn limited(&self) -> bool {
        self.period != 0 && self.budget != 0
    }

    /// The highest priority it ever runs at: its reserve's, if it has one.
    pub const fn top_priority(&self) -> Priority {
        if self.reserve != 0 { self.reserve_priority } else { self.priority }
    }
}

/// The most a scheduling context may ever be configured with, as seL4
/// MCS's maximum controlled priority with the budget added: a priority
/// (and a reserve priority) no higher than the ceiling's highest (its
/// reserve priority if it has a reserve) and, under a limited ceiling, a
/// limited budget no larger per period no shorter, so never more CPU in
/// any window (and never a longer burst) than the ceiling gives. A reserve
/// is part of the budget, so a limited ceiling bounds it too. The slice is
/// not bounded: it orders only equals, none of which a ceiling protects.
///
/// It is a partial order: a ceiling permits itself, and a ceiling within a
/// ceiling permits only what that one does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ceiling(SchedParams);

impl Ceiling {
    /// Everything: the root task's context.
    pub const HIGHEST: Ceiling = Ceiling(SchedParams::budgeted(Priority::HIGHEST, 0, 0));

    /// Exactly `params` and what is below them: their highest priority
    /// and their budget (slice and reserve are not part of a ceiling).
    pub const fn of(params: SchedParams) -> Ceiling {
        let (budget, period) = if params.limited() { (params.budget, params.period) } else { (0, 0) };
        Ceiling(SchedParams::budgeted(params.top_priority(), budget, period))
    }

    /// True if a context under this ceiling may run with `params`.
    pub const fn permits(&self, params: SchedParams) -> bool {
        let c = self.0;
        if params.top_priority().is_higher_than(c.priority) {
            return false;
        }
        !c.limited() || (params.limited() && params.budget <= c.budget && params.period >= c.period)
    }

    /// The least a context under this ceiling runs with: the lowest
    /// priority, the ceiling's budget, no reserve.
    pub const fn lowest(&self) -> SchedParams {
        SchedParams { priority: Priority::LOWEST, ..self.0 }
    }

    /// This ceiling lowered to `to`; `None` if `to` is not within it.
    pub const fn lowered_to(&self, to: Ceiling) -> Option<Ceiling> {
        if self.permits(to.0) { Some(to) } else { None }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Off,
    Ready,
    Running,
    Depleted,
}

const NONE: u16 = u16::MAX;

const _: () = assert!(MAX_CPUS <= u32::BITS as usize, "one kick mask word");
const _: () = assert!(MAX_CPUS <= u8::MAX as usize + 1, "CPU indices fit an entry's u8");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    params: SchedParams,
    place: Place,
    /// Home CPU: whose ready queue or depleted list the thread is or will be on.
    cpu: u8,
    /// The CPU it runs on (`Place::Running` only); not its home while a
    /// migration waits for that CPU's next `schedule`.
    on: u8,
    /// Links of the ready queue or the depleted list.
    next: u16,
    prev: u16,
    /// Budget left in the current period (limited budgets only).
    remaining: u32,
    /// Reserve left in the current period: while not 0, the thread's
    /// effective priority is its reserve priority.
    reserve_left: u32,
    /// The priority of the ready queue it is on (`Place::Ready` only).
    queued: u8,
    period_start: u64,
    slice_left: u32,
    /// Sent to the tail of a ready queue, depleted or moved to another CPU
    /// since it last ran (its slice, reserve or budget ended, it yielded):
    /// it has no turn to continue, even if it blocks before it runs again
    /// (a VP whose exit carried the tick that ended its slice).
    sent_back: bool,
}

impl Entry {
    const NEW: Entry = Entry {
        params: SchedParams::DEFAULT,
        place: Place::Off,
        cpu: 0,
        on: 0,
        next: NONE,
        prev: NONE,
        remaining: 0,
        reserve_left: 0,
        queued: 0,
        period_start: 0,
        slice_left: 0,
        sent_back: false,
    };

    /// The priority it is queued and runs at.
    const fn effective(&self) -> Priority {
        if self.reserve_left != 0 { self.params.reserve_priority } else { self.params.priority }
    }

    /// Ticks per turn.
    const fn slice(&self, timeslice: u32) -> u32 {
        if self.params.slice != 0 { self.params.slice } else { timeslice }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct List {
    head: u16,
    tail: u16,
}

impl List {
    const EMPTY: List = List { head: NONE, tail: NONE };
}

/// One CPU's run queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RunQueue {
    ready: [List; PRIORITIES],
    /// Bit p set iff `ready[p]` is not empty.
    bitmap: u32,
    depleted: List,
    current: Option<ThreadId>,
}

impl RunQueue {
    const IDLE: RunQueue =
        RunQueue { ready: [List::EMPTY; PRIORITIES], bitmap: 0, depleted: List::EMPTY, current: None };
}

/// How a thread the IPC fast path switches to became runnable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// Woken (a receive or a call ended): [`Scheduler::make_ready`].
    New,
    /// Its fault or VM exit was answered: [`Scheduler::resume_turn_by`].
    Continued,
}

/// The scheduler of `T` threads over [`MAX_CPUS`] CPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduler<const T: usize> {
    entries: [Entry; T],
    cpus: [RunQueue; MAX_CPUS],
    /// Bit c set: CPU c must call `schedule` (see [`take_kicks`](Self::take_kicks)).
    kicks: u32,
    /// Bit c set: CPU c has scheduled or been some thread's home, so a tick
    /// looks at its queues (the others are empty: on one CPU a tick costs
    /// what it did before there were several).
    active: u32,
    now: u64,
    timeslice: u32,
    /// Threads configured with a reserve: while there are any, a tick
    /// looks for ready ones whose new period restores it.
    reserved: u32,
}

impl<const T: usize> Scheduler<T> {
    /// `timeslice`: ticks a thread runs before its equals get a turn (at least 1).
    pub const fn new(timeslice: u32) -> Self {
        const { assert!(T < NONE as usize, "thread ids are u16 with a sentinel") };
        let timeslice = if timeslice == 0 { 1 } else { timeslice };
        Scheduler {
            entries: [Entry::NEW; T],
            cpus: [RunQueue::IDLE; MAX_CPUS],
            kicks: 0,
            active: 1,
            now: 0,
            timeslice,
            reserved: 0,
        }
    }

    /// Ticks since start.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The thread `cpu` chose at its last [`schedule`](Self::schedule), if
    /// it is still runnable and was not taken off it since.
    pub fn current(&self, cpu: usize) -> Option<ThreadId> {
        debug_assert!(cpu < MAX_CPUS);
        self.cpus[cpu].current
    }

    /// A thread's home CPU: the one whose queues it waits on (0 until
    /// [`set_cpu`](Self::set_cpu)).
    pub fn cpu_of(&self, t: ThreadId) -> usize {
        usize::from(self.entries[t.at()].cpu)
    }

    /// The CPU a thread runs on (it is that CPU's current); `None` if it
    /// is not running.
    pub fn running_on(&self, t: ThreadId) -> Option<usize> {
        let e = &self.entries[t.at()];
        (e.place == Place::Running).then_some(usize::from(e.on))
    }

    pub fn params(&self, t: ThreadId) -> SchedParams {
        self.entries[t.at()].params
    }

    /// Its configured priority (what IPC queues order by).
    pub fn priority(&self, t: ThreadId) -> Priority {
        self.entries[t.at()].params.priority
    }

    /// The priority it is queued and runs at: its reserve priority while
    /// it has reserve left in this period, else its priority.
    pub fn effective_priority(&self, t: ThreadId) -> Priority {
        self.entries[t.at()].effective()
    }

    /// Reserve left in this period (0 without a reserve).
    pub fn remaining_reserve(&self, t: ThreadId) -> u32 {
        self.entries[t.at()].reserve_left
    }

    /// Running, ready or depleted.
    pub fn is_runnable(&self, t: ThreadId) -> bool {
        self.entries[t.at()].place != Place::Off
    }

    /// True if any thread, on any CPU, waits for its next budget period.
    pub fn has_depleted(&self) -> bool {
        self.cpus.iter().any(|q| q.depleted.head != NONE)
    }

    /// Waiting for its next period.
    pub fn is_depleted(&self, t: ThreadId) -> bool {
        self.entries[t.at()].place == Place::Depleted
    }

    /// Budget left in this period; `None` if unlimited.
    pub fn remaining_budget(&self, t: ThreadId) -> Option<u32> {
        let e = &self.entries[t.at()];
        e.params.limited().then_some(e.remaining)
    }

    /// The highest priority with a ready (not running) thread on `cpu`.
    pub fn highest_ready(&self, cpu: usize) -> Option<Priority> {
        debug_assert!(cpu < MAX_CPUS);
        let bitmap = self.cpus[cpu].bitmap;
        (bitmap != 0).then(|| Priority((u32::BITS - 1 - bitmap.leading_zeros()) as u8))
    }

    /// The CPUs that must call [`schedule`](Self::schedule) because of a
    /// change made since the last call, one bit each (bit c: CPU c), and
    /// clears them: a thread enqueued on a CPU that runs nothing or runs a
    /// lower priority, a CPU whose running thread was blocked, yielded,
    /// depleted, lowered below a ready thread or moved to another CPU
    /// ([`set_cpu`](Self::set_cpu)), or whose slice ended with an equal
    /// waiting. A CPU whose bit is clear runs what its `schedule` would
    /// pick (the host tests check this after every step). The calling
    /// CPU's own bit may be set: the kernel drops it (it schedules anyway)
    /// and sends the others an IPI.
    pub fn take_kicks(&mut self) -> u32 {
        core::mem::take(&mut self.kicks)
    }

    /// Has `cpu` (< [`MAX_CPUS`]) call `schedule` soon (it must look at
    /// something the IPC layer changed for it: a TSC deadline to arm).
    pub fn kick(&mut self, cpu: usize) {
        debug_assert!(cpu < MAX_CPUS);
        self.kicks |= 1 << cpu;
    }

    /// Sets a thread's parameters and starts a fresh period with a full
    /// budget and reserve. A ready thread moves to the tail of its new
    /// effective priority.
    pub fn configure(&mut self, t: ThreadId, params: SchedParams) {
        let place = self.entries[t.at()].place;
        if matches!(place, Place::Ready | Place::Depleted) {
            self.unlink(t);
        }
        let now = self.now;
        let e = &mut self.entries[t.at()];
        self.reserved -= u32::from(e.params.reserve != 0);
        self.reserved += u32::from(params.reserve != 0);
        (e.params, e.remaining, e.reserve_left, e.period_start) = (params, params.budget, params.reserve, now);
        e.slice_left = e.slice(self.timeslice);
        let effective = e.effective();
        match place {
            Place::Ready | Place::Depleted => {
                e.place = Place::Off;
                self.make_ready(t);
            }
            // Lowered below a ready thread of its CPU: preempted at that CPU's next schedule.
            Place::Running => {
                let on = usize::from(e.on);
                if self.highest_ready(on).is_some_and(|p| p.is_higher_than(effective)) {
                    self.kicks |= 1 << on;
                }
            }
            Place::Off => {}
        }
    }

    /// Moves a thread to `cpu` (< [`MAX_CPUS`], validated by the caller),
    /// its new home. A ready thread goes to the tail of its priority there
    /// with what is left of its slice, a depleted one to that CPU's
    /// depleted list; one that is not runnable runs there once it is. A
    /// thread running on another CPU stays that CPU's current until it
    /// next calls [`schedule`](Self::schedule), which puts it on `cpu`'s
    /// queue; that CPU is kicked so that it does so soon. No effect if
    /// `cpu` already is its home.
    pub fn set_cpu(&mut self, t: ThreadId, cpu: usize) {
        debug_assert!(cpu < MAX_CPUS, "CPU {cpu} beyond MAX_CPUS");
        self.active |= 1 << cpu;
        let e = self.entries[t.at()];
        if usize::from(e.cpu) == cpu {
            return;
        }
        // Moved, it has no turn to continue on its new CPU (`sent_back`).
        match e.place {
            Place::Off => (self.entries[t.at()].cpu, self.entries[t.at()].sent_back) = (cpu as u8, true),
            Place::Running => {
                (self.entries[t.at()].cpu, self.entries[t.at()].sent_back) = (cpu as u8, usize::from(e.on) != cpu);
                if usize::from(e.on) != cpu {
                    self.kicks |= 1 << e.on;
                }
            }
            Place::Ready => {
                self.unlink(t);
                self.entries[t.at()].cpu = cpu as u8;
                self.enqueue(t, false);
            }
            Place::Depleted => {
                self.unlink(t);
                self.entries[t.at()].cpu = cpu as u8;
                Self::push_back(&mut self.entries, &mut self.cpus[cpu].depleted, t);
            }
        }
    }

    /// Makes a thread runnable (a wakeup) on its home CPU: tail of its
    /// priority, fresh slice, or the depleted list if its budget for this
    /// period is spent. No effect on a thread that is already runnable.
    pub fn make_ready(&mut self, t: ThreadId) {
        if self.is_runnable(t) {
            return;
        }
        self.entries[t.at()].slice_left = self.entries[t.at()].slice(self.timeslice);
        self.refresh(t);
        let e = &self.entries[t.at()];
        if e.params.limited() && e.remaining == 0 {
            self.deplete(t);
        } else {
            self.enqueue(t, false);
        }
    }

    /// Takes a thread off its CPU and every queue (it blocked, was
    /// suspended or destroyed). No effect on a thread that is not runnable.
    /// A thread running on a CPU leaves it idle until it schedules; that
    /// CPU is kicked.
    pub fn block(&mut self, t: ThreadId) {
        let e = self.entries[t.at()];
        match e.place {
            Place::Off => return,
            Place::Running => {
                self.cpus[usize::from(e.on)].current = None;
                self.kicks |= 1 << e.on;
            }
            Place::Ready | Place::Depleted => self.unlink(t),
        }
        self.entries[t.at()].place = Place::Off;
    }

    /// `cpu`'s running thread gives up the rest of its slice: tail of its
    /// queue (on its home CPU). `cpu` is kicked, as every CPU whose running
    /// thread is taken off.
    pub fn yield_current(&mut self, cpu: usize) {
        debug_assert!(cpu < MAX_CPUS);
        if let Some(c) = self.cpus[cpu].current.take() {
            self.kicks |= 1 << cpu;
            self.entries[c.at()].slice_left = self.entries[c.at()].slice(self.timeslice);
            self.enqueue(c, false);
        }
    }

    /// Picks the thread to run on `cpu`: the current one unless a ready
    /// thread of `cpu` has a strictly higher priority, which then preempts
    /// it. A current thread whose home moved to another CPU first goes to
    /// the tail of that CPU's queue with the rest of its slice, and that
    /// CPU is kicked. `None`: idle.
    pub fn schedule(&mut self, cpu: usize) -> Option<ThreadId> {
        debug_assert!(cpu < MAX_CPUS);
        self.active |= 1 << cpu;
        if let Some(c) = self.cpus[cpu].current {
            let home = self.cpu_of(c);
            if home != cpu {
                self.cpus[cpu].current = None;
                self.enqueue(c, false);
                self.kicks |= 1 << home;
            } else {
                match self.highest_ready(cpu) {
                    Some(p) if p.is_higher_than(self.effective_priority(c)) => self.enqueue(c, true),
                    _ => return Some(c),
                }
            }
        }
        let p = self.highest_ready(cpu)?;
        let t = ThreadId(self.cpus[cpu].ready[p.0 as usize].head);
        self.unlink(t);
        let e = &mut self.entries[t.at()];
        (e.place, e.on, e.sent_back) = (Place::Running, cpu as u8, false);
        self.cpus[cpu].current = Some(t);
        Some(t)
    }

    /// Whether the IPC fast path may switch `cpu` from its running thread
    /// `from` (which blocks) to `to` (not runnable, at home on `cpu`): the
    /// slow path's [`schedule`](Self::schedule) would pick `to`, which has
    /// budget, and no ready thread of `cpu` is at its effective priority or
    /// higher. Changes nothing.
    pub fn can_hand_over(&self, cpu: usize, from: ThreadId, to: ThreadId) -> bool {
        debug_assert!(cpu < MAX_CPUS);
        let e = &self.entries[to.at()];
        if self.cpus[cpu].current != Some(from) || e.place != Place::Off || usize::from(e.cpu) != cpu {
            return false;
        }
        let (remaining, effective) = self.refreshed(to);
        !(e.params.limited() && remaining == 0 || self.highest_ready(cpu).is_some_and(|p| !effective.is_higher_than(p)))
    }

    /// The switch [`can_hand_over`](Self::can_hand_over) allowed: the same
    /// state as the slow path's `make_ready(to)` (for [`Turn::Continued`],
    /// `resume_turn_by(to, Some(from))`), [`block`](Self::block)`(from)`
    /// and `schedule(cpu)`.
    pub fn hand_over(&mut self, cpu: usize, from: ThreadId, to: ThreadId, turn: Turn) {
        debug_assert!(self.can_hand_over(cpu, from, to));
        self.block(from);
        self.refresh(to);
        let fresh = self.entries[to.at()].slice(self.timeslice);
        let e = &mut self.entries[to.at()];
        // A new turn has a fresh slice; a continued one keeps what is left
        // of its slice, unless that is spent.
        if turn == Turn::New || e.slice_left == 0 {
            e.slice_left = fresh;
        }
        (e.place, e.on, e.queued, e.sent_back) = (Place::Running, cpu as u8, e.effective().0, false);
        self.cpus[cpu].current = Some(to);
        self.active |= 1 << cpu;
    }

    /// What [`refresh`](Self::refresh) would make of `t`'s budget left and
    /// effective priority, without changing anything.
    fn refreshed(&self, t: ThreadId) -> (u32, Priority) {
        let e = &self.entries[t.at()];
        let period = u64::from(e.params.period);
        let renewed = period != 0 && self.now >= e.period_start + period;
        let (remaining, reserve_left) =
            if renewed { (e.params.budget, e.params.reserve) } else { (e.remaining, e.reserve_left) };
        (remaining, if reserve_left != 0 { e.params.reserve_priority } else { e.params.priority })
    }

    /// One timer tick of the global clock, which every CPU's running
    /// thread spent: charges each a tick of budget and of slice, then
    /// refills depleted threads (of every CPU) whose new period has begun.
    /// Call [`schedule`](Self::schedule) afterwards, on every CPU kicked.
    ///
    /// `donor_of(c)`: the thread the running thread `c` works for, if any
    /// (a blocked thread whose fault or VM exit it handles). The tick is
    /// then the donor's, of its slice and budget, and `c` keeps its own, as
    /// long as the donor has slice and budget left. Once they are spent (a
    /// handler that does not answer), the tick is `c`'s own, as without a
    /// donor: holding a reply right never lifts a thread's own limits. A
    /// runnable donor is no donor.
    pub fn tick(&mut self, donor_of: impl Fn(ThreadId) -> Option<ThreadId>) {
        self.now += 1;
        let cpus = crate::smp::cpus_in(self.active);
        for cpu in cpus.clone() {
            let Some(c) = self.cpus[cpu].current else { continue };
            let donor = donor_of(c).filter(|&d| !self.is_runnable(d));
            if let Some(d) = donor {
                self.refresh(d);
            }
            let paying = donor.filter(|&d| {
                let e = &self.entries[d.at()];
                e.slice_left > 0 && (!e.params.limited() || e.remaining > 0)
            });
            match paying {
                Some(d) => {
                    let e = &mut self.entries[d.at()];
                    if e.params.limited() {
                        e.remaining -= 1;
                    }
                    e.slice_left -= 1;
                    // Not runnable: it is queued at its new priority when it resumes,
                    // and a reserve that ends here ends its turn, as in `charge_current`.
                    if e.reserve_left == 1 {
                        e.slice_left = 0;
                    }
                    e.reserve_left = e.reserve_left.saturating_sub(1);
                }
                None => self.charge_current(cpu),
            }
        }
        for cpu in cpus {
            let mut t = self.cpus[cpu].depleted.head;
            while t != NONE {
                let next = self.entries[t as usize].next;
                self.refresh(ThreadId(t));
                if self.entries[t as usize].remaining != 0 {
                    self.unlink(ThreadId(t));
                    self.entries[t as usize].slice_left = self.entries[t as usize].slice(self.timeslice);
                    self.enqueue(ThreadId(t), false);
                }
                t = next;
            }
        }
        if self.reserved != 0 {
            self.restore_reserves();
        }
    }

    /// Ready threads whose new period has begun get their reserve back:
    /// each moves to the tail of its reserve priority (kicking its CPU if
    /// that preempts). Running threads get it at their next tick, others
    /// when they are made ready; only ready ones need looking for.
    fn restore_reserves(&mut self) {
        for i in 0..T {
            let e = &self.entries[i];
            if e.place != Place::Ready || e.params.reserve == 0 || e.reserve_left != 0 {
                continue;
            }
            let t = ThreadId(i as u16);
            self.refresh(t);
            if self.entries[i].reserve_left != 0 {
                self.unlink(t);
                self.enqueue(t, false);
            }
        }
    }

    /// A tick of `cpu`'s running thread's own: its budget, reserve and
    /// slice. A thread whose reserve ends goes on at its own priority,
    /// after the threads ready there (if any) with a fresh slice.
    fn charge_current(&mut self, cpu: usize) {
        let Some(c) = self.cpus[cpu].current else { return };
        self.refresh(c);
        let timeslice = self.timeslice;
        let e = &mut self.entries[c.at()];
        if e.params.limited() {
            e.remaining = e.remaining.saturating_sub(1);
        }
        e.slice_left = e.slice_left.saturating_sub(1);
        let reserve_ended = e.reserve_left == 1;
        e.reserve_left = e.reserve_left.saturating_sub(1);
        let (prio, home) = (e.params.priority, usize::from(e.cpu));
        if e.params.limited() && e.remaining == 0 {
            self.cpus[cpu].current = None;
            self.kicks |= 1 << cpu;
            self.deplete(c);
        } else if reserve_ended {
            e.slice_left = e.slice(timeslice);
            if self.highest_ready(home).is_some_and(|p| !prio.is_higher_than(p)) {
                self.cpus[cpu].current = None;
                self.kicks |= 1 << cpu;
                self.enqueue(c, false);
            }
        } else if e.slice_left == 0 {
            e.slice_left = e.slice(timeslice);
            let prio = e.effective().0 as usize;
            if self.cpus[home].ready[prio].head != NONE {
                self.cpus[cpu].current = None;
                self.kicks |= 1 << cpu;
                self.enqueue(c, false);
            }
        }
    }

    /// Makes a thread runnable whose fault or VM exit was handled, on its
    /// home CPU: it continues its turn, at the head of its priority with
    /// the rest of its slice (what its handler spent on it counted, see
    /// [`tick`](Self::tick)); with the slice spent, at the tail with a
    /// fresh one; sent to the tail since it last ran, at the tail; with the
    /// budget spent, depleted. No effect on a thread that is already
    /// runnable.
    pub fn resume_turn(&mut self, t: ThreadId) {
        self.resume_turn_by(t, None)
    }

    /// [`resume_turn`](Self::resume_turn) for a reply from `replier`, which
    /// is never the equal displaced (it ran for `t`, not in its place).
    pub fn resume_turn_by(&mut self, t: ThreadId, replier: Option<ThreadId>) {
        if self.is_runnable(t) {
            return;
        }
        self.refresh(t);
        let e = &mut self.entries[t.at()];
        if e.params.limited() && e.remaining == 0 {
            e.slice_left = e.slice(self.timeslice);
            self.deplete(t);
        } else if e.slice_left == 0 {
            e.slice_left = e.slice(self.timeslice);
            self.enqueue(t, false);
        } else if e.sent_back {
            self.enqueue(t, false);
        } else {
            self.take_turn_back(t, replier);
        }
    }

    /// Puts `t`, whose turn continues, first on its home CPU: at the head
    /// of its effective priority, ahead of a thread of the same one that runs there
    /// meanwhile (it had the CPU only while `t` waited for its handler,
    /// perhaps on another CPU), which goes back right behind `t` with the
    /// rest of its slice, as a preempted thread; that CPU is kicked.
    fn take_turn_back(&mut self, t: ThreadId, replier: Option<ThreadId>) {
        let home = self.cpu_of(t);
        let meanwhile = self.cpus[home].current.filter(|&c| {
            c != t
                && Some(c) != replier
                && self.cpu_of(c) == home
                && self.entries[c.at()].effective() == self.entries[t.at()].effective()
        });
        if let Some(c) = meanwhile {
            self.cpus[home].current = None;
            self.enqueue(c, true);
            self.kicks |= 1 << home;
        }
        self.enqueue(t, true);
    }

    /// Starts a new period with a full budget and reserve if the current
    /// one has ended. Never called on a ready thread whose effective
    /// priority that would change without requeueing it.
    fn refresh(&mut self, t: ThreadId) {
        let now = self.now;
        let e = &mut self.entries[t.at()];
        let period = u64::from(e.params.period);
        if period != 0 && now >= e.period_start + period {
            e.period_start += (now - e.period_start) / period * period;
            e.remaining = e.params.budget;
            e.reserve_left = e.params.reserve;
        }
    }

    /// Puts `t` (in no list, not running) on its home CPU's depleted list:
    /// refilled, it waits at the tail (`sent_back`), even if it blocks
    /// before it runs again.
    fn deplete(&mut self, t: ThreadId) {
        let e = &mut self.entries[t.at()];
        (e.place, e.sent_back) = (Place::Depleted, true);
        let home = usize::from(e.cpu);
        Self::push_back(&mut self.entries, &mut self.cpus[home].depleted, t);
    }

    /// Puts `t` on its home CPU's ready queue at its effective priority:
    /// at the head if it was preempted. Kicks that CPU if it runs nothing
    /// or a lower effective priority.
    fn enqueue(&mut self, t: ThreadId, front: bool) {
        let e = &mut self.entries[t.at()];
        e.place = Place::Ready;
        e.sent_back |= !front;
        let (prio, home) = (e.effective(), usize::from(e.cpu));
        e.queued = prio.0;
        let q = &mut self.cpus[home];
        let list = &mut q.ready[prio.0 as usize];
        if front {
            Self::push_front(&mut self.entries, list, t);
        } else {
            Self::push_back(&mut self.entries, list, t);
        }
        q.bitmap |= 1 << prio.0;
        if q.current.is_none_or(|c| prio.is_higher_than(self.entries[c.at()].effective())) {
            self.kicks |= 1 << home;
        }
    }

    /// Removes a ready or depleted thread from its home CPU's list.
    fn unlink(&mut self, t: ThreadId) {
        let e = self.entries[t.at()];
        let q = &mut self.cpus[usize::from(e.cpu)];
        let list = match e.place {
            Place::Ready => &mut q.ready[usize::from(e.queued)],
            Place::Depleted => &mut q.depleted,
            Place::Off | Place::Running => return,
        };
        match e.prev {
            NONE => list.head = e.next,
            p => self.entries[p as usize].next = e.next,
        }
        match e.next {
            NONE => list.tail = e.prev,
            n => self.entries[n as usize].prev = e.prev,
        }
        if e.place == Place::Ready && list.head == NONE {
            q.bitmap &= !(1 << e.queued);
        }
        let e = &mut self.entries[t.at()];
        (e.next, e.prev) = (NONE, NONE);
    }

    fn push_back(entries: &mut [Entry; T], list: &mut List, t: ThreadId) {
        (entries[t.at()].prev, entries[t.at()].next) = (list.tail, NONE);
        match list.tail {
            NONE => list.head = t.0,
            tail => entries[tail as usize].next = t.0,
        }
        list.tail = t.0;
    }

    fn push_front(entries: &mut [Entry; T], list: &mut List, t: ThreadId) {
        (entries[t.at()].prev, entries[t.at()].next) = (NONE, list.head);
        match list.head {
            NONE => list.tail = t.0,
            head => entries[head as usize].prev = t.0,
        }
        list.head = t.0;
    }

    /// Checks the scheduler's invariants, on every CPU (for tests and
    /// kernel self-checks): each thread in at most one place overall; a
    /// ready or depleted thread on its home CPU's lists, well linked, at
    /// its priority; each CPU's current running there; the bitmaps; no
    /// kick for a CPU that does not exist.
    pub fn check(&self) -> Result<(), &'static str> {
        let mut seen = [false; T];
        let mut walk = |cpu: usize, list: &List, place: Place, prio: Option<u8>| -> Result<usize, &'static str> {
            let (mut t, mut prev, mut len) = (list.head, NONE, 0);
            while t != NONE {
                let e = self.entries.get(t as usize).ok_or("list link out of range")?;
                if core::mem::replace(&mut seen[t as usize], true) {
                    return Err("thread in two lists");
                }
                if e.place != place || e.prev != prev || prio.is_some_and(|p| p != e.effective().0 || p != e.queued) {
                    return Err("list entry with wrong place, link or priority");
                }
                if usize::from(e.cpu) != cpu {
                    return Err("thread queued on a CPU not its home");
                }
                if place == Place::Depleted && !(e.params.limited() && e.remaining == 0) {
                    return Err("depleted thread with budget");
                }
                (prev, t, len) = (t, e.next, len + 1);
            }
            if list.tail != prev { Err("list tail") } else { Ok(len) }
        };
        for (cpu, q) in self.cpus.iter().enumerate() {
            let used = q.current.is_some() || q.bitmap != 0 || q.depleted.head != NONE;
            if used && self.active & (1 << cpu) == 0 {
                return Err("a CPU with threads that ticks skip");
            }
            for (p, list) in q.ready.iter().enumerate() {
                let len = walk(cpu, list, Place::Ready, Some(p as u8))?;
                if (len != 0) != (q.bitmap & 1 << p != 0) {
                    return Err("bitmap out of step with the ready queues");
                }
            }
            walk(cpu, &q.depleted, Place::Depleted, None)?;
        }
        for (cpu, q) in self.cpus.iter().enumerate() {
            if let Some(c) = q.current {
                let e = self.entries.get(c.at()).ok_or("current thread out of range")?;
                if e.place != Place::Running || usize::from(e.on) != cpu || seen[c.at()] {
                    return Err("current thread not running there");
                }
                if e.sent_back && e.cpu == e.on {
                    return Err("a running thread still marked sent back");
                }
                seen[c.at()] = true;
            }
        }
        let mut reserved = 0;
        for (t, e) in self.entries.iter().enumerate() {
            if seen[t] != (e.place != Place::Off) {
                return Err("runnable thread in no list, or off thread in one");
            }
            if e.reserve_left > e.params.reserve || e.params.priority.is_higher_than(e.params.top_priority()) {
                return Err("reserve beyond its parameters");
            }
            if e.slice_left > e.slice(self.timeslice) {
                return Err("slice left beyond the thread's slice");
            }
            reserved += u32::from(e.params.reserve != 0);
            if usize::from(e.cpu) >= MAX_CPUS || usize::from(e.on) >= MAX_CPUS {
                return Err("CPU index beyond MAX_CPUS");
            }
        }
        if MAX_CPUS < u32::BITS as usize && self.kicks >> MAX_CPUS != 0 {
            return Err("kick for a CPU beyond MAX_CPUS");
        }
        if reserved != self.reserved {
            return Err("count of threads with a reserve");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
