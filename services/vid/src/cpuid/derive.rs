//! The partition's base and extended CPUID leaves, derived once from the
//! host's (which the VID, in ring 3, reads with CPUID itself): the host's
//! vendor, signature, brand and caches, and of its features only those on
//! the allow-lists below, which the hypervisor runs correctly for a guest.
//!
//! Left out, and why: VMX, SVM, SMX (not nested); MONITOR/MWAIT (they
//! exit, ring 0 makes them #UD); the PMU (leaf 0xA, PDCM, DS, the AMD
//! counter extensions: RDPMC exits to #UD, no counter MSRs); PT, SGX, MPX,
//! CET, WAITPKG, PKS, ENQCMD, AMX, XFD, XSAVES (no MSR or XSS state for
//! them); RDTSCP and RDPID (they would read the host's IA32_TSC_AUX, which
//! is not switched); TSC_ADJUST, SPEC_CTRL and friends, MCE/MCA, OSVW, IBS,
//! the thermal and power leaves (their MSRs are not emulated); FFXSR (EFER
//! bit not offered). The VID's own devices add x2APIC, TSC-deadline, APIC,
//! MTRR and PAT (`crate::msr`) and ARAT (its APIC timer never stops).

use super::{Cpuid, HostVendor, Topology};
use kerncore::xstate::{self, xcr0};
use sysimage::CpuidMask;
use sysimage::cpuid_mask::Reg;

/// The highest basic leaf: XSAVE. 0xB describes the whole (two-level)
/// topology, so 0x1F, its superset, is not needed.
pub const MAX_BASIC_LEAF: u32 = 0xd;
/// MAXPHYADDR where the host has no leaf 0x8000_0008 (SDM Vol. 3A 4.1.4).
pub const DEFAULT_PHYS_BITS: u32 = 36;
/// The highest extended leaf; with TOPOEXT (AMD), [`MAX_EXT_LEAF_TOPOEXT`].
pub const MAX_EXT_LEAF: u32 = 0x8000_0008;
pub const MAX_EXT_LEAF_TOPOEXT: u32 = 0x8000_001e;

/// CPUID bits (SDM Vol. 2A Table 3-10, 3-11; APM Vol. 3 E.4).
pub mod bit {
    pub const L1_ECX_XSAVE: u32 = 1 << 26;
    pub const L1_ECX_OSXSAVE: u32 = 1 << 27;
    pub const L1_ECX_AVX: u32 = 1 << 28;
    pub const L1_ECX_X2APIC: u32 = 1 << 21;
    pub const L1_ECX_TSC_DEADLINE: u32 = 1 << 24;
    pub const L1_ECX_FMA: u32 = 1 << 12;
    pub const L1_ECX_F16C: u32 = 1 << 29;
    pub const L1_ECX_HYPERVISOR: u32 = 1 << 31;
    pub const L1_EDX_APIC: u32 = 1 << 9;
    pub const L1_EDX_MTRR: u32 = 1 << 12;
    pub const L1_EDX_PAT: u32 = 1 << 16;
    pub const L1_EDX_HTT: u32 = 1 << 28;
    pub const L7_EBX_AVX2: u32 = 1 << 5;
    /// AVX512F, DQ, IFMA, PF, ER, CD, BW, VL.
    pub const L7_EBX_AVX512: u32 = 1 << 16 | 1 << 17 | 1 << 21 | 1 << 26 | 1 << 27 | 1 << 28 | 1 << 30 | 1 << 31;
    /// AVX512_VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ.
    pub const L7_ECX_AVX512: u32 = 1 << 1 | 1 << 6 | 1 << 11 | 1 << 12 | 1 << 14;
    /// VAES, VPCLMULQDQ (VEX-encoded: AVX).
    pub const L7_ECX_AVX: u32 = 1 << 9 | 1 << 10;
    /// AVX512_4VNNIW, 4FMAPS, VP2INTERSECT.
    pub const L7_EDX_AVX512: u32 = 1 << 2 | 1 << 3 | 1 << 8;
    pub const L7_ECX_PKU: u32 = 1 << 3;
    pub const L7_ECX_OSPKE: u32 = 1 << 4;
    pub const L7_ECX_LA57: u32 = 1 << 16;
    pub const L6_EAX_ARAT: u32 = 1 << 2;
    pub const EXT1_ECX_TOPOEXT: u32 = 1 << 22;
    pub const EXT1_EDX_NX: u32 = 1 << 20;
    pub const EXT7_EDX_INVARIANT_TSC: u32 = 1 << 8;
    pub const XSAVE_XSAVEC: u32 = 1 << 1;
}
use bit::*;

