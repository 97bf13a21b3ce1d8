//! The trace (boot option `trace=on`): what ring 0 records of VM exits,
//! syscalls and context switches, and the text it prints at the end of the
//! run for the runner (`tessera trace`) to decode.
//!
//! Two things are kept. Exact aggregates, per partition and exit reason and
//! per (reason, detail) — the port, MSR, hypercall code, CPUID leaf, page
//! or vector — with each exit's cost: from the exit to the moment the VP
//! may run again (its re-entry for an exit ring 0 handled, the handler's
//! reply for a forwarded one) and from the exit to the VP's next entry.
//! And the last [`RING_RECORDS`] events of each CPU, for a timeline. The
//! kernel owns the storage and the clock; everything else is here.

use core::fmt;

/// Events kept per CPU; older ones are overwritten (and counted as lost).
pub const RING_RECORDS: usize = 128;
/// Distinct (reason, detail) pairs counted one by one (a hash table); a
/// pair that finds no slot within [`DETAIL_PROBES`] is counted under
/// [`OTHER_DETAIL`].
pub const DETAIL_SLOTS: usize = 1024;
const _: () = assert!(DETAIL_SLOTS.is_power_of_two());
pub const DETAIL_PROBES: usize = 16;
/// The detail of the pairs that found no slot.
pub const OTHER_DETAIL: u64 = u64::MAX;
/// Partitions and VP objects the aggregates and open exits cover.
pub const PARTITIONS: usize = abi::limits::MAX_PARTITIONS;
pub const VPS: usize = abi::limits::tables::VPS;
/// Syscall numbers counted (the ABI stays at or below 16).
pub const SYSCALLS: usize = 16;

macro_rules! exit_kinds {
    ($($(#[$m:meta])* $variant:ident = $name:literal,)*) => {
        /// Why a VP exited, as the trace counts it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub enum ExitKind { $($(#[$m])* $variant,)* }

        impl ExitKind {
            pub const ALL: &'static [ExitKind] = &[$(ExitKind::$variant,)*];

            pub const fn name(self) -> &'static str {
                match self { $(ExitKind::$variant => $name,)* }
            }
        }
    };
}

exit_kinds! {
    /// A host interrupt, NMI or preemption: ring 0's own.
    HostInterrupt = "host-interrupt",
    InterruptWindow = "interrupt-window",
    IoIn = "io-in",
    IoOut = "io-out",
    Cpuid = "cpuid",
    Hlt = "hlt",
    Hypercall = "hypercall",
    MsrRead = "msr-read",
    MsrWrite = "msr-write",
    /// A second-level fault on a mapped page (a right it lacks).
    GpaMapped = "gpa-mapped",
    GpaUnmapped = "gpa-unmapped",
    Shutdown = "shutdown",
    Xsetbv = "xsetbv",
    CacheFlush = "cache-flush",
    Rdpmc = "rdpmc",
    NotOffered = "not-offered",
    DebugRegister = "debug-register",
    Exception = "exception",
    ControlRegister = "cr-write",
    MachineCheck = "machine-check",
    Other = "other",
}

/// Exit reasons counted.
pub const EXIT_KINDS: usize = ExitKind::ALL.len();

impl ExitKind {
    pub fn from_name(name: &str) -> Option<ExitKind> {
        ExitKind::ALL.iter().copied().find(|k| k.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// VP `vp` of partition `partition` exited.
    Exit { partition: u8, vp: u8, kind: ExitKind, detail: u64 },
    /// The exit went to the VP's handler as a message.
    Forward { partition: u8, vp: u8 },
    /// The handler answered it.
    Reply { partition: u8, vp: u8 },
    /// The VP enters guest mode.
    Entry { partition: u8, vp: u8 },
    /// A thread made a syscall (`label`: its message's).
    Syscall { number: u8, label: u32 },
    /// A CPU switched to this thread (a task's or a VP's).
    Switch,
}

/// One event, with when, where and whose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub tsc: u64,
    pub cpu: u8,
    pub thread: u16,
    pub event: Event,
}

const NO_RECORD: Record = Record { tsc: 0, cpu: 0, thread: 0, event: Event::Switch };

/// A CPU's last events.
#[derive(Clone, Copy)]
pub struct Ring {
    records: [Record; RING_RECORDS],
    /// Events ever pushed.
    pushed: u64,
}

impl Ring {
    pub const EMPTY: Ring = Ring { records: [NO_RECORD; RING_RECORDS], pushed: 0 };

    pub fn push(&mut self, record: Record) {
        self.records[(self.pushed % RING_RECORDS as u64) as usize] = record;
        self.pushed += 1;
    }

    /// The events kept, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Record> {
        let kept = self.pushed.min(RING_RECORDS as u64) as usize;
        let start = ((self.pushed - kept as u64) % RING_RECORDS as u64) as usize;
        (0..kept).map(move |i| &self.records[(start + i) % RING_RECORDS])
    }

    /// Events overwritten.
    pub fn lost(&self) -> u64 {
        self.pushed.saturating_sub(RING_RECORDS as u64)
    }
}

/// Exits of one kind and what they cost, in TSC ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    pub count: u64,
    /// Sent to the handler.
    pub forwarded: u64,
    /// Exit to the VP's re-entry (ring 0) or the handler's reply.
    pub handled: u64,
    /// Exit to the VP's next entry (a halt's wait included).
    pub to_entry: u64,
    /// The longest `handled`.
    pub max_handled: u64,
    /// Of the forwarded ones: exit to the message's send (ring 0's part
    /// before the handler), and exit to the handler's reply.
    pub sent: u64,
    pub answered: u64,
}

