//! Decoding what the CPU offers for virtualization, from raw CPUID and MSR
//! values the arch layer reads. Intel: SDM Vol. 3 Appendix A. AMD: APM
//! Vol. 2 §15 and CPUID Fn8000_000A.

use crate::vmx::{ControlCapability, PinBasedControls, PrimaryControls, VmxBasic};
use bitfield_struct::bitfield;
use core::fmt;

/// IA32_VMX_PROCBASED_CTLS2, allowed-1 half (SDM A.3.3, Table 25-7).
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct SecondaryControls {
    pub virtualize_apic_accesses: bool,
    pub enable_ept: bool,
    pub descriptor_table_exiting: bool,
    pub enable_rdtscp: bool,
    pub virtualize_x2apic: bool,
    pub enable_vpid: bool,
    pub wbinvd_exiting: bool,
    pub unrestricted_guest: bool,
    pub apic_register_virtualization: bool,
    pub virtual_interrupt_delivery: bool,
    pub pause_loop_exiting: bool,
    pub rdrand_exiting: bool,
    pub enable_invpcid: bool,
    pub enable_vmfunc: bool,
    pub vmcs_shadowing: bool,
    pub encls_exiting: bool,
    pub rdseed_exiting: bool,
    pub enable_pml: bool,
    pub ept_violation_ve: bool,
    pub conceal_vmx_from_pt: bool,
    pub enable_xsaves: bool,
    pub pasid_translation: bool,
    pub mode_based_execute_control: bool,
    pub sub_page_write_permissions: bool,
    pub pt_uses_guest_physical: bool,
    pub tsc_scaling: bool,
    pub user_wait_pause: bool,
    pub enable_pconfig: bool,
    pub enable_enclv_exiting: bool,
    #[bits(3)]
    pub _reserved: u8,
}

/// IA32_VMX_EPT_VPID_CAP (SDM A.10).
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct EptVpidCap {
    pub execute_only: bool,
    #[bits(5)]
    pub _reserved0: u8,
    pub page_walk_4: bool,
    pub page_walk_5: bool,
    pub memory_type_uc: bool,
    #[bits(5)]
    pub _reserved1: u8,
    pub memory_type_wb: bool,
    pub _reserved2: bool,
    pub pde_2mb: bool,
    pub pdpte_1gb: bool,
    #[bits(2)]
    pub _reserved3: u8,
    pub invept: bool,
    pub accessed_dirty: bool,
    pub advanced_exit_info: bool,
    pub supervisor_shadow_stack: bool,
    pub _reserved4: bool,
    pub invept_single_context: bool,
    pub invept_all_context: bool,
    #[bits(5)]
    pub _reserved5: u8,
    pub invvpid: bool,
    #[bits(7)]
    pub _reserved6: u8,
    pub invvpid_individual_address: bool,
    pub invvpid_single_context: bool,
    pub invvpid_all_context: bool,
    pub invvpid_single_context_retaining_globals: bool,
    #[bits(20)]
    pub _reserved7: u32,
}

/// CPUID Fn8000_000A EDX: SVM features (APM Vol. 3, Appendix E).
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct SvmFeatures {
    pub nested_paging: bool,
    pub lbr_virtualization: bool,
    pub svm_lock: bool,
    pub nrip_save: bool,
    pub tsc_rate_msr: bool,
    pub vmcb_clean: bool,
    pub flush_by_asid: bool,
    pub decode_assists: bool,
    #[bits(2)]
    pub _reserved0: u8,
    pub pause_filter: bool,
    pub _reserved1: bool,
    pub pause_filter_threshold: bool,
    pub avic: bool,
    pub _reserved2: bool,
    pub vmsave_virtualization: bool,
    pub vgif: bool,
    pub gmet: bool,
    #[bits(14)]
    pub _reserved3: u16,
}

/// What a VMX-capable CPU offers, as far as Tessera cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmxCaps {
    pub vmcs_revision: u32,
    pub secondary: SecondaryControls,
    /// `None` when the CPU has no secondary controls, and so no EPT.
    pub ept_vpid: Option<EptVpidCap>,
    pub preemption_timer: bool,
}

