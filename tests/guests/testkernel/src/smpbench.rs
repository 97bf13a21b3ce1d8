//! The smpbench test (`tests=smpbench cpus=<n>`, n >= 2): what crosses
//! CPUs, timed for `tessera bench` (`tests/manifests/smp-bench.toml`: 4
//! VPs, which the VID puts on CPUs of their own, and the Hyper-V
//! enlightenments for the flush hypercall).
//!
//! 1. Every AP starts (INIT-SIPI-SIPI through the smp test's trampoline)
//!    into [`ap_entry`], one after the other: it enables its local APIC,
//!    checks in and parks, halted with interrupts on. The APs run only
//!    when the BSP lets them ([`RUNNING`], and [`WAKE_VECTOR`] to end the
//!    HLT), and then spin in guest mode with interrupts on, counting their
//!    turns (PAUSE in the loop). Parked, they leave the BSP's waits on the
//!    PIT to an idle machine, which QEMU's `-icount` lets skip ahead.
//! 2. **IPI delivery**: the first AP runs. The BSP reads the TSC and
//!    writes the ICR: a fixed IPI on [`VECTOR`] to it. The VID takes the
//!    ICR write (an MMIO exit), posts the interrupt to the AP's VP, and the
//!    kernel kicks that VP's CPU out of guest mode to inject it. The AP's
//!    handler reads the TSC first thing; the latency is that minus the
//!    BSP's reading. The handler acknowledges (EOI, an exit of its own)
//!    before it counts the IPI.
//! 3. **TLB flush with VPs on 2 CPUs**: HvFlushVirtualAddressSpace (all
//!    processors, all address spaces) from the BSP while the first AP
//!    spins and the others stay halted. The VID asks the kernel to flush
//!    the partition (`PARTITION_FLUSH_TLB`), which returns once no CPU runs
//!    a VP of it in guest mode on the old translations: the kernel kicks
//!    the AP's CPU and waits for it.
//! 4. With `n` > 2, every AP runs: the flush again, with VPs in guest mode
//!    on all `n` CPUs.
//!
//! Before each round the BSP waits until every running AP turned its loop
//! since the last round (outside the timed part), so each round finds them
//! in guest mode: a CPU that waits for the kernel lock while the BSP's
//! exits keep taking it could otherwise stay out of guest mode for good.
//! Each figure is [`ROUNDS`] rounds after [`WARM_UP`].
//!
//! The clock: both ends of the IPI's latency are rdtsc, on two CPUs.
//! Under QEMU with `-icount` (how `tessera bench` runs) the TSC of every
//! CPU is one virtual clock, the instructions executed by all of them, so
//! the difference is meaningful; the kernel gives guests no TSC offset.
//! On hardware with synchronized TSCs it holds too, within their skew.
//!
//! The exitbench test ([`exits`], `tests/manifests/exit-bench*.toml`) times
//! exits forwarded to the VID from the BSP: CPUID, and a port read; with
//! `cpus=<n>` the APs start as here and stay parked.

use crate::ap;
use crate::hw;
use crate::hw::hv::{self, Page};
use crate::println;
use crate::tlfs_suite;
use core::arch::asm;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use guest_testkernel::bench::{self, PREFIX, Samples, line};
use guest_testkernel::smp::{self, Icr, lapic};
use guest_testkernel::tlfs::{Control, Outcome, call, flush, input, status};
use guest_testkernel::{Detail, Text, detail};

/// The vector of the timed IPI.
pub const VECTOR: u8 = 0x41;
/// The vector that wakes a parked AP (its handler only acknowledges it).
pub const WAKE_VECTOR: u8 = 0x42;
/// Rounds per figure, after [`WARM_UP`] untimed ones.
const ROUNDS: u32 = 200;
const WARM_UP: u32 = 10;
/// How long the BSP waits for an IPI or for the APs to run, in TSC ticks:
/// thousands of rounds (under `-icount`, instructions).
const PATIENCE: u64 = 1 << 28;
const SLOTS: usize = smp::MAX_CPUS as usize;

/// Set once the test runs: before, its vectors are none of its business.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// IPIs on [`VECTOR`] the APs took, and the TSC at which the last arrived.
static TAKEN: AtomicU64 = AtomicU64::new(0);
static TAKEN_AT: AtomicU64 = AtomicU64::new(0);
/// APs that checked in.
static ARRIVED: AtomicU32 = AtomicU32::new(0);
/// The APs in trampoline slots below this run; the others park.
static RUNNING: AtomicU32 = AtomicU32::new(0);
/// Each AP's APIC ID and turns of its loop, by trampoline slot (the order
/// they started in).
static APIC_IDS: [AtomicU8; SLOTS] = [const { AtomicU8::new(0) }; SLOTS];
static TURNS: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

