//! Hard-lockup detection: a CPU stuck in ring 0 with interrupts off (a
//! wait that never ends, a deadlock: a kernel bug) is reported and the
//! machine stops, rather than hanging with no word of where.
//!
//! Every CPU counts its own timer interrupts, its heartbeat. A CPU takes
//! them wherever it does not hold interrupts off: in user or guest mode
//! (as exits), idle, and in the kernel's short windows for pending
//! interrupts; ring 0 never keeps them off for long. Every
//! [`CHECK_EVERY`] interrupts of its own, each CPU looks at the other
//! online CPUs' heartbeats; one that has not moved for about
//! [`LOCKUP_SECONDS`] gets an NMI, whose handler prints where
//! it was (RIP, RSP, the frame-pointer backtrace) and parks it, and the
//! CPU that found it powers the machine off: ring 0 cannot keep its
//! guarantees (TLB shootdowns, VP kicks) with a CPU that no longer answers.
//! One CPU alone cannot watch itself.
//!
//! The same NMI stops the other CPUs, silently, when the machine must stop
//! as a whole for another reason: the root task died ([`stop_others`]).

use super::idt::TrapFrame;
use super::smp::MAX_CPUS;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use platform::console_write_emergency as out;

/// Every how many of its own timer interrupts a CPU looks at the others
/// (a power of two: the test on each interrupt is one mask).
const CHECK_EVERY: u64 = 128;
/// Looks at an unmoved heartbeat after which a CPU counts as stuck.
const STILL_CHECKS: u32 = 8;
/// The time that makes, about 10 s at the 100 Hz tick.
pub const LOCKUP_SECONDS: u64 = CHECK_EVERY * STILL_CHECKS as u64 / super::apic::TICK_HZ;

static HEARTBEATS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// CPUs found stuck: their NMI handler reports (bit per CPU index).
static STUCK: AtomicU32 = AtomicU32::new(0);

/// What one CPU last saw of the others.
#[derive(Clone, Copy)]
struct Watch {
    heartbeat: [u64; MAX_CPUS],
    still_for: [u32; MAX_CPUS],
}

static WATCHES: super::percpu::CpuLocal<Option<Watch>> = super::percpu::CpuLocal::empty();

/// This CPU's timer interrupt (interrupts off): its heartbeat, and every
/// [`CHECK_EVERY`] the look at the others.
#[inline(always)]
pub fn on_timer(cpu: usize) {
    // Only this CPU writes its heartbeat: no read-modify-write needed.
    let beats = HEARTBEATS[cpu].load(Relaxed) + 1;
    HEARTBEATS[cpu].store(beats, Relaxed);
    if beats & (CHECK_EVERY - 1) == 0 {
        look_at_the_others(cpu);
    }
}

#[inline(never)]
fn look_at_the_others(cpu: usize) {
    if platform::halting() {
        return;
    }
    let others = super::ipi::online() & !(1 << cpu);
    let stuck = WATCHES.with(|watch| {
        let watch = watch.get_or_insert(Watch { heartbeat: [0; MAX_CPUS], still_for: [0; MAX_CPUS] });
        let mut stuck = 0u32;
        for c in kerncore::smp::cpus_in(others) {
            let now = HEARTBEATS[c].load(Relaxed);
            if core::mem::replace(&mut watch.heartbeat[c], now) == now {
                watch.still_for[c] += 1;
            } else {
                watch.still_for[c] = 0;
            }
            if watch.still_for[c] >= STILL_CHECKS {
                stuck |= 1 << c;
            }
        }
        stuck
    });
    if stuck != 0 {
        report(cpu, stuck);
    }
}

/// Has the stuck CPUs report themselves, then stops the machine.
fn report(cpu: usize, stuck: u32) -> ! {
    out(format_args!(
        "\nkernel: lockup: cpu {cpu} sees CPUs {stuck:#x} (bit per CPU) take no timer interrupt for {LOCKUP_SECONDS} s: stuck in ring 0 with interrupts off\n"
    ));
    stop_with_reports(stuck)
}

/// Acquisitions of the kernel lock so far (written by each holder).
static LOCK_TAKEN: AtomicU64 = AtomicU64::new(0);

/// The kernel lock was just taken (by this CPU, which now holds it).
#[inline(always)]
pub fn lock_taken() {
    // Only the holder writes: no read-modify-write needed.
    LOCK_TAKEN.store(LOCK_TAKEN.load(Relaxed) + 1, Relaxed);
}

/// A CPU's wait for the kernel lock: a holder that keeps it for about
/// [`LOCKUP_SECONDS`] (the same acquisition all along) is stuck, whatever
/// it waits on with the lock held, and a waiter spins with interrupts off,
/// so the heartbeats alone would never see it.
pub struct LockWait {
    since: u64,
    taken: u64,
}

impl LockWait {
    pub fn new() -> LockWait {
        LockWait { since: super::cpu::timestamp(), taken: LOCK_TAKEN.load(Relaxed) }
    }

