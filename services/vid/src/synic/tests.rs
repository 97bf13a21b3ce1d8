use super::*;
use tlfs::zerocopy::FromBytes;

use crate::guest::TestRam as Ram;

const SIMP_GPN: u64 = 4;
const SIEFP_GPN: u64 = 5;

fn ram() -> Ram {
    Ram::new()
}

struct Vp {
    s: SynicVp,
    ram: Ram,
    raised: Raised,
}

impl Vp {
    fn new() -> Vp {
        Vp { s: SynicVp::new(), ram: ram(), raised: Raised::default() }
    }

    /// SCONTROL, SIMP and SIEFP enabled.
    fn enabled() -> Vp {
        let mut vp = Vp::new();
        vp.wr(HvX64Msr::SCONTROL, 1).unwrap();
        vp.wr(HvX64Msr::SIMP, SIMP_GPN << 12 | 1).unwrap();
        vp.wr(HvX64Msr::SIEFP, SIEFP_GPN << 12 | 1).unwrap();
        vp
    }

    fn wr(&mut self, msr: HvX64Msr, value: u64) -> Result<(), Gp> {
        self.wr_at(msr, value, 0)
    }

    fn wr_at(&mut self, msr: HvX64Msr, value: u64, now: u64) -> Result<(), Gp> {
        self.s.write(msr, value, now, &mut self.ram, &mut self.raised)
    }

    fn rd(&self, msr: HvX64Msr) -> u64 {
        self.s.read(msr).unwrap()
    }

    fn poll(&mut self, now: u64) {
        self.s.poll(now, &mut self.ram, &mut self.raised);
    }

    fn slot(&self, sint: usize) -> HvMessage {
        let at = ((SIMP_GPN as usize) << 12) + sint * 256;
        HvMessage::read_from_bytes(&self.ram.0[at..at + 256]).unwrap()
    }

    /// The guest empties the slot (type := None), as 11.4.1 recommends.
    fn clear_slot(&mut self, sint: usize) {
        let at = ((SIMP_GPN as usize) << 12) + sint * 256;
        self.ram.0[at..at + 4].fill(0);
    }

    fn take_raised(&mut self) -> Vec<u8> {
        let v = self.raised.iter().collect();
        self.raised = Raised::default();
        v
    }

    fn sint(&mut self, n: usize, value: u64) {
        self.wr(HvX64Msr::sint(n).unwrap(), value).unwrap();
    }
}

fn config(f: impl FnOnce(HvStimerConfig) -> HvStimerConfig) -> u64 {
    f(HvStimerConfig::new()).into_bits()
}

fn timer_payload(m: &HvMessage) -> HvTimerMessagePayload {
    match m.parse() {
        Ok(HvMessageBody::TimerExpired(p)) => p,
        other => panic!("not a timer message: {other:?}"),
    }
}

// ---- Registers (TLFS 11.8) -------------------------------------------------

#[test]
fn initial_values_11_8() {
    let vp = Vp::new();
    // 11.8.1, 11.8.3, 11.8.4: SCONTROL, SIEFP, SIMP are 0.
    assert_eq!(vp.rd(HvX64Msr::SCONTROL), 0);
    assert_eq!(vp.rd(HvX64Msr::SIEFP), 0);
    assert_eq!(vp.rd(HvX64Msr::SIMP), 0);
    // 11.8.5: all SINTs masked.
    for n in 0..16 {
        assert_eq!(vp.rd(HvX64Msr::sint(n).unwrap()), 0x1_0000);
    }
    // 11.8.2: SVERSION is 1; 11.8.6: EOM reads 0.
    assert_eq!(vp.rd(HvX64Msr::SVERSION), 1);
    assert_eq!(vp.rd(HvX64Msr::EOM), 0);
    // 12.5.1: timers disabled.
    for n in 0..4 {
        assert_eq!(vp.rd(HvX64Msr::stimer_config(n).unwrap()), 0);
        assert_eq!(vp.rd(HvX64Msr::stimer_count(n).unwrap()), 0);
    }
}

#[test]
fn sversion_is_read_only_11_8_2() {
    let mut vp = Vp::new();
    assert_eq!(vp.wr(HvX64Msr::SVERSION, 1), Err(Gp::ReadOnly));
}

