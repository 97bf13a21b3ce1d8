use super::*;

/// Byte-wide access to a UART's eight registers.
trait Bus {
    fn inb(&mut self, offset: u16) -> u8;
    fn outb(&mut self, offset: u16, value: u8);
}

/// The model, with what it transmits collected.
#[derive(Default)]
struct Com {
    uart: Uart,
    sent: Vec<u8>,
}

impl Bus for Com {
    fn inb(&mut self, offset: u16) -> u8 {
        self.uart.port_read(offset)
    }
    fn outb(&mut self, offset: u16, value: u8) {
        let sent = &mut self.sent;
        self.uart.port_write(offset, value, &mut |b| sent.push(b));
    }
}

/// The VID's UART before this model: LSR says "ready", RBR reads 0,
/// everything else reads all ones and drops writes.
struct FixedLsr;

impl Bus for FixedLsr {
    fn inb(&mut self, offset: u16) -> u8 {
        match offset {
            reg::LSR => 0x60,
            reg::RBR_THR_DLL => 0,
            _ => 0xff,
        }
    }
    fn outb(&mut self, _: u16, _: u8) {}
}

/// What Linux's 8250 `autoconfig()` concludes about a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Detected {
    NoUart,
    U8250,
    U16450,
    U16550,
    Unknown,
    U16550A,
    /// Any of the chips `autoconfig_16550a()` tells apart from a plain 16550A.
    Other(&'static str),
}

// Register meanings the probes give offsets 1 and 2 under special LCR values.
const LCR_CONF_MODE_A: u8 = 0x80;
const LCR_CONF_MODE_B: u8 = 0xbf;
const LCR_NATSEMI_BANK2: u8 = 0xe0;
const EFR: u16 = 2;
const FCR_64BYTE: u8 = 0x20;
const IER_UUE: u8 = 0x40;

/// Linux 6.1's `size_fifo()`: in loopback at the fastest divisor, send 256
/// bytes and count how many arrive.
fn size_fifo(p: &mut impl Bus) -> usize {
    let old_lcr = p.inb(reg::LCR);
    p.outb(reg::LCR, 0);
    let old_fcr = p.inb(reg::IIR_FCR);
    let old_mcr = p.inb(reg::MCR);
    p.outb(reg::IIR_FCR, fcr::ENABLE | fcr::CLEAR_RX | fcr::CLEAR_TX);
    p.outb(reg::MCR, mcr::LOOP);
    p.outb(reg::LCR, LCR_CONF_MODE_A);
    let old_dl = [p.inb(0), p.inb(1)];
    p.outb(0, 1);
    p.outb(1, 0);
    p.outb(reg::LCR, 0x03);
    for i in 0..=255 {
        p.outb(reg::RBR_THR_DLL, i);
    }
    let mut count = 0;
    while count < 256 && p.inb(reg::LSR) & lsr::DR != 0 {
        p.inb(reg::RBR_THR_DLL);
        count += 1;
    }
    p.outb(reg::IIR_FCR, old_fcr);
    p.outb(reg::MCR, old_mcr);
    p.outb(reg::LCR, LCR_CONF_MODE_A);
    p.outb(0, old_dl[0]);
    p.outb(1, old_dl[1]);
    p.outb(reg::LCR, old_lcr);
    count
}

