//! What the `tlfs` tests expect of a partition with the Hyper-V interface
//! (`enlightenments = "hyperv"`), read from the TLFS 6.0b (section numbers
//! given), and the pure helpers of those tests.
//!
//! These numbers are written here from the specification on purpose, not
//! taken from the `tlfs` crate the VID is built on: a conformance test that
//! shared the implementation's constants could not catch a wrong one. The
//! host tests compare the two (`src/tlfs/tests.rs`), so they cannot drift
//! apart unnoticed.

use crate::{Detail, Text};
use core::fmt::Write;

/// CPUID leaves and bits (TLFS 2.4).
pub mod cpuid {
    /// Leaf 1 ECX: a hypervisor is present.
    pub const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
    /// Vendor and maximum leaf; EBX, ECX, EDX spell [`VENDOR`].
    pub const VENDOR_AND_MAX: u32 = 0x4000_0000;
    pub const VENDOR: [u8; 12] = *b"Microsoft Hv";
    /// The lowest maximum leaf a TLFS hypervisor reports (TLFS 3.13 step 2).
    pub const MIN_MAX_LEAF: u32 = 0x4000_0005;
    /// Interface signature in EAX: [`SIGNATURE`].
    pub const INTERFACE: u32 = 0x4000_0001;
    pub const SIGNATURE: [u8; 4] = *b"Hv#1";
    pub const VERSION: u32 = 0x4000_0002;
    /// EAX/EBX: `HV_PARTITION_PRIVILEGE_MASK`; EDX: features.
    pub const FEATURES: u32 = 0x4000_0003;
    /// EAX: recommendations; EBX: spinlock retries.
    pub const RECOMMENDATIONS: u32 = 0x4000_0004;
    pub const LIMITS: u32 = 0x4000_0005;

    /// `HV_PARTITION_PRIVILEGE_MASK` (TLFS 4.2.2), bits 0..31 (EAX).
    pub mod privilege {
        pub const ACCESS_VP_RUN_TIME_REG: u32 = 1 << 0;
        pub const ACCESS_PARTITION_REFERENCE_COUNTER: u32 = 1 << 1;
        pub const ACCESS_SYNIC_REGS: u32 = 1 << 2;
        pub const ACCESS_SYNTHETIC_TIMER_REGS: u32 = 1 << 3;
        pub const ACCESS_INTR_CTRL_REGS: u32 = 1 << 4;
        pub const ACCESS_HYPERCALL_MSRS: u32 = 1 << 5;
        pub const ACCESS_VP_INDEX: u32 = 1 << 6;
        pub const ACCESS_RESET_REG: u32 = 1 << 7;
        pub const ACCESS_PARTITION_REFERENCE_TSC: u32 = 1 << 9;
        pub const ACCESS_GUEST_IDLE_REG: u32 = 1 << 10;
        pub const ACCESS_FREQUENCY_REGS: u32 = 1 << 11;
    }

    /// `HV_PARTITION_PRIVILEGE_MASK` bits 32..63, as bits of EBX.
    pub mod hypercall_privilege {
        /// Bit 36: HvPostMessage.
        pub const POST_MESSAGES: u32 = 1 << 4;
        /// Bit 37: HvSignalEvent.
        pub const SIGNAL_EVENTS: u32 = 1 << 5;
        /// Bit 48: AccessVsm (15.3.1).
        pub const ACCESS_VSM: u32 = 1 << 16;
        /// Bit 49: HvGetVpRegisters/HvSetVpRegisters on the partition itself.
        pub const ACCESS_VP_REGISTERS: u32 = 1 << 17;
        /// Bit 52: the extended hypercalls (0x8001 and up).
        pub const ENABLE_EXTENDED_HYPERCALLS: u32 = 1 << 20;
    }

    /// Leaf 0x40000003 EDX (TLFS 2.4.4).
    pub mod features {
        pub const GUEST_IDLE: u32 = 1 << 5;
        pub const FREQUENCY_REGS: u32 = 1 << 8;
        pub const GUEST_CRASH_MSRS: u32 = 1 << 10;
    }

    /// Leaf 0x40000004 EAX (TLFS 2.4.5).
    pub mod recommend {
        pub const REMOTE_FLUSH_HYPERCALL: u32 = 1 << 2;
        pub const APIC_MSRS: u32 = 1 << 3;
        pub const RESET_MSR: u32 = 1 << 4;
        pub const RELAXED_TIMING: u32 = 1 << 5;
        pub const SYNTHETIC_CLUSTER_IPI: u32 = 1 << 10;
        pub const EX_PROCESSOR_MASKS: u32 = 1 << 11;
    }

