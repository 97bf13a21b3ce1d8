//! The compiled manifest: the bootfs file [`crate::MANIFEST_FILE`].
//!
//! It is a [postcard](https://docs.rs/postcard) encoding of [`Manifest`]
//! (varint integers, length-prefixed strings and lists, enums as varint
//! variant indices), decoded in place: names borrow from the image and
//! lists are bounded `heapless::Vec`s, so no heap is needed. The first
//! field is the version, so a reader can refuse an unknown layout before
//! decoding the rest.
//!
//! Conventions the tool guarantees and [`Manifest::parse`] checks:
//! - `tasks` is in start order and task 0 is the supervisor (the root task,
//!   started by the kernel, never restarted);
//! - every endpoint is served by exactly one task, which lists it in
//!   `serves`; no task uses an endpoint it serves itself;
//! - names are unique, sizes are whole pages, I/O ranges stay in the 64 KiB
//!   port space and are not claimed twice, and neither are interrupt lines;
//! - a task's CPU is below [`MAX_CPUS`], the supervisor's 0;
//! - each partition names a valid task other than the supervisor as its
//!   VID, which has an untyped quota (for its exit endpoint) and uses the
//!   [`PARTITION_MANAGER`] endpoint; the task serving
//!   that endpoint (the partition manager, which creates every partition)
//!   has an untyped quota covering the guest RAM of all partitions plus
//!   [`partition_overhead`] each and [`MONITOR_PAGE_NEED`] per monitor
//!   connection, and an objects quota covering what they take
//!   ([`crate::objects::partition`], [`crate::objects::monitor_pages`]); guest files are bootfs names;
//!   each partition's enlightenments pass [`Enlightenments::check`];
//! - each partition's classic-scheduler parameters are in the TLFS ranges
//!   ([`Classic::check`]) and default unless the [`SchedulerPolicy`] is
//!   classic; its `cpus` are distinct CPUs below [`MAX_CPUS`], and the
//!   reserves of the VPs they place on one CPU add up to one CPU at most;
//! - only a task with untyped memory has an objects quota, and the kernel
//!   entries the system takes fit the kernel's tables ([`crate::objects`]);
//! - each connection ([`Connection`]) names two parties ([`Party`]: a
//!   partition, or a task serving its ports itself; the same one twice is
//!   a self-connection, legal as in Hyper-V), 24-bit IDs unique per party
//!   (connection IDs per `from`, port IDs per `to`), a target VP of the
//!   port's partition (0 for a task), a SINT below [`SINT_COUNT`], event
//!   flags inside one SINT's [`EVENT_FLAGS_PER_SINT`] (events only); a
//!   monitor connection is held by a partition, has no target VP or SINT,
//!   and has its monitor page in `from` and (a partition) `to`, each a
//!   page above the partition's RAM and below [`PLATFORM_MMIO`], no two
//!   at one GPA of a partition; others have no pages; a
//!   partition party's enlightenments grant the port type's privilege (as
//!   holder) and the SynIC (as the port's owner) ([`PortType::holder_can`],
//!   [`PortType::owner_can`]); a task serves the [`BROKER`] endpoint and
//!   the VIDs of both partitions (or the task, neither the supervisor nor
//!   the broker) use it.

pub use crate::enlightenments::Enlightenments;
use crate::{Error, PAGE_SIZE, objects, valid_name};
use abi::Entries;
use heapless::Vec;
use serde::{Deserialize, Serialize};

/// Version of the compiled-manifest layout (2: `partitions` added; 4: a
/// partition's `enlightenments` and `exit_timeout_ms`; 5: a task's `objects`;
/// 6: a task's `cpu`; 7: the scheduler policy, a partition's classic
/// parameters and `cpus`; 8: the root scheduler policy; 9: the core
/// scheduler policy; 10: `connections`; 11: a partition's `devices`; 12:
/// a connection's parties may be tasks; 13: a monitor connection's pages;
/// 14: a partition's `on_reset`, `cpuid_mask` and `ignore_unknown_msrs`;
/// 15: a task's `kill_every_ms` and `kill_limit`; 16: `soak_kill_every_ms`).
pub const VERSION: u32 = 16;
/// The longest `kill_every_ms` a task may have: an hour.
pub const MAX_KILL_EVERY_MS: u32 = 3_600_000;
/// Most tasks in a system, supervisor included.
pub const MAX_TASKS: usize = 16;
/// Most endpoints in a system.
pub const MAX_ENDPOINTS: usize = 32;
/// Most endpoints one task serves.
pub const MAX_SERVES: usize = 4;
/// Most endpoints one task uses.
pub const MAX_USES: usize = 8;
/// Most I/O-port ranges one task holds.
pub const MAX_IO_RANGES: usize = 4;
/// Most interrupt lines one task holds.
pub const MAX_INTERRUPTS: usize = 8;
/// Largest memory grant of one task.
pub use abi::limits::MAX_TASK_MEMORY;

