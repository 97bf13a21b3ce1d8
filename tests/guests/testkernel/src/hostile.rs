//! The hostile tests' pure logic (`tests=hostile`): the seed every random
//! case derives from, the random hypercalls and the statuses the TLFS
//! allows for each, the MSRs and ports the attacks spray, the canaries the
//! neighbour partition checks, and the tallies each attack prints.
//!
//! A hostile run is deterministic for its seed: `seed=<n>` on the command
//! line (decimal or `0x` hex; [`DEFAULT_SEED`] without one), printed at the
//! start. Each attack draws from its own stream ([`rng`]), so adding cases
//! to one leaves the others' cases unchanged.

use crate::{Detail, option};
use core::fmt;

pub mod hypercall;

/// The seed of a run without `seed=`.
pub const DEFAULT_SEED: u64 = 0x7e55_e4a0_5eed_0001;

/// The value of `seed=`: decimal or `0x` hex, [`DEFAULT_SEED`] if absent.
pub fn seed_option(cmdline: &str) -> Result<u64, Detail> {
    let Some(text) = option(cmdline, "seed") else { return Ok(DEFAULT_SEED) };
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse::<u64>(),
    };
    parsed.map_err(|_| detail!("seed={text}: expected a decimal or 0x-hex number"))
}

/// The random stream of one attack: the run's seed mixed with the attack's
/// own number, so each attack's cases depend only on the seed.
pub fn rng(seed: u64, stream: u64) -> fastrand::Rng {
    fastrand::Rng::with_seed(mix(seed ^ mix(stream.wrapping_add(1))))
}

/// SplitMix64's finaliser: a bijection that spreads every input bit.
pub const fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What one attack tried and what the machine refused (a fault injected, a
/// failure status), for its summary line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub tried: u64,
    pub refused: u64,
}

impl Tally {
    /// Counts one attempt, refused or not.
    pub fn note(&mut self, refused: bool) {
        self.tried += 1;
        self.refused += u64::from(refused);
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} tried, {} refused", self.tried, self.refused)
    }
}

/// A value to write to an MSR or a register: the extremes, a random
/// number, a canonical address, or `around` with a few bits flipped.
pub fn wild_value(rng: &mut fastrand::Rng, around: u64) -> u64 {
    match rng.u8(0..6) {
        0 => 0,
        1 => u64::MAX,
        2 => rng.u64(..),
        3 => canonical(rng.u64(..)),
        4 => around ^ (1 << rng.u32(0..64)),
        _ => around ^ rng.u64(..) & rng.u64(..) & rng.u64(..),
    }
}

/// `value` made a canonical 48-bit address (bits 63:47 copies of bit 47).
pub const fn canonical(value: u64) -> u64 {
    (((value << 16) as i64) >> 16) as u64
}

/// True if `value` is a canonical 48-bit address.
pub const fn is_canonical(value: u64) -> bool {
    canonical(value) == value
}

