//! The VID's logic, host-tested: the guest loaders (Multiboot, Linux), the
//! guest's ACPI tables and PM1 registers ([`acpi`]), the
//! exit handlers ([`exits`]: port I/O, MMIO with instruction decoding,
//! CPUID, MSRs, HLT, hypercalls), the interrupt controllers and timers
//! ([`irq`]), the TLFS enlightenments ([`profile`], [`synthetic`],
//! [`hypercall`]; VSM's state in [`vsm`], not yet wired), the COM1
//! 16550A ([`uart`]), and the exit loop that runs them and answers the
//! `vid` interface ([`serve`], over the kernel and services of [`host`]).
//! The task (`main.rs`, `partitions.rs`) sets the partitions up and
//! implements [`host`]'s traits.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod acpi;
pub mod bus;
pub mod cpuid;
pub mod entry;
pub mod exits;
pub mod guest;
pub mod host;
pub mod hypercall;
pub mod irq;
pub mod linux;
pub mod loader;
pub mod logs;
pub mod messaging;
pub mod mmio;
pub mod monitor;
pub mod msr;
pub mod overlay;
pub mod placement;
pub mod portio;
pub mod profile;
pub mod reset_ports;
pub mod root;
pub mod rtc;
pub mod serve;
pub mod synic;
pub mod synthetic;
pub mod testdev;
pub mod translate;
pub mod uart;
pub mod vsm;
