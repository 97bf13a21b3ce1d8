//! Partitions and virtual processors.
//!
//! A partition is a guest-physical address space; a VP is a thread whose
//! "user mode" is guest mode. When the scheduler picks a VP the kernel runs
//! the guest until it exits. Exits that only the kernel can handle (host
//! interrupts) stay in ring 0; every other exit becomes a TLFS intercept
//! message (`HV_MESSAGE`) sent, like a fault, to the VP's exit endpoint —
//! the VID — and the VP waits. The VID's reply carries register updates
//! (among them the TLFS pending-interruption register: an event to inject)
//! and says whether the VP runs on, stops, or waits as after HLT until an
//! interruption is pending.
//!
//! Ring 0 delivers interruptions when the guest can take them, and delivers
//! again an event an exit cut short. An interrupt the guest cannot take yet
//! waits as a virtual interrupt it takes by itself (SVM) or behind an
//! interrupt window (VMX). A VP whose handler is gone, or does not answer
//! in the time its monitor allows, stops and is reported to the monitor
//! (`VP_STOPPED`).
//!
//! The hardware is behind `arch::vm`: AMD SVM with nested paging or Intel
//! VMX with EPT.

mod control_registers;
mod ring0;

use super::Kernel;
use crate::arch::ipi;
use crate::arch::vm::{self as hw, Access, Backend, ExitReason, InterceptState, VpHardware};
use crate::trap::KernelGuard;
use abi::{ErrorCode, VpStopReason, VpStopReport, labels};
use kerncore::event::Interruption;
use kerncore::intercept::IoDirection;
use kerncore::ipc::{EndpointId, ThreadState};
use kerncore::sched::ThreadId;
use tlfs::exit_state::{ExitState, gpr};
use tlfs::zerocopy::IntoBytes;
use tlfs::{
    HvInterceptAccessType, HvMessage, HvMessageBody, HvRegisterName, HvX64CpuidInterceptMessage, HvX64HaltMessage,
    HvX64HypercallInterceptMessage, HvX64InterceptMessageHeader, HvX64IoPortAccessInfo, HvX64IoPortInterceptMessage,
    HvX64MemoryAccessInfo, HvX64MemoryInterceptMessage, HvX64MsrInterceptMessage, HvX64UnrecoverableExceptionMessage,
};

pub use abi::limits::MAX_PARTITIONS;
/// VP objects in the whole system: the kernel's pool, shared by every
/// partition (each has at most `abi::limits::MAX_VPS_PER_PARTITION`).
pub const MAX_VP_OBJECTS: usize = abi::limits::tables::VPS;
const _: () = assert!(MAX_VP_OBJECTS <= u32::BITS as usize, "a bit per VP in Kernel::awaiting_vps");

pub struct Partition {
    pub backend: Backend,
    /// Root of the second-level page tables (NPT or EPT): VTL 0's view.
    pub root: u64,
    /// VTL 1's view once the partition has VTL 1 (`PARTITION_ENABLE_VTL`):
    /// every page with the rights the map granted, no protection.
    pub upper: Option<u64>,
    /// ASID or VPID.
    pub tag: u32,
    /// CPUs that must flush what they cached of the partition's
    /// second-level tables before they run one of its VPs again.
    /// Per view (VTL): a CPU that flushed one view's translations (VMX:
    /// INVEPT by that view's EPTP) still holds the other's.
    pub flush: [u32; 2],
    /// Counts the changes after which every VP's translations are stale
    /// (mappings, or a guest's flush): a VP that saw an older count takes
    /// a fresh tag at its next entry.
    pub epoch: u64,
    /// An uncorrected machine check hit while one of its VPs ran: none of
    /// them runs again (`arch::mce`).
    pub machine_check: bool,
    /// Core-exclusive: SMT siblings never run its VPs and another
    /// partition's at once (`ipi::core_entry`).
    pub core_exclusive: bool,
}

/// Every CPU's bit in [`Partition::flush`].
const ALL_CPUS: u32 = u32::MAX;

impl Partition {
    /// The root of `vtl`'s view, if the partition has that VTL.
    pub fn view(&self, vtl: u8) -> Option<u64> {
        match vtl {
            0 => Some(self.root),
            1 => self.upper,
            _ => None,
        }
    }

    /// Every view's root: what a map or an unmap changes.
    pub fn views(&self) -> impl Iterator<Item = u64> {
        core::iter::once(self.root).chain(self.upper)
    }

    /// Whether this CPU must flush before running one of the partition's
    /// VPs in `vtl`'s view; it will have, once the entry this is asked
    /// for happens.
    fn take_flush(&mut self, cpu: usize, vtl: u8) -> bool {
        let bit = 1 << cpu;
        let Some(flush) = self.flush.get_mut(usize::from(vtl)) else { return true };
        let due = *flush & bit != 0;
        *flush &= !bit;
        due
    }

    /// Its translations changed: every CPU flushes them, and every VP
    /// takes a fresh tag, before it runs again.
    fn changed(&mut self) {
        self.flush = [ALL_CPUS; 2];
        self.epoch += 1;
    }

    /// [`changed`](Self::changed), and no CPU still runs one of its VPs
    /// on translations from before this call once it returns (a TLB
    /// shootdown: TLFS 9.4 says a flush is complete when the hypercall
    /// returns).
    pub fn shoot_down(&mut self, index: u32) {
        self.changed();
        ipi::wait_out_of_partition(index);
    }
}

/// Report the cost of exits handled in ring 0 (boot option `bench`).
static BENCH: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

pub fn set_bench(on: bool) {
    BENCH.store(on, core::sync::atomic::Ordering::Relaxed);
}

/// Exits handled in ring 0: timed from the exit to the next entry.
#[derive(Clone, Copy, Default)]
pub struct HostExitStats {
    pub count: u64,
    pub total: u64,
    pub min: u64,
}

pub struct Vcpu {
    pub host_exits: HostExitStats,
    pub partition: Option<u32>,
    pub index: u32,
    pub hw: VpHardware,
    /// The exit message being delivered, as IPC words, and the state the
    /// handler asked for after it.
    pub exit: [u64; abi::MAX_MESSAGE_WORDS],
    pub exit_len: usize,
    /// The state sent with every exit.
    pub exit_state: ExitState,
    /// The handler asked to leave the VP stopped.
    pub stop: bool,
    /// The interruption the handler asked for, until the guest takes it.
    pub pending: Option<Interruption>,
    /// An exception ring 0 raised (`ring0`): delivered first.
    pub exception: Option<Interruption>,
    /// An interruption an exit cut short: delivered again before `pending`.
    pub reinject: Option<Interruption>,
    /// Waiting, as after HLT, until an interruption is pending.
    pub halted: bool,
    /// The interrupt window is open (an exit is asked for when the guest
    /// can take an interrupt).
    window: bool,
    /// `pending` is the interrupt offered to the guest (`wait_for_guest`).
    offered: bool,
    /// Told when the VP stops for want of an answer from its handler.
    pub monitor: Option<(EndpointId, abi::Badge)>,
    /// Ticks the handler may take to answer an exit (0: no limit).
    pub exit_timeout: u64,
    /// The exit now with the handler.
    pub awaiting: Option<Awaiting>,
    /// A stop report now with the monitor (its reply leaves the VP stopped).
    pub report: Option<[u64; VpStopReport::WORDS]>,
    /// TSC ticks spent in the guest and in ring 0 handling its exits.
    pub runtime_tsc: u64,
    /// Its partition's [`Partition::epoch`] at its last entry.
    epoch: u64,
    /// Its own translations are stale (an emulated CR write changed paging,
    /// `kerncore::cr::flushes_tlb`): the next entry flushes them.
    pub tlb_stale: bool,
    /// Power-ons so far (`VP_CONFIGURE`, `VP_RESET`): an exit from before
    /// the last one is dropped, as one of a VP destroyed meanwhile.
    life: u64,
    /// The events of the VTL not running, swapped in with its context
    /// (`switch_vtl`): each VTL has its own interrupt controller (TLFS 15.12).
    parked_events: VtlEvents,
}

/// What ring 0 holds for one VTL's interruptions (see [`Vcpu`]).
#[derive(Clone, Copy, Default)]
struct VtlEvents {
    pending: Option<Interruption>,
    exception: Option<Interruption>,
    reinject: Option<Interruption>,
    window: bool,
    offered: bool,
}

