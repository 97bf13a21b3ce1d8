//! The broker task: serves the "broker" endpoint (see the library for the
//! logic). After each request it signals the notification of every VID
//! whose partitions received something (`notify:<badge>` in its startup
//! page, from the supervisor); it never calls a VID, so it never waits on one.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("broker is a Tessera task; it runs only on the bare target (x86_64-unknown-none).");
}

#[cfg(target_os = "none")]
mod task {
    use broker::Broker;
    use broker_api::{ENDPOINT, NOTIFY_PREFIX, dispatch_in_place};
    use core::fmt::Write;
    use tessera_rt::{Badge, caps, log};

    /// The bit the broker sets on a VID's notification.
    const DELIVERIES: u64 = 1;

    pub fn main() {
        let endpoint = caps::endpoint(ENDPOINT).expect("no \"broker\" endpoint to serve");
        let mut broker = Broker::new();
        log!("ready, serving {ENDPOINT}");
        tessera_rt::serve(endpoint, |caller, message| {
            let before = (broker.port_count(), broker.connection_count());
            dispatch_in_place(&mut broker, caller, message);
            let after = (broker.port_count(), broker.connection_count());
            if after.1 != before.1 {
                log!("{} ports, {} connections", after.0, after.1);
            }
            for vid in broker.take_notifications().into_iter().flatten() {
                notify(vid);
            }
        });
    }

    /// Signals VID `vid` that its partitions have deliveries to fetch.
    fn notify(vid: Badge) {
        let mut name: heapless::String<24> = heapless::String::new();
        let _ = write!(name, "{NOTIFY_PREFIX}{}", vid.0);
        let Some(notification) = caps::notification(&name) else {
            log!("no {name} notification: VID {} is not told of its deliveries", vid.0);
            return;
        };
        if let Err(e) = tessera_rt::signal(notification, DELIVERIES) {
            log!("cannot signal {name}: {e:?}");
        }
    }
}

tessera_rt::entry!(task::main);
