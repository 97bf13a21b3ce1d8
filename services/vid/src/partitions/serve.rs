//! The exit loop: every partition's VPs exit to one endpoint (the badge
//! names the partition and VP), and between exits the loop keeps the
//! partitions' time: it waits no longer than the earliest timer, posts the
//! interruptions that come due, wakes VPs halted for them, parks
//! application processors on INIT and starts them on SIPI, and passes
//! typed input to COM1.
//!
//! Every line a guest makes the VID print passes its partition's rate
//! limits ([`vid::logs`]); when a partition ends, the VID reports its exits
//! by kind, what it refused, and what the limits held back.

use super::{Broker, Connections, EXIT_STATE, MAX_VPS_PER_PARTITION, Registry, Running, View};
use abi::{CapSlot, ErrorCode, labels};
use core::fmt;
use tessera_rt::{Message, Operation, caps, invoke, log};
use tlfs::exit_state::TransferredState;
use tlfs::{HV_MESSAGE_WORDS, HvMessage, HvRegisterName};
use vid::exits::{Action, Event, Stop, Vmm};
use vid::logs::{Kind, Line, PartitionLogs};
use vid::messaging::{Delivered, Delivery};
use vid::root::{ApState, Busy, Op};

/// Prints a line the guest of partition `name` caused, if its rate limit
/// lets it through (saying first how many were held back); true if printed.
fn say(logs: &mut PartitionLogs, name: &str, kind: Kind, line: fmt::Arguments<'_>) -> bool {
    match logs.check(kind, tessera_rt::ticks()) {
        Line::Hold => false,
        Line::Print { held_back } => {
            if let Some(n) = held_back {
                log!("{name}: rate limit: {n} lines held back");
            }
            log!("{name}: {line}");
            true
        }
    }
}

/// Ends partition `r` because VP `v` stopped (`stop`): its other VPs are
/// stopped (`v` waits for the reply that stops it), the end and the VID's
/// report on the partition are logged, and the partition manager
/// finalizes it.
fn end(r: &mut Running, v: Option<usize>, stop: Stop, registry: &Registry) {
    let name = r.name;
    // An AP the root policy holds is not started in the kernel.
    let held = |i: usize| r.root.as_ref().is_some_and(|p| p.held(i));
    for (i, other) in r.vps.iter().enumerate().filter(|(i, vp)| Some(*i) != v && vp.started && !held(*i)) {
        let stopped = invoke(other.cap, Operation::VP_SUSPEND, &[]);
        if stopped.is_err() {
            log!("{name}: VP {i} could not be stopped: {stopped:?}");
        }
    }
    log!("{name}: {stop} after {} exits", r.exits);
    log!("{name}: {}", r.vmm.stats.exits());
    log!("{name}: {}", r.vmm.stats.refused());
    if let Some((console, other)) = r.logs.held_back() {
        log!("{name}: rate limit: {console} console lines and {other} other lines held back in all");
    }
    registry.stopped(name, r.managed);
    r.stopped = true;
}

/// The root policy's decisions for one partition.
type Ops = heapless::Vec<Op, MAX_VPS_PER_PARTITION>;

/// Carries out the root policy's decisions on partition `r`'s VPs.
fn apply(r: &mut Running, ops: &[Op]) {
    for &op in ops {
        let (v, operation) = match op {
            Op::Start(v) => (v, Operation::VP_START),
            Op::Suspend(v) => (v, Operation::VP_SUSPEND),
        };
        let Some(vp) = r.vps.get(v) else { continue };
        if let Err(e) = invoke(vp.cap, operation, &[]) {
            if let (Op::Suspend(_), Some(policy)) = (op, r.root.as_mut()) {
                policy.suspend_failed(v);
            }
            say(&mut r.logs, r.name, Kind::Event, format_args!("root scheduler: {op:?} failed: {e:?}"));
        }
    }
}

/// Root policy: VP 0 halted with nothing pending, so the APs it holds run.
fn vp0_halts(r: &mut Running) {
    let mut ops = Ops::new();
    if let Some(policy) = r.root.as_mut() {
        policy.vp0_halts(|op| {
            let _ = ops.push(op);
        });
    }
    apply(r, &ops);
}

