//! `tessera bench`: cost figures in instructions.
//!
//! The benchmark systems ([`DEFAULT_SYSTEMS`]) run under QEMU with
//! `-icount shift=0`, where rdtsc advances once per guest instruction, so a
//! cycle count read by the benchmark task is an instruction count and the
//! same build gives the same figure on every run. The runner boots each
//! twice and reports whether the two runs agree. The systems that time
//! what crosses CPUs boot with several CPUs, which QEMU then runs in turn
//! on one host thread (icount allows no other way): a figure read across
//! CPUs counts the instructions every CPU ran meanwhile.
//!
//! Unless `--no-linux`, it then boots the Linux guest (`tessera linux direct`,
//! then `tessera linux tessera`: same kernel, initramfs and RAM) and
//! compares the wall time each takes to the shell's answer. That figure is
//! wall time on this machine, so it moves with the machine's load.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::boot::{self, BootOptions, Emulator, Firmware};
use crate::linux::{self, DirectError, DirectOptions, RunOptions, TesseraOptions};
use crate::progress::Progress;
use crate::{images, ui, workdir};

/// One figure the benchmark task printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Figure {
    pub what: String,
    pub mean: u64,
    pub min: u64,
}

/// Parses `bench: <what>: <mean> cycles (min <min>) ...` lines.
pub fn parse(serial: &str) -> Vec<Figure> {
    serial
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find("bench: ")? + "bench: ".len()..];
            let (what, numbers) = rest.rsplit_once(": ")?;
            let mean = numbers.split(' ').next()?.parse().ok()?;
            let min = numbers.split("(min ").nth(1)?.split(')').next()?.parse().ok()?;
            Some(Figure { what: what.to_string(), mean, min })
        })
        .collect()
}

/// One mode's stimer jitter figure (`bench: stimer lateness (<mode>): ...`
/// and `bench: stimer intervals (<mode>): ...`), in 100 ns units of
/// reference time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jitter {
    pub mode: String,
    pub ticks: u64,
    pub early: u64,
    pub late_mean: u64,
    pub late_max: u64,
    pub interval_min: u64,
    pub interval_max: u64,
    pub interval_sd: u64,
}

/// The numbers of `bench: stimer <kind> (<mode>): ...` lines, by mode.
fn stimer_lines<'a>(serial: &'a str, kind: &str) -> Vec<(&'a str, Vec<u64>)> {
    let head = format!("bench: stimer {kind} (");
    serial
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find(&head)? + head.len()..];
            let (mode, numbers) = rest.split_once("): ")?;
            let words = numbers.split(|c: char| !c.is_ascii_digit()).filter(|w| !w.is_empty());
            Some((mode, words.map(|w| w.parse().ok()).collect::<Option<Vec<u64>>>()?))
        })
        .collect()
}

/// Parses the stimer jitter lines: a mode's figure needs both of its lines
/// (ticks, early, mean, max; min, max, sd: the numbers before "100 ns").
pub fn parse_jitter(serial: &str) -> Vec<Jitter> {
    let intervals = stimer_lines(serial, "intervals");
    stimer_lines(serial, "lateness")
        .into_iter()
        .filter_map(|(mode, late)| {
            let (_, spread) = intervals.iter().find(|(m, _)| *m == mode)?;
            let (&[ticks, early, late_mean, late_max, 100], &[interval_min, interval_max, interval_sd, 100]) =
                (late.as_slice(), spread.as_slice())
            else {
                return None;
            };
            Some(Jitter {
                mode: mode.to_string(),
                ticks,
                early,
                late_mean,
                late_max,
                interval_min,
                interval_max,
                interval_sd,
            })
        })
        .collect()
}

/// 100 ns units as microseconds with one decimal.
fn us(units: u64) -> String {
    format!("{}.{}", units / 10, units % 10)
}

/// Lines that say a task or VP is not on the CPU its manifest or VID asked
/// for (the supervisor's, the VID's): a cross-CPU figure would be mislabelled.
const MISPLACED: [&str; 2] = ["stays on CPU 0:", "stays on the boot CPU"];

/// What one boot of a benchmark system printed.
#[derive(Clone, Debug, Default)]
struct Printed {
    figures: Vec<Figure>,
    jitter: Vec<Jitter>,
}

