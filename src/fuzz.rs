//! `tessera fuzz`: build the libFuzzer targets of `fuzz/` with coverage
//! instrumentation and run them for a number of executions each.
//!
//! The build is the one cargo-fuzz makes, done here so nothing needs
//! installing: `cargo build --release` of `fuzz/Cargo.toml` for the host
//! triple (so build scripts and proc macros stay uninstrumented) into
//! `target/fuzz/`, with SanitizerCoverage (inline 8-bit counters, PC table,
//! comparison tracing) and `--cfg fuzzing`. The fuzzed crates have no
//! `unsafe` code, so no AddressSanitizer: a bug shows as a panic (debug
//! assertions and overflow checks are on) or a failed oracle.
//!
//! Each target runs in chunks of executions (the executions of all targets
//! show as one progress line, `crate::progress`) over its corpus `<out>/corpus/<target>/` and the committed seeds
//! `fuzz/seeds/<target>/`; a crashing input is saved under
//! `<out>/crashes/<target>/` and libFuzzer's output under
//! `<out>/logs/<target>.log`. libFuzzer stops a target at its first crash.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::progress::Progress;
use crate::ui;

/// The targets, as named in `fuzz/Cargo.toml` (`[[bin]]`).
pub const TARGETS: [&str; 11] = [
    "hypercall",
    "synthetic_msr",
    "x86decode",
    "manifest",
    "sysimage",
    "multiboot_loader",
    "linux_loader",
    "tlfs_message",
    "cap_table",
    "ipc",
    "monitor",
];

/// A target that crashes on one input (`fuzz/seeds/canary/`): only run when
/// named, to show that crashes are caught, saved and reported.
pub const CANARY: &str = "canary";

/// SanitizerCoverage as cargo-fuzz configures it, and `--cfg fuzzing`.
const RUSTFLAGS: [&str; 6] = [
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "--cfg=fuzzing",
];

/// libFuzzer's limits per input: a slower one is a crash (a hang), and so is
/// more memory.
const INPUT_TIMEOUT_SECS: u32 = 10;
const RSS_LIMIT_MB: u32 = 2048;
/// Chunks after the first are sized to take about this long.
const CHUNK_TIME: Duration = Duration::from_secs(30);
const FIRST_CHUNK: u64 = 100_000;

/// What `tessera fuzz` was asked.
#[derive(Clone, Debug)]
pub struct Options {
    /// Executions per target.
    pub runs: u64,
    /// Targets to run; empty: all of [`TARGETS`].
    pub targets: Vec<String>,
    /// Targets run at once.
    pub jobs: usize,
    /// Corpus, crash and log directories go here.
    pub out: PathBuf,
}

/// What one target's run came to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub target: String,
    pub executions: u64,
    pub seconds: f64,
    /// Inputs in libFuzzer's corpus at the end (seeds included).
    pub corpus: u64,
    /// Saved crashing inputs (libFuzzer stops at the first).
    pub crashes: Vec<PathBuf>,
    /// The target could not be run, or failed without saving an input.
    pub error: Option<String>,
}

impl Report {
    fn failed(&self) -> bool {
        !self.crashes.is_empty() || self.error.is_some()
    }
}

/// What one libFuzzer process said on stderr.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkStats {
    pub executions: Option<u64>,
    pub corpus: Option<u64>,
    pub artifacts: Vec<PathBuf>,
    pub crashed: bool,
}

impl ChunkStats {
    /// Takes in one line of libFuzzer's output.
    pub fn add_line(&mut self, line: &str) {
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            self.executions = n.trim().parse().ok().or(self.executions);
        } else if let Some(rest) = line.strip_prefix("Done ") {
            if self.executions.is_none() {
                self.executions = rest.split_whitespace().next().and_then(|n| n.parse().ok());
            }
        } else if let Some(path) = line.split("Test unit written to ").nth(1) {
            // libFuzzer also saves `slow-unit-*` inputs, which are no failure.
            let path = PathBuf::from(path.trim());
            if !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("slow-unit-")) {
                self.artifacts.push(path);
            }
        }
        if let Some(corp) = line.split(" corp: ").nth(1) {
            self.corpus = corp.split('/').next().and_then(|n| n.parse().ok()).or(self.corpus);
        }
        if line.contains("ERROR: libFuzzer:") || line.contains("panicked at") {
            self.crashed = true;
        }
    }
}

