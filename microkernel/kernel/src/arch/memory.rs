//! The kernel's own memory: the direct map, the frame pool, device
//! mappings, and the W^X audit of the live page tables.

use bootinfo::{BootInfo, DIRECT_MAP_BASE, KERNEL_STACK_SIZE, KERNEL_STACK_TOP, MMIO_WINDOW_BASE, MMIO_WINDOW_SIZE};
use kerncore::frames::{FramePool, Frames, Runs};
use kerncore::memmap;
use kerncore::paging::{self, Audit, MapError, MapFlags, Mapper, PAGE_SIZE, PageTableMemory};
use spin::Mutex;

static FRAMES: Mutex<FramePool> = Mutex::new(FramePool::new());
/// Physical spans the direct map covers (computed from the memory map by the
/// same rule the loader used to build it).
static DIRECT_MAP: spin::Once<heapless::Vec<(u64, u64), { bootinfo::MAX_MEMORY_REGIONS }>> = spin::Once::new();
static KERNEL_ROOT: spin::Once<u64> = spin::Once::new();
/// The page below 1 MiB the APs start in (`arch::smp`), if there is one.
static TRAMPOLINE: spin::Once<Option<u64>> = spin::Once::new();
/// Next free address in the device-mapping window.
static MMIO_NEXT: Mutex<u64> = Mutex::new(MMIO_WINDOW_BASE);

unsafe extern "C" {
    static __kernel_text_start: u8;
    static __kernel_text_end: u8;
    static __kernel_rodata_start: u8;
    static __kernel_rodata_end: u8;
    static __kernel_data_start: u8;
    static __kernel_data_end: u8;
}

fn symbol(sym: &u8) -> u64 {
    sym as *const u8 as u64
}

/// (start, end) of the kernel's text, read-only data and data sections.
pub fn kernel_sections() -> [(u64, u64); 3] {
    // SAFETY: linker-defined symbols; only their addresses are taken.
    unsafe {
        [
            (symbol(&__kernel_text_start), symbol(&__kernel_text_end)),
            (symbol(&__kernel_rodata_start), symbol(&__kernel_rodata_end)),
            (symbol(&__kernel_data_start), symbol(&__kernel_data_end)),
        ]
    }
}

/// Physical memory seen through the direct map, with new tables taken from
/// the frame pool.
pub struct DirectMap;

impl DirectMap {
    fn entry_ptr(table: u64, index: usize) -> *mut u64 {
        assert!(index < 512 && table.is_multiple_of(PAGE_SIZE), "bad page-table access");
        assert!(phys_to_virt(table, PAGE_SIZE).is_some(), "page table outside the direct map");
        (DIRECT_MAP_BASE + table + 8 * index as u64) as *mut u64
    }
}

impl PageTableMemory for DirectMap {
    fn alloc_table(&mut self) -> Option<u64> {
        let frame = FRAMES.lock().alloc(1)?.leak();
        // SAFETY: the frame was just taken from the pool, is covered by the
        // direct map (the pool only holds mapped RAM) and is ours alone.
        unsafe { core::ptr::write_bytes((DIRECT_MAP_BASE + frame) as *mut u8, 0, PAGE_SIZE as usize) };
        Some(frame)
    }

    fn read_entry(&self, table: u64, index: usize) -> u64 {
        // SAFETY: `entry_ptr` checked that the entry lies in direct-mapped
        // memory; page tables are only walked from CR3, so `table` is one.
        unsafe { core::ptr::read_volatile(Self::entry_ptr(table, index)) }
    }

    fn write_entry(&mut self, table: u64, index: usize, value: u64) {
        // SAFETY: as for `read_entry`. Writers hold the kernel's single
        // page-table lock (boot is single-threaded for now).
        unsafe { core::ptr::write_volatile(Self::entry_ptr(table, index), value) }
    }
}

fn direct_map_end() -> u64 {
    DIRECT_MAP.get().and_then(|spans| spans.last()).map_or(0, |s| s.1)
}

/// What [`init`] found.
pub struct MemorySummary {
    pub usable_bytes: u64,
    pub frames: u64,
    pub kernel_bytes: u64,
    pub regions: usize,
}

