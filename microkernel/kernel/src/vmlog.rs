//! Kernel lines that a less trusted party can cause, each kind under its
//! own [`LogLimit`], so no partition and no task can flood the console from
//! ring 0, where every line is printed with the kernel lock held and
//! interrupts off. What is held back is counted and said by the next line
//! let through.
//!
//! - VM lines (`vm_println!`): a VM entry the CPU refuses, a VP stopped
//!   because its handler is gone, a VMCS field that cannot be written.
//! - Task lines (`task_println!`): a thread that faulted with no handler.

use lograte::{LogLimit, Verdict};

/// 10 lines at once, then one a second (the kernel ticks at 100 Hz).
const BURST: u32 = 10;
const TICKS_PER_LINE: u64 = 100;

pub static VM_LINES: spin::Mutex<LogLimit> = spin::Mutex::new(LogLimit::new(BURST, TICKS_PER_LINE));
pub static TASK_LINES: spin::Mutex<LogLimit> = spin::Mutex::new(LogLimit::new(BURST, TICKS_PER_LINE));

/// Whether a line under `limit` may be printed now; `Some(n)`: yes, after
/// saying that `n` lines were held back (if not 0).
pub fn allow(limit: &spin::Mutex<LogLimit>) -> Option<u64> {
    match limit.lock().check(crate::arch::apic::ticks()) {
        Verdict::Log { held_back } => Some(held_back),
        Verdict::Hold => None,
    }
}

/// `println!` under `limit` (a static of this module), saying first how
/// many lines `what` were held back, if any.
#[macro_export]
macro_rules! limited_println {
    ($limit:ident, $what:literal, $($arg:tt)*) => {
        if let Some(held_back) = $crate::vmlog::allow(&$crate::vmlog::$limit) {
            if held_back != 0 {
                platform::println!(concat!("kernel: {} lines ", $what, " held back (rate limit)"), held_back);
            }
            platform::println!($($arg)*);
        }
    };
}

/// `println!` for a line about a VM that a guest or a VMM can cause: rate
/// limited (see the module).
#[macro_export]
macro_rules! vm_println {
    ($($arg:tt)*) => { $crate::limited_println!(VM_LINES, "about VMs", $($arg)*) };
}

/// `println!` for a line about a task that the task can cause: rate
/// limited (see the module).
#[macro_export]
macro_rules! task_println {
    ($($arg:tt)*) => { $crate::limited_println!(TASK_LINES, "about tasks", $($arg)*) };
}
