//! Operations on objects (`Sysnum::INVOKE`): management is invocation on a
//! capability, never a new syscall. Arguments are message registers; each
//! operation checks the capability's type and rights first.

use super::transfer::{registers, set_registers};
use super::{Interrupt, IoRange, Kernel, SchedContext};
use crate::arch::addrspace::UserRights;
use crate::arch::{io, ioapic, memory};
use abi::invoke::Operation;
use abi::{Badge, CapSlot, Entries, EntryKind, ErrorCode, IpcBuffer, MessageInfo, ObjectType, Rights};
use core::mem::offset_of;
use kerncore::cap::{CSpace, Capability, ObjRef, SlotId};
use kerncore::paging::PAGE_SIZE;
use kerncore::sched::{Ceiling, SchedParams, ThreadId};

type Outcome = Result<MessageInfo, ErrorCode>;

/// Reply with `words` in the message registers.
pub(super) fn reply(k: &mut Kernel, t: ThreadId, words: &[u64]) -> Outcome {
    let mut mrs = [0; abi::REGISTER_WORDS];
    mrs[..words.len()].copy_from_slice(words);
    set_registers(&mut k.threads[usize::from(t.0)].context, mrs);
    Ok(MessageInfo::new().with_length(words.len() as u8))
}

pub(super) fn done() -> Outcome {
    Ok(MessageInfo::new())
}

pub(super) fn slot(value: u64) -> CapSlot {
    CapSlot(u32::try_from(value).unwrap_or(u32::MAX))
}

fn need(f: impl FnOnce(Rights) -> Rights) -> Rights {
    f(Rights::new())
}

pub(super) fn control() -> Rights {
    need(|r| r.with_control(true))
}

/// What running a partition's VPs needs (a VID's right).
pub(super) fn run_right() -> Rights {
    need(|r| r.with_run(true))
}

/// A word of the caller's IPC buffer.
pub(super) fn buffer_word(k: &Kernel, t: ThreadId, index: usize) -> Result<u64, ErrorCode> {
    let (_, phys) = k.threads[usize::from(t.0)].ipc_buffer.ok_or(ErrorCode::INVALID_ARGUMENT)?;
    Ok(memory::read_phys_u64(phys + (offset_of!(IpcBuffer, words) + 8 * index) as u64))
}

/// Word `i` of the caller's message: a register, or its IPC buffer.
pub(super) fn message_word(k: &Kernel, t: ThreadId, mr: &[u64; 4], i: usize) -> Result<u64, ErrorCode> {
    if i < abi::REGISTER_WORDS { Ok(mr[i]) } else { buffer_word(k, t, i) }
}

