//! The local APIC (xAPIC, memory-mapped) and its tickless timer.
//!
//! The 8259 PICs are masked; the local APIC timer and the TSC are
//! calibrated against the PIT. The tick ([`TICK_HZ`]) is then a count of
//! TSC periods ([`kerncore::timer::TickClock`]), and each CPU's timer is a
//! one-shot on [`idt::TIMER_VECTOR`], in TSC-deadline mode where
//! CPUID.1:ECX[24] has it (SDM Vol. 3A §11.5.4.1), else counting down at
//! the calibrated rate: armed for the next tick boundary at every
//! interrupt ([`on_timer`]), and brought forward to the earliest TSC
//! deadline of the CPU's threads before it leaves ring 0 ([`arm`]).

use super::idt::{SPURIOUS_VECTOR, TIMER_VECTOR};
use super::{memory, pit};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kerncore::timer::{CountsPerCycle, TickClock};
use volatile::VolatilePtr;
use x86::io::outb;
use x86::msr::{IA32_APIC_BASE, IA32_TSC_DEADLINE, rdmsr, wrmsr};
use x86defs::APIC_BASE_ENABLE;

pub const TICK_HZ: u64 = abi::TICK_HZ;
const CALIBRATION_US: u64 = 10_000;

/// Register offsets (SDM Vol. 3 Table 11-1).
mod reg {
    pub const ID: usize = 0x20;
    pub const VERSION: usize = 0x30;
    pub const EOI: usize = 0xb0;
    pub const SPURIOUS: usize = 0xf0;
    pub const ICR_LOW: usize = 0x300;
    pub const ICR_HIGH: usize = 0x310;
    pub const LVT_TIMER: usize = 0x320;
    pub const LVT_LINT0: usize = 0x350;
    pub const LVT_LINT1: usize = 0x360;
    pub const LVT_ERROR: usize = 0x370;
    pub const TIMER_INITIAL: usize = 0x380;
    pub const TIMER_CURRENT: usize = 0x390;
    pub const TIMER_DIVIDE: usize = 0x3e0;
}

const SPURIOUS_APIC_ENABLE: u32 = 1 << 8;
const LVT_MASKED: u32 = 1 << 16;
/// LVT timer mode (bits 18:17): 00 one-shot, 10 TSC-deadline.
const LVT_TIMER_ONE_SHOT: u32 = 0;
const LVT_TIMER_TSC_DEADLINE: u32 = 0b10 << 17;
const DIVIDE_BY_16: u32 = 0b0011;
/// ICR (SDM Vol. 3 §11.6.1): delivery mode NMI, level assert, and the
/// delivery-status bit (set while the IPI is being sent).
const ICR_DELIVERY_NMI: u32 = 0b100 << 8;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_SEND_PENDING: u32 = 1 << 12;
/// INIT (level triggered, asserted then deasserted) and STARTUP (SDM Vol. 3
/// §11.6.1, §8.4.4.1).
const ICR_DELIVERY_INIT: u32 = 0b101 << 8;
const ICR_DELIVERY_STARTUP: u32 = 0b110 << 8;
const ICR_TRIGGER_LEVEL: u32 = 1 << 15;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
/// The tick clock: the TSC at tick 0 and TSC cycles a tick (0 before
/// `init`: no tick yet).
static CLOCK_BASE: AtomicU64 = AtomicU64::new(0);
static TSC_PER_TICK: AtomicU64 = AtomicU64::new(0);
/// The boot CPU's calibrated timer counts (divide by 16) per TSC cycle, as
/// a [`CountsPerCycle`] factor: every CPU counts alike in one-shot mode.
static COUNTS_PER_CYCLE: AtomicU64 = AtomicU64::new(0);
/// Every CPU's timer runs in TSC-deadline mode (else one-shot).
static TSC_DEADLINE_MODE: AtomicBool = AtomicBool::new(false);
/// The TSC each CPU's timer is armed for (0: not armed, or it fired).
static ARMED: [AtomicU64; super::smp::MAX_CPUS] = [const { AtomicU64::new(0) }; super::smp::MAX_CPUS];
/// Each CPU's next tick boundary (a TSC) as last computed: still its next
/// one while its TSC is below it, so arming needs no division.
static NEXT_TICK: [AtomicU64; super::smp::MAX_CPUS] = [const { AtomicU64::new(0) }; super::smp::MAX_CPUS];
/// The TSC at which each CPU's next heartbeat is due (the tick boundary
/// after its last): it beats once a tick, however often deadlines wake it.
static BEAT_DUE: [AtomicU64; super::smp::MAX_CPUS] = [const { AtomicU64::new(0) }; super::smp::MAX_CPUS];
const ICR_DELIVERY_FIXED: u32 = 0;
/// The local APIC page's uncached mapping (every CPU sees its own there);
/// 0 before `init`.
static LAPIC: AtomicU64 = AtomicU64::new(0);

