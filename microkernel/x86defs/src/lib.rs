//! Architectural x86-64 definitions, written once for ring 0 (`kerncore`,
//! the kernel's arch layer, the loader) and the VMM (`x86decode`, the VID,
//! the partition manager), after OpenVMM's `x86defs`.
//!
//! Only facts of the architecture live here (SDM Vol. 3A, APM Vol. 2):
//! register numbers, control-register and flag bits, MSR numbers, the
//! decoding modes. Layouts of VMX and SVM structures are `kerncore`'s;
//! TLFS definitions are `tlfs`'s.

#![no_std]
#![forbid(unsafe_code)]

pub mod cmos;
pub mod mode;
pub mod msr;

/// A general-purpose register, by its architectural number (the ModRM and
/// REX encoding, and the register field of VMX exit qualifications).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gpr {
    Rax,
    Rcx,
    Rdx,
    Rbx,
    Rsp,
    Rbp,
    Rsi,
    Rdi,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
}

const GPRS: [Gpr; 16] = [
    Gpr::Rax,
    Gpr::Rcx,
    Gpr::Rdx,
    Gpr::Rbx,
    Gpr::Rsp,
    Gpr::Rbp,
    Gpr::Rsi,
    Gpr::Rdi,
    Gpr::R8,
    Gpr::R9,
    Gpr::R10,
    Gpr::R11,
    Gpr::R12,
    Gpr::R13,
    Gpr::R14,
    Gpr::R15,
];

impl Gpr {
    /// The register with this number; only the low four bits are used.
    pub const fn from_number(number: u8) -> Gpr {
        GPRS[(number & 0xf) as usize]
    }

    /// The architectural number, 0 (RAX) to 15 (R15).
    pub const fn number(self) -> u8 {
        self as u8
    }
}

/// CR0.PE: protected mode.
pub const CR0_PE: u64 = 1 << 0;
/// CR0.ET: hard-wired to 1 on every CPU with long mode; reads as 1 after INIT.
pub const CR0_ET: u64 = 1 << 4;
/// CR0.PG: paging.
pub const CR0_PG: u64 = 1 << 31;
/// CR0.WP: supervisor writes honour read-only pages.
pub const CR0_WP: u64 = 1 << 16;

/// CR4.PSE: 4 MiB pages without PAE.
pub const CR4_PSE: u64 = 1 << 4;
/// CR4.PAE: physical-address extension (required for long mode).
pub const CR4_PAE: u64 = 1 << 5;
/// CR4.LA57: five-level paging.
pub const CR4_LA57: u64 = 1 << 12;
/// CR4.SMEP: no supervisor fetch from a user page.
pub const CR4_SMEP: u64 = 1 << 20;
/// CR4.SMAP: no supervisor data access to a user page unless RFLAGS.AC.
pub const CR4_SMAP: u64 = 1 << 21;

/// EFER.SCE: SYSCALL/SYSRET enabled.
pub const EFER_SCE: u64 = 1 << 0;
/// EFER.LME: long mode enabled (takes effect with CR0.PG).
pub const EFER_LME: u64 = 1 << 8;
/// EFER.LMA: long mode active; set by the CPU, not by WRMSR.
pub const EFER_LMA: u64 = 1 << 10;
/// EFER.NXE: the no-execute bit of page-table entries is honoured.
pub const EFER_NXE: u64 = 1 << 11;
/// EFER.SVME (AMD): set in the host to use SVM, and required in a guest's EFER.
pub const EFER_SVME: u64 = 1 << 12;

/// RFLAGS bit 1: reserved, always 1.
pub const RFLAGS_FIXED: u64 = 1 << 1;
/// RFLAGS bits that are reserved and read as 0: 3, 5, 15 and 22..=63.
pub const RFLAGS_RESERVED_ZERO: u64 = (1 << 3) | (1 << 5) | (1 << 15) | !((1 << 22) - 1);
/// RFLAGS.TF: single-step trap.
pub const RFLAGS_TF: u64 = 1 << 8;
/// RFLAGS.IF: maskable interrupts enabled.
pub const RFLAGS_IF: u64 = 1 << 9;
/// RFLAGS.NT: nested task (`iretq` with it set raises #GP in 64-bit mode).
pub const RFLAGS_NT: u64 = 1 << 14;
/// RFLAGS.DF: string operations count down.
pub const RFLAGS_DF: u64 = 1 << 10;
/// RFLAGS.RF: instruction breakpoints are not taken at the next instruction.
pub const RFLAGS_RF: u64 = 1 << 16;
/// RFLAGS.VM: virtual-8086 mode.
pub const RFLAGS_VM: u64 = 1 << 17;
/// RFLAGS.AC: alignment check, or with SMAP, user access allowed.
pub const RFLAGS_AC: u64 = 1 << 18;

/// IA32_APIC_BASE bit 11: the local APIC is enabled.
pub const APIC_BASE_ENABLE: u64 = 1 << 11;

/// Bytes of a (4 KiB) page, the unit of every mapping and memory grant.
pub const PAGE_SIZE: u64 = 4096;

/// Number of I/O ports: the port space is `0..IO_PORT_COUNT`.
pub const IO_PORT_COUNT: u32 = 0x1_0000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpr_numbers_round_trip_through_the_low_four_bits() {
        for n in 0..16u8 {
            assert_eq!(Gpr::from_number(n).number(), n);
            assert_eq!(Gpr::from_number(n | 0xf0), Gpr::from_number(n));
        }
        assert_eq!(Gpr::from_number(4), Gpr::Rsp);
        assert_eq!(Gpr::R15.number(), 15);
    }

    #[test]
    fn reserved_rflags_bits_exclude_the_defined_ones() {
        let defined = RFLAGS_FIXED | RFLAGS_TF | RFLAGS_IF | RFLAGS_DF | RFLAGS_NT | RFLAGS_AC;
        assert_eq!(RFLAGS_RESERVED_ZERO & defined, 0);
        assert_eq!(RFLAGS_RESERVED_ZERO & (1 << 21), 0, "ID is bit 21, not reserved");
        assert_ne!(RFLAGS_RESERVED_ZERO & (1 << 22), 0);
    }
}
