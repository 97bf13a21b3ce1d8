use crate::bootfs;
use crate::manifest::*;
use crate::*;
use std::vec;
use std::vec::Vec as StdVec;

fn hv<T, const N: usize>(items: &[T]) -> heapless::Vec<T, N>
where
    T: Clone,
{
    heapless::Vec::from_slice(items).unwrap()
}

fn task<'a>(name: &'a str, priority: u8) -> Task<'a> {
    Task {
        name,
        binary: name,
        priority: Priority(priority),
        memory: 0x4_0000,
        stack: 0x4000,
        restart: Restart::Always,
        serves: heapless::Vec::new(),
        uses: heapless::Vec::new(),
        io_ports: heapless::Vec::new(),
        interrupts: heapless::Vec::new(),
        untyped: 0,
        objects: abi::Entries::NONE,
        cpu: 0,
        kill_every_ms: 0,
        kill_limit: 0,
    }
}

/// supervisor, console (serves 0, COM1, IRQ 4), client (uses 0 as "log"
/// and 1, on the last CPU), the partition manager (serves 1, an untyped
/// quota for the client's partition).
fn sample() -> Manifest<'static> {
    let mut supervisor = task("supervisor", 31);
    supervisor.restart = Restart::Never;
    let mut console = task("console", 30);
    console.serves = hv(&[EndpointIndex(0)]);
    console.io_ports = hv(&[IoPortRange { base: 0x3f8, count: 8 }]);
    console.interrupts = hv(&[Gsi(4)]);
    let mut client = task("client", 10);
    client.binary = "client.elf";
    client.untyped = 64 << 10;
    client.objects = objects::default_objects(true);
    client.cpu = MAX_CPUS - 1;
    client.uses = hv(&[
        Use { endpoint: EndpointIndex(0), name: "log" },
        Use { endpoint: EndpointIndex(1), name: PARTITION_MANAGER },
    ]);
    let mut manager = task("manager", 20);
    manager.serves = hv(&[EndpointIndex(1)]);
    manager.untyped = 66 << 20;
    manager.objects = objects::partition(2).checked_add(&objects::JOURNAL).unwrap();
    Manifest {
        version: VERSION,
        system: "test",
        tasks: hv(&[supervisor, console, client, manager]),
        endpoints: hv(&[
            Endpoint { name: "console", server: TaskIndex(1) },
            Endpoint { name: PARTITION_MANAGER, server: TaskIndex(3) },
        ]),
        partitions: hv(&[Partition {
            name: "linux",
            image: "guest0:image",
            modules: hv(&["guest0:module0"]),
            cmdline: "console=ttyS0 quiet",
            memory: 64 << 20,
            vcpus: 2,
            exit_timeout_ms: DEFAULT_EXIT_TIMEOUT_MS,
            vid: TaskIndex(2),
            enlightenments: Enlightenments::HYPERV,
            classic: Classic::DEFAULT,
            cpus: heapless::Vec::new(),
            devices: Devices::NONE,
            on_reset: OnReset::Restart,
            cpuid_mask: crate::CpuidMask::NONE,
            ignore_unknown_msrs: false,
        }]),
        scheduler: SchedulerPolicy::Kernel,
        connections: heapless::Vec::new(),
        soak_kill_every_ms: 0,
    }
}

/// The sample with a broker (task 4, serving endpoint 2, which the VID
/// uses), a second partition "peer" of the same VID, and one event
/// connection from "linux" to VP 1 of "peer".
fn connected() -> Manifest<'static> {
    let mut m = sample();
    let mut broker = task("broker", 15);
    broker.serves = hv(&[EndpointIndex(2)]);
    m.tasks.push(broker).unwrap();
    m.endpoints.push(Endpoint { name: BROKER, server: TaskIndex(4) }).unwrap();
    m.tasks[2].uses.push(Use { endpoint: EndpointIndex(2), name: BROKER }).unwrap();
    // Messages and events travel through the SynIC of both ends.
    m.partitions[0].enlightenments = Enlightenments::HYPERV.with(Enlightenment::Synic, true);
    let mut peer = m.partitions[0].clone();
    peer.name = "peer";
    peer.memory = 2 << 20;
    m.partitions.push(peer).unwrap();
    m.tasks[3].untyped = 70 << 20;
    m.tasks[3].objects = objects::total([&objects::partition(2), &objects::partition(2), &objects::JOURNAL]).unwrap();
    m.connections
        .push(Connection {
            from: Party::Partition(PartitionIndex(0)),
            to: Party::Partition(PartitionIndex(1)),
            port_type: PortType::Event,
            connection_id: 0x00ff_ffff,
            port_id: 7,
            target_vp: 1,
            sint: 15,
            flag: 2040,
            flag_count: 8,
            from_page: None,
            to_page: None,
        })
        .unwrap();
    m
}

/// [`connected`] with a second connection: "linux" (64 MiB of RAM) holds
/// monitor connection 3 to port 4 of "peer" (2 MiB), its page right above
/// each one's RAM; the manager's objects quota has its memory object.
fn monitored() -> Manifest<'static> {
    let mut m = connected();
    m.connections
        .push(Connection {
            from: Party::Partition(PartitionIndex(0)),
            to: Party::Partition(PartitionIndex(1)),
            port_type: PortType::Monitor,
            connection_id: 3,
            port_id: 4,
            target_vp: 0,
            sint: 0,
            flag: 0,
            flag_count: 0,
            from_page: Some(64 << 20),
            to_page: Some(2 << 20),
        })
        .unwrap();
    m.tasks[3].objects = m.tasks[3].objects.checked_add(&objects::monitor_pages(1)).unwrap();
    m
}

