//! What the exit loop ([`crate::serve`]) does with the kernel and with the
//! other services, behind two traits so the loop is host-tested with a
//! fake (as the partition manager's `kernel.rs`). The task implements
//! them with system calls, invocations and interface calls; the kernel
//! checks every one again.

use abi::{CapSlot, ErrorCode, Rights};
use core::fmt;
use tessera_idl::{Bytes, Message};
use tlfs::vsm::HvVtl;
use tlfs::{HvRegisterName, HvResult};

/// Posted writes drained from ring 0: (port, byte), oldest first.
pub type PostedWrites = heapless::Vec<(u16, u8), { abi::limits::MAX_POSTED_WRITES }>;

/// How long a receive may wait (the ABI's timeouts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// At most this many ticks ([`abi::TICK_HZ`]); 0: for ever.
    Ticks(u64),
    /// Until the TSC reaches this deadline.
    Tsc(u64),
}

/// The kernel operations of the exit loop.
pub trait Kernel {
    /// Replies `reply` to the last caller if given (REPLY_RECV), then
    /// waits for the next message on the loop's endpoint until `until`
    /// (`TIMEOUT` if none came) and receives it into `into` (left as it
    /// was on an error): its badge. What arrives is an exit (a badge in
    /// [`crate::serve::EXIT_BADGES`]), a client's request, or the bound
    /// notification's wake-up (label [`abi::labels::NOTIFICATION`]).
    fn receive(&self, reply: Option<&Message>, into: &mut Message, until: Until) -> Result<u64, ErrorCode>;
    /// Replies to the last caller.
    fn reply(&self, message: &Message) -> Result<(), ErrorCode>;
    /// VP_START.
    fn start_vp(&self, vp: CapSlot) -> Result<(), ErrorCode>;
    /// VP_SUSPEND.
    fn suspend_vp(&self, vp: CapSlot) -> Result<(), ErrorCode>;
    /// VP_RESET: a VP that is not running back to its power-on state.
    fn reset_vp(&self, vp: CapSlot) -> Result<(), ErrorCode>;
    /// VP_SET_REGISTERS: the count, then (name, low, high) per register.
    fn set_registers(&self, vp: CapSlot, words: &[u64]) -> Result<(), ErrorCode>;
    /// VP_GET_REGISTERS of one register: (low, high).
    fn register(&self, vp: CapSlot, name: HvRegisterName) -> Result<(u64, u64), ErrorCode>;
    /// PARTITION_FLUSH_TLB.
    fn flush_tlb(&self, partition: CapSlot);
    /// PARTITION_HOLD_WRITE of guest page `gpn` in VTL `vtl`'s view (each
    /// VTL has its own hypercall page).
    fn hold_write(&self, partition: CapSlot, gpn: u64, held: bool, vtl: HvVtl);
    /// PARTITION_ENABLE_VTL: the partition's view for VTL `vtl` (TLFS 15.4).
    fn enable_partition_vtl(&self, partition: CapSlot, vtl: HvVtl) -> Result<(), ErrorCode>;
    /// PARTITION_DISABLE_VTL: VTL `vtl` taken away from a partition whose
    /// VPs have been reset (TLFS 15.3.4).
    fn disable_partition_vtl(&self, partition: CapSlot, vtl: HvVtl) -> Result<(), ErrorCode>;
    /// PARTITION_PROTECT: VTL 0 may do with guest pages `gpn..gpn + pages`
    /// only what `rights` (READ, WRITE, EXECUTE) allow (TLFS 15.9).
    fn protect(&self, partition: CapSlot, gpn: u64, pages: u64, rights: Rights) -> Result<(), ErrorCode>;
    /// VP_ENABLE_VTL: a context for VTL `vtl` on a VP that is not running.
    fn enable_vp_vtl(&self, vp: CapSlot, vtl: HvVtl) -> Result<(), ErrorCode>;
    /// VP_SWITCH_VTL: a VP that is not running to VTL `vtl`; register
    /// access and exit replies then act on that VTL.
    fn switch_vtl(&self, vp: CapSlot, vtl: HvVtl) -> Result<(), ErrorCode>;
    /// PARTITION_SET_FLOATING_PORTS: ports `first..first + count` float
    /// (`on`: ring 0 answers them as an empty bus, without an exit) or not.
    fn float_ports(&self, partition: CapSlot, first: u32, count: u32, on: bool);
    /// PARTITION_LATCH_PORT: byte reads of `port` answer `value` in ring
    /// 0 without an exit, or exit again (`None`).
    fn latch_port(&self, partition: CapSlot, port: u16, value: Option<u8>);
    /// PARTITION_POST_PORT: byte writes to `port` are kept in ring 0, in
    /// order, without an exit (`on`), or exit again.
    fn post_port(&self, partition: CapSlot, port: u16, on: bool);
    /// PARTITION_DRAIN_POSTED: the writes ring 0 kept, oldest first, as
    /// (port, byte); none if the kernel refuses.
    fn drain_posted(&self, partition: CapSlot) -> PostedWrites;
    /// The TSC.
    fn tsc(&self) -> u64;
    /// The kernel's tick count.
    fn ticks(&self) -> u64;
    /// A line of the VID's log.
    fn log(&self, line: fmt::Arguments<'_>);
}

/// What the broker answered one `fetch`: (kind, VP, SINT, port ID,
/// message type or flag, payload), an allegation until checked.
pub type Fetched = (u32, u32, u32, u32, u32, Bytes);

/// Why a fetch brought nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoDelivery {
    /// Nothing is pending, or the broker is gone or refuses.
    None,
    /// The broker has not heard the partition's SynIC state since it
    /// started (it started again while the partition ran): tell it every
    /// VP's again.
    SynicUnknown,
}

