//! The partition-manager task: serves the "partition-manager" endpoint (see
//! the library for the logic).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("partition-manager is a Tessera task; it runs only on the bare target (x86_64-unknown-none).");
}

#[cfg(target_os = "none")]
mod task {
    use partition_manager::PartitionManager;
    use partition_manager_api::{ENDPOINT, dispatch_in_place};
    use tessera_rt::{caps, log};

    pub fn main() {
        let endpoint = caps::endpoint(ENDPOINT).expect("no \"partition-manager\" endpoint to serve");
        let mut manager = PartitionManager::new();
        log!("ready, serving {ENDPOINT}");
        tessera_rt::serve(endpoint, |caller, message| dispatch_in_place(&mut manager, caller, message));
    }
}

tessera_rt::entry!(task::main);
