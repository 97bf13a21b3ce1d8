//! Starting the root task (the supervisor) from the boot image.
//!
//! The kernel creates exactly one task itself: the root task (the
//! manifest's supervisor) that the header of the "bootfs" module names. It
//! reads only that header and the file table; the manifest is the
//! supervisor's to parse. It grants the root task everything the rest of
//! the system will be built from: its own task, an untyped pool of the free
//! memory, the boot image (read-only), all I/O ports, its thread and
//! scheduling context. The supervisor starts every other task.
//!
//! Nothing restarts the root task: when it dies ([`died`]) the kernel stops
//! every CPU, reports it and follows the bootfs header's policy (the
//! manifest's `on_supervisor_death`): power off, or reset the machine.

use crate::arch::{lockup, memory};
use crate::object::{IoRange, Kernel, MemoryObject, SchedContext, Thread};
use abi::startup::{StartupInfo, layout};
use abi::{CapSlot, FaultMessage, ObjectType, Rights};
use bootinfo::BootInfo;
use core::fmt;
use kerncore::cap::{Capability, ObjRef};
use kerncore::frames::{Frames, Runs};
use kerncore::ipc::ThreadState;
use kerncore::paging::PAGE_SIZE;
use kerncore::sched::{Ceiling, Priority, SchedParams, ThreadId};
use platform::{ExitStatus, println};

/// Frames kept back from the untyped pool for the kernel's own page tables.
const KERNEL_RESERVE_PAGES: u64 = 1024;

pub enum Error {
    NoBootfs,
    Image(bootfs::Error),
    Elf(elfload::ElfError),
    Object(abi::ErrorCode),
    Map,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoBootfs => write!(f, "no boot module named \"bootfs\""),
            Error::Image(e) => write!(f, "bad boot image: {e}"),
            Error::Elf(e) => write!(f, "bad supervisor binary: {e}"),
            Error::Object(e) => write!(f, "creating kernel objects failed: {e:?}"),
            Error::Map => write!(f, "mapping the supervisor failed"),
        }
    }
}

impl From<abi::ErrorCode> for Error {
    fn from(e: abi::ErrorCode) -> Self {
        Error::Object(e)
    }
}

/// The root task's index: the first task, which the kernel makes itself.
pub const ROOT_TASK: u32 = 0;

/// The root task's name and what to do when it dies, from the bootfs header.
static ON_DEATH: spin::Once<(abi::startup::Name, bootfs::OnDeath)> = spin::Once::new();