/// The trap handler's share: the timed IPI and the wake-up. True if
/// `vector` was one.
pub fn interrupt(vector: u64) -> bool {
    if !ACTIVE.load(Ordering::Relaxed) {
        return false;
    }
    if vector == u64::from(VECTOR) {
        let at = hw::rdtsc();
        ap::lapic_write(lapic::EOI, 0);
        TAKEN_AT.store(at, Ordering::Relaxed);
        TAKEN.fetch_add(1, Ordering::Release);
        true
    } else if vector == u64::from(WAKE_VECTOR) {
        ap::lapic_write(lapic::EOI, 0);
        true
    } else {
        false
    }
}

/// An AP: its local APIC on, it checks in, then for good (the partition's
/// end stops it) turns its loop while [`RUNNING`] lets it and parks in HLT
/// while not, interrupts on throughout but for the look before the HLT.
extern "C" fn ap_entry(slot: u32) -> ! {
    hw::load_idt();
    ap::enable_lapic();
    let slot = slot as usize; // below SLOTS: the trampoline's bound
    APIC_IDS[slot].store(lapic::id(ap::lapic_id_register()), Ordering::Relaxed);
    ARRIVED.fetch_add(1, Ordering::Release);
    let runs = || slot < RUNNING.load(Ordering::Acquire) as usize;
    loop {
        if runs() {
            TURNS[slot].fetch_add(1, Ordering::Relaxed);
            core::hint::spin_loop();
            continue;
        }
        // SAFETY: masks interrupts for the look: a wake-up after it is
        // taken once STI's shadow, which covers the HLT, ends the HLT.
        unsafe { asm!("cli", options(nomem, nostack)) }
        if runs() {
            // SAFETY: interrupts back on; the IDT handles every vector.
            unsafe { asm!("sti", options(nomem, nostack)) }
        } else {
            // SAFETY: as above.
            unsafe { asm!("sti", "hlt", options(nomem, nostack)) }
        }
    }
}

/// The turns of every AP so far.
fn turns() -> [u64; SLOTS] {
    core::array::from_fn(|i| TURNS[i].load(Ordering::Relaxed))
}

/// Waits until each of the first `aps` APs turned its loop since `since`:
/// it is back in guest mode, running.
fn wait_until_all_ran(aps: usize, since: &[u64; SLOTS], round: u32) -> Result<(), Detail> {
    let start = hw::rdtsc();
    loop {
        let now = turns();
        let Some(i) = (0..aps).find(|&i| now[i] == since[i]) else { return Ok(()) };
        if hw::rdtsc().wrapping_sub(start) > PATIENCE {
            let id = APIC_IDS[i].load(Ordering::Relaxed);
            return Err(detail!("round {round}: the AP with APIC ID {id} does not run"));
        }
        core::hint::spin_loop();
    }
}

/// Starts the APs `ids` one after the other, each parked once it checked in.
fn start_parked(ids: impl Iterator<Item = u8>, vector: u8) -> Result<(), Detail> {
    hw::start_timer();
    let started = ids.enumerate().try_for_each(|(i, id)| {
        ap::start_one(id, vector)?;
        let arrived = || ARRIVED.load(Ordering::Acquire) > i as u32;
        let ticks = ap::wait(ap::AP_WAIT_TICKS, arrived);
        if arrived() { Ok(()) } else { Err(detail!("APIC ID {id} did not check in within {ticks} ticks of 10 ms")) }
    });
    hw::stop_timer();
    started
}

/// Lets the first `aps` APs run, and waits until they do.
fn run_aps(aps: usize) -> Result<(), Detail> {
    let since = turns();
    let before = RUNNING.swap(aps as u32, Ordering::AcqRel) as usize;
    for id in APIC_IDS.iter().take(aps).skip(before) {
        ap::send(Icr::fixed(id.load(Ordering::Relaxed), WAKE_VECTOR))?;
    }
    wait_until_all_ran(aps, &since, 0)
}

/// The fixed IPI to the first AP, timed from the BSP's ICR write to the
/// AP's handler.
fn ipi_latency() -> Result<Samples, Detail> {
    let to = APIC_IDS[0].load(Ordering::Relaxed);
    let icr = Icr::fixed(to, VECTOR);
    let mut samples = Samples::new();
    let mut since = turns();
    for round in 0..WARM_UP + ROUNDS {
        wait_until_all_ran(1, &since, round)?;
        let taken = TAKEN.load(Ordering::Acquire);
        ap::lapic_write(lapic::ICR_HIGH, icr.high);
        let sent = hw::rdtsc();
        ap::lapic_write(lapic::ICR_LOW, icr.low);
        while TAKEN.load(Ordering::Acquire) == taken {
            if hw::rdtsc().wrapping_sub(sent) > PATIENCE {
                return Err(detail!("IPI {round} to APIC ID {to} never arrived"));
            }
            core::hint::spin_loop();
        }
        if round >= WARM_UP {
            samples.add(TAKEN_AT.load(Ordering::Relaxed).wrapping_sub(sent));
        }
        since = turns();
    }
    Ok(samples)
}

