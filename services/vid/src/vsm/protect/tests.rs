use super::*;

const fn flags(bits: u32) -> HvMapGpaFlags {
    HvMapGpaFlags::from_bits(bits)
}
const NONE: HvMapGpaFlags = flags(0);
const R: HvMapGpaFlags = flags(1);
const RW: HvMapGpaFlags = flags(3);
const RX: HvMapGpaFlags = flags(5);
const RWX: HvMapGpaFlags = flags(0xf);

#[test]
fn unprotected_allows_everything() {
    let p = Protections::new();
    assert!(!p.any());
    for need in [Need::Read, Need::Write, Need::Execute] {
        assert!(p.allows(0, 1 << 20, need));
    }
}

#[test]
fn a_page_is_refused_what_its_mask_lacks() {
    let mut p = Protections::new();
    p.set(5, R).unwrap();
    assert!(p.any());
    assert!(p.allows(5 << 12, 8, Need::Read));
    assert!(!p.allows(5 << 12, 8, Need::Write));
    assert!(!p.allows(5 << 12, 8, Need::Execute));
    // Neighbours keep the default; a range touching page 5 is refused.
    assert!(p.allows(4 << 12, 4096, Need::Write));
    assert!(p.allows(6 << 12, 4096, Need::Write));
    assert!(!p.allows((5 << 12) - 2, 4, Need::Write));
    p.set(5, NONE).unwrap();
    assert!(!p.allows(5 << 12, 1, Need::Read));
    p.set(5, RX).unwrap();
    assert!(p.allows(5 << 12, 1, Need::Execute) && !p.allows(5 << 12, 1, Need::Write));
}

#[test]
fn pages_at_the_default_leave_the_table() {
    let mut p = Protections::new();
    p.set(7, NONE).unwrap();
    p.set(3, RW).unwrap();
    assert_eq!(p.len(), 2);
    p.set(7, RWX).unwrap();
    assert_eq!((p.len(), p.get(7)), (1, RWX));
    // A default of R: page 3 (RW) stays apart, a page set to R needs no entry.
    p.set_default(R);
    assert!(p.any());
    assert_eq!((p.get(3), p.get(100)), (RW, R));
    p.set(100, R).unwrap();
    assert_eq!(p.len(), 1);
    p.set(3, R).unwrap();
    assert!(p.is_empty());
    assert!(!p.allows(0, 1, Need::Write));
    p.reset();
    assert!(!p.any() && p.allows(0, 1, Need::Write));
}

#[test]
fn the_table_is_bounded() {
    let mut p = Protections::new();
    for gpn in 0..MAX_VTL_PROTECTED_PAGES as u64 {
        p.set(gpn * 2, NONE).unwrap();
    }
    assert_eq!(p.set(1, NONE), Err(HvError::INSUFFICIENT_MEMORY));
    assert!(!p.fits(1, R));
    // Full, yet a page in the table may change and one may go back.
    p.set(0, R).unwrap();
    assert_eq!(p.get(0), R);
    p.set(2, RWX).unwrap();
    p.set(1, NONE).unwrap();
    // Sorted: every page reads back its own.
    assert_eq!((p.get(1), p.get(3), p.get(4)), (NONE, RWX, NONE));
    // A page number too large for an entry is refused, not wrapped.
    assert!(!Protections::new().fits(u64::MAX >> 2, NONE));
}

#[test]
fn rights_follow_the_protection_types() {
    assert_eq!(rights(NONE), Ok(abi::Rights::NONE));
    assert_eq!(rights(RX), Ok(abi::Rights::NONE.with_read(true).with_execute(true)));
    // UMX is ignored without MBEC; KMX governs execute.
    assert_eq!(rights(flags(9)), Ok(abi::Rights::NONE.with_read(true)));
    assert_eq!(rights(flags(2)), Err(HvError::INVALID_PARAMETER));
    assert_eq!(rights(flags(4)), Err(HvError::INVALID_PARAMETER));
}
