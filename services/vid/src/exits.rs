//! Handling a virtual processor's intercepts: what the guest's port I/O
//! means (the 16550 UART's data register, the test-exit port), and what the
//! kernel is told to do next. Pure, so it is tested on the host.

use hvdef::{HvInterceptAccessType, HvMessage, HvMessageBody, HvRegisterName};

/// COM1's data register: bytes written here are guest console output.
pub const UART_DATA: u16 = 0x3f8;
/// The UART's line status register: the guest polls it before writing.
pub const UART_LINE_STATUS: u16 = 0x3fd;
/// QEMU's `isa-debug-exit` convention: the run's status is `(value << 1) | 1`.
pub const TEST_EXIT: u16 = 0xf4;
/// Longest guest console line kept before it is printed anyway.
pub const LINE_MAX: usize = 120;

/// What the VID does after an intercept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Resume the VP with these register updates.
    Resume(heapless::Vec<(HvRegisterName, u64), 2>),
    /// Leave the VP stopped; the guest ended.
    Stop(Stop),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The guest wrote `value` to the test-exit port: status `(value << 1) | 1`.
    TestExit { value: u32 },
    /// The guest halted with nothing to wake it (no interrupts are emulated yet).
    Halted { rip: u64 },
    /// Triple fault, shutdown, or an intercept the VID cannot handle.
    Failed { message_type: u32, rip: u64 },
}

/// The guest's console: assembles bytes into lines.
#[derive(Default)]
pub struct GuestConsole {
    line: heapless::Vec<u8, LINE_MAX>,
}

impl GuestConsole {
    /// Takes one byte; returns a finished line when there is one.
    pub fn byte(&mut self, b: u8) -> Option<heapless::Vec<u8, LINE_MAX>> {
        match b {
            b'\n' => Some(core::mem::take(&mut self.line)),
            b'\r' => None,
            _ => {
                let shown = if b == b'\t' || (0x20..0x7f).contains(&b) { b } else { b'?' };
                if self.line.push(shown).is_err() {
                    let full = core::mem::take(&mut self.line);
                    let _ = self.line.push(shown);
                    return Some(full);
                }
                None
            }
        }
    }
}

fn resume_at(rip: u64, extra: Option<(HvRegisterName, u64)>) -> Action {
    let mut updates = heapless::Vec::new();
    let _ = updates.push((HvRegisterName::RIP, rip));
    if let Some(u) = extra {
        let _ = updates.push(u);
    }
    Action::Resume(updates)
}

/// Decides what an intercept means. `output` receives guest console bytes.
pub fn handle(message: &HvMessage, mut output: impl FnMut(u8)) -> Action {
    let Ok(body) = message.parse() else {
        return Action::Stop(Stop::Failed { message_type: message.header.message_type.0, rip: 0 });
    };
    let fail = |rip| Action::Stop(Stop::Failed { message_type: body.message_type().0, rip });
    match body {
        HvMessageBody::X64IoPortIntercept(io) => {
            let next = io.header.rip + u64::from(io.header.instruction_length());
            let write = io.header.intercept_access_type == HvInterceptAccessType::WRITE;
            if io.access_info.string_op() || io.header.instruction_length() == 0 {
                return fail(io.header.rip);
            }
            match (io.port_number, write) {
                (UART_DATA, true) => {
                    output(io.rax as u8);
                    resume_at(next, None)
                }
                (TEST_EXIT, true) => Action::Stop(Stop::TestExit { value: io.rax as u32 }),
                // Line status: transmitter empty and holding register empty.
                (UART_LINE_STATUS, false) => resume_at(next, Some((HvRegisterName::RAX, (io.rax & !0xff) | 0x60))),
                // Other ports: writes are ignored, reads see all ones.
                (_, true) => resume_at(next, None),
                (_, false) => {
                    let ones = match io.access_info.access_size() {
                        1 => 0xff,
                        2 => 0xffff,
                        _ => 0xffff_ffff,
                    };
                    resume_at(next, Some((HvRegisterName::RAX, (io.rax & !ones) | ones)))
                }
            }
        }
        HvMessageBody::X64Halt(halt) => Action::Stop(Stop::Halted { rip: halt.header.rip }),
        other => fail(other.intercept_header().map_or(0, |h| h.rip)),
    }
}

/// A small real-mode guest for the demo partition, loaded at [`DEMO_LOAD`]:
/// it prints its greeting through the UART, reports status 0 through the
/// test-exit port, and halts.
pub const DEMO_LOAD: u64 = 0x1000;
pub const DEMO_GUEST: &[u8] = &[
    0xbe, 0x13, 0x10, // mov si, 0x1013 (the message)
    0xba, 0xf8, 0x03, // mov dx, 0x3f8
    0xac, // next: lodsb
    0x84, 0xc0, // test al, al
    0x74, 0x03, // jz done
    0xee, // out dx, al
    0xeb, 0xf8, // jmp next
    0xb0, 0x00, // done: mov al, 0
    0xe6, 0xf4, // out 0xf4, al
    0xf4, // hlt
    b'H', b'e', b'l', b'l', b'o', b' ', b'f', b'r', b'o', b'm', b' ', b'a', b' ', b'T', b'e', b's', b's', b'e', b'r',
    b'a', b' ', b'p', b'a', b'r', b't', b'i', b't', b'i', b'o', b'n', b'\n', 0,
];

/// The exit benchmark's guest: [`BENCH_EXITS`] writes to port 0x80 (each a
/// forwarded exit), then a spin of 2^25 iterations (about 64 M
/// instructions, during which host timer interrupts cause exits that ring 0
/// handles alone), then status 0 through the test-exit port.
pub const BENCH_PORT: u16 = 0x80;
pub const BENCH_EXITS: u16 = 1000;
pub const BENCH_GUEST: &[u8] = &[
    0xba,
    0x80,
    0x00, // mov dx, 0x80
    0xb9,
    (BENCH_EXITS & 0xff) as u8,
    (BENCH_EXITS >> 8) as u8, // mov cx, BENCH_EXITS
    0xee,                     // again: out dx, al
    0xe2,
    0xfd, // loop again
    0x66,
    0xb9,
    0x00,
    0x00,
    0x00,
    0x02, // mov ecx, 0x2000000
    0x66,
    0x49, // spin: dec ecx
    0x75,
    0xfc, // jnz spin
    0xb0,
    0x00, // mov al, 0
    0xe6,
    0xf4, // out 0xf4, al
    0xf4, // hlt
];

#[cfg(test)]
mod tests;
