//! Speculative-execution mitigations: which ones this CPU needs and can
//! have, from CPUID and IA32_ARCH_CAPABILITIES (the arch layer reads them),
//! and when a switch crosses from one trust domain into another.
//!
//! | Mechanism | When | Needed | Available |
//! |---|---|---|---|
//! | IBPB (indirect branch prediction barrier) | entering another trust domain ([`Domain`]) | always (Spectre v2 across domains) | CPUID 7 EDX.SPEC_CTRL or 8000_0008 EBX.IBPB |
//! | RSB fill (32 calls) | after every VM exit; entering another domain | always | software |
//! | VERW (clears CPU buffers) | VM entry, return to ring 3 | Intel-like CPUs without ARCH_CAPABILITIES.MDS_NO | CPUID 7 EDX.MD_CLEAR |
//! | L1D flush (IA32_FLUSH_CMD) | VM entry | Intel-like CPUs without RDCL_NO or SKIP_L1DFL_VMENTRY (L1TF) | CPUID 7 EDX.L1D_FLUSH |
//!
//! AMD (and Hygon) CPUs are not affected by MDS or L1TF. An L1D flush on an
//! MD_CLEAR CPU also clears the buffers, so VERW is skipped at VM entry
//! when the flush runs.

use bitfield_struct::bitfield;
use core::fmt;

/// IA32_ARCH_CAPABILITIES (MSR 0x10a) and IA32_PRED_CMD, IA32_FLUSH_CMD.
pub mod msr {
    pub const IA32_PRED_CMD: u32 = 0x49;
    pub const PRED_CMD_IBPB: u64 = 1;
    pub const IA32_ARCH_CAPABILITIES: u32 = 0x10a;
    pub const IA32_FLUSH_CMD: u32 = 0x10b;
    pub const FLUSH_CMD_L1D: u64 = 1;
}

/// CPUID.(EAX=7,ECX=0):EDX, the speculation-control bits (SDM Vol. 2A, CPUID).
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct Leaf7Edx {
    #[bits(10)]
    pub _low: u16,
    /// VERW clears CPU buffers.
    pub md_clear: bool,
    #[bits(15)]
    pub _middle: u16,
    /// IA32_SPEC_CTRL.IBRS and IA32_PRED_CMD.IBPB.
    pub spec_ctrl: bool,
    pub stibp: bool,
    /// IA32_FLUSH_CMD.
    pub l1d_flush: bool,
    /// IA32_ARCH_CAPABILITIES.
    pub arch_capabilities: bool,
    pub core_capabilities: bool,
    pub ssbd: bool,
}

/// CPUID 0x8000_0008 EBX, AMD's speculation-control bits (APM Vol. 3, CPUID).
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct AmdExt8Ebx {
    #[bits(12)]
    pub _low: u16,
    pub ibpb: bool,
    #[bits(19)]
    pub _high: u32,
}

/// IA32_ARCH_CAPABILITIES (SDM Vol. 4 Table 2-2).
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct ArchCapabilities {
    /// Not vulnerable to rogue data cache load (Meltdown, L1TF).
    pub rdcl_no: bool,
    pub ibrs_all: bool,
    pub rsba: bool,
    /// A VMM need not flush L1D on VM entry.
    pub skip_l1dfl_vmentry: bool,
    pub ssb_no: bool,
    /// Not vulnerable to microarchitectural data sampling.
    pub mds_no: bool,
    #[bits(58)]
    pub _rest: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    Intel,
    /// AMD or Hygon.
    Amd,
    /// Treated as Intel: affected unless it says otherwise.
    Other,
}

impl Vendor {
    /// From the CPUID vendor string.
    pub fn from_cpuid(vendor: &str) -> Vendor {
        match vendor {
            "GenuineIntel" => Vendor::Intel,
            "AuthenticAMD" | "HygonGenuine" => Vendor::Amd,
            _ => Vendor::Other,
        }
    }
}

/// What the CPU says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuSpeculation {
    pub vendor: Vendor,
    pub leaf7_edx: Leaf7Edx,
    pub amd_ext8_ebx: AmdExt8Ebx,
    /// IA32_ARCH_CAPABILITIES, when CPUID enumerates it.
    pub arch_capabilities: Option<ArchCapabilities>,
}

/// A mitigation on, or off and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    On,
    Off(&'static str),
}

impl State {
    pub fn is_on(self) -> bool {
        self == State::On
    }
}

/// The mitigations the kernel applies on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mitigations {
    pub ibpb: State,
    pub rsb_fill: State,
    pub verw: State,
    pub l1d_flush: State,
}

