//! The VID's interface: the per-partition VMM (guest loading, device
//! emulation, intercept handling). Only its status and the intercept entry
//! point exist so far; intercepts are answered with an explicit
//! `NotSupported` until device emulation lands.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub use tessera_idl::ServiceError;

/// Name of the endpoint the VID serves.
pub const ENDPOINT: &str = "vid";

tessera_idl::code_enum! {
    /// What the VID is doing.
    pub enum VidState {
        /// No partition attached yet.
        Idle = 1,
    }
}

tessera_idl::interface! {
    /// Per-partition VMM.
    pub interface Vid {
        /// The VID's state and the number of intercepts it has been sent.
        fn status() -> (VidState, u64) = 1;

        /// Handles one intercept of VP `vp_index` of `partition`, of TLFS
        /// `HV_MESSAGE_TYPE` `message_type` (e.g. 0x8001_0000, an I/O-port
        /// intercept). A partition ID of 0 or a type that is not an
        /// intercept is `InvalidArgument`; every valid intercept is
        /// `NotSupported` for now.
        fn handle_intercept(partition: u64, vp_index: u32, message_type: u32) -> Result<(), ServiceError> = 2;
    }
}