/// `autoconfig_16550a()`: the probes for chips that pass as a 16550A.
fn autoconfig_16550a(p: &mut impl Bus) -> Detected {
    // An EFR behind DLAB (ST16C650V1).
    p.outb(reg::LCR, LCR_CONF_MODE_A);
    if p.inb(EFR) == 0 {
        return Detected::Other("16650 or Motorola DUART");
    }
    // An EFR behind LCR 0xbf (ST16C650V2, TI16C752, ...); the divisor-ID
    // check for broken EFRs runs only when this reads 0.
    p.outb(reg::LCR, LCR_CONF_MODE_B);
    if p.inb(EFR) == 0 {
        return Detected::Other("EFRv2");
    }
    // National Semiconductor SuperIO: MCR.LOOP mirrored in EXCR1 (bank 2).
    p.outb(reg::LCR, 0);
    let mcr0 = p.inb(reg::MCR);
    p.outb(reg::LCR, LCR_NATSEMI_BANK2);
    let excr1 = p.inb(2);
    if (excr1 ^ mcr0) & mcr::LOOP == 0 {
        p.outb(reg::LCR, 0);
        p.outb(reg::MCR, mcr0 ^ mcr::LOOP);
        p.outb(reg::LCR, LCR_NATSEMI_BANK2);
        let excr1 = p.inb(2);
        p.outb(reg::LCR, 0);
        p.outb(reg::MCR, mcr0);
        if (excr1 ^ mcr0) & mcr::LOOP != 0 {
            return Detected::Other("NS16550A");
        }
    }
    // TI16750: IIR bit 5 follows FCR bit 5, only with DLAB set.
    p.outb(reg::LCR, 0);
    p.outb(reg::IIR_FCR, fcr::ENABLE | FCR_64BYTE);
    let without_dlab = p.inb(reg::IIR_FCR) >> 5;
    p.outb(reg::IIR_FCR, fcr::ENABLE);
    p.outb(reg::LCR, LCR_CONF_MODE_A);
    p.outb(reg::IIR_FCR, fcr::ENABLE | FCR_64BYTE);
    let with_dlab = p.inb(reg::IIR_FCR) >> 5;
    p.outb(reg::IIR_FCR, fcr::ENABLE);
    p.outb(reg::LCR, 0);
    if (without_dlab, with_dlab) == (6, 7) {
        return Detected::Other("16750");
    }
    // XScale: a writable IER bit 6.
    let ier_saved = p.inb(reg::IER_DLM);
    p.outb(reg::IER_DLM, ier_saved & !IER_UUE);
    if p.inb(reg::IER_DLM) & IER_UUE == 0 {
        p.outb(reg::IER_DLM, ier_saved | IER_UUE);
        if p.inb(reg::IER_DLM) & IER_UUE != 0 {
            return Detected::Other("XScale");
        }
    }
    p.outb(reg::IER_DLM, ier_saved);
    // The U6 16550A has a 64-byte FIFO.
    if size_fifo(p) == 64 { Detected::Other("U6_16550A") } else { Detected::U16550A }
}

/// Linux 6.1's `autoconfig()` for a port without `UPF_SKIP_TEST` (the loop
/// test included), then its reset of the port.
fn autoconfig(p: &mut impl Bus) -> Detected {
    // The IER must keep its low nibble.
    let ier_saved = p.inb(reg::IER_DLM);
    p.outb(reg::IER_DLM, 0);
    let zero = p.inb(reg::IER_DLM) & 0x0f;
    p.outb(reg::IER_DLM, 0x0f);
    let all = p.inb(reg::IER_DLM) & 0x0f;
    p.outb(reg::IER_DLM, ier_saved);
    if zero != 0 || all != 0x0f {
        return Detected::NoUart;
    }
    let mcr_saved = p.inb(reg::MCR);
    let lcr_saved = p.inb(reg::LCR);
    // Loopback: OUT2 and RTS come back as DCD and CTS.
    p.outb(reg::MCR, mcr::LOOP | mcr::OUT2 | mcr::RTS);
    let lines = p.inb(reg::MSR) & 0xf0;
    p.outb(reg::MCR, mcr_saved);
    if lines != msr::DCD | msr::CTS {
        return Detected::NoUart;
    }
    // Clear an EFR (on a 16550A this writes FCR), then look at IIR's FIFO bits.
    p.outb(reg::LCR, LCR_CONF_MODE_B);
    p.outb(EFR, 0);
    p.outb(reg::LCR, 0);
    p.outb(reg::IIR_FCR, fcr::ENABLE);
    let detected = match p.inb(reg::IIR_FCR) >> 6 {
        0 => {
            let saved = p.inb(reg::SCR);
            p.outb(reg::SCR, 0xa5);
            let a = p.inb(reg::SCR);
            p.outb(reg::SCR, 0x5a);
            let b = p.inb(reg::SCR);
            p.outb(reg::SCR, saved);
            if (a, b) == (0xa5, 0x5a) { Detected::U16450 } else { Detected::U8250 }
        }
        1 => Detected::Unknown,
        2 => Detected::U16550,
        _ => autoconfig_16550a(p),
    };
    p.outb(reg::LCR, lcr_saved);
    // Reset: MCR back, FIFOs cleared and off, RBR read, interrupts off.
    p.outb(reg::MCR, mcr_saved);
    p.outb(reg::IIR_FCR, fcr::ENABLE);
    p.outb(reg::IIR_FCR, fcr::ENABLE | fcr::CLEAR_RX | fcr::CLEAR_TX);
    p.outb(reg::IIR_FCR, 0);
    p.inb(reg::RBR_THR_DLL);
    p.outb(reg::IER_DLM, 0);
    detected
}

