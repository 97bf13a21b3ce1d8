//! The partition-manager task: creates the manifest's partitions from its
//! untyped memory, then serves the "partition-manager" endpoint (see the
//! library for the logic) and the VP monitor reports that arrive on it.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("partition-manager is a Tessera task; it runs only on the bare target (x86_64-unknown-none).");
}

#[cfg(target_os = "none")]
mod task {
    use abi::{CapSlot, ErrorCode, ObjectType, Rights, labels};
    use partition_manager::journal::{self, Held};
    use partition_manager::{
        GuestAccess, Handout, JOURNAL_PAGES, Kernel, MonitorSpec, PAGE, PartitionManager, Spec, monitor_of,
    };
    use partition_manager_api::{ENDPOINT, dispatch_in_place};
    use sysimage::SystemImage;
    use sysimage::manifest::{Party, TaskIndex};
    use tessera_rt::memory::Window;
    use tessera_rt::{Message, Operation, caps, invoke, log};

    /// Where the boot image is mapped.
    const BOOTFS_AT: u64 = 0x1_0000_0000;
    /// Where memory is mapped while the manager fills it (the ROM page).
    const SCRATCH_AT: u64 = 0x2_0000_0000;
    /// Where the journal is mapped for the task's life.
    const JOURNAL_AT: u64 = 0x3_0000_0000;
    /// Free capability slots the manager hands out (of 128).
    const SLOTS: usize = 100;

    fn bits(r: Rights) -> u64 {
        u64::from(r.into_bits())
    }

    /// The kernel, through the manager's own capabilities.
    struct Objects {
        untyped: Option<CapSlot>,
        task: Option<CapSlot>,
        endpoint: CapSlot,
        first: u32,
        used: [bool; SLOTS],
        monitors_reported: bool,
    }

    impl Objects {
        fn slot(&mut self) -> Result<CapSlot, ErrorCode> {
            let i = self.used.iter().position(|u| !u).ok_or(ErrorCode::OUT_OF_MEMORY)?;
            self.used[i] = true;
            Ok(CapSlot(self.first + i as u32))
        }

        fn give_back(&mut self, slot: CapSlot) {
            if let Some(u) = slot.0.checked_sub(self.first).and_then(|i| self.used.get_mut(i as usize)) {
                *u = false;
            }
        }

        fn retype(&mut self, kind: ObjectType, pages: u64) -> Result<CapSlot, ErrorCode> {
            let untyped = self.untyped.ok_or(ErrorCode::OUT_OF_MEMORY)?;
            let slot = self.slot()?;
            let made = tessera_rt::untyped::retype(untyped, kind, slot, pages);
            made.map(|()| slot).inspect_err(|_| self.give_back(slot))
        }

        /// Runs `op` with a fresh slot, giving it back if `op` fails.
        fn made_in_slot(&mut self, op: impl FnOnce(CapSlot) -> Result<(), ErrorCode>) -> Result<CapSlot, ErrorCode> {
            let slot = self.slot()?;
            match op(slot) {
                Ok(()) => Ok(slot),
                Err(e) => {
                    let _ = invoke(slot, Operation::CAP_DELETE, &[]);
                    self.give_back(slot);
                    Err(e)
                }
            }
        }
    }

    impl Kernel for Objects {
        fn create_memory(&mut self, pages: u64) -> Result<CapSlot, ErrorCode> {
            self.retype(ObjectType::MEMORY, pages)
        }

        fn create_partition(&mut self) -> Result<CapSlot, ErrorCode> {
            self.retype(ObjectType::PARTITION, 0)
        }

        fn create_vp(&mut self) -> Result<CapSlot, ErrorCode> {
            self.retype(ObjectType::VP, 0)
        }

        fn configure_vp(&mut self, vp: CapSlot, partition: CapSlot, index: u32) -> Result<(), ErrorCode> {
            invoke(vp, Operation::VP_CONFIGURE, &[u64::from(partition.0), u64::from(index)]).map(drop)
        }

        fn fill(&mut self, memory: CapSlot, bytes: &[u8]) -> Result<(), ErrorCode> {
            let task = self.task.ok_or(ErrorCode::INVALID_CAPABILITY)?;
            let pages = (bytes.len() as u64).div_ceil(PAGE).max(1);
            let mut window = Window::map(task, memory, SCRATCH_AT, 0, pages, true)?;
            if let Some(b) = window.bytes_mut() {
                b[..bytes.len()].copy_from_slice(bytes);
            }
            window.unmap(task)
        }

