//! Differential tests against iced-x86, a complete and widely used decoder.
//!
//! For every input, iced's decoding is translated into the [`Instruction`]
//! this crate should produce (or into "not one of ours"), and the two must
//! agree:
//!
//! - whenever `decode` succeeds, iced decodes the same instruction with the
//!   same length, access, size, memory operand, registers, immediate and
//!   prefixes;
//! - whenever iced decodes a supported instruction with a memory operand,
//!   `decode` succeeds (no supported encoding is missed);
//! - `decode`'s errors are consistent with iced's: `Truncated` only when
//!   iced also runs out of bytes, `Invalid` and `TooLong` only for
//!   encodings iced rejects, `NoMemoryOperand` only without a memory operand.
//!
//! Inputs are generated encodings of the supported opcodes (random prefixes,
//! REX placement, ModRM, SIB, displacements and immediates) and plain random
//! bytes, in all four modes, with random truncation.

mod iced_reference;

use iced_reference::{MODES, Tally, compare};
use x86decode::CpuMode;

/// One of `items`, uniformly.
fn pick<T: Copy>(rng: &mut fastrand::Rng, items: &[T]) -> T {
    items[rng.usize(..items.len())]
}

const LEGACY_PREFIXES: [u8; 11] = [0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65];

/// The supported one-byte opcodes (plus `0F` for the two-byte ones) and a
/// few neighbours that must be refused.
const OPCODES: [u8; 62] = [
    0x00, 0x01, 0x02, 0x03, 0x08, 0x09, 0x0a, 0x0b, 0x10, 0x11, 0x12, 0x13, 0x18, 0x19, 0x1a, 0x1b, 0x20, 0x21, 0x22,
    0x23, 0x28, 0x29, 0x2a, 0x2b, 0x30, 0x31, 0x32, 0x33, 0x38, 0x39, 0x3a, 0x3b, 0x63, 0x80, 0x81, 0x82, 0x83, 0x84,
    0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xaa, 0xab, 0xac, 0xad,
    0xae, 0xaf, 0xc6, 0xc7, 0x0f,
];
const TWO_BYTE: [u8; 8] = [0xb6, 0xb7, 0xbe, 0xbf, 0xb8, 0xbc, 0x0b, 0xc0];
const EXTRA: [u8; 6] = [0xf6, 0xf7, 0x8c, 0x8e, 0xfe, 0xff];

/// A random encoding built around a supported opcode.
fn generate(rng: &mut fastrand::Rng, mode: CpuMode) -> Vec<u8> {
    let long = mode == CpuMode::Long64;
    let mut bytes = Vec::new();
    for _ in 0..rng.u32(..5) {
        if long && rng.u32(..8) == 0 {
            bytes.push(0x40 | rng.u8(..16)); // a REX that a later prefix cancels
        }
        bytes.push(pick(rng, &LEGACY_PREFIXES));
    }
    if long && rng.bool() {
        bytes.push(0x40 | rng.u8(..16));
    }
    let opcode = if rng.u32(..8) == 0 { pick(rng, &EXTRA) } else { pick(rng, &OPCODES) };
    bytes.push(opcode);
    if opcode == 0x0f {
        bytes.push(pick(rng, &TWO_BYTE));
    }
    // ModRM: mostly a memory form; for the groups mostly a supported /reg.
    let mut modrm = rng.u8(..);
    if rng.u32(..6) != 0 && modrm >> 6 == 3 {
        modrm &= 0x3f | (rng.u8(..) & 0x80);
    }
    if matches!(opcode, 0xc6 | 0xc7 | 0xf6 | 0xf7) && rng.u32(..4) != 0 {
        modrm &= 0xc7 | (rng.u8(..) & 0x08);
    }
    bytes.push(modrm);
    // SIB, displacement and immediate bytes; a few interesting values.
    for _ in 0..12 {
        bytes.push(match rng.u32(..8) {
            0 => 0xff,
            1 => 0x00,
            2 => 0x80,
            _ => rng.u8(..),
        });
    }
    bytes.truncate(15);
    // Sometimes the fetch ended early.
    if rng.u32(..8) == 0 {
        let keep = rng.usize(..=bytes.len());
        bytes.truncate(keep);
    }
    bytes
}

#[test]
fn generated_encodings_agree_with_iced() {
    let mut rng = fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d);
    let mut tally = Tally::default();
    for _ in 0..100_000 {
        for mode in MODES {
            let bytes = generate(&mut rng, mode);
            compare(&bytes, mode, &mut tally);
        }
    }
    eprintln!("generated: {:?}", tally.0);
    // Every kind of access was exercised many times.
    for kind in ["Write", "Read", "Rmw", "AluRead", "Xchg", "Movs", "Cmps", "Stos", "Lods", "Scas"] {
        assert!(tally.get(&format!("ok {kind}")) > 1_000, "too few {kind}: {:?}", tally.0);
    }
}

#[test]
fn random_bytes_agree_with_iced() {
    let mut rng = fastrand::Rng::with_seed(0x0123_4567_89ab_cdef);
    let mut tally = Tally::default();
    for _ in 0..100_000 {
        let len = rng.usize(..16);
        let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        for mode in MODES {
            compare(&bytes, mode, &mut tally);
        }
    }
    eprintln!("random: {:?}", tally.0);
    assert!(tally.get("ok") > 1_000, "{:?}", tally.0);
}

/// Every ModRM and SIB byte, with a fixed displacement, for a load and a
/// store in every mode and address size.
#[test]
fn all_modrm_and_sib_bytes_agree_with_iced() {
    let mut tally = Tally::default();
    for mode in MODES {
        for prefix in [&[][..], &[0x67], &[0x66, 0x67], &[0x41], &[0x4f], &[0x46, 0x67]] {
            if mode != CpuMode::Long64 && prefix.iter().any(|b| b & 0xf0 == 0x40) {
                continue;
            }
            // 16-bit addressing has no SIB byte.
            let a16 = match mode {
                CpuMode::Real16 | CpuMode::Protected16 => !prefix.contains(&0x67),
                CpuMode::Protected32 => prefix.contains(&0x67),
                CpuMode::Long64 => false,
            };
            for opcode in [0x8b, 0x88] {
                for modrm in 0..=255u8 {
                    for sib in 0..=255u8 {
                        let mut bytes = prefix.to_vec();
                        bytes.extend_from_slice(&[opcode, modrm, sib, 0x81, 0x92, 0xa3, 0xb4, 0xc5]);
                        compare(&bytes, mode, &mut tally);
                        // ModRM forms without a SIB do not depend on it.
                        if a16 || modrm & 7 != 4 || modrm >> 6 == 3 {
                            break;
                        }
                    }
                }
            }
        }
    }
    eprintln!("modrm/sib: {:?}", tally.0);
}
