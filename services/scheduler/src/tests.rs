use super::*;
use scheduler_api::{Client, dispatch};
use std::cell::RefCell;
use tessera_idl::testing::Loopback;
use tessera_idl::{CapSlot, Message};

/// Records SCHED_CONFIGURE invocations; refuses those on `refuse`.
#[derive(Default)]
struct Kernel {
    calls: Vec<(CapSlot, u8, u64, u64)>,
    refuse: Option<CapSlot>,
    classic: Vec<(CapSlot, [u64; 6])>,
    released: Vec<CapSlot>,
    applied: Vec<(String, u32, u32, u32)>,
}

impl SchedControl for Kernel {
    fn configure(&mut self, context: CapSlot, priority: u8, budget: u64, period: u64) -> Result<(), ErrorCode> {
        if self.refuse == Some(context) {
            return Err(ErrorCode::NO_RIGHTS);
        }
        self.calls.push((context, priority, budget, period));
        Ok(())
    }

    fn configure_classic(&mut self, context: CapSlot, words: &[u64; 6]) -> Result<(), ErrorCode> {
        if self.refuse == Some(context) {
            return Err(ErrorCode::NO_RIGHTS);
        }
        self.classic.push((context, *words));
        Ok(())
    }

    fn release(&mut self, slot: CapSlot) {
        self.released.push(slot);
    }

    fn applied(&mut self, partition: &[u8], vp: u32, lp: u32, params: &classic::ScParams) {
        self.applied.push((String::from_utf8(partition.to_vec()).unwrap(), vp, lp, params.slice));
    }
}

fn scheduler() -> Scheduler<Kernel> {
    let mut s = Scheduler::new(Kernel::default(), 1);
    s.add_context("console", CapSlot(10)).unwrap();
    s.add_context("hostile", CapSlot(11)).unwrap();
    s.add_context("vid", CapSlot(12)).unwrap();
    s
}

#[test]
fn the_policy_configures_the_contexts_it_names_and_only_those() {
    let mut s = scheduler();
    let report = s.apply_policy(POLICY);
    assert_eq!(report, PolicyReport { applied: 1, failed: 0, absent: 1 });
    assert_eq!(s.control().calls, [(CapSlot(11), 1, 2, 10)]);
    assert_eq!(s.priority_of("hostile"), Some(1));
    assert_eq!(s.priority_of("console"), None, "services keep their manifest priority");
}

#[test]
fn a_refused_configuration_is_reported_not_fatal() {
    let mut s = Scheduler::new(Kernel { refuse: Some(CapSlot(11)), ..Kernel::default() }, 1);
    s.add_context("hostile", CapSlot(11)).unwrap();
    s.add_context("crasher", CapSlot(12)).unwrap();
    assert_eq!(s.apply_policy(POLICY), PolicyReport { applied: 1, failed: 1, absent: 0 });
    assert_eq!(s.priority_of("hostile"), None);
    assert_eq!(s.priority_of("crasher"), Some(1));
}

#[test]
fn contexts_are_bounded_and_named_once() {
    let mut s = Scheduler::new(Kernel::default(), 1);
    assert_eq!(s.add_context("", CapSlot(1)), Err(ServiceError::InvalidArgument));
    assert_eq!(s.add_context(&"x".repeat(NAME_LEN + 1), CapSlot(1)), Err(ServiceError::InvalidArgument));
    for i in 0..MAX_CONTEXTS {
        s.add_context(&format!("task{i}"), CapSlot(i as u32 + 1)).unwrap();
    }
    assert_eq!(s.add_context("task0", CapSlot(99)), Err(ServiceError::InvalidArgument));
    assert_eq!(s.add_context("one-more", CapSlot(99)), Err(ServiceError::NoResources));
    assert_eq!(s.contexts(), MAX_CONTEXTS);
}