fn run_once(serial_log: PathBuf, smp: u32, qemu_args: &[&str]) -> Result<Printed, String> {
    let opts = BootOptions {
        emulator: Emulator::Qemu,
        firmware: Firmware::Bios,
        timeout: Some(Duration::from_secs(120)),
        smp,
        smp_threads: 1,
        memory_mib: 256,
        cmdline: "bench".into(),
        serial_log: Some(serial_log.clone()),
        qemu_args: qemu_args.iter().map(|a| a.to_string()).collect(),
        bochs_cpu: None,
        gdb: None,
        reboots: 0,
    };
    match boot::boot(&opts) {
        Ok(0) => {}
        Ok(code) => return Err(format!("the benchmark system ended with status {code}")),
        Err(e) => return Err(e.message),
    }
    let serial =
        std::fs::read_to_string(&serial_log).map_err(|e| format!("cannot read {}: {e}", serial_log.display()))?;
    if let Some(line) = serial.lines().find(|l| MISPLACED.iter().any(|m| l.contains(m))) {
        return Err(format!("not placed as the benchmark needs: `{line}` (see {})", serial_log.display()));
    }
    let printed = Printed { figures: parse(&serial), jitter: parse_jitter(&serial) };
    if printed.figures.is_empty() && printed.jitter.is_empty() {
        return Err(format!("the benchmark printed no figures (see {})", serial_log.display()));
    }
    Ok(printed)
}

/// A benchmark system: its manifest (in the repository) and the CPUs of
/// the machine it boots on.
struct System {
    manifest: &'static str,
    smp: u32,
    qemu_args: &'static [&'static str],
}

/// Where rdtsc counts instructions: the figures in instructions.
const ICOUNT: &[&str] = &["-icount", "shift=0"];
/// As the timer tests boot (tests/services.rs): the guest clock is the
/// instruction count, and an idle machine skips to its next deadline
/// instead of sleeping (with `sleep=on` a busy host moves the figures).
const ICOUNT_NO_SLEEP: &[&str] = &["-icount", "shift=0,sleep=off"];

/// The default benchmark systems, booted in this order: the IPC and exit
/// figures, the exits a guest times (CPUID, a port read; the VID at
/// another priority), the fast hypercall's, HvSignalEvent's round trips,
/// the VTL call and return's (all on one CPU, so their figures stay what they were), then IPC across
/// two CPUs, an exit to a VID on the other CPU, a CPUID exit of a
/// partition of two VPs, the guest's IPI and TLB flushes across four, and
/// the stimer jitter.
const DEFAULT_SYSTEMS: [System; 11] = [
    System { manifest: "tests/manifests/bench.toml", smp: 1, qemu_args: ICOUNT },
    System { manifest: "tests/manifests/exit-bench.toml", smp: 1, qemu_args: ICOUNT },
    System { manifest: "tests/manifests/exit-bench-priority.toml", smp: 1, qemu_args: ICOUNT },
    System { manifest: "tests/manifests/hypercall-bench.toml", smp: 1, qemu_args: ICOUNT },
    System { manifest: "tests/manifests/messaging-bench.toml", smp: 1, qemu_args: ICOUNT },
    System { manifest: "tests/manifests/vsm-bench.toml", smp: 1, qemu_args: ICOUNT },
    System { manifest: "tests/manifests/smp-ipc-bench.toml", smp: 2, qemu_args: ICOUNT },
    System { manifest: "tests/manifests/exit-bench-cross.toml", smp: 2, qemu_args: ICOUNT },
    System { manifest: "tests/manifests/exit-bench-2vps.toml", smp: 2, qemu_args: ICOUNT },
    System { manifest: "tests/manifests/smp-bench.toml", smp: 4, qemu_args: ICOUNT },
    System { manifest: "tests/manifests/stimer-bench.toml", smp: 1, qemu_args: ICOUNT_NO_SLEEP },
];

/// The stimer jitter figures the default systems must print, by mode.
const DEFAULT_JITTER: [&str; 2] = ["message mode", "direct mode"];

/// Figures the default benchmark systems must print.
const DEFAULT_FIGURES: [&str; 17] = [
    "ipc call+reply round trip",
    "null invocation (CAP_IDENTIFY)",
    "vm exit forwarded to the VID and back (port write)",
    "vm exit forwarded to the VID and back (CPUID)",
    "vm exit forwarded to the VID and back (port read)",
    "vm exit forwarded to a VID at a different priority (CPUID)",
    "vm exit forwarded to a VID on another CPU (CPUID)",
    "vm exit forwarded to the VID and back (CPUID, 2 VPs in the partition)",
    "vm exit handled in ring 0 (host timer interrupt)",
    "fast hypercall round trip (HvCallNotifyLongSpinWait)",
    "hvsignalevent round trip to a VP of the same partition",
    "hvsignalevent round trip to a VP of another partition",
    "VTL call + return round trip",
    "ipc call+reply round trip across CPUs",
    "ipi to a VP in guest mode on another CPU (delivery latency)",
    "tlb flush hypercall with VPs on 2 CPUs",
    "tlb flush hypercall with VPs on 4 CPUs",
];

