//! EOI assist (TLFS 10.3.5), for a partition offered the APIC MSRs (and so
//! the VP assist page): self-IPIs through HV_X64_MSR_ICR whose handler ends
//! them as Linux's `hv_apic_eoi_write` does, an atomic exchange of the
//! assist page's first dword with 0, writing HV_X64_MSR_EOI only if
//! `NoEoiRequired` (bit 0) was clear.

use super::{Check, Checks, fail_unless};
use crate::hw::hv::Page;
use crate::hw::{self};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use guest_testkernel::detail;
use guest_testkernel::tlfs::msr;

/// The self-IPI's vector (no other test's).
const VECTOR: u8 = 0xc8;
/// xAPIC ISR, at its reset base.
const LAPIC_ISR: u64 = 0xfee0_0100;

static TAKEN: AtomicU64 = AtomicU64::new(0);
/// Interrupts whose handler found `NoEoiRequired` set (and wrote no EOI).
static ASSISTED: AtomicU64 = AtomicU64::new(0);

fn eoi_assist() -> &'static AtomicU32 {
    // SAFETY: the assist page is this kernel's page buffer, 4-aligned,
    // shared only with the hypervisor, which writes it between exits.
    unsafe { &*(Page::VpAssist.addr() as *const AtomicU32) }
}

/// The trap handler's hook: true if `vector` was this test's.
pub fn interrupt(vector: u64) -> bool {
    if vector != u64::from(VECTOR) {
        return false;
    }
    if eoi_assist().swap(0, Ordering::SeqCst) & 1 != 0 {
        ASSISTED.fetch_add(1, Ordering::Relaxed);
    } else {
        let _ = hw::wrmsr_checked(msr::EOI, 0);
    }
    TAKEN.fetch_add(1, Ordering::Release);
    true
}

fn in_service() -> bool {
    hw::read32(LAPIC_ISR + u64::from(VECTOR / 32) * 0x10) & (1 << (VECTOR % 32)) != 0
}

/// One self-IPI (fixed, shorthand self), taken with interrupts on.
fn send() -> Check {
    let before = TAKEN.load(Ordering::Acquire);
    hw::wrmsr_checked(msr::ICR, u64::from(VECTOR) | 1 << 18).map_err(|f| detail!("wrmsr ICR raised {f}"))?;
    hw::interrupt_window(hw::tsc_hz() / 100, || TAKEN.load(Ordering::Acquire) > before);
    fail_unless(TAKEN.load(Ordering::Acquire) > before, detail!("the self-IPI was not taken in 10 ms"))
}

/// With the assist page enabled (by the caller): the first interrupt comes
/// with `NoEoiRequired`, its handler writes no EOI, and the vector is out of
/// service at the next exit; the same vector again is delivered (it would
/// not be while in service), assisted again.
pub fn check(c: &mut Checks) {
    hw::lapic_enable();
    let first = send().and_then(|_| {
        let assisted = ASSISTED.load(Ordering::Relaxed);
        fail_unless(assisted == 1, detail!("{assisted} of 1 interrupts came with NoEoiRequired"))?;
        // The ISR read is an exit: the EOI the handler did is done by now.
        fail_unless(!in_service(), detail!("the vector is still in service"))
    });
    c.require("EOI assist: NoEoiRequired set, no EOI written, the vector out of service (10.3.5)", first);
    let next = send().and_then(|_| {
        let (taken, assisted) = (TAKEN.load(Ordering::Relaxed), ASSISTED.load(Ordering::Relaxed));
        fail_unless(taken == 2 && assisted == 2, detail!("{taken} taken, {assisted} assisted"))
    });
    c.require("EOI assist: the same vector delivered again, assisted", next);
}
