//! Running a VP: the world switch, the guest state VMX does not switch
//! loaded around it, exit decoding and reflected exceptions.

use super::enable::{VMX, Vmx};
use super::insn::{
    FAILED_INVALID, FAILED_SETUP, VmFail, instruction_error, invept, invvpid, read_msr, vmread, vmwrite,
};
use super::vmcs::{BLOCKING_BY_MOV_SS, BLOCKING_BY_NMI, BLOCKING_BY_STI, make_current, write_host_state_here};
use super::vp::{SYSCALL_MSRS, VpState};
use crate::arch::vm::{Access, CrAccess, EntryFlush, Exit, ExitReason, GuestGprs};
use core::arch::{asm, global_asm};
use core::mem::offset_of;
use kerncore::debugreg;
use kerncore::event::Interruption;
use kerncore::intercept::vector;
use kerncore::vmx::{
    CrAccessQualification, CrAccessType, EptViolationQualification, ExitReasonField, InterruptionInfo,
    InterruptionType, IoQualification, VmInstructionError, VmcsField,
};
use x86::msr::{IA32_KERNEL_GSBASE, rdmsr, wrmsr};
use x86defs::RFLAGS_TF;

// The world switch.
//
// vmx_world_switch(gprs: *mut GuestGprs, resume: u64) -> u64
//   Saves the callee-saved registers and the GDTR/IDTR (a VM exit leaves
//   their limits at 0xffff), stores RSP into HOST_RSP, loads the guest's
//   general registers and enters the guest with VMLAUNCH (resume = 0) or
//   VMRESUME. Returns 0 after a VM exit, 1 if the instruction failed with
//   VMfailInvalid, 2 with VMfailValid. Entered with interrupts off; a VM
//   exit leaves RFLAGS = 2, so they stay off.
// vmx_vm_exit: HOST_RIP. RSP is what was stored in HOST_RSP, where the
//   GuestGprs pointer was pushed.
global_asm!(
    r#"
    .section .text
    .global vmx_world_switch
    .global vmx_vm_exit
vmx_world_switch:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    sub rsp, 32
    sgdt [rsp]
    sidt [rsp + 16]
    push rdi
    mov rax, {host_rsp}
    vmwrite rax, rsp
    jbe 3f
    /* Clear CPU buffers (MDS) where needed: after the last access to host
       data but the guest's own registers, and before `test` (VERW
       clobbers ZF). */
    cmp byte ptr [rip + {verw_on}], 0
    je 6f
    verw word ptr [rip + {verw_selector}]
6:
    test rsi, rsi
    mov rax, rdi
    mov rbx, [rax + {rbx}]
    mov rcx, [rax + {rcx}]
    mov rdx, [rax + {rdx}]
    mov rsi, [rax + {rsi}]
    mov rdi, [rax + {rdi}]
    mov rbp, [rax + {rbp}]
    mov r8, [rax + {r8}]
    mov r9, [rax + {r9}]
    mov r10, [rax + {r10}]
    mov r11, [rax + {r11}]
    mov r12, [rax + {r12}]
    mov r13, [rax + {r13}]
    mov r14, [rax + {r14}]
    mov r15, [rax + {r15}]
    mov rax, [rax + {rax}]
    /* The flags are still those of `test rsi, rsi`. */
    jnz 2f
    vmlaunch
    jmp 3f
2:
    vmresume
3:
    /* VMLAUNCH, VMRESUME or the VMWRITE failed: CF or ZF says how. */
    mov eax, 1
    jc 4f
    mov eax, 2
4:
    add rsp, 8
    jmp 5f

vmx_vm_exit:
    push rdi
    mov rdi, [rsp + 8]
    mov [rdi + {rax}], rax
    mov [rdi + {rbx}], rbx
    mov [rdi + {rcx}], rcx
    mov [rdi + {rdx}], rdx
    mov [rdi + {rsi}], rsi
    mov [rdi + {rbp}], rbp
    mov [rdi + {r8}], r8
    mov [rdi + {r9}], r9
    mov [rdi + {r10}], r10
    mov [rdi + {r11}], r11
    mov [rdi + {r12}], r12
    mov [rdi + {r13}], r13
    mov [rdi + {r14}], r14
    mov [rdi + {r15}], r15
    pop rax
    mov [rdi + {rdi}], rax
    add rsp, 8
    /* No return target the guest left in the RSB may steer the host's
       returns: fill it before the first RET. */
"#,
    crate::arch::speculation::rsb_fill!(),
    r#"
    xor eax, eax
5:
    lgdt [rsp]
    lidt [rsp + 16]
    add rsp, 32
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret
"#,
    host_rsp = const VmcsField::HOST_RSP.0,
    verw_on = sym crate::arch::speculation::VERW_ON_VM_ENTRY,
    verw_selector = sym crate::arch::speculation::VERW_SELECTOR,
    rax = const offset_of!(GuestGprs, rax),
    rbx = const offset_of!(GuestGprs, rbx),
    rcx = const offset_of!(GuestGprs, rcx),
    rdx = const offset_of!(GuestGprs, rdx),
    rsi = const offset_of!(GuestGprs, rsi),
    rdi = const offset_of!(GuestGprs, rdi),
    rbp = const offset_of!(GuestGprs, rbp),
    r8 = const offset_of!(GuestGprs, r8),
    r9 = const offset_of!(GuestGprs, r9),
    r10 = const offset_of!(GuestGprs, r10),
    r11 = const offset_of!(GuestGprs, r11),
    r12 = const offset_of!(GuestGprs, r12),
    r13 = const offset_of!(GuestGprs, r13),
    r14 = const offset_of!(GuestGprs, r14),
    r15 = const offset_of!(GuestGprs, r15),
);

