//! INIT and STARTUP storms through the local APIC: to the APs, to APIC IDs
//! that do not exist, by shorthand to all but self, INIT level de-assert,
//! and the delivery modes nobody uses (SMI, reserved, ExtINT), in random
//! order and without waiting. Then every AP must still start properly: an
//! INIT resets a running AP to wait for STARTUP (SDM 10.4.7.3), and the
//! next STARTUP starts it in real mode at the vector's page. The APs run a
//! stub that counts its starts and spins; the last INIT parks them.

use super::{Ctx, Failures, Outcome, quiet_lapic, say};
use crate::ap;
use crate::hw;
use guest_testkernel::hostile::Tally;
use guest_testkernel::smp::{Icr, startup_vector};
use guest_testkernel::{Detail, Test, detail};

const TEST: Test = Test::HostileSipi;
const STORM: u32 = 600;
/// Where the stub counts its starts, in its page.
const COUNTER: u64 = 0x100;
/// Real mode at the page: `cli; mov ax, cs; mov ds, ax; lock inc word
/// [0x100]; jmp $`.
const STUB: [u8; 12] = [0xfa, 0x8c, 0xc8, 0x8e, 0xd8, 0xf0, 0xff, 0x06, 0x00, 0x01, 0xeb, 0xfe];

/// ICR low bits: delivery mode (10:8), level (14), trigger (15), shorthand (19:18).
const LEVEL_ASSERT: u32 = 1 << 14;
const TRIGGER_LEVEL: u32 = 1 << 15;
const ALL_BUT_SELF: u32 = 0b11 << 18;

fn raw(low: u32, destination: u8) -> Icr {
    Icr { low, high: u32::from(destination) << 24 }
}

/// Sends without caring whether it was taken (the storm does not wait).
fn fire(icr: Icr) {
    let _ = ap::send(icr);
}

fn starts(page: u64) -> u16 {
    let mut b = [0u8; 2];
    hw::read_ram(page + COUNTER, &mut b);
    u16::from_le_bytes(b)
}

pub fn run(ctx: &Ctx) -> Outcome {
    let (mut f, mut t) = (Failures::new(TEST), Tally::default());
    if ctx.cpus < 2 {
        say!(TEST, "one CPU: no AP to storm");
        return f.finish(&t);
    }
    let page = ctx.low_page(&[])?;
    let vector = startup_vector(page).ok_or(detail!("no STARTUP vector for {page:#x}"))?;
    hw::write_ram(page, &STUB);
    hw::write_ram(page + COUNTER, &[0, 0]);
    quiet_lapic();
    let mut rng = ctx.rng(TEST);
    let ap = |rng: &mut fastrand::Rng| rng.u32(1..ctx.cpus) as u8;
    for _ in 0..STORM {
        let icr = match rng.u8(0..9) {
            0 | 1 => Icr::init(ap(&mut rng)),
            2 | 3 => Icr::startup(ap(&mut rng), vector),
            4 => Icr::init(rng.u8(ctx.cpus as u8..=254)),
            5 => Icr::startup(rng.u8(ctx.cpus as u8..=254), rng.u8(..)),
            6 => {
                let mode = if rng.bool() { 0b101 } else { 0b110 };
                raw(u32::from(vector) | mode << 8 | LEVEL_ASSERT | ALL_BUT_SELF, 0)
            }
            // INIT level de-assert, to everyone (self included): no effect.
            7 => raw(0b101 << 8 | TRIGGER_LEVEL | 0b10 << 18, 0),
            // SMI, the reserved mode, ExtINT.
            _ => {
                let mode = [0b010, 0b011, 0b111][rng.usize(0..3)];
                raw(u32::from(rng.u8(0x20..)) | mode << 8 | LEVEL_ASSERT, ap(&mut rng))
            }
        };
        fire(icr);
        t.note(false);
    }
    say!(TEST, "{STORM} interrupt commands sent; the stub started {} times", starts(page));

    // Each AP now starts exactly once more on INIT, STARTUP.
    ctx.wait(20, || false);
    let mut restart = |id: u8| -> Result<(), Detail> {
        let before = starts(page);
        ap::send(Icr::init(id))?;
        ctx.wait(10, || false);
        ap::send(Icr::startup(id, vector))?;
        let waited = ctx.wait(1000, || starts(page) != before);
        ctx.wait(20, || false);
        let after = starts(page);
        t.note(after != before.wrapping_add(1));
        if after == before.wrapping_add(1) {
            Ok(())
        } else {
            Err(detail!("AP {id}: {} starts after INIT, STARTUP ({waited} ms), expected 1", after.wrapping_sub(before)))
        }
    };
    for id in 1..ctx.cpus as u8 {
        if let Err(why) = restart(id) {
            f.fail(why);
        }
    }
    // Parked: INIT leaves them waiting for STARTUP, spinning no more.
    for id in 1..ctx.cpus as u8 {
        let _ = ap::send(Icr::init(id));
    }
    ctx.wait(10, || false);
    f.finish(&t)
}
