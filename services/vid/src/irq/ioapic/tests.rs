use super::*;

fn read(io: &mut Ioapic, index: u8) -> u32 {
    io.mmio_write(IOREGSEL, 4, u64::from(index));
    io.mmio_read(IOWIN, 4) as u32
}

fn write(io: &mut Ioapic, index: u8, value: u32) -> Option<Message> {
    io.mmio_write(IOREGSEL, 4, u64::from(index));
    io.mmio_write(IOWIN, 4, u64::from(value)).map(|(pin, m)| {
        assert_eq!(usize::from(index - REG_REDIRECTION) / 2, pin);
        m
    })
}

/// Programs pin `pin`'s entry: low half then high half (destination).
fn program(io: &mut Ioapic, pin: u8, low: u32, dest: u8) -> Option<Message> {
    write(io, REG_REDIRECTION + 2 * pin + 1, u32::from(dest) << 24);
    write(io, REG_REDIRECTION + 2 * pin, low)
}

fn fixed(vector: u8, level: bool, dest: Destination) -> Option<Message> {
    Some(Message { mode: DeliveryMode::FIXED, vector, level, dest })
}

#[test]
fn identification_and_reset() {
    let mut io = Ioapic::new();
    assert_eq!(read(&mut io, REG_VERSION), 0x0017_0011);
    assert_eq!(read(&mut io, REG_ID), IOAPIC_ID << 24);
    write(&mut io, REG_ID, 0x0500_0000);
    assert_eq!(read(&mut io, REG_ID), 0x0500_0000);
    assert_eq!(read(&mut io, REG_ARBITRATION), 0x0500_0000);
    assert_eq!(io.mmio_read(IOREGSEL, 4), u64::from(REG_ARBITRATION));
    for pin in 0..PINS as u8 {
        assert_eq!(read(&mut io, REG_REDIRECTION + 2 * pin), 0x1_0000);
        assert_eq!(read(&mut io, REG_REDIRECTION + 2 * pin + 1), 0);
    }
    // Unimplemented registers and offsets read 0; bytes of IOWIN read alone.
    assert_eq!(read(&mut io, 0x40), 0);
    assert_eq!(io.mmio_read(0x20, 4), 0);
    io.mmio_write(IOREGSEL, 1, u64::from(REG_VERSION));
    assert_eq!(io.mmio_read(IOWIN + 2, 1), 0x17);
    assert!(Ioapic::claims(0xfec0_0010) && !Ioapic::claims(0xfec0_1000));
}

#[test]
fn entries_keep_read_only_bits() {
    let mut io = Ioapic::new();
    write(&mut io, REG_REDIRECTION, 0xffff_ffff);
    assert_eq!(read(&mut io, REG_REDIRECTION), 0x1_afff);
    write(&mut io, REG_REDIRECTION + 1, 0xffff_ffff);
    assert_eq!(read(&mut io, REG_REDIRECTION + 1), 0xff00_0000);
    let entry = io.entry(0).unwrap();
    assert!(entry.logical() && entry.level() && entry.masked() && !entry.remote_irr());
    assert_eq!(entry.delivery_mode(), DeliveryMode::EXTINT);
}

#[test]
fn edge_inputs() {
    let mut io = Ioapic::new();
    assert_eq!(program(&mut io, 4, 0x34, 1), None);
    assert_eq!(io.set_irq(4, true), fixed(0x34, false, Destination::Physical(1)));
    assert_eq!(io.set_irq(4, true), None);
    assert_eq!(io.set_irq(4, false), None);
    assert_eq!(io.set_irq(4, true), fixed(0x34, false, Destination::Physical(1)));
    io.set_irq(4, false);
    // An edge while masked is lost.
    program(&mut io, 4, 0x1_0034, 1);
    assert_eq!(io.set_irq(4, true), None);
    assert_eq!(program(&mut io, 4, 0x34, 1), None);
    assert_eq!(io.set_irq(24, true), None);
}

