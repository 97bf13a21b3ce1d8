//! Model-specific registers the VID emulates, with their architectural
//! rules: EFER (kept in the VP), IA32_PAT (in the VP), IA32_MISC_ENABLE,
//! the MTRRs (stored per VP), IA32_TSC, and the few model-specific ones
//! Linux and test guests touch (microcode revision, feature control, the
//! AMD counters, HWCR, SYSCFG, VM_CR). Any other MSR raises #GP, as on
//! hardware and under KVM, unless the manifest sets `ignore_unknown_msrs`
//! (then it reads 0 and ignores writes); the first ones are reported
//! either way. The local APIC's MSRs are [`crate::irq`]'s; the TLFS
//! synthetic MSRs (0x4000_0000..=0x4000_00FF and the crash MSRs) are
//! [`crate::synthetic`]'s: see [`crate::synthetic::is_synthetic`].

use abi::limits::MAX_VPS_PER_PARTITION;
pub use x86defs::EFER_LMA;
pub use x86defs::msr::IA32_EFER as EFER;

/// EFER.SCE (SYSCALL), LME (long mode enable), NXE (no-execute).
pub use x86defs::{EFER_LME, EFER_NXE, EFER_SCE};

/// MSR numbers (SDM Vol. 4 Table 2-2; APM Vol. 2 appendix A).
pub mod num {
    pub const TSC: u32 = 0x10;
    pub const PLATFORM_ID: u32 = 0x17;
    pub const FEATURE_CONTROL: u32 = 0x3a;
    /// IA32_BIOS_SIGN_ID (Intel), PATCH_LEVEL (AMD): the microcode revision.
    pub const UCODE_REV: u32 = 0x8b;
    pub const MTRRCAP: u32 = 0xfe;
    pub const MISC_ENABLE: u32 = 0x1a0;
    pub const MTRR_PHYS_FIRST: u32 = 0x200;
    pub const MTRR_PHYS_LAST: u32 = 0x20f;
    pub const MTRR_FIX_64K: u32 = 0x250;
    pub const MTRR_FIX_16K: [u32; 2] = [0x258, 0x259];
    pub const MTRR_FIX_4K_FIRST: u32 = 0x268;
    pub const MTRR_FIX_4K_LAST: u32 = 0x26f;
    pub const PAT: u32 = 0x277;
    pub const MTRR_DEF_TYPE: u32 = 0x2ff;
    /// PERF_CTL0..3 and PERF_CTR0..3 (AMD legacy counters).
    pub const AMD_PERF_FIRST: u32 = 0xc001_0000;
    pub const AMD_PERF_LAST: u32 = 0xc001_0007;
    pub const AMD_SYSCFG: u32 = 0xc001_0010;
    pub const AMD_HWCR: u32 = 0xc001_0015;
    pub const AMD_INT_PENDING_MSG: u32 = 0xc001_0055;
    pub const AMD_VM_CR: u32 = 0xc001_0114;
}

/// Whether WRMSR may write `value` to EFER (SDM Vol. 4 IA32_EFER, APM
/// 3.1.7): only the bits of features the guest is offered (SCE, LME, NXE
/// with CPUID NX; LMA is the CPU's, whatever is written; not SVME: SVM is
/// not offered), and LME not changed while paging is on. Anything else is
/// #GP, EFER unchanged.
pub const fn efer_write_allowed(current: u64, value: u64, paging: bool, nx: bool) -> bool {
    let allowed = EFER_SCE | EFER_LME | EFER_LMA | if nx { EFER_NXE } else { 0 };
    value & !allowed == 0 && !(paging && (value ^ current) & EFER_LME != 0)
}

/// IA32_PAT at reset: WB, WT, UC-, UC, twice (SDM 11.12.4).
pub const PAT_RESET: u64 = 0x0007_0406_0007_0406;