/// The THR-empty checks of `serial8250_do_startup()`: whether the driver
/// would mark the port with `UART_BUG_THRE` (THRE not re-asserted when
/// ETBEI is enabled again) and `UART_BUG_TXEN` (no interrupt on enabling
/// ETBEI). `out2` is the MCR the driver sets for an IRQ-driven port.
fn startup_thre_bugs(p: &mut impl Bus) -> (bool, bool) {
    p.outb(reg::IER_DLM, ier::ETBEI);
    let first = p.inb(reg::IIR_FCR);
    p.outb(reg::IER_DLM, 0);
    p.outb(reg::IER_DLM, ier::ETBEI);
    let again = p.inb(reg::IIR_FCR);
    p.outb(reg::IER_DLM, 0);
    let bug_thre = first & iir::NO_INTERRUPT == 0 && again & iir::NO_INTERRUPT != 0;
    p.outb(reg::LCR, 0x03);
    p.outb(reg::MCR, mcr::DTR | mcr::RTS | mcr::OUT2);
    p.outb(reg::IER_DLM, ier::ETBEI);
    let line = p.inb(reg::LSR);
    let id = p.inb(reg::IIR_FCR);
    p.outb(reg::IER_DLM, 0);
    let bug_txen = line & lsr::TEMT != 0 && id & iir::NO_INTERRUPT != 0;
    (bug_thre, bug_txen)
}

#[test]
fn linux_autoconfig_detects_a_16550a_and_leaves_the_port_reset() {
    let mut com = Com::default();
    com.outb(reg::LCR, 0x03);
    com.outb(reg::SCR, 0x42);
    assert_eq!(autoconfig(&mut com), Detected::U16550A);
    // The probes restored what they changed; nothing reached the console
    // (the 256 bytes of the FIFO count were looped back).
    assert_eq!(com.inb(reg::LCR), 0x03);
    assert_eq!(com.inb(reg::MCR), 0);
    assert_eq!(com.inb(reg::SCR), 0x42);
    assert_eq!(com.inb(reg::LSR), lsr::THRE | lsr::TEMT);
    assert_eq!(com.inb(reg::IIR_FCR), iir::NO_INTERRUPT);
    assert!(com.sent.is_empty());
    assert!(!com.uart.irq_level());
}

#[test]
fn the_old_fixed_lsr_port_is_not_a_uart_to_linux() {
    assert_eq!(autoconfig(&mut FixedLsr), Detected::NoUart);
}

#[test]
fn the_fifo_count_in_loopback_is_16_with_an_overrun() {
    let mut com = Com::default();
    assert_eq!(size_fifo(&mut com), FIFO_SIZE);
    assert!(com.sent.is_empty());
}

#[test]
fn linux_startup_finds_no_thre_bugs() {
    let mut com = Com::default();
    assert_eq!(autoconfig(&mut com), Detected::U16550A);
    assert_eq!(startup_thre_bugs(&mut com), (false, false));
}

