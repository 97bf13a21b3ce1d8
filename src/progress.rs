//! Progress of long steps (the Linux fetch, ISO builds, Bochs boots, the
//! bench, the fuzz runs) on stderr.
//!
//! On a terminal it is one line, redrawn in place (`\r`) a few times a
//! second and cleared when the step ends or other output comes. In CI
//! (`CI` set) or when stderr is not a terminal it is a plain line every
//! `every` (or when the percentage passes a multiple of ten), so logs stay
//! readable and show that something is still moving.

use std::fmt::Display;
use std::fs;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the line on a terminal is redrawn at most.
const REDRAW: Duration = Duration::from_millis(250);

/// Whether a progress line is on the terminal now (there is one terminal).
static SHOWN: AtomicBool = AtomicBool::new(false);

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// One line redrawn in place.
    Line,
    /// A plain line now and then.
    Plain,
}

impl Style {
    /// `Plain` in CI (`CI` set to anything but `false` or empty) or when
    /// stderr is not a terminal; `Line` otherwise.
    pub fn detect() -> Self {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        if ci || !std::io::stderr().is_terminal() { Style::Plain } else { Style::Line }
    }
}

/// Erases the progress line, if one is shown, so other output starts at
/// the beginning of a clean line.
pub fn clear_line() {
    if SHOWN.swap(false, Ordering::SeqCst) {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K");
        let _ = err.flush();
    }
}

/// The progress of one step.
pub struct Progress {
    label: String,
    style: Style,
    every: Duration,
    start: Instant,
    last: Option<Instant>,
    /// The last tenth of a percentage printed in plain style.
    last_tenth: Option<u64>,
}

impl Progress {
    /// A step called `label`; in plain style a line every `every`.
    pub fn new(label: impl Into<String>, every: Duration) -> Self {
        Self::with_style(label, every, Style::detect())
    }

