//! The SynIC (TLFS 11.8, 11.9) and synthetic timers (TLFS 12.5), for a
//! partition offered AccessSynicRegs and AccessSyntheticTimerRegs. Without
//! them the MSRs must raise #GP, and that is all that is checked.

use super::{Check, Checks, expect_eq, expect_gp, fail_unless, ok, rdmsr, uncovers, with_interface, wrmsr};
use crate::hw::hv::Page;
use crate::hw::{self};
use core::sync::atomic::{AtomicU64, Ordering};
use guest_testkernel::tlfs::cpuid::{self as leaf, privilege};
use guest_testkernel::tlfs::msr;
use guest_testkernel::{Detail, detail};

/// The auto-EOI SINT's vector, and the direct-mode timer's.
pub const SINT_VECTOR: u8 = 0xd0;
pub const DIRECT_VECTOR: u8 = 0xd1;
/// The polled SINT and the auto-EOI SINT.
const POLLED: usize = 2;
const AUTO_EOI: usize = 3;

const TIMER_EXPIRED: u32 = 0x8000_0010;
const MESSAGE_PENDING: u8 = 1;
/// xAPIC ISR, at its reset base.
const LAPIC_ISR: u64 = 0xfee0_0100;
const LAPIC_EOI: u64 = 0xfee0_00b0;

static SINT_INTERRUPTS: AtomicU64 = AtomicU64::new(0);
/// Interrupts on [`SINT_VECTOR`] that found it in service (auto-EOI failed).
static SINT_IN_SERVICE: AtomicU64 = AtomicU64::new(0);
static DIRECT_INTERRUPTS: AtomicU64 = AtomicU64::new(0);

fn in_service(vector: u8) -> bool {
    let word = hw::read32(LAPIC_ISR + u64::from(vector / 32) * 0x10);
    word & (1 << (vector % 32)) != 0
}

/// The trap handler's hook: true if `vector` was one of these tests'.
pub fn interrupt(vector: u64) -> bool {
    if vector == u64::from(SINT_VECTOR) {
        // Auto-EOI (TLFS 11.8.5): not in service, and no EOI is written.
        if in_service(SINT_VECTOR) {
            SINT_IN_SERVICE.fetch_add(1, Ordering::Relaxed);
        }
        SINT_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
        return true;
    }
    if vector == u64::from(DIRECT_VECTOR) {
        DIRECT_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
        hw::write32(LAPIC_EOI, 0);
        return true;
    }
    false
}

fn sint(n: usize) -> u32 {
    msr::SINT0 + n as u32
}

fn config(n: usize) -> u32 {
    msr::STIMER0_CONFIG + 2 * n as u32
}

fn count(n: usize) -> u32 {
    msr::STIMER0_CONFIG + 2 * n as u32 + 1
}

fn now() -> u64 {
    rdmsr("TIME_REF_COUNT", msr::TIME_REF_COUNT).unwrap_or(0)
}

/// STIMERx_CONFIG bits (TLFS 12.5.1).
const ENABLE: u64 = 1;
const PERIODIC: u64 = 1 << 1;
const LAZY: u64 = 1 << 2;
const AUTO_ENABLE: u64 = 1 << 3;
const DIRECT: u64 = 1 << 12;
const fn sintx(n: usize) -> u64 {
    (n as u64) << 16
}
const fn apic_vector(v: u8) -> u64 {
    (v as u64) << 4
}

/// A message slot of the SIM page, as read.
#[derive(Clone, Copy, Debug)]
struct Slot {
    message_type: u32,
    payload_size: u8,
    flags: u8,
    timer_index: u32,
    expiration: u64,
    delivery: u64,
}

fn slot(n: usize) -> Slot {
    let page = Page::Simp;
    let at = n * 256;
    let head = page.read_u64(at);
    Slot {
        message_type: head as u32,
        payload_size: (head >> 32) as u8,
        flags: (head >> 40) as u8,
        timer_index: page.read_u32(at + 16),
        expiration: page.read_u64(at + 24),
        delivery: page.read_u64(at + 32),
    }
}

