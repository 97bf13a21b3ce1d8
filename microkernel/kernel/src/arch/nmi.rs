//! Non-maskable interrupts: taken in every context, counted, logged rarely.
//!
//! NMIs are normal on real machines (watchdogs, other CPUs, platform
//! errors). The handler runs on its own IST stack and touches no lock, no
//! GS base, no MSR and no console, so it may interrupt any instruction of
//! ring 0: the syscall entry before SWAPGS, a holder of the kernel lock,
//! the VMX world switch with the guest's MSRs loaded. It only counts; the
//! counts are printed from ordinary kernel context, at most every
//! [`LOG_INTERVAL_TICKS`].
//!
//! While a guest runs, an NMI ends the run (both backends intercept it):
//! SVM leaves it pending (GIF is clear after #VMEXIT) and takes it through
//! the IDT at STGI; VMX consumes it with the exit and leaves NMIs blocked,
//! so the kernel counts it and unblocks them with an IRETQ, as the
//! handler's would ([`deliver_after_vm_exit`]).
//!
//! The boot option `test=nmi` makes the kernel send itself NMIs for the
//! whole run ([`start_test`]).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use platform::println;

/// At most one NMI log line per this many ticks (5 s).
const LOG_INTERVAL_TICKS: u64 = 5 * super::apic::TICK_HZ;

static FROM_USER: AtomicU64 = AtomicU64::new(0);
static FROM_KERNEL: AtomicU64 = AtomicU64::new(0);
static IN_GUEST: AtomicU64 = AtomicU64::new(0);
/// The total when the last line was printed, and the tick it was printed.
static LOGGED_TOTAL: AtomicU64 = AtomicU64::new(0);
static LOGGED_TICK: AtomicU64 = AtomicU64::new(0);

/// The NMI handler proper (vector 2, from the IDT): counts the NMI by the
/// privilege level it interrupted.
pub fn on_nmi(from_user: bool) {
    let counter = if from_user { &FROM_USER } else { &FROM_KERNEL };
    counter.fetch_add(1, Relaxed);
}

/// An NMI ended a guest's run (SVM exit code NMI; the handler runs at STGI).
pub fn note_vm_exit() {
    IN_GUEST.fetch_add(1, Relaxed);
}

/// An NMI ended a VMX guest's run: the exit consumed it and NMIs stay
/// blocked until an IRET (SDM Vol. 3C §27.1). Counts it as the handler
/// would, then unblocks NMIs with an IRETQ to the next instruction on the
/// current stack. (Running the IST handler with `int 2` instead would
/// expose its stack to a nested NMI wherever the CPU did not block them.)
pub fn deliver_after_vm_exit() {
    // The NMI may be the one that stops this CPU for good.
    super::lockup::park_if_stopping();
    note_vm_exit();
    on_nmi(false);
    // SAFETY: builds an interrupt frame of this very point (kernel SS and
    // CS, the current RSP and RFLAGS, the next instruction) and IRETQs
    // through it: nothing changes but NMI blocking. The frame is popped
    // whole, so RSP ends where it began.
    unsafe {
        core::arch::asm!(
            "mov {tmp}, rsp",
            "push {ss}",
            "push {tmp}",
            "pushfq",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "iretq",
            "2:",
            tmp = out(reg) _,
            ss = const super::gdt::KERNEL_DATA.bits() as u64,
            cs = const super::gdt::KERNEL_CODE.bits() as u64,
        );
    }
}

#[inline(always)]
fn total() -> u64 {
    FROM_USER.load(Relaxed) + FROM_KERNEL.load(Relaxed)
}

fn print_counts(what: &str) {
    println!(
        "nmi: {what}{} taken (ring 3: {}, ring 0: {}; {} arrived while a guest ran)",
        total(),
        FROM_USER.load(Relaxed),
        FROM_KERNEL.load(Relaxed),
        IN_GUEST.load(Relaxed)
    );
}

