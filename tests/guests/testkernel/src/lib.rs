//! The guest test kernel's pure logic, tested on the host: the protocol it
//! speaks with the VID ([`protocol`]), which tests the command line selects
//! ([`selection`]), and the checks of what the boot loader handed over
//! ([`multiboot`]), and what the TLFS conformance tests expect ([`tlfs`]).
//! The kernel itself (`main.rs`: a Multiboot v1 header, a
//! `.code32` stub that enters long mode, the tests) runs only on the bare
//! target.
//!
//! # What it prints
//!
//! Every line starts with `testkernel: `. The 32-bit stub prints
//! `testkernel: entered in 32-bit protected mode` and, after reloading every
//! segment register through the boot loader's GDT, `testkernel: segment
//! reload ok`. Then one line per test, `testkernel: <name>: ok` or
//! `testkernel: <name>: FAIL <detail>` (informational lines of a test look
//! like `testkernel: <name>: <text>`), and last
//! `testkernel: done: <p> passed, <f> failed`, after which it writes the
//! [`protocol::exit`] status to the test-exit port.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use core::fmt;

/// What the test kernel expects of the machine it runs on (the VID).
pub mod protocol {
    /// COM1: each byte written to the data register is console output; the
    /// kernel polls the line status register for bit 5 (transmitter holding
    /// register empty) before each byte it writes with `out dx, al`.
    pub const UART_DATA: u16 = 0x3f8;
    pub const UART_LINE_STATUS: u16 = 0x3fd;
    /// The kernel's status is written here with `out dx, eax` (QEMU's
    /// `isa-debug-exit`: the run ends with status `(value << 1) | 1`).
    pub const TEST_EXIT: u16 = 0xf4;
    /// A port nothing emulates: reads return all ones, writes are ignored.
    pub const UNEMULATED_PORT: u16 = 0x0270;

    /// A test device the VID emulates on its MMIO path (the page is not
    /// mapped in the partition: each access is an unmapped-GPA intercept).
    /// Registers are 32 bits; reads of 1 or 2 bytes at an offset inside a
    /// register return those bytes of it; offsets that are no register read
    /// all ones and ignore writes.
    pub const TEST_DEVICE: u64 = 0xfed0_0000;
    /// Read-only: [`TEST_DEVICE_ID_VALUE`]; writes are ignored.
    pub const TEST_DEVICE_ID: u64 = 0x00;
    /// The bytes "TESS" in memory order.
    pub const TEST_DEVICE_ID_VALUE: u32 = u32::from_le_bytes(*b"TESS");
    /// Read/write: returns the last value written (0 at reset).
    pub const TEST_DEVICE_SCRATCH: u64 = 0x08;
    /// The value the mmio test writes to the scratch register.
    pub const TEST_DEVICE_SCRATCH_PATTERN: u32 = 0xc0ff_ee42;

    /// A page the VID maps read-only (and executable), like a ROM, in the
    /// legacy hole that the memory map leaves out. Its first bytes are
    /// [`TEST_ROM_SIGNATURE`]. A write to it is a GPA intercept (write to a
    /// present read-only page): the VID discards the write, skips the
    /// instruction, and resumes the guest, as ROM behaves. It does not
    /// inject a fault.
    pub const TEST_ROM: u64 = 0x000f_f000;
    pub const TEST_ROM_SIGNATURE: [u8; 8] = *b"TESSROM\0";
    /// The rest of the legacy hole (640 KiB up to [`TEST_ROM`]) is ROM,
    /// read-only and executable, as a PC's option-ROM and BIOS area: writes
    /// are dropped like [`TEST_ROM`]'s. Below [`BIOS_AREA`] it reads 0.
    pub const LEGACY_ROM: core::ops::Range<u64> = 0x000a_0000..TEST_ROM;
    /// The BIOS read-only area (up to [`TEST_ROM`]), where the VID puts the
    /// ACPI tables: the RSDP on a 16-byte boundary (ACPI 6.5 5.2.5.1).
    pub const BIOS_AREA: u64 = 0x000e_0000;

    /// ACPI PM1a_CNT (two bytes): SLP_TYP 5 with SLP_EN powers the
    /// partition off (the VID's FADT says so).
    pub const PM1A_CNT: u16 = 0x604;
    /// The FADT's RESET_REG: writing 1 resets the partition.
    pub const RESET_PORT: u16 = 0x608;
    /// The 8042's command port (0xFE pulses the reset line) and data port.
    pub const KBC_COMMAND: u16 = 0x64;
    pub const KBC_DATA: u16 = 0x60;
    /// The chipset's reset control register (0x06: hard reset).
    pub const RESET_CONTROL: u16 = 0xcf9;
    /// The MC146818 RTC's index (bit 7: NMI disable) and data ports.
    pub const RTC_INDEX: u16 = 0x70;
    pub const RTC_DATA: u16 = 0x71;

    /// The FADT's PM_TMR_BLK: the 32-bit ACPI PM timer (read-only).
    pub const PM_TMR: u16 = 0x60c;

