//! `tessera trace`: boots a system with the kernel's trace on (`trace=on`,
//! `kerncore::trace`), reads the report the kernel prints when the system
//! ends, and turns it into tables: exits per reason (count, cost, share),
//! per partition, per reason and detail (port, MSR, ...), syscalls,
//! context switches, and a timeline of the last events.
//!
//! Without a manifest it is the Linux boot of `tessera linux tessera`, to
//! the shell's answer and the power-off.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kerncore::trace::{Cost, Event, ExitKind, Line, OTHER_DETAIL, Record};

use crate::boot::{self, BootOptions, Emulator, Firmware};
use crate::{images, linux, ui, workdir};

/// The kernel option that turns the trace on.
pub const TRACE_ON: &str = "trace=on";
/// QEMU's deterministic mode, where the TSC counts guest instructions.
pub const ICOUNT: [&str; 2] = ["-icount", "shift=0"];

/// What the kernel reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub tsc_hz: u64,
    pub cpus: u32,
    /// Per (partition, reason).
    pub reasons: Vec<(u8, ExitKind, Cost)>,
    /// Per (reason, detail); [`OTHER_DETAIL`] for the rest of a reason.
    pub details: Vec<(ExitKind, u64, Cost)>,
    pub syscalls: Vec<(u8, u64)>,
    pub switches: Vec<(u8, u64)>,
    /// The last events of each CPU, merged in time order.
    pub records: Vec<Record>,
    /// Events the rings overwrote.
    pub lost: u64,
}

/// The report in a serial log, or `None` if it has none (the trace was
/// off, or the system never ended by itself). A report cut short (no `end`
/// line) is `None` too.
pub fn parse(serial: &str) -> Option<Report> {
    let mut report: Option<Report> = None;
    let mut ended = false;
    for line in serial.lines().filter_map(Line::parse) {
        if let Line::Begin { tsc_hz, cpus } = line {
            // A later report (a reboot's) replaces an earlier one.
            report = Some(Report { tsc_hz, cpus, ..Report::default() });
            ended = false;
            continue;
        }
        let Some(r) = report.as_mut() else { continue };
        match line {
            Line::Begin { .. } => {}
            Line::Reason { partition, kind, cost } => r.reasons.push((partition, kind, cost)),
            Line::Detail { kind, detail, cost } => r.details.push((kind, detail, cost)),
            Line::Syscalls { number, count } => r.syscalls.push((number, count)),
            Line::Switches { cpu, count } => r.switches.push((cpu, count)),
            Line::Record(record) => r.records.push(record),
            Line::End { lost } => {
                r.lost = lost;
                ended = true;
            }
        }
    }
    let mut report = report.filter(|_| ended)?;
    report.records.sort_by_key(|r| (r.tsc, r.cpu));
    Some(report)
}

/// The reasons summed over every partition, costliest first.
pub fn by_reason(report: &Report) -> Vec<(ExitKind, Cost)> {
    let mut sums: Vec<(ExitKind, Cost)> = Vec::new();
    for &(_, kind, cost) in &report.reasons {
        match sums.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, sum)) => sum.merge(&cost),
            None => sums.push((kind, cost)),
        }
    }
    sums.sort_by(|a, b| b.1.handled.cmp(&a.1.handled).then(b.1.count.cmp(&a.1.count)));
    sums
}

fn total(costs: impl Iterator<Item = Cost>) -> Cost {
    costs.fold(Cost::default(), |mut sum, c| {
        sum.merge(&c);
        sum
    })
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { 100.0 * part as f64 / whole as f64 }
}

fn mean(sum: u64, count: u64) -> u64 {
    sum.checked_div(count).unwrap_or(0)
}

/// One row of an exit table.
fn row(out: &mut String, name: &str, cost: &Cost, all: &Cost) {
    let _ = writeln!(
        out,
        "  {name:<30} {:>7} {:>6.1}% {:>7} {:>12} {:>6.1}% {:>7} {:>7} {:>7} {:>7} {:>10}",
        cost.count,
        percent(cost.count, all.count),
        cost.forwarded,
        cost.handled,
        percent(cost.handled, all.handled),
        mean(cost.handled, cost.count),
        cost.max_handled,
        mean(cost.sent, cost.forwarded),
        mean(cost.answered.saturating_sub(cost.sent), cost.forwarded),
        mean(cost.to_entry, cost.count),
    );
}

