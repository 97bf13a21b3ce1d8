//! `tessera soak`: a system of two VIDs, one running Debian's Linux and
//! the other the guest test kernel, while the supervisor kills a random
//! root service every few seconds (`[system] soak_kill_every_ms`, docs/MANIFEST.md).
//!
//! The runner types `echo soak-N-$((6*7))` at the Linux shell on a
//! schedule and looks for `soak-N-42` (the arithmetic happens in the guest,
//! so the echoed input cannot match), follows the supervisor's lines
//! (kills, `soak: NAME recovered in T ms`, `kernel memory: ... (soak)`),
//! the test kernel's rounds (`testkernel: done: P passed, F failed`: its
//! command line ends each round in a triple fault, which restarts the
//! partition) and the kernel's own (`EXCEPTION:`, `KERNEL PANIC`, a halt
//! or reset), and prints a summary and a verdict ([`Tracker::summary`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::boot::{self, BootOptions, Emulator, Firmware};
use crate::console::{Console, ConsoleOptions};
use crate::{images, linux, qemu, ui, workdir};

/// The Linux guest's VID and partition, and the test kernel's.
pub const LINUX_VID: &str = images::GUEST_VID;
pub const SUITE_VID: &str = "vid-b";
pub const SUITE_PARTITION: &str = "suite";
/// A probe not answered this long after it was typed is lost.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// After the soak's duration, how long the runner waits at most for each
/// guest to show it is alive after its VID's last kill (the Linux guest
/// reboots then: 25–60 s of TCG on a busy machine).
pub const TAIL: Duration = Duration::from_secs(150);
/// Free memory may move by one page table between the first and the last
/// settled reading (the same bound as tests/recovery.rs's churn).
pub const MEMORY_SLACK: u64 = 4096;
/// The test kernel's suite, one round (its command line's `end=crash`
/// triple-faults after it, and the partition restarts). Long enough that
/// its restarts stay well under the VID's crash-loop limit
/// (`RESTART_BURST` in `RESTART_WINDOW_SECS`): with the fast paths, two
/// passes of the three groups took 1.3 s and the ninth restart in 10 s
/// ended the partition.
const SUITE_CMDLINE: &str = "tests=fidelity-msr,fidelity-cr,fidelity-acpi,fidelity-msr,fidelity-cr,fidelity-acpi,\
     fidelity-msr,fidelity-cr,fidelity-acpi,fidelity-msr,fidelity-cr,fidelity-acpi cpus=1 end=crash";

/// The soak's system: the default appliance's services, a second VID for
/// the test kernel; `--guest linux`'s partition is added to `vid`
/// ([`images::use_guest`]) and the suite's to [`SUITE_VID`].
const MANIFEST: &str = include_str!("soak.toml");

#[derive(Clone, Debug)]
pub struct Options {
    pub duration: Duration,
    pub kill_every_ms: u32,
    /// How often the Linux shell is asked ([`Tracker`]'s probes).
    pub probe_every: Duration,
    pub serial_log: Option<PathBuf>,
    /// Copy the serial output to stdout.
    pub echo: bool,
}

/// Parses `90`, `60s`, `10m`, `1h` (seconds without a unit).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration (e.g. 60s, 10m, 1h)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" | "min" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (s, m or h)")),
    };
    if secs == 0 {
        return Err("the duration must be at least 1 s".into());
    }
    Ok(Duration::from_secs(secs))
}

/// The command a probe types, and the answer it looks for.
pub fn probe(n: u32) -> (String, String) {
    (format!("echo soak-{n}-$((6*7))"), format!("soak-{n}-42"))
}

/// The median and the maximum of `values` (the upper median of an even count).
pub fn median_max(values: &[u64]) -> Option<(u64, u64)> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    Some((*sorted.get(sorted.len() / 2)?, *sorted.last()?))
}

/// The least-squares slope of `(x, y)` points, in y per x (None under two
/// distinct x).
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let (mx, my) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    (points.len() >= 2 && sxx > 0.0).then(|| sxy / sxx)
}

#[derive(Clone, Debug)]
struct Probe {
    n: u32,
    sent: f64,
    answered: Option<f64>,
}