fn register(offset: usize) -> Option<VolatilePtr<'static, u32>> {
    let base = LAPIC.load(Ordering::Relaxed);
    if base == 0 {
        return None;
    }
    let ptr = NonNull::new((base as usize + offset) as *mut u32)?;
    // SAFETY: `base` is the uncached mapping of this CPU's local APIC page
    // made in `init`, and `offset` is one of the 16-byte aligned registers
    // listed in `reg`, inside that page.
    Some(unsafe { VolatilePtr::new(ptr) })
}

fn read(offset: usize) -> u32 {
    register(offset).map_or(0, VolatilePtr::read)
}

fn write(offset: usize, value: u32) {
    if let Some(r) = register(offset) {
        r.write(value);
    }
}

/// Masks both 8259 PICs after moving them off the exception vectors.
fn mask_legacy_pics() {
    // SAFETY: standard 8259 initialisation on their fixed ports; the PICs
    // are not used by Tessera, this only silences them.
    unsafe {
        for (command, data, offset, cascade) in [(0x20u16, 0x21u16, 0x20u8, 4u8), (0xa0, 0xa1, 0x28, 2)] {
            outb(command, 0x11);
            outb(data, offset);
            outb(data, cascade);
            outb(data, 0x01);
            outb(data, 0xff);
        }
    }
}

/// What the timer set-up found.
pub struct TimerInfo {
    pub apic_id: u32,
    pub version: u32,
    pub counts_per_tick: u32,
    pub bus_hz: u64,
    pub tsc_hz: u64,
    /// The timer runs in TSC-deadline mode (else one-shot).
    pub tsc_deadline: bool,
}