/// Boots the benchmark (with the default manifest, every system of
/// [`DEFAULT_SYSTEMS`]; a manifest given boots on one CPU) twice and prints
/// the figures, then (with `linux`) the Linux comparison; returns an exit
/// code.
pub fn run(manifest: Option<&Path>, linux: bool) -> i32 {
    let dir = workdir::tessera_dir().join("bench").join(workdir::unique_name("bench"));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let default = manifest.is_none();
    let systems: Vec<(PathBuf, u32, &[&str])> = match manifest {
        // A default system given by name boots as it does among them.
        Some(m) => {
            let known = DEFAULT_SYSTEMS.iter().find(|s| m.ends_with(s.manifest));
            vec![(m.to_path_buf(), known.map_or(1, |s| s.smp), known.map_or(ICOUNT, |s| s.qemu_args))]
        }
        None => DEFAULT_SYSTEMS.iter().map(|s| (repo.join(s.manifest), s.smp, s.qemu_args)).collect(),
    };
    let mut runs = [Vec::new(), Vec::new()];
    let mut jitter_runs: [Vec<Jitter>; 2] = [Vec::new(), Vec::new()];
    let boots = systems.len() as u64 * 2 + if linux { 2 } else { 0 };
    let mut progress = Progress::new("bench: boot", Duration::from_secs(10));
    for (m, (manifest, smp, qemu_args)) in systems.iter().enumerate() {
        let sub = dir.join(format!("system-{}", m + 1));
        if let Err(e) = images::use_manifest(manifest, &sub) {
            ui::error(e);
            return crate::EXIT_RUNNER_ERROR;
        }
        for (i, (figures, jitter)) in runs.iter_mut().zip(&mut jitter_runs).enumerate() {
            progress.part(
                (m * 2 + i + 1) as u64,
                boots,
                format!(
                    "{}: benchmark run {} of 2 (QEMU TCG, {smp} CPU{}, {}: rdtsc counts instructions)",
                    manifest.display(),
                    i + 1,
                    if *smp == 1 { "" } else { "s" },
                    qemu_args.join(" ")
                ),
            );
            match run_once(sub.join(format!("serial-{}.log", i + 1)), *smp, qemu_args) {
                // A figure comes from the first system that prints it: the
                // hypercall system may also print a ring-0 exit row when a
                // timer tick lands in its run.
                Ok(more) => {
                    for figure in more.figures {
                        if !figures.iter().any(|f: &Figure| f.what == figure.what) {
                            figures.push(figure);
                        }
                    }
                    jitter.extend(more.jitter);
                }
                Err(e) => {
                    ui::error(e);
                    return 1;
                }
            }
        }
    }
    if default && let Some(missing) = DEFAULT_FIGURES.iter().find(|w| !runs[0].iter().any(|f| f.what == **w)) {
        ui::error(format!("the benchmark printed no `{missing}` figure (see {})", dir.display()));
        return 1;
    }
    if default && let Some(missing) = DEFAULT_JITTER.iter().find(|m| !jitter_runs[0].iter().any(|j| j.mode == **m)) {
        ui::error(format!("the benchmark printed no stimer jitter figure in {missing} (see {})", dir.display()));
        return 1;
    }
    if !runs[0].is_empty() {
        print_figures(&runs);
    }
    print_jitter(&jitter_runs);
    let mut code = if repeatable(&runs[0], &runs[1]) { 0 } else { 1 };
    if linux {
        match linux_boots(&dir, &mut progress, boots) {
            Ok((direct, tessera)) => print_linux(&direct, &tessera),
            Err(e) => {
                ui::error(e);
                code = 1;
            }
        }
    }
    code
}

