use super::*;

const TSC_HZ: u64 = 1_000_000_000;
/// 10 TSC ticks per APIC timer tick.
const APIC_HZ: u64 = 100_000_000;
const GP: Result<LapicEffect, GeneralProtection> = Err(GeneralProtection);

fn write(l: &mut Lapic, offset: u32, value: u32, now: u64) -> LapicEffect {
    l.mmio_write(u64::from(offset), 4, u64::from(value), now)
}

fn read(l: &mut Lapic, offset: u32, now: u64) -> u32 {
    l.mmio_read(u64::from(offset), 4, now) as u32
}

/// VP `vp`'s APIC, software-enabled (spurious vector 0xff).
fn enabled(vp: u32) -> Lapic {
    let mut l = Lapic::new(vp, TSC_HZ, APIC_HZ);
    write(&mut l, reg::SVR, 0x1ff, 0);
    l
}

fn x2apic(vp: u32) -> Lapic {
    let mut l = enabled(vp);
    let base = l.base().with_x2apic(true).into_bits();
    assert_eq!(l.msr_write(MSR_APIC_BASE, base, 0), Some(Ok(LapicEffect::None)));
    l
}

fn esr_now(l: &mut Lapic) -> u32 {
    write(l, reg::ESR, 0, 0);
    read(l, reg::ESR, 0)
}

#[test]
fn power_up_state() {
    let mut bsp = Lapic::new(0, TSC_HZ, APIC_HZ);
    let mut ap = Lapic::new(3, TSC_HZ, APIC_HZ);
    assert_eq!(bsp.msr_read(MSR_APIC_BASE, 0), Some(Ok(0xfee0_0900)));
    assert_eq!(ap.msr_read(MSR_APIC_BASE, 0), Some(Ok(0xfee0_0800)));
    assert_eq!(read(&mut ap, reg::ID, 0), 3 << 24);
    assert_eq!(read(&mut ap, reg::VERSION, 0), 0x0005_0014);
    assert_eq!(read(&mut ap, reg::SVR, 0), 0xff);
    assert_eq!(read(&mut ap, reg::DFR, 0), u32::MAX);
    for lvt in 0..LVT_COUNT as u32 {
        assert_eq!(read(&mut ap, reg::LVT_TIMER + 16 * lvt, 0), 0x1_0000);
    }
    // Virtual wire on the BSP: LINT0 is ExtINT, unmasked.
    assert_eq!(read(&mut bsp, 0x350, 0), 0x700);
    assert!(bsp.accepts_extint() && !ap.accepts_extint());
    assert!(!bsp.enabled());
}

#[test]
fn mmio_widths_and_reserved_registers() {
    let mut l = enabled(5);
    // A byte of the ID register; bytes 4..16 of a slot read 0.
    assert_eq!(l.mmio_read(0x23, 1, 0), 5);
    assert_eq!(l.mmio_read(0x24, 4, 0), 0);
    assert_eq!(l.mmio_read(0x20, 8, 0), 5 << 24);
    // Only aligned 4-byte writes count.
    l.mmio_write(0x80, 1, 0x30, 0);
    l.mmio_write(0x84, 4, 0x30, 0);
    l.mmio_write(0x80, 8, 0x30, 0);
    assert_eq!(read(&mut l, reg::TPR, 0), 0);
    write(&mut l, reg::TPR, 0x1_2345, 0);
    assert_eq!(read(&mut l, reg::TPR, 0), 0x45);
    // Read-only registers ignore writes without an error.
    write(&mut l, reg::VERSION, 0, 0);
    write(&mut l, reg::PPR, 0xff, 0);
    assert_eq!(esr_now(&mut l), 0);
    // Reserved: reads 0, writes ignored, ESR says illegal register.
    assert_eq!(read(&mut l, 0x40, 0), 0);
    assert_eq!(esr_now(&mut l), esr::ILLEGAL_REGISTER);
    write(&mut l, reg::SELF_IPI, 0x40, 0);
    assert_eq!(esr_now(&mut l), esr::ILLEGAL_REGISTER);
    assert_eq!(esr_now(&mut l), 0);
    assert_eq!(l.irr().highest(), None);
}

#[test]
fn divide_values() {
    let table = [(0x0, 2), (0x1, 4), (0x2, 8), (0x3, 16), (0x8, 32), (0x9, 64), (0xa, 128), (0xb, 1)];
    for (value, div) in table {
        assert_eq!(super::super::apic_timer::divisor(value), div, "{value:#x}");
    }
}