/// The MSRs the `hostile-msr` attack reads and writes.
pub mod msr {
    /// What the guest may expect of an MSR.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Kind {
        /// Guest state the CPU loads and saves with the VP (the syscall,
        /// SYSENTER and FS/GS-base MSRs): a canonical value reads back as
        /// written, a non-canonical address is #GP.
        Guest { address: bool },
        /// State of the host or the machine. Whatever the guest writes must
        /// stay in the guest (virtualized, ignored or #GP): the hypervisor,
        /// the host and other partitions never see it.
        Host,
    }

    /// (number, name, kind). Every MSR of the list, and the usual
    /// suspects of hypervisor advisories.
    pub const LIST: &[(u32, &str, Kind)] = &[
        (0x0000_0010, "TSC", Kind::Host),
        (0x0000_001b, "APIC_BASE", Kind::Host),
        (0x0000_003a, "FEATURE_CONTROL", Kind::Host),
        (0x0000_003b, "TSC_ADJUST", Kind::Host),
        (0x0000_0048, "SPEC_CTRL", Kind::Host),
        (0x0000_0049, "PRED_CMD", Kind::Host),
        (0x0000_0079, "BIOS_UPDT_TRIG", Kind::Host),
        (0x0000_008b, "BIOS_SIGN_ID", Kind::Host),
        (0x0000_009e, "SMBASE", Kind::Host),
        (0x0000_00c1, "PMC0", Kind::Host),
        (0x0000_00e7, "MPERF", Kind::Host),
        (0x0000_00e8, "APERF", Kind::Host),
        (0x0000_00fe, "MTRRCAP", Kind::Host),
        (0x0000_010a, "ARCH_CAPABILITIES", Kind::Host),
        (0x0000_010b, "FLUSH_CMD", Kind::Host),
        (0x0000_0122, "TSX_CTRL", Kind::Host),
        (0x0000_0174, "SYSENTER_CS", Kind::Guest { address: false }),
        (0x0000_0175, "SYSENTER_ESP", Kind::Guest { address: true }),
        (0x0000_0176, "SYSENTER_EIP", Kind::Guest { address: true }),
        (0x0000_0179, "MCG_CAP", Kind::Host),
        (0x0000_017a, "MCG_STATUS", Kind::Host),
        (0x0000_017b, "MCG_CTL", Kind::Host),
        (0x0000_0186, "PERFEVTSEL0", Kind::Host),
        (0x0000_0199, "PERF_CTL", Kind::Host),
        (0x0000_019a, "CLOCK_MODULATION", Kind::Host),
        (0x0000_01a0, "MISC_ENABLE", Kind::Host),
        (0x0000_01d9, "DEBUGCTL", Kind::Host),
        (0x0000_0200, "MTRR_PHYSBASE0", Kind::Host),
        (0x0000_0201, "MTRR_PHYSMASK0", Kind::Host),
        (0x0000_0250, "MTRR_FIX64K", Kind::Host),
        (0x0000_0277, "PAT", Kind::Host),
        (0x0000_02ff, "MTRR_DEF_TYPE", Kind::Host),
        (0x0000_0309, "FIXED_CTR0", Kind::Host),
        (0x0000_038d, "FIXED_CTR_CTRL", Kind::Host),
        (0x0000_038f, "PERF_GLOBAL_CTRL", Kind::Host),
        (0x0000_0400, "MC0_CTL", Kind::Host),
        (0x0000_0401, "MC0_STATUS", Kind::Host),
        (0x0000_0480, "VMX_BASIC", Kind::Host),
        (0x0000_0570, "RTIT_CTL", Kind::Host),
        (0x0000_0600, "DS_AREA", Kind::Host),
        (0x0000_06e0, "TSC_DEADLINE", Kind::Host),
        (0x0000_0802, "X2APIC_ID", Kind::Host),
        (0x0000_080b, "X2APIC_EOI", Kind::Host),
        (0x0000_0830, "X2APIC_ICR", Kind::Host),
        (0x0000_0da0, "XSS", Kind::Host),
        (0xc000_0081, "STAR", Kind::Guest { address: false }),
        (0xc000_0082, "LSTAR", Kind::Guest { address: true }),
        (0xc000_0083, "CSTAR", Kind::Guest { address: true }),
        (0xc000_0084, "SFMASK", Kind::Guest { address: false }),
        (0xc000_0100, "FS_BASE", Kind::Guest { address: true }),
        (0xc000_0101, "GS_BASE", Kind::Guest { address: true }),
        (0xc000_0102, "KERNEL_GS_BASE", Kind::Guest { address: true }),
        (0xc000_0103, "TSC_AUX", Kind::Host),
        (0xc001_0010, "SYSCFG", Kind::Host),
        (0xc001_0015, "HWCR", Kind::Host),
        (0xc001_001a, "TOP_MEM", Kind::Host),
        (0xc001_001d, "TOP_MEM2", Kind::Host),
        (0xc001_0111, "SMM_BASE", Kind::Host),
        (0xc001_0112, "SMM_ADDR", Kind::Host),
        (0xc001_0113, "SMM_MASK", Kind::Host),
        (0xc001_0114, "VM_CR", Kind::Host),
        (0xc001_0117, "VM_HSAVE_PA", Kind::Host),
        (0xc001_0200, "PERF_CTL0", Kind::Host),
        (0xc001_0201, "PERF_CTR0", Kind::Host),
    ];

    /// EFER bits a guest may set: SCE (0), LME (8), NXE (11). LMA (10) is
    /// the CPU's and a write leaves it as it is; every other bit is #GP
    /// for this guest (SVME and the rest describe features it is not
    /// offered).
    pub const EFER: u32 = 0xc000_0080;
    pub const EFER_SCE: u64 = 1 << 0;
    pub const EFER_LME: u64 = 1 << 8;
    pub const EFER_LMA: u64 = 1 << 10;
    pub const EFER_NXE: u64 = 1 << 11;

    /// Whether a WRMSR of `value` to EFER must raise #GP, for a guest in
    /// long mode with paging on (so LME cannot change) that has `nx`
    /// (CPUID 0x8000_0001 EDX bit 20). The current value is `current`.
    pub const fn efer_write_faults(current: u64, value: u64, nx: bool) -> bool {
        let allowed = EFER_SCE | EFER_LME | EFER_LMA | if nx { EFER_NXE } else { 0 };
        value & !allowed != 0 || (value ^ current) & EFER_LME != 0
    }
}