/// The guest empties the slot (type := HvMessageTypeNone, TLFS 11.4.1).
fn clear_slot(n: usize) {
    Page::Simp.write(n * 256, &[0; 4]);
}

/// Waits (interrupts off) until SINT `n`'s slot holds a message, at most
/// about `ms` ms of reference time.
fn wait_slot(n: usize, ms: u64) -> Option<Slot> {
    let until = now() + ms * 10_000;
    loop {
        let s = slot(n);
        if s.message_type != 0 {
            return Some(s);
        }
        if now() > until {
            return None;
        }
        for _ in 0..1000 {
            core::hint::spin_loop();
        }
    }
}

/// The fields of a timer-expired message from timer `index` (TLFS 11.10.4,
/// 13.3.1), expiring no earlier than `not_before`.
fn timer_message(s: Option<Slot>, index: u32, not_before: u64) -> Check {
    let Some(s) = s else { return Err(detail!("no message arrived")) };
    let now = now();
    fail_unless(s.message_type == TIMER_EXPIRED, detail!("type {:#x}", s.message_type))?;
    fail_unless(s.payload_size == 24, detail!("payload size {}", s.payload_size))?;
    fail_unless(s.timer_index == index, detail!("timer index {}", s.timer_index))?;
    fail_unless(s.expiration >= not_before, detail!("expired at {}, due {not_before}", s.expiration))?;
    fail_unless(
        s.delivery >= s.expiration && s.delivery <= now,
        detail!("expiration {}, delivery {}, now {now}", s.expiration, s.delivery),
    )?;
    Ok(detail!("expiration {} delivery {} (+{})", s.expiration, s.delivery, s.delivery - s.expiration))
}

/// The SynIC and timer privileges, or the #GP checks when they are absent.
fn offered(c: &mut Checks, bit: u32, name: &str, number: u32) -> bool {
    let f = hw::cpuid(leaf::FEATURES, 0);
    if f.eax & bit != 0 {
        return true;
    }
    c.info(name, format_args!("not offered (CPUID 0x40000003 EAX {:#x})", f.eax));
    c.require("rdmsr without the privilege raises #GP", expect_gp(hw::rdmsr_checked(number).map(|_| ()), "rdmsr"));
    false
}

fn enable_pages() -> Result<(), Detail> {
    wrmsr("SIMP", msr::SIMP, Page::Simp.addr() | msr::PAGE_ENABLE)?;
    wrmsr("SIEFP", msr::SIEFP, Page::Siefp.addr() | msr::PAGE_ENABLE)?;
    wrmsr("SCONTROL", msr::SCONTROL, 1)
}

pub fn synic() -> super::Outcome {
    with_interface("SynIC", |c| {
        if !offered(c, privilege::ACCESS_SYNIC_REGS, "AccessSynicRegs", msr::SCONTROL) {
            return;
        }
        registers(c);
        if !c.require("SIMP, SIEFP and SCONTROL enabled", enable_pages().map(|()| Detail::new())) {
            return;
        }
        busy_slot(c);
        auto_eoi(c);
    })
}

