//! The `hostile-pools` instance: with an untyped quota of its own (1 MiB in
//! `tests/manifests/hostile-pools.toml`), it makes objects of each kind
//! until the kernel refuses. The refusal must come from its quota, not
//! from a kernel table every task shares running out: otherwise one task's
//! quota is enough to leave every other task (the supervisor restarting a
//! service, the partition manager making a partition) without that kind
//! of object.

use crate::objects::{Own, delete, report};
use tessera_rt::{CapSlot, ErrorCode, ObjectType, Operation, invoke};

const PAGE: u64 = 4096;

/// Each kind, the pages it costs (`abi::cost`) and the size word to retype it with.
const KINDS: [(&str, ObjectType, u64, u64); 8] = [
    ("THREAD", ObjectType::THREAD, abi::cost::THREAD, 0),
    ("ENDPOINT", ObjectType::ENDPOINT, abi::cost::ENDPOINT, 0),
    ("NOTIFICATION", ObjectType::NOTIFICATION, abi::cost::NOTIFICATION, 0),
    ("SCHED_CONTEXT", ObjectType::SCHED_CONTEXT, abi::cost::SCHED_CONTEXT, 0),
    ("TASK", ObjectType::TASK, abi::cost::TASK, 0),
    ("PARTITION", ObjectType::PARTITION, abi::cost::PARTITION, 0),
    ("VP", ObjectType::VP, abi::cost::VP, 0),
    ("UNTYPED", ObjectType::UNTYPED, 1, 1),
];

/// Bytes its untyped has left (CAP_IDENTIFY's size word).
fn left(untyped: CapSlot) -> u64 {
    invoke(untyped, Operation::CAP_IDENTIFY, &[]).map_or(0, |m| m.words().get(3).copied().unwrap_or(0))
}

pub fn probe(own: &mut Own) {
    for (name, kind, cost, size) in KINDS {
        let mut made = heapless::Vec::<CapSlot, 128>::new();
        let refused = loop {
            match own.retype(kind, size) {
                Ok(slot) => {
                    if made.push(slot).is_err() {
                        break Err::<(), _>(ErrorCode::INVALID_STATE);
                    }
                }
                Err(e) => break Err(e),
            }
        };
        let pages_left = left(own.untyped) / PAGE;
        let by_quota = pages_left < cost;
        report(
            &pool_line(name),
            by_quota,
            format_args!(
                "made {}, refused with {:?} and {pages_left} pages of its quota left (expected: refused by its quota)",
                made.len(),
                refused.err().unwrap_or(ErrorCode::OK)
            ),
        );
        for slot in made.iter().rev() {
            delete(*slot);
        }
        own.reset();
    }
}

fn pool_line(name: &str) -> heapless::String<64> {
    let mut s = heapless::String::new();
    let _ = core::fmt::write(&mut s, format_args!("pool: retype {name} until refused"));
    s
}
