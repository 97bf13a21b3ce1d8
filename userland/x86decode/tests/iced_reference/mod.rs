//! iced-x86's decoding translated into the [`Instruction`] x86decode should
//! produce, and [`compare`], which checks that the two decoders agree on one
//! input (the rules are in `tests/iced.rs`). Shared by the differential
//! tests and the `x86decode` fuzz target (`fuzz/fuzz_targets/x86decode.rs`).

use iced_x86::{Decoder, DecoderError, DecoderOptions, Instruction as Iced, Mnemonic, OpKind, Register};
use std::collections::BTreeMap;
use x86decode::{
    Access, AddressSize, AluOp, CpuMode, DecodeError, Extend, Gpr, Instruction, MemOperand, Operand, Reg, RepPrefix,
    Segment, decode, size_mask,
};

pub const MODES: [CpuMode; 4] = [CpuMode::Real16, CpuMode::Protected16, CpuMode::Protected32, CpuMode::Long64];

fn bitness(mode: CpuMode) -> u32 {
    match mode {
        CpuMode::Real16 | CpuMode::Protected16 => 16,
        CpuMode::Protected32 => 32,
        CpuMode::Long64 => 64,
    }
}

// ---- translating iced's view into ours ----

fn gpr(register: Register) -> Gpr {
    let full = register.full_register();
    assert!(full.is_gpr64(), "{register:?} is not a general-purpose register");
    Gpr::from_number(full.number() as u8)
}

fn reg(register: Register) -> Reg {
    Reg { gpr: gpr(register), high_byte: matches!(register, Register::AH | Register::CH | Register::DH | Register::BH) }
}

fn segment(register: Register) -> Segment {
    match register {
        Register::ES => Segment::Es,
        Register::CS => Segment::Cs,
        Register::SS => Segment::Ss,
        Register::DS => Segment::Ds,
        Register::FS => Segment::Fs,
        Register::GS => Segment::Gs,
        other => panic!("{other:?} is not a segment register"),
    }
}

fn address_size(bytes: usize) -> AddressSize {
    match bytes {
        2 => AddressSize::Bits16,
        4 => AddressSize::Bits32,
        8 => AddressSize::Bits64,
        other => panic!("address size {other}"),
    }
}

/// The segment the CPU uses: in 64-bit mode ES/CS/SS/DS overrides are
/// ignored, which iced still reports as the override.
fn effective_segment(mode: CpuMode, reported: Register, default: Segment) -> Segment {
    let reported = segment(reported);
    if mode == CpuMode::Long64 && !matches!(reported, Segment::Fs | Segment::Gs) { default } else { reported }
}

/// Displacements are compared modulo the address size (iced keeps 16- and
/// 32-bit ones zero-extended, this crate sign-extends; the effective
/// address is the same).
fn canonical(mut mem: MemOperand) -> MemOperand {
    mem.displacement &= mem.address_size.mask();
    mem
}

fn canonical_instruction(mut instruction: Instruction) -> Instruction {
    instruction.mem = canonical(instruction.mem);
    match &mut instruction.kind {
        Access::Movs { es_di } | Access::Cmps { es_di } => *es_di = canonical(*es_di),
        _ => {}
    }
    instruction
}

fn memory_operand(iced: &Iced, mode: CpuMode) -> MemOperand {
    let base = iced.memory_base();
    let index = iced.memory_index();
    let rip_relative = matches!(base, Register::RIP | Register::EIP);
    let size = if rip_relative {
        if base == Register::RIP { 8 } else { 4 }
    } else if base != Register::None {
        base.size()
    } else if index != Register::None {
        index.size()
    } else {
        iced.memory_displ_size() as usize
    };
    let address_size = address_size(size);
    let mut displacement = iced.memory_displacement64();
    if rip_relative {
        // iced gives the target for IP 0, i.e. the next RIP (the length)
        // plus the displacement.
        displacement = displacement.wrapping_sub(iced.len() as u64);
    }
    let base = (!rip_relative && base != Register::None).then(|| gpr(base));
    let index = (index != Register::None).then(|| gpr(index));
    let default = match iced.memory_base() {
        Register::SP | Register::BP | Register::ESP | Register::EBP | Register::RSP | Register::RBP => Segment::Ss,
        _ => Segment::Ds,
    };
    canonical(MemOperand {
        segment: effective_segment(mode, iced.memory_segment(), default),
        base,
        index,
        scale: if index.is_some() { iced.memory_index_scale() as u8 } else { 1 },
        displacement,
        rip_relative,
        address_size,
    })
}

