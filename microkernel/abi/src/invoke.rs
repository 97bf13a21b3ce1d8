//! Operations for [`Sysnum::INVOKE`](crate::Sysnum::INVOKE): the label of
//! the message names the operation, message registers carry its arguments.
//!
//! Each operation lists its arguments as `MRn` (message register n) and the
//! right it needs on the invoked capability. Results come back in the
//! message registers of the reply.

use crate::open_enum;

open_enum! {
    pub struct Operation(u32) {
        // ---- Any capability (acting on the caller's own capability space) ----
        /// Copy with fewer rights. MR0 destination slot, MR1 rights. Needs nothing
        /// beyond holding the capability; rights can only shrink.
        CAP_DERIVE = 0x01,
        /// Derive and attach a badge (endpoints, notifications). MR0 destination,
        /// MR1 rights, MR2 badge (non-zero). The source must be unbadged.
        CAP_MINT = 0x02,
        /// Empty the slot. Its derived capabilities stay until revoked.
        CAP_DELETE = 0x03,
        /// Delete every capability derived from this one, in every task.
        CAP_REVOKE = 0x04,
        /// Reply: MR0 object type, MR1 rights, MR2 badge, MR3 object size in
        /// bytes (an untyped: what is left of its pages); for an untyped,
        /// MR4.. its entries left ([`crate::Entries`] words), then the
        /// bytes free in the kernel's frame pool, machine-wide (a quota
        /// is a claim on that pool, which may hold less at the moment:
        /// what a holder sizing a large object, such as guest RAM, wants
        /// to know), so [`IDENTIFY_UNTYPED_WORDS`] in all, through the IPC
        /// buffer.
        CAP_IDENTIFY = 0x05,

        // ---- Untyped memory (CONTROL) ----
        /// Create an object from the pool. MR0 object type, MR1 destination
        /// slot, MR2 size in pages (MEMORY and UNTYPED). Every object takes
        /// one entry of its kind ([`crate::EntryKind`]) and its cost
        /// ([`crate::cost`]) from the pool: OUT_OF_MEMORY if either is
        /// short, and nothing changes. A sub-pool (UNTYPED) is given an
        /// entry quota in MR3.. ([`crate::Entries`] words, so the message
        /// is [`RETYPE_POOL_WORDS`] long, else INVALID_ARGUMENT), taken
        /// whole from this pool with one untyped entry. The new capability
        /// has all rights and derives from the untyped one.
        UNTYPED_RETYPE = 0x10,

        // ---- Task (CONTROL) ----
        /// Map a memory object. MR0 memory slot, MR1 virtual address, MR2
        /// rights (subset of the memory capability's), MR3 page offset << 32 | pages.
        TASK_MAP = 0x20,
        /// Unmap. MR0 virtual address, MR1 pages.
        TASK_UNMAP = 0x21,
        /// Copy a capability of the caller into the task's space. MR0 source
        /// slot (needs GRANT unless the caller holds CONTROL on the task),
        /// MR1 destination slot in the task, MR2 rights, MR3 badge (0 = none).
        TASK_INSTALL_CAP = 0x22,
        /// Move a capability between the caller's space and the task's,
        /// keeping its place in the derivation tree (its children and
        /// parent stay). MR0 slot in the task, MR1 the caller's slot, MR2
        /// [`MOVE_INTO_TASK`] or [`MOVE_OUT_OF_TASK`]; the destination must be empty.
        TASK_MOVE_CAP = 0x23,

        // ---- Thread (CONTROL) ----
        /// MR0 task slot, MR1 entry point, MR2 stack pointer, MR3 IPC buffer
        /// address; IPC buffer word 4: fault endpoint slot, word 5: scheduling
        /// context slot (CONTROL; 0: none; as for VP_SET_HANDLER), word 6:
        /// initial RDI.
        THREAD_CONFIGURE = 0x30,
        THREAD_START = 0x31,
        THREAD_SUSPEND = 0x32,

        // ---- Scheduling context (CONTROL) ----
        /// MR0 priority (0 lowest .. 31 highest), MR1 budget in ticks per
        /// MR2 period in ticks (0 = unlimited). Optional, read only when the
        /// message is that long (a message of three words leaves them 0):
        /// MR3 slice, ticks per round-robin turn among equals (0 = the
        /// kernel's default, 2; at most 6000); MR4 reserve, ticks of each
        /// period the thread runs at MR5 reserve priority (>= MR0) before
        /// going on at MR0 (0 = none). A reserve needs a period and fits in
        /// the budget; budget 0 with a period and a reserve is an unlimited
        /// budget. INVALID_ARGUMENT for anything else out of range.
        /// NO_RIGHTS above the context's ceiling: a higher priority or
        /// reserve priority, or under a limited ceiling an unlimited
        /// budget, more budget or a shorter period. A context made by
        /// UNTYPED_RETYPE has the parameters its creator runs with as its
        /// ceiling (its highest priority and budget), and priority 0 with
        /// that budget to start.
        SCHED_CONFIGURE = 0x40,
        /// Lower the context's ceiling (never raise it): MR0 priority, MR1
        /// budget, MR2 period, as for SCHED_CONFIGURE. NO_RIGHTS if not
        /// within the ceiling, INVALID_STATE if the context's parameters
        /// are not within the new one (configure first).
        SCHED_LIMIT = 0x41,
        /// Move the context, and the thread bound to it, to CPU MR0 (its
        /// index: 0 is the boot CPU; `CPU_COUNT` of the boot info says how
        /// many there are). INVALID_ARGUMENT if that CPU is not online. A
        /// ready thread moves at once, a running one when its CPU next
        /// schedules (an IPI makes that soon). Migration is only ever this.
        SCHED_SET_CPU = 0x42,

        // ---- Interrupt lines ----
        /// Bind a single line (CONTROL): MR0 notification slot (SEND), MR1
        /// bit number (0..=63) to set when the line fires. Unmasks the line.
        IRQ_BIND = 0x50,
        /// The task handled the interrupt: unmask the line (kept masked
        /// from the moment it fired until now).
        IRQ_ACK = 0x51,
        /// Issue a capability for one line of a range (CONTROL): MR0 GSI,
        /// MR1 destination slot. Each line is issued at most once.
        IRQ_ISSUE = 0x52,

        // ---- Notifications (RECEIVE) ----
        /// MR0 1: bind the notification to the calling thread (seL4's bound
        /// notification): a receive of the thread on any endpoint then
        /// also ends when the notification has bits, with label
        /// [`crate::labels::NOTIFICATION`] and the bits (taken) as badge,
        /// so one thread serves an endpoint and a notification without
        /// polling. MR0 0: unbind it. INVALID_STATE if the thread or the
        /// notification is bound already (or, to unbind, not to each other).
        NOTIFICATION_BIND = 0x58,

        // ---- Partitions and virtual processors ----
        // CONTROL is the partition manager's: guest memory, VP membership,
        // VP indices and monitors. RUN is what a VID needs to run a
        // partition's VPs, and all it gets.
        /// Map guest memory (CONTROL on the partition). MR0 memory slot, MR1
        /// guest-physical address, MR2 rights (READ, WRITE, EXECUTE; subset
        /// of the memory capability's), MR3 page offset << 32 | pages.
        PARTITION_MAP = 0x70,
        /// Unmap guest memory (CONTROL). MR0 guest-physical address, MR1 pages.
        PARTITION_UNMAP = 0x71,
        /// Flush the guest TLB entries of every VP of the partition (RUN):
        /// when it returns, no CPU runs one of them on older translations.
        PARTITION_FLUSH_TLB = 0x72,
        /// Make the partition core-exclusive or not (CONTROL): MR0 1 or 0.
        /// No sibling SMT thread then runs a VP of another partition while
        /// one of its VPs runs in guest mode, nor the other way round (the
        /// core scheduler, `[scheduler] policy = "core"`).
        PARTITION_SET_CORE_EXCLUSIVE = 0x73,
        /// Withhold (MR1 1) or give back (MR1 0) the write access to the
        /// mapped 4 KiB guest page at GPA MR0 (RUN): the guest's writes
        /// there then exit to the VID as memory intercepts, its reads and
        /// fetches go on (a read-only overlay: the hypercall page, TLFS
        /// 3.13). Giving back restores only what PARTITION_MAP granted.
        /// When it returns, no CPU runs a VP of the partition on the old
        /// rights. BAD_ADDRESS if the page is not mapped. With a third
        /// word, MR2 names the VTL whose view it changes (0 without;
        /// INVALID_STATE for a VTL the partition lacks): each VTL has its
        /// own hypercall page.
        PARTITION_HOLD_WRITE = 0x74,
        /// Make ports MR0..MR0 + MR1 floating (MR2 1) or not (MR2 0) in the
        /// partition (RUN): an IN or OUT (not INS/OUTS) at a floating port
        /// is answered in ring 0 as an empty bus answers, reads all ones
        /// and writes dropped, without an exit to the VID. An access goes
        /// to the device of its first port, as on ISA and in the VID's bus,
        /// so the VID floats what none of its devices claims. A new
        /// partition has none. INVALID_ARGUMENT for an empty range or one
        /// past 0xFFFF.
        PARTITION_SET_FLOATING_PORTS = 0x75,
        /// Latch a byte read of port MR0 at value MR1 (0..=0xFF) in the
        /// partition, or end the latch (MR1 [`UNLATCHED`]) (RUN): a byte IN there
        /// is answered in ring 0 with the value, without an exit; wider
        /// reads and writes exit as before. For a register whose reads
        /// have no side effect while latched (a UART's line status with
        /// no error to clear), which the VID keeps current before it lets
        /// any VP see what changed it. At most
        /// [`crate::limits::MAX_LATCHED_PORTS`] per partition
        /// (OUT_OF_MEMORY).
        PARTITION_LATCH_PORT = 0x76,
        /// Return a VP that is in a partition and not started (or
        /// suspended) to its power-on state (RUN), as at VP_CONFIGURE: its
        /// registers, x87/SSE/AVX state, debug registers and pending
        /// events; its partition, index, handler and monitor stay. A
        /// machine reset of its partition.
        VP_RESET = 0x77,
        /// Put a VP that is not started into a partition (CONTROL on both):
        /// MR0 partition slot, MR1 VP index. Its guest state is reset to
        /// power-on (nothing of a partition it was in before stays).
        VP_CONFIGURE = 0x78,
        /// Set registers of a VP that is not running (RUN). MR0 count n
        /// (at most [`crate::limits::MAX_VP_REGISTERS`]), then n triples
        /// (TLFS register name, low 64 bits, high 64 bits). Of a running
        /// VP, only the pending interruption (the kernel keeps it and
        /// kicks the VP out of guest mode); INVALID_STATE otherwise.
        VP_SET_REGISTERS = 0x79,
        /// Read registers (RUN). MR0 count n (at most
        /// [`crate::limits::MAX_VP_REGISTERS`]), then n names; the reply
        /// holds n pairs (low, high). Of a running VP, only the pending
        /// interruption and the run time; INVALID_STATE otherwise.
        VP_GET_REGISTERS = 0x7a,
        /// Start a VP that is in a partition (RUN).
        VP_START = 0x7b,
        /// Name the VP's monitor (CONTROL): MR0 endpoint slot (SEND; its
        /// badge names the VP), MR1 ticks the exit handler may take to
        /// answer one exit (0: no limit). When the handler is gone, or does
        /// not answer in time, the VP stops and the kernel reports it to the
        /// monitor with a [`crate::labels::VP_STOPPED`] message.
        VP_SET_MONITOR = 0x7c,
        /// Choose the VP state sent with every exit (RUN): MR0 the
        /// `tlfs::exit_state::ExitState` mask; its words follow the
        /// `HV_MESSAGE`. Reserved bits are INVALID_ARGUMENT.
        VP_SET_EXIT_STATE = 0x7d,
        /// Stop a started VP wherever it is (RUN), as `VP_STOP` does
        /// for the VP that exited: its partition ended. An exit it had
        /// sent is withdrawn (the handler's reply right goes).
        VP_SUSPEND = 0x7e,
        /// Bind a VP that is not started to its handler (RUN): MR0 exit
        /// endpoint slot (SEND; its badge tells the handler which VP
        /// exited), MR1 scheduling context slot (CONTROL; 0: none, priority
        /// 0 and no budget limit). A context bound to another thread is
        /// INVALID_STATE; the context the VP had before is left unbound.
        VP_SET_HANDLER = 0x7f,
        /// Post byte writes to port MR0 in the partition (MR1 1) or not
        /// (MR1 0) (RUN): a byte OUT there (not OUTS) is kept in ring 0,
        /// in order with the partition's other posted writes, and the VP
        /// goes on without an exit; when
        /// [`crate::limits::MAX_POSTED_WRITES`] wait, it exits as before
        /// (nothing is lost). Wider writes and all reads exit. For a
        /// register whose writes have no effect the guest can see but the
        /// byte going out (a UART's THR with its interrupt off), which the
        /// VID drains before it handles any other exit of the partition
        /// (coalesced I/O). Ending a post keeps what was posted. At most
        /// [`crate::limits::MAX_POSTED_PORTS`] per partition
        /// (OUT_OF_MEMORY). A new partition posts none.
        PARTITION_POST_PORT = 0x80,
        /// Take the partition's posted writes (RUN), oldest first: reply
        /// MR0 their count n, then n writes, two a word (the first in the
        /// low half), each `port << 8 | byte`. MESSAGE_TOO_LONG, and
        /// nothing taken, if writes wait and the caller has no IPC buffer.
        PARTITION_DRAIN_POSTED = 0x81,
        /// Give the partition VTL MR0 (RUN; only 1, TLFS 15): a second
        /// second-level view, VTL 1's, holding every page mapped so far
        /// with the rights PARTITION_MAP granted; maps and unmaps from
        /// then on change both views. VTL 0's view is the one the
        /// partition had. INVALID_ARGUMENT for another VTL, INVALID_STATE
        /// if it has it already, OUT_OF_MEMORY if its tables do not fit
        /// (charged as PARTITION_MAP's; nothing is made then).
        PARTITION_ENABLE_VTL = 0x82,
        /// Narrow what VTL 0 may do with pages MR0..MR0 + MR1 × 4 KiB
        /// (RUN): in VTL 0's view each page grants what PARTITION_MAP
        /// granted and MR2 ([`Rights`](crate::Rights) READ, WRITE,
        /// EXECUTE; 0 is no access) allows; VTL 1's view is unchanged
        /// (TLFS 15.9, HvCallModifyVtlProtectionMask). A VTL 0 access
        /// it refuses exits as a memory intercept. A protection lives in
        /// VTL 0's leaves: pages unmapped and mapped again, or mapped
        /// later, come back with what PARTITION_MAP grants (the VMM
        /// applies its default mask to them). A 2 MiB leaf is split
        /// (its table charged as PARTITION_MAP's). INVALID_STATE without
        /// VTL 1, INVALID_ARGUMENT for WRITE without READ, EXECUTE
        /// without READ where the hardware cannot express it, or other bits,
        /// BAD_ADDRESS if a page is not mapped, OUT_OF_MEMORY: nothing
        /// changes then. When it returns, no CPU runs a VP of the
        /// partition on the old rights.
        PARTITION_PROTECT = 0x83,
        /// Give a VP that is not running VTL MR0's context (RUN; only 1,
        /// and its partition has VTL 1): its registers as at power-on,
        /// in VTL 1's view. The VP stays in the VTL it is in.
        /// INVALID_STATE if the partition lacks the VTL or the VP has it.
        VP_ENABLE_VTL = 0x84,
        /// Switch a VP that is not running to VTL MR0 (RUN): its private
        /// registers (TLFS 15.11.1: RIP, RSP, RFLAGS, control, segment
        /// and descriptor-table registers, DR6, DR7, the private MSRs)
        /// become that VTL's, its second-level view too, and its pending
        /// events; the shared ones (the other general registers, CR2,
        /// DR0-DR3, x87/SSE/AVX, XCR0) stay. VP_GET_REGISTERS and
        /// VP_SET_REGISTERS, the exit state and the reply to an exit act
        /// on the active VTL, which each exit names (the execution
        /// state's VTL field). INVALID_STATE if the VP lacks the VTL.
        VP_SWITCH_VTL = 0x85,
        /// Take VTL MR0 away from the partition (RUN; only 1), as its
        /// reset does (TLFS 15.3.4): VTL 1's view goes and VTL 0's pages
        /// get back what PARTITION_MAP granted (a held write stays held).
        /// INVALID_STATE if it lacks the VTL or one of its VPs still has
        /// that VTL's context (VP_RESET takes it away).
        PARTITION_DISABLE_VTL = 0x86,

        // ---- I/O ports (READ for in, WRITE for out) ----
        /// MR0 port, MR1 width in bytes (1, 2 or 4). Reply MR0 value.
        IO_IN = 0x60,
        /// MR0 port, MR1 width, MR2 value.
        IO_OUT = 0x61,
        /// MR0 port, MR1 byte count (≤ 8 × the message words after MR1),
        /// bytes packed little-endian from MR2 on: `rep outsb` for consoles.
        IO_OUT_BYTES = 0x62,
        /// Issue a capability for a sub-range (CONTROL). MR0 first port,
        /// MR1 count, MR2 destination slot; the new capability is a child
        /// of this one and keeps its rights.
        IO_PORTS_RANGE = 0x63,
    }
}

/// Words of an `UNTYPED_RETYPE` that makes a sub-pool: type, slot, pages,
/// then its entry quota.
pub const RETYPE_POOL_WORDS: usize = 3 + crate::EntryKind::COUNT;
/// Words of `CAP_IDENTIFY`'s reply for an untyped: type, rights, badge,
/// bytes left, its entries left, then the bytes free in the kernel's pool.
pub const IDENTIFY_UNTYPED_WORDS: usize = 5 + crate::EntryKind::COUNT;
// It travels in one message.
const _: () = assert!(IDENTIFY_UNTYPED_WORDS <= crate::MAX_MESSAGE_WORDS);

/// `TASK_MOVE_CAP` MR2: from the caller's slot into the task's.
pub const MOVE_INTO_TASK: u64 = 0;
/// `TASK_MOVE_CAP` MR2: from the task's slot into the caller's.
pub const MOVE_OUT_OF_TASK: u64 = 1;

/// `PARTITION_LATCH_PORT`'s MR1 that ends a latch (a value is 0..=0xFF).
pub const UNLATCHED: u64 = 0x100;

/// Highest priority a scheduling context can have.
pub const MAX_PRIORITY: u64 = 31;