/// The instruction figures, with whether the second run repeated each.
fn print_figures(runs: &[Vec<Figure>; 2]) {
    println!();
    println!("Tessera benchmarks (instructions per operation, QEMU -icount shift=0)");
    let width = runs[0].iter().map(|f| f.what.len()).max().unwrap_or(0).max(56);
    for figure in &runs[0] {
        let again = runs[1].iter().find(|f| f.what == figure.what);
        let repeat = match again {
            Some(f) if f == figure => "identical in both runs".to_string(),
            Some(f) => format!("second run: {} (min {})", f.mean, f.min),
            None => "missing from the second run".to_string(),
        };
        println!("  {:<width$} {:>6} (min {:>6})  {repeat}", figure.what, figure.mean, figure.min);
    }
    println!();
    println!("  For comparison: seL4's published x86-64 IPC fastpath is about 300 cycles one way,");
    println!("  so about 600 for a call plus its reply. Tessera's fast path (a CALL that finds its");
    println!("  server waiting, a REPLY_RECV, a VM exit to a waiting VID) is Rust over the full trap");
    println!("  frame: it skips the general scheduler, not the register save, the address-space and");
    println!("  RSB-fill of a task switch, or the user-side message handling counted here.");
    println!("  VM exits: TCG counts VMRUN and the whole world switch as a few instructions, so these");
    println!("  figures are the software path of an exit (ring 0, IPC to the VID, the VID's handling),");
    println!("  not the hardware's exit latency. Instructions are not cycles; under TCG they are the");
    println!("  only repeatable measure.");
    println!("  Across CPUs: under -icount QEMU runs the CPUs round-robin in one host thread, so the");
    println!("  cross-CPU figures include that scheduling: they count every CPU's instructions in the");
    println!("  meantime (a CPU hands over when it waits, at PAUSE or HLT, or its turn ends), not time on");
    println!("  parallel cores.");
}

/// The stimer jitter section: each mode's figure and whether the second
/// run repeated it (a figure of time, not counted in the exit status).
fn print_jitter(runs: &[Vec<Jitter>; 2]) {
    if runs[0].is_empty() {
        return;
    }
    println!();
    println!("Stimer jitter over 1,000 periodic ticks (STIMER0 every 1 ms, in TIME_REF_COUNT read by");
    println!("the guest's handler; QEMU TCG -icount shift=0,sleep=off: guest time is the instruction count)");
    for j in &runs[0] {
        let again = match runs[1].iter().find(|k| k.mode == j.mode) {
            Some(k) if k == j => "identical in both runs".to_string(),
            Some(k) => format!("second run: late mean {} us, max {} us", us(k.late_mean), us(k.late_max)),
            None => "missing from the second run".to_string(),
        };
        println!(
            "  {:<13} {} ticks, {} early; lateness mean {} us, max {} us; intervals {}..{} us, sd {} us; {again}",
            j.mode,
            j.ticks,
            j.early,
            us(j.late_mean),
            us(j.late_max),
            us(j.interval_min),
            us(j.interval_max),
            us(j.interval_sd)
        );
    }
    println!("  Lateness is each tick's arrival minus its place in the schedule from when the timer was");
    println!("  enabled (the period times its number); an interval is the time since the previous arrival.");
}

/// How long each Linux boot may take.
const LINUX_TIMEOUT: Duration = Duration::from_secs(300);

/// Boots the Linux guest directly, then under Tessera, with the same
/// kernel, initramfs and guest RAM ([`linux::PARTITION_MIB`]).
fn linux_boots(dir: &Path, progress: &mut Progress, boots: u64) -> Result<(linux::Run, linux::Run), String> {
    let guest = linux::fetch().map_err(|e| e.message)?;
    let run = |name: &str| RunOptions { timeout: LINUX_TIMEOUT, echo: true, serial_log: dir.join(name) };
    let failed = |what: &str, e: DirectError| match e {
        DirectError::Expect(e) => format!("{what}: the Linux guest did not answer: {e}"),
        DirectError::Start(e) => format!("{what}: {e}"),
        DirectError::Boot(e) => format!("{what}: {}", e.message),
    };
    progress.part(boots - 1, boots, "Linux boot 1 of 2: directly in QEMU TCG");
    let opts = DirectOptions { memory_mib: linux::PARTITION_MIB, append: String::new(), run: run("linux-direct.log") };
    let direct = linux::direct(&guest, &opts).map_err(|e| failed("direct boot", e))?;
    progress.part(boots, boots, "Linux boot 2 of 2: under Tessera in QEMU TCG");
    let opts = TesseraOptions {
        emulator: Emulator::Qemu,
        vcpus: 1,
        smp: Emulator::Qemu.default_smp(),
        reboot: false,
        cmdline: String::new(),
        qemu_args: Vec::new(),
        run: run("linux-tessera.log"),
    };
    let tessera = linux::tessera(&guest, &opts).map_err(|e| failed("Tessera boot", e))?;
    Ok((direct, tessera))
}