/// Root policy: VP 0 is about to run, so the APs are held first (`Err`:
/// AP `exited` of this partition waits for the loop's reply and runs on
/// after it; VP 0 must wait for that reply).
fn vp0_runs(r: &mut Running, exited: Option<usize>) -> Result<(), Busy> {
    let Some(policy) = r.root.as_mut() else { return Ok(()) };
    let aps = r.vps.iter().enumerate().map(|(index, vp)| ApState { index, started: vp.started, halted: vp.halted });
    let mut ops = Ops::new();
    policy.vp0_runs(aps, exited, |op| {
        let _ = ops.push(op);
    })?;
    apply(r, &ops);
    Ok(())
}

/// The reply to an exit: the action's label and its register updates
/// (count, then (name, low, high) triples), 128-bit ones included.
fn reply_for(action: &Action, vmm: &mut Vmm, reply: &mut Message) {
    let (label, updates) = match action {
        Action::Resume(u) => (labels::VP_RESUME, Some(u)),
        Action::Halt(u) => (labels::VP_HALT, Some(u)),
        Action::Stop(_) => (labels::VP_STOP, None),
    };
    reply.clear(label);
    let wide = core::mem::take(&mut vmm.wide);
    let Some(updates) = updates else {
        let _ = reply.push(0);
        return;
    };
    let _ = reply.push((updates.len() + wide.len()) as u64);
    let narrow = updates.iter().map(|&(register, value)| (register, value, 0));
    for (register, low, high) in narrow.chain(wide) {
        for word in [u64::from(register.0), low, high] {
            let _ = reply.push(word);
        }
    }
}

