//! The kernel-table entries a system takes (`abi::Entries`): what the kernel
//! makes for the root task at boot, what the supervisor makes to start each
//! task (and again at each restart, once the old objects are gone), and
//! every task's `objects` quota. The root task's untyped pool holds every
//! entry the kernel left free and each quota is carved from it, so all of
//! this must fit the kernel's tables (`abi::limits::tables`). The manifest
//! tool reports a system that does not, kind by kind, and
//! [`crate::Manifest::check`] refuses it.

use abi::{Entries, EntryKind};
use elfload::MAX_SEGMENTS;

/// Memory objects of a task's image, stack, memory and IPC buffer, at most:
/// one per ELF segment, then one each.
const TASK_MEMORY_OBJECTS: u16 = MAX_SEGMENTS as u16 + 3;

/// What the kernel makes for the root task (the supervisor) before its
/// untyped: its task, thread and scheduling context, its untyped pool, and
/// its memory objects (image, stack, memory, IPC buffer, the boot image and
/// its startup page).
pub const KERNEL: Entries = Entries::NONE
    .with(EntryKind::Task, 1)
    .with(EntryKind::Thread, 1)
    .with(EntryKind::SchedContext, 1)
    .with(EntryKind::Untyped, 1)
    .with(EntryKind::Memory, TASK_MEMORY_OBJECTS + 2);

/// What the supervisor makes once: the manifest's `endpoints`, its own
/// fault endpoint and the one it naps on (nobody sends there), and a
/// notification for each of the `notified` tasks the broker tells of
/// deliveries (`Manifest::notified_tasks`).
pub const fn shared(endpoints: usize, notified: usize) -> Entries {
    Entries::NONE.with(EntryKind::Endpoint, endpoints as u16 + 2).with(EntryKind::Notification, notified as u16)
}

/// What the supervisor makes for a task it starts: its task and thread,
/// its scheduling context (kept across restarts), its memory objects
/// (those of [`KERNEL`] but the boot image), its untyped pool if it has
/// one, and the notification its interrupt lines signal if it has any.
pub const fn to_start(untyped: bool, interrupts: bool) -> Entries {
    Entries::NONE
        .with(EntryKind::Task, 1)
        .with(EntryKind::Thread, 1)
        .with(EntryKind::SchedContext, 1)
        .with(EntryKind::Memory, TASK_MEMORY_OBJECTS + 1)
        .with(EntryKind::Untyped, untyped as u16)
        .with(EntryKind::Notification, interrupts as u16)
}

/// What the partition manager makes for a partition of `vcpus` VPs: the
/// partition, its VPs, and its RAM, ROM page and legacy-region memory.
pub const fn partition(vcpus: u8) -> Entries {
    Entries::NONE.with(EntryKind::Partition, 1).with(EntryKind::Vp, vcpus as u16).with(EntryKind::Memory, 3)
}

/// The partition manager's journal (its table, kept across its restart):
/// one memory object of [`crate::manifest::JOURNAL_PAGES`].
pub const JOURNAL: Entries = Entries::NONE.with(EntryKind::Memory, 1);

/// What the partition manager makes for `count` monitor connections: a
/// one-page memory object each, the monitor page both partitions map.
pub const fn monitor_pages(count: u16) -> Entries {
    Entries::NONE.with(EntryKind::Memory, count)
}

/// A task's quota when its manifest entry names none: what a VID makes. A
/// VID of the manifest's partitions makes its exit endpoint and a
/// notification; any other task with `untyped` gets what the VID's demo
/// partition takes (two endpoints: the one it looks for partitions with,
/// then the demo's; the partition, its VP and its memory).
pub const fn default_objects(runs_partitions: bool) -> Entries {
    if runs_partitions {
        Entries::NONE.with(EntryKind::Endpoint, 1).with(EntryKind::Notification, 1)
    } else {
        Entries::NONE
            .with(EntryKind::Endpoint, 2)
            .with(EntryKind::Partition, 1)
            .with(EntryKind::Vp, 1)
            .with(EntryKind::Memory, 1)
    }
}

/// What a VID makes for each VP of its partitions: the scheduling context
/// that puts it on its CPU (`SCHED_SET_CPU`).
pub const fn vp_contexts(vcpus: u16) -> Entries {
    Entries::NONE.with(EntryKind::SchedContext, vcpus)
}

/// What a VID makes for each of its partitions besides: the memory that
/// keeps the RAM beneath the partition's overlay pages.
pub const fn overlay_memory(partitions: u16) -> Entries {
    Entries::NONE.with(EntryKind::Memory, partitions)
}

/// A partition's overlay pages (TLFS 5.2.1): the hypercall and reference
/// TSC pages and VTL 1's hypercall page (15.8), then each VP's assist, SIM
/// and SIEF pages and its VTL 1 assist page (15.8.1).
pub const OVERLAYS_PER_PARTITION: usize = 3;
pub const OVERLAYS_PER_VP: usize = 4;

/// The pages of that memory for a partition of `vcpus` VPs: one per
/// overlay page.
pub const fn overlay_pages(vcpus: usize) -> usize {
    OVERLAYS_PER_PARTITION + OVERLAYS_PER_VP * vcpus
}

/// The sum of `parts`; `None` if a count overflows (it is more than any
/// table then).
pub fn total<'a>(parts: impl IntoIterator<Item = &'a Entries>) -> Option<Entries> {
    parts.into_iter().try_fold(Entries::NONE, |sum, e| sum.checked_add(e))
}

/// The kinds of which `needed` is more than the kernel's tables hold.
pub fn over_tables(needed: &Entries) -> impl Iterator<Item = EntryKind> + '_ {
    EntryKind::ALL.into_iter().filter(|&k| needed.get(k) > Entries::TABLES.get(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_system_of_plain_tasks_fits_every_table() {
        // 15 tasks besides the supervisor, each with untyped and interrupts.
        let tasks = [to_start(true, true); 15];
        let needed = total(tasks.iter().chain([&KERNEL, &shared(crate::manifest::MAX_ENDPOINTS, 0)])).unwrap();
        assert_eq!(over_tables(&needed).count(), 0, "{needed:?}");
        assert_eq!(needed.get(EntryKind::Untyped), 16, "every pool is taken, none left for quotas");
    }

    #[test]
    fn a_table_overrun_names_its_kind() {
        let needed = partition(16).checked_add(&partition(1)).unwrap();
        assert_eq!(over_tables(&needed).collect::<std::vec::Vec<_>>(), [EntryKind::Vp]);
        assert_eq!(total([&Entries::TABLES.with(EntryKind::Memory, u16::MAX), &KERNEL]), None);
    }
}