/// Runs the operation; objects it ends are left in `k.doomed` for the
/// caller to reap.
pub fn invoke(k: &mut Kernel, t: ThreadId, cap_slot: CapSlot, info: MessageInfo) -> Outcome {
    let cspace = k.cspace_of(t).ok_or(ErrorCode::INVALID_STATE)?;
    let (slot_id, cap) = k.caps.lookup_any(cspace, cap_slot)?;
    let mr = registers(&k.threads[usize::from(t.0)].context);
    let op = Operation(info.label());
    match op {
        Operation::CAP_DERIVE => {
            let dest = k.caps.resolve(cspace, slot(mr[0]))?;
            let rights = Rights::from_bits(u32::try_from(mr[1]).map_err(|_| ErrorCode::INVALID_ARGUMENT)?);
            k.caps.derive(slot_id, dest, rights)?;
            done()
        }
        Operation::CAP_MINT => {
            let dest = k.caps.resolve(cspace, slot(mr[0]))?;
            let rights = Rights::from_bits(u32::try_from(mr[1]).map_err(|_| ErrorCode::INVALID_ARGUMENT)?);
            k.caps.mint(slot_id, dest, rights, Badge(mr[2]))?;
            done()
        }
        Operation::CAP_DELETE => {
            let removed = k.caps.delete(slot_id)?;
            Kernel::note_removed(&mut k.doomed, removed);
            done()
        }
        Operation::CAP_REVOKE => {
            let Kernel { caps, doomed, .. } = k;
            caps.revoke(slot_id, |removed| Kernel::note_removed(doomed, removed))?;
            done()
        }
        Operation::CAP_IDENTIFY => {
            let head = [u64::from(cap.object.kind.0), u64::from(cap.rights.into_bits()), cap.badge.0];
            match cap.object.kind {
                // What is left of its pages, then of its entries, then
                // what the kernel's pool has free.
                ObjectType::UNTYPED => {
                    let pool = k.quota.get(cap.object.index).ok_or(ErrorCode::INVALID_STATE)?;
                    let mut words = [0; abi::invoke::IDENTIFY_UNTYPED_WORDS];
                    words[..3].copy_from_slice(&head);
                    words[3] = pool.left() * PAGE_SIZE;
                    let entries = pool.entries_left().to_words();
                    words[4..4 + entries.len()].copy_from_slice(&entries);
                    words[4 + entries.len()] = crate::arch::memory::free_frame_count() * PAGE_SIZE;
                    super::transfer::reply_words(k, t, &words)
                }
                kind => {
                    let size = match kind {
                        ObjectType::MEMORY => {
                            k.memory[cap.object.index as usize].as_ref().map_or(0, |m| m.pages() * PAGE_SIZE)
                        }
                        _ => 0,
                    };
                    reply(k, t, &[head[0], head[1], head[2], size])
                }
            }
        }
        Operation::UNTYPED_RETYPE => retype(k, t, cspace, slot_id, cap, mr, info),
        Operation::TASK_MAP => task_map(k, cspace, cap, mr),
        Operation::TASK_UNMAP => {
            let task = expect(cap, ObjectType::TASK, control())?;
            let (vaddr, pages) = (mr[0], mr[1]);
            let len = pages.checked_mul(PAGE_SIZE).ok_or(ErrorCode::INVALID_ARGUMENT)?;
            // Only recorded pages can be unmapped, and only if the records
            // they cut still fit: the kernel must always know every place a
            // memory object is mapped.
            k.check_unmap(task, vaddr, pages)?;
            let space = &mut k.tasks[task as usize].as_mut().ok_or(ErrorCode::INVALID_STATE)?.space;
            space.unmap(vaddr, len).map_err(|_| ErrorCode::BAD_ADDRESS)?;
            k.record_unmap(task, vaddr, pages);
            k.forget_ipc_buffers(|t| t.task == Some(task), vaddr, len, true);
            done()
        }
        Operation::TASK_INSTALL_CAP => {
            let task = expect(cap, ObjectType::TASK, control())?;
            let target = k.task(task).ok_or(ErrorCode::INVALID_STATE)?.cspace;
            let (src, source) = k.caps.lookup_any(cspace, slot(mr[0]))?;
            let dest = k.caps.resolve(target, slot(mr[1]))?;
            let rights = Rights::from_bits(u32::try_from(mr[2]).map_err(|_| ErrorCode::INVALID_ARGUMENT)?);
            let badge = Badge(mr[3]);
            if badge.0 != 0 && source.badge.0 == 0 {
                k.caps.mint(src, dest, rights, badge)?;
            } else {
                k.caps.derive(src, dest, rights)?;
            }
            done()
        }
        Operation::TASK_MOVE_CAP => {
            let task = expect(cap, ObjectType::TASK, control())?;
            let target = k.task(task).ok_or(ErrorCode::INVALID_STATE)?.cspace;
            let (theirs, mine) = (k.caps.resolve(target, slot(mr[0]))?, k.caps.resolve(cspace, slot(mr[1]))?);
            let (from, to) = match mr[2] {
                abi::invoke::MOVE_INTO_TASK => (mine, theirs),
                abi::invoke::MOVE_OUT_OF_TASK => (theirs, mine),
                _ => return Err(ErrorCode::INVALID_ARGUMENT),
            };
            k.caps.move_cap(from, to)?;
            done()
        }
        Operation::THREAD_CONFIGURE => thread_configure(k, t, cspace, cap, mr),
        Operation::THREAD_START => {
            let thread = ThreadId(expect(cap, ObjectType::THREAD, control())? as u16);
            let tcb = &mut k.threads[usize::from(thread.0)];
            if !tcb.alive || tcb.task.is_none() || tcb.started {
                return Err(ErrorCode::INVALID_STATE);
            }
            tcb.started = true;
            k.ipc.resume(thread).map_err(|_| ErrorCode::INVALID_STATE)?;
            done()
        }
        Operation::THREAD_SUSPEND => {
            let thread = ThreadId(expect(cap, ObjectType::THREAD, control())? as u16);
            k.ipc.suspend(thread).map_err(|_| ErrorCode::INVALID_STATE)?;
            k.threads[usize::from(thread.0)].started = false;
            // Suspended means off every CPU once this returns.
            crate::arch::ipi::wait_out(crate::arch::ipi::Outside::User(thread.0));
            done()
        }
        Operation::SCHED_CONFIGURE => {
            let index = expect(cap, ObjectType::SCHED_CONTEXT, control())? as usize;
            // MR3..MR5 (slice, reserve, reserve priority) only when the
            // message has them: callers of three words keep their meaning.
            let mut extra = [0; 3];
            for (i, word) in extra.iter_mut().enumerate().take(usize::from(info.length()).saturating_sub(3)) {
                *word = message_word(k, t, &mr, 3 + i)?;
            }
            let params = SchedParams::from_abi_full(mr[0], mr[1], mr[2], extra[0], extra[1], extra[2])?;
            let sc = k.sched[index].as_mut().ok_or(ErrorCode::INVALID_STATE)?;
            if !sc.ceiling.permits(params) {
                return Err(ErrorCode::NO_RIGHTS);
            }
            sc.params = params;
            if let Some(thread) = sc.bound {
                k.ipc.configure(thread, params).map_err(|_| ErrorCode::INVALID_STATE)?;
            }
            done()
        }
        Operation::SCHED_SET_CPU => {
            let index = expect(cap, ObjectType::SCHED_CONTEXT, control())? as usize;
            let cpu = usize::try_from(mr[0]).map_err(|_| ErrorCode::INVALID_ARGUMENT)?;
            if !crate::arch::smp::is_online(cpu) {
                return Err(ErrorCode::INVALID_ARGUMENT);
            }
            let sc = k.sched[index].as_mut().ok_or(ErrorCode::INVALID_STATE)?;
            sc.cpu = cpu;
            if let Some(thread) = sc.bound {
                k.ipc.set_cpu(thread, cpu);
            }
            done()
        }
        Operation::SCHED_LIMIT => {
            let index = expect(cap, ObjectType::SCHED_CONTEXT, control())? as usize;
            let to = Ceiling::of(SchedParams::from_abi(mr[0], mr[1], mr[2])?);
            let sc = k.sched[index].as_mut().ok_or(ErrorCode::INVALID_STATE)?;
            let ceiling = sc.ceiling.lowered_to(to).ok_or(ErrorCode::NO_RIGHTS)?;
            if !ceiling.permits(sc.params) {
                return Err(ErrorCode::INVALID_STATE);
            }
            sc.ceiling = ceiling;
            done()
        }
        Operation::IO_IN => {
            let range = io_range(k, cap, need(|r| r.with_read(true)))?;
            let (port, width) = (mr[0], mr[1]);
            if !range.contains(port, width) {
                return Err(ErrorCode::INVALID_ARGUMENT);
            }
            let value = io::port_in(port as u16, width).ok_or(ErrorCode::INVALID_ARGUMENT)?;
            reply(k, t, &[u64::from(value)])
        }
        Operation::IO_OUT => {
            let range = io_range(k, cap, need(|r| r.with_write(true)))?;
            let (port, width) = (mr[0], mr[1]);
            if !range.contains(port, width) {
                return Err(ErrorCode::INVALID_ARGUMENT);
            }
            if !io::port_out(port as u16, width, mr[2] as u32) {
                return Err(ErrorCode::INVALID_ARGUMENT);
            }
            done()
        }
        Operation::IO_OUT_BYTES => {
            let range = io_range(k, cap, need(|r| r.with_write(true)))?;
            let (port, count) = (mr[0], mr[1]);
            let words = usize::from(info.length());
            // The bytes start at MR2 and run through the message words given.
            if !range.contains(port, 1) || words < 2 || count > 8 * (words as u64 - 2) || words > abi::MAX_MESSAGE_WORDS
            {
                return Err(ErrorCode::INVALID_ARGUMENT);
            }
            let mut bytes = [0u8; 8 * abi::MAX_MESSAGE_WORDS];
            for i in 2..words {
                let word = if i < abi::REGISTER_WORDS { mr[i] } else { buffer_word(k, t, i)? };
                bytes[8 * (i - 2)..8 * (i - 1)].copy_from_slice(&word.to_le_bytes());
            }
            io::port_out_bytes(port as u16, &bytes[..count as usize]);
            done()
        }
        Operation::IO_PORTS_RANGE => {
            let parent = io_range(k, cap, control())?;
            let (base, count) = (mr[0], mr[1]);
            if count == 0 || !parent.contains(base, count) {
                return Err(ErrorCode::INVALID_ARGUMENT);
            }
            let dest = k.caps.resolve(cspace, slot(mr[2]))?;
            let index = k.io.iter().position(Option::is_none).ok_or(ErrorCode::OUT_OF_MEMORY)?;
            k.io[index] = Some(IoRange { base: base as u16, count: count as u32 });
            let child = Capability::new(ObjRef { kind: ObjectType::IO_PORTS, index: index as u32 }, cap.rights);
            if let Err(e) = derive_new(k, slot_id, dest, child) {
                k.io[index] = None;
                return Err(e);
            }
            done()
        }
        Operation::IRQ_ISSUE => {
            let parent = expect(cap, ObjectType::INTERRUPT, control())? as usize;
            let range = k.interrupts[parent].ok_or(ErrorCode::INVALID_STATE)?;
            let gsi = u32::try_from(mr[0]).map_err(|_| ErrorCode::INVALID_ARGUMENT)?;
            if gsi < range.first || gsi - range.first >= range.count || !ioapic::exists(gsi) {
                return Err(ErrorCode::INVALID_ARGUMENT);
            }
            if k.interrupts.iter().flatten().any(|l| l.count == 1 && l.first == gsi) {
                return Err(ErrorCode::INVALID_STATE);
            }
            let dest = k.caps.resolve(cspace, slot(mr[1]))?;
            let index = k.interrupts.iter().position(Option::is_none).ok_or(ErrorCode::OUT_OF_MEMORY)?;
            k.interrupts[index] = Some(Interrupt { first: gsi, count: 1, binding: None, armed: false });
            let child = Capability::new(ObjRef { kind: ObjectType::INTERRUPT, index: index as u32 }, cap.rights);
            if let Err(e) = derive_new(k, slot_id, dest, child) {
                k.interrupts[index] = None;
                return Err(e);
            }
            done()
        }
        Operation::IRQ_BIND => {
            let index = expect(cap, ObjectType::INTERRUPT, control())? as usize;
            let (_, ntf) = k.caps.lookup(cspace, slot(mr[0]), ObjectType::NOTIFICATION, need(|r| r.with_send(true)))?;
            let bit = mr[1];
            let line = k.interrupts[index].as_mut().ok_or(ErrorCode::INVALID_STATE)?;
            if line.count != 1 || bit > 63 {
                return Err(ErrorCode::INVALID_ARGUMENT);
            }
            line.binding = Some((kerncore::ipc::NotificationId(ntf.object.index), 1 << bit));
            line.armed = true;
            ioapic::set(line.first, false);
            done()
        }
        Operation::NOTIFICATION_BIND => {
            let ntf =
                kerncore::ipc::NotificationId(expect(cap, ObjectType::NOTIFICATION, need(|r| r.with_receive(true)))?);
            if flag(mr[0])? {
                k.ipc.bind_notification(ntf, t)?;
            } else if k.ipc.bound_notification(t) == Some(ntf) {
                k.ipc.unbind_notification(t)?;
            } else {
                return Err(ErrorCode::INVALID_STATE);
            }
            done()
        }
        Operation::IRQ_ACK => {
            let index = expect(cap, ObjectType::INTERRUPT, Rights::new())? as usize;
            let line = k.interrupts[index].as_mut().ok_or(ErrorCode::INVALID_STATE)?;
            if line.count != 1 || line.binding.is_none() {
                return Err(ErrorCode::INVALID_STATE);
            }
            line.armed = true;
            ioapic::set(line.first, false);
            done()
        }
        Operation::PARTITION_MAP
        | Operation::PARTITION_UNMAP
        | Operation::VP_CONFIGURE
        | Operation::VP_RESET
        | Operation::VP_SET_REGISTERS
        | Operation::VP_GET_REGISTERS
        | Operation::VP_START
        | Operation::PARTITION_FLUSH_TLB
        | Operation::PARTITION_SET_CORE_EXCLUSIVE
        | Operation::PARTITION_HOLD_WRITE
        | Operation::PARTITION_SET_FLOATING_PORTS
        | Operation::PARTITION_LATCH_PORT
        | Operation::PARTITION_POST_PORT
        | Operation::PARTITION_DRAIN_POSTED
        | Operation::VP_SET_MONITOR
        | Operation::VP_SET_EXIT_STATE
        | Operation::VP_SUSPEND
        | Operation::PARTITION_ENABLE_VTL
        | Operation::PARTITION_DISABLE_VTL
        | Operation::PARTITION_PROTECT
        | Operation::VP_ENABLE_VTL
        | Operation::VP_SWITCH_VTL
        | Operation::VP_SET_HANDLER => super::vm::invoke(k, t, cspace, cap, op, mr, info),
        _ => Err(ErrorCode::INVALID_OPERATION),
    }
}

