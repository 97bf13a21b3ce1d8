//! Fidelity: control registers (SDM Vol. 3A §2.5; Vol. 2B "MOV—Move
//! to/from Control Registers", "CLTS", "LMSW"). The writes a guest for
//! real hardware makes go through and read back as written (clearing
//! CR0.NE included, which VMX itself does not allow), and those the
//! architecture refuses raise #GP(0) and change nothing. The two that
//! would end the test kernel if accepted (clearing CR4.PAE or CR0.PG in
//! 64-bit mode) come last.

use super::{Outcome, checks};
use crate::checks::{Check, ok};
use crate::hw::{self, Fault};
use guest_testkernel::detail;

const CR0_PE: u64 = 1 << 0;
const CR0_TS: u64 = 1 << 3;
const CR0_NE: u64 = 1 << 5;
const CR0_NW: u64 = 1 << 29;
const CR0_CD: u64 = 1 << 30;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_VMXE: u64 = 1 << 13;
const CR4_SMXE: u64 = 1 << 14;
/// CPUID.1:ECX: VMX and SMX.
const CPUID_VMX: u32 = 1 << 5;
const CPUID_SMX: u32 = 1 << 6;

pub fn run() -> Outcome {
    let mut c = checks();
    let (cr0, cr4) = (hw::cr::cr0(), hw::read_cr4());
    c.info("CR0 and CR4 at the start", format_args!("CR0 {cr0:#x}, CR4 {cr4:#x}"));
    c.require("CR0.NE cleared in 64-bit mode is accepted and reads back clear (SDM 2.5)", ne_clear(cr0));
    c.require("CR0.CD set with NW clear, then cleared again (SDM 2.5, 11.5.3)", written(cr0 | CR0_CD, cr0));
    c.require("CLTS clears CR0.TS (SDM Vol. 2A CLTS)", clts(cr0));
    c.require("LMSW loads CR0.TS and does not clear PE (SDM Vol. 2A LMSW)", lmsw(cr0));
    c.require("CR0 bit 32 (reserved) raises #GP(0) (SDM Vol. 2B MOV CR)", refused_cr0(cr0 | 1 << 32, cr0));
    c.require(
        "CR0.NW set with CD clear raises #GP(0) (SDM Vol. 2B MOV CR)",
        refused_cr0((cr0 | CR0_NW) & !CR0_CD, cr0),
    );
    c.require("CR4 reads with VMXE clear (SDM 2.5: VMX is not offered)", fail_if(cr4 & CR4_VMXE != 0, cr4));
    c.require("CR4 bit 15 (reserved) raises #GP(0) (SDM 2.5)", refused_cr4(cr4 | 1 << 15, cr4));
    c.require("CR4 bit 32 (reserved) raises #GP(0) (SDM 2.5)", refused_cr4(cr4 | 1 << 32, cr4));
    let features = hw::cpuid(1, 0).ecx;
    for (bit, feature, name) in [(CR4_VMXE, CPUID_VMX, "VMXE"), (CR4_SMXE, CPUID_SMX, "SMXE")] {
        if features & feature == 0 {
            let what = if bit == CR4_VMXE {
                "CR4.VMXE without CPUID VMX raises #GP(0) (SDM 2.5, Vol. 2B MOV CR)"
            } else {
                "CR4.SMXE without CPUID SMX raises #GP(0) (SDM 2.5, Vol. 2B MOV CR)"
            };
            c.require(what, refused_cr4(cr4 | bit, cr4));
        } else {
            c.info(name, format_args!("CPUID offers it: not written"));
        }
    }
    c.require("CR4.PAE cleared in IA-32e mode raises #GP(0) (SDM Vol. 2B MOV CR)", refused_cr4(cr4 & !CR4_PAE, cr4));
    c.require("CR0.PG cleared in 64-bit mode raises #GP(0) (SDM Vol. 2B MOV CR)", refused_cr0(cr0 & !CR0_PG, cr0));
    c.finish()
}

fn fail_if(bad: bool, value: u64) -> Check {
    if bad { Err(detail!("{value:#x}")) } else { ok() }
}

