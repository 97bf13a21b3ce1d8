use super::*;
use x86defs::{EFER_LMA, EFER_LME, EFER_NXE};

/// A 64-bit guest as Linux runs: PE, MP, ET, NE, WP, AM, PG; PAE, PGE, OSFXSR.
const LONG: CrState = CrState {
    cr0: cr0::PE | cr0::MP | cr0::ET | cr0::NE | cr0::WP | cr0::AM | cr0::PG,
    cr4: cr4::PAE | cr4::PGE | cr4::OSFXSR,
    efer: EFER_LME | EFER_LMA | EFER_NXE,
};
const IN_64: CrContext = CrContext { cr3: 0x1000, mode64: true, cr4_offered: cr4::BASE | cr4::OSXSAVE | cr4::PCIDE };
const PROTECTED: CrState = CrState { cr0: cr0::PE | cr0::ET, cr4: 0, efer: 0 };
const IN_32: CrContext = CrContext { mode64: false, ..IN_64 };

fn cr0_after(state: CrState, context: &CrContext, value: u64) -> Result<u64, GeneralProtection> {
    apply(state, context, CrWrite::Cr0(value)).map(|a| a.state.cr0)
}

#[test]
fn clearing_ne_in_long_mode_is_a_plain_write() {
    let value = 0x8001_0001;
    let applied = apply(LONG, &IN_64, CrWrite::Cr0(value)).unwrap();
    assert_eq!(applied.state, CrState { cr0: value | cr0::ET, ..LONG });
    assert!(!applied.load_pdptes);
}

#[test]
fn the_sdm_invalid_cr0_combinations_fault() {
    let gp = Err(GeneralProtection);
    assert_eq!(cr0_after(LONG, &IN_64, LONG.cr0 | 1 << 32), gp, "bit 32 (reserved)");
    assert_eq!(cr0_after(LONG, &IN_64, LONG.cr0 | cr0::NW), gp, "NW without CD");
    assert_eq!(cr0_after(LONG, &IN_64, LONG.cr0 & !cr0::PG), gp, "PG cleared in 64-bit mode");
    assert_eq!(cr0_after(PROTECTED, &IN_32, cr0::PG), gp, "PG without PE");
    let with_cet = CrState { cr4: LONG.cr4 | cr4::CET, ..LONG };
    assert_eq!(cr0_after(with_cet, &IN_64, LONG.cr0 & !cr0::WP), gp, "WP cleared with CET");
    let with_pcid = CrState { cr4: LONG.cr4 | cr4::PCIDE, ..LONG };
    let compatibility = CrContext { mode64: false, ..IN_64 };
    assert_eq!(cr0_after(with_pcid, &compatibility, LONG.cr0 & !cr0::PG), gp, "PG cleared with PCIDE");
}

#[test]
fn cache_disable_and_reserved_low_bits() {
    assert_eq!(cr0_after(LONG, &IN_64, LONG.cr0 | cr0::CD), Ok(LONG.cr0 | cr0::CD));
    assert_eq!(cr0_after(LONG, &IN_64, LONG.cr0 | cr0::CD | cr0::NW), Ok(LONG.cr0 | cr0::CD | cr0::NW));
    // Reserved low bits are ignored; ET stays set.
    assert_eq!(cr0_after(PROTECTED, &IN_32, cr0::PE | 1 << 6 | 1 << 17), Ok(cr0::PE | cr0::ET));
    // Outside 64-bit mode the operand has 32 bits.
    assert_eq!(cr0_after(PROTECTED, &IN_32, 1 << 32 | cr0::PE | cr0::NE), Ok(cr0::PE | cr0::ET | cr0::NE));
}

#[test]
fn paging_with_lme_activates_and_leaves_ia32e_mode() {
    let before = CrState { cr0: cr0::PE | cr0::ET, cr4: cr4::PAE, efer: EFER_LME };
    let on = apply(before, &IN_32, CrWrite::Cr0(before.cr0 | cr0::PG)).unwrap();
    assert_eq!(on.state.efer, EFER_LME | EFER_LMA);
    assert!(!on.load_pdptes, "IA-32e paging has no PDPTE registers");
    // From compatibility mode, clearing PG leaves IA-32e mode.
    let off = apply(on.state, &IN_32, CrWrite::Cr0(before.cr0)).unwrap();
    assert_eq!(off.state.efer, EFER_LME);
    // Without PAE, activating IA-32e mode faults.
    let no_pae = CrState { cr4: 0, ..before };
    assert_eq!(apply(no_pae, &IN_32, CrWrite::Cr0(before.cr0 | cr0::PG)), Err(GeneralProtection));
}