    /// The ports the VID emulates, (first, count): COM1, the 8259 pair and
    /// their ELCRs, the 8254 and port 0x61, the ACPI PM1 blocks, reset
    /// register and PM timer, the 8042, the RTC and the reset control
    /// register. Every other port reads all ones and ignores writes.
    pub const EMULATED_PORTS: [(u16, u16); 15] = [
        (KBC_DATA, 1),
        (KBC_COMMAND, 1),
        (RTC_INDEX, 2),
        (RESET_CONTROL, 1),
        (0x20, 2),
        (0x40, 4),
        (0x61, 1),
        (0xa0, 2),
        (UART_DATA, 8),
        (0x4d0, 2),
        (0x600, 4),
        (PM1A_CNT, 2),
        (RESET_PORT, 1),
        (PM_TMR, 4),
        (TEST_EXIT, 1),
    ];

    /// True if a `width`-byte access at `port` touches an emulated port.
    pub fn touches_emulated(port: u16, width: u16) -> bool {
        let (start, end) = (u32::from(port), u32::from(port) + u32::from(width));
        EMULATED_PORTS
            .iter()
            .any(|&(first, count)| start < u32::from(first) + u32::from(count) && u32::from(first) < end)
    }

    /// A guest-physical address the VID must leave unmapped and not
    /// emulate, above any RAM it may give (at most 3 GiB) and below the
    /// device window. The unmapped test also uses the first page past RAM
    /// (from the memory map).
    pub const UNMAPPED_HIGH: u64 = 0xe000_0000;

    /// The VID forwards console output a line at a time and splits lines
    /// longer than this many bytes (`LINE_MAX` in the VID's `exits.rs`):
    /// the kernel keeps its lines, newline included, within it.
    pub const CONSOLE_LINE_MAX: usize = 120;

    /// Test-exit values.
    pub mod exit {
        /// Every selected test passed.
        pub const PASS: u32 = 0;
        /// At least one test failed (or an unknown test was named).
        pub const FAILED: u32 = 1;
        /// Not started by a Multiboot v1 loader, or no boot information.
        pub const BAD_BOOT: u32 = 2;
        /// An unexpected CPU exception (the report precedes it), or a panic.
        pub const EXCEPTION: u32 = 3;
    }

    /// Timer interrupts the hlt test waits for, when any arrive: the PIT
    /// (IRQ 0) at 100 Hz through the 8259 remapped to vectors 0x20..0x2f.
    pub const PIT_HZ: u32 = 100;
    pub const IRQ_BASE: u8 = 0x20;
}

