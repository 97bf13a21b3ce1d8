//! Overlay pages (TLFS 5.2.1): the hypercall page, the reference TSC page,
//! and each VP's assist, SIM and SIEF pages cover the GPA they are put at,
//! and disabling or moving one uncovers the RAM beneath with its contents.
//!
//! The VID holds only RUN on its partitions: it cannot map a page of its
//! own over the guest's RAM, nor unmap the RAM (only the partition manager
//! can). So the overlay is emulated in the RAM itself:
//! covering a page saves its bytes in a page the VID keeps for the overlay
//! ([`Guest::beneath`]) before the overlay's contents are written there,
//! and uncovering it writes them back. The hypercall page is read-only to
//! the guest (TLFS 3.13: a write is #GP): while it covers a page the VID
//! has the kernel withhold the guest's write access there
//! ([`Guest::hold_write`], `PARTITION_HOLD_WRITE`, which RUN allows: it
//! only takes away, and gives back what the manager mapped), and the exit
//! loop answers the write's memory intercept with #GP. What the emulation
//! cannot give:
//! - a VP's SIM, SIEF and assist pages are seen by every VP at their GPA
//!   (TLFS 11.9 asks the guest for a distinct GPA per VP, so only a guest
//!   breaking that rule could tell);
//! - while several overlays share a GPA (undefined, TLFS 5.2.1), the page
//!   holds whatever they last wrote; the RAM comes back when the last one
//!   leaves.

use crate::guest::Guest;
use abi::limits::MAX_VPS_PER_PARTITION;
use sysimage::objects::{OVERLAYS_PER_PARTITION, OVERLAYS_PER_VP, overlay_pages};
use tlfs::msr::HV_PAGE_SIZE;

/// An overlay page: partition-wide, or one of a VP's. VTL 1 has its own
/// hypercall and assist pages (TLFS 15.8, 15.8.1); the rest are shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlay {
    Hypercall,
    ReferenceTsc,
    Vtl1Hypercall,
    Assist(u32),
    Simp(u32),
    Siefp(u32),
    Vtl1Assist(u32),
}

/// The partition-wide overlays, then those per VP.
const PARTITION_WIDE: usize = OVERLAYS_PER_PARTITION;
const PER_VP: usize = OVERLAYS_PER_VP;

/// The overlays the guest may not write (TLFS 3.13: the hypercall pages).
const READ_ONLY: [Overlay; 2] = [Overlay::Hypercall, Overlay::Vtl1Hypercall];

impl Overlay {
    /// Whether the guest may not write it ([`READ_ONLY`]).
    pub fn read_only(self) -> bool {
        READ_ONLY.contains(&self)
    }

    /// The VTL whose page it is: its write hold is in that VTL's view.
    pub const fn vtl(self) -> u8 {
        match self {
            Overlay::Vtl1Hypercall | Overlay::Vtl1Assist(_) => 1,
            _ => 0,
        }
    }

    /// Its index among a partition's overlays (and the page the VID keeps
    /// its RAM in); `None` for a VP beyond the limit.
    pub const fn slot(self) -> Option<usize> {
        let (vp, n) = match self {
            Overlay::Hypercall => return Some(0),
            Overlay::ReferenceTsc => return Some(1),
            Overlay::Vtl1Hypercall => return Some(2),
            Overlay::Assist(vp) => (vp, 0),
            Overlay::Simp(vp) => (vp, 1),
            Overlay::Siefp(vp) => (vp, 2),
            Overlay::Vtl1Assist(vp) => (vp, 3),
        };
        if (vp as usize) < MAX_VPS_PER_PARTITION { Some(PARTITION_WIDE + PER_VP * vp as usize + n) } else { None }
    }
}

/// How many pages keep the RAM beneath the overlays of a partition of
/// `vps` VPs (the pages of slots `0..slots(vps)`).
pub const fn slots(vps: usize) -> usize {
    overlay_pages(vps)
}

const SLOTS: usize = slots(MAX_VPS_PER_PARTITION);

/// Where an overlay is, and whether its slot's page holds the RAM beneath
/// (the first overlay put on a GPA does; the others found it covered).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cover {
    gpn: u64,
    holds_ram: bool,
}

/// The overlays in place in a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlays {
    covers: [Option<Cover>; SLOTS],
}

