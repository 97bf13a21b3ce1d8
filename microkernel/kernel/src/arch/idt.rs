//! The IDT, the entry stubs and the trap dispatcher.
//!
//! Every vector the kernel installs enters one assembly path that saves the
//! general registers into a [`TrapFrame`] and calls [`trap_dispatch`]. A CPU
//! exception in ring 0 is a kernel bug: it is reported with the full register
//! state and the system powers off with a failure status, never hangs. An
//! NMI is not an error: it is counted ([`super::nmi`]) in any context.

use super::gdt::{IST_DOUBLE_FAULT, IST_MACHINE_CHECK, IST_NMI, KERNEL_CODE};
use core::arch::global_asm;
use core::ptr::addr_of;
use x86::Ring;
use x86::bits64::segmentation::Descriptor64;
use x86::dtables::{DescriptorTablePointer, lidt};
use x86::segmentation::{BuildDescriptor, DescriptorBuilder, GateDescriptorBuilder};

/// The local APIC timer's vector.
pub const TIMER_VECTOR: u8 = 32;
/// The debug exception's (#DB) and the NMI's vectors.
const DEBUG_VECTOR: u64 = 1;
const NMI_VECTOR: u64 = 2;
const MACHINE_CHECK_VECTOR: u64 = kerncore::mce::VECTOR as u64;
/// The local APIC's spurious-interrupt vector.
pub const SPURIOUS_VECTOR: u8 = 255;

/// Register state saved by the entry stubs, in push order reversed.
///
/// As a thread's context it is also where the CPU pushes the interrupt
/// frame (TSS.RSP0 points at its end), and the CPU aligns that push to 16
/// bytes: hence the alignment, with a size that is a multiple of 16.
#[repr(C, align(16))]
#[derive(Clone, Debug, Default)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>().is_multiple_of(16));

impl TrapFrame {
    pub const ZERO: TrapFrame = TrapFrame {
        r15: 0,
        r14: 0,
        r13: 0,
        r12: 0,
        r11: 0,
        r10: 0,
        r9: 0,
        r8: 0,
        rbp: 0,
        rdi: 0,
        rsi: 0,
        rdx: 0,
        rcx: 0,
        rbx: 0,
        rax: 0,
        vector: 0,
        error_code: 0,
        rip: 0,
        cs: 0,
        rflags: 0,
        rsp: 0,
        ss: 0,
    };
}

/// Pops the general registers `save_trap_gprs` pushed, leaving RSP at the
/// frame's vector field: the one restore sequence of every [`TrapFrame`]
/// exit path (`resume_user` in `entry` too).
macro_rules! restore_trap_gprs {
    () => {
        "
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax"
    };
}
pub(crate) use restore_trap_gprs;

/// Pushes the general registers in [`TrapFrame`] order, below the vector:
/// the one save sequence of every entry (`syscall_entry` in `entry` too).
macro_rules! save_trap_gprs {
    () => {
        "
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15"
    };
}
pub(crate) use save_trap_gprs;

