//! The few instructions a task may need outside a syscall, and the probes
//! of isolation tests (hostile ones among them).

use core::arch::asm;

/// Reads the 8 bytes at `address` and returns them as a plain number.
///
/// For fault tests: an address the task cannot read (unmapped, or the
/// kernel's half) raises a page fault, and the kernel stops the thread and
/// reports it to the supervisor; the call then never returns.
pub fn probe_read(address: u64) -> u64 {
    let value;
    // SAFETY: a single load whose result is only data (never used as a
    // pointer or to build a reference). Nothing is written, so no Rust
    // value can be invalidated; an unreadable address faults into the
    // kernel, which does not resume the thread here.
    unsafe {
        asm!("mov {value}, qword ptr [{address}]", address = in(reg) address, value = lateout(reg) value,
             options(nostack, readonly, preserves_flags));
    }
    value
}

/// Reads port `port` with `in` directly, asking no kernel object.
///
/// For isolation tests: a task may reach ports only through an `IO_PORTS`
/// capability (the kernel does the access), so this must raise a #GP that
/// the kernel reports to the thread's fault endpoint; the call then never
/// returns.
pub fn probe_port_in(port: u16) -> u8 {
    let value: u8;
    // SAFETY: one `in` from a port; it touches no memory. A refused access
    // faults into the kernel, which does not resume the thread here.
    unsafe { asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Writes `value` to port `port` with `out` directly, as [`probe_port_in`]
/// reads: it must fault.
pub fn probe_port_out(port: u16, value: u8) {
    // SAFETY: one `out` to a port; it touches no memory. A refused access
    // faults into the kernel, which does not resume the thread here.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags)) };
}

/// Makes a `GET_TICKS` syscall with RFLAGS.NT (nested task) set, as any
/// task may (`popfq` changes NT at CPL 3), and clears it again; returns the
/// syscall's status word (rax). For the hostile task: the flag must not
/// reach ring 0's `iretq`, which raises #GP with NT set in 64-bit mode.
pub fn syscall_with_nested_task_flag() -> u64 {
    let status;
    // SAFETY: the flag changes only what `iretq` does, and only until the
    // second `popfq`; `syscall` behaves as in `sys::syscall` (rcx, r11 and
    // r12 clobbered, the other argument registers written by the kernel).
    // pushfq/popfq use the stack, which the block does not claim not to.
    unsafe {
        asm!(
            "pushfq",
            "or qword ptr [rsp], 0x4000",
            "popfq",
            "syscall",
            "pushfq",
            "and qword ptr [rsp], -0x4001",
            "popfq",
            inlateout("rax") abi::Sysnum::GET_TICKS.0 => status,
            inlateout("rdi") 0u64 => _,
            inlateout("rsi") 0u64 => _,
            lateout("rdx") _,
            lateout("r8") _,
            lateout("r9") _,
            lateout("r10") _,
            inlateout("r12") 0u64 => _,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    status
}

/// Executes `ud2`: an invalid-opcode fault the kernel reports to the
/// thread's fault endpoint (the supervisor). The thread does not come back.
pub fn trap() -> ! {
    // SAFETY: `ud2` touches no memory or register; the fault hands the
    // thread to the kernel, which does not resume it after the instruction.
    unsafe { asm!("ud2", options(noreturn, nomem, nostack)) }
}

/// CPUID of `leaf` (and `subleaf`): EAX, EBX, ECX, EDX as this CPU (or
/// the hypervisor below it) reports them.
pub fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    // CPUID only writes four registers and ring 3 may execute it (the
    // intrinsic saves RBX, which LLVM reserves).
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// Reads the time-stamp counter. Under QEMU with `-icount shift=0` it
/// advances once per guest instruction, which benchmarks use to count
/// instructions.
pub fn rdtsc() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: RDTSC reads a counter into two registers; ring 3 may execute
    // it (CR4.TSD is clear). It touches no memory.
    unsafe { asm!("lfence", "rdtsc", out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags)) };
    u64::from(high) << 32 | u64::from(low)
}

/// Reads XMM0 with an SSE instruction: (low, high).
///
/// For isolation tests: tasks are built without SSE and the kernel keeps
/// CR0.TS set while they run, so this raises #NM, which the kernel reports
/// to the thread's fault endpoint (the supervisor); the call then never
/// returns. Were it to return, it would show whose XMM0 a task can see.
pub fn probe_xmm0() -> (u64, u64) {
    let mut value = [0u64; 2];
    // SAFETY: one 16-byte store of XMM0 into `value`, a local of that size;
    // no other memory or register changes. A #NM hands the thread to the
    // kernel, which does not resume it here.
    unsafe {
        asm!("movdqu xmmword ptr [{}], xmm0", in(reg) value.as_mut_ptr(), options(nostack, preserves_flags));
    }
    (value[0], value[1])
}
