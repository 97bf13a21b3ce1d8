use super::hypercall::{self, Allowed, Layout, Mutation};
use super::*;
use crate::tlfs::{call, status};

#[test]
fn the_seed_comes_from_the_command_line_in_decimal_or_hex() {
    assert_eq!(seed_option("tests=hostile"), Ok(DEFAULT_SEED));
    assert_eq!(seed_option("tests=hostile seed=42"), Ok(42));
    assert_eq!(seed_option("seed=0x2a tests=hostile"), Ok(42));
    assert_eq!(seed_option("seed=1 seed=0XFF"), Ok(255), "the last one counts");
    assert!(seed_option("seed=forty-two").is_err());
    assert!(seed_option("seed=0x").is_err());
}

#[test]
fn each_attack_has_its_own_stream_that_repeats_for_a_seed() {
    let draw = |seed, stream| {
        let mut r = rng(seed, stream);
        [r.u64(..), r.u64(..)]
    };
    assert_eq!(draw(7, 1), draw(7, 1));
    assert_ne!(draw(7, 1), draw(7, 2));
    assert_ne!(draw(7, 1), draw(8, 1));
    assert_ne!(mix(0), 0);
}

#[test]
fn canonical_addresses_copy_bit_47_upwards() {
    assert_eq!(canonical(0x0000_8000_0000_0000), 0xffff_8000_0000_0000);
    assert_eq!(canonical(0x1234_7fff_ffff_ffff), 0x0000_7fff_ffff_ffff);
    assert!(is_canonical(0xffff_ffff_8000_0000));
    assert!(!is_canonical(0x0000_8000_0000_0000));
    let mut r = rng(1, 1);
    for _ in 0..1000 {
        assert!(is_canonical(canonical(r.u64(..))));
    }
}

#[test]
fn efer_writes_fault_on_reserved_bits_and_on_lme_changes_under_paging() {
    use msr::*;
    let long = EFER_LME | EFER_LMA | EFER_SCE;
    assert!(!efer_write_faults(long, long, false));
    assert!(!efer_write_faults(long, EFER_LME, false), "LMA and SCE may be written clear");
    assert!(!efer_write_faults(long, long | EFER_NXE, true));
    assert!(efer_write_faults(long, long | EFER_NXE, false), "NXE without NX");
    assert!(efer_write_faults(long, long & !EFER_LME, true), "LME cleared under paging");
    assert!(efer_write_faults(long, long | 1 << 12, true), "SVME is not offered");
    assert!(efer_write_faults(long, long | 1 << 63, true));
}

#[test]
fn the_port_sweep_writes_everything_but_what_ends_the_partition() {
    use crate::protocol;
    assert!(ports::writable(0x80, 1));
    assert!(ports::writable(0xf0, 4), "0xf0..0xf3 stop short of the test-exit port");
    assert!(!ports::writable(0xf2, 4), "a dword at 0xf2 reaches 0xf4");
    assert!(!ports::writable(protocol::TEST_EXIT, 1));
    assert!(!ports::writable(protocol::PM1A_CNT + 1, 1));
    assert!(!ports::writable(protocol::RESET_PORT, 1));
    assert!(!ports::writable(protocol::KBC_COMMAND, 1));
    assert!(!ports::writable(protocol::RESET_CONTROL, 1));
    assert!(!ports::writable(protocol::UART_LINE_STATUS, 1));
    assert!(ports::writable(0x3f0, 4));
    assert!(ports::writable(0xffff, 1));
    let written = (0..=0xffffu32).filter(|&p| ports::writable(p as u16, 1)).count();
    assert_eq!(written, 0x10000 - 4 - 2 - 1 - 1 - 1 - 8);
}

