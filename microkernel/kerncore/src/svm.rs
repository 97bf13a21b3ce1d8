//! AMD SVM: the VMCB layout, exit codes and the EXITINFO decoders (APM
//! Vol. 2 §15 and Appendixes B and C). Pure data; the arch layer runs
//! VMRUN on a VMCB laid out by [`Vmcb`].
//!
//! The VMCB is a `#[repr(C)]` struct whose offsets are pinned by const
//! asserts. It converts to and from its 4096 bytes with zerocopy (for
//! example `Vmcb::mut_from_bytes` over a page-aligned frame), never a
//! pointer cast.

mod exit;
mod vmcb;

pub use exit::*;
pub use vmcb::*;

/// SVM model-specific registers (APM Vol. 2 §15.30).
pub mod msr {
    pub const EFER: u32 = 0xc000_0080;
    pub const VM_CR: u32 = 0xc001_0114;
    /// Host save area for VMRUN: a page-aligned physical address.
    pub const VM_HSAVE_PA: u32 = 0xc001_0117;
}

/// EFER.SVME: set in the host to use SVM, and required in the guest's EFER.
pub const EFER_SVME: u64 = 1 << 12;

#[cfg(test)]
mod tests;