// The kernel's I/O-range and interrupt tables are not quota'd: every task
// at its most must fit them beside the root task's own range (hence `<`).
const _: () = assert!((MAX_TASKS - 1) * MAX_IO_RANGES < abi::limits::tables::IO_RANGES);
const _: () = assert!((abi::limits::GSIS as usize) < abi::limits::tables::INTERRUPTS);
/// Largest untyped quota one task may be given.
pub const MAX_UNTYPED: u64 = 16 << 30;
/// Number of I/O ports on x86.
pub use x86defs::IO_PORT_COUNT;
/// Highest interrupt line (GSI) a manifest may name: the kernel routes
/// [`abi::limits::GSIS`] lines.
pub const MAX_GSI: u32 = abi::limits::GSIS - 1;
/// Most guest partitions in a system.
pub use abi::limits::MAX_PARTITIONS;
/// Most partitions one VID runs (its per-partition VMM state is on its stack).
pub const MAX_PARTITIONS_PER_VID: usize = 4;
/// Most boot modules (besides the kernel image) one partition has.
pub const MAX_MODULES: usize = 4;
/// Smallest guest RAM of a partition.
pub const MIN_PARTITION_MEMORY: u64 = 2 << 20;
/// Largest guest RAM of a partition (it sits below the 4 GiB PCI hole).
pub const MAX_PARTITION_MEMORY: u64 = 3 << 30;
/// Most CPUs a task may be placed on (`cpu` is below it).
pub const MAX_CPUS: u8 = abi::limits::MAX_CPUS as u8;
/// Most virtual processors of a partition.
pub const MAX_VCPUS: u8 = abi::limits::MAX_VPS_PER_PARTITION as u8;
/// Untyped memory the partition manager needs per partition besides its
/// guest RAM and the tables that map it: the ROM page, the partition,
/// its virtual processors (`abi::cost::VP` each), and the second-level
/// tables of the ROM and the upper levels.
pub const PARTITION_OVERHEAD: u64 = 1 << 20;

/// Untyped memory a partition with `memory` bytes of guest RAM needs
/// besides that RAM: [`PARTITION_OVERHEAD`], plus the second-level tables
/// that map the RAM in 4 KiB pages (one table per 2 MiB and one per GiB;
/// the kernel charges each to the partition's untyped, `abi::cost::PAGE_TABLE`).
pub const fn partition_overhead(memory: u64) -> u64 {
    const TABLE: u64 = 4096 * abi::cost::PAGE_TABLE;
    let tables = memory.div_ceil(2 << 20) + memory.div_ceil(1 << 30);
    PARTITION_OVERHEAD.saturating_add(tables.saturating_mul(TABLE))
}
/// Pages of the partition manager's journal: two copies of its table, which
/// its next instance reads after a restart (ARCHITECTURE.md §5.2). Made
/// when the manifest has partitions, from the manager's untyped.
pub const JOURNAL_PAGES: u64 = 8;
/// Untyped memory the journal takes.
pub const JOURNAL_NEED: u64 = JOURNAL_PAGES * PAGE_SIZE;
/// The endpoint the partition manager serves: its server creates every
/// partition, and each VID uses it to attach the partitions it runs.
pub const PARTITION_MANAGER: &str = "partition-manager";
/// How long a VID may take to answer one exit of a partition's VP before
/// the kernel stops the VP and reports it to the partition manager, unless
/// the manifest says otherwise.
pub const DEFAULT_EXIT_TIMEOUT_MS: u32 = 5000;
/// Longest such limit a manifest may set (0 is no limit).
pub const MAX_EXIT_TIMEOUT_MS: u32 = 60_000;
/// Longest guest kernel command line, in bytes (Linux's x86 limit).
pub const MAX_CMDLINE: usize = 2048;
/// Most declared connections (each with its port) in a system.
pub const MAX_CONNECTIONS: usize = 32;
/// Connection and port IDs are 24 bits (`HV_CONNECTION_ID`, `HV_PORT_ID`:
/// the high 8 bits are reserved, TLFS 11.10.6/7).
pub const MAX_CONNECTION_ID: u32 = 0x00ff_ffff;
/// Synthetic interrupt sources per VP (`HV_SYNIC_SINT_COUNT`).
pub const SINT_COUNT: u8 = 16;
/// Event flags of one SINT: its 256-byte part of the SIEF page (TLFS 11.9).
pub const EVENT_FLAGS_PER_SINT: u32 = 2048;
/// The endpoint the broker serves: the VIDs of connected partitions use it.
pub const BROKER: &str = "broker";
/// Where a partition's platform MMIO starts (the I/O APIC at 0xFEC0_0000,
/// then the HPET and the local APIC): monitor pages go below it.
pub const PLATFORM_MMIO: u64 = 0xfec0_0000;
/// Monitor connections one partition may hold: its VID inspects the page
/// of each (TLFS 11.7) and keeps its triggers' arming times.
pub const MAX_HELD_MONITORS: usize = 2;
/// Untyped memory the partition manager needs per monitor connection: its
/// page, and the second-level tables its two mappings may add (a page
/// directory and a page table each: the pages lie outside the RAM's).
pub const MONITOR_PAGE_NEED: u64 = PAGE_SIZE * (1 + 4 * abi::cost::PAGE_TABLE);

/// A task's scheduling priority, `0..=31`; higher runs first. Deliberately
/// not `Ord` (after Hubris): compare with [`Priority::is_higher_than`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Priority(pub u8);

impl Priority {
    pub const MAX: Priority = Priority(abi::invoke::MAX_PRIORITY as u8);

    pub const fn is_valid(self) -> bool {
        self.0 <= Priority::MAX.0
    }

    pub const fn is_higher_than(self, other: Priority) -> bool {
        self.0 > other.0
    }
}

/// What the supervisor does when a task dies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Restart {
    /// Restart it (with back-off).
    Always,
    /// Leave it stopped and report it.
    Never,
}

/// Index of a task in [`Manifest::tasks`] (start order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskIndex(pub u8);

impl TaskIndex {
    /// The badge on every endpoint capability the supervisor gives this
    /// task: its index + 1, so the supervisor (task 0) is badge 1.
    pub const fn badge(self) -> u64 {
        self.0 as u64 + 1
    }
}

/// Index of an endpoint in [`Manifest::endpoints`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointIndex(pub u8);

/// An interrupt line, as a global system interrupt number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gsi(pub u32);

/// `count` I/O ports from `base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoPortRange {
    pub base: u16,
    pub count: u16,
}

