use super::*;
use sysimage::{CpuidMask, Enlightenment, Enlightenments};

/// A one-VP partition's table on the recorded AMD host.
fn table(topology: Topology) -> Cpuid {
    Cpuid::derive(sample::amd, topology, CpuidMask::NONE)
}

/// VP 0 of a one-VP partition after reset.
fn cpuid(profile: &EnlightenmentProfile, guest_os_id: u64, leaf: u32, subleaf: u32) -> [u32; 4] {
    cpuid_for_vp(&table(Topology::SINGLE), profile, guest_os_id, 0, leaf, subleaf, VpState::RESET)
}

fn hyperv() -> EnlightenmentProfile {
    EnlightenmentProfile::new(Enlightenments::HYPERV, 16, 2).unwrap()
}

#[test]
fn without_enlightenments_there_is_no_hypervisor() {
    let none = EnlightenmentProfile::NONE;
    assert_eq!(cpuid(&none, 0, 1, 0)[2] & LEAF1_ECX_HYPERVISOR, 0);
    for leaf in 0x4000_0000..=0x4000_00ff {
        assert_eq!(cpuid(&none, 1, leaf, 0), [0; 4], "leaf {leaf:#x}");
    }
    // The base leaves are the same but for the hypervisor bit.
    let p = hyperv();
    for leaf in (0..=0xd).chain(0x8000_0000..=0x8000_0008) {
        let bit = if leaf == 1 { [0, 0, LEAF1_ECX_HYPERVISOR, 0] } else { [0; 4] };
        let with = cpuid(&p, 0, leaf, 0);
        assert_eq!(cpuid(&none, 0, leaf, 0), [with[0], with[1], with[2] & !bit[2], with[3]], "{leaf:#x}");
    }
}

#[test]
fn the_hyperv_profile_presents_hv1() {
    let p = hyperv();
    assert_eq!(cpuid(&p, 0, 1, 0)[2] >> 31, 1);
    // "Microsoft Hv", the maximum leaf 0x4000000A.
    assert_eq!(cpuid(&p, 0, 0x4000_0000, 0), [0x4000_000A, 0x7263_694D, 0x666F_736F, 0x7648_2074]);
    assert_eq!(cpuid(&p, 0, 0x4000_0001, 0), [0x3123_7648, 0, 0, 0]);
    // The version is zero until the guest OS ID is set (TLFS 2.4.3).
    assert_eq!(cpuid(&p, 0, 0x4000_0002, 0), [0; 4]);
    assert_eq!(cpuid(&p, 0x8100_0000_0000_0000, 0x4000_0002, 0), [1, 0x0000_0001, 0, 0]);
    // Privileges: VP runtime 0, reference counter 1, SynIC 2, synthetic
    // timers 3, APIC MSRs 4, hypercall 5, VP index 6, reset 7, reference
    // TSC 9, guest idle 10, frequencies 11; EBX: PostMessages 4,
    // SignalEvents 5. EDX: XMM fast input 4, guest idle 5, frequencies 8,
    // crash MSRs 10, fast output 15, SINT polling 17, hypercall MSR lock 18,
    // direct synthetic timers 19.
    let edx = 1 << 4 | 1 << 5 | 1 << 8 | 1 << 10 | 1 << 15 | 1 << 17 | 1 << 18 | 1 << 19;
    assert_eq!(cpuid(&p, 0, 0x4000_0003, 0), [0b1110_1111_1111, 1 << 4 | 1 << 5, 0, edx]);
    // Recommendations: remote flush 2, APIC MSRs 3, reset 4, relaxed timing
    // 5, cluster IPI 10, Ex masks 11; spin retries 0xfff.
    assert_eq!(cpuid(&p, 0, 0x4000_0004, 0), [0b1100_0011_1100, 0xfff, 0, 0]);
    assert_eq!(cpuid(&p, 0, 0x4000_0005, 0), [16, 2, 0, 0]);
    assert_eq!(cpuid(&p, 0, 0x4000_0006, 0), [1 << 1 | 1 << 3, 0, 0, 0]);
    for leaf in 0x4000_0007..=0x4000_00ff {
        assert_eq!(cpuid(&p, 1, leaf, 0), [0; 4], "leaf {leaf:#x}");
    }
}