fn print_linux(direct: &linux::Run, tessera: &linux::Run) {
    let (t, d) = (tessera.timings.command.as_secs_f64(), direct.timings.command.as_secs_f64());
    println!();
    println!(
        "Linux guest (Debian's kernel and busybox initramfs, {} MiB), wall time on this machine to the",
        linux::PARTITION_MIB
    );
    println!("shell's answer to `{}`, the two boots run one after the other:", linux::COMMAND);
    println!("  Linux boot under Tessera vs direct QEMU TCG: {t:.1} s vs {d:.1} s (ratio {:.2})", t / d);
    println!(
        "  shell prompt after {:.1} s vs {:.1} s; emulator exited after {:.1} s vs {:.1} s",
        tessera.timings.prompt.as_secs_f64(),
        direct.timings.prompt.as_secs_f64(),
        tessera.total.as_secs_f64(),
        direct.total.as_secs_f64()
    );
    println!("  Both in QEMU TCG (emulated, no KVM); under Tessera the CPU is `{}` and Linux", crate::qemu::CPU);
    println!("  runs in an SVM guest with nested paging, its exits handled by the VID task. The figure");
    println!("  moves with the machine's load: compare figures from one run only.");
}

/// Whether the second run repeats the first: every figure present, each
/// mean within 1% (a figure timed by host timer interrupts can move by an
/// instruction or two, as the interrupt lands elsewhere in the guest's loop).
fn repeatable(first: &[Figure], second: &[Figure]) -> bool {
    first.len() == second.len()
        && first
            .iter()
            .all(|a| second.iter().any(|b| b.what == a.what && a.mean.abs_diff(b.mean) * 100 <= a.mean.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(what: &str, mean: u64) -> Figure {
        Figure { what: what.to_string(), mean, min: mean }
    }

    #[test]
    fn runs_repeat_within_one_percent() {
        let first = [figure("a", 1000), figure("b", 296)];
        assert!(repeatable(&first, &[figure("a", 1000), figure("b", 295)]));
        assert!(repeatable(&first, &[figure("b", 296), figure("a", 1010)]));
        assert!(!repeatable(&first, &[figure("a", 1011), figure("b", 296)]));
        assert!(!repeatable(&first, &[figure("a", 1000)]));
        assert!(!repeatable(&first, &[figure("a", 1000), figure("c", 296)]));
    }

    /// Each default system is a valid manifest whose machine has every CPU
    /// its tasks and VPs are put on (the VID puts VP i on CPU i mod n).
    #[test]
    fn default_systems_boot_with_the_cpus_they_place_on() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        for system in &DEFAULT_SYSTEMS {
            let m = tessera_manifest::load(&repo.join(system.manifest)).unwrap_or_else(|e| panic!("{e}"));
            let cpus = m.tasks.iter().map(|t| u32::from(t.cpu) + 1).chain(m.partitions.iter().map(|p| p.vcpus.into()));
            let wanted = cpus.max().unwrap_or(1);
            assert_eq!(system.smp, wanted, "{}: booted with {} CPUs", system.manifest, system.smp);
        }
    }

    #[test]
    fn jitter_is_parsed_from_the_guest_lines() {
        let serial = "[vid] stimers: testkernel: bench: stimer lateness (message mode): 1000 ticks, 0 early, mean 382 \
                      max 441 (100 ns)\n\
                      [vid] stimers: testkernel: bench: stimer intervals (message mode): 9990..10013 sd 12 (100 ns)\n\
                      [vid] stimers: testkernel: bench: stimer lateness (direct mode): 1000 ticks, 0 early, mean 5 max 9 \
                      (100 ns)\n";
        assert_eq!(
            parse_jitter(serial),
            vec![Jitter {
                mode: "message mode".into(),
                ticks: 1000,
                early: 0,
                late_mean: 382,
                late_max: 441,
                interval_min: 9990,
                interval_max: 10013,
                interval_sd: 12,
            }],
            "direct mode lacks its intervals line"
        );
        assert!(
            parse_jitter(
                "bench: stimer lateness (x): 1 ticks (100 ns)\nbench: stimer intervals (x): 1..2 sd 0 (100 ns)"
            )
            .is_empty()
        );
        assert_eq!(parse(serial), vec![], "not instruction figures");
        assert_eq!((us(382), us(10_013), us(0)), ("38.2".to_string(), "1001.3".to_string(), "0.0".to_string()));
    }

    #[test]
    fn figures_are_parsed_from_task_output() {
        let serial = "[bench-client] bench: ipc call+reply round trip: 2768 cycles (min 2756) over 1000 rounds\n\
                      noise\n[bench-client] bench: null invocation (CAP_IDENTIFY): 939 cycles (min 927) over 1000 rounds\n";
        assert_eq!(
            parse(serial),
            vec![
                Figure { what: "ipc call+reply round trip".into(), mean: 2768, min: 2756 },
                Figure { what: "null invocation (CAP_IDENTIFY)".into(), mean: 939, min: 927 },
            ]
        );
        assert!(parse("bench: broken line").is_empty());
    }
}
