//! Machine checks: the MCA registers (SDM Vol. 3 ch. 16, AMD APM Vol. 2
//! ch. 9) and what the kernel does about a machine-check exception.
//!
//! Machine state is the host's business, so a #MC is never given to a
//! guest: both backends intercept it and ask [`decide`] with
//! [`Context::Guest`]. The policy:
//!
//! | Banks and MCG_STATUS | Context | Verdict |
//! |---|---|---|
//! | a valid bank with PCC (processor context corrupt) | any | halt the machine |
//! | RIPV clear (execution cannot restart where it stopped) | any | halt the machine |
//! | an uncorrected error (UC) | host (ring 0 or 3) | halt the machine |
//! | an uncorrected error (UC) | guest | stop the guest's partition |
//! | corrected errors only, or no valid bank | any | log and go on |
//!
//! An uncorrected error while a guest ran is restartable for the host (RIPV
//! set, no PCC): the data it concerns was the guest's, and the partition
//! that touched it never runs again. The host has no recovery of its own
//! (no page retirement, no SRAR/SRAO handling), so any uncorrected error in
//! the host halts the machine with a report.

use bitfield_struct::bitfield;

/// The machine-check exception's vector.
pub const VECTOR: u8 = 18;

/// MSR numbers (SDM Vol. 4 Table 2-2).
pub mod msr {
    pub const IA32_MCG_CAP: u32 = 0x179;
    pub const IA32_MCG_STATUS: u32 = 0x17a;
    pub const IA32_MCG_CTL: u32 = 0x17b;
    /// Bank `i`'s CTL, STATUS, ADDR and MISC follow at `0x400 + 4 * i`.
    pub const IA32_MC0_CTL: u32 = 0x400;

    pub const fn bank_ctl(bank: u32) -> u32 {
        IA32_MC0_CTL + 4 * bank
    }
    pub const fn bank_status(bank: u32) -> u32 {
        IA32_MC0_CTL + 4 * bank + 1
    }
    pub const fn bank_addr(bank: u32) -> u32 {
        IA32_MC0_CTL + 4 * bank + 2
    }
}

/// The most banks the kernel reads (MCG_CAP.Count is 8 bits; real CPUs
/// have up to about 32).
pub const MAX_BANKS: usize = 32;

/// IA32_MCG_CAP.
#[bitfield(u64)]
pub struct McgCap {
    pub count: u8,
    /// MCG_CTL exists.
    pub ctl_present: bool,
    #[bits(55)]
    pub _rest: u64,
}

/// IA32_MCG_STATUS.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct McgStatus {
    /// Restart IP valid: execution can resume where the #MC stopped it.
    pub ripv: bool,
    /// Error IP valid: the saved RIP is where the error happened.
    pub eipv: bool,
    /// Machine check in progress (a second #MC meanwhile shuts down).
    pub mcip: bool,
    #[bits(61)]
    pub _rest: u64,
}

/// IA32_MCi_STATUS (the architectural bits).
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct McStatus {
    pub mca_error_code: u16,
    pub model_specific_error_code: u16,
    #[bits(23)]
    pub _other: u32,
    /// Intel: action required (with S): the error must be handled now.
    pub ar: bool,
    /// Intel: signalled by #MC (with UC: SRAR/SRAO).
    pub s: bool,
    /// Processor context corrupt.
    pub pcc: bool,
    pub addrv: bool,
    pub miscv: bool,
    /// The error was enabled in MCi_CTL.
    pub en: bool,
    /// Uncorrected.
    pub uc: bool,
    /// An earlier error was lost.
    pub over: bool,
    /// The register holds an error.
    pub val: bool,
}

/// Where the machine check interrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    /// Ring 0 or a task.
    Host,
    /// A guest of a partition (a #MC intercept).
    Guest,
}

/// What the kernel does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Log, clear the banks and go on.
    Continue,
    /// The guest's partition never runs again; the host goes on.
    StopPartition,
    /// Report and halt the machine.
    Halt,
}

/// The verdict and the reason in a few words, for the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub why: &'static str,
}

