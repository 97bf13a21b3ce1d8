//! Table tests over hand-assembled encodings (assembly in the comments, Intel
//! syntax), truncation at every byte boundary, the register and address
//! helpers, and a random-byte fuzz. The differential test against iced-x86
//! is in `tests/iced.rs`.

use super::*;
// Named explicitly: the glob would be ambiguous with the prelude's `Extend` trait.
use super::Extend;
use AddressSize::{Bits16, Bits32, Bits64};
use CpuMode::{Long64, Protected16, Protected32, Real16};
use Gpr::*;
use Segment::{Cs, Ds, Es, Fs, Gs, Ss};

// ---- builders for expected values ----

fn m(segment: Segment, base: Option<Gpr>, index: Option<Gpr>, scale: u8, disp: i64, a: AddressSize) -> MemOperand {
    MemOperand { segment, base, index, scale, displacement: disp as u64, rip_relative: false, address_size: a }
}

/// `ds:[base + disp]`.
fn b(base: Gpr, disp: i64, a: AddressSize) -> MemOperand {
    let segment = if matches!(base, Rsp | Rbp) { Ss } else { Ds };
    m(segment, Some(base), None, 1, disp, a)
}

/// `ds:[disp]`.
fn abs(disp: u64, a: AddressSize) -> MemOperand {
    MemOperand { displacement: disp, ..m(Ds, None, None, 1, 0, a) }
}

fn rip(disp: i64, a: AddressSize) -> MemOperand {
    MemOperand { rip_relative: true, ..m(Ds, None, None, 1, disp, a) }
}

fn seg(mem: MemOperand, segment: Segment) -> MemOperand {
    MemOperand { segment, ..mem }
}

fn r(gpr: Gpr) -> Reg {
    Reg::new(gpr)
}

fn hi(gpr: Gpr) -> Reg {
    Reg { gpr, high_byte: true }
}

fn reg(gpr: Gpr) -> Operand {
    Operand::Register(r(gpr))
}

fn imm(value: u64) -> Operand {
    Operand::Immediate(value)
}

fn ins(len: u8, size: u8, kind: Access, mem: MemOperand) -> Instruction {
    Instruction { len, size, kind, mem, lock: false, rep: None }
}

fn write(len: u8, size: u8, source: Operand, mem: MemOperand) -> Instruction {
    ins(len, size, Access::Write { source }, mem)
}

fn read(len: u8, size: u8, dest: Reg, mem: MemOperand) -> Instruction {
    ins(len, size, Access::Read { dest, extend: Extend::None, dest_size: size }, mem)
}

fn read_ext(len: u8, size: u8, dest: Reg, extend: Extend, dest_size: u8, mem: MemOperand) -> Instruction {
    ins(len, size, Access::Read { dest, extend, dest_size }, mem)
}

fn rmw(len: u8, size: u8, op: AluOp, source: Operand, mem: MemOperand) -> Instruction {
    ins(len, size, Access::Rmw { op, source }, mem)
}

fn locked(i: Instruction) -> Instruction {
    Instruction { lock: true, ..i }
}

fn rep(i: Instruction, prefix: RepPrefix) -> Instruction {
    Instruction { rep: Some(prefix), ..i }
}

fn si(segment: Segment, a: AddressSize) -> MemOperand {
    m(segment, Some(Rsi), None, 1, 0, a)
}

fn di(a: AddressSize) -> MemOperand {
    m(Es, Some(Rdi), None, 1, 0, a)
}

