//! `tests=testdev` (2 VPs, `tests/manifests/testdev.toml`): the SynIC
//! driven through QEMU's `hyperv-testdev` at port 0x3000, as kvm-unit-tests'
//! `hyperv_synic` and `hyperv_connections` drive it (a 32-bit `out` of
//! `conn << 24 | ctl << 16 | vp << 8 | sint`).
//!
//! - **SINT routes across VPs:** VP 1 sets SINT5 (its vector, EOI by the
//!   handler), SINT6 (auto-EOI) and SINT7 (polled) and halts; VP 0 creates
//!   routes to them and fires each: VP 1 takes SINT5's and SINT6's vectors
//!   (in service in the handler for SINT5 only), none for SINT7. A
//!   destroyed route fires no more.
//! - **Message echo:** a message connection to VP 0's SINT2 echoes what VP 0
//!   posts into its slot; with the slot kept busy the next post is taken
//!   and waits (`MessagePending` in the slot), a third is
//!   `INSUFFICIENT_BUFFERS`, and after EOM the waiting one arrives.
//! - **Event flags:** an event connection `conn` to VP 0's SINT3 sets flag
//!   `conn`: once, one interrupt; again while set, none; flag 1 of the
//!   one-flag port is `INVALID_PARAMETER`.
//! - **SynIC state:** VP 1's SynIC is on but has no SIM or SIEF page, so a
//!   post or a signal to it is `INVALID_SYNIC_STATE`, as is a signal to
//!   VP 0's SINT4 (masked).
//!
//! Every check prints a `testkernel: testdev:` line.

use crate::ap;
use crate::hw::hv::Page;
use crate::hw::{self, LAPIC_BASE};
use crate::messaging::{
    self, EVENT_INTERRUPTS, EVENTS, INSUFFICIENT_BUFFERS, INVALID_CONNECTION_ID, INVALID_PARAMETER,
    INVALID_SYNIC_STATE, MESSAGE_INTERRUPTS, MESSAGES, Result, SUCCESS, check, done_with, flag_set, post, signal, slot,
    wrmsr,
};
use crate::println;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use guest_testkernel::detail;
use guest_testkernel::tlfs::msr;

const PORT: u16 = 0x3000;

/// The device's requests (QEMU's `HV_TEST_DEV_*`).
const ROUTE_CREATE: u8 = 1;
const ROUTE_DESTROY: u8 = 2;
const ROUTE_SET_SINT: u8 = 3;
const MSG_CONN_CREATE: u8 = 4;
const MSG_CONN_DESTROY: u8 = 5;
const EVT_CONN_CREATE: u8 = 6;
const EVT_CONN_DESTROY: u8 = 7;

/// VP 1's SINTs and their vectors: (SINT, vector, auto-EOI, polled).
const ROUTES: [(u8, u8, bool, bool); 3] = [(5, 0xd6, false, false), (6, 0xd7, true, false), (7, 0xd8, false, true)];

/// Set once the test runs: before, its vectors are none of its business.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// VP 1 has set its SINTs and SCONTROL.
static READY: AtomicBool = AtomicBool::new(false);
/// Interrupts taken on each route's vector, and whether its ISR bit was
/// set in the handler.
static TAKEN: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
static IN_SERVICE: [AtomicBool; 3] = [const { AtomicBool::new(false) }; 3];

fn outl(value: u32) {
    // SAFETY: a port write the VID emulates.
    unsafe { core::arch::asm!("out dx, eax", in("dx") PORT, in("eax") value, options(nomem, nostack)) }
}

fn request(ctl: u8, conn: u8, vp: u8, sint: u8) {
    outl(u32::from(conn) << 24 | u32::from(ctl) << 16 | u32::from(vp) << 8 | u32::from(sint));
}

fn in_service(vector: u8) -> bool {
    let isr = hw::read32(LAPIC_BASE + 0x100 + 0x10 * u64::from(vector / 32));
    isr & (1 << (vector % 32)) != 0
}

/// The trap handler's share: VP 1's route vectors. True if `vector` was one.
pub fn interrupt(vector: u64) -> bool {
    if !ACTIVE.load(Ordering::Relaxed) {
        return false;
    }
    let Some(i) = ROUTES.iter().position(|r| u64::from(r.1) == vector) else { return false };
    IN_SERVICE[i].store(in_service(ROUTES[i].1), Ordering::Relaxed);
    if !ROUTES[i].2 {
        ap::lapic_write(guest_testkernel::smp::lapic::EOI, 0);
    }
    TAKEN[i].fetch_add(1, Ordering::Release);
    true
}