#[test]
fn each_bit_follows_its_enlightenment() {
    let minimal = Enlightenments::INTERFACE;
    let p = EnlightenmentProfile::new(minimal, 4, 0).unwrap();
    assert_eq!(cpuid(&p, 0, 1, 0)[2] >> 31, 1);
    assert_eq!(cpuid(&p, 0, 0x4000_0003, 0), [1 << 5 | 1 << 6, 0, 0, 1 << 4 | 1 << 15 | 1 << 18]);
    // Never notify long spin waits without the enlightenment.
    assert_eq!(cpuid(&p, 0, 0x4000_0004, 0), [0, 0xffff_ffff, 0, 0]);
    let p = EnlightenmentProfile::new(minimal.with(Enlightenment::CrashMsrs, true), 4, 0).unwrap();
    assert_eq!(cpuid(&p, 0, 0x4000_0003, 0)[3], 1 << 4 | 1 << 10 | 1 << 15 | 1 << 18);
    let p = EnlightenmentProfile::new(Enlightenments::HYPERV.with(Enlightenment::ReferenceTsc, false), 4, 0).unwrap();
    assert_eq!(cpuid(&p, 0, 0x4000_0003, 0)[0] & 1 << 9, 0);
}

#[test]
fn synic_and_timers_in_leaf_0x40000003() {
    // TLFS 2.4.3 / Appendix: EAX bit 2 AccessSynicRegs, bit 3
    // AccessSyntheticTimerRegs; EDX bit 17 SintPollingModeAvailable, bit 19
    // DirectSyntheticTimers.
    let none = Enlightenments::HYPERV.with(Enlightenment::SyntheticTimers, false).with(Enlightenment::Synic, false);
    let [a, _, _, d] = cpuid(&EnlightenmentProfile::new(none, 4, 0).unwrap(), 0, 0x4000_0003, 0);
    assert_eq!((a & 0b1100, d & (1 << 17 | 1 << 19)), (0, 0), "neither without its enlightenment");
    let set = none.with(Enlightenment::Synic, true);
    let [a, _, _, d] = cpuid(&EnlightenmentProfile::new(set, 4, 0).unwrap(), 0, 0x4000_0003, 0);
    assert_eq!((a & 0b1100, d & (1 << 17 | 1 << 19)), (0b100, 1 << 17));
    let set = set.with(Enlightenment::SyntheticTimers, true);
    let [a, _, _, d] = cpuid(&EnlightenmentProfile::new(set, 4, 0).unwrap(), 0, 0x4000_0003, 0);
    assert_eq!((a & 0b1100, d & (1 << 17 | 1 << 19)), (0b1100, 1 << 17 | 1 << 19));
    assert_eq!(set, Enlightenments::HYPERV, "both in the hyperv profile");
}

#[test]
fn profiles_refuse_incoherent_sets() {
    use sysimage::EnlightenmentError;
    let no_assist = Enlightenments::HYPERV_VSM.with(Enlightenment::ApicMsrs, false);
    assert_eq!(
        EnlightenmentProfile::new(no_assist, 1, 1),
        Err(EnlightenmentError::Requires { feature: Enlightenment::Vsm, missing: Enlightenment::ApicMsrs.set() })
    );
    let no_index = Enlightenments::HYPERV.with(Enlightenment::VpIndex, false);
    assert!(EnlightenmentProfile::new(no_index, 1, 1).is_err());
}

/// Acceptance 3 of issue #12: `hyperv-vsm` grants AccessVsm (EBX bit 16),
/// AccessVpRegisters (bit 17) and AccessSynicRegs (EAX bit 2), 15.3.1;
/// `hyperv` grants neither of the first two.
#[test]
fn hyperv_vsm_grants_vsm_and_hyperv_does_not() {
    let set = Enlightenments::profile("hyperv-vsm").unwrap();
    let p = EnlightenmentProfile::new(set, 4, 0).unwrap();
    let [a, b, _, _] = cpuid(&p, 0, 0x4000_0003, 0);
    assert_eq!((a & 1 << 2, b & (1 << 16 | 1 << 17)), (1 << 2, 1 << 16 | 1 << 17));
    assert!(p.privileges().vsm_available());
    let [a_hv, b_hv, _, _] = cpuid(&hyperv(), 0, 0x4000_0003, 0);
    assert_eq!((a_hv, b_hv & (1 << 16 | 1 << 17)), (a, 0), "hyperv: the same but for VSM");
    assert!(!hyperv().privileges().vsm_available());
}

