//! The synthetic interrupt controller (TLFS 11) and the synthetic timers
//! (TLFS 12.5) of one VP: their MSRs, the SIM and SIEF pages, message
//! delivery into a SINT's slot with `MessagePending` and redelivery, event
//! flags, and the timers' expiry.
//!
//! Pure logic, like [`crate::synthetic`] (which owns one [`SynicVp`] per VP
//! and dispatches the MSRs here): time is the partition's reference time
//! (100 ns units) passed in, guest memory is a [`Guest`], and the vectors a
//! SINT (or a direct-mode timer) asserts are collected in a [`Raised`] for
//! the caller to hand to the VP's local APIC. Whether a SINT's vector is
//! auto-EOI is [`SynicVp::auto_eoi_vectors`], which the caller gives the
//! APIC model (the vector then never enters the ISR, TLFS 11.8.5).
//!
//! # The SIM and SIEF pages
//!
//! TLFS 11.9 makes them overlay pages ([`crate::overlay`] keeps the RAM
//! they cover, [`crate::synthetic`] puts them in place): enabling a page
//! (or moving it) zeroes it, as a fresh overlay reads; disabling it
//! uncovers the RAM beneath; a GPA that is not RAM makes the page
//! inaccessible, without #GP (11.8.3, 11.8.4). Another VP can read or
//! write a VP's pages (TLFS allows #MC there; nothing faults here).
//!
//! Guest and VID share the pages without a lock. A message is written
//! payload first and its type last, so a guest that sees the type sees the
//! whole message. The flag byte of a busy slot and an event flag's byte are
//! read, changed and written back: a guest clearing a flag of the same byte
//! at that moment can see it set again (a spurious event, which the
//! protocol tolerates); a flag is never lost.
//!
//! # Timers
//!
//! A timer's message sits in a per-timer buffer until its SINT's slot is
//! empty: a busy slot gets `MessagePending`, and the message is delivered
//! on EOM, or at the next [`SynicVp::poll`] once the guest emptied the slot.
//! A periodic timer does not expire again before its message is delivered;
//! then its next expiry is a period after the last one, or a period from
//! now if that is already past (missed periods are skipped, not made up).
//! The VID does not know when a VP is descheduled, so lazy timers (12.1.4)
//! behave like the others. Direct-mode timers (12.2) assert their APIC
//! vector and never wait.

use crate::guest::Guest;
use crate::irq::lapic::VectorBits;
use crate::synthetic::Gp;
use tlfs::msr::{
    HV_EVENT_FLAGS_COUNT, HV_PAGE_SIZE, HV_SYNIC_FIRST_VALID_VECTOR, HV_SYNIC_SINTS, HV_SYNIC_STIMER_COUNT,
    HV_SYNIC_VERSION, HvStimerConfig, HvSynicPage, HvSynicScontrol, HvSynicSiefPage, HvSynicSimPage, HvSynicSint,
    HvX64Msr,
};
use tlfs::zerocopy::IntoBytes;
use tlfs::{HvError, HvMessage, HvMessageBody, HvMessageType, HvResult, HvTimerMessagePayload};

/// Vectors to assert at the VP's local APIC (edge-triggered, fixed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Raised(pub VectorBits);

impl Raised {
    pub fn add(&mut self, vector: u8) {
        self.0.set(vector, true);
    }

    pub fn is_empty(&self) -> bool {
        self.0.0.iter().fold(0, |any, &w| any | w) == 0
    }

    /// The vectors, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=255u8).filter(|&v| self.0.get(v))
    }
}

/// What [`SynicVp::post`] did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Post {
    /// In the slot (and the SINT's interrupt raised, unless masked or polled).
    Delivered,
    /// The slot holds a message: `MessagePending` is set in it; try again
    /// after EOM.
    Busy,
    /// SCONTROL or SIMP is disabled, or the SIMP is not RAM.
    Unavailable,
}

/// One synthetic timer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Stimer {
    config: HvStimerConfig,
    count: u64,
    /// The reference time of the next expiry, while armed.
    due: Option<u64>,
    /// Expired at this reference time; its message waits for the slot.
    pending: Option<u64>,
}

/// One VP's SynIC and synthetic timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynicVp {
    scontrol: HvSynicScontrol,
    simp: HvSynicPage,
    siefp: HvSynicPage,
    sints: [HvSynicSint; HV_SYNIC_SINTS],
    timers: [Stimer; HV_SYNIC_STIMER_COUNT],
    /// A message from a port (HvPostMessage, through the broker) waiting
    /// for its SINT's slot, delivered like a timer's ([`SynicVp::deliver`]).
    held: Option<(u8, HvMessage)>,
}

