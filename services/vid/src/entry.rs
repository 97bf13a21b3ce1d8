//! What every guest loader produces, and the one flat protected-mode entry
//! state the Multiboot ([`crate::loader`]) and Linux ([`crate::linux`])
//! loaders share.
//!
//! A loader plans [`Write`]s into guest RAM and a list of TLFS register
//! values for `VP_SET_REGISTERS`; [`apply`] carries out the writes on the
//! VID's window onto guest RAM and [`set_registers_words`] encodes the
//! registers as the words of one invocation.
//!
//! [`flat_protected_mode`] is the state both boot protocols ask for: 32-bit
//! protected mode with paging off, a flat 4 GiB execute/read code segment
//! and flat read/write data segments whose descriptors are in a GDT the
//! loader places in guest memory (GDTR points at it), interrupts off,
//! IDTR base 0 limit 0, CR3 = CR4 = EFER = 0, and `TR`/`LDTR` holding a busy
//! 32-bit TSS and an empty LDT so the state passes the entry checks of both
//! SVM and VMX. Only the selectors, the GDT and the general-purpose
//! registers differ between the protocols ([`FlatGdt`]).

use core::ops::Range;
use heapless::Vec;
use tlfs::{HvRegisterName, HvX64SegmentAttributes, HvX64SegmentRegister};
use x86defs::{CR0_ET, CR0_PE, RFLAGS_FIXED};

/// A TLFS register value for `VP_SET_REGISTERS`: (name, low 64 bits, high 64 bits).
pub type RegisterValue = (HvRegisterName, u64, u64);

/// Registers one `VP_SET_REGISTERS` takes (the kernel's limit).
pub const MAX_REGISTERS: usize = abi::limits::MAX_VP_REGISTERS;
/// Words of a `VP_SET_REGISTERS` message: the count, then the triples.
pub const SET_REGISTERS_WORDS: usize = 1 + 3 * MAX_REGISTERS;
/// Registers [`flat_protected_mode`] always sets (general-purpose registers
/// come on top, at most `MAX_REGISTERS - FLAT_REGISTERS`).
pub const FLAT_REGISTERS: usize = 16;

/// CR0 at entry: PE, and ET (hard-wired on every CPU with long mode).
pub const CR0_AT_ENTRY: u64 = CR0_PE | CR0_ET;
/// RFLAGS at entry: only the reserved bit 1 (IF and VM clear).
pub const RFLAGS_AT_ENTRY: u64 = RFLAGS_FIXED;

/// A flat 4 GiB, present, DPL 0, 32-bit, page-granular execute/read code
/// descriptor, accessed bit preset (so the CPU never writes the GDT).
pub const FLAT_CODE_DESCRIPTOR: u64 = 0x00CF_9B00_0000_FFFF;
/// The 64-bit (L set, D clear) execute/read code descriptor.
pub const LONG_CODE_DESCRIPTOR: u64 = 0x00AF_9B00_0000_FFFF;

/// Long-mode control bits the 64-bit entry sets.
pub use x86defs::{CR0_PG, CR4_PAE, EFER_LMA, EFER_LME};

/// The mode a VP starts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuMode {
    /// 32-bit protected mode, paging off.
    Protected32,
    /// 64-bit long mode with 4-level paging rooted at `cr3` (PAE, LME and
    /// LMA set; CS a 64-bit code segment).
    Long64 { cr3: u64 },
}
/// The matching read/write data descriptor.
pub const FLAT_DATA_DESCRIPTOR: u64 = 0x00CF_9300_0000_FFFF;

/// One write into guest RAM: `data` at `gpa`, then `zero` zero bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Write<'a> {
    pub gpa: u64,
    pub data: &'a [u8],
    pub zero: u64,
}

impl Write<'_> {
    /// The guest-physical range the write covers.
    pub fn range(&self) -> Range<u64> {
        self.gpa..self.gpa + self.data.len() as u64 + self.zero
    }
}

/// [`apply`]: this write does not fit the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutsideBuffer {
    pub gpa: u64,
    pub len: u64,
}

/// Carries out `writes` on `ram`, whose byte 0 is guest-physical 0.
/// Nothing is written unless every write fits.
pub fn apply(writes: &[Write<'_>], ram: &mut [u8]) -> Result<(), OutsideBuffer> {
    let len = ram.len();
    let span = |w: &Write<'_>| {
        let range = w.range();
        let outside = OutsideBuffer { gpa: w.gpa, len: range.end - range.start };
        match (usize::try_from(range.start), usize::try_from(range.end)) {
            (Ok(start), Ok(end)) if end <= len => Ok(start..end),
            _ => Err(outside),
        }
    };
    for w in writes {
        span(w)?;
    }
    for w in writes {
        let (data, zero) = ram[span(w)?].split_at_mut(w.data.len());
        data.copy_from_slice(w.data);
        zero.fill(0);
    }
    Ok(())
}