/// Handles exits of every running partition until all have stopped, and
/// between exits keeps their timers: it waits for the next exit no longer
/// than the earliest timer (a TSC deadline the kernel wakes it at, not
/// rounded to its ticks; the loop's own rechecks and input polls stay in
/// ticks), posts the interruptions that fire, and wakes VPs halted for
/// them.
pub(super) fn serve(
    exits: CapSlot,
    running: &mut [Running],
    registry: &Registry,
    broker: Option<&Broker>,
) -> Result<(), ErrorCode> {
    let mut live = running.len();
    let tick_tsc = (tessera_rt::startup::tsc_hz() / abi::TICK_HZ).max(1);
    let min_wait = (tessera_rt::startup::tsc_hz() / MIN_WAIT_PER_SECOND).max(1);
    let mut input = Input::find();
    let mut received = tessera_rt::recv(exits).map(Some);
    loop {
        let now = tessera_rt::arch::rdtsc();
        // The loop's own clock for prompts and typed input: ticks of the
        // TSC, read without a syscall at every exit.
        let tick = now / tick_tsc;
        show_prompts(running, tick);
        // Before the exit is handled, so its VP's reply carries what
        // arrived for it.
        // Bound, the receive took the broker's signal (below); else polled.
        if let Some(broker) = broker.filter(|b| b.events.is_some()) {
            deliver(broker, !broker.bound && broker.signalled(), running);
        }
        let mut reply = None;
        let mut exited = None;
        let mut brokered = false;
        // The broker's bound notification ended the wait: no exit.
        let exit = match received? {
            Some(r) if r.message.label() == labels::NOTIFICATION => {
                if let Some(broker) = broker.filter(|b| b.events.is_some()) {
                    deliver(broker, true, running);
                }
                None
            }
            other => other,
        };
        if let Some(received) = exit {
            let badge = received.badge.0.wrapping_sub(1) as usize;
            let (k, v) = (badge / MAX_VPS_PER_PARTITION, badge % MAX_VPS_PER_PARTITION);
            let mut message = Message::new(labels::VP_STOP);
            let _ = message.push(0);
            let words = received.message.words();
            let (head, state) = words.split_at(words.len().min(HV_MESSAGE_WORDS));
            // Exits of a partition that ended leave their VP stopped.
            let known = running.get(k).is_some_and(|r| v < r.vps.len() && !r.stopped);
            if let (true, Ok(hv)) = (known, HvMessage::from_words(head)) {
                let r = &mut running[k];
                exited = Some((k, v));
                r.exits += 1;
                let shown = hv
                    .parse()
                    .ok()
                    .and_then(|b| b.intercept_header().copied())
                    .is_some_and(|h| h.execution_state.interruption_pending());
                // The header shows what the kernel held when the VP exited.
                // On another CPU it may have exited while this loop ran,
                // which then posted it an interruption before taking the
                // exit: the kernel knows (the VP waits for its reply), and a
                // reply must not replace that interruption.
                let vp = &mut r.vps[v];
                let taken = !shown && core::mem::take(&mut vp.sent) && pending_interruption(vp.cap).unwrap_or(true);
                vp.posted = shown || taken;
                r.vmm.slot_taken = taken;
                let name = r.name;
                let console = &mut r.console;
                let console_tick = &mut r.console_tick;
                let logs = &mut r.logs;
                let mut crash = None;
                let mut view = View {
                    vp: r.vps[v].cap,
                    partition: r.partition,
                    ram: r.ram,
                    beneath: r.beneath,
                    state: TransferredState::new(EXIT_STATE, state),
                };
                let mut own = broker.map(|broker| Connections { broker, partition: r.index, called: false });
                let mut none = vid::messaging::NoConnections;
                let connections: &mut dyn vid::messaging::Connections = match own.as_mut() {
                    Some(c) => c,
                    None => &mut none,
                };
                let action = r.vmm.handle_with(&hv, &mut view, now, connections, |event| match event {
                    Event::Console(b) => {
                        *console_tick = tick;
                        if let Some(line) = console.byte(b) {
                            let text = core::str::from_utf8(&line).unwrap_or("?");
                            say(logs, name, Kind::Console, format_args!("{text}"));
                        }
                    }
                    other => {
                        // A crash report the limit holds back goes no further.
                        let shown = say(logs, name, Kind::Event, format_args!("{other}"));
                        if let (Event::GuestCrash { p, .. }, true) = (other, shown) {
                            crash = Some(p);
                        }
                    }
                });
                brokered = own.as_ref().is_some_and(|c| c.called);
                if let Some(p) = crash {
                    registry.crashed(name, r.managed, p);
                }
                reply_for(&action, &mut r.vmm, &mut message);
                let vp = &mut r.vps[v];
                vp.posted |= matches!(&action, Action::Resume(u) | Action::Halt(u)
                    if u.iter().any(|(n, _)| *n == HvRegisterName::PENDING_INTERRUPTION));
                // With an interruption waiting in the kernel a halt is no
                // halt: the VP runs to take it.
                vp.halted = matches!(action, Action::Halt(_)) && !vp.posted;
                // Root policy: VP 0 answered with a halt is the APs' turn
                // (VP 0 waits for this reply, out of guest mode).
                if v == 0 && vp.halted {
                    vp0_halts(r);
                }
                if core::mem::take(&mut r.vmm.flush_tlb) {
                    let _ = invoke(r.partition, Operation::PARTITION_FLUSH_TLB, &[]);
                }
                if let (Action::Stop(Stop::Halted { rip }), true) = (&action, v != 0) {
                    // An AP that halts with interrupts off stops alone (it
                    // can be started again by INIT and SIPI).
                    say(
                        &mut r.logs,
                        name,
                        Kind::Event,
                        format_args!("VP {v} halted with interrupts disabled at rip {rip:#x}"),
                    );
                    r.vps[v].started = false;
                    if let Some(policy) = r.root.as_mut() {
                        policy.stopped(v);
                    }
                } else if let Action::Stop(stop) = action {
                    // One VP's end (shutdown, power off, test exit) ends
                    // the partition: the others are stopped.
                    end(r, Some(v), stop, registry);
                    live -= 1;
                    if live == 0 {
                        return tessera_rt::reply(&message);
                    }
                }
            }
            reply = Some(message);
        }
        // A post or signal was just made: what it delivered to this VID's
        // partitions (the caller's own included) is in their SIM and SIEF
        // pages before any of their VPs runs on, and keep_time wakes the
        // VPs it interrupts.
        if let (true, Some(broker)) = (brokered, broker.filter(|b| b.events.is_some())) {
            deliver(broker, broker.signalled(), running);
        }
        let (wait, Turn { reset, parked, again }) = keep_time(running, exited, now, min_wait);
        if let (true, Some(message)) = (parked, reply.as_mut()) {
            message.clear(labels::VP_STOP);
            let _ = message.push(0);
        }
        // INIT at a BSP resets its partition: the VID does not reboot
        // partitions, so it ends, as on HV_X64_MSR_RESET.
        if let Some(k) = reset {
            let r = &mut running[k];
            log!("{}: INIT at VP 0, the boot processor: a reset", r.name);
            // A VP of it waiting for this loop's reply is stopped by the reply.
            let waiting = exited.filter(|&(e, _)| e == k).map(|(_, v)| v);
            if let (Some(_), Some(message)) = (waiting, reply.as_mut()) {
                message.clear(labels::VP_STOP);
                let _ = message.push(0);
            }
            end(r, waiting, Stop::Reset { rip: 0 }, registry);
            live -= 1;
            if live == 0 {
                return match &reply {
                    Some(message) => tessera_rt::reply(message),
                    None => Ok(()),
                };
            }
        }
        let wait = match wait.ticks {
            // Typed input is looked for at least every INPUT_POLL_TICKS.
            t if input.is_some() && (t == 0 || t > INPUT_POLL_TICKS) => Wait { ticks: INPUT_POLL_TICKS, ..wait },
            _ => wait,
        };
        // Without a bound notification (a kernel that refused the bind)
        // the loop polls `broker-events` each turn, so it waits no longer
        // than BROKER_POLL_TICKS for an exit.
        let polls = broker.is_some_and(|b| b.events.is_some() && !b.bound);
        let wait = match wait.ticks {
            t if polls && (t == 0 || t > BROKER_POLL_TICKS) => Wait { ticks: BROKER_POLL_TICKS, ..wait },
            _ => wait,
        };
        received = match &reply {
            // Typed input is looked for after the reply, not while the VP
            // waits for it: the console may be on another CPU, and a VP
            // that waits for its exit's answer leaves its CPU to the next
            // VP, which would run in its turn.
            // Root policy: the AP that exited has its reply before VP 0 is
            // woken (it is suspended then, running again).
            Some(message) if again || input.due(tick) => {
                let replied = tessera_rt::reply(message).or_else(|e| match e {
                    // As REPLY_RECV: an absent or dead caller is skipped.
                    ErrorCode::INVALID_STATE | ErrorCode::PEER_GONE => Ok(()),
                    e => Err(e),
                });
                // (The INITs were taken by the first keep_time: this one
                // finds no reset and, with no exit, parks nothing.)
                let wait = match again {
                    false => wait,
                    true => wait.min(keep_time(running, None, now, min_wait).0),
                };
                input.poll(running, tick);
                replied.and_then(|()| tessera_rt::recv_until(exits, wait.until(now, tick_tsc)))
            }
            Some(message) => tessera_rt::reply_recv_until(exits, message, wait.until(now, tick_tsc)),
            None => {
                input.poll(running, tick);
                tessera_rt::recv_until(exits, wait.until(now, tick_tsc))
            }
        }
        .map(Some)
        .or_else(|e| if e == ErrorCode::TIMEOUT { Ok(None) } else { Err(e) });
    }
}