#[test]
fn the_reset_state() {
    let mut u = Uart::new();
    assert_eq!(u.port_read(reg::IER_DLM), 0);
    assert_eq!(u.port_read(reg::IIR_FCR), iir::NO_INTERRUPT);
    assert_eq!(u.port_read(reg::LCR), 0);
    assert_eq!(u.port_read(reg::MCR), 0);
    assert_eq!(u.port_read(reg::LSR), lsr::THRE | lsr::TEMT);
    assert_eq!(u.port_read(reg::MSR), msr::CTS | msr::DSR | msr::DCD);
    assert_eq!(u.rx_space(), 1);
    assert!(!u.irq_level());
    assert_eq!(u.port_read(8), 0xff);
    assert_eq!(Uart::com1_offset(0x3f8), Some(0));
    assert_eq!(Uart::com1_offset(0x3ff), Some(7));
    assert_eq!(Uart::com1_offset(0x400), None);
    assert_eq!(Uart::com1_offset(0x3f7), None);
}

/// A UART as Linux runs it: 8N1, FIFOs on with an 8-byte trigger, OUT2.
fn linux_running(ier_bits: u8) -> Com {
    let mut com = Com::default();
    com.outb(reg::LCR, 0x03);
    com.outb(reg::IIR_FCR, fcr::ENABLE | (2 << fcr::TRIGGER_SHIFT));
    com.outb(reg::MCR, mcr::DTR | mcr::RTS | mcr::OUT2);
    com.outb(reg::IER_DLM, ier_bits);
    com
}

#[test]
fn thr_empty_interrupt_protocol() {
    let mut com = linux_running(ier::ERBFI | ier::ELSI);
    assert!(!com.uart.irq_level());
    // Enabling ETBEI with THR empty raises the interrupt.
    com.outb(reg::IER_DLM, ier::ERBFI | ier::ELSI | ier::ETBEI);
    assert!(com.uart.irq_level());
    // Reading IIR while it is the reported source clears it.
    assert_eq!(com.inb(reg::IIR_FCR), iir::FIFOS_ENABLED | iir::THR_EMPTY);
    assert!(!com.uart.irq_level());
    assert_eq!(com.inb(reg::IIR_FCR), iir::FIFOS_ENABLED | iir::NO_INTERRUPT);
    // Each byte written is sent at once and THR is empty again.
    for &b in b"hi\n" {
        com.outb(reg::RBR_THR_DLL, b);
        assert!(com.uart.irq_level());
        assert_eq!(com.inb(reg::LSR) & (lsr::THRE | lsr::TEMT), lsr::THRE | lsr::TEMT);
    }
    assert_eq!(com.sent, b"hi\n");
    assert_eq!(com.inb(reg::IIR_FCR), iir::FIFOS_ENABLED | iir::THR_EMPTY);
    // Writing IER with ETBEI still set does not re-raise it; clearing
    // ETBEI drops a pending one, and enabling it again raises it.
    com.outb(reg::RBR_THR_DLL, b'x');
    com.outb(reg::IER_DLM, ier::ERBFI);
    assert!(!com.uart.irq_level());
    com.outb(reg::IER_DLM, ier::ERBFI | ier::ETBEI);
    assert_eq!(com.inb(reg::IIR_FCR), iir::FIFOS_ENABLED | iir::THR_EMPTY);
    com.outb(reg::IER_DLM, ier::ERBFI | ier::ETBEI);
    assert_eq!(com.inb(reg::IIR_FCR), iir::FIFOS_ENABLED | iir::NO_INTERRUPT);
    // OUT2 gates the line, not the condition.
    com.outb(reg::RBR_THR_DLL, b'y');
    com.outb(reg::MCR, mcr::DTR | mcr::RTS);
    assert!(!com.uart.irq_level());
    com.outb(reg::MCR, mcr::DTR | mcr::RTS | mcr::OUT2);
    assert!(com.uart.irq_level());
    assert_eq!(com.sent, b"hi\nxy");
}

