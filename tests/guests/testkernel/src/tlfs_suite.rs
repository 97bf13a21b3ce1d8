//! The TLFS conformance tests (`tests=tlfs`): CPUID discovery, the
//! synthetic MSRs and (in `hypercall.rs`) the hypercalls, against what a
//! partition with `enlightenments = "hyperv"` is offered.
//!
//! Every check prints one line, `testkernel: tlfs: <what>: ok`,
//! `... : FAIL <detail>`, or `... : informational: <text>` for what the
//! test observes but does not require (something the TLFS leaves open, or
//! that depends on what the partition is not offered). A test passes only
//! if all its required checks pass. Without the Hyper-V interface (CPUID
//! 0x40000000 is not "Microsoft Hv", e.g. directly under QEMU) each test
//! fails at once with one line saying so.

mod eoi_assist;
mod hypercall;
mod synic;
pub use eoi_assist::interrupt as eoi_assist_interrupt;
pub use hypercall::hypercall_bench;
pub use synic::{interrupt as synic_interrupt, stimers, synic};

pub use hypercall::hypercalls;

use crate::hw::hv::Page;
use crate::hw::{self, Fault};
use crate::println;
use core::sync::atomic::{AtomicBool, Ordering};
use guest_testkernel::tlfs::cpuid::{self as leaf, hypercall_privilege};
use guest_testkernel::tlfs::{self, Verdict, msr};
use guest_testkernel::{Detail, detail};

type Outcome = Result<(), Detail>;

use crate::checks::{Check, fail_unless, ok};

/// The checks of one TLFS test, reported as `testkernel: tlfs: ...`.
type Checks = crate::checks::Checks;

/// The Hyper-V interface is there (leaf 1 ECX bit 31, leaf 0x40000000
/// "Microsoft Hv"); otherwise why not, for the fail-fast line.
pub(crate) fn interface() -> Result<u32, Detail> {
    if hw::cpuid(1, 0).ecx & leaf::LEAF1_ECX_HYPERVISOR == 0 {
        return Err(detail!("no hypervisor (CPUID 1 ECX bit 31 clear)"));
    }
    let hv = hw::cpuid(leaf::VENDOR_AND_MAX, 0);
    let vendor = tlfs::leaf_string(hv.ebx, hv.ecx, hv.edx);
    if vendor != leaf::VENDOR {
        let shown = tlfs::printable::<12>(&vendor);
        return Err(detail!("no Hyper-V interface (CPUID 0x40000000: \"{shown}\")"));
    }
    Ok(hv.eax)
}

/// Runs `test` if the interface is there; else one FAIL line and out.
fn with_interface(what: &str, test: impl FnOnce(&mut Checks)) -> Outcome {
    let mut checks = Checks::new("tlfs");
    if let Err(why) = interface() {
        println!("{}", tlfs::check_line(what, Verdict::Fail(why.as_str())));
        return Err(why);
    }
    test(&mut checks);
    checks.finish()
}

fn rdmsr(name: &str, msr: u32) -> Result<u64, Detail> {
    hw::rdmsr_checked(msr).map_err(|f| detail!("rdmsr {name} raised {f}"))
}

fn wrmsr(name: &str, msr: u32, value: u64) -> Result<(), Detail> {
    hw::wrmsr_checked(msr, value).map_err(|f| detail!("wrmsr {name} := {value:#x} raised {f}"))
}

fn expect_gp(result: Result<(), Fault>, access: &str) -> Check {
    match result {
        Err(f) if f.is_gp() => ok(),
        Err(f) => Err(detail!("{access} raised {f}, expected #GP")),
        Ok(()) => Err(detail!("{access} did not fault, expected #GP")),
    }
}

fn expect_eq(what: &str, got: u64, want: u64) -> Check {
    fail_unless(got == want, detail!("{what} is {got:#x}, expected {want:#x}"))
}

// ---- CPUID ---------------------------------------------------------------