/// Runs `tessera fuzz`; the exit status: 0, 1 on a crash, 126 if a target
/// could not be built or run.
pub fn run(opts: &Options) -> i32 {
    let targets: Vec<String> =
        if opts.targets.is_empty() { TARGETS.iter().map(|t| t.to_string()).collect() } else { opts.targets.clone() };
    if let Some(bad) = targets.iter().find(|t| !TARGETS.contains(&t.as_str()) && *t != CANARY) {
        ui::error(format!("no fuzz target \"{bad}\" (targets: {})", TARGETS.join(", ")));
        return 2;
    }
    if let Err(e) = crate::deps::ensure(&[crate::deps::FUZZ], "building the fuzz targets") {
        ui::error(e.message);
        return crate::EXIT_MISSING_TOOLS;
    }
    let bin_dir = match build() {
        Ok(dir) => dir,
        Err(e) => {
            ui::error(e);
            return crate::EXIT_RUNNER_ERROR;
        }
    };
    ui::note(format!(
        "==> fuzzing {} target(s), {} executions each, {} at a time; crashes go to {}",
        targets.len(),
        opts.runs,
        opts.jobs,
        opts.out.join("crashes").display()
    ));
    let queue = Mutex::new(targets.iter().enumerate());
    let reports = Mutex::new(vec![Report::default(); targets.len()]);
    let board = Mutex::new(Board::new(targets.len() as u64 * opts.runs));
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.clamp(1, targets.len()) {
            s.spawn(|| {
                loop {
                    let Some((i, target)) = queue.lock().unwrap().next() else { break };
                    let report = fuzz_target(&bin_dir, target, opts, &board);
                    reports.lock().unwrap()[i] = report;
                }
            });
        }
    });
    board.into_inner().unwrap_or_else(|e| e.into_inner()).progress.finish(None);
    let reports = reports.into_inner().unwrap();
    print!("{}", table(&reports));
    for r in &reports {
        for crash in &r.crashes {
            ui::error(format!(
                "{}: crashing input saved: {} (reproduce: {} {})",
                r.target,
                crash.display(),
                bin_dir.join(&r.target).display(),
                crash.display()
            ));
        }
        if let Some(e) = &r.error {
            ui::error(format!("{}: {e}", r.target));
        }
    }
    if reports.iter().any(|r| r.error.is_some() && r.crashes.is_empty() && r.executions == 0) {
        crate::EXIT_RUNNER_ERROR
    } else if reports.iter().any(Report::failed) {
        1
    } else {
        0
    }
}

/// `target/fuzz` of this repository.
pub fn default_out() -> PathBuf {
    repo().join("target").join("fuzz")
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The host's target triple, from `rustc -vV`.
fn host_triple() -> Result<String, String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(&rustc)
        .arg("-vV")
        .current_dir(repo())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", rustc.to_string_lossy()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .ok_or_else(|| "rustc -vV names no host triple".to_string())
}

/// Builds every target; returns the directory holding the executables.
fn build() -> Result<PathBuf, String> {
    let host = host_triple()?;
    let target_dir = default_out();
    let pin = crate::toolchain::bring()?;
    let mut cmd = pin.cargo(crate::toolchain::rustup().as_deref());
    cmd.current_dir(repo().join("fuzz"))
        .args(["build", "--release", "--bins", "--target", &host])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", RUSTFLAGS.join("\x1f"));
    // What the calling cargo exported describes its own build.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key == "RUSTFLAGS" || (key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_ENCODED_RUSTFLAGS")
        {
            cmd.env_remove(&*key);
        }
    }
    ui::note(format!("==> building the fuzz targets: CARGO_ENCODED_RUSTFLAGS=... {}", ui::shell_line(&cmd)));
    let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building the fuzz targets failed ({status})"));
    }
    Ok(target_dir.join(host).join("release"))
}

/// Runs one target for `opts.runs` executions, in chunks.
/// The executions of every target, for the progress line.
struct Board {
    progress: Progress,
    total: u64,
    /// Executions so far of the targets running or done.
    done: BTreeMap<String, u64>,
}

impl Board {
    fn new(total: u64) -> Self {
        Board { progress: Progress::new("fuzz", Duration::from_secs(10)), total, done: BTreeMap::new() }
    }

    fn set(&mut self, target: &str, executions: u64) {
        self.done.insert(target.to_string(), executions);
        let sum: u64 = self.done.values().sum();
        let status =
            format!("{sum} of {} executions, {} target(s) started; {target} {executions}", self.total, self.done.len());
        self.progress.update_fraction(sum, self.total, status);
    }
}

