//! Sets of VPs named by a hypercall: a 64-bit processor mask or an
//! `HV_VP_SET` (TLFS 7.8.7), clipped to the VPs the partition has.

use core::fmt;
use tlfs::HvVpIndex;
use tlfs::hypercall::{HV_VP_SET_BANK_SIZE, HV_VP_SET_MAX_BANKS};

/// VPs `0..4096`, as banks of 64; only VPs of the partition are ever set.
#[derive(Clone, PartialEq, Eq)]
pub struct VpSet {
    banks: [u64; HV_VP_SET_MAX_BANKS],
}

impl VpSet {
    pub const fn empty() -> VpSet {
        VpSet { banks: [0; HV_VP_SET_MAX_BANKS] }
    }

    /// Every VP of a partition of `vp_count` VPs.
    pub fn all(vp_count: u32) -> VpSet {
        VpSet { banks: [u64::MAX; HV_VP_SET_MAX_BANKS] }.clipped(vp_count)
    }

    /// Bit n of `mask` names VP n.
    pub fn from_mask(mask: u64, vp_count: u32) -> VpSet {
        let mut set = VpSet::empty();
        set.banks[0] = mask;
        set.clipped(vp_count)
    }

    /// A sparse set: `banks` holds one bank for each bit of
    /// `valid_banks_mask`, lowest first. `None` if it holds fewer.
    pub fn sparse(valid_banks_mask: u64, mut banks: impl Iterator<Item = u64>, vp_count: u32) -> Option<VpSet> {
        let mut set = VpSet::empty();
        for (bank, slot) in set.banks.iter_mut().enumerate() {
            if valid_banks_mask & (1 << bank) != 0 {
                *slot = banks.next()?;
            }
        }
        Some(set.clipped(vp_count))
    }

    fn clipped(mut self, vp_count: u32) -> VpSet {
        for (bank, slot) in self.banks.iter_mut().enumerate() {
            let first = bank as u32 * HV_VP_SET_BANK_SIZE;
            let present = vp_count.saturating_sub(first);
            if present < HV_VP_SET_BANK_SIZE {
                *slot &= (1u64 << present) - 1;
            }
        }
        self
    }

    pub fn contains(&self, vp: HvVpIndex) -> bool {
        let bank = (vp / HV_VP_SET_BANK_SIZE) as usize;
        bank < HV_VP_SET_MAX_BANKS && self.banks[bank] & (1 << (vp % HV_VP_SET_BANK_SIZE)) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.banks.iter().all(|&b| b == 0)
    }

    pub fn len(&self) -> u32 {
        self.banks.iter().map(|b| b.count_ones()).sum()
    }

    /// The VPs, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = HvVpIndex> + '_ {
        self.banks.iter().enumerate().flat_map(|(bank, &bits)| {
            (0..HV_VP_SET_BANK_SIZE)
                .filter(move |bit| bits & (1 << bit) != 0)
                .map(move |bit| bank as u32 * HV_VP_SET_BANK_SIZE + bit)
        })
    }
}

impl fmt::Debug for VpSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}
