//! Attacks on the kernel's objects, made with the hostile task's own untyped
//! quota and task capability: stale mappings (guest and task), untyped
//! accounting, kernel memory nobody pays for, the destroy queue, thread
//! addresses ring 0 would fault on, and a seeded storm of random syscalls.

use hostile::*;
use tessera_rt::abi::{Entries, EntryKind, Rights, Sysnum, labels};
use tessera_rt::memory::Window;
use tessera_rt::{CapSlot, ErrorCode, Message, MessageInfo, ObjectType, Operation, invoke, log, sys};
use tlfs::{HvMessage, HvMessageBody, HvRegisterName};

const PAGE: u64 = 4096;
/// Where it maps things into its own address space.
pub(crate) const WINDOW: u64 = 0x6000_0000;
const TASK_MAPS: u64 = 0x6100_0000;
const PROBE_PAGES: u64 = 0x6800_0000;

/// The task's own capabilities and a bump allocator of free slots.
pub struct Own {
    pub task: CapSlot,
    pub untyped: CapSlot,
    first_free: u32,
    next: u32,
}

impl Own {
    pub fn new(task: CapSlot, untyped: CapSlot, first_free: CapSlot) -> Own {
        Own { task, untyped, first_free: first_free.0, next: first_free.0 }
    }

    pub(crate) fn slot(&mut self) -> CapSlot {
        self.next += 1;
        CapSlot(self.next - 1)
    }

    /// Every slot handed out since is empty again (the caller deleted them).
    pub(crate) fn reset(&mut self) {
        self.next = self.first_free;
    }

    fn retype_from(&mut self, untyped: CapSlot, kind: ObjectType, pages: u64) -> Result<CapSlot, ErrorCode> {
        let slot = self.slot();
        tessera_rt::untyped::retype(untyped, kind, slot, pages)?;
        Ok(slot)
    }

    /// An object of `kind` (not a sub-pool) from its untyped.
    pub(crate) fn retype(&mut self, kind: ObjectType, pages: u64) -> Result<CapSlot, ErrorCode> {
        self.retype_from(self.untyped, kind, pages)
    }

    /// A sub-pool of its untyped.
    pub(crate) fn pool(&mut self, pages: u64, entries: Entries) -> Result<CapSlot, ErrorCode> {
        let slot = self.slot();
        tessera_rt::untyped::retype_pool(self.untyped, slot, pages, entries)?;
        Ok(slot)
    }
}

/// `count` memory objects, and nothing else.
fn memory_objects(count: u16) -> Entries {
    Entries::NONE.with(EntryKind::Memory, count)
}

pub(crate) fn delete(slot: CapSlot) {
    let _ = invoke(slot, Operation::CAP_DELETE, &[]);
}

pub(crate) fn bits(r: Rights) -> u64 {
    u64::from(r.into_bits())
}

fn rw() -> Rights {
    Rights::new().with_read(true).with_write(true)
}

fn map(task: CapSlot, memory: CapSlot, at: u64, pages: u64) -> Result<(), ErrorCode> {
    invoke(task, Operation::TASK_MAP, &[u64::from(memory.0), at, bits(rw()), pages]).map(drop)
}

fn unmap(task: CapSlot, at: u64, pages: u64) -> Result<(), ErrorCode> {
    invoke(task, Operation::TASK_UNMAP, &[at, pages]).map(drop)
}

fn fill(own: &Own, memory: CapSlot, pages: u64, word: u32) -> Result<(), ErrorCode> {
    let mut window = Window::map(own.task, memory, WINDOW, 0, pages, true)?;
    if let Some(bytes) = window.bytes_mut() {
        for chunk in bytes.chunks_exact_mut(4) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
    }
    window.unmap(own.task)
}

pub(crate) fn report(what: &str, passed: bool, detail: core::fmt::Arguments<'_>) {
    log!("{what} -> {detail}: {}", verdict(passed));
}

