//! Fidelity: the local APIC as SDM Vol. 3A chapter 11 ("Advanced
//! Programmable Interrupt Controller"; chapter 12 in the newest editions)
//! defines it, on the BSP: x2APIC mode and its #GP rules, the 64-bit ICR
//! and SELF IPI, the TSC-deadline timer, task priority, LVT masking and
//! software disable, the IA32_APIC_BASE transitions back to xAPIC; then the
//! I/O APIC's level-triggered delivery ([`ioapic`]).
//!
//! The APIC is left as the suite found it: xAPIC mode at its base, with
//! TPR and the LVT entries restored, and software-enabled.

mod ioapic;
mod other_vp;

use super::{Outcome, checks};
use crate::checks::{Checks, fail_unless, ok};
use crate::hw::{self, Fault};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use guest_testkernel::detail;

const APIC_BASE_MSR: u32 = 0x1b;
const BASE_EN: u64 = 1 << 11;
const BASE_EXTD: u64 = 1 << 10;
const TSC_DEADLINE_MSR: u32 = 0x6e0;
const CPUID_EDX_APIC: u32 = 1 << 9;

/// x2APIC MSRs (SDM 11.12.1.2, Table 11-6).
mod x2 {
    pub const ID: u32 = 0x802;
    pub const VERSION: u32 = 0x803;
    pub const TPR: u32 = 0x808;
    pub const PPR: u32 = 0x80a;
    pub const EOI: u32 = 0x80b;
    pub const LDR: u32 = 0x80d;
    pub const SVR: u32 = 0x80f;
    pub const ISR0: u32 = 0x810;
    pub const IRR0: u32 = 0x820;
    pub const ICR: u32 = 0x830;
    pub const LVT_TIMER: u32 = 0x832;
    pub const INITIAL: u32 = 0x838;
    pub const CURRENT: u32 = 0x839;
    pub const DIVIDE: u32 = 0x83e;
    pub const SELF_IPI: u32 = 0x83f;
}

/// xAPIC page offsets this test saves and restores.
const XAPIC_ID: u64 = 0x20;
const XAPIC_TPR: u64 = 0x80;
const XAPIC_SVR: u64 = 0xf0;
/// SVR bit 8: the APIC is software-enabled.
const SVR_SOFTWARE_ENABLE: u32 = 1 << 8;
const XAPIC_EOI: u64 = 0xb0;
const XAPIC_LVT: [u64; 6] = [0x320, 0x330, 0x340, 0x350, 0x360, 0x370];

/// The vectors this test raises (above every other test's, below the
/// spurious vector 0xff).
const VEC_SELF: u8 = 0xd1;
const VEC_ICR: u8 = 0xd2;
const VEC_LOGICAL: u8 = 0xd3;
const VEC_TIMER: u8 = 0xd4;
const VEC_TPR: u8 = 0xc5;
const VEC_MASKED: u8 = 0xd6;
const VEC_DISABLED: u8 = 0xd7;
const VEC_LEVEL: u8 = 0xd8;
/// Taken by the other VP, and its answer to this one.
const VEC_AP: u8 = 0xd9;
const VEC_REPLY: u8 = 0xda;
const VECTORS: [u8; 10] =
    [VEC_SELF, VEC_ICR, VEC_LOGICAL, VEC_TIMER, VEC_TPR, VEC_MASKED, VEC_DISABLED, VEC_LEVEL, VEC_AP, VEC_REPLY];

/// An MSR address no processor implements: reading it is #GP.
const UNIMPLEMENTED_MSR: u32 = 0x1fff_0000;

/// How late a timer interrupt may be: generous for emulators (TCG, Bochs).
const LATE_MS: u64 = 50;
/// How far ahead the checks that must act before a TSC deadline arm it:
/// an exit may take the VID's console flush of the guest's posted output
/// (in Bochs a line costs about 30 ms of guest TSC), and the deadline
/// must not pass within the few exits they make.
const AHEAD_MS: u64 = 200;

static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The APIC is in x2APIC mode: the handler's EOI goes to MSR 0x80B.
static X2APIC: AtomicBool = AtomicBool::new(false);
static COUNT: [AtomicU64; VECTORS.len()] = [const { AtomicU64::new(0) }; VECTORS.len()];
static LAST_TSC: AtomicU64 = AtomicU64::new(0);

fn slot(vector: u8) -> Option<usize> {
    VECTORS.iter().position(|&v| v == vector)
}

