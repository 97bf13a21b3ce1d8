//! `tessera`: boot Tessera in an emulator, build a bootable ISO, or run the
//! whole test suite. See `tessera --help`.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sysimage::manifest::{MAX_PARTITION_MEMORY, MAX_VCPUS, MIN_PARTITION_MEMORY};

use tessera::boot::{self, BootOptions, Emulator, Firmware};
use tessera::{EXIT_MISSING_TOOLS, EXIT_RUNNER_ERROR, cmdline, deps, gdb, images, iso, linux, suite, ui, workdir};

const EXIT_CODES: &str = "\
Exit status of a boot:
  0..=255  the kernel's own status from its final serial line
           `tessera: halted status=N`: 0 ok, 1 kernel panic,
           2 unhandled CPU exception, 3 self-test failure, 4 the root
           task died (on_supervisor_death = halt)
  123      the kernel reset the machine (its line `tessera: reset`, e.g.
           on_supervisor_death = reboot) once more than --reboots allows
  124      the --timeout deadline passed first; the emulator was killed
  125      the emulator exited without the kernel printing that line
           (e.g. a triple fault: QEMU runs with -no-reboot)
  126      the runner could not prepare or start the emulator
  2        required system tools are missing and could not be installed
           (the exact apt-get command is printed); also used by clap for
           invalid command-line arguments

With --guest, the boot image is the default appliance (or --manifest) plus
a partition named `guest` run by the `vid` task; the generated manifest is
written to target/tessera/images/guest-<ms>-<pid>/guest.toml (with the
bootfs.img made from it). The VID prints the guest's test-exit status on
the serial console as `[vid] guest: guest reported status N` (QEMU's
isa-debug-exit convention: N = (value << 1) | 1), and with --timeout the
run exits with that N once the system halts cleanly; a guest that never
reports one ends the run with 125.

Files of each run go to target/tessera/runs/<emulator>-<ms>-<pid>/
(serial.log; for Bochs also tessera.iso, grub.cfg, bochsrc, bochs.log,
bochs.out; for --firmware uefi also tessera.iso, grub.cfg). The emulator
command line is echoed before it starts.

Examples:
  cargo run                                   boot in QEMU, interactive (Ctrl-A X quits)
  cargo run -- --timeout 60                   boot unattended; exit with the kernel's status
  cargo run -- --emulator bochs --timeout 120 boot on Intel VMX + EPT in Bochs
  cargo run -- --firmware uefi --timeout 60   boot the GRUB ISO in QEMU with UEFI (OVMF)
  cargo run -- --timeout 60 --cmdline test=fault-pf
  cargo run -- --timeout 60 --guest bzImage --guest-module initrd --guest-cmdline console=ttyS0
                                              boot a guest kernel as partition `guest`
  cargo run -- --gdb --gdb-task vid           wait for gdb on port 1234; print the gdb command
  cargo run -- iso --out tessera.iso          bootable ISO for a real machine
  cargo run -- test                           install emulators and run every test
  cargo run -- fuzz --runs 100000             run every fuzz target 100000 times";

