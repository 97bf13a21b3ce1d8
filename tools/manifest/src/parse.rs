//! `system.toml` → [`Manifest`]: deserialization, then every check, each
//! mistake reported once with the task and field it is in.

use crate::{Connection, Endpoint, Error, Errors, Manifest, Partition, Party, PortType, Task};
use abi::{Entries, EntryKind};
use indexmap::IndexMap;
use scheduler::classic;
use serde::Deserialize;
use std::fmt;
use std::path::Path;
use sysimage::bootfs::OnDeath;
use sysimage::manifest as compiled;
use sysimage::manifest::{
    DEFAULT_EXIT_TIMEOUT_MS, IO_PORT_COUNT, MAX_CMDLINE, MAX_CPUS, MAX_ENDPOINTS, MAX_EXIT_TIMEOUT_MS, MAX_GSI,
    MAX_INTERRUPTS, MAX_IO_RANGES, MAX_KILL_EVERY_MS, MAX_MODULES, MAX_PARTITION_MEMORY, MAX_PARTITIONS,
    MAX_PARTITIONS_PER_VID, MAX_SERVES, MAX_TASK_MEMORY, MAX_TASKS, MAX_UNTYPED, MAX_USES, MAX_VCPUS,
    MIN_PARTITION_MEMORY, PARTITION_MANAGER, partition_overhead, valid_cmdline,
};
use sysimage::{
    CpuidMask, Devices, Enlightenment, Enlightenments, IoPortRange, MANIFEST_FILE, MAX_NAME_LEN, OnReset, PAGE_SIZE,
    Priority, Restart, SchedulerPolicy, objects,
};

// ---- The TOML as written. Integers stay i64 and sizes stay raw so that a
// ---- bad value is one collected error, not a parse failure.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    system: SystemToml,
    #[serde(default)]
    tasks: IndexMap<String, TaskToml>,
    #[serde(default)]
    partitions: IndexMap<String, PartitionToml>,
    scheduler: Option<SchedulerToml>,
    #[serde(default)]
    connections: Vec<ConnectionToml>,
}

