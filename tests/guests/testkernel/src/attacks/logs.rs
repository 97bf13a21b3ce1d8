//! Guest actions that each make the VID (or the partition manager) log a
//! line, as fast as the guest can: console lines, writes to the ROM, the
//! crash notification, MSRs nobody knows. The VID must rate-limit what a
//! guest makes it print and say how much it left out; the guest sees no
//! difference (each write dropped, each MSR read 0, the crash taken).
//! Then the attack waits for the console to be its own again.

use super::{Ctx, Failures, Outcome, say};
use crate::hw::{self, rdmsr_checked, wrmsr_checked};
use crate::println;
use guest_testkernel::hostile::Tally;
use guest_testkernel::protocol::{TEST_ROM, TEST_ROM_SIGNATURE};
use guest_testkernel::tlfs::msr;
use guest_testkernel::{Test, detail};

const TEST: Test = Test::HostileLogs;
/// Of each kind (console lines are one character: two exits each).
pub const LINES: u32 = 2000;
/// Unknown MSRs, each reported once by the VID.
const MSRS: u32 = 256;
/// How long the attack waits afterwards: a rate limit lets lines through again.
const QUIET_MS: u64 = 1000;

pub fn run(ctx: &Ctx) -> Outcome {
    let (mut f, mut t) = (Failures::new(TEST), Tally::default());
    let mut rng = ctx.rng(TEST);
    say!(TEST, "start: {LINES} console lines, ROM writes and crash notifications, {MSRS} unknown MSRs");
    for _ in 0..LINES {
        println!("x");
        t.note(false);
    }
    let signature = u64::from_le_bytes(TEST_ROM_SIGNATURE);
    for _ in 0..LINES {
        hw::write64(TEST_ROM, rng.u64(..));
        t.note(false);
    }
    f.require(hw::read64(TEST_ROM) == signature, || detail!("the ROM changed"));
    if ctx.hyperv {
        for n in 0..LINES {
            let _ = wrmsr_checked(msr::CRASH_P0, 0x10c5_0000 + u64::from(n));
            let done = wrmsr_checked(msr::CRASH_CTL, msr::CRASH_NOTIFY);
            t.note(done.is_err());
            if done.is_err() {
                f.fail(detail!("crash notification {n}: {done:?}"));
                break;
            }
        }
    }
    for _ in 0..MSRS {
        // Unknown MSRs in the unarchitected range above the x2APIC's: #GP
        // (SDM Vol. 2B RDMSR), each logged at most once by the VID.
        let number = rng.u32(0x1_0000..0x4000_0000);
        let read = rdmsr_checked(number);
        t.note(read.is_err());
        if !matches!(read, Err(fault) if fault.is_gp()) {
            f.fail(detail!("unknown MSR {number:#x}: {read:x?}, expected #GP"));
            break;
        }
    }
    let (start, quiet, mut spins) = (hw::rdtsc(), ctx.tsc_ticks(QUIET_MS), 0u64);
    while hw::rdtsc().wrapping_sub(start) < quiet && spins < 1 << 31 {
        spins += 1;
        core::hint::spin_loop();
    }
    say!(TEST, "done");
    f.finish(&t)
}