impl Cost {
    const ZERO: Cost = Cost { count: 0, forwarded: 0, handled: 0, to_entry: 0, max_handled: 0, sent: 0, answered: 0 };

    /// One exit: `sent` after it if it was forwarded, `ready` after it if
    /// the VP could run again before its next entry (the handler's reply,
    /// or ring 0 leaving it for another thread), its next entry `to_entry`
    /// after it.
    fn add(&mut self, sent: Option<u64>, ready: Option<u64>, to_entry: u64) {
        let handled = ready.unwrap_or(to_entry);
        self.count += 1;
        self.handled += handled;
        self.to_entry += to_entry;
        self.max_handled = self.max_handled.max(handled);
        if let Some(sent) = sent {
            self.forwarded += 1;
            self.sent += sent;
            self.answered += handled;
        }
    }

    /// Sums `other` into this.
    pub fn merge(&mut self, other: &Cost) {
        self.count += other.count;
        self.forwarded += other.forwarded;
        self.handled += other.handled;
        self.to_entry += other.to_entry;
        self.max_handled = self.max_handled.max(other.max_handled);
        self.sent += other.sent;
        self.answered += other.answered;
    }
}

/// An exit whose VP has not entered again yet.
#[derive(Clone, Copy)]
struct Open {
    at: u64,
    partition: u8,
    vp: u8,
    kind: ExitKind,
    detail: u64,
    /// After the exit: its send to the handler, and when the VP could run
    /// again (the handler's reply, or ring 0 leaving it for another thread).
    sent: Option<u64>,
    ready: Option<u64>,
}

/// Everything the trace keeps. `CPUS` rings, one per CPU.
pub struct Tracer<const CPUS: usize> {
    rings: [Ring; CPUS],
    /// The thread each CPU last switched to.
    current: [Option<u16>; CPUS],
    open: [Option<Open>; VPS],
    by_reason: [[Cost; EXIT_KINDS]; PARTITIONS],
    details: [Option<(ExitKind, u64, Cost)>; DETAIL_SLOTS],
    /// Per reason: the pairs that found no slot.
    other_details: [Cost; EXIT_KINDS],
    syscalls: [u64; SYSCALLS],
    switches: [u64; CPUS],
}

impl<const CPUS: usize> Default for Tracer<CPUS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const CPUS: usize> Tracer<CPUS> {
    pub const fn new() -> Self {
        Tracer {
            rings: [Ring::EMPTY; CPUS],
            current: [None; CPUS],
            open: [None; VPS],
            by_reason: [[Cost::ZERO; EXIT_KINDS]; PARTITIONS],
            details: [None; DETAIL_SLOTS],
            other_details: [Cost::ZERO; EXIT_KINDS],
            syscalls: [0; SYSCALLS],
            switches: [0; CPUS],
        }
    }

    fn push(&mut self, cpu: usize, tsc: u64, thread: u16, event: Event) {
        if let Some(ring) = self.rings.get_mut(cpu) {
            ring.push(Record { tsc, cpu: cpu as u8, thread, event });
        }
    }

