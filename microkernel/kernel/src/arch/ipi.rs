//! Cross-CPU mechanism: the one IPI vector, what each CPU runs outside
//! ring 0, and the requests the holder of the kernel lock makes of the
//! other CPUs (TLB shootdowns, giving up a VP's hardware state).
//!
//! Invariants (see `docs/ARCHITECTURE.md` §4.12):
//! - Only the holder of the kernel lock issues requests or waits on
//!   another CPU, so there is one request at a time and no cycle of waits.
//! - A CPU serves requests wherever it can wait for long: spinning for the
//!   kernel lock, idle, and on the IPI (from user mode, guest mode or
//!   idle). It never serves one in the middle of using what a request
//!   takes away (a VP's VMCS or extended state, an address space).
//! - [`OUTSIDE`] says what a CPU runs outside ring 0. A CPU sets it before
//!   it drops the lock to leave and clears it after it is back and done
//!   with the thread's hardware state, before it spins for the lock; so the
//!   lock holder that saw it clear owns that state until it drops the lock.

use super::smp::MAX_CPUS;
use abi::limits::{MAX_PARTITIONS, MAX_VPS_PER_PARTITION};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};

/// The vector of every IPI the kernel sends: a reschedule, a kick out of
/// guest mode and a request all look the same (the receiver enters ring 0
/// and looks).
pub const IPI_VECTOR: u8 = 33;

/// CPUs taking part in scheduling: bit per CPU index.
static ONLINE: AtomicU32 = AtomicU32::new(0);
static APIC_IDS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// What each CPU runs outside ring 0: 0 nothing, else [`Outside::code`].
static OUTSIDE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// The partition (index + 1) whose VP each CPU runs in guest mode, 0 none.
static IN_PARTITION: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// Each CPU's loaded CR3 (a task's root, or the kernel's).
static ACTIVE_CR3: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Times each CPU entered user mode and guest mode, and the most CPUs seen
/// outside ring 0 at once (the per-CPU run counters the kernel reports).
static USER_ENTRIES: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static GUEST_ENTRIES: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Guest entries on a CPU with an online SMT sibling, and those of them
/// that found a sibling in guest mode with another partition's VP (the
/// core-scheduling invariant counter; see [`leaving`]).
static SIBLING_CHECKED: AtomicU64 = AtomicU64::new(0);
static SIBLING_VIOLATIONS: AtomicU64 = AtomicU64::new(0);
/// The SMT shift of the APIC IDs (`cpu::smt_shift`), `u32::MAX`: no SMT.
static SMT_SHIFT: AtomicU32 = AtomicU32::new(u32::MAX);
/// Each core's turn (`kerncore::coresched::Turn`), kept at its
/// lowest-numbered online CPU; only the lock holder reads or writes it.
static TURN_OWNER: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
static TURN_SINCE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static TURN_WAITING: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// The CPUs each VP entered guest mode on since boot (a bit per CPU), by
/// partition index and VP index: the kernel's own record of where VPs ran
/// (a test checks the VID's SMT placement against it).
static VP_RAN_ON: [[AtomicU32; MAX_VPS_PER_PARTITION]; MAX_PARTITIONS] =
    [const { [const { AtomicU32::new(0) }; MAX_VPS_PER_PARTITION] }; MAX_PARTITIONS];
static MOST_OUTSIDE: AtomicU32 = AtomicU32::new(0);
static MOST_IN_GUEST: AtomicU32 = AtomicU32::new(0);

/// What a CPU runs outside ring 0.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Outside {
    /// A thread in user mode, by thread index.
    User(u16),
    /// A VP in guest mode, by its hardware's name (`VpHardware::id`).
    Guest(u64),
}

impl Outside {
    const fn code(self) -> u64 {
        match self {
            // Thread indices and VP names (frame addresses, page aligned)
            // never collide: a thread index is below 2^16 with bit 0 set.
            Outside::User(t) => ((t as u64) << 1) | 1,
            Outside::Guest(id) => id,
        }
    }
}

/// The requests, one kind at a time (only the lock holder issues).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Kind {
    None = 0,
    /// Reload CR3 if it holds `arg0` (a task page-table shootdown).
    FlushSpace = 1,
    /// Switch to the kernel's tables if CR3 holds `arg0` (it is freed).
    LeaveSpace = 2,
    /// Give up VP state: VMCLEAR VMCS `arg0` (VMX; 0 for SVM), save the
    /// extended state of area `arg1` if the registers hold it, and forget
    /// DR0-DR3 of VP `arg1`.
    ReleaseVp = 3,
}

static KIND: AtomicU8 = AtomicU8::new(Kind::None as u8);
static ARGS: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
static PENDING: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

