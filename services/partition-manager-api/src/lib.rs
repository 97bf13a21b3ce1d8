//! The partition manager's interface: the TLFS partition lifecycle, virtual
//! processors, guest-physical mappings and VP registers.
//!
//! Operation numbers are the TLFS hypercall codes (`HvCallCreatePartition`
//! = 0x40, ...), and every failure is an [`HvError`] carrying the TLFS
//! status (`HV_STATUS_INVALID_PARTITION_STATE`, ...), so a hypercall path
//! can forward a result without translating it ([`hv_status`]).
//!
//! Lifecycle (TLFS "active" is [`PartitionState::Active`]):
//!
//! ```text
//! create_partition -> Created --initialize--> Active --finalize--> Finalized
//!                        \------------------ delete ------------------/
//! ```
//! VPs, mappings and registers need an Active partition; deleting needs a
//! Created or Finalized one. Only the task that owns a partition (its
//! badge: the creator, or for a manifest partition the VID the manifest
//! names) may act on it: others get `HV_STATUS_ACCESS_DENIED`.
//!
//! The manager creates the manifest's partitions itself at start (Active,
//! with guest RAM mapped as [`layout`] says, every VP created, and the
//! page of each monitor connection mapped where the manifest says). Their
//! VID takes them with [`Client::attach`], [`Client::attach_vp`] and
//! [`Client::attach_monitor`], whose successful replies carry capabilities: the caller's capability to the
//! endpoint needs GRANT, and it must name empty receive slots first
//! (`tessera_rt::ipc_buffer::set_receive_slots`).

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use tessera_idl::CallError;
use tlfs::HvCallCode;
pub use tlfs::{HvError, HvStatus};

/// Name of the endpoint the partition manager serves.
pub const ENDPOINT: &str = "partition-manager";

tessera_idl::code_enum! {
    /// Where a partition is in its lifecycle (the value of `partition_state`).
    pub enum PartitionState {
        /// Created, not yet initialized: properties may still change.
        Created = 1,
        /// Initialized: VPs, memory and registers can be set up and run.
        Active = 2,
        /// Finalized: stopped, waiting to be deleted.
        Finalized = 3,
    }
}

tessera_idl::code_enum! {
    /// How [`Client::attach`] found the partition: as the manager built
    /// it, or left by a previous instance of its VID (which died, so the
    /// partition's device state went with it). In the last two cases the
    /// manager has stopped every VP and put it back to power-on
    /// (`VP_RESET`), and the partition is Active again: the VID rebuilds
    /// it from scratch and applies its `on_reset`.
    pub enum Handover {
        /// Never attached before.
        First = 0,
        /// Attached before and still Active: the VID that ran it died
        /// before any VP's monitor stopped it.
        Running = 1,
        /// A VP's monitor stopped it (its VID gone or silent): it was
        /// Finalized.
        Stopped = 2,
    }
}

