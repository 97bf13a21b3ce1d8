use super::*;
use crate::irq::ioapic::{IOAPIC_BASE, IOREGSEL, IOWIN, REG_REDIRECTION};
use crate::irq::lapic::{APIC_DEFAULT_BASE, reg};
use crate::irq::pic::{MASTER_CMD, MASTER_DATA, SLAVE_DATA};
use crate::irq::pit::{CHANNEL0, MODE_PORT, PIT_HZ};

/// 10 TSC ticks per PIT tick; the APIC timer at 1/10 of the TSC.
const TSC_HZ: u64 = PIT_HZ * 10;
const APIC: u64 = APIC_DEFAULT_BASE;
const OPEN: Interruptibility = Interruptibility { rflags_if: true, shadow: false, nmi_blocked: false };

fn platform(vps: u32) -> Interrupts {
    let mut p = Interrupts::new(Config { vps, tsc_hz: TSC_HZ, apic_hz: TSC_HZ / 10 });
    for vp in 0..vps {
        apic_write(&mut p, vp, reg::SVR, 0x1ff);
    }
    p
}

fn apic_write(p: &mut Interrupts, vp: u32, offset: u32, value: u32) -> Effects {
    p.mmio_write(vp, APIC + u64::from(offset), 4, u64::from(value), 0).unwrap()
}

fn ipi(p: &mut Interrupts, vp: u32, dest: u8, low: u32) -> Effects {
    apic_write(p, vp, reg::ICR_HIGH, u32::from(dest) << 24);
    apic_write(p, vp, reg::ICR_LOW, low)
}

fn route(p: &mut Interrupts, pin: u8, low: u32, dest: u8) -> Effects {
    p.mmio_write(0, IOAPIC_BASE + IOREGSEL, 4, u64::from(REG_REDIRECTION + 2 * pin + 1), 0);
    p.mmio_write(0, IOAPIC_BASE + IOWIN, 4, u64::from(dest) << 24, 0);
    p.mmio_write(0, IOAPIC_BASE + IOREGSEL, 4, u64::from(REG_REDIRECTION + 2 * pin), 0);
    p.mmio_write(0, IOAPIC_BASE + IOWIN, 4, u64::from(low), 0).unwrap()
}

fn kicked(vps: &[u32]) -> VpSet {
    let mut set = VpSet::default();
    vps.iter().for_each(|&vp| set.insert(vp));
    set
}

/// Linux's 8259 init with vectors 0x30/0x38, then all masked but `imr`'s clear bits.
fn init_pic(p: &mut Interrupts, imr: u8) {
    for (port, value) in [(MASTER_CMD, 0x11), (MASTER_DATA, 0x30), (MASTER_DATA, 4), (MASTER_DATA, 1)] {
        p.port_write(port, 1, value, 0);
    }
    for (port, value) in [(0xa0, 0x11), (SLAVE_DATA, 0x38), (SLAVE_DATA, 2), (SLAVE_DATA, 1)] {
        p.port_write(port, 1, value, 0);
    }
    p.port_write(MASTER_DATA, 1, u64::from(imr), 0);
    p.port_write(SLAVE_DATA, 1, 0xff, 0);
}

/// PIT channel 0 in mode 2 with `count`.
fn pit_rate(p: &mut Interrupts, count: u16) {
    p.port_write(MODE_PORT, 1, 0x34, 0);
    let [lo, hi] = count.to_le_bytes();
    p.port_write(CHANNEL0, 1, u64::from(lo), 0);
    p.port_write(CHANNEL0, 1, u64::from(hi), 0);
}

