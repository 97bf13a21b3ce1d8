//! Crossing between VTLs: the CALL into the hypercall page's VTL call or
//! VTL return sequence (TLFS 15.8) with every shared register (15.11.2.2)
//! loaded from a [`Frame`] and stored back into it afterwards, VTL 1's
//! first entry, and the fixup for the #UD a crossing may raise.
//!
//! One VP runs one VTL at a time and a crossing is a call, so VTL 0 and
//! VTL 1 never run at once: the statics here and in `vtl1.rs` are shared by
//! the two VTLs as ordinary memory (no protections are applied).

use crate::hw::TrapFrame;
use crate::hw::hv::Page;
use core::arch::global_asm;
use core::cell::UnsafeCell;
use core::mem::offset_of;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

/// The registers a crossing carries: loaded before the CALL, stored after
/// it returns (in the other VTL, after it called back).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rbx: u64,
    pub rbp: u64,
    pub rsi: u64,
    pub rdi: u64,
    /// R8-R15.
    pub r: [u64; 8],
    /// RFLAGS for the CALL (DF must be clear).
    pub rflags_in: u64,
    /// RFLAGS right after it returned (or at VTL 1's first entry).
    pub rflags_out: u64,
    /// RSP at VTL 1's first entry (unused by a crossing).
    pub rsp: u64,
    pub xmm: [u128; 16],
}

impl Frame {
    pub const ZERO: Frame = Frame {
        rax: 0,
        rcx: 0,
        rdx: 0,
        rbx: 0,
        rbp: 0,
        rsi: 0,
        rdi: 0,
        r: [0; 8],
        rflags_in: RFLAGS_FIXED,
        rflags_out: 0,
        rsp: 0,
        xmm: [0; 16],
    };

    /// RBX, RDX, RSI, RDI, RBP, R8-R15: the shared GPRs the VTL call
    /// sequence does not use (it uses RAX and RCX, 15.6.1).
    pub fn shared(&self) -> [u64; 13] {
        let [r8, r9, r10, r11, r12, r13, r14, r15] = self.r;
        [self.rbx, self.rdx, self.rsi, self.rdi, self.rbp, r8, r9, r10, r11, r12, r13, r14, r15]
    }

    pub fn set_shared(&mut self, v: [u64; 13]) {
        [self.rbx, self.rdx, self.rsi, self.rdi, self.rbp] = [v[0], v[1], v[2], v[3], v[4]];
        self.r.copy_from_slice(&v[5..]);
    }
}

/// RFLAGS bit 1 (always set) and AC, which the test sets in VTL 0 only
/// (harmless at CPL 0) to see that RFLAGS is private (15.11.1.2).
pub const RFLAGS_FIXED: u64 = 1 << 1;
pub const RFLAGS_AC: u64 = 1 << 18;

/// A static both VTLs use, never at once (see the module's comment).
#[repr(transparent)]
pub struct Shared<T>(UnsafeCell<T>);

// SAFETY: one VP, and VTL 0 and VTL 1 never run at the same time on it: a
// VTL switch is a call, so the accesses never overlap.
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    pub const fn new(value: T) -> Shared<T> {
        Shared(UnsafeCell::new(value))
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: see `Sync`: no other reference is live while `f` runs
        // (`f` does not cross VTLs).
        f(unsafe { &mut *self.0.get() })
    }
}

/// The registers VTL 1 found at its first entry, stored by `tk_vtl1_entry`.
pub static FIRST_ENTRY: Shared<Frame> = Shared::new(Frame::ZERO);