#[test]
fn one_shot_timer() {
    let mut l = enabled(0);
    write(&mut l, reg::LVT_TIMER, 0x40, 0);
    write(&mut l, reg::TIMER_DIVIDE, 0x3, 0);
    assert_eq!(l.next_deadline(), None);
    write(&mut l, reg::TIMER_INITIAL, 1000, 5_000);
    // 1000 counts * 16 * 10 TSC ticks.
    assert_eq!(l.next_deadline(), Some(165_000));
    assert_eq!(read(&mut l, reg::TIMER_CURRENT, 5_000 + 80_000), 500);
    assert!(!l.poll(164_999));
    assert!(l.poll(165_000));
    assert_eq!(l.pending_vector(true, false), Some(0x40));
    assert_eq!(read(&mut l, reg::TIMER_CURRENT, 200_000), 0);
    assert_eq!(l.next_deadline(), None);
    assert!(!l.poll(1_000_000));
    // A write of 0 stops a running count.
    write(&mut l, reg::TIMER_INITIAL, 10, 0);
    write(&mut l, reg::TIMER_INITIAL, 0, 0);
    assert_eq!(l.next_deadline(), None);
}

#[test]
fn periodic_timer() {
    let mut l = enabled(0);
    write(&mut l, reg::LVT_TIMER, 1 << 17 | 0x41, 0);
    write(&mut l, reg::TIMER_DIVIDE, 0xb, 0);
    write(&mut l, reg::TIMER_INITIAL, 100, 0);
    assert_eq!(l.next_deadline(), Some(1000));
    assert!(l.poll(1000));
    assert_eq!(l.next_deadline(), Some(2000));
    // Missed periods fire once; the phase is kept.
    assert!(l.poll(5500));
    assert_eq!(l.next_deadline(), Some(6000));
    assert_eq!(read(&mut l, reg::TIMER_CURRENT, 5500), 50);
    assert_eq!(l.irr().highest(), Some(0x41));
    // A divide change keeps the count and slows it: 50 left at 2 per count.
    write(&mut l, reg::TIMER_DIVIDE, 0x0, 5500);
    assert_eq!(read(&mut l, reg::TIMER_CURRENT, 5500), 50);
    assert_eq!(read(&mut l, reg::TIMER_CURRENT, 5500 + 20), 49);
    assert_eq!(l.next_deadline(), Some(5500 + 1000));
}

#[test]
fn periodic_to_one_shot_ends_the_current_period() {
    let mut l = enabled(0);
    write(&mut l, reg::LVT_TIMER, 1 << 17 | 0x41, 0);
    write(&mut l, reg::TIMER_DIVIDE, 0xb, 0);
    write(&mut l, reg::TIMER_INITIAL, 100, 0);
    assert!(l.poll(5500));
    write(&mut l, reg::LVT_TIMER, 0x41, 5500);
    assert_eq!(l.next_deadline(), Some(6000));
    assert_eq!(read(&mut l, reg::TIMER_CURRENT, 5500), 50);
    assert!(l.poll(6000));
    assert_eq!(l.next_deadline(), None);
    assert_eq!(read(&mut l, reg::TIMER_CURRENT, 7000), 0);
}

#[test]
fn odd_frequencies_round_up() {
    // 3 TSC ticks per 2 APIC ticks: 7 counts by 2 fire at ceil(14 * 1.5).
    let mut l = Lapic::new(0, 3_000, 2_000);
    write(&mut l, reg::SVR, 0x100, 0);
    write(&mut l, reg::LVT_TIMER, 0x30, 0);
    write(&mut l, reg::TIMER_INITIAL, 7, 0);
    assert_eq!(l.next_deadline(), Some(21));
    write(&mut l, reg::TIMER_INITIAL, 5, 0);
    assert_eq!(l.next_deadline(), Some(15));
    assert_eq!(read(&mut l, reg::TIMER_CURRENT, 14), 1);
}

#[test]
fn tsc_deadline_timer() {
    let mut l = enabled(0);
    // Outside TSC-deadline mode the MSR is ignored and reads 0.
    assert_eq!(l.msr_write(MSR_TSC_DEADLINE, 500, 0), Some(Ok(LapicEffect::None)));
    assert_eq!(l.msr_read(MSR_TSC_DEADLINE, 0), Some(Ok(0)));
    write(&mut l, reg::LVT_TIMER, 2 << 17 | 0xec, 0);
    write(&mut l, reg::TIMER_INITIAL, 100, 0);
    assert_eq!(l.next_deadline(), None);
    l.msr_write(MSR_TSC_DEADLINE, 12_345, 0);
    assert_eq!(l.next_deadline(), Some(12_345));
    assert_eq!(l.msr_read(MSR_TSC_DEADLINE, 100), Some(Ok(12_345)));
    assert!(!l.poll(12_344));
    assert!(l.poll(12_345));
    assert_eq!(l.msr_read(MSR_TSC_DEADLINE, 12_345), Some(Ok(0)));
    assert_eq!(l.next_deadline(), None);
    assert_eq!(l.irr().highest(), Some(0xec));
    // Leaving TSC-deadline mode disarms it.
    l.msr_write(MSR_TSC_DEADLINE, 20_000, 0);
    write(&mut l, reg::LVT_TIMER, 0xec, 13_000);
    assert_eq!(l.next_deadline(), None);
    write(&mut l, reg::LVT_TIMER, 2 << 17 | 0xec, 13_000);
    assert_eq!(l.next_deadline(), None);
}

