//! The trace (boot option `trace=on`, `kerncore::trace`): ring 0's record
//! sites and the report at the end of the run. Off, each site costs one
//! load and a branch not taken; on, each takes the trace's own lock (CPUs
//! record from outside the kernel lock too, around guest entry).

use crate::arch::smp::MAX_CPUS;
use crate::arch::vm::{self as hw, CrAccess, ExitReason};
use crate::object::Kernel;
use crate::object::vm::Vcpu;
use core::sync::atomic::{AtomicBool, Ordering};
use kerncore::intercept::IoDirection;
use kerncore::sched::ThreadId;
use kerncore::trace::{ExitKind, Tracer};
use spin::Mutex;
use tlfs::HvRegisterName;

static ON: AtomicBool = AtomicBool::new(false);
static TRACE: Mutex<Tracer<MAX_CPUS>> = Mutex::new(Tracer::new());

pub fn set(on: bool) {
    ON.store(on, Ordering::Relaxed);
}

#[inline(always)]
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

fn cpu() -> usize {
    crate::arch::percpu::index()
}

/// The VP of slot `v`, thread `t`, exited at `at`.
#[cold]
pub fn vm_exit(at: u64, v: u32, t: ThreadId, vcpu: &mut Vcpu, exit: &hw::Exit) {
    let (kind, detail) = describe(vcpu, exit);
    let partition = vcpu.partition.unwrap_or(u32::MAX) as u8;
    TRACE.lock().exit(cpu(), at, v as usize, t.0, partition, vcpu.index as u8, kind, detail);
}

/// The exit goes to the VP's handler.
#[inline(always)]
pub fn vm_forward(v: u32, t: ThreadId) {
    if on() {
        TRACE.lock().forward(cpu(), crate::arch::cpu::timestamp(), v as usize, t.0);
    }
}

/// Thread `replier` answered the exit of the VP of slot `v`.
#[inline(always)]
pub fn vm_reply(v: u32, replier: ThreadId) {
    if on() {
        TRACE.lock().reply(cpu(), crate::arch::cpu::timestamp(), v as usize, replier.0);
    }
}

/// Ring 0 is done with the exit of the VP of slot `v`, which does not run
/// on now (another thread runs, or the exit was dropped).
#[inline(always)]
pub fn vm_leave(v: u32) {
    if on() {
        TRACE.lock().leave(crate::arch::cpu::timestamp(), v as usize);
    }
}

/// The VP of slot `v` (VP `vp` of `partition`), thread `t`, enters guest
/// mode at `at`.
#[inline(always)]
pub fn vm_entry(at: u64, v: u32, t: ThreadId, partition: Option<u32>, vp: u32) {
    if on() {
        let partition = partition.unwrap_or(u32::MAX) as u8;
        TRACE.lock().entry(cpu(), at, v as usize, t.0, partition, vp as u8);
    }
}

/// Thread `t` made the syscall in its frame (before the fast path or the
/// general one takes it): its number and its message's label.
#[inline(always)]
pub fn syscall(k: &Kernel, t: ThreadId) {
    if on() {
        let frame = &k.threads[usize::from(t.0)].context;
        let label = abi::MessageInfo::from_bits(frame.rsi).label();
        TRACE.lock().syscall(cpu(), crate::arch::cpu::timestamp(), t.0, frame.rax, label);
    }
}

/// This CPU runs thread `t` (a task's or a VP's) next.
#[inline(always)]
pub fn run(t: ThreadId) {
    if on() {
        TRACE.lock().run(cpu(), crate::arch::cpu::timestamp(), t.0);
    }
}

/// Prints the report (`kerncore::trace::Line`), once the run is over.
pub fn report() {
    if on() {
        let trace = TRACE.lock();
        for line in trace.report(crate::arch::apic::tsc_hz()) {
            platform::println!("{line}");
        }
    }
}

/// The trace's reason and detail of an exit: the port, MSR, hypercall
/// code, CPUID leaf, guest-physical page, vector or control register.
fn describe(vcpu: &mut Vcpu, exit: &hw::Exit) -> (ExitKind, u64) {
    let mut reg = |name| vcpu.get(name).map_or(0, |(low, _)| low);
    match exit.reason {
        ExitReason::HostInterrupt => (ExitKind::HostInterrupt, 0),
        ExitReason::InterruptWindow => (ExitKind::InterruptWindow, 0),
        ExitReason::Io(io) if io.direction == IoDirection::In => (ExitKind::IoIn, u64::from(io.port)),
        ExitReason::Io(io) => (ExitKind::IoOut, u64::from(io.port)),
        ExitReason::Cpuid => (ExitKind::Cpuid, reg(HvRegisterName::RAX) & 0xffff_ffff),
        ExitReason::Hlt => (ExitKind::Hlt, 0),
        ExitReason::Hypercall => (ExitKind::Hypercall, reg(HvRegisterName::RCX) & 0xffff),
        ExitReason::Msr { write } => {
            let kind = if write { ExitKind::MsrWrite } else { ExitKind::MsrRead };
            (kind, reg(HvRegisterName::RCX) & 0xffff_ffff)
        }
        ExitReason::GuestMemory { gpa, mapped, .. } => {
            let kind = if mapped { ExitKind::GpaMapped } else { ExitKind::GpaUnmapped };
            (kind, gpa & !0xfff)
        }
        ExitReason::Shutdown => (ExitKind::Shutdown, 0),
        ExitReason::Xsetbv => (ExitKind::Xsetbv, 0),
        ExitReason::CacheFlush => (ExitKind::CacheFlush, 0),
        ExitReason::Rdpmc => (ExitKind::Rdpmc, 0),
        ExitReason::NotOffered => (ExitKind::NotOffered, 0),
        ExitReason::DebugRegister => (ExitKind::DebugRegister, 0),
        ExitReason::Exception(event) => (ExitKind::Exception, u64::from(event.vector)),
        ExitReason::ControlRegister(access) => {
            let cr = match access {
                CrAccess::Mov { cr, .. } | CrAccess::Undecoded { cr } => cr,
                CrAccess::Clts | CrAccess::Lmsw(_) => 0,
            };
            (ExitKind::ControlRegister, u64::from(cr))
        }
        ExitReason::MachineCheck => (ExitKind::MachineCheck, 0),
        ExitReason::Other(code) => (ExitKind::Other, code),
    }
}
