//! I/O ports through an `IO_PORTS` capability (`Operation::IO_*`).

use abi::MAX_MESSAGE_WORDS;
use abi::invoke::Operation;
use tessera_idl::Message;

/// Most bytes one `IO_OUT_BYTES` invocation carries: eight per message word
/// after MR0 (port) and MR1 (count).
pub const OUT_BYTES_MAX: usize = 8 * (MAX_MESSAGE_WORDS - 2);

/// The `IO_OUT_BYTES` request writing `bytes` to `port`: MR0 port, MR1 byte
/// count, the bytes packed little-endian from MR2 on. `None` if `bytes` is
/// longer than [`OUT_BYTES_MAX`].
pub fn out_bytes_request(port: u16, bytes: &[u8]) -> Option<Message> {
    let mut request = Message::new(0);
    out_bytes_into(&mut request, port, bytes)?;
    Some(request)
}

/// [`out_bytes_request`] written into `message`.
pub fn out_bytes_into(message: &mut Message, port: u16, bytes: &[u8]) -> Option<()> {
    if bytes.len() > OUT_BYTES_MAX {
        return None;
    }
    message.clear(Operation::IO_OUT_BYTES.0);
    message.push(u64::from(port)).ok()?;
    message.push(bytes.len() as u64).ok()?;
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        message.push(u64::from_le_bytes(word)).ok()?;
    }
    Some(())
}

#[cfg(target_os = "none")]
mod current {
    use super::*;
    use abi::{CapSlot, ErrorCode};

    /// Writes `bytes` to `port` (`rep outsb`), in as many invocations as needed.
    pub fn out_bytes(ports: CapSlot, port: u16, bytes: &[u8]) -> Result<(), ErrorCode> {
        let mut message = Message::new(0);
        for chunk in bytes.chunks(OUT_BYTES_MAX) {
            out_bytes_into(&mut message, port, chunk).ok_or(ErrorCode::INVALID_ARGUMENT)?;
            crate::ipc::invoke_in_place(ports, &mut message)?;
        }
        Ok(())
    }

    /// Writes `bytes` to a 16550 UART at `base`, 16 bytes (one FIFO) at a
    /// time, each time after the line status register says the transmitter
    /// is empty, so no byte is dropped. A UART that never reports empty is
    /// written anyway after a bounded wait, so output never hangs the task.
    pub fn uart_write(ports: CapSlot, base: u16, bytes: &[u8]) -> Result<(), ErrorCode> {
        const LINE_STATUS: u16 = 5;
        const TRANSMITTER_EMPTY: u32 = 1 << 5;
        const FIFO: usize = 16;
        const MAX_POLLS: u32 = 100_000;
        for chunk in bytes.chunks(FIFO) {
            for _ in 0..MAX_POLLS {
                if input(ports, base + LINE_STATUS, 1)? & TRANSMITTER_EMPTY != 0 {
                    break;
                }
            }
            out_bytes(ports, base, chunk)?;
        }
        Ok(())
    }

    /// Reads a port of `width` bytes (1, 2 or 4).
    pub fn input(ports: CapSlot, port: u16, width: u8) -> Result<u32, ErrorCode> {
        let reply = crate::invoke(ports, Operation::IO_IN, &[u64::from(port), u64::from(width)])?;
        Ok(reply.words().first().copied().unwrap_or(0) as u32)
    }

    /// Writes `value` to a port of `width` bytes (1, 2 or 4).
    pub fn output(ports: CapSlot, port: u16, width: u8, value: u32) -> Result<(), ErrorCode> {
        crate::invoke(ports, Operation::IO_OUT, &[u64::from(port), u64::from(width), u64::from(value)]).map(drop)
    }
}

#[cfg(target_os = "none")]
pub use current::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_packed_after_port_and_count() {
        let request = out_bytes_request(0x3f8, b"hello, tessera\n").unwrap();
        assert_eq!(request.label(), Operation::IO_OUT_BYTES.0);
        assert_eq!(request.words(), &[0x3f8, 15, u64::from_le_bytes(*b"hello, t"), u64::from_le_bytes(*b"essera\n\0")]);
        assert_eq!(out_bytes_request(0x3f8, b"").unwrap().words(), &[0x3f8, 0]);
    }

    #[test]
    fn the_largest_request_fills_the_message_exactly() {
        let request = out_bytes_request(0x3f8, &[0x41; OUT_BYTES_MAX]).unwrap();
        assert_eq!(request.len(), MAX_MESSAGE_WORDS);
        assert!(out_bytes_request(0x3f8, &[0x41; OUT_BYTES_MAX + 1]).is_none());
    }
}
