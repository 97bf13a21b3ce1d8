//! System-wide limits that ring 0 and the services both rely on, written
//! once: the kernel sizes its pools with them, the manifest tool and
//! `sysimage` refuse a manifest beyond them, and the partition manager, the
//! VID and the runner bound what they accept by them.

/// Guest partitions that can exist at once: the kernel's partition pool,
/// the partition manager's table, and the most a manifest may declare.
pub const MAX_PARTITIONS: usize = 8;
/// Ports a partition's VID may latch (`PARTITION_LATCH_PORT`).
pub const MAX_LATCHED_PORTS: usize = 4;
/// Ports a partition's VID may post byte writes of (`PARTITION_POST_PORT`).
pub const MAX_POSTED_PORTS: usize = 2;
/// Posted byte writes ring 0 holds for a partition until its VID drains
/// them (`PARTITION_DRAIN_POSTED`): what one reply carries, a count word
/// then two writes a word. A write that finds the buffer full exits.
pub const MAX_POSTED_WRITES: usize = 2 * (crate::MAX_MESSAGE_WORDS - 1);

/// Virtual processors of one partition (VP indices `0..MAX_VPS_PER_PARTITION`):
/// what the partition manager creates, the VID's per-VP tables, a
/// manifest's `vcpus` and the runner's `--vcpus`. The kernel's VP table,
/// shared by all partitions, is [`tables::VPS`].
pub const MAX_VPS_PER_PARTITION: usize = 16;

/// Pages of one partition whose VTL 0 protection VTL 1 set apart from its
/// default mask (TLFS 15.9): the VID's table of them
/// (`vid::vsm::protect`); HvModifyVtlProtectionMask beyond it is
/// INSUFFICIENT_MEMORY. 8 KiB per partition.
pub const MAX_VTL_PROTECTED_PAGES: usize = 1024;

/// CPUs the kernel runs on, the boot CPU included: every per-CPU table of
/// ring 0 is this long. CPUs of the MADT beyond it are reported and left off.
pub const MAX_CPUS: usize = 16;

/// Most registers one `VP_SET_REGISTERS` or `VP_GET_REGISTERS` names.
pub const MAX_VP_REGISTERS: usize = 20;

/// Largest memory grant of one task, its stack included: a manifest's
/// `memory` and `stack`, and the root task's in the boot image's header.
pub const MAX_TASK_MEMORY: u64 = 1 << 30;

/// Runs of physically contiguous frames one memory object is made of, at
/// most. The kernel builds a memory object of any size from its frame
/// pool's free blocks, largest first (each run a power of two of pages,
/// aligned to its size), so an object of N pages costs N frames and needs
/// no contiguous free memory; a retype that would take more runs than this
/// (free memory in more, smaller pieces) is `OUT_OF_MEMORY`. 32 runs
/// cover the largest partition RAM (3 GiB, two runs unfragmented) through
/// a great deal of fragmentation, at 16 bytes a run in every entry of the
/// memory-object table ([`tables::MEMORY_OBJECTS`]).
pub const MEMORY_RUNS: usize = 32;

/// Interrupt lines (GSIs `0..GSIS`) the kernel routes to tasks: the root
/// task's `interrupts` capability covers them, and a manifest may name no
/// other. A line must also exist on the machine's I/O APICs (24 on QEMU
/// and Bochs).
pub const GSIS: u32 = 32;

/// Capability slots of a task's capability space (slot 0 never filled).
pub const CSPACE_SLOTS: u32 = 128;

/// Capability slots of the root task's (the supervisor's) capability
/// space: it holds what it made for every task it runs, and the
/// supervisor asserts that a manifest at its limits fits.
pub const ROOT_CSPACE_SLOTS: u32 = 672;

/// The kernel's object tables: how many objects of each kind can exist at
/// once in the whole system. Untyped pools hand their entries out as quotas
/// ([`crate::Entries`]), so what one task may make never takes what
/// another was given.
pub mod tables {
    pub const TASKS: usize = 32;
    /// Threads that are not VPs: the kernel's thread table holds these and
    /// one per VP ([`VPS`]).
    pub const THREADS: usize = 48;
    pub const ENDPOINTS: usize = 64;
    pub const NOTIFICATIONS: usize = 32;
    pub const SCHED_CONTEXTS: usize = 64;
    pub const PARTITIONS: usize = super::MAX_PARTITIONS;
    /// VPs of all partitions together (each is a thread too, outside [`THREADS`]).
    pub const VPS: usize = 16;
    pub const MEMORY_OBJECTS: usize = 512;
    pub const UNTYPED_POOLS: usize = 16;
    /// I/O-port ranges: the root task's and those it issues (not quota'd:
    /// only the root task issues them).
    pub const IO_RANGES: usize = 64;
    /// Interrupt objects: the root task's range of lines and the lines it
    /// issues, one each (not quota'd either).
    pub const INTERRUPTS: usize = 40;
}