impl IoPortRange {
    /// One past the last port (may be `0x10000`).
    pub const fn end(self) -> u32 {
        self.base as u32 + self.count as u32
    }

    /// Non-empty and inside the port space.
    pub const fn is_valid(self) -> bool {
        self.count > 0 && self.end() <= IO_PORT_COUNT
    }

    pub const fn overlaps(self, other: IoPortRange) -> bool {
        (self.base as u32) < other.end() && (other.base as u32) < self.end()
    }
}

/// An IPC endpoint the supervisor creates at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint<'a> {
    pub name: &'a str,
    /// The one task that receives on it.
    pub server: TaskIndex,
}

/// A send capability to an endpoint, and the name the task knows it by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Use<'a> {
    pub endpoint: EndpointIndex,
    pub name: &'a str,
}

/// One ring-3 task (root service).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task<'a> {
    pub name: &'a str,
    /// Name of its ELF executable in the bootfs.
    pub binary: &'a str,
    pub priority: Priority,
    /// Bytes of memory granted (image, heap and stack), a page multiple.
    pub memory: u64,
    /// Bytes of stack for its first thread, a page multiple, at most `memory`.
    pub stack: u64,
    pub restart: Restart,
    /// Endpoints it receives on.
    pub serves: Vec<EndpointIndex, MAX_SERVES>,
    /// Endpoints it may call.
    #[serde(borrow)]
    pub uses: Vec<Use<'a>, MAX_USES>,
    pub io_ports: Vec<IoPortRange, MAX_IO_RANGES>,
    pub interrupts: Vec<Gsi, MAX_INTERRUPTS>,
    /// Bytes of untyped memory the supervisor hands the task (0: none).
    pub untyped: u64,
    /// Kernel-table entries its untyped carries: what it may make (none
    /// without `untyped`; the partition manager's share included).
    #[serde(with = "entries_words")]
    pub objects: Entries,
    /// The CPU (index, 0 the boot CPU) its scheduling context is put on,
    /// below [`MAX_CPUS`]; always 0 for the supervisor, which the kernel
    /// starts on the boot CPU.
    pub cpu: u8,
    /// Fault injection for tests: the supervisor kills the task (as if it
    /// had crashed) this many milliseconds after each of its starts; 0:
    /// never. At most [`MAX_KILL_EVERY_MS`]. The supervisor's own: it
    /// faults on purpose that long after its start, and the kernel meets
    /// its death (the bootfs header's [`crate::bootfs::OnDeath`]).
    pub kill_every_ms: u32,
    /// Kills at most, with `kill_every_ms` (0: no limit).
    pub kill_limit: u16,
}

/// An [`Entries`] as its array of counts.
mod entries_words {
    use abi::{Entries, EntryKind};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(entries: &Entries, s: S) -> Result<S::Ok, S::Error> {
        entries.0.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Entries, D::Error> {
        <[u16; EntryKind::COUNT]>::deserialize(d).map(Entries)
    }
}

/// How the VIDs schedule their partitions' VPs (`[scheduler] policy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchedulerPolicy {
    /// No `[scheduler]` table: every VP at priority 0 with the kernel's
    /// default slice, no reserve and no cap.
    #[default]
    Kernel,
    /// The Hyper-V classic scheduler: each partition's [`Classic`]
    /// parameters (the scheduler crate's `classic` module maps them).
    Classic,
    /// The Hyper-V root scheduler: the VID decides when each VP runs
    /// (`VP_START`, `VP_SUSPEND`); the kernel's defaults otherwise.
    Root,
    /// The Hyper-V core scheduler: every partition is core-exclusive (the
    /// partition manager sets it; the kernel keeps SMT siblings from
    /// running VPs of different partitions at once); the kernel's
    /// defaults otherwise.
    Core,
}

/// One LP, in the TLFS's fixed point for reserves and caps.
pub const ONE_LP: u32 = 0x10000;
/// Weights are `1..=MAX_WEIGHT`.
pub const MAX_WEIGHT: u16 = 10_000;

/// A partition's classic-scheduler parameters (TLFS 6.0b §14.2): the
/// fraction of one logical processor each of its VPs is guaranteed
/// (`reserve`) and may use at most (`cap`), in 1/0x10000 of an LP, and its
/// relative `weight` among the VPs on an LP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classic {
    /// `0..=ONE_LP`, at most `cap`; 0: none.
    pub reserve: u32,
    /// `1..=ONE_LP`; `ONE_LP`: no cap.
    pub cap: u32,
    /// `1..=MAX_WEIGHT`.
    pub weight: u16,
}

impl Classic {
    /// No reserve, no cap, weight 100.
    pub const DEFAULT: Classic = Classic { reserve: 0, cap: ONE_LP, weight: 100 };

    /// The TLFS's ranges and `reserve <= cap` (a cap of 0 is refused).
    pub const fn check(&self) -> Result<(), &'static str> {
        if self.reserve > ONE_LP || self.cap > ONE_LP || self.cap == 0 {
            return Err("classic reserve or cap out of range");
        }
        if self.weight == 0 || self.weight > MAX_WEIGHT {
            return Err("classic weight out of range");
        }
        if self.reserve > self.cap {
            return Err("classic reserve above the cap");
        }
        Ok(())
    }
}

impl Default for Classic {
    fn default() -> Classic {
        Classic::DEFAULT
    }
}

