//! The CPUID the VID presents: a small fixed table, the same on every host,
//! plus the hypervisor leaves 0x4000_0000..=0x4000_000A (TLFS 2.4) when the
//! partition's [`EnlightenmentProfile`] gives it any enlightenment.

use crate::profile::EnlightenmentProfile;
use tlfs::cpuid::{
    HV_CPUID_INTERFACE_SIGNATURE, HV_CPUID_RANGE, HV_CPUID_VENDOR_MICROSOFT, HvCpuidFunction, HvHardwareFeatures,
    HvImplementationLimits, HvVersionInfo, vendor_registers,
};

/// The vendor string of leaf 0 ("TesseraVMM  ", 12 printable bytes).
pub const VENDOR: [u8; 12] = *b"TesseraVMM  ";
/// Leaf 1 EAX: family 6, model 1, stepping 1.
pub const SIGNATURE: u32 = 0x0000_0611;
/// Leaf 1 EDX: what a guest really has on any x86-64 host with the VID's
/// emulation: FPU, PSE, TSC, MSR, PAE, CX8, APIC (the VID's local APIC),
/// PGE, CMOV, MMX, FXSR, SSE, SSE2. No MTRR, MCE, PAT or SEP (not emulated).
pub const LEAF1_EDX: u32 =
    1 | 1 << 3 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 8 | 1 << 9 | 1 << 13 | 1 << 15 | 1 << 23 | 1 << 24 | 1 << 25 | 1 << 26;
/// Leaf 1 ECX: SSE3; the hypervisor-present bit ([`LEAF1_ECX_HYPERVISOR`])
/// is added when the profile has enlightenments.
pub const LEAF1_ECX: u32 = 1;
/// Leaf 1 ECX bit 31: a hypervisor is present (TLFS 2.2).
pub const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 EBX: CLFLUSH line size 8 quadwords, one logical processor, APIC ID 0.
pub const LEAF1_EBX: u32 = 8 << 8 | 1 << 16;
/// Leaf 0x8000_0001 EDX: SYSCALL, NX and long mode (the hardware runs them
/// for the guest; EFER goes through the VID).
pub const EXT1_EDX: u32 = 1 << 11 | EXT1_EDX_NX | 1 << 29;
/// Leaf 0x8000_0001 EDX bit 20: NX (EFER.NXE may be set).
pub const EXT1_EDX_NX: u32 = 1 << 20;

/// The highest hypervisor leaf: every leaf TLFS 6.0b defines, the nested
/// ones (0x4000_0009, 0x4000_000A) as zeros.
pub const HV_MAX_FUNCTION: u32 = HvCpuidFunction::NESTED_OPTIMIZATIONS.0;

/// Leaf 0x4000_0002: Tessera's own version (0.1, build 1), not a Windows
/// release: guests are told to test features, not versions (TLFS 2.5).
pub const HV_VERSION: HvVersionInfo =
    HvVersionInfo { build_number: 1, major: 0, minor: 1, service_pack: 0, service_branch: 0, service_number: 0 };

/// [`cpuid`] as VP `vp` sees it: leaf 1 EBX[31:24] is its initial APIC ID
/// (the VP index, as the MADT says).
pub fn cpuid_for_vp(profile: &EnlightenmentProfile, guest_os_id: u64, vp: u32, leaf: u32, subleaf: u32) -> [u32; 4] {
    let mut r = cpuid(profile, guest_os_id, leaf, subleaf);
    if leaf == 1 {
        r[1] = (r[1] & 0x00ff_ffff) | (vp & 0xff) << 24;
    }
    r
}

/// EAX, EBX, ECX, EDX for a leaf (EAX) and subleaf (ECX); unknown leaves
/// are zeros. `guest_os_id` is the partition's `HV_X64_MSR_GUEST_OS_ID`:
/// leaf 0x4000_0002 is zero until the guest has set it (TLFS 2.4.3).
pub fn cpuid(profile: &EnlightenmentProfile, guest_os_id: u64, leaf: u32, _subleaf: u32) -> [u32; 4] {
    let v = VENDOR;
    match leaf {
        0 => [
            1,
            u32::from_le_bytes([v[0], v[1], v[2], v[3]]),
            u32::from_le_bytes([v[8], v[9], v[10], v[11]]),
            u32::from_le_bytes([v[4], v[5], v[6], v[7]]),
        ],
        1 => {
            let hv = if profile.hypervisor_present() { LEAF1_ECX_HYPERVISOR } else { 0 };
            [SIGNATURE, LEAF1_EBX, LEAF1_ECX | hv, LEAF1_EDX]
        }
        0x8000_0000 => [0x8000_0001, 0, 0, 0],
        0x8000_0001 => [0, 0, 0, EXT1_EDX],
        _ if HV_CPUID_RANGE.contains(&leaf) && profile.hypervisor_present() => {
            hypervisor_leaf(profile, guest_os_id, leaf)
        }
        _ => [0; 4],
    }
}

/// A leaf of 0x4000_0000..=0x4000_00FF for a profile with enlightenments.
fn hypervisor_leaf(profile: &EnlightenmentProfile, guest_os_id: u64, leaf: u32) -> [u32; 4] {
    match HvCpuidFunction(leaf) {
        HvCpuidFunction::VENDOR_AND_MAX_FUNCTIONS => {
            let [b, c, d] = vendor_registers(HV_CPUID_VENDOR_MICROSOFT);
            [HV_MAX_FUNCTION, b, c, d]
        }
        HvCpuidFunction::INTERFACE => [HV_CPUID_INTERFACE_SIGNATURE, 0, 0, 0],
        HvCpuidFunction::VERSION if guest_os_id != 0 => HV_VERSION.registers(),
        HvCpuidFunction::FEATURES => {
            let [a, b] = profile.privileges().registers();
            [a, b, 0, profile.features().into_bits()]
        }
        HvCpuidFunction::ENLIGHTENMENT_INFORMATION => {
            // ECX (physical address bits) stays 0: "not reported".
            [profile.recommendations().into_bits(), profile.spinlock_retries(), 0, 0]
        }
        HvCpuidFunction::IMPLEMENTATION_LIMITS => HvImplementationLimits {
            max_virtual_processors: profile.max_vps,
            max_logical_processors: profile.max_logical_processors,
            max_interrupt_vectors: 0,
        }
        .registers(),
        // Tessera runs every guest on EPT or NPT, with MSR bitmaps (VMX) or
        // the MSR permission map (SVM); nothing else in the leaf (APIC
        // overlay assist, DMA or interrupt remapping) is in use.
        HvCpuidFunction::HARDWARE_FEATURES => {
            let in_use = HvHardwareFeatures::new()
                .with_msr_bitmaps_in_use(true)
                .with_second_level_address_translation_in_use(true);
            [in_use.into_bits(), 0, 0, 0]
        }
        // 0x4000_0007 (root only), 0x4000_0008 (no SVM), 0x4000_0009 and
        // 0x4000_000A (not nested, no enlightened VMCS): zeros, as is any
        // leaf above the maximum.
        _ => [0; 4],
    }
}

#[cfg(test)]
mod tests;
