//! QEMU TCG with AMD SVM + NPT.
//!
//! QEMU loads the loader directly (`-kernel`, Multiboot1 ELF32) with the
//! microkernel as the first module (`-initrd "PATH microkernel"`; QEMU
//! gives the module the whole string as its command line). The serial
//! console is QEMU's stdio, which we pipe, echo and log. Without a deadline
//! the run is interactive: stdin stays connected and Ctrl-A X quits.
//!
//! With `--firmware uefi` QEMU starts OVMF instead (`-bios`), which boots
//! the GRUB ISO (built per run, as for Bochs) from its CD-ROM: the path a
//! UEFI machine takes with a USB stick. OVMF and GRUB also print to the
//! serial console before the loader does.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::boot::{BootError, BootOptions, Firmware, RunFiles};
use crate::run::{self, Outcome, SerialSource, Supervise};
use crate::{deps, images, iso, ui};

/// I/O port of the `isa-debug-exit` device the kernel writes its status to.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// QEMU's `-initrd` separates modules with commas; a literal comma is `,,`.
fn initrd_escape(s: &str) -> String {
    s.replace(',', ",,")
}

/// How QEMU gets to the loader.
#[derive(Clone, Debug)]
pub enum Start {
    /// SeaBIOS, with the loader as a Multiboot kernel and the microkernel
    /// as its module; kernel options go to `-append`.
    Direct,
    /// UEFI firmware (`-bios`) booting a GRUB ISO from the CD-ROM; kernel
    /// options are in the ISO's grub.cfg.
    Uefi { firmware: PathBuf, iso: PathBuf },
}

/// File name of the ISO in the run directory with `--firmware uefi`.
pub const ISO_FILE: &str = "tessera.iso";

/// The OVMF image to pass with `-bios`.
pub fn ovmf() -> Option<&'static Path> {
    deps::OVMF_PATHS.iter().map(Path::new).find(|p| p.is_file())
}

/// The emulated CPU: AMD SVM with nested paging, and XSAVE with AVX (TCG
/// runs AVX since QEMU 7.2), so that ring 0's switching of XCR0 and of
/// state wider than SSE is exercised under SVM too. XSAVEOPT is there for
/// QEMU 7.2's sake: it takes CR4.OSXSAVE for a reserved bit unless
/// CPUID.(EAX=0DH,ECX=1) offers something, and the kernel's write of CR4
/// then never completes.
pub const CPU: &str = "qemu64,+svm,+npt,+xsave,+xsaveopt,+avx";

/// QEMU's `-smp` value: `cpus` alone, or one socket of `cpus / threads`
/// cores of `threads` SMT threads each.
pub fn smp_topology(cpus: u32, threads: u32) -> String {
    if threads <= 1 || !cpus.is_multiple_of(threads) {
        return cpus.to_string();
    }
    format!("{cpus},sockets=1,cores={},threads={threads}", cpus / threads)
}

/// The QEMU command line for a boot.
pub fn command(opts: &BootOptions, kernel_options: &[String], interactive: bool, start: &Start) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-accel", "tcg", "-cpu", CPU])
        .arg("-m")
        .arg(format!("{}M", opts.memory_mib))
        .arg("-smp")
        .arg(smp_topology(opts.smp, opts.smp_threads))
        .arg("-nographic")
        // `mon:` multiplexes stdio so Ctrl-A X quits (and Ctrl-C goes to
        // the guest instead of killing QEMU) when used interactively.
        .args(["-serial", if interactive { "mon:stdio" } else { "stdio" }])
        .args(["-monitor", "none", "-display", "none"])
        .args(["-device", &format!("isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04")]);
    // Without it a reset (the kernel's, or a triple fault) starts the
    // machine again; with it QEMU exits.
    if opts.reboots == 0 {
        cmd.arg("-no-reboot");
    }
    match start {
        Start::Direct => {
            let kernel = images::kernel_elf().to_string_lossy().into_owned();
            let bootfs = images::bootfs().to_string_lossy().into_owned();
            let mut initrd = OsString::from(initrd_escape(&kernel));
            initrd.push(" microkernel,");
            initrd.push(initrd_escape(&bootfs));
            initrd.push(" bootfs");
            cmd.arg("-kernel")
                .arg(images::loader_elf32())
                .arg("-initrd")
                .arg(initrd)
                .arg("-append")
                .arg(crate::cmdline::join(kernel_options));
        }
        Start::Uefi { firmware, iso } => {
            cmd.arg("-bios").arg(firmware).arg("-cdrom").arg(iso);
        }
    }
    if let Some(stub) = &opts.gdb {
        cmd.args(stub.qemu_args());
    }
    cmd.args(&opts.qemu_args);
    cmd
}

