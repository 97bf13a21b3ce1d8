//! Traps from ring 3 — syscalls, interrupts, faults — and the choice of
//! what runs next. Ring 0 is not preemptible: interrupts stay off from the
//! trap until the return to user mode, except while idling.

use crate::arch::entry::{SYSCALL_VECTOR, UserContext};
use crate::arch::idt::{SPURIOUS_VECTOR, TIMER_VECTOR, TrapFrame};
use crate::arch::ipi::{self, IPI_VECTOR, Outside};
use crate::arch::{apic, cpu, lockup, percpu};
use crate::object::transfer::Xfer;
use crate::object::{Kernel, syscall};
use crate::roottask;
use abi::FaultMessage;
use core::ops::{Deref, DerefMut};
use kerncore::ipc::Fast;
use kerncore::sched::ThreadId;
use platform::{ExitStatus, println};
use spin::{Mutex, MutexGuard};

/// All kernel state, behind the one kernel lock (seL4's big kernel lock):
/// a CPU holds it from its entry into ring 0 until it leaves for user or
/// guest mode or idles, with interrupts off throughout.
pub static KERNEL: Mutex<Kernel> = Mutex::new(Kernel::new());

/// The kernel lock, held by this CPU (or, between [`KernelGuard::unlock`]
/// and [`KernelGuard::relock`], not: then it must not be dereferenced).
pub struct KernelGuard(Option<MutexGuard<'static, Kernel>>);

/// Takes the kernel lock, serving other CPUs' requests while it waits
/// (the holder may be waiting for this CPU).
pub fn lock() -> KernelGuard {
    KernelGuard(Some(take()))
}

#[inline]
fn take() -> MutexGuard<'static, Kernel> {
    if let Some(guard) = KERNEL.try_lock() {
        lockup::lock_taken();
        return guard;
    }
    wait_for_lock()
}

/// [`take`] when another CPU holds the lock.
#[inline(never)]
fn wait_for_lock() -> MutexGuard<'static, Kernel> {
    let mut wait = lockup::LockWait::new();
    loop {
        ipi::serve();
        wait.check();
        core::hint::spin_loop();
        if let Some(guard) = KERNEL.try_lock() {
            lockup::lock_taken();
            return guard;
        }
    }
}

impl KernelGuard {
    /// Drops the lock, first telling the CPUs that have a new thread to
    /// run (the scheduler's kicks).
    #[inline]
    pub fn unlock(&mut self) {
        if let Some(mut guard) = self.0.take() {
            let kicks = guard.ipc.take_kicks();
            drop(guard);
            ipi::kick_mask(kicks);
        }
    }

    pub fn relock(&mut self) {
        if self.0.is_none() {
            self.0 = Some(take());
        }
    }
}

impl Drop for KernelGuard {
    fn drop(&mut self) {
        self.unlock();
    }
}

impl Deref for KernelGuard {
    type Target = Kernel;
    fn deref(&self) -> &Kernel {
        self.0.as_deref().expect("the kernel lock is held")
    }
}

impl DerefMut for KernelGuard {
    fn deref_mut(&mut self) -> &mut Kernel {
        self.0.as_deref_mut().expect("the kernel lock is held")
    }
}

/// Power off when no thread can ever run again (boot option `exit=idle`).
static EXIT_WHEN_IDLE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

pub fn set_exit_when_idle(on: bool) {
    EXIT_WHEN_IDLE.store(on, core::sync::atomic::Ordering::Relaxed);
}

/// Handles a trap from user mode with `vector` (read from the trapping
/// thread's frame while it was still this CPU's); returns the context to
/// resume.
pub fn from_user(vector: u64) -> UserContext {
    let trapped = match ipi::back() {
        Some(Outside::User(t)) => Some(ThreadId(t)),
        _ => None,
    };
    let mut guard = lock();
    let k: &mut Kernel = &mut guard;
    // Another CPU may have suspended, moved or destroyed the thread while
    // its trap got here: then neither the thread nor its frame is this
    // CPU's any more (another may run it already). Its syscall or fault is
    // left in the frame, and the CPU that runs it next restarts it
    // (`restart_unhandled`). The interrupt of a trap is this CPU's own and
    // always handled.
    let mine = trapped.filter(|&t| k.ipc.current(percpu::index()) == Some(t));
    // Only the root task holds capabilities to its own task and threads
    // (§5.1), so only its own syscalls can end it.
    let root = mine.is_some_and(|t| k.threads[usize::from(t.0)].task == Some(roottask::ROOT_TASK));
    match (vector, mine) {
        (SYSCALL_VECTOR, Some(t)) => {
            crate::arch::nmi::test_point(crate::arch::nmi::TestPoint::Syscall);
            crate::trace::syscall(k, t);
            match crate::object::fastpath::syscall(k, t, percpu::index()) {
                Fast::Declined => {}
                fast => {
                    k.threads[usize::from(t.0)].context.vector = HANDLED;
                    return match fast {
                        // A user thread; a VP (answered) enters through `next_context`.
                        Fast::Switched(next) if k.vcpu_of(next).is_none() => enter_thread(guard, next),
                        _ => next_context(guard),
                    };
                }
            }
            syscall::handle(k, t)
        }
        (v, Some(t)) if v < 32 => user_fault(k, t),
        (SYSCALL_VECTOR, None) => {}
        (v, None) if v < 32 => {}
        (v, _) => interrupt(v),
    }
    if let Some(t) = mine {
        k.threads[usize::from(t.0)].context.vector = HANDLED;
    }
    if root && !roottask::alive(k) {
        roottask::died(roottask::Death::Ended);
    }
    k.catch_up_ticks();
    k.deliver_interrupts();
    next_context(guard)
}