/// `[[connections]]`: who may talk to whom (TLFS ports and connections).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionToml {
    /// The partition (or task) that holds the connection.
    from: String,
    /// The partition (or task) that owns the port.
    to: String,
    /// "message", "event" or "monitor".
    #[serde(rename = "type")]
    port_type: String,
    connection_id: i64,
    port_id: i64,
    /// The VP of `to` that deliveries go to [0].
    target_vp: Option<i64>,
    /// Messages and events: the SINT deliveries arrive through.
    sint: Option<i64>,
    /// Events: the first event flag of the port, and how many [1].
    flag: Option<i64>,
    flag_count: Option<i64>,
    /// Monitors: the GPA of the monitor page in `from`, and in `to`.
    from_page: Option<i64>,
    to_page: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchedulerToml {
    policy: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartitionToml {
    /// The guest kernel file, relative to the manifest's directory.
    image: String,
    #[serde(default)]
    modules: Vec<String>,
    #[serde(default)]
    cmdline: String,
    memory: RawSize,
    vcpus: Option<i64>,
    /// Milliseconds its VID may take to answer one exit (0: no limit).
    exit_timeout_ms: Option<i64>,
    /// The task that runs the partition.
    vid: String,
    /// A profile name or a table (see `enlightenments.rs`).
    enlightenments: Option<toml::Value>,
    /// Classic scheduler (TLFS 14.2): relative weight 1..=10000.
    weight: Option<i64>,
    /// Fractions of one logical processor, 0.0..=1.0.
    reserve: Option<toml::Value>,
    cap: Option<toml::Value>,
    /// The CPUs its VPs run on (VP i on cpus[i % len]).
    cpus: Option<Vec<i64>>,
    /// Optional devices by name (`sysimage::Devices::NAMES`).
    #[serde(default)]
    devices: Vec<String>,
    /// What a guest reset does: "restart" (the default) or "stop".
    on_reset: Option<String>,
    /// CPUID features hidden from it by name (`sysimage::cpuid_mask`).
    #[serde(default)]
    cpuid_mask: Vec<String>,
    /// Unknown MSRs read 0 and ignore writes instead of raising #GP.
    #[serde(default)]
    ignore_unknown_msrs: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemToml {
    name: String,
    /// "halt" or "reboot" [halt].
    on_supervisor_death: Option<String>,
    /// Soak fault injection: a random task killed this often [never].
    soak_kill_every_ms: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskToml {
    binary: Option<String>,
    priority: i64,
    memory: RawSize,
    stack: RawSize,
    #[serde(default)]
    supervisor: bool,
    restart: Option<String>,
    #[serde(default)]
    serves: Vec<String>,
    #[serde(default)]
    uses: Vec<String>,
    #[serde(default)]
    io_ports: Vec<IoPortsToml>,
    #[serde(default)]
    interrupts: Vec<i64>,
    /// Memory the task may turn into objects (partitions, guest memory).
    untyped: Option<RawSize>,
    /// Kernel objects it may make from it, by kind (`abi::EntryKind` names).
    objects: Option<IndexMap<String, i64>>,
    /// Fault injection: the supervisor kills it this long after each start.
    kill_every_ms: Option<i64>,
    /// At most this many kills (none: no limit).
    kill_limit: Option<i64>,
    /// The CPU its scheduling context is put on (index, 0 the boot CPU).
    cpu: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IoPortsToml {
    base: i64,
    count: i64,
}

/// A size as written: an integer of bytes or a string with a unit.
enum RawSize {
    Bytes(i128),
    Text(String),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RawSize, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: an integer number of bytes or a string like \"64KiB\"")
            }
            fn visit_i64<E>(self, v: i64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(v.into()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

const NAME_RULE: &str = "use 1 to 32 lowercase letters, digits, '-' or '_', starting with a letter";
const BINARY_RULE: &str = "use 1 to 32 letters, digits, '.', '-' or '_', not starting with '.'";

/// Task, endpoint and system names.
fn valid_ident(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Bootfs file names of task binaries.
fn valid_binary(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && !name.starts_with('.')
        && name != MANIFEST_FILE
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// `64KiB`, `1 MiB`, `2GiB`; bytes are integers, not strings.
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let shift = match unit.trim_start() {
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// `256 KiB`, `1 MiB`, or bytes.
pub(crate) fn show_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

pub(crate) fn show_ports(r: IoPortRange) -> String {
    format!("{:#x}..={:#x}", r.base, r.end() - 1)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != cb)).min(row[j] + 1).min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// ` (did you mean "x"?)` for the closest candidate within two edits.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    candidates
        .map(|c| (levenshtein(word, c), c))
        .filter(|&(d, _)| d <= 2 && d < word.len())
        .min()
        .map(|(_, c)| format!(" (did you mean \"{c}\"?)"))
        .unwrap_or_default()
}

/// A TOML syntax or type error (including a duplicate task, which TOML
/// itself forbids), as `origin:line:column: message (in `source line`)`.
pub(crate) fn toml_error(e: &toml::de::Error, text: &str, origin: &str) -> Error {
    let message = e.message().trim_end();
    // An empty span at 0 (a missing top-level table) locates nothing.
    let Some(span) = e.span().filter(|s| s.start <= s.end && s.end <= text.len() && *s != (0..0)) else {
        return Error::new(origin, "", message);
    };
    let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[span.start..].find('\n').map_or(text.len(), |i| span.start + i);
    let line = text[..span.start].matches('\n').count() + 1;
    let column = text[line_start..span.start].chars().count() + 1;
    let key = &text[span.clone()];
    let message = match message {
        "duplicate key" if !key.is_empty() => {
            format!("duplicate key `{key}` (each task and key may be declared once)")
        }
        _ => message.to_string(),
    };
    let source = text[line_start..line_end].trim();
    Error::new(format!("{origin}:{line}:{column}"), "", format!("{message} (in `{source}`)"))
}

/// One task's values after the per-task checks (`None`: already reported).
struct Draft<'t> {
    name: &'t str,
    toml: &'t TaskToml,
    binary: String,
    priority: Option<u8>,
    memory: u64,
    stack: u64,
    restart: Restart,
    io_ports: Vec<IoPortRange>,
    interrupts: Vec<u32>,
    untyped: u64,
    /// As written (`None`: the default).
    objects: Option<Entries>,
    cpu: u8,
    kill_every_ms: u32,
    kill_limit: u16,
}

fn check_size(task: &str, field: &str, raw: &RawSize, errors: &mut Vec<Error>) -> Option<u64> {
    let bytes = match raw {
        RawSize::Bytes(n) => u64::try_from(*n).ok(),
        RawSize::Text(text) => parse_size(text),
    };
    let problem = match bytes {
        None => match raw {
            RawSize::Bytes(n) => format!("{n} is not a size in bytes"),
            RawSize::Text(t) => {
                format!(
                    "\"{t}\" is not a size (write an integer number of bytes, or a number with KiB, MiB or GiB such as \"64KiB\")"
                )
            }
        },
        Some(0) => "must not be zero".into(),
        Some(n) if !n.is_multiple_of(PAGE_SIZE) => {
            format!("{n} bytes is not a multiple of the page size ({PAGE_SIZE} bytes)")
        }
        Some(n) if n > MAX_TASK_MEMORY => {
            format!("{} is too large (at most {})", show_size(n), show_size(MAX_TASK_MEMORY))
        }
        Some(n) => return Some(n),
    };
    errors.push(Error::task(task, field, problem));
    None
}

/// Checks of one task that need no other task.
fn check_task<'t>(name: &'t str, t: &'t TaskToml, e: &mut Vec<Error>) -> Draft<'t> {
    let err = |e: &mut Vec<Error>, field: &str, msg: String| e.push(Error::task(name, field, msg));
    if !valid_ident(name) {
        err(e, "name", format!("invalid task name ({NAME_RULE})"));
    }
    if let Some(binary) = &t.binary
        && !valid_binary(binary)
    {
        err(e, "binary", format!("invalid binary name \"{binary}\" ({BINARY_RULE}; \"{MANIFEST_FILE}\" is reserved)"));
    }
    let priority = u8::try_from(t.priority).ok().filter(|&p| Priority(p).is_valid());
    if priority.is_none() {
        err(e, "priority", format!("{} is out of range (0..={}, higher runs first)", t.priority, Priority::MAX.0));
    }
    let memory = check_size(name, "memory", &t.memory, e);
    let stack = check_size(name, "stack", &t.stack, e);
    let untyped = t.untyped.as_ref().and_then(|raw| check_untyped(name, raw, e)).unwrap_or(0);
    if t.supervisor && t.untyped.is_some() {
        err(e, "untyped", "the supervisor already holds all untyped memory".into());
    }
    let objects = t.objects.as_ref().map(|table| check_objects(name, table, e));
    if t.objects.is_some() && t.supervisor {
        err(e, "objects", "the supervisor already holds every kernel-table entry".into());
    } else if t.objects.is_some() && t.untyped.is_none() {
        err(e, "objects", "the task has no untyped memory to make them from (add untyped)".into());
    }
    if let (Some(memory), Some(stack)) = (memory, stack)
        && stack > memory
    {
        err(e, "stack", format!("{} is larger than memory ({})", show_size(stack), show_size(memory)));
    }
    let cpu = match t.cpu {
        None => 0,
        Some(_) if t.supervisor => {
            err(e, "cpu", "the kernel starts the supervisor on the boot CPU (remove cpu)".into());
            0
        }
        Some(n) => u8::try_from(n).ok().filter(|&c| c < MAX_CPUS).unwrap_or_else(|| {
            err(e, "cpu", format!("{n} is out of range (0..={}, 0 is the boot CPU)", MAX_CPUS - 1));
            0
        }),
    };
    // On the supervisor it means the supervisor faults on purpose that long
    // after its start (and, nothing restarting it, once): the system then
    // meets `[system] on_supervisor_death`.
    let kill_every_ms = match t.kill_every_ms {
        None => 0,
        Some(ms) => u32::try_from(ms).ok().filter(|&m| (1..=MAX_KILL_EVERY_MS).contains(&m)).unwrap_or_else(|| {
            err(e, "kill_every_ms", format!("{ms} is out of range (1..={MAX_KILL_EVERY_MS} milliseconds)"));
            0
        }),
    };
    let kill_limit = match t.kill_limit {
        None => 0,
        Some(_) if t.kill_every_ms.is_none() => {
            err(e, "kill_limit", "it limits kill_every_ms, which is not set".into());
            0
        }
        Some(_) if t.supervisor => {
            err(e, "kill_limit", "the supervisor dies once: nothing restarts it (remove kill_limit)".into());
            0
        }
        Some(n) => u16::try_from(n).ok().filter(|&n| n >= 1).unwrap_or_else(|| {
            err(e, "kill_limit", format!("{n} is out of range (1..={})", u16::MAX));
            0
        }),
    };
    let restart = match (t.supervisor, t.restart.as_deref()) {
        (true, None) => Restart::Never,
        (true, Some(_)) => {
            err(
                e,
                "restart",
                "the supervisor has no restart policy (the kernel starts it once; remove restart)".into(),
            );
            Restart::Never
        }
        (false, None | Some("always")) => Restart::Always,
        (false, Some("never")) => Restart::Never,
        (false, Some(other)) => {
            err(e, "restart", format!("unknown policy \"{other}\" (expected \"always\" or \"never\")"));
            Restart::Always
        }
    };
    for (field, list, max) in [("serves", &t.serves, MAX_SERVES), ("uses", &t.uses, MAX_USES)] {
        for (i, endpoint) in list.iter().enumerate() {
            if !valid_ident(endpoint) {
                err(e, field, format!("invalid endpoint name \"{endpoint}\" ({NAME_RULE})"));
            } else if list[..i].contains(endpoint) {
                err(e, field, format!("endpoint \"{endpoint}\" is listed twice"));
            }
        }
        if list.len() > max {
            err(e, field, format!("{} endpoints, at most {max}", list.len()));
        }
    }
    let mut io_ports = Vec::new();
    for r in &t.io_ports {
        if !(0..i64::from(IO_PORT_COUNT)).contains(&r.base) {
            err(e, "io_ports", format!("base {:#x} is not an I/O port (0x0..=0xffff)", r.base));
        } else if r.count <= 0 {
            err(e, "io_ports", format!("range at {:#x} has count {} (at least 1)", r.base, r.count));
        } else if r.count > i64::from(IO_PORT_COUNT) - r.base {
            err(e, "io_ports", format!("{:#x} + {} runs past port 0xffff", r.base, r.count));
        } else {
            // In range: base <= 0xffff and count <= 0x10000 - base.
            io_ports.push(IoPortRange { base: r.base as u16, count: r.count as u16 });
        }
    }
    if t.io_ports.len() > MAX_IO_RANGES {
        err(e, "io_ports", format!("{} ranges, at most {MAX_IO_RANGES}", t.io_ports.len()));
    }
    let mut interrupts = Vec::new();
    for &gsi in &t.interrupts {
        match u32::try_from(gsi).ok().filter(|&g| g <= MAX_GSI) {
            None => {
                err(e, "interrupts", format!("{gsi} is not an interrupt line the kernel routes (GSI 0..={MAX_GSI})"))
            }
            Some(g) if interrupts.contains(&g) => err(e, "interrupts", format!("GSI {g} is listed twice")),
            Some(g) => interrupts.push(g),
        }
    }
    if t.interrupts.len() > MAX_INTERRUPTS {
        err(e, "interrupts", format!("{} lines, at most {MAX_INTERRUPTS}", t.interrupts.len()));
    }
    Draft {
        name,
        toml: t,
        binary: t.binary.clone().unwrap_or_else(|| name.to_string()),
        priority,
        memory: memory.unwrap_or(0),
        stack: stack.unwrap_or(0),
        restart,
        io_ports,
        interrupts,
        untyped,
        objects,
        cpu,
        kill_every_ms,
        kill_limit,
    }
}

/// An objects quota: known kinds, each a count up to its kernel table.
fn check_objects(task: &str, table: &IndexMap<String, i64>, e: &mut Vec<Error>) -> Entries {
    let mut entries = Entries::NONE;
    for (name, &count) in table {
        let Some(kind) = EntryKind::named(name) else {
            let hint = did_you_mean(name, EntryKind::ALL.iter().map(|k| k.name()));
            let known = EntryKind::ALL.map(EntryKind::name).join(", ");
            e.push(Error::task(task, "objects", format!("unknown kind \"{name}\"{hint} (known: {known})")));
            continue;
        };
        match u16::try_from(count).ok().filter(|&n| usize::from(n) <= kind.table()) {
            Some(n) => entries = entries.with(kind, n),
            None => e.push(Error::task(
                task,
                "objects",
                format!("{name} = {count} is out of range (0..={}, the kernel's table)", kind.table()),
            )),
        }
    }
    entries
}

/// One VID runs at most [`MAX_PARTITIONS_PER_VID`] partitions: each one
/// after that is refused, naming the limit.
fn check_partitions_per_vid(partitions: &IndexMap<String, PartitionToml>, e: &mut Vec<Error>) {
    let mut runs: IndexMap<&str, usize> = IndexMap::new();
    for (name, p) in partitions {
        let count = runs.entry(p.vid.as_str()).or_default();
        *count += 1;
        if *count > MAX_PARTITIONS_PER_VID {
            e.push(Error::partition(
                name,
                "vid",
                format!(
                    "task \"{}\" runs {MAX_PARTITIONS_PER_VID} partitions already, the most one VID runs: give this one another VID",
                    p.vid
                ),
            ));
        }
    }
}

/// An untyped quota: a size like `memory`, but up to [`MAX_UNTYPED`].
fn check_untyped(task: &str, raw: &RawSize, errors: &mut Vec<Error>) -> Option<u64> {
    let bytes = match raw {
        RawSize::Bytes(n) => u64::try_from(*n).ok(),
        RawSize::Text(text) => parse_size(text),
    };
    let problem = match bytes {
        None => "is not a size (an integer number of bytes, or a number with KiB, MiB or GiB)".to_string(),
        Some(0) => "must not be zero (leave it out instead)".into(),
        Some(n) if !n.is_multiple_of(PAGE_SIZE) => {
            format!("{n} bytes is not a multiple of the page size ({PAGE_SIZE} bytes)")
        }
        Some(n) if n > MAX_UNTYPED => format!("{} is too large (at most {})", show_size(n), show_size(MAX_UNTYPED)),
        Some(n) => return Some(n),
    };
    errors.push(Error::task(task, "untyped", problem));
    None
}

/// Parses and checks a manifest; `origin` names it in TOML error locations.
/// Partition files stay as written (relative to the current directory).
pub fn parse(text: &str, origin: &str) -> Result<Manifest, Errors> {
    parse_in(text, origin, Path::new(""))
}

/// The bytes a size stands for, if it is one.
fn raw_bytes(raw: &RawSize) -> Option<u64> {
    match raw {
        RawSize::Bytes(n) => u64::try_from(*n).ok(),
        RawSize::Text(text) => parse_size(text),
    }
}

/// Checks one partition's own fields; `None` if any is wrong (reported).
fn check_partition(
    name: &str,
    p: &PartitionToml,
    dir: &Path,
    tasks: &IndexMap<String, TaskToml>,
    classic_policy: bool,
    e: &mut Vec<Error>,
) -> Option<Partition> {
    let before = e.len();
    let err = |e: &mut Vec<Error>, field: &str, msg: String| e.push(Error::partition(name, field, msg));
    if !valid_ident(name) {
        err(e, "name", format!("invalid partition name ({NAME_RULE})"));
    }
    if p.image.is_empty() {
        err(e, "image", "must name the guest kernel file".into());
    }
    if p.modules.iter().any(String::is_empty) {
        err(e, "modules", "a module file name is empty".into());
    }
    if p.modules.len() > MAX_MODULES {
        err(e, "modules", format!("{} modules, at most {MAX_MODULES}", p.modules.len()));
    }
    if p.cmdline.len() > MAX_CMDLINE {
        err(e, "cmdline", format!("{} bytes, at most {MAX_CMDLINE}", p.cmdline.len()));
    } else if !valid_cmdline(&p.cmdline) {
        err(e, "cmdline", "use printable ASCII characters and spaces only".into());
    }
    let memory = raw_bytes(&p.memory);
    let (min, max) = (show_size(MIN_PARTITION_MEMORY), show_size(MAX_PARTITION_MEMORY));
    let memory = match memory {
        None => {
            err(e, "memory", "is not a size (an integer number of bytes, or a number with KiB, MiB or GiB)".into());
            None
        }
        Some(n) if !n.is_multiple_of(PAGE_SIZE) => {
            err(e, "memory", format!("{n} bytes is not a multiple of the page size ({PAGE_SIZE} bytes)"));
            None
        }
        Some(n) if !(MIN_PARTITION_MEMORY..=MAX_PARTITION_MEMORY).contains(&n) => {
            err(e, "memory", format!("{} is out of range ({min} to {max})", show_size(n)));
            None
        }
        Some(n) => Some(n),
    };
    let vcpus = p.vcpus.unwrap_or(1);
    if !(1..=i64::from(MAX_VCPUS)).contains(&vcpus) {
        err(e, "vcpus", format!("{vcpus} is out of range (1..={MAX_VCPUS})"));
    }
    let exit_timeout_ms = p.exit_timeout_ms.unwrap_or(i64::from(DEFAULT_EXIT_TIMEOUT_MS));
    if !(0..=i64::from(MAX_EXIT_TIMEOUT_MS)).contains(&exit_timeout_ms) {
        err(
            e,
            "exit_timeout_ms",
            format!("{exit_timeout_ms} is out of range (0..={MAX_EXIT_TIMEOUT_MS}; 0 is no limit)"),
        );
    }
    match tasks.get(p.vid.as_str()) {
        None => {
            let hint = did_you_mean(&p.vid, tasks.keys().map(String::as_str));
            err(e, "vid", format!("no task \"{}\"{hint}", p.vid));
        }
        Some(t) if t.supervisor => {
            err(e, "vid", format!("task \"{}\" is the supervisor, which runs no partitions", p.vid))
        }
        Some(t) if t.untyped.is_none() => err(
            e,
            "vid",
            format!(
                "task \"{}\" has no untyped quota (give it untyped = \"64KiB\": it makes its exit endpoint from it)",
                p.vid
            ),
        ),
        Some(t) if !t.uses.iter().any(|u| u == PARTITION_MANAGER) => err(
            e,
            "vid",
            format!(
                "task \"{}\" does not use the \"{PARTITION_MANAGER}\" endpoint (a VID attaches its partitions there: add it to its uses)",
                p.vid
            ),
        ),
        Some(_) => {}
    }
    let enlightenments = crate::enlightenments::check(name, p.enlightenments.as_ref(), e);
    let devices = check_devices(name, &p.devices, enlightenments, e);
    let on_reset = match p.on_reset.as_deref() {
        None => OnReset::default(),
        Some(policy) => OnReset::NAMES.iter().find(|(n, _)| *n == policy).map(|&(_, o)| o).unwrap_or_else(|| {
            err(e, "on_reset", format!("unknown policy \"{policy}\" (expected \"restart\" or \"stop\")"));
            OnReset::default()
        }),
    };
    let cpuid_mask = check_cpuid_mask(name, &p.cpuid_mask, e);
    let classic = check_classic(name, p, classic_policy, e);
    // A VID's contexts are bounded by its own priority (their ceiling):
    // a reserve runs its VPs above theirs.
    let vid_priority = tasks.get(p.vid.as_str()).map(|t| t.priority);
    if let (Some(c), Some(prio)) = (classic, vid_priority)
        && c.reserve != 0
        && prio < i64::from(classic::RESERVE_PRIORITY)
    {
        err(
            e,
            "reserve",
            format!(
                "its VID \"{}\" runs at priority {prio}, below the reserve's priority {} (a VID can give its VPs no \
                 priority above its own)",
                p.vid,
                classic::RESERVE_PRIORITY
            ),
        );
    }
    let mut cpus = Vec::new();
    for &cpu in p.cpus.iter().flatten() {
        if !(0..i64::from(MAX_CPUS)).contains(&cpu) {
            err(e, "cpus", format!("CPU {cpu} is out of range (0..={}, 0 is the boot CPU)", MAX_CPUS - 1));
        } else if cpus.contains(&(cpu as u8)) {
            err(e, "cpus", format!("CPU {cpu} is listed twice"));
        } else {
            cpus.push(cpu as u8);
        }
    }
    if p.cpus.as_ref().is_some_and(Vec::is_empty) {
        err(e, "cpus", "is empty (leave it out for the default placement: VP i on CPU i mod the CPU count)".into());
    }
    if e.len() > before {
        return None;
    }
    Some(Partition {
        name: name.to_string(),
        image: dir.join(&p.image),
        modules: p.modules.iter().map(|m| dir.join(m)).collect(),
        cmdline: p.cmdline.clone(),
        memory: memory?,
        vcpus: vcpus as u8,
        exit_timeout_ms: exit_timeout_ms as u32,
        vid: usize::MAX, // set once tasks are in start order
        enlightenments: enlightenments?,
        classic: classic?,
        cpus,
        devices,
        on_reset,
        cpuid_mask,
        ignore_unknown_msrs: p.ignore_unknown_msrs,
    })
}

/// `cpuid_mask`: known feature names, each once, closed under their needs
/// (hiding XSAVE hides AVX too).
fn check_cpuid_mask(name: &str, list: &[String], e: &mut Vec<Error>) -> CpuidMask {
    let err = |e: &mut Vec<Error>, msg: String| e.push(Error::partition(name, "cpuid_mask", msg));
    let names = || sysimage::cpuid_mask::FEATURES.iter().map(|f| f.name);
    let mut mask = CpuidMask::NONE;
    for feature in list {
        match CpuidMask::named(feature) {
            None => {
                // The hint, or (the list is long) every name without one.
                let hint = did_you_mean(feature, names());
                let known: Vec<&str> = names().collect();
                let rest = if hint.is_empty() { format!(" (known: {})", known.join(", ")) } else { hint };
                err(e, format!("unknown feature \"{feature}\"{rest}"));
            }
            Some(f) if mask.contains(f) => err(e, format!("\"{feature}\" is listed twice")),
            Some(f) => mask = mask.with(f),
        }
    }
    if let Err((feature, need)) = mask.check() {
        err(e, format!("hides \"{need}\" but not \"{feature}\", which needs it (hide both)"));
    }
    mask
}

/// `devices`: known names, each once, with what each needs of the
/// partition's enlightenments (`None`: they could not be checked).
fn check_devices(name: &str, list: &[String], enlightenments: Option<Enlightenments>, e: &mut Vec<Error>) -> Devices {
    let err = |e: &mut Vec<Error>, msg: String| e.push(Error::partition(name, "devices", msg));
    let mut devices = Devices::NONE;
    for device in list {
        match Devices::NAMES.iter().find(|(n, _)| n == device) {
            None => {
                let hint = did_you_mean(device, Devices::NAMES.iter().map(|(n, _)| *n));
                let known: Vec<String> = Devices::NAMES.iter().map(|(n, _)| format!("\"{n}\"")).collect();
                err(e, format!("unknown device \"{device}\"{hint} (known: {})", known.join(", ")));
            }
            Some(&(_, d)) if devices.contains(d) => err(e, format!("\"{device}\" is listed twice")),
            Some(&(_, d)) => devices = devices.with(d),
        }
    }
    if devices.contains(Devices::HYPERV_TESTDEV)
        && enlightenments.is_some_and(|set| !set.contains(Enlightenment::Synic))
    {
        err(e, "\"hyperv-testdev\" needs the synic enlightenment (add synic = true to its enlightenments)".into());
    }
    devices
}

/// A reserve or cap as written: a fraction of one logical processor, a
/// float from 0.0 to 1.0 (0 and 1 may be integers), in 1/0x10000 of an LP.
fn fraction(value: &toml::Value) -> Result<u32, String> {
    let f = match *value {
        toml::Value::Float(f) => f,
        toml::Value::Integer(i @ (0 | 1)) => i as f64,
        _ => return Err(format!("{value} is not a fraction of one logical processor (write 0.0 to 1.0, e.g. 0.25)")),
    };
    if !(0.0..=1.0).contains(&f) {
        return Err(format!("{f} is out of range (a fraction of one logical processor, 0.0 to 1.0)"));
    }
    Ok((f * f64::from(classic::ONE_LP)).round() as u32)
}

/// The classic scheduler's parameters (TLFS 14.2), checked by the rules
/// of `scheduler::classic`, each with its own message; only under
/// `[scheduler] policy = "classic"`.
fn check_classic(name: &str, p: &PartitionToml, policy: bool, e: &mut Vec<Error>) -> Option<compiled::Classic> {
    let before = e.len();
    let err = |e: &mut Vec<Error>, field: &str, msg: String| e.push(Error::partition(name, field, msg));
    let given = [("weight", p.weight.is_some()), ("reserve", p.reserve.is_some()), ("cap", p.cap.is_some())];
    if !policy {
        for (field, _) in given.iter().filter(|(_, set)| *set) {
            err(e, field, "is a classic scheduler parameter: add [scheduler] policy = \"classic\"".into());
        }
    }
    let mut c = classic::Classic::DEFAULT;
    if let Some(w) = p.weight {
        match u32::try_from(w) {
            Ok(w) => c.weight = w,
            Err(_) => err(e, "weight", format!("{w} is out of range (1..=10000, 100 the default)")),
        }
    }
    for (field, value, into) in [("reserve", &p.reserve, &mut c.reserve), ("cap", &p.cap, &mut c.cap)] {
        match value.as_ref().map(fraction) {
            Some(Ok(v)) => *into = v,
            Some(Err(msg)) => err(e, field, msg),
            None => {}
        }
    }
    if e.len() > before {
        return None;
    }
    if let Err(problem) = c.check() {
        let field = match problem {
            classic::ClassicError::ReserveRange(_) | classic::ClassicError::ReserveAboveCap { .. } => "reserve",
            classic::ClassicError::CapRange(_) | classic::ClassicError::ZeroCap => "cap",
            _ => "weight",
        };
        let hint = match problem {
            classic::ClassicError::WeightRange(_) => " (1..=10000, 100 the default)",
            classic::ClassicError::ZeroCap => " (leave cap out for no cap)",
            _ => "",
        };
        err(e, field, format!("{problem}{hint}"));
        return None;
    }
    Some(compiled::Classic { reserve: c.reserve, cap: c.cap, weight: c.weight as u16 })
}

/// Checks the `[[connections]]` (their partitions already checked:
/// `checked[k]` is `None` for one with errors) and returns them with
/// partition indices in file order.
fn check_connections(file: &FileToml, checked: &[Option<Partition>], e: &mut Vec<Error>) -> Vec<Connection> {
    use compiled::{EVENT_FLAGS_PER_SINT, MAX_CONNECTION_ID, MAX_CONNECTIONS, SINT_COUNT};
    let mut out = Vec::new();
    if file.connections.len() > MAX_CONNECTIONS {
        e.push(Error::system(
            "connections",
            format!("{} connections, at most {MAX_CONNECTIONS}", file.connections.len()),
        ));
    }
    // Monitor pages so far: (partition, GPA, connection number, field).
    let mut monitor_pages: Vec<(usize, u64, usize, &'static str)> = Vec::new();
    let broker = file.tasks.iter().find(|(_, t)| t.serves.iter().any(|s| s == compiled::BROKER));
    if !file.connections.is_empty() && broker.is_none() {
        e.push(Error::system(
            "connections",
            format!(
                "no task serves the \"{}\" endpoint (the broker carries every connection: add it, above the VIDs)",
                compiled::BROKER
            ),
        ));
    }
    for (i, c) in file.connections.iter().enumerate() {
        let before = e.len();
        let subject = format!("connection {} (\"{}\" to \"{}\")", i + 1, c.from, c.to);
        let err = |e: &mut Vec<Error>, field: &str, msg: String| e.push(Error::new(&subject, field, msg));
        let uses_broker = |t: &TaskToml| t.uses.iter().any(|u| u == compiled::BROKER);
        // A party: a partition (its VID speaks for it), or a task serving its
        // own ports (neither the supervisor nor the broker).
        let party = |field: &str, name: &str, e: &mut Vec<Error>| -> Option<Party> {
            let (k, task) = (file.partitions.get_index_of(name), file.tasks.get_index_of(name));
            if let (Some(_), Some(_)) = (k, task) {
                err(e, field, format!("\"{name}\" is both a partition and a task; rename one"));
                return None;
            }
            if let Some(t) = task {
                let (_, toml) = file.tasks.get_index(t).expect("index found above");
                if toml.supervisor || toml.serves.iter().any(|s| s == compiled::BROKER) {
                    err(e, field, format!("task \"{name}\" is the supervisor or the broker, which serve no port"));
                    return None;
                }
                if !uses_broker(toml) {
                    err(
                        e,
                        field,
                        format!(
                            "task \"{name}\" does not use the \"{}\" endpoint (add it to its uses)",
                            compiled::BROKER
                        ),
                    );
                }
                return Some(Party::Task(t));
            }
            let Some(k) = k else {
                let names = file.partitions.keys().chain(file.tasks.keys()).map(String::as_str);
                let hint = did_you_mean(name, names);
                err(e, field, format!("no partition or task \"{name}\"{hint}"));
                return None;
            };
            let vid = &file.partitions[k].vid;
            if checked[k].is_none() {
                err(
                    e,
                    field,
                    format!("partition \"{name}\" is not valid (see its errors), so it has no VID to carry it"),
                );
                return None;
            }
            if !file.tasks.get(vid.as_str()).is_some_and(uses_broker) {
                err(
                    e,
                    field,
                    format!(
                        "partition \"{name}\"'s VID \"{vid}\" does not use the \"{}\" endpoint (add it to its uses)",
                        compiled::BROKER
                    ),
                );
            }
            Some(Party::Partition(k))
        };
        let from = party("from", &c.from, e);
        let to = party("to", &c.to, e);
        let port_type = match c.port_type.as_str() {
            "message" => Some(PortType::Message),
            "event" => Some(PortType::Event),
            "monitor" => Some(PortType::Monitor),
            other => {
                let hint = did_you_mean(other, ["message", "event", "monitor"].into_iter());
                err(e, "type", format!("no port type \"{other}\"{hint} (\"message\", \"event\" and \"monitor\" are)"));
                None
            }
        };
        if let Some(t) = port_type {
            // A task party serves its ports itself: only partitions need the SynIC.
            let partition = |party: Option<Party>| match party {
                Some(Party::Partition(k)) => checked[k].as_ref(),
                _ => None,
            };
            check_connection_ends(c, t, [partition(from), partition(to)], &mut |f, m| err(e, f, m));
        }
        let id = |field: &str, v: i64, e: &mut Vec<Error>| -> Option<u32> {
            let id = u32::try_from(v).ok().filter(|&v| v <= MAX_CONNECTION_ID);
            if id.is_none() {
                err(e, field, format!("{v} is out of range (0..={MAX_CONNECTION_ID:#x}: a 24-bit ID, TLFS 11.10)"));
            }
            id
        };
        let connection_id = id("connection_id", c.connection_id, e);
        let port_id = id("port_id", c.port_id, e);
        let target_vp = c.target_vp.unwrap_or(0);
        if port_type == Some(PortType::Monitor) && c.target_vp.is_some() {
            err(
                e,
                "target_vp",
                "a monitor port has no target VP (TLFS 11.7: its trigger is signalled on the event connection its \
                 monitor page names; remove it)"
                    .into(),
            );
        }
        let vcpus = match to {
            Some(Party::Partition(k)) => checked[k].as_ref().map(|p| p.vcpus),
            Some(Party::Task(_)) => Some(1),
            None => None,
        };
        match (vcpus, to) {
            (Some(_), Some(Party::Task(_))) if target_vp != 0 => {
                err(e, "target_vp", format!("{target_vp}: a task's port has one target, VP 0 (task \"{}\")", c.to))
            }
            (Some(n), _) if !(0..i64::from(n)).contains(&target_vp) => err(
                e,
                "target_vp",
                format!("{target_vp} is not a VP of partition \"{}\" (it has {n}: 0..={})", c.to, n - 1),
            ),
            _ => {}
        }
        let is_monitor = port_type == Some(PortType::Monitor);
        let sint = c.sint.unwrap_or(0);
        match c.sint {
            None if port_type.is_some() && !is_monitor => err(
                e,
                "sint",
                format!(
                    "{} {} port needs the SINT its deliveries arrive through (0..={})",
                    if c.port_type == "event" { "an" } else { "a" },
                    c.port_type,
                    SINT_COUNT - 1
                ),
            ),
            Some(_) if is_monitor => err(
                e,
                "sint",
                "a monitor port has no SINT (TLFS 11.7: its trigger is signalled on the event connection its monitor \
                 page names; remove it)"
                    .into(),
            ),
            Some(s) if !(0..i64::from(SINT_COUNT)).contains(&s) => {
                err(e, "sint", format!("{s} is out of range (0..={})", SINT_COUNT - 1))
            }
            _ => {}
        }
        let (mut flag, mut flag_count) = (0, 0);
        if port_type == Some(PortType::Event) {
            let Some(first) = c.flag else {
                err(e, "flag", format!("an event port needs its flag number (0..={})", EVENT_FLAGS_PER_SINT - 1));
                continue;
            };
            let count = c.flag_count.unwrap_or(1);
            if !(0..i64::from(EVENT_FLAGS_PER_SINT)).contains(&first) {
                err(
                    e,
                    "flag",
                    format!("{first} is out of range (0..={}, the flags of one SINT)", EVENT_FLAGS_PER_SINT - 1),
                );
            } else if count < 1 || first + count > i64::from(EVENT_FLAGS_PER_SINT) {
                err(
                    e,
                    "flag_count",
                    format!(
                        "{count} flags from {first} do not fit the {EVENT_FLAGS_PER_SINT} flags of one SINT (1..={})",
                        i64::from(EVENT_FLAGS_PER_SINT) - first
                    ),
                );
            } else {
                (flag, flag_count) = (first as u16, count as u16);
            }
        } else if port_type.is_some() {
            for (field, given) in [("flag", c.flag.is_some()), ("flag_count", c.flag_count.is_some())] {
                if given {
                    err(e, field, format!("only an event port has flags (this one is a {} port)", c.port_type));
                }
            }
        }
        let pages =
            check_monitor_pages(c, i, port_type, [from, to], checked, &mut monitor_pages, &mut |f, m| err(e, f, m));
        // One partition's connection IDs and one partition's port IDs are unique.
        for (j, o) in file.connections[..i].iter().enumerate() {
            if o.from == c.from && o.connection_id == c.connection_id && connection_id.is_some() {
                err(
                    e,
                    "connection_id",
                    format!("{:#x} is already a connection of \"{}\" (connection {})", c.connection_id, c.from, j + 1),
                );
            }
            if o.to == c.to && o.port_id == c.port_id && port_id.is_some() {
                err(e, "port_id", format!("{:#x} is already a port of \"{}\" (connection {})", c.port_id, c.to, j + 1));
            }
        }
        if e.len() > before {
            continue;
        }
        if let (Some(from), Some(to), Some(port_type), Some(connection_id), Some(port_id)) =
            (from, to, port_type, connection_id, port_id)
        {
            out.push(Connection {
                from,
                to,
                port_type,
                connection_id,
                port_id,
                target_vp: target_vp as u8,
                sint: sint as u8,
                flag,
                flag_count,
                from_page: pages[0],
                to_page: pages[1],
            });
        }
    }
    out
}

/// A monitor connection's pages (TLFS 11.7.4): `from` is a partition, with
/// `from_page`; `to` has `to_page` if it is a partition and none if it is a
/// task; each is a page above the partition's RAM, below the platform's
/// MMIO and not another monitor page of the partition (`seen`, which this
/// extends). Other connections take neither field. Returns the pages
/// (`None` where absent or wrong, reported).
fn check_monitor_pages(
    c: &ConnectionToml,
    i: usize,
    port_type: Option<PortType>,
    parties: [Option<Party>; 2],
    checked: &[Option<Partition>],
    seen: &mut Vec<(usize, u64, usize, &'static str)>,
    err: &mut dyn FnMut(&str, String),
) -> [Option<u64>; 2] {
    let fields = [("from_page", c.from_page, &c.from), ("to_page", c.to_page, &c.to)];
    let Some(port_type) = port_type else { return [None; 2] };
    if port_type != PortType::Monitor {
        for (field, value, _) in fields {
            if value.is_some() {
                err(
                    field,
                    format!("only a monitor connection has a monitor page (this one is a {} connection)", c.port_type),
                );
            }
        }
        return [None; 2];
    }
    if let Some(Party::Task(_)) = parties[0] {
        err(
            "from",
            format!(
                "task \"{}\" cannot hold a monitor connection: the trigger is signalled on behalf of a partition, from \
                 its monitor page (hold it from a partition)",
                c.from
            ),
        );
    }
    if let Some(Party::Partition(k)) = parties[0] {
        let held = seen.iter().filter(|&&(o, _, j, field)| o == k && field == "from_page" && j != i).count();
        if held >= compiled::MAX_HELD_MONITORS {
            err(
                "from",
                format!(
                    "partition \"{}\" holds more than {} monitor connections (its VID inspects each page)",
                    c.from,
                    compiled::MAX_HELD_MONITORS
                ),
            );
        }
    }
    let mut pages = [None; 2];
    for (n, (field, value, name)) in fields.into_iter().enumerate() {
        let partition = match parties[n] {
            Some(Party::Partition(k)) => Some(k),
            Some(Party::Task(_)) if n == 1 => {
                if value.is_some() {
                    err(
                        field,
                        format!("task \"{name}\" has no guest-physical space for a monitor page (remove to_page)"),
                    );
                }
                continue;
            }
            // A task holding it (reported above), or a party in error.
            _ => continue,
        };
        let Some(value) = value else {
            err(
                field,
                format!(
                    "a monitor connection needs the GPA of its monitor page in partition \"{name}\" (a page above its \
                     RAM, below {:#x})",
                    compiled::PLATFORM_MMIO
                ),
            );
            continue;
        };
        let Some(k) = partition else { continue };
        let ram_end = checked[k].as_ref().map(|p| p.memory);
        let problem = match u64::try_from(value) {
            Err(_) => Some(format!("{value} is not a guest-physical address")),
            Ok(gpa) if !gpa.is_multiple_of(PAGE_SIZE) => Some(format!(
                "{gpa:#x} is not page-aligned (a monitor page of partition \"{name}\" is a {} page)",
                show_size(PAGE_SIZE)
            )),
            Ok(gpa) if ram_end.is_some_and(|end| gpa < end) => Some(format!(
                "{gpa:#x} is inside partition \"{name}\"'s RAM, which ends at {:#x} (a monitor page goes at or above it)",
                ram_end.unwrap_or_default()
            )),
            Ok(gpa) if gpa >= compiled::PLATFORM_MMIO => Some(format!(
                "{gpa:#x} is in partition \"{name}\"'s platform MMIO ({:#x} and up: I/O APIC, HPET, local APIC; a \
                 monitor page goes below it)",
                compiled::PLATFORM_MMIO
            )),
            Ok(gpa) => match seen.iter().find(|&&(o, other, _, _)| o == k && other == gpa) {
                Some(&(_, _, j, other_field)) => {
                    let which =
                        if j == i { "this connection's".to_string() } else { format!("connection {}'s", j + 1) };
                    Some(format!("{gpa:#x} is already a monitor page of partition \"{name}\" ({which} {other_field})"))
                }
                None => {
                    seen.push((k, gpa, i, field));
                    pages[n] = Some(gpa);
                    None
                }
            },
        };
        if let Some(problem) = problem {
            err(field, problem);
        }
    }
    pages
}

/// A connection's ends have what its port type needs (TLFS 11.11): the
/// holder (`from`) the privilege its guest calls with, the port's
/// partition (`to`) the SynIC its deliveries arrive through; the rules are
/// [`PortType::holder_can`] and [`PortType::owner_can`], which the compiled
/// manifest's check and the VID's CPUID share. `ends` are the checked
/// partitions (`None`: not valid, reported already).
fn check_connection_ends(
    c: &ConnectionToml,
    t: PortType,
    ends: [Option<&Partition>; 2],
    err: &mut dyn FnMut(&str, String),
) {
    let kind = &c.port_type;
    let a = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    let (call, arrives) = match t {
        PortType::Message => ("HvPostMessage", "a SIM slot and a SINT"),
        PortType::Event => ("HvSignalEvent", "SIEF flags and a SINT"),
        PortType::Monitor => {
            ("HvSignalEvent (its trigger is signalled on its behalf, TLFS 11.7)", "SIEF flags and a SINT")
        }
    };
    let add = "add synic = true to its enlightenments";
    if ends[0].is_some_and(|p| !t.holder_can(p.enlightenments)) {
        err(
            "from",
            format!(
                "partition \"{}\" cannot hold {a} {kind} connection: it would call {call}, which needs the {} privilege, \
                 granted with synic ({add})",
                c.from,
                t.privilege()
            ),
        );
    }
    if ends[1].is_some_and(|p| !t.owner_can(p.enlightenments)) {
        err(
            "to",
            format!(
                "partition \"{}\" cannot own {a} {kind} port: its deliveries arrive through the SynIC, in {arrives} \
                 ({add})",
                c.to
            ),
        );
    }
}

/// Parses and checks a manifest; `origin` names it in TOML error locations
/// and partition files are resolved against `dir` (the manifest's directory).
pub fn parse_in(text: &str, origin: &str, dir: &Path) -> Result<Manifest, Errors> {
    let file: FileToml = toml::from_str(text).map_err(|e| Errors::one(toml_error(&e, text, origin)))?;
    let mut e = Vec::new();

    if !valid_ident(&file.system.name) {
        e.push(Error::system("name", format!("invalid system name \"{}\" ({NAME_RULE})", file.system.name)));
    }
    let on_supervisor_death = match file.system.on_supervisor_death.as_deref() {
        None | Some("halt") => OnDeath::Halt,
        Some("reboot") => OnDeath::Reboot,
        Some(other) => {
            let hint = did_you_mean(other, ["halt", "reboot"].into_iter());
            e.push(Error::system(
                "on_supervisor_death",
                format!("no policy \"{other}\"{hint} (\"halt\" and \"reboot\" are)"),
            ));
            OnDeath::Halt
        }
    };
    let soak_kill_every_ms = match file.system.soak_kill_every_ms {
        None => 0,
        Some(ms) => u32::try_from(ms).ok().filter(|&m| (1..=MAX_KILL_EVERY_MS).contains(&m)).unwrap_or_else(|| {
            let why = format!("{ms} is out of range (1..={MAX_KILL_EVERY_MS} milliseconds)");
            e.push(Error::system("soak_kill_every_ms", why));
            0
        }),
    };
    let policy = match file.scheduler.as_ref().map(|s| s.policy.as_str()) {
        None => SchedulerPolicy::Kernel,
        Some("classic") => SchedulerPolicy::Classic,
        Some("root") => SchedulerPolicy::Root,
        Some("core") => SchedulerPolicy::Core,
        Some(other) => {
            let hint = did_you_mean(other, ["classic", "core", "root"].into_iter());
            e.push(Error::new(
                "scheduler",
                "policy",
                format!("no scheduler \"{other}\"{hint} (\"classic\", \"core\" and \"root\" are)"),
            ));
            SchedulerPolicy::Kernel
        }
    };
    let classic_policy = file.scheduler.as_ref().is_some_and(|s| s.policy == "classic");
    let partitions: Vec<Option<Partition>> = file
        .partitions
        .iter()
        .map(|(name, p)| check_partition(name, p, dir, &file.tasks, classic_policy, &mut e))
        .collect();
    check_reserves_per_cpu(&file.partitions, &partitions, &mut e);
    check_partitions_per_vid(&file.partitions, &mut e);
    let connections = check_connections(&file, &partitions, &mut e);
    if file.partitions.len() > MAX_PARTITIONS {
        e.push(Error::system("partitions", format!("{} partitions, at most {MAX_PARTITIONS}", file.partitions.len())));
    }
    if file.tasks.is_empty() {
        e.push(Error::system(
            "tasks",
            "the system has no tasks (declare at least the supervisor: [tasks.NAME] with supervisor = true)",
        ));
        return Err(Errors::sorted(e));
    }
    if file.tasks.len() > MAX_TASKS {
        e.push(Error::system("tasks", format!("{} tasks, at most {MAX_TASKS}", file.tasks.len())));
    }

    // Per task, in file order.
    let drafts: Vec<Draft<'_>> = file.tasks.iter().map(|(name, t)| check_task(name, t, &mut e)).collect();

    // Exactly one supervisor.
    let supervisors: Vec<&str> = drafts.iter().filter(|d| d.toml.supervisor).map(|d| d.name).collect();
    match supervisors[..] {
        [_] => {}
        [] => {
            e.push(Error::system("supervisor", "no task has supervisor = true (exactly one task, the root task, must)"))
        }
        _ => {
            let names = supervisors.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ");
            e.push(Error::system("supervisor", format!("tasks {names} all have supervisor = true (exactly one may)")));
        }
    }

    // The supervisor makes every task's scheduling context, whose ceiling
    // is what the supervisor itself runs with: none can be above it.
    if let [supervisor] = supervisors[..]
        && let Some(top) = drafts.iter().find(|d| d.name == supervisor).and_then(|d| d.priority)
    {
        for d in drafts.iter().filter(|d| d.priority.is_some_and(|p| Priority(p).is_higher_than(Priority(top)))) {
            let mine = d.priority.unwrap_or_default();
            e.push(Error::task(
                d.name,
                "priority",
                format!(
                    "{mine} is above the supervisor's {top} (the supervisor makes every task's scheduling context and \
                     can give none a priority above its own)"
                ),
            ));
        }
    }

    // Endpoints: one server each. Values are indices into `drafts`.
    let mut servers: IndexMap<&str, usize> = IndexMap::new();
    for (i, d) in drafts.iter().enumerate() {
        for endpoint in d.toml.serves.iter().filter(|n| valid_ident(n)) {
            match servers.get(endpoint.as_str()) {
                None => _ = servers.insert(endpoint, i),
                Some(&j) if j == i => {} // listed twice: reported above
                Some(&j) => e.push(Error::task(
                    d.name,
                    "serves",
                    format!("endpoint \"{endpoint}\" is already served by task \"{}\"", drafts[j].name),
                )),
            }
        }
    }
    if servers.len() > MAX_ENDPOINTS {
        e.push(Error::system("endpoints", format!("{} endpoints, at most {MAX_ENDPOINTS}", servers.len())));
    }

    // Uses: the endpoint exists, is another task's, and is served uphill.
    for (i, d) in drafts.iter().enumerate() {
        for endpoint in d.toml.uses.iter().filter(|n| valid_ident(n)) {
            let Some(&j) = servers.get(endpoint.as_str()) else {
                let hint = did_you_mean(endpoint, servers.keys().copied());
                e.push(Error::task(d.name, "uses", format!("no task serves endpoint \"{endpoint}\"{hint}")));
                continue;
            };
            let server = &drafts[j];
            if j == i {
                e.push(Error::task(
                    d.name,
                    "uses",
                    format!("endpoint \"{endpoint}\" is served by this task itself (a task cannot call itself)"),
                ));
            } else if let (Some(mine), Some(theirs)) = (d.priority, server.priority)
                && !Priority(theirs).is_higher_than(Priority(mine))
            {
                e.push(Error::task(
                    d.name,
                    "uses",
                    format!(
                        "endpoint \"{endpoint}\" is served by task \"{}\" at priority {theirs}, not higher than this task's {mine} \
                         (calls must go to a higher priority)",
                        server.name
                    ),
                ));
            }
        }
    }

    // Device resources: each port and interrupt line has one owner.
    for (i, d) in drafts.iter().enumerate() {
        for (a, &range) in d.io_ports.iter().enumerate() {
            for &other in &d.io_ports[..a] {
                if range.overlaps(other) {
                    let msg = format!("{} overlaps {} listed before it", show_ports(range), show_ports(other));
                    e.push(Error::task(d.name, "io_ports", msg));
                }
            }
            for earlier in &drafts[..i] {
                for &other in earlier.io_ports.iter().filter(|o| o.overlaps(range)) {
                    let msg =
                        format!("{} overlaps {} of task \"{}\"", show_ports(range), show_ports(other), earlier.name);
                    e.push(Error::task(d.name, "io_ports", msg));
                }
            }
        }
        for gsi in &d.interrupts {
            if let Some(earlier) = drafts[..i].iter().find(|o| o.interrupts.contains(gsi)) {
                e.push(Error::task(
                    d.name,
                    "interrupts",
                    format!("GSI {gsi} is also claimed by task \"{}\"", earlier.name),
                ));
            }
        }
    }

    if !e.is_empty() {
        return Err(Errors::sorted(e));
    }
    let mut manifest = assemble(&file.system.name, &drafts);
    manifest.scheduler = policy;
    manifest.on_supervisor_death = on_supervisor_death;
    manifest.soak_kill_every_ms = soak_kill_every_ms;
    // Task parties were indexed in file order: now in start order.
    manifest.connections = connections;
    for c in &mut manifest.connections {
        for party in [&mut c.from, &mut c.to] {
            if let Party::Task(t) = party {
                let (name, _) = file.tasks.get_index(*t).expect("task parties were checked");
                *t = manifest.tasks.iter().position(|task| &task.name == name).expect("every task is started");
            }
        }
    }
    for (p, toml) in partitions.into_iter().flatten().zip(file.partitions.values()) {
        let vid = manifest.tasks.iter().position(|t| t.name == toml.vid).expect("vid tasks were checked");
        manifest.partitions.push(Partition { vid, ..p });
    }
    grant_partition_memory(&mut manifest)?;
    grant_overlay_memory(&mut manifest)?;
    grant_objects(&mut manifest, &drafts);
    check_tables(&manifest)?;
    Ok(manifest)
}

/// The reserves of the VPs placed by their partition's `cpus` on one CPU
/// add up to one CPU at most (VPs placed by default are checked by their
/// VID at start, when it knows the machine's CPUs).
fn check_reserves_per_cpu(tomls: &IndexMap<String, PartitionToml>, checked: &[Option<Partition>], e: &mut Vec<Error>) {
    let mut on: std::collections::BTreeMap<u8, (u64, Vec<&str>)> = Default::default();
    for ((name, _), p) in tomls.iter().zip(checked) {
        let Some(p) = p.as_ref().filter(|p| !p.cpus.is_empty() && p.classic.reserve != 0) else { continue };
        for vp in 0..usize::from(p.vcpus) {
            let entry = on.entry(p.cpus[vp % p.cpus.len()]).or_default();
            entry.0 += u64::from(p.classic.reserve);
            if !entry.1.contains(&name.as_str()) {
                entry.1.push(name);
            }
        }
    }
    for (cpu, (total, names)) in on {
        if total > u64::from(classic::ONE_LP) {
            let problem = classic::ClassicError::ReservesAboveOneLp { lp: u32::from(cpu), total };
            let names = names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ");
            e.push(Error::new("scheduler", "reserve", format!("{problem} (the VPs of partitions {names})")));
        }
    }
}

/// Each task's objects quota: as written, else the default for a task with
/// untyped memory (`sysimage::objects::default_objects`, a scheduling
/// context per VP of its partitions, `vp_contexts`, and a memory object per
/// partition, `overlay_memory`); the partition
/// manager's is raised by what its partitions and monitor pages take (on
/// top of any it declares; it has no default).
fn grant_objects(manifest: &mut Manifest, drafts: &[Draft<'_>]) {
    let manager = manifest.endpoints.iter().find(|e| e.name == PARTITION_MANAGER).map(|e| e.server);
    let has_partitions = !manifest.partitions.is_empty();
    let monitors = monitor_connections(manifest);
    for (i, task) in manifest.tasks.iter_mut().enumerate() {
        let written = drafts.iter().find(|d| d.name == task.name).and_then(|d| d.objects);
        let runs_partitions = manifest.partitions.iter().any(|p| p.vid == i);
        let managing = has_partitions && manager == Some(i);
        task.objects = match written {
            Some(objects) => objects,
            None if task.untyped > 0 && !managing => {
                let ran = || manifest.partitions.iter().filter(|p| p.vid == i);
                let vps = ran().map(|p| u16::from(p.vcpus)).sum();
                let overlays = objects::overlay_memory(ran().count() as u16);
                let placed = objects::default_objects(runs_partitions)
                    .checked_add(&objects::vp_contexts(vps))
                    .and_then(|e| e.checked_add(&overlays));
                placed.unwrap_or(objects::default_objects(runs_partitions))
            }
            None => Entries::NONE,
        };
        if managing {
            for p in &manifest.partitions {
                // At most 8 partitions of 16 VPs: far below a count's limit.
                task.objects = task.objects.checked_add(&objects::partition(p.vcpus)).unwrap_or(task.objects);
            }
            // At most 32 connections.
            let pages = objects::monitor_pages(monitors as u16).checked_add(&objects::JOURNAL);
            task.objects = pages.and_then(|p| task.objects.checked_add(&p)).unwrap_or(task.objects);
        }
    }
}

/// The kernel entries the system takes fit the kernel's tables: one error
/// per kind that does not, saying who takes them.
fn check_tables(manifest: &Manifest) -> Result<(), Errors> {
    let tasks = &manifest.tasks[1..];
    let started: Vec<Entries> =
        tasks.iter().map(|t| objects::to_start(t.untyped > 0, !t.interrupts.is_empty())).collect();
    let supervisor =
        objects::total(started.iter().chain([&objects::shared(manifest.endpoints.len(), notified_tasks(manifest))]));
    let quotas = objects::total(tasks.iter().map(|t| &t.objects));
    let needed = supervisor.zip(quotas).and_then(|(s, q)| objects::total([&objects::KERNEL, &s, &q]));
    let Some(needed) = needed else {
        return Err(Errors::one(Error::system("objects", "the objects quotas overflow a count")));
    };
    let mut errors = Vec::new();
    for kind in objects::over_tables(&needed) {
        let name = kind.name();
        let by: Vec<String> = tasks
            .iter()
            .filter(|t| t.objects.get(kind) > 0)
            .map(|t| format!("{} {}", t.name, t.objects.get(kind)))
            .collect();
        let by = if by.is_empty() { "none".to_string() } else { by.join(", ") };
        errors.push(Error::system(
            "objects",
            format!(
                "{} {name} are more than the kernel's table of {} (the kernel and the supervisor take {} for the \
                 tasks it starts; quotas: {by})",
                needed.get(kind),
                kind.table(),
                needed.get(kind) - quotas.map_or(0, |q| q.get(kind)),
            ),
        ));
    }
    if errors.is_empty() { Ok(()) } else { Err(Errors::sorted(errors)) }
}

/// How many connections are to monitor ports: the partition manager makes
/// a page for each.
fn monitor_connections(manifest: &Manifest) -> usize {
    manifest.connections.iter().filter(|c| c.port_type == PortType::Monitor).count()
}

/// The tasks the broker notifies of deliveries (each speaking for a
/// port's party: its VID, or the task; and every task party), as
/// `sysimage::Manifest::notified_tasks` counts them.
pub(crate) fn notified_tasks(manifest: &Manifest) -> usize {
    let port_vids = manifest.connections.iter().map(|c| match c.to {
        Party::Partition(k) => manifest.partitions[k].vid,
        Party::Task(t) => t,
    });
    let holders = manifest.connections.iter().filter_map(|c| match c.from {
        Party::Task(t) => Some(t),
        Party::Partition(_) => None,
    });
    let mut vids: Vec<usize> = port_vids.chain(holders).collect();
    vids.sort_unstable();
    vids.dedup();
    vids.len()
}

/// The partition manager creates every partition: its untyped quota is
/// raised by what they need (guest RAM, plus 1 MiB each for the ROM page,
/// the partition and its VPs, plus the second-level tables that map the
/// RAM, plus each monitor connection's page and the tables of its two
/// mappings, `MONITOR_PAGE_NEED`, plus its journal, `JOURNAL_NEED`) on top
/// of any it declares.
fn grant_partition_memory(manifest: &mut Manifest) -> Result<(), Errors> {
    if manifest.partitions.is_empty() {
        return Ok(());
    }
    let monitors = monitor_connections(manifest) as u64 * compiled::MONITOR_PAGE_NEED;
    let needed: u64 = compiled::JOURNAL_NEED
        + monitors
        + manifest.partitions.iter().map(|p| p.memory + partition_overhead(p.memory)).sum::<u64>();
    let server = manifest.endpoints.iter().find(|e| e.name == PARTITION_MANAGER).map(|e| e.server);
    // Every VID uses the endpoint (checked), so it has a server.
    let manager = &mut manifest.tasks[server.expect("VIDs use the partition manager")];
    let total = manager.untyped.saturating_add(needed);
    if total > MAX_UNTYPED {
        return Err(Errors::one(Error::task(
            &manager.name,
            "untyped",
            format!(
                "{} with the {} the partitions need (memory, 1 MiB and page tables each; monitor pages; its journal) \
                 is too large (at most {})",
                show_size(manager.untyped),
                show_size(needed),
                show_size(MAX_UNTYPED)
            ),
        )));
    }
    manager.untyped = total;
    Ok(())
}

/// A VID keeps the RAM beneath its partitions' overlay pages in memory of
/// its own: its untyped quota is raised by those pages on top of what it
/// declares.
fn grant_overlay_memory(manifest: &mut Manifest) -> Result<(), Errors> {
    for p in &manifest.partitions {
        let pages = objects::overlay_pages(usize::from(p.vcpus)) as u64;
        let vid = &mut manifest.tasks[p.vid];
        let total = vid.untyped.saturating_add(pages * PAGE_SIZE);
        if total > MAX_UNTYPED {
            let problem =
                format!("too large with the overlay pages of its partitions (at most {})", show_size(MAX_UNTYPED));
            return Err(Errors::one(Error::task(&vid.name, "untyped", problem)));
        }
        vid.untyped = total;
    }
    Ok(())
}

/// Builds the checked manifest: supervisor first, then by descending
/// priority (ties in file order); endpoints numbered in that start order.
fn assemble(system: &str, drafts: &[Draft<'_>]) -> Manifest {
    let mut order: Vec<usize> = (0..drafts.len()).collect();
    order.sort_by_key(|&i| (!drafts[i].toml.supervisor, std::cmp::Reverse(drafts[i].priority)));
    let start_index = |draft: usize| order.iter().position(|&i| i == draft).expect("every draft is in the order");

    let mut endpoints: Vec<Endpoint> = Vec::new();
    for &i in &order {
        for name in &drafts[i].toml.serves {
            endpoints.push(Endpoint { name: name.clone(), server: start_index(i) });
        }
    }
    let endpoint_index = |name: &str| endpoints.iter().position(|e| e.name == name).expect("uses were resolved");

    let tasks = order
        .iter()
        .map(|&i| {
            let d = &drafts[i];
            Task {
                name: d.name.to_string(),
                binary: d.binary.clone(),
                priority: Priority(d.priority.expect("checked")),
                memory: d.memory,
                stack: d.stack,
                restart: d.restart,
                supervisor: d.toml.supervisor,
                serves: d.toml.serves.iter().map(|n| endpoint_index(n)).collect(),
                uses: d.toml.uses.iter().map(|n| endpoint_index(n)).collect(),
                io_ports: d.io_ports.clone(),
                interrupts: d.interrupts.clone(),
                untyped: d.untyped,
                objects: Entries::NONE, // set by `grant_objects`
                cpu: d.cpu,
                kill_every_ms: d.kill_every_ms,
                kill_limit: d.kill_limit,
            }
        })
        .collect();
    Manifest {
        name: system.to_string(),
        tasks,
        endpoints,
        partitions: Vec::new(),
        scheduler: SchedulerPolicy::Kernel,
        connections: Vec::new(),
        on_supervisor_death: OnDeath::Halt,
        soak_kill_every_ms: 0,
    }
}
