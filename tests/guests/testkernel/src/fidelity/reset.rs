//! Fidelity: reset (`tests=fidelity-reset`, alone in its partition; not in
//! the fidelity group). The partition restarts on each way a PC guest
//! resets the machine, and the boot counter it keeps in battery-backed
//! CMOS RAM (byte 0x40) tells the boots apart:
//! 1. the reset control register: 0x06 to port 0xCF9 (Intel PIIX4
//!    datasheet 4.1.17, RC: SYS_RST with RST_CPU going 0 to 1);
//! 2. the 8042's reset line: command 0xFE at port 0x64 (IBM PC/AT
//!    Technical Reference, keyboard controller commands; Linux `reboot=k`);
//! 3. the FADT's reset register, RESET_VALUE at RESET_REG (ACPI 6.5
//!    4.8.3.6, 5.2.9: an I/O port);
//! 4. `HV_X64_MSR_RESET` (TLFS 2.4.4 AccessResetReg);
//! 5. a triple fault (SDM 3A 6.15, interrupt 8: a fault delivering #DF
//!    shuts the processor down, which the PC turns into a reset);
//! 6. the count: it came back after 5 resets.
//!
//! With `on_reset=stop` on the command line (its partition's policy is
//! `"stop"`), boot 1 resets by 0xCF9 and must not come back.

use super::rtc::{read as cmos, write as set_cmos};
use super::{Outcome, checks};
use crate::hw;
use crate::println;
use guest_testkernel::detail;
use guest_testkernel::protocol::{KBC_COMMAND, RESET_CONTROL, RESET_PORT};
use guest_testkernel::tlfs::{cpuid, msr};

/// The CMOS byte that counts boots (0 on the partition's first).
const BOOT_COUNTER: u8 = 0x40;
/// A RAM word outside the kernel image: zero at each boot (the VID zeroes
/// guest RAM before loading the guest again), then marked.
const RAM_MARK: u64 = 0x00c0_0000;
const MARK: [u8; 8] = *b"BOOTMARK";
/// The FADT's RESET_VALUE.
const ACPI_RESET_VALUE: u8 = 1;
/// Time a reset may take to end this boot before the test gives up.
const RESET_WAIT_MS: u64 = 2000;
/// The resets, in boot order.
const SOURCES: [&str; 5] =
    ["port 0xCF9", "the keyboard controller", "the ACPI reset register", "HV_X64_MSR_RESET", "a triple fault"];

pub fn run(cmdline: &str) -> Outcome {
    let mut c = checks();
    let previous = cmos(BOOT_COUNTER);
    let boot = previous.wrapping_add(1);
    let mut mark = [0u8; 8];
    hw::read_ram(RAM_MARK, &mut mark);
    println!("testkernel: fidelity-reset: boot {boot}");
    if guest_testkernel::option(cmdline, "on_reset") == Some("stop") {
        if boot != 1 {
            c.fail("a partition whose policy is stop does not come back after a reset", detail!("boot {boot}"));
            return c.finish();
        }
        set_cmos(BOOT_COUNTER, boot);
        println!("testkernel: fidelity-reset: resetting by port 0xCF9; the partition must end");
        reset_by(0);
        c.fail("port 0xCF9 resets", detail!("still running {RESET_WAIT_MS} ms after 0x06"));
        return c.finish();
    }
    if boot > 1 {
        let by = SOURCES.get(usize::from(previous) - 1).copied().unwrap_or("?");
        c.require(
            "the boot counter in CMOS RAM survives the reset (MC146818A Address map: battery-backed RAM)",
            Ok(detail!("boot {boot}, after a reset by {by}")),
        );
        c.require(
            "guest RAM is cleared at a restart (the VID loads the guest again over zeroed RAM)",
            crate::checks::fail_unless(mark == [0; 8], detail!("{RAM_MARK:#x} still holds {mark:?}")),
        );
        c.require("processor state at its power-on values after a reset (SDM 3A 10.1.1 table 10-1)", power_on_state());
    }
    hw::write_ram(RAM_MARK, &MARK);
    if usize::from(previous) == SOURCES.len() {
        c.require(
            "came back after 5 resets, one by each source",
            Ok(detail!("{}, {}, {}, {}, {}", SOURCES[0], SOURCES[1], SOURCES[2], SOURCES[3], SOURCES[4])),
        );
        return c.finish();
    }
    if usize::from(previous) > SOURCES.len() {
        c.fail("boot counter", detail!("{previous} boots counted: the partition restarted too often"));
        return c.finish();
    }
    set_cmos(BOOT_COUNTER, boot);
    let source = usize::from(previous);
    dirty_state();
    println!("testkernel: fidelity-reset: resetting by {}", SOURCES[source]);
    reset_by(source);
    c.fail(SOURCES[source], detail!("still running {RESET_WAIT_MS} ms after the reset"));
    c.finish()
}

