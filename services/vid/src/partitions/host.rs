//! The exit loop's kernel and services ([`vid::host`]) as the task has
//! them: system calls and invocations on its capabilities, and the
//! broker's, the partition manager's and the console's interfaces.

use super::{Failure, receiving};
use abi::{CapSlot, ErrorCode, ObjectType, Rights};
use partition_manager_api::Handover;
use tessera_idl::Retrying;
use tessera_idl::{Bytes, Message};
use tessera_rt::{Operation, caps, invoke, log};
use tlfs::vsm::HvVtl;
use tlfs::{HvError, HvRegisterName, HvResult};
use vid::host::{BrokerEvents, Fetched, Kernel, NoDelivery, PostedWrites, Services, Until};

/// The kernel, and the endpoint the loop receives exits and requests on.
pub struct TaskKernel(pub CapSlot);

impl Kernel for TaskKernel {
    fn receive(&self, reply: Option<&Message>, into: &mut Message, until: Until) -> Result<u64, ErrorCode> {
        let until = match until {
            Until::Ticks(t) => tessera_rt::Until::Ticks(t),
            Until::Tsc(d) => tessera_rt::Until::Tsc(d),
        };
        let (badge, _) = match reply {
            Some(message) => tessera_rt::reply_recv_into_until(self.0, message, into, until),
            None => tessera_rt::recv_in_place_until(self.0, into, until),
        }?;
        Ok(badge.0)
    }

    fn reply(&self, message: &Message) -> Result<(), ErrorCode> {
        tessera_rt::reply(message)
    }

    fn start_vp(&self, vp: CapSlot) -> Result<(), ErrorCode> {
        invoke(vp, Operation::VP_START, &[]).map(drop)
    }

    fn suspend_vp(&self, vp: CapSlot) -> Result<(), ErrorCode> {
        invoke(vp, Operation::VP_SUSPEND, &[]).map(drop)
    }

    fn reset_vp(&self, vp: CapSlot) -> Result<(), ErrorCode> {
        invoke(vp, Operation::VP_RESET, &[]).map(drop)
    }

    fn set_registers(&self, vp: CapSlot, words: &[u64]) -> Result<(), ErrorCode> {
        invoke(vp, Operation::VP_SET_REGISTERS, words).map(drop)
    }

    fn register(&self, vp: CapSlot, name: HvRegisterName) -> Result<(u64, u64), ErrorCode> {
        let reply = invoke(vp, Operation::VP_GET_REGISTERS, &[1, u64::from(name.0)])?;
        match reply.words() {
            [low, high, ..] => Ok((*low, *high)),
            _ => Err(ErrorCode::INVALID_STATE),
        }
    }

    fn flush_tlb(&self, partition: CapSlot) {
        let _ = invoke(partition, Operation::PARTITION_FLUSH_TLB, &[]);
    }

    fn hold_write(&self, partition: CapSlot, gpn: u64, held: bool, vtl: HvVtl) {
        let words = [gpn << 12, u64::from(held), u64::from(vtl)];
        // Without MR2 the view is VTL 0's (a kernel before VSM takes two).
        let words = if vtl == 0 { &words[..2] } else { &words[..] };
        let _ = invoke(partition, Operation::PARTITION_HOLD_WRITE, words);
    }

    fn enable_partition_vtl(&self, partition: CapSlot, vtl: HvVtl) -> Result<(), ErrorCode> {
        invoke(partition, Operation::PARTITION_ENABLE_VTL, &[vtl.into()]).map(drop)
    }

    fn disable_partition_vtl(&self, partition: CapSlot, vtl: HvVtl) -> Result<(), ErrorCode> {
        invoke(partition, Operation::PARTITION_DISABLE_VTL, &[vtl.into()]).map(drop)
    }

    fn protect(&self, partition: CapSlot, gpn: u64, pages: u64, rights: Rights) -> Result<(), ErrorCode> {
        let rights = u64::from(rights.into_bits());
        invoke(partition, Operation::PARTITION_PROTECT, &[gpn << 12, pages, rights]).map(drop)
    }

    fn enable_vp_vtl(&self, vp: CapSlot, vtl: HvVtl) -> Result<(), ErrorCode> {
        invoke(vp, Operation::VP_ENABLE_VTL, &[vtl.into()]).map(drop)
    }

    fn switch_vtl(&self, vp: CapSlot, vtl: HvVtl) -> Result<(), ErrorCode> {
        invoke(vp, Operation::VP_SWITCH_VTL, &[vtl.into()]).map(drop)
    }

    fn latch_port(&self, partition: CapSlot, port: u16, value: Option<u8>) {
        let value = value.map_or(abi::invoke::UNLATCHED, u64::from);
        let _ = invoke(partition, Operation::PARTITION_LATCH_PORT, &[port.into(), value]);
    }