#[test]
fn monitor_connections_have_their_pages_and_are_checked() {
    let m = monitored();
    let bytes = m.to_vec();
    let parsed = Manifest::parse(&bytes).unwrap();
    assert_eq!(parsed, m);
    let pages: StdVec<(PartitionIndex, u64)> = parsed.connections[1].monitor_pages().collect();
    assert_eq!(pages, [(PartitionIndex(0), 64 << 20), (PartitionIndex(1), 2 << 20)]);
    assert_eq!(parsed.connections[0].monitor_pages().count(), 0);
    // The manager pays for the page and the tables of its two mappings.
    assert_eq!(parsed.monitor_connections(), 1);
    assert_eq!(MONITOR_PAGE_NEED, 5 * PAGE_SIZE);
    let without = {
        let mut m = m.clone();
        m.connections.pop();
        m.partitions_need()
    };
    assert_eq!(parsed.partitions_need(), without + MONITOR_PAGE_NEED);
    // The last page below the platform MMIO fits; a task's port has no page.
    let mut top = monitored();
    top.connections[1].from_page = Some(PLATFORM_MMIO - PAGE_SIZE);
    assert!(Manifest::parse(&top.to_vec()).is_ok());
    let mut task_port = monitored();
    task_port.tasks[1].uses.push(Use { endpoint: EndpointIndex(2), name: BROKER }).unwrap();
    (task_port.connections[1].to, task_port.connections[1].to_page) = (Party::Task(TaskIndex(1)), None);
    assert_eq!(Manifest::parse(&task_port.to_vec()).map(|p| p.connections[1].monitor_pages().count()), Ok(1));

    let bad = |reason: &str, edit: &dyn Fn(&mut Manifest<'static>)| {
        let mut m = monitored();
        edit(&mut m);
        match Manifest::parse(&m.to_vec()) {
            Err(Error::BadConnection { connection, reason: r }) => {
                assert_eq!((connection, r), (m.connections.len() - 1, reason))
            }
            other => panic!("expected BadConnection 1 ({reason}), got {other:?}"),
        }
    };
    let fits = "a monitor page unaligned, in RAM or in the platform MMIO";
    bad(fits, &|m| m.connections[1].from_page = Some((64 << 20) + 0x800));
    bad(fits, &|m| m.connections[1].from_page = Some((64 << 20) - PAGE_SIZE));
    bad(fits, &|m| m.connections[1].to_page = Some(0xf_f000));
    bad(fits, &|m| m.connections[1].to_page = Some(PLATFORM_MMIO));
    bad(fits, &|m| m.connections[1].to_page = Some(!0xfff));
    let missing = "a monitor page missing, or one in a task";
    bad(missing, &|m| m.connections[1].from_page = None);
    bad(missing, &|m| m.connections[1].to_page = None);
    bad(missing, &|m| {
        m.tasks[1].uses.push(Use { endpoint: EndpointIndex(2), name: BROKER }).unwrap();
        m.connections[1].to = Party::Task(TaskIndex(1));
    });
    bad("a monitor connection held by a task", &|m| {
        m.tasks[1].uses.push(Use { endpoint: EndpointIndex(2), name: BROKER }).unwrap();
        m.connections[1].from = Party::Task(TaskIndex(1));
    });
    bad("a partition holding more monitor connections than MAX_HELD_MONITORS", &|m| {
        for n in 1..=MAX_HELD_MONITORS as u32 {
            let mut more = m.connections[1];
            (more.connection_id, more.port_id) = (3 + n, 4 + n);
            more.from_page = Some((64 << 20) + u64::from(n) * PAGE_SIZE);
            more.to_page = Some((2 << 20) + u64::from(n) * PAGE_SIZE);
            m.connections.push(more).unwrap();
        }
        m.tasks[3].objects = m.tasks[3].objects.checked_add(&objects::monitor_pages(MAX_HELD_MONITORS as u16)).unwrap();
    });
    let sint = "a target VP or SINT on a monitor port";
    bad(sint, &|m| m.connections[1].sint = 4);
    bad(sint, &|m| m.connections[1].target_vp = 1);
    bad("monitor pages on a port that is not a monitor port", &|m| {
        m.connections[1].port_type = PortType::Message;
    });
    let twice = "a monitor page used twice in one partition";
    // A self-connection maps the page twice: at two GPAs.
    bad(twice, &|m| {
        m.connections[1].to = Party::Partition(PartitionIndex(0));
        m.connections[1].to_page = m.connections[1].from_page;
    });
    bad(twice, &|m| {
        let mut c = m.connections[1];
        (c.connection_id, c.port_id, c.to_page) = (5, 6, Some(3 << 20));
        m.connections.insert(1, c).unwrap();
        m.connections[2].to_page = Some(4 << 20);
        m.tasks[3].objects = m.tasks[3].objects.checked_add(&objects::monitor_pages(1)).unwrap();
        m.tasks[3].untyped += MONITOR_PAGE_NEED;
    });
    // The manager's quotas cover the page.
    let mut poor = monitored();
    poor.tasks[3].objects =
        objects::total([&objects::partition(2), &objects::partition(2), &objects::JOURNAL]).unwrap();
    assert_eq!(
        Manifest::parse(&poor.to_vec()),
        Err(Error::BadPartition { partition: 0, reason: "the partition manager's objects quota is too small" })
    );
    let mut poor = monitored();
    poor.tasks[3].untyped = poor.partitions_need() - PAGE_SIZE;
    assert_eq!(
        Manifest::parse(&poor.to_vec()),
        Err(Error::BadPartition { partition: 0, reason: "the partition manager's untyped quota is too small" })
    );
}