unsafe extern "C" {
    fn vmx_world_switch(gprs: *mut GuestGprs, resume: u64) -> u64;
    /// Not a function: the host RIP of every VM exit. Only its address is taken.
    pub(super) fn vmx_vm_exit();
}

fn failed(code: u64) -> Exit {
    Exit { reason: ExitReason::Other(code), rip: 0, instruction_length: 0, interrupted: None }
}

/// VPIDs 1..=65535 (0 is the host's).
const VPIDS: u32 = 1 << 16;

/// Flushes what the CPU may have cached for this VP before it runs: every
/// translation derived from its partition's EPT after the mappings changed
/// (or when the VP is new to this CPU), and gives the VP its own VPID on
/// this CPU (`kerncore::tags`): a fresh one when its translations are
/// stale, flushed if it was handed out before.
fn flush_before_run(vmx: &Vmx, state: &mut VpState, flush: EntryFlush) -> Result<(), VmFail> {
    if flush.partition {
        invept(vmx.invept, state.eptp)?;
    }
    if let Some(kind) = vmx.invvpid {
        let entry = crate::arch::vm::enter_tag(&mut state.tag, flush.vp, VPIDS);
        let vpid = entry.tag as u16;
        if vpid != state.vpid {
            vmwrite(VmcsField::VIRTUAL_PROCESSOR_ID, u64::from(vpid))?;
            state.vpid = vpid;
        }
        if entry.reused {
            invvpid(kind, u64::from(vpid))?;
        }
    }
    Ok(())
}

/// Runs the guest until it exits. Interrupts that arrived meanwhile are
/// left pending for the caller to let in.
pub(super) fn run(vmcs: u64, state: Option<&mut VpState>, gprs: &mut GuestGprs, flush: EntryFlush) -> Exit {
    let (Some(vmx), Some(state)) = (VMX.get(), state) else { return failed(FAILED_SETUP) };
    if let Some(code) = state.broken {
        return failed(code);
    }
    let here = crate::arch::percpu::index();
    let prepared = make_current(vmcs)
        .and_then(|()| if state.host_cpu == here { Ok(()) } else { write_host_state_here() })
        .map(|()| state.host_cpu = here)
        .and_then(|()| vmwrite(VmcsField::HOST_CR3, crate::arch::cpu::cr3()))
        .and_then(|()| flush_before_run(vmx, state, flush));
    if let Err(e) = prepared {
        crate::vm_println!("vmx: preparing VMCS {vmcs:#x} to run failed: {e:?}");
        return failed(e.code());
    }
    let mut status = world_switch(gprs, state);
    // The launch state is the CPU's; should ours disagree (error 4 or 5),
    // believe the CPU and enter the other way once.
    if status == 2
        && matches!(
            instruction_error(),
            VmInstructionError::VMLAUNCH_NON_CLEAR_VMCS | VmInstructionError::VMRESUME_NON_LAUNCHED_VMCS
        )
    {
        state.launched = !state.launched;
        status = world_switch(gprs, state);
    }
    match status {
        0 => {
            // Also after a failed VM entry, which the CPU reports as an exit.
            state.launched = true;
            decode_exit(state)
        }
        1 => {
            crate::vm_println!("vmx: VM entry of VMCS {vmcs:#x} failed: {:?}", VmFail::Invalid);
            failed(FAILED_INVALID)
        }
        _ => {
            let e = VmFail::Valid(instruction_error());
            crate::vm_println!("vmx: VM entry of VMCS {vmcs:#x} failed: {e:?}");
            failed(e.code())
        }
    }
}