/// Drops the loader's identity map, then fills the frame pool with usable
/// memory above 1 MiB.
pub fn init(info: &BootInfo) -> MemorySummary {
    let spans = DIRECT_MAP.call_once(|| memmap::direct_map_spans(info.memory_map()).unwrap_or_default());
    if let Some(&(0, end)) = spans.first() {
        LOW_SPAN_END.store(end, core::sync::atomic::Ordering::Release);
    }
    let root = super::cpu::cr3() & !(PAGE_SIZE - 1);
    KERNEL_ROOT.call_once(|| root);
    let mut mem = DirectMap;
    for slot in 0..256 {
        mem.write_entry(root, slot, 0);
    }
    // SAFETY: reloading CR3 with its own value flushes non-global TLB
    // entries, which removes the identity map just cleared. Nothing the
    // kernel uses lives in the lower half.
    unsafe { x86::controlregs::cr3_write(root) };

    // The pool takes memory from 1 MiB up only, so the trampoline page,
    // chosen below it, is never handed out.
    TRAMPOLINE.call_once(|| kerncore::smp::trampoline_page(info.memory_map()));
    let frames = FRAMES.lock().add_usable(info.memory_map(), 0x10_0000);
    MemorySummary {
        usable_bytes: info.total(bootinfo::MemoryKind::Usable),
        frames,
        kernel_bytes: info.kernel_image.len(),
        regions: info.memory_map().len(),
    }
}

/// The page below 1 MiB reserved for starting APs, if the memory map had one.
pub fn trampoline_page() -> Option<u64> {
    TRAMPOLINE.get().copied().flatten()
}

/// A top-level table for APs to start on: the kernel half of the boot
/// tables, and `page` (the trampoline) identity-mapped read-only and
/// executable, not global, so that an AP's switch to the kernel's own
/// tables flushes it. The kernel's tables never map it.
pub fn trampoline_root(page: u64) -> Result<u64, MapError> {
    let mut mem = DirectMap;
    let root = mem.alloc_table().ok_or(MapError::OutOfMemory)?;
    let kernel = kernel_root();
    for slot in 256..512 {
        let entry = mem.read_entry(kernel, slot);
        mem.write_entry(root, slot, entry);
    }
    let mut mapper = Mapper::new(&mut mem, root);
    mapper.large_pages = false;
    let flags = MapFlags { global: false, ..MapFlags::KERNEL_TEXT };
    if let Err(e) = mapper.map(page, page, PAGE_SIZE, flags) {
        free_user_tables(root);
        return Err(e);
    }
    Ok(root)
}

/// Switches this CPU (an AP leaving the trampoline) to the kernel's own
/// tables, which flushes every non-global translation, the trampoline's
/// identity mapping among them.
pub fn switch_to_kernel_root() {
    // SAFETY: the kernel's tables map everything the kernel half of the
    // trampoline's tables does (they share those entries), and the caller
    // runs in the kernel half.
    unsafe { x86::controlregs::cr3_write(kernel_root()) };
}

/// Frees a [`trampoline_root`] (its lower-half tables and itself; the
/// kernel half is shared and stays) once no CPU uses it.
pub fn free_trampoline_root(root: u64) {
    free_user_tables(root);
}

/// The kernel's own top-level table (the boot page tables).
pub fn kernel_root() -> u64 {
    *KERNEL_ROOT.get().expect("memory::init runs first")
}

/// Checks the live page tables for writable+executable mappings.
pub fn audit() -> Audit {
    paging::audit(&DirectMap, super::cpu::cr3() & !(PAGE_SIZE - 1))
}

/// The end of the direct map's first span when it starts at 0 (0: none).
static LOW_SPAN_END: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The direct-map address of `[phys, phys+len)`, if all of it is covered.
#[inline]
pub fn phys_to_virt(phys: u64, len: u64) -> Option<u64> {
    // Kernel frames (a VMCB, an IPC buffer) lie in the first span: one
    // comparison instead of the look through every span.
    let low_end = LOW_SPAN_END.load(core::sync::atomic::Ordering::Acquire);
    if phys.checked_add(len).is_some_and(|end| end <= low_end) {
        return Some(DIRECT_MAP_BASE + phys);
    }
    let spans = DIRECT_MAP.get()?;
    memmap::covered(spans, phys, len).then_some(DIRECT_MAP_BASE + phys)
}

/// Maps device registers uncached into the MMIO window.
pub fn map_mmio(phys: u64, len: u64) -> Result<u64, MapError> {
    map_window(phys, len, MapFlags::KERNEL_MMIO)
}

/// Maps firmware tables (write-back, read-only) into the MMIO window.
pub fn map_firmware(phys: u64, len: u64) -> Result<u64, MapError> {
    map_window(phys, len, MapFlags::KERNEL_RODATA)
}

