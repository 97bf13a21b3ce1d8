use super::*;
use std::vec::Vec;

fn prio(level: u64) -> Priority {
    Priority::new(level).unwrap()
}

fn params(level: u64) -> SchedParams {
    SchedParams { priority: prio(level), ..SchedParams::DEFAULT }
}

fn budgeted(level: u64, budget: u32, period: u32) -> SchedParams {
    SchedParams::budgeted(prio(level), budget, period)
}

/// `level` with a reserve of `reserve` ticks at `at` per `period`, an
/// unlimited budget (0) or a limited one, and a slice (0: the default).
fn reserved(level: u64, budget: u32, period: u32, reserve: u32, at: u64, slice: u32) -> SchedParams {
    SchedParams { slice, reserve, reserve_priority: prio(at), ..budgeted(level, budget, period) }
}

/// Valid parameters drawn at random: priorities 0..4, short periods, some
/// with slices, reserves and unlimited budgets with a reserve.
fn draw(rng: &mut fastrand::Rng) -> SchedParams {
    let period = rng.u32(0..6);
    let budget = if period == 0 || rng.u8(..4) == 0 { 0 } else { rng.u32(1..=period) };
    let level = rng.u64(0..4);
    let slice = if rng.bool() { 0 } else { rng.u32(1..5) };
    let room = if budget == 0 { period } else { budget };
    if period == 0 || room == 0 || (budget == 0 && period != 0) || rng.bool() {
        let reserve = if budget == 0 && period != 0 { rng.u32(1..=period) } else { 0 };
        if reserve == 0 {
            return SchedParams { slice, ..budgeted(level, budget, if budget == 0 { 0 } else { period }) };
        }
        return reserved(level, budget, period, reserve, rng.u64(level..4), slice);
    }
    reserved(level, budget, period, rng.u32(1..=room), rng.u64(level..4), slice)
}

/// A scheduler with threads 0.. at the given parameters, all ready.
fn with(timeslice: u32, threads: &[SchedParams]) -> Scheduler<8> {
    let mut s = Scheduler::new(timeslice);
    for (i, &p) in threads.iter().enumerate() {
        s.configure(ThreadId(i as u16), p);
        s.make_ready(ThreadId(i as u16));
    }
    s.check().unwrap();
    s
}

/// Who runs on each of the next `n` ticks.
fn run(s: &mut Scheduler<8>, n: usize) -> Vec<Option<u16>> {
    (0..n)
        .map(|_| {
            let t = s.schedule(0).map(|t| t.0);
            s.tick(|_| None);
            s.check().unwrap();
            t
        })
        .collect()
}

#[test]
fn priorities_are_explicit() {
    assert_eq!(Priority::new(31), Some(Priority::HIGHEST));
    assert_eq!(Priority::new(32), None);
    assert_eq!(Priority::new(0), Some(Priority::LOWEST));
    assert!(Priority::HIGHEST.is_higher_than(Priority::LOWEST));
    assert!(!Priority::LOWEST.is_higher_than(Priority::HIGHEST));
    assert!(!prio(5).is_higher_than(prio(5)));
    assert_eq!(prio(7).level(), 7);
}

#[test]
fn a_ceiling_permits_no_higher_priority_and_no_more_budget() {
    let unlimited = Ceiling::of(params(10));
    assert!(unlimited.permits(params(10)) && unlimited.permits(params(0)));
    assert!(unlimited.permits(budgeted(10, 1, 5)), "a budget only lowers");
    assert!(!unlimited.permits(params(11)));
    let limited = Ceiling::of(budgeted(5, 2, 10));
    assert!(limited.permits(budgeted(5, 2, 10)) && limited.permits(budgeted(0, 1, 20)));
    assert!(!limited.permits(params(5)), "an unlimited budget is above any limited one");
    assert!(!limited.permits(budgeted(5, 3, 10)), "more budget per period");
    assert!(!limited.permits(budgeted(5, 1, 5)), "a shorter period");
    assert!(!limited.permits(budgeted(6, 1, 10)));
    assert!(Ceiling::HIGHEST.permits(params(31)));
}

#[test]
fn a_ceiling_is_a_partial_order_and_only_lowers() {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut draw = || {
        let period = [0, 5, 10, 20][rng.usize(..4)];
        let budget = if period == 0 { 0 } else { rng.u32(1..=period) };
        let p = budgeted(rng.u64(0..4), budget, period);
        match rng.u8(..3) {
            0 if period != 0 => reserved(p.priority.0.into(), budget, period, rng.u32(1..=budget), rng.u64(3..6), 0),
            1 if period != 0 => reserved(p.priority.0.into(), 0, period, rng.u32(1..=period), rng.u64(2..5), 2),
            _ => p,
        }
    };
    for _ in 0..20_000 {
        let (a, b, c) = (draw(), draw(), draw());
        assert!(Ceiling::of(a).permits(a), "reflexive: {a:?}");
        if Ceiling::of(a).permits(b) && Ceiling::of(b).permits(c) {
            assert!(Ceiling::of(a).permits(c), "transitive: {a:?} {b:?} {c:?}");
        }
        if Ceiling::of(a).permits(b) && Ceiling::of(b).permits(a) {
            assert_eq!(Ceiling::of(a), Ceiling::of(b), "antisymmetric");
        }
        assert!(Ceiling::of(a).permits(Ceiling::of(a).lowest()));
        assert_eq!(Ceiling::of(a).lowered_to(Ceiling::of(b)).is_some(), Ceiling::of(a).permits(b));
    }
}