    /// Privileges (EAX) the `hyperv` profile offers.
    pub const REQUIRED_PRIVILEGES: [(u32, &str); 9] = [
        (privilege::ACCESS_VP_RUN_TIME_REG, "AccessVpRunTimeReg"),
        (privilege::ACCESS_PARTITION_REFERENCE_COUNTER, "AccessPartitionReferenceCounter"),
        (privilege::ACCESS_INTR_CTRL_REGS, "AccessIntrCtrlRegs"),
        (privilege::ACCESS_HYPERCALL_MSRS, "AccessHypercallMsrs"),
        (privilege::ACCESS_VP_INDEX, "AccessVpIndex"),
        (privilege::ACCESS_RESET_REG, "AccessResetReg"),
        (privilege::ACCESS_PARTITION_REFERENCE_TSC, "AccessPartitionReferenceTsc"),
        (privilege::ACCESS_GUEST_IDLE_REG, "AccessGuestIdleReg"),
        (privilege::ACCESS_FREQUENCY_REGS, "AccessFrequencyRegs"),
    ];
    /// Privileges (EAX) for what Tessera does not implement.
    pub const ABSENT_PRIVILEGES: [(u32, &str); 2] = [
        (privilege::ACCESS_SYNIC_REGS, "AccessSynicRegs"),
        (privilege::ACCESS_SYNTHETIC_TIMER_REGS, "AccessSyntheticTimerRegs"),
    ];
    pub const REQUIRED_FEATURES: [(u32, &str); 3] = [
        (features::GUEST_IDLE, "GuestIdle"),
        (features::FREQUENCY_REGS, "FrequencyRegs"),
        (features::GUEST_CRASH_MSRS, "GuestCrashMsrs"),
    ];
    pub const REQUIRED_RECOMMENDATIONS: [(u32, &str); 6] = [
        (recommend::REMOTE_FLUSH_HYPERCALL, "remote flush hypercall"),
        (recommend::APIC_MSRS, "APIC MSRs"),
        (recommend::RESET_MSR, "reset MSR"),
        (recommend::RELAXED_TIMING, "relaxed timing"),
        (recommend::SYNTHETIC_CLUSTER_IPI, "synthetic cluster IPI"),
        (recommend::EX_PROCESSOR_MASKS, "Ex processor masks"),
    ];
}

/// Synthetic MSRs (TLFS Appendix C).
pub mod msr {
    pub const GUEST_OS_ID: u32 = 0x4000_0000;
    pub const HYPERCALL: u32 = 0x4000_0001;
    pub const VP_INDEX: u32 = 0x4000_0002;
    pub const RESET: u32 = 0x4000_0003;
    pub const VP_RUNTIME: u32 = 0x4000_0010;
    pub const TIME_REF_COUNT: u32 = 0x4000_0020;
    pub const REFERENCE_TSC: u32 = 0x4000_0021;
    pub const TSC_FREQUENCY: u32 = 0x4000_0022;
    pub const APIC_FREQUENCY: u32 = 0x4000_0023;
    pub const EOI: u32 = 0x4000_0070;
    pub const ICR: u32 = 0x4000_0071;
    pub const TPR: u32 = 0x4000_0072;
    pub const VP_ASSIST_PAGE: u32 = 0x4000_0073;
    pub const SCONTROL: u32 = 0x4000_0080;
    pub const SVERSION: u32 = 0x4000_0081;
    pub const SIEFP: u32 = 0x4000_0082;
    pub const SIMP: u32 = 0x4000_0083;
    pub const EOM: u32 = 0x4000_0084;
    /// SINTn is `SINT0 + n`, n < 16.
    pub const SINT0: u32 = 0x4000_0090;
    /// STIMERn_CONFIG is `STIMER0_CONFIG + 2n`, STIMERn_COUNT the next, n < 4.
    pub const STIMER0_CONFIG: u32 = 0x4000_00B0;
    pub const GUEST_IDLE: u32 = 0x4000_00F0;
    pub const CRASH_P0: u32 = 0x4000_0100;
    pub const CRASH_CTL: u32 = 0x4000_0105;