fn string_operand(iced: &Iced, mode: CpuMode, kind: OpKind) -> MemOperand {
    let (pointer, size, segment) = match kind {
        OpKind::MemorySegSI => (Gpr::Rsi, 2, effective_segment(mode, iced.memory_segment(), Segment::Ds)),
        OpKind::MemorySegESI => (Gpr::Rsi, 4, effective_segment(mode, iced.memory_segment(), Segment::Ds)),
        OpKind::MemorySegRSI => (Gpr::Rsi, 8, effective_segment(mode, iced.memory_segment(), Segment::Ds)),
        OpKind::MemoryESDI => (Gpr::Rdi, 2, Segment::Es),
        OpKind::MemoryESEDI => (Gpr::Rdi, 4, Segment::Es),
        OpKind::MemoryESRDI => (Gpr::Rdi, 8, Segment::Es),
        other => panic!("{other:?} is not a string operand"),
    };
    MemOperand {
        segment,
        base: Some(pointer),
        index: None,
        scale: 1,
        displacement: 0,
        rip_relative: false,
        address_size: address_size(size),
    }
}

fn is_immediate(kind: OpKind) -> bool {
    matches!(
        kind,
        OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64
    )
}

fn is_string(kind: OpKind) -> bool {
    matches!(
        kind,
        OpKind::MemorySegSI
            | OpKind::MemorySegESI
            | OpKind::MemorySegRSI
            | OpKind::MemoryESDI
            | OpKind::MemoryESEDI
            | OpKind::MemoryESRDI
    )
}

fn alu_op(mnemonic: Mnemonic) -> Option<AluOp> {
    Some(match mnemonic {
        Mnemonic::Add => AluOp::Add,
        Mnemonic::Or => AluOp::Or,
        Mnemonic::Adc => AluOp::Adc,
        Mnemonic::Sbb => AluOp::Sbb,
        Mnemonic::And => AluOp::And,
        Mnemonic::Sub => AluOp::Sub,
        Mnemonic::Xor => AluOp::Xor,
        Mnemonic::Cmp => AluOp::Cmp,
        Mnemonic::Test => AluOp::Test,
        _ => return None,
    })
}

