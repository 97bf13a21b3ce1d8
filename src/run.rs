//! Supervising one emulator run: serial capture, the halt marker, the
//! deadline, and the resulting exit code.
//!
//! The serial console arrives either on a pipe (QEMU's `-serial stdio`) or
//! in a file the emulator appends to (Bochs's `com1: mode=file`). A reader
//! thread copies it live to our stdout and to the serial log, and watches
//! for the kernel's final line `tessera: halted status=N`, and counts its
//! resets (`tessera: reset`): the run ends at the first reset beyond those
//! it allows.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::progress::Progress;

/// The prefix of the kernel's final serial line.
pub const HALT_MARKER: &str = "tessera: halted status=";

/// The line the kernel prints before it resets the machine
/// (`platform::RESET_MARKER`).
pub const RESET_MARKER: &str = "tessera: reset";

/// Parse a halt marker line: `tessera: halted status=N` with N in 0..=255.
/// Leading text on the line (and a trailing `\r`) is tolerated.
pub fn parse_marker(line: &str) -> Option<u8> {
    let rest = &line[line.find(HALT_MARKER)? + HALT_MARKER.len()..];
    let digits: &str = &rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len())];
    digits.parse().ok()
}

/// What a halt status means (the kernel's shutdown protocol).
pub fn status_meaning(status: u8) -> &'static str {
    match status {
        0 => "ok",
        1 => "kernel panic",
        2 => "unhandled CPU exception",
        3 => "self-test failure",
        4 => "the root task died (on_supervisor_death = \"halt\")",
        _ => "unknown status",
    }
}

/// Where the serial console comes from.
pub enum SerialSource {
    /// A pipe connected to the emulator's stdout.
    Pipe(Box<dyn Read + Send>),
    /// A file the emulator appends to; it is polled until the run ends.
    File(PathBuf),
}

/// Copies serial bytes to stdout (optionally) and the log, and scans lines.
struct Sink {
    log: File,
    echo: bool,
    line: Vec<u8>,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// The halt status from the marker, or -1.
    marker: AtomicI32,
    /// The emulator is gone; the reader should drain and stop.
    stop: AtomicBool,
    /// Whether the last byte written to stdout was a newline (or nothing yet).
    at_line_start: AtomicBool,
    /// Serial lines seen so far.
    lines: AtomicU64,
    /// Reset marker lines seen so far.
    resets: AtomicU32,
}

impl Sink {
    fn write(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let _ = self.log.write_all(bytes);
        let _ = self.log.flush();
        if self.echo {
            crate::progress::clear_line();
            let mut out = io::stdout().lock();
            let _ = out.write_all(bytes);
            let _ = out.flush();
            self.shared.at_line_start.store(bytes.ends_with(b"\n"), Ordering::Relaxed);
        }
        for &b in bytes {
            if b == b'\n' {
                self.end_line();
            } else {
                self.line.push(b);
            }
        }
    }

    fn end_line(&mut self) {
        self.shared.lines.fetch_add(1, Ordering::Relaxed);
        if let Some(status) = parse_marker(&String::from_utf8_lossy(&self.line)) {
            // The first marker wins; anything after it is noise.
            let _ = self.shared.marker.compare_exchange(-1, i32::from(status), Ordering::SeqCst, Ordering::SeqCst);
        } else if self.line.trim_ascii_end() == RESET_MARKER.as_bytes() {
            self.shared.resets.fetch_add(1, Ordering::SeqCst);
        }
        self.line.clear();
    }

    fn finish(&mut self) {
        if !self.line.is_empty() {
            self.end_line();
        }
    }
}

/// Options for [`supervise`].
pub struct Supervise {
    /// Kill the emulator (SIGKILL) when this much time has passed.
    pub deadline: Option<Duration>,
    /// After the marker, how long the emulator may take to exit by itself.
    pub exit_grace: Duration,
    /// Resets the machine may go through (the emulator starting it again);
    /// the next one ends the run ([`Ending::Reset`]).
    pub resets_allowed: u32,
    /// After that reset, how long the emulator may take to exit by itself
    /// (QEMU with `-no-reboot` does; one that starts the machine again is
    /// killed when this is over).
    pub reset_grace: Duration,
    /// Copy the serial console to our stdout as it arrives.
    pub echo: bool,
    /// Where to record the serial console.
    pub serial_log: PathBuf,
    /// Show the run's progress (elapsed time and serial lines seen) under
    /// this label: for slow emulators, whose console can stay silent for
    /// long (see [`crate::progress`]; plain lines every 10 s).
    pub progress: Option<String>,
}

/// How often a plain progress line of a run is printed.
const RUN_PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The kernel printed `tessera: halted status=N`.
    Halted(u8),
    /// The deadline passed first; the emulator was killed.
    TimedOut,
    /// The emulator exited without the marker.
    NoMarker,
    /// The kernel reset the machine once more than allowed (this many
    /// resets in all).
    Reset(u32),
}

/// The result of [`supervise`].
#[derive(Debug)]
pub struct Outcome {
    pub ending: Ending,
    /// The emulator's exit status, if it exited by itself.
    pub emulator_status: Option<ExitStatus>,
    /// Whether the runner killed the emulator (deadline or stuck after the marker).
    pub killed: bool,
    pub elapsed: Duration,
}

