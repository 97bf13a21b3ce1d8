//! The two guests the VID carries itself, as real-mode machine code: the
//! demo partition's greeting and the exit benchmark's loop. Neither is
//! exit handling; `main` loads them.

/// A small real-mode guest for the demo partition, loaded at [`DEMO_LOAD`]:
/// it prints its greeting through the UART, reports status 0 through the
/// test-exit port, and halts.
pub const DEMO_LOAD: u64 = 0x1000;
pub const DEMO_GUEST: &[u8] = &[
    0xbe, 0x13, 0x10, // mov si, 0x1013 (the message)
    0xba, 0xf8, 0x03, // mov dx, 0x3f8
    0xac, // next: lodsb
    0x84, 0xc0, // test al, al
    0x74, 0x03, // jz done
    0xee, // out dx, al
    0xeb, 0xf8, // jmp next
    0xb0, 0x00, // done: mov al, 0
    0xe6, 0xf4, // out 0xf4, al
    0xf4, // hlt
    b'H', b'e', b'l', b'l', b'o', b' ', b'f', b'r', b'o', b'm', b' ', b'a', b' ', b'T', b'e', b's', b's', b'e', b'r',
    b'a', b' ', b'p', b'a', b'r', b't', b'i', b't', b'i', b'o', b'n', b'\n', 0,
];

/// The exit benchmark's guest: [`BENCH_EXITS`] writes to port 0x80 (each a
/// forwarded exit), then a spin of 2^25 iterations (about 64 M
/// instructions, during which host timer interrupts cause exits that ring 0
/// handles alone), then status 0 through the test-exit port.
pub const BENCH_PORT: u16 = 0x80;
pub const BENCH_EXITS: u16 = 1000;
pub const BENCH_GUEST: &[u8] = &[
    0xba,
    0x80,
    0x00, // mov dx, 0x80
    0xb9,
    (BENCH_EXITS & 0xff) as u8,
    (BENCH_EXITS >> 8) as u8, // mov cx, BENCH_EXITS
    0xee,                     // again: out dx, al
    0xe2,
    0xfd, // loop again
    0x66,
    0xb9,
    0x00,
    0x00,
    0x00,
    0x02, // mov ecx, 0x2000000
    0x66,
    0x49, // spin: dec ecx
    0x75,
    0xfc, // jnz spin
    0xb0,
    0x00, // mov al, 0
    0xe6,
    0xf4, // out 0xf4, al
    0xf4, // hlt
];