#[test]
fn masked_timer_expiry_is_lost() {
    let mut l = enabled(0);
    write(&mut l, reg::LVT_TIMER, 0x1_0040, 0);
    write(&mut l, reg::TIMER_INITIAL, 10, 0);
    assert_eq!(l.next_deadline(), None);
    write(&mut l, reg::LVT_TIMER, 0x40, 500);
    assert_eq!(l.next_deadline(), None);
    assert!(!l.poll(1000));
    assert_eq!(l.irr().highest(), None);
}

#[test]
fn priority_tpr_ppr_and_nesting() {
    let mut l = enabled(0);
    l.accept(0x51, false);
    l.accept(0x61, false);
    write(&mut l, reg::TPR, 0x60, 0);
    assert_eq!(l.pending_vector(true, false), None);
    assert!(l.highest_deliverable().is_none());
    write(&mut l, reg::TPR, 0x50, 0);
    assert_eq!(l.pending_vector(true, false), Some(0x61));
    assert_eq!(l.pending_vector(false, false), None);
    assert_eq!(l.pending_vector(true, true), None);
    l.acknowledge(0x61);
    assert_eq!(read(&mut l, reg::PPR, 0), 0x60);
    assert_eq!(read(&mut l, reg::ISR + 0x30, 0), 1 << 1);
    // 0x51 waits below the in-service 0x61; 0x71 nests.
    assert_eq!(l.pending_vector(true, false), None);
    l.accept(0x71, false);
    assert_eq!(l.pending_vector(true, false), Some(0x71));
    l.acknowledge(0x71);
    assert_eq!(read(&mut l, reg::PPR, 0), 0x70);
    assert_eq!(write(&mut l, reg::EOI, 0, 0), LapicEffect::None);
    assert_eq!(l.isr().highest(), Some(0x61));
    write(&mut l, reg::EOI, 0, 0);
    assert_eq!(read(&mut l, reg::PPR, 0), 0x50);
    assert_eq!(l.pending_vector(true, false), None);
    write(&mut l, reg::TPR, 0x4f, 0);
    assert_eq!(l.pending_vector(true, false), Some(0x51));
    // An EOI with nothing in service does nothing.
    l.acknowledge(0x51);
    write(&mut l, reg::EOI, 0, 0);
    assert_eq!(write(&mut l, reg::EOI, 0, 0), LapicEffect::None);
}

#[test]
fn level_eoi_is_reported() {
    let mut l = enabled(0);
    l.accept(0x40, true);
    l.accept(0x30, false);
    assert_eq!(read(&mut l, reg::TMR + 0x20, 0), 1);
    l.acknowledge(0x40);
    assert_eq!(write(&mut l, reg::EOI, 0, 0), LapicEffect::LevelEoi(0x40));
    l.acknowledge(0x30);
    assert_eq!(write(&mut l, reg::EOI, 0, 0), LapicEffect::None);
}

#[test]
fn illegal_vectors_and_error_interrupt() {
    let mut l = enabled(0);
    write(&mut l, reg::LVT_ERROR, 0xfe, 0);
    l.accept(5, false);
    assert_eq!(l.irr().highest(), Some(0xfe));
    assert_eq!(esr_now(&mut l), esr::RECEIVE_ILLEGAL_VECTOR);
    assert_eq!(write(&mut l, reg::ICR_LOW, 0x4003, 0), LapicEffect::None);
    assert_eq!(esr_now(&mut l), esr::SEND_ILLEGAL_VECTOR);
    // Errors accumulate until the next ESR write.
    assert_eq!(esr_now(&mut l), 0);
}

#[test]
fn software_disable_masks_and_drops() {
    let mut l = enabled(0);
    write(&mut l, reg::LVT_TIMER, 0x40, 0);
    write(&mut l, reg::SVR, 0xff, 0);
    assert!(l.lvt(LVT_TIMER).masked());
    write(&mut l, reg::LVT_TIMER, 0x40, 0);
    assert_eq!(read(&mut l, reg::LVT_TIMER, 0), 0x1_0040);
    l.accept(0x40, false);
    assert_eq!(l.irr().highest(), None);
}