/// The trap handler's hook: counts this test's vectors and ends them with
/// an EOI (but the level one, whose EOI the test does itself).
pub fn interrupt(vector: u64) -> bool {
    let Some(i) = u8::try_from(vector).ok().and_then(slot) else { return false };
    if !ACTIVE.load(Ordering::Relaxed) {
        return false;
    }
    LAST_TSC.store(hw::rdtsc(), Ordering::Relaxed);
    COUNT[i].fetch_add(1, Ordering::Relaxed);
    if vector == u64::from(VEC_AP) {
        // Taken on the other VP, which is in x2APIC mode.
        hw::wrmsr(x2::EOI, 0);
    } else if vector != u64::from(VEC_LEVEL) {
        eoi();
    }
    true
}

fn eoi() {
    if X2APIC.load(Ordering::Relaxed) {
        hw::wrmsr(x2::EOI, 0);
    } else {
        hw::write32(hw::LAPIC_BASE + XAPIC_EOI, 0);
    }
}

fn count(vector: u8) -> u64 {
    slot(vector).map_or(0, |i| COUNT[i].load(Ordering::Relaxed))
}

/// Opens the interrupt window for up to `ms` milliseconds or until
/// `vector` was taken `n` times; returns the count then.
fn wait_for(vector: u8, n: u64, ms: u64) -> u64 {
    hw::interrupt_window(hw::tsc_hz() / 1000 * ms, || count(vector) >= n);
    count(vector)
}

fn ms(ticks: u64) -> u64 {
    ticks / (hw::tsc_hz() / 1000).max(1)
}

fn us(ticks: u64) -> u64 {
    ticks / (hw::tsc_hz() / 1_000_000).max(1)
}

fn rd(msr: u32) -> Result<u64, Fault> {
    hw::rdmsr_checked(msr)
}

fn wr(msr: u32, value: u64) -> Result<(), Fault> {
    hw::wrmsr_checked(msr, value)
}

fn is_gp<T>(r: Result<T, Fault>) -> bool {
    matches!(r, Err(f) if f.is_gp())
}

/// The xAPIC registers the rest of the suite relies on.
struct Saved {
    base: u64,
    tpr: u32,
    svr: u32,
    lvt: [u32; 6],
}

impl Saved {
    fn take() -> Saved {
        let r = |off| hw::read32(hw::LAPIC_BASE + off);
        Saved { base: hw::rdmsr(APIC_BASE_MSR), tpr: r(XAPIC_TPR), svr: r(XAPIC_SVR), lvt: XAPIC_LVT.map(r) }
    }

    /// Back to xAPIC mode (through disabled if need be) with these values,
    /// software-enabled: the re-enabled APIC starts with every LVT masked,
    /// and a software-disabled one cannot unmask them (SDM 11.4.7.2), so
    /// LINT0's virtual wire (the later tests' PIT) comes back only this way.
    fn restore(&self) {
        let now = hw::rdmsr(APIC_BASE_MSR);
        if now & BASE_EXTD != 0 {
            let _ = wr(APIC_BASE_MSR, now & !(BASE_EN | BASE_EXTD));
        }
        let _ = wr(APIC_BASE_MSR, self.base);
        X2APIC.store(false, Ordering::Relaxed);
        let w = |off, v| hw::write32(hw::LAPIC_BASE + off, v);
        w(XAPIC_SVR, self.svr | SVR_SOFTWARE_ENABLE);
        w(XAPIC_TPR, self.tpr);
        for (off, v) in XAPIC_LVT.iter().zip(self.lvt) {
            w(*off, v);
        }
    }
}

pub fn run(magic: u32, info: u64) -> Outcome {
    let mut c = checks();
    let leaf1 = hw::cpuid(1, 0);
    let has_x2apic = leaf1.ecx & 1 << 21 != 0;
    c.require("CPUID.01H:ECX.x2APIC[21] set (SDM 11.12.1)", fail_unless(has_x2apic, detail!("ECX {:#x}", leaf1.ecx)));
    c.require(
        "CPUID.01H:ECX.TSC-Deadline[24] set (SDM 11.5.4.1)",
        fail_unless(leaf1.ecx & 1 << 24 != 0, detail!("ECX {:#x}", leaf1.ecx)),
    );
    let saved = Saved::take();
    if saved.base & (BASE_EN | BASE_EXTD) != BASE_EN {
        c.fail("the APIC starts in xAPIC mode", detail!("IA32_APIC_BASE {:#x}", saved.base));
        return c.finish();
    }
    ACTIVE.store(true, Ordering::Relaxed);
    let ap = if has_x2apic { other_vp::start(magic, info) } else { Err(detail!("no x2APIC")) };
    if let Err(why) = &ap {
        c.fail("the other VP starts for the IPI checks", why.clone());
    }
    if has_x2apic && enter_x2apic(&mut c, saved.base) {
        registers(&mut c);
        ipis(&mut c);
        if ap.is_ok() {
            other_vp::ipis(&mut c);
            other_vp::park(&mut c);
        }
        priority(&mut c);
        tsc_deadline(&mut c);
        masked_timer(&mut c);
        software_disable(&mut c);
        back_to_xapic(&mut c, saved.base);
    }
    saved.restore();
    ioapic::run(&mut c);
    saved.restore();
    ACTIVE.store(false, Ordering::Relaxed);
    c.finish()
}