/// A task serving a port (the VMBus host's arrangement): the partition's
/// connection leads to the task's port, the task's to the partition's.
#[test]
fn a_task_can_be_a_party() {
    let mut m = connected();
    m.connections[0].to = Party::Task(TaskIndex(1));
    m.connections[0].target_vp = 0;
    m.tasks[1].uses.push(Use { endpoint: EndpointIndex(2), name: BROKER }).unwrap();
    let mut back = m.connections[0];
    (back.from, back.to, back.target_vp) = (Party::Task(TaskIndex(1)), Party::Partition(PartitionIndex(1)), 1);
    m.connections.push(back).unwrap();
    let bytes = m.to_vec();
    let parsed = Manifest::parse(&bytes).unwrap();
    assert_eq!(parsed.task_parties().collect::<StdVec<_>>(), [TaskIndex(1)]);
    // Told of deliveries: the task (its port) and the VID of "peer".
    assert_eq!(parsed.notified_tasks().collect::<StdVec<_>>(), [TaskIndex(1), TaskIndex(2)]);
    assert_eq!(parsed.speaker(Party::Partition(PartitionIndex(1))), Some(TaskIndex(2)));
}

#[test]
fn connections_round_trip_and_are_checked() {
    let m = connected();
    let bytes = m.to_vec();
    let parsed = Manifest::parse(&bytes).unwrap();
    assert_eq!(parsed, m);
    assert_eq!(parsed.broker(), Some(TaskIndex(4)));
    assert_eq!(parsed.notified_tasks().collect::<StdVec<_>>(), [TaskIndex(2)]);
    // The notification is a shared object the supervisor makes.
    let plain = {
        let mut m = m.clone();
        m.connections.clear();
        m.entries_needed().unwrap()
    };
    assert_eq!(
        m.entries_needed().unwrap().get(abi::EntryKind::Notification),
        plain.get(abi::EntryKind::Notification) + 1
    );
    // A self-connection is legal (as in Hyper-V); so is a message port.
    let mut ok = connected();
    ok.connections[0].to = Party::Partition(PartitionIndex(0));
    ok.connections[0].port_type = PortType::Message;
    (ok.connections[0].flag, ok.connections[0].flag_count) = (0, 0);
    assert_eq!(Manifest::parse(&ok.to_vec()).map(|p| p.connections[0].to), Ok(Party::Partition(PartitionIndex(0))));

    let bad = |reason: &str, edit: &dyn Fn(&mut Manifest<'static>)| {
        let mut m = connected();
        edit(&mut m);
        match Manifest::parse(&m.to_vec()) {
            Err(Error::BadConnection { connection, reason: r }) => {
                assert_eq!(connection, m.connections.len() - 1);
                assert_eq!(r, reason);
            }
            other => panic!("expected BadConnection ({reason}), got {other:?}"),
        }
    };
    let again = |m: &mut Manifest<'static>| {
        let c = m.connections[0];
        m.connections.push(c).unwrap();
    };
    let range = "partition or task out of range";
    bad(range, &|m| m.connections[0].to = Party::Partition(PartitionIndex(2)));
    bad(range, &|m| m.connections[0].from = Party::Partition(PartitionIndex(9)));
    bad(range, &|m| m.connections[0].from = Party::Task(TaskIndex(9)));
    let role = "the supervisor or the broker as a party";
    bad(role, &|m| m.connections[0].from = Party::Task(TaskIndex(0)));
    bad(role, &|m| m.connections[0].to = Party::Task(TaskIndex(4)));
    // A task's port has one target VP, 0.
    bad("target VP beyond the port partition's VPs", &|m| m.connections[0].to = Party::Task(TaskIndex(2)));
    bad("connection or port ID above 24 bits", &|m| m.connections[0].connection_id = 0x0100_0000);
    bad("connection or port ID above 24 bits", &|m| m.connections[0].port_id = 0x8000_0000);
    bad("target VP beyond the port partition's VPs", &|m| m.connections[0].target_vp = 2);
    bad("SINT out of range", &|m| m.connections[0].sint = 16);
    let flags = "event flags out of range, or flags on a port that is not an event port";
    bad(flags, &|m| m.connections[0].flag = 2041);
    bad(flags, &|m| m.connections[0].flag_count = 0);
    bad(flags, &|m| m.connections[0].port_type = PortType::Message);
    bad(flags, &|m| {
        m.connections[0].port_type = PortType::Monitor;
        m.tasks[3].objects = m.tasks[3].objects.checked_add(&objects::monitor_pages(1)).unwrap();
    });
    bad("connection ID used twice by one partition", &|m| {
        again(m);
        m.connections[1].port_id = 8;
    });
    bad("port ID used twice in one partition", &|m| {
        again(m);
        m.connections[1].connection_id = 1;
    });
    let synic = "a partition lacks the SynIC privilege or SINTs its connection needs";
    for port_type in [PortType::Event, PortType::Monitor] {
        bad(synic, &|m| {
            m.connections[0].port_type = port_type;
            if port_type == PortType::Monitor {
                (m.connections[0].flag, m.connections[0].flag_count) = (0, 0);
                (m.connections[0].target_vp, m.connections[0].sint) = (0, 0);
                (m.connections[0].from_page, m.connections[0].to_page) = (Some(64 << 20), Some(2 << 20));
                m.tasks[3].objects = m.tasks[3].objects.checked_add(&objects::monitor_pages(1)).unwrap();
            }
            m.partitions[0].enlightenments = NO_SYNIC;
        });
    }
    bad(synic, &|m| m.partitions[1].enlightenments = NO_SYNIC);
    bad(synic, &|m| {
        m.connections[0].port_type = PortType::Message;
        (m.connections[0].flag, m.connections[0].flag_count) = (0, 0);
        m.partitions[0].enlightenments = Enlightenments::NONE;
    });
    bad("a partition's VID or a task party does not use the broker", &|m| _ = m.tasks[2].uses.pop());
    bad("a partition's VID or a task party does not use the broker", &|m| {
        m.connections[0].from = Party::Task(TaskIndex(1));
    });
    bad("no task serves the broker's endpoint", &|m| {
        m.endpoints[2].name = "other";
        m.tasks[2].uses[2].name = "other";
    });
    // The same IDs in other partitions are fine.
    let mut m = connected();
    again(&mut m);
    m.connections[1].from = Party::Partition(PartitionIndex(1));
    m.connections[1].to = Party::Partition(PartitionIndex(0));
    assert!(Manifest::parse(&m.to_vec()).is_ok());
}

