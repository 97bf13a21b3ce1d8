//! A fake kernel and services for the exit loop's tests: a script of what
//! each receive returns, and a record of every reply, wait, VP operation,
//! log line and service call.

use crate::host::{BrokerEvents, Fetched, Kernel, NoDelivery, PostedWrites, Services, Until};
use abi::{CapSlot, ErrorCode, Rights, labels};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use tessera_idl::{Bytes, Message};
use tlfs::vsm::HvVtl;
use tlfs::{
    HvInterceptAccessType, HvMessage, HvMessageBody, HvRegisterName, HvResult, HvX64HaltMessage,
    HvX64InstructionLength, HvX64InterceptMessageHeader, HvX64IoPortAccessInfo, HvX64IoPortInterceptMessage,
    HvX64MsrInterceptMessage, HvX64SegmentRegister, HvX64VpExecutionState,
};

/// What one receive returns.
#[allow(clippy::large_enum_variant)]
pub enum Step {
    /// An exit of VP `vp` of the VID's partition `k`.
    Exit { k: usize, vp: usize, message: HvMessage },
    /// A client's request.
    Request { badge: u64, message: Message },
    /// The broker signals the bound notification, having queued these
    /// deliveries for manifest partition `partition`.
    Broker { partition: u64, deliveries: Vec<Fetched> },
    /// Time passes to this TSC before the next step arrives.
    At(u64),
    /// Ring 0 keeps these posted writes meanwhile (then the next step).
    Kept(Vec<(u16, u8)>),
    /// Nothing comes: the wait ends at its deadline (a TSC deadline moves
    /// the TSC there; a tick limit moves it by that many 10 ms ticks).
    Timeout,
}

/// A VP operation the loop made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VpCall {
    Start(CapSlot),
    Suspend(CapSlot),
    Reset(CapSlot),
    SetRegisters(CapSlot, Vec<u64>),
    FlushTlb(CapSlot),
    /// PARTITION_ENABLE_VTL (partition, VTL).
    EnablePartitionVtl(CapSlot, HvVtl),
    /// PARTITION_DISABLE_VTL (partition, VTL).
    DisablePartitionVtl(CapSlot, HvVtl),
    /// PARTITION_PROTECT (partition, GPN, pages, rights).
    Protect(CapSlot, u64, u64, Rights),
    /// VP_ENABLE_VTL (VP, VTL).
    EnableVpVtl(CapSlot, HvVtl),
    /// VP_SWITCH_VTL (VP, VTL).
    SwitchVtl(CapSlot, HvVtl),
}

/// The TSC rate of the tests: 1 GHz.
pub const TSC_HZ: u64 = 1_000_000_000;

#[derive(Default)]
pub struct Fake {
    pub script: RefCell<VecDeque<Step>>,
    /// Every reply sent, with the badge of what it answered.
    pub replies: RefCell<Vec<(u64, Message)>>,
    /// The badge of the last message received (what a reply answers).
    last: Cell<u64>,
    /// Every wait a receive was given.
    pub waits: RefCell<Vec<Until>>,
    pub vp_calls: RefCell<Vec<VpCall>>,
    /// The kernel's pending-interruption register, by VP capability.
    pub pending: RefCell<HashMap<CapSlot, u64>>,
    pub tsc: Cell<u64>,
    pub log: RefCell<Vec<String>>,
    pub events: Cell<Option<BrokerEvents>>,
    pub queued: RefCell<HashMap<u64, VecDeque<Fetched>>>,
    /// Manifest partitions whose deliveries the loop asked for.
    pub fetched: RefCell<Vec<u64>>,
    /// Partitions whose next fetch the broker answers with "SynIC state
    /// unknown" (a broker started again).
    pub synic_unknown: RefCell<HashSet<u64>>,
    /// Every SynIC state reported to the broker: (partition, VP, accepting).
    pub synic_reports: RefCell<Vec<(u64, u32, u32)>>,
    /// Partitions reported stopped to the partition manager (its IDs).
    pub stopped: RefCell<Vec<Option<u64>>>,
    /// The console has typed input to give (it never has any bytes).
    pub input: Cell<bool>,
    /// Every HvSignalEvent made through the broker: (partition, connection
    /// ID, flag number, TSC).
    pub signals: RefCell<Vec<(u64, u32, u16, u64)>>,
    /// Every port run floated or not (`PARTITION_SET_FLOATING_PORTS`):
    /// (first, count, floating).
    pub floated: RefCell<Vec<(u32, u32, bool)>>,
    /// Every latch set or ended (`PARTITION_LATCH_PORT`): (port, value).
    pub latched: RefCell<Vec<(u16, Option<u8>)>>,
    /// Every post set or ended (`PARTITION_POST_PORT`): (port, on).
    pub posts: RefCell<Vec<(u16, bool)>>,
    /// What ring 0 kept of posted writes, for the next drain to take.
    pub kept: RefCell<Vec<(u16, u8)>>,
    /// Drains made (`PARTITION_DRAIN_POSTED`), with what each took.
    pub drains: RefCell<Vec<Vec<(u16, u8)>>>,
    /// Every write hold set or given back (`PARTITION_HOLD_WRITE`):
    /// (GPN, held, VTL).
    pub holds: RefCell<Vec<(u64, bool, HvVtl)>>,
    /// What the VSM operations answer (`None`: success).
    pub vtl_refusal: Cell<Option<ErrorCode>>,
}

