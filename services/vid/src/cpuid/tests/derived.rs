//! The base and extended leaves derived from the recorded hosts.

use super::super::*;
use sysimage::CpuidMask;

fn derive(host: fn(u32, u32) -> [u32; 4], vps: u32) -> Cpuid {
    Cpuid::derive(host, Topology::cores(vps), CpuidMask::NONE)
}

fn masked(host: fn(u32, u32) -> [u32; 4], names: &[&str]) -> Cpuid {
    let mask = names.iter().fold(CpuidMask::NONE, |m, n| m.with(CpuidMask::named(n).unwrap()));
    assert_eq!(mask.check(), Ok(()));
    Cpuid::derive(host, Topology::cores(2), mask)
}

const RESET: VpState = VpState::RESET;

#[test]
fn the_vendor_signature_and_brand_are_the_hosts() {
    for host in [sample::amd as fn(u32, u32) -> [u32; 4], sample::intel] {
        let c = derive(host, 1);
        assert_eq!(c.leaf(0, 0, 0, RESET)[1..], host(0, 0)[1..]);
        assert_eq!(c.leaf(0, 1, 0, RESET)[0], host(1, 0)[0]);
        assert_eq!(c.signature(), host(1, 0)[0]);
        for leaf in 0x8000_0002..=0x8000_0004 {
            assert_eq!(c.leaf(0, leaf, 0, RESET), host(leaf, 0));
        }
    }
    assert_eq!(derive(sample::amd, 1).vendor(), HostVendor::Amd);
    assert_eq!(derive(sample::intel, 1).vendor(), HostVendor::Intel);
}

#[test]
fn what_the_hypervisor_does_not_virtualise_is_hidden() {
    let intel = derive(sample::intel, 2);
    let l1 = intel.leaf(0, 1, 0, RESET);
    // VMX 5, SMX 6, MONITOR 3, DTES64 2, DS-CPL 4, EST 7, TM2 8, xTPR 14, PDCM 15.
    for b in [2, 3, 4, 5, 6, 7, 8, 14, 15] {
        assert_eq!(l1[2] >> b & 1, 0, "leaf 1 ECX bit {b}");
    }
    // MCE 7, MCA 14, DS 21, ACPI 22, TM 29, PBE 31.
    for b in [7, 14, 21, 22, 29, 31] {
        assert_eq!(l1[3] >> b & 1, 0, "leaf 1 EDX bit {b}");
    }
    assert_eq!(intel.leaf(0, 5, 0, RESET), [0; 4], "MONITOR leaf");
    assert_eq!(intel.leaf(0, 0xa, 0, RESET), [0; 4], "PMU leaf");
    // Leaf 7: TSC_ADJUST (EBX 1) and the speculation-control MSRs (EDX
    // 26-31) are not offered; the recorded host has both.
    let l7 = intel.leaf(0, 7, 0, RESET);
    assert_eq!(l7[1] & 2, 0);
    assert_eq!(l7[3] & 0xfc00_0000, 0);
    assert_ne!(l7[1] & 1 << 5, 0, "AVX2 stays");
    // RDTSCP (0x8000_0001 EDX 27) reads the host's TSC_AUX: hidden.
    assert_eq!(intel.leaf(0, 0x8000_0001, 0, RESET)[3] & 1 << 27, 0);
    let amd = derive(sample::amd, 2);
    assert_eq!(amd.leaf(0, 0x8000_0001, 0, RESET)[2] & 1 << 2, 0, "SVM");
    assert_eq!(amd.leaf(0, 0x8000_000a, 0, RESET), [0; 4], "SVM leaf");
}

