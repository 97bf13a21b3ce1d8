//! Fixed-priority scheduler with per-thread budgets (mechanism only).
//!
//! - 32 priorities, 0 lowest; a bitmap of non-empty ready queues finds the
//!   highest in O(1). A higher-priority ready thread always runs first.
//! - FIFO round-robin within a priority: a thread gets `timeslice` ticks,
//!   then goes to the tail of its queue. A thread preempted by a higher
//!   priority goes back to the head and keeps the rest of its slice.
//! - Budgets (the scheduling-context mechanism): `budget` ticks of every
//!   `period` ticks, counted from when the thread was configured; period 0
//!   means unlimited. A thread that spends its budget is *depleted*: off the
//!   ready queues until its next period begins.
//! - Work done for another thread is that thread's: while a handler works
//!   on a thread's fault or VM exit, ticks are charged to the faulting
//!   thread's slice and budget ([`Scheduler::tick_for`]), and when the
//!   handler's reply lets it run again it continues its turn
//!   ([`Scheduler::resume_turn`]): at the head of its queue with what is
//!   left of its slice, as a preempted thread. Once the faulting thread's
//!   slice or budget is spent, the handler pays its own ticks again. So a VP that exits as fast as
//!   it can gets no more of the CPU than one that computes, and one whose
//!   exits are slow to handle does not lose its turn at each exit.
//!
//! Every thread is in exactly one place: running (`current`), one ready
//! queue, the depleted list, or none (not runnable: the IPC layer knows why).
//! Which threads to run and at what priority is policy, set from outside
//! through [`Scheduler::configure`].

use abi::ErrorCode;
use abi::invoke::MAX_PRIORITY;

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

/// What a scheduling context says about its thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedParams {
    pub priority: Priority,
    /// Ticks the thread may run per period; ignored when `period` is 0.
    pub budget: u32,
    /// Ticks; 0 means unlimited budget.
    pub period: u32,
}

impl SchedParams {
    /// Lowest priority, no budget limit.
    pub const DEFAULT: SchedParams = SchedParams { priority: Priority::LOWEST, budget: 0, period: 0 };

    /// Validates `SCHED_CONFIGURE` arguments: a priority up to
    /// [`MAX_PRIORITY`], and for a limited budget `0 < budget <= period`.
    pub fn from_abi(priority: u64, budget: u64, period: u64) -> Result<SchedParams, ErrorCode> {
        let priority = Priority::new(priority).ok_or(ErrorCode::INVALID_ARGUMENT)?;
        let period = u32::try_from(period).map_err(|_| ErrorCode::INVALID_ARGUMENT)?;
        let budget = if period == 0 { 0 } else { u32::try_from(budget).map_err(|_| ErrorCode::INVALID_ARGUMENT)? };
        if period != 0 && (budget == 0 || budget > period) {
            return Err(ErrorCode::INVALID_ARGUMENT);
        }
        Ok(SchedParams { priority, budget, period })
    }

    const fn limited(&self) -> bool {
        self.period != 0
    }
}

/// The most a scheduling context may ever be configured with, as seL4
/// MCS's maximum controlled priority with the budget added: a priority no
/// higher than the ceiling's and, under a limited ceiling, a limited budget
/// no larger per period no shorter, so never more CPU in any window (and
/// never a longer burst) than the ceiling gives.
///
/// It is a partial order: a ceiling permits itself, and a ceiling within a
/// ceiling permits only what that one does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ceiling(SchedParams);

impl Ceiling {
    /// Everything: the root task's context.
    pub const HIGHEST: Ceiling = Ceiling(SchedParams { priority: Priority::HIGHEST, budget: 0, period: 0 });

    /// Exactly `params` and what is below them.
    pub const fn of(params: SchedParams) -> Ceiling {
        Ceiling(params)
    }