#[test]
fn pae_paging_loads_the_pdptes_when_it_starts_or_its_bits_change() {
    let before = CrState { cr0: cr0::PE | cr0::ET, cr4: cr4::PAE, efer: 0 };
    let on = apply(before, &IN_32, CrWrite::Cr0(before.cr0 | cr0::PG)).unwrap();
    assert!(on.load_pdptes);
    assert_eq!(on.state.efer, 0);
    assert!(!apply(on.state, &IN_32, CrWrite::Cr0(on.state.cr0 | cr0::TS)).unwrap().load_pdptes);
    assert!(apply(on.state, &IN_32, CrWrite::Cr0(on.state.cr0 | cr0::CD)).unwrap().load_pdptes);
    assert!(apply(on.state, &IN_32, CrWrite::Cr4(cr4::PAE | cr4::PGE)).unwrap().load_pdptes);
    assert!(!apply(on.state, &IN_32, CrWrite::Cr4(cr4::PAE | cr4::OSFXSR)).unwrap().load_pdptes);
}

#[test]
fn the_sdm_invalid_cr4_writes_fault() {
    let write = |state, context: &CrContext, value| apply(state, context, CrWrite::Cr4(value)).map(|a| a.state.cr4);
    let gp = Err(GeneralProtection);
    assert_eq!(write(LONG, &IN_64, LONG.cr4 | cr4::VMXE), gp, "VMXE (VMX is not offered)");
    assert_eq!(write(LONG, &IN_64, LONG.cr4 | cr4::SMXE), gp, "SMXE");
    assert_eq!(write(LONG, &IN_64, LONG.cr4 | 1 << 15), gp, "reserved bit 15");
    assert_eq!(write(LONG, &IN_64, LONG.cr4 | 1 << 40), gp, "reserved bit 40");
    assert_eq!(write(LONG, &IN_64, LONG.cr4 | cr4::SMEP), gp, "a feature the CPU lacks");
    assert_eq!(write(LONG, &IN_64, LONG.cr4 & !cr4::PAE), gp, "PAE cleared in IA-32e mode");
    let offered = CrContext { cr4_offered: IN_64.cr4_offered | cr4::LA57, ..IN_64 };
    assert_eq!(write(LONG, &offered, LONG.cr4 | cr4::LA57), gp, "LA57 changed in IA-32e mode");
    assert_eq!(write(PROTECTED, &IN_32, cr4::PCIDE), gp, "PCIDE outside IA-32e mode");
    let tagged_cr3 = CrContext { cr3: 0x1001, ..IN_64 };
    assert_eq!(write(LONG, &tagged_cr3, LONG.cr4 | cr4::PCIDE), gp, "PCIDE with CR3[11:0] set");
    assert_eq!(write(LONG, &IN_64, LONG.cr4 | cr4::PCIDE), Ok(LONG.cr4 | cr4::PCIDE));
    assert_eq!(write(LONG, &IN_64, LONG.cr4 | cr4::OSXSAVE), Ok(LONG.cr4 | cr4::OSXSAVE));
    // Outside 64-bit mode bits 63:32 of the operand are not written.
    assert_eq!(write(PROTECTED, &IN_32, 1 << 40 | cr4::PSE), Ok(cr4::PSE));
}

#[test]
fn clts_and_lmsw() {
    let ts = CrState { cr0: LONG.cr0 | cr0::TS, ..LONG };
    assert_eq!(apply(ts, &IN_64, CrWrite::Clts).unwrap().state.cr0, LONG.cr0);
    // LMSW loads bits 3:0 but never clears PE.
    let lmsw = |state: CrState, source| apply(state, &IN_64, CrWrite::Lmsw(source)).unwrap().state.cr0;
    assert_eq!(lmsw(LONG, 0xfff8), (LONG.cr0 & !cr0::MP) | cr0::TS);
    let real = CrState { cr0: cr0::ET, cr4: 0, efer: 0 };
    assert_eq!(lmsw(real, 1), cr0::ET | cr0::PE);
}