/// Runner for Tessera, a capability microhypervisor offering guests the
/// Hyper-V TLFS interface.
///
/// Without a subcommand it boots the loader and microkernel that cargo just
/// built (build.rs) in an emulator, streams the serial console to stdout,
/// records it in a log file and exits with the kernel's halt status.
/// Missing emulator packages are installed with apt-get when running as
/// root; otherwise the command to run is printed.
#[derive(Parser, Debug)]
#[command(name = "tessera", version, after_long_help = EXIT_CODES, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,

    #[command(flatten)]
    boot: BootArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Install the system packages for both emulators, then run the whole
    /// test suite (`cargo test --workspace` under the pinned nightly of
    /// toolchain.toml, installed if missing) and exit with its status.
    ///
    /// Packages that are missing are installed with `apt-get update` and
    /// `apt-get install -y` (as root); nothing is installed when all are
    /// present. Arguments after `--` are passed to `cargo test`, e.g.
    /// `tessera test -- qemu_` to run only the QEMU boot tests. The last
    /// line printed is the total over all test binaries:
    /// `tessera: N passed, N failed, N skipped`.
    Test(TestArgs),
    /// Build a bootable GRUB ISO (BIOS, plus UEFI when grub-efi-amd64-bin
    /// is installed) for booting a real machine from a CD or USB stick.
    ///
    /// Write it to a stick with `dd if=FILE of=/dev/sdX bs=4M conv=fsync`
    /// or copy it onto a Ventoy stick. The kernel's console is COM1;
    /// `exit=idle` is not added unless given in --cmdline.
    Iso(IsoArgs),
    /// Measure costs in instructions: boots each benchmark system
    /// (tests/manifests/bench.toml, hypercall-bench.toml,
    /// messaging-bench.toml and vsm-bench.toml on one CPU,
    /// smp-ipc-bench.toml on two, smp-bench.toml on four) twice in QEMU with
    /// `-icount shift=0`, where rdtsc counts guest instructions, and prints
    /// each figure with whether the two runs agree (exit 1 if a figure is
    /// missing or moves by more than 1%).
    ///
    /// Then stimer-bench.toml, under `-icount shift=0,sleep=off` as the
    /// timer tests: the stimer jitter over 1,000 periodic ticks of 1 ms,
    /// in message and direct mode (lateness and intervals in reference
    /// time; exit 1 if missing, not if the runs differ).
    ///
    /// Then (unless --no-linux) it boots the Linux guest directly in QEMU
    /// TCG and under Tessera, one after the other, and prints the wall time
    /// of each to the shell's answer and their ratio (a minute more).
    Bench(BenchArgs),
    /// The Linux guest: Debian's kernel and a busybox initramfs.
    ///
    /// `fetch` downloads them with apt (cached under target/linux/, keyed
    /// by package version); `direct` boots them directly under QEMU TCG,
    /// without Tessera, as the baseline for comparison.
    Linux(LinuxArgs),
    /// Install what is missing of the pinned nightly (toolchain.toml, with
    /// its components and targets) and print its name.
    ///
    /// The images and the tests build under it by themselves; this is for
    /// your own cargo commands on the workspace (its crates need the
    /// nightly on the host too), e.g.
    /// `rustup override set $(cargo run -q -- toolchain)` once per checkout.
    Toolchain,
    /// Run the coverage-guided fuzz targets (libFuzzer) of `fuzz/`.
    ///
    /// Builds them with coverage instrumentation into target/fuzz/ (the
    /// pinned nightly and the libfuzzer-sys crate; nothing to install),
    /// then runs each target for --runs executions over its corpus
    /// (target/fuzz/corpus/TARGET/, grown by the run) and the committed
    /// seeds (fuzz/seeds/TARGET/), printing progress and, at the end, the
    /// executions, exec/s, crashes and corpus size of each target and a
    /// total. A crashing input is saved in target/fuzz/crashes/TARGET/ and
    /// its path printed, with the command that reproduces it.
    ///
    /// Exit status: 0 no crash, 1 a target crashed (or failed), 126 the
    /// targets could not be built. See docs/FUZZING.md.
    Fuzz(FuzzArgs),
    /// Boot a system of two VIDs, Debian's Linux under one and the guest
    /// test kernel's suite in rounds under the other, while the supervisor
    /// kills a random root service every few seconds (`[system]
    /// soak_kill_every_ms`), for --duration.
    ///
    /// Types `echo soak-N-$((6*7))` at the Linux shell every --probe-every
    /// and checks the answer; prints each kill, recovery, probe and memory
    /// reading as it comes, then the summary: kills, restarts and recovery
    /// time (median, max) per service, the free-memory trend, the Linux
    /// guest's liveness, the test kernel's rounds, ring-0 faults, and a
    /// verdict. Exit status 0 if it passed, 1 if not (docs/RELIABILITY.md).
    Soak(SoakArgs),
    /// Boot with the kernel's trace on (`trace=on`) and print what it
    /// recorded: VM exits per reason and per partition (count, cost, share),
    /// the costliest reasons and details (port, MSR, hypercall code, ...),
    /// syscalls, context switches and a timeline of the last events.
    ///
    /// Without --manifest it boots Linux under Tessera as `linux tessera`
    /// does, to the shell's answer and the power-off, under QEMU's
    /// `-icount shift=0` (costs in guest instructions) unless --no-icount.
    /// The kernel prints its report when the system ends (`exit=idle`).
    /// Exit status: 0, or as for `linux tessera` and a boot; 125 if the
    /// serial log holds no complete report.
    Trace(TraceArgs),
}

#[derive(Args, Debug)]
struct TraceArgs {
    /// Trace this system instead of the Linux boot; it must end by itself
    /// (every thread blocked: `exit=idle`).
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,

    /// Give up (and kill the emulator) after SECONDS.
    #[arg(long, value_name = "SECONDS", default_value_t = 400, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,

    /// Run QEMU without -icount: faster, costs in TSC cycles of the
    /// emulated machine, which vary from run to run.
    #[arg(long)]
    no_icount: bool,

    /// CPUs of the emulated machine.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    smp: u32,

