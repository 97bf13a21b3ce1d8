//! The thread's IPC buffer: message words past the fourth, and the
//! capability slots of a transfer.
//!
//! The kernel writes this page during IPC, so Rust never holds a reference
//! into it: every access is a volatile read or write of one field, or a copy
//! of message words, through a raw pointer, made between syscalls (tasks
//! are single-threaded; the syscall is a compiler barrier).

use abi::{CapSlot, ErrorCode, IpcBuffer, MAX_MESSAGE_WORDS, MAX_TRANSFER_CAPS};
use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicPtr, Ordering};

static BUFFER: AtomicPtr<IpcBuffer> = AtomicPtr::new(core::ptr::null_mut());

/// Records the buffer's address; `_start` calls it once the address is checked.
pub(crate) fn set(address: u64) {
    BUFFER.store(core::ptr::with_exposed_provenance_mut(address as usize), Ordering::Relaxed);
}

fn buffer() -> Result<*mut IpcBuffer, ErrorCode> {
    let buffer = BUFFER.load(Ordering::Relaxed);
    if buffer.is_null() { Err(ErrorCode::BAD_ADDRESS) } else { Ok(buffer) }
}

/// True if the startup page gave the thread a usable IPC buffer (without
/// one, messages are limited to the four register words and carry no
/// capabilities).
pub fn is_available() -> bool {
    buffer().is_ok()
}

/// Writes message words `first..first + words.len()` into the buffer.
pub(crate) fn write_words(first: usize, words: &[u64]) -> Result<(), ErrorCode> {
    if first + words.len() > MAX_MESSAGE_WORDS {
        return Err(ErrorCode::MESSAGE_TOO_LONG);
    }
    let buffer = buffer()?;
    // SAFETY: `buffer` is the checked, aligned address of the thread's IPC
    // buffer (mapped writable for the thread's life) and `first +
    // words.len()` is at most MAX_MESSAGE_WORDS, so the words are in
    // bounds. No reference to the buffer exists, and `words` (the task's
    // own memory) cannot overlap it. One copy, not one write per word.
    unsafe {
        let to = addr_of_mut!((*buffer).words).cast::<u64>().add(first);
        core::ptr::copy_nonoverlapping(words.as_ptr(), to, words.len());
    }
    Ok(())
}

/// Reads message words `first..first + out.len()` from the buffer (zeros
/// if there is none).
pub(crate) fn read_words(first: usize, out: &mut [u64]) {
    let Ok(buffer) = buffer() else {
        out.fill(0);
        return;
    };
    let (inside, beyond) = out.split_at_mut(MAX_MESSAGE_WORDS.saturating_sub(first).min(out.len()));
    // SAFETY: as in `write_words`; words `first..first + inside.len()` are
    // below MAX_MESSAGE_WORDS.
    unsafe {
        let from = addr_of_mut!((*buffer).words).cast::<u64>().add(first.min(MAX_MESSAGE_WORDS));
        core::ptr::copy_nonoverlapping(from, inside.as_mut_ptr(), inside.len());
    }
    if !beyond.is_empty() {
        beyond.fill(0);
    }
}

/// Names the capabilities the next send transfers (at most [`MAX_TRANSFER_CAPS`]).
pub(crate) fn set_send_caps(caps: &[CapSlot]) -> Result<(), ErrorCode> {
    if caps.len() > MAX_TRANSFER_CAPS {
        return Err(ErrorCode::INVALID_ARGUMENT);
    }
    let buffer = buffer()?;
    for i in 0..MAX_TRANSFER_CAPS {
        let slot = caps.get(i).copied().unwrap_or(CapSlot::NULL);
        // SAFETY: as in `write_words`; `i` < MAX_TRANSFER_CAPS.
        unsafe { addr_of_mut!((*buffer).send_caps[i]).write_volatile(slot) };
    }
    Ok(())
}

/// Names the empty slots where capabilities received from now on are placed
/// ([`CapSlot::NULL`]: accept none there).
pub fn set_receive_slots(slots: [CapSlot; MAX_TRANSFER_CAPS]) -> Result<(), ErrorCode> {
    let buffer = buffer()?;
    for (i, slot) in slots.into_iter().enumerate() {
        // SAFETY: as in `write_words`; `i` < MAX_TRANSFER_CAPS.
        unsafe { addr_of_mut!((*buffer).receive_slots[i]).write_volatile(slot) };
    }
    Ok(())
}

/// The receive slots currently named (all NULL without a buffer).
pub fn receive_slots() -> [CapSlot; MAX_TRANSFER_CAPS] {
    let mut slots = [CapSlot::NULL; MAX_TRANSFER_CAPS];
    if let Ok(buffer) = buffer() {
        for (i, slot) in slots.iter_mut().enumerate() {
            // SAFETY: as in `write_words`; `i` < MAX_TRANSFER_CAPS.
            *slot = unsafe { addr_of_mut!((*buffer).receive_slots[i]).read_volatile() };
        }
    }
    slots
}