impl Default for SynicVp {
    fn default() -> SynicVp {
        SynicVp::new()
    }
}

/// The timer-expired message of timer `index` (TLFS 11.10.4, 13.3.1:
/// `HvMessageTimerExpired`, payload `HV_TIMER_MESSAGE_PAYLOAD`, origin 0).
pub fn timer_message(index: usize, expiration: u64, delivery: u64) -> HvMessage {
    let payload = HvTimerMessagePayload {
        timer_index: index as u32,
        reserved: 0,
        expiration_time: expiration,
        delivery_time: delivery,
    };
    HvMessage::from_body(&HvMessageBody::TimerExpired(payload), 0)
}

impl SynicVp {
    /// At VP creation or reset (TLFS 11.8.1-11.8.5, 12.5.1): everything 0,
    /// every SINT masked.
    pub const fn new() -> SynicVp {
        const T: Stimer = Stimer { config: HvStimerConfig::new(), count: 0, due: None, pending: None };
        SynicVp {
            scontrol: HvSynicScontrol::new(),
            simp: HvSynicPage::new(),
            siefp: HvSynicPage::new(),
            sints: [HvSynicSint::INITIAL; HV_SYNIC_SINTS],
            timers: [T; HV_SYNIC_STIMER_COUNT],
            held: None,
        }
    }

    /// True for the SynIC's MSRs (AccessSynicRegs).
    pub const fn is_synic_msr(msr: HvX64Msr) -> bool {
        (msr.0 >= HvX64Msr::SCONTROL.0 && msr.0 <= HvX64Msr::EOM.0) || msr.sint_index().is_some()
    }

    /// True for the synthetic timers' MSRs (AccessSyntheticTimerRegs).
    pub const fn is_stimer_msr(msr: HvX64Msr) -> bool {
        msr.stimer_index().is_some()
    }

    /// RDMSR of a SynIC or timer MSR.
    pub fn read(&self, msr: HvX64Msr) -> Result<u64, Gp> {
        if let Some(n) = msr.sint_index() {
            return Ok(self.sints[n].into_bits());
        }
        if let Some((n, count)) = msr.stimer_index() {
            let t = &self.timers[n];
            return Ok(if count { t.count } else { t.config.into_bits() });
        }
        Ok(match msr {
            HvX64Msr::SCONTROL => self.scontrol.into_bits(),
            HvX64Msr::SVERSION => HV_SYNIC_VERSION,
            HvX64Msr::SIEFP => self.siefp.into_bits(),
            HvX64Msr::SIMP => self.simp.into_bits(),
            // "Reads from the EOM register always returns zeros" (11.8.6).
            HvX64Msr::EOM => 0,
            _ => return Err(Gp::NotAvailable),
        })
    }

    /// WRMSR of a SynIC or timer MSR at reference time `now`.
    pub fn write(
        &mut self,
        msr: HvX64Msr,
        value: u64,
        now: u64,
        guest: &mut impl Guest,
        raised: &mut Raised,
    ) -> Result<(), Gp> {
        if let Some(n) = msr.sint_index() {
            let sint = HvSynicSint::from_bits(value).with_reserved_p1(0).with_reserved_p2(0);
            // 11.8.5: vectors 0-15 are #GP. A masked SINT may hold one
            // (0x10000, the initial value, is written back by guests).
            if sint.vector() < HV_SYNIC_FIRST_VALID_VECTOR && !sint.masked() {
                return Err(Gp::ReservedBits);
            }
            self.sints[n] = sint;
            return Ok(());
        }
        if let Some((n, count)) = msr.stimer_index() {
            return if count {
                self.write_count(n, value, now);
                self.poll(now, guest, raised);
                Ok(())
            } else {
                let config = HvStimerConfig::from_bits(value);
                if config.reserved_set() {
                    return Err(Gp::ReservedBits);
                }
                self.write_config(n, config, now);
                self.poll(now, guest, raised);
                Ok(())
            };
        }
        match msr {
            HvX64Msr::SCONTROL => {
                self.scontrol = HvSynicScontrol::from_bits(value).with_reserved_p(0);
                if self.scontrol.enable() {
                    self.redeliver(now, guest, raised);
                }
            }
            HvX64Msr::SVERSION => return Err(Gp::ReadOnly),
            HvX64Msr::SIEFP => self.siefp = Self::page(self.siefp, value, guest),
            HvX64Msr::SIMP => {
                self.simp = Self::page(self.simp, value, guest);
                self.redeliver(now, guest, raised);
            }
            // 11.8.6: RsvdZ "should be set to zero"; any value scans.
            HvX64Msr::EOM => self.redeliver(now, guest, raised),
            _ => return Err(Gp::NotAvailable),
        }
        Ok(())
    }

