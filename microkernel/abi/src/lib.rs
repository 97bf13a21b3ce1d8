//! The Tessera kernel ABI, shared by ring 0 and every task.
//!
//! Numbers and layouts are written here once. Values that cross the
//! privilege boundary are *open enums*: a newtype around the integer with
//! named constants, so an unknown value from a task is representable and is
//! rejected by a `match`, never transmuted.
//!
//! # Syscall convention (x86-64 `syscall`)
//!
//! | register | in | out |
//! |---|---|---|
//! | `rax` | [`Sysnum`] | [`ErrorCode`] |
//! | `rdi` | capability slot ([`CapSlot`]) | badge of the sender (receive side) |
//! | `rsi` | [`MessageInfo`] | [`MessageInfo`] of the message received or the reply |
//! | `rdx`, `r8`, `r9`, `r10` | message registers 0–3 | message registers 0–3 |
//! | `r12` | timeout for receive/wait: ticks (0 = forever), or an absolute TSC deadline with [`MessageInfo::tsc_deadline`] | — |
//!
//! `rcx` and `r11` are clobbered by the instruction as far as the ABI
//! promises (the kernel returns with `iretq` today and happens to restore
//! them); `rbx`, `rbp` and `r12`–`r15` are preserved, and `r12` is input
//! only. Results overwrite `rax`, `rdi`, `rsi` and the message registers.
//! Message registers past
//! the fourth live in the thread's IPC buffer ([`IpcBuffer`]), a page the
//! kernel knows by frame, so it never dereferences a task pointer for IPC.
//!
//! # Timeouts
//!
//! RECV, REPLY_RECV and WAIT block for at most `r12` [`TICK_HZ`] ticks (0:
//! for ever), or, with [`MessageInfo::tsc_deadline`] set, until the TSC
//! reaches the absolute deadline in `r12` (any value: one at or before the
//! TSC as the kernel reads it, 0 included, has passed, and the syscall
//! takes what is already there or returns TIMEOUT at once, as a
//! non-blocking one would with WOULD_BLOCK). Ring 0 arms the CPU's timer
//! for the deadline (one-shot or TSC-deadline mode): the wait ends with
//! TIMEOUT at it, never before, and not a tick later. The TSC frequency
//! is in the startup page ([`startup::StartupInfo::tsc_hz`]). Other
//! syscalls ignore the flag.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod entries;
pub mod invoke;
pub mod limits;
pub mod startup;

use bitfield_struct::bitfield;

pub use entries::{Entries, EntryKind};

/// Declares an open enum: a transparent newtype with named constants.
#[macro_export]
macro_rules! open_enum {
    ($(#[$meta:meta])* pub struct $name:ident($repr:ty) { $($(#[$vmeta:meta])* $variant:ident = $value:expr,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(transparent)]
        pub struct $name(pub $repr);

        #[allow(non_upper_case_globals)]
        impl $name {
            $($(#[$vmeta])* pub const $variant: $name = $name($value);)*

            /// The constant's name, or `None` for a value this ABI does not define.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $(v if v == $value => Some(stringify!($variant)),)*
                    _ => None,
                }
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(name) => f.write_str(name),
                    None => write!(f, "{}({:#x})", stringify!($name), self.0),
                }
            }
        }
    };
}

open_enum! {
    /// System call numbers. Management of objects is not a syscall: it is
    /// [`Sysnum::INVOKE`] on a capability with an operation label.
    pub struct Sysnum(u64) {
        /// Send on an endpoint and wait for the reply (one-shot reply capability).
        CALL = 0,
        /// Reply to the last caller, then receive on an endpoint.
        REPLY_RECV = 1,
        /// Receive on an endpoint.
        RECV = 2,
        /// Send on an endpoint without waiting for a reply.
        SEND = 3,
        /// Reply to the last caller without receiving.
        REPLY = 4,
        /// Set bits on a notification.
        SIGNAL = 5,
        /// Wait for bits on a notification.
        WAIT = 6,
        /// Perform an operation on the object a capability names.
        INVOKE = 7,
        /// Give up the rest of the time slice.
        YIELD = 8,
        /// End the calling thread.
        EXIT = 9,
        /// The kernel's monotonic timer tick count (in `rdi`); see [`TICK_HZ`].
        GET_TICKS = 10,
    }
}

/// Frequency of the kernel tick that timeouts and GET_TICKS count.
pub const TICK_HZ: u64 = 100;