/// Every table entry: bytes, mode, expected result.
fn table() -> Vec<(&'static [u8], CpuMode, Result<Instruction, DecodeError>)> {
    use AluOp::*;
    use DecodeError::*;
    use Extend::{Sign, Zero};
    vec![
        // ---- MOV in 64-bit mode ----
        (&[0x89, 0x08], Long64, Ok(write(2, 4, reg(Rcx), b(Rax, 0, Bits64)))), // mov [rax], ecx
        (&[0x48, 0x89, 0x08], Long64, Ok(write(3, 8, reg(Rcx), b(Rax, 0, Bits64)))), // mov [rax], rcx
        (&[0x66, 0x89, 0x08], Long64, Ok(write(3, 2, reg(Rcx), b(Rax, 0, Bits64)))), // mov [rax], cx
        (&[0x66, 0x48, 0x89, 0x08], Long64, Ok(write(4, 8, reg(Rcx), b(Rax, 0, Bits64)))), // REX.W beats 66
        (&[0x48, 0x66, 0x89, 0x08], Long64, Ok(write(4, 2, reg(Rcx), b(Rax, 0, Bits64)))), // REX not last: ignored
        (&[0x4c, 0x89, 0x00], Long64, Ok(write(3, 8, reg(R8), b(Rax, 0, Bits64)))), // mov [rax], r8
        (&[0x88, 0x20], Long64, Ok(write(2, 1, Operand::Register(hi(Rax)), b(Rax, 0, Bits64)))), // mov [rax], ah
        (&[0x88, 0x3b], Long64, Ok(write(2, 1, Operand::Register(hi(Rbx)), b(Rbx, 0, Bits64)))), // mov [rbx], bh
        (&[0x40, 0x88, 0x20], Long64, Ok(write(3, 1, reg(Rsp), b(Rax, 0, Bits64)))), // mov [rax], spl
        (&[0x40, 0x88, 0x3e], Long64, Ok(write(3, 1, reg(Rdi), b(Rsi, 0, Bits64)))), // mov [rsi], dil
        (&[0x44, 0x88, 0x20], Long64, Ok(write(3, 1, reg(R12), b(Rax, 0, Bits64)))), // mov [rax], r12b
        (&[0x41, 0x88, 0x08], Long64, Ok(write(3, 1, reg(Rcx), b(R8, 0, Bits64)))), // mov [r8], cl
        (&[0x8a, 0x28], Long64, Ok(read(2, 1, hi(Rcx), b(Rax, 0, Bits64)))),   // mov ch, [rax]
        (&[0x8b, 0x08], Long64, Ok(read(2, 4, r(Rcx), b(Rax, 0, Bits64)))),    // mov ecx, [rax]
        (&[0x4c, 0x8b, 0x3f], Long64, Ok(read(3, 8, r(R15), b(Rdi, 0, Bits64)))), // mov r15, [rdi]
        // mov eax, [rip+0x10]
        (&[0x8b, 0x05, 0x10, 0, 0, 0], Long64, Ok(read(6, 4, r(Rax), rip(0x10, Bits64)))),
        // mov eax, [rip-4]; REX.B does not turn RIP-relative into [r13]
        (&[0x41, 0x8b, 0x05, 0xfc, 0xff, 0xff, 0xff], Long64, Ok(read(7, 4, r(Rax), rip(-4, Bits64)))),
        // mov eax, [eip+0x10]
        (&[0x67, 0x8b, 0x05, 0x10, 0, 0, 0], Long64, Ok(read(7, 4, r(Rax), rip(0x10, Bits32)))),
        (&[0x8b, 0x04, 0x24], Long64, Ok(read(3, 4, r(Rax), b(Rsp, 0, Bits64)))), // mov eax, [rsp]
        (&[0x8b, 0x45, 0x08], Long64, Ok(read(3, 4, r(Rax), b(Rbp, 8, Bits64)))), // mov eax, [rbp+8]
        (&[0x41, 0x8b, 0x45, 0x08], Long64, Ok(read(4, 4, r(Rax), b(R13, 8, Bits64)))), // mov eax, [r13+8]: DS
        (&[0x41, 0x8b, 0x04, 0x24], Long64, Ok(read(4, 4, r(Rax), b(R12, 0, Bits64)))), // mov eax, [r12]
        (&[0x8b, 0x04, 0x20], Long64, Ok(read(3, 4, r(Rax), b(Rax, 0, Bits64)))), // mov eax, [rax] (SIB, no index)
        // mov eax, [rax+r12]
        (&[0x42, 0x8b, 0x04, 0x20], Long64, Ok(read(4, 4, r(Rax), m(Ds, Some(Rax), Some(R12), 1, 0, Bits64)))),
        // mov eax, [rax+rcx*4+0x12345678]
        (
            &[0x8b, 0x84, 0x88, 0x78, 0x56, 0x34, 0x12],
            Long64,
            Ok(read(7, 4, r(Rax), m(Ds, Some(Rax), Some(Rcx), 4, 0x1234_5678, Bits64))),
        ),
        // mov eax, [r13+r12*8-8]
        (&[0x43, 0x8b, 0x44, 0xe5, 0xf8], Long64, Ok(read(5, 4, r(Rax), m(Ds, Some(R13), Some(R12), 8, -8, Bits64)))),
        // mov eax, [rsi*2+0x100]: SIB base 101 with mod 00 has no base
        (
            &[0x8b, 0x04, 0x75, 0x00, 0x01, 0, 0],
            Long64,
            Ok(read(7, 4, r(Rax), m(Ds, None, Some(Rsi), 2, 0x100, Bits64))),
        ),
        // mov eax, [0x1000] (SIB, no base, no index), and [-0x10] sign-extended
        (&[0x8b, 0x04, 0x25, 0, 0x10, 0, 0], Long64, Ok(read(7, 4, r(Rax), abs(0x1000, Bits64)))),
        (
            &[0x8b, 0x04, 0x25, 0xf0, 0xff, 0xff, 0xff],
            Long64,
            Ok(read(7, 4, r(Rax), abs(0xffff_ffff_ffff_fff0, Bits64))),
        ),
        // mov eax, fs:[0x28]
        (&[0x64, 0x8b, 0x04, 0x25, 0x28, 0, 0, 0], Long64, Ok(read(8, 4, r(Rax), seg(abs(0x28, Bits64), Fs)))),
        // mov rax, gs:[rbp-0x80]
        (&[0x65, 0x48, 0x8b, 0x45, 0x80], Long64, Ok(read(5, 8, r(Rax), seg(b(Rbp, -0x80, Bits64), Gs)))),
        // cs:, es:, ss:, ds: are ignored in 64-bit mode; fs:/gs: win whatever the order
        (&[0x2e, 0x8b, 0x00], Long64, Ok(read(3, 4, r(Rax), b(Rax, 0, Bits64)))),
        (&[0x3e, 0x8b, 0x04, 0x24], Long64, Ok(read(4, 4, r(Rax), b(Rsp, 0, Bits64)))),
        (&[0x64, 0x26, 0x8b, 0x00], Long64, Ok(read(4, 4, r(Rax), seg(b(Rax, 0, Bits64), Fs)))),
        (&[0x64, 0x65, 0x8b, 0x00], Long64, Ok(read(4, 4, r(Rax), seg(b(Rax, 0, Bits64), Gs)))),
        // mov eax, [eax] and [r8d+ecx*2] with 67
        (&[0x67, 0x8b, 0x00], Long64, Ok(read(3, 4, r(Rax), b(Rax, 0, Bits32)))),
        (&[0x67, 0x41, 0x8b, 0x04, 0x48], Long64, Ok(read(5, 4, r(Rax), m(Ds, Some(R8), Some(Rcx), 2, 0, Bits32)))),
        // ---- MOV with an immediate ----
        (&[0xc6, 0x00, 0xab], Long64, Ok(write(3, 1, imm(0xab), b(Rax, 0, Bits64)))), // mov byte [rax], 0xab
        (&[0x66, 0xc7, 0x00, 0x34, 0x12], Long64, Ok(write(5, 2, imm(0x1234), b(Rax, 0, Bits64)))), // mov word [rax], 0x1234
        // mov dword [rax], 0x12345678
        (&[0xc7, 0x00, 0x78, 0x56, 0x34, 0x12], Long64, Ok(write(6, 4, imm(0x1234_5678), b(Rax, 0, Bits64)))),
        // mov qword [rax], -1 (imm32 sign-extended)
        (&[0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0xff], Long64, Ok(write(7, 8, imm(u64::MAX), b(Rax, 0, Bits64)))),
        // mov qword [rax], 0x7fffffff
        (&[0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0x7f], Long64, Ok(write(7, 8, imm(0x7fff_ffff), b(Rax, 0, Bits64)))),
        // mov dword [rip+0x100], 1: the immediate follows the displacement
        (&[0xc7, 0x05, 0, 1, 0, 0, 1, 0, 0, 0], Long64, Ok(write(10, 4, imm(1), rip(0x100, Bits64)))),
        // mov dword [rbx+0x10], 0xfee00000 (a typical LAPIC write)
        (&[0xc7, 0x43, 0x10, 0x00, 0x00, 0xe0, 0xfe], Long64, Ok(write(7, 4, imm(0xfee0_0000), b(Rbx, 0x10, Bits64)))),
        // ---- moffs ----
        // mov eax, [0x1122334455667788]
        (
            &[0xa1, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11],
            Long64,
            Ok(read(9, 4, r(Rax), abs(0x1122_3344_5566_7788, Bits64))),
        ),
        // mov [0xfee000b0], rax (moffs64)
        (
            &[0x48, 0xa3, 0xb0, 0x00, 0xe0, 0xfe, 0, 0, 0, 0],
            Long64,
            Ok(write(10, 8, reg(Rax), abs(0xfee0_00b0, Bits64))),
        ),
        // mov al, [0x80000000] with 67: moffs32, zero-extended
        (&[0x67, 0xa0, 0, 0, 0, 0x80], Long64, Ok(read(6, 1, r(Rax), abs(0x8000_0000, Bits32)))),
        // mov gs:[0x10], al; REX.B does not change the register
        (
            &[0x65, 0x41, 0xa2, 0x10, 0, 0, 0, 0, 0, 0, 0],
            Long64,
            Ok(write(11, 1, reg(Rax), seg(abs(0x10, Bits64), Gs))),
        ),
        // ---- MOVZX / MOVSX / MOVSXD ----
        (&[0x0f, 0xb6, 0x00], Long64, Ok(read_ext(3, 1, r(Rax), Zero, 4, b(Rax, 0, Bits64)))), // movzx eax, byte [rax]
        (&[0x0f, 0xb7, 0x0b], Long64, Ok(read_ext(3, 2, r(Rcx), Zero, 4, b(Rbx, 0, Bits64)))), // movzx ecx, word [rbx]
        (&[0x66, 0x0f, 0xb6, 0x00], Long64, Ok(read_ext(4, 1, r(Rax), Zero, 2, b(Rax, 0, Bits64)))), // movzx ax, byte [rax]
        (&[0x66, 0x0f, 0xb7, 0x00], Long64, Ok(read_ext(4, 2, r(Rax), Extend::None, 2, b(Rax, 0, Bits64)))), // movzx ax, word [rax]
        (&[0x48, 0x0f, 0xbe, 0x00], Long64, Ok(read_ext(4, 1, r(Rax), Sign, 8, b(Rax, 0, Bits64)))), // movsx rax, byte [rax]
        (&[0x4c, 0x0f, 0xbf, 0x00], Long64, Ok(read_ext(4, 2, r(R8), Sign, 8, b(Rax, 0, Bits64)))), // movsx r8, word [rax]
        (&[0x48, 0x63, 0x00], Long64, Ok(read_ext(3, 4, r(Rax), Sign, 8, b(Rax, 0, Bits64)))), // movsxd rax, dword [rax]
        (&[0x63, 0x00], Long64, Ok(read_ext(2, 4, r(Rax), Extend::None, 4, b(Rax, 0, Bits64)))), // movsxd eax, dword [rax]
        // ---- ALU on memory ----
        (&[0x01, 0x08], Long64, Ok(rmw(2, 4, Add, reg(Rcx), b(Rax, 0, Bits64)))), // add [rax], ecx
        (&[0xf0, 0x01, 0x08], Long64, Ok(locked(rmw(3, 4, Add, reg(Rcx), b(Rax, 0, Bits64))))), // lock add [rax], ecx
        (&[0x08, 0x20], Long64, Ok(rmw(2, 1, Or, Operand::Register(hi(Rax)), b(Rax, 0, Bits64)))), // or [rax], ah
        (&[0x11, 0x08], Long64, Ok(rmw(2, 4, Adc, reg(Rcx), b(Rax, 0, Bits64)))), // adc [rax], ecx
        (&[0x48, 0x19, 0x08], Long64, Ok(rmw(3, 8, Sbb, reg(Rcx), b(Rax, 0, Bits64)))), // sbb [rax], rcx
        (&[0x21, 0x08], Long64, Ok(rmw(2, 4, And, reg(Rcx), b(Rax, 0, Bits64)))), // and [rax], ecx
        (&[0x29, 0x08], Long64, Ok(rmw(2, 4, Sub, reg(Rcx), b(Rax, 0, Bits64)))), // sub [rax], ecx
        (&[0x31, 0x08], Long64, Ok(rmw(2, 4, Xor, reg(Rcx), b(Rax, 0, Bits64)))), // xor [rax], ecx
        (&[0x39, 0x08], Long64, Ok(rmw(2, 4, Cmp, reg(Rcx), b(Rax, 0, Bits64)))), // cmp [rax], ecx
        // add ecx, [rax]; cmp cl, [rax]; xor r9, [rax]
        (&[0x03, 0x08], Long64, Ok(ins(2, 4, Access::AluRead { op: Add, dest: r(Rcx) }, b(Rax, 0, Bits64)))),
        (&[0x3a, 0x08], Long64, Ok(ins(2, 1, Access::AluRead { op: Cmp, dest: r(Rcx) }, b(Rax, 0, Bits64)))),
        (&[0x4c, 0x33, 0x08], Long64, Ok(ins(3, 8, Access::AluRead { op: Xor, dest: r(R9) }, b(Rax, 0, Bits64)))),
        (&[0x0b, 0x08], Long64, Ok(ins(2, 4, Access::AluRead { op: Or, dest: r(Rcx) }, b(Rax, 0, Bits64)))), // or ecx, [rax]
        (&[0x83, 0x08, 0x01], Long64, Ok(rmw(3, 4, Or, imm(1), b(Rax, 0, Bits64)))), // or dword [rax], 1
        // and qword [rax], -16 (imm8 sign-extended to 64)
        (&[0x48, 0x83, 0x20, 0xf0], Long64, Ok(rmw(4, 8, And, imm(0xffff_ffff_ffff_fff0), b(Rax, 0, Bits64)))),
        (&[0x66, 0x83, 0x20, 0xf0], Long64, Ok(rmw(4, 2, And, imm(0xfff0), b(Rax, 0, Bits64)))), // and word [rax], -16
        // xor dword [rax], 0x80000000
        (&[0x81, 0x30, 0, 0, 0, 0x80], Long64, Ok(rmw(6, 4, Xor, imm(0x8000_0000), b(Rax, 0, Bits64)))),
        // and qword [rax], 0xffffffff80000000 (imm32 sign-extended)
        (&[0x48, 0x81, 0x20, 0, 0, 0, 0x80], Long64, Ok(rmw(7, 8, And, imm(0xffff_ffff_8000_0000), b(Rax, 0, Bits64)))),
        (&[0x66, 0x81, 0x00, 0x34, 0x12], Long64, Ok(rmw(5, 2, Add, imm(0x1234), b(Rax, 0, Bits64)))), // add word [rax], 0x1234
        (&[0x80, 0x38, 0x05], Long64, Ok(rmw(3, 1, Cmp, imm(5), b(Rax, 0, Bits64)))), // cmp byte [rax], 5
        (&[0x80, 0x10, 0xff], Long64, Ok(rmw(3, 1, Adc, imm(0xff), b(Rax, 0, Bits64)))), // adc byte [rax], -1
        (&[0x80, 0x18, 0x01], Long64, Ok(rmw(3, 1, Sbb, imm(1), b(Rax, 0, Bits64)))), // sbb byte [rax], 1
        (&[0x83, 0x28, 0x01], Long64, Ok(rmw(3, 4, Sub, imm(1), b(Rax, 0, Bits64)))), // sub dword [rax], 1
        // lock or dword [rax+0x300], 0x4000
        (
            &[0xf0, 0x81, 0x88, 0, 3, 0, 0, 0, 0x40, 0, 0],
            Long64,
            Ok(locked(rmw(11, 4, Or, imm(0x4000), b(Rax, 0x300, Bits64)))),
        ),
        // ---- TEST ----
        (&[0x85, 0x08], Long64, Ok(rmw(2, 4, Test, reg(Rcx), b(Rax, 0, Bits64)))), // test [rax], ecx
        (&[0x84, 0x38], Long64, Ok(rmw(2, 1, Test, Operand::Register(hi(Rbx)), b(Rax, 0, Bits64)))), // test [rax], bh
        (&[0xf6, 0x00, 0x01], Long64, Ok(rmw(3, 1, Test, imm(1), b(Rax, 0, Bits64)))), // test byte [rax], 1
        (&[0xf6, 0x08, 0x80], Long64, Ok(rmw(3, 1, Test, imm(0x80), b(Rax, 0, Bits64)))), // test byte [rax], 0x80 (/1 alias)
        (&[0xf7, 0x00, 0, 0, 0, 0x80], Long64, Ok(rmw(6, 4, Test, imm(0x8000_0000), b(Rax, 0, Bits64)))), // test dword [rax], 0x80000000
        // test qword [rax], -2
        (
            &[0x48, 0xf7, 0x00, 0xfe, 0xff, 0xff, 0xff],
            Long64,
            Ok(rmw(7, 8, Test, imm(0xffff_ffff_ffff_fffe), b(Rax, 0, Bits64))),
        ),
        (&[0x66, 0xf7, 0x00, 0xff, 0x00], Long64, Ok(rmw(5, 2, Test, imm(0xff), b(Rax, 0, Bits64)))), // test word [rax], 0xff
        // ---- XCHG ----
        (&[0x87, 0x08], Long64, Ok(ins(2, 4, Access::Xchg { reg: r(Rcx) }, b(Rax, 0, Bits64)))), // xchg [rax], ecx
        (&[0x86, 0x20], Long64, Ok(ins(2, 1, Access::Xchg { reg: hi(Rax) }, b(Rax, 0, Bits64)))), // xchg [rax], ah
        (&[0xf0, 0x48, 0x87, 0x08], Long64, Ok(locked(ins(4, 8, Access::Xchg { reg: r(Rcx) }, b(Rax, 0, Bits64))))), // lock xchg [rax], rcx
        // ---- string instructions ----
        (&[0xaa], Long64, Ok(ins(1, 1, Access::Stos, di(Bits64)))), // stosb
        (&[0xf3, 0x48, 0xab], Long64, Ok(rep(ins(3, 8, Access::Stos, di(Bits64)), RepPrefix::Rep))), // rep stosq
        (&[0xf3, 0xab], Long64, Ok(rep(ins(2, 4, Access::Stos, di(Bits64)), RepPrefix::Rep))), // rep stosd
        (&[0x66, 0xab], Long64, Ok(ins(2, 2, Access::Stos, di(Bits64)))), // stosw
        (&[0x67, 0xaa], Long64, Ok(ins(2, 1, Access::Stos, di(Bits32)))), // stos byte [edi]
        (&[0x64, 0xaa], Long64, Ok(ins(2, 1, Access::Stos, di(Bits64)))), // fs: cannot override ES:rDI
        // rep movsb; rep movsd with fs: source
        (&[0xf3, 0xa4], Long64, Ok(rep(ins(2, 1, Access::Movs { es_di: di(Bits64) }, si(Ds, Bits64)), RepPrefix::Rep))),
        (
            &[0x64, 0xf3, 0xa5],
            Long64,
            Ok(rep(ins(3, 4, Access::Movs { es_di: di(Bits64) }, si(Fs, Bits64)), RepPrefix::Rep)),
        ),
        (&[0x48, 0xa5], Long64, Ok(ins(2, 8, Access::Movs { es_di: di(Bits64) }, si(Ds, Bits64)))), // movsq
        (&[0xac], Long64, Ok(ins(1, 1, Access::Lods, si(Ds, Bits64)))),                             // lodsb
        (&[0x65, 0xad], Long64, Ok(ins(2, 4, Access::Lods, si(Gs, Bits64)))), // lods eax, gs:[rsi]
        // repe cmpsb; repne cmpsd; the last of F2/F3 wins
        (&[0xf3, 0xa6], Long64, Ok(rep(ins(2, 1, Access::Cmps { es_di: di(Bits64) }, si(Ds, Bits64)), RepPrefix::Rep))),
        (
            &[0xf2, 0xa7],
            Long64,
            Ok(rep(ins(2, 4, Access::Cmps { es_di: di(Bits64) }, si(Ds, Bits64)), RepPrefix::Repne)),
        ),
        (
            &[0xf3, 0xf2, 0xa7],
            Long64,
            Ok(rep(ins(3, 4, Access::Cmps { es_di: di(Bits64) }, si(Ds, Bits64)), RepPrefix::Repne)),
        ),
        (&[0xf2, 0xae], Long64, Ok(rep(ins(2, 1, Access::Scas, di(Bits64)), RepPrefix::Repne))), // repne scasb
        (&[0xf2, 0xaa], Long64, Ok(rep(ins(2, 1, Access::Stos, di(Bits64)), RepPrefix::Repne))), // F2 on stos: repeats as REP
        // a REP prefix on a non-string instruction is ignored
        (&[0xf3, 0x89, 0x08], Long64, Ok(write(3, 4, reg(Rcx), b(Rax, 0, Bits64)))),
        // ---- errors in 64-bit mode ----
        (&[0x89, 0xc8], Long64, Err(NoMemoryOperand { opcode: 0x89 })), // mov eax, ecx
        (&[0x0f, 0xb6, 0xc0], Long64, Err(NoMemoryOperand { opcode: 0x0fb6 })), // movzx eax, al
        (&[0x81, 0xc0, 1, 0, 0, 0], Long64, Err(NoMemoryOperand { opcode: 0x81 })), // add eax, 1
        (&[0xf0, 0x89, 0x08], Long64, Err(Invalid { opcode: 0x89 })),   // lock mov
        (&[0xf0, 0x39, 0x08], Long64, Err(Invalid { opcode: 0x39 })),   // lock cmp
        (&[0xf0, 0x03, 0x08], Long64, Err(Invalid { opcode: 0x03 })),   // lock add ecx, [rax]
        (&[0xf0, 0x85, 0x08], Long64, Err(Invalid { opcode: 0x85 })),   // lock test
        (&[0xf0, 0xf6, 0x00, 0x01], Long64, Err(Invalid { opcode: 0xf6 })), // lock test imm
        (&[0xf0, 0xaa], Long64, Err(Invalid { opcode: 0xaa })),         // lock stosb
        (&[0xf0, 0x0f, 0xb6, 0x00], Long64, Err(Invalid { opcode: 0x0fb6 })), // lock movzx
        (&[0xc6, 0x08, 0x00], Long64, Err(Invalid { opcode: 0xc6 })),   // C6 /1
        (&[0xc7, 0x38, 0, 0, 0, 0], Long64, Err(Invalid { opcode: 0xc7 })), // C7 /7 with memory
        (&[0x82, 0x00, 0x01], Long64, Err(Invalid { opcode: 0x82 })),   // 82 is #UD in 64-bit mode
        (&[0xf6, 0x10], Long64, Err(Unsupported { opcode: 0xf6 })),     // not byte [rax]
        (&[0x90], Long64, Err(Unsupported { opcode: 0x90 })),           // nop
        (&[0x0f, 0x0b], Long64, Err(Unsupported { opcode: 0x0f0b })),   // ud2
        (&[0x0f, 0x38, 0xf0, 0x00], Long64, Err(Unsupported { opcode: 0x0f38 })), // movbe
        (&[0xff, 0x00], Long64, Err(Unsupported { opcode: 0xff })),     // inc dword [rax]
        (&[0x8c, 0x00], Long64, Err(Unsupported { opcode: 0x8c })),     // mov [rax], es
        (&[0xc5, 0xf8, 0x77], Long64, Err(Unsupported { opcode: 0xc5 })), // vzeroupper
        (&[0x48], Long64, Err(Truncated)),
        (&[], Long64, Err(Truncated)),
        (&[0x66; 15], Long64, Err(TooLong)),
        (&[0x66; 20], Long64, Err(TooLong)),
        // 14 prefixes, opcode and ModRM: 16 bytes
        (
            &[0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x89, 0x08],
            Long64,
            Err(TooLong),
        ),
        // 13 prefixes, opcode and ModRM: exactly 15 bytes is fine
        (
            &[0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x89, 0x08],
            Long64,
            Ok(write(15, 2, reg(Rcx), b(Rax, 0, Bits64))),
        ),
        // ---- 32-bit protected mode ----
        (&[0x89, 0x08], Protected32, Ok(write(2, 4, reg(Rcx), b(Rax, 0, Bits32)))), // mov [eax], ecx
        (&[0x66, 0x89, 0x08], Protected32, Ok(write(3, 2, reg(Rcx), b(Rax, 0, Bits32)))), // mov [eax], cx
        (&[0x88, 0x20], Protected32, Ok(write(2, 1, Operand::Register(hi(Rax)), b(Rax, 0, Bits32)))), // mov [eax], ah
        (&[0x8b, 0x05, 0, 0x10, 0, 0], Protected32, Ok(read(6, 4, r(Rax), abs(0x1000, Bits32)))), // mov eax, [0x1000]
        (&[0x8b, 0x45, 0xfc], Protected32, Ok(read(3, 4, r(Rax), b(Rbp, -4, Bits32)))), // mov eax, [ebp-4]
        (&[0x2e, 0x8b, 0x00], Protected32, Ok(read(3, 4, r(Rax), seg(b(Rax, 0, Bits32), Cs)))), // mov eax, cs:[eax]
        (&[0x3e, 0x8b, 0x45, 0], Protected32, Ok(read(4, 4, r(Rax), seg(b(Rbp, 0, Bits32), Ds)))), // mov eax, ds:[ebp]
        (&[0x26, 0x36, 0x8b, 0x00], Protected32, Ok(read(4, 4, r(Rax), seg(b(Rax, 0, Bits32), Ss)))), // last override wins
        (&[0x67, 0x8b, 0x00], Protected32, Ok(read(3, 4, r(Rax), m(Ds, Some(Rbx), Some(Rsi), 1, 0, Bits16)))), // mov eax, [bx+si]
        (&[0xa1, 0, 0x10, 0, 0], Protected32, Ok(read(5, 4, r(Rax), abs(0x1000, Bits32)))), // mov eax, [0x1000]
        (&[0x67, 0xa3, 0x34, 0x12], Protected32, Ok(write(4, 4, reg(Rax), abs(0x1234, Bits16)))), // mov [0x1234], eax (a16)
        (&[0x82, 0x00, 0x01], Protected32, Ok(rmw(3, 1, AluOp::Add, imm(1), b(Rax, 0, Bits32)))), // add byte [eax], 1 (82 alias)
        (
            &[0xf3, 0xa5],
            Protected32,
            Ok(rep(ins(2, 4, Access::Movs { es_di: di(Bits32) }, si(Ds, Bits32)), RepPrefix::Rep)),
        ), // rep movsd
        (&[0x67, 0xab], Protected32, Ok(ins(2, 4, Access::Stos, di(Bits16)))),                    // stos dword [di]
        (&[0x0f, 0xb7, 0x00], Protected32, Ok(read_ext(3, 2, r(Rax), Zero, 4, b(Rax, 0, Bits32)))), // movzx eax, word [eax]
        (&[0x40], Protected32, Err(Unsupported { opcode: 0x40 })),                                  // inc eax
        (&[0x48, 0x89, 0x08], Protected32, Err(Unsupported { opcode: 0x48 })), // dec eax; mov [eax], ecx
        (&[0x63, 0x00], Protected32, Err(Unsupported { opcode: 0x63 })),       // arpl [eax], ax
        (&[0x26, 0xaa], Protected32, Ok(ins(2, 1, Access::Stos, di(Bits32)))), // es: on stos is meaningless
        (&[0x26, 0xa4], Protected32, Ok(ins(2, 1, Access::Movs { es_di: di(Bits32) }, si(Es, Bits32)))), // movsb es:[edi], es:[esi]
        // ---- 16-bit modes ----
        (&[0x8b, 0x00], Real16, Ok(read(2, 2, r(Rax), m(Ds, Some(Rbx), Some(Rsi), 1, 0, Bits16)))), // mov ax, [bx+si]
        (&[0x8b, 0x01], Real16, Ok(read(2, 2, r(Rax), m(Ds, Some(Rbx), Some(Rdi), 1, 0, Bits16)))), // mov ax, [bx+di]
        (&[0x8b, 0x42, 0x02], Real16, Ok(read(3, 2, r(Rax), m(Ss, Some(Rbp), Some(Rsi), 1, 2, Bits16)))), // mov ax, [bp+si+2]
        (&[0x8b, 0x83, 0xfe, 0xff], Real16, Ok(read(4, 2, r(Rax), m(Ss, Some(Rbp), Some(Rdi), 1, -2, Bits16)))), // mov ax, [bp+di-2]
        (&[0x8b, 0x04], Real16, Ok(read(2, 2, r(Rax), b(Rsi, 0, Bits16)))), // mov ax, [si]
        (&[0x8b, 0x05], Real16, Ok(read(2, 2, r(Rax), b(Rdi, 0, Bits16)))), // mov ax, [di]
        (&[0x8b, 0x06, 0x34, 0x12], Real16, Ok(read(4, 2, r(Rax), abs(0x1234, Bits16)))), // mov ax, [0x1234]
        (&[0x8b, 0x46, 0x02], Real16, Ok(read(3, 2, r(Rax), b(Rbp, 2, Bits16)))), // mov ax, [bp+2]
        (&[0x8b, 0x07], Real16, Ok(read(2, 2, r(Rax), b(Rbx, 0, Bits16)))), // mov ax, [bx]
        (&[0x66, 0x8b, 0x07], Real16, Ok(read(3, 4, r(Rax), b(Rbx, 0, Bits16)))), // mov eax, [bx]
        (&[0x67, 0x8b, 0x00], Real16, Ok(read(3, 2, r(Rax), b(Rax, 0, Bits32)))), // mov ax, [eax]
        (
            &[0x67, 0x66, 0x8b, 0x04, 0x8b],
            Protected16,
            Ok(read(5, 4, r(Rax), m(Ds, Some(Rbx), Some(Rcx), 4, 0, Bits32))),
        ), // mov eax, [ebx+ecx*4]
        (&[0xa1, 0x34, 0x12], Real16, Ok(read(3, 2, r(Rax), abs(0x1234, Bits16)))), // mov ax, [0x1234]
        (&[0x26, 0x89, 0x1d], Real16, Ok(write(3, 2, reg(Rbx), seg(b(Rdi, 0, Bits16), Es)))), // mov es:[di], bx
        (&[0xc7, 0x06, 0x00, 0x10, 0x34, 0x12], Real16, Ok(write(6, 2, imm(0x1234), abs(0x1000, Bits16)))), // mov word [0x1000], 0x1234
        (&[0x66, 0xc7, 0x07, 0x78, 0x56, 0x34, 0x12], Real16, Ok(write(7, 4, imm(0x1234_5678), b(Rbx, 0, Bits16)))), // mov dword [bx], 0x12345678
        (&[0x83, 0x0f, 0xff], Real16, Ok(rmw(3, 2, AluOp::Or, imm(0xffff), b(Rbx, 0, Bits16)))), // or word [bx], -1
        (&[0xf3, 0xa5], Real16, Ok(rep(ins(2, 2, Access::Movs { es_di: di(Bits16) }, si(Ds, Bits16)), RepPrefix::Rep))), // rep movsw
        (&[0xf3, 0x66, 0xab], Protected16, Ok(rep(ins(3, 4, Access::Stos, di(Bits16)), RepPrefix::Rep))), // rep stosd
        (&[0x0f, 0xb6, 0x07], Protected16, Ok(read_ext(3, 1, r(Rax), Zero, 2, b(Rbx, 0, Bits16)))), // movzx ax, byte [bx]
        (&[0x66, 0x0f, 0xbf, 0x07], Real16, Ok(read_ext(4, 2, r(Rax), Sign, 4, b(Rbx, 0, Bits16)))), // movsx eax, word [bx]
        (&[0x8b, 0xc1], Real16, Err(NoMemoryOperand { opcode: 0x8b })),                              // mov ax, cx
    ]
}