impl Default for Overlays {
    fn default() -> Self {
        Overlays { covers: [None; SLOTS] }
    }
}

impl Overlays {
    /// The GPN `overlay` covers, if it is in place.
    pub fn gpn(&self, overlay: Overlay) -> Option<u64> {
        self.covers[overlay.slot()?].map(|c| c.gpn)
    }

    /// Whether any overlay covers `gpn`.
    pub fn covers(&self, gpn: u64) -> bool {
        self.covers.iter().flatten().any(|c| c.gpn == gpn)
    }

    /// Whether a read-only overlay covers `gpn`: a guest write there is #GP.
    pub fn read_only_at(&self, gpn: u64) -> bool {
        READ_ONLY.iter().any(|&o| self.gpn(o) == Some(gpn))
    }

    /// Whether a read-only overlay of VTL `vtl` covers `gpn`.
    fn held_at(&self, gpn: u64, vtl: u8) -> bool {
        READ_ONLY.iter().any(|&o| o.vtl() == vtl && self.gpn(o) == Some(gpn))
    }

    /// Puts `overlay` at `gpn` (uncovering where it was, if elsewhere),
    /// keeping the RAM there; the caller then writes the overlay's
    /// contents. False, and nothing changed, if `gpn` is not writable RAM
    /// (or the VP is beyond the limit).
    pub fn cover(&mut self, overlay: Overlay, gpn: u64, guest: &mut impl Guest) -> bool {
        let Some(slot) = overlay.slot() else { return false };
        if self.covers[slot].is_some_and(|c| c.gpn == gpn) {
            return true;
        }
        let gpa = gpn << 12;
        let mut probe = [0u8; 1];
        if !guest.read(gpa, &mut probe) || !guest.write(gpa, &probe) {
            return false;
        }
        self.uncover(overlay, guest);
        let covered = self.covers.iter().flatten().any(|c| c.gpn == gpn);
        let mut holds_ram = false;
        if !covered {
            let mut page = [0u8; HV_PAGE_SIZE];
            if !guest.read(gpa, &mut page) {
                return false;
            }
            // Without a page to keep it in, the RAM is overwritten.
            if let Some(keep) = guest.beneath(slot) {
                keep.copy_from_slice(&page);
                holds_ram = true;
            }
        }
        self.covers[slot] = Some(Cover { gpn, holds_ram });
        if overlay.read_only() {
            guest.hold_write(gpn, true, overlay.vtl());
        }
        true
    }

    /// Takes every overlay away, as [`Overlays::uncover`] each.
    pub fn uncover_all(&mut self, guest: &mut impl Guest) {
        let per_vp = (0..MAX_VPS_PER_PARTITION as u32)
            .flat_map(|vp| [Overlay::Assist(vp), Overlay::Simp(vp), Overlay::Siefp(vp), Overlay::Vtl1Assist(vp)]);
        let wide = [Overlay::Hypercall, Overlay::ReferenceTsc, Overlay::Vtl1Hypercall];
        for overlay in wide.into_iter().chain(per_vp) {
            self.uncover(overlay, guest);
        }
    }

    /// Takes `overlay` away: the RAM beneath reappears, unless another
    /// overlay still covers the GPA (it then keeps the RAM).
    pub fn uncover(&mut self, overlay: Overlay, guest: &mut impl Guest) {
        let Some(slot) = overlay.slot() else { return };
        let Some(cover) = self.covers[slot].take() else { return };
        if overlay.read_only() && !self.held_at(cover.gpn, overlay.vtl()) {
            guest.hold_write(cover.gpn, false, overlay.vtl());
        }
        if !cover.holds_ram {
            return;
        }
        let mut page = [0u8; HV_PAGE_SIZE];
        match guest.beneath(slot) {
            Some(keep) => page.copy_from_slice(keep),
            None => return,
        }
        let heir = self.covers.iter().position(|c| c.is_some_and(|c| c.gpn == cover.gpn));
        match heir {
            Some(heir) => match guest.beneath(heir) {
                Some(keep) => {
                    keep.copy_from_slice(&page);
                    self.covers[heir] = Some(Cover { gpn: cover.gpn, holds_ram: true });
                }
                None => {
                    let _ = guest.write(cover.gpn << 12, &page);
                }
            },
            None => {
                let _ = guest.write(cover.gpn << 12, &page);
            }
        }
    }
}

#[cfg(test)]
mod tests;