/// Number of syscalls; the ABI promises to stay at or below 16.
pub const SYSCALL_COUNT: u64 = 11;
const _: () = assert!(SYSCALL_COUNT <= 16);

open_enum! {
    /// Result of every syscall, in `rax`.
    pub struct ErrorCode(u64) {
        OK = 0,
        /// The syscall number is not defined.
        INVALID_SYSCALL = 1,
        /// The slot is out of range or empty.
        INVALID_CAPABILITY = 2,
        /// The capability names an object of another type.
        WRONG_TYPE = 3,
        /// The capability lacks a right the operation needs.
        NO_RIGHTS = 4,
        /// An argument is out of range or malformed.
        INVALID_ARGUMENT = 5,
        /// The operation label is not defined for this object type.
        INVALID_OPERATION = 6,
        /// A non-blocking operation would have blocked.
        WOULD_BLOCK = 7,
        /// A receive or wait timed out.
        TIMEOUT = 8,
        /// A bounded kernel pool or the untyped memory is exhausted.
        OUT_OF_MEMORY = 9,
        /// The destination slot is occupied.
        SLOT_OCCUPIED = 10,
        /// The message is longer than the IPC buffer allows.
        MESSAGE_TOO_LONG = 11,
        /// The peer (endpoint, reply target or task) went away.
        PEER_GONE = 12,
        /// A virtual address is misaligned, out of the user half, or overlaps.
        BAD_ADDRESS = 13,
        /// The object is in the wrong state for the operation.
        INVALID_STATE = 14,
        /// A blocking operation was cut short: the thread was suspended.
        CANCELLED = 15,
    }
}

impl ErrorCode {
    pub const fn is_ok(self) -> bool {
        self.0 == 0
    }

    /// `Ok(())` for [`ErrorCode::OK`], else `Err(self)`.
    pub const fn result(self) -> Result<(), ErrorCode> {
        if self.0 == 0 { Ok(()) } else { Err(self) }
    }
}

/// An index into the calling task's capability space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct CapSlot(pub u32);

impl CapSlot {
    /// Slot 0 is always empty: a zero in a register never names a capability.
    pub const NULL: CapSlot = CapSlot(0);
}

/// The badge a minted endpoint capability carries; the receiver learns it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Badge(pub u64);

open_enum! {
    /// Kinds of kernel object a capability can name.
    pub struct ObjectType(u8) {
        UNTYPED = 1,
        TASK = 2,
        THREAD = 3,
        ENDPOINT = 4,
        NOTIFICATION = 5,
        MEMORY = 6,
        INTERRUPT = 7,
        IO_PORTS = 8,
        SCHED_CONTEXT = 9,
        REPLY = 10,
        /// A guest-physical address space (EPT on Intel, NPT on AMD).
        PARTITION = 11,
        /// A virtual processor of a partition: guest state run by the kernel.
        VP = 12,
    }
}

/// Rights a capability carries. Which bits matter depends on the object.
#[bitfield(u32)]
#[derive(PartialEq, Eq, Hash)]
pub struct Rights {
    /// Memory: map readable. I/O ports: `in`.
    pub read: bool,
    /// Memory: map writable. I/O ports: `out`.
    pub write: bool,
    /// Memory: map executable.
    pub execute: bool,
    /// Endpoint: send/call. Notification: signal.
    pub send: bool,
    /// Endpoint: receive. Notification: wait.
    pub receive: bool,
    /// Endpoint: capabilities may travel with messages sent through it.
    pub grant: bool,
    /// Manage the object: configure, start, retype, install capabilities.
    /// Partition: map and unmap guest memory. VP: its partition, VP index
    /// and monitor (the partition manager's, never a VID's).
    pub control: bool,
    /// Partition: flush its guest TLB. VP: run it: registers, start,
    /// suspend, the exit state, its exit endpoint and scheduling context
    /// (what a VID needs, and all a VID gets).
    pub run: bool,
    #[bits(24)]
    pub _reserved: u32,
}

impl Rights {
    pub const NONE: Rights = Rights::new();
    pub const ALL: Rights = Rights::from_bits(0xff);

    /// True if every right in `other` is also in `self`.
    pub const fn contains(self, other: Rights) -> bool {
        self.into_bits() & other.into_bits() == other.into_bits()
    }

    /// The rights in both.
    pub const fn intersect(self, other: Rights) -> Rights {
        Rights::from_bits(self.into_bits() & other.into_bits())
    }

    /// True if no bit outside the defined rights is set.
    pub const fn is_valid(bits: u32) -> bool {
        bits & !Rights::ALL.into_bits() == 0
    }
}