#[test]
fn sched_params_are_validated() {
    assert_eq!(SchedParams::from_abi(31, 0, 0), Ok(params(31)));
    assert_eq!(SchedParams::from_abi(3, 99, 0), Ok(params(3)), "budget ignored when unlimited");
    assert_eq!(SchedParams::from_abi(3, 2, 10), Ok(budgeted(3, 2, 10)));
    assert_eq!(SchedParams::from_abi(3, 10, 10), Ok(budgeted(3, 10, 10)));
    for (p, b, per) in [(32, 0, 0), (u64::MAX, 0, 0), (3, 0, 10), (3, 11, 10), (3, 1, 1 << 32), (3, 1 << 32, 10)] {
        assert_eq!(SchedParams::from_abi(p, b, per), Err(ErrorCode::INVALID_ARGUMENT), "{p} {b} {per}");
    }
    // The MR3..MR5 of SCHED_CONFIGURE: slice, reserve, reserve priority.
    assert_eq!(SchedParams::from_abi_full(3, 2, 10, 0, 0, 0), Ok(budgeted(3, 2, 10)), "as with three words");
    assert_eq!(SchedParams::from_abi_full(3, 0, 0, 7, 0, 0), Ok(SchedParams { slice: 7, ..params(3) }));
    assert_eq!(SchedParams::from_abi_full(3, 0, 0, 0, 0, 31), Ok(params(3)), "no reserve: its priority ignored");
    assert_eq!(SchedParams::from_abi_full(3, 5, 10, 0, 5, 4), Ok(reserved(3, 5, 10, 5, 4, 0)));
    assert_eq!(SchedParams::from_abi_full(3, 0, 10, 0, 10, 3), Ok(reserved(3, 0, 10, 10, 3, 0)), "unlimited budget");
    assert_eq!(SchedParams::from_abi_full(0, 0, 0, u64::from(MAX_SLICE), 0, 0).map(|p| p.slice), Ok(MAX_SLICE));
    for (p, b, per, sl, r, rp, why) in [
        (3, 0, 0, u64::from(MAX_SLICE) + 1, 0, 0, "slice too long"),
        (3, 0, 0, 1 << 32, 0, 0, "slice beyond u32"),
        (3, 0, 0, 0, 1, 4, "a reserve without a period"),
        (3, 5, 10, 0, 6, 4, "a reserve beyond the budget"),
        (3, 0, 10, 0, 11, 4, "a reserve beyond the period"),
        (3, 5, 10, 0, 1, 2, "a reserve priority below the priority"),
        (3, 5, 10, 0, 1, 32, "a reserve priority beyond the highest"),
        (3, 5, 10, 0, 1 << 32, 4, "a reserve beyond u32"),
        (3, 0, 10, 0, 0, 4, "budget 0 with a period and no reserve"),
    ] {
        assert_eq!(SchedParams::from_abi_full(p, b, per, sl, r, rp), Err(ErrorCode::INVALID_ARGUMENT), "{why}");
    }
}

#[test]
fn a_ceiling_bounds_the_reserve_priority() {
    let c = Ceiling::of(params(5));
    assert!(c.permits(reserved(1, 0, 10, 5, 5, 0)));
    assert!(!c.permits(reserved(1, 0, 10, 5, 6, 0)), "a reserve above the ceiling");
    assert!(c.permits(SchedParams { slice: MAX_SLICE, ..params(5) }), "slices are not bounded");
    // A context with a reserve bounds others by its reserve priority.
    let c = Ceiling::of(reserved(1, 4, 10, 2, 7, 0));
    assert!(c.permits(budgeted(7, 4, 10)) && !c.permits(budgeted(8, 4, 10)));
    assert!(!c.permits(reserved(1, 0, 10, 2, 7, 0)), "an unlimited budget above a limited one");
    assert!(!c.permits(reserved(1, 5, 10, 2, 7, 0)), "more budget");
    assert!(c.permits(c.lowest()) && c.lowest().reserve == 0);
}

#[test]
fn slices_share_a_cpu_in_proportion() {
    let weighted = |slice| SchedParams { slice, ..params(0) };
    let mut s = with(2, &[weighted(1), weighted(2), weighted(7)]);
    let order = run(&mut s, 1000);
    let share = |t| order.iter().filter(|&&r| r == Some(t)).count();
    assert_eq!([share(0), share(1), share(2)], [100, 200, 700]);
    assert_eq!(&order[..10], [0, 1, 1, 2, 2, 2, 2, 2, 2, 2].map(Some));
    // Slice 0 is the scheduler's timeslice.
    let mut s = with(3, &[weighted(0), weighted(1)]);
    assert_eq!(run(&mut s, 8), [0, 0, 0, 1, 0, 0, 0, 1].map(Some));
}

#[test]
fn a_reserve_raises_a_thread_for_its_ticks_of_each_period() {
    // 3 ticks of every 10 at priority 5, over a busy thread at 3, then
    // below it at 1.
    let mut s = with(100, &[reserved(1, 0, 10, 3, 5, 0), params(3)]);
    assert_eq!(s.effective_priority(ThreadId(0)), prio(5));
    let order = run(&mut s, 30);
    let period = [0, 0, 0, 1, 1, 1, 1, 1, 1, 1].map(Some);
    assert_eq!(order, [period, period, period].concat());
    assert_eq!(s.effective_priority(ThreadId(0)), prio(5), "ready, raised again by its new period");
    assert_eq!(s.priority(ThreadId(0)), prio(1));

    // Among equals it goes to the tail of its own priority when the
    // reserve is spent; the preempted one keeps its turn.
    let mut s = with(100, &[reserved(1, 0, 10, 3, 5, 0), params(1)]);
    let order = run(&mut s, 20);
    assert_eq!(order, [period, period].concat());
    assert_eq!(s.remaining_reserve(ThreadId(0)), 3);

    // Blocked across its period boundary, it wakes with its reserve.
    let mut s = with(100, &[reserved(1, 0, 10, 3, 5, 0), params(3)]);
    run(&mut s, 4);
    s.block(ThreadId(0));
    run(&mut s, 10);
    assert_eq!(s.effective_priority(ThreadId(0)), prio(1), "not refreshed while blocked");
    s.make_ready(ThreadId(0));
    assert_eq!((s.effective_priority(ThreadId(0)), s.schedule(0)), (prio(5), Some(ThreadId(0))));
    s.check().unwrap();
}

#[test]
fn a_reserve_ending_alone_keeps_running_and_a_reserve_spent_for_it_counts() {
    // Nothing else ready: the thread goes on at its priority.
    let mut s = with(100, &[reserved(1, 0, 10, 2, 5, 0)]);
    assert_eq!(run(&mut s, 10), [Some(0); 10]);
    // A handler's ticks for it come off its reserve: it resumes at its priority.
    let mut s = with(100, &[reserved(1, 0, 10, 2, 5, 0), params(3), params(20)]);
    s.block(ThreadId(0));
    assert_eq!(s.schedule(0), Some(ThreadId(2)));
    s.tick(|c| (c == ThreadId(2)).then_some(ThreadId(0)));
    s.tick(|c| (c == ThreadId(2)).then_some(ThreadId(0)));
    assert_eq!(s.remaining_reserve(ThreadId(0)), 0);
    s.block(ThreadId(2));
    s.resume_turn(ThreadId(0));
    assert_eq!(s.schedule(0), Some(ThreadId(1)));
    s.check().unwrap();
}

