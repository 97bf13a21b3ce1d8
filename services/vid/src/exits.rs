//! Handling a virtual processor's intercepts: port I/O (through the device
//! bus, [`crate::bus`], and string I/O), CPUID, MSRs, HLT, MMIO and read-only pages
//! (fetching, decoding and emulating the instruction), and what the kernel
//! is told to do next. Pure, so it is tested on the host over a fake
//! [`Guest`].
//!
//! The VID task calls [`Vmm::handle`] for each `VM_EXIT` with a [`Guest`]
//! over the partition's RAM and `VP_GET_REGISTERS`, logs the [`Event`]s
//! (console lines through [`GuestConsole`]), and replies: `VP_RESUME` with
//! the register updates of [`Action::Resume`] (count, then (name, low, 0)
//! triples), or `VP_STOP` on [`Action::Stop`] (logging the [`Stop`], whose
//! `Display` is the text after `<partition>: `).

use core::fmt;

use crate::acpi::{Pm1, PmTimer};
use crate::bus::{
    DebugExit, MmioDevice, MmioId, PortAccess, PortBus, PortDevice, PortEffect, PortId, Unclaimed, mmio_route,
};
use crate::cpuid::{Cpuid, Topology, VpState, cpuid_for_vp, reads_vp_state};
use crate::guest::{Fault, Guest, cpu_mode, fetch, gpr_name, rflags};
use crate::irq::{Config as IrqConfig, Effects, Interrupt, Interruptibility, Interrupts};
use crate::messaging::{Connections, Delivered, Delivery, NoConnections};
use crate::mmio::TestDevice;
use crate::msr::Msrs;
use crate::portio::{Element, string_io};
use crate::profile::EnlightenmentProfile;
use crate::reset_ports::{Kbc, ResetControl};
use crate::rtc::Rtc;
use crate::synthetic::{HostClock, SyntheticPartition, Vendor};
use crate::testdev::TestDev;
use crate::uart::{COM1_IRQ, Uart};
use crate::vsm::PartitionVsm;
use crate::vsm::protect::Need;
use abi::limits::MAX_VPS_PER_PARTITION;
use core::ops::ControlFlow;
use tlfs::{
    HvInterceptAccessType, HvMessage, HvMessageBody, HvMessageType, HvRegisterName, HvX64IoPortInterceptMessage,
    HvX64MemoryInterceptMessage,
};
use x86decode::{Access, DecodeError, Gpr, Operand, Reg, decode};

pub use crate::portio::TEST_EXIT;
pub use crate::uart::{UART_DATA, UART_LINE_STATUS};

/// Longest guest console line kept before it is printed anyway.
pub const LINE_MAX: usize = 120;
/// Most register updates one reply carries.
pub const MAX_UPDATES: usize = 8;

/// Most 128-bit register updates one reply carries (XMM fast-call output).
pub const MAX_WIDE_UPDATES: usize = 6;

/// Register updates for the kernel to apply before the VP resumes.
pub type Updates = heapless::Vec<(HvRegisterName, u64), MAX_UPDATES>;

/// What the VID does after an intercept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Resume the VP with these register updates (among them, perhaps, a
    /// pending interruption to deliver).
    Resume(Updates),
    /// Apply the updates, then let the VP wait until an interruption is
    /// pending for it (HLT with interrupts enabled, or GUEST_IDLE): the
    /// reply is `VP_HALT`, and the VID posts the interruption later.
    Halt(Updates),
    /// Leave the VP stopped; the guest ended.
    Stop(Stop),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The guest wrote `value` to the test-exit port: status `(value << 1) | 1`.
    TestExit { value: u32 },
    /// The guest halted with interrupts disabled: nothing can wake it.
    Halted { rip: u64 },
    /// Triple fault or shutdown (`message_type` is
    /// `UNRECOVERABLE_EXCEPTION`), or an intercept the VID cannot handle.
    Failed { message_type: u32, rip: u64 },
    /// The guest reset the machine (`by`): the partition restarts or ends
    /// as its manifest's `on_reset` says ([`crate::serve`]).
    Reset { rip: u64, by: ResetSource },
    /// The guest powered itself off (ACPI S5 through PM1a_CNT).
    PowerOff,
}

/// What reset the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetSource {
    /// A write of HV_X64_MSR_RESET (TLFS 2.4.4 "reset enlightenment").
    HvResetMsr,
    /// The FADT's RESET_REG (ACPI 6.5 4.8.3.6).
    AcpiResetRegister,
    /// The reset control register at port 0xCF9.
    ResetControl,
    /// The 8042's reset line (port 0x64, command 0xFE).
    KeyboardController,
    /// A triple fault or shutdown (SDM 3A 6.15 "Interrupt 8": a fault
    /// while delivering a double fault shuts the processor down; the PC's
    /// chipset turns the shutdown cycle into a reset).
    TripleFault,
    /// INIT sent to the boot processor.
    InitBsp,
    /// Not the guest's doing: the VID that ran the partition died, and
    /// its new instance takes the partition back without its devices'
    /// state ([`crate::serve::after_vid_restart`]).
    VidRestart,
}

impl fmt::Display for ResetSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResetSource::HvResetMsr => "HV_X64_MSR_RESET",
            ResetSource::AcpiResetRegister => "the ACPI reset register",
            ResetSource::ResetControl => "port 0xCF9",
            ResetSource::KeyboardController => "the keyboard controller",
            ResetSource::TripleFault => "a triple fault",
            ResetSource::InitBsp => "INIT at the boot processor",
            ResetSource::VidRestart => "VID restart",
        })
    }
}