#[test]
fn mmio_routing() {
    let mut p = platform(2);
    assert_eq!(p.mmio_read(0, APIC + 0x20, 4, 0), Some(0));
    assert_eq!(p.mmio_read(1, APIC + 0x20, 4, 0), Some(1 << 24));
    assert_eq!(p.mmio_read(1, IOAPIC_BASE + IOWIN, 4, 0), Some(0));
    assert_eq!(p.mmio_read(0, 0xfed0_0000, 4, 0), None);
    assert!(p.claims_mmio(0, APIC + 0xff0) && p.claims_mmio(0, IOAPIC_BASE) && !p.claims_mmio(0, 0x1000));
    // A relocated page follows IA32_APIC_BASE, for that VP only.
    p.msr_write(1, lapic::MSR_APIC_BASE, 0xfed1_0800, 0).unwrap().unwrap();
    assert_eq!(p.mmio_read(1, 0xfed1_0020, 4, 0), Some(1 << 24));
    assert_eq!(p.mmio_read(0, 0xfed1_0020, 4, 0), None);
    assert_eq!(p.mmio_read(1, APIC + 0x20, 4, 0), Some(0xffff_ffff));
    assert_eq!(p.mmio_write(1, APIC + 0x80, 4, 0x20, 0), Some(Effects::default()));
    assert_eq!(p.lapic(1).unwrap().tpr(), 0);
    assert_eq!(p.mmio_read(9, APIC, 4, 0), None);
}

#[test]
fn port_routing() {
    let mut p = platform(1);
    init_pic(&mut p, 0xfa);
    assert_eq!(p.port_read(MASTER_CMD, 2, 0), Some(0xfa00));
    p.port_write(0x4d0, 2, 0x0e00, 0);
    assert_eq!(p.port_read(0x4d0, 2, 0), Some(0x0e00));
    assert_eq!(p.port_read(0x3f8, 1, 0), None);
    assert_eq!(p.port_write(0x80, 1, 0, 0), None);
    p.port_write(MODE_PORT, 1, 0x34, 0);
    p.port_write(CHANNEL0, 1, 100, 0);
    p.port_write(CHANNEL0, 1, 0, 0);
    assert_eq!(p.port_read(CHANNEL0, 1, 200), Some(80));
}

#[test]
fn fixed_ipis_and_shorthands() {
    let mut p = platform(3);
    assert_eq!(ipi(&mut p, 0, 1, 0x4040).kick, kicked(&[1]));
    assert_eq!(p.highest_pending(1, OPEN), Some(Interrupt::Fixed(0x40)));
    assert_eq!(p.highest_pending(0, OPEN), None);
    assert_eq!(ipi(&mut p, 0, 0, 0xc_4041).kick, kicked(&[1, 2]));
    assert_eq!(ipi(&mut p, 2, 0, 0x4_4042).kick, kicked(&[2]));
    assert_eq!(ipi(&mut p, 2, 0, 0x8_4043).kick, kicked(&[0, 1, 2]));
    assert_eq!(ipi(&mut p, 0, 0xff, 0x4044).kick, kicked(&[0, 1, 2]));
    assert_eq!(p.highest_pending(2, OPEN), Some(Interrupt::Fixed(0x44)));
    assert_eq!(p.acknowledge(2, Interrupt::Fixed(0x44)), 0x44);
    // 0x43 waits for the EOI of its class.
    assert_eq!(p.highest_pending(2, OPEN), None);
    // CR8 is TPR[7:4]: class 4 blocks VP 1's 0x40..0x44.
    p.set_cr8(1, 4);
    assert_eq!(p.lapic(1).unwrap().tpr(), 0x40);
    assert_eq!(p.highest_pending(1, OPEN), None);
    p.set_cr8(1, 3);
    assert_eq!(p.highest_pending(1, OPEN), Some(Interrupt::Fixed(0x44)));
    // Logical (flat) to VPs 1 and 2; lowest priority picks one.
    apic_write(&mut p, 1, reg::LDR, 0x0200_0000);
    apic_write(&mut p, 2, reg::LDR, 0x0400_0000);
    assert_eq!(ipi(&mut p, 0, 0x06, 0x4850).kick, kicked(&[1, 2]));
    assert_eq!(ipi(&mut p, 0, 0x06, 0x4951).kick, kicked(&[1]));
    // Nobody has APIC ID 7.
    assert_eq!(ipi(&mut p, 0, 7, 0x4052).kick, kicked(&[]));
}

#[test]
fn nmi_ipi() {
    let mut p = platform(2);
    ipi(&mut p, 0, 1, 0x4400);
    let closed = Interruptibility { rflags_if: false, ..OPEN };
    assert_eq!(p.highest_pending(1, closed), Some(Interrupt::Nmi));
    assert_eq!(p.highest_pending(1, Interruptibility { nmi_blocked: true, ..OPEN }), None);
    assert!(p.has_pending(1));
    assert_eq!(p.acknowledge(1, Interrupt::Nmi), 2);
    assert!(!p.has_pending(1));
}

