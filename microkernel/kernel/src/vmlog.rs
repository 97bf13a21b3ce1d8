//! Kernel lines about VMs that a guest or its VMM can cause (a VM entry the
//! CPU refuses, a VP stopped because its handler is gone, a VMCS field that
//! cannot be written): one [`LogLimit`] for all of them, so no partition
//! can flood the console from ring 0, where every line is printed with the
//! kernel lock held. What is held back is counted and said by the next
//! line let through.

use lograte::{LogLimit, Verdict};

/// 10 lines at once, then one a second (the kernel ticks at 100 Hz).
const BURST: u32 = 10;
const TICKS_PER_LINE: u64 = 100;

static LIMIT: spin::Mutex<LogLimit> = spin::Mutex::new(LogLimit::new(BURST, TICKS_PER_LINE));

/// Whether a VM line may be printed now; `Some(n)`: yes, after saying that
/// `n` lines were held back (if not 0).
pub fn allow() -> Option<u64> {
    match LIMIT.lock().check(crate::arch::apic::ticks()) {
        Verdict::Log { held_back } => Some(held_back),
        Verdict::Hold => None,
    }
}

/// `println!` for a line about a VM that a guest or a VMM can cause: rate
/// limited (see the module).
#[macro_export]
macro_rules! vm_println {
    ($($arg:tt)*) => {
        if let Some(held_back) = $crate::vmlog::allow() {
            if held_back != 0 {
                platform::println!("vm: {held_back} lines held back (rate limit)");
            }
            platform::println!($($arg)*);
        }
    };
}
