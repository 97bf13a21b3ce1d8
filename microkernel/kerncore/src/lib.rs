//! Pure logic of the Tessera microkernel and loader.
//!
//! Nothing here touches hardware: page tables are built over a
//! [`paging::PageTableMemory`] the caller provides (real frames through the
//! direct map in ring 0, a hash map in host tests), and memory maps are plain
//! data. That keeps the arch layer thin and this crate testable on the host.
//!
//! The object model lives here too, in fixed-capacity tables the kernel
//! places in static memory: [`cap`] (capability table and derivation tree),
//! [`sched`] (priorities and budgets) and [`ipc`] (the endpoint and
//! notification state machine, which owns the scheduler).
//!
//! For guests: [`slat`] builds second-level tables in either format,
//! [`ept`] (Intel) or [`npt`] (AMD), with the same rules; [`vmx`] and [`svm`]
//! hold the VMCS encodings and the VMCB layout, the controls, and the exit
//! decoders, which describe port accesses alike ([`intercept`]); [`xstate`]
//! and [`debugreg`] the extended and debug state ring 0 switches for them.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod cap;
pub mod cmdline;
pub mod coresched;
pub mod cr;
pub mod debugreg;
pub mod doomed;
pub mod ept;
pub mod event;
#[cfg(feature = "alloc")]
pub mod frames;
pub mod guest_paging;
pub mod intercept;
pub mod ipc;
pub mod mapping;
pub mod mce;
pub mod memmap;
pub mod npt;
pub mod paging;
pub mod portset;
pub mod quota;
pub mod sched;
pub mod slat;
pub mod smp;
pub mod speculation;
pub mod svm;
pub mod tags;
pub mod timer;
pub mod trace;
pub mod virt;
pub mod vmx;
pub mod xstate;