    /// HYPERCALL, REFERENCE_TSC, VP_ASSIST_PAGE: bit 0 enables the overlay
    /// page whose GPA is bits 63:12.
    pub const PAGE_ENABLE: u64 = 1;
    pub const PAGE_GPA_MASK: u64 = !0xfff;
    /// CRASH_CTL bit 63: CrashNotify.
    pub const CRASH_NOTIFY: u64 = 1 << 63;
}

/// Hypercall codes (TLFS Appendix A).
pub mod call {
    pub const FLUSH_VIRTUAL_ADDRESS_SPACE: u16 = 0x0002;
    pub const FLUSH_VIRTUAL_ADDRESS_LIST: u16 = 0x0003;
    pub const NOTIFY_LONG_SPIN_WAIT: u16 = 0x0008;
    pub const SEND_SYNTHETIC_CLUSTER_IPI: u16 = 0x000b;
    pub const FLUSH_VIRTUAL_ADDRESS_SPACE_EX: u16 = 0x0013;
    pub const FLUSH_VIRTUAL_ADDRESS_LIST_EX: u16 = 0x0014;
    pub const SEND_SYNTHETIC_CLUSTER_IPI_EX: u16 = 0x0015;
    pub const GET_VP_REGISTERS: u16 = 0x0050;
    pub const SET_VP_REGISTERS: u16 = 0x0051;
    pub const GET_VP_INDEX_FROM_APIC_ID: u16 = 0x009a;
    /// VSM (TLFS 15.15, Appendix A).
    pub const MODIFY_VTL_PROTECTION_MASK: u16 = 0x000c;
    pub const ENABLE_PARTITION_VTL: u16 = 0x000d;
    pub const ENABLE_VP_VTL: u16 = 0x000f;
    pub const VTL_CALL: u16 = 0x0011;
    pub const VTL_RETURN: u16 = 0x0012;
    pub const EXT_QUERY_CAPABILITIES: u16 = 0x8001;
    /// A code the TLFS does not define.
    pub const UNDEFINED: u16 = 0x7777;
}

/// `HV_STATUS` values (TLFS Appendix B).
pub mod status {
    pub const SUCCESS: u16 = 0;
    pub const INVALID_HYPERCALL_CODE: u16 = 2;
    pub const INVALID_HYPERCALL_INPUT: u16 = 3;
    pub const INVALID_ALIGNMENT: u16 = 4;
    pub const INVALID_PARAMETER: u16 = 5;
    pub const ACCESS_DENIED: u16 = 6;
    pub const OPERATION_DENIED: u16 = 8;
    pub const INVALID_PARTITION_ID: u16 = 0xd;
    pub const INVALID_VP_INDEX: u16 = 0xe;
    pub const INVALID_REGISTER_VALUE: u16 = 0x50;
    /// 6.0b's tables name it (15.15) but its Appendix B gives no value:
    /// this is the Hyper-V headers'.
    pub const INVALID_VTL_STATE: u16 = 0x51;

    /// The status's TLFS name, for messages.
    pub const fn name(status: u16) -> &'static str {
        match status {
            SUCCESS => "SUCCESS",
            INVALID_HYPERCALL_CODE => "INVALID_HYPERCALL_CODE",
            INVALID_HYPERCALL_INPUT => "INVALID_HYPERCALL_INPUT",
            INVALID_ALIGNMENT => "INVALID_ALIGNMENT",
            INVALID_PARAMETER => "INVALID_PARAMETER",
            ACCESS_DENIED => "ACCESS_DENIED",
            7 => "INVALID_PARTITION_STATE",
            8 => "OPERATION_DENIED",
            0xb => "INSUFFICIENT_MEMORY",
            0xd => "INVALID_PARTITION_ID",
            0xe => "INVALID_VP_INDEX",
            0x1e => "FEATURE_UNAVAILABLE",
            0x50 => "INVALID_REGISTER_VALUE",
            INVALID_VTL_STATE => "INVALID_VTL_STATE",
            _ => "?",
        }
    }
}

/// `HV_PARTITION_ID_SELF` (TLFS 4.2.1).
pub const PARTITION_SELF: u64 = u64::MAX;

