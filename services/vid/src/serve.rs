//! The exit loop: every partition's VPs exit to one endpoint, the badge in
//! [`EXIT_BADGES`] naming the partition and VP, and clients' requests of
//! the `vid` interface ([`vid_api`]) arrive on it too, badged below that
//! range by the supervisor. Between exits the loop keeps the partitions'
//! time: it waits no longer than the earliest timer, posts the
//! interruptions that come due, wakes VPs halted for them, parks
//! application processors on INIT and starts them on SIPI ([`time`]),
//! fetches the broker's deliveries and passes typed input to COM1
//! ([`deliver`]).
//!
//! Every line a guest makes the VID print passes its partition's rate
//! limits ([`crate::logs`]); when a partition ends, the VID reports its
//! exits by kind, what it refused, and what the limits held back.
//!
//! The kernel and the other services are behind [`crate::host`]'s traits:
//! the task implements them, the tests fake them.

mod deliver;
mod monitors;
mod requests;
mod restart;
mod time;
mod view;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use requests::answer;
pub use restart::{Boot, EntryWords, MAX_BOOT_MODULES, after_vid_restart};

use crate::exits::{Action, Event, MAX_UPDATES, MAX_WIDE_UPDATES, Stop, Vmm};
use crate::host::{BrokerEvents, Kernel, Services, Until};
use crate::logs::{Kind, Line, PartitionLogs};
use crate::monitor::MonitorPage;
use crate::root::RootPolicy;
use abi::limits::MAX_VPS_PER_PARTITION;
use abi::{CapSlot, ErrorCode, labels};
use core::fmt;
use deliver::{Input, deliver, show_prompts};
use sysimage::manifest::MAX_HELD_MONITORS;
use tessera_idl::Message;
use time::{Turn, Wait, keep_time, vp0_halts};
use tlfs::exit_state::{ExitState, TransferredState};
use tlfs::{HV_MESSAGE_WORDS, HvMessage, HvRegisterName};
use view::View;

/// Most partitions one VID runs (the manifest refuses more).
pub const MAX_RUNNING: usize = sysimage::manifest::MAX_PARTITIONS_PER_VID;

/// The badges of exits: the top bit, above every client badge (small
/// task numbers), then the VID's partition `k` and VP `vp`
/// ([`exit_badge`]).
pub const EXIT_BADGES: u64 = 1 << 63;

/// The badge of VP `vp` of the VID's `k`-th partition on the exit endpoint.
pub const fn exit_badge(k: usize, vp: usize) -> u64 {
    EXIT_BADGES | (k * MAX_VPS_PER_PARTITION + vp) as u64
}

/// The partition and VP an exit badge names; `None` for a client's badge.
const fn exit_of(badge: u64) -> Option<(usize, usize)> {
    if badge & EXIT_BADGES == 0 {
        return None;
    }
    let i = (badge & !EXIT_BADGES) as usize;
    Some((i / MAX_VPS_PER_PARTITION, i % MAX_VPS_PER_PARTITION))
}

/// The state the kernel sends with each exit of these partitions.
pub const EXIT_STATE: ExitState = ExitState::ALL;

/// One VP of a running partition.
pub(crate) struct Vp {
    cap: CapSlot,
    /// Running (VP 0 from the start, an AP once a SIPI started it).
    started: bool,
    /// Waits (HLT) for an interruption.
    halted: bool,
    /// An interruption the VID posted may still be waiting in the kernel.
    posted: bool,
    /// The loop posted an interruption (outside a reply) since the VP's
    /// last exit was received: that exit's header may not show it.
    sent: bool,
}

impl Vp {
    const fn new(cap: CapSlot) -> Vp {
        Vp { cap, started: false, halted: false, posted: false, sent: false }
    }
}

