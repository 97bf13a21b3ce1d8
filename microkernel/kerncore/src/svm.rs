//! AMD SVM: the VMCB layout, exit codes and the EXITINFO decoders (APM
//! Vol. 2 §15 and Appendixes B and C). Pure data; the arch layer runs
//! VMRUN on a VMCB laid out by [`Vmcb`].
//!
//! The VMCB is a `#[repr(C)]` struct whose offsets are pinned by const
//! asserts. It converts to and from its 4096 bytes with zerocopy (for
//! example `Vmcb::mut_from_bytes` over a page-aligned frame), never a
//! pointer cast.

mod exit;
mod registers;
mod vmcb;

pub use exit::*;
pub use vmcb::*;

/// EFER.SVME: set in the host to use SVM, and required in the guest's EFER.
pub use x86defs::EFER_SVME;
/// SVM's model-specific registers (EFER, VM_CR, VM_HSAVE_PA) are among
/// these (APM Vol. 2 §15.30).
pub use x86defs::msr;

#[cfg(test)]
mod tests;
