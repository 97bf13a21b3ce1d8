//! The console service's logic: line assembly per client, name prefixes,
//! and the caller check on naming. The binary only connects it to the
//! kernel (an endpoint to serve, an I/O-port capability to write through).
//!
//! Each client (a badge) has at most one partial line buffered; a complete
//! line is written to the [`Output`] in one piece as `[name] text\n`, so
//! lines of different clients never interleave. A line longer than
//! [`MAX_LINE`] is cut and printed in pieces. Bytes a terminal would
//! interpret (control characters other than tab, DEL) are shown as `?`, and
//! carriage returns are dropped, so no client can rewrite or fake another's
//! line.
//!
//! Input: bytes typed on the host's serial line come from an [`Input`]
//! (COM1's receiver, [`Receiver`], in the binary) and wait in a buffer of
//! [`INPUT_BUFFER`] bytes, filled on every request the console serves
//! ([`Console::handle`]), so keys typed while it prints are kept even when
//! the UART's 16-byte FIFO would overflow. When the buffer is full, input
//! stays in the UART. One task reads it: the first to call `read`.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use console_api::{Bytes, MAX_NAME_LEN, MAX_READ, SUPERVISOR, Server, ServiceError};
use tessera_idl::{Badge, Message};

/// COM1's data port.
pub const COM1: u16 = 0x3f8;
/// Typed bytes kept for the reader.
pub const INPUT_BUFFER: usize = 256;
/// Bytes of a line's text kept before it is printed without its newline.
pub const MAX_LINE: usize = 160;
/// Clients with a partial line at once; one more evicts the least recently
/// used (its partial line is printed first).
pub const MAX_PARTIAL: usize = 8;
/// Client names the console remembers.
pub const MAX_NAMES: usize = 16;
/// Longest line handed to the output: `[`, name, `] `, text, newline.
pub const MAX_OUTPUT_LINE: usize = 1 + MAX_NAME_LEN + 2 + MAX_LINE + 1;

/// Where complete lines go (COM1 in the binary, a buffer in tests).
pub trait Output {
    fn write(&mut self, bytes: &[u8]);
}

/// Where typed bytes come from (COM1's receiver in the binary, a script in
/// tests).
pub trait Input {
    /// The next byte received, if one is waiting; never waits.
    fn poll(&mut self) -> Option<u8>;
}

/// No input: a console that only prints.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoInput;

impl Input for NoInput {
    fn poll(&mut self) -> Option<u8> {
        None
    }
}

/// A 16550's registers, by offset from its base: the console's view of
/// COM1 (`None`: the port access failed).
pub trait UartPorts {
    fn inb(&mut self, offset: u16) -> Option<u8>;
    fn outb(&mut self, offset: u16, value: u8) -> Option<()>;
}

/// 16550 registers and bits the console uses.
pub mod uart {
    pub const RBR: u16 = 0;
    pub const FCR: u16 = 2;
    pub const LSR: u16 = 5;
    /// LSR: data ready.
    pub const LSR_DR: u8 = 1 << 0;
    /// LSR: the byte at the head of the FIFO had a parity error, a framing
    /// error or is a break.
    pub const LSR_BYTE_ERRORS: u8 = (1 << 2) | (1 << 3) | (1 << 4);
    /// LSR: transmitter empty (FIFO and shift register).
    pub const LSR_TEMT: u8 = 1 << 6;
    /// FCR: FIFOs on and the receive FIFO emptied. The transmit FIFO is
    /// not reset: that could cut output still going out (the kernel's).
    pub const FCR_ENABLE_CLEAR_RX: u8 = 0x03;
    /// Line status polls before the FIFOs are programmed anyway.
    pub const DRAIN_POLLS: u32 = 100_000;
}

/// Turns on the UART's 16-byte FIFOs (the kernel's `console_init` normally
/// has already), first waiting (boundedly) until everything written has
/// left the transmitter: a change of FIFO mode empties both FIFOs.
pub fn enable_fifos(ports: &mut impl UartPorts) -> Option<()> {
    for _ in 0..uart::DRAIN_POLLS {
        if ports.inb(uart::LSR)? & uart::LSR_TEMT != 0 {
            break;
        }
    }
    ports.outb(uart::FCR, uart::FCR_ENABLE_CLEAR_RX)
}

/// A 16550's receiver as an [`Input`]: a byte when LSR says data is ready.
/// Bytes received with a parity or framing error, and breaks, are dropped;
/// a port that reads all ones (no UART) has no input.
pub struct Receiver<P>(pub P);

impl<P: UartPorts> Input for Receiver<P> {
    fn poll(&mut self) -> Option<u8> {
        // At most one FIFO's worth of bad bytes per poll.
        for _ in 0..16 {
            let status = self.0.inb(uart::LSR)?;
            if status == 0xff || status & uart::LSR_DR == 0 {
                return None;
            }
            let b = self.0.inb(uart::RBR)?;
            if status & uart::LSR_BYTE_ERRORS == 0 {
                return Some(b);
            }
        }
        None
    }
}

