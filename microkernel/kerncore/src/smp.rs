//! Starting the application processors (APs): the pure parts.
//!
//! - [`trampoline_page`] chooses the page below 1 MiB the APs start in
//!   (a STARTUP IPI names a 4 KiB page below 1 MiB by its number).
//! - [`patch`] fills the trampoline's data block (the layout in
//!   [`layout`], shared with the assembly in `arch/smp.rs`) for one AP.
//! - [`ApState`] and [`wait_step`] are the hand-shake between the boot CPU
//!   and an AP, and the boot CPU's timeouts: an AP that does not come up
//!   is reported and skipped, never waited for without end.
//! - [`banner`] is the line that says which CPUs are online.

use bootinfo::{MemoryKind, MemoryRegion};
use core::fmt::Write;

/// CPUs the kernel can run on (the boot CPU included): every per-CPU
/// table is this long; CPUs of the MADT beyond it are reported and left off.
pub const MAX_CPUS: usize = abi::limits::MAX_CPUS;

/// The CPUs (by index) whose bits a CPU mask has, lowest first: every
/// per-CPU mask of the kernel (online CPUs, kicks, CPUs in use) is walked
/// with this, so a machine that uses one CPU pays for one.
pub fn cpus_in(mut mask: u32) -> impl Iterator<Item = usize> + Clone {
    core::iter::from_fn(move || {
        let c = mask.trailing_zeros() as usize;
        (mask != 0).then(|| {
            mask &= mask - 1;
            c
        })
    })
}

const PAGE: u64 = 4096;
/// A STARTUP IPI's vector is the page number of the start address, and the
/// pages from 0xA0000 (the VGA window and the ROMs) are not RAM.
const LOWEST_PAGE: u64 = 0x1000;
const END_OF_LOW_RAM: u64 = 0xa_0000;

/// The trampoline's data block: byte offsets from its first byte. The
/// assembly (`arch/smp.rs`) lays its image out in exactly this order.
pub mod layout {
    /// A `jmp short` over the data block comes first; then the magic.
    pub const MAGIC: usize = 4;
    /// The 64-bit Rust entry point (`extern "sysv64" fn(u64) -> !`).
    pub const ENTRY: usize = 0x08;
    /// The top of the AP's kernel stack.
    pub const STACK_TOP: usize = 0x10;
    /// The entry point's argument (the CPU's index).
    pub const ARGUMENT: usize = 0x18;
    /// The page-table root the AP enables paging with (32 bits: it is
    /// loaded in protected mode).
    pub const CR3: usize = 0x20;
    /// The GDTR's base: the trampoline's own GDT (relocated).
    pub const GDTR_BASE: usize = 0x4a;
    /// The far pointers to the 32-bit and 64-bit code (relocated).
    pub const PROTECTED_MODE_JUMP: usize = 0x50;
    pub const LONG_MODE_JUMP: usize = 0x58;
    /// Where the code begins.
    pub const CODE: usize = 0x60;
    /// The fields that hold an offset in the image and need the page's
    /// address added.
    pub const RELOCATIONS: [usize; 3] = [GDTR_BASE, PROTECTED_MODE_JUMP, LONG_MODE_JUMP];
}

/// The trampoline image's magic ("SMP1").
pub const MAGIC: u32 = u32::from_le_bytes(*b"SMP1");

/// What one AP is started with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApLaunch {
    /// The trampoline page's physical address.
    pub base: u64,
    pub cr3: u64,
    pub stack_top: u64,
    pub entry: u64,
    pub argument: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrampolineError {
    /// The image is larger than a page or shorter than its data block.
    BadSize,
    /// The image does not start with the expected data block.
    BadMagic,
    /// The page is not one a STARTUP IPI can name (aligned, in low RAM).
    BadBase,
    /// The page-table root lies above 4 GiB: 32-bit code cannot load it.
    RootAbove4GiB,
    /// A relocated field does not point inside the image.
    BadRelocation,
    /// The stack top is not 16-byte aligned.
    BadStack,
}

