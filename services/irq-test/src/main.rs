//! The `irq-test` task: a user-mode driver for the 8254 PIT. It programs
//! channel 0 as a 100 Hz rate generator through its I/O-port capability,
//! then takes five interrupts: each arrives as a bit on its "irq"
//! notification, and each is acknowledged through the line's capability,
//! which unmasks the line again. Then it stops the PIT.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("irq-test is a Tessera task; it runs only on the bare target (x86_64-unknown-none).");
}

#[cfg(target_os = "none")]
fn main() {
    use tessera_rt::{ObjectType, Operation, caps, invoke, io, log, wait_timeout};

    const CHANNEL0: u16 = 0x40;
    const COMMAND: u16 = 0x43;
    /// Channel 0, lobyte/hibyte, mode 2 (rate generator), binary.
    const RATE_GENERATOR: u32 = 0b0011_0100;
    /// Channel 0, lobyte/hibyte, mode 0 (interrupt on terminal count).
    const ONE_SHOT: u32 = 0b0011_0000;
    const DIVISOR_100HZ: u32 = 11_932;
    const INTERRUPTS: u32 = 5;
    const PATIENCE_TICKS: u64 = 100;

    let (Some(ports), Some(notification)) = (caps::io_ports("io0"), caps::notification("irq")) else {
        log!("missing the \"io0\" or \"irq\" capability");
        return;
    };
    let Some((line_name, line)) = caps::with_prefix("irq", ObjectType::INTERRUPT).next() else {
        log!("no interrupt line capability");
        return;
    };
    let program = |mode: u32, count: u32| {
        io::output(ports, COMMAND, 1, mode)?;
        io::output(ports, CHANNEL0, 1, count & 0xff)?;
        io::output(ports, CHANNEL0, 1, count >> 8)
    };
    if let Err(e) = program(RATE_GENERATOR, DIVISOR_100HZ) {
        log!("cannot program the PIT: {e:?}");
        return;
    }
    let mut taken = 0;
    for _ in 0..INTERRUPTS {
        match wait_timeout(notification, PATIENCE_TICKS) {
            Ok(bits) => {
                taken += 1;
                log!("interrupt {taken} on GSI {line_name} (bits {bits:#x})");
                if let Err(e) = invoke(line, Operation::IRQ_ACK, &[]) {
                    log!("acknowledge failed: {e:?}");
                    break;
                }
            }
            Err(e) => {
                log!("no interrupt within {PATIENCE_TICKS} ticks: {e:?}");
                break;
            }
        }
    }
    let _ = program(ONE_SHOT, 0);
    log!("took {taken} of {INTERRUPTS} interrupts on GSI {line_name}");
}

tessera_rt::entry!(main);