/// An exit sent to the handler and not yet answered.
#[derive(Clone, Copy, Debug)]
pub struct Awaiting {
    /// The tick it was sent.
    pub since: u64,
    pub message_type: u32,
    pub rip: u64,
}

impl Vcpu {
    fn new(hw: VpHardware) -> Vcpu {
        Vcpu {
            host_exits: HostExitStats::default(),
            partition: None,
            index: 0,
            hw,
            exit: [0; abi::MAX_MESSAGE_WORDS],
            exit_len: 0,
            exit_state: ExitState::new(),
            stop: false,
            pending: None,
            exception: None,
            reinject: None,
            halted: false,
            window: false,
            offered: false,
            monitor: None,
            exit_timeout: 0,
            awaiting: None,
            report: None,
            runtime_tsc: 0,
            epoch: u64::MAX,
            tlb_stale: false,
            life: 0,
            parked_events: VtlEvents::default(),
        }
    }

    /// Makes `vtl`, which the VP has, the active VTL: its context, view
    /// and events (`VP_SWITCH_VTL`).
    fn switch_vtl(&mut self, vtl: u8) {
        if vtl == self.hw.vtl() {
            return;
        }
        self.hw.switch_vtl(vtl);
        let p = &mut self.parked_events;
        core::mem::swap(&mut self.pending, &mut p.pending);
        core::mem::swap(&mut self.exception, &mut p.exception);
        core::mem::swap(&mut self.reinject, &mut p.reinject);
        core::mem::swap(&mut self.window, &mut p.window);
        core::mem::swap(&mut self.offered, &mut p.offered);
        self.tlb_stale = true;
    }

    /// Its guest state at power-on, in the partition whose second-level
    /// tables are at `root`, tagged `tag` (`VP_CONFIGURE`, `VP_RESET`):
    /// the hardware state and every event ring 0 held for it.
    fn power_on(&mut self, root: u64, tag: u32) {
        self.hw.power_on(root, tag);
        self.parked_events = VtlEvents::default();
        (self.pending, self.exception, self.reinject) = (None, None, None);
        (self.halted, self.window, self.offered, self.stop) = (false, false, false, false);
        self.tlb_stale = true;
        self.runtime_tsc = 0;
        self.life = self.life.wrapping_add(1);
    }

    pub fn get(&mut self, name: HvRegisterName) -> Option<(u64, u64)> {
        if name == HvRegisterName::PENDING_INTERRUPTION {
            let next = self.exception.or(self.reinject).or(self.pending);
            return Some((next.map_or(0, |e| e.to_register()), 0));
        }
        if name == HvRegisterName::VP_RUNTIME {
            let hz = u128::from(crate::arch::apic::tsc_hz().max(1));
            let units = u128::from(self.runtime_tsc) * 10_000_000 / hz;
            return Some((u64::try_from(units).unwrap_or(u64::MAX), 0));
        }
        self.hw.get(name)
    }

    /// Whether [`set`](Self::set) would take `low` for `name`; changes nothing.
    pub fn accepts(&mut self, name: HvRegisterName, low: u64) -> bool {
        if name == HvRegisterName::PENDING_INTERRUPTION {
            return Interruption::from_register(low).is_ok();
        }
        self.hw.accepts(name, low)
    }

    /// Sets a register; false if it does not exist or the value is refused
    /// (a malformed pending interruption).
    pub fn set(&mut self, name: HvRegisterName, low: u64, high: u64) -> bool {
        if name == HvRegisterName::PENDING_INTERRUPTION {
            return match Interruption::from_register(low) {
                // An exception the handler raises for the instruction that
                // exited (its #GP for an MSR, say) while an interrupt it
                // posted earlier still waits: the exception goes in first,
                // as the CPU delivers it, and the interrupt stays pending
                // (the VMM's interrupt controller has it in service).
                Ok(Some(event))
                    if !event.is_maskable()
                        && !event.is_nmi()
                        && self.exception.is_none()
                        && self.pending.is_some_and(|p| p.is_maskable() || p.is_nmi()) =>
                {
                    self.exception = Some(event);
                    true
                }
                // Nothing pending (an AP's start-up state after INIT): no
                // event ring 0 held for it stays either.
                Ok(None) => {
                    (self.pending, self.exception, self.reinject) = (None, None, None);
                    self.offered = false;
                    true
                }
                Ok(event) => {
                    self.pending = event;
                    // Not what is offered, if anything is.
                    self.offered = false;
                    true
                }
                Err(_) => false,
            };
        }
        self.hw.set(name, low, high)
    }

    /// Puts `message` and the state the handler asked for into `exit`;
    /// returns the words used.
    fn message_with_state(&mut self, message: &HvMessage) -> usize {
        let head = tlfs::HV_MESSAGE_WORDS;
        self.exit[..head].as_mut_bytes().copy_from_slice(message.as_bytes());
        head + self.hw.exit_state(self.exit_state, &mut self.exit[head..])
    }

    /// Loads the events due at this entry: an exception ring 0 raised
    /// first, then one cut short, then the pending one when the guest can
    /// take it. What cannot go in now waits (`wait_for_guest`).
    fn load_events(&mut self) {
        if let Some(event) = self.exception.take() {
            // Exceptions are never masked: always injected.
            self.hw.inject(&event);
        } else if let Some(event) = self.reinject.take() {
            if !self.hw.inject(&event) {
                self.reinject = Some(event);
            }
        } else if let Some(event) = self.pending.filter(|e| !self.hw.offers(e)) {
            // Nothing else waits: the backend opens the window itself if
            // the guest cannot take it.
            let injected = self.hw.inject(&event);
            if injected {
                self.pending = None;
            }
            self.window = !injected;
            return;
        } else if self.pending.is_none() && !self.window && !self.hw.offering() {
            return;
        }
        self.wait_for_guest();
    }

    /// Lets the interruption that did not go in at this entry wait: the
    /// pending interrupt as an offer the guest takes by itself where the
    /// backend makes one (SVM), otherwise behind an interrupt window, open
    /// exactly while one waits.
    fn wait_for_guest(&mut self) {
        let offer = self.pending.filter(|e| self.reinject.is_none() && self.hw.offers(e));
        self.window = offer.is_none() && (self.reinject.is_some() || self.pending.is_some());
        match offer {
            Some(event) => {
                self.hw.offer(&event);
                self.offered = true;
            }
            None => self.hw.request_window(self.window),
        }
    }

    /// After an exit: an offered interrupt the guest took is no longer
    /// pending (unless the handler has asked for another since).
    fn settle_offer(&mut self) {
        if self.hw.take_offer_taken() && core::mem::take(&mut self.offered) {
            self.pending = None;
        }
    }
}

/// What to do with an exit.
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    /// Handled in ring 0 (a host interrupt, or one of `ring0`'s): reschedule
    /// and maybe run on.
    Host,
    /// Send this message to the VP's handler (boxed would need a heap; the
    /// outcome lives on the stack for one exit only).
    Forward(HvMessage),
}

fn header(vcpu: &mut Vcpu, rip: u64, length: u8, access: HvInterceptAccessType) -> HvX64InterceptMessageHeader {
    let InterceptState { execution: state, cs: (cs_low, cs_high), interrupt_shadow: shadow } =
        vcpu.hw.intercept_state();
    let pending = vcpu.reinject.is_some() || vcpu.pending.is_some();
    HvX64InterceptMessageHeader {
        vp_index: vcpu.index,
        instruction_length_and_cr8: tlfs::HvX64InstructionLength::new().with_instruction_length(length.min(15)),
        intercept_access_type: access,
        execution_state: tlfs::HvX64VpExecutionState::new()
            .with_cpl(state.cpl & 3)
            .with_cr0_pe(state.cr0 & 1 != 0)
            .with_cr0_am(state.cr0 & (1 << 18) != 0)
            .with_efer_lma(state.efer & (1 << 10) != 0)
            .with_interruption_pending(pending)
            .with_vtl(vcpu.hw.vtl())
            .with_interrupt_shadow(shadow),
        cs_segment: tlfs::segment_register_from_value(cs_low, cs_high),
        rip,
        rflags: state.rflags,
    }
}

