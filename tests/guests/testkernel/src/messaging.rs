//! `tests=messaging role=<alpha|beta|gamma>`: HvPostMessage and
//! HvSignalEvent between partitions (TLFS 11.11), through the ports and
//! connections of `tests/manifests/messaging.toml`:
//!
//! - alpha posts "ping from alpha" to beta (connection 0x10; refused with
//!   `INVALID_SYNIC_STATE` until beta's SynIC is on), waits for beta's
//!   "pong from beta" in its SINT2 slot, signals beta's event flag
//!   (connection 0x11, flag 1), waits for beta's flag (connection 0x13),
//!   fires its monitored notifications (`monitor.rs`; the monitor page at
//!   `monitor=<gpa>`), one of which signals beta's flag 3,
//!   checks every refusal of its own connections, then posts to beta, whose
//!   slot still holds the ping, until the port's queue is full
//!   (`INSUFFICIENT_BUFFERS`), and signals flag 2 to say so; once beta says
//!   it masked SINT3, a signal is `INVALID_SYNIC_STATE`;
//! - beta waits for the ping (and keeps it in its slot), answers, waits for
//!   alpha's flag 1, the monitored notification's flag 3 (then finds
//!   alpha's parameters in its own view of the monitor page, `monitor=`)
//!   and flag 2 (then finds no other flag from the monitor page), finds
//!   `MessagePending` in its busy slot, after EOM
//!   receives the first message alpha posted into the full queue, then
//!   masks SINT3 and tells alpha;
//! - gamma holds no connection: alpha's connection IDs are
//!   `INVALID_CONNECTION_ID` for it.
//!
//! SINT2 (messages) and SINT3 (events) interrupt on their own vectors with
//! auto-EOI; each guest prints what it received (type, size, payload, port,
//! vector and interrupts, flags), one `testkernel: messaging:` line each.

use crate::hw::hv::{self, Page};
use crate::hw::{self};
use crate::println;
use crate::tlfs_suite::hypercall_page;
use core::sync::atomic::{AtomicU64, Ordering};
use guest_testkernel::tlfs::{Control, Outcome, monitor, msr};
use guest_testkernel::{Detail, detail, option};

const POST_MESSAGE: u16 = 0x005c;
const SIGNAL_EVENT: u16 = 0x005d;

/// TLFS Appendix B.
pub(crate) const SUCCESS: u16 = 0;
pub(crate) const INVALID_PARAMETER: u16 = 5;
const INVALID_PORT_ID: u16 = 0x11;
pub(crate) const INVALID_CONNECTION_ID: u16 = 0x12;
pub(crate) const INSUFFICIENT_BUFFERS: u16 = 0x13;
pub(crate) const INVALID_SYNIC_STATE: u16 = 0x18;

pub(crate) fn name(status: u16) -> &'static str {
    match status {
        SUCCESS => "SUCCESS",
        INVALID_PARAMETER => "INVALID_PARAMETER",
        6 => "ACCESS_DENIED",
        INVALID_PORT_ID => "INVALID_PORT_ID",
        INVALID_CONNECTION_ID => "INVALID_CONNECTION_ID",
        INSUFFICIENT_BUFFERS => "INSUFFICIENT_BUFFERS",
        INVALID_SYNIC_STATE => "INVALID_SYNIC_STATE",
        _ => "?",
    }
}

/// The SINTs and their vectors.
pub(crate) const MESSAGES: usize = 2;
pub(crate) const EVENTS: usize = 3;
pub const MESSAGE_VECTOR: u8 = 0xd4;
pub const EVENT_VECTOR: u8 = 0xd5;

pub(crate) static MESSAGE_INTERRUPTS: AtomicU64 = AtomicU64::new(0);
pub(crate) static EVENT_INTERRUPTS: AtomicU64 = AtomicU64::new(0);

/// The trap handler's hook: true if `vector` was one of these tests'.
/// Auto-EOI: no EOI is written.
pub fn interrupt(vector: u64) -> bool {
    if vector == u64::from(MESSAGE_VECTOR) {
        MESSAGE_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
        return true;
    }
    if vector == u64::from(EVENT_VECTOR) {
        EVENT_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
        return true;
    }
    false
}

/// The partitions' connections (messaging.toml).
const ALPHA_TO_BETA: u32 = 0x10;
pub(crate) const ALPHA_EVENTS: u32 = 0x11;
const ALPHA_MONITOR: u32 = 0x12;
const BETA_TO_ALPHA: u32 = 0x10;
const BETA_EVENTS: u32 = 0x13;
/// The ports' IDs, which the messages carry as origin.
const PORT_OF_ALPHA: u64 = 0x20;
const PORT_OF_BETA: u64 = 0x20;
/// Event flags: beta's port starts at flag 5, alpha's at 10.
pub(crate) const BETA_BASE_FLAG: u32 = 5;
const ALPHA_BASE_FLAG: u32 = 10;

