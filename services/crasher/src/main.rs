//! The `crasher` test task: logs "crasher: starting", then panics. The
//! runtime's panic handler logs "crasher: panicked at ..." and executes
//! `ud2`, so the supervisor receives a fault (and restarts it per the
//! manifest).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("crasher is a Tessera task; it runs only on the bare target (x86_64-unknown-none).");
}

#[cfg(target_os = "none")]
fn main() {
    tessera_rt::log!("starting");
    panic!("deliberate crash");
}

tessera_rt::entry!(main);
