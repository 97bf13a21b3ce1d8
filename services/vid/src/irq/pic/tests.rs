use super::*;

/// Linux's `init_8259A(0)`: ICW1–4 on both chips, vectors 0x30 and 0x38.
fn linux_init(pic: &mut Pic) {
    pic.port_write(MASTER_DATA, 0xff);
    pic.port_write(MASTER_CMD, 0x11);
    pic.port_write(MASTER_DATA, 0x30);
    pic.port_write(MASTER_DATA, 1 << CASCADE_IRQ);
    pic.port_write(MASTER_DATA, 0x01);
    pic.port_write(SLAVE_CMD, 0x11);
    pic.port_write(SLAVE_DATA, 0x38);
    pic.port_write(SLAVE_DATA, CASCADE_IRQ);
    pic.port_write(SLAVE_DATA, 0x01);
}

#[test]
fn linux_probe_and_init() {
    let mut pic = Pic::new();
    // probe_8259A: mask the slave, write a pattern to the master's IMR, read it back.
    pic.port_write(SLAVE_DATA, 0xff);
    pic.port_write(MASTER_DATA, 0xfb);
    assert_eq!(pic.port_read(MASTER_DATA), 0xfb);
    linux_init(&mut pic);
    // ICW1 cleared the masks; the init bytes were not taken as masks.
    assert_eq!(pic.port_read(MASTER_DATA), 0);
    assert_eq!(pic.port_read(SLAVE_DATA), 0);
    assert_eq!((pic.chips[0].base, pic.chips[1].base), (0x30, 0x38));
    assert!(!pic.chips[0].auto_eoi);
    pic.port_write(MASTER_DATA, 0xfb);
    pic.port_write(SLAVE_DATA, 0xff);
    assert_eq!((pic.port_read(MASTER_DATA), pic.port_read(SLAVE_DATA)), (0xfb, 0xff));
    assert!(!pic.unmasked(0) && !pic.unmasked(8));
    pic.port_write(MASTER_DATA, 0xfa);
    assert!(pic.unmasked(0) && !pic.unmasked(1) && !pic.unmasked(8));
}

#[test]
fn delivery_priority_and_eoi() {
    let mut pic = Pic::new();
    linux_init(&mut pic);
    pic.set_irq(4, true);
    pic.set_irq(1, true);
    assert_eq!(pic.output(), Some(0x31));
    // OCW3: read IRR, then ISR.
    pic.port_write(MASTER_CMD, 0x0a);
    assert_eq!(pic.port_read(MASTER_CMD), 0x12);
    assert_eq!(pic.acknowledge(), 0x31);
    pic.port_write(MASTER_CMD, 0x0b);
    assert_eq!(pic.port_read(MASTER_CMD), 0x02);
    // IRQ 4 waits under the in-service IRQ 1; IRQ 0 nests above it.
    assert_eq!(pic.output(), None);
    pic.set_irq(0, true);
    assert_eq!(pic.acknowledge(), 0x30);
    // Non-specific EOI retires IRQ 0, specific EOI IRQ 1.
    pic.port_write(MASTER_CMD, 0x20);
    assert_eq!(pic.port_read(MASTER_CMD), 0x02);
    pic.port_write(MASTER_CMD, 0x61);
    assert_eq!(pic.output(), Some(0x34));
    // Masking stops the request, and no request acknowledges as spurious IRQ 7.
    pic.port_write(MASTER_DATA, 0x10);
    assert_eq!(pic.output(), None);
    assert_eq!(pic.acknowledge(), 0x37);
    pic.port_write(MASTER_CMD, 0x0b);
    assert_eq!(pic.port_read(MASTER_CMD), 0);
}

