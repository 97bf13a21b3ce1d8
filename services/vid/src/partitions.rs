//! Running the partitions the manifest gives this VID. The partition
//! manager has created them (RAM mapped, ROM, VPs); the VID attaches each
//! there, receiving capabilities to its RAM (read, write), the partition and
//! VP 0 (run: the manager keeps mappings, VP placement and monitors), loads
//! the guest kernel from the boot image with the Multiboot loader, binds
//! VP 0 to its exit endpoint, sets its registers and starts it. The exit
//! loop is the library's ([`vid::serve`]), over this task's kernel and
//! services ([`host`]). Every partition's exits arrive on the endpoint the
//! VID serves, badged in [`vid::serve::EXIT_BADGES`] (partition and VP),
//! where clients' requests of the `vid` interface arrive too.

use abi::limits::MAX_VPS_PER_PARTITION;
use abi::{CapSlot, ErrorCode, ObjectType, Rights};
use partition_manager_api::Handover;
use partition_manager_api::layout::{BIOS_AREA, ROM_GPA};
use scheduler::classic;
use sysimage::manifest::{MAX_HELD_MONITORS, PartitionIndex, Party, PortType, TaskIndex};
use sysimage::{SchedulerPolicy, SystemImage};
use tessera_rt::memory::Window;
use tessera_rt::untyped::retype;
use tessera_rt::{Operation, caps, invoke, log};
use tlfs::{HV_MESSAGE_WORDS, HvMessage};
use vid::acpi;
use vid::exits::{APIC_HZ, Vmm, VmmConfig};
use vid::host::NoServices;
use vid::linux;
use vid::loader::{self, LoadRequest, Module};
use vid::monitor::{Monitor, MonitorPage};
use vid::placement::{self, Pairing};
use vid::profile::EnlightenmentProfile;
use vid::serve::{Boot, EXIT_STATE, EntryWords, MAX_BOOT_MODULES, MAX_RUNNING, Monitors, Running, Setup, exit_badge};
use vid::synthetic::{HostClock, Vendor};

/// Offset of `acpi_rsdp_addr` in the zero page (boot protocol 2.14).
const ACPI_RSDP_ADDR: usize = 0x070;
const PAGE: u64 = x86defs::PAGE_SIZE;
/// Where the boot image is mapped in the VID.
const BOOTFS_AT: u64 = 0x1_0000_0000;
/// Where each partition's RAM is mapped in the VID (64 GiB apart).
const RAM_AT: u64 = 0x10_0000_0000;
const RAM_STRIDE: u64 = 0x10_0000_0000;

/// How this VID treats exits, chosen by its task name: the product, or a
/// fault-injection personality for the tests of VID failure
/// (`tests/manifests/vid-failures.toml`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Personality {
    Normal,
    /// "vid-dies": exits (dropping its reply right) at the first exit.
    Dies,
    /// "vid-stalls": takes the first exit and never answers it.
    Stalls,
}

impl Personality {
    fn of(task: &str) -> Personality {
        match task {
            "vid-dies" => Personality::Dies,
            "vid-stalls" => Personality::Stalls,
            _ => Personality::Normal,
        }
    }
}

/// Hands out the VID's free capability slots.
pub struct Slots(pub u32);

impl Slots {
    pub fn next(&mut self) -> CapSlot {
        self.0 += 1;
        CapSlot(self.0 - 1)
    }
}

fn bits(r: Rights) -> u64 {
    u64::from(r.into_bits())
}

/// Makes `call` with its reply's capabilities received into the given
/// slots, then checks that each arrived with the expected type (they do
/// only if the reply carried them).
fn receiving<T>(into: &[(CapSlot, ObjectType)], call: impl FnOnce() -> Result<T, Failure>) -> Result<T, Failure> {
    let mut slots = [CapSlot::NULL; 3];
    for (slot, (cap, _)) in slots.iter_mut().zip(into) {
        *slot = *cap;
    }
    tessera_rt::ipc_buffer::set_receive_slots(slots).map_err(Failure::kernel)?;
    let result = call();
    let _ = tessera_rt::ipc_buffer::set_receive_slots([CapSlot::NULL; 3]);
    let value = result?;
    for &(slot, kind) in into {
        let identified = invoke(slot, Operation::CAP_IDENTIFY, &[]).map(|r| r.words().first().copied());
        if identified != Ok(Some(u64::from(kind.0))) {
            return Err(Failure::kernel(ErrorCode::INVALID_CAPABILITY));
        }
    }
    Ok(value)
}

