//! The `hyperv-testdev` through the exit handler: its routes, echo and
//! event connections driven as kvm-unit-tests drive QEMU's.

use super::*;
use crate::testdev::{PORT, Request, ctl};
use tlfs::hypercall::{HvCallCode, HvHypercallInput, HvInputPostMessage};
use tlfs::zerocopy::IntoBytes;

fn on(vp: u32, mut body: HvMessageBody) -> HvMessageBody {
    match &mut body {
        HvMessageBody::X64IoPortIntercept(m) => m.header.vp_index = vp,
        HvMessageBody::MsrIntercept(m) => m.header.vp_index = vp,
        HvMessageBody::HypercallIntercept(m) => m.header.vp_index = vp,
        _ => unreachable!(),
    }
    body
}

/// `out dx, eax` of a request on VP `vp`.
fn out(vp: u32, conn: u8, ctl: u8, target_vp: u8, sint: u8) -> HvMessageBody {
    let value = Request { conn, ctl, vp: target_vp, sint }.encode();
    let header = long_header(0x1000, 1, HvInterceptAccessType::WRITE);
    on(vp, port_access(header, PORT, HvX64IoPortAccessInfo::new().with_access_size(4), u64::from(value), [0; 3]))
}

/// A 2-VP partition with the SynIC and, if `testdev`, the device; on each
/// VP: its APIC enabled, SCONTROL on, the SIM page at 0x5000 + vp * 0x2000
/// and the SIEF page a page above, SINT2 vector 0x51 and SINT3 0x52 (both
/// auto-EOI), SINT5 0x60, SINT6 0x61 (auto-EOI), SINT7 0x62 polled.
fn testdev_vmm(g: &mut Fake, testdev: bool) -> Vmm {
    use sysimage::{Enlightenment, Enlightenments};
    let set = Enlightenments::HYPERV.with(Enlightenment::Synic, true);
    let profile = crate::profile::EnlightenmentProfile::new(set, 2, 1).unwrap();
    let mut vmm = Vmm::with_config(VmmConfig { profile, vps: 2, testdev, ..VmmConfig::default() });
    for vp in 0..2u32 {
        let _ = vmm.irq.mmio_write(vp, 0xfee0_00f0, 4, 0x1ff, 0);
        let base = 0x5000 + u64::from(vp) * 0x2000;
        for (number, value) in [
            (0x4000_0080, 1),             // SCONTROL
            (0x4000_0083, base | 1),      // SIMP
            (0x4000_0082, base + 0x1001), // SIEFP
            (0x4000_0092, 0x2_0051),      // SINT2
            (0x4000_0093, 0x2_0052),      // SINT3
            (0x4000_0095, 0x60),          // SINT5
            (0x4000_0096, 0x2_0061),      // SINT6, auto-EOI
            (0x4000_0097, 0x4_0062),      // SINT7, polling
        ] {
            let (a, _) = run(&mut vmm, g, on(vp, msr(number, true, value, true)));
            assert!(matches!(a, Action::Resume(_)), "{number:#x}: {a:?}");
        }
    }
    vmm
}

fn status(a: &Action) -> u64 {
    get(a, HvRegisterName::RAX).expect("a hypercall status")
}