fn access_type(access: Access) -> HvInterceptAccessType {
    match access {
        Access::Read => HvInterceptAccessType::READ,
        Access::Write => HvInterceptAccessType::WRITE,
        Access::Execute => HvInterceptAccessType::EXECUTE,
    }
}

/// Turns an exit into a ring-0 outcome or a TLFS intercept message.
pub fn classify(vcpu: &mut Vcpu, exit: hw::Exit) -> Outcome {
    let (rip, length) = (exit.rip, exit.instruction_length);
    if let ExitReason::ControlRegister(access) = exit.reason
        && control_registers::emulate(vcpu, &exit, access)
    {
        return Outcome::Host;
    }
    if ring0::is_address_write(vcpu, &exit) {
        ring0::write_address(vcpu, &exit);
        return Outcome::Host;
    }
    // What the messages below carry, read in one go (`run` answers the
    // common ring-0 exits, host interrupts and windows, before this).
    let g = vcpu.hw.general_registers();
    let body = match exit.reason {
        ExitReason::HostInterrupt | ExitReason::InterruptWindow => return Outcome::Host,
        ExitReason::Xsetbv
        | ExitReason::CacheFlush
        | ExitReason::Rdpmc
        | ExitReason::NotOffered
        | ExitReason::DebugRegister
        | ExitReason::Exception(_) => {
            ring0::handle(vcpu, &exit);
            return Outcome::Host;
        }
        ExitReason::Io(io) => {
            let access = match io.direction {
                IoDirection::In => HvInterceptAccessType::READ,
                IoDirection::Out => HvInterceptAccessType::WRITE,
            };
            let [(ds_low, ds_high), (es_low, es_high)] = vcpu.hw.data_segments();
            HvMessageBody::X64IoPortIntercept(HvX64IoPortInterceptMessage {
                header: header(vcpu, rip, length, access),
                port_number: io.port,
                access_info: HvX64IoPortAccessInfo::new()
                    .with_access_size(io.size.bytes())
                    .with_string_op(io.string)
                    .with_rep_prefix(io.rep),
                instruction_byte_count: 0,
                reserved: 0,
                rax: g[gpr::RAX],
                instruction_bytes: [0; 16],
                ds_segment: tlfs::segment_register_from_value(ds_low, ds_high),
                es_segment: tlfs::segment_register_from_value(es_low, es_high),
                rcx: g[gpr::RCX],
                rsi: g[gpr::RSI],
                rdi: g[gpr::RDI],
            })
        }
        ExitReason::Cpuid => HvMessageBody::X64CpuidIntercept(HvX64CpuidInterceptMessage {
            header: header(vcpu, rip, length, HvInterceptAccessType::EXECUTE),
            rax: g[gpr::RAX],
            rcx: g[gpr::RCX],
            rdx: g[gpr::RDX],
            rbx: g[gpr::RBX],
            default_result_rax: 0,
            default_result_rcx: 0,
            default_result_rdx: 0,
            default_result_rbx: 0,
        }),
        ExitReason::Msr { write } => {
            let access = if write { HvInterceptAccessType::WRITE } else { HvInterceptAccessType::READ };
            HvMessageBody::MsrIntercept(HvX64MsrInterceptMessage {
                header: header(vcpu, rip, length, access),
                msr_number: g[gpr::RCX] as u32,
                reserved: 0,
                rdx: g[gpr::RDX],
                rax: g[gpr::RAX],
            })
        }
        ExitReason::Hlt => HvMessageBody::X64Halt(HvX64HaltMessage {
            header: header(vcpu, rip, length, HvInterceptAccessType::EXECUTE),
        }),
        ExitReason::Hypercall => {
            let xmm = vcpu.hw.xmm_fast();
            HvMessageBody::HypercallIntercept(HvX64HypercallInterceptMessage {
                header: header(vcpu, rip, length, HvInterceptAccessType::EXECUTE),
                rax: g[gpr::RAX],
                rbx: g[gpr::RBX],
                rcx: g[gpr::RCX],
                rdx: g[gpr::RDX],
                r8: g[gpr::R8],
                rsi: g[gpr::RSI],
                rdi: g[gpr::RDI],
                xmm,
                flags: 0,
                reserved: 0,
            })
        }
        ExitReason::GuestMemory { gpa, access, mapped } => {
            let message = HvX64MemoryInterceptMessage {
                header: header(vcpu, rip, length, access_type(access)),
                cache_type: tlfs::HvCacheType(6),
                instruction_byte_count: 0,
                memory_access_info: HvX64MemoryAccessInfo::new(),
                tpr_priority: 0,
                reserved: 0,
                guest_virtual_address: 0,
                guest_physical_address: gpa,
                instruction_bytes: [0; 16],
            };
            // A page a VTL protection leaves no right is mapped all the
            // same, though the hardware reports it as not present.
            if mapped || vcpu.hw.maps(gpa) {
                HvMessageBody::GpaIntercept(message)
            } else {
                HvMessageBody::UnmappedGpa(message)
            }
        }
        // Shutdown (a triple fault), a machine check that stopped the
        // partition, and anything the VMM must see.
        ExitReason::Shutdown | ExitReason::MachineCheck | ExitReason::Other(_) | ExitReason::ControlRegister(_) => {
            HvMessageBody::UnrecoverableException(HvX64UnrecoverableExceptionMessage {
                header: header(vcpu, rip, length, HvInterceptAccessType::EXECUTE),
            })
        }
    };
    Outcome::Forward(HvMessage::from_body(&body, 0))
}

fn report_host_exits(vcpu: &Vcpu) {
    let s = vcpu.host_exits;
    if BENCH.load(core::sync::atomic::Ordering::Relaxed) && s.count > 0 {
        platform::println!(
            "bench: vm exit handled in ring 0 (host timer interrupt): {} cycles (min {}) over {} exits",
            s.total / s.count,
            s.min,
            s.count
        );
    }
}

/// What the handler's reply to an exit asks of the VP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Resume,
    Stop,
    /// Wait until an interruption is pending (the guest executed HLT).
    Halt,
}

impl Next {
    /// From the label of a reply to a VM exit.
    pub fn from_label(label: u32) -> Result<Next, ErrorCode> {
        match label {
            labels::VP_RESUME => Ok(Next::Resume),
            labels::VP_STOP => Ok(Next::Stop),
            labels::VP_HALT => Ok(Next::Halt),
            _ => Err(ErrorCode::INVALID_ARGUMENT),
        }
    }
}

/// Sets registers from (name, low, high) triples after a count: all of
/// them, or (one refused) none.
fn set_registers(vcpu: &mut Vcpu, words: &[u64]) -> Result<(), ErrorCode> {
    let count = usize::try_from(*words.first().unwrap_or(&0)).map_err(|_| ErrorCode::INVALID_ARGUMENT)?;
    let end = count.checked_mul(3).and_then(|n| n.checked_add(1)).ok_or(ErrorCode::INVALID_ARGUMENT)?;
    let triples = words.get(1..end).ok_or(ErrorCode::INVALID_ARGUMENT)?;
    let name = |t: &[u64]| u32::try_from(t[0]).map(HvRegisterName).map_err(|_| ErrorCode::INVALID_ARGUMENT);
    for t in triples.chunks_exact(3) {
        let name = name(t)?;
        if !vcpu.accepts(name, t[1]) {
            crate::task_println!("vm: a VMM's value {:#x} for register {:#x} is refused", t[1], name.0);
            return Err(ErrorCode::INVALID_ARGUMENT);
        }
    }
    for t in triples.chunks_exact(3) {
        // Checked above: only a VMCS the CPU cannot write fails here.
        if !vcpu.set(name(t)?, t[1], t[2]) {
            return Err(ErrorCode::INVALID_ARGUMENT);
        }
    }
    Ok(())
}

/// Applies a reply to the VP's exit (register triples as for
/// VP_SET_REGISTERS) or, when a stop report was out, only keeps it stopped.
pub fn apply_reply(vcpu: &mut Vcpu, words: &[u64], label: u32) -> Result<(), ErrorCode> {
    if vcpu.report.take().is_some() {
        vcpu.stop = true;
        return Ok(());
    }
    let next = Next::from_label(label)?;
    set_registers(vcpu, words)?;
    vcpu.awaiting = None;
    vcpu.stop = next == Next::Stop;
    vcpu.halted = next == Next::Halt;
    Ok(())
}

