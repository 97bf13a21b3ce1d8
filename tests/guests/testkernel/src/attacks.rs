//! The hostile guest (`tests=hostile`): attacks on the VID and the kernel
//! from inside a partition, each a test that passes if the machine answered
//! as the TLFS and the architecture say (an all-ones read, a #GP, a status)
//! and prints what it tried: `testkernel: hostile-<name>: ...`.
//!
//! What the attacks must not do is visible only outside: ring 0 never
//! faults, the neighbour partition's canaries stay and its suite passes,
//! the console stays whole, the VID bounds and reports what this partition
//! did (`tests/hostile_guest.rs` checks all that on the serial log).
//!
//! Every random choice comes from `seed=` ([`hostile::rng`], one stream
//! per attack), printed first, so a run can be repeated exactly.

mod exceptions;
mod flood;
mod gpa;
mod hypercall;
mod insn;
mod logs;
mod loops;
mod msr;
mod overlay;
mod ports;
mod sipi;
mod virt;

use crate::hw::{self, Fault};
use crate::println;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, Ordering};
use guest_testkernel::hostile::{self, Tally};
use guest_testkernel::multiboot::{self, Summary};
use guest_testkernel::tlfs::cpuid as hv_cpuid;
use guest_testkernel::{Detail, Test, detail, option};

type Outcome = Result<(), Detail>;

/// What every attack knows of its partition.
pub struct Ctx<'a> {
    pub seed: u64,
    pub cmdline: &'a str,
    /// VPs (`cpus=`, 1 without).
    pub cpus: u32,
    pub summary: Summary,
    pub info: u64,
    pub kernel: Range<u64>,
    /// The first page past RAM that no memory-map entry covers.
    pub past_ram: u64,
    /// Available RAM: below 640 KiB, and from 1 MiB.
    pub ram: [Range<u64>; 2],
    /// The partition offers the Hyper-V interface.
    pub hyperv: bool,
    pub intel: bool,
}

impl Ctx<'_> {
    /// A random stream of its own for `test`.
    pub fn rng(&self, test: Test) -> fastrand::Rng {
        hostile::rng(self.seed, test as u64)
    }

    /// TSC ticks in `ms` milliseconds ([`hw::tsc_hz`]).
    pub fn tsc_ticks(&self, ms: u64) -> u64 {
        hw::tsc_hz() / 1000 * ms
    }

    /// A free page below 640 KiB (for AP start-up code) other than `taken`.
    pub fn low_page(&self, taken: &[u64]) -> Result<u64, Detail> {
        guest_testkernel::smp::free_low_page(&hw::Identity, &self.summary, self.info, &self.kernel, taken)
    }
}

static ANNOUNCED: AtomicBool = AtomicBool::new(false);

/// Runs hostile test `test`.
pub fn run(test: Test, magic: u32, info: u64, cmdline: &str) -> Outcome {
    let ctx = context(magic, info, cmdline)?;
    if !ANNOUNCED.swap(true, Ordering::Relaxed) {
        hw::hostile_traps();
        hw::state::enable_sse();
        quiet_lapic();
        println!(
            "testkernel: hostile: seed {:#x}, {} CPUs, RAM ends at {:#x}, Hyper-V interface {}",
            ctx.seed,
            ctx.cpus,
            ctx.past_ram,
            if ctx.hyperv { "offered" } else { "absent" }
        );
    }
    match test {
        Test::HostileGpa => gpa::run(&ctx),
        Test::HostileOverlay => overlay::run(&ctx),
        Test::HostileHypercall => hypercall::run(&ctx),
        Test::HostileMsr => msr::run(&ctx),
        Test::HostileInsn => insn::run(&ctx),
        Test::HostileExceptions => exceptions::run(&ctx),
        Test::HostilePorts => ports::run(&ctx),
        Test::HostileSipi => sipi::run(&ctx),
        Test::HostileLogs => logs::run(&ctx),
        Test::HostileFlood => flood::run(&ctx),
        Test::HostileLoops => loops::run(&ctx),
        Test::HostileVirt => virt::run(&ctx),
        other => Err(detail!("{} is not an attack", other.name())),
    }
}

