//! Debug registers (SDM Vol. 3B §19.2): their values after reset, and how
//! DR6 and DR7 change when a debug exception that caused a VM exit is
//! reflected into the guest.

/// DR6 and DR7 after reset.
pub const DR6_INIT: u64 = 0xffff_0ff0;
pub const DR7_INIT: u64 = 0x400;

/// DR7: the local and global enable bits of breakpoints 0-3.
pub const DR7_ENABLES: u64 = 0xff;

/// The host's DR7 under SVM: no breakpoint enabled, and every one typed as
/// an I/O breakpoint (R/W = 10b; defined with CR4.DE set). QEMU before 9.1
/// loads DR7 by plain assignment at VMRUN and #VMEXIT and leaves a guest's
/// breakpoints armed in the host; undoing them ([`dr7_steps_to_disarm`])
/// needs an old DR7 whose types QEMU's removal treats as having nothing to
/// remove (I/O breakpoints are not armed by address).
pub const DR7_HOST_SVM: u64 = DR7_INIT | 0x2222_0000;

/// The DR7 writes that disarm, in an emulator that loads DR7 without
/// re-arming (QEMU before 9.1), the breakpoints a guest left armed with its
/// last DR7 `guest`, starting from [`DR7_HOST_SVM`]: first the guest's types
/// without enables (nothing removed, nothing armed), then the host's value
/// (everything of the guest's types removed). `None`: the guest enabled
/// none, so none is armed. On hardware the writes change nothing.
pub const fn dr7_steps_to_disarm(guest: u64) -> Option<[u64; 2]> {
    if guest & DR7_ENABLES == 0 {
        return None;
    }
    Some([(guest & 0xffff_0000) | DR7_INIT, DR7_HOST_SVM])
}

/// The DR7 to write in the host just before an SVM entry so that an
/// emulator which loads DR7 at VMRUN without arming it (QEMU before 9.1)
/// still arms the breakpoints of the guest's DR7 `guest`: the guest's
/// value without GD (a set GD would fault the host's own next DR access).
/// `None`: the guest enabled none. For the run that follows, the guest's
/// DR7 writes must exit: a native one would change what is armed behind
/// the host's value that #VMEXIT loads back, which the disarm steps start
/// from. On hardware VMRUN arms the guest's DR7 itself.
pub const fn dr7_to_rearm(guest: u64) -> Option<u64> {
    if guest & DR7_ENABLES == 0 {
        return None;
    }
    Some(guest & 0xffff_ffff & !DR7_GD)
}

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

    #[test]
    fn the_disarm_steps_go_through_the_guests_types_back_to_the_hosts() {
        assert_eq!(dr7_steps_to_disarm(DR7_INIT), None, "nothing enabled: nothing armed");
        assert_eq!(dr7_steps_to_disarm(0x2222_0400), None);
        // L0 on a 8-byte data write breakpoint.
        let guest = 0x400 | 1 | 0b01 << 16 | 0b10 << 18;
        assert_eq!(dr7_steps_to_disarm(guest), Some([0x400 | 0b01 << 16 | 0b10 << 18, DR7_HOST_SVM]));
        // GD and the other control bits do not travel: only types and lengths.
        assert_eq!(dr7_steps_to_disarm(guest | DR7_GD | 1 << 8), Some([0x400 | 0b1001 << 16, DR7_HOST_SVM]));
        assert_eq!(DR7_HOST_SVM & DR7_ENABLES, 0);
        for slot in 0..4 {
            assert_eq!(DR7_HOST_SVM >> (16 + 4 * slot) & 0b11, 0b10, "slot {slot} is an I/O breakpoint");
        }
    }

    #[test]
    fn a_rearmed_dr7_is_the_guests_without_gd() {
        assert_eq!(dr7_to_rearm(DR7_INIT), None, "nothing enabled: nothing to arm");
        assert_eq!(dr7_to_rearm(DR7_INIT | DR7_GD | 0b01 << 16), None);
        let guest = 0x400 | 1 | 0b01 << 16 | 0b10 << 18;
        assert_eq!(dr7_to_rearm(guest), Some(guest));
        assert_eq!(dr7_to_rearm(guest | DR7_GD), Some(guest), "GD would fault the host's next DR access");
        // LE, GE and every type and length travel; bits 63:32 never do.
        let full = 0xffff_0000 | 1 << 8 | 1 << 9 | 0x400 | 0x55;
        assert_eq!(dr7_to_rearm(full | DR7_GD | 0xdead << 32), Some(full));
    }
}