fn ipi(l: &mut Lapic, high: u32, low: u32) -> LapicEffect {
    write(l, reg::ICR_HIGH, high, 0);
    write(l, reg::ICR_LOW, low, 0)
}

fn msg(mode: DeliveryMode, vector: u8, dest: Destination) -> LapicEffect {
    LapicEffect::Ipi(Message { mode, vector, level: false, dest })
}

#[test]
fn xapic_icr_destinations_and_shorthands() {
    let mut l = enabled(0);
    let fixed = DeliveryMode::FIXED;
    assert_eq!(ipi(&mut l, 3 << 24, 0x4031), msg(fixed, 0x31, Destination::Physical(3)));
    assert_eq!(read(&mut l, reg::ICR_HIGH, 0), 3 << 24);
    assert_eq!(read(&mut l, reg::ICR_LOW, 0), 0x4031);
    assert_eq!(ipi(&mut l, 0xff << 24, 0x4031), msg(fixed, 0x31, Destination::All));
    assert_eq!(ipi(&mut l, 0x0c << 24, 0x4831), msg(fixed, 0x31, Destination::Logical(0x0c)));
    assert_eq!(ipi(&mut l, 0, 0x4_4032), msg(fixed, 0x32, Destination::SelfOnly));
    assert_eq!(ipi(&mut l, 0, 0x8_4033), msg(fixed, 0x33, Destination::All));
    assert_eq!(ipi(&mut l, 0, 0xc_4034), msg(fixed, 0x34, Destination::AllButSelf));
    // Lowest priority and NMI pass through; the caller routes them.
    assert_eq!(ipi(&mut l, 1 << 24, 0x4135), msg(DeliveryMode::LOWEST_PRIORITY, 0x35, Destination::Physical(1)));
    assert_eq!(ipi(&mut l, 1 << 24, 0x4400), msg(DeliveryMode::NMI, 0, Destination::Physical(1)));
    // Linux's AP start: INIT assert, INIT de-assert (ignored), SIPI twice.
    let init = ipi(&mut l, 1 << 24, 0xc500);
    assert_eq!(init, LapicEffect::Ipi(Message { level: true, ..msg_parts(DeliveryMode::INIT, 0, 1) }));
    assert_eq!(ipi(&mut l, 1 << 24, 0x8500), LapicEffect::None);
    assert_eq!(ipi(&mut l, 1 << 24, 0x0609), msg(DeliveryMode::STARTUP, 9, Destination::Physical(1)));
    // SMI and reserved modes send nothing.
    assert_eq!(ipi(&mut l, 1 << 24, 0x4200), LapicEffect::None);
    assert_eq!(ipi(&mut l, 1 << 24, 0x4700), LapicEffect::None);
}

fn msg_parts(mode: DeliveryMode, vector: u8, dest: u32) -> Message {
    Message { mode, vector, level: false, dest: Destination::Physical(dest) }
}

#[test]
fn logical_destinations() {
    let mut l = enabled(0);
    write(&mut l, reg::LDR, 0x0400_0000, 0);
    assert!(l.matches_logical(0x04) && l.matches_logical(0x0f) && !l.matches_logical(0x08));
    // Cluster model: cluster 2, member bit 1.
    write(&mut l, reg::DFR, 0x0fff_ffff, 0);
    write(&mut l, reg::LDR, 0x2200_0000, 0);
    assert!(l.matches_logical(0x22) && l.matches_logical(0xf2) && !l.matches_logical(0x12));
    let x2 = x2apic(18);
    assert_eq!(x2.ldr(), 1 << 16 | 1 << 2);
    assert!(x2.matches_logical(0x1_0004) && !x2.matches_logical(0x4));
}