/// A guest partition, run by a VID task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition<'a> {
    /// Its name (partition names are a namespace of their own).
    pub name: &'a str,
    /// Bootfs file name of the guest kernel.
    pub image: &'a str,
    /// Bootfs file names of its boot modules (e.g. an initrd), in order.
    #[serde(borrow)]
    pub modules: Vec<&'a str, MAX_MODULES>,
    /// The guest kernel's command line (printable ASCII, may be empty).
    pub cmdline: &'a str,
    /// Bytes of guest RAM, a page multiple in
    /// [`MIN_PARTITION_MEMORY`]`..=`[`MAX_PARTITION_MEMORY`].
    pub memory: u64,
    /// Virtual processors, `1..=`[`MAX_VCPUS`].
    pub vcpus: u8,
    /// Milliseconds the VID may take to answer one exit (0: no limit), at
    /// most [`MAX_EXIT_TIMEOUT_MS`].
    pub exit_timeout_ms: u32,
    /// The task that runs it (its VID).
    pub vid: TaskIndex,
    /// What of the Hyper-V interface its VID presents to the guest.
    pub enlightenments: Enlightenments,
    /// Its classic-scheduler parameters ([`Classic::DEFAULT`] unless the
    /// policy is classic).
    pub classic: Classic,
    /// The CPUs its VPs run on: VP i on `cpus[i % len]`; empty: VP i on
    /// CPU i modulo the machine's CPU count.
    pub cpus: Vec<u8, { MAX_CPUS as usize }>,
    /// Devices its VID gives it beyond the platform's.
    pub devices: Devices,
    /// CPUID features hidden from it (closed under their needs).
    pub cpuid_mask: crate::CpuidMask,
    /// Unknown MSRs read 0 and ignore writes instead of raising #GP.
    pub ignore_unknown_msrs: bool,
    /// What its VID does when the guest resets the machine.
    pub on_reset: OnReset,
}

/// What a guest's reset does to its partition (`on_reset`): a reset is
/// HV_X64_MSR_RESET, the ACPI reset register, port 0xCF9, the keyboard
/// controller's reset pulse, INIT at the boot processor or a triple fault.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnReset {
    /// The guest is loaded again and starts again (`"restart"`).
    #[default]
    Restart,
    /// The partition ends (`"stop"`).
    Stop,
}

impl OnReset {
    /// Every policy by its manifest name.
    pub const NAMES: &[(&'static str, OnReset)] = &[("restart", OnReset::Restart), ("stop", OnReset::Stop)];
}

/// Optional devices of a partition (`devices = [...]`), one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Devices(pub u8);

impl Devices {
    pub const NONE: Devices = Devices(0);
    /// QEMU's `hyperv-testdev` (I/O port 0x3000), for Hyper-V test guests;
    /// needs the SynIC.
    pub const HYPERV_TESTDEV: Devices = Devices(1);
    /// Every device by its manifest name.
    pub const NAMES: &[(&'static str, Devices)] = &[("hyperv-testdev", Devices::HYPERV_TESTDEV)];

    pub const fn contains(self, d: Devices) -> bool {
        self.0 & d.0 == d.0
    }

    pub const fn with(self, d: Devices) -> Devices {
        Devices(self.0 | d.0)
    }

    /// Known devices only, each with what it needs of `enlightenments`.
    pub const fn check(self, enlightenments: Enlightenments) -> Result<(), &'static str> {
        if self.0 & !Devices::HYPERV_TESTDEV.0 != 0 {
            return Err("unknown device");
        }
        if self.contains(Devices::HYPERV_TESTDEV) && !enlightenments.contains(crate::Enlightenment::Synic) {
            return Err("hyperv-testdev without the synic enlightenment");
        }
        Ok(())
    }
}

impl Partition<'_> {
    /// The CPU the manifest puts VP `vp` on, if it names one.
    pub fn cpu_of(&self, vp: usize) -> Option<u8> {
        (!self.cpus.is_empty()).then(|| self.cpus[vp % self.cpus.len()])
    }

    /// Where its guest RAM ends: GPA n is RAM byte n up to `memory` (the
    /// partition manager's layout; below 1 MiB the legacy hole and ROM).
    pub const fn ram_end(&self) -> u64 {
        self.memory
    }

    /// Whether a monitor page (TLFS 11.7.4) may sit at `gpa` in it: a
    /// whole 4 KiB page at or above the end of its RAM and below the
    /// [`PLATFORM_MMIO`].
    pub const fn monitor_page_fits(&self, gpa: u64) -> bool {
        gpa.is_multiple_of(PAGE_SIZE) && gpa >= self.ram_end() && gpa < PLATFORM_MMIO
    }
}

/// Index of a partition in [`Manifest::partitions`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionIndex(pub u8);

/// `HV_PORT_TYPE` (TLFS 11.10.6): what a port delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PortType {
    /// Messages (`HvPostMessage`) into the target SINT's SIM slot.
    Message,
    /// Event flags (`HvSignalEvent`) in the target SINT's SIEF part.
    Event,
    /// Monitored notifications (TLFS 11.7).
    Monitor,
}

impl PortType {
    /// The hypercall privilege the partition holding a connection to such
    /// a port calls with: PostMessages for a message port, SignalEvents
    /// for an event port and for a monitor port (whose trigger the
    /// hypervisor signals on the holder's behalf, TLFS 11.7).
    pub const fn privilege(self) -> &'static str {
        match self {
            PortType::Message => "PostMessages",
            PortType::Event | PortType::Monitor => "SignalEvents",
        }
    }

    /// Whether a partition with `e` may hold a connection to such a port:
    /// its profile grants [`PortType::privilege`].
    pub const fn holder_can(self, e: Enlightenments) -> bool {
        match self {
            PortType::Message => e.post_messages(),
            PortType::Event | PortType::Monitor => e.signal_events(),
        }
    }

    /// Whether a partition with `e` may own such a port: its deliveries
    /// arrive through the target VP's SynIC (a SIM slot, or SIEF flags).
    pub const fn owner_can(self, e: Enlightenments) -> bool {
        e.contains(crate::Enlightenment::Synic)
    }