#[test]
fn ap_startup_init_sipi_sipi() {
    let mut p = platform(3);
    assert_eq!(p.waiting_for_sipi(), kicked(&[1, 2]));
    let init = ipi(&mut p, 0, 1, 0xc500);
    assert_eq!(init.init, kicked(&[1]));
    assert_eq!(ipi(&mut p, 0, 1, 0x8500), Effects::default());
    let sipi = ipi(&mut p, 0, 1, 0x4609);
    assert_eq!((sipi.sipi, sipi.sipi_vector), (kicked(&[1]), 9));
    // The second SIPI finds VP 1 running.
    assert_eq!(ipi(&mut p, 0, 1, 0x4609), Effects::default());
    assert_eq!(p.waiting_for_sipi(), kicked(&[2]));
    // INIT resets the target's APIC.
    assert!(!p.lapic(1).unwrap().enabled());
    // Broadcast INIT-SIPI to the others, as an x2APIC BSP would.
    let base = p.lapic(0).unwrap().base().with_x2apic(true).into_bits();
    p.msr_write(0, lapic::MSR_APIC_BASE, base, 0).unwrap().unwrap();
    let effects = p.msr_write(0, 0x830, 0xc_4500, 0).unwrap().unwrap();
    assert_eq!(effects.init, kicked(&[1, 2]));
    let effects = p.msr_write(0, 0x830, 0xc_4610, 0).unwrap().unwrap();
    assert_eq!((effects.sipi, effects.sipi_vector), (kicked(&[1, 2]), 0x10));
    assert_eq!(p.msr_write(0, 0x830, 1 << 13, 0), Some(Err(GeneralProtection)));
}

#[test]
fn level_interrupt_eoi_through_the_ioapic() {
    let mut p = platform(2);
    assert_eq!(route(&mut p, 10, 0x8000 | 0x3a, 1), Effects::default());
    assert_eq!(p.set_gsi(10, true).kick, kicked(&[1]));
    assert_eq!(p.highest_pending(1, OPEN), Some(Interrupt::Fixed(0x3a)));
    assert_eq!(p.acknowledge(1, Interrupt::Fixed(0x3a)), 0x3a);
    assert!(p.lapic(1).unwrap().tmr().get(0x3a));
    // Still asserted at the EOI: sent again.
    assert_eq!(apic_write(&mut p, 1, reg::EOI, 0).kick, kicked(&[1]));
    assert_eq!(p.highest_pending(1, OPEN), Some(Interrupt::Fixed(0x3a)));
    p.acknowledge(1, Interrupt::Fixed(0x3a));
    p.set_gsi(10, false);
    // Through the Hyper-V EOI MSR this time: remote IRR clears, nothing resent.
    assert_eq!(p.hv_apic_msr_write(1, HvApicMsr::Eoi, 0), Ok(Effects::default()));
    assert!(!p.ioapic().entry(10).unwrap().remote_irr());
    assert_eq!(p.set_gsi(10, true).kick, kicked(&[1]));
}

#[test]
fn pit_irq0_through_the_ioapic_pin2() {
    let mut p = platform(1);
    init_pic(&mut p, 0xff);
    pit_rate(&mut p, 1000);
    // Masked everywhere: nothing to poll for.
    assert_eq!(p.next_deadline(), None);
    route(&mut p, 2, 0x30, 0);
    assert_eq!(p.next_deadline(), Some(10_000));
    assert_eq!(p.poll(9_999), Effects::default());
    assert_eq!(p.poll(10_000).kick, kicked(&[0]));
    assert_eq!(p.highest_pending(0, OPEN), Some(Interrupt::Fixed(0x30)));
    assert_eq!(p.next_deadline(), Some(20_000));
    // The APIC timer comes first when it is sooner.
    apic_write(&mut p, 0, reg::LVT_TIMER, 0xef);
    apic_write(&mut p, 0, reg::TIMER_DIVIDE, 0xb);
    p.mmio_write(0, APIC + u64::from(reg::TIMER_INITIAL), 4, 100, 10_000).unwrap();
    assert_eq!(p.next_deadline(), Some(11_000));
    assert_eq!(p.poll(11_000).kick, kicked(&[0]));
    assert_eq!(p.highest_pending(0, OPEN), Some(Interrupt::Fixed(0xef)));
}