#[test]
fn sint_vectors_below_16_are_gp_unless_masked_11_8_5() {
    let mut vp = Vp::new();
    let sint3 = HvX64Msr::sint(3).unwrap();
    assert_eq!(vp.wr(sint3, 0x0f), Err(Gp::ReservedBits));
    assert_eq!(vp.rd(sint3), 0x1_0000, "unchanged");
    assert_eq!(vp.wr(sint3, 0x4_0000), Err(Gp::ReservedBits), "polling is unmasked");
    assert_eq!(vp.wr(sint3, 0x1_0000), Ok(()));
    assert_eq!(vp.wr(sint3, 0x10), Ok(()));
    assert_eq!(vp.rd(sint3), 0x10);
    // RsvdP bits are dropped; the defined ones stay.
    vp.wr(sint3, 0xffff_ffff_ffff_ff40).unwrap();
    assert_eq!(vp.rd(sint3), 0x7_0040);
}

#[test]
fn scontrol_simp_siefp_keep_defined_bits_11_8() {
    let mut vp = Vp::new();
    vp.wr(HvX64Msr::SCONTROL, 0xfff1).unwrap();
    assert_eq!(vp.rd(HvX64Msr::SCONTROL), 1);
    vp.wr(HvX64Msr::SIMP, SIMP_GPN << 12 | 0xffe).unwrap();
    assert_eq!(vp.rd(HvX64Msr::SIMP), SIMP_GPN << 12);
    // Enabling zeroes the page (a fresh overlay, 11.9).
    vp.wr(HvX64Msr::SIMP, SIMP_GPN << 12 | 1).unwrap();
    assert!(vp.ram.0[0x4000..0x5000].iter().all(|&b| b == 0));
    // A page that is not RAM: no #GP, it is inaccessible (11.8.4).
    assert_eq!(vp.wr(HvX64Msr::SIEFP, 0x1_0000_0000 | 1), Ok(()));
    assert_eq!(vp.rd(HvX64Msr::SIEFP), 0x1_0000_0001);
}

#[test]
fn auto_eoi_vectors_follow_the_sints_11_8_5() {
    let mut vp = Vp::new();
    vp.sint(2, 0x2_0050); // auto-EOI, unmasked
    vp.sint(3, 0x0_0051); // plain
    vp.sint(4, 0x3_0052); // auto-EOI but masked
    vp.sint(5, 0x6_0053); // auto-EOI but polled: no interrupt
    let bits = vp.s.auto_eoi_vectors();
    assert!(bits.get(0x50));
    assert!(!bits.get(0x51) && !bits.get(0x52) && !bits.get(0x53));
}

// ---- Messages (TLFS 11.4, 11.8.6, 11.10) ------------------------------------

#[test]
fn post_delivers_into_an_empty_slot_and_raises_the_sint_11_4() {
    let mut vp = Vp::enabled();
    vp.sint(1, 0x40);
    let m = timer_message(0, 5, 6);
    assert_eq!(vp.s.post(1, &m, &mut vp.ram, &mut vp.raised), Post::Delivered);
    assert_eq!(vp.slot(1), m);
    assert_eq!(vp.take_raised(), vec![0x40]);
}

#[test]
fn masked_and_polled_sints_get_the_message_without_an_interrupt_11_8_5() {
    let mut vp = Vp::enabled();
    vp.sint(2, 0x4_0041); // polling
    let m = timer_message(1, 5, 6);
    assert_eq!(vp.s.post(2, &m, &mut vp.ram, &mut vp.raised), Post::Delivered);
    assert_eq!(vp.slot(2), m);
    // Masked (the initial state): delivered too (EOM "can also be used as
    // a way to drain the message queue for a SINTx that has been masked").
    assert_eq!(vp.s.post(3, &m, &mut vp.ram, &mut vp.raised), Post::Delivered);
    assert!(vp.take_raised().is_empty());
}