fn image(manifest: &Manifest<'_>) -> StdVec<u8> {
    let encoded = manifest.to_vec();
    let mut files: StdVec<(&str, &[u8])> = vec![(MANIFEST_FILE, &encoded)];
    for t in &manifest.tasks {
        files.push((t.binary, b"\x7fELF"));
    }
    for p in &manifest.partitions {
        files.push((p.image, b"kernel"));
        files.extend(p.modules.iter().map(|m| (*m, &b"module"[..])));
    }
    bootfs::write(&root_task(&manifest.tasks[0], bootfs::OnDeath::Halt), &files).unwrap()
}

#[test]
fn manifest_round_trips() {
    let m = sample();
    let bytes = m.to_vec();
    assert_eq!(Manifest::parse(&bytes), Ok(m));
}

#[test]
fn manifest_fits_a_small_stack() {
    // The supervisor decodes it in place; keep it well under a 16 KiB stack
    // (its readers, the supervisor, the partition manager and the VIDs, have
    // 128 KiB or more; 32 connections take 640 bytes).
    assert!(core::mem::size_of::<Manifest<'_>>() <= 10 << 10, "{}", core::mem::size_of::<Manifest<'_>>());
}

#[test]
fn unknown_versions_and_garbage_are_refused() {
    let mut m = sample();
    m.version = 1;
    assert_eq!(Manifest::parse(&m.to_vec()), Err(Error::ManifestVersion(1)));
    m.version = 3; // before enlightenments and exit timeouts together
    assert_eq!(Manifest::parse(&m.to_vec()), Err(Error::ManifestVersion(3)));
    m.version = VERSION + 1;
    assert_eq!(Manifest::parse(&m.to_vec()), Err(Error::ManifestVersion(VERSION + 1)));
    assert_eq!(Manifest::parse(&[]), Err(Error::Decode));
    let mut bytes = sample().to_vec();
    bytes.truncate(bytes.len() - 1);
    assert_eq!(Manifest::parse(&bytes), Err(Error::Decode));
    let mut bytes = sample().to_vec();
    bytes.push(0);
    assert_eq!(Manifest::parse(&bytes), Err(Error::TrailingBytes));
}

#[test]
fn every_truncation_is_refused_without_panicking() {
    let bytes = sample().to_vec();
    for len in 0..bytes.len() {
        assert!(Manifest::parse(&bytes[..len]).is_err(), "prefix of {len} bytes accepted");
    }
}

