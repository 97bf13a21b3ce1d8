//! #VMEXIT codes (APM Vol. 2 Appendix C) and the EXITINFO1 decoders for
//! IOIO (APM §15.10.2) and nested page faults (APM §15.25.6).

use crate::intercept::{IoDirection, IoPortAccess, IoSize};
use bitfield_struct::bitfield;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

abi::open_enum! {
    /// EXITCODE at VMCB 0x070. Ranges have helpers: CR and DR accesses
    /// ([`SvmExitCode::cr_read`] ...), exceptions ([`SvmExitCode::exception`]).
    #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
    pub struct SvmExitCode(u64) {
        READ_CR0 = 0x00,
        READ_CR3 = 0x03,
        READ_CR4 = 0x04,
        READ_CR8 = 0x08,
        WRITE_CR0 = 0x10,
        WRITE_CR3 = 0x13,
        WRITE_CR4 = 0x14,
        WRITE_CR8 = 0x18,
        EXCEPTION_DE = 0x40,
        EXCEPTION_DB = 0x41,
        EXCEPTION_BP = 0x43,
        EXCEPTION_UD = 0x46,
        EXCEPTION_DF = 0x48,
        EXCEPTION_GP = 0x4d,
        EXCEPTION_PF = 0x4e,
        EXCEPTION_AC = 0x51,
        EXCEPTION_MC = 0x52,
        INTR = 0x60,
        NMI = 0x61,
        SMI = 0x62,
        INIT = 0x63,
        VINTR = 0x64,
        CR0_SELECTIVE_WRITE = 0x65,
        IDTR_READ = 0x66,
        GDTR_READ = 0x67,
        LDTR_READ = 0x68,
        TR_READ = 0x69,
        IDTR_WRITE = 0x6a,
        GDTR_WRITE = 0x6b,
        LDTR_WRITE = 0x6c,
        TR_WRITE = 0x6d,
        RDTSC = 0x6e,
        RDPMC = 0x6f,
        PUSHF = 0x70,
        POPF = 0x71,
        CPUID = 0x72,
        RSM = 0x73,
        IRET = 0x74,
        SOFTWARE_INTERRUPT = 0x75,
        INVD = 0x76,
        PAUSE = 0x77,
        HLT = 0x78,
        INVLPG = 0x79,
        INVLPGA = 0x7a,
        IOIO = 0x7b,
        MSR = 0x7c,
        TASK_SWITCH = 0x7d,
        FERR_FREEZE = 0x7e,
        SHUTDOWN = 0x7f,
        VMRUN = 0x80,
        VMMCALL = 0x81,
        VMLOAD = 0x82,
        VMSAVE = 0x83,
        STGI = 0x84,
        CLGI = 0x85,
        SKINIT = 0x86,
        RDTSCP = 0x87,
        ICEBP = 0x88,
        WBINVD = 0x89,
        MONITOR = 0x8a,
        MWAIT = 0x8b,
        MWAIT_CONDITIONAL = 0x8c,
        XSETBV = 0x8d,
        RDPRU = 0x8e,
        EFER_WRITE_TRAP = 0x8f,
        INVLPGB = 0xa0,
        INVLPGB_ILLEGAL = 0xa1,
        INVPCID = 0xa2,
        MCOMMIT = 0xa3,
        TLBSYNC = 0xa4,
        NPF = 0x400,
        AVIC_INCOMPLETE_IPI = 0x401,
        AVIC_NOACCEL = 0x402,
        VMGEXIT = 0x403,
        /// VMRUN found invalid guest state (-1).
        INVALID = 0xffff_ffff_ffff_ffff,
        /// The VMSA was busy (SEV-ES, -2).
        BUSY = 0xffff_ffff_ffff_fffe,
    }
}

const READ_CR_BASE: u64 = 0x00;
const WRITE_CR_BASE: u64 = 0x10;
const READ_DR_BASE: u64 = 0x20;
const WRITE_DR_BASE: u64 = 0x30;
const EXCEPTION_BASE: u64 = 0x40;
const CR_WRITE_TRAP_BASE: u64 = 0x90;

impl SvmExitCode {
    /// Exit on reading CR`n`, `n` < 16.
    pub const fn cr_read(n: u8) -> Self {
        SvmExitCode(READ_CR_BASE + (n & 0xf) as u64)
    }

    pub const fn cr_write(n: u8) -> Self {
        SvmExitCode(WRITE_CR_BASE + (n & 0xf) as u64)
    }

    pub const fn dr_read(n: u8) -> Self {
        SvmExitCode(READ_DR_BASE + (n & 0xf) as u64)
    }

    pub const fn dr_write(n: u8) -> Self {
        SvmExitCode(WRITE_DR_BASE + (n & 0xf) as u64)
    }

    /// Exit on exception `vector`, `vector` < 32.
    pub const fn exception(vector: u8) -> Self {
        SvmExitCode(EXCEPTION_BASE + (vector & 0x1f) as u64)
    }

    /// The vector, if this is an exception intercept.
    pub const fn as_exception(self) -> Option<u8> {
        Self::in_range(self.0, EXCEPTION_BASE, 32)
    }