#[test]
fn busy_slot_sets_message_pending_11_10_3() {
    let mut vp = Vp::enabled();
    vp.sint(1, 0x40);
    let first = timer_message(0, 1, 2);
    vp.s.post(1, &first, &mut vp.ram, &mut vp.raised);
    vp.take_raised();
    assert_eq!(vp.s.post(1, &timer_message(1, 3, 4), &mut vp.ram, &mut vp.raised), Post::Busy);
    let slot = vp.slot(1);
    assert!(slot.header.message_flags.message_pending());
    assert_eq!(timer_payload(&slot).timer_index, 0, "the first message stays");
    assert!(vp.take_raised().is_empty());
}

#[test]
fn nothing_is_delivered_without_scontrol_or_simp_11_8_1() {
    let mut vp = Vp::new();
    vp.wr(HvX64Msr::SIMP, SIMP_GPN << 12 | 1).unwrap();
    let m = timer_message(0, 1, 2);
    assert_eq!(vp.s.post(0, &m, &mut vp.ram, &mut vp.raised), Post::Unavailable);
    let mut vp = Vp::new();
    vp.wr(HvX64Msr::SCONTROL, 1).unwrap();
    assert_eq!(vp.s.post(0, &m, &mut vp.ram, &mut vp.raised), Post::Unavailable);
    vp.wr(HvX64Msr::SIMP, 0x1_0000_0000 | 1).unwrap(); // not RAM
    assert_eq!(vp.s.post(0, &m, &mut vp.ram, &mut vp.raised), Post::Unavailable);
}

// ---- Event flags (TLFS 11.5) -----------------------------------------------

#[test]
fn event_flags_interrupt_only_on_clear_to_set_11_5_1() {
    let mut vp = Vp::enabled();
    vp.sint(6, 0x60);
    assert_eq!(vp.s.signal_event(6, 9, &mut vp.ram, &mut vp.raised), Ok(true));
    assert_eq!(vp.ram.0[((SIEFP_GPN as usize) << 12) + 6 * 256 + 1], 0b10);
    assert_eq!(vp.take_raised(), vec![0x60]);
    assert_eq!(vp.s.signal_event(6, 9, &mut vp.ram, &mut vp.raised), Ok(false));
    assert!(vp.take_raised().is_empty(), "already set: no interrupt");
    // The guest clears it: the next signal interrupts again.
    vp.ram.0[((SIEFP_GPN as usize) << 12) + 6 * 256 + 1] = 0;
    assert_eq!(vp.s.signal_event(6, 9, &mut vp.ram, &mut vp.raised), Ok(true));
    assert_eq!(vp.take_raised(), vec![0x60]);
}

#[test]
fn event_flags_refused_when_masked_or_disabled_11_5_1() {
    let mut vp = Vp::enabled();
    assert_eq!(vp.s.signal_event(6, 0, &mut vp.ram, &mut vp.raised), Err(HvError::INVALID_SYNIC_STATE));
    vp.sint(6, 0x60);
    assert_eq!(vp.s.signal_event(6, 2048, &mut vp.ram, &mut vp.raised), Err(HvError::INVALID_PARAMETER));
    assert_eq!(vp.s.signal_event(16, 0, &mut vp.ram, &mut vp.raised), Err(HvError::INVALID_PARAMETER));
    vp.wr(HvX64Msr::SIEFP, 0).unwrap();
    assert_eq!(vp.s.signal_event(6, 0, &mut vp.ram, &mut vp.raised), Err(HvError::INVALID_SYNIC_STATE));
    // A polled SINT takes the flag, without an interrupt.
    let mut vp = Vp::enabled();
    vp.sint(6, 0x4_0060);
    assert_eq!(vp.s.signal_event(6, 0, &mut vp.ram, &mut vp.raised), Ok(true));
    assert!(vp.take_raised().is_empty());
}

// ---- Timers (TLFS 12.5) ----------------------------------------------------

#[test]
fn stimer_config_reserved_bits_are_gp_12_5_1() {
    let mut vp = Vp::new();
    let c0 = HvX64Msr::stimer_config(0).unwrap();
    assert_eq!(vp.wr(c0, 1 << 13), Err(Gp::ReservedBits));
    assert_eq!(vp.wr(c0, 1 << 40), Err(Gp::ReservedBits));
    assert_eq!(vp.rd(c0), 0);
}