#[test]
fn inconsistent_manifests_are_refused() {
    let bad_task = |task, edit: fn(&mut Manifest<'static>)| {
        let mut m = sample();
        edit(&mut m);
        match Manifest::parse(&m.to_vec()) {
            Err(Error::BadTask { task: t, .. }) => assert_eq!(t, task),
            other => panic!("expected BadTask({task}), got {other:?}"),
        }
    };
    bad_task(0, |m| m.tasks[0].restart = Restart::Always);
    bad_task(2, |m| m.tasks[2].name = "console");
    bad_task(1, |m| m.tasks[1].priority = Priority(32));
    bad_task(2, |m| m.tasks[2].memory = 0);
    bad_task(2, |m| m.tasks[2].stack = 0x4001);
    bad_task(2, |m| m.tasks[2].stack = 0x8_0000);
    bad_task(2, |m| m.tasks[2].memory = MAX_TASK_MEMORY + PAGE_SIZE);
    bad_task(1, |m| m.tasks[1].uses = hv(&[Use { endpoint: EndpointIndex(0), name: "self" }]));
    bad_task(2, |m| m.tasks[2].uses[0].endpoint = EndpointIndex(7));
    bad_task(2, |m| m.tasks[2].serves = hv(&[EndpointIndex(0)]));
    bad_task(1, |m| m.tasks[1].io_ports = hv(&[IoPortRange { base: 0xfffc, count: 8 }]));
    bad_task(1, |m| m.tasks[1].io_ports = hv(&[IoPortRange { base: 0x3f8, count: 0 }]));
    bad_task(2, |m| m.tasks[2].io_ports = hv(&[IoPortRange { base: 0x3ff, count: 1 }]));
    bad_task(2, |m| m.tasks[2].interrupts = hv(&[Gsi(4)]));
    bad_task(2, |m| m.tasks[2].interrupts = hv(&[Gsi(MAX_GSI + 1)]));
    bad_task(1, |m| m.tasks[1].objects = abi::Entries::one(abi::EntryKind::Thread)); // it has no untyped
    bad_task(2, |m| m.tasks[2].cpu = MAX_CPUS);
    bad_task(0, |m| m.tasks[0].cpu = 1);

    // A quota beyond a kernel table, with everything else the system takes.
    let mut m = sample();
    let threads = abi::limits::tables::THREADS as u16 - 6;
    m.tasks[2].objects = m.tasks[2].objects.with(abi::EntryKind::Thread, threads);
    assert_eq!(m.entries_needed().map(|e| e.get(abi::EntryKind::Thread)), Some(threads + 4));
    assert!(Manifest::parse(&m.to_vec()).is_ok());
    m.tasks[2].objects = m.tasks[2].objects.with(abi::EntryKind::Thread, threads + 5);
    assert_eq!(
        Manifest::parse(&m.to_vec()),
        Err(Error::BadManifest("the objects quotas do not fit the kernel's tables"))
    );

    let mut m = sample();
    m.endpoints[0].server = TaskIndex(2);
    assert!(matches!(Manifest::parse(&m.to_vec()), Err(Error::BadManifest(_))));
    let mut m = sample();
    m.tasks.clear();
    assert_eq!(Manifest::parse(&m.to_vec()), Err(Error::BadManifest("no tasks")));
}

/// The hyperv profile without the SynIC (and the timers that need it).
const NO_SYNIC: Enlightenments =
    Enlightenments::HYPERV.with(Enlightenment::SyntheticTimers, false).with(Enlightenment::Synic, false);

#[test]
fn the_testdev_needs_the_synic() {
    let mut m = sample();
    m.partitions[0].devices = Devices::HYPERV_TESTDEV;
    m.partitions[0].enlightenments = Enlightenments::HYPERV;
    let bytes = m.to_vec();
    let parsed = Manifest::parse(&bytes).expect("hyperv-testdev with the SynIC");
    assert!(parsed.partitions[0].devices.contains(Devices::HYPERV_TESTDEV));
    m.partitions[0].enlightenments = NO_SYNIC;
    assert_eq!(
        Manifest::parse(&m.to_vec()).err(),
        Some(Error::BadPartition { partition: 0, reason: "hyperv-testdev without the synic enlightenment" })
    );
}