/// How often a VID that receives deliveries looks for them while its
/// guests do not exit.
const BROKER_POLL_TICKS: u64 = 1;

/// Most deliveries fetched for one partition per loop turn.
const MAX_FETCHES: usize = 64;

/// Fetches what the broker holds for the running partitions and puts it
/// into their VPs' SynICs: for every partition once the broker
/// `signalled` (`broker-events`), until `NO_DATA`. While one of a
/// partition's VPs holds a message for a busy slot only event flags are
/// fetched (`fetch_event`): its messages wait at the broker, whose bounded
/// queue then answers `INSUFFICIENT_BUFFERS` to the sender, and are
/// fetched once the guest's EOM let the held one into its slot.
fn deliver(broker: &Broker, signalled: bool, running: &mut [Running]) {
    if signalled {
        for r in running.iter_mut() {
            r.fetch = true;
        }
    }
    let due = |r: &Running| !r.stopped && (r.fetch || (r.queued && !r.vmm.synthetic.holds_message()));
    for r in running.iter_mut().filter(|r| due(r)) {
        let vps = r.vps.len() as u32;
        // Bounded, as the broker's answers are allegations too; what is
        // left is fetched next turn.
        for _ in 0..MAX_FETCHES {
            let holds = r.vmm.synthetic.holds_message();
            let answer = if holds { broker.client.fetch_event(r.index) } else { broker.client.fetch(r.index) };
            let (kind, vp, sint, port, value, payload) = match answer {
                Ok(Ok(delivery)) => delivery,
                // NO_DATA, or a broker that is gone or refuses. With a
                // message held, messages may wait for its EOM.
                _ => {
                    (r.fetch, r.queued) = (false, holds);
                    break;
                }
            };
            let Some(delivery) = Delivery::from_fetch(kind, vp, sint, port, value, payload.as_slice(), vps) else {
                say(
                    &mut r.logs,
                    r.name,
                    Kind::Event,
                    format_args!("the broker handed over a malformed delivery (kind {kind}, VP {vp}, SINT {sint})"),
                );
                r.vmm.stats.dropped_deliveries += 1;
                continue;
            };
            if r.vmm.deliver(&delivery, &mut super::RamOnly(r.ram, r.beneath)) == Delivered::Dropped {
                say(&mut r.logs, r.name, Kind::Event, format_args!("{delivery}: no SynIC takes it; dropped"));
            }
        }
    }
}