/// Routes to VP 1's SINTs fired from VP 0: VP 1 takes the vector (kicked),
/// auto-EOI leaves it out of the ISR, a polled SINT raises nothing.
#[test]
fn sint_routes_fired_on_one_vp_interrupt_another() {
    let mut g = Fake::new();
    let mut vmm = testdev_vmm(&mut g, true);
    for sint in [5, 6, 7] {
        let (a, ev) = run(&mut vmm, &mut g, out(0, 0, ctl::SINT_ROUTE_CREATE, 1, sint));
        assert_eq!(get(&a, HvRegisterName::RIP), Some(0x1001));
        assert!(ev.is_empty(), "{ev:?}");
    }
    vmm.effects = Effects::default();
    let (a, _) = run(&mut vmm, &mut g, out(0, 0, ctl::SINT_ROUTE_SET_SINT, 1, 5));
    assert_eq!(posted_vector(&a), None, "not VP 0's");
    assert!(vmm.effects.kick.contains(1), "VP 1 kicked");
    let v = vmm.interruption_for(1).map(|v| tlfs::HvX64PendingInterruptionRegister::from_bits(v).interruption_vector());
    assert_eq!(v, Some(0x60));
    assert!(vmm.irq.lapic(1).unwrap().isr().get(0x60), "in service until EOI");
    let _ = vmm.irq.mmio_write(1, 0xfee0_00b0, 4, 0, 0);

    let (_, _) = run(&mut vmm, &mut g, out(0, 0, ctl::SINT_ROUTE_SET_SINT, 1, 6));
    let v = vmm.interruption_for(1).map(|v| tlfs::HvX64PendingInterruptionRegister::from_bits(v).interruption_vector());
    assert_eq!(v, Some(0x61));
    assert!(!vmm.irq.lapic(1).unwrap().isr().get(0x61), "auto-EOI: never in service");

    let (_, _) = run(&mut vmm, &mut g, out(0, 0, ctl::SINT_ROUTE_SET_SINT, 1, 7));
    assert!(!vmm.irq.has_pending(1), "a polled SINT interrupts nobody");
    // A destroyed route no longer fires, and says so.
    let (_, _) = run(&mut vmm, &mut g, out(0, 0, ctl::SINT_ROUTE_DESTROY, 1, 5));
    let (a, ev) = run(&mut vmm, &mut g, out(0, 0, ctl::SINT_ROUTE_SET_SINT, 1, 5));
    assert_eq!(get(&a, HvRegisterName::RIP), Some(0x1001), "the VP goes on");
    assert!(matches!(ev[..], [Event::TestDevRefused { why: "no such route", .. }]), "{ev:?}");
    assert!(!vmm.irq.has_pending(1));
}

/// A message posted on an echo connection comes back into the (VP, SINT)
/// slot; a second finds the slot busy (MessagePending) and is held until
/// EOM; a third, while one is held, is INSUFFICIENT_BUFFERS. The broker is
/// never asked.
#[test]
fn message_connections_echo_with_a_busy_slot_and_redelivery() {
    let mut g = Fake::new();
    let mut vmm = testdev_vmm(&mut g, true);
    let mut broker = FakeBroker::new();
    run(&mut vmm, &mut g, out(0, 5, ctl::MSG_CONN_CREATE, 0, 2));
    let post = HvHypercallInput::new().with_call_code(HvCallCode::POST_MESSAGE.0).into_bits();
    let put = |g: &mut Fake, message_type: u32, payload: &[u8]| {
        let mut input =
            HvInputPostMessage { connection_id: 5, reserved: 0, message_type, payload_size: 0, payload: [0; 240] };
        input.payload_size = payload.len() as u32;
        input.payload[..payload.len()].copy_from_slice(payload);
        g.put(0x9000, input.as_bytes());
    };
    let call = |vmm: &mut Vmm, g: &mut Fake, broker: &mut FakeBroker| {
        vmm.handle_with(&HvMessage::from_body(&hypercall(post, 0x9000), 0), g, 0, broker, |_| {})
    };
    put(&mut g, 0x42, b"ping");
    let a = call(&mut vmm, &mut g, &mut broker);
    assert_eq!(status(&a), 0);
    assert_eq!(posted_vector(&a), Some(0x51), "SINT2's vector rides on the reply");
    let slot = 0x5000 + 2 * 256;
    assert_eq!(&g.ram[slot..slot + 4], &0x42u32.to_le_bytes());
    assert_eq!(g.ram[slot + 4], 4);
    assert_eq!(&g.ram[slot + 16..slot + 20], b"ping");

    put(&mut g, 0x43, b"pong");
    let a = call(&mut vmm, &mut g, &mut broker);
    assert_eq!(status(&a), 0, "taken: held for the busy slot");
    assert_eq!(g.ram[slot + 5] & 1, 1, "MessagePending");
    assert_eq!(&g.ram[slot..slot + 4], &0x42u32.to_le_bytes(), "the first untouched");
    let a = call(&mut vmm, &mut g, &mut broker);
    assert_eq!(status(&a), u64::from(tlfs::HvStatus::INSUFFICIENT_BUFFERS.0), "one is held already");

    g.ram[slot..slot + 4].fill(0);
    let (a, _) = run(&mut vmm, &mut g, msr(0x4000_0084, true, 0, true));
    assert_eq!(posted_vector(&a), Some(0x51), "redelivered on EOM");
    assert_eq!(&g.ram[slot..slot + 4], &0x43u32.to_le_bytes());
    assert_eq!(&g.ram[slot + 16..slot + 20], b"pong");
    assert!(broker.posts.is_empty(), "local connections never reach the broker");

    // Destroyed: the ID is the broker's again.
    run(&mut vmm, &mut g, out(0, 5, ctl::MSG_CONN_DESTROY, 0, 0));
    put(&mut g, 0x44, b"x");
    let a = call(&mut vmm, &mut g, &mut broker);
    assert_eq!(status(&a), 0);
    assert_eq!(broker.posts, vec![(5, 0x44, b"x".to_vec())]);
}

