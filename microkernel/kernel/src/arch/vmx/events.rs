//! Event injection and the interrupt window.

use super::insn::{VmFail, vmread, vmwrite};
use super::vmcs::{BLOCKING_BY_MOV_SS, BLOCKING_BY_STI, make_current};
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

fn try_inject(vmcs: u64, event: &Interruption) -> Result<bool, VmFail> {
    use VmcsField as F;
    make_current(vmcs)?;
    let interrupts_enabled = vmread(F::GUEST_RFLAGS)? & RFLAGS_IF != 0;
    let shadow = vmread(F::GUEST_INTERRUPTIBILITY_STATE)? & (BLOCKING_BY_STI | BLOCKING_BY_MOV_SS) != 0;
    let deliverable = event.deliverable(interrupts_enabled, shadow);
    set_interrupt_window_exiting(!deliverable)?;
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

/// Asks for (or stops asking for) an exit when the guest can take an interrupt.
pub(super) fn request_window(vmcs: u64, open: bool) {
    if let Err(e) = make_current(vmcs).and_then(|()| set_interrupt_window_exiting(open)) {
        crate::vm_println!("vmx: interrupt-window exiting of VMCS {vmcs:#x}: {e:?}");
    }
}