impl Outcome {
    /// The runner's exit code for this outcome.
    pub fn exit_code(&self) -> i32 {
        match self.ending {
            Ending::Halted(status) => i32::from(status),
            Ending::TimedOut => crate::EXIT_TIMEOUT,
            Ending::NoMarker => crate::EXIT_NO_MARKER,
            Ending::Reset(_) => crate::EXIT_RESET,
        }
    }
}

/// Kills the child if the supervisor unwinds before reaping it.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Watch a running emulator until it exits, the marker has been seen and the
/// grace period is over, or the deadline passes. The child is always reaped.
pub fn supervise(child: Child, source: SerialSource, opts: &Supervise) -> io::Result<Outcome> {
    let start = Instant::now();
    let mut child = KillOnDrop(Some(child));
    let shared = Arc::new(Shared { marker: AtomicI32::new(-1), ..Default::default() });
    shared.at_line_start.store(true, Ordering::Relaxed);
    let sink = Sink { log: File::create(&opts.serial_log)?, echo: opts.echo, line: Vec::new(), shared: shared.clone() };
    let reader = spawn_reader(source, sink)?;

    let mut progress = opts.progress.as_ref().map(|label| Progress::new(label.clone(), RUN_PROGRESS_EVERY));
    let mut marker_at: Option<Instant> = None;
    let mut reset_at: Option<Instant> = None;
    let mut killed = false;
    let mut timed_out = false;
    let emulator_status = loop {
        let proc = child.0.as_mut().expect("child present until reaped");
        if let Some(status) = proc.try_wait()? {
            break Some(status);
        }
        if marker_at.is_none() && shared.marker.load(Ordering::SeqCst) >= 0 {
            marker_at = Some(Instant::now());
        }
        if reset_at.is_none() && shared.resets.load(Ordering::SeqCst) > opts.resets_allowed {
            reset_at = Some(Instant::now());
        }
        let must_kill = match (marker_at, reset_at) {
            (Some(t), _) => t.elapsed() >= opts.exit_grace,
            (None, Some(t)) => t.elapsed() >= opts.reset_grace,
            (None, None) => opts.deadline.is_some_and(|d| start.elapsed() >= d),
        };
        if must_kill {
            timed_out = marker_at.is_none() && reset_at.is_none();
            killed = true;
            let _ = proc.kill(); // SIGKILL: Bochs may ignore SIGTERM.
            proc.wait()?;
            break None;
        }
        // On a terminal the line waits for the echoed console to end a line.
        if let Some(p) = progress.as_mut()
            && (!opts.echo || shared.at_line_start.load(Ordering::Relaxed))
        {
            p.update(format!("{} serial lines", shared.lines.load(Ordering::Relaxed)));
        }
        thread::sleep(Duration::from_millis(20));
    };
    if let Some(p) = progress {
        p.finish(None);
    }
    child.0 = None;
    let elapsed = start.elapsed();

    shared.stop.store(true, Ordering::SeqCst);
    // The reader ends at EOF (pipe) or after a final drain (file). Do not
    // wait forever if something else still holds the pipe open.
    let join_deadline = Instant::now() + Duration::from_secs(3);
    while !reader.is_finished() && Instant::now() < join_deadline {
        thread::sleep(Duration::from_millis(10));
    }
    if reader.is_finished() {
        let _ = reader.join();
    }
    if opts.echo && !shared.at_line_start.load(Ordering::Relaxed) {
        println!();
    }

    let marker = shared.marker.load(Ordering::SeqCst);
    let resets = shared.resets.load(Ordering::SeqCst);
    let ending = if marker >= 0 {
        Ending::Halted(marker as u8)
    } else if resets > opts.resets_allowed {
        Ending::Reset(resets)
    } else if timed_out {
        Ending::TimedOut
    } else {
        Ending::NoMarker
    };
    Ok(Outcome { ending, emulator_status, killed, elapsed })
}

fn spawn_reader(source: SerialSource, mut sink: Sink) -> io::Result<JoinHandle<()>> {
    thread::Builder::new().name("serial".into()).spawn(move || {
        match source {
            SerialSource::Pipe(mut pipe) => {
                let mut buf = [0u8; 4096];
                loop {
                    match pipe.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => sink.write(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
            }
            SerialSource::File(path) => tail_file(&path, &mut sink),
        }
        sink.finish();
    })
}

/// Follow a file the emulator appends to until told to stop, then drain it.
fn tail_file(path: &Path, sink: &mut Sink) {
    let mut pos = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Read the stop flag before draining so nothing written before the
        // emulator exited is missed.
        let stopping = sink.shared.stop.load(Ordering::SeqCst);
        if let Ok(mut file) = File::open(path)
            && file.seek(SeekFrom::Start(pos)).is_ok()
        {
            loop {
                match file.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        pos += n as u64;
                        sink.write(&buf[..n]);
                    }
                }
            }
        }
        if stopping {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_parsing() {
        assert_eq!(parse_marker("tessera: halted status=0"), Some(0));
        assert_eq!(parse_marker("tessera: halted status=2\r"), Some(2));
        assert_eq!(parse_marker("[cpu0] tessera: halted status=255"), Some(255));
        assert_eq!(parse_marker("tessera: halted status=256"), None);
        assert_eq!(parse_marker("tessera: halted status="), None);
        assert_eq!(parse_marker("tessera: halted"), None);
    }
}