impl VmxCaps {
    /// From IA32_VMX_BASIC, the (TRUE_)PINBASED and (TRUE_)PROCBASED control
    /// MSRs. PROCBASED_CTLS2 is read (through `read_ctls2`) only when
    /// secondary controls exist, and EPT_VPID_CAP (`read_ept_vpid`) only
    /// when EPT or VPID does: reading an absent MSR raises #GP.
    pub fn decode(
        basic: u64,
        pinbased: u64,
        procbased: u64,
        read_ctls2: impl FnOnce() -> u64,
        read_ept_vpid: impl FnOnce() -> u64,
    ) -> Self {
        let allowed1 = |msr: u64| ControlCapability(msr).may_be_one();
        let has_secondary = PrimaryControls::from(allowed1(procbased)).activate_secondary_controls();
        let (secondary, ept_vpid) = if has_secondary {
            let secondary = SecondaryControls::from(allowed1(read_ctls2()));
            let ept_vpid =
                (secondary.enable_ept() || secondary.enable_vpid()).then(|| EptVpidCap::from(read_ept_vpid()));
            (secondary, ept_vpid)
        } else {
            (SecondaryControls::new(), None)
        };
        VmxCaps {
            vmcs_revision: VmxBasic::from(basic).vmcs_revision(),
            secondary,
            ept_vpid,
            preemption_timer: PinBasedControls::from(allowed1(pinbased)).activate_preemption_timer(),
        }
    }

    /// EPT that Tessera can use: 4-level walks with write-back tables.
    pub fn has_usable_ept(&self) -> bool {
        self.secondary.enable_ept()
            && self.ept_vpid.is_some_and(|c| c.page_walk_4() && c.memory_type_wb() && c.invept())
    }
}

/// What an SVM-capable CPU offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SvmCaps {
    pub revision: u8,
    pub asids: u32,
    pub features: SvmFeatures,
}

impl SvmCaps {
    /// From CPUID Fn8000_000A EAX, EBX and EDX.
    pub fn decode(eax: u32, ebx: u32, edx: u32) -> Self {
        SvmCaps { revision: eax as u8, asids: ebx, features: SvmFeatures::from(edx) }
    }
}

/// The virtualization extension found, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirtSupport {
    Vmx(VmxCaps),
    Svm(SvmCaps),
    /// The CPU has the extension but firmware locked it off.
    DisabledByFirmware(&'static str),
    None,
}

impl VirtSupport {
    /// True if Tessera can run guests with second-level paging here.
    pub fn can_run_guests(&self) -> bool {
        match self {
            VirtSupport::Vmx(v) => v.has_usable_ept(),
            VirtSupport::Svm(s) => s.features.nested_paging(),
            _ => false,
        }
    }
}

/// Writes `name` for each true flag, comma-separated, and the false ones as "no X".
fn flags(f: &mut fmt::Formatter<'_>, items: &[(&str, bool)]) -> fmt::Result {
    for (i, (name, on)) in items.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        if *on {
            write!(f, "{sep}{name}")?;
        } else {
            write!(f, "{sep}no {name}")?;
        }
    }
    Ok(())
}

