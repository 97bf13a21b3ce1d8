//! The `evil-vid` test task: a VID written to attack (see the library for
//! how it reports). It attaches the partition the manifest gives it, as a
//! VID does, then tries everything a compromised VID might, against its own
//! partition, the partition of the healthy VID beside it, the partition
//! manager and the kernel, and logs each outcome.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("evil-vid is a Tessera task; it runs only on the bare target (x86_64-unknown-none).");
}

#[cfg(target_os = "none")]
mod task {
    use abi::startup::layout;
    use abi::{CapSlot, Entries, EntryKind, ErrorCode, ObjectType, Rights, VpStopReason, VpStopReport, labels};
    use core::fmt::Display;
    use evil_vid::{Attempt, Exhaustion, Got, Spent, Sweep};
    use partition_manager_api::{ATTACH_CAPS, Client, ENDPOINT};
    use sysimage::SystemImage;
    use sysimage::manifest::{MAX_PARTITIONS, TaskIndex};
    use tessera_idl::{CallError, ProtocolError, REPLY_OK};
    use tessera_rt::memory::Window;
    use tessera_rt::{Kernel, Message, Operation, caps, invoke, log, untyped};
    use tlfs::{HvError, HvRegisterName};

    const PAGE: u64 = 4096;
    /// Where the boot image is mapped.
    const BOOTFS_AT: u64 = 0x1_0000_0000;
    /// Slots one exhaustion loop may fill.
    const LOOP_SLOTS: u32 = 64;
    /// A guest-physical address above the guest's RAM.
    const FOREIGN_GPA: u64 = 0x4000_0000;
    const RW: u64 = 0b011;

    fn bits(r: Rights) -> u64 {
        u64::from(r.into_bits())
    }

    /// Where a thread the task configures but never starts would begin.
    fn parked() -> ! {
        tessera_rt::exit()
    }

    /// What the manifest says about this VID and its neighbours.
    struct Plan {
        /// Its partition's position among the manifest's.
        index: u32,
        name: &'static str,
        /// Another VID's partition.
        other_index: u32,
        other_vid_badge: u64,
        own_badge: u64,
        priority: u8,
    }

    fn plan() -> Option<Plan> {
        let bootfs = caps::find("bootfs", ObjectType::MEMORY)?;
        let task = caps::find("self", ObjectType::TASK)?;
        let size = invoke(bootfs, Operation::CAP_IDENTIFY, &[]).ok()?.words()[3];
        let bytes = Window::map(task, bootfs, BOOTFS_AT, 0, size / PAGE, false).ok()?.leak();
        let m = SystemImage::parse(bytes).ok()?.manifest;
        let me = tessera_rt::startup::task_name();
        let own = m.tasks.iter().position(|t| t.name == me)?;
        let own = TaskIndex(own as u8);
        let (index, p) = m.partitions.iter().enumerate().find(|(_, p)| p.vid == own)?;
        let (other_index, other) = m.partitions.iter().enumerate().find(|(_, p)| p.vid != own)?;
        Some(Plan {
            index: index as u32,
            name: p.name,
            other_index: other_index as u32,
            other_vid_badge: other.vid.badge(),
            own_badge: own.badge(),
            priority: m.task(own)?.priority.0,
        })
    }

    #[derive(Default)]
    struct Tally {
        passed: u32,
        failed: u32,
    }

    struct Evil {
        untyped: CapSlot,
        task: CapSlot,
        pm: CapSlot,
        ram: CapSlot,
        partition: CapSlot,
        vp: CapSlot,
        exit_cap: CapSlot,
        id: u64,
        plan: Plan,
        next: u32,
        tally: Tally,
    }

    /// Takes the capabilities the reply to `call` carries into `into`.
    fn receiving<T>(into: [CapSlot; ATTACH_CAPS], call: impl FnOnce() -> T) -> T {
        let _ = tessera_rt::ipc_buffer::set_receive_slots(into);
        let result = call();
        let _ = tessera_rt::ipc_buffer::set_receive_slots([CapSlot::NULL; ATTACH_CAPS]);
        result
    }

