//! The scheduler task: collects its `sched:<task>` capabilities, applies the
//! policy table, then serves the "scheduler" endpoint (see the library),
//! receiving the VP scheduling contexts the VIDs attach into slots of its
//! own.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("scheduler is a Tessera task; it runs only on the bare target (x86_64-unknown-none).");
}

#[cfg(target_os = "none")]
mod task {
    use core::cell::Cell;
    use scheduler::classic::ScParams;
    use scheduler::{POLICY, SchedControl, Scheduler};
    use scheduler_api::{ENDPOINT, SCHED_CAP_PREFIX, dispatch_in_place};
    use tessera_rt::{Badge, CapSlot, ErrorCode, Message, ObjectType, Operation, caps, invoke, log};

    /// Free slots a deleted capability left, reused before new ones.
    const FREED: usize = 8;

    /// `SCHED_CONFIGURE`: MR0 priority, MR1 budget, MR2 period (and the
    /// classic words after them).
    struct Kernel {
        /// The next never-used slot.
        next: u32,
        freed: [Option<CapSlot>; FREED],
    }

    impl Kernel {
        /// An empty slot to receive a capability into.
        fn slot(&mut self) -> CapSlot {
            if let Some(slot) = self.freed.iter_mut().find_map(Option::take) {
                return slot;
            }
            self.next += 1;
            CapSlot(self.next - 1)
        }
    }

    impl SchedControl for Kernel {
        fn configure(&mut self, context: CapSlot, priority: u8, budget: u64, period: u64) -> Result<(), ErrorCode> {
            invoke(context, Operation::SCHED_CONFIGURE, &[u64::from(priority), budget, period]).map(drop)
        }

        fn configure_classic(&mut self, context: CapSlot, words: &[u64; 6]) -> Result<(), ErrorCode> {
            invoke(context, Operation::SCHED_CONFIGURE, words).map(drop)
        }

        fn release(&mut self, slot: CapSlot) {
            // Empty afterwards either way: a revoked context (its VID went)
            // left it empty already.
            let _ = invoke(slot, Operation::CAP_DELETE, &[]);
            if let Some(free) = self.freed.iter_mut().find(|f| f.is_none()) {
                *free = Some(slot);
            }
        }

        fn applied(&mut self, partition: &[u8], vp: u32, lp: u32, p: &ScParams) {
            log!(
                "{}: VP {vp} on CPU {lp}: slice {}, budget {}/{} ticks, reserve {} ticks at priority {}",
                core::str::from_utf8(partition).unwrap_or("?"),
                p.slice,
                p.budget,
                p.period,
                p.reserve,
                p.reserve_priority
            );
        }
    }

    /// Receives each request with one capability slot open, and says
    /// whether a capability arrived there.
    struct Receiving {
        slot: Cell<CapSlot>,
        caps: Cell<u8>,
    }

    impl Receiving {
        /// Names the slot; without an IPC buffer no capability arrives.
        fn open(&self) {
            let _ = tessera_rt::ipc_buffer::set_receive_slots([self.slot.get(), CapSlot::NULL, CapSlot::NULL]);
        }
    }

    impl tessera_idl::Receiver for Receiving {
        fn recv(&self, endpoint: CapSlot, message: &mut Message) -> Result<Badge, ErrorCode> {
            self.open();
            let (badge, caps) = tessera_rt::recv_in_place(endpoint, message)?;
            self.caps.set(caps);
            Ok(badge)
        }

        fn reply_recv(&self, endpoint: CapSlot, message: &mut Message) -> Result<Badge, ErrorCode> {
            self.open();
            let (badge, caps) = tessera_rt::reply_recv_in_place(endpoint, message)?;
            self.caps.set(caps);
            Ok(badge)
        }
    }

    fn is_sched_context(slot: CapSlot) -> bool {
        invoke(slot, Operation::CAP_IDENTIFY, &[]).is_ok_and(|r| {
            r.words().first() == Some(&u64::from(ObjectType::SCHED_CONTEXT.0))
                && r.words().get(1).is_some_and(|&rights| abi::Rights::from_bits(rights as u32).control())
        })
    }

    pub fn main() {
        let endpoint = caps::endpoint(ENDPOINT).expect("no \"scheduler\" endpoint to serve");
        let kernel = Kernel { next: caps::first_unnamed_slot().0, freed: [None; FREED] };
        let mut scheduler = Scheduler::new(kernel, tessera_rt::startup::cpu_count());
        for (task, slot) in caps::with_prefix(SCHED_CAP_PREFIX, ObjectType::SCHED_CONTEXT) {
            if let Err(e) = scheduler.add_context(task, slot) {
                log!("ignoring {SCHED_CAP_PREFIX}{task}: {e:?}");
            }
        }
        let report = scheduler.apply_policy(POLICY);
        log!(
            "policy applied to {} of {} scheduling contexts ({} refused by the kernel)",
            report.applied,
            scheduler.contexts(),
            report.failed
        );
        log!("ready, serving {ENDPOINT}");
        let receiving = Receiving { slot: Cell::new(scheduler.control_mut().slot()), caps: Cell::new(0) };
        let error = tessera_idl::serve(&receiving, endpoint, |caller, message| {
            let slot = receiving.slot.get();
            let arrived = receiving.caps.get() > 0;
            receiving.caps.set(0);
            let offered = arrived && is_sched_context(slot);
            if arrived && !offered {
                let _ = invoke(slot, Operation::CAP_DELETE, &[]);
            }
            scheduler.offer(offered.then_some(slot));
            dispatch_in_place(&mut scheduler, caller, message);
            match scheduler.unused() {
                Some(unused) => {
                    let _ = invoke(unused, Operation::CAP_DELETE, &[]);
                }
                None if offered => {
                    // Kept: the next capability goes to another slot.
                    log!("{} VP scheduling contexts attached", scheduler.classic_vps());
                    receiving.slot.set(scheduler.control_mut().slot());
                }
                None => {}
            }
        });
        log!("cannot receive on slot {}: {:?}; exiting", endpoint.0, error);
        tessera_rt::exit()
    }
}

tessera_rt::entry!(task::main);