fn me() -> usize {
    super::percpu::index()
}

/// This CPU takes part in scheduling from now on.
pub fn register(apic_id: u32) {
    let cpu = me();
    APIC_IDS[cpu].store(apic_id, Ordering::Relaxed);
    ACTIVE_CR3[cpu].store(super::cpu::cr3() & !0xfff, Ordering::Relaxed);
    if let Some(shift) = super::cpu::smt_shift() {
        SMT_SHIFT.store(shift, Ordering::Relaxed);
    }
    ONLINE.fetch_or(1 << cpu, Ordering::Release);
}

/// The APIC ID of online CPU `cpu`.
pub fn apic_id_of(cpu: usize) -> u32 {
    APIC_IDS[cpu].load(Ordering::Relaxed)
}

/// CPUs taking part in scheduling.
pub fn online() -> u32 {
    ONLINE.load(Ordering::Acquire)
}

/// The online CPUs but this one, by their bits (none on one CPU: the
/// one-CPU paths pay nothing for the others).
fn others() -> impl Iterator<Item = usize> {
    kerncore::smp::cpus_in(online() & !(1 << me()))
}

/// Sends the IPI to CPU `cpu` (no effect on an offline CPU or on this one).
/// Should the local APIC not take it (a bounded wait in `send_ipi`), the
/// target's own timer, 100 Hz on every CPU, ends any wait for it within a
/// tick.
pub fn kick(cpu: usize) {
    if cpu < MAX_CPUS && cpu != me() && online() & (1 << cpu) != 0 {
        super::apic::send_fixed(apic_id_of(cpu), IPI_VECTOR);
    }
}

/// Kicks every CPU of `mask` but this one.
#[inline]
pub fn kick_mask(mask: u32) {
    if mask & !(1 << me()) != 0 {
        kick_others(mask);
    }
}

#[inline(never)]
fn kick_others(mask: u32) {
    for c in others().filter(|c| mask & (1 << c) != 0) {
        kick(c);
    }
}

/// The online SMT siblings of CPU `cpu` (none without SMT).
pub fn siblings(cpu: usize) -> u32 {
    let shift = SMT_SHIFT.load(Ordering::Relaxed);
    // No SMT (one thread per core, or no topology leaf), or one CPU: no
    // siblings, without reading every CPU's APIC ID.
    let online = online();
    if shift == u32::MAX || shift == 0 || online & online.wrapping_sub(1) == 0 {
        return 0;
    }
    let ids: [u32; MAX_CPUS] = core::array::from_fn(|c| APIC_IDS[c].load(Ordering::Relaxed));
    kerncore::coresched::siblings(&ids, online, cpu, shift)
}

/// Core scheduling at the entry of a VP of `partition` on this CPU (the
/// caller holds the kernel lock): whether it may enter, given what its
/// siblings run and the core's turn; `exclusive` gives the bits of the
/// core-exclusive partitions (asked only on a CPU with online siblings).
/// Kicks the siblings that must leave for it.
pub fn core_entry(partition: u32, exclusive: impl FnOnce() -> u32, now: u64) -> kerncore::coresched::Decision {
    use kerncore::coresched::{Decision, Turn, clash, decide};
    let cpu = me();
    let mates = siblings(cpu);
    if mates == 0 {
        return Decision::Enter;
    }
    let exclusive = exclusive();
    let mut running = [0u32; MAX_CPUS];
    for c in kerncore::smp::cpus_in(mates) {
        running[c] = IN_PARTITION[c].load(Ordering::Acquire);
    }
    let leader = (mates | (1 << cpu)).trailing_zeros() as usize;
    let mut turn = Turn {
        owner: TURN_OWNER[leader].load(Ordering::Relaxed),
        since: TURN_SINCE[leader].load(Ordering::Relaxed),
        waiting: TURN_WAITING[leader].load(Ordering::Relaxed),
    };
    let decision = decide(partition + 1, exclusive, &running, &mut turn, now, CORE_TURN_TICKS);
    TURN_OWNER[leader].store(turn.owner, Ordering::Relaxed);
    TURN_SINCE[leader].store(turn.since, Ordering::Relaxed);
    TURN_WAITING[leader].store(turn.waiting, Ordering::Relaxed);
    if let Decision::Wait { kick: true } = decision {
        for c in kerncore::smp::cpus_in(mates).filter(|&c| clash(partition + 1, running[c], exclusive)) {
            kick(c);
        }
    }
    decision
}

/// A core's turn, in timer ticks (100 Hz): 50 ms.
const CORE_TURN_TICKS: u64 = 5;