#[test]
fn a_budget_still_caps_a_thread_with_a_reserve() {
    // 2 ticks of 10, the first raised: it runs first in each period, then
    // once more after its equal's slice, then is depleted.
    let mut s = with(1, &[reserved(1, 2, 10, 1, 5, 0), params(1)]);
    let order = run(&mut s, 100);
    assert_eq!(order.iter().filter(|&&t| t == Some(0)).count(), 20);
    for k in 0..10 {
        assert_eq!(order[10 * k], Some(0), "period {k} starts with the reserve");
        assert_eq!(order[10 * k + 1..10 * k + 10].iter().filter(|&&t| t == Some(0)).count(), 1, "period {k}");
    }
    assert!(s.is_depleted(ThreadId(0)) || s.remaining_budget(ThreadId(0)) == Some(2));
}

#[test]
fn the_highest_priority_runs_first() {
    let mut s = with(10, &[params(1), params(30), params(7), params(30)]);
    assert_eq!(s.highest_ready(0), Some(prio(30)));
    assert_eq!(s.schedule(0), Some(ThreadId(1)));
    s.block(ThreadId(1));
    assert_eq!(s.schedule(0), Some(ThreadId(3)));
    s.block(ThreadId(3));
    assert_eq!(s.schedule(0), Some(ThreadId(2)));
    s.block(ThreadId(2));
    assert_eq!(s.schedule(0), Some(ThreadId(0)));
    s.block(ThreadId(0));
    assert_eq!(s.schedule(0), None);
    assert_eq!(s.highest_ready(0), None);
    s.check().unwrap();
}

#[test]
fn a_woken_higher_priority_preempts_and_the_preempted_keeps_its_turn() {
    let mut s = with(4, &[params(5), params(5)]);
    s.configure(ThreadId(2), params(9));
    assert_eq!(s.schedule(0), Some(ThreadId(0)));
    s.tick(|_| None);
    s.make_ready(ThreadId(2));
    assert_eq!(s.schedule(0), Some(ThreadId(2)));
    s.block(ThreadId(2));
    // Thread 0 went back to the head, ahead of 1, with 3 ticks of slice left.
    assert_eq!(run(&mut s, 5), [Some(0), Some(0), Some(0), Some(1), Some(1)]);
    // An equal priority never preempts.
    s.configure(ThreadId(3), params(5));
    s.make_ready(ThreadId(3));
    assert_eq!(s.schedule(0), Some(ThreadId(1)));
}

#[test]
fn round_robin_is_fifo_within_a_priority() {
    let mut s = with(2, &[params(4), params(4), params(4), params(1)]);
    let order = run(&mut s, 8);
    assert_eq!(order, [0, 0, 1, 1, 2, 2, 0, 0].map(Some));
    // Alone at its priority a thread keeps running past its slice.
    let mut s = with(2, &[params(4), params(1)]);
    assert_eq!(run(&mut s, 5), [Some(0); 5]);
}

#[test]
fn yield_goes_to_the_tail() {
    let mut s = with(100, &[params(4), params(4), params(4)]);
    assert_eq!(s.schedule(0), Some(ThreadId(0)));
    s.yield_current(0);
    assert_eq!(s.schedule(0), Some(ThreadId(1)));
    s.yield_current(0);
    assert_eq!(s.schedule(0), Some(ThreadId(2)));
    s.yield_current(0);
    assert_eq!(s.schedule(0), Some(ThreadId(0)));
    // Yielding with nobody else ready runs the same thread again.
    let mut s = with(100, &[params(4)]);
    s.schedule(0);
    s.yield_current(0);
    assert_eq!(s.schedule(0), Some(ThreadId(0)));
    s.check().unwrap();
}

#[test]
fn budgets_are_spent_and_replenished_at_period_boundaries() {
    // A high thread with 2 ticks per 5 over a low unlimited one.
    let mut s = with(100, &[budgeted(20, 2, 5), params(1)]);
    let order = run(&mut s, 15);
    let high = [Some(0), Some(0), Some(1), Some(1), Some(1)];
    assert_eq!(order, [high, high, high].concat());
    s.schedule(0);
    assert_eq!(s.remaining_budget(ThreadId(0)), Some(2));
    assert_eq!(s.remaining_budget(ThreadId(1)), None);

    // Alone, a depleted thread leaves the CPU idle until its next period.
    let mut s = with(100, &[budgeted(3, 1, 3)]);
    assert_eq!(run(&mut s, 6), [Some(0), None, None, Some(0), None, None]);
}

#[test]
fn a_depleted_thread_that_blocks_and_wakes_stays_depleted_until_its_period() {
    let mut s = with(100, &[budgeted(9, 1, 10), params(0)]);
    assert_eq!(run(&mut s, 1), [Some(0)]);
    assert!(s.is_depleted(ThreadId(0)));
    s.block(ThreadId(0));
    s.make_ready(ThreadId(0));
    assert!(s.is_depleted(ThreadId(0)));
    assert_eq!(run(&mut s, 9), [Some(1); 9]);
    assert_eq!(s.schedule(0), Some(ThreadId(0)));
    // Blocked across a period boundary, it wakes with a full budget.
    s.block(ThreadId(0));
    run(&mut s, 25);
    s.make_ready(ThreadId(0));
    assert_eq!(s.remaining_budget(ThreadId(0)), Some(1));
    assert_eq!(s.schedule(0), Some(ThreadId(0)));
}

#[test]
fn reconfiguring_moves_a_thread_between_queues() {
    let mut s = with(100, &[params(2), params(2), params(2)]);
    s.configure(ThreadId(2), params(3));
    assert_eq!(s.schedule(0), Some(ThreadId(2)));
    // The running thread drops below a ready one: it is preempted at the next schedule.
    s.configure(ThreadId(2), params(1));
    assert_eq!(s.schedule(0), Some(ThreadId(0)));
    // Reconfiguring a depleted thread gives it a fresh budget.
    let mut s = with(100, &[budgeted(5, 1, 100)]);
    run(&mut s, 1);
    assert!(s.is_depleted(ThreadId(0)));
    s.configure(ThreadId(0), budgeted(5, 1, 100));
    assert_eq!(s.schedule(0), Some(ThreadId(0)));
    s.check().unwrap();
}

#[test]
fn random_operations_keep_the_invariants() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rng = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut s = Scheduler::<8>::new(3);
    for _ in 0..50_000 {
        let t = ThreadId((rng() % 8) as u16);
        match rng() % 7 {
            0 => s.make_ready(t),
            1 => s.block(t),
            2 => s.yield_current(0),
            3 | 4 => s.tick(|_| None),
            5 => {
                let mut r = fastrand::Rng::with_seed(rng());
                s.configure(t, draw(&mut r));
            }
            _ => {}
        }
        s.check().unwrap();
        if let Some(c) = s.schedule(0) {
            assert!(s.highest_ready(0).is_none_or(|p| !p.is_higher_than(s.effective_priority(c))));
        } else {
            assert_eq!(s.highest_ready(0), None);
        }
        s.check().unwrap();
    }
}