    /// True if a context under this ceiling may run with `params`.
    pub const fn permits(&self, params: SchedParams) -> bool {
        let c = self.0;
        if params.priority.is_higher_than(c.priority) {
            return false;
        }
        !c.limited() || (params.limited() && params.budget <= c.budget && params.period >= c.period)
    }

    /// The least a context under this ceiling runs with: the lowest
    /// priority and the ceiling's budget.
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

#[derive(Clone, Copy)]
struct Entry {
    params: SchedParams,
    place: Place,
    /// Links of the ready queue or the depleted list.
    next: u16,
    prev: u16,
    /// Budget left in the current period (limited budgets only).
    remaining: u32,
    period_start: u64,
    slice_left: u32,
}

impl Entry {
    const NEW: Entry = Entry {
        params: SchedParams::DEFAULT,
        place: Place::Off,
        next: NONE,
        prev: NONE,
        remaining: 0,
        period_start: 0,
        slice_left: 0,
    };
}

#[derive(Clone, Copy)]
struct List {
    head: u16,
    tail: u16,
}

impl List {
    const EMPTY: List = List { head: NONE, tail: NONE };
}

/// The scheduler of `T` threads.
pub struct Scheduler<const T: usize> {
    entries: [Entry; T],
    ready: [List; PRIORITIES],
    /// Bit p set iff `ready[p]` is not empty.
    bitmap: u32,
    depleted: List,
    current: Option<ThreadId>,
    now: u64,
    timeslice: u32,
}

impl<const T: usize> Scheduler<T> {
    /// `timeslice`: ticks a thread runs before its equals get a turn (at least 1).
    pub const fn new(timeslice: u32) -> Self {
        const { assert!(T < NONE as usize, "thread ids are u16 with a sentinel") };
        let timeslice = if timeslice == 0 { 1 } else { timeslice };
        Scheduler {
            entries: [Entry::NEW; T],
            ready: [List::EMPTY; PRIORITIES],
            bitmap: 0,
            depleted: List::EMPTY,
            current: None,
            now: 0,
            timeslice,
        }
    }

    /// Ticks since start.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The thread chosen by the last [`schedule`](Self::schedule), if it is still runnable.
    pub fn current(&self) -> Option<ThreadId> {
        self.current
    }

    pub fn params(&self, t: ThreadId) -> SchedParams {
        self.entries[t.at()].params
    }

    pub fn priority(&self, t: ThreadId) -> Priority {
        self.entries[t.at()].params.priority
    }

    /// Running, ready or depleted.
    pub fn is_runnable(&self, t: ThreadId) -> bool {
        self.entries[t.at()].place != Place::Off
    }

    /// Waiting for its next period.
    /// True if any thread waits for its next budget period.
    pub fn has_depleted(&self) -> bool {
        self.depleted.head != NONE
    }

    pub fn is_depleted(&self, t: ThreadId) -> bool {
        self.entries[t.at()].place == Place::Depleted
    }

    /// Budget left in this period; `None` if unlimited.
    pub fn remaining_budget(&self, t: ThreadId) -> Option<u32> {
        let e = &self.entries[t.at()];
        e.params.limited().then_some(e.remaining)
    }

    /// The highest priority with a ready (not running) thread.
    pub fn highest_ready(&self) -> Option<Priority> {
        (self.bitmap != 0).then(|| Priority((u32::BITS - 1 - self.bitmap.leading_zeros()) as u8))
    }

    /// Sets a thread's parameters and starts a fresh period with a full
    /// budget. A ready thread moves to the tail of its new priority.
    pub fn configure(&mut self, t: ThreadId, params: SchedParams) {
        let place = self.entries[t.at()].place;
        if matches!(place, Place::Ready | Place::Depleted) {
            self.unlink(t);
        }
        let now = self.now;
        let slice = self.timeslice;
        let e = &mut self.entries[t.at()];
        (e.params, e.remaining, e.period_start, e.slice_left) = (params, params.budget, now, slice);
        if matches!(place, Place::Ready | Place::Depleted) {
            e.place = Place::Off;
            self.make_ready(t);
        }
    }