    pub fn main() {
        log!("starting: a VID written to attack");
        let (Some(untyped), Some(task), Some(pm), Some(plan)) = (
            caps::find("untyped", ObjectType::UNTYPED),
            caps::find("self", ObjectType::TASK),
            caps::endpoint(ENDPOINT),
            plan(),
        ) else {
            log!("no untyped, self, partition-manager or partition of its own: nothing to attack with");
            return;
        };
        let first = caps::first_unnamed_slot().0;
        let (ram, partition, vp) = (CapSlot(first), CapSlot(first + 1), CapSlot(first + 2));
        let client = Client::new(Kernel, pm);
        let attached = receiving([ram, partition, vp], || client.attach(plan.index, 1));
        let id = match attached {
            Ok(Ok((id, _, _, _))) => id,
            other => {
                log!("{}: the partition manager did not hand it over: {}", plan.name, Got::of_call(other));
                return;
            }
        };
        log!("{}: attached as partition {id}; attacking", plan.name);
        let mut evil = Evil {
            untyped,
            task,
            pm,
            ram,
            partition,
            vp,
            exit_cap: CapSlot::NULL,
            id,
            plan,
            next: first + 3,
            tally: Tally::default(),
        };
        if let Err(e) = evil.set_up() {
            log!("cannot make its exit endpoint: {e:?}");
            return;
        }
        evil.memory();
        evil.vps();
        evil.badges();
        evil.priorities();
        evil.exhaustion();
        let finalized = Got::of_call(client.finalize_partition(id));
        evil.check(&Attempt::allowed("finalize_partition of its own partition"), finalized);
        log!("done: {} checks passed, {} failed", evil.tally.passed, evil.tally.failed);
    }

    impl Evil {
        fn slot(&mut self) -> CapSlot {
            self.next += 1;
            CapSlot(self.next - 1)
        }

        fn make(&mut self, kind: ObjectType, pages: u64) -> Result<CapSlot, ErrorCode> {
            let slot = self.slot();
            untyped::retype(self.untyped, kind, slot, pages)?;
            Ok(slot)
        }

        fn log(&mut self, passed: bool, line: impl Display) {
            log!("{line}");
            if passed {
                self.tally.passed += 1;
            } else {
                self.tally.failed += 1;
            }
        }

        fn check(&mut self, attempt: &Attempt, got: Got) {
            self.log(got == attempt.expected, attempt.report(got));
        }

        fn set_up(&mut self) -> Result<(), ErrorCode> {
            let exits = self.make(ObjectType::ENDPOINT, 0)?;
            self.exit_cap = self.slot();
            let send = bits(Rights::new().with_send(true));
            invoke(exits, Operation::CAP_MINT, &[u64::from(self.exit_cap.0), send, 1]).map(drop)
        }

        /// Binds `vp` to the exit endpoint with scheduling context `sc`.
        fn set_handler(&self, vp: CapSlot, sc: CapSlot) -> Got {
            Got::of(invoke(vp, Operation::VP_SET_HANDLER, &[u64::from(self.exit_cap.0), u64::from(sc.0)]))
        }

        /// Puts `vp` into `partition` as VP `index`.
        fn configure(&self, vp: CapSlot, partition: CapSlot, index: u64) -> Got {
            Got::of(invoke(vp, Operation::VP_CONFIGURE, &[u64::from(partition.0), index]))
        }

        fn thread_with(&self, thread: CapSlot, sc: CapSlot) -> Got {
            let entry = parked as fn() -> ! as usize as u64;
            let stack = layout::MEMORY + PAGE;
            let args = [u64::from(self.task.0), entry, stack, 0, 0, u64::from(sc.0), 0];
            Got::of(invoke(thread, Operation::THREAD_CONFIGURE, &args))
        }