impl Mitigations {
    /// Chooses for `cpu` (see the module's table).
    pub fn choose(cpu: &CpuSpeculation) -> Mitigations {
        let arch = cpu.arch_capabilities.unwrap_or_default();
        let amd = cpu.vendor == Vendor::Amd;
        let ibpb = if cpu.leaf7_edx.spec_ctrl() || cpu.amd_ext8_ebx.ibpb() {
            State::On
        } else {
            State::Off("unavailable (CPUID enumerates no IBPB)")
        };
        let l1d_flush = if amd {
            State::Off("not needed (AMD: no L1TF)")
        } else if arch.rdcl_no() {
            State::Off("not needed (ARCH_CAPABILITIES.RDCL_NO)")
        } else if arch.skip_l1dfl_vmentry() {
            State::Off("not needed (ARCH_CAPABILITIES.SKIP_L1DFL_VMENTRY)")
        } else if cpu.leaf7_edx.l1d_flush() {
            State::On
        } else {
            State::Off("needed, but CPUID enumerates no L1D_FLUSH")
        };
        let verw = if amd {
            State::Off("not needed (AMD: no MDS)")
        } else if arch.mds_no() {
            State::Off("not needed (ARCH_CAPABILITIES.MDS_NO)")
        } else if cpu.leaf7_edx.md_clear() {
            State::On
        } else {
            State::Off("needed, but CPUID enumerates no MD_CLEAR")
        };
        Mitigations { ibpb, rsb_fill: State::On, verw, l1d_flush }
    }

    /// VERW right before VM entry: not when the L1D flush runs, which
    /// clears the buffers too.
    pub fn verw_on_vm_entry(&self) -> bool {
        self.verw.is_on() && !self.l1d_flush.is_on()
    }

    pub fn verw_on_user_return(&self) -> bool {
        self.verw.is_on()
    }
}

/// `mitigations: <those on>; <name>: <why off>; ...`, the boot log's line.
impl fmt::Display for Mitigations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all = [
            ("ibpb", "ibpb on task and partition switch", self.ibpb),
            ("rsb fill", "rsb fill on vm exit and task switch", self.rsb_fill),
            ("verw", "verw on vm entry and return to ring 3", self.verw),
            ("l1d flush", "l1d flush on vm entry", self.l1d_flush),
        ];
        f.write_str("mitigations: ")?;
        let mut first = true;
        for (_, on, _) in all.iter().filter(|(_, _, s)| s.is_on()) {
            f.write_str(if first { "" } else { ", " })?;
            f.write_str(on)?;
            first = false;
        }
        if first {
            f.write_str("none")?;
        }
        for (name, _, state) in all {
            if let State::Off(why) = state {
                write!(f, "; {name}: {why}")?;
            }
        }
        Ok(())
    }
}

/// Ring-0 protections the CPU lacks, each with what its absence allows.
pub fn missing_protections(smep: bool, smap: bool, umip: bool) -> impl Iterator<Item = (&'static str, &'static str)> {
    [
        (smep, "SMEP", "ring 0 could execute code from user pages"),
        (smap, "SMAP", "ring 0 could read and write user pages unchecked"),
        (umip, "UMIP", "tasks can read the GDT, IDT and TR with SGDT, SIDT, STR"),
    ]
    .into_iter()
    .filter(|(present, _, _)| !present)
    .map(|(_, name, why)| (name, why))
}

/// Who runs on the CPU, as far as prediction barriers care: each task and
/// each VTL of each partition is its own trust domain (VTL 0 must not
/// train the branches VTL 1 follows, TLFS 15).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    Task(u32),
    Partition { index: u32, vtl: u8 },
}

impl Domain {
    /// One word per domain, for an atomic "last domain" cell; never
    /// [`Domain::NONE`].
    pub const fn code(self) -> u64 {
        match self {
            Domain::Task(t) => t as u64,
            Domain::Partition { index, vtl } => (1 << 32) | (vtl as u64) << 40 | index as u64,
        }
    }

    /// The code of "nobody yet".
    pub const NONE: u64 = u64::MAX;

