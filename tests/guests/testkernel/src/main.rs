//! The guest test kernel: a Multiboot v1 kernel that runs inside a
//! partition (or directly under QEMU) and reports through the UART and the
//! test-exit port. See the library for the protocol and the tests.
//!
//! A Multiboot loader enters it in 32-bit protected mode; the `.code32`
//! stub (`entry.rs`) builds an identity map of the low 4 GiB, enters long
//! mode and calls [`suite::testkernel_main`], which runs the tests the
//! command line selects. `attacks` is the hostile guest (`tests=hostile`),
//! `canaries` its neighbour's canaries and paced exits.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("guest-testkernel is a Multiboot guest kernel: build it for x86_64-unknown-none.");
}

#[cfg(target_os = "none")]
mod ap;
#[cfg(target_os = "none")]
mod attacks;
#[cfg(target_os = "none")]
mod busy;
#[cfg(target_os = "none")]
mod canaries;
#[cfg(target_os = "none")]
mod checks;
#[cfg(target_os = "none")]
mod entry;
#[cfg(target_os = "none")]
mod fidelity;
#[cfg(target_os = "none")]
mod hw;
#[cfg(target_os = "none")]
mod messaging;
#[cfg(target_os = "none")]
mod monitor;
#[cfg(target_os = "none")]
mod ring3;
#[cfg(target_os = "none")]
mod siblings;
#[cfg(target_os = "none")]
mod smpbench;
#[cfg(target_os = "none")]
mod state_suite;
#[cfg(target_os = "none")]
mod stimer_bench;
#[cfg(target_os = "none")]
mod suite;
#[cfg(target_os = "none")]
mod testdev;
#[cfg(target_os = "none")]
mod timers;
#[cfg(target_os = "none")]
mod tlfs_suite;
#[cfg(target_os = "none")]
mod turns;
#[cfg(target_os = "none")]
mod vsm_suite;
