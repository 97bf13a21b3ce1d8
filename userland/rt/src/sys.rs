//! The one raw system call (see the convention in [`abi`]).
//!
//! Everything else in this crate is built on [`syscall`]; it is public so
//! tests (like the `hostile` task) can pass the kernel values the typed
//! wrappers would never produce.

use abi::{ErrorCode, MessageInfo, Sysnum};
use core::arch::asm;

/// What the kernel returns: `rax`, `rdi`, `rsi` and the four message registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysReturn {
    pub error: ErrorCode,
    /// The sender's badge (receive side).
    pub badge: u64,
    pub info: MessageInfo,
    /// MR0..MR3 (`rdx`, `r8`, `r9`, `r10`).
    pub mrs: [u64; 4],
}

/// Traps into the kernel: `rax` = `sysnum`, `rdi` = `slot`, `rsi` = `info`,
/// `rdx`/`r8`/`r9`/`r10` = `mrs`, `r12` = `timeout` (ticks, 0 = forever, or
/// a TSC deadline with `info.tsc_deadline()`).
#[inline]
pub fn syscall(sysnum: Sysnum, slot: u64, info: MessageInfo, mrs: [u64; 4], timeout: u64) -> SysReturn {
    let (rax, rdi, rsi, rdx, r8, r9, r10): (u64, u64, u64, u64, u64, u64, u64);
    // SAFETY: `syscall` enters the kernel and returns to the next
    // instruction. By the ABI it changes only the output registers listed
    // here (plus rcx and r11, which the instruction itself overwrites; r12 is
    // treated as clobbered too) and does not touch the user stack. The only
    // task memory it writes is the IPC buffer, which this crate never holds a
    // reference to (see `ipc_buffer`), and the asm block is not `nomem`, so
    // the compiler does not cache memory across it.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") sysnum.0 => rax,
            inlateout("rdi") slot => rdi,
            inlateout("rsi") info.into_bits() => rsi,
            inlateout("rdx") mrs[0] => rdx,
            inlateout("r8") mrs[1] => r8,
            inlateout("r9") mrs[2] => r9,
            inlateout("r10") mrs[3] => r10,
            inlateout("r12") timeout => _,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    SysReturn { error: ErrorCode(rax), badge: rdi, info: MessageInfo::from_bits(rsi), mrs: [rdx, r8, r9, r10] }
}
