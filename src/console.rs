//! Talking to a guest over its serial console, expect-style.
//!
//! [`Console::spawn`] starts an emulator (or any program) whose stdout is
//! the guest's serial output and whose stdin is the guest's serial input
//! (QEMU's `-serial stdio`). A reader thread collects the output; it is
//! optionally echoed to our stdout and copied to a log file as it arrives.
//! [`Console::expect`] waits for a string to appear after the point the
//! previous match ended, [`Console::send_line`] types a line (one byte at
//! a time when [`ConsoleOptions::keystroke_gap`] is set), and
//! [`Console::wait_exit`] waits for the program to end (killing it after a
//! grace period). The program is always killed and reaped when the
//! `Console` is dropped, so a failed test never leaves an emulator behind.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// How many bytes of output an [`ExpectError`] quotes.
const TAIL_BYTES: usize = 2000;

/// A running program with its serial console.
pub struct Console {
    child: Child,
    stdin: Option<ChildStdin>,
    chunks: Receiver<Vec<u8>>,
    /// Everything received so far.
    transcript: Vec<u8>,
    /// Where the next [`Console::expect`] starts looking.
    cursor: usize,
    /// The reader has seen end of file.
    closed: bool,
    started: Instant,
    keystroke_gap: Duration,
}

/// Why [`Console::expect`] failed.
#[derive(Debug)]
pub struct ExpectError {
    pub needle: String,
    /// The program closed its output (exited) before the needle appeared;
    /// otherwise the timeout passed.
    pub closed: bool,
    pub waited: Duration,
    /// The last output received (lossy UTF-8).
    pub tail: String,
}

impl fmt::Display for ExpectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = if self.closed { "the output ended" } else { "timed out" };
        write!(
            f,
            "{why} after {:.1} s waiting for {:?}; last output:\n{}",
            self.waited.as_secs_f64(),
            self.needle,
            self.tail
        )
    }
}

impl std::error::Error for ExpectError {}

/// Options for [`Console::spawn`].
#[derive(Clone, Debug, Default)]
pub struct ConsoleOptions<'a> {
    /// Copy the output to our stdout as it arrives.
    pub echo: bool,
    /// Also record the output in this file (created or truncated).
    pub log: Option<&'a Path>,
    /// Pause between the bytes [`Console::send_line`] types, as a person
    /// typing would: a guest behind a small UART FIFO that is polled (the
    /// VID's COM1) loses bytes sent at pipe speed. Zero sends the line at once.
    pub keystroke_gap: Duration,
}