impl Kernel {
    /// The VP a thread runs, if it is one.
    pub fn vcpu_of(&self, t: ThreadId) -> Option<u32> {
        self.threads.get(usize::from(t.0))?.vcpu
    }
}

/// The backend, switched on, or INVALID_OPERATION if this CPU cannot run guests.
fn ready() -> Result<Backend, ErrorCode> {
    hw::enable().map_err(|_| ErrorCode::INVALID_OPERATION)
}

/// A new partition with empty second-level page tables.
pub fn create_partition(k: &mut Kernel) -> Result<u32, ErrorCode> {
    let backend = ready()?;
    let index = k.partitions.iter().position(Option::is_none).ok_or(ErrorCode::OUT_OF_MEMORY)?;
    let root = hw::slat::new_root(backend).map_err(|_| ErrorCode::OUT_OF_MEMORY)?;
    k.clear_port_answers(index);
    // Tag 0 (ASID or VPID) is the host's.
    k.partitions[index] = Some(Partition {
        backend,
        root,
        upper: None,
        tag: index as u32 + 1,
        flush: [ALL_CPUS; 2],
        epoch: 0,
        machine_check: false,
        core_exclusive: false,
    });
    Ok(index as u32)
}

/// A new VP: a thread that runs guest code. Returns the thread id.
pub fn create_vp(k: &mut Kernel) -> Result<u32, ErrorCode> {
    let backend = ready()?;
    let slot = k.vcpus.iter().position(Option::is_none).ok_or(ErrorCode::OUT_OF_MEMORY)?;
    let hw = VpHardware::new(backend).ok_or(ErrorCode::OUT_OF_MEMORY)?;
    let thread = match k.ipc.alloc_thread() {
        Ok(t) => t,
        Err(e) => {
            hw.release();
            return Err(e);
        }
    };
    k.vcpus[slot] = Some(Vcpu::new(hw));
    k.threads[usize::from(thread.0)] = super::Thread { alive: true, vcpu: Some(slot as u32), ..super::Thread::DEAD };
    Ok(u32::from(thread.0))
}

use super::invoke::{bind_sched, control, done, expect, flag, message_word, run_right, sched_context, slot};
use abi::invoke::Operation;
use abi::limits::MAX_VP_REGISTERS;
use abi::{CapSlot, MessageInfo, ObjectType, Rights};
use kerncore::cap::{CSpace, Capability, ObjRef};
use kerncore::paging::PAGE_SIZE;
use kerncore::slat::GuestRights;

/// Whether VP thread `thread` may be in guest mode: started and runnable.
/// One that is not (at an exit, halted, suspended) has its state at rest
/// for the register and VTL operations.
fn running(k: &Kernel, thread: ThreadId) -> bool {
    matches!(k.ipc.state(thread), ThreadState::Runnable) && k.threads[usize::from(thread.0)].started
}

/// Maps `segments` (host runs) at `gpa` in the view at `root` of the
/// partition `owner`, charging its tables; a refusal removes what the runs
/// before it mapped, so a refused map adds no translation to the view.
fn map_runs(
    k: &mut Kernel,
    owner: ObjRef,
    root: u64,
    segments: &[(u64, u64)],
    gpa: u64,
    rights: GuestRights,
) -> Result<(), ErrorCode> {
    let partition = owner.index;
    let mut at = gpa;
    for &(phys, n) in segments {
        let (_, budget) = k.table_budget(owner);
        let p = k.partitions[partition as usize].as_mut().ok_or(ErrorCode::INVALID_STATE)?;
        let (mapped, tables) = hw::slat::map(p.backend, root, at, phys, n * PAGE_SIZE, rights, budget);
        if mapped.is_err() && at > gpa {
            // A VP elsewhere may have used them already.
            hw::slat::unmap_present(p.backend, root, gpa, at - gpa);
            p.shoot_down(partition);
        } else {
            p.changed();
        }
        // Tables a refused map added stay (empty) and are paid for all the same.
        k.charge_tables(owner, tables);
        mapped.map_err(|e| match e {
            kerncore::slat::GuestMapError::OutOfMemory => ErrorCode::OUT_OF_MEMORY,
            _ => ErrorCode::BAD_ADDRESS,
        })?;
        at += n * PAGE_SIZE;
    }
    Ok(())
}