/// Why a call to the partition manager failed.
enum Failure {
    Call(tessera_idl::CallError),
    Hv(tlfs::HvError),
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Failure::Call(e) => write!(f, "call failed: {e:?}"),
            Failure::Hv(e) => write!(f, "status {:#x}", e.status().0),
        }
    }
}

impl Failure {
    fn kernel(e: ErrorCode) -> Failure {
        Failure::Call(tessera_idl::CallError::Kernel(e))
    }
}

impl From<tessera_idl::CallError> for Failure {
    fn from(e: tessera_idl::CallError) -> Failure {
        Failure::Call(e)
    }
}

impl From<tlfs::HvError> for Failure {
    fn from(e: tlfs::HvError) -> Failure {
        Failure::Hv(e)
    }
}

/// Runs the partitions the boot image gives this VID, if any, until they
/// have all ended, serving its interface on `endpoint` (the one it
/// serves, `ready` the log line that says so) meanwhile and after; returns
/// only if it has none to run.
pub fn run(
    untyped: CapSlot,
    task: CapSlot,
    endpoint: CapSlot,
    ready: core::fmt::Arguments<'_>,
    slots: &mut Slots,
) -> Result<(), ErrorCode> {
    let Some(bootfs) = caps::find("bootfs", ObjectType::MEMORY) else { return Ok(()) };
    let size = invoke(bootfs, Operation::CAP_IDENTIFY, &[])?.words()[3];
    // The boot image stays mapped for the VID's life.
    let bytes = Window::map(task, bootfs, BOOTFS_AT, 0, size / PAGE, false)?.leak();
    let image = SystemImage::parse(bytes).map_err(|_| ErrorCode::INVALID_ARGUMENT)?;
    let me = tessera_rt::startup::task_name();
    let Some(index) = image.manifest.tasks.iter().position(|t| t.name == me) else { return Ok(()) };
    let exits = exit_endpoint(endpoint, untyped, slots)?;
    let registry = Registry::find();
    let clock = WallClock::read();
    // Held in this frame only: each partition's Vmm is large for the stack.
    let mut running = heapless::Vec::<Running<'static>, MAX_RUNNING>::new();
    let mine = || image.manifest.partitions.iter().enumerate().filter(|(_, p)| p.vid == TaskIndex(index as u8));
    let plan = Plan::new(&image.manifest, mine().map(|(_, p)| p).take(MAX_RUNNING));
    // Which of `running` a previous instance of this VID left behind.
    let mut taken_back = heapless::Vec::<bool, MAX_RUNNING>::new();
    for (k, (i, p)) in mine().enumerate().take(MAX_RUNNING) {
        match start(&image, p, i as u32, k, &plan, task, untyped, exits, &registry, &clock, slots) {
            Ok((r, how)) => {
                let _ = running.push(r);
                let _ = taken_back.push(how != Handover::First);
            }
            Err(e) => log!("{}: cannot start the partition: {e:?}", p.name),
        }
    }
    if running.is_empty() {
        return Ok(());
    }
    let services = TaskServices::find(registry);
    // Every guest is loaded before any VP runs, so no exit waits while a
    // later guest loads. One a previous instance left restarts as after a
    // guest reset, or stays stopped, as its `on_reset` says.
    let kernel = TaskKernel(exits);
    let tsc_hz = tessera_rt::startup::tsc_hz();
    for (r, &back) in running.iter_mut().zip(&taken_back) {
        vid::serve::take_over(&kernel, r, tsc_hz);
        if back {
            vid::serve::after_vid_restart(&kernel, &services, r, tessera_rt::arch::rdtsc());
        } else if let Err(e) = r.start(&kernel) {
            log!("{}: cannot start its VP: {e:?}", r.name());
        }
    }
    let personality = Personality::of(me);
    if personality != Personality::Normal {
        fail_on_purpose(personality, exits, untyped, slots);
    }
    if exits != endpoint {
        log!("exits arrive on an endpoint of its own: the interface waits for the partitions to end");
    }
    if let Err(e) = vid::serve::serve(&kernel, &services, &mut running, tsc_hz) {
        log!("partitions: {e:?}");
    }
    log!("{ready}");
    // The partitions have ended: what is asked of them is answered as the
    // loop did, with nothing left to stop.
    tessera_rt::serve(endpoint, |caller, message| {
        let request = core::mem::replace(message, tessera_idl::Message::new(0));
        *message = vid::serve::answer(&TaskKernel(endpoint), &NoServices, &mut running, caller.0, request);
    })
}