#[test]
fn a_tick_for_a_donor_is_the_donors() {
    // Thread 0 (priority 0) blocks on a VM exit; thread 1 (priority 9)
    // handles it for three ticks.
    let mut s = with(4, &[params(0), params(9), params(0)]);
    assert_eq!(s.schedule(0), Some(ThreadId(1)));
    s.block(ThreadId(1));
    assert_eq!(s.schedule(0), Some(ThreadId(0)));
    s.tick(|_| None);
    s.block(ThreadId(0));
    s.make_ready(ThreadId(1));
    assert_eq!(s.schedule(0), Some(ThreadId(1)));
    for _ in 0..2 {
        s.tick(|_| Some(ThreadId(0)));
        s.check().unwrap();
    }
    // The handler's slice is untouched, the donor has one tick left.
    assert_eq!(s.entries[1].slice_left, 4);
    assert_eq!(s.entries[0].slice_left, 1);
    // A runnable donor (not waiting on anyone) is no donor: the tick is the runner's.
    s.tick(|_| Some(ThreadId(2)));
    assert_eq!(s.entries[1].slice_left, 3);
}

#[test]
fn a_handled_thread_continues_its_turn_or_goes_to_the_tail_with_its_slice_spent() {
    let mut s = with(4, &[params(0), params(0), params(9)]);
    s.block(ThreadId(2));
    assert_eq!(s.schedule(0), Some(ThreadId(0)));
    s.block(ThreadId(0));
    // Handled at once: it runs again before thread 1, which waited.
    s.resume_turn(ThreadId(0));
    s.check().unwrap();
    assert_eq!(s.schedule(0), Some(ThreadId(0)));
    // Its handler spends the rest of its slice: then thread 1 is first.
    s.block(ThreadId(0));
    s.make_ready(ThreadId(2));
    assert_eq!(s.schedule(0), Some(ThreadId(2)));
    for _ in 0..4 {
        s.tick(|_| Some(ThreadId(0)));
    }
    s.block(ThreadId(2));
    s.resume_turn(ThreadId(0));
    s.check().unwrap();
    assert_eq!(s.schedule(0), Some(ThreadId(1)));
    assert_eq!(s.entries[0].slice_left, 4, "a fresh slice at the tail");
}

/// Threads 0 (`first`) and 1 (`second`) ready on CPU 1, thread 0 running
/// there; thread 2, their handler at priority 9, blocked (its home is CPU 0).
fn sharing_cpu_1_with_a_handler(first: SchedParams, second: SchedParams) -> Scheduler<8> {
    let mut s = with(4, &[first, second, params(9)]);
    for t in 0..3 {
        s.block(tid(t));
    }
    s.set_cpu(tid(0), 1);
    s.set_cpu(tid(1), 1);
    s.make_ready(tid(0));
    s.make_ready(tid(1));
    assert_eq!(s.schedule(1), Some(tid(0)));
    s
}

#[test]
fn a_handled_thread_takes_its_turn_back_from_an_equal_that_ran_meanwhile() {
    // Threads 0 and 1 share CPU 1; thread 0's handler (2) runs on CPU 0.
    let mut s = sharing_cpu_1_with_a_handler(params(3), params(3));
    s.tick(|_| None);
    // Thread 0 exits to its handler: CPU 1 does not wait, thread 1 runs.
    s.block(tid(0));
    assert_eq!(s.schedule(1), Some(tid(1)));
    s.tick(|_| None);
    s.take_kicks();
    // The reply: thread 0 continues its turn at once, thread 1 right after
    // it with the rest of its slice.
    s.resume_turn(tid(0));
    s.check().unwrap();
    assert_eq!(s.take_kicks(), 1 << 1);
    assert_eq!(s.schedule(1), Some(tid(0)));
    assert_eq!(s.entries[1].slice_left, 3, "thread 1 keeps what was left of its slice");
    for _ in 0..3 {
        s.tick(|_| None);
    }
    assert_eq!(s.schedule(1), Some(tid(1)), "after thread 0's slice, thread 1's turn goes on");
    // An equal of another home CPU, or a higher priority, is not displaced.
    s.block(tid(1));
    s.configure(tid(1), params(4));
    s.make_ready(tid(1));
    s.block(tid(0));
    assert_eq!(s.schedule(1), Some(tid(1)));
    s.resume_turn(tid(0));
    s.check().unwrap();
    assert_eq!(s.schedule(1), Some(tid(1)));
}

#[test]
fn a_handler_spends_the_donors_budget() {
    let mut s = with(4, &[budgeted(0, 2, 10), params(9)]);
    s.block(ThreadId(1));
    assert_eq!(s.schedule(0), Some(ThreadId(0)));
    s.block(ThreadId(0));
    s.make_ready(ThreadId(1));
    assert_eq!(s.schedule(0), Some(ThreadId(1)));
    s.tick(|_| Some(ThreadId(0)));
    s.tick(|_| Some(ThreadId(0)));
    assert_eq!(s.remaining_budget(ThreadId(0)), Some(0));
    s.block(ThreadId(1));
    s.resume_turn(ThreadId(0));
    s.check().unwrap();
    assert!(s.is_depleted(ThreadId(0)), "no budget: it waits for its next period");
    assert_eq!(s.schedule(0), None);
    for _ in 0..8 {
        s.tick(|_| None);
    }
    assert_eq!(s.schedule(0), Some(ThreadId(0)), "refilled at its next period");
}

// ---- CPUs ----

const fn tid(i: u16) -> ThreadId {
    ThreadId(i)
}

/// Who runs on each of `cpus` on each of the next `n` ticks (one list per CPU).
fn run_on(s: &mut Scheduler<8>, cpus: &[usize], n: usize) -> Vec<Vec<Option<u16>>> {
    let mut ran = vec![Vec::new(); cpus.len()];
    for _ in 0..n {
        for (i, &cpu) in cpus.iter().enumerate() {
            ran[i].push(s.schedule(cpu).map(|t| t.0));
        }
        s.tick(|_| None);
        s.check().unwrap();
    }
    ran
}