/// Partition and VP operations.
pub fn invoke(
    k: &mut Kernel,
    t: ThreadId,
    cspace: CSpace,
    cap: Capability,
    op: Operation,
    mr: [u64; 4],
    info: MessageInfo,
) -> Result<MessageInfo, ErrorCode> {
    match op {
        Operation::PARTITION_MAP => {
            let partition = expect(cap, ObjectType::PARTITION, control())?;
            let (_, mem_cap) = k.caps.lookup(cspace, slot(mr[0]), ObjectType::MEMORY, Rights::new().with_read(true))?;
            let wanted = Rights::from_bits(u32::try_from(mr[2]).map_err(|_| ErrorCode::INVALID_ARGUMENT)?);
            if !mem_cap.rights.contains(wanted) || !wanted.read() {
                return Err(ErrorCode::NO_RIGHTS);
            }
            let (offset, pages, gpa) = (mr[3] >> 32, mr[3] & 0xffff_ffff, mr[1]);
            let index = mem_cap.object.index as usize;
            let mem = k.memory[index].as_ref().ok_or(ErrorCode::INVALID_STATE)?;
            if pages == 0
                || offset.checked_add(pages).is_none_or(|end| end > mem.pages())
                || !gpa.is_multiple_of(PAGE_SIZE)
                || gpa.checked_add(pages * PAGE_SIZE).is_none_or(|end| end > 1 << 46)
            {
                return Err(ErrorCode::INVALID_ARGUMENT);
            }
            // A mapping that cannot be recorded is never made.
            if mem.mappings.is_full() {
                return Err(ErrorCode::OUT_OF_MEMORY);
            }
            let segments: heapless::Vec<(u64, u64), { kerncore::frames::MAX_RUNS }> =
                mem.runs.segments(offset, pages).collect();
            let owner = ObjRef { kind: ObjectType::PARTITION, index: partition };
            let rights = GuestRights { read: true, write: wanted.write(), execute: wanted.execute() };
            let p = k.partitions[partition as usize].as_ref().ok_or(ErrorCode::INVALID_STATE)?;
            let (root, upper) = (p.root, p.upper);
            map_runs(k, owner, root, &segments, gpa, rights)?;
            if let Some(upper) = upper
                && let Err(e) = map_runs(k, owner, upper, &segments, gpa, rights)
            {
                // VTL 0's view has the pages VTL 1's lacks: neither keeps them.
                let p = k.partitions[partition as usize].as_mut().ok_or(ErrorCode::INVALID_STATE)?;
                hw::slat::unmap_present(p.backend, p.root, gpa, pages * PAGE_SIZE);
                p.shoot_down(partition);
                return Err(e);
            }
            let record = kerncore::mapping::Mapping { owner: super::PARTITION_OWNER + partition, at: gpa, pages };
            if let Some(mem) = k.memory[index].as_mut() {
                // Checked above, and nothing came between.
                let _ = mem.mappings.push(record);
            }
            done()
        }
        Operation::PARTITION_UNMAP => {
            let partition = expect(cap, ObjectType::PARTITION, control())?;
            let (gpa, pages) = (mr[0], mr[1]);
            let len = pages.checked_mul(PAGE_SIZE).ok_or(ErrorCode::INVALID_ARGUMENT)?;
            let owner = super::PARTITION_OWNER + partition;
            // Only recorded pages, and only if the records they cut (a
            // partial or middle unmap splits one) still fit.
            k.check_unmap(owner, gpa, pages)?;
            let p = k.partitions[partition as usize].as_mut().ok_or(ErrorCode::INVALID_STATE)?;
            hw::slat::unmap(p.backend, p.root, gpa, len).map_err(|_| ErrorCode::BAD_ADDRESS)?;
            // VTL 1's view holds what VTL 0's does.
            if let Some(upper) = p.upper {
                hw::slat::unmap_present(p.backend, upper, gpa, len);
            }
            p.shoot_down(partition);
            k.record_unmap(owner, gpa, pages);
            done()
        }
        Operation::PARTITION_FLUSH_TLB => {
            let partition = expect(cap, ObjectType::PARTITION, run_right())?;
            k.partitions[partition as usize].as_mut().ok_or(ErrorCode::INVALID_STATE)?.shoot_down(partition);
            done()
        }
        Operation::PARTITION_SET_FLOATING_PORTS => {
            let partition = expect(cap, ObjectType::PARTITION, run_right())?;
            let on = flag(mr[2])?;
            let first = u32::try_from(mr[0]).map_err(|_| ErrorCode::INVALID_ARGUMENT)?;
            let count = u32::try_from(mr[1]).map_err(|_| ErrorCode::INVALID_ARGUMENT)?;
            let ports = k.floating_ports.get_mut(partition as usize).ok_or(ErrorCode::INVALID_STATE)?;
            ports.set(first, count, on).ok_or(ErrorCode::INVALID_ARGUMENT)?;
            done()
        }
        Operation::PARTITION_LATCH_PORT => {
            let partition = expect(cap, ObjectType::PARTITION, run_right())?;
            let port = u16::try_from(mr[0]).map_err(|_| ErrorCode::INVALID_ARGUMENT)?;
            let value = match mr[1] {
                v @ 0..=0xff => Some(v as u8),
                abi::invoke::UNLATCHED => None,
                _ => return Err(ErrorCode::INVALID_ARGUMENT),
            };
            let latches = k.latched_ports.get_mut(partition as usize).ok_or(ErrorCode::INVALID_STATE)?;
            latches.set(port, value).ok_or(ErrorCode::OUT_OF_MEMORY)?;
            done()
        }
        Operation::PARTITION_POST_PORT => {
            let partition = expect(cap, ObjectType::PARTITION, run_right())?;
            let port = u16::try_from(mr[0]).map_err(|_| ErrorCode::INVALID_ARGUMENT)?;
            let on = flag(mr[1])?;
            let posted = k.posted_writes.get_mut(partition as usize).ok_or(ErrorCode::INVALID_STATE)?;
            posted.post(port, on).ok_or(ErrorCode::OUT_OF_MEMORY)?;
            done()
        }
        Operation::PARTITION_DRAIN_POSTED => {
            let partition = expect(cap, ObjectType::PARTITION, run_right())?;
            let posted = k.posted_writes.get_mut(partition as usize).ok_or(ErrorCode::INVALID_STATE)?;
            // Checked before anything is taken: a caller without an IPC
            // buffer loses no write.
            if !posted.pending().is_empty() && k.threads[usize::from(t.0)].ipc_buffer.is_none() {
                return Err(ErrorCode::MESSAGE_TOO_LONG);
            }
            // Taken only once the reply is written: a failed reply loses
            // no write.
            let mut words = [0; 1 + abi::limits::MAX_POSTED_WRITES / 2];
            let mut taken = *posted;
            let used = taken.drain(&mut words);
            let info = super::transfer::reply_words(k, t, &words[..used])?;
            k.posted_writes[partition as usize] = taken;
            Ok(info)
        }
        Operation::PARTITION_HOLD_WRITE => {
            let partition = expect(cap, ObjectType::PARTITION, run_right())?;
            let held = flag(mr[1])?;
            let vtl =
                if info.length() > 2 { u8::try_from(mr[2]).map_err(|_| ErrorCode::INVALID_ARGUMENT)? } else { 0 };
            let p = k.partitions[partition as usize].as_mut().ok_or(ErrorCode::INVALID_STATE)?;
            let view = p.view(vtl).ok_or(ErrorCode::INVALID_STATE)?;
            let changed = hw::slat::hold_write(p.backend, view, mr[0], held).map_err(|e| match e {
                kerncore::slat::GuestMapError::NotMapped { .. } => ErrorCode::BAD_ADDRESS,
                _ => ErrorCode::INVALID_ARGUMENT,
            })?;
            if changed {
                p.shoot_down(partition);
            }
            done()
        }
        Operation::PARTITION_ENABLE_VTL => {
            let partition = expect(cap, ObjectType::PARTITION, run_right())?;
            if mr[0] != 1 {
                return Err(ErrorCode::INVALID_ARGUMENT);
            }
            let owner = ObjRef { kind: ObjectType::PARTITION, index: partition };
            let (_, budget) = k.table_budget(owner);
            let p = k.partitions[partition as usize].as_mut().ok_or(ErrorCode::INVALID_STATE)?;
            if p.upper.is_some() {
                return Err(ErrorCode::INVALID_STATE);
            }
            // Its root is a table like any other: within the budget too.
            if budget == 0 {
                return Err(ErrorCode::OUT_OF_MEMORY);
            }
            let upper = hw::slat::new_root(p.backend).map_err(|_| ErrorCode::OUT_OF_MEMORY)?;
            let (copied, tables) = hw::slat::copy(p.backend, p.root, upper, budget - 1);
            if copied.is_err() {
                // A view half made is no view: nothing stays, nothing is charged.
                let _ = hw::slat::free(p.backend, upper);
                return Err(ErrorCode::OUT_OF_MEMORY);
            }
            p.upper = Some(upper);
            // Its root may be a frame another view used: nothing cached
            // under it serves the new view.
            p.flush[1] = ALL_CPUS;
            k.charge_tables(owner, tables + 1);
            done()
        }
        Operation::PARTITION_DISABLE_VTL => {
            let partition = expect(cap, ObjectType::PARTITION, run_right())?;
            if mr[0] != 1 {
                return Err(ErrorCode::INVALID_ARGUMENT);
            }
            let in_use = k.vcpus.iter().flatten().any(|v| v.partition == Some(partition) && v.hw.has_vtl(1));
            let p = k.partitions[partition as usize].as_mut().ok_or(ErrorCode::INVALID_STATE)?;
            let Some(upper) = p.upper.filter(|_| !in_use) else { return Err(ErrorCode::INVALID_STATE) };
            hw::slat::lift_protections(p.backend, p.root);
            p.upper = None;
            // No CPU walks the view once its VPs are out; nor do they use
            // VTL 0's old rights.
            p.shoot_down(partition);
            let tables = hw::slat::free(p.backend, upper);
            k.credit_tables(ObjRef { kind: ObjectType::PARTITION, index: partition }, tables);
            done()
        }
        Operation::PARTITION_PROTECT => {
            let partition = expect(cap, ObjectType::PARTITION, run_right())?;
            let (gpa, pages) = (mr[0], mr[1]);
            let allowed = Rights::from_bits(u32::try_from(mr[2]).map_err(|_| ErrorCode::INVALID_ARGUMENT)?);
            let rwx = Rights::new().with_read(true).with_write(true).with_execute(true);
            if !rwx.contains(allowed) || (allowed.write() && !allowed.read()) {
                return Err(ErrorCode::INVALID_ARGUMENT);
            }
            let allowed = GuestRights { read: allowed.read(), write: allowed.write(), execute: allowed.execute() };
            let len = pages.checked_mul(PAGE_SIZE).ok_or(ErrorCode::INVALID_ARGUMENT)?;
            let owner = ObjRef { kind: ObjectType::PARTITION, index: partition };
            let (_, budget) = k.table_budget(owner);
            let p = k.partitions[partition as usize].as_mut().ok_or(ErrorCode::INVALID_STATE)?;
            if p.upper.is_none() {
                return Err(ErrorCode::INVALID_STATE);
            }
            let (changed, tables) = hw::slat::protect(p.backend, p.root, gpa, len, allowed, budget);
            if changed == Ok(true) {
                p.shoot_down(partition);
            }
            k.charge_tables(owner, tables);
            changed.map_err(|e| match e {
                kerncore::slat::GuestMapError::OutOfMemory => ErrorCode::OUT_OF_MEMORY,
                kerncore::slat::GuestMapError::NotMapped { .. } => ErrorCode::BAD_ADDRESS,
                _ => ErrorCode::INVALID_ARGUMENT,
            })?;
            done()
        }
        Operation::VP_ENABLE_VTL | Operation::VP_SWITCH_VTL => {
            let thread = ThreadId(expect(cap, ObjectType::VP, run_right())? as u16);
            if running(k, thread) {
                return Err(ErrorCode::INVALID_STATE);
            }
            let vtl = u8::try_from(mr[0]).map_err(|_| ErrorCode::INVALID_ARGUMENT)?;
            let v = k.threads[usize::from(thread.0)].vcpu.ok_or(ErrorCode::INVALID_STATE)?;
            let vcpu = k.vcpus[v as usize].as_mut().ok_or(ErrorCode::INVALID_STATE)?;
            let part = vcpu.partition.ok_or(ErrorCode::INVALID_STATE)?;
            let p = k.partitions[part as usize].as_ref().ok_or(ErrorCode::INVALID_STATE)?;
            if op == Operation::VP_SWITCH_VTL {
                if !vcpu.hw.has_vtl(vtl) {
                    return Err(ErrorCode::INVALID_STATE);
                }
                let halted = vtl != vcpu.hw.vtl() && core::mem::take(&mut vcpu.halted);
                vcpu.switch_vtl(vtl);
                // A VP waiting as after HLT runs on in the VTL switched to
                // (the VID halts it again with its reply if it wants).
                if halted && k.threads[usize::from(thread.0)].started && k.ipc.state(thread) == ThreadState::Suspended {
                    let _ = k.ipc.resume(thread);
                }
                return done();
            }
            if vtl != 1 {
                return Err(ErrorCode::INVALID_ARGUMENT);
            }
            let view = p.view(vtl).ok_or(ErrorCode::INVALID_STATE)?;
            if vcpu.hw.has_vtl(vtl) {
                return Err(ErrorCode::INVALID_STATE);
            }
            if !vcpu.hw.enable_vtl(vtl, view, p.tag) {
                return Err(ErrorCode::OUT_OF_MEMORY);
            }
            done()
        }
        Operation::PARTITION_SET_CORE_EXCLUSIVE => {
            let partition = expect(cap, ObjectType::PARTITION, control())?;
            let on = flag(mr[0])?;
            k.partitions[partition as usize].as_mut().ok_or(ErrorCode::INVALID_STATE)?.core_exclusive = on;
            done()
        }
        Operation::VP_CONFIGURE => {
            let thread = ThreadId(expect(cap, ObjectType::VP, control())? as u16);
            let (_, part) = k.caps.lookup(cspace, slot(mr[0]), ObjectType::PARTITION, control())?;
            let index = u32::try_from(mr[1]).map_err(|_| ErrorCode::INVALID_ARGUMENT)?;
            if k.threads[usize::from(thread.0)].started {
                return Err(ErrorCode::INVALID_STATE);
            }
            let p = k.partitions[part.object.index as usize].as_ref().ok_or(ErrorCode::INVALID_STATE)?;
            let (root, tag) = (p.root, p.tag);
            let v = k.threads[usize::from(thread.0)].vcpu.ok_or(ErrorCode::INVALID_STATE)?;
            let vcpu = k.vcpus[v as usize].as_mut().ok_or(ErrorCode::INVALID_STATE)?;
            vcpu.partition = Some(part.object.index);
            vcpu.index = index;
            vcpu.power_on(root, tag);
            done()
        }
        Operation::VP_RESET => {
            let thread = ThreadId(expect(cap, ObjectType::VP, run_right())? as u16);
            if k.threads[usize::from(thread.0)].started {
                return Err(ErrorCode::INVALID_STATE);
            }
            let v = k.threads[usize::from(thread.0)].vcpu.ok_or(ErrorCode::INVALID_STATE)?;
            let vcpu = k.vcpus[v as usize].as_mut().ok_or(ErrorCode::INVALID_STATE)?;
            let part = vcpu.partition.ok_or(ErrorCode::INVALID_STATE)?;
            let p = k.partitions[part as usize].as_ref().ok_or(ErrorCode::INVALID_STATE)?;
            let (root, tag) = (p.root, p.tag);
            // A VP its monitor stopped is not started but not at rest yet:
            // its report is queued at the monitor, with it, or answered
            // (the VP runnable until it stops itself). Power-on withdraws
            // the report, so none arrives about the VP once it runs again
            // (a VID that restarted and attached it anew). Only the
            // monitor's side (CONTROL: the partition manager) may withdraw
            // it: a VID, with RUN, would escape its exit time limit.
            if vcpu.report.is_some() && !cap.rights.contains(control()) {
                return Err(ErrorCode::INVALID_STATE);
            }
            (vcpu.awaiting, vcpu.report) = (None, None);
            vcpu.power_on(root, tag);
            let name = vcpu.hw.name();
            if !matches!(k.ipc.state(thread), ThreadState::Inactive | ThreadState::Suspended) {
                k.ipc.suspend(thread).map_err(|_| ErrorCode::INVALID_STATE)?;
                ipi::wait_out(ipi::Outside::Guest(name));
            }
            done()
        }
        Operation::VP_SET_HANDLER => {
            let thread = ThreadId(expect(cap, ObjectType::VP, run_right())? as u16);
            let (_, ep) = k.caps.lookup(cspace, slot(mr[0]), ObjectType::ENDPOINT, Rights::new().with_send(true))?;
            let context = sched_context(k, cspace, thread, mr[1])?;
            if k.threads[usize::from(thread.0)].started {
                return Err(ErrorCode::INVALID_STATE);
            }
            bind_sched(k, thread, context)?;
            k.threads[usize::from(thread.0)].fault_handler =
                Some((kerncore::ipc::EndpointId(ep.object.index), ep.badge));
            done()
        }
        Operation::VP_SET_REGISTERS | Operation::VP_GET_REGISTERS => {
            let thread = ThreadId(expect(cap, ObjectType::VP, run_right())? as u16);
            let running = running(k, thread);
            let count = usize::try_from(mr[0]).map_err(|_| ErrorCode::INVALID_ARGUMENT)?;
            let per = if op == Operation::VP_SET_REGISTERS { 3 } else { 1 };
            if count > MAX_VP_REGISTERS || usize::from(info.length()) < 1 + per * count {
                return Err(ErrorCode::INVALID_ARGUMENT);
            }
            let mut args = [0u64; 1 + 3 * MAX_VP_REGISTERS];
            for (i, a) in args.iter_mut().enumerate().take(1 + per * count) {
                *a = message_word(k, t, &mr, i)?;
            }
            // A running VP's state is the CPU's (perhaps another CPU's, in
            // guest mode): only what ring 0 keeps can be reached, an
            // interruption posted or read back and the run time read (the
            // kernel kicks the VP's CPU for a posted one).
            let kept = |name: u64| {
                name == u64::from(HvRegisterName::PENDING_INTERRUPTION.0)
                    || (op == Operation::VP_GET_REGISTERS && name == u64::from(HvRegisterName::VP_RUNTIME.0))
            };
            let only_kept = if op == Operation::VP_SET_REGISTERS {
                args[1..1 + 3 * count].chunks_exact(3).all(|t| kept(t[0]))
            } else {
                args[1..1 + count].iter().all(|&name| kept(name))
            };
            if running && !only_kept {
                return Err(ErrorCode::INVALID_STATE);
            }
            let v = k.threads[usize::from(thread.0)].vcpu.ok_or(ErrorCode::INVALID_STATE)?;
            let vcpu = k.vcpus[v as usize].as_mut().ok_or(ErrorCode::INVALID_STATE)?;
            if vcpu.partition.is_none() {
                return Err(ErrorCode::INVALID_STATE);
            }
            if op == Operation::VP_SET_REGISTERS {
                set_registers(vcpu, &args[..1 + 3 * count])?;
                if running {
                    // In guest mode on another CPU: out, so that the next
                    // entry delivers the interruption.
                    ipi::kick_out(ipi::Outside::Guest(vcpu.hw.name()));
                }
                wake_if_halted(k, thread);
                return done();
            }
            let mut values = [0u64; 2 * MAX_VP_REGISTERS];
            for i in 0..count {
                let name = HvRegisterName(u32::try_from(args[1 + i]).map_err(|_| ErrorCode::INVALID_ARGUMENT)?);
                let (low, high) = vcpu.get(name).ok_or(ErrorCode::INVALID_ARGUMENT)?;
                values[2 * i] = low;
                values[2 * i + 1] = high;
            }
            super::transfer::reply_words(k, t, &values[..2 * count])
        }
        Operation::VP_SET_MONITOR => {
            let thread = ThreadId(expect(cap, ObjectType::VP, control())? as u16);
            let (_, ep) = k.caps.lookup(cspace, slot(mr[0]), ObjectType::ENDPOINT, Rights::new().with_send(true))?;
            let v = k.threads[usize::from(thread.0)].vcpu.ok_or(ErrorCode::INVALID_STATE)?;
            let vcpu = k.vcpus[v as usize].as_mut().ok_or(ErrorCode::INVALID_STATE)?;
            vcpu.monitor = Some((EndpointId(ep.object.index), ep.badge));
            vcpu.exit_timeout = mr[1];
            done()
        }
        Operation::VP_SET_EXIT_STATE => {
            let thread = ThreadId(expect(cap, ObjectType::VP, run_right())? as u16);
            let mask = ExitState::from_wire(mr[0]).ok_or(ErrorCode::INVALID_ARGUMENT)?;
            let v = k.threads[usize::from(thread.0)].vcpu.ok_or(ErrorCode::INVALID_STATE)?;
            k.vcpus[v as usize].as_mut().ok_or(ErrorCode::INVALID_STATE)?.exit_state = mask;
            done()
        }
        Operation::VP_SUSPEND => {
            let thread = ThreadId(expect(cap, ObjectType::VP, run_right())? as u16);
            if !k.threads[usize::from(thread.0)].started {
                return Err(ErrorCode::INVALID_STATE);
            }
            k.ipc.suspend(thread).map_err(|_| ErrorCode::INVALID_STATE)?;
            k.threads[usize::from(thread.0)].started = false;
            if let Some(vcpu) = k.vcpu_of(thread).and_then(|v| k.vcpus[v as usize].as_mut()) {
                (vcpu.halted, vcpu.awaiting, vcpu.report) = (false, None, None);
                // Suspended means out of guest mode once this returns.
                ipi::wait_out(ipi::Outside::Guest(vcpu.hw.name()));
            }
            done()
        }
        Operation::VP_START => {
            let thread = ThreadId(expect(cap, ObjectType::VP, run_right())? as u16);
            let tcb = &mut k.threads[usize::from(thread.0)];
            let configured = tcb.vcpu.and_then(|v| k.vcpus[v as usize].as_ref()).is_some_and(|v| v.partition.is_some());
            if !tcb.alive || tcb.started || !configured {
                return Err(ErrorCode::INVALID_STATE);
            }
            tcb.started = true;
            k.ipc.resume(thread).map_err(|_| ErrorCode::INVALID_STATE)?;
            done()
        }
        _ => Err(ErrorCode::INVALID_OPERATION),
    }
}