    /// The TLFS `HV_PORT_TYPE` value.
    pub const fn tlfs(self) -> u32 {
        match self {
            PortType::Message => 1,
            PortType::Event => 2,
            PortType::Monitor => 3,
        }
    }
}

/// Who holds a connection or owns a port: a partition (its VID speaks for
/// it), or a task that serves its ports itself (a root service such as
/// the VMBus host).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Party {
    Partition(PartitionIndex),
    Task(TaskIndex),
}

/// A declared connection (`[[connections]]`): party `from` holds
/// connection `connection_id`, which leads to port `port_id` of party
/// `to`, whose deliveries go to SINT `sint` of VP `target_vp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    pub from: Party,
    pub to: Party,
    pub port_type: PortType,
    /// 24 bits, unique among `from`'s connections.
    pub connection_id: u32,
    /// 24 bits, unique among `to`'s ports.
    pub port_id: u32,
    /// Below `to`'s `vcpus` (0 for a task).
    pub target_vp: u8,
    /// Below [`SINT_COUNT`].
    pub sint: u8,
    /// Events: the port's first flag number (`BaseFlagNumber`) and its
    /// flag count, inside one SINT's [`EVENT_FLAGS_PER_SINT`]; a signal's
    /// flag number is below the count and relative to the base. Both 0 for
    /// message and monitor ports.
    pub flag: u16,
    pub flag_count: u16,
    /// Monitor ports only (TLFS 11.7.4): the GPA of the monitor page in
    /// `from` (a partition), where [`Partition::monitor_page_fits`]...
    pub from_page: Option<u64>,
    /// ...and in `to`, if `to` is a partition (a task has no guest-physical
    /// space). One page, seen at both; `target_vp` and `sint` are 0.
    pub to_page: Option<u64>,
}

impl Connection {
    /// The monitor pages of a monitor connection: (partition, GPA) for
    /// `from`, then for `to` (a party that is not a partition has none).
    pub fn monitor_pages(&self) -> impl Iterator<Item = (PartitionIndex, u64)> {
        let page = |party, gpa: Option<u64>| match party {
            Party::Partition(k) => gpa.map(|gpa| (k, gpa)),
            Party::Task(_) => None,
        };
        [page(self.from, self.from_page), page(self.to, self.to_page)].into_iter().flatten()
    }
}

/// True if `cmdline` can be a guest command line: at most [`MAX_CMDLINE`]
/// bytes of printable ASCII or spaces.
pub fn valid_cmdline(cmdline: &str) -> bool {
    cmdline.len() <= MAX_CMDLINE && cmdline.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
}

/// The whole static system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest<'a> {
    /// Always [`VERSION`]; encoded first.
    pub version: u32,
    /// The system's name.
    pub system: &'a str,
    /// In start order; task 0 is the supervisor.
    #[serde(borrow)]
    pub tasks: Vec<Task<'a>, MAX_TASKS>,
    #[serde(borrow)]
    pub endpoints: Vec<Endpoint<'a>, MAX_ENDPOINTS>,
    /// Guest partitions, in manifest order.
    #[serde(borrow)]
    pub partitions: Vec<Partition<'a>, MAX_PARTITIONS>,
    /// How their VPs are scheduled.
    pub scheduler: SchedulerPolicy,
    /// Who may talk to whom: ports and connections between partitions.
    pub connections: Vec<Connection, MAX_CONNECTIONS>,
    /// Soak fault injection (`[system] soak_kill_every_ms`): the supervisor
    /// kills a random running, restartable task this often (0: never),
    /// at most [`MAX_KILL_EVERY_MS`].
    pub soak_kill_every_ms: u32,
}

impl<'a> Manifest<'a> {
    /// Decodes and checks a compiled manifest.
    pub fn parse(bytes: &'a [u8]) -> Result<Manifest<'a>, Error> {
        let (version, _) = postcard::take_from_bytes::<u32>(bytes).map_err(|_| Error::Decode)?;
        if version != VERSION {
            return Err(Error::ManifestVersion(version));
        }
        let (manifest, rest) = postcard::take_from_bytes::<Manifest<'a>>(bytes).map_err(|_| Error::Decode)?;
        if !rest.is_empty() {
            return Err(Error::TrailingBytes);
        }
        manifest.check()?;
        Ok(manifest)
    }

    /// The supervisor (task 0), if there is a task at all.
    pub fn supervisor(&self) -> Option<&Task<'a>> {
        self.tasks.first()
    }

