//! The neighbour of a hostile partition: canaries in its free RAM and in
//! the registers a hypervisor must switch between partitions, set first
//! (`canary-set`) and checked last (`canary-check`); and `pace`, a steady
//! stream of exits whose latency shows whether the neighbour is starved.
//!
//! RAM: every 8-byte word of available RAM above the kernel image (but the
//! boot information and modules) holds [`canary::word`] of the seed and
//! its address. Registers: XMM0-15, the x87 control word, MXCSR, DR0-3,
//! DR7, XCR0 (with XSAVE) and the guest MSRs of [`msr::LIST`]. The kernel
//! runs no SSE or x87 code and touches none of them in between.

use crate::hw::{self, rdmsr_checked, state, wrmsr_checked};
use crate::println;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use guest_testkernel::hostile::msr::{self, Kind};
use guest_testkernel::hostile::{self, canary, canonical};
use guest_testkernel::multiboot::{self, Summary};
use guest_testkernel::{Detail, detail};

type Outcome = Result<(), Detail>;

const FPU_CONTROL: u16 = 0x0b7f;
const MXCSR: u32 = 0x5f80;
const XCR0: u64 = 0x3;

/// Whether XCR0 got a canary (the CPU offers XSAVE).
static XCR0_SET: AtomicBool = AtomicBool::new(false);
/// Which guest MSRs took their canary (bit n: `msr::LIST[n]`).
static MSRS_SET: AtomicU64 = AtomicU64::new(0);

/// The ranges of RAM that carry canaries: available RAM from the end of
/// the kernel image, without the boot information and the modules.
fn ranges(summary: &Summary, info: u64, mut each: impl FnMut(Range<u64>)) -> Result<(), Detail> {
    let kernel_end = (hw::kernel_extent().end + 4095) & !4095;
    let i = summary.info;
    let mut avoid: heapless::Vec<Range<u64>, 8> = heapless::Vec::new();
    let _ = avoid.push(info & !4095..(info + 4096 + 4095) & !4095);
    if i.flags & multiboot::FLAG_MODS != 0 {
        for n in 0..i.mods_count.min(6) {
            let m = multiboot::module(&hw::Identity, &i, n).ok_or(detail!("module {n} unreadable"))?;
            let _ = avoid.push(u64::from(m.start) & !4095..(u64::from(m.end) + 4095) & !4095);
        }
    }
    multiboot::for_each_mmap(&hw::Identity, &i, |e| {
        if e.kind != multiboot::AVAILABLE {
            return;
        }
        let (start, end) = (e.base.max(kernel_end), e.end() & !7);
        // Cut out what must stay: page by page is plenty.
        let mut at = start;
        while at < end {
            let page_end = ((at | 4095) + 1).min(end);
            if !avoid.iter().any(|r| r.start < page_end && at < r.end) {
                each(at..page_end);
            }
            at = page_end;
        }
    })
}

fn guest_msr_value(seed: u64, index: usize, address: bool) -> u64 {
    let v = canary::register(seed, 200 + index as u64);
    if address { canonical(v) } else { v & 0xffff }
}

fn xmm_canaries(seed: u64) -> state::Xmm {
    core::array::from_fn(|i| {
        u128::from(canary::register(seed, 2 * i as u64)) << 64 | u128::from(canary::register(seed, 2 * i as u64 + 1))
    })
}

pub fn set(seed: u64, magic: u32, info: u64) -> Outcome {
    let summary = multiboot::check(&hw::Identity, magic, info, hw::kernel_extent())?;
    let mut bytes = 0u64;
    ranges(&summary, info, |r| {
        for addr in r.clone().step_by(8) {
            // SAFETY: available RAM above the kernel image, not the boot
            // information nor a module: the kernel uses none of it.
            unsafe { core::ptr::write_volatile(addr as *mut u64, canary::word(seed, addr)) };
        }
        bytes += r.end - r.start;
    })?;
    state::enable_sse();
    state::set_xmm(&xmm_canaries(seed));
    state::set_fpu_control(FPU_CONTROL);
    state::set_mxcsr(MXCSR);
    for n in 0..4 {
        state::set_dr(n, canonical(canary::register(seed, 100 + u64::from(n))));
    }
    state::set_dr(7, canary::dr7(seed));
    if hw::cpuid(1, 0).ecx & (1 << 26) != 0 {
        state::cr4_set(state::CR4_OSXSAVE);
        // SAFETY: x87 and SSE, a valid XCR0 on any CPU with XSAVE.
        unsafe { core::arch::asm!("xsetbv", in("ecx") 0, in("eax") XCR0 as u32, in("edx") 0, options(nostack)) };
        XCR0_SET.store(true, Ordering::Relaxed);
    }
    let mut set = 0u64;
    for (n, &(number, _, kind)) in msr::LIST.iter().enumerate() {
        if let Kind::Guest { address } = kind {
            let value = guest_msr_value(seed, n, address);
            if wrmsr_checked(number, value).is_ok() && rdmsr_checked(number) == Ok(value) {
                set |= 1 << n;
            }
        }
    }
    MSRS_SET.store(set, Ordering::Relaxed);
    println!("testkernel: canary-set: seed {seed:#x}, {} KiB of RAM", bytes / 1024);
    println!(
        "testkernel: canary-set: registers XMM0-15, x87, MXCSR, DR0-3, DR7{}, {} MSRs",
        if XCR0_SET.load(Ordering::Relaxed) { ", XCR0" } else { "" },
        set.count_ones()
    );
    Ok(())
}