fn enter_x2apic(c: &mut Checks, base: u64) -> bool {
    let entered = wr(APIC_BASE_MSR, base | BASE_EXTD).is_ok();
    let now = hw::rdmsr(APIC_BASE_MSR);
    X2APIC.store(entered, Ordering::Relaxed);
    c.require(
        "APIC_BASE xAPIC -> x2APIC by setting EXTD (SDM 11.12.5)",
        fail_unless(entered && now == base | BASE_EXTD, detail!("wrmsr ok {entered}, now {now:#x}")),
    )
}

/// The x2APIC ID, LDR and the register map's #GP rules.
fn registers(c: &mut Checks) {
    let leaf1 = hw::cpuid(1, 0);
    let initial = if hw::cpuid(0, 0).eax >= 0xb { hw::cpuid(0xb, 0).edx } else { leaf1.ebx >> 24 };
    let id = rd(x2::ID);
    c.require(
        "x2APIC ID (802H) = CPUID 0BH:EDX x2APIC ID (SDM 11.12.8)",
        fail_unless(id == Ok(u64::from(initial)), detail!("ID {id:x?}, CPUID {initial:#x}")),
    );
    let id = id.unwrap_or(0) as u32;
    let want = (id >> 4) << 16 | 1 << (id & 15);
    let ldr = rd(x2::LDR);
    c.require(
        "x2APIC LDR (80DH) = (ID>>4)<<16 | 1<<(ID&15) (SDM 11.12.10.2)",
        fail_unless(ldr == Ok(u64::from(want)), detail!("LDR {ldr:x?}, expected {want:#x}")),
    );
    let mut check_all = |what: &str, cases: &[(u32, Option<u64>)]| {
        let bad = cases.iter().find(|&&(msr, write)| match write {
            None => !is_gp(rd(msr)),
            Some(v) => !is_gp(wr(msr, v)),
        });
        c.require(what, bad.map_or(ok(), |(msr, w)| Err(detail!("MSR {msr:#x} (write {w:x?}) did not #GP"))))
    };
    check_all(
        "RDMSR of write-only EOI 80BH, SELF IPI 83FH: #GP (SDM 11.12.1.2)",
        &[(x2::EOI, None), (x2::SELF_IPI, None)],
    );
    check_all(
        "RDMSR of APR, RRD, DFR, ICR high, reserved: #GP (SDM 11.12.1.2)",
        &[(0x809, None), (0x80c, None), (0x80e, None), (0x831, None), (0x800, None), (0x804, None)],
    );
    check_all(
        "WRMSR of read-only ID, version, PPR, LDR, ISR, CCR: #GP (SDM 11.12.1.2)",
        &[
            (x2::ID, Some(0)),
            (x2::VERSION, Some(0)),
            (x2::PPR, Some(0)),
            (x2::LDR, Some(0)),
            (x2::ISR0, Some(0)),
            (x2::CURRENT, Some(0)),
        ],
    );
    check_all(
        "WRMSR of reserved bits (TPR, EOI, SELF IPI, ICR): #GP (SDM 11.12.1.3)",
        &[
            (x2::TPR, Some(0x100)),
            (x2::EOI, Some(1)),
            (x2::SELF_IPI, Some(0x1d1)),
            (x2::ICR, Some(1 << 13 | u64::from(VEC_ICR))),
        ],
    );
    let page = hw::read32(hw::LAPIC_BASE + XAPIC_ID);
    c.info("xAPIC page in x2APIC mode (SDM 11.12.1.2)", format_args!("ID register reads {page:#x}"));
    let enabled = wr(x2::SVR, 0x1ff).is_ok() && rd(x2::SVR) == Ok(0x1ff);
    c.require(
        "SVR (80FH) software-enables the APIC (SDM 11.4.3)",
        fail_unless(enabled, detail!("SVR {:x?}", rd(x2::SVR))),
    );
    let _ = wr(x2::TPR, 0);
}

