//! The static composition of a Tessera system.
//!
//! A manifest (`system.toml`, format in `docs/MANIFEST.md`) declares the
//! ring-3 tasks: priorities, memory, stacks and capabilities. This crate
//! checks it, reporting every mistake at once ([`Errors`]), and builds the
//! bootfs image the kernel hands to the supervisor: a header naming the
//! supervisor (the root task the kernel starts), the compiled manifest
//! (`sysimage::Manifest`, postcard) plus each task's ELF executable and each
//! guest partition's kernel and modules (files named relative to the
//! manifest's directory).
//!
//! ```text
//! load(path) ──> Manifest ──compile──> manifest bytes
//!                    └──build_image(bin_dir)──> bootfs (manifest + binaries)
//! ```

#![forbid(unsafe_code)]

mod enlightenments;
mod error;
mod generate;
mod parse;

pub use enlightenments::DEFAULT_PROFILE;
pub use error::{Error, Errors};
pub use generate::{PartitionSpec, VMBUS_HOST, vmbus_connections, with_partition};
pub use parse::{parse, parse_in};
pub use sysimage::{Classic, Enlightenment, Enlightenments, IoPortRange, PortType, Priority, Restart, SchedulerPolicy};

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use sysimage::{MANIFEST_FILE, bootfs, manifest as compiled};

/// A checked manifest. Tasks are in start order: the supervisor first, then
/// by descending priority, ties in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The system's name (`[system] name`).
    pub name: String,
    pub tasks: Vec<Task>,
    /// Numbered in start order of their servers, then in `serves` order.
    pub endpoints: Vec<Endpoint>,
    /// Guest partitions, in file order.
    pub partitions: Vec<Partition>,
    /// `[scheduler] policy`: classic, root, or none (the kernel's defaults).
    pub scheduler: SchedulerPolicy,
    /// `[[connections]]`, in file order.
    pub connections: Vec<Connection>,
    /// `[system] on_supervisor_death`: what the kernel does when the
    /// supervisor dies (carried in the bootfs header, for the kernel).
    pub on_supervisor_death: bootfs::OnDeath,
    /// `[system] soak_kill_every_ms`: the supervisor kills a random running,
    /// restartable task this often (0: never).
    pub soak_kill_every_ms: u32,
}

/// A connection's party: an index into [`Manifest::partitions`], or into
/// [`Manifest::tasks`] for a task serving its own ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Party {
    Partition(usize),
    Task(usize),
}

/// A declared connection (`[[connections]]`): party `from` holds
/// connection `connection_id` to port `port_id` of party `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection {
    pub from: Party,
    pub to: Party,
    pub port_type: PortType,
    pub connection_id: u32,
    pub port_id: u32,
    pub target_vp: u8,
    pub sint: u8,
    /// Events only: the port's first flag and its flag count (0 otherwise).
    pub flag: u16,
    pub flag_count: u16,
    /// Monitors only: the GPA of the monitor page in `from` (a partition)
    /// and in `to` (if a partition); `target_vp` and `sint` are 0.
    pub from_page: Option<u64>,
    pub to_page: Option<u64>,
}

