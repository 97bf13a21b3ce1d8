//! Traps from ring 3 — syscalls, interrupts, faults — and the choice of
//! what runs next. Ring 0 is not preemptible: interrupts stay off from the
//! trap until the return to user mode, except while idling.

use crate::arch::entry::{SYSCALL_VECTOR, UserContext};
use crate::arch::idt::{SPURIOUS_VECTOR, TIMER_VECTOR, TrapFrame};
use crate::arch::{apic, cpu, percpu};
use crate::object::transfer::Xfer;
use crate::object::{Kernel, syscall};
use abi::FaultMessage;
use kerncore::sched::ThreadId;
use platform::{ExitStatus, println};
use spin::Mutex;

/// All kernel state. The lock is only ever taken with interrupts off, on
/// the single CPU running the kernel, so it never spins.
pub static KERNEL: Mutex<Kernel> = Mutex::new(Kernel::new());

/// Power off when no thread can ever run again (boot option `exit=idle`).
static EXIT_WHEN_IDLE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

pub fn set_exit_when_idle(on: bool) {
    EXIT_WHEN_IDLE.store(on, core::sync::atomic::Ordering::Relaxed);
}

/// Handles a trap from user mode; returns the context to resume. The stubs
/// saved the user state into the current thread's context, which the
/// kernel reads through `KERNEL` (the pointer is not dereferenced here).
pub fn from_user(_saved: *mut TrapFrame) -> UserContext {
    let mut k = KERNEL.lock();
    if let Some(t) = k.ipc.current() {
        match k.threads[usize::from(t.0)].context.vector {
            SYSCALL_VECTOR => {
                crate::arch::nmi::test_point(crate::arch::nmi::TestPoint::Syscall);
                syscall::handle(&mut k, t)
            }
            v if v == u64::from(TIMER_VECTOR) => apic::on_timer(),
            v if v == u64::from(SPURIOUS_VECTOR) => {}
            v if v < 32 => user_fault(&mut k, t),
            v => {
                if let Some(gsi) = crate::arch::idt::device_gsi(v) {
                    apic::on_device_interrupt(gsi);
                }
            }
        }
    }
    k.catch_up_ticks();
    k.deliver_interrupts();
    next_context(&mut k)
}

/// A user thread faulted: its fault handler gets a FAULT message; without
/// one the thread stops (and for the root task, the system).
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
        if task == Some(0) {
            println!(
                "kernel: thread {} of task {task:?} faulted with no handler: vector {vector} error {error:#x} rip {rip:#x} address {address:#x}",
                t.0
            );
            println!("kernel: the root task is gone; nothing can restart the system");
            platform::power_off(ExitStatus::Panic);
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

/// Picks the next thread (idling until there is one) and prepares its
/// context for the return path.
pub fn next_context(k: &mut Kernel) -> UserContext {
    loop {
        if let Some(next) = k.ipc.schedule() {
            if k.vcpu_of(next).is_some() {
                // Guest mode: run until the VP exits to its handler or the
                // scheduler wants another thread, then choose again.
                crate::object::vm::run(k, next);
                continue;
            }
            let index = usize::from(next.0);
            if let Some(result) = k.ipc.take_result(next) {
                let frame = &mut k.threads[index].context;
                frame.rax = result.error.0;
                frame.rsi = result.info.into_bits();
                frame.rdi = result.badge.0;
            }
            if let Some(t) = k.threads[index].task {
                crate::arch::speculation::enter(kerncore::speculation::Domain::Task(t));
            }
            if let Some(task) = k.threads[index].task.and_then(|t| k.tasks[t as usize].as_ref()) {
                task.space.activate();
            }
            let context = &mut k.threads[index].context as *mut TrapFrame;
            // The one `unsafe` outside the arch layer: only here is it known
            // that the context lives in the static kernel state.
            // SAFETY: the context lives in the static kernel state (`KERNEL`)
            // and stays put; interrupts are off until the return path has
            // used it; its task's address space was just activated.
            #[allow(unsafe_code)]
            return unsafe {
                percpu::set_context(context as u64, core::mem::size_of::<TrapFrame>() as u64);
                UserContext::new(context)
            };
        }
        let quiet = !k.ipc.has_pending_events() && !k.interrupts_armed() && !k.vp_exit_timing();
        if quiet && EXIT_WHEN_IDLE.load(core::sync::atomic::Ordering::Relaxed) {
            println!("kernel: every thread is blocked and nothing can wake one (exit=idle)");
            crate::arch::nmi::log_summary();
            platform::power_off(ExitStatus::Success);
        }
        cpu::wait_for_interrupt();
        cpu::disable_interrupts();
        k.catch_up_ticks();
        k.deliver_interrupts();
    }
}
