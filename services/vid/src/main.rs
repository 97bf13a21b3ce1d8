//! The VID task: serves the "vid" endpoint (see the library for the logic).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("vid is a Tessera task; it runs only on the bare target (x86_64-unknown-none).");
}

#[cfg(target_os = "none")]
mod task {
    use tessera_rt::{caps, log};
    use vid::Vid;
    use vid_api::{ENDPOINT, dispatch_in_place};

    pub fn main() {
        let endpoint = caps::endpoint(ENDPOINT).expect("no \"vid\" endpoint to serve");
        let mut vid = Vid::new();
        log!("ready, serving {ENDPOINT}");
        tessera_rt::serve(endpoint, |caller, message| dispatch_in_place(&mut vid, caller, message));
    }
}

tessera_rt::entry!(task::main);