#[test]
fn level_inputs_and_remote_irr() {
    let mut io = Ioapic::new();
    let low = 0x8000 | 0x3a;
    program(&mut io, 10, low, 0xff);
    let sent = fixed(0x3a, true, Destination::All);
    assert_eq!(io.set_irq(10, true), sent);
    assert!(io.entry(10).unwrap().remote_irr());
    assert_eq!(read(&mut io, REG_REDIRECTION + 20) & (1 << 14), 1 << 14);
    // Still asserted, remote IRR set: nothing more until the EOI.
    assert_eq!(io.set_irq(10, true), None);
    let mut resent = heapless::Vec::<Message, 4>::new();
    io.eoi(0x3b, |_, m| resent.push(m).unwrap());
    assert!(resent.is_empty());
    io.eoi(0x3a, |_, m| resent.push(m).unwrap());
    assert_eq!(resent.first().copied(), sent);
    assert!(io.entry(10).unwrap().remote_irr());
    // De-asserted before the EOI: remote IRR just clears.
    io.set_irq(10, false);
    resent.clear();
    io.eoi(0x3a, |_, m| resent.push(m).unwrap());
    assert!(resent.is_empty());
    assert!(!io.entry(10).unwrap().remote_irr());
}

#[test]
fn unmasking_an_asserted_level_input_sends() {
    let mut io = Ioapic::new();
    program(&mut io, 16, 0x1_8000 | 0x50 | 0x800, 0x03);
    assert_eq!(io.set_irq(16, true), None);
    assert!(!io.unmasked(16));
    assert_eq!(program(&mut io, 16, 0x8000 | 0x50 | 0x800, 0x03), fixed(0x50, true, Destination::Logical(3)));
    // Switching to edge drops remote IRR.
    program(&mut io, 16, 0x50 | 0x800, 0x03);
    assert!(!io.entry(16).unwrap().remote_irr());
}

#[test]
fn edge_entries_ignore_remote_irr() {
    // 82093AA 3.2.4: remote IRR is defined for level entries only.
    let mut io = Ioapic::new();
    program(&mut io, 3, 0x8000 | 0x33, 0);
    assert_eq!(io.set_irq(3, true), fixed(0x33, true, Destination::Physical(0)));
    // To edge: remote IRR drops, and each rising edge sends.
    program(&mut io, 3, 0x33, 0);
    io.set_irq(3, false);
    assert_eq!(io.set_irq(3, true), fixed(0x33, false, Destination::Physical(0)));
    io.set_irq(3, false);
    assert_eq!(io.set_irq(3, true), fixed(0x33, false, Destination::Physical(0)));
    assert!(!io.entry(3).unwrap().remote_irr());
    // An EOI of its vector changes nothing for an edge entry.
    let mut resent = heapless::Vec::<Message, 4>::new();
    io.eoi(0x33, |_, m| resent.push(m).unwrap());
    assert!(resent.is_empty());
}

#[test]
fn masked_level_input_waits_and_eoi_names_the_pin() {
    let mut io = Ioapic::new();
    program(&mut io, 9, 0x1_8000 | 0x49, 1);
    // Masked: nothing is sent, remote IRR stays clear, delivery status idle.
    assert_eq!(io.set_irq(9, true), None);
    assert_eq!(read(&mut io, REG_REDIRECTION + 18) & (1 << 14 | 1 << 12), 0);
    assert_eq!(program(&mut io, 9, 0x8000 | 0x49, 1), fixed(0x49, true, Destination::Physical(1)));
    let mut resent = heapless::Vec::<(usize, Message), 4>::new();
    io.eoi(0x49, |pin, m| resent.push((pin, m)).unwrap());
    assert_eq!(resent.as_slice(), &[(9, fixed(0x49, true, Destination::Physical(1)).unwrap())]);
    // Nobody accepted it: remote IRR clears, and the next event sends again.
    io.not_accepted(9);
    assert!(!io.entry(9).unwrap().remote_irr());
    assert_eq!(io.set_irq(9, true), fixed(0x49, true, Destination::Physical(1)));
}
