use super::*;

fn compiled(toml: &str) -> Vec<u8> {
    let manifest = tessera_manifest::parse(toml, "test.toml").unwrap_or_else(|e| panic!("{e}"));
    tessera_manifest::compile(&manifest).unwrap_or_else(|e| panic!("{e}"))
}

/// [`compiled`] for a manifest whose partitions boot `image = "kernel"`: the
/// file is made in a directory of its own (`tag` names it) for the run.
fn compiled_with_guest(toml: &str, tag: &str) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("supervisor-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("kernel"), b"kernel").unwrap();
    let manifest = tessera_manifest::parse_in(toml, "test.toml", &dir).unwrap_or_else(|e| panic!("{e}"));
    let bytes = tessera_manifest::compile(&manifest).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}

const SYSTEM: &str = r#"
[system]
name = "test"

[tasks.supervisor]
supervisor = true
priority = 31
memory = "64KiB"
stack = "16KiB"

[tasks.console]
priority = 30
memory = "64KiB"
stack = "16KiB"
serves = ["console"]
io_ports = [{ base = 0x3f8, count = 8 }, { base = 0x2f8, count = 8 }]

[tasks.scheduler]
priority = 29
memory = "64KiB"
stack = "16KiB"
serves = ["scheduler"]
uses = ["console"]

[tasks.vid]
priority = 20
memory = "64KiB"
stack = "16KiB"
uses = ["console", "scheduler"]

[tasks.timer]
priority = 10
memory = "64KiB"
stack = "16KiB"
io_ports = [{ base = 0x40, count = 4 }]
interrupts = [2, 8]
"#;

fn names(grants: &[Grant]) -> Vec<&str> {
    grants.iter().map(|g| g.name.as_str()).collect()
}

#[test]
fn tasks_get_their_endpoints_ports_and_nothing_else() {
    let bytes = compiled(SYSTEM);
    let m = Manifest::parse(&bytes).unwrap();
    let console = m.tasks.iter().position(|t| t.name == "console").unwrap() as u8;
    let g = grants(&m, TaskIndex(console)).unwrap();
    assert_eq!(names(&g), ["console", "io0", "io1"]);
    assert!(matches!(g[0].source, Source::Serve(_)));
    assert_eq!(g[1].source, Source::Io(IoPortRange { base: 0x3f8, count: 8 }));
    let vid = m.tasks.iter().position(|t| t.name == "vid").unwrap() as u8;
    let g = grants(&m, TaskIndex(vid)).unwrap();
    assert_eq!(names(&g), ["console", "scheduler"]);
    assert!(g.iter().all(|g| matches!(g.source, Source::Use(_))));
    assert_eq!(grants(&m, TaskIndex(0)).unwrap().len(), 0, "the supervisor keeps the originals itself");
    assert_eq!(grants(&m, TaskIndex(9)), Err(PlanError::NoSuchTask));
}

#[test]
fn interrupt_lines_come_with_their_notification() {
    let bytes = compiled(SYSTEM);
    let m = Manifest::parse(&bytes).unwrap();
    let index = m.tasks.iter().position(|t| t.name == "timer").unwrap() as u8;
    let g = grants(&m, TaskIndex(index)).unwrap();
    assert_eq!(names(&g), ["io0", "irq", "irq2", "irq8"]);
    assert_eq!(g[1].source, Source::IrqNotification);
    assert_eq!(g[2].source, Source::Irq { gsi: 2, bit: 0 });
    assert_eq!(g[3].source, Source::Irq { gsi: 8, bit: 1 });
}

#[test]
fn the_scheduler_gets_every_other_tasks_scheduling_context() {
    let bytes = compiled(SYSTEM);
    let m = Manifest::parse(&bytes).unwrap();
    let index = m.tasks.iter().position(|t| t.name == "scheduler").unwrap() as u8;
    let g = grants(&m, TaskIndex(index)).unwrap();
    assert_eq!(names(&g), ["scheduler", "console", "sched:console", "sched:scheduler", "sched:vid", "sched:timer"]);
}

