//! What the `hostile` task tries and what it expects, and how it reports
//! each outcome. The task logs one line per attempt:
//!
//! ```text
//! hostile: invoke CAP_IDENTIFY on empty slot 0 -> INVALID_CAPABILITY (expected INVALID_CAPABILITY): ok
//! ```
//!
//! and a line ending in `FAIL` for any attempt the kernel or a service let
//! through, so a test can grep for `hostile: .*FAIL`. Its last act is a read
//! of kernel memory, which must fault: the supervisor sees the fault and
//! nothing after it runs.
//!
//! An instance named `hostile-port-in-<hex>` or `hostile-port-out-<hex>`
//! instead executes one `in` or `out` on that port itself, holding no
//! `IO_PORTS` capability ([`PortProbe`]): the access must fault (#GP).

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use abi::ErrorCode;
use core::fmt;
use tessera_idl::{CallError, ServiceError};

/// One attempt and the errors that count as correctly refused (empty: any error).
#[derive(Clone, Copy, Debug)]
pub struct Check {
    pub what: &'static str,
    pub expected: &'static [ErrorCode],
}

pub const INVOKE_NULL_SLOT: Check =
    Check { what: "invoke CAP_IDENTIFY on empty slot 0", expected: &[ErrorCode::INVALID_CAPABILITY] };
pub const INVOKE_UNHELD_SLOT: Check =
    Check { what: "invoke CAP_IDENTIFY on slot 0xffffffff", expected: &[ErrorCode::INVALID_CAPABILITY] };
pub const TASK_MAP_ON_ENDPOINT: Check = Check {
    what: "invoke TASK_MAP on the console endpoint",
    expected: &[ErrorCode::WRONG_TYPE, ErrorCode::INVALID_OPERATION],
};
pub const MINT_FROM_BADGED: Check =
    Check { what: "CAP_MINT badge 1 from the badged console capability", expected: &[] };
pub const OVERLONG_MESSAGE: Check =
    Check { what: "send a message of length 127", expected: &[ErrorCode::MESSAGE_TOO_LONG] };
pub const EMPTY_CAP_TRANSFER: Check =
    Check { what: "send with caps=1 naming empty slot 0", expected: &[ErrorCode::INVALID_CAPABILITY] };

/// Badges the rename attempt tries (its own is among them in any small system).
pub const RENAME_BADGES: core::ops::RangeInclusive<u64> = 1..=16;

impl Check {
    /// True if `got` is a refusal this check accepts.
    pub fn passed(&self, got: Result<(), ErrorCode>) -> bool {
        match got {
            Ok(()) => false,
            Err(e) => self.expected.is_empty() || self.expected.contains(&e),
        }
    }

    /// The report line (without the task-name prefix) for `got`.
    pub fn report(&self, got: Result<(), ErrorCode>) -> Report<'_> {
        Report { check: self, got }
    }
}

/// `what -> got (expected ...): ok|FAIL`.
pub struct Report<'a> {
    check: &'a Check,
    got: Result<(), ErrorCode>,
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> ", self.check.what)?;
        match self.got {
            Ok(()) => f.write_str("OK")?,
            Err(e) => write!(f, "{e:?}")?,
        }
        f.write_str(" (expected ")?;
        if self.check.expected.is_empty() {
            f.write_str("any error")?;
        }
        for (i, e) in self.check.expected.iter().enumerate() {
            if i > 0 {
                f.write_str(" or ")?;
            }
            write!(f, "{e:?}")?;
        }
        write!(f, "): {}", verdict(self.check.passed(self.got)))
    }
}

pub const fn verdict(passed: bool) -> &'static str {
    if passed { "ok" } else { "FAIL" }
}

/// True if a `name_client` call was refused for lack of permission.
pub fn rename_refused(result: &Result<Result<(), ServiceError>, CallError>) -> bool {
    matches!(result, Ok(Err(ServiceError::PermissionDenied)))
}

/// The value a port probe writes: on QEMU's exit device (port 0xf4) a
/// write that got through would end the emulator with status 0x55.
pub const PORT_PROBE_VALUE: u8 = 0x2a;

/// One direct port access a `hostile-port-...` instance tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortProbe {
    In(u16),
    Out(u16),
}

impl PortProbe {
    /// The probe a task named `hostile-port-<in|out>-<hex port>` makes.
    pub fn from_task_name(name: &str) -> Option<PortProbe> {
        let rest = name.strip_prefix("hostile-port-")?;
        let (direction, port) = rest.split_once('-')?;
        let port = u16::from_str_radix(port, 16).ok()?;
        match direction {
            "in" => Some(PortProbe::In(port)),
            "out" => Some(PortProbe::Out(port)),
            _ => None,
        }
    }
}

impl fmt::Display for PortProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortProbe::In(port) => write!(f, "in from port {port:#x}"),
            PortProbe::Out(port) => write!(f, "out {PORT_PROBE_VALUE:#x} to port {port:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_probes_are_named_by_the_task() {
        assert_eq!(PortProbe::from_task_name("hostile-port-in-71"), Some(PortProbe::In(0x71)));
        assert_eq!(PortProbe::from_task_name("hostile-port-out-f4"), Some(PortProbe::Out(0xf4)));
        assert_eq!(PortProbe::from_task_name("hostile"), None);
        assert_eq!(PortProbe::from_task_name("hostile-port-up-f4"), None);
        assert_eq!(PortProbe::from_task_name("hostile-port-in-10000"), None);
        assert_eq!(PortProbe::Out(0xf4).to_string(), "out 0x2a to port 0xf4");
    }

    #[test]
    fn checks_pass_only_on_an_expected_refusal() {
        assert!(TASK_MAP_ON_ENDPOINT.passed(Err(ErrorCode::WRONG_TYPE)));
        assert!(TASK_MAP_ON_ENDPOINT.passed(Err(ErrorCode::INVALID_OPERATION)));
        assert!(!TASK_MAP_ON_ENDPOINT.passed(Err(ErrorCode::NO_RIGHTS)));
        assert!(!TASK_MAP_ON_ENDPOINT.passed(Ok(())));
        assert!(MINT_FROM_BADGED.passed(Err(ErrorCode::INVALID_STATE)));
        assert!(!MINT_FROM_BADGED.passed(Ok(())));
    }

    #[test]
    fn reports_name_the_outcome_and_the_expectation() {
        assert_eq!(
            INVOKE_NULL_SLOT.report(Err(ErrorCode::INVALID_CAPABILITY)).to_string(),
            "invoke CAP_IDENTIFY on empty slot 0 -> INVALID_CAPABILITY (expected INVALID_CAPABILITY): ok"
        );
        assert_eq!(
            TASK_MAP_ON_ENDPOINT.report(Ok(())).to_string(),
            "invoke TASK_MAP on the console endpoint -> OK (expected WRONG_TYPE or INVALID_OPERATION): FAIL"
        );
        assert_eq!(
            MINT_FROM_BADGED.report(Err(ErrorCode(99))).to_string(),
            "CAP_MINT badge 1 from the badged console capability -> ErrorCode(0x63) (expected any error): ok"
        );
    }

    #[test]
    fn only_a_permission_refusal_counts_for_the_rename() {
        assert!(rename_refused(&Ok(Err(ServiceError::PermissionDenied))));
        assert!(!rename_refused(&Ok(Ok(()))));
        assert!(!rename_refused(&Ok(Err(ServiceError::InvalidArgument))));
        assert!(!rename_refused(&Err(CallError::Kernel(ErrorCode::PEER_GONE))));
    }
}