pub fn cpuid() -> Outcome {
    let mut c = Checks::new("tlfs");
    let hypervisor = hw::cpuid(1, 0).ecx & leaf::LEAF1_ECX_HYPERVISOR != 0;
    c.require("CPUID 1 ECX bit 31 (hypervisor present)", fail_unless(hypervisor, detail!("clear")));
    let hv = hw::cpuid(leaf::VENDOR_AND_MAX, 0);
    let vendor = tlfs::leaf_string(hv.ebx, hv.ecx, hv.edx);
    let shown = tlfs::printable::<12>(&vendor);
    let is_hv = vendor == leaf::VENDOR;
    if !c.require(
        "CPUID 0x40000000 vendor \"Microsoft Hv\"",
        fail_unless(is_hv, detail!("\"{shown}\": no Hyper-V interface")),
    ) {
        return c.finish();
    }
    c.require(
        "CPUID 0x40000000 max leaf >= 0x40000005",
        fail_unless(hv.eax >= leaf::MIN_MAX_LEAF, detail!("{:#x}", hv.eax)),
    );
    let signature = hw::cpuid(leaf::INTERFACE, 0).eax;
    c.require(
        "CPUID 0x40000001 interface \"Hv#1\"",
        fail_unless(
            signature.to_le_bytes() == leaf::SIGNATURE,
            detail!("\"{}\"", tlfs::printable::<4>(&signature.to_le_bytes())),
        ),
    );

    let f = hw::cpuid(leaf::FEATURES, 0);
    let missing = tlfs::bits_not_matching::<96>(f.eax, &leaf::REQUIRED_PRIVILEGES, true);
    c.require(
        "CPUID 0x40000003 EAX privileges offered",
        fail_unless(missing.as_str().is_empty(), detail!("EAX {:#x} lacks {missing}", f.eax)),
    );
    // The SynIC and timers are optional (in "hyperv", not in a partition
    // that turns them off): tlfs-synic and tlfs-stimer check them when offered.
    let present = tlfs::bits_not_matching::<96>(f.eax, &leaf::ABSENT_PRIVILEGES, false);
    c.info(
        "CPUID 0x40000003 EAX SynIC and synthetic timers",
        format_args!("{}", if present.as_str().is_empty() { "not offered" } else { present.as_str() }),
    );
    let vp_registers = f.ebx & hypercall_privilege::ACCESS_VP_REGISTERS != 0;
    let messaging = hypercall_privilege::POST_MESSAGES | hypercall_privilege::SIGNAL_EVENTS;
    let others = f.ebx & !(hypercall_privilege::ACCESS_VP_REGISTERS | messaging);
    c.require(
        "CPUID 0x40000003 EBX: at most AccessVpRegisters, PostMessages and SignalEvents",
        fail_unless(others == 0, detail!("EBX {:#x}", f.ebx)),
    );
    // Messages and events arrive through the SynIC: both privileges come
    // with it, neither without it.
    let synic = f.eax & leaf::privilege::ACCESS_SYNIC_REGS != 0;
    let want = if synic { messaging } else { 0 };
    c.require(
        "CPUID 0x40000003 EBX PostMessages and SignalEvents with the SynIC",
        fail_unless(
            f.ebx & messaging == want,
            detail!("EBX {:#x}, SynIC {}", f.ebx, if synic { "offered" } else { "not offered" }),
        ),
    );
    c.info(
        "AccessVpRegisters",
        format_args!(
            "{}",
            if vp_registers {
                "offered: Get/SetVpRegisters(self) must succeed"
            } else {
                "not offered: Get/SetVpRegisters(self) are denied"
            }
        ),
    );
    let missing = tlfs::bits_not_matching::<96>(f.edx, &leaf::REQUIRED_FEATURES, true);
    c.require(
        "CPUID 0x40000003 EDX features",
        fail_unless(missing.as_str().is_empty(), detail!("EDX {:#x} lacks {missing}", f.edx)),
    );
    let r = hw::cpuid(leaf::RECOMMENDATIONS, 0);
    let missing = tlfs::bits_not_matching::<96>(r.eax, &leaf::REQUIRED_RECOMMENDATIONS, true);
    c.require(
        "CPUID 0x40000004 EAX recommendations",
        fail_unless(missing.as_str().is_empty(), detail!("EAX {:#x} lacks {missing}", r.eax)),
    );
    c.info("spinlock retries", format_args!("{:#x}", r.ebx));
    let v = hw::cpuid(leaf::VERSION, 0);
    c.info("version leaf", format_args!("{:#x} {:#x} {:#x} {:#x}", v.eax, v.ebx, v.ecx, v.edx));
    let l = hw::cpuid(leaf::LIMITS, 0);
    c.info("limits leaf", format_args!("max VPs {}, max LPs {}", l.eax, l.ebx));
    c.finish()
}

