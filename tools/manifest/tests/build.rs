//! Positive tests: the default system, defaults, the compiled manifest and
//! the bootfs, build-time errors, and the command line.

use std::path::{Path, PathBuf};
use std::process::Command;
use sysimage::{Restart, SystemImage};
use tessera_manifest::{build_image, compile, load, parse, summary};

fn repo_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../system.toml")
}

/// A minimal x86-64 ELF64 executable header, tagged so files differ.
fn fake_elf(tag: u8) -> Vec<u8> {
    let mut elf = vec![0u8; 64];
    elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
    elf[16] = 2; // ET_EXEC
    elf[18] = 62; // EM_X86_64
    elf.push(tag);
    elf
}

/// A fresh directory under cargo's per-test scratch space.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A bin dir with a fake ELF for every binary of `manifest`.
fn bin_dir(name: &str, manifest: &tessera_manifest::Manifest) -> PathBuf {
    let dir = scratch(name);
    for (i, t) in manifest.tasks.iter().enumerate() {
        std::fs::write(dir.join(&t.binary), fake_elf(i as u8)).unwrap();
    }
    dir
}

#[test]
fn the_default_system_is_valid_and_starts_servers_first() {
    let m = load(&repo_manifest()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.name, "tessera");
    let names: Vec<&str> = m.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["supervisor", "console", "scheduler", "partition-manager", "vid", "broker"]);
    assert!(m.supervisor().supervisor && m.supervisor().restart == Restart::Never);
    let console = &m.tasks[1];
    assert_eq!(m.endpoints[console.serves[0]].name, "console");
    assert_eq!(console.io_ports, [sysimage::IoPortRange { base: 0x3f8, count: 8 }]);
    // Every server starts before each of its clients.
    for (i, t) in m.tasks.iter().enumerate() {
        for &e in &t.uses {
            assert!(m.endpoints[e].server < i, "{} starts before its server", t.name);
        }
    }
}

#[test]
fn defaults_and_integer_sizes() {
    let m = parse(
        "[system]\nname = \"s\"\n\
         [tasks.low]\npriority = 1\nmemory = 8192\nstack = 4096\n\
         [tasks.boot]\nsupervisor = true\npriority = 0\nmemory = \"1MiB\"\nstack = \"1 MiB\"\n\
         [tasks.mid]\npriority = 1\nmemory = \"4KiB\"\nstack = \"4KiB\"\nbinary = \"mid.elf\"\nrestart = \"never\"\n",
        "t.toml",
    )
    .unwrap();
    // Supervisor first whatever its priority; ties keep file order.
    let names: Vec<&str> = m.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["boot", "low", "mid"]);
    assert_eq!((m.tasks[0].memory, m.tasks[0].stack), (1 << 20, 1 << 20));
    assert_eq!((m.tasks[1].binary.as_str(), m.tasks[1].restart), ("low", Restart::Always));
    assert_eq!((m.tasks[2].binary.as_str(), m.tasks[2].restart), ("mid.elf", Restart::Never));
    assert!(m.endpoints.is_empty());
}

#[test]
fn the_compiled_manifest_carries_everything() {
    let m = load(&repo_manifest()).unwrap();
    let bytes = compile(&m).unwrap();
    let c = sysimage::Manifest::parse(&bytes).unwrap();
    assert_eq!(c.system, "tessera");
    assert_eq!(c.tasks.len(), m.tasks.len());
    for (c, t) in c.tasks.iter().zip(&m.tasks) {
        assert_eq!(
            (c.name, c.binary, c.priority, c.memory, c.stack, c.restart),
            (t.name.as_str(), t.binary.as_str(), t.priority, t.memory, t.stack, t.restart)
        );
        assert_eq!(c.io_ports, t.io_ports[..]);
    }
    let vid = c.tasks.iter().find(|t| t.name == "vid").unwrap();
    let uses: Vec<(&str, &str)> = vid.uses.iter().map(|u| (c.endpoint(u.endpoint).unwrap().name, u.name)).collect();
    assert_eq!(uses, [("console", "console"), ("partition-manager", "partition-manager")]);
    let server = c.task(c.endpoints[usize::from(vid.serves[0].0)].server).unwrap();
    assert_eq!(server.name, "vid");
}

#[test]
fn the_image_holds_the_manifest_and_each_binary_once() {
    let mut m = load(&repo_manifest()).unwrap();
    m.tasks[5].binary = m.tasks[4].binary.clone(); // two tasks, one binary
    let dir = bin_dir("image", &m);
    let image = build_image(&m, &dir).unwrap();
    let sys = SystemImage::parse(&image).unwrap();
    assert_eq!(sys.bootfs.len(), 1 + 5);
    assert_eq!(sys.bootfs.get(0).unwrap().name, "manifest");
    assert_eq!(sys.manifest.tasks.len(), 6);
    for t in &sys.manifest.tasks {
        assert_eq!(sys.binary(t).unwrap(), std::fs::read(dir.join(t.binary)).unwrap());
    }
}

#[test]
fn missing_binary_file() {
    let m = load(&repo_manifest()).unwrap();
    let dir = bin_dir("missing", &m);
    std::fs::remove_file(dir.join("vid")).unwrap();
    let errors = build_image(&m, &dir).unwrap_err().messages();
    assert_eq!(
        errors,
        [format!(
            "task \"vid\": binary: cannot read \"{}\": No such file or directory (os error 2)",
            dir.join("vid").display()
        )]
    );
}

#[test]
fn binary_that_is_not_an_x86_64_elf() {
    let m = load(&repo_manifest()).unwrap();
    let dir = bin_dir("not-elf", &m);
    std::fs::write(dir.join("console"), b"#!/bin/sh\n").unwrap();
    let mut arm = fake_elf(0);
    arm[18] = 183; // EM_AARCH64
    std::fs::write(dir.join("broker"), arm).unwrap();
    let errors = build_image(&m, &dir).unwrap_err().messages();
    assert_eq!(
        errors,
        [
            format!("task \"broker\": binary: \"{}\" is not an x86-64 ELF executable", dir.join("broker").display()),
            format!("task \"console\": binary: \"{}\" is not an x86-64 ELF executable", dir.join("console").display()),
        ]
    );
}

#[test]
fn the_summary_lists_tasks_and_capabilities() {
    let m = load(&repo_manifest()).unwrap();
    let text = summary(&m);
    assert!(text.starts_with("system \"tessera\": 6 tasks, 5 endpoints\n"), "{text}");
    assert!(text.contains("serves console; ports 0x3f8..=0x3ff"), "{text}");
    assert!(text.contains("uses console, partition-manager"), "{text}");
}

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tessera-manifest"))
}

#[test]
fn cli_check_and_build() {
    let out = cli().arg("check").arg(repo_manifest()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("partition-manager"));

    let m = load(&repo_manifest()).unwrap();
    let dir = bin_dir("cli", &m);
    let image = dir.join("bootfs.img");
    let out =
        cli().arg("build").arg(repo_manifest()).arg("--bin-dir").arg(&dir).arg("--out").arg(&image).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    SystemImage::parse(&std::fs::read(&image).unwrap()).unwrap();
}

#[test]
fn cli_reports_errors_numbered_and_fails() {
    let dir = scratch("cli-errors");
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[system]\nname = \"x\"\n").unwrap();
    let out = cli().arg("check").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error 1/1: system: tasks: the system has no tasks (declare at least the supervisor: [tasks.NAME] with supervisor = true)\n"
    );
    let out = cli().arg("check").arg(dir.join("absent.toml")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("absent.toml: cannot read: No such file"));
}
