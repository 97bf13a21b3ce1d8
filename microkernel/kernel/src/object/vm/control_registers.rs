//! A guest's CR0 or CR4 write that exited, emulated in ring 0 on both
//! backends (`kerncore::cr`): VMX exits when a host-owned bit (CR0.NE,
//! CR4.VMXE, bits the CPU fixes to 0) would differ from the read shadow,
//! SVM on every write. The write either raises #GP(0) and changes nothing,
//! or sets CR0, CR4 and EFER.LMA as the SDM says (and the PDPTEs, when
//! PAE paging starts or changes), and the instruction completes.

use super::Vcpu;
use super::ring0::{fault, register, skip};
use crate::arch::vm::{CrAccess, Exit};
use kerncore::cr::{self, CrContext, CrState, CrWrite, Decoded, GeneralProtection};
use kerncore::guest_paging::{self, Paging};
use kerncore::intercept::vector;
use tlfs::HvRegisterName;
use x86defs::EFER_LMA;

/// The TLFS name of the general-purpose register numbered `gpr`.
const fn gpr_name(gpr: u8) -> HvRegisterName {
    HvRegisterName(HvRegisterName::RAX.0 + (gpr & 0xf) as u32)
}

/// Emulates the write `access` stands for, at `exit`; false if it is
/// not one this emulation knows (LMSW from memory under SVM), for the
/// handler to see as an exit it does not know either.
pub fn emulate(vcpu: &mut Vcpu, exit: &Exit, access: CrAccess) -> bool {
    // A VP whose partition was destroyed while it waited for the lock has
    // no guest memory left to decode from.
    if vcpu.partition.is_none() {
        return false;
    }
    // The CPU checks the privilege before the exit; should one come at
    // CPL > 0, it is the #GP it stands for.
    if vcpu.hw.execution_state().cpl != 0 {
        fault(vcpu, vector::GENERAL_PROTECTION);
        return true;
    }
    let state = CrState {
        cr0: register(vcpu, HvRegisterName::CR0),
        cr4: register(vcpu, HvRegisterName::CR4),
        efer: register(vcpu, HvRegisterName::EFER),
    };
    let cs = vcpu.get(HvRegisterName::CS).map(|(low, high)| tlfs::segment_register_from_value(low, high));
    let mode64 = state.efer & EFER_LMA != 0 && cs.is_some_and(|cs| cs.attributes.long());
    let cr3 = register(vcpu, HvRegisterName::CR3);
    let context = CrContext { cr3, mode64, cr4_offered: crate::arch::vm::cr4_offered() };
    let linear_cs = if mode64 { 0 } else { cs.map_or(0, |cs| cs.base) };
    let Some((write, length)) = decoded(vcpu, exit, access, state, cr3, mode64, linear_cs) else {
        return false;
    };
    let applied = match cr::apply(state, &context, write) {
        Ok(applied) => applied,
        Err(GeneralProtection) => {
            fault(vcpu, vector::GENERAL_PROTECTION);
            return true;
        }
    };
    if applied.load_pdptes {
        match pdptes(vcpu, cr3) {
            Some(pdptes) => vcpu.hw.set_pdptes(pdptes),
            None => {
                fault(vcpu, vector::GENERAL_PROTECTION);
                return true;
            }
        }
    }
    let new = applied.state;
    vcpu.tlb_stale |= cr::flushes_tlb(state, new);
    for (name, old, value) in [
        (HvRegisterName::EFER, state.efer, new.efer),
        (HvRegisterName::CR4, state.cr4, new.cr4),
        (HvRegisterName::CR0, state.cr0, new.cr0),
    ] {
        if value != old || name == HvRegisterName::CR0 {
            vcpu.set(name, value, 0);
        }
    }
    skip(vcpu, &Exit { instruction_length: length, ..*exit });
    true
}

/// The write and its instruction's length: as the CPU decoded it, or
/// decoded here from the guest's memory at CS:RIP.
fn decoded(
    vcpu: &mut Vcpu,
    exit: &Exit,
    access: CrAccess,
    state: CrState,
    cr3: u64,
    mode64: bool,
    cs_base: u64,
) -> Option<(CrWrite, u8)> {
    let write = |vcpu: &mut Vcpu, cr: u8, gpr: u8| {
        let value = register(vcpu, gpr_name(gpr));
        match cr {
            0 => Some(CrWrite::Cr0(value)),
            4 => Some(CrWrite::Cr4(value)),
            _ => None,
        }
    };
    let length = exit.instruction_length;
    match access {
        CrAccess::Mov { cr, gpr } => Some((write(vcpu, cr, gpr)?, length)),
        CrAccess::Clts => Some((CrWrite::Clts, length)),
        CrAccess::Lmsw(source) => Some((CrWrite::Lmsw(source), length)),
        CrAccess::Undecoded { cr } => {
            let paging = Paging { cr0: state.cr0, cr3, cr4: state.cr4, efer: state.efer };
            let linear = if mode64 { exit.rip } else { cs_base.wrapping_add(exit.rip) & 0xffff_ffff };
            let mut bytes = [0u8; cr::MAX_INSTRUCTION_LENGTH];
            let fetched = fetch(vcpu, paging, linear, &mut bytes);
            match cr::decode(&bytes[..fetched], mode64)? {
                Decoded::MovToCr { cr: decoded, gpr, length } if decoded == cr => Some((write(vcpu, cr, gpr)?, length)),
                Decoded::Clts { length } if cr == 0 => Some((CrWrite::Clts, length)),
                Decoded::Lmsw { gpr, length } if cr == 0 => {
                    Some((CrWrite::Lmsw(register(vcpu, gpr_name(gpr)) as u16), length))
                }
                _ => None,
            }
        }
    }
}

/// Reads up to `buf.len()` bytes at a guest linear address, page by page;
/// how many could be read.
fn fetch(vcpu: &mut Vcpu, paging: Paging, linear: u64, buf: &mut [u8]) -> usize {
    let mut done = 0;
    while done < buf.len() {
        let at = linear.wrapping_add(done as u64);
        let chunk = ((0x1000 - (at & 0xfff)) as usize).min(buf.len() - done);
        let Some(gpa) = guest_paging::translate(paging, at, |gpa| read_u64(vcpu, gpa)) else { break };
        if !vcpu.hw.read_guest(gpa, &mut buf[done..done + chunk]) {
            break;
        }
        done += chunk;
    }
    done
}

/// Eight bytes of guest memory (fewer at the end of a page, the rest 0).
fn read_u64(vcpu: &Vcpu, gpa: u64) -> Option<u64> {
    let mut bytes = [0u8; 8];
    let n = (0x1000 - (gpa & 0xfff) as usize).min(8);
    vcpu.hw.read_guest(gpa, &mut bytes[..n]).then(|| u64::from_le_bytes(bytes))
}

/// The four PDPTEs at CR3, if every one is valid (SDM Vol. 3A §4.4.1).
fn pdptes(vcpu: &Vcpu, cr3: u64) -> Option<[u64; 4]> {
    let width = crate::arch::cpu::physical_address_bits();
    let mut entries = [0u64; 4];
    for (i, entry) in entries.iter_mut().enumerate() {
        *entry = read_u64(vcpu, cr::pdpt_address(cr3) + 8 * i as u64)?;
        if !cr::pdpte_valid(*entry, width) {
            return None;
        }
    }
    Some(entries)
}
