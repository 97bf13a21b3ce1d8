//! GPAs that are not RAM: past its end, the PCI hole below 4 GiB, and far
//! above 4 GiB (to the CPU's physical width and beyond). Reads return all
//! ones and writes vanish, as on a bus nothing answers; executing there
//! raises #UD (the fetch reads all-ones bytes, `FF FF`, an undefined
//! opcode); a GPA beyond the physical width cannot even be named in a page
//! table (#PF, reserved bit). The legacy hole (640 KiB to 1 MiB) is ROM:
//! zeroes below the BIOS area, the firmware tables in it and the test
//! ROM's signature read back, writes are dropped.

use super::{Ctx, Failures, Outcome, PF, UD, say};
use crate::hw::checked;
use crate::hw::{self, state};
use guest_testkernel::hostile::Tally;
use guest_testkernel::protocol::{BIOS_AREA, LEGACY_ROM, TEST_DEVICE, TEST_ROM, TEST_ROM_SIGNATURE, UNMAPPED_HIGH};
use guest_testkernel::{Test, detail};

const TEST: Test = Test::HostileGpa;

/// Reads and writes at a linear address that maps a GPA with nothing
/// behind it: every width reads all ones, before and after a write.
fn probe(f: &mut Failures, t: &mut Tally, linear: u64, gpa: u64, value: u64) {
    let read = |width: u8| -> Result<u64, hw::Fault> {
        let v: u64;
        let fault = match width {
            1 => checked!("movzx eax, byte ptr [rdi]", in("rdi") linear, out("rax") v, options(nostack)),
            2 => checked!("movzx eax, word ptr [rdi]", in("rdi") linear, out("rax") v, options(nostack)),
            4 => checked!("mov eax, dword ptr [rdi]", in("rdi") linear, out("rax") v, options(nostack)),
            _ => checked!("mov rax, qword ptr [rdi]", in("rdi") linear, out("rax") v, options(nostack)),
        };
        fault.map_or(Ok(v), Err)
    };
    for width in [1u8, 2, 4, 8] {
        let ones = if width == 8 { u64::MAX } else { (1u64 << (8 * width)) - 1 };
        let got = read(width);
        t.note(got.is_err());
        f.require(got == Ok(ones), || detail!("read{} of GPA {gpa:#x}: {got:x?}, expected all ones", width * 8));
    }
    let wrote = checked!("mov qword ptr [rdi], rsi", in("rdi") linear, in("rsi") value, options(nostack));
    t.note(wrote.is_some());
    f.require(wrote.is_none(), || detail!("write to GPA {gpa:#x} raised {wrote:?}"));
    let after = read(8);
    f.require(after == Ok(u64::MAX), || detail!("GPA {gpa:#x} reads {after:x?} after a write of {value:#x}"));
}

/// Jumps to `linear` (a GPA with nothing behind it): the fetch must raise
/// #UD there and nothing else happen.
fn execute(f: &mut Failures, t: &mut Tally, linear: u64, gpa: u64) {
    let fault = hw::jump_checked(linear);
    t.note(fault.is_some());
    match fault {
        Some(fault) if fault.vector == UD => {}
        other => f.fail(detail!("executing at GPA {gpa:#x}: {other:?}, expected #UD")),
    }
}

pub fn run(ctx: &Ctx) -> Outcome {
    let (mut f, mut t) = (Failures::new(TEST), Tally::default());
    let mut rng = ctx.rng(TEST);
    // Below 4 GiB, identity-mapped: past RAM, through the PCI hole, the
    // legacy hole, the fixed unmapped page.
    let mut low = heapless::Vec::<u64, 64>::new();
    let _ = low.push(ctx.past_ram);
    let _ = low.push(UNMAPPED_HIGH);
    let _ = low.push(0xfec0_0000 - 0x1000);
    while !low.is_full() {
        let gpa = rng.u64(ctx.past_ram..0xfec0_0000) & !7;
        if !(TEST_DEVICE..TEST_DEVICE + 0x1000).contains(&gpa) {
            let _ = low.push(gpa);
        }
    }
    for &gpa in &low {
        probe(&mut f, &mut t, gpa, gpa, rng.u64(..));
    }

    // Far above: 4 GiB, past 4 GiB by the RAM size, 1 TiB, the top of the
    // physical width the CPUID reports, through a window of their own.
    let reported = hw::cpuid(0x8000_0000, 0).eax >= 0x8000_0008;
    let phys_bits = if reported { hw::cpuid(0x8000_0008, 0).eax & 0xff } else { 36 };
    let top = 1u64 << phys_bits.clamp(32, 52);
    for gpa in [1 << 32, (1 << 32) + ctx.past_ram, 1 << 40, top - 0x1000, top - 8] {
        if gpa < top {
            probe(&mut f, &mut t, state::map_high(gpa), gpa, rng.u64(..));
        }
    }
    // Beyond the width the page-table entry itself is invalid (#PF with
    // the reserved-bit error code, bit 3), if the CPUID says the width.
    if !reported {
        say!(TEST, "CPUID has no leaf 0x80000008: the physical width is taken as 36 bits, past it not probed");
    } else if phys_bits < 52 {
        let linear = state::map_high(top);
        let fault = checked!("mov rax, qword ptr [rdi]", in("rdi") linear, out("rax") _, options(nostack));
        t.note(fault.is_some());
        f.require(fault.is_some_and(|x| x.vector == PF && x.error & 0x8 != 0), || {
            detail!("read at GPA {top:#x} ({phys_bits} bits): {fault:?}, expected #PF")
        });
    }

    // The ROM: reads see it, writes are dropped. The BIOS area holds what
    // the VID put there (the ACPI tables), the rest of the hole zeroes.
    let signature = u64::from_le_bytes(TEST_ROM_SIGNATURE);
    for n in 0..8 {
        let (at, expected) = if n < 4 {
            (TEST_ROM, signature)
        } else {
            let at = rng.u64(LEGACY_ROM.start..LEGACY_ROM.end) & !7;
            (at, if at < BIOS_AREA { 0 } else { hw::read64(at) })
        };
        let value = rng.u64(..);
        let wrote = checked!("mov qword ptr [rdi], rsi", in("rdi") at, in("rsi") value, options(nostack));
        t.note(true);
        f.require(wrote.is_none(), || detail!("write to the ROM at {at:#x} raised {wrote:?}"));
        let back = hw::read64(at);
        f.require(back == expected, || detail!("the ROM at {at:#x} reads {back:#x} after writing {value:#x}"));
    }

    // Execution where nothing is.
    for &gpa in &[ctx.past_ram, UNMAPPED_HIGH, low[low.len() - 1] & !0xfff] {
        execute(&mut f, &mut t, gpa, gpa);
    }
    execute(&mut f, &mut t, state::map_high(1 << 32), 1 << 32);

    // A read that straddles the end of RAM: informational (the bytes in
    // RAM are RAM's, the rest all ones, on hardware).
    let end = ctx.ram[1].end;
    let v = checked!("mov rax, qword ptr [rdi]", in("rdi") end - 4, out("rax") _, options(nostack));
    say!(TEST, "8 bytes read across the end of RAM: {}", if v.is_none() { "no fault" } else { "faulted" });
    f.finish(&t)
}