#[test]
fn slave_through_the_cascade() {
    let mut pic = Pic::new();
    linux_init(&mut pic);
    pic.set_irq(12, true);
    assert_eq!(pic.output(), Some(0x3c));
    assert_eq!(pic.acknowledge(), 0x3c);
    assert_eq!(pic.chips[0].isr, 1 << CASCADE_IRQ);
    assert_eq!(pic.chips[1].isr, 1 << 4);
    // Masking the cascade masks the slave.
    pic.port_write(SLAVE_CMD, 0x20);
    pic.port_write(MASTER_CMD, 0x20);
    pic.set_irq(12, false);
    pic.set_irq(12, true);
    pic.port_write(MASTER_DATA, 1 << CASCADE_IRQ);
    assert_eq!(pic.output(), None);
    assert!(!pic.unmasked(12));
}

#[test]
fn elcr_level_lines_and_auto_eoi() {
    let mut pic = Pic::new();
    linux_init(&mut pic);
    pic.port_write(ELCR_MASTER, 0xff);
    pic.port_write(ELCR_SLAVE, 0xff);
    assert_eq!((pic.port_read(ELCR_MASTER), pic.port_read(ELCR_SLAVE)), (0xf8, 0xde));
    // A level line stays requested until it drops.
    pic.set_irq(5, true);
    assert_eq!(pic.acknowledge(), 0x35);
    pic.port_write(MASTER_CMD, 0x20);
    assert_eq!(pic.output(), Some(0x35));
    pic.set_irq(5, false);
    assert_eq!(pic.output(), None);
    // Auto-EOI (ICW4 bit 1) leaves nothing in service.
    pic.port_write(MASTER_CMD, 0x11);
    pic.port_write(MASTER_DATA, 0x08);
    pic.port_write(MASTER_DATA, 0x04);
    pic.port_write(MASTER_DATA, 0x03);
    pic.set_irq(3, true);
    assert_eq!(pic.acknowledge(), 0x0b);
    assert_eq!(pic.chips[0].isr, 0);
}

#[test]
fn poll_mode() {
    let mut pic = Pic::new();
    linux_init(&mut pic);
    pic.set_irq(6, true);
    pic.port_write(MASTER_CMD, 0x0c);
    assert_eq!(pic.port_read(MASTER_CMD), 0x86);
    assert_eq!(pic.chips[0].isr, 1 << 6);
    pic.port_write(MASTER_CMD, 0x0c);
    assert_eq!(pic.port_read(MASTER_CMD), 0);
}

#[test]
fn a_chip_being_initialized_asks_for_nothing_until_its_last_icw() {
    let mut pic = Pic::new();
    linux_init(&mut pic);
    // ICW1 again: mask and base cleared, ICW2-4 still to come.
    pic.port_write(MASTER_CMD, 0x11);
    pic.set_irq(0, true);
    assert_eq!(pic.output(), None);
    // An INTA meanwhile is the spurious IRQ 7, and leaves the edge requested.
    pic.acknowledge();
    assert_eq!(pic.chips[0].isr, 0);
    pic.port_write(MASTER_DATA, 0x20);
    pic.port_write(MASTER_DATA, 1 << CASCADE_IRQ);
    assert_eq!(pic.output(), None);
    pic.port_write(MASTER_DATA, 0x01);
    assert_eq!(pic.output(), Some(0x20));
    // The slave's initialization holds back its lines through the cascade.
    pic.port_write(SLAVE_CMD, 0x11);
    pic.set_irq(12, true);
    assert_eq!(pic.acknowledge(), 0x20);
    pic.port_write(MASTER_CMD, 0x20);
    assert_eq!(pic.output(), None);
    for value in [0x38, CASCADE_IRQ, 0x01] {
        pic.port_write(SLAVE_DATA, value);
    }
    assert_eq!(pic.output(), Some(0x3c));
}

#[test]
fn the_best_request_is_the_first_line_in_rotated_priority_order() {
    for priority_add in 0..8 {
        let chip = Chip { priority_add, ..Chip::default() };
        for bits in 0..=255u8 {
            let expected = (0..8).find(|p| bits & (1 << ((p + priority_add) & 7)) != 0);
            assert_eq!(chip.best(bits), expected, "bits {bits:#010b}, priority_add {priority_add}");
        }
    }
}
