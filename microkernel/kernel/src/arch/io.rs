//! Port I/O on behalf of tasks holding an I/O-port capability. The caller
//! (the invoke path) has checked the capability's range and rights.

use x86::io::{inb, inl, inw, outb, outl, outw};

/// Reads a port of `width` bytes (1, 2 or 4); `None` for another width.
pub fn port_in(port: u16, width: u64) -> Option<u32> {
    // SAFETY: the port lies in a range a capability grants; devices behind
    // task-owned ports are the task's business, never the kernel's.
    unsafe {
        match width {
            1 => Some(u32::from(inb(port))),
            2 => Some(u32::from(inw(port))),
            4 => Some(inl(port)),
            _ => None,
        }
    }
}

/// Writes a port of `width` bytes; false for another width.
pub fn port_out(port: u16, width: u64, value: u32) -> bool {
    // SAFETY: as for `port_in`.
    unsafe {
        match width {
            1 => outb(port, value as u8),
            2 => outw(port, value as u16),
            4 => outl(port, value),
            _ => return false,
        }
    }
    true
}

/// Writes `bytes` to one port, one after another.
pub fn port_out_bytes(port: u16, bytes: &[u8]) {
    for &b in bytes {
        // SAFETY: as for `port_in`.
        unsafe { outb(port, b) };
    }
}
