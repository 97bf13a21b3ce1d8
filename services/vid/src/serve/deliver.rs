//! What reaches the partitions between exits besides time: the broker's
//! deliveries, and what is typed on the console; and the guests' prompts
//! shown.

use super::{Running, say};
use crate::host::{Kernel, NoDelivery, Services};
use crate::logs::Kind;
use crate::messaging::{Delivered, Delivery};

/// Most deliveries fetched for one partition per loop turn.
const MAX_FETCHES: usize = 64;

/// Fetches what the broker holds for the running partitions and puts it
/// into their VPs' SynICs: for every partition once the broker
/// `signalled` (`broker-events`), until `NO_DATA`. While one of a
/// partition's VPs holds a message for a busy slot only event flags are
/// fetched (`fetch_event`): its messages wait at the broker, whose bounded
/// queue then answers `INSUFFICIENT_BUFFERS` to the sender, and are
/// fetched once the guest's EOM let the held one into its slot.
pub(super) fn deliver(kernel: &impl Kernel, services: &impl Services, signalled: bool, running: &mut [Running<'_>]) {
    if signalled {
        for r in running.iter_mut() {
            r.fetch = true;
        }
    }
    let due = |r: &Running<'_>| !r.stopped && (r.fetch || (r.queued && !r.vmm.synthetic.holds_message()));
    for r in running.iter_mut().filter(|r| due(r)) {
        let vps = r.vps.len() as u32;
        // Bounded, as the broker's answers are allegations too; what is
        // left is fetched next turn. SynIC state is told again once a pass.
        let mut told_synic = false;
        for _ in 0..MAX_FETCHES {
            let holds = r.vmm.synthetic.holds_message();
            // NO_DATA, or a broker that is gone or refuses. With a message
            // held, messages may wait for its EOM.
            let (kind, vp, sint, port, value, payload) = match services.fetch(r.index, holds) {
                Ok(fetched) => fetched,
                Err(why) => {
                    if why == NoDelivery::SynicUnknown && !told_synic {
                        told_synic = true;
                        // A broker started again: what each VP's SINTs take.
                        let mut connections = super::Connections { services, partition: r.index, called: false };
                        r.vmm.report_synic_again(r.vps.len() as u32, &mut connections);
                        r.fetch = true;
                        continue;
                    }
                    (r.fetch, r.queued) = (false, holds);
                    break;
                }
            };
            let Some(delivery) = Delivery::from_fetch(kind, vp, sint, port, value, payload.as_slice(), vps) else {
                let line =
                    format_args!("the broker handed over a malformed delivery (kind {kind}, VP {vp}, SINT {sint})");
                say(kernel, &mut r.logs, r.name, Kind::Event, line);
                r.vmm.stats.dropped_deliveries += 1;
                continue;
            };
            if r.vmm.deliver(&delivery, &mut super::view::RamOnly(r.ram, r.beneath, Some(&r.protections)))
                == Delivered::Dropped
            {
                say(kernel, &mut r.logs, r.name, Kind::Event, format_args!("{delivery}: no SynIC takes it; dropped"));
            }
        }
    }
}

/// Ticks a guest's unfinished console line waits before it is shown: long
/// enough that a line printed in pieces stays whole, short enough that a
/// shell's prompt appears at once to a person.
pub(super) const PROMPT_TICKS: u64 = 50;

/// Shows a console line the guest left unfinished for [`PROMPT_TICKS`] (a
/// shell's prompt), `now` being the loop's tick.
pub(super) fn show_prompts(kernel: &impl Kernel, running: &mut [Running<'_>], now: u64) {
    for r in running.iter_mut().filter(|r| now.saturating_sub(r.console_tick) >= PROMPT_TICKS) {
        if let Some(line) = r.console.take_partial() {
            let text = core::str::from_utf8(&line).unwrap_or("?");
            say(kernel, &mut r.logs, r.name, Kind::Console, format_args!("{text}"));
        }
    }
}

/// How often the VID looks for typed input while its guests are idle.
pub(super) const INPUT_POLL_TICKS: u64 = 3;

/// Bytes typed on the host's serial line, for the first running
/// partition's COM1 (the console service gives them to one reader).
pub(super) struct Input {
    enabled: bool,
    last_tick: u64,
}

impl Input {
    pub fn new(services: &impl Services) -> Input {
        Input { enabled: services.has_input(), last_tick: 0 }
    }

    /// The ticks the loop may wait at its tick `now` before it must look
    /// again (0: no limit): [`INPUT_POLL_TICKS`] while a guest reads its
    /// serial line, and no longer than an unfinished line's pause
    /// ([`show_prompts`]).
    pub fn wait(&self, running: &[Running<'_>], now: u64) -> u64 {
        let reading = self.enabled && running.iter().any(|r| !r.stopped && r.vmm.uart.receiving());
        let mut ticks = if reading { INPUT_POLL_TICKS } else { 0 };
        for r in running.iter().filter(|r| r.console.has_partial()) {
            let left = r.console_tick.saturating_add(PROMPT_TICKS).saturating_sub(now).max(1);
            ticks = if ticks == 0 { left } else { ticks.min(left) };
        }
        ticks
    }

    /// True if [`poll`](Self::poll) would ask the console at the loop's
    /// tick `now` (a tick passed).
    pub fn due(&self, now: u64) -> bool {
        self.enabled && now != self.last_tick
    }

    /// At most once a tick (the loop's tick `now`): moves what was typed
    /// into the guest's UART, as much as its receive FIFO takes. Only a
    /// guest that reads its serial line ([`Uart::receiving`]) asks the
    /// console: the console gives its input to the first task that reads,
    /// and a VID whose guests only write must not take it from another's.
    ///
    /// [`Uart::receiving`]: crate::uart::Uart::receiving
    pub fn poll(&mut self, services: &impl Services, running: &mut [Running<'_>], now: u64) {
        if !self.due(now) {
            return;
        }
        self.last_tick = now;
        let Some(r) = running.iter_mut().find(|r| !r.stopped && r.vmm.uart.receiving()) else { return };
        let room = r.vmm.uart.rx_space();
        if room == 0 {
            return;
        }
        match services.read_input(room as u32) {
            Some(bytes) => {
                r.vmm.push_input(bytes.as_slice());
            }
            // Another task reads the console: stop asking.
            None => self.enabled = false,
        }
    }
}