// Stubs: vectors with a CPU-pushed error code push only the vector; the
// others push a zero first so every frame has the same shape.
global_asm!(
    r#"
    .section .text
    .irp vec, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31,33,255
    .balign 16
isr_\vec:
    push 0
    push \vec
    jmp isr_common
    .endr

    /* The timer (vector 32). From ring 0 (a VM exit's, or idle's, window
       for pending interrupts) it needs no TrapFrame: only the registers
       the SysV ABI lets `timer_interrupt` clobber are saved (9 pushes keep
       RSP 16-byte aligned at the call). From ring 3: the common path. */
    .balign 16
isr_32:
    push 0
    push 32
    test qword ptr [rsp + 24], 3
    jnz isr_common
    push rax
    push rcx
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    cld
    call {timer}
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rax
    add rsp, 16
    iretq

    /* Device interrupts (GSI 0..31 on vectors 48..79). */
    .irp vec, 48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70,71,72,73,74,75,76,77,78,79
    .balign 16
isr_\vec:
    push 0
    push \vec
    jmp isr_common
    .endr

    .irp vec, 8,10,11,12,13,14,17,21,29,30
    .balign 16
isr_\vec:
    push \vec
    jmp isr_common
    .endr

isr_common:
    /* A trap from ring 3 lands in the current thread's context (TSS.RSP0
       points at its end) and needs the kernel's GS; one from ring 0 is on
       the current kernel stack. NMI, #DF and #MC arrive on their IST
       stacks, not in a thread's context: they always take
       the kernel path, which never touches GS: the NMI, which is not
       fatal, may arrive before or after any SWAPGS. Decided once, here. */
    cmp qword ptr [rsp], 2
    je isr_kernel
    cmp qword ptr [rsp], 8
    je isr_kernel
    cmp qword ptr [rsp], 18
    je isr_kernel
    test qword ptr [rsp + 24], 3
    jz isr_kernel
    swapgs
    /* From ring 3 (the syscall entry builds its own frame and joins
       user_trap_common directly). */
"#,
    save_trap_gprs!(),
    r#"
    jmp user_trap_common
isr_kernel:
"#,
    save_trap_gprs!(),
    r#"
    cld
    mov rdi, rsp
    call {dispatch}
"#,
    restore_trap_gprs!(),
    r#"
    add rsp, 16
    iretq

    .section .rodata
    .balign 8
    .global isr_table
isr_table:
    .irp vec, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33
    .quad isr_\vec
    .endr
    .global isr_device_table
isr_device_table:
    .irp vec, 48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70,71,72,73,74,75,76,77,78,79
    .quad isr_\vec
    .endr
    .global isr_spurious
isr_spurious:
    .quad isr_255
"#,
    dispatch = sym trap_dispatch,
    timer = sym timer_interrupt,
);

unsafe extern "C" {
    static isr_table: [u64; 34];
    static isr_device_table: [u64; 32];
    static isr_spurious: u64;
}

static mut IDT: [Descriptor64; 256] = [Descriptor64::NULL; 256];

fn gate(handler: u64, ist: u8) -> Descriptor64 {
    let builder = <DescriptorBuilder as GateDescriptorBuilder<u64>>::interrupt_descriptor(KERNEL_CODE, handler)
        .present()
        .dpl(Ring::Ring0);
    let builder = if ist != 0 { builder.ist(ist) } else { builder };
    builder.finish()
}

/// Installs the exception, timer, IPI and spurious vectors and loads the IDT.
pub fn init() {
    // SAFETY: boot CPU, interrupts disabled: nothing else touches the IDT
    // while it is written. The stub table comes from the assembly above and
    // has exactly 34 entries; the IDT is a static, so it outlives its use.
    unsafe {
        let stubs = &*addr_of!(isr_table);
        let idt = &mut *core::ptr::addr_of_mut!(IDT);
        for (vector, &stub) in stubs.iter().enumerate() {
            let ist = match vector {
                2 => IST_NMI,
                8 => IST_DOUBLE_FAULT,
                18 => IST_MACHINE_CHECK,
                _ => 0,
            };
            idt[vector] = gate(stub, ist);
        }
        for (i, &stub) in (*addr_of!(isr_device_table)).iter().enumerate() {
            idt[usize::from(super::ioapic::GSI_VECTOR_BASE) + i] = gate(stub, 0);
        }
        idt[usize::from(SPURIOUS_VECTOR)] = gate(*addr_of!(isr_spurious), 0);
    }
    load();
}

/// Loads the IDT (which every CPU shares) on this CPU.
pub fn load() {
    // SAFETY: the IDT is a static that outlives its use; after `init` on
    // the boot CPU, before any AP starts, nothing writes it again.
    unsafe { lidt(&DescriptorTablePointer::new(&*core::ptr::addr_of!(IDT))) };
}

/// The GSI a device-interrupt vector stands for.
pub fn device_gsi(vector: u64) -> Option<u32> {
    let base = u64::from(super::ioapic::GSI_VECTOR_BASE);
    (base..base + u64::from(super::ioapic::MAX_GSIS)).contains(&vector).then(|| (vector - base) as u32)
}