/// A connection the broker refuses in the fake.
pub const NOT_HELD: u32 = 0x7777;

impl Fake {
    pub fn new(script: impl IntoIterator<Item = Step>) -> Fake {
        Fake { script: RefCell::new(script.into_iter().collect()), ..Fake::default() }
    }

    /// The replies to exits of VP `vp` of partition `k`.
    pub fn replies_to(&self, k: usize, vp: usize) -> Vec<Message> {
        let badge = super::exit_badge(k, vp);
        self.replies.borrow().iter().filter(|(b, _)| *b == badge).map(|(_, m)| m.clone()).collect()
    }

    pub fn logged(&self, text: &str) -> bool {
        self.log.borrow().iter().any(|l| l.contains(text))
    }

    /// Records a VSM operation; it fails as [`Fake::vtl_refusal`] says.
    fn vtl_call(&self, call: VpCall) -> Result<(), ErrorCode> {
        self.vp_calls.borrow_mut().push(call);
        self.vtl_refusal.get().map_or(Ok(()), Err)
    }

    fn record_reply(&self, message: &Message) {
        self.replies.borrow_mut().push((self.last.get(), message.clone()));
    }
}

impl Kernel for Fake {
    fn receive(&self, reply: Option<&Message>, into: &mut Message, until: Until) -> Result<u64, ErrorCode> {
        if let Some(message) = reply {
            self.record_reply(message);
        }
        self.waits.borrow_mut().push(until);
        // The end of the script: the endpoint is gone.
        let mut step = self.script.borrow_mut().pop_front().ok_or(ErrorCode::PEER_GONE)?;
        loop {
            match step {
                Step::At(tsc) => self.tsc.set(tsc),
                Step::Kept(writes) => self.kept.borrow_mut().extend(writes),
                _ => break,
            }
            step = self.script.borrow_mut().pop_front().ok_or(ErrorCode::PEER_GONE)?;
        }
        let (badge, received) = match step {
            Step::Exit { k, vp, mut message } => {
                // As ring 0 flags an exit with posted writes waiting.
                if !self.kept.borrow().is_empty() {
                    message.header.message_flags.set_posted_writes(true);
                }
                (super::exit_badge(k, vp), Message::from_words(labels::VM_EXIT, &message.to_words()).unwrap())
            }
            Step::Request { badge, message } => (badge, message),
            Step::Broker { partition, deliveries } => {
                self.queued.borrow_mut().entry(partition).or_default().extend(deliveries);
                self.last.set(0);
                *into = Message::new(labels::NOTIFICATION);
                return Ok(1);
            }
            Step::At(_) | Step::Kept(_) => unreachable!("taken above"),
            Step::Timeout => {
                let now = self.tsc.get();
                self.tsc.set(match until {
                    Until::Tsc(d) => d.max(now),
                    Until::Ticks(t) => now + t * (TSC_HZ / abi::TICK_HZ),
                });
                return Err(ErrorCode::TIMEOUT);
            }
        };
        self.last.set(badge);
        *into = received;
        Ok(badge)
    }

