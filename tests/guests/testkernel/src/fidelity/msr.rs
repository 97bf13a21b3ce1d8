//! Fidelity: MSRs (SDM Vol. 4 Table 2-2 and chapter 11; APM Vol. 2
//! appendix A). Each rule the virtual machine follows, checked by RDMSR
//! and WRMSR, with #GP where the architecture says so; every MSR written is
//! put back.

use super::{Outcome, checks};
use crate::checks::{Check, Checks, ok};
use crate::hw::{self, Fault};
use guest_testkernel::detail;

const TSC: u32 = 0x10;
const APIC_BASE: u32 = 0x1b;
const TSC_ADJUST: u32 = 0x3b;
const SPEC_CTRL: u32 = 0x48;
const PRED_CMD: u32 = 0x49;
const MTRRCAP: u32 = 0xfe;
const ARCH_CAPABILITIES: u32 = 0x10a;
const MISC_ENABLE: u32 = 0x1a0;
const PHYSBASE7: u32 = 0x20e;
const PHYSMASK7: u32 = 0x20f;
const FIX4K_F8000: u32 = 0x26f;
const PAT: u32 = 0x277;
const MTRR_DEF_TYPE: u32 = 0x2ff;
const EFER: u32 = 0xc000_0080;
const LSTAR: u32 = 0xc000_0082;
const SYSENTER_ESP: u32 = 0x175;
const SYSENTER_EIP: u32 = 0x176;
const FS_BASE: u32 = 0xc000_0100;
const GS_BASE: u32 = 0xc000_0101;
const KERNEL_GS_BASE: u32 = 0xc000_0102;
const AMD_PERF_CTL0: u32 = 0xc001_0000;
const AMD_VM_CR: u32 = 0xc001_0114;
/// An MSR address no processor implements.
const UNIMPLEMENTED: u32 = 0x1fff_0000;

/// #GP(0), the fault a refused RDMSR or WRMSR raises.
fn gp(r: Result<impl core::fmt::Debug, Fault>) -> Check {
    match r {
        Err(f) if f.is_gp() && f.error == 0 => ok(),
        Err(f) => Err(detail!("{f}, expected #GP(0)")),
        Ok(v) => Err(detail!("no fault ({v:x?})")),
    }
}

/// Every `bad` write to `msr` #GPs and leaves its value as it was.
fn refused(msr: u32, bad: &[u64]) -> Check {
    let before = hw::rdmsr_checked(msr).map_err(|f| detail!("reading {msr:#x}: {f}"))?;
    for &v in bad {
        gp(hw::wrmsr_checked(msr, v)).map_err(|why| detail!("writing {v:#x}: {}", why.as_str()))?;
        let now = hw::rdmsr_checked(msr).map_err(|f| detail!("reading {msr:#x}: {f}"))?;
        if now != before {
            return Err(detail!("writing {v:#x} changed it from {before:#x} to {now:#x}"));
        }
    }
    ok()
}

/// `value` written to `msr` reads back; the old value is put back.
fn reads_back(msr: u32, value: u64) -> Check {
    let before = hw::rdmsr_checked(msr).map_err(|f| detail!("reading {msr:#x}: {f}"))?;
    let written = hw::wrmsr_checked(msr, value);
    let now = hw::rdmsr_checked(msr);
    let _ = hw::wrmsr_checked(msr, before);
    written.map_err(|f| detail!("writing {value:#x}: {f}"))?;
    match now {
        Ok(v) if v == value => ok(),
        Ok(v) => Err(detail!("wrote {value:#x}, read {v:#x}")),
        Err(f) => Err(detail!("reading back: {f}")),
    }
}

pub fn run() -> Outcome {
    let mut c = checks();
    pat(&mut c);
    misc_enable(&mut c);
    mtrrs(&mut c);
    tsc(&mut c);
    not_offered(&mut c);
    efer(&mut c);
    bases(&mut c);
    apic_base(&mut c);
    amd(&mut c);
    c.finish()
}

