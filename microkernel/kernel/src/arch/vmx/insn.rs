//! The VMX instructions (VMREAD, VMWRITE, VMXON, VMCLEAR, VMPTRLD, INVEPT,
//! INVVPID) as safe functions returning how they failed ([`VmFail`]), and
//! RDMSR of the MSRs VMX needs.

use core::arch::asm;
use kerncore::vmx::{VmInstructionError, VmcsField};
use x86::msr::rdmsr;

/// `ExitReason::Other` codes for failures that are not VM exits. Exit
/// reasons are 32-bit (a failed VM entry has bit 31 set), so these sit
/// above them. VMfailInvalid: no valid current VMCS.
pub(super) const FAILED_INVALID: u64 = 1 << 32;
/// VMfailValid, ORed with the VM-instruction error number (SDM §31.4).
pub(super) const FAILED_VALID: u64 = 2 << 32;
/// The VP has no usable VMCS: VMX is off, or setting it up failed.
pub(super) const FAILED_SETUP: u64 = 3 << 32;

/// INVEPT and INVVPID types (SDM Vol. 3C §30.3).
pub(super) const INVEPT_SINGLE_CONTEXT: u64 = 1;
pub(super) const INVEPT_ALL_CONTEXT: u64 = 2;
pub(super) const INVVPID_SINGLE_CONTEXT: u64 = 1;
pub(super) const INVVPID_ALL_CONTEXT: u64 = 2;

/// How a VMX instruction failed (SDM Vol. 3C §31.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum VmFail {
    /// CF: there is no valid current VMCS (or the operand was unusable).
    Invalid,
    /// ZF: the current VMCS's VM-instruction error field says why.
    Valid(VmInstructionError),
}

impl VmFail {
    pub(super) fn code(self) -> u64 {
        match self {
            VmFail::Invalid => FAILED_INVALID,
            VmFail::Valid(error) => FAILED_VALID | u64::from(error.0),
        }
    }
}

// Each instruction captures CF and ZF in the same asm block, so no
// compiler-generated code can clobber them in between.

/// Turns the flags after a VMX instruction into its outcome.
fn outcome(cf: u8, zf: u8) -> Result<(), VmFail> {
    if cf != 0 {
        Err(VmFail::Invalid)
    } else if zf != 0 {
        Err(VmFail::Valid(instruction_error()))
    } else {
        Ok(())
    }
}

/// The VM-instruction error of the current VMCS.
pub(super) fn instruction_error() -> VmInstructionError {
    let (value, cf, zf) = vmread_raw(VmcsField::VM_INSTRUCTION_ERROR.0);
    VmInstructionError(if cf == 0 && zf == 0 { value as u32 } else { 0 })
}

fn vmread_raw(field: u32) -> (u64, u8, u8) {
    let (value, cf, zf): (u64, u8, u8);
    // SAFETY: only called after `enable` (VMX operation is on, CPL 0).
    // VMREAD reads the current VMCS into a register; with no current VMCS
    // or an unsupported field it fails and sets the flags captured here.
    unsafe {
        asm!(
            "vmread {value}, {field}",
            "setc {cf}",
            "setz {zf}",
            field = in(reg) u64::from(field),
            value = out(reg) value,
            cf = out(reg_byte) cf,
            zf = out(reg_byte) zf,
            options(nostack),
        );
    }
    (value, cf, zf)
}

pub(super) fn vmread(field: VmcsField) -> Result<u64, VmFail> {
    let (value, cf, zf) = vmread_raw(field.0);
    outcome(cf, zf).map(|()| value)
}

pub(super) fn vmwrite(field: VmcsField, value: u64) -> Result<(), VmFail> {
    let (cf, zf): (u8, u8);
    // SAFETY: only called after `enable`. VMWRITE changes the current
    // VMCS, which belongs to the VP being set up or run; a field the CPU
    // lacks, or a read-only one, makes it fail with the flags captured.
    unsafe {
        asm!(
            "vmwrite {field}, {value}",
            "setc {cf}",
            "setz {zf}",
            field = in(reg) u64::from(field.0),
            value = in(reg) value,
            cf = out(reg_byte) cf,
            zf = out(reg_byte) zf,
            options(nostack),
        );
    }
    outcome(cf, zf)
}

/// VMXON, VMCLEAR or VMPTRLD of the region at physical `region`.
macro_rules! vmx_pointer_instruction {
    ($name:ident, $mnemonic:literal, $what:literal) => {
        #[doc = $what]
        pub(super) fn $name(region: u64) -> Result<(), VmFail> {
            let (cf, zf): (u8, u8);
            // SAFETY: CPL 0, CR4.VMXE set (VMXON) or VMX operation on (the
            // others). `region` is a page-aligned frame the kernel owns for
            // the purpose (a VMXON region or a VP's VMCS) with the VMCS
            // revision identifier in its first word; the instruction reads
            // the 64-bit operand holding its address from our stack.
            unsafe {
                asm!(
                    concat!($mnemonic, " qword ptr [{pointer}]"),
                    "setc {cf}",
                    "setz {zf}",
                    pointer = in(reg) &region,
                    cf = out(reg_byte) cf,
                    zf = out(reg_byte) zf,
                    options(nostack),
                );
            }
            outcome(cf, zf)
        }
    };
}

vmx_pointer_instruction!(vmxon, "vmxon", "Enters VMX operation with the VMXON region `region`.");
vmx_pointer_instruction!(vmclear, "vmclear", "Flushes VMCS `region` to memory, clear and not current.");
vmx_pointer_instruction!(vmptrld, "vmptrld", "Makes VMCS `region` the current VMCS.");

/// The 128-bit descriptor of INVEPT and INVVPID.
#[repr(C, align(16))]
struct InvalidationDescriptor([u64; 2]);

/// Defines an INVEPT-style instruction wrapper: `kind` is the invalidation
/// type, `tag` the first descriptor word (an EPTP or a VPID).
macro_rules! vmx_invalidation_instruction {
    ($name:ident, $mnemonic:literal, $doc:literal) => {
        #[doc = $doc]
        pub(super) fn $name(kind: u64, tag: u64) -> Result<(), VmFail> {
            let descriptor = InvalidationDescriptor([tag, 0]);
            let (cf, zf): (u8, u8);
            // SAFETY: VMX operation is on; the instruction only invalidates
            // cached translations (EPT-derived, or linear tagged with a
            // VPID) of a type `enable` found supported, reading its 128-bit
            // descriptor from our stack.
            unsafe {
                asm!(
                    concat!($mnemonic, " {kind}, xmmword ptr [{descriptor}]"),
                    "setc {cf}",
                    "setz {zf}",
                    kind = in(reg) kind,
                    descriptor = in(reg) &descriptor,
                    cf = out(reg_byte) cf,
                    zf = out(reg_byte) zf,
                    options(nostack),
                );
            }
            outcome(cf, zf)
        }
    };
}

vmx_invalidation_instruction!(invept, "invept", "Invalidates translations derived from EPT `tag` (an EPTP).");
vmx_invalidation_instruction!(invvpid, "invvpid", "Invalidates linear translations tagged with VPID `tag`.");

pub(super) fn read_msr(index: u32) -> u64 {
    // SAFETY: only MSRs every VMX-capable x86-64 CPU has: the
    // architectural ones (EFER, PAT, FS/GS bases, SYSENTER, feature
    // control) and the VMX capability MSRs, read only on a CPU whose CPUID
    // reports VMX (`vm::backend` chose VMX), PROCBASED_CTLS2 only because
    // EPT is usable and so secondary controls exist.
    unsafe { rdmsr(index) }
}