#[test]
fn badges_name_tasks_and_nothing_else() {
    let bytes = compiled(SYSTEM);
    let m = Manifest::parse(&bytes).unwrap();
    assert_eq!(badge_of(TaskIndex(0)), 1);
    for i in 0..m.tasks.len() as u8 {
        assert_eq!(task_of(badge_of(TaskIndex(i)), &m), Some(TaskIndex(i)));
    }
    assert_eq!(task_of(0, &m), None);
    assert_eq!(task_of(m.tasks.len() as u64 + 1, &m), None);
    assert_eq!(task_of(u64::MAX, &m), None);
}

#[test]
fn slots_are_reused_and_bounded() {
    let mut slots: Slots<3> = Slots::new(40);
    let a = slots.take().unwrap();
    let b = slots.take().unwrap();
    assert_eq!((a.0, b.0), (40, 41));
    slots.give_back(a);
    assert_eq!(slots.take().unwrap().0, 40);
    assert_eq!(slots.take().unwrap().0, 42);
    assert_eq!(slots.take(), None);
    slots.give_back(abi::CapSlot(7));
    slots.give_back(abi::CapSlot(999));
    assert_eq!(slots.free(), 0);
}

#[test]
fn backoff_doubles_then_gives_up() {
    let mut b = Backoff::default();
    let delays: Vec<_> = (0..Backoff::MAX_RESTARTS).map(|_| b.on_crash(Restart::Always, 1)).collect();
    assert_eq!(delays, [10, 20, 40, 80, 160].map(Decision::RestartAfter).to_vec());
    assert_eq!(b.on_crash(Restart::Always, 1), Decision::GiveUp { restarts: 5 });
    assert_eq!(Backoff::default().on_crash(Restart::Never, 1), Decision::Never);
}

#[test]
fn a_healthy_run_starts_the_backoff_afresh() {
    let mut b = Backoff::default();
    // Crashes at start twice (10, 20), then a run of four times the last
    // delay (80 ticks) is healthy: the next restart waits 10 again.
    assert_eq!(b.on_crash(Restart::Always, 1), Decision::RestartAfter(10));
    assert_eq!(b.on_crash(Restart::Always, 1), Decision::RestartAfter(20));
    assert_eq!(b.on_crash(Restart::Always, 79), Decision::RestartAfter(40), "79 ticks: not yet healthy");
    assert_eq!(b.on_crash(Restart::Always, 4 * 40), Decision::RestartAfter(10), "healthy");
    assert_eq!((b.restarts(), b.total()), (1, 4));
    // Killed every 100 ticks, 100 times: always restarted, never given up.
    let mut k = Backoff::default();
    for _ in 0..100 {
        assert_eq!(k.on_crash(Restart::Always, 100), Decision::RestartAfter(10));
    }
    assert_eq!(k.total(), 100);
    assert_eq!(Backoff::healthy_after(0), Backoff::HEALTHY_MIN);
    assert_eq!(Backoff::healthy_after(5), 4 * 160);
}