#[test]
fn received_data_interrupts_follow_the_trigger_level() {
    let mut com = linux_running(ier::ERBFI | ier::ELSI);
    assert_eq!(com.uart.rx_space(), FIFO_SIZE);
    assert_eq!(com.uart.push_input(b"ls\r"), 3);
    assert!(com.uart.irq_level());
    // Below the trigger (8): the character timeout, reported at once.
    assert_eq!(com.inb(reg::IIR_FCR), iir::FIFOS_ENABLED | iir::CHARACTER_TIMEOUT);
    assert_eq!(com.inb(reg::LSR), lsr::THRE | lsr::TEMT | lsr::DR);
    let mut got = Vec::new();
    while com.inb(reg::LSR) & lsr::DR != 0 {
        got.push(com.inb(reg::RBR_THR_DLL));
    }
    assert_eq!(got, b"ls\r");
    assert!(!com.uart.irq_level());
    assert_eq!(com.inb(reg::IIR_FCR), iir::FIFOS_ENABLED | iir::NO_INTERRUPT);
    // At the trigger: received data available, until it drops below.
    assert_eq!(com.uart.push_input(b"12345678"), 8);
    assert_eq!(com.inb(reg::IIR_FCR), iir::FIFOS_ENABLED | iir::RECEIVED_DATA);
    assert_eq!(com.inb(reg::RBR_THR_DLL), b'1');
    assert_eq!(com.inb(reg::IIR_FCR), iir::FIFOS_ENABLED | iir::CHARACTER_TIMEOUT);
    // Without ERBFI, data waits silently.
    com.outb(reg::IER_DLM, ier::ELSI);
    assert!(!com.uart.irq_level());
    assert_eq!(com.inb(reg::LSR) & lsr::DR, lsr::DR);
    // An empty RBR reads the last byte again.
    for _ in 0..7 {
        com.inb(reg::RBR_THR_DLL);
    }
    assert_eq!(com.inb(reg::RBR_THR_DLL), b'8');
    assert_eq!(com.inb(reg::LSR) & lsr::DR, 0);
}

#[test]
fn host_input_is_taken_with_backpressure_and_never_overruns() {
    let mut com = linux_running(ier::ERBFI | ier::ELSI);
    let input: Vec<u8> = (0..40).collect();
    let mut offered = &input[..];
    let mut got = Vec::new();
    while !offered.is_empty() || com.inb(reg::LSR) & lsr::DR != 0 {
        let taken = com.uart.push_input(offered);
        assert!(taken <= FIFO_SIZE);
        offered = &offered[taken..];
        assert!(offered.is_empty() || com.uart.rx_space() == 0, "the FIFO is filled before input waits");
        // The guest reads only some of it before more arrives.
        for _ in 0..5 {
            let line = com.inb(reg::LSR);
            assert_eq!(line & lsr::OE, 0);
            if line & lsr::DR == 0 {
                break;
            }
            got.push(com.inb(reg::RBR_THR_DLL));
        }
        if offered.is_empty() {
            while com.inb(reg::LSR) & lsr::DR != 0 {
                got.push(com.inb(reg::RBR_THR_DLL));
            }
        }
    }
    assert_eq!(got, input);
    // Without FIFOs, RBR holds one byte.
    com.outb(reg::IIR_FCR, 0);
    assert_eq!(com.uart.rx_space(), 1);
    assert_eq!(com.uart.push_input(b"ab"), 1);
    assert_eq!(com.uart.push_input(b"b"), 0);
    assert_eq!(com.inb(reg::IIR_FCR), iir::RECEIVED_DATA);
    assert_eq!(com.inb(reg::RBR_THR_DLL), b'a');
}

