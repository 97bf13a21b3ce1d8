//! Kernel state that names an object by its pool index must forget the
//! object when it goes: otherwise whatever is made next at that index (for
//! anyone) inherits it. Here: a VP's monitor endpoint, deleted; a stop
//! report must not reach the endpoint made next in its place, with the
//! badge of the capability the monitor was set from.

use crate::guest::Guest;
use crate::objects::{Own, bits, delete, report};
use hostile::Check;
use tessera_rt::abi::{Rights, labels};
use tessera_rt::{ErrorCode, ObjectType, Operation, invoke, log};

/// The badge of the deleted monitor capability: a report carrying it to
/// another endpoint is a badge nobody minted there.
const MONITOR_BADGE: u64 = 0x5ec0_0001;
/// Ticks the VP's handler may take (it never answers).
const EXIT_TIMEOUT: u64 = 1;
/// Ticks to wait for a report on the new endpoint.
const PATIENCE: u64 = 20;

pub fn monitor_of_deleted_endpoint(own: &mut Own) {
    let outcome = (|| -> Result<Result<(u32, u64), ErrorCode>, ErrorCode> {
        let guest = Guest::new(own)?;
        let old = own.retype(ObjectType::ENDPOINT, 0)?;
        let badged = own.slot();
        let send = bits(Rights::new().with_send(true));
        invoke(old, Operation::CAP_MINT, &[u64::from(badged.0), send, MONITOR_BADGE])?;
        invoke(guest.vp, Operation::VP_SET_MONITOR, &[u64::from(badged.0), EXIT_TIMEOUT])?;
        delete(badged);
        delete(old);
        // Made next, in the deleted endpoint's place.
        let new = own.retype(ObjectType::ENDPOINT, 0)?;
        // The VP exits to `guest.exits`, which nobody serves: its handler
        // times out and the kernel stops it and tells its monitor.
        invoke(guest.vp, Operation::VP_START, &[])?;
        let got = tessera_rt::recv_timeout(new, PATIENCE).map(|r| (r.message.label(), r.badge.0));
        if got.is_ok() {
            let _ = tessera_rt::reply(&tessera_rt::Message::new(0));
        }
        guest.end();
        delete(new);
        Ok(got)
    })();
    own.reset();
    let what = "receive on an endpoint made after a VP's monitor endpoint was deleted";
    match outcome {
        Ok(Ok((label, badge))) => {
            let stopped = if label == labels::VP_STOPPED { "a VP_STOPPED report" } else { "a message" };
            report(what, false, format_args!("{stopped} with badge {badge:#x} (expected TIMEOUT)"));
        }
        Ok(Err(e)) => log!("{}", Check { what, expected: &[ErrorCode::TIMEOUT] }.report(Err(e))),
        Err(e) => report(what, false, format_args!("could not run: {e:?}")),
    }
}