/// A halted VP with an interruption now pending runs again.
fn wake_if_halted(k: &mut Kernel, t: ThreadId) {
    let Some(vcpu) = k.vcpu_of(t).and_then(|v| k.vcpus[v as usize].as_mut()) else { return };
    let started = k.threads[usize::from(t.0)].started;
    if vcpu.halted && vcpu.pending.is_some() && started && k.ipc.state(t) == ThreadState::Suspended {
        vcpu.halted = false;
        let _ = k.ipc.resume(t);
    }
}

/// Stops VP thread `t`, whose handler is gone or too slow, and reports it
/// to its monitor (or, without one, only to the kernel log).
fn stop_unanswered(k: &mut Kernel, t: ThreadId, reason: VpStopReason) {
    let Some(v) = k.vcpu_of(t) else { return };
    let Some(vcpu) = k.vcpus[v as usize].as_mut() else { return };
    let Some(exit) = vcpu.awaiting.take() else { return };
    let (index, partition) = (vcpu.index, vcpu.partition.unwrap_or(u32::MAX));
    // A monitor logs the report itself; only an unwatched VP's stop is the
    // kernel's to log (its line would otherwise land in the middle of a
    // service's line on the shared console).
    if vcpu.monitor.is_none() {
        let why = if reason == VpStopReason::HANDLER_GONE {
            "its exit handler is gone"
        } else {
            "its exit handler did not answer"
        };
        crate::vm_println!(
            "vm: VP {index} of partition {partition} stopped at rip {:#x} (intercept {:#x}): {why}",
            exit.rip,
            exit.message_type
        );
    }
    let report =
        VpStopReport { reason, vp_index: u64::from(index), message_type: u64::from(exit.message_type), rip: exit.rip };
    let monitor = vcpu.monitor;
    vcpu.report = monitor.map(|_| report.to_words());
    let _ = k.ipc.suspend(t);
    k.threads[usize::from(t.0)].started = false;
    let Some(monitor) = monitor else { return };
    let info = MessageInfo::new().with_label(labels::VP_STOPPED).with_length(VpStopReport::WORDS as u8);
    let Kernel { ipc, threads, tasks, caps, vcpus, .. } = k;
    let _ = ipc.resume(t);
    let sent = ipc.fault_with(t, Some(monitor), info, &mut super::transfer::Xfer { threads, tasks, caps, vcpus });
    if sent.is_err() {
        let _ = ipc.suspend(t);
    }
}