/// Leaf 1 ECX: SSE3, PCLMULQDQ, SSSE3, FMA, CX16, PCID, SSE4.1, SSE4.2,
/// MOVBE, POPCNT, AES, XSAVE, AVX, F16C, RDRAND.
const L1_ECX: u32 = 1
    | 1 << 1
    | 1 << 9
    | 1 << 12
    | 1 << 13
    | 1 << 17
    | 1 << 19
    | 1 << 20
    | 1 << 22
    | 1 << 23
    | 1 << 25
    | 1 << 26
    | 1 << 28
    | 1 << 29
    | 1 << 30;
/// Leaf 1 EDX: FPU, VME, DE, PSE, TSC, MSR, PAE, CX8, APIC, SEP, MTRR,
/// PGE, CMOV, PAT, PSE-36, CLFSH, MMX, FXSR, SSE, SSE2, SS.
const L1_EDX: u32 = 0x37f | 1 << 11 | 1 << 12 | 1 << 13 | 1 << 15 | 1 << 16 | 1 << 17 | 1 << 19 | 0xf << 23 | 1 << 27;
/// Leaf 7 EBX: FSGSBASE, BMI1, HLE, AVX2, FDP_EXCPTN_ONLY, SMEP, BMI2,
/// ERMS, INVPCID, RTM, FPU CS/DS deprecation, the AVX-512 set, RDSEED,
/// ADX, SMAP, CLFLUSHOPT, CLWB, SHA.
const L7_EBX: u32 = 1
    | 1 << 3
    | 1 << 4
    | 1 << 5
    | 1 << 6
    | 1 << 7
    | 1 << 8
    | 1 << 9
    | 1 << 10
    | 1 << 11
    | 1 << 13
    | L7_EBX_AVX512
    | 1 << 18
    | 1 << 19
    | 1 << 20
    | 1 << 23
    | 1 << 24
    | 1 << 29;
/// Leaf 7 ECX: PREFETCHWT1, UMIP, PKU, GFNI, CLDEMOTE, MOVDIRI, MOVDIR64B,
/// the AVX and AVX-512 sets (OSPKE follows CR4.PKE). Not LA57: ring 0
/// walks guest page tables of 4 levels only (`kerncore::guest_paging`).
const L7_ECX: u32 = 1 | 1 << 2 | L7_ECX_PKU | 1 << 8 | 1 << 25 | 1 << 27 | 1 << 28 | L7_ECX_AVX | L7_ECX_AVX512;
/// Leaf 7 EDX: FSRM, MD_CLEAR (VERW clears buffers), SERIALIZE, TSXLDTRK,
/// the AVX-512 set.
const L7_EDX: u32 = 1 << 4 | 1 << 10 | 1 << 14 | 1 << 16 | L7_EDX_AVX512;
/// Leaf 0x8000_0001 ECX: LAHF/SAHF, LZCNT (ABM), SSE4A, misaligned SSE,
/// PREFETCHW, XOP, FMA4, TBM (TOPOEXT is added where it is described).
const EXT1_ECX: u32 = 1 | 1 << 5 | 1 << 6 | 1 << 7 | 1 << 8 | 1 << 11 | 1 << 16 | 1 << 21;
/// Leaf 0x8000_0001 EDX of its own: SYSCALL, NX, MMXEXT, 1 GiB pages, long
/// mode, 3DNow!Ext, 3DNow!.
const EXT1_EDX: u32 = 1 << 11 | EXT1_EDX_NX | 1 << 22 | 1 << 26 | 1 << 29 | 1 << 30 | 1 << 31;
/// The bits of leaf 1 EDX that AMD repeats in leaf 0x8000_0001 EDX.
const EXT1_EDX_AMD_COPY: u32 = 0x0183_f3ff;
/// Leaf 0xD subleaf 1 EAX: XSAVEOPT, XSAVEC, XGETBV with ECX=1.
const XSAVE_1_EAX: u32 = 1 | XSAVE_XSAVEC | 1 << 2;
/// Leaf 0x8000_0008 EBX (AMD): CLZERO, XSAVE error-pointer saving.
const EXT8_EBX: u32 = 1 | 1 << 2;

/// What `mask` hides in `leaf` (subleaf 0), register `reg`.
fn hidden(mask: CpuidMask, leaf: u32, reg: Reg) -> u32 {
    mask.features().filter(|f| f.leaf == leaf && f.reg == reg).fold(0, |m, f| m | 1 << f.bit)
}

