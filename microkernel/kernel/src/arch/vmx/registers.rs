//! Registers by TLFS name, and the execution state for intercept messages.

use super::enable::VMX;
use super::insn::{VmFail, vmread, vmwrite};
use super::vmcs::{
    BLOCKING_BY_MOV_SS, BLOCKING_BY_NMI, BLOCKING_BY_STI, access_rights_from_tlfs, access_rights_to_tlfs, make_current,
    segment_fields,
};
use super::vp::VpState;
use crate::arch::vm::{ExecutionState, GuestGprs};
use kerncore::vmx::{EntryControls, VmcsField};
use tlfs::{HvRegisterName, HvX64InterruptStateRegister, HvX64SegmentRegister};
use x86defs::{EFER_LMA, RFLAGS_IF};

/// The guest's view of CR0 or CR4: host-owned bits from the read shadow.
fn guest_view(actual: VmcsField, shadow: VmcsField, mask: VmcsField) -> Result<u64, VmFail> {
    let mask = vmread(mask)?;
    Ok((vmread(actual)? & !mask) | (vmread(shadow)? & mask))
}

/// A 64-bit register kept in a VMCS field.
fn plain_field(name: HvRegisterName) -> Option<VmcsField> {
    Some(match name {
        HvRegisterName::RSP => VmcsField::GUEST_RSP,
        HvRegisterName::CR3 => VmcsField::GUEST_CR3,
        HvRegisterName::DR7 => VmcsField::GUEST_DR7,
        HvRegisterName::PAT => VmcsField::GUEST_IA32_PAT,
        _ => return None,
    })
}

fn read_register(vmcs: u64, state: Option<&VpState>, name: HvRegisterName) -> Result<Option<(u64, u64)>, VmFail> {
    use VmcsField as F;
    make_current(vmcs)?;
    let value = |v| Ok(Some((v, 0)));
    if let Some(field) = plain_field(name) {
        return value(vmread(field)?);
    }
    match name {
        HvRegisterName::RIP => return value(vmread(F::GUEST_RIP)?),
        HvRegisterName::RFLAGS => return value(vmread(F::GUEST_RFLAGS)?),
        HvRegisterName::EFER => return value(vmread(F::GUEST_IA32_EFER)?),
        HvRegisterName::CR0 => return value(guest_view(F::GUEST_CR0, F::CR0_READ_SHADOW, F::CR0_GUEST_HOST_MASK)?),
        HvRegisterName::CR4 => return value(guest_view(F::GUEST_CR4, F::CR4_READ_SHADOW, F::CR4_GUEST_HOST_MASK)?),
        HvRegisterName::CR2 => return Ok(state.map(|s| (s.cr2, 0))),
        HvRegisterName::DR6 => return Ok(state.map(|s| (s.dr6, 0))),
        HvRegisterName::KERNEL_GS_BASE => return Ok(state.map(|s| (s.kernel_gs_base, 0))),
        HvRegisterName::GDTR => {
            return Ok(Some(tlfs::table_register_value(
                vmread(F::GUEST_GDTR_BASE)?,
                vmread(F::GUEST_GDTR_LIMIT)? as u16,
            )));
        }
        HvRegisterName::IDTR => {
            return Ok(Some(tlfs::table_register_value(
                vmread(F::GUEST_IDTR_BASE)?,
                vmread(F::GUEST_IDTR_LIMIT)? as u16,
            )));
        }
        HvRegisterName::INTERRUPT_STATE => {
            let blocking = vmread(F::GUEST_INTERRUPTIBILITY_STATE)?;
            let state = HvX64InterruptStateRegister::new()
                .with_interrupt_shadow(blocking & (BLOCKING_BY_STI | BLOCKING_BY_MOV_SS) != 0)
                .with_nmi_masked(blocking & BLOCKING_BY_NMI != 0);
            return Ok(Some((state.into_bits(), 0)));
        }
        _ => {}
    }
    let Some(f) = segment_fields(name) else { return Ok(None) };
    let segment = HvX64SegmentRegister {
        base: vmread(f.base)?,
        limit: vmread(f.limit)? as u32,
        selector: vmread(f.selector)? as u16,
        attributes: access_rights_to_tlfs(vmread(f.access_rights)?),
    };
    Ok(Some(tlfs::segment_register_value(&segment)))
}

