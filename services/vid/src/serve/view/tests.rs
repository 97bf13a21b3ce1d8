//! VTL 1's protections on the VID's own accesses for VTL 0 (TLFS 15.9).

use super::*;
use crate::serve::fake::{Fake, VpCall};
use abi::Rights;

const RAM: usize = 0x20_0000;
const R: HvMapGpaFlags = HvMapGpaFlags::from_bits(1);
const NONE: HvMapGpaFlags = HvMapGpaFlags::from_bits(0);

fn view<'r>(
    kernel: &'r Fake,
    ram: &'r mut [u8],
    beneath: &'r mut [u8],
    protections: &'r mut Protections,
    vtl: HvVtl,
) -> View<'r, Fake> {
    View {
        kernel,
        vp: CapSlot(1),
        partition: CapSlot(2),
        ram,
        beneath,
        state: TransferredState::new(crate::serve::EXIT_STATE, &[]),
        vps: &[],
        vtl,
        protections,
    }
}

#[test]
fn vtl0_is_refused_what_vtl1_protects_and_vtl1_is_not() {
    let kernel = Fake::new([]);
    let (mut ram, mut beneath, mut p) = (vec![0u8; RAM], vec![0u8; 4096], Protections::new());
    {
        let mut v = view(&kernel, &mut ram, &mut beneath, &mut p, 0);
        v.protect(3, R).unwrap();
        v.protect(4, NONE).unwrap();
        // Ring 0 was asked, page by page, with the mask's rights.
        let calls = kernel.vp_calls.borrow().clone();
        assert!(calls.contains(&VpCall::Protect(CapSlot(2), 3, 1, Rights::NONE.with_read(true))));
        assert!(calls.contains(&VpCall::Protect(CapSlot(2), 4, 1, Rights::NONE)));
        let mut b = [0u8; 8];
        assert!(v.read(0x3000, &mut b));
        assert!(!v.write(0x3000, &[1; 8]));
        assert!(!v.read(0x4ff8, &mut b));
        assert!(!v.write(0x2ffc, &[1; 8]), "a range reaching a protected page");
        assert!(v.write(0x2000, &[1; 8]));
        assert!(v.denied(0x3000, 1, Need::Write) && !v.denied(0x3000, 1, Need::Read));
        assert!(v.denied(0x4000, 1, Need::Read));
        // Acting for VTL 1 (its own pages): nothing refused.
        assert_eq!(v.act_for(1), 0);
        assert!(v.write(0x4000, &[2; 8]) && !v.denied(0x4000, 1, Need::Read));
        assert_eq!(v.act_for(0), 1);
        assert!(!v.write(0x4000, &[3; 8]));
    }
    assert_eq!((ram[0x3000], ram[0x2ffc], ram[0x2000], ram[0x4000]), (0, 0, 1, 2));
    // Between exits (SynIC deliveries, timers), the VID acts for VTL 0.
    let mut between = RamOnly(&mut ram, &mut beneath, Some(&p));
    assert!(!between.write(0x4000, &[9]) && !between.read(0x4000, &mut [0]));
    assert!(between.write(0x5000, &[9]));
    let mut uncovering = RamOnly(&mut ram, &mut beneath, None);
    assert!(uncovering.write(0x4000, &[9]));
}

#[test]
fn protect_refuses_what_is_not_ram_or_no_type_and_keeps_ring0_in_step() {
    let kernel = Fake::new([]);
    let (mut ram, mut beneath, mut p) = (vec![0u8; RAM], vec![0u8; 4096], Protections::new());
    let mut v = view(&kernel, &mut ram, &mut beneath, &mut p, 1);
    // Beyond RAM, in the hole below 1 MiB, a write without read, an
    // execute without read.
    assert_eq!(v.protect(RAM as u64 / 4096, R), Err(HvError::INVALID_PARAMETER));
    assert_eq!(v.protect(0xa0, R), Err(HvError::INVALID_PARAMETER));
    assert_eq!(v.protect(u64::MAX, R), Err(HvError::INVALID_PARAMETER));
    assert_eq!(v.protect(1, HvMapGpaFlags::from_bits(2)), Err(HvError::INVALID_PARAMETER));
    assert_eq!(v.protect(1, HvMapGpaFlags::from_bits(4)), Err(HvError::INVALID_PARAMETER));
    assert!(kernel.vp_calls.borrow().is_empty());
    // Ring 0 refusing: nothing recorded.
    kernel.vtl_refusal.set(Some(ErrorCode::OUT_OF_MEMORY));
    assert_eq!(v.protect(1, NONE), Err(HvError::INSUFFICIENT_MEMORY));
    kernel.vtl_refusal.set(Some(ErrorCode::INVALID_STATE));
    assert_eq!(v.protect(1, NONE), Err(HvError::INVALID_VTL_STATE));
    assert!(v.protections.is_empty());
    kernel.vtl_refusal.set(None);
    v.protect(1, NONE).unwrap();
    assert_eq!(v.protections.get(1), NONE);
}

#[test]
fn the_default_mask_covers_both_ram_ranges_or_none() {
    let kernel = Fake::new([]);
    let (mut ram, mut beneath, mut p) = (vec![0u8; RAM], vec![0u8; 4096], Protections::new());
    let mut v = view(&kernel, &mut ram, &mut beneath, &mut p, 1);
    v.protect_default(R).unwrap();
    let r = Rights::NONE.with_read(true);
    assert_eq!(
        *kernel.vp_calls.borrow(),
        [VpCall::Protect(CapSlot(2), 0, 0xa0, r), VpCall::Protect(CapSlot(2), 0x100, 0x100, r)]
    );
    assert_eq!(v.protections.get(0x150), R);
    assert_eq!(v.protect_default(HvMapGpaFlags::from_bits(2)), Err(HvError::INVALID_PARAMETER));
    // Refused: the default stays.
    let mut p2 = Protections::new();
    let mut v = view(&kernel, &mut ram, &mut beneath, &mut p2, 1);
    kernel.vtl_refusal.set(Some(ErrorCode::OUT_OF_MEMORY));
    assert_eq!(v.protect_default(NONE), Err(HvError::INSUFFICIENT_MEMORY));
    assert!(!v.protections.any());
}
