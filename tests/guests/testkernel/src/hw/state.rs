//! CPU state the hostile tests and the neighbour's canaries touch: CR4,
//! the debug registers, XMM0-15, the x87 control word, MXCSR, XCR0, and a
//! window onto guest-physical addresses above the 4 GiB identity map.
//!
//! The kernel is built without SSE or x87 code (soft float), so the values
//! left in XMM and x87 registers stay until the kernel itself changes them.

use core::arch::asm;
use core::cell::UnsafeCell;

/// CR4 bits: OSFXSR (SSE), OSXMMEXCPT, OSXSAVE (XSETBV, XGETBV).
pub const CR4_OSFXSR: u64 = 1 << 9;
pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
pub use guest_testkernel::state::CR4_OSXSAVE;

pub fn cr4() -> u64 {
    let v: u64;
    // SAFETY: reads CR4.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Sets CR4 bits (the caller checked CPUID for them).
pub fn cr4_set(bits: u64) {
    let v = cr4() | bits;
    // SAFETY: only feature-enable bits the caller checked are added.
    unsafe { asm!("mov cr4, {}", in(reg) v, options(nomem, nostack, preserves_flags)) }
}

/// Turns SSE on (CR4.OSFXSR, OSXMMEXCPT; CR0.EM clear, MP set).
pub fn enable_sse() {
    cr4_set(CR4_OSFXSR | CR4_OSXMMEXCPT);
    let mut cr0: u64;
    // SAFETY: clears EM and sets MP, as SSE requires; nothing else changes.
    unsafe {
        asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack, preserves_flags));
        cr0 = (cr0 & !(1 << 2)) | (1 << 1);
        asm!("mov cr0, {}", "fninit", in(reg) cr0, options(nomem, nostack));
    }
}

/// Debug register `n` (0-3, 6, 7).
pub fn dr(n: u8) -> u64 {
    let v: u64;
    // SAFETY: reads a debug register (CPL 0).
    unsafe {
        match n {
            0 => asm!("mov {}, dr0", out(reg) v, options(nomem, nostack)),
            1 => asm!("mov {}, dr1", out(reg) v, options(nomem, nostack)),
            2 => asm!("mov {}, dr2", out(reg) v, options(nomem, nostack)),
            3 => asm!("mov {}, dr3", out(reg) v, options(nomem, nostack)),
            6 => asm!("mov {}, dr6", out(reg) v, options(nomem, nostack)),
            _ => asm!("mov {}, dr7", out(reg) v, options(nomem, nostack)),
        }
    }
    v
}

/// Writes debug register `n` (0-3, 6, 7). DR7 values must leave every
/// breakpoint the caller did not mean disabled.
pub fn set_dr(n: u8, v: u64) {
    // SAFETY: a debug register write; breakpoints only trap.
    unsafe {
        match n {
            0 => asm!("mov dr0, {}", in(reg) v, options(nomem, nostack)),
            1 => asm!("mov dr1, {}", in(reg) v, options(nomem, nostack)),
            2 => asm!("mov dr2, {}", in(reg) v, options(nomem, nostack)),
            3 => asm!("mov dr3, {}", in(reg) v, options(nomem, nostack)),
            6 => asm!("mov dr6, {}", in(reg) v, options(nomem, nostack)),
            _ => asm!("mov dr7, {}", in(reg) v, options(nomem, nostack)),
        }
    }
}

/// XMM0-XMM15 as 128-bit values.
pub type Xmm = [u128; 16];

/// Loads XMM0-XMM15 (SSE enabled).
pub fn set_xmm(values: &Xmm) {
    // SAFETY: reads `values` (16 x 16 bytes) into the XMM registers.
    unsafe {
        asm!(
            "movdqu xmm0, [{p}]", "movdqu xmm1, [{p} + 16]", "movdqu xmm2, [{p} + 32]", "movdqu xmm3, [{p} + 48]",
            "movdqu xmm4, [{p} + 64]", "movdqu xmm5, [{p} + 80]", "movdqu xmm6, [{p} + 96]", "movdqu xmm7, [{p} + 112]",
            "movdqu xmm8, [{p} + 128]", "movdqu xmm9, [{p} + 144]", "movdqu xmm10, [{p} + 160]",
            "movdqu xmm11, [{p} + 176]", "movdqu xmm12, [{p} + 192]", "movdqu xmm13, [{p} + 208]",
            "movdqu xmm14, [{p} + 224]", "movdqu xmm15, [{p} + 240]",
            p = in(reg) values.as_ptr(),
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _, out("xmm4") _, out("xmm5") _,
            out("xmm6") _, out("xmm7") _, out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
            out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
            options(readonly, nostack, preserves_flags)
        )
    }
}