const PING: &[u8] = b"ping from alpha";
const PONG: &[u8] = b"pong from beta";
const MASKED: &[u8] = b"SINT3 masked";

/// How long a guest waits for the other (seconds of TSC): the partitions
/// start one after the other under a slow emulator.
const WAIT_SECONDS: u64 = 60;

pub(crate) type Result<T> = core::result::Result<T, Detail>;

pub(crate) fn wrmsr(what: &str, number: u32, value: u64) -> Result<()> {
    hw::wrmsr_checked(number, value).map_err(|f| detail!("wrmsr {what} := {value:#x} raised {f}"))
}

/// HvPostMessage from the input page: its status.
fn post_raw(connection_id: u32, reserved: u32, message_type: u32, size: u32, payload: &[u8]) -> Result<u16> {
    let mut block = [0u8; 256];
    block[0..4].copy_from_slice(&connection_id.to_le_bytes());
    block[4..8].copy_from_slice(&reserved.to_le_bytes());
    block[8..12].copy_from_slice(&message_type.to_le_bytes());
    block[12..16].copy_from_slice(&size.to_le_bytes());
    block[16..16 + payload.len()].copy_from_slice(payload);
    Page::Input.write(0, &block);
    let r = hv::hypercall(Control::new(POST_MESSAGE).0, Page::Input.addr(), 0)
        .map_err(|f| detail!("HvPostMessage raised {f}"))?;
    Ok(Outcome::from_rax(r.rax).status)
}

pub(crate) fn post(connection_id: u32, message_type: u32, payload: &[u8]) -> Result<u16> {
    post_raw(connection_id, 0, message_type, payload.len() as u32, payload)
}

/// HvSignalEvent as a fast call: its status.
pub(crate) fn signal_raw(rdx: u64) -> Result<u16> {
    let r =
        hv::hypercall(Control::new(SIGNAL_EVENT).fast().0, rdx, 0).map_err(|f| detail!("HvSignalEvent raised {f}"))?;
    Ok(Outcome::from_rax(r.rax).status)
}

pub(crate) fn signal(connection_id: u32, flag: u16) -> Result<u16> {
    signal_raw(u64::from(connection_id) | u64::from(flag) << 32)
}

/// A call's status must be `want`; prints the line either way.
fn expect(what: &str, status: Result<u16>, want: u16) -> Result<()> {
    let status = status?;
    println!("testkernel: messaging: {what}: {}", name(status));
    if status == want {
        Ok(())
    } else {
        Err(detail!("{what}: got {} ({status:#x}), expected {}", name(status), name(want)))
    }
}

/// SINT2 and SINT3 on their vectors with auto-EOI, then the SIEF and SIM
/// pages and SCONTROL (a message waiting for the page arrives with SINT2
/// already unmasked).
pub(crate) fn enable() -> Result<()> {
    hypercall_page()?;
    hw::lapic_enable();
    let auto_eoi = 1 << 17;
    wrmsr("SINT2", msr::SINT0 + MESSAGES as u32, auto_eoi | u64::from(MESSAGE_VECTOR))?;
    wrmsr("SINT3", msr::SINT0 + EVENTS as u32, auto_eoi | u64::from(EVENT_VECTOR))?;
    wrmsr("SIEFP", msr::SIEFP, Page::Siefp.addr() | msr::PAGE_ENABLE)?;
    wrmsr("SIMP", msr::SIMP, Page::Simp.addr() | msr::PAGE_ENABLE)?;
    wrmsr("SCONTROL", msr::SCONTROL, 1)
}

pub(crate) fn tsc_hz() -> u64 {
    hw::rdmsr_checked(msr::TSC_FREQUENCY).unwrap_or(0).max(1_000_000)
}

/// A message in SINT `n`'s slot.
pub(crate) struct Slot {
    pub message_type: u32,
    pub size: u8,
    pub flags: u8,
    pub origin: u64,
    pub payload: [u8; 240],
}

pub(crate) fn slot(n: usize) -> Slot {
    let at = n * 256;
    let head = Page::Simp.read_u64(at);
    let mut payload = [0; 240];
    Page::Simp.read(at + 16, &mut payload);
    Slot {
        message_type: head as u32,
        size: (head >> 32) as u8,
        flags: (head >> 40) as u8,
        origin: Page::Simp.read_u64(at + 8),
        payload,
    }
}