global_asm!(
    r#"
    .section .text
    /* tk_vsm_call(frame: rdi, target: rsi, slot: rdx): CALL target with
       the frame's registers; the frame gets them back afterwards. `slot`
       keeps RSP for the fixup, which resumes at tk_vsm_resume. */
    .global tk_vsm_call
tk_vsm_call:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    push rdi
    mov [rdx], rsp
    push rsi
    push qword ptr [rdi + {rflags_in}]
    popfq
    movdqu xmm0, [rdi + {xmm}]
    movdqu xmm1, [rdi + {xmm} + 16]
    movdqu xmm2, [rdi + {xmm} + 32]
    movdqu xmm3, [rdi + {xmm} + 48]
    movdqu xmm4, [rdi + {xmm} + 64]
    movdqu xmm5, [rdi + {xmm} + 80]
    movdqu xmm6, [rdi + {xmm} + 96]
    movdqu xmm7, [rdi + {xmm} + 112]
    movdqu xmm8, [rdi + {xmm} + 128]
    movdqu xmm9, [rdi + {xmm} + 144]
    movdqu xmm10, [rdi + {xmm} + 160]
    movdqu xmm11, [rdi + {xmm} + 176]
    movdqu xmm12, [rdi + {xmm} + 192]
    movdqu xmm13, [rdi + {xmm} + 208]
    movdqu xmm14, [rdi + {xmm} + 224]
    movdqu xmm15, [rdi + {xmm} + 240]
    mov rax, [rdi + {rax}]
    mov rcx, [rdi + {rcx}]
    mov rdx, [rdi + {rdx}]
    mov rbx, [rdi + {rbx}]
    mov rbp, [rdi + {rbp}]
    mov rsi, [rdi + {rsi}]
    mov r8, [rdi + {r}]
    mov r9, [rdi + {r} + 8]
    mov r10, [rdi + {r} + 16]
    mov r11, [rdi + {r} + 24]
    mov r12, [rdi + {r} + 32]
    mov r13, [rdi + {r} + 40]
    mov r14, [rdi + {r} + 48]
    mov r15, [rdi + {r} + 56]
    mov rdi, [rdi + {rdi}]
    call qword ptr [rsp]
    pushfq
    push rax
    mov rax, [rsp + 24]
    call tk_vsm_store
    pop rcx
    mov [rax + {rax}], rcx
    pop rcx
    mov [rax + {rflags_out}], rcx
    add rsp, 8
    .global tk_vsm_resume
tk_vsm_resume:
    pop rdi
    pushfq
    and dword ptr [rsp], 0xfffbffff
    popfq
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret

/* Stores RCX, RDX, RBX, RBP, RSI, RDI, R8-R15 and XMM0-15 at RAX (a frame). */
tk_vsm_store:
    mov [rax + {rcx}], rcx
    mov [rax + {rdx}], rdx
    mov [rax + {rbx}], rbx
    mov [rax + {rbp}], rbp
    mov [rax + {rsi}], rsi
    mov [rax + {rdi}], rdi
    mov [rax + {r}], r8
    mov [rax + {r} + 8], r9
    mov [rax + {r} + 16], r10
    mov [rax + {r} + 24], r11
    mov [rax + {r} + 32], r12
    mov [rax + {r} + 40], r13
    mov [rax + {r} + 48], r14
    mov [rax + {r} + 56], r15
    movdqu [rax + {xmm}], xmm0
    movdqu [rax + {xmm} + 16], xmm1
    movdqu [rax + {xmm} + 32], xmm2
    movdqu [rax + {xmm} + 48], xmm3
    movdqu [rax + {xmm} + 64], xmm4
    movdqu [rax + {xmm} + 80], xmm5
    movdqu [rax + {xmm} + 96], xmm6
    movdqu [rax + {xmm} + 112], xmm7
    movdqu [rax + {xmm} + 128], xmm8
    movdqu [rax + {xmm} + 144], xmm9
    movdqu [rax + {xmm} + 160], xmm10
    movdqu [rax + {xmm} + 176], xmm11
    movdqu [rax + {xmm} + 192], xmm12
    movdqu [rax + {xmm} + 208], xmm13
    movdqu [rax + {xmm} + 224], xmm14
    movdqu [rax + {xmm} + 240], xmm15
    ret

/* VTL 1's first entry (the RIP of its initial context): the registers as
   VTL 0's call left them go to FIRST_ENTRY, then VTL 1's main. */
    .global tk_vtl1_entry
tk_vtl1_entry:
    mov [rip + {first} + {rsp}], rsp
    push rax
    pushfq
    lea rax, [rip + {first}]
    call tk_vsm_store
    pop rcx
    mov [rax + {rflags_out}], rcx
    pop rcx
    mov [rax + {rax}], rcx
    and rsp, -16
    call {main}
    ud2

/* tk_vsm_bench_call(target: rdi) -> rax: the TSC ticks from before a VTL
   call (control 0) to `target` until it returns, nothing else loaded. */
    .global tk_vsm_bench_call
tk_vsm_bench_call:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    push rdi
    rdtsc
    shl rdx, 32
    or rax, rdx
    push rax
    xor ecx, ecx
    call qword ptr [rsp + 8]
    rdtsc
    shl rdx, 32
    or rax, rdx
    pop rcx
    sub rax, rcx
    pop rdi
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret

/* tk_vtl1_bench(target: rdi): VTL 1's fast VTL return to `target`, made
   again at once each time a VTL call enters it, until BENCH_ON reads 0. */
    .global tk_vtl1_bench
tk_vtl1_bench:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    push rdi
2:
    mov ecx, {fast}
    call qword ptr [rsp]
    cmp byte ptr [rip + {on}], 0
    jne 2b
    pop rdi
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret
"#,
    rax = const offset_of!(Frame, rax),
    rcx = const offset_of!(Frame, rcx),
    rdx = const offset_of!(Frame, rdx),
    rbx = const offset_of!(Frame, rbx),
    rbp = const offset_of!(Frame, rbp),
    rsi = const offset_of!(Frame, rsi),
    rdi = const offset_of!(Frame, rdi),
    r = const offset_of!(Frame, r),
    rflags_in = const offset_of!(Frame, rflags_in),
    rflags_out = const offset_of!(Frame, rflags_out),
    rsp = const offset_of!(Frame, rsp),
    xmm = const offset_of!(Frame, xmm),
    first = sym FIRST_ENTRY,
    main = sym super::vtl1::main,
    on = sym BENCH_ON,
    fast = const guest_testkernel::tlfs::vsm::VTL_RETURN_FAST,
);

