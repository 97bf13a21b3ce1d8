//! The console service's interface: serial output for every task, and the
//! host's serial input for one.
//!
//! Clients write bytes; the console assembles them into lines per client
//! and prints each line on COM1 prefixed with the client's name, which only
//! the supervisor can set (so a task cannot pass its output off as another's).
//! Bytes typed on COM1 go to a single reader (see [`Client::read`]).

#![no_std]
#![forbid(unsafe_code)]

pub use tessera_idl::{Badge, Bytes, ServiceError};

/// Name of the endpoint the console serves, and of the capability clients
/// use to reach it.
pub const ENDPOINT: &str = "console";

/// The badge the supervisor's console capability carries; only it may name clients.
pub const SUPERVISOR: Badge = tessera_idl::SUPERVISOR_BADGE;

/// Longest client name, in bytes (printable ASCII).
pub const MAX_NAME_LEN: usize = 32;

/// Most bytes one `read` returns: the reply's `Result` word takes one of
/// the words a byte payload could have ([`tessera_idl::MAX_BYTES`]).
pub const MAX_READ: usize = tessera_idl::MAX_BYTES - 8;

tessera_idl::interface! {
    /// Serial console.
    pub interface Console {
        /// Appends `bytes` to the caller's output. Each complete line is
        /// printed as `[name] line`; a partial line waits for its newline
        /// (up to a bound, then it is printed as is). Control characters
        /// other than tab are shown as `?`.
        fn write(bytes: &[u8]) -> Result<(), ServiceError> = 1;

        /// Names the client whose console capability carries `badge`.
        /// Only [`SUPERVISOR`] may call it (`PermissionDenied` otherwise);
        /// `name` must be 1..=[`MAX_NAME_LEN`] printable ASCII characters
        /// (`InvalidArgument` otherwise).
        fn name_client(badge: u64, name: &[u8]) -> Result<(), ServiceError> = 2;

        /// Takes up to `max` (at most [`MAX_READ`]) bytes typed on the
        /// host's serial line, oldest first, without waiting: empty if none
        /// have arrived. Input has one reader: the first task to call
        /// `read` owns it for good, and any other caller gets
        /// `PermissionDenied` (so no task can snoop on what is typed).
        fn read(max: u32) -> Result<Bytes, ServiceError> = 3;
    }
}
