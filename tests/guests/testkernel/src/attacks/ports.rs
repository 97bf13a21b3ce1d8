//! All 65,536 ports: read a byte from each, words and dwords from a random
//! sample; written with random bytes (all but [`ports::NOT_WRITTEN`]),
//! words and dwords; and string I/O with huge counts, backwards, and into
//! memory that is not RAM. Every port outside
//! [`protocol::EMULATED_PORTS`] reads all ones; string I/O completes with
//! RCX at zero and RSI/RDI moved by the count, as on hardware. No port
//! reaches the machine (the host's PIT, PIC, reset and debug-exit ports
//! are among them). The 8259s and 8254 are set up again afterwards.

use super::{Ctx, Failures, Outcome, say};
use crate::hw;
use guest_testkernel::hostile::{Tally, ports};
use guest_testkernel::protocol::{self, UNMAPPED_HIGH};
use guest_testkernel::{Test, detail};

const TEST: Test = Test::HostilePorts;
/// Words and dwords read, and written, at random ports (every port is read
/// and written a byte at a time; each access is an exit).
const WIDE_READS: u32 = 512;
const WIDE_WRITES: u32 = 256;

pub fn run(ctx: &Ctx) -> Outcome {
    let (mut f, mut t) = (Failures::new(TEST), Tally::default());
    let mut rng = ctx.rng(TEST);
    let mut emulated = 0;
    for port in 0..=0xffffu16 {
        let v = hw::inb(port);
        t.note(false);
        if protocol::touches_emulated(port, 1) {
            emulated += 1;
        } else {
            f.require(v == 0xff, || detail!("in al from port {port:#x}: {v:#x}"));
        }
    }
    for _ in 0..WIDE_READS {
        let port = rng.u16(..);
        let (w, d) = (hw::inw(port), hw::inl(port));
        t.note(false);
        t.note(false);
        if !protocol::touches_emulated(port, 2) {
            f.require(w == 0xffff, || detail!("in ax from port {port:#x}: {w:#x}"));
        }
        if !protocol::touches_emulated(port, 4) {
            f.require(d == u32::MAX, || detail!("in eax from port {port:#x}: {d:#x}"));
        }
    }
    say!(TEST, "read every port ({emulated} emulated)");

    let mut written = 0;
    for port in 0..=0xffffu16 {
        if ports::writable(port, 1) {
            hw::outb(port, rng.u8(..));
            written += 1;
        }
    }
    for _ in 0..WIDE_WRITES {
        let port = rng.u16(..);
        if ports::writable(port, 2) {
            hw::outw(port, rng.u16(..));
            written += 1;
        }
        if ports::writable(port, 4) {
            hw::outl(port, rng.u32(..));
            written += 1;
        }
    }
    for _ in 0..written {
        t.note(false);
    }
    say!(
        TEST,
        "wrote {written} times (not the {} ranges that end the partition or carry its console)",
        ports::NOT_WRITTEN.len()
    );
    // The 8259s and 8254 as the rest of the run expects them: masked.
    hw::start_timer();
    hw::stop_timer();

    // String I/O: a megabyte out of the kernel image in one instruction.
    let count = 1u64 << 20;
    let (rcx, rsi) = hw::rep_outsb_raw(0x80, ctx.kernel.start, count, false);
    t.note(false);
    f.require(rcx == 0 && rsi == ctx.kernel.start + count, || {
        detail!("rep outsb of {count} bytes: rcx {rcx:#x}, rsi advanced {:#x}", rsi.wrapping_sub(ctx.kernel.start))
    });
    // Backwards (DF set).
    let end = ctx.kernel.start + 0xfff;
    let (rcx, rsi) = hw::rep_outsb_raw(0x80, end, 0x1000, true);
    t.note(false);
    f.require(rcx == 0 && rsi == end - 0x1000, || detail!("rep outsb backwards: rcx {rcx:#x}, rsi {rsi:#x}"));
    // Into a buffer from a port nothing emulates.
    let mut buffer = [0u8; 4096];
    let (rcx, rdi) = hw::rep_insb(protocol::UNEMULATED_PORT, &mut buffer);
    t.note(false);
    f.require(rcx == 0 && rdi == buffer.as_ptr() as u64 + 4096 && buffer.iter().all(|&b| b == 0xff), || {
        detail!("rep insb of 4096 bytes: rcx {rcx:#x}")
    });
    // Into memory that is not RAM: the bytes go nowhere.
    let (rcx, rdi) = hw::rep_insb_raw(protocol::UNEMULATED_PORT, UNMAPPED_HIGH, 256);
    t.note(false);
    f.require(rcx == 0 && rdi == UNMAPPED_HIGH + 256, || {
        detail!("rep insb to {UNMAPPED_HIGH:#x}: rcx {rcx:#x}, rdi {rdi:#x}")
    });
    f.finish(&t)
}