/// True if a STARTUP IPI can start a CPU at `base`.
pub fn is_startable(base: u64) -> bool {
    base.is_multiple_of(PAGE) && (LOWEST_PAGE..END_OF_LOW_RAM).contains(&base)
}

/// The STARTUP IPI's vector for a trampoline at `base` (its page number).
pub fn sipi_vector(base: u64) -> Option<u8> {
    is_startable(base).then_some((base / PAGE) as u8)
}

/// The highest page below 0xA0000 (and not page 0) that lies wholly in
/// usable RAM and in no other region of `map`: the frame pool only takes
/// memory from 1 MiB up, so the page is the trampoline's for good.
pub fn trampoline_page(map: &[MemoryRegion]) -> Option<u64> {
    let overlaps = |r: &MemoryRegion, page: u64| r.start < page + PAGE && page < r.end;
    let mut page = END_OF_LOW_RAM - PAGE;
    while page >= LOWEST_PAGE {
        let usable = map.iter().any(|r| r.kind == MemoryKind::Usable && r.start <= page && page + PAGE <= r.end);
        let other = map.iter().any(|r| r.kind != MemoryKind::Usable && overlaps(r, page));
        if usable && !other {
            return Some(page);
        }
        page -= PAGE;
    }
    None
}

fn read_u32(image: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&image[at..at + 4]);
    u32::from_le_bytes(b)
}