/// The object index, if `cap` is of `kind` and carries `needed`.
/// A message word that says yes (1) or no (0); INVALID_ARGUMENT otherwise.
pub(super) fn flag(word: u64) -> Result<bool, ErrorCode> {
    match word {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(ErrorCode::INVALID_ARGUMENT),
    }
}

pub(super) fn expect(cap: Capability, kind: ObjectType, needed: Rights) -> Result<u32, ErrorCode> {
    if cap.object.kind != kind {
        return Err(ErrorCode::WRONG_TYPE);
    }
    if !cap.rights.contains(needed) {
        return Err(ErrorCode::NO_RIGHTS);
    }
    Ok(cap.object.index)
}

fn io_range(k: &Kernel, cap: Capability, needed: Rights) -> Result<IoRange, ErrorCode> {
    let index = expect(cap, ObjectType::IO_PORTS, needed)?;
    k.io.get(index as usize).copied().flatten().ok_or(ErrorCode::INVALID_STATE)
}

/// Puts the first capability of a new object in `dest`, as a child of
/// `parent` (the untyped or range it came from), so revoking the parent
/// removes it.
fn derive_new(k: &mut Kernel, parent: SlotId, dest: SlotId, cap: Capability) -> Result<(), ErrorCode> {
    k.caps.insert_child(parent, dest, cap)
}