#[test]
fn x2apic_mode() {
    let mut l = enabled(2);
    assert_eq!(l.msr_read(0x802, 0), Some(Err(GeneralProtection)));
    assert_eq!(l.msr_write(0x808, 0, 0), Some(GP));
    let mut l = x2apic(2);
    assert_eq!(l.mmio_base(), None);
    assert_eq!(l.mmio_read(0x20, 4, 0), 0xffff_ffff);
    assert_eq!(l.msr_read(0x802, 0), Some(Ok(2)));
    assert_eq!(l.msr_read(0x803, 0), Some(Ok(0x0005_0014)));
    assert_eq!(l.msr_read(0x80d, 0), Some(Ok(1 << 2)));
    assert_eq!(l.msr_read(0x80f, 0), Some(Ok(0x1ff)));
    assert_eq!(l.msr_write(0x808, 0x20, 0), Some(Ok(LapicEffect::None)));
    assert_eq!(l.msr_read(0x808, 0), Some(Ok(0x20)));
    assert_eq!(l.msr_read(0x80a, 0), Some(Ok(0x20)));
    let fixed = |vector, dest| msg(DeliveryMode::FIXED, vector, dest);
    assert_eq!(l.msr_write(0x830, 7 << 32 | 0x40, 0), Some(Ok(fixed(0x40, Destination::Physical(7)))));
    assert_eq!(l.msr_read(0x830, 0), Some(Ok(7 << 32 | 0x40)));
    assert_eq!(l.msr_write(0x830, u64::MAX << 32 | 0x40, 0), Some(Ok(fixed(0x40, Destination::All))));
    assert_eq!(l.msr_write(0x830, 0xc_0041, 0), Some(Ok(fixed(0x41, Destination::AllButSelf))));
    assert_eq!(l.msr_write(0x83f, 0x42, 0), Some(Ok(fixed(0x42, Destination::SelfOnly))));
    assert_eq!(l.msr_write(0x83e, 0xb, 0), Some(Ok(LapicEffect::None)));
    assert_eq!(l.msr_write(0x838, 100, 0), Some(Ok(LapicEffect::None)));
    assert_eq!(l.msr_read(0x839, 500), Some(Ok(50)));
    assert_eq!(l.msr_write(0x832, 0x40, 0), Some(Ok(LapicEffect::None)));
    assert_eq!(l.msr_read(0x832, 0), Some(Ok(0x40)));
    assert_eq!(l.msr_write(0x828, 0, 0), Some(Ok(LapicEffect::None)));
    l.accept(0x50, false);
    l.acknowledge(0x50);
    assert_eq!(l.msr_write(0x80b, 0, 0), Some(Ok(LapicEffect::None)));
    assert_eq!(l.isr().highest(), None);
}

#[test]
fn x2apic_general_protection() {
    let mut l = x2apic(1);
    // Reserved MSRs, and ones that exist only in xAPIC mode.
    for msr in [0x800, 0x801, 0x804, 0x809, 0x80c, 0x80e, 0x82f, 0x831, 0x83a, 0x840, 0xbff] {
        assert_eq!(l.msr_read(msr, 0), Some(Err(GeneralProtection)), "{msr:#x}");
        assert_eq!(l.msr_write(msr, 0, 0), Some(GP), "{msr:#x}");
    }
    // Write-only registers read, read-only ones written.
    assert_eq!(l.msr_read(0x80b, 0), Some(Err(GeneralProtection)));
    assert_eq!(l.msr_read(0x83f, 0), Some(Err(GeneralProtection)));
    for msr in [0x802, 0x803, 0x80a, 0x80d, 0x810, 0x818, 0x820, 0x839] {
        assert_eq!(l.msr_write(msr, 0, 0), Some(GP), "{msr:#x}");
    }
    // Non-zero EOI and ESR writes; reserved bits.
    assert_eq!(l.msr_write(0x80b, 1, 0), Some(GP));
    assert_eq!(l.msr_write(0x828, 1, 0), Some(GP));
    assert_eq!(l.msr_write(0x808, 0x100, 0), Some(GP));
    assert_eq!(l.msr_write(0x808, 1 << 32, 0), Some(GP));
    assert_eq!(l.msr_write(0x80f, 0x1000, 0), Some(GP));
    assert_eq!(l.msr_write(0x832, 0x8_0000, 0), Some(GP));
    assert_eq!(l.msr_write(0x83e, 0x4, 0), Some(GP));
    assert_eq!(l.msr_write(0x83f, 0x100, 0), Some(GP));
    for bit in [12, 13, 16, 17, 20, 31] {
        assert_eq!(l.msr_write(0x830, 1 << bit | 0x40, 0), Some(GP), "ICR bit {bit}");
    }
    // Unknown MSRs are not the APIC's.
    assert_eq!(l.msr_read(0x10, 0), None);
}

#[test]
fn apic_base_transitions() {
    let mut l = enabled(1);
    let base =
        |enable: bool, x2: bool| ApicBase::new().with_enable(enable).with_x2apic(x2).with_page(0xfee00).into_bits();
    // Reserved bits, and EXTD without EN.
    assert_eq!(l.write_apic_base(base(true, false) | 1), Err(GeneralProtection));
    assert_eq!(l.write_apic_base(base(true, false) | 1 << 40), Err(GeneralProtection));
    assert_eq!(l.write_apic_base(base(false, true)), Err(GeneralProtection));
    // Relocation in xAPIC mode.
    assert_eq!(l.write_apic_base(base(true, false) + 0x1000), Ok(()));
    assert_eq!(l.mmio_base(), Some(0xfee0_1000));
    assert_eq!(l.write_apic_base(base(true, true)), Ok(()));
    assert_eq!(l.write_apic_base(base(true, false)), Err(GeneralProtection));
    assert_eq!(l.write_apic_base(base(false, false)), Ok(()));
    assert_eq!(l.write_apic_base(base(true, true)), Err(GeneralProtection));
    assert_eq!(l.mmio_read(0x30, 4, 0), 0xffff_ffff);
    // Disabled: reset, and back to xAPIC with the initial ID.
    assert_eq!(l.write_apic_base(base(true, false)), Ok(()));
    assert_eq!(read(&mut l, reg::ID, 0), 1 << 24);
    assert_eq!(read(&mut l, reg::SVR, 0), 0xff);
    // The BSP flag is the hardware's.
    assert_eq!(l.msr_read(MSR_APIC_BASE, 0), Some(Ok(base(true, false))));
}