fn context<'a>(magic: u32, info: u64, cmdline: &'a str) -> Result<Ctx<'a>, Detail> {
    let kernel = hw::kernel_extent();
    let summary = multiboot::check(&hw::Identity, magic, info, kernel.clone())?;
    let past_ram = multiboot::past_ram(&hw::Identity, &summary);
    let cpus = match option(cmdline, "cpus") {
        Some(_) => guest_testkernel::smp::cpus_option(cmdline)?,
        None => 1,
    };
    let leaf0 = hw::cpuid(0, 0);
    let intel = (leaf0.ebx, leaf0.edx, leaf0.ecx) == (0x756e_6547, 0x4965_6e69, 0x6c65_746e);
    let hv = hw::cpuid(hv_cpuid::VENDOR_AND_MAX, 0);
    let vendor = guest_testkernel::tlfs::leaf_string(hv.ebx, hv.ecx, hv.edx);
    let hyperv = hw::cpuid(1, 0).ecx & hv_cpuid::LEAF1_ECX_HYPERVISOR != 0 && vendor == hv_cpuid::VENDOR;
    Ok(Ctx {
        seed: hostile::seed_option(cmdline)?,
        cmdline,
        cpus,
        summary,
        info,
        kernel,
        past_ram,
        ram: [0..0xa_0000, 0x10_0000..summary.ram_end],
        hyperv,
        intel,
    })
}

/// Prints an attack's informational line: `testkernel: hostile-<name>: <text>`.
macro_rules! say {
    ($test:expr, $($arg:tt)*) => {
        $crate::println!("testkernel: {}: {}", $test.name(), format_args!($($arg)*))
    };
}
pub(crate) use say;

/// The failures of one attack: each is printed as it happens (the first
/// few), and the attack fails with their count.
pub struct Failures {
    test: Test,
    count: u32,
    started: u64,
}

/// Failures printed one by one before only their count is kept.
const SHOWN_FAILURES: u32 = 8;

impl Failures {
    pub fn new(test: Test) -> Failures {
        Failures { test, count: 0, started: hw::rdtsc() }
    }

    /// Records a failure (shown if among the first few).
    pub fn fail(&mut self, why: Detail) {
        self.count += 1;
        if self.count <= SHOWN_FAILURES {
            say!(self.test, "FAIL {why}");
        }
    }

    /// Records `why` unless `ok`.
    pub fn require(&mut self, ok: bool, why: impl FnOnce() -> Detail) {
        if !ok {
            self.fail(why());
        }
    }

    /// The attack's outcome, with its tally and its time in the summary line.
    pub fn finish(self, tally: &Tally) -> Outcome {
        let ms = hw::rdtsc().wrapping_sub(self.started) / (hw::tsc_hz() / 1000).max(1);
        say!(self.test, "{tally} in {ms} ms");
        match self.count {
            0 => Ok(()),
            n => Err(detail!("{n} failures (the first {} above)", n.min(SHOWN_FAILURES))),
        }
    }
}

/// Software-enables the BSP's local APIC with its task priority at 15, so
/// the fixed interrupts the attacks send it (on any vector, some the CPU's
/// own) stay pending instead of being delivered; the 8259's ExtINT
/// (the PIT, for waits) is not subject to it.
pub fn quiet_lapic() {
    use guest_testkernel::smp::lapic;
    crate::ap::enable_lapic();
    hw::write32(lapic::BASE + lapic::TPR, 0xf0);
    // LINT0 takes the 8259's ExtINT (the PIT), as firmware leaves it; a
    // global disable of the APIC (the MSR attack) masks it.
    hw::write32(lapic::BASE + lapic::LVT_LINT0, 0x700);
}

impl Ctx<'_> {
    /// Busy-waits until `done()` or `ms` milliseconds (TSC) passed; the
    /// milliseconds waited. Interrupts stay off: the attacks leave their
    /// interrupt controllers in any state.
    pub fn wait(&self, ms: u64, done: impl Fn() -> bool) -> u64 {
        let (start, limit) = (hw::rdtsc(), self.tsc_ticks(ms));
        while !done() && hw::rdtsc().wrapping_sub(start) < limit {
            core::hint::spin_loop();
        }
        hw::rdtsc().wrapping_sub(start) / self.tsc_ticks(1).max(1)
    }
}

/// The vector a fault must have been.
pub fn is_vector(fault: Option<Fault>, vector: u8) -> bool {
    fault.is_some_and(|f| f.vector == vector)
}

pub const UD: u8 = 6;
pub const GP: u8 = 13;
pub const PF: u8 = 14;