        /// Mapping memory it was not given, or changing its guest's mappings.
        fn memory(&mut self) {
            let rw = bits(Rights::new().with_read(true).with_write(true));
            let own = self.make(ObjectType::MEMORY, 1);
            let got = own.map_or_else(Got::Kernel, |mem| {
                Got::of(invoke(self.partition, Operation::PARTITION_MAP, &[u64::from(mem.0), FOREIGN_GPA, rw, 1]))
            });
            self.check(
                &Attempt::refused(
                    "PARTITION_MAP of memory from its own untyped into its partition",
                    ErrorCode::NO_RIGHTS,
                ),
                got,
            );
            let alias = [u64::from(self.ram.0), FOREIGN_GPA + 0x10_0000, rw, 1];
            let got = Got::of(invoke(self.partition, Operation::PARTITION_MAP, &alias));
            self.check(
                &Attempt::refused("PARTITION_MAP of its guest's RAM at a second GPA", ErrorCode::NO_RIGHTS),
                got,
            );
            let got = Got::of(invoke(self.partition, Operation::PARTITION_UNMAP, &[0x10_0000, 1]));
            self.check(&Attempt::refused("PARTITION_UNMAP of its guest's RAM", ErrorCode::NO_RIGHTS), got);
            let got = Got::of(invoke(self.partition, Operation::PARTITION_FLUSH_TLB, &[]));
            self.check(&Attempt::allowed("PARTITION_FLUSH_TLB of its partition"), got);
            // Withholding writes only takes away; where nothing is mapped
            // there is nothing to take, and giving back grants no more
            // than the manager mapped (kerncore's `hold_write` tests).
            let got = Got::of(invoke(self.partition, Operation::PARTITION_HOLD_WRITE, &[FOREIGN_GPA, 0]));
            self.check(
                &Attempt::refused("PARTITION_HOLD_WRITE where its guest has no RAM", ErrorCode::BAD_ADDRESS),
                got,
            );
            let got = Got::of(
                invoke(self.partition, Operation::PARTITION_HOLD_WRITE, &[0x10_0000, 1])
                    .and_then(|_| invoke(self.partition, Operation::PARTITION_HOLD_WRITE, &[0x10_0000, 0])),
            );
            self.check(&Attempt::allowed("PARTITION_HOLD_WRITE of its guest's RAM, then given back"), got);

            // The other partition, through the partition manager.
            let client = Client::new(Kernel, self.pm);
            let into = [self.slot(), self.slot(), self.slot()];
            let got = Got::of_call(receiving(into, || client.attach(self.plan.other_index, 1)));
            self.check(&Attempt::denied("attach of the other VID's partition", HvError::ACCESS_DENIED), got);
            let denied = Got::Status(HvError::ACCESS_DENIED);
            let (mut map, mut take, mut finalize) = (Sweep::default(), Sweep::default(), Sweep::default());
            let own_id = self.id;
            for id in (1..=MAX_PARTITIONS as u64).filter(|&id| id != own_id) {
                map.count(Got::of_call(client.map_gpa_pages(id, 0x100, 1, RW as u32)), denied);
                let into = [self.slot(), CapSlot::NULL, CapSlot::NULL];
                take.count(Got::of_call(receiving(into, || client.attach_vp(id, 0))), denied);
                finalize.count(Got::of_call(client.finalize_partition(id)), denied);
            }
            self.log(map.passed(), map.report("map_gpa_pages on every other partition ID", denied));
            self.log(take.passed(), take.report("attach_vp of VP 0 of every other partition ID", denied));
            self.log(finalize.passed(), finalize.report("finalize_partition of every other partition ID", denied));
        }