/// The tests, in the order `tests=all` runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Test {
    /// Prints a line through the UART; the line status register says ready.
    Uart,
    /// The boot information: magic, flags, memory map, modules, strings.
    Multiboot,
    /// CPUID leaf 0 (a printable vendor, max leaf ≥ 1) and leaf 1 (a non-zero signature).
    Cpuid,
    /// `in`/`out` of 1, 2 and 4 bytes, `rep outsb` to the UART, `insb` and
    /// `rep insb` from an unemulated port (all ones; RCX, RSI, RDI updated).
    PortIo,
    /// `hlt` with a timer armed: the test passes if execution continues.
    Hlt,
    /// Reads beyond RAM return all ones; writes there vanish.
    Unmapped,
    /// The VID's test device at [`protocol::TEST_DEVICE`].
    Mmio,
    /// A write to the read-only page at [`protocol::TEST_ROM`] is discarded.
    ReadOnly,
    /// Not in `tests=all`. Writes the [`isolation`] record with the
    /// `mark=` word at [`isolation::ADDRESS`], waits while another
    /// partition may write its own, and reads it back unchanged.
    Isolation,
    /// Not in `tests=all`. Every page of available RAM past the kernel,
    /// its boot information and modules, to the end of RAM, is written with
    /// its own address and read back: each is distinct memory (guest RAM is
    /// made of several runs of host frames, which must not alias).
    Ram,
    /// Not in `tests=all`. Loads an empty IDT and executes `int3`: the CPU
    /// triple-faults (a shutdown the VID reports). Nothing runs after it.
    Crash,
    /// Not in `tests=all` (group `tlfs`). The Hyper-V CPUID leaves
    /// ([`tlfs::cpuid`]): signature, privileges, features, recommendations.
    TlfsCpuid,
    /// Not in `tests=all` (group `tlfs`). The synthetic MSRs: overlay pages,
    /// time, frequencies, and #GP for those not offered or read-only.
    TlfsMsr,
    /// Not in `tests=all` (group `tlfs`). Hypercalls through the hypercall
    /// page: statuses of TLFS 3.12 and the calls the VID implements.
    TlfsHypercall,
    /// Not in `tests=all` (group `tlfs`). The SynIC (TLFS 11.8): its
    /// registers and #GP cases, messages into a polled and an auto-EOI
    /// SINT, a busy slot with MessagePending and redelivery after EOM.
    TlfsSynic,
    /// Not in `tests=all` (group `tlfs`). The synthetic timers (TLFS 12.5):
    /// #GP cases, auto-enable, one-shot, periodic, lazy and direct mode,
    /// with the timer-expired messages' fields.
    TlfsStimer,
    /// Not in `tests=all`. Starts the `cpus=<n>` CPUs' APs with
    /// INIT-SIPI-SIPI through a real-mode trampoline; each must check in
    /// with its own APIC ID and send the BSP a fixed IPI ([`smp`]).
    Smp,
    /// Not in `tests=all`. Times fast hypercalls (HvCallNotifyLongSpinWait)
    /// through the hypercall page: the round trip's cost in TSC ticks
    /// (instructions under `-icount`), for `tessera bench`.
    HcBench,
    /// Not in `tests=all`. Times what crosses CPUs, for `tessera bench`
    /// (`cpus=<n>` VPs, each on a CPU of its own): a fixed IPI from the
    /// BSP to an AP spinning in guest mode, and HvFlushVirtualAddressSpace
    /// while one AP, then all of them, spin ([`bench`]).
    SmpBench,
    /// Not in `tests=all`. Times exits forwarded to the VID and back, for
    /// `tessera bench`: CPUID and a port read; with `cpus=<n>` the APs are
    /// started and parked (halted) first, and `vid=` names where the
    /// manifest put the VID (`cross-cpu`, `priority`), in the figure's
    /// name ([`bench::exit_figure`]).
    ExitBench,
    /// Not in `tests=all`. Like [`Test::Isolation`] for register state:
    /// sets DR0-DR3 and DR7 ([`state`]), XCR0 (`xcr0=`) and every XMM/YMM
    /// register from the `mark=`, waits while another partition sets its
    /// own, and reads them all back unchanged.
    StateIsolation,
    /// Not in `tests=all` (group `state`). XSETBV: #UD without
    /// CR4.OSXSAVE, #GP at CPL 3 and for each invalid value
    /// ([`state::XSETBV_CASES`]), XGETBV reads back the valid ones.
    Xsetbv,
    /// Not in `tests=all` (group `state`). INVD and WBINVD complete (RAM
    /// written before them keeps its value); RDPMC raises #GP(0).
    Intercepts,
    /// Not in `tests=all` (group `state`). #DB reaches the guest's handler
    /// once per cause, with DR6 saying which: single step (TF), ICEBP, a data
    /// breakpoint, an instruction breakpoint, general detect (the last but
    /// one where `lacks=` names `icebp` or `gd`).
    Debug,
    /// Not in `tests=all` (group `state`). A misaligned load at CPL 3 with
    /// CR0.AM and RFLAGS.AC set raises #AC(0); where the CPU does not check
    /// alignment (QEMU), the test says so and passes only with `lacks=ac`.
    Alignment,
    /// Not in `tests=all`. The neighbour of a hostile partition: fills its
    /// free RAM with [`hostile::canary`] words derived from `seed=` and sets
    /// register canaries (XMM, x87, MXCSR, DR0-3, DR7, XCR0, the guest
    /// MSRs) that [`Test::CanaryCheck`] checks.
    CanarySet,
    /// Not in `tests=all`. Checks every canary [`Test::CanarySet`] left.
    CanaryCheck,
    /// Group `hostile` (the attacks, in this order): GPAs beyond RAM, in
    /// the holes and the ROM: reads, writes and execution.
    HostileGpa,
    /// Garbage written over the overlay pages (hypercall, reference TSC,
    /// VP assist).
    HostileOverlay,
    /// Random malformed hypercalls ([`hostile::hypercall`]).
    HostileHypercall,
    /// Every MSR of [`hostile::msr::LIST`], EFER and the synthetic MSRs,
    /// read and written with random values.
    HostileMsr,
    /// XSETBV, INVD, WBINVD, RDPMC, debug-register accesses, and the
    /// virtualization instructions the guest is not offered.
    HostileInsn,
    /// Exception storms: every vector raised by INT n and the faults
    /// raised for real, many times over.
    HostileExceptions,
    /// All 65,536 ports read at every width, and written (but
    /// [`hostile::ports::NOT_WRITTEN`]) with random values.
    HostilePorts,
    /// INIT and STARTUP storms at the APs through the local APIC.
    HostileSipi,
    /// Guest actions that each make the VID log a line, as fast as it can.
    HostileLogs,
    /// Exits as fast as the guest can make them (port reads, MSR writes,
    /// hypercalls, MMIO), for a fixed time.
    HostileFlood,
    /// The #AC and #DB delivery loops of CVE-2015-5307 and CVE-2015-8104,
    /// each on an AP that loops for good while the BSP carries on.
    HostileLoops,
    /// The virtualization instructions of both vendors, MONITOR/MWAIT and
    /// GETSEC, none offered: each must raise #UD.
    HostileVirt,
    /// Not in `tests=all`. The neighbour's steady stream of exits, whose
    /// latency shows whether it is starved (see `canaries.rs`).
    Pace,
    /// Spins for 5 s of partition reference time and reports the VP's
    /// runtime between 1 s and 4 s (the classic scheduler's tests,
    /// `busy.rs`).
    Busy,
    /// Not in `tests=all` (`cpus=<n>`, n >= 2). The root scheduler's test
    /// (`turns.rs`): VP 0 alternates 50 ms busy and 50 ms halted for 2 s
    /// of reference time while VP 1 spins; both report their runtime.
    Turns,
    /// Not in `tests=all` (`cpus=<n>`). The core scheduler's test
    /// (`siblings.rs`): every VP reads CPUID leaves 1 and 0xB; each VP's
    /// x2APIC ID, threads per core and SMT siblings are printed.
    Topology,
    /// Not in `tests=all`. The VID's emulated timers against partition
    /// reference time (`timers.rs`, issue #11's accuracy): the PIT and the
    /// local APIC timer periodic at 1 kHz each fire 1000 times in 1 s of
    /// `HV_X64_MSR_TIME_REF_COUNT` within 2 %, and one-shots of 1 ms fire
    /// never early and less than 1 ms late.
    Timers,
    /// Not in `tests=all`. The stimer jitter figure of `tessera bench`
    /// (`stimer_bench.rs`): STIMER0 periodic at 1 ms for 1000 ticks in
    /// message mode, then direct mode, timed in reference time: lateness
    /// against the schedule and the spread of the intervals.
    StimerJitter,
    /// Not in `tests=all` (`role=alpha|beta|gamma`, `messaging.toml`).
    /// HvPostMessage and HvSignalEvent between partitions: messages and
    /// event flags both ways with their SINT vectors, a busy slot's
    /// MessagePending and delivery after EOM, a full port queue, the
    /// refusals, and a partition without connections refused.
    Messaging,
    /// Not in `tests=all` (2 VPs, `testdev.toml`). The SynIC through QEMU's
    /// `hyperv-testdev`: SINT routes fired from VP 0 to VP 1 (auto-EOI and
    /// polled too), a message echo with a busy slot and redelivery after
    /// EOM, event flags that interrupt only when they go from clear to set.
    Testdev,
    /// Not in `tests=all` (group `fidelity`). CPUID leaves 0-0xD and 0x8000_0000-0x8000_0008 against the SDM/APM and across VPs.
    FidelityCpuid,
    /// Not in `tests=all` (group `fidelity`). MSRs: PAT, MISC_ENABLE, MTRRs, TSC, TSC_ADJUST, APIC_BASE, EFER, FS/GS bases, unknown MSRs #GP.
    FidelityMsr,
    /// Not in `tests=all` (group `fidelity`). CR0 and CR4 as the architecture defines them: NE clear, reserved bits, paging transitions.
    FidelityCr,
    /// Not in `tests=all` (group `fidelity`). The local APIC: x2APIC mode, self-IPI, TSC-deadline, priorities, LVT masking, software disable; the I/O APIC.
    FidelityApic,
    /// Not in `tests=all` (group `fidelity`). NMIs by ICR and LINT1, NMI blocking until IRET.
    FidelityNmi,
    /// Not in `tests=all` (group `fidelity`). The MC146818 RTC/CMOS: time, update-in-progress, periodic and alarm interrupts.
    FidelityRtc,
    /// Not in `tests=all` (group `fidelity`). The ACPI PM timer at 3.579545 MHz against HV_X64_MSR_TIME_REF_COUNT.
    FidelityPmTimer,
    /// Not in `tests=all` (group `fidelity`). ACPI discovery: the RSDP in 0xE0000-0xFFFFF, RSDT/XSDT, MADT and FADT.
    FidelityAcpi,
    /// Not in `tests=all` nor `tests=fidelity` (`fidelity-reset.toml`): every reset source restarts the partition.
    FidelityReset,
    /// Not in `tests=all` (`vsm.toml`, profile `hyperv-vsm`). Virtual Secure
    /// Mode (TLFS 15, [`tlfs::vsm`]): detection and the VSM registers, the
    /// enabling calls' error statuses, VTL 1 enabled with its own context,
    /// VTL calls and returns (fast too) with shared and private state, and
    /// the #UD cases of 15.6.1.1 and 15.7.2.
    Vsm,
    /// Not in `tests=all` (`vsm-bench.toml`, profile `hyperv-vsm`). Times
    /// VTL 0 -> VTL 1 -> VTL 0 round trips (a VTL call answered by an
    /// immediate fast VTL return), for `tessera bench`.
    VsmBench,
}