/// Register names (TLFS 7.8.2).
pub mod register {
    pub const RSP: u32 = 0x0002_0004;
    pub const RIP: u32 = 0x0002_0010;
    pub const RFLAGS: u32 = 0x0002_0011;
    pub const CR0: u32 = 0x0004_0000;
    pub const CR3: u32 = 0x0004_0002;
    pub const CR4: u32 = 0x0004_0003;
    /// The VSM registers (7.8.2, 15.3, 15.5, 15.8).
    pub const VSM_CODE_PAGE_OFFSETS: u32 = 0x000d_0002;
    pub const VSM_VP_STATUS: u32 = 0x000d_0003;
    pub const VSM_PARTITION_STATUS: u32 = 0x000d_0004;
    pub const VSM_CAPABILITIES: u32 = 0x000d_0006;
    pub const VSM_PARTITION_CONFIG: u32 = 0x000d_0007;
}

/// `HV_FLUSH_*` flags (TLFS 9.4.2; 6.0b names them without values, these
/// are the Hyper-V headers').
pub mod flush {
    pub const ALL_PROCESSORS: u64 = 1 << 0;
    pub const ALL_VIRTUAL_ADDRESS_SPACES: u64 = 1 << 1;
    pub const NON_GLOBAL_MAPPINGS_ONLY: u64 = 1 << 2;
}

/// The vector of the synthetic cluster IPI the test sends itself; the trap
/// handler counts it (and acknowledges it at the local APIC).
pub const IPI_VECTOR: u8 = 0x30;
/// A vector below 16, which HvSendSyntheticClusterIpi refuses (TLFS 10.5.2).
pub const BAD_IPI_VECTOR: u8 = 0x05;

/// `HV_GENERIC_SET_FORMAT` (TLFS 7.8.7.3): every VP of the partition.
pub const GENERIC_SET_ALL: u64 = 1;

/// The hypercall input value (TLFS 3.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Control(pub u64);

impl Control {
    const FAST: u64 = 1 << 16;

    /// A memory-based call of `code`, no reps.
    pub const fn new(code: u16) -> Control {
        Control(code as u64)
    }

    /// The register-based (fast) convention: RDX and R8 carry the input.
    pub const fn fast(self) -> Control {
        Control(self.0 | Self::FAST)
    }

    /// Rep count (bits 43:32) and rep start index (59:48), 12 bits each.
    pub const fn reps(self, count: u16, start: u16) -> Control {
        let cleared = self.0 & !(0xfff << 32) & !(0xfff << 48);
        Control(cleared | ((count as u64 & 0xfff) << 32) | ((start as u64 & 0xfff) << 48))
    }

    /// Variable header size (bits 25:17), in 8-byte units.
    pub const fn variable_header(self, qwords: u16) -> Control {
        Control(self.0 & !(0x1ff << 17) | ((qwords as u64 & 0x1ff) << 17))
    }

    /// Sets bits the TLFS reserves (RsvdZ), for the negative tests.
    pub const fn with_bits(self, bits: u64) -> Control {
        Control(self.0 | bits)
    }

    pub const fn rep_count(self) -> u16 {
        ((self.0 >> 32) & 0xfff) as u16
    }

    pub const fn rep_start(self) -> u16 {
        ((self.0 >> 48) & 0xfff) as u16
    }
}

/// A reserved (RsvdZ) bit of the control value: 31 (of 31:27).
pub const CONTROL_RESERVED_BIT: u64 = 1 << 31;
/// Another: 63 (of 63:60).
pub const CONTROL_RESERVED_HIGH_BIT: u64 = 1 << 63;

/// The hypercall result value (TLFS 3.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub status: u16,
    pub reps: u16,
}

impl Outcome {
    pub const fn from_rax(rax: u64) -> Outcome {
        Outcome { status: rax as u16, reps: ((rax >> 32) & 0xfff) as u16 }
    }
}

impl core::fmt::Display for Outcome {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({:#x})", status::name(self.status), self.status)?;
        if self.reps != 0 { write!(f, ", {} reps", self.reps) } else { Ok(()) }
    }
}

/// `expected` or a detail saying what came instead (the expected status
/// is in the check's name).
pub fn expect_status(got: Outcome, expected: u16) -> Result<(), Detail> {
    if got.status == expected { Ok(()) } else { Err(detail!("got {got}")) }
}

/// The guest OS identity the test writes, in the open-source encoding of
/// TLFS 2.6.2: bit 63 open source, OS type 1 (Linux) in 62:56, OS ID 0,
/// version 6.1.0 in 47:16 (Linux's `KERNEL_VERSION` layout), build 0x7e55.
pub const GUEST_OS_ID_LINUX: u64 = (1 << 63) | (1 << 56) | (0x06_01_00 << 16) | 0x7e55;

/// The first bytes of a hypercall page: a 3-byte VMCALL (Intel) or
/// VMMCALL (AMD) then RET (TLFS 3.13: the page returns like `0xC3`).
pub const VMCALL_RET: [u8; 4] = [0x0f, 0x01, 0xc1, 0xc3];
pub const VMMCALL_RET: [u8; 4] = [0x0f, 0x01, 0xd9, 0xc3];

/// Which hypercall instruction a page starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HypercallInstruction {
    Vmcall,
    Vmmcall,
}