/// True if `schedule(cpu)` would change nothing: what runs there is the
/// thread `cpu` should run.
fn settled(s: &Scheduler<8>, cpu: usize) -> bool {
    match s.current(cpu) {
        Some(c) => {
            s.cpu_of(c) == cpu && s.highest_ready(cpu).is_none_or(|p| !p.is_higher_than(s.effective_priority(c)))
        }
        None => s.highest_ready(cpu).is_none(),
    }
}

#[test]
fn each_cpu_runs_its_own_threads_and_priorities_stay_on_their_cpu() {
    let mut s = with(4, &[params(1), params(20)]);
    s.set_cpu(tid(0), 1);
    s.check().unwrap();
    assert_eq!(s.schedule(0), Some(tid(1)));
    assert_eq!(s.schedule(1), Some(tid(0)));
    assert_eq!((s.running_on(tid(0)), s.running_on(tid(1))), (Some(1), Some(0)));
    // A higher priority woken on CPU 0 preempts there only.
    s.configure(tid(2), params(30));
    s.make_ready(tid(2));
    s.check().unwrap();
    assert_eq!(s.schedule(1), Some(tid(0)), "CPU 1 is not preempted");
    assert_eq!(s.schedule(0), Some(tid(2)));
    assert_eq!(s.running_on(tid(1)), None);
    // Priority 1 runs on CPU 1 while priority 20 waits on CPU 0.
    assert_eq!((s.highest_ready(0), s.highest_ready(1)), (Some(prio(20)), None));
    assert_eq!(run_on(&mut s, &[0, 1], 6), [[Some(2); 6], [Some(0); 6]]);
    s.block(tid(2));
    assert_eq!(s.schedule(0), Some(tid(1)));
    assert_eq!(s.current(1), Some(tid(0)));

    // Round robin on each CPU, independently.
    let mut s = with(2, &[params(4), params(4), params(4), params(4), params(4)]);
    s.set_cpu(tid(2), 1);
    s.set_cpu(tid(3), 1);
    s.set_cpu(tid(4), 1);
    let ran = run_on(&mut s, &[0, 1], 8);
    assert_eq!(ran[0], [0, 0, 1, 1, 0, 0, 1, 1].map(Some));
    assert_eq!(ran[1], [2, 2, 3, 3, 4, 4, 2, 2].map(Some));
    for cpu in 2..MAX_CPUS {
        assert_eq!(s.current(cpu), None);
    }
}

#[test]
fn moving_a_ready_thread_puts_it_at_the_tail_on_its_new_cpu() {
    let mut s = with(4, &[params(3), params(3), params(3), params(3)]);
    assert_eq!(s.schedule(0), Some(tid(0)));
    s.take_kicks();
    s.set_cpu(tid(3), 2);
    assert_eq!(s.take_kicks(), 1 << 2, "woken on an idle CPU");
    s.set_cpu(tid(1), 2);
    assert_eq!(s.take_kicks(), 1 << 2, "CPU 2 still runs nothing");
    s.check().unwrap();
    assert_eq!((s.cpu_of(tid(1)), s.cpu_of(tid(3)), s.cpu_of(tid(2))), (2, 2, 0));
    assert_eq!(s.highest_ready(2), Some(prio(3)));
    // CPU 0 lost thread 1: after thread 0 comes thread 2.
    s.yield_current(0);
    assert_eq!(s.schedule(0), Some(tid(2)));
    // On CPU 2, thread 1 queued behind thread 3.
    assert_eq!(s.schedule(2), Some(tid(3)));
    s.yield_current(2);
    assert_eq!(s.schedule(2), Some(tid(1)));
    s.check().unwrap();

    // A preempted thread keeps the rest of its slice when it moves.
    let mut s = with(4, &[params(3), params(3)]);
    s.configure(tid(2), params(9));
    assert_eq!(s.schedule(0), Some(tid(0)));
    s.tick(|_| None);
    s.make_ready(tid(2));
    assert_eq!(s.schedule(0), Some(tid(2)));
    s.set_cpu(tid(0), 1);
    assert_eq!(s.entries[0].slice_left, 3);
    assert_eq!(s.schedule(1), Some(tid(0)));
    s.check().unwrap();
    // Moving a thread to its home changes nothing.
    s.take_kicks();
    s.set_cpu(tid(1), 0);
    s.set_cpu(tid(0), 1);
    assert_eq!(s.take_kicks(), 0);
    assert_eq!((s.current(0), s.current(1), s.highest_ready(0)), (Some(tid(2)), Some(tid(0)), Some(prio(3))));
}

#[test]
fn moving_a_depleted_thread_moves_its_wait_for_the_next_period() {
    let mut s = with(100, &[budgeted(5, 1, 10), params(0)]);
    assert_eq!(run(&mut s, 1), [Some(0)]);
    assert!(s.is_depleted(tid(0)));
    s.take_kicks();
    s.set_cpu(tid(0), 3);
    s.check().unwrap();
    assert_eq!(s.take_kicks(), 0, "a depleted thread is nobody's to run yet");
    assert!(s.is_depleted(tid(0)) && s.has_depleted());
    assert_eq!(s.cpu_of(tid(0)), 3);
    assert_eq!(s.schedule(3), None);
    // Refilled at its next period, on CPU 3; CPU 0 keeps its thread.
    for now in 1..10 {
        assert_eq!(s.schedule(0), Some(tid(1)));
        assert_eq!(s.schedule(3), None, "tick {now}");
        s.tick(|_| None);
        s.check().unwrap();
    }
    assert_eq!(s.take_kicks(), 1 << 3);
    assert!(!s.has_depleted());
    assert_eq!(s.schedule(3), Some(tid(0)));
    assert_eq!(s.schedule(0), Some(tid(1)));
    assert_eq!(s.remaining_budget(tid(0)), Some(1));
}

#[test]
fn moving_a_thread_that_is_not_runnable_sets_where_it_will_run() {
    let mut s = Scheduler::<8>::new(4);
    s.configure(tid(0), params(5));
    assert_eq!(s.cpu_of(tid(0)), 0, "home is CPU 0 by default");
    s.set_cpu(tid(0), 1);
    assert_eq!(s.take_kicks(), 0);
    assert!(!s.is_runnable(tid(0)));
    assert_eq!((s.cpu_of(tid(0)), s.running_on(tid(0))), (1, None));
    s.make_ready(tid(0));
    s.check().unwrap();
    assert_eq!(s.take_kicks(), 1 << 1);
    assert_eq!((s.highest_ready(0), s.highest_ready(1)), (None, Some(prio(5))));
    assert_eq!(s.schedule(0), None);
    assert_eq!(s.schedule(1), Some(tid(0)));
    // A handled fault's thread resumes its turn at its (new) home too.
    s.block(tid(0));
    s.set_cpu(tid(0), MAX_CPUS - 1);
    s.take_kicks();
    s.resume_turn(tid(0));
    s.check().unwrap();
    assert_eq!(s.take_kicks(), 1 << (MAX_CPUS - 1));
    assert_eq!(s.schedule(1), None);
    assert_eq!(s.schedule(MAX_CPUS - 1), Some(tid(0)));
}