fn pat(c: &mut Checks) {
    c.require(
        "IA32_PAT reads 0007040600070406H after reset (SDM Vol. 3A 11.12.4)",
        match hw::rdmsr_checked(PAT) {
            Ok(0x0007_0406_0007_0406) => ok(),
            Ok(v) => Err(detail!("{v:#x}")),
            Err(f) => Err(detail!("{f}")),
        },
    );
    c.require(
        "IA32_PAT takes every valid type: UC, WC, WT, WP, WB, UC- (SDM Vol. 3A 11.12.2)",
        reads_back(PAT, 0x0706_0504_0100_0607),
    );
    c.require(
        "IA32_PAT with a reserved memory type (2, 3, 8 and up) raises #GP (SDM Vol. 3A 11.12.2)",
        refused(PAT, &[0x0007_0406_0007_0402, 0x0007_0406_0307_0406, 0x0807_0406_0007_0406, 0x0007_0406_0007_04ff]),
    );
}

fn misc_enable(c: &mut Checks) {
    let v = hw::rdmsr_checked(MISC_ENABLE);
    c.require(
        "IA32_MISC_ENABLE: fast strings (0), BTS and PEBS unavailable (11, 12) set; MONITOR FSM (18), limit CPUID (22), XD disable (34) clear (SDM Vol. 4 Table 2-2)",
        match v {
            Ok(v) if v & 0x1801 == 0x1801 && v & (1 << 18 | 1 << 22 | 1 << 34) == 0 => ok().map(|_| detail!("{v:#x}")),
            Ok(v) => Err(detail!("{v:#x}")),
            Err(f) => Err(detail!("{f}")),
        },
    );
    let Ok(v) = v else { return };
    c.require(
        "IA32_MISC_ENABLE Enhanced SpeedStep (16) is read/write (SDM Vol. 4 Table 2-2)",
        reads_back(MISC_ENABLE, v ^ 1 << 16),
    );
    c.require(
        "IA32_MISC_ENABLE: read-only BTS/PEBS unavailable changed, MONITOR FSM without MONITOR, reserved bits raise #GP (SDM Vol. 4 Table 2-2)",
        refused(MISC_ENABLE, &[v & !(1 << 11), v & !(1 << 12), v | 1 << 18, v | 1 << 2, v | 1 << 40]),
    );
}

fn mtrrs(c: &mut Checks) {
    let cap = hw::rdmsr_checked(MTRRCAP);
    c.require(
        "IA32_MTRRCAP: 8 variable ranges, fixed ranges (8), WC (10), as leaf 1 EDX MTRR offers (SDM Vol. 3A 11.11.1)",
        match cap {
            Ok(v) if v & 0xff == 8 && v & (1 << 8 | 1 << 10) == 1 << 8 | 1 << 10 => ok().map(|_| detail!("{v:#x}")),
            Ok(v) => Err(detail!("{v:#x}")),
            Err(f) => Err(detail!("{f}")),
        },
    );
    c.require(
        "IA32_MTRRCAP is read-only: WRMSR raises #GP (SDM Vol. 3A 11.11.1)",
        gp(hw::wrmsr_checked(MTRRCAP, 0x508)),
    );
    let def = hw::rdmsr_checked(MTRR_DEF_TYPE).unwrap_or(0);
    c.require(
        "IA32_MTRR_DEF_TYPE takes E (11), FE (10) and a type; reads back (SDM Vol. 3A 11.11.2.1)",
        reads_back(MTRR_DEF_TYPE, (def & !0xff) | 1 << 11 | 4),
    );
    c.require(
        "IA32_MTRR_DEF_TYPE with a reserved type (2, 3, 7) or reserved bit raises #GP (SDM Vol. 3A 11.11.2.1)",
        refused(MTRR_DEF_TYPE, &[def & !0xff | 2, def & !0xff | 3, def & !0xff | 7, def | 1 << 12, def | 1 << 8]),
    );
    c.require(
        "fixed-range MTRR IA32_MTRR_FIX4K_F8000 holds 8 types; reads back (SDM Vol. 3A 11.11.2.2)",
        reads_back(FIX4K_F8000, 0x0605_0401_0006_0504),
    );
    c.require(
        "fixed-range MTRR with a reserved type in any byte raises #GP (SDM Vol. 3A 11.11.2.2)",
        refused(FIX4K_F8000, &[0x0505_0505_0505_0502, 0x0705_0505_0505_0505]),
    );
    c.require(
        "IA32_MTRR_PHYSBASE7 / PHYSMASK7 take a range below MAXPHYADDR (SDM Vol. 3A 11.11.2.3)",
        reads_back(PHYSBASE7, 0x8000_0001).and_then(|_| reads_back(PHYSMASK7, 0xf_f000_0800)),
    );
    let maxphys = hw::cpuid(0x8000_0008, 0).eax & 0xff;
    let above = 1u64 << maxphys;
    c.require(
        "PHYSBASE with a reserved type or bits 8-11 or at or above MAXPHYADDR, PHYSMASK with bits 0-10 or above MAXPHYADDR, raise #GP (SDM Vol. 3A 11.11.2.3)",
        refused(PHYSBASE7, &[0x8000_0002, 0x8000_0106, above | 6]).and_then(|_| refused(PHYSMASK7, &[0xf_f000_0801, above | 0x800])),
    );
}

