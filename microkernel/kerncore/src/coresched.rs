//! Core scheduling, the pure parts: which CPUs are SMT siblings, and the
//! decision at guest entry that keeps the siblings of a core from running
//! VPs of different partitions at once when one of them is core-exclusive
//! (the Hyper-V core scheduler; `docs/ARCHITECTURE.md` §4.6, §4.11).
//!
//! Partitions are named here as the kernel's per-CPU `IN_PARTITION` names
//! them: index + 1, 0 for none. The kernel calls [`decide`] under its one
//! lock, so the per-core [`Turn`] needs no more synchronisation.

/// The SMT level's shift of the x2APIC ID, from CPUID leaf 0xB subleaf 0
/// (`eax`, `ecx`): `None` if that level is not SMT (or the leaf is absent).
pub fn smt_shift(eax: u32, ecx: u32) -> Option<u32> {
    ((ecx >> 8) & 0xff == 1).then_some(eax & 0x1f)
}

/// The CPUs of `online` but `cpu` whose APIC IDs (`apic_ids`, by CPU
/// index) share `cpu`'s core: the same ID above the SMT `shift`.
pub fn siblings(apic_ids: &[u32], online: u32, cpu: usize, shift: u32) -> u32 {
    let Some(&mine) = apic_ids.get(cpu) else { return 0 };
    let core = mine.checked_shr(shift).unwrap_or(0);
    crate::smp::cpus_in(online & !(1u32.checked_shl(cpu as u32).unwrap_or(0)))
        .filter(|&c| apic_ids.get(c).is_some_and(|&id| id.checked_shr(shift).unwrap_or(0) == core))
        .fold(0, |mask, c| mask | (1 << c))
}

/// The cores that have SMT siblings, from a sibling map (bit `c` of
/// `map[i]`: CPU `c` shares CPU `i`'s core): each core's CPUs joined by
/// `+`, cores apart by spaces, e.g. "0+1 2+3"; empty without siblings.
pub fn describe_cores(map: &[u32]) -> heapless::String<128> {
    use core::fmt::Write;
    let mut out = heapless::String::new();
    for (i, &mates) in map.iter().enumerate() {
        // A core is named once, by its lowest CPU.
        if mates == 0 || mates & ((1u32 << i.min(31)) - 1) != 0 {
            continue;
        }
        let sep = if out.is_empty() { "" } else { " " };
        let _ = write!(out, "{sep}{i}");
        for c in crate::smp::cpus_in(mates) {
            let _ = write!(out, "+{c}");
        }
    }
    out
}

/// The CPUs of `mask` joined by `+`, e.g. "0+2"; empty for none.
pub fn describe_cpus(mask: u32) -> heapless::String<96> {
    use core::fmt::Write;
    let mut out = heapless::String::new();
    for c in crate::smp::cpus_in(mask) {
        let _ = write!(out, "{}{c}", if out.is_empty() { "" } else { "+" });
    }
    out
}

/// Whose turn a core is: the partition whose VPs its threads may run
/// against those of another (core-exclusive) partition, since when, and
/// the partition that waits for the next turn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Turn {
    pub owner: u32,
    pub since: u64,
    pub waiting: u32,
}

/// What a CPU does with the VP of partition `me` it is about to enter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Enter guest mode.
    Enter,
    /// Not now: run something else or try again. `kick` asks to kick the
    /// siblings that run a clashing partition (the turn is this one's).
    Wait { kick: bool },
}

/// Whether partition `a` may not run on a sibling of `b`: they differ and
/// one of them is core-exclusive (bit `index` of `exclusive`).
pub fn clash(a: u32, b: u32, exclusive: u32) -> bool {
    let excl = |p: u32| p != 0 && exclusive.checked_shr(p - 1).is_some_and(|m| m & 1 == 1);
    a != 0 && b != 0 && a != b && (excl(a) || excl(b))
}

