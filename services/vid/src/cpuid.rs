//! The CPUID the VID presents: a small fixed table, the same on every host.

/// The vendor string of leaf 0 ("TesseraVMM  ", 12 printable bytes).
pub const VENDOR: [u8; 12] = *b"TesseraVMM  ";
/// Leaf 1 EAX: family 6, model 1, stepping 1.
pub const SIGNATURE: u32 = 0x0000_0611;
/// Leaf 1 EDX: what a guest really has on any x86-64 host with the VID's
/// (lack of) emulation: FPU, PSE, TSC, MSR, PAE, CX8, CMOV, MMX, FXSR,
/// SSE, SSE2. No APIC, MTRR, MCE or SEP (not emulated).
pub const LEAF1_EDX: u32 =
    1 | 1 << 3 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 8 | 1 << 15 | 1 << 23 | 1 << 24 | 1 << 25 | 1 << 26;
/// Leaf 1 ECX: SSE3 only; the hypervisor bit (31) stays clear until the
/// TLFS leaves 0x4000_0000.. exist.
pub const LEAF1_ECX: u32 = 1;
/// Leaf 1 EBX: CLFLUSH line size 8 quadwords, one logical processor, APIC ID 0.
pub const LEAF1_EBX: u32 = 8 << 8 | 1 << 16;
/// Leaf 0x8000_0001 EDX: long mode (needed by 64-bit guests that check).
pub const EXT1_EDX: u32 = 1 << 29;

/// EAX, EBX, ECX, EDX for a leaf (EAX) and subleaf (ECX); unknown leaves are zeros.
pub const fn cpuid(leaf: u32, _subleaf: u32) -> [u32; 4] {
    let v = VENDOR;
    match leaf {
        0 => [
            1,
            u32::from_le_bytes([v[0], v[1], v[2], v[3]]),
            u32::from_le_bytes([v[8], v[9], v[10], v[11]]),
            u32::from_le_bytes([v[4], v[5], v[6], v[7]]),
        ],
        1 => [SIGNATURE, LEAF1_EBX, LEAF1_ECX, LEAF1_EDX],
        0x8000_0000 => [0x8000_0001, 0, 0, 0],
        0x8000_0001 => [0, 0, 0, EXT1_EDX],
        _ => [0; 4],
    }
}