/// Which of `pages` pages from `at` are still mapped in its own space: each
/// is probed by mapping a fresh page there (refused while one is mapped).
fn still_mapped(own: &mut Own, at: u64, pages: u64) -> u64 {
    let Ok(probe) = own.retype(ObjectType::MEMORY, 1) else { return u64::MAX };
    let mut stale = 0;
    for i in 0..pages {
        if map(own.task, probe, at + i * PAGE, 1).is_ok() {
            let _ = unmap(own.task, at + i * PAGE, 1);
        } else {
            stale += 1;
        }
    }
    delete(probe);
    stale
}

/// Finding 1, guest side: a partial and a middle `PARTITION_UNMAP`, then
/// the memory object is deleted and its frames retyped again. A guest the
/// task runs itself reads the guest-physical pages that were left; each
/// read must exit as an unmapped GPA.
pub fn stale_guest_mappings(own: &mut Own) {
    let outcome = run_stale_guest(own);
    own.reset();
    let reads = match outcome {
        Ok(reads) => reads,
        Err(e) => {
            report("stale-SLAT guest", false, format_args!("could not run: {e:?}"));
            return;
        }
    };
    let names = ["left by a partial PARTITION_UNMAP", "left before a middle unmap", "left after a middle unmap"];
    for (i, name) in names.iter().enumerate() {
        let gpa = GUEST_PROBES[i];
        report(
            &alloc_free_name(gpa, name),
            reads[i] == GuestRead::Unmapped,
            format_args!("{:?} (expected Unmapped)", reads[i]),
        );
    }
    let control = reads[3];
    report(
        "guest read of its own code page (control)",
        control == GuestRead::Value(guest_control_value()),
        format_args!("{control:?} (expected Value({}))", guest_control_value()),
    );
}

fn alloc_free_name(gpa: u16, name: &str) -> heapless::String<96> {
    let mut s = heapless::String::new();
    let _ = core::fmt::write(&mut s, format_args!("guest read of GPA {gpa:#x} {name}, memory deleted"));
    s
}

fn run_stale_guest(own: &mut Own) -> Result<[GuestRead; 4], ErrorCode> {
    let code = own.retype(ObjectType::MEMORY, 1)?;
    let d1 = own.retype(ObjectType::MEMORY, 2)?;
    let d2 = own.retype(ObjectType::MEMORY, 3)?;
    let partition = own.retype(ObjectType::PARTITION, 0)?;
    let vp = own.retype(ObjectType::VP, 0)?;
    let exits = own.retype(ObjectType::ENDPOINT, 0)?;
    let exit_cap = own.slot();
    invoke(exits, Operation::CAP_MINT, &[u64::from(exit_cap.0), bits(Rights::new().with_send(true)), 1])?;

    let mut window = Window::map(own.task, code, WINDOW, 0, 1, true)?;
    if let Some(bytes) = window.bytes_mut() {
        let program = guest_code();
        bytes[..program.len()].copy_from_slice(&program);
    }
    window.unmap(own.task)?;
    fill(own, d1, 2, 0xd1d1_d1d1)?;
    fill(own, d2, 3, 0xd2d2_d2d2)?;

    let rwx = Rights::new().with_read(true).with_write(true).with_execute(true);
    let pmap = |mem: CapSlot, gpa: u64, pages: u64, r: Rights| {
        invoke(partition, Operation::PARTITION_MAP, &[u64::from(mem.0), gpa, bits(r), pages])
    };
    pmap(code, GUEST_CODE_GPA, 1, rwx)?;
    pmap(d1, 0x4000, 2, rw())?;
    pmap(d2, 0x8000, 3, rw())?;
    // The first page of d1; the middle page of d2.
    invoke(partition, Operation::PARTITION_UNMAP, &[0x4000, 1])?;
    invoke(partition, Operation::PARTITION_UNMAP, &[0x9000, 1])?;
    delete(d1);
    delete(d2);
    // New memory, likely on the same frames, with a mark of its own.
    let fresh = own.retype(ObjectType::MEMORY, 5)?;
    fill(own, fresh, 5, 0x5eca_5eca)?;

    // Into its partition as VP 0 (CONTROL), then its exits to `exits` (RUN).
    invoke(vp, Operation::VP_CONFIGURE, &[u64::from(partition.0), 0])?;
    invoke(vp, Operation::VP_SET_HANDLER, &[u64::from(exit_cap.0), 0])?;
    let rip = u64::from(HvRegisterName::RIP.0);
    invoke(vp, Operation::VP_SET_REGISTERS, &[1, rip, GUEST_CODE_GPA, 0])?;
    invoke(vp, Operation::VP_START, &[])?;
    let reads = serve_guest(exits);
    let _ = invoke(vp, Operation::VP_SUSPEND, &[]);
    for slot in [vp, partition, exit_cap, exits, code, fresh] {
        delete(slot);
    }
    Ok(reads)
}