/// One VM entry and exit, with the guest state VMX does not switch loaded
/// around it. Returns the world switch's status.
fn world_switch(gprs: &mut GuestGprs, state: &mut VpState) -> u64 {
    let host_kernel_gs_base = read_msr(IA32_KERNEL_GSBASE);
    let host_syscall = SYSCALL_MSRS.map(read_msr);
    // SAFETY: the guest's CR2, DR6 and IA32_KERNEL_GS_BASE go into the
    // hardware registers only for the guest's run: the host has no use for
    // CR2 and DR6 across it (no page fault or debug trap can happen in
    // between: interrupts are off and this code touches only mapped kernel
    // memory), and the host's KERNEL_GS_BASE (the user GS base) and
    // syscall MSRs (STAR, LSTAR, CSTAR, SFMASK) are put back before
    // anything can enter ring 3 or take a SYSCALL. The world switch enters the
    // guest of the current VMCS, which `init_vmcs` set up with host state
    // that resumes at `vmx_vm_exit` on this stack; its EPT maps only
    // memory given to the partition, and every exit lands back here.
    unsafe {
        wrmsr(IA32_KERNEL_GSBASE, state.kernel_gs_base);
        for (msr, value) in SYSCALL_MSRS.iter().zip(state.syscall) {
            wrmsr(*msr, value);
        }
        crate::arch::nmi::test_point(crate::arch::nmi::TestPoint::WorldSwitch);
        asm!("mov cr2, {}", in(reg) state.cr2, options(nostack, preserves_flags));
        asm!("mov dr6, {}", in(reg) state.dr6, options(nostack, preserves_flags));
        crate::arch::speculation::before_vm_entry();
        let status = vmx_world_switch(gprs, u64::from(state.launched));
        asm!("mov {}, cr2", out(reg) state.cr2, options(nostack, preserves_flags));
        asm!("mov {}, dr6", out(reg) state.dr6, options(nostack, preserves_flags));
        state.kernel_gs_base = rdmsr(IA32_KERNEL_GSBASE);
        wrmsr(IA32_KERNEL_GSBASE, host_kernel_gs_base);
        for ((msr, guest), host) in SYSCALL_MSRS.iter().zip(state.syscall.iter_mut()).zip(host_syscall) {
            *guest = rdmsr(*msr);
            wrmsr(*msr, host);
        }
        status
    }
}

/// Reads a field of the current VMCS for exit decoding; 0 if it cannot be
/// read (which cannot happen right after a VM exit).
fn exit_field(field: VmcsField) -> u64 {
    vmread(field).unwrap_or(0)
}

