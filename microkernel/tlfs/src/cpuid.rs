//! The hypervisor CPUID leaves 0x4000_0000..=0x4000_000A (TLFS 2.3, 2.4) and
//! the partition privilege mask they report (TLFS 4.2.2).
//!
//! Each register with bit fields is a `#[bitfield(u32)]` (or `u64`) with
//! every reserved field declared; `into_bits()` is the register value.
//!
//! TLFS 6.0b prints `HV_PARTITION_PRIVILEGE_MASK` with its line breaks
//! scrambled and `AccessIntrCtrlRegs` without a type; counting the fields
//! in order gives 32 bits in each half, the layout of the Hyper-V headers
//! (and of Linux's `hyperv-tlfs.h`), which this module follows.

use abi::open_enum;
use bitfield_struct::bitfield;

open_enum! {
    /// Hypervisor CPUID leaves (TLFS 2.4).
    pub struct HvCpuidFunction(u32) {
        /// EAX: the highest hypervisor leaf; EBX, ECX, EDX: the vendor.
        VENDOR_AND_MAX_FUNCTIONS = 0x4000_0000,
        /// EAX: the interface signature, [`HV_CPUID_INTERFACE_SIGNATURE`].
        INTERFACE = 0x4000_0001,
        /// Hypervisor system identity: [`HvVersionInfo`].
        VERSION = 0x4000_0002,
        /// EAX, EBX: [`HvPartitionPrivilegeMask`]; EDX: [`HvFeaturesEdx`].
        FEATURES = 0x4000_0003,
        /// EAX: [`HvEnlightenmentInformation`]; EBX: spinlock retries; ECX:
        /// [`HvEnlightenmentInformationEcx`].
        ENLIGHTENMENT_INFORMATION = 0x4000_0004,
        /// Implementation limits: [`HvImplementationLimits`].
        IMPLEMENTATION_LIMITS = 0x4000_0005,
        /// EAX: [`HvHardwareFeatures`].
        HARDWARE_FEATURES = 0x4000_0006,
        /// Root-partition CPU management features: [`HvCpuManagementFeaturesEax`].
        CPU_MANAGEMENT_FEATURES = 0x4000_0007,
        /// Shared virtual memory: [`HvSvmFeatures`].
        SVM_FEATURES = 0x4000_0008,
        /// Nested hypervisor features: [`HvNestedFeaturesEax`], [`HvNestedFeaturesEdx`].
        NESTED_FEATURES = 0x4000_0009,
        /// Nested virtualization optimizations: [`HvNestedOptimizations`].
        NESTED_OPTIMIZATIONS = 0x4000_000A,
    }
}

/// The first and last leaf of the range whose semantics the interface
/// signature determines (TLFS 2.3).
pub const HV_CPUID_RANGE: core::ops::RangeInclusive<u32> = 0x4000_0000..=0x4000_00FF;
/// On Microsoft hypervisors the highest leaf is at least this (TLFS 2.4.1).
pub const HV_CPUID_MIN_MAX_FUNCTION: u32 = 0x4000_0005;

/// The vendor ID of leaf 0x4000_0000 on Microsoft hypervisors: "Microsoft
/// Hv", in EBX, ECX, EDX order.
pub const HV_CPUID_VENDOR_MICROSOFT: [u8; 12] = *b"Microsoft Hv";
/// `"Hv#1"` (0x3123_7648), EAX of leaf 0x4000_0001.
pub const HV_CPUID_INTERFACE_SIGNATURE: u32 = u32::from_le_bytes(*b"Hv#1");

/// EBX, ECX, EDX of leaf 0x4000_0000 for a 12-byte vendor ID.
pub const fn vendor_registers(vendor: [u8; 12]) -> [u32; 3] {
    let v = vendor;
    [
        u32::from_le_bytes([v[0], v[1], v[2], v[3]]),
        u32::from_le_bytes([v[4], v[5], v[6], v[7]]),
        u32::from_le_bytes([v[8], v[9], v[10], v[11]]),
    ]
}

