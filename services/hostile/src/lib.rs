//! What the `hostile` task tries and what it expects, and how it reports
//! each outcome. The task logs one line per attempt:
//!
//! ```text
//! hostile: invoke CAP_IDENTIFY on empty slot 0 -> INVALID_CAPABILITY (expected INVALID_CAPABILITY): ok
//! ```
//!
//! and a line ending in `FAIL` for any attempt the kernel or a service let
//! through, so a test can grep for `hostile: .*FAIL`. With an untyped quota
//! (and so its own task capability) it also attacks the kernel's objects:
//! stale guest and task mappings, untyped accounting, kernel memory nobody
//! pays for, addresses ring 0 would fault on, and a seeded storm of random
//! syscalls. Its last act is a read of kernel memory, which must fault: the
//! supervisor sees the fault and nothing after it runs.
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
pub const KERNEL_LABEL: Check =
    Check { what: "send a message labelled NOTIFICATION (a kernel label)", expected: &[ErrorCode::INVALID_ARGUMENT] };
pub const EMPTY_CAP_TRANSFER: Check =
    Check { what: "send with caps=1 naming empty slot 0", expected: &[ErrorCode::INVALID_CAPABILITY] };

/// Pages of the untyped quota `tests/manifests/hostile.toml` gives it.
pub const QUOTA_PAGES: u64 = 256;

/// A fifth mapping of one memory object (the kernel records four).
pub const FIFTH_MAPPING: Check = Check { what: "TASK_MAP a memory object a fifth time", expected: &[] };
/// Unmapping one page of a two-page task mapping: allowed, the record splits.
pub const PARTIAL_TASK_UNMAP: Check = Check { what: "TASK_UNMAP the first page of a two-page mapping", expected: &[] };
/// A middle unmap whose split cannot be recorded (four records already).
pub const UNRECORDABLE_SPLIT: Check = Check {
    what: "TASK_UNMAP the middle page of a mapping whose object has four records",
    expected: &[ErrorCode::OUT_OF_MEMORY],
};
/// TASK_MOVE_CAP (through its own task capability): a move keeps the
/// capability's place in the tree; the refusals.
pub const MOVE_KEEPS_THE_TREE: Check =
    Check { what: "TASK_MOVE_CAP out of its space and back; a revoke still reaches the child", expected: &[] };
pub const MOVE_ONTO_OCCUPIED: Check =
    Check { what: "TASK_MOVE_CAP onto an occupied slot", expected: &[ErrorCode::SLOT_OCCUPIED] };
pub const MOVE_SLOT_ZERO: Check =
    Check { what: "TASK_MOVE_CAP from slot 0 of the task", expected: &[ErrorCode::INVALID_CAPABILITY] };
pub const MOVE_PAST_THE_SPACE: Check =
    Check { what: "TASK_MOVE_CAP to slot 128 (past the space)", expected: &[ErrorCode::INVALID_CAPABILITY] };
pub const MOVE_BAD_DIRECTION: Check =
    Check { what: "TASK_MOVE_CAP with direction 2", expected: &[ErrorCode::INVALID_ARGUMENT] };
pub const MOVE_WITHOUT_CONTROL: Check =
    Check { what: "TASK_MOVE_CAP through a task capability without CONTROL", expected: &[ErrorCode::NO_RIGHTS] };

/// Non-canonical or kernel-half thread addresses.
pub const BAD_THREAD_ADDRESSES: [(&str, u64, u64); 3] = [
    ("non-canonical entry", 0x8000_0000_0000_0000, 0x7000_0000),
    ("kernel-half entry", 0xffff_8000_0000_1000, 0x7000_0000),
    ("non-canonical stack", 0x40_1000, 0x0000_8000_0000_1000),
];
pub const BAD_THREAD_ADDRESS: &[ErrorCode] = &[ErrorCode::BAD_ADDRESS];

/// The stale-SLAT guest: real mode, loaded at [`GUEST_CODE_GPA`]. Each probe
/// is `mov eax, [gpa]` (4 bytes) then `out 0xe0, eax` (3 bytes); the last
/// reads its own code page, which stays mapped, as a control.
pub const GUEST_CODE_GPA: u64 = 0x1000;
pub const GUEST_PORT: u16 = 0xe0;
pub const GUEST_PROBES: [u16; 4] = [0x5000, 0x8000, 0xa000, 0x1000];
/// Length of one probe's `mov`, and of the whole probe.
pub const GUEST_LOAD_LEN: u64 = 4;
pub const GUEST_PROBE_LEN: u64 = 7;

/// The guest's code: the probes, then `hlt`.
pub fn guest_code() -> [u8; 7 * GUEST_PROBES.len() + 1] {
    let mut code = [0xf4; 7 * GUEST_PROBES.len() + 1];
    for (i, gpa) in GUEST_PROBES.iter().enumerate() {
        let [lo, hi] = gpa.to_le_bytes();
        code[7 * i..7 * i + 7].copy_from_slice(&[0x66, 0xa1, lo, hi, 0x66, 0xe7, GUEST_PORT as u8]);
    }
    code
}

