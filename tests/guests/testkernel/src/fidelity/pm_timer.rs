//! Fidelity: the ACPI PM timer (ACPI 6.5 4.8.2.1, 4.8.3.3) at the port the
//! FADT names: it counts up at 3.579545 MHz, measured against the
//! partition reference counter (`HV_X64_MSR_TIME_REF_COUNT`, 100 ns units,
//! TLFS 12.4), never goes back between reads, and carries or wraps at the
//! width TMR_VAL_EXT says.

use super::{Outcome, checks};
use crate::checks::{Check, fail_unless};
use crate::hw::{self, Identity as Mem};
use guest_testkernel::acpi;
use guest_testkernel::detail;
use guest_testkernel::tlfs::msr;

/// The PM timer's frequency (ACPI 6.5 4.8.3.3).
const PM_TIMER_HZ: u64 = 3_579_545;
/// The reference counter's frequency: 100 ns units.
const REFERENCE_HZ: u64 = 10_000_000;
/// How long the rate is measured: at least 100 ms in reference units...
const MEASURED: u64 = REFERENCE_HZ / 10;
/// ...and at least this many times the first sample's uncertainty (an
/// emulator's slow exits), so the reads' spread stays well inside the
/// tolerance; at most 1 s.
const SPREADS: u64 = 1000;
const MEASURED_MAX: u64 = REFERENCE_HZ;
/// The rate's tolerance, in parts per million (0.5 %).
const TOLERANCE_PPM: u64 = 5_000;
/// Tries of each timed sample; the tightest is kept.
const SAMPLE_TRIES: u32 = 16;
/// Reads of the monotonicity check.
const READS: u32 = 1000;
/// The 24-bit boundary comes within 2^24 ticks (4.7 s); this much is
/// waited for it, in reference units.
const CARRY_WAIT: u64 = 6 * REFERENCE_HZ;

fn time_ref() -> Option<u64> {
    hw::rdmsr_checked(msr::TIME_REF_COUNT).ok()
}

pub fn run() -> Outcome {
    let mut c = checks();
    let fadt = acpi::discover(&Mem).and_then(|d| {
        let t = acpi::find_table(&Mem, &d.listed, b"FACP")?;
        acpi::read_fadt(&Mem, &t)
    });
    let Some(fadt) = fadt else {
        c.fail("PM timer found through the FADT (ACPI 5.2.9)", detail!("no FADT"));
        return c.finish();
    };
    let port = fadt.pm_timer_port();
    let Ok(port) = u16::try_from(port) else {
        c.fail("PM timer found through the FADT (ACPI 5.2.9)", detail!("PM timer at {port:#x}"));
        return c.finish();
    };
    if port == 0 {
        c.fail("PM timer found through the FADT (ACPI 5.2.9)", detail!("PM_TMR_BLK 0"));
        return c.finish();
    }
    let bits = if fadt.flags & acpi::FADT_TMR_VAL_EXT != 0 { 32 } else { 24 };
    let mask = ((1u64 << bits) - 1) as u32;
    let read = || hw::inl(port);
    let Some(_) = time_ref() else {
        c.fail("TIME_REF_COUNT readable (TLFS 12.4)", detail!("#GP"));
        return c.finish();
    };

    // Monotonic: each read at or after the one before, modulo the width.
    let (mut last, mut back, mut beyond) = (read(), 0u32, 0u32);
    for _ in 0..READS {
        let now = read();
        back += u32::from((now.wrapping_sub(last) & mask) > mask / 2);
        beyond += u32::from(now & !mask != 0);
        last = now;
    }
    c.require(
        "PM timer monotonic across reads (ACPI 4.8.3.3)",
        fail_unless(back == 0, detail!("{back} of {READS} reads went back")),
    );
    c.require(
        "PM timer within its TMR_VAL_EXT width (ACPI 4.8.3.3)",
        fail_unless(beyond == 0, detail!("{beyond} reads above {bits} bits")),
    );
    c.require("PM timer rate vs TIME_REF_COUNT, +-0.5% (ACPI 4.8.2.1)", rate(&read, mask));
    c.require("PM timer carries or wraps at its width (ACPI 4.8.3.3)", width(&read, bits));
    c.info(
        "TMR_STS",
        format_args!(
            "set when bit {} toggles, every {} s: not waited for",
            bits - 1,
            (1u64 << (bits - 1)) / PM_TIMER_HZ
        ),
    );
    c.finish()
}

