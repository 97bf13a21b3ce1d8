//! What the tests of extended state, debug state and the intercepts ring 0
//! handles expect (`state_suite.rs` runs them): the values a partition
//! puts in its registers for its `mark=`, DR6 and DR7 bits, and XSETBV's
//! cases with the SDM's outcome for each.

use super::{Detail, option};

/// DR7 (SDM Vol. 3B §19.2.4): per breakpoint `i` (0..4) a local enable,
/// R/W (what it matches) and LEN (how many bytes); GD traps accesses to
/// the debug registers themselves.
pub mod dr7 {
    pub const GD: u64 = 1 << 13;
    /// Bits that always read as 1.
    pub const FIXED_1: u64 = 1 << 10;
    pub const RW_EXECUTE: u64 = 0b00;
    pub const RW_WRITE: u64 = 0b01;
    pub const LEN_1: u64 = 0b00;
    pub const LEN_4: u64 = 0b11;

    /// Breakpoint `i` enabled (locally) for `rw` over `len`.
    pub const fn breakpoint(i: usize, rw: u64, len: u64) -> u64 {
        1 << (2 * i) | rw << (16 + 4 * i) | len << (18 + 4 * i)
    }
}

/// DR6 (SDM Vol. 3B §19.2.3).
pub mod dr6 {
    pub const B0: u64 = 1 << 0;
    pub const B0_B3: u64 = 0xf;
    pub const BD: u64 = 1 << 13;
    pub const BS: u64 = 1 << 14;
    /// DR6 with no cause recorded (bits fixed to 1 set, RTM inactive).
    pub const CLEAR: u64 = 0xffff_0ff0;
}

/// XCR0 components the tests use.
pub mod xcr0 {
    pub const X87: u64 = 1 << 0;
    pub const SSE: u64 = 1 << 1;
    pub const AVX: u64 = 1 << 2;
}

/// CR4.OSXSAVE: XSETBV, XGETBV and the XSAVE family are enabled.
pub const CR4_OSXSAVE: u64 = 1 << 18;

/// FNV-1a over the mark: the seed of every value a partition writes.
fn seed(mark: &str) -> u64 {
    mark.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

/// DR0-DR3 for `mark`: four distinct, canonical, 8-byte aligned addresses
/// in the top half of the address space, which the test kernel neither
/// maps nor executes, so breakpoints there never fire.
pub fn debug_addresses(mark: &str) -> [u64; 4] {
    let s = seed(mark);
    core::array::from_fn(|i| 0xffff_8000_0000_0000 | (mix(s.wrapping_add(i as u64)) & 0x0000_7fff_ffff_fff8))
}

/// DR7 for the isolation test: the four breakpoints enabled as
/// instruction breakpoints.
pub const ISOLATION_DR7: u64 = dr7::breakpoint(0, dr7::RW_EXECUTE, dr7::LEN_1)
    | dr7::breakpoint(1, dr7::RW_EXECUTE, dr7::LEN_1)
    | dr7::breakpoint(2, dr7::RW_EXECUTE, dr7::LEN_1)
    | dr7::breakpoint(3, dr7::RW_EXECUTE, dr7::LEN_1)
    | dr7::FIXED_1;

/// The 256 bits the isolation test puts in YMM register `n` for `mark`
/// (XMM `n` is the low half), as four words, low first.
pub fn vector_pattern(mark: &str, n: usize) -> [u64; 4] {
    let s = seed(mark) ^ (n as u64) << 56;
    core::array::from_fn(|i| mix(s.wrapping_add(0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(i as u64 + 1))))
}

/// The `xcr0=` option (hexadecimal with `0x`, or decimal): the XCR0 the
/// isolation test enables.
pub fn xcr0_option(cmdline: &str) -> Result<u64, Detail> {
    let text = option(cmdline, "xcr0").ok_or(detail!("no xcr0=<value> on the command line"))?;
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| detail!("xcr0={text} is not a number"))
}

/// What an instruction the tests run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Completes (and XGETBV then reads the value back).
    Completes,
    /// #UD.
    InvalidOpcode,
    /// #GP(0).
    GeneralProtection,
}

/// One XSETBV the xsetbv test executes at CPL 0 with CR4.OSXSAVE set.
#[derive(Clone, Copy, Debug)]
pub struct XsetbvCase {
    pub what: &'static str,
    /// ECX.
    pub index: u32,
    /// EDX:EAX.
    pub value: u64,
    pub expect: Outcome,
}

const fn case(what: &'static str, index: u32, value: u64, expect: Outcome) -> XsetbvCase {
    XsetbvCase { what, index, value, expect }
}

/// XSETBV's cases (SDM Vol. 2D "XSETBV"), for a machine that offers x87,
/// SSE and AVX: the refusals first, then the values that are accepted.
pub const XSETBV_CASES: [XsetbvCase; 10] = {
    use Outcome::*;
    use xcr0::*;
    [
        case("XCR1 (read-only)", 1, X87, GeneralProtection),
        case("x87 cleared", 0, 0, GeneralProtection),
        case("SSE without x87", 0, SSE, GeneralProtection),
        case("AVX without SSE", 0, X87 | AVX, GeneralProtection),
        case("part of AVX-512", 0, X87 | SSE | AVX | 1 << 5, GeneralProtection),
        case("bit 8 (a supervisor component)", 0, X87 | 1 << 8, GeneralProtection),
        case("bit 63 (reserved)", 0, X87 | 1 << 63, GeneralProtection),
        case("x87 and SSE", 0, X87 | SSE, Completes),
        case("x87, SSE and AVX", 0, X87 | SSE | AVX, Completes),
        case("x87 only", 0, X87, Completes),
    ]
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_get_their_own_values() {
        let (a, b) = (debug_addresses("alpha"), debug_addresses("beta"));
        for address in a.iter().chain(&b) {
            assert_eq!(*address >> 47, 0x1_ffff, "{address:#x} is canonical in the top half");
            assert_eq!(address % 8, 0);
        }
        assert!(a.iter().all(|x| !b.contains(x)));
        assert_ne!(vector_pattern("alpha", 0), vector_pattern("beta", 0));
        assert_ne!(vector_pattern("alpha", 0), vector_pattern("alpha", 1));
    }

    #[test]
    fn dr7_encodes_breakpoints() {
        assert_eq!(dr7::breakpoint(0, dr7::RW_WRITE, dr7::LEN_4), 0x000d_0001);
        assert_eq!(dr7::breakpoint(3, dr7::RW_EXECUTE, dr7::LEN_1), 0x40);
        assert_eq!(ISOLATION_DR7, 0x455);
    }

    #[test]
    fn xcr0_option_parses() {
        assert_eq!(xcr0_option("tests=state-isolation xcr0=0x7"), Ok(7));
        assert_eq!(xcr0_option("xcr0=3"), Ok(3));
        assert!(xcr0_option("xcr0=z").is_err());
        assert!(xcr0_option("").is_err());
    }
}
