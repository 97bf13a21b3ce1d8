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
    assert_eq!(names, ["supervisor", "console", "scheduler", "partition-manager", "broker", "vid", "vmbus-host"]);
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
         [tasks.boot]\nsupervisor = true\npriority = 1\nmemory = \"1MiB\"\nstack = \"1 MiB\"\n\
         [tasks.mid]\npriority = 1\nmemory = \"4KiB\"\nstack = \"4KiB\"\nbinary = \"mid.elf\"\nrestart = \"never\"\n",
        "t.toml",
    )
    .unwrap();
    // Supervisor first, even when tied (no task may be above it); ties keep file order.
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
    assert_eq!(uses, [("console", "console"), ("partition-manager", "partition-manager"), ("broker", "broker")]);
    let server = c.task(c.endpoints[usize::from(vid.serves[0].0)].server).unwrap();
    assert_eq!(server.name, "vid");
}

#[test]
fn a_task_cpu_is_compiled_and_shown() {
    let m = parse(
        "[system]\nname = \"s\"\n\
         [tasks.boot]\nsupervisor = true\npriority = 2\nmemory = \"4KiB\"\nstack = \"4KiB\"\n\
         [tasks.far]\npriority = 1\nmemory = \"4KiB\"\nstack = \"4KiB\"\ncpu = 3\n\
         [tasks.near]\npriority = 1\nmemory = \"4KiB\"\nstack = \"4KiB\"\n",
        "t.toml",
    )
    .unwrap();
    let bytes = compile(&m).unwrap();
    let c = sysimage::Manifest::parse(&bytes).unwrap();
    let cpus: Vec<(&str, u8)> = c.tasks.iter().map(|t| (t.name, t.cpu)).collect();
    assert_eq!(cpus, [("boot", 0), ("far", 3), ("near", 0)]);
    let text = summary(&m);
    assert!(text.lines().any(|l| l.starts_with("  far ") && l.ends_with(" on CPU 3")), "{text}");
    assert_eq!(text.matches("on CPU").count(), 1, "{text}");
}

#[test]
fn classic_parameters_and_cpus_are_compiled_and_shown() {
    let text = "[system]\nname = \"s\"\n\
         [tasks.boot]\nsupervisor = true\npriority = 31\nmemory = \"4KiB\"\nstack = \"4KiB\"\n\
         [tasks.pm]\npriority = 20\nmemory = \"4KiB\"\nstack = \"4KiB\"\nserves = [\"partition-manager\"]\n\
         [tasks.vid]\npriority = 10\nmemory = \"4KiB\"\nstack = \"4KiB\"\nuntyped = \"64KiB\"\nuses = [\"partition-manager\"]\n\
         [partitions.busy]\nimage = \"k\"\nmemory = \"2MiB\"\nvid = \"vid\"\nvcpus = 2\nweight = 700\nreserve = 0.25\ncap = 0.5\ncpus = [1]\n\
         [partitions.idle]\nimage = \"k\"\nmemory = \"2MiB\"\nvid = \"vid\"\n\
         [scheduler]\npolicy = \"classic\"\n";
    let m = parse(text, "t.toml").unwrap();
    let bytes = compile(&m).unwrap();
    let c = sysimage::Manifest::parse(&bytes).unwrap();
    assert_eq!(c.scheduler, sysimage::SchedulerPolicy::Classic);
    let busy = &c.partitions[0];
    assert_eq!(busy.classic, sysimage::Classic { reserve: 0x4000, cap: 0x8000, weight: 700 });
    assert_eq!((busy.cpus.as_slice(), busy.cpu_of(1)), (&[1][..], Some(1)));
    assert_eq!((c.partitions[1].classic, c.partitions[1].cpu_of(0)), (sysimage::Classic::DEFAULT, None));
    assert_eq!(c.reserves_on(1), 0x8000);
    let shown = summary(&m);
    assert!(shown.contains("[classic: weight 700, reserve 0.250, cap 0.500] on CPUs 1"), "{shown}");
    assert!(shown.contains("[classic: weight 100]"), "{shown}");
}

/// A system of one task, the supervisor: `system` added to `[system]`,
/// `task` to its table.
fn lone_supervisor(system: &str, task: &str) -> String {
    format!(
        "[system]\nname = \"s\"\n{system}\n\
         [tasks.boot]\nsupervisor = true\npriority = 2\nmemory = \"4KiB\"\nstack = \"4KiB\"\n{task}"
    )
}

