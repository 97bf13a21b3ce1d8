//! Per-CPU state reached through GS while in ring 0.
//!
//! Entry stubs address these fields by fixed offsets, so the layout is
//! `repr(C)` and pinned by the assertions below. Only the boot CPU exists
//! for now; each CPU will get its own copy when the APs are started.

use core::ptr::addr_of_mut;
use x86::msr::{IA32_GS_BASE, IA32_KERNEL_GSBASE, wrmsr};

/// Size of the stack the kernel runs on after a trap from ring 3.
const KERNEL_STACK_SIZE: usize = 32 * 1024;

#[repr(C)]
pub struct PerCpu {
    /// Address of this structure (for `mov rax, gs:[0]`).
    pub self_ptr: u64,
    /// The user RSP while a syscall entry switches stacks.
    pub user_rsp_scratch: u64,
    /// Top of this CPU's kernel stack.
    pub kernel_stack_top: u64,
    /// The current thread's saved context (a `TrapFrame`).
    pub context: u64,
    /// One past the end of that context: syscall entry pushes down from here,
    /// and TSS.RSP0 equals it so the CPU does the same on interrupts.
    pub context_end: u64,
}

pub const OFFSET_USER_RSP: usize = 8;
pub const OFFSET_KERNEL_STACK: usize = 16;
pub const OFFSET_CONTEXT_END: usize = 32;
const _: () = assert!(core::mem::offset_of!(PerCpu, user_rsp_scratch) == OFFSET_USER_RSP);
const _: () = assert!(core::mem::offset_of!(PerCpu, kernel_stack_top) == OFFSET_KERNEL_STACK);
const _: () = assert!(core::mem::offset_of!(PerCpu, context_end) == OFFSET_CONTEXT_END);

#[repr(C, align(16))]
struct KernelStack([u8; KERNEL_STACK_SIZE]);

static mut BSP_STACK: KernelStack = KernelStack([0; KERNEL_STACK_SIZE]);
static mut BSP: PerCpu = PerCpu { self_ptr: 0, user_rsp_scratch: 0, kernel_stack_top: 0, context: 0, context_end: 0 };

/// Points GS at the boot CPU's structure.
pub fn init_bsp() {
    // SAFETY: boot CPU, interrupts off, before any user code runs: nothing
    // else accesses BSP. GS_BASE is ours in ring 0; KERNEL_GS_BASE holds the
    // user value (0) that `swapgs` exchanges on the way out.
    unsafe {
        let cpu = &mut *addr_of_mut!(BSP);
        cpu.self_ptr = addr_of_mut!(BSP) as u64;
        cpu.kernel_stack_top = addr_of_mut!(BSP_STACK) as u64 + KERNEL_STACK_SIZE as u64;
        wrmsr(IA32_GS_BASE, cpu.self_ptr);
        wrmsr(IA32_KERNEL_GSBASE, 0);
    }
}

/// Makes `context` (a `TrapFrame` of `len` bytes) the one entries save into.
///
/// # Safety
/// `context` must stay valid and unaliased until the next call, and the
/// caller must hold off interrupts while switching.
pub unsafe fn set_context(context: u64, len: u64) {
    // SAFETY: interrupts are off (caller), so no entry stub reads the fields
    // while they change; the TSS update keeps RSP0 equal to `context_end`.
    unsafe {
        let cpu = &mut *addr_of_mut!(BSP);
        cpu.context = context;
        cpu.context_end = context + len;
        super::gdt::set_rsp0(context + len);
    }
}