fn registers(c: &mut Checks) {
    c.require("SVERSION is 1 (11.8.2)", rdmsr("SVERSION", msr::SVERSION).and_then(|v| expect_eq("SVERSION", v, 1)));
    c.require("wrmsr SVERSION raises #GP (11.8.2)", expect_gp(hw::wrmsr_checked(msr::SVERSION, 1), "wrmsr"));
    c.require("EOM reads 0 (11.8.6)", rdmsr("EOM", msr::EOM).and_then(|v| expect_eq("EOM", v, 0)));
    let masked = (0..16).try_for_each(|n| {
        let v = rdmsr("SINTn", sint(n))?;
        fail_unless(v & (1 << 16) != 0, detail!("SINT{n} reads {v:#x}: not masked")).map(drop)
    });
    c.require("SINT0-15 masked at start (11.8.5)", masked.map(|()| Detail::new()));
    let sint5 = sint(5);
    c.require("SINT vector 15 unmasked raises #GP (11.8.5)", expect_gp(hw::wrmsr_checked(sint5, 0x0f), "wrmsr"));
    let kept = wrmsr("SINT5", sint5, 0x7_00d5)
        .and_then(|()| rdmsr("SINT5", sint5))
        .and_then(|v| expect_eq("SINT5", v, 0x7_00d5))
        .and_then(|_| wrmsr("SINT5", sint5, 0x1_0000));
    c.require("SINT5 vector, masked, auto-EOI, polling read back", kept.map(|()| Detail::new()));
    for (name, number) in [("SIMP", msr::SIMP), ("SIEFP", msr::SIEFP)] {
        let page = if number == msr::SIMP { Page::Simp } else { Page::Siefp };
        let value = page.addr() | msr::PAGE_ENABLE;
        let back = wrmsr(name, number, value).and_then(|()| rdmsr(name, number));
        c.require(
            if number == msr::SIMP { "SIMP enable and read back" } else { "SIEFP enable and read back" },
            back.and_then(|v| expect_eq(name, v & (msr::PAGE_GPA_MASK | 1), value)),
        );
    }
    c.require("SIMP over RAM covers it; disabled, the RAM is back (11.9, 5.2.1)", uncovers("SIMP", msr::SIMP));
    c.require("SIEFP over RAM covers it; disabled, the RAM is back (11.9, 5.2.1)", uncovers("SIEFP", msr::SIEFP));
    let scontrol = wrmsr("SCONTROL", msr::SCONTROL, 1).and_then(|()| rdmsr("SCONTROL", msr::SCONTROL));
    c.require("SCONTROL enable and read back", scontrol.and_then(|v| expect_eq("SCONTROL", v & 1, 1)));
}

/// Two one-shot timers into one polled SINT: the second finds the slot
/// busy, sets MessagePending, and is delivered after the slot is emptied
/// and EOM written (11.8.6, 11.10.3).
fn busy_slot(c: &mut Checks) {
    let polled = wrmsr("SINT2", sint(POLLED), 0x4_0000 | u64::from(SINT_VECTOR));
    if !c.require("SINT2 polled (no interrupt)", polled.map(|()| Detail::new())) {
        return;
    }
    clear_slot(POLLED);
    let t = now();
    let armed = wrmsr("STIMER2_COUNT", count(2), t + 2_000)
        .and_then(|()| wrmsr("STIMER3_COUNT", count(3), t + 4_000))
        .and_then(|()| wrmsr("STIMER2_CONFIG", config(2), ENABLE | sintx(POLLED)))
        .and_then(|()| wrmsr("STIMER3_CONFIG", config(3), ENABLE | sintx(POLLED)));
    if !c.require("two one-shot timers armed on SINT2", armed.map(|()| Detail::new())) {
        return;
    }
    c.require("first message in the polled slot", timer_message(wait_slot(POLLED, 1000), 2, t + 2_000));
    // The second expires while the first is in the slot.
    let until = now() + 1000 * 10_000;
    while slot(POLLED).flags & MESSAGE_PENDING == 0 && now() < until {
        core::hint::spin_loop();
    }
    let s = slot(POLLED);
    c.require(
        "busy slot: MessagePending set, the first message kept (11.10.3)",
        fail_unless(
            s.flags & MESSAGE_PENDING != 0 && s.timer_index == 2,
            detail!("flags {:#x}, timer {}", s.flags, s.timer_index),
        ),
    );
    clear_slot(POLLED);
    let eom = wrmsr("EOM", msr::EOM, 0);
    c.require("EOM after emptying the slot", eom.map(|()| Detail::new()));
    c.require("second message redelivered after EOM", timer_message(wait_slot(POLLED, 1000), 3, t + 4_000));
    clear_slot(POLLED);
}