/// Waits, interrupts on, until SINT `n`'s slot holds a message.
fn wait_message(n: usize) -> Result<Slot> {
    hw::interrupt_window(WAIT_SECONDS * tsc_hz(), || Page::Simp.read_u32(n * 256) != 0);
    let s = slot(n);
    if s.message_type == 0 {
        return Err(detail!("no message in SINT{n}'s slot after {WAIT_SECONDS} s"));
    }
    println!(
        "testkernel: messaging: message type {:#x} size {} port {:#x} flags {:#x} on SINT{n} vector {:#x} ({} interrupts)",
        s.message_type,
        s.size,
        s.origin,
        s.flags,
        MESSAGE_VECTOR,
        MESSAGE_INTERRUPTS.load(Ordering::Relaxed)
    );
    // The payload as text if it is printable, else in hex.
    let payload = &s.payload[..usize::from(s.size).min(32)];
    match core::str::from_utf8(payload) {
        Ok(text) if text.bytes().all(|b| (0x20..0x7f).contains(&b)) => {
            println!("testkernel: messaging: payload \"{text}\"")
        }
        _ => {
            let mut hex = guest_testkernel::Text::<80>::new();
            for b in payload {
                let _ = core::fmt::Write::write_fmt(&mut hex, format_args!("{b:02x}"));
            }
            println!("testkernel: messaging: payload {}", hex.as_str());
        }
    }
    Ok(s)
}

/// The guest empties the slot and writes EOM (TLFS 11.10.3).
pub(crate) fn done_with(n: usize) -> Result<()> {
    Page::Simp.write(n * 256, &[0; 4]);
    wrmsr("EOM", msr::EOM, 0)
}

pub(crate) fn flag_set(sint: usize, flag: u32) -> bool {
    let mut byte = [0u8];
    Page::Siefp.read(sint * 256 + flag as usize / 8, &mut byte);
    byte[0] & (1 << (flag % 8)) != 0
}

/// Waits, interrupts on, for event flag `flag` of SINT3 and clears it.
fn wait_flag(flag: u32) -> Result<()> {
    hw::interrupt_window(WAIT_SECONDS * tsc_hz(), || flag_set(EVENTS, flag));
    if !flag_set(EVENTS, flag) {
        return Err(detail!("event flag {flag} of SINT{EVENTS} not set after {WAIT_SECONDS} s"));
    }
    let at = EVENTS * 256 + flag as usize / 8;
    let mut byte = [0u8];
    Page::Siefp.read(at, &mut byte);
    Page::Siefp.write(at, &[byte[0] & !(1 << (flag % 8))]);
    println!(
        "testkernel: messaging: received event flag {flag} on SINT{EVENTS} vector {:#x} ({} interrupts)",
        EVENT_VECTOR,
        EVENT_INTERRUPTS.load(Ordering::Relaxed)
    );
    Ok(())
}

pub(crate) fn check(cond: bool, why: Detail) -> Result<()> {
    if cond { Ok(()) } else { Err(why) }
}

fn expect_message(s: &Slot, message_type: u32, port: u64, payload: &[u8]) -> Result<()> {
    check(s.message_type == message_type, detail!("type {:#x}, expected {message_type:#x}", s.message_type))?;
    check(usize::from(s.size) == payload.len(), detail!("size {}, expected {}", s.size, payload.len()))?;
    check(s.origin == port, detail!("origin {:#x}, expected port {port:#x}", s.origin))?;
    check(&s.payload[..payload.len()] == payload, detail!("payload differs"))?;
    check(MESSAGE_INTERRUPTS.load(Ordering::Relaxed) > 0, detail!("no interrupt on vector {MESSAGE_VECTOR:#x}"))
}

pub fn run(cmdline: &str) -> Result<()> {
    match option(cmdline, "role") {
        Some("alpha") => alpha(monitor::page_option(cmdline, "monitor")?),
        Some("beta") => beta(monitor::page_option(cmdline, "monitor")?),
        Some("gamma") => gamma(),
        Some("ping") => ping(),
        Some("pong") => pong(),
        other => Err(detail!("role={other:?}: expected alpha, beta, gamma, ping or pong")),
    }
}

// ---- The benchmark (messaging-bench.toml) ---------------------------------

/// ping's connections: to its own event port (flag 0 of its SINT3), to
/// pong's (flag 0 of pong's SINT3); pong's: to ping's flag 1, and a message
/// connection to say it is ready.
const PING_SELF: u32 = 0x30;
const PING_TO_PONG: u32 = 0x31;
const PONG_TO_PING: u32 = 0x32;
const PONG_READY: u32 = 0x33;