fn write_u32(image: &mut [u8], at: usize, value: u32) {
    image[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn write_u64(image: &mut [u8], at: usize, value: u64) {
    image[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// Fills a fresh copy of the trampoline image (as placed at `launch.base`)
/// for one AP: the entry point, its stack and argument, the page-table
/// root, and the page's address added to the relocated fields. On error
/// the image is left unchanged.
pub fn patch(image: &mut [u8], launch: &ApLaunch) -> Result<(), TrampolineError> {
    if image.len() > PAGE as usize || image.len() < layout::CODE {
        return Err(TrampolineError::BadSize);
    }
    if read_u32(image, layout::MAGIC) != MAGIC {
        return Err(TrampolineError::BadMagic);
    }
    if !is_startable(launch.base) {
        return Err(TrampolineError::BadBase);
    }
    let cr3 = u32::try_from(launch.cr3).map_err(|_| TrampolineError::RootAbove4GiB)?;
    if !launch.stack_top.is_multiple_of(16) {
        return Err(TrampolineError::BadStack);
    }
    let base = launch.base as u32;
    let mut relocated = [0u32; layout::RELOCATIONS.len()];
    for (value, &at) in relocated.iter_mut().zip(layout::RELOCATIONS.iter()) {
        let offset = read_u32(image, at);
        if offset as usize >= image.len() {
            return Err(TrampolineError::BadRelocation);
        }
        *value = base + offset;
    }
    for (value, &at) in relocated.iter().zip(layout::RELOCATIONS.iter()) {
        write_u32(image, at, *value);
    }
    write_u64(image, layout::ENTRY, launch.entry);
    write_u64(image, layout::STACK_TOP, launch.stack_top);
    write_u64(image, layout::ARGUMENT, launch.argument);
    write_u32(image, layout::CR3, cr3);
    Ok(())
}

/// Where an AP is in its start, as the boot CPU and the AP both see it (an
/// atomic byte per CPU in ring 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ApState {
    /// Not started (or left off).
    Off = 0,
    /// The boot CPU sent INIT and STARTUP; the AP has not reached Rust.
    Starting = 1,
    /// The AP claimed its slot in Rust (`Starting` to `Booting`, atomically)
    /// and sets itself up.
    Booting = 2,
    /// The AP is set up and parked.
    Online = 3,
    /// The boot CPU gave up before the AP claimed its slot (`Starting` to
    /// `Abandoned`, atomically): if it still arrives, it parks at once,
    /// touching nothing.
    Abandoned = 4,
}

impl ApState {
    pub const fn code(self) -> u8 {
        self as u8
    }

    pub const fn from_code(code: u8) -> ApState {
        match code {
            1 => ApState::Starting,
            2 => ApState::Booting,
            3 => ApState::Online,
            4 => ApState::Abandoned,
            _ => ApState::Off,
        }
    }
}

/// How long the boot CPU waits for an AP, in any unit (TSC cycles in ring 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartTimeouts {
    /// From the STARTUP IPIs until the AP claims its slot.
    pub to_claim: u64,
    /// From the STARTUP IPIs until the AP is online.
    pub to_online: u64,
}

/// What the boot CPU does next while it waits for an AP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Keep waiting.
    Keep,
    /// The AP is online.
    Online,
    /// The AP never claimed its slot: mark it `Abandoned` (atomically from
    /// `Starting`; if that fails the AP just claimed it: wait on) and send
    /// it INIT, which stops it wherever it is in the trampoline.
    Abandon,
    /// The AP claimed its slot but did not finish in time: it runs kernel
    /// code and may hold a lock, so the boot CPU reports it and starts no
    /// more APs.
    Stuck,
}

/// One step of the boot CPU's wait for an AP in `state`, `elapsed` after
/// its STARTUP IPIs.
pub fn wait_step(state: ApState, elapsed: u64, timeouts: &StartTimeouts) -> Wait {
    match state {
        ApState::Online => Wait::Online,
        ApState::Starting if elapsed >= timeouts.to_claim => Wait::Abandon,
        ApState::Booting if elapsed >= timeouts.to_online.max(timeouts.to_claim) => Wait::Stuck,
        ApState::Starting | ApState::Booting => Wait::Keep,
        // Not started or already given up: nothing to wait for.
        ApState::Off | ApState::Abandoned => Wait::Abandon,
    }
}

/// How one CPU of the MADT ended up, for the banner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuOutcome {
    /// The boot CPU itself.
    Boot,
    Online,
    /// The MADT marks it disabled (not online capable).
    Disabled,
    /// Kept off by the boot option `cpus=`.
    KeptOff,
    /// Past [`MAX_CPUS`].
    OverLimit,
    /// Did not answer in time (or bring-up was given up before it).
    NoAnswer,
}