/// SELF IPI and the 64-bit ICR, physical and logical (cluster) destinations.
fn ipis(c: &mut Checks) {
    let sent = wr(x2::SELF_IPI, u64::from(VEC_SELF));
    let got = wait_for(VEC_SELF, 1, 10);
    c.require(
        "SELF IPI (83FH) is delivered to this processor (SDM 11.12.11)",
        fail_unless(sent.is_ok() && got == 1, detail!("wrmsr {sent:?}, taken {got} times")),
    );
    // Posted while IF=0, then an MSR read the VMM answers with #GP: the
    // exception goes in first, and the interrupt is still taken after it.
    let sent = wr(x2::SELF_IPI, u64::from(VEC_SELF));
    let gp = is_gp(rd(UNIMPLEMENTED_MSR));
    let got = wait_for(VEC_SELF, 2, 10);
    c.require(
        "an interrupt pending while IF=0 outlives a #GP raised meanwhile (SDM 6.9)",
        fail_unless(sent.is_ok() && gp && got == 2, detail!("wrmsr {sent:?}, #GP {gp}, taken {} times", got - 1)),
    );
    let id = rd(x2::ID).unwrap_or(0);
    let icr = id << 32 | u64::from(VEC_ICR);
    let sent = wr(x2::ICR, icr);
    let got = wait_for(VEC_ICR, 1, 10);
    c.require(
        "64-bit ICR (830H) IPI to own x2APIC ID is delivered (SDM 11.12.9)",
        fail_unless(sent.is_ok() && got == 1, detail!("wrmsr {sent:?}, taken {got} times")),
    );
    let back = rd(x2::ICR);
    c.require(
        "ICR reads back as one 64-bit MSR (SDM 11.12.9)",
        fail_unless(back == Ok(icr), detail!("read {back:x?}, wrote {icr:#x}")),
    );
    let ldr = rd(x2::LDR).unwrap_or(0);
    let sent = wr(x2::ICR, ldr << 32 | 1 << 11 | u64::from(VEC_LOGICAL));
    let got = wait_for(VEC_LOGICAL, 1, 10);
    // Another cluster's member bits do not reach this processor.
    let other = ((ldr >> 16) + 1) << 16 | (ldr & 0xffff);
    let _ = wr(x2::ICR, other << 32 | 1 << 11 | u64::from(VEC_LOGICAL));
    let after = wait_for(VEC_LOGICAL, 2, 2);
    c.require(
        "ICR logical: own cluster/bit delivered, other not (SDM 11.12.10.2)",
        fail_unless(sent.is_ok() && got == 1 && after == 1, detail!("wrmsr {sent:?}, taken {got}, then {after}")),
    );
}

fn irr_has(vector: u8) -> bool {
    rd(x2::IRR0 + u32::from(vector >> 5)).is_ok_and(|w| w & 1 << (vector & 31) != 0)
}

/// TPR against a pending interrupt of the same class.
fn priority(c: &mut Checks) {
    let _ = wr(x2::TPR, 0xc0);
    let _ = wr(x2::SELF_IPI, u64::from(VEC_TPR));
    let held = wait_for(VEC_TPR, 1, 2);
    let pending = irr_has(VEC_TPR);
    let ppr = rd(x2::PPR);
    c.require(
        "TPR 0xC0 holds same-class 0xC5 in IRR, PPR 0xC0 (SDM 11.8.3.1)",
        fail_unless(held == 0 && pending && ppr == Ok(0xc0), detail!("taken {held}, IRR {pending}, PPR {ppr:x?}")),
    );
    let _ = wr(x2::TPR, 0xb0);
    let got = wait_for(VEC_TPR, 1, 10);
    c.require(
        "lowering TPR to 0xB0 delivers the held 0xC5 (SDM 11.8.3.1)",
        fail_unless(got == 1 && !irr_has(VEC_TPR), detail!("taken {got}")),
    );
    let _ = wr(x2::TPR, 0);
}

/// Arms the TSC-deadline timer at `deadline` and waits up to `wait_ms`:
/// (times taken, TSC at the interrupt).
fn deadline_fires(deadline: u64, wait_ms: u64) -> (u64, u64) {
    let before = count(VEC_TIMER);
    let _ = wr(TSC_DEADLINE_MSR, deadline);
    let n = wait_for(VEC_TIMER, before + 1, wait_ms) - before;
    (n, LAST_TSC.load(Ordering::Relaxed))
}

