//! Guest writes to CR0 and CR4 that exit (SDM Vol. 3A §2.5, Vol. 2B "MOV
//! to/from Control Registers", "LMSW", "CLTS"; APM Vol. 2 §3.1): their
//! architectural checks, the CR0/CR4/EFER they leave, and the decoding of
//! the instruction where the CPU does not decode it.
//!
//! Ring 0 emulates such a write on both backends. Under VMX it exits when
//! a host-owned bit (CR0.NE, CR4.VMXE, the bits the CPU fixes to 0) would
//! differ from the read shadow; under SVM every write exits, because
//! QEMU's TCG makes none of the checks (it leaves long mode on a clear
//! PG in 64-bit mode, keeps CR0 bit 32, and ends the guest's run with an
//! invalid-state exit on a reserved CR4 bit).

mod decode;
#[cfg(test)]
mod tests;

pub use decode::{Decoded, MAX_LENGTH as MAX_INSTRUCTION_LENGTH, decode};

use x86defs::{EFER_LMA, EFER_LME};

/// CR0 bits (SDM Vol. 3A §2.5).
pub mod cr0 {
    pub const PE: u64 = 1 << 0;
    pub const MP: u64 = 1 << 1;
    pub const EM: u64 = 1 << 2;
    pub const TS: u64 = 1 << 3;
    pub const ET: u64 = 1 << 4;
    pub const NE: u64 = 1 << 5;
    pub const WP: u64 = 1 << 16;
    pub const AM: u64 = 1 << 18;
    pub const NW: u64 = 1 << 29;
    pub const CD: u64 = 1 << 30;
    pub const PG: u64 = 1 << 31;
    /// Every defined bit. The other low bits are reserved and ignored on
    /// a write (they read 0); bits 63:32 are reserved and must be 0.
    pub const DEFINED: u64 = PE | MP | EM | TS | ET | NE | WP | AM | NW | CD | PG;
    /// The bits LMSW loads (bits 3:0 of its operand).
    pub const LMSW: u64 = PE | MP | EM | TS;
}

/// CR4 bits (SDM Vol. 3A §2.5).
pub mod cr4 {
    pub const VME: u64 = 1 << 0;
    pub const PVI: u64 = 1 << 1;
    pub const TSD: u64 = 1 << 2;
    pub const DE: u64 = 1 << 3;
    pub const PSE: u64 = 1 << 4;
    pub const PAE: u64 = 1 << 5;
    pub const MCE: u64 = 1 << 6;
    pub const PGE: u64 = 1 << 7;
    pub const PCE: u64 = 1 << 8;
    pub const OSFXSR: u64 = 1 << 9;
    pub const OSXMMEXCPT: u64 = 1 << 10;
    pub const UMIP: u64 = 1 << 11;
    pub const LA57: u64 = 1 << 12;
    pub const VMXE: u64 = 1 << 13;
    pub const SMXE: u64 = 1 << 14;
    pub const FSGSBASE: u64 = 1 << 16;
    pub const PCIDE: u64 = 1 << 17;
    pub const OSXSAVE: u64 = 1 << 18;
    pub const SMEP: u64 = 1 << 20;
    pub const SMAP: u64 = 1 << 21;
    pub const PKE: u64 = 1 << 22;
    pub const CET: u64 = 1 << 23;
    /// What every x86-64 CPU has.
    pub const BASE: u64 = VME | PVI | TSD | DE | PSE | PAE | MCE | PGE | PCE | OSFXSR | OSXMMEXCPT;
}

/// CR4 bits a guest may set on a CPU with the features `cpu` names
/// (CPUID leaves 1 and 7): [`cr4::BASE`] and those of the features the
/// CPU has. Never VMXE or SMXE (no guest is offered VMX or SMX), nor CET,
/// PKS, key locker, user interrupts or LAM (their state is not switched),
/// nor LA57 (ring 0 walks guest page tables of 4 levels only).
pub const fn cr4_offered(cpu: Cr4Features) -> u64 {
    let mut bits = cr4::BASE;
    let optional = [
        (cpu.umip, cr4::UMIP),
        (cpu.fsgsbase, cr4::FSGSBASE),
        (cpu.pcid, cr4::PCIDE),
        (cpu.xsave, cr4::OSXSAVE),
        (cpu.smep, cr4::SMEP),
        (cpu.smap, cr4::SMAP),
        (cpu.pku, cr4::PKE),
    ];
    let mut i = 0;
    while i < optional.len() {
        if optional[i].0 {
            bits |= optional[i].1;
        }
        i += 1;
    }
    bits
}