/// A guest partition (`[partitions.NAME]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    /// The guest kernel, resolved against the manifest's directory (read by
    /// [`build_image`]).
    pub image: PathBuf,
    /// Boot modules (e.g. an initrd), resolved like `image`, in order.
    pub modules: Vec<PathBuf>,
    /// The guest kernel's command line (may be empty).
    pub cmdline: String,
    /// Bytes of guest RAM.
    pub memory: u64,
    pub vcpus: u8,
    /// Milliseconds its VID may take to answer one exit (0: no limit).
    pub exit_timeout_ms: u32,
    /// Index into [`Manifest::tasks`] of the task that runs it (its VID).
    pub vid: usize,
    /// What of the Hyper-V interface the VID presents (checked coherent).
    pub enlightenments: Enlightenments,
    /// Classic-scheduler reserve, cap (1/0x10000 of a CPU) and weight.
    pub classic: Classic,
    /// The CPUs its VPs run on (VP i on `cpus[i % len]`); empty: the default.
    pub cpus: Vec<u8>,
    /// Optional devices its VID gives it (`devices`).
    pub devices: sysimage::Devices,
    /// What a guest reset does (`on_reset`: restart, the default, or stop).
    pub on_reset: sysimage::OnReset,
    /// CPUID features hidden from it (`cpuid_mask`).
    pub cpuid_mask: sysimage::CpuidMask,
    /// Unknown MSRs read 0 and ignore writes (`ignore_unknown_msrs`).
    pub ignore_unknown_msrs: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    pub name: String,
    /// File name of its ELF executable (in `--bin-dir` and in the bootfs).
    pub binary: String,
    pub priority: Priority,
    pub memory: u64,
    pub stack: u64,
    pub restart: Restart,
    pub supervisor: bool,
    /// Indices into [`Manifest::endpoints`].
    pub serves: Vec<usize>,
    /// Indices into [`Manifest::endpoints`].
    pub uses: Vec<usize>,
    pub io_ports: Vec<IoPortRange>,
    /// Global system interrupt numbers.
    pub interrupts: Vec<u32>,
    /// Bytes of untyped memory the task is given (0: none).
    pub untyped: u64,
    /// Kernel objects it may make from it, by kind: as written, the
    /// default, and the partition manager's share (none without untyped).
    pub objects: abi::Entries,
    /// The CPU the supervisor puts its scheduling context on (0: the boot
    /// CPU; it stays there if the machine has no such CPU).
    pub cpu: u8,
    /// Fault injection: killed this many milliseconds after each start (0: never).
    pub kill_every_ms: u32,
    /// Kills at most (0: no limit).
    pub kill_limit: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    /// Index into [`Manifest::tasks`].
    pub server: usize,
}

impl Manifest {
    /// The root task, started by the kernel (always task 0).
    pub fn supervisor(&self) -> &Task {
        &self.tasks[0]
    }
}

/// Reads and checks the manifest at `path`; partition files are resolved
/// against its directory.
pub fn load(path: &Path) -> Result<Manifest, Errors> {
    let origin = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| Errors::one(Error::new(&origin, "", format!("cannot read: {e}"))))?;
    parse_in(&text, &origin, path.parent().unwrap_or(Path::new("")))
}

fn internal(message: String) -> Errors {
    Errors::one(Error::new("internal error", "", message))
}

