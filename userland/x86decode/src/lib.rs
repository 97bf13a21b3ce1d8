//! Decoder for the x86 instructions a guest uses to access memory-mapped I/O.
//!
//! The VID emulates a guest's MMIO accesses itself. AMD SVM under QEMU TCG
//! has no decode assists, and a nested page fault reports only the
//! guest-physical address, so the VID fetches the bytes at the guest RIP and
//! hands them to [`decode`]. The result says what the instruction does to
//! memory ([`Access`]), how many bytes it touches ([`Instruction::size`]),
//! where its memory operand is ([`MemOperand`], enough to compute the linear
//! address) and how long it is ([`Instruction::len`], to advance RIP).
//!
//! The bytes are an allegation from the guest: any slice is accepted, the
//! decoder never panics and never reads past the slice or past the 15-byte
//! architectural limit, and everything it does not know is an error
//! ([`DecodeError`]). It is pure: no registers are read and no memory is
//! touched, so it runs the same on the host (where it is tested, including
//! differentially against `iced-x86`) as in the VID.
//!
//! # Supported instructions
//!
//! Only forms with a memory operand; a register-only form (ModRM `mod` = 3)
//! is [`DecodeError::NoMemoryOperand`]. Odd opcodes are the word/dword/qword
//! forms (size from `66` and REX.W), even ones the byte forms.
//!
//! | opcode | instruction | [`Access`] |
//! | --- | --- | --- |
//! | `88`/`89` | `mov m, r` | [`Access::Write`] |
//! | `C6 /0`/`C7 /0` | `mov m, imm` | [`Access::Write`] |
//! | `A2`/`A3` | `mov moffs, al/rAX` | [`Access::Write`] |
//! | `8A`/`8B`, `A0`/`A1` | `mov r, m`, `mov al/rAX, moffs` | [`Access::Read`] |
//! | `0F B6`/`B7`, `0F BE`/`BF` | `movzx`, `movsx` | [`Access::Read`] |
//! | `63` (64-bit mode) | `movsxd` | [`Access::Read`] |
//! | `00`/`01`, `08`/`09`, … `38`/`39` | `add`/`or`/`adc`/`sbb`/`and`/`sub`/`xor`/`cmp m, r` | [`Access::Rmw`] |
//! | `80`/`81`/`83` (`82` outside 64-bit mode) | the same with an immediate | [`Access::Rmw`] |
//! | `84`/`85`, `F6`/`F7 /0` (and the `/1` alias) | `test m, r`, `test m, imm` | [`Access::Rmw`] |
//! | `02`/`03`, `0A`/`0B`, … `3A`/`3B` | `add`…`cmp r, m` | [`Access::AluRead`] |
//! | `86`/`87` | `xchg m, r` | [`Access::Xchg`] |
//! | `A4`/`A5` | `movs` | [`Access::Movs`] |
//! | `A6`/`A7` | `cmps` | [`Access::Cmps`] |
//! | `AA`/`AB` | `stos` | [`Access::Stos`] |
//! | `AC`/`AD` | `lods` | [`Access::Lods`] |
//! | `AE`/`AF` | `scas` | [`Access::Scas`] |
//!
//! Prefixes: `66`, `67`, `F0` (only where the architecture allows it;
//! elsewhere [`DecodeError::Invalid`], as the CPU raises #UD), `F2`/`F3`
//! (reported for string instructions, ignored elsewhere), the segment
//! overrides and, in 64-bit mode, REX (which, as on the CPU, counts only
//! when it is the last prefix before the opcode).
//!
//! # Values and sizes
//!
//! Sizes are byte counts: 1, 2, 4 or 8. An immediate is given already
//! sign-extended as the instruction does it and truncated to the access size,
//! so writing the low [`Instruction::size`] bytes of it is exactly what the
//! CPU would store. [`Reg::get`] and [`Reg::set`] read and write a register
//! operand with the architectural merge rules (a 4-byte write clears bits
//! 63:32, a 1- or 2-byte write keeps the rest).
//!
//! Flags are the caller's business: [`Access::Rmw`] and [`Access::AluRead`]
//! name the operation, and the emulator computes the result and RFLAGS.
//!
//! # Example
//!
//! ```
//! use x86decode::{decode, Access, CpuMode, Gpr, Operand};
//!
//! // mov dword [rbx+0x10], 0xfee00000: a guest store to a device register.
//! let fetched = [0xc7, 0x43, 0x10, 0x00, 0x00, 0xe0, 0xfe, 0x90, 0x90];
//! let insn = decode(&fetched, CpuMode::Long64).unwrap();
//! assert_eq!((insn.len, insn.size), (7, 4));
//! assert_eq!(insn.kind, Access::Write { source: Operand::Immediate(0xfee0_0000) });
//! let rip = 0x1000;
//! let regs = |gpr| if gpr == Gpr::Rbx { 0xfebf_0000 } else { 0 };
//! assert_eq!(insn.mem.effective_address(regs, rip + u64::from(insn.len)), 0xfebf_0010);
//!
//! // movsx rax, word [rsi]: a load; the device model supplies `insn.size` bytes.
//! let insn = decode(&[0x48, 0x0f, 0xbf, 0x06], CpuMode::Long64).unwrap();
//! let Access::Read { dest, extend, dest_size } = insn.kind else { panic!() };
//! let loaded = 0x8000;
//! let rax = dest.set(0, extend.apply(loaded, insn.size, dest_size), dest_size);
//! assert_eq!(rax, 0xffff_ffff_ffff_8000);
//! ```

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use core::fmt;