/// What the guest saw at a probed guest-physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestRead {
    /// The read exited as an unmapped GPA: nothing is mapped there.
    Unmapped,
    /// The read returned this value.
    Value(u32),
    /// The VP never got there.
    Missing,
}

/// Which probe the guest is at, from its RIP.
pub fn guest_probe(rip: u64) -> Option<usize> {
    let i = rip.checked_sub(GUEST_CODE_GPA)? / GUEST_PROBE_LEN;
    (usize::try_from(i).ok()? < GUEST_PROBES.len()).then_some(i as usize)
}

/// The first four bytes of the guest's code, which the control probe reads.
pub fn guest_control_value() -> u32 {
    let c = guest_code();
    u32::from_le_bytes([c[0], c[1], c[2], c[3]])
}

/// Syscalls of the storm, and its seed unless `HOSTILE_SEED` was set when
/// the task was built.
pub const STORM_CALLS: u32 = 3000;
pub const STORM_DEFAULT_SEED: u64 = 0x7e55_e7a0_5eed_0001;

pub fn storm_seed() -> u64 {
    match option_env!("HOSTILE_SEED") {
        Some(text) => parse_seed(text).unwrap_or(STORM_DEFAULT_SEED),
        None => STORM_DEFAULT_SEED,
    }
}

/// A decimal or `0x` hexadecimal seed.
pub fn parse_seed(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// SplitMix64: small, and the same sequence for the same seed everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A word that is often interesting to a kernel: a slot of `slots`, a
    /// small number, a page-aligned address, an edge value, or anything.
    pub fn word(&mut self, slots: &[u32]) -> u64 {
        match self.below(6) {
            0 if !slots.is_empty() => u64::from(slots[self.below(slots.len() as u64) as usize]),
            1 => self.below(64),
            2 => self.below(1 << 36) << 12,
            3 => [0, 1, u64::MAX, 1 << 63, 0x8000_0000_0000, 0xffff_8000_0000_0000, u64::from(u32::MAX)]
                [self.below(7) as usize],
            _ => self.next_u64(),
        }
    }
}

/// A syscall made with RFLAGS.NT set (ring 0's `iretq` faults if NT reaches it).
pub const NESTED_TASK_SYSCALL: Check = Check { what: "GET_TICKS with RFLAGS.NT set", expected: &[] };

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
        Report { check: self, got, must_succeed: false }
    }

    /// The report line for an attempt that must succeed.
    pub fn report_allowed(&self, got: Result<(), ErrorCode>) -> Report<'_> {
        Report { check: self, got, must_succeed: true }
    }
}

/// `what -> got (expected ...): ok|FAIL`.
pub struct Report<'a> {
    check: &'a Check,
    got: Result<(), ErrorCode>,
    /// The attempt must succeed (`expected OK`) rather than be refused.
    must_succeed: bool,
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> ", self.check.what)?;
        match self.got {
            Ok(()) => f.write_str("OK")?,
            Err(e) => write!(f, "{e:?}")?,
        }
        if self.must_succeed {
            return write!(f, " (expected OK): {}", verdict(self.got.is_ok()));
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

/// The instance that only probes the kernel's shared tables (`pools.rs`).
pub const POOLS_INSTANCE: &str = "hostile-pools";

/// The instance that builds a task holding itself and faults, again and
/// again (`restart.rs`).
pub const RESTART_INSTANCE: &str = "hostile-restart";

/// The instance that creates and destroys partitions with guest RAM of
/// mixed sizes, fragmenting the kernel's free memory, then makes one whose
/// RAM is 80% of what is free (`fragment.rs`).
pub const FRAGMENT_INSTANCE: &str = "hostile-fragment";

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

    #[test]
    fn the_guest_probes_are_seven_bytes_each_and_end_in_hlt() {
        let code = guest_code();
        assert_eq!(&code[..7], &[0x66, 0xa1, 0x00, 0x50, 0x66, 0xe7, 0xe0]);
        assert_eq!(code[code.len() - 1], 0xf4);
        assert_eq!(guest_probe(GUEST_CODE_GPA + 7), Some(1));
        assert_eq!(guest_probe(GUEST_CODE_GPA + 7 * 4), None);
        assert_eq!(guest_probe(0), None);
        assert_eq!(guest_control_value(), 0x5000_a166);
    }

    #[test]
    fn the_storm_is_the_same_for_the_same_seed() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        let slots = [40, 41, 42];
        for _ in 0..1000 {
            assert_eq!(a.word(&slots), b.word(&slots));
        }
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
        assert_eq!(parse_seed("0x10"), Some(16));
        assert_eq!(parse_seed("17"), Some(17));
        assert_eq!(parse_seed("x"), None);
    }
}
