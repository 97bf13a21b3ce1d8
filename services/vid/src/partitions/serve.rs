//! The exit loop: every partition's VPs exit to one endpoint (the badge
//! names the partition and VP), and between exits the loop keeps the
//! partitions' time: it waits no longer than the earliest timer, posts the
//! interruptions that come due, wakes VPs halted for them, starts
//! application processors on SIPI, and passes typed input to COM1.

use super::{EXIT_STATE, MAX_VPS_PER_PARTITION, Registry, Running, View};
use abi::{CapSlot, ErrorCode, labels};
use tessera_rt::{Message, Operation, caps, invoke, log};
use tlfs::exit_state::TransferredState;
use tlfs::{HV_MESSAGE_WORDS, HvMessage, HvRegisterName};
use vid::exits::{Action, Event, Vmm};

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
/// than the earliest timer, posts the interruptions that fire, and wakes
/// VPs halted for them.
pub(super) fn serve(exits: CapSlot, running: &mut [Running], registry: &Registry) -> Result<(), ErrorCode> {
    let mut live = running.len();
    let tick_tsc = (tessera_rt::startup::tsc_hz() / abi::TICK_HZ).max(1);
    let mut input = Input::find();
    let mut received = tessera_rt::recv(exits).map(Some);
    loop {
        let now = tessera_rt::arch::rdtsc();
        input.poll(running);
        show_prompts(running);
        let mut reply = None;
        let mut exited = None;
        if let Some(received) = received? {
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
                r.vps[v].posted = hv
                    .parse()
                    .ok()
                    .and_then(|b| b.intercept_header().copied())
                    .is_some_and(|h| h.execution_state.interruption_pending());
                let name = r.name;
                let console = &mut r.console;
                let console_tick = &mut r.console_tick;
                let mut crash = None;
                let mut view = View { vp: r.vps[v].cap, ram: r.ram, state: TransferredState::new(EXIT_STATE, state) };
                let action = r.vmm.handle(&hv, &mut view, now, |event| match event {
                    Event::Console(b) => {
                        *console_tick = tessera_rt::ticks();
                        if let Some(line) = console.byte(b) {
                            log!("{name}: {}", core::str::from_utf8(&line).unwrap_or("?"));
                        }
                    }
                    other => {
                        if let Event::GuestCrash { p, .. } = other {
                            crash = Some(p);
                        }
                        log!("{name}: {other}")
                    }
                });
                if let Some(p) = crash {
                    registry.crashed(name, r.managed, p);
                }
                reply_for(&action, &mut r.vmm, &mut message);
                let vp = &mut r.vps[v];
                vp.halted = matches!(action, Action::Halt(_));
                vp.posted |= matches!(&action, Action::Resume(u) | Action::Halt(u)
                    if u.iter().any(|(n, _)| *n == HvRegisterName::PENDING_INTERRUPTION));
                if core::mem::take(&mut r.vmm.flush_tlb) {
                    let _ = invoke(r.partition, Operation::PARTITION_FLUSH_TLB, &[]);
                }
                if let (Action::Stop(vid::exits::Stop::Halted { rip }), true) = (&action, v != 0) {
                    // An AP that halts with interrupts off stops alone (it
                    // can be started again by INIT and SIPI).
                    log!("{name}: VP {v} halted with interrupts disabled at rip {rip:#x}");
                    r.vps[v].started = false;
                } else if let Action::Stop(stop) = action {
                    // One VP's end (shutdown, power off, test exit) ends
                    // the partition: the others are stopped.
                    for (i, other) in r.vps.iter().enumerate().filter(|(i, vp)| *i != v && vp.started) {
                        let stop = invoke(other.cap, Operation::VP_SUSPEND, &[]);
                        if stop.is_err() {
                            log!("{name}: VP {i} could not be stopped: {stop:?}");
                        }
                    }
                    log!("{name}: {stop} after {} exits", r.exits);
                    registry.stopped(name, r.managed);
                    r.stopped = true;
                    live -= 1;
                    if live == 0 {
                        return tessera_rt::reply(&message);
                    }
                }
            }
            reply = Some(message);
        }
        let ticks = match keep_time(running, exited, now, tick_tsc) {
            // Typed input is looked for at least every INPUT_POLL_TICKS.
            t if input.is_some() && (t == 0 || t > INPUT_POLL_TICKS) => INPUT_POLL_TICKS,
            t => t,
        };
        received = match &reply {
            Some(message) => tessera_rt::reply_recv_timeout(exits, message, ticks),
            None => tessera_rt::recv_timeout(exits, ticks),
        }
        .map(Some)
        .or_else(|e| if e == ErrorCode::TIMEOUT { Ok(None) } else { Err(e) });
    }
}

