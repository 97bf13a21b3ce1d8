//! `tests=topology cpus=<n>` (the core scheduler's test, `tests/core.rs`):
//! what CPUID tells each VP of the processor topology, decoded as an OS
//! does (SDM Vol. 2A, CPUID leaf 1 and leaf 0BH): its x2APIC ID, the
//! threads per core, and so which VPs are its SMT siblings.

use crate::Detail;

/// Leaf 0xB level types (ECX[15:8]).
const SMT: u32 = 1;
const CORE: u32 = 2;
/// Leaf 1 EDX bit 28: EBX[23:16] is valid.
const HTT: u32 = 1 << 28;

/// What one VP's CPUID says, as read: leaf 0 EAX, leaf 1 and leaf 0xB
/// subleaves 0, 1 and 2 (EAX, EBX, ECX, EDX each).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Raw {
    pub max_leaf: u32,
    pub leaf1: [u32; 4],
    pub levels: [[u32; 4]; 3],
}

/// A VP's topology, decoded and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Told {
    pub x2apic_id: u32,
    /// Logical processors at the SMT level.
    pub threads_per_core: u32,
    /// x2APIC ID bits of the SMT level, and of the core level.
    pub smt_shift: u32,
    pub core_shift: u32,
    /// Logical processors at the core level (the package).
    pub logical: u32,
}

impl Told {
    /// The ID of the VP's core: its x2APIC ID above the SMT shift.
    pub fn core(&self) -> u32 {
        self.x2apic_id.checked_shr(self.smt_shift).unwrap_or(0)
    }
}

/// Decodes and checks what one VP read: leaf 0xB present, levels 0 and 1
/// of types SMT and core, level 2 invalid, one x2APIC ID in all three and
/// in leaf 1's initial APIC ID, shifts that cover the counts, and HTT with
/// enough addressable IDs when the package has more than one processor.
pub fn decode(raw: &Raw) -> Result<Told, Detail> {
    if raw.max_leaf < 0xb {
        return Err(detail!("max basic leaf {:#x}: no leaf 0xB", raw.max_leaf));
    }
    let [smt, core, end] = raw.levels;
    let level = |r: [u32; 4]| ((r[2] >> 8) & 0xff, r[2] & 0xff);
    for (n, r, want) in [(0, smt, SMT), (1, core, CORE), (2, end, 0)] {
        if level(r) != (want, n) {
            return Err(detail!("leaf 0xB.{n}: level {:?}, expected type {want}, level {n}", level(r)));
        }
    }
    if end[0] & 0x1f != 0 || end[1] & 0xffff != 0 {
        return Err(detail!("leaf 0xB.2 is invalid but says {:#x} {:#x}", end[0], end[1]));
    }
    let x2apic_id = smt[3];
    if core[3] != x2apic_id || end[3] != x2apic_id || raw.leaf1[1] >> 24 != x2apic_id & 0xff {
        return Err(detail!("x2APIC IDs {} {} {}, initial APIC ID {}", smt[3], core[3], end[3], raw.leaf1[1] >> 24));
    }
    let told = Told {
        x2apic_id,
        threads_per_core: smt[1] & 0xffff,
        smt_shift: smt[0] & 0x1f,
        core_shift: core[0] & 0x1f,
        logical: core[1] & 0xffff,
    };
    if told.threads_per_core == 0
        || u64::from(told.threads_per_core) > 1 << told.smt_shift
        || told.core_shift < told.smt_shift
        || told.logical < told.threads_per_core
        || u64::from(told.logical) > 1 << told.core_shift
    {
        return Err(detail!("inconsistent levels {told:?}"));
    }
    let addressable = (raw.leaf1[1] >> 16) & 0xff;
    if told.logical > 1 && (raw.leaf1[3] & HTT == 0 || addressable < told.logical) {
        return Err(detail!(
            "{} logical processors but leaf 1 HTT {}, {addressable} IDs",
            told.logical,
            raw.leaf1[3] >> 28 & 1
        ));
    }
    Ok(told)
}

/// The VPs of `all` (by index) that share `me`'s core, but `me`.
pub fn siblings(all: &[Told], me: usize) -> u32 {
    let Some(mine) = all.get(me) else { return 0 };
    all.iter()
        .enumerate()
        .filter(|&(i, t)| i != me && i < 32 && t.core() == mine.core())
        .fold(0, |mask, (i, _)| mask | 1 << i)
}