/// The CPU features that make CR4 bits usable (CPUID 1 ECX; 7.0 EBX, ECX).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cr4Features {
    pub umip: bool,
    pub la57: bool,
    pub fsgsbase: bool,
    pub pcid: bool,
    pub xsave: bool,
    pub smep: bool,
    pub smap: bool,
    pub pku: bool,
}

impl Cr4Features {
    /// From CPUID.1:ECX and CPUID.(EAX=7,ECX=0):EBX and ECX.
    pub const fn from_cpuid(leaf1_ecx: u32, leaf7_ebx: u32, leaf7_ecx: u32) -> Cr4Features {
        const fn bit(reg: u32, n: u32) -> bool {
            reg & (1 << n) != 0
        }
        Cr4Features {
            umip: bit(leaf7_ecx, 2),
            la57: bit(leaf7_ecx, 16),
            fsgsbase: bit(leaf7_ebx, 0),
            pcid: bit(leaf1_ecx, 17),
            xsave: bit(leaf1_ecx, 26),
            smep: bit(leaf7_ebx, 7),
            smap: bit(leaf7_ebx, 20),
            pku: bit(leaf7_ecx, 3),
        }
    }
}

/// A write to CR0 or CR4, with the value it writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrWrite {
    /// MOV to CR0 (the source register's full value).
    Cr0(u64),
    /// MOV to CR4.
    Cr4(u64),
    /// CLTS: clears CR0.TS.
    Clts,
    /// LMSW: its 16-bit source operand.
    Lmsw(u16),
}

/// The guest's CR0, CR4 and EFER as it sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrState {
    pub cr0: u64,
    pub cr4: u64,
    pub efer: u64,
}

/// What else a write is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrContext {
    pub cr3: u64,
    /// The guest runs in 64-bit mode (EFER.LMA and CS.L): the operand has
    /// 64 bits. Otherwise it has 32 and bits 63:32 are ignored.
    pub mode64: bool,
    /// CR4 bits the guest may set ([`cr4_offered`]).
    pub cr4_offered: u64,
}

/// A write that passed its checks: the state it leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    pub state: CrState,
    /// PAE paging is in use after the write and it changed a bit that
    /// makes the CPU load the PDPTEs from CR3 (SDM Vol. 3A §4.4.1).
    pub load_pdptes: bool,
}

/// CR0 and CR4 bits whose change invalidates the TLBs and paging-structure
/// caches (SDM Vol. 3A 4.10.4.1, "MOV to CR0", "MOV to CR4"; APM Vol. 2
/// 5.5.3): an emulated write that changes one must flush the VP's own
/// translations, as the instruction would have. PE, WP and SMAP are added
/// (they change how translations are used; KVM resets its MMU for them).
pub const CR0_FLUSHING: u64 = cr0::PG | cr0::WP | cr0::PE;
pub const CR4_FLUSHING: u64 = cr4::PGE | cr4::PCIDE | cr4::PAE | cr4::PSE | cr4::SMEP | cr4::SMAP | cr4::LA57;

/// Whether going from `old` to `new` flushes the VP's translations.
pub const fn flushes_tlb(old: CrState, new: CrState) -> bool {
    (old.cr0 ^ new.cr0) & CR0_FLUSHING != 0 || (old.cr4 ^ new.cr4) & CR4_FLUSHING != 0
}

/// The write raises #GP(0) and changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeneralProtection;

/// PAE paging: CR0.PG, CR4.PAE and not IA-32e mode.
pub const fn pae_paging(cr0: u64, cr4: u64, efer: u64) -> bool {
    cr0 & cr0::PG != 0 && cr4 & cr4::PAE != 0 && efer & EFER_LMA == 0
}