/// Round trips timed per figure.
pub const ROUNDS: u32 = 100;

/// Waits, halting between interrupts, until flag `flag` of SINT3 is set,
/// and clears it.
fn halt_for_flag(flag: u32) {
    while !flag_set(EVENTS, flag) {
        hw::halt_once();
    }
    let at = EVENTS * 256 + flag as usize / 8;
    let mut byte = [0u8];
    Page::Siefp.read(at, &mut byte);
    Page::Siefp.write(at, &[byte[0] & !(1 << (flag % 8))]);
}

fn figure(what: &str, samples: &guest_testkernel::bench::Samples) {
    println!("testkernel: {}", guest_testkernel::bench::line(what, samples).as_str());
}

/// Times HvSignalEvent round trips: from the signal until the caller, halted
/// in between, finds the flag set: to its own partition (its own port), and
/// to pong, which answers on ping's port.
fn ping() -> Result<()> {
    enable()?;
    let ready = wait_message(MESSAGES)?;
    check(ready.message_type == 1, detail!("pong's ready message has type {:#x}", ready.message_type))?;
    done_with(MESSAGES)?;
    let mut own = guest_testkernel::bench::Samples::new();
    for _ in 0..ROUNDS {
        let start = hw::rdtsc();
        expect_quiet(signal(PING_SELF, 0))?;
        halt_for_flag(0);
        own.add(hw::rdtsc().wrapping_sub(start));
    }
    let mut other = guest_testkernel::bench::Samples::new();
    for _ in 0..ROUNDS {
        let start = hw::rdtsc();
        expect_quiet(signal(PING_TO_PONG, 0))?;
        halt_for_flag(1);
        other.add(hw::rdtsc().wrapping_sub(start));
    }
    figure("hvsignalevent round trip to a VP of the same partition", &own);
    figure("hvsignalevent round trip to a VP of another partition", &other);
    Ok(())
}

/// Says it is ready, then answers each of ping's events with one of its own.
fn pong() -> Result<()> {
    enable()?;
    expect_quiet(post(PONG_READY, 1, b"ready"))?;
    for _ in 0..ROUNDS {
        halt_for_flag(0);
        expect_quiet(signal(PONG_TO_PING, 0))?;
    }
    Ok(())
}

/// A call that must succeed, without a line for it.
fn expect_quiet(status: Result<u16>) -> Result<()> {
    let status = status?;
    check(status == SUCCESS, detail!("got {} ({status:#x})", name(status)))
}

/// `monitor_page` is the GPA of alpha's view of the monitor page.
fn alpha(monitor_page: u64) -> Result<()> {
    enable()?;
    // Until beta has turned its SynIC on, a post to it is refused (TLFS
    // 11.11.1): tried again every millisecond.
    let mut refused = 0;
    let first = loop {
        let status = post(ALPHA_TO_BETA, 0x41, PING)?;
        if status != INVALID_SYNIC_STATE || refused == WAIT_SECONDS * 1000 {
            break status;
        }
        refused += 1;
        hw::interrupt_window(tsc_hz() / 1000, || false);
    };
    println!("testkernel: messaging: beta's SynIC not yet on: {refused} posts refused with INVALID_SYNIC_STATE");
    expect("post to beta", Ok(first), SUCCESS)?;
    let pong = wait_message(MESSAGES)?;
    expect_message(&pong, 0x42, PORT_OF_ALPHA, PONG)?;
    done_with(MESSAGES)?;
    expect("signal beta's flag 1", signal(ALPHA_EVENTS, 1), SUCCESS)?;
    wait_flag(ALPHA_BASE_FLAG + 1)?;
    check(EVENT_INTERRUPTS.load(Ordering::Relaxed) > 0, detail!("no interrupt on vector {EVENT_VECTOR:#x}"))?;
    // beta, having signalled, waits for the monitored notification's flag
    // with SINT3 unmasked; it masks SINT3 only after flag 2, sent below.
    crate::monitor::alpha(monitor_page)?;
    // The refusals (TLFS 11.11.1, 11.11.2).
    expect("post on connection 0x99", post(0x99, 1, b"x"), INVALID_CONNECTION_ID)?;
    expect("post to an event port", post(ALPHA_EVENTS, 1, b"x"), INVALID_PORT_ID)?;
    expect("post to a monitor port", post(ALPHA_MONITOR, 1, b"x"), INVALID_PORT_ID)?;
    expect("signal a message port", signal(ALPHA_TO_BETA, 0), INVALID_PORT_ID)?;
    expect("signal flag 4 of 4", signal(ALPHA_EVENTS, 4), INVALID_PARAMETER)?;
    expect("signal with RsvdZ set", signal_raw(u64::from(ALPHA_EVENTS) | 1 << 48), INVALID_PARAMETER)?;
    expect("post 241 bytes", post_raw(ALPHA_TO_BETA, 0, 1, 241, &[0; 240]), INVALID_PARAMETER)?;
    expect("post with RsvdZ set", post_raw(ALPHA_TO_BETA, 1, 1, 1, b"x"), INVALID_PARAMETER)?;
    expect("post type 0", post(ALPHA_TO_BETA, 0, b"x"), INVALID_PARAMETER)?;
    expect("post type 0x80000001", post(ALPHA_TO_BETA, 0x8000_0001, b"x"), INVALID_PARAMETER)?;
    // Beta keeps the ping in its slot: the next message waits in its VID
    // for EOM, the port's queue fills, and then posts are refused.
    let mut posts = 0;
    let full = loop {
        let status = post(ALPHA_TO_BETA, 0x43 + posts, &[posts as u8; 8])?;
        posts += 1;
        if status != SUCCESS || posts == 16 {
            break status;
        }
    };
    println!("testkernel: messaging: post {posts} to beta's busy slot: {}", name(full));
    check(full == INSUFFICIENT_BUFFERS, detail!("{posts} posts and no INSUFFICIENT_BUFFERS"))?;
    expect("signal beta's flag 2", signal(ALPHA_EVENTS, 2), SUCCESS)?;
    // Beta masks its SINT3 and says so: a signal is refused, nothing set.
    let masked = wait_message(MESSAGES)?;
    expect_message(&masked, 0x44, PORT_OF_ALPHA, MASKED)?;
    done_with(MESSAGES)?;
    expect("signal beta's masked SINT3", signal(ALPHA_EVENTS, 3), INVALID_SYNIC_STATE)
}