fn map_window(phys: u64, len: u64, flags: MapFlags) -> Result<u64, MapError> {
    let base = phys & !(PAGE_SIZE - 1);
    let span = (phys - base + len).next_multiple_of(PAGE_SIZE);
    let mut next = MMIO_NEXT.lock();
    if *next + span > MMIO_WINDOW_BASE + MMIO_WINDOW_SIZE {
        return Err(MapError::OutOfMemory);
    }
    let virt = *next;
    let root = kernel_root();
    let mut mem = DirectMap;
    let mut mapper = Mapper::new(&mut mem, root);
    mapper.large_pages = false;
    mapper.map(virt, base, span, flags)?;
    *next += span;
    Ok(virt + (phys - base))
}

/// A short description of where `addr` points, for fault reports.
pub fn describe(addr: u64) -> &'static str {
    let [text, rodata, data] = kernel_sections();
    let within = |(start, end): (u64, u64)| addr >= start && addr < end;
    if within(text) {
        "is in kernel text"
    } else if within(rodata) {
        "is in kernel read-only data"
    } else if within(data) {
        "is in kernel data"
    } else if within((KERNEL_STACK_TOP - KERNEL_STACK_SIZE - PAGE_SIZE, KERNEL_STACK_TOP - KERNEL_STACK_SIZE)) {
        "is in the boot stack's guard page (stack overflow)"
    } else if within((KERNEL_STACK_TOP - KERNEL_STACK_SIZE, KERNEL_STACK_TOP)) {
        "is on the boot stack"
    } else if within((DIRECT_MAP_BASE, DIRECT_MAP_BASE + direct_map_end())) {
        "is in the direct map"
    } else if within((MMIO_WINDOW_BASE, MMIO_WINDOW_BASE + MMIO_WINDOW_SIZE)) {
        "is in the device window"
    } else if !paging::is_canonical(addr) {
        "is not canonical"
    } else if addr < 1 << 47 {
        "is in the lower (user) half"
    } else {
        "is in unmapped kernel space"
    }
}

/// An address in kernel space that nothing maps.
pub const UNMAPPED_PROBE: u64 = 0xffff_c000_dead_0000;

/// Reads from an unmapped kernel address (boot option `test=fault-pf`).
pub fn provoke_page_fault() -> u64 {
    // SAFETY: deliberately faults; the page-fault handler reports and powers
    // off, so the read never returns a value.
    unsafe { core::ptr::read_volatile(UNMAPPED_PROBE as *const u64) }
}

/// Writes to the kernel's own text (boot option `test=fault-wp`).
pub fn provoke_text_write() {
    let target = provoke_text_write as *const () as *mut u8;
    // SAFETY: deliberately faults: kernel text is mapped read-only and
    // CR0.WP makes ring 0 honour that, so the write never happens.
    unsafe { core::ptr::write_volatile(target, 0xcc) };
}

/// Allocates `count` zeroed frames from the pool.
pub fn alloc_frames(count: usize) -> Option<Frames> {
    let frames = FRAMES.lock().alloc(count)?;
    zero_phys(frames.start(), frames.len_bytes());
    Some(frames)
}

/// Returns frames to the pool. Callers must have unmapped them everywhere.
pub fn free_frames(frames: Frames) {
    FRAMES.lock().free(frames);
}

/// `pages` zeroed frames in runs (`FramePool::alloc_runs`): what a memory
/// object is made of.
pub fn alloc_runs(pages: usize) -> Option<Runs> {
    let runs = FRAMES.lock().alloc_runs(pages)?;
    for run in runs.runs() {
        zero_phys(run.start(), run.len_bytes());
    }
    Some(runs)
}

/// Returns a memory object's runs to the pool. Callers must have unmapped
/// them everywhere.
pub fn free_runs(runs: Runs) {
    FRAMES.lock().free_runs(runs);
}

/// Free frames in the pool.
pub fn free_frame_count() -> u64 {
    FRAMES.lock().free_frames()
}

/// The direct-map pointer for `[phys, phys+len)`, which must be covered.
fn direct(phys: u64, len: u64) -> *mut u8 {
    let virt =
        phys_to_virt(phys, len).unwrap_or_else(|| panic!("physical range {phys:#x}+{len:#x} is not direct-mapped"));
    virt as *mut u8
}

/// Copies `data` into physical memory the kernel owns (a frame of a kernel
/// object: an IPC buffer, a startup page, a task image).
pub fn write_phys(phys: u64, data: &[u8]) {
    let dst = direct(phys, data.len() as u64);
    // SAFETY: the range is direct-mapped RAM owned by a kernel object, and
    // `data` (kernel memory) cannot overlap a frame handed to tasks. A task
    // or guest on another CPU may write the same frame at the same time:
    // its bytes are plain data to the kernel, which never relies on what it
    // wrote there staying put.
    unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) }
}