/// HvSignalEvent on an event connection sets flag `conn` of its SINT:
/// clear to set interrupts, set again does not; the port has one flag;
/// a masked SINT is INVALID_SYNIC_STATE.
#[test]
fn event_connections_set_their_flag_once() {
    let mut g = Fake::new();
    let mut vmm = testdev_vmm(&mut g, true);
    run(&mut vmm, &mut g, out(0, 9, ctl::EVT_CONN_CREATE, 1, 3));
    run(&mut vmm, &mut g, out(0, 10, ctl::EVT_CONN_CREATE, 0, 4)); // SINT4 is masked
    let signal = HvHypercallInput::new().with_call_code(HvCallCode::SIGNAL_EVENT.0).with_fast(true).into_bits();
    vmm.effects = Effects::default();
    let (a, _) = run(&mut vmm, &mut g, hypercall(signal, 9));
    assert_eq!(status(&a), 0);
    // VP 1's SIEF page (0x8000): SINT3's flags from byte 3 * 256; flag 9 is byte 1, bit 1.
    assert_eq!(g.ram[0x8000 + 3 * 256 + 1], 0x02);
    assert!(vmm.effects.kick.contains(1));
    let v = vmm.interruption_for(1).map(|v| tlfs::HvX64PendingInterruptionRegister::from_bits(v).interruption_vector());
    assert_eq!(v, Some(0x52));
    let (a, _) = run(&mut vmm, &mut g, hypercall(signal, 9));
    assert_eq!(status(&a), 0);
    assert!(!vmm.irq.has_pending(1), "already set: no interrupt");
    let (a, _) = run(&mut vmm, &mut g, hypercall(signal, 1 << 32 | 9));
    assert_eq!(status(&a), u64::from(tlfs::HvStatus::INVALID_PARAMETER.0), "flag 1 of a one-flag port");
    let (a, _) = run(&mut vmm, &mut g, hypercall(signal, 10));
    assert_eq!(status(&a), u64::from(tlfs::HvStatus::INVALID_SYNIC_STATE.0));
    let (a, _) = run(&mut vmm, &mut g, hypercall(signal, 11));
    assert_eq!(status(&a), u64::from(tlfs::HvStatus::INVALID_CONNECTION_ID.0), "not the device's: no broker");
}