/// Where the VPs exit to: the endpoint the VID serves, so its interface
/// is answered while they run, if the supervisor let it mint SEND
/// capabilities to it (a VID with partitions); else one of its own.
fn exit_endpoint(endpoint: CapSlot, untyped: CapSlot, slots: &mut Slots) -> Result<CapSlot, ErrorCode> {
    let identified = invoke(endpoint, Operation::CAP_IDENTIFY, &[]);
    let words = identified.as_ref().map(|r| r.words()).unwrap_or(&[]);
    if let [kind, rights, ..] = *words
        && kind == u64::from(ObjectType::ENDPOINT.0)
        && Rights::from_bits(rights as u32).send()
    {
        return Ok(endpoint);
    }
    let exits = slots.next();
    retype(untyped, ObjectType::ENDPOINT, exits, 0)?;
    Ok(exits)
}

/// Where and how this VID's VPs run: each VP's CPU (its partition's
/// manifest `cpus`, else VP i on CPU i mod the CPU count, or under the core
/// policy on SMT VP pairs on the siblings of a core, `vid::placement`; the
/// boot CPU if the machine has no such CPU) and, under the classic policy, its
/// scheduling-context parameters from `scheduler::classic`, which sees all
/// of this VID's partitions (the weights of the VPs on one CPU share it).
struct Plan {
    classic: bool,
    /// The root scheduler: the VID starts and stops the VPs itself.
    root: bool,
    /// The core scheduler: VP pairs go on SMT siblings.
    core: bool,
    /// What partition k's CPUID tells of its topology (`vid::placement`).
    pairing: [Pairing; MAX_RUNNING],
    partitions: heapless::Vec<classic::Classic, MAX_RUNNING>,
    vps: heapless::Vec<classic::VpPlace, { MAX_RUNNING * MAX_VPS_PER_PARTITION }>,
    /// Index in `vps` of partition k's VP 0.
    first: [usize; MAX_RUNNING],
}

impl Plan {
    fn new<'p, 'a: 'p>(
        manifest: &sysimage::Manifest<'a>,
        mine: impl Iterator<Item = &'p sysimage::manifest::Partition<'a>>,
    ) -> Plan {
        let cpus = tessera_rt::startup::cpu_count().max(1);
        let mut plan = Plan {
            classic: manifest.scheduler == SchedulerPolicy::Classic,
            root: manifest.scheduler == SchedulerPolicy::Root,
            core: manifest.scheduler == SchedulerPolicy::Core,
            pairing: [Pairing::Cores; MAX_RUNNING],
            partitions: heapless::Vec::new(),
            vps: heapless::Vec::new(),
            first: [0; MAX_RUNNING],
        };
        let (siblings, mut next_core) = (tessera_rt::startup::siblings(), 0);
        for (k, p) in mine.enumerate() {
            let c = p.classic;
            let _ =
                plan.partitions.push(classic::Classic { reserve: c.reserve, cap: c.cap, weight: u32::from(c.weight) });
            plan.first[k] = plan.vps.len();
            let requested = |vp: u32| {
                p.cpu_of(vp as usize).map(|cpu| {
                    if u32::from(cpu) < cpus {
                        return u32::from(cpu);
                    }
                    log!("{}: VP {vp} stays on the boot CPU: the machine has no CPU {cpu}", p.name);
                    0
                })
            };
            let (placed, pairing) =
                placement::place(u32::from(p.vcpus), requested, cpus, &siblings, plan.core, &mut next_core);
            plan.pairing[k] = pairing;
            for lp in placed {
                let _ = plan.vps.push(classic::VpPlace { partition: k, lp });
            }
        }
        if plan.classic
            && let Err(e) = classic::check_all(&plan.partitions, &plan.vps, cpus)
        {
            // TLFS 14.2.1: reserves that cannot be guaranteed may be reset to zero.
            log!("classic scheduler: {e}; the reserves of this VID's partitions are reset to 0");
            for p in plan.partitions.iter_mut() {
                p.reserve = 0;
            }
        }
        plan
    }

    /// The CPU of partition `k`'s VP `vp`.
    fn cpu(&self, k: usize, vp: usize) -> u32 {
        self.vps.get(self.first[k] + vp).map_or(0, |v| v.lp)
    }

    /// The scheduling-context parameters of partition `k`'s VP `vp`
    /// (`None`: the kernel's defaults).
    fn params(&self, k: usize, vp: usize) -> Option<classic::ScParams> {
        if !self.classic {
            return None;
        }
        classic::sc_params(&self.partitions, &self.vps, self.first[k] + vp)
    }
}

