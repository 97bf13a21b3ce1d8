//! Layout and decoders against values worked out by hand from the APM.

use super::*;
use crate::intercept::{IoDirection, IoPortAccess, IoSize};
use std::format;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
}

#[test]
fn vmcb_fields_land_at_their_offsets() {
    let mut vmcb = Vmcb::new_zeroed();
    vmcb.control.intercepts2 = GeneralIntercepts2::new().with_vmrun(true).with_vmmcall(true);
    vmcb.control.intercepts1 = GeneralIntercepts1::new().with_cpuid(true).with_hlt(true).with_ioio_prot(true);
    vmcb.control.guest_asid = 1;
    vmcb.control.nested_control = NestedControl::new().with_np_enable(true);
    vmcb.control.n_cr3 = 0x10_0000;
    vmcb.control.tlb_control = TlbControl::FLUSH_ALL;
    vmcb.save.efer = EFER_SVME;
    vmcb.save.rip = 0x7c00;
    vmcb.save.rax = 0xdead_beef;
    vmcb.save.cs = VmcbSegment {
        selector: 8,
        attributes: SegmentAttributes::new()
            .with_segment_type(0xb)
            .with_code_or_data(true)
            .with_present(true)
            .with_long_mode(true),
        limit: 0xffff_ffff,
        base: 0,
    };
    let bytes = vmcb.as_bytes();
    assert_eq!(bytes.len(), 4096);
    assert_eq!(u32::from_le_bytes(bytes[0x00c..0x010].try_into().unwrap()), 0x0804_0000 | 0x0004_0000 | 0x0100_0000);
    assert_eq!(bytes[0x010], 0b11);
    assert_eq!(bytes[0x058], 1);
    assert_eq!(bytes[0x05c], 1);
    assert_eq!(u64_at(bytes, 0x090), 1);
    assert_eq!(u64_at(bytes, 0x0b0), 0x10_0000);
    assert_eq!(u64_at(bytes, 0x4d0), 0x1000);
    assert_eq!(u64_at(bytes, 0x578), 0x7c00);
    assert_eq!(u64_at(bytes, 0x5f8), 0xdead_beef);
    // CS: selector 8, attributes 0x029b (type B, S, P, L), limit, base.
    assert_eq!(&bytes[0x410..0x418], &[8, 0, 0x9b, 0x02, 0xff, 0xff, 0xff, 0xff]);

    // The CPU writes the exit information; the struct reads it back.
    let mut page = vmcb.as_bytes().to_vec();
    page[0x070..0x078].copy_from_slice(&0x7bu64.to_le_bytes());
    page[0x078..0x080].copy_from_slice(&0x0080_0010u64.to_le_bytes());
    page[0x080..0x088].copy_from_slice(&0x7c02u64.to_le_bytes());
    let after = Vmcb::read_from_bytes(&page).unwrap();
    assert_eq!(after.control.exit_code, SvmExitCode::IOIO);
    assert_eq!(IoioExitInfo::from(after.control.exit_info1).access().unwrap().port, 0x80);
    assert_eq!(after.control.exit_info2, 0x7c02);
}

#[test]
fn exit_codes() {
    assert_eq!(SvmExitCode::exception(14), SvmExitCode::EXCEPTION_PF);
    assert_eq!(SvmExitCode::EXCEPTION_UD.as_exception(), Some(6));
    assert_eq!(SvmExitCode::cr_write(3), SvmExitCode::WRITE_CR3);
    assert_eq!(SvmExitCode::cr_read(8), SvmExitCode::READ_CR8);
    assert_eq!(SvmExitCode::dr_write(7), SvmExitCode(0x37));
    assert_eq!(SvmExitCode::WRITE_CR4.as_cr_write(), Some(4));
    assert_eq!(SvmExitCode(0x93).as_cr_write_trap(), Some(3));
    assert_eq!(SvmExitCode::CPUID.as_exception(), None);
    assert_eq!(format!("{:?}", SvmExitCode(0x400)), "NPF");
    assert_eq!(format!("{:?}", SvmExitCode(u64::MAX)), "INVALID");
    assert_eq!(format!("{:?}", SvmExitCode(0x1234)), "SvmExitCode(0x1234)");
    let codes = [(0x72, "CPUID"), (0x78, "HLT"), (0x7b, "IOIO"), (0x7c, "MSR"), (0x81, "VMMCALL")];
    for (code, name) in codes {
        assert_eq!(SvmExitCode(code).name(), Some(name));
    }
    assert_eq!(SvmExitCode(0x7f).name(), Some("SHUTDOWN"));
    assert_eq!(SvmExitCode(0x60).name(), Some("INTR"));
    assert_eq!(SvmExitCode(0x64).name(), Some("VINTR"));
}