impl Stop {
    /// What reset the machine, if this end is a reset: a reset request, or
    /// a triple fault (the kernel's unrecoverable-exception exit).
    pub fn reset_source(&self) -> Option<ResetSource> {
        match *self {
            Stop::Reset { by, .. } => Some(by),
            Stop::Failed { message_type, .. } if message_type == HvMessageType::UNRECOVERABLE_EXCEPTION.0 => {
                Some(ResetSource::TripleFault)
            }
            _ => None,
        }
    }

    /// The run's status for a test exit: `(value << 1) | 1`.
    pub const fn status(value: u32) -> u64 {
        ((value as u64) << 1) | 1
    }
}

/// The log line for a stopped guest, after `<partition>: `.
impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Stop::TestExit { value } => write!(f, "guest reported status {}", Stop::status(value)),
            Stop::Halted { rip } => write!(f, "guest halted with interrupts disabled at rip {rip:#x}"),
            Stop::Failed { message_type, rip } if message_type == HvMessageType::UNRECOVERABLE_EXCEPTION.0 => {
                write!(f, "guest stopped (triple fault or shutdown) at rip {rip:#x}")
            }
            Stop::Failed { message_type, rip } => {
                write!(f, "guest stopped: intercept {message_type:#x} at rip {rip:#x} is not handled")
            }
            Stop::Reset { rip, by } => write!(f, "guest reset by {by} at rip {rip:#x}; the partition ends"),
            Stop::PowerOff => write!(f, "guest powered off"),
        }
    }
}

/// Why an MMIO or read-only-page access could not be emulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unemulated {
    /// The instruction bytes at RIP could not be read.
    Fetch(Fault),
    Decode(DecodeError),
    /// A decoded form the VID does not emulate (ALU, XCHG, string ops).
    Form,
    /// A register the emulation needs could not be read.
    Register(HvRegisterName),
}

/// Something worth a log line. `Display` gives the text after `<partition>: `
/// (empty for console bytes, which the caller assembles into lines).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A byte the guest wrote to its console.
    Console(u8),
    /// The first access to an MSR the VID does not know (#GP, or read 0 /
    /// ignored where the manifest relaxes it), or the first write to
    /// IA32_TSC (ignored).
    UnknownMsr { msr: u32, write: Option<u64>, rip: u64, result: crate::msr::MsrResult },
    /// A write to a read-only page, dropped.
    ReadOnlyWrite { gpa: u64, rip: u64 },
    /// An MMIO access the VID could not emulate (the VP is stopped).
    Unemulated { gpa: u64, rip: u64, why: Unemulated },
    /// The guest reported a crash through CRASH_CTL: CRASH_P0..P4 and the
    /// start of its message, if it gave one (bytes, length).
    GuestCrash { p: [u64; 5], message: Option<([u8; 96], usize)> },
    /// The `hyperv-testdev` ignored a request ([`crate::testdev`]).
    TestDevRefused { request: u32, why: &'static str },
    /// VTL 0 accessed a page against VTL 1's protection (TLFS 15.9.2):
    /// the VP is stopped, as secure intercepts (15.13) are not built.
    VtlViolation { gpa: u64, rip: u64 },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Event::Console(_) => Ok(()),
            Event::UnknownMsr { msr, write, rip, result } => {
                let what = match result {
                    crate::msr::MsrResult::Fault => "raises #GP",
                    crate::msr::MsrResult::Read(_) => "reads 0",
                    _ => "is ignored",
                };
                match write {
                    Some(v) => write!(f, "wrmsr of {v:#x} to MSR {msr:#x} at rip {rip:#x} {what}"),
                    None => write!(f, "rdmsr of unknown MSR {msr:#x} at rip {rip:#x} {what}"),
                }
            }
            Event::VtlViolation { gpa, rip } => write!(
                f,
                "VTL 0 violated a VTL 1 protection at GPA {gpa:#x}, rip {rip:#x}; secure intercepts are not built: stopped"
            ),
            Event::ReadOnlyWrite { gpa, rip } => write!(f, "write to read-only GPA {gpa:#x} at rip {rip:#x} dropped"),
            Event::TestDevRefused { request, why } => {
                write!(f, "hyperv-testdev request {request:#010x} ignored: {why}")
            }
            Event::Unemulated { gpa, rip, why } => {
                write!(f, "access to GPA {gpa:#x} at rip {rip:#x} cannot be emulated: {why:?}")
            }
            Event::GuestCrash { p, message } => {
                write!(
                    f,
                    "guest crash reported: P0 {:#x} P1 {:#x} P2 {:#x} P3 {:#x} P4 {:#x}",
                    p[0], p[1], p[2], p[3], p[4]
                )?;
                if let Some((text, n)) = message {
                    let text = core::str::from_utf8(&text[..n.min(text.len())]).unwrap_or("(not UTF-8)");
                    write!(f, ": {}", text.trim_end_matches('\0'))?;
                }
                Ok(())
            }
        }
    }
}

/// The guest's console: assembles bytes into lines.
#[derive(Default)]
pub struct GuestConsole {
    line: heapless::Vec<u8, LINE_MAX>,
}

impl GuestConsole {
    /// The unfinished line, if any, taken as it is: a prompt waits for
    /// input without a newline, so the caller shows it after a pause.
    pub fn take_partial(&mut self) -> Option<heapless::Vec<u8, LINE_MAX>> {
        (!self.line.is_empty()).then(|| core::mem::take(&mut self.line))
    }

    /// Whether a line was begun and not finished.
    pub fn has_partial(&self) -> bool {
        !self.line.is_empty()
    }
}