/// The cache-parameter leaf (Intel 4, AMD 0x8000_001D) with the sharing
/// fields of `topology`: EAX[25:14] the logical processors sharing the
/// cache (the core's threads for L1 and L2, the package for L3), and for
/// leaf 4 EAX[31:26] the cores in the package, each less 1.
fn cache_leaf(mut r: [u32; 4], topology: Topology, leaf4: bool) -> [u32; 4] {
    let level = (r[0] >> 5) & 7;
    let sharing = if level >= 3 { 1u32 << topology.core_shift() } else { 1 << topology.smt_shift() };
    r[0] = (r[0] & 0x3fff) | (sharing - 1) << 14;
    if leaf4 {
        r[0] |= ((1u32 << (topology.core_shift() - topology.smt_shift())) - 1) << 26;
    }
    r
}

/// The standard-format (XSAVE) and compacted (XSAVEC) sizes of a save area
/// holding `components`, from the host's leaf 0xD.
pub(super) fn xsave_sizes(components: u64, layout: &[(u32, u32, bool); 64]) -> (u32, u32) {
    let standard = xstate::area_size(components, |i| (layout[i as usize].0, layout[i as usize].1));
    let mut compacted = (xstate::LEGACY_REGION + xstate::HEADER) as u32;
    for (i, &(size, _, align)) in layout.iter().enumerate().skip(2) {
        if components >> i & 1 != 0 {
            if align {
                compacted = compacted.next_multiple_of(64);
            }
            compacted += size;
        }
    }
    (standard as u32, compacted)
}