#[test]
fn a_running_thread_moves_when_its_old_cpu_next_schedules() {
    let mut s = with(4, &[params(3), params(3)]);
    s.configure(tid(2), params(9));
    s.set_cpu(tid(2), 2);
    s.make_ready(tid(2));
    assert_eq!(s.schedule(0), Some(tid(0)));
    assert_eq!(s.schedule(2), Some(tid(2)));
    s.take_kicks();

    s.set_cpu(tid(0), 2);
    s.check().unwrap();
    assert_eq!(s.take_kicks(), 1 << 0, "the CPU it runs on is told");
    assert_eq!((s.cpu_of(tid(0)), s.running_on(tid(0)), s.current(0)), (2, Some(0), Some(tid(0))));
    // Until CPU 0 schedules, it runs there, and ticks are its own.
    s.tick(|_| None);
    s.check().unwrap();
    assert_eq!(s.entries[0].slice_left, 3);
    assert_eq!(s.current(0), Some(tid(0)));
    assert_eq!(s.take_kicks(), 0);
    // CPU 0 schedules: thread 0 goes to CPU 2's queue with its slice, and CPU 2 is told.
    assert_eq!(s.schedule(0), Some(tid(1)));
    s.check().unwrap();
    assert_eq!(s.take_kicks(), 1 << 2);
    assert_eq!((s.running_on(tid(0)), s.entries[0].slice_left), (None, 3));
    assert_eq!(s.highest_ready(2), Some(prio(3)));
    assert_eq!(s.schedule(2), Some(tid(2)), "priority 9 keeps CPU 2");
    s.block(tid(2));
    assert_eq!(s.schedule(2), Some(tid(0)));
    assert_eq!(s.running_on(tid(0)), Some(2));

    // Moved back before its CPU scheduled: nothing moves.
    s.take_kicks();
    s.set_cpu(tid(0), 5);
    s.set_cpu(tid(0), 2);
    assert_eq!(s.take_kicks(), 1 << 2);
    assert_eq!(s.schedule(2), Some(tid(0)));
    assert_eq!(s.take_kicks(), 0);

    // Yielding, blocking or depleting while the move waits: it goes to its new home.
    s.set_cpu(tid(0), 4);
    s.yield_current(2);
    s.check().unwrap();
    assert_eq!((s.current(2), s.highest_ready(2), s.highest_ready(4)), (None, None, Some(prio(3))));
    assert_eq!(s.schedule(4), Some(tid(0)));
    s.set_cpu(tid(0), 5);
    s.block(tid(0));
    assert_eq!(s.current(4), None);
    s.make_ready(tid(0));
    assert_eq!(s.highest_ready(5), Some(prio(3)));
    s.configure(tid(0), budgeted(3, 1, 10));
    assert_eq!(s.schedule(5), Some(tid(0)));
    s.set_cpu(tid(0), 6);
    s.tick(|_| None);
    s.check().unwrap();
    assert!(s.is_depleted(tid(0)));
    assert_eq!(s.current(5), None);
    assert_eq!(s.cpu_of(tid(0)), 6);
}

#[test]
fn kicks_name_the_cpus_that_must_reschedule() {
    let mut s = Scheduler::<8>::new(2);
    for (t, p) in [(0, params(5)), (1, params(5)), (2, params(9)), (3, params(1))] {
        s.configure(tid(t), p);
        s.set_cpu(tid(t), 1);
    }
    assert_eq!(s.take_kicks(), 0, "nothing runnable moved");
    s.make_ready(tid(0));
    assert_eq!(s.take_kicks(), 1 << 1, "woken on an idle CPU");
    assert_eq!(s.take_kicks(), 0, "taking clears");
    assert_eq!(s.schedule(1), Some(tid(0)));
    assert_eq!(s.take_kicks(), 0);
    s.make_ready(tid(1));
    s.make_ready(tid(3));
    assert_eq!(s.take_kicks(), 0, "an equal or a lower priority does not preempt");
    s.make_ready(tid(2));
    assert_eq!(s.take_kicks(), 1 << 1, "a higher one does");
    assert_eq!(s.schedule(1), Some(tid(2)));
    assert_eq!(s.take_kicks(), 0, "preempting puts back without a kick");
    s.block(tid(2));
    assert_eq!(s.take_kicks(), 1 << 1, "its running thread blocked (from anywhere)");
    assert_eq!(s.current(1), None);
    assert_eq!(s.schedule(1), Some(tid(0)));
    // Lowered below a ready thread: its CPU is told.
    s.configure(tid(0), params(0));
    assert_eq!(s.take_kicks(), 1 << 1);
    assert_eq!(s.schedule(1), Some(tid(1)));
    s.configure(tid(1), params(4));
    assert_eq!(s.take_kicks(), 0, "still above every ready thread");
    // A slice ends with an equal waiting, on the tick: the CPU is told.
    s.configure(tid(0), params(4));
    s.take_kicks();
    s.tick(|_| None);
    assert_eq!(s.take_kicks(), 0, "one tick of two");
    s.tick(|_| None);
    assert_eq!(s.take_kicks(), 1 << 1);
    assert_eq!(s.current(1), None);
    assert_eq!(s.schedule(1), Some(tid(0)));
    s.check().unwrap();
    // Depleted on the tick, and refilled above what runs.
    s.configure(tid(0), budgeted(6, 1, 3));
    s.tick(|_| None);
    assert_eq!(s.take_kicks(), 1 << 1, "depleted");
    assert_eq!(s.schedule(1), Some(tid(1)));
    s.tick(|_| None);
    assert_eq!(s.take_kicks(), 0);
    s.tick(|_| None);
    assert_eq!(s.take_kicks(), 1 << 1, "refilled above priority 4");
    assert_eq!(s.schedule(1), Some(tid(0)));
    s.check().unwrap();
    // Kicks gather over several CPUs until taken.
    s.configure(tid(4), params(0));
    s.configure(tid(5), params(0));
    s.set_cpu(tid(4), 3);
    s.set_cpu(tid(5), MAX_CPUS - 1);
    s.make_ready(tid(4));
    s.make_ready(tid(5));
    s.block(tid(0));
    assert_eq!(s.take_kicks(), 1 << 1 | 1 << 3 | 1 << (MAX_CPUS - 1));
}