/// Answers the guest's exits: a port write records the value its probe
/// read, an unmapped-GPA exit records `Unmapped` and skips the probe.
fn serve_guest(exits: CapSlot) -> [GuestRead; 4] {
    let mut reads = [GuestRead::Missing; 4];
    let mut received = tessera_rt::recv_timeout(exits, 500);
    loop {
        let Ok(r) = received else { return reads };
        let body = HvMessage::from_words(r.message.words()).ok().and_then(|m| m.parse().ok());
        let next = match body {
            Some(HvMessageBody::X64IoPortIntercept(io)) if io.port_number == GUEST_PORT => {
                let rip = io.header.rip;
                if let Some(i) = guest_probe(rip).filter(|&i| reads[i] == GuestRead::Missing) {
                    reads[i] = GuestRead::Value(io.rax as u32);
                }
                Some(rip + 3)
            }
            Some(HvMessageBody::UnmappedGpa(m)) => {
                let rip = m.header.rip;
                if let Some(i) = guest_probe(rip) {
                    reads[i] = GuestRead::Unmapped;
                }
                Some(rip + GUEST_PROBE_LEN)
            }
            _ => None,
        };
        let mut reply = match next {
            Some(rip) => {
                let mut m = Message::new(labels::VP_RESUME);
                for w in [1, u64::from(HvRegisterName::RIP.0), rip, 0] {
                    let _ = m.push(w);
                }
                m
            }
            None => {
                let mut m = Message::new(labels::VP_STOP);
                let _ = m.push(0);
                m
            }
        };
        if next.is_none() {
            let _ = tessera_rt::reply(&reply);
            return reads;
        }
        received = tessera_rt::reply_recv_timeout(exits, &reply, 500);
        reply.clear(labels::VP_STOP);
    }
}

/// Finding 1, task side: four mappings are recorded and a fifth refused;
/// a partial unmap splits its record; a split that cannot be recorded is
/// refused before anything changes; deleting the object leaves no page of
/// any of its mappings behind.
pub fn stale_task_mappings(own: &mut Own) {
    let outcome = (|| -> Result<(), ErrorCode> {
        let two = own.retype(ObjectType::MEMORY, 2)?;
        let three = own.retype(ObjectType::MEMORY, 3)?;
        let at = |i: u64| TASK_MAPS + i * 0x10_0000;
        for i in 0..4 {
            map(own.task, two, at(i), 2)?;
            map(own.task, three, at(8 + i), 3)?;
        }
        log!("{}", FIFTH_MAPPING.report(map(own.task, two, at(4), 2)));
        log!("{}", PARTIAL_TASK_UNMAP.report_allowed(unmap(own.task, at(0), 1)));
        log!("{}", UNRECORDABLE_SPLIT.report(unmap(own.task, at(8) + PAGE, 1)));
        let kept = still_mapped(own, at(8) + PAGE, 1);
        report("the page of the refused split", kept == 1, format_args!("{kept} of 1 still mapped (expected 1)"));
        delete(two);
        delete(three);
        let mut stale = 0;
        for i in 0..5 {
            stale += still_mapped(own, at(i), 2) + still_mapped(own, at(8 + i), 3);
        }
        report(
            "pages of a deleted memory object's task mappings",
            stale == 0,
            format_args!("{stale} still mapped (expected 0)"),
        );
        Ok(())
    })();
    if let Err(e) = outcome {
        report("task mapping probes", false, format_args!("could not run: {e:?}"));
    }
    own.reset();
}