impl Cpuid {
    /// The partition's CPUID from the host's (`host(leaf, subleaf)`), for
    /// `topology`, without the features `mask` hides.
    pub fn derive(host: impl Fn(u32, u32) -> [u32; 4], topology: Topology, mask: CpuidMask) -> Cpuid {
        let h0 = host(0, 0);
        let max_host = h0[0];
        let basic = |leaf: u32, sub: u32| if leaf <= max_host { host(leaf, sub) } else { [0; 4] };
        let max_host_ext = host(0x8000_0000, 0)[0];
        let ext = |leaf: u32, sub: u32| {
            if (0x8000_0001..=max_host_ext).contains(&leaf) { host(leaf, sub) } else { [0; 4] }
        };
        let vendor = HostVendor::from_leaf0(h0);
        let mut c = Cpuid::empty(vendor, topology);
        c.put(0, 0, [MAX_BASIC_LEAF, h0[1], h0[2], h0[3]]);
        let hide = |leaf, reg| hidden(mask, leaf, reg);
        let h1 = basic(1, 0);
        let h7 = basic(7, 0);

        // XSAVE: what the kernel lets a guest's XSETBV enable, less what
        // the mask hides.
        let mut layout = [(0u32, 0u32, false); 64];
        for (i, l) in layout.iter_mut().enumerate().skip(2) {
            let r = basic(0xd, i as u32);
            *l = (r[0], r[1], r[2] & 2 != 0);
        }
        let mut offered = if h1[2] & L1_ECX_XSAVE != 0 {
            let d = basic(0xd, 0);
            xstate::offer(u64::from(d[0]) | u64::from(d[3]) << 32, |i| (layout[i as usize].0, layout[i as usize].1))
                .map_or(0, |(components, _)| components)
        } else {
            0
        };
        if hide(1, Reg::Ecx) & L1_ECX_XSAVE != 0 {
            offered = 0;
        }
        if hide(1, Reg::Ecx) & L1_ECX_AVX != 0 {
            offered &= !(xcr0::AVX | xcr0::AVX512);
        }
        if hide(7, Reg::Ebx) & (1 << 16) != 0 || h7[1] & (1 << 16) == 0 {
            offered &= !xcr0::AVX512;
        }
        if hide(7, Reg::Ecx) & L7_ECX_PKU != 0 || h7[2] & L7_ECX_PKU == 0 {
            offered &= !xcr0::PKRU;
        }
        let avx = offered & xcr0::AVX != 0;
        let avx512 = offered & xcr0::AVX512 != 0;
        c.xcr0 = offered;
        c.xsave_layout = layout;

        // Leaf 1.
        let mut ecx = h1[2] & L1_ECX | L1_ECX_X2APIC | L1_ECX_TSC_DEADLINE;
        ecx &= !(L1_ECX_XSAVE | L1_ECX_AVX | L1_ECX_FMA | L1_ECX_F16C);
        if offered != 0 {
            ecx |= L1_ECX_XSAVE;
        }
        if avx {
            ecx |= h1[2] & (L1_ECX_AVX | L1_ECX_FMA | L1_ECX_F16C);
        }
        let edx = (h1[3] & L1_EDX | L1_EDX_APIC | L1_EDX_MTRR | L1_EDX_PAT) & !hide(1, Reg::Edx);
        c.put(1, 0, [h1[0], h1[1] & 0xff00, ecx & !hide(1, Reg::Ecx), edx]);
        let leaf1_edx = edx;

        // Leaves 2 and 4 (Intel's cache descriptors and parameters).
        if vendor == HostVendor::Intel {
            c.put(2, 0, basic(2, 0));
            for sub in 0..super::MAX_CACHE_SUBLEAVES {
                let r = basic(4, sub);
                if r[0] & 0x1f == 0 {
                    break;
                }
                c.put(4, sub, cache_leaf(r, topology, true));
            }
        }
        c.put(6, 0, [L6_EAX_ARAT, 0, 0, 0]);

        // Leaf 7, subleaf 0 only (EAX 0).
        let mut ebx = h7[1] & L7_EBX;
        let mut ecx = h7[2] & L7_ECX;
        let mut edx = h7[3] & L7_EDX;
        if !avx {
            ebx &= !L7_EBX_AVX2;
            ecx &= !L7_ECX_AVX;
        }
        if !avx512 {
            ebx &= !L7_EBX_AVX512;
            ecx &= !L7_ECX_AVX512;
            edx &= !L7_EDX_AVX512;
        }
        if offered & xcr0::PKRU == 0 {
            ecx &= !L7_ECX_PKU;
        }
        c.put(7, 0, [0, ebx & !hide(7, Reg::Ebx), ecx & !hide(7, Reg::Ecx), edx & !hide(7, Reg::Edx)]);
        let la57 = ecx & !hide(7, Reg::Ecx) & L7_ECX_LA57 != 0;

        // Leaf 0xD: subleaf 0 (EBX follows XCR0: [`Cpuid::leaf`]), 1, and
        // one per offered component.
        if offered != 0 {
            let all = xsave_sizes(offered, &layout).0;
            c.put(0xd, 0, [offered as u32, 0, all, (offered >> 32) as u32]);
            c.put(0xd, 1, [basic(0xd, 1)[0] & XSAVE_1_EAX, 0, 0, 0]);
            for (i, &(size, offset, align)) in layout.iter().enumerate().skip(2) {
                if offered >> i & 1 != 0 {
                    c.put(0xd, i as u32, [size, offset, u32::from(align) << 1, 0]);
                }
            }
        }

        // Extended leaves.
        let topoext = vendor == HostVendor::Amd
            && ext(0x8000_0001, 0)[2] & EXT1_ECX_TOPOEXT != 0
            && hide(0x8000_0001, Reg::Ecx) & EXT1_ECX_TOPOEXT == 0;
        c.max_ext = if topoext { MAX_EXT_LEAF_TOPOEXT } else { MAX_EXT_LEAF };
        let e0 = host(0x8000_0000, 0);
        c.put(0x8000_0000, 0, [c.max_ext, e0[1], e0[2], e0[3]]);
        let e1 = ext(0x8000_0001, 0);
        let mut ecx = e1[2] & EXT1_ECX;
        if topoext {
            ecx |= EXT1_ECX_TOPOEXT;
        }
        if !avx {
            ecx &= !(1 << 11 | 1 << 16); // XOP, FMA4: VEX-like encodings, AVX state
        }
        let mut edx = e1[3] & EXT1_EDX;
        if vendor == HostVendor::Amd {
            edx |= leaf1_edx & EXT1_EDX_AMD_COPY;
        }
        c.put(0x8000_0001, 0, [e1[0], 0, ecx & !hide(0x8000_0001, Reg::Ecx), edx & !hide(0x8000_0001, Reg::Edx)]);
        for leaf in 0x8000_0002..=0x8000_0006 {
            c.put(leaf, 0, ext(leaf, 0));
        }
        let invariant = ext(0x8000_0007, 0)[3] & EXT7_EDX_INVARIANT_TSC & !hide(0x8000_0007, Reg::Edx);
        c.put(0x8000_0007, 0, [0, 0, 0, invariant]);
        let e8 = ext(0x8000_0008, 0);
        let linear = if la57 { 57 } else { 48 };
        let (ebx, ecx) = if vendor == HostVendor::Amd {
            // NC (the package's cores, less 1) and ApicIdCoreIdSize.
            (e8[1] & EXT8_EBX, (topology.vps.max(1) - 1) & 0xff | topology.core_shift() << 12)
        } else {
            (0, 0)
        };
        // The host's physical width: the CPU checks the guest's page-table
        // entries against it (reserved bits), whatever CPUID says.
        c.phys_bits = match e8[0] & 0xff {
            0 => DEFAULT_PHYS_BITS,
            bits => bits,
        };
        c.put(0x8000_0008, 0, [c.phys_bits | linear << 8, ebx, ecx, 0]);
        if topoext {
            for sub in 0..super::MAX_CACHE_SUBLEAVES {
                let r = ext(0x8000_001d, sub);
                if r[0] & 0x1f == 0 {
                    break;
                }
                c.put(0x8000_001d, sub, cache_leaf(r, topology, false));
            }
        }
        c
    }
}
