//! Extended state (x87, SSE, AVX, AVX-512, PKRU): guests' own, and nobody
//! else's.
//!
//! - Ring 0 and the tasks are built without SSE. CR0.TS is set on every CPU
//!   and cleared only inside this module's save and restore windows (and
//!   while a guest runs, under the guest's own CR0): any x87, MMX, SSE or
//!   AVX instruction of a task raises #NM, which reaches its fault handler
//!   like any fault. So the registers, which hold some VP's state, are
//!   never readable or writable by a task, and tasks share no state.
//! - Each VP has a save area of one frame: a standard-format XSAVE area with
//!   every component the kernel offers guests ([`offered`]), or an FXSAVE
//!   image on a CPU without XSAVE. The registers are switched lazily, when a
//!   different VP is about to run, and synchronised with the area when a
//!   handler reads or writes XMM registers.
//! - XCR0: the host runs with [`XCR0_RESET`]; a VP's own XCR0 (which it sets
//!   with XSETBV, emulated in ring 0) is loaded right before its entry, and
//!   read back and the host's put back right after the exit, when they
//!   differ. Saves and restores run with XCR0 holding every offered
//!   component, so a VP's state survives whatever it has enabled for the
//!   moment.

use super::memory;
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};
use kerncore::xstate::{self, AREA_MAX, XCR0_RESET, xcr0};
use x86::controlregs::{Cr0, Cr4, cr0, cr0_write, cr4, cr4_write};

/// Physical address of the save area whose state the registers hold
/// (0: none that must be kept).
static OWNERS: [AtomicU64; super::smp::MAX_CPUS] = [const { AtomicU64::new(0) }; super::smp::MAX_CPUS];

fn owner() -> &'static AtomicU64 {
    super::percpu::local(&OWNERS)
}

/// How this CPU saves extended state.
struct Layout {
    /// XSAVE with these components (XCR0 while saving and restoring), or
    /// FXSAVE when `None`.
    xsave: Option<u64>,
    /// Bytes of a save area.
    size: usize,
}

static LAYOUT: spin::Once<Layout> = spin::Once::new();

/// CPUID.1:ECX.XSAVE.
const CPUID_1_ECX_XSAVE: u32 = 1 << 26;

fn layout() -> &'static Layout {
    LAYOUT.get().expect("fpu::init_cpu runs at boot")
}

/// The XCR0 components a guest may enable on this CPU (0 without XSAVE:
/// XSETBV then raises #UD, as CR4.OSXSAVE cannot be set).
pub fn offered() -> u64 {
    LAYOUT.get().and_then(|l| l.xsave).unwrap_or(0)
}

/// Sets up this CPU: CR4.OSXSAVE and the host XCR0 where there is XSAVE,
/// the save-area layout, and CR0.TS. Returns the boot log's description.
pub fn init_cpu() -> heapless::String<96> {
    use core::fmt::Write;
    let layout = LAYOUT.call_once(detect);
    if layout.xsave.is_some() {
        // SAFETY: the CPU has XSAVE (CPUID said so); OSXSAVE lets ring 0
        // run XSETBV, XSAVE and XRSTOR, and lets ring 3 read XCR0 with
        // XGETBV, which then holds only the host's reset value.
        unsafe { cr4_write(cr4() | Cr4::CR4_ENABLE_OS_XSAVE) };
        xsetbv(XCR0_RESET);
    }
    // SAFETY: TS only makes x87/SSE/AVX instructions raise #NM; ring 0
    // uses none outside the windows of this module, which clear it.
    unsafe { cr0_write(cr0() | Cr0::CR0_TASK_SWITCHED) };
    let mut text = heapless::String::new();
    let _ = match layout.xsave {
        Some(components) => {
            write!(text, "XSAVE, guest XCR0 up to {components:#x}, {} bytes per VP; tasks get #NM", layout.size)
        }
        None => write!(text, "FXSAVE (no XSAVE), {} bytes per VP; tasks get #NM", layout.size),
    };
    text
}

