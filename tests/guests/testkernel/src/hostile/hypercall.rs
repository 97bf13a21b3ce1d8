//! Random malformed hypercalls and the statuses the TLFS allows for each.
//!
//! A case starts from a well-formed call (a fast HvCallNotifyLongSpinWait,
//! a memory HvCallFlushVirtualAddressSpace, a fast
//! HvCallSendSyntheticClusterIpi, a memory rep HvCallGetVpIndexFromApicId)
//! and applies up to three random [`Mutation`]s. Each mutation names the
//! status the TLFS gives that error (3.12.3, and each call's own list); as
//! the order of checks is undefined (3.12.2), the allowed statuses are the
//! union over the mutations applied, or [`Allowed::Any`] defined status
//! when a mutation makes the outcome depend on what the call reads.

use super::canonical;
use crate::tlfs::{PARTITION_SELF, call, flush, status};
use core::ops::Range;

/// Where the guest's hypercall parameters may point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Two pages of input buffer.
    pub input: u64,
    /// One page of output buffer.
    pub output: u64,
    /// The overlay pages (the hypercall page and the like): never output.
    pub overlays: [u64; 3],
    /// The read-only ROM page.
    pub rom: u64,
    /// Guest RAM (the memory map's available ranges).
    pub ram: [Range<u64>; 2],
    /// GPAs that are not RAM: past its end, a hole, device pages.
    pub not_ram: [u64; 4],
    /// The kernel's own image (readable RAM: input only).
    pub kernel: Range<u64>,
    /// VPs of the partition.
    pub vps: u32,
}

impl Layout {
    fn is_ram(&self, gpa: u64, len: u64) -> bool {
        let end = gpa.saturating_add(len.max(1));
        self.ram.iter().any(|r| r.start <= gpa && end <= r.end)
    }
}

/// Which statuses a case may return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allowed {
    /// Any status of TLFS Appendix B.
    Any,
    /// The statuses whose bits are set (every one is below 64).
    Set(u64),
}

impl Allowed {
    const fn one(status: u16) -> Allowed {
        Allowed::Set(1 << status)
    }

    fn widen(self, other: Allowed) -> Allowed {
        match (self, other) {
            (Allowed::Set(a), Allowed::Set(b)) => Allowed::Set(a | b),
            _ => Allowed::Any,
        }
    }

    pub fn contains(self, status: u16) -> bool {
        match self {
            Allowed::Any => is_defined(status),
            Allowed::Set(bits) => status < 64 && bits & (1 << status) != 0,
        }
    }
}

/// True for a status TLFS Appendix B defines.
pub const fn is_defined(status: u16) -> bool {
    matches!(status, 0x00 | 0x02..=0x0e | 0x11..=0x20 | 0x30 | 0x33 | 0x37 | 0x38 | 0x3c..=0x3f | 0x41)
        || matches!(status, 0x50 | 0x55 | 0x57..=0x60 | 0x71 | 0x72)
}

/// What a case changed of its well-formed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// A call code no TLFS version defines.
    UndefinedCode,
    /// A reserved (RsvdZ) bit of the control value.
    ReservedBit,
    /// A rep count on a simple call, or a start index not below the count.
    Reps,
    /// A variable header size on a call without one.
    VariableHeader,
    /// The fast flag flipped: the parameters are read the other way.
    FastFlipped,
    /// The input GPA not 8-byte aligned.
    InputUnaligned,
    /// The input list running over the end of its page.
    InputCrossesPage,
    /// The input GPA outside guest RAM (past it, a hole, a device, or
    /// anything at all, canonical or not).
    InputNotRam,
    /// The input in readable memory that is not the buffer: the kernel's
    /// image, the ROM, an overlay page.
    InputElsewhere,
    /// The output GPA not aligned, over a page end, or not RAM.
    OutputBad,
    /// The input parameters overwritten with random bytes.
    GarbageInput,
}

/// One hypercall to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    pub control: u64,
    /// RDX and R8: the GPAs, or the fast input.
    pub rdx: u64,
    pub r8: u64,
    /// XMM0-XMM5 (read only by XMM fast calls).
    pub xmm: [u128; 6],
    /// Bytes for the input buffer, at `input_offset` in it.
    pub input: [u8; 64],
    pub input_len: usize,
    pub input_offset: u64,
    pub allowed: Allowed,
    /// The well-formed call it started from.
    pub call: u16,
    pub mutations: heapless::Vec<Mutation, 3>,
    /// Rep count of the control value (0 for simple calls).
    pub rep_count: u16,
}

const FAST: u64 = 1 << 16;