#[test]
fn table_of_encodings() {
    for (bytes, mode, expected) in table() {
        assert_eq!(decode(bytes, mode), expected, "{bytes:02x?} in {mode:?}");
        if let Ok(instruction) = expected {
            // Trailing bytes are not part of the instruction.
            let mut longer = bytes.to_vec();
            longer.extend_from_slice(&[0x90; 16]);
            assert_eq!(decode(&longer, mode), expected, "{bytes:02x?} + nops in {mode:?}");
            assert_eq!(usize::from(instruction.len), bytes.len(), "{bytes:02x?}");
        }
    }
}

#[test]
fn truncation_at_every_byte_boundary() {
    for (bytes, mode, expected) in table() {
        if expected.is_ok() {
            for cut in 0..bytes.len() {
                assert_eq!(decode(&bytes[..cut], mode), Err(DecodeError::Truncated), "{bytes:02x?} cut at {cut}");
            }
        }
    }
}

#[test]
fn real16_and_protected16_decode_alike() {
    for (bytes, mode, _) in table() {
        if mode == Real16 || mode == Protected16 {
            assert_eq!(decode(bytes, Real16), decode(bytes, Protected16), "{bytes:02x?}");
        }
    }
}

#[test]
fn mode_from_state() {
    let state = |cr0_pe, rflags_vm, efer_lma, cs_l, cs_d| ModeState { cr0_pe, rflags_vm, efer_lma, cs_l, cs_d };
    assert_eq!(CpuMode::from_state(state(false, false, false, false, false)), Real16);
    assert_eq!(CpuMode::from_state(state(false, false, false, false, true)), Real16);
    assert_eq!(CpuMode::from_state(state(true, true, false, false, true)), Real16); // virtual-8086
    assert_eq!(CpuMode::from_state(state(true, false, false, false, false)), Protected16);
    assert_eq!(CpuMode::from_state(state(true, false, false, false, true)), Protected32);
    assert_eq!(CpuMode::from_state(state(true, false, true, true, false)), Long64);
    assert_eq!(CpuMode::from_state(state(true, false, true, false, true)), Protected32); // compatibility mode
    assert_eq!(CpuMode::from_state(state(true, false, true, false, false)), Protected16);
    // CS.L without EFER.LMA is not long mode.
    assert_eq!(CpuMode::from_state(state(true, false, false, true, true)), Protected32);
}

