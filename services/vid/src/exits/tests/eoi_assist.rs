//! EOI assist (TLFS 10.3.5) through the exit handler: the VP assist page's
//! `NoEoiRequired` set with an injected interrupt, the EOI the guest does by
//! clearing it retired at the next exit, and the bit taken back when an
//! interrupt waits behind the one in service.

use super::*;

const ASSIST: usize = 0x6000;
const ICR: u32 = 0x4000_0071;
const EOI: u32 = 0x4000_0070;

/// One VP with the `hyperv` profile (the APIC MSRs), its APIC enabled and,
/// if `page`, its assist page at 0x6000.
fn assisted(g: &mut Fake, page: bool) -> Vmm {
    let profile = crate::profile::EnlightenmentProfile::new(sysimage::Enlightenments::HYPERV, 1, 1).unwrap();
    let mut vmm = Vmm::with_config(VmmConfig { profile, ..VmmConfig::default() });
    let _ = vmm.irq.mmio_write(0, 0xfee0_00f0, 4, 0x1ff, 0);
    if page {
        let (a, _) = run(&mut vmm, g, msr(0x4000_0073, true, ASSIST as u64 | 1, true));
        assert!(matches!(a, Action::Resume(_)), "{a:?}");
    }
    vmm
}

/// A self-IPI of `vector` through HV_X64_MSR_ICR (fixed, shorthand self).
fn self_ipi(vector: u8) -> HvMessageBody {
    msr(ICR, true, u64::from(vector) | 1 << 18, true)
}

fn no_eoi_required(g: &Fake) -> bool {
    g.ram[ASSIST] & 1 != 0
}

fn in_service(vmm: &Vmm, vector: u8) -> bool {
    vmm.irq.lapic(0).unwrap().isr().get(vector)
}

/// A guest that clears the bit instead of writing the EOI takes no EOI
/// exit: the vector leaves the ISR at its next exit, and the next
/// interrupt is delivered (and assisted) as the first was.
#[test]
fn a_cleared_no_eoi_required_is_the_eoi() {
    let mut g = Fake::new();
    let mut vmm = assisted(&mut g, true);
    let (a, _) = run(&mut vmm, &mut g, self_ipi(0x40));
    assert_eq!(posted_vector(&a), Some(0x40));
    assert!(no_eoi_required(&g) && in_service(&vmm, 0x40));
    // The guest's `btr`; the next exit (any) retires the vector.
    g.ram[ASSIST] = 0;
    let (a, _) = run(&mut vmm, &mut g, self_ipi(0x41));
    assert!(!in_service(&vmm, 0x40), "the lazy EOI was done");
    assert_eq!(posted_vector(&a), Some(0x41), "the next interrupt is delivered");
    assert!(no_eoi_required(&g) && in_service(&vmm, 0x41));
    // The poll sees it too, without an exit of the VP.
    g.ram[ASSIST] = 0;
    vmm.poll_with(0, &mut g);
    assert!(!in_service(&vmm, 0x41));
    assert_eq!(vmm.stats.lazy_eois, 2);
}

/// An interrupt requested behind the one in service takes the bit back at
/// the VP's exit, so the guest writes the EOI, which reveals it.
#[test]
fn a_request_behind_the_vector_in_service_takes_the_bit_back() {
    let mut g = Fake::new();
    let mut vmm = assisted(&mut g, true);
    run(&mut vmm, &mut g, self_ipi(0x50));
    assert!(no_eoi_required(&g));
    let (a, _) = run(&mut vmm, &mut g, self_ipi(0x30));
    assert_eq!(posted_vector(&a), None, "below the one in service");
    assert!(!no_eoi_required(&g), "taken back");
    assert!(in_service(&vmm, 0x50));
    // The guest's `btr` finds it clear and writes the EOI.
    let (a, _) = run(&mut vmm, &mut g, msr(EOI, true, 0, true));
    assert!(!in_service(&vmm, 0x50));
    assert_eq!(posted_vector(&a), Some(0x30), "revealed by the EOI");
    assert!(no_eoi_required(&g), "nothing behind it now");
    // A higher one nests: it rides on the reply, the bit still counts one.
    let (a, _) = run(&mut vmm, &mut g, self_ipi(0x60));
    assert_eq!(posted_vector(&a), Some(0x60));
    assert!(no_eoi_required(&g));
    g.ram[ASSIST] = 0; // 0x60's handler: no EOI exit
    let (_, _) = run(&mut vmm, &mut g, msr(EOI, true, 0, true)); // 0x30's: the bit was clear
    assert_eq!(vmm.irq.lapic(0).unwrap().isr().highest(), None, "both retired");
}

/// Without the assist page nothing is written; a page written again (zeroed)
/// withdraws the outstanding lazy EOI (the guest writes it); a bit left set
/// with nothing outstanding is cleared before it could swallow an EOI.
#[test]
fn the_bit_follows_the_page() {
    let mut g = Fake::new();
    let mut vmm = assisted(&mut g, false);
    g.ram[ASSIST] = 0xff;
    let (a, _) = run(&mut vmm, &mut g, self_ipi(0x40));
    assert_eq!(posted_vector(&a), Some(0x40));
    assert_eq!(g.ram[ASSIST], 0xff, "no page, no bit");
    run(&mut vmm, &mut g, msr(EOI, true, 0, true));

    let mut vmm = assisted(&mut g, true);
    run(&mut vmm, &mut g, self_ipi(0x40));
    assert!(no_eoi_required(&g));
    run(&mut vmm, &mut g, msr(0x4000_0073, true, ASSIST as u64 | 1, true));
    assert!(!no_eoi_required(&g) && in_service(&vmm, 0x40), "withdrawn, not done");
    run(&mut vmm, &mut g, msr(EOI, true, 0, true));
    assert!(!in_service(&vmm, 0x40));
    // A stale bit, and an interrupt that is not offered (one waits behind it).
    g.ram[ASSIST] = 1;
    vmm.irq.lapic_mut(0).unwrap().accept(0x20, false);
    let (a, _) = run(&mut vmm, &mut g, self_ipi(0x40));
    assert_eq!(posted_vector(&a), Some(0x40));
    assert!(!no_eoi_required(&g), "cleared: 0x40 needs its EOI exit");
}