/// The 11.11 tables' INVALID_SYNIC_STATE: a post to a VP whose SCONTROL
/// or SIM page is off, a signal to one whose SCONTROL or SIEF page is off;
/// nothing is delivered or held, and once they are on again the same call
/// succeeds. A masked SINT takes messages (its interrupt is lost).
#[test]
fn posts_and_signals_to_a_disabled_synic_are_invalid_synic_state() {
    let mut g = Fake::new();
    let mut vmm = testdev_vmm(&mut g, true);
    let mut broker = FakeBroker::new();
    run(&mut vmm, &mut g, out(0, 5, ctl::MSG_CONN_CREATE, 1, 2));
    run(&mut vmm, &mut g, out(0, 6, ctl::MSG_CONN_CREATE, 0, 4)); // SINT4 is masked
    run(&mut vmm, &mut g, out(0, 9, ctl::EVT_CONN_CREATE, 1, 3));
    let input =
        HvInputPostMessage { connection_id: 5, reserved: 0, message_type: 0x42, payload_size: 1, payload: [0; 240] };
    g.put(0x9000, input.as_bytes());
    g.put(0x9200, HvInputPostMessage { connection_id: 6, ..input }.as_bytes());
    let post = HvHypercallInput::new().with_call_code(HvCallCode::POST_MESSAGE.0).into_bits();
    let signal = HvHypercallInput::new().with_call_code(HvCallCode::SIGNAL_EVENT.0).with_fast(true).into_bits();
    let mut call = |vmm: &mut Vmm, g: &mut Fake, rcx: u64, rdx: u64| {
        status(&vmm.handle_with(&HvMessage::from_body(&hypercall(rcx, rdx), 0), g, 0, &mut broker, |_| {}))
    };
    let state = u64::from(tlfs::HvStatus::INVALID_SYNIC_STATE.0);
    let set = |vmm: &mut Vmm, g: &mut Fake, number: u32, value: u64| {
        let (a, _) = run(vmm, g, on(1, msr(number, true, value, true)));
        assert!(matches!(a, Action::Resume(_)), "{a:?}");
    };
    // VP 1's SIM page at 0x7000, SIEF page at 0x8000.
    let (slot, flags) = (0x7000 + 2 * 256, 0x8000 + 3 * 256 + 1);
    set(&mut vmm, &mut g, 0x4000_0083, 0x7000); // SIMP off
    assert_eq!(call(&mut vmm, &mut g, post, 0x9000), state, "SIM page off");
    assert_eq!(call(&mut vmm, &mut g, signal, 9), 0, "events do not need the SIM page");
    assert!(!vmm.synthetic.synic(1).unwrap().holds_message(), "nothing held");
    set(&mut vmm, &mut g, 0x4000_0083, 0x7001);
    assert_eq!(&g.ram[slot..slot + 4], &[0; 4], "nothing delivered when it came back");
    g.ram[flags] = 0;
    set(&mut vmm, &mut g, 0x4000_0082, 0x8000); // SIEFP off
    assert_eq!(call(&mut vmm, &mut g, signal, 9), state, "SIEF page off");
    assert_eq!(call(&mut vmm, &mut g, post, 0x9000), 0, "messages do not need the SIEF page");
    assert_eq!(&g.ram[slot..slot + 4], &0x42u32.to_le_bytes());
    g.ram[slot..slot + 4].fill(0);
    set(&mut vmm, &mut g, 0x4000_0082, 0x8001);
    assert_eq!(g.ram[flags], 0, "no flag set while it was off");
    set(&mut vmm, &mut g, 0x4000_0080, 0); // SCONTROL off
    assert_eq!(call(&mut vmm, &mut g, post, 0x9000), state, "SynIC off");
    assert_eq!(call(&mut vmm, &mut g, signal, 9), state, "SynIC off");
    set(&mut vmm, &mut g, 0x4000_0080, 1);
    assert_eq!(call(&mut vmm, &mut g, post, 0x9000), 0);
    assert_eq!(call(&mut vmm, &mut g, signal, 9), 0);
    assert_eq!(g.ram[flags], 0x02);
    assert_eq!(call(&mut vmm, &mut g, post, 0x9200), 0, "a masked SINT takes messages");
    assert_eq!(&g.ram[0x5000 + 4 * 256..0x5000 + 4 * 256 + 4], &0x42u32.to_le_bytes());
    assert!(broker.posts.is_empty() && broker.signals.is_empty(), "all the device's");
}

/// Without the manifest switch port 0x3000 is nobody's; with it, bad
/// requests are logged and the VP goes on.
#[test]
fn the_device_is_there_only_when_given_and_bad_requests_only_log() {
    let mut g = Fake::new();
    let mut vmm = testdev_vmm(&mut g, false);
    assert!(vmm.testdev.is_none());
    let (a, ev) = run(&mut vmm, &mut g, out(0, 0, ctl::SINT_ROUTE_CREATE, 1, 5));
    assert_eq!(get(&a, HvRegisterName::RIP), Some(0x1001));
    assert!(ev.is_empty());
    let mut vmm = testdev_vmm(&mut g, true);
    for (vp, sint) in [(2, 0), (0xff, 0), (0, 16)] {
        let (a, ev) = run(&mut vmm, &mut g, out(0, 0, ctl::SINT_ROUTE_CREATE, vp, sint));
        assert_eq!(get(&a, HvRegisterName::RIP), Some(0x1001));
        assert!(matches!(ev[..], [Event::TestDevRefused { .. }]), "{ev:?}");
        assert!(ev[0].to_string().starts_with("hyperv-testdev request 0x"), "{}", ev[0]);
    }
}

