//! What the `evil-vid` test task tries and how it reports. It is the VID a
//! manifest names for one partition, written to attack: it tries to map
//! memory it was not given, to take or reconfigure VPs, to rename monitors,
//! to forge badges, to raise its priority and to exhaust kernel memory. It
//! logs one line per attempt:
//!
//! ```text
//! evil-vid: VP_SET_MONITOR of its VP to an endpoint of its own -> NO_RIGHTS (expected NO_RIGHTS): ok
//! ```
//!
//! and a line ending in `FAIL` for anything the kernel or the partition
//! manager let through. Lines of the memory-exhaustion attempts start with
//! `exhaust:`.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use abi::ErrorCode;
use core::fmt;
use tessera_idl::CallError;
use tlfs::HvError;

/// What an attempt came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Got {
    /// It succeeded.
    Ok,
    /// The kernel refused it.
    Kernel(ErrorCode),
    /// The partition manager refused it with a TLFS status.
    Status(HvError),
    /// The call to a service failed before it answered.
    Call(CallError),
}

impl Got {
    /// From a kernel operation's result.
    pub fn of<T>(result: Result<T, ErrorCode>) -> Got {
        match result {
            Ok(_) => Got::Ok,
            Err(e) => Got::Kernel(e),
        }
    }

    /// From a partition-manager call's result.
    pub fn of_call<T>(result: Result<Result<T, HvError>, CallError>) -> Got {
        match result {
            Ok(Ok(_)) => Got::Ok,
            Ok(Err(e)) => Got::Status(e),
            Err(CallError::Kernel(e)) => Got::Kernel(e),
            Err(e) => Got::Call(e),
        }
    }
}

impl fmt::Display for Got {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Got::Ok => f.write_str("OK"),
            Got::Kernel(e) => write!(f, "{e:?}"),
            Got::Status(e) => write!(f, "{:?}", e.status()),
            Got::Call(e) => write!(f, "call failed: {e:?}"),
        }
    }
}

pub const fn verdict(passed: bool) -> &'static str {
    if passed { "ok" } else { "FAIL" }
}

/// One attempt and the one outcome that is right for it (a refusal, or
/// `Got::Ok` for what a VID may do: the control that shows a refusal is
/// about authority, not a broken capability).
#[derive(Clone, Copy, Debug)]
pub struct Attempt {
    pub what: &'static str,
    pub expected: Got,
}

impl Attempt {
    pub const fn refused(what: &'static str, error: ErrorCode) -> Attempt {
        Attempt { what, expected: Got::Kernel(error) }
    }

    pub const fn denied(what: &'static str, error: HvError) -> Attempt {
        Attempt { what, expected: Got::Status(error) }
    }

    pub const fn allowed(what: &'static str) -> Attempt {
        Attempt { what, expected: Got::Ok }
    }

    /// `what -> got (expected ...): ok|FAIL`.
    pub fn report(&self, got: Got) -> impl fmt::Display + '_ {
        Line { what: self.what, got: Detail::One(got), expected: self.expected, passed: got == self.expected }
    }
}

/// Attempts over many targets (partition IDs, slots): how many went through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    pub tried: u32,
    /// Attempts that succeeded: each is an escape.
    pub accepted: u32,
    /// Refusals with the expected status.
    pub denied: u32,
}

impl Sweep {
    /// Counts one attempt whose right answer is `expected`.
    pub fn count(&mut self, got: Got, expected: Got) {
        self.tried += 1;
        if got == Got::Ok {
            self.accepted += 1;
        } else if got == expected {
            self.denied += 1;
        }
    }

    /// Nothing went through, and at least one target existed to refuse it.
    pub fn passed(&self) -> bool {
        self.accepted == 0 && self.denied > 0
    }

    /// `what -> N of M accepted, K <expected> (expected 0 accepted): ok|FAIL`.
    pub fn report<'a>(&'a self, what: &'a str, expected: Got) -> impl fmt::Display + 'a {
        Line { what, got: Detail::Sweep(*self, expected), expected: Got::Ok, passed: self.passed() }
    }
}