/// The timer interrupt in ring 0 (`isr_32`).
extern "C" fn timer_interrupt() {
    super::apic::on_timer();
}

extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    // The timer first, without the frame the other vectors' handlers need.
    if frame.vector == u64::from(TIMER_VECTOR) {
        super::apic::on_timer();
    } else {
        dispatch_other(frame);
    }
}

#[inline(never)]
fn dispatch_other(frame: &mut TrapFrame) {
    match frame.vector {
        v if v == u64::from(SPURIOUS_VECTOR) => {}
        v if v == u64::from(super::ipi::IPI_VECTOR) => {
            super::apic::end_of_interrupt();
            super::ipi::serve();
        }
        v if device_gsi(v).is_some() => super::apic::on_device_interrupt(device_gsi(v).unwrap_or(0)),
        NMI_VECTOR => {
            super::lockup::on_nmi(frame);
            super::nmi::on_nmi(frame.cs & 3 != 0)
        }
        MACHINE_CHECK_VECTOR => super::mce::on_exception(frame.rip, frame.cs & 3 != 0),
        DEBUG_VECTOR if frame.cs & 3 == 0 => resume_after_stray_breakpoint(frame),
        _ => fatal_exception(frame),
    }
}

/// Ring-0 #DBs resumed by [`resume_after_stray_breakpoint`].
static STRAY_DEBUG_EXCEPTIONS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// A #DB in ring 0, which arms no breakpoint and never single-steps: an
/// instruction breakpoint a guest armed that the emulator left armed after
/// its exit (`dr`), until `dr::disarm_after_exit` undoes it. It may come
/// before the host's GS and TR are back in the world switch, so this
/// touches neither: RF lets the instruction run once without the
/// breakpoint.
fn resume_after_stray_breakpoint(frame: &mut TrapFrame) {
    STRAY_DEBUG_EXCEPTIONS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    frame.rflags |= x86defs::RFLAGS_RF;
}

/// Ring-0 #DBs resumed so far (stray guest breakpoints, see `dr`).
pub fn stray_debug_exceptions() -> u64 {
    STRAY_DEBUG_EXCEPTIONS.load(core::sync::atomic::Ordering::Relaxed)
}

/// The mnemonic of exception `vector` (e.g. "#UD"), "#??" past 31.
pub fn exception_name(vector: u64) -> &'static str {
    EXCEPTIONS.get(vector as usize).map_or("#??", |(mnemonic, _)| mnemonic)
}

const EXCEPTIONS: [(&str, &str); 32] = [
    ("#DE", "divide error"),
    ("#DB", "debug"),
    ("NMI", "non-maskable interrupt"),
    ("#BP", "breakpoint"),
    ("#OF", "overflow"),
    ("#BR", "bound range exceeded"),
    ("#UD", "invalid opcode"),
    ("#NM", "device not available"),
    ("#DF", "double fault"),
    ("#MF", "coprocessor segment overrun"),
    ("#TS", "invalid TSS"),
    ("#NP", "segment not present"),
    ("#SS", "stack-segment fault"),
    ("#GP", "general protection"),
    ("#PF", "page fault"),
    ("#15", "reserved"),
    ("#MF", "x87 floating-point error"),
    ("#AC", "alignment check"),
    ("#MC", "machine check"),
    ("#XM", "SIMD floating-point"),
    ("#VE", "virtualization exception"),
    ("#CP", "control protection"),
    ("#22", "reserved"),
    ("#23", "reserved"),
    ("#24", "reserved"),
    ("#25", "reserved"),
    ("#26", "reserved"),
    ("#27", "reserved"),
    ("#HV", "hypervisor injection"),
    ("#VC", "VMM communication"),
    ("#SX", "security exception"),
    ("#31", "reserved"),
];