impl Test {
    pub const ALL: [Test; 8] =
        [Test::Uart, Test::Multiboot, Test::Cpuid, Test::PortIo, Test::Hlt, Test::Unmapped, Test::Mmio, Test::ReadOnly];

    /// Tests that run only when named: `tests=all` leaves them out (so do
    /// the [`Test::HOSTILE`] attacks).
    pub const EXPLICIT: [Test; 30] = [
        Test::Isolation,
        Test::Ram,
        Test::Crash,
        Test::TlfsCpuid,
        Test::TlfsMsr,
        Test::TlfsHypercall,
        Test::TlfsSynic,
        Test::TlfsStimer,
        Test::Smp,
        Test::HcBench,
        Test::SmpBench,
        Test::ExitBench,
        Test::StateIsolation,
        Test::Xsetbv,
        Test::Intercepts,
        Test::Debug,
        Test::Alignment,
        Test::CanarySet,
        Test::CanaryCheck,
        Test::Pace,
        Test::Busy,
        Test::Turns,
        Test::Topology,
        Test::Timers,
        Test::StimerJitter,
        Test::Messaging,
        Test::Testdev,
        Test::FidelityReset,
        Test::Vsm,
        Test::VsmBench,
    ];

    /// The attacks of `tests=hostile`, in order: the loops near the end
    /// (their APs never come back), then the instructions that, handled
    /// wrongly, end the partition. Each runs only when named.
    pub const HOSTILE: [Test; 12] = [
        Test::HostileGpa,
        Test::HostileOverlay,
        Test::HostileHypercall,
        Test::HostileMsr,
        Test::HostileInsn,
        Test::HostileExceptions,
        Test::HostilePorts,
        Test::HostileSipi,
        Test::HostileLogs,
        Test::HostileFlood,
        Test::HostileLoops,
        Test::HostileVirt,
    ];