    /// SIMP or SIEFP := `value`: RsvdP dropped; a page that becomes enabled
    /// or moves is zeroed (if it is RAM).
    fn page(old: HvSynicPage, value: u64, guest: &mut impl Guest) -> HvSynicPage {
        let new = HvSynicPage::from_bits(value).with_reserved_p(0);
        if new.enable() && (!old.enable() || old.gpn() != new.gpn()) {
            // Not RAM: the page "will not be accessible", no #GP.
            let _ = guest.write(new.gpn() << 12, &[0; HV_PAGE_SIZE]);
        }
        new
    }

    pub const fn scontrol(&self) -> HvSynicScontrol {
        self.scontrol
    }

    pub const fn sint(&self, n: usize) -> HvSynicSint {
        self.sints[n]
    }

    /// The vector SINT `n` asserts, `None` if masked or polled (TLFS 11.8.5).
    pub const fn sint_vector(&self, n: usize) -> Option<u8> {
        let s = self.sints[n];
        if s.masked() || s.polling() { None } else { Some(s.vector()) }
    }

    /// The vectors of unmasked, interrupting SINTs with AutoEOI.
    pub fn auto_eoi_vectors(&self) -> VectorBits {
        let mut bits = VectorBits::default();
        for n in 0..HV_SYNIC_SINTS {
            if let Some(v) = self.sint_vector(n).filter(|_| self.sints[n].auto_eoi()) {
                bits.set(v, true);
            }
        }
        bits
    }

    fn raise(&self, sint: usize, raised: &mut Raised) {
        if let Some(vector) = self.sint_vector(sint) {
            raised.add(vector);
        }
    }

    /// Puts `message` in SINT `sint`'s slot of the SIM page (TLFS 11.4,
    /// 11.8.6): delivered if SCONTROL and SIMP are enabled and the slot is
    /// empty (its type `HvMessageTypeNone`), then the SINT's interrupt is
    /// raised unless it is masked or polled; a busy slot gets
    /// `MessagePending` (11.10.3).
    pub fn post(&mut self, sint: usize, message: &HvMessage, guest: &mut impl Guest, raised: &mut Raised) -> Post {
        if sint >= HV_SYNIC_SINTS || !self.scontrol.enable() || !self.simp.enable() {
            return Post::Unavailable;
        }
        let slot = (self.simp.gpn() << 12) + HvSynicSimPage::slot_offset(sint) as u64;
        let mut header = [0u8; 8];
        if !guest.read(slot, &mut header) {
            return Post::Unavailable;
        }
        if u32::from_le_bytes([header[0], header[1], header[2], header[3]]) != HvMessageType::NONE.0 {
            const PENDING: u8 = 1; // HvMessageFlags::message_pending, bit 0 of byte 5
            if header[5] & PENDING == 0 {
                let _ = guest.write(slot + 5, &[header[5] | PENDING]);
            }
            return Post::Busy;
        }
        let bytes = message.as_bytes();
        // Type last: a guest that sees it sees the whole message.
        if !guest.write(slot + 4, &bytes[4..]) || !guest.write(slot, &bytes[..4]) {
            return Post::Unavailable;
        }
        self.raise(sint, raised);
        Post::Delivered
    }

    /// Whether a message can be posted to SINT `sint` (TLFS 11.11.1):
    /// `INVALID_SYNIC_STATE` if SCONTROL or SIMP is disabled (a masked SINT
    /// takes messages: the guest may poll); `INVALID_PARAMETER` for a SINT
    /// out of range.
    pub fn accepts_messages(&self, sint: usize) -> HvResult<()> {
        if sint >= HV_SYNIC_SINTS {
            return Err(HvError::INVALID_PARAMETER);
        }
        if !self.scontrol.enable() || !self.simp.enable() {
            return Err(HvError::INVALID_SYNIC_STATE);
        }
        Ok(())
    }