/// VP 1: its local APIC and SynIC (no pages: routes bring no message),
/// then halts for good with interrupts on.
extern "C" fn ap_entry(_slot: u32) -> ! {
    hw::load_idt();
    ap::enable_lapic();
    let mut ok = true;
    for (sint, vector, auto_eoi, polled) in ROUTES {
        let value = u64::from(vector) | u64::from(auto_eoi) << 17 | u64::from(polled) << 18;
        ok &= wrmsr("SINTn", msr::SINT0 + u32::from(sint), value).is_ok();
    }
    ok &= wrmsr("SCONTROL", msr::SCONTROL, 1).is_ok();
    if ok {
        READY.store(true, Ordering::Release);
    } else {
        println!("testkernel: testdev: VP 1 could not set its SynIC");
    }
    loop {
        hw::halt_once();
    }
}

/// Waits with interrupts on until `done()` or `ms` milliseconds of TSC.
fn wait(ms: u64, done: impl Fn() -> bool) -> bool {
    hw::interrupt_window(messaging::tsc_hz() / 1000 * ms, &done);
    done()
}

fn expect(what: &str, status: Result<u16>, want: u16) -> Result<()> {
    let status = status?;
    println!("testkernel: testdev: {what}: {}", messaging::name(status));
    check(status == want, detail!("{what}: got {}, expected {}", messaging::name(status), messaging::name(want)))
}

pub fn run(magic: u32, info: u64) -> Result<()> {
    ACTIVE.store(true, Ordering::Relaxed);
    messaging::enable()?;
    ap::enable_lapic();
    let vector = ap::prepare(magic, info, ap_entry)?;
    hw::start_timer();
    let started = ap::start_one(1, vector);
    ap::wait(ap::AP_WAIT_TICKS, || READY.load(Ordering::Acquire));
    hw::stop_timer();
    started?;
    check(READY.load(Ordering::Acquire), detail!("VP 1 did not set up its SynIC"))?;
    println!("testkernel: testdev: VP 1 up, SINT5, SINT6 (auto-EOI) and SINT7 (polled) set");
    routes()?;
    messages()?;
    events()?;
    synic_state()
}

fn routes() -> Result<()> {
    for (sint, ..) in ROUTES {
        request(ROUTE_CREATE, 0, 1, sint);
    }
    for (i, (sint, vector, auto_eoi, polled)) in ROUTES.into_iter().enumerate() {
        request(ROUTE_SET_SINT, 0, 1, sint);
        let taken = wait(if polled { 50 } else { 1000 }, || TAKEN[i].load(Ordering::Acquire) > 0);
        let n = TAKEN[i].load(Ordering::Acquire);
        if polled {
            println!("testkernel: testdev: route to VP 1 SINT{sint} (polled) fired from VP 0: {n} interrupts");
            check(!taken, detail!("a polled SINT interrupted"))?;
            continue;
        }
        let isr = IN_SERVICE[i].load(Ordering::Relaxed);
        println!(
            "testkernel: testdev: route to VP 1 SINT{sint} fired from VP 0: vector {vector:#x} taken {n} times, \
             in service: {isr}"
        );
        check(n == 1, detail!("SINT{sint}: {n} interrupts, expected 1"))?;
        check(isr != auto_eoi, detail!("SINT{sint}: in service {isr} with auto-EOI {auto_eoi}"))?;
    }
    // A destroyed route fires no more (the device ignores the request).
    request(ROUTE_DESTROY, 0, 1, 5);
    request(ROUTE_SET_SINT, 0, 1, 5);
    let late = wait(50, || TAKEN[0].load(Ordering::Acquire) > 1);
    println!("testkernel: testdev: destroyed route fired: {} interrupts", TAKEN[0].load(Ordering::Acquire));
    check(!late, detail!("a destroyed route still fires"))?;
    for (sint, ..) in &ROUTES[1..] {
        request(ROUTE_DESTROY, 0, 1, *sint);
    }
    Ok(())
}