    /// Virtual processors of the Linux guest (VP i on CPU i mod --smp).
    #[arg(long, value_name = "N", default_value_t = 1, conflicts_with = "manifest",
          value_parser = clap::value_parser!(u8).range(1..=i64::from(MAX_VCPUS)))]
    vcpus: u8,

    /// Events shown in the timeline.
    #[arg(long, value_name = "N", default_value_t = 40)]
    timeline: usize,

    /// Write the serial console to FILE [default:
    /// target/tessera/runs/trace-<ms>-<pid>/serial.log].
    #[arg(long, value_name = "FILE")]
    serial_log: Option<PathBuf>,

    /// Boot nothing: decode the report in this serial log (of a boot with
    /// `--cmdline trace=on` that ended by itself, say).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["manifest", "serial_log"])]
    decode: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct SoakArgs {
    /// How long the supervisor kills services (e.g. 60s, 10m); then the
    /// runner waits up to 150 s for each guest to show it is alive after
    /// its VID's last kill.
    #[arg(long, value_name = "TIME", default_value = "10m", value_parser = tessera::soak::parse_duration)]
    duration: std::time::Duration,

    /// How often a random service is killed, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=3_600_000))]
    kill_every: u32,

    /// How often the Linux shell is asked (once the last probe was answered).
    #[arg(long, value_name = "TIME", default_value = "10s", value_parser = tessera::soak::parse_duration)]
    probe_every: std::time::Duration,

    /// Where to write the serial log [default: a new run directory].
    #[arg(long, value_name = "FILE")]
    serial_log: Option<PathBuf>,

    /// Copy the serial output to stdout as well.
    #[arg(long)]
    echo: bool,
}

#[derive(Args, Debug)]
struct FuzzArgs {
    /// Executions per target.
    #[arg(long, value_name = "N", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,

    /// Run only this target (repeatable) [default: all]: hypercall,
    /// synthetic_msr, x86decode, manifest, sysimage, multiboot_loader,
    /// linux_loader, tlfs_message, cap_table, ipc.
    #[arg(long = "target", value_name = "NAME")]
    targets: Vec<String>,

    /// Targets fuzzed at the same time (one process each).
    #[arg(long, value_name = "J", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    jobs: u64,

    /// Where the corpora, crashes and logs go [default: target/fuzz].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct LinuxArgs {
    #[command(subcommand)]
    command: LinuxCmd,
}

#[derive(Subcommand, Debug)]
enum LinuxCmd {
    /// Download Debian's kernel (the package linux-image-amd64 depends on)
    /// and busybox-static with `apt-get download`, extract the bzImage and
    /// busybox with `dpkg-deb -x` and build a gzip'd newc initramfs whose
    /// /init mounts proc, sys and devtmpfs, prints a marker and starts a
    /// shell on the console. Idempotent: cached files are reused. Needs
    /// apt (runs `apt-get update` when its lists are missing, as root).
    Fetch,
    /// Fetch if needed, then boot the kernel and initramfs directly in QEMU
    /// (TCG, -cpu qemu64), wait for the shell, run `echo tessera-$((6*7))`,
    /// check for `tessera-42`, power off, and print the wall times.
    ///
    /// Exit status: 0 ok, 124 an expected line did not come in time, 125
    /// QEMU ended first, 126 QEMU or the fetch failed, 2 missing tools.
    Direct(DirectArgs),
    /// Fetch if needed, then boot Tessera with the kernel and initramfs as
    /// partition `guest` (as `--guest linux`: Hyper-V enlightenments, 256
    /// MiB) in QEMU (TCG, AMD SVM + NPT), type the same command at the
    /// guest's shell through the VID's COM1, power the guest off, wait for
    /// `tessera: halted status=0`, and print the wall times.
    ///
    /// Exit status as for `direct`. `--emulator bochs` is refused: Bochs
    /// runs have an output-only COM1.
    Tessera(TesseraArgs),
}

/// What `linux direct` and `linux tessera` share.
#[derive(Args, Debug)]
struct LinuxRunArgs {
    /// Give up (and kill the emulator) after SECONDS.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,

    /// Also write the serial console to FILE [default:
    /// target/tessera/runs/linux-<direct|tessera>-<ms>-<pid>/serial.log].
    #[arg(long, value_name = "FILE")]
    serial_log: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct DirectArgs {
    #[command(flatten)]
    run: LinuxRunArgs,

    /// Guest RAM in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 512, value_parser = clap::value_parser!(u32).range(128..=65536))]
    memory: u32,

    /// Extra kernel options after `console=ttyS0 panic=-1`, e.g. "quiet".
    #[arg(long, value_name = "ARGS", default_value = "", allow_hyphen_values = true)]
    append: String,
}

#[derive(Args, Debug)]
struct TesseraArgs {
    #[command(flatten)]
    run: LinuxRunArgs,

    /// Emulator to boot Tessera in (only `qemu` can type at the guest).
    #[arg(long, value_enum, default_value_t = EmulatorArg::Qemu)]
    emulator: EmulatorArg,

    /// Virtual processors of the guest partition; the guest must count
    /// them (`nproc`).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=i64::from(MAX_VCPUS)))]
    vcpus: u8,

    /// CPUs of the emulated machine [default: 2 for qemu, 1 for bochs]; the
    /// VID puts VP i on CPU i mod N.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=16))]
    smp: Option<u32>,

