//! Not a test of Tessera: crashes on inputs that start with
//! `tessera-canary`, its seed, so `tessera fuzz --target canary` shows that
//! a crash is caught, its input saved and the run failed.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert!(!data.starts_with(b"tessera-canary"), "the canary input");
});