#[test]
fn a_loopback_overrun_is_a_line_status_interrupt() {
    let mut com = linux_running(ier::ERBFI | ier::ELSI | ier::ETBEI);
    com.outb(reg::MCR, mcr::LOOP | mcr::OUT2);
    // The serial input is disconnected in loopback, and so is the IRQ.
    assert_eq!(com.uart.rx_space(), 0);
    assert_eq!(com.uart.push_input(b"z"), 0);
    for b in 0..20 {
        com.outb(reg::RBR_THR_DLL, b);
    }
    assert!(com.sent.is_empty());
    assert!(!com.uart.irq_level());
    // Line status first, then data, then THR empty.
    assert_eq!(com.inb(reg::IIR_FCR), iir::FIFOS_ENABLED | iir::LINE_STATUS);
    assert_eq!(com.inb(reg::LSR), lsr::THRE | lsr::TEMT | lsr::DR | lsr::OE);
    assert_eq!(com.inb(reg::LSR), lsr::THRE | lsr::TEMT | lsr::DR);
    assert_eq!(com.inb(reg::IIR_FCR), iir::FIFOS_ENABLED | iir::RECEIVED_DATA);
    // The FIFO kept the first 16 bytes; the rest were lost.
    let got: Vec<u8> = (0..FIFO_SIZE).map(|_| com.inb(reg::RBR_THR_DLL)).collect();
    assert_eq!(got, (0..16).collect::<Vec<u8>>());
    assert_eq!(com.inb(reg::IIR_FCR), iir::FIFOS_ENABLED | iir::THR_EMPTY);
    assert_eq!(com.inb(reg::IIR_FCR), iir::FIFOS_ENABLED | iir::NO_INTERRUPT);
    // Without FIFOs, a second byte destroys the first.
    com.outb(reg::IIR_FCR, 0);
    com.outb(reg::RBR_THR_DLL, b'a');
    com.outb(reg::RBR_THR_DLL, b'b');
    assert_eq!(com.inb(reg::LSR), lsr::THRE | lsr::TEMT | lsr::DR | lsr::OE);
    assert_eq!(com.inb(reg::RBR_THR_DLL), b'b');
}

#[test]
fn interrupt_priorities() {
    let mut com = linux_running(ier::WRITABLE);
    com.outb(reg::MCR, mcr::LOOP);
    com.outb(reg::IIR_FCR, fcr::ENABLE); // trigger 1
    for b in 0..=16 {
        com.outb(reg::RBR_THR_DLL, b);
    }
    // Modem deltas from entering loopback (DSR, CTS, DCD dropped).
    com.outb(reg::MCR, mcr::LOOP | mcr::DTR);
    let ids = |com: &mut Com| com.inb(reg::IIR_FCR) & !iir::FIFOS_ENABLED;
    assert_eq!(ids(&mut com), iir::LINE_STATUS);
    com.inb(reg::LSR);
    assert_eq!(ids(&mut com), iir::RECEIVED_DATA);
    com.outb(reg::IIR_FCR, fcr::ENABLE | fcr::CLEAR_RX);
    assert_eq!(ids(&mut com), iir::THR_EMPTY);
    assert_eq!(ids(&mut com), iir::MODEM_STATUS);
    com.inb(reg::MSR);
    assert_eq!(ids(&mut com), iir::NO_INTERRUPT);
}

#[test]
fn modem_status_in_loopback_with_deltas() {
    let mut com = linux_running(ier::EDSSI);
    assert_eq!(com.inb(reg::MSR), msr::CTS | msr::DSR | msr::DCD);
    com.outb(reg::MCR, mcr::LOOP | mcr::OUT1);
    assert_eq!(com.inb(reg::MSR), msr::RI | msr::DCTS | msr::DDSR | msr::DDCD);
    assert_eq!(com.inb(reg::MSR), msr::RI);
    com.outb(reg::MCR, mcr::LOOP | mcr::RTS | mcr::DTR | mcr::OUT2);
    // RI falling is a trailing edge; CTS, DSR, DCD rising are deltas.
    assert_eq!(com.inb(reg::MSR), msr::CTS | msr::DSR | msr::DCD | msr::DCTS | msr::DDSR | msr::DDCD | msr::TERI);
    com.outb(reg::MCR, mcr::LOOP | mcr::RTS | mcr::DTR | mcr::OUT2 | mcr::OUT1);
    // RI rising is not reported.
    assert_eq!(com.inb(reg::IIR_FCR), iir::FIFOS_ENABLED | iir::NO_INTERRUPT);
    // Leaving loopback: RI drops (TERI), CTS/DSR/DCD stay.
    com.outb(reg::MCR, mcr::OUT2);
    assert!(com.uart.irq_level());
    assert_eq!(com.inb(reg::IIR_FCR), iir::FIFOS_ENABLED | iir::MODEM_STATUS);
    assert_eq!(com.inb(reg::MSR), msr::CTS | msr::DSR | msr::DCD | msr::TERI);
    assert!(!com.uart.irq_level());
}

