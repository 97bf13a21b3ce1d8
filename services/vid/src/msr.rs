//! Model-specific registers: EFER is kept per VP (and handed to the kernel,
//! which loads it into the VP); other MSRs read 0 and ignore writes, each
//! reported once. The TLFS synthetic MSRs (the hypervisor range
//! 0x4000_0000..=0x4000_00FF and the crash MSRs) are
//! [`crate::synthetic`]'s: see [`crate::synthetic::is_synthetic`].

use abi::limits::MAX_VPS_PER_PARTITION;
pub use x86defs::EFER_LMA;
pub use x86defs::msr::IA32_EFER as EFER;

/// EFER.SCE (SYSCALL), LME (long mode enable), NXE (no-execute).
pub use x86defs::{EFER_LME, EFER_NXE, EFER_SCE};

/// Whether WRMSR may write `value` to EFER (SDM Vol. 4 IA32_EFER, APM
/// 3.1.7): only the bits of features the guest is offered (SCE, LME, NXE
/// with CPUID NX; LMA is the CPU's, whatever is written), and LME not
/// changed while paging is on. Anything else is #GP, EFER unchanged.
pub const fn efer_write_allowed(current: u64, value: u64, paging: bool, nx: bool) -> bool {
    let allowed = EFER_SCE | EFER_LME | EFER_LMA | if nx { EFER_NXE } else { 0 };
    value & !allowed == 0 && !(paging && (value ^ current) & EFER_LME != 0)
}
/// Distinct unknown MSRs reported; later ones are handled silently.
pub const REPORTED_MAX: usize = 32;

/// What an MSR access does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrResult {
    /// A read's value (for EDX:EAX).
    Read(u64),
    /// A write to EFER: the new value, to be set in the VP.
    EferWritten(u64),
    /// A write that is ignored.
    Ignored,
}

#[derive(Debug)]
pub struct Msrs {
    efer: [u64; MAX_VPS_PER_PARTITION],
    reported: heapless::Vec<u32, REPORTED_MAX>,
}

impl Default for Msrs {
    fn default() -> Msrs {
        Msrs::new()
    }
}

impl Msrs {
    pub const fn new() -> Msrs {
        Msrs { efer: [0; MAX_VPS_PER_PARTITION], reported: heapless::Vec::new() }
    }

    /// The EFER last written by VP `vp` (0 at reset).
    pub fn efer(&self, vp: u32) -> u64 {
        self.efer.get(vp as usize).copied().unwrap_or(0)
    }

    /// RDMSR/WRMSR of `msr` by VP `vp`; `lma` is EFER.LMA now (from the
    /// intercept), which a read reports and a write cannot change. The
    /// second value is true the first time an unknown MSR is seen.
    pub fn access(&mut self, vp: u32, msr: u32, write: Option<u64>, lma: bool) -> (MsrResult, bool) {
        let lma = if lma { EFER_LMA } else { 0 };
        if msr == EFER {
            let slot = self.efer.get_mut(vp as usize);
            return match (write, slot) {
                (Some(value), slot) => {
                    let value = (value & !EFER_LMA) | lma;
                    if let Some(s) = slot {
                        *s = value;
                    }
                    (MsrResult::EferWritten(value), false)
                }
                (None, Some(s)) => (MsrResult::Read((*s & !EFER_LMA) | lma), false),
                (None, None) => (MsrResult::Read(lma), false),
            };
        }
        let first = !self.reported.contains(&msr) && self.reported.push(msr).is_ok();
        (if write.is_some() { MsrResult::Ignored } else { MsrResult::Read(0) }, first)
    }
}
