//! The `vid` interface ([`vid_api`]), answered by the exit loop between
//! exits and, once every partition has ended, by the task. A request comes
//! from a client holding a SEND capability to the VID's endpoint (the
//! manifest's `uses = ["vid"]`): its badge is below [`super::EXIT_BADGES`],
//! which only the VID's VPs' exit capabilities carry.

use super::{Running, end};
use crate::host::{Kernel, Services};
use tessera_idl::{Badge, Message, ServiceError};
use vid_api::{ExitKind, PartitionState, Server};

/// The partitions, as the interface sees them.
struct Requests<'a, 'm, K, S> {
    kernel: &'a K,
    services: &'a S,
    running: &'a mut [Running<'m>],
}

impl<'m, K, S> Requests<'_, 'm, K, S> {
    /// Manifest partition `index`, if this VID runs it.
    fn partition(&mut self, index: u32) -> Result<&mut Running<'m>, ServiceError> {
        self.running.iter_mut().find(|r| r.index == u64::from(index)).ok_or(ServiceError::NotFound)
    }
}

impl<K: Kernel, S: Services> Server for Requests<'_, '_, K, S> {
    fn status(&mut self, _caller: Badge) -> (u32, u64) {
        (super::live(self.running) as u32, self.running.iter().map(|r| r.exits).sum())
    }

    fn partition_status(&mut self, _caller: Badge, index: u32) -> Result<(PartitionState, u32, u64), ServiceError> {
        let r = self.partition(index)?;
        let state = if r.stopped { PartitionState::Stopped } else { PartitionState::Running };
        Ok((state, r.vps.len() as u32, r.exits))
    }

    fn partition_exits(&mut self, _caller: Badge, index: u32, kind: ExitKind) -> Result<u64, ServiceError> {
        let s = &self.partition(index)?.vmm.stats;
        Ok(match kind {
            ExitKind::Port => s.port,
            ExitKind::Msr => s.msr,
            ExitKind::Cpuid => s.cpuid,
            ExitKind::Hypercall => s.hypercall,
            ExitKind::Memory => s.memory,
            ExitKind::Halt => s.halt,
            ExitKind::Other => s.other,
        })
    }

    fn stop_partition(&mut self, caller: Badge, index: u32) -> Result<(), ServiceError> {
        let (kernel, services) = (self.kernel, self.services);
        let r = self.partition(index)?;
        if !r.stopped {
            end(kernel, services, r, None, format_args!("stopped at the request of badge {}", caller.0));
        }
        Ok(())
    }
}

/// The reply to a client's `request` (badge `caller`) of the `vid`
/// interface on the VID's `running` partitions.
pub fn answer(
    kernel: &impl Kernel,
    services: &impl Services,
    running: &mut [Running<'_>],
    caller: u64,
    mut request: Message,
) -> Message {
    if super::exit_of(caller).is_some() {
        // An exit that came after its partition's end (the task answers
        // once the loop is over): the VP stays stopped.
        super::stop_reply(&mut request);
        return request;
    }
    vid_api::dispatch_in_place(&mut Requests { kernel, services, running }, Badge(caller), &mut request);
    request
}