#[test]
fn registers_hold_their_writable_bits() {
    let mut com = Com::default();
    com.outb(reg::IER_DLM, 0xff);
    assert_eq!(com.inb(reg::IER_DLM), 0x0f);
    com.outb(reg::MCR, !mcr::LOOP);
    assert_eq!(com.inb(reg::MCR), 0x0f);
    com.outb(reg::SCR, 0xa5);
    assert_eq!(com.inb(reg::SCR), 0xa5);
    // The divisor latch shares offsets 0 and 1 with RBR/THR and IER.
    com.outb(reg::LCR, lcr::DLAB | 0x03);
    com.outb(reg::RBR_THR_DLL, 0x01);
    com.outb(reg::IER_DLM, 0x02);
    assert_eq!((com.inb(reg::RBR_THR_DLL), com.inb(reg::IER_DLM)), (0x01, 0x02));
    assert_eq!(com.inb(reg::LCR), lcr::DLAB | 0x03);
    com.outb(reg::LCR, 0x03);
    assert_eq!(com.inb(reg::IER_DLM), 0x0f);
    assert!(com.sent.is_empty());
    // LSR and MSR writes change nothing.
    com.outb(reg::LSR, 0xff);
    com.outb(reg::MSR, 0xff);
    assert_eq!(com.inb(reg::LSR), lsr::THRE | lsr::TEMT);
    assert_eq!(com.inb(reg::MSR), msr::CTS | msr::DSR | msr::DCD);
    // Offsets past the UART.
    com.outb(9, 0x12);
    assert_eq!(com.inb(9), 0xff);
}

#[test]
fn fifo_control() {
    let mut com = Com::default();
    assert_eq!(com.inb(reg::IIR_FCR) & iir::FIFOS_ENABLED, 0);
    com.outb(reg::IIR_FCR, fcr::ENABLE | FCR_64BYTE | fcr::CLEAR_TX);
    assert_eq!(com.inb(reg::IIR_FCR), iir::FIFOS_ENABLED | iir::NO_INTERRUPT);
    assert_eq!(com.uart.push_input(b"abc"), 3);
    // Rewriting FCR.0 unchanged keeps the data; CLEAR_RX drops it.
    com.outb(reg::IIR_FCR, fcr::ENABLE);
    assert_eq!(com.inb(reg::LSR) & lsr::DR, lsr::DR);
    com.outb(reg::IIR_FCR, fcr::ENABLE | fcr::CLEAR_RX);
    assert_eq!(com.inb(reg::LSR) & lsr::DR, 0);
    // Switching modes empties the FIFO too.
    com.uart.push_input(b"abc");
    com.outb(reg::IIR_FCR, 0);
    assert_eq!(com.inb(reg::LSR) & lsr::DR, 0);
    assert_eq!(com.inb(reg::IIR_FCR) & iir::FIFOS_ENABLED, 0);
    // The trigger level is programmed only with FCR.0 set.
    com.outb(reg::IER_DLM, ier::ERBFI);
    com.outb(reg::IIR_FCR, 0xc0);
    com.outb(reg::IIR_FCR, fcr::ENABLE | (3 << fcr::TRIGGER_SHIFT));
    com.uart.push_input(&[0; 13]);
    assert_eq!(com.inb(reg::IIR_FCR), iir::FIFOS_ENABLED | iir::CHARACTER_TIMEOUT);
    com.uart.push_input(&[0]);
    assert_eq!(com.inb(reg::IIR_FCR), iir::FIFOS_ENABLED | iir::RECEIVED_DATA);
}

#[test]
fn wide_accesses_are_split_into_bytes() {
    let mut u = Uart::new();
    let mut sent = Vec::new();
    u.write_sized(reg::LCR, 2, 0xff_0b03, &mut |b| sent.push(b));
    assert_eq!((u.port_read(reg::LCR), u.port_read(reg::MCR)), (0x03, 0x0b));
    assert_eq!(u.read_sized(reg::MCR, 2), u32::from_le_bytes([0x0b, lsr::THRE | lsr::TEMT, 0, 0]));
    assert_eq!(u.read_sized(reg::SCR, 4), 0xffff_ff00);
    u.write_sized(reg::RBR_THR_DLL, 1, 0x4241, &mut |b| sent.push(b));
    assert_eq!(sent, b"A");
}
