//! Setting up a VMCS: host state, controls and the guest's state after
//! INIT; making one current, and forgetting it.

use super::enable::{VMX, Vmx, current};
use super::insn::{FAILED_SETUP, VmFail, read_msr, vmclear, vmptrld, vmread, vmwrite};
use super::run::vmx_vm_exit;
use super::vp::VpState;
use crate::arch::gdt::{KERNEL_CODE, KERNEL_DATA};
use crate::arch::memory;
use core::sync::atomic::Ordering;
use kerncore::debugreg::{DR6_INIT, DR7_INIT};
use kerncore::ept::Eptp;
use kerncore::intercept::REFLECTED_EXCEPTIONS;
use kerncore::tags::VpTag;
use kerncore::vmx::{PrimaryControls, VmcsField};
use platform::println;
use tlfs::{HvRegisterName, HvX64SegmentAttributes};
use x86::msr::{
    IA32_EFER, IA32_FS_BASE, IA32_GS_BASE, IA32_PAT, IA32_SYSENTER_CS, IA32_SYSENTER_EIP, IA32_SYSENTER_ESP,
};
use x86defs::{CR0_ET, RFLAGS_FIXED};

/// Interruptibility state (SDM §25.4.2): blocking by STI, by MOV SS and by NMI.
pub(super) const BLOCKING_BY_STI: u64 = 1 << 0;
pub(super) const BLOCKING_BY_MOV_SS: u64 = 1 << 1;
pub(super) const BLOCKING_BY_NMI: u64 = 1 << 3;
/// Access rights (SDM §25.4.1): bits 0-15 as TLFS segment attributes,
/// bit 16 "unusable".
const UNUSABLE: u64 = 1 << 16;
/// The architectural state after INIT: the power-on PAT (RFLAGS: `x86defs`;
/// DR6 and DR7: `kerncore::debugreg`).
const PAT_INIT: u64 = 0x0007_0406_0007_0406;
/// CR0 after INIT: only ET.
const CR0_INIT: u64 = CR0_ET;

/// Makes `vmcs` current on this CPU (VMPTRLD only when it is not).
pub(super) fn make_current(vmcs: u64) -> Result<(), VmFail> {
    if current().load(Ordering::Relaxed) != vmcs {
        vmptrld(vmcs)?;
        current().store(vmcs, Ordering::Relaxed);
    }
    Ok(())
}

/// VMWRITEs that remember the first failure instead of stopping.
struct Writer(Result<(), (VmcsField, VmFail)>);

impl Writer {
    fn put(&mut self, field: VmcsField, value: u64) {
        if let Err(e) = vmwrite(field, value)
            && self.0.is_ok()
        {
            self.0 = Err((field, e));
        }
    }
}

/// A guest segment register's VMCS fields: selector, base, limit, access rights.
pub(super) struct SegmentFields {
    pub(super) selector: VmcsField,
    pub(super) base: VmcsField,
    pub(super) limit: VmcsField,
    pub(super) access_rights: VmcsField,
}

pub(super) fn segment_fields(name: HvRegisterName) -> Option<SegmentFields> {
    use VmcsField as F;
    let (selector, base, limit, access_rights) = match name {
        HvRegisterName::ES => (F::GUEST_ES_SELECTOR, F::GUEST_ES_BASE, F::GUEST_ES_LIMIT, F::GUEST_ES_ACCESS_RIGHTS),
        HvRegisterName::CS => (F::GUEST_CS_SELECTOR, F::GUEST_CS_BASE, F::GUEST_CS_LIMIT, F::GUEST_CS_ACCESS_RIGHTS),
        HvRegisterName::SS => (F::GUEST_SS_SELECTOR, F::GUEST_SS_BASE, F::GUEST_SS_LIMIT, F::GUEST_SS_ACCESS_RIGHTS),
        HvRegisterName::DS => (F::GUEST_DS_SELECTOR, F::GUEST_DS_BASE, F::GUEST_DS_LIMIT, F::GUEST_DS_ACCESS_RIGHTS),
        HvRegisterName::FS => (F::GUEST_FS_SELECTOR, F::GUEST_FS_BASE, F::GUEST_FS_LIMIT, F::GUEST_FS_ACCESS_RIGHTS),
        HvRegisterName::GS => (F::GUEST_GS_SELECTOR, F::GUEST_GS_BASE, F::GUEST_GS_LIMIT, F::GUEST_GS_ACCESS_RIGHTS),
        HvRegisterName::LDTR => {
            (F::GUEST_LDTR_SELECTOR, F::GUEST_LDTR_BASE, F::GUEST_LDTR_LIMIT, F::GUEST_LDTR_ACCESS_RIGHTS)
        }
        HvRegisterName::TR => (F::GUEST_TR_SELECTOR, F::GUEST_TR_BASE, F::GUEST_TR_LIMIT, F::GUEST_TR_ACCESS_RIGHTS),
        _ => return None,
    };
    Some(SegmentFields { selector, base, limit, access_rights })
}