#[test]
fn register_get_and_set() {
    let full = 0x1122_3344_5566_7788;
    assert_eq!(r(Rax).get(full, 1), 0x88);
    assert_eq!(hi(Rax).get(full, 1), 0x77);
    assert_eq!(r(Rax).get(full, 2), 0x7788);
    assert_eq!(r(Rax).get(full, 4), 0x5566_7788);
    assert_eq!(r(Rax).get(full, 8), full);
    assert_eq!(r(Rax).set(full, 0xaabb_ccdd_eeff, 1), 0x1122_3344_5566_77ff);
    assert_eq!(hi(Rax).set(full, 0x1ee, 1), 0x1122_3344_5566_ee88);
    assert_eq!(r(Rax).set(full, 0xaabb_ccdd_eeff, 2), 0x1122_3344_5566_eeff);
    assert_eq!(r(Rax).set(full, 0xaabb_ccdd_eeff, 4), 0xccdd_eeff);
    assert_eq!(r(Rax).set(full, 0xaabb_ccdd_eeff, 8), 0xaabb_ccdd_eeff);
    assert_eq!(size_mask(1), 0xff);
    assert_eq!(size_mask(8), u64::MAX);
    assert_eq!(Gpr::from_number(13), R13);
    assert_eq!(Gpr::from_number(0x1f), R15);
    for n in 0..16 {
        assert_eq!(Gpr::from_number(n).number(), n);
    }
}

