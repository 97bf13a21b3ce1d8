//! Where a partition's VPs run, and the topology its CPUID may then claim
//! (issue #10, the core scheduler: "a partition's VPs are told which are
//! siblings"). Pure, host-tested; the VID's plan (`partitions.rs`) applies
//! it with the kernel's sibling map from the startup page.
//!
//! Every VP's x2APIC ID is its index, so a guest told 2 threads per core
//! takes VPs 2k and 2k+1 for the two threads of core k. That is true only
//! if they run on the two SMT siblings of one host core, and only under
//! the core scheduler, which keeps those siblings to one partition at a
//! time. So, under the core policy on a machine with SMT:
//!
//! - a partition whose manifest names no `cpus` gets its pairs on the
//!   cores in turn, VP 2k on a core's first thread and 2k+1 on its second
//!   (a VID's partitions continue the round where the last one stopped,
//!   spreading them over the cores), and is told 2 threads per core;
//! - one whose `cpus` put every pair on two siblings is told 2 as well;
//! - one whose `cpus` put a pair elsewhere keeps its CPUs and is told 1
//!   thread per core, with the reason ([`Pairing::Conflict`]).
//!
//! Anywhere else (no core policy, no SMT, one VP) every VP is a core of
//! its own, as before.

use abi::limits::{MAX_CPUS, MAX_VPS_PER_PARTITION};

/// The CPUs of a partition's VPs, by VP index.
pub type Cpus = heapless::Vec<u32, MAX_VPS_PER_PARTITION>;

/// The cores with at least two online threads, as the first two of them
/// (ascending), in the order of their lowest CPU; `siblings` is the
/// kernel's map (bit `c` of entry `i`: CPU `c` shares CPU `i`'s core) and
/// only CPUs below `cpus` count.
pub fn smt_cores(siblings: &[u32], cpus: u32) -> heapless::Vec<(u32, u32), MAX_CPUS> {
    let online = if cpus >= 32 { u32::MAX } else { (1u32 << cpus) - 1 };
    let mut cores = heapless::Vec::new();
    for (i, &mates) in siblings.iter().enumerate().take(cpus.min(MAX_CPUS as u32) as usize) {
        let mates = mates & online & !(1 << i);
        // Each core once, from its lowest CPU.
        if mates == 0 || mates & ((1u32 << i) - 1) != 0 {
            continue;
        }
        let _ = cores.push((i as u32, mates.trailing_zeros()));
    }
    cores
}

/// Whether CPUs `a` and `b` are two SMT siblings.
pub fn are_siblings(siblings: &[u32], a: u32, b: u32) -> bool {
    a != b && siblings.get(a as usize).is_some_and(|m| m.checked_shr(b).is_some_and(|m| m & 1 == 1))
}

/// What a partition is told of its topology, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pairing {
    /// VPs 2k and 2k+1 run on two siblings of one core: 2 threads per core.
    Pairs,
    /// Its CPUs put VPs `vp` and `vp + 1` on CPUs `cpus` that are not two
    /// siblings: 1 thread per core.
    Conflict { vp: u32, cpus: (u32, u32) },
    /// Not the core policy, no SMT, or a single VP: 1 thread per core.
    Cores,
}

impl Pairing {
    /// Threads per core the partition's CPUID says.
    pub fn threads_per_core(self) -> u32 {
        if self == Pairing::Pairs { 2 } else { 1 }
    }
}