/// Logs new NMIs: the first at once, then at most every
/// [`LOG_INTERVAL_TICKS`]. Ordinary kernel context only; called on every
/// tick, so the common case (no new NMI) is a few loads, inlined.
#[inline(always)]
pub fn log_if_due(now: u64) {
    if total() != LOGGED_TOTAL.load(Relaxed) {
        log_new(now);
    }
}

#[inline(never)]
fn log_new(now: u64) {
    let (total, logged) = (total(), LOGGED_TOTAL.load(Relaxed));
    if logged == 0 {
        let place = if FROM_USER.load(Relaxed) > 0 { "ring 3" } else { "ring 0" };
        println!("nmi: first NMI, in {place}; NMIs are counted and logged at most every {LOG_INTERVAL_TICKS} ticks");
    } else if now.saturating_sub(LOGGED_TICK.load(Relaxed)) < LOG_INTERVAL_TICKS {
        return;
    } else {
        print_counts("");
    }
    LOGGED_TOTAL.store(total, Relaxed);
    LOGGED_TICK.store(now, Relaxed);
}

/// The last word on NMIs before the system powers off.
pub fn log_summary() {
    if total() > 0 {
        print_counts("in all ");
    }
    if TEST.load(Relaxed) {
        let sent = |p: TestPoint| SENT[p as usize].load(Relaxed);
        println!(
            "nmi test: sent {} in syscalls, {} before guest entry, {} in the world switch",
            sent(TestPoint::Syscall),
            sent(TestPoint::GuestEntry),
            sent(TestPoint::WorldSwitch)
        );
    }
}

// ---------------------------------------------------------------------------
// The NMI test (boot option `test=nmi`).

/// Where ring 0 sends itself an NMI in the test.
#[derive(Clone, Copy, Debug)]
pub enum TestPoint {
    /// While a syscall is handled, the kernel lock held.
    Syscall = 0,
    /// Right before a guest is entered, interrupts off.
    GuestEntry = 1,
    /// Inside the world switch: SVM with GIF clear (the NMI waits and ends
    /// the guest's run at once), VMX with the guest's MSRs loaded.
    WorldSwitch = 2,
}

/// Every how many passes each point sends (syscall, entry, world switch).
const EVERY: [u64; 3] = [16, 8, 8];
/// The periodic source: PIT channel 0 routed as NMI, like a watchdog.
const PIT_NMI_HZ: u64 = 1000;

static TEST: AtomicBool = AtomicBool::new(false);
static PASSES: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
static SENT: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

/// Starts the NMI test: PIT channel 0 (ISA IRQ 0) becomes a periodic NMI
/// through the I/O APIC, so NMIs land wherever the CPU happens to be (ring
/// 3, ring 0, a guest), and the [`TestPoint`]s send self-NMIs.
pub fn start_test() {
    let gsi = super::ioapic::isa_to_gsi(0);
    let routed = super::ioapic::route_as_nmi(gsi);
    if routed {
        super::pit::start_periodic(PIT_NMI_HZ);
    }
    TEST.store(true, Relaxed);
    let (syscall, entry, switch) = (EVERY[0], EVERY[1], EVERY[2]);
    if routed {
        println!("nmi test: PIT channel 0 at {PIT_NMI_HZ} Hz routed as NMI on GSI {gsi}");
    } else {
        println!("nmi test: no I/O APIC line for the PIT; self-NMIs only");
    }
    println!("nmi test: a self-NMI every {syscall}th syscall, {entry}th guest entry and {switch}th world switch");
}

/// True if the test is on and `point` is due to send this time.
pub fn test_due(point: TestPoint) -> bool {
    TEST.load(Relaxed) && PASSES[point as usize].fetch_add(1, Relaxed).is_multiple_of(EVERY[point as usize])
}

/// Sends the test's self-NMI for `point`.
pub fn send_test_nmi(point: TestPoint) {
    SENT[point as usize].fetch_add(1, Relaxed);
    super::apic::send_nmi_to_self();
}

/// Sends a self-NMI at `point` when the test is on and it is due.
pub fn test_point(point: TestPoint) {
    if test_due(point) {
        send_test_nmi(point);
    }
}