/// Maps and enables the local APIC and starts the tick. `one_shot`: use
/// the one-shot mode even where TSC-deadline mode exists (boot option
/// `timer=one-shot`, to test it).
pub fn init(lapic_phys: u64, one_shot: bool) -> Result<TimerInfo, &'static str> {
    mask_legacy_pics();
    // SAFETY: reading IA32_APIC_BASE has no side effects.
    let base_msr = unsafe { rdmsr(IA32_APIC_BASE) };
    if base_msr & APIC_BASE_ENABLE == 0 {
        return Err("the local APIC is disabled in IA32_APIC_BASE");
    }
    let virt = memory::map_mmio(lapic_phys, 0x1000).map_err(|_| "cannot map the local APIC")?;
    let _ = LAPIC.compare_exchange(0, virt, Ordering::Relaxed, Ordering::Relaxed);

    write(reg::SPURIOUS, SPURIOUS_APIC_ENABLE | u32::from(SPURIOUS_VECTOR));
    write(reg::TIMER_DIVIDE, DIVIDE_BY_16);
    write(reg::LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));

    // Count down from the maximum for a known PIT interval; time the TSC
    // over the same interval.
    let mut tsc_start = 0;
    pit::one_shot(CALIBRATION_US, || {
        write(reg::TIMER_INITIAL, u32::MAX);
        tsc_start = super::cpu::timestamp();
    });
    let tsc_elapsed = super::cpu::timestamp().wrapping_sub(tsc_start);
    let elapsed = u32::MAX - read(reg::TIMER_CURRENT);
    write(reg::TIMER_INITIAL, 0);
    if elapsed == 0 {
        return Err("the local APIC timer did not count");
    }
    let counts_per_second = u64::from(elapsed) * 1_000_000 / CALIBRATION_US;
    TSC_HZ.store(tsc_elapsed * (1_000_000 / CALIBRATION_US), Ordering::Relaxed);
    let counts_per_tick = u32::try_from(counts_per_second / TICK_HZ).unwrap_or(u32::MAX).max(1);
    COUNTS_PER_CYCLE.store(CountsPerCycle::new(counts_per_second, tsc_hz()).into_bits(), Ordering::Relaxed);
    let has_deadline = x86::cpuid::CpuId::new().get_feature_info().is_some_and(|f| f.has_tsc_deadline());
    TSC_DEADLINE_MODE.store(has_deadline && !one_shot, Ordering::Relaxed);
    let clock = TickClock::new(super::cpu::timestamp(), tsc_hz(), TICK_HZ);
    CLOCK_BASE.store(clock.base, Ordering::Relaxed);
    TSC_PER_TICK.store(clock.per_tick, Ordering::Release);
    start_timer();
    Ok(TimerInfo {
        apic_id: read(reg::ID) >> 24,
        version: read(reg::VERSION) & 0xff,
        counts_per_tick,
        bus_hz: counts_per_second * 16,
        tsc_hz: tsc_hz(),
        tsc_deadline: TSC_DEADLINE_MODE.load(Ordering::Relaxed),
    })
}

/// Sets this CPU's timer to the mode `init` chose and arms it for the
/// next tick.
fn start_timer() {
    write(reg::TIMER_DIVIDE, DIVIDE_BY_16);
    if TSC_DEADLINE_MODE.load(Ordering::Relaxed) {
        write(reg::LVT_TIMER, LVT_TIMER_TSC_DEADLINE | u32::from(TIMER_VECTOR));
        // The memory-mapped LVT write must be done before the WRMSR to
        // IA32_TSC_DEADLINE that arms it (SDM Vol. 3A §11.5.4.1).
        // SAFETY: MFENCE only orders memory accesses.
        unsafe { core::arch::asm!("mfence", options(nostack, preserves_flags)) };
    } else {
        write(reg::LVT_TIMER, LVT_TIMER_ONE_SHOT | u32::from(TIMER_VECTOR));
    }
    let cpu = super::percpu::index();
    ARMED[cpu].store(0, Ordering::Relaxed);
    NEXT_TICK[cpu].store(0, Ordering::Relaxed);
    arm(None);
}

/// The tick clock, once `init` calibrated it.
pub fn clock() -> Option<TickClock> {
    let per_tick = TSC_PER_TICK.load(Ordering::Acquire);
    (per_tick != 0).then(|| TickClock { base: CLOCK_BASE.load(Ordering::Relaxed), per_tick })
}

/// The TSC this CPU's timer is armed for (interrupts off): it fires then
/// or earlier (when it already fired: 0). Never later than the next tick
/// boundary.
#[inline]
pub fn armed() -> u64 {
    super::percpu::local(&ARMED).load(Ordering::Relaxed)
}

/// Arms this CPU's timer (interrupts off) for its next tick boundary, or
/// `deadline` (a TSC) if sooner; a deadline passed fires at once. Nothing
/// is written if the timer is armed for that time already.
pub fn arm(deadline: Option<u64>) {
    let per_tick = TSC_PER_TICK.load(Ordering::Acquire);
    if per_tick == 0 {
        return;
    }
    let cpu = super::percpu::index();
    let now = super::cpu::timestamp();
    let tick = next_tick(cpu, now, per_tick);
    arm_at(cpu, now, kerncore::timer::wake_at(now, tick, deadline));
}