/// What the serial lines and the probes said, as they came ([`Tracker::line`],
/// [`Tracker::probe_sent`]); times are seconds from the emulator's start.
#[derive(Debug, Default)]
pub struct Tracker {
    /// (time, name) of each kill.
    kills: Vec<(f64, String)>,
    /// Starts per task name (the first included).
    starts: Vec<(String, u32)>,
    /// (name, milliseconds) of each recovery.
    recoveries: Vec<(String, u64)>,
    /// (time, free bytes, supervisor pool bytes).
    memory: Vec<(f64, u64, u64)>,
    /// Kernel lines: exceptions, panics, halts, resets.
    ring0: Vec<String>,
    /// Supervisor lines about services that faulted on their own, or that
    /// it gave up on.
    other_faults: Vec<String>,
    probes: Vec<Probe>,
    /// The Linux shell's prompt was seen since its VID's last kill.
    shell_up: bool,
    /// Linux boots (its init's marker).
    linux_boots: u32,
    /// (time, passed, failed) of each round of the test kernel.
    rounds: Vec<(f64, u32, u32)>,
    /// The head of a line a supervisor line cut into ([`Tracker::line`]).
    cut: String,
}

fn count(list: &mut Vec<(String, u32)>, name: &str) {
    match list.iter_mut().find(|(n, _)| n == name) {
        Some((_, c)) => *c += 1,
        None => list.push((name.to_owned(), 1)),
    }
}

/// `[task] ` prefixes, and `\r`, removed.
fn after_prefix<'l>(line: &'l str, task: &str) -> Option<&'l str> {
    line.trim_end_matches('\r').strip_prefix('[')?.strip_prefix(task)?.strip_prefix("] ")
}

impl Tracker {
    /// Takes one serial line seen at `at`; returns what it meant, for the
    /// progress, if it is an event. The supervisor writes to COM1 itself,
    /// not through the console: its line may cut into another task's,
    /// whose rest then follows it. The cut line's head is kept and joined
    /// to the next line.
    pub fn line(&mut self, at: f64, line: &str) -> Option<String> {
        let line = line.trim_end_matches(['\r', '\n']);
        const SUPERVISOR: &str = "[supervisor] ";
        if let Some(cut) = line.find(SUPERVISOR).filter(|&i| i > 0) {
            self.cut = format!("{}{}", std::mem::take(&mut self.cut), &line[..cut]);
            return self.whole(at, &line[cut..]);
        }
        let joined;
        let line = if self.cut.is_empty() {
            line
        } else {
            joined = format!("{}{line}", std::mem::take(&mut self.cut));
            &joined
        };
        self.whole(at, line)
    }

    fn whole(&mut self, at: f64, line: &str) -> Option<String> {
        let bare = line.trim_start();
        if ["EXCEPTION:", "KERNEL PANIC", crate::run::HALT_MARKER, crate::run::RESET_MARKER]
            .iter()
            .any(|m| bare.starts_with(m))
        {
            self.ring0.push(bare.to_owned());
            return Some(format!("kernel: {bare}"));
        }
        if let Some(rest) = after_prefix(line, "supervisor") {
            return self.supervisor(at, rest);
        }
        if let Some(rest) = after_prefix(line, LINUX_VID).and_then(|r| r.strip_prefix("guest: ")) {
            return self.linux(at, rest);
        }
        let suite = after_prefix(line, SUITE_VID).and_then(|r| r.strip_prefix(SUITE_PARTITION)?.strip_prefix(": "));
        if let Some(rest) = suite.and_then(|r| r.strip_prefix("testkernel: done: ")) {
            let mut words = rest.split(' ');
            let passed = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            let failed = words.nth(1).and_then(|w| w.parse().ok()).unwrap_or(u32::MAX);
            self.rounds.push((at, passed, failed));
            return Some(format!("test kernel round {}: {passed} passed, {failed} failed", self.rounds.len()));
        }
        None
    }