fn detect() -> Layout {
    let fxsave = Layout { xsave: None, size: xstate::LEGACY_REGION };
    if x86::cpuid::cpuid!(0).eax < 0xd || x86::cpuid::cpuid!(1).ecx & CPUID_1_ECX_XSAVE == 0 {
        return fxsave;
    }
    let leaf = x86::cpuid::cpuid!(0xd, 0);
    let cpu = u64::from(leaf.eax) | u64::from(leaf.edx) << 32;
    let component = |i: u32| {
        let r = x86::cpuid::cpuid!(0xd, i);
        (r.eax, r.ebx)
    };
    match xstate::offer(cpu, component) {
        Some((components, size)) => Layout { xsave: Some(components), size },
        None => fxsave,
    }
}

fn xsetbv(value: u64) {
    // SAFETY: CR4.OSXSAVE is set and `value` is a valid XCR0 for this CPU
    // (the reset value, the offered components, or a guest's XCR0 that
    // `kerncore::xstate::xsetbv` accepted against them); ring 0 uses no
    // state component in between.
    unsafe {
        asm!("xsetbv", in("ecx") 0, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nomem, nostack, preserves_flags))
    }
}

fn virt(area: u64) -> u64 {
    // A save area is a whole frame from the kernel pool: always in the
    // direct map.
    memory::phys_to_virt(area, AREA_MAX as u64).expect("FPU save areas are pool frames")
}

/// Runs `f` with CR0.TS clear and, with XSAVE, XCR0 holding every offered
/// component; puts back the host's XCR0 and sets TS again afterwards.
fn window(f: impl FnOnce(&Layout)) {
    let layout = layout();
    // SAFETY: clearing TS lets the save and restore below run; interrupts
    // are off in ring 0, so nothing else runs before TS is set again.
    unsafe { asm!("clts", options(nomem, nostack, preserves_flags)) };
    if let Some(components) = layout.xsave {
        xsetbv(components);
    }
    f(layout);
    if layout.xsave.is_some() {
        xsetbv(XCR0_RESET);
    }
    // SAFETY: as in `init_cpu`.
    unsafe { cr0_write(cr0() | Cr0::CR0_TASK_SWITCHED) };
}

fn save(layout: &Layout, area: u64) {
    let at = virt(area);
    match layout.xsave {
        // SAFETY: `area` is a 64-byte aligned frame of this VP's, mapped
        // writable in the direct map, `size` bytes of which XSAVE writes
        // (the components XCR0 holds now, inside `window`).
        Some(mask) => unsafe {
            asm!("xsave64 [{}]", in(reg) at, in("eax") mask as u32, in("edx") (mask >> 32) as u32,
                 options(nostack, preserves_flags))
        },
        // SAFETY: as above, 512 bytes.
        None => unsafe { asm!("fxsave64 [{}]", in(reg) at, options(nostack, preserves_flags)) },
    }
}

fn restore(layout: &Layout, area: u64) {
    let at = virt(area);
    match layout.xsave {
        // SAFETY: the area holds an image XSAVE wrote or `init` made: a
        // zero header but for XSTATE_BV bits of offered components, and
        // MXCSR without reserved bits, so XRSTOR cannot fault.
        Some(mask) => unsafe {
            asm!("xrstor64 [{}]", in(reg) at, in("eax") mask as u32, in("edx") (mask >> 32) as u32,
                 options(nostack, preserves_flags, readonly))
        },
        // SAFETY: as above for FXRSTOR.
        None => unsafe { asm!("fxrstor64 [{}]", in(reg) at, options(nostack, preserves_flags, readonly)) },
    }
}

/// Prepares a fresh save area: every component in its initial state (the
/// state after FNINIT, MXCSR at reset; XSTATE_BV clear).
pub fn init(area: u64) {
    memory::zero_phys(area, AREA_MAX as u64);
    memory::write_phys(area + xstate::FCW_OFFSET as u64, &xstate::FCW_INIT.to_le_bytes());
    memory::write_phys(area + xstate::MXCSR_OFFSET as u64, &xstate::MXCSR_INIT.to_le_bytes());
}