// ---- MSRs ----------------------------------------------------------------

/// Set once this kernel wrote `HV_X64_MSR_GUEST_OS_ID` (a second run of
/// the test finds it set by the first).
static GUEST_OS_ID_WRITTEN: AtomicBool = AtomicBool::new(false);

fn set_guest_os_id(value: u64) -> Result<(), Detail> {
    GUEST_OS_ID_WRITTEN.store(true, Ordering::Relaxed);
    wrmsr("GUEST_OS_ID", msr::GUEST_OS_ID, value)
}

/// Enables the hypercall page on [`Page::Hypercall`] (setting the guest OS
/// identity first if it is zero, TLFS 3.13) and checks that it starts with
/// VMCALL or VMMCALL and RET, so it can be called.
pub fn hypercall_page() -> Result<tlfs::HypercallInstruction, Detail> {
    if rdmsr("GUEST_OS_ID", msr::GUEST_OS_ID)? == 0 {
        set_guest_os_id(tlfs::GUEST_OS_ID_LINUX)?;
    }
    let value = Page::Hypercall.addr() | msr::PAGE_ENABLE;
    wrmsr("HYPERCALL", msr::HYPERCALL, value)?;
    let back = rdmsr("HYPERCALL", msr::HYPERCALL)?;
    if back & (msr::PAGE_GPA_MASK | msr::PAGE_ENABLE) != value {
        return Err(detail!("HYPERCALL reads {back:#x} after writing {value:#x}"));
    }
    let mut bytes = [0; 4];
    Page::Hypercall.read(0, &mut bytes);
    tlfs::hypercall_sequence(bytes)
}

/// Enables an overlay page through its MSR and reads the MSR back.
fn overlay(name: &str, msr: u32, page: Page) -> Check {
    let value = page.addr() | msr::PAGE_ENABLE;
    wrmsr(name, msr, value)?;
    let back = rdmsr(name, msr)?;
    fail_unless(
        back & (msr::PAGE_GPA_MASK | msr::PAGE_ENABLE) == value,
        detail!("reads {back:#x} after writing {value:#x}"),
    )
}

/// Overlay `name` (MSR `number`) put on [`Page::Output`], which holds a
/// pattern: the page reads the overlay's contents, and the pattern again
/// once the overlay moves back (the hypercall page) or is disabled.
fn uncovers(name: &str, number: u32) -> Check {
    let pattern = |at: usize| (at as u8).wrapping_mul(31) ^ 0x5c;
    for at in (0..4096).step_by(8) {
        let bytes: [u8; 8] = core::array::from_fn(|i| pattern(at + i));
        Page::Output.write(at, &bytes);
    }
    let intact = || {
        (0..4096).step_by(8).all(|at| {
            let mut bytes = [0u8; 8];
            Page::Output.read(at, &mut bytes);
            bytes.iter().enumerate().all(|(i, &b)| b == pattern(at + i))
        })
    };
    let old = rdmsr(name, number)?;
    wrmsr(name, number, Page::Output.addr() | msr::PAGE_ENABLE)?;
    let covered = !intact();
    let mut first = [0u8; 4];
    Page::Output.read(0, &mut first);
    if number == msr::HYPERCALL {
        tlfs::hypercall_sequence(first).map_err(|e| detail!("the overlay reads {first:02x?}: {e:?}"))?;
        wrmsr(name, number, old)?;
    } else {
        wrmsr(name, number, Page::Output.addr())?;
    }
    let back = intact();
    // The RAM is back writable (the hypercall page withheld writes).
    let writable = hw::write8_checked(Page::Output.addr(), pattern(0)).is_ok();
    // Back where the rest of the run expects it.
    wrmsr(name, number, old)?;
    fail_unless(
        covered && back && writable,
        detail!("the pattern covered {covered}, back after {back}, writable after {writable}"),
    )
}

/// CRASH_P0 of the crash notification the msr test sends (P1..P4 follow).
pub const CRASH_MARK: u64 = 0x7e55_0000;