/// Decides the entry of a VP of partition `me` on a CPU whose siblings run
/// VPs of `siblings` (0: none) now, at `now`, with turns of `slice`. The
/// turn passes at its end to the partition that waits for it, or to the
/// first that comes when none waits; a partition denied for another's turn
/// waits for the next one, so two partitions that share a core alternate.
pub fn decide(me: u32, exclusive: u32, siblings: &[u32], turn: &mut Turn, now: u64, slice: u64) -> Decision {
    let expired = now.wrapping_sub(turn.since) >= slice;
    if turn.owner == 0 || (expired && turn.waiting != 0 && turn.waiting != turn.owner) {
        turn.owner = if turn.waiting != 0 { turn.waiting } else { me };
        turn.since = now;
        turn.waiting = 0;
    } else if expired && turn.waiting == 0 && turn.owner != me {
        *turn = Turn { owner: me, since: now, waiting: 0 };
    }
    let busy = siblings.iter().any(|&p| clash(me, p, exclusive));
    if clash(me, turn.owner, exclusive) {
        if turn.waiting == 0 {
            turn.waiting = me;
        }
        return Decision::Wait { kick: false };
    }
    if busy {
        return Decision::Wait { kick: true };
    }
    Decision::Enter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smt_shift_comes_from_the_smt_level_only() {
        // QEMU, 2 threads per core: level type 1 (SMT), shift 1.
        assert_eq!(smt_shift(1, 0x100), Some(1));
        // Level type 2 (core) at subleaf 0: no SMT level there.
        assert_eq!(smt_shift(2, 0x200), None);
        assert_eq!(smt_shift(0, 0), None);
    }

    #[test]
    fn siblings_share_the_id_above_the_shift() {
        // 2 cores x 2 threads: APIC IDs 0, 1 | 2, 3.
        let ids = [0, 1, 2, 3];
        assert_eq!(siblings(&ids, 0b1111, 0, 1), 0b0010);
        assert_eq!(siblings(&ids, 0b1111, 3, 1), 0b0100);
        // An offline sibling is none.
        assert_eq!(siblings(&ids, 0b1101, 0, 1), 0);
        // No SMT: every core its own.
        assert_eq!(siblings(&ids, 0b1111, 2, 0), 0);
        // A CPU beyond the table, a huge shift: no panic.
        assert_eq!(siblings(&ids, 0b1111, 9, 1), 0);
        assert_eq!(siblings(&ids, 0b1111, 0, 40), 0b1110);
    }

    #[test]
    fn cores_are_described_by_their_cpus() {
        assert_eq!(describe_cores(&[0b10, 0b01, 0b1000, 0b0100]).as_str(), "0+1 2+3");
        // Linux-like numbering: siblings n apart; a CPU without one.
        assert_eq!(describe_cores(&[0b100, 0, 0b001, 0]).as_str(), "0+2");
        assert_eq!(describe_cores(&[0; 4]).as_str(), "");
        assert_eq!(describe_cpus(0b1101).as_str(), "0+2+3");
        assert_eq!(describe_cpus(u32::MAX).len(), 10 + 22 * 2 + 31);
        assert_eq!(describe_cpus(0).as_str(), "");
    }

    #[test]
    fn only_an_exclusive_partition_clashes() {
        assert!(clash(1, 2, 0b01));
        assert!(clash(1, 2, 0b10));
        assert!(!clash(1, 2, 0));
        assert!(!clash(1, 1, 0b11));
        assert!(!clash(0, 2, 0b11));
        assert!(!clash(1, 0, 0b11));
        assert!(!clash(40, 41, u32::MAX) || clash(1, 2, u32::MAX));
    }

    #[test]
    fn a_sibling_in_another_exclusive_partition_is_waited_for() {
        let mut turn = Turn::default();
        assert_eq!(decide(1, 0b11, &[0], &mut turn, 0, 10), Decision::Enter);
        assert_eq!(turn.owner, 1);
        // Partition 2 on the sibling during 1's turn: waits, next in line.
        assert_eq!(decide(2, 0b11, &[1], &mut turn, 3, 10), Decision::Wait { kick: false });
        assert_eq!(turn.waiting, 2);
        // 1 runs on within its turn.
        assert_eq!(decide(1, 0b11, &[0], &mut turn, 5, 10), Decision::Enter);
        // The turn ends: it is 2's, which kicks 1 out of the sibling...
        assert_eq!(decide(2, 0b11, &[1], &mut turn, 10, 10), Decision::Wait { kick: true });
        assert_eq!((turn.owner, turn.waiting), (2, 0));
        // ... and 1 now waits for the next turn, and 2 enters once 1 left.
        assert_eq!(decide(1, 0b11, &[2], &mut turn, 11, 10), Decision::Wait { kick: false });
        assert_eq!(decide(2, 0b11, &[0], &mut turn, 11, 10), Decision::Enter);
        // At its end the turn goes back to 1, even if 2 comes first.
        assert_eq!(decide(2, 0b11, &[0], &mut turn, 20, 10), Decision::Wait { kick: false });
        assert_eq!(turn.owner, 1);
        assert_eq!(decide(1, 0b11, &[0], &mut turn, 20, 10), Decision::Enter);
    }

    #[test]
    fn without_an_exclusive_partition_everything_enters() {
        let mut turn = Turn::default();
        for now in 0..30 {
            assert_eq!(decide(1 + (now as u32 % 2), 0, &[2 - (now as u32 % 2)], &mut turn, now, 10), Decision::Enter);
        }
    }

    #[test]
    fn a_turn_nobody_waits_for_goes_to_whoever_comes() {
        let mut turn = Turn { owner: 1, since: 0, waiting: 0 };
        assert_eq!(decide(2, 0b11, &[0], &mut turn, 10, 10), Decision::Enter);
        assert_eq!(turn.owner, 2);
    }
}
