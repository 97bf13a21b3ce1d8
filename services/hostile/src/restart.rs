//! The `hostile-restart` instance (`tests/manifests/hostile-restart.toml`):
//! each time the supervisor starts it, it checks that its untyped is its
//! whole quota, makes a task from it whose capability space holds that
//! task itself, the untyped and this task (and this task keeps its own
//! `self`, as every task with an untyped does), and faults. The supervisor
//! restarts it five times, carving a new quota each time: the old task, its
//! pool and everything made from it must have gone with the crash, or each
//! restart takes another whole quota (and task) from the supervisor's pool
//! for good, and the tables the manifest tool sized for one run out.

use crate::objects::{Own, bits, report};
use tessera_rt::abi::Rights;
use tessera_rt::untyped::{self, Left};
use tessera_rt::{CapSlot, ErrorCode, ObjectType, Operation, arch, invoke, log};

/// Its quota (`tests/manifests/hostile-restart.toml`).
const PAGES: u64 = 64;

/// Installs `source` (any of its slots) into `task`'s slot `dest`.
fn install(task: CapSlot, source: CapSlot, dest: u32) -> Result<(), ErrorCode> {
    invoke(task, Operation::TASK_INSTALL_CAP, &[u64::from(source.0), u64::from(dest), bits(Rights::ALL), 0]).map(drop)
}

/// A task from its untyped that holds itself, the untyped and this task.
fn build_cycle(own: &mut Own) -> Result<(), ErrorCode> {
    let other = own.retype(ObjectType::TASK, 0)?;
    install(other, other, 1)?;
    install(other, own.untyped, 2)?;
    install(other, own.task, 3)
}

pub fn incarnation(own: &mut Own) {
    let left = untyped::left(own.untyped);
    let whole = left.is_ok_and(|l: Left| l.bytes == PAGES * 4096);
    report(
        "restart: its untyped when it starts",
        whole,
        format_args!("{:?} (expected its whole quota, {} bytes)", left.map(|l| l.bytes), PAGES * 4096),
    );
    let built = build_cycle(own);
    report(
        "restart: a task of its own holding itself, the untyped and this task",
        built.is_ok(),
        format_args!("{:?} (expected OK)", built.err().unwrap_or(ErrorCode::OK)),
    );
    log!("restart: faulting; the supervisor restarts it with a new quota");
    let value = arch::probe_read(0);
    log!("read of address 0 returned {value:#x}: FAIL");
}
