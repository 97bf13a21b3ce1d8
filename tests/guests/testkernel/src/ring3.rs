//! A short trip to CPL 3 for the tests that need it (#AC, XSETBV, VMXON
//! and VMRUN at CPL 3).
//!
//! [`call`] loads a GDT with user segments and a 64-bit TSS (whose RSP0 is
//! where a fault from CPL 3 lands), makes the kernel image's pages
//! user-accessible, and enters one of the user routines below with IRETQ.
//! A routine ends in the fault under test or, failing that, in `ud2`: the
//! first exception from CPL 3 is recorded by [`trap`], which returns to
//! [`call`]'s caller in ring 0. Everything is put back afterwards.

use crate::hw::TrapFrame;
use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const KERNEL_CODE: u64 = 0x08;
const KERNEL_DATA: u64 = 0x10;
const USER_DATA: u64 = 0x18 | 3;
const USER_CODE: u64 = 0x20 | 3;
const TSS_SELECTOR: u16 = 0x28;
/// RFLAGS bit 1 (always set) and AC (alignment checking at CPL 3).
pub const RFLAGS_FIXED: u64 = 1 << 1;
pub const RFLAGS_AC: u64 = 1 << 18;
/// Page-table entry: user-accessible.
const PTE_USER: u64 = 1 << 2;
const PTE_ADDRESS: u64 = 0x000f_ffff_ffff_f000;

global_asm!(
    r#"
    .section .text
    /* tk_ring3_call(rip: rdi, rsp: rsi, rflags: rdx, argument: rcx) */
    .global tk_ring3_call
tk_ring3_call:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    mov [rip + tk_ring3_kernel_rsp], rsp
    push {user_data}
    push rsi
    push rdx
    push {user_code}
    push rdi
    iretq
    .global tk_ring3_resume
tk_ring3_resume:
    mov rsp, [rip + tk_ring3_kernel_rsp]
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret

    /* The user routines: RCX holds their argument. */
    .global tk_user_load
tk_user_load:
    mov eax, dword ptr [rcx]
    ud2
    .global tk_user_xsetbv
tk_user_xsetbv:
    mov eax, ecx
    xor edx, edx
    xor ecx, ecx
    .global tk_user_xsetbv_insn
tk_user_xsetbv_insn:
    xsetbv
    ud2
    .global tk_user_vmxon
tk_user_vmxon:
    .byte 0xf3, 0x0f, 0xc7, 0x31 /* vmxon [rcx] */
    ud2
    .global tk_user_vmrun
tk_user_vmrun:
    mov rax, rcx
    .global tk_user_vmrun_insn
tk_user_vmrun_insn:
    .byte 0x0f, 0x01, 0xd8 /* vmrun */
    ud2

    .global tk_user_call
tk_user_call:
    mov rax, rcx
    xor ecx, ecx
    call rax
    .global tk_user_call_end
tk_user_call_end:
    ud2

    .section .bss
    .balign 8
tk_ring3_kernel_rsp:
    .skip 8
"#,
    user_data = const USER_DATA,
    user_code = const USER_CODE,
);

unsafe extern "C" {
    fn tk_ring3_call(rip: u64, rsp: u64, rflags: u64, argument: u64);
    fn tk_ring3_resume();
    fn tk_user_load();
    fn tk_user_xsetbv();
    fn tk_user_xsetbv_insn();
    fn tk_user_vmxon();
    fn tk_user_vmrun();
    fn tk_user_vmrun_insn();
    fn tk_user_call();
    fn tk_user_call_end();
}

/// A routine to run at CPL 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routine {
    /// `mov eax, [argument]`.
    Load,
    /// `xsetbv` of XCR0 with `argument`.
    Xsetbv,
    /// `vmxon [argument]`.
    Vmxon,
    /// `vmrun` with RAX = `argument`.
    Vmrun,
    /// `call` to `argument` with RCX = 0 (a VTL call through the
    /// hypercall page); [`Routine::address`] is the `ud2` after it, where a
    /// call that returns ends.
    Call,
}