/// An interrupt that trapped a user thread: this CPU's timer, an IPI, a
/// device line.
fn interrupt(vector: u64) {
    match vector {
        v if v == u64::from(TIMER_VECTOR) => apic::on_timer(),
        v if v == u64::from(IPI_VECTOR) => {
            apic::end_of_interrupt();
            ipi::serve();
        }
        v if v == u64::from(SPURIOUS_VECTOR) => {}
        v => {
            if let Some(gsi) = crate::arch::idt::device_gsi(v) {
                apic::on_device_interrupt(gsi);
            }
        }
    }
}

/// A frame's vector once the kernel has dealt with its trap.
const HANDLED: u64 = u64::MAX;

/// Before a thread runs: a trap its last CPU left unhandled (`from_user`)
/// is restarted, a SYSCALL by running it again, a fault by running the
/// faulting instruction again (which RIP still names).
fn restart_unhandled(frame: &mut TrapFrame) {
    if frame.vector == SYSCALL_VECTOR {
        frame.rip = frame.rip.wrapping_sub(SYSCALL_LENGTH);
    }
    frame.vector = HANDLED;
}

/// Bytes of the SYSCALL instruction (0F 05).
const SYSCALL_LENGTH: u64 = 2;

/// A user thread faulted: its fault handler gets a FAULT message; without
/// one the thread stops (and for the root task, the system: `roottask::died`).
fn user_fault(k: &mut Kernel, t: ThreadId) {
    let frame = &k.threads[usize::from(t.0)].context;
    let address = if frame.vector == 14 { cpu::cr2() } else { 0 };
    let fault =
        FaultMessage { vector: frame.vector, error_code: frame.error_code, rip: frame.rip, address, rsp: frame.rsp };
    let handler = k.threads[usize::from(t.0)].fault_handler;
    k.threads[usize::from(t.0)].fault = fault;
    if handler.is_none() {
        let task = k.threads[usize::from(t.0)].task;
        let (vector, error, rip, address) = (fault.vector, fault.error_code, fault.rip, fault.address);
        if task == Some(roottask::ROOT_TASK) {
            roottask::died(roottask::Death::Fault { thread: t, fault });
        }
        // Any other task can make its threads fault again and again.
        crate::task_println!(
            "kernel: thread {} of task {task:?} faulted with no handler: vector {vector} error {error:#x} rip {rip:#x} address {address:#x}",
            t.0
        );
    }
    let Kernel { ipc, threads, tasks, caps, vcpus, .. } = k;
    let _ = ipc.fault(t, handler, &mut Xfer { threads, tasks, caps, vcpus });
}

/// Picks the next thread for this CPU (idling, without the lock, until
/// there is one), prepares its context for the return path and drops the
/// lock.
pub fn next_context(mut k: KernelGuard) -> UserContext {
    let me = percpu::index();
    loop {
        if let Some(next) = k.ipc.schedule(me) {
            if k.vcpu_of(next).is_some() {
                crate::trace::run(next);
                // Guest mode: run until the VP exits to its handler or the
                // scheduler wants another thread, then choose again.
                crate::object::vm::run(&mut k, next);
                continue;
            }
            return enter_thread(k, next);
        }
        let everyone_idle = (0..crate::arch::smp::MAX_CPUS)
            .all(|c| k.ipc.current(c).is_none() && k.ipc.scheduler().highest_ready(c).is_none());
        let quiet = everyone_idle && !k.ipc.has_pending_events() && !k.interrupts_armed() && !k.vp_exit_timing();
        if quiet && EXIT_WHEN_IDLE.load(core::sync::atomic::Ordering::Relaxed) {
            println!("kernel: every thread is blocked and nothing can wake one (exit=idle)");
            crate::arch::nmi::log_summary();
            report_run_counters();
            crate::trace::report();
            platform::power_off(ExitStatus::Success);
        }
        k.arm_timer();
        k.unlock();
        ipi::serve();
        cpu::wait_for_interrupt();
        cpu::disable_interrupts();
        k.relock();
        k.catch_up_ticks();
        k.deliver_interrupts();
    }
}