/// Ticks a guest's unfinished console line waits before it is shown: long
/// enough that a line printed in pieces stays whole, short enough that a
/// shell's prompt appears at once to a person.
const PROMPT_TICKS: u64 = 50;

/// Shows a console line the guest left unfinished for [`PROMPT_TICKS`] (a
/// shell's prompt), `now` being the loop's tick.
fn show_prompts(running: &mut [Running], now: u64) {
    for r in running.iter_mut().filter(|r| now.saturating_sub(r.console_tick) >= PROMPT_TICKS) {
        if let Some(line) = r.console.take_partial() {
            let text = core::str::from_utf8(&line).unwrap_or("?");
            say(&mut r.logs, r.name, Kind::Console, format_args!("{text}"));
        }
    }
}

/// How often the VID looks for typed input while its guests are idle.
const INPUT_POLL_TICKS: u64 = 3;

/// Bytes typed on the host's serial line, for the first running
/// partition's COM1 (the console service gives them to one reader).
struct Input {
    console: Option<console_api::Client<tessera_rt::Kernel>>,
    last_tick: u64,
}

impl Input {
    fn find() -> Input {
        let console = caps::endpoint(console_api::ENDPOINT).map(|ep| console_api::Client::new(tessera_rt::Kernel, ep));
        Input { console, last_tick: 0 }
    }

    fn is_some(&self) -> bool {
        self.console.is_some()
    }

    /// True if [`poll`](Self::poll) would ask the console at the loop's
    /// tick `now` (a tick passed).
    fn due(&self, now: u64) -> bool {
        self.console.is_some() && now != self.last_tick
    }

    /// At most once a tick (the loop's tick `now`): moves what was typed
    /// into the guest's UART, as much as its receive FIFO takes.
    fn poll(&mut self, running: &mut [Running], now: u64) {
        let Some(console) = &self.console else { return };
        if now == self.last_tick {
            return;
        }
        self.last_tick = now;
        let Some(r) = running.iter_mut().find(|r| !r.stopped) else { return };
        let room = r.vmm.uart.rx_space();
        if room == 0 {
            return;
        }
        match console.read(room as u32) {
            Ok(Ok(bytes)) => {
                r.vmm.push_input(bytes.as_slice());
            }
            // Another task reads the console: stop asking.
            Ok(Err(_)) | Err(_) => self.console = None,
        }
    }
}

/// What [`keep_time`] found for the loop to act on.
struct Turn {
    /// The partition whose boot processor an INIT reset.
    reset: Option<usize>,
    /// An INIT named the VP that exited: the reply must stop it.
    parked: bool,
    /// Root policy: VP 0 is to be woken once the AP that exited has its
    /// reply (the loop replies, then keeps time again).
    again: bool,
}

/// How long the loop may wait for the next exit: at most `ticks` kernel
/// ticks (0: no limit; its own rechecks and input polls, which need no
/// more precision than the tick's), and no later than the TSC `deadline`
/// of the earliest device timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Wait {
    ticks: u64,
    deadline: Option<u64>,
}