/// A scheduling context for VP `index` of the VID's `k`-th partition, on
/// its planned CPU with its planned parameters, as a VP_SET_HANDLER
/// argument; 0 (the default context: the boot CPU, the kernel's
/// parameters) when it needs none (one CPU, no classic policy) or if none
/// can be made. With it, the CPU the VP runs on.
fn placement(untyped: CapSlot, slots: &mut Slots, plan: &Plan, k: usize, index: usize, name: &str) -> (u64, u32) {
    let cpus = tessera_rt::startup::cpu_count();
    let (cpu, params) = (plan.cpu(k, index), plan.params(k, index));
    if cpus <= 1 && params.is_none() {
        return (0, 0);
    }
    let context = slots.next();
    if let Err(e) = retype(untyped, ObjectType::SCHED_CONTEXT, context, 0) {
        log!("{name}: VP {index} stays on the boot CPU with the kernel's scheduling: no scheduling context ({e:?})");
        return (0, 0);
    }
    if let Some(params) = params {
        // The context's ceiling is the VID's own parameters (an unlimited
        // budget at its manifest priority, above the reserve priority).
        match invoke(context, Operation::SCHED_CONFIGURE, &params.words()) {
            Ok(_) => log!(
                "{name}: VP {index} on CPU {cpu}: slice {}, budget {}/{} ticks, reserve {} ticks at priority {}",
                params.slice,
                params.budget,
                params.period,
                params.reserve,
                params.reserve_priority
            ),
            Err(e) => log!("{name}: VP {index}: the kernel refused its classic scheduling {params:?} ({e:?})"),
        }
        if let Some(&classic) = plan.partitions.get(k) {
            attach::attach(name, index, cpu, classic, context);
        }
    }
    if cpu != 0
        && let Err(e) = invoke(context, Operation::SCHED_SET_CPU, &[u64::from(cpu)])
    {
        log!("{name}: VP {index} stays on the boot CPU: its scheduling context cannot go to CPU {cpu} ({e:?})");
        return (u64::from(context.0), 0);
    }
    (u64::from(context.0), cpu)
}

/// What partition `k`'s CPUID tells of its topology, given the CPUs its
/// VPs run on (`ran`, by VP index): the plan's pairing if each pair really
/// went to two siblings, else 1 thread per core. Logged under the core
/// policy, with each VP's CPU.
fn told(plan: &Plan, k: usize, ran: &[u32], name: &str) -> u32 {
    let mut pairing = plan.pairing[k];
    let siblings = tessera_rt::startup::siblings();
    if pairing == Pairing::Pairs
        && let Some(vp) = (0..ran.len().saturating_sub(1))
            .step_by(2)
            .find(|&vp| !placement::are_siblings(&siblings, ran[vp], ran[vp + 1]))
    {
        pairing = Pairing::Conflict { vp: vp as u32, cpus: (ran[vp], ran[vp + 1]) };
    }
    if plan.core {
        for (vp, cpu) in ran.iter().enumerate() {
            log!("{name}: VP {vp} runs on CPU {cpu}");
        }
        match pairing {
            Pairing::Pairs => {
                log!("{name}: core scheduler: VPs 2k and 2k+1 run on SMT siblings; told 2 threads per core")
            }
            Pairing::Conflict { vp, cpus: (a, b) } => log!(
                "{name}: core scheduler: VPs {vp} and {} are on CPUs {a} and {b}, not SMT siblings; told 1 thread per core",
                vp + 1
            ),
            Pairing::Cores => log!("{name}: core scheduler: no SMT pairs (one VP or no SMT); told 1 thread per core"),
        }
    }
    pairing.threads_per_core()
}