        fn map(
            &mut self,
            partition: CapSlot,
            memory: CapSlot,
            gpa: u64,
            access: GuestAccess,
            offset: u64,
            pages: u64,
        ) -> Result<(), ErrorCode> {
            let rights = Rights::new().with_read(access.read).with_write(access.write).with_execute(access.execute);
            let args = [u64::from(memory.0), gpa, bits(rights), offset << 32 | pages];
            invoke(partition, Operation::PARTITION_MAP, &args).map(drop)
        }

        fn set_core_exclusive(&mut self, partition: CapSlot) -> Result<(), ErrorCode> {
            invoke(partition, Operation::PARTITION_SET_CORE_EXCLUSIVE, &[1]).map(drop)
        }

        fn unmap(&mut self, partition: CapSlot, gpa: u64, pages: u64) -> Result<(), ErrorCode> {
            invoke(partition, Operation::PARTITION_UNMAP, &[gpa, pages]).map(drop)
        }

        fn get_register(&mut self, vp: CapSlot, name: u32) -> Result<(u64, u64), ErrorCode> {
            let reply = invoke(vp, Operation::VP_GET_REGISTERS, &[1, u64::from(name)])?;
            match *reply.words() {
                [low, high, ..] => Ok((low, high)),
                _ => Err(ErrorCode::INVALID_STATE),
            }
        }

        fn set_register(&mut self, vp: CapSlot, name: u32, low: u64, high: u64) -> Result<(), ErrorCode> {
            invoke(vp, Operation::VP_SET_REGISTERS, &[1, u64::from(name), low, high]).map(drop)
        }

        fn set_monitor(&mut self, vp: CapSlot, badge: u64, ticks: u64) -> Result<CapSlot, ErrorCode> {
            let endpoint = self.endpoint;
            let send = bits(Rights::new().with_send(true));
            let monitor = self.made_in_slot(|slot| {
                invoke(endpoint, Operation::CAP_MINT, &[u64::from(slot.0), send, badge])?;
                invoke(vp, Operation::VP_SET_MONITOR, &[u64::from(slot.0), ticks]).map(drop)
            });
            if let Err(e) = monitor
                && !self.monitors_reported
            {
                self.monitors_reported = true;
                log!("VPs run without a monitor: VP_SET_MONITOR failed with {e:?}");
            }
            monitor
        }

        fn suspend_vp(&mut self, vp: CapSlot) -> Result<(), ErrorCode> {
            invoke(vp, Operation::VP_SUSPEND, &[]).map(drop)
        }

        fn reset_vp(&mut self, vp: CapSlot) -> Result<(), ErrorCode> {
            invoke(vp, Operation::VP_RESET, &[]).map(drop)
        }

        fn derive(&mut self, cap: CapSlot, rights: Handout) -> Result<CapSlot, ErrorCode> {
            let rights = match rights {
                Handout::RamReadWrite => Rights::new().with_read(true).with_write(true),
                Handout::Run => Rights::new().with_run(true),
            };
            self.made_in_slot(|slot| invoke(cap, Operation::CAP_DERIVE, &[u64::from(slot.0), bits(rights)]).map(drop))
        }

        fn revoke(&mut self, cap: CapSlot) -> Result<(), ErrorCode> {
            invoke(cap, Operation::CAP_REVOKE, &[]).map(drop)
        }

        fn delete(&mut self, cap: CapSlot) {
            let _ = invoke(cap, Operation::CAP_DELETE, &[]);
            self.give_back(cap);
        }
    }

    pub fn main() {
        let endpoint = caps::endpoint(ENDPOINT).expect("no \"partition-manager\" endpoint to serve");
        let objects = Objects {
            untyped: caps::find("untyped", ObjectType::UNTYPED),
            task: caps::find("self", ObjectType::TASK),
            endpoint,
            first: caps::first_unnamed_slot().0,
            used: [false; SLOTS],
            monitors_reported: false,
        };
        let mut manager = PartitionManager::new(objects);
        let (mut journal, recovered) = recover(&mut manager);
        if !recovered && let Err(e) = create_partitions(&mut manager, &mut journal) {
            log!("cannot read the manifest's partitions: {e:?}");
        }
        save(&manager, &mut journal);
        log!("ready, serving {ENDPOINT}");
        serve(endpoint, &mut manager, &mut journal)
    }

    /// The journal of a system with partitions: a memory object in the
    /// first free slot, where a restart looks for it. `None` (logged) if it
    /// cannot be made: the manager runs, and a restart starts afresh.
    fn new_journal(manager: &mut PartitionManager<Objects>) -> Option<Window> {
        let objects = manager.kernel();
        let made = objects.retype(ObjectType::MEMORY, JOURNAL_PAGES).and_then(|slot| {
            let task = objects.task.ok_or(ErrorCode::INVALID_CAPABILITY);
            let mapped = task.and_then(|task| {
                // Where a restart looks for it, or nowhere.
                (slot.0 == objects.first).then_some(()).ok_or(ErrorCode::INVALID_STATE)?;
                Window::map(task, slot, JOURNAL_AT, 0, JOURNAL_PAGES, true)
            });
            mapped.inspect_err(|_| objects.delete(slot))
        });
        made.inspect_err(|e| log!("no journal ({e:?}): a restart will not recover the partitions")).ok()
    }