/// What this crate should decode, according to iced; `None` if iced's
/// instruction is invalid, has no memory operand or is not supported here.
fn expected(iced: &Iced, mode: CpuMode) -> Option<Instruction> {
    if iced.is_invalid() {
        return None;
    }
    let kinds: Vec<OpKind> = (0..iced.op_count()).map(|i| iced.op_kind(i)).collect();
    let registers: Vec<Register> = (0..iced.op_count()).map(|i| iced.op_register(i)).collect();
    // Only general-purpose register operands (no segment, control or debug
    // registers, e.g. `8C mov m16, sreg`).
    if kinds.iter().zip(&registers).any(|(kind, register)| *kind == OpKind::Register && !register.is_gpr()) {
        return None;
    }
    let size = iced.memory_size().size() as u8;
    let immediate = |i: u32| Operand::Immediate(iced.immediate(i) & size_mask(size));
    let mnemonic = iced.mnemonic();
    // `mem` is the seg:rSI operand where there is one, else ES:rDI.
    let string_kind = |op: Access| {
        let si = kinds
            .iter()
            .find(|k| matches!(k, OpKind::MemorySegSI | OpKind::MemorySegESI | OpKind::MemorySegRSI))
            .map(|k| string_operand(iced, mode, *k));
        let di = kinds
            .iter()
            .find(|k| matches!(k, OpKind::MemoryESDI | OpKind::MemoryESEDI | OpKind::MemoryESRDI))
            .map(|k| string_operand(iced, mode, *k));
        Some(match op {
            Access::Movs { .. } => (Access::Movs { es_di: di? }, si?),
            Access::Cmps { .. } => (Access::Cmps { es_di: di? }, si?),
            Access::Lods => (op, si?),
            other => (other, di?),
        })
    };
    let (kind, mem) = match (mnemonic, kinds.as_slice()) {
        (Mnemonic::Mov, [OpKind::Memory, OpKind::Register]) => {
            (Access::Write { source: Operand::Register(reg(registers[1])) }, memory_operand(iced, mode))
        }
        (Mnemonic::Mov, [OpKind::Memory, k]) if is_immediate(*k) => {
            (Access::Write { source: immediate(1) }, memory_operand(iced, mode))
        }
        (Mnemonic::Mov, [OpKind::Register, OpKind::Memory]) => (
            Access::Read { dest: reg(registers[0]), extend: Extend::None, dest_size: registers[0].size() as u8 },
            memory_operand(iced, mode),
        ),
        (Mnemonic::Movzx | Mnemonic::Movsx | Mnemonic::Movsxd, [OpKind::Register, OpKind::Memory]) => {
            let dest_size = registers[0].size() as u8;
            let extend = if dest_size == size {
                Extend::None
            } else if mnemonic == Mnemonic::Movzx {
                Extend::Zero
            } else {
                Extend::Sign
            };
            (Access::Read { dest: reg(registers[0]), extend, dest_size }, memory_operand(iced, mode))
        }
        (m, [OpKind::Memory, OpKind::Register]) if alu_op(m).is_some() => {
            (Access::Rmw { op: alu_op(m)?, source: Operand::Register(reg(registers[1])) }, memory_operand(iced, mode))
        }
        (m, [OpKind::Memory, k]) if alu_op(m).is_some() && is_immediate(*k) => {
            (Access::Rmw { op: alu_op(m)?, source: immediate(1) }, memory_operand(iced, mode))
        }
        (m, [OpKind::Register, OpKind::Memory]) if alu_op(m).is_some() && m != Mnemonic::Test => {
            (Access::AluRead { op: alu_op(m)?, dest: reg(registers[0]) }, memory_operand(iced, mode))
        }
        (Mnemonic::Xchg, [OpKind::Memory, OpKind::Register]) => {
            (Access::Xchg { reg: reg(registers[1]) }, memory_operand(iced, mode))
        }
        (Mnemonic::Xchg, [OpKind::Register, OpKind::Memory]) => {
            (Access::Xchg { reg: reg(registers[0]) }, memory_operand(iced, mode))
        }
        (Mnemonic::Movsb | Mnemonic::Movsw | Mnemonic::Movsd | Mnemonic::Movsq, _) => {
            string_kind(Access::Movs { es_di: dummy() })?
        }
        (Mnemonic::Cmpsb | Mnemonic::Cmpsw | Mnemonic::Cmpsd | Mnemonic::Cmpsq, _) => {
            string_kind(Access::Cmps { es_di: dummy() })?
        }
        (Mnemonic::Stosb | Mnemonic::Stosw | Mnemonic::Stosd | Mnemonic::Stosq, _) => string_kind(Access::Stos)?,
        (Mnemonic::Lodsb | Mnemonic::Lodsw | Mnemonic::Lodsd | Mnemonic::Lodsq, _) => string_kind(Access::Lods)?,
        (Mnemonic::Scasb | Mnemonic::Scasw | Mnemonic::Scasd | Mnemonic::Scasq, _) => string_kind(Access::Scas)?,
        _ => return None,
    };
    let rep = match kind {
        Access::Movs { .. } | Access::Cmps { .. } | Access::Stos | Access::Lods | Access::Scas => {
            if iced.has_repne_prefix() {
                Some(RepPrefix::Repne)
            } else if iced.has_repe_prefix() {
                Some(RepPrefix::Rep)
            } else {
                None
            }
        }
        _ => None,
    };
    Some(Instruction { len: iced.len() as u8, size, kind, mem, lock: iced.has_lock_prefix(), rep })
}