#[test]
fn inconsistent_partitions_are_refused() {
    let bad = |edit: fn(&mut Manifest<'static>)| {
        let mut m = sample();
        edit(&mut m);
        match Manifest::parse(&m.to_vec()) {
            Err(Error::BadPartition { partition: 0, .. }) => {}
            other => panic!("expected BadPartition(0), got {other:?}"),
        }
    };
    bad(|m| m.partitions[0].name = "");
    // The testdev without the SynIC; an unknown device bit.
    bad(|m| {
        m.partitions[0].enlightenments = NO_SYNIC;
        m.partitions[0].devices = Devices::HYPERV_TESTDEV;
    });
    bad(|m| m.partitions[0].devices = Devices(2));
    bad(|m| m.partitions[0].image = "a b");
    bad(|m| m.partitions[0].modules[0] = "");
    bad(|m| m.partitions[0].cmdline = "a\nb");
    bad(|m| m.partitions[0].memory = MIN_PARTITION_MEMORY - PAGE_SIZE);
    bad(|m| m.partitions[0].memory = MAX_PARTITION_MEMORY + PAGE_SIZE);
    bad(|m| m.partitions[0].memory = (8 << 20) + 1);
    bad(|m| m.partitions[0].vcpus = 0);
    bad(|m| m.partitions[0].vcpus = MAX_VCPUS + 1);
    bad(|m| m.partitions[0].exit_timeout_ms = MAX_EXIT_TIMEOUT_MS + 1);
    bad(|m| m.partitions[0].vid = TaskIndex(4));
    bad(|m| m.partitions[0].vid = TaskIndex(0)); // the supervisor
    bad(|m| m.partitions[0].vid = TaskIndex(1)); // the console does not use the partition manager
    bad(|m| m.tasks[3].untyped = (65 << 20) - 4096);
    bad(|m| (m.tasks[2].untyped, m.tasks[2].objects) = (0, abi::Entries::NONE)); // the VID needs some for its exit endpoint
    bad(|m| m.tasks[3].objects = objects::partition(1).checked_add(&objects::JOURNAL).unwrap()); // its partition has 2 VPs
    bad(|m| {
        m.tasks[3].serves.clear();
        m.tasks[2].uses.truncate(1);
        m.endpoints.truncate(1);
    });
    bad(|m| m.partitions[0].enlightenments = Enlightenments::from_bits(1 << 31));
    bad(|m| m.partitions[0].enlightenments = Enlightenments::HYPERV_VSM.with(Enlightenment::ApicMsrs, false));
    bad(|m| m.partitions[0].enlightenments = Enlightenments::HYPERV.with(Enlightenment::Synic, false));
    bad(|m| m.partitions[0].enlightenments = Enlightenments::HYPERV.with(Enlightenment::TimeRefCount, false));
    // Classic parameters: the TLFS ranges, reserve <= cap, only under the classic policy.
    let classic = |edit: fn(&mut Classic)| {
        move |m: &mut Manifest<'static>| {
            m.scheduler = SchedulerPolicy::Classic;
            edit(&mut m.partitions[0].classic);
        }
    };
    let bad_classic = |edit: fn(&mut Classic)| {
        let mut m = sample();
        classic(edit)(&mut m);
        assert!(matches!(Manifest::parse(&m.to_vec()), Err(Error::BadPartition { partition: 0, .. })));
    };
    bad_classic(|c| c.reserve = ONE_LP + 1);
    bad_classic(|c| c.cap = ONE_LP + 1);
    bad_classic(|c| c.cap = 0);
    bad_classic(|c| c.weight = 0);
    bad_classic(|c| c.weight = MAX_WEIGHT + 1);
    bad_classic(|c| (c.reserve, c.cap) = (0x8000, 0x4000));
    bad(|m| m.partitions[0].classic.weight = 200); // not under the classic policy
    bad(|m| (m.scheduler, m.partitions[0].classic.weight) = (SchedulerPolicy::Root, 200)); // nor the root one
    let mut m = sample();
    m.scheduler = SchedulerPolicy::Root;
    assert_eq!(Manifest::parse(&m.to_vec()).map(|p| p.scheduler), Ok(SchedulerPolicy::Root));
    bad(|m| m.partitions[0].cpus = hv(&[MAX_CPUS]));
    bad(|m| m.partitions[0].cpus = hv(&[1, 1]));
    // Two VPs of half a CPU each fit one CPU; 0.75 each do not.
    let mut m = sample();
    classic(|c| (c.reserve, c.weight) = (0x8000, 10_000))(&mut m);
    m.partitions[0].cpus = hv(&[1]);
    let bytes = m.to_vec();
    let parsed = Manifest::parse(&bytes).unwrap();
    assert_eq!((parsed.reserves_on(1), parsed.partitions[0].cpu_of(1)), (0x10000, Some(1)));
    m.partitions[0].classic.reserve = 0xc000;
    assert_eq!(
        Manifest::parse(&m.to_vec()).err(),
        Some(Error::BadPartition { partition: 0, reason: "the reserves of the VPs on one CPU add up to more than it" })
    );
    m.partitions[0].cpus = hv(&[1, 2]);
    assert_eq!(Manifest::parse(&m.to_vec()).err(), None, "one VP on each");

    // Two partitions need both quotas at the partition manager; names are unique.
    let mut m = sample();
    let mut second = m.partitions[0].clone();
    second.name = "other";
    second.memory = 2 << 20;
    m.partitions.push(second.clone()).unwrap();
    assert!(matches!(Manifest::parse(&m.to_vec()), Err(Error::BadPartition { partition: 0, .. })));
    // Each needs its RAM, 1 MiB, and a page per 2 MiB and per GiB of RAM
    // for its second-level tables.
    let need = (64 << 20) + (1 << 20) + (32 + 1) * 4096 + (2 << 20) + (1 << 20) + (1 + 1) * 4096 + JOURNAL_NEED;
    m.tasks[3].untyped = need - 4096;
    assert!(matches!(Manifest::parse(&m.to_vec()), Err(Error::BadPartition { partition: 0, .. })));
    m.tasks[3].untyped = need;
    assert!(matches!(Manifest::parse(&m.to_vec()), Err(Error::BadPartition { partition: 0, .. })));
    m.tasks[3].objects = objects::total([&objects::partition(2), &objects::partition(2), &objects::JOURNAL]).unwrap();
    let bytes = m.to_vec();
    let parsed = Manifest::parse(&bytes).unwrap();
    assert_eq!(parsed.partitions_of(TaskIndex(2)).count(), 2);
    assert_eq!(parsed.partition_manager(), Some(TaskIndex(3)));
    assert_eq!(parsed.partitions_need(), need);
    m.partitions[1].name = "linux";
    assert!(matches!(Manifest::parse(&m.to_vec()), Err(Error::BadPartition { partition: 1, .. })));
}

#[test]
fn a_system_image_gives_each_guest_file() {
    let m = sample();
    let img = image(&m);
    let sys = SystemImage::parse(&img).unwrap();
    let p = &sys.manifest.partitions[0];
    assert_eq!(sys.guest_image(p), Some(&b"kernel"[..]));
    assert_eq!(sys.bootfs.file(p.modules[0]), Some(&b"module"[..]));
    assert_eq!((guest_image_name(0), guest_module_name(3, 1)), ("guest0:image".into(), "guest3:module1".into()));

    let encoded = m.to_vec();
    let mut files: StdVec<(&str, &[u8])> = vec![(MANIFEST_FILE, &encoded)];
    files.extend(m.tasks.iter().map(|t| (t.binary, &b""[..])));
    files.push(("guest0:image", b""));
    let missing = bootfs::write(&root_task(&m.tasks[0], bootfs::OnDeath::Halt), &files).unwrap();
    assert_eq!(SystemImage::parse(&missing).unwrap_err(), Error::MissingGuestFile { partition: 0 });
}

