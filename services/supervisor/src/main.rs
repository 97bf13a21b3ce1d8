//! The root task. The kernel starts it with the boot image and the
//! capabilities to build everything else; it starts the manifest's tasks,
//! hands each the capabilities the manifest grants, and restarts those that
//! crash, with back-off. Its own output goes straight to COM1 so it can
//! report even when the console service is the task that died.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("supervisor is a Tessera task; it runs only on the bare target (x86_64-unknown-none).");
}

#[cfg(target_os = "none")]
tessera_rt::entry!(task::main);

#[cfg(target_os = "none")]
mod task {
    use abi::startup::{StartupInfo, layout};
    use abi::{CapSlot, ErrorCode, FaultMessage, ObjectType, Rights};
    use core::fmt::Write;
    use supervisor::{
        Backoff, Decision, KEPT_SLOTS, MAX_HELD, MAX_SERVICE_CAPS, SLOTS, Slots, Source, badge_of, broker_party,
        endpoint_rights, exception_name, grants, task_of, use_source,
    };
    use sysimage::SystemImage;
    use sysimage::manifest::{Party, TaskIndex};
    use tessera_idl::CallError;
    use tessera_rt::log::Sink;
    use tessera_rt::memory::Window;
    use tessera_rt::{Operation, caps, invoke, println as log, recv_timeout, untyped};

    const PAGE: u64 = sysimage::PAGE_SIZE;
    const COM1: u16 = 0x3f8;
    /// Where the boot image is mapped in the supervisor.
    const BOOTFS_AT: u64 = 0x1000_0000;
    /// Where memory for other tasks is mapped while it is filled.
    const SCRATCH_AT: u64 = 0x2000_0000;
    const MAX_TASKS: usize = sysimage::manifest::MAX_TASKS;
    /// The `started` line's list of capabilities: each grant's name, kind
    /// (at most `sched-context`) and separator.
    const LISTING: usize = supervisor::MAX_GRANTS * (abi::startup::NAME_LEN + 18);
    /// How long to wait for faults when no restart is pending (0 = forever).
    const FOREVER: u64 = 0;

    #[derive(Default)]
    struct Running {
        held: heapless::Vec<CapSlot, MAX_HELD>,
        /// The partition manager's untyped: made at its first start and
        /// kept for the system's life (never revoked), so the partitions
        /// made from it outlive its restarts and each start gets the same
        /// pool, not a new one.
        pool: Option<CapSlot>,
        /// The partition manager's own capabilities (its partitions, VPs,
        /// memory and journal), moved out of its space at its teardown and
        /// back into the same slots at its next start: (its slot, ours).
        kept: heapless::Vec<(u32, CapSlot), KEPT_SLOTS>,
        /// Its task and thread while it exists.
        task: Option<CapSlot>,
        thread: Option<CapSlot>,
        backoff: Backoff,
        /// Clock value at which a restart is due.
        restart_at: Option<u64>,
        /// Clock value of its last start.
        started_at: u64,
        /// Clock value at which fault injection kills it (`kill_every_ms`).
        kill_at: Option<u64>,
        /// Kills so far.
        kills: u32,
        /// What the console and the scheduler are still to be told of it
        /// ([`Untold`]): a call the server was not ready for is tried again.
        untold: u8,
        /// The broker's: the steps of the manifest's declarations it has
        /// taken since its start (`declare_to_broker`).
        broker_step: usize,
        /// Clock value at which the soak killed it, until it has recovered
        /// ([`Supervisor::soak_recovered`]).
        soak_killed_at: Option<u64>,
    }

    /// What a service is told of a task that started ([`Running::untold`]).
    struct Untold;
    impl Untold {
        /// Its name, on the console.
        const CONSOLE: u8 = 1;
        /// Its badge and name, at the scheduler; the scheduler's own bit
        /// means every running task and partition.
        const SCHEDULER: u8 = 2;
        /// The broker's own: the manifest's partitions and connections.
        const BROKER: u8 = 4;
    }

    /// Readings of the kernel's free memory, a few ticks apart, until two
    /// agree ([`Supervisor::memory`]).
    const MEMORY_READS: u32 = 10;
    /// How soon a call a service was not ready for is tried again (ticks).
    const RETRY_TICKS: u64 = 2;
    /// Tries at telling a server of a task, a tick apart, before the rest
    /// waits for the next retry.
    const PATIENCE: u32 = 5;
    /// How long a start waits for the servers started before it to have
    /// been told everything (ticks).
    const SETTLE_TICKS: u64 = 100;

