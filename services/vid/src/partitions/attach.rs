//! Handing the classic policy's VP scheduling contexts to the scheduler
//! (`scheduler_api`'s `attach_vp`), which changes them at run time when
//! whoever holds its control capability asks. A copy of the context
//! travels with the request (the VID keeps its own); without a "scheduler"
//! capability the VID keeps them to itself and the boot parameters stay.

use abi::{CapSlot, ErrorCode};
use scheduler::classic::Classic;
use tessera_idl::{Message, Transport};
use tessera_rt::{caps, log};

/// A CALL that carries one capability with the request.
struct WithCap(CapSlot);

impl Transport for WithCap {
    fn call(&self, endpoint: CapSlot, message: &mut Message) -> Result<(), ErrorCode> {
        *message = tessera_rt::call_with_caps(endpoint, message, &[self.0])?.message;
        Ok(())
    }
}

/// Attaches VP `vp` of partition `name`, on CPU `lp` with `params`, and
/// its scheduling context `context` at the scheduler, if there is one.
pub(super) fn attach(name: &str, vp: usize, lp: u32, params: Classic, context: CapSlot) {
    let Some(endpoint) = caps::endpoint(scheduler_api::ENDPOINT) else { return };
    let scheduler = scheduler_api::Client::new(WithCap(context), endpoint);
    let result = scheduler.attach_vp(name.as_bytes(), vp as u32, lp, params.reserve, params.cap, params.weight);
    if !matches!(result, Ok(Ok(()))) {
        log!("{name}: VP {vp}: the scheduler did not take its scheduling context ({result:?}); its parameters stay");
    }
}