#[test]
fn canaries_depend_on_seed_and_address_and_are_never_zero_registers() {
    assert_ne!(canary::word(1, 0x1000), canary::word(1, 0x1008));
    assert_ne!(canary::word(1, 0x1000), canary::word(2, 0x1000));
    for i in 0..64 {
        assert_ne!(canary::register(3, i), 0);
    }
    let dr7 = canary::dr7(5);
    assert_eq!(dr7 & 0xff, 0, "no breakpoint enabled");
    assert_eq!(dr7 & (1 << 13), 0, "GD clear");
    assert_eq!(dr7 & 0x700, 0x700);
    assert_eq!(dr7 & 0xd800, 0, "reserved-zero bits 11, 12, 14, 15");
}

fn layout() -> Layout {
    Layout {
        input: 0x20_0000,
        output: 0x20_2000,
        overlays: [0x20_3000, 0x20_4000, 0x20_5000],
        rom: 0xff000,
        ram: [0..0x9f000, 0x10_0000..0x100_0000],
        not_ram: [0x100_0000, 0xa0000, 0xfed0_0000, 0xe000_0000],
        kernel: 0x10_0000..0x18_0000,
        vps: 3,
    }
}

#[test]
fn hypercall_cases_repeat_for_a_seed_and_name_what_they_broke() {
    let (l, mut a, mut b) = (layout(), rng(9, 3), rng(9, 3));
    let mut seen_plain = false;
    for _ in 0..2000 {
        let (x, y) = (hypercall::case(&mut a, &l), hypercall::case(&mut b, &l));
        assert_eq!(x, y);
        if x.mutations.is_empty() {
            seen_plain = true;
            assert_eq!(x.allowed, Allowed::Set(1 << status::SUCCESS), "a well-formed call succeeds");
        }
        if x.mutations.as_slice() == [Mutation::UndefinedCode] {
            assert_eq!(x.allowed, Allowed::Set(1 << status::INVALID_HYPERCALL_CODE));
            let code = x.control as u16;
            assert!(code == 0 || (0x400..0x8000).contains(&code) || code >= 0x8100, "{code:#x}");
        }
        if x.mutations.as_slice() == [Mutation::ReservedBit] {
            assert_ne!(x.control & 0xf000_f000_f800_0000, 0);
        }
        if x.mutations.as_slice() == [Mutation::InputNotRam] {
            assert!(l.ram.iter().all(|r| !r.contains(&x.rdx)), "{:#x}", x.rdx);
            assert_eq!(x.allowed, Allowed::Set(1 << status::INVALID_ALIGNMENT));
        }
    }
    assert!(seen_plain);
}

#[test]
fn a_result_must_be_allowed_and_count_its_reps() {
    let mut case = hypercall::case(&mut rng(1, 1), &layout());
    case.mutations.clear();
    case.allowed = Allowed::Set(1 << status::SUCCESS | 1 << status::INVALID_ALIGNMENT);
    case.call = call::NOTIFY_LONG_SPIN_WAIT;
    case.control = u64::from(call::NOTIFY_LONG_SPIN_WAIT) | 1 << 16;
    assert!(hypercall::check(&case, 0).is_ok());
    assert!(hypercall::check(&case, 4).is_ok());
    assert!(hypercall::check(&case, 5).is_err());
    assert!(hypercall::check(&case, 1 << 32).is_err(), "reps of a simple call");
    assert!(hypercall::check(&case, 1 << 20).is_err(), "reserved result bits");
    case.call = call::GET_VP_INDEX_FROM_APIC_ID;
    case.control = u64::from(call::GET_VP_INDEX_FROM_APIC_ID) | 3 << 32;
    assert!(hypercall::check(&case, 3 << 32).is_ok());
    assert!(hypercall::check(&case, 2 << 32).is_err(), "success completes every rep");
    assert!(hypercall::check(&case, 2 << 32 | 4).is_ok());
    assert!(hypercall::check(&case, 4 << 32 | 4).is_err());
    case.allowed = Allowed::Any;
    assert!(hypercall::check(&case, 0x72).is_ok());
    assert!(hypercall::check(&case, 0x42).is_err(), "not a TLFS status");
}