/// The banner line: `cpus: 4 online of 4 in MADT (APIC IDs 0 (boot), 1, 2, 3)`.
/// CPUs that are not online say why.
pub fn banner(cpus: &[(u32, CpuOutcome)]) -> heapless::String<2048> {
    let online = cpus.iter().filter(|(_, o)| matches!(o, CpuOutcome::Boot | CpuOutcome::Online)).count();
    let mut line = heapless::String::new();
    let _ = write!(line, "cpus: {online} online of {} in MADT (APIC IDs ", cpus.len());
    for (i, (id, outcome)) in cpus.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let note = match outcome {
            CpuOutcome::Boot => " (boot)",
            CpuOutcome::Online => "",
            CpuOutcome::Disabled => " (disabled)",
            CpuOutcome::KeptOff => " (off: cpus=)",
            CpuOutcome::OverLimit => " (off: over the limit)",
            CpuOutcome::NoAnswer => " (no answer)",
        };
        let _ = write!(line, "{sep}{id}{note}");
    }
    let _ = line.push(')');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_mask_is_walked_by_its_bits() {
        assert_eq!(cpus_in(0).count(), 0);
        assert_eq!(cpus_in(0b1010_0001).collect::<std::vec::Vec<_>>(), [0, 5, 7]);
        assert_eq!(cpus_in(1 << 31).collect::<std::vec::Vec<_>>(), [31]);
        assert_eq!(cpus_in(u32::MAX).count(), 32);
    }

    /// An image shaped like the assembly's: the data block with the magic
    /// and the relocated fields holding offsets into the image.
    fn image() -> [u8; 0x100] {
        let mut image = [0u8; 0x100];
        image[0] = 0xeb;
        image[1] = (layout::CODE - 2) as u8;
        write_u32(&mut image, layout::MAGIC, MAGIC);
        write_u32(&mut image, layout::GDTR_BASE, 0x28);
        write_u32(&mut image, layout::PROTECTED_MODE_JUMP, 0x80);
        write_u32(&mut image, layout::LONG_MODE_JUMP, 0xc0);
        image
    }

    fn launch() -> ApLaunch {
        ApLaunch {
            base: 0x9e000,
            cr3: 0x20_1000,
            stack_top: 0xffff_8000_0123_0000,
            entry: 0xffff_ffff_8000_1234,
            argument: 3,
        }
    }

    fn u64_at(image: &[u8], at: usize) -> u64 {
        let mut b = [0; 8];
        b.copy_from_slice(&image[at..at + 8]);
        u64::from_le_bytes(b)
    }

    #[test]
    fn patch_fills_the_fields_and_relocates_by_the_page() {
        let mut img = image();
        patch(&mut img, &launch()).unwrap();
        assert_eq!(u64_at(&img, layout::ENTRY), 0xffff_ffff_8000_1234);
        assert_eq!(u64_at(&img, layout::STACK_TOP), 0xffff_8000_0123_0000);
        assert_eq!(u64_at(&img, layout::ARGUMENT), 3);
        assert_eq!(read_u32(&img, layout::CR3), 0x20_1000);
        assert_eq!(read_u32(&img, layout::GDTR_BASE), 0x9e028);
        assert_eq!(read_u32(&img, layout::PROTECTED_MODE_JUMP), 0x9e080);
        assert_eq!(read_u32(&img, layout::LONG_MODE_JUMP), 0x9e0c0);
        // The code and the magic are untouched.
        assert_eq!(&img[..2], &image()[..2]);
        assert_eq!(read_u32(&img, layout::MAGIC), MAGIC);
        assert_eq!(&img[layout::CODE..], &image()[layout::CODE..]);
    }

    #[test]
    fn patch_refuses_what_cannot_start_and_changes_nothing() {
        let cases: [(ApLaunch, TrampolineError); 5] = [
            (ApLaunch { base: 0x9e800, ..launch() }, TrampolineError::BadBase),
            (ApLaunch { base: 0, ..launch() }, TrampolineError::BadBase),
            (ApLaunch { base: 0xa0000, ..launch() }, TrampolineError::BadBase),
            (ApLaunch { cr3: 0x1_0000_0000, ..launch() }, TrampolineError::RootAbove4GiB),
            (ApLaunch { stack_top: 0xffff_8000_0123_0008, ..launch() }, TrampolineError::BadStack),
        ];
        for (l, want) in cases {
            let mut img = image();
            assert_eq!(patch(&mut img, &l), Err(want), "{l:?}");
            assert_eq!(img, image());
        }
        let mut img = image();
        write_u32(&mut img, layout::MAGIC, 0);
        assert_eq!(patch(&mut img, &launch()), Err(TrampolineError::BadMagic));
        let mut img = image();
        write_u32(&mut img, layout::LONG_MODE_JUMP, 0x100);
        let before = img;
        assert_eq!(patch(&mut img, &launch()), Err(TrampolineError::BadRelocation));
        assert_eq!(img, before, "a bad relocation leaves the earlier ones unapplied too");
        assert_eq!(patch(&mut [0u8; 0x20], &launch()), Err(TrampolineError::BadSize));
        assert_eq!(patch(&mut [0u8; 0x1001], &launch()), Err(TrampolineError::BadSize));
    }

    #[test]
    fn the_page_is_the_highest_wholly_usable_one_below_the_vga_window() {
        let r = MemoryRegion::new;
        // The usual PC map: RAM up to the EBDA at 0x9fc00.
        let map = [r(0, 0x9fc00, MemoryKind::Usable), r(0x9fc00, 0xa0000, MemoryKind::Reserved)];
        assert_eq!(trampoline_page(&map), Some(0x9e000));
        assert_eq!(sipi_vector(0x9e000), Some(0x9e));
        // A region of another kind inside the usable one is skipped.
        let map = [
            r(0, 0x9fc00, MemoryKind::Usable),
            r(0x9d800, 0x9e100, MemoryKind::Loader),
            r(0x9fc00, 0xa0000, MemoryKind::Reserved),
        ];
        assert_eq!(trampoline_page(&map), Some(0x9c000));
        // Page 0 (the real-mode IVT) is never chosen; no low RAM: none.
        assert_eq!(trampoline_page(&[r(0, 0x1000, MemoryKind::Usable)]), None);
        assert_eq!(trampoline_page(&[r(0x10_0000, 0x800_0000, MemoryKind::Usable)]), None);
        assert_eq!(sipi_vector(0xa0000), None);
        assert_eq!(sipi_vector(0x1234), None);
    }

    #[test]
    fn the_wait_ends_online_or_by_its_deadlines() {
        let t = StartTimeouts { to_claim: 100, to_online: 1000 };
        assert_eq!(wait_step(ApState::Starting, 0, &t), Wait::Keep);
        assert_eq!(wait_step(ApState::Starting, 99, &t), Wait::Keep);
        assert_eq!(wait_step(ApState::Starting, 100, &t), Wait::Abandon);
        // Once claimed, the AP gets the longer deadline.
        assert_eq!(wait_step(ApState::Booting, 500, &t), Wait::Keep);
        assert_eq!(wait_step(ApState::Booting, 1000, &t), Wait::Stuck);
        assert_eq!(wait_step(ApState::Online, 5000, &t), Wait::Online);
        assert_eq!(wait_step(ApState::Online, 0, &t), Wait::Online);
        assert_eq!(wait_step(ApState::Off, 0, &t), Wait::Abandon);
        assert_eq!(wait_step(ApState::Abandoned, 0, &t), Wait::Abandon);
        // A to_online below to_claim never cuts a claimed AP short.
        let odd = StartTimeouts { to_claim: 100, to_online: 10 };
        assert_eq!(wait_step(ApState::Booting, 50, &odd), Wait::Keep);
        for s in [ApState::Off, ApState::Starting, ApState::Booting, ApState::Online, ApState::Abandoned] {
            assert_eq!(ApState::from_code(s.code()), s);
        }
        assert_eq!(ApState::from_code(200), ApState::Off);
    }

    #[test]
    fn the_banner_names_every_cpu_and_why_one_is_off() {
        let line =
            banner(&[(0, CpuOutcome::Boot), (1, CpuOutcome::Online), (2, CpuOutcome::Online), (3, CpuOutcome::Online)]);
        assert_eq!(line.as_str(), "cpus: 4 online of 4 in MADT (APIC IDs 0 (boot), 1, 2, 3)");
        let line = banner(&[
            (0, CpuOutcome::Boot),
            (1, CpuOutcome::KeptOff),
            (4, CpuOutcome::NoAnswer),
            (5, CpuOutcome::Disabled),
            (6, CpuOutcome::OverLimit),
        ]);
        assert_eq!(
            line.as_str(),
            "cpus: 1 online of 5 in MADT (APIC IDs 0 (boot), 1 (off: cpus=), 4 (no answer), 5 (disabled), 6 (off: over the limit))"
        );
        // The longest banner fits.
        let all: heapless::Vec<(u32, CpuOutcome), 64> = (192..256).map(|i| (i, CpuOutcome::OverLimit)).collect();
        assert!(banner(&all).ends_with(')'));
    }
}