    /// Makes a thread runnable (a wakeup): tail of its priority, fresh slice,
    /// or the depleted list if its budget for this period is spent. No
    /// effect on a thread that is already runnable.
    pub fn make_ready(&mut self, t: ThreadId) {
        if self.is_runnable(t) {
            return;
        }
        self.entries[t.at()].slice_left = self.timeslice;
        self.refresh(t);
        let e = &self.entries[t.at()];
        if e.params.limited() && e.remaining == 0 {
            self.entries[t.at()].place = Place::Depleted;
            Self::push_back(&mut self.entries, &mut self.depleted, t);
        } else {
            self.enqueue(t, false);
        }
    }

    /// Takes a thread off the CPU and every queue (it blocked, was
    /// suspended or destroyed). No effect on a thread that is not runnable.
    pub fn block(&mut self, t: ThreadId) {
        match self.entries[t.at()].place {
            Place::Off => return,
            Place::Running => self.current = None,
            Place::Ready | Place::Depleted => self.unlink(t),
        }
        self.entries[t.at()].place = Place::Off;
    }

    /// The running thread gives up the rest of its slice: tail of its queue.
    pub fn yield_current(&mut self) {
        if let Some(c) = self.current.take() {
            self.entries[c.at()].slice_left = self.timeslice;
            self.enqueue(c, false);
        }
    }

    /// Picks the thread to run: the current one unless a ready thread has a
    /// strictly higher priority, which then preempts it. `None`: idle.
    pub fn schedule(&mut self) -> Option<ThreadId> {
        if let Some(c) = self.current {
            match self.highest_ready() {
                Some(p) if p.is_higher_than(self.priority(c)) => self.enqueue(c, true),
                _ => return Some(c),
            }
        }
        let p = self.highest_ready()?;
        let t = ThreadId(self.ready[p.0 as usize].head);
        self.unlink(t);
        self.entries[t.at()].place = Place::Running;
        self.current = Some(t);
        self.current
    }

    /// One timer tick: charges the running thread a tick of budget and of
    /// slice, and refills depleted threads whose new period has begun. Call
    /// [`schedule`](Self::schedule) afterwards.
    pub fn tick(&mut self) {
        self.tick_for(None);
    }

