//! The task's capabilities, by the names its startup page gives them.
//!
//! `caps::endpoint("console")` is the slot of the endpoint capability named
//! `console`, if the task was given one. A name with the wrong object type
//! is not found. The `*_in` functions take the startup page explicitly (and
//! are what the host tests exercise).

use abi::startup::StartupInfo;
use abi::{CapSlot, ObjectType};

/// The slot of the capability called `name` of type `kind`.
pub fn find_in(info: &StartupInfo, name: &str, kind: ObjectType) -> Option<CapSlot> {
    info.find(name, kind)
}

/// Every capability of type `kind` whose name starts with `prefix`, as
/// (rest of the name, slot): with prefix `"sched:"`, a capability named
/// `sched:console` yields `("console", slot)`.
pub fn with_prefix_in<'a>(
    info: &'a StartupInfo,
    prefix: &'a str,
    kind: ObjectType,
) -> impl Iterator<Item = (&'a str, CapSlot)> + 'a {
    info.caps()
        .iter()
        .filter(move |c| c.kind == kind)
        .filter_map(move |c| Some((c.name.as_str().strip_prefix(prefix)?, c.slot)))
}

/// One more than the highest slot the startup page names (the first slot
/// past them; the task may hold unnamed capabilities elsewhere).
pub fn first_unnamed_slot_in(info: &StartupInfo) -> CapSlot {
    CapSlot(info.caps().iter().map(|c| c.slot.0).max().unwrap_or(0).saturating_add(1))
}

#[cfg(target_os = "none")]
mod current {
    use super::*;
    use crate::startup::info;

    /// The capability called `name` of type `kind`.
    pub fn find(name: &str, kind: ObjectType) -> Option<CapSlot> {
        find_in(info(), name, kind)
    }

    pub fn endpoint(name: &str) -> Option<CapSlot> {
        find(name, ObjectType::ENDPOINT)
    }

    pub fn notification(name: &str) -> Option<CapSlot> {
        find(name, ObjectType::NOTIFICATION)
    }

    pub fn io_ports(name: &str) -> Option<CapSlot> {
        find(name, ObjectType::IO_PORTS)
    }

    pub fn interrupt(name: &str) -> Option<CapSlot> {
        find(name, ObjectType::INTERRUPT)
    }

    pub fn memory(name: &str) -> Option<CapSlot> {
        find(name, ObjectType::MEMORY)
    }

    pub fn sched_context(name: &str) -> Option<CapSlot> {
        find(name, ObjectType::SCHED_CONTEXT)
    }

    /// See [`with_prefix_in`].
    pub fn with_prefix(prefix: &'static str, kind: ObjectType) -> impl Iterator<Item = (&'static str, CapSlot)> {
        with_prefix_in(info(), prefix, kind)
    }

    /// See [`first_unnamed_slot_in`].
    pub fn first_unnamed_slot() -> CapSlot {
        first_unnamed_slot_in(info())
    }
}

#[cfg(target_os = "none")]
pub use current::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_found_by_name_type_and_prefix() {
        let mut info = StartupInfo::empty();
        assert_eq!(first_unnamed_slot_in(&info), CapSlot(1));
        info.push("console", CapSlot(3), ObjectType::ENDPOINT);
        info.push("uart", CapSlot(4), ObjectType::IO_PORTS);
        info.push("sched:console", CapSlot(9), ObjectType::SCHED_CONTEXT);
        info.push("sched:vid", CapSlot(10), ObjectType::SCHED_CONTEXT);
        info.push("sched:bogus", CapSlot(11), ObjectType::ENDPOINT);
        assert_eq!(find_in(&info, "console", ObjectType::ENDPOINT), Some(CapSlot(3)));
        assert_eq!(find_in(&info, "uart", ObjectType::ENDPOINT), None);
        let sched: Vec<_> = with_prefix_in(&info, "sched:", ObjectType::SCHED_CONTEXT).collect();
        assert_eq!(sched, [("console", CapSlot(9)), ("vid", CapSlot(10))]);
        assert_eq!(first_unnamed_slot_in(&info), CapSlot(12));
    }
}
