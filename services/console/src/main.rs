//! The console task: serves the "console" endpoint and writes every line to
//! COM1 through the I/O-port capability "io0" (its first manifest range) (see the library for the logic).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("console is a Tessera task; it runs only on the bare target (x86_64-unknown-none).");
}

#[cfg(target_os = "none")]
mod task {
    use console::{COM1, Console, Output};
    use tessera_rt::{CapSlot, caps, log, log::Sink};

    /// COM1 through `IO_OUT_BYTES` on the "io0" capability.
    struct Uart(CapSlot);

    impl Output for Uart {
        fn write(&mut self, bytes: &[u8]) {
            // Nothing useful can be done if the port refuses: drop the line.
            let _ = tessera_rt::io::uart_write(self.0, COM1, bytes);
        }
    }

    pub fn main() {
        let uart = caps::io_ports("io0").expect("no \"io0\" I/O-port capability");
        // The console must not call its own endpoint: its own output (and a
        // panic message) goes straight to the port.
        tessera_rt::log::set_sink(Sink::Uart { ports: uart, port: COM1 });
        let endpoint = caps::endpoint(console_api::ENDPOINT).expect("no \"console\" endpoint to serve");
        let mut console = Console::new(Uart(uart));
        log!("ready, serving {}", console_api::ENDPOINT);
        tessera_rt::serve(endpoint, |caller, message| console_api::dispatch_in_place(&mut console, caller, message));
    }
}

tessera_rt::entry!(task::main);