impl HypercallInstruction {
    pub const fn name(self) -> &'static str {
        match self {
            HypercallInstruction::Vmcall => "VMCALL",
            HypercallInstruction::Vmmcall => "VMMCALL",
        }
    }
}

/// The instruction of a hypercall page that starts with `bytes`, if they
/// are one of the two sequences.
pub fn hypercall_sequence(bytes: [u8; 4]) -> Result<HypercallInstruction, Detail> {
    match bytes {
        VMCALL_RET => Ok(HypercallInstruction::Vmcall),
        VMMCALL_RET => Ok(HypercallInstruction::Vmmcall),
        _ => Err(detail!("page starts {bytes:02x?}")),
    }
}

/// The instruction the CPU vendor (CPUID leaf 0) executes; `None` for
/// vendors the test does not know.
pub fn vendor_instruction(vendor: &[u8; 12]) -> Option<HypercallInstruction> {
    match vendor {
        b"GenuineIntel" => Some(HypercallInstruction::Vmcall),
        b"AuthenticAMD" | b"HygonGenuine" => Some(HypercallInstruction::Vmmcall),
        _ => None,
    }
}

/// The reference time (100 ns units) a reference TSC page gives for a TSC
/// value (TLFS 12.7.3): `((tsc * scale) >> 64) + offset`.
pub const fn reference_time(tsc: u64, scale: u64, offset: i64) -> u64 {
    ((((tsc as u128) * (scale as u128)) >> 64) as u64).wrapping_add(offset as u64)
}

/// 100 ns units per second.
pub const REFERENCE_HZ: u64 = 10_000_000;

/// The reference-time units `tsc_ticks` should take at `tsc_hz`.
pub const fn expected_reference_delta(tsc_ticks: u64, tsc_hz: u64) -> u64 {
    if tsc_hz == 0 {
        return 0;
    }
    ((tsc_ticks as u128 * REFERENCE_HZ as u128) / tsc_hz as u128) as u64
}

/// True if `got` is within `percent` of `expected`, plus `slack` units.
pub const fn within(got: u64, expected: u64, percent: u64, slack: u64) -> bool {
    let margin = (expected / 100).saturating_mul(percent).saturating_add(slack);
    got.abs_diff(expected) <= margin
}

/// True if `got` lies between `low` and `high` widened by `percent` of
/// each plus `slack` units: a measurement bracketed by two readings of
/// another clock, one pair inside the interval measured and one outside,
/// so time the VP did not run (a host descheduling the emulator) widens
/// the bracket instead of failing the comparison.
pub const fn within_bracket(got: u64, low: u64, high: u64, percent: u64, slack: u64) -> bool {
    let below = (low / 100).saturating_mul(percent).saturating_add(slack);
    let above = (high / 100).saturating_mul(percent).saturating_add(slack);
    got >= low.saturating_sub(below) && got <= high.saturating_add(above)
}

/// The 12 bytes of a vendor string in EBX, ECX, EDX order (leaf 0x40000000;
/// leaf 0 uses EBX, EDX, ECX).
pub fn leaf_string(ebx: u32, ecx: u32, edx: u32) -> [u8; 12] {
    let mut s = [0u8; 12];
    s[..4].copy_from_slice(&ebx.to_le_bytes());
    s[4..8].copy_from_slice(&ecx.to_le_bytes());
    s[8..].copy_from_slice(&edx.to_le_bytes());
    s
}

/// Bytes shown as text, unprintable ones as `.`.
pub fn printable<const N: usize>(bytes: &[u8]) -> Text<N> {
    let mut t = Text::new();
    for &b in bytes {
        let _ = t.write_char(if (0x20..0x7f).contains(&b) { b as char } else { '.' });
    }
    t
}