#[test]
fn the_partition_manager_gets_the_partitions_memory_and_its_vid_may_receive_capabilities() {
    let text = format!(
        "{SYSTEM}
[tasks.partition-manager]
priority = 25
memory = \"64KiB\"
stack = \"16KiB\"
serves = [\"partition-manager\"]

[tasks.guests]
binary = \"vid\"
priority = 15
memory = \"64KiB\"
stack = \"16KiB\"
uses = [\"console\", \"partition-manager\"]
untyped = \"1MiB\"

[partitions.linux]
image = \"kernel\"
memory = \"8MiB\"
vid = \"guests\"
"
    );
    let bytes = compiled_with_guest(&text, "pm");
    let m = Manifest::parse(&bytes).unwrap();
    let index = |name: &str| TaskIndex(m.tasks.iter().position(|t| t.name == name).unwrap() as u8);
    let (pm, guests, vid) = (index("partition-manager"), index("guests"), index("vid"));
    assert_eq!(names(&grants(&m, pm).unwrap()), ["partition-manager", "untyped", "self", "bootfs"]);
    // 8 MiB of guest RAM, 1 MiB, and its second-level tables (4 per 2 MiB,
    // 1 per GiB); its journal. The partition's objects: the partition, its
    // VP, its RAM, ROM and legacy region; the journal's memory.
    let objects = sysimage::objects::partition(1).checked_add(&sysimage::objects::JOURNAL).unwrap();
    let pages = (9 << 20) / 4096 + 4 + 1 + sysimage::manifest::JOURNAL_PAGES;
    assert_eq!(grants(&m, pm).unwrap()[1].source, Source::Untyped { pages, objects });
    // A VID's own: its exit endpoint and notification, a scheduling
    // context for the one VP of its partition, and the memory beneath the
    // partition's overlay pages.
    let vid_objects = sysimage::objects::default_objects(true)
        .checked_add(&sysimage::objects::vp_contexts(1))
        .and_then(|e| e.checked_add(&sysimage::objects::overlay_memory(1)))
        .unwrap();
    // Its 1 MiB and the pages beneath its partition's overlays.
    let pages = 256 + sysimage::objects::overlay_pages(1) as u64;
    let guests_pool = Source::Untyped { pages, objects: vid_objects };
    assert_eq!(grants(&m, guests).unwrap()[2].source, guests_pool);
    assert_eq!(names(&grants(&m, guests).unwrap()), ["console", "partition-manager", "untyped", "self", "bootfs"]);
    let endpoint = |name: &str| EndpointIndex(m.endpoints.iter().position(|e| e.name == name).unwrap() as u8);
    let (manager, console) = (endpoint("partition-manager"), endpoint("console"));
    // The manager may mint send capabilities to itself (VP monitors) ...
    assert_eq!(endpoint_rights(&m, pm, manager, true), Rights::new().with_receive(true).with_send(true));
    assert_eq!(endpoint_rights(&m, index("console"), console, true), Rights::new().with_receive(true));
    // ... and only a VID's capability to it carries grant.
    assert_eq!(endpoint_rights(&m, guests, manager, false), Rights::new().with_send(true).with_grant(true));
    assert_eq!(endpoint_rights(&m, guests, console, false), Rights::new().with_send(true));
    assert_eq!(endpoint_rights(&m, vid, console, false), Rights::new().with_send(true));
}

#[test]
fn sched_control_is_the_scheduler_endpoint_with_the_control_bit_and_a_vid_may_hand_it_contexts() {
    let text = SYSTEM.replace("serves = [\"scheduler\"]", "serves = [\"scheduler\", \"sched-control\"]")
        + "
[tasks.partition-manager]
priority = 25
memory = \"64KiB\"
stack = \"16KiB\"
serves = [\"partition-manager\"]

[tasks.guests]
binary = \"vid\"
priority = 15
memory = \"64KiB\"
stack = \"16KiB\"
uses = [\"console\", \"partition-manager\", \"scheduler\"]
untyped = \"1MiB\"

[tasks.tuner]
priority = 10
memory = \"64KiB\"
stack = \"16KiB\"
uses = [\"scheduler\", \"sched-control\"]

[scheduler]
policy = \"classic\"

[partitions.p]
image = \"kernel\"
memory = \"8MiB\"
vid = \"guests\"
";
    let bytes = compiled_with_guest(&text, "sched");
    let m = Manifest::parse(&bytes).unwrap();
    let index = |name: &str| TaskIndex(m.tasks.iter().position(|t| t.name == name).unwrap() as u8);
    let endpoint = |name: &str| EndpointIndex(m.endpoints.iter().position(|e| e.name == name).unwrap() as u8);
    let (tuner, vid) = (index("tuner"), index("guests"));
    let (scheduler, control) = (endpoint("scheduler"), endpoint("sched-control"));
    // The tuner's two capabilities name one endpoint; only one has the bit.
    assert_eq!(use_source(&m, tuner, scheduler), (scheduler, badge_of(tuner)));
    assert_eq!(use_source(&m, tuner, control), (scheduler, badge_of(tuner) | scheduler_api::CONTROL_BADGE));
    assert_eq!(use_source(&m, vid, scheduler), (scheduler, badge_of(vid)));
    assert_eq!(badge_of(tuner) & scheduler_api::CONTROL_BADGE, 0, "no task badge has the bit");
    assert_eq!(names(&grants(&m, tuner).unwrap()), ["scheduler", "sched-control"]);
    // The VID's capability to the scheduler carries grant, the tuner's not.
    assert_eq!(endpoint_rights(&m, vid, scheduler, false), Rights::new().with_send(true).with_grant(true));
    assert_eq!(endpoint_rights(&m, tuner, scheduler, false), Rights::new().with_send(true));
    // Other endpoints are what they name.
    let console = endpoint("console");
    assert_eq!(use_source(&m, vid, console), (console, badge_of(vid)));
}

#[test]
fn the_broker_signals_and_the_port_partitions_vid_waits_on_one_notification() {
    // Two VIDs: "guests" runs alpha, "others" runs beta and gamma; alpha
    // posts to beta and to itself, beta to nobody. Only VIDs of a port's
    // partition are notified.
    let vid = |name: &str, priority: u8| {
        format!(
            "[tasks.{name}]\nbinary = \"vid\"\npriority = {priority}\nmemory = \"64KiB\"\nstack = \"16KiB\"\n\
             uses = [\"console\", \"partition-manager\", \"broker\"]\nuntyped = \"1MiB\"\n"
        )
    };
    // With the SynIC, which a connection's ends need.
    let partition = |name: &str, vid: &str| {
        format!(
            "[partitions.{name}]\nimage = \"kernel\"\nmemory = \"2MiB\"\nvid = \"{vid}\"\n\
             enlightenments = {{ profile = \"hyperv\", synic = true }}\n"
        )
    };
    let connection = |from: &str, to: &str, id: u32| {
        format!(
            "[[connections]]\nfrom = \"{from}\"\nto = \"{to}\"\ntype = \"message\"\nconnection_id = {id}\nport_id = {id}\nsint = 2\n"
        )
    };
    let text = format!(
        "{SYSTEM}
[tasks.partition-manager]
priority = 25
memory = \"64KiB\"
stack = \"16KiB\"
serves = [\"partition-manager\"]

[tasks.broker]
priority = 24
memory = \"64KiB\"
stack = \"16KiB\"
serves = [\"broker\"]

{}{}{}{}{}{}{}{}",
        vid("guests", 15),
        vid("others", 14),
        vid("idle", 13),
        partition("alpha", "guests"),
        partition("beta", "others"),
        partition("gamma", "idle"),
        connection("alpha", "beta", 1),
        connection("alpha", "alpha", 2),
    );
    let bytes = compiled_with_guest(&text, "broker");
    let m = Manifest::parse(&bytes).unwrap();
    let index = |name: &str| TaskIndex(m.tasks.iter().position(|t| t.name == name).unwrap() as u8);
    let (broker, guests, others, idle) = (index("broker"), index("guests"), index("others"), index("idle"));
    assert_eq!(m.notified_tasks().collect::<Vec<_>>(), [guests, others]);
    let broker_grants = grants(&m, broker).unwrap();
    let notify = |vid: TaskIndex| format!("{}{}", broker_api::NOTIFY_PREFIX, badge_of(vid));
    assert_eq!(names(&broker_grants), ["broker".to_string(), notify(guests), notify(others)]);
    assert_eq!(broker_grants[1].source, Source::Deliveries { vid: guests, signal: true });
    assert_eq!(broker_grants[2].source, Source::Deliveries { vid: others, signal: true });
    for vid in [guests, others] {
        let g = grants(&m, vid).unwrap();
        let last = g.last().unwrap();
        assert_eq!(
            (last.name.as_str(), last.source),
            (broker_api::VID_NOTIFICATION, Source::Deliveries { vid, signal: false })
        );
    }
    // A VID whose partitions have no port gets none, and no other task does.
    assert!(grants(&m, idle).unwrap().iter().all(|g| !matches!(g.source, Source::Deliveries { .. })));
    assert!(grants(&m, index("console")).unwrap().iter().all(|g| !matches!(g.source, Source::Deliveries { .. })));
}

/// A task party (the VMBus host's arrangement): the broker may signal its
/// notification, which the task holds as `broker-party:<party>`, and the
/// broker names it by that party.
#[test]
fn a_task_party_waits_on_a_notification_that_names_its_party() {
    let text = format!(
        "{SYSTEM}
[tasks.partition-manager]
priority = 25
memory = \"64KiB\"
stack = \"16KiB\"
serves = [\"partition-manager\"]

[tasks.broker]
priority = 24
memory = \"64KiB\"
stack = \"16KiB\"
serves = [\"broker\"]

[tasks.guests]
priority = 15
memory = \"64KiB\"
stack = \"16KiB\"
uses = [\"console\", \"partition-manager\", \"broker\"]
untyped = \"1MiB\"

[tasks.host]
priority = 14
memory = \"64KiB\"
stack = \"16KiB\"
uses = [\"broker\"]

[partitions.guest]
image = \"kernel\"
memory = \"2MiB\"
vid = \"guests\"
enlightenments = \"hyperv\"

[[connections]]
from = \"guest\"
to = \"host\"
type = \"message\"
connection_id = 4
port_id = 1
sint = 0

[[connections]]
from = \"host\"
to = \"guest\"
type = \"message\"
connection_id = 1
port_id = 2
sint = 2
"
    );
    let bytes = compiled_with_guest(&text, "party");
    let m = Manifest::parse(&bytes).unwrap();
    let index = |name: &str| TaskIndex(m.tasks.iter().position(|t| t.name == name).unwrap() as u8);
    let (broker, vid, host) = (index("broker"), index("guests"), index("host"));
    assert_eq!(m.notified_tasks().collect::<Vec<_>>(), [vid, host]);
    let notify = |t: TaskIndex| format!("{}{}", broker_api::NOTIFY_PREFIX, badge_of(t));
    assert_eq!(names(&grants(&m, broker).unwrap()), ["broker".to_string(), notify(vid), notify(host)]);
    let party = broker_api::task_party(host.0);
    assert_eq!(broker_party(sysimage::manifest::Party::Task(host)), party);
    let g = grants(&m, host).unwrap();
    let last = g.last().unwrap();
    assert_eq!(
        (last.name.as_str(), last.source),
        (
            format!("{}{party}", broker_api::PARTY_NOTIFICATION_PREFIX).as_str(),
            Source::Deliveries { vid: host, signal: false }
        )
    );
    // The VID of the port's partition waits on broker-events, as before.
    let g = grants(&m, vid).unwrap();
    assert_eq!(g.last().unwrap().name.as_str(), broker_api::VID_NOTIFICATION);
}

#[test]
fn a_vid_with_partitions_may_mint_exit_capabilities_to_the_endpoint_it_serves() {
    let text = format!(
        "{SYSTEM}
[tasks.partition-manager]
priority = 25
memory = \"64KiB\"
stack = \"16KiB\"
serves = [\"partition-manager\"]

[tasks.guests]
binary = \"vid\"
priority = 15
memory = \"64KiB\"
stack = \"16KiB\"
serves = [\"guests\"]
uses = [\"console\", \"partition-manager\"]
untyped = \"1MiB\"

[tasks.idle-vid]
binary = \"vid\"
priority = 14
memory = \"64KiB\"
stack = \"16KiB\"
serves = [\"idle-vid\"]
uses = [\"console\", \"partition-manager\"]
untyped = \"1MiB\"

[partitions.linux]
image = \"kernel\"
memory = \"8MiB\"
vid = \"guests\"
"
    );
    let bytes = compiled_with_guest(&text, "vid");
    let m = Manifest::parse(&bytes).unwrap();
    let index = |name: &str| TaskIndex(m.tasks.iter().position(|t| t.name == name).unwrap() as u8);
    let endpoint = |name: &str| EndpointIndex(m.endpoints.iter().position(|e| e.name == name).unwrap() as u8);
    let both = Rights::new().with_receive(true).with_send(true);
    assert_eq!(endpoint_rights(&m, index("guests"), endpoint("guests"), true), both);
    // A VID that runs no partition only receives.
    let idle = endpoint_rights(&m, index("idle-vid"), endpoint("idle-vid"), true);
    assert_eq!(idle, Rights::new().with_receive(true));
}

/// The manifest at the tool's limits (`tests/manifests/capacity-max.toml`,
/// which the emulator test boots): every task's grants can be made, and the
/// scheduler gets a context of every task.
#[test]
fn every_task_of_a_manifest_at_the_limits_gets_its_grants() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/manifests/capacity-max.toml");
    let bytes = compiled(&std::fs::read_to_string(path).unwrap());
    let m = Manifest::parse(&bytes).unwrap();
    assert_eq!(m.tasks.len(), sysimage::manifest::MAX_TASKS);
    assert_eq!(m.endpoints.len(), sysimage::manifest::MAX_ENDPOINTS);
    assert_eq!(m.partitions.len(), sysimage::manifest::MAX_PARTITIONS);
    let mut most = 0;
    for i in 0..m.tasks.len() {
        let g = grants(&m, TaskIndex(i as u8)).unwrap_or_else(|e| panic!("task {i}: {e:?}"));
        most = most.max(g.len());
    }
    let scheduler = m.tasks.iter().position(|t| t.name == SCHEDULER_TASK).unwrap() as u8;
    let g = grants(&m, TaskIndex(scheduler)).unwrap();
    assert_eq!(g.iter().filter(|g| matches!(g.source, Source::Sched(_))).count(), MAX_TASKS - 1);
    assert_eq!(most, g.len(), "the scheduler holds the most");
    assert!(most > 32, "more than the supervisor's old limit of 32 grants: {most}");
}

/// Names as long as the manifest allows still fit the startup page, behind
/// the scheduler's `sched:` prefix too.
#[test]
fn the_longest_names_fit() {
    let long = "t".repeat(sysimage::MAX_NAME_LEN);
    let endpoint = "e".repeat(sysimage::MAX_NAME_LEN);
    let text = format!(
        "{SYSTEM}\n[tasks.{long}]\npriority = 5\nmemory = \"64KiB\"\nstack = \"16KiB\"\nserves = [\"{endpoint}\"]\n\
         uses = [\"console\"]\n"
    );
    let bytes = compiled(&text);
    let m = Manifest::parse(&bytes).unwrap();
    let scheduler = m.tasks.iter().position(|t| t.name == SCHEDULER_TASK).unwrap() as u8;
    let g = grants(&m, TaskIndex(scheduler)).unwrap();
    assert!(names(&g).contains(&format!("{SCHED_PREFIX}{long}").as_str()));
    let task = m.tasks.iter().position(|t| t.name == long).unwrap() as u8;
    assert_eq!(names(&grants(&m, TaskIndex(task)).unwrap()), [endpoint.as_str(), "console"]);
    let mut startup = abi::startup::StartupInfo::empty();
    assert!(abi::startup::Name::new(&long).is_some());
    for (i, grant) in g.iter().enumerate() {
        assert!(startup.push(&grant.name, abi::CapSlot(i as u32 + 1), abi::ObjectType::ENDPOINT));
    }
}

/// The supervisor's slots cover what it holds with every task at its most,
/// and fit the root task's capability space after the kernel's grants.
#[test]
fn the_slot_budget_covers_every_task_at_its_most() {
    assert_eq!(MAX_HELD, 29);
    assert_eq!(SLOTS, 2 + 32 + 15 + 15 + MAX_SERVICE_CAPS + 15 * MAX_HELD + 127);
    assert!(ROOT_NAMED_SLOTS + SLOTS <= abi::limits::ROOT_CSPACE_SLOTS as usize);
    let mut slots = Slots::<SLOTS>::new(ROOT_NAMED_SLOTS as u32);
    for _ in 0..SLOTS {
        assert!(slots.take().is_some_and(|s| s.0 < abi::limits::ROOT_CSPACE_SLOTS));
    }
    assert_eq!(slots.take(), None);
}