/// The VMCS access rights of TLFS attributes. TLFS has no "unusable": a
/// segment that is not present is unusable.
pub(super) fn access_rights_from_tlfs(attributes: HvX64SegmentAttributes) -> u64 {
    let rights = u64::from(attributes.with_reserved(0).into_bits());
    if attributes.present() { rights } else { rights | UNUSABLE }
}

/// TLFS attributes of VMCS access rights; an unusable segment is not present.
pub(super) fn access_rights_to_tlfs(rights: u64) -> HvX64SegmentAttributes {
    let attributes = HvX64SegmentAttributes::from_bits(rights as u16).with_reserved(0);
    if rights & UNUSABLE != 0 { attributes.with_present(false) } else { attributes }
}

/// Attributes of a present segment: `segment_type`, code/data or system.
fn present(segment_type: u8, code_or_data: bool) -> HvX64SegmentAttributes {
    HvX64SegmentAttributes::new()
        .with_segment_type(segment_type)
        .with_non_system_segment(code_or_data)
        .with_present(true)
}

/// The base of the TSS the current TR selects, from its GDT descriptor.
fn tss_base(gdt_base: u64, tr: u16) -> u64 {
    let at = gdt_base + u64::from(tr & !7);
    // SAFETY: TR selects the kernel's TSS descriptor (16 bytes in 64-bit
    // mode) in the loaded GDT, a kernel static that stays mapped; reading
    // it has no side effects.
    let (low, high) =
        unsafe { (core::ptr::read_volatile(at as *const u64), core::ptr::read_volatile((at + 8) as *const u64)) };
    ((low >> 16) & 0xff_ffff) | (((low >> 56) & 0xff) << 24) | ((high & 0xffff_ffff) << 32)
}

/// Points the current VMCS's host state at this CPU (its GS base, TSS and
/// GDT are per CPU): a VP that moved here exits to this CPU's kernel.
pub(super) fn write_host_state_here() -> Result<(), VmFail> {
    let mut w = Writer(Ok(()));
    write_host_state(&mut w);
    w.0.map_err(|(_, e)| e)
}

/// This CPU's state to return to on every VM exit (SDM §25.5). HOST_CR3
/// is rewritten before each entry (the kernel switches address spaces)
/// and HOST_RSP inside the world switch.
fn write_host_state(w: &mut Writer) {
    use VmcsField as F;
    let mut gdtr = x86::dtables::DescriptorTablePointer::<u64>::default();
    let mut idtr = x86::dtables::DescriptorTablePointer::<u64>::default();
    // SAFETY: SGDT, SIDT and STR only store the descriptor-table registers
    // and the TR selector; the pointers are to locals.
    let tr = unsafe {
        x86::dtables::sgdt(&mut gdtr);
        x86::dtables::sidt(&mut idtr);
        x86::task::tr().bits()
    };
    let (gdt_base, idt_base) = (gdtr.base as u64, idtr.base as u64);
    // SAFETY: reading control registers has no side effects.
    let (cr0, cr4) = unsafe { (x86::controlregs::cr0().bits() as u64, x86::controlregs::cr4().bits() as u64) };
    w.put(F::HOST_CR0, cr0);
    w.put(F::HOST_CR3, crate::arch::cpu::cr3());
    w.put(F::HOST_CR4, cr4);
    w.put(F::HOST_CS_SELECTOR, u64::from(KERNEL_CODE.bits()));
    for field in [F::HOST_SS_SELECTOR, F::HOST_DS_SELECTOR, F::HOST_ES_SELECTOR] {
        w.put(field, u64::from(KERNEL_DATA.bits()));
    }
    w.put(F::HOST_FS_SELECTOR, 0);
    w.put(F::HOST_GS_SELECTOR, 0);
    w.put(F::HOST_TR_SELECTOR, u64::from(tr));
    w.put(F::HOST_FS_BASE, read_msr(IA32_FS_BASE));
    // The per-CPU pointer: ring 0 runs with it in GS.
    w.put(F::HOST_GS_BASE, read_msr(IA32_GS_BASE));
    w.put(F::HOST_TR_BASE, tss_base(gdt_base, tr));
    w.put(F::HOST_GDTR_BASE, gdt_base);
    w.put(F::HOST_IDTR_BASE, idt_base);
    w.put(F::HOST_IA32_SYSENTER_CS, read_msr(IA32_SYSENTER_CS));
    w.put(F::HOST_IA32_SYSENTER_ESP, read_msr(IA32_SYSENTER_ESP));
    w.put(F::HOST_IA32_SYSENTER_EIP, read_msr(IA32_SYSENTER_EIP));
    w.put(F::HOST_IA32_EFER, read_msr(IA32_EFER));
    w.put(F::HOST_IA32_PAT, read_msr(IA32_PAT));
    w.put(F::HOST_RIP, vmx_vm_exit as *const () as u64);
}

