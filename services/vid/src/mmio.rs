//! Emulated MMIO: the test device of the guest test kernel's protocol
//! (`guest_testkernel::protocol`), one page at [`TEST_DEVICE`] (routed by
//! [`crate::bus::MMIO_ROUTES`]).

/// The test device's page.
pub const TEST_DEVICE: u64 = 0xfed0_0000;
/// Read-only identification register: "TESS" in memory order.
pub const ID: u64 = 0x00;
pub const ID_VALUE: u32 = u32::from_le_bytes(*b"TESS");
/// Read/write scratch register (0 at reset).
pub const SCRATCH: u64 = 0x08;

/// The test device. Registers are 32 bits; each byte of an access is
/// handled alone, so a 1- or 2-byte access inside a register sees those
/// bytes of it, and bytes that are no register read 0xff and ignore writes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TestDevice {
    pub scratch: u32,
}

impl TestDevice {
    fn byte(&self, offset: u64) -> u8 {
        let shift = 8 * (offset & 3);
        match offset & !3 {
            ID => (ID_VALUE >> shift) as u8,
            SCRATCH => (self.scratch >> shift) as u8,
            _ => 0xff,
        }
    }

    /// Reads `size` (1..=8) bytes at `offset` in the page, little-endian.
    pub fn read(&self, offset: u64, size: u8) -> u64 {
        (0..u64::from(size.min(8))).fold(0, |v, i| v | u64::from(self.byte(offset + i)) << (8 * i))
    }

    /// Writes the low `size` bytes of `value` at `offset`.
    pub fn write(&mut self, offset: u64, size: u8, value: u64) {
        for i in 0..u64::from(size.min(8)) {
            let at = offset + i;
            if at & !3 == SCRATCH {
                let shift = 8 * (at & 3);
                self.scratch = (self.scratch & !(0xff << shift)) | (((value >> (8 * i)) as u32 & 0xff) << shift);
            }
        }
    }
}