/// CPU `cpu`'s (this one's) next tick boundary after TSC `now`, with
/// `per_tick` (non-zero) cycles a tick, from its cached one
/// ([`TickClock::next_boundary_from`]: a division only after a missed tick).
#[inline]
fn next_tick(cpu: usize, now: u64, per_tick: u64) -> u64 {
    let cached = NEXT_TICK[cpu].load(Ordering::Relaxed);
    let clock = TickClock { base: CLOCK_BASE.load(Ordering::Relaxed), per_tick };
    let next = clock.next_boundary_from(cached, now);
    NEXT_TICK[cpu].store(next, Ordering::Relaxed);
    next
}

/// Arms CPU `cpu`'s (this one's) timer for TSC `at`, at TSC `now`.
fn arm_at(cpu: usize, now: u64, at: u64) {
    if ARMED[cpu].load(Ordering::Relaxed) == at {
        return;
    }
    ARMED[cpu].store(at, Ordering::Relaxed);
    if TSC_DEADLINE_MODE.load(Ordering::Relaxed) {
        // SAFETY: IA32_TSC_DEADLINE exists (CPUID.1:ECX[24], checked in
        // `init`) and only arms this CPU's timer; `at` is never 0 (which
        // would disarm it): it is at least `now`, past the TSC at boot.
        unsafe { wrmsr(IA32_TSC_DEADLINE, at.max(1)) };
    } else {
        let factor = CountsPerCycle::from_bits(COUNTS_PER_CYCLE.load(Ordering::Relaxed));
        write(reg::TIMER_INITIAL, factor.counts(at.saturating_sub(now)));
    }
}

/// The TSC's frequency as measured against the PIT (0 before `init`).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Sends an NMI to this CPU by its own APIC ID (no shorthand: "self"
/// allows only fixed delivery), then waits, boundedly, until it left.
pub fn send_nmi_to_self() {
    send_nmi(read(reg::ID) >> 24);
}

/// Sends an NMI to APIC `dest`, then waits, boundedly, until it left.
pub fn send_nmi(dest: u32) {
    write(reg::ICR_HIGH, dest << 24);
    write(reg::ICR_LOW, ICR_DELIVERY_NMI | ICR_LEVEL_ASSERT);
    for _ in 0..1000 {
        if read(reg::ICR_LOW) & ICR_SEND_PENDING == 0 {
            break;
        }
        core::hint::spin_loop();
    }
}

/// This CPU's local APIC ID, read from the APIC itself.
pub fn id() -> u32 {
    read(reg::ID) >> 24
}

