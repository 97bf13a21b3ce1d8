//! Turning a firmware memory map into one the kernel can trust.
//!
//! Firmware maps may be unsorted, overlapping and unaligned. [`normalize`]
//! produces sorted, disjoint regions in which the most restrictive kind wins
//! wherever inputs overlap, so a range reported both usable and reserved is
//! never handed out. The loader adds its own ranges (kernel, modules, itself)
//! as inputs, which carves them out of usable memory by the same rule.

use bootinfo::{MemoryKind, MemoryRegion};
use heapless::Vec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemMapError {
    /// More distinct regions than the output can hold.
    TooManyRegions,
}

/// Higher wins where regions overlap.
fn rank(kind: MemoryKind) -> u8 {
    match kind {
        MemoryKind::Usable => 0,
        MemoryKind::AcpiReclaimable => 1,
        MemoryKind::Loader => 2,
        MemoryKind::Module => 3,
        MemoryKind::Kernel => 4,
        MemoryKind::AcpiNvs => 5,
        MemoryKind::Reserved => 6,
        MemoryKind::Defective => 7,
    }
}

/// Sorted, disjoint, merged regions; empty inputs are ignored.
pub fn normalize<const N: usize>(inputs: &[MemoryRegion]) -> Result<Vec<MemoryRegion, N>, MemMapError> {
    // Every region boundary, sorted and deduplicated, splits the address
    // space into elementary intervals with a single winning kind each.
    let mut cuts: Vec<u64, 512> = Vec::new();
    for r in inputs.iter().filter(|r| !r.is_empty()) {
        for point in [r.start, r.end] {
            if !cuts.contains(&point) {
                cuts.push(point).map_err(|_| MemMapError::TooManyRegions)?;
            }
        }
    }
    cuts.sort_unstable();

    let mut out: Vec<MemoryRegion, N> = Vec::new();
    for pair in cuts.windows(2) {
        let (start, end) = (pair[0], pair[1]);
        let winner = inputs
            .iter()
            .filter(|r| !r.is_empty() && r.start <= start && end <= r.end)
            .map(|r| r.kind)
            .max_by_key(|&k| rank(k));
        let Some(kind) = winner else { continue };
        match out.last_mut() {
            Some(last) if last.end == start && last.kind == kind => last.end = end,
            _ => out.push(MemoryRegion::new(start, end, kind)).map_err(|_| MemMapError::TooManyRegions)?,
        }
    }
    Ok(out)
}

/// Physical memory below this is always direct-mapped (BIOS data, EBDA,
/// option ROMs and the legacy RSDP live there).
pub const LOW_MEMORY_END: u64 = 0x10_0000;
const PAGE: u64 = x86defs::PAGE_SIZE;

/// Kinds of memory the kernel's direct map covers: RAM of every kind, never
/// firmware-reserved ranges, which may hide device registers.
pub fn is_direct_mapped(kind: MemoryKind) -> bool {
    !matches!(kind, MemoryKind::Reserved | MemoryKind::Defective)
}

/// The page-aligned, sorted, disjoint physical spans the direct map covers:
/// the low 1 MiB plus every region [`is_direct_mapped`] accepts. `map` must
/// be sorted (as [`normalize`] returns it).
pub fn direct_map_spans<const N: usize>(map: &[MemoryRegion]) -> Result<Vec<(u64, u64), N>, MemMapError> {
    let mut spans: Vec<(u64, u64), N> = Vec::new();
    let low = core::iter::once((0, LOW_MEMORY_END));
    let ram = map
        .iter()
        .filter(|r| !r.is_empty() && is_direct_mapped(r.kind))
        .map(|r| (r.start & !(PAGE - 1), r.end.next_multiple_of(PAGE)));
    for (start, end) in low.chain(ram) {
        match spans.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => spans.push((start, end)).map_err(|_| MemMapError::TooManyRegions)?,
        }
    }
    Ok(spans)
}

