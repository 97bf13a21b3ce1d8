//! Machine checks on this CPU: MCA set up at boot, the banks read and
//! cleared, and what a #MC does (`kerncore::mce::decide`).
//!
//! A #MC in the host arrives through the IDT on its own IST stack; one
//! while a guest runs is intercepted by both backends and handled here as
//! the host's ([`on_guest_exit`]), never given to the guest.

use super::cpu::CpuInfo;
use core::sync::atomic::{AtomicU32, Ordering::Relaxed};
use kerncore::mce::{Context, Decision, MAX_BANKS, McStatus, McgCap, McgStatus, Verdict, decide, msr};
use x86::controlregs::{Cr4, cr4, cr4_write};
use x86::msr::{rdmsr, wrmsr};

/// Banks the kernel reads: MCG_CAP.Count (at most `MAX_BANKS`), 0 without MCA.
static BANKS: AtomicU32 = AtomicU32::new(0);

/// What `init` found, for the boot log.
pub struct Setup {
    /// CPUID reports machine-check exceptions (CR4.MCE is now set).
    pub exceptions: bool,
    pub banks: u32,
    /// Banks that held an error from before this boot (logged, cleared).
    pub stale: u32,
}

fn read(index: u32) -> u64 {
    // SAFETY: only called for MCA MSRs below MCG_CAP.Count, which exist
    // because CPUID reports MCA (`init` checks it before storing BANKS).
    unsafe { rdmsr(index) }
}

fn write(index: u32, value: u64) {
    // SAFETY: as for `read`. Writes enable error reporting (CTL all ones)
    // or clear a bank's status (0), which the SDM allows at any time.
    unsafe { wrmsr(index, value) }
}

/// Enables machine-check exceptions (CR4.MCE: without it a #MC shuts the
/// CPU down) and, with MCA, reporting in every bank, after logging and
/// clearing what the banks held from before this boot.
pub fn init(info: &CpuInfo) -> Setup {
    let mut setup = Setup { exceptions: info.machine_check, banks: 0, stale: 0 };
    if !info.machine_check {
        return setup;
    }
    if info.machine_check_architecture {
        let cap = McgCap::from(read(msr::IA32_MCG_CAP));
        let banks = u32::from(cap.count()).min(MAX_BANKS as u32);
        if cap.ctl_present() {
            write(msr::IA32_MCG_CTL, u64::MAX);
        }
        let intel = info.vendor.as_str() == "GenuineIntel";
        for bank in 0..banks {
            if kerncore::mce::may_write_bank_ctl(intel, info.family, info.model, bank) {
                write(msr::bank_ctl(bank), u64::MAX);
            }
            let status = read(msr::bank_status(bank));
            if McStatus::from(status).val() {
                platform::println!("mce: bank {bank} held status {status:#018x} from before this boot; cleared");
                setup.stale += 1;
            }
            write(msr::bank_status(bank), 0);
        }
        write(msr::IA32_MCG_STATUS, 0);
        BANKS.store(banks, Relaxed);
        setup.banks = banks;
    }
    // SAFETY: CR4.MCE only turns a machine check from a shutdown into a
    // #MC, whose IDT gate (vector 18, own IST stack) is installed.
    unsafe { cr4_write(cr4() | Cr4::CR4_ENABLE_MACHINE_CHECK) };
    setup
}

/// MCG_STATUS and the banks as they are now.
struct Snapshot {
    mcg: McgStatus,
    status: [McStatus; MAX_BANKS],
    count: usize,
}

fn snapshot() -> Snapshot {
    let count = BANKS.load(Relaxed) as usize;
    let mut s = Snapshot {
        mcg: McgStatus::from(if count > 0 { read(msr::IA32_MCG_STATUS) } else { 0 }),
        status: [McStatus::new(); MAX_BANKS],
        count,
    };
    for (bank, status) in s.status.iter_mut().enumerate().take(count) {
        *status = McStatus::from(read(msr::bank_status(bank as u32)));
    }
    s
}

/// Clears the banks that held errors and MCG_STATUS (MCIP: a second #MC
/// while it is set shuts the CPU down).
fn clear(s: &Snapshot) {
    if s.count == 0 {
        return;
    }
    for (bank, status) in s.status.iter().enumerate().take(s.count) {
        if status.val() {
            write(msr::bank_status(bank as u32), 0);
        }
    }
    write(msr::IA32_MCG_STATUS, 0);
}

/// Writes the report: what was interrupted, each bank holding an error,
/// the verdict. `out` is the console writer the context allows.
fn report(out: fn(core::fmt::Arguments<'_>), place: &str, s: &Snapshot, d: Decision) {
    out(format_args!("mce: machine check {place}: MCG_STATUS {:#x}\n", u64::from(s.mcg)));
    for (bank, status) in s.status.iter().enumerate().take(s.count).filter(|(_, st)| st.val()) {
        let addr = if status.addrv() { read(msr::bank_addr(bank as u32)) } else { 0 };
        out(format_args!("mce:   bank {bank}: status {:#018x}, address {addr:#x}\n", u64::from(*status)));
    }
    let what = match d.verdict {
        Verdict::Continue => "going on",
        Verdict::StopPartition => "stopping the partition",
        Verdict::Halt => "halting the machine",
    };
    out(format_args!("mce: {}: {what}\n", d.why));
}

/// The #MC handler (vector 18, on its IST stack): the host's own error.
/// Only a corrected or empty report returns; anything else halts.
pub fn on_exception(rip: u64, from_user: bool) {
    let s = snapshot();
    let d = decide(Context::Host, s.mcg, &s.status[..s.count]);
    let place = if from_user { "in ring 3" } else { "in ring 0" };
    // The #MC may have cut a console line short: start on a fresh one.
    platform::console_write_emergency(format_args!("\n"));
    report(platform::console_write_emergency, place, &s, d);
    if d.verdict != Verdict::Continue {
        platform::console_write_emergency(format_args!("mce: at rip {rip:#x}\n"));
        platform::power_off(platform::ExitStatus::CpuException);
    }
    clear(&s);
}

/// A #MC intercepted while a guest ran (ordinary kernel context, right
/// after the exit). Halts the machine itself when the verdict says so.
pub fn on_guest_exit(partition: u32) -> Verdict {
    let s = snapshot();
    let d = decide(Context::Guest, s.mcg, &s.status[..s.count]);
    let mut place: heapless::String<40> = heapless::String::new();
    let _ = core::fmt::Write::write_fmt(&mut place, format_args!("while partition {partition} ran"));
    report(platform::console_write, &place, &s, d);
    if d.verdict == Verdict::Halt {
        platform::power_off(platform::ExitStatus::CpuException);
    }
    clear(&s);
    d.verdict
}
