//! The CPUID the VID presents: the base and extended leaves derived from
//! the host's ([`derive`]: vendor, signature and caches as the host has
//! them, features from allow-lists, the topology of the partition's VPs),
//! plus the hypervisor leaves 0x4000_0000..=0x4000_000A (TLFS 2.4) when
//! the partition's [`EnlightenmentProfile`] gives it any enlightenment.
//!
//! The vendor string is the host's ("GenuineIntel", "AuthenticAMD"), not a
//! name of Tessera's own: guests pick their errata work-arounds, MSRs and
//! cache and topology leaves by it, and the ones in the table are the
//! host's. Every VP sees the same leaves but for its APIC ID (leaf 1 EBX,
//! 0xB EDX, 0x8000_001E EAX) and the bits that follow its own CR4 and XCR0
//! (OSXSAVE, OSPKE, leaf 0xD's sizes), which the hardware computes for a
//! native CPUID and the VID computes here, as CPUID exits to it.

use crate::profile::EnlightenmentProfile;
use tlfs::cpuid::{
    HV_CPUID_INTERFACE_SIGNATURE, HV_CPUID_RANGE, HV_CPUID_VENDOR_MICROSOFT, HvCpuidFunction, HvHardwareFeatures,
    HvImplementationLimits, HvVersionInfo, vendor_registers,
};

mod derive;
pub mod sample;
pub use derive::{DEFAULT_PHYS_BITS, MAX_BASIC_LEAF, MAX_EXT_LEAF, MAX_EXT_LEAF_TOPOEXT, bit};

/// Leaf 1 ECX bit 31: a hypervisor is present (TLFS 2.2).
pub const LEAF1_ECX_HYPERVISOR: u32 = bit::L1_ECX_HYPERVISOR;
/// Leaf 0x8000_0001 EDX bit 20: NX (EFER.NXE may be set).
pub const EXT1_EDX_NX: u32 = bit::EXT1_EDX_NX;
/// CR4.OSXSAVE and CR4.PKE, which leaf 1 ECX and leaf 7 ECX reflect.
pub const CR4_OSXSAVE: u64 = 1 << 18;
pub const CR4_PKE: u64 = 1 << 22;
/// Most subleaves of a cache-parameter leaf kept (4, 0x8000_001D).
pub const MAX_CACHE_SUBLEAVES: u32 = 8;
/// Most (leaf, subleaf) entries of a partition's table.
pub const MAX_ENTRIES: usize = 64;

/// The host CPU's vendor, by leaf 0's string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostVendor {
    Intel,
    Amd,
    /// Another vendor: treated like AMD where the two differ (leaves
    /// above the maximum read zeros).
    Other,
}

impl HostVendor {
    pub fn from_leaf0(r: [u32; 4]) -> HostVendor {
        let mut name = [0u8; 12];
        name[..4].copy_from_slice(&r[1].to_le_bytes());
        name[4..8].copy_from_slice(&r[3].to_le_bytes());
        name[8..].copy_from_slice(&r[2].to_le_bytes());
        match &name {
            b"GenuineIntel" => HostVendor::Intel,
            b"AuthenticAMD" => HostVendor::Amd,
            _ => HostVendor::Other,
        }
    }
}

/// What of a VP's state its CPUID reflects: CR4 (OSXSAVE, PKE) and XCR0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VpState {
    pub cr4: u64,
    pub xcr0: u64,
}

impl VpState {
    /// After reset: CR4 0, XCR0 x87 only.
    pub const RESET: VpState = VpState { cr4: 0, xcr0: kerncore::xstate::XCR0_RESET };
}

/// A partition's base and extended CPUID leaves ([`Cpuid::derive`]).
#[derive(Clone, Debug)]
pub struct Cpuid {
    vendor: HostVendor,
    topology: Topology,
    max_ext: u32,
    /// MAXPHYADDR: the host's (leaf 0x8000_0008 EAX[7:0]).
    phys_bits: u32,
    /// The XCR0 components leaf 0xD offers.
    xcr0: u64,
    /// The host's (size, offset, 64-byte aligned) of each component.
    xsave_layout: [(u32, u32, bool); 64],
    entries: heapless::Vec<(u32, u32, [u32; 4]), MAX_ENTRIES>,
}

impl Cpuid {
    fn empty(vendor: HostVendor, topology: Topology) -> Cpuid {
        Cpuid {
            vendor,
            topology,
            max_ext: MAX_EXT_LEAF,
            phys_bits: derive::DEFAULT_PHYS_BITS,
            xcr0: 0,
            xsave_layout: [(0, 0, false); 64],
            entries: heapless::Vec::new(),
        }
    }

    fn put(&mut self, leaf: u32, subleaf: u32, r: [u32; 4]) {
        if leaf == 0 || leaf == 0x8000_0000 {
            self.entries.retain(|e| e.0 != leaf);
        }
        // A full table drops the entry: its leaf reads zeros.
        let _ = self.entries.push((leaf, subleaf, r));
    }

    /// The host's vendor, which the partition sees.
    pub fn vendor(&self) -> HostVendor {
        self.vendor
    }

    /// MAXPHYADDR, as leaf 0x8000_0008 tells it: the host's, which the
    /// CPU checks the guest's page tables against.
    pub fn phys_bits(&self) -> u32 {
        self.phys_bits
    }