/// `t` is the creator: a new scheduling context's ceiling is what it runs with.
fn retype(
    k: &mut Kernel,
    t: ThreadId,
    cspace: CSpace,
    untyped_slot: SlotId,
    cap: Capability,
    mr: [u64; 4],
    info: MessageInfo,
) -> Outcome {
    let untyped = expect(cap, ObjectType::UNTYPED, control())?;
    let kind = ObjectType(u8::try_from(mr[0]).map_err(|_| ErrorCode::INVALID_ARGUMENT)?);
    let dest = k.caps.resolve(cspace, slot(mr[1]))?;
    if k.caps.get(dest).is_some() {
        return Err(ErrorCode::SLOT_OCCUPIED);
    }
    k.quota.get(untyped).ok_or(ErrorCode::INVALID_STATE)?;
    let pages = mr[2];
    if kind == ObjectType::UNTYPED {
        // A sub-pool: MR2 pages and MR3.. entries of this pool's quota,
        // charged whole.
        if pages == 0 || usize::from(info.length()) != abi::invoke::RETYPE_POOL_WORDS {
            return Err(ErrorCode::INVALID_ARGUMENT);
        }
        let mut words = [0; EntryKind::COUNT];
        for (i, word) in words.iter_mut().enumerate() {
            *word = message_word(k, t, &mr, 3 + i)?;
        }
        // A count no table can reach is more than the pool has.
        let entries = Entries::from_words(&words).ok_or(ErrorCode::OUT_OF_MEMORY)?;
        let index = k.quota.carve(untyped, pages, entries).map_err(|_| ErrorCode::OUT_OF_MEMORY)?;
        let object = ObjRef { kind, index };
        if let Err(e) = derive_new(k, untyped_slot, dest, Capability::new(object, Rights::ALL)) {
            k.release_untyped(index);
            return Err(e);
        }
        return done();
    }
    // Everything else is charged its cost (a memory object its pages)
    // before it is made, and given back if it cannot be.
    let cost = match kind {
        ObjectType::MEMORY if pages == 0 => return Err(ErrorCode::INVALID_ARGUMENT),
        ObjectType::MEMORY => pages,
        ObjectType::TASK => abi::cost::TASK,
        ObjectType::THREAD => abi::cost::THREAD,
        ObjectType::ENDPOINT => abi::cost::ENDPOINT,
        ObjectType::NOTIFICATION => abi::cost::NOTIFICATION,
        ObjectType::SCHED_CONTEXT => abi::cost::SCHED_CONTEXT,
        ObjectType::PARTITION => abi::cost::PARTITION,
        ObjectType::VP => abi::cost::VP,
        _ => return Err(ErrorCode::INVALID_ARGUMENT),
    };
    // One entry of its kind too: the quota, not the table, runs out.
    let entry = EntryKind::of(kind).map(Entries::one).ok_or(ErrorCode::INVALID_ARGUMENT)?;
    k.quota.charge(Some(untyped), cost, entry).map_err(|_| ErrorCode::OUT_OF_MEMORY)?;
    let made = create(k, t, kind, pages);
    let index = match made {
        Ok(index) => index,
        Err(e) => {
            k.quota.credit(Some(untyped), cost, entry);
            return Err(e);
        }
    };
    let object = ObjRef { kind, index };
    if let Some(c) = k.charges.of(object) {
        *c = super::Charge { pool: Some(untyped), pages: cost, entry: true };
    }
    if let Err(e) = derive_new(k, untyped_slot, dest, Capability::new(object, Rights::ALL)) {
        // No capability names it yet: destroying it queues nothing.
        k.destroy(object);
        return Err(e);
    }
    done()
}