/// Ticks a guest's unfinished console line waits before it is shown: long
/// enough that a line printed in pieces stays whole, short enough that a
/// shell's prompt appears at once to a person.
const PROMPT_TICKS: u64 = 50;

/// Shows a console line the guest left unfinished for [`PROMPT_TICKS`] (a
/// shell's prompt).
fn show_prompts(running: &mut [Running]) {
    let now = tessera_rt::ticks();
    for r in running.iter_mut().filter(|r| now.saturating_sub(r.console_tick) >= PROMPT_TICKS) {
        if let Some(line) = r.console.take_partial() {
            log!("{}: {}", r.name, core::str::from_utf8(&line).unwrap_or("?"));
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

    /// At most once a tick: moves what was typed into the guest's UART,
    /// as much as its receive FIFO takes.
    fn poll(&mut self, running: &mut [Running]) {
        let Some(console) = &self.console else { return };
        let now = tessera_rt::ticks();
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

/// Fires the partitions' timers, starts APs a SIPI named, posts
/// interruptions to VPs other than `exited` (whose reply carries its own)
/// whose slot is free, and returns how many ticks to wait for the next exit
/// (0: no timer, wait for ever).
fn keep_time(running: &mut [Running], exited: Option<(usize, usize)>, now: u64, tick_tsc: u64) -> u64 {
    let mut next: Option<u64> = None;
    let mut recheck = false;
    for (k, r) in running.iter_mut().enumerate().filter(|(_, r)| !r.stopped) {
        r.vmm.poll(now);
        let effects = core::mem::take(&mut r.vmm.effects);
        for v in effects.sipi.iter() {
            if let Some(vp) = r.vps.get_mut(v as usize).filter(|vp| !vp.started) {
                match start_ap(vp.cap, effects.sipi_vector) {
                    Ok(()) => {
                        vp.started = true;
                        log!("{}: VP {v} started by SIPI at {:#x}:0000", r.name, u16::from(effects.sipi_vector) << 8);
                    }
                    Err(e) => log!("{}: VP {v} cannot start: {e:?}", r.name),
                }
            }
        }
        for (v, vp) in r.vps.iter_mut().enumerate().filter(|(_, vp)| vp.started) {
            if exited != Some((k, v)) {
                post(&mut r.vmm, v as u32, vp);
            }
            recheck |= vp.posted && !vp.halted && r.vmm.irq.has_pending(v as u32);
        }
        next = match (next, r.vmm.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    match next {
        _ if recheck => 1,
        None => 0,
        Some(deadline) => deadline.saturating_sub(now).div_ceil(tick_tsc).max(1),
    }
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
            (vp.posted, vp.halted) = (true, false);
        }
    }
}

/// Starts an AP as a SIPI does: real mode at `vector << 8`:0000.
fn start_ap(vp: CapSlot, vector: u8) -> Result<(), ErrorCode> {
    let segment = tlfs::HvX64SegmentRegister {
        base: u64::from(vector) << 12,
        limit: 0xffff,
        selector: u16::from(vector) << 8,
        attributes: tlfs::HvX64SegmentAttributes::new()
            .with_segment_type(11)
            .with_non_system_segment(true)
            .with_present(true),
    };
    let (low, high) = tlfs::segment_register_value(&segment);
    let cs = u64::from(HvRegisterName::CS.0);
    let rip = u64::from(HvRegisterName::RIP.0);
    invoke(vp, Operation::VP_SET_REGISTERS, &[2, cs, low, high, rip, 0, 0])?;
    invoke(vp, Operation::VP_START, &[]).map(drop)
}

/// Whether the kernel still holds an interruption for the VP.
fn pending_interruption(vp: CapSlot) -> Option<bool> {
    let name = u64::from(HvRegisterName::PENDING_INTERRUPTION.0);
    let reply = invoke(vp, Operation::VP_GET_REGISTERS, &[1, name]).ok()?;
    let value = *reply.words().first()?;
    Some(tlfs::HvX64PendingInterruptionRegister::from_bits(value).interruption_pending())
}