    /// The fidelity suite's groups (`tests=fidelity`), in order; each runs
    /// only when named.
    pub const FIDELITY: [Test; 8] = [
        Test::FidelityCpuid,
        Test::FidelityMsr,
        Test::FidelityCr,
        Test::FidelityApic,
        Test::FidelityNmi,
        Test::FidelityRtc,
        Test::FidelityPmTimer,
        Test::FidelityAcpi,
    ];

    /// Every test that runs only when named: [`Test::EXPLICIT`], the
    /// attacks and the fidelity groups.
    pub fn explicit() -> impl Iterator<Item = Test> {
        Test::EXPLICIT.into_iter().chain(Test::HOSTILE).chain(Test::FIDELITY)
    }

    /// Names that select several tests, in order: `tests=tlfs` runs the
    /// TLFS conformance tests (for partitions with `enlightenments =
    /// "hyperv"`); inside a list, `all` stands for [`Test::ALL`]
    /// (`tests=all,smp`).
    pub const GROUPS: [(&'static str, &'static [Test]); 5] = [
        ("tlfs", &[Test::TlfsCpuid, Test::TlfsMsr, Test::TlfsHypercall, Test::TlfsSynic, Test::TlfsStimer]),
        ("all", &Test::ALL),
        ("state", &[Test::Xsetbv, Test::Intercepts, Test::Debug, Test::Alignment]),
        ("hostile", &Test::HOSTILE),
        ("fidelity", &Test::FIDELITY),
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Test::Uart => "uart",
            Test::Multiboot => "multiboot",
            Test::Cpuid => "cpuid",
            Test::PortIo => "portio",
            Test::Hlt => "hlt",
            Test::Unmapped => "unmapped",
            Test::Mmio => "mmio",
            Test::ReadOnly => "readonly",
            Test::Isolation => "isolation",
            Test::Ram => "ram",
            Test::Crash => "crash",
            Test::TlfsCpuid => "tlfs-cpuid",
            Test::TlfsMsr => "tlfs-msr",
            Test::TlfsHypercall => "tlfs-hypercall",
            Test::TlfsSynic => "tlfs-synic",
            Test::TlfsStimer => "tlfs-stimer",
            Test::Smp => "smp",
            Test::HcBench => "hcbench",
            Test::SmpBench => "smpbench",
            Test::ExitBench => "exitbench",
            Test::StateIsolation => "state-isolation",
            Test::Xsetbv => "xsetbv",
            Test::Intercepts => "intercepts",
            Test::Debug => "debug",
            Test::Alignment => "alignment",
            Test::CanarySet => "canary-set",
            Test::CanaryCheck => "canary-check",
            Test::HostileGpa => "hostile-gpa",
            Test::HostileOverlay => "hostile-overlay",
            Test::HostileHypercall => "hostile-hypercall",
            Test::HostileMsr => "hostile-msr",
            Test::HostileInsn => "hostile-insn",
            Test::HostileExceptions => "hostile-exceptions",
            Test::HostilePorts => "hostile-ports",
            Test::HostileSipi => "hostile-sipi",
            Test::HostileLogs => "hostile-logs",
            Test::HostileFlood => "hostile-flood",
            Test::HostileLoops => "hostile-loops",
            Test::HostileVirt => "hostile-virt",
            Test::Pace => "pace",
            Test::Busy => "busy",
            Test::Turns => "turns",
            Test::Topology => "topology",
            Test::Timers => "timers",
            Test::StimerJitter => "stimer-jitter",
            Test::Messaging => "messaging",
            Test::Testdev => "testdev",
            Test::FidelityCpuid => "fidelity-cpuid",
            Test::FidelityMsr => "fidelity-msr",
            Test::FidelityCr => "fidelity-cr",
            Test::FidelityApic => "fidelity-apic",
            Test::FidelityNmi => "fidelity-nmi",
            Test::FidelityRtc => "fidelity-rtc",
            Test::FidelityPmTimer => "fidelity-pm-timer",
            Test::FidelityAcpi => "fidelity-acpi",
            Test::FidelityReset => "fidelity-reset",
            Test::Vsm => "vsm",
            Test::VsmBench => "vsmbench",
        }
    }

    pub fn from_name(name: &str) -> Option<Test> {
        Test::ALL.into_iter().chain(Test::explicit()).find(|t| t.name() == name)
    }

    /// The tests a group name selects.
    pub fn group(name: &str) -> Option<&'static [Test]> {
        Test::GROUPS.iter().find(|(n, _)| *n == name).map(|&(_, tests)| tests)
    }
}