/// TASK_MOVE_CAP, through its own task capability: a capability moved out
/// of a slot and back keeps its place in the derivation tree (a revoke of
/// it still ends its child), and each refusal.
pub fn task_move_cap(own: &mut Own) {
    let outcome = (|| -> Result<(), ErrorCode> {
        let task = own.task;
        let moving = move |from: CapSlot, to: CapSlot, direction: u64| {
            invoke(task, Operation::TASK_MOVE_CAP, &[u64::from(from.0), u64::from(to.0), direction]).map(drop)
        };
        let parent = own.retype(ObjectType::MEMORY, 1)?;
        let (child, away, bare) = (own.slot(), own.slot(), own.slot());
        invoke(parent, Operation::CAP_DERIVE, &[u64::from(child.0), bits(rw())])?;
        let there_and_back = moving(parent, away, tessera_rt::abi::invoke::MOVE_OUT_OF_TASK)
            .and_then(|()| moving(parent, away, tessera_rt::abi::invoke::MOVE_INTO_TASK))
            .and_then(|()| invoke(parent, Operation::CAP_REVOKE, &[]).map(drop));
        let child_gone = invoke(child, Operation::CAP_IDENTIFY, &[]).is_err();
        let kept = there_and_back.and(if child_gone { Ok(()) } else { Err(ErrorCode::INVALID_STATE) });
        log!("{}", MOVE_KEEPS_THE_TREE.report_allowed(kept));
        invoke(parent, Operation::CAP_DERIVE, &[u64::from(child.0), bits(rw())])?;
        log!("{}", MOVE_ONTO_OCCUPIED.report(moving(parent, child, tessera_rt::abi::invoke::MOVE_OUT_OF_TASK)));
        log!("{}", MOVE_SLOT_ZERO.report(moving(CapSlot(0), away, tessera_rt::abi::invoke::MOVE_OUT_OF_TASK)));
        log!(
            "{}",
            MOVE_PAST_THE_SPACE.report(moving(
                parent,
                CapSlot(tessera_rt::abi::limits::CSPACE_SLOTS),
                tessera_rt::abi::invoke::MOVE_INTO_TASK
            ))
        );
        log!("{}", MOVE_BAD_DIRECTION.report(moving(parent, away, 2)));
        invoke(task, Operation::CAP_DERIVE, &[u64::from(bare.0), bits(Rights::new())])?;
        let got = invoke(bare, Operation::TASK_MOVE_CAP, &[u64::from(parent.0), u64::from(away.0), 1]).map(drop);
        log!("{}", MOVE_WITHOUT_CONTROL.report(got));
        for slot in [child, parent, away, bare] {
            delete(slot);
        }
        Ok(())
    })();
    if let Err(e) = outcome {
        report("TASK_MOVE_CAP probes", false, format_args!("could not run: {e:?}"));
    }
    own.reset();
}