    /// VP object `v` (thread `thread`, VP `vp` of `partition`) exited at `tsc`.
    #[allow(clippy::too_many_arguments)]
    pub fn exit(
        &mut self,
        cpu: usize,
        tsc: u64,
        v: usize,
        thread: u16,
        partition: u8,
        vp: u8,
        kind: ExitKind,
        detail: u64,
    ) {
        if let Some(open) = self.open.get_mut(v) {
            *open = Some(Open { at: tsc, partition, vp, kind, detail, sent: None, ready: None });
        }
        self.push(cpu, tsc, thread, Event::Exit { partition, vp, kind, detail });
    }

    /// VP object `v`'s exit went to its handler (thread `thread`'s own).
    pub fn forward(&mut self, cpu: usize, tsc: u64, v: usize, thread: u16) {
        let Some(open) = self.open.get_mut(v).and_then(Option::as_mut) else { return };
        open.sent = Some(tsc.saturating_sub(open.at));
        let (partition, vp) = (open.partition, open.vp);
        self.push(cpu, tsc, thread, Event::Forward { partition, vp });
    }

    /// The handler, thread `thread`, answered VP object `v`'s exit.
    pub fn reply(&mut self, cpu: usize, tsc: u64, v: usize, thread: u16) {
        let Some(open) = self.open.get_mut(v).and_then(Option::as_mut) else { return };
        open.ready = Some(tsc.saturating_sub(open.at));
        let (partition, vp) = (open.partition, open.vp);
        self.push(cpu, tsc, thread, Event::Reply { partition, vp });
    }

    /// Ring 0 is done with VP object `v`'s exit but runs another thread
    /// (or the exit was dropped): the exit's cost ends here.
    pub fn leave(&mut self, tsc: u64, v: usize) {
        if let Some(open) = self.open.get_mut(v).and_then(Option::as_mut).filter(|o| o.ready.is_none()) {
            open.ready = Some(tsc.saturating_sub(open.at));
        }
    }

    /// VP object `v` enters guest mode: its open exit is closed and counted.
    pub fn entry(&mut self, cpu: usize, tsc: u64, v: usize, thread: u16, partition: u8, vp: u8) {
        if let Some(open) = self.open.get_mut(v).and_then(Option::take) {
            let to_entry = tsc.saturating_sub(open.at);
            if let Some(cost) = self.by_reason.get_mut(usize::from(open.partition)) {
                cost[open.kind.index()].add(open.sent, open.ready, to_entry);
            }
            self.detail(open.kind, open.detail).add(open.sent, open.ready, to_entry);
        }
        self.push(cpu, tsc, thread, Event::Entry { partition, vp });
    }

    fn detail(&mut self, kind: ExitKind, detail: u64) -> &mut Cost {
        // Fibonacci hashing: the top bits of the product depend on every
        // bit of the pair (a slot still compares both).
        let key = detail ^ kind as u64;
        let home = (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (u64::BITS - DETAIL_SLOTS.trailing_zeros())) as usize;
        let found = (0..DETAIL_PROBES).map(|i| (home + i) % DETAIL_SLOTS).find(|&i| match self.details[i] {
            None => true,
            Some((k, d, _)) => k == kind && d == detail,
        });
        match found {
            Some(i) => &mut self.details[i].get_or_insert((kind, detail, Cost::ZERO)).2,
            None => &mut self.other_details[kind.index()],
        }
    }

    pub fn syscall(&mut self, cpu: usize, tsc: u64, thread: u16, number: u64, label: u32) {
        if let Some(n) = self.syscalls.get_mut(number as usize) {
            *n += 1;
        }
        self.push(cpu, tsc, thread, Event::Syscall { number: number.min(u64::from(u8::MAX)) as u8, label });
    }

    /// CPU `cpu` runs `thread`: a switch if it ran another before.
    pub fn run(&mut self, cpu: usize, tsc: u64, thread: u16) {
        let Some(current) = self.current.get_mut(cpu) else { return };
        if current.replace(thread) == Some(thread) {
            return;
        }
        self.switches[cpu] += 1;
        self.push(cpu, tsc, thread, Event::Switch);
    }

