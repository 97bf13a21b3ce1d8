//! The kernel heap: a fixed, bounded region inside the kernel image.
//!
//! Only boot-time discovery (ACPI tables, the frame pool's bookkeeping)
//! allocates. Kernel objects will come from memory their creator supplies,
//! never from here, so the heap cannot grow without bound.

use buddy_system_allocator::LockedHeap;

const HEAP_SIZE: usize = 1 << 20;

#[repr(C, align(4096))]
struct HeapSpace([u8; HEAP_SIZE]);

static mut HEAP_SPACE: HeapSpace = HeapSpace([0; HEAP_SIZE]);

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

/// Hands the heap its memory. Call once, before anything allocates.
pub fn init() {
    // SAFETY: called once on the boot CPU before any allocation; the static
    // is used by nothing but the allocator from here on.
    unsafe {
        let start = core::ptr::addr_of_mut!(HEAP_SPACE) as usize;
        HEAP.lock().init(start, HEAP_SIZE);
    }
}

/// (bytes in use, bytes in total).
pub fn usage() -> (usize, usize) {
    let heap = HEAP.lock();
    (heap.stats_alloc_actual(), heap.stats_total_bytes())
}