#[test]
fn pic_virtual_wire_to_the_bsp() {
    let mut p = platform(2);
    init_pic(&mut p, 0xfe);
    pit_rate(&mut p, 1000);
    assert_eq!(p.next_deadline(), Some(10_000));
    // LINT0 is ExtINT on the BSP only.
    assert_eq!(p.poll(10_000).kick, kicked(&[0]));
    let closed = Interruptibility { rflags_if: false, ..OPEN };
    assert_eq!(p.highest_pending(0, closed), None);
    assert!(p.has_pending(0) && !p.has_pending(1));
    assert_eq!(p.highest_pending(0, OPEN), Some(Interrupt::ExtInt(0x30)));
    assert_eq!(p.acknowledge(0, Interrupt::ExtInt(0x30)), 0x30);
    assert_eq!(p.highest_pending(0, OPEN), None);
    p.port_write(MASTER_CMD, 1, 0x20, 0);
    // Once Linux masks LINT0 the PIC reaches nobody.
    apic_write(&mut p, 0, 0x350, 0x1_0700);
    p.set_irq(0, true);
    assert_eq!(p.highest_pending(0, OPEN), None);
}

#[test]
fn a_pit_tick_while_the_pic_is_initialized_again_waits_for_its_new_vector() {
    // The test kernel's start_timer with the PIT still running from before:
    // ICW1 clears the base and the mask, and a tick comes before ICW2. The
    // PIC asks for nothing until its last ICW (no vector 0x00 through
    // LINT0, which acknowledged would leave IRQ 0 in service for ever);
    // then the tick goes out at the new base.
    let mut p = platform(2);
    init_pic(&mut p, 0xfe);
    pit_rate(&mut p, 1000);
    p.port_write(MASTER_CMD, 1, 0x11, 0);
    assert_eq!(p.pic().chips[0].base, 0);
    p.poll(10_000);
    assert!(!p.has_pending(0));
    assert_eq!(p.highest_pending(0, OPEN), None);
    for value in [0x20, 4, 1] {
        p.port_write(MASTER_DATA, 1, value, 0);
    }
    assert_eq!(p.highest_pending(0, OPEN), Some(Interrupt::ExtInt(0x20)));
    assert_eq!(p.acknowledge(0, Interrupt::ExtInt(0x20)), 0x20);
}

#[test]
fn isa_irqs_reach_both_controllers() {
    let mut p = platform(1);
    init_pic(&mut p, 0xef);
    route(&mut p, 4, 0x34, 0);
    // The BSP's LINT0 is ExtINT, and the I/O APIC also sends: both kick VP 0.
    assert_eq!(p.set_irq(4, true).kick, kicked(&[0]));
    assert_eq!(p.highest_pending(0, OPEN), Some(Interrupt::ExtInt(0x34)));
    apic_write(&mut p, 0, 0x350, 0x1_0700);
    assert_eq!(p.highest_pending(0, OPEN), Some(Interrupt::Fixed(0x34)));
}

#[test]
fn level_remote_irr_holds_until_the_eoi_and_needs_an_acceptance() {
    let mut p = platform(2);
    route(&mut p, 11, 0x8000 | 0x3b, 1);
    assert_eq!(p.set_gsi(11, true).kick, kicked(&[1]));
    p.acknowledge(1, Interrupt::Fixed(0x3b));
    // Remote IRR set: a new assertion sends nothing until the EOI.
    p.set_gsi(11, false);
    assert_eq!(p.set_gsi(11, true), Effects::default());
    assert!(p.ioapic().entry(11).unwrap().remote_irr());
    assert_eq!(apic_write(&mut p, 1, reg::EOI, 0).kick, kicked(&[1]));
    p.acknowledge(1, Interrupt::Fixed(0x3b));
    p.set_gsi(11, false);
    apic_write(&mut p, 1, reg::EOI, 0);
    // VP 1's APIC software-disabled (SDM 11.4.7.2): it accepts nothing, so
    // remote IRR stays clear and no EOI is awaited.
    apic_write(&mut p, 1, reg::SVR, 0xff);
    p.set_gsi(11, true);
    assert!(!p.ioapic().entry(11).unwrap().remote_irr());
    assert!(!p.lapic(1).unwrap().irr().get(0x3b));
    // Enabled again: the next assertion is delivered.
    apic_write(&mut p, 1, reg::SVR, 0x1ff);
    p.set_gsi(11, false);
    assert_eq!(p.set_gsi(11, true).kick, kicked(&[1]));
    assert!(p.ioapic().entry(11).unwrap().remote_irr());
}

