//! Exits as fast as the guest can make them, for a fixed time: port reads,
//! writes of an unknown MSR (each #GP, SDM Vol. 2B WRMSR), fast hypercalls, reads of the test device. The
//! VID handles each; what matters is outside: the neighbour partition and
//! the services keep their pace (tests/hostile_guest.rs).

use super::{Ctx, Failures, Outcome, say};
use crate::hw::{self, hv, wrmsr_checked};
use crate::tlfs_suite;
use guest_testkernel::hostile::Tally;
use guest_testkernel::protocol::{TEST_DEVICE, TEST_DEVICE_ID, TEST_DEVICE_ID_VALUE, UNEMULATED_PORT};
use guest_testkernel::tlfs::{Control, call, status};
use guest_testkernel::{Test, detail};

const TEST: Test = Test::HostileFlood;
/// How long it floods.
const FLOOD_MS: u64 = 3000;
/// An upper bound on rounds, should the TSC stand still.
const MAX_ROUNDS: u64 = 1 << 22;

pub fn run(ctx: &Ctx) -> Outcome {
    let (mut f, mut t) = (Failures::new(TEST), Tally::default());
    let hypercalls = ctx.hyperv && tlfs_suite::hypercall_page().is_ok();
    let spin = Control::new(call::NOTIFY_LONG_SPIN_WAIT).fast().0;
    say!(TEST, "start");
    let (start, duration) = (hw::rdtsc(), ctx.tsc_ticks(FLOOD_MS));
    let mut rounds = 0;
    while hw::rdtsc().wrapping_sub(start) < duration && rounds < MAX_ROUNDS {
        rounds += 1;
        let port = hw::inb(UNEMULATED_PORT);
        let msr = wrmsr_checked(0x1234, rounds);
        let id = hw::read32(TEST_DEVICE + TEST_DEVICE_ID);
        let call = if hypercalls { hv::hypercall(spin, rounds, 0).map(|r| r.rax as u16) } else { Ok(0) };
        for _ in 0..4 {
            t.note(false);
        }
        if port != 0xff
            || !matches!(msr, Err(f) if f.is_gp())
            || id != TEST_DEVICE_ID_VALUE
            || call != Ok(status::SUCCESS)
        {
            f.fail(detail!("round {rounds}: port {port:#x}, MSR {msr:?}, device {id:#x}, hypercall {call:?}"));
            break;
        }
    }
    let elapsed = hw::rdtsc().wrapping_sub(start);
    say!(TEST, "done: {} exits in {elapsed} TSC ticks", rounds * if hypercalls { 4 } else { 3 });
    f.finish(&t)
}
