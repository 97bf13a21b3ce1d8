use super::*;
use std::vec::Vec;

fn prio(level: u64) -> Priority {
    Priority::new(level).unwrap()
}

fn params(level: u64) -> SchedParams {
    SchedParams { priority: prio(level), ..SchedParams::DEFAULT }
}

fn budgeted(level: u64, budget: u32, period: u32) -> SchedParams {
    SchedParams { priority: prio(level), budget, period }
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
            let t = s.schedule().map(|t| t.0);
            s.tick();
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
        budgeted(rng.u64(0..4), budget, period)
    };
    for _ in 0..20_000 {
        let (a, b, c) = (draw(), draw(), draw());
        assert!(Ceiling::of(a).permits(a), "reflexive: {a:?}");
        if Ceiling::of(a).permits(b) && Ceiling::of(b).permits(c) {
            assert!(Ceiling::of(a).permits(c), "transitive: {a:?} {b:?} {c:?}");
        }
        if Ceiling::of(a).permits(b) && Ceiling::of(b).permits(a) {
            assert_eq!(a, b, "antisymmetric");
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
}

#[test]
fn the_highest_priority_runs_first() {
    let mut s = with(10, &[params(1), params(30), params(7), params(30)]);
    assert_eq!(s.highest_ready(), Some(prio(30)));
    assert_eq!(s.schedule(), Some(ThreadId(1)));
    s.block(ThreadId(1));
    assert_eq!(s.schedule(), Some(ThreadId(3)));
    s.block(ThreadId(3));
    assert_eq!(s.schedule(), Some(ThreadId(2)));
    s.block(ThreadId(2));
    assert_eq!(s.schedule(), Some(ThreadId(0)));
    s.block(ThreadId(0));
    assert_eq!(s.schedule(), None);
    assert_eq!(s.highest_ready(), None);
    s.check().unwrap();
}

#[test]
fn a_woken_higher_priority_preempts_and_the_preempted_keeps_its_turn() {
    let mut s = with(4, &[params(5), params(5)]);
    s.configure(ThreadId(2), params(9));
    assert_eq!(s.schedule(), Some(ThreadId(0)));
    s.tick();
    s.make_ready(ThreadId(2));
    assert_eq!(s.schedule(), Some(ThreadId(2)));
    s.block(ThreadId(2));
    // Thread 0 went back to the head, ahead of 1, with 3 ticks of slice left.
    assert_eq!(run(&mut s, 5), [Some(0), Some(0), Some(0), Some(1), Some(1)]);
    // An equal priority never preempts.
    s.configure(ThreadId(3), params(5));
    s.make_ready(ThreadId(3));
    assert_eq!(s.schedule(), Some(ThreadId(1)));
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
    assert_eq!(s.schedule(), Some(ThreadId(0)));
    s.yield_current();
    assert_eq!(s.schedule(), Some(ThreadId(1)));
    s.yield_current();
    assert_eq!(s.schedule(), Some(ThreadId(2)));
    s.yield_current();
    assert_eq!(s.schedule(), Some(ThreadId(0)));
    // Yielding with nobody else ready runs the same thread again.
    let mut s = with(100, &[params(4)]);
    s.schedule();
    s.yield_current();
    assert_eq!(s.schedule(), Some(ThreadId(0)));
    s.check().unwrap();
}

#[test]
fn budgets_are_spent_and_replenished_at_period_boundaries() {
    // A high thread with 2 ticks per 5 over a low unlimited one.
    let mut s = with(100, &[budgeted(20, 2, 5), params(1)]);
    let order = run(&mut s, 15);
    let high = [Some(0), Some(0), Some(1), Some(1), Some(1)];
    assert_eq!(order, [high, high, high].concat());
    s.schedule();
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
    assert_eq!(s.schedule(), Some(ThreadId(0)));
    // Blocked across a period boundary, it wakes with a full budget.
    s.block(ThreadId(0));
    run(&mut s, 25);
    s.make_ready(ThreadId(0));
    assert_eq!(s.remaining_budget(ThreadId(0)), Some(1));
    assert_eq!(s.schedule(), Some(ThreadId(0)));
}

#[test]
fn reconfiguring_moves_a_thread_between_queues() {
    let mut s = with(100, &[params(2), params(2), params(2)]);
    s.configure(ThreadId(2), params(3));
    assert_eq!(s.schedule(), Some(ThreadId(2)));
    // The running thread drops below a ready one: it is preempted at the next schedule.
    s.configure(ThreadId(2), params(1));
    assert_eq!(s.schedule(), Some(ThreadId(0)));
    // Reconfiguring a depleted thread gives it a fresh budget.
    let mut s = with(100, &[budgeted(5, 1, 100)]);
    run(&mut s, 1);
    assert!(s.is_depleted(ThreadId(0)));
    s.configure(ThreadId(0), budgeted(5, 1, 100));
    assert_eq!(s.schedule(), Some(ThreadId(0)));
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
            2 => s.yield_current(),
            3 | 4 => s.tick(),
            5 => {
                let period = (rng() % 6) as u32;
                let budget = if period == 0 { 0 } else { 1 + (rng() % period as u64) as u32 };
                s.configure(t, budgeted(rng() % 4, budget, period));
            }
            _ => {}
        }
        s.check().unwrap();
        if let Some(c) = s.schedule() {
            assert!(s.highest_ready().is_none_or(|p| !p.is_higher_than(s.priority(c))));
        } else {
            assert_eq!(s.highest_ready(), None);
        }
        s.check().unwrap();
    }
}