tessera_idl::interface! {
    /// TLFS partition management.
    pub interface PartitionManager {
        /// HvCreatePartition: a new partition owned by the caller, in the
        /// Created state; returns its ID (never 0). `flags` is reserved and
        /// must be 0 (`INVALID_PARAMETER`); `INSUFFICIENT_MEMORY` when the
        /// partition table is full.
        fn create_partition(flags: u64) -> Result<u64, HvError> = HvCallCode::CREATE_PARTITION.0 as u32;

        /// HvInitializePartition: Created -> Active.
        fn initialize_partition(partition: u64) -> Result<(), HvError> = HvCallCode::INITIALIZE_PARTITION.0 as u32;

        /// HvFinalizePartition: Active -> Finalized.
        fn finalize_partition(partition: u64) -> Result<(), HvError> = HvCallCode::FINALIZE_PARTITION.0 as u32;

        /// HvDeletePartition: from Created or Finalized; the ID becomes invalid.
        fn delete_partition(partition: u64) -> Result<(), HvError> = HvCallCode::DELETE_PARTITION.0 as u32;

        /// HvCreateVp: `INVALID_VP_INDEX` if out of range or already created.
        fn create_vp(partition: u64, vp_index: u32) -> Result<(), HvError> = HvCallCode::CREATE_VP.0 as u32;

        /// HvMapGpaPages: maps `page_count` pages from guest page number
        /// `gpa_page` with `HV_MAP_GPA_*` `flags` (readable required when
        /// writable; reserved bits refused). Overlapping an existing mapping
        /// is `INVALID_PARAMETER`.
        fn map_gpa_pages(partition: u64, gpa_page: u64, page_count: u64, flags: u32) -> Result<(), HvError> = HvCallCode::MAP_GPA_PAGES.0 as u32;

        /// HvUnmapGpaPages: unmaps whatever is mapped in the range (splitting
        /// mappings as needed; `INSUFFICIENT_MEMORY` if that overflows the table).
        fn unmap_gpa_pages(partition: u64, gpa_page: u64, page_count: u64) -> Result<(), HvError> = HvCallCode::UNMAP_GPA_PAGES.0 as u32;

        /// HvGetVpRegisters for one `HV_REGISTER_NAME` (64-bit registers only;
        /// others are `INVALID_PARAMETER`).
        fn get_vp_register(partition: u64, vp_index: u32, name: u32) -> Result<u64, HvError> = HvCallCode::GET_VP_REGISTERS.0 as u32;

        /// HvSetVpRegisters for one register.
        fn set_vp_register(partition: u64, vp_index: u32, name: u32, value: u64) -> Result<(), HvError> = HvCallCode::SET_VP_REGISTERS.0 as u32;

        /// The partition's lifecycle state (a Tessera query, not a hypercall).
        /// A partition whose VP stopped because its VID was gone or did not
        /// answer an exit in time is Finalized.
        fn partition_state(partition: u64) -> Result<PartitionState, HvError> = 0x1_0000;

        /// A VID takes manifest partition `index` (its position among the
        /// manifest's `[partitions]`): returns its ID, guest RAM in bytes,
        /// VP count and how it was left ([`Handover`]), and the reply
        /// carries three capabilities, in this
        /// order ([`ATTACH_CAPS`]): the guest RAM (read, write: to load the
        /// guest and emulate devices), the partition (run: TLB flushes) and
        /// VP 0 (run: its exit endpoint, registers, start, suspend). The
        /// manager keeps control: guest mappings, which partition a VP is
        /// in and its index (it puts every VP in place), and monitors.
        /// `INVALID_PARTITION_ID` for no such partition, `ACCESS_DENIED` for
        /// a caller other than the partition's VID, `INVALID_PARTITION_STATE`
        /// unless Active or stopped by its VPs' monitor (a partition its
        /// VID finalized stays ended). `instance` names the calling
        /// instance of the VID (any value it keeps for its life, e.g. the
        /// TSC at its start): the same instance attaching again (its first
        /// reply was lost with a manager that died, `Retrying`) gets the
        /// partition as before. A partition attached before by another
        /// instance (a previous one of its VID) is first stopped and reset:
        /// every VP suspended and back to power-on (a report its monitor
        /// had not yet delivered is withdrawn), the capabilities handed
        /// out before revoked, and its writable RAM mapped again (so no
        /// page stays write-protected for an overlay of the old guest).
        fn attach(index: u32, instance: u64) -> Result<(u64, u64, u32, Handover), HvError> = 0x1_0001;

        /// As [`attach`](Client::attach), for VP `vp_index` of the partition
        /// with ID `partition`: the reply carries its capability (run).
        fn attach_vp(partition: u64, vp_index: u32) -> Result<(), HvError> = 0x1_0002;

        /// The partition's VID reports a guest crash notification
        /// (HV_X64_MSR_CRASH_CTL with CrashNotify, TLFS 4.3): the five
        /// CRASH_P0..P4 values. The manager logs it and keeps the last one
        /// ([`crash_report`](Client::crash_report)). `ACCESS_DENIED` for a
        /// caller other than the partition's VID.
        fn report_guest_crash(partition: u64, p0: u64, p1: u64, p2: u64, p3: u64, p4: u64) -> Result<(), HvError> = 0x1_0003;

        /// The last guest crash the partition's VID reported: whether there
        /// was one, and CRASH_P0..P4.
        fn crash_report(partition: u64) -> Result<(bool, u64, u64, u64, u64, u64), HvError> = 0x1_0004;

        /// A VID takes the monitor page (TLFS 11.7.4) of monitor connection
        /// `connection_id` held by manifest partition `index` (the `from`
        /// side): returns the page's GPA in that partition, and the reply
        /// carries one capability ([`ATTACH_MONITOR_CAPS`]): the page's
        /// memory (read, write: to inspect its triggers). The manager
        /// made the page and mapped it in both partitions; it is the same
        /// page the port's partition sees at its own GPA. Checked as
        /// [`attach`](Client::attach) is (`INVALID_PARTITION_ID`,
        /// `ACCESS_DENIED` for a caller other than the partition's VID,
        /// `INVALID_PARTITION_STATE` unless Active), then
        /// `INVALID_CONNECTION_ID` if the partition holds no monitor
        /// connection of that ID.
        fn attach_monitor(index: u32, connection_id: u32) -> Result<u64, HvError> = 0x1_0005;
    }
}

