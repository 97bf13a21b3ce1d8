//! Where [`println!`](crate::println) and friends go.
//!
//! By default a task's output goes to the console service through the
//! endpoint capability named [`console_api::ENDPOINT`] (`"console"`), in
//! `write` requests of at most [`CHUNK`] bytes; the console adds the
//! `[name] ` prefix. A task without that capability prints nothing. The
//! console itself (which must not call its own endpoint) switches to
//! [`Sink::Uart`], which writes straight to a port and adds the prefix
//! here. Formatting needs no heap: text is cut into chunks as it is
//! formatted.

use core::fmt;

/// Most bytes handed to the sink at once: fits both a console `write` and
/// one `IO_OUT_BYTES` invocation.
pub const CHUNK: usize = crate::io::OUT_BYTES_MAX;
const _: () = assert!(CHUNK <= tessera_idl::MAX_BYTES);

/// Where output goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    /// The console service, through the capability named "console" (the default).
    Console,
    /// Straight to `port` through the I/O-port capability in `ports`, each
    /// line prefixed with `[task name] `.
    Uart { ports: abi::CapSlot, port: u16 },
    /// Nowhere.
    Off,
}

/// Formats text into chunks of at most [`CHUNK`] bytes for `sink`,
/// optionally starting every line with `[prefix] `.
pub struct LineWriter<'p, F: FnMut(&[u8])> {
    buf: [u8; CHUNK],
    len: usize,
    prefix: Option<&'p str>,
    at_line_start: bool,
    sink: F,
}

impl<'p, F: FnMut(&[u8])> LineWriter<'p, F> {
    /// `at_line_start`: whether the previous output ended a line.
    pub fn new(prefix: Option<&'p str>, at_line_start: bool, sink: F) -> Self {
        LineWriter { buf: [0; CHUNK], len: 0, prefix, at_line_start, sink }
    }

    fn push(&mut self, byte: u8) {
        if self.len == CHUNK {
            self.flush();
        }
        self.buf[self.len] = byte;
        self.len += 1;
    }

    fn push_all(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.push(b);
        }
    }

    /// Hands what is buffered to the sink.
    pub fn flush(&mut self) {
        if self.len > 0 {
            (self.sink)(&self.buf[..self.len]);
            self.len = 0;
        }
    }

    /// Flushes and reports whether the output ended a line.
    pub fn finish(mut self) -> bool {
        self.flush();
        self.at_line_start
    }
}

impl<F: FnMut(&[u8])> fmt::Write for LineWriter<'_, F> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.at_line_start {
                if let Some(prefix) = self.prefix {
                    self.push(b'[');
                    self.push_all(prefix.as_bytes());
                    self.push_all(b"] ");
                }
                self.at_line_start = false;
            }
            self.push(b);
            if b == b'\n' {
                self.at_line_start = true;
            }
        }
        Ok(())
    }
}

#[cfg(target_os = "none")]
mod current {
    use super::*;
    use crate::{Kernel, caps, startup};
    use abi::CapSlot;
    use core::fmt::Write;
    use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU32, Ordering};

    const CONSOLE: u8 = 0;
    const UART: u8 = 1;
    const OFF: u8 = 2;

    static MODE: AtomicU8 = AtomicU8::new(CONSOLE);
    static PORTS: AtomicU32 = AtomicU32::new(0);
    static PORT: AtomicU16 = AtomicU16::new(0);
    static AT_LINE_START: AtomicBool = AtomicBool::new(true);

    /// Chooses where output goes from now on.
    pub fn set_sink(sink: Sink) {
        match sink {
            Sink::Console => MODE.store(CONSOLE, Ordering::Relaxed),
            Sink::Uart { ports, port } => {
                PORTS.store(ports.0, Ordering::Relaxed);
                PORT.store(port, Ordering::Relaxed);
                MODE.store(UART, Ordering::Relaxed);
            }
            Sink::Off => MODE.store(OFF, Ordering::Relaxed),
        }
    }

    pub fn sink() -> Sink {
        match MODE.load(Ordering::Relaxed) {
            CONSOLE => Sink::Console,
            UART => Sink::Uart { ports: CapSlot(PORTS.load(Ordering::Relaxed)), port: PORT.load(Ordering::Relaxed) },
            _ => Sink::Off,
        }
    }

    #[doc(hidden)]
    pub fn _print(args: fmt::Arguments<'_>) {
        let sink = sink();
        let prefix = match sink {
            Sink::Off => return,
            Sink::Console if caps::endpoint(console_api::ENDPOINT).is_none() => return,
            Sink::Console => None,
            Sink::Uart { .. } => Some(startup::task_name()),
        };
        let mut writer = LineWriter::new(prefix, AT_LINE_START.load(Ordering::Relaxed), |chunk| deliver(sink, chunk));
        let _ = writer.write_fmt(args);
        AT_LINE_START.store(writer.finish(), Ordering::Relaxed);
    }

    /// Output is best effort: a console that is gone or refuses must not
    /// take the task down with it.
    fn deliver(sink: Sink, chunk: &[u8]) {
        match sink {
            Sink::Console => {
                if let Some(endpoint) = caps::endpoint(console_api::ENDPOINT) {
                    let _ = console_api::Client::new(Kernel, endpoint).write(chunk);
                }
            }
            Sink::Uart { ports, port } => {
                let _ = crate::io::uart_write(ports, port, chunk);
            }
            Sink::Off => {}
        }
    }
}

#[cfg(target_os = "none")]
pub use current::*;

/// There is no console on the host: output is dropped.
#[cfg(not(target_os = "none"))]
#[doc(hidden)]
pub fn _print(_: fmt::Arguments<'_>) {}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    fn run(prefix: Option<&str>, at_line_start: bool, text: &str) -> (Vec<Vec<u8>>, bool) {
        let mut chunks = Vec::new();
        let mut writer = LineWriter::new(prefix, at_line_start, |c: &[u8]| chunks.push(c.to_vec()));
        writer.write_str(text).unwrap();
        let end = writer.finish();
        (chunks, end)
    }

    #[test]
    fn short_output_is_one_chunk() {
        let (chunks, end) = run(None, true, "vid: ready\n");
        assert_eq!(chunks, [b"vid: ready\n".to_vec()]);
        assert!(end);
        let (chunks, end) = run(None, true, "no newline");
        assert_eq!(chunks, [b"no newline".to_vec()]);
        assert!(!end);
        assert_eq!(run(None, true, "").0, Vec::<Vec<u8>>::new());
    }

    #[test]
    fn long_output_is_cut_into_bounded_chunks_without_losing_bytes() {
        let text: String = (0..2000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let (chunks, _) = run(None, true, &text);
        assert!(chunks.iter().all(|c| c.len() <= CHUNK));
        assert_eq!(chunks.len(), 2000usize.div_ceil(CHUNK));
        assert_eq!(chunks.concat(), text.as_bytes());
    }

    #[test]
    fn a_prefix_starts_every_line_and_only_lines() {
        let (chunks, end) = run(Some("console"), true, "one\ntwo\n\nthree");
        assert_eq!(chunks.concat(), b"[console] one\n[console] two\n[console] \n[console] three");
        assert!(!end);
        // Continuing a line does not repeat the prefix.
        let (chunks, _) = run(Some("console"), false, " more\n");
        assert_eq!(chunks.concat(), b" more\n");
    }
}