    /// Whether an event for SINT `sint` can be signalled (TLFS 11.11.2):
    /// `INVALID_SYNIC_STATE` if SCONTROL or SIEFP is disabled or the SINT
    /// is masked; `INVALID_PARAMETER` for a SINT out of range. (A SIEF page
    /// that is not RAM is found only when the flag is set.)
    pub fn accepts_events(&self, sint: usize) -> HvResult<()> {
        if sint >= HV_SYNIC_SINTS {
            return Err(HvError::INVALID_PARAMETER);
        }
        if !self.scontrol.enable() || !self.siefp.enable() || self.sints[sint].masked() {
            return Err(HvError::INVALID_SYNIC_STATE);
        }
        Ok(())
    }

    /// The SINTs that take messages and events now, as the broker keeps
    /// them (`broker_api::accepting`): by [`SynicVp::accepts_messages`]
    /// and [`SynicVp::accepts_events`].
    pub fn accepting(&self) -> u32 {
        (0..HV_SYNIC_SINTS).fold(0, |bits, sint| {
            let n = sint as u32;
            let messages = if self.accepts_messages(sint).is_ok() { broker_api::accepting::messages(n) } else { 0 };
            let events = if self.accepts_events(sint).is_ok() { broker_api::accepting::events(n) } else { 0 };
            bits | messages | events
        })
    }

    /// Asserts SINT `sint` for a source outside the SynIC that brings no
    /// message or flag (QEMU's `hyperv-testdev` routes): its vector, unless
    /// the SynIC is disabled or the SINT masked or polled; true if raised.
    pub fn assert_sint(&self, sint: usize, raised: &mut Raised) -> bool {
        if sint >= HV_SYNIC_SINTS || !self.scontrol.enable() {
            return false;
        }
        self.raise(sint, raised);
        self.sint_vector(sint).is_some()
    }

    /// Sets event flag `flag` of SINT `sint` in the SIEF page (TLFS 11.5.1,
    /// 11.10.5); true if it went from clear to set, which raises the SINT's
    /// interrupt. `INVALID_SYNIC_STATE` if SCONTROL or SIEFP is disabled
    /// (or not RAM) or the SINT is masked; `INVALID_PARAMETER` for a flag
    /// or SINT out of range.
    pub fn signal_event(
        &mut self,
        sint: usize,
        flag: u32,
        guest: &mut impl Guest,
        raised: &mut Raised,
    ) -> HvResult<bool> {
        if flag >= HV_EVENT_FLAGS_COUNT {
            return Err(HvError::INVALID_PARAMETER);
        }
        self.accepts_events(sint)?;
        let (offset, bit) = HvSynicSiefPage::flag_position(sint, flag);
        let gpa = (self.siefp.gpn() << 12) + offset as u64;
        let mut byte = [0u8];
        if !guest.read(gpa, &mut byte) {
            return Err(HvError::INVALID_SYNIC_STATE);
        }
        if byte[0] & (1 << bit) != 0 {
            return Ok(false);
        }
        if !guest.write(gpa, &[byte[0] | (1 << bit)]) {
            return Err(HvError::INVALID_SYNIC_STATE);
        }
        self.raise(sint, raised);
        Ok(true)
    }

    /// Delivers a message posted to a port of this VP's SINT `sint`
    /// (TLFS 11.10.3): into the slot if it is empty, else it is held, and
    /// the slot gets `MessagePending`, until EOM, a poll that finds the
    /// slot empty, or the SynIC or SIMP enabled delivers it (as a timer's
    /// message). `Busy` if held; `Unavailable` (and nothing held) if a
    /// message is already held or `sint` is out of range: the caller keeps
    /// one message per VP at a time ([`SynicVp::holds_message`]).
    pub fn deliver(&mut self, sint: usize, message: &HvMessage, guest: &mut impl Guest, raised: &mut Raised) -> Post {
        if sint >= HV_SYNIC_SINTS || self.held.is_some() {
            return Post::Unavailable;
        }
        match self.post(sint, message, guest, raised) {
            Post::Delivered => Post::Delivered,
            Post::Busy | Post::Unavailable => {
                self.held = Some((sint as u8, *message));
                Post::Busy
            }
        }
    }

    /// True while a port's message waits for its slot.
    pub const fn holds_message(&self) -> bool {
        self.held.is_some()
    }

    // ---- Timers (TLFS 12.5) ------------------------------------------------