impl GuestConsole {
    /// Takes one byte; returns a finished line when there is one.
    pub fn byte(&mut self, b: u8) -> Option<heapless::Vec<u8, LINE_MAX>> {
        match b {
            b'\n' => Some(core::mem::take(&mut self.line)),
            b'\r' => None,
            _ => {
                let shown = if b == b'\t' || (0x20..0x7f).contains(&b) { b } else { b'?' };
                if self.line.push(shown).is_err() {
                    let full = core::mem::take(&mut self.line);
                    let _ = self.line.push(shown);
                    return Some(full);
                }
                None
            }
        }
    }
}

/// Builds an [`Updates`]; more than [`MAX_UPDATES`] is a bug (debug-asserted).
pub(crate) fn updates(list: &[(HvRegisterName, u64)]) -> Updates {
    let mut u = Updates::new();
    for &x in list {
        let pushed = u.push(x);
        debug_assert!(pushed.is_ok(), "too many register updates");
    }
    u
}

fn resume(list: &[(HvRegisterName, u64)]) -> Action {
    Action::Resume(updates(list))
}

/// An exception for the VP, as the value of its pending-interruption register.
fn exception(vector: u8, error_code: Option<u32>) -> u64 {
    let kind = tlfs::HvX64PendingInterruptionType::EXCEPTION;
    tlfs::HvX64PendingInterruptionRegister::pending(kind, vector, error_code).into_bits()
}

/// #GP(0) at the faulting instruction (RIP does not move).
fn gp() -> Action {
    resume(&[(HvRegisterName::PENDING_INTERRUPTION, exception(13, Some(0)))])
}

/// #UD at the instruction.
fn ud() -> Action {
    resume(&[(HvRegisterName::PENDING_INTERRUPTION, exception(6, None))])
}

/// A guest with no memory and no registers: what [`handle`] uses.
pub struct NoGuest;

impl Guest for NoGuest {
    fn read(&mut self, _gpa: u64, _buf: &mut [u8]) -> bool {
        false
    }
    fn write(&mut self, _gpa: u64, _data: &[u8]) -> bool {
        false
    }
    fn register(&mut self, _name: HvRegisterName) -> Option<(u64, u64)> {
        None
    }
}

/// What a partition's VMM is built from.
#[derive(Clone, Copy, Debug)]
pub struct VmmConfig {
    pub profile: EnlightenmentProfile,
    pub vendor: Vendor,
    pub clock: HostClock,
    /// VPs (1..=16).
    pub vps: u32,
    /// Threads per core its CPUID tells (1, or 2 for VP pairs the VID put
    /// on SMT siblings under the core scheduler: `vid::placement`).
    pub threads_per_core: u32,
    /// The TSC when the partition was created (reference time 0).
    pub created_tsc: u64,
    /// It has QEMU's `hyperv-testdev` ([`crate::testdev`]).
    pub testdev: bool,
    /// The time of day its RTC starts at, in seconds since 1970 (UTC).
    pub wall_clock: u64,
    /// The host's CPUID, which the partition's is derived from.
    pub host_cpuid: fn(u32, u32) -> [u32; 4],
    /// CPUID features the manifest hides from it.
    pub cpuid_mask: sysimage::CpuidMask,
    /// Unknown MSRs read 0 and ignore writes instead of raising #GP.
    pub ignore_unknown_msrs: bool,
}

impl Default for VmmConfig {
    fn default() -> VmmConfig {
        VmmConfig {
            profile: EnlightenmentProfile::NONE,
            vendor: Vendor::Amd,
            clock: HostClock { tsc_hz: 1_000_000_000, apic_hz: APIC_HZ },
            vps: 1,
            threads_per_core: 1,
            created_tsc: 0,
            testdev: false,
            wall_clock: DEFAULT_WALL_CLOCK,
            host_cpuid: crate::cpuid::sample::amd,
            cpuid_mask: sysimage::CpuidMask::NONE,
            ignore_unknown_msrs: false,
        }
    }
}

/// The RTC's time when the host has no clock to read: 2026-01-01 00:00:00 UTC.
pub const DEFAULT_WALL_CLOCK: u64 = 1_767_225_600;

/// The local APIC timer's input clock the VID gives every partition
/// (reported by HV_X64_MSR_APIC_FREQUENCY).
pub const APIC_HZ: u64 = 100_000_000;

/// The VMM state of one partition: the per-VP MSRs, the interrupt
/// controllers and timers, the TLFS synthetic MSRs, and the devices.
#[derive(Debug)]
pub struct Vmm {
    pub msrs: Msrs,
    pub device: TestDevice,
    /// The port windows of the partition's devices.
    pub ports: PortBus,
    /// QEMU's `hyperv-testdev`, if the manifest gives it.
    pub testdev: Option<TestDev>,
    pub irq: Interrupts,
    pub synthetic: SyntheticPartition,
    /// What handling did to VPs other than the one that exited (IPIs,
    /// timer expiries, INIT/SIPI): for the caller to act on.
    pub effects: Effects,
    /// A guest asked for a TLB flush (HvCallFlushVirtualAddress*).
    pub flush_tlb: bool,
    /// The kernel holds an interruption for the VP whose exit
    /// [`Vmm::handle`] is given next, though the exit's header may not
    /// show it: the reply posts none (it would replace that one).
    pub slot_taken: bool,
    /// 128-bit register updates (XMM fast-call output) for the reply, after
    /// the [`Updates`] of the action: (name, low, high).
    pub wide: heapless::Vec<(HvRegisterName, u64, u64), MAX_WIDE_UPDATES>,
    /// COM1, a 16550A, on IRQ 4.
    pub uart: Uart,
    /// The ACPI fixed-hardware PM1 registers (power off, reset) and the
    /// PM timer, which counts from the partition's creation.
    pub pm1: Pm1,
    /// The MC146818 RTC and CMOS RAM, on IRQ 8.
    pub rtc: Rtc,
    /// The 8042's reset line and the reset control register at 0xCF9.
    pub kbc: Kbc,
    pub reset_control: ResetControl,
    /// The levels last given to IRQ 4 and IRQ 8.
    uart_irq: bool,
    rtc_irq: bool,
    /// [`Rtc::rises`] when IRQ 8 was last followed.
    rtc_rises: u64,
    /// What the VMM was built from, for [`Vmm::reset`].
    config: VmmConfig,
    /// What the partition's VPs did, for the VID's report.
    pub stats: ExitStats,
    /// Its CPUID (base and extended leaves).
    pub cpuid: Cpuid,
    /// By VP: what its SINTs take, as last told to the broker (none at
    /// reset, as the broker assumes).
    reported_synic: [u32; abi::limits::MAX_VPS_PER_PARTITION],
    /// Bit v: VP v sleeps in the guest idle state (it read
    /// `HV_X64_MSR_GUEST_IDLE`), which any interrupt that arrives ends,
    /// masked or not (TLFS 7.5): [`Vmm::wakes_from_idle`].
    idle: u64,
    /// The VTLs and VSM registers (TLFS 15), used with VSM offered.
    pub vsm: PartitionVsm,
    /// The exit being handled switched its VP to a higher VTL: no
    /// interruption of the VTL left rides on the reply (which acts on the
    /// VTL entered).
    vtl_switched: bool,
}