impl Routine {
    /// Address of the instruction under test.
    pub fn address(self) -> u64 {
        match self {
            Routine::Load => tk_user_load as *const () as u64,
            Routine::Xsetbv => tk_user_xsetbv_insn as *const () as u64,
            Routine::Vmxon => tk_user_vmxon as *const () as u64,
            Routine::Vmrun => tk_user_vmrun_insn as *const () as u64,
            Routine::Call => tk_user_call_end as *const () as u64,
        }
    }

    fn entry(self) -> u64 {
        match self {
            Routine::Load => tk_user_load as *const () as u64,
            Routine::Xsetbv => tk_user_xsetbv as *const () as u64,
            Routine::Vmxon => tk_user_vmxon as *const () as u64,
            Routine::Vmrun => tk_user_vmrun as *const () as u64,
            Routine::Call => tk_user_call as *const () as u64,
        }
    }
}

/// The exception that ended a trip to CPL 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub vector: u8,
    pub error: u64,
    pub rip: u64,
}

#[repr(C, align(16))]
struct Tables(UnsafeCell<([u64; 8], [u32; 26], [u8; 4096])>);

// SAFETY: used by one CPU (the BSP) at a time, with interrupts off.
unsafe impl Sync for Tables {}

/// The GDT, the TSS (104 bytes) and the stack a fault from CPL 3 lands on.
static TABLES: Tables = Tables(UnsafeCell::new(([0; 8], [0; 26], [0; 4096])));

#[repr(C, align(16))]
struct UserStack(UnsafeCell<[u8; 4096]>);

// SAFETY: only the user routines use it, one at a time.
unsafe impl Sync for UserStack {}

static USER_STACK: UserStack = UserStack(UnsafeCell::new([0; 4096]));

static ACTIVE: AtomicBool = AtomicBool::new(false);
static FAULT: AtomicU64 = AtomicU64::new(0);
static FAULT_ERROR: AtomicU64 = AtomicU64::new(0);
static FAULT_RIP: AtomicU64 = AtomicU64::new(0);

/// Memory a user routine may read: inside its stack page.
pub fn user_data() -> u64 {
    USER_STACK.0.get() as u64
}

#[repr(C, packed)]
struct Pointer {
    limit: u16,
    base: u64,
}

fn sgdt() -> Pointer {
    let mut p = Pointer { limit: 0, base: 0 };
    // SAFETY: stores the GDTR into a local.
    unsafe { asm!("sgdt [{}]", in(reg) &mut p, options(nostack, preserves_flags)) }
    p
}

fn lgdt(p: &Pointer) {
    // SAFETY: `p` describes either the boot GDT or `TABLES`'s, both static
    // and with the kernel's code and data at the selectors in use.
    unsafe { asm!("lgdt [{}]", in(reg) p, options(readonly, nostack, preserves_flags)) }
}

/// Sets up the GDT and TSS, returns the GDTR to put back.
fn load_tables() -> Pointer {
    let old = sgdt();
    let tables = TABLES.0.get();
    // SAFETY: one CPU, interrupts off; the tables are static.
    unsafe {
        let (gdt, tss, stack) = &mut *tables;
        let tss_base = tss.as_ptr() as u64;
        let rsp0 = stack.as_ptr() as u64 + stack.len() as u64;
        tss[1] = rsp0 as u32;
        tss[2] = (rsp0 >> 32) as u32;
        // The I/O map base past the limit: no I/O permission bitmap.
        tss[25] = 104 << 16;
        gdt[0] = 0;
        gdt[1] = 0x00af_9b00_0000_ffff;
        gdt[2] = 0x00cf_9300_0000_ffff;
        gdt[3] = 0x00cf_f300_0000_ffff;
        gdt[4] = 0x00af_fb00_0000_ffff;
        // An available 64-bit TSS, limit 103.
        gdt[5] = 103 | (tss_base & 0xff_ffff) << 16 | 0x89 << 40 | (tss_base >> 24 & 0xff) << 56;
        gdt[6] = tss_base >> 32;
        lgdt(&Pointer { limit: (8 * 8 - 1) as u16, base: gdt.as_ptr() as u64 });
        asm!("ltr {0:x}", in(reg) TSS_SELECTOR, options(nostack, preserves_flags));
    }
    old
}