fn header(out: &mut String, first: &str) {
    let _ = writeln!(
        out,
        "  {first:<30} {:>7} {:>7} {:>7} {:>12} {:>7} {:>7} {:>7} {:>7} {:>7} {:>10}",
        "exits", "share", "to VID", "cost total", "share", "mean", "max", "send", "VID", "to entry"
    );
}

/// The detail of an exit as a person reads it.
fn detail_name(kind: ExitKind, detail: u64) -> String {
    if detail == OTHER_DETAIL {
        return format!("{} (others)", kind.name());
    }
    match kind {
        ExitKind::IoIn | ExitKind::IoOut => format!("{} port {detail:#x}", kind.name()),
        ExitKind::MsrRead | ExitKind::MsrWrite => format!("{} {detail:#x}", kind.name()),
        ExitKind::Hypercall => format!("hypercall code {detail:#x}"),
        ExitKind::Cpuid => format!("cpuid leaf {detail:#x}"),
        ExitKind::GpaMapped | ExitKind::GpaUnmapped => format!("{} page {detail:#x}", kind.name()),
        ExitKind::Exception => format!("exception vector {detail}"),
        ExitKind::ControlRegister => format!("cr{detail} write"),
        ExitKind::Other => format!("other code {detail:#x}"),
        _ => kind.name().to_string(),
    }
}

fn syscall_name(number: u8) -> String {
    abi::Sysnum(u64::from(number)).name().map_or_else(|| format!("#{number}"), |n| n.to_lowercase())
}

fn event_text(event: &Event) -> String {
    match *event {
        Event::Exit { partition, vp, kind, detail } => {
            format!("exit   p{partition} vp{vp} {}", detail_name(kind, detail))
        }
        Event::Forward { partition, vp } => format!("to VID p{partition} vp{vp}"),
        Event::Reply { partition, vp } => format!("reply  p{partition} vp{vp} (by this thread)"),
        Event::Entry { partition, vp } => format!("entry  p{partition} vp{vp}"),
        Event::Syscall { number, label } => {
            let label = match label {
                abi::labels::FAULT => "fault".to_string(),
                abi::labels::VM_EXIT => "vm-exit".to_string(),
                abi::labels::VP_STOPPED => "vp-stopped".to_string(),
                abi::labels::NOTIFICATION => "notification".to_string(),
                l => format!("{l:#x}"),
            };
            format!("syscall {} label {label}", syscall_name(number))
        }
        Event::Switch => "switch to this thread".to_string(),
    }
}

/// The report as tables; `unit` names what the TSC counted, `timeline`
/// how many of the last events to show.
pub fn render(report: &Report, unit: &str, timeline: usize) -> String {
    let mut out = String::new();
    let reasons = by_reason(report);
    let all = total(reasons.iter().map(|(_, c)| *c));
    let _ = writeln!(
        out,
        "Exits by reason, all partitions: {} exits, {} of them to the VID; costs in {unit}",
        all.count, all.forwarded
    );
    let _ = writeln!(
        out,
        "  (cost: exit to re-entry when ring 0 handled it (or to where it let the VP wait for another thread),\n   exit to the VID's reply when forwarded; of those forwarded, send: exit to the message's send, VID:\n   send to reply, means; to entry: exit to the VP's next entry, a halt's idle wait included)"
    );
    header(&mut out, "reason");
    for (kind, cost) in &reasons {
        row(&mut out, kind.name(), cost, &all);
    }
    row(&mut out, "total", &all, &all);

    let partitions: BTreeMap<u8, Vec<(ExitKind, Cost)>> =
        report.reasons.iter().fold(BTreeMap::new(), |mut map, &(p, kind, cost)| {
            map.entry(p).or_insert_with(Vec::new).push((kind, cost));
            map
        });
    let _ = writeln!(out, "\nExits by partition");
    header(&mut out, "partition");
    for (p, costs) in &partitions {
        let sum = total(costs.iter().map(|(_, c)| *c));
        let mut top: Vec<&(ExitKind, Cost)> = costs.iter().collect();
        top.sort_by_key(|c| std::cmp::Reverse(c.1.handled));
        row(&mut out, &format!("partition {p}"), &sum, &all);
        let names: Vec<String> =
            top.iter().take(3).map(|(k, c)| format!("{} {:.0}%", k.name(), percent(c.handled, sum.handled))).collect();
        let _ = writeln!(out, "    costliest: {}", names.join(", "));
    }

    let mut details = report.details.clone();
    details.sort_by_key(|d| std::cmp::Reverse(d.2.handled));
    let _ = writeln!(out, "\nCostliest exits by reason and detail (top 15 of {})", details.len());
    header(&mut out, "reason and detail");
    for (kind, detail, cost) in details.iter().take(15) {
        row(&mut out, &detail_name(*kind, *detail), cost, &all);
    }

    let calls: Vec<String> = report.syscalls.iter().map(|(n, c)| format!("{} {c}", syscall_name(*n))).collect();
    let _ = writeln!(out, "\nSyscalls: {}", calls.join(", "));
    let switches: Vec<String> = report.switches.iter().map(|(cpu, n)| format!("CPU {cpu} {n}")).collect();
    let _ = writeln!(out, "Context switches: {}", switches.join(", "));

    let shown = report.records.len().min(timeline);
    let recent = &report.records[report.records.len() - shown..];
    let _ = writeln!(
        out,
        "\nTimeline: the last {shown} of the events the CPUs kept ({} overwritten), {unit} from the first shown",
        report.lost
    );
    let start = recent.first().map_or(0, |r| r.tsc);
    for r in recent {
        let _ =
            writeln!(out, "  {:>12}  cpu {}  thread {:>3}  {}", r.tsc - start, r.cpu, r.thread, event_text(&r.event));
    }
    out
}

