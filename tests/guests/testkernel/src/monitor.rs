//! The messaging test's monitored notifications (TLFS 11.7, 11.10.8,
//! 11.10.9). alpha and beta each see one common monitor page, at their
//! own `monitor=<gpa>`; alpha's VID inspects its enabled trigger groups
//! and signals events for them on alpha's behalf:
//!
//! - trigger 3 of group 0 names connection 0x11 flag 3 (beta's SINT3 flag
//!   8): it clears and beta gets the flag, no earlier than its latency;
//! - trigger 4 of group 0 names connection 0x7777, which alpha does not
//!   hold: the signal fails, is discarded, and the trigger still clears;
//! - trigger 0 of group 1 names connection 0x11 flag 3 as well, but group 1
//!   stays disabled: it stays pending and unarmed.
//!
//! beta finds flag 8, then alpha's parameters in its view of the page, and
//! no other flag from the page.

use crate::hw;
use crate::messaging::{ALPHA_EVENTS, BETA_BASE_FLAG, EVENTS, Result, check, flag_set, tsc_hz};
use crate::println;
use core::sync::atomic::{AtomicU64, Ordering};
use guest_testkernel::detail;
use guest_testkernel::tlfs::monitor::{self, Trigger};
use guest_testkernel::tlfs::msr;

/// A connection alpha does not hold.
const NOT_HELD: u32 = 0x7777;
/// The flag trigger 3 signals: beta's port starts at flag 5, so it is flag
/// 8 of beta's SINT3, which alpha never signals directly with success.
pub(crate) const FLAG: u16 = 3;
pub(crate) const BETA_FLAG: u32 = BETA_BASE_FLAG + FLAG as u32;

const SIGNALLED: Trigger = Trigger::new(0, 3);
const REFUSED: Trigger = Trigger::new(0, 4);
const DISABLED: Trigger = Trigger::new(1, 0);

/// Each trigger's latency hint: 2 ms, in 100 ns.
const LATENCY: u16 = 20_000;
/// How long alpha waits for a trigger to clear: 1 s of reference time.
const GIVE_UP: u64 = 10_000_000;
/// How long the disabled group's trigger must stay pending: 50 ms.
const DISABLED_WAIT: u64 = 500_000;

fn reference_time() -> Result<u64> {
    hw::rdmsr_checked(msr::TIME_REF_COUNT).map_err(|f| detail!("monitor: rdmsr TIME_REF_COUNT raised {f}"))
}

/// A partition's view of the monitor page, at its GPA.
struct Page(u64);

impl Page {
    fn group(&self, t: Trigger) -> &'static AtomicU64 {
        hw::shared_u64(self.0 + t.group_offset() as u64)
    }

    /// Writes `t`'s HvSignalEvent parameters and latency hint.
    fn configure(&self, t: Trigger, connection_id: u32, flag: u16, latency: u16) {
        let parameter = monitor::parameter(connection_id, flag);
        hw::write_ram(self.0 + t.parameter_offset() as u64, &parameter.to_le_bytes());
        hw::write_ram(self.0 + t.latency_offset() as u64, &latency.to_le_bytes());
    }

    fn parameter(&self, t: Trigger) -> u64 {
        let mut b = [0; 8];
        hw::read_ram(self.0 + t.parameter_offset() as u64, &mut b);
        u64::from_le_bytes(b)
    }

    fn latency(&self, t: Trigger) -> u16 {
        let mut b = [0; 2];
        hw::read_ram(self.0 + t.latency_offset() as u64, &mut b);
        u16::from_le_bytes(b)
    }

    /// Writes `TriggerState`: the GroupEnable bits, RsvdZ clear.
    fn enable(&self, groups: u32) {
        hw::write_ram(self.0 + monitor::TRIGGER_STATE as u64, &groups.to_le_bytes());
    }

    /// Sets `t`: Pending on and Armed off in one `lock cmpxchg`.
    fn set(&self, t: Trigger) {
        let _ = self.group(t).fetch_update(Ordering::SeqCst, Ordering::SeqCst, |word| Some(t.set(word)));
    }

    /// Clears `t`'s Pending and Armed bits (`lock and`).
    fn clear(&self, t: Trigger) {
        self.group(t).fetch_and(!(t.pending() | t.armed()), Ordering::SeqCst);
    }

    /// `t`'s (Pending, Armed), read together.
    fn state(&self, t: Trigger) -> (bool, bool) {
        let word = self.group(t).load(Ordering::SeqCst);
        (word & t.pending() != 0, word & t.armed() != 0)
    }

    /// Sets `t` and waits until the hypervisor has cleared it: the
    /// reference time from before the set to after the clear was seen, so
    /// at least the time the notification took.
    fn fire(&self, t: Trigger) -> Result<u64> {
        let start = reference_time()?;
        self.set(t);
        loop {
            let (pending, armed) = self.state(t);
            let elapsed = reference_time()?.wrapping_sub(start);
            if !pending {
                check(!armed, detail!("monitor: {t}: Pending clear but Armed still set"))?;
                return Ok(elapsed);
            }
            check(elapsed < GIVE_UP, detail!("monitor: {t} still pending after {elapsed} of reference time"))?;
            hw::interrupt_window(tsc_hz() / 10_000, || !self.state(t).0);
        }
    }

    /// Sets `t` in a disabled group, waits [`DISABLED_WAIT`], finds it still
    /// pending and unarmed (not inspected), and clears it: the time waited.
    fn ignored(&self, t: Trigger) -> Result<u64> {
        let start = reference_time()?;
        self.set(t);
        let mut elapsed = 0;
        while elapsed < DISABLED_WAIT {
            hw::interrupt_window(tsc_hz() / 10_000, || false);
            elapsed = reference_time()?.wrapping_sub(start);
        }
        let (pending, armed) = self.state(t);
        self.clear(t);
        check(
            pending && !armed,
            detail!("monitor: {t}, its group disabled, after {elapsed}: pending {pending}, armed {armed}"),
        )?;
        Ok(elapsed)
    }
}