    /// The XCR0 components leaf 0xD offers.
    pub fn xcr0_offered(&self) -> u64 {
        self.xcr0
    }

    /// Leaf 1 EAX: the processor signature (family, model, stepping),
    /// which EDX also holds after reset and INIT.
    pub fn signature(&self) -> u32 {
        self.stored(1, 0)[0]
    }

    fn stored(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        self.entries.iter().find(|e| e.0 == leaf && e.1 == subleaf).map_or([0; 4], |e| e.2)
    }

    /// Whether `leaf` is in the base or extended range the table
    /// describes.
    fn in_range(&self, leaf: u32) -> bool {
        leaf <= MAX_BASIC_LEAF || (0x8000_0000..=self.max_ext).contains(&leaf)
    }

    /// A base or extended leaf as VP `vp` (its APIC ID) in state `state`
    /// reads it. A leaf above the maximum reads zeros on AMD and the
    /// highest basic leaf on Intel (SDM Vol. 2A CPUID, "If a value entered
    /// for CPUID.EAX is higher than the maximum input value").
    pub fn leaf(&self, vp: u32, leaf: u32, subleaf: u32, state: VpState) -> [u32; 4] {
        let leaf = match (self.in_range(leaf), self.vendor) {
            (true, _) => leaf,
            (false, HostVendor::Intel) => MAX_BASIC_LEAF,
            (false, _) => return [0; 4],
        };
        let indexed = matches!(leaf, 4 | 7 | 0xd | 0x8000_001d);
        let mut r = self.stored(leaf, if indexed { subleaf } else { 0 });
        let t = self.topology;
        match leaf {
            1 => {
                r[1] |= (vp & 0xff) << 24;
                if t.vps > 1 {
                    r[1] |= (1u32 << t.core_shift()).min(0xff) << 16;
                    r[3] |= bit::L1_EDX_HTT;
                } else {
                    r[1] |= 1 << 16;
                }
                if state.cr4 & CR4_OSXSAVE != 0 && r[2] & bit::L1_ECX_XSAVE != 0 {
                    r[2] |= bit::L1_ECX_OSXSAVE;
                }
            }
            7 if state.cr4 & CR4_PKE != 0 && r[2] & bit::L7_ECX_PKU != 0 => r[2] |= bit::L7_ECX_OSPKE,
            0xb => r = t.leaf_0b(vp, subleaf),
            0xd if subleaf == 0 && self.xcr0 != 0 => {
                r[1] = derive::xsave_sizes(state.xcr0 & self.xcr0, &self.xsave_layout).0;
            }
            0xd if subleaf == 1 && r[0] & bit::XSAVE_XSAVEC != 0 => {
                r[1] = derive::xsave_sizes(state.xcr0 & self.xcr0, &self.xsave_layout).1;
            }
            0x8000_001e if self.max_ext >= 0x8000_001e => {
                // Extended APIC ID, compute unit (core) ID and threads per
                // unit less 1, one node (APM Vol. 3 E.4.24).
                let threads = t.threads_per_core.max(1);
                r = [vp, (vp >> t.smt_shift()) & 0xff | (threads - 1) << 8, 0, 0];
            }
            _ => {}
        }
        r
    }
}

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

/// The highest hypervisor leaf: every leaf TLFS 6.0b defines, the nested
/// ones (0x4000_0009, 0x4000_000A) as zeros.
pub const HV_MAX_FUNCTION: u32 = HvCpuidFunction::NESTED_OPTIMIZATIONS.0;

/// Leaf 0x4000_0002: Tessera's own version (0.1, build 1), not a Windows
/// release: guests are told to test features, not versions (TLFS 2.5).
pub const HV_VERSION: HvVersionInfo =
    HvVersionInfo { build_number: 1, major: 0, minor: 1, service_pack: 0, service_branch: 0, service_number: 0 };

/// Leaf 0xB ECX[15:8] level types (SDM Vol. 2A, CPUID leaf 0BH).
pub const LEVEL_INVALID: u32 = 0;
pub const LEVEL_SMT: u32 = 1;
pub const LEVEL_CORE: u32 = 2;

/// What CPUID returns to VP `vp` in `state`: the hypervisor leaves when
/// the profile has enlightenments (`guest_os_id` is the partition's
/// `HV_X64_MSR_GUEST_OS_ID`: leaf 0x4000_0002 is zero until the guest has
/// set it, TLFS 2.4.3), zeros for that range without, else the partition's
/// [`Cpuid`] with the hypervisor-present bit following the profile.
pub fn cpuid_for_vp(
    table: &Cpuid,
    profile: &EnlightenmentProfile,
    guest_os_id: u64,
    vp: u32,
    leaf: u32,
    subleaf: u32,
    state: VpState,
) -> [u32; 4] {
    if HV_CPUID_RANGE.contains(&leaf) {
        return if profile.hypervisor_present() { hypervisor_leaf(profile, guest_os_id, leaf) } else { [0; 4] };
    }
    let mut r = table.leaf(vp, leaf, subleaf, state);
    if leaf == 1 && profile.hypervisor_present() {
        r[2] |= LEAF1_ECX_HYPERVISOR;
    }
    r
}

/// Whether leaf `leaf` of VP state is needed ([`VpState`]): 1, 7 and 0xD.
pub const fn reads_vp_state(leaf: u32) -> bool {
    matches!(leaf, 1 | 7 | 0xd)
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
