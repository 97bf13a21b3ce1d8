//! Ring-3 entry and exit: `syscall`, traps from user mode, and the one path
//! back to user mode.
//!
//! The current thread's context is a `TrapFrame` in its thread control
//! block. Entry stubs push the user state straight into it (syscall by
//! switching RSP to its end, interrupts because TSS.RSP0 points there), then
//! run the kernel on the per-CPU kernel stack. The kernel returns the
//! context to resume, possibly another thread's; the exit path pops it and
//! leaves with `sysretq` when that restores exactly what `iretq` would
//! (see `resume_user`), else with `iretq`.

use super::gdt::{KERNEL_CODE, USER_CODE, USER_DATA};
use super::idt::{TrapFrame, restore_trap_gprs, save_trap_gprs};
use super::percpu::{OFFSET_CONTEXT_END, OFFSET_KERNEL_STACK, OFFSET_USER_RSP};
use core::arch::global_asm;
use core::mem::offset_of;
use x86::msr::{IA32_EFER, IA32_FMASK, IA32_LSTAR, IA32_STAR, rdmsr, wrmsr};
use x86defs::{EFER_SCE, RFLAGS_AC, RFLAGS_DF, RFLAGS_FIXED, RFLAGS_IF, RFLAGS_NT, RFLAGS_RF, RFLAGS_TF};

/// Vector number recorded in the frame of a `syscall` entry.
pub const SYSCALL_VECTOR: u64 = 0x100;

/// RFLAGS bits cleared on `syscall`: TF, IF, DF, NT, AC (so SMAP stays
/// armed). A task may set NT (`popfq` changes it at CPL 3), and `iretq`
/// with NT set raises #GP in 64-bit mode: in ring 0, on the way back.
const SYSCALL_RFLAGS_MASK: u64 = RFLAGS_TF | RFLAGS_IF | RFLAGS_DF | RFLAGS_NT | RFLAGS_AC;

global_asm!(
    r#"
    .section .text
    .global syscall_entry
    .balign 16
syscall_entry:
    swapgs
    mov gs:[{user_rsp}], rsp
    mov rsp, gs:[{context_end}]
    push {user_ss}
    push qword ptr gs:[{user_rsp}]
    push r11
    push {user_cs}
    push rcx
    push 0
    push {syscall_vector}
"#,
    save_trap_gprs!(),
    r#"
    /* A syscall is always from ring 3: on to the common path directly,
       without the interrupt stubs' checks of vector and CS. */
    .global user_trap_common
user_trap_common:
    cld
    mov rdi, rsp
    mov rsp, gs:[{kernel_stack}]
    call {user_trap}
    /* rax: the context to resume. */

    .global resume_user
resume_user:
    mov rsp, rax
    /* SYSRET loads RIP from RCX and RFLAGS from R11 and the user
       selectors from STAR: it resumes what IRETQ would when the frame's
       RCX and R11 equal its RIP and RFLAGS (a thread back from its own
       SYSCALL), CS and SS are the user's, RIP is in the lower canonical
       half (Intel raises #GP in ring 0 on a non-canonical one) and TF and
       RF are clear (SYSRET cannot restore RF and traps TF one instruction
       late). Anything else leaves with IRETQ. */
    mov rcx, [rsp + {rip}]
    cmp rcx, [rsp + {rcx}]
    jne 790f
    shr rcx, 47
    jnz 790f
    mov r11, [rsp + {rflags}]
    cmp r11, [rsp + {r11}]
    jne 790f
    test r11, {tf_rf}
    jnz 790f
    cmp qword ptr [rsp + {cs}], {user_cs}
    jne 790f
    cmp qword ptr [rsp + {ss}], {user_ss}
    jne 790f
"#,
    restore_trap_gprs!(),
    r#"
    /* The user's RSP, then VERW (MDS) as the last memory access, as
       Linux orders it; nothing is written on the user stack in ring 0
       (NMI and #MC run on their own stacks). */
    mov rsp, [rsp + {rsp_after_gprs}]
    cmp byte ptr [rip + {verw_on}], 0
    je 791f
    verw word ptr [rip + {verw_selector}]
791:
    swapgs
    sysretq
790:
"#,
    restore_trap_gprs!(),
    r#"
    add rsp, 16
    swapgs
    /* Clear CPU buffers (MDS) where needed; IRETQ restores the flags. */
    cmp byte ptr [rip + {verw_on}], 0
    je 781f
    verw word ptr [rip + {verw_selector}]
781:
    iretq
"#,
    user_rsp = const OFFSET_USER_RSP,
    context_end = const OFFSET_CONTEXT_END,
    kernel_stack = const OFFSET_KERNEL_STACK,
    user_ss = const USER_DATA.bits() as u64,
    user_cs = const USER_CODE.bits() as u64,
    syscall_vector = const SYSCALL_VECTOR,
    user_trap = sym user_trap,
    verw_on = sym super::speculation::VERW_ON_USER_RETURN,
    verw_selector = sym super::speculation::VERW_SELECTOR,
    rip = const offset_of!(TrapFrame, rip),
    rcx = const offset_of!(TrapFrame, rcx),
    rflags = const offset_of!(TrapFrame, rflags),
    r11 = const offset_of!(TrapFrame, r11),
    cs = const offset_of!(TrapFrame, cs),
    ss = const offset_of!(TrapFrame, ss),
    rsp_after_gprs = const offset_of!(TrapFrame, rsp) - offset_of!(TrapFrame, vector),
    tf_rf = const RFLAGS_TF | RFLAGS_RF,
);