/// Switches this CPU to user thread `next`, its current (not a VP): loads
/// its result, address space and speculation domain, arms the timer and
/// drops the lock. The end of every way back to user mode.
#[inline]
fn enter_thread(mut k: KernelGuard, next: ThreadId) -> UserContext {
    crate::trace::run(next);
    // It may still be in user mode on the CPU it last ran on (it
    // was moved, or suspended and resumed, meanwhile): that CPU
    // must have saved its context before this one loads it.
    ipi::wait_out(Outside::User(next.0));
    let index = usize::from(next.0);
    let kernel: &mut Kernel = &mut k;
    restart_unhandled(&mut kernel.threads[index].context);
    if let Some(result) = kernel.ipc.take_result(next) {
        let frame = &mut kernel.threads[index].context;
        frame.rax = result.error.0;
        frame.rsi = result.info.into_bits();
        frame.rdi = result.badge.0;
    }
    if let Some(t) = kernel.threads[index].task {
        crate::arch::speculation::enter(kerncore::speculation::Domain::Task(t));
    }
    if let Some(task) = kernel.threads[index].task.and_then(|t| kernel.tasks[t as usize].as_ref()) {
        task.space.activate();
    }
    let context = &mut kernel.threads[index].context as *mut TrapFrame;
    kernel.arm_timer();
    ipi::leaving(Outside::User(next.0), None);
    // The one `unsafe` outside the arch layer: only here is it known
    // that the context lives in the static kernel state.
    // SAFETY: the context lives in the static kernel state (`KERNEL`)
    // and stays put; interrupts are off until the return path has
    // used it; its task's address space was just activated. No
    // other CPU runs the thread (`wait_out` above, and `leaving`
    // makes the next one wait until this CPU is back).
    #[allow(unsafe_code)]
    unsafe {
        percpu::set_context(context as u64, core::mem::size_of::<TrapFrame>() as u64);
        UserContext::new(context)
    }
}

/// Where an AP goes once it is set up: it waits until the boot CPU starts
/// scheduling, then schedules threads like it.
pub fn run_ap(apic_id: u32) -> ! {
    while !SCHEDULING.load(core::sync::atomic::Ordering::Acquire) {
        core::hint::spin_loop();
    }
    crate::arch::entry::init();
    apic::start_ap_timer();
    ipi::register(apic_id);
    if lockup::tested_holding_the_lock() {
        let _held = lock();
        lockup::hang_if_tested();
    }
    lockup::hang_if_tested();
    let context = next_context(lock());
    crate::arch::entry::enter_user(context)
}

/// The boot CPU has started the root task: the APs may schedule.
static SCHEDULING: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// The boot CPU's first entry into user mode, with the root task started.
pub fn start_scheduling(k: KernelGuard) -> UserContext {
    ipi::register(apic::id());
    SCHEDULING.store(true, core::sync::atomic::Ordering::Release);
    next_context(k)
}

/// Prints how often each CPU entered user and guest mode and the most CPUs
/// seen outside ring 0 at once (boot option `exit=idle`, and the tests).
pub fn report_run_counters() {
    let counters = ipi::run_counters();
    for c in kerncore::smp::cpus_in(ipi::online()) {
        println!("kernel: cpu {c}: {} user entries, {} guest entries", counters.user[c], counters.guest[c]);
    }
    println!(
        "kernel: at most {} CPUs ran threads at once, {} of them guests",
        counters.most_outside, counters.most_in_guest
    );
    let (calls, replies, exits) = crate::object::fastpath::taken();
    println!("kernel: IPC fast path took {calls} calls, {replies} reply-receives and {exits} VM exits");
    let stray = crate::arch::idt::stray_debug_exceptions();
    if stray != 0 {
        println!("kernel: {stray} debug exceptions in ring 0 resumed (guest breakpoints the emulator left armed)");
    }
    if counters.smt {
        println!(
            "kernel: core scheduling: {} sibling violations in {} guest entries",
            counters.sibling_violations, counters.sibling_checked
        );
        // Where each VP ran, to check the SMT pairs the VIDs tell guests of.
        for p in 0..abi::limits::MAX_PARTITIONS {
            for v in 0..abi::limits::MAX_VPS_PER_PARTITION {
                let cpus = ipi::vp_ran_on(p, v);
                if cpus != 0 {
                    let list = kerncore::coresched::describe_cpus(cpus);
                    println!("kernel: partition {p} VP {v} entered guest mode on CPUs {list}");
                }
            }
        }
    }
}