/// A periodic timer into an auto-EOI SINT: interrupts arrive without the
/// vector in service and without an EOI (11.8.5).
fn auto_eoi(c: &mut Checks) {
    hw::lapic_enable();
    let value = (1 << 17) | u64::from(SINT_VECTOR);
    if !c.require("SINT3 auto-EOI", wrmsr("SINT3", sint(AUTO_EOI), value).map(|()| Detail::new())) {
        return;
    }
    clear_slot(AUTO_EOI);
    SINT_INTERRUPTS.store(0, Ordering::Relaxed);
    SINT_IN_SERVICE.store(0, Ordering::Relaxed);
    let period = 10_000; // 1 ms
    let start = now();
    let armed = wrmsr("STIMER1_COUNT", count(1), period)
        .and_then(|()| wrmsr("STIMER1_CONFIG", config(1), ENABLE | PERIODIC | sintx(AUTO_EOI)));
    if !c.require("periodic STIMER1 on SINT3", armed.map(|()| Detail::new())) {
        return;
    }
    let tsc_hz = rdmsr("TSC_FREQUENCY", msr::TSC_FREQUENCY).unwrap_or(0).max(1_000_000);
    let mut messages = 0;
    let mut last = 0;
    let mut bad: Option<Detail> = None;
    for _ in 0..3 {
        let seen = SINT_INTERRUPTS.load(Ordering::Relaxed);
        hw::interrupt_window(tsc_hz, || SINT_INTERRUPTS.load(Ordering::Relaxed) > seen);
        let s = slot(AUTO_EOI);
        if s.message_type == 0 {
            continue;
        }
        if let Err(why) = timer_message(Some(s), 1, start + period) {
            bad.get_or_insert(why);
        }
        if last != 0 && s.expiration < last + period {
            bad.get_or_insert(detail!("expiration {} less than a period after {last}", s.expiration));
        }
        last = s.expiration;
        messages += 1;
        clear_slot(AUTO_EOI);
        let _ = wrmsr("EOM", msr::EOM, 0);
    }
    let _ = wrmsr("STIMER1_CONFIG", config(1), 0);
    let _ = wrmsr("SINT3", sint(AUTO_EOI), 1 << 16);
    let interrupts = SINT_INTERRUPTS.load(Ordering::Relaxed);
    c.require(
        "periodic timer: 3 messages, expirations a period or more apart",
        match bad {
            Some(why) => Err(why),
            None => fail_unless(messages == 3, detail!("{messages} messages, {interrupts} interrupts"))
                .map(|_| detail!("{interrupts} interrupts")),
        },
    );
    let in_service = SINT_IN_SERVICE.load(Ordering::Relaxed);
    c.require(
        "auto-EOI: the vector never in service, no EOI written (11.8.5)",
        fail_unless(interrupts >= 3 && in_service == 0, detail!("{interrupts} interrupts, {in_service} in service")),
    );
}

pub fn stimers() -> super::Outcome {
    with_interface("synthetic timers", |c| {
        let timers = privilege::ACCESS_SYNTHETIC_TIMER_REGS;
        if !offered(c, timers, "AccessSyntheticTimerRegs", msr::STIMER0_CONFIG) {
            return;
        }
        let direct = hw::cpuid(leaf::FEATURES, 0).edx & (1 << 19) != 0;
        c.require("CPUID 0x40000003 EDX bit 19: direct mode", fail_unless(direct, detail!("clear")));
        timer_registers(c);
        if !c.require("SIMP, SIEFP and SCONTROL enabled", enable_pages().map(|()| Detail::new())) {
            return;
        }
        let polled = wrmsr("SINT2", sint(POLLED), 0x4_0000 | u64::from(SINT_VECTOR));
        c.require("SINT2 polled", polled.map(|()| Detail::new()));
        for (what, extra) in [("one-shot timer message", 0), ("lazy one-shot timer message", LAZY)] {
            clear_slot(POLLED);
            let due = now() + 5_000;
            let armed = wrmsr("STIMER0_COUNT", count(0), due)
                .and_then(|()| wrmsr("STIMER0_CONFIG", config(0), ENABLE | extra | sintx(POLLED)));
            let message = armed.and_then(|()| timer_message(wait_slot(POLLED, 1000), 0, due));
            c.require(what, message);
            let off = rdmsr("STIMER0_CONFIG", config(0)).and_then(|v| expect_eq("Enable", v & ENABLE, 0));
            c.require("a one-shot disables itself after expiring (12.5.1)", off);
            clear_slot(POLLED);
        }
        direct_mode(c);
    })
}