impl Wait {
    /// The sooner of both limits of each.
    fn min(self, other: Wait) -> Wait {
        let ticks = match (self.ticks, other.ticks) {
            (0, t) | (t, 0) => t,
            (a, b) => a.min(b),
        };
        let deadline = match (self.deadline, other.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Wait { ticks, deadline }
    }

    /// The kernel's form of the wait at TSC `now`: the device deadline if
    /// it comes before the tick limit can (a tick limit of `ticks` ends at
    /// most `ticks * tick_tsc` from now), else the tick limit.
    fn until(self, now: u64, tick_tsc: u64) -> tessera_rt::Until {
        match self.deadline {
            Some(d) if self.ticks == 0 || d <= now.saturating_add(self.ticks.saturating_mul(tick_tsc)) => {
                tessera_rt::Until::Tsc(d)
            }
            _ => tessera_rt::Until::Ticks(self.ticks),
        }
    }
}

/// The shortest wait for a device timer, 20 µs (well within the 1 ms a
/// timer may be late): a guest's timer of a few cycles, armed again and
/// again, cannot keep the VID from ever blocking.
const MIN_WAIT_PER_SECOND: u64 = 50_000;

/// Fires the partitions' timers, parks APs an INIT named and starts those
/// a SIPI named, posts interruptions to VPs other than `exited` (whose
/// reply carries its own) whose slot is free, and returns how long to
/// wait for the next exit (no limit: no timer, wait for ever; a device
/// timer's TSC deadline no sooner than `min_wait` from `now`) and what the
/// loop must do about INITs.
fn keep_time(running: &mut [Running], exited: Option<(usize, usize)>, now: u64, min_wait: u64) -> (Wait, Turn) {
    let mut next: Option<u64> = None;
    let mut recheck = false;
    let (mut reset, mut parked, mut again) = (None, false, false);
    for (k, r) in running.iter_mut().enumerate().filter(|(_, r)| !r.stopped) {
        r.vmm.poll_with(now, &mut super::RamOnly(r.ram, r.beneath));
        let mut effects = core::mem::take(&mut r.vmm.effects);
        let name = r.name;
        for v in effects.init.iter() {
            if v == 0 {
                reset = Some(k);
                continue;
            }
            // The root policy forgets it (true: held, not started in the kernel).
            let held = r.root.as_mut().is_some_and(|p| p.stopped(v as usize));
            if exited == Some((k, v as usize)) {
                // It waits for this loop's reply, which stops it.
                if let Some(vp) = r.vps.get_mut(v as usize) {
                    (vp.started, vp.halted, vp.posted) = (false, false, false);
                }
                parked = true;
                continue;
            }
            if let (true, Some(vp)) = (held, r.vps.get_mut(v as usize)) {
                (vp.started, vp.halted, vp.posted) = (false, false, false);
                continue;
            }
            if let Some(vp) = r.vps.get_mut(v as usize).filter(|vp| vp.started) {
                // INIT: the AP stops where it is and waits for a SIPI.
                match invoke(vp.cap, Operation::VP_SUSPEND, &[]) {
                    Ok(_) => (vp.started, vp.halted, vp.posted) = (false, false, false),
                    Err(e) => {
                        say(&mut r.logs, name, Kind::Event, format_args!("VP {v} cannot take INIT: {e:?}"));
                    }
                }
            }
        }
        effects.init = Default::default();
        for v in effects.sipi.iter() {
            if let Some(vp) = r.vps.get_mut(v as usize).filter(|vp| !vp.started) {
                // Root policy: while VP 0 runs, the AP gets its start-up
                // state and waits for VP 0 to halt.
                let now = r.root.as_mut().is_none_or(|p| p.sipi(v as usize));
                match start_ap(vp.cap, effects.sipi_vector, now) {
                    Ok(()) => {
                        (vp.started, vp.halted, vp.posted) = (true, false, false);
                        let at = u16::from(effects.sipi_vector) << 8;
                        let held = if now { "" } else { " (it runs when VP 0 halts)" };
                        say(
                            &mut r.logs,
                            name,
                            Kind::Event,
                            format_args!("VP {v} started by SIPI at {at:#x}:0000{held}"),
                        );
                    }
                    Err(e) => {
                        if let Some(p) = r.root.as_mut() {
                            p.stopped(v as usize);
                        }
                        say(&mut r.logs, name, Kind::Event, format_args!("VP {v} cannot start: {e:?}"));
                    }
                }
            }
        }
        for v in 0..r.vps.len() {
            if !r.vps[v].started {
                continue;
            }
            if exited != Some((k, v)) {
                match &r.root {
                    None => post(&mut r.vmm, v as u32, &mut r.vps[v]),
                    Some(p) if v != 0 => {
                        if p.may_post(v) {
                            post(&mut r.vmm, v as u32, &mut r.vps[v]);
                        }
                    }
                    // Root policy: a post wakes a halted VP 0, so the APs
                    // are held first.
                    Some(_) => {
                        let wakes = r.vps[0].halted && (r.vmm.irq.has_pending(0) || r.vmm.wakes_from_idle(0));
                        let exited_ap = exited.filter(|&(e, _)| e == k).map(|(_, a)| a);
                        if wakes && vp0_runs(r, exited_ap).is_err() {
                            again = true;
                        } else {
                            post(&mut r.vmm, 0, &mut r.vps[0]);
                            if wakes && r.vps[0].halted {
                                // Nothing was posted after all: still the APs' turn.
                                vp0_halts(r);
                            }
                        }
                    }
                }
            }
            let vp = &r.vps[v];
            recheck |= vp.posted && !vp.halted && r.vmm.irq.has_pending(v as u32);
            // An interrupt waiting behind a lazy EOI (EOI assist) the guest
            // may do without an exit: looked at again within a tick.
            recheck |= r.vmm.irq.lapic(v as u32).is_some_and(|l| l.lazy_eoi() && l.requested());
        }
        next = match (next, r.vmm.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    // A VP with an interruption it could not take yet is looked at again
    // within a tick.
    let wait = Wait { ticks: u64::from(recheck), deadline: next.map(|d| d.max(now.saturating_add(min_wait))) };
    (wait, Turn { reset, parked, again })
}

/// Posts VP `v`'s next interruption when its slot in the kernel is free
/// (which wakes it if it halted).
fn post(vmm: &mut Vmm, v: u32, vp: &mut super::Vp) {
    if vp.posted && !vp.halted {
        // A running VP's slot empties when the guest takes the
        // interruption: ask the kernel.
        vp.posted = pending_interruption(vp.cap).unwrap_or(true);
    }
    if vp.posted {
        return;
    }
    if let Some(value) = vmm.interruption_for(v) {
        let name = u64::from(HvRegisterName::PENDING_INTERRUPTION.0);
        if invoke(vp.cap, Operation::VP_SET_REGISTERS, &[1, name, value, 0]).is_ok() {
            (vp.posted, vp.halted, vp.sent) = (true, false, true);
        }
    } else if vmm.wakes_from_idle(v) {
        // An interrupt it cannot take yet ends its guest idle state all
        // the same (TLFS 7.5): stopped and started again, it resumes after
        // the MSR read with nothing injected. (`vp.halted` may be false
        // here: a halt answered while an interruption it had taken
        // meanwhile still counted as posted.)
        let woken = invoke(vp.cap, Operation::VP_SUSPEND, &[]).and_then(|_| invoke(vp.cap, Operation::VP_START, &[]));
        if woken.is_ok() {
            vp.halted = false;
            vmm.woke(v);
        }
    }
}

/// Starts an AP as a SIPI after INIT does: the architectural state of
/// [`vid::entry::startup_state`], real mode at `vector << 8`:0000; with
/// `run` false, only the state (the root policy starts it later).
fn start_ap(vp: CapSlot, vector: u8, run: bool) -> Result<(), ErrorCode> {
    for registers in vid::entry::startup_state(vector, vid::cpuid::SIGNATURE) {
        invoke(vp, Operation::VP_SET_REGISTERS, &vid::entry::set_registers_words(&registers))?;
    }
    if !run {
        return Ok(());
    }
    invoke(vp, Operation::VP_START, &[]).map(drop)
}

/// Whether the kernel still holds an interruption for the VP.
fn pending_interruption(vp: CapSlot) -> Option<bool> {
    let name = u64::from(HvRegisterName::PENDING_INTERRUPTION.0);
    let reply = invoke(vp, Operation::VP_GET_REGISTERS, &[1, name]).ok()?;
    let value = *reply.words().first()?;
    Some(tlfs::HvX64PendingInterruptionRegister::from_bits(value).interruption_pending())
}
