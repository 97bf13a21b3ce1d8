//! XSETBV, INVD, WBINVD, RDPMC and the debug registers, as the SDM and APM
//! define them for a guest. What must not happen is outside the guest's
//! view: XCR0, DR0-3 and DR7 leaking into the host or the neighbour
//! partition (whose canaries check them), INVD dropping anyone else's
//! dirty lines, RDPMC reading the host's counters.
//!
//! - XSETBV (with CPUID XSAVE and CR4.OSXSAVE): XCR0 bit 0 clear, AVX
//!   without SSE, bits the CPU does not offer, or XCR != 0 are #GP; valid
//!   values read back. Without XSAVE, #UD. The run leaves XCR0 = x87 only,
//!   which the neighbour's canary (x87 | SSE) would show if it leaked.
//! - INVD and WBINVD: no fault; memory the guest wrote before INVD is
//!   still there after it (a hypervisor runs INVD as WBINVD).
//! - RDPMC: a counter value or #GP (reported).
//! - MOV DR: DR0-3 read back; DR6/DR7 bits 63:32 are #GP; DR7.GD makes
//!   the next debug-register access #DB (and clears GD). The run leaves
//!   distinct DR0-3 values behind.

use super::{Ctx, Failures, GP, Outcome, UD, is_vector, say};
use crate::hw::checked;
use crate::hw::{self, state};
use guest_testkernel::hostile::{Tally, canonical};
use guest_testkernel::{Test, detail};

const TEST: Test = Test::HostileInsn;
const DB: u8 = 1;

fn xsetbv(xcr: u32, value: u64) -> Option<hw::Fault> {
    checked!("xsetbv", in("ecx") xcr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack))
}

fn xsave(f: &mut Failures, t: &mut Tally, rng: &mut fastrand::Rng) {
    let leaf1 = hw::cpuid(1, 0);
    if leaf1.ecx & (1 << 26) == 0 {
        let fault = xsetbv(0, 3);
        t.note(fault.is_some());
        f.require(is_vector(fault, UD), || detail!("XSETBV without XSAVE: {fault:?}, expected #UD"));
        say!(TEST, "XSAVE not offered: XSETBV raised {fault:?}");
        return;
    }
    state::cr4_set(state::CR4_OSXSAVE);
    let d = hw::cpuid(0xd, 0);
    let supported = u64::from(d.edx) << 32 | u64::from(d.eax);
    // x87, SSE and AVX have simple rules; the value of other offered
    // components (MPX, AVX-512 pairs) is not predicted.
    let simple = supported & 7;
    for _ in 0..64 {
        let value = match rng.u8(0..4) {
            0 => rng.u64(..) & simple,
            1 => rng.u64(..) & !supported,
            2 => 1 << rng.u32(0..64),
            _ => (rng.u64(..) & simple) | 1,
        };
        let fault = xsetbv(0, value);
        t.note(fault.is_some());
        if value & !simple != 0 && value & !supported == 0 {
            continue;
        }
        let valid = value & 1 != 0 && value & !simple == 0 && !(value & 4 != 0 && value & 2 == 0);
        if valid {
            f.require(fault.is_none() && state::xcr0() == value, || {
                detail!("XCR0 := {value:#x} (offered {supported:#x}): {fault:?}, reads {:#x}", state::xcr0())
            });
        } else {
            f.require(is_vector(fault, GP), || detail!("XCR0 := {value:#x} (offered {supported:#x}): {fault:?}"));
        }
    }
    let fault = xsetbv(1, 1);
    t.note(fault.is_some());
    f.require(is_vector(fault, GP), || detail!("XSETBV of XCR1: {fault:?}, expected #GP"));
    let fault = xsetbv(0, 1);
    f.require(fault.is_none() && state::xcr0() == 1, || detail!("XCR0 := 1 (x87 only): {fault:?}"));
}