/// The architectural limit on an instruction's length; a longer one raises
/// #GP(0).
pub const MAX_INSTRUCTION_LEN: usize = 15;

pub use x86defs::mode::{CpuMode, ModeState};

/// The default address size of `mode` (the table of [`CpuMode`]).
const fn default_address_size(mode: CpuMode) -> AddressSize {
    match mode {
        CpuMode::Real16 | CpuMode::Protected16 => AddressSize::Bits16,
        CpuMode::Protected32 => AddressSize::Bits32,
        CpuMode::Long64 => AddressSize::Bits64,
    }
}

pub use x86defs::Gpr;

/// A register operand: a general-purpose register, or for a byte operand
/// without REX one of AH, CH, DH, BH (`high_byte`, bits 15:8 of RAX, RCX,
/// RDX or RBX). The width is the instruction's: [`Instruction::size`] for a
/// source, `dest_size` for a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Reg {
    pub gpr: Gpr,
    pub high_byte: bool,
}

impl Reg {
    /// A full (not high-byte) register.
    pub const fn new(gpr: Gpr) -> Reg {
        Reg { gpr, high_byte: false }
    }

    /// The value of this operand at `size` bytes, given the full 64-bit
    /// register.
    pub const fn get(self, full: u64, size: u8) -> u64 {
        if self.high_byte { (full >> 8) & 0xff } else { full & size_mask(size) }
    }

    /// The full register after writing `value` to this operand at `size`
    /// bytes: 1- and 2-byte writes (and AH..BH) keep the other bits, a 4-byte
    /// write zero-extends to 64 bits, as the CPU does in 64-bit mode (outside
    /// it the upper half does not exist).
    pub const fn set(self, full: u64, value: u64, size: u8) -> u64 {
        if self.high_byte {
            (full & !0xff00) | ((value & 0xff) << 8)
        } else {
            match size {
                1 | 2 => (full & !size_mask(size)) | (value & size_mask(size)),
                4 => value & 0xffff_ffff,
                _ => value,
            }
        }
    }
}

/// The mask of the low `size` bytes (`size` is 1, 2, 4 or 8; anything larger
/// than 4 is taken as 8).
pub const fn size_mask(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// A segment register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    Es,
    Cs,
    Ss,
    Ds,
    Fs,
    Gs,
}

/// The address size of a memory operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressSize {
    Bits16,
    Bits32,
    Bits64,
}

impl AddressSize {
    /// The size in bytes (2, 4 or 8), which is also the width of rSI, rDI and
    /// the rCX count of a string instruction.
    pub const fn bytes(self) -> u8 {
        match self {
            AddressSize::Bits16 => 2,
            AddressSize::Bits32 => 4,
            AddressSize::Bits64 => 8,
        }
    }

    /// The mask an effective address wraps at.
    pub const fn mask(self) -> u64 {
        size_mask(self.bytes())
    }
}