/// Finding 8: page tables, tasks, partitions, VPs and the other kernel
/// objects are charged to the untyped they come from, and given back.
pub fn kernel_memory_is_charged(own: &mut Own) {
    let mut made = heapless::Vec::<CapSlot, 16>::new();
    let outcome = (|| -> Result<(), ErrorCode> {
        let task = own.retype(ObjectType::TASK, 0)?;
        let _ = made.push(task);
        let page = own.retype(ObjectType::MEMORY, 1)?;
        let _ = made.push(page);
        // Three top-level slots apart: three new tables each.
        for k in 1..=3u64 {
            map(task, page, k << 39, 1)?;
        }
        let partition = own.retype(ObjectType::PARTITION, 0)?;
        let _ = made.push(partition);
        invoke(partition, Operation::PARTITION_MAP, &[u64::from(page.0), 0x10_0000, bits(rw()), 1])?;
        let kinds = [ObjectType::VP, ObjectType::ENDPOINT, ObjectType::NOTIFICATION, ObjectType::SCHED_CONTEXT];
        for kind in kinds.into_iter().chain([ObjectType::THREAD]) {
            let _ = made.push(own.retype(kind, 0)?);
        }
        let left = untyped_left(own.untyped);
        let rest = own.retype(ObjectType::MEMORY, QUOTA_PAGES - 1);
        report(
            "retype all but one page of the quota while tables, a task, a partition, a VP and 4 objects live",
            rest.is_err(),
            format_args!("{:?} ({left} bytes left; expected an error)", rest.map(drop)),
        );
        if let Ok(slot) = rest {
            delete(slot);
        }
        Ok(())
    })();
    if let Err(e) = outcome {
        report("kernel memory probes", false, format_args!("could not run: {e:?}"));
    }
    for slot in made.iter().rev() {
        delete(*slot);
    }
    own.reset();
    let all = own.retype(ObjectType::MEMORY, QUOTA_PAGES);
    report(
        "retype the whole quota once they are deleted",
        all.is_ok(),
        format_args!("{:?} (expected Ok: every charge was given back)", all.map(drop)),
    );
    if let Ok(slot) = all {
        delete(slot);
    }
    own.reset();
}

/// Bytes the untyped has left (CAP_IDENTIFY's size word), for the log.
fn untyped_left(untyped: CapSlot) -> u64 {
    invoke(untyped, Operation::CAP_IDENTIFY, &[]).map_or(0, |m| m.words().get(3).copied().unwrap_or(0))
}

/// Finding 8: one revoke that ends more objects than the destroy queue
/// held (64) ends every one of them.
pub fn revoke_ends_everything(own: &mut Own) {
    const OBJECTS: u64 = 70;
    let outcome = (|| -> Result<u64, ErrorCode> {
        let pool = own.pool(OBJECTS + 4, memory_objects(OBJECTS as u16))?;
        for i in 0..OBJECTS {
            let page = own.retype_from(pool, ObjectType::MEMORY, 1)?;
            map(own.task, page, PROBE_PAGES + i * PAGE, 1)?;
        }
        invoke(pool, Operation::CAP_REVOKE, &[])?;
        delete(pool);
        own.reset();
        Ok(still_mapped(own, PROBE_PAGES, OBJECTS))
    })();
    own.reset();
    report(
        "pages of 70 memory objects one CAP_REVOKE ended",
        outcome == Ok(0),
        format_args!("{outcome:?} still mapped (expected Ok(0))"),
    );
}

/// Finding 6: retype a sub-pool, retype memory from it, delete the
/// sub-pool; again and again. The memory that lives never exceeds the quota.
pub fn quota_loop_is_bounded(own: &mut Own) {
    const ROUNDS: u64 = 8;
    const PAGES: u64 = 64;
    let mut live = heapless::Vec::<CapSlot, { ROUNDS as usize }>::new();
    for _ in 0..ROUNDS {
        let Ok(pool) = own.pool(PAGES, memory_objects(1)) else { break };
        let memory = own.retype_from(pool, ObjectType::MEMORY, PAGES);
        delete(pool);
        match memory {
            Ok(m) => {
                let _ = live.push(m);
            }
            Err(_) => break,
        }
    }
    let pages = live.len() as u64 * PAGES;
    report(
        "retype sub-pool, retype memory from it, delete the sub-pool, 8 times",
        pages <= QUOTA_PAGES,
        format_args!("{pages} pages live from a {QUOTA_PAGES}-page quota (expected at most {QUOTA_PAGES})"),
    );
    for m in live {
        delete(m);
    }
    own.reset();
    // A charge must never credit a pool that merely reuses the index of the
    // pool that paid for it.
    let reused = (|| -> Result<Result<(), ErrorCode>, ErrorCode> {
        let first = own.pool(16, memory_objects(1))?;
        let memory = own.retype_from(first, ObjectType::MEMORY, 16)?;
        delete(first);
        let second = own.pool(16, memory_objects(1))?;
        delete(memory);
        let over = own.retype_from(second, ObjectType::MEMORY, 17).map(drop);
        delete(second);
        Ok(over)
    })();
    own.reset();
    let _ = own.retype(ObjectType::MEMORY, 1).map(delete);
    own.reset();
    report(
        "retype 17 pages from a new 16-page sub-pool after memory of a deleted one goes",
        matches!(reused, Ok(Err(_))),
        format_args!("{reused:?} (expected Ok(Err(OUT_OF_MEMORY)))"),
    );
}