    /// The report, line by line, in the order the runner reads it.
    pub fn report(&self, tsc_hz: u64) -> impl Iterator<Item = Line> + '_ {
        let cpus = (0..CPUS).filter(|&c| self.rings[c].pushed > 0);
        let begin = Line::Begin { tsc_hz, cpus: cpus.clone().count() as u32 };
        let reasons = self.by_reason.iter().enumerate().flat_map(|(p, costs)| {
            ExitKind::ALL.iter().filter(move |k| costs[k.index()].count > 0).map(move |&kind| Line::Reason {
                partition: p as u8,
                kind,
                cost: costs[kind.index()],
            })
        });
        let details = self.details.iter().flatten().map(|&(kind, detail, cost)| Line::Detail { kind, detail, cost });
        let others = ExitKind::ALL
            .iter()
            .filter(|k| self.other_details[k.index()].count > 0)
            .map(|&kind| Line::Detail { kind, detail: OTHER_DETAIL, cost: self.other_details[kind.index()] });
        let syscalls = (0..SYSCALLS)
            .filter(|&n| self.syscalls[n] > 0)
            .map(|n| Line::Syscalls { number: n as u8, count: self.syscalls[n] });
        let switches = cpus.clone().map(|c| Line::Switches { cpu: c as u8, count: self.switches[c] });
        let records = cpus.clone().flat_map(|c| self.rings[c].iter().map(|r| Line::Record(*r)));
        let lost = cpus.map(|c| self.rings[c].lost()).sum();
        core::iter::once(begin)
            .chain(reasons)
            .chain(details)
            .chain(others)
            .chain(syscalls)
            .chain(switches)
            .chain(records)
            .chain(core::iter::once(Line::End { lost }))
    }
}

/// The prefix of every line of the report.
pub const PREFIX: &str = "trace: ";

/// A line of the report as the kernel prints it (`Display`, after
/// [`PREFIX`]) and the runner reads it ([`Line::parse`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    Begin {
        tsc_hz: u64,
        cpus: u32,
    },
    Reason {
        partition: u8,
        kind: ExitKind,
        cost: Cost,
    },
    Detail {
        kind: ExitKind,
        detail: u64,
        cost: Cost,
    },
    Syscalls {
        number: u8,
        count: u64,
    },
    Switches {
        cpu: u8,
        count: u64,
    },
    Record(Record),
    /// Records overwritten in the rings.
    End {
        lost: u64,
    },
}

struct Costed<'a>(&'a Cost);

impl fmt::Display for Costed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        write!(
            f,
            "n={} fwd={} handled={} to_entry={} max={} sent={} answered={}",
            c.count, c.forwarded, c.handled, c.to_entry, c.max_handled, c.sent, c.answered
        )
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PREFIX)?;
        match self {
            Line::Begin { tsc_hz, cpus } => write!(f, "begin tsc_hz={tsc_hz} cpus={cpus}"),
            Line::Reason { partition, kind, cost } => {
                write!(f, "reason p={partition} kind={} {}", kind.name(), Costed(cost))
            }
            Line::Detail { kind, detail, cost } => {
                write!(f, "detail kind={} code={detail:#x} {}", kind.name(), Costed(cost))
            }
            Line::Syscalls { number, count } => write!(f, "syscalls nr={number} n={count}"),
            Line::Switches { cpu, count } => write!(f, "switches cpu={cpu} n={count}"),
            Line::Record(r) => {
                write!(f, "ev cpu={} tsc={} thread={} ", r.cpu, r.tsc, r.thread)?;
                match r.event {
                    Event::Exit { partition, vp, kind, detail } => {
                        write!(f, "exit p={partition} vp={vp} kind={} code={detail:#x}", kind.name())
                    }
                    Event::Forward { partition, vp } => write!(f, "forward p={partition} vp={vp}"),
                    Event::Reply { partition, vp } => write!(f, "reply p={partition} vp={vp}"),
                    Event::Entry { partition, vp } => write!(f, "entry p={partition} vp={vp}"),
                    Event::Syscall { number, label } => write!(f, "syscall nr={number} label={label:#x}"),
                    Event::Switch => f.write_str("switch"),
                }
            }
            Line::End { lost } => write!(f, "end lost={lost}"),
        }
    }
}

/// The `key=value` words of a line.
struct Words<'a>(&'a str);

impl Words<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.split_ascii_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    }

    fn num<T: TryFrom<u64>>(&self, key: &str) -> Option<T> {
        let v = self.get(key)?;
        let n = match v.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok()?,
            None => v.parse().ok()?,
        };
        T::try_from(n).ok()
    }

    fn kind(&self) -> Option<ExitKind> {
        ExitKind::from_name(self.get("kind")?)
    }

    fn cost(&self) -> Option<Cost> {
        Some(Cost {
            count: self.num("n")?,
            forwarded: self.num("fwd")?,
            handled: self.num("handled")?,
            to_entry: self.num("to_entry")?,
            max_handled: self.num("max")?,
            sent: self.num("sent")?,
            answered: self.num("answered")?,
        })
    }
}