        /// Reconfiguring VPs: membership, index, monitor; and what a VID may do.
        fn vps(&mut self) {
            let send = [u64::from(self.exit_cap.0), 0];
            let got = Got::of(invoke(self.vp, Operation::VP_SET_MONITOR, &send));
            self.check(
                &Attempt::refused("VP_SET_MONITOR of its VP to an endpoint of its own", ErrorCode::NO_RIGHTS),
                got,
            );
            let got = self.make(ObjectType::PARTITION, 0).map_or_else(Got::Kernel, |p| self.configure(self.vp, p, 0));
            self.check(
                &Attempt::refused("VP_CONFIGURE of its VP into a partition of its own making", ErrorCode::NO_RIGHTS),
                got,
            );
            let got = self.configure(self.vp, self.partition, 7);
            self.check(&Attempt::refused("VP_CONFIGURE of its VP as VP 7", ErrorCode::NO_RIGHTS), got);
            let own_vp = self.make(ObjectType::VP, 0);
            let got = own_vp.map_or_else(Got::Kernel, |vp| self.configure(vp, self.partition, 1));
            self.check(
                &Attempt::refused("VP_CONFIGURE of a VP of its own making into its partition", ErrorCode::NO_RIGHTS),
                got,
            );

            let got = self.set_handler(self.vp, CapSlot::NULL);
            self.check(&Attempt::allowed("binding its VP to its exit endpoint"), got);
            let rip = u64::from(HvRegisterName::RIP.0);
            let got = Got::of(invoke(self.vp, Operation::VP_SET_REGISTERS, &[1, rip, 0x1000, 0]));
            self.check(&Attempt::allowed("VP_SET_REGISTERS of its VP"), got);
            let got = Got::of(invoke(self.vp, Operation::VP_GET_REGISTERS, &[1, rip]));
            self.check(&Attempt::allowed("VP_GET_REGISTERS of its VP"), got);
            let got = Got::of(invoke(self.vp, Operation::VP_SET_EXIT_STATE, &[0]));
            self.check(&Attempt::allowed("VP_SET_EXIT_STATE of its VP"), got);
            let got = Got::of(invoke(self.vp, Operation::VP_RESET, &[]));
            self.check(&Attempt::allowed("VP_RESET of its VP"), got);
            let got = own_vp.map_or_else(Got::Kernel, |vp| Got::of(invoke(vp, Operation::VP_RESET, &[])));
            self.check(
                &Attempt::refused("VP_RESET of a VP of its own making, in no partition", ErrorCode::INVALID_STATE),
                got,
            );
        }

        /// Speaking as someone else.
        fn badges(&mut self) {
            let (send, other) = (bits(Rights::new().with_send(true)), self.plan.other_vid_badge);
            let dest = self.slot();
            let got = Got::of(invoke(self.pm, Operation::CAP_MINT, &[u64::from(dest.0), send, other]));
            let what = "CAP_MINT of the other VID's badge from its badged partition-manager capability";
            self.check(&Attempt::refused(what, ErrorCode::INVALID_OPERATION), got);

            let dest = self.slot();
            let installed =
                invoke(self.task, Operation::TASK_INSTALL_CAP, &[u64::from(self.pm.0), u64::from(dest.0), send, other]);
            let badge = installed.and_then(|_| invoke(dest, Operation::CAP_IDENTIFY, &[])).map(|r| r.words()[2]);
            let own = self.plan.own_badge;
            let what = "TASK_INSTALL_CAP of its partition-manager capability with the other VID's badge";
            match badge {
                Ok(b) => self.log(
                    b == own,
                    format_args!(
                        "{what} -> the copy carries badge {b} (expected its own, {own}): {}",
                        evil_vid::verdict(b == own)
                    ),
                ),
                Err(e) => self.log(false, format_args!("{what} -> {e:?} (expected a copy): FAIL")),
            }

            let report = VpStopReport { reason: VpStopReason::HANDLER_GONE, vp_index: 0, message_type: 0, rip: 0 };
            let got = match Message::from_words(labels::VP_STOPPED, &report.to_words()) {
                Some(forged) => match tessera_rt::call(self.pm, &forged) {
                    Ok(reply) if reply.label() == REPLY_OK => Got::Ok,
                    Ok(reply) if ProtocolError(reply.label()) == ProtocolError::UNKNOWN_OPERATION => {
                        Got::Call(CallError::UnknownOperation)
                    }
                    Ok(reply) => Got::Call(CallError::Rejected(reply.label())),
                    Err(e) => Got::Kernel(e),
                },
                None => Got::Kernel(ErrorCode::MESSAGE_TOO_LONG),
            };
            // VP_STOPPED is a kernel label: the kernel refuses the send.
            let attempt = Attempt {
                what: "a forged VP_STOPPED report sent to the partition manager",
                expected: Got::Kernel(ErrorCode::INVALID_ARGUMENT),
            };
            self.check(&attempt, got);
        }