/// The four well-formed calls, and what they need.
#[derive(Clone, Copy)]
struct Base {
    code: u16,
    fast: bool,
    rep: bool,
    /// Bytes of memory input (fixed header, or header + elements).
    input_len: u64,
    /// Bytes of output (0: none).
    output_len: u64,
}

fn base(rng: &mut fastrand::Rng, layout: &Layout, case: &mut Case) -> Base {
    let vps = layout.vps.clamp(1, 64);
    let vp_mask = if vps == 64 { u64::MAX } else { (1u64 << vps) - 1 };
    let some_vps = (rng.u64(..) & vp_mask).max(1);
    match rng.u8(0..4) {
        0 => {
            case.rdx = rng.u64(..);
            case.r8 = 0;
            Base { code: call::NOTIFY_LONG_SPIN_WAIT, fast: true, rep: false, input_len: 0, output_len: 0 }
        }
        1 => {
            let flags = rng.u64(..) & (flush::ALL_PROCESSORS | flush::ALL_VIRTUAL_ADDRESS_SPACES);
            let space = rng.u64(..) & 0x000f_ffff_ffff_f000;
            let block = crate::tlfs::input::flush(space, flags, some_vps);
            case.input[..24].copy_from_slice(&block);
            Base { code: call::FLUSH_VIRTUAL_ADDRESS_SPACE, fast: false, rep: false, input_len: 24, output_len: 0 }
        }
        2 => {
            (case.rdx, case.r8) = crate::tlfs::input::cluster_ipi_fast(rng.u32(0x10..=0xff), some_vps);
            Base { code: call::SEND_SYNTHETIC_CLUSTER_IPI, fast: true, rep: false, input_len: 0, output_len: 0 }
        }
        _ => {
            let count = rng.u16(1..=8);
            case.input[..16].copy_from_slice(&crate::tlfs::input::vp_index_from_apic_id_header(PARTITION_SELF));
            for i in 0..usize::from(count) {
                case.input[16 + 4 * i..20 + 4 * i].copy_from_slice(&rng.u32(0..vps).to_le_bytes());
            }
            case.rep_count = count;
            let input_len = 16 + 4 * u64::from(count);
            Base {
                code: call::GET_VP_INDEX_FROM_APIC_ID,
                fast: false,
                rep: true,
                input_len,
                output_len: 4 * u64::from(count),
            }
        }
    }
}

/// A code outside every range the TLFS assigns.
fn undefined_code(rng: &mut fastrand::Rng) -> u16 {
    match rng.u8(0..3) {
        0 => 0,
        1 => rng.u16(0x0400..0x8000),
        _ => rng.u16(0x8100..=0xffff),
    }
}

/// A GPA that is not guest RAM.
fn not_ram(rng: &mut fastrand::Rng, layout: &Layout) -> u64 {
    loop {
        let gpa = match rng.u8(0..3) {
            0 => layout.not_ram[rng.usize(0..layout.not_ram.len())] + 8 * rng.u64(0..512),
            1 => canonical(rng.u64(..)) & !7,
            _ => rng.u64(..) & !7,
        };
        if !layout.is_ram(gpa, 8) {
            return gpa;
        }
    }
}

/// A random case for `layout`.
pub fn case(rng: &mut fastrand::Rng, layout: &Layout) -> Case {
    let mut case = Case {
        control: 0,
        rdx: 0,
        r8: 0,
        xmm: core::array::from_fn(|_| rng.u128(..)),
        input: [0; 64],
        input_len: 0,
        input_offset: 8 * rng.u64(0..64),
        allowed: Allowed::one(status::SUCCESS),
        call: 0,
        mutations: heapless::Vec::new(),
        rep_count: 0,
    };
    let b = base(rng, layout, &mut case);
    case.call = b.code;
    case.input_len = b.input_len as usize;
    case.control = u64::from(b.code) | if b.fast { FAST } else { 0 } | (u64::from(case.rep_count) << 32);
    let input_gpa = layout.input + case.input_offset;
    let output_gpa = layout.output + 8 * rng.u64(0..64);
    if !b.fast {
        (case.rdx, case.r8) = (input_gpa, if b.output_len != 0 { output_gpa } else { 0 });
    }
    let how_many = [0, 1, 1, 1, 2, 2, 3][rng.usize(0..7)];
    for _ in 0..how_many {
        let m = mutate(rng, layout, &mut case, b);
        let _ = case.mutations.push(m);
    }
    case
}

