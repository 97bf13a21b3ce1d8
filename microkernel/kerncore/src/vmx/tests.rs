//! Decoders against values worked out by hand from the SDM's tables.

use super::*;
use crate::intercept::{IoDirection, IoPortAccess, IoSize};
use std::format;

#[test]
fn field_encodings_match_their_group() {
    use VmcsFieldKind::*;
    use VmcsFieldWidth::*;
    let cases = [
        (VmcsField::VIRTUAL_PROCESSOR_ID, Bits16, Control, 0),
        (VmcsField::GUEST_TR_SELECTOR, Bits16, GuestState, 7),
        (VmcsField::HOST_TR_SELECTOR, Bits16, HostState, 6),
        (VmcsField::EPT_POINTER, Bits64, Control, 13),
        (VmcsField::GUEST_PHYSICAL_ADDRESS, Bits64, ReadOnlyData, 0),
        (VmcsField::VMCS_LINK_POINTER, Bits64, GuestState, 0),
        (VmcsField::GUEST_IA32_EFER, Bits64, GuestState, 3),
        (VmcsField::HOST_IA32_EFER, Bits64, HostState, 1),
        (VmcsField::SECONDARY_PROCESSOR_BASED_CONTROLS, Bits32, Control, 15),
        (VmcsField::EXIT_REASON, Bits32, ReadOnlyData, 1),
        (VmcsField::GUEST_INTERRUPTIBILITY_STATE, Bits32, GuestState, 18),
        (VmcsField::VMX_PREEMPTION_TIMER_VALUE, Bits32, GuestState, 23),
        (VmcsField::HOST_IA32_SYSENTER_CS, Bits32, HostState, 0),
        (VmcsField::CR0_GUEST_HOST_MASK, Natural, Control, 0),
        (VmcsField::EXIT_QUALIFICATION, Natural, ReadOnlyData, 0),
        (VmcsField::GUEST_LINEAR_ADDRESS, Natural, ReadOnlyData, 5),
        (VmcsField::GUEST_RIP, Natural, GuestState, 15),
        (VmcsField::GUEST_RFLAGS, Natural, GuestState, 16),
        (VmcsField::HOST_RIP, Natural, HostState, 11),
    ];
    for (field, width, kind, index) in cases {
        let e = field.encoding();
        assert_eq!((e.width(), e.kind(), e.index(), e.access_high()), (width, kind, index, false), "{field:?}");
    }
    assert_eq!(VmcsField::EPT_POINTER.high_half(), Some(VmcsField(0x201b)));
    assert_eq!(VmcsField::GUEST_RIP.high_half(), None);
    assert_eq!(format!("{:?}", VmcsField(0x681e)), "GUEST_RIP");
    assert_eq!(format!("{:?}", VmcsField(0x681f)), "VmcsField(0x681f)");
}

#[test]
fn controls_are_fitted_to_the_capability_msr() {
    // Bochs-like IA32_VMX_TRUE_PINBASED_CTLS: bits 1, 2, 4 forced on, 0-6 allowed.
    let pin = ControlCapability(0x0000_007f_0000_0016);
    let required = PinBasedControls::new().with_external_interrupt_exiting(true).with_nmi_exiting(true);
    let optional = PinBasedControls::new().with_activate_preemption_timer(true);
    let adjusted = pin.adjust(required, optional).unwrap();
    assert_eq!(u32::from(adjusted), 0x5f);
    assert!(pin.allows(adjusted.into()));
    let posted = PinBasedControls::new().with_process_posted_interrupts(true);
    assert_eq!(pin.adjust(posted, PinBasedControls::new()), Err(UnsupportedControls { missing: 0x80 }));

    // Primary controls: optional tertiary controls (bit 17) are not allowed and drop out.
    let proc = ControlCapability(0xfff9_fffe_0401_e172);
    let required =
        PrimaryControls::new().with_hlt_exiting(true).with_use_io_bitmaps(true).with_activate_secondary_controls(true);
    let optional = PrimaryControls::new().with_activate_tertiary_controls(true);
    let adjusted = proc.adjust(required, optional).unwrap();
    assert_eq!(u32::from(adjusted), 0x8601_e1f2);
    assert!(!adjusted.activate_tertiary_controls() && adjusted.activate_secondary_controls());
    assert!(!proc.allows(0x8601_e1f2 & !0x0400_0000), "a default1 bit left clear");

    let exit = ExitControls::new().with_host_address_space_size(true).with_load_ia32_efer(true);
    assert_eq!(u32::from(exit), 0x0020_0200);
    let entry = EntryControls::new().with_ia32e_mode_guest(true).with_load_ia32_efer(true);
    assert_eq!(u32::from(entry), 0x0000_8200);
}

#[test]
fn basic_msr_and_fixed_bits() {
    let basic = VmxBasic::from(0x00da_0400_0000_0001);
    assert_eq!(basic.vmcs_revision(), 1);
    assert_eq!(basic.vmcs_size(), 0x400);
    assert_eq!(basic.vmcs_memory_type(), 6);
    assert!(basic.true_controls() && basic.ins_outs_exit_information());
    assert!(!basic.no_error_code_consistency_check());
    // CR0 FIXED0 = PG|NE|PE, FIXED1 = all ones: CR0.ET alone becomes PG|NE|ET|PE.
    assert_eq!(apply_fixed_bits(0x10, 0x8000_0021, 0xffff_ffff), 0x8000_0031);
    // CR4 FIXED0 = VMXE; FIXED1 without bit 22 clears it.
    assert_eq!(apply_fixed_bits(0x40_0020, 0x2000, !0x40_0000), 0x2020);
}

