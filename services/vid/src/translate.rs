//! HvTranslateVirtualAddress's walk (TLFS 9.4.6): a guest virtual page
//! through the page tables of a VP's VTL, with the access checks the CPU
//! makes (SDM Vol. 3A 4.6, APM Vol. 2 5.6): present, reserved bits, R/W,
//! U/S, XD, CR0.WP, SMEP and SMAP. Pure: the registers come in, the
//! tables are read (and, if asked, their accessed and dirty bits set)
//! through [`Guest`].
//!
//! The cache type is always write-back (the VID keeps no PAT or MTRR
//! model of its own; ring 0 maps RAM write-back). Not walked: 5-level
//! paging (LA57 is not offered), and shadow-stack accesses (CET is not
//! offered: `INVALID_PARAMETER` at the call).

use crate::guest::{Guest, LARGE, PRESENT};
use tlfs::HvCacheType;
use tlfs::vsm::{HvTranslateGvaControlFlags, HvTranslateGvaResult, HvTranslateGvaResultCode as Code};
use x86defs::{CR0_PG, CR0_WP, CR4_PAE, CR4_PSE, CR4_SMAP, CR4_SMEP, EFER_LMA, EFER_NXE, RFLAGS_AC};

/// What the walk reads of the VP.
#[derive(Clone, Copy, Debug, Default)]
pub struct PagingRegisters {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub rflags: u64,
    pub cpl: u8,
}

/// What the partition's CPUID offers that the walk's reserved bits
/// depend on.
#[derive(Clone, Copy, Debug)]
pub struct PagingFeatures {
    /// MAXPHYADDR.
    pub phys_bits: u32,
    /// 1 GiB pages (CPUID 0x8000_0001 EDX bit 26).
    pub huge_pages: bool,
}

/// The call's answer: its result and the GPA page, meaningful where
/// [`Code::gpa_page_valid`] says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    pub result: HvTranslateGvaResult,
    pub gpa_page: u64,
}

impl Translation {
    fn failed(code: Code) -> Translation {
        Translation { result: HvTranslateGvaResult::from_code(code), gpa_page: 0 }
    }

    /// A page-table page the walk could not read.
    fn unmapped(table: u64) -> Translation {
        Translation { result: HvTranslateGvaResult::from_code(Code::GPA_UNMAPPED), gpa_page: table >> 12 }
    }
}

const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const ACCESSED: u64 = 1 << 5;
const DIRTY: u64 = 1 << 6;
const XD: u64 = 1 << 63;
const PAGE: u64 = 0x1000;

/// One paging-structure entry read, with where it lives.
struct Entry {
    at: u64,
    value: u64,
    wide: bool,
}

/// Rights of a walk so far: every level must allow.
#[derive(Clone, Copy)]
struct Rights {
    write: bool,
    user: bool,
    execute: bool,
}

struct Walk<'g, G: Guest> {
    guest: &'g mut G,
    set_bits: bool,
    rights: Rights,
    /// The last entry read: the leaf, once the walk ends.
    last: Option<Entry>,
}