    /// After the first answers, type `reboot -f`: the partition restarts
    /// (its manifest's on_reset) and the shell of the second boot must
    /// answer too (qemu only).
    #[arg(long)]
    reboot: bool,
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// The benchmark system to boot, on one CPU [default: the systems of
    /// tests/manifests/ named above, in this repository, wherever it is run
    /// from].
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,

    /// Skip the Linux comparison (the guest's boot to its shell's answer,
    /// directly in QEMU TCG and under Tessera: wall time, a minute more).
    #[arg(long)]
    no_linux: bool,
}

#[derive(Args, Debug)]
struct BootArgs {
    /// Emulator to boot in: `qemu` (TCG, AMD SVM + NPT; direct Multiboot
    /// load) or `bochs` (Intel VMX + EPT; boots a GRUB ISO built per run).
    #[arg(long, value_enum, default_value_t = EmulatorArg::Qemu)]
    emulator: EmulatorArg,

    /// Firmware (qemu only): `bios` (SeaBIOS; the loader is loaded directly
    /// as a Multiboot kernel) or `uefi` (OVMF, package ovmf, booting a GRUB
    /// ISO built per run from the CD-ROM, as a UEFI machine boots it; kernel
    /// options go on the multiboot2 line of its grub.cfg).
    #[arg(long, value_enum, default_value_t = FirmwareArg::Bios)]
    firmware: FirmwareArg,

    /// Give up after SECONDS: the emulator is killed (SIGKILL), a message is
    /// printed and the exit status is 124. Also adds the kernel option
    /// `exit=idle` (unless --cmdline has an `exit=` option), so the system
    /// powers off with its own status once it has nothing left to run.
    /// Without --timeout the run is interactive and unbounded (QEMU: quit
    /// with Ctrl-A X).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    timeout: Option<u64>,

    /// Number of CPUs [default: 2 for qemu, 1 for bochs].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    smp: Option<u32>,

    /// SMT threads per core of the emulated machine (QEMU only): with 2 and
    /// `--smp 4`, one socket of 2 cores x 2 threads.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4))]
    smp_threads: u32,

    /// Guest RAM in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256, value_parser = clap::value_parser!(u32).range(32..=65536))]
    memory: u32,

    /// Extra kernel options, space separated, e.g. "test=fault-pf"
    /// (deliberate page fault on an unmapped address) or "test=fault-wp"
    /// (write to kernel text). Passed with -append (QEMU) or on the
    /// multiboot2 line of grub.cfg (Bochs, --firmware uefi).
    #[arg(long, value_name = "ARGS", default_value = "", allow_hyphen_values = true)]
    cmdline: String,

    /// Also write the serial console to FILE (parent directories are
    /// created) [default: target/tessera/runs/<run>/serial.log].
    #[arg(long, value_name = "FILE")]
    serial_log: Option<PathBuf>,

    /// Boot the system described by this manifest instead of the default
    /// appliance (`system.toml`); see docs/MANIFEST.md. It is validated and
    /// packed with the task binaries cargo built.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,

    /// Boot FILE (a guest kernel: Multiboot or a Linux bzImage) as
    /// partition `guest`, run by the `vid` task, beside the default
    /// appliance (or --manifest): a manifest with `[partitions.guest]` is
    /// generated (the partition manager gets guest memory + 1 MiB of untyped
    /// memory for it), written next to its boot image, and booted like
    /// --manifest. `--guest linux` is Debian's kernel with the busybox
    /// initramfs (`linux fetch`), the Hyper-V enlightenments and 256 MiB.
    #[arg(long, value_name = "FILE")]
    guest: Option<PathBuf>,

    /// The guest's enlightenment profile ("none", "hyperv" or "hyperv-vsm"; see
    /// docs/MANIFEST.md) [none; "hyperv" for `--guest linux`].
    #[arg(long, value_name = "PROFILE", requires = "guest")]
    guest_enlightenments: Option<String>,

    /// A boot module for the guest, e.g. an initrd (repeatable, at most 4, in order).
    #[arg(long = "guest-module", value_name = "FILE", requires = "guest")]
    guest_modules: Vec<PathBuf>,

    /// The guest kernel's command line.
    #[arg(long, value_name = "ARGS", default_value = "", allow_hyphen_values = true, requires = "guest")]
    guest_cmdline: String,

