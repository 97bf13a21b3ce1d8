//! The VMBus host task: answers the VMBus control messages of the
//! partitions whose VMBus message connection (ID 4) the manifest leads to
//! one of its ports (see the library for the protocol).
//!
//! It is a broker party of its own (`broker_api::task_party`), learnt from
//! the name of the notification the broker signals when its ports have
//! deliveries (`broker-party:<party>`). For each message it fetches, it
//! answers on its own connection whose ID is the port's ID: the manifest
//! pairs them, leading that connection to a message port of the same
//! partition at VP 0, SINT 2. One [`vmbus_host::Host`] per port.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("vmbus-host is a Tessera task; it runs only on the bare target (x86_64-unknown-none).");
}

#[cfg(target_os = "none")]
mod task {
    use abi::ObjectType;
    use broker_api::{Client, ENDPOINT, HvError, PARTY_NOTIFICATION_PREFIX, delivery};
    use tessera_rt::{Kernel, caps, log};
    use vmbus_host::{Host, MESSAGE_TYPE, Outcome};

    /// Partitions (ports) one host serves.
    const MAX_PORTS: usize = 8;

    pub fn main() {
        // The name after the prefix is the party number.
        let Some((number, events)) = caps::with_prefix(PARTY_NOTIFICATION_PREFIX, ObjectType::NOTIFICATION).next()
        else {
            log!("no VMBus connection leads here; nothing to serve");
            return;
        };
        let Ok(party) = number.parse::<u64>() else {
            log!("cannot read my party from {PARTY_NOTIFICATION_PREFIX}{number}");
            return;
        };
        let broker = caps::endpoint(ENDPOINT).expect("no \"broker\" endpoint");
        let client = Client::new(Kernel, broker);
        let mut hosts: heapless::Vec<(u32, Host), MAX_PORTS> = heapless::Vec::new();
        log!("ready (broker party {party})");
        loop {
            loop {
                let (kind, _vp, _sint, port, value, payload) = match client.fetch(party) {
                    Ok(Ok(d)) => d,
                    Ok(Err(HvError::NO_DATA)) => break,
                    Ok(Err(e)) => {
                        log!("the broker refused a fetch: {e:?}");
                        break;
                    }
                    Err(e) => {
                        log!("cannot call the broker: {e:?}");
                        break;
                    }
                };
                if kind != delivery::MESSAGE {
                    continue;
                }
                let host = match hosts.iter().position(|(p, _)| *p == port) {
                    Some(i) => &mut hosts[i].1,
                    None if hosts.push((port, Host::new())).is_ok() => &mut hosts.last_mut().expect("pushed").1,
                    None => {
                        log!("port {port:#x}: more than {MAX_PORTS} ports; ignored");
                        continue;
                    }
                };
                let outcome = host.handle(value, payload.as_slice());
                report(port, &outcome);
                if let Some(reply) = outcome.reply() {
                    match client.post_message(party, port, MESSAGE_TYPE, reply.as_bytes()) {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => log!("port {port:#x}: cannot answer on connection {port:#x}: {e:?}"),
                        Err(e) => log!("cannot call the broker: {e:?}"),
                    }
                }
            }
            let _ = tessera_rt::wait(events);
        }
    }

    fn report(port: u32, outcome: &Outcome) {
        match *outcome {
            Outcome::Contact { requested, accepted, .. } => {
                let (major, minor) = (requested >> 16, requested & 0xffff);
                let verdict = if accepted { "accepted" } else { "refused" };
                log!("port {port:#x}: InitiateContact for version {major}.{minor}: {verdict}");
            }
            Outcome::Offers { .. } => log!("port {port:#x}: RequestOffers: AllOffersDelivered (no channels)"),
            Outcome::Unloaded { .. } => log!("port {port:#x}: Unload: UnloadResponse"),
            Outcome::Ignored(why) => log!("port {port:#x}: ignored: {why:?}"),
        }
    }
}

tessera_rt::entry!(task::main);
