//! Host-test helpers: transports that run a server in the same process.

use crate::{Badge, CapSlot, ErrorCode, Message, Transport};
use core::cell::{Cell, RefCell};

/// A [`Transport`] whose CALL runs `handler` (typically a closure around an
/// interface's `dispatch`) directly, as if sent by `badge`.
pub struct Loopback<F> {
    badge: Cell<Badge>,
    handler: RefCell<F>,
}

impl<F: FnMut(Badge, &Message) -> Message> Loopback<F> {
    pub fn new(badge: Badge, handler: F) -> Loopback<F> {
        Loopback { badge: Cell::new(badge), handler: RefCell::new(handler) }
    }

    /// Later calls arrive with `badge`.
    pub fn set_badge(&self, badge: Badge) {
        self.badge.set(badge);
    }
}

impl<F: FnMut(Badge, &Message) -> Message> Transport for Loopback<F> {
    fn call(&self, _endpoint: CapSlot, message: &mut Message) -> Result<(), ErrorCode> {
        *message = (self.handler.borrow_mut())(self.badge.get(), message);
        Ok(())
    }
}

/// A [`Transport`] whose every CALL fails with the given error.
pub struct Failing(pub ErrorCode);

impl Transport for Failing {
    fn call(&self, _endpoint: CapSlot, _message: &mut Message) -> Result<(), ErrorCode> {
        Err(self.0)
    }
}