fn tsc_deadline(c: &mut Checks) {
    let hz = hw::tsc_hz();
    let lvt = 2 << 17 | u64::from(VEC_TIMER);
    if wr(x2::LVT_TIMER, lvt).is_err() || rd(x2::LVT_TIMER) != Ok(lvt) {
        c.fail("LVT timer mode 10b (TSC-deadline) accepted (SDM 11.5.4.1)", detail!("LVT {:x?}", rd(x2::LVT_TIMER)));
        return;
    }
    // One shot at now + 1 ms: not early, not (much) late.
    let deadline = hw::rdtsc() + hz / 1000;
    let (n, at) = deadline_fires(deadline, 1 + LATE_MS);
    let after = rd(TSC_DEADLINE_MSR);
    let late = at.wrapping_sub(deadline);
    let on_time = n == 1 && at >= deadline && ms(late) < LATE_MS;
    c.require(
        "TSC deadline now+1 ms fires once, not early, in 50 ms (SDM 11.5.4.1)",
        if on_time {
            Ok(detail!("{} us late", us(late)))
        } else {
            Err(detail!("taken {n}, {}", at as i64 - deadline as i64))
        },
    );
    // A deadline already past fires at once.
    let now = hw::rdtsc();
    let (n, at) = deadline_fires(now - hz / 1000, LATE_MS);
    c.require(
        "a TSC deadline already past fires at once (SDM 11.5.4.1)",
        if n == 1 {
            Ok(detail!("after {} us", us(at.wrapping_sub(now))))
        } else {
            Err(detail!("taken {n} in {LATE_MS} ms"))
        },
    );
    // Read back while armed (far enough ahead for an emulator), then 0
    // disarms: nothing comes past the deadline.
    let before = count(VEC_TIMER);
    let deadline = hw::rdtsc() + hz / 1000 * AHEAD_MS;
    let _ = wr(TSC_DEADLINE_MSR, deadline);
    let armed = rd(TSC_DEADLINE_MSR);
    let _ = wr(TSC_DEADLINE_MSR, 0);
    let n = wait_for(VEC_TIMER, before + 1, AHEAD_MS + 5) - before;
    c.require(
        "TSC_DEADLINE reads armed value, 0 once fired (SDM 11.5.4.1)",
        fail_unless(armed == Ok(deadline) && after == Ok(0), detail!("armed {armed:x?}, fired {after:x?}")),
    );
    c.require(
        "writing 0 to TSC_DEADLINE disarms (SDM 11.5.4.1)",
        fail_unless(n == 0, detail!("taken {n} in {} ms", AHEAD_MS + 5)),
    );
    // Leaving the mode disarms; one-shot mode ignores the MSR, reads 0.
    let before = count(VEC_TIMER);
    let _ = wr(TSC_DEADLINE_MSR, hw::rdtsc() + hz / 1000 * AHEAD_MS);
    let _ = wr(x2::LVT_TIMER, u64::from(VEC_TIMER));
    let ignored = wr(TSC_DEADLINE_MSR, hw::rdtsc() + hz / 1000 * AHEAD_MS);
    let read = rd(TSC_DEADLINE_MSR);
    let _ = wr(x2::LVT_TIMER, lvt);
    let n = wait_for(VEC_TIMER, before + 1, AHEAD_MS + 5) - before;
    c.require(
        "one-shot mode: TSC_DEADLINE ignores writes, reads 0 (SDM 11.5.4.1)",
        fail_unless(ignored.is_ok() && read == Ok(0), detail!("wrmsr {ignored:?}, read {read:x?}")),
    );
    c.require(
        "a timer mode change disarms the deadline (SDM 11.5.4.1)",
        fail_unless(n == 0, detail!("taken {n} in {} ms", AHEAD_MS + 5)),
    );
    let _ = wr(x2::LVT_TIMER, 1 << 16 | u64::from(VEC_TIMER));
}

