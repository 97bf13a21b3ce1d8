//! Guests' x87/SSE state. Ring 0 and the tasks are built without SSE, so
//! the FPU registers only ever hold some VP's state: they are switched
//! lazily, with FXSAVE/FXRSTOR, when a different VP is about to run, and
//! synchronised with the VP's save area when a handler reads or writes
//! XMM registers. (FXSAVE covers x87 and SSE; the VID advertises no XSAVE
//! or AVX, so a guest has no wider state.)

use super::memory;
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

/// Physical address of the save area whose state the FPU registers hold
/// (0: none that must be kept).
static OWNER: AtomicU64 = AtomicU64::new(0);

/// Bytes of an FXSAVE area, and where XMM0 starts in it.
pub const AREA: usize = 512;
const XMM0: usize = 160;
/// The FPU control word and MXCSR after FNINIT and reset.
const FCW_INIT: u16 = 0x037f;
const MXCSR_INIT: u32 = 0x1f80;

fn virt(area: u64) -> u64 {
    // A save area is a whole frame from the kernel pool: always in the
    // direct map.
    memory::phys_to_virt(area, AREA as u64).expect("FPU save areas are pool frames")
}

fn save(area: u64) {
    // SAFETY: `area` is a 16-byte aligned, 512-byte frame of this VP's,
    // mapped writable in the direct map; FXSAVE only writes there.
    unsafe { asm!("fxsave64 [{}]", in(reg) virt(area), options(nostack, preserves_flags)) }
}

fn restore(area: u64) {
    // SAFETY: as for `save`; the area holds an image FXSAVE wrote or
    // `init` made (reserved MXCSR bits clear), so FXRSTOR cannot fault.
    unsafe { asm!("fxrstor64 [{}]", in(reg) virt(area), options(nostack, preserves_flags, readonly)) }
}

/// Prepares a fresh save area: the state after FNINIT, MXCSR at reset.
pub fn init(area: u64) {
    memory::zero_phys(area, AREA as u64);
    memory::write_phys(area, &FCW_INIT.to_le_bytes());
    memory::write_phys(area + 24, &MXCSR_INIT.to_le_bytes());
}

/// Loads `area`'s state into the FPU before its VP runs, saving the
/// previous owner's.
pub fn load(area: u64) {
    let owner = OWNER.load(Ordering::Relaxed);
    if owner == area {
        return;
    }
    if owner != 0 {
        save(owner);
    }
    restore(area);
    OWNER.store(area, Ordering::Relaxed);
}

/// Makes `area` hold the VP's current state (before it is read).
fn sync(area: u64) {
    if OWNER.load(Ordering::Relaxed) == area {
        save(area);
    }
}

/// XMM register `n` (0..16) of the VP whose area this is: (low, high).
pub fn xmm(area: u64, n: usize) -> (u64, u64) {
    sync(area);
    let at = area + (XMM0 + 16 * n) as u64;
    (memory::read_phys_u64(at), memory::read_phys_u64(at + 8))
}

/// XMM0..XMM5 (the XMM fast-hypercall registers) with one save.
pub fn xmm_fast(area: u64) -> [[u64; 2]; 6] {
    sync(area);
    core::array::from_fn(|n| {
        let at = area + (XMM0 + 16 * n) as u64;
        [memory::read_phys_u64(at), memory::read_phys_u64(at + 8)]
    })
}

/// Sets XMM register `n`; the VP picks it up when it next runs.
pub fn set_xmm(area: u64, n: usize, low: u64, high: u64) {
    sync(area);
    let at = area + (XMM0 + 16 * n) as u64;
    memory::write_phys(at, &low.to_le_bytes());
    memory::write_phys(at + 8, &high.to_le_bytes());
    // The registers no longer hold the truth: reload from the area.
    let _ = OWNER.compare_exchange(area, 0, Ordering::Relaxed, Ordering::Relaxed);
}

/// The VP goes away: its state no longer needs saving.
pub fn forget(area: u64) {
    let _ = OWNER.compare_exchange(area, 0, Ordering::Relaxed, Ordering::Relaxed);
}
