//! Intercepted guest operations described once for both backends, so code
//! above the arch seam does not care whether VMX or SVM decoded them.

use x86defs::msr;

/// Direction of a port access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoDirection {
    /// IN, INS: the guest reads the port.
    In,
    /// OUT, OUTS: the guest writes the port.
    Out,
}

/// Operand size of a port access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoSize {
    Byte,
    Word,
    Dword,
}

impl IoSize {
    pub const fn bytes(self) -> u8 {
        match self {
            IoSize::Byte => 1,
            IoSize::Word => 2,
            IoSize::Dword => 4,
        }
    }
}

/// One intercepted IN, OUT, INS or OUTS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoPortAccess {
    pub port: u16,
    pub size: IoSize,
    pub direction: IoDirection,
    /// INS or OUTS.
    pub string: bool,
    /// REP-prefixed (string instructions only).
    pub rep: bool,
}

/// Exception vectors ring 0 raises in or reflects into guests.
pub mod vector {
    pub const DEBUG: u8 = 1;
    pub const INVALID_OPCODE: u8 = 6;
    pub const GENERAL_PROTECTION: u8 = 13;
    pub const ALIGNMENT_CHECK: u8 = 17;
}

/// The exceptions every guest's VMCB and VMCS intercept, one bit per
/// vector, for ring 0 to deliver them itself: #DB and #AC. A guest can make
/// their delivery raise the same exception again, forever and without an
/// exit (a data breakpoint on the stack the #DB frame is pushed to,
/// CVE-2015-8104; a misaligned stack under alignment checking,
/// CVE-2015-5307), which would hold the CPU. Intercepted, every attempt is
/// an exit, after which the host's interrupts get in.
pub const REFLECTED_EXCEPTIONS: u32 = 1 << vector::DEBUG | 1 << vector::ALIGNMENT_CHECK;

/// Lengths of the instructions ring 0 skips or emulates, for an SVM CPU
/// without next-RIP saving (QEMU's): the shortest encodings, no prefixes.
pub mod instruction_length {
    pub const XSETBV: u8 = 3;
    pub const INVD: u8 = 2;
    pub const WBINVD: u8 = 2;
    pub const RDPMC: u8 = 2;
}

/// MSRs a guest reads and writes without an exit: the syscall and
/// segment-base MSRs, whose guest values the world switch keeps apart from
/// the host's (SVM: VMLOAD/VMSAVE; VMX: the VMCS, or the switch itself).
pub const PASS_THROUGH_MSRS: [u32; 10] = [
    msr::IA32_SYSENTER_CS,
    msr::IA32_SYSENTER_ESP,
    msr::IA32_SYSENTER_EIP,
    msr::IA32_STAR,
    msr::IA32_LSTAR,
    msr::IA32_CSTAR,
    msr::IA32_FMASK,
    msr::IA32_FS_BASE,
    msr::IA32_GS_BASE,
    msr::IA32_KERNEL_GS_BASE,
];

/// Of [`PASS_THROUGH_MSRS`], those holding an address, whose writes SVM
/// still intercepts: QEMU's TCG (7.2) takes a non-canonical address from a
/// guest's WRMSR without the #GP the architecture raises (SDM Vol. 2B
/// WRMSR; APM Vol. 3 WRMSR, which adds CSTAR), so ring 0 checks the value
/// and writes it into the VP itself (`object::vm::ring0`). VMX (Bochs,
/// hardware) checks it in the CPU.
pub const CHECKED_ADDRESS_MSRS: [u32; 7] = [
    msr::IA32_FS_BASE,
    msr::IA32_GS_BASE,
    msr::IA32_KERNEL_GS_BASE,
    msr::IA32_LSTAR,
    msr::IA32_CSTAR,
    msr::IA32_SYSENTER_ESP,
    msr::IA32_SYSENTER_EIP,
];

/// Where an MSR's read and write intercept bits are in SVM's MSR
/// permission map (APM 15.11): (byte, bit) of the read bit; the write bit
/// is the next one. `None` for MSRs outside the three mapped ranges
/// (always intercepted).
pub const fn svm_msrpm_bit(msr: u32) -> Option<(usize, u8)> {
    let (base, start) = match msr {
        0..=0x1fff => (0, 0),
        0xc000_0000..=0xc000_1fff => (0xc000_0000, 0x800),
        0xc001_0000..=0xc001_1fff => (0xc001_0000, 0x1000),
        _ => return None,
    };
    let bit = 2 * (msr - base) as usize;
    Some((start + bit / 8, (bit % 8) as u8))
}

/// Where an MSR's bits are in VMX's MSR bitmap (SDM 25.6.9): (read byte,
/// write byte, bit). `None` outside the two mapped ranges.
pub const fn vmx_msr_bitmap_bit(msr: u32) -> Option<(usize, usize, u8)> {
    let (base, read) = match msr {
        0..=0x1fff => (0, 0),
        0xc000_0000..=0xc000_1fff => (0xc000_0000, 1024),
        _ => return None,
    };
    let n = (msr - base) as usize;
    Some((read + n / 8, read + 2048 + n / 8, (n % 8) as u8))
}

#[cfg(test)]
mod msr_tests {
    use super::*;

    #[test]
    fn svm_msrpm_positions_follow_the_apm() {
        assert_eq!(svm_msrpm_bit(0), Some((0, 0)));
        assert_eq!(svm_msrpm_bit(0x174), Some((0x5d, 0)));
        assert_eq!(svm_msrpm_bit(0xc000_0082), Some((0x800 + 0x20, 4)));
        assert_eq!(svm_msrpm_bit(0xc001_0000), Some((0x1000, 0)));
        assert_eq!(svm_msrpm_bit(0x4000_0000), None);
    }

    #[test]
    fn vmx_bitmap_positions_follow_the_sdm() {
        assert_eq!(vmx_msr_bitmap_bit(0x174), Some((0x2e, 0x82e, 4)));
        assert_eq!(vmx_msr_bitmap_bit(0xc000_0100), Some((1024 + 0x20, 3072 + 0x20, 0)));
        assert_eq!(vmx_msr_bitmap_bit(0x4000_0000), None);
    }
}