#[test]
fn the_supervisor_death_policy_reaches_the_bootfs_header() {
    let text = |policy: &str| lone_supervisor(policy, "kill_every_ms = 300\n");
    for (policy, expected) in [
        ("", sysimage::bootfs::OnDeath::Halt),
        ("on_supervisor_death = \"halt\"", sysimage::bootfs::OnDeath::Halt),
        ("on_supervisor_death = \"reboot\"", sysimage::bootfs::OnDeath::Reboot),
    ] {
        let m = parse(&text(policy), "t.toml").unwrap();
        assert_eq!(m.on_supervisor_death, expected, "{policy}");
        let image = build_image(&m, &bin_dir("policy", &m)).unwrap();
        let sys = SystemImage::parse(&image).unwrap();
        assert_eq!(sys.bootfs.root().on_death, expected, "{policy}");
        // The supervisor's own fault injection is compiled like any task's.
        assert_eq!(sys.manifest.tasks[0].kill_every_ms, 300);
        let shown = summary(&m);
        assert_eq!(
            shown.contains("on supervisor death: reboot"),
            expected == sysimage::bootfs::OnDeath::Reboot,
            "{shown}"
        );
    }
}

#[test]
fn the_image_holds_the_manifest_and_each_binary_once() {
    let mut m = load(&repo_manifest()).unwrap();
    m.tasks[5].binary = m.tasks[4].binary.clone(); // two tasks, one binary
    let dir = bin_dir("image", &m);
    let image = build_image(&m, &dir).unwrap();
    let sys = SystemImage::parse(&image).unwrap();
    assert_eq!(sys.bootfs.len(), 1 + 6);
    assert_eq!(sys.bootfs.get(0).unwrap().name, "manifest");
    assert_eq!(sys.manifest.tasks.len(), 7);
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
    assert!(text.starts_with("system \"tessera\": 7 tasks, 5 endpoints\n"), "{text}");
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

/// The default system plus a partition run by the VID, written in `dir`
/// with its guest files next to it.
fn system_with_guest(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo_manifest()).unwrap()
        + "\n[partitions.linux]\nimage = \"guests/bzImage\"\nmodules = [\"guests/initrd\", \"cmd.txt\"]\n\
           cmdline = \"console=ttyS0\"\nmemory = \"64MiB\"\nvcpus = 2\nvid = \"vid\"\n\
           enlightenments = { profile = \"hyperv\", guest_idle = false }\n";
    std::fs::create_dir_all(dir.join("guests")).unwrap();
    std::fs::write(dir.join("guests/bzImage"), b"kernel").unwrap();
    std::fs::write(dir.join("guests/initrd"), b"initrd").unwrap();
    std::fs::write(dir.join("cmd.txt"), b"text").unwrap();
    let path = dir.join("system.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn guest_files_are_found_next_to_the_manifest_and_packed() {
    let dir = scratch("guest");
    let m = load(&system_with_guest(&dir.join("conf"))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.partitions[0].image, dir.join("conf/guests/bzImage"));
    let bins = bin_dir("guest-bins", &m);
    let image = build_image(&m, &bins).unwrap();
    let sys = SystemImage::parse(&image).unwrap();
    let p = &sys.manifest.partitions[0];
    assert_eq!(
        (p.name, p.image, p.cmdline, p.memory, p.vcpus),
        ("linux", "guest0:image", "console=ttyS0", 64 << 20, 2)
    );
    assert_eq!(p.modules, ["guest0:module0", "guest0:module1"]);
    assert_eq!(sys.manifest.task(p.vid).unwrap().name, "vid");
    assert_eq!(sys.guest_image(p), Some(&b"kernel"[..]));
    assert_eq!(sys.bootfs.file("guest0:module0"), Some(&b"initrd"[..]));
    assert_eq!(sys.bootfs.file("guest0:module1"), Some(&b"text"[..]));
    assert!(summary(&m).contains("7 tasks, 5 endpoints, 1 partitions"), "{}", summary(&m));
    // The enlightenments reach the compiled manifest as their bits.
    let expected = tessera_manifest::Enlightenments::HYPERV.with(tessera_manifest::Enlightenment::GuestIdle, false);
    assert_eq!(p.enlightenments, expected);
    assert!(summary(&m).contains("\"console=ttyS0\" [hypercall+vp_index+vp_runtime+"), "{}", summary(&m));
}

#[test]
fn missing_guest_image_and_module() {
    let dir = scratch("guest-missing");
    let m = load(&system_with_guest(&dir)).unwrap();
    std::fs::remove_file(dir.join("guests/bzImage")).unwrap();
    std::fs::remove_file(dir.join("guests/initrd")).unwrap();
    let bins = bin_dir("guest-missing-bins", &m);
    let errors = build_image(&m, &bins).unwrap_err().messages();
    assert_eq!(
        errors,
        [
            format!(
                "partition \"linux\": image: cannot read \"{}\": No such file or directory (os error 2)",
                dir.join("guests/bzImage").display()
            ),
            format!(
                "partition \"linux\": modules: cannot read \"{}\": No such file or directory (os error 2)",
                dir.join("guests/initrd").display()
            ),
        ]
    );
}

#[test]
fn a_partition_can_be_added_to_a_manifest_text() {
    let dir = scratch("with-partition");
    std::fs::write(dir.join("kernel"), b"kernel").unwrap();
    let spec = tessera_manifest::PartitionSpec {
        name: "guest".into(),
        image: dir.join("kernel"),
        modules: vec![dir.join("kernel")],
        cmdline: "a \"quoted\" \\ word".into(),
        memory: 64 << 20,
        vcpus: 3,
        vid: "vid".into(),
        enlightenments: "hyperv".into(),
    };
    let text = std::fs::read_to_string(repo_manifest()).unwrap();
    let generated = tessera_manifest::with_partition(&text, "system.toml", &spec).unwrap();
    let m = parse(&generated, "generated.toml").unwrap_or_else(|e| panic!("{e}\n{generated}"));
    let p = &m.partitions[0];
    assert_eq!(
        (p.image.as_path(), p.cmdline.as_str(), p.memory, p.vcpus),
        (dir.join("kernel").as_path(), "a \"quoted\" \\ word", 64 << 20, 3)
    );
    // The partition manager's quota is what the partition needs: memory,
    // 1 MiB, and a second-level table per 2 MiB and per GiB of memory; and
    // its journal.
    let manager = m.endpoints.iter().find(|e| e.name == "partition-manager").unwrap().server;
    assert_eq!(m.tasks[manager].untyped, (65 << 20) + (32 + 1) * 4096 + sysimage::manifest::JOURNAL_NEED);
    assert_eq!(m.tasks.len(), load(&repo_manifest()).unwrap().tasks.len());
    // The default system has a VMBus host: the guest's connection 4 leads
    // to its port 1, and its connection 1 to the guest's port 2 (VP 0, SINT 2).
    let host = m.tasks.iter().position(|t| t.name == tessera_manifest::VMBUS_HOST).unwrap();
    let c: Vec<_> =
        m.connections.iter().map(|c| (c.from, c.to, c.connection_id, c.port_id, c.target_vp, c.sint)).collect();
    let (guest, host) = (tessera_manifest::Party::Partition(0), tessera_manifest::Party::Task(host));
    assert_eq!(c, [(guest, host, 4, 1, 0, 0), (host, guest, 1, 2, 0, 2)]);
    // Without a host task, none.
    let plain = text.replace("[tasks.vmbus-host]", "[tasks.other-host]");
    let generated_plain = tessera_manifest::with_partition(&plain, "system.toml", &spec).unwrap();
    assert!(parse(&generated_plain, "g.toml").unwrap().connections.is_empty());
    // A second partition of that name is refused.
    let again = tessera_manifest::with_partition(&generated, "g.toml", &spec).unwrap_err();
    assert_eq!(again.messages(), ["partition \"guest\": is already declared in the manifest"]);
}

/// `--guest-enlightenments hyperv-vsm`: the generated partition has the
/// profile's bits (issue #12 acceptance 3; the CPUID bits are the VID's
/// `hyperv_vsm_grants_vsm_and_hyperv_does_not`).
#[test]
fn a_generated_partition_takes_the_hyperv_vsm_profile() {
    let dir = scratch("with-vsm");
    std::fs::write(dir.join("kernel"), b"kernel").unwrap();
    let spec = tessera_manifest::PartitionSpec {
        name: "guest".into(),
        image: dir.join("kernel"),
        modules: vec![],
        cmdline: String::new(),
        memory: 16 << 20,
        vcpus: 2,
        vid: "vid".into(),
        enlightenments: "hyperv-vsm".into(),
    };
    let text = std::fs::read_to_string(repo_manifest()).unwrap();
    let generated = tessera_manifest::with_partition(&text, "system.toml", &spec).unwrap();
    let m = parse(&generated, "generated.toml").unwrap_or_else(|e| panic!("{e}\n{generated}"));
    let set = m.partitions[0].enlightenments;
    assert_eq!(set, tessera_manifest::Enlightenments::HYPERV_VSM);
    assert!(!tessera_manifest::Enlightenments::HYPERV.contains(tessera_manifest::Enlightenment::Vsm));
}

#[test]
fn the_soak_interval_reaches_the_compiled_manifest() {
    for (line, expected) in [("", 0), ("soak_kill_every_ms = 4000", 4000)] {
        let m = parse(&lone_supervisor(line, ""), "t.toml").unwrap();
        assert_eq!(m.soak_kill_every_ms, expected, "{line}");
        let image = build_image(&m, &bin_dir("soak", &m)).unwrap();
        assert_eq!(SystemImage::parse(&image).unwrap().manifest.soak_kill_every_ms, expected, "{line}");
        let shown = summary(&m);
        assert_eq!(shown.contains("soak: a random task killed every 4000 ms"), expected != 0, "{shown}");
    }
}