impl<G: Guest> Walk<'_, G> {
    /// Reads the entry at `at` (8 bytes, or 4 in 32-bit paging).
    fn read(&mut self, at: u64, wide: bool) -> Result<u64, Translation> {
        let mut bytes = [0u8; 8];
        let n = if wide { 8 } else { 4 };
        if !self.guest.read(at, &mut bytes[..n]) {
            return Err(Translation::unmapped(at));
        }
        Ok(u64::from_le_bytes(bytes))
    }

    /// Reads an entry, checks it is present and has no reserved bit set,
    /// narrows the rights and sets its accessed bit if asked.
    fn step(&mut self, at: u64, wide: bool, reserved: u64, nx: bool) -> Result<u64, Translation> {
        self.entry(at, wide, reserved, nx, true)
    }

    /// [`step`](Self::step), for an entry with no accessed bit when
    /// `accessed` is false (PAE's PDPTEs).
    fn entry(&mut self, at: u64, wide: bool, reserved: u64, nx: bool, accessed: bool) -> Result<u64, Translation> {
        let value = self.read(at, wide)?;
        if value & PRESENT == 0 {
            return Err(Translation::failed(Code::PAGE_NOT_PRESENT));
        }
        if value & reserved != 0 {
            return Err(Translation::failed(Code::INVALID_PAGE_TABLE_FLAGS));
        }
        self.rights.write &= value & WRITABLE != 0;
        self.rights.user &= value & USER != 0;
        self.rights.execute &= !(nx && value & XD != 0);
        let set = self.set_bits && accessed;
        if set && value & ACCESSED == 0 {
            self.store(at, value | ACCESSED, wide)?;
        }
        self.last = Some(Entry { at, value: value | if set { ACCESSED } else { 0 }, wide });
        Ok(value)
    }

    fn store(&mut self, at: u64, value: u64, wide: bool) -> Result<(), Translation> {
        let n = if wide { 8 } else { 4 };
        if self.guest.write(at, &value.to_le_bytes()[..n]) { Ok(()) } else { Err(Translation::unmapped(at)) }
    }
}

/// Address bits of a 64-bit entry, and the bits from MAXPHYADDR to 51
/// that must be clear in it.
fn address_bits(phys_bits: u32) -> (u64, u64) {
    let limit = phys_bits.clamp(32, 52);
    let address = ((1u64 << limit) - 1) & !0xfff;
    let above = ((1u64 << 52) - 1) & !((1u64 << limit) - 1);
    (address, above)
}

/// Translates `gva_page` for the accesses `flags` asks about, as the VP
/// whose registers are `regs` would; `overlay` says whether a GPA page is
/// a hypervisor overlay.
pub fn translate_gva(
    guest: &mut impl Guest,
    regs: &PagingRegisters,
    features: PagingFeatures,
    flags: HvTranslateGvaControlFlags,
    gva_page: u64,
    overlay: impl Fn(u64) -> bool,
) -> Translation {
    let gva = gva_page.wrapping_mul(PAGE);
    let leaf = if regs.cr0 & CR0_PG == 0 {
        // No paging: linear addresses are 32 bits and map one to one.
        Ok(gva & 0xffff_ffff)
    } else {
        walk(guest, regs, features, flags, gva)
    };
    match leaf {
        Ok(gpa) => {
            let result = HvTranslateGvaResult::from_code(Code::SUCCESS)
                .with_cache_type(HvCacheType::X64_WRITE_BACK.0 as u8)
                .with_overlay_page(overlay(gpa >> 12));
            Translation { result, gpa_page: gpa >> 12 }
        }
        Err(failed) => failed,
    }
}