#[test]
fn every_truncated_or_bit_flipped_image_is_handled_without_panicking() {
    let img = image(&sample());
    for len in 0..img.len() {
        assert!(SystemImage::parse(&img[..len]).is_err());
    }
    for i in 0..img.len() {
        for bit in 0..8 {
            let mut flipped = img.clone();
            flipped[i] ^= 1 << bit;
            let _ = SystemImage::parse(&flipped);
        }
    }
}

#[test]
fn a_system_image_gives_the_manifest_and_binaries() {
    let m = sample();
    let img = image(&m);
    let sys = SystemImage::parse(&img).unwrap();
    assert_eq!(sys.manifest, m);
    assert_eq!(sys.manifest.supervisor().unwrap().name, "supervisor");
    let client = &sys.manifest.tasks[2];
    assert_eq!(sys.binary(client), Some(&b"\x7fELF"[..]));
    assert_eq!(sys.manifest.endpoint(client.uses[0].endpoint).unwrap().name, "console");
}

#[test]
fn a_system_image_needs_a_manifest_and_every_binary() {
    let encoded = sample().to_vec();
    let root = root_task(&sample().tasks[0], bootfs::OnDeath::Halt);
    let no_manifest = bootfs::write(&root, &[("supervisor", b"")]).unwrap();
    assert_eq!(SystemImage::parse(&no_manifest).unwrap_err(), Error::NoManifest);
    let files: [(&str, &[u8]); 3] = [(MANIFEST_FILE, &encoded), ("supervisor", b""), ("console", b"")];
    let missing = bootfs::write(&root, &files).unwrap();
    assert_eq!(SystemImage::parse(&missing).unwrap_err(), Error::MissingBinary { task: 2 });
    let mut bad_header = image(&sample());
    bad_header[0] = b'X';
    assert_eq!(SystemImage::parse(&bad_header).unwrap_err(), Error::Bootfs(bootfs::Error::BadMagic));
}

#[test]
fn the_bootfs_header_must_name_the_manifests_supervisor() {
    let m = sample();
    let encoded = m.to_vec();
    let mut files: StdVec<(&str, &[u8])> = vec![(MANIFEST_FILE, &encoded)];
    files.extend(m.tasks.iter().map(|t| (t.binary, &b"\x7fELF"[..])));
    files.push(("guest0:image", b""));
    files.push(("guest0:module0", b""));
    let supervisor = root_task(&m.tasks[0], bootfs::OnDeath::Halt);
    assert!(SystemImage::parse(&bootfs::write(&supervisor, &files).unwrap()).is_ok());
    // The policy for its death is the header's alone.
    let rebooting = bootfs::RootTask { on_death: bootfs::OnDeath::Reboot, ..supervisor };
    let image = bootfs::write(&rebooting, &files).unwrap();
    assert_eq!(SystemImage::parse(&image).unwrap().bootfs.root().on_death, bootfs::OnDeath::Reboot);
    let other_task = root_task(&m.tasks[1], bootfs::OnDeath::Halt);
    let edits: [bootfs::RootTask<'_>; 5] = [
        other_task,
        bootfs::RootTask { name: "console", ..supervisor },
        bootfs::RootTask { priority: 30, ..supervisor },
        bootfs::RootTask { stack: supervisor.stack + PAGE_SIZE, ..supervisor },
        bootfs::RootTask { memory: 0, ..supervisor },
    ];
    for root in edits {
        let img = bootfs::write(&root, &files).unwrap();
        assert_eq!(SystemImage::parse(&img).unwrap_err(), Error::RootTaskMismatch, "{root:?}");
    }
    assert_eq!(
        std::format!("{}", Error::RootTaskMismatch),
        "bootfs: the header's root task is not the manifest's supervisor (name, binary, priority, stack, memory)"
    );
}

#[test]
fn enlightenment_profiles_are_coherent_and_round_trip() {
    assert_eq!(Enlightenments::HYPERV.bits(), 0x1_ffff);
    assert_eq!(Enlightenments::HYPERV_VSM.bits(), 0x3_ffff);
    assert_eq!(Enlightenments::NONE.check(), Ok(()));
    assert_eq!(Enlightenments::HYPERV.check(), Ok(()));
    assert_eq!(Enlightenments::profile("hyperv"), Some(Enlightenments::HYPERV));
    assert_eq!(Enlightenments::profile("none"), Some(Enlightenments::NONE));
    assert_eq!(Enlightenments::profile("kvm"), None);
    for (i, e) in Enlightenment::ALL.into_iter().enumerate() {
        assert_eq!(e as usize, i);
        assert_eq!(Enlightenment::from_name(e.name()), Some(e));
    }
    let mut m = sample();
    m.partitions[0].enlightenments =
        Enlightenments::NONE.with(Enlightenment::Hypercall, true).with(Enlightenment::VpIndex, true);
    let bytes = m.to_vec();
    assert_eq!(Manifest::parse(&bytes).unwrap().partitions[0].enlightenments.bits(), 0b11);
}

