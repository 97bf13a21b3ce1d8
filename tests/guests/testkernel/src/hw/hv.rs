//! The kernel's side of the Hyper-V interface: page buffers for the overlay
//! pages and hypercall parameters, and the call into the hypercall page.

use super::{Fault, arm, take_fault};
use core::arch::asm;
use core::cell::UnsafeCell;

const PAGE: usize = 4096;

/// Guest pages the TLFS tests hand to the hypervisor, in the kernel's
/// `.bss` (RAM, identity-mapped: address = GPA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    /// `HV_X64_MSR_HYPERCALL`'s overlay.
    Hypercall = 0,
    /// `HV_X64_MSR_REFERENCE_TSC`'s overlay.
    ReferenceTsc = 1,
    /// `HV_X64_MSR_VP_ASSIST_PAGE`'s overlay.
    VpAssist = 2,
    /// Hypercall output parameters.
    Output = 3,
    /// Hypercall input parameters: two pages, so a block can cross from
    /// the first into the second (which must be refused).
    Input = 4,
    /// The SynIC's message page (`HV_X64_MSR_SIMP`).
    Simp = 6,
    /// The SynIC's event flags page (`HV_X64_MSR_SIEFP`).
    Siefp = 7,
    /// VTL 1's hypercall page (HV_X64_MSR_HYPERCALL is private to each
    /// VTL, TLFS 15.11.1.1), VP assist page and hypercall parameters.
    Vtl1Hypercall = 8,
    Vtl1VpAssist = 9,
    Vtl1Input = 10,
    Vtl1Output = 11,
}

const PAGES: usize = 12;

#[repr(C, align(4096))]
struct Pages(UnsafeCell<[u8; PAGES * PAGE]>);

// SAFETY: one CPU; the pages are only touched through `read`/`write`
// (volatile) and by the hypervisor.
unsafe impl Sync for Pages {}

static BUFFERS: Pages = Pages(UnsafeCell::new([0; PAGES * PAGE]));

impl Page {
    /// Its guest-physical (= virtual) address.
    pub fn addr(self) -> u64 {
        BUFFERS.0.get() as u64 + (self as u64) * PAGE as u64
    }

    /// Its size: two pages for [`Page::Input`].
    pub const fn len(self) -> usize {
        match self {
            Page::Input => 2 * PAGE,
            _ => PAGE,
        }
    }

    /// Copies `bytes` in at `offset` (volatile: the hypervisor reads it).
    pub fn write(self, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= self.len());
        super::write_ram(self.addr() + offset as u64, bytes);
    }

    /// Reads `out.len()` bytes at `offset` (volatile: the hypervisor writes
    /// it, or overlays it).
    pub fn read(self, offset: usize, out: &mut [u8]) {
        assert!(offset + out.len() <= self.len());
        super::read_ram(self.addr() + offset as u64, out);
    }

    pub fn read_u32(self, offset: usize) -> u32 {
        let mut b = [0; 4];
        self.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    pub fn read_u64(self, offset: usize) -> u64 {
        let mut b = [0; 8];
        self.read(offset, &mut b);
        u64::from_le_bytes(b)
    }

    /// Zeroes the page(s).
    pub fn clear(self) {
        for i in (0..self.len()).step_by(64) {
            self.write(i, &[0; 64]);
        }
    }
}

/// What a hypercall left: the result value (RAX) and RCX (the control
/// value, with the rep start index advanced if the call returned early).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Returned {
    pub rax: u64,
    pub rcx: u64,
}

/// Calls the hypercall page as Linux does (TLFS 3.13): RCX = control, RDX
/// and R8 the input and output GPAs (or, fast, the input), result in RAX.
/// The caller has checked that the page starts with VMCALL/VMMCALL and RET:
/// a #UD or #GP on that first instruction resumes at the RET and is
/// returned.
pub fn hypercall(control: u64, rdx: u64, r8: u64) -> Result<Returned, Fault> {
    hypercall_at(Page::Hypercall, control, rdx, r8)
}

/// [`hypercall`] through the hypercall page at `page` (VTL 1's has its own).
pub fn hypercall_at(page: Page, control: u64, rdx: u64, r8: u64) -> Result<Returned, Fault> {
    let page = page.addr();
    arm(page, page + 3);
    let (rax, rcx): (u64, u64);
    // SAFETY: the hypercall page is the hypervisor's code (checked by the
    // caller), which modifies RAX and RCX (TLFS 3.9), and writes only the
    // output page; RDX and R8 are declared clobbered to be safe. The stack
    // is valid for the CALL and RET.
    unsafe {
        asm!("call {page}", page = in(reg) page, inout("rcx") control => rcx, inout("rdx") rdx => _,
             inout("r8") r8 => _, out("rax") rax)
    }
    match take_fault() {
        None => Ok(Returned { rax, rcx }),
        Some(fault) => Err(fault),
    }
}

/// As [`hypercall`], with XMM0-XMM5 loaded from `xmm` first (the XMM fast
/// convention's input; SSE enabled). The XMM registers are clobbered.
pub fn hypercall_xmm(control: u64, rdx: u64, r8: u64, xmm: &[u128; 6]) -> Result<Returned, Fault> {
    let page = Page::Hypercall.addr();
    arm(page, page + 3);
    let (rax, rcx): (u64, u64);
    // SAFETY: as `hypercall`; the XMM loads read `xmm` (96 bytes).
    unsafe {
        asm!(
            "movdqu xmm0, [{x}]", "movdqu xmm1, [{x} + 16]", "movdqu xmm2, [{x} + 32]",
            "movdqu xmm3, [{x} + 48]", "movdqu xmm4, [{x} + 64]", "movdqu xmm5, [{x} + 80]",
            "call {page}",
            x = in(reg) xmm.as_ptr(), page = in(reg) page, inout("rcx") control => rcx, inout("rdx") rdx => _,
            inout("r8") r8 => _, out("rax") rax,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _, out("xmm4") _, out("xmm5") _,
        )
    }
    match take_fault() {
        None => Ok(Returned { rax, rcx }),
        Some(fault) => Err(fault),
    }
}

/// The hypercall instruction itself, not through the page: VMCALL
/// (`intel`) or VMMCALL. A fault (#UD for the other vendor's) is returned.
pub fn hypercall_instruction(intel: bool, control: u64, rdx: u64, r8: u64) -> Result<Returned, Fault> {
    let (rax, rcx): (u64, u64);
    let fault = if intel {
        crate::hw::checked!("vmcall", inout("rcx") control => rcx, inout("rdx") rdx => _, inout("r8") r8 => _,
                        inout("rax") 0u64 => rax)
    } else {
        crate::hw::checked!("vmmcall", inout("rcx") control => rcx, inout("rdx") rdx => _, inout("r8") r8 => _,
                        inout("rax") 0u64 => rax)
    };
    fault.map_or(Ok(Returned { rax, rcx }), Err)
}