/// Leaf 0xB subleaves 0..=2 and leaf 1 for VP `vp` of `topology`.
fn topology_leaves(topology: Topology, vp: u32) -> ([u32; 4], [[u32; 4]; 3]) {
    let (p, t) = (hyperv(), table(topology));
    let leaf = |l, s| cpuid_for_vp(&t, &p, 0, vp, l, s, VpState::RESET);
    (leaf(1, 0), [leaf(0xb, 0), leaf(0xb, 1), leaf(0xb, 2)])
}

#[test]
fn leaf_0b_is_reachable_and_the_unoffered_leaves_are_zeros() {
    let p = hyperv();
    assert_eq!(cpuid(&p, 0, 0, 0)[0], 0xd);
    let t = table(Topology { vps: 4, threads_per_core: 2 });
    // No cache descriptors on AMD, no PSN, MONITOR, PMU.
    for leaf in [2, 3, 4, 5, 8, 9, 0xa, 0xc] {
        for subleaf in 0..3 {
            assert_eq!(cpuid_for_vp(&t, &p, 0, 3, leaf, subleaf, VpState::RESET), [0; 4], "leaf {leaf:#x}.{subleaf}");
        }
    }
}

#[test]
fn smt_pairs_are_two_threads_of_a_core() {
    // 4 VPs, 2 threads per core: VPs 0, 1 are core 0 and 2, 3 core 1.
    let topology = Topology { vps: 4, threads_per_core: 2 };
    for vp in 0..4 {
        let (leaf1, [smt, core, invalid]) = topology_leaves(topology, vp);
        // Leaf 1: HTT, 4 addressable IDs, initial APIC ID = VP index.
        assert_eq!(leaf1[3] & bit::L1_EDX_HTT, bit::L1_EDX_HTT);
        assert_eq!((leaf1[1] >> 16) & 0xff, 4);
        assert_eq!(leaf1[1] >> 24, vp);
        assert_eq!(leaf1[1] & 0xffff, sample::amd(1, 0)[1] & 0xff00);
        // SMT level: shift 1, 2 threads, type 1, level 0, x2APIC ID.
        assert_eq!(smt, [1, 2, 1 << 8, vp]);
        // Core level: shift 2 (4 IDs), 4 logical processors, type 2, level 1.
        assert_eq!(core, [2, 4, 2 << 8 | 1, vp]);
        // Level 2: invalid (type 0), the level number in ECX[7:0].
        assert_eq!(invalid, [0, 0, 2, vp]);
    }
    // Siblings share the x2APIC ID above the SMT shift.
    let core_of = |vp| topology_leaves(topology, vp).1[0][3] >> topology.smt_shift();
    assert_eq!((core_of(0), core_of(1), core_of(2), core_of(3)), (0, 0, 1, 1));
    // An odd count: 3 VPs still span 4 IDs; the shift covers the SMT bit.
    let odd = Topology { vps: 3, threads_per_core: 2 };
    assert_eq!(topology_leaves(odd, 2).1[1], [2, 3, 2 << 8 | 1, 2]);
    assert_eq!(Topology { vps: 1, threads_per_core: 2 }.core_shift(), 1);
}

#[test]
fn one_thread_per_core_is_every_vp_a_core() {
    let topology = Topology::cores(2);
    let (leaf1, [smt, core, invalid]) = topology_leaves(topology, 1);
    assert_eq!(smt, [0, 1, 1 << 8, 1]);
    assert_eq!(core, [1, 2, 2 << 8 | 1, 1]);
    assert_eq!(invalid, [0, 0, 2, 1]);
    assert_eq!((leaf1[1] >> 16) & 0xff, 2);
    assert_eq!(leaf1[3] & bit::L1_EDX_HTT, bit::L1_EDX_HTT);
    // 16 VPs: 16 IDs, shift 4.
    assert_eq!(topology_leaves(Topology::cores(16), 15).1[1], [4, 16, 2 << 8 | 1, 15]);
    // A single VP: no HTT, one logical processor, as before.
    let (leaf1, [smt, core, _]) = topology_leaves(Topology::SINGLE, 0);
    assert_eq!(leaf1[1], 8 << 8 | 1 << 16);
    assert_eq!(leaf1[3] & bit::L1_EDX_HTT, 0);
    assert_eq!(smt, [0, 1, 1 << 8, 0]);
    assert_eq!(core, [0, 1, 2 << 8 | 1, 0]);
    // Without a VP, leaf 0xB is the single VP's.
    assert_eq!(cpuid(&hyperv(), 0, 0xb, 1), core);
    // Subleaves far out: invalid, the level's low byte.
    assert_eq!(topology_leaves(Topology::cores(2), 0).0[0], sample::amd(1, 0)[0]);
    let two = table(Topology::cores(2));
    assert_eq!(cpuid_for_vp(&two, &hyperv(), 0, 1, 0xb, 0x1ff, VpState::RESET), [0, 0, 0xff, 1]);
}