/// A memory operand: `segment:[base + index * scale + displacement]`, or
/// `segment:[next RIP + displacement]` if `rip_relative`.
///
/// The segment is the one the access uses: the override if there is one,
/// else SS for a base of rSP or rBP (BP-based forms in 16-bit addressing),
/// else DS, and ES for the rDI operand of a string instruction (which cannot
/// be overridden). In 64-bit mode the ES, CS, SS and DS overrides are
/// ignored, as the CPU ignores them, and only the FS and GS bases apply to
/// the linear address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemOperand {
    pub segment: Segment,
    /// The base register at the address size (RIP-relative forms have none).
    pub base: Option<Gpr>,
    /// The index register at the address size.
    pub index: Option<Gpr>,
    /// 1, 2, 4 or 8; 1 when there is no index.
    pub scale: u8,
    /// Sign-extended to 64 bits (a `moffs` is the offset, zero-extended).
    pub displacement: u64,
    /// RIP-relative (EIP-relative with a `67` prefix); 64-bit mode only.
    pub rip_relative: bool,
    pub address_size: AddressSize,
}

impl MemOperand {
    /// The effective address (the offset within the segment), given the
    /// guest's registers and the RIP of the next instruction (`rip +
    /// len`), wrapped to the address size. The linear address is the
    /// segment base plus this; segment limits and canonical checks are the
    /// caller's.
    pub fn effective_address(&self, gpr: impl Fn(Gpr) -> u64, next_rip: u64) -> u64 {
        let mut ea = self.displacement;
        if self.rip_relative {
            ea = ea.wrapping_add(next_rip);
        }
        if let Some(base) = self.base {
            ea = ea.wrapping_add(gpr(base));
        }
        if let Some(index) = self.index {
            ea = ea.wrapping_add(gpr(index).wrapping_mul(u64::from(self.scale)));
        }
        ea & self.address_size.mask()
    }
}

/// A source operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operand {
    Register(Reg),
    /// Already sign-extended as the instruction does it and truncated to
    /// the access size.
    Immediate(u64),
}

/// How a loaded value is widened to the destination register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Extend {
    /// `dest_size` equals the access size.
    None,
    /// MOVZX.
    Zero,
    /// MOVSX, MOVSXD.
    Sign,
}

impl Extend {
    /// `value` (its low `size` bytes) widened to `dest_size` bytes, ready for
    /// [`Reg::set`].
    pub const fn apply(self, value: u64, size: u8, dest_size: u8) -> u64 {
        let value = value & size_mask(size);
        let widened = match self {
            Extend::Sign => sign_extend(value, size),
            Extend::None | Extend::Zero => value,
        };
        widened & size_mask(dest_size)
    }
}

/// The arithmetic or logic operation of an ALU instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AluOp {
    Add,
    Or,
    Adc,
    Sbb,
    And,
    Sub,
    Xor,
    Cmp,
    Test,
}

/// The operations of the ALU opcode rows `00`–`3F` and of group 1
/// (`80`–`83 /r`), in encoding order.
const ALU_OPS: [AluOp; 8] =
    [AluOp::Add, AluOp::Or, AluOp::Adc, AluOp::Sbb, AluOp::And, AluOp::Sub, AluOp::Xor, AluOp::Cmp];

impl AluOp {
    /// Whether the result is stored (false for CMP and TEST, which only set
    /// flags).
    pub const fn writes_result(self) -> bool {
        !matches!(self, AluOp::Cmp | AluOp::Test)
    }
}

/// A repeat prefix on a string instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RepPrefix {
    /// `F3`: REP for MOVS/STOS/LODS, REPE/REPZ for CMPS/SCAS.
    Rep,
    /// `F2`: REPNE/REPNZ for CMPS/SCAS. MOVS/STOS/LODS repeat with it as
    /// with REP (only the count ends them).
    Repne,
}

/// What the instruction does with its memory operand [`Instruction::mem`],
/// of [`Instruction::size`] bytes.
///
/// For the string instructions the counter is rCX and the pointers rSI and
/// rDI, all at [`MemOperand::address_size`]; the accumulator (AL, AX, EAX or
/// RAX at the access size) is the implicit register operand, and RFLAGS.DF
/// gives the direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Store `source` to memory.
    Write { source: Operand },
    /// Load memory into `dest`, widened by `extend` to `dest_size` bytes
    /// (`extend` is [`Extend::None`] exactly when `dest_size` equals the
    /// access size).
    Read { dest: Reg, extend: Extend, dest_size: u8 },
    /// `mem = mem op source`; for CMP and TEST only the flags, so memory
    /// is only read ([`AluOp::writes_result`]).
    Rmw { op: AluOp, source: Operand },
    /// `dest = dest op mem`, with `dest` at the access size; memory is only
    /// read. For CMP (`cmp r, m`) only the flags of `dest - mem`.
    AluRead { op: AluOp, dest: Reg },
    /// Exchange memory with `reg` (at the access size). The CPU locks it
    /// with or without `F0` ([`Instruction::lock`] reports only the prefix).
    Xchg { reg: Reg },
    /// MOVS: copy from `mem` (seg:rSI) to `es_di` (ES:rDI).
    Movs { es_di: MemOperand },
    /// CMPS: flags of `mem` (seg:rSI) minus `es_di` (ES:rDI).
    Cmps { es_di: MemOperand },
    /// STOS: store the accumulator to `mem` (ES:rDI).
    Stos,
    /// LODS: load `mem` (seg:rSI) into the accumulator.
    Lods,
    /// SCAS: flags of the accumulator minus `mem` (ES:rDI).
    Scas,
}