#[test]
fn cr4_offered_follows_cpuid() {
    assert_eq!(cr4_offered(Cr4Features::default()), cr4::BASE);
    let features = Cr4Features::from_cpuid(1 << 26 | 1 << 17, 1 << 0 | 1 << 7 | 1 << 20, 1 << 2 | 1 << 3 | 1 << 16);
    let all = cr4::UMIP | cr4::FSGSBASE | cr4::PCIDE | cr4::OSXSAVE | cr4::SMEP | cr4::SMAP | cr4::PKE;
    assert_eq!(cr4_offered(features), cr4::BASE | all);
    // LA57 is never offered: ring 0's guest page walk has 4 levels.
    assert_eq!(cr4_offered(features) & (cr4::VMXE | cr4::SMXE | cr4::CET | cr4::LA57), 0);
}

#[test]
fn pdptes_with_reserved_bits_are_refused() {
    assert!(pdpte_valid(0, 36));
    assert!(pdpte_valid(0x1234_5000 | 1, 36));
    assert!(pdpte_valid(0xffff_fff6, 36), "not present: anything goes");
    assert!(!pdpte_valid(0x1000 | 1 | 1 << 1, 36));
    assert!(!pdpte_valid(0x1000 | 1 | 1 << 7, 36));
    assert!(!pdpte_valid(1 << 36 | 1, 36));
    assert!(!pdpte_valid(1 << 63 | 1, 52));
    assert_eq!(pdpt_address(0x1234_5678), 0x1234_5660);
}

#[test]
fn decodes_mov_to_cr_clts_and_lmsw() {
    // mov cr0, rax; mov cr4, r9 (REX.B); mov cr8, rcx (REX.R).
    assert_eq!(decode(&[0x0f, 0x22, 0xc0], true), Some(Decoded::MovToCr { cr: 0, gpr: 0, length: 3 }));
    assert_eq!(decode(&[0x41, 0x0f, 0x22, 0xe1], true), Some(Decoded::MovToCr { cr: 4, gpr: 9, length: 4 }));
    assert_eq!(decode(&[0x44, 0x0f, 0x22, 0xc1], true), Some(Decoded::MovToCr { cr: 8, gpr: 1, length: 4 }));
    // Outside 64-bit mode 0x41 is INC ECX, not a prefix.
    assert_eq!(decode(&[0x41, 0x0f, 0x22, 0xe1], false), None);
    // LOCK MOV CR0 is CR8; a prefix after REX cancels it.
    assert_eq!(decode(&[0xf0, 0x0f, 0x22, 0xc3], false), Some(Decoded::MovToCr { cr: 8, gpr: 3, length: 4 }));
    assert_eq!(decode(&[0x41, 0x66, 0x0f, 0x22, 0xe1], true), Some(Decoded::MovToCr { cr: 4, gpr: 1, length: 5 }));
    assert_eq!(decode(&[0x0f, 0x06], true), Some(Decoded::Clts { length: 2 }));
    // lmsw ax; lmsw [rax] is not emulated.
    assert_eq!(decode(&[0x0f, 0x01, 0xf0], true), Some(Decoded::Lmsw { gpr: 0, length: 3 }));
    assert_eq!(decode(&[0x0f, 0x01, 0x30], true), None);
    assert_eq!(decode(&[0x0f, 0x20, 0xc0], true), None, "MOV from CR");
    assert_eq!(decode(&[0x66; 15], true), None);
    assert_eq!(decode(&[0x0f], true), None, "cut short");
}

#[test]
fn writes_that_change_paging_flush_the_vps_translations() {
    let base = CrState { cr0: cr0::PE | cr0::PG | cr0::NE, cr4: cr4::PAE | cr4::PGE, efer: 0 };
    let with = |cr0: u64, cr4: u64| CrState { cr0, cr4, ..base };
    assert!(!flushes_tlb(base, base));
    assert!(!flushes_tlb(base, with(base.cr0 | cr0::TS, base.cr4)), "TS changes no translation");
    assert!(!flushes_tlb(base, with(base.cr0 & !cr0::NE, base.cr4)));
    assert!(flushes_tlb(base, with(base.cr0, base.cr4 & !cr4::PGE)), "a PGE toggle flushes globals (4.10.4.1)");
    assert!(flushes_tlb(base, with(base.cr0 & !cr0::PG, base.cr4)));
    assert!(flushes_tlb(base, with(base.cr0 | cr0::WP, base.cr4)));
    assert!(flushes_tlb(base, with(base.cr0, base.cr4 | cr4::SMEP)));
    assert!(flushes_tlb(base, with(base.cr0, base.cr4 | cr4::PCIDE)));
}