/// Decodes a page-fault error code (SDM Vol. 3 §4.7).
fn page_fault_cause(code: u64) -> (&'static str, &'static str, &'static str) {
    let presence = if code & 1 != 0 { "protection violation" } else { "not present" };
    let access = if code & (1 << 4) != 0 {
        "instruction fetch"
    } else if code & 2 != 0 {
        "write"
    } else {
        "read"
    };
    let mode = if code & 4 != 0 { "user" } else { "supervisor" };
    (presence, access, mode)
}

fn fatal_exception(frame: &TrapFrame) -> ! {
    use platform::console_write_emergency as out;
    let (mnemonic, name) = EXCEPTIONS.get(frame.vector as usize).copied().unwrap_or(("#??", "unknown vector"));
    out(format_args!("\nEXCEPTION: {mnemonic} {name} (vector {})\n", frame.vector));
    out(format_args!("  error={:#x}", frame.error_code));
    if frame.vector == 14 {
        let (presence, access, mode) = page_fault_cause(frame.error_code);
        out(format_args!(" ({presence}, {access}, {mode})"));
    }
    let cr2 = super::cpu::cr2();
    out(format_args!("\n  rip={:#018x} cs={:#x} rflags={:#x}\n", frame.rip, frame.cs, frame.rflags));
    out(format_args!("  rsp={:#018x} ss={:#x} cr2={:#018x} cr3={:#x}\n", frame.rsp, frame.ss, cr2, super::cpu::cr3()));
    out(format_args!("  where: rip {}; cr2 {}\n", super::memory::describe(frame.rip), super::memory::describe(cr2)));
    let regs = [
        ("rax", frame.rax),
        ("rbx", frame.rbx),
        ("rcx", frame.rcx),
        ("rdx", frame.rdx),
        ("rsi", frame.rsi),
        ("rdi", frame.rdi),
        ("rbp", frame.rbp),
        ("r8", frame.r8),
        ("r9", frame.r9),
        ("r10", frame.r10),
        ("r11", frame.r11),
        ("r12", frame.r12),
        ("r13", frame.r13),
        ("r14", frame.r14),
        ("r15", frame.r15),
    ];
    for row in regs.chunks(4) {
        out(format_args!(" "));
        for (name, value) in row {
            out(format_args!(" {name}={value:#018x}"));
        }
        out(format_args!("\n"));
    }
    // SAFETY: reading the segment-base MSRs, which every x86-64 CPU has.
    let (gs, kernel_gs) =
        unsafe { (x86::msr::rdmsr(x86::msr::IA32_GS_BASE), x86::msr::rdmsr(x86::msr::IA32_KERNEL_GSBASE)) };
    out(format_args!("  gs_base={gs:#018x} kernel_gs_base={kernel_gs:#018x}\n"));
    out(format_args!("  backtrace:"));
    for address in backtrace(frame.rbp, frame.rsp) {
        out(format_args!(" {address:#x}"));
    }
    out(format_args!("\n"));
    platform::power_off(platform::ExitStatus::CpuException)
}

/// Frames a ring-0 backtrace follows at most.
const BACKTRACE_FRAMES: usize = 16;

/// Return addresses along the frame-pointer chain (the kernel is built with
/// frame pointers) from `rbp`, when the fault happened on a kernel stack:
/// only links that stay on that stack above `rsp` and move up it are
/// followed, so a broken chain ends the walk instead of faulting again.
pub fn backtrace(mut rbp: u64, rsp: u64) -> heapless::Vec<u64, BACKTRACE_FRAMES> {
    let mut out = heapless::Vec::new();
    let Some(top) = super::percpu::stack_top_containing(rsp) else { return out };
    while rbp >= rsp && rbp.saturating_add(16) <= top && rbp.is_multiple_of(8) && !out.is_full() {
        // SAFETY: `rbp` lies on the faulting kernel stack, between RSP and
        // its top (checked), where a frame holds the caller's RBP and then
        // the return address.
        let (next, ret) =
            unsafe { (core::ptr::read_volatile(rbp as *const u64), core::ptr::read_volatile((rbp + 8) as *const u64)) };
        let _ = out.push(ret);
        if next <= rbp {
            break;
        }
        rbp = next;
    }
    out
}
