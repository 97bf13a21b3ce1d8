//! Classic parameters at run time: attaching VP contexts, `set_classic`'s
//! authority and validation, and what it re-applies.

use super::*;
use crate::classic::ONE_LP;
use scheduler_api::CONTROL_BADGE;

const VID: Badge = Badge(4);
const OTHER_VID: Badge = Badge(5);
/// The controller's capability: its task badge with the control bit.
const CONTROL: Badge = Badge(6 | CONTROL_BADGE);
/// The same task's plain `scheduler` capability.
const PLAIN: Badge = Badge(6);

fn attach(
    s: &mut Scheduler<Kernel>,
    by: Badge,
    context: u32,
    name: &str,
    vp: u32,
    lp: u32,
    weight: u32,
) -> Result<(), ServiceError> {
    s.offer(Some(CapSlot(context)));
    let r = s.attach_vp(by, name.as_bytes(), vp, lp, 0, ONE_LP, weight);
    if r.is_ok() {
        assert_eq!(s.unused(), None, "an attached context is kept");
    } else {
        assert_eq!(s.unused(), Some(CapSlot(context)), "a refused context is given back");
    }
    r
}

/// The supervisor says `vid` runs partitions `names`.
fn assign(s: &mut Scheduler<Kernel>, vid: Badge, names: &[&str]) {
    for name in names {
        s.register_partition(SUPERVISOR_BADGE, vid.0, name.as_bytes()).unwrap();
    }
}

/// The boot weights of tests/manifests/classic-runtime.toml, reversed from
/// TLFS 14.2.3's example, one VP each on LP 0.
fn reversed() -> Scheduler<Kernel> {
    let mut s = Scheduler::new(Kernel::default(), 1);
    assign(&mut s, VID, &["w100", "w200", "w700"]);
    attach(&mut s, VID, 20, "w100", 0, 0, 700).unwrap();
    attach(&mut s, VID, 21, "w200", 0, 0, 200).unwrap();
    attach(&mut s, VID, 22, "w700", 0, 0, 100).unwrap();
    s
}

fn slices(s: &Scheduler<Kernel>) -> Vec<(CapSlot, u64)> {
    s.control().classic.iter().map(|(slot, words)| (*slot, words[3])).collect()
}

#[test]
fn a_vp_attaches_with_its_context_and_valid_parameters_only() {
    let mut s = Scheduler::new(Kernel::default(), 2);
    // Only the supervisor says which VID runs a partition.
    assert_eq!(s.register_partition(VID, VID.0, b"p"), Err(ServiceError::PermissionDenied));
    assert_eq!(s.register_partition(SUPERVISOR_BADGE, VID.0, b""), Err(ServiceError::InvalidArgument));
    assert_eq!(attach(&mut s, VID, 20, "p", 0, 0, 100), Err(ServiceError::PermissionDenied), "not its partition");
    assign(&mut s, VID, &["p", "q", "r", "t"]);
    s.offer(None);
    assert_eq!(s.attach_vp(VID, b"p", 0, 0, 0, ONE_LP, 100), Err(ServiceError::InvalidArgument), "no context");
    assert_eq!(attach(&mut s, VID, 20, "p", 0, 2, 100), Err(ServiceError::InvalidArgument), "no CPU 2");
    assert_eq!(attach(&mut s, VID, 20, "p", 0, 0, 0), Err(ServiceError::InvalidArgument), "weight 0");
    assert_eq!(attach(&mut s, VID, 20, "p", 16, 0, 100), Err(ServiceError::InvalidArgument), "VP 16");
    assert_eq!(attach(&mut s, VID, 20, "", 0, 0, 100), Err(ServiceError::InvalidArgument));
    assert_eq!(attach(&mut s, VID, 20, &"p".repeat(33), 0, 0, 100), Err(ServiceError::InvalidArgument));
    s.offer(Some(CapSlot(20)));
    assert_eq!(s.attach_vp(VID, b"p", 0, 0, 0x8000, 0x4000, 100), Err(ServiceError::InvalidArgument), "reserve > cap");
    assert_eq!(s.unused(), Some(CapSlot(20)));
    assert_eq!(s.classic_vps(), 0);

    attach(&mut s, VID, 20, "p", 0, 0, 100).unwrap();
    assert_eq!(s.classic(PLAIN, b"p"), Ok((0, ONE_LP, 100)));
    // Another VID cannot take the partition over, nor attach one not its own.
    assert_eq!(attach(&mut s, OTHER_VID, 30, "p", 1, 1, 100), Err(ServiceError::PermissionDenied));
    assign(&mut s, OTHER_VID, &["o"]);
    assert_eq!(attach(&mut s, VID, 30, "o", 0, 1, 100), Err(ServiceError::PermissionDenied));
    // Its VID attaches it again (restarted): the old context is let go.
    attach(&mut s, VID, 21, "p", 0, 1, 300).unwrap();
    assert_eq!(s.control().released, [CapSlot(20)]);
    assert_eq!(s.classic(PLAIN, b"p"), Ok((0, ONE_LP, 300)));
    assert_eq!(s.classic_vps(), 1);
    // Alleged reserves must fit: two halves and more on one LP do not.
    s.offer(Some(CapSlot(22)));
    s.attach_vp(VID, b"q", 0, 1, 0x8000, ONE_LP, 100).unwrap();
    s.offer(Some(CapSlot(23)));
    s.attach_vp(VID, b"r", 0, 1, 0x8000, ONE_LP, 100).unwrap();
    s.offer(Some(CapSlot(24)));
    assert_eq!(s.attach_vp(VID, b"t", 0, 1, 1, ONE_LP, 100), Err(ServiceError::InvalidArgument));
    assert_eq!(s.classic(PLAIN, b"t"), Err(ServiceError::NotFound));
    assert_eq!(s.control().classic, [], "attaching configures nothing");
}