/// Words of message that fit in the IPC buffer (registers included).
pub const MAX_MESSAGE_WORDS: usize = 64;
/// Message words passed in registers.
pub const REGISTER_WORDS: usize = 4;
/// Capabilities one message can carry.
pub const MAX_TRANSFER_CAPS: usize = 3;

/// Describes a message: its label, length and attached capabilities.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct MessageInfo {
    /// Protocol-defined: an operation number, or a fault/notification kind.
    pub label: u32,
    /// Message words, registers first, then the IPC buffer.
    #[bits(7)]
    pub length: u8,
    /// Capabilities attached (sender) or received (receiver).
    #[bits(2)]
    pub caps: u8,
    /// Do not block: fail with WOULD_BLOCK instead.
    pub non_blocking: bool,
    /// Receive/wait: `r12` is an absolute TSC deadline, not ticks (see
    /// the crate's Timeouts). Never delivered with a message.
    pub tsc_deadline: bool,
    #[bits(21)]
    pub _reserved: u32,
}

/// Reserved labels the kernel uses for messages it originates.
pub mod labels {
    /// Labels from here up are the kernel's: a task's SEND or CALL with
    /// one is refused (`INVALID_ARGUMENT`), so no receiver can take a
    /// task's message for a fault, an exit or a notification.
    pub const KERNEL_FIRST: u32 = 0xffff_0000;
    /// A thread faulted; see [`crate::FaultMessage`].
    pub const FAULT: u32 = 0xffff_0001;
    /// A virtual processor exited to its handler: the words are a TLFS
    /// `HV_MESSAGE` (32 words). The handler replies with [`VP_RESUME`] or
    /// [`VP_STOP`] and register updates.
    pub const VM_EXIT: u32 = 0xffff_0002;
    /// Reply label: apply the register updates and run the VP again.
    pub const VP_RESUME: u32 = 0;
    /// Reply label: apply the register updates and leave the VP stopped.
    pub const VP_STOP: u32 = 1;
    /// Reply label: apply the register updates, then let the VP wait (as
    /// after HLT) until an interruption is pending for it.
    pub const VP_HALT: u32 = 2;
    /// A VP stopped because its exit handler is gone or did not answer: sent
    /// to the VP's monitor (see `VP_SET_MONITOR`), words
    /// [`crate::VpStopReport`]. The monitor's reply is not applied: the VP
    /// stays stopped.
    pub const VP_STOPPED: u32 = 0xffff_0003;
    /// A receive ended by the receiver's bound notification (see
    /// `NOTIFICATION_BIND`), not by a message: the badge holds the bits,
    /// now taken; there are no words and no reply right.
    pub const NOTIFICATION: u32 = 0xffff_0004;
}

crate::open_enum! {
    /// Why the kernel stopped a VP and reported it to its monitor.
    pub struct VpStopReason(u64) {
        /// The exit handler's endpoint or thread went away.
        HANDLER_GONE = 1,
        /// The exit handler did not answer within the monitor's limit.
        HANDLER_TIMED_OUT = 2,
    }
}

/// The words of a [`labels::VP_STOPPED`] report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VpStopReport {
    pub reason: VpStopReason,
    /// The VP index given at `VP_CONFIGURE`.
    pub vp_index: u64,
    /// The TLFS message type of the exit left unanswered.
    pub message_type: u64,
    /// The guest RIP of that exit.
    pub rip: u64,
}

impl VpStopReport {
    pub const WORDS: usize = 4;

    pub fn to_words(self) -> [u64; Self::WORDS] {
        [self.reason.0, self.vp_index, self.message_type, self.rip]
    }

    pub fn from_words(words: &[u64]) -> Option<VpStopReport> {
        match *words {
            [reason, vp_index, message_type, rip, ..] => {
                Some(VpStopReport { reason: VpStopReason(reason), vp_index, message_type, rip })
            }
            _ => None,
        }
    }
}

/// The per-thread IPC buffer, one page at an address the task chooses.
#[repr(C)]
#[derive(Clone, Debug)]
pub struct IpcBuffer {
    /// Message words (the first [`REGISTER_WORDS`] are unused: they travel in registers).
    pub words: [u64; MAX_MESSAGE_WORDS],
    /// Sender: the slots whose capabilities travel with the message.
    pub send_caps: [CapSlot; MAX_TRANSFER_CAPS],
    /// Receiver: empty slots where received capabilities are placed.
    pub receive_slots: [CapSlot; MAX_TRANSFER_CAPS],
    /// Reserved for the kernel; zero.
    pub _reserved: [u32; 2],
}

