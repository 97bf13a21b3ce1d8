//! The kernel operations the partition manager performs, behind a trait so
//! the logic that validates requests stays host-testable with a fake. The
//! task implements it with invocations on capabilities it holds; every
//! operation is checked again by the kernel, and a kernel refusal becomes a
//! TLFS status with [`hv_error`].

use tessera_idl::{CapSlot, ErrorCode};
use tlfs::HvError;

/// What a guest-physical mapping allows (the kernel refuses a mapping
/// without `read`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestAccess {
    pub read: bool,
    pub write: bool,
    pub execute: bool,
}

/// Capability rights the manager hands out, in kernel terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handout {
    /// Guest memory for a VID, its partition's RAM or a monitor page: read
    /// and write (no execute: the VID only loads, emulates and inspects).
    RamReadWrite,
    /// A partition or VP for its VID: run only (registers, start, suspend,
    /// exit state, exit endpoint, TLB flushes). Control (guest mappings,
    /// VP membership and indices, monitors) stays with the manager.
    Run,
}

pub trait Kernel {
    /// A memory object of `pages` zeroed pages from the manager's untyped.
    fn create_memory(&mut self, pages: u64) -> Result<CapSlot, ErrorCode>;
    /// A PARTITION object.
    fn create_partition(&mut self) -> Result<CapSlot, ErrorCode>;
    /// A VP object.
    fn create_vp(&mut self) -> Result<CapSlot, ErrorCode>;
    /// VP_CONFIGURE: puts `vp` into `partition` as VP `index`.
    fn configure_vp(&mut self, vp: CapSlot, partition: CapSlot, index: u32) -> Result<(), ErrorCode>;
    /// Writes `bytes` at the start of a memory object.
    fn fill(&mut self, memory: CapSlot, bytes: &[u8]) -> Result<(), ErrorCode>;
    /// PARTITION_MAP: `pages` pages of `memory` from page `offset` at `gpa`.
    fn map(
        &mut self,
        partition: CapSlot,
        memory: CapSlot,
        gpa: u64,
        access: GuestAccess,
        offset: u64,
        pages: u64,
    ) -> Result<(), ErrorCode>;
    /// PARTITION_SET_CORE_EXCLUSIVE on: SMT siblings never run the
    /// partition's VPs and another partition's at once (the core scheduler).
    fn set_core_exclusive(&mut self, partition: CapSlot) -> Result<(), ErrorCode>;
    /// PARTITION_UNMAP.
    fn unmap(&mut self, partition: CapSlot, gpa: u64, pages: u64) -> Result<(), ErrorCode>;
    /// VP_GET_REGISTERS for one register: (low, high).
    fn get_register(&mut self, vp: CapSlot, name: u32) -> Result<(u64, u64), ErrorCode>;
    /// VP_SET_REGISTERS for one register.
    fn set_register(&mut self, vp: CapSlot, name: u32, low: u64, high: u64) -> Result<(), ErrorCode>;
    /// Makes `vp` report to the manager when its exit handler is gone or
    /// takes longer than `ticks` (0: no limit) to answer: a SEND capability
    /// to the manager's own endpoint badged `badge`, then VP_SET_MONITOR.
    /// Returns the capability made, which the manager deletes with the VP.
    fn set_monitor(&mut self, vp: CapSlot, badge: u64, ticks: u64) -> Result<CapSlot, ErrorCode>;
    /// VP_SUSPEND: stops a started VP wherever it is.
    fn suspend_vp(&mut self, vp: CapSlot) -> Result<(), ErrorCode>;
    /// VP_RESET: a VP not started (or suspended, or stopped by its
    /// monitor, whose report is withdrawn) back to power-on.
    fn reset_vp(&mut self, vp: CapSlot) -> Result<(), ErrorCode>;
    /// A copy of `cap` with fewer rights, to hand out with a reply.
    fn derive(&mut self, cap: CapSlot, rights: Handout) -> Result<CapSlot, ErrorCode>;
    /// CAP_REVOKE: every capability derived from `cap`, wherever it went.
    fn revoke(&mut self, cap: CapSlot) -> Result<(), ErrorCode>;
    /// CAP_DELETE, and the slot is free again. The object goes with its
    /// last capability.
    fn delete(&mut self, cap: CapSlot);
}

/// The TLFS status for a kernel refusal: a bad argument is
/// `INVALID_PARAMETER`, a VP in the wrong state (running) `INVALID_VP_STATE`,
/// a missing capability or right
/// `ACCESS_DENIED`, exhausted memory or pools `INSUFFICIENT_MEMORY`, and
/// anything else `OPERATION_FAILED`.
pub fn hv_error(error: ErrorCode) -> HvError {
    match error {
        ErrorCode::INVALID_ARGUMENT | ErrorCode::BAD_ADDRESS => HvError::INVALID_PARAMETER,
        ErrorCode::INVALID_STATE => HvError::INVALID_VP_STATE,
        ErrorCode::INVALID_CAPABILITY | ErrorCode::WRONG_TYPE | ErrorCode::NO_RIGHTS => HvError::ACCESS_DENIED,
        ErrorCode::OUT_OF_MEMORY => HvError::INSUFFICIENT_MEMORY,
        _ => HvError::OPERATION_FAILED,
    }
}