/// A retype loop from the task's whole untyped: it must end on its own
/// quota (`OUT_OF_MEMORY` with none of the kind's entries, or too few
/// pages, left), never on a kernel table every task shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spent {
    pub kind: &'static str,
    pub made: u32,
    /// What ended the loop; `None` if the task ran out of slots first.
    pub stopped: Option<Got>,
    /// Pages the object costs, and pages left afterwards.
    pub cost: u64,
    pub pages_left: u64,
    /// Entries of the kind left afterwards, if the kernel says.
    pub entries_left: Option<u16>,
}

impl Spent {
    pub fn passed(&self) -> bool {
        self.stopped == Some(Got::Kernel(ErrorCode::OUT_OF_MEMORY))
            && (self.pages_left < self.cost || self.entries_left == Some(0))
    }
}

impl fmt::Display for Spent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exhaust: {} from its whole untyped -> {} made, then ", self.kind, self.made)?;
        match self.stopped {
            Some(got) => write!(f, "{got}")?,
            None => f.write_str("its slots ran out")?,
        }
        write!(f, ", {} pages and ", self.pages_left)?;
        match self.entries_left {
            Some(n) => write!(f, "{n}")?,
            None => f.write_str("?")?,
        }
        write!(f, " entries left (expected its quota spent): {}", verdict(self.passed()))
    }
}

/// A retype loop from a small untyped: it must end on its own quota
/// (`OUT_OF_MEMORY`), and the untyped it came from must still make one
/// object, so the loop spent the quota and not a pool every task shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exhaustion {
    pub kind: &'static str,
    pub pages: u64,
    pub made: u32,
    /// What ended the loop; `None` if the task ran out of slots first.
    pub stopped: Option<Got>,
    /// Retyping one more from the parent untyped afterwards.
    pub parent: Got,
}

impl Exhaustion {
    pub fn passed(&self) -> bool {
        self.stopped == Some(Got::Kernel(ErrorCode::OUT_OF_MEMORY)) && self.parent == Got::Ok
    }
}

impl fmt::Display for Exhaustion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exhaust: {} from a {}-page untyped -> {} made, then ", self.kind, self.pages, self.made)?;
        match self.stopped {
            Some(got) => write!(f, "{got}")?,
            None => f.write_str("its slots ran out")?,
        }
        write!(f, "; from its parent: {} (expected OUT_OF_MEMORY, then OK): {}", self.parent, verdict(self.passed()))
    }
}

enum Detail {
    One(Got),
    Sweep(Sweep, Got),
}