    /// The register, if this is a CR read intercept.
    pub const fn as_cr_read(self) -> Option<u8> {
        Self::in_range(self.0, READ_CR_BASE, 16)
    }

    /// The register, if this is a CR write intercept.
    pub const fn as_cr_write(self) -> Option<u8> {
        Self::in_range(self.0, WRITE_CR_BASE, 16)
    }

    /// Whether this is a debug-register read or write intercept.
    pub const fn is_dr_access(self) -> bool {
        Self::in_range(self.0, READ_DR_BASE, 32).is_some()
    }

    /// The register, if this is a CR write trap (after the write).
    pub const fn as_cr_write_trap(self) -> Option<u8> {
        Self::in_range(self.0, CR_WRITE_TRAP_BASE, 16)
    }

    /// An instruction no guest is offered: SVM's own (CPUID has no SVM
    /// and EFER.SVME reads clear, though the hardware needs it set for
    /// VMRUN) and MONITOR/MWAIT (no CPUID.1:ECX.MONITOR). A CPU without
    /// them raises #UD, and so must the hypervisor (APM Vol. 3: each
    /// raises #UD when its feature is absent).
    pub const fn is_not_offered_instruction(self) -> bool {
        matches!(
            self,
            Self::VMRUN
                | Self::VMLOAD
                | Self::VMSAVE
                | Self::STGI
                | Self::CLGI
                | Self::SKINIT
                | Self::INVLPGA
                | Self::MONITOR
                | Self::MWAIT
                | Self::MWAIT_CONDITIONAL
        )
    }

    const fn in_range(code: u64, base: u64, count: u64) -> Option<u8> {
        if code >= base && code < base + count { Some((code - base) as u8) } else { None }
    }
}

/// EXITINFO1 of an IOIO intercept (APM §15.10.2). EXITINFO2 holds the RIP
/// of the next instruction.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct IoioExitInfo {
    /// 1 = IN, 0 = OUT.
    pub is_in: bool,
    pub _reserved0: bool,
    pub string: bool,
    pub rep: bool,
    pub size8: bool,
    pub size16: bool,
    pub size32: bool,
    /// Address size of a string instruction. QEMU sets none of bits 7-9.
    pub address16: bool,
    pub address32: bool,
    pub address64: bool,
    /// Effective segment of a string instruction (0 = ES ... 5 = GS), with decode assists.
    #[bits(3)]
    pub segment: u8,
    #[bits(3)]
    pub _reserved1: u8,
    pub port: u16,
    pub _reserved2: u32,
}

impl IoioExitInfo {
    /// `None` unless exactly one size bit is set.
    pub const fn size(self) -> Option<IoSize> {
        match (self.size8(), self.size16(), self.size32()) {
            (true, false, false) => Some(IoSize::Byte),
            (false, true, false) => Some(IoSize::Word),
            (false, false, true) => Some(IoSize::Dword),
            _ => None,
        }
    }

    /// Address size in bits, `None` when no bit (as under QEMU) or several are set.
    pub const fn address_size(self) -> Option<u8> {
        match (self.address16(), self.address32(), self.address64()) {
            (true, false, false) => Some(16),
            (false, true, false) => Some(32),
            (false, false, true) => Some(64),
            _ => None,
        }
    }

    /// The access, or `None` if the size bits are not one of the three sizes.
    pub const fn access(self) -> Option<IoPortAccess> {
        let Some(size) = self.size() else { return None };
        let direction = if self.is_in() { IoDirection::In } else { IoDirection::Out };
        Some(IoPortAccess { port: self.port(), size, direction, string: self.string(), rep: self.rep() })
    }
}

/// EXITINFO1 of a nested page fault (APM §15.25.6): a #PF-style error
/// code in the low half and where the fault arose in bits 32-33.
/// EXITINFO2 holds the faulting guest-physical address.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct NpfExitInfo {
    /// The nested entry was present (a rights fault, not a missing page).
    pub present: bool,
    pub write: bool,
    /// Always set for an ordinary nested walk, which is a user access.
    pub user: bool,
    /// A reserved bit was set in a nested entry.
    pub reserved_bit: bool,
    pub fetch: bool,
    pub protection_key: bool,
    pub shadow_stack: bool,
    #[bits(25)]
    pub _reserved0: u32,
    /// The fault was on the guest's final physical address.
    pub final_translation: bool,
    /// The fault was on a guest page-table access during the guest's walk.
    pub guest_page_table_walk: bool,
    #[bits(30)]
    pub _reserved1: u32,
}

/// The length of the instruction at `rip` whose next instruction is at
/// `next` (nRIP, or EXITINFO2 of an IOIO exit), `None` unless 1 to 15
/// bytes. Taken modulo 64 KiB: the next RIP has wrapped at the mode's
/// width (IP, EIP) after an instruction that ends the space, and the
/// difference of the low 16 bits is still its length.
pub const fn length_to_next(rip: u64, next: u64) -> Option<u8> {
    let len = next.wrapping_sub(rip) & 0xffff;
    if len >= 1 && len <= 15 { Some(len as u8) } else { None }
}