impl Kernel {
    /// Some VP's exit is with a handler whose time is limited: a tick may
    /// yet stop it.
    pub fn vp_exit_timing(&self) -> bool {
        self.vcpus.iter().flatten().any(|v| v.exit_timeout > 0 && v.awaiting.is_some() && v.report.is_none())
    }

    /// Stops and reports VPs left without an answer: their handler went
    /// away, or has had an exit longer than the monitor allows. Every
    /// tick: nothing to do (no call) while no exit is out.
    #[inline]
    pub fn watch_vps(&mut self) {
        if self.awaiting_vps != 0 {
            self.watch_awaiting_vps();
        }
    }

    #[inline(never)]
    fn watch_awaiting_vps(&mut self) {
        let now = self.ticks_seen;
        let mut awaiting = self.awaiting_vps;
        while awaiting != 0 {
            let v = awaiting.trailing_zeros() as usize;
            awaiting &= awaiting - 1;
            let Some(vcpu) = self.vcpus[v].as_ref().filter(|vcpu| vcpu.awaiting.is_some()) else {
                self.awaiting_vps &= !(1 << v);
                continue;
            };
            let Some(exit) = vcpu.awaiting.filter(|_| vcpu.report.is_none()) else { continue };
            let timeout = vcpu.exit_timeout;
            let Some(t) = self.threads.iter().position(|th| th.alive && th.vcpu == Some(v as u32)) else { continue };
            let t = ThreadId(t as u16);
            let reason = match self.ipc.state(t) {
                ThreadState::Faulted => VpStopReason::HANDLER_GONE,
                ThreadState::BlockedSend { .. } | ThreadState::BlockedReply { .. }
                    if timeout > 0 && now.saturating_sub(exit.since) >= timeout =>
                {
                    VpStopReason::HANDLER_TIMED_OUT
                }
                _ => continue,
            };
            stop_unanswered(self, t, reason);
        }
    }
}

/// A machine check intercepted while VP `v` ran: the host decides
/// (`arch::mce`). True if it stops the VP's partition for good, whose VID
/// then hears of it as an unrecoverable exception; false if the guest may
/// go on (a corrected error). An error the host cannot survive halts the
/// machine inside `arch::mce`.
fn machine_check(k: &mut Kernel, v: u32) -> bool {
    let Some(p) = k.vcpus[v as usize].as_ref().and_then(|vcpu| vcpu.partition) else { return false };
    if crate::arch::mce::on_guest_exit(p) != kerncore::mce::Verdict::StopPartition {
        return false;
    }
    if let Some(partition) = k.partitions[p as usize].as_mut() {
        partition.machine_check = true;
    }
    true
}

/// The bits of the core-exclusive partitions, by index.
fn exclusive_partitions(partitions: &[Option<Partition>]) -> u32 {
    partitions
        .iter()
        .enumerate()
        .filter(|(_, p)| p.as_ref().is_some_and(|p| p.core_exclusive))
        .fold(0, |mask, (i, _)| mask | (1 << i))
}