/// Capabilities a successful `attach` reply carries: RAM, partition, VP 0.
pub const ATTACH_CAPS: usize = 3;
/// Capabilities a successful `attach_monitor` reply carries: the page.
pub const ATTACH_MONITOR_CAPS: usize = 1;

/// The guest-physical layout of a manifest partition, as the partition
/// manager maps it and the VID emulates around it.
pub mod layout {
    /// Guest RAM is mapped from GPA 0 up to here (the legacy 640 KiB)...
    pub const LOW_RAM_END: u64 = 0xa_0000;
    /// ...and from here to the end of RAM (GPA n is RAM byte n).
    pub const HIGH_RAM_START: u64 = 0x10_0000;
    /// The BIOS read-only area, up to [`ROM_GPA`]: RAM pages (GPA n is RAM
    /// byte n) the guest may read and execute but not write, which the VID
    /// fills (with the ACPI tables) before the guest starts. The rest of
    /// the legacy hole, from [`LOW_RAM_END`], is zeroed read-only memory.
    pub const BIOS_AREA: u64 = 0xe_0000;
    /// A one-page ROM (read + execute), its own memory object.
    pub const ROM_GPA: u64 = 0xf_f000;
    /// What the ROM page starts with (the rest is zero).
    pub const ROM_SIGNATURE: &[u8] = b"TESSROM\0";
}

/// The TLFS status a hypercall path reports for a call to a TLFS-speaking
/// service: the service's own status, or for a failed call
/// `INVALID_HYPERCALL_CODE` (operation unknown to the server),
/// `INVALID_HYPERCALL_INPUT` (request malformed or too long) or
/// `OPERATION_FAILED` (the service could not be reached or answered badly).
pub fn hv_status<T>(result: &Result<Result<T, HvError>, CallError>) -> HvStatus {
    match result {
        Ok(Ok(_)) => HvStatus::SUCCESS,
        Ok(Err(e)) => e.status(),
        Err(CallError::UnknownOperation) => HvStatus::INVALID_HYPERCALL_CODE,
        Err(CallError::Malformed(_) | CallError::RequestTooLong) => HvStatus::INVALID_HYPERCALL_INPUT,
        Err(CallError::Kernel(_) | CallError::Rejected(_) | CallError::BadReply(_)) => HvStatus::OPERATION_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_numbers_are_the_tlfs_call_codes() {
        assert_eq!(ops::create_partition, 0x40);
        assert_eq!(ops::initialize_partition, 0x41);
        assert_eq!(ops::finalize_partition, 0x42);
        assert_eq!(ops::delete_partition, 0x43);
        assert_eq!(ops::map_gpa_pages, 0x4b);
        assert_eq!(ops::unmap_gpa_pages, 0x4c);
        assert_eq!(ops::create_vp, 0x4e);
        assert_eq!(ops::get_vp_register, 0x50);
        assert_eq!(ops::set_vp_register, 0x51);
        // Tessera's own, above the TLFS codes.
        assert_eq!(ops::attach_monitor, 0x1_0005);
    }

    #[test]
    fn failed_calls_map_to_tlfs_statuses() {
        assert_eq!(hv_status::<()>(&Ok(Ok(()))), HvStatus::SUCCESS);
        assert_eq!(hv_status::<()>(&Ok(Err(HvError::ACCESS_DENIED))), HvStatus::ACCESS_DENIED);
        assert_eq!(hv_status::<()>(&Err(CallError::UnknownOperation)), HvStatus::INVALID_HYPERCALL_CODE);
        assert_eq!(hv_status::<()>(&Err(CallError::RequestTooLong)), HvStatus::INVALID_HYPERCALL_INPUT);
        assert_eq!(
            hv_status::<()>(&Err(CallError::Kernel(tessera_idl::ErrorCode::PEER_GONE))),
            HvStatus::OPERATION_FAILED
        );
    }
}