/// Encodes `manifest` as the compiled manifest (the bootfs file `manifest`).
pub fn compile(manifest: &Manifest) -> Result<Vec<u8>, Errors> {
    let over = |what: &str| internal(format!("{what} exceed the compiled manifest's bounds"));
    let index = |i: usize| u8::try_from(i).map_err(|_| over("indices"));
    let mut tasks = heapless::Vec::new();
    for t in &manifest.tasks {
        let mut task = compiled::Task {
            name: &t.name,
            binary: &t.binary,
            priority: t.priority,
            memory: t.memory,
            stack: t.stack,
            restart: t.restart,
            serves: heapless::Vec::new(),
            uses: heapless::Vec::new(),
            io_ports: heapless::Vec::from_slice(&t.io_ports).map_err(|_| over("I/O ranges"))?,
            interrupts: heapless::Vec::new(),
            untyped: t.untyped,
            objects: t.objects,
            cpu: t.cpu,
            kill_every_ms: t.kill_every_ms,
            kill_limit: t.kill_limit,
        };
        for &e in &t.serves {
            task.serves.push(compiled::EndpointIndex(index(e)?)).map_err(|_| over("serves"))?;
        }
        for &e in &t.uses {
            let name = &manifest.endpoints.get(e).ok_or_else(|| over("endpoint indices"))?.name;
            task.uses
                .push(compiled::Use { endpoint: compiled::EndpointIndex(index(e)?), name })
                .map_err(|_| over("uses"))?;
        }
        for &gsi in &t.interrupts {
            task.interrupts.push(compiled::Gsi(gsi)).map_err(|_| over("interrupts"))?;
        }
        tasks.push(task).map_err(|_| over("tasks"))?;
    }
    let mut endpoints = heapless::Vec::new();
    for e in &manifest.endpoints {
        let endpoint = compiled::Endpoint { name: &e.name, server: compiled::TaskIndex(index(e.server)?) };
        endpoints.push(endpoint).map_err(|_| over("endpoints"))?;
    }
    let files: Vec<(String, Vec<String>)> = (0..manifest.partitions.len())
        .map(|k| {
            let modules = (0..manifest.partitions[k].modules.len()).map(|i| sysimage::guest_module_name(k, i));
            (sysimage::guest_image_name(k), modules.collect())
        })
        .collect();
    let mut partitions = heapless::Vec::new();
    for (p, (image, modules)) in manifest.partitions.iter().zip(&files) {
        let modules: Vec<&str> = modules.iter().map(String::as_str).collect();
        let partition = compiled::Partition {
            name: &p.name,
            image,
            modules: heapless::Vec::from_slice(&modules).map_err(|_| over("modules"))?,
            cmdline: &p.cmdline,
            memory: p.memory,
            vcpus: p.vcpus,
            exit_timeout_ms: p.exit_timeout_ms,
            vid: compiled::TaskIndex(index(p.vid)?),
            enlightenments: p.enlightenments,
            classic: p.classic,
            cpus: heapless::Vec::from_slice(&p.cpus).map_err(|_| over("cpus"))?,
            devices: p.devices,
            on_reset: p.on_reset,
            cpuid_mask: p.cpuid_mask,
            ignore_unknown_msrs: p.ignore_unknown_msrs,
        };
        partitions.push(partition).map_err(|_| over("partitions"))?;
    }
    let mut connections = heapless::Vec::new();
    for c in &manifest.connections {
        let party = |p: Party| -> Result<compiled::Party, Errors> {
            Ok(match p {
                Party::Partition(k) => compiled::Party::Partition(compiled::PartitionIndex(index(k)?)),
                Party::Task(t) => compiled::Party::Task(compiled::TaskIndex(index(t)?)),
            })
        };
        let connection = compiled::Connection {
            from: party(c.from)?,
            to: party(c.to)?,
            port_type: c.port_type,
            connection_id: c.connection_id,
            port_id: c.port_id,
            target_vp: c.target_vp,
            sint: c.sint,
            flag: c.flag,
            flag_count: c.flag_count,
            from_page: c.from_page,
            to_page: c.to_page,
        };
        connections.push(connection).map_err(|_| over("connections"))?;
    }
    let m = compiled::Manifest {
        version: compiled::VERSION,
        system: &manifest.name,
        tasks,
        endpoints,
        partitions,
        scheduler: manifest.scheduler,
        connections,
        soak_kill_every_ms: manifest.soak_kill_every_ms,
    };
    let bytes = m.to_vec();
    // What the supervisor will check, checked here first.
    compiled::Manifest::parse(&bytes).map_err(|e| internal(format!("the compiled manifest is refused: {e}")))?;
    Ok(bytes)
}

/// True for a little-endian x86-64 ELF64 executable or shared object.
fn is_x86_64_elf(bytes: &[u8]) -> bool {
    let half = |at: usize| bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    bytes.len() >= 64
        && bytes.starts_with(b"\x7fELF\x02\x01")
        && matches!(half(16), Some(2 | 3))
        && half(18) == Some(62)
}