#[test]
fn a_tick_for_a_donor_is_the_donors() {
    // Thread 0 (priority 0) blocks on a VM exit; thread 1 (priority 9)
    // handles it for three ticks.
    let mut s = with(4, &[params(0), params(9), params(0)]);
    assert_eq!(s.schedule(), Some(ThreadId(1)));
    s.block(ThreadId(1));
    assert_eq!(s.schedule(), Some(ThreadId(0)));
    s.tick();
    s.block(ThreadId(0));
    s.make_ready(ThreadId(1));
    assert_eq!(s.schedule(), Some(ThreadId(1)));
    for _ in 0..2 {
        s.tick_for(Some(ThreadId(0)));
        s.check().unwrap();
    }
    // The handler's slice is untouched, the donor has one tick left.
    assert_eq!(s.entries[1].slice_left, 4);
    assert_eq!(s.entries[0].slice_left, 1);
    // A runnable donor (not waiting on anyone) is no donor: the tick is the runner's.
    s.tick_for(Some(ThreadId(2)));
    assert_eq!(s.entries[1].slice_left, 3);
}

#[test]
fn a_handled_thread_continues_its_turn_or_goes_to_the_tail_with_its_slice_spent() {
    let mut s = with(4, &[params(0), params(0), params(9)]);
    s.block(ThreadId(2));
    assert_eq!(s.schedule(), Some(ThreadId(0)));
    s.block(ThreadId(0));
    // Handled at once: it runs again before thread 1, which waited.
    s.resume_turn(ThreadId(0));
    s.check().unwrap();
    assert_eq!(s.schedule(), Some(ThreadId(0)));
    // Its handler spends the rest of its slice: then thread 1 is first.
    s.block(ThreadId(0));
    s.make_ready(ThreadId(2));
    assert_eq!(s.schedule(), Some(ThreadId(2)));
    for _ in 0..4 {
        s.tick_for(Some(ThreadId(0)));
    }
    s.block(ThreadId(2));
    s.resume_turn(ThreadId(0));
    s.check().unwrap();
    assert_eq!(s.schedule(), Some(ThreadId(1)));
    assert_eq!(s.entries[0].slice_left, 4, "a fresh slice at the tail");
}

#[test]
fn a_handler_spends_the_donors_budget() {
    let mut s = with(4, &[budgeted(0, 2, 10), params(9)]);
    s.block(ThreadId(1));
    assert_eq!(s.schedule(), Some(ThreadId(0)));
    s.block(ThreadId(0));
    s.make_ready(ThreadId(1));
    assert_eq!(s.schedule(), Some(ThreadId(1)));
    s.tick_for(Some(ThreadId(0)));
    s.tick_for(Some(ThreadId(0)));
    assert_eq!(s.remaining_budget(ThreadId(0)), Some(0));
    s.block(ThreadId(1));
    s.resume_turn(ThreadId(0));
    s.check().unwrap();
    assert!(s.is_depleted(ThreadId(0)), "no budget: it waits for its next period");
    assert_eq!(s.schedule(), None);
    for _ in 0..8 {
        s.tick();
    }
    assert_eq!(s.schedule(), Some(ThreadId(0)), "refilled at its next period");
}
