//! Exception storms: INT n on every vector the kernel's stubs can take
//! from software (all but those where the CPU pushes an error code), then
//! the faults raised for real, each many times: #DE, #DB (single step and
//! a data breakpoint), #BP, #UD, #NM, #SS, #GP, #PF, #MF and #XM. Each
//! must arrive as itself, with its error code; none is the hypervisor's
//! business, and the host must not notice.

use super::{Ctx, Failures, Outcome, say};
use crate::hw::checked;
use crate::hw::{self, Fault, state};
use guest_testkernel::hostile::Tally;
use guest_testkernel::{Test, detail};

const TEST: Test = Test::HostileExceptions;
const ROUNDS: u32 = 100;
const INT_ROUNDS: u32 = 8;

/// Vectors whose stub expects the error code the CPU pushes: INT n does
/// not push one, so they are raised for real only.
const WITH_ERROR_CODE: [u8; 9] = [8, 10, 11, 12, 13, 14, 17, 21, 29];

/// Expands `$m!(0 1 2 ... 255)`.
macro_rules! seq_ints {
    ($m:ident) => {
        $m!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
            32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63
            64 65 66 67 68 69 70 71 72 73 74 75 76 77 78 79 80 81 82 83 84 85 86 87 88 89 90 91 92 93 94 95
            96 97 98 99 100 101 102 103 104 105 106 107 108 109 110 111 112 113 114 115 116 117 118 119 120
            121 122 123 124 125 126 127 128 129 130 131 132 133 134 135 136 137 138 139 140 141 142 143 144
            145 146 147 148 149 150 151 152 153 154 155 156 157 158 159 160 161 162 163 164 165 166 167 168
            169 170 171 172 173 174 175 176 177 178 179 180 181 182 183 184 185 186 187 188 189 190 191 192
            193 194 195 196 197 198 199 200 201 202 203 204 205 206 207 208 209 210 211 212 213 214 215 216
            217 218 219 220 221 222 223 224 225 226 227 228 229 230 231 232 233 234 235 236 237 238 239 240
            241 242 243 244 245 246 247 248 249 250 251 252 253 254 255)
    };
}

fn int(vector: u8) -> Option<Fault> {
    // One `int imm8` per vector: the immediate is part of the instruction.
    macro_rules! ints {
        ($($v:literal)*) => {
            match vector {
                $($v => checked!(concat!("int ", stringify!($v)), options(nostack)),)*
            }
        };
    }
    seq_ints!(ints)
}

/// A variable the data breakpoint watches.
static WATCHED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Raises a fault; the fault taken.
type Raise = fn() -> Option<Fault>;