/// Writes `value` to CR0, checks it reads back, and puts `cr0` back.
fn written(value: u64, cr0: u64) -> Check {
    hw::cr::write_cr0_checked(value).map_err(|f| detail!("writing {value:#x}: {f}"))?;
    let read = hw::cr::cr0();
    hw::cr::write_cr0_checked(cr0).map_err(|f| detail!("writing {cr0:#x} back: {f}"))?;
    if read != value {
        return Err(detail!("wrote {value:#x}, read {read:#x}"));
    }
    let back = hw::cr::cr0();
    if back != cr0 { Err(detail!("wrote {cr0:#x} back, read {back:#x}")) } else { ok() }
}

/// NE set, then cleared (as in 0x80010001 and 0x60000011 style values,
/// which real hardware and KVM take), another bit written while it stays
/// clear, and CR0 put back as it was.
fn ne_clear(cr0: u64) -> Check {
    let (set, clear) = (cr0 | CR0_NE, cr0 & !CR0_NE);
    hw::cr::write_cr0_checked(set).map_err(|f| detail!("writing {set:#x}: {f}"))?;
    written(clear, set).map_err(|why| detail!("NE cleared: {why}"))?;
    hw::cr::write_cr0_checked(clear).map_err(|f| detail!("writing {clear:#x}: {f}"))?;
    written(clear | CR0_TS, clear).map_err(|why| detail!("TS with NE clear: {why}"))?;
    hw::cr::write_cr0_checked(cr0).map_err(|f| detail!("restoring CR0: {f}"))?;
    fail_if(hw::cr::cr0() != cr0, hw::cr::cr0())
}

fn clts(cr0: u64) -> Check {
    hw::cr::write_cr0_checked(cr0 | CR0_TS).map_err(|f| detail!("setting TS: {f}"))?;
    hw::cr::clts_checked().map_err(|f| detail!("{f}"))?;
    let read = hw::cr::cr0();
    hw::cr::write_cr0_checked(cr0).map_err(|f| detail!("restoring CR0: {f}"))?;
    if read != cr0 & !CR0_TS { Err(detail!("CR0 {read:#x} after CLTS")) } else { ok() }
}

fn lmsw(cr0: u64) -> Check {
    let source = ((cr0 & 0xf & !CR0_PE) | CR0_TS) as u16;
    hw::cr::lmsw_checked(source).map_err(|f| detail!("LMSW {source:#x}: {f}"))?;
    let read = hw::cr::cr0();
    hw::cr::write_cr0_checked(cr0).map_err(|f| detail!("restoring CR0: {f}"))?;
    if read != cr0 | CR0_TS { Err(detail!("LMSW {source:#x} left CR0 {read:#x}")) } else { ok() }
}

/// The write raised #GP(0), not something else, and changed nothing.
fn gp_and_unchanged(outcome: Result<(), Fault>, register: &str, now: u64, was: u64) -> Check {
    match outcome {
        Err(f) if f.is_gp() && f.error == 0 => {
            if now == was {
                ok()
            } else {
                Err(detail!("#GP, but {register} changed from {was:#x} to {now:#x}"))
            }
        }
        Err(f) => Err(detail!("{f} instead of #GP(0)")),
        Ok(()) => Err(detail!("accepted: {register} reads {now:#x}")),
    }
}

fn refused_cr0(value: u64, cr0: u64) -> Check {
    let outcome = hw::cr::write_cr0_checked(value);
    let now = hw::cr::cr0();
    if outcome.is_ok() {
        let _ = hw::cr::write_cr0_checked(cr0);
    }
    gp_and_unchanged(outcome, "CR0", now, cr0)
}

fn refused_cr4(value: u64, cr4: u64) -> Check {
    let outcome = hw::write_cr4_checked(value);
    let now = hw::read_cr4();
    if outcome.is_ok() {
        let _ = hw::write_cr4_checked(cr4);
    }
    gp_and_unchanged(outcome, "CR4", now, cr4)
}