/// Marks state a reset must put back to its power-on value (SDM 3A 10.1.1
/// table 10-1): XMM registers and MXCSR, DR0, and MSRs the guest owns.
fn dirty_state() {
    hw::state::enable_sse();
    hw::state::set_xmm(&[STATE_MARK as u128; 16]);
    hw::state::set_mxcsr(MXCSR_RESET | MXCSR_FTZ);
    hw::state::set_dr(0, STATE_MARK);
    for (msr, _, _) in MSRS_AT_RESET {
        let _ = hw::wrmsr_checked(msr, if msr == PAT { PAT_MARK } else { STATE_MARK });
    }
}

/// The state [`dirty_state`] marked, at its power-on values again.
fn power_on_state() -> crate::checks::Check {
    hw::state::enable_sse();
    let xmm = hw::state::xmm();
    if let Some(n) = xmm.iter().position(|&x| x != 0) {
        return Err(detail!("XMM{n} {:#x}", xmm[n]));
    }
    let mxcsr = hw::state::mxcsr();
    if mxcsr != MXCSR_RESET {
        return Err(detail!("MXCSR {mxcsr:#x}, not {MXCSR_RESET:#x}"));
    }
    let dr0 = hw::state::dr(0);
    if dr0 != 0 {
        return Err(detail!("DR0 {dr0:#x}"));
    }
    for (msr, name, reset) in MSRS_AT_RESET {
        match hw::rdmsr_checked(msr) {
            Ok(value) if value == reset => {}
            other => return Err(detail!("{name} {other:x?}, not {reset:#x}")),
        }
    }
    Ok(detail!("XMM0-15, MXCSR, DR0, PAT, LSTAR, KERNEL_GS_BASE, SYSENTER_EIP"))
}

/// A canonical marker for [`dirty_state`].
const STATE_MARK: u64 = 0x0000_7e55_e4a0_5eed;
const MXCSR_RESET: u32 = 0x1f80;
const MXCSR_FTZ: u32 = 1 << 15;
const PAT: u32 = 0x277;
/// Write-back everywhere: a valid PAT unlike the power-on one.
const PAT_MARK: u64 = 0x0606_0606_0606_0606;
/// MSRs a guest writes freely, with their power-on values.
const MSRS_AT_RESET: [(u32, &str, u64); 4] = [
    (PAT, "IA32_PAT", 0x0007_0406_0007_0406),
    (0xc000_0082, "IA32_LSTAR", 0),
    (0xc000_0102, "IA32_KERNEL_GS_BASE", 0),
    (0x176, "IA32_SYSENTER_EIP", 0),
];

/// Resets by `SOURCES[source]`; returns only if the machine did not reset.
fn reset_by(source: usize) {
    match source {
        0 => {
            hw::outb(RESET_CONTROL, 0x02);
            hw::outb(RESET_CONTROL, 0x06);
        }
        1 => {
            // Input buffer empty first, as Linux's kb_wait.
            for _ in 0..0x10000 {
                if hw::inb(KBC_COMMAND) & 0x02 == 0 {
                    break;
                }
            }
            hw::outb(KBC_COMMAND, 0xfe);
        }
        2 => hw::outb(RESET_PORT, ACPI_RESET_VALUE),
        3 => {
            let features = hw::cpuid(cpuid::FEATURES, 0);
            if features.eax & cpuid::privilege::ACCESS_RESET_REG == 0 {
                println!(
                    "testkernel: fidelity-reset: FAIL AccessResetReg not offered (CPUID 0x40000003 EAX {:#x})",
                    features.eax
                );
                return;
            }
            let _ = hw::wrmsr_checked(msr::RESET, 1);
        }
        _ => hw::triple_fault(),
    }
    hw::spin(hw::tsc_hz() / 1000 * RESET_WAIT_MS, u64::MAX);
}
