//! The root scheduler's test (`tests=turns cpus=2`, `tests/root.rs`):
//! VP 0 alternates [`BUSY_MS`] of spinning and [`HALT_TICKS`] PIT ticks
//! halted for [`WINDOW`] of partition reference time while VP 1 spins,
//! and both report their `HV_X64_MSR_VP_RUNTIME` over the window.
//!
//! 1. VP 0 starts VP 1 (INIT-SIPI-SIPI through the smp test's trampoline,
//!    halting on the PIT between them) and waits, halted, for it to check
//!    in. VP 1 then spins, interrupts off, until [`GO`].
//! 2. VP 0 sets [`GO`] and reads its runtime and the reference time; VP 1
//!    reads its own runtime the first time it sees [`GO`].
//! 3. VP 0's cycles: spin [`BUSY_MS`] of TSC time with interrupts off,
//!    take the PIT tick that came meanwhile, then halt (`sti; hlt`) until
//!    [`HALT_TICKS`] more PIT ticks passed,
//!    counting the reference time it spent there, until [`WINDOW`] passed.
//! 4. VP 0 reads its runtime, sets [`STOP`] and waits, halted, for VP 1
//!    to read its own runtime, print it and halt for good.
//!
//! Under the VID's root policy (VP 1 runs only while VP 0 is halted) VP
//! 1's runtime is about VP 0's halted time; with the kernel's own
//! scheduling, each VP on its CPU, it is about the whole window.

use crate::ap;
use crate::hw;
use crate::println;
use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use guest_testkernel::smp::{self, lapic};
use guest_testkernel::tlfs::msr;
use guest_testkernel::{Detail, detail};

/// The window, in 100 ns of reference time: 2 s.
pub const WINDOW: u64 = 20_000_000;
/// VP 0 spins this long (TSC time) in each cycle.
pub const BUSY_MS: u64 = 50;
/// Then halts this many PIT ticks (10 ms each).
pub const HALT_TICKS: u64 = 5;

/// VP 1 checked in.
static ARRIVED: AtomicU32 = AtomicU32::new(0);
/// The window began: VP 1 reads its runtime.
static GO: AtomicBool = AtomicBool::new(false);
/// The window ended: VP 1 reads its runtime again and reports.
static STOP: AtomicBool = AtomicBool::new(false);
/// VP 1's runtime over the window (100 ns), once [`REPORTED`].
static AP_RUNTIME: AtomicU64 = AtomicU64::new(0);
static REPORTED: AtomicBool = AtomicBool::new(false);

fn read(name: &str, msr: u32) -> Result<u64, Detail> {
    hw::rdmsr_checked(msr).map_err(|_| detail!("rdmsr {name} ({msr:#x}) faulted"))
}

/// VP 1: checks in, spins until [`GO`], then until [`STOP`], and reports
/// its runtime in between.
extern "C" fn ap_entry(_slot: u32) -> ! {
    hw::load_idt();
    ARRIVED.fetch_add(1, Ordering::Release);
    while !GO.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    let before = read("VP_RUNTIME", msr::VP_RUNTIME);
    let mut spins = 0u64;
    while !STOP.load(Ordering::Acquire) {
        spins += 1;
        core::hint::spin_loop();
    }
    let after = read("VP_RUNTIME", msr::VP_RUNTIME);
    match (before, after) {
        (Ok(r0), Ok(r1)) => {
            let runtime = r1.wrapping_sub(r0);
            println!("testkernel: turns: VP 1 runtime {} us, {spins} spins", runtime / 10);
            AP_RUNTIME.store(runtime, Ordering::Relaxed);
        }
        (Err(why), _) | (_, Err(why)) => println!("testkernel: turns: VP 1: {why}"),
    }
    REPORTED.store(true, Ordering::Release);
    loop {
        // SAFETY: stops this CPU with interrupts off; nothing wakes it but INIT or NMI.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

pub fn run(magic: u32, info: u64, cmdline: &str) -> Result<(), Detail> {
    let cpus = smp::cpus_option(cmdline)?;
    if cpus < 2 {
        return Err(detail!("cpus={cpus}: the test needs VP 1"));
    }
    let bsp = lapic::id(ap::lapic_id_register());
    ap::enable_lapic();
    let vector = ap::prepare(magic, info, ap_entry)?;
    let id = if bsp == 0 { 1 } else { 0 };
    hw::start_timer();
    ap::start_one(id, vector)?;
    let arrived = || ARRIVED.load(Ordering::Acquire) > 0;
    let ticks = ap::wait(ap::AP_WAIT_TICKS, arrived);
    if !arrived() {
        hw::stop_timer();
        return Err(detail!("VP 1 (APIC ID {id}) did not check in within {ticks} ticks of 10 ms"));
    }

    let busy = hw::tsc_hz() / 1000 * BUSY_MS;
    GO.store(true, Ordering::Release);
    let (t0, r0) = (read("TIME_REF_COUNT", msr::TIME_REF_COUNT)?, read("VP_RUNTIME", msr::VP_RUNTIME)?);
    let (mut now, mut halted, mut cycles) = (t0, 0u64, 0u64);
    while now.wrapping_sub(t0) < WINDOW {
        let start = hw::rdtsc();
        while hw::rdtsc().wrapping_sub(start) < busy {
            core::hint::spin_loop();
        }
        // The tick that came while it spun with interrupts off is taken
        // first, so that the halt is HALT_TICKS whole ticks.
        // SAFETY: interrupts on for one instruction; the IDT handles every vector.
        unsafe { asm!("sti", "nop", "cli", options(nomem, nostack)) }
        let h0 = read("TIME_REF_COUNT", msr::TIME_REF_COUNT)?;
        let tick = hw::timer_ticks();
        while hw::timer_ticks() - tick < HALT_TICKS {
            hw::halt_once();
        }
        now = read("TIME_REF_COUNT", msr::TIME_REF_COUNT)?;
        halted += now.wrapping_sub(h0);
        cycles += 1;
    }
    let r1 = read("VP_RUNTIME", msr::VP_RUNTIME)?;
    STOP.store(true, Ordering::Release);
    let reported = || REPORTED.load(Ordering::Acquire);
    ap::wait(ap::AP_WAIT_TICKS, reported);
    hw::stop_timer();
    if !reported() {
        return Err(detail!("VP 1 did not report its runtime"));
    }
    let us = |units: u64| units / 10;
    println!(
        "testkernel: turns: window {} us, VP 0 runtime {} us, halted {} us, {cycles} cycles; VP 1 runtime {} us",
        us(now.wrapping_sub(t0)),
        us(r1.wrapping_sub(r0)),
        us(halted),
        us(AP_RUNTIME.load(Ordering::Relaxed))
    );
    Ok(())
}