    /// Guest RAM of the partition in MiB (2..=3072); the emulator's --memory
    /// must leave room for it.
    #[arg(long, value_name = "MIB", default_value_t = 64, requires = "guest",
          value_parser = clap::value_parser!(u32).range((MIN_PARTITION_MEMORY >> 20) as i64..=(MAX_PARTITION_MEMORY >> 20) as i64))]
    guest_memory: u32,

    /// Virtual processors of the guest partition (1..=16).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "guest",
          value_parser = clap::value_parser!(u8).range(1..=i64::from(MAX_VCPUS)))]
    vcpus: u8,

    /// Append ARG to the QEMU command line (repeatable), e.g.
    /// `--qemu-arg=-d --qemu-arg=int,cpu_reset --qemu-arg=-D --qemu-arg=qemu.log`.
    #[arg(long = "qemu-arg", value_name = "ARG", allow_hyphen_values = true)]
    qemu_args: Vec<String>,

    /// Start QEMU with its GDB stub on 127.0.0.1:PORT [default port: 1234],
    /// its CPUs stopped until gdb continues, and print the `gdb` command
    /// that attaches with the symbols of the loader and the microkernel
    /// (and of --gdb-task). The stub sees the hypervisor (L1): see the
    /// README's "Debugging". QEMU only (Debian's Bochs has no stub).
    #[arg(long, value_name = "PORT", num_args = 0..=1, default_missing_value = "1234")]
    gdb: Option<u16>,

    /// With --gdb: also load the symbols of this ring-3 task (e.g. `vid`),
    /// meaningful while its address space (CR3) is active.
    #[arg(long, value_name = "TASK", requires = "gdb")]
    gdb_task: Option<String>,

    /// With --gdb: also load the symbols of this guest kernel ELF (e.g. the
    /// --guest image, or a vmlinux), in place of the loader's. Under QEMU
    /// TCG a breakpoint at a guest address stops in the guest with its
    /// registers; memory reads are not the guest's (see the README).
    #[arg(long, value_name = "ELF", requires = "gdb")]
    gdb_guest: Option<PathBuf>,

    /// Let the machine reset N times, each starting it again through the
    /// firmware (QEMU then runs without -no-reboot); the kernel's next
    /// reset ends the run with status 123 [default: 0, the first does].
    #[arg(long, value_name = "N", default_value_t = 0)]
    reboots: u32,

    /// Bochs' CPU model (`bochs --help cpu` lists them) [default:
    /// corei7_haswell_4770], e.g. tigerlake, whose CPUID and
    /// ARCH_CAPABILITIES call for IBPB and VERW.
    #[arg(long, value_name = "MODEL")]
    bochs_cpu: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum EmulatorArg {
    Qemu,
    Bochs,
}