/// Builds the root task and makes its thread runnable.
pub fn start(k: &mut Kernel, info: &BootInfo) -> Result<(), Error> {
    let module = info.modules().iter().find(|m| m.name.as_str() == "bootfs").ok_or(Error::NoBootfs)?;
    let image_bytes = memory::boot_module(module.start, module.end - module.start);
    let image = bootfs::Bootfs::parse(image_bytes).map_err(Error::Image)?;
    let supervisor = image.root();
    let name = abi::startup::Name::new(supervisor.name).unwrap_or(abi::startup::Name::EMPTY);
    ON_DEATH.call_once(|| (name, supervisor.on_death));
    let binary = image.root_binary().ok_or(Error::Image(bootfs::Error::BadRootTask("binary not in the bootfs")))?;
    let elf = elfload::plan(binary, layout::IMAGE_START..layout::IMAGE_END).map_err(Error::Elf)?;

    let task = k.create_task()?;
    let mut startup = StartupInfo::empty();
    startup.tsc_hz = crate::arch::apic::tsc_hz();
    (startup.wall_clock, startup.wall_clock_tsc) = crate::arch::rtc::wall_clock();
    startup.cpu_count = crate::arch::smp::cpu_count();
    startup.siblings = crate::arch::smp::sibling_map();
    startup.task_name = name;
    let mut next_slot = 1u32;
    let mut grant = |k: &mut Kernel, startup: &mut StartupInfo, name: &str, object: ObjRef, rights: Rights| {
        let slot = CapSlot(next_slot);
        next_slot += 1;
        k.grant(task, slot, Capability::new(object, rights))?;
        startup.push(name, slot, object.kind);
        Ok::<CapSlot, Error>(slot)
    };

    grant(k, &mut startup, "self", ObjRef { kind: ObjectType::TASK, index: task }, Rights::ALL)?;

    // The program image, segment by segment, with its own rights.
    for segment in &elf.segments {
        let mem = k.create_memory(segment.pages)?;
        write_memory(k, mem, segment.offset_in_page, segment.data)?;
        let rights = Rights::new().with_read(true).with_write(segment.writable).with_execute(segment.executable);
        map(k, task, mem, segment.start, rights)?;
        grant(k, &mut startup, "image", ObjRef { kind: ObjectType::MEMORY, index: mem }, rights)?;
    }

    let rw = Rights::new().with_read(true).with_write(true);
    let stack_pages = supervisor.stack.div_ceil(PAGE_SIZE).max(1);
    let stack = k.create_memory(stack_pages)?;
    map(k, task, stack, layout::STACK_TOP - stack_pages * PAGE_SIZE, rw)?;
    grant(k, &mut startup, "stack", ObjRef { kind: ObjectType::MEMORY, index: stack }, rw)?;

    let memory_pages = supervisor.memory.div_ceil(PAGE_SIZE);
    if memory_pages > 0 {
        let heap = k.create_memory(memory_pages)?;
        map(k, task, heap, layout::MEMORY, rw)?;
        grant(k, &mut startup, "memory", ObjRef { kind: ObjectType::MEMORY, index: heap }, rw)?;
        startup.memory_size = memory_pages * PAGE_SIZE;
    }

    let ipc = k.create_memory(1)?;
    map(k, task, ipc, layout::IPC_BUFFER, rw)?;
    grant(k, &mut startup, "ipc-buffer", ObjRef { kind: ObjectType::MEMORY, index: ipc }, rw)?;
    startup.ipc_buffer = layout::IPC_BUFFER;

    // The boot image itself, read-only, so the supervisor can read the
    // manifest and the other binaries.
    let bootfs_pages = (module.end - module.start).div_ceil(PAGE_SIZE);
    let bootfs = free_memory_slot(k)?;
    let runs = Runs::single(Frames::reclaim(module.start, bootfs_pages as usize));
    k.memory[bootfs] = Some(MemoryObject { runs, owned: false, mappings: heapless::Vec::new() });
    let read = Rights::new().with_read(true);
    grant(k, &mut startup, "bootfs", ObjRef { kind: ObjectType::MEMORY, index: bootfs as u32 }, read)?;

    // Its thread, scheduling context and startup page, made before its
    // untyped so that pool gets every table entry left.
    let thread = k.ipc.alloc_thread()?;
    let priority = Priority::new(u64::from(supervisor.priority)).unwrap_or(Priority::HIGHEST);
    let params = SchedParams { priority, ..SchedParams::DEFAULT };
    let sc = k.sched.iter().position(Option::is_none).ok_or(abi::ErrorCode::OUT_OF_MEMORY)?;
    k.sched[sc] = Some(SchedContext { params, ceiling: Ceiling::HIGHEST, bound: Some(thread), cpu: 0 });
    k.threads[usize::from(thread.0)] = Thread { alive: true, ..Thread::DEAD };
    let page = k.create_memory(1)?;

    let pool_pages = memory::free_frame_count().saturating_sub(KERNEL_RESERVE_PAGES);
    let untyped = crate::object::invoke::create_untyped(k, pool_pages)?;
    // From here on, page tables the root task adds to itself are its own to pay.
    let root = ObjRef { kind: ObjectType::TASK, index: task };
    if let Some(charge) = k.charges.of(root) {
        charge.pool = Some(untyped);
    }
    grant(k, &mut startup, "untyped", ObjRef { kind: ObjectType::UNTYPED, index: untyped }, Rights::ALL)?;

    let io = k.io.iter().position(Option::is_none).ok_or(abi::ErrorCode::OUT_OF_MEMORY)?;
    k.io[io] = Some(IoRange { base: 0, count: x86defs::IO_PORT_COUNT });
    grant(k, &mut startup, "ioports", ObjRef { kind: ObjectType::IO_PORTS, index: io as u32 }, Rights::ALL)?;

    let irq = k.interrupts.iter().position(Option::is_none).ok_or(abi::ErrorCode::OUT_OF_MEMORY)?;
    k.interrupts[irq] =
        Some(crate::object::Interrupt { first: 0, count: crate::arch::ioapic::MAX_GSIS, binding: None, armed: false });
    grant(k, &mut startup, "interrupts", ObjRef { kind: ObjectType::INTERRUPT, index: irq as u32 }, Rights::ALL)?;

    // Its thread, at the manifest's priority, with no fault handler: if the
    // root task faults, it dies ([`died`]).
    grant(k, &mut startup, "thread", ObjRef { kind: ObjectType::THREAD, index: u32::from(thread.0) }, Rights::ALL)?;
    grant(k, &mut startup, "sched", ObjRef { kind: ObjectType::SCHED_CONTEXT, index: sc as u32 }, Rights::ALL)?;

    // The startup page goes last, once it lists every capability.
    map(k, task, page, layout::STARTUP, read)?;
    grant(k, &mut startup, "startup", ObjRef { kind: ObjectType::MEMORY, index: page }, read)?;
    let mut image = [0u8; PAGE_SIZE as usize];
    startup.write_to(&mut image).ok_or(Error::Map)?;
    write_memory(k, page, 0, &image)?;

    let ipc_phys = k.memory[ipc as usize].as_ref().and_then(|m| m.runs.phys(0)).ok_or(Error::Map)?.0;
    k.threads[usize::from(thread.0)] = Thread {
        context: crate::arch::entry::user_frame(elf.entry, layout::STACK_TOP, layout::STARTUP),
        alive: true,
        task: Some(task),
        ipc_buffer: Some((layout::IPC_BUFFER, ipc_phys)),
        started: true,
        ..Thread::DEAD
    };
    k.ipc.configure(thread, params)?;
    k.ipc.resume(thread)?;

    println!(
        "task {} (root): ring 3, priority {}, entry {:#x}; on its death: {}",
        supervisor.name,
        priority.level(),
        elf.entry,
        supervisor.on_death.name()
    );
    for cap in startup.caps() {
        println!("  cap {:>3} {:<12} {:?}", cap.slot.0, cap.name.as_str(), cap.kind);
    }
    Ok(())
}

