//! Event injection and the interrupt window.

use super::enable::VMX;
use super::insn::{VmFail, vmread, vmwrite};
use super::vmcs::{BLOCKING_BY_MOV_SS, BLOCKING_BY_NMI, BLOCKING_BY_STI, make_current};
use kerncore::event::Interruption;
use kerncore::vmx::{PrimaryControls, VmcsField};
use x86defs::{CR0_PE, RFLAGS_IF};

fn set_interrupt_window_exiting(on: bool) -> Result<(), VmFail> {
    let primary = PrimaryControls::from(vmread(VmcsField::PRIMARY_PROCESSOR_BASED_CONTROLS)? as u32);
    if primary.interrupt_window_exiting() != on {
        let primary = primary.with_interrupt_window_exiting(on);
        vmwrite(VmcsField::PRIMARY_PROCESSOR_BASED_CONTROLS, u64::from(u32::from(primary)))?;
    }
    Ok(())
}

/// Asks for (or stops asking for) an exit as soon as the guest's NMIs are
/// unblocked (its NMI handler's IRET, with virtual NMIs).
pub(super) fn set_nmi_window_exiting(on: bool) -> Result<(), VmFail> {
    let primary = PrimaryControls::from(vmread(VmcsField::PRIMARY_PROCESSOR_BASED_CONTROLS)? as u32);
    if primary.nmi_window_exiting() != on {
        let primary = primary.with_nmi_window_exiting(on);
        vmwrite(VmcsField::PRIMARY_PROCESSOR_BASED_CONTROLS, u64::from(u32::from(primary)))?;
    }
    Ok(())
}

fn try_inject(vmcs: u64, event: &Interruption) -> Result<bool, VmFail> {
    use VmcsField as F;
    make_current(vmcs)?;
    let interrupts_enabled = vmread(F::GUEST_RFLAGS)? & RFLAGS_IF != 0;
    let blocking = vmread(F::GUEST_INTERRUPTIBILITY_STATE)?;
    let shadow = blocking & (BLOCKING_BY_STI | BLOCKING_BY_MOV_SS) != 0;
    let nmi_window = VMX.get().is_some_and(|v| v.nmi_window);
    let deliverable = if event.is_nmi() {
        // An NMI waits while the guest's handler of the last one runs
        // (virtual-NMI blocking, until its IRET) and after MOV SS, which
        // VM entry requires (SDM §27.3.1.5); the NMI window exits when
        // both end. Without it, the interrupt window stands in.
        let deliverable = blocking & (BLOCKING_BY_NMI | BLOCKING_BY_MOV_SS) == 0;
        if nmi_window {
            set_nmi_window_exiting(!deliverable)?;
            set_interrupt_window_exiting(false)?;
        } else {
            set_interrupt_window_exiting(!deliverable)?;
        }
        deliverable
    } else {
        let deliverable = event.deliverable(interrupts_enabled, shadow);
        set_interrupt_window_exiting(!deliverable)?;
        deliverable
    };
    if deliverable {
        let protected = vmread(F::GUEST_CR0)? & CR0_PE != 0;
        let info = event.to_vmx(protected);
        if info.deliver_error_code() {
            vmwrite(F::VM_ENTRY_EXCEPTION_ERROR_CODE, u64::from(event.error_code.unwrap_or(0)))?;
        }
        if event.is_software() {
            vmwrite(F::VM_ENTRY_INSTRUCTION_LENGTH, u64::from(event.instruction_length))?;
        }
        vmwrite(F::VM_ENTRY_INTERRUPTION_INFORMATION, u64::from(u32::from(info)))?;
    }
    Ok(deliverable)
}

/// Injects `event` at the next VM entry if the guest can take it now
/// (true); otherwise asks for an interrupt-window exit (false).
pub(super) fn inject(vmcs: u64, event: &Interruption) -> bool {
    try_inject(vmcs, event).unwrap_or_else(|e| {
        crate::vm_println!("vmx: injecting into VMCS {vmcs:#x} failed: {e:?}");
        false
    })
}

/// Asks for (or stops asking for) an exit when the guest can take an
/// interrupt; closing it closes the NMI window too.
pub(super) fn request_window(vmcs: u64, open: bool) {
    let set = || {
        make_current(vmcs)?;
        if !open {
            set_nmi_window_exiting(false)?;
        }
        set_interrupt_window_exiting(open)
    };
    if let Err(e) = set() {
        crate::vm_println!("vmx: interrupt-window exiting of VMCS {vmcs:#x}: {e:?}");
    }
}