impl Default for Vmm {
    fn default() -> Vmm {
        Vmm::new()
    }
}

impl Vmm {
    /// A partition with no enlightenments and one VP.
    pub fn new() -> Vmm {
        Vmm::with_config(VmmConfig::default())
    }

    pub fn with_config(c: VmmConfig) -> Vmm {
        let irq = Interrupts::new(IrqConfig { vps: c.vps, tsc_hz: c.clock.tsc_hz, apic_hz: c.clock.apic_hz });
        let topology = Topology { vps: c.vps.max(1), threads_per_core: c.threads_per_core.clamp(1, 2) };
        let cpuid = Cpuid::derive(c.host_cpuid, topology, c.cpuid_mask);
        Vmm {
            msrs: Msrs::new(c.ignore_unknown_msrs, cpuid.phys_bits()),
            device: TestDevice { scratch: 0 },
            ports: PortBus::with(|d| d != PortId::HvTestDev || c.testdev)
                .expect("the port table has no overlap (host-tested)"),
            testdev: c.testdev.then(|| TestDev::new(c.vps)),
            irq,
            synthetic: SyntheticPartition::new(c.profile, c.vendor, c.clock, c.created_tsc),
            effects: Effects::default(),
            flush_tlb: false,
            slot_taken: false,
            wide: heapless::Vec::new(),
            uart: Uart::new(),
            uart_irq: false,
            rtc_irq: false,
            rtc_rises: 0,
            pm1: Pm1::with_timer(PmTimer { tsc_hz: c.clock.tsc_hz, origin: c.created_tsc }),
            rtc: Rtc::new(c.wall_clock, c.created_tsc, c.clock.tsc_hz),
            kbc: Kbc::new(),
            reset_control: ResetControl::default(),
            config: c,
            stats: ExitStats::default(),
            idle: 0,
            cpuid,
            reported_synic: [0; abi::limits::MAX_VPS_PER_PARTITION],
            vsm: PartitionVsm::new(c.profile.privileges(), c.vps.clamp(1, MAX_VPS_PER_PARTITION as u32))
                .expect("a VP count in range"),
            vtl_switched: false,
        }
    }

    /// The partition's machine after a reset at TSC `now`: every device,
    /// interrupt controller, timer and synthetic register back to its
    /// power-on state (reference time starts again at 0), except the RTC,
    /// whose time and battery-backed RAM go on. The exit statistics go on
    /// too (the VID's report covers the partition's whole life).
    pub fn reset(&mut self, now: u64) {
        let mut rtc = self.rtc.clone();
        rtc.reset(now);
        let stats = core::mem::take(&mut self.stats);
        *self = Vmm::with_config(VmmConfig { created_tsc: now, ..self.config });
        self.rtc = rtc;
        self.stats = stats;
    }

    /// What the VMM was built from.
    pub const fn config(&self) -> &VmmConfig {
        &self.config
    }

    /// Host input for the guest's COM1; returns the bytes it took.
    pub fn push_input(&mut self, bytes: &[u8]) -> usize {
        let taken = self.uart.push_input(bytes);
        self.sync_uart_irq();
        taken
    }

    /// Follows the UART's interrupt output on IRQ 4.
    fn sync_uart_irq(&mut self) {
        let level = self.uart.irq_level();
        if level != self.uart_irq {
            self.uart_irq = level;
            let effects = self.irq.set_irq(COM1_IRQ, level);
            self.effects.merge(effects);
        }
    }

    /// Follows the RTC's interrupt output on IRQ 8. The PIC takes IRQ 8 on
    /// its rising edge; register C's read lowers it for the next one.
    fn sync_rtc_irq(&mut self) {
        let (level, rises) = (self.rtc.irq_level(), self.rtc.rises());
        let pulse = level && self.rtc_irq && rises != self.rtc_rises;
        if level != self.rtc_irq || pulse {
            if pulse {
                let effects = self.irq.set_irq(crate::rtc::RTC_IRQ, false);
                self.effects.merge(effects);
            }
            self.rtc_irq = level;
            let effects = self.irq.set_irq(crate::rtc::RTC_IRQ, level);
            self.effects.merge(effects);
        }
        self.rtc_rises = rises;
    }