    pub fn task(&self, index: TaskIndex) -> Option<&Task<'a>> {
        self.tasks.get(usize::from(index.0))
    }

    pub fn endpoint(&self, index: EndpointIndex) -> Option<&Endpoint<'a>> {
        self.endpoints.get(usize::from(index.0))
    }

    /// The partition manager: the task serving [`PARTITION_MANAGER`], if any.
    pub fn partition_manager(&self) -> Option<TaskIndex> {
        self.endpoints.iter().find(|e| e.name == PARTITION_MANAGER).map(|e| e.server)
    }

    /// Whether task `task` may call the partition manager.
    pub fn uses_partition_manager(&self, task: TaskIndex) -> bool {
        self.task(task).is_some_and(|t| {
            t.uses.iter().any(|u| self.endpoint(u.endpoint).is_some_and(|e| e.name == PARTITION_MANAGER))
        })
    }

    /// Untyped memory the partition manager needs for all partitions, for
    /// the page of every monitor connection ([`MONITOR_PAGE_NEED`]) and
    /// for its journal ([`JOURNAL_NEED`]).
    pub fn partitions_need(&self) -> u64 {
        if self.partitions.is_empty() {
            return 0;
        }
        let monitors = (self.monitor_connections() as u64).saturating_mul(MONITOR_PAGE_NEED);
        self.partitions.iter().fold(monitors.saturating_add(JOURNAL_NEED), |sum, p| {
            sum.saturating_add(p.memory.saturating_add(partition_overhead(p.memory)))
        })
    }

    /// Kernel-table entries the partition manager needs for all partitions
    /// and monitor pages (`None`: more than a count holds).
    pub fn partitions_entries(&self) -> Option<Entries> {
        let partitions = objects::total(
            self.partitions.iter().map(|p| objects::partition(p.vcpus)).collect::<Vec<_, MAX_PARTITIONS>>().iter(),
        )?;
        let journal = if self.partitions.is_empty() { Entries::NONE } else { objects::JOURNAL };
        partitions.checked_add(&objects::monitor_pages(self.monitor_connections() as u16))?.checked_add(&journal)
    }

    /// How many connections are to monitor ports (each has a page).
    pub fn monitor_connections(&self) -> usize {
        self.connections.iter().filter(|c| c.port_type == PortType::Monitor).count()
    }

    /// Kernel-table entries the whole system takes ([`crate::objects`]):
    /// the kernel's for the root task, the supervisor's for every task, and
    /// every task's quota (`None`: more than a count holds).
    pub fn entries_needed(&self) -> Option<Entries> {
        let mut sum =
            objects::KERNEL.checked_add(&objects::shared(self.endpoints.len(), self.notified_tasks().count()))?;
        for t in self.tasks.iter().skip(1) {
            sum = sum.checked_add(&objects::to_start(t.untyped > 0, !t.interrupts.is_empty()))?;
            sum = sum.checked_add(&t.objects)?;
        }
        Some(sum)
    }

    /// The reserves of the VPs the manifest places on `cpu` (by their
    /// partition's `cpus`), in 1/0x10000 of a CPU.
    pub fn reserves_on(&self, cpu: u8) -> u64 {
        let vps = self.partitions.iter().flat_map(|p| (0..usize::from(p.vcpus)).map(move |vp| (p, vp)));
        vps.filter(|(p, vp)| p.cpu_of(*vp) == Some(cpu)).map(|(p, _)| u64::from(p.classic.reserve)).sum()
    }

    /// The partitions task `vid` runs.
    pub fn partitions_of(&self, vid: TaskIndex) -> impl Iterator<Item = &Partition<'a>> {
        self.partitions.iter().filter(move |p| p.vid == vid)
    }

    /// Encodes the manifest (host side).
    #[cfg(any(test, feature = "std"))]
    pub fn to_vec(&self) -> std::vec::Vec<u8> {
        postcard::to_allocvec(self).expect("encoding into a Vec cannot fail")
    }

    /// Checks the conventions listed in the module documentation.
    pub fn check(&self) -> Result<(), Error> {
        if self.version != VERSION {
            return Err(Error::ManifestVersion(self.version));
        }
        if !valid_name(self.system) {
            return Err(Error::BadManifest("bad system name"));
        }
        if self.soak_kill_every_ms > MAX_KILL_EVERY_MS {
            return Err(Error::BadManifest("soak_kill_every_ms out of range"));
        }
        let supervisor = self.supervisor().ok_or(Error::BadManifest("no tasks"))?;
        if supervisor.restart != Restart::Never {
            return Err(Error::BadTask { task: 0, reason: "the supervisor cannot be restarted" });
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            let bad = |reason| Err(Error::BadManifest(reason));
            if !valid_name(e.name) {
                return bad("bad endpoint name");
            }
            if self.endpoints[..i].iter().any(|o| o.name == e.name) {
                return bad("duplicate endpoint name");
            }
            let Some(server) = self.task(e.server) else {
                return bad("endpoint server out of range");
            };
            if !server.serves.iter().any(|s| usize::from(s.0) == i) {
                return bad("endpoint not in its server's serves");
            }
        }
        for (i, task) in self.tasks.iter().enumerate() {
            let bad = |reason| Err(Error::BadTask { task: i, reason });
            if !valid_name(task.name) || !valid_name(task.binary) {
                return bad("bad name");
            }
            if self.tasks[..i].iter().any(|o| o.name == task.name) {
                return bad("duplicate task name");
            }
            if !task.priority.is_valid() {
                return bad("priority out of range");
            }
            let size_ok = |n: u64| n > 0 && n.is_multiple_of(PAGE_SIZE) && n <= MAX_TASK_MEMORY;
            if !task.untyped.is_multiple_of(PAGE_SIZE) || task.untyped > MAX_UNTYPED || (i == 0 && task.untyped != 0) {
                return bad("bad untyped quota");
            }
            if task.untyped == 0 && task.objects != Entries::NONE {
                return bad("an objects quota without untyped memory");
            }
            if !size_ok(task.memory) || !size_ok(task.stack) || task.stack > task.memory {
                return bad("bad memory or stack size");
            }
            if task.cpu >= MAX_CPUS {
                return bad("CPU out of range");
            }
            if i == 0 && task.cpu != 0 {
                return bad("the supervisor runs on the boot CPU");
            }
            for (j, s) in task.serves.iter().enumerate() {
                if self.endpoint(*s).is_none_or(|e| usize::from(e.server.0) != i) || task.serves[..j].contains(s) {
                    return bad("serves an endpoint twice or one it is not the server of");
                }
            }
            for (j, u) in task.uses.iter().enumerate() {
                let own_or_missing = self.endpoint(u.endpoint).is_none_or(|e| usize::from(e.server.0) == i);
                if own_or_missing || !valid_name(u.name) || task.uses[..j].iter().any(|o| o.endpoint == u.endpoint) {
                    return bad("uses a missing endpoint, its own, or one twice");
                }
            }
            for (j, range) in task.io_ports.iter().enumerate() {
                if !range.is_valid() {
                    return bad("bad I/O-port range");
                }
                let mut earlier = self.tasks[..i].iter().flat_map(|t| t.io_ports.iter()).chain(&task.io_ports[..j]);
                if earlier.any(|o| o.overlaps(*range)) {
                    return bad("I/O ports claimed twice");
                }
            }
            for (j, gsi) in task.interrupts.iter().enumerate() {
                if gsi.0 > MAX_GSI {
                    return bad("interrupt line out of range");
                }
                let mut earlier = self.tasks[..i].iter().flat_map(|t| t.interrupts.iter()).chain(&task.interrupts[..j]);
                if earlier.any(|o| o == gsi) {
                    return bad("interrupt line claimed twice");
                }
            }
        }
        for (i, p) in self.partitions.iter().enumerate() {
            let bad = |reason| Err(Error::BadPartition { partition: i, reason });
            if !valid_name(p.name) || !valid_name(p.image) || !p.modules.iter().all(|m| valid_name(m)) {
                return bad("bad name");
            }
            if self.partitions[..i].iter().any(|o| o.name == p.name) {
                return bad("duplicate partition name");
            }
            if !valid_cmdline(p.cmdline) {
                return bad("bad command line");
            }
            if !p.memory.is_multiple_of(PAGE_SIZE) || !(MIN_PARTITION_MEMORY..=MAX_PARTITION_MEMORY).contains(&p.memory)
            {
                return bad("bad memory size");
            }
            if !(1..=MAX_VCPUS).contains(&p.vcpus) {
                return bad("bad number of virtual processors");
            }
            if p.enlightenments.check().is_err() {
                return bad("incoherent or unimplemented enlightenments");
            }
            if let Err(reason) = p.devices.check(p.enlightenments) {
                return bad(reason);
            }
            if p.cpuid_mask.check().is_err() {
                return bad("incoherent CPUID mask");
            }
            if p.exit_timeout_ms > MAX_EXIT_TIMEOUT_MS {
                return bad("exit timeout out of range");
            }
            if let Err(reason) = p.classic.check() {
                return bad(reason);
            }
            if self.scheduler != SchedulerPolicy::Classic && p.classic != Classic::DEFAULT {
                return bad("classic parameters without the classic scheduler policy");
            }
            for (j, &cpu) in p.cpus.iter().enumerate() {
                if cpu >= MAX_CPUS || p.cpus[..j].contains(&cpu) {
                    return bad("a CPU out of range or listed twice");
                }
                if self.reserves_on(cpu) > u64::from(ONE_LP) {
                    return bad("the reserves of the VPs on one CPU add up to more than it");
                }
            }
            if self.task(p.vid).is_none() {
                return bad("VID task out of range");
            }
            if p.vid.0 == 0 {
                return bad("the supervisor runs no partitions");
            }
            let Some(manager) = self.partition_manager().and_then(|m| self.task(m)) else {
                return bad("no task serves the partition manager's endpoint");
            };
            if self.task(p.vid).is_some_and(|t| t.untyped == 0) {
                return bad("its VID has no untyped quota for its exit endpoint");
            }
            if !self.uses_partition_manager(p.vid) {
                return bad("its VID does not use the partition manager");
            }
            if self.partitions_of(p.vid).count() > MAX_PARTITIONS_PER_VID {
                return bad("its VID runs more partitions than one VID can");
            }
            if manager.untyped < self.partitions_need() {
                return bad("the partition manager's untyped quota is too small");
            }
            if !self.partitions_entries().is_some_and(|e| manager.objects.covers(&e)) {
                return bad("the partition manager's objects quota is too small");
            }
        }
        self.check_connections()?;
        if !self.entries_needed().is_some_and(|e| objects::over_tables(&e).next().is_none()) {
            return Err(Error::BadManifest("the objects quotas do not fit the kernel's tables"));
        }
        Ok(())
    }
}