impl Console {
    /// Starts `cmd` with piped stdin and stdout (stderr is inherited).
    pub fn spawn(mut cmd: Command, opts: &ConsoleOptions<'_>) -> io::Result<Console> {
        let mut log = opts.log.map(File::create).transpose()?;
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let (tx, chunks) = mpsc::channel();
        let echo = opts.echo;
        thread::Builder::new().name("console".into()).spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if let Some(log) = log.as_mut() {
                            let _ = log.write_all(&buf[..n]);
                            let _ = log.flush();
                        }
                        if echo {
                            let mut out = io::stdout().lock();
                            let _ = out.write_all(&buf[..n]);
                            let _ = out.flush();
                        }
                        if tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        })?;
        Ok(Console {
            child,
            stdin,
            chunks,
            transcript: Vec::new(),
            cursor: 0,
            closed: false,
            started: Instant::now(),
            keystroke_gap: opts.keystroke_gap,
        })
    }

    /// Time since the program was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Everything received so far (lossy UTF-8, `\r` kept).
    pub fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.transcript).into_owned()
    }

    /// Waits until `needle` appears in the output after the end of the
    /// previous match, for at most `timeout`. Returns the output from there
    /// up to and including the needle, and moves past it.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> Result<String, ExpectError> {
        let start = Instant::now();
        let deadline = start + timeout;
        loop {
            if let Some(at) = find(&self.transcript[self.cursor..], needle.as_bytes()) {
                let end = self.cursor + at + needle.len();
                let text = String::from_utf8_lossy(&self.transcript[self.cursor..end]).into_owned();
                self.cursor = end;
                return Ok(text);
            }
            let now = Instant::now();
            if self.closed || now >= deadline {
                return Err(self.error(needle, start.elapsed()));
            }
            match self.chunks.recv_timeout(deadline - now) {
                Ok(chunk) => self.transcript.extend_from_slice(&chunk),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.closed = true,
            }
        }
    }

    fn error(&self, needle: &str, waited: Duration) -> ExpectError {
        let from = self.transcript.len().saturating_sub(TAIL_BYTES);
        ExpectError {
            needle: needle.to_owned(),
            closed: self.closed,
            waited,
            tail: String::from_utf8_lossy(&self.transcript[from..]).into_owned(),
        }
    }

    /// Types `line` and a carriage return (what a terminal's Enter sends;
    /// the guest's tty turns it into a newline), pausing
    /// [`ConsoleOptions::keystroke_gap`] after each byte. Output keeps
    /// arriving meanwhile (the reader thread collects it).
    pub fn send_line(&mut self, line: &str) -> io::Result<()> {
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\r');
        if self.keystroke_gap.is_zero() {
            return self.send(&bytes);
        }
        for byte in bytes {
            self.send(&[byte])?;
            thread::sleep(self.keystroke_gap);
        }
        Ok(())
    }

    /// Sends `bytes` as they are.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "stdin closed"))?;
        stdin.write_all(bytes)?;
        stdin.flush()
    }

    /// Waits up to `grace` for the program to exit by itself, collecting its
    /// remaining output; kills it after that. Returns its status if it exited
    /// by itself.
    pub fn wait_exit(&mut self, grace: Duration) -> io::Result<Option<ExitStatus>> {
        self.stdin = None;
        let deadline = Instant::now() + grace;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break Some(status);
            }
            if Instant::now() >= deadline {
                self.child.kill()?;
                self.child.wait()?;
                break None;
            }
            self.drain(Duration::from_millis(20));
        };
        // The reader ends at end of file once the program is gone.
        while !self.closed {
            self.drain(Duration::from_millis(200));
        }
        Ok(status)
    }

    fn drain(&mut self, wait: Duration) {
        match self.chunks.recv_timeout(wait) {
            Ok(chunk) => self.transcript.extend_from_slice(&chunk),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => self.closed = true,
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Console {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        Console::spawn(cmd, &ConsoleOptions::default()).expect("spawn sh")
    }

    #[test]
    fn expect_send_and_exit() {
        let script = "echo ready; read line; echo \"got:$line\"; x=$(head -c 4 | od -An -c); echo $x; echo bye; exit 3";
        let mut c = sh(script);
        assert_eq!(c.expect("ready", Duration::from_secs(10)).unwrap(), "ready");
        c.send(b"hello\n").unwrap();
        let text = c.expect("got:hello", Duration::from_secs(10)).unwrap();
        assert!(text.ends_with("got:hello"), "{text:?}");
        // A line ends with a carriage return, as Enter on a terminal (dash's echo
        // turns od's `\r` back into one).
        c.send_line("abc").unwrap();
        c.expect("a b c \r", Duration::from_secs(10)).unwrap();
        // A later expect only sees what follows the previous match.
        assert!(c.expect("ready", Duration::from_millis(300)).is_err());
        let status = c.wait_exit(Duration::from_secs(10)).unwrap();
        assert_eq!(status.and_then(|s| s.code()), Some(3));
        assert!(c.transcript().contains("bye"));
    }

    #[test]
    fn a_paced_line_arrives_whole() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "x=$(head -c 4 | od -An -c); echo $x"]);
        let opts = ConsoleOptions { keystroke_gap: Duration::from_millis(20), ..Default::default() };
        let mut c = Console::spawn(cmd, &opts).expect("spawn sh");
        let start = Instant::now();
        c.send_line("abc").unwrap();
        assert!(start.elapsed() >= Duration::from_millis(80), "four bytes, a pause after each");
        c.expect("a b c \r", Duration::from_secs(10)).unwrap();
    }

    #[test]
    fn a_missing_needle_times_out_or_sees_the_end() {
        let mut c = sh("echo something; exec sleep 5");
        let e = c.expect("never", Duration::from_millis(300)).unwrap_err();
        assert!(!e.closed && e.tail.contains("something"), "{e}");
        assert!(c.wait_exit(Duration::from_millis(100)).unwrap().is_none(), "killed");

        let mut c = sh("echo done");
        let e = c.expect("never", Duration::from_secs(10)).unwrap_err();
        assert!(e.closed, "{e}");
        assert!(e.to_string().contains("the output ended"));
    }
}