/// Attaches manifest partition `index` (the VID's `k`-th), loads its guest
/// and binds its VPs to the exit endpoint ([`exit_badge`]); none is
/// started. With it, how the partition manager handed it over: a previous
/// instance of this VID may have left it.
#[allow(clippy::too_many_arguments)]
fn start(
    image: &SystemImage<'static>,
    p: &sysimage::manifest::Partition<'static>,
    index: u32,
    k: usize,
    plan: &Plan,
    task: CapSlot,
    untyped: CapSlot,
    exits: CapSlot,
    registry: &Registry,
    clock: &WallClock,
    slots: &mut Slots,
) -> Result<(Running<'static>, Handover), ErrorCode> {
    let kernel = image.guest_image(p).ok_or(ErrorCode::INVALID_ARGUMENT)?;
    let mut modules: heapless::Vec<Module<'static>, MAX_BOOT_MODULES> = heapless::Vec::new();
    for name in &p.modules {
        let bytes = image.bootfs.file(name).ok_or(ErrorCode::INVALID_ARGUMENT)?;
        let _ = modules.push(Module { string: name, bytes });
    }
    let (ram, partition, vp) = (slots.next(), slots.next(), slots.next());
    let (id, memory, vcpus, how) = registry.attach(index, [ram, partition, vp]).map_err(|e| {
        log!("{}: the partition manager did not hand it over: {e}", p.name);
        ErrorCode::INVALID_STATE
    })?;
    log!("{}: the partition manager holds it as partition {id}", p.name);
    match how {
        Handover::First => {}
        Handover::Running => log!(
            "{}: stopped because its VID died: a previous instance of {} left it running; the partition manager stopped its VPs and reset them",
            p.name,
            tessera_rt::startup::task_name()
        ),
        Handover::Stopped => log!(
            "{}: stopped because its VID died: its VPs' monitor stopped it; the partition manager reset them",
            p.name
        ),
    }
    let pages = memory / PAGE;

    // Load the kernel into RAM through a window that stays mapped: the exit
    // handler reads and writes guest memory through it.
    let window = Window::map(task, ram, RAM_AT + k as u64 * RAM_STRIDE, 0, pages, true)?;
    let ram_bytes = window.leak_mut().ok_or(ErrorCode::INVALID_STATE)?;
    let boot = Boot { name: p.name, image: p.image, cmdline: p.cmdline, vcpus: p.vcpus, kernel, modules, memory, load };
    let registers = load(&boot, ram_bytes)?;

    let mut vps = heapless::Vec::<CapSlot, MAX_VPS_PER_PARTITION>::new();
    let _ = vps.push(vp);
    for index in 1..usize::try_from(vcpus).unwrap_or(1).min(MAX_VPS_PER_PARTITION) {
        let ap = slots.next();
        registry.attach_vp(id, index as u32, ap).map_err(|e| {
            log!("{}: the partition manager did not hand VP {index} over: {e}", p.name);
            ErrorCode::INVALID_STATE
        })?;
        let _ = vps.push(ap);
    }
    // The pages that keep the RAM beneath the overlay pages, mapped in the
    // upper half of the partition's window range.
    let store = slots.next();
    let kept = vid::overlay::slots(vps.len()) as u64;
    retype(untyped, ObjectType::MEMORY, store, kept).inspect_err(|e| {
        log!("{}: no memory for the RAM beneath its overlay pages: {e:?}", p.name);
    })?;
    let window = Window::map(task, store, RAM_AT + k as u64 * RAM_STRIDE + RAM_STRIDE / 2, 0, kept, true)?;
    let beneath = window.leak_mut().ok_or(ErrorCode::INVALID_STATE)?;
    let mut ran: heapless::Vec<u32, MAX_VPS_PER_PARTITION> = heapless::Vec::new();
    for (index, &v) in vps.iter().enumerate() {
        let exit_cap = slots.next();
        let send = bits(Rights::new().with_send(true));
        invoke(exits, Operation::CAP_MINT, &[u64::from(exit_cap.0), send, exit_badge(k, index)])?;
        // The manager put the VP into the partition; the VID binds it to its
        // exit endpoint and to a scheduling context on its CPU (priority 0,
        // the VID's own budget).
        let (context, cpu) = placement(untyped, slots, plan, k, index, p.name);
        let _ = ran.push(cpu);
        invoke(v, Operation::VP_SET_HANDLER, &[u64::from(exit_cap.0), context])?;
        invoke(v, Operation::VP_SET_EXIT_STATE, &[EXIT_STATE.into_bits()])?;
    }
    // VP 0 starts at the loader's entry; the others wait for a SIPI.
    invoke(vp, Operation::VP_SET_REGISTERS, &registers)?;
    if vcpus > 1 {
        log!("{}: {vcpus} VPs; the application processors wait for INIT and SIPI", p.name);
    }
    if plan.root {
        log!("{}: root scheduler: the VID runs VP 1 and up only while VP 0 is halted", p.name);
    }
    let monitors = monitor_pages(image, index, k, task, registry, slots, p.name);
    let profile = EnlightenmentProfile::new(p.enlightenments, u32::from(p.vcpus), 1).map_err(|e| {
        log!("{}: the enlightenments are not coherent: {e:?}", p.name);
        ErrorCode::INVALID_ARGUMENT
    })?;
    let config = VmmConfig {
        profile,
        vendor: host_vendor(),
        clock: HostClock { tsc_hz: tessera_rt::startup::tsc_hz(), apic_hz: APIC_HZ },
        vps: vps.len() as u32,
        threads_per_core: told(plan, k, &ran, p.name),
        created_tsc: tessera_rt::arch::rdtsc(),
        testdev: p.devices.contains(sysimage::manifest::Devices::HYPERV_TESTDEV),
        wall_clock: clock.now(),
        host_cpuid: tessera_rt::arch::cpuid,
        cpuid_mask: p.cpuid_mask,
        ignore_unknown_msrs: p.ignore_unknown_msrs,
    };
    let setup = Setup {
        name: p.name,
        index: u64::from(index),
        managed: Some(id),
        partition,
        vps,
        ram: ram_bytes,
        beneath,
        vmm: Vmm::with_config(config),
        root: plan.root,
        monitors,
        on_reset: p.on_reset,
        boot: Some(boot),
    };
    Ok((Running::new(setup), how))
}

