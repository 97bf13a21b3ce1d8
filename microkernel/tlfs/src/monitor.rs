//! The monitored notification page (TLFS 11.7, 11.10.8, 11.10.9,
//! `HV_MONITOR_PAGE`): four groups of 32 triggers that guests set in a page
//! common to two partitions, each with a latency hint and the HvSignalEvent
//! parameters the hypervisor signals with on the originator's behalf.
//!
//! Guests and the hypervisor change the page at the same time, so it is
//! read and written as 64-bit atomic words: the `*_WORD` indices and bit
//! shifts below locate each field, and [`HvMonitorPage`] pins them to the
//! TLFS layout.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Trigger groups in a page.
pub const MONITOR_GROUPS: usize = 4;
/// Triggers in a group (one bit each of `Pending` and `Armed`).
pub const TRIGGERS_PER_GROUP: usize = 32;
/// Triggers in a page.
pub const MONITOR_TRIGGERS: usize = MONITOR_GROUPS * TRIGGERS_PER_GROUP;
/// 64-bit words in a page.
pub const MONITOR_PAGE_WORDS: usize = 512;

/// `HV_MONITOR_TRIGGER_GROUP`: bit n of `pending` asks for notification n;
/// `armed` says the hypervisor has seen it pending (a notification waits
/// at least its latency after arming). Both change together, atomically.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvMonitorTriggerGroup {
    pub pending: u32,
    pub armed: u32,
}

impl HvMonitorTriggerGroup {
    pub const fn from_word(word: u64) -> HvMonitorTriggerGroup {
        HvMonitorTriggerGroup { pending: word as u32, armed: (word >> 32) as u32 }
    }

    pub const fn to_word(self) -> u64 {
        (self.armed as u64) << 32 | self.pending as u64
    }
}

/// `HV_MONITOR_PARAMETER`: the HvSignalEvent a trigger makes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvMonitorParameter {
    pub connection_id: u32,
    pub flag_number: u16,
    pub reserved: u16,
}

impl HvMonitorParameter {
    pub const fn from_word(word: u64) -> HvMonitorParameter {
        HvMonitorParameter {
            connection_id: word as u32,
            flag_number: (word >> 32) as u16,
            reserved: (word >> 48) as u16,
        }
    }
}

/// `HV_MONITOR_PAGE`. The reserved areas are the hypervisor's (Linux
/// names part of `reserved2` `next_checktime`); Tessera keeps its own
/// state elsewhere and never reads them.
#[repr(C)]
#[derive(Clone, Copy, Debug, IntoBytes, FromBytes, Immutable, KnownLayout)]
pub struct HvMonitorPage {
    /// `HV_MONITOR_TRIGGER_STATE`: bits 0-3 enable groups 0-3.
    pub trigger_state: u32,
    pub reserved1: u32,
    pub trigger_group: [HvMonitorTriggerGroup; MONITOR_GROUPS],
    pub reserved2: [u8; 536],
    /// Per trigger: how long to wait between inspections, in 100 ns units.
    pub latency: [[u16; TRIGGERS_PER_GROUP]; MONITOR_GROUPS],
    pub reserved3: [u8; 256],
    pub parameter: [[HvMonitorParameter; TRIGGERS_PER_GROUP]; MONITOR_GROUPS],
    pub reserved4: [u8; 1984],
}

const _: () = assert!(size_of::<HvMonitorPage>() == MONITOR_PAGE_WORDS * 8);
const _: () = assert!(size_of::<HvMonitorPage>() == crate::msr::HV_PAGE_SIZE);
const _: () = assert!(core::mem::offset_of!(HvMonitorPage, trigger_group) == 8);
const _: () = assert!(core::mem::offset_of!(HvMonitorPage, latency) == 576);
const _: () = assert!(core::mem::offset_of!(HvMonitorPage, parameter) == 1088);

/// The word holding `trigger_state` (its low half).
pub const TRIGGER_STATE_WORD: usize = core::mem::offset_of!(HvMonitorPage, trigger_state) / 8;
/// Group enable bits in `trigger_state`.
pub const GROUP_ENABLE_MASK: u32 = (1 << MONITOR_GROUPS) - 1;

/// The word of trigger group `group`.
pub const fn trigger_group_word(group: usize) -> usize {
    core::mem::offset_of!(HvMonitorPage, trigger_group) / 8 + group
}

/// The word holding trigger `trigger`'s latency (of all [`MONITOR_TRIGGERS`],
/// group-major), and the bit shift of its `u16` there.
pub const fn latency_word(trigger: usize) -> (usize, u32) {
    let byte = core::mem::offset_of!(HvMonitorPage, latency) + trigger * 2;
    (byte / 8, (byte % 8) as u32 * 8)
}

/// The word of trigger `trigger`'s parameter.
pub const fn parameter_word(trigger: usize) -> usize {
    core::mem::offset_of!(HvMonitorPage, parameter) / 8 + trigger
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::{FromZeros, IntoBytes};

    /// Each field read back from the words where the helpers say it is.
    #[test]
    fn word_helpers_locate_each_field() {
        let mut page = HvMonitorPage::new_zeroed();
        page.trigger_state = 0b0101;
        page.trigger_group[2] = HvMonitorTriggerGroup { pending: 0x8000_0001, armed: 1 };
        page.latency[3][31] = 0xbeef;
        page.latency[1][5] = 0x1234;
        page.parameter[2][7] = HvMonitorParameter { connection_id: 0x12_3456, flag_number: 9, reserved: 0 };
        let words: Vec<u64> =
            page.as_bytes().chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(words.len(), MONITOR_PAGE_WORDS);
        assert_eq!(words[TRIGGER_STATE_WORD] as u32 & GROUP_ENABLE_MASK, 0b0101);
        assert_eq!(HvMonitorTriggerGroup::from_word(words[trigger_group_word(2)]), page.trigger_group[2]);
        assert_eq!(page.trigger_group[2].to_word(), words[trigger_group_word(2)]);
        for (trigger, want) in [(3 * 32 + 31, 0xbeef), (32 + 5, 0x1234), (0, 0)] {
            let (word, shift) = latency_word(trigger);
            assert_eq!((words[word] >> shift) as u16, want, "trigger {trigger}");
        }
        assert_eq!(HvMonitorParameter::from_word(words[parameter_word(2 * 32 + 7)]), page.parameter[2][7]);
    }
}