/// Makes an object of `kind` (not an untyped pool); returns its index.
fn create(k: &mut Kernel, t: ThreadId, kind: ObjectType, pages: u64) -> Result<u32, ErrorCode> {
    match kind {
        ObjectType::MEMORY => k.create_memory(pages),
        ObjectType::PARTITION => super::vm::create_partition(k),
        ObjectType::VP => super::vm::create_vp(k),
        ObjectType::TASK => k.create_task(),
        ObjectType::THREAD => {
            let id = k.ipc.alloc_thread()?;
            k.threads[usize::from(id.0)] = super::Thread { alive: true, ..super::Thread::DEAD };
            Ok(u32::from(id.0))
        }
        ObjectType::ENDPOINT => Ok(k.ipc.alloc_endpoint()?.0),
        ObjectType::NOTIFICATION => Ok(k.ipc.alloc_notification()?.0),
        ObjectType::SCHED_CONTEXT => {
            let index = k.sched.iter().position(Option::is_none).ok_or(ErrorCode::OUT_OF_MEMORY)?;
            // Its ceiling is what its creator runs with (§4.6).
            k.sched[index] = Some(SchedContext::new(Ceiling::of(k.ipc.scheduler().params(t))));
            Ok(index as u32)
        }
        _ => Err(ErrorCode::INVALID_ARGUMENT),
    }
}