    pub fn with_style(label: impl Into<String>, every: Duration, style: Style) -> Self {
        Progress { label: label.into(), style, every, start: Instant::now(), last: None, last_tenth: None }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// The line for `status` now.
    pub fn line(&self, status: &str) -> String {
        format_line(&self.label, status, self.start.elapsed())
    }

    /// Shows `status` if it is time to: the line shown or printed, if any.
    pub fn update(&mut self, status: impl Display) -> Option<String> {
        self.update_at(status, None)
    }

    /// As [`update`](Self::update), with how far along the step is: plain
    /// style also prints when the percentage passes a multiple of ten.
    pub fn update_fraction(&mut self, done: u64, total: u64, status: impl Display) -> Option<String> {
        let tenth = (total > 0).then(|| done.min(total) * 10 / total);
        self.update_at(status, tenth)
    }

    fn update_at(&mut self, status: impl Display, tenth: Option<u64>) -> Option<String> {
        let now = Instant::now();
        if !due(self.style, self.last.map(|t| now - t), now - self.start, self.every, self.last_tenth, tenth) {
            return None;
        }
        self.last = Some(now);
        self.last_tenth = tenth.or(self.last_tenth);
        let line = self.line(&status.to_string());
        let mut err = std::io::stderr().lock();
        match self.style {
            Style::Line => {
                let _ = write!(err, "\r\x1b[K{line}");
                SHOWN.store(true, Ordering::SeqCst);
            }
            Style::Plain => {
                let _ = writeln!(err, "{line}");
            }
        }
        let _ = err.flush();
        Some(line)
    }

    /// Says that part `n` of `total` begins, always as a plain line: for
    /// steps whose parts print their own output (the bench's boots).
    pub fn part(&mut self, n: u64, total: u64, status: impl Display) -> String {
        let line = format_line(&format!("{} {n} of {total}", self.label), &status.to_string(), self.elapsed());
        crate::ui::note(line.trim_start_matches("[tessera] "));
        self.last = Some(Instant::now());
        line
    }

    /// Ends the step: the line is cleared (or nothing more printed in
    /// plain style) and `summary`, if any, is printed as a runner note.
    pub fn finish(self, summary: Option<String>) {
        clear_line();
        if let Some(summary) = summary {
            crate::ui::note(format!("{}: {summary} ({:.1} s)", self.label, self.start.elapsed().as_secs_f64()));
        }
    }

    /// Waits for `child`, showing `status()` (called a few times a second)
    /// until it exits.
    pub fn wait(&mut self, child: &mut Child, mut status: impl FnMut() -> String) -> std::io::Result<ExitStatus> {
        loop {
            if let Some(exit) = child.try_wait()? {
                return Ok(exit);
            }
            self.update(status());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Runs `cmd` with its output in the file `log`, showing `label`, the
/// elapsed time and `status()` until it exits (see [`Progress::wait`]).
pub fn run_logged(
    cmd: &mut Command,
    label: &str,
    log: &Path,
    status: impl FnMut() -> String,
) -> Result<ExitStatus, String> {
    // A new file only (O_EXCL): never through a link someone left there
    // (removing one removes the link, not what it names).
    let _ = fs::remove_file(log);
    let out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(log)
        .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {}: {e}", crate::ui::shell_line(cmd)))?;
    let mut progress = Progress::new(label, Duration::from_secs(10));
    let exit = progress.wait(&mut child, status).map_err(|e| format!("waiting for {label}: {e}"));
    progress.finish(None);
    exit
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.style == Style::Line {
            clear_line();
        }
    }
}

/// `[tessera] LABEL: STATUS, N s`.
pub fn format_line(label: &str, status: &str, elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    let time = if secs >= 60 { format!("{}m{:02}s", secs / 60, secs % 60) } else { format!("{secs} s") };
    if status.is_empty() {
        format!("[tessera] {label}: {time}")
    } else {
        format!("[tessera] {label}: {status}, {time}")
    }
}

/// `12.3 of 45.6 MB (27%)`.
pub fn bytes_of(done: u64, total: u64) -> String {
    let mb = |b: u64| b as f64 / 1e6;
    let pct = (done.min(total) * 100).checked_div(total).unwrap_or(0);
    format!("{:.1} of {:.1} MB ({pct}%)", mb(done), mb(total))
}

/// Whether to show a line now: on a terminal at most every [`REDRAW`]; in
/// plain style when `every` has passed since the last line (or since the
/// start, for the first: quick steps print nothing), or when the
/// percentage passed another multiple of ten.
fn due(
    style: Style,
    since_last: Option<Duration>,
    since_start: Duration,
    every: Duration,
    last_tenth: Option<u64>,
    tenth: Option<u64>,
) -> bool {
    match style {
        Style::Line => since_last.is_none_or(|d| d >= REDRAW),
        Style::Plain => {
            let passed_tenth = matches!((last_tenth, tenth), (Some(a), Some(b)) if b > a)
                || (last_tenth.is_none() && tenth.is_some_and(|t| t > 0));
            passed_tenth || since_last.unwrap_or(since_start) >= every
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn plain_lines_come_every_interval_or_tenth() {
        // Quick steps print nothing; then one line per interval.
        assert!(!due(Style::Plain, None, S(3), S(10), None, None));
        assert!(due(Style::Plain, None, S(10), S(10), None, None));
        assert!(!due(Style::Plain, Some(S(9)), S(40), S(10), None, None));
        assert!(due(Style::Plain, Some(S(10)), S(40), S(10), None, None));
        // A new multiple of ten percent prints at once, the same one not.
        assert!(due(Style::Plain, Some(S(1)), S(5), S(10), Some(2), Some(3)));
        assert!(!due(Style::Plain, Some(S(1)), S(5), S(10), Some(3), Some(3)));
        assert!(due(Style::Plain, None, S(1), S(10), None, Some(1)));
        assert!(!due(Style::Plain, None, S(1), S(10), None, Some(0)));
    }

    #[test]
    fn a_terminal_line_is_redrawn_a_few_times_a_second() {
        assert!(due(Style::Line, None, S(0), S(10), None, None));
        assert!(!due(Style::Line, Some(Duration::from_millis(100)), S(5), S(10), None, None));
        assert!(due(Style::Line, Some(Duration::from_millis(300)), S(5), S(10), None, None));
    }

    #[test]
    fn lines_say_what_and_how_long() {
        assert_eq!(format_line("Bochs", "12 serial lines", S(30)), "[tessera] Bochs: 12 serial lines, 30 s");
        assert_eq!(format_line("fuzz", "", S(125)), "[tessera] fuzz: 2m05s");
        assert_eq!(bytes_of(12_300_000, 45_600_000), "12.3 of 45.6 MB (26%)");
        assert_eq!(bytes_of(5, 0), "0.0 of 0.0 MB (0%)");
    }

    #[test]
    fn parts_are_numbered() {
        let mut p = Progress::with_style("bench", S(10), Style::Plain);
        assert!(
            p.part(3, 12, "bench.toml, run 1 of 2").starts_with("[tessera] bench 3 of 12: bench.toml, run 1 of 2, ")
        );
    }

    #[test]
    fn plain_updates_print_only_when_due() {
        let mut p = Progress::with_style("step", S(3600), Style::Plain);
        assert_eq!(p.update("starting"), None);
        assert!(p.update_fraction(50, 100, "half").is_some_and(|l| l.starts_with("[tessera] step: half, ")));
        assert_eq!(p.update_fraction(55, 100, "still half"), None);
        p.finish(None);
    }
}