unsafe extern "C" {
    fn syscall_entry();
    fn resume_user();
}

/// Enables `syscall` and points it at the entry stub.
pub fn init() {
    // SAFETY: standard SYSCALL set-up. STAR's kernel half selects the
    // kernel code/data pair; its user half makes SYSRET load
    // USER_CODE/USER_DATA (`resume_user` checks the frame holds those).
    unsafe {
        wrmsr(IA32_EFER, rdmsr(IA32_EFER) | EFER_SCE);
        let sysret_base = u64::from(USER_DATA.bits() & !3) - 8;
        wrmsr(IA32_STAR, (sysret_base << 48) | (u64::from(KERNEL_CODE.bits()) << 32));
        wrmsr(IA32_LSTAR, syscall_entry as *const () as u64);
        wrmsr(IA32_FMASK, SYSCALL_RFLAGS_MASK);
    }
}

/// A fresh user context: `rip`, `rsp`, first argument in `rdi`, IF set.
pub fn user_frame(rip: u64, rsp: u64, rdi: u64) -> TrapFrame {
    TrapFrame {
        rip,
        rsp,
        rdi,
        cs: u64::from(USER_CODE.bits()),
        ss: u64::from(USER_DATA.bits()),
        rflags: RFLAGS_IF | RFLAGS_FIXED,
        ..TrapFrame::default()
    }
}

/// A thread's context registered with `percpu::set_context`, in an address
/// space CR3 already holds: the only thing the return path resumes.
pub struct UserContext(*mut TrapFrame);

impl UserContext {
    /// # Safety
    /// `context` must be registered with `percpu::set_context` (and stay
    /// valid as that requires), a valid user frame, in an address space CR3
    /// already holds.
    pub unsafe fn new(context: *mut TrapFrame) -> UserContext {
        UserContext(context)
    }
}

/// Called by the stubs with the saved context of the thread that trapped.
extern "C" fn user_trap(frame: *mut TrapFrame) -> *mut TrapFrame {
    // SAFETY: the stub just saved the trapping thread's registers into
    // `frame`, its context in the static kernel state; until this CPU says
    // it is back in ring 0 (`ipi::back`, inside `from_user`) no other CPU
    // touches that context, so this read races with nothing.
    let vector = unsafe { (*frame).vector };
    crate::trap::from_user(vector).0
}

/// Leaves the boot path for the first user thread and never comes back.
pub fn enter_user(context: UserContext) -> ! {
    // SAFETY: `UserContext::new`'s caller guaranteed the context is
    // registered, a user frame, in the loaded address space; `resume_user`
    // expects GS to hold the kernel's per-CPU base (it swaps to the user's)
    // and RAX the context.
    unsafe {
        core::arch::asm!(
            // Interrupts off: a timer interrupt between the exit path's
            // SWAPGS and its IRETQ/SYSRETQ would run in ring 0 on the
            // user's GS (seen once: a boot that had left IF set).
            "cli",
            "jmp {resume}",
            resume = sym resume_user,
            in("rax") context.0,
            options(noreturn)
        )
    }
}