/// Typed bytes waiting for the reader, oldest first.
struct Typed {
    bytes: [u8; INPUT_BUFFER],
    head: usize,
    len: usize,
}

impl Typed {
    const fn new() -> Typed {
        Typed { bytes: [0; INPUT_BUFFER], head: 0, len: 0 }
    }

    fn push(&mut self, b: u8) {
        self.bytes[(self.head + self.len) % INPUT_BUFFER] = b;
        self.len += 1;
    }

    fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let b = self.bytes[self.head];
        self.head = (self.head + 1) % INPUT_BUFFER;
        self.len -= 1;
        Some(b)
    }
}

#[derive(Clone, Copy)]
struct Name {
    badge: Badge,
    len: usize,
    bytes: [u8; MAX_NAME_LEN],
}

impl Name {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[derive(Clone, Copy)]
struct Partial {
    badge: Badge,
    len: usize,
    bytes: [u8; MAX_LINE],
    last_use: u64,
}

/// The console's state.
pub struct Console<O: Output, I: Input = NoInput> {
    out: O,
    names: [Option<Name>; MAX_NAMES],
    partial: [Option<Partial>; MAX_PARTIAL],
    clock: u64,
    input: I,
    typed: Typed,
    /// The task that reads input: the first to ask.
    reader: Option<Badge>,
}

/// True if `name` can name a client: 1..=[`MAX_NAME_LEN`] printable ASCII
/// characters other than space.
pub fn valid_name(name: &[u8]) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len()) && name.iter().all(u8::is_ascii_graphic)
}

/// What is printed for byte `b` of a client's text (`None`: dropped).
fn shown(b: u8) -> Option<u8> {
    match b {
        b'\r' => None,
        b'\t' | 0x20..=0x7e | 0x80..=0xff => Some(b),
        _ => Some(b'?'),
    }
}

/// Writes "badge N" into `buf`, returning its length.
fn badge_label(badge: Badge, buf: &mut [u8; MAX_NAME_LEN]) -> usize {
    const PREFIX: &[u8] = b"badge ";
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 20];
    let mut n = badge.0;
    let mut count = 0;
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..count {
        buf[PREFIX.len() + i] = digits[count - 1 - i];
    }
    PREFIX.len() + count
}

/// Writes `[name] text\n` to `out` in one piece.
fn emit_line<O: Output>(out: &mut O, name: &[u8], text: &[u8]) {
    let mut line = [0u8; MAX_OUTPUT_LINE];
    let name = &name[..name.len().min(MAX_NAME_LEN)];
    let text = &text[..text.len().min(MAX_LINE)];
    let mut len = 0;
    for part in [b"[".as_slice(), name, b"] ", text, b"\n"] {
        line[len..len + part.len()].copy_from_slice(part);
        len += part.len();
    }
    out.write(&line[..len]);
}

/// Writes a client's line, prefixed with its name or `badge N`.
fn emit_client_line<O: Output>(out: &mut O, names: &[Option<Name>; MAX_NAMES], badge: Badge, text: &[u8]) {
    match names.iter().flatten().find(|n| n.badge == badge) {
        Some(name) => emit_line(out, name.as_bytes(), text),
        None => {
            let mut buf = [0u8; MAX_NAME_LEN];
            let len = badge_label(badge, &mut buf);
            emit_line(out, &buf[..len], text);
        }
    }
}

impl<O: Output> Console<O> {
    /// A console without input.
    pub fn new(out: O) -> Console<O> {
        Console::with_input(out, NoInput)
    }
}

impl<O: Output, I: Input> Console<O, I> {
    pub fn with_input(out: O, input: I) -> Console<O, I> {
        Console {
            out,
            names: [None; MAX_NAMES],
            partial: [None; MAX_PARTIAL],
            clock: 0,
            input,
            typed: Typed::new(),
            reader: None,
        }
    }

    /// Serves one request in place: takes in what was typed, then
    /// dispatches.
    pub fn handle(&mut self, caller: Badge, message: &mut Message) {
        self.take_input();
        console_api::dispatch_in_place(self, caller, message);
    }

    /// Moves typed bytes from the input into the buffer while it has room.
    pub fn take_input(&mut self) {
        while self.typed.len < INPUT_BUFFER {
            let Some(b) = self.input.poll() else { break };
            self.typed.push(b);
        }
    }

    /// Typed bytes waiting for the reader.
    pub fn typed_len(&self) -> usize {
        self.typed.len
    }