    /// Fires the timers due at `now` (TSC ticks); their effects join
    /// [`Vmm::effects`]. The synthetic timers need the guest's RAM (their
    /// messages): [`Vmm::poll_with`].
    pub fn poll(&mut self, now: u64) {
        let effects = self.irq.poll(now);
        self.effects.merge(effects);
        self.rtc.poll(now);
        self.sync_rtc_irq();
    }

    /// [`Vmm::poll`], and the synthetic timers, whose messages go into
    /// `guest`'s SIM pages.
    pub fn poll_with(&mut self, now: u64, guest: &mut impl Guest) {
        self.poll(now);
        self.complete_lazy_eois(guest);
        self.synthetic.poll(now, guest);
        self.synic_interrupts();
    }

    /// Hands the vectors the VPs' SynICs raised to their local APICs (and
    /// kicks those VPs).
    pub(crate) fn synic_interrupts(&mut self) {
        for vp in 0..self.irq.vps() {
            if !self.synthetic.has_raised(vp) {
                continue;
            }
            let raised = self.synthetic.take_raised(vp);
            if let Some(lapic) = self.irq.lapic_mut(vp) {
                for vector in raised.iter() {
                    lapic.accept(vector, false);
                }
                self.effects.kick.insert(vp);
            }
        }
    }

    /// Puts a delivery the broker handed over into its VP's SynIC, at TSC
    /// `now`; the SINT's vector goes to the VP's local APIC (which
    /// [`Vmm::effects`] kicks).
    pub fn deliver(&mut self, delivery: &Delivery, guest: &mut impl Guest) -> Delivered {
        let done = self.synthetic.deliver(delivery, guest);
        if done == Delivered::Dropped {
            self.stats.dropped_deliveries += 1;
        }
        self.synic_interrupts();
        done
    }

    /// VP `vp`'s local APIC learns which SINT vectors are auto-EOI.
    pub(crate) fn sync_auto_eoi(&mut self, vp: u32) {
        let vectors = self.synthetic.synic(vp).map(|s| s.auto_eoi_vectors()).unwrap_or_default();
        if let Some(lapic) = self.irq.lapic_mut(vp) {
            lapic.set_auto_eoi(vectors);
        }
    }

    /// The TSC at which [`Vmm::poll_with`] next has work: the interrupt
    /// controllers' timers and the synthetic timers.
    pub fn next_deadline(&self) -> Option<u64> {
        let earlier = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        earlier(earlier(self.irq.next_deadline(), self.synthetic.next_deadline()), self.rtc.next_deadline())
    }

    /// The interruption to post to `vp` now, acknowledged at its
    /// controller, as a pending-interruption register value. The kernel
    /// holds it until the guest can take it (interrupt window), so RFLAGS.IF
    /// is not asked here.
    pub fn interruption_for(&mut self, vp: u32) -> Option<u64> {
        self.next_interruption(vp).map(|(value, _)| value)
    }

    /// VP `vp` sleeps in the guest idle state and an interrupt has
    /// arrived for it, one its APIC cannot deliver yet (a masked vector, or
    /// one below the priority in service) included: the caller wakes it
    /// without an injection (the interrupt stays requested) and calls
    /// [`Vmm::woke`].
    pub fn wakes_from_idle(&self, vp: u32) -> bool {
        self.idle_bit(vp) & self.idle != 0 && self.interrupt_arrived(vp)
    }

    /// VP `vp` left the guest idle state (woken, or it exited).
    pub fn woke(&mut self, vp: u32) {
        self.idle &= !self.idle_bit(vp);
    }

    /// VP `vp` enters the guest idle state unless an interrupt has
    /// arrived for it already: true if it sleeps.
    pub(crate) fn enter_idle(&mut self, vp: u32) -> bool {
        if self.interrupt_arrived(vp) {
            return false;
        }
        self.idle |= self.idle_bit(vp);
        true
    }

    /// Whether an interrupt waits for `vp`, deliverable or not.
    fn interrupt_arrived(&self, vp: u32) -> bool {
        self.irq.has_pending(vp) || self.irq.lapic(vp).is_some_and(|l| l.requested())
    }

    fn idle_bit(&self, vp: u32) -> u64 {
        1u64.checked_shl(vp).unwrap_or(0)
    }

    /// [`Vmm::interruption_for`], and the interrupt it is.
    fn next_interruption(&mut self, vp: u32) -> Option<(u64, Interrupt)> {
        // The interrupt controllers are VTL 0's: their interrupts wait
        // while the VP runs in VTL 1 (TLFS 15.6: a lower VTL never preempts).
        if self.vsm.active_vtl(vp).is_ok_and(|vtl| vtl != 0) {
            return None;
        }
        let any = Interruptibility { rflags_if: true, shadow: false, nmi_blocked: false };
        let interrupt = self.irq.highest_pending(vp, any)?;
        let vector = self.irq.acknowledge(vp, interrupt);
        let kind = match interrupt {
            Interrupt::Nmi => tlfs::HvX64PendingInterruptionType::NMI,
            _ => tlfs::HvX64PendingInterruptionType::INTERRUPT,
        };
        Some((tlfs::HvX64PendingInterruptionRegister::pending(kind, vector, None).into_bits(), interrupt))
    }

    /// The interruption for the VP `h` names, stopped at this exit, added
    /// to `u` unless one is pending already; a local APIC interrupt may
    /// need no EOI exit (EOI assist).
    fn post_at_exit(
        &mut self,
        h: &tlfs::HvX64InterceptMessageHeader,
        busy: bool,
        guest: &mut impl Guest,
        u: &mut Updates,
    ) {
        let busy = busy
            || h.execution_state.interruption_pending()
            || u.iter().any(|(name, _)| *name == HvRegisterName::PENDING_INTERRUPTION);
        if busy {
            return;
        }
        self.withdraw_lazy_eoi_if_requested(h.vp_index, guest);
        if let Some((value, interrupt)) = self.next_interruption(h.vp_index) {
            let _ = u.push((HvRegisterName::PENDING_INTERRUPTION, value));
            if let Interrupt::Fixed(vector) = interrupt {
                self.offer_lazy_eoi(h.vp_index, vector, guest);
            }
        }
    }

