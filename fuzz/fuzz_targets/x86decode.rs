//! `x86decode::decode`, differentially against iced-x86: the first byte
//! picks the mode, the rest (at most 15 bytes, as fetched at a guest RIP)
//! is the instruction. The comparison is the one of the crate's own
//! differential tests (`userland/x86decode/tests/iced_reference`). A
//! decoded memory operand's effective address is then computed from
//! registers taken from the input, which must not overflow.

#![no_main]

use libfuzzer_sys::fuzz_target;
use x86decode::{MAX_INSTRUCTION_LEN, decode};

#[path = "../../userland/x86decode/tests/iced_reference/mod.rs"]
#[allow(dead_code)]
mod iced_reference;

use iced_reference::{MODES, Tally, compare};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mode = MODES[usize::from(mode) % MODES.len()];
    let bytes = &rest[..rest.len().min(MAX_INSTRUCTION_LEN)];
    compare(bytes, mode, &mut Tally::default());
    if let Ok(instruction) = decode(bytes, mode) {
        let regs: Vec<u64> = rest.chunks(8).map(|c| c.iter().fold(0u64, |a, &b| a << 8 | u64::from(b))).collect();
        let gpr = |g: x86decode::Gpr| regs.get(usize::from(g.number())).copied().unwrap_or(!0);
        let _ = instruction.mem.effective_address(gpr, u64::MAX - u64::from(instruction.len));
    }
});
