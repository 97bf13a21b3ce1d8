//! Fidelity: NMIs (SDM Vol. 3A §6.7.1 "Handling Multiple NMIs", §11.6.1
//! "Interrupt Command Register", §11.5.1 "Local Vector Table"). An NMI
//! sent through the ICR reaches vector 2 once, on the VP it names; a
//! second NMI raised inside the handler waits for the handler's IRET and
//! then arrives exactly once.

use super::{Outcome, checks};
use crate::ap;
use crate::checks::{Check, fail_unless};
use crate::hw;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use guest_testkernel::smp::lapic;
use guest_testkernel::{Detail, detail};

const NMI_VECTOR: u64 = 2;
/// ICR: delivery mode NMI (bits 10:8 = 100b), level assert, physical
/// destination without shorthand (Self is not valid with NMI: SDM Table
/// 11-3, as KVM's tests send a self-NMI).
const ICR_NMI: u32 = 0b100 << 8 | 1 << 14;
/// The VP the other-VP check starts and aims at.
const OTHER: u8 = 1;
/// PIT ticks (10 ms) to wait for an NMI, and to linger for a duplicate.
const WAIT_TICKS: u64 = 50;
const LINGER_TICKS: u64 = 5;
/// Exits the handler makes (port reads) while the second NMI must wait.
const HANDLER_EXITS: u32 = 64;

/// The test runs: vector 2 is the test's, not a failure.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// NMIs taken, by APIC ID (0 and 1).
static TAKEN: [AtomicU32; 2] = [const { AtomicU32::new(0) }; 2];
static DEPTH: AtomicU32 = AtomicU32::new(0);
/// An NMI arrived while the handler of another ran.
static NESTED: AtomicBool = AtomicBool::new(false);
/// The next NMI's handler sends one more to its own VP before returning.
static RESEND: AtomicBool = AtomicBool::new(false);
/// The next NMI's handler has the other VP send one to it instead.
static RESEND_REMOTE: AtomicBool = AtomicBool::new(false);
/// NMIs the BSP took while the resending handler still ran.
static TAKEN_INSIDE: AtomicU32 = AtomicU32::new(0);
static AP_READY: AtomicBool = AtomicBool::new(false);
/// Asked of VP 1: send the BSP an NMI; done.
static AP_REQUEST: AtomicBool = AtomicBool::new(false);
static AP_SENT: AtomicBool = AtomicBool::new(false);
static BSP_ID: AtomicU32 = AtomicU32::new(0);
/// Port reads (exits) the handler makes at most while VP 1 sends.
const REMOTE_EXITS: u32 = 20_000;

fn apic_id() -> u8 {
    lapic::id(hw::read32(lapic::BASE + lapic::ID))
}

fn send_nmi(destination: u8) -> Result<(), Detail> {
    ap::send(guest_testkernel::smp::Icr { low: ICR_NMI, high: u32::from(destination) << 24 })
}

/// The trap handler's share: vector 2 while the test runs.
pub fn trap(vector: u64) -> bool {
    if vector != NMI_VECTOR || !ACTIVE.load(Ordering::Relaxed) {
        return false;
    }
    if DEPTH.fetch_add(1, Ordering::AcqRel) > 0 {
        NESTED.store(true, Ordering::Release);
    }
    let id = usize::from(apic_id()).min(TAKEN.len() - 1);
    let before = TAKEN[id].fetch_add(1, Ordering::AcqRel) + 1;
    if RESEND.swap(false, Ordering::AcqRel) {
        let sent = send_nmi(apic_id()).is_ok();
        // Exits and time in which a VMM that ignores NMI blocking would
        // deliver it here.
        for _ in 0..HANDLER_EXITS {
            hw::inb(0x61);
        }
        let inside = TAKEN[id].load(Ordering::Acquire) - before;
        TAKEN_INSIDE.store(if sent { inside } else { u32::MAX }, Ordering::Release);
    } else if RESEND_REMOTE.swap(false, Ordering::AcqRel) {
        // VP 1 sends it (woken by a fixed IPI) while this handler runs on.
        AP_REQUEST.store(true, Ordering::Release);
        let woken = ap::send(guest_testkernel::smp::Icr::fixed(OTHER, guest_testkernel::smp::IPI_VECTOR)).is_ok();
        let mut exits = 0;
        while woken && !AP_SENT.load(Ordering::Acquire) && exits < REMOTE_EXITS {
            hw::inb(0x61);
            exits += 1;
        }
        for _ in 0..HANDLER_EXITS {
            hw::inb(0x61);
        }
        let inside = TAKEN[id].load(Ordering::Acquire) - before;
        TAKEN_INSIDE.store(if AP_SENT.load(Ordering::Acquire) { inside } else { u32::MAX }, Ordering::Release);
    }
    DEPTH.fetch_sub(1, Ordering::AcqRel);
    true
}

fn taken(id: u8) -> u32 {
    TAKEN[usize::from(id)].load(Ordering::Acquire)
}