#[test]
fn a_tick_charges_every_cpus_running_thread() {
    let mut s = with(100, &[budgeted(5, 2, 10), budgeted(5, 3, 10), params(0), params(0)]);
    s.set_cpu(tid(1), 1);
    s.set_cpu(tid(3), 1);
    let ran = run_on(&mut s, &[0, 1], 12);
    let (c0, c1) = ([0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0], [1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 1, 1]);
    assert_eq!((&ran[0][..], &ran[1][..]), (&c0.map(Some)[..], &c1.map(Some)[..]));
    // Both budgets spent in the same period: both depleted at once.
    let mut s = with(100, &[budgeted(5, 2, 10), budgeted(5, 2, 10)]);
    s.set_cpu(tid(1), 1);
    assert_eq!((s.schedule(0), s.schedule(1)), (Some(tid(0)), Some(tid(1))));
    s.tick(|_| None);
    assert_eq!((s.remaining_budget(tid(0)), s.remaining_budget(tid(1))), (Some(1), Some(1)));
    s.take_kicks();
    s.tick(|_| None);
    s.check().unwrap();
    assert!(s.is_depleted(tid(0)) && s.is_depleted(tid(1)));
    assert_eq!(s.take_kicks(), 0b11);
    assert_eq!((s.current(0), s.current(1)), (None, None));
    assert_eq!(s.now(), 2, "one clock for every CPU");
}

#[test]
fn a_donor_pays_for_the_cpu_its_handler_runs_on_only() {
    // Thread 0 (CPU 1) blocks on a VM exit; thread 1 (CPU 1) handles it
    // while thread 2 computes on CPU 0.
    let mut s = with(4, &[params(0), params(9), params(0)]);
    s.set_cpu(tid(0), 1);
    s.set_cpu(tid(1), 1);
    s.block(tid(1));
    assert_eq!((s.schedule(0), s.schedule(1)), (Some(tid(2)), Some(tid(0))));
    s.tick(|_| None);
    s.block(tid(0));
    s.make_ready(tid(1));
    assert_eq!(s.schedule(1), Some(tid(1)));
    let donor_of = |c: ThreadId| (c == tid(1)).then_some(tid(0));
    for _ in 0..2 {
        s.tick(donor_of);
        s.check().unwrap();
    }
    assert_eq!((s.entries[0].slice_left, s.entries[1].slice_left), (1, 4), "the donor paid CPU 1's ticks");
    assert_eq!(s.entries[2].slice_left, 1, "CPU 0's thread paid its own three");
    // The donor resumes its turn on its own CPU.
    s.block(tid(1));
    s.resume_turn(tid(0));
    assert_eq!((s.schedule(0), s.schedule(1)), (Some(tid(2)), Some(tid(0))));
    s.check().unwrap();
}

#[test]
fn random_operations_on_several_cpus_keep_the_invariants_and_miss_no_kick() {
    const CPUS: [usize; 4] = [0, 1, 2, MAX_CPUS - 1];
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut s = Scheduler::<8>::new(3);
    // CPUs told to reschedule that have not yet: only they may run the wrong thread.
    let mut owed = 0u32;
    let mut moves = 0;
    for step in 0..100_000 {
        let t = tid(rng.u16(0..8));
        let cpu = CPUS[rng.usize(..CPUS.len())];
        let op = rng.u32(0..10);
        match op {
            0 => s.make_ready(t),
            1 => s.block(t),
            2 => s.yield_current(cpu),
            3 => s.tick(|c| (c.0 % 3 == 0).then_some(tid((c.0 + 1) % 8))),
            4 => s.configure(t, draw(&mut rng)),
            5 => {
                moves += u32::from(s.running_on(t).is_some_and(|on| on != cpu));
                s.set_cpu(t, cpu);
            }
            6 => s.resume_turn(t),
            _ => {
                let picked = s.schedule(cpu);
                owed &= !(1 << cpu);
                if let Some(p) = picked {
                    assert_eq!((s.cpu_of(p), s.running_on(p)), (cpu, Some(cpu)), "step {step}");
                }
                assert!(settled(&s, cpu), "step {step}: CPU {cpu} did not pick the highest");
            }
        }
        owed |= s.take_kicks();
        if let Err(e) = s.check() {
            panic!("step {step}: {e}");
        }
        for c in 0..MAX_CPUS {
            assert!(
                owed & 1 << c != 0 || settled(&s, c),
                "step {step} (op {op} on {t:?}, CPU {cpu}): CPU {c} needs a kick it did not get"
            );
        }
        assert_eq!(owed & !CPUS.iter().fold(0, |m, &c| m | 1 << c), 0, "step {step}: a kick for an unused CPU");
    }
    assert!(moves > 100, "only {moves} running threads moved");
}

#[test]
fn slices_keep_their_shares_when_the_threads_fault_and_are_handled() {
    // Threads 0..3 of slices 1, 2, 7; thread 3 the handler of their faults
    // (a VM exit's VID), higher. Each tick the running thread faults
    // first: the handler works on it for part of the tick, then it
    // continues its turn.
    let mut s = weighted_with_a_handler();
    let mut ran = [0u32; 3];
    for step in 0..3000 {
        let t = s.schedule(0).unwrap();
        let mut donor = None;
        if step % 2 == 0 {
            s.block(t);
            s.make_ready(ThreadId(3));
            assert_eq!(s.schedule(0), Some(ThreadId(3)));
            if step % 4 == 0 {
                // Handled within the tick.
                s.block(ThreadId(3));
                s.resume_turn(t);
                assert_eq!(s.schedule(0), Some(t));
            } else {
                // The tick falls while the handler works.
                donor = Some(t);
            }
        }
        ran[t.0 as usize] += 1;
        s.tick(|c| (c == ThreadId(3)).then_some(donor).flatten());
        if let Some(d) = donor {
            s.block(ThreadId(3));
            s.resume_turn(d);
        }
        s.check().unwrap();
    }
    assert_eq!(ran, [300, 600, 2100]);
}

/// Thread 0 runs two ticks, the second taken at its VM exit, then blocks
/// for its handler, thread 2, which runs.
fn two_ticks_then_an_exit_to_the_handler(s: &mut Scheduler<8>) {
    s.block(tid(2));
    assert_eq!(s.schedule(0), Some(tid(0)));
    s.tick(|_| None);
    s.tick(|_| None);
    s.block(tid(0));
    s.make_ready(tid(2));
    assert_eq!(s.schedule(0), Some(tid(2)));
}