/// The host's time of day, for the guests' RTCs: what ring 0 read from
/// the machine's MC146818 at boot (the startup page), carried on by the
/// TSC. Without it the RTCs start at [`vid::exits::DEFAULT_WALL_CLOCK`],
/// which is logged.
struct WallClock {
    unix: u64,
    tsc: u64,
}

impl WallClock {
    fn read() -> WallClock {
        let tsc = tessera_rt::arch::rdtsc();
        let host = tessera_rt::startup::wall_clock();
        let unix = host.unwrap_or(vid::exits::DEFAULT_WALL_CLOCK);
        let t = vid::rtc::calendar::DateTime::from_unix(unix);
        let (y, mo, d, h, mi, sec) = (t.year, t.month, t.day, t.hour, t.minute, t.second);
        match host {
            Some(_) => log!("RTC: the host's clock reads {y}-{mo:02}-{d:02} {h:02}:{mi:02}:{sec:02} UTC"),
            None => log!(
                "RTC: the kernel read no host clock: the guests' clocks start at {y}-{mo:02}-{d:02} {h:02}:{mi:02}:{sec:02} UTC"
            ),
        }
        WallClock { unix, tsc }
    }

    /// The time of day now, in seconds since 1970.
    fn now(&self) -> u64 {
        let hz = tessera_rt::startup::tsc_hz().max(1);
        self.unix + tessera_rt::arch::rdtsc().saturating_sub(self.tsc) / hz
    }
}