fn wait_slot(message_type: u32, payload: &[u8], seen: u64) -> Result<()> {
    wait(1000, || Page::Simp.read_u32(MESSAGES * 256) != 0 && MESSAGE_INTERRUPTS.load(Ordering::Relaxed) > seen);
    let s = slot(MESSAGES);
    let n = MESSAGE_INTERRUPTS.load(Ordering::Relaxed) - seen;
    let text = core::str::from_utf8(&s.payload[..usize::from(s.size).min(32)]).unwrap_or("?");
    println!(
        "testkernel: testdev: echo in SINT2: type {:#x} size {} port {:#x} flags {:#x} \"{text}\" ({n} interrupts)",
        s.message_type, s.size, s.origin, s.flags
    );
    check(s.message_type == message_type, detail!("type {:#x}, expected {message_type:#x}", s.message_type))?;
    check(&s.payload[..payload.len()] == payload && usize::from(s.size) == payload.len(), detail!("payload"))?;
    check(n == 1, detail!("{n} interrupts for the echo, expected 1"))
}

fn messages() -> Result<()> {
    request(MSG_CONN_CREATE, 1, 0, MESSAGES as u8);
    let seen = MESSAGE_INTERRUPTS.load(Ordering::Relaxed);
    expect("post on echo connection 1", post(1, 0x51, b"echo one"), SUCCESS)?;
    wait_slot(0x51, b"echo one", seen)?;
    // The slot stays busy: the next echo waits, with MessagePending.
    expect("post while the slot is busy", post(1, 0x52, b"echo two"), SUCCESS)?;
    let busy = slot(MESSAGES);
    println!("testkernel: testdev: busy slot: type {:#x} flags {:#x}", busy.message_type, busy.flags);
    check(busy.message_type == 0x51 && busy.flags & 1 != 0, detail!("MessagePending is not set in the busy slot"))?;
    expect("post while one waits", post(1, 0x53, b"echo three"), INSUFFICIENT_BUFFERS)?;
    let seen = MESSAGE_INTERRUPTS.load(Ordering::Relaxed);
    done_with(MESSAGES)?;
    wait_slot(0x52, b"echo two", seen)?;
    done_with(MESSAGES)?;
    request(MSG_CONN_DESTROY, 1, 0, 0);
    expect("post on destroyed connection 1", post(1, 0x54, b"gone"), INVALID_CONNECTION_ID)
}

fn events() -> Result<()> {
    const CONN: u8 = 9;
    request(EVT_CONN_CREATE, CONN, 0, EVENTS as u8);
    let flag = u32::from(CONN);
    let seen = EVENT_INTERRUPTS.load(Ordering::Relaxed);
    expect("signal event connection 9", signal(flag, 0), SUCCESS)?;
    wait(1000, || flag_set(EVENTS, flag) && EVENT_INTERRUPTS.load(Ordering::Relaxed) > seen);
    let first = EVENT_INTERRUPTS.load(Ordering::Relaxed) - seen;
    println!("testkernel: testdev: flag 9 of SINT3 set: {}, {first} interrupts", flag_set(EVENTS, flag));
    check(flag_set(EVENTS, flag) && first == 1, detail!("flag 9: set {}, {first} interrupts", flag_set(EVENTS, flag)))?;
    expect("signal again while the flag is set", signal(flag, 0), SUCCESS)?;
    wait(50, || EVENT_INTERRUPTS.load(Ordering::Relaxed) > seen + 1);
    let again = EVENT_INTERRUPTS.load(Ordering::Relaxed) - seen - 1;
    println!("testkernel: testdev: flag already set: {again} more interrupts");
    check(again == 0, detail!("{again} interrupts for a flag already set"))?;
    expect("signal flag 1 of the one-flag port", signal(flag, 1), INVALID_PARAMETER)?;
    request(EVT_CONN_DESTROY, CONN, 0, 0);
    expect("signal destroyed event connection 9", signal(flag, 0), INVALID_CONNECTION_ID)
}

fn synic_state() -> Result<()> {
    request(MSG_CONN_CREATE, 2, 1, 5);
    request(EVT_CONN_CREATE, 10, 1, 5);
    request(EVT_CONN_CREATE, 11, 0, 4);
    expect("post to VP 1 without a SIM page", post(2, 0x55, b"lost"), INVALID_SYNIC_STATE)?;
    expect("signal VP 1 without a SIEF page", signal(10, 0), INVALID_SYNIC_STATE)?;
    expect("signal VP 0's masked SINT4", signal(11, 0), INVALID_SYNIC_STATE)?;
    request(MSG_CONN_DESTROY, 2, 0, 0);
    request(EVT_CONN_DESTROY, 10, 0, 0);
    request(EVT_CONN_DESTROY, 11, 0, 0);
    Ok(())
}
