//! Reading what the CPU offers for virtualization. Decoding is pure and
//! lives in `kerncore::virt`; this only issues CPUID and RDMSR, and only
//! reads an MSR after CPUID says it exists.

use kerncore::virt::{SvmCaps, VirtSupport, VmxCaps};
use x86::cpuid::cpuid;
use x86::msr::rdmsr;
use x86defs::msr;

const CPUID_VMX: u32 = 1 << 5; // leaf 1, ECX
const CPUID_SVM: u32 = 1 << 2; // leaf 0x8000_0001, ECX

const FEATURE_CONTROL_LOCKED: u64 = 1 << 0;
const FEATURE_CONTROL_VMX_OUTSIDE_SMX: u64 = 1 << 2;
const VMX_BASIC_TRUE_CONTROLS: u64 = 1 << 55;
const VM_CR_SVMDIS: u64 = 1 << 4;

fn read_msr(index: u32) -> u64 {
    // SAFETY: callers only pass MSRs whose existence CPUID established.
    unsafe { rdmsr(index) }
}

pub fn detect() -> VirtSupport {
    let max_extended = cpuid!(0x8000_0000).eax;
    if cpuid!(1).ecx & CPUID_VMX != 0 {
        let control = read_msr(msr::IA32_FEATURE_CONTROL);
        if control & FEATURE_CONTROL_LOCKED != 0 && control & FEATURE_CONTROL_VMX_OUTSIDE_SMX == 0 {
            return VirtSupport::DisabledByFirmware("Intel VMX");
        }
        let basic = read_msr(msr::IA32_VMX_BASIC);
        let (pin, proc) = if basic & VMX_BASIC_TRUE_CONTROLS != 0 {
            (msr::IA32_VMX_TRUE_PINBASED_CTLS, msr::IA32_VMX_TRUE_PROCBASED_CTLS)
        } else {
            (msr::IA32_VMX_PINBASED_CTLS, msr::IA32_VMX_PROCBASED_CTLS)
        };
        let caps = VmxCaps::decode(
            basic,
            read_msr(pin),
            read_msr(proc),
            || read_msr(msr::IA32_VMX_PROCBASED_CTLS2),
            || read_msr(msr::IA32_VMX_EPT_VPID_CAP),
        );
        return VirtSupport::Vmx(caps);
    }
    if max_extended >= 0x8000_0001 && cpuid!(0x8000_0001).ecx & CPUID_SVM != 0 {
        if read_msr(msr::VM_CR) & VM_CR_SVMDIS != 0 {
            return VirtSupport::DisabledByFirmware("AMD SVM");
        }
        if max_extended < 0x8000_000a {
            return VirtSupport::Svm(SvmCaps::decode(0, 0, 0));
        }
        let leaf = cpuid!(0x8000_000a);
        return VirtSupport::Svm(SvmCaps::decode(leaf.eax, leaf.ebx, leaf.edx));
    }
    VirtSupport::None
}