/// The pages of the monitor connections manifest partition `index` (the
/// VID's `k`-th) holds, from the partition manager, each mapped in the
/// last quarter of the partition's window range for the exit loop to
/// inspect (TLFS 11.7). One the VID cannot get is logged and left out:
/// its triggers are never signalled.
fn monitor_pages(
    image: &SystemImage<'static>,
    index: u32,
    k: usize,
    task: CapSlot,
    registry: &Registry,
    slots: &mut Slots,
    name: &str,
) -> Monitors<'static> {
    let mut monitors = Monitors::new();
    let held = image
        .manifest
        .connections
        .iter()
        .filter(|c| c.port_type == PortType::Monitor && c.from == Party::Partition(PartitionIndex(index as u8)));
    for (n, c) in held.enumerate().take(MAX_HELD_MONITORS) {
        let into = slots.next();
        let at = RAM_AT + k as u64 * RAM_STRIDE + RAM_STRIDE / 4 * 3 + n as u64 * PAGE;
        let gpa = match registry.attach_monitor(index, c.connection_id, into) {
            Ok(gpa) => gpa,
            Err(e) => {
                log!("{name}: no monitor page for connection {:#x}: {e}", c.connection_id);
                continue;
            }
        };
        let Some(words) = Window::map(task, into, at, 0, 1, true).ok().and_then(Window::leak_atomic) else {
            log!("{name}: the monitor page of connection {:#x} cannot be mapped", c.connection_id);
            continue;
        };
        log!("{name}: monitor page of connection {:#x} at {gpa:#x}", c.connection_id);
        let monitor = Monitor::new(tessera_rt::startup::tsc_hz());
        let targets = image
            .manifest
            .connections
            .iter()
            .filter(|e| e.port_type == PortType::Event && e.from == c.from && e.to == c.to)
            .map(|e| e.connection_id)
            .collect();
        let _ = monitors.push(MonitorPage { connection_id: c.connection_id, words, targets, monitor });
    }
    monitors
}

/// Takes the first exit and then fails as `personality` says: the task
/// exits, or it waits forever on a notification nobody signals.
fn fail_on_purpose(personality: Personality, exits: CapSlot, untyped: CapSlot, slots: &mut Slots) -> ! {
    let first = tessera_rt::recv(exits);
    let rip = first
        .ok()
        .and_then(|r| HvMessage::from_words(r.message.words().get(..HV_MESSAGE_WORDS)?).ok())
        .map_or(0, |m| m.parse().ok().and_then(|b| b.intercept_header().map(|h| h.rip)).unwrap_or(0));
    if personality == Personality::Dies {
        log!("exiting on purpose with the exit at rip {rip:#x} unanswered");
        tessera_rt::exit();
    }
    log!("never answering the exit at rip {rip:#x}, on purpose");
    let never = slots.next();
    if retype(untyped, ObjectType::NOTIFICATION, never, 0).is_ok() {
        loop {
            let _ = tessera_rt::wait(never);
        }
    }
    loop {
        tessera_rt::yield_now();
    }
}

/// Writes the partition's ACPI tables into its BIOS area: RAM pages
/// (GPA n is RAM byte n) the partition manager maps into the guest
/// read-only ([`BIOS_AREA`]), where every guest finds the RSDP by the ACPI
/// specification's scan; and the FACS, which the guest writes, into the
/// EBDA in low RAM. The memory maps reserve both. The FADT says whether the
/// CMOS RTC exists: whether the VID's port table routes its index port.
fn firmware_tables(p: &Boot<'_>, ram: &mut [u8]) -> Result<acpi::AcpiTables, ErrorCode> {
    let at = acpi::DEFAULT_BASE_GPA;
    const _: () = assert!(acpi::DEFAULT_BASE_GPA >= BIOS_AREA);
    const _: () = assert!(acpi::DEFAULT_BASE_GPA + acpi::REGION_SIZE as u64 <= ROM_GPA);
    let cmos_rtc = vid::bus::PORT_ROUTES.iter().any(|r| r.contains(acpi::CMOS_INDEX_PORT));
    let facs_gpa = acpi::DEFAULT_FACS_GPA;
    const _: () = assert!(acpi::DEFAULT_FACS_GPA == loader::EBDA);
    let config = acpi::AcpiConfig { vps: u32::from(p.vcpus), cmos_rtc, facs_gpa };
    let region = ram.get_mut(at as usize..at as usize + acpi::REGION_SIZE).ok_or(ErrorCode::INVALID_ARGUMENT)?;
    let tables = acpi::build(&config, region, at).map_err(|e| {
        log!("{}: no ACPI tables: {e:?}", p.name);
        ErrorCode::INVALID_ARGUMENT
    })?;
    let facs = acpi::facs();
    let facs = zerocopy::IntoBytes::as_bytes(&facs);
    ram.get_mut(facs_gpa as usize..facs_gpa as usize + facs.len())
        .ok_or(ErrorCode::INVALID_ARGUMENT)?
        .copy_from_slice(facs);
    Ok(tables)
}