fn timer_registers(c: &mut Checks) {
    let c0 = config(0);
    c.require("STIMER0_CONFIG reserved bit 13 raises #GP", expect_gp(hw::wrmsr_checked(c0, 1 << 13), "wrmsr"));
    c.require("STIMER0_CONFIG reserved bit 20 raises #GP", expect_gp(hw::wrmsr_checked(c0, 1 << 20), "wrmsr"));
    let far = now() + 1_000_000_000;
    let sint0 = wrmsr("STIMER0_COUNT", count(0), far)
        .and_then(|()| wrmsr("STIMER0_CONFIG", c0, ENABLE))
        .and_then(|()| rdmsr("STIMER0_CONFIG", c0))
        .and_then(|v| expect_eq("Enable", v & ENABLE, 0));
    c.require("enabling with SINTx 0 leaves the timer disabled (12.5.1)", sint0);
    let auto = wrmsr("STIMER1_CONFIG", config(1), AUTO_ENABLE | sintx(POLLED))
        .and_then(|()| wrmsr("STIMER1_COUNT", count(1), far))
        .and_then(|()| rdmsr("STIMER1_CONFIG", config(1)))
        .and_then(|v| expect_eq("Enable", v & ENABLE, 1));
    c.require("AutoEnable: a non-zero COUNT sets Enable (12.5.1)", auto);
    let stop = wrmsr("STIMER1_COUNT", count(1), 0)
        .and_then(|()| rdmsr("STIMER1_CONFIG", config(1)))
        .and_then(|v| expect_eq("Enable", v & ENABLE, 0));
    c.require("COUNT 0 disables the timer (12.5.2)", stop);
    let back = rdmsr("STIMER1_COUNT", count(1)).and_then(|v| expect_eq("COUNT", v, 0));
    c.require("STIMER1_COUNT reads back", back);
    let _ = wrmsr("STIMER1_CONFIG", config(1), 0);
    let _ = ok();
}

/// A direct-mode periodic timer asserts its APIC vector (12.2).
fn direct_mode(c: &mut Checks) {
    hw::lapic_enable();
    DIRECT_INTERRUPTS.store(0, Ordering::Relaxed);
    let tsc_hz = rdmsr("TSC_FREQUENCY", msr::TSC_FREQUENCY).unwrap_or(0).max(1_000_000);
    let period = 10_000; // 1 ms
    // Before arming: the third expiry is at least three periods later.
    let start = now();
    let armed = wrmsr("STIMER3_COUNT", count(3), period)
        .and_then(|()| wrmsr("STIMER3_CONFIG", config(3), ENABLE | PERIODIC | DIRECT | apic_vector(DIRECT_VECTOR)));
    if !c.require("direct-mode periodic STIMER3", armed.map(|()| Detail::new())) {
        return;
    }
    hw::interrupt_window(2 * tsc_hz, || DIRECT_INTERRUPTS.load(Ordering::Relaxed) >= 3);
    let elapsed = now() - start;
    let _ = wrmsr("STIMER3_CONFIG", config(3), 0);
    let n = DIRECT_INTERRUPTS.load(Ordering::Relaxed);
    c.require(
        "direct mode: the APIC vector, no message (12.2)",
        fail_unless(n >= 3 && slot(POLLED).message_type == 0, detail!("{n} interrupts in {elapsed} x 100 ns"))
            .map(|_| detail!("{n} interrupts in {elapsed} x 100 ns")),
    );
    c.require(
        "direct mode: 3 periods of 1 ms take at least 3 ms (12.5.2)",
        fail_unless(elapsed >= 3 * period, detail!("{elapsed} x 100 ns")).map(|_| detail!("{elapsed} x 100 ns")),
    );
}
