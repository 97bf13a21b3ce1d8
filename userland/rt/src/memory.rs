//! Windows onto memory objects in the task's own address space, for tasks
//! (the supervisor) that fill or read memory they then hand to others.

use crate::invoke;
use abi::invoke::Operation;
use abi::{CapSlot, ErrorCode, Rights};
use core::sync::atomic::AtomicU64;

use x86defs::PAGE_SIZE;

/// A memory object mapped at `base` in this task; unmapped on [`Window::unmap`].
pub struct Window {
    base: u64,
    pages: u64,
    writable: bool,
}

impl Window {
    /// Maps `pages` pages of `memory` (from page `offset`) at `base` through
    /// this task's own task capability `task`.
    pub fn map(
        task: CapSlot,
        memory: CapSlot,
        base: u64,
        offset: u64,
        pages: u64,
        writable: bool,
    ) -> Result<Window, ErrorCode> {
        if !base.is_multiple_of(PAGE_SIZE) || pages == 0 || pages > u64::from(u32::MAX) || offset > u64::from(u32::MAX)
        {
            return Err(ErrorCode::INVALID_ARGUMENT);
        }
        base.checked_add(pages * PAGE_SIZE).filter(|&end| end <= abi::USER_END).ok_or(ErrorCode::BAD_ADDRESS)?;
        let rights = Rights::new().with_read(true).with_write(writable);
        invoke(
            task,
            Operation::TASK_MAP,
            &[u64::from(memory.0), base, u64::from(rights.into_bits()), offset << 32 | pages],
        )?;
        Ok(Window { base, pages, writable })
    }

    pub fn len(&self) -> usize {
        (self.pages * PAGE_SIZE) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.pages == 0
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the kernel mapped `pages` pages readable at `base` (map
        // succeeded) and they stay mapped until `unmap` consumes `self`.
        // Other tasks may map the same object, so contents can change under
        // us only as plain bytes; nothing here relies on them being stable.
        unsafe { core::slice::from_raw_parts(self.base as *const u8, self.len()) }
    }

    /// The mapped bytes, writable; `None` for a read-only window.
    pub fn bytes_mut(&mut self) -> Option<&mut [u8]> {
        if !self.writable {
            return None;
        }
        // SAFETY: as for `bytes`, mapped writable; `&mut self` makes this
        // the only slice over the window in this task.
        Some(unsafe { core::slice::from_raw_parts_mut(self.base as *mut u8, self.len()) })
    }

    /// Keeps the mapping for the rest of the task's life and returns its
    /// bytes.
    pub fn leak(self) -> &'static [u8] {
        // SAFETY: as for `bytes`; the window is consumed without being
        // unmapped, so the mapping outlives every use of the slice.
        unsafe { core::slice::from_raw_parts(self.base as *const u8, self.len()) }
    }

    /// [`leak`](Self::leak) for a writable window; `None` if read-only.
    pub fn leak_mut(self) -> Option<&'static mut [u8]> {
        if !self.writable {
            return None;
        }
        // SAFETY: as for `bytes_mut`; consumed without unmapping, so this is
        // the only slice over the mapping and it stays mapped.
        Some(unsafe { core::slice::from_raw_parts_mut(self.base as *mut u8, self.len()) })
    }

    /// Keeps a writable mapping for the rest of the task's life as 64-bit
    /// atomic words: for memory others change while this task reads and
    /// writes it (a page shared with guests running on other CPUs). `None`
    /// if read-only.
    pub fn leak_atomic(self) -> Option<&'static [AtomicU64]> {
        if !self.writable {
            return None;
        }
        // SAFETY: mapped writable and never unmapped (consumed), as for
        // `leak_mut`; `base` is page-aligned, so 8-byte aligned, and
        // `AtomicU64` has `u64`'s size and layout. Every access through the
        // slice is atomic, so concurrent writers elsewhere are no data race.
        Some(unsafe { core::slice::from_raw_parts(self.base as *const AtomicU64, self.len() / 8) })
    }

    /// Unmaps the window through `task`.
    pub fn unmap(self, task: CapSlot) -> Result<(), ErrorCode> {
        invoke(task, Operation::TASK_UNMAP, &[self.base, self.pages]).map(drop)
    }
}