/// `monitor_page` is the GPA of beta's view of the monitor page.
fn beta(monitor_page: u64) -> Result<()> {
    enable()?;
    let ping = wait_message(MESSAGES)?;
    expect_message(&ping, 0x41, PORT_OF_BETA, PING)?;
    // The ping stays in the slot until alpha filled the queue.
    expect("post to alpha", post(BETA_TO_ALPHA, 0x42, PONG), SUCCESS)?;
    wait_flag(BETA_BASE_FLAG + 1)?;
    check(EVENT_INTERRUPTS.load(Ordering::Relaxed) > 0, detail!("no interrupt on vector {EVENT_VECTOR:#x}"))?;
    expect("signal alpha's flag 1", signal(BETA_EVENTS, 1), SUCCESS)?;
    // alpha's monitored notification, then flag 2 once alpha is done with
    // the monitor page.
    wait_flag(crate::monitor::BETA_FLAG)?;
    crate::monitor::beta_signalled(monitor_page)?;
    wait_flag(BETA_BASE_FLAG + 2)?;
    crate::monitor::beta_quiet()?;
    let busy = slot(MESSAGES);
    println!("testkernel: messaging: busy slot: type {:#x} flags {:#x}", busy.message_type, busy.flags);
    check(busy.message_type == 0x41 && busy.flags & 1 != 0, detail!("MessagePending is not set in the busy slot"))?;
    let seen = MESSAGE_INTERRUPTS.load(Ordering::Relaxed);
    done_with(MESSAGES)?;
    let next = wait_message(MESSAGES)?;
    check(MESSAGE_INTERRUPTS.load(Ordering::Relaxed) > seen, detail!("no interrupt for the message after EOM"))?;
    expect_message(&next, 0x43, PORT_OF_BETA, &[0; 8])?;
    // SINT3 masked: it takes no events (TLFS 11.11.2), which alpha checks.
    let auto_eoi_masked = 1 << 17 | 1 << 16;
    wrmsr("SINT3", msr::SINT0 + EVENTS as u32, auto_eoi_masked | u64::from(EVENT_VECTOR))?;
    expect("post to alpha that SINT3 is masked", post(BETA_TO_ALPHA, 0x44, MASKED), SUCCESS)
}

fn gamma() -> Result<()> {
    enable()?;
    expect("post on alpha's connection 0x10", post(ALPHA_TO_BETA, 0x41, b"intruder"), INVALID_CONNECTION_ID)?;
    expect("signal on alpha's connection 0x11", signal(ALPHA_EVENTS, 1), INVALID_CONNECTION_ID)?;
    expect("post on beta's connection 0x13", post(BETA_EVENTS, 0x41, b"intruder"), INVALID_CONNECTION_ID)
}
