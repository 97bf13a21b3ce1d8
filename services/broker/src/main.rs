//! The broker task: serves the "broker" endpoint (see the library for the logic).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("broker is a Tessera task; it runs only on the bare target (x86_64-unknown-none).");
}

#[cfg(target_os = "none")]
mod task {
    use broker::Broker;
    use broker_api::{ENDPOINT, dispatch_in_place};
    use tessera_rt::{caps, log};

    pub fn main() {
        let endpoint = caps::endpoint(ENDPOINT).expect("no \"broker\" endpoint to serve");
        let mut broker = Broker::new();
        log!("ready, serving {ENDPOINT}");
        tessera_rt::serve(endpoint, |caller, message| dispatch_in_place(&mut broker, caller, message));
    }
}

tessera_rt::entry!(task::main);