/// A register as a TLFS 128-bit value (low, high); `None` if unsupported
/// (or if the VMCS cannot be read).
pub(super) fn get_register(
    vmcs: u64,
    state: Option<&VpState>,
    gprs: &mut GuestGprs,
    name: HvRegisterName,
) -> Option<(u64, u64)> {
    if name == HvRegisterName::RAX {
        return Some((gprs.rax, 0));
    }
    if let Some(r) = gprs.named(name) {
        return Some((*r, 0));
    }
    read_register(vmcs, state, name).unwrap_or_else(|e| {
        crate::vm_println!("vmx: reading {name:?} of VMCS {vmcs:#x} failed: {e:?}");
        None
    })
}

fn write_register(
    vmcs: u64,
    state: Option<&mut VpState>,
    name: HvRegisterName,
    low: u64,
    high: u64,
) -> Result<bool, VmFail> {
    use VmcsField as F;
    let Some(vmx) = VMX.get() else { return Ok(false) };
    // The names below are exactly these (what `accepts` checks first).
    if !in_vmcs(state.is_some(), name) {
        return Ok(false);
    }
    make_current(vmcs)?;
    if let Some(field) = plain_field(name) {
        vmwrite(field, low)?;
        return Ok(true);
    }
    let interruptibility = || vmread(F::GUEST_INTERRUPTIBILITY_STATE);
    match name {
        HvRegisterName::RIP => {
            // Moving RIP completes the instruction an STI or MOV SS shadow
            // covered: the shadow ends with it.
            if vmread(F::GUEST_RIP)? != low {
                vmwrite(
                    F::GUEST_INTERRUPTIBILITY_STATE,
                    interruptibility()? & !(BLOCKING_BY_STI | BLOCKING_BY_MOV_SS),
                )?;
            }
            vmwrite(F::GUEST_RIP, low)?;
        }
        HvRegisterName::RFLAGS => {
            // Blocking by STI needs IF set (a VM-entry check).
            if low & RFLAGS_IF == 0 {
                vmwrite(F::GUEST_INTERRUPTIBILITY_STATE, interruptibility()? & !BLOCKING_BY_STI)?;
            }
            vmwrite(F::GUEST_RFLAGS, low)?;
        }
        HvRegisterName::CR0 => {
            vmwrite(F::GUEST_CR0, vmx.guest_cr0(low))?;
            vmwrite(F::CR0_READ_SHADOW, low)?;
        }
        HvRegisterName::CR4 => {
            vmwrite(F::GUEST_CR4, vmx.guest_cr4(low))?;
            vmwrite(F::CR4_READ_SHADOW, low)?;
        }
        HvRegisterName::EFER => {
            // The "IA-32e mode guest" entry control must equal EFER.LMA.
            let entry =
                EntryControls::from(vmread(F::VM_ENTRY_CONTROLS)? as u32).with_ia32e_mode_guest(low & EFER_LMA != 0);
            vmwrite(F::VM_ENTRY_CONTROLS, u64::from(u32::from(entry)))?;
            vmwrite(F::GUEST_IA32_EFER, low)?;
        }
        HvRegisterName::CR2 | HvRegisterName::DR6 | HvRegisterName::KERNEL_GS_BASE => {
            let Some(state) = state else { return Ok(false) };
            match name {
                HvRegisterName::CR2 => state.cr2 = low,
                HvRegisterName::DR6 => state.dr6 = low,
                _ => state.kernel_gs_base = low,
            }
        }
        HvRegisterName::GDTR | HvRegisterName::IDTR => {
            let (base, limit) = tlfs::table_register_from_value(low, high);
            let (base_field, limit_field) = if name == HvRegisterName::GDTR {
                (F::GUEST_GDTR_BASE, F::GUEST_GDTR_LIMIT)
            } else {
                (F::GUEST_IDTR_BASE, F::GUEST_IDTR_LIMIT)
            };
            vmwrite(base_field, base)?;
            vmwrite(limit_field, u64::from(limit))?;
        }
        _ => {
            let Some(f) = segment_fields(name) else { return Ok(false) };
            let segment = tlfs::segment_register_from_value(low, high);
            vmwrite(f.selector, u64::from(segment.selector))?;
            vmwrite(f.base, segment.base)?;
            vmwrite(f.limit, u64::from(segment.limit))?;
            vmwrite(f.access_rights, access_rights_from_tlfs(segment.attributes))?;
        }
    }
    Ok(true)
}