fn dummy() -> MemOperand {
    MemOperand {
        segment: Segment::Es,
        base: None,
        index: None,
        scale: 1,
        displacement: 0,
        rip_relative: false,
        address_size: AddressSize::Bits16,
    }
}

fn has_memory_operand(iced: &Iced) -> bool {
    (0..iced.op_count()).any(|i| iced.op_kind(i) == OpKind::Memory || is_string(iced.op_kind(i)))
}

/// Per outcome counts, to show what the run covered.
#[derive(Default)]
pub struct Tally(pub BTreeMap<String, u64>);

impl Tally {
    pub fn add(&mut self, key: impl Into<String>) {
        *self.0.entry(key.into()).or_default() += 1;
    }

    pub fn get(&self, key: &str) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }
}

fn kind_name(kind: &Access) -> &'static str {
    match kind {
        Access::Write { .. } => "Write",
        Access::Read { .. } => "Read",
        Access::Rmw { .. } => "Rmw",
        Access::AluRead { .. } => "AluRead",
        Access::Xchg { .. } => "Xchg",
        Access::Movs { .. } => "Movs",
        Access::Cmps { .. } => "Cmps",
        Access::Stos => "Stos",
        Access::Lods => "Lods",
        Access::Scas => "Scas",
    }
}

fn error_name(error: &DecodeError) -> &'static str {
    match error {
        DecodeError::Truncated => "Truncated",
        DecodeError::TooLong => "TooLong",
        DecodeError::Unsupported { .. } => "Unsupported",
        DecodeError::NoMemoryOperand { .. } => "NoMemoryOperand",
        DecodeError::Invalid { .. } => "Invalid",
    }
}

/// Decodes `bytes` with both decoders and checks they agree.
pub fn compare(bytes: &[u8], mode: CpuMode, tally: &mut Tally) {
    let mut decoder = Decoder::with_ip(bitness(mode), bytes, 0, DecoderOptions::NONE);
    let iced = decoder.decode();
    let iced_error = decoder.last_error();
    let ours = decode(bytes, mode);
    let want = expected(&iced, mode);
    let context = || format!("{bytes:02x?} in {mode:?}: iced says `{iced}` ({iced_error:?}), we say {ours:?}");
    match (ours, want) {
        (Ok(ours), Some(want)) => {
            assert_eq!(canonical_instruction(ours), want, "{}", context());
            tally.add(format!("ok {}", kind_name(&ours.kind)));
            tally.add("ok");
        }
        (Ok(_), None) => panic!("decoded what iced does not see as a supported access: {}", context()),
        (Err(error), Some(_)) => panic!("missed a supported instruction ({error}): {}", context()),
        (Err(error), None) => {
            match error {
                DecodeError::Truncated => {
                    assert_eq!(iced_error, DecoderError::NoMoreBytes, "{}", context());
                    assert!(bytes.len() < 15, "{}", context());
                }
                DecodeError::TooLong | DecodeError::Invalid { .. } => assert!(iced.is_invalid(), "{}", context()),
                DecodeError::NoMemoryOperand { .. } => {
                    assert!(iced.is_invalid() || !has_memory_operand(&iced), "{}", context())
                }
                DecodeError::Unsupported { .. } => {}
            }
            tally.add(format!("err {}", error_name(&error)));
            tally.add("err");
        }
    }
}