/// Leaf 0x4000_0002 (TLFS 2.4.3): EAX build number, EBX major.minor, ECX
/// service pack, EDX service branch and number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HvVersionInfo {
    pub build_number: u32,
    pub major: u16,
    pub minor: u16,
    pub service_pack: u32,
    pub service_branch: u8,
    /// 24 bits; higher bits are dropped by [`HvVersionInfo::registers`].
    pub service_number: u32,
}

impl HvVersionInfo {
    /// EAX, EBX, ECX, EDX.
    pub const fn registers(self) -> [u32; 4] {
        [
            self.build_number,
            (self.major as u32) << 16 | self.minor as u32,
            self.service_pack,
            (self.service_branch as u32) << 24 | (self.service_number & 0x00ff_ffff),
        ]
    }
}

/// `HV_PARTITION_PRIVILEGE_MASK` (TLFS 4.2.2): which synthetic MSRs (low
/// half) and hypercalls (high half) a partition may use. Leaf 0x4000_0003
/// reports the low half in EAX and the high half in EBX.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct HvPartitionPrivilegeMask {
    // Access to virtual MSRs.
    /// `HV_X64_MSR_VP_RUNTIME`.
    pub access_vp_run_time_reg: bool,
    /// `HV_X64_MSR_TIME_REF_COUNT`.
    pub access_partition_reference_counter: bool,
    /// The SynIC MSRs (`SCONTROL`..`EOM`, `SINT0`..`SINT15`).
    pub access_synic_regs: bool,
    /// The synthetic timer MSRs.
    pub access_synthetic_timer_regs: bool,
    /// `HV_X64_MSR_EOI`, `ICR`, `TPR` (and `VP_ASSIST_PAGE`, "AccessApicMsrs"
    /// in Appendix C).
    pub access_intr_ctrl_regs: bool,
    /// `HV_X64_MSR_GUEST_OS_ID` and `HV_X64_MSR_HYPERCALL`.
    pub access_hypercall_msrs: bool,
    /// `HV_X64_MSR_VP_INDEX`.
    pub access_vp_index: bool,
    /// `HV_X64_MSR_RESET`.
    pub access_reset_reg: bool,
    /// The statistics-page MSRs.
    pub access_stats_reg: bool,
    /// `HV_X64_MSR_REFERENCE_TSC`.
    pub access_partition_reference_tsc: bool,
    /// `HV_X64_MSR_GUEST_IDLE`.
    pub access_guest_idle_reg: bool,
    /// `HV_X64_MSR_TSC_FREQUENCY` and `HV_X64_MSR_APIC_FREQUENCY`.
    pub access_frequency_regs: bool,
    /// The guest debugging MSRs.
    pub access_debug_regs: bool,
    /// The reenlightenment MSRs (TLFS 16.6).
    pub access_reenlightenment_controls: bool,
    #[bits(18)]
    pub reserved1: u32,
    // Access to hypercalls.
    pub create_partitions: bool,
    pub access_partition_id: bool,
    pub access_memory_pool: bool,
    pub reserved_35: bool,
    pub post_messages: bool,
    pub signal_events: bool,
    pub create_port: bool,
    pub connect_port: bool,
    pub access_stats: bool,
    #[bits(2)]
    pub reserved2: u8,
    pub debugging: bool,
    pub cpu_management: bool,
    pub reserved_45: bool,
    pub reserved_46: bool,
    pub reserved_47: bool,
    pub access_vsm: bool,
    pub access_vp_registers: bool,
    pub reserved_50: bool,
    pub reserved_51: bool,
    pub enable_extended_hypercalls: bool,
    pub start_virtual_processor: bool,
    #[bits(10)]
    pub reserved3: u16,
}

impl HvPartitionPrivilegeMask {
    /// The bits TLFS defines.
    pub const DEFINED_BITS: u64 = 0x0033_19f7_0000_3fff;

    /// EAX and EBX of leaf 0x4000_0003.
    pub const fn registers(self) -> [u32; 2] {
        let bits = self.into_bits();
        [bits as u32, (bits >> 32) as u32]
    }
}