/// A sub-pool asking for one thread more than its parent has left is
/// refused, and nothing changes (R1 finding 5: entries are a quota).
pub fn pool_entries_are_bounded(own: &mut Own) {
    let before = tessera_rt::untyped::left(own.untyped);
    let threads = before.map_or(0, |l| l.entries.get(EntryKind::Thread));
    let got = own.pool(1, Entries::NONE.with(EntryKind::Thread, threads.saturating_add(1)));
    if let Ok(pool) = got {
        delete(pool);
    }
    own.reset();
    let unchanged = before.is_ok() && tessera_rt::untyped::left(own.untyped) == before;
    report(
        "retype a sub-pool with one thread more than its untyped has left",
        got == Err(ErrorCode::OUT_OF_MEMORY) && unchanged,
        format_args!("{:?}, its untyped unchanged: {unchanged} (expected OUT_OF_MEMORY, true)", got.map(drop)),
    );
}

/// Finding 3: entry and stack addresses `iretq` would fault on in ring 0.
pub fn thread_addresses_are_checked(own: &mut Own) {
    let Ok(thread) = own.retype(ObjectType::THREAD, 0) else {
        report("THREAD_CONFIGURE probes", false, format_args!("no thread"));
        return;
    };
    let nap = own.retype(ObjectType::NOTIFICATION, 0).ok();
    for (what, entry, stack) in BAD_THREAD_ADDRESSES {
        let got = invoke(thread, Operation::THREAD_CONFIGURE, &[u64::from(own.task.0), entry, stack, 0, 0, 0, 0]);
        let check = Check { what, expected: BAD_THREAD_ADDRESS };
        log!("THREAD_CONFIGURE with a {}", check.report(got.as_ref().map(drop).map_err(|e| *e)));
        if got.is_ok() {
            // Let it run (this task sleeps a few ticks), so what ring 0
            // does with it shows: `iretq` faults in ring 0 on hardware.
            let _ = invoke(thread, Operation::THREAD_START, &[]);
            if let Some(n) = nap {
                let _ = tessera_rt::wait_timeout(n, 3);
            }
            let _ = invoke(thread, Operation::THREAD_SUSPEND, &[]);
        }
    }
    if let Some(n) = nap {
        delete(n);
    }
    delete(thread);
    own.reset();
}

/// A thread capability kept after the thread's task went must go on naming
/// that thread, not a thread made later in its place: deleting the old
/// capability must leave the new thread alone.
pub fn stale_thread_capability(own: &mut Own) {
    let outcome = (|| -> Result<Result<(), ErrorCode>, (&str, ErrorCode)> {
        let task = own.retype(ObjectType::TASK, 0).map_err(|e| ("retype a task", e))?;
        let old = own.retype(ObjectType::THREAD, 0).map_err(|e| ("retype a thread", e))?;
        let configure = |thread: CapSlot, task: CapSlot| {
            invoke(thread, Operation::THREAD_CONFIGURE, &[u64::from(task.0), 0x40_1000, 0x7000_0000, 0, 0, 0, 0])
        };
        configure(old, task).map_err(|e| ("configure the first thread", e))?;
        delete(task);
        let new = own.retype(ObjectType::THREAD, 0).map_err(|e| ("retype the second thread", e))?;
        delete(old);
        let got = configure(new, own.task).map(drop);
        delete(new);
        Ok(got)
    })();
    own.reset();
    let check =
        Check { what: "configure a new thread after deleting a thread capability whose task went", expected: &[] };
    match outcome {
        Ok(got) => log!("{}", check.report_allowed(got)),
        Err((step, e)) => report(check.what, false, format_args!("could not {step}: {e:?}")),
    }
}

