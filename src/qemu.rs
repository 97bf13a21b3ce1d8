//! QEMU TCG with AMD SVM + NPT.
//!
//! QEMU loads the loader directly (`-kernel`, Multiboot1 ELF32) with the
//! microkernel as the first module (`-initrd "PATH microkernel"`; QEMU
//! gives the module the whole string as its command line). The serial
//! console is QEMU's stdio, which we pipe, echo and log. Without a deadline
//! the run is interactive: stdin stays connected and Ctrl-A X quits.

use std::ffi::OsString;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::boot::{BootError, BootOptions, RunFiles};
use crate::run::{self, Outcome, SerialSource, Supervise};
use crate::{images, ui};

/// I/O port of the `isa-debug-exit` device the kernel writes its status to.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// QEMU's `-initrd` separates modules with commas; a literal comma is `,,`.
fn initrd_escape(s: &str) -> String {
    s.replace(',', ",,")
}

/// The QEMU command line for a boot.
pub fn command(opts: &BootOptions, kernel_options: &[String], interactive: bool) -> Command {
    let kernel = images::kernel_elf().to_string_lossy().into_owned();
    let mut initrd = OsString::from(initrd_escape(&kernel));
    initrd.push(" microkernel");
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-accel", "tcg", "-cpu", "qemu64,+svm,+npt"])
        .arg("-m")
        .arg(format!("{}M", opts.memory_mib))
        .arg("-smp")
        .arg(opts.smp.to_string())
        .args(["-nographic", "-no-reboot"])
        // `mon:` multiplexes stdio so Ctrl-A X quits (and Ctrl-C goes to
        // the guest instead of killing QEMU) when used interactively.
        .args(["-serial", if interactive { "mon:stdio" } else { "stdio" }])
        .args(["-monitor", "none", "-display", "none"])
        .args([
            "-device",
            &format!("isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04"),
        ])
        .arg("-kernel")
        .arg(images::loader_elf32())
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(crate::cmdline::join(kernel_options))
        .args(&opts.qemu_args);
    cmd
}

/// Boot in QEMU and supervise the run.
pub fn boot(
    opts: &BootOptions,
    kernel_options: &[String],
    files: &RunFiles,
) -> Result<Outcome, BootError> {
    let interactive = opts.timeout.is_none();
    let mut cmd = command(opts, kernel_options, interactive);
    ui::note(format!(
        "booting in QEMU (TCG, AMD SVM + NPT): {} CPU(s), {} MiB, kernel options {:?}",
        opts.smp,
        opts.memory_mib,
        crate::cmdline::join(kernel_options)
    ));
    ui::note(format!("$ {}", ui::shell_line(&cmd)));
    ui::note(format!("serial log: {}", files.serial_log.display()));
    match opts.timeout {
        None => ui::note("interactive run: quit QEMU with Ctrl-A X (Ctrl-A H for help)"),
        Some(t) => ui::note(format!(
            "deadline {} s; QEMU is killed if the kernel has not halted by then",
            t.as_secs()
        )),
    }

    // With a deadline the run is unattended: keep QEMU away from the
    // terminal so a kill can never leave it in raw mode.
    cmd.stdin(if interactive {
        Stdio::inherit()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    let mut child = cmd
        .spawn()
        .map_err(|e| BootError::runner(format!("cannot start qemu-system-x86_64: {e}")))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    run::supervise(
        child,
        SerialSource::Pipe(Box::new(stdout)),
        &Supervise {
            deadline: opts.timeout,
            exit_grace: Duration::from_secs(5),
            echo: true,
            serial_log: files.serial_log.clone(),
        },
    )
    .map_err(|e| BootError::runner(format!("supervising QEMU failed: {e}")))
}

/// The status the kernel wrote to isa-debug-exit, from QEMU's exit code
/// `(N << 1) | 1`. A plain exit (e.g. Ctrl-A X, reset) gives 0.
pub fn debug_exit_status(code: i32) -> Option<u8> {
    (code & 1 == 1)
        .then(|| u8::try_from(code >> 1).ok())
        .flatten()
}

/// Compare the marker with QEMU's exit code and warn on a mismatch.
pub fn cross_check(marker_status: u8, outcome: &Outcome) {
    let Some(code) = outcome.emulator_status.and_then(|s| s.code()) else {
        if outcome.killed {
            ui::warn(
                "QEMU did not exit by itself after the halt marker; it was killed (isa-debug-exit not reached?)",
            );
        }
        return;
    };
    match debug_exit_status(code) {
        Some(s) if s == marker_status => {}
        Some(s) => ui::warn(format!(
            "QEMU exit code {code} says the kernel wrote status {s} to port {DEBUG_EXIT_PORT:#x}, but the serial marker says {marker_status}"
        )),
        None => ui::warn(format!(
            "QEMU exited with code {code}, not via isa-debug-exit (expected {})",
            (u32::from(marker_status) << 1) | 1
        )),
    }
}

/// Add what QEMU's exit code tells when the marker is missing.
pub fn explain_exit_without_marker(outcome: &Outcome) {
    if let Some(status) = outcome
        .emulator_status
        .and_then(|s| s.code())
        .and_then(debug_exit_status)
    {
        ui::note(format!(
            "QEMU's exit code says the kernel wrote status {status} ({}) to port {DEBUG_EXIT_PORT:#x}, \
             but its serial line was lost",
            run::status_meaning(status)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_exit_decoding() {
        assert_eq!(debug_exit_status(1), Some(0));
        assert_eq!(debug_exit_status(5), Some(2));
        assert_eq!(debug_exit_status(0), None);
        assert_eq!(debug_exit_status(511), Some(255));
    }

    #[test]
    fn initrd_commas_are_doubled() {
        assert_eq!(initrd_escape("/a,b/k.elf"), "/a,,b/k.elf");
    }
}