/// Leaf 0x4000_0003 EDX: features available to the partition (TLFS 2.4.4).
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct HvFeaturesEdx {
    /// Deprecated (MWAIT availability).
    pub deprecated_mwait: bool,
    pub guest_debugging_available: bool,
    pub performance_monitor_available: bool,
    pub cpu_dynamic_partitioning_available: bool,
    pub xmm_registers_for_fast_hypercall_available: bool,
    pub guest_idle_available: bool,
    pub hypervisor_sleep_state_available: bool,
    pub numa_distance_query_available: bool,
    /// `HV_X64_MSR_TSC_FREQUENCY` and `HV_X64_MSR_APIC_FREQUENCY` are there.
    pub frequency_regs_available: bool,
    pub synthetic_machine_check_available: bool,
    /// `HV_X64_MSR_CRASH_P0..P4` and `HV_X64_MSR_CRASH_CTL` (TLFS 4.3).
    pub guest_crash_regs_available: bool,
    pub debug_regs_available: bool,
    pub npiep_available: bool,
    pub disable_hypervisor_available: bool,
    pub extended_gva_ranges_for_flush_virtual_address_list_available: bool,
    pub fast_hypercall_output_available: bool,
    pub reserved_16: bool,
    pub sint_polling_mode_available: bool,
    /// The Locked bit of `HV_X64_MSR_HYPERCALL` is implemented.
    pub hypercall_msr_lock_available: bool,
    pub direct_synthetic_timers: bool,
    pub register_pat_available: bool,
    pub register_bndcfgs_available: bool,
    pub reserved_22: bool,
    pub synthetic_time_unhalted_timer_available: bool,
    #[bits(2)]
    pub reserved_24: u8,
    pub lbr_available: bool,
    #[bits(5)]
    pub reserved_27: u8,
}

/// Leaf 0x4000_0004 EAX: implementation recommendations (TLFS 2.4.5).
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct HvEnlightenmentInformation {
    pub use_hypercall_for_address_space_switch: bool,
    pub use_hypercall_for_local_flush: bool,
    /// Use `HvFlushVirtualAddressSpace`/`List` instead of IPIs.
    pub use_hypercall_for_remote_flush: bool,
    /// Use `HV_X64_MSR_EOI`/`ICR`/`TPR` instead of the APIC page.
    pub use_apic_msrs: bool,
    /// Use `HV_X64_MSR_RESET` to reset the system.
    pub use_hv_register_for_reset: bool,
    /// Disable watchdogs that rely on timely interrupt delivery.
    pub use_relaxed_timing: bool,
    pub use_dma_remapping: bool,
    pub use_interrupt_remapping: bool,
    pub reserved_8: bool,
    pub deprecate_auto_eoi: bool,
    /// Use `HvSendSyntheticClusterIpi`.
    pub use_synthetic_cluster_ipi: bool,
    /// Use the `Ex` forms (sparse processor sets) of the flush and IPI calls.
    pub use_ex_processor_masks: bool,
    pub nested: bool,
    pub use_int_for_mbec_system_calls: bool,
    pub use_vmcs_enlightenments: bool,
    pub use_synced_timeline: bool,
    pub reserved_16: bool,
    pub use_direct_local_flush_entire: bool,
    pub no_non_architectural_core_sharing: bool,
    #[bits(13)]
    pub reserved_19: u16,
}

/// Leaf 0x4000_0004 EBX: never notify the hypervisor of long spin waits.
pub const HV_SPINLOCK_RETRIES_NEVER_NOTIFY: u32 = 0xffff_ffff;

/// Leaf 0x4000_0004 ECX.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct HvEnlightenmentInformationEcx {
    /// MAXPHYADDR of the physical processors; 0: not reported.
    #[bits(7)]
    pub implemented_physical_address_bits: u8,
    #[bits(25)]
    pub reserved: u32,
}

