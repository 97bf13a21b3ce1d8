//! Decoding the instruction of a CR0 or CR4 write the CPU did not decode
//! (SVM without decode assists): MOV to CR (0F 22 /r), CLTS (0F 06) and
//! LMSW with a register operand (0F 01 /6).

/// The longest instruction (SDM Vol. 2A §2.3.11).
pub const MAX_LENGTH: usize = 15;

/// A decoded control-register write and its length in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// MOV to CR`cr` from the general-purpose register numbered `gpr`.
    MovToCr {
        cr: u8,
        gpr: u8,
        length: u8,
    },
    Clts {
        length: u8,
    },
    /// LMSW from the general-purpose register numbered `gpr`.
    Lmsw {
        gpr: u8,
        length: u8,
    },
}

/// Decodes the instruction at the start of `bytes`, fetched in 64-bit mode
/// if `mode64` (where REX prefixes exist). `None` for anything else, and
/// for LMSW with a memory operand, which is not emulated.
pub fn decode(bytes: &[u8], mode64: bool) -> Option<Decoded> {
    let mut rex = 0u8;
    let mut lock = false;
    let mut at = 0;
    loop {
        let byte = *bytes.get(at)?;
        match byte {
            0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0x66 | 0x67 | 0xf2 | 0xf3 => rex = 0,
            0xf0 => {
                lock = true;
                rex = 0;
            }
            // A REX prefix counts only right before the opcode.
            0x40..=0x4f if mode64 => rex = byte,
            _ => break,
        }
        at += 1;
        if at >= MAX_LENGTH {
            return None;
        }
    }
    if *bytes.get(at)? != 0x0f {
        return None;
    }
    let opcode = *bytes.get(at + 1)?;
    let length = |extra: usize| u8::try_from(at + 2 + extra).ok().filter(|&n| usize::from(n) <= MAX_LENGTH);
    if opcode == 0x06 {
        return Some(Decoded::Clts { length: length(0)? });
    }
    let modrm = *bytes.get(at + 2)?;
    let reg = ((modrm >> 3) & 7) | ((rex >> 2) & 1) << 3;
    let rm = (modrm & 7) | (rex & 1) << 3;
    match opcode {
        // The mod field is ignored: the operand is always a register. A
        // LOCK prefix selects CR8 for CR0 (AMD's alternative encoding).
        0x22 => {
            let cr = if lock && reg == 0 { 8 } else { reg };
            Some(Decoded::MovToCr { cr, gpr: rm, length: length(1)? })
        }
        0x01 if (modrm >> 3) & 7 == 6 && modrm >> 6 == 3 => Some(Decoded::Lmsw { gpr: rm, length: length(1)? }),
        _ => None,
    }
}