/// The words of a `VP_SET_REGISTERS` invocation: the count, then
/// (name, low, high) for each register.
pub fn set_registers_words(registers: &[RegisterValue]) -> Vec<u64, SET_REGISTERS_WORDS> {
    let mut words = Vec::new();
    let _ = words.push(registers.len() as u64);
    for &(name, low, high) in registers {
        let _ = words.extend_from_slice(&[u64::from(name.0), low, high]);
    }
    words
}

/// A GDT with one flat code and one flat data descriptor, and the
/// selectors the boot protocol wants in CS and in the data segment registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlatGdt {
    /// The descriptors, from selector 0; `code` and `data` index into them.
    pub descriptors: &'static [u64],
    pub code: u16,
    pub data: u16,
}

impl FlatGdt {
    /// Bytes the GDT takes in guest memory.
    pub const fn len(&self) -> usize {
        self.descriptors.len() * 8
    }

    /// Never true for a usable GDT; here for clippy's `len` convention.
    pub const fn is_empty(&self) -> bool {
        self.descriptors.is_empty()
    }

    /// Writes the descriptors at the start of `out` (at least [`FlatGdt::len`] bytes).
    pub fn write(&self, out: &mut [u8]) {
        for (chunk, descriptor) in out.chunks_exact_mut(8).zip(self.descriptors) {
            chunk.copy_from_slice(&descriptor.to_le_bytes());
        }
    }
}

/// The TLFS attributes of a present, DPL 0, 32-bit (DB), page-granular (G)
/// code or data segment of `segment_type` (0xB execute/read accessed, 0x3
/// read/write accessed).
pub fn flat_attributes(segment_type: u8) -> HvX64SegmentAttributes {
    HvX64SegmentAttributes::new()
        .with_segment_type(segment_type)
        .with_non_system_segment(true)
        .with_present(true)
        .with_default(true)
        .with_granularity(true)
}

/// A flat segment register value: base 0, limit 4 GiB.
fn flat_segment(selector: u16, attributes: HvX64SegmentAttributes) -> (u64, u64) {
    tlfs::segment_register_value(&HvX64SegmentRegister { base: 0, limit: 0xffff_ffff, selector, attributes })
}

/// The boot processor's state for a 32-bit protected-mode entry at `eip`
/// with `gdt` loaded from `gdt_base`, plus `gprs` (general-purpose
/// registers after the flat state, at most `MAX_REGISTERS - FLAT_REGISTERS`;
/// extra ones are dropped, which the loaders' tests rule out).
pub fn flat_protected_mode(
    eip: u32,
    gdt_base: u64,
    gdt: &FlatGdt,
    gprs: &[(HvRegisterName, u64)],
) -> Vec<RegisterValue, MAX_REGISTERS> {
    flat_entry(CpuMode::Protected32, u64::from(eip), gdt_base, gdt, gprs)
}

/// The flat state of [`flat_protected_mode`] in `mode`: in
/// [`CpuMode::Long64`] CS is a 64-bit code segment (L set, D clear), paging
/// is on with `cr3`, and CR4.PAE, EFER.LME and EFER.LMA are set; data
/// segments, GDTR, IDTR, TR and LDTR are as in protected mode.
pub fn flat_entry(
    mode: CpuMode,
    rip: u64,
    gdt_base: u64,
    gdt: &FlatGdt,
    gprs: &[(HvRegisterName, u64)],
) -> Vec<RegisterValue, MAX_REGISTERS> {
    let (code, cr0, cr3, cr4, efer) = match mode {
        CpuMode::Protected32 => (flat_attributes(0xB), CR0_AT_ENTRY, 0, 0, 0),
        CpuMode::Long64 { cr3 } => (
            flat_attributes(0xB).with_default(false).with_long(true),
            CR0_AT_ENTRY | CR0_PG,
            cr3,
            CR4_PAE,
            EFER_LME | EFER_LMA,
        ),
    };
    let gdtr = tlfs::table_register_value(gdt_base, (gdt.len() - 1) as u16);
    let idtr = tlfs::table_register_value(0, 0);
    let code = flat_segment(gdt.code, code);
    let data = flat_segment(gdt.data, flat_attributes(0x3));
    let mut registers = Vec::new();
    let _ = registers.extend_from_slice(&[
        (HvRegisterName::RIP, rip, 0),
        (HvRegisterName::RFLAGS, RFLAGS_AT_ENTRY, 0),
        (HvRegisterName::CR0, cr0, 0),
        (HvRegisterName::CR3, cr3, 0),
        (HvRegisterName::CR4, cr4, 0),
        (HvRegisterName::EFER, efer, 0),
    ]);
    // TR a busy TSS (32-bit, or 64-bit in long mode), LDTR an LDT.
    let _ = registers.extend_from_slice(&descriptor_tables(gdtr, idtr, code, data, 0xB));
    for &(name, value) in gprs {
        let _ = registers.push((name, value, 0));
    }
    registers
}