#[test]
fn a_thread_whose_exit_carried_the_tick_that_ended_its_slice_goes_to_the_tail() {
    // The kernel takes the ticks due at a VM exit before it forwards the
    // exit: the tick ends thread 0's slice (tail, fresh slice), then thread
    // 0 blocks for its handler (2). The reply must not give it the head.
    let mut s = with(2, &[params(0), params(0), params(9)]);
    two_ticks_then_an_exit_to_the_handler(&mut s);
    s.block(tid(2));
    s.resume_turn(tid(0));
    s.check().unwrap();
    assert_eq!(s.schedule(0), Some(tid(1)), "thread 0 took a second turn ahead of thread 1");
    assert_eq!(s.entries[0].slice_left, 2, "thread 0 waits with its fresh slice");
    // Once it ran, a handled exit continues its turn again.
    s.tick(|_| None);
    s.tick(|_| None);
    assert_eq!(s.schedule(0), Some(tid(0)));
    s.block(tid(0));
    s.resume_turn(tid(0));
    assert_eq!(s.schedule(0), Some(tid(0)));
}

#[test]
fn a_thread_depleted_at_its_exit_and_refilled_meanwhile_goes_to_the_tail() {
    // Thread 0: budget 2 per 3 ticks, slice 5; thread 1 its equal; 2 the handler.
    let mut s = with(4, &[SchedParams { slice: 5, ..budgeted(0, 2, 3) }, params(0), params(9)]);
    // Depleted by the tick taken at its exit, which it then waits on.
    two_ticks_then_an_exit_to_the_handler(&mut s);
    // The handler works into the next period.
    s.tick(|c| (c == tid(2)).then_some(tid(0)));
    s.block(tid(2));
    s.resume_turn(tid(0));
    s.check().unwrap();
    assert_eq!(s.schedule(0), Some(tid(1)), "thread 1 waited all along");
}

#[test]
fn a_thread_moved_while_it_waits_for_its_handler_takes_no_turn_there() {
    // Threads 0 and 1, equals, run on CPUs 0 and 1; 2 is their handler.
    let running_on_0_and_1 = || {
        let mut s = with(4, &[params(0), params(0), params(9)]);
        for t in 0..3 {
            s.block(tid(t));
        }
        s.set_cpu(tid(1), 1);
        s.make_ready(tid(0));
        s.make_ready(tid(1));
        assert_eq!(s.schedule(0), Some(tid(0)));
        assert_eq!(s.schedule(1), Some(tid(1)));
        s
    };
    // Thread 0 moves to CPU 1 while its exit is handled, or while it runs
    // (then blocks there before CPU 0 hands it over).
    for moved_while_blocked in [true, false] {
        let mut s = running_on_0_and_1();
        if moved_while_blocked {
            s.block(tid(0));
            s.set_cpu(tid(0), 1);
        } else {
            s.set_cpu(tid(0), 1);
            s.check().unwrap();
            s.block(tid(0));
        }
        s.resume_turn(tid(0));
        s.check().unwrap();
        assert_eq!(s.schedule(1), Some(tid(1)), "thread 1 keeps CPU 1 (moved while blocked: {moved_while_blocked})");
    }
}

/// Threads 0..3 of slices 1, 2, 7, and their handler 3 (a VM exit's VID),
/// higher, blocked.
fn weighted_with_a_handler() -> Scheduler<8> {
    let weighted = |slice| SchedParams { slice, ..params(0) };
    let mut s = with(2, &[weighted(1), weighted(2), weighted(7), params(20)]);
    s.block(ThreadId(3));
    s
}

#[test]
fn slices_keep_their_shares_when_exits_carry_the_ticks() {
    // Threads 0..3 of slices 1, 2, 7 and their handler 3: every other tick
    // is taken at an exit, before the exit is forwarded (so a tick that
    // ends a slice has already sent the thread to the tail when it blocks).
    let mut s = weighted_with_a_handler();
    let mut ran = [0u32; 3];
    for step in 0..3000 {
        let t = s.schedule(0).unwrap();
        ran[t.0 as usize] += 1;
        s.tick(|_| None);
        if step % 2 == 0 {
            s.block(t);
            s.make_ready(ThreadId(3));
            assert_eq!(s.schedule(0), Some(ThreadId(3)));
            s.block(ThreadId(3));
            s.resume_turn(t);
        }
        s.check().unwrap();
    }
    assert_eq!(ran, [300, 600, 2100]);
}

#[test]
fn a_reserve_that_ends_while_the_handler_works_ends_the_turn() {
    // t0: base 0, reserve 2 ticks at 1 per period 20, unlimited budget; t1: base 0; both on CPU 1.
    // handler t2 (prio 9) on CPU 0.
    let mut s = sharing_cpu_1_with_a_handler(reserved(0, 0, 20, 2, 1, 0), params(0));
    assert_eq!(s.effective_priority(tid(0)), prio(1));
    // t0 exits; t1 runs on CPU 1; the handler on CPU 0 spends t0's reserve.
    s.block(tid(0));
    assert_eq!(s.schedule(1), Some(tid(1)));
    s.make_ready(tid(2));
    assert_eq!(s.schedule(0), Some(tid(2)));
    s.tick(|c| (c == tid(2)).then_some(tid(0)));
    s.tick(|c| (c == tid(2)).then_some(tid(0)));
    assert_eq!(s.remaining_reserve(tid(0)), 0);
    s.block(tid(2));
    s.take_kicks();
    s.resume_turn(tid(0));
    s.check().unwrap();
    // charge_current's rule would put t0 at the tail of priority 0 behind t1, fresh slice.
    assert_eq!(s.schedule(1), Some(tid(1)), "t0 took t1's CPU at its own priority after its reserve ended");
}

#[test]
fn the_handler_that_replies_is_not_displaced_by_the_thread_it_answered() {
    // VP A (0) and the VID (2) at the same priority on CPU 0; VP X (1) waits for the VID too.
    let mut s = with(10, &[params(1), params(1), params(1)]);
    s.block(tid(0));
    s.block(tid(1));
    assert_eq!(s.schedule(0), Some(tid(2)));
    s.take_kicks();
    s.resume_turn_by(tid(0), Some(tid(2))); // the VID's reply to A
    s.check().unwrap();
    // The VID goes on (A first when it blocks): it ran for A, not in its place.
    assert_eq!(s.schedule(0), Some(tid(2)), "the replying handler was preempted by the thread it answered");
}