/// Leaf 0x4000_0005 (TLFS 2.4.6); zero means "not exposed".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HvImplementationLimits {
    /// EAX.
    pub max_virtual_processors: u32,
    /// EBX.
    pub max_logical_processors: u32,
    /// ECX: physical interrupt vectors for interrupt remapping.
    pub max_interrupt_vectors: u32,
}

impl HvImplementationLimits {
    /// EAX, EBX, ECX, EDX (reserved, 0).
    pub const fn registers(self) -> [u32; 4] {
        [self.max_virtual_processors, self.max_logical_processors, self.max_interrupt_vectors, 0]
    }
}

/// Leaf 0x4000_0006 EAX: hardware features detected and in use (TLFS 2.4.7).
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct HvHardwareFeatures {
    pub apic_overlay_assist_in_use: bool,
    pub msr_bitmaps_in_use: bool,
    pub architectural_performance_counters_in_use: bool,
    /// EPT or NPT.
    pub second_level_address_translation_in_use: bool,
    pub dma_remapping_in_use: bool,
    pub interrupt_remapping_in_use: bool,
    pub memory_patrol_scrubber_present: bool,
    pub dma_protection_in_use: bool,
    pub hpet_requested: bool,
    pub synthetic_timers_volatile: bool,
    #[bits(22)]
    pub reserved: u32,
}

/// Leaf 0x4000_0007 EAX (root partition only, TLFS 2.4.8).
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct HvCpuManagementFeaturesEax {
    pub start_logical_processor: bool,
    pub create_root_virtual_processor: bool,
    pub performance_counter_sync: bool,
    #[bits(28)]
    pub reserved: u32,
    pub reserved_identity_bit: bool,
}

/// Leaf 0x4000_0007 EBX.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct HvCpuManagementFeaturesEbx {
    pub processor_power_management: bool,
    pub mwait_idle_states: bool,
    pub logical_processor_idling: bool,
    #[bits(29)]
    pub reserved: u32,
}

/// Leaf 0x4000_0007 ECX.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct HvCpuManagementFeaturesEcx {
    pub remap_guest_uncached: bool,
    #[bits(31)]
    pub reserved: u32,
}

/// Leaf 0x4000_0008 EAX (TLFS 2.4.9).
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct HvSvmFeatures {
    pub svm_supported: bool,
    #[bits(10)]
    pub reserved0: u16,
    #[bits(21)]
    pub max_pasid_space_pasid_count: u32,
}

/// Leaf 0x4000_0009 EAX: virtual MSRs available when nested (TLFS 2.4.10).
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct HvNestedFeaturesEax {
    #[bits(2)]
    pub reserved_0: u8,
    pub access_synic_regs: bool,
    pub reserved_3: bool,
    pub access_intr_ctrl_regs: bool,
    pub access_hypercall_msrs: bool,
    pub access_vp_index: bool,
    #[bits(5)]
    pub reserved_7: u8,
    pub access_reenlightenment_controls: bool,
    #[bits(19)]
    pub reserved_13: u32,
}

/// Leaf 0x4000_0009 EDX: hypercall features available when nested.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct HvNestedFeaturesEdx {
    #[bits(4)]
    pub reserved_0: u8,
    pub xmm_registers_for_fast_hypercall_available: bool,
    #[bits(10)]
    pub reserved_5: u16,
    pub fast_hypercall_output_available: bool,
    pub reserved_16: bool,
    pub sint_polling_mode_available: bool,
    #[bits(14)]
    pub reserved_18: u16,
}

/// Leaf 0x4000_000A EAX (TLFS 2.4.11).
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct HvNestedOptimizations {
    pub enlightened_vmcs_version_low: u8,
    pub enlightened_vmcs_version_high: u8,
    pub reserved_16: bool,
    pub direct_virtual_flush: bool,
    pub flush_guest_physical_address: bool,
    pub enlightened_msr_bitmap: bool,
    pub combine_virtualization_exceptions: bool,
    #[bits(11)]
    pub reserved_21: u16,
}

#[cfg(test)]
mod tests;