#[test]
fn exit_reason_field() {
    let e = ExitReasonField::from(48);
    assert_eq!((e.basic(), e.entry_failure()), (ExitReason::EPT_VIOLATION, false));
    let failed = ExitReasonField::from(0x8000_0021);
    assert_eq!((failed.basic(), failed.entry_failure()), (ExitReason::ENTRY_FAILURE_INVALID_GUEST_STATE, true));
    assert_eq!(format!("{:?}", ExitReason(18)), "VMCALL");
    assert_eq!(format!("{:?}", ExitReason(35)), "ExitReason(0x23)");
}

#[test]
fn instructions_not_offered_are_the_vmx_ones_getsec_and_monitor_mwait() {
    let not_offered: std::vec::Vec<_> =
        (0..=u16::MAX).map(ExitReason).filter(|r| r.is_not_offered_instruction()).filter_map(|r| r.name()).collect();
    let expected = [
        "GETSEC", "VMCLEAR", "VMLAUNCH", "VMPTRLD", "VMPTRST", "VMREAD", "VMRESUME", "VMWRITE", "VMXOFF", "VMXON",
        "MWAIT", "MONITOR", "INVEPT", "INVVPID", "VMFUNC",
    ];
    assert_eq!(not_offered, expected);
    for reason in [ExitReason::VMCALL, ExitReason::CPUID, ExitReason::RDPMC, ExitReason::MONITOR_TRAP_FLAG] {
        assert!(!reason.is_not_offered_instruction(), "{reason:?}");
    }
}

#[test]
fn io_qualification() {
    // OUT 0x80, AL: 1 byte, OUT, immediate port.
    let q = IoQualification::from(0x0080_0040);
    assert!(q.immediate_operand());
    assert_eq!(
        q.access(),
        Some(IoPortAccess { port: 0x80, size: IoSize::Byte, direction: IoDirection::Out, string: false, rep: false })
    );
    // IN EAX, DX with DX = 0xcfc.
    let q = IoQualification::from(0x0cfc_000b);
    assert!(!q.immediate_operand());
    assert_eq!(
        q.access(),
        Some(IoPortAccess { port: 0xcfc, size: IoSize::Dword, direction: IoDirection::In, string: false, rep: false })
    );
    // IN AX, DX with DX = 0x1f0.
    assert_eq!(
        IoQualification::from(0x01f0_0009).access().map(|a| (a.size, a.direction)),
        Some((IoSize::Word, IoDirection::In))
    );
    // REP OUTSB to 0x3f8.
    let a = IoQualification::from(0x03f8_0030).access().unwrap();
    assert!(a.string && a.rep && a.port == 0x3f8 && a.direction == IoDirection::Out);
    // Size code 2 is not defined.
    assert_eq!(IoQualification::from(0x0080_0002).access(), None);
}

#[test]
fn ept_violation_qualification() {
    // A write through a linear address to a page mapped R-X.
    let q = EptViolationQualification::from(0x1aa);
    assert!(q.data_write() && !q.data_read() && !q.instruction_fetch());
    assert!(q.readable() && !q.writable() && q.executable());
    assert!(q.linear_address_valid() && q.access_to_translation() && !q.during_guest_page_walk());
    // A fetch from an unmapped page.
    let q = EptViolationQualification::from(0x184);
    assert!(q.instruction_fetch() && !q.readable() && !q.writable() && !q.executable());
    // A read of a guest page-table entry during the guest's own walk.
    let q = EptViolationQualification::from(0x81);
    assert!(q.data_read() && q.during_guest_page_walk());
    // The IRET NMI-unblocking bit.
    assert!(EptViolationQualification::from(0x1000).nmi_unblocking_due_to_iret());
    assert!(!EptViolationQualification::from(0x1).during_guest_page_walk(), "no linear address, nothing known");
}

#[test]
fn cr_access_qualification() {
    // MOV CR3, RAX.
    let q = CrAccessQualification::from(0x3);
    assert_eq!((q.cr(), q.access_type(), q.gpr()), (3, CrAccessType::MovToCr, Gpr::Rax));
    // MOV RBX, CR3.
    let q = CrAccessQualification::from(0x313);
    assert_eq!((q.cr(), q.access_type(), q.gpr()), (3, CrAccessType::MovFromCr, Gpr::Rbx));
    // MOV CR4, R12.
    let q = CrAccessQualification::from(0xc04);
    assert_eq!((q.cr(), q.access_type(), q.gpr()), (4, CrAccessType::MovToCr, Gpr::R12));
    // CLTS.
    assert_eq!(CrAccessQualification::from(0x20).access_type(), CrAccessType::Clts);
    // LMSW from memory with source 0x0001.
    let q = CrAccessQualification::from(0x1_0070);
    assert_eq!((q.access_type(), q.lmsw_memory_operand(), q.lmsw_source()), (CrAccessType::Lmsw, true, 1));
}

#[test]
fn interruption_information() {
    // #GP with an error code, to inject.
    let gp = InterruptionInfo::new()
        .with_vector(13)
        .with_interruption_type(InterruptionType::HARDWARE_EXCEPTION)
        .with_deliver_error_code(true)
        .with_valid(true);
    assert_eq!(u32::from(gp), 0x8000_0b0d);
    let nmi = InterruptionInfo::from(0x8000_0202);
    assert_eq!((nmi.vector(), nmi.interruption_type(), nmi.valid()), (2, InterruptionType::NMI, true));
    assert_eq!(format!("{:?}", VmInstructionError(7)), "ENTRY_INVALID_CONTROL_FIELDS");
}