#[test]
fn extension() {
    assert_eq!(Extend::Zero.apply(0x1ff, 1, 4), 0xff);
    assert_eq!(Extend::Sign.apply(0x80, 1, 2), 0xff80);
    assert_eq!(Extend::Sign.apply(0x80, 1, 8), 0xffff_ffff_ffff_ff80);
    assert_eq!(Extend::Sign.apply(0x7fff, 2, 4), 0x7fff);
    assert_eq!(Extend::Sign.apply(0x8000_0000, 4, 8), 0xffff_ffff_8000_0000);
    assert_eq!(Extend::None.apply(0x1234_5678, 4, 4), 0x1234_5678);
}

#[test]
fn effective_addresses() {
    let regs = |g: Gpr| match g {
        Rax => 0x1000,
        Rcx => 3,
        Rbx => 0xfff0,
        Rsi => 0x20,
        Rbp => 0xffff_fff0,
        R12 => u64::MAX, // -1
        _ => 0,
    };
    // [rax+rcx*4+0x10]
    assert_eq!(m(Ds, Some(Rax), Some(Rcx), 4, 0x10, Bits64).effective_address(regs, 0), 0x101c);
    // [rax+r12*8-8] wraps in 64 bits
    assert_eq!(m(Ds, Some(Rax), Some(R12), 8, -8, Bits64).effective_address(regs, 0), 0xff0);
    // [bx+si+0x20] wraps at 64 KiB
    assert_eq!(m(Ds, Some(Rbx), Some(Rsi), 1, 0x20, Bits16).effective_address(regs, 0), 0x30);
    // [ebp+0x20] wraps at 4 GiB
    assert_eq!(b(Rbp, 0x20, Bits32).effective_address(regs, 0), 0x10);
    // [rip-4] and [eip+0x10]
    assert_eq!(rip(-4, Bits64).effective_address(regs, 0x40_0000), 0x3f_fffc);
    assert_eq!(rip(0x10, Bits32).effective_address(regs, 0x1_ffff_fff8), 0x8);
    // a 64-bit moffs
    assert_eq!(abs(0xffff_8000_0000_1000, Bits64).effective_address(regs, 0), 0xffff_8000_0000_1000);
    // The decoded instruction and the helper together: mov eax, [rip+0x10] at 0x1000.
    let i = decode(&[0x8b, 0x05, 0x10, 0, 0, 0], Long64).unwrap();
    assert_eq!(i.mem.effective_address(regs, 0x1000 + u64::from(i.len)), 0x1016);
}