unsafe extern "C" {
    fn tk_vsm_call(frame: *mut Frame, target: u64, slot: *mut u64);
    fn tk_vsm_resume();
    fn tk_vtl1_entry();
    fn tk_vsm_bench_call(target: u64) -> u64;
    fn tk_vtl1_bench(target: u64);
}

/// While set, VTL 1 (in [`vtl1_bench`]) answers each VTL call with a fast
/// return at once.
pub static BENCH_ON: AtomicBool = AtomicBool::new(false);

/// One VTL call to `target` (VTL 0's call sequence) and the return that
/// ends it: its TSC ticks. Nothing arms the #UD fixup: only for a target
/// a [`cross`] has just called without fault.
pub fn bench_call(target: u64) -> u64 {
    // SAFETY: as in `cross`: the sequence returns to the CALL once VTL 0
    // runs again; the stub saves the callee-saved registers and RFLAGS and
    // RSP are private (15.11.1.2).
    unsafe { tk_vsm_bench_call(target) }
}

/// VTL 1: fast returns to `target` (its VTL return sequence) while
/// [`BENCH_ON`] is set; back once a VTL call finds it clear.
pub fn vtl1_bench(target: u64) {
    // SAFETY: as in `cross`, from VTL 1: each CALL of the return sequence
    // comes back when VTL 0 calls again; the stub saves the callee-saved
    // registers, whatever VTL 0 left in the shared ones.
    unsafe { tk_vtl1_bench(target) }
}

/// VTL 1's entry point, for its initial context.
pub fn vtl1_entry() -> u64 {
    tk_vtl1_entry as *const () as u64
}

/// The VTL running now (set by each side around a crossing).
static CURRENT: AtomicU8 = AtomicU8::new(0);
/// Per VTL: a crossing is under way and a fault in a hypercall page ends it.
static ARMED: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];
/// Per VTL: RSP for [`tk_vsm_resume`].
static SLOT: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
/// Per VTL: the vector + 1 of the fault that ended the crossing, and where.
static FAULTED: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
static FAULT_RIP: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// A fault a crossing raised: its vector and RIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Raised {
    pub vector: u8,
    pub rip: u64,
}

impl Raised {
    pub const UD: u8 = 6;
}

impl core::fmt::Display for Raised {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let fault = crate::hw::Fault { vector: self.vector, error: 0 };
        write!(f, "{fault} at {:#x}", self.rip)
    }
}

/// CALLs `target` (in `vtl`'s hypercall page) with `frame`'s registers and
/// stores them back into `frame` once execution comes back to `vtl`; the
/// fault (in a hypercall page) that ended the call instead, if any.
pub fn cross(vtl: u8, frame: &mut Frame, target: u64) -> Option<Raised> {
    let v = usize::from(vtl & 1);
    CURRENT.store(vtl, Ordering::Relaxed);
    FAULTED[v].store(0, Ordering::Relaxed);
    ARMED[v].store(true, Ordering::Relaxed);
    // SAFETY: `target` is in the hypervisor's hypercall page, whose VTL
    // call and return sequences return (to the CALL) once this VTL runs
    // again; the stub saves and restores the callee-saved registers, keeps
    // RSP (private, 15.11.1.2) and clears AC and DF on the way out; the
    // other VTL's code touches only its own stack and the shared statics.
    // A fault in the page resumes at `tk_vsm_resume` with this RSP.
    unsafe { tk_vsm_call(frame, target, SLOT[v].as_ptr()) };
    CURRENT.store(vtl, Ordering::Relaxed);
    ARMED[v].store(false, Ordering::Relaxed);
    match FAULTED[v].swap(0, Ordering::Relaxed) {
        0 => None,
        n => Some(Raised { vector: (n - 1) as u8, rip: FAULT_RIP[v].load(Ordering::Relaxed) }),
    }
}

/// True if `rip` is in either VTL's hypercall page.
pub fn in_hypercall_page(rip: u64) -> bool {
    [Page::Hypercall, Page::Vtl1Hypercall].iter().any(|p| (p.addr()..p.addr() + p.len() as u64).contains(&rip))
}

/// Called by the trap handler: an exception in a hypercall page during a
/// crossing ends the crossing (15.6.1.1 and 15.7.2 say #UD).
pub fn trap(frame: &mut TrapFrame) -> bool {
    let v = usize::from(CURRENT.load(Ordering::Relaxed) & 1);
    if frame.vector >= 32 || !ARMED[v].load(Ordering::Relaxed) || !in_hypercall_page(frame.rip) {
        return false;
    }
    ARMED[v].store(false, Ordering::Relaxed);
    FAULTED[v].store(frame.vector + 1, Ordering::Relaxed);
    FAULT_RIP[v].store(frame.rip, Ordering::Relaxed);
    frame.rip = tk_vsm_resume as *const () as u64;
    frame.rsp = SLOT[v].load(Ordering::Relaxed);
    true
}