fn mutate(rng: &mut fastrand::Rng, layout: &Layout, case: &mut Case, b: Base) -> Mutation {
    use Mutation::*;
    let input_invalid = status::INVALID_HYPERCALL_INPUT;
    let alignment = status::INVALID_ALIGNMENT;
    let memory = case.control & FAST == 0;
    let (m, allowed) = match rng.u8(0..11) {
        0 => {
            case.control = (case.control & !0xffff) | u64::from(undefined_code(rng));
            (UndefinedCode, Allowed::one(status::INVALID_HYPERCALL_CODE))
        }
        1 => {
            let bits: [u8; 13] = [27, 28, 29, 30, 31, 44, 45, 46, 47, 60, 61, 62, 63];
            case.control |= 1 << bits[rng.usize(0..bits.len())];
            (ReservedBit, Allowed::one(input_invalid))
        }
        2 => {
            let (count, start) = if b.rep {
                // Zero reps, or a start index not below the count.
                let count = rng.u16(0..0x1000);
                (count, rng.u16(count.min(0xfff)..0x1000))
            } else {
                (rng.u16(1..0x1000), rng.u16(0..0x1000))
            };
            case.control =
                (case.control & !(0xfff << 32) & !(0xfff << 48)) | (u64::from(count) << 32) | (u64::from(start) << 48);
            (Reps, Allowed::one(input_invalid))
        }
        3 => {
            case.control = (case.control & !(0x1ff << 17)) | (u64::from(rng.u16(1..0x200)) << 17);
            (VariableHeader, Allowed::one(input_invalid))
        }
        4 => {
            case.control ^= FAST;
            (FastFlipped, Allowed::Any)
        }
        5 if memory && b.input_len != 0 => {
            case.rdx = (case.rdx & !7) | rng.u64(1..8);
            (InputUnaligned, Allowed::one(alignment))
        }
        6 if memory && b.input_len > 8 => {
            case.rdx = layout.input + 2 * 4096 - 8;
            (InputCrossesPage, Allowed::one(alignment))
        }
        7 if memory && b.input_len != 0 => {
            case.rdx = not_ram(rng, layout);
            (InputNotRam, Allowed::one(alignment))
        }
        8 if memory && b.input_len != 0 => {
            let readable =
                [layout.kernel.start, layout.rom, layout.overlays[0], layout.overlays[1], layout.overlays[2]];
            case.rdx = readable[rng.usize(0..readable.len())] + 8 * rng.u64(0..32);
            (InputElsewhere, Allowed::Any)
        }
        9 if memory => {
            case.r8 = match rng.u8(0..3) {
                0 => layout.output + 8 * rng.u64(0..512) + rng.u64(1..8),
                1 => layout.output + 4096 - 4,
                _ => not_ram(rng, layout),
            };
            // A call without output may ignore its output GPA.
            let extra = if b.output_len == 0 { Allowed::one(status::SUCCESS) } else { Allowed::Set(0) };
            (OutputBad, Allowed::one(alignment).widen(extra))
        }
        _ => {
            for byte in case.input.iter_mut() {
                *byte = rng.u8(..);
            }
            case.rdx ^= if memory { 0 } else { rng.u64(..) };
            case.r8 ^= if memory { 0 } else { rng.u64(..) };
            (GarbageInput, Allowed::Any)
        }
    };
    // The first mutation replaces SUCCESS; later ones widen the set.
    case.allowed = if case.mutations.is_empty() { allowed } else { case.allowed.widen(allowed) };
    m
}

/// Whether the result value (RAX) is one the TLFS allows for `case`: an
/// allowed status, and no more reps completed than asked (all of them on
/// success of a rep call, none for a simple one).
pub fn check(case: &Case, rax: u64) -> Result<(), crate::Detail> {
    let status = rax as u16;
    let reps = ((rax >> 32) & 0xfff) as u16;
    let count = ((case.control >> 32) & 0xfff) as u16;
    if !case.allowed.contains(status) {
        return Err(detail!("{} ({status:#x}) not allowed ({:?})", status::name(status), case.allowed));
    }
    if rax & 0xffff_f000_ffff_0000 != 0 {
        return Err(detail!("reserved bits of the result set: {rax:#x}"));
    }
    let rep_call = case.call == call::GET_VP_INDEX_FROM_APIC_ID && case.control & 0xffff == u64::from(case.call);
    match (status, rep_call) {
        (status::SUCCESS, true) if reps != count => Err(detail!("{reps} of {count} reps completed on success")),
        (_, true) if reps > count => Err(detail!("{reps} reps completed of {count}")),
        (_, false) if reps != 0 && case.mutations.is_empty() => Err(detail!("{reps} reps of a simple call")),
        _ => Ok(()),
    }
}
