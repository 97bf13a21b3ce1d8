//! The Tessera microkernel: the ring-0 core.
//!
//! Ring 0 keeps mechanism only: CPU and interrupt set-up, its own memory,
//! hardware discovery and (in later stages) VM exits, second-level paging,
//! IPC and capabilities. Everything that touches hardware directly lives
//! under `arch/`; pure logic lives in the host-tested `kerncore` crate.

#![cfg_attr(target_os = "none", no_std, no_main)]
// `unsafe` is allowed module by module in `arch/` (see `arch/mod.rs`), and
// in one block of `trap.rs`; everywhere else it is an error.
#![deny(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("tessera-microkernel runs only on bare metal (x86_64-unknown-none); the runner boots it.");
}

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod arch;
#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
mod object;
#[cfg(target_os = "none")]
mod roottask;
#[cfg(target_os = "none")]
mod trace;
#[cfg(target_os = "none")]
mod trap;
#[cfg(target_os = "none")]
mod vmlog;
