//! The host's time of day, read once at boot from the machine's MC146818
//! (`x86defs::cmos`), for tasks through the startup page
//! (`StartupInfo::wall_clock`): no task needs the host's CMOS ports, whose
//! index register also holds the PC's NMI mask.

use core::sync::atomic::{AtomicU64, Ordering};
use x86::io::{inb, outb};
use x86defs::cmos;

/// Seconds since 1970 at [`TSC`] (0: not read, or no valid clock).
static UNIX: AtomicU64 = AtomicU64::new(0);
static TSC: AtomicU64 = AtomicU64::new(0);

/// Reads the clock (on the boot CPU, before any task runs): a few
/// milliseconds at most, while an update is in progress.
pub fn init() {
    let tsc = crate::arch::cpu::timestamp();
    let unix = cmos::read_clock(|index| {
        // SAFETY: ports 0x70-0x71 are the chipset's RTC; reading its time
        // changes nothing, and no task runs yet to hold them. Bit 7 of the
        // index stays clear: NMIs stay enabled.
        unsafe {
            outb(cmos::INDEX_PORT, index & 0x7f);
            inb(cmos::DATA_PORT)
        }
    });
    if let Some(unix) = unix {
        TSC.store(tsc, Ordering::Relaxed);
        UNIX.store(unix, Ordering::Relaxed);
    }
}

/// The time of day read at boot and the TSC then; `(0, 0)` if unknown.
pub fn wall_clock() -> (u64, u64) {
    (UNIX.load(Ordering::Relaxed), TSC.load(Ordering::Relaxed))
}
