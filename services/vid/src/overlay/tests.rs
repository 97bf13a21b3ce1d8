use super::*;
use crate::guest::TestRam as Ram;

fn fill(ram: &mut Ram, gpn: u64, byte: u8) {
    ram.0[(gpn as usize) << 12..((gpn as usize) + 1) << 12].fill(byte);
}

#[test]
fn covering_keeps_the_ram_and_uncovering_gives_it_back() {
    let (mut ram, mut o) = (Ram::new(), Overlays::default());
    fill(&mut ram, 3, 0x5a);
    assert!(o.cover(Overlay::Simp(1), 3, &mut ram));
    fill(&mut ram, 3, 0); // the overlay's contents
    assert_eq!(o.gpn(Overlay::Simp(1)), Some(3));
    o.uncover(Overlay::Simp(1), &mut ram);
    assert!(ram.page(3).iter().all(|&b| b == 0x5a));
    assert_eq!(o.gpn(Overlay::Simp(1)), None);
}

#[test]
fn moving_uncovers_the_old_page_and_covers_the_new() {
    let (mut ram, mut o) = (Ram::new(), Overlays::default());
    fill(&mut ram, 2, 0x11);
    fill(&mut ram, 4, 0x22);
    assert!(o.cover(Overlay::Hypercall, 2, &mut ram));
    fill(&mut ram, 2, 0xcc);
    assert!(o.cover(Overlay::Hypercall, 4, &mut ram));
    assert!(ram.page(2).iter().all(|&b| b == 0x11));
    fill(&mut ram, 4, 0xcc);
    // Covering the same page again keeps the RAM saved the first time.
    assert!(o.cover(Overlay::Hypercall, 4, &mut ram));
    o.uncover(Overlay::Hypercall, &mut ram);
    assert!(ram.page(4).iter().all(|&b| b == 0x22));
}

#[test]
fn a_page_that_is_not_ram_changes_nothing() {
    let (mut ram, mut o) = (Ram::new(), Overlays::default());
    fill(&mut ram, 2, 0x11);
    assert!(o.cover(Overlay::Assist(0), 2, &mut ram));
    assert!(!o.cover(Overlay::Assist(0), 0x100, &mut ram));
    assert_eq!(o.gpn(Overlay::Assist(0)), Some(2));
    assert!(!o.cover(Overlay::Siefp(MAX_VPS_PER_PARTITION as u32), 2, &mut ram));
}

#[test]
fn the_ram_under_stacked_overlays_comes_back_when_the_last_leaves() {
    for first_out in [Overlay::Simp(0), Overlay::Siefp(0)] {
        let (mut ram, mut o) = (Ram::new(), Overlays::default());
        fill(&mut ram, 5, 0x77);
        assert!(o.cover(Overlay::Simp(0), 5, &mut ram));
        fill(&mut ram, 5, 0);
        assert!(o.cover(Overlay::Siefp(0), 5, &mut ram));
        o.uncover(first_out, &mut ram);
        assert!(ram.page(5).iter().all(|&b| b == 0), "still overlaid");
        let last = if first_out == Overlay::Simp(0) { Overlay::Siefp(0) } else { Overlay::Simp(0) };
        o.uncover(last, &mut ram);
        assert!(ram.page(5).iter().all(|&b| b == 0x77));
    }
}

#[test]
fn slots_are_distinct_and_within_the_pages_kept() {
    let mut seen = [false; slots(MAX_VPS_PER_PARTITION)];
    let vp = MAX_VPS_PER_PARTITION as u32 - 1;
    for vp in 0..=vp {
        for o in [Overlay::Assist(vp), Overlay::Simp(vp), Overlay::Siefp(vp), Overlay::Vtl1Assist(vp)] {
            let s = o.slot().unwrap();
            assert!(s < slots(vp as usize + 1) && !seen[s]);
            seen[s] = true;
        }
    }
    for o in [Overlay::Hypercall, Overlay::ReferenceTsc, Overlay::Vtl1Hypercall] {
        let s = o.slot().unwrap();
        assert!(s < slots(1) && !seen[s]);
        seen[s] = true;
    }
    assert!(seen.iter().all(|&s| s));
}

#[test]
fn the_hypercall_page_withholds_guest_writes_where_it_is() {
    let (mut ram, mut o) = (Ram::new(), Overlays::default());
    assert!(o.cover(Overlay::Hypercall, 2, &mut ram));
    assert_eq!(ram.2, [(2, 0)]);
    assert!(o.read_only_at(2) && !o.read_only_at(4));
    // Moved: the old page is writable again, the new one is not.
    assert!(o.cover(Overlay::Hypercall, 4, &mut ram));
    assert_eq!(ram.2, [(4, 0)]);
    // Another overlay on the same page leaves the hold to the hypercall page.
    assert!(o.cover(Overlay::Simp(0), 4, &mut ram));
    o.uncover(Overlay::Simp(0), &mut ram);
    assert_eq!(ram.2, [(4, 0)]);
    assert!(o.cover(Overlay::Assist(0), 6, &mut ram));
    assert_eq!(ram.2, [(4, 0)], "only the hypercall page is read-only");
    o.uncover(Overlay::Hypercall, &mut ram);
    assert!(ram.2.is_empty() && !o.read_only_at(4));
}