    /// One timer tick, the running thread working for `donor` (a blocked
    /// thread whose fault or VM exit it handles): the tick is `donor`'s, of
    /// its slice and budget, and the running thread keeps its own, as long
    /// as `donor` has slice and budget left. Once they are spent (a handler
    /// that does not answer), the tick is the running thread's own, as
    /// without a donor ([`tick`](Self::tick)): holding a reply right never
    /// lifts a thread's own limits.
    pub fn tick_for(&mut self, donor: Option<ThreadId>) {
        self.now += 1;
        let donor = donor.filter(|&d| !self.is_runnable(d));
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
            }
            None => self.charge_current(),
        }
        let mut t = self.depleted.head;
        while t != NONE {
            let next = self.entries[t as usize].next;
            self.refresh(ThreadId(t));
            if self.entries[t as usize].remaining != 0 {
                self.unlink(ThreadId(t));
                self.entries[t as usize].slice_left = self.timeslice;
                self.enqueue(ThreadId(t), false);
            }
            t = next;
        }
    }

    /// A tick of the running thread's own: its budget and slice.
    fn charge_current(&mut self) {
        let Some(c) = self.current else { return };
        self.refresh(c);
        let timeslice = self.timeslice;
        let e = &mut self.entries[c.at()];
        if e.params.limited() {
            e.remaining = e.remaining.saturating_sub(1);
        }
        e.slice_left = e.slice_left.saturating_sub(1);
        let prio = e.params.priority.0 as usize;
        if e.params.limited() && e.remaining == 0 {
            e.place = Place::Depleted;
            self.current = None;
            Self::push_back(&mut self.entries, &mut self.depleted, c);
        } else if e.slice_left == 0 {
            e.slice_left = timeslice;
            if self.ready[prio].head != NONE {
                self.current = None;
                self.enqueue(c, false);
            }
        }
    }

    /// Makes a thread runnable whose fault or VM exit was handled: it
    /// continues its turn, at the head of its priority with the rest of its
    /// slice (what its handler spent on it counted, see
    /// [`tick_for`](Self::tick_for)); with the slice spent, at the tail
    /// with a fresh one; with the budget spent, depleted. No effect on a
    /// thread that is already runnable.
    pub fn resume_turn(&mut self, t: ThreadId) {
        if self.is_runnable(t) {
            return;
        }
        self.refresh(t);
        let e = &mut self.entries[t.at()];
        if e.params.limited() && e.remaining == 0 {
            e.slice_left = self.timeslice;
            e.place = Place::Depleted;
            Self::push_back(&mut self.entries, &mut self.depleted, t);
        } else if e.slice_left == 0 {
            e.slice_left = self.timeslice;
            self.enqueue(t, false);
        } else {
            self.enqueue(t, true);
        }
    }

    /// Starts a new period with a full budget if the current one has ended.
    fn refresh(&mut self, t: ThreadId) {
        let now = self.now;
        let e = &mut self.entries[t.at()];
        let period = u64::from(e.params.period);
        if period != 0 && now >= e.period_start + period {
            e.period_start += (now - e.period_start) / period * period;
            e.remaining = e.params.budget;
        }
    }

    /// Puts `t` on its ready queue: at the head if it was preempted.
    fn enqueue(&mut self, t: ThreadId, front: bool) {
        let prio = self.priority(t).0 as usize;
        self.entries[t.at()].place = Place::Ready;
        if front {
            Self::push_front(&mut self.entries, &mut self.ready[prio], t);
        } else {
            Self::push_back(&mut self.entries, &mut self.ready[prio], t);
        }
        self.bitmap |= 1 << prio;
    }

    /// Removes a ready or depleted thread from its list.
    fn unlink(&mut self, t: ThreadId) {
        let e = self.entries[t.at()];
        let list = match e.place {
            Place::Ready => &mut self.ready[e.params.priority.0 as usize],
            Place::Depleted => &mut self.depleted,
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
            self.bitmap &= !(1 << e.params.priority.0);
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

    /// Checks the scheduler's invariants (for tests and kernel self-checks).
    pub fn check(&self) -> Result<(), &'static str> {
        let mut seen = [false; T];
        let mut walk = |list: &List, place: Place, prio: Option<u8>| -> Result<usize, &'static str> {
            let (mut t, mut prev, mut len) = (list.head, NONE, 0);
            while t != NONE {
                let e = &self.entries[t as usize];
                if core::mem::replace(&mut seen[t as usize], true) {
                    return Err("thread in two lists");
                }
                if e.place != place || e.prev != prev || prio.is_some_and(|p| p != e.params.priority.0) {
                    return Err("list entry with wrong place, link or priority");
                }
                if place == Place::Depleted && !(e.params.limited() && e.remaining == 0) {
                    return Err("depleted thread with budget");
                }
                (prev, t, len) = (t, e.next, len + 1);
            }
            if list.tail != prev { Err("list tail") } else { Ok(len) }
        };
        for (p, list) in self.ready.iter().enumerate() {
            let len = walk(list, Place::Ready, Some(p as u8))?;
            if (len != 0) != (self.bitmap & 1 << p != 0) {
                return Err("bitmap out of step with the ready queues");
            }
        }
        walk(&self.depleted, Place::Depleted, None)?;
        if let Some(c) = self.current {
            if self.entries[c.at()].place != Place::Running || seen[c.at()] {
                return Err("current thread not running");
            }
            seen[c.at()] = true;
        }
        for (t, e) in self.entries.iter().enumerate() {
            if seen[t] != (e.place != Place::Off) {
                return Err("runnable thread in no list, or off thread in one");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
