//! The CPUID features a manifest may hide from a partition
//! (`cpuid_mask = ["avx", "x2apic"]`): each by its Linux `/proc/cpuinfo`
//! name, with the CPUID bit it clears and the features it needs. A mask
//! must be closed under those needs: hiding a feature hides what needs it
//! (AVX without XSAVE is incoherent), so the manifest names both.

use serde::{Deserialize, Serialize};

/// A CPUID output register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    Eax,
    Ebx,
    Ecx,
    Edx,
}

/// A feature a manifest may hide: leaf (subleaf 0), register, bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuFeature {
    pub name: &'static str,
    pub leaf: u32,
    pub reg: Reg,
    pub bit: u8,
    /// Features it needs: hiding one of them hides this one too.
    pub needs: &'static [&'static str],
}

const fn f(name: &'static str, leaf: u32, reg: Reg, bit: u8, needs: &'static [&'static str]) -> CpuFeature {
    CpuFeature { name, leaf, reg, bit, needs }
}

/// Every maskable feature (SDM Vol. 2A CPUID; APM Vol. 3 appendix E); bit
/// i of a [`CpuidMask`] is `FEATURES[i]`.
pub const FEATURES: &[CpuFeature] = &[
    f("sse3", 1, Reg::Ecx, 0, &[]),
    f("pclmulqdq", 1, Reg::Ecx, 1, &[]),
    f("ssse3", 1, Reg::Ecx, 9, &[]),
    f("fma", 1, Reg::Ecx, 12, &["avx"]),
    f("cx16", 1, Reg::Ecx, 13, &[]),
    f("pcid", 1, Reg::Ecx, 17, &[]),
    f("sse4_1", 1, Reg::Ecx, 19, &[]),
    f("sse4_2", 1, Reg::Ecx, 20, &[]),
    f("x2apic", 1, Reg::Ecx, 21, &[]),
    f("movbe", 1, Reg::Ecx, 22, &[]),
    f("popcnt", 1, Reg::Ecx, 23, &[]),
    f("tsc_deadline_timer", 1, Reg::Ecx, 24, &[]),
    f("aes", 1, Reg::Ecx, 25, &[]),
    f("xsave", 1, Reg::Ecx, 26, &[]),
    f("avx", 1, Reg::Ecx, 28, &["xsave"]),
    f("f16c", 1, Reg::Ecx, 29, &["avx"]),
    f("rdrand", 1, Reg::Ecx, 30, &[]),
    f("mtrr", 1, Reg::Edx, 12, &[]),
    f("pat", 1, Reg::Edx, 16, &[]),
    f("fsgsbase", 7, Reg::Ebx, 0, &[]),
    f("bmi1", 7, Reg::Ebx, 3, &[]),
    f("hle", 7, Reg::Ebx, 4, &[]),
    f("avx2", 7, Reg::Ebx, 5, &["avx"]),
    f("smep", 7, Reg::Ebx, 7, &[]),
    f("bmi2", 7, Reg::Ebx, 8, &[]),
    f("erms", 7, Reg::Ebx, 9, &[]),
    f("invpcid", 7, Reg::Ebx, 10, &["pcid"]),
    f("rtm", 7, Reg::Ebx, 11, &[]),
    f("avx512f", 7, Reg::Ebx, 16, &["avx2"]),
    f("rdseed", 7, Reg::Ebx, 18, &[]),
    f("adx", 7, Reg::Ebx, 19, &[]),
    f("smap", 7, Reg::Ebx, 20, &[]),
    f("clflushopt", 7, Reg::Ebx, 23, &[]),
    f("sha_ni", 7, Reg::Ebx, 29, &[]),
    f("umip", 7, Reg::Ecx, 2, &[]),
    f("pku", 7, Reg::Ecx, 3, &["xsave"]),
    f("la57", 7, Reg::Ecx, 16, &[]),
    f("lahf_lm", 0x8000_0001, Reg::Ecx, 0, &[]),
    f("abm", 0x8000_0001, Reg::Ecx, 5, &[]),
    f("sse4a", 0x8000_0001, Reg::Ecx, 6, &[]),
    f("3dnowprefetch", 0x8000_0001, Reg::Ecx, 8, &[]),
    f("topoext", 0x8000_0001, Reg::Ecx, 22, &[]),
    f("nx", 0x8000_0001, Reg::Edx, 20, &[]),
    f("pdpe1gb", 0x8000_0001, Reg::Edx, 26, &[]),
    f("constant_tsc", 0x8000_0007, Reg::Edx, 8, &[]),
];

const _: () = assert!(FEATURES.len() <= 64);

/// The features hidden from a partition, bit i for [`FEATURES`]`[i]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuidMask(pub u64);

impl CpuidMask {
    pub const NONE: CpuidMask = CpuidMask(0);

    /// The feature named `name`, as a mask.
    pub fn named(name: &str) -> Option<CpuidMask> {
        FEATURES.iter().position(|f| f.name == name).map(|i| CpuidMask(1 << i))
    }

    pub const fn with(self, other: CpuidMask) -> CpuidMask {
        CpuidMask(self.0 | other.0)
    }

    pub const fn contains(self, other: CpuidMask) -> bool {
        self.0 & other.0 == other.0
    }

    /// The features hidden.
    pub fn features(self) -> impl Iterator<Item = &'static CpuFeature> {
        FEATURES.iter().enumerate().filter(move |(i, _)| self.0 >> i & 1 != 0).map(|(_, f)| f)
    }

    /// Known features only, closed under their needs: the first feature
    /// shown whose need is hidden, as (feature, need), is the error.
    pub fn check(self) -> Result<(), (&'static str, &'static str)> {
        if FEATURES.len() < 64 && self.0 >> FEATURES.len() != 0 {
            return Err(("?", "an unknown feature"));
        }
        for (i, f) in FEATURES.iter().enumerate() {
            if self.0 >> i & 1 != 0 {
                continue;
            }
            for need in f.needs {
                if CpuidMask::named(need).is_some_and(|n| self.contains(n)) {
                    return Err((f.name, need));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_needs_are_known() {
        for (i, f) in FEATURES.iter().enumerate() {
            assert_eq!(FEATURES.iter().position(|g| g.name == f.name), Some(i), "{}", f.name);
            for need in f.needs {
                assert!(CpuidMask::named(need).is_some(), "{} needs {need}", f.name);
            }
        }
    }

    #[test]
    fn a_mask_must_hide_what_needs_a_hidden_feature() {
        let m = |names: &[&str]| names.iter().fold(CpuidMask::NONE, |m, n| m.with(CpuidMask::named(n).unwrap()));
        assert_eq!(m(&["x2apic"]).check(), Ok(()));
        assert_eq!(m(&["xsave"]).check(), Err(("avx", "xsave")));
        assert_eq!(m(&["xsave", "avx", "pku"]).check(), Err(("fma", "avx")));
        assert_eq!(m(&["xsave", "avx", "pku", "fma", "f16c", "avx2", "avx512f"]).check(), Ok(()));
        assert_eq!(CpuidMask(1 << 63).check(), Err(("?", "an unknown feature")));
    }
}