impl Access {
    /// Whether the instruction reads [`Instruction::mem`].
    pub const fn reads_memory(&self) -> bool {
        !matches!(self, Access::Write { .. } | Access::Stos)
    }

    /// Whether the instruction writes [`Instruction::mem`] (MOVS writes its
    /// `es_di` operand instead, and only reads `mem`).
    pub const fn writes_memory(&self) -> bool {
        match self {
            Access::Write { .. } | Access::Xchg { .. } | Access::Stos => true,
            Access::Rmw { op, .. } => op.writes_result(),
            Access::Read { .. }
            | Access::AluRead { .. }
            | Access::Movs { .. }
            | Access::Cmps { .. }
            | Access::Lods
            | Access::Scas => false,
        }
    }
}

/// A decoded memory-accessing instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Instruction {
    /// Length in bytes, at most [`MAX_INSTRUCTION_LEN`] and at most the
    /// slice given to [`decode`]. The next RIP is RIP + `len` (wrapped to
    /// 16 or 32 bits outside 64-bit mode).
    pub len: u8,
    /// The memory access size in bytes: 1, 2, 4 or 8 (for a string
    /// instruction, of one element).
    pub size: u8,
    pub kind: Access,
    /// The memory operand; for MOVS and CMPS the seg:rSI one (the ES:rDI
    /// one is in the [`Access`]).
    pub mem: MemOperand,
    /// A `F0` prefix (only on instructions that allow it).
    pub lock: bool,
    /// The repeat prefix of a string instruction; `None` on the others.
    pub rep: Option<RepPrefix>,
}

/// Why [`decode`] gave no instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// The slice ended before the instruction did; fetch more bytes (up to
    /// [`MAX_INSTRUCTION_LEN`]) and decode again. Never returned for a slice
    /// of 15 bytes or more.
    Truncated,
    /// The instruction would be longer than [`MAX_INSTRUCTION_LEN`] bytes
    /// (the CPU raises #GP(0)).
    TooLong,
    /// An opcode this decoder does not handle: one-byte opcodes as `00xx`,
    /// two-byte ones as `0Fxx` (for the three-byte maps, `0F38` or `0F3A`).
    Unsupported { opcode: u16 },
    /// A supported opcode in its register-only form (ModRM `mod` = 3): it
    /// accesses no memory.
    NoMemoryOperand { opcode: u16 },
    /// An encoding the CPU rejects with #UD: a LOCK prefix where it is not
    /// allowed, a reserved ModRM `reg` value, or `82` in 64-bit mode.
    Invalid { opcode: u16 },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("instruction bytes end too early"),
            DecodeError::TooLong => f.write_str("instruction longer than 15 bytes"),
            DecodeError::Unsupported { opcode } => write!(f, "unsupported opcode {opcode:#06x}"),
            DecodeError::NoMemoryOperand { opcode } => {
                write!(f, "opcode {opcode:#06x} has no memory operand")
            }
            DecodeError::Invalid { opcode } => write!(f, "invalid encoding of opcode {opcode:#06x}"),
        }
    }
}