fn caches(f: &mut Failures, t: &mut Tally, rng: &mut fastrand::Rng) {
    let mut buffer = [0u64; 64];
    for round in 0..16 {
        let seed = rng.u64(..);
        for (i, word) in buffer.iter_mut().enumerate() {
            // SAFETY: a local array's element; volatile, so the write is made.
            unsafe { core::ptr::write_volatile(word, seed ^ i as u64) };
        }
        let invd = checked!("invd", options(nostack));
        let wbinvd = checked!("wbinvd", options(nostack));
        t.note(invd.is_some());
        t.note(wbinvd.is_some());
        let intact = buffer.iter().enumerate().all(|(i, w)| {
            // SAFETY: reads the local array.
            unsafe { core::ptr::read_volatile(w) == seed ^ i as u64 }
        });
        f.require(invd.is_none() && wbinvd.is_none() && intact, || {
            detail!("round {round}: INVD {invd:?}, WBINVD {wbinvd:?}, memory intact {intact}")
        });
    }
}

fn rdpmc(t: &mut Tally) {
    let (mut values, mut faults) = (0, 0);
    for counter in (0..8u32).chain([0x4000_0000, 0x4000_0001, 0x8000_0000]) {
        let fault = checked!("rdpmc", in("ecx") counter, out("eax") _, out("edx") _, options(nostack));
        t.note(fault.is_some());
        if fault.is_some() { faults += 1 } else { values += 1 }
    }
    say!(TEST, "RDPMC: {values} counters read, {faults} raised a fault");
}

fn debug_registers(f: &mut Failures, t: &mut Tally, rng: &mut fastrand::Rng) {
    for _ in 0..32 {
        let n = rng.u8(0..4);
        let value = canonical(rng.u64(..));
        state::set_dr(n, value);
        t.note(false);
        let back = state::dr(n);
        f.require(back == value, || detail!("DR{n} := {value:#x} reads {back:#x}"));
    }
    // Bits 63:32 of DR6 and DR7 are reserved: #GP. (Breakpoints and GD
    // stay off in the value, should the write go through.)
    for n in [6u8, 7] {
        let value = (rng.u64(..) | 1 << 40) & !0x20ff;
        let fault = if n == 6 {
            checked!("mov dr6, rax", in("rax") value, options(nostack))
        } else {
            checked!("mov dr7, rax", in("rax") value, options(nostack))
        };
        t.note(fault.is_some());
        f.require(is_vector(fault, GP), || detail!("DR{n} := {value:#x} (bits 63:32): {fault:?}, expected #GP"));
    }
    // General detect: the next MOV DR raises #DB, and the CPU clears GD.
    // Reported, not required: with the debug registers the CPU's own (not
    // intercepted) it is the emulator's to honour, and QEMU does not.
    state::set_dr(7, 0x400 | 1 << 13);
    let fault = checked!("mov rax, dr0", out("rax") _, options(nostack));
    t.note(fault.is_some());
    state::set_dr(7, 0x400);
    let dr6 = state::dr(6);
    let taken = is_vector(fault, DB) && dr6 & (1 << 13) != 0;
    say!(TEST, "DR7.GD: MOV from DR0 {}", if taken { "raised #DB (BD)" } else { "ran: GD not honoured" });
    state::set_dr(6, 0xffff_0ff0);
    // Left behind: distinct addresses, breakpoints off.
    for n in 0..4 {
        state::set_dr(n, 0xffff_8000_dead_0000 | u64::from(n) << 12);
    }
    state::set_dr(7, 0x400);
}

pub fn run(ctx: &Ctx) -> Outcome {
    let (mut f, mut t) = (Failures::new(TEST), Tally::default());
    let mut rng = ctx.rng(TEST);
    xsave(&mut f, &mut t, &mut rng);
    caches(&mut f, &mut t, &mut rng);
    rdpmc(&mut t);
    debug_registers(&mut f, &mut t, &mut rng);
    f.finish(&t)
}
