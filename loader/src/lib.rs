//! The loader's pure logic: reading Multiboot v1/v2 information and finding
//! the ACPI RSDP, over memory the caller provides.
//!
//! The boot information is written by firmware and a boot loader we do not
//! control, so every pointer and length in it is checked before use; a bad
//! table is an error, never a wild read.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod image;
pub mod multiboot;
pub mod rsdp;

/// Read access to physical memory below 4 GiB (identity-mapped while the
/// loader runs; a byte buffer in tests).
pub trait PhysMemory {
    /// `len` bytes at `addr`, or `None` if any of them is not readable.
    fn bytes(&self, addr: u64, len: u64) -> Option<&[u8]>;

    fn u16_at(&self, addr: u64) -> Option<u16> {
        Some(u16::from_le_bytes(self.bytes(addr, 2)?.try_into().ok()?))
    }

    fn u32_at(&self, addr: u64) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(addr, 4)?.try_into().ok()?))
    }

    fn u64_at(&self, addr: u64) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(addr, 8)?.try_into().ok()?))
    }

    /// A NUL-terminated string of at most `max` bytes; invalid UTF-8 is an error.
    fn c_str(&self, addr: u64, max: u64) -> Option<&str> {
        let mut len = 0;
        while len < max {
            if *self.bytes(addr + len, 1)?.first()? == 0 {
                return core::str::from_utf8(self.bytes(addr, len)?).ok();
            }
            len += 1;
        }
        None
    }
}

/// A flat buffer standing in for physical memory at `base`.
pub struct BufferMemory<'a> {
    pub base: u64,
    pub data: &'a [u8],
}

impl PhysMemory for BufferMemory<'_> {
    fn bytes(&self, addr: u64, len: u64) -> Option<&[u8]> {
        let start = usize::try_from(addr.checked_sub(self.base)?).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.data.get(start..end)
    }
}