        /// Priorities above its own, and contexts bound elsewhere.
        fn priorities(&mut self) {
            let own = u64::from(self.plan.priority);
            let Ok(a) = self.make(ObjectType::SCHED_CONTEXT, 0) else {
                log!("cannot make a scheduling context");
                return;
            };
            let got = Got::of(invoke(a, Operation::SCHED_CONFIGURE, &[31, 0, 0]));
            self.check(&Attempt::refused("SCHED_CONFIGURE of a new context to priority 31", ErrorCode::NO_RIGHTS), got);
            let got = Got::of(invoke(a, Operation::SCHED_CONFIGURE, &[own + 1, 0, 0]));
            self.check(
                &Attempt::refused("SCHED_CONFIGURE of a new context one above its own priority", ErrorCode::NO_RIGHTS),
                got,
            );
            let got = Got::of(invoke(a, Operation::SCHED_CONFIGURE, &[own, 0, 0]));
            self.check(&Attempt::allowed("SCHED_CONFIGURE of a new context to its own priority"), got);
            let got = Got::of(invoke(a, Operation::SCHED_LIMIT, &[31, 0, 0]));
            self.check(&Attempt::refused("SCHED_LIMIT raising a context's ceiling to 31", ErrorCode::NO_RIGHTS), got);

            let contexts: [Result<CapSlot, ErrorCode>; 4] =
                core::array::from_fn(|_| self.make(ObjectType::SCHED_CONTEXT, 0));
            let threads: [Result<CapSlot, ErrorCode>; 3] = core::array::from_fn(|_| self.make(ObjectType::THREAD, 0));
            let (Ok(b), Ok(c), Ok(d), Ok(e)) = (contexts[0], contexts[1], contexts[2], contexts[3]) else {
                log!("cannot make scheduling contexts");
                return;
            };
            let (Ok(t1), Ok(t2), Ok(t3)) = (threads[0], threads[1], threads[2]) else {
                log!("cannot make threads");
                return;
            };
            let got = self.thread_with(t1, a);
            self.check(&Attempt::allowed("THREAD_CONFIGURE of a thread of its own with context A"), got);
            let got = self.set_handler(self.vp, a);
            self.check(
                &Attempt::refused("binding its VP to context A, bound to its thread", ErrorCode::INVALID_STATE),
                got,
            );
            // Rebinding leaves the old context free: it steers nothing.
            let _ = self.thread_with(t2, b);
            let _ = self.thread_with(t2, c);
            let got = self.thread_with(t3, b);
            self.check(
                &Attempt::allowed("THREAD_CONFIGURE of a thread with context B, which another thread left"),
                got,
            );
            let _ = self.set_handler(self.vp, d);
            let _ = self.set_handler(self.vp, e);
            let got = self.thread_with(t3, d);
            self.check(&Attempt::allowed("THREAD_CONFIGURE of a thread with context D, which its VP left"), got);
            let got = self.thread_with(t2, e);
            self.check(
                &Attempt::refused(
                    "THREAD_CONFIGURE of a thread with context E, bound to its VP",
                    ErrorCode::INVALID_STATE,
                ),
                got,
            );
        }

        /// Pages left of its untyped, and its entries left if the kernel says.
        fn left(&self) -> (u64, Option<Entries>) {
            let reply = invoke(self.untyped, Operation::CAP_IDENTIFY, &[]);
            let words = reply.as_ref().map_or(&[][..], |m| m.words());
            (words.get(3).map_or(0, |bytes| bytes / PAGE), untyped::Left::from_identify(words).map(|l| l.entries))
        }