#[test]
fn init_keeps_id_and_mode() {
    let mut l = x2apic(4);
    l.accept(0x80, false);
    l.init();
    assert!(l.x2apic());
    assert_eq!(l.msr_read(0x802, 0), Some(Ok(4)));
    assert_eq!(l.msr_read(0x80d, 0), Some(Ok(1 << 4)));
    assert_eq!(l.irr().highest(), None);
    assert!(!l.enabled());
}

#[test]
fn hyper_v_apic_msrs() {
    let mut l = enabled(0);
    assert_eq!(l.hv_msr_write(HvApicMsr::Tpr, 0x30), Ok(LapicEffect::None));
    assert_eq!(read(&mut l, reg::TPR, 0), 0x30);
    assert_eq!(l.hv_msr_read(HvApicMsr::Tpr), Ok(0x30));
    // xAPIC mode: the destination is in bits 63:56.
    let sent = l.hv_msr_write(HvApicMsr::Icr, 2 << 56 | 0x4041);
    assert_eq!(sent, Ok(LapicEffect::Ipi(Message { vector: 0x41, ..msg_parts(DeliveryMode::FIXED, 0, 2) })));
    assert_eq!(l.hv_msr_read(HvApicMsr::Icr), Ok(2 << 56 | 0x4041));
    assert_eq!(l.hv_msr_read(HvApicMsr::Eoi), Err(GeneralProtection));
    l.accept(0x90, true);
    l.acknowledge(0x90);
    assert_eq!(l.hv_msr_write(HvApicMsr::Eoi, 0), Ok(LapicEffect::LevelEoi(0x90)));
}

#[test]
fn auto_eoi_vectors_skip_the_isr() {
    // TLFS 11.8.5: "the hypervisor will automatically clear the
    // corresponding flag in the in-service register"; no EOI is needed.
    let mut l = enabled(0);
    let mut auto = VectorBits::default();
    auto.set(0x50, true);
    l.set_auto_eoi(auto);
    l.accept(0x50, false);
    l.accept(0x40, false);
    assert_eq!(l.pending_vector(true, false), Some(0x50));
    l.acknowledge(0x50);
    assert!(!l.isr().get(0x50) && !l.irr().get(0x50));
    // Nothing in service: the lower vector is deliverable at once.
    assert_eq!(l.ppr(), 0);
    assert_eq!(l.pending_vector(true, false), Some(0x40));
    l.acknowledge(0x40);
    assert!(l.isr().get(0x40), "a plain vector still needs its EOI");
    assert_eq!(l.eoi(), LapicEffect::None);
    assert!(l.isr().highest().is_none());
    // INIT keeps the SynIC's auto-EOI set.
    l.init();
    assert!(l.auto_eoi().get(0x50));
}

/// EOI assist (TLFS 10.3.5): offered for an edge-triggered vector in
/// service with nothing pending behind it, one at a time; completing it
/// retires the highest in-service vector as an EOI write would.
#[test]
fn lazy_eoi_is_offered_only_when_the_eoi_reveals_nothing() {
    let mut l = enabled(0);
    l.accept(0x50, false);
    l.acknowledge(0x50);
    assert!(l.offer_lazy_eoi(0x50));
    assert!(l.lazy_eoi());
    // A higher vector nests: the bit counts one EOI, which is taken.
    l.accept(0x60, false);
    l.acknowledge(0x60);
    assert!(!l.offer_lazy_eoi(0x60), "one lazy EOI at a time");
    assert_eq!(l.complete_lazy_eoi(), LapicEffect::None);
    assert!(!l.isr().get(0x60) && l.isr().get(0x50), "the highest in service retired");
    assert_eq!(l.complete_lazy_eoi(), LapicEffect::None, "nothing outstanding: no EOI");
    assert!(l.isr().get(0x50));
    write(&mut l, reg::EOI, 0, 0);

    // A lower vector pending behind it: its EOI must exit to reveal it.
    l.accept(0x70, false);
    l.accept(0x40, false);
    l.acknowledge(0x70);
    assert!(!l.offer_lazy_eoi(0x70));
    assert!(l.requested());
    write(&mut l, reg::EOI, 0, 0);
    l.acknowledge(0x40);
    // Level-triggered: the I/O APIC must hear the EOI.
    l.accept(0x80, true);
    l.acknowledge(0x80);
    assert!(!l.offer_lazy_eoi(0x80));
    assert_eq!(write(&mut l, reg::EOI, 0, 0), LapicEffect::LevelEoi(0x80));
    write(&mut l, reg::EOI, 0, 0);
    // Auto-EOI vectors never enter the ISR: nothing to avoid.
    let mut auto = VectorBits::default();
    auto.set(0x90, true);
    l.set_auto_eoi(auto);
    l.accept(0x90, false);
    l.acknowledge(0x90);
    assert!(!l.offer_lazy_eoi(0x90));
    assert_eq!(l.isr().highest(), None);
}

