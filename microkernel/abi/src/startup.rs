//! What a task finds at start: its name and the capabilities it was given,
//! by name. The creator (the kernel for the root task, the supervisor for
//! the others) writes one page with this layout, maps it read-only into the
//! task, and starts the first thread with its address in `rdi`.

use crate::limits::MAX_CPUS;
use crate::{CapSlot, ObjectType};

/// Where things go in a task's address space (the creator's convention;
/// the kernel enforces only the user-half bounds).
pub mod layout {
    /// Program images are linked between these (rust-lld's default base).
    pub const IMAGE_START: u64 = 0x0020_0000;
    pub const IMAGE_END: u64 = 0x4000_0000;
    /// The read-only startup page (`rdi` at entry).
    pub const STARTUP: u64 = 0x0010_0000;
    /// The first thread's IPC buffer.
    pub const IPC_BUFFER: u64 = 0x0010_1000;
    /// The task's memory as the manifest sizes it.
    pub const MEMORY: u64 = 0x4000_0000;
    /// One past the top of the first thread's stack.
    pub const STACK_TOP: u64 = 0x0000_7fff_ffff_0000;
}

pub const STARTUP_MAGIC: u64 = u64::from_le_bytes(*b"TESSTART");
/// Most named capabilities a task is given (the supervisor asserts that
/// every grant a manifest may make fits).
pub const MAX_STARTUP_CAPS: usize = 64;
/// Longest task or capability name: a manifest name (32 bytes, the boot
/// image's `MAX_NAME_LEN`) behind the longest prefix the supervisor adds
/// (`sched:`), rounded up to keep the layout's words aligned.
pub const NAME_LEN: usize = 40;

/// A name stored inline, NUL-padded.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Name(pub [u8; NAME_LEN]);

impl Name {
    pub const EMPTY: Name = Name([0; NAME_LEN]);

    /// `None` if `s` does not fit.
    pub fn new(s: &str) -> Option<Name> {
        let bytes = s.as_bytes();
        if bytes.len() > NAME_LEN || bytes.contains(&0) {
            return None;
        }
        let mut name = [0; NAME_LEN];
        name[..bytes.len()].copy_from_slice(bytes);
        Some(Name(name))
    }

    /// The text up to the first NUL; invalid UTF-8 reads as "".
    pub fn as_str(&self) -> &str {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        core::str::from_utf8(&self.0[..len]).unwrap_or("")
    }
}

/// One named capability of the task.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartupCap {
    pub name: Name,
    pub slot: CapSlot,
    pub kind: ObjectType,
    pub _reserved: [u8; 3],
}

impl StartupCap {
    pub const EMPTY: StartupCap =
        StartupCap { name: Name::EMPTY, slot: CapSlot::NULL, kind: ObjectType(0), _reserved: [0; 3] };
}

#[repr(C)]
#[derive(Clone, Debug)]
pub struct StartupInfo {
    pub magic: u64,
    pub task_name: Name,
    /// Address of the first thread's IPC buffer.
    pub ipc_buffer: u64,
    /// Bytes of the task's memory (heapless tasks use it as they wish).
    pub memory_size: u64,
    pub cap_count: u32,
    /// CPUs the kernel schedules on (`SCHED_SET_CPU` takes `0..cpu_count`).
    pub cpu_count: u32,
    /// The TSC's frequency as the kernel measured it (0 if unknown).
    pub tsc_hz: u64,
    /// The host's time of day as ring 0 read it from the machine's RTC at
    /// boot: seconds since 1970 (UTC) at TSC [`StartupInfo::wall_clock_tsc`];
    /// 0 if it could not be read. Tasks need no access to the host's clock.
    pub wall_clock: u64,
    pub wall_clock_tsc: u64,
    /// The SMT siblings of each CPU the kernel schedules on, by CPU index:
    /// bit `c` of `siblings[i]` says CPU `c` shares CPU `i`'s core (CPUID
    /// leaf 0xB); all 0 without SMT.
    pub siblings: [u32; MAX_CPUS],
    pub caps: [StartupCap; MAX_STARTUP_CAPS],
}

const _: () = assert!(core::mem::size_of::<StartupCap>() == 48);
const _: () = assert!(core::mem::size_of::<StartupInfo>() <= 4096);

impl StartupInfo {
    pub const fn empty() -> StartupInfo {
        StartupInfo {
            magic: STARTUP_MAGIC,
            task_name: Name::EMPTY,
            ipc_buffer: 0,
            memory_size: 0,
            cap_count: 0,
            cpu_count: 1,
            tsc_hz: 0,
            wall_clock: 0,
            wall_clock_tsc: 0,
            siblings: [0; MAX_CPUS],
            caps: [StartupCap::EMPTY; MAX_STARTUP_CAPS],
        }
    }