#[test]
fn enabled_timer_with_sint_0_is_disabled_12_5_1() {
    let mut vp = Vp::new();
    let c0 = HvX64Msr::stimer_config(0).unwrap();
    vp.wr(HvX64Msr::stimer_count(0).unwrap(), 100).unwrap();
    vp.wr(c0, config(|c| c.with_enable(true))).unwrap();
    assert_eq!(vp.rd(c0), 0, "enable cleared");
    // Direct mode needs no SINT.
    vp.wr(c0, config(|c| c.with_enable(true).with_direct_mode(true).with_apic_vector(0x30))).unwrap();
    assert_eq!(vp.rd(c0) & 1, 1);
}

#[test]
fn count_zero_disables_and_auto_enable_enables_12_5_2() {
    let mut vp = Vp::new();
    let (c1, n1) = (HvX64Msr::stimer_config(1).unwrap(), HvX64Msr::stimer_count(1).unwrap());
    vp.wr(c1, config(|c| c.with_auto_enable(true).with_sintx(2))).unwrap();
    assert_eq!(vp.rd(c1) & 1, 0);
    vp.wr(n1, 500).unwrap();
    assert_eq!(vp.rd(c1) & 1, 1, "AutoEnable: a non-zero COUNT enables");
    assert_eq!(vp.rd(n1), 500);
    vp.wr(n1, 0).unwrap();
    assert_eq!(vp.rd(c1) & 1, 0, "COUNT 0 disables, AutoEnable or not");
    assert_eq!(vp.s.next_due(), None);
    // Without AutoEnable, COUNT leaves Enable alone.
    vp.wr(c1, config(|c| c.with_sintx(2))).unwrap();
    vp.wr(n1, 500).unwrap();
    assert_eq!(vp.rd(c1) & 1, 0);
    // Enabling with COUNT 0 does not start it.
    vp.wr(n1, 0).unwrap();
    vp.wr(c1, config(|c| c.with_enable(true).with_sintx(2))).unwrap();
    assert_eq!(vp.rd(c1) & 1, 0);
}

#[test]
fn one_shot_expires_at_its_absolute_count_and_disables_12_5_1() {
    let mut vp = Vp::enabled();
    vp.sint(2, 0x42);
    let (c0, n0) = (HvX64Msr::stimer_config(0).unwrap(), HvX64Msr::stimer_count(0).unwrap());
    vp.wr_at(n0, 10_000, 100).unwrap();
    vp.wr_at(c0, config(|c| c.with_enable(true).with_sintx(2)), 100).unwrap();
    assert_eq!(vp.s.next_due(), Some(10_000));
    vp.poll(9_999);
    assert!(vp.slot(2).is_empty(), "not before its time");
    vp.poll(10_250);
    let m = vp.slot(2);
    assert_eq!(m.header.message_type, HvMessageType::TIMER_EXPIRED);
    assert_eq!(m.header.payload_size, 24);
    assert_eq!(m.header.origination_id, 0);
    let p = timer_payload(&m);
    assert_eq!((p.timer_index, p.expiration_time, p.delivery_time), (0, 10_000, 10_250));
    assert_eq!(vp.take_raised(), vec![0x42]);
    assert_eq!(vp.rd(c0) & 1, 0, "a one-shot disables itself");
    assert_eq!(vp.s.next_due(), None);
}

#[test]
fn one_shot_in_the_past_expires_at_once_12_5_1() {
    let mut vp = Vp::enabled();
    vp.sint(2, 0x42);
    vp.wr_at(HvX64Msr::stimer_count(3).unwrap(), 50, 1000).unwrap();
    vp.wr_at(HvX64Msr::stimer_config(3).unwrap(), config(|c| c.with_enable(true).with_sintx(2)), 1000).unwrap();
    let p = timer_payload(&vp.slot(2));
    assert_eq!((p.timer_index, p.expiration_time, p.delivery_time), (3, 50, 1000));
}

