//! Traps from ring 3: syscalls, interrupts and faults of user threads.

use crate::arch::entry::SYSCALL_VECTOR;
use crate::arch::idt::TrapFrame;

/// Handles a trap from user mode and returns the context to resume.
pub fn from_user(frame: &mut TrapFrame) -> *mut TrapFrame {
    match frame.vector {
        SYSCALL_VECTOR => {
            // No syscall is wired up yet: fail it rather than guess.
            frame.rax = abi::ErrorCode::INVALID_SYSCALL.0;
            frame
        }
        _ => crate::arch::idt::fatal_user_exception(frame),
    }
}