/// A masked one-shot LVT timer counts down to 0 and interrupts nobody.
fn masked_timer(c: &mut Checks) {
    let _ = wr(x2::LVT_TIMER, 1 << 16 | u64::from(VEC_MASKED));
    let _ = wr(x2::DIVIDE, 0xb);
    // The count's rate: counts per millisecond.
    let _ = wr(x2::INITIAL, u64::from(u32::MAX));
    let start = hw::rdtsc();
    while ms(hw::rdtsc() - start) < 1 {
        core::hint::spin_loop();
    }
    let rate = (u64::from(u32::MAX) - rd(x2::CURRENT).unwrap_or(u64::from(u32::MAX))) / ms(hw::rdtsc() - start).max(1);
    let initial = (rate * 2).clamp(1, u64::from(u32::MAX));
    let _ = wr(x2::INITIAL, initial);
    let first = rd(x2::CURRENT).unwrap_or(0);
    let got = wait_for(VEC_MASKED, 1, 10);
    let last = rd(x2::CURRENT);
    c.require(
        "masked LVT timer counts to 0, no interrupt (SDM 11.5.1)",
        fail_unless(
            rate > 0 && first > 0 && first <= initial && last == Ok(0) && got == 0,
            detail!("rate {rate}/ms, current {first} then {last:?}, taken {got}"),
        ),
    );
    let _ = wr(x2::INITIAL, 0);
}

/// SVR bit 8 clear: LVTs masked for good, fixed interrupts not taken.
fn software_disable(c: &mut Checks) {
    let _ = wr(x2::SVR, 0xff);
    let masked = rd(x2::LVT_TIMER).is_ok_and(|v| v & 1 << 16 != 0);
    let _ = wr(x2::LVT_TIMER, u64::from(VEC_DISABLED));
    let still = rd(x2::LVT_TIMER).is_ok_and(|v| v & 1 << 16 != 0);
    c.require(
        "SVR bit 8 clear masks LVTs, unmask ignored (SDM 11.4.7.2)",
        fail_unless(masked && still, detail!("masked {masked}, after an unmasking write {still}")),
    );
    let _ = wr(x2::SELF_IPI, u64::from(VEC_DISABLED));
    let got = wait_for(VEC_DISABLED, 1, 2);
    c.require(
        "software-disabled APIC takes no fixed IPI (SDM 11.4.7.2)",
        fail_unless(got == 0, detail!("taken {got}")),
    );
    let _ = wr(x2::SVR, 0x1ff);
    let later = wait_for(VEC_DISABLED, 1, 2);
    c.info("self-IPI sent while disabled, after re-enable", format_args!("taken {later} times"));
}

/// x2APIC -> xAPIC only through disabled (SDM 11.12.5, Figure 11-27).
fn back_to_xapic(c: &mut Checks, base: u64) {
    let direct = wr(APIC_BASE_MSR, base);
    let extd_only = wr(APIC_BASE_MSR, (base & !BASE_EN) | BASE_EXTD);
    c.require(
        "APIC_BASE x2APIC -> xAPIC, EXTD without EN: #GP (SDM 11.12.5)",
        fail_unless(is_gp(direct) && is_gp(extd_only), detail!("to xAPIC {direct:?}, EXTD only {extd_only:?}")),
    );
    let disabled = wr(APIC_BASE_MSR, base & !(BASE_EN | BASE_EXTD));
    X2APIC.store(false, Ordering::Relaxed);
    let flag_off = hw::cpuid(1, 0).edx & CPUID_EDX_APIC;
    let to_x2 = wr(APIC_BASE_MSR, base | BASE_EXTD);
    c.require(
        "APIC_BASE x2APIC -> off ok, off -> x2APIC #GP (SDM 11.12.5)",
        fail_unless(disabled.is_ok() && is_gp(to_x2), detail!("disable {disabled:?}, to x2APIC {to_x2:?}")),
    );
    let enabled = wr(APIC_BASE_MSR, base);
    let flag_on = hw::cpuid(1, 0).edx & CPUID_EDX_APIC;
    c.require(
        "CPUID.01H:EDX.APIC[9] follows APIC_BASE.EN (SDM 11.4.3)",
        fail_unless(flag_off == 0 && flag_on != 0, detail!("disabled {flag_off:#x}, enabled {flag_on:#x}")),
    );
    let initial = hw::cpuid(1, 0).ebx >> 24;
    let id = hw::read32(hw::LAPIC_BASE + XAPIC_ID) >> 24;
    let svr = hw::read32(hw::LAPIC_BASE + XAPIC_SVR);
    c.require(
        "off -> xAPIC: initial ID, SVR reset 0xFF (SDM 11.12.5.1)",
        fail_unless(
            enabled.is_ok() && id == initial && svr == 0xff,
            detail!("wrmsr {enabled:?}, ID {id}, SVR {svr:#x}"),
        ),
    );
}