fn tsc(c: &mut Checks) {
    let before = hw::rdtsc();
    let msr = hw::rdmsr_checked(TSC);
    let after = hw::rdtsc();
    c.require(
        "IA32_TSC reads the time-stamp counter RDTSC reads (SDM Vol. 3B 'Time-Stamp Counter'; Vol. 4 IA32_TIME_STAMP_COUNTER)",
        match msr {
            Ok(v) if (before..=after).contains(&v) => ok(),
            Ok(v) => Err(detail!("{v:#x} not within RDTSC {before:#x}..={after:#x}")),
            Err(f) => Err(detail!("{f}")),
        },
    );
}

/// MSRs whose CPUID bit the virtual machine does not set: #GP, as on a
/// processor without them.
fn not_offered(c: &mut Checks) {
    c.require(
        "an unimplemented MSR raises #GP on RDMSR and WRMSR (SDM Vol. 2B RDMSR, WRMSR)",
        gp(hw::rdmsr_checked(UNIMPLEMENTED)).and_then(|_| gp(hw::wrmsr_checked(UNIMPLEMENTED, 0))),
    );
    let l7 = hw::cpuid(7, 0);
    if l7.ebx & 2 == 0 {
        c.require(
            "IA32_TSC_ADJUST without CPUID.(07H,0):EBX[1] raises #GP (SDM Vol. 4 Table 2-2)",
            gp(hw::rdmsr_checked(TSC_ADJUST)),
        );
    }
    if l7.edx & (1 << 26 | 1 << 27 | 1 << 31) == 0 {
        c.require(
            "IA32_SPEC_CTRL and IA32_PRED_CMD without CPUID.(07H,0):EDX[26,27,31] raise #GP (SDM Vol. 4 Table 2-2)",
            gp(hw::rdmsr_checked(SPEC_CTRL)).and_then(|_| gp(hw::wrmsr_checked(PRED_CMD, 1))),
        );
    }
    if l7.edx & 1 << 29 == 0 {
        c.require(
            "IA32_ARCH_CAPABILITIES without CPUID.(07H,0):EDX[29] raises #GP (SDM Vol. 4 Table 2-2)",
            gp(hw::rdmsr_checked(ARCH_CAPABILITIES)),
        );
    }
    if hw::cpuid(1, 0).edx & (1 << 14) == 0 {
        c.require(
            "IA32_MCG_CAP without CPUID.01H:EDX MCA (14) raises #GP (SDM Vol. 4 Table 2-2)",
            gp(hw::rdmsr_checked(0x179)),
        );
    }
}

fn efer(c: &mut Checks) {
    let efer = hw::rdmsr_checked(EFER).unwrap_or(0);
    c.require(
        "EFER: SVME (12) without SVM, reserved bits (9, 63), LME cleared under paging raise #GP (APM Vol. 2 3.1.7; SDM Vol. 4 IA32_EFER)",
        refused(EFER, &[efer | 1 << 12, efer | 1 << 9, efer | 1 << 63, efer & !(1 << 8)]),
    );
    c.require("EFER written with its own value reads back (SDM Vol. 4 IA32_EFER)", reads_back(EFER, efer));
}

