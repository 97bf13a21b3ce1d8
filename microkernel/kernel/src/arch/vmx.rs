//! Intel VMX with EPT: the second backend behind `arch::vm`.
//!
//! Not implemented yet: [`IMPLEMENTED`] is false, so `vm::backend()` never
//! selects VMX and none of these functions is reached; creating a partition
//! on an Intel CPU fails with INVALID_OPERATION. The pure parts (VMCS field
//! encodings, control adjustment, exit decoding, EPT builder) are ready in
//! `kerncore::{vmx, ept}`.

use super::memory::DirectMap;
use super::vm::{ExecutionState, Exit, GuestGprs};
use hvdef::HvRegisterName;
use kerncore::slat::{GuestMapError, GuestRights};

pub const IMPLEMENTED: bool = false;

const NOT_YET: &str = "the VMX backend is not implemented yet";

pub fn enable() -> Result<(), &'static str> {
    Err(NOT_YET)
}

pub fn init_vmcs(_vmcs: u64, _ept_root: u64, _vpid: u32) {
    unreachable!("{NOT_YET}")
}

pub fn run(_vmcs: u64, _gprs: &mut GuestGprs, _flush: bool) -> Exit {
    unreachable!("{NOT_YET}")
}

pub fn get_register(_vmcs: u64, _gprs: &mut GuestGprs, _name: HvRegisterName) -> Option<(u64, u64)> {
    None
}

pub fn set_register(_vmcs: u64, _gprs: &mut GuestGprs, _name: HvRegisterName, _low: u64, _high: u64) -> bool {
    false
}

pub fn execution_state(_vmcs: u64) -> ExecutionState {
    ExecutionState::default()
}

pub fn release(_vmcs: u64) {}

pub fn ept_new_root(_mem: &mut DirectMap) -> Result<u64, GuestMapError> {
    Err(GuestMapError::OutOfMemory)
}

pub fn ept_map(
    _mem: &mut DirectMap,
    _root: u64,
    _gpa: u64,
    _hpa: u64,
    _len: u64,
    _rights: GuestRights,
) -> Result<(), GuestMapError> {
    Err(GuestMapError::OutOfMemory)
}

pub fn ept_unmap(_mem: &mut DirectMap, _root: u64, _gpa: u64, _len: u64) -> Result<(), GuestMapError> {
    Err(GuestMapError::OutOfMemory)
}

pub fn ept_tables(_mem: &mut DirectMap, _root: u64, _f: &mut impl FnMut(u64)) {}