/// Finding 3: an instruction that ends at the top of the user half returns
/// to the first non-canonical address (`syscall` there leaves RCX =
/// 0x8000_0000_0000, and the kernel's `iretq` faults in ring 0 on it). The
/// last user page must not be mappable, as Linux keeps it unmapped.
pub fn top_page_is_not_mappable(own: &mut Own) {
    const TOP_PAGE: u64 = 0x7fff_ffff_f000;
    let outcome = (|| -> Result<Result<(), ErrorCode>, ErrorCode> {
        let code = own.retype(ObjectType::MEMORY, 1)?;
        let mut window = Window::map(own.task, code, WINDOW, 0, 1, true)?;
        if let Some(bytes) = window.bytes_mut() {
            bytes[0xffe..].copy_from_slice(&[0x0f, 0x05]);
        }
        window.unmap(own.task)?;
        let rx = Rights::new().with_read(true).with_execute(true);
        let mapped = invoke(own.task, Operation::TASK_MAP, &[u64::from(code.0), TOP_PAGE, bits(rx), 1]).map(drop);
        if mapped.is_ok() {
            // Run `syscall` at its last two bytes, so what ring 0 does shows.
            let thread = own.retype(ObjectType::THREAD, 0)?;
            let nap = own.retype(ObjectType::NOTIFICATION, 0)?;
            let args = [u64::from(own.task.0), TOP_PAGE + 0xffe, 0x7000_0000, 0, 0, 0, 0];
            if invoke(thread, Operation::THREAD_CONFIGURE, &args).is_ok() {
                let _ = invoke(thread, Operation::THREAD_START, &[]);
                let _ = tessera_rt::wait_timeout(nap, 3);
                let _ = invoke(thread, Operation::THREAD_SUSPEND, &[]);
            }
            let _ = unmap(own.task, TOP_PAGE, 1);
            delete(nap);
            delete(thread);
        }
        delete(code);
        Ok(mapped)
    })();
    own.reset();
    let check =
        Check { what: "TASK_MAP the last page below the non-canonical hole", expected: &[ErrorCode::BAD_ADDRESS] };
    match outcome {
        Ok(got) => log!("{}", check.report(got)),
        Err(e) => report(check.what, false, format_args!("could not run: {e:?}")),
    }
}