/// The segment-base and syscall-target MSRs are the guest's own (no exit
/// for reads; SVM checks writes in ring 0, where QEMU's CPU would not): a
/// non-canonical address is #GP, a canonical one reads back.
fn bases(c: &mut Checks) {
    let non_canonical = 0x0000_8000_0000_0000;
    let msrs = [
        (FS_BASE, "IA32_FS_BASE"),
        (GS_BASE, "IA32_GS_BASE"),
        (KERNEL_GS_BASE, "IA32_KERNEL_GS_BASE"),
        (LSTAR, "IA32_LSTAR"),
        (SYSENTER_ESP, "IA32_SYSENTER_ESP"),
        (SYSENTER_EIP, "IA32_SYSENTER_EIP"),
    ];
    for (msr, name) in msrs {
        let mut what: guest_testkernel::Text<128> = guest_testkernel::Text::new();
        let _ = core::fmt::Write::write_fmt(
            &mut what,
            format_args!("{name} with a non-canonical address raises #GP (SDM Vol. 2B WRMSR)"),
        );
        c.require(what.as_str(), refused(msr, &[non_canonical, 0x1234_0000_0000_0000]));
        let mut what: guest_testkernel::Text<128> = guest_testkernel::Text::new();
        let _ = core::fmt::Write::write_fmt(
            &mut what,
            format_args!("{name} takes a canonical address (SDM Vol. 4 Table 2-2)"),
        );
        c.require(what.as_str(), reads_back(msr, 0xffff_8000_1234_5000));
    }
}

fn apic_base(c: &mut Checks) {
    let base = hw::rdmsr_checked(APIC_BASE);
    c.require(
        "IA32_APIC_BASE on the BSP: BSP (8) and enable (11) set, base FEE00000H (SDM Vol. 3A 11.4.4)",
        match base {
            Ok(v) if v & (1 << 8 | 1 << 11) == 1 << 8 | 1 << 11 && v & !0xfff == 0xfee0_0000 => ok(),
            Ok(v) => Err(detail!("{v:#x}")),
            Err(f) => Err(detail!("{f}")),
        },
    );
    if let Ok(v) = base {
        c.require(
            "IA32_APIC_BASE with a reserved bit (0-7, 9) raises #GP (SDM Vol. 3A 11.4.4)",
            refused(APIC_BASE, &[v | 1, v | 1 << 9]),
        );
    }
}

/// AMD's own MSRs, on an AMD vendor string.
fn amd(c: &mut Checks) {
    let l0 = hw::cpuid(0, 0);
    if (l0.ebx, l0.edx, l0.ecx) != (0x6874_7541, 0x6974_6e65, 0x444d_4163) {
        c.info("AMD MSRs", format_args!("not an AuthenticAMD vendor string: skipped"));
        return;
    }
    c.require(
        "VM_CR reads SVMDIS (4) and LOCK (3): SVM is not offered (APM Vol. 2 15.30.1)",
        match hw::rdmsr_checked(AMD_VM_CR) {
            Ok(v) if v & 0x18 == 0x18 => ok(),
            Ok(v) => Err(detail!("{v:#x}")),
            Err(f) => Err(detail!("{f}")),
        },
    );
    c.require("VM_CR reserved bits raise #GP (APM Vol. 2 15.30.1)", refused(AMD_VM_CR, &[0x18 | 1 << 8]));
    let ctl = hw::wrmsr_checked(AMD_PERF_CTL0, 0x43_0076).and_then(|()| hw::rdmsr_checked(AMD_PERF_CTL0));
    c.require(
        "PERF_CTL0 reads 0 and ignores writes: no counters are offered (APM Vol. 2 13.2.1; as KVM without a PMU)",
        match ctl {
            Ok(0) => ok(),
            Ok(v) => Err(detail!("{v:#x}")),
            Err(f) => Err(detail!("{f}")),
        },
    );
}