    fn post_port(&self, partition: CapSlot, port: u16, on: bool) {
        if let Err(e) = invoke(partition, Operation::PARTITION_POST_PORT, &[port.into(), on.into()]) {
            log!("cannot {} port {port:#x}: {e:?}", if on { "post" } else { "unpost" });
        }
    }

    fn drain_posted(&self, partition: CapSlot) -> PostedWrites {
        match invoke(partition, Operation::PARTITION_DRAIN_POSTED, &[]) {
            Ok(m) => kerncore::portset::drained(m.words()).collect(),
            // Ring 0 keeps them (a drain takes nothing it cannot reply),
            // and the next flagged exit drains again.
            Err(e) => {
                log!("cannot drain the posted writes: {e:?}");
                PostedWrites::new()
            }
        }
    }

    fn float_ports(&self, partition: CapSlot, first: u32, count: u32, on: bool) {
        let _ = invoke(partition, Operation::PARTITION_SET_FLOATING_PORTS, &[first.into(), count.into(), on.into()]);
    }

    fn tsc(&self) -> u64 {
        tessera_rt::arch::rdtsc()
    }

    fn ticks(&self) -> u64 {
        tessera_rt::ticks()
    }

    fn log(&self, line: core::fmt::Arguments<'_>) {
        log!("{line}");
    }
}

/// The partition manager, where this VID attaches its partitions and
/// reports them stopped (finalized), so the manager's view of partition
/// state follows the guests.
/// With this instance's token for `attach`: the TSC at its start.
pub struct Registry(Option<CapSlot>, u64);

impl Registry {
    pub fn find() -> Registry {
        Registry(caps::endpoint(partition_manager_api::ENDPOINT), tessera_rt::arch::rdtsc())
    }

    /// Its client: a request the manager died with in hand is made again
    /// to its next instance (`Retrying`).
    fn client(&self) -> Option<partition_manager_api::Client<Retrying<tessera_rt::Kernel>>> {
        Some(partition_manager_api::Client::new(Retrying(tessera_rt::Kernel), self.0?))
    }

    /// Takes manifest partition `index`: its ID, RAM size, VP count, how
    /// it was left (by a previous instance of this VID?), and the
    /// capabilities to its RAM, partition and VP 0, received into `into`.
    pub fn attach(&self, index: u32, into: [CapSlot; 3]) -> Result<(u64, u64, u32, Handover), Failure> {
        let pm = self.client().ok_or(Failure::kernel(ErrorCode::INVALID_CAPABILITY))?;
        let [ram, partition, vp] = into;
        let into = [(ram, ObjectType::MEMORY), (partition, ObjectType::PARTITION), (vp, ObjectType::VP)];
        receiving(&into, || Ok(pm.attach(index, self.1)??))
    }

    /// VP `index` of partition `id` at the partition manager, into slot `into`.
    pub fn attach_vp(&self, id: u64, index: u32, into: CapSlot) -> Result<(), Failure> {
        let pm = self.client().ok_or(Failure::kernel(ErrorCode::INVALID_CAPABILITY))?;
        receiving(&[(into, ObjectType::VP)], || Ok(pm.attach_vp(id, index)??))
    }

    /// The page of monitor connection `connection_id` that manifest
    /// partition `index` holds: its GPA there, the page received into `into`.
    pub fn attach_monitor(&self, index: u32, connection_id: u32, into: CapSlot) -> Result<u64, Failure> {
        let pm = self.client().ok_or(Failure::kernel(ErrorCode::INVALID_CAPABILITY))?;
        receiving(&[(into, ObjectType::MEMORY)], || Ok(pm.attach_monitor(index, connection_id)??))
    }
}

/// The broker, for the partitions' HvPostMessage and HvSignalEvent, and
/// the notification it signals when one of them has deliveries.
struct Broker {
    client: broker_api::Client<tessera_rt::Kernel>,
    /// Only a VID of a partition that holds a port has it.
    events: Option<CapSlot>,
    /// `events` is bound to the VID's thread (`NOTIFICATION_BIND`): the
    /// broker's signal ends the wait for the next exit, so the loop
    /// neither polls it nor wakes to look.
    bound: bool,
}

impl Broker {
    /// The broker, if the manifest lets this VID use it.
    fn find() -> Option<Broker> {
        let endpoint = caps::endpoint(broker_api::ENDPOINT)?;
        let events = caps::notification(broker_api::VID_NOTIFICATION);
        let bound = events.is_some_and(|n| invoke(n, Operation::NOTIFICATION_BIND, &[1]).is_ok());
        Some(Broker { client: broker_api::Client::new(tessera_rt::Kernel, endpoint), events, bound })
    }
}

/// The services the loop calls, as the manifest gives them to this VID.
pub struct TaskServices {
    registry: Registry,
    broker: Option<Broker>,
    console: Option<console_api::Client<tessera_rt::Kernel>>,
}