/// Reads XMM0-XMM15 (SSE enabled).
pub fn xmm() -> Xmm {
    let mut values = [0u128; 16];
    // SAFETY: writes the 256 bytes of `values`.
    unsafe {
        asm!(
            "movdqu [{p}], xmm0", "movdqu [{p} + 16], xmm1", "movdqu [{p} + 32], xmm2", "movdqu [{p} + 48], xmm3",
            "movdqu [{p} + 64], xmm4", "movdqu [{p} + 80], xmm5", "movdqu [{p} + 96], xmm6", "movdqu [{p} + 112], xmm7",
            "movdqu [{p} + 128], xmm8", "movdqu [{p} + 144], xmm9", "movdqu [{p} + 160], xmm10",
            "movdqu [{p} + 176], xmm11", "movdqu [{p} + 192], xmm12", "movdqu [{p} + 208], xmm13",
            "movdqu [{p} + 224], xmm14", "movdqu [{p} + 240], xmm15",
            p = in(reg) values.as_mut_ptr(),
            options(nostack, preserves_flags)
        )
    }
    values
}

/// The x87 control word.
pub fn fpu_control() -> u16 {
    let mut v = 0u16;
    // SAFETY: stores the control word into `v`.
    unsafe { asm!("fnstcw [{}]", in(reg) &mut v, options(nostack, preserves_flags)) }
    v
}

pub fn set_fpu_control(v: u16) {
    // SAFETY: loads the control word (all exceptions stay masked: the
    // caller keeps bits 5:0 set).
    unsafe { asm!("fldcw [{}]", in(reg) &v, options(readonly, nostack, preserves_flags)) }
}

pub fn mxcsr() -> u32 {
    let mut v = 0u32;
    // SAFETY: stores MXCSR into `v`.
    unsafe { asm!("stmxcsr [{}]", in(reg) &mut v, options(nostack, preserves_flags)) }
    v
}

pub fn set_mxcsr(v: u32) {
    // SAFETY: loads MXCSR; the caller keeps the exception masks (12:7) set
    // and the reserved bits clear.
    unsafe { asm!("ldmxcsr [{}]", in(reg) &v, options(readonly, nostack, preserves_flags)) }
}

/// XGETBV of XCR0 (CR4.OSXSAVE set).
pub fn xcr0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reads XCR0.
    unsafe { asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    u64::from(hi) << 32 | u64::from(lo)
}

// ---- A window onto high guest-physical addresses ----------------------------

#[repr(C, align(4096))]
struct Table(UnsafeCell<[u64; 512]>);

// SAFETY: used by the BSP alone, through `map_high`.
unsafe impl Sync for Table {}

static WINDOW_PDPT: Table = Table(UnsafeCell::new([0; 512]));
static WINDOW_PD: Table = Table(UnsafeCell::new([0; 512]));

/// Where the window is: the second PML4 slot (512 GiB).
const WINDOW: u64 = 512 << 30;

/// Maps the 2 MiB around guest-physical `gpa` (uncached) at the window and
/// returns the linear address of `gpa` in it. A GPA beyond the CPU's
/// physical width gives an entry with reserved bits: an access is a #PF.
pub fn map_high(gpa: u64) -> u64 {
    unsafe extern "C" {
        static tk_pml4: u8;
    }
    let pml4 = (&raw const tk_pml4) as *mut u64;
    let (pdpt, pd) = (WINDOW_PDPT.0.get() as *mut u64, WINDOW_PD.0.get() as *mut u64);
    // SAFETY: the boot stub's PML4 and the window's own tables are static
    // and identity-mapped; slot 1 of the PML4 is the window's alone; the
    // entry names a 2 MiB page, present, writable, uncached (PCD, PWT).
    unsafe {
        pml4.add(1).write_volatile(pdpt as u64 | 0x3);
        pdpt.write_volatile(pd as u64 | 0x3);
        pd.write_volatile((gpa & !0x1f_ffff) | 0x9b);
        asm!("invlpg [{}]", in(reg) WINDOW, options(nostack, preserves_flags));
    }
    WINDOW + (gpa & 0x1f_ffff)
}