/// One entry of the selection: a test, or a name that is none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selected<'a> {
    Test(Test),
    Unknown(&'a str),
}

/// The value of the last `<key>=` word of the command line (`key` without the `=`).
pub fn option<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_ascii_whitespace()
        .filter_map(|word| word.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
        .next_back()
}

/// The value of the last `tests=` word of the command line.
pub fn tests_option(cmdline: &str) -> Option<&str> {
    option(cmdline, "tests")
}

/// The value of the last `mark=` word of the command line (the isolation test's mark).
pub fn mark_option(cmdline: &str) -> Option<&str> {
    option(cmdline, "mark")
}

/// Whether the last `lacks=` word (a comma-separated list) names
/// `feature`: the emulator lacks it (`ac`: alignment checking; `icebp`:
/// the INT1 instruction; `gd`: DR7.GD), and the test that needs it says so
/// and passes.
pub fn lacks(cmdline: &str, feature: &str) -> bool {
    option(cmdline, "lacks").is_some_and(|list| list.split(',').any(|f| f == feature))
}

/// The tests the command line selects: `tests=all` (or no `tests=`) runs
/// [`Test::ALL`]; `tests=a,b` runs those in that order, a group name
/// ([`Test::GROUPS`]) standing for its tests. Empty names are skipped;
/// unknown ones are reported.
pub fn selection(cmdline: &str) -> Selection<'_> {
    match tests_option(cmdline) {
        None | Some("all") => Selection::All(0),
        Some(list) => Selection::List { names: list.split(','), group: &[] },
    }
}

pub enum Selection<'a> {
    All(usize),
    /// `group` holds what is left of the group being expanded.
    List {
        names: core::str::Split<'a, char>,
        group: &'static [Test],
    },
}

impl<'a> Iterator for Selection<'a> {
    type Item = Selected<'a>;

    fn next(&mut self) -> Option<Selected<'a>> {
        match self {
            Selection::All(i) => {
                let test = *Test::ALL.get(*i)?;
                *i += 1;
                Some(Selected::Test(test))
            }
            Selection::List { names, group } => loop {
                if let Some((&test, rest)) = group.split_first() {
                    *group = rest;
                    break Some(Selected::Test(test));
                }
                let name = names.next()?;
                if name.is_empty() {
                    continue;
                }
                if let Some(tests) = Test::group(name) {
                    *group = tests;
                    continue;
                }
                break Some(Test::from_name(name).map_or(Selected::Unknown(name), Selected::Test));
            },
        }
    }
}

/// A line of text in a fixed buffer; what does not fit is cut off.
#[derive(Clone)]
pub struct Text<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Text<N> {
    pub const fn new() -> Self {
        Text { buf: [0; N], len: 0 }
    }

    pub fn as_str(&self) -> &str {
        // Only whole `str`s and whole characters are ever appended.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}

impl<const N: usize> Default for Text<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for Text<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            let mut utf8 = [0; 4];
            let bytes = c.encode_utf8(&mut utf8).as_bytes();
            if self.len + bytes.len() > N {
                return Ok(());
            }
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        }
        Ok(())
    }
}

impl<const N: usize> fmt::Display for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> PartialEq for Text<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl<const N: usize> Eq for Text<N> {}

impl<const N: usize> fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A test's failure detail.
pub type Detail = Text<96>;

/// Formats a failure detail.
#[macro_export]
macro_rules! detail {
    ($($arg:tt)*) => {{
        let mut text = $crate::Detail::new();
        let _ = core::fmt::Write::write_fmt(&mut text, format_args!($($arg)*));
        text
    }};
}

pub mod smp;

/// What CPUID tells a VP of the processor topology (`tests=topology`).
pub mod topology;

/// What the benchmark tests print for `tessera bench`.
pub mod bench;