const _: () = assert!(core::mem::size_of::<IpcBuffer>() <= 4096);
const _: () = assert!(core::mem::size_of::<IpcBuffer>() == 64 * 8 + 4 * 8);

/// What the kernel tells a fault handler, as message words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultMessage {
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub address: u64,
    pub rsp: u64,
}

impl FaultMessage {
    pub const WORDS: usize = 5;

    pub fn to_words(self) -> [u64; Self::WORDS] {
        [self.vector, self.error_code, self.rip, self.address, self.rsp]
    }

    pub fn from_words(w: &[u64]) -> Option<FaultMessage> {
        match *w {
            [vector, error_code, rip, address, rsp, ..] => Some(FaultMessage { vector, error_code, rip, address, rsp }),
            _ => None,
        }
    }
}

/// Lowest user virtual address a task may map (the zero page stays empty).
pub const USER_MIN: u64 = 0x1000;
/// One past the highest user virtual address: the canonical lower half but
/// its last page. That page stays unmapped (as Linux keeps it) because an
/// instruction ending there (a `syscall`, or any instruction an interrupt
/// follows) leaves the first non-canonical address, 2^47, as the return
/// RIP, and `iretq` to it faults in ring 0.
pub const USER_END: u64 = 0x0000_7fff_ffff_f000;

/// Pages an untyped quota is charged for the kernel memory of what is made
/// from it (`UNTYPED_RETYPE`), on top of a memory object's own pages and a
/// sub-pool's size. Given back when the object goes.
pub mod cost {
    /// An entry of a fixed kernel table (thread control block, endpoint,
    /// notification, scheduling context, partition, task): one page of
    /// kernel memory. The entry itself comes from the pool's entry quota
    /// ([`crate::Entries`]).
    pub const POOL_ENTRY: u64 = 1;
    /// A task: its entry and its top-level page table.
    pub const TASK: u64 = POOL_ENTRY + 1;
    pub const THREAD: u64 = POOL_ENTRY;
    pub const ENDPOINT: u64 = POOL_ENTRY;
    pub const NOTIFICATION: u64 = POOL_ENTRY;
    pub const SCHED_CONTEXT: u64 = POOL_ENTRY;
    /// A partition: its entry and its second-level root table.
    pub const PARTITION: u64 = POOL_ENTRY + 1;
    /// A VP: its thread entry, its VMCB or VMCS, its x87/SSE save area,
    /// and the VMCB or VMCS of VTL 1 if it is enabled (VP_ENABLE_VTL).
    pub const VP: u64 = POOL_ENTRY + 3;
    /// Each page table a mapping adds to a task or a partition, charged
    /// to the untyped the task or partition was made from (tables stay
    /// until their task or partition goes).
    pub const PAGE_TABLE: u64 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_enums_name_known_values_and_keep_unknown_ones() {
        assert_eq!(Sysnum(7), Sysnum::INVOKE);
        assert_eq!(Sysnum(99).name(), None);
        assert_eq!(format!("{:?}", Sysnum(99)), "Sysnum(0x63)");
        assert_eq!(format!("{:?}", ErrorCode::NO_RIGHTS), "NO_RIGHTS");
    }

    #[test]
    fn rights_only_shrink_by_intersection() {
        let rw = Rights::new().with_read(true).with_write(true);
        let r = Rights::new().with_read(true);
        assert!(rw.contains(r) && !r.contains(rw));
        assert_eq!(rw.intersect(r), r);
        assert!(Rights::ALL.contains(rw));
        assert!(Rights::is_valid(0xff) && !Rights::is_valid(0x100));
    }

    #[test]
    fn message_info_layout_is_fixed() {
        let info = MessageInfo::new().with_label(0x1234).with_length(5).with_caps(1).with_non_blocking(true);
        assert_eq!(info.into_bits(), 0x1234 | 5 << 32 | 1 << 39 | 1 << 41);
        assert_eq!(MessageInfo::new().with_tsc_deadline(true).into_bits(), 1 << 42);
    }

    #[test]
    fn fault_messages_round_trip() {
        let f = FaultMessage { vector: 14, error_code: 6, rip: 0x40_1000, address: 0xdead_0000, rsp: 0x7fff_0000 };
        assert_eq!(FaultMessage::from_words(&f.to_words()), Some(f));
        assert_eq!(FaultMessage::from_words(&[1, 2]), None);
    }
}