fn task_map(k: &mut Kernel, cspace: CSpace, cap: Capability, mr: [u64; 4]) -> Outcome {
    let task = expect(cap, ObjectType::TASK, control())?;
    let (_, mem_cap) = k.caps.lookup(cspace, slot(mr[0]), ObjectType::MEMORY, Rights::new().with_read(true))?;
    let wanted = Rights::from_bits(u32::try_from(mr[2]).map_err(|_| ErrorCode::INVALID_ARGUMENT)?);
    if !mem_cap.rights.contains(wanted) || !wanted.read() {
        return Err(ErrorCode::NO_RIGHTS);
    }
    if wanted.write() && wanted.execute() {
        return Err(ErrorCode::INVALID_ARGUMENT);
    }
    let (offset, pages) = (mr[3] >> 32, mr[3] & 0xffff_ffff);
    let vaddr = mr[1];
    let index = mem_cap.object.index as usize;
    let mem = k.memory[index].as_ref().ok_or(ErrorCode::INVALID_STATE)?;
    if pages == 0 || offset.checked_add(pages).is_none_or(|end| end > mem.pages()) || !vaddr.is_multiple_of(PAGE_SIZE) {
        return Err(ErrorCode::INVALID_ARGUMENT);
    }
    // A mapping that cannot be recorded is never made.
    if mem.mappings.is_full() {
        return Err(ErrorCode::OUT_OF_MEMORY);
    }
    let segments: heapless::Vec<(u64, u64), { kerncore::frames::MAX_RUNS }> =
        mem.runs.segments(offset, pages).collect();
    let owner = ObjRef { kind: ObjectType::TASK, index: task };
    let rights = UserRights { writable: wanted.write(), executable: wanted.execute() };
    // Run by run; a refusal removes what the runs before it mapped, so a
    // refused map adds no translation.
    let mut at = vaddr;
    for (phys, n) in segments {
        let (_, budget) = k.table_budget(owner);
        let space = &mut k.tasks[task as usize].as_mut().ok_or(ErrorCode::INVALID_STATE)?.space;
        let (mapped, tables) = space.map(at, phys, n * PAGE_SIZE, rights, budget);
        if mapped.is_err() && at > vaddr {
            space.unmap_present(vaddr, at - vaddr);
        }
        // Tables a refused map added stay (empty) and are paid for all the same.
        k.charge_tables(owner, tables);
        mapped.map_err(|e| match e {
            kerncore::paging::MapError::OutOfMemory => ErrorCode::OUT_OF_MEMORY,
            _ => ErrorCode::BAD_ADDRESS,
        })?;
        at += n * PAGE_SIZE;
    }
    let record = kerncore::mapping::Mapping { owner: task, at: vaddr, pages };
    if let Some(mem) = k.memory[index].as_mut() {
        // Checked above, and nothing came between.
        let _ = mem.mappings.push(record);
    }
    done()
}