/// Decides what a machine check means (see the module's table). `banks`
/// are the MCi_STATUS values (invalid ones are ignored).
pub fn decide(context: Context, mcg: McgStatus, banks: &[McStatus]) -> Decision {
    let valid = || banks.iter().filter(|b| b.val());
    let decision = |verdict, why| Decision { verdict, why };
    if valid().any(|b| b.pcc()) {
        return decision(Verdict::Halt, "processor context corrupt");
    }
    if !mcg.ripv() {
        return decision(Verdict::Halt, "not restartable (MCG_STATUS.RIPV clear)");
    }
    if valid().any(|b| b.uc()) {
        return match context {
            Context::Host => decision(Verdict::Halt, "uncorrected error in the host"),
            Context::Guest => decision(Verdict::StopPartition, "uncorrected error while a guest ran"),
        };
    }
    if valid().next().is_some() {
        decision(Verdict::Continue, "corrected errors only")
    } else {
        decision(Verdict::Continue, "no bank holds an error")
    }
}

/// Whether software may write bank `bank`'s MCi_CTL: not bank 0 of Intel
/// P6-family CPUs before Nehalem (model 0x1a), whose firmware owns it
/// (SDM Vol. 3B, "Machine-Check Initialization").
pub fn may_write_bank_ctl(intel: bool, family: u8, model: u8, bank: u32) -> bool {
    !(bank == 0 && intel && family == 6 && model < 0x1a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bank(val: bool, uc: bool, pcc: bool) -> McStatus {
        McStatus::new().with_val(val).with_uc(uc).with_pcc(pcc).with_en(true)
    }

    const RESTARTABLE: McgStatus = McgStatus::new().with_ripv(true).with_mcip(true);

    #[test]
    fn processor_context_corrupt_halts_in_any_context() {
        for context in [Context::Host, Context::Guest] {
            let d = decide(context, RESTARTABLE, &[bank(false, false, false), bank(true, true, true)]);
            assert_eq!(d, Decision { verdict: Verdict::Halt, why: "processor context corrupt" });
        }
    }

    #[test]
    fn an_error_that_cannot_restart_halts() {
        let stuck = McgStatus::new().with_mcip(true).with_eipv(true);
        assert_eq!(decide(Context::Guest, stuck, &[bank(true, true, false)]).verdict, Verdict::Halt);
        assert_eq!(decide(Context::Guest, stuck, &[]).verdict, Verdict::Halt);
    }

    #[test]
    fn an_uncorrected_error_stops_only_the_guest_that_ran() {
        let banks = [bank(true, false, false), bank(true, true, false)];
        assert_eq!(decide(Context::Guest, RESTARTABLE, &banks).verdict, Verdict::StopPartition);
        assert_eq!(
            decide(Context::Host, RESTARTABLE, &banks),
            Decision { verdict: Verdict::Halt, why: "uncorrected error in the host" }
        );
    }

    #[test]
    fn corrected_or_absent_errors_go_on() {
        assert_eq!(
            decide(Context::Host, RESTARTABLE, &[bank(true, false, false)]),
            Decision { verdict: Verdict::Continue, why: "corrected errors only" }
        );
        // Invalid banks count for nothing, whatever their other bits say.
        assert_eq!(decide(Context::Guest, RESTARTABLE, &[bank(false, true, true)]).verdict, Verdict::Continue);
    }

    #[test]
    fn register_bits_are_where_the_sdm_puts_them() {
        let s = McStatus::from(0xb200_0000_0000_0000);
        assert!(s.val() && s.uc() && s.en() && s.pcc() && !s.over() && !s.s() && !s.ar());
        let g = McgStatus::from(0b101);
        assert!(g.ripv() && !g.eipv() && g.mcip());
        let cap = McgCap::from(0x10a);
        assert_eq!((cap.count(), cap.ctl_present()), (10, true));
        assert_eq!((msr::bank_ctl(2), msr::bank_status(2), msr::bank_addr(2)), (0x408, 0x409, 0x40a));
    }

    #[test]
    fn bank_0_of_early_p6_cpus_is_left_to_the_firmware() {
        assert!(!may_write_bank_ctl(true, 6, 0x0f, 0));
        assert!(may_write_bank_ctl(true, 6, 0x0f, 1));
        assert!(may_write_bank_ctl(true, 6, 0x1a, 0));
        assert!(may_write_bank_ctl(false, 6, 0x0f, 0));
    }
}