    /// Whether the manager holds `slot` with a capability of `kind`.
    fn holds(slot: CapSlot, kind: ObjectType) -> bool {
        invoke(slot, Operation::CAP_IDENTIFY, &[]).is_ok_and(|r| r.words()[0] == u64::from(kind.0))
    }

    /// After a restart the supervisor has returned the capabilities the
    /// last instance made to the same slots: the journal in the first, the
    /// partitions' objects in others. Reads the table back and keeps what
    /// it names; a partition that names a capability gone is ended (its
    /// capabilities revoked, so its VID's go too, and deleted), and any
    /// other capability is deleted (left by a request the last instance
    /// did not finish; what a VID received of it stays). Without a
    /// readable journal everything is deleted and the manager starts
    /// afresh. Returns the journal, if there is one, and whether the table
    /// was recovered (not on a first start).
    fn recover(manager: &mut PartitionManager<Objects>) -> (Option<Window>, bool) {
        let objects = manager.kernel();
        let (first, Some(task)) = (objects.first, objects.task) else { return (None, false) };
        let occupied = |i: usize| invoke(CapSlot(first + i as u32), Operation::CAP_IDENTIFY, &[]).is_ok();
        if !(0..SLOTS).any(occupied) {
            return (None, false);
        }
        let is_journal = invoke(CapSlot(first), Operation::CAP_IDENTIFY, &[]).is_ok_and(|identify| {
            let (kind, size) = (identify.words()[0], identify.words()[3]);
            kind == u64::from(ObjectType::MEMORY.0) && size == JOURNAL_PAGES * PAGE
        });
        let window = is_journal.then(|| Window::map(task, CapSlot(first), JOURNAL_AT, 0, JOURNAL_PAGES, true));
        let window = match window {
            Some(Ok(window)) => Some(window),
            Some(Err(e)) => {
                log!("restarted, but cannot map the journal: {e:?}");
                None
            }
            None => None,
        };
        objects.used[0] = window.is_some();
        let kind_of = |held: Held| match held {
            Held::Partition => ObjectType::PARTITION,
            Held::Memory => ObjectType::MEMORY,
            Held::Vp => ObjectType::VP,
            Held::Endpoint => ObjectType::ENDPOINT,
        };
        let mut ended = 0;
        let restored = match window.as_ref().and_then(|w| journal::latest(w.bytes())) {
            Some(table) => manager.restore(
                table,
                |slot, held| holds(slot, kind_of(held)),
                |slot| {
                    let _ = invoke(slot, Operation::CAP_REVOKE, &[]);
                    let _ = invoke(slot, Operation::CAP_DELETE, &[]);
                    ended += 1;
                },
            ),
            None => Err(journal::JournalError::NoValidCopy),
        };
        let named: heapless::Vec<CapSlot, SLOTS> = manager.slots().take(SLOTS).collect();
        let objects = manager.kernel();
        for slot in &named {
            if let Some(used) = slot.0.checked_sub(objects.first).and_then(|i| objects.used.get_mut(i as usize)) {
                *used = true;
            }
        }
        let mut strays = 0;
        for i in (0..SLOTS).filter(|&i| !objects.used[i] && occupied(i)) {
            let _ = invoke(CapSlot(objects.first + i as u32), Operation::CAP_DELETE, &[]);
            strays += 1;
        }
        match restored {
            Ok(r) => log!(
                "restarted: {} partition{} recovered from the journal ({} dropped, {strays} stray capabilities deleted)",
                r.partitions,
                if r.partitions == 1 { "" } else { "s" },
                r.dropped
            ),
            Err(e) => {
                log!("restarted without a readable journal ({e:?}): {strays} capabilities deleted; starting afresh")
            }
        }
        if ended > 0 {
            log!("{ended} capabilities of dropped partitions revoked");
        }
        let recovered = restored.is_ok();
        (window, recovered)
    }

    fn save(manager: &PartitionManager<Objects>, journal: &mut Option<Window>) {
        if let Some(area) = journal.as_mut().and_then(Window::bytes_mut) {
            manager.save(area);
        }
    }