/// A withdrawn lazy EOI is the guest's to write; INIT forgets it.
#[test]
fn a_withdrawn_lazy_eoi_leaves_the_vector_in_service() {
    let mut l = enabled(0);
    l.accept(0x50, false);
    l.acknowledge(0x50);
    assert!(l.offer_lazy_eoi(0x50));
    l.withdraw_lazy_eoi();
    assert_eq!(l.complete_lazy_eoi(), LapicEffect::None);
    assert!(l.isr().get(0x50));
    write(&mut l, reg::EOI, 0, 0);
    l.accept(0x51, false);
    l.acknowledge(0x51);
    assert!(l.offer_lazy_eoi(0x51));
    l.init();
    assert!(!l.lazy_eoi());
}

#[test]
fn tsc_deadline_past_zero_and_other_modes() {
    // SDM 11.5.4.1: the timer fires when the TSC reaches the deadline; a
    // deadline already past fires at once; writing 0 disarms.
    let mut l = enabled(0);
    write(&mut l, reg::LVT_TIMER, 2 << 17 | 0xe0, 0);
    l.msr_write(MSR_TSC_DEADLINE, 100, 0);
    assert_eq!(l.next_deadline(), Some(100));
    assert!(l.poll(5_000));
    l.acknowledge(0xe0);
    write(&mut l, reg::EOI, 0, 0);
    l.msr_write(MSR_TSC_DEADLINE, 9_000, 5_000);
    l.msr_write(MSR_TSC_DEADLINE, 0, 5_000);
    assert_eq!(l.next_deadline(), None);
    assert!(!l.poll(10_000));
    assert_eq!(l.irr().highest(), None);
    // Initial count is ignored and current count reads 0 in this mode.
    write(&mut l, reg::TIMER_INITIAL, 50, 0);
    assert_eq!((read(&mut l, reg::TIMER_INITIAL, 0), read(&mut l, reg::TIMER_CURRENT, 0)), (0, 0));
    // One-shot mode: the MSR reads 0 and ignores writes; the count runs.
    l.msr_write(MSR_TSC_DEADLINE, 20_000, 10_000);
    write(&mut l, reg::LVT_TIMER, 0xe0, 10_000);
    assert_eq!(l.msr_read(MSR_TSC_DEADLINE, 10_000), Some(Ok(0)));
    l.msr_write(MSR_TSC_DEADLINE, 30_000, 10_000);
    write(&mut l, reg::LVT_TIMER, 2 << 17 | 0xe0, 10_000);
    assert_eq!(l.msr_read(MSR_TSC_DEADLINE, 10_000), Some(Ok(0)));
    assert_eq!(l.next_deadline(), None);
}

#[test]
fn masked_timer_still_counts() {
    // SDM 11.5.1: the mask inhibits the interrupt, not the count.
    let mut l = enabled(0);
    write(&mut l, reg::LVT_TIMER, 0x1_0040, 0);
    write(&mut l, reg::TIMER_DIVIDE, 0xb, 0);
    write(&mut l, reg::TIMER_INITIAL, 1000, 0);
    assert_eq!(read(&mut l, reg::TIMER_CURRENT, 4_000), 600);
    assert_eq!(read(&mut l, reg::TIMER_CURRENT, 20_000), 0);
    // TSC-deadline mode too: the deadline passes and disarms, silently.
    write(&mut l, reg::LVT_TIMER, 0x5_0041, 20_000);
    l.msr_write(MSR_TSC_DEADLINE, 21_000, 20_000);
    assert_eq!(l.msr_read(MSR_TSC_DEADLINE, 22_000), Some(Ok(0)));
    write(&mut l, reg::LVT_TIMER, 0x4_0041, 22_000);
    assert_eq!(l.next_deadline(), None);
    assert_eq!(l.irr().highest(), None);
}