/// The `hostile-ports` sweep: which ports it must not write, because the
/// VID gives a write there a meaning that ends the partition or silences
/// its console (tested on their own elsewhere).
pub mod ports {
    use crate::protocol;

    /// (first port, count, why).
    pub const NOT_WRITTEN: &[(u16, u16, &str)] = &[
        (protocol::TEST_EXIT, 4, "test exit"),
        (protocol::PM1A_CNT, 2, "ACPI S5 power-off"),
        (protocol::RESET_PORT, 1, "ACPI reset"),
        (protocol::KBC_COMMAND, 1, "keyboard controller reset"),
        (protocol::RESET_CONTROL, 1, "0xCF9 reset"),
        (protocol::UART_DATA, 8, "the console"),
    ];

    /// True if the write sweep writes `port` (`width` bytes from it).
    pub fn writable(port: u16, width: u16) -> bool {
        let end = u32::from(port) + u32::from(width);
        NOT_WRITTEN.iter().all(|&(first, count, _)| {
            let (first, last) = (u32::from(first), u32::from(first) + u32::from(count));
            end <= first || u32::from(port) >= last
        })
    }
}

/// The neighbour's canaries: RAM filled with a pattern derived from the
/// seed and each word's address (so checking needs no copy), and register
/// values it sets first and checks last.
pub mod canary {
    use super::mix;

    /// The canary word at guest-physical `addr` (8-byte aligned).
    pub const fn word(seed: u64, addr: u64) -> u64 {
        mix(seed ^ addr.rotate_left(17))
    }

    /// The value of register canary `index` (XMM halves, debug registers,
    /// MSRs), never 0 so a cleared register shows.
    pub const fn register(seed: u64, index: u64) -> u64 {
        mix(seed.wrapping_add(0xca7a_0000).wrapping_add(index)) | 1
    }

    /// The DR7 canary: breakpoint conditions and lengths (31:16), LE and GE
    /// (8, 9) and the always-one bit 10 set, every breakpoint disabled
    /// (7:0 clear) and GD (13) clear, so it never triggers anything.
    pub const fn dr7(seed: u64) -> u64 {
        (register(seed, 99) & 0xffff_0000) | 0x700
    }
}

#[cfg(test)]
mod tests;
