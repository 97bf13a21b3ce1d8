//! `tessera-rt`: what every Tessera task links against.
//!
//! - **Entry.** The ELF entry `_start` (this crate) takes the address of the
//!   task's [`StartupInfo`](abi::startup::StartupInfo) page in `rdi`, checks
//!   it, and calls the task's `main`, named with [`entry!`]. When `main`
//!   returns, the thread exits.
//! - **Syscalls.** Typed wrappers ([`call`], [`send`], [`recv`], [`reply`],
//!   [`reply_recv`], [`signal`], [`wait`], [`invoke`], [`yield_now`],
//!   [`exit`]) over the one raw [`sys::syscall`]; long messages go through
//!   the IPC buffer transparently ([`ipc_buffer`]).
//! - **Capabilities by name** from the startup page ([`caps`], [`startup`]).
//! - **Untyped pools**: typed retypes and what is left of a pool ([`untyped`]).
//! - **Services.** [`Kernel`] is the [`Transport`](tessera_idl::Transport)
//!   and [`Receiver`](tessera_idl::Receiver) that interface clients and
//!   [`serve`] use.
//! - **Logging.** [`println!`], [`print!`] and [`log!`] (which prefixes the
//!   task's name) go to the console service through the capability named
//!   `"console"`, or nowhere if there is none ([`log`]).
//! - **Panics** print `<task>: panicked at <file:line:col>: <message>` and
//!   execute `ud2`, so the kernel reports a fault to the supervisor.
//!
//! This is the only userland crate with `unsafe`: the syscall instruction,
//! the entry point, reading the startup page, and the IPC buffer, each block
//! with a `// SAFETY:` comment. The kernel-facing parts exist only for the
//! bare target (`target_os = "none"`); the rest is pure and host-tested.
//!
//! # Soundness boundary
//!
//! The syscall wrappers are safe functions. The kernel writes task memory
//! only in the IPC buffer, which this crate accesses only through raw
//! pointers (no reference to it ever exists). A task that holds CONTROL on
//! its own task capability can still unmap or remap memory Rust is using
//! (`TASK_MAP`/`TASK_UNMAP`); like writing `/proc/self/mem` on Linux, that
//! is outside what the type system can check.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

pub mod caps;
pub mod io;
pub mod log;
pub mod startup;
pub mod untyped;

#[cfg(target_os = "none")]
#[allow(unsafe_code)]
pub mod arch;
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
mod entry;
#[cfg(target_os = "none")]
mod ipc;
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
pub mod ipc_buffer;
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
pub mod memory;
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
pub mod sys;

#[cfg(target_os = "none")]
pub use ipc::{
    Kernel, NoWait, Received, Until, call, call_in_place, call_with_caps, exit, invoke, invoke_in_place, poll, recv,
    recv_in_place, recv_in_place_until, recv_timeout, recv_until, reply, reply_recv, reply_recv_in_place,
    reply_recv_into_until, reply_recv_timeout, reply_recv_until, reply_recv_with_caps, send, send_with_caps, serve,
    signal, ticks, try_send, wait, wait_timeout, wait_until, yield_now,
};

pub use abi;
pub use abi::invoke::Operation;
pub use abi::{Badge, CapSlot, ErrorCode, MessageInfo, ObjectType};
pub use tessera_idl as idl;
pub use tessera_idl::Message;

/// Names the task's `main`: `tessera_rt::entry!(main);` in the binary's
/// root. The runtime's `_start` calls it once the startup page has been
/// checked; when it returns, the thread exits.
///
/// It expands to the one unmangled symbol the runtime links against, so a
/// binary can `#![deny(unsafe_code)]` and still use it (the expansion allows
/// it for that item only).
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[cfg(target_os = "none")]
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        extern "Rust" fn __tessera_task_main() {
            $main()
        }
    };
}

/// Prints to the console, without a newline (see [`log`]).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::log::_print(::core::format_args!($($arg)*))
    };
}

/// Prints a line to the console (see [`log`]).
#[macro_export]
macro_rules! println {
    () => {
        $crate::log::_print(::core::format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::log::_print(::core::format_args!("{}\n", ::core::format_args!($($arg)*)))
    };
}

/// Prints a log line. The console prefixes it with `[task]`, naming the
/// sender by the badge of its capability (which a task cannot forge), so
/// the task does not name itself.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::println!($($arg)*)
    };
}