#[test]
fn only_the_supervisor_registers_tasks_and_sets_priorities() {
    let server = RefCell::new(scheduler());
    let transport =
        Loopback::new(Badge(7), |badge, request: &Message| dispatch(&mut *server.borrow_mut(), badge, request));
    let sched = Client::new(&transport, CapSlot(3));

    // A task cannot bind badges or raise its own priority.
    assert_eq!(sched.register_task(7, b"console"), Ok(Err(ServiceError::PermissionDenied)));
    assert_eq!(sched.set_priority(7, 31), Ok(Err(ServiceError::PermissionDenied)));

    transport.set_badge(SUPERVISOR_BADGE);
    assert_eq!(sched.register_task(7, b"nobody"), Ok(Err(ServiceError::NotFound)));
    assert_eq!(sched.register_task(7, b"vid"), Ok(Ok(())));
    assert_eq!(sched.priority(7), Ok(Err(ServiceError::NotFound)), "nothing applied yet");
    assert_eq!(sched.set_priority(7, 32), Ok(Err(ServiceError::InvalidArgument)));
    assert_eq!(sched.set_priority(7, 255), Ok(Err(ServiceError::InvalidArgument)));
    assert_eq!(sched.set_priority(8, 5), Ok(Err(ServiceError::NotFound)));
    assert_eq!(sched.set_priority(7, 0), Ok(Ok(())));
    assert_eq!(sched.set_priority(7, 31), Ok(Ok(())));
    assert_eq!(sched.priority(7), Ok(Ok(31)));
    assert_eq!(server.borrow().control().calls, [(CapSlot(12), 0, 0, 0), (CapSlot(12), 31, 0, 0)]);

    // Anyone may read a priority.
    transport.set_badge(Badge(7));
    assert_eq!(sched.priority(7), Ok(Ok(31)));
    // A priority that does not fit a u8 is malformed before it is out of range.
    let reply = dispatch(
        &mut *server.borrow_mut(),
        SUPERVISOR_BADGE,
        &Message::from_words(scheduler_api::ops::set_priority, &[7, 256]).unwrap(),
    );
    assert_eq!(reply.label(), tessera_idl::ProtocolError::MALFORMED_REQUEST.0);
}

#[test]
fn priority_changes_keep_the_budget_and_badges_can_move() {
    let mut s = scheduler();
    s.apply_policy(POLICY);
    s.register_task(SUPERVISOR_BADGE, 20, b"hostile").unwrap();
    s.set_priority(SUPERVISOR_BADGE, 20, 3).unwrap();
    assert_eq!(s.control().calls.last(), Some(&(CapSlot(11), 3, 2, 10)));

    // The task restarted with a new badge: the old one no longer names it.
    s.register_task(SUPERVISOR_BADGE, 21, b"hostile").unwrap();
    assert_eq!(s.set_priority(SUPERVISOR_BADGE, 20, 4), Err(ServiceError::NotFound));
    // A badge re-registered to another task stops naming the first.
    s.register_task(SUPERVISOR_BADGE, 21, b"console").unwrap();
    assert_eq!(Server::priority(&mut s, Badge(5), 21), Err(ServiceError::NotFound));
    assert_eq!(s.set_priority(SUPERVISOR_BADGE, 21, 6), Ok(()));
    assert_eq!(s.control().calls.last(), Some(&(CapSlot(10), 6, 0, 0)));
}

#[test]
fn a_kernel_refusal_is_reported_as_failed_and_changes_nothing() {
    let mut s = Scheduler::new(Kernel { refuse: Some(CapSlot(11)), ..Kernel::default() }, 1);
    s.add_context("hostile", CapSlot(11)).unwrap();
    s.register_task(SUPERVISOR_BADGE, 20, b"hostile").unwrap();
    assert_eq!(s.set_priority(SUPERVISOR_BADGE, 20, 3), Err(ServiceError::Failed));
    assert_eq!(s.priority_of("hostile"), None);
}

mod runtime_classic;