#[test]
fn each_enlightenment_error() {
    let base = Enlightenments::NONE.with(Enlightenment::Hypercall, true).with(Enlightenment::VpIndex, true);
    let check = |set: Enlightenments| set.check().map_err(|e| std::format!("{e}"));
    assert_eq!(check(Enlightenments::from_bits(1 << 20)), Err("unknown enlightenment bits 0x100000".into()));
    assert_eq!(
        check(base.with(Enlightenment::Vsm, true).with(Enlightenment::Synic, true)),
        Err("vsm requires apic_msrs".into())
    );
    assert_eq!(check(base.with(Enlightenment::Vsm, true)), Err("vsm requires apic_msrs and synic".into()));
    assert_eq!(check(Enlightenments::HYPERV_VSM), Ok(()));
    assert_eq!(Enlightenments::profile("hyperv-vsm"), Some(Enlightenments::HYPERV_VSM));
    assert_eq!(Enlightenments::HYPERV_VSM, Enlightenments::HYPERV.with(Enlightenment::Vsm, true));
    // The SynIC and timers are in "hyperv", which is coherent.
    assert_eq!(check(base.with(Enlightenment::Synic, true)), Ok(()));
    assert_eq!(check(Enlightenments::HYPERV), Ok(()));
    assert!(Enlightenments::HYPERV.contains(Enlightenment::Synic));
    assert!(Enlightenments::HYPERV.contains(Enlightenment::SyntheticTimers));
    assert!(!Enlightenments::HYPERV.contains(Enlightenment::Vsm));
    assert_eq!(
        check(base.with(Enlightenment::ReferenceTsc, true)),
        Err("reference_tsc requires time_ref_count".into())
    );
    assert_eq!(
        check(Enlightenment::GuestIdle.set()),
        Err("the \"Hv#1\" interface promises hypercall and vp_index (TLFS 3.13), so any enlightenment needs \
             them: missing hypercall and vp_index"
            .into())
    );
    assert_eq!(
        check(Enlightenments::HYPERV.with(Enlightenment::VpIndex, false)).map_err(|m| m.ends_with("missing vp_index")),
        Err(true)
    );
    assert_eq!(
        check(base.with(Enlightenment::ExProcessorMasks, true)),
        Err("ex_processor_masks requires remote_tlb_flush or cluster_ipi".into())
    );
    assert_eq!(check(base.with(Enlightenment::ExProcessorMasks, true).with(Enlightenment::ClusterIpi, true)), Ok(()));
    // Synthetic timers need the SynIC and the reference counter (12.5).
    let mut errors = StdVec::new();
    base.with(Enlightenment::SyntheticTimers, true).for_each_error(|e| errors.push(e));
    assert_eq!(
        errors,
        [EnlightenmentError::Requires {
            feature: Enlightenment::SyntheticTimers,
            missing: Enlightenment::TimeRefCount.set().with(Enlightenment::Synic, true),
        },]
    );
    assert_eq!(std::format!("{}", errors[0]), "synthetic_timers requires time_ref_count and synic");
}

/// The privileges and features derived from a set: the SynIC's hypercall
/// privileges and SINT polling with it, direct mode with the timers; a
/// connection's ends need the SynIC whatever its type.
#[test]
fn derived_grants_follow_their_enlightenment() {
    let base = NO_SYNIC;
    let synic = base.with(Enlightenment::Synic, true);
    let timers = synic.with(Enlightenment::SyntheticTimers, true);
    for (set, sint, direct) in [(base, false, false), (synic, true, false), (timers, true, true)] {
        assert_eq!((set.post_messages(), set.signal_events(), set.sint_polling()), (sint, sint, sint));
        assert_eq!(set.direct_synthetic_timers(), direct);
    }
    for port_type in [PortType::Message, PortType::Event, PortType::Monitor] {
        assert!(port_type.holder_can(synic) && port_type.owner_can(synic));
        assert!(!port_type.holder_can(base) && !port_type.owner_can(base));
    }
    assert_eq!(PortType::Message.privilege(), "PostMessages");
    assert_eq!(PortType::Monitor.privilege(), "SignalEvents");
}

#[test]
fn a_vid_runs_at_most_its_share_of_partitions() {
    let mut m = sample();
    let first = m.partitions[0].clone();
    const NAMES: [&str; MAX_PARTITIONS_PER_VID] = ["p1", "p2", "p3", "p4"];
    for name in NAMES {
        let _ = m.partitions.push(Partition { name, ..first.clone() });
    }
    assert_eq!(
        Manifest::parse(&m.to_vec()).err(),
        Some(Error::BadPartition { partition: 0, reason: "its VID runs more partitions than one VID can" })
    );
}

#[test]
fn a_soak_interval_past_an_hour_is_refused() {
    let mut m = sample();
    m.soak_kill_every_ms = MAX_KILL_EVERY_MS;
    assert_eq!(Manifest::parse(&m.to_vec()).map(|p| p.soak_kill_every_ms), Ok(MAX_KILL_EVERY_MS));
    m.soak_kill_every_ms = MAX_KILL_EVERY_MS + 1;
    assert_eq!(Manifest::parse(&m.to_vec()), Err(Error::BadManifest("soak_kill_every_ms out of range")));
}