fn to_x2apic(p: &mut Interrupts, vp: u32) {
    let base = p.lapic(vp).unwrap().base().with_x2apic(true).into_bits();
    p.msr_write(vp, lapic::MSR_APIC_BASE, base, 0).unwrap().unwrap();
}

#[test]
fn x2apic_ipis_physical_logical_cluster_and_self() {
    // SDM 11.12.10: x2APIC ID = VP index, LDR = cluster (ID >> 4) in
    // 31:16 and bit (ID & 15) in 15:0.
    let mut p = platform(3);
    for vp in 0..3 {
        to_x2apic(&mut p, vp);
    }
    let icr = |p: &mut Interrupts, from: u32, value: u64| p.msr_write(from, 0x830, value, 0).unwrap().unwrap().kick;
    assert_eq!(icr(&mut p, 0, 2 << 32 | 0x60), kicked(&[2]));
    assert_eq!(p.highest_pending(2, OPEN), Some(Interrupt::Fixed(0x60)));
    // Logical: cluster 0, members 1 and 2 (bits 1 and 2).
    assert_eq!(icr(&mut p, 0, 0b110 << 32 | 0x861), kicked(&[1, 2]));
    assert!(p.lapic(1).unwrap().irr().get(0x61));
    // Cluster 1 has nobody; bit 0 of cluster 0 is VP 0.
    assert_eq!(icr(&mut p, 0, 1 << 48 | 0b111 << 32 | 0x862), kicked(&[]));
    assert_eq!(icr(&mut p, 1, 0b1 << 32 | 0x863), kicked(&[0]));
    // Broadcast in either mode.
    assert_eq!(icr(&mut p, 1, 0xffff_ffff << 32 | 0x864), kicked(&[0, 1, 2]));
    assert_eq!(icr(&mut p, 1, 0xffff_ffff << 32 | 0x865), kicked(&[0, 1, 2]));
    // SELF IPI: the sender only, delivered like a fixed edge interrupt.
    assert_eq!(p.msr_write(2, 0x83f, 0x70, 0).unwrap().unwrap().kick, kicked(&[2]));
    assert_eq!(p.highest_pending(2, OPEN), Some(Interrupt::Fixed(0x70)));
    // The xAPIC page is gone in x2APIC mode: reads all ones.
    assert_eq!(p.mmio_read(0, APIC + u64::from(reg::ID), 4, 0), Some(0xffff_ffff));
}

#[test]
fn lowest_priority_skips_software_disabled_apics() {
    let mut p = platform(3);
    for vp in 0..3 {
        apic_write(&mut p, vp, reg::LDR, 0x0100_0000 << vp);
    }
    apic_write(&mut p, 1, reg::SVR, 0xff);
    // Logical VPs 1 and 2: VP 1 cannot accept, so VP 2 takes it.
    assert_eq!(ipi(&mut p, 0, 0x06, 0x4953).kick, kicked(&[2]));
    assert!(p.lapic(2).unwrap().irr().get(0x53));
    // A level I/O APIC message to lowest priority, likewise accepted.
    route(&mut p, 12, 0x8000 | 0x900 | 0x5c, 0x06);
    assert_eq!(p.set_gsi(12, true).kick, kicked(&[2]));
    assert!(p.ioapic().entry(12).unwrap().remote_irr());
}

#[test]
fn a_vp_set_lists_its_members_lowest_first() {
    assert_eq!(VpSet::default().iter().count(), 0);
    let mut set = VpSet::default();
    for vp in [15, 0, 2, 16, 99] {
        set.insert(vp);
    }
    assert_eq!(set.iter().collect::<Vec<_>>(), [0, 2, 15]);
    assert_eq!(VpSet(u16::MAX).iter().collect::<Vec<_>>(), (0..16).collect::<Vec<_>>());
}