impl From<EmulatorArg> for Emulator {
    fn from(arg: EmulatorArg) -> Self {
        match arg {
            EmulatorArg::Qemu => Emulator::Qemu,
            EmulatorArg::Bochs => Emulator::Bochs,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FirmwareArg {
    Bios,
    Uefi,
}

#[derive(Args, Debug)]
struct TestArgs {
    /// Arguments passed on to `cargo test --workspace` (after `--`).
    #[arg(last = true, value_name = "CARGO_TEST_ARGS")]
    cargo_args: Vec<String>,
}

#[derive(Args, Debug)]
struct IsoArgs {
    /// Where to write the ISO image.
    #[arg(long, short, value_name = "FILE")]
    out: PathBuf,

    /// Kernel options for the multiboot2 line of grub.cfg, space separated.
    #[arg(long, value_name = "ARGS", default_value = "", allow_hyphen_values = true)]
    cmdline: String,

    /// Put the system described by this manifest on the ISO instead of the
    /// default appliance (`system.toml`).
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
}

/// Makes `base` (or the default appliance) plus `guest` the boot image of
/// this run; false on error.
/// Makes `guest` a partition of `base` (or the default appliance) and that
/// the boot image of this run; returns the guest RAM of all the image's
/// partitions, or `None` on error.
fn choose_guest(base: Option<&std::path::Path>, guest: &images::Guest) -> Option<u64> {
    let base = base.unwrap_or(images::default_manifest());
    let dir = workdir::tessera_dir().join("images").join(workdir::unique_name("guest"));
    match images::use_guest(base, guest, &dir) {
        Ok((manifest, image, ram)) => {
            ui::note(format!(
                "guest {} as partition \"{}\" ({} MiB, {} vCPU): manifest {}, boot image {}",
                guest.image.display(),
                images::GUEST_PARTITION,
                guest.memory_mib,
                guest.vcpus,
                manifest.display(),
                image.display()
            ));
            Some(ram)
        }
        Err(e) => {
            ui::error(e);
            None
        }
    }
}

/// Makes `manifest` (if given) the boot image of this run; returns the
/// guest RAM of all its partitions (the default appliance has none), or
/// `None` on error.
fn choose_manifest(manifest: Option<&std::path::Path>) -> Option<u64> {
    let Some(manifest) = manifest else {
        return Some(0);
    };
    let dir = workdir::tessera_dir().join("images").join(workdir::unique_name("manifest"));
    match images::use_manifest(manifest, &dir) {
        Ok((path, ram)) => {
            ui::note(format!("boot image from {}: {}", manifest.display(), path.display()));
            Some(ram)
        }
        Err(e) => {
            ui::error(e);
            None
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        None => run_boot(cli.boot),
        Some(Cmd::Test(args)) => run_tests(args),
        Some(Cmd::Iso(args)) => run_iso(args),
        Some(Cmd::Bench(args)) => tessera::bench::run(args.manifest.as_deref(), !args.no_linux),
        Some(Cmd::Linux(args)) => run_linux(args),
        Some(Cmd::Toolchain) => match tessera::toolchain::bring() {
            Ok(pin) => {
                println!("{}", pin.channel);
                0
            }
            Err(e) => {
                ui::error(e);
                EXIT_RUNNER_ERROR
            }
        },
        Some(Cmd::Soak(args)) => run_soak(args),
        Some(Cmd::Trace(args)) => tessera::trace::run(&tessera::trace::Options {
            manifest: args.manifest,
            timeout: Duration::from_secs(args.timeout),
            icount: !args.no_icount,
            smp: args.smp,
            vcpus: args.vcpus,
            timeline: args.timeline,
            serial_log: args.serial_log,
            decode: args.decode,
        }),
        Some(Cmd::Fuzz(args)) => tessera::fuzz::run(&tessera::fuzz::Options {
            runs: args.runs,
            targets: args.targets,
            jobs: args.jobs as usize,
            out: args.out.unwrap_or_else(tessera::fuzz::default_out),
        }),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn run_soak(args: SoakArgs) -> i32 {
    let opts = tessera::soak::Options {
        duration: args.duration,
        kill_every_ms: args.kill_every,
        probe_every: args.probe_every,
        serial_log: args.serial_log,
        echo: args.echo,
    };
    match tessera::soak::run(&opts) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            ui::error(e);
            EXIT_RUNNER_ERROR
        }
    }
}

/// Exit code for an invalid combination of options (as clap uses).
const EXIT_USAGE: i32 = 2;

fn run_boot(args: BootArgs) -> i32 {
    let emulator = Emulator::from(args.emulator);
    let firmware = match args.firmware {
        FirmwareArg::Bios => Firmware::Bios,
        FirmwareArg::Uefi => Firmware::Uefi,
    };
    if emulator == Emulator::Bochs && firmware == Firmware::Uefi {
        ui::error("--firmware uefi needs --emulator qemu (Bochs boots with its own BIOS)");
        return EXIT_USAGE;
    }
    let chosen = match &args.guest {
        Some(image) => {
            let mut guest = images::Guest {
                image: image.clone(),
                modules: args.guest_modules.clone(),
                cmdline: args.guest_cmdline.clone(),
                memory_mib: args.guest_memory,
                vcpus: args.vcpus,
                enlightenments: args.guest_enlightenments.clone().unwrap_or_default(),
            };
            if image.as_os_str() == "linux" {
                match linux::fetch() {
                    Ok(fetched) => linux::as_partition(&fetched, &mut guest),
                    Err(e) => {
                        ui::error(&e.message);
                        return if e.missing_tool { EXIT_MISSING_TOOLS } else { EXIT_RUNNER_ERROR };
                    }
                }
            }
            choose_guest(args.manifest.as_deref(), &guest)
        }
        None => choose_manifest(args.manifest.as_deref()),
    };
    let Some(ram) = chosen else {
        return EXIT_USAGE;
    };
    // The machine holds the partitions' RAM and the system beside it.
    let mut machine_mib = args.memory;
    let needed = images::machine_mib(ram);
    if machine_mib < needed {
        ui::note(format!(
            "the machine gets {needed} MiB of memory: the partitions' {} MiB of RAM and the system's {}",
            ram >> 20,
            images::SYSTEM_MIB
        ));
        machine_mib = needed;
    }
    let gdb = match args.gdb {
        None => None,
        Some(_) if emulator == Emulator::Bochs => {
            ui::error("--gdb needs --emulator qemu: Debian's Bochs is built without its GDB stub (--enable-gdb-stub)");
            return EXIT_USAGE;
        }
        Some(_) if args.gdb_guest.as_ref().is_some_and(|elf| !elf.is_file()) => {
            ui::error(format!(
                "--gdb-guest: no such file {}",
                args.gdb_guest.as_ref().map_or("".into(), |p| p.display().to_string())
            ));
            return EXIT_USAGE;
        }
        Some(port) => {
            let task = match args.gdb_task.as_deref().map(|name| gdb::task_elf(images::task_dir(), name)).transpose() {
                Ok(task) => task,
                Err(e) => {
                    ui::error(e);
                    return EXIT_USAGE;
                }
            };
            Some(gdb::Stub { port, task, guest: args.gdb_guest.clone() })
        }
    };
    if emulator == Emulator::Bochs && !args.qemu_args.is_empty() {
        ui::warn("--qemu-arg is ignored with --emulator bochs");
    }
    if emulator == Emulator::Qemu && args.bochs_cpu.is_some() {
        ui::warn("--bochs-cpu is ignored with --emulator qemu");
    }
    // A guest run reports the guest's status: read it from the serial log.
    let guest_run = args.guest.is_some() && args.timeout.is_some();
    let serial_log = match (&args.serial_log, guest_run) {
        (Some(path), _) => Some(path.clone()),
        (None, true) => workdir::new_run_dir("guest-serial").ok().map(|d| d.join("serial.log")),
        (None, false) => None,
    };
    let opts = BootOptions {
        emulator,
        firmware,
        timeout: args.timeout.map(Duration::from_secs),
        smp: args.smp.unwrap_or(emulator.default_smp()),
        smp_threads: args.smp_threads,
        memory_mib: machine_mib,
        cmdline: args.cmdline,
        serial_log: serial_log.clone(),
        qemu_args: args.qemu_args,
        bochs_cpu: args.bochs_cpu,
        gdb,
        reboots: args.reboots,
    };
    let code = match boot::boot(&opts) {
        Ok(code) => code,
        Err(e) => {
            ui::error(e.message);
            return e.code;
        }
    };
    if !guest_run || code != 0 {
        return code;
    }
    let serial = serial_log.and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
    match guest_status(&serial) {
        Some(status) => {
            ui::note(format!("the guest reported status {status}"));
            status
        }
        None => {
            ui::error("the guest reported no status through the test-exit port");
            tessera::EXIT_NO_MARKER
        }
    }
}

/// The status the VID saw the `guest` partition report, if it did.
fn guest_status(serial: &str) -> Option<i32> {
    const MARKER: &str = "[vid] guest: guest reported status ";
    let line = serial.lines().rev().find(|l| l.contains(MARKER))?;
    let rest = &line[line.find(MARKER)? + MARKER.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse::<u64>().ok().map(|n| i32::try_from(n.min(255)).unwrap_or(255))
}

fn run_tests(args: TestArgs) -> i32 {
    ui::note("==> tessera test: checking system packages for QEMU, OVMF, Bochs and the fuzz targets");
    // ISO_EFI too, so `tessera iso` in the tests never installs anything.
    // OVMF for the UEFI boot test (`--firmware uefi`); g++ for the fuzz
    // targets' smoke pass.
    let groups = [deps::QEMU, deps::BOCHS, deps::ISO, deps::ISO_EFI, deps::OVMF, deps::FUZZ];
    if let Err(e) = deps::ensure(&groups, "the test suite") {
        ui::error(e.message);
        return EXIT_MISSING_TOOLS;
    }
    ui::note("all emulator packages present");
    // The workspace's crates need the pinned nightly on the host too.
    let cargo = match tessera::toolchain::bring() {
        Ok(pin) => pin.cargo(tessera::toolchain::rustup().as_deref()),
        Err(e) => {
            ui::error(e);
            return EXIT_RUNNER_ERROR;
        }
    };
    match suite::cargo_test(cargo, &args.cargo_args) {
        Ok((status, tally)) => {
            if status.success() {
                ui::note("==> test suite passed");
            } else {
                ui::error(format!("==> test suite failed ({status})"));
            }
            if tally.binaries > 0 {
                // The grand total, last on stdout: per-binary summaries end
                // with doc-test runs that usually say `0 passed`.
                println!("{}", tally.closing_line());
            }
            status.code().unwrap_or(1)
        }
        Err(e) => {
            ui::error(format!("cannot run cargo test: {e}"));
            EXIT_RUNNER_ERROR
        }
    }
}

/// `tessera linux fetch`, `tessera linux direct` and `tessera linux tessera`.
fn run_linux(args: LinuxArgs) -> i32 {
    let guest = match linux::fetch() {
        Ok(guest) => guest,
        Err(e) => {
            ui::error(e.message);
            return if e.missing_tool { EXIT_MISSING_TOOLS } else { EXIT_RUNNER_ERROR };
        }
    };
    ui::note(format!("kernel:    {} ({} {})", guest.kernel.display(), guest.kernel_package, guest.kernel_version));
    ui::note(format!("initramfs: {} (busybox-static {})", guest.initramfs.display(), guest.busybox_version));
    let (what, result) = match args.command {
        LinuxCmd::Fetch => return 0,
        LinuxCmd::Direct(args) => {
            if let Err(e) = deps::ensure(&[deps::QEMU], "booting Linux in QEMU") {
                ui::error(e.message);
                return EXIT_MISSING_TOOLS;
            }
            let Some(run) = linux_run_options(args.run, "linux-direct") else {
                return EXIT_RUNNER_ERROR;
            };
            let opts = linux::DirectOptions { memory_mib: args.memory, append: args.append, run };
            (format!("direct boot (QEMU TCG, -cpu qemu64, {} MiB)", args.memory), linux::direct(&guest, &opts))
        }
        LinuxCmd::Tessera(args) => {
            let Some(run) = linux_run_options(args.run, "linux-tessera") else {
                return EXIT_RUNNER_ERROR;
            };
            let emulator = Emulator::from(args.emulator);
            let smp = args.smp.unwrap_or(emulator.default_smp());
            let what = format!(
                "Tessera boot ({}, {smp} CPU{}, partition of {} MiB, {} VP{})",
                emulator.name(),
                if smp == 1 { "" } else { "s" },
                linux::PARTITION_MIB,
                args.vcpus,
                if args.vcpus == 1 { "" } else { "s" }
            );
            let opts = linux::TesseraOptions {
                emulator,
                vcpus: args.vcpus,
                smp,
                reboot: args.reboot,
                cmdline: String::new(),
                qemu_args: Vec::new(),
                run,
            };
            (what, linux::tessera(&guest, &opts))
        }
    };
    println!();
    match result {
        Ok(run) => {
            ui::note(linux::summary(&what, &run));
            0
        }
        Err(linux::DirectError::Start(e)) => {
            ui::error(e);
            EXIT_RUNNER_ERROR
        }
        Err(linux::DirectError::Boot(e)) => {
            ui::error(e.message);
            e.code
        }
        Err(linux::DirectError::Expect(e)) => {
            ui::error(format!("the Linux guest did not answer: {e}"));
            if e.closed { tessera::EXIT_NO_MARKER } else { tessera::EXIT_TIMEOUT }
        }
    }
}

/// The console options of a `linux` boot; the serial log goes to a new run
/// directory `<prefix>-<ms>-<pid>` unless given.
fn linux_run_options(args: LinuxRunArgs, prefix: &str) -> Option<linux::RunOptions> {
    let serial_log = match args.serial_log {
        Some(path) => path,
        None => match workdir::new_run_dir(prefix) {
            Ok(dir) => dir.join("serial.log"),
            Err(e) => {
                ui::error(format!("cannot create a run directory: {e}"));
                return None;
            }
        },
    };
    if let Some(parent) = serial_log.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    Some(linux::RunOptions { timeout: Duration::from_secs(args.timeout), echo: true, serial_log })
}

fn run_iso(args: IsoArgs) -> i32 {
    if choose_manifest(args.manifest.as_deref()).is_none() {
        return EXIT_USAGE;
    }
    if let Err(e) = deps::ensure(&[deps::ISO], "building an ISO") {
        ui::error(e.message);
        return EXIT_MISSING_TOOLS;
    }
    if !deps::ISO_EFI.iter().all(deps::Requirement::is_met) {
        if deps::is_root() && deps::find_command("apt-get").is_some() {
            if let Err(e) = deps::ensure(&[deps::ISO_EFI], "a UEFI-bootable ISO") {
                ui::warn(format!("{}; building a BIOS-only ISO", e.message));
            }
        } else {
            ui::warn(format!(
                "GRUB's UEFI modules are missing, so the ISO boots on BIOS only; for UEFI run:\n    {}",
                deps::install_hint(&["grub-efi-amd64-bin"])
            ));
        }
    }
    if let Err(e) = images::check() {
        ui::error(e);
        return EXIT_RUNNER_ERROR;
    }
    let staging = match workdir::new_run_dir("iso") {
        Ok(dir) => dir,
        Err(e) => {
            ui::error(format!("cannot create a staging directory: {e}"));
            return EXIT_RUNNER_ERROR;
        }
    };
    let words = cmdline::kernel_options(&args.cmdline, false);
    match iso::build(&words, &staging, &args.out) {
        Ok(iso) => {
            ui::note(format!(
                "wrote {} ({}); kernel options {:?}",
                iso.path.display(),
                if iso.efi { "boots on BIOS and UEFI" } else { "boots on BIOS only" },
                cmdline::join(&words)
            ));
            ui::note(format!(
                "write it to a USB stick with: dd if={} of=/dev/sdX bs=4M conv=fsync status=progress",
                ui::shell_word(iso.path.as_os_str())
            ));
            0
        }
        Err(e) => {
            ui::error(e);
            EXIT_RUNNER_ERROR
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}

#[cfg(test)]
mod guest_status_tests {
    use super::guest_status;

    #[test]
    fn the_last_reported_status_counts() {
        let serial = "[vid] guest: guest reported status 3 after 9 exits\nnoise\n[vid] guest: guest reported status 1 after 12 exits\n";
        assert_eq!(guest_status(serial), Some(1));
        assert_eq!(guest_status("[vid] demo: guest reported status 1"), None);
        assert_eq!(guest_status("[vid] guest: guest reported status 999999"), Some(255));
        assert_eq!(guest_status(""), None);
    }
}