#[test]
fn access_directions() {
    let i = |bytes: &[u8]| decode(bytes, Long64).unwrap().kind;
    let rw = |k: Access| (k.reads_memory(), k.writes_memory());
    assert_eq!(rw(i(&[0x89, 0x08])), (false, true)); // mov [rax], ecx
    assert_eq!(rw(i(&[0x8b, 0x08])), (true, false)); // mov ecx, [rax]
    assert_eq!(rw(i(&[0x01, 0x08])), (true, true)); // add [rax], ecx
    assert_eq!(rw(i(&[0x39, 0x08])), (true, false)); // cmp [rax], ecx
    assert_eq!(rw(i(&[0x85, 0x08])), (true, false)); // test [rax], ecx
    assert_eq!(rw(i(&[0x03, 0x08])), (true, false)); // add ecx, [rax]
    assert_eq!(rw(i(&[0x87, 0x08])), (true, true)); // xchg [rax], ecx
    assert_eq!(rw(i(&[0xaa])), (false, true)); // stosb
    assert_eq!(rw(i(&[0xac])), (true, false)); // lodsb
    assert_eq!(rw(i(&[0xa4])), (true, false)); // movsb: reads [rsi], writes es_di
    assert_eq!(rw(i(&[0xa6])), (true, false)); // cmpsb
    assert_eq!(rw(i(&[0xae])), (true, false)); // scasb
}