struct Line<'a> {
    what: &'a str,
    got: Detail,
    expected: Got,
    passed: bool,
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> ", self.what)?;
        match self.got {
            Detail::One(got) => write!(f, "{got} (expected {})", self.expected)?,
            Detail::Sweep(s, refusal) => {
                write!(f, "{} of {} accepted, {} {refusal} (expected 0 accepted)", s.accepted, s.tried, s.denied)?
            }
        }
        write!(f, ": {}", verdict(self.passed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_passes_only_on_its_expected_outcome() {
        let a = Attempt::refused("VP_SET_MONITOR of its VP", ErrorCode::NO_RIGHTS);
        assert_eq!(
            a.report(Got::Kernel(ErrorCode::NO_RIGHTS)).to_string(),
            "VP_SET_MONITOR of its VP -> NO_RIGHTS (expected NO_RIGHTS): ok"
        );
        assert_eq!(a.report(Got::Ok).to_string(), "VP_SET_MONITOR of its VP -> OK (expected NO_RIGHTS): FAIL");
        assert!(a.report(Got::Kernel(ErrorCode::INVALID_STATE)).to_string().ends_with(": FAIL"));
        let allowed = Attempt::allowed("PARTITION_FLUSH_TLB");
        assert_eq!(allowed.report(Got::Ok).to_string(), "PARTITION_FLUSH_TLB -> OK (expected OK): ok");
        assert!(allowed.report(Got::Kernel(ErrorCode::NO_RIGHTS)).to_string().ends_with("FAIL"));
    }

    #[test]
    fn partition_manager_refusals_show_their_status() {
        let a = Attempt::denied("attach partition 0", HvError::ACCESS_DENIED);
        assert_eq!(
            a.report(Got::of_call::<()>(Ok(Err(HvError::ACCESS_DENIED)))).to_string(),
            "attach partition 0 -> ACCESS_DENIED (expected ACCESS_DENIED): ok"
        );
        assert_eq!(Got::of_call::<()>(Err(CallError::Kernel(ErrorCode::NO_RIGHTS))), Got::Kernel(ErrorCode::NO_RIGHTS));
        assert_eq!(Got::of_call::<()>(Err(CallError::UnknownOperation)).to_string(), "call failed: UnknownOperation");
    }

    #[test]
    fn a_sweep_passes_if_nothing_went_through_and_something_was_there() {
        let denied = Got::Status(HvError::ACCESS_DENIED);
        let mut s = Sweep::default();
        s.count(Got::Status(HvError::INVALID_PARTITION_ID), denied);
        assert!(!s.passed(), "nothing there to refuse");
        s.count(denied, denied);
        assert!(s.passed());
        assert_eq!(
            s.report("map_gpa_pages", denied).to_string(),
            "map_gpa_pages -> 0 of 2 accepted, 1 ACCESS_DENIED (expected 0 accepted): ok"
        );
        s.count(Got::Ok, denied);
        assert!(!s.passed());
    }

    #[test]
    fn spending_the_whole_untyped_passes_only_on_its_own_quota() {
        let oom = Some(Got::Kernel(ErrorCode::OUT_OF_MEMORY));
        let mut s =
            Spent { kind: "SCHED_CONTEXT", made: 64, stopped: oom, cost: 1, pages_left: 40, entries_left: Some(0) };
        assert!(s.passed());
        assert_eq!(
            s.to_string(),
            "exhaust: SCHED_CONTEXT from its whole untyped -> 64 made, then OUT_OF_MEMORY, 40 pages and 0 entries \
             left (expected its quota spent): ok"
        );
        assert!(s.to_string().len() < 160, "the console cuts longer lines");
        s.entries_left = None;
        assert!(!s.passed(), "a kernel table ran out with pages left");
        s.pages_left = 0;
        assert!(s.passed());
        s.stopped = None;
        assert!(s.to_string().contains("its slots ran out") && !s.passed());
    }

    #[test]
    fn exhaustion_passes_only_when_the_quota_ran_out_and_the_parent_still_gives() {
        let mut e = Exhaustion {
            kind: "ENDPOINT",
            pages: 1,
            made: 3,
            stopped: Some(Got::Kernel(ErrorCode::OUT_OF_MEMORY)),
            parent: Got::Ok,
        };
        assert!(e.passed());
        assert_eq!(
            e.to_string(),
            "exhaust: ENDPOINT from a 1-page untyped -> 3 made, then OUT_OF_MEMORY; from its parent: OK (expected \
             OUT_OF_MEMORY, then OK): ok"
        );
        // The console cuts lines longer than 160 bytes.
        let worst = Exhaustion {
            kind: "SCHED_CONTEXT",
            made: 64,
            stopped: Some(Got::Kernel(ErrorCode::OUT_OF_MEMORY)),
            parent: Got::Kernel(ErrorCode::OUT_OF_MEMORY),
            ..e
        };
        assert!(worst.to_string().len() < 160, "{worst}");
        e.parent = Got::Kernel(ErrorCode::OUT_OF_MEMORY);
        assert!(!e.passed(), "a shared pool ran out, not the quota");
        e.parent = Got::Ok;
        e.stopped = None;
        assert!(e.to_string().contains("its slots ran out") && !e.passed());
    }
}