/// Decodes the instruction at the start of `bytes` (fetched at the guest
/// RIP; at most the first [`MAX_INSTRUCTION_LEN`] are looked at, and fewer
/// are fine if the instruction fits) in `mode`.
pub fn decode(bytes: &[u8], mode: CpuMode) -> Result<Instruction, DecodeError> {
    let mut cursor = Cursor { bytes, pos: 0 };
    let prefixes = Prefixes::read(&mut cursor, mode)?;
    let opcode = cursor.byte()?;
    let ctx = Context::new(mode, prefixes);
    let decoded = ctx.opcode(&mut cursor, opcode)?;

    let lockable = match decoded.kind {
        Access::Rmw { op, .. } => op.writes_result(),
        Access::Xchg { .. } => true,
        _ => false,
    };
    if prefixes.lock && !lockable {
        return Err(DecodeError::Invalid { opcode: decoded.opcode });
    }
    let rep = match decoded.kind {
        Access::Movs { .. } | Access::Cmps { .. } | Access::Stos | Access::Lods | Access::Scas => prefixes.rep,
        _ => None,
    };
    // The cursor never passes MAX_INSTRUCTION_LEN, so this always fits.
    let len = u8::try_from(cursor.pos).map_err(|_| DecodeError::TooLong)?;
    Ok(Instruction { len, size: decoded.size, kind: decoded.kind, mem: decoded.mem, lock: prefixes.lock, rep })
}

/// Reads the instruction bytes, refusing to go past the slice or the
/// architectural length limit.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    /// The next byte, without consuming it.
    fn peek(&self) -> Result<u8, DecodeError> {
        if self.pos >= MAX_INSTRUCTION_LEN {
            return Err(DecodeError::TooLong);
        }
        self.bytes.get(self.pos).copied().ok_or(DecodeError::Truncated)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let byte = self.peek()?;
        self.pos += 1;
        Ok(byte)
    }

    /// A little-endian value of `count` (at most 8) bytes, zero-extended.
    fn le(&mut self, count: u8) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in 0..count.min(8) {
            value |= u64::from(self.byte()?) << (8 * u32::from(shift));
        }
        Ok(value)
    }

    /// A little-endian value of `count` bytes, sign-extended to 64 bits.
    fn signed(&mut self, count: u8) -> Result<u64, DecodeError> {
        Ok(sign_extend(self.le(count)?, count))
    }
}

/// Sign-extends the low `bytes` bytes of `value` to 64 bits.
const fn sign_extend(value: u64, bytes: u8) -> u64 {
    match bytes {
        1 => value as u8 as i8 as i64 as u64,
        2 => value as u16 as i16 as i64 as u64,
        4 => value as u32 as i32 as i64 as u64,
        _ => value,
    }
}

/// The REX prefix, if the last prefix before the opcode was one.
#[derive(Clone, Copy, Debug, Default)]
struct Rex(Option<u8>);

impl Rex {
    const fn present(self) -> bool {
        self.0.is_some()
    }

    const fn bit(self, mask: u8) -> bool {
        match self.0 {
            Some(rex) => rex & mask != 0,
            None => false,
        }
    }

    const fn w(self) -> bool {
        self.bit(0b1000)
    }

    /// REX.R, REX.X or REX.B as the fourth bit of a register number.
    const fn ext(self, mask: u8) -> u8 {
        if self.bit(mask) { 8 } else { 0 }
    }

    const fn r(self) -> u8 {
        self.ext(0b0100)
    }

    const fn x(self) -> u8 {
        self.ext(0b0010)
    }