/// This CPU leaves ring 0 for `what`, the lock still held.
pub fn leaving(what: Outside, partition: Option<u32>) {
    let cpu = me();
    if let Some(p) = partition {
        // The invariant counter, right before the entry: a sibling whose
        // `IN_PARTITION` is set entered under the lock before this and has
        // not yet come back (it clears it first), so a violation is never
        // missed (one that just left may be counted).
        let mates = siblings(cpu);
        if mates != 0 {
            SIBLING_CHECKED.fetch_add(1, Ordering::Relaxed);
            if kerncore::smp::cpus_in(mates).any(|c| {
                let q = IN_PARTITION[c].load(Ordering::Acquire);
                q != 0 && q != p + 1
            }) {
                SIBLING_VIOLATIONS.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    OUTSIDE[cpu].store(what.code(), Ordering::Release);
    let counters = if matches!(what, Outside::Guest(_)) { &GUEST_ENTRIES } else { &USER_ENTRIES };
    counters[cpu].fetch_add(1, Ordering::Relaxed);
    // (0 for a thread: `back` cleared it after the last guest.)
    if let Some(p) = partition {
        IN_PARTITION[cpu].store(p + 1, Ordering::Release);
    }
    let others = online() & !(1 << cpu);
    if others != 0 {
        note_most_at_once(others, partition.is_some());
    }
}

/// VP `vp` of partition `partition` enters guest mode on this CPU: noted
/// in [`VP_RAN_ON`] (a write only the first time on each CPU).
pub fn entering_vp(partition: u32, vp: u32) {
    let Some(cell) = VP_RAN_ON.get(partition as usize).and_then(|p| p.get(vp as usize)) else { return };
    let bit = 1 << me();
    if cell.load(Ordering::Relaxed) & bit == 0 {
        cell.fetch_or(bit, Ordering::Relaxed);
    }
}

/// The CPUs VP `vp` of partition `partition` entered guest mode on (0 if
/// none, or out of range).
pub fn vp_ran_on(partition: usize, vp: usize) -> u32 {
    VP_RAN_ON.get(partition).and_then(|p| p.get(vp)).map_or(0, |c| c.load(Ordering::Relaxed))
}

/// Raises the most CPUs seen outside ring 0 at once (and in guest mode)
/// to what this CPU, leaving, and the `others` show now. Only with other
/// CPUs online: on one CPU the report counts entries instead, and its
/// exits pay nothing for it.
fn note_most_at_once(others: u32, guest: bool) {
    let (mut outside, mut in_guest) = (1, u32::from(guest));
    for c in kerncore::smp::cpus_in(others) {
        if OUTSIDE[c].load(Ordering::Relaxed) != 0 {
            outside += 1;
            in_guest += u32::from(IN_PARTITION[c].load(Ordering::Relaxed) != 0);
        }
    }
    MOST_OUTSIDE.fetch_max(outside, Ordering::Relaxed);
    MOST_IN_GUEST.fetch_max(in_guest, Ordering::Relaxed);
}

/// This CPU is back in ring 0 and done with what it ran; returns what that
/// was (the thread of a user-mode trap).
pub fn back() -> Option<Outside> {
    let cpu = me();
    let was = OUTSIDE[cpu].swap(0, Ordering::AcqRel);
    // Only a guest's leaving set it.
    if was != 0 && was & 1 == 0 {
        IN_PARTITION[cpu].store(0, Ordering::Release);
    }
    match was {
        0 => None,
        c if c & 1 == 1 => Some(Outside::User((c >> 1) as u16)),
        id => Some(Outside::Guest(id)),
    }
}

/// Spins until no other CPU runs `what`, kicking those that do. The
/// caller holds the kernel lock, so none can start running it meanwhile.
#[inline]
pub fn wait_out(what: Outside) {
    // One CPU online: nothing to wait for, and no call.
    if online() & !(1 << me()) != 0 {
        wait_out_of_others(what);
    }
}

#[inline(never)]
fn wait_out_of_others(what: Outside) {
    let code = what.code();
    for c in others() {
        if OUTSIDE[c].load(Ordering::Acquire) == code {
            kick(c);
            while OUTSIDE[c].load(Ordering::Acquire) == code {
                core::hint::spin_loop();
            }
        }
    }
}

/// Spins until no other CPU runs a VP of `partition` that entered before
/// this call, kicking those that do: after it, each has left guest mode
/// and flushes before it enters again (the caller marked that).
pub fn wait_out_of_partition(partition: u32) {
    for c in others() {
        let code = OUTSIDE[c].load(Ordering::Acquire);
        if IN_PARTITION[c].load(Ordering::Acquire) == partition + 1 && code != 0 {
            kick(c);
            while OUTSIDE[c].load(Ordering::Acquire) == code {
                core::hint::spin_loop();
            }
        }
    }
}

/// Runs request `kind` on every CPU of `targets` but this one, and waits
/// until each has.
fn request(kind: Kind, args: [u64; 2], targets: impl Iterator<Item = usize>) {
    KIND.store(kind as u8, Ordering::Relaxed);
    for (slot, value) in ARGS.iter().zip(args) {
        slot.store(value, Ordering::Relaxed);
    }
    let mut sent = 0u32;
    for c in targets.filter(|&c| c != me() && online() & (1 << c) != 0) {
        PENDING[c].store(true, Ordering::Release);
        kick(c);
        sent |= 1 << c;
    }
    for c in kerncore::smp::cpus_in(sent) {
        while PENDING[c].load(Ordering::Acquire) {
            core::hint::spin_loop();
        }
    }
    KIND.store(Kind::None as u8, Ordering::Relaxed);
}

/// Serves the request waiting for this CPU, if any.
pub fn serve() {
    let cpu = me();
    if !PENDING[cpu].load(Ordering::Acquire) {
        return;
    }
    let [a0, a1] = [ARGS[0].load(Ordering::Relaxed), ARGS[1].load(Ordering::Relaxed)];
    match KIND.load(Ordering::Relaxed) {
        k if k == Kind::FlushSpace as u8 => {
            if super::cpu::cr3() & !0xfff == a0 {
                super::cpu::reload_cr3();
            }
        }
        k if k == Kind::LeaveSpace as u8 => {
            if super::cpu::cr3() & !0xfff == a0 {
                let root = super::memory::kernel_root();
                super::cpu::load_cr3(root);
                ACTIVE_CR3[cpu].store(root, Ordering::Relaxed);
            }
        }
        k if k == Kind::ReleaseVp as u8 => super::vm::release_here(a0, a1),
        _ => {}
    }
    PENDING[cpu].store(false, Ordering::Release);
}

/// This CPU loaded `root` into CR3.
pub fn loaded_space(root: u64) {
    ACTIVE_CR3[me()].store(root, Ordering::Relaxed);
}

/// Flushes task address space `root` from every other CPU that has it loaded.
pub fn shoot_down_space(root: u64) {
    request(Kind::FlushSpace, [root, 0], others().filter(|&c| ACTIVE_CR3[c].load(Ordering::Relaxed) == root));
}

/// Makes every other CPU that has `root` loaded leave it (it is about to be freed).
pub fn leave_space_everywhere(root: u64) {
    request(Kind::LeaveSpace, [root, 0], others().filter(|&c| ACTIVE_CR3[c].load(Ordering::Relaxed) == root));
}

/// Makes CPU `cpu` give up a VP's state (see [`Kind::ReleaseVp`]).
pub fn release_vp_on(cpu: usize, vmcs: u64, area: u64) {
    request(Kind::ReleaseVp, [vmcs, area], core::iter::once(cpu));
}

/// The run counters, for the kernel's report.
pub struct RunCounters {
    pub user: [u64; MAX_CPUS],
    pub guest: [u64; MAX_CPUS],
    pub most_outside: u32,
    pub most_in_guest: u32,
    /// Whether any CPU has an online SMT sibling, guest entries checked
    /// against the siblings, and sibling violations among them.
    pub smt: bool,
    pub sibling_checked: u64,
    pub sibling_violations: u64,
}

pub fn run_counters() -> RunCounters {
    let user: [u64; MAX_CPUS] = core::array::from_fn(|c| USER_ENTRIES[c].load(Ordering::Relaxed));
    let guest: [u64; MAX_CPUS] = core::array::from_fn(|c| GUEST_ENTRIES[c].load(Ordering::Relaxed));
    // A CPU that left alone (always, on one CPU) was one at once.
    let ran = |entries: &[u64]| u32::from(entries.iter().any(|&n| n != 0));
    RunCounters {
        most_outside: MOST_OUTSIDE.load(Ordering::Relaxed).max(ran(&user) | ran(&guest)),
        most_in_guest: MOST_IN_GUEST.load(Ordering::Relaxed).max(ran(&guest)),
        smt: kerncore::smp::cpus_in(online()).any(|c| siblings(c) != 0),
        sibling_checked: SIBLING_CHECKED.load(Ordering::Relaxed),
        sibling_violations: SIBLING_VIOLATIONS.load(Ordering::Relaxed),
        user,
        guest,
    }
}

/// Kicks the CPU that runs `what`, if any, without waiting: it enters
/// ring 0 and looks again (an interruption was posted for its VP).
pub fn kick_out(what: Outside) {
    let code = what.code();
    if let Some(c) = others().find(|&c| OUTSIDE[c].load(Ordering::Acquire) == code) {
        kick(c);
    }
}