/// True if `[start, start+len)` lies inside one of `spans`.
pub fn covered(spans: &[(u64, u64)], start: u64, len: u64) -> bool {
    let Some(end) = start.checked_add(len) else {
        return false;
    };
    spans.iter().any(|&(s, e)| s <= start && end <= e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use MemoryKind::*;

    #[test]
    fn direct_map_spans_skip_reserved_ranges_and_include_low_memory() {
        let map = [
            r(0, 0x9_fc00, Usable),
            r(0x9_fc00, 0xa_0000, Reserved),
            r(0xf_0000, 0x10_0000, Reserved),
            r(0x10_0000, 0x20_0000, Loader),
            r(0x20_0000, 0x7fe_0000, Usable),
            r(0x7fe_0000, 0x800_0000, AcpiReclaimable),
            r(0xfffc_0000, 0x1_0000_0000, Reserved),
            r(0xfd_0000_0000, 0x100_0000_0000, Reserved),
        ];
        let spans = direct_map_spans::<8>(&map).unwrap();
        assert_eq!(spans.as_slice(), &[(0, 0x800_0000)]);
        assert!(covered(&spans, 0xf_5000, 36), "the legacy RSDP area is mapped");
        assert!(!covered(&spans, 0xfffc_0000, 8), "reserved firmware ranges are not");
        assert!(!covered(&spans, 0x7ff_fff0, 0x20), "a range running off the end is not covered");
        assert!(!covered(&spans, u64::MAX - 4, 8));
    }

    #[test]
    fn direct_map_spans_keep_holes() {
        let map = [r(0x10_0000, 0x20_0000, Usable), r(0x1_0000_0000, 0x1_4000_0000, Usable)];
        let spans = direct_map_spans::<8>(&map).unwrap();
        assert_eq!(spans.as_slice(), &[(0, 0x20_0000), (0x1_0000_0000, 0x1_4000_0000)]);
        assert!(!covered(&spans, 0xc000_0000, 8));
    }

    fn r(start: u64, end: u64, kind: MemoryKind) -> MemoryRegion {
        MemoryRegion::new(start, end, kind)
    }

    #[test]
    fn sorts_and_merges_adjacent_regions() {
        let out =
            normalize::<8>(&[r(0x2000, 0x3000, Usable), r(0, 0x1000, Usable), r(0x1000, 0x2000, Usable)]).unwrap();
        assert_eq!(out.as_slice(), &[r(0, 0x3000, Usable)]);
    }

    #[test]
    fn restrictive_kind_wins_an_overlap() {
        let out = normalize::<8>(&[r(0, 0x10_0000, Usable), r(0x8000, 0x9000, Reserved)]).unwrap();
        assert_eq!(out.as_slice(), &[r(0, 0x8000, Usable), r(0x8000, 0x9000, Reserved), r(0x9000, 0x10_0000, Usable)]);
    }

    #[test]
    fn loader_ranges_carve_usable_memory() {
        let firmware = [r(0, 0x9_f000, Usable), r(0x10_0000, 0x800_0000, Usable), r(0xf_0000, 0x10_0000, Reserved)];
        let carve = [r(0x10_0000, 0x12_0000, Loader), r(0x20_0000, 0x28_0000, Kernel), r(0x28_0000, 0x29_0000, Module)];
        let all: std::vec::Vec<_> = firmware.iter().chain(&carve).copied().collect();
        let out = normalize::<16>(&all).unwrap();
        assert_eq!(
            out.as_slice(),
            &[
                r(0, 0x9_f000, Usable),
                r(0xf_0000, 0x10_0000, Reserved),
                r(0x10_0000, 0x12_0000, Loader),
                r(0x12_0000, 0x20_0000, Usable),
                r(0x20_0000, 0x28_0000, Kernel),
                r(0x28_0000, 0x29_0000, Module),
                r(0x29_0000, 0x800_0000, Usable),
            ]
        );
        // Nothing a reserved input covered is reported usable.
        for c in &carve {
            assert!(out.iter().all(|o| o.kind != Usable || o.end <= c.start || o.start >= c.end));
        }
    }

    #[test]
    fn a_carve_in_a_hole_is_kept_as_is() {
        let out = normalize::<8>(&[r(0, 0x1000, Usable), r(0x5000, 0x6000, Module)]).unwrap();
        assert_eq!(out.as_slice(), &[r(0, 0x1000, Usable), r(0x5000, 0x6000, Module)]);
    }

    #[test]
    fn empty_and_inverted_inputs_are_ignored() {
        let out =
            normalize::<8>(&[r(0x5000, 0x5000, Reserved), r(0x9000, 0x1000, Reserved), r(0, 0x1000, Usable)]).unwrap();
        assert_eq!(out.as_slice(), &[r(0, 0x1000, Usable)]);
    }

    #[test]
    fn overflow_is_an_error_not_a_truncation() {
        let inputs: std::vec::Vec<_> = (0..10).map(|i| r(i * 0x2000, i * 0x2000 + 0x1000, Usable)).collect();
        assert_eq!(normalize::<4>(&inputs), Err(MemMapError::TooManyRegions));
        assert_eq!(normalize::<10>(&inputs).unwrap().len(), 10);
    }
}