/// The VM exit just taken, in backend-neutral terms.
fn decode_exit(state: &mut VpState) -> Exit {
    use kerncore::vmx::ExitReason as Basic;
    let raw = exit_field(VmcsField::EXIT_REASON) as u32;
    let field = ExitReasonField::from(raw);
    let rip = exit_field(VmcsField::GUEST_RIP);
    let length = || exit_field(VmcsField::VM_EXIT_INSTRUCTION_LENGTH).min(15) as u8;
    let other = (ExitReason::Other(u64::from(raw)), 0);
    if field.entry_failure() && field.basic() == Basic::ENTRY_FAILURE_MACHINE_CHECK {
        return Exit { reason: ExitReason::MachineCheck, rip, instruction_length: 0, interrupted: None };
    }
    if field.entry_failure() {
        crate::vm_println!(
            "vmx: VM entry failed: exit reason {:?} (field {raw:#x}), qualification {:#x}",
            field.basic(),
            exit_field(VmcsField::EXIT_QUALIFICATION)
        );
        return Exit { reason: other.0, rip, instruction_length: 0, interrupted: None };
    }
    let (reason, instruction_length) = match field.basic() {
        Basic::EXTERNAL_INTERRUPT | Basic::PREEMPTION_TIMER_EXPIRED => (ExitReason::HostInterrupt, 0),
        Basic::INTERRUPT_WINDOW => (ExitReason::InterruptWindow, 0),
        // The guest's NMIs are unblocked: the window closes until the next
        // NMI waits (it would exit before every instruction).
        Basic::NMI_WINDOW => {
            let _ = super::events::set_nmi_window_exiting(false);
            (ExitReason::InterruptWindow, 0)
        }
        Basic::EXCEPTION_OR_NMI => {
            // NMIs, and the exceptions intercepted: #MC (the host's), #DB and
            // #AC (reflected).
            let info = InterruptionInfo::from(exit_field(VmcsField::VM_EXIT_INTERRUPTION_INFORMATION) as u32);
            if info.valid() && info.interruption_type() == InterruptionType::NMI {
                crate::arch::nmi::deliver_after_vm_exit();
                (ExitReason::HostInterrupt, 0)
            } else if info.valid()
                && info.interruption_type() == InterruptionType::HARDWARE_EXCEPTION
                && info.vector() == kerncore::mce::VECTOR
            {
                (ExitReason::MachineCheck, 0)
            } else if let Some(event) = reflected_exception(info, state) {
                (ExitReason::Exception(event), 0)
            } else {
                other
            }
        }
        Basic::IO_INSTRUCTION => match IoQualification::from(exit_field(VmcsField::EXIT_QUALIFICATION)).access() {
            Some(access) => (ExitReason::Io(access), length()),
            None => other,
        },
        Basic::CPUID => (ExitReason::Cpuid, length()),
        Basic::HLT => (ExitReason::Hlt, length()),
        Basic::VMCALL => (ExitReason::Hypercall, length()),
        Basic::RDMSR => (ExitReason::Msr { write: false }, length()),
        Basic::WRMSR => (ExitReason::Msr { write: true }, length()),
        Basic::EPT_VIOLATION => {
            let q = EptViolationQualification::from(exit_field(VmcsField::EXIT_QUALIFICATION));
            let access = if q.instruction_fetch() {
                Access::Execute
            } else if q.data_write() {
                Access::Write
            } else {
                Access::Read
            };
            let mapped = q.readable() || q.writable() || q.executable();
            (ExitReason::GuestMemory { gpa: exit_field(VmcsField::GUEST_PHYSICAL_ADDRESS), access, mapped }, 0)
        }
        Basic::TRIPLE_FAULT => (ExitReason::Shutdown, 0),
        Basic::XSETBV => (ExitReason::Xsetbv, length()),
        Basic::INVD | Basic::WBINVD => (ExitReason::CacheFlush, length()),
        Basic::RDPMC => (ExitReason::Rdpmc, length()),
        basic if basic.is_not_offered_instruction() => (ExitReason::NotOffered, 0),
        Basic::MOV_DR => (ExitReason::DebugRegister, 0),
        Basic::CR_ACCESS => match cr_access(CrAccessQualification::from(exit_field(VmcsField::EXIT_QUALIFICATION))) {
            Some(access) => (ExitReason::ControlRegister(access), length()),
            None => other,
        },
        // EPT misconfigurations and everything not intercepted on purpose.
        _ => other,
    };
    // The event an exit cut short (IDT-vectoring information), to deliver
    // again. An NMI cut short was not delivered: its blocking goes (as
    // KVM does), or VM entry would refuse to inject it again.
    let vectoring = InterruptionInfo::from(exit_field(VmcsField::IDT_VECTORING_INFORMATION) as u32);
    if vectoring.valid() && vectoring.interruption_type() == InterruptionType::NMI {
        let blocking = exit_field(VmcsField::GUEST_INTERRUPTIBILITY_STATE);
        let _ = vmwrite(VmcsField::GUEST_INTERRUPTIBILITY_STATE, blocking & !BLOCKING_BY_NMI);
    }
    let interrupted = Interruption::interrupted_vmx(vectoring, exit_field(VmcsField::IDT_VECTORING_ERROR_CODE) as u32);
    Exit { reason, rip, instruction_length, interrupted }
}

