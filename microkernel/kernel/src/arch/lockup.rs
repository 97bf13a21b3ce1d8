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

use super::idt::TrapFrame;
use super::smp::MAX_CPUS;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
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
    STUCK.fetch_or(stuck, Relaxed);
    for c in kerncore::smp::cpus_in(stuck) {
        super::apic::send_nmi(super::ipi::apic_id_of(c));
    }
    // Time for their reports (the NMI handlers print and park).
    super::apic::delay_us(200_000);
    platform::power_off(platform::ExitStatus::Panic)
}

/// An NMI: if this CPU was found stuck, prints where it was and parks it
/// (NMIs stay blocked: the handler never returns). Reads no GS base, which
/// the stuck code may have left anywhere; the CPU knows itself by its APIC ID.
pub fn on_nmi(frame: &TrapFrame) {
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
    loop {
        // SAFETY: parks this CPU for good with interrupts off (NMIs stay
        // blocked inside this handler); nothing waits for it any more.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// The boot option `test=lockup`: the first AP hangs once it schedules.
static TEST: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

pub fn start_test() {
    TEST.store(true, Relaxed);
    platform::println!("lockup test: cpu 1 will spin in ring 0 with interrupts off once it schedules");
}

/// Under `test=lockup`, CPU 1 spins here for good with interrupts off,
/// as a kernel wait that never ends would.
pub fn hang_if_tested() {
    if TEST.load(Relaxed) && super::percpu::index() == 1 {
        super::cpu::disable_interrupts();
        loop {
            core::hint::spin_loop();
        }
    }
}