/// GDTR, IDTR, the six segment registers (CS `code`, the others `data`),
/// TR (a busy TSS of `tr_type`) and LDTR (an LDT), both at 0 with limit
/// 0xFFFF: every entry state's descriptor-table registers.
fn descriptor_tables(
    gdtr: (u64, u64),
    idtr: (u64, u64),
    code: (u64, u64),
    data: (u64, u64),
    tr_type: u8,
) -> [RegisterValue; 10] {
    let system = |segment_type: u8| {
        let attributes = HvX64SegmentAttributes::new().with_segment_type(segment_type).with_present(true);
        tlfs::segment_register_value(&HvX64SegmentRegister { base: 0, limit: 0xffff, selector: 0, attributes })
    };
    let (tr, ldtr) = (system(tr_type), system(0x2));
    [
        (HvRegisterName::GDTR, gdtr.0, gdtr.1),
        (HvRegisterName::IDTR, idtr.0, idtr.1),
        (HvRegisterName::CS, code.0, code.1),
        (HvRegisterName::DS, data.0, data.1),
        (HvRegisterName::ES, data.0, data.1),
        (HvRegisterName::FS, data.0, data.1),
        (HvRegisterName::GS, data.0, data.1),
        (HvRegisterName::SS, data.0, data.1),
        (HvRegisterName::TR, tr.0, tr.1),
        (HvRegisterName::LDTR, ldtr.0, ldtr.1),
    ]
}

/// CR0 after INIT as the kernel starts every VP: ET. (INIT also sets CD
/// and NW, which change nothing a guest can see here.)
pub const CR0_AT_STARTUP: u64 = 0x10;

/// The state an AP starts in at a STARTUP IPI after INIT (SDM Vol. 3A
/// §9.1.1 and Table 9-1, §11.4.4): real mode at CS = `vector << 8`, IP 0,
/// interrupts, protection and paging off, CR3, CR4 and EFER 0, 64 KiB
/// segments, GDTR and IDTR at 0 with limit 0xFFFF, no interruption
/// pending, EDX the processor `signature` and every other general-purpose
/// register 0. Two `VP_SET_REGISTERS` calls' worth.
pub fn startup_state(vector: u8, signature: u32) -> [Vec<RegisterValue, MAX_REGISTERS>; 2] {
    let real = |selector: u16, base: u64, segment_type: u8| {
        let attributes = HvX64SegmentAttributes::new()
            .with_segment_type(segment_type)
            .with_non_system_segment(true)
            .with_present(true);
        tlfs::segment_register_value(&HvX64SegmentRegister { base, limit: 0xffff, selector, attributes })
    };
    let code = real(u16::from(vector) << 8, u64::from(vector) << 12, 0xB);
    let table = tlfs::table_register_value(0, 0xffff);
    let mut first = Vec::new();
    let _ = first.extend_from_slice(&[
        (HvRegisterName::RIP, 0, 0),
        (HvRegisterName::RFLAGS, RFLAGS_AT_ENTRY, 0),
        (HvRegisterName::CR0, CR0_AT_STARTUP, 0),
        (HvRegisterName::CR3, 0, 0),
        (HvRegisterName::CR4, 0, 0),
        (HvRegisterName::EFER, 0, 0),
        (HvRegisterName::PENDING_INTERRUPTION, 0, 0),
    ]);
    let _ = first.extend_from_slice(&descriptor_tables(table, table, code, real(0, 0, 0x3), 0xB));
    // The general-purpose registers, RAX..R15 in TLFS order: RDX the signature.
    let gpr = |n: u32| {
        let name = HvRegisterName(HvRegisterName::RAX.0 + n);
        (name, if name == HvRegisterName::RDX { u64::from(signature) } else { 0 }, 0)
    };
    let room = (MAX_REGISTERS - first.len()) as u32;
    (0..room).for_each(|n| _ = first.push(gpr(n)));
    let mut second = Vec::new();
    (room..16).for_each(|n| _ = second.push(gpr(n)));
    [first, second]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_started_ap_is_in_real_mode_at_the_vector_with_every_register_set_once() {
        let [first, second] = startup_state(0x9a, 0x611);
        assert_eq!((first.len(), second.len()), (MAX_REGISTERS, 13));
        let all: std::vec::Vec<_> = first.iter().chain(&second).copied().collect();
        let mut names: std::vec::Vec<_> = all.iter().map(|r| r.0.0).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len(), "no register twice");
        let get = |n: HvRegisterName| all.iter().find(|r| r.0 == n).copied().unwrap();
        let cs = tlfs::segment_register_from_value(get(HvRegisterName::CS).1, get(HvRegisterName::CS).2);
        assert_eq!((cs.selector, cs.base, cs.limit), (0x9a00, 0x9_a000, 0xffff));
        assert_eq!(get(HvRegisterName::RIP).1, 0);
        assert_eq!(get(HvRegisterName::CR0).1 & 1, 0, "real mode");
        assert_eq!(get(HvRegisterName::RDX).1, 0x611, "EDX: the processor signature");
        assert_eq!(get(HvRegisterName::R15).1, 0);
        assert_eq!(get(HvRegisterName::PENDING_INTERRUPTION).1, 0, "nothing left to deliver");
    }
}