        /// Retyping in a loop, kind by kind, from its whole untyped and from
        /// a one-page child.
        fn exhaustion(&mut self) {
            const KINDS: [(&str, ObjectType); 8] = [
                ("MEMORY", ObjectType::MEMORY),
                ("ENDPOINT", ObjectType::ENDPOINT),
                ("NOTIFICATION", ObjectType::NOTIFICATION),
                ("SCHED_CONTEXT", ObjectType::SCHED_CONTEXT),
                ("THREAD", ObjectType::THREAD),
                ("TASK", ObjectType::TASK),
                ("PARTITION", ObjectType::PARTITION),
                ("VP", ObjectType::VP),
            ];
            let got = Got::of(untyped::retype(self.untyped, ObjectType::MEMORY, self.slot(), 1 << 30));
            let what = "exhaust: retype MEMORY of 2^30 pages, more than its quota";
            self.check(&Attempt::refused(what, ErrorCode::OUT_OF_MEMORY), got);
            let (child, extra, first) = (self.slot(), self.slot(), self.next);
            // Its whole untyped: the loop must end on its own quota.
            for (name, kind) in KINDS {
                let (made, stopped) = until_refused(kind, self.untyped, first);
                let (pages_left, entries) = self.left();
                let entry = EntryKind::of(kind).expect("every kind here is made from an untyped");
                let cost = match kind {
                    ObjectType::MEMORY => 1,
                    ObjectType::TASK => abi::cost::TASK,
                    ObjectType::PARTITION => abi::cost::PARTITION,
                    ObjectType::VP => abi::cost::VP,
                    _ => abi::cost::POOL_ENTRY,
                };
                for slot in (first..first + made).rev() {
                    let _ = invoke(CapSlot(slot), Operation::CAP_DELETE, &[]);
                }
                let entries_left = entries.map(|e| e.get(entry));
                let e = Spent { kind: name, made, stopped, cost, pages_left, entries_left };
                self.log(e.passed(), e);
            }
            // A one-page child with one entry of the kind: the same, and the
            // parent untyped must still make one afterwards.
            for (name, kind) in KINDS {
                let pages = 1;
                let entry = EntryKind::of(kind).expect("every kind here is made from an untyped");
                let made_child = untyped::retype_pool(self.untyped, child, pages, Entries::one(entry));
                if let Err(e) = made_child {
                    log!("exhaust: cannot make a {pages}-page untyped: {e:?}");
                    self.tally.failed += 1;
                    continue;
                }
                let (made, stopped) = until_refused(kind, child, first);
                let parent = retype(kind, self.untyped, extra);
                let _ = invoke(extra, Operation::CAP_DELETE, &[]);
                let _ = invoke(child, Operation::CAP_REVOKE, &[]);
                let _ = invoke(child, Operation::CAP_DELETE, &[]);
                let e = Exhaustion { kind: name, pages, made, stopped, parent };
                self.log(e.passed(), e);
            }
        }
    }

    /// One object of `kind` from `from` into `into` (a one-page memory object).
    fn retype(kind: ObjectType, from: CapSlot, into: CapSlot) -> Got {
        let size = if kind == ObjectType::MEMORY { 1 } else { 0 };
        Got::of(untyped::retype(from, kind, into, size))
    }

    /// Objects of `kind` from `from` into slots `first..` until refused (or
    /// [`LOOP_SLOTS`] are full): how many, and what stopped it.
    fn until_refused(kind: ObjectType, from: CapSlot, first: u32) -> (u32, Option<Got>) {
        for made in 0..LOOP_SLOTS {
            let got = retype(kind, from, CapSlot(first + made));
            if got != Got::Ok {
                return (made, Some(got));
            }
        }
        (LOOP_SLOTS, None)
    }
}

#[cfg(target_os = "none")]
tessera_rt::entry!(task::main);