    fn supervisor(&mut self, at: f64, rest: &str) -> Option<String> {
        if let Some(kill) = rest.strip_prefix("fault injection: killing ") {
            let name = kill.split(' ').next().unwrap_or("?").to_owned();
            if name == LINUX_VID {
                self.shell_up = false;
            }
            self.kills.push((at, name));
            return Some(rest.to_owned());
        }
        if let Some(started) = rest.strip_prefix("started ") {
            count(&mut self.starts, started.split(':').next().unwrap_or("?"));
            return None;
        }
        if let Some(recovered) = rest.strip_prefix("soak: ") {
            let mut words = recovered.split(' ');
            let name = words.next().unwrap_or("?");
            if let (Some("recovered"), Some("in"), Some(ms)) = (words.next(), words.next(), words.next()) {
                self.recoveries.push((name.to_owned(), ms.parse().unwrap_or(u64::MAX)));
            }
            return Some(rest.to_owned());
        }
        if let Some(memory) = rest.strip_prefix("kernel memory: ").filter(|m| m.ends_with("(soak)")) {
            let mut words = memory.split(' ');
            let free = words.next().and_then(|w| w.parse().ok());
            let pool = words.nth(2).and_then(|w| w.parse().ok());
            if let (Some(free), Some(pool)) = (free, pool) {
                self.memory.push((at, free, pool));
            }
            return Some(rest.to_owned());
        }
        if rest.contains(" faulted") || rest.contains("keeps crashing") || rest.contains("cannot start") {
            self.other_faults.push(rest.to_owned());
            return Some(rest.to_owned());
        }
        None
    }

    fn linux(&mut self, at: f64, rest: &str) -> Option<String> {
        if rest.contains(linux::MARKER) {
            self.linux_boots += 1;
            return Some(format!("Linux booted ({})", self.linux_boots));
        }
        if rest.trim_end().ends_with(linux::PROMPT.trim_end()) || rest.starts_with(linux::PROMPT) {
            self.shell_up = true;
        }
        for p in self.probes.iter_mut().filter(|p| p.answered.is_none()) {
            let (_, answer) = probe(p.n);
            // Its own line: the answer starts or ends it (a kernel message
            // may share the line), never inside the typed command.
            if rest.starts_with(&answer) || rest.trim_end().ends_with(&answer) {
                p.answered = Some(at);
                return Some(format!("Linux answered probe {} in {:.1} s", p.n, at - p.sent));
            }
        }
        None
    }

    /// Whether a probe may be typed now: the shell is up and no probe waits.
    pub fn ready_for_probe(&self, at: f64) -> bool {
        self.shell_up
            && self.probes.last().is_none_or(|p| p.answered.is_some() || at - p.sent > PROBE_TIMEOUT.as_secs_f64())
    }

    pub fn probe_sent(&mut self, n: u32, at: f64) {
        self.probes.push(Probe { n, sent: at, answered: None });
    }

    fn last_kill_of(&self, name: &str) -> Option<f64> {
        self.kills.iter().rev().find(|(_, n)| n == name).map(|(t, _)| *t)
    }

    /// Each guest has shown it is alive since its VID's last kill: the Linux
    /// shell answered a probe typed after it, the test kernel finished a
    /// round after it.
    pub fn guests_back(&self) -> (bool, bool) {
        let linux_since = self.last_kill_of(LINUX_VID).unwrap_or(f64::MIN);
        let linux = self.probes.iter().any(|p| p.sent > linux_since && p.answered.is_some());
        let suite_since = self.last_kill_of(SUITE_VID).unwrap_or(f64::MIN);
        let suite = self.rounds.iter().any(|r| r.0 > suite_since);
        (linux, suite)
    }

    /// The memory baseline: the first reading after every service killed
    /// had been killed (and restarted) once, so that first instances and
    /// start-up are behind it (the partition manager's first instance
    /// holds more than its restarts do).
    fn baseline(&self) -> Option<&(f64, u64, u64)> {
        let mut firsts: Vec<(f64, &str)> = Vec::new();
        for (t, name) in &self.kills {
            if !firsts.iter().any(|(_, n)| n == name) {
                firsts.push((*t, name));
            }
        }
        let warm = firsts.iter().map(|(t, _)| *t).fold(0.0, f64::max);
        self.memory.iter().find(|m| m.0 > warm)
    }

    /// Whether the run may end once its duration is over: both guests
    /// alive after their VID's last kill ([`Tracker::guests_back`]), and a
    /// memory reading taken after the baseline.
    pub fn may_end(&self) -> bool {
        let (linux, suite) = self.guests_back();
        let memory = self.baseline().is_some_and(|b| self.memory.last().is_some_and(|last| last.0 > b.0));
        linux && suite && memory
    }