/// The page-table entries that map the kernel image (identity-mapped
/// 2 MiB pages under one PML4 and one PDPT entry), to make them user-
/// accessible or not.
fn set_user(user: bool) {
    let cr3: u64;
    // SAFETY: reads CR3.
    unsafe { asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack, preserves_flags)) }
    let update = |entry: *mut u64| {
        // SAFETY: `entry` is an entry of the kernel's own page tables,
        // which are identity-mapped RAM; only the U bit changes.
        unsafe {
            let value = core::ptr::read_volatile(entry);
            core::ptr::write_volatile(entry, if user { value | PTE_USER } else { value & !PTE_USER });
        }
    };
    let pml4 = (cr3 & PTE_ADDRESS) as *mut u64;
    update(pml4);
    // SAFETY: as above; the kernel image is in the first GiB.
    let pdpt = unsafe { (core::ptr::read_volatile(pml4) & PTE_ADDRESS) as *mut u64 };
    update(pdpt);
    // SAFETY: as above.
    let pd = unsafe { (core::ptr::read_volatile(pdpt) & PTE_ADDRESS) as *mut u64 };
    let kernel = crate::hw::kernel_extent();
    for index in kernel.start >> 21..=(kernel.end - 1) >> 21 {
        // SAFETY: an entry of the page directory mapping the image.
        update(unsafe { pd.add(index as usize) });
    }
    // SAFETY: reloading CR3 flushes the changed translations.
    unsafe { asm!("mov cr3, {}", in(reg) cr3, options(nostack, preserves_flags)) }
}

/// Runs `routine` at CPL 3 with `rflags` and `argument`; returns the
/// exception that ended it.
pub fn call(routine: Routine, rflags: u64, argument: u64) -> Fault {
    let old = load_tables();
    set_user(true);
    FAULT.store(0, Ordering::Relaxed);
    ACTIVE.store(true, Ordering::Relaxed);
    let stack = USER_STACK.0.get() as u64 + 4096;
    // SAFETY: the routine runs at CPL 3 on its own stack in user-accessible
    // pages and ends in an exception, which `trap` turns into a return to
    // `tk_ring3_resume`, restoring the callee-saved registers and RSP.
    unsafe { tk_ring3_call(routine.entry(), stack, rflags | RFLAGS_FIXED, argument) };
    ACTIVE.store(false, Ordering::Relaxed);
    set_user(false);
    lgdt(&old);
    Fault {
        vector: FAULT.load(Ordering::Relaxed) as u8,
        error: FAULT_ERROR.load(Ordering::Relaxed),
        rip: FAULT_RIP.load(Ordering::Relaxed),
    }
}

/// An exception from CPL 3 during [`call`]: recorded, and the return goes
/// to ring 0 instead.
pub fn trap(frame: &mut TrapFrame) -> bool {
    if !ACTIVE.load(Ordering::Relaxed) || frame.cs & 3 != 3 {
        return false;
    }
    ACTIVE.store(false, Ordering::Relaxed);
    FAULT.store(frame.vector, Ordering::Relaxed);
    FAULT_ERROR.store(frame.error, Ordering::Relaxed);
    FAULT_RIP.store(frame.rip, Ordering::Relaxed);
    frame.rip = tk_ring3_resume as *const () as u64;
    frame.cs = KERNEL_CODE;
    frame.ss = KERNEL_DATA;
    frame.rflags = RFLAGS_FIXED;
    true
}
