//! The VID task: the VMM for its partitions. At start it runs the
//! manifest's partitions (answering its "vid" endpoint while they run), or
//! the demo partition (a small real-mode guest) when it has none but holds
//! untyped memory, then serves the "vid" endpoint (see the library for the
//! logic).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("vid is a Tessera task; it runs only on the bare target (x86_64-unknown-none).");
}

#[cfg(target_os = "none")]
mod partitions;

#[cfg(target_os = "none")]
mod task {
    use abi::{CapSlot, ErrorCode, ObjectType, Rights, labels};
    use tessera_rt::memory::Window;
    use tessera_rt::untyped::retype;
    use tessera_rt::{Message, Operation, caps, invoke, log};
    use tlfs::{HvMessage, HvRegisterName};
    use vid::exits::{
        Action, BENCH_EXITS, BENCH_GUEST, BENCH_PORT, DEMO_GUEST, DEMO_LOAD, GuestConsole, NoGuest, Stop, Vmm,
    };
    use vid::host::NoServices;
    use vid_api::ENDPOINT;

    /// Guest RAM of the demo partition.
    const DEMO_PAGES: u64 = 16;
    /// Where the VID maps guest memory to load it.
    const WINDOW_AT: u64 = 0x5000_0000;
    /// The badge of the demo VP's exit capability.
    const DEMO_VP_BADGE: u64 = 1;

    pub fn main() {
        let name = tessera_rt::startup::task_name();
        let endpoint = caps::endpoint(ENDPOINT).or_else(|| caps::endpoint(name)).expect("no endpoint to serve");
        let serving = if caps::endpoint(ENDPOINT).is_some() { ENDPOINT } else { name };
        if let Some(untyped) = caps::find("untyped", ObjectType::UNTYPED) {
            // A VID task named "vid-bench" runs the exit benchmark instead.
            let guest = if tessera_rt::startup::task_name() == "vid-bench" { Guest::Bench } else { Guest::Demo };
            let mut slots = crate::partitions::Slots(caps::first_unnamed_slot().0);
            let own_task = caps::find("self", ObjectType::TASK);
            // Returns only if there are none (or they could not be set up).
            let ready = format_args!("ready, serving {serving}");
            let partitions =
                match own_task.map(|task| crate::partitions::run(untyped, task, endpoint, ready, &mut slots)) {
                    Some(Ok(())) | None => false,
                    Some(Err(e)) => {
                        log!("partitions: {e:?}");
                        true
                    }
                };
            let outcome = if partitions { Ok(()) } else { run_demo(untyped, guest, &mut slots) };
            match outcome {
                Ok(()) => {}
                Err(ErrorCode::INVALID_OPERATION) => {
                    log!(
                        "demo partition: the kernel cannot run guests on this CPU (it needs AMD SVM with NPT or Intel VMX with EPT)"
                    )
                }
                Err(e) => log!("demo partition: {e:?}"),
            }
        }
        log!("ready, serving {serving}");
        // No partitions: the interface has none to tell of.
        let kernel = crate::partitions::TaskKernel(endpoint);
        tessera_rt::serve(endpoint, |caller, message| {
            let request = core::mem::replace(message, Message::new(0));
            *message = vid::serve::answer(&kernel, &NoServices, &mut [], caller.0, request);
        });
    }

