//! The task's startup page ([`StartupInfo`]): its name, IPC buffer and
//! named capabilities.
//!
//! `_start` checks the page once ([`check_address`], then the magic) and
//! records it; [`info`] returns it from then on.

use abi::startup::{STARTUP_MAGIC, StartupInfo};
use abi::{IpcBuffer, USER_END, USER_MIN};
use core::mem::{align_of, size_of};

/// Why the startup page or the IPC buffer address given to a task is unusable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartupError {
    /// Zero, misaligned, or not wholly inside the user half.
    BadAddress,
    /// The page does not start with [`STARTUP_MAGIC`].
    BadMagic,
}

/// True if `[address, address + size)` lies in the user half and `address`
/// is a multiple of `align`.
pub fn user_range_ok(address: u64, size: usize, align: usize) -> bool {
    let Some(end) = address.checked_add(size as u64) else {
        return false;
    };
    address >= USER_MIN && end <= USER_END && address.is_multiple_of(align as u64)
}

/// Checks the address `rdi` held at entry, before anything reads it.
pub fn check_address(address: u64) -> Result<(), StartupError> {
    if user_range_ok(address, size_of::<StartupInfo>(), align_of::<StartupInfo>()) {
        Ok(())
    } else {
        Err(StartupError::BadAddress)
    }
}

/// Checks the page's contents once mapped.
pub fn check_contents(info: &StartupInfo) -> Result<(), StartupError> {
    if info.magic == STARTUP_MAGIC { Ok(()) } else { Err(StartupError::BadMagic) }
}

/// The IPC buffer address of the startup page, if it is usable.
pub fn ipc_buffer_address(info: &StartupInfo) -> Option<u64> {
    user_range_ok(info.ipc_buffer, size_of::<IpcBuffer>(), align_of::<IpcBuffer>()).then_some(info.ipc_buffer)
}

#[cfg(target_os = "none")]
#[allow(unsafe_code)]
mod current {
    use super::StartupInfo;
    use core::sync::atomic::{AtomicPtr, Ordering};

    static EMPTY: StartupInfo = StartupInfo::empty();
    static INFO: AtomicPtr<StartupInfo> = AtomicPtr::new(core::ptr::null_mut());

    pub(crate) fn set(info: &'static StartupInfo) {
        INFO.store(core::ptr::from_ref(info).cast_mut(), Ordering::Release);
    }

    /// The task's startup page (an empty one before `_start` has checked it).
    pub fn info() -> &'static StartupInfo {
        let info = INFO.load(Ordering::Acquire);
        // SAFETY: INFO is null or was stored by `set` from a `&'static
        // StartupInfo` (the read-only startup page `_start` checked, which
        // stays mapped and unchanged for the task's life).
        unsafe { info.as_ref() }.unwrap_or(&EMPTY)
    }
}

#[cfg(target_os = "none")]
pub use current::info;
#[cfg(target_os = "none")]
pub(crate) use current::set;

/// CPUs the kernel schedules on (at least 1).
pub fn cpu_count() -> u32 {
    #[cfg(target_os = "none")]
    {
        info().cpu_count.max(1)
    }
    #[cfg(not(target_os = "none"))]
    {
        1
    }
}

/// Each CPU's SMT siblings, by CPU index (bit `c` of entry `i`: CPU `c`
/// shares CPU `i`'s core), as the kernel found them; all 0 without SMT or
/// on the host.
pub fn siblings() -> [u32; abi::limits::MAX_CPUS] {
    #[cfg(target_os = "none")]
    {
        info().siblings
    }
    #[cfg(not(target_os = "none"))]
    {
        [0; abi::limits::MAX_CPUS]
    }
}

/// The TSC's frequency in Hz as the kernel measured it (0 if unknown or on
/// the host).
pub fn tsc_hz() -> u64 {
    #[cfg(target_os = "none")]
    {
        info().tsc_hz
    }
    #[cfg(not(target_os = "none"))]
    {
        0
    }
}

/// The host's time of day now, in seconds since 1970 (UTC): what ring 0
/// read from the machine's RTC at boot, carried on by the TSC; `None` if
/// it could not be read (or on the host).
pub fn wall_clock() -> Option<u64> {
    #[cfg(target_os = "none")]
    {
        let info = info();
        let since = crate::arch::rdtsc().saturating_sub(info.wall_clock_tsc) / info.tsc_hz.max(1);
        (info.wall_clock != 0).then(|| info.wall_clock + since)
    }
    #[cfg(not(target_os = "none"))]
    {
        None
    }
}

/// The task's name (from the startup page; "" on the host).
pub fn task_name() -> &'static str {
    #[cfg(target_os = "none")]
    {
        info().task_name.as_str()
    }
    #[cfg(not(target_os = "none"))]
    {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_addresses_must_be_aligned_user_addresses() {
        assert_eq!(check_address(0x40_0000), Ok(()));
        assert_eq!(check_address(0), Err(StartupError::BadAddress));
        assert_eq!(check_address(0x40_0004), Err(StartupError::BadAddress));
        assert_eq!(check_address(0xffff_ffff_8000_0000), Err(StartupError::BadAddress));
        assert_eq!(check_address(USER_END - 8), Err(StartupError::BadAddress));
        assert_eq!(check_address(u64::MAX - 7), Err(StartupError::BadAddress));
    }

    #[test]
    fn the_magic_and_the_ipc_buffer_are_checked() {
        let mut info = StartupInfo::empty();
        assert_eq!(check_contents(&info), Ok(()));
        assert_eq!(ipc_buffer_address(&info), None);
        info.ipc_buffer = 0x7000_0000;
        assert_eq!(ipc_buffer_address(&info), Some(0x7000_0000));
        info.ipc_buffer = 0x7000_0001;
        assert_eq!(ipc_buffer_address(&info), None);
        info.ipc_buffer = USER_END;
        assert_eq!(ipc_buffer_address(&info), None);
        info.magic = 0;
        assert_eq!(check_contents(&info), Err(StartupError::BadMagic));
    }
}
