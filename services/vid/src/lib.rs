//! The VID's logic, host-tested: the guest loaders (Multiboot, Linux), the
//! guest's ACPI tables and PM1 registers ([`acpi`]), the
//! exit handlers ([`exits`]: port I/O, MMIO with instruction decoding,
//! CPUID, MSRs, HLT, hypercalls), the interrupt controllers and timers
//! ([`irq`]), the TLFS enlightenments ([`profile`], [`synthetic`],
//! [`hypercall`]), the COM1 16550A ([`uart`]). The task (`main.rs`,
//! `partitions.rs`) serves exits with them. The `vid` endpoint's interface
//! ([`Vid`]) only counts intercepts reported to it and refuses them with
//! `NotSupported`.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod acpi;
pub mod bus;
pub mod cpuid;
pub mod entry;
pub mod exits;
pub mod guest;
pub mod hypercall;
pub mod irq;
pub mod linux;
pub mod loader;
pub mod logs;
pub mod messaging;
pub mod mmio;
pub mod monitor;
pub mod msr;
pub mod overlay;
pub mod placement;
pub mod portio;
pub mod profile;
pub mod root;
pub mod synic;
pub mod synthetic;
pub mod testdev;
pub mod uart;

use tessera_idl::{Badge, ServiceError};
use tlfs::{HvMessageType, HvPartitionId};
use vid_api::{Server, VidState};

#[derive(Debug, Default)]
pub struct Vid {
    intercepts: u64,
}

impl Vid {
    pub const fn new() -> Vid {
        Vid { intercepts: 0 }
    }
}

impl Server for Vid {
    fn status(&mut self, _caller: Badge) -> (VidState, u64) {
        (VidState::Idle, self.intercepts)
    }

    fn handle_intercept(
        &mut self,
        _caller: Badge,
        partition: u64,
        _vp_index: u32,
        message_type: u32,
    ) -> Result<(), ServiceError> {
        if partition == HvPartitionId::INVALID.0 || !HvMessageType(message_type).is_intercept() {
            return Err(ServiceError::InvalidArgument);
        }
        self.intercepts = self.intercepts.saturating_add(1);
        Err(ServiceError::NotSupported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use tessera_idl::testing::Loopback;
    use tessera_idl::{CapSlot, Message};
    use vid_api::{Client, dispatch};

    #[test]
    fn intercepts_are_counted_and_explicitly_not_supported() {
        let server = RefCell::new(Vid::new());
        let transport =
            Loopback::new(Badge(3), |badge, request: &Message| dispatch(&mut *server.borrow_mut(), badge, request));
        let vid = Client::new(&transport, CapSlot(2));
        assert_eq!(vid.status(), Ok((VidState::Idle, 0)));
        assert_eq!(
            vid.handle_intercept(1, 0, HvMessageType::X64_IO_PORT_INTERCEPT.0),
            Ok(Err(ServiceError::NotSupported))
        );
        assert_eq!(
            vid.handle_intercept(1, 3, HvMessageType::X64_CPUID_INTERCEPT.0),
            Ok(Err(ServiceError::NotSupported))
        );
        assert_eq!(vid.status(), Ok((VidState::Idle, 2)));
    }

    #[test]
    fn malformed_intercepts_are_invalid_and_not_counted() {
        let mut vid = Vid::new();
        assert_eq!(
            vid.handle_intercept(Badge(3), 0, 0, HvMessageType::X64_IO_PORT_INTERCEPT.0),
            Err(ServiceError::InvalidArgument)
        );
        assert_eq!(
            vid.handle_intercept(Badge(3), 1, 0, HvMessageType::TIMER_EXPIRED.0),
            Err(ServiceError::InvalidArgument)
        );
        assert_eq!(vid.handle_intercept(Badge(3), 1, 0, 0x1234), Err(ServiceError::InvalidArgument));
        assert_eq!(vid.status(Badge(3)), (VidState::Idle, 0));
        // Short requests never reach the server.
        let reply =
            dispatch(&mut vid, Badge(3), &Message::from_words(vid_api::ops::handle_intercept, &[1, 0]).unwrap());
        assert_eq!(reply.label(), tessera_idl::ProtocolError::MALFORMED_REQUEST.0);
    }
}