/// Runs VP thread `t` until it exits to its handler or the scheduler picks
/// another thread. The kernel lock is dropped while the guest runs.
pub fn run(kg: &mut KernelGuard, t: ThreadId) {
    use kerncore::coresched::Decision;
    let me = crate::arch::percpu::index();
    let Some(v) = kg.vcpu_of(t) else { return };
    loop {
        let k: &mut Kernel = kg;
        let Some(vcpu) = k.vcpus[v as usize].as_mut() else { return };
        if vcpu.stop {
            vcpu.stop = false;
            report_host_exits(vcpu);
            let _ = k.ipc.suspend(t);
            k.threads[usize::from(t.0)].started = false;
            return;
        }
        if vcpu.halted {
            if vcpu.pending.is_none() {
                let _ = k.ipc.suspend(t);
                return;
            }
            vcpu.halted = false;
        }
        let Some(partition) = vcpu.partition.and_then(|p| k.partitions[p as usize].as_mut()) else {
            let _ = k.ipc.suspend(t);
            return;
        };
        if partition.machine_check {
            let _ = k.ipc.suspend(t);
            k.threads[usize::from(t.0)].started = false;
            return;
        }
        if let Some(p) = vcpu.partition {
            let exclusive = || exclusive_partitions(&k.partitions);
            if ipi::core_entry(p, exclusive, k.ticks_seen) != Decision::Enter {
                // A sibling runs a partition this one may not share the
                // core with: let go of the lock a moment (the sibling comes
                // back through it) and let the scheduler choose again.
                kg.unlock();
                ipi::serve();
                for _ in 0..64 {
                    core::hint::spin_loop();
                }
                crate::arch::cpu::take_pending_interrupts();
                kg.relock();
                kg.catch_up_ticks();
                return;
            }
        }
        let Some(vcpu) = k.vcpus[v as usize].as_mut() else { return };
        let Some(partition) = vcpu.partition.and_then(|p| k.partitions[p as usize].as_mut()) else { return };
        let flush_partition = partition.take_flush(me, vcpu.hw.vtl());
        let stale = core::mem::take(&mut vcpu.tlb_stale);
        let flush_vp = (core::mem::replace(&mut vcpu.epoch, partition.epoch) != partition.epoch) | stale;
        if let Some(p) = vcpu.partition {
            let vtl = vcpu.hw.vtl();
            crate::arch::speculation::enter(kerncore::speculation::Domain::Partition { index: p, vtl });
        }
        let flush = vcpu.hw.prepare(flush_partition, flush_vp);
        if let Some(event) = vcpu.hw.take_interrupted() {
            // Cut short by an exit that was dropped (below).
            vcpu.reinject = Some(event);
        }
        // An offer taken before an exit that was dropped.
        vcpu.settle_offer();
        vcpu.load_events();
        crate::arch::nmi::test_point(crate::arch::nmi::TestPoint::GuestEntry);
        let hardware: *mut VpHardware = &mut vcpu.hw;
        let name = vcpu.hw.name();
        let (life, vtl_entered) = (vcpu.life, vcpu.hw.vtl());
        let traced = (vcpu.partition, vcpu.index);
        if let Some(p) = vcpu.partition {
            ipi::entering_vp(p, vcpu.index);
        }
        ipi::leaving(ipi::Outside::Guest(name), vcpu.partition);
        kg.arm_timer();
        kg.unlock();
        let entered_at = crate::arch::cpu::timestamp();
        crate::trace::vm_entry(entered_at, v, t, traced.0, traced.1);
        let exit = hw::run_unlocked(hardware, flush);
        let exited_at = crate::arch::cpu::timestamp();
        ipi::back();
        crate::arch::cpu::take_pending_interrupts();
        kg.relock();
        let k: &mut Kernel = kg;
        // Another CPU may have stopped, suspended, moved, reset or destroyed
        // the VP (and made another in its slot) while it ran: then its exit is
        // dropped, and the guest exits again at the same instruction when
        // it next runs (an event it cut short waits in its hardware state:
        // `take_interrupted`; a reflected exception is kept, below). Only a machine check is
        // the host's business whatever became of the VP.
        // A VTL switch meanwhile parked the context that exited: its exit
        // is dropped too.
        let same = k.vcpus[v as usize]
            .as_ref()
            .is_some_and(|vcpu| vcpu.hw.name() == name && vcpu.life == life && vcpu.hw.vtl() == vtl_entered);
        let corrected = matches!(exit.reason, ExitReason::MachineCheck) && same && !machine_check(k, v);
        // The guest ran until this exit whatever became of its thread
        // meanwhile: its runtime (HV_X64_MSR_VP_RUNTIME) counts a dropped
        // exit's run too (a VP preempted at the end of its slice exits
        // here, and lost up to that run of each turn).
        let current = k.ipc.current(me) == Some(t);
        if let Some(vcpu) = k.vcpus[v as usize].as_mut().filter(|_| same) {
            vcpu.runtime_tsc = vcpu.runtime_tsc.wrapping_add(exited_at.wrapping_sub(entered_at));
            if crate::trace::on() {
                crate::trace::vm_exit(exited_at, v, t, vcpu, &exit);
            }
            // A reflected exception does not come again at the same
            // instruction when it is a trap (a single step or a data
            // breakpoint completed it, and the backend already set DR6): a
            // dropped exit keeps it for the VP's next entry.
            if let (false, ExitReason::Exception(_)) = (current, exit.reason) {
                ring0::handle(vcpu, &exit);
            }
        }
        if !same || !current {
            crate::trace::vm_leave(v);
            return;
        }
        let Some(vcpu) = k.vcpus[v as usize].as_mut() else { return };
        if let Some(event) = vcpu.hw.take_interrupted() {
            vcpu.reinject = Some(event);
        }
        // Still this CPU's VP: the exit's header shows what is pending.
        vcpu.settle_offer();
        k.catch_up_ticks();
        k.deliver_interrupts();
        let Some(vcpu) = k.vcpus[v as usize].as_mut() else { return };
        let answers = vcpu.partition.and_then(|p| {
            let p = p as usize;
            Some((k.floating_ports.get(p)?, k.latched_ports.get(p)?, k.posted_writes.get_mut(p)?))
        });
        // A host interrupt or window (the common ring-0 exit) is `classify`'s
        // `Host` without its look at the exit.
        let outcome = if corrected
            || matches!(exit.reason, ExitReason::HostInterrupt | ExitReason::InterruptWindow)
            || answers.is_some_and(|(floating, latched, posted)| ring0::port(vcpu, &exit, floating, latched, posted))
        {
            Outcome::Host
        } else {
            classify(vcpu, exit)
        };
        match outcome {
            Outcome::Host => {
                if k.ipc.schedule(me) != Some(t) {
                    crate::trace::vm_leave(v);
                    return;
                }
                // Back into the same guest: time ring 0's part of the exit.
                if let Some(vcpu) = k.vcpus[v as usize].as_mut() {
                    let spent = crate::arch::cpu::timestamp().wrapping_sub(exited_at);
                    let s = &mut vcpu.host_exits;
                    s.min = if s.count == 0 { spent } else { s.min.min(spent) };
                    s.count += 1;
                    s.total += spent;
                }
            }
            Outcome::Forward(mut message) => {
                let Some(vcpu) = k.vcpus[v as usize].as_mut() else { return };
                // The VID drains posted writes before it handles the exit.
                let posted = vcpu.partition.and_then(|p| k.posted_writes.get(p as usize));
                if posted.is_some_and(|w| !w.pending().is_empty()) {
                    message.header.message_flags.set_posted_writes(true);
                }
                vcpu.exit_len = vcpu.message_with_state(&message);
                let message_type = message.header.message_type.0;
                vcpu.awaiting = Some(Awaiting { since: k.ticks_seen, message_type, rip: exit.rip });
                k.awaiting_vps |= 1 << v;
                crate::trace::vm_forward(v, t);
                let handler = k.threads[usize::from(t.0)].fault_handler;
                let info = MessageInfo::new().with_label(labels::VM_EXIT).with_length(vcpu.exit_len as u8);
                if handler.is_some_and(|h| super::fastpath::exit(k, t, h, info, me)) {
                    return;
                }
                let Kernel { ipc, threads, tasks, caps, vcpus, .. } = k;
                let sent = ipc.fault_with(t, handler, info, &mut super::transfer::Xfer { threads, tasks, caps, vcpus });
                if handler.is_none() || sent.is_err() {
                    stop_unanswered(k, t, VpStopReason::HANDLER_GONE);
                }
                return;
            }
        }
    }
}

#[allow(dead_code)]
fn _slot_type_check(_: CapSlot) {}