/// How the VID hears of the broker's deliveries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerEvents {
    /// No broker, or no `broker-events` notification: nothing to fetch.
    None,
    /// Looked at each loop turn (a kernel that refused the bind).
    Polled,
    /// Bound to the loop's thread: the signal ends its wait.
    Bound,
}

/// The services the exit loop calls: the broker, the partition manager
/// (the registry of partitions) and the console.
pub trait Services {
    /// How broker deliveries reach the loop.
    fn broker_events(&self) -> BrokerEvents;
    /// Whether the broker signalled since the last look (non-blocking).
    fn broker_signalled(&self) -> bool;
    /// The next delivery for manifest partition `partition` (only event
    /// flags if `events_only`).
    fn fetch(&self, partition: u64, events_only: bool) -> Result<Fetched, NoDelivery>;
    /// Whether the broker exists for the partitions' hypercalls.
    fn has_broker(&self) -> bool;
    /// HvPostMessage of `partition` through the broker.
    fn post_message(&self, partition: u64, connection_id: u32, message_type: u32, payload: &[u8]) -> HvResult<()>;
    /// HvSignalEvent of `partition` through the broker.
    fn signal_event(&self, partition: u64, connection_id: u32, flag_number: u16) -> HvResult<()>;
    /// Tells the broker which SINTs of VP `vp` take deliveries.
    fn synic_state(&self, partition: u64, vp: u32, accepting: u32) -> HvResult<()>;
    /// Passes a guest crash notification of partition `name` (ID `id` at
    /// the partition manager) on.
    fn crashed(&self, name: &str, id: Option<u64>, p: [u64; 5]);
    /// Reports that partition `name` stopped: the manager finalizes it.
    fn stopped(&self, name: &str, id: Option<u64>);
    /// Whether typed input can be read from the console.
    fn has_input(&self) -> bool;
    /// At most `max` bytes typed on the console; `None`: stop asking
    /// (another task reads it, or there is no console). A failed call (the
    /// console restarting) reads nothing, and the next poll asks again.
    fn read_input(&self, max: u32) -> Option<Bytes>;
}

/// No broker, partition manager or console: what the task answers its
/// interface with once its exit loop has ended, or when it ran none.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoServices;

impl Services for NoServices {
    fn broker_events(&self) -> BrokerEvents {
        BrokerEvents::None
    }

    fn broker_signalled(&self) -> bool {
        false
    }

    fn fetch(&self, _: u64, _: bool) -> Result<Fetched, NoDelivery> {
        Err(NoDelivery::None)
    }

    fn has_broker(&self) -> bool {
        false
    }

    fn post_message(&self, _: u64, _: u32, _: u32, _: &[u8]) -> HvResult<()> {
        Err(tlfs::HvError::INVALID_CONNECTION_ID)
    }

    fn signal_event(&self, _: u64, _: u32, _: u16) -> HvResult<()> {
        Err(tlfs::HvError::INVALID_CONNECTION_ID)
    }

    fn synic_state(&self, _: u64, _: u32, _: u32) -> HvResult<()> {
        Ok(())
    }

    fn crashed(&self, _: &str, _: Option<u64>, _: [u64; 5]) {}

    fn stopped(&self, _: &str, _: Option<u64>) {}

    fn has_input(&self) -> bool {
        false
    }

    fn read_input(&self, _: u32) -> Option<Bytes> {
        None
    }
}
