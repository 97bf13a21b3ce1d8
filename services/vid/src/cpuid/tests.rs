use super::*;
use sysimage::{Enlightenment, Enlightenments};

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
    // The base leaves are unchanged.
    assert_eq!(cpuid(&none, 0, 1, 0), [SIGNATURE, LEAF1_EBX, LEAF1_ECX, LEAF1_EDX]);
    assert_eq!(cpuid(&none, 0, 0x8000_0001, 0), [0, 0, 0, EXT1_EDX]);
}

#[test]
fn the_hyperv_profile_presents_hv1() {
    let p = hyperv();
    assert_eq!(cpuid(&p, 0, 1, 0)[2], LEAF1_ECX | 1 << 31);
    // "Microsoft Hv", the maximum leaf 0x4000000A.
    assert_eq!(cpuid(&p, 0, 0x4000_0000, 0), [0x4000_000A, 0x7263_694D, 0x666F_736F, 0x7648_2074]);
    assert_eq!(cpuid(&p, 0, 0x4000_0001, 0), [0x3123_7648, 0, 0, 0]);
    // The version is zero until the guest OS ID is set (TLFS 2.4.3).
    assert_eq!(cpuid(&p, 0, 0x4000_0002, 0), [0; 4]);
    assert_eq!(cpuid(&p, 0x8100_0000_0000_0000, 0x4000_0002, 0), [1, 0x0000_0001, 0, 0]);
    // Privileges: VP runtime 0, reference counter 1, APIC MSRs 4, hypercall
    // 5, VP index 6, reset 7, reference TSC 9, guest idle 10, frequencies
    // 11; no hypercall privileges. EDX: XMM fast input 4, guest idle 5,
    // frequencies 8, crash MSRs 10, fast output 15, hypercall MSR lock 18.
    let edx = 1 << 4 | 1 << 5 | 1 << 8 | 1 << 10 | 1 << 15 | 1 << 18;
    assert_eq!(cpuid(&p, 0, 0x4000_0003, 0), [0b1110_1111_0011, 0, 0, edx]);
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
fn profiles_refuse_what_the_vid_does_not_implement() {
    use sysimage::EnlightenmentError;
    let synic = Enlightenments::HYPERV.with(Enlightenment::Synic, true);
    assert_eq!(EnlightenmentProfile::new(synic, 1, 1), Err(EnlightenmentError::Unimplemented(Enlightenment::Synic)));
    let no_index = Enlightenments::HYPERV.with(Enlightenment::VpIndex, false);
    assert!(EnlightenmentProfile::new(no_index, 1, 1).is_err());
}
