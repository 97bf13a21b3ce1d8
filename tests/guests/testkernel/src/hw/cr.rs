//! CR0 and CR4 writes that may fault, for the fidelity checks of
//! control registers: each returns the #GP (or #UD) it raised, if any.
//! A write that should fault but does not is the caller's to undo.

use super::{Fault, arm, guarded, take_fault};
use core::arch::asm;

pub fn cr0() -> u64 {
    let v: u64;
    // SAFETY: reads CR0.
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// `mov cr0, value`. The callers change only NE, TS, CD and NW, or write
/// values the architecture refuses (reserved bits, PG cleared in 64-bit
/// mode): none changes a mapping the kernel relies on where it is taken.
pub fn write_cr0_checked(value: u64) -> Result<(), Fault> {
    arm(0, 0);
    // SAFETY: see above; the fixup's statics are written as the atomics
    // they are.
    unsafe { guarded!("mov cr0, {value}", value = in(reg) value, options(nostack)) }
    take_fault().map_or(Ok(()), Err)
}

/// `clts`.
pub fn clts_checked() -> Result<(), Fault> {
    arm(0, 0);
    // SAFETY: CLTS clears CR0.TS only.
    unsafe { guarded!("clts", options(nostack)) }
    take_fault().map_or(Ok(()), Err)
}

/// `lmsw ax` (a register operand): loads CR0 bits 3:0, never clears PE.
pub fn lmsw_checked(value: u16) -> Result<(), Fault> {
    arm(0, 0);
    // SAFETY: the callers load MP, EM and TS as they were but for TS.
    unsafe { guarded!("lmsw ax", in("ax") value, options(nostack)) }
    take_fault().map_or(Ok(()), Err)
}