#[test]
fn the_vids_devices_are_offered() {
    for host in [sample::amd as fn(u32, u32) -> [u32; 4], sample::intel] {
        let c = derive(host, 2);
        let l1 = c.leaf(0, 1, 0, RESET);
        assert_eq!(
            l1[2] & (bit::L1_ECX_X2APIC | bit::L1_ECX_TSC_DEADLINE),
            bit::L1_ECX_X2APIC | bit::L1_ECX_TSC_DEADLINE
        );
        let devices = bit::L1_EDX_APIC | bit::L1_EDX_MTRR | bit::L1_EDX_PAT;
        assert_eq!(l1[3] & devices, devices);
        assert_eq!(c.leaf(0, 6, 0, RESET), [bit::L6_EAX_ARAT, 0, 0, 0]);
        // The host's width, which its page walker uses.
        assert_eq!(c.leaf(0, 0x8000_0008, 0, RESET)[0] & 0xff, host(0x8000_0008, 0)[0] & 0xff);
        assert_eq!(c.phys_bits(), host(0x8000_0008, 0)[0] & 0xff);
    }
    // Invariant TSC where the host has it.
    assert_eq!(derive(sample::intel, 1).leaf(0, 0x8000_0007, 0, RESET), [0, 0, 0, 1 << 8]);
    assert_eq!(derive(sample::amd, 1).leaf(0, 0x8000_0007, 0, RESET), [0; 4]);
    // AMD repeats leaf 1's EDX bits in 0x8000_0001 (APM E.4.2), masked alike.
    let amd = derive(sample::amd, 1);
    let (l1, e1) = (amd.leaf(0, 1, 0, RESET)[3], amd.leaf(0, 0x8000_0001, 0, RESET)[3]);
    assert_eq!(l1 & 0x0183_f3ff, e1 & 0x0183_f3ff);
    assert_eq!(e1 & (1 << 7 | 1 << 14), 0, "no MCE, MCA");
}

#[test]
fn xsave_follows_what_the_kernel_offers_and_the_vps_cr4_and_xcr0() {
    let c = derive(sample::amd, 1);
    assert_eq!(c.xcr0_offered(), 0b111);
    let l1 = c.leaf(0, 1, 0, RESET)[2];
    assert_eq!(l1 & (bit::L1_ECX_XSAVE | bit::L1_ECX_AVX | bit::L1_ECX_OSXSAVE), bit::L1_ECX_XSAVE | bit::L1_ECX_AVX);
    let on = VpState { cr4: CR4_OSXSAVE, xcr0: 0b111 };
    assert_ne!(c.leaf(0, 1, 0, on)[2] & bit::L1_ECX_OSXSAVE, 0);
    // Subleaf 0: the offered XCR0 bits; EBX the size for XCR0 now, ECX
    // for all (SDM 13.2): legacy 512 + header 64, AVX 256 at 576.
    assert_eq!(c.leaf(0, 0xd, 0, RESET), [0b111, 0x240, 0x340, 0]);
    assert_eq!(c.leaf(0, 0xd, 0, on), [0b111, 0x340, 0x340, 0]);
    assert_eq!(c.leaf(0, 0xd, 1, on), [1, 0, 0, 0], "XSAVEOPT only, no XSAVES");
    assert_eq!(c.leaf(0, 0xd, 2, on), [0x100, 0x240, 0, 0]);
    assert_eq!(c.leaf(0, 0xd, 3, on), [0; 4]);
    // Hiding AVX hides its state and the VEX features with it.
    let c = masked(sample::intel, &["avx", "fma", "f16c", "avx2", "avx512f"]);
    assert_eq!(c.xcr0_offered(), 0b11);
    assert_eq!(c.leaf(0, 0xd, 0, on), [0b11, 0x240, 0x240, 0]);
    assert_eq!(c.leaf(0, 0xd, 2, on), [0; 4]);
    assert_eq!(c.leaf(0, 1, 0, on)[2] & (bit::L1_ECX_AVX | bit::L1_ECX_FMA | bit::L1_ECX_F16C), 0);
    assert_eq!(c.leaf(0, 7, 0, on)[1] & bit::L7_EBX_AVX2, 0);
    // Hiding XSAVE: no leaf 0xD, no OSXSAVE whatever CR4 says.
    let c = masked(sample::intel, &["xsave", "avx", "fma", "f16c", "avx2", "avx512f", "pku"]);
    assert_eq!(c.leaf(0, 0xd, 0, on), [0; 4]);
    assert_eq!(c.leaf(0, 1, 0, on)[2] & (bit::L1_ECX_XSAVE | bit::L1_ECX_OSXSAVE), 0);
}

#[test]
fn a_mask_hides_its_features() {
    let c = masked(sample::intel, &["x2apic", "tsc_deadline_timer", "mtrr", "constant_tsc"]);
    let l1 = c.leaf(0, 1, 0, RESET);
    assert_eq!(l1[2] & (bit::L1_ECX_X2APIC | bit::L1_ECX_TSC_DEADLINE), 0);
    assert_eq!(l1[3] & bit::L1_EDX_MTRR, 0);
    assert_eq!(c.leaf(0, 0x8000_0007, 0, RESET), [0; 4]);
    assert_ne!(l1[3] & bit::L1_EDX_PAT, 0);
}