/// Finding 3: random syscalls and invocations on objects of its own, with
/// random slots, labels, lengths, words and IPC-buffer contents. Ring 0 must
/// refuse or do each without faulting; the log line after it proves the
/// task (and the kernel) got through.
pub fn storm(own: &mut Own) {
    let seed = storm_seed();
    log!("storm: {STORM_CALLS} random syscalls from seed {seed:#x} (rebuild with HOSTILE_SEED=<n> for another)");
    // One of every kind but sub-pools, and a second memory object.
    let entries = EntryKind::ALL.into_iter().fold(memory_objects(2), |e, k| e.with(k, e.get(k).max(1)));
    let Ok(pool) = own.pool(48, entries.with(EntryKind::Untyped, 0)) else {
        report("storm", false, format_args!("no sub-pool"));
        return;
    };
    let mut slots = heapless::Vec::<u32, 24>::new();
    let _ = slots.push(pool.0);
    for (kind, pages) in [
        (ObjectType::TASK, 0),
        (ObjectType::THREAD, 0),
        (ObjectType::ENDPOINT, 0),
        (ObjectType::NOTIFICATION, 0),
        (ObjectType::SCHED_CONTEXT, 0),
        (ObjectType::MEMORY, 2),
        (ObjectType::PARTITION, 0),
        (ObjectType::VP, 0),
    ] {
        if let Ok(slot) = own.retype_from(pool, kind, pages) {
            let _ = slots.push(slot.0);
        }
    }
    // Empty slots of its own, for objects the storm makes.
    for _ in 0..8 {
        let _ = slots.push(own.slot().0);
    }
    let first = own.first_free;
    // Never name the slots it lives by (its task, untyped, endpoints).
    let safe = |w: u64| if w < u64::from(first) { 0 } else { w };
    let mut rng = Rng::new(seed);
    let mut counts = [0u32; 16];
    for _ in 0..STORM_CALLS {
        let slot =
            if rng.below(4) == 0 { rng.next_u64() } else { u64::from(slots[rng.below(slots.len() as u64) as usize]) };
        let slot = safe(slot);
        let mut words = [0u64; abi::MAX_MESSAGE_WORDS];
        for w in words.iter_mut() {
            *w = safe(rng.word(&slots));
        }
        if rng.below(3) > 0 {
            // An invocation, its words (past the fourth) through the IPC buffer.
            let label = match rng.below(4) {
                0 => rng.next_u64() as u32,
                _ => OPERATIONS[rng.below(OPERATIONS.len() as u64) as usize].0,
            };
            let len = rng.below(abi::MAX_MESSAGE_WORDS as u64 + 1) as usize;
            let got = Message::from_words(label, &words[..len])
                .map(|mut m| tessera_rt::invoke_in_place(CapSlot(slot as u32), &mut m));
            counts[usize::from(matches!(got, Some(Ok(()))))] += 1;
        } else {
            let number = rng.below(16);
            if Sysnum(number) == Sysnum::EXIT {
                continue;
            }
            let info = MessageInfo::from_bits(rng.next_u64() & ((1 << 42) - 1)).with_non_blocking(true);
            let mrs = [words[0], words[1], words[2], words[3]];
            let got = sys::syscall(Sysnum(number), slot, info, mrs, 1 + rng.below(3));
            counts[usize::from(got.error == ErrorCode::OK)] += 1;
        }
    }
    let _ = invoke(pool, Operation::CAP_REVOKE, &[]);
    delete(pool);
    own.reset();
    log!(
        "storm: {STORM_CALLS} calls from seed {seed:#x}: {} refused, {} done; the kernel stayed up: ok",
        counts[0],
        counts[1]
    );
}

/// The operations the storm picks labels from (and random ones).
const OPERATIONS: [Operation; 39] = [
    Operation::CAP_DERIVE,
    Operation::CAP_MINT,
    Operation::CAP_DELETE,
    Operation::CAP_REVOKE,
    Operation::CAP_IDENTIFY,
    Operation::UNTYPED_RETYPE,
    Operation::TASK_MAP,
    Operation::TASK_UNMAP,
    Operation::TASK_INSTALL_CAP,
    Operation::TASK_MOVE_CAP,
    Operation::THREAD_CONFIGURE,
    Operation::THREAD_START,
    Operation::THREAD_SUSPEND,
    Operation::SCHED_CONFIGURE,
    Operation::SCHED_LIMIT,
    Operation::IRQ_BIND,
    Operation::IRQ_ACK,
    Operation::IRQ_ISSUE,
    Operation::NOTIFICATION_BIND,
    Operation::PARTITION_MAP,
    Operation::PARTITION_UNMAP,
    Operation::PARTITION_FLUSH_TLB,
    Operation::PARTITION_SET_CORE_EXCLUSIVE,
    Operation::PARTITION_HOLD_WRITE,
    Operation::PARTITION_SET_FLOATING_PORTS,
    Operation::PARTITION_LATCH_PORT,
    Operation::PARTITION_POST_PORT,
    Operation::PARTITION_DRAIN_POSTED,
    Operation::VP_CONFIGURE,
    Operation::VP_RESET,
    Operation::VP_SET_HANDLER,
    Operation::VP_SET_REGISTERS,
    Operation::VP_GET_REGISTERS,
    Operation::VP_START,
    Operation::VP_SET_MONITOR,
    Operation::VP_SET_EXIT_STATE,
    Operation::VP_SUSPEND,
    Operation::IO_IN,
    Operation::IO_OUT_BYTES,
];