    /// Entering `self` after the domain whose code is `last`: true if it
    /// crosses into another domain (a barrier is due).
    pub fn crosses_from(self, last: u64) -> bool {
        last != self.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(vendor: Vendor, leaf7: u32, ext8: u32, arch: Option<u64>) -> Mitigations {
        Mitigations::choose(&CpuSpeculation {
            vendor,
            leaf7_edx: Leaf7Edx::from(leaf7),
            amd_ext8_ebx: AmdExt8Ebx::from(ext8),
            arch_capabilities: arch.map(ArchCapabilities::from),
        })
    }

    const MD_CLEAR: u32 = 1 << 10;
    const SPEC_CTRL: u32 = 1 << 26;
    const L1D_FLUSH: u32 = 1 << 28;
    const ARCH_CAP: u32 = 1 << 29;
    const AMD_IBPB: u32 = 1 << 12;

    #[test]
    fn qemu64_under_tcg_gets_rsb_filling_only() {
        // AuthenticAMD, no speculation-control CPUID bits at all.
        let m = cpu(Vendor::Amd, 0, 0, None);
        assert_eq!(
            m.to_string(),
            "mitigations: rsb fill on vm exit and task switch; ibpb: unavailable (CPUID enumerates no IBPB); \
             verw: not needed (AMD: no MDS); l1d flush: not needed (AMD: no L1TF)"
        );
        assert!(!m.verw_on_vm_entry() && !m.verw_on_user_return());
    }

    #[test]
    fn an_amd_epyc_gets_ibpb() {
        let m = cpu(Vendor::Amd, SPEC_CTRL, AMD_IBPB, None);
        assert_eq!((m.ibpb, m.verw, m.l1d_flush.is_on()), (State::On, State::Off("not needed (AMD: no MDS)"), false));
    }

    #[test]
    fn haswell_without_microcode_needs_what_it_cannot_have() {
        // Bochs' corei7_haswell_4770: Intel, no MD_CLEAR, no L1D_FLUSH, no ARCH_CAPABILITIES.
        let m = cpu(Vendor::Intel, 0, 0, None);
        assert_eq!(m.verw, State::Off("needed, but CPUID enumerates no MD_CLEAR"));
        assert_eq!(m.l1d_flush, State::Off("needed, but CPUID enumerates no L1D_FLUSH"));
        assert!(m.to_string().starts_with("mitigations: rsb fill on vm exit and task switch; ibpb: unavailable"));
    }

    #[test]
    fn skylake_with_microcode_flushes_l1d_and_clears_buffers() {
        let m = cpu(Vendor::Intel, MD_CLEAR | SPEC_CTRL | L1D_FLUSH, 0, None);
        assert!(m.ibpb.is_on() && m.l1d_flush.is_on() && m.verw.is_on());
        // The flush clears the buffers at VM entry; VERW still guards ring 3.
        assert!(!m.verw_on_vm_entry() && m.verw_on_user_return());
        assert_eq!(
            m.to_string(),
            "mitigations: ibpb on task and partition switch, rsb fill on vm exit and task switch, \
             verw on vm entry and return to ring 3, l1d flush on vm entry"
        );
    }

    #[test]
    fn cascade_lake_needs_no_flush_but_verw() {
        // RDCL_NO | IBRS_ALL | SKIP_L1DFL_VMENTRY, MDS_NO clear (TAA/MDS microcode).
        let m = cpu(Vendor::Intel, MD_CLEAR | SPEC_CTRL | L1D_FLUSH | ARCH_CAP, 0, Some(0b1011));
        assert_eq!(m.l1d_flush, State::Off("not needed (ARCH_CAPABILITIES.RDCL_NO)"));
        assert!(m.verw.is_on() && m.verw_on_vm_entry());
    }

    #[test]
    fn a_hypervisor_that_says_skip_l1d_flush_is_believed() {
        let m = cpu(Vendor::Intel, L1D_FLUSH | ARCH_CAP, 0, Some(1 << 3));
        assert_eq!(m.l1d_flush, State::Off("not needed (ARCH_CAPABILITIES.SKIP_L1DFL_VMENTRY)"));
    }

    #[test]
    fn ice_lake_is_not_affected() {
        // RDCL_NO | IBRS_ALL | SKIP_L1DFL_VMENTRY | MDS_NO.
        let m = cpu(Vendor::Intel, MD_CLEAR | SPEC_CTRL | L1D_FLUSH | ARCH_CAP, 0, Some(0b10_1011));
        assert_eq!(m.verw, State::Off("not needed (ARCH_CAPABILITIES.MDS_NO)"));
        assert!(!m.l1d_flush.is_on() && m.ibpb.is_on());
    }

    #[test]
    fn an_unknown_vendor_is_assumed_affected() {
        let m = cpu(Vendor::Other, MD_CLEAR, 0, None);
        assert!(m.verw.is_on());
        assert_eq!(Vendor::from_cpuid("HygonGenuine"), Vendor::Amd);
        assert_eq!(Vendor::from_cpuid("CentaurHauls"), Vendor::Other);
    }

    #[test]
    fn missing_protections_are_named() {
        let missing: Vec<_> = missing_protections(true, false, false).map(|(name, _)| name).collect();
        assert_eq!(missing, ["SMAP", "UMIP"]);
        assert_eq!(missing_protections(true, true, true).count(), 0);
    }

    #[test]
    fn a_barrier_is_due_only_when_the_domain_changes() {
        let (task, partition) = (Domain::Task(3), Domain::Partition { index: 3, vtl: 0 });
        assert_ne!(task.code(), partition.code());
        assert!(Domain::Partition { index: 3, vtl: 1 }.crosses_from(partition.code()), "VTL 1 after VTL 0");
        assert!(task.crosses_from(Domain::NONE));
        assert!(!task.crosses_from(task.code()));
        assert!(partition.crosses_from(task.code()));
        assert!(Domain::Task(4).crosses_from(task.code()));
    }
}