pub fn msrs() -> Outcome {
    with_interface("synthetic MSRs", |c| {
        guest_os_id_and_hypercall_page(c);
        vp_index(c);
        time(c);
        let assist = overlay("VP_ASSIST_PAGE", msr::VP_ASSIST_PAGE, Page::VpAssist);
        if c.require("VP_ASSIST_PAGE enable and read back", assist) {
            eoi_assist::check(c);
        }
        c.require(
            "hypercall page over RAM covers it; moved away, the RAM is back (5.2.1)",
            uncovers("HYPERCALL", msr::HYPERCALL),
        );
        c.require(
            "VP assist page over RAM covers it; disabled, the RAM is back (5.2.1)",
            uncovers("VP_ASSIST_PAGE", msr::VP_ASSIST_PAGE),
        );
        let crash = rdmsr("CRASH_CTL", msr::CRASH_CTL)
            .and_then(|v| fail_unless(v & msr::CRASH_NOTIFY != 0, detail!("{v:#x} lacks CrashNotify (bit 63)")));
        c.require("CRASH_CTL offers CrashNotify", crash);
        c.require("CRASH_P0 readable", rdmsr("CRASH_P0", msr::CRASH_P0).map(|v| detail!("{v:#x}")));
        // A crash notification (TLFS 4.3): P0..P4, then CrashNotify. The
        // partition manager logs the five values; the guest goes on.
        let notify = (0..5u32)
            .try_for_each(|i| wrmsr("CRASH_Pn", msr::CRASH_P0 + i, CRASH_MARK + u64::from(i)))
            .and_then(|()| wrmsr("CRASH_CTL", msr::CRASH_CTL, msr::CRASH_NOTIFY))
            .map(|()| detail!("P0..P4 = {CRASH_MARK:#x}.."));
        c.require("crash notification through CRASH_P0..P4 and CRASH_CTL", notify);
        c.require("RESET readable (not written)", rdmsr("RESET", msr::RESET).map(|v| detail!("{v:#x}")));
        match hw::rdmsr_checked(msr::TPR) {
            Ok(v) => c.info("TPR", format_args!("reads {v:#x}")),
            Err(f) => c.info("TPR", format_args!("rdmsr raised {f}")),
        }
        // The SynIC's and timers' MSRs: #GP unless offered (tlfs-synic and
        // tlfs-stimer check them either way).
        let eax = hw::cpuid(leaf::FEATURES, 0).eax;
        for (what, number, bit) in [
            ("rdmsr SCONTROL (not offered) raises #GP", msr::SCONTROL, leaf::privilege::ACCESS_SYNIC_REGS),
            (
                "rdmsr STIMER0_CONFIG (not offered) raises #GP",
                msr::STIMER0_CONFIG,
                leaf::privilege::ACCESS_SYNTHETIC_TIMER_REGS,
            ),
        ] {
            if eax & bit == 0 {
                c.require(what, expect_gp(hw::rdmsr_checked(number).map(|_| ()), "rdmsr"));
            }
        }
        match hw::rdmsr_checked(0x4000_00ff) {
            Err(f) => c.info("rdmsr 0x400000FF (no TLFS MSR)", format_args!("raised {f}")),
            Ok(v) => c.info("rdmsr 0x400000FF (no TLFS MSR)", format_args!("read {v:#x}, no fault")),
        }
        c.info("GUEST_IDLE", format_args!("not exercised (a read idles the VP)"));
    })
}