#[test]
fn instructions_not_offered_are_the_svm_ones_and_monitor_mwait() {
    let not_offered: std::vec::Vec<_> =
        (0..0x500).map(SvmExitCode).filter(|c| c.is_not_offered_instruction()).filter_map(|c| c.name()).collect();
    let expected =
        ["INVLPGA", "VMRUN", "VMLOAD", "VMSAVE", "STGI", "CLGI", "SKINIT", "MONITOR", "MWAIT", "MWAIT_CONDITIONAL"];
    assert_eq!(not_offered, expected);
    // The hypercall instruction, and exits handled otherwise, are not among them.
    for code in [SvmExitCode::VMMCALL, SvmExitCode::CPUID, SvmExitCode::RDPMC, SvmExitCode::INVALID] {
        assert!(!code.is_not_offered_instruction(), "{code:?}");
    }
}

#[test]
fn ioio_exit_info() {
    // OUT 0x80, AL as QEMU reports it: SZ8, no address-size bits.
    let info = IoioExitInfo::from(0x0080_0010);
    assert_eq!(
        info.access(),
        Some(IoPortAccess { port: 0x80, size: IoSize::Byte, direction: IoDirection::Out, string: false, rep: false })
    );
    assert_eq!(info.address_size(), None);
    // The same on hardware, with A64.
    assert_eq!(IoioExitInfo::from(0x0080_0210).address_size(), Some(64));
    // IN EAX, DX with DX = 0xcfc.
    assert_eq!(
        IoioExitInfo::from(0x0cfc_0041).access(),
        Some(IoPortAccess { port: 0xcfc, size: IoSize::Dword, direction: IoDirection::In, string: false, rep: false })
    );
    // REP INSW from 0x1f0, 64-bit addressing, segment ES.
    let info = IoioExitInfo::from(0x01f0_022d);
    let a = info.access().unwrap();
    assert!(a.string && a.rep && a.size == IoSize::Word && a.direction == IoDirection::In);
    assert_eq!((info.segment(), info.address_size()), (0, Some(64)));
    // OUTS with DS (3) as the segment.
    assert_eq!(IoioExitInfo::from(0x0000_0c14).segment(), 3);
    // No size bit, or two, is not an access.
    assert_eq!(IoioExitInfo::from(0x0080_0000).access(), None);
    assert_eq!(IoioExitInfo::from(0x0080_0030).access(), None);
}

#[test]
fn npf_exit_info() {
    // A write to a present, read-only final page.
    let info = NpfExitInfo::from(0x1_0000_0007);
    assert!(info.present() && info.write() && info.user() && info.final_translation());
    assert!(!info.guest_page_table_walk() && !info.fetch() && !info.reserved_bit());
    // A fetch from an unmapped final page.
    let info = NpfExitInfo::from(0x1_0000_0014);
    assert!(!info.present() && info.fetch() && info.final_translation());
    // The guest's own table walk reached an unmapped page.
    let info = NpfExitInfo::from(0x2_0000_0004);
    assert!(info.guest_page_table_walk() && !info.final_translation());
    // A reserved bit in a nested entry.
    assert!(NpfExitInfo::from(0x1_0000_000d).reserved_bit());
}

#[test]
fn event_injection_and_virtual_interrupts() {
    // #GP(0x10).
    let gp = EventInjection::new()
        .with_vector(13)
        .with_event_type(EventType::EXCEPTION)
        .with_error_code_valid(true)
        .with_valid(true)
        .with_error_code(0x10);
    assert_eq!(u64::from(gp), 0x0000_0010_8000_0b0d);
    let nmi = EventInjection::from(0x8000_0202);
    assert_eq!((nmi.vector(), nmi.event_type(), nmi.valid()), (2, EventType::NMI, true));
    let vintr = VirtualInterruptControl::new().with_v_irq(true).with_v_intr_masking(true).with_v_intr_vector(0x30);
    assert_eq!(u64::from(vintr), 0x0000_0030_0100_0100);
}

#[test]
fn the_length_to_the_next_rip_survives_its_wrap() {
    assert_eq!(length_to_next(0x1000, 0x1002), Some(2));
    assert_eq!(length_to_next(0xffff_ffff, 0), Some(1), "EIP wrapped in 32-bit code");
    assert_eq!(length_to_next(0xfffe, 0x0001), Some(3), "IP wrapped in 16-bit code");
    assert_eq!(length_to_next(0xffff_ffff_ffff_fffe, 0x0000_0000_0000_0001), Some(3));
    assert_eq!(length_to_next(0x1000, 0x1000), None);
    assert_eq!(length_to_next(0x1000, 0x1010), None, "16 bytes is no instruction");
    assert_eq!(length_to_next(0x1002, 0x1000), None);
}