/// Enables an AP's local APIC (mapped by the boot CPU's `init`: every CPU
/// sees its own at the same address) as the boot CPU's is, but with every
/// local interrupt masked, the timer included: no interrupt is armed on an
/// AP. Returns its APIC ID, as the AP reads it.
pub fn init_ap() -> u32 {
    write(reg::SPURIOUS, SPURIOUS_APIC_ENABLE | u32::from(SPURIOUS_VECTOR));
    write(reg::TIMER_INITIAL, 0);
    write(reg::LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    for lvt in [reg::LVT_LINT0, reg::LVT_LINT1, reg::LVT_ERROR] {
        write(lvt, LVT_MASKED);
    }
    id()
}

/// Starts this AP's timer as the boot CPU's: armed for every tick
/// boundary and its threads' deadlines (the TSC counts the time).
pub fn start_ap_timer() {
    start_timer();
}

/// A fixed interrupt with `vector` to APIC `dest` (a reschedule, kick or
/// request: `ipi`).
pub fn send_fixed(dest: u32, vector: u8) {
    send_ipi(dest, ICR_DELIVERY_FIXED | ICR_LEVEL_ASSERT | u32::from(vector));
}

/// Acknowledges the interrupt in service (an IPI).
pub fn end_of_interrupt() {
    write(reg::EOI, 0);
}

/// Sends an IPI (`low` is the ICR's low word) to APIC `dest`; false if it
/// was still pending after a bounded wait.
fn send_ipi(dest: u32, low: u32) -> bool {
    write(reg::ICR_HIGH, dest << 24);
    write(reg::ICR_LOW, low);
    for _ in 0..1_000_000 {
        if read(reg::ICR_LOW) & ICR_SEND_PENDING == 0 {
            return true;
        }
        core::hint::spin_loop();
    }
    false
}

/// INIT to APIC `dest`: asserted, then deasserted (which only CPUs before
/// the Pentium 4 need, and the rest ignore). The CPU waits for STARTUP.
pub fn send_init(dest: u32) -> bool {
    send_ipi(dest, ICR_DELIVERY_INIT | ICR_TRIGGER_LEVEL | ICR_LEVEL_ASSERT)
        && send_ipi(dest, ICR_DELIVERY_INIT | ICR_TRIGGER_LEVEL)
}

/// STARTUP to APIC `dest`: it starts in real mode at `vector` << 12.
pub fn send_startup(dest: u32, vector: u8) -> bool {
    send_ipi(dest, ICR_DELIVERY_STARTUP | ICR_LEVEL_ASSERT | u32::from(vector))
}

/// Spins for `us` microseconds, measured with the calibrated TSC.
pub fn delay_us(us: u64) {
    let cycles = tsc_hz().saturating_mul(us) / 1_000_000;
    let start = super::cpu::timestamp();
    while super::cpu::timestamp().wrapping_sub(start) < cycles {
        core::hint::spin_loop();
    }
}

/// Timer interrupt (interrupts off): acknowledged, and armed again for
/// the next tick boundary (the way out of ring 0 brings it forward to a
/// deadline: [`arm`]); the CPU's heartbeat if a tick began since its last.
/// Expired deadlines and ticks are the kernel's, under its lock
/// (`catch_up_ticks`).
pub fn on_timer() {
    let cpu = super::percpu::index();
    write(reg::EOI, 0);
    ARMED[cpu].store(0, Ordering::Relaxed);
    let per_tick = TSC_PER_TICK.load(Ordering::Acquire);
    if per_tick == 0 {
        return;
    }
    let now = super::cpu::timestamp();
    let tick = next_tick(cpu, now, per_tick);
    if now >= BEAT_DUE[cpu].load(Ordering::Relaxed) {
        BEAT_DUE[cpu].store(tick, Ordering::Relaxed);
        super::lockup::on_timer(cpu);
    }
    arm_at(cpu, now, tick);
}

/// GSIs that fired and were not yet delivered to their tasks.
static PENDING_GSIS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// A device interrupt: mask the line until its task acknowledges it, note
/// it for delivery (the kernel lock may be held here), acknowledge the APIC.
pub fn on_device_interrupt(gsi: u32) {
    super::ioapic::set(gsi, true);
    PENDING_GSIS.fetch_or(1 << gsi, Ordering::AcqRel);
    write(reg::EOI, 0);
}

/// True if a GSI fired that `take_pending_interrupts` has not taken.
#[inline]
pub fn interrupts_pending() -> bool {
    PENDING_GSIS.load(Ordering::Relaxed) != 0
}

/// Takes the set of GSIs that fired since the last call.
#[inline]
pub fn take_pending_interrupts() -> u32 {
    // Read first: most entries find none, and a load leaves the line
    // shared between the CPUs.
    if PENDING_GSIS.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    PENDING_GSIS.swap(0, Ordering::AcqRel)
}

/// Ticks since the timer started: TSC periods (the same on every CPU).
pub fn ticks() -> u64 {
    clock().map_or(0, |c| c.ticks_at(super::cpu::timestamp()))
}
