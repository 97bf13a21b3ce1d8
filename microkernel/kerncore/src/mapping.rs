//! The records of where a memory object is mapped.
//!
//! The kernel must know every place a frame is mapped, so destroying the
//! memory object removes every translation to it before the frames go back
//! to the pool. The rule the kernel keeps with these records:
//!
//! - A mapping that cannot be recorded is refused before anything is mapped.
//! - Records match what is mapped exactly: unmapping part of a mapping
//!   splits its record ([`cut`]), and an unmap whose split cannot be
//!   recorded is refused before anything changes.
//! - Unmapping needs the whole range covered by records of that owner
//!   ([`covered`]), so the kernel never removes what it did not record.

use heapless::Vec;

/// Pages of one owner's (task or partition) address space that map part of
/// a memory object: `[at, at + pages * page)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub owner: u32,
    pub at: u64,
    pub pages: u64,
}

/// A mapping did not fit in the record list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

impl Mapping {
    /// Pages this record shares with `[start, start + pages)` of `owner`.
    pub fn overlap(&self, owner: u32, start: u64, pages: u64, page: u64) -> u64 {
        if self.owner != owner {
            return 0;
        }
        let (a, b) = (self.at, self.at.saturating_add(self.pages.saturating_mul(page)));
        let (c, d) = (start, start.saturating_add(pages.saturating_mul(page)));
        let (lo, hi) = (a.max(c), b.min(d));
        if hi > lo { (hi - lo) / page } else { 0 }
    }
}

/// Pages of `[start, start + pages)` of `owner` that `records` cover.
pub fn covered<'a>(
    records: impl IntoIterator<Item = &'a Mapping>,
    owner: u32,
    start: u64,
    pages: u64,
    page: u64,
) -> u64 {
    records.into_iter().map(|m| m.overlap(owner, start, pages, page)).sum()
}

/// `records` without `[start, start + pages)` of `owner`: records inside go,
/// records that reach past either end keep the part outside (one cut in
/// the middle leaves two). `Err(Full)` if the result does not fit; then
/// nothing is decided and the caller changes nothing.
pub fn cut<const N: usize>(
    records: &Vec<Mapping, N>,
    owner: u32,
    start: u64,
    pages: u64,
    page: u64,
) -> Result<Vec<Mapping, N>, Full> {
    let end = start.saturating_add(pages.saturating_mul(page));
    let mut out = Vec::new();
    for m in records {
        if m.overlap(owner, start, pages, page) == 0 {
            out.push(*m).map_err(|_| Full)?;
            continue;
        }
        let m_end = m.at + m.pages * page;
        if m.at < start {
            out.push(Mapping { owner, at: m.at, pages: (start - m.at) / page }).map_err(|_| Full)?;
        }
        if m_end > end {
            out.push(Mapping { owner, at: end, pages: (m_end - end) / page }).map_err(|_| Full)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u64 = 4096;

    fn at(page: u64) -> u64 {
        page * PAGE
    }

    #[test]
    fn a_partial_unmap_keeps_the_rest_and_a_middle_unmap_splits() {
        let mut r: Vec<Mapping, 4> = Vec::new();
        r.push(Mapping { owner: 1, at: at(10), pages: 4 }).unwrap();
        let head = cut(&r, 1, at(10), 1, PAGE).unwrap();
        assert_eq!(head.as_slice(), &[Mapping { owner: 1, at: at(11), pages: 3 }]);
        let middle = cut(&r, 1, at(11), 2, PAGE).unwrap();
        assert_eq!(
            middle.as_slice(),
            &[Mapping { owner: 1, at: at(10), pages: 1 }, Mapping { owner: 1, at: at(13), pages: 1 }]
        );
        assert!(cut(&r, 1, at(10), 4, PAGE).unwrap().is_empty());
        // Another owner's range at the same address is not touched.
        assert_eq!(cut(&r, 2, at(10), 4, PAGE).unwrap(), r);
    }

    #[test]
    fn a_split_that_does_not_fit_is_refused() {
        let mut r: Vec<Mapping, 2> = Vec::new();
        r.push(Mapping { owner: 1, at: at(0), pages: 8 }).unwrap();
        r.push(Mapping { owner: 2, at: at(0), pages: 8 }).unwrap();
        assert_eq!(cut(&r, 1, at(2), 1, PAGE), Err(Full));
        assert_eq!(covered(&r, 1, at(6), 4, PAGE), 2);
    }

    /// Random maps and unmaps against a page-by-page model: the records
    /// always say exactly which pages are mapped, and `covered` agrees.
    #[test]
    fn records_match_a_page_model_under_random_operations() {
        const SPAN: u64 = 48;
        for seed in 0..200 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut records: Vec<Mapping, 6> = Vec::new();
            let mut model = [[false; SPAN as usize]; 2];
            for _ in 0..200 {
                let owner = rng.u32(0..2);
                let start = rng.u64(0..SPAN);
                let pages = rng.u64(1..=SPAN - start);
                let range = start as usize..(start + pages) as usize;
                if rng.bool() {
                    // Map: only onto unmapped pages, and only if recordable.
                    if model[owner as usize][range.clone()].iter().any(|&m| m) || records.is_full() {
                        continue;
                    }
                    records.push(Mapping { owner, at: at(start), pages }).unwrap();
                    model[owner as usize][range].fill(true);
                } else {
                    let present = model[owner as usize][range.clone()].iter().filter(|&&m| m).count() as u64;
                    assert_eq!(covered(&records, owner, at(start), pages, PAGE), present);
                    if let Ok(next) = cut(&records, owner, at(start), pages, PAGE) {
                        records = next;
                        model[owner as usize][range].fill(false);
                    }
                }
                for o in 0..2u32 {
                    for p in 0..SPAN {
                        let recorded = covered(&records, o, at(p), 1, PAGE) == 1;
                        assert_eq!(recorded, model[o as usize][p as usize], "seed {seed}: owner {o} page {p}");
                    }
                }
            }
        }
    }
}