#[test]
fn only_the_control_capability_sets_classic_parameters() {
    let mut s = reversed();
    for badge in [PLAIN, VID, SUPERVISOR_BADGE, Badge(CONTROL_BADGE - 1)] {
        assert_eq!(s.set_classic(badge, b"w100", 0, ONE_LP, 100), Err(ServiceError::PermissionDenied));
    }
    assert_eq!(s.classic(PLAIN, b"w100"), Ok((0, ONE_LP, 700)));
    assert_eq!(s.control().classic, []);
    assert_eq!(s.set_classic(CONTROL, b"nobody", 0, ONE_LP, 100), Err(ServiceError::NotFound));
}

#[test]
fn new_weights_reslice_every_vp_on_the_lp() {
    let mut s = reversed();
    s.set_classic(CONTROL, b"w100", 0, ONE_LP, 100).unwrap();
    // 100/200/100 on the LP: 2.5 rounds to 3, 5, 3 (all three re-applied).
    assert_eq!(slices(&s), [(CapSlot(20), 3), (CapSlot(21), 5), (CapSlot(22), 3)]);
    s.set_classic(CONTROL, b"w700", 0, ONE_LP, 700).unwrap();
    s.control_mut().classic.clear();
    s.set_classic(CONTROL, b"w200", 0, ONE_LP, 200).unwrap();
    assert_eq!(slices(&s), [(CapSlot(20), 1), (CapSlot(21), 2), (CapSlot(22), 7)]);
    let applied: Vec<_> =
        s.control().applied.iter().rev().take(3).map(|(p, _, _, slice)| (p.clone(), *slice)).collect();
    assert_eq!(applied, [("w700".into(), 7), ("w200".into(), 2), ("w100".into(), 1)]);
    assert_eq!(s.classic(PLAIN, b"w700"), Ok((0, ONE_LP, 700)));
    // A cap and a reserve become the context's budget and reserve.
    s.control_mut().classic.clear();
    s.set_classic(CONTROL, b"w200", 0x8000, 0xc000, 200).unwrap();
    let w200 = s.control().classic.iter().find(|(slot, _)| *slot == CapSlot(21)).unwrap().1;
    assert_eq!(w200, [0, 15, 20, 2, 10, 1]);
}