impl fmt::Display for VirtSupport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VirtSupport::Vmx(v) => {
                let ept = v.ept_vpid.unwrap_or_default();
                let s = v.secondary;
                if v.has_usable_ept() {
                    write!(f, "Intel VMX with EPT (VMCS rev {:#x}; ", v.vmcs_revision)?;
                } else {
                    write!(f, "Intel VMX without usable EPT (VMCS rev {:#x}; ", v.vmcs_revision)?;
                }
                flags(
                    f,
                    &[
                        ("VPID", s.enable_vpid()),
                        ("unrestricted guest", s.unrestricted_guest()),
                        ("2M pages", ept.pde_2mb()),
                        ("1G pages", ept.pdpte_1gb()),
                        ("A/D bits", ept.accessed_dirty()),
                        ("INVVPID", ept.invvpid()),
                        ("preemption timer", v.preemption_timer),
                        ("VMFUNC", s.enable_vmfunc()),
                        ("#VE", s.ept_violation_ve()),
                        ("PML", s.enable_pml()),
                        ("MBEC", s.mode_based_execute_control()),
                    ],
                )?;
                write!(f, ")")
            }
            VirtSupport::Svm(s) => {
                let n = s.features;
                let paging = if n.nested_paging() { "with NPT" } else { "without NPT" };
                write!(f, "AMD SVM {paging} (rev {}, {} ASIDs; ", s.revision, s.asids)?;
                flags(
                    f,
                    &[
                        ("nRIP save", n.nrip_save()),
                        ("decode assists", n.decode_assists()),
                        ("VMCB clean bits", n.vmcb_clean()),
                        ("flush by ASID", n.flush_by_asid()),
                        ("vGIF", n.vgif()),
                        ("AVIC", n.avic()),
                        ("pause filter", n.pause_filter()),
                    ],
                )?;
                write!(f, ")")
            }
            VirtSupport::DisabledByFirmware(what) => {
                write!(f, "{what} present but disabled by firmware")
            }
            VirtSupport::None => write!(f, "no hardware virtualization (neither VMX nor SVM)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::ToString;

    /// Capability MSR values as Bochs' corei7_haswell_4770 reports them (shape, not bytes).
    fn haswell_like() -> VmxCaps {
        let basic = 0x00da_0400_0000_0001;
        let pinbased = 0x0000_007f_0000_0016;
        let procbased = 0xfff9_fffe_0401_e172;
        let ctls2 = SecondaryControls::new()
            .with_enable_ept(true)
            .with_enable_vpid(true)
            .with_unrestricted_guest(true)
            .with_enable_vmfunc(true)
            .with_ept_violation_ve(true);
        let cap = EptVpidCap::new()
            .with_execute_only(true)
            .with_page_walk_4(true)
            .with_memory_type_wb(true)
            .with_pde_2mb(true)
            .with_pdpte_1gb(true)
            .with_invept(true)
            .with_accessed_dirty(true)
            .with_invvpid(true);
        VmxCaps::decode(basic, pinbased, procbased, || u64::from(u32::from(ctls2)) << 32, || cap.into())
    }

    #[test]
    fn vmx_with_ept_is_recognised() {
        let caps = haswell_like();
        assert_eq!(caps.vmcs_revision, 1);
        assert!(caps.preemption_timer);
        assert!(caps.has_usable_ept());
        let text = VirtSupport::Vmx(caps).to_string();
        assert!(text.starts_with("Intel VMX with EPT (VMCS rev 0x1; VPID, unrestricted guest, 2M pages"), "{text}");
        assert!(text.contains("no PML") && text.contains("no MBEC"), "{text}");
    }

    #[test]
    fn vmx_without_secondary_controls_has_no_ept() {
        let mut read = false;
        let caps = VmxCaps::decode(
            1,
            0,
            0x0000_0000_0401_e172,
            || {
                read = true;
                u64::MAX
            },
            || u64::MAX,
        );
        assert!(!read, "secondary MSRs must not be read when they do not exist (#GP)");
        assert!(!caps.has_usable_ept());
        assert!(!VirtSupport::Vmx(caps).can_run_guests());
        assert!(VirtSupport::Vmx(caps).to_string().starts_with("Intel VMX without usable EPT"));
    }

    #[test]
    fn ept_vpid_cap_is_not_read_without_ept_or_vpid() {
        let ctls2 = SecondaryControls::new().with_unrestricted_guest(true);
        let caps = VmxCaps::decode(1, 0, 1 << 63, || u64::from(u32::from(ctls2)) << 32, || panic!("#GP"));
        assert_eq!(caps.ept_vpid, None);
        assert!(caps.secondary.unrestricted_guest());
    }

    #[test]
    fn ept_without_write_back_is_unusable() {
        let ctls2 = SecondaryControls::new().with_enable_ept(true);
        let cap = EptVpidCap::new().with_page_walk_4(true).with_invept(true);
        let caps = VmxCaps::decode(1, 0, 1 << 63, || u64::from(u32::from(ctls2)) << 32, || cap.into());
        assert!(!caps.has_usable_ept());
    }

    #[test]
    fn svm_as_qemu_tcg_reports_it() {
        // qemu64,+svm,+npt: revision 1, 16 ASIDs, nested paging only.
        let caps = SvmCaps::decode(1, 16, 1);
        let support = VirtSupport::Svm(caps);
        assert!(support.can_run_guests());
        assert_eq!(
            support.to_string(),
            "AMD SVM with NPT (rev 1, 16 ASIDs; no nRIP save, no decode assists, no VMCB clean bits, \
             no flush by ASID, no vGIF, no AVIC, no pause filter)"
        );
        let with_vgif = SvmCaps::decode(1, 16, 1 | 1 << 16 | 1 << 3);
        assert!(with_vgif.features.vgif() && with_vgif.features.nrip_save());
    }

    #[test]
    fn svm_without_npt_cannot_run_guests() {
        let support = VirtSupport::Svm(SvmCaps::decode(1, 16, 0));
        assert!(!support.can_run_guests());
        assert!(support.to_string().starts_with("AMD SVM without NPT"));
        assert!(!VirtSupport::None.can_run_guests());
        assert_eq!(VirtSupport::DisabledByFirmware("AMD SVM").to_string(), "AMD SVM present but disabled by firmware");
    }
}