fn fuzz_target(bin_dir: &Path, target: &str, opts: &Options, board: &Mutex<Board>) -> Report {
    let mut report = Report { target: target.to_string(), ..Report::default() };
    let corpus = opts.out.join("corpus").join(target);
    let crashes = opts.out.join("crashes").join(target);
    let logs = opts.out.join("logs");
    let seeds = repo().join("fuzz").join("seeds").join(target);
    if let Err(e) = [&corpus, &crashes, &logs].iter().try_for_each(fs::create_dir_all) {
        report.error = Some(format!("cannot create {}: {e}", opts.out.display()));
        return report;
    }
    let log_path = logs.join(format!("{target}.log"));
    let _ = fs::write(&log_path, "");
    let start = Instant::now();
    let mut chunk = FIRST_CHUNK.min(opts.runs);
    while report.executions < opts.runs {
        let chunk_start = Instant::now();
        let mut cmd = Command::new(bin_dir.join(target));
        cmd.arg(format!("-runs={chunk}"))
            .arg(format!("-artifact_prefix={}/", crashes.display()))
            .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"))
            .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
            .arg("-print_final_stats=1")
            .arg(&corpus);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        let before = report.executions;
        let on_pulse = |n: u64| board.lock().unwrap_or_else(|e| e.into_inner()).set(target, before + n);
        let stats = match run_chunk(cmd, &log_path, on_pulse) {
            Ok(stats) => stats,
            Err(e) => {
                report.error = Some(e);
                break;
            }
        };
        report.executions += stats.executions.unwrap_or(0);
        report.corpus = stats.corpus.unwrap_or(report.corpus);
        report.crashes.extend(stats.artifacts.iter().cloned());
        if stats.crashed || !stats.artifacts.is_empty() || stats.executions.is_none() {
            if report.crashes.is_empty() {
                report.error = Some(format!("libFuzzer failed without saving an input; see {}", log_path.display()));
            }
            print_tail(target, &log_path);
            break;
        }
        report.seconds = start.elapsed().as_secs_f64();
        board.lock().unwrap_or_else(|e| e.into_inner()).set(target, report.executions);
        let rate = chunk as f64 / chunk_start.elapsed().as_secs_f64().max(1e-3);
        chunk = ((rate * CHUNK_TIME.as_secs_f64()) as u64).clamp(1_000, 10_000_000).min(opts.runs - report.executions);
    }
    report.seconds = start.elapsed().as_secs_f64();
    if report.error.is_none() && report.crashes.is_empty() {
        ui::note(format!(
            "fuzz {target}: {} executions, {:.0}/s, corpus {}",
            report.executions,
            report.executions as f64 / report.seconds.max(1e-3),
            report.corpus
        ));
    }
    report
}

/// The executions a libFuzzer status line (`#4096\tpulse  cov: ...`) counts.
fn pulse_executions(line: &str) -> Option<u64> {
    line.strip_prefix('#')?.split_whitespace().next()?.parse().ok()
}