fn guest_os_id_and_hypercall_page(c: &mut Checks) {
    match rdmsr("GUEST_OS_ID", msr::GUEST_OS_ID) {
        Ok(0) => c.require("GUEST_OS_ID is 0 before the guest writes it (2.6)", ok()),
        Ok(v) if GUEST_OS_ID_WRITTEN.load(Ordering::Relaxed) => {
            c.info("GUEST_OS_ID initial value", format_args!("{v:#x}, written by an earlier test"));
            true
        }
        other => c.require("GUEST_OS_ID is 0 before the guest writes it (2.6)", other.map(|v| detail!("{v:#x}"))),
    };
    let enable = Page::Hypercall.addr() | msr::PAGE_ENABLE;
    let refused = set_guest_os_id(0)
        .and_then(|()| wrmsr("HYPERCALL", msr::HYPERCALL, enable))
        .and_then(|()| rdmsr("HYPERCALL", msr::HYPERCALL))
        .and_then(|v| fail_unless(v & msr::PAGE_ENABLE == 0, detail!("reads {v:#x}: enabled")));
    c.require("HYPERCALL enable ignored while GUEST_OS_ID is 0 (3.13)", refused);
    let id = tlfs::GUEST_OS_ID_LINUX;
    let written = set_guest_os_id(id).and_then(|()| rdmsr("GUEST_OS_ID", msr::GUEST_OS_ID));
    c.require("GUEST_OS_ID write and read back", written.and_then(|v| expect_eq("GUEST_OS_ID", v, id)));

    let instruction = match hypercall_page() {
        Ok(i) => {
            c.require("HYPERCALL page: VMCALL or VMMCALL, then RET", Ok(detail!("{}", i.name())));
            i
        }
        Err(why) => {
            c.require("HYPERCALL page: VMCALL or VMMCALL, then RET", Err(why));
            return;
        }
    };
    let l0 = hw::cpuid(0, 0);
    let vendor = tlfs::leaf_string(l0.ebx, l0.edx, l0.ecx);
    let shown = tlfs::printable::<12>(&vendor);
    match tlfs::vendor_instruction(&vendor) {
        Some(want) if want == instruction => {
            c.info("hypercall instruction", format_args!("{} matches vendor \"{shown}\"", instruction.name()))
        }
        Some(want) => c.info(
            "hypercall instruction",
            format_args!("{} but vendor \"{shown}\" executes {}", instruction.name(), want.name()),
        ),
        None => c.info("hypercall instruction", format_args!("{}; vendor \"{shown}\" unknown", instruction.name())),
    }
    // TLFS 3.13: "Attempts to write to the hypercall page will result in
    // a protection (#GP) exception." The byte written is a different one,
    // so a write that went through would show.
    let mut first = [0u8];
    Page::Hypercall.read(0, &mut first);
    let refused = expect_gp(hw::write8_checked(Page::Hypercall.addr(), !first[0]), "mov to the page").and_then(|_| {
        let mut after = [0u8];
        Page::Hypercall.read(0, &mut after);
        fail_unless(after == first, detail!("the byte is {:#x}, was {:#x}", after[0], first[0]))
    });
    c.require("write to the hypercall page raises #GP, the page unchanged (3.13)", refused);

    let cleared = set_guest_os_id(0)
        .and_then(|()| rdmsr("HYPERCALL", msr::HYPERCALL))
        .and_then(|v| fail_unless(v & msr::PAGE_ENABLE == 0, detail!("HYPERCALL still reads {v:#x}")));
    c.require("GUEST_OS_ID := 0 disables the hypercall page (2.6)", cleared);
    let again = hypercall_page().map(|i| detail!("{}", i.name()));
    c.require("GUEST_OS_ID set again, page enabled again", again);
}

fn vp_index(c: &mut Checks) {
    let index = rdmsr("VP_INDEX", msr::VP_INDEX).and_then(|v| expect_eq("VP_INDEX", v, 0));
    c.require("VP_INDEX is 0 on the boot VP", index);
    for (what, number) in [
        ("wrmsr VP_INDEX (read-only) raises #GP", msr::VP_INDEX),
        ("wrmsr TIME_REF_COUNT (read-only, 12.4) raises #GP", msr::TIME_REF_COUNT),
        ("wrmsr TSC_FREQUENCY (read-only) raises #GP", msr::TSC_FREQUENCY),
        ("wrmsr APIC_FREQUENCY (read-only) raises #GP", msr::APIC_FREQUENCY),
    ] {
        c.require(what, expect_gp(hw::wrmsr_checked(number, 0), "wrmsr"));
    }
}

/// TSC ticks for a busy loop of about 50 ms (or 2^26 without a frequency).
fn busy_ticks(tsc_hz: u64) -> u64 {
    if tsc_hz == 0 { 1 << 26 } else { tsc_hz / 20 }
}

