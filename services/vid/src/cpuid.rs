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
/// Leaf 1 ECX: SSE3, x2APIC (bit 21) and TSC-deadline (bit 24), both
/// emulated by the VID's local APIC; the hypervisor-present bit
/// ([`LEAF1_ECX_HYPERVISOR`]) is added when the profile has enlightenments.
pub const LEAF1_ECX: u32 = 1 | 1 << 21 | 1 << 24;
/// Leaf 1 ECX bit 31: a hypervisor is present (TLFS 2.2).
pub const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 EBX: CLFLUSH line size 8 quadwords, one logical processor, APIC
/// ID 0 ([`cpuid_for_vp`] sets the last two for each VP).
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

/// The highest basic leaf: 0xB, the extended topology leaf. Leaves 2 to
/// 0xA are zeros (no cache descriptors, no MONITOR, no thermal or power
/// management, no structured extended features, no performance monitoring).
pub const MAX_BASIC_LEAF: u32 = 0xb;
/// Leaf 1 EDX bit 28 (HTT): EBX[23:16] is valid.
pub const LEAF1_EDX_HTT: u32 = 1 << 28;
/// Leaf 0xB ECX[15:8] level types (SDM Vol. 2A, CPUID leaf 0BH).
pub const LEVEL_INVALID: u32 = 0;
pub const LEVEL_SMT: u32 = 1;
pub const LEVEL_CORE: u32 = 2;

/// The processor topology a partition's CPUID describes (leaf 1 EBX[23:16]
/// and HTT, leaf 0xB). Each VP's x2APIC ID is its index, as the MADT says,
/// so with 2 threads per core VPs 2k and 2k+1 are the threads of core k;
/// the VID tells 2 only when it placed those pairs on the two SMT siblings
/// of a host core under the core scheduler (`vid::placement`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Topology {
    /// The partition's VPs (at least 1).
    pub vps: u32,
    /// 1, or 2 for SMT pairs.
    pub threads_per_core: u32,
}

impl Topology {
    /// One VP, one thread per core.
    pub const SINGLE: Topology = Topology { vps: 1, threads_per_core: 1 };

    /// `vps` VPs, each a core of its own.
    pub const fn cores(vps: u32) -> Topology {
        Topology { vps, threads_per_core: 1 }
    }

    /// The bits of the x2APIC ID that number the threads of a core.
    pub fn smt_shift(self) -> u32 {
        ceil_log2(self.threads_per_core.max(1))
    }

    /// The bits of the x2APIC ID below the package: every VP is in one.
    pub fn core_shift(self) -> u32 {
        ceil_log2(self.vps.max(1)).max(self.smt_shift())
    }

    /// Leaf 0xB, subleaf `level`, for the VP with x2APIC ID `vp`: level 0
    /// SMT, level 1 core (the package: every VP), then invalid levels (EAX
    /// and EBX 0, ECX the level number alone; EDX is the x2APIC ID at every
    /// level).
    pub fn leaf_0b(self, vp: u32, level: u32) -> [u32; 4] {
        let threads = self.threads_per_core.max(1);
        match level {
            0 => [self.smt_shift(), threads, LEVEL_SMT << 8, vp],
            1 => [self.core_shift(), self.vps.max(1), LEVEL_CORE << 8 | 1, vp],
            _ => [0, 0, LEVEL_INVALID << 8 | (level & 0xff), vp],
        }
    }
}

/// The smallest `s` with `1 << s >= n` (n >= 1).
fn ceil_log2(n: u32) -> u32 {
    32 - n.saturating_sub(1).leading_zeros()
}

/// [`cpuid`] as VP `vp` of a partition of `topology` sees it: leaf 1
/// EBX[31:24] is its initial APIC ID (the VP index, as the MADT says) and,
/// with more than one VP, HTT and EBX[23:16] (the APIC IDs the package
/// spans); leaf 0xB describes the topology with the VP's x2APIC ID.
pub fn cpuid_for_vp(
    profile: &EnlightenmentProfile,
    guest_os_id: u64,
    topology: Topology,
    vp: u32,
    leaf: u32,
    subleaf: u32,
) -> [u32; 4] {
    let mut r = cpuid(profile, guest_os_id, leaf, subleaf);
    match leaf {
        1 => {
            r[1] = (r[1] & 0x0000_ffff) | (vp & 0xff) << 24;
            if topology.vps > 1 {
                r[1] |= (1u32 << topology.core_shift()).min(0xff) << 16;
                r[3] |= LEAF1_EDX_HTT;
            } else {
                r[1] |= LEAF1_EBX & 0x00ff_0000;
            }
        }
        0xb => r = topology.leaf_0b(vp, subleaf),
        _ => {}
    }
    r
}

/// EAX, EBX, ECX, EDX for a leaf (EAX) and subleaf (ECX); unknown leaves
/// are zeros. `guest_os_id` is the partition's `HV_X64_MSR_GUEST_OS_ID`:
/// leaf 0x4000_0002 is zero until the guest has set it (TLFS 2.4.3).
pub fn cpuid(profile: &EnlightenmentProfile, guest_os_id: u64, leaf: u32, subleaf: u32) -> [u32; 4] {
    let v = VENDOR;
    match leaf {
        0 => [
            MAX_BASIC_LEAF,
            u32::from_le_bytes([v[0], v[1], v[2], v[3]]),
            u32::from_le_bytes([v[8], v[9], v[10], v[11]]),
            u32::from_le_bytes([v[4], v[5], v[6], v[7]]),
        ],
        1 => {
            let hv = if profile.hypervisor_present() { LEAF1_ECX_HYPERVISOR } else { 0 };
            [SIGNATURE, LEAF1_EBX, LEAF1_ECX | hv, LEAF1_EDX]
        }
        // VP 0 of a one-VP partition ([`cpuid_for_vp`] says the rest).
        0xb => Topology::SINGLE.leaf_0b(0, subleaf),
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