    /// Takes up to `max` typed bytes (at most [`MAX_READ`]) for `caller`,
    /// if it is the reader (the first caller becomes it).
    pub fn read(&mut self, caller: Badge, max: u32) -> Result<Bytes, ServiceError> {
        match self.reader {
            None => self.reader = Some(caller),
            Some(reader) if reader != caller => return Err(ServiceError::PermissionDenied),
            Some(_) => {}
        }
        let mut buf = [0u8; MAX_READ];
        let max = usize::try_from(max).unwrap_or(usize::MAX).min(MAX_READ);
        let mut n = 0;
        while n < max {
            // The buffer holds the oldest bytes; then the UART's.
            let Some(b) = self.typed.pop().or_else(|| self.input.poll()) else { break };
            buf[n] = b;
            n += 1;
        }
        // Room was freed: refill from the UART before its FIFO overflows.
        self.take_input();
        Bytes::from_slice(&buf[..n]).ok_or(ServiceError::Failed)
    }

    pub fn output(&self) -> &O {
        &self.out
    }

    pub fn output_mut(&mut self) -> &mut O {
        &mut self.out
    }

    /// The name `badge`'s lines are printed with, if one was set.
    pub fn name_of(&self, badge: Badge) -> Option<&[u8]> {
        self.names.iter().flatten().find(|n| n.badge == badge).map(Name::as_bytes)
    }

    /// Prints one of the console's own lines, as `[console] text`.
    pub fn log_own(&mut self, text: &str) {
        for line in text.as_bytes().split(|&b| b == b'\n') {
            for piece in line.chunks(MAX_LINE) {
                emit_line(&mut self.out, b"console", piece);
            }
        }
    }

    /// Names the client `badge` (replacing an earlier name). The caller
    /// check is the server's, in [`Server::name_client`].
    pub fn set_name(&mut self, badge: Badge, name: &[u8]) -> Result<(), ServiceError> {
        if !valid_name(name) {
            return Err(ServiceError::InvalidArgument);
        }
        let mut bytes = [0; MAX_NAME_LEN];
        bytes[..name.len()].copy_from_slice(name);
        let entry = Name { badge, len: name.len(), bytes };
        let slot = match self.names.iter().position(|n| n.is_some_and(|n| n.badge == badge)) {
            Some(i) => i,
            None => self.names.iter().position(Option::is_none).ok_or(ServiceError::NoResources)?,
        };
        self.names[slot] = Some(entry);
        Ok(())
    }

    /// The partial-line slot of `badge`, created (possibly by evicting the
    /// least recently used one, whose text is printed first) if needed.
    fn partial_slot(&mut self, badge: Badge) -> usize {
        if let Some(i) = self.partial.iter().position(|p| p.is_some_and(|p| p.badge == badge)) {
            return i;
        }
        let slot = match self.partial.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                let (i, _) = self
                    .partial
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, p)| p.map_or(0, |p| p.last_use))
                    .unwrap_or((0, &None));
                if let Some(old) = self.partial[i].take() {
                    emit_client_line(&mut self.out, &self.names, old.badge, &old.bytes[..old.len]);
                }
                i
            }
        };
        self.partial[slot] = Some(Partial { badge, len: 0, bytes: [0; MAX_LINE], last_use: 0 });
        slot
    }

    /// Appends `bytes` to `badge`'s output, printing every line completed.
    pub fn write(&mut self, badge: Badge, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.clock += 1;
        let slot = self.partial_slot(badge);
        let Some(partial) = self.partial[slot].as_mut() else {
            return;
        };
        partial.last_use = self.clock;
        for &b in bytes {
            if b == b'\n' {
                emit_client_line(&mut self.out, &self.names, badge, &partial.bytes[..partial.len]);
                partial.len = 0;
                continue;
            }
            let Some(c) = shown(b) else { continue };
            partial.bytes[partial.len] = c;
            partial.len += 1;
            if partial.len == MAX_LINE {
                emit_client_line(&mut self.out, &self.names, badge, &partial.bytes);
                partial.len = 0;
            }
        }
        if partial.len == 0 {
            self.partial[slot] = None;
        }
    }

    /// Bytes `badge` has written since its last complete line.
    pub fn pending(&self, badge: Badge) -> &[u8] {
        self.partial.iter().flatten().find(|p| p.badge == badge).map_or(&[], |p| &p.bytes[..p.len])
    }
}

impl<O: Output, I: Input> Server for Console<O, I> {
    fn write(&mut self, caller: Badge, bytes: &[u8]) -> Result<(), ServiceError> {
        Console::write(self, caller, bytes);
        Ok(())
    }

    fn name_client(&mut self, caller: Badge, badge: u64, name: &[u8]) -> Result<(), ServiceError> {
        if caller != SUPERVISOR {
            return Err(ServiceError::PermissionDenied);
        }
        self.set_name(Badge(badge), name)
    }

    fn read(&mut self, caller: Badge, max: u32) -> Result<Bytes, ServiceError> {
        Console::read(self, caller, max)
    }
}

#[cfg(test)]
mod tests;