/// The real faults: (name, vector, error code, raise). A vector of 0xff
/// means reported, not required: #SS for a non-canonical stack reference
/// (QEMU raises #GP), #XM (QEMU raises no SIMD exceptions).
fn faults() -> [(&'static str, u8, Option<u64>, Raise); 12] {
    [
        (
            "#DE",
            0,
            None,
            || checked!("div rcx", in("rcx") 0u64, inout("rax") 1u64 => _, inout("rdx") 0u64 => _, options(nostack)),
        ),
        ("#DB (single step)", 1, None, || checked!("pushfq\n or qword ptr [rsp], 0x100\n popfq\n nop")),
        ("#DB (data breakpoint)", 1, None, || {
            // DR0 on the variable, write, 8 bytes (LEN 10b), enabled locally.
            state::set_dr(0, WATCHED.as_ptr() as u64);
            state::set_dr(7, 0x400 | 1 | 0b01 << 16 | 0b10 << 18);
            let fault = checked!("mov qword ptr [{w}], 1", w = in(reg) WATCHED.as_ptr(), options(nostack));
            state::set_dr(7, 0x400);
            state::set_dr(6, 0xffff_0ff0);
            fault
        }),
        ("#DB (data breakpoint armed before an exit)", 1, None, || {
            // As above, with an exit (CPUID) between arming and the write:
            // the breakpoint must stay armed across the host's world switch.
            state::set_dr(0, WATCHED.as_ptr() as u64);
            state::set_dr(7, 0x400 | 1 | 0b01 << 16 | 0b10 << 18);
            let _ = core::arch::x86_64::__cpuid(0);
            let fault = checked!("mov qword ptr [{w}], 1", w = in(reg) WATCHED.as_ptr(), options(nostack));
            state::set_dr(7, 0x400);
            state::set_dr(6, 0xffff_0ff0);
            fault
        }),
        ("#BP", 3, None, || checked!("int3", options(nostack))),
        ("#UD", 6, None, || checked!("ud2", options(nostack))),
        ("#NM", 7, None, || {
            // CR0.TS: the next x87 instruction (MP set: WAIT too) is #NM.
            // SAFETY: sets TS; cleared right after with CLTS.
            unsafe { core::arch::asm!("mov rax, cr0", "or rax, 8", "mov cr0, rax", out("rax") _, options(nostack)) };
            let fault = checked!("fwait", options(nostack));
            // SAFETY: clears CR0.TS.
            unsafe { core::arch::asm!("clts", options(nostack)) };
            fault
        }),
        (
            "#SS",
            0xff,
            Some(0),
            || checked!("mov rax, qword ptr [rsp + rcx]", in("rcx") 0x8000_0000_0000_0000u64, out("rax") _, options(nostack)),
        ),
        (
            "#GP",
            13,
            Some(0),
            || checked!("mov rax, qword ptr [rdi]", in("rdi") 0x8000_0000_0000_0000u64, out("rax") _, options(nostack)),
        ),
        (
            "#PF",
            14,
            Some(0),
            || checked!("mov rax, qword ptr [rdi]", in("rdi") 0x0000_0100_0000_0000u64, out("rax") _, options(nostack)),
        ),
        ("#MF", 16, None, || {
            // Divide-by-zero unmasked, raised by FDIV, reported at the next
            // x87 instruction (CR0.NE set: #MF, not FERR#). An unmasked
            // exception leaves the stack as it was (no pop): FNINIT empties
            // it each round.
            // SAFETY: sets CR0.NE; the x87 state is reset and its control
            // word restored below.
            unsafe { core::arch::asm!("mov rax, cr0", "or rax, 0x20", "mov cr0, rax", out("rax") _, options(nostack)) };
            let control = state::fpu_control();
            // SAFETY: resets the kernel's own x87 state.
            unsafe { core::arch::asm!("fninit", options(nostack)) };
            state::set_fpu_control(control & !0x4);
            // SAFETY: x87 stack operations on the kernel's own x87 state.
            unsafe { core::arch::asm!("fld1", "fldz", "fdivp st(1), st", options(nostack)) };
            let fault = checked!("fwait", options(nostack));
            // SAFETY: clears the exception and empties the x87 stack.
            unsafe { core::arch::asm!("fninit", options(nostack)) };
            state::set_fpu_control(control);
            fault
        }),
        ("#XM", 0xff, None, || {
            let mxcsr = state::mxcsr();
            state::set_mxcsr(mxcsr & !(1 << 9));
            let (one, zero) = (1.0f32.to_bits(), 0u32);
            // SAFETY: loads XMM0, which the kernel's code never uses.
            unsafe { core::arch::asm!("movss xmm0, dword ptr [{}]", in(reg) &one, options(nostack, readonly)) };
            let fault = checked!("divss xmm0, dword ptr [{b}]", b = in(reg) &zero, options(nostack));
            state::set_mxcsr(mxcsr & !0x3f);
            fault
        }),
    ]
}

/// Arms an instruction breakpoint (DR0, L0, execute) on `address`, a host
/// address the test harness found in the hypervisor's image (`hostbp=`),
/// then makes `ROUNDS` exits, arming it again before each: an emulator that leaves a guest's breakpoints
/// armed after the exit (QEMU before 9.1) would raise #DB in the host at
/// `address` each time, which the host must survive and undo. In the guest
/// the breakpoint never matches (the address is not the guest's).
fn host_breakpoint(address: u64, f: &mut Failures, t: &mut Tally) {
    state::set_dr(0, address);
    let mut exits = 0;
    for _ in 0..ROUNDS {
        // Armed again each round, from disabled (the host may have
        // disarmed it behind an unchanged DR7); CPUID always exits.
        state::set_dr(7, 0x400);
        state::set_dr(7, 0x400 | 1);
        let _ = core::arch::x86_64::__cpuid(0);
        t.note(true);
        exits += 1;
    }
    let dr6 = state::dr(6);
    state::set_dr(7, 0x400);
    state::set_dr(0, 0);
    f.require(dr6 & 0xf == 0, || detail!("host breakpoint: DR6 {dr6:#x} says it matched in the guest"));
    say!(TEST, "host breakpoint at {address:#x}: {exits} exits with it armed, the guest still runs");
}

pub fn run(ctx: &Ctx) -> Outcome {
    let (mut f, mut t) = (Failures::new(TEST), Tally::default());
    if let Some(address) = guest_testkernel::option(ctx.cmdline, "hostbp").and_then(parse_hex) {
        host_breakpoint(address, &mut f, &mut t);
    }
    let mut delivered = 0u32;
    for _ in 0..INT_ROUNDS {
        for vector in 0..=255u8 {
            if WITH_ERROR_CODE.contains(&vector) || vector == 30 {
                continue;
            }
            let got = int(vector);
            t.note(true);
            delivered += u32::from(got.is_some_and(|x| x.vector == vector));
            f.require(got.is_some_and(|x| x.vector == vector), || detail!("INT {vector} arrived as {got:?}"));
        }
    }
    say!(TEST, "INT n: {delivered} software interrupts taken on their own vector");
    for (name, vector, error, raise) in faults() {
        if vector == 0xff {
            let got = raise();
            t.note(got.is_some());
            say!(TEST, "{name}: raised {}", got.map_or(detail!("nothing"), |x| detail!("{x}")));
            continue;
        }
        let mut right = 0;
        for _ in 0..ROUNDS {
            let got = raise();
            t.note(true);
            let ok = got.is_some_and(|x| x.vector == vector && error.is_none_or(|e| x.error == e));
            right += u32::from(ok);
            if !ok {
                f.fail(detail!("{name}: got {got:?}"));
                break;
            }
        }
        say!(TEST, "{name}: {right} of {ROUNDS} delivered as vector {vector}");
    }
    let _ = hw::stray_interrupts();
    f.finish(&t)
}

/// `0x`-prefixed hexadecimal.
fn parse_hex(text: &str) -> Option<u64> {
    u64::from_str_radix(text.strip_prefix("0x")?, 16).ok()
}