/// Options of `tessera trace`.
pub struct Options {
    /// The system to boot; `None`: the Linux guest to its shell's answer.
    pub manifest: Option<PathBuf>,
    pub timeout: Duration,
    /// Under `-icount shift=0` (costs in guest instructions).
    pub icount: bool,
    pub smp: u32,
    /// The Linux guest's VPs.
    pub vcpus: u8,
    /// Events of the timeline.
    pub timeline: usize,
    /// Where the serial console goes; `None`: a new run directory.
    pub serial_log: Option<PathBuf>,
    /// Boot nothing: decode the report in this serial log.
    pub decode: Option<PathBuf>,
}

/// Boots, decodes and prints; returns an exit code.
pub fn run(opts: &Options) -> i32 {
    if let Some(log) = &opts.decode {
        // A log of another run says nothing of -icount: the unit is the TSC's.
        return print_report(log, "TSC ticks (instructions if the run was under -icount)", opts.timeline);
    }
    let serial_log =
        match opts.serial_log.clone().map_or_else(|| workdir::new_run_dir("trace").map(|d| d.join("serial.log")), Ok) {
            Ok(path) => path,
            Err(e) => {
                ui::error(format!("cannot create a run directory: {e}"));
                return crate::EXIT_RUNNER_ERROR;
            }
        };
    if let Some(parent) = serial_log.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let qemu_args: Vec<String> = if opts.icount { ICOUNT.iter().map(|a| a.to_string()).collect() } else { Vec::new() };
    let booted = match &opts.manifest {
        Some(manifest) => boot_manifest(manifest, opts, &serial_log, qemu_args),
        None => boot_linux(opts, &serial_log, qemu_args),
    };
    if let Err((code, message)) = booted {
        ui::error(message);
        return code;
    }
    let unit = if opts.icount { "guest instructions (QEMU -icount shift=0)" } else { "TSC cycles" };
    print_report(&serial_log, unit, opts.timeline)
}

/// Decodes the report in `serial_log` and prints it; returns an exit code.
fn print_report(serial_log: &Path, unit: &str, timeline: usize) -> i32 {
    let serial = match std::fs::read(serial_log) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            ui::error(format!("cannot read {}: {e}", serial_log.display()));
            return crate::EXIT_RUNNER_ERROR;
        }
    };
    let Some(report) = parse(&serial) else {
        ui::error(format!("no complete trace report in {}", serial_log.display()));
        return crate::EXIT_NO_MARKER;
    };
    println!();
    print!("{}", render(&report, unit, timeline));
    ui::note(format!("serial log with the raw report (`trace:` lines): {}", serial_log.display()));
    0
}