/// Waits (halting, PIT on) until `id` took `count` NMIs, then lingers;
/// the count at the end.
fn wait_for(id: u8, count: u32) -> u32 {
    ap::wait(WAIT_TICKS, || taken(id) >= count);
    ap::wait(LINGER_TICKS, || false);
    taken(id)
}

pub fn run(magic: u32, info: u64) -> Outcome {
    let mut c = checks();
    ACTIVE.store(true, Ordering::Release);
    ap::enable_lapic();
    hw::start_timer();
    let bsp = apic_id();
    c.require("ICR NMI to its own APIC ID: vector 2, once (SDM 11.6.1)", self_nmi(bsp));
    c.require("NMI sent in the NMI handler waits for its IRET, then once (SDM 6.7.1)", blocked_until_iret(bsp));
    let started = other_vp(magic, info, bsp);
    let up = started.is_ok() || AP_READY.load(Ordering::Acquire);
    c.require("ICR NMI to the other VP: it alone takes it, once (SDM 11.6.1)", started);
    if up {
        c.require("NMI from the other VP in the NMI handler waits for IRET (SDM 6.7.1)", remote_until_iret(bsp));
    } else {
        c.fail("NMI from the other VP in the NMI handler waits for IRET (SDM 6.7.1)", detail!("VP 1 is not up"));
    }
    c.info("LINT1 programmed as NMI", format_args!("not checked: nothing in the VID drives LINT1"));
    hw::stop_timer();
    ACTIVE.store(false, Ordering::Release);
    c.finish()
}

fn self_nmi(bsp: u8) -> Check {
    let before = taken(bsp);
    send_nmi(bsp)?;
    let after = wait_for(bsp, before + 1);
    fail_unless(after == before + 1, detail!("{} NMIs taken", after - before))
}

fn blocked_until_iret(bsp: u8) -> Check {
    let before = taken(bsp);
    NESTED.store(false, Ordering::Release);
    TAKEN_INSIDE.store(0, Ordering::Release);
    RESEND.store(true, Ordering::Release);
    send_nmi(bsp)?;
    let after = wait_for(bsp, before + 2);
    RESEND.store(false, Ordering::Release);
    match TAKEN_INSIDE.load(Ordering::Acquire) {
        u32::MAX => return Err(detail!("the handler could not send the second NMI")),
        0 => {}
        n => return Err(detail!("{n} before the IRET")),
    }
    if NESTED.load(Ordering::Acquire) {
        return Err(detail!("an NMI nested in the handler"));
    }
    fail_unless(after == before + 2, detail!("{} NMIs taken, expected 2", after - before))
}

/// The second NMI comes from VP 1 while the handler of the first runs.
fn remote_until_iret(bsp: u8) -> Check {
    let before = taken(bsp);
    NESTED.store(false, Ordering::Release);
    TAKEN_INSIDE.store(0, Ordering::Release);
    AP_SENT.store(false, Ordering::Release);
    BSP_ID.store(u32::from(bsp), Ordering::Release);
    RESEND_REMOTE.store(true, Ordering::Release);
    send_nmi(bsp)?;
    let after = wait_for(bsp, before + 2);
    RESEND_REMOTE.store(false, Ordering::Release);
    match TAKEN_INSIDE.load(Ordering::Acquire) {
        u32::MAX => return Err(detail!("VP 1 did not send the second NMI")),
        0 => {}
        n => return Err(detail!("{n} before the IRET")),
    }
    if NESTED.load(Ordering::Acquire) {
        return Err(detail!("an NMI nested in the handler"));
    }
    fail_unless(after == before + 2, detail!("{} NMIs taken, expected 2", after - before))
}

/// VP 1: takes NMIs (the trap handler counts them) and sends the BSP one
/// when asked (and woken by an IPI), halting in between for good.
extern "C" fn ap_entry(_slot: u32) -> ! {
    hw::load_idt();
    ap::enable_lapic();
    AP_READY.store(true, Ordering::Release);
    loop {
        if AP_REQUEST.swap(false, Ordering::AcqRel) {
            let bsp = BSP_ID.load(Ordering::Acquire) as u8;
            if send_nmi(bsp).is_ok() {
                AP_SENT.store(true, Ordering::Release);
            }
        }
        hw::halt_once();
    }
}

fn other_vp(magic: u32, info: u64, bsp: u8) -> Check {
    let vector = ap::prepare(magic, info, ap_entry)?;
    ap::start_one(OTHER, vector)?;
    ap::wait(ap::AP_WAIT_TICKS, || AP_READY.load(Ordering::Acquire));
    if !AP_READY.load(Ordering::Acquire) {
        return Err(detail!("VP {OTHER} did not start"));
    }
    let (before, bsp_before) = (taken(OTHER), taken(bsp));
    send_nmi(OTHER)?;
    let after = wait_for(OTHER, before + 1);
    if taken(bsp) != bsp_before {
        return Err(detail!("the sender took it too"));
    }
    fail_unless(after == before + 1, detail!("VP {OTHER} took {} NMIs", after - before))
}