fn thread_configure(k: &mut Kernel, t: ThreadId, cspace: CSpace, cap: Capability, mr: [u64; 4]) -> Outcome {
    let thread = ThreadId(expect(cap, ObjectType::THREAD, control())? as u16);
    let (_, task_cap) = k.caps.lookup(cspace, slot(mr[0]), ObjectType::TASK, control())?;
    let (entry, stack, ipc_vaddr) = (mr[1], mr[2], mr[3]);
    // `iretq` to a non-canonical address faults in ring 0: only user
    // addresses are taken.
    if !(abi::USER_MIN..abi::USER_END).contains(&entry) || !(abi::USER_MIN..abi::USER_END).contains(&stack) {
        return Err(ErrorCode::BAD_ADDRESS);
    }
    let fault_slot = buffer_word(k, t, 4)?;
    let sched_slot = buffer_word(k, t, 5)?;
    let rdi = buffer_word(k, t, 6)?;
    if k.threads[usize::from(thread.0)].started {
        return Err(ErrorCode::INVALID_STATE);
    }
    let task = task_cap.object.index;
    // The IPC buffer must be a page the target task maps writable.
    let ipc_buffer = if ipc_vaddr == 0 {
        None
    } else {
        let space = &k.tasks[task as usize].as_ref().ok_or(ErrorCode::INVALID_STATE)?.space;
        let phys = space.translate_writable(ipc_vaddr).ok_or(ErrorCode::BAD_ADDRESS)?;
        if !ipc_vaddr.is_multiple_of(PAGE_SIZE) {
            return Err(ErrorCode::BAD_ADDRESS);
        }
        Some((ipc_vaddr, phys))
    };
    let fault_handler = if fault_slot == 0 {
        None
    } else {
        let (_, ep) = k.caps.lookup(cspace, slot(fault_slot), ObjectType::ENDPOINT, need(|r| r.with_send(true)))?;
        Some((kerncore::ipc::EndpointId(ep.object.index), ep.badge))
    };
    let context = sched_context(k, cspace, thread, sched_slot)?;
    bind_sched(k, thread, context)?;
    let tcb = &mut k.threads[usize::from(thread.0)];
    tcb.task = Some(task);
    tcb.ipc_buffer = ipc_buffer;
    tcb.fault_handler = fault_handler;
    tcb.context = crate::arch::entry::user_frame(entry, stack, rdi);
    done()
}

