//! The VID's interface: what a client holding a SEND capability to its
//! endpoint (manifest `uses = ["vid"]`) may ask of the partitions it runs,
//! while they run. Partitions are named by their index in the manifest;
//! one this VID does not run is `NotFound`.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub use tessera_idl::ServiceError;

/// Name of the endpoint the VID serves.
pub const ENDPOINT: &str = "vid";

tessera_idl::code_enum! {
    /// Whether a partition's VPs still run.
    pub enum PartitionState {
        /// Its guest runs (some of its VPs may be halted or waiting for SIPI).
        Running = 1,
        /// Its guest ended (test exit, power off, reset, a fault, or
        /// `stop_partition`); its VPs never run again.
        Stopped = 2,
    }
}

tessera_idl::code_enum! {
    /// The kinds of exit the VID counts per partition.
    pub enum ExitKind {
        Port = 1,
        Msr = 2,
        Cpuid = 3,
        Hypercall = 4,
        /// Unmapped or intercepted guest memory (MMIO, read-only pages).
        Memory = 5,
        Halt = 6,
        Other = 7,
    }
}

tessera_idl::interface! {
    /// Per-partition VMM.
    pub interface Vid {
        /// The number of the VID's partitions still running, and the exits
        /// it has handled for all of them.
        fn status() -> (u32, u64) = 1;

        /// Manifest partition `index`: its state, its VP count and the
        /// exits the VID handled for it.
        fn partition_status(index: u32) -> Result<(PartitionState, u32, u64), ServiceError> = 2;

        /// The exits of manifest partition `index` of kind `kind`.
        fn partition_exits(index: u32, kind: ExitKind) -> Result<u64, ServiceError> = 3;

        /// Ends manifest partition `index` as its guest ending would: its
        /// VPs are stopped and the partition manager finalizes it. A
        /// partition already stopped stays so (`Ok`).
        fn stop_partition(index: u32) -> Result<(), ServiceError> = 4;
    }
}