    struct Supervisor<'a> {
        task: CapSlot,
        untyped: CapSlot,
        ioports: CapSlot,
        interrupts: CapSlot,
        bootfs: CapSlot,
        fault: CapSlot,
        /// An endpoint nobody sends to: receiving on it with a timeout
        /// sleeps ([`Supervisor::tell`]).
        nap: CapSlot,
        /// The supervisor's badged capabilities to services, once made.
        service_caps: heapless::Vec<(usize, CapSlot), MAX_SERVICE_CAPS>,
        image: SystemImage<'a>,
        slots: Slots<SLOTS>,
        endpoints: heapless::Vec<CapSlot, { sysimage::manifest::MAX_ENDPOINTS }>,
        sched: [CapSlot; MAX_TASKS],
        /// The broker's notification of each VID it tells of deliveries.
        deliveries: [CapSlot; MAX_TASKS],
        tasks: [Running; MAX_TASKS],
        /// Fault injection's memory reports made so far ([`Supervisor::report_memory`]).
        memory_reports: u8,
        /// The soak's state (`[system] soak_kill_every_ms`), if it runs.
        soak: Option<Soak>,
    }

    /// The soak (`[system] soak_kill_every_ms`): a random running,
    /// restartable task is killed every `every` ticks; each one's recovery
    /// and, every [`SOAK_MEMORY_TICKS`] once the system is settled, the
    /// kernel's free memory are logged.
    struct Soak {
        every: u64,
        /// Clock value of the next kill.
        kill_at: u64,
        /// xorshift64 state, seeded from the TSC.
        random: u64,
        /// Clock value at which the next memory report is due.
        memory_at: u64,
    }

    /// How often the soak reports the kernel's free memory (ticks): the
    /// first moment after this that the system is settled.
    const SOAK_MEMORY_TICKS: u64 = 10 * abi::TICK_HZ;

    fn fatal(what: &str, e: ErrorCode) -> ! {
        log!("cannot {what}: {e:?}; the system cannot start");
        tessera_rt::arch::trap()
    }

    fn bits(r: Rights) -> u64 {
        u64::from(r.into_bits())
    }

    fn kind_name(kind: ObjectType) -> &'static str {
        match kind {
            ObjectType::ENDPOINT => "endpoint",
            ObjectType::IO_PORTS => "io-ports",
            ObjectType::SCHED_CONTEXT => "sched-context",
            ObjectType::MEMORY => "memory",
            ObjectType::NOTIFICATION => "notification",
            ObjectType::INTERRUPT => "interrupt",
            ObjectType::UNTYPED => "untyped",
            ObjectType::TASK => "task",
            _ => "object",
        }
    }

    pub fn main() {
        let need = |name, kind| caps::find(name, kind).unwrap_or_else(|| fatal(name, ErrorCode::INVALID_CAPABILITY));
        let ioports = need("ioports", ObjectType::IO_PORTS);
        tessera_rt::log::set_sink(Sink::Uart { ports: ioports, port: COM1 });
        let task = need("self", ObjectType::TASK);
        let untyped = need("untyped", ObjectType::UNTYPED);
        let bootfs = need("bootfs", ObjectType::MEMORY);
        log!("ring 3, root task; starting the system");

        let size =
            invoke(bootfs, Operation::CAP_IDENTIFY, &[]).unwrap_or_else(|e| fatal("size the boot image", e)).words()[3];
        let window = Window::map(task, bootfs, BOOTFS_AT, 0, size / PAGE, false)
            .unwrap_or_else(|e| fatal("map the boot image", e));
        // The kernel read only the bootfs header; the manifest is checked here.
        let image = SystemImage::parse(window.bytes()).unwrap_or_else(|e| {
            log!("bad boot image: {e}");
            fatal("parse the boot image", ErrorCode::INVALID_ARGUMENT)
        });
        log!(
            "system \"{}\": {} tasks, {} endpoints",
            image.manifest.system,
            image.manifest.tasks.len(),
            image.manifest.endpoints.len()
        );

        let mut slots = Slots::new(caps::first_unnamed_slot().0);
        let fault = slots.take().unwrap_or_else(|| fatal("find a slot", ErrorCode::OUT_OF_MEMORY));
        untyped::retype(untyped, ObjectType::ENDPOINT, fault, 0)
            .unwrap_or_else(|e| fatal("create the fault endpoint", e));
        let nap = slots.take().unwrap_or_else(|| fatal("find a slot", ErrorCode::OUT_OF_MEMORY));
        untyped::retype(untyped, ObjectType::ENDPOINT, nap, 0).unwrap_or_else(|e| fatal("create the nap endpoint", e));
        let mut s = Supervisor {
            task,
            untyped,
            ioports,
            interrupts: need("interrupts", ObjectType::INTERRUPT),
            bootfs,
            fault,
            nap,
            service_caps: heapless::Vec::new(),
            image,
            slots,
            endpoints: heapless::Vec::new(),
            sched: [CapSlot::NULL; MAX_TASKS],
            deliveries: [CapSlot::NULL; MAX_TASKS],
            tasks: Default::default(),
            memory_reports: 0,
            soak: None,
        };
        s.start_soak();
        s.create_shared_objects();
        // Its own `kill_every_ms` (a test's): it dies that long after its
        // start, in the fault loop ([`Supervisor::kill`]).
        let kill_every = u64::from(s.image.manifest.tasks[0].kill_every_ms);
        s.tasks[0].kill_at =
            (kill_every != 0).then(|| tessera_rt::ticks() + (kill_every * abi::TICK_HZ).div_ceil(1000));
        for i in 1..s.image.manifest.tasks.len() {
            s.start_or_report(TaskIndex(i as u8));
        }
        s.serve_faults()
    }

    impl Supervisor<'_> {
        fn slot(&mut self) -> Result<CapSlot, ErrorCode> {
            self.slots.take().ok_or(ErrorCode::OUT_OF_MEMORY)
        }

        /// Endpoints and scheduling contexts outlive task restarts: clients
        /// keep their capabilities when a server is restarted. Each context
        /// runs at its task's manifest priority, which is also its ceiling:
        /// the scheduler may lower a task or limit its budget, never raise
        /// it above the manifest (whose "calls go uphill" rule depends on
        /// it), and whatever the task makes gets no more than it runs with.
        /// Each is on its task's manifest CPU before the task first starts.
        fn create_shared_objects(&mut self) {
            for _ in 0..self.image.manifest.endpoints.len() {
                let slot = self.slot().unwrap_or_else(|e| fatal("find a slot", e));
                untyped::retype(self.untyped, ObjectType::ENDPOINT, slot, 0)
                    .unwrap_or_else(|e| fatal("create an endpoint", e));
                let _ = self.endpoints.push(slot);
            }
            for (i, task) in self.image.manifest.tasks.iter().enumerate().skip(1) {
                let slot = self.slots.take().unwrap_or_else(|| fatal("find a slot", ErrorCode::OUT_OF_MEMORY));
                untyped::retype(self.untyped, ObjectType::SCHED_CONTEXT, slot, 0)
                    .unwrap_or_else(|e| fatal("create a scheduling context", e));
                let params = [u64::from(task.priority.0), 0, 0];
                invoke(slot, Operation::SCHED_CONFIGURE, &params)
                    .unwrap_or_else(|e| fatal("configure a scheduling context", e));
                invoke(slot, Operation::SCHED_LIMIT, &params)
                    .unwrap_or_else(|e| fatal("set the ceiling of a scheduling context", e));
                place(task.name, slot, task.cpu);
                self.sched[i] = slot;
            }
            // Made once, like the endpoints: the broker's and the VID's
            // capabilities to it survive the other's restart.
            let notified: heapless::Vec<TaskIndex, MAX_TASKS> = self.image.manifest.notified_tasks().collect();
            for vid in notified {
                let slot = self.slot().unwrap_or_else(|e| fatal("find a slot", e));
                untyped::retype(self.untyped, ObjectType::NOTIFICATION, slot, 0)
                    .unwrap_or_else(|e| fatal("create a delivery notification", e));
                self.deliveries[usize::from(vid.0)] = slot;
            }
        }

        fn start_or_report(&mut self, index: TaskIndex) {
            if let Err(e) = self.start(index) {
                let name = self.image.manifest.tasks[usize::from(index.0)].name;
                log!("cannot start {name}: {e:?}");
                // It never ran: no healthy run to start the back-off afresh.
                self.tasks[usize::from(index.0)].started_at = tessera_rt::ticks();
                self.release(index);
                self.crashed(index);
            }
        }

        /// Builds a task from its binary: image, stack, memory, IPC buffer,
        /// capabilities, startup page, thread; then starts it.
        fn start(&mut self, index: TaskIndex) -> Result<(), ErrorCode> {
            // The servers started before it know what they are to know
            // first (the broker its partitions and connections before a
            // VID runs), unless one takes longer than `SETTLE_TICKS`.
            self.settle();
            let t = &self.image.manifest.tasks[usize::from(index.0)];
            let (name, priority, stack_size, memory_size) = (t.name, t.priority.0, t.stack, t.memory);
            let binary = self.image.binary(t).ok_or(ErrorCode::INVALID_ARGUMENT)?;
            let elf = elfload::plan(binary, layout::IMAGE_START..layout::IMAGE_END)
                .map_err(|_| ErrorCode::INVALID_ARGUMENT)?;

            let task = self.hold(index, ObjectType::TASK, 0)?;
            for segment in &elf.segments {
                let mem = self.hold(index, ObjectType::MEMORY, segment.pages)?;
                self.fill(mem, segment.offset_in_page, segment.data)?;
                let rights =
                    Rights::new().with_read(true).with_write(segment.writable).with_execute(segment.executable);
                map(task, mem, segment.start, rights, segment.pages)?;
            }
            let rw = Rights::new().with_read(true).with_write(true);
            let stack_pages = stack_size.div_ceil(PAGE).max(1);
            let stack = self.hold(index, ObjectType::MEMORY, stack_pages)?;
            map(task, stack, layout::STACK_TOP - stack_pages * PAGE, rw, stack_pages)?;
            let memory_pages = memory_size.div_ceil(PAGE);
            if memory_pages > 0 {
                let memory = self.hold(index, ObjectType::MEMORY, memory_pages)?;
                map(task, memory, layout::MEMORY, rw, memory_pages)?;
            }
            let ipc = self.hold(index, ObjectType::MEMORY, 1)?;
            map(task, ipc, layout::IPC_BUFFER, rw, 1)?;

            let mut startup = StartupInfo::empty();
            startup.tsc_hz = tessera_rt::startup::tsc_hz();
            let root = tessera_rt::startup::info();
            (startup.wall_clock, startup.wall_clock_tsc) = (root.wall_clock, root.wall_clock_tsc);
            startup.cpu_count = tessera_rt::startup::cpu_count();
            startup.siblings = tessera_rt::startup::siblings();
            startup.task_name = abi::startup::Name::new(name).ok_or(ErrorCode::INVALID_ARGUMENT)?;
            startup.ipc_buffer = layout::IPC_BUFFER;
            startup.memory_size = memory_pages * PAGE;
            let mut listing: heapless::String<LISTING> = heapless::String::new();
            self.install_caps(index, task, &mut startup, &mut listing)?;
            self.return_caps(index, task);
            self.tasks[usize::from(index.0)].task = Some(task);
            let page = self.hold(index, ObjectType::MEMORY, 1)?;
            let mut window = Window::map(self.task, page, SCRATCH_AT, 0, 1, true)?;
            let written = window.bytes_mut().and_then(|bytes| startup.write_to(bytes));
            window.unmap(self.task)?;
            written.ok_or(ErrorCode::INVALID_ARGUMENT)?;
            map(task, page, layout::STARTUP, Rights::new().with_read(true), 1)?;

            // Faults go to the supervisor, badged with the task's badge.
            let fault = self.slot()?;
            invoke(
                self.fault,
                Operation::CAP_MINT,
                &[u64::from(fault.0), bits(Rights::new().with_send(true)), badge_of(index)],
            )?;
            self.tasks[usize::from(index.0)].held.push(fault).map_err(|_| ErrorCode::OUT_OF_MEMORY)?;

            let thread = self.hold(index, ObjectType::THREAD, 0)?;
            self.tasks[usize::from(index.0)].thread = Some(thread);
            let sched = self.sched[usize::from(index.0)];
            let args = [
                u64::from(task.0),
                elf.entry,
                layout::STACK_TOP,
                layout::IPC_BUFFER,
                u64::from(fault.0),
                u64::from(sched.0),
                layout::STARTUP,
            ];
            invoke(thread, Operation::THREAD_CONFIGURE, &args)?;
            // Named on the console before its first line; the scheduler
            // hears of it once it runs (the scheduler's own start tells
            // it of every running task).
            let console = Some(index) == self.server_of(console_api::ENDPOINT);
            let running = &mut self.tasks[usize::from(index.0)];
            (running.untold, running.broker_step) = (Untold::CONSOLE | Untold::SCHEDULER | Untold::BROKER, 0);
            if !console {
                self.tell_of(index, Untold::CONSOLE, PATIENCE);
            }
            invoke(thread, Operation::THREAD_START, &[])?;
            self.tell_of(index, Untold::CONSOLE | Untold::SCHEDULER | Untold::BROKER, PATIENCE);
            if Some(index) == self.server_of(console_api::ENDPOINT) {
                // A console (re)started knows no names: every task's again.
                // Patience for the first it names (the console gets to
                // its receive); the rest wait for the fault loop's retry
                // if the console is busy.
                let mut patience = PATIENCE;
                for i in 1..self.image.manifest.tasks.len() {
                    if i != usize::from(index.0) && self.running(TaskIndex(i as u8)) {
                        self.tasks[i].untold |= Untold::CONSOLE;
                        if self.tell_of(TaskIndex(i as u8), Untold::CONSOLE, patience) != 0 {
                            patience = 1;
                        }
                    }
                }
            }
            log!("started {name}: ring 3, priority {priority}, caps: {listing}");
            let t = &self.image.manifest.tasks[usize::from(index.0)];
            let (kill_every, limit) = (u64::from(t.kill_every_ms), u32::from(t.kill_limit));
            let running = &mut self.tasks[usize::from(index.0)];
            running.started_at = tessera_rt::ticks();
            let more = limit == 0 || running.kills < limit;
            running.kill_at = (kill_every != 0 && more)
                .then(|| running.started_at + (kill_every * abi::TICK_HZ).div_ceil(1000).max(1));
            Ok(())
        }

        /// The task serving endpoint `name`, if any.
        fn server_of(&self, name: &str) -> Option<TaskIndex> {
            self.image.manifest.endpoints.iter().find(|e| e.name == name).map(|e| e.server)
        }

        /// Whether task `index` runs (started, not torn down since).
        fn running(&self, index: TaskIndex) -> bool {
            index.0 != 0 && self.tasks.get(usize::from(index.0)).is_some_and(|r| !r.held.is_empty())
        }

        /// Tells the console and the scheduler what they are still to hear
        /// of task `index` (its [`Untold`] bits). The supervisor never waits
        /// on a server, which it may have to restart itself: a call the
        /// server is not ready for (WOULD_BLOCK) stays untold and is tried
        /// again within [`RETRY_TICKS`]; one to a server that is not running
        /// is dropped (its start tells it everything).
        fn tell(&mut self, index: TaskIndex) {
            self.tell_of(index, Untold::CONSOLE | Untold::SCHEDULER | Untold::BROKER, 1);
        }

        /// Tells every running task's untold bits, napping a tick between
        /// rounds, until all are told or [`SETTLE_TICKS`] have passed.
        fn settle(&mut self) {
            let until = tessera_rt::ticks() + SETTLE_TICKS;
            while !self.tell_untold() && tessera_rt::ticks() < until {
                let _ = recv_timeout(self.nap, 1);
            }
        }

        /// One round of [`tell`](Self::tell) for every task with something
        /// untold; whether everything is told now.
        fn tell_untold(&mut self) -> bool {
            for i in 1..self.image.manifest.tasks.len() {
                if self.tasks[i].untold != 0 {
                    self.tell(TaskIndex(i as u8));
                }
            }
            self.tasks.iter().all(|t| t.untold == 0)
        }

        /// [`tell`](Self::tell), of the `which` bits only, each tried up to
        /// `patience` times a tick apart; the bits still untold.
        fn tell_of(&mut self, index: TaskIndex, which: u8, patience: u32) -> u8 {
            let i = usize::from(index.0);
            // Each is asked a few times a tick apart (a server just started
            // gets to its receive): a task's lines carry its name, and the
            // scheduler knows it before it calls.
            for bit in [Untold::CONSOLE, Untold::SCHEDULER, Untold::BROKER].into_iter().filter(|b| which & b != 0) {
                for attempt in 0..patience {
                    if self.tasks[i].untold & bit == 0 {
                        break;
                    }
                    let told = match bit {
                        Untold::CONSOLE => self.name_on_console(index),
                        Untold::SCHEDULER => self.register_with_scheduler(index),
                        _ => self.declare_to_broker(index),
                    };
                    if told != Err(ErrorCode::WOULD_BLOCK) {
                        self.tasks[i].untold &= !bit;
                    } else if attempt + 1 < patience {
                        let _ = recv_timeout(self.nap, 1);
                    }
                }
            }
            self.tasks[i].untold & which
        }

        /// Tells the console which name lines from this task's badge carry.
        /// The supervisor's own console capability (badge 1, the only one
        /// the console accepts this from) is made when first needed.
        fn name_on_console(&mut self, index: TaskIndex) -> Result<(), ErrorCode> {
            if !self.server_of(console_api::ENDPOINT).is_some_and(|c| self.running(c)) {
                return Ok(());
            }
            let Some(console) = self.supervisor_cap(console_api::ENDPOINT) else { return Ok(()) };
            let name = self.image.manifest.tasks[usize::from(index.0)].name;
            let client = console_api::Client::new(tessera_rt::NoWait, console);
            if let Some(e) = outcome(client.name_client(badge_of(index), name.as_bytes()))? {
                log!("cannot name {name} on the console: {e}");
            }
            Ok(())
        }

        /// Tells the scheduler which task a badge is, so its `set_priority`
        /// can reach the task's scheduling context. Tasks that started before
        /// the scheduler are registered when it starts, and so is which VID
        /// runs each partition.
        fn register_with_scheduler(&mut self, index: TaskIndex) -> Result<(), ErrorCode> {
            let tasks = &self.image.manifest.tasks;
            let Some(scheduler) = tasks.iter().position(|t| t.name == supervisor::SCHEDULER_TASK) else {
                return Ok(());
            };
            let started = |i: usize| self.running(TaskIndex(i as u8));
            let which: heapless::Vec<usize, { sysimage::manifest::MAX_TASKS }> = if usize::from(index.0) == scheduler {
                (1..tasks.len()).filter(|&i| started(i)).collect()
            } else if started(scheduler) {
                core::iter::once(usize::from(index.0)).collect()
            } else {
                return Ok(());
            };
            let Some(endpoint) = self.supervisor_cap(scheduler_api::ENDPOINT) else { return Ok(()) };
            let client = scheduler_api::Client::new(tessera_rt::NoWait, endpoint);
            for i in which {
                let name = self.image.manifest.tasks[i].name;
                if let Some(e) = outcome(client.register_task(badge_of(TaskIndex(i as u8)), name.as_bytes()))? {
                    log!("cannot register {name} with the scheduler: {e}");
                }
            }
            // Which VID may attach each partition's VPs (classic parameters
            // at run time), told once the scheduler starts.
            if usize::from(index.0) == scheduler {
                for p in &self.image.manifest.partitions {
                    if let Some(e) = outcome(client.register_partition(badge_of(p.vid), p.name.as_bytes()))? {
                        log!("cannot register partition {} with the scheduler: {e}", p.name);
                    }
                }
            }
            Ok(())
        }

        /// When the broker (re)starts, tells it which VID runs each partition
        /// and declares the manifest's connections (a port and a
        /// connection each). Only the supervisor may: the manifest is the
        /// policy of who may talk to whom.
        fn declare_to_broker(&mut self, index: TaskIndex) -> Result<(), ErrorCode> {
            let i = usize::from(index.0);
            if self.image.manifest.broker() != Some(index) || !self.running(index) {
                return Ok(());
            }
            let Some(endpoint) = self.supervisor_cap(broker_api::ENDPOINT) else { return Ok(()) };
            let client = broker_api::Client::new(tessera_rt::NoWait, endpoint);
            let manifest = &self.image.manifest;
            let parties: heapless::Vec<TaskIndex, { sysimage::manifest::MAX_TASKS }> =
                manifest.task_parties().collect();
            let (partitions, tasks) = (manifest.partitions.len(), parties.len());
            // One step each: that it started again (if it did: partitions
            // ran meanwhile), the partitions, the task parties, then a port
            // and its connection per connection. A step the broker was not
            // ready for is where the next try begins.
            let again = self.tasks[i].backoff.total() > 0;
            let steps = 1 + partitions + tasks + 2 * manifest.connections.len();
            while self.tasks[i].broker_step < steps {
                let step = self.tasks[i].broker_step;
                if step == 0 {
                    let said = if again { outcome(client.started_again())? } else { None };
                    if let Some(e) = said {
                        log!("cannot tell the broker it started again: {e}");
                    }
                    self.tasks[i].broker_step = 1;
                    continue;
                }
                let step = step - 1;
                let (result, skip) = if step < partitions {
                    let p = &manifest.partitions[step];
                    let r = client.register_partition(badge_of(p.vid), step as u64, u32::from(p.vcpus));
                    (r, 1)
                } else if step < partitions + tasks {
                    let t = parties[step - partitions];
                    (client.register_partition(badge_of(t), broker_party(Party::Task(t)), 1), 1)
                } else {
                    let c = &manifest.connections[(step - partitions - tasks) / 2];
                    let (from, to) = (broker_party(c.from), broker_party(c.to));
                    if (step - partitions - tasks).is_multiple_of(2) {
                        let port = client.create_port(
                            to,
                            c.port_id,
                            from,
                            c.port_type.tlfs(),
                            u32::from(c.target_vp),
                            u32::from(c.sint),
                            u32::from(c.flag),
                            u32::from(c.flag_count),
                        );
                        // Without its port, the connection is not declared.
                        (port, 2)
                    } else {
                        (client.connect_port(from, c.connection_id, to, c.port_id), 1)
                    }
                };
                let failed = outcome(result)?;
                if let Some(e) = &failed {
                    log!("cannot declare step {step} of {} to the broker: {e}", steps - 1);
                }
                self.tasks[i].broker_step = 1 + step + if failed.is_some() { skip } else { 1 };
            }
            // Every VID the broker delivers to looks at it now: a broker
            // started again asks each for its partitions' SynIC state at
            // their next fetch (they ran meanwhile; a VID told the broker
            // before is not told again otherwise).
            for &notification in self.deliveries.iter().filter(|n| **n != CapSlot::NULL) {
                let _ = tessera_rt::signal(notification, 1);
            }
            Ok(())
        }

        /// The supervisor's own capability (badge 1) to a service endpoint,
        /// minted when first needed.
        fn supervisor_cap(&mut self, endpoint_name: &str) -> Option<CapSlot> {
            let endpoint = self.image.manifest.endpoints.iter().position(|e| e.name == endpoint_name)?;
            if let Some(&(_, slot)) = self.service_caps.iter().find(|(e, _)| *e == endpoint) {
                return Some(slot);
            }
            let slot = self.slot().ok()?;
            let send = bits(Rights::new().with_send(true));
            let mint = [u64::from(slot.0), send, badge_of(TaskIndex(0))];
            if invoke(self.endpoints[endpoint], Operation::CAP_MINT, &mint).is_err() {
                self.slots.give_back(slot);
                return None;
            }
            let _ = self.service_caps.push((endpoint, slot));
            Some(slot)
        }

        /// Creates an object for task `index` and remembers it for teardown.
        fn hold(&mut self, index: TaskIndex, kind: ObjectType, pages: u64) -> Result<CapSlot, ErrorCode> {
            let untyped = self.untyped;
            self.hold_with(index, |slot| untyped::retype(untyped, kind, slot, pages))
        }

        /// Makes an object for task `index` with `make` in a fresh slot, and
        /// remembers it for teardown.
        fn hold_with(
            &mut self,
            index: TaskIndex,
            make: impl FnOnce(CapSlot) -> Result<(), ErrorCode>,
        ) -> Result<CapSlot, ErrorCode> {
            let slot = self.slot()?;
            if let Err(e) = make(slot) {
                self.slots.give_back(slot);
                return Err(e);
            }
            if self.tasks[usize::from(index.0)].held.push(slot).is_err() {
                let _ = invoke(slot, Operation::CAP_DELETE, &[]);
                self.slots.give_back(slot);
                return Err(ErrorCode::OUT_OF_MEMORY);
            }
            Ok(slot)
        }

        /// Copies `data` into a memory object at `offset` through a scratch window.
        fn fill(&mut self, memory: CapSlot, offset: u64, data: &[u8]) -> Result<(), ErrorCode> {
            let pages = (offset + data.len() as u64).div_ceil(PAGE).max(1);
            let mut window = Window::map(self.task, memory, SCRATCH_AT, 0, pages, true)?;
            if let Some(bytes) = window.bytes_mut() {
                bytes[offset as usize..offset as usize + data.len()].copy_from_slice(data);
            }
            window.unmap(self.task)
        }

        /// Puts the manifest's capabilities into the task's slots 1, 2, …
        fn install_caps(
            &mut self,
            index: TaskIndex,
            task: CapSlot,
            startup: &mut StartupInfo,
            listing: &mut heapless::String<LISTING>,
        ) -> Result<(), ErrorCode> {
            let plan = grants(&self.image.manifest, index).map_err(|_| ErrorCode::INVALID_ARGUMENT)?;
            let mut irq_notification = CapSlot::NULL;
            for (i, grant) in plan.iter().enumerate() {
                let dest = CapSlot(i as u32 + 1);
                let (source, rights, badge, kind) = match grant.source {
                    Source::Serve(ep) => (
                        self.endpoints[usize::from(ep.0)],
                        endpoint_rights(&self.image.manifest, index, ep, true),
                        0,
                        ObjectType::ENDPOINT,
                    ),
                    Source::Use(ep) => {
                        let (to, badge) = use_source(&self.image.manifest, index, ep);
                        (
                            self.endpoints[usize::from(to.0)],
                            endpoint_rights(&self.image.manifest, index, to, false),
                            badge,
                            ObjectType::ENDPOINT,
                        )
                    }
                    Source::Io(range) => {
                        let slot = self.slot()?;
                        invoke(
                            self.ioports,
                            Operation::IO_PORTS_RANGE,
                            &[u64::from(range.base), u64::from(range.count), u64::from(slot.0)],
                        )?;
                        self.tasks[usize::from(index.0)].held.push(slot).map_err(|_| ErrorCode::OUT_OF_MEMORY)?;
                        (slot, Rights::new().with_read(true).with_write(true), 0, ObjectType::IO_PORTS)
                    }
                    Source::Sched(other) => (
                        self.sched[usize::from(other.0)],
                        Rights::new().with_control(true),
                        0,
                        ObjectType::SCHED_CONTEXT,
                    ),
                    Source::OwnTask => (task, Rights::new().with_control(true), 0, ObjectType::TASK),
                    Source::Deliveries { vid, signal } => {
                        let rights =
                            if signal { Rights::new().with_send(true) } else { Rights::new().with_receive(true) };
                        (self.deliveries[usize::from(vid.0)], rights, 0, ObjectType::NOTIFICATION)
                    }
                    Source::BootImage => (self.bootfs, Rights::new().with_read(true), 0, ObjectType::MEMORY),
                    Source::Untyped { pages, objects } => {
                        let from = self.untyped;
                        let pool = if self.keeps_caps(index) {
                            match self.tasks[usize::from(index.0)].pool {
                                Some(pool) => pool,
                                None => {
                                    let pool = self.slot()?;
                                    let made = untyped::retype_pool(from, pool, pages, objects);
                                    made.inspect_err(|_| self.slots.give_back(pool))?;
                                    *self.tasks[usize::from(index.0)].pool.insert(pool)
                                }
                            }
                        } else {
                            self.hold_with(index, |slot| untyped::retype_pool(from, slot, pages, objects))?
                        };
                        (pool, Rights::ALL, 0, ObjectType::UNTYPED)
                    }
                    Source::IrqNotification => {
                        let ntf = self.hold(index, ObjectType::NOTIFICATION, 0)?;
                        irq_notification = ntf;
                        (ntf, Rights::new().with_receive(true), 0, ObjectType::NOTIFICATION)
                    }
                    Source::Irq { gsi, bit } => {
                        let line = self.slot()?;
                        invoke(self.interrupts, Operation::IRQ_ISSUE, &[u64::from(gsi), u64::from(line.0)])?;
                        self.tasks[usize::from(index.0)].held.push(line).map_err(|_| ErrorCode::OUT_OF_MEMORY)?;
                        invoke(line, Operation::IRQ_BIND, &[u64::from(irq_notification.0), u64::from(bit)])?;
                        // The task may only acknowledge the line, not rebind it.
                        (line, Rights::new(), 0, ObjectType::INTERRUPT)
                    }
                };
                invoke(
                    task,
                    Operation::TASK_INSTALL_CAP,
                    &[u64::from(source.0), u64::from(dest.0), bits(rights), badge],
                )?;
                if !startup.push(&grant.name, dest, kind) {
                    return Err(ErrorCode::OUT_OF_MEMORY);
                }
                let _ = write!(listing, "{}{}({})", if i == 0 { "" } else { ", " }, grant.name, kind_name(kind));
            }
            if plan.is_empty() {
                let _ = listing.push_str("none");
            }
            Ok(())
        }

        /// Revokes and deletes everything held for a task; the task, its
        /// threads and its capabilities go with the last capability to the
        /// task. Revoking first reaches the copies the task holds itself:
        /// its `self`, or its untyped in a task it made that holds itself,
        /// would otherwise keep the task, its pool and all made from it.
        /// The partition manager's own capabilities are kept first
        /// ([`Running::kept`]), and its pool is not held ([`Running::pool`]).
        fn release(&mut self, index: TaskIndex) {
            if self.keeps_caps(index) {
                self.keep_caps(index);
            }
            let running = &mut self.tasks[usize::from(index.0)];
            running.untold = 0;
            (running.task, running.thread) = (None, None);
            let held = core::mem::take(&mut running.held);
            for slot in held.iter().rev() {
                let _ = invoke(*slot, Operation::CAP_REVOKE, &[]);
                let _ = invoke(*slot, Operation::CAP_DELETE, &[]);
                self.slots.give_back(*slot);
            }
        }

        /// Whether the task is the partition manager of a system with
        /// partitions: its capabilities outlive its restarts (§5.2).
        fn keeps_caps(&self, index: TaskIndex) -> bool {
            let manifest = &self.image.manifest;
            !manifest.partitions.is_empty() && manifest.partition_manager() == Some(index)
        }

        /// Stops the partition manager's thread and moves every capability
        /// it made (its slots past the manifest's) into ours.
        fn keep_caps(&mut self, index: TaskIndex) {
            let running = &self.tasks[usize::from(index.0)];
            let (Some(task), thread) = (running.task, running.thread) else { return };
            if let Some(thread) = thread {
                let _ = invoke(thread, Operation::THREAD_SUSPEND, &[]);
            }
            let first = grants(&self.image.manifest, index).map_or(1, |g| g.len() as u32 + 1);
            for theirs in first..abi::limits::CSPACE_SLOTS {
                let Ok(ours) = self.slot() else {
                    log!("cannot keep the partition manager's capabilities past slot {theirs}: no free slot");
                    break;
                };
                let args = [u64::from(theirs), u64::from(ours.0), abi::invoke::MOVE_OUT_OF_TASK];
                let moved = invoke(task, Operation::TASK_MOVE_CAP, &args).is_ok();
                if !moved || self.tasks[usize::from(index.0)].kept.push((theirs, ours)).is_err() {
                    if moved {
                        let _ = invoke(ours, Operation::CAP_DELETE, &[]);
                    }
                    self.slots.give_back(ours);
                }
            }
            let name = self.image.manifest.tasks[usize::from(index.0)].name;
            log!("{name}: kept {} capabilities for its restart", self.tasks[usize::from(index.0)].kept.len());
        }

        /// Moves the capabilities kept at the partition manager's last
        /// teardown back into the same slots of its new task.
        fn return_caps(&mut self, index: TaskIndex, task: CapSlot) {
            let kept = core::mem::take(&mut self.tasks[usize::from(index.0)].kept);
            let mut lost = 0;
            for &(theirs, ours) in &kept {
                let args = [u64::from(theirs), u64::from(ours.0), abi::invoke::MOVE_INTO_TASK];
                if invoke(task, Operation::TASK_MOVE_CAP, &args).is_err() {
                    lost += 1;
                    let _ = invoke(ours, Operation::CAP_DELETE, &[]);
                }
                self.slots.give_back(ours);
            }
            if lost > 0 {
                log!("{lost} of the partition manager's kept capabilities could not be returned: deleted");
            }
        }

        fn crashed(&mut self, index: TaskIndex) {
            let task = &self.image.manifest.tasks[usize::from(index.0)];
            let running = &mut self.tasks[usize::from(index.0)];
            running.kill_at = None;
            let ran = tessera_rt::ticks().saturating_sub(running.started_at);
            match running.backoff.on_crash(task.restart, ran) {
                Decision::RestartAfter(delay) => {
                    let (row, total) = (running.backoff.restarts(), running.backoff.total());
                    if total == row {
                        log!("restarting {} in {delay} ticks (restart {row})", task.name);
                    } else {
                        log!("restarting {} in {delay} ticks (restart {row} in a row, {total} in all)", task.name);
                    }
                    running.restart_at = Some(tessera_rt::ticks() + delay);
                }
                Decision::GiveUp { restarts } => {
                    log!("{} keeps crashing: giving up after {restarts} restarts", task.name);
                }
                Decision::Never => log!("{} is not restarted (restart = \"never\")", task.name),
            }
        }

        /// Receives fault reports and runs due restarts, forever.
        fn serve_faults(mut self) -> ! {
            loop {
                let retry = self.tasks.iter().any(|t| t.untold != 0).then(|| tessera_rt::ticks() + RETRY_TICKS);
                let soak = self.soak.as_ref().map(|soak| soak.kill_at.min(soak.memory_at));
                let next =
                    self.tasks.iter().flat_map(|t| [t.restart_at, t.kill_at]).chain([retry, soak]).flatten().min();
                let wait = next.map_or(FOREVER, |at| at.saturating_sub(tessera_rt::ticks()).max(1));
                match recv_timeout(self.fault, wait) {
                    Ok(received) => self.on_fault(received.badge.0, received.message.words()),
                    Err(ErrorCode::TIMEOUT) => {}
                    Err(e) => log!("fault endpoint: {e:?}"),
                }
                let now = tessera_rt::ticks();
                for i in 0..self.image.manifest.tasks.len() {
                    if self.tasks[i].kill_at.is_some_and(|at| at <= now) {
                        self.kill(TaskIndex(i as u8));
                    }
                    if self.tasks[i].restart_at.is_some_and(|at| at <= now) {
                        self.tasks[i].restart_at = None;
                        self.start_or_report(TaskIndex(i as u8));
                    }
                }
                self.tell_untold();
                self.report_memory();
                self.soak_turn();
            }
        }

        /// Starts the soak if the manifest asks for one.
        fn start_soak(&mut self) {
            let ms = u64::from(self.image.manifest.soak_kill_every_ms);
            if ms == 0 {
                return;
            }
            let every = (ms * abi::TICK_HZ).div_ceil(1000).max(1);
            // xorshift64 must not start at 0.
            let seed = tessera_rt::arch::rdtsc() | 1;
            log!("soak: killing a random running, restartable task every {ms} ms (seed {seed:#x})");
            let now = tessera_rt::ticks();
            self.soak = Some(Soak { every, kill_at: now + every, random: seed, memory_at: now });
        }

        /// The soak's work in each turn of the fault loop: recoveries, the
        /// memory report when due and the system settled, the kill when due.
        fn soak_turn(&mut self) {
            let Some(soak) = self.soak.as_ref() else { return };
            let (kill_at, memory_at) = (soak.kill_at, soak.memory_at);
            self.soak_recovered();
            let now = tessera_rt::ticks();
            let settled =
                self.tasks.iter().all(|r| r.restart_at.is_none() && r.untold == 0 && r.soak_killed_at.is_none());
            if now >= memory_at && settled {
                self.soak_memory();
                if let Some(soak) = self.soak.as_mut() {
                    soak.memory_at = now + SOAK_MEMORY_TICKS;
                }
            }
            if now >= kill_at {
                self.soak_kill(now);
            }
        }

        /// Logs `NAME recovered in T ms` for each task the soak killed that
        /// is running again with nothing left to tell any server: it was
        /// started again, and the console, the scheduler and the broker
        /// have heard of it (its untold bits) and of everything a restarted
        /// server must relearn (every task's), as in `settle`.
        fn soak_recovered(&mut self) {
            if self.tasks.iter().any(|r| r.untold != 0) {
                return;
            }
            let now = tessera_rt::ticks();
            for i in 1..self.image.manifest.tasks.len() {
                let Some(killed_at) = self.tasks[i].soak_killed_at else { continue };
                if !self.running(TaskIndex(i as u8)) || self.tasks[i].restart_at.is_some() {
                    continue;
                }
                self.tasks[i].soak_killed_at = None;
                let ms = now.saturating_sub(killed_at) * 1000 / abi::TICK_HZ;
                log!("soak: {} recovered in {ms} ms", self.image.manifest.tasks[i].name);
            }
        }

        /// Kills a random running, restartable task (not the supervisor,
        /// not one still recovering from its last kill): as fault
        /// injection's [`kill`](Self::kill), with the same log line.
        fn soak_kill(&mut self, now: u64) {
            let manifest = &self.image.manifest;
            let candidates: heapless::Vec<TaskIndex, MAX_TASKS> = (1..manifest.tasks.len())
                .filter(|&i| manifest.tasks[i].restart != sysimage::manifest::Restart::Never)
                .filter(|&i| self.tasks[i].restart_at.is_none() && self.tasks[i].soak_killed_at.is_none())
                .map(|i| TaskIndex(i as u8))
                .filter(|&t| self.running(t))
                .collect();
            let Some(soak) = self.soak.as_mut() else { return };
            soak.kill_at = now + soak.every;
            // xorshift64 (Marsaglia).
            soak.random ^= soak.random << 13;
            soak.random ^= soak.random >> 7;
            soak.random ^= soak.random << 17;
            if candidates.is_empty() {
                log!("soak: no running, restartable task to kill");
                return;
            }
            let victim = candidates[(soak.random % candidates.len() as u64) as usize];
            self.tasks[usize::from(victim.0)].soak_killed_at = Some(now);
            self.kill(victim);
        }

        /// The kernel's free bytes and what is left of the supervisor's
        /// pool, once two readings a few ticks apart agree (at most
        /// [`MEMORY_READS`]): what a teardown gave back is freed when the
        /// dead task's threads are off every CPU, a little later.
        fn memory(&self) -> Result<(u64, u64), ErrorCode> {
            let read = || {
                invoke(self.untyped, Operation::CAP_IDENTIFY, &[]).map(|r| {
                    let free = r.words().get(abi::invoke::IDENTIFY_UNTYPED_WORDS - 1).copied().unwrap_or(0);
                    (free, r.words().get(3).copied().unwrap_or(0))
                })
            };
            let mut last = read()?;
            for _ in 0..MEMORY_READS {
                let _ = recv_timeout(self.nap, 2);
                let now = read()?;
                if now == last {
                    break;
                }
                last = now;
            }
            Ok(last)
        }

        /// The soak's memory line: the kernel's free memory and what is left
        /// of the supervisor's pool, read while the system is settled.
        fn soak_memory(&self) {
            match self.memory() {
                Ok((free, pool)) => {
                    log!("kernel memory: {free} bytes free, {pool} bytes left in the supervisor's pool (soak)")
                }
                Err(e) => log!("kernel memory: cannot read it: {e:?}"),
            }
        }

        /// With fault injection, reports the kernel's free memory and what
        /// is left of the supervisor's pool twice: once every task it
        /// kills has been killed and restarted once, and once it has been
        /// killed for the last time and restarted (with nothing left to
        /// tell a server), so a test can see that the restarts in between
        /// leaked nothing.
        fn report_memory(&mut self) {
            let tasks = &self.image.manifest.tasks;
            let injected = || tasks.iter().zip(&self.tasks).skip(1).filter(|(t, _)| t.kill_every_ms != 0);
            let settled = self.tasks.iter().all(|r| r.restart_at.is_none() && r.untold == 0)
                && injected().all(|(_, r)| !r.held.is_empty());
            if injected().next().is_none() || !settled {
                return;
            }
            let (label, due) = match self.memory_reports {
                0 => ("after the first restart of every task killed", injected().all(|(_, r)| r.kills >= 1)),
                1 => {
                    ("after the last", injected().all(|(t, r)| t.kill_limit != 0 && r.kills >= u32::from(t.kill_limit)))
                }
                _ => return,
            };
            if !due {
                return;
            }
            self.memory_reports += 1;
            match self.memory() {
                Ok((free, pool)) => {
                    log!("kernel memory: {free} bytes free, {pool} bytes left in the supervisor's pool ({label})")
                }
                Err(e) => log!("kernel memory: cannot read it: {e:?}"),
            }
        }

        /// Fault injection (`kill_every_ms`): ends the task as a crash would.
        /// The supervisor's own ends the supervisor itself, with a real
        /// fault (ud2), as a bug would: the kernel meets its death.
        fn kill(&mut self, index: TaskIndex) {
            if index.0 == 0 {
                log!("fault injection: the supervisor faults on purpose (ud2)");
                tessera_rt::arch::trap()
            }
            let running = &mut self.tasks[usize::from(index.0)];
            running.kills += 1;
            let (kills, ran) = (running.kills, tessera_rt::ticks().saturating_sub(running.started_at));
            let name = self.image.manifest.tasks[usize::from(index.0)].name;
            log!("fault injection: killing {name} after {ran} ticks (kill {kills})");
            self.release(index);
            self.crashed(index);
        }

        fn on_fault(&mut self, badge: u64, words: &[u64]) {
            let Some(index) = task_of(badge, &self.image.manifest) else {
                log!("fault report with unknown badge {badge}");
                return;
            };
            let name = self.image.manifest.tasks[usize::from(index.0)].name;
            match FaultMessage::from_words(words) {
                Some(f) => log!(
                    "{name} faulted: {} (vector {}, error {:#x}) at rip {:#x}, address {:#x}",
                    exception_name(f.vector),
                    f.vector,
                    f.error_code,
                    f.rip,
                    f.address
                ),
                None => log!("{name} faulted (malformed report)"),
            }
            self.release(index);
            self.crashed(index);
        }
    }

    /// Puts task `name`'s scheduling context `context` on CPU `cpu` (its
    /// manifest `cpu`); on a machine without that CPU the task stays on
    /// the boot CPU, which is logged, and the system starts as it would.
    fn place(name: &str, context: CapSlot, cpu: u8) {
        if cpu == 0 {
            return;
        }
        match invoke(context, Operation::SCHED_SET_CPU, &[u64::from(cpu)]) {
            Ok(_) => log!("{name} runs on CPU {cpu}"),
            Err(e) => log!(
                "{name} stays on CPU 0: it cannot go to CPU {cpu} ({e:?}; CPUs online: {})",
                tessera_rt::startup::cpu_count()
            ),
        }
    }

    /// A non-blocking call's outcome (`tessera_rt::NoWait`): WOULD_BLOCK
    /// if the server was not at its receive; otherwise its failure as text
    /// (`None` on success).
    fn outcome<T, S: core::fmt::Debug>(
        result: Result<Result<T, S>, CallError>,
    ) -> Result<Option<heapless::String<64>>, ErrorCode> {
        let mut text = heapless::String::new();
        match result {
            Err(CallError::Kernel(ErrorCode::WOULD_BLOCK)) => return Err(ErrorCode::WOULD_BLOCK),
            Ok(Ok(_)) => return Ok(None),
            Ok(Err(e)) => _ = write!(text, "{e:?}"),
            Err(e) => _ = write!(text, "{e:?}"),
        }
        Ok(Some(text))
    }

    fn map(task: CapSlot, memory: CapSlot, at: u64, rights: Rights, pages: u64) -> Result<(), ErrorCode> {
        invoke(task, Operation::TASK_MAP, &[u64::from(memory.0), at, bits(rights), pages]).map(drop)
    }
}