/// How the root task died.
pub enum Death {
    /// Its thread faulted with no fault handler.
    Fault { thread: ThreadId, fault: FaultMessage },
    /// None of its threads can run again: each exited, was suspended or
    /// destroyed, or the task itself was.
    Ended,
}

/// Whether the root task lives: it exists and one of its threads can still
/// run (runnable, or blocked in IPC; not ended, suspended or faulted).
pub fn alive(k: &Kernel) -> bool {
    k.tasks[ROOT_TASK as usize].is_some()
        && k.threads.iter().enumerate().any(|(i, t)| {
            let state = k.ipc.state(ThreadId(i as u16));
            t.alive
                && t.task == Some(ROOT_TASK)
                && !matches!(state, ThreadState::Inactive | ThreadState::Suspended | ThreadState::Faulted)
        })
}

/// The root task died, and nothing can restart it: stops every other CPU
/// (so no task or guest runs on, half alive), reports what died and follows
/// the policy of the bootfs header: "halt" powers off with status 4
/// ([`ExitStatus::RootTaskDied`]), "reboot" resets the machine.
pub fn died(death: Death) -> ! {
    crate::arch::cpu::disable_interrupts();
    let (told, parked) = lockup::stop_others();
    // Another CPU may have been stopped holding the console's lock.
    let say = |args: fmt::Arguments<'_>| platform::console_write_emergency(format_args!("kernel: {args}\n"));
    let (name, on_death) = ON_DEATH.get().copied().unwrap_or((abi::startup::Name::EMPTY, bootfs::OnDeath::Halt));
    let name = name.as_str();
    match death {
        Death::Fault { thread, fault } => say(format_args!(
            "the root task ({name}) died: its thread {} faulted with no handler: {} (vector {}, error {:#x}) at rip {:#x}, address {:#x}",
            thread.0,
            crate::arch::idt::exception_name(fault.vector),
            fault.vector,
            fault.error_code,
            fault.rip,
            fault.address
        )),
        Death::Ended => say(format_args!(
            "the root task ({name}) died: none of its threads can run again (ended, suspended or destroyed)"
        )),
    }
    say(format_args!("other CPUs stopped: {} of {} (NMI)", parked.count_ones(), told.count_ones()));
    match on_death {
        bootfs::OnDeath::Halt => {
            say(format_args!("nothing can restart the system; on_supervisor_death = \"halt\": powering off"));
            platform::power_off(ExitStatus::RootTaskDied)
        }
        bootfs::OnDeath::Reboot => {
            say(format_args!(
                "nothing can restart the system; on_supervisor_death = \"reboot\": resetting the machine"
            ));
            platform::reset()
        }
    }
}

fn free_memory_slot(k: &Kernel) -> Result<usize, Error> {
    k.memory.iter().position(Option::is_none).ok_or(Error::Object(abi::ErrorCode::OUT_OF_MEMORY))
}

/// Writes `data` into memory object `mem` from byte `offset`, run by run.
fn write_memory(k: &Kernel, mem: u32, offset: u64, data: &[u8]) -> Result<(), Error> {
    let object = k.memory[mem as usize].as_ref().ok_or(Error::Map)?;
    let mut done = 0;
    while done < data.len() {
        let (phys, contiguous) = object.runs.phys(offset + done as u64).ok_or(Error::Map)?;
        let n = (data.len() - done).min(usize::try_from(contiguous).unwrap_or(usize::MAX));
        memory::write_phys(phys, &data[done..done + n]);
        done += n;
    }
    Ok(())
}

/// Maps a fresh object into the root task, recorded like `TASK_MAP` does
/// (its tables come from the kernel's reserve: nothing is charged yet).
fn map(k: &mut Kernel, task: u32, mem: u32, vaddr: u64, rights: Rights) -> Result<(), Error> {
    let object = k.memory[mem as usize].as_ref().ok_or(Error::Map)?;
    let pages = object.pages();
    if object.mappings.is_full() {
        return Err(Error::Map);
    }
    let segments: heapless::Vec<(u64, u64), { kerncore::frames::MAX_RUNS }> = object.runs.segments(0, pages).collect();
    let space = &mut k.tasks[task as usize].as_mut().ok_or(Error::Map)?.space;
    let rights = crate::arch::addrspace::UserRights { writable: rights.write(), executable: rights.execute() };
    let mut at = vaddr;
    for (phys, n) in segments {
        space.map(at, phys, n * PAGE_SIZE, rights, u64::MAX).0.map_err(|_| Error::Map)?;
        at += n * PAGE_SIZE;
    }
    let record = kerncore::mapping::Mapping { owner: task, at: vaddr, pages };
    k.memory[mem as usize].as_mut().ok_or(Error::Map)?.mappings.push(record).map_err(|_| Error::Map)
}