impl Line {
    /// Reads a line the kernel printed; `None` for any other line (text
    /// before [`PREFIX`] is skipped, as a console's own prefix).
    pub fn parse(line: &str) -> Option<Line> {
        let rest = &line[line.find(PREFIX)? + PREFIX.len()..];
        let (tag, words) = rest.trim_end().split_once(' ').unwrap_or((rest.trim_end(), ""));
        let w = Words(words);
        Some(match tag {
            "begin" => Line::Begin { tsc_hz: w.num("tsc_hz")?, cpus: w.num("cpus")? },
            "reason" => Line::Reason { partition: w.num("p")?, kind: w.kind()?, cost: w.cost()? },
            "detail" => Line::Detail { kind: w.kind()?, detail: w.num("code")?, cost: w.cost()? },
            "syscalls" => Line::Syscalls { number: w.num("nr")?, count: w.num("n")? },
            "switches" => Line::Switches { cpu: w.num("cpu")?, count: w.num("n")? },
            "end" => Line::End { lost: w.num("lost")? },
            "ev" => Line::Record(Self::record(words)?),
            _ => return None,
        })
    }

    fn record(words: &str) -> Option<Record> {
        let w = Words(words);
        // The event's name is the fourth word, after cpu, tsc and thread.
        let name = words.split_ascii_whitespace().nth(3)?;
        let at = || Some((w.num("p")?, w.num("vp")?));
        let event = match name {
            "exit" => {
                let (partition, vp) = at()?;
                Event::Exit { partition, vp, kind: w.kind()?, detail: w.num("code")? }
            }
            "forward" => at().map(|(partition, vp)| Event::Forward { partition, vp })?,
            "reply" => at().map(|(partition, vp)| Event::Reply { partition, vp })?,
            "entry" => at().map(|(partition, vp)| Event::Entry { partition, vp })?,
            "syscall" => Event::Syscall { number: w.num("nr")?, label: w.num("label")? },
            "switch" => Event::Switch,
            _ => return None,
        };
        Some(Record { tsc: w.num("tsc")?, cpu: w.num("cpu")?, thread: w.num("thread")?, event })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::vec::Vec;

    #[test]
    fn an_exit_costs_until_the_reply_and_until_the_next_entry() {
        let mut t = Tracer::<2>::new();
        // Ring 0 handles one: both costs are exit to entry.
        t.exit(0, 100, 3, 9, 1, 0, ExitKind::HostInterrupt, 0);
        t.entry(0, 150, 3, 9, 1, 0);
        // One forwarded, answered at 1100, entered at 1300.
        t.exit(0, 1000, 3, 9, 1, 0, ExitKind::IoOut, 0x3f8);
        t.forward(0, 1010, 3, 9);
        t.reply(1, 1100, 3, 4);
        t.entry(0, 1300, 3, 9, 1, 0);
        // One ring 0 handled, but another thread ran before the VP: its
        // cost ends where ring 0 let it go.
        t.exit(0, 2000, 3, 9, 1, 0, ExitKind::HostInterrupt, 0);
        t.leave(2040, 3);
        t.entry(0, 9000, 3, 9, 1, 0);
        // An entry without an exit (the first) counts nothing.
        t.entry(1, 1400, 4, 10, 2, 0);
        assert_eq!(
            t.by_reason[1][ExitKind::HostInterrupt.index()],
            Cost { count: 2, forwarded: 0, handled: 90, to_entry: 7050, max_handled: 50, sent: 0, answered: 0 }
        );
        assert_eq!(
            t.by_reason[1][ExitKind::IoOut.index()],
            Cost { count: 1, forwarded: 1, handled: 100, to_entry: 300, max_handled: 100, sent: 10, answered: 100 }
        );
        assert!(t.by_reason[2].iter().all(|c| c.count == 0));
        let lines: Vec<Line> = t.report(1_000_000).collect();
        assert_eq!(lines[0], Line::Begin { tsc_hz: 1_000_000, cpus: 2 });
        assert!(lines.contains(&Line::Detail {
            kind: ExitKind::IoOut,
            detail: 0x3f8,
            cost: Cost {
                count: 1,
                forwarded: 1,
                handled: 100,
                to_entry: 300,
                max_handled: 100,
                sent: 10,
                answered: 100
            }
        }));
        assert_eq!(lines.last(), Some(&Line::End { lost: 0 }));
        let events = lines.iter().filter(|l| matches!(l, Line::Record(_))).count();
        assert_eq!(events, 9, "leaving records nothing");
    }

    #[test]
    fn every_line_reads_back_as_printed() {
        let mut t = Tracer::<2>::new();
        t.run(0, 5, 7);
        t.run(0, 6, 7);
        t.syscall(0, 7, 7, 1, 0xffff_0002);
        t.exit(1, 10, 0, 12, 0, 1, ExitKind::MsrWrite, 0x4000_0070);
        t.forward(1, 11, 0, 12);
        t.reply(0, 20, 0, 7);
        t.entry(1, 30, 0, 12, 0, 1);
        t.exit(1, 40, 0, 12, 0, 1, ExitKind::GpaUnmapped, 0xfee0_0000);
        let lines: Vec<Line> = t.report(2_000_000_000).collect();
        assert!(lines.contains(&Line::Switches { cpu: 0, count: 1 }), "the second run of 7 is no switch");
        assert!(lines.contains(&Line::Syscalls { number: 1, count: 1 }));
        for line in &lines {
            let text = line.to_string();
            assert_eq!(Line::parse(&text), Some(*line), "{text}");
            // As a console shows it, after its own prefix.
            assert_eq!(Line::parse(&std::format!("[12.5] {text}\r")), Some(*line), "{text}");
        }
        assert_eq!(Line::parse("kernel: trace: nonsense"), None);
        assert_eq!(
            Line::parse("trace: reason p=0 kind=warp n=1 fwd=0 handled=1 to_entry=1 max=1 sent=0 answered=0"),
            None
        );
        assert_eq!(Line::parse("no trace here"), None);
    }

    #[test]
    fn a_ring_keeps_the_newest_in_order_and_counts_the_lost() {
        let mut ring = Ring::EMPTY;
        for i in 0..(RING_RECORDS as u64 + 5) {
            ring.push(Record { tsc: i, cpu: 0, thread: 0, event: Event::Switch });
        }
        let kept: Vec<u64> = ring.iter().map(|r| r.tsc).collect();
        assert_eq!(kept.len(), RING_RECORDS);
        assert_eq!(kept[0], 5);
        assert_eq!(*kept.last().unwrap(), RING_RECORDS as u64 + 4);
        assert_eq!(ring.lost(), 5);
    }

    #[test]
    fn details_past_the_slots_are_counted_together() {
        let mut t = Tracer::<1>::new();
        let pairs = DETAIL_SLOTS as u64 + 3;
        for page in 0..pairs {
            t.exit(0, 0, 0, 1, 0, 0, ExitKind::GpaUnmapped, page << 12);
            t.entry(0, 10, 0, 1, 0, 0);
        }
        let kept = t.details.iter().flatten().count() as u64;
        assert!(kept > DETAIL_SLOTS as u64 * 3 / 4, "{kept} of {DETAIL_SLOTS} slots used");
        assert_eq!(t.other_details[ExitKind::GpaUnmapped.index()].count, pairs - kept);
        let counted: u64 = t.details.iter().flatten().map(|(_, _, c)| c.count).sum();
        assert_eq!(counted, kept, "one exit each");
        assert_eq!(t.by_reason[0][ExitKind::GpaUnmapped.index()].count, pairs);
        // A pair seen before still finds its slot.
        t.exit(0, 0, 0, 1, 0, 0, ExitKind::GpaUnmapped, 0);
        t.entry(0, 10, 0, 1, 0, 0);
        let first = t.details.iter().flatten().find(|(_, d, _)| *d == 0).map(|(_, _, c)| c.count);
        assert_eq!(first, Some(2));
        // Out-of-range indices (a VP object or CPU past the tables) are ignored.
        t.exit(5, 0, VPS, 1, 0, 0, ExitKind::Hlt, 0);
        t.entry(5, 1, VPS, 1, 0, 0);
        t.exit(0, 0, 0, 1, PARTITIONS as u8, 0, ExitKind::Hlt, 0);
        t.entry(0, 1, 0, 1, PARTITIONS as u8, 0);
    }

    #[test]
    fn every_kind_has_a_distinct_name_that_reads_back() {
        for (i, k) in ExitKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
            assert_eq!(ExitKind::from_name(k.name()), Some(*k));
        }
    }
}