/// HvFlushVirtualAddressSpace of every processor and address space, timed
/// from the BSP around the hypercall, each while the first `aps` APs spin.
fn flushes(aps: usize) -> Result<Samples, Detail> {
    let space = Control::new(call::FLUSH_VIRTUAL_ADDRESS_SPACE);
    let block = input::flush(0, flush::ALL_PROCESSORS | flush::ALL_VIRTUAL_ADDRESS_SPACES, 0);
    Page::Input.write(0, &block);
    let mut samples = Samples::new();
    let mut since = turns();
    for round in 0..WARM_UP + ROUNDS {
        wait_until_all_ran(aps, &since, round)?;
        let start = hw::rdtsc();
        let returned = hv::hypercall(space.0, Page::Input.addr(), 0);
        let spent = hw::rdtsc().wrapping_sub(start);
        since = turns();
        let outcome = returned.map(|r| Outcome::from_rax(r.rax)).map_err(|f| detail!("the flush raised {f}"))?;
        if outcome.status != status::SUCCESS {
            return Err(detail!("flush {round}: {outcome}"));
        }
        if round >= WARM_UP {
            samples.add(spent);
        }
    }
    Ok(samples)
}

/// Exits per `exitbench` figure, after [`WARM_UP`] untimed ones.
const EXITS: u32 = 1000;
/// The port the `exitbench` test reads: the master PIC's mask register,
/// which the VID models.
const READ_PORT: u16 = 0x21;

/// `exit` timed [`EXITS`] times, each alone between two reads of the TSC.
fn timed(exit: impl Fn()) -> Samples {
    let mut samples = Samples::new();
    for round in 0..WARM_UP + EXITS {
        let start = hw::rdtsc();
        exit();
        let spent = hw::rdtsc().wrapping_sub(start);
        if round >= WARM_UP {
            samples.add(spent);
        }
    }
    samples
}

/// The `exitbench` test: CPUID exits (and, in the default placement, port
/// reads) timed from the BSP; with `cpus=<n>` (n >= 2) the APs are started
/// and parked first, halted as an idle guest's are.
pub fn exits(magic: u32, info: u64, cmdline: &str) -> Result<(), Detail> {
    let cpus = if guest_testkernel::option(cmdline, "cpus").is_some() { smp::cpus_option(cmdline)? } else { 1 };
    let vid = guest_testkernel::option(cmdline, "vid");
    let (Some(cpuid), Some(read)) =
        (bench::exit_figure("CPUID", cpus, vid), bench::exit_figure("port read", cpus, vid))
    else {
        return Err(detail!("vid={}: expected cross-cpu or priority", vid.unwrap_or("")));
    };
    if cpus > 1 {
        let bsp = lapic::id(ap::lapic_id_register());
        ACTIVE.store(true, Ordering::Relaxed);
        ap::enable_lapic();
        let vector = ap::prepare(magic, info, ap_entry)?;
        start_parked((0..cpus).map(|id| id as u8).filter(|&id| id != bsp), vector)?;
    }
    let report = |what: &str, samples: &Samples| println!("{PREFIX}{}", line(what, samples));
    report(
        cpuid.as_str(),
        &timed(|| {
            let _ = hw::cpuid(0, 0);
        }),
    );
    if cpus == 1 && vid.is_none() {
        report(
            read.as_str(),
            &timed(|| {
                let _ = hw::inb(READ_PORT);
            }),
        );
    }
    Ok(())
}

pub fn run(magic: u32, info: u64, cmdline: &str) -> Result<(), Detail> {
    let cpus = smp::cpus_option(cmdline)?;
    if cpus < 2 {
        return Err(detail!("cpus={cpus}: nothing crosses CPUs with one"));
    }
    let bsp = lapic::id(ap::lapic_id_register());
    if u32::from(bsp) >= cpus {
        return Err(detail!("the BSP's APIC ID {bsp} is not below cpus={cpus}"));
    }
    ACTIVE.store(true, Ordering::Relaxed);
    ap::enable_lapic();
    tlfs_suite::hypercall_page()?;
    let vector = ap::prepare(magic, info, ap_entry)?;
    let aps = cpus as usize - 1;
    // Below MAX_CPUS: the casts keep the IDs.
    start_parked((0..cpus).map(|id| id as u8).filter(|&id| id != bsp), vector)?;
    let first = APIC_IDS[0].load(Ordering::Relaxed);
    println!("testkernel: smpbench: {aps} APs parked; {ROUNDS} rounds a figure after {WARM_UP}; APIC ID {first} first");

    run_aps(1)?;
    let ipi = ipi_latency()?;
    let two = flushes(1)?;
    let all = if aps > 1 {
        run_aps(aps)?;
        Some(flushes(aps)?)
    } else {
        None
    };

    let report = |what: &str, samples: &Samples| println!("{PREFIX}{}", line(what, samples));
    report("ipi to a VP in guest mode on another CPU (delivery latency)", &ipi);
    report("tlb flush hypercall with VPs on 2 CPUs", &two);
    if let Some(all) = all {
        let mut what = Text::<48>::new();
        let _ = write!(what, "tlb flush hypercall with VPs on {cpus} CPUs");
        report(what.as_str(), &all);
    }
    Ok(())
}