    fn bits(r: Rights) -> u64 {
        u64::from(r.into_bits())
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Guest {
        Demo,
        Bench,
    }

    /// Builds the demo partition, runs its VP to the end, and reports.
    fn run_demo(untyped: CapSlot, guest: Guest, slots: &mut crate::partitions::Slots) -> Result<(), ErrorCode> {
        let code = if guest == Guest::Bench { BENCH_GUEST } else { DEMO_GUEST };
        let own_task = caps::find("self", ObjectType::TASK);
        let (memory, partition, vp, exits, exit_cap) =
            (slots.next(), slots.next(), slots.next(), slots.next(), slots.next());
        retype(untyped, ObjectType::MEMORY, memory, DEMO_PAGES)?;
        retype(untyped, ObjectType::PARTITION, partition, 0)?;
        retype(untyped, ObjectType::VP, vp, 0)?;
        retype(untyped, ObjectType::ENDPOINT, exits, 0)?;
        invoke(
            exits,
            Operation::CAP_MINT,
            &[u64::from(exit_cap.0), bits(Rights::new().with_send(true)), DEMO_VP_BADGE],
        )?;

        // Load the guest through a window in the VID's own address space.
        let task = own_task.ok_or(ErrorCode::INVALID_CAPABILITY);
        let mut window = match task {
            Ok(task) => Window::map(task, memory, WINDOW_AT, 0, DEMO_PAGES, true)?,
            Err(_) => return load_without_self(),
        };
        if let Some(bytes) = window.bytes_mut() {
            bytes[DEMO_LOAD as usize..DEMO_LOAD as usize + code.len()].copy_from_slice(code);
        }
        window.unmap(task?)?;

        let rwx = Rights::new().with_read(true).with_write(true).with_execute(true);
        invoke(partition, Operation::PARTITION_MAP, &[u64::from(memory.0), 0, bits(rwx), DEMO_PAGES])?;
        invoke(vp, Operation::VP_CONFIGURE, &[u64::from(partition.0), 0])?;
        invoke(vp, Operation::VP_SET_HANDLER, &[u64::from(exit_cap.0), 0])?;
        let name = |n: HvRegisterName| u64::from(n.0);
        invoke(
            vp,
            Operation::VP_SET_REGISTERS,
            &[2, name(HvRegisterName::RIP), DEMO_LOAD, 0, name(HvRegisterName::RSP), 0x8000, 0],
        )?;
        log!("demo: real-mode guest at {DEMO_LOAD:#x}, {} KiB of RAM; starting its VP", DEMO_PAGES * 4);
        invoke(vp, Operation::VP_START, &[])?;
        serve_exits(exits, guest)
    }

    /// The VID cannot map memory without its own task capability.
    fn load_without_self() -> Result<(), ErrorCode> {
        log!("demo: no \"self\" task capability to load the guest with");
        Err(ErrorCode::INVALID_CAPABILITY)
    }

    /// Handles the demo VP's exits until it stops.
    fn serve_exits(exits: CapSlot, guest: Guest) -> Result<(), ErrorCode> {
        let mut console = GuestConsole::default();
        let mut vmm = Vmm::new();
        let mut exits_seen = 0u64;
        let mut bench = Bench::default();
        let mut received = tessera_rt::recv(exits)?;
        loop {
            exits_seen += 1;
            let words = received.message.words();
            if guest == Guest::Bench {
                bench.on_exit(words);
            }
            let action = match HvMessage::from_words(words) {
                Ok(message) if received.message.label() == labels::VM_EXIT => {
                    vmm.handle(&message, &mut NoGuest, 0, |e| {
                        let vid::exits::Event::Console(b) = e else { return };
                        if let Some(line) = console.byte(b) {
                            log!("demo: {}", core::str::from_utf8(&line).unwrap_or("?"));
                        }
                    })
                }
                _ => Action::Stop(Stop::Failed { message_type: 0, rip: 0 }),
            };
            let label = if matches!(action, Action::Halt(_)) { labels::VP_HALT } else { labels::VP_RESUME };
            let mut reply = Message::new(label);
            match action {
                Action::Resume(updates) | Action::Halt(updates) => {
                    let _ = reply.push(updates.len() as u64);
                    for (register, value) in updates {
                        let _ = reply.push(u64::from(register.0));
                        let _ = reply.push(value);
                        let _ = reply.push(0);
                    }
                }
                Action::Stop(stop) => {
                    report(stop, exits_seen);
                    bench.report();
                    reply.clear(labels::VP_STOP);
                    let _ = reply.push(0);
                    return tessera_rt::reply(&reply);
                }
            }
            received = tessera_rt::reply_recv(exits, &reply)?;
        }
    }

    /// Times forwarded exits: the guest writes port 0x80 in a tight loop,
    /// so the time between two such exits is one exit forwarded to the VID
    /// and back (plus the guest's two-instruction loop).
    #[derive(Default)]
    struct Bench {
        first: Option<u64>,
        last: u64,
        count: u64,
        min: u64,
        previous: u64,
    }

    impl Bench {
        fn on_exit(&mut self, words: &[u64]) {
            let now = tessera_rt::arch::rdtsc();
            let is_bench_port = HvMessage::from_words(words).ok().and_then(|m| match m.parse() {
                Ok(tlfs::HvMessageBody::X64IoPortIntercept(io)) => Some(io.port_number == BENCH_PORT),
                _ => None,
            });
            if is_bench_port != Some(true) {
                return;
            }
            if self.first.is_none() {
                self.first = Some(now);
                self.min = u64::MAX;
            } else {
                self.min = self.min.min(now - self.previous);
            }
            self.previous = now;
            self.last = now;
            self.count += 1;
        }

        fn report(&self) {
            let Some(first) = self.first.filter(|_| self.count > 1) else { return };
            let mean = (self.last - first) / (self.count - 1);
            log!(
                "bench: vm exit forwarded to the VID and back (port write): {mean} cycles (min {}) over {} exits",
                self.min,
                self.count - 1
            );
            if self.count != u64::from(BENCH_EXITS) {
                log!("bench: expected {BENCH_EXITS} port writes, saw {}", self.count);
            }
        }
    }

    fn report(stop: Stop, exits: u64) {
        match stop {
            Stop::TestExit { value } => {
                log!("demo: guest reported status {} through port 0xf4 after {exits} exits", (value << 1) | 1)
            }
            Stop::Halted { rip } => log!("demo: guest halted at {rip:#x} after {exits} exits"),
            Stop::Failed { message_type, rip } => {
                log!("demo: guest stopped: intercept {message_type:#x} at {rip:#x} is not handled")
            }
            Stop::Reset { rip, by } => log!("demo: guest reset by {by} at {rip:#x}"),
            Stop::PowerOff => log!("demo: guest powered off"),
        }
    }
}

tessera_rt::entry!(task::main);