    fn reply(&self, message: &Message) -> Result<(), ErrorCode> {
        self.record_reply(message);
        Ok(())
    }

    fn start_vp(&self, vp: CapSlot) -> Result<(), ErrorCode> {
        self.vp_calls.borrow_mut().push(VpCall::Start(vp));
        Ok(())
    }

    fn suspend_vp(&self, vp: CapSlot) -> Result<(), ErrorCode> {
        self.vp_calls.borrow_mut().push(VpCall::Suspend(vp));
        Ok(())
    }

    fn reset_vp(&self, vp: CapSlot) -> Result<(), ErrorCode> {
        self.pending.borrow_mut().remove(&vp);
        self.vp_calls.borrow_mut().push(VpCall::Reset(vp));
        Ok(())
    }

    fn set_registers(&self, vp: CapSlot, words: &[u64]) -> Result<(), ErrorCode> {
        if let [1, name, value, _] = *words
            && name == u64::from(HvRegisterName::PENDING_INTERRUPTION.0)
        {
            self.pending.borrow_mut().insert(vp, value);
        }
        self.vp_calls.borrow_mut().push(VpCall::SetRegisters(vp, words.to_vec()));
        Ok(())
    }

    fn register(&self, vp: CapSlot, name: HvRegisterName) -> Result<(u64, u64), ErrorCode> {
        let value = match name {
            HvRegisterName::PENDING_INTERRUPTION => self.pending.borrow().get(&vp).copied().unwrap_or(0),
            _ => 0,
        };
        Ok((value, 0))
    }

    fn flush_tlb(&self, partition: CapSlot) {
        self.vp_calls.borrow_mut().push(VpCall::FlushTlb(partition));
    }

    fn hold_write(&self, _: CapSlot, gpn: u64, held: bool, vtl: HvVtl) {
        self.holds.borrow_mut().push((gpn, held, vtl));
    }

    fn enable_partition_vtl(&self, partition: CapSlot, vtl: HvVtl) -> Result<(), ErrorCode> {
        self.vtl_call(VpCall::EnablePartitionVtl(partition, vtl))
    }

    fn disable_partition_vtl(&self, partition: CapSlot, vtl: HvVtl) -> Result<(), ErrorCode> {
        self.vtl_call(VpCall::DisablePartitionVtl(partition, vtl))
    }

    fn protect(&self, partition: CapSlot, gpn: u64, pages: u64, rights: Rights) -> Result<(), ErrorCode> {
        self.vtl_call(VpCall::Protect(partition, gpn, pages, rights))
    }

    fn enable_vp_vtl(&self, vp: CapSlot, vtl: HvVtl) -> Result<(), ErrorCode> {
        self.vtl_call(VpCall::EnableVpVtl(vp, vtl))
    }

    fn switch_vtl(&self, vp: CapSlot, vtl: HvVtl) -> Result<(), ErrorCode> {
        self.vtl_call(VpCall::SwitchVtl(vp, vtl))
    }

    fn latch_port(&self, _: CapSlot, port: u16, value: Option<u8>) {
        self.latched.borrow_mut().push((port, value));
    }

    fn post_port(&self, _: CapSlot, port: u16, on: bool) {
        self.posts.borrow_mut().push((port, on));
    }

    fn drain_posted(&self, _: CapSlot) -> PostedWrites {
        let taken: Vec<_> = self.kept.borrow_mut().drain(..).collect();
        self.drains.borrow_mut().push(taken.clone());
        taken.into_iter().collect()
    }

    fn float_ports(&self, _: CapSlot, first: u32, count: u32, on: bool) {
        self.floated.borrow_mut().push((first, count, on));
    }

    fn tsc(&self) -> u64 {
        self.tsc.get()
    }

    fn ticks(&self) -> u64 {
        self.tsc.get() / (TSC_HZ / abi::TICK_HZ)
    }