/// What the task made for a partition before its VPs run.
pub struct Setup<'m> {
    pub name: &'static str,
    /// Its index in the manifest: how the broker and clients name it.
    pub index: u64,
    /// Its ID at the partition manager, when registered there.
    pub managed: Option<u64>,
    pub partition: CapSlot,
    /// Its VPs, by index.
    pub vps: heapless::Vec<CapSlot, MAX_VPS_PER_PARTITION>,
    pub ram: &'m mut [u8],
    /// The pages that keep the RAM beneath its overlay pages.
    pub beneath: &'m mut [u8],
    pub vmm: Vmm,
    /// Under `[scheduler] policy = "root"`: the VID decides when each VP
    /// runs ([`crate::root`]).
    pub root: bool,
    /// The pages of the monitor connections it holds (TLFS 11.7).
    pub monitors: Monitors<'m>,
    /// What a guest reset does (the manifest's `on_reset`).
    pub on_reset: sysimage::OnReset,
    /// How its guest is loaded again when it restarts (`None`: it cannot
    /// be, and a reset ends it).
    pub boot: Option<Boot<'m>>,
}

/// The monitor pages of one partition's monitor connections.
pub type Monitors<'m> = heapless::Vec<MonitorPage<'m>, MAX_HELD_MONITORS>;

/// One running partition, as its exit handler sees it.
pub struct Running<'m> {
    name: &'static str,
    index: u64,
    /// The broker may hold deliveries for it that were not fetched yet
    /// (signalled, and not yet answered `NO_DATA`).
    fetch: bool,
    /// Messages may wait at the broker for a message a VP holds (only its
    /// events were fetched meanwhile).
    queued: bool,
    managed: Option<u64>,
    vps: heapless::Vec<Vp, MAX_VPS_PER_PARTITION>,
    partition: CapSlot,
    ram: &'m mut [u8],
    beneath: &'m mut [u8],
    vmm: Vmm,
    /// VTL 1's protections of VTL 0's pages (TLFS 15.9), for the VID's
    /// own accesses.
    protections: crate::vsm::protect::Protections,
    console: crate::exits::GuestConsole,
    /// The loop's tick of the guest's last console byte.
    console_tick: u64,
    /// The rate limits on what its guest makes the VID print.
    logs: PartitionLogs,
    exits: u64,
    stopped: bool,
    root: Option<RootPolicy>,
    monitors: Monitors<'m>,
    on_reset: sysimage::OnReset,
    boot: Option<Boot<'m>>,
    /// Times the guest reset and the partition restarted.
    restarts: u64,
    /// The TSC its current window of restarts began at, and the restarts
    /// in it ([`restart::wanted`]).
    restart_window: (u64, u32),
    /// The line status ring 0 answers for COM1 (`None`: LSR reads exit).
    latched_lsr: Option<u8>,
    /// Ring 0 keeps COM1's THR writes for the VID (`PARTITION_POST_PORT`).
    posting: bool,
    /// Ring 0 may hold posted writes not drained yet.
    undrained: bool,
    /// The TSC by which posted writes are drained though no VP exits
    /// (set while the guest writes: [`drain`]).
    drain_at: Option<u64>,
    /// How long a posted write may wait for its drain, in TSC cycles.
    drain_delay: u64,
    /// COM1 bytes drained, in all.
    posted_bytes: u64,
    /// [`take_over`] has set up ring 0's answers for this instance.
    taken_over: bool,
}

