//! `tessera bench`: cost figures in instructions.
//!
//! The benchmark system (`tests/manifests/bench.toml`) runs under QEMU with
//! `-icount shift=0`, where rdtsc advances once per guest instruction, so a
//! cycle count read by the benchmark task is an instruction count and the
//! same build gives the same figure on every run. The runner boots it twice
//! and reports whether the two runs agree.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::boot::{self, BootOptions, Emulator, Firmware};
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

fn run_once(serial_log: PathBuf) -> Result<Vec<Figure>, String> {
    let opts = BootOptions {
        emulator: Emulator::Qemu,
        firmware: Firmware::Bios,
        timeout: Some(Duration::from_secs(120)),
        smp: 1,
        memory_mib: 256,
        cmdline: "bench".into(),
        serial_log: Some(serial_log.clone()),
        qemu_args: vec!["-icount".into(), "shift=0".into()],
    };
    match boot::boot(&opts) {
        Ok(0) => {}
        Ok(code) => return Err(format!("the benchmark system ended with status {code}")),
        Err(e) => return Err(e.message),
    }
    let serial =
        std::fs::read_to_string(&serial_log).map_err(|e| format!("cannot read {}: {e}", serial_log.display()))?;
    let figures = parse(&serial);
    if figures.is_empty() {
        return Err(format!("the benchmark printed no figures (see {})", serial_log.display()));
    }
    Ok(figures)
}

/// Boots the benchmark twice and prints the figures; returns an exit code.
pub fn run(manifest: &Path) -> i32 {
    let dir = workdir::tessera_dir().join("bench").join(workdir::unique_name("bench"));
    if let Err(e) = images::use_manifest(manifest, &dir) {
        ui::error(e);
        return crate::EXIT_RUNNER_ERROR;
    }
    let mut runs = Vec::new();
    for i in 1..=2 {
        ui::note(format!("benchmark run {i} of 2 (QEMU TCG, -icount shift=0: rdtsc counts instructions)"));
        match run_once(dir.join(format!("serial-{i}.log"))) {
            Ok(figures) => runs.push(figures),
            Err(e) => {
                ui::error(e);
                return 1;
            }
        }
    }
    println!();
    println!("Tessera benchmarks (instructions per operation, QEMU -icount shift=0)");
    for figure in &runs[0] {
        let again = runs[1].iter().find(|f| f.what == figure.what);
        let repeat = match again {
            Some(f) if f == figure => "identical in both runs".to_string(),
            Some(f) => format!("second run: {} (min {})", f.mean, f.min),
            None => "missing from the second run".to_string(),
        };
        println!("  {:<56} {:>6} (min {:>6})  {repeat}", figure.what, figure.mean, figure.min);
    }
    println!();
    println!("  For comparison: seL4's published x86-64 IPC fastpath is about 300 cycles one way,");
    println!("  so about 600 for a call plus its reply. Tessera has no fast path yet: every call and");
    println!("  reply takes the general syscall path, switches address space, and returns with iretq.");
    println!("  VM exits: TCG counts VMRUN and the whole world switch as a few instructions, so these");
    println!("  figures are the software path of an exit (ring 0, IPC to the VID, the VID's handling),");
    println!("  not the hardware's exit latency. Instructions are not cycles; under TCG they are the");
    println!("  only repeatable measure.");
    if repeatable(&runs[0], &runs[1]) { 0 } else { 1 }
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