impl Manifest<'_> {
    /// The broker: the task serving [`BROKER`], if any.
    pub fn broker(&self) -> Option<TaskIndex> {
        self.endpoints.iter().find(|e| e.name == BROKER).map(|e| e.server)
    }

    /// Whether task `task` may call the broker.
    pub fn uses_broker(&self, task: TaskIndex) -> bool {
        self.task(task)
            .is_some_and(|t| t.uses.iter().any(|u| self.endpoint(u.endpoint).is_some_and(|e| e.name == BROKER)))
    }

    /// The partitions some connection leads to (a port's partition): their
    /// VIDs are told of deliveries through a notification.
    pub fn is_port_partition(&self, partition: PartitionIndex) -> bool {
        self.connections.iter().any(|c| c.to == Party::Partition(partition))
    }

    /// The task speaking for `party` at the broker: a partition's VID, or
    /// the task itself.
    pub fn speaker(&self, party: Party) -> Option<TaskIndex> {
        match party {
            Party::Partition(k) => self.partitions.get(usize::from(k.0)).map(|p| p.vid),
            Party::Task(t) => self.task(t).map(|_| t),
        }
    }

    /// The tasks that are connection parties themselves, each once, in
    /// start order: the broker registers them as parties of one VP.
    pub fn task_parties(&self) -> impl Iterator<Item = TaskIndex> + '_ {
        (0..self.tasks.len())
            .map(|i| TaskIndex(i as u8))
            .filter(move |&t| self.connections.iter().any(|c| c.from == Party::Task(t) || c.to == Party::Task(t)))
    }

    /// The tasks the broker notifies of deliveries: those speaking for a
    /// port's party (a VID), and every task party (whose notification's
    /// name tells it its party), each once, in start order.
    pub fn notified_tasks(&self) -> impl Iterator<Item = TaskIndex> + '_ {
        (0..self.tasks.len()).map(|i| TaskIndex(i as u8)).filter(move |&t| {
            self.connections.iter().any(|c| self.speaker(c.to) == Some(t) || c.from == Party::Task(t))
        })
    }

    /// The connection rules of the module documentation.
    fn check_connections(&self) -> Result<(), Error> {
        for (i, c) in self.connections.iter().enumerate() {
            let bad = |reason| Err(Error::BadConnection { connection: i, reason });
            let (Some(from), Some(to)) = (self.speaker(c.from), self.speaker(c.to)) else {
                return bad("partition or task out of range");
            };
            for party in [c.from, c.to] {
                if let Party::Task(t) = party
                    && (t.0 == 0 || self.broker() == Some(t))
                {
                    return bad("the supervisor or the broker as a party");
                }
            }
            if c.connection_id > MAX_CONNECTION_ID || c.port_id > MAX_CONNECTION_ID {
                return bad("connection or port ID above 24 bits");
            }
            let vcpus = match c.to {
                Party::Partition(k) => self.partitions[usize::from(k.0)].vcpus,
                Party::Task(_) => 1,
            };
            if c.target_vp >= vcpus {
                return bad("target VP beyond the port partition's VPs");
            }
            if c.sint >= SINT_COUNT {
                return bad("SINT out of range");
            }
            let flags_ok = match c.port_type {
                PortType::Event => {
                    c.flag_count > 0 && u32::from(c.flag) + u32::from(c.flag_count) <= EVENT_FLAGS_PER_SINT
                }
                PortType::Message | PortType::Monitor => c.flag == 0 && c.flag_count == 0,
            };
            if !flags_ok {
                return bad("event flags out of range, or flags on a port that is not an event port");
            }
            if let Err(reason) = self.check_monitor_pages(i, c) {
                return bad(reason);
            }
            let earlier = &self.connections[..i];
            if earlier.iter().any(|o| o.from == c.from && o.connection_id == c.connection_id) {
                return bad("connection ID used twice by one partition");
            }
            if earlier.iter().any(|o| o.to == c.to && o.port_id == c.port_id) {
                return bad("port ID used twice in one partition");
            }
            // A task party serves its ports itself: only partitions need
            // the SynIC's privileges and SINTs.
            let enlightenments = |party| match party {
                Party::Partition(k) => Some(self.partitions[usize::from(k.0)].enlightenments),
                Party::Task(_) => None,
            };
            let holder_can = enlightenments(c.from).is_none_or(|e| c.port_type.holder_can(e));
            let owner_can = enlightenments(c.to).is_none_or(|e| c.port_type.owner_can(e));
            if !holder_can || !owner_can {
                return bad("a partition lacks the SynIC privilege or SINTs its connection needs");
            }
            if self.broker().is_none() {
                return bad("no task serves the broker's endpoint");
            }
            if !self.uses_broker(from) || !self.uses_broker(to) {
                return bad("a partition's VID or a task party does not use the broker");
            }
        }
        Ok(())
    }

    /// A monitor connection (connection `i`) is held by a partition, has
    /// its page in `from` and (a partition) `to`, each where
    /// [`Partition::monitor_page_fits`] and not another monitor page of
    /// the partition, and no target VP or SINT (TLFS monitor ports have
    /// none); other connections have no pages.
    fn check_monitor_pages(&self, i: usize, c: &Connection) -> Result<(), &'static str> {
        if c.port_type != PortType::Monitor {
            return match (c.from_page, c.to_page) {
                (None, None) => Ok(()),
                _ => Err("monitor pages on a port that is not a monitor port"),
            };
        }
        if matches!(c.from, Party::Task(_)) {
            return Err("a monitor connection held by a task");
        }
        if c.target_vp != 0 || c.sint != 0 {
            return Err("a target VP or SINT on a monitor port");
        }
        let held = |o: &&Connection| o.port_type == PortType::Monitor && o.from == c.from;
        if self.connections[..i].iter().filter(held).count() >= MAX_HELD_MONITORS {
            return Err("a partition holding more monitor connections than MAX_HELD_MONITORS");
        }
        if c.from_page.is_none() || c.to_page.is_some() != matches!(c.to, Party::Partition(_)) {
            return Err("a monitor page missing, or one in a task");
        }
        for (n, (k, gpa)) in c.monitor_pages().enumerate() {
            if !self.partitions.get(usize::from(k.0)).is_some_and(|p| p.monitor_page_fits(gpa)) {
                return Err("a monitor page unaligned, in RAM or in the platform MMIO");
            }
            let earlier = self.connections[..i].iter().flat_map(Connection::monitor_pages);
            let mut earlier = earlier.chain(c.monitor_pages().take(n));
            if earlier.any(|(o, other)| o == k && other == gpa) {
                return Err("a monitor page used twice in one partition");
            }
        }
        Ok(())
    }
}

// Task and endpoint indices and `vcpus` are u8.
const _: () = assert!(MAX_TASKS <= 256);
const _: () = assert!(abi::invoke::MAX_PRIORITY <= u8::MAX as u64);
const _: () = assert!(abi::limits::MAX_VPS_PER_PARTITION <= u8::MAX as usize);
const _: () = assert!(MAX_ENDPOINTS <= 256);
// Partition indices are u8; flag numbers fit a u16.
const _: () = assert!(MAX_PARTITIONS <= 256);
const _: () = assert!(EVENT_FLAGS_PER_SINT <= u16::MAX as u32);
// A task's `cpu` is a u8.
const _: () = assert!(abi::limits::MAX_CPUS <= u8::MAX as usize);