/// Checks that every VP was told the same topology with its own x2APIC ID
/// (`ids[i]`: VP i's local APIC ID).
pub fn agree(all: &[Told], ids: &[u32]) -> Result<(), Detail> {
    let Some(first) = all.first() else { return Err(detail!("no VP")) };
    for (i, (t, &id)) in all.iter().zip(ids).enumerate() {
        if t.x2apic_id != id {
            return Err(detail!("VP with APIC ID {id} was told x2APIC ID {}", t.x2apic_id));
        }
        let shape = |t: &Told| (t.threads_per_core, t.smt_shift, t.core_shift, t.logical);
        if shape(t) != shape(first) {
            return Err(detail!("VP {i} was told {t:?}, VP 0 {first:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Tessera's VID says to VP `vp` of `vps` with `threads` per core.
    fn vid(vp: u32, vps: u32, threads: u32) -> Raw {
        let smt_shift = if threads > 1 { 1 } else { 0 };
        let core_shift = (32 - (vps - 1).leading_zeros()).max(smt_shift);
        Raw {
            max_leaf: 0xb,
            leaf1: [0x611, vp << 24 | (1 << core_shift) << 16 | 8 << 8, 1, HTT],
            levels: [[smt_shift, threads, 1 << 8, vp], [core_shift, vps, 2 << 8 | 1, vp], [0, 0, 2, vp]],
        }
    }

    #[test]
    fn pairs_of_vps_are_siblings_with_two_threads_per_core() {
        let all: Vec<Told> = (0..4).map(|vp| decode(&vid(vp, 4, 2)).unwrap()).collect();
        assert_eq!(all[1], Told { x2apic_id: 1, threads_per_core: 2, smt_shift: 1, core_shift: 2, logical: 4 });
        assert_eq!([0, 1, 2, 3].map(|i| siblings(&all, i)), [0b0010, 0b0001, 0b1000, 0b0100]);
        assert_eq!(agree(&all, &[0, 1, 2, 3]), Ok(()));
        assert!(agree(&all, &[0, 1, 3, 2]).is_err());
    }

    #[test]
    fn one_thread_per_core_has_no_siblings() {
        let all: Vec<Told> = (0..2).map(|vp| decode(&vid(vp, 2, 1)).unwrap()).collect();
        assert_eq!(all[0].threads_per_core, 1);
        assert_eq!((siblings(&all, 0), siblings(&all, 1), siblings(&all, 5)), (0, 0, 0));
        let mixed = [all[0], decode(&vid(1, 2, 2)).unwrap()];
        assert!(agree(&mixed, &[0, 1]).is_err());
    }

    #[test]
    fn what_is_not_consistent_is_refused() {
        let good = vid(1, 4, 2);
        let bad = |f: fn(&mut Raw)| {
            let mut raw = good;
            f(&mut raw);
            decode(&raw)
        };
        assert!(decode(&good).is_ok());
        assert!(bad(|r| r.max_leaf = 1).is_err());
        assert!(bad(|r| r.levels[0][2] = 2 << 8).is_err());
        assert!(bad(|r| r.levels[1][2] = 2 << 8).is_err());
        assert!(bad(|r| r.levels[2][2] = 2 << 8 | 2).is_err());
        assert!(bad(|r| r.levels[2][1] = 1).is_err());
        assert!(bad(|r| r.levels[1][3] = 3).is_err());
        assert!(bad(|r| r.leaf1[1] &= 0x00ff_ffff).is_err());
        assert!(bad(|r| r.levels[0][1] = 4).is_err());
        assert!(bad(|r| r.levels[0][1] = 0).is_err());
        assert!(bad(|r| r.levels[1][0] = 0).is_err());
        assert!(bad(|r| r.levels[1][1] = 5).is_err());
        assert!(bad(|r| r.leaf1[3] = 0).is_err());
        assert!(bad(|r| r.leaf1[1] &= !(0xff << 16)).is_err());
        // Shifts of 31: no overflow.
        assert!(bad(|r| r.levels[1][0] = 31).is_ok());
        assert_eq!(Told { x2apic_id: 7, threads_per_core: 1, smt_shift: 40, core_shift: 0, logical: 1 }.core(), 0);
    }
}