impl<'m> Running<'m> {
    pub fn new(s: Setup<'m>) -> Running<'m> {
        Running {
            name: s.name,
            index: s.index,
            fetch: true,
            queued: false,
            managed: s.managed,
            vps: s.vps.iter().map(|&cap| Vp::new(cap)).collect(),
            partition: s.partition,
            ram: s.ram,
            beneath: s.beneath,
            vmm: s.vmm,
            protections: crate::vsm::protect::Protections::new(),
            console: Default::default(),
            console_tick: 0,
            logs: PartitionLogs::new(),
            exits: 0,
            stopped: false,
            root: s.root.then(RootPolicy::new),
            monitors: s.monitors,
            on_reset: s.on_reset,
            boot: s.boot,
            restarts: 0,
            restart_window: (0, 0),
            latched_lsr: None,
            posting: false,
            undrained: false,
            drain_at: None,
            drain_delay: 0,
            posted_bytes: 0,
            taken_over: false,
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Starts VP 0 (the others wait for INIT and SIPI).
    pub fn start(&mut self, kernel: &impl Kernel) -> Result<(), ErrorCode> {
        let vp = self.vps.first_mut().ok_or(ErrorCode::INVALID_STATE)?;
        kernel.start_vp(vp.cap)?;
        vp.started = true;
        Ok(())
    }
}

/// The partitions that have not ended.
fn live(running: &[Running<'_>]) -> usize {
    running.iter().filter(|r| !r.stopped).count()
}

/// Prints a line the guest of partition `name` caused, if its rate limit
/// lets it through (saying first how many were held back); true if printed.
fn say(kernel: &impl Kernel, logs: &mut PartitionLogs, name: &str, kind: Kind, line: fmt::Arguments<'_>) -> bool {
    match logs.check(kind, kernel.ticks()) {
        Line::Hold => false,
        Line::Print { held_back } => {
            if let Some(n) = held_back {
                kernel.log(format_args!("{name}: rate limit: {n} lines held back"));
            }
            kernel.log(format_args!("{name}: {line}"));
            true
        }
    }
}

/// A byte the guest sent to COM1 (forwarded or drained): into its console
/// line, printed when the line ends.
fn console_byte(
    kernel: &impl Kernel,
    (console, logs, name): (&mut crate::exits::GuestConsole, &mut PartitionLogs, &str),
    b: u8,
) {
    if let Some(line) = console.byte(b) {
        let text = core::str::from_utf8(&line).unwrap_or("?");
        say(kernel, logs, name, Kind::Console, format_args!("{text}"));
    }
}

/// Takes the writes ring 0 kept for partition `r` (posted THR bytes) and
/// sends them on as forwarded ones go, at TSC `now`; while they come and
/// posting is on, the next drain is due within `drain_delay`. True if
/// there were any.
pub(crate) fn drain(kernel: &impl Kernel, r: &mut Running<'_>, now: u64, tick: Option<u64>) -> bool {
    if !r.undrained {
        return false;
    }
    let writes = kernel.drain_posted(r.partition);
    r.undrained = r.posting;
    for &(_, b) in writes.iter().filter(|(port, _)| *port == crate::uart::UART_DATA) {
        console_byte(kernel, (&mut r.console, &mut r.logs, r.name), b);
        r.posted_bytes += 1;
    }
    if let (false, Some(tick)) = (writes.is_empty(), tick) {
        r.console_tick = tick;
    }
    r.drain_at = match (writes.is_empty(), r.posting) {
        (false, true) => Some(r.drain_at.filter(|&at| at > now).unwrap_or(now.saturating_add(r.drain_delay))),
        _ => None,
    };
    !writes.is_empty()
}

/// Ends partition `r` (`why`, e.g. VP `v`'s [`Stop`]): its other VPs are
/// stopped (`v` waits for the reply that stops it), the end and the VID's
/// report on the partition are logged, and the partition manager
/// finalizes it.
fn end(kernel: &impl Kernel, services: &impl Services, r: &mut Running<'_>, v: Option<usize>, why: impl fmt::Display) {
    let name = r.name;
    // An AP the root policy holds is not started in the kernel.
    let held = |i: usize| r.root.as_ref().is_some_and(|p| p.held(i));
    for (i, other) in r.vps.iter().enumerate().filter(|(i, vp)| Some(*i) != v && vp.started && !held(*i)) {
        if let Err(e) = kernel.suspend_vp(other.cap) {
            kernel.log(format_args!("{name}: VP {i} could not be stopped: {e:?}"));
        }
    }
    // What its VPs wrote comes before the end.
    let now = kernel.tsc();
    drain(kernel, r, now, None);
    kernel.log(format_args!("{name}: {why} after {} exits", r.exits));
    kernel.log(format_args!("{name}: {}", r.vmm.stats.exits()));
    kernel.log(format_args!("{name}: {}", r.vmm.stats.refused()));
    kernel.log(format_args!("{name}: COM1 bytes posted in ring 0: {}", r.posted_bytes));
    if let Some((console, other)) = r.logs.held_back() {
        kernel
            .log(format_args!("{name}: rate limit: {console} console lines and {other} other lines held back in all"));
    }
    services.stopped(name, r.managed);
    r.stopped = true;
}

/// Turns `message` into a reply that stops the VP waiting for it.
fn stop_reply(message: &mut Message) {
    message.clear(labels::VP_STOP);
    let _ = message.push(0);
}

// The count, then three words per update.
const _: () = assert!(3 * (MAX_UPDATES + MAX_WIDE_UPDATES) < abi::MAX_MESSAGE_WORDS, "a reply fits a message");

/// The reply to an exit: the action's label and its register updates
/// (count, then (name, low, high) triples), 128-bit ones included. Written
/// over the loop's last reply, word by word; true if it posts an
/// interruption (seen as the updates are written, not in a second pass).
fn reply_for(action: &Action, vmm: &mut Vmm, reply: &mut Message) -> bool {
    let (label, updates) = match action {
        Action::Resume(u) => (labels::VP_RESUME, u.as_slice()),
        Action::Halt(u) => (labels::VP_HALT, u.as_slice()),
        Action::Stop(_) => (labels::VP_STOP, &[][..]),
    };
    let wide = if matches!(action, Action::Stop(_)) { &[][..] } else { vmm.wide.as_slice() };
    let count = updates.len() + wide.len();
    reply.set_label(label);
    let _ = reply.set_len(1 + 3 * count);
    let (first, triples) = reply.words_mut().split_at_mut(1);
    first[0] = count as u64;
    let (narrow, wider) = triples.split_at_mut(3 * updates.len());
    let mut posts = false;
    for (triple, &(register, value)) in narrow.chunks_exact_mut(3).zip(updates) {
        posts |= register == HvRegisterName::PENDING_INTERRUPTION;
        triple.copy_from_slice(&[u64::from(register.0), value, 0]);
    }
    for (triple, &(register, low, high)) in wider.chunks_exact_mut(3).zip(wide) {
        triple.copy_from_slice(&[u64::from(register.0), low, high]);
    }
    vmm.wide.clear();
    posts
}

/// Partition `r`'s connections, through the broker.
struct Connections<'s, S> {
    services: &'s S,
    partition: u64,
    /// A post or signal went to the broker.
    called: bool,
}

impl<S: Services> crate::messaging::Connections for Connections<'_, S> {
    fn post_message(&mut self, connection_id: u32, message_type: u32, payload: &[u8]) -> tlfs::HvResult<()> {
        self.called = true;
        self.services.post_message(self.partition, connection_id, message_type, payload)
    }

    fn signal_event(&mut self, connection_id: u32, flag_number: u16) -> tlfs::HvResult<()> {
        self.called = true;
        self.services.signal_event(self.partition, connection_id, flag_number)
    }

    fn synic_state(&mut self, vp: u32, accepting: u32) -> tlfs::HvResult<()> {
        self.services.synic_state(self.partition, vp, accepting)
    }
}

/// What one exit left for the loop (its reply is in the loop's message).
struct Handled {
    /// The exit was of a running partition's VP (partition, VP).
    exited: Option<(usize, usize)>,
    /// Its handling posted or signalled through the broker.
    brokered: bool,
    /// Its handling changed nothing a poll at the same TSC would act on
    /// ([`Vmm::leaves_devices_alone`]).
    settled: bool,
    /// Its handling sent a byte to COM1.
    wrote: bool,
}

/// Handles the exit `words` of VP `v` of the VID's partition `k` at TSC
/// `now` (the loop's tick `tick`): its reply goes into `reply`, and what
/// the loop needs is returned.
#[allow(clippy::too_many_arguments)]
fn handle_exit(
    kernel: &impl Kernel,
    services: &impl Services,
    running: &mut [Running<'_>],
    (k, v): (usize, usize),
    words: &[u64],
    reply: &mut Message,
    now: u64,
    tick: u64,
) -> Handled {
    let (head, state) = words.split_at(words.len().min(HV_MESSAGE_WORDS));
    // Exits of a partition that ended leave their VP stopped.
    let known = running.get(k).is_some_and(|r| v < r.vps.len() && !r.stopped);
    let (true, Ok(hv)) = (known, HvMessage::ref_from_words(head)) else {
        stop_reply(reply);
        return Handled { exited: None, brokered: false, settled: false, wrote: false };
    };
    let r = &mut running[k];
    r.exits += 1;
    // Posted writes came before this exit (ring 0 says so: a drain at
    // every exit would cost each an invoke): out first. Those of other VPs
    // since come before its reply, and go out later in their order.
    if hv.header.message_flags.posted_writes() {
        r.undrained = true;
        drain(kernel, r, now, Some(tick));
    }
    // Parsed once, here: the handler takes it as it is.
    let parsed = hv.parse();
    let parsed = parsed.as_ref().map_err(|_| hv.header.message_type.0);
    let settled = parsed.is_ok_and(Vmm::leaves_devices_alone);
    let shown =
        parsed.ok().and_then(|b| b.intercept_header()).is_some_and(|h| h.execution_state.interruption_pending());
    // The header shows what the kernel held when the VP exited. On another
    // CPU it may have exited while this loop ran, which then posted it an
    // interruption before taking the exit: the kernel knows (the VP waits
    // for its reply), and a reply must not replace that interruption.
    let vp = &mut r.vps[v];
    let taken = !shown && core::mem::take(&mut vp.sent) && time::pending_interruption(kernel, vp.cap).unwrap_or(true);
    vp.posted = shown || taken;
    r.vmm.slot_taken = taken;
    let name = r.name;
    let console = &mut r.console;
    let console_tick = &mut r.console_tick;
    let logs = &mut r.logs;
    let mut crash = None;
    let mut wrote = false;
    let mut view = View {
        kernel,
        vp: r.vps[v].cap,
        partition: r.partition,
        ram: r.ram,
        beneath: r.beneath,
        state: TransferredState::new(EXIT_STATE, state),
        vps: &r.vps,
        vtl: parsed.ok().and_then(|b| b.intercept_header()).map_or(0, |h| h.execution_state.vtl()),
        protections: &mut r.protections,
    };
    let mut own = services.has_broker().then_some(Connections { services, partition: r.index, called: false });
    let mut none = crate::messaging::NoConnections;
    let connections: &mut dyn crate::messaging::Connections = match own.as_mut() {
        Some(c) => c,
        None => &mut none,
    };
    let action = r.vmm.handle_parsed(parsed, &mut view, now, connections, |event| match event {
        Event::Console(b) => {
            *console_tick = tick;
            wrote = true;
            console_byte(kernel, (console, logs, name), b);
        }
        other => {
            // A crash report the limit holds back goes no further.
            let shown = say(kernel, logs, name, Kind::Event, format_args!("{other}"));
            if let (Event::GuestCrash { p, .. }, true) = (other, shown) {
                crash = Some(p);
            }
        }
    });
    let brokered = own.as_ref().is_some_and(|c| c.called);
    if let Some(p) = crash {
        services.crashed(name, r.managed, p);
    }
    let posts = reply_for(&action, &mut r.vmm, reply);
    let vp = &mut r.vps[v];
    vp.posted |= posts;
    // With an interruption waiting in the kernel a halt is no halt: the VP
    // runs to take it.
    vp.halted = matches!(action, Action::Halt(_)) && !vp.posted;
    // Root policy: VP 0 answered with a halt is the APs' turn (VP 0 waits
    // for this reply, out of guest mode).
    if v == 0 && vp.halted {
        vp0_halts(kernel, r);
    }
    if core::mem::take(&mut r.vmm.flush_tlb) {
        kernel.flush_tlb(r.partition);
    }
    if let (Action::Stop(Stop::Halted { rip }), true) = (&action, v != 0) {
        // An AP that halts with interrupts off stops alone (it can be
        // started again by INIT and SIPI).
        let line = format_args!("VP {v} halted with interrupts disabled at rip {rip:#x}");
        say(kernel, &mut r.logs, name, Kind::Event, line);
        r.vps[v].started = false;
        if let Some(policy) = r.root.as_mut() {
            policy.stopped(v);
        }
    } else if let Action::Stop(stop) = action {
        // A reset restarts the partition (its manifest's on_reset); one
        // VP's end (shutdown, power off, test exit) ends it: the others
        // are stopped.
        match stop.reset_source() {
            Some(by) if restart::wanted(r, now) => restart::restart(kernel, services, r, by, now),
            _ => end(kernel, services, r, Some(v), stop),
        }
    }
    Handled { exited: Some((k, v)), brokered, settled, wrote }
}

/// Handles exits of every running partition and the clients' requests
/// until all partitions have stopped, and between exits keeps their
/// timers: it waits for the next exit no longer than the earliest timer (a
/// TSC deadline the kernel wakes it at, not rounded to its ticks; the
/// loop's own rechecks and input polls stay in ticks), posts the
/// interruptions that fire, and wakes VPs halted for them. `tsc_hz` is the
/// TSC's rate.
/// Has ring 0 answer the guest's reads of COM1's line status (Linux
/// polls it before every byte it prints) with what a read would answer
/// now, or not while a read has a side effect. Called wherever the UART
/// may have changed, before any VP can see the change otherwise (its
/// interrupt, a reply).
/// Likewise, has ring 0 keep the guest's THR writes for the VID while a
/// write has no other effect the guest could see (`Uart::postable_thr`).
/// Not for a stopped partition: none of its VPs runs again, and the
/// partition manager has finalized it (its capability may be gone).
pub(crate) fn latch_line_status(kernel: &impl Kernel, r: &mut Running<'_>) {
    if r.stopped {
        return;
    }
    let value = r.vmm.uart.latchable_line_status();
    if value != r.latched_lsr {
        kernel.latch_port(r.partition, crate::uart::UART_LINE_STATUS, value);
        r.latched_lsr = value;
    }
    // (`value` is LSR's latch: `postable_thr` without recomputing it.)
    let post = value.is_some() && r.vmm.uart.thr_write_only_sends();
    if post != r.posting {
        kernel.post_port(r.partition, crate::uart::UART_DATA, post);
        r.posting = post;
        r.undrained |= post;
    }
}

/// Sets up ring 0's answers for partition `r` as this instance's devices
/// say, before any of its VPs runs (and, after a restart of this VID,
/// before the partition is reset or ended): what no device claims reads
/// all ones in ring 0 (a guest's probes of absent hardware, PCI
/// configuration among them, cost no exit); nothing is latched or posted
/// yet, and what an earlier instance let ring 0 keep goes out first.
pub fn take_over(kernel: &impl Kernel, r: &mut Running<'_>, tsc_hz: u64) {
    // What an earlier instance floated that this bus claims must exit.
    kernel.float_ports(r.partition, 0, 1 << 16, false);
    for (first, count) in r.vmm.ports.unclaimed() {
        kernel.float_ports(r.partition, first, count, true);
    }
    kernel.latch_port(r.partition, crate::uart::UART_LINE_STATUS, None);
    r.latched_lsr = None;
    kernel.post_port(r.partition, crate::uart::UART_DATA, false);
    (r.posting, r.undrained, r.drain_at) = (false, true, None);
    r.drain_delay = (tsc_hz / POSTED_DRAINS_PER_SECOND).max(1);
    let now = kernel.tsc();
    drain(kernel, r, now, None);
    r.taken_over = true;
}

pub fn serve(
    kernel: &impl Kernel,
    services: &impl Services,
    running: &mut [Running<'_>],
    tsc_hz: u64,
) -> Result<(), ErrorCode> {
    let tick_tsc = (tsc_hz / abi::TICK_HZ).max(1);
    let min_wait = (tsc_hz / MIN_WAIT_PER_SECOND).max(1);
    let events = services.broker_events();
    let mut input = Input::new(services);
    for r in running.iter_mut().filter(|r| !r.taken_over) {
        take_over(kernel, r, tsc_hz);
    }
    // The loop's two messages, kept from turn to turn: what it received
    // (`inbox`), and its reply (when `reply` says there is one).
    let (mut inbox, mut message) = (Message::new(0), Message::new(0));
    let mut received = kernel.receive(None, &mut inbox, Until::Ticks(0)).map(Some);
    loop {
        let now = kernel.tsc();
        // The loop's own clock for prompts and typed input: ticks of the
        // TSC, read without a syscall at every exit.
        let tick = now / tick_tsc;
        show_prompts(kernel, running, tick);
        // Before the exit is handled, so its VP's reply carries what
        // arrived for it. Bound, the receive took the broker's signal
        // (below); else polled.
        if events != BrokerEvents::None {
            deliver(kernel, services, events == BrokerEvents::Polled && services.broker_signalled(), running);
        }
        // `message` holds a reply for the last caller.
        let mut reply = false;
        let mut exited = None;
        let (mut brokered, mut settled, mut wrote) = (false, false, false);
        // The broker's bound notification ended the wait: no exit.
        let incoming = match received? {
            Some(_) if inbox.label() == labels::NOTIFICATION => {
                if events != BrokerEvents::None {
                    deliver(kernel, services, true, running);
                }
                None
            }
            other => other,
        };
        if let Some(badge) = incoming {
            match exit_of(badge) {
                Some(vp) => {
                    let handled = handle_exit(kernel, services, running, vp, inbox.words(), &mut message, now, tick);
                    (exited, brokered, settled) = (handled.exited, handled.brokered, handled.settled);
                    wrote = handled.wrote;
                }
                None => {
                    message = answer(kernel, services, running, badge, inbox.clone());
                }
            }
            if live(running) == 0 {
                return kernel.reply(&message);
            }
            reply = true;
        }
        // Monitored notifications that come due signal events like the
        // guest's own HvSignalEvent.
        let (signalled, inspect_at) = monitors::inspect(services, running, now);
        brokered |= signalled;
        // A post or signal was just made: what it delivered to this VID's
        // partitions (the caller's own included) is in their SIM and SIEF
        // pages before any of their VPs runs on, and keep_time wakes the
        // VPs it interrupts.
        if brokered && events != BrokerEvents::None {
            deliver(kernel, services, services.broker_signalled(), running);
        }
        // The exited partition was polled at `now` before its exit was
        // handled; unless the handling or a delivery since changed
        // something, that poll stands.
        let polled = exited.filter(|_| settled && !brokered).map(|(k, _)| k);
        let (wait, Turn { reset, parked, again }) = keep_time(kernel, running, exited, polled, now, min_wait);
        let mut wait = wait.min(Wait { ticks: 0, deadline: inspect_at });
        // The guest writes to COM1 (that write exited: posting was off,
        // or ring 0's buffer full): what it posts next goes out by a
        // deadline even if it does not exit; and posted writes of a guest
        // that does not exit go out by theirs.
        if let Some(r) = exited.filter(|_| wrote).and_then(|(k, _)| running.get_mut(k))
            && r.posting
            && r.drain_at.is_none()
        {
            r.drain_at = Some(now.saturating_add(r.drain_delay));
        }
        for r in running.iter_mut().filter(|r| r.drain_at.is_some() && !r.stopped) {
            if r.drain_at.is_some_and(|at| at <= now) {
                drain(kernel, r, now, Some(tick));
            }
            wait = wait.min(Wait { ticks: 0, deadline: r.drain_at });
        }
        if parked && reply {
            stop_reply(&mut message);
        }
        // INIT at a BSP resets its partition, as HV_X64_MSR_RESET does.
        if let Some(k) = reset {
            let r = &mut running[k];
            kernel.log(format_args!("{}: INIT at VP 0, the boot processor: a reset", r.name));
            // A VP of it waiting for this loop's reply is stopped by the reply.
            let waiting = exited.filter(|&(e, _)| e == k).map(|(_, v)| v);
            if waiting.is_some() && reply {
                stop_reply(&mut message);
            }
            let by = crate::exits::ResetSource::InitBsp;
            if restart::wanted(r, now) {
                restart::restart(kernel, services, r, by, now);
            } else {
                end(kernel, services, r, waiting, Stop::Reset { rip: 0, by });
            }
            if live(running) == 0 {
                return if reply { kernel.reply(&message) } else { Ok(()) };
            }
        }
        // A reset above gave a partition a new UART (keep_time latched
        // every partition's since, and a drain leaves the UART as it was).
        if reset.is_some() {
            running.iter_mut().for_each(|r| latch_line_status(kernel, r));
        }
        // Typed input is looked for at least every INPUT_POLL_TICKS while
        // a guest reads its serial line; an unfinished line is shown when
        // its pause ends. Else the loop may wait without a limit, which
        // lets the kernel hand exits and replies over on its fast path.
        let wait = wait.min(Wait { ticks: input.wait(running, tick), deadline: None });
        // Without a bound notification (a kernel that refused the bind)
        // the loop polls `broker-events` each turn, so it waits no longer
        // than BROKER_POLL_TICKS for an exit.
        let wait = match wait.ticks {
            t if events == BrokerEvents::Polled && (t == 0 || t > BROKER_POLL_TICKS) => {
                Wait { ticks: BROKER_POLL_TICKS, ..wait }
            }
            _ => wait,
        };
        received = match reply {
            // Typed input is looked for after the reply, not while the VP
            // waits for it: the console may be on another CPU, and a VP
            // that waits for its exit's answer leaves its CPU to the next
            // VP, which would run in its turn.
            // Root policy: the AP that exited has its reply before VP 0 is
            // woken (it is suspended then, running again).
            true if again || input.due(tick) => {
                let replied = kernel.reply(&message).or_else(|e| match e {
                    // As REPLY_RECV: an absent or dead caller is skipped.
                    ErrorCode::INVALID_STATE | ErrorCode::PEER_GONE => Ok(()),
                    e => Err(e),
                });
                // (The INITs were taken by the first keep_time: this one
                // finds no reset and, with no exit, parks nothing.)
                let wait = match again {
                    false => wait,
                    true => wait.min(keep_time(kernel, running, None, None, now, min_wait).0),
                };
                input.poll(services, running, tick);
                // Typed input is in LSR.DR before the loop waits (its
                // interrupt follows at the next keep_time).
                running.iter_mut().for_each(|r| latch_line_status(kernel, r));
                replied.and_then(|()| kernel.receive(None, &mut inbox, wait.until(now, tick_tsc)))
            }
            true => kernel.receive(Some(&message), &mut inbox, wait.until(now, tick_tsc)).or_else(|e| {
                // A reply the kernel refuses (a register value its backend
                // does not take) leaves that VP waiting; the loop, and
                // every other partition, goes on.
                if e != ErrorCode::INVALID_ARGUMENT {
                    return Err(e);
                }
                let (k, v) = exited.unwrap_or((usize::MAX, 0));
                let name = running.get(k).map_or("?", |r| r.name);
                kernel.log(format_args!("{name}: VP {v}: the kernel refused the reply to its exit: {e:?}"));
                kernel.receive(None, &mut inbox, wait.until(now, tick_tsc))
            }),
            false => {
                input.poll(services, running, tick);
                kernel.receive(None, &mut inbox, wait.until(now, tick_tsc))
            }
        }
        .map(Some)
        .or_else(|e| if e == ErrorCode::TIMEOUT { Ok(None) } else { Err(e) });
    }
}

/// Posted writes wait at most 1/200 s (5 ms) for their drain while the
/// guest writes and does not exit.
const POSTED_DRAINS_PER_SECOND: u64 = 200;

/// How often a VID that receives deliveries looks for them while its
/// guests do not exit, when its `broker-events` is not bound.
const BROKER_POLL_TICKS: u64 = 1;

/// The shortest wait for a device timer, 20 µs (well within the 1 ms a
/// timer may be late): a guest's timer of a few cycles, armed again and
/// again, cannot keep the VID from ever blocking.
const MIN_WAIT_PER_SECOND: u64 = 50_000;