/// alpha: configures the three triggers, enables group 0 only, and fires
/// them one after the other.
pub(crate) fn alpha(gpa: u64) -> Result<()> {
    let page = Page(gpa);
    page.configure(SIGNALLED, ALPHA_EVENTS, FLAG, LATENCY);
    page.configure(REFUSED, NOT_HELD, 0, LATENCY);
    page.configure(DISABLED, ALPHA_EVENTS, FLAG, LATENCY);
    page.enable(SIGNALLED.group_enable());
    let signalled = page.fire(SIGNALLED)?;
    check(
        signalled >= u64::from(LATENCY),
        detail!("monitor: {SIGNALLED} cleared within {signalled} of reference time, under its latency {LATENCY}"),
    )?;
    let refused = page.fire(REFUSED)?;
    let ignored = page.ignored(DISABLED)?;
    // Three lines: the VID's console takes 120 bytes a line.
    println!(
        "testkernel: messaging: monitor: trigger 3 of group 0 (connection {ALPHA_EVENTS:#x} flag {FLAG}, latency \
         {LATENCY}) signalled after {signalled}"
    );
    println!("testkernel: messaging: monitor: trigger 4 (connection {NOT_HELD:#x}, not held) cleared after {refused}");
    println!("testkernel: messaging: monitor: trigger 0 of disabled group 1 still pending after {ignored}");
    Ok(())
}

/// beta, once flag [`BETA_FLAG`] came: its own view of the page holds what
/// alpha wrote into alpha's.
pub(crate) fn beta_signalled(gpa: u64) -> Result<()> {
    let page = Page(gpa);
    let parameter = page.parameter(SIGNALLED);
    let latency = page.latency(SIGNALLED);
    println!(
        "testkernel: messaging: monitor: flag {BETA_FLAG} of SINT{EVENTS} came; page {gpa:#x} has connection {:#x} \
         flag {}, latency {latency}",
        parameter as u32,
        (parameter >> 32) as u16
    );
    check(
        parameter == monitor::parameter(ALPHA_EVENTS, FLAG) && latency == LATENCY,
        detail!("monitor: beta's view of the page differs from what alpha wrote (parameter {parameter:#x})"),
    )
}

/// beta, once alpha is done with the page: no flag came from trigger 4 (as
/// flag 0 it would be flag 5) or from the disabled group (flag 8 again).
pub(crate) fn beta_quiet() -> Result<()> {
    if let Some(flag) = [BETA_BASE_FLAG, BETA_FLAG].into_iter().find(|&flag| flag_set(EVENTS, flag)) {
        return Err(detail!("monitor: flag {flag} of SINT{EVENTS} set after alpha's triggers"));
    }
    println!(
        "testkernel: messaging: monitor: no other flag (flags {BETA_BASE_FLAG} and {BETA_FLAG} of SINT{EVENTS} clear)"
    );
    Ok(())
}