pub fn check(seed: u64, magic: u32, info: u64) -> Outcome {
    let summary = multiboot::check(&hw::Identity, magic, info, hw::kernel_extent())?;
    let (mut bad, mut first, mut bytes) = (0u64, None, 0u64);
    ranges(&summary, info, |r| {
        for addr in r.clone().step_by(8) {
            // SAFETY: as in `set`.
            let got = unsafe { core::ptr::read_volatile(addr as *const u64) };
            if got != canary::word(seed, addr) {
                bad += 1;
                first.get_or_insert((addr, got));
            }
        }
        bytes += r.end - r.start;
    })?;
    let mut failures: heapless::Vec<Detail, 8> = heapless::Vec::new();
    let mut fail = |why: Detail| {
        println!("testkernel: canary-check: FAIL {why}");
        let _ = failures.push(why);
    };
    if let Some((addr, got)) = first {
        fail(detail!("{bad} RAM words changed, the first at {addr:#x}: {got:#x}"));
    }
    let xmm = state::xmm();
    let want = xmm_canaries(seed);
    if let Some(i) = (0..16).find(|&i| xmm[i] != want[i]) {
        fail(detail!("XMM{i} is {:#x}, was {:#x}", xmm[i], want[i]));
    }
    let (fcw, mxcsr) = (state::fpu_control(), state::mxcsr());
    if fcw != FPU_CONTROL || mxcsr != MXCSR {
        fail(detail!("x87 control {fcw:#x} (was {FPU_CONTROL:#x}), MXCSR {mxcsr:#x} (was {MXCSR:#x})"));
    }
    for n in 0..4 {
        let (got, want) = (state::dr(n), canonical(canary::register(seed, 100 + u64::from(n))));
        if got != want {
            fail(detail!("DR{n} is {got:#x}, was {want:#x}"));
        }
    }
    let dr7 = state::dr(7);
    if dr7 != canary::dr7(seed) {
        fail(detail!("DR7 is {dr7:#x}, was {:#x}", canary::dr7(seed)));
    }
    if XCR0_SET.load(Ordering::Relaxed) && state::xcr0() != XCR0 {
        fail(detail!("XCR0 is {:#x}, was {XCR0:#x}", state::xcr0()));
    }
    let set = MSRS_SET.load(Ordering::Relaxed);
    for (n, &(number, name, kind)) in msr::LIST.iter().enumerate() {
        if let (Kind::Guest { address }, true) = (kind, set & (1 << n) != 0) {
            let want = guest_msr_value(seed, n, address);
            let got = rdmsr_checked(number);
            if got != Ok(want) {
                fail(detail!("{name} is {got:x?}, was {want:#x}"));
            }
        }
    }
    println!("testkernel: canary-check: {} KiB of RAM and the registers checked", bytes / 1024);
    match failures.first() {
        None => Ok(()),
        Some(first) => Err(detail!("{} canaries changed; the first: {first}", failures.len())),
    }
}

/// Steps of the pace, exits per step, and the time a step takes at least.
const PACE_STEPS: u32 = 20;
const PACE_EXITS: u32 = 100;
const PACE_STEP_MS: u64 = 200;

/// A steady stream of exits (port writes nobody emulates), in steps of
/// [`PACE_EXITS`] at most every [`PACE_STEP_MS`]: each step's time for its
/// exits is the neighbour's exit latency under whatever else runs.
pub fn pace(tsc_hz: u64) -> Outcome {
    let step_tsc = tsc_hz / 1000 * PACE_STEP_MS;
    let us = |ticks: u64| ticks / (tsc_hz / 1_000_000).max(1);
    let mut slowest = 0;
    for step in 1..=PACE_STEPS {
        let start = hw::rdtsc();
        for _ in 0..PACE_EXITS {
            hw::outb(0x80, step as u8);
        }
        let exits = hw::rdtsc().wrapping_sub(start);
        slowest = slowest.max(exits);
        println!("testkernel: pace: step {step} of {PACE_STEPS}: {PACE_EXITS} exits in {} us", us(exits));
        while hw::rdtsc().wrapping_sub(start) < step_tsc {
            core::hint::spin_loop();
        }
    }
    println!("testkernel: pace: slowest step: {PACE_EXITS} exits in {} us", us(slowest));
    Ok(())
}

/// The seed of the canaries: the command line's, as the hostile tests read it.
pub fn seed(cmdline: &str) -> Result<u64, Detail> {
    hostile::seed_option(cmdline)
}