/// The loop skips its own poll of a partition after a hypercall, as after
/// CPUID and HLT (`serve`; the broker's are delivered and polled apart):
/// a local post delivered or held, a signal, an IPI, a spin wait and a
/// refused call leave nothing for a poll at the same TSC.
#[test]
fn after_a_hypercall_a_poll_at_the_same_tsc_finds_nothing_to_do() {
    let mut g = Fake::new();
    let mut vmm = testdev_vmm(&mut g, true);
    run(&mut vmm, &mut g, out(0, 5, ctl::MSG_CONN_CREATE, 1, 2));
    run(&mut vmm, &mut g, out(0, 9, ctl::EVT_CONN_CREATE, 1, 3));
    let input =
        HvInputPostMessage { connection_id: 5, reserved: 0, message_type: 0x42, payload_size: 4, payload: [7; 240] };
    g.put(0x9000, input.as_bytes());
    let code =
        |code: HvCallCode, fast: bool| HvHypercallInput::new().with_call_code(code.0).with_fast(fast).into_bits();
    let mut ipi = hypercall(code(HvCallCode::SEND_SYNTHETIC_CLUSTER_IPI, true), 0x40);
    if let HvMessageBody::HypercallIntercept(m) = &mut ipi {
        m.r8 = 0b10;
    }
    let calls = [
        (hypercall(code(HvCallCode::POST_MESSAGE, false), 0x9000), 0),
        (hypercall(code(HvCallCode::POST_MESSAGE, false), 0x9000), 0),
        (hypercall(code(HvCallCode::POST_MESSAGE, false), 0x9000), tlfs::HvStatus::INSUFFICIENT_BUFFERS.0),
        (hypercall(code(HvCallCode::SIGNAL_EVENT, true), 9), 0),
        (ipi, 0),
        (hypercall(code(HvCallCode::NOTIFY_LONG_SPIN_WAIT, true), 1), 0),
        (hypercall(0xfff0, 0), tlfs::HvStatus::INVALID_HYPERCALL_CODE.0),
    ];
    for (now, (body, expected)) in calls.iter().enumerate() {
        assert!(Vmm::leaves_devices_alone(body));
        let now = 1000 * now as u64;
        let a = vmm.handle(&HvMessage::from_body(body, 0), &mut g, now, |_| {});
        assert_eq!(status(&a), u64::from(*expected), "{body:?}");
        let before = format!("{vmm:?}");
        vmm.poll_with(now, &mut g);
        assert_eq!(format!("{vmm:?}"), before, "{body:?}");
    }
    assert!(vmm.synthetic.holds_message(), "the second post waits for its slot");
    assert!(vmm.irq.has_pending(1), "the IPI and VP 1's SINTs");
}

/// An XMM fast call's input is read from the intercept's XMM registers:
/// HvCallSendSyntheticClusterIpiEx with its VP set's bank mask in XMM0's
/// low half and bank 0 in its high half.
#[test]
fn xmm_fast_input_comes_from_the_intercept() {
    let mut g = Fake::new();
    let mut vmm = testdev_vmm(&mut g, false);
    let control = HvHypercallInput::new()
        .with_call_code(HvCallCode::SEND_SYNTHETIC_CLUSTER_IPI_EX.0)
        .with_fast(true)
        .with_variable_header_size(1)
        .into_bits();
    let ipi = |bank: u64| {
        let mut body = hypercall(control, 0x44);
        if let HvMessageBody::HypercallIntercept(m) = &mut body {
            // R8: the set's format (sparse 4K); XMM0: the valid bank mask, bank 0.
            m.xmm[0] = [1, bank];
        }
        body
    };
    let (a, _) = run(&mut vmm, &mut g, ipi(0b10));
    assert_eq!((status(&a), posted_vector(&a)), (0, None));
    assert_eq!(vmm.effects.kick, crate::irq::VpSet(0b10));
    assert!(vmm.irq.lapic(1).unwrap().irr().get(0x44), "VP 1's");
    vmm.effects = Effects::default();
    let (a, _) = run(&mut vmm, &mut g, ipi(0b01));
    assert_eq!((status(&a), posted_vector(&a)), (0, Some(0x44)), "the caller's own, on its reply");
    assert_eq!(vmm.effects.kick, crate::irq::VpSet(0b01));
}