/// The scheduling context in slot `value` of `cspace` (0: none) for thread
/// `t` to run on; INVALID_STATE if another thread is bound to it.
pub(super) fn sched_context(k: &Kernel, cspace: CSpace, t: ThreadId, value: u64) -> Result<Option<usize>, ErrorCode> {
    if value == 0 {
        return Ok(None);
    }
    let (_, sc) = k.caps.lookup(cspace, slot(value), ObjectType::SCHED_CONTEXT, control())?;
    let index = sc.object.index as usize;
    let context = k.sched.get(index).and_then(Option::as_ref).ok_or(ErrorCode::INVALID_STATE)?;
    if context.bound.is_some_and(|b| b != t) {
        return Err(ErrorCode::INVALID_STATE);
    }
    Ok(Some(index))
}

/// Binds thread `t` to `context` (from [`sched_context`]; `None`: the
/// default parameters) and applies its parameters. The context `t` was
/// bound to before is left unbound, so it no longer steers `t`.
pub(super) fn bind_sched(k: &mut Kernel, t: ThreadId, context: Option<usize>) -> Result<(), ErrorCode> {
    let (params, cpu) = context.and_then(|i| k.sched[i]).map_or((SchedParams::DEFAULT, 0), |c| (c.params, c.cpu));
    k.ipc.configure(t, params).map_err(|_| ErrorCode::INVALID_STATE)?;
    k.ipc.set_cpu(t, cpu);
    for (i, sc) in k.sched.iter_mut().enumerate() {
        if let Some(sc) = sc {
            if Some(i) == context {
                sc.bound = Some(t);
            } else if sc.bound == Some(t) {
                sc.bound = None;
            }
        }
    }
    Ok(())
}

/// Creates the root task's untyped pool: `pages`, and every table entry
/// the kernel's own boot objects left free (so the entries charged to
/// pools never exceed a table).
pub fn create_untyped(k: &mut Kernel, pages: u64) -> Result<u32, ErrorCode> {
    let free = Entries::TABLES.saturating_sub(&k.entries_in_use());
    // The root pool's own entry.
    let entries = free.saturating_sub(&Entries::one(EntryKind::Untyped));
    k.quota.create_root(pages, entries).map_err(|_| ErrorCode::OUT_OF_MEMORY)
}