/// The CPUID leaf 0 vendor string (EBX, EDX, ECX), if it is 12 printable
/// ASCII characters that are not all blank.
pub fn cpuid_vendor(ebx: u32, edx: u32, ecx: u32) -> Result<[u8; 12], Detail> {
    let mut vendor = [0u8; 12];
    vendor[..4].copy_from_slice(&ebx.to_le_bytes());
    vendor[4..8].copy_from_slice(&edx.to_le_bytes());
    vendor[8..].copy_from_slice(&ecx.to_le_bytes());
    if vendor.iter().any(|b| !(0x20..0x7f).contains(b)) || vendor.iter().all(|&b| b == b' ') {
        return Err(detail!("vendor {ebx:#010x} {edx:#010x} {ecx:#010x} is not printable"));
    }
    Ok(vendor)
}

pub mod acpi;

/// Reading the boot information: the Multiboot v1 structures (spec §3.3).
pub mod multiboot {
    use super::Detail;
    use core::ops::Range;

    pub const BOOTLOADER_MAGIC: u32 = 0x2bad_b002;
    pub const FLAG_MEMORY: u32 = 1 << 0;
    pub const FLAG_CMDLINE: u32 = 1 << 2;
    pub const FLAG_MODS: u32 = 1 << 3;
    pub const FLAG_MMAP: u32 = 1 << 6;
    pub const FLAG_LOADER_NAME: u32 = 1 << 9;
    /// Memory-map type of usable RAM.
    pub const AVAILABLE: u32 = 1;
    /// Memory-map type of reserved memory (ROM, firmware tables).
    pub const RESERVED: u32 = 2;
    /// More entries than any sane memory map has.
    pub const MAX_MMAP_ENTRIES: usize = 128;
    pub const MAX_MODULES: u32 = 64;

    /// Guest-physical memory as the kernel sees it (identity-mapped).
    pub trait Memory {
        /// Fills `out` from `addr`; false if any byte is not readable.
        fn read(&self, addr: u64, out: &mut [u8]) -> bool;

        fn u32_at(&self, addr: u64) -> Option<u32> {
            let mut b = [0; 4];
            self.read(addr, &mut b).then_some(u32::from_le_bytes(b))
        }

        fn u64_at(&self, addr: u64) -> Option<u64> {
            let mut b = [0; 8];
            self.read(addr, &mut b).then_some(u64::from_le_bytes(b))
        }
    }