/// Loads the partition's guest into its RAM: the ACPI tables into its BIOS
/// area, then a Linux bzImage (with the first module as its initrd) by the
/// x86 boot protocol, anything else as a Multiboot kernel, whose command
/// line starts with the kernel's file name (its bootfs name). Returns the
/// VP's starting registers. Run at the start and again at each restart
/// ([`Boot`]).
fn load(boot: &Boot<'_>, ram: &mut [u8]) -> Result<EntryWords, ErrorCode> {
    let (p, kernel, modules, memory) = (boot, boot.kernel, &boot.modules[..], boot.memory);
    let refuse = |what: &dyn core::fmt::Debug| {
        log!("{}: the guest kernel cannot be loaded: {what:?}", p.name);
        ErrorCode::INVALID_ARGUMENT
    };
    let tables = firmware_tables(p, ram)?;
    if linux::parse_header(kernel).is_ok() {
        // The e820 map reserves the EBDA and the legacy hole with the BIOS
        // area, where the tables are.
        let memory_map = linux::standard_memory_map(memory);
        let initrd = modules.first().map_or(&[][..], |m| m.bytes);
        let request = linux::LinuxRequest {
            kernel,
            initrd,
            cmdline: p.cmdline,
            ram_size: memory,
            memory_map: &memory_map,
            entry: linux::BootEntry::Long64,
        };
        let mut area = [0u8; linux::LOW_AREA_LEN];
        let plan = linux::plan(&request, &mut area).map_err(|e| refuse(&e))?;
        plan.apply(ram).map_err(|e| refuse(&e))?;
        // boot_params.acpi_rsdp_addr: no scan for the RSDP.
        let rsdp_field = linux::LOW_AREA as usize + ACPI_RSDP_ADDR;
        ram[rsdp_field..rsdp_field + 8].copy_from_slice(&tables.rsdp_gpa.to_le_bytes());
        log!(
            "{}: Linux kernel (boot protocol {:#x}) at {:#x}, initrd of {} KiB, {} MiB of RAM, command line \"{}\"",
            p.name,
            plan.header.version,
            plan.entry_point,
            initrd.len() / 1024,
            memory >> 20,
            p.cmdline
        );
        return Ok(plan.set_registers_words());
    }
    let mut area = [0u8; 1024];
    let request = LoadRequest { kernel, name: p.image, modules, cmdline: p.cmdline, ram_size: memory };
    let plan = loader::plan(&request, &mut area).map_err(|e| refuse(&e))?;
    plan.apply(ram).map_err(|e| refuse(&e))?;
    let [name, space, args] = request.command_line();
    log!(
        "{}: Multiboot kernel at {:#x}, {} MiB of RAM, command line \"{name}{space}{args}\"",
        p.name,
        plan.entry,
        memory >> 20,
    );
    Ok(plan.set_registers_words())
}

/// Whose virtualization instructions the guest's hypercall page uses: the
/// host CPU's vendor.
fn host_vendor() -> Vendor {
    let [_, b, c, d] = tessera_rt::arch::cpuid(0, 0);
    let mut name = [0u8; 12];
    name[..4].copy_from_slice(&b.to_le_bytes());
    name[4..8].copy_from_slice(&d.to_le_bytes());
    name[8..].copy_from_slice(&c.to_le_bytes());
    if &name == b"GenuineIntel" { Vendor::Intel } else { Vendor::Amd }
}

mod attach;
mod host;
pub use host::TaskKernel;
use host::{Registry, TaskServices};