/// The registers `write_register` writes (`has_state`: the VP keeps the
/// registers ring 0 loads itself, CR2, DR6 and KERNEL_GS_BASE).
fn in_vmcs(has_state: bool, name: HvRegisterName) -> bool {
    use HvRegisterName as R;
    plain_field(name).is_some()
        || matches!(name, R::RIP | R::RFLAGS | R::CR0 | R::CR4 | R::EFER | R::GDTR | R::IDTR)
        || (has_state && matches!(name, R::CR2 | R::DR6 | R::KERNEL_GS_BASE))
        || segment_fields(name).is_some()
}

/// Whether [`set_register`] takes a value for `name`.
pub(super) fn writable(has_state: bool, gprs: &mut GuestGprs, name: HvRegisterName) -> bool {
    name == HvRegisterName::RAX || gprs.named(name).is_some() || in_vmcs(has_state, name)
}

/// Sets a register from a TLFS 128-bit value; false if unsupported (or if
/// the VMCS cannot be written). Values are not checked here: one the CPU
/// refuses makes the next VM entry fail, which `run` reports.
pub(super) fn set_register(
    vmcs: u64,
    state: Option<&mut VpState>,
    gprs: &mut GuestGprs,
    name: HvRegisterName,
    low: u64,
    high: u64,
) -> bool {
    if name == HvRegisterName::RAX {
        gprs.rax = low;
        return true;
    }
    if let Some(r) = gprs.named(name) {
        *r = low;
        return true;
    }
    write_register(vmcs, state, name, low, high).unwrap_or_else(|e| {
        crate::vm_println!("vmx: writing {name:?} of VMCS {vmcs:#x} failed: {e:?}");
        false
    })
}

/// The PDPTEs the next entry gives PAE paging (SDM §25.4.2).
pub(super) fn set_pdptes(vmcs: u64, pdptes: [u64; 4]) {
    use VmcsField as F;
    let fields = [F::GUEST_PDPTE0, F::GUEST_PDPTE1, F::GUEST_PDPTE2, F::GUEST_PDPTE3];
    let write = || -> Result<(), VmFail> {
        make_current(vmcs)?;
        for (field, value) in fields.into_iter().zip(pdptes) {
            vmwrite(field, value)?;
        }
        Ok(())
    };
    if let Err(e) = write() {
        crate::vm_println!("vmx: writing the PDPTEs of VMCS {vmcs:#x} failed: {e:?}");
    }
}

/// CPL and mode bits for intercept messages.
pub(super) fn execution_state(vmcs: u64) -> ExecutionState {
    use VmcsField as F;
    let read = || -> Result<ExecutionState, VmFail> {
        make_current(vmcs)?;
        // The CPL is SS.DPL (SDM §25.4.1).
        let ss = access_rights_to_tlfs(vmread(F::GUEST_SS_ACCESS_RIGHTS)?);
        Ok(ExecutionState {
            cpl: ss.descriptor_privilege_level(),
            cr0: guest_view(F::GUEST_CR0, F::CR0_READ_SHADOW, F::CR0_GUEST_HOST_MASK)?,
            efer: vmread(F::GUEST_IA32_EFER)?,
            rflags: vmread(F::GUEST_RFLAGS)?,
        })
    };
    read().unwrap_or_default()
}
