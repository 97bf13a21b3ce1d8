//! A guest's own page tables, walked to find where one of its linear
//! addresses is (SDM Vol. 3A chapter 4): for ring 0's fetch of an
//! instruction the CPU did not decode. No accessed or dirty bits are set
//! and no rights are checked: the CPU has already fetched the instruction.

use crate::cr::{cr0, cr4};
use x86defs::EFER_LMA;

const PRESENT: u64 = 1 << 0;
const LARGE: u64 = 1 << 7;
/// Address bits of a 4-level or PAE entry (MAXPHYADDR is at most 52).
const ADDRESS: u64 = 0x000f_ffff_ffff_f000;

/// The paging state of a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paging {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

/// The guest-physical address of `linear`, reading entries with `read`
/// (8 bytes at a guest-physical address; `None` if that is not guest
/// RAM). `None` if an entry is not present or cannot be read, or with
/// 5-level paging, which is not walked.
pub fn translate(paging: Paging, linear: u64, mut read: impl FnMut(u64) -> Option<u64>) -> Option<u64> {
    let Paging { cr0, cr3, cr4, efer } = paging;
    if cr0 & cr0::PG == 0 {
        return Some(linear & 0xffff_ffff);
    }
    let mut entry = |at: u64| read(at).filter(|e| e & PRESENT != 0);
    let index = |shift: u32| (linear >> shift) & 511;
    let pdpte = if efer & EFER_LMA != 0 {
        if cr4 & cr4::LA57 != 0 {
            return None;
        }
        let pml4e = entry((cr3 & ADDRESS) + index(39) * 8)?;
        let pdpte = entry((pml4e & ADDRESS) + index(30) * 8)?;
        if pdpte & LARGE != 0 {
            return Some((pdpte & ADDRESS & !0x3fff_ffff) | (linear & 0x3fff_ffff));
        }
        pdpte
    } else if cr4 & cr4::PAE != 0 {
        entry(crate::cr::pdpt_address(cr3) + ((linear >> 30) & 3) * 8)?
    } else {
        let linear = linear & 0xffff_ffff;
        let pde = entry((cr3 & 0xffff_f000) + ((linear >> 22) & 0x3ff) * 4)? & 0xffff_ffff;
        if pde & LARGE != 0 && cr4 & cr4::PSE != 0 {
            return Some((pde & 0xffc0_0000) | (linear & 0x3f_ffff));
        }
        let pte = entry((pde & 0xffff_f000) + ((linear >> 12) & 0x3ff) * 4)? & 0xffff_ffff;
        return Some((pte & 0xffff_f000) | (linear & 0xfff));
    };
    let pde = entry((pdpte & ADDRESS) + index(21) * 8)?;
    if pde & LARGE != 0 {
        return Some((pde & ADDRESS & !0x1f_ffff) | (linear & 0x1f_ffff));
    }
    let pte = entry((pde & ADDRESS) + index(12) * 8)?;
    Some((pte & ADDRESS) | (linear & 0xfff))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn walk(memory: &HashMap<u64, u64>, paging: Paging, linear: u64) -> Option<u64> {
        translate(paging, linear, |at| memory.get(&at).copied())
    }

    #[test]
    fn four_level_pae_and_32_bit_walks() {
        let long = Paging { cr0: cr0::PE | cr0::PG, cr3: 0x1000, cr4: cr4::PAE, efer: EFER_LMA };
        let linear = 0xffff_8000_0040_1234u64;
        let memory = HashMap::from([
            (0x1000 + ((linear >> 39) & 511) * 8, 0x2003),
            (0x2000 + ((linear >> 30) & 511) * 8, 0x3003),
            (0x3000 + ((linear >> 21) & 511) * 8, 0x4003),
            (0x4000 + ((linear >> 12) & 511) * 8, 0x9000_0003),
        ]);
        assert_eq!(walk(&memory, long, linear), Some(0x9000_0234));
        assert_eq!(walk(&memory, long, linear + 0x1000), None, "not present");
        let large = HashMap::from([(0x1000, 0x2003), (0x2000, 0x4000_0083)]);
        assert_eq!(walk(&large, long, 0x1234_5678), Some(0x4000_0000 + 0x1234_5678));

        let pae = Paging { efer: 0, cr3: 0x1020, ..long };
        let memory = HashMap::from([(0x1028, 0x3001), (0x3000 + 2 * 8, 0x5000_0083)]);
        assert_eq!(walk(&memory, pae, 0x4040_0123), Some(0x5000_0123));

        let legacy = Paging { cr4: cr4::PSE, cr3: 0x1000, ..pae };
        let memory = HashMap::from([(0x1000 + 4, 0x0040_0083), (0x1000 + 8, 0x2003), (0x2000 + 4, 0x7000_0003)]);
        assert_eq!(walk(&memory, legacy, 0x0040_0010), Some(0x0040_0010), "4 MiB page");
        assert_eq!(walk(&memory, legacy, 0x0080_1010), Some(0x7000_0010));
        let off = Paging { cr0: cr0::PE, ..legacy };
        assert_eq!(walk(&memory, off, 0x1_0000_1234), Some(0x1234));
        assert_eq!(walk(&memory, Paging { cr4: cr4::PAE | cr4::LA57, ..long }, 0), None);
    }
}