/// Whether `value` is a valid IA32_PAT: every entry a memory type PAT
/// has (UC 0, WC 1, WT 4, WP 5, WB 6, UC- 7); 2, 3 and 8 and up are
/// reserved and #GP (SDM 11.12.2).
pub const fn pat_valid(value: u64) -> bool {
    let mut i = 0;
    while i < 8 {
        let t = (value >> (i * 8)) & 0xff;
        if t == 2 || t == 3 || t >= 8 {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether `t` is a memory type an MTRR may hold: UC 0, WC 1, WT 4, WP 5,
/// WB 6 (SDM 11.11.1, Table 11-8).
const fn mtrr_type_valid(t: u64) -> bool {
    matches!(t, 0 | 1 | 4 | 5 | 6)
}

/// Memory types.
pub const UC: u64 = 0;
pub const WP: u64 = 5;
pub const WB: u64 = 6;
/// Variable-range MTRR pairs (IA32_MTRRCAP.VCNT).
pub const MTRR_VARIABLE: usize = 8;
/// IA32_MTRRCAP: VCNT 8, fixed ranges (bit 8), WC (bit 10); no SMRR.
pub const MTRRCAP: u64 = MTRR_VARIABLE as u64 | 1 << 8 | 1 << 10;
/// IA32_MTRR_DEF_TYPE: the default type, FE (bit 10), E (bit 11).
pub const MTRR_DEF_FE: u64 = 1 << 10;
pub const MTRR_DEF_E: u64 = 1 << 11;
/// PHYSMASK's valid bit.
pub const MTRR_MASK_VALID: u64 = 1 << 11;
/// Bits of an address below MAXPHYADDR (CPUID 0x8000_0008 EAX[7:0]).
const fn phys_mask(phys_bits: u32) -> u64 {
    // A host reporting more than the architecture's 52 is held to 52.
    let bits = if phys_bits > 52 { 52 } else { phys_bits };
    (1 << bits) - 1
}
/// Where the partition's MMIO hole begins: the MTRRs make it UC, the RAM
/// below it WB (RAM ends at or below it: `sysimage` MAX_PARTITION_MEMORY).
pub const MMIO_HOLE: u64 = 0xc000_0000;

/// The MTRRs of one VP (SDM 11.11.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mtrrs {
    pub def_type: u64,
    /// FIX64K_00000, FIX16K_80000, FIX16K_A0000, FIX4K_C0000..F8000.
    pub fixed: [u64; 11],
    /// (PHYSBASE, PHYSMASK) pairs.
    pub variable: [(u64, u64); MTRR_VARIABLE],
}

impl Mtrrs {
    /// As firmware leaves them (SeaBIOS, OVMF): enabled, WB by default;
    /// below 1 MiB WB RAM, the UC VGA window and WP ROM; the MMIO hole
    /// from [`MMIO_HOLE`] to 4 GiB UC (the mask as wide as `phys_bits`).
    pub const fn firmware(phys_bits: u32) -> Mtrrs {
        let wb = 0x0606_0606_0606_0606;
        let wp = 0x0505_0505_0505_0505;
        let mut variable = [(0, 0); MTRR_VARIABLE];
        variable[0] = (MMIO_HOLE | UC, (!((1u64 << 32) - MMIO_HOLE - 1) & phys_mask(phys_bits)) | MTRR_MASK_VALID);
        Mtrrs { def_type: MTRR_DEF_E | MTRR_DEF_FE | WB, fixed: [wb, wb, 0, wp, wp, wp, wp, wp, wp, wp, wp], variable }
    }

    /// The fixed-range MTRR `msr` is, as an index of [`Mtrrs::fixed`].
    fn fixed_index(msr: u32) -> Option<usize> {
        match msr {
            num::MTRR_FIX_64K => Some(0),
            0x258 => Some(1),
            0x259 => Some(2),
            num::MTRR_FIX_4K_FIRST..=num::MTRR_FIX_4K_LAST => Some(3 + (msr - num::MTRR_FIX_4K_FIRST) as usize),
            _ => None,
        }
    }

    /// The MTRR `msr`, if it is one (not MTRRCAP).
    fn slot(&mut self, msr: u32) -> Option<&mut u64> {
        if msr == num::MTRR_DEF_TYPE {
            return Some(&mut self.def_type);
        }
        if let Some(i) = Mtrrs::fixed_index(msr) {
            return self.fixed.get_mut(i);
        }
        if (num::MTRR_PHYS_FIRST..=num::MTRR_PHYS_LAST).contains(&msr) {
            let pair = self.variable.get_mut(((msr - num::MTRR_PHYS_FIRST) / 2) as usize)?;
            return Some(if msr & 1 == 0 { &mut pair.0 } else { &mut pair.1 });
        }
        None
    }

    /// Whether `value` may be written to MTRR `msr` (SDM 11.11.2): the
    /// default type's reserved bits and types, each fixed-range byte's
    /// type, PHYSBASE's type and reserved bits 8-11 and above MAXPHYADDR,
    /// PHYSMASK's bits 0-10 and above MAXPHYADDR (`phys_bits`). Anything
    /// else is #GP.
    fn valid(msr: u32, value: u64, phys_bits: u32) -> bool {
        let phys = phys_mask(phys_bits);
        if msr == num::MTRR_DEF_TYPE {
            return value & !(0xff | MTRR_DEF_FE | MTRR_DEF_E) == 0 && mtrr_type_valid(value & 0xff);
        }
        if Mtrrs::fixed_index(msr).is_some() {
            return (0..8).all(|i| mtrr_type_valid((value >> (i * 8)) & 0xff));
        }
        if msr & 1 == 0 {
            value & !(phys & !0xf00) == 0 && mtrr_type_valid(value & 0xff)
        } else {
            value & !((phys & !0xfff) | MTRR_MASK_VALID) == 0
        }
    }
}

/// IA32_MISC_ENABLE (SDM Vol. 4 Table 2-2): fast strings (bit 0),
/// automatic thermal control (3), Enhanced SpeedStep (16) and xTPR message
/// disable (23) are read/write; performance monitoring available (7) is
/// read-only 0 (no PMU; writes ignored, as KVM does); BTS and PEBS
/// unavailable (11, 12) read 1 and a write may not change them. MONITOR FSM
/// (18), limit CPUID maxval (22) and XD disable (34) stay 0: MONITOR is not
/// offered, the maximum leaf and NX are not limited. Any other bit is
/// reserved. Both give #GP.
pub mod misc_enable {
    pub const FAST_STRINGS: u64 = 1;
    pub const PERFMON: u64 = 1 << 7;
    pub const BTS_UNAVAILABLE: u64 = 1 << 11;
    pub const PEBS_UNAVAILABLE: u64 = 1 << 12;
    pub const WRITABLE: u64 = FAST_STRINGS | 1 << 3 | 1 << 16 | 1 << 23;
    pub const READ_ONLY: u64 = BTS_UNAVAILABLE | PEBS_UNAVAILABLE;
    /// At reset: fast strings on (as firmware leaves it), no BTS or PEBS.
    pub const RESET: u64 = FAST_STRINGS | READ_ONLY;
}

/// IA32_FEATURE_CONTROL: locked (bit 0) with VMX off, as firmware leaves
/// it for a guest without VMX; writes #GP (SDM 23.7).
pub const FEATURE_CONTROL_LOCKED: u64 = 1;
/// The microcode revision reported (EDX of IA32_BIOS_SIGN_ID): 1.
pub const UCODE_REV: u64 = 1 << 32;
/// VM_CR: SVM disabled (SVMDIS, bit 4) and locked (LOCK, bit 3) (APM
/// 15.30.1): SVM is not offered. Writes to LOCK and SVMDIS are ignored
/// once locked; DPD, R_INIT and DIS_A20M (bits 0-2) are not emulated and
/// the rest is reserved: #GP.
pub const VM_CR: u64 = 1 << 4 | 1 << 3;
/// HWCR bits a write may set and that are ignored (as KVM does): TLB cache
/// disable (3), flush filter disable (6), IGNNE emulation (8); others #GP.
pub const HWCR_IGNORED: u64 = 1 << 3 | 1 << 6 | 1 << 8;

/// Distinct unknown MSRs reported; later ones are handled silently.
pub const REPORTED_MAX: usize = 32;

/// What an MSR access does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrResult {
    /// A read's value (for EDX:EAX).
    Read(u64),
    /// A write the VID took.
    Written,
    /// A write that is ignored (IA32_TSC, an unknown MSR when relaxed).
    Ignored,
    /// #GP(0): the MSR does not exist, or the value is not allowed.
    Fault,
}

#[derive(Debug)]
pub struct Msrs {
    misc_enable: [u64; MAX_VPS_PER_PARTITION],
    mtrrs: [Mtrrs; MAX_VPS_PER_PARTITION],
    /// Unknown MSRs read 0 and ignore writes instead of #GP.
    ignore_unknown: bool,
    /// MAXPHYADDR (the partition's CPUID), for the MTRRs' reserved bits.
    phys_bits: u32,
    reported: heapless::Vec<u32, REPORTED_MAX>,
}

impl Default for Msrs {
    fn default() -> Msrs {
        Msrs::new(false, crate::cpuid::DEFAULT_PHYS_BITS)
    }
}

impl Msrs {
    /// `phys_bits` is the partition's MAXPHYADDR ([`crate::cpuid::Cpuid::phys_bits`]).
    pub const fn new(ignore_unknown: bool, phys_bits: u32) -> Msrs {
        Msrs {
            misc_enable: [misc_enable::RESET; MAX_VPS_PER_PARTITION],
            mtrrs: [Mtrrs::firmware(phys_bits); MAX_VPS_PER_PARTITION],
            ignore_unknown,
            phys_bits,
            reported: heapless::Vec::new(),
        }
    }

    /// VP `vp`'s MTRRs.
    pub fn mtrrs(&self, vp: u32) -> Option<&Mtrrs> {
        self.mtrrs.get(vp as usize)
    }

    /// RDMSR (`write` None) or WRMSR of `msr` by VP `vp` at TSC `tsc`,
    /// for the MSRs this module keeps (not EFER, PAT, the APIC's or the
    /// synthetic ones). The second value is true the first time an
    /// unknown MSR is seen, for the caller to report.
    pub fn access(&mut self, vp: u32, msr: u32, write: Option<u64>, tsc: u64) -> (MsrResult, bool) {
        use MsrResult::{Fault, Ignored, Read, Written};
        let i = vp as usize;
        let result = match (msr, write) {
            // The guest's TSC is the host's (no offset): a write cannot
            // move it and is ignored (reported once).
            (num::TSC, None) => Read(tsc),
            (num::TSC, Some(_)) => return (Ignored, self.first(msr)),
            (num::PLATFORM_ID, None) => Read(0),
            (num::FEATURE_CONTROL, None) => Read(FEATURE_CONTROL_LOCKED),
            (num::UCODE_REV, None) => Read(UCODE_REV),
            // Writing 0 before CPUID is how the revision is read: taken.
            (num::UCODE_REV, Some(_)) => Written,
            (num::MTRRCAP, None) => Read(MTRRCAP),
            (num::MISC_ENABLE, None) => Read(self.misc_enable.get(i).copied().unwrap_or(misc_enable::RESET)),
            (num::MISC_ENABLE, Some(v)) => match self.misc_enable.get_mut(i) {
                Some(cur) => {
                    let v = v & !misc_enable::PERFMON;
                    let ok = v & !(misc_enable::WRITABLE | misc_enable::READ_ONLY) == 0
                        && (v ^ *cur) & misc_enable::READ_ONLY == 0;
                    if ok {
                        *cur = v;
                        Written
                    } else {
                        Fault
                    }
                }
                None => Fault,
            },
            (num::AMD_PERF_FIRST..=num::AMD_PERF_LAST, None) => Read(0),
            (num::AMD_PERF_FIRST..=num::AMD_PERF_LAST, Some(_)) => Ignored,
            (num::AMD_SYSCFG | num::AMD_HWCR | num::AMD_INT_PENDING_MSG, None) => Read(0),
            (num::AMD_SYSCFG | num::AMD_INT_PENDING_MSG, Some(0)) => Written,
            (num::AMD_HWCR, Some(v)) if v & !HWCR_IGNORED == 0 => Ignored,
            (num::AMD_VM_CR, None) => Read(VM_CR),
            (num::AMD_VM_CR, Some(v)) if v & !VM_CR == 0 => Ignored,
            (_, write) => match self.mtrrs.get_mut(i).and_then(|m| m.slot(msr)) {
                Some(slot) => match write {
                    None => Read(*slot),
                    Some(v) if Mtrrs::valid(msr, v, self.phys_bits) => {
                        *slot = v;
                        Written
                    }
                    Some(_) => Fault,
                },
                None if matches!(msr, num::PLATFORM_ID | num::FEATURE_CONTROL | num::MTRRCAP)
                    || (num::AMD_SYSCFG..=num::AMD_VM_CR).contains(&msr) && known_amd(msr) =>
                {
                    Fault
                }
                None => {
                    let first = self.first(msr);
                    return (
                        if !self.ignore_unknown {
                            Fault
                        } else if write.is_some() {
                            Ignored
                        } else {
                            Read(0)
                        },
                        first,
                    );
                }
            },
        };
        (result, false)
    }

    /// Whether `msr` is seen for the first time (and reported).
    fn first(&mut self, msr: u32) -> bool {
        !self.reported.contains(&msr) && self.reported.push(msr).is_ok()
    }
}

/// The AMD MSRs above with a read-only or restricted value: a write they
/// refuse is #GP, not an unknown MSR.
const fn known_amd(msr: u32) -> bool {
    matches!(msr, num::AMD_SYSCFG | num::AMD_HWCR | num::AMD_INT_PENDING_MSG | num::AMD_VM_CR)
}

#[cfg(test)]
mod tests;