fn boot_linux(opts: &Options, serial_log: &Path, qemu_args: Vec<String>) -> Result<(), (i32, String)> {
    let guest = linux::fetch().map_err(|e| (crate::EXIT_RUNNER_ERROR, e.message))?;
    let run = linux::RunOptions { timeout: opts.timeout, echo: false, serial_log: serial_log.to_path_buf() };
    let tessera = linux::TesseraOptions {
        emulator: Emulator::Qemu,
        vcpus: opts.vcpus,
        smp: opts.smp,
        reboot: false,
        cmdline: TRACE_ON.into(),
        qemu_args,
        run,
    };
    ui::note("booting Linux under Tessera with the trace on, to the shell's answer and the power-off");
    match linux::tessera(&guest, &tessera) {
        Ok(run) => {
            ui::note(linux::summary("Tessera boot with the trace on", &run));
            Ok(())
        }
        Err(linux::DirectError::Start(e)) => Err((crate::EXIT_RUNNER_ERROR, e)),
        Err(linux::DirectError::Boot(e)) => Err((e.code, e.message)),
        Err(linux::DirectError::Expect(e)) => {
            Err((crate::EXIT_TIMEOUT, format!("the Linux guest did not answer: {e}")))
        }
    }
}

fn boot_manifest(
    manifest: &Path,
    opts: &Options,
    serial_log: &Path,
    qemu_args: Vec<String>,
) -> Result<(), (i32, String)> {
    let dir = workdir::tessera_dir().join("images").join(workdir::unique_name("trace"));
    let (_, ram) = images::use_manifest(manifest, &dir).map_err(|e| (crate::EXIT_RUNNER_ERROR, e))?;
    let boot = BootOptions {
        emulator: Emulator::Qemu,
        firmware: Firmware::Bios,
        timeout: Some(opts.timeout),
        smp: opts.smp,
        smp_threads: 1,
        memory_mib: images::machine_mib(ram).max(256),
        cmdline: TRACE_ON.into(),
        serial_log: Some(serial_log.to_path_buf()),
        qemu_args,
        bochs_cpu: None,
        gdb: None,
        reboots: 0,
    };
    match boot::boot(&boot) {
        Ok(0) => Ok(()),
        Ok(code) => Err((code, format!("the system ended with status {code}"))),
        Err(e) => Err((e.code, e.message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kerncore::trace::Tracer;

    /// A report as the kernel prints it, from a tracer fed a few events.
    fn serial() -> String {
        let mut t = Tracer::<2>::new();
        t.run(0, 1, 5);
        t.exit(0, 100, 0, 5, 0, 0, ExitKind::IoOut, 0x3f8);
        t.forward(0, 110, 0, 5);
        t.syscall(1, 150, 8, 1, 0xffff_0002);
        t.reply(1, 400, 0, 8);
        t.entry(0, 500, 0, 5, 0, 0);
        t.exit(0, 600, 0, 5, 0, 0, ExitKind::HostInterrupt, 0);
        t.entry(0, 700, 0, 5, 0, 0);
        t.exit(0, 800, 1, 6, 1, 0, ExitKind::IoOut, 0x80);
        t.entry(0, 850, 1, 6, 1, 0);
        let mut text = String::from("boot: done\n");
        for line in t.report(1000) {
            text.push_str(&format!("{line}\r\n"));
        }
        text + "tessera: halted status=0\n"
    }

    #[test]
    fn a_report_decodes_into_tables() {
        let report = parse(&serial()).expect("a report");
        assert_eq!((report.tsc_hz, report.cpus, report.lost), (1000, 2, 0));
        let reasons = by_reason(&report);
        // io-out: 300 (forwarded, to the reply) + 50; host-interrupt: 100.
        assert_eq!(reasons[0].0, ExitKind::IoOut);
        assert_eq!(
            reasons[0].1,
            Cost { count: 2, forwarded: 1, handled: 350, to_entry: 450, max_handled: 300, sent: 10, answered: 300 }
        );
        assert_eq!(reasons[1].0, ExitKind::HostInterrupt);
        assert!(report.records.windows(2).all(|w| w[0].tsc <= w[1].tsc), "merged in time order");
        let text = render(&report, "TSC cycles", 5);
        assert!(text.contains("3 exits, 1 of them to the VID"), "{text}");
        assert!(text.contains("io-out port 0x3f8"), "{text}");
        assert!(text.contains("partition 1"), "{text}");
        assert!(text.contains("syscall reply_recv label vm-exit") || text.contains("Syscalls: reply_recv 1"), "{text}");
        assert!(text.contains("Timeline: the last 5 of"), "{text}");
        assert!(text.contains("Context switches: CPU 0 1"), "{text}");
    }

    #[test]
    fn no_report_or_a_cut_one_is_none() {
        assert_eq!(parse("boot: done\ntessera: halted status=0\n"), None);
        let serial = serial();
        let cut = serial.split("trace: end").next().unwrap();
        assert_eq!(parse(cut), None);
    }
}