/// Loads `area`'s state into the registers before its VP runs (saving the
/// previous owner's), then the VP's XCR0. TS is set again on return, so
/// the host state VMRUN saves has it.
pub fn load(area: u64, guest_xcr0: u64) {
    let previous = owner().load(Ordering::Relaxed);
    if previous != area {
        window(|layout| {
            if previous != 0 {
                save(layout, previous);
            }
            restore(layout, area);
        });
        owner().store(area, Ordering::Relaxed);
    }
    if guest_xcr0 != XCR0_RESET {
        xsetbv(guest_xcr0);
    }
}

/// Puts the host's XCR0 back after a VP's exit; returns the XCR0 the VP
/// ran with. It is read back rather than assumed: a CPU that lets XSETBV
/// through without an exit (QEMU 7.2's SVM ignores the intercept) has
/// changed it under the kernel's feet, and the host must not keep it.
pub fn unload(guest_xcr0: u64) -> u64 {
    if offered() == 0 {
        return guest_xcr0;
    }
    let now = xgetbv();
    if now != XCR0_RESET {
        xsetbv(XCR0_RESET);
    }
    now
}

fn xgetbv() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: CR4.OSXSAVE is set (the CPU has XSAVE); XGETBV of XCR0 only
    // reads it.
    unsafe { asm!("xgetbv", in("ecx") 0, out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags)) }
    u64::from(high) << 32 | u64::from(low)
}

/// Makes `area` hold the VP's current state (before it is read).
fn sync(area: u64) {
    if owner().load(Ordering::Relaxed) == area {
        window(|layout| save(layout, area));
    }
}

fn word(page: &[u8; AREA_MAX], at: usize) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&page[at..at + 8]);
    u64::from_le_bytes(bytes)
}

/// Whether the area's XMM registers are in use: an XSAVE image with
/// XSTATE_BV.SSE clear stands for zeros, whatever its bytes say.
fn xmm_in_use(page: &[u8; AREA_MAX]) -> bool {
    offered() == 0 || word(page, xstate::XSTATE_BV_OFFSET) & xcr0::SSE != 0
}

/// XMM registers `0..N` of the VP whose area this is, (low, high) each.
fn read_xmm<const N: usize>(area: u64) -> [[u64; 2]; N] {
    sync(area);
    memory::with_frame_mut(area, |page| {
        let in_use = xmm_in_use(page);
        core::array::from_fn(|n| {
            let at = xstate::XMM0_OFFSET + 16 * n;
            if in_use { [word(page, at), word(page, at + 8)] } else { [0; 2] }
        })
    })
}

/// XMM register `n` (0..16) of the VP whose area this is: (low, high).
pub fn xmm(area: u64, n: usize) -> (u64, u64) {
    let [low, high] = read_xmm::<16>(area)[n];
    (low, high)
}

/// XMM0..XMM5 (the XMM fast-hypercall registers) with one save.
pub fn xmm_fast(area: u64) -> [[u64; 2]; 6] {
    read_xmm(area)
}

/// Sets XMM register `n`; the VP picks it up when it next runs.
pub fn set_xmm(area: u64, n: usize, low: u64, high: u64) {
    sync(area);
    memory::with_frame_mut(area, |page| {
        let xmm = xstate::XMM0_OFFSET..xstate::XMM0_OFFSET + 16 * 16;
        if !xmm_in_use(page) {
            // From the initial state: the other XMM registers are zeros.
            page[xmm.clone()].fill(0);
            let bv = word(page, xstate::XSTATE_BV_OFFSET) | xcr0::SSE;
            page[xstate::XSTATE_BV_OFFSET..][..8].copy_from_slice(&bv.to_le_bytes());
        }
        let at = xmm.start + 16 * n;
        page[at..at + 8].copy_from_slice(&low.to_le_bytes());
        page[at + 8..at + 16].copy_from_slice(&high.to_le_bytes());
    });
    // The registers no longer hold the truth: reload from the area.
    let _ = owner().compare_exchange(area, 0, Ordering::Relaxed, Ordering::Relaxed);
}

/// The VP goes away: its state no longer needs saving.
pub fn forget(area: u64) {
    let _ = owner().compare_exchange(area, 0, Ordering::Relaxed, Ordering::Relaxed);
}

/// Saves `area`'s state if this CPU's registers hold it, and lets go of
/// it: the VP is about to run, or be read, on another CPU.
pub fn give_up(area: u64) {
    sync(area);
    forget(area);
}