#[test]
fn ppr_is_the_higher_class_of_tpr_and_isrv() {
    // SDM 11.8.3.1: PPR = TPR if TPR[7:4] >= ISRV[7:4], else ISRV[7:4]:0;
    // a vector is delivered only if its class is above PPR[7:4].
    let mut l = enabled(0);
    l.accept(0x61, false);
    l.acknowledge(0x61);
    write(&mut l, reg::TPR, 0x65, 0);
    assert_eq!(read(&mut l, reg::PPR, 0), 0x65);
    write(&mut l, reg::TPR, 0x5f, 0);
    assert_eq!(read(&mut l, reg::PPR, 0), 0x60);
    // Same class as PPR: held; one class higher: delivered.
    l.accept(0x6f, false);
    assert_eq!(l.pending_vector(true, false), None);
    l.accept(0x70, false);
    assert_eq!(l.pending_vector(true, false), Some(0x70));
    write(&mut l, reg::EOI, 0, 0);
    write(&mut l, reg::TPR, 0x70, 0);
    assert_eq!(read(&mut l, reg::PPR, 0), 0x70);
    assert_eq!(l.pending_vector(true, false), None);
    write(&mut l, reg::TPR, 0x60, 0);
    assert_eq!(l.pending_vector(true, false), Some(0x70));
}

#[test]
fn software_disabled_apic() {
    // SDM 11.4.7.2: fixed interrupts are not accepted, the IRR and ISR are
    // held, LVT entries stay masked, NMI, INIT and SIPI are still taken
    // and IPIs can still be sent.
    let mut l = enabled(1);
    l.accept(0x80, false);
    l.accept(0x90, false);
    l.acknowledge(0x90);
    write(&mut l, 0x360, 0x400, 0);
    write(&mut l, reg::SVR, 0xff, 0);
    assert!(!l.enabled());
    assert!(!l.accept(0xa0, false));
    assert!(l.irr().get(0x80) && l.isr().get(0x90));
    assert!(l.lvt(LVT_LINT1).masked());
    l.accept_nmi();
    assert!(l.nmi_pending());
    assert_eq!(ipi(&mut l, 0, 0x4_4041), msg(DeliveryMode::FIXED, 0x41, Destination::SelfOnly));
    // Enabled again: the masks stay until software clears them.
    write(&mut l, reg::SVR, 0x1ff, 0);
    assert!(l.lvt(LVT_LINT1).masked());
    write(&mut l, reg::EOI, 0, 0);
    assert_eq!(l.pending_vector(true, false), Some(0x80));
}

#[test]
fn no_eoi_broadcast_suppression_or_focus_checking_beyond_the_version() {
    // SDM 11.8.5: SVR bit 12 exists only if version bit 24 says so; the
    // I/O APIC (version 0x11) has no EOI register, so it is not offered.
    let mut l = enabled(0);
    assert_eq!(read(&mut l, reg::VERSION, 0) & 1 << 24, 0);
    write(&mut l, reg::SVR, 0x11ff, 0);
    assert_eq!(read(&mut l, reg::SVR, 0), 0x1ff);
    let mut x2 = x2apic(0);
    assert_eq!(x2.msr_write(0x80f, 0x11ff, 0), Some(GP));
    // Level EOIs are always broadcast.
    x2.accept(0x44, true);
    x2.acknowledge(0x44);
    assert_eq!(x2.msr_write(0x80b, 0, 0), Some(Ok(LapicEffect::LevelEoi(0x44))));
}

#[test]
fn x2apic_id_ldr_and_no_dfr() {
    // SDM 11.12.2: ID = the initial APIC ID, read-only; 11.12.10.2: LDR
    // derived from it, read-only; DFR does not exist.
    let mut l = enabled(0x13);
    write(&mut l, reg::ID, 0x0500_0000, 0);
    let base = l.base().with_x2apic(true).into_bits();
    l.msr_write(MSR_APIC_BASE, base, 0).unwrap().unwrap();
    assert_eq!(l.msr_read(0x802, 0), Some(Ok(0x13)));
    assert_eq!(l.apic_id(), 0x13);
    assert_eq!(l.msr_read(0x80d, 0), Some(Ok(1 << 16 | 1 << 3)));
    assert_eq!(l.msr_write(0x80d, 0, 0), Some(GP));
    assert_eq!(l.msr_read(0x80e, 0), Some(Err(GeneralProtection)));
    assert_eq!(l.msr_write(0x80e, u64::from(u32::MAX), 0), Some(GP));
    assert!(l.matches_logical(1 << 16 | 1 << 3) && !l.matches_logical(1 << 3) && !l.matches_logical(1 << 16 | 1 << 4));
}