/// The names of the `(bit, name)` pairs whose bit `value` lacks (or, with
/// `want_set` false, has), comma-separated.
pub fn bits_not_matching<const N: usize>(value: u32, bits: &[(u32, &str)], want_set: bool) -> Text<N> {
    let mut t = Text::new();
    for &(bit, name) in bits {
        if (value & bit != 0) != want_set {
            let _ = write!(t, "{}{name}", if t.as_str().is_empty() { "" } else { ", " });
        }
    }
    t
}

/// What a check came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// Passed; the note (maybe empty) is shown in parentheses.
    Ok(&'a str),
    /// A required check failed, for this reason.
    Fail(&'a str),
    /// Observed, not required.
    Informational(&'a str),
}

/// The longest line a check prints, without its newline.
pub const CHECK_LINE_MAX: usize = crate::protocol::CONSOLE_LINE_MAX - 1;

/// The line a check prints: `testkernel: tlfs: <what>: ok [(<note>)]`,
/// `...: FAIL <why>` or `...: informational: <text>`. The note, reason or
/// text is cut (ending in `..`) so the line fits [`CHECK_LINE_MAX`]; the
/// name and the verdict always stay whole.
pub fn check_line(what: &str, verdict: Verdict<'_>) -> Text<256> {
    suite_check_line("tlfs", what, verdict)
}

/// [`check_line`] for the checks of `suite`: `testkernel: <suite>: <what>: ...`.
pub fn suite_check_line(suite: &str, what: &str, verdict: Verdict<'_>) -> Text<256> {
    let (word, open, text, close) = match verdict {
        Verdict::Ok("") => ("ok", "", "", ""),
        Verdict::Ok(note) => ("ok", " (", note, ")"),
        Verdict::Fail(why) => ("FAIL", " ", why, ""),
        Verdict::Informational(text) => ("informational", ": ", text, ""),
    };
    let mut line = Text::new();
    let _ = write!(line, "testkernel: {suite}: {what}: {word}");
    let room = CHECK_LINE_MAX.saturating_sub(line.as_str().len() + open.len() + close.len());
    if text.len() <= room {
        let _ = write!(line, "{open}{text}{close}");
    } else if room > 2 {
        let mut end = room - 2;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let _ = write!(line, "{open}{}..{close}", &text[..end]);
    }
    line
}

/// Parameter blocks, little-endian, as the hypercalls read them.
pub mod input {
    /// HvFlushVirtualAddressSpace, and the header of ...List (TLFS 9.4.2).
    pub fn flush(address_space: u64, flags: u64, processor_mask: u64) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&address_space.to_le_bytes());
        b[8..16].copy_from_slice(&flags.to_le_bytes());
        b[16..].copy_from_slice(&processor_mask.to_le_bytes());
        b
    }

    /// HvFlushVirtualAddressSpaceEx and the header of ...ListEx (TLFS
    /// 9.4.3): the set is `HvGenericSetAll` (no banks, no variable header).
    pub fn flush_ex_all(address_space: u64, flags: u64) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&address_space.to_le_bytes());
        b[8..16].copy_from_slice(&flags.to_le_bytes());
        b[16..24].copy_from_slice(&super::GENERIC_SET_ALL.to_le_bytes());
        b
    }

    /// A GVA range (TLFS 9.4.4): page number in 63:12, further pages in 11:0.
    pub const fn gva_range(gva: u64, additional_pages: u16) -> u64 {
        (gva & !0xfff) | (additional_pages as u64 & 0xfff)
    }

    /// HvSendSyntheticClusterIpi (TLFS 10.5.2) as the fast convention
    /// passes it: RDX = vector | TargetVtl << 32, R8 = processor mask.
    pub const fn cluster_ipi_fast(vector: u32, processor_mask: u64) -> (u64, u64) {
        (vector as u64, processor_mask)
    }

    /// HvSendSyntheticClusterIpiEx (TLFS 10.5.3) to every VP.
    pub fn cluster_ipi_ex_all(vector: u32) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[..4].copy_from_slice(&vector.to_le_bytes());
        b[8..16].copy_from_slice(&super::GENERIC_SET_ALL.to_le_bytes());
        b
    }

    /// The header of HvGetVpRegisters/HvSetVpRegisters (TLFS 7.10.1):
    /// partition, VP index, target VTL 0.
    pub fn vp_registers_header(partition: u64, vp_index: u32) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&partition.to_le_bytes());
        b[8..12].copy_from_slice(&vp_index.to_le_bytes());
        b
    }

    /// The header of HvGetVpIndexFromApicId: partition, target VTL 0
    /// (the Hyper-V headers' layout; 6.0b prints no table).
    pub fn vp_index_from_apic_id_header(partition: u64) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&partition.to_le_bytes());
        b
    }
}