#[test]
fn every_vp_sees_the_same_leaves_but_its_apic_id() {
    for host in [sample::amd as fn(u32, u32) -> [u32; 4], sample::intel] {
        let c = derive(host, 2);
        let leaves = (0..=0x10).chain(0x8000_0000..=0x8000_0020);
        for leaf in leaves {
            for sub in 0..4 {
                let (mut a, mut b) = (c.leaf(0, leaf, sub, RESET), c.leaf(1, leaf, sub, RESET));
                match leaf {
                    1 => (a[1], b[1]) = (a[1] & 0xff_ffff, b[1] & 0xff_ffff),
                    0xb => (a[3], b[3]) = (0, b[3] - 1),
                    _ => {}
                }
                assert_eq!(a, b, "{leaf:#x}.{sub}");
            }
        }
    }
}

#[test]
fn cache_leaves_describe_the_partitions_topology() {
    let c = Cpuid::derive(sample::intel, Topology { vps: 4, threads_per_core: 2 }, CpuidMask::NONE);
    // L1d: shared by a core's 2 threads; 2 cores in the package.
    let l1d = c.leaf(0, 4, 0, RESET)[0];
    assert_eq!((l1d >> 14 & 0xfff, l1d >> 26), (1, 1));
    // L3: shared by the package's 4.
    let l3 = c.leaf(0, 4, 3, RESET)[0];
    assert_eq!((l3 >> 5 & 7, l3 >> 14 & 0xfff, l3 >> 26), (3, 3, 1));
    assert_eq!(c.leaf(0, 4, 4, RESET), [0; 4]);
}

#[test]
fn leaves_above_the_maximum_follow_the_vendor() {
    let intel = derive(sample::intel, 1);
    // Intel: the highest basic leaf's data (SDM Vol. 2A CPUID).
    assert_eq!(intel.leaf(0, 0x14, 0, RESET), intel.leaf(0, 0xd, 0, RESET));
    assert_eq!(intel.leaf(0, 0x8000_0009, 1, RESET), intel.leaf(0, 0xd, 1, RESET));
    let amd = derive(sample::amd, 1);
    assert_eq!(amd.leaf(0, 0x14, 0, RESET), [0; 4]);
    assert_eq!(amd.leaf(0, 0x8000_001e, 0, RESET), [0; 4], "no TOPOEXT on qemu64");
}

/// The recorded AMD host with TOPOEXT and its cache leaf.
fn amd_topoext(leaf: u32, subleaf: u32) -> [u32; 4] {
    match (leaf, subleaf) {
        (0x8000_0000, _) => [0x8000_001e, 0, 0, 0],
        (0x8000_0001, _) => {
            let mut r = sample::amd(leaf, 0);
            r[2] |= bit::EXT1_ECX_TOPOEXT;
            r
        }
        (0x8000_001d, 0) => [0x0000_4121, 0x01c0_003f, 0x3f, 0],
        (0x8000_001d, 1) => [0x0000_4163, 0x03c0_003f, 0x3fff, 1],
        _ => sample::amd(leaf, subleaf),
    }
}

#[test]
fn amd_topology_extensions_describe_the_vps() {
    let c = Cpuid::derive(amd_topoext, Topology { vps: 4, threads_per_core: 2 }, CpuidMask::NONE);
    assert_eq!(c.leaf(0, 0x8000_0000, 0, RESET)[0], MAX_EXT_LEAF_TOPOEXT);
    // VP 3: extended APIC ID 3, core 1, 2 threads per core.
    assert_eq!(c.leaf(3, 0x8000_001e, 0, RESET), [3, 1 | 1 << 8, 0, 0]);
    // L1 shared by 2 threads, L3 by all 4.
    assert_eq!(c.leaf(0, 0x8000_001d, 0, RESET)[0] >> 14 & 0xfff, 1);
    assert_eq!(c.leaf(0, 0x8000_001d, 1, RESET)[0] >> 14 & 0xfff, 3);
    // 0x8000_0008 ECX: 4 cores (NC 3), ApicIdCoreIdSize 2.
    assert_eq!(c.leaf(0, 0x8000_0008, 0, RESET)[2], 3 | 2 << 12);
    let hidden = masked(amd_topoext, &["topoext"]);
    assert_eq!(hidden.leaf(0, 0x8000_0000, 0, RESET)[0], MAX_EXT_LEAF);
}