    /// Decides what an intercept means, reading and writing `guest` as the
    /// emulation needs; `now` is the TSC; `events` receives console bytes
    /// and log events. An interruption waiting for the VP rides along with
    /// the updates when its slot is free.
    pub fn handle(
        &mut self,
        message: &HvMessage,
        guest: &mut impl Guest,
        now: u64,
        events: impl FnMut(Event),
    ) -> Action {
        self.handle_with(message, guest, now, &mut NoConnections, events)
    }

    /// [`Vmm::handle`] for a partition whose HvPostMessage and
    /// HvSignalEvent go to `connections` (the broker).
    pub fn handle_with(
        &mut self,
        message: &HvMessage,
        guest: &mut impl Guest,
        now: u64,
        connections: &mut dyn Connections,
        events: impl FnMut(Event),
    ) -> Action {
        let parsed = message.parse().map_err(|_| message.header.message_type.0);
        self.handle_parsed(parsed.as_ref().map_err(|&t| t), guest, now, connections, events)
    }

    /// [`Vmm::handle_with`] of a message the caller parsed already (`Err`:
    /// its message type, which does not parse).
    pub fn handle_parsed(
        &mut self,
        parsed: Result<&HvMessageBody, u32>,
        guest: &mut impl Guest,
        now: u64,
        connections: &mut dyn Connections,
        mut events: impl FnMut(Event),
    ) -> Action {
        let slot_taken = core::mem::take(&mut self.slot_taken);
        self.poll_with(now, guest);
        let body = match parsed {
            Ok(body) => body,
            Err(message_type) => return Action::Stop(Stop::Failed { message_type, rip: 0 }),
        };
        let header = body.intercept_header();
        if let Some(h) = header {
            // It exited: awake.
            self.woke(h.vp_index);
        }
        let mut action = self.decide(body, guest, now, connections, &mut events);
        self.stats.record(body, &action);
        let Some(h) = header else { return action };
        self.report_synic(h.vp_index, connections);
        let switched = core::mem::take(&mut self.vtl_switched);
        if let (Action::Resume(u) | Action::Halt(u), false) = (&mut action, switched) {
            self.post_at_exit(h, slot_taken, guest, u);
        }
        action
    }

    /// Whether handling an exit of `body` leaves the partition's devices,
    /// timers and SynICs as the poll that began it left them (CPUID and
    /// HLT only read them; a hypercall touches no timer, and what it
    /// delivers or sends other VPs is in their SynICs, APICs and
    /// [`Vmm::effects`] already; the interruption the reply carries is
    /// taken from the controllers, which no poll looks at): a poll at the
    /// same TSC right after finds nothing to do.
    pub fn leaves_devices_alone(body: &HvMessageBody) -> bool {
        matches!(
            body,
            HvMessageBody::X64CpuidIntercept(_) | HvMessageBody::X64Halt(_) | HvMessageBody::HypercallIntercept(_)
        )
    }

    /// Tells the broker what every VP's SINTs take, whatever it was told
    /// before (a broker started again knows nothing of them).
    pub fn report_synic_again(&mut self, vps: u32, connections: &mut dyn Connections) {
        for vp in 0..vps {
            if let Some(reported) = self.reported_synic.get_mut(vp as usize) {
                *reported = !self.synthetic.accepting(vp);
            }
            self.report_synic(vp, connections);
        }
    }

    /// Tells the broker what VP `vp`'s SINTs take, if its exit changed it
    /// (an MSR write), before the VP runs on: senders in other partitions
    /// are answered from it. Tried again at the VP's next exit if it failed.
    fn report_synic(&mut self, vp: u32, connections: &mut dyn Connections) {
        let accepting = self.synthetic.accepting(vp);
        let Some(reported) = self.reported_synic.get_mut(vp as usize) else { return };
        if accepting != *reported && connections.synic_state(vp, accepting).is_ok() {
            *reported = accepting;
        }
    }