fn walk(
    guest: &mut impl Guest,
    regs: &PagingRegisters,
    features: PagingFeatures,
    flags: HvTranslateGvaControlFlags,
    gva: u64,
) -> Result<u64, Translation> {
    let nx = regs.efer & EFER_NXE != 0;
    let (address, above) = address_bits(features.phys_bits);
    let xd_reserved = if nx { 0 } else { XD };
    let set_bits = flags.set_page_table_bits();
    let all = Rights { write: true, user: true, execute: true };
    let mut w = Walk { guest, set_bits, rights: all, last: None };
    let gpa = if regs.efer & EFER_LMA != 0 {
        // Canonical: bits 63:47 copies of bit 47.
        if ((gva as i64) << 16 >> 16) as u64 != gva {
            return Err(Translation::failed(Code::PAGE_NOT_PRESENT));
        }
        let reserved = above | xd_reserved;
        let pml4e = w.step((regs.cr3 & address) + ((gva >> 39) & 511) * 8, true, reserved | LARGE, nx)?;
        let pdpte = w.step((pml4e & address) + ((gva >> 30) & 511) * 8, true, reserved, nx)?;
        if pdpte & LARGE != 0 {
            if !features.huge_pages || pdpte & 0x3fff_e000 != 0 {
                return Err(Translation::failed(Code::INVALID_PAGE_TABLE_FLAGS));
            }
            (pdpte & address & !0x3fff_ffff) | (gva & 0x3fff_ffff)
        } else {
            directory(&mut w, pdpte & address, gva, reserved, address, nx)?
        }
    } else if regs.cr4 & CR4_PAE != 0 {
        let gva = gva & 0xffff_ffff;
        // PAE's PDPTEs: no rights; bits 2:1, 8:5 and 63 reserved.
        let pdpte =
            w.entry((regs.cr3 & 0xffff_ffe0) + ((gva >> 30) & 3) * 8, true, above | XD | 0x1e6, false, false)?;
        w.rights = all;
        directory(&mut w, pdpte & address, gva, above | xd_reserved, address, nx)?
    } else {
        let gva = gva & 0xffff_ffff;
        let pde = w.step((regs.cr3 & 0xffff_f000) + ((gva >> 22) & 0x3ff) * 4, false, 0, false)?;
        if pde & LARGE != 0 && regs.cr4 & CR4_PSE != 0 {
            // PSE-36: bits 20:13 are address bits 39:32.
            let high = ((pde >> 13) & 0xff) << 32;
            if high >> features.phys_bits.clamp(32, 40) != 0 || pde & (1 << 21) != 0 {
                return Err(Translation::failed(Code::INVALID_PAGE_TABLE_FLAGS));
            }
            high | (pde & 0xffc0_0000) | (gva & 0x3f_ffff)
        } else {
            let pte = w.step((pde & 0xffff_f000) + ((gva >> 12) & 0x3ff) * 4, false, 0, false)?;
            (pte & 0xffff_f000) | (gva & 0xfff)
        }
    };
    check_access(regs, flags, w.rights)?;
    if set_bits
        && flags.validate_write()
        && let Some(leaf) = w.last.take()
        && leaf.value & DIRTY == 0
    {
        w.store(leaf.at, leaf.value | DIRTY, leaf.wide)?;
    }
    Ok(gpa)
}

/// The page directory and table of 4-level and PAE paging.
fn directory<G: Guest>(
    w: &mut Walk<'_, G>,
    table: u64,
    gva: u64,
    reserved: u64,
    address: u64,
    nx: bool,
) -> Result<u64, Translation> {
    let pde = w.step(table + ((gva >> 21) & 511) * 8, true, reserved, nx)?;
    if pde & LARGE != 0 {
        if pde & 0x1f_e000 != 0 {
            return Err(Translation::failed(Code::INVALID_PAGE_TABLE_FLAGS));
        }
        return Ok((pde & address & !0x1f_ffff) | (gva & 0x1f_ffff));
    }
    let pte = w.step((pde & address) + ((gva >> 12) & 511) * 8, true, reserved, nx)?;
    Ok((pte & address) | (gva & 0xfff))
}

/// The access rights of SDM Vol. 3A 4.6 for each access `flags` asks
/// about, as a user access at CPL 3 (unless exempt) or a supervisor one.
fn check_access(regs: &PagingRegisters, flags: HvTranslateGvaControlFlags, rights: Rights) -> Result<(), Translation> {
    let user = !flags.privilege_exempt() && !flags.supervisor_access() && (flags.user_access() || regs.cpl == 3);
    let violation = Err(Translation::failed(Code::PRIVILEGE_VIOLATION));
    let data = flags.validate_read() || flags.validate_write();
    if user {
        let refused =
            !rights.user || (flags.validate_write() && !rights.write) || (flags.validate_execute() && !rights.execute);
        return if refused { violation } else { Ok(()) };
    }
    let wp = regs.cr0 & CR0_WP != 0;
    let smap_applies = flags.enforce_smap() || (!flags.override_smap() && regs.rflags & RFLAGS_AC == 0);
    let refused = (flags.validate_write() && !rights.write && wp)
        || (flags.validate_execute() && !rights.execute)
        || (flags.validate_execute() && rights.user && regs.cr4 & CR4_SMEP != 0)
        || (data && rights.user && regs.cr4 & CR4_SMAP != 0 && smap_applies);
    if refused { violation } else { Ok(()) }
}

#[cfg(test)]
mod tests;