/// A CR0 or CR4 write (a host-owned bit differs from the read shadow).
/// CR8 accesses are not emulated here.
fn cr_access(q: CrAccessQualification) -> Option<CrAccess> {
    match q.access_type() {
        CrAccessType::MovToCr if q.cr() == 0 || q.cr() == 4 => {
            Some(CrAccess::Mov { cr: q.cr(), gpr: q.gpr().number() })
        }
        CrAccessType::Clts => Some(CrAccess::Clts),
        CrAccessType::Lmsw => Some(CrAccess::Lmsw(q.lmsw_source())),
        _ => None,
    }
}

/// An intercepted #DB or #AC (`REFLECTED_EXCEPTIONS`), made ready to be
/// delivered as it would have been without the exit. A #DB caused no
/// change to DR6 or DR7 (SDM Vol. 3C §28.1): its causes are in the exit
/// qualification, so DR6 gets them and DR7.GD is cleared for a BD, as
/// delivery does. ICEBP's #DB (a privileged software exception) goes back
/// as one, with its length.
fn reflected_exception(info: InterruptionInfo, state: &mut VpState) -> Option<Interruption> {
    use VmcsField as F;
    let kind = info.interruption_type();
    let event = match info.vector() {
        vector::DEBUG if kind == InterruptionType::PRIVILEGED_SOFTWARE_EXCEPTION => Interruption {
            kind: tlfs::HvX64PendingInterruptionType::PRIVILEGED_SOFTWARE_EXCEPTION,
            vector: vector::DEBUG,
            error_code: None,
            instruction_length: exit_field(F::VM_EXIT_INSTRUCTION_LENGTH).clamp(1, 15) as u8,
        },
        vector::DEBUG if kind == InterruptionType::HARDWARE_EXCEPTION => Interruption::exception(vector::DEBUG, None),
        vector::ALIGNMENT_CHECK if kind == InterruptionType::HARDWARE_EXCEPTION => Interruption::exception(
            vector::ALIGNMENT_CHECK,
            Some(exit_field(F::VM_EXIT_INTERRUPTION_ERROR_CODE) as u32),
        ),
        _ => return None,
    };
    let mut interruptibility = exit_field(F::GUEST_INTERRUPTIBILITY_STATE);
    // A fault in an IRET that unblocked NMIs leaves them blocked again.
    if info.nmi_unblocking_due_to_iret() {
        interruptibility |= BLOCKING_BY_NMI;
    }
    if event.vector == vector::DEBUG {
        let causes = exit_field(F::EXIT_QUALIFICATION);
        state.dr6 = debugreg::dr6_after_debug_exception(state.dr6, causes);
        if causes & debugreg::DR6_BD != 0 {
            let _ = vmwrite(F::GUEST_DR7, exit_field(F::GUEST_DR7) & !debugreg::DR7_GD);
        }
        // With TF set under STI or MOV SS blocking, VM entry insists on a
        // pending single step (SDM Vol. 3C §27.3.1.5), which the exit on the
        // #DB did not record.
        if exit_field(F::GUEST_RFLAGS) & RFLAGS_TF != 0
            && interruptibility & (BLOCKING_BY_STI | BLOCKING_BY_MOV_SS) != 0
        {
            let pending = exit_field(F::GUEST_PENDING_DEBUG_EXCEPTIONS) | debugreg::DR6_BS;
            let _ = vmwrite(F::GUEST_PENDING_DEBUG_EXCEPTIONS, pending);
        }
    }
    let _ = vmwrite(F::GUEST_INTERRUPTIBILITY_STATE, interruptibility);
    Some(event)
}
