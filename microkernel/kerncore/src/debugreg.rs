//! Debug registers (SDM Vol. 3B §19.2): their values after reset, and how
//! DR6 and DR7 change when a debug exception that caused a VM exit is
//! reflected into the guest.

/// DR6 and DR7 after reset.
pub const DR6_INIT: u64 = 0xffff_0ff0;
pub const DR7_INIT: u64 = 0x400;

/// DR6: B0-B3 (which breakpoint matched), BD (a debug-register access
/// with DR7.GD set), BS (single step), and RTM, the one active-low cause.
pub const DR6_B0_B3: u64 = 0xf;
pub const DR6_BD: u64 = 1 << 13;
pub const DR6_BS: u64 = 1 << 14;
pub const DR6_RTM: u64 = 1 << 16;

/// DR7.GD: debug-register accesses raise #DB (BD). Cleared as the #DB is delivered.
pub const DR7_GD: u64 = 1 << 13;

/// The causes of a debug exception as VMX's exit qualification and its
/// pending-debug-exceptions field give them (SDM Vol. 3C Table 28-1):
/// B0-B3, BD, BS and RTM, all active high, and bit 12 (an enabled
/// breakpoint matched), which DR6 does not have.
pub const PENDING_CAUSES: u64 = DR6_B0_B3 | 1 << 12 | DR6_BD | DR6_BS | DR6_RTM;

/// DR6 once a debug exception with `causes` is delivered: the breakpoint
/// bits are replaced (SDM: "certain debug exceptions may clear bits 0-3"),
/// BD and BS are added, RTM is cleared if the exception happened in a
/// transactional region (the bit is active low), and the bits fixed to 1
/// stay 1.
pub const fn dr6_after_debug_exception(dr6: u64, causes: u64) -> u64 {
    let causes = causes & PENDING_CAUSES & !(1 << 12);
    let dr6 = (dr6 & !DR6_B0_B3) | DR6_INIT | causes;
    dr6 ^ (causes & DR6_RTM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_debug_exception_sets_its_causes_in_dr6() {
        assert_eq!(dr6_after_debug_exception(DR6_INIT, DR6_BS), 0xffff_4ff0);
        assert_eq!(dr6_after_debug_exception(DR6_INIT, 1 | 1 << 12), 0xffff_0ff1);
        // The previous breakpoint's bit goes, BS stays (it is never cleared).
        assert_eq!(dr6_after_debug_exception(0xffff_4ff2, 1), 0xffff_4ff1);
        assert_eq!(dr6_after_debug_exception(DR6_INIT, DR6_BD), 0xffff_2ff0);
        // RTM is active low in DR6.
        assert_eq!(dr6_after_debug_exception(DR6_INIT, DR6_RTM | 2), 0xfffe_0ff2);
        // Causes outside the format are ignored.
        assert_eq!(dr6_after_debug_exception(DR6_INIT, 1 << 40), DR6_INIT);
    }
}
