//! Booting Tessera in an emulator: what both emulators share.

use std::path::PathBuf;
use std::time::Duration;

use crate::run::{Ending, Outcome};
use crate::{bochs, cmdline, deps, images, qemu, ui, workdir};

/// Which emulator to boot in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emulator {
    /// QEMU TCG with `-cpu` [`qemu::CPU`]: AMD SVM with nested paging, XSAVE and AVX.
    Qemu,
    /// Bochs `corei7_haswell_4770`: Intel VMX with EPT, booted from a GRUB ISO.
    Bochs,
}

impl Emulator {
    pub fn name(self) -> &'static str {
        match self {
            Emulator::Qemu => "QEMU",
            Emulator::Bochs => "Bochs",
        }
    }

    /// The system packages this emulator needs.
    pub fn requirements(self) -> &'static [&'static [deps::Requirement]] {
        match self {
            Emulator::Qemu => &[deps::QEMU],
            Emulator::Bochs => &[deps::BOCHS, deps::ISO],
        }
    }

    pub fn default_smp(self) -> u32 {
        match self {
            Emulator::Qemu => 2,
            Emulator::Bochs => 1,
        }
    }
}

/// The firmware the machine starts with (QEMU only; Bochs always uses its BIOS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// QEMU's SeaBIOS; the loader is loaded directly as a Multiboot kernel.
    Bios,
    /// OVMF (UEFI), booting the GRUB ISO from a CD-ROM with GRUB's
    /// x86_64-efi image, as a UEFI machine boots it from a stick.
    Uefi,
}

/// Everything a boot needs.
#[derive(Clone, Debug)]
pub struct BootOptions {
    pub emulator: Emulator,
    /// `Uefi` only with [`Emulator::Qemu`].
    pub firmware: Firmware,
    /// Kill the emulator and fail after this long; also adds `exit=idle`.
    pub timeout: Option<Duration>,
    pub smp: u32,
    /// SMT threads per core (QEMU): `smp` CPUs as one socket of
    /// `smp / smp_threads` cores; 1 leaves QEMU's default topology.
    pub smp_threads: u32,
    pub memory_mib: u32,
    /// User kernel options (space separated).
    pub cmdline: String,
    /// Where to write the serial log; default `<run dir>/serial.log`.
    pub serial_log: Option<PathBuf>,
    /// Extra arguments appended to the QEMU command line.
    pub qemu_args: Vec<String>,
    /// The Bochs CPU model; `None`: [`crate::bochs::DEFAULT_CPU`].
    pub bochs_cpu: Option<String>,
    /// QEMU's GDB stub (`--gdb`); `None` for Bochs.
    pub gdb: Option<crate::gdb::Stub>,
    /// Resets the machine may go through, each starting it again (QEMU
    /// then runs without `-no-reboot`); the next one ends the run.
    pub reboots: u32,
}

impl BootOptions {
    /// The system packages this boot needs.
    pub fn requirements(&self) -> &'static [&'static [deps::Requirement]] {
        match (self.emulator, self.firmware) {
            (Emulator::Qemu, Firmware::Uefi) => &[deps::QEMU, deps::OVMF, deps::ISO, deps::ISO_EFI],
            (emulator, _) => emulator.requirements(),
        }
    }

    /// What the run is called in messages and run directory names.
    pub fn name(&self) -> &'static str {
        match (self.emulator, self.firmware) {
            (Emulator::Qemu, Firmware::Uefi) => "QEMU-UEFI",
            (emulator, _) => emulator.name(),
        }
    }
}

/// A runner failure before or around the emulator run, with its exit code.
#[derive(Debug)]
pub struct BootError {
    pub code: i32,
    pub message: String,
}

impl BootError {
    pub fn runner(message: impl Into<String>) -> Self {
        BootError { code: crate::EXIT_RUNNER_ERROR, message: message.into() }
    }
}

/// The files of one run.
pub struct RunFiles {
    pub dir: PathBuf,
    pub serial_log: PathBuf,
}

/// Check tools and images, then boot and supervise; returns the exit code.
pub fn boot(opts: &BootOptions) -> Result<i32, BootError> {
    let (files, words) = prepare(opts)?;
    let outcome = match opts.emulator {
        Emulator::Qemu => qemu::boot(opts, &words, &files)?,
        Emulator::Bochs => bochs::boot(opts, &words, &files)?,
    };
    report(opts, &files, &outcome);
    Ok(outcome.exit_code())
}

/// What every boot does before starting its emulator: checks the system
/// packages and the images, and makes the run directory. Returns the run's
/// files and its kernel options.
pub fn prepare(opts: &BootOptions) -> Result<(RunFiles, Vec<String>), BootError> {
    deps::ensure(opts.requirements(), opts.name())
        .map_err(|e| BootError { code: crate::EXIT_MISSING_TOOLS, message: e.message })?;
    images::check().map_err(BootError::runner)?;

    let dir = workdir::new_run_dir(&opts.name().to_lowercase())
        .map_err(|e| BootError::runner(format!("cannot create a run directory: {e}")))?;
    let serial_log = match &opts.serial_log {
        Some(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| BootError::runner(format!("cannot create {}: {e}", parent.display())))?;
            }
            path.clone()
        }
        None => dir.join("serial.log"),
    };
    let words = cmdline::kernel_options(&opts.cmdline, opts.timeout.is_some());
    Ok((RunFiles { dir, serial_log }, words))
}

fn report(opts: &BootOptions, files: &RunFiles, outcome: &Outcome) {
    let emu = opts.emulator.name();
    let secs = outcome.elapsed.as_secs_f64();
    match outcome.ending {
        Ending::Halted(status) => {
            ui::note(format!(
                "kernel halted with status {status} ({}) after {secs:.1} s",
                crate::run::status_meaning(status)
            ));
            if opts.emulator == Emulator::Qemu {
                qemu::cross_check(status, outcome);
            }
        }
        Ending::TimedOut => {
            ui::error(format!(
                "TIMEOUT: no `tessera: halted status=N` line within {} s; killed {emu} (SIGKILL)",
                opts.timeout.map_or(0, |t| t.as_secs())
            ));
        }
        Ending::Reset(resets) => {
            ui::note(format!(
                "the kernel reset the machine ({resets} resets, {} allowed by --reboots) after {secs:.1} s",
                opts.reboots
            ));
        }
        Ending::NoMarker => {
            let status = outcome.emulator_status.map_or_else(|| "was killed".to_owned(), |s| format!("exited ({s})"));
            let msg = format!(
                "{emu} {status} after {secs:.1} s before the kernel printed `tessera: halted status=N` \
                 ({}a triple fault or reset ends the run)",
                if opts.timeout.is_none() { "quit by the user, or " } else { "" }
            );
            if opts.timeout.is_none() {
                ui::note(msg)
            } else {
                ui::error(msg)
            }
            if opts.emulator == Emulator::Qemu {
                qemu::explain_exit_without_marker(outcome);
            }
        }
    }
    ui::note(format!("serial log: {}", files.serial_log.display()));
    if outcome.ending != Ending::Halted(0) {
        if opts.emulator == Emulator::Bochs {
            ui::note(format!("Bochs files: {} (bochs.log, bochs.out, bochsrc, grub.cfg)", files.dir.display()));
        } else if opts.firmware == Firmware::Uefi {
            ui::note(format!("run files: {} (tessera.iso, grub.cfg)", files.dir.display()));
        }
    }
}
