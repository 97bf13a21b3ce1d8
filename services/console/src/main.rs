//! The console task: serves the "console" endpoint, writes every line to
//! COM1 and polls COM1's receiver for typed bytes, through the I/O-port
//! capability "io0" (its first manifest range) (see the library for the
//! logic).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("console is a Tessera task; it runs only on the bare target (x86_64-unknown-none).");
}

#[cfg(target_os = "none")]
mod task {
    use console::{COM1, Console, Output, Receiver, UartPorts};
    use tessera_rt::{CapSlot, caps, log, log::Sink};

    /// COM1 through `IO_OUT_BYTES` on the "io0" capability.
    struct Uart(CapSlot);

    impl Output for Uart {
        fn write(&mut self, bytes: &[u8]) {
            // Nothing useful can be done if the port refuses: drop the line.
            let _ = tessera_rt::io::uart_write(self.0, COM1, bytes);
        }
    }

    /// COM1's registers through `IO_IN`/`IO_OUT` on the "io0" capability.
    struct Com1(CapSlot);

    impl UartPorts for Com1 {
        fn inb(&mut self, offset: u16) -> Option<u8> {
            tessera_rt::io::input(self.0, COM1 + offset, 1).ok().map(|v| v as u8)
        }

        fn outb(&mut self, offset: u16, value: u8) -> Option<()> {
            tessera_rt::io::output(self.0, COM1 + offset, 1, value.into()).ok()
        }
    }

    pub fn main() {
        let uart = caps::io_ports("io0").expect("no \"io0\" I/O-port capability");
        let fifos = console::enable_fifos(&mut Com1(uart));
        // The console must not call its own endpoint: its own output (and a
        // panic message) goes straight to the port.
        tessera_rt::log::set_sink(Sink::Uart { ports: uart, port: COM1 });
        let endpoint = caps::endpoint(console_api::ENDPOINT).expect("no \"console\" endpoint to serve");
        if fifos.is_none() {
            log!("could not program COM1's FIFOs");
        }
        let mut console = Console::with_input(Uart(uart), Receiver(Com1(uart)));
        log!("ready, serving {}", console_api::ENDPOINT);
        tessera_rt::serve(endpoint, |caller, message| console.handle(caller, message));
    }
}

tessera_rt::entry!(task::main);