#[test]
fn periodic_timer_period_starts_at_enable_12_5_2() {
    let mut vp = Vp::enabled();
    vp.sint(1, 0x4_0020); // polled
    let (c0, n0) = (HvX64Msr::stimer_config(0).unwrap(), HvX64Msr::stimer_count(0).unwrap());
    vp.wr_at(n0, 1000, 0).unwrap();
    vp.wr_at(c0, config(|c| c.with_enable(true).with_periodic(true).with_sintx(1)), 500).unwrap();
    assert_eq!(vp.s.next_due(), Some(1500));
    vp.poll(1500);
    assert_eq!(timer_payload(&vp.slot(1)).expiration_time, 1500);
    assert_eq!(vp.s.next_due(), Some(2500));
    vp.clear_slot(1);
    vp.poll(2600);
    let p = timer_payload(&vp.slot(1));
    assert_eq!((p.expiration_time, p.delivery_time), (2500, 2600));
    assert_eq!(vp.s.next_due(), Some(3500));
    assert_eq!(vp.rd(c0) & 1, 1, "periodic timers stay enabled");
    // Missed periods are skipped: the next one is a period from now.
    vp.clear_slot(1);
    vp.poll(9_000);
    assert_eq!(timer_payload(&vp.slot(1)).expiration_time, 3500);
    assert_eq!(vp.s.next_due(), Some(10_000));
}

#[test]
fn busy_slot_holds_the_timer_until_eom_11_8_6() {
    let mut vp = Vp::enabled();
    vp.sint(1, 0x2_0045); // auto-EOI
    let (c0, n0) = (HvX64Msr::stimer_config(0).unwrap(), HvX64Msr::stimer_count(0).unwrap());
    vp.wr_at(n0, 100, 0).unwrap();
    vp.wr_at(c0, config(|c| c.with_enable(true).with_periodic(true).with_sintx(1)), 0).unwrap();
    vp.poll(100);
    assert_eq!(vp.take_raised(), vec![0x45]);
    // The guest does not empty the slot: the next expiry finds it busy.
    vp.poll(200);
    assert!(vp.slot(1).header.message_flags.message_pending());
    assert_eq!(timer_payload(&vp.slot(1)).expiration_time, 100);
    assert_eq!(vp.s.next_due(), None, "no further expiry before EOM");
    vp.poll(450);
    assert!(vp.take_raised().is_empty());
    // EOM with the slot still full: still waiting.
    vp.wr_at(HvX64Msr::EOM, 0, 460).unwrap();
    assert!(vp.take_raised().is_empty());
    // The guest empties the slot and writes EOM: redelivered.
    vp.clear_slot(1);
    vp.wr_at(HvX64Msr::EOM, 0, 470).unwrap();
    let p = timer_payload(&vp.slot(1));
    assert_eq!((p.expiration_time, p.delivery_time), (200, 470));
    assert!(!vp.slot(1).header.message_flags.message_pending());
    assert_eq!(vp.take_raised(), vec![0x45]);
    assert_eq!(vp.s.next_due(), Some(570));
}

#[test]
fn a_cleared_slot_is_refilled_at_the_next_poll_11_4() {
    let mut vp = Vp::enabled();
    vp.sint(1, 0x4_0020);
    for n in 0..2 {
        vp.wr_at(HvX64Msr::stimer_count(n).unwrap(), 100 + n as u64, 0).unwrap();
        vp.wr_at(HvX64Msr::stimer_config(n).unwrap(), config(|c| c.with_enable(true).with_sintx(1)), 0).unwrap();
    }
    vp.poll(200);
    let first = vp.slot(1);
    assert_eq!(timer_payload(&first).timer_index, 0);
    // Timer 1's message waits behind it: MessagePending on the slot.
    assert!(first.header.message_flags.message_pending());
    vp.clear_slot(1);
    vp.poll(300);
    let second = vp.slot(1);
    let p = timer_payload(&second);
    assert_eq!((p.timer_index, p.expiration_time, p.delivery_time), (1, 101, 300));
    assert!(!second.header.message_flags.message_pending());
}