/// Builds the bootfs: the compiled manifest, then each task's binary
/// (`bin_dir/<binary>`, once per distinct binary) in start order, then each
/// partition's guest kernel (`guest<k>:image`) and modules
/// (`guest<k>:module<i>`), `k` its index in file order.
pub fn build_image(manifest: &Manifest, bin_dir: &Path) -> Result<Vec<u8>, Errors> {
    let compiled = compile(manifest)?;
    let mut errors = Vec::new();
    let mut binaries: Vec<(&str, Vec<u8>)> = Vec::new();
    for t in &manifest.tasks {
        if binaries.iter().any(|(name, _)| *name == t.binary) {
            continue;
        }
        let path = bin_dir.join(&t.binary);
        match std::fs::read(&path) {
            Err(e) => errors.push(Error::task(&t.name, "binary", format!("cannot read \"{}\": {e}", path.display()))),
            Ok(bytes) if !is_x86_64_elf(&bytes) => errors.push(Error::task(
                &t.name,
                "binary",
                format!("\"{}\" is not an x86-64 ELF executable", path.display()),
            )),
            Ok(bytes) => binaries.push((&t.binary, bytes)),
        }
    }
    let mut guests: Vec<(String, Vec<u8>)> = Vec::new();
    for (k, p) in manifest.partitions.iter().enumerate() {
        let named = std::iter::once(("image", sysimage::guest_image_name(k), &p.image));
        let modules = p.modules.iter().enumerate().map(|(i, m)| ("modules", sysimage::guest_module_name(k, i), m));
        for (field, name, path) in named.chain(modules) {
            match std::fs::read(path) {
                Ok(bytes) => guests.push((name, bytes)),
                Err(e) => {
                    errors.push(Error::partition(&p.name, field, format!("cannot read \"{}\": {e}", path.display())))
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(Errors::sorted(errors));
    }
    let mut files: Vec<(&str, &[u8])> = vec![(MANIFEST_FILE, &compiled)];
    files.extend(binaries.iter().map(|(name, bytes)| (*name, &bytes[..])));
    files.extend(guests.iter().map(|(name, bytes)| (name.as_str(), &bytes[..])));
    // The header names the supervisor, the one task the kernel starts itself.
    let parsed = compiled::Manifest::parse(&compiled).map_err(|e| internal(format!("{e}")))?;
    let supervisor = parsed.supervisor().ok_or_else(|| internal("no supervisor".into()))?;
    let root = sysimage::root_task(supervisor, manifest.on_supervisor_death);
    let image = bootfs::write(&root, &files).map_err(|e| internal(format!("packing the bootfs: {e}")))?;
    sysimage::SystemImage::parse(&image).map_err(|e| internal(format!("the bootfs is refused: {e}")))?;
    Ok(image)
}

/// A table of the tasks in start order: priority, memory, stack, restart
/// policy and capabilities (and the CPU of a task not on the boot CPU).
pub fn summary(manifest: &Manifest) -> String {
    let mut out = format!(
        "system \"{}\": {} tasks, {} endpoints\n",
        manifest.name,
        manifest.tasks.len(),
        manifest.endpoints.len()
    );
    if manifest.on_supervisor_death != bootfs::OnDeath::Halt {
        out.insert_str(out.len() - 1, &format!(", on supervisor death: {}", manifest.on_supervisor_death.name()));
    }
    if !manifest.partitions.is_empty() {
        out.insert_str(out.len() - 1, &format!(", {} partitions", manifest.partitions.len()));
    }
    if manifest.soak_kill_every_ms != 0 {
        out.insert_str(
            out.len() - 1,
            &format!(", soak: a random task killed every {} ms", manifest.soak_kill_every_ms),
        );
    }
    let _ = writeln!(
        out,
        "  {:<20} {:>4}  {:>9}  {:>9}  {:<10} capabilities",
        "task", "prio", "memory", "stack", "restart"
    );
    for t in &manifest.tasks {
        let endpoint = |&i: &usize| manifest.endpoints.get(i).map_or("?".into(), |e| e.name.clone());
        let mut caps = Vec::new();
        if !t.serves.is_empty() {
            caps.push(format!("serves {}", t.serves.iter().map(endpoint).collect::<Vec<_>>().join(", ")));
        }
        if !t.uses.is_empty() {
            caps.push(format!("uses {}", t.uses.iter().map(endpoint).collect::<Vec<_>>().join(", ")));
        }
        if !t.io_ports.is_empty() {
            caps.push(format!(
                "ports {}",
                t.io_ports.iter().map(|&r| parse::show_ports(r)).collect::<Vec<_>>().join(", ")
            ));
        }
        if !t.interrupts.is_empty() {
            caps.push(format!("GSI {}", t.interrupts.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")));
        }
        if t.cpu != 0 {
            caps.push(format!("on CPU {}", t.cpu));
        }
        let restart = if t.supervisor {
            "supervisor"
        } else if t.restart == Restart::Always {
            "always"
        } else {
            "never"
        };
        let caps = if caps.is_empty() { "-".to_string() } else { caps.join("; ") };
        let _ = writeln!(
            out,
            "  {:<20} {:>4}  {:>9}  {:>9}  {:<10} {caps}",
            t.name,
            t.priority.0,
            parse::show_size(t.memory),
            parse::show_size(t.stack),
            restart
        );
    }
    if !manifest.partitions.is_empty() {
        let _ = writeln!(out, "  {:<20} {:>5}  {:>9}  {:<20} guest", "partition", "vcpus", "memory", "vid");
    }
    for p in &manifest.partitions {
        let vid = manifest.tasks.get(p.vid).map_or("?", |t| t.name.as_str());
        let mut guest = p.image.display().to_string();
        for m in &p.modules {
            let _ = write!(guest, " + {}", m.display());
        }
        if !p.cmdline.is_empty() {
            let _ = write!(guest, " \"{}\"", p.cmdline);
        }
        if !p.enlightenments.is_empty() {
            let _ = write!(guest, " [{}]", enlightenments::describe(p.enlightenments));
        }
        if manifest.scheduler == SchedulerPolicy::Classic {
            let fraction = |v: u32| f64::from(v) / f64::from(compiled::ONE_LP);
            let c = p.classic;
            let _ = write!(guest, " [classic: weight {}", c.weight);
            if c.reserve != 0 {
                let _ = write!(guest, ", reserve {:.3}", fraction(c.reserve));
            }
            if c.cap != compiled::ONE_LP {
                let _ = write!(guest, ", cap {:.3}", fraction(c.cap));
            }
            guest.push(']');
        }
        if !p.cpus.is_empty() {
            let cpus: Vec<String> = p.cpus.iter().map(u8::to_string).collect();
            let _ = write!(guest, " on CPUs {}", cpus.join(", "));
        }
        let _ =
            writeln!(out, "  {:<20} {:>5}  {:>9}  {:<20} {guest}", p.name, p.vcpus, parse::show_size(p.memory), vid);
    }
    for c in &manifest.connections {
        let name = |p: Party| match p {
            Party::Partition(k) => manifest.partitions.get(k).map_or("?", |p| p.name.as_str()),
            Party::Task(t) => manifest.tasks.get(t).map_or("?", |t| t.name.as_str()),
        };
        let kind = match c.port_type {
            PortType::Message => format!("message; VP {}, SINT {}", c.target_vp, c.sint),
            PortType::Event => format!(
                "event, flags {}..={}; VP {}, SINT {}",
                c.flag,
                u32::from(c.flag) + u32::from(c.flag_count) - 1,
                c.target_vp,
                c.sint
            ),
            PortType::Monitor => {
                let page =
                    |party: Party, gpa: Option<u64>| gpa.map(|gpa| format!(", page {gpa:#x} in {}", name(party)));
                let pages = [page(c.from, c.from_page), page(c.to, c.to_page)];
                format!("monitor{}", pages.into_iter().flatten().collect::<String>())
            }
        };
        let _ = writeln!(
            out,
            "  connection {:#x} of {} -> port {:#x} of {} ({kind})",
            c.connection_id,
            name(c.from),
            c.port_id,
            name(c.to),
        );
    }
    out
}
