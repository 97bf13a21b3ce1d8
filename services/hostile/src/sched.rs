//! A thread whose scheduling context goes must not keep the context's
//! parameters: it would run at a priority nobody pays a context for (and
//! the context's entry could be made again, for another thread). It runs
//! as a thread configured with none does: priority 0, below this task.
//!
//! A thread of its own spins, counting, on a context at the task's own
//! priority; the task spins too for a few ticks and sees it count (they
//! take turns). Once the context is deleted, the spinner must not count
//! while the task spins.

use crate::objects::{Own, bits, delete, report};
use core::sync::atomic::{AtomicU64, Ordering};
use tessera_rt::abi::Rights;
use tessera_rt::{ErrorCode, ObjectType, Operation, invoke};

/// The task's priority (`tests/manifests/hostile.toml`).
const PRIORITY: u64 = 10;
/// Where the spinner's stack page is mapped.
const STACK_AT: u64 = 0x6f00_0000;
/// Ticks the task spins for each count: several time slices.
const TICKS: u64 = 6;

static SPINS: AtomicU64 = AtomicU64::new(0);

fn spinner() -> ! {
    loop {
        SPINS.fetch_add(1, Ordering::Relaxed);
    }
}

/// How far the spinner counted while this thread spun for [`TICKS`].
fn spins_beside() -> u64 {
    let before = SPINS.load(Ordering::Relaxed);
    let until = tessera_rt::ticks() + TICKS;
    while tessera_rt::ticks() < until {}
    SPINS.load(Ordering::Relaxed) - before
}

pub fn orphaned_thread_runs_at_the_default(own: &mut Own) {
    let outcome = (|| -> Result<(u64, u64), ErrorCode> {
        let sched = own.retype(ObjectType::SCHED_CONTEXT, 0)?;
        invoke(sched, Operation::SCHED_CONFIGURE, &[PRIORITY, 0, 0])?;
        let stack = own.retype(ObjectType::MEMORY, 1)?;
        let rw = Rights::new().with_read(true).with_write(true);
        invoke(own.task, Operation::TASK_MAP, &[u64::from(stack.0), STACK_AT, bits(rw), 1])?;
        let thread = own.retype(ObjectType::THREAD, 0)?;
        let entry = spinner as fn() -> ! as usize as u64;
        // MR0 task, entry, stack (as after a call), no IPC buffer; then no
        // fault handler, the context, RDI.
        let args = [u64::from(own.task.0), entry, STACK_AT + 4096 - 8, 0, 0, u64::from(sched.0), 0];
        invoke(thread, Operation::THREAD_CONFIGURE, &args)?;
        invoke(thread, Operation::THREAD_START, &[])?;
        let bound = spins_beside();
        delete(sched);
        let orphaned = spins_beside();
        let _ = invoke(thread, Operation::THREAD_SUSPEND, &[]);
        delete(thread);
        let _ = invoke(own.task, Operation::TASK_UNMAP, &[STACK_AT, 1]);
        delete(stack);
        Ok((bound, orphaned))
    })();
    own.reset();
    let what = "a thread spinning beside it once its scheduling context is deleted";
    match outcome {
        Ok((bound, orphaned)) => report(
            what,
            bound > 0 && orphaned == 0,
            format_args!("{orphaned} spins ({bound} while bound at its priority; expected some, then 0)"),
        ),
        Err(e) => report(what, false, format_args!("could not run: {e:?}")),
    }
}