/// Execution controls, EPT and VPID (SDM §25.6).
fn write_controls(w: &mut Writer, vmx: &Vmx, eptp: u64, vpid: u16) {
    use VmcsField as F;
    let c = vmx.controls;
    w.put(F::PIN_BASED_CONTROLS, u64::from(u32::from(c.pin)));
    w.put(F::PRIMARY_PROCESSOR_BASED_CONTROLS, u64::from(u32::from(c.primary)));
    w.put(F::SECONDARY_PROCESSOR_BASED_CONTROLS, u64::from(u32::from(c.secondary)));
    w.put(F::VM_EXIT_CONTROLS, u64::from(u32::from(c.exit)));
    w.put(F::VM_ENTRY_CONTROLS, u64::from(u32::from(c.entry)));
    // #DB and #AC are reflected from ring 0; a machine check is the host's
    // business, never the guest's.
    w.put(F::EXCEPTION_BITMAP, u64::from(REFLECTED_EXCEPTIONS) | 1 << kerncore::mce::VECTOR);
    for field in [
        F::PAGE_FAULT_ERROR_CODE_MASK,
        F::PAGE_FAULT_ERROR_CODE_MATCH,
        F::CR3_TARGET_COUNT,
        F::VM_EXIT_MSR_STORE_COUNT,
        F::VM_EXIT_MSR_LOAD_COUNT,
        F::VM_ENTRY_MSR_LOAD_COUNT,
        F::VM_ENTRY_INTERRUPTION_INFORMATION,
        F::TSC_OFFSET,
    ] {
        w.put(field, 0);
    }
    w.put(F::MSR_BITMAP, vmx.msr_bitmap);
    w.put(F::EPT_POINTER, eptp);
    if c.secondary.enable_vpid() {
        w.put(F::VIRTUAL_PROCESSOR_ID, u64::from(vpid));
    }
    // Without "save VMX-preemption timer value", every entry starts afresh.
    if let Some(value) = vmx.preemption_timer {
        w.put(F::VMX_PREEMPTION_TIMER_VALUE, u64::from(value));
    }
    w.put(F::CR0_GUEST_HOST_MASK, vmx.cr0_mask());
    w.put(F::CR4_GUEST_HOST_MASK, vmx.cr4_mask());
}

/// The architectural state after INIT, in real mode at 0000:0000 (the VMM
/// sets the real starting state), as `svm::init_vmcb` gives it.
fn write_guest_state(w: &mut Writer, vmx: &Vmx) {
    use VmcsField as F;
    let data = present(3, true);
    for name in [
        HvRegisterName::ES,
        HvRegisterName::CS,
        HvRegisterName::SS,
        HvRegisterName::DS,
        HvRegisterName::FS,
        HvRegisterName::GS,
        HvRegisterName::LDTR,
        HvRegisterName::TR,
    ] {
        // Read/write data (type 3), execute/read code (11), LDT (2), busy
        // TSS (11: VM entry wants a busy TSS), flat 64 KiB at 0.
        let attributes = match name {
            HvRegisterName::CS => present(11, true),
            HvRegisterName::LDTR => present(2, false),
            HvRegisterName::TR => present(11, false),
            _ => data,
        };
        if let Some(f) = segment_fields(name) {
            w.put(f.selector, 0);
            w.put(f.base, 0);
            w.put(f.limit, 0xffff);
            w.put(f.access_rights, access_rights_from_tlfs(attributes));
        }
    }
    for (base, limit) in [(F::GUEST_GDTR_BASE, F::GUEST_GDTR_LIMIT), (F::GUEST_IDTR_BASE, F::GUEST_IDTR_LIMIT)] {
        w.put(base, 0);
        w.put(limit, 0xffff);
    }
    w.put(F::GUEST_CR0, vmx.guest_cr0(CR0_INIT));
    w.put(F::CR0_READ_SHADOW, CR0_INIT);
    w.put(F::GUEST_CR3, 0);
    w.put(F::GUEST_CR4, vmx.guest_cr4(0));
    w.put(F::CR4_READ_SHADOW, 0);
    w.put(F::GUEST_DR7, DR7_INIT);
    w.put(F::GUEST_RSP, 0);
    w.put(F::GUEST_RIP, 0);
    w.put(F::GUEST_RFLAGS, RFLAGS_FIXED);
    for field in [
        F::GUEST_PENDING_DEBUG_EXCEPTIONS,
        F::GUEST_INTERRUPTIBILITY_STATE,
        F::GUEST_ACTIVITY_STATE,
        F::GUEST_IA32_SYSENTER_CS,
        F::GUEST_IA32_SYSENTER_ESP,
        F::GUEST_IA32_SYSENTER_EIP,
        F::GUEST_IA32_DEBUGCTL,
        F::GUEST_IA32_EFER,
        F::GUEST_PDPTE0,
        F::GUEST_PDPTE1,
        F::GUEST_PDPTE2,
        F::GUEST_PDPTE3,
    ] {
        w.put(field, 0);
    }
    w.put(F::GUEST_IA32_PAT, PAT_INIT);
    // No shadow VMCS.
    w.put(F::VMCS_LINK_POINTER, u64::MAX);
}