/// Places the `vcpus` VPs of one partition: `requested(vp)` is the CPU its
/// manifest names for a VP (if any, already checked against the machine),
/// `cpus` the CPUs the kernel schedules on, `siblings` the kernel's sibling
/// map, `core` whether the core policy is on; `next_core` is the VID's
/// round over [`smt_cores`] (advanced by the pairs placed here).
pub fn place(
    vcpus: u32,
    requested: impl Fn(u32) -> Option<u32>,
    cpus: u32,
    siblings: &[u32],
    core: bool,
    next_core: &mut usize,
) -> (Cpus, Pairing) {
    let vcpus = vcpus.clamp(1, MAX_VPS_PER_PARTITION as u32);
    let cpus = cpus.max(1);
    let cores = smt_cores(siblings, cpus);
    // Asked once per VP (the VID's `requested` logs a CPU it moves).
    let asked: heapless::Vec<Option<u32>, MAX_VPS_PER_PARTITION> = (0..vcpus).map(requested).collect();
    let by_index = |vp: u32| asked[vp as usize].unwrap_or(vp % cpus);
    let mut placed = Cpus::new();
    if !core || cores.is_empty() || vcpus < 2 {
        placed.extend((0..vcpus).map(by_index));
        return (placed, Pairing::Cores);
    }
    if asked[0].is_none() {
        for vp in 0..vcpus {
            let (first, second) = cores[(*next_core + vp as usize / 2) % cores.len()];
            let _ = placed.push(if vp % 2 == 0 { first } else { second });
        }
        *next_core = (*next_core + vcpus.div_ceil(2) as usize) % cores.len();
        return (placed, Pairing::Pairs);
    }
    placed.extend((0..vcpus).map(by_index));
    for vp in (0..vcpus.saturating_sub(1)).step_by(2) {
        let (a, b) = (placed[vp as usize], placed[vp as usize + 1]);
        if !are_siblings(siblings, a, b) {
            return (placed, Pairing::Conflict { vp, cpus: (a, b) });
        }
    }
    (placed, Pairing::Pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU `-smp 4,sockets=1,cores=2,threads=2`: CPUs 0, 1 | 2, 3.
    const QEMU: [u32; 4] = [0b0010, 0b0001, 0b1000, 0b0100];
    /// Linux-like numbering on 2 cores x 2 threads: CPUs 0, 2 | 1, 3.
    const APART: [u32; 4] = [0b0100, 0b1000, 0b0001, 0b0010];

    fn none(_: u32) -> Option<u32> {
        None
    }

    #[test]
    fn cores_come_from_the_sibling_map() {
        assert_eq!(smt_cores(&QEMU, 4).as_slice(), &[(0, 1), (2, 3)]);
        assert_eq!(smt_cores(&APART, 4).as_slice(), &[(0, 2), (1, 3)]);
        // A CPU the kernel does not schedule on is no thread.
        assert_eq!(smt_cores(&QEMU, 3).as_slice(), &[(0, 1)]);
        assert!(smt_cores(&[0; 4], 4).is_empty());
        assert!(smt_cores(&[], 4).is_empty());
        // A map that names itself or CPUs beyond 32: no panic.
        assert_eq!(smt_cores(&[0b11, 0b11], 40).as_slice(), &[(0, 1)]);
        assert!(are_siblings(&QEMU, 2, 3) && are_siblings(&QEMU, 1, 0));
        assert!(!are_siblings(&QEMU, 0, 2) && !are_siblings(&QEMU, 0, 0) && !are_siblings(&QEMU, 9, 40));
    }

    #[test]
    fn the_core_policy_puts_pairs_on_siblings_and_spreads_partitions() {
        let mut next = 0;
        let (cpus, pairing) = place(2, none, 4, &QEMU, true, &mut next);
        assert_eq!((cpus.as_slice(), pairing), (&[0, 1][..], Pairing::Pairs));
        // The next partition starts on the next core.
        let (cpus, pairing) = place(4, none, 4, &QEMU, true, &mut next);
        assert_eq!((cpus.as_slice(), pairing), (&[2, 3, 0, 1][..], Pairing::Pairs));
        assert_eq!(pairing.threads_per_core(), 2);
        // An odd VP count: the last VP alone on its core's first thread.
        let (cpus, _) = place(3, none, 4, &APART, true, &mut 0);
        assert_eq!(cpus.as_slice(), &[0, 2, 1]);
        // Every placed pair is a pair of siblings, whatever the numbering.
        for map in [QEMU, APART] {
            let mut next = 1;
            for vcpus in 2..=8 {
                let (cpus, pairing) = place(vcpus, none, 4, &map, true, &mut next);
                assert_eq!(pairing, Pairing::Pairs);
                for pair in cpus.chunks_exact(2) {
                    assert!(are_siblings(&map, pair[0], pair[1]), "{map:?}: {cpus:?}");
                }
            }
        }
    }

    #[test]
    fn manifest_cpus_are_kept_and_told_only_if_pairs_are_siblings() {
        let manifest = |list: &'static [u32]| move |vp: u32| Some(list[vp as usize % list.len()]);
        let (cpus, pairing) = place(2, manifest(&[0, 2]), 4, &QEMU, true, &mut 0);
        assert_eq!((cpus.as_slice(), pairing), (&[0, 2][..], Pairing::Conflict { vp: 0, cpus: (0, 2) }));
        assert_eq!(pairing.threads_per_core(), 1);
        let (_, pairing) = place(2, manifest(&[3, 2]), 4, &QEMU, true, &mut 0);
        assert_eq!(pairing, Pairing::Pairs);
        // Two VPs on one CPU are not siblings.
        let (_, pairing) = place(2, manifest(&[1]), 4, &QEMU, true, &mut 0);
        assert_eq!(pairing, Pairing::Conflict { vp: 0, cpus: (1, 1) });
        // The second pair is the one that is wrong.
        let (_, pairing) = place(4, manifest(&[0, 1, 2, 0]), 4, &QEMU, true, &mut 0);
        assert_eq!(pairing, Pairing::Conflict { vp: 2, cpus: (2, 0) });
        // The round over the cores is only for partitions the VID places.
        let mut next = 0;
        place(2, manifest(&[2, 3]), 4, &QEMU, true, &mut next);
        assert_eq!(next, 0);
    }

    #[test]
    fn each_vp_is_asked_for_once() {
        let asked = core::cell::Cell::new(0);
        let requested = |vp: u32| {
            asked.set(asked.get() + 1);
            Some(vp)
        };
        place(4, requested, 4, &QEMU, true, &mut 0);
        assert_eq!(asked.get(), 4);
    }

    #[test]
    fn without_the_policy_smt_or_a_second_vp_every_vp_is_a_core() {
        let mut next = 0;
        let (cpus, pairing) = place(4, none, 4, &QEMU, false, &mut next);
        assert_eq!((cpus.as_slice(), pairing), (&[0, 1, 2, 3][..], Pairing::Cores));
        let (cpus, pairing) = place(2, none, 4, &[0; 4], true, &mut next);
        assert_eq!((cpus.as_slice(), pairing), (&[0, 1][..], Pairing::Cores));
        let (cpus, pairing) = place(1, none, 4, &QEMU, true, &mut next);
        assert_eq!((cpus.as_slice(), pairing), (&[0][..], Pairing::Cores));
        assert_eq!(next, 0);
        // Absurd inputs stay in range.
        let (cpus, pairing) = place(0, none, 0, &QEMU, true, &mut next);
        assert_eq!((cpus.as_slice(), pairing), (&[0][..], Pairing::Cores));
        let (cpus, _) = place(99, none, 4, &QEMU, true, &mut next);
        assert_eq!(cpus.len(), MAX_VPS_PER_PARTITION);
    }
}