    const fn b(self) -> u8 {
        self.ext(0b0001)
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Prefixes {
    lock: bool,
    rep: Option<RepPrefix>,
    segment: Option<Segment>,
    operand_size: bool,
    address_size: bool,
    rex: Rex,
}

impl Prefixes {
    /// Consumes the prefixes, leaving the cursor on the opcode. Within a
    /// group the last prefix wins (in 64-bit mode FS and GS win over the
    /// ignored ES/CS/SS/DS); a REX counts only if nothing follows it but the
    /// opcode.
    fn read(cursor: &mut Cursor<'_>, mode: CpuMode) -> Result<Prefixes, DecodeError> {
        let long = mode == CpuMode::Long64;
        let mut prefixes = Prefixes::default();
        loop {
            let byte = cursor.peek()?;
            let legacy_segment = match byte {
                0x26 => Some(Segment::Es),
                0x2e => Some(Segment::Cs),
                0x36 => Some(Segment::Ss),
                0x3e => Some(Segment::Ds),
                _ => None,
            };
            match byte {
                0xf0 => prefixes.lock = true,
                0xf2 => prefixes.rep = Some(RepPrefix::Repne),
                0xf3 => prefixes.rep = Some(RepPrefix::Rep),
                0x26 | 0x2e | 0x36 | 0x3e => {
                    if !long {
                        prefixes.segment = legacy_segment;
                    }
                }
                0x64 => prefixes.segment = Some(Segment::Fs),
                0x65 => prefixes.segment = Some(Segment::Gs),
                0x66 => prefixes.operand_size = true,
                0x67 => prefixes.address_size = true,
                0x40..=0x4f if long => {
                    cursor.byte()?;
                    prefixes.rex = Rex(Some(byte));
                    continue;
                }
                _ => return Ok(prefixes),
            }
            cursor.byte()?;
            prefixes.rex = Rex(None);
        }
    }
}

/// What one opcode decoded to, before the prefix checks.
struct Decoded {
    opcode: u16,
    size: u8,
    kind: Access,
    mem: MemOperand,
}

/// The sizes the prefixes select in this mode.
struct Context {
    mode: CpuMode,
    prefixes: Prefixes,
    /// 2, 4 or 8 bytes.
    operand_size: u8,
    address_size: AddressSize,
}

impl Context {
    fn new(mode: CpuMode, prefixes: Prefixes) -> Context {
        let operand_size = match mode {
            CpuMode::Long64 if prefixes.rex.w() => 8,
            CpuMode::Long64 | CpuMode::Protected32 => {
                if prefixes.operand_size {
                    2
                } else {
                    4
                }
            }
            CpuMode::Real16 | CpuMode::Protected16 => {
                if prefixes.operand_size {
                    4
                } else {
                    2
                }
            }
        };
        let address_size = match (default_address_size(mode), prefixes.address_size) {
            (size, false) => size,
            (AddressSize::Bits64, true) | (AddressSize::Bits16, true) => AddressSize::Bits32,
            (AddressSize::Bits32, true) => AddressSize::Bits16,
        };
        Context { mode, prefixes, operand_size, address_size }
    }

    /// The general-purpose register `number` (with its REX bit added) as a
    /// byte operand: without REX, 4 to 7 are AH, CH, DH, BH.
    fn byte_reg(&self, number: u8) -> Reg {
        if !self.prefixes.rex.present() && (4..8).contains(&number) {
            Reg { gpr: Gpr::from_number(number - 4), high_byte: true }
        } else {
            Reg::new(Gpr::from_number(number))
        }
    }

    /// The register operand of the ModRM `reg` field, at `size`.
    fn reg(&self, number: u8, size: u8) -> Reg {
        if size == 1 { self.byte_reg(number) } else { Reg::new(Gpr::from_number(number)) }
    }

    /// An immediate of `count` bytes, sign-extended and truncated to `size`.
    fn immediate(&self, cursor: &mut Cursor<'_>, count: u8, size: u8) -> Result<Operand, DecodeError> {
        Ok(Operand::Immediate(cursor.signed(count)? & size_mask(size)))
    }

    /// The bytes of an immediate for an operand of `size`: imm8, imm16 or
    /// imm32 (sign-extended for 64-bit operands).
    const fn immediate_len(size: u8) -> u8 {
        if size > 4 { 4 } else { size }
    }

    fn segment_or(&self, default: Segment) -> Segment {
        self.prefixes.segment.unwrap_or(default)
    }

    /// The string-instruction operand through rSI (overridable segment) or
    /// rDI (always ES).
    fn string_operand(&self, pointer: Gpr) -> MemOperand {
        let segment = if pointer == Gpr::Rdi { Segment::Es } else { self.segment_or(Segment::Ds) };
        MemOperand {
            segment,
            base: Some(pointer),
            index: None,
            scale: 1,
            displacement: 0,
            rip_relative: false,
            address_size: self.address_size,
        }
    }

    /// Reads ModRM and what follows it up to the immediate, returning the
    /// `reg` field (with REX.R) and the memory operand.
    fn modrm(&self, cursor: &mut Cursor<'_>, opcode: u16) -> Result<(u8, MemOperand), DecodeError> {
        self.modrm_checked(cursor, opcode, |_| Ok(()))
    }

    /// [`Self::modrm`] for an opcode group: `check` sees the three-bit `reg`
    /// field before the rest of the operand is read, so a rejected encoding
    /// is reported as such even if its bytes are cut short.
    fn modrm_checked(
        &self,
        cursor: &mut Cursor<'_>,
        opcode: u16,
        check: impl FnOnce(u8) -> Result<(), DecodeError>,
    ) -> Result<(u8, MemOperand), DecodeError> {
        let modrm = cursor.byte()?;
        let md = modrm >> 6;
        let reg = ((modrm >> 3) & 7) | self.prefixes.rex.r();
        let rm = modrm & 7;
        if md == 3 {
            return Err(DecodeError::NoMemoryOperand { opcode });
        }
        check(reg & 7)?;
        let mem = if self.address_size == AddressSize::Bits16 {
            self.memory16(cursor, md, rm)?
        } else {
            self.memory32(cursor, md, rm)?
        };
        Ok((reg, mem))
    }

    /// The 16-bit addressing forms.
    fn memory16(&self, cursor: &mut Cursor<'_>, md: u8, rm: u8) -> Result<MemOperand, DecodeError> {
        use Gpr::{Rbp, Rbx, Rdi, Rsi};
        let (base, index) = match rm {
            0 => (Some(Rbx), Some(Rsi)),
            1 => (Some(Rbx), Some(Rdi)),
            2 => (Some(Rbp), Some(Rsi)),
            3 => (Some(Rbp), Some(Rdi)),
            4 => (Some(Rsi), None),
            5 => (Some(Rdi), None),
            6 if md == 0 => (None, None),
            6 => (Some(Rbp), None),
            _ => (Some(Rbx), None),
        };
        let displacement = match md {
            0 if base.is_none() => cursor.signed(2)?,
            0 => 0,
            1 => cursor.signed(1)?,
            _ => cursor.signed(2)?,
        };
        let default = if base == Some(Rbp) { Segment::Ss } else { Segment::Ds };
        Ok(MemOperand {
            segment: self.segment_or(default),
            base,
            index,
            scale: 1,
            displacement,
            rip_relative: false,
            address_size: AddressSize::Bits16,
        })
    }

    /// The 32- and 64-bit addressing forms: SIB, disp32 and RIP-relative.
    fn memory32(&self, cursor: &mut Cursor<'_>, md: u8, rm: u8) -> Result<MemOperand, DecodeError> {
        let rex = self.prefixes.rex;
        let mut index = None;
        let mut scale = 1;
        let mut rip_relative = false;
        let base = if rm == 4 {
            let sib = cursor.byte()?;
            let index_number = ((sib >> 3) & 7) | rex.x();
            if index_number != 4 {
                index = Some(Gpr::from_number(index_number));
                scale = 1 << (sib >> 6);
            }
            if sib & 7 == 5 && md == 0 { None } else { Some(Gpr::from_number((sib & 7) | rex.b())) }
        } else if rm == 5 && md == 0 {
            rip_relative = self.mode == CpuMode::Long64;
            None
        } else {
            Some(Gpr::from_number(rm | rex.b()))
        };
        let displacement = match md {
            0 if base.is_none() => cursor.signed(4)?,
            0 => 0,
            1 => cursor.signed(1)?,
            _ => cursor.signed(4)?,
        };
        let default = match base {
            Some(Gpr::Rsp | Gpr::Rbp) => Segment::Ss,
            _ => Segment::Ds,
        };
        Ok(MemOperand {
            segment: self.segment_or(default),
            base,
            index,
            scale,
            displacement,
            rip_relative,
            address_size: self.address_size,
        })
    }

    fn opcode(&self, cursor: &mut Cursor<'_>, byte: u8) -> Result<Decoded, DecodeError> {
        let opcode = u16::from(byte);
        // Bit 0 of most one-byte opcodes selects a byte operand.
        let size = if byte & 1 == 0 { 1 } else { self.operand_size };
        let long = self.mode == CpuMode::Long64;
        let (size, kind, mem) = match byte {
            0x0f => return self.two_byte(cursor),
            // The ALU rows: x0/x1 `op r/m, r`, x2/x3 `op r, r/m`.
            0x00..=0x3f if byte & 7 < 4 => {
                let op = ALU_OPS[usize::from(byte >> 3)];
                let (reg, mem) = self.modrm(cursor, opcode)?;
                let reg = self.reg(reg, size);
                let kind = if byte & 2 == 0 {
                    Access::Rmw { op, source: Operand::Register(reg) }
                } else {
                    Access::AluRead { op, dest: reg }
                };
                (size, kind, mem)
            }
            0x63 if long => {
                let (reg, mem) = self.modrm(cursor, opcode)?;
                let dest_size = self.operand_size;
                let size = dest_size.min(4);
                let extend = if size == dest_size { Extend::None } else { Extend::Sign };
                (size, Access::Read { dest: Reg::new(Gpr::from_number(reg)), extend, dest_size }, mem)
            }
            0x82 if long => return Err(DecodeError::Invalid { opcode }),
            0x80..=0x83 => {
                let (reg, mem) = self.modrm(cursor, opcode)?;
                let op = ALU_OPS[usize::from(reg & 7)];
                let count = if byte == 0x81 { Self::immediate_len(size) } else { 1 };
                let source = self.immediate(cursor, count, size)?;
                (size, Access::Rmw { op, source }, mem)
            }
            0x84 | 0x85 => {
                let (reg, mem) = self.modrm(cursor, opcode)?;
                let source = Operand::Register(self.reg(reg, size));
                (size, Access::Rmw { op: AluOp::Test, source }, mem)
            }
            0x86 | 0x87 => {
                let (reg, mem) = self.modrm(cursor, opcode)?;
                (size, Access::Xchg { reg: self.reg(reg, size) }, mem)
            }
            0x88..=0x8b => {
                let (reg, mem) = self.modrm(cursor, opcode)?;
                let reg = self.reg(reg, size);
                let kind = if byte & 2 == 0 {
                    Access::Write { source: Operand::Register(reg) }
                } else {
                    Access::Read { dest: reg, extend: Extend::None, dest_size: size }
                };
                (size, kind, mem)
            }
            0xa0..=0xa3 => {
                let displacement = cursor.le(self.address_size.bytes())?;
                let mem = MemOperand {
                    segment: self.segment_or(Segment::Ds),
                    base: None,
                    index: None,
                    scale: 1,
                    displacement,
                    rip_relative: false,
                    address_size: self.address_size,
                };
                let rax = Reg::new(Gpr::Rax);
                let kind = if byte & 2 == 0 {
                    Access::Read { dest: rax, extend: Extend::None, dest_size: size }
                } else {
                    Access::Write { source: Operand::Register(rax) }
                };
                (size, kind, mem)
            }
            0xa4 | 0xa5 => {
                let es_di = self.string_operand(Gpr::Rdi);
                (size, Access::Movs { es_di }, self.string_operand(Gpr::Rsi))
            }
            0xa6 | 0xa7 => {
                let es_di = self.string_operand(Gpr::Rdi);
                (size, Access::Cmps { es_di }, self.string_operand(Gpr::Rsi))
            }
            0xaa | 0xab => (size, Access::Stos, self.string_operand(Gpr::Rdi)),
            0xac | 0xad => (size, Access::Lods, self.string_operand(Gpr::Rsi)),
            0xae | 0xaf => (size, Access::Scas, self.string_operand(Gpr::Rdi)),
            0xc6 | 0xc7 => {
                let (_, mem) = self.modrm_checked(cursor, opcode, |reg| {
                    if reg == 0 { Ok(()) } else { Err(DecodeError::Invalid { opcode }) }
                })?;
                let source = self.immediate(cursor, Self::immediate_len(size), size)?;
                (size, Access::Write { source }, mem)
            }
            0xf6 | 0xf7 => {
                // /1 is an undocumented alias of /0 that CPUs execute.
                let (_, mem) = self.modrm_checked(cursor, opcode, |reg| {
                    if reg <= 1 { Ok(()) } else { Err(DecodeError::Unsupported { opcode }) }
                })?;
                let source = self.immediate(cursor, Self::immediate_len(size), size)?;
                (size, Access::Rmw { op: AluOp::Test, source }, mem)
            }
            _ => return Err(DecodeError::Unsupported { opcode }),
        };
        Ok(Decoded { opcode, size, kind, mem })
    }

    /// The `0F` map: MOVZX and MOVSX.
    fn two_byte(&self, cursor: &mut Cursor<'_>) -> Result<Decoded, DecodeError> {
        let byte = cursor.byte()?;
        let opcode = 0x0f00 | u16::from(byte);
        match byte {
            0xb6 | 0xb7 | 0xbe | 0xbf => {
                let (reg, mem) = self.modrm(cursor, opcode)?;
                let size = if byte & 1 == 0 { 1 } else { 2 };
                let dest_size = self.operand_size;
                let extend = if size == dest_size {
                    Extend::None
                } else if byte & 8 == 0 {
                    Extend::Zero
                } else {
                    Extend::Sign
                };
                let kind = Access::Read { dest: Reg::new(Gpr::from_number(reg)), extend, dest_size };
                Ok(Decoded { opcode, size, kind, mem })
            }
            _ => Err(DecodeError::Unsupported { opcode }),
        }
    }
}

#[cfg(test)]
mod tests;