    /// Creates every partition the manifest in the boot image declares.
    fn create_partitions(
        manager: &mut PartitionManager<Objects>,
        journal: &mut Option<Window>,
    ) -> Result<(), ErrorCode> {
        let Some(bootfs) = caps::find("bootfs", ObjectType::MEMORY) else { return Ok(()) };
        let task = manager.kernel().task.ok_or(ErrorCode::INVALID_CAPABILITY)?;
        let size = invoke(bootfs, Operation::CAP_IDENTIFY, &[])?.words()[3];
        let window = Window::map(task, bootfs, BOOTFS_AT, 0, size / PAGE, false)?;
        let created = create_all(manager, journal, window.bytes());
        window.unmap(task)?;
        created
    }

    fn create_all(
        manager: &mut PartitionManager<Objects>,
        journal: &mut Option<Window>,
        bootfs: &[u8],
    ) -> Result<(), ErrorCode> {
        let image = SystemImage::parse(bootfs).map_err(|_| ErrorCode::INVALID_ARGUMENT)?;
        let m = &image.manifest;
        if !m.partitions.is_empty() && journal.is_none() {
            *journal = new_journal(manager);
        }
        // Monitor pages first: each partition's build maps those it sees.
        for (i, c) in m.connections.iter().enumerate() {
            let (Party::Partition(from), Some(from_page)) = (c.from, c.from_page) else { continue };
            let to = match (c.to, c.to_page) {
                (Party::Partition(k), Some(gpa)) => Some((u32::from(k.0), gpa)),
                _ => None,
            };
            let spec = MonitorSpec { connection_id: c.connection_id, from: u32::from(from.0), from_page, to };
            if let Err(e) = manager.declare_monitor(i, spec) {
                log!("connection {:#x}: cannot declare its monitor page: status {:#x}", c.connection_id, e.status().0);
            }
        }
        for (i, p) in m.partitions.iter().enumerate() {
            let vid = m.task(p.vid).map_or("?", |t| t.name);
            let spec = Spec {
                name: p.name,
                index: i as u32,
                vid: abi::Badge(TaskIndex::badge(p.vid)),
                memory: p.memory,
                vcpus: p.vcpus,
                exit_timeout_ms: p.exit_timeout_ms,
                core_exclusive: m.scheduler == sysimage::SchedulerPolicy::Core,
            };
            match manager.create_from_manifest(&spec) {
                Ok(id) => log!(
                    "{}: created as partition {id} ({} MiB of RAM, {} VP{}) for {vid}",
                    p.name,
                    p.memory >> 20,
                    p.vcpus,
                    if p.vcpus == 1 { "" } else { "s" }
                ),
                Err(e) => log!("{}: cannot create the partition: status {:#x}", p.name, e.status().0),
            }
        }
        Ok(())
    }

    /// The server loop: interface requests from clients, VP_STOPPED
    /// reports from the kernel on monitor badges. A successful `attach`,
    /// `attach_vp` or `attach_monitor` reply carries the capabilities the
    /// manager derived for it.
    fn serve(endpoint: CapSlot, manager: &mut PartitionManager<Objects>, journal: &mut Option<Window>) -> ! {
        let mut message = Message::new(0);
        let mut next = tessera_rt::recv_in_place(endpoint, &mut message);
        loop {
            let badge = match next {
                Ok((badge, _)) => badge,
                Err(e) => {
                    log!("cannot receive: {e:?}; exiting");
                    tessera_rt::exit()
                }
            };
            if monitor_of(badge.0).is_some() {
                if message.label() == labels::VP_STOPPED {
                    match manager.vp_stopped(badge.0, message.words()) {
                        Some(notice) => log!("{notice}"),
                        None => log!("a VP stop report names no VP of mine (badge {:#x})", badge.0),
                    }
                }
                // The kernel ignores the reply.
                message.clear(0);
            } else {
                let crashes = manager.crashes();
                dispatch_in_place(manager, badge, &mut message);
                if let Some(notice) = manager.take_reattached() {
                    log!("{notice}");
                }
                if manager.crashes() != crashes
                    && let Some((name, p)) = manager.last_crash()
                {
                    log!(
                        "partition {name}: guest crash reported: P0 {:#x} P1 {:#x} P2 {:#x} P3 {:#x} P4 {:#x}",
                        p[0],
                        p[1],
                        p[2],
                        p[3],
                        p[4]
                    );
                }
            }
            // Written before the reply: what a client is told is kept.
            save(manager, journal);
            let mut outgoing = [CapSlot::NULL; abi::MAX_TRANSFER_CAPS];
            let count = manager.outgoing().len();
            outgoing[..count].copy_from_slice(manager.outgoing());
            next = tessera_rt::reply_recv_with_caps(endpoint, &mut message, &outgoing[..count]);
            manager.release_outgoing();
            if let Err(e) = next {
                if count > 0 {
                    log!("a reply carrying capabilities failed: {e:?}");
                }
                next = tessera_rt::recv_in_place(endpoint, &mut message);
            }
        }
    }
}

tessera_rt::entry!(task::main);