    fn decide(
        &mut self,
        body: &HvMessageBody,
        guest: &mut impl Guest,
        now: u64,
        connections: &mut dyn Connections,
        events: &mut impl FnMut(Event),
    ) -> Action {
        let fail = |rip| Action::Stop(Stop::Failed { message_type: body.message_type().0, rip });
        match body {
            HvMessageBody::X64IoPortIntercept(io) => self.port(io, guest, now, events),
            HvMessageBody::X64CpuidIntercept(c) => {
                let h = &c.header;
                if h.instruction_length() == 0 {
                    return fail(h.rip);
                }
                let (leaf, subleaf) = (c.rax as u32, c.rcx as u32);
                // The VP's CR4 and XCR0, for the bits that follow them.
                let state = if reads_vp_state(leaf) {
                    VpState {
                        cr4: guest.reg(HvRegisterName::CR4).unwrap_or(0),
                        xcr0: guest.reg(HvRegisterName::XFEM).unwrap_or(VpState::RESET.xcr0),
                    }
                } else {
                    VpState::RESET
                };
                let (profile, os) = (self.synthetic.profile(), self.synthetic.guest_os_id());
                let [a, b, cx, mut d] = cpuid_for_vp(&self.cpuid, profile, os, h.vp_index, leaf, subleaf, state);
                if leaf == 1
                    && let Some(lapic) = self.irq.lapic(h.vp_index)
                {
                    d = lapic.cpuid_leaf1_edx(d);
                }
                resume(&[
                    (HvRegisterName::RIP, cpu_mode(h).next_ip(h.rip, h.instruction_length().into())),
                    (HvRegisterName::RAX, a.into()),
                    (HvRegisterName::RBX, b.into()),
                    (HvRegisterName::RCX, cx.into()),
                    (HvRegisterName::RDX, d.into()),
                ])
            }
            HvMessageBody::MsrIntercept(m) => {
                if m.header.instruction_length() == 0 {
                    return fail(m.header.rip);
                }
                self.msr(m, guest, now, events)
            }
            HvMessageBody::HypercallIntercept(m) => self.hypercall(m, guest, connections),
            HvMessageBody::X64Halt(halt) => {
                let h = &halt.header;
                if h.rflags & rflags::IF == 0 {
                    return Action::Stop(Stop::Halted { rip: h.rip });
                }
                let len = u64::from(h.instruction_length().max(1));
                let next = [(HvRegisterName::RIP, cpu_mode(h).next_ip(h.rip, len))];
                // Something already waits: HLT ends at once.
                if self.irq.has_pending(h.vp_index) { resume(&next) } else { Action::Halt(updates(&next)) }
            }
            HvMessageBody::UnmappedGpa(m) => self.memory(m, false, guest, now, events),
            HvMessageBody::GpaIntercept(m) => self.memory(m, true, guest, now, events),
            other => fail(other.intercept_header().map_or(0, |h| h.rip)),
        }
    }

    fn port(
        &mut self,
        io: &HvX64IoPortInterceptMessage,
        guest: &mut impl Guest,
        now: u64,
        events: &mut impl FnMut(Event),
    ) -> Action {
        let h = &io.header;
        let fail = Action::Stop(Stop::Failed { message_type: HvMessageType::X64_IO_PORT_INTERCEPT.0, rip: h.rip });
        if h.instruction_length() == 0 || !io.access_info.is_valid() {
            return fail;
        }
        let mode = cpu_mode(h);
        let next = (HvRegisterName::RIP, mode.next_ip(h.rip, h.instruction_length().into()));
        let size = io.access_info.access_size();
        let write = h.intercept_access_type == HvInterceptAccessType::WRITE;
        if io.access_info.string_op() {
            let port = io.port_number;
            let (s, stopped) =
                string_io(guest, io, mode, |element| self.port_access(port, size, element, now, h.rip, events));
            if let Some(stop) = stopped {
                return stop;
            }
            let mut u = Updates::new();
            if s.complete {
                let _ = u.push(next);
            }
            for (name, v) in [(HvRegisterName::RCX, s.rcx), (HvRegisterName::RSI, s.rsi), (HvRegisterName::RDI, s.rdi)]
            {
                if let Some(v) = v {
                    let _ = u.push((name, v));
                }
            }
            return Action::Resume(u);
        }
        let element = if write { Element::Write(io.rax) } else { Element::Read };
        match self.port_access(io.port_number, size, element, now, h.rip, events) {
            ControlFlow::Break(stop) => stop,
            ControlFlow::Continue(_) if write => resume(&[next]),
            ControlFlow::Continue(value) => {
                resume(&[next, (HvRegisterName::RAX, Reg::new(Gpr::Rax).set(io.rax, value, size))])
            }
        }
    }

    /// One port access through the device bus, of `size` bytes: a read
    /// continues with the value read, a write with 0, or breaks with the
    /// action that ends the VP's run (test exit, power off, reset). The
    /// devices' other effects are applied here.
    fn port_access(
        &mut self,
        port: u16,
        size: u8,
        element: Element,
        now: u64,
        rip: u64,
        events: &mut impl FnMut(Event),
    ) -> ControlFlow<Action, u64> {
        let mut console = |b| events(Event::Console(b));
        let mut access = PortAccess { now, console: &mut console };
        let device: &mut dyn PortDevice = match self.ports.route(port) {
            Some(PortId::Interrupts) => &mut self.irq,
            Some(PortId::Uart) => &mut self.uart,
            Some(PortId::Pm1) => &mut self.pm1,
            Some(PortId::Rtc) => &mut self.rtc,
            Some(PortId::Kbc) => &mut self.kbc,
            Some(PortId::ResetControl) => &mut self.reset_control,
            Some(PortId::DebugExit) => &mut DebugExit,
            Some(PortId::HvTestDev) => match self.testdev.as_mut() {
                Some(t) => t,
                None => &mut Unclaimed,
            },
            None => &mut Unclaimed,
        };
        let Element::Write(value) = element else {
            let read = device.read(port, size, &mut access);
            self.sync_uart_irq();
            self.sync_rtc_irq();
            return ControlFlow::Continue(read);
        };
        let effect = device.write(port, size, value, &mut access);
        self.sync_uart_irq();
        self.sync_rtc_irq();
        match effect {
            PortEffect::Done => {}
            PortEffect::Irq(effects) => self.effects.merge(effects),
            PortEffect::TestExit(value) => return ControlFlow::Break(Action::Stop(Stop::TestExit { value })),
            PortEffect::PowerOff => return ControlFlow::Break(Action::Stop(Stop::PowerOff)),
            PortEffect::Reset(by) => return ControlFlow::Break(Action::Stop(Stop::Reset { rip, by })),
            PortEffect::AssertSint { vp, sint } => {
                if self.synthetic.assert_sint(vp, sint) {
                    self.synic_interrupts();
                }
            }
            PortEffect::Refused { request, why } => events(Event::TestDevRefused { request, why }),
        }
        ControlFlow::Continue(0)
    }