    pub fn caps(&self) -> &[StartupCap] {
        &self.caps[..(self.cap_count as usize).min(MAX_STARTUP_CAPS)]
    }

    /// The slot of the capability called `name`, if it has the expected type.
    pub fn find(&self, name: &str, kind: ObjectType) -> Option<CapSlot> {
        self.caps().iter().find(|c| c.name.as_str() == name && c.kind == kind).map(|c| c.slot)
    }

    /// The page image of this structure (little-endian, the `repr(C)`
    /// layout, which has no padding), for creators that write it into a
    /// task's memory without unsafe code.
    pub fn write_to(&self, out: &mut [u8]) -> Option<()> {
        let size = core::mem::size_of::<StartupInfo>();
        let out = out.get_mut(..size)?;
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&self.magic.to_le_bytes());
        put(&self.task_name.0);
        put(&self.ipc_buffer.to_le_bytes());
        put(&self.memory_size.to_le_bytes());
        put(&self.cap_count.to_le_bytes());
        put(&self.cpu_count.to_le_bytes());
        put(&self.tsc_hz.to_le_bytes());
        put(&self.wall_clock.to_le_bytes());
        put(&self.wall_clock_tsc.to_le_bytes());
        for mask in &self.siblings {
            put(&mask.to_le_bytes());
        }
        for cap in &self.caps {
            put(&cap.name.0);
            put(&cap.slot.0.to_le_bytes());
            put(&[cap.kind.0]);
            put(&cap._reserved);
        }
        (at == size).then_some(())
    }

    /// Appends a named capability; false if full or the name is too long.
    pub fn push(&mut self, name: &str, slot: CapSlot, kind: ObjectType) -> bool {
        let (Some(name), Some(entry)) = (Name::new(name), self.caps.get_mut(self.cap_count as usize)) else {
            return false;
        };
        *entry = StartupCap { name, slot, kind, _reserved: [0; 3] };
        self.cap_count += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_are_found_by_name_and_type() {
        let mut info = StartupInfo::empty();
        assert!(info.push("console", CapSlot(3), ObjectType::ENDPOINT));
        assert!(info.push("uart", CapSlot(4), ObjectType::IO_PORTS));
        assert_eq!(info.find("console", ObjectType::ENDPOINT), Some(CapSlot(3)));
        assert_eq!(info.find("console", ObjectType::IO_PORTS), None);
        assert_eq!(info.find("nope", ObjectType::ENDPOINT), None);
        assert!(!info.push(&"x".repeat(NAME_LEN + 1), CapSlot(5), ObjectType::ENDPOINT));
    }

    #[test]
    fn page_image_matches_the_field_offsets() {
        let mut info = StartupInfo::empty();
        info.task_name = Name::new("console").unwrap();
        info.ipc_buffer = layout::IPC_BUFFER;
        info.siblings[1] = 0b1;
        info.wall_clock = 1_796_000_000;
        assert!(info.push("io0", CapSlot(7), ObjectType::IO_PORTS));
        let mut page = [0xffu8; 4096];
        info.write_to(&mut page).unwrap();
        let word = |at: usize| u64::from_le_bytes(page[at..at + 8].try_into().unwrap());
        assert_eq!(word(core::mem::offset_of!(StartupInfo, magic)), STARTUP_MAGIC);
        assert_eq!(word(core::mem::offset_of!(StartupInfo, ipc_buffer)), layout::IPC_BUFFER);
        assert_eq!(word(core::mem::offset_of!(StartupInfo, wall_clock)), 1_796_000_000);
        let name_at = core::mem::offset_of!(StartupInfo, task_name);
        assert_eq!(&page[name_at..name_at + 7], b"console");
        let siblings = core::mem::offset_of!(StartupInfo, siblings);
        assert_eq!(page[siblings..siblings + 8], [0, 0, 0, 0, 1, 0, 0, 0]);
        let cap = core::mem::offset_of!(StartupInfo, caps);
        assert_eq!(&page[cap..cap + 3], b"io0");
        assert_eq!(page[cap + NAME_LEN..cap + NAME_LEN + 4], 7u32.to_le_bytes());
        assert_eq!(page[cap + NAME_LEN + 4], ObjectType::IO_PORTS.0);
        assert!(info.write_to(&mut [0u8; 100]).is_none());
    }

    #[test]
    fn full_tables_and_bad_counts_are_safe() {
        let mut info = StartupInfo::empty();
        for i in 0..MAX_STARTUP_CAPS {
            assert!(info.push("x", CapSlot(i as u32 + 1), ObjectType::MEMORY));
        }
        assert!(!info.push("y", CapSlot(99), ObjectType::MEMORY));
        info.cap_count = u32::MAX;
        assert_eq!(info.caps().len(), MAX_STARTUP_CAPS);
    }
}