/// The monitored notification page, `HV_MONITOR_PAGE` (TLFS 11.10.9): four
/// groups of 32 triggers, each trigger with a latency hint and the
/// HvSignalEvent parameters the hypervisor signals with. 6.0b prints no
/// table for a trigger group or a parameter (11.10.8.1, 11.10.8.2); their
/// layouts are the Hyper-V headers' (Linux's `struct hv_monitor_page`).
pub mod monitor {
    use crate::{Detail, option};
    use core::fmt;

    pub const PAGE_SIZE: usize = 4096;
    pub const GROUPS: usize = 4;
    pub const TRIGGERS: usize = 32;
    /// `TriggerState` (u32): bits 3:0 are GroupEnable, the rest RsvdZ.
    pub const TRIGGER_STATE: usize = 0;
    /// `TriggerGroup[4]`, after `TriggerState` and `Reserved1` (u32 each).
    const TRIGGER_GROUPS: usize = 8;
    /// `Latency[4][32]` (u16, 100 ns units), after `Reserved2[536]`.
    const LATENCIES: usize = TRIGGER_GROUPS + GROUPS * 8 + 536;
    /// `Parameter[4][32]` (8 bytes each), after `Reserved3[256]`.
    const PARAMETERS: usize = LATENCIES + GROUPS * TRIGGERS * 2 + 256;
    /// `Reserved4[1984]` ends the page.
    const _: () = assert!(PARAMETERS + GROUPS * TRIGGERS * 8 + 1984 == PAGE_SIZE);

    /// One trigger: its group and its number in the group.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Trigger {
        pub group: usize,
        pub number: usize,
    }

    impl Trigger {
        pub const fn new(group: usize, number: usize) -> Trigger {
            assert!(group < GROUPS && number < TRIGGERS);
            Trigger { group, number }
        }

        /// Its group's `HV_MONITOR_TRIGGER_GROUP`: `Pending` (u32), then
        /// `Armed` (u32), one 64-bit word.
        pub const fn group_offset(self) -> usize {
            TRIGGER_GROUPS + self.group * 8
        }

        pub const fn latency_offset(self) -> usize {
            LATENCIES + (self.group * TRIGGERS + self.number) * 2
        }

        pub const fn parameter_offset(self) -> usize {
            PARAMETERS + (self.group * TRIGGERS + self.number) * 8
        }

        /// Its bit of `Pending` in the group word.
        pub const fn pending(self) -> u64 {
            1 << self.number
        }

        /// Its bit of `Armed` in the group word.
        pub const fn armed(self) -> u64 {
            1 << (32 + self.number)
        }

        /// The group word with the trigger set: `Pending` on and `Armed`
        /// off, which must change together (11.10.8.1).
        pub const fn set(self, word: u64) -> u64 {
            (word | self.pending()) & !self.armed()
        }

        /// Its group's GroupEnable bit in `TriggerState`.
        pub const fn group_enable(self) -> u32 {
            1 << self.group
        }
    }

    impl fmt::Display for Trigger {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "trigger {} of group {}", self.number, self.group)
        }
    }

    /// `HV_MONITOR_PARAMETER`: `ConnectionId` (u32), `FlagNumber` (u16),
    /// RsvdZ (u16), as one little-endian word.
    pub const fn parameter(connection_id: u32, flag_number: u16) -> u64 {
        connection_id as u64 | (flag_number as u64) << 32
    }

    /// The `<key>=` option: the page's GPA, `0x` hex, page-aligned, inside
    /// the kernel's identity map (the low 4 GiB).
    pub fn page_option(cmdline: &str, key: &str) -> Result<u64, Detail> {
        let text = option(cmdline, key).ok_or_else(|| detail!("no {key}=<gpa> on the command line"))?;
        let gpa = text
            .strip_prefix("0x")
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .ok_or_else(|| detail!("{key}={text}: expected a 0x-hex address"))?;
        let mapped_page = gpa.is_multiple_of(PAGE_SIZE as u64) && gpa < 1 << 32;
        if mapped_page { Ok(gpa) } else { Err(detail!("{key}={text}: not a page below 4 GiB")) }
    }
}

pub mod vsm;

#[cfg(test)]
mod tests;
