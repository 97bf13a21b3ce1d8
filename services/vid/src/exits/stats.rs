//! What a partition's VPs did, counted as the VID handles their exits, for
//! its report when the partition ends: the exits by kind, and what the VID
//! refused (the faults it injected, the hypercalls that failed).

use core::fmt;
use tlfs::{HvMessageBody, HvRegisterName, HvX64PendingInterruptionRegister, HvX64PendingInterruptionType};

use super::Action;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitStats {
    pub port: u64,
    pub msr: u64,
    pub cpuid: u64,
    pub hypercall: u64,
    pub memory: u64,
    pub halt: u64,
    pub other: u64,
    /// #GP and #UD the VID injected for what the guest did.
    pub gp: u64,
    pub ud: u64,
    /// Hypercalls that completed with a status other than success.
    pub failed_hypercalls: u64,
    /// Deliveries from the broker that no SynIC could take.
    pub dropped_deliveries: u64,
    /// EOIs the guest did through its VP assist page, without an exit.
    pub lazy_eois: u64,
}

impl ExitStats {
    /// Counts an exit and the VID's answer to it.
    pub fn record(&mut self, body: &HvMessageBody, action: &Action) {
        let kind = match body {
            HvMessageBody::X64IoPortIntercept(_) => &mut self.port,
            HvMessageBody::MsrIntercept(_) => &mut self.msr,
            HvMessageBody::X64CpuidIntercept(_) => &mut self.cpuid,
            HvMessageBody::HypercallIntercept(_) => &mut self.hypercall,
            HvMessageBody::UnmappedGpa(_) | HvMessageBody::GpaIntercept(_) => &mut self.memory,
            HvMessageBody::X64Halt(_) => &mut self.halt,
            _ => &mut self.other,
        };
        *kind += 1;
        let (Action::Resume(updates) | Action::Halt(updates)) = action else { return };
        let injected = updates.iter().find(|(n, _)| *n == HvRegisterName::PENDING_INTERRUPTION);
        if let Some(&(_, value)) = injected {
            let event = HvX64PendingInterruptionRegister::from_bits(value);
            if event.kind() == HvX64PendingInterruptionType::EXCEPTION {
                match event.interruption_vector() {
                    13 => self.gp += 1,
                    6 => self.ud += 1,
                    _ => {}
                }
            }
        }
    }

    /// The exits line: `exits: N port, N MSR, ...`.
    pub fn exits(&self) -> impl fmt::Display + '_ {
        Exits(self)
    }

    /// The refused line: `refused: N #GP, N #UD, N failed hypercalls`.
    pub fn refused(&self) -> impl fmt::Display + '_ {
        Refused(self)
    }
}

struct Exits<'a>(&'a ExitStats);

impl fmt::Display for Exits<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        write!(
            f,
            "exits: {} port, {} MSR, {} CPUID, {} hypercall, {} memory, {} HLT, {} other; {} EOIs without one",
            s.port, s.msr, s.cpuid, s.hypercall, s.memory, s.halt, s.other, s.lazy_eois
        )
    }
}

struct Refused<'a>(&'a ExitStats);

impl fmt::Display for Refused<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        write!(f, "refused: {} #GP, {} #UD, {} failed hypercalls", s.gp, s.ud, s.failed_hypercalls)
    }
}
