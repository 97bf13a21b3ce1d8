//! The stimer jitter figure of `tessera bench` (`tests=stimer-jitter`,
//! issue #11's acceptance 5): STIMER0 periodic at 1 ms for [`TICKS`]
//! ticks, first in message mode (a timer-expired message into SINT
//! [`SINT`], TLFS 12.5 and 11.10.4), then in direct mode (its APIC vector,
//! 12.2). Each tick's arrival is `TIME_REF_COUNT` read first thing in the
//! handler; the figures ([`Jitter`]) are the lateness against the
//! schedule from when the timer was enabled and the spread of the
//! intervals between arrivals. The kernel halts between ticks, as an idle
//! guest does. The handler clears the slot and writes EOM only when
//! MessagePending asks for it (TLFS 11.4.1), as Linux does.

use crate::hw::hv::Page;
use crate::hw::{self};
use crate::println;
use core::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use guest_testkernel::bench::{Jitter, jitter_lines};
use guest_testkernel::tlfs::cpuid::{self as leaf, privilege};
use guest_testkernel::tlfs::msr;
use guest_testkernel::{Detail, detail};

/// Ticks timed in each mode.
pub const TICKS: usize = 1000;
/// 1 ms in reference time (100 ns units).
const PERIOD: u64 = 10_000;
/// The SINT of message mode and the vector of both modes.
const SINT: u64 = 2;
const VECTOR: u8 = 0x50;

/// STIMERx_CONFIG bits (TLFS 12.5.1).
const ENABLE: u64 = 1;
const PERIODIC: u64 = 1 << 1;
const DIRECT: u64 = 1 << 12;
const MESSAGE_PENDING: u64 = 1 << 40;
const LAPIC_EOI: u64 = 0xfee0_00b0;

const IDLE: u8 = 0;
const MESSAGE: u8 = 1;
const DIRECT_MODE: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(IDLE);
static ARRIVED: AtomicUsize = AtomicUsize::new(0);
static ARRIVALS: [AtomicU64; TICKS] = [const { AtomicU64::new(0) }; TICKS];

/// The trap handler's hook: true if `vector` was this test's.
pub fn interrupt(vector: u64) -> bool {
    let mode = MODE.load(Ordering::Relaxed);
    if mode == IDLE || vector != u64::from(VECTOR) {
        return false;
    }
    // The privilege was checked before the timer was armed.
    let now = hw::rdmsr(msr::TIME_REF_COUNT);
    let i = ARRIVED.load(Ordering::Relaxed);
    if i < TICKS {
        ARRIVALS[i].store(now, Ordering::Relaxed);
        ARRIVED.store(i + 1, Ordering::Relaxed);
    }
    if mode == MESSAGE {
        let at = SINT as usize * 256;
        let pending = Page::Simp.read_u64(at) & MESSAGE_PENDING != 0;
        Page::Simp.write(at, &[0; 4]);
        if pending {
            // Offered with the SynIC, checked before; the main line only
            // halts, so the fixup's state is the handler's own.
            let _ = hw::wrmsr_checked(msr::EOM, 0);
        }
    }
    hw::write32(LAPIC_EOI, 0);
    true
}

fn wrmsr(name: &str, number: u32, value: u64) -> Result<(), Detail> {
    hw::wrmsr_checked(number, value).map_err(|_| detail!("wrmsr {name} {value:#x} faulted"))
}

/// Times [`TICKS`] ticks of STIMER0 with `config` (Enable and Periodic added).
fn ticks(mode: u8, config: u64) -> Result<Jitter, Detail> {
    ARRIVED.store(0, Ordering::Relaxed);
    MODE.store(mode, Ordering::Relaxed);
    wrmsr("STIMER0_COUNT", msr::STIMER0_CONFIG + 1, PERIOD)?;
    // Read before enabling: the first period starts no earlier.
    let start = hw::rdmsr(msr::TIME_REF_COUNT);
    wrmsr("STIMER0_CONFIG", msr::STIMER0_CONFIG, config | ENABLE | PERIODIC)?;
    while ARRIVED.load(Ordering::Relaxed) < TICKS {
        hw::halt_once();
    }
    wrmsr("STIMER0_CONFIG", msr::STIMER0_CONFIG, 0)?;
    MODE.store(IDLE, Ordering::Relaxed);
    let mut arrivals = [0u64; TICKS];
    for (a, at) in arrivals.iter_mut().zip(&ARRIVALS) {
        *a = at.load(Ordering::Relaxed);
    }
    Ok(Jitter::of(start, PERIOD, &arrivals))
}

pub fn run() -> Result<(), Detail> {
    let f = hw::cpuid(leaf::FEATURES, 0);
    let needed = privilege::ACCESS_SYNIC_REGS
        | privilege::ACCESS_SYNTHETIC_TIMER_REGS
        | privilege::ACCESS_PARTITION_REFERENCE_COUNTER;
    if f.eax & needed != needed {
        return Err(detail!("the SynIC, timers and reference counter are not offered (EAX {:#x})", f.eax));
    }
    hw::lapic_enable();
    Page::Simp.clear();
    wrmsr("SIMP", msr::SIMP, Page::Simp.addr() | msr::PAGE_ENABLE)?;
    wrmsr("SCONTROL", msr::SCONTROL, 1)?;
    wrmsr("SINT2", msr::SINT0 + SINT as u32, u64::from(VECTOR))?;
    let message = ticks(MESSAGE, SINT << 16)?;
    let direct_available = f.edx & (1 << 19) != 0;
    let direct = if direct_available { Some(ticks(DIRECT_MODE, DIRECT | u64::from(VECTOR) << 4)?) } else { None };
    let mut early = 0;
    for (mode, j) in [("message mode", Some(message)), ("direct mode", direct)] {
        let Some(j) = j else { continue };
        for line in jitter_lines(mode, &j) {
            println!("testkernel: {}", line.as_str());
        }
        early += j.early;
    }
    if early != 0 {
        return Err(detail!("{early} ticks came before their time"));
    }
    Ok(())
}