/// Runs one libFuzzer process, appending its output to `log` and telling
/// `on_pulse` the executions its status lines count.
fn run_chunk(mut cmd: Command, log: &Path, mut on_pulse: impl FnMut(u64)) -> Result<ChunkStats, String> {
    let mut file = fs::OpenOptions::new().append(true).open(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let line = ui::shell_line(&cmd);
    let _ = io::Write::write_all(&mut file, format!("$ {line}\n").as_bytes());
    let mut child =
        cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().map_err(|e| format!("cannot run {line}: {e}"))?;
    let mut stats = ChunkStats::default();
    for line in BufReader::new(child.stderr.take().expect("stderr is piped")).lines() {
        let Ok(line) = line else { break };
        stats.add_line(&line);
        if let Some(n) = pulse_executions(&line) {
            on_pulse(n);
        }
        let _ = io::Write::write_all(&mut file, format!("{line}\n").as_bytes());
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() && stats.artifacts.is_empty() {
        stats.crashed = true;
    }
    Ok(stats)
}

fn print_tail(target: &str, log: &Path) {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    ui::error(format!("{target} failed; see {}", log.display()));
    // The panic and its message, then libFuzzer's report (the input).
    if let Some(at) = lines.iter().rposition(|l| l.contains("panicked at")) {
        for line in lines.iter().skip(at).take(2) {
            eprintln!("    {line}");
        }
        eprintln!("    ...");
    }
    let report = lines.iter().rposition(|l| l.contains("ERROR: libFuzzer:")).unwrap_or(lines.len().saturating_sub(12));
    for line in &lines[report..] {
        eprintln!("    {line}");
    }
}

/// The per-target table and the total, as printed at the end.
pub fn table(reports: &[Report]) -> String {
    let mut out = format!("{:<18} {:>12} {:>9} {:>8} {:>7}\n", "target", "executions", "exec/s", "crashes", "corpus");
    for r in reports {
        let rate = r.executions as f64 / r.seconds.max(1e-3);
        let crashes =
            if r.error.is_some() && r.crashes.is_empty() { "error".to_string() } else { r.crashes.len().to_string() };
        out += &format!("{:<18} {:>12} {:>9.0} {:>8} {:>7}\n", r.target, r.executions, rate, crashes, r.corpus);
    }
    let executions: u64 = reports.iter().map(|r| r.executions).sum();
    let crashes: usize = reports.iter().map(|r| r.crashes.len()).sum();
    let failed = reports.iter().filter(|r| r.failed()).count();
    out +=
        &format!("total: {executions} executions, {crashes} crashes, {failed} of {} targets failed\n", reports.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulse_lines_count_executions() {
        assert_eq!(
            pulse_executions("#4096\tpulse  cov: 1234 ft: 2345 corp: 12/340b exec/s: 2048 rss: 40Mb"),
            Some(4096)
        );
        assert_eq!(pulse_executions("#2\tINITED cov: 5 ft: 5 corp: 1/1b exec/s: 0 rss: 30Mb"), Some(2));
        assert_eq!(pulse_executions("INFO: Seed: 1234"), None);
        assert_eq!(pulse_executions("#"), None);
    }

    #[test]
    fn libfuzzer_output_is_read() {
        let mut s = ChunkStats::default();
        s.add_line("INFO: Seed: 1234");
        s.add_line("#2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 25Mb");
        s.add_line("#300000\tDONE   cov: 384 ft: 674 corp: 128/27Kb lim: 2040 exec/s: 10000 rss: 27Mb");
        s.add_line("Done 300000 runs in 30 second(s)");
        s.add_line("stat::number_of_executed_units: 300001");
        assert_eq!(s, ChunkStats { executions: Some(300001), corpus: Some(128), artifacts: vec![], crashed: false });

        let mut s = ChunkStats::default();
        s.add_line("thread '<unnamed>' panicked at fuzz_targets/canary.rs:9:5:");
        s.add_line("==12== ERROR: libFuzzer: deadly signal");
        s.add_line("Test unit written to out/slow-unit-1234");
        s.add_line("artifact_prefix='out/'; Test unit written to out/crash-da39a3ee");
        assert!(s.crashed);
        assert_eq!(s.artifacts, vec![PathBuf::from("out/crash-da39a3ee")]);
        assert_eq!(s.executions, None);
    }

    #[test]
    fn the_table_adds_up() {
        let ok = Report { target: "a".into(), executions: 1000, seconds: 2.0, corpus: 7, ..Report::default() };
        let bad = Report {
            target: "b".into(),
            executions: 5,
            seconds: 1.0,
            corpus: 1,
            crashes: vec![PathBuf::from("x")],
            error: None,
        };
        let t = table(&[ok, bad]);
        assert!(t.contains("a                          1000       500        0       7"), "{t}");
        assert!(t.ends_with("total: 1005 executions, 1 crashes, 1 of 2 targets failed\n"), "{t}");
    }

    /// Every target the runner knows is a `[[bin]]` of `fuzz/Cargo.toml`, and
    /// has seeds; no bin is left out.
    #[test]
    fn targets_match_the_fuzz_crate() {
        let manifest = fs::read_to_string(repo().join("fuzz/Cargo.toml")).unwrap();
        let bins: Vec<&str> = manifest
            .lines()
            .filter_map(|l| l.strip_prefix("name = \""))
            .filter_map(|l| l.strip_suffix('"'))
            .filter(|name| *name != "tessera-fuzz")
            .collect();
        let mut known: Vec<&str> = TARGETS.to_vec();
        known.push(CANARY);
        assert_eq!(bins, known);
        for t in known {
            let seeds = repo().join("fuzz/seeds").join(t);
            assert!(fs::read_dir(&seeds).is_ok_and(|mut d| d.next().is_some()), "no seeds in {}", seeds.display());
        }
    }
}