    /// STIMERn_CONFIG := `config`: the timer stops (an undelivered message
    /// is dropped) and starts again if enabled. An enabled message timer
    /// with SINTx 0 is disabled at once (12.5.1).
    fn write_config(&mut self, n: usize, mut config: HvStimerConfig, now: u64) {
        if config.enable() && config.sintx() == 0 && !config.direct_mode() {
            config.set_enable(false);
        }
        let t = &mut self.timers[n];
        t.config = config;
        t.pending = None;
        Self::start(t, now);
    }

    /// STIMERn_COUNT := `count` (12.5.2): 0 stops the timer whatever
    /// AutoEnable says; else AutoEnable sets Enable; an enabled timer
    /// starts again.
    fn write_count(&mut self, n: usize, count: u64, now: u64) {
        let t = &mut self.timers[n];
        t.count = count;
        if count == 0 {
            t.config.set_enable(false);
        } else if t.config.auto_enable() && (t.config.sintx() != 0 || t.config.direct_mode()) {
            t.config.set_enable(true);
        }
        t.pending = None;
        Self::start(t, now);
    }

    /// Arms an enabled timer: a one-shot at its absolute COUNT, a periodic
    /// one a period from `now` ("the first period begins when the synthetic
    /// timer is enabled"). COUNT 0 disables it.
    fn start(t: &mut Stimer, now: u64) {
        t.due = None;
        if !t.config.enable() {
            return;
        }
        if t.count == 0 {
            t.config.set_enable(false);
            return;
        }
        t.due = Some(if t.config.periodic() { now.wrapping_add(t.count) } else { t.count });
    }

    /// The earliest reference time at which [`SynicVp::poll`] has a timer
    /// to fire (timers whose message waits for EOM have none).
    pub fn next_due(&self) -> Option<u64> {
        self.timers.iter().filter(|t| t.pending.is_none()).filter_map(|t| t.due).min()
    }

    /// Whether [`SynicVp::poll`] has nothing to do, at any time: no timer
    /// armed or waiting, no port's message held.
    pub fn idle(&self) -> bool {
        self.held.is_none() && self.timers.iter().all(|t| t.due.is_none() && t.pending.is_none())
    }

    /// Fires the timers due at `now` and retries their waiting messages.
    pub fn poll(&mut self, now: u64, guest: &mut impl Guest, raised: &mut Raised) {
        for n in 0..HV_SYNIC_STIMER_COUNT {
            let t = &mut self.timers[n];
            match t.due {
                Some(due) if t.pending.is_none() && due <= now => {
                    t.due = None;
                    t.pending = Some(due);
                    if !t.config.periodic() {
                        // "When a one-shot timer expires, it is
                        // automatically marked as disabled" (12.5.1).
                        t.config.set_enable(false);
                    }
                }
                _ => {}
            }
        }
        self.redeliver(now, guest, raised);
    }

    /// Delivers the waiting messages, a port's and the timers' (EOM, a
    /// poll, the SIMP or SCONTROL enabled).
    fn redeliver(&mut self, now: u64, guest: &mut impl Guest, raised: &mut Raised) {
        if let Some((sint, message)) = self.held
            && self.post(usize::from(sint), &message, guest, raised) == Post::Delivered
        {
            self.held = None;
        }
        for n in 0..HV_SYNIC_STIMER_COUNT {
            let Some(expiration) = self.timers[n].pending else { continue };
            let config = self.timers[n].config;
            let delivered = if config.direct_mode() {
                raised.add(config.apic_vector());
                true
            } else {
                let sint = usize::from(config.sintx());
                let mut message = timer_message(n, expiration, now);
                // Another timer's message waits for the same slot.
                let more = (0..HV_SYNIC_STIMER_COUNT).any(|m| {
                    m != n
                        && self.timers[m].pending.is_some()
                        && !self.timers[m].config.direct_mode()
                        && usize::from(self.timers[m].config.sintx()) == sint
                });
                message.header.message_flags.set_message_pending(more);
                self.post(sint, &message, guest, raised) == Post::Delivered
            };
            if !delivered {
                continue;
            }
            let t = &mut self.timers[n];
            t.pending = None;
            if t.config.enable() && t.config.periodic() && t.count != 0 {
                let next = expiration.wrapping_add(t.count);
                t.due = Some(if next <= now { now.wrapping_add(t.count) } else { next });
            }
        }
    }
}

#[cfg(test)]
mod tests;
