//! Kernel lines a task can make ring 0 print: a thread of its own with no
//! fault handler, which faults at its first instruction, started again
//! and again. Each fault is a line on the shared console, printed in ring 0
//! with interrupts off; they must be rate-limited like the lines a guest
//! can cause, or one task owns the console and the CPU's interrupt latency.
//! The test counts the kernel's lines between the two markers logged here.

use crate::objects::{Own, delete, report};
use tessera_rt::{ErrorCode, ObjectType, Operation, invoke, log};

/// Faults made.
pub const FAULTS: u32 = 200;
/// An unmapped user address: the thread's first fetch faults (#PF).
const UNMAPPED: u64 = 0x5000_0000;
/// The task's priority (`tests/manifests/hostile.toml`): the faulting
/// thread takes turns with it, so each YIELD lets it fault once.
const PRIORITY: u64 = 10;

pub fn fault_lines_are_rate_limited(own: &mut Own) {
    log!("fault flood: start ({FAULTS} faults of a thread with no handler)");
    let outcome = (|| -> Result<u32, ErrorCode> {
        let sched = own.retype(ObjectType::SCHED_CONTEXT, 0)?;
        invoke(sched, Operation::SCHED_CONFIGURE, &[PRIORITY, 0, 0])?;
        let thread = own.retype(ObjectType::THREAD, 0)?;
        // MR0 task, entry, stack, IPC buffer; then no fault handler, the context, RDI.
        let args = [u64::from(own.task.0), UNMAPPED, UNMAPPED, 0, 0, u64::from(sched.0), 0];
        invoke(thread, Operation::THREAD_CONFIGURE, &args)?;
        let mut faults = 0;
        for _ in 0..FAULTS {
            invoke(thread, Operation::THREAD_START, &[])?;
            tessera_rt::yield_now();
            invoke(thread, Operation::THREAD_SUSPEND, &[])?;
            faults += 1;
        }
        delete(thread);
        delete(sched);
        Ok(faults)
    })();
    own.reset();
    match outcome {
        Ok(n) => log!("fault flood: done ({n} faults)"),
        Err(e) => report("fault flood", false, format_args!("could not run: {e:?}")),
    }
}