impl TaskServices {
    pub fn find(registry: Registry) -> TaskServices {
        let broker = Broker::find();
        if broker.as_ref().is_some_and(|b| b.bound) {
            log!("broker-events bound to this thread: the broker's deliveries end its wait for exits");
        }
        let console = caps::endpoint(console_api::ENDPOINT).map(|ep| console_api::Client::new(tessera_rt::Kernel, ep));
        TaskServices { registry, broker, console }
    }

    fn broker(&self) -> Option<&broker_api::Client<tessera_rt::Kernel>> {
        self.broker.as_ref().map(|b| &b.client)
    }
}

impl Services for TaskServices {
    fn broker_events(&self) -> BrokerEvents {
        match &self.broker {
            Some(Broker { events: Some(_), bound: true, .. }) => BrokerEvents::Bound,
            Some(Broker { events: Some(_), bound: false, .. }) => BrokerEvents::Polled,
            _ => BrokerEvents::None,
        }
    }

    /// A non-blocking WAIT, which takes the bits whether bound or not.
    fn broker_signalled(&self) -> bool {
        self.broker.as_ref().and_then(|b| b.events).is_some_and(|n| tessera_rt::poll(n).is_ok())
    }

    fn fetch(&self, partition: u64, events_only: bool) -> Result<Fetched, NoDelivery> {
        let broker = self.broker().ok_or(NoDelivery::None)?;
        let answer = if events_only { broker.fetch_event(partition) } else { broker.fetch(partition) };
        match answer {
            Ok(Ok(fetched)) => Ok(fetched),
            Ok(Err(HvError::INVALID_SYNIC_STATE)) => Err(NoDelivery::SynicUnknown),
            _ => Err(NoDelivery::None),
        }
    }

    fn has_broker(&self) -> bool {
        self.broker.is_some()
    }

    // A broker that is gone or answers nonsense: the engine makes any
    // status outside the call's table INVALID_CONNECTION_ID.
    fn post_message(&self, partition: u64, connection_id: u32, message_type: u32, payload: &[u8]) -> HvResult<()> {
        let broker = self.broker().ok_or(tlfs::HvError::OPERATION_FAILED)?;
        let answer = broker.post_message(partition, connection_id, message_type, payload);
        answer.unwrap_or(Err(tlfs::HvError::OPERATION_FAILED))
    }

    fn signal_event(&self, partition: u64, connection_id: u32, flag_number: u16) -> HvResult<()> {
        let broker = self.broker().ok_or(tlfs::HvError::OPERATION_FAILED)?;
        let answer = broker.signal_event(partition, connection_id, u32::from(flag_number));
        answer.unwrap_or(Err(tlfs::HvError::OPERATION_FAILED))
    }

    fn synic_state(&self, partition: u64, vp: u32, accepting: u32) -> HvResult<()> {
        let broker = self.broker().ok_or(tlfs::HvError::OPERATION_FAILED)?;
        broker.synic_state(partition, vp, accepting).unwrap_or(Err(tlfs::HvError::OPERATION_FAILED))
    }

    /// Passes a guest crash notification (CRASH_P0..P4) to the manager.
    fn crashed(&self, name: &str, id: Option<u64>, p: [u64; 5]) {
        let (Some(pm), Some(id)) = (self.registry.client(), id) else { return };
        if let Err(e) = pm
            .report_guest_crash(id, p[0], p[1], p[2], p[3], p[4])
            .map_err(Failure::from)
            .and_then(|r| r.map_err(Failure::from))
        {
            log!("{name}: the partition manager did not take the crash report: {e}");
        }
    }

    /// Records that a partition's guest stopped: finalized, and the state
    /// the manager now reports for it.
    fn stopped(&self, name: &str, id: Option<u64>) {
        let (Some(pm), Some(id)) = (self.registry.client(), id) else { return };
        let state = (|| {
            // A finalize the manager died with may have been done before:
            // repeated (Retrying), it finds the partition Finalized.
            match pm.finalize_partition(id)? {
                Ok(()) | Err(HvError::INVALID_PARTITION_STATE) => {}
                Err(e) => return Err(e.into()),
            }
            Ok::<_, Failure>(pm.partition_state(id)??)
        })();
        match state {
            Ok(state) => log!("{name}: partition {id} is {state:?} at the partition manager"),
            Err(e) => log!("{name}: the partition manager did not finalize partition {id}: {e}"),
        }
    }

    fn has_input(&self) -> bool {
        self.console.is_some()
    }

    fn read_input(&self, max: u32) -> Option<Bytes> {
        match self.console.as_ref()?.read(max) {
            Ok(Ok(bytes)) => Some(bytes),
            Ok(Err(console_api::ServiceError::PermissionDenied)) => None,
            // The console died during the call, or refused it: nothing
            // read this time; its next instance is asked on the next poll.
            _ => Some(Bytes::default()),
        }
    }
}