    /// Called while spinning: reports and stops the machine once the same
    /// holder has kept the lock too long.
    pub fn check(&mut self) {
        let taken = LOCK_TAKEN.load(Relaxed);
        let now = super::cpu::timestamp();
        if taken != self.taken {
            (self.since, self.taken) = (now, taken);
            return;
        }
        let limit = super::apic::tsc_hz().saturating_mul(LOCKUP_SECONDS);
        if limit != 0 && now.wrapping_sub(self.since) > limit && !platform::halting() {
            let cpu = super::percpu::index();
            out(format_args!(
                "\nkernel: lockup: cpu {cpu} waited {LOCKUP_SECONDS} s for the kernel lock, held all along by one CPU: the other CPUs report where they are\n"
            ));
            stop_with_reports(super::ipi::online() & !(1 << cpu))
        }
    }
}

/// NMIs the CPUs of `stuck`, whose handlers print where they were and park,
/// then powers the machine off.
fn stop_with_reports(stuck: u32) -> ! {
    STUCK.fetch_or(stuck, Relaxed);
    for c in kerncore::smp::cpus_in(stuck) {
        super::apic::send_nmi(super::ipi::apic_id_of(c));
    }
    // Time for their reports (the NMI handlers print and park).
    super::apic::delay_us(200_000);
    platform::power_off(platform::ExitStatus::Panic)
}

/// CPUs told to stop for good, without a report ([`stop_others`]).
static STOPPING: AtomicU32 = AtomicU32::new(0);
/// Those of them that have parked.
static PARKED: AtomicU32 = AtomicU32::new(0);

/// Stops every other online CPU for good, wherever it is (ring 3, a guest,
/// ring 0, idle): an NMI each, whose handler parks it with interrupts off,
/// the way [`stop_with_reports`] stops stuck CPUs, but silent. Waits up to
/// 100 ms for each to park. Returns the CPUs told and those that parked.
pub fn stop_others() -> (u32, u32) {
    let others = super::ipi::online() & !(1 << super::percpu::index());
    STOPPING.fetch_or(others, SeqCst);
    for c in kerncore::smp::cpus_in(others) {
        super::apic::send_nmi(super::ipi::apic_id_of(c));
    }
    for _ in 0..1000 {
        if PARKED.load(SeqCst) & others == others {
            break;
        }
        super::apic::delay_us(100);
    }
    (others, PARKED.load(SeqCst) & others)
}

/// An NMI (from the IDT, or ending a VMX guest's run): if [`stop_others`]
/// told this CPU to stop, parks it for good. Like [`on_nmi`], it reads no
/// GS base and knows the CPU by its APIC ID.
pub fn park_if_stopping() {
    let stopping = STOPPING.load(SeqCst);
    if stopping == 0 {
        return;
    }
    let apic = super::apic::id();
    if let Some(cpu) = kerncore::smp::cpus_in(stopping).find(|&c| super::ipi::apic_id_of(c) == apic) {
        PARKED.fetch_or(1 << cpu, SeqCst);
        park()
    }
}

/// Halts this CPU for good with interrupts off (NMIs stay blocked inside an
/// NMI handler); nothing waits for it any more.
fn park() -> ! {
    loop {
        // SAFETY: masking interrupts and halting has no memory effects.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// An NMI: if this CPU was found stuck, prints where it was and parks it
/// (NMIs stay blocked: the handler never returns); if it was told to stop,
/// parks it. Reads no GS base, which the stuck code may have left anywhere;
/// the CPU knows itself by its APIC ID.
pub fn on_nmi(frame: &TrapFrame) {
    park_if_stopping();
    let stuck = STUCK.load(Relaxed);
    if stuck == 0 {
        return;
    }
    let apic = super::apic::id();
    let Some(cpu) = kerncore::smp::cpus_in(stuck).find(|&c| super::ipi::apic_id_of(c) == apic) else { return };
    out(format_args!(
        "kernel: lockup: cpu {cpu} (APIC ID {apic}) was at rip={:#x} rsp={:#x} rflags={:#x} cs={:#x}\n  backtrace:",
        frame.rip, frame.rsp, frame.rflags, frame.cs
    ));
    for address in super::idt::backtrace(frame.rbp, frame.rsp) {
        out(format_args!(" {address:#x}"));
    }
    out(format_args!("\n"));
    park()
}

/// The boot options `test=lockup` and `test=lockup-held`: the first AP
/// hangs once it is online (0: no test, 1: spinning, 2: holding the lock).
static TEST: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

pub fn start_test(test: kerncore::cmdline::LockupTest) {
    use kerncore::cmdline::LockupTest;
    let (code, how) = match test {
        LockupTest::Spin => (1, ""),
        LockupTest::HoldingTheLock => (2, " holding the kernel lock"),
    };
    TEST.store(code, Relaxed);
    platform::println!("lockup test: cpu 1 will spin in ring 0 with interrupts off{how} once it is online");
}

/// Whether this CPU is the one the test hangs holding the kernel lock.
pub fn tested_holding_the_lock() -> bool {
    TEST.load(Relaxed) == 2 && super::percpu::index() == 1
}

/// Under the lockup tests, CPU 1 spins here for good with interrupts off,
/// as a kernel wait that never ends would (with the kernel lock, if the
/// caller took it for `test=lockup-held`).
pub fn hang_if_tested() {
    if TEST.load(Relaxed) != 0 && super::percpu::index() == 1 {
        super::cpu::disable_interrupts();
        loop {
            core::hint::spin_loop();
        }
    }
}
