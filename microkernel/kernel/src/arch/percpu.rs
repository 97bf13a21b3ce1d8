//! Per-CPU state reached through GS while in ring 0.
//!
//! Entry stubs address these fields by fixed offsets, so the layout is
//! `repr(C)` and pinned by the assertions below. Each CPU has its own
//! entry of [`CPUS`], by its index: 0 is the boot CPU, the APs get theirs
//! from `arch::smp` in the order they are started.

use super::smp::MAX_CPUS;
use core::cell::UnsafeCell;
use core::ptr::addr_of_mut;
use x86::msr::{IA32_GS_BASE, IA32_KERNEL_GSBASE, wrmsr};

/// Size of the stack the kernel runs on after a trap from ring 3.
pub const KERNEL_STACK_SIZE: usize = 32 * 1024;

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
    /// This CPU's index in every per-CPU table.
    pub index: u64,
    /// Its local APIC's ID, as the CPU itself read it.
    pub apic_id: u64,
}

pub const OFFSET_USER_RSP: usize = 8;
pub const OFFSET_KERNEL_STACK: usize = 16;
pub const OFFSET_CONTEXT_END: usize = 32;
const OFFSET_INDEX: usize = 40;
const _: () = assert!(core::mem::offset_of!(PerCpu, user_rsp_scratch) == OFFSET_USER_RSP);
const _: () = assert!(core::mem::offset_of!(PerCpu, kernel_stack_top) == OFFSET_KERNEL_STACK);
const _: () = assert!(core::mem::offset_of!(PerCpu, context_end) == OFFSET_CONTEXT_END);
const _: () = assert!(core::mem::offset_of!(PerCpu, index) == OFFSET_INDEX);

#[repr(C, align(16))]
struct KernelStack([u8; KERNEL_STACK_SIZE]);

static mut BSP_STACK: KernelStack = KernelStack([0; KERNEL_STACK_SIZE]);
static mut CPUS: [PerCpu; MAX_CPUS] = [const {
    PerCpu { self_ptr: 0, user_rsp_scratch: 0, kernel_stack_top: 0, context: 0, context_end: 0, index: 0, apic_id: 0 }
}; MAX_CPUS];

/// Points GS at CPU `index`'s structure, on that CPU.
fn init(index: usize, stack_top: u64) {
    assert!(index < MAX_CPUS, "bad CPU index {index}");
    // SAFETY: each CPU initialises only its own entry (`index` is distinct
    // per CPU: 0 for the boot CPU, one the boot CPU handed each AP), with
    // interrupts off, before anything reads it through GS. GS_BASE is
    // ours in ring 0; KERNEL_GS_BASE holds the user value (0) that
    // `swapgs` exchanges on the way out.
    unsafe {
        let cpu = &mut (*addr_of_mut!(CPUS))[index];
        cpu.self_ptr = core::ptr::from_mut(cpu) as u64;
        cpu.kernel_stack_top = stack_top;
        cpu.index = index as u64;
        wrmsr(IA32_GS_BASE, cpu.self_ptr);
        wrmsr(IA32_KERNEL_GSBASE, 0);
    }
}

/// Points GS at the boot CPU's structure (index 0). Its APIC ID is filled
/// in once the local APIC is up ([`set_apic_id`]).
pub fn init_bsp() {
    init(0, addr_of_mut!(BSP_STACK) as u64 + KERNEL_STACK_SIZE as u64);
}

/// Points GS at an AP's structure, on that AP. Its APIC ID is filled in
/// once its local APIC is up ([`set_apic_id`]).
pub fn init_ap(index: usize, stack_top: u64) {
    assert!(index != 0, "index 0 is the boot CPU's");
    init(index, stack_top);
}

/// Records this CPU's APIC ID.
pub fn set_apic_id(apic_id: u32) {
    // SAFETY: GS points at this CPU's own entry (`init`), which only this
    // CPU writes; interrupts cannot change it meanwhile.
    unsafe { (*current()).apic_id = u64::from(apic_id) };
}

/// This CPU's entry.
fn current() -> *mut PerCpu {
    let ptr: u64;
    // SAFETY: in ring 0 GS_BASE points at this CPU's entry (set by `init`
    // before anything calls this), whose first field is its own address.
    unsafe { core::arch::asm!("mov {}, gs:[0]", out(reg) ptr, options(nostack, readonly, preserves_flags)) };
    ptr as *mut PerCpu
}

/// A value each CPU has its own of, used only by that CPU with interrupts
/// off: no lock, since nothing else can reach it meanwhile.
pub struct CpuLocal<T>([UnsafeCell<T>; MAX_CPUS]);

// SAFETY: each CPU only ever touches its own entry (`with`), so no entry
// is shared between CPUs.
unsafe impl<T: Send> Sync for CpuLocal<T> {}

impl<T> CpuLocal<Option<T>> {
    /// Every CPU's value `None`.
    pub const fn empty() -> Self {
        CpuLocal([const { UnsafeCell::new(None) }; MAX_CPUS])
    }
}

impl<T> CpuLocal<T> {
    /// Runs `f` on this CPU's value. Interrupts are off, and `f` does not
    /// use this `CpuLocal` again.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: the entry is this CPU's own, which no other CPU touches;
        // with interrupts off no handler on this CPU runs meanwhile (NMI
        // and #MC handlers never use a `CpuLocal`), and `f` does not
        // re-enter: this is the only reference for its duration.
        unsafe { f(&mut *self.0[index()].get()) }
    }
}

/// This CPU's entry of a per-CPU table.
pub fn local<T>(table: &'static [T; MAX_CPUS]) -> &'static T {
    &table[index()]
}

/// This CPU's index in every per-CPU table.
pub fn index() -> usize {
    let index: u64;
    // SAFETY: as for `current`: GS points at this CPU's entry.
    unsafe {
        core::arch::asm!("mov {}, gs:[{off}]", out(reg) index, off = const OFFSET_INDEX,
            options(nostack, readonly, preserves_flags));
    }
    index as usize
}

/// Makes `context` (a `TrapFrame` of `len` bytes) the one entries save into.
///
/// # Safety
/// `context` must stay valid and unaliased until the next call, and the
/// caller must hold off interrupts while switching.
pub unsafe fn set_context(context: u64, len: u64) {
    // SAFETY: interrupts are off (caller), so no entry stub reads the fields
    // while they change; this CPU's entry is written only by this CPU; the
    // TSS update keeps RSP0 equal to `context_end`.
    unsafe {
        let cpu = &mut *current();
        cpu.context = context;
        cpu.context_end = context + len;
        super::gdt::set_rsp0(cpu.index as usize, context + len);
    }
}

/// The top of the kernel stack (of any CPU) that holds `address`, found
/// without GS, which a fault report cannot trust.
pub fn stack_top_containing(address: u64) -> Option<u64> {
    (0..MAX_CPUS).find_map(|c| {
        // SAFETY: a plain read of a CPU entry's stack top, which its CPU
        // set once at start (`init`) before any fault it could report.
        let top = unsafe { (*addr_of_mut!(CPUS))[c].kernel_stack_top };
        (top != 0 && address < top && address >= top - KERNEL_STACK_SIZE as u64).then_some(top)
    })
}