/// No profile the VID accepts grants a CPUID bit whose TLFS dependency it
/// does not grant too, over every set of the implemented enlightenments
/// (the rules in raw TLFS bits, 2.4.4, 2.4.5, 4.2.2, not the crate's
/// names). The VID refuses the others ([`EnlightenmentProfile::new`]).
#[test]
fn every_accepted_profile_grants_each_bit_with_its_dependencies() {
    let implemented: Vec<Enlightenment> = Enlightenment::ALL.into_iter().filter(|e| e.is_implemented()).collect();
    let bit = |r: u32, n: u32| r & (1 << n) != 0;
    let mut accepted = 0;
    for mask in 0u32..1 << implemented.len() {
        let set =
            implemented.iter().enumerate().fold(Enlightenments::NONE, |set, (i, &e)| set.with(e, mask & (1 << i) != 0));
        let Ok(p) = EnlightenmentProfile::new(set, 4, 0) else { continue };
        accepted += 1;
        let [a, b, _, d] = cpuid(&p, 0, 0x4000_0003, 0);
        let [hints, retries, _, _] = cpuid(&p, 0, 0x4000_0004, 0);
        let apic = bit(cpuid(&p, 0, 1, 0)[3], 9);
        let rules = [
            // Any privilege or feature: the "Hv#1" MSRs (hypercall, VP index).
            (a | b | d != 0, bit(a, 5) && bit(a, 6)),
            // Synthetic timers: the SynIC and the reference counter (12.5).
            (bit(a, 3), bit(a, 2) && bit(a, 1)),
            // Direct mode: the timers, and a local APIC (12.2).
            (bit(d, 19), bit(a, 3) && apic),
            // The reference TSC page falls back on the counter (12.7.3).
            (bit(a, 9), bit(a, 1)),
            // PostMessages, SignalEvents, SINT polling: the SynIC (11).
            (bit(b, 4) || bit(b, 5) || bit(d, 17), bit(a, 2)),
            // Hypercall MSR lock, XMM fast input and output: the hypercall page.
            (bit(d, 18) || bit(d, 4) || bit(d, 15), bit(a, 5)),
            // Guest idle and frequency features: their MSRs.
            (bit(d, 5), bit(a, 10)),
            (bit(d, 8), bit(a, 11)),
            // Hints: the APIC MSRs and reset MSR with their privileges; the
            // Ex masks with a hypercall that takes them; a retry count with
            // the hypercall page (HvNotifyLongSpinWait).
            (bit(hints, 3), bit(a, 4)),
            (bit(hints, 4), bit(a, 7)),
            (bit(hints, 11), bit(hints, 2) || bit(hints, 10)),
            (p.hypervisor_present() && retries != u32::MAX, bit(a, 5)),
            // AccessVsm: AccessVpRegisters and the SynIC (15.3.1), and the
            // VP assist page of the VTL control (15.8.1).
            (bit(b, 16), bit(b, 17) && bit(a, 2) && bit(a, 4)),
            (bit(b, 17), bit(b, 16)),
        ];
        for (i, (granted, needs)) in rules.into_iter().enumerate() {
            assert!(!granted || needs, "rule {i}: {set:?} gives {a:#x} {b:#x} {d:#x} {hints:#x}");
        }
    }
    // The refusals are not everything: "none", "hyperv" and more pass.
    assert!(accepted > 1000, "{accepted}");
}

mod derived;