    /// The kills of the Linux VID between `from` and `to`.
    fn own_vid_killed(&self, from: f64, to: f64) -> bool {
        self.kills.iter().any(|(t, n)| n == LINUX_VID && *t >= from && *t <= to)
    }

    /// Whether the console was killed between `from` and `to`: the probe's
    /// typed line, or its answer, went through it (ARCHITECTURE §5.2: what
    /// a killed console held is lost).
    fn console_killed(&self, from: f64, to: f64) -> bool {
        self.kills.iter().any(|(t, n)| n == "console" && *t >= from && *t <= to)
    }

    /// The summary at `end`, and whether the soak passed: no ring-0 fault,
    /// no service fault the soak did not inject nor one given up on, every
    /// kill recovered, no Linux probe lost but in a window with its own
    /// VID's kill, both guests alive after their VID's last kill, test
    /// kernel rounds without failures, and free memory within
    /// [`MEMORY_SLACK`] between the first and last settled readings.
    pub fn summary(&self, end: f64) -> (String, bool) {
        let mut s = String::new();
        let mut failures: Vec<String> = Vec::new();
        let minutes = end / 60.0;
        let _ = writeln!(s, "soak summary after {:.0} s ({minutes:.1} min):", end);

        let _ = writeln!(s, "kills: {} in all", self.kills.len());
        let mut names: Vec<&str> = self.kills.iter().map(|(_, n)| n.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        for name in &names {
            let kills = self.kills.iter().filter(|(_, n)| n == name).count();
            let restarts = self.starts.iter().find(|(n, _)| n == name).map_or(0, |(_, c)| c.saturating_sub(1));
            let times: Vec<u64> = self.recoveries.iter().filter(|(n, _)| n == name).map(|(_, ms)| *ms).collect();
            let recovery = match median_max(&times) {
                Some((median, max)) => format!("recovery median {median} ms, max {max} ms"),
                None => "no recovery".into(),
            };
            let _ = writeln!(
                s,
                "  {name:<18} killed {kills:>3}, restarted {restarts:>3}, recovered {:>3}: {recovery}",
                times.len()
            );
        }
        let unrecovered = self.kills.len().saturating_sub(self.recoveries.len());
        // The last kill may still be recovering when the run ends.
        let recent = self.kills.last().is_some_and(|(t, _)| end - t < 10.0);
        if unrecovered > usize::from(recent) {
            failures.push(format!("{unrecovered} kills never recovered"));
        }

        let baseline = self.baseline().or(self.memory.first());
        match (baseline, self.memory.last()) {
            (Some(first), Some(last)) => {
                let since = self.memory.iter().filter(|m| m.0 >= first.0);
                let min = since.clone().map(|m| m.1).min().unwrap_or(0);
                let max = since.clone().map(|m| m.1).max().unwrap_or(0);
                let points: Vec<(f64, f64)> = since.map(|m| (m.0 / 60.0, m.1 as f64)).collect();
                let per_minute = slope(&points).map_or("n/a".into(), |b| format!("{b:+.0} bytes/min"));
                let _ = writeln!(
                    s,
                    "free memory ({} settled readings, every 10 s): at boot {} (at {:.0} s); baseline {} (at {:.0} s, \
                     every killed service restarted once), last {} (at {:.0} s), change {:+}; since the baseline \
                     min {min}, max {max}, slope {per_minute}; supervisor pool baseline {}, last {}",
                    self.memory.len(),
                    self.memory[0].1,
                    self.memory[0].0,
                    first.1,
                    first.0,
                    last.1,
                    last.0,
                    last.1 as i128 - first.1 as i128,
                    first.2,
                    last.2
                );
                if first.1.abs_diff(last.1) > MEMORY_SLACK || first.2.abs_diff(last.2) > MEMORY_SLACK {
                    failures.push(format!("memory moved by more than {MEMORY_SLACK} bytes"));
                }
                if self.baseline().is_none_or(|b| last.0 <= b.0) {
                    failures.push("no memory reading after the baseline".into());
                }
            }
            _ => failures.push("no memory reading".into()),
        }

        let answered: Vec<&Probe> = self.probes.iter().filter(|p| p.answered.is_some()).collect();
        let times: Vec<u64> =
            answered.iter().filter_map(|p| p.answered.map(|a| ((a - p.sent) * 1000.0) as u64)).collect();
        let latency =
            median_max(&times).map_or(String::new(), |(m, x)| format!(", answer time median {m} ms, max {x} ms"));
        let _ = writeln!(
            s,
            "Linux liveness: {} of {} probes answered{latency}; {} boots; its VID killed {} times",
            answered.len(),
            self.probes.len(),
            self.linux_boots,
            self.kills.iter().filter(|(_, n)| n == LINUX_VID).count()
        );
        let mut lost_otherwise = 0;
        for p in self.probes.iter().filter(|p| p.answered.is_none()) {
            let deadline = p.sent + PROBE_TIMEOUT.as_secs_f64();
            // The guest answered a later probe: it was not lost.
            let answered_later = self.probes.iter().any(|q| q.sent > p.sent && q.answered.is_some());
            let why = if deadline > end {
                "unanswered when the run ended"
            } else if self.own_vid_killed(p.sent, deadline) {
                "lost: its VID was killed meanwhile"
            } else if answered_later && self.console_killed(p.sent, deadline) {
                "lost: the console was killed meanwhile (the typed line or the answer died with it); a later probe was answered"
            } else {
                lost_otherwise += 1;
                "LOST without its VID's kill"
            };
            let _ = writeln!(s, "  probe {} (typed at {:.0} s): {why}", p.n, p.sent);
        }
        if lost_otherwise > 0 {
            failures.push(format!("{lost_otherwise} Linux probes lost without their VID's kill"));
        }
        let (linux_back, suite_back) = self.guests_back();
        if !linux_back {
            failures.push("the Linux guest did not answer after its VID's last kill".into());
        }

        let failed_rounds = self.rounds.iter().filter(|r| r.2 != 0).count();
        let gaps: Vec<u64> = self.rounds.windows(2).map(|w| ((w[1].0 - w[0].0) * 1000.0) as u64).collect();
        let gap =
            median_max(&gaps).map_or(String::new(), |(m, x)| format!(", between rounds median {m} ms, max {x} ms"));
        let _ = writeln!(
            s,
            "test kernel guest: {} rounds, {failed_rounds} with failures{gap}; its VID killed {} times; {}",
            self.rounds.len(),
            self.kills.iter().filter(|(_, n)| n == SUITE_VID).count(),
            if suite_back { "alive after its VID's last kill" } else { "NOT alive after its VID's last kill" }
        );
        if failed_rounds > 0 {
            failures.push(format!("{failed_rounds} test kernel rounds failed"));
        }
        if !suite_back {
            failures.push("the test kernel guest did not finish a round after its VID's last kill".into());
        }

        let _ = writeln!(s, "ring-0 faults: {}", self.ring0.len());
        for line in &self.ring0 {
            let _ = writeln!(s, "  {line}");
        }
        if !self.ring0.is_empty() {
            failures.push(format!("{} kernel fault, halt or reset lines", self.ring0.len()));
        }
        let _ = writeln!(s, "service faults not injected, or given up: {}", self.other_faults.len());
        for line in &self.other_faults {
            let _ = writeln!(s, "  {line}");
        }
        if !self.other_faults.is_empty() {
            failures.push(format!("{} service faults not injected", self.other_faults.len()));
        }
        if self.kills.is_empty() {
            failures.push("nothing was killed".into());
        }
        let pass = failures.is_empty();
        let _ = if pass {
            writeln!(s, "verdict: PASS (0 lost guests, 0 ring-0 faults, memory flat)")
        } else {
            writeln!(s, "verdict: FAIL ({})", failures.join("; "))
        };
        (s, pass)
    }
}

/// The soak's manifest: [`MANIFEST`] with the kill interval and the suite's
/// partition (absolute paths), written to `dir/soak-base.toml`; then the
/// Linux partition added to it, packed and made this run's boot image.
/// Returns the guest RAM of all partitions.
fn prepare(opts: &Options, guest: &linux::Guest, dir: &Path) -> Result<u64, String> {
    let mut text =
        MANIFEST.replace("soak_kill_every_ms = 5000", &format!("soak_kill_every_ms = {}", opts.kill_every_ms));
    // On CPU 1 with its VID: Linux has CPU 0 (with the services).
    let image = env!("TESSERA_GUEST_TEST_KERNEL");
    let _ = write!(
        text,
        "\n[partitions.{SUITE_PARTITION}]\nimage = {image:?}\ncmdline = {SUITE_CMDLINE:?}\nmemory = \"16MiB\"\n\
         vid = \"{SUITE_VID}\"\ncpus = [1]\n"
    );
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let base = dir.join("soak-base.toml");
    std::fs::write(&base, text).map_err(|e| format!("cannot write {}: {e}", base.display()))?;
    let mut partition = images::Guest {
        image: guest.kernel.clone(),
        modules: Vec::new(),
        cmdline: String::new(),
        memory_mib: 0,
        vcpus: 1,
        enlightenments: String::new(),
    };
    linux::as_partition(guest, &mut partition);
    let (manifest, _, ram) = images::use_guest(&base, &partition, dir)?;
    ui::note(format!("soak system: {}", manifest.display()));
    Ok(ram)
}

/// Runs the soak; prints progress and the summary; returns whether it passed.
pub fn run(opts: &Options) -> Result<bool, String> {
    let guest = linux::fetch().map_err(|e| e.message)?;
    let dir = workdir::tessera_dir().join("images").join(workdir::unique_name("soak"));
    let ram = prepare(opts, &guest, &dir)?;
    let serial_log = match &opts.serial_log {
        Some(path) => path.clone(),
        None => workdir::new_run_dir("soak").map_err(|e| e.to_string())?.join("serial.log"),
    };
    let boot = BootOptions {
        emulator: Emulator::Qemu,
        firmware: Firmware::Bios,
        // No `exit=idle`: the run ends when the soak does.
        timeout: None,
        smp: 2,
        smp_threads: 1,
        memory_mib: images::machine_mib(ram),
        cmdline: String::new(),
        serial_log: Some(serial_log.clone()),
        qemu_args: Vec::new(),
        bochs_cpu: None,
        gdb: None,
        reboots: 0,
    };
    let (files, words) = boot::prepare(&boot).map_err(|e| format!("{e:?}"))?;
    let cmd = qemu::command(&boot, &words, false, &qemu::Start::Direct);
    ui::note(format!("$ {}", ui::shell_line(&cmd)));
    ui::note(format!("serial log: {}", files.serial_log.display()));
    ui::note(format!(
        "soak: {} s, a random service killed every {} ms, the Linux shell asked every {} s",
        opts.duration.as_secs(),
        opts.kill_every_ms,
        opts.probe_every.as_secs()
    ));
    let console_opts =
        ConsoleOptions { echo: opts.echo, log: Some(&files.serial_log), keystroke_gap: linux::KEYSTROKE_GAP };
    let mut console = Console::spawn(cmd, &console_opts).map_err(|e| format!("cannot start QEMU: {e}"))?;
    let tracker = drive(&mut console, opts);
    let end = console.elapsed().as_secs_f64();
    let _ = console.wait_exit(Duration::ZERO);
    let (summary, pass) = tracker.summary(end);
    println!("{summary}");
    println!("serial log: {}", files.serial_log.display());
    Ok(pass)
}

/// Follows the console for the duration, then until both guests are back
/// after their VIDs' last kills and memory was read after its baseline
/// ([`Tracker::may_end`]; at most [`TAIL`] more), typing the probes.
fn drive(console: &mut Console, opts: &Options) -> Tracker {
    let mut t = Tracker::default();
    let start = Instant::now();
    let at = || start.elapsed().as_secs_f64();
    let mut next_probe = 0.0;
    let mut n = 0;
    let end = opts.duration.as_secs_f64();
    let tail_end = end + TAIL.as_secs_f64();
    let mut minute = 1;
    loop {
        let now = at();
        if now >= tail_end || (now >= end && t.may_end()) || !t.ring0.is_empty() {
            break;
        }
        if now >= minute as f64 * 60.0 {
            ui::note(format!(
                "soak: {minute} min: {} kills, {} probes answered of {}, {} test kernel rounds",
                t.kills.len(),
                t.probes.iter().filter(|p| p.answered.is_some()).count(),
                t.probes.len(),
                t.rounds.len()
            ));
            minute += 1;
        }
        if now >= next_probe && t.ready_for_probe(now) {
            n += 1;
            let (command, _) = probe(n);
            t.probe_sent(n, at());
            let _ = console.send_line(&command);
            next_probe = now + opts.probe_every.as_secs_f64();
        }
        match console.expect("\n", Duration::from_millis(250)) {
            Ok(line) => {
                if let Some(event) = t.line(at(), &line) {
                    ui::note(format!("[{:>6.1} s] {event}", at()));
                }
            }
            Err(e) if e.closed => {
                ui::warn("soak: the emulator exited");
                break;
            }
            Err(_) => {}
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("10d").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn medians_maxima_and_slopes() {
        assert_eq!(median_max(&[]), None);
        assert_eq!(median_max(&[5]), Some((5, 5)));
        assert_eq!(median_max(&[30, 10, 20]), Some((20, 30)));
        assert_eq!(median_max(&[40, 10, 30, 20]), Some((30, 40)));
        assert_eq!(slope(&[(0.0, 1.0)]), None);
        assert_eq!(slope(&[(1.0, 5.0), (1.0, 6.0)]), None);
        let s = slope(&[(0.0, 100.0), (1.0, 98.0), (2.0, 96.0)]).unwrap();
        assert!((s + 2.0).abs() < 1e-9, "{s}");
    }

    #[test]
    fn the_probe_cannot_match_its_own_echo() {
        let (command, answer) = probe(7);
        assert!(!command.contains(&answer));
    }

    /// A soak's lines: kills and recoveries, memory, the shell, the suite.
    fn healthy() -> Tracker {
        let mut t = Tracker::default();
        let lines = [
            (1.0, "[supervisor] started console: ring 3, priority 30, caps: none"),
            (1.0, "[supervisor] started vid: ring 3, priority 26, caps: none"),
            (1.0, "[supervisor] started vid-b: ring 3, priority 20, caps: none"),
            (2.0, "[supervisor] kernel memory: 1000000 bytes free, 5000 bytes left in the supervisor's pool (soak)"),
            (20.0, "[vid] guest: tessera-guest: busybox init up (Linux 6.1)"),
            (21.0, "[vid] guest: tessera-sh# "),
            (25.0, "[vid-b] suite: testkernel: done: 6 passed, 0 failed"),
            (30.0, "[supervisor] fault injection: killing console after 2900 ticks (kill 1)\r"),
            (30.0, "[supervisor] started console: ring 3, priority 30, caps: none"),
            (30.2, "[supervisor] soak: console recovered in 200 ms"),
            (40.0, "[supervisor] fault injection: killing vid after 3900 ticks (kill 1)"),
            (40.1, "[supervisor] started vid: ring 3, priority 26, caps: none"),
            (40.3, "[supervisor] soak: vid recovered in 300 ms"),
            (45.0, "[vid-b] suite: testkernel: done: 6 passed, 0 failed"),
            (50.0, "[supervisor] kernel memory: 1000000 bytes free, 5000 bytes left in the supervisor's pool (soak)"),
            (70.0, "[vid] guest: tessera-guest: busybox init up (Linux 6.1)"),
            (71.0, "[vid] guest: tessera-sh# "),
            (71.5, "[supervisor] kernel memory: 1000000 bytes free, 5000 bytes left in the supervisor's pool (soak)"),
        ];
        for (at, line) in lines {
            t.line(at, line);
        }
        t
    }

    #[test]
    fn a_healthy_soak_passes() {
        let mut t = healthy();
        // A supervisor line that cuts into a round's.
        t.line(46.0, "[vid-b] suite: testk[supervisor] soak: vid-b recovered in 90 ms");
        t.line(46.0, "ernel: done: 6 passed, 0 failed");
        assert_eq!(t.rounds.len(), 3);
        assert!(t.recoveries.contains(&("vid-b".into(), 90)));
        assert!(!t.ready_for_probe(10.0) || t.probes.is_empty());
        assert!(t.ready_for_probe(72.0));
        t.probe_sent(1, 72.0);
        assert!(!t.ready_for_probe(73.0), "one probe at a time");
        assert_eq!(t.guests_back(), (false, true));
        t.line(73.0, "[vid] guest: tessera-sh# echo soak-1-$((6*7))");
        assert_eq!(t.guests_back(), (false, true), "the echo is no answer");
        t.line(74.0, "[vid] guest: soak-1-42\r");
        assert_eq!(t.guests_back(), (true, true));
        assert!(t.may_end());
        let (text, pass) = t.summary(80.0);
        assert!(pass, "{text}");
        assert!(text.contains("console            killed   1, restarted   1, recovered   1: recovery median 200 ms"));
        assert!(text.contains("baseline 1000000 (at 50 s, every killed service restarted once)"), "{text}");
        assert!(text.contains("1 of 1 probes answered"), "{text}");
        assert!(text.contains("3 rounds, 0 with failures"), "{text}");
        assert!(text.contains("verdict: PASS"), "{text}");
    }

    /// [`healthy`], with the shell's answer to probe 1.
    fn answered() -> Tracker {
        let mut t = healthy();
        t.probe_sent(1, 72.0);
        t.line(73.0, "[vid] guest: soak-1-42");
        t
    }

    #[test]
    fn lost_probes_leaks_and_kernel_faults_fail() {
        // A probe lost with no kill of its VID in its window.
        let mut t = healthy();
        t.probe_sent(1, 72.0);
        t.probe_sent(2, 110.0);
        t.line(111.0, "[vid] guest: soak-2-42");
        let (text, pass) = t.summary(150.0);
        assert!(!pass && text.contains("probe 1 (typed at 72 s): LOST without its VID's kill"), "{text}");

        // One lost while the console was killed is allowed if a later one
        // was answered (the guest lives); with none answered after, not.
        let mut t = healthy();
        t.probe_sent(1, 72.0);
        t.line(72.5, "[supervisor] fault injection: killing console after 3900 ticks (kill 2)");
        t.line(72.6, "[supervisor] soak: console recovered in 100 ms");
        t.probe_sent(2, 110.0);
        let (text, pass) = t.summary(150.0);
        assert!(!pass && text.contains("probe 1 (typed at 72 s): LOST without its VID's kill"), "{text}");
        t.line(111.0, "[vid] guest: soak-2-42");
        let (text, pass) = t.summary(150.0);
        assert!(pass && text.contains("lost: the console was killed meanwhile"), "{text}");

        // One lost while its VID was killed is allowed.
        let mut t = healthy();
        t.probe_sent(1, 72.0);
        t.line(80.0, "[supervisor] fault injection: killing vid after 3900 ticks (kill 2)");
        t.line(80.5, "[supervisor] soak: vid recovered in 500 ms");
        t.line(120.0, "[vid] guest: tessera-sh# ");
        t.probe_sent(2, 121.0);
        t.line(122.0, "[vid] guest: soak-2-42");
        let (text, pass) = t.summary(130.0);
        assert!(pass && text.contains("lost: its VID was killed meanwhile"), "{text}");

        // No reading after the baseline (the last first kill): the run goes on.
        let mut t = answered();
        t.line(75.0, "[supervisor] fault injection: killing scheduler after 3900 ticks (kill 1)");
        t.line(75.1, "[supervisor] soak: scheduler recovered in 100 ms");
        assert!(!t.may_end());
        let (text, pass) = t.summary(76.0);
        assert!(!pass && text.contains("no memory reading after the baseline"), "{text}");

        // Memory that moved by more than a page table.
        let mut t = answered();
        t.line(79.0, "[supervisor] kernel memory: 990000 bytes free, 5000 bytes left in the supervisor's pool (soak)");
        let (text, pass) = t.summary(80.0);
        assert!(!pass && text.contains("memory moved by more than 4096 bytes"), "{text}");

        // A kernel exception; a service fault the soak did not inject.
        let mut t = answered();
        t.line(75.0, "EXCEPTION: #PF page fault (vector 14)");
        t.line(76.0, "[supervisor] broker faulted: page fault (vector 14, error 0x4) at rip 0x1, address 0x0");
        let (text, pass) = t.summary(80.0);
        assert!(!pass && text.contains("ring-0 faults: 1") && text.contains("service faults not injected"), "{text}");

        // A failed round, and a suite not back after its VID's last kill.
        let mut t = answered();
        t.line(74.0, "[vid-b] suite: testkernel: done: 5 passed, 1 failed");
        t.line(75.0, "[supervisor] fault injection: killing vid-b after 3900 ticks (kill 1)");
        t.line(75.1, "[supervisor] soak: vid-b recovered in 100 ms");
        let (text, pass) = t.summary(90.0);
        assert!(!pass && text.contains("1 test kernel rounds failed"), "{text}");
        assert!(text.contains("did not finish a round after its VID's last kill"), "{text}");
    }
}