#[test]
fn direct_mode_asserts_the_apic_vector_12_2() {
    let mut vp = Vp::new(); // no SynIC pages needed
    let (c2, n2) = (HvX64Msr::stimer_config(2).unwrap(), HvX64Msr::stimer_count(2).unwrap());
    vp.wr_at(n2, 1000, 0).unwrap();
    let direct = config(|c| c.with_enable(true).with_periodic(true).with_direct_mode(true).with_apic_vector(0x77));
    vp.wr_at(c2, direct, 0).unwrap();
    vp.poll(1000);
    assert_eq!(vp.take_raised(), vec![0x77]);
    assert_eq!(vp.s.next_due(), Some(2000), "direct timers never wait");
    vp.poll(2000);
    assert_eq!(vp.take_raised(), vec![0x77]);
}

#[test]
fn lazy_timers_fire_like_the_others_12_1_4() {
    let mut vp = Vp::enabled();
    vp.sint(1, 0x4_0020);
    vp.wr_at(HvX64Msr::stimer_count(0).unwrap(), 10, 0).unwrap();
    let lazy = config(|c| c.with_enable(true).with_lazy(true).with_sintx(1));
    vp.wr_at(HvX64Msr::stimer_config(0).unwrap(), lazy, 0).unwrap();
    assert_eq!(vp.rd(HvX64Msr::stimer_config(0).unwrap()), lazy);
    vp.poll(10);
    assert_eq!(timer_payload(&vp.slot(1)).expiration_time, 10);
}

#[test]
fn writing_the_config_drops_a_waiting_message_12_5_1() {
    let mut vp = Vp::enabled();
    vp.sint(1, 0x4_0020);
    vp.s.post(1, &timer_message(3, 0, 0), &mut vp.ram, &mut vp.raised);
    vp.wr_at(HvX64Msr::stimer_count(0).unwrap(), 10, 0).unwrap();
    vp.wr_at(HvX64Msr::stimer_config(0).unwrap(), config(|c| c.with_enable(true).with_sintx(1)), 0).unwrap();
    vp.poll(20);
    vp.wr_at(HvX64Msr::stimer_config(0).unwrap(), 0, 30).unwrap();
    vp.clear_slot(1);
    vp.wr_at(HvX64Msr::EOM, 0, 40).unwrap();
    assert!(vp.slot(1).is_empty());
}

#[test]
fn messages_wait_for_scontrol_and_simp_11_8_1() {
    let mut vp = Vp::new();
    vp.sint(1, 0x4_0020);
    vp.wr_at(HvX64Msr::stimer_count(0).unwrap(), 10, 0).unwrap();
    vp.wr_at(HvX64Msr::stimer_config(0).unwrap(), config(|c| c.with_enable(true).with_sintx(1)), 0).unwrap();
    vp.poll(20);
    vp.wr_at(HvX64Msr::SIMP, SIMP_GPN << 12 | 1, 30).unwrap();
    assert!(vp.slot(1).is_empty(), "SCONTROL still disabled");
    vp.wr_at(HvX64Msr::SCONTROL, 1, 40).unwrap();
    let p = timer_payload(&vp.slot(1));
    assert_eq!((p.expiration_time, p.delivery_time), (10, 40));
}

/// A port's message for a VP whose SynIC or SIM page is off is held, and
/// delivered when SCONTROL and the SIMP are enabled; one is held at a time
/// (TLFS 11.10.3).
#[test]
fn a_ports_message_waits_for_the_synic_to_be_enabled() {
    let mut vp = Vp::new();
    vp.sint(2, 0x50);
    let m = crate::messaging::message(0x20, 0x41, b"early");
    assert_eq!(vp.s.deliver(2, &m, &mut vp.ram, &mut vp.raised), Post::Busy);
    assert!(vp.s.holds_message());
    assert_eq!(vp.s.deliver(2, &m, &mut vp.ram, &mut vp.raised), Post::Unavailable, "one at a time");
    assert_eq!(vp.s.deliver(16, &m, &mut vp.ram, &mut vp.raised), Post::Unavailable);
    vp.wr(HvX64Msr::SIMP, SIMP_GPN << 12 | 1).unwrap();
    assert!(vp.s.holds_message(), "SCONTROL is still off");
    assert!(vp.take_raised().is_empty());
    vp.wr(HvX64Msr::SCONTROL, 1).unwrap();
    assert!(!vp.s.holds_message());
    assert_eq!(vp.slot(2), m);
    assert_eq!(vp.take_raised(), vec![0x50]);
}