    fn log(&self, line: core::fmt::Arguments<'_>) {
        self.log.borrow_mut().push(line.to_string());
    }
}

impl Services for Fake {
    fn broker_events(&self) -> BrokerEvents {
        self.events.get().unwrap_or(BrokerEvents::None)
    }

    fn broker_signalled(&self) -> bool {
        false
    }

    fn fetch(&self, partition: u64, _events_only: bool) -> Result<Fetched, NoDelivery> {
        self.fetched.borrow_mut().push(partition);
        if self.synic_unknown.borrow_mut().remove(&partition) {
            return Err(NoDelivery::SynicUnknown);
        }
        self.queued.borrow_mut().get_mut(&partition).and_then(|q| q.pop_front()).ok_or(NoDelivery::None)
    }

    fn has_broker(&self) -> bool {
        self.events.get().is_some()
    }

    fn post_message(&self, _: u64, _: u32, _: u32, _: &[u8]) -> HvResult<()> {
        Ok(())
    }

    fn signal_event(&self, partition: u64, connection_id: u32, flag_number: u16) -> HvResult<()> {
        self.signals.borrow_mut().push((partition, connection_id, flag_number, self.tsc.get()));
        if connection_id == NOT_HELD { Err(tlfs::HvError::INVALID_CONNECTION_ID) } else { Ok(()) }
    }

    fn synic_state(&self, partition: u64, vp: u32, accepting: u32) -> HvResult<()> {
        self.synic_reports.borrow_mut().push((partition, vp, accepting));
        Ok(())
    }

    fn crashed(&self, _: &str, _: Option<u64>, _: [u64; 5]) {}

    fn stopped(&self, _: &str, id: Option<u64>) {
        self.stopped.borrow_mut().push(id);
    }

    fn has_input(&self) -> bool {
        self.input.get()
    }

    fn read_input(&self, _: u32) -> Option<Bytes> {
        Some(Bytes::default())
    }
}

/// An intercept header at `rip` of an instruction of `len` bytes, in
/// protected mode with interrupts on.
pub fn header(rip: u64, len: u8, access: HvInterceptAccessType) -> HvX64InterceptMessageHeader {
    HvX64InterceptMessageHeader {
        vp_index: 0,
        instruction_length_and_cr8: HvX64InstructionLength::new().with_instruction_length(len),
        intercept_access_type: access,
        execution_state: HvX64VpExecutionState::new().with_cr0_pe(true),
        cs_segment: segment(),
        rip,
        rflags: 0x202,
    }
}

fn segment() -> HvX64SegmentRegister {
    tlfs::segment_register_from_value(0, 0)
}

/// `out dx, al` of `value` to `port` at 0x1000 (two bytes).
pub fn out(port: u16, value: u64) -> HvMessage {
    let body = HvMessageBody::X64IoPortIntercept(HvX64IoPortInterceptMessage {
        header: header(0x1000, 2, HvInterceptAccessType::WRITE),
        port_number: port,
        access_info: HvX64IoPortAccessInfo::new().with_access_size(1),
        instruction_byte_count: 0,
        reserved: 0,
        rax: value,
        instruction_bytes: [0; 16],
        ds_segment: segment(),
        es_segment: segment(),
        rcx: 0,
        rsi: 0,
        rdi: 0,
    });
    HvMessage::from_body(&body, 0)
}

/// `wrmsr` of `value` to MSR `number` at 0x1000.
pub fn wrmsr(number: u32, value: u64) -> HvMessage {
    let body = HvMessageBody::MsrIntercept(HvX64MsrInterceptMessage {
        header: header(0x1000, 2, HvInterceptAccessType::WRITE),
        msr_number: number,
        reserved: 0,
        rdx: value >> 32,
        rax: value & 0xffff_ffff,
    });
    HvMessage::from_body(&body, 0)
}

/// HLT at 0x1000 with interrupts on (`rflags`).
pub fn hlt(rflags: u64) -> HvMessage {
    let mut h = header(0x1000, 1, HvInterceptAccessType::EXECUTE);
    h.rflags = rflags;
    HvMessage::from_body(&HvMessageBody::X64Halt(HvX64HaltMessage { header: h }), 0)
}