/// Reads the PM timer between two reference-counter reads: (timer,
/// reference midpoint, half the reference spread). A busy host can stall
/// any one read, so the tightest of `SAMPLE_TRIES` tries is kept.
fn sample(read: &impl Fn() -> u32) -> Option<(u32, u64, u64)> {
    let mut best: Option<(u32, u64, u64)> = None;
    for _ in 0..SAMPLE_TRIES {
        let before = time_ref()?;
        let timer = read();
        let after = time_ref()?;
        let s = (timer, before + (after - before) / 2, (after - before).div_ceil(2));
        if best.is_none_or(|b| s.2 < b.2) {
            best = Some(s);
        }
    }
    best
}

fn rate(read: &impl Fn() -> u32, mask: u32) -> Check {
    let Some((t0, r0, e0)) = sample(read) else { return Err(detail!("TIME_REF_COUNT #GP")) };
    let deadline = hw::rdtsc() + 10 * hw::tsc_hz();
    let window = (e0 * SPREADS).clamp(MEASURED, MEASURED_MAX);
    loop {
        match time_ref() {
            Some(r) if r.wrapping_sub(r0) >= window => break,
            Some(_) if hw::rdtsc() < deadline => {}
            other => return Err(detail!("TIME_REF_COUNT stands at {other:?} (from {r0})")),
        }
    }
    let Some((t1, r1, e1)) = sample(read) else { return Err(detail!("TIME_REF_COUNT #GP")) };
    let ticks = u64::from(t1.wrapping_sub(t0) & mask);
    let elapsed = r1 - r0;
    let expected = elapsed * PM_TIMER_HZ / REFERENCE_HZ;
    let off_ppm = ticks.abs_diff(expected) * 1_000_000 / expected.max(1);
    // The reads' own spread, as a rate error it may explain: it widens the
    // tolerance, but a spread wider than the tolerance is no measurement.
    let spread_ppm = (e0 + e1) * 1_000_000 / elapsed.max(1);
    let note = detail!("{ticks}/{} us: {off_ppm} ppm +-{spread_ppm}", elapsed / 10);
    if spread_ppm <= TOLERANCE_PPM && off_ppm <= TOLERANCE_PPM + spread_ppm { Ok(note) } else { Err(note) }
}

/// A 32-bit timer past 2^24 shows it carries; otherwise its next 24-bit
/// boundary (within 4.7 s) is waited for, where a 32-bit timer carries
/// into bit 24 and a 24-bit one wraps to 0.
fn width(read: &impl Fn() -> u32, bits: u32) -> Check {
    let first = read();
    if bits == 32 && first >= 1 << 24 {
        return Ok(detail!("{first:#x}, past 24 bits"));
    }
    let Some(start) = time_ref() else { return Err(detail!("TIME_REF_COUNT #GP")) };
    let mut last = first;
    loop {
        let now = read();
        if now & 0xff_ffff < last & 0xff_ffff {
            let carried = (now >> 24) == (last >> 24).wrapping_add(1) & 0xff;
            let good = if bits == 32 { carried } else { now >> 24 == 0 };
            let note = detail!("{last:#x} -> {now:#x}, {bits} bits");
            return if good { Ok(note) } else { Err(note) };
        }
        last = now;
        match time_ref() {
            Some(r) if r - start < CARRY_WAIT => {}
            other => return Err(detail!("no 24-bit boundary from {first:#x} to {last:#x} ({other:?})")),
        }
    }
}