fn time(c: &mut Checks) {
    let tsc_hz = rdmsr("TSC_FREQUENCY", msr::TSC_FREQUENCY);
    let apic_hz = rdmsr("APIC_FREQUENCY", msr::APIC_FREQUENCY);
    let nonzero = |r: &Result<u64, Detail>| match r {
        Ok(0) => Err(detail!("reads 0")),
        Ok(v) => Ok(detail!("{v} Hz")),
        Err(e) => Err(e.clone()),
    };
    c.require("TSC_FREQUENCY non-zero", nonzero(&tsc_hz));
    c.require("APIC_FREQUENCY non-zero", nonzero(&apic_hz));
    let tsc_hz = tsc_hz.unwrap_or(0);

    // Two reads back to back: about the cost of one MSR exit.
    let (Ok(r0), Ok(r1)) = (rdmsr("TIME_REF_COUNT", msr::TIME_REF_COUNT), rdmsr("TIME_REF_COUNT", msr::TIME_REF_COUNT))
    else {
        c.require("TIME_REF_COUNT readable", Err(detail!("rdmsr raised a fault")));
        return;
    };
    let exit_cost = r1.wrapping_sub(r0);
    let run0 = rdmsr("VP_RUNTIME", msr::VP_RUNTIME);
    // Each end of the busy loop is a TSC pair around a TIME_REF_COUNT
    // read: the reference delta lies between the TSC's inner and outer
    // spans, however long the VP was not running around either read.
    let ta = hw::rdtsc();
    let r1 = rdmsr("TIME_REF_COUNT", msr::TIME_REF_COUNT).unwrap_or(0);
    let tb = hw::rdtsc();
    hw::spin(busy_ticks(tsc_hz), 1 << 32);
    let tc = hw::rdtsc();
    let r2 = rdmsr("TIME_REF_COUNT", msr::TIME_REF_COUNT).unwrap_or(0);
    let td = hw::rdtsc();
    let run1 = rdmsr("VP_RUNTIME", msr::VP_RUNTIME);
    let delta = r2.wrapping_sub(r1);
    c.require(
        "TIME_REF_COUNT increases across a busy loop",
        fail_unless(r2 > r1 && delta < 1 << 40, detail!("{r1} then {r2}")).map(|_| detail!("+{delta} in 100 ns")),
    );
    let inner = tlfs::expected_reference_delta(tc.wrapping_sub(tb), tsc_hz);
    let outer = tlfs::expected_reference_delta(td.wrapping_sub(ta), tsc_hz);
    let consistent = tsc_hz != 0 && tlfs::within_bracket(delta, inner, outer, 25, 10_000);
    c.require(
        "TIME_REF_COUNT agrees with TSC_FREQUENCY",
        fail_unless(consistent, detail!("+{delta}, TSC says +{inner} to +{outer}, exit {exit_cost}"))
            .map(|_| detail!("+{delta}, TSC says +{inner} to +{outer}")),
    );
    let runtime = match (run0, run1) {
        (Ok(a), Ok(b)) => fail_unless(b >= a, detail!("{a} then {b}")).map(|_| detail!("{a} then {b}")),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    c.require("VP_RUNTIME readable and non-decreasing", runtime);

    c.require("REFERENCE_TSC enable and read back", overlay("REFERENCE_TSC", msr::REFERENCE_TSC, Page::ReferenceTsc));
    reference_tsc_page(c, 10_000);
}

/// Reads the reference TSC page (TLFS 12.7.3) and compares its time with
/// TIME_REF_COUNT read right before and right after: it lies between the
/// two, give or take `tolerance`.
fn reference_tsc_page(c: &mut Checks, tolerance: u64) {
    let page = Page::ReferenceTsc;
    let before = rdmsr("TIME_REF_COUNT", msr::TIME_REF_COUNT).unwrap_or(0);
    let mut tries = 0;
    let (sequence, scale, offset, reference) = loop {
        tries += 1;
        let sequence = page.read_u32(0);
        let (scale, offset) = (page.read_u64(8), page.read_u64(16) as i64);
        let reference = tlfs::reference_time(hw::rdtsc(), scale, offset);
        if sequence == page.read_u32(0) || tries == 16 {
            break (sequence, scale, offset, reference);
        }
    };
    let count = rdmsr("TIME_REF_COUNT", msr::TIME_REF_COUNT).unwrap_or(0);
    c.info("reference TSC page", format_args!("sequence {sequence}, scale {scale:#x}, offset {offset}"));
    if sequence == 0 {
        c.info("reference TSC page", format_args!("sequence 0: invalid, not compared (12.7.3)"));
        return;
    }
    let between = tlfs::within_bracket(reference, before, count, 0, tolerance);
    c.require(
        "reference TSC page vs TIME_REF_COUNT",
        fail_unless(between, detail!("page {reference}, MSR {before} before and {count} after, allowed {tolerance}"))
            .map(|_| {
                detail!(
                    "{} after the MSR before, {} before the MSR after",
                    reference.wrapping_sub(before) as i64,
                    count.wrapping_sub(reference) as i64
                )
            }),
    );
}