/// Checks `write` against the SDM and returns the state it leaves.
pub fn apply(state: CrState, context: &CrContext, write: CrWrite) -> Result<Applied, GeneralProtection> {
    let operand = |value: u64| if context.mode64 { value } else { value & 0xffff_ffff };
    match write {
        CrWrite::Cr0(value) => write_cr0(state, context, operand(value)),
        CrWrite::Cr4(value) => write_cr4(state, context, operand(value)),
        CrWrite::Clts => write_cr0(state, context, state.cr0 & !cr0::TS),
        // LMSW loads PE, MP, EM and TS, but cannot clear PE.
        CrWrite::Lmsw(source) => {
            let value = (state.cr0 & !cr0::LMSW) | (u64::from(source) & cr0::LMSW) | (state.cr0 & cr0::PE);
            write_cr0(state, context, value)
        }
    }
}

fn write_cr0(state: CrState, context: &CrContext, value: u64) -> Result<Applied, GeneralProtection> {
    let fault = Err(GeneralProtection);
    if value >> 32 != 0 {
        return fault;
    }
    // ET is fixed to 1 (P6 and later); other reserved low bits are ignored.
    let cr0 = (value & cr0::DEFINED) | cr0::ET;
    if (cr0 & cr0::PG != 0 && cr0 & cr0::PE == 0) || (cr0 & cr0::NW != 0 && cr0 & cr0::CD == 0) {
        return fault;
    }
    if cr0 & cr0::WP == 0 && state.cr4 & cr4::CET != 0 {
        return fault;
    }
    let (was_paging, paging) = (state.cr0 & cr0::PG != 0, cr0 & cr0::PG != 0);
    let mut efer = state.efer;
    if !was_paging && paging && efer & EFER_LME != 0 {
        // Activating IA-32e mode needs PAE (SDM Vol. 3A §10.8.5).
        if state.cr4 & cr4::PAE == 0 {
            return fault;
        }
        efer |= EFER_LMA;
    }
    if was_paging && !paging {
        // Paging stays on in 64-bit mode and with PCIDs; from
        // compatibility mode, turning it off leaves IA-32e mode.
        if context.mode64 || state.cr4 & cr4::PCIDE != 0 {
            return fault;
        }
        efer &= !EFER_LMA;
    }
    let changed = cr0 ^ state.cr0;
    let load_pdptes = pae_paging(cr0, state.cr4, efer) && changed & (cr0::PG | cr0::CD | cr0::NW) != 0;
    Ok(Applied { state: CrState { cr0, cr4: state.cr4, efer }, load_pdptes })
}

fn write_cr4(state: CrState, context: &CrContext, cr4: u64) -> Result<Applied, GeneralProtection> {
    let fault = Err(GeneralProtection);
    let long_mode = state.efer & EFER_LMA != 0;
    let changed = cr4 ^ state.cr4;
    if cr4 & !context.cr4_offered != 0 {
        return fault;
    }
    // IA-32e mode keeps PAE and its paging depth.
    if long_mode && (cr4 & cr4::PAE == 0 || changed & cr4::LA57 != 0) {
        return fault;
    }
    if changed & cr4 & cr4::PCIDE != 0 && (!long_mode || context.cr3 & 0xfff != 0) {
        return fault;
    }
    if cr4 & cr4::CET != 0 && state.cr0 & cr0::WP == 0 {
        return fault;
    }
    let load_pdptes =
        pae_paging(state.cr0, cr4, state.efer) && changed & (cr4::PAE | cr4::PGE | cr4::PSE | cr4::SMEP) != 0;
    Ok(Applied { state: CrState { cr4, ..state }, load_pdptes })
}

/// The address of the four PDPTEs PAE paging takes from CR3 (bits 31:5).
pub const fn pdpt_address(cr3: u64) -> u64 {
    cr3 & 0xffff_ffe0
}

/// A PDPTE the CPU may load: not present, or without reserved bits
/// (2:1, 8:5 and those from MAXPHYADDR up; SDM Vol. 3A §4.4.1).
pub const fn pdpte_valid(entry: u64, physical_address_bits: u8) -> bool {
    let above = if physical_address_bits >= 64 { 0 } else { u64::MAX << physical_address_bits };
    entry & 1 == 0 || entry & (0b110 | 0b1_1110_0000 | above) == 0
}