/// Copies physical memory into `buf`.
pub fn read_phys(phys: u64, buf: &mut [u8]) {
    let src = direct(phys, buf.len() as u64);
    // SAFETY: as for `write_phys`. A task or guest on another CPU may write
    // the frame meanwhile: the bytes land in `buf`, kernel memory, once, and
    // callers check and use only that copy (never a second read of a
    // message word or slot), so a change between check and use is
    // impossible.
    unsafe { core::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) }
}

/// Fills physical memory the kernel owns with `byte`.
pub fn fill_phys(phys: u64, len: u64, byte: u8) {
    let dst = direct(phys, len);
    // SAFETY: as for `write_phys`.
    unsafe { core::ptr::write_bytes(dst, byte, len as usize) }
}

/// Zeroes physical memory the kernel owns.
pub fn zero_phys(phys: u64, len: u64) {
    let dst = direct(phys, len);
    // SAFETY: as for `write_phys`.
    unsafe { core::ptr::write_bytes(dst, 0, len as usize) }
}

/// Runs `f` on the 4 KiB frame at `phys` (a frame the kernel owns, such as
/// a VMCB), seen through the direct map, so that a layout crate can give
/// it a type (zerocopy's `mut_from_bytes`) without a pointer cast.
pub fn with_frame_mut<R>(phys: u64, f: impl FnOnce(&mut [u8; PAGE_SIZE as usize]) -> R) -> R {
    assert!(phys.is_multiple_of(PAGE_SIZE), "frame {phys:#x} is not page-aligned");
    let ptr = direct(phys, PAGE_SIZE) as *mut [u8; PAGE_SIZE as usize];
    // SAFETY: the frame is direct-mapped RAM owned by a kernel object (as
    // for `write_phys`); the kernel is single-threaded, and the reference
    // lives only for the call: no other reference to the frame exists
    // meanwhile, and the hardware that also writes such frames (VMRUN)
    // cannot run during `f`.
    f(unsafe { &mut *ptr })
}

/// Copies `words` into physical memory the kernel owns, little-endian (an
/// IPC buffer's message words): one copy, not one per word.
pub fn write_phys_words(phys: u64, words: &[u64]) {
    let len = core::mem::size_of_val(words);
    let dst = direct(phys, len as u64);
    // SAFETY: as for `write_phys`; x86-64 is little-endian, so the words'
    // bytes are their wire form, and a byte copy needs no alignment.
    unsafe { core::ptr::copy_nonoverlapping(words.as_ptr().cast::<u8>(), dst, len) }
}

/// Fills `words` from physical memory the kernel owns, little-endian: one
/// copy, not one per word.
pub fn read_phys_words(phys: u64, words: &mut [u64]) {
    let len = core::mem::size_of_val(words);
    let src = direct(phys, len as u64);
    // SAFETY: as for `read_phys` (the words land in kernel memory once);
    // every bit pattern is a valid u64, and a byte copy needs no alignment.
    unsafe { core::ptr::copy_nonoverlapping(src, words.as_mut_ptr().cast::<u8>(), len) }
}

/// Reads the 64-bit word at `phys` (8-byte aligned).
pub fn read_phys_u64(phys: u64) -> u64 {
    let mut word = [0; 8];
    read_phys(phys, &mut word);
    u64::from_le_bytes(word)
}

/// Frees the page-table frames of the lower half of the hierarchy at
/// `root`, and `root` itself. Leaf frames are not touched: they belong to
/// memory objects.
pub fn free_user_tables(root: u64) {
    fn free_level(table: u64, level: u32) {
        if level > 0 {
            for i in 0..512 {
                let entry = kerncore::paging::PageTableEntry::from(DirectMap.read_entry(table, i));
                if entry.present() && !entry.page_size() {
                    free_level(entry.address(), level - 1);
                }
            }
        }
        FRAMES.lock().free(Frames::reclaim(table, 1));
    }
    for i in 0..256 {
        let entry = kerncore::paging::PageTableEntry::from(DirectMap.read_entry(root, i));
        if entry.present() {
            free_level(entry.address(), 2);
        }
    }
    FRAMES.lock().free(Frames::reclaim(root, 1));
}

/// A boot module's bytes. Modules are reserved in the memory map, never
/// handed to the frame pool and never written by the kernel.
pub fn boot_module(phys: u64, len: u64) -> &'static [u8] {
    let ptr = direct(phys, len);
    // SAFETY: the range is direct-mapped RAM the loader marked as a module;
    // nothing writes it for the rest of the kernel's life (tasks get only
    // read-only mappings of it).
    unsafe { core::slice::from_raw_parts(ptr, len as usize) }
}