/// Sets up the VMCS in the frame `vmcs` (zeroed, or `set_up_before`) for
/// a partition whose EPT is at `ept_root`, tagged `vpid`. A failure is
/// remembered in the state and reported by the first `run`.
pub(super) fn init_vmcs(vmcs: u64, set_up_before: bool, ept_root: u64, vpid: u32) -> VpState {
    let eptp = u64::from(Eptp::write_back_4_level(ept_root, false));
    let mut state = VpState {
        launched: false,
        broken: None,
        eptp,
        vpid: 0,
        tag: VpTag::default(),
        host_cpu: crate::arch::percpu::index(),
        cr2: 0,
        dr6: DR6_INIT,
        kernel_gs_base: 0,
        syscall: [0; 4],
    };
    state.broken = match setup(vmcs, set_up_before, eptp, vpid) {
        Ok(tag) => {
            state.vpid = tag;
            None
        }
        Err(code) => Some(code),
    };
    state
}

/// VMCLEAR, VMPTRLD and every field; the VPID used, or the failure code.
fn setup(vmcs: u64, set_up_before: bool, eptp: u64, vpid: u32) -> Result<u16, u64> {
    let vmx = VMX.get().ok_or(FAILED_SETUP)?;
    let tag = u16::try_from(vpid).ok().filter(|&t| t != 0).ok_or(FAILED_SETUP)?;
    let fail = |what: &str, e: VmFail| {
        crate::vm_println!("vmx: {what} of VMCS {vmcs:#x} failed: {e:?}");
        e.code()
    };
    if set_up_before {
        // Set up again: the VMCS may be current and launched.
        vmclear(vmcs).map_err(|e| fail("VMCLEAR", e))?;
    }
    current().compare_exchange(vmcs, 0, Ordering::Relaxed, Ordering::Relaxed).ok();
    memory::write_phys(vmcs, &vmx.revision.to_le_bytes());
    vmclear(vmcs).map_err(|e| fail("VMCLEAR", e))?;
    make_current(vmcs).map_err(|e| fail("VMPTRLD", e))?;
    let mut w = Writer(Ok(()));
    write_controls(&mut w, vmx, eptp, tag);
    write_host_state(&mut w);
    write_guest_state(&mut w, vmx);
    w.0.map_err(|(field, e)| fail(if field == VmcsField::HOST_RIP { "VMWRITE HOST_RIP" } else { "VMWRITE" }, e))?;
    Ok(tag)
}

/// Forgets the VMCS `vmcs` before its frame is freed: VMCLEAR (if it was
/// `set_up`) writes back whatever the CPU cached and makes it not current.
pub(super) fn release(vmcs: u64, set_up: bool) {
    if set_up && let Err(e) = vmclear(vmcs) {
        crate::vm_println!("vmx: VMCLEAR of VMCS {vmcs:#x} failed on release: {e:?}");
    }
    current().compare_exchange(vmcs, 0, Ordering::Relaxed, Ordering::Relaxed).ok();
}

/// Intercepts (or stops intercepting) every debug-register access.
pub(super) fn intercept_debug_registers(vmcs: u64, on: bool) {
    let set = || -> Result<(), VmFail> {
        make_current(vmcs)?;
        let primary = PrimaryControls::from(vmread(VmcsField::PRIMARY_PROCESSOR_BASED_CONTROLS)? as u32);
        vmwrite(VmcsField::PRIMARY_PROCESSOR_BASED_CONTROLS, u64::from(u32::from(primary.with_mov_dr_exiting(on))))
    };
    if let Err(e) = set() {
        println!("vmx: MOV-DR exiting of VMCS {vmcs:#x}: {e:?}");
    }
}