#[test]
fn a_bad_request_changes_nothing() {
    let mut s = reversed();
    for (reserve, cap, weight) in [
        (0, ONE_LP, 0),
        (0, ONE_LP, 10_001),
        (0, 0, 100),
        (0, ONE_LP + 1, 100),
        (ONE_LP + 1, ONE_LP, 100),
        (0x8000, 0x4000, 100),
    ] {
        assert_eq!(s.set_classic(CONTROL, b"w100", reserve, cap, weight), Err(ServiceError::InvalidArgument));
    }
    // Reserves that do not fit the LP: 0.75 + 0.5 of it.
    s.set_classic(CONTROL, b"w200", 0xc000, ONE_LP, 200).unwrap();
    s.control_mut().classic.clear();
    assert_eq!(s.set_classic(CONTROL, b"w700", 0x8000, ONE_LP, 100), Err(ServiceError::InvalidArgument));
    assert_eq!(s.control().classic, []);
    assert_eq!(s.classic(PLAIN, b"w100"), Ok((0, ONE_LP, 700)));
    assert_eq!(s.classic(PLAIN, b"w700"), Ok((0, ONE_LP, 100)));
}

#[test]
fn only_the_lps_of_the_partition_are_reapplied() {
    let mut s = Scheduler::new(Kernel::default(), 2);
    assign(&mut s, VID, &["a", "b"]);
    assign(&mut s, OTHER_VID, &["c"]);
    attach(&mut s, VID, 20, "a", 0, 0, 100).unwrap();
    attach(&mut s, VID, 21, "a", 1, 1, 100).unwrap();
    attach(&mut s, VID, 22, "b", 0, 1, 100).unwrap();
    attach(&mut s, OTHER_VID, 23, "c", 0, 0, 100).unwrap();
    s.set_classic(CONTROL, b"b", 0, ONE_LP, 300).unwrap();
    // LP 1: a's VP 1 and b share it 1:3; LP 0 untouched.
    let mut got = slices(&s);
    got.sort();
    assert_eq!(got, [(CapSlot(21), 3), (CapSlot(22), 8)]);
    // c (another VID's) shares LP 0 with a's VP 0.
    s.control_mut().classic.clear();
    s.set_classic(CONTROL, b"c", 0, ONE_LP, 900).unwrap();
    let mut got = slices(&s);
    got.sort();
    assert_eq!(got, [(CapSlot(20), 1), (CapSlot(23), 9)]);
}

#[test]
fn a_kernel_refusal_is_failed() {
    let mut s = Scheduler::new(Kernel { refuse: Some(CapSlot(21)), ..Kernel::default() }, 1);
    assign(&mut s, VID, &["a", "b"]);
    attach(&mut s, VID, 20, "a", 0, 0, 100).unwrap();
    attach(&mut s, VID, 21, "b", 0, 0, 100).unwrap();
    assert_eq!(s.set_classic(CONTROL, b"a", 0, ONE_LP, 900), Err(ServiceError::Failed));
    assert_eq!(slices(&s), [(CapSlot(20), 9)]);
}

#[test]
fn on_the_wire_the_badge_is_the_authority() {
    let server = RefCell::new(reversed());
    let transport =
        Loopback::new(PLAIN, |badge, request: &Message| dispatch(&mut *server.borrow_mut(), badge, request));
    let sched = Client::new(&transport, CapSlot(3));
    assert_eq!(sched.set_classic(b"w100", 0, ONE_LP, 100), Ok(Err(ServiceError::PermissionDenied)));
    assert_eq!(sched.classic(b"w100"), Ok(Ok((0, ONE_LP, 700))));
    // No context came with it: a task cannot attach a VP.
    assert_eq!(sched.attach_vp(b"x", 0, 0, 0, ONE_LP, 100), Ok(Err(ServiceError::InvalidArgument)));
    transport.set_badge(CONTROL);
    assert_eq!(sched.set_classic(b"w100", 0, ONE_LP, 100), Ok(Ok(())));
    assert_eq!(sched.classic(b"w100"), Ok(Ok((0, ONE_LP, 100))));
    // A weight that does not fit a u32 is malformed before it is out of range.
    let reply = dispatch(
        &mut *server.borrow_mut(),
        CONTROL,
        &Message::from_words(scheduler_api::ops::set_classic, &[1, u64::from(b'a'), 0, 0x10000, 1 << 32]).unwrap(),
    );
    assert_eq!(reply.label(), tessera_idl::ProtocolError::MALFORMED_REQUEST.0);
}
