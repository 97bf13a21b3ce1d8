//! The ELF entry point and the panic handler.

use crate::{arch, exit, ipc_buffer, startup};
use abi::startup::StartupInfo;
use core::sync::atomic::{AtomicBool, Ordering};

// The creator starts the first thread here with `rdi` = address of the
// startup page and `rsp` = top of the stack. Clear the frame pointer (end of
// backtraces), align the stack as the SysV ABI expects before a call, and
// hand over to Rust with `rdi` untouched as the first argument.
core::arch::global_asm!(
    ".globl _start",
    ".type _start, @function",
    "_start:",
    "xor ebp, ebp",
    "and rsp, -16",
    "call {start}",
    "ud2",
    ".size _start, . - _start",
    start = sym rt_start,
);

unsafe extern "Rust" {
    /// Defined by [`entry!`](crate::entry) in the task binary.
    fn __tessera_task_main();
}

extern "C" fn rt_start(startup_address: u64) -> ! {
    if startup::check_address(startup_address).is_err() {
        exit();
    }
    let info = core::ptr::with_exposed_provenance::<StartupInfo>(startup_address as usize);
    // SAFETY: the address is aligned for StartupInfo and the whole structure
    // lies in the user half (checked above). By the startup contract
    // (abi::startup) the creator maps that page read-only for the task's
    // whole life and never changes it, so a shared 'static reference is
    // valid and nothing mutates behind it.
    let info: &'static StartupInfo = unsafe { &*info };
    if startup::check_contents(info).is_err() {
        exit();
    }
    startup::set(info);
    if let Some(buffer) = startup::ipc_buffer_address(info) {
        ipc_buffer::set(buffer);
    }
    // SAFETY: `entry!` defines this symbol as a safe `extern "Rust" fn()`
    // with exactly this signature; a binary without `entry!` does not link.
    unsafe { __tessera_task_main() };
    exit()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    static PANICKING: AtomicBool = AtomicBool::new(false);
    // A panic while reporting a panic goes straight to the fault.
    if !PANICKING.swap(true, Ordering::Relaxed) {
        match info.location() {
            Some(at) => crate::log!("panicked at {}:{}:{}: {}", at.file(), at.line(), at.column(), info.message()),
            None => crate::log!("panicked: {}", info.message()),
        }
    }
    arch::trap()
}
