//! The I/O APIC's level-triggered delivery (82093AA datasheet 3.2.4, SDM
//! 11.8.5 "Signaling Interrupt Servicing Completion"), driven by a level
//! source the guest controls: COM1's transmitter-empty interrupt on ISA
//! IRQ 4, asserted while IER.ETBEI and MCR.OUT2 are set and the THRE
//! interrupt has not been read from IIR. Nothing is printed while the
//! interrupt is enabled (a print would assert it again); the check lines
//! come after.

use super::{VEC_LEVEL, count, wait_for};
use crate::checks::{Checks, fail_unless};
use crate::hw;
use guest_testkernel::detail;

const IOAPIC: u64 = 0xfec0_0000;
const IOWIN: u64 = 0x10;
/// COM1's pin (ISA IRQ 4 has no override in the MADT).
const PIN: u32 = 4;
const COM1: u16 = 0x3f8;
const IER: u16 = COM1 + 1;
const IIR: u16 = COM1 + 2;
const MCR: u16 = COM1 + 4;
const IER_ETBEI: u8 = 1 << 1;
const MCR_OUT2: u8 = 1 << 3;
const RTE_LEVEL: u32 = 1 << 15;
const RTE_REMOTE_IRR: u32 = 1 << 14;
const RTE_DELIVERY_STATUS: u32 = 1 << 12;
const RTE_MASKED: u32 = 1 << 16;
const XAPIC_EOI: u64 = 0xb0;
const XAPIC_IRR: u64 = 0x200;

fn select(index: u32) {
    hw::write32(IOAPIC, index);
}

fn entry_low() -> u32 {
    select(0x10 + 2 * PIN);
    hw::read32(IOAPIC + IOWIN)
}

fn set_entry(low: u32, dest: u32) {
    select(0x10 + 2 * PIN + 1);
    hw::write32(IOAPIC + IOWIN, dest << 24);
    select(0x10 + 2 * PIN);
    hw::write32(IOAPIC + IOWIN, low);
}

fn irr_has(vector: u8) -> bool {
    let word = hw::read32(hw::LAPIC_BASE + XAPIC_IRR + 0x10 * u64::from(vector >> 5));
    word & 1 << (vector & 31) != 0
}

/// What the sequence saw, reported once the UART is quiet again.
struct Seen {
    while_masked: u64,
    first: u64,
    remote_after_accept: bool,
    status: bool,
    irr_while_remote: bool,
    again_after_eoi: u64,
    iir: u8,
    remote_after_last_eoi: bool,
    after_last_eoi: u64,
}

pub(super) fn run(c: &mut Checks) {
    hw::write32(hw::LAPIC_BASE + 0xf0, 0x1ff);
    hw::write32(hw::LAPIC_BASE + 0x80, 0);
    let id = hw::read32(hw::LAPIC_BASE + 0x20) >> 24;
    let (ier, mcr) = (hw::inb(IER), hw::inb(MCR));
    if ier != 0 {
        c.fail("COM1 is quiet before the I/O APIC test", detail!("IER {ier:#x}"));
        return;
    }
    let before = count(VEC_LEVEL);
    // Masked first: the asserted line waits for the unmasking.
    set_entry(RTE_MASKED | RTE_LEVEL | u32::from(VEC_LEVEL), id);
    hw::outb(MCR, mcr | MCR_OUT2);
    hw::outb(IER, IER_ETBEI);
    let while_masked = wait_for(VEC_LEVEL, before + 1, 2) - before;
    set_entry(RTE_LEVEL | u32::from(VEC_LEVEL), id);
    let first = wait_for(VEC_LEVEL, before + 1, 10) - before;
    let low = entry_low();
    let remote_after_accept = low & RTE_REMOTE_IRR != 0;
    // In service (no EOI yet), the line still asserted: nothing new is sent.
    hw::interrupt_window(hw::tsc_hz() / 1000 * 2, || false);
    let irr_while_remote = irr_has(VEC_LEVEL);
    // EOI with the line still asserted: sent again.
    hw::write32(hw::LAPIC_BASE + XAPIC_EOI, 0);
    let again_after_eoi = wait_for(VEC_LEVEL, before + 2, 10) - before;
    // Reading IIR retires the THRE interrupt: the line drops.
    let iir = hw::inb(IIR);
    hw::write32(hw::LAPIC_BASE + XAPIC_EOI, 0);
    let remote_after_last_eoi = entry_low() & RTE_REMOTE_IRR != 0;
    let after_last_eoi = wait_for(VEC_LEVEL, before + 3, 2) - before;
    set_entry(RTE_MASKED, 0);
    hw::outb(IER, ier);
    hw::outb(MCR, mcr);
    let seen = Seen {
        while_masked,
        first,
        remote_after_accept,
        status: low & RTE_DELIVERY_STATUS != 0,
        irr_while_remote,
        again_after_eoi,
        iir,
        remote_after_last_eoi,
        after_last_eoi,
    };
    report(c, &seen);
}

fn report(c: &mut Checks, s: &Seen) {
    c.require(
        "masked level pin (COM1 THRE, IRQ 4) sends nothing (82093AA 3.2.4)",
        fail_unless(s.while_masked == 0, detail!("taken {} times", s.while_masked)),
    );
    c.require(
        "unmasking it with the line asserted delivers (82093AA 3.2.4)",
        fail_unless(s.first == 1, detail!("taken {} times", s.first)),
    );
    c.require(
        "remote IRR set once a level IRQ is accepted (82093AA 3.2.4)",
        fail_unless(s.remote_after_accept, detail!("remote IRR clear")),
    );
    c.info("RTE delivery status after delivery", format_args!("{}", u8::from(s.status)));
    c.require(
        "no resend while remote IRR set, line high (82093AA 3.2.4)",
        fail_unless(!s.irr_while_remote, detail!("the vector is in the local APIC's IRR again")),
    );
    c.require(
        "level EOI with the line still high resends (SDM 11.8.5)",
        fail_unless(s.again_after_eoi == 2, detail!("taken {} times in all", s.again_after_eoi)),
    );
    c.require(
        "EOI clears remote IRR; line low: no resend (SDM 11.8.5)",
        fail_unless(
            s.iir & 0xf == 0x2 && !s.remote_after_last_eoi && s.after_last_eoi == 2,
            detail!("IIR {:#x}, remote IRR {}, taken {} in all", s.iir, s.remote_after_last_eoi, s.after_last_eoi),
        ),
    );
}
