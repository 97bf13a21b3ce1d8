//! Two recorded hosts' CPUID for host tests and the default configuration:
//! QEMU's `qemu64,+svm,+npt,+xsave,+xsaveopt,+avx` (AMD, the runner's) and
//! a Haswell (Intel, like Bochs' `corei7_haswell_4770`). Subleaves not
//! listed read zeros, as leaves above the maximum do on AMD.

/// "AuthenticAMD" and "GenuineIntel" as leaf 0's EBX, EDX, ECX.
const AMD_VENDOR: [u32; 3] = [0x6874_7541, 0x6974_6e65, 0x444d_4163];
const INTEL_VENDOR: [u32; 3] = [0x756e_6547, 0x4965_6e69, 0x6c65_746e];

/// "QEMU Virtual CPU version 2.5+" and the i7-4770's brand, 48 bytes.
fn brand(text: &[u8], leaf: u32) -> [u32; 4] {
    let mut b = [0u8; 48];
    b[..text.len().min(48)].copy_from_slice(&text[..text.len().min(48)]);
    let at = (leaf - 0x8000_0002) as usize * 16;
    let w = |i: usize| u32::from_le_bytes([b[at + i], b[at + i + 1], b[at + i + 2], b[at + i + 3]]);
    [w(0), w(4), w(8), w(12)]
}

/// QEMU 7.2's `qemu64` with SVM, NPT, XSAVE, XSAVEOPT and AVX.
pub fn amd(leaf: u32, subleaf: u32) -> [u32; 4] {
    let [b, d, c] = AMD_VENDOR;
    match (leaf, subleaf) {
        (0, _) => [0xd, b, c, d],
        (1, _) => [0x0006_0fb1, 0x0000_0800, 1 | 1 << 13 | 1 << 26 | 1 << 28 | 1 << 31, 0x078b_fbff],
        (0xd, 0) => [0x7, 0x240, 0x340, 0],
        (0xd, 1) => [0x1, 0, 0, 0],
        (0xd, 2) => [0x100, 0x240, 0, 0],
        (0x8000_0000, _) => [0x8000_000a, b, c, d],
        (0x8000_0001, _) => {
            [0x0006_0fb1, 0, 1 | 1 << 2 | 1 << 5, 0x078b_fbff & 0x0183_f3ff | 1 << 11 | 1 << 20 | 1 << 29]
        }
        (0x8000_0002..=0x8000_0004, _) => brand(b"QEMU Virtual CPU version 2.5+", leaf),
        (0x8000_0005, _) => [0x01ff_01ff, 0x01ff_01ff, 0x4002_0140, 0x4002_0140],
        (0x8000_0006, _) => [0, 0x4200_4200, 0x0200_8140, 0x0080_8140],
        (0x8000_0008, _) => [0x3028, 0, 0, 0],
        (0x8000_000a, _) => [1, 0x10, 0, 1],
        _ => [0; 4],
    }
}

/// A Core i7-4770 (Haswell): VMX, MONITOR, PMU, x2APIC, XSAVE with AVX,
/// leaf 7 with the speculation-control bits, invariant TSC.
pub fn intel(leaf: u32, subleaf: u32) -> [u32; 4] {
    let [b, d, c] = INTEL_VENDOR;
    match (leaf, subleaf) {
        (0, _) => [0xd, b, c, d],
        (1, _) => [0x0003_06c3, 0x0010_0800, 0x7ffa_fbff, 0xbfeb_fbff],
        (2, _) => [0x7603_6301, 0x00f0_b5ff, 0, 0x00c1_0000],
        (4, 0) => [0x1c00_4121, 0x01c0_003f, 0x3f, 0],
        (4, 1) => [0x1c00_4122, 0x01c0_003f, 0x3f, 0],
        (4, 2) => [0x1c00_4143, 0x01c0_003f, 0x1ff, 0],
        (4, 3) => [0x1c03_c163, 0x02c0_003f, 0x1fff, 6],
        (5, _) => [0x40, 0x40, 3, 0x0004_2120],
        (6, _) => [0x77, 2, 9, 0],
        (7, 0) => [0, 0x0000_27ab, 0, 0x9c00_0400],
        (0xa, _) => [0x0730_0403, 0, 0, 0x603],
        (0xb, 0) => [1, 2, 0x100, 0],
        (0xb, 1) => [4, 8, 0x201, 0],
        (0xd, 0) => [0x7, 0x340, 0x340, 0],
        (0xd, 1) => [0x1, 0, 0, 0],
        (0xd, 2) => [0x100, 0x240, 0, 0],
        (0x8000_0000, _) => [0x8000_0008, 0, 0, 0],
        (0x8000_0001, _) => [0, 0, 0x21, 0x2c10_0800],
        (0x8000_0002..=0x8000_0004, _) => brand(b"Intel(R) Core(TM) i7-4770 CPU @ 3.40GHz", leaf),
        (0x8000_0006, _) => [0, 0, 0x0100_6040, 0],
        (0x8000_0007, _) => [0, 0, 0, 0x100],
        (0x8000_0008, _) => [0x3027, 0, 0, 0],
        _ => [0; 4],
    }
}