#[test]
fn errors_display() {
    assert_eq!(DecodeError::Unsupported { opcode: 0x0f0b }.to_string(), "unsupported opcode 0x0f0b");
    assert_eq!(DecodeError::Truncated.to_string(), "instruction bytes end too early");
}

/// Xorshift64: deterministic and dependency-free.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

const MODES: [CpuMode; 4] = [Real16, Protected16, Protected32, Long64];

/// Bytes that exercise the interesting paths more often than uniform bytes
/// would: prefixes, REX, and the supported opcodes.
const INTERESTING: [u8; 40] = [
    0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x40, 0x41, 0x44, 0x48, 0x4c, 0x4f, 0x0f, 0xb6,
    0xb7, 0xbe, 0xbf, 0x88, 0x89, 0x8a, 0x8b, 0xc6, 0xc7, 0xa1, 0xa3, 0x80, 0x81, 0x83, 0x87, 0xab, 0xa5, 0xf7, 0x63,
    0x04, 0x05,
];

#[test]
fn random_bytes_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut ok = 0;
    for _ in 0..100_000 {
        let len = (rng.next() % 21) as usize;
        let mut bytes = [0u8; 20];
        for byte in &mut bytes[..len] {
            let r = rng.next();
            *byte = if r & 3 == 0 { INTERESTING[(r >> 8) as usize % INTERESTING.len()] } else { (r >> 16) as u8 };
        }
        let bytes = &bytes[..len];
        for mode in MODES {
            match decode(bytes, mode) {
                Ok(i) => {
                    ok += 1;
                    assert!(usize::from(i.len) <= MAX_INSTRUCTION_LEN && usize::from(i.len) <= len);
                    assert!(matches!(i.size, 1 | 2 | 4 | 8));
                    // The instruction's own bytes decode the same.
                    assert_eq!(decode(&bytes[..usize::from(i.len)], mode), Ok(i));
                    if let Access::Read { dest_size, extend, .. } = i.kind {
                        assert_eq!(extend == Extend::None, dest_size == i.size, "{bytes:02x?}");
                    }
                    if i.mem.index.is_none() {
                        assert_eq!(i.mem.scale, 1);
                    }
                }
                Err(DecodeError::Truncated) => assert!(len < MAX_INSTRUCTION_LEN, "{bytes:02x?}"),
                Err(_) => {}
            }
        }
    }
    // The biased bytes reach the success paths often enough to mean something.
    assert!(ok > 10_000, "only {ok} successful decodes");
}