/// Boot in QEMU and supervise the run.
pub fn boot(opts: &BootOptions, kernel_options: &[String], files: &RunFiles) -> Result<Outcome, BootError> {
    let interactive = opts.timeout.is_none();
    let start = match opts.firmware {
        Firmware::Bios => Start::Direct,
        Firmware::Uefi => {
            let firmware = ovmf().ok_or_else(|| BootError::runner("no OVMF image found (package ovmf)"))?;
            let t0 = Instant::now();
            let iso = iso::build(kernel_options, &files.dir, &files.dir.join(ISO_FILE)).map_err(BootError::runner)?;
            if !iso.efi {
                return Err(BootError::runner("the ISO has no UEFI boot image (package grub-efi-amd64-bin)"));
            }
            ui::note(format!("built {} (BIOS + UEFI) in {:.1} s", iso.path.display(), t0.elapsed().as_secs_f64()));
            Start::Uefi { firmware: firmware.to_path_buf(), iso: iso.path }
        }
    };
    let mut cmd = command(opts, kernel_options, interactive, &start);
    ui::note(format!(
        "booting in QEMU (TCG, AMD SVM + NPT{}): {} CPU(s), {} MiB, kernel options {:?}",
        match start {
            Start::Direct => "",
            Start::Uefi { .. } => "; UEFI firmware booting the GRUB ISO",
        },
        opts.smp,
        opts.memory_mib,
        crate::cmdline::join(kernel_options)
    ));
    ui::note(format!("$ {}", ui::shell_line(&cmd)));
    ui::note(format!("serial log: {}", files.serial_log.display()));
    if let Some(stub) = &opts.gdb {
        let gdb = stub.command(&crate::gdb::Symbols::built());
        ui::note(format!(
            "GDB stub on 127.0.0.1:{}; the CPUs wait for gdb to continue. In another terminal:",
            stub.port
        ));
        eprintln!("{}", ui::shell_line(&gdb));
        if stub.task.is_some() {
            ui::note("the task's symbols mean something only while its address space (CR3) is active");
        }
        if stub.guest.is_some() {
            ui::note(
                "guest (L2): a breakpoint at a guest address stops there with the guest's registers, but the stub \
                 reads host memory, not the guest's (no nested-paging translation): x, backtraces and variables \
                 of the guest are wrong; the loader's symbols are left out (both at 1 MiB)",
            );
        }
    }
    match opts.timeout {
        None => ui::note("interactive run: quit QEMU with Ctrl-A X (Ctrl-A H for help)"),
        Some(t) => ui::note(format!("deadline {} s; QEMU is killed if the kernel has not halted by then", t.as_secs())),
    }

    // With a deadline the run is unattended: keep QEMU away from the
    // terminal so a kill can never leave it in raw mode.
    cmd.stdin(if interactive { Stdio::inherit() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().map_err(|e| BootError::runner(format!("cannot start qemu-system-x86_64: {e}")))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    run::supervise(
        child,
        SerialSource::Pipe(Box::new(stdout)),
        &Supervise {
            deadline: opts.timeout,
            exit_grace: Duration::from_secs(5),
            resets_allowed: opts.reboots,
            // With -no-reboot QEMU exits at the reset; otherwise it would
            // boot again.
            reset_grace: if opts.reboots == 0 { Duration::from_secs(5) } else { Duration::ZERO },
            echo: true,
            serial_log: files.serial_log.clone(),
            progress: None,
        },
    )
    .map_err(|e| BootError::runner(format!("supervising QEMU failed: {e}")))
}

/// The status the kernel wrote to isa-debug-exit, from QEMU's exit code
/// `(N << 1) | 1`. A plain exit (e.g. Ctrl-A X, reset) gives 0.
pub fn debug_exit_status(code: i32) -> Option<u8> {
    (code & 1 == 1).then(|| u8::try_from(code >> 1).ok()).flatten()
}

/// Compare the marker with QEMU's exit code and warn on a mismatch.
pub fn cross_check(marker_status: u8, outcome: &Outcome) {
    let Some(code) = outcome.emulator_status.and_then(|s| s.code()) else {
        if outcome.killed {
            ui::warn("QEMU did not exit by itself after the halt marker; it was killed (isa-debug-exit not reached?)");
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
    if let Some(status) = outcome.emulator_status.and_then(|s| s.code()).and_then(debug_exit_status) {
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
    fn smp_topology_of_threads() {
        assert_eq!(smp_topology(4, 1), "4");
        assert_eq!(smp_topology(4, 2), "4,sockets=1,cores=2,threads=2");
        // Not a whole number of cores: QEMU's default topology.
        assert_eq!(smp_topology(3, 2), "3");
    }

    #[test]
    fn debug_exit_decoding() {
        assert_eq!(debug_exit_status(1), Some(0));
        assert_eq!(debug_exit_status(5), Some(2));
        assert_eq!(debug_exit_status(0), None);
        assert_eq!(debug_exit_status(511), Some(255));
    }

    fn options(firmware: Firmware) -> BootOptions {
        BootOptions {
            emulator: crate::boot::Emulator::Qemu,
            firmware,
            timeout: None,
            smp: 2,
            smp_threads: 1,
            memory_mib: 256,
            cmdline: String::new(),
            serial_log: None,
            qemu_args: vec!["-nic".into(), "none".into()],
            bochs_cpu: None,
            gdb: None,
            reboots: 0,
        }
    }

    fn args(cmd: &Command) -> Vec<String> {
        cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn direct_start_loads_the_loader_as_kernel() {
        let words = ["exit=idle".to_owned()];
        let cmd = command(&options(Firmware::Bios), &words, false, &Start::Direct);
        let args = args(&cmd);
        assert!(args.windows(2).any(|w| w[0] == "-append" && w[1] == "exit=idle"));
        assert!(args.iter().any(|a| a == "-kernel"));
        assert!(!args.iter().any(|a| a == "-bios" || a == "-cdrom"));
        assert_eq!(args[args.len() - 2..], ["-nic", "none"]);
    }

    #[test]
    fn uefi_start_boots_the_iso_with_ovmf() {
        let start = Start::Uefi { firmware: "/fw/OVMF.fd".into(), iso: "/run/tessera.iso".into() };
        let cmd = command(&options(Firmware::Uefi), &[], true, &start);
        let args = args(&cmd);
        assert!(args.windows(2).any(|w| w[0] == "-bios" && w[1] == "/fw/OVMF.fd"));
        assert!(args.windows(2).any(|w| w[0] == "-cdrom" && w[1] == "/run/tessera.iso"));
        assert!(args.windows(2).any(|w| w[0] == "-serial" && w[1] == "mon:stdio"));
        assert!(!args.iter().any(|a| a == "-kernel" || a == "-append"));
        assert_eq!(args[args.len() - 2..], ["-nic", "none"]);
    }

    #[test]
    fn gdb_stub_waits_on_its_port_before_the_users_arguments() {
        let mut opts = options(Firmware::Bios);
        opts.gdb = Some(crate::gdb::Stub { port: 4321, task: None, guest: None });
        let args = args(&command(&opts, &[], true, &Start::Direct));
        let at = args.iter().position(|a| a == "-gdb").expect("-gdb");
        assert_eq!(args[at..at + 3], ["-gdb", "tcp:127.0.0.1:4321", "-S"]);
        assert_eq!(args[args.len() - 2..], ["-nic", "none"]);
        let plain = command(&options(Firmware::Bios), &[], true, &Start::Direct);
        assert!(!self::args(&plain).iter().any(|a| a == "-gdb" || a == "-S" || a == "-s"));
    }

    #[test]
    fn initrd_commas_are_doubled() {
        assert_eq!(initrd_escape("/a,b/k.elf"), "/a,,b/k.elf");
    }
}
