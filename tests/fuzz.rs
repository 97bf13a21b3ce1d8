//! `tessera fuzz`: a short pass of every fuzz target over its committed
//! seeds (the README's test command runs it), and the canary target, which
//! shows that a crash is caught, its input saved and the run failed.
//!
//! The first test builds the instrumented targets (`target/fuzz/`, a
//! minute or two on two cores the first time).

mod common;

use std::path::Path;
use std::process::{Command, Output};

/// `tessera fuzz <args> --out <dir>`.
fn fuzz(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("fuzz")
        .args(args)
        .arg("--out")
        .arg(dir)
        .output()
        .expect("run tessera fuzz")
}

fn show(out: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn fuzz_smoke_pass_of_every_target() {
    const RUNS: u64 = 20_000;
    let dir = common::test_dir("fuzz_smoke_pass_of_every_target");
    let out = fuzz(&dir, &["--runs", &RUNS.to_string(), "--jobs", "2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the smoke pass failed\n{}", show(&out));
    for target in tessera::fuzz::TARGETS {
        let row = stdout.lines().find(|l| l.split_whitespace().next() == Some(target));
        let row = row.unwrap_or_else(|| panic!("no row for {target}\n{}", show(&out)));
        let cols: Vec<&str> = row.split_whitespace().collect();
        let executions: u64 = cols[1].parse().unwrap();
        let (crashes, corpus): (&str, u64) = (cols[3], cols[4].parse().unwrap());
        assert!(executions >= RUNS, "{target}: {executions} executions\n{}", show(&out));
        assert_eq!(crashes, "0", "{target}\n{}", show(&out));
        // The seeds were loaded (each target has at least three that add coverage).
        assert!(corpus >= 3, "{target}: corpus of {corpus}\n{}", show(&out));
    }
    let total = stdout.lines().find(|l| l.starts_with("total: ")).unwrap_or_else(|| panic!("no total\n{}", show(&out)));
    let every = format!(" executions, 0 crashes, 0 of {} targets failed", tessera::fuzz::TARGETS.len());
    assert!(total.ends_with(&every), "{}", show(&out));
}

#[test]
fn fuzz_canary_crash_is_saved_and_fails_the_run() {
    let dir = common::test_dir("fuzz_canary_crash_is_saved_and_fails_the_run");
    let out = fuzz(&dir, &["--runs", "1000", "--target", "canary"]);
    assert_eq!(out.status.code(), Some(1), "a crash must fail the run\n{}", show(&out));
    let crashes: Vec<_> = std::fs::read_dir(dir.join("crashes/canary")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(crashes.len(), 1, "{crashes:?}\n{}", show(&out));
    assert!(std::fs::read(&crashes[0]).unwrap().starts_with(b"tessera-canary"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("crashing input saved: {}", crashes[0].display())), "{}", show(&out));
    assert!(stderr.contains("the canary input"), "the panic message is shown\n{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("total: ") && stdout.contains("1 crashes, 1 of 1 targets failed"), "{}", show(&out));
}
