//! Host-side runner for Tessera: boots the loader and microkernel that
//! `build.rs` produced in QEMU (TCG, AMD SVM + NPT) or Bochs (Intel VMX +
//! EPT), streams and records the serial console, enforces a deadline and
//! turns the kernel's `tessera: halted status=N` marker into an exit code.
//!
//! The binary (`src/main.rs`) is only the command line; everything it does
//! lives in these modules so that integration tests can reuse the pieces.

#![forbid(unsafe_code)]

pub mod bench;
pub mod bochs;
pub mod boot;
pub mod cmdline;
pub mod console;
pub mod cpio;
pub mod deps;
pub mod fuzz;
pub mod gdb;
pub mod images;
pub mod iso;
pub mod linux;
pub mod progress;
pub mod qemu;
pub mod run;
pub mod soak;
pub mod suite;
pub mod toolchain;
pub mod trace;
pub mod ui;
pub mod workdir;

/// Exit code: the kernel reset the machine (its line `tessera: reset`) once
/// more than `--reboots` allows.
pub const EXIT_RESET: i32 = 123;
/// Exit code: the deadline passed before the kernel printed its halt marker.
pub const EXIT_TIMEOUT: i32 = 124;
/// Exit code: the emulator stopped without the kernel's halt marker.
pub const EXIT_NO_MARKER: i32 = 125;
/// Exit code: the runner could not prepare or start the emulator.
pub const EXIT_RUNNER_ERROR: i32 = 126;
/// Exit code: required system tools are missing and could not be installed.
pub const EXIT_MISSING_TOOLS: i32 = 2;