    /// A byte buffer standing for memory from `base`.
    pub struct Buffer<'a> {
        pub base: u64,
        pub bytes: &'a [u8],
    }

    impl Memory for Buffer<'_> {
        fn read(&self, addr: u64, out: &mut [u8]) -> bool {
            let Some(start) = addr.checked_sub(self.base).and_then(|s| usize::try_from(s).ok()) else {
                return false;
            };
            match start.checked_add(out.len()).and_then(|end| self.bytes.get(start..end)) {
                Some(bytes) => {
                    out.copy_from_slice(bytes);
                    true
                }
                None => false,
            }
        }
    }

    /// The fields of the information the tests use.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Info {
        pub flags: u32,
        pub mem_lower: u32,
        pub mem_upper: u32,
        pub cmdline: u32,
        pub mods_count: u32,
        pub mods_addr: u32,
        pub mmap_length: u32,
        pub mmap_addr: u32,
        pub boot_loader_name: u32,
    }

    pub fn read_info<M: Memory>(mem: &M, addr: u64) -> Option<Info> {
        let f = |offset| mem.u32_at(addr + offset);
        Some(Info {
            flags: f(0)?,
            mem_lower: f(4)?,
            mem_upper: f(8)?,
            cmdline: f(16)?,
            mods_count: f(20)?,
            mods_addr: f(24)?,
            mmap_length: f(44)?,
            mmap_addr: f(48)?,
            boot_loader_name: f(64)?,
        })
    }

    /// A NUL-terminated string at `addr`, read into `buf`: `None` if it is
    /// unreadable, longer than `buf`, or not UTF-8.
    pub fn c_string<'b, M: Memory>(mem: &M, addr: u64, buf: &'b mut [u8]) -> Option<&'b str> {
        for i in 0..buf.len() {
            let mut b = [0];
            if !mem.read(addr + i as u64, &mut b) {
                return None;
            }
            if b[0] == 0 {
                return core::str::from_utf8(&buf[..i]).ok();
            }
            buf[i] = b[0];
        }
        None
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct MmapEntry {
        pub base: u64,
        pub len: u64,
        pub kind: u32,
    }

    impl MmapEntry {
        pub fn end(&self) -> u64 {
            self.base.saturating_add(self.len)
        }

        pub fn contains(&self, range: &Range<u64>) -> bool {
            self.base <= range.start && range.end <= self.end()
        }
    }

    /// Calls `each` for every memory-map entry (each is `size` + 4 bytes).
    pub fn for_each_mmap<M: Memory>(mem: &M, info: &Info, mut each: impl FnMut(MmapEntry)) -> Result<(), Detail> {
        let (start, end) = (u64::from(info.mmap_addr), u64::from(info.mmap_addr) + u64::from(info.mmap_length));
        let mut at = start;
        let mut count = 0;
        while at < end {
            let size = mem.u32_at(at).ok_or(detail!("mmap entry at {at:#x} unreadable"))?;
            if size < 20 {
                return Err(detail!("mmap entry at {at:#x} has size {size}"));
            }
            count += 1;
            if count > MAX_MMAP_ENTRIES {
                return Err(detail!("more than {MAX_MMAP_ENTRIES} mmap entries"));
            }
            let entry = (mem.u64_at(at + 4), mem.u64_at(at + 12), mem.u32_at(at + 20));
            let (Some(base), Some(len), Some(kind)) = entry else {
                return Err(detail!("mmap entry at {at:#x} unreadable"));
            };
            each(MmapEntry { base, len, kind });
            at += u64::from(size) + 4;
        }
        Ok(())
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Module {
        pub start: u32,
        pub end: u32,
        pub string: u32,
    }

    pub fn module<M: Memory>(mem: &M, info: &Info, index: u32) -> Option<Module> {
        let at = u64::from(info.mods_addr) + 16 * u64::from(index);
        Some(Module { start: mem.u32_at(at)?, end: mem.u32_at(at + 4)?, string: mem.u32_at(at + 8)? })
    }

    /// What [`check`] found.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Summary {
        pub info: Info,
        /// Bytes of available RAM in the memory map.
        pub available: u64,
        /// End of the highest available region.
        pub ram_end: u64,
        pub mmap_entries: usize,
    }

    /// Checks the boot information against the Multiboot v1 specification
    /// and this kernel's header (which asks for page-aligned modules and
    /// memory information): the magic, `mem_*` and the memory map present,
    /// the kernel image in available RAM, the information outside it, and
    /// every module page-aligned, well-formed and apart from the kernel.
    pub fn check<M: Memory>(mem: &M, magic: u32, info_addr: u64, kernel: Range<u64>) -> Result<Summary, Detail> {
        if magic != BOOTLOADER_MAGIC {
            return Err(detail!("magic {magic:#x}, expected {BOOTLOADER_MAGIC:#x}"));
        }
        let info = read_info(mem, info_addr).ok_or(detail!("information at {info_addr:#x} unreadable"))?;
        if info_addr < kernel.end && kernel.start < info_addr + 88 {
            return Err(detail!("information at {info_addr:#x} overlaps the kernel"));
        }
        let wanted = FLAG_MEMORY | FLAG_MMAP;
        if info.flags & wanted != wanted {
            return Err(detail!("flags {:#x} lack mem_* or mmap", info.flags));
        }
        if info.mem_lower > 640 || info.mem_upper == 0 {
            return Err(detail!("mem_lower {} KiB, mem_upper {} KiB", info.mem_lower, info.mem_upper));
        }
        let (mut available, mut ram_end, mut entries, mut holds_kernel) = (0u64, 0u64, 0usize, false);
        for_each_mmap(mem, &info, |e| {
            entries += 1;
            if e.kind == AVAILABLE {
                available = available.saturating_add(e.len);
                ram_end = ram_end.max(e.end());
                holds_kernel |= e.contains(&kernel);
            }
        })?;
        if available == 0 {
            return Err(detail!("no available RAM in the memory map ({entries} entries)"));
        }
        if !holds_kernel {
            return Err(detail!("kernel {:#x}..{:#x} not in available RAM", kernel.start, kernel.end));
        }
        if info.flags & FLAG_MODS != 0 {
            if info.mods_count > MAX_MODULES {
                return Err(detail!("{} modules", info.mods_count));
            }
            for i in 0..info.mods_count {
                let m = module(mem, &info, i).ok_or(detail!("module {i} unreadable"))?;
                let range = u64::from(m.start)..u64::from(m.end);
                if m.start % 4096 != 0 {
                    return Err(detail!("module {i} at {:#x} not page-aligned", m.start));
                }
                if m.end < m.start {
                    return Err(detail!("module {i} ends at {:#x} before its start {:#x}", m.end, m.start));
                }
                if range.start < kernel.end && kernel.start < range.end {
                    return Err(detail!("module {i} {:#x}..{:#x} overlaps the kernel", m.start, m.end));
                }
            }
        }
        Ok(Summary { info, available, ram_end, mmap_entries: entries })
    }

    /// The first page at or past the end of available RAM that no memory-map
    /// entry covers: where nothing should be.
    pub fn past_ram<M: Memory>(mem: &M, summary: &Summary) -> u64 {
        let round = |a: u64| a.saturating_add(4095) & !4095;
        let mut at = round(summary.ram_end);
        for _ in 0..MAX_MMAP_ENTRIES {
            let mut moved = false;
            let _ = for_each_mmap(mem, &summary.info, |e| {
                if e.base <= at && at < e.end() {
                    at = round(e.end());
                    moved = true;
                }
            });
            if !moved {
                break;
            }
        }
        at
    }
}

/// The isolation test's record: [`isolation::PREFIX`] and the mark, padded
/// with zeros to [`isolation::RECORD_LEN`] bytes, at [`isolation::ADDRESS`].
pub mod isolation;
pub mod state;

pub mod tlfs;

pub mod hostile;

#[cfg(test)]
mod tests;
