//! The first and last things a Tessera boot does: print on COM1 and power
//! off with a status the runner can read.
//!
//! This is arch-layer code: it issues port I/O, so it may use `unsafe`, and
//! every block says why it is sound.

#![no_std]

use core::fmt::{self, Write};
use spin::Mutex;
use uart_16550::SerialPort;
use x86::io::{outb, outl};

const COM1: u16 = 0x3f8;
/// QEMU's `isa-debug-exit` device: the emulator exits with `(value << 1) | 1`.
const QEMU_DEBUG_EXIT_PORT: u16 = 0xf4;
/// Bochs' shutdown port: writing "Shutdown" ends the emulation.
const BOCHS_SHUTDOWN_PORT: u16 = 0x8900;

/// Exit statuses shared with the runner (see `docs/ARCHITECTURE.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitStatus {
    Success = 0,
    Panic = 1,
    CpuException = 2,
    SelfTestFailed = 3,
    /// The root task (the supervisor) died and the manifest's
    /// `on_supervisor_death` is "halt".
    RootTaskDied = 4,
}

// SAFETY: COM1 is the legacy UART at its fixed port; nothing else in the
// system drives these ports, and all access goes through this mutex.
static CONSOLE: Mutex<SerialPort> = Mutex::new(unsafe { SerialPort::new(COM1) });

/// Line status register and its "transmitter empty" bit (16550 datasheet).
const COM1_LINE_STATUS: u16 = COM1 + 5;
const LSR_TRANSMITTER_EMPTY: u8 = 1 << 6;

/// Programs COM1 (115200 8N1, FIFOs on), first letting whatever an earlier
/// stage left in the FIFO go out: re-initialising clears the FIFO.
pub fn console_init() {
    drain();
    CONSOLE.lock().init();
}

/// Waits (boundedly) until every byte written has left the UART.
pub fn drain() {
    for _ in 0..1_000_000 {
        // SAFETY: reading the line status register has no side effects.
        if unsafe { x86::io::inb(COM1_LINE_STATUS) } & LSR_TRANSMITTER_EMPTY != 0 {
            return;
        }
        core::hint::spin_loop();
    }
}

/// Writes to the console. Used by the `println!` macros of each binary.
pub fn console_write(args: fmt::Arguments<'_>) {
    // Formatting into a UART cannot fail.
    let _ = CONSOLE.lock().write_fmt(args);
}

/// Writes to the console even if a panicking holder of the lock never
/// released it: used only on the way down.
pub fn console_write_emergency(args: fmt::Arguments<'_>) {
    if let Some(mut port) = CONSOLE.try_lock() {
        let _ = port.write_fmt(args);
        return;
    }
    // SAFETY: the lock holder is stuck (we are on the fatal path of this CPU);
    // a second driver instance at the same port only risks interleaved bytes.
    let mut port = unsafe { SerialPort::new(COM1) };
    let _ = port.write_fmt(args);
}

/// Set once a CPU powers the machine off: where no device ends the run
/// (a real machine) the others go on, and must not take the halted CPU
/// for a stuck one.
static HALTING: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// True once [`power_off`] was called on some CPU.
pub fn halting() -> bool {
    HALTING.load(core::sync::atomic::Ordering::Relaxed)
}

/// Prints the status marker the runner looks for and powers off.
///
/// Under QEMU the debug-exit device ends the run, under Bochs the shutdown
/// port does; on a real machine neither exists and the CPU halts.
pub fn power_off(status: ExitStatus) -> ! {
    HALTING.store(true, core::sync::atomic::Ordering::Relaxed);
    console_write_emergency(format_args!("tessera: halted status={}\n", status as u8));
    drain();
    // SAFETY: writes to ports no driver of ours owns. On machines without
    // these devices the writes go nowhere.
    unsafe {
        outl(QEMU_DEBUG_EXIT_PORT, status as u32);
        for byte in b"Shutdown" {
            outb(BOCHS_SHUTDOWN_PORT, *byte);
        }
    }
    halt_forever()
}

/// The marker line [`reset`] prints before it resets the machine (the
/// runner counts them).
pub const RESET_MARKER: &str = "tessera: reset";
/// The PCI reset control register (PIIX3/ICH at port 0xcf9): bit 1 asks for
/// a system reset, bit 2 starts it (a "hard" reset with both).
const RESET_CONTROL_PORT: u16 = 0xcf9;
const RESET_CONTROL_SYS_RST: u8 = 1 << 1;
const RESET_CONTROL_RST_CPU: u8 = 1 << 2;
/// The 8042 keyboard controller's command port, and its command that pulses
/// the CPU's reset line.
const KBC_COMMAND_PORT: u16 = 0x64;
const KBC_STATUS_INPUT_FULL: u8 = 1 << 1;
const KBC_PULSE_RESET: u8 = 0xfe;

/// Prints the reset marker and resets the machine: the reset control
/// register (0xcf9), then the keyboard controller's reset line, then a
/// triple fault, each given a moment to take effect. Every CPU starts
/// again from the firmware. (QEMU with `-no-reboot` exits instead.)
pub fn reset() -> ! {
    HALTING.store(true, core::sync::atomic::Ordering::Relaxed);
    console_write_emergency(format_args!("{RESET_MARKER}\n"));
    drain();
    let moment = || {
        for _ in 0..10_000_000 {
            core::hint::spin_loop();
        }
    };
    // SAFETY: port writes that reset the machine, on the way down; where a
    // device is absent the write goes nowhere and the next way is tried.
    unsafe {
        outb(RESET_CONTROL_PORT, RESET_CONTROL_SYS_RST);
        outb(RESET_CONTROL_PORT, RESET_CONTROL_SYS_RST | RESET_CONTROL_RST_CPU);
        moment();
        for _ in 0..100_000 {
            if x86::io::inb(KBC_COMMAND_PORT) & KBC_STATUS_INPUT_FULL == 0 {
                break;
            }
        }
        outb(KBC_COMMAND_PORT, KBC_PULSE_RESET);
        moment();
        // An empty IDT: the breakpoint cannot be delivered, nor the double
        // fault, and the CPU shuts down (a triple fault resets the machine).
        let empty: [u16; 5] = [0; 5];
        core::arch::asm!("cli", "lidt [{}]", "int3", in(reg) empty.as_ptr(), options(nostack));
    }
    halt_forever()
}

/// Stops this CPU for good.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: masking interrupts and halting has no memory effects.
        unsafe {
            core::arch::asm!("cli; hlt", options(nomem, nostack));
        }
    }
}

/// Prints to the console, with a newline.
#[macro_export]
macro_rules! println {
    () => { $crate::console_write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console_write(format_args!("{}\n", format_args!($($arg)*))) };
}