    /// The MMIO device of `gpa` for VP `vp`: its local APIC's page (where
    /// IA32_APIC_BASE puts it), else the fixed table.
    fn mmio_device(&mut self, vp: u32, gpa: u64) -> Option<&mut dyn MmioDevice> {
        let id = if self.irq.claims_mmio(vp, gpa) { Some(MmioId::Interrupts) } else { mmio_route(gpa) };
        match id? {
            MmioId::Interrupts => Some(&mut self.irq),
            MmioId::TestDevice => Some(&mut self.device),
        }
    }

    /// An access to an unmapped GPA (MMIO) or a write to a read-only page:
    /// fetch and decode the instruction, emulate its access, skip it.
    fn memory(
        &mut self,
        m: &HvX64MemoryInterceptMessage,
        read_only: bool,
        guest: &mut impl Guest,
        now: u64,
        events: &mut impl FnMut(Event),
    ) -> Action {
        let h = &m.header;
        let gpa = m.guest_physical_address;
        let message_type = if read_only { HvMessageType::GPA_INTERCEPT.0 } else { HvMessageType::UNMAPPED_GPA.0 };
        let mut unemulated = |why| {
            events(Event::Unemulated { gpa, rip: h.rip, why });
            Action::Stop(Stop::Failed { message_type, rip: h.rip })
        };
        let need = match h.intercept_access_type {
            HvInterceptAccessType::WRITE => Need::Write,
            HvInterceptAccessType::EXECUTE => Need::Execute,
            _ => Need::Read,
        };
        if h.execution_state.vtl() == 0 && guest.denied(gpa, 1, need) {
            // VTL 1 protects the page (15.9.2): never emulated for VTL 0,
            // and the VP goes no further (no secure intercept yet, §6.5).
            events(Event::VtlViolation { gpa, rip: h.rip });
            return Action::Stop(Stop::Failed { message_type, rip: h.rip });
        }
        if read_only && h.intercept_access_type == HvInterceptAccessType::WRITE && self.synthetic.read_only_overlay(gpa)
        {
            // "Attempts to write to the hypercall page will result in a
            // protection (#GP) exception" (TLFS 3.13; overlay.rs withholds
            // the page's guest write access). Nothing is written.
            return gp();
        }
        if h.intercept_access_type == HvInterceptAccessType::EXECUTE {
            // An instruction fetch where nothing is (RAM and ROM are mapped
            // executable): the bus answers all ones, `FF FF`, which is no
            // instruction: #UD at the fetch, as on a machine.
            return ud();
        }
        let mode = cpu_mode(h);
        let (bytes, n) = if m.instruction_byte_count > 0 {
            let n = usize::from(m.instruction_byte_count).min(x86decode::MAX_INSTRUCTION_LEN);
            let mut b = [0u8; x86decode::MAX_INSTRUCTION_LEN];
            b[..n].copy_from_slice(&m.instruction_bytes[..n]);
            (b, n)
        } else {
            fetch(guest, h)
        };
        if n == 0 {
            return unemulated(Unemulated::Fetch(Fault::NotPresent { linear: h.rip }));
        }
        let insn = match decode(&bytes[..n], mode) {
            Ok(insn) => insn,
            Err(e) => return unemulated(Unemulated::Decode(e)),
        };
        let next = (HvRegisterName::RIP, mode.next_ip(h.rip, insn.len.into()));
        let size = insn.size;
        match insn.kind {
            Access::Write { source } => {
                let value = match source {
                    Operand::Immediate(v) => v,
                    Operand::Register(r) => match guest.reg(gpr_name(r.gpr)) {
                        Some(full) => r.get(full, size),
                        None => return unemulated(Unemulated::Register(gpr_name(r.gpr))),
                    },
                };
                if read_only {
                    events(Event::ReadOnlyWrite { gpa, rip: h.rip });
                } else if let Some(device) = self.mmio_device(h.vp_index, gpa)
                    && let Some(effects) = device.write(h.vp_index, gpa, size, value, now)
                {
                    self.effects.merge(effects);
                }
                resume(&[next])
            }
            Access::Read { dest, extend, dest_size } => {
                let device = if read_only { None } else { self.mmio_device(h.vp_index, gpa) };
                let value = if let Some(v) = device.and_then(|d| d.read(h.vp_index, gpa, size, now)) {
                    v
                } else if read_only {
                    // A read that faulted on a present page: read it through.
                    let mut b = [0xffu8; 8];
                    if !guest.read(gpa, &mut b[..usize::from(size)]) {
                        b = [0xff; 8];
                    }
                    u64::from_le_bytes(b) & x86decode::size_mask(size)
                } else {
                    x86decode::size_mask(size)
                };
                let name = gpr_name(dest.gpr);
                let Some(full) = guest.reg(name) else { return unemulated(Unemulated::Register(name)) };
                resume(&[next, (name, dest.set(full, extend.apply(value, size, dest_size), dest_size))])
            }
            _ => unemulated(Unemulated::Form),
        }
    }
}

/// Port I/O, CPUID, MSR and HLT intercepts of a guest the VID has no memory
/// or register access to (the demo): [`Vmm::handle`] of a fresh VMM over
/// [`NoGuest`]. `output` receives guest console bytes.
pub fn handle(message: &HvMessage, mut output: impl FnMut(u8)) -> Action {
    Vmm::new().handle(message, &mut NoGuest, 0, |e| {
        if let Event::Console(b) = e {
            output(b)
        }
    })
}

mod eoi_assist;
mod guests;
mod hypercall;
mod msr;
mod stats;
#[cfg(test)]
pub(crate) mod tests;

pub use guests::{BENCH_EXITS, BENCH_GUEST, BENCH_PORT, DEMO_GUEST, DEMO_LOAD};
pub use stats::ExitStats;
