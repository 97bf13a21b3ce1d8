//! The scheduler task: collects its `sched:<task>` capabilities, applies the
//! policy table, then serves the "scheduler" endpoint (see the library).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("scheduler is a Tessera task; it runs only on the bare target (x86_64-unknown-none).");
}

#[cfg(target_os = "none")]
mod task {
    use scheduler::{POLICY, SchedControl, Scheduler};
    use scheduler_api::{ENDPOINT, SCHED_CAP_PREFIX, dispatch_in_place};
    use tessera_rt::{CapSlot, ErrorCode, ObjectType, Operation, caps, log};

    /// `SCHED_CONFIGURE`: MR0 priority, MR1 budget, MR2 period.
    struct Kernel;

    impl SchedControl for Kernel {
        fn configure(&mut self, context: CapSlot, priority: u8, budget: u64, period: u64) -> Result<(), ErrorCode> {
            tessera_rt::invoke(context, Operation::SCHED_CONFIGURE, &[u64::from(priority), budget, period]).map(drop)
        }
    }

    pub fn main() {
        let endpoint = caps::endpoint(ENDPOINT).expect("no \"scheduler\" endpoint to serve");
        let mut scheduler = Scheduler::new(Kernel);
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
        tessera_rt::serve(endpoint, |caller, message| dispatch_in_place(&mut scheduler, caller, message));
    }
}

tessera_rt::entry!(task::main);
