//! Virtual Secure Mode (`tests=vsm`), checked against TLFS 6.0b chapter 15
//! in a partition with the `hyperv-vsm` profile (one VP).
//!
//! VTL 0 is this kernel as booted. It detects VSM (15.3), reads the VSM
//! registers, makes each refused call of HvEnablePartitionVtl and
//! HvEnableVpVtl (15.15.3, 15.15.4), enables VTL 1 for the partition and
//! its VP, and enters VTL 1 with VTL calls through the hypercall page
//! (15.8). VTL 1 (`vtl1.rs`) is code of this kernel with its own stack,
//! GDT, TSS, IDT and PML4; at its first entry it sets up its own hypercall
//! and VP assist pages and reads VSM registers, then returns. Each round
//! after that carries patterns in the shared registers both ways and
//! checks that private ones stay (15.11), with fast and ordinary returns
//! (15.7.1.1). Last come the #UD cases of 15.6.1.1 and 15.7.2.
//!
//! The suite runs with interrupts off. Where several statuses fit one
//! call (3.12.2 leaves their order to the hypervisor), each is accepted
//! and the check says which: e.g. a foreign partition ID is
//! INVALID_PARTITION_ID if no such partition exists, ACCESS_DENIED if it
//! does; the guest cannot tell which.

mod switch;
mod vtl1;

pub use switch::trap;

use crate::checks::{Check, Checks, fail_unless, ok};
use crate::hw::hv::{self, Page};
use crate::hw::{self, state};
use crate::ring3::{self, Routine};
use crate::tlfs_suite;
use core::sync::atomic::{AtomicU64, Ordering};
use guest_testkernel::tlfs::cpuid::{self as leaf, hypercall_privilege, privilege};
use guest_testkernel::tlfs::vsm::{self, Capabilities, CodePageOffsets, InitialContext, PartitionStatus, VpStatus};
use guest_testkernel::tlfs::{Control, Outcome, PARTITION_SELF, call, msr, register, status};
use guest_testkernel::{Detail, detail};
use switch::{Frame, RFLAGS_AC, RFLAGS_FIXED, Raised};
use vtl1::Private;

/// A partition that is not this one (no guest has children).
const OTHER_PARTITION: u64 = 0x0000_7e55_0000_0001;
/// A VP index past any partition's VPs (and not HV_VP_INDEX_SELF).
const NO_SUCH_VP: u32 = 0x7e55;
/// The rounds of VTL calls after the first; the even ones return fast.
const ROUNDS: u32 = 4;

/// What VTL 0 asks of VTL 1 with its next VTL call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Nothing: return (not fast). Also round 0 (the first entry).
    Idle,
    /// Record what the call brought, return with `round`'s values.
    Round { round: u32, fast: bool },
    /// Fast returns at once, until [`switch::BENCH_ON`] is clear.
    Bench,
    /// Protect VTL 0's test pages (15.9, 15.15.2), record the statuses.
    Protect,
    /// The entry is a secure intercept (15.9.2) of VTL 0's access to test
    /// page `page`: record it, lift the page's protection, let the access
    /// run again.
    Intercept { page: u8 },
}

const BENCH_COMMAND: u64 = 1 << 61;
const PROTECT_COMMAND: u64 = 1 << 60;
const INTERCEPT_COMMAND: u64 = 1 << 59;

static COMMAND: AtomicU64 = AtomicU64::new(0);

fn set_command(c: Command) {
    let v = match c {
        Command::Idle => 0,
        Command::Round { round, fast } => 1 << 63 | u64::from(fast) << 62 | u64::from(round),
        Command::Bench => BENCH_COMMAND,
        Command::Protect => PROTECT_COMMAND,
        Command::Intercept { page } => INTERCEPT_COMMAND | u64::from(page),
    };
    COMMAND.store(v, Ordering::Relaxed);
}

pub fn command() -> Command {
    let v = COMMAND.load(Ordering::Relaxed);
    if v == BENCH_COMMAND {
        Command::Bench
    } else if v == PROTECT_COMMAND {
        Command::Protect
    } else if v & !0xff == INTERCEPT_COMMAND {
        Command::Intercept { page: v as u8 }
    } else if v >> 63 == 0 {
        Command::Idle
    } else {
        Command::Round { round: v as u32, fast: v >> 62 & 1 != 0 }
    }
}

/// The RAX and RCX VTL 1 puts in its control area for `round` (15.8.2).
pub fn return_values(round: u32) -> (u64, u64) {
    (0x7e55_ca11_0000_0000 | u64::from(round), 0x7e55_ca11_1100_0000 | u64::from(round))
}

/// A VTL's hypercall page and parameter pages.
pub struct Hc {
    pub hypercall: Page,
    pub input: Page,
    pub output: Page,
}

const VTL0: Hc = Hc { hypercall: Page::Hypercall, input: Page::Input, output: Page::Output };

impl Hc {
    fn call(&self, control: Control, input: &[u8]) -> Result<Outcome, Detail> {
        self.input.write(0, input);
        hv::hypercall_at(self.hypercall, control.0, self.input.addr(), self.output.addr())
            .map(|r| Outcome::from_rax(r.rax))
            .map_err(|f| detail!("the hypercall raised {f}"))
    }

    /// HvGetVpRegisters (rep, 7.10.2) of up to 4 `names` of VP `vp` in
    /// `input_vtl` (`HV_INPUT_VTL`, 0: the caller's): their low 64 bits.
    fn get_registers(&self, vp: u32, input_vtl: u8, names: &[u32]) -> Result<[u64; 4], Detail> {
        self.input.write(0, &vsm::vp_registers_header(PARTITION_SELF, vp, input_vtl));
        for (i, name) in names.iter().enumerate() {
            self.input.write(16 + 4 * i, &name.to_le_bytes());
        }
        let mut control = Control::new(call::GET_VP_REGISTERS).reps(names.len() as u16, 0);
        for _ in 0..16 {
            let o = hv::hypercall_at(self.hypercall, control.0, self.input.addr(), self.output.addr())
                .map(|r| Outcome::from_rax(r.rax))
                .map_err(|f| detail!("the hypercall raised {f}"))?;
            if o.status != status::SUCCESS {
                return Err(detail!("HvGetVpRegisters: {o}"));
            }
            if usize::from(o.reps) >= names.len() {
                return Ok(core::array::from_fn(|i| self.output.read_u64(16 * i)));
            }
            control = control.reps(names.len() as u16, o.reps);
        }
        Err(detail!("HvGetVpRegisters never completed"))
    }

    /// HvGetVpRegisters of one register: its status.
    fn get_status(&self, vp: u32, input_vtl: u8, name: u32) -> Result<Outcome, Detail> {
        let mut input = [0u8; 20];
        input[..16].copy_from_slice(&vsm::vp_registers_header(PARTITION_SELF, vp, input_vtl));
        input[16..].copy_from_slice(&name.to_le_bytes());
        self.call(Control::new(call::GET_VP_REGISTERS).reps(1, 0), &input)
    }

    /// HvSetVpRegisters (7.10.1) of one register: its status.
    fn set(&self, vp: u32, input_vtl: u8, name: u32, value: u64) -> Result<Outcome, Detail> {
        let mut input = [0u8; 48];
        input[..16].copy_from_slice(&vsm::vp_registers_header(PARTITION_SELF, vp, input_vtl));
        input[16..20].copy_from_slice(&name.to_le_bytes());
        input[32..40].copy_from_slice(&value.to_le_bytes());
        self.call(Control::new(call::SET_VP_REGISTERS).reps(1, 0), &input)
    }
}

fn expect(result: Result<Outcome, Detail>, allowed: &[u16]) -> Check {
    let o = result?;
    vsm::expect_one_of(o, allowed).map(|()| detail!("{o}"))
}

/// A crossing that must raise #UD in the hypercall page.
fn expect_ud(raised: Option<Raised>) -> Check {
    match raised {
        Some(r) if r.vector == Raised::UD => Ok(detail!("{r}")),
        Some(r) => Err(detail!("raised {r}, expected #UD")),
        None => Err(detail!("no fault: the call went through")),
    }
}

/// A VTL call at `target` (if the offsets are known) must raise #UD.
fn ud_from_call(target: Option<u64>) -> Check {
    let target = target.ok_or(detail!("no HvRegisterVsmCodePageOffsets"))?;
    expect_ud(vtl_call(target, vsm::VTL_CALL_CONTROL))
}

/// The checks of HvRegisterVsmCodePageOffsets (15.8): the two sequences
/// at distinct offsets past the hypercall sequence at 0 (4 bytes, 3.13).
pub fn offsets_check(o: &CodePageOffsets) -> Check {
    let good = o.reserved == 0 && o.vtl_call != o.vtl_return && o.vtl_call >= 4 && o.vtl_return >= 4;
    fail_unless(good, detail!("{o:?}")).map(|_| detail!("call at {:#x}, return at {:#x}", o.vtl_call, o.vtl_return))
}

/// What of the protection checks (15.9, 15.15.2) runs: the command line's
/// `vsm-protect=status` (the calls' statuses) or `vsm-protect=access`
/// (those, then VTL 0's accesses and the secure intercepts they raise).
/// Off by default: the VID does not yet have them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protections {
    Off,
    Status,
    Access,
}

impl Protections {
    fn from_cmdline(cmdline: &str) -> Protections {
        match guest_testkernel::option(cmdline, "vsm-protect") {
            Some("status") => Protections::Status,
            Some("access") => Protections::Access,
            _ => Protections::Off,
        }
    }
}

pub fn run(cmdline: &str) -> Result<(), Detail> {
    let protections = Protections::from_cmdline(cmdline);
    let mut c = Checks::new("vsm");
    if let Err(why) = tlfs_suite::interface() {
        c.fail("the Hyper-V interface", why);
        return c.finish();
    }
    if !detection(&mut c) {
        return c.finish();
    }
    let page = tlfs_suite::hypercall_page().map(|i| detail!("{}", i.name()));
    if !c.require("VTL 0's hypercall page enabled", page) {
        return c.finish();
    }
    // The shared-state checks carry XMM patterns.
    state::enable_sse();
    let vp = hw::rdmsr_checked(msr::VP_INDEX).unwrap_or(0) as u32;
    let (caps, offsets) = registers_before(&mut c, vp);
    // Without the offsets there is no VTL call: each check that needs one
    // fails (once) instead.
    let call_target = offsets.map(|o| Page::Hypercall.addr() + u64::from(o.vtl_call));
    enable_partition_refused(&mut c, vp, caps, call_target);
    if enable_partition(&mut c, vp, call_target) {
        let (context, private) = vtl1::context();
        enable_vp_refused(&mut c, vp, &context);
        if enable_vp(&mut c, vp, &context) {
            lower_vtl_denied(&mut c, vp);
            let (Some(offsets), Some(call_target)) = (offsets, call_target) else {
                c.fail("VTL calls", detail!("no HvRegisterVsmCodePageOffsets"));
                return c.finish();
            };
            if first_call(&mut c, call_target, &private) {
                for round in 1..=ROUNDS {
                    vtl_round(&mut c, round, call_target, &private);
                }
                let after = VTL0.get_registers(vp, 0, &[register::VSM_VP_STATUS]).and_then(|[v, ..]| {
                    let s = VpStatus::read(v);
                    fail_unless(s.active_vtl == 0 && s.enabled_vtl_set == 0b11, detail!("{v:#x}: {s:?}"))
                });
                c.require("after the returns: HvRegisterVsmVpStatus ActiveVtl 0, EnabledVtlSet {0, 1}", after);
                restrictions(&mut c, offsets);
                if protections != Protections::Off {
                    protect(&mut c, call_target, protections == Protections::Access);
                }
            }
        }
    }
    c.finish()
}

/// 15.3.1: AccessVsm, AccessVpRegisters and AccessSynicRegs.
fn detection(c: &mut Checks) -> bool {
    let f = hw::cpuid(leaf::FEATURES, 0);
    let vsm = f.ebx & hypercall_privilege::ACCESS_VSM != 0;
    let registers = f.ebx & hypercall_privilege::ACCESS_VP_REGISTERS != 0;
    let synic = f.eax & privilege::ACCESS_SYNIC_REGS != 0;
    let shown = detail!("EAX {:#x}, EBX {:#x}", f.eax, f.ebx);
    let a = c.require("CPUID 0x40000003 AccessVsm (privilege bit 48, 15.3.1)", fail_unless(vsm, shown.clone()));
    let b = c.require("CPUID 0x40000003 AccessVpRegisters (bit 49)", fail_unless(registers, shown.clone()));
    let s = c.require("CPUID 0x40000003 AccessSynicRegs (bit 2)", fail_unless(synic, shown));
    a && b && s
}

/// 15.3: the VSM registers before any VTL is enabled (15.3.4), each read
/// on its own; the code page offsets if they could be read.
fn registers_before(c: &mut Checks, vp: u32) -> (Capabilities, Option<CodePageOffsets>) {
    let read = |name| VTL0.get_registers(vp, 0, &[name]).map(|[v, ..]| v);
    let caps = match read(register::VSM_CAPABILITIES) {
        Ok(value) => {
            let caps = Capabilities::read(value);
            let drawn = Capabilities::read_as_drawn(value);
            c.info("HvRegisterVsmCapabilities", format_args!("{value:#x}: as the headers lay it out {caps:?}"));
            c.info("HvRegisterVsmCapabilities as 6.0b draws it", format_args!("{drawn:?}"));
            // The headers' layout, which guests read (see `Capabilities`).
            let what = "HvRegisterVsmCapabilities: ReservedZ 63:18 clear (15.3.2, the headers' layout)";
            c.require(what, fail_unless(caps.reserved == 0, detail!("{value:#x}")));
            caps
        }
        Err(why) => {
            c.fail("HvGetVpRegisters(HvRegisterVsmCapabilities)", why);
            Capabilities::read(0)
        }
    };
    let partition = read(register::VSM_PARTITION_STATUS).and_then(|v| partition_status(v, 0b01));
    c.require("before enabling: HvRegisterVsmPartitionStatus (15.3.3.1, 15.3.4)", partition);
    let vp_value = read(register::VSM_VP_STATUS).and_then(|v| vp_status(v, 0b01));
    c.require("before enabling: HvRegisterVsmVpStatus (15.3.3.2, 15.3.4)", vp_value);
    let offsets = read(register::VSM_CODE_PAGE_OFFSETS).map(CodePageOffsets::read);
    let checked = offsets.as_ref().map_err(Clone::clone).and_then(offsets_check);
    let good = c.require("HvRegisterVsmCodePageOffsets (15.8)", checked);
    (caps, offsets.ok().filter(|_| good))
}

/// EnabledVtlSet `enabled`, MaximumVtl at least 1, no MBEC, ReservedZ clear.
fn partition_status(value: u64, enabled: u16) -> Check {
    let s = PartitionStatus::read(value);
    let good = s.enabled_vtl_set == enabled && s.maximum_vtl >= 1 && s.mbec_enabled_vtl_set == 0 && s.reserved == 0;
    fail_unless(good, detail!("{value:#x}: {s:?}")).map(|_| detail!("{value:#x}, MaximumVtl {}", s.maximum_vtl))
}

/// ActiveVtl 0, EnabledVtlSet `enabled`, MBEC off, the rest clear.
fn vp_status(value: u64, enabled: u16) -> Check {
    let s = VpStatus::read(value);
    let good = s.active_vtl == 0 && s.enabled_vtl_set == enabled && !s.active_mbec_enabled && s.reserved == 0;
    fail_unless(good, detail!("{value:#x}: {s:?}")).map(|_| detail!("{value:#x}"))
}

fn enable_partition_call(target_vtl: u8, flags: u8, partition: u64, reserved_byte: u8) -> Result<Outcome, Detail> {
    let mut input = vsm::enable_partition_vtl(partition, target_vtl, flags);
    input[10] = reserved_byte;
    VTL0.call(Control::new(call::ENABLE_PARTITION_VTL), &input)
}

fn enable_vp_call(
    vp: u32,
    target_vtl: u8,
    reserved: u8,
    partition: u64,
    context: &InitialContext,
) -> Result<Outcome, Detail> {
    VTL0.call(Control::new(call::ENABLE_VP_VTL), &vsm::enable_vp_vtl(partition, vp, target_vtl, reserved, context))
}

/// A VTL call, armed for the #UD it may raise; `control` in RCX.
fn vtl_call(target: u64, control: u64) -> Option<Raised> {
    set_command(Command::Idle);
    let mut frame = Frame::ZERO;
    frame.rcx = control;
    switch::cross(0, &mut frame, target)
}

/// 15.15.3's statuses before VTL 1 is enabled, and the calls that need it.
fn enable_partition_refused(c: &mut Checks, vp: u32, caps: Capabilities, call_target: Option<u64>) {
    use status::{ACCESS_DENIED, INVALID_PARAMETER, INVALID_PARTITION_ID, INVALID_VTL_STATE};
    let what = "HvEnablePartitionVtl, another partition: INVALID_PARTITION_ID or ACCESS_DENIED";
    c.require(what, expect(enable_partition_call(1, 0, OTHER_PARTITION, 0), &[INVALID_PARTITION_ID, ACCESS_DENIED]));
    // 6.0b implements two VTLs (HV_NUM_VTLS, 15.2).
    let what = "HvEnablePartitionVtl VTL 2 (past HV_NUM_VTLS): INVALID_PARAMETER";
    c.require(what, expect(enable_partition_call(vsm::NUM_VTLS, 0, PARTITION_SELF, 0), &[INVALID_PARAMETER]));
    // VTL 0 is enabled already (INVALID_VTL_STATE), and is no VTL its
    // caller may launch (15.15.3's restrictions): either status fits.
    let what = "HvEnablePartitionVtl VTL 0: INVALID_VTL_STATE or ACCESS_DENIED";
    c.require(what, expect(enable_partition_call(0, 0, PARTITION_SELF, 0), &[INVALID_VTL_STATE, ACCESS_DENIED]));
    let what = "HvEnablePartitionVtl, a reserved flag (bit 1): INVALID_PARAMETER";
    let flags = vsm::ENABLE_FLAGS_RESERVED_BIT;
    c.require(what, expect(enable_partition_call(1, flags, PARTITION_SELF, 0), &[INVALID_PARAMETER]));
    let what = "HvEnablePartitionVtl, a RsvdZ byte set: INVALID_PARAMETER";
    c.require(what, expect(enable_partition_call(1, 0, PARTITION_SELF, 1), &[INVALID_PARAMETER]));
    if caps.mbec_vtl_mask & 0b10 == 0 {
        // MbecVtlMask lacks VTL 1 (15.3.2, 15.10.2).
        let what = "HvEnablePartitionVtl EnableMbec, MBEC not offered for VTL 1: INVALID_PARAMETER";
        c.require(what, expect(enable_partition_call(1, vsm::ENABLE_MBEC, PARTITION_SELF, 0), &[INVALID_PARAMETER]));
    } else {
        c.info("HvEnablePartitionVtl EnableMbec", format_args!("MBEC offered for VTL 1: not refused, not tried"));
    }
    // A valid context: only the partition's state is wrong.
    let (context, _) = vtl1::context();
    let what = "HvEnableVpVtl before the partition's VTL 1 (15.4.2): INVALID_VTL_STATE";
    c.require(what, expect(enable_vp_call(vp, 1, 0, PARTITION_SELF, &context), &[INVALID_VTL_STATE]));
    // A higher VTL's register (15.2.1, 15.5.1), and not enabled yet.
    let what = "HvGetVpRegisters of VTL 1's HvRegisterVsmPartitionConfig: ACCESS_DENIED or INVALID_VTL_STATE";
    let got = VTL0.get_status(vp, vsm::input_vtl(1), register::VSM_PARTITION_CONFIG);
    c.require(what, expect(got, &[ACCESS_DENIED, INVALID_VTL_STATE]));
    let what = "VTL call with VTL 1 disabled for the partition: #UD (15.6.1.1 item 3)";
    c.require(what, ud_from_call(call_target));
    let after = VTL0.get_registers(vp, 0, &[register::VSM_PARTITION_STATUS]).and_then(|[v, ..]| partition_status(v, 1));
    c.require("after the refused calls: EnabledVtlSet is still {0}", after);
}

/// HvEnablePartitionVtl(VTL 1) and what it changes (15.4.1).
fn enable_partition(c: &mut Checks, vp: u32, call_target: Option<u64>) -> bool {
    let done = expect(enable_partition_call(1, 0, PARTITION_SELF, 0), &[status::SUCCESS]);
    if !c.require("HvEnablePartitionVtl VTL 1: SUCCESS", done) {
        return false;
    }
    let names = [register::VSM_PARTITION_STATUS, register::VSM_VP_STATUS];
    match VTL0.get_registers(vp, 0, &names) {
        Ok([partition, vp_value, ..]) => {
            c.require("then HvRegisterVsmPartitionStatus EnabledVtlSet {0, 1}", partition_status(partition, 0b11));
            c.require("then HvRegisterVsmVpStatus: VTL 1 not yet enabled on the VP", vp_status(vp_value, 0b01));
        }
        Err(why) => c.fail("then HvGetVpRegisters of the status registers", why),
    }
    let what = "HvEnablePartitionVtl VTL 1 again: INVALID_VTL_STATE";
    c.require(what, expect(enable_partition_call(1, 0, PARTITION_SELF, 0), &[status::INVALID_VTL_STATE]));
    let what = "VTL call with VTL 1 not enabled on the VP: #UD (15.6.1.1 item 3)";
    c.require(what, ud_from_call(call_target));
    true
}

/// 15.15.4's statuses, VTL 1 enabled for the partition but not the VP.
fn enable_vp_refused(c: &mut Checks, vp: u32, context: &InitialContext) {
    use status::{ACCESS_DENIED, INVALID_PARAMETER, INVALID_PARTITION_ID, INVALID_REGISTER_VALUE, INVALID_VTL_STATE};
    let what = "HvEnableVpVtl, another partition: INVALID_PARTITION_ID or ACCESS_DENIED";
    let got = enable_vp_call(vp, 1, 0, OTHER_PARTITION, context);
    c.require(what, expect(got, &[INVALID_PARTITION_ID, ACCESS_DENIED]));
    let what = "HvEnableVpVtl, no such VP: INVALID_VP_INDEX";
    c.require(what, expect(enable_vp_call(NO_SUCH_VP, 1, 0, PARTITION_SELF, context), &[status::INVALID_VP_INDEX]));
    // Past HV_NUM_VTLS, and not enabled for the partition.
    let what = "HvEnableVpVtl VTL 2: INVALID_PARAMETER or INVALID_VTL_STATE";
    let got = enable_vp_call(vp, vsm::NUM_VTLS, 0, PARTITION_SELF, context);
    c.require(what, expect(got, &[INVALID_PARAMETER, INVALID_VTL_STATE]));
    // Enabled on the VP already, and only a higher VTL may enable a lower.
    let what = "HvEnableVpVtl VTL 0: INVALID_VTL_STATE or ACCESS_DENIED";
    c.require(what, expect(enable_vp_call(vp, 0, 0, PARTITION_SELF, context), &[INVALID_VTL_STATE, ACCESS_DENIED]));
    let what = "HvEnableVpVtl, a RsvdZ byte set: INVALID_PARAMETER";
    c.require(what, expect(enable_vp_call(vp, 1, 1, PARTITION_SELF, context), &[INVALID_PARAMETER]));
    // No real mode above VTL 0 (15.11.3).
    let real = InitialContext { cr0: context.cr0 & !1, ..*context };
    let what = "HvEnableVpVtl with CR0.PE clear (15.11.3): INVALID_REGISTER_VALUE or INVALID_PARAMETER";
    c.require(
        what,
        expect(enable_vp_call(vp, 1, 0, PARTITION_SELF, &real), &[INVALID_REGISTER_VALUE, INVALID_PARAMETER]),
    );
    let after = VTL0.get_registers(vp, 0, &[register::VSM_VP_STATUS]).and_then(|[v, ..]| vp_status(v, 0b01));
    c.require("after the refused calls: the VP's EnabledVtlSet is still {0}", after);
}

/// HvEnableVpVtl(VTL 1) with VTL 1's context (15.4.2).
fn enable_vp(c: &mut Checks, vp: u32, context: &InitialContext) -> bool {
    let done = expect(enable_vp_call(vp, 1, 0, PARTITION_SELF, context), &[status::SUCCESS]);
    if !c.require("HvEnableVpVtl VTL 1 with VTL 1's initial context: SUCCESS", done) {
        return false;
    }
    let after = VTL0.get_registers(vp, 0, &[register::VSM_VP_STATUS]).and_then(|[v, ..]| vp_status(v, 0b11));
    c.require("then HvRegisterVsmVpStatus: EnabledVtlSet {0, 1}, ActiveVtl still 0 (15.15.4)", after);
    // Enabled already, and by a VTL lower than the one it enables: 3.12.2
    // leaves the order of the two refusals to the hypervisor.
    let what = "HvEnableVpVtl VTL 1 again: INVALID_VTL_STATE or ACCESS_DENIED (15.15.4)";
    let statuses = &[status::INVALID_VTL_STATE, status::ACCESS_DENIED];
    c.require(what, expect(enable_vp_call(vp, 1, 0, PARTITION_SELF, context), statuses));
    true
}

/// VTL 0 may not read or write VTL 1's state (15.2.1, 15.5.1), nor write
/// a read-only register (7.10.1).
fn lower_vtl_denied(c: &mut Checks, vp: u32) {
    let what = "VTL 0 reads VTL 1's CR3 (target VTL 1): ACCESS_DENIED (15.2.1)";
    c.require(what, expect(VTL0.get_status(vp, vsm::input_vtl(1), register::CR3), &[status::ACCESS_DENIED]));
    let what = "VTL 0 writes VTL 1's HvRegisterVsmPartitionConfig: ACCESS_DENIED (15.5.1)";
    let got = VTL0.set(vp, vsm::input_vtl(1), register::VSM_PARTITION_CONFIG, 0);
    c.require(what, expect(got, &[status::ACCESS_DENIED]));
    let what = "HvSetVpRegisters of HvRegisterVsmVpStatus (read-only): INVALID_PARAMETER (7.10.1)";
    c.require(what, expect(VTL0.set(vp, 0, register::VSM_VP_STATUS, 0), &[status::INVALID_PARAMETER]));
}

/// The frame VTL 0 calls with on `round`: its patterns in the shared
/// registers, AC set in its (private) RFLAGS.
fn call_frame(round: u32) -> Frame {
    let mut frame = Frame::ZERO;
    frame.set_shared(vsm::shared_pattern(round, 0));
    frame.xmm = vsm::xmm_pattern(round, 0);
    frame.rcx = vsm::VTL_CALL_CONTROL;
    frame.rax = 0x7e55_0a11_0000_0000 | u64::from(round);
    frame.rflags_in = RFLAGS_FIXED | RFLAGS_AC;
    frame
}

/// The shared registers `frame` holds against `from`'s patterns of `round`.
fn shared_check(frame: &Frame, round: u32, from: u8) -> Check {
    let want = vsm::shared_pattern(round, from);
    let got = frame.shared();
    if let Some(i) = (0..13).find(|&i| got[i] != want[i]) {
        const NAMES: [&str; 13] =
            ["RBX", "RDX", "RSI", "RDI", "RBP", "R8", "R9", "R10", "R11", "R12", "R13", "R14", "R15"];
        return Err(detail!("{} is {:#x}, expected {:#x}", NAMES[i], got[i], want[i]));
    }
    let want = vsm::xmm_pattern(round, from);
    if let Some(i) = (0..16).find(|&i| frame.xmm[i] != want[i]) {
        return Err(detail!("XMM{i} is {:#x}, expected {:#x}", frame.xmm[i], want[i]));
    }
    ok()
}

/// VTL 0's private state after a return, against before the call.
fn vtl0_kept(frame: &Frame, before: &Private) -> Check {
    let now = vtl1::current();
    let rflags = frame.rflags_out;
    let good = rflags & RFLAGS_AC != 0
        && now.cr3 == before.cr3
        && now.cr4 == before.cr4
        && now.gdtr == before.gdtr
        && now.idtr == before.idtr
        && now.tr == before.tr;
    fail_unless(good, detail!("RFLAGS {rflags:#x}, {now:x?}"))
}

/// The first VTL call: VTL 1 starts from its initial context and reports.
fn first_call(c: &mut Checks, call_target: u64, private: &Private) -> bool {
    set_command(Command::Idle);
    let mut frame = call_frame(0);
    let before = vtl1::current();
    let raised = switch::cross(0, &mut frame, call_target);
    let first = vtl1::FIRST.with(|f| f.take());
    let came_back = match (raised, &first) {
        (Some(r), _) => Err(detail!("the VTL call raised {r}")),
        (None, Some(f)) if f.done == vtl1::MARKER => ok(),
        (None, _) => Err(detail!("VTL 1 did not write its marker")),
    };
    if !c.require("first VTL call: VTL 1 ran from its initial context and returned (15.6.1, 15.7.1)", came_back) {
        return false;
    }
    let Some(first) = first else { return false };
    let entry = switch::FIRST_ENTRY.with(|f| *f);
    let what = "VTL 1 first entry: RSP and RFLAGS from its context, not VTL 0's (15.15.4, 15.11.1.2)";
    let good = entry.rsp == private.stack_top && entry.rflags_out == RFLAGS_FIXED;
    c.require(what, fail_unless(good, detail!("RSP {:#x}, RFLAGS {:#x}", entry.rsp, entry.rflags_out)));
    let f = first.private;
    let what = "VTL 1 first entry: its CR3, CR4, GDTR, IDTR and TR (15.15.4)";
    let good = f.cr3 == private.cr3
        && f.cr4 == private.cr4
        && f.gdtr == private.gdtr
        && f.idtr == private.idtr
        && f.tr == private.tr;
    c.require(what, fail_unless(good, detail!("{f:x?}")));
    c.require(
        "VTL 1 first entry: VTL 0's RBX, RDX, RSI, RDI, RBP, R8-R15, XMM0-15 (shared, 15.11.2.2)",
        shared_check(&entry, 0, 0),
    );
    c.require("VTL 1: HV_X64_MSR_GUEST_OS_ID reads 0, VTL 0's is its own (private, 15.11.1.1)", first.guest_os_id);
    c.require("VTL 1: HV_X64_MSR_HYPERCALL disabled, VTL 0's is its own (private, 15.11.1.1)", first.hypercall_msr);
    c.require("VTL 1: its own hypercall page: VMCALL or VMMCALL, then RET", first.hypercall_page);
    c.require("VTL 1: its own VP assist page enabled (15.8.1)", first.vp_assist);
    c.require("VTL 1: HvRegisterVsmVpStatus ActiveVtl 1, EnabledVtlSet {0, 1} (15.3.3.2)", first.vp_status);
    c.require("VTL 1: its HvRegisterVsmCodePageOffsets (15.8)", first.offsets);
    let what = "VTL 1: HvRegisterVsmPartitionConfig: ZeroMemOnReset set, EnableVtlProtection clear (15.5.1)";
    c.require(what, first.config);
    let vtl0 = first.vtl0_registers.and_then(|[cr3, cr4]| {
        let good = cr3 == before.cr3 && cr4 == before.cr4;
        fail_unless(good, detail!("CR3 {cr3:#x}, CR4 {cr4:#x}; VTL 0 has {:#x}, {:#x}", before.cr3, before.cr4))
    });
    c.require("VTL 1 reads VTL 0's CR3 and CR4 (target VTL 0): VTL 0's values (15.2.1)", vtl0);
    c.require("VTL 1: VTL return with a reserved control bit: #UD (15.7.2 item 2)", expect_ud(first.bad_return));
    returned(c, &frame, 0, false, &before);
    true
}

/// What VTL 0 finds after VTL 1's return of `round`.
fn returned(c: &mut Checks, frame: &Frame, round: u32, fast: bool, before: &Private) {
    let label = |what: &str| detail!("return {round}{}: {what}", if fast { " (fast)" } else { "" });
    c.require(label("VTL 1's shared GPRs and XMM0-15 reach VTL 0").as_str(), shared_check(frame, round, 1));
    c.require(label("VTL 0 keeps its RFLAGS, CR3, CR4, GDTR, IDTR, TR (private)").as_str(), vtl0_kept(frame, before));
    let (rax, rcx) = return_values(round);
    let seen = detail!("RAX {:#x}, RCX {:#x}", frame.rax, frame.rcx);
    let check = if fast {
        fail_unless(frame.rax != rax && frame.rcx != rcx, seen.clone()).map(|_| seen)
    } else {
        fail_unless(frame.rax == rax && frame.rcx == rcx, detail!("{seen}, control area {rax:#x}, {rcx:#x}"))
    };
    let what = if fast {
        "RAX, RCX not loaded from the control area (15.7.1.1)"
    } else {
        "RAX, RCX from VTL 1's control area (15.7.1.1)"
    };
    c.require(label(what).as_str(), check);
}

/// One more VTL call and return (15.6.1, 15.7.1), fast on even rounds.
fn vtl_round(c: &mut Checks, round: u32, call_target: u64, private: &Private) {
    let fast = round.is_multiple_of(2);
    set_command(Command::Round { round, fast });
    vtl1::ROUND.with(|r| *r = None);
    let mut frame = call_frame(round);
    let before = vtl1::current();
    let raised = switch::cross(0, &mut frame, call_target);
    let seen = vtl1::ROUND.with(|r| r.take());
    let label = |what: &str| detail!("VTL call {round}: {what}");
    let entered = match (raised, seen) {
        (Some(r), _) => Err(detail!("raised {r}")),
        (None, Some(s)) if s.round == round => Ok(s),
        (None, _) => Err(detail!("VTL 1 did not record the call")),
    };
    let s = match entered {
        Ok(s) => s,
        Err(why) => {
            c.fail(label("VTL 1 entered").as_str(), why);
            return;
        }
    };
    let reason = fail_unless(s.entry_reason == vsm::entry_reason::VTL_CALL, detail!("entry reason {}", s.entry_reason));
    c.require(label("VTL 1 entered, entry reason VtlCall in its control area (15.6.1.2)").as_str(), reason);
    c.require(
        label("VTL 0's shared GPRs and XMM0-15 reach VTL 1 (15.11.2.2)").as_str(),
        shared_check(&s.frame, round, 0),
    );
    let p = s.private;
    let good = s.frame.rflags_out & RFLAGS_AC == 0
        && p.cr3 == private.cr3
        && p.cr4 == private.cr4
        && p.idtr == private.idtr
        && p.gdtr == private.gdtr
        && (private.stack_top - 16 * 1024..private.stack_top).contains(&p.stack_top);
    let what = label("VTL 1 keeps its RSP, RFLAGS, CR3, CR4, GDTR, IDTR (private, 15.11.1.2)");
    c.require(what.as_str(), fail_unless(good, detail!("RFLAGS {:#x}, {p:x?}", s.frame.rflags_out)));
    returned(c, &frame, round, fast, &before);
}

/// The #UD cases a CPL 0 VTL 0 can make (15.6.1.1, 15.7.2).
fn restrictions(c: &mut Checks, offsets: CodePageOffsets) {
    let page = Page::Hypercall.addr();
    let what = "VTL return from VTL 0 (the lowest VTL): #UD (15.7.2 item 1)";
    c.require(what, expect_ud(vtl_call(page + u64::from(offsets.vtl_return), 0)));
    let what = "VTL call with a reserved control bit: #UD (15.6.1.1 item 4)";
    c.require(what, expect_ud(vtl_call(page + u64::from(offsets.vtl_call), vsm::VTL_CONTROL_RESERVED_BIT)));
    set_command(Command::Idle);
    let fault = ring3::call(Routine::Call, 0, page + u64::from(offsets.vtl_call));
    let ud = fault.vector == Raised::UD && switch::in_hypercall_page(fault.rip);
    let shown = detail!("vector {} at {:#x}", fault.vector, fault.rip);
    let what = "VTL call from CPL 3: #UD (15.6.1.1 item 1)";
    c.require(
        what,
        fail_unless(
            ud,
            detail!("{shown}{}", if fault.rip == Routine::Call.address() { ": the call returned" } else { "" }),
        )
        .map(|_| shown),
    );
}

/// VTL round trips timed for the benchmark.
const BENCH_CALLS: u32 = 200;

/// The benchmark's figure.
pub const BENCH_FIGURE: &str = "VTL call + return round trip";

/// `tests=vsmbench` (`tessera bench`): VTL 1 started as [`run`] starts
/// it, then [`BENCH_CALLS`] VTL calls through the hypercall page, each
/// answered by VTL 1's immediate fast VTL return, timed with the TSC
/// (instructions under `-icount`): the mean and least round trip.
pub fn bench() -> Result<(), Detail> {
    let call_target = start_vtl1()?;
    switch::BENCH_ON.store(true, Ordering::Relaxed);
    set_command(Command::Bench);
    let mut frame = Frame::ZERO;
    if let Some(r) = switch::cross(0, &mut frame, call_target) {
        return Err(detail!("the VTL call into VTL 1's loop raised {r}"));
    }
    if !vtl1::BENCHING.load(Ordering::Relaxed) {
        return Err(detail!("VTL 1 did not enter its loop of fast returns"));
    }
    let mut samples = guest_testkernel::bench::Samples::new();
    for _ in 0..BENCH_CALLS {
        samples.add(switch::bench_call(call_target));
    }
    switch::BENCH_ON.store(false, Ordering::Relaxed);
    set_command(Command::Idle);
    let mut frame = Frame::ZERO;
    if let Some(r) = switch::cross(0, &mut frame, call_target) {
        return Err(detail!("the VTL call out of VTL 1's loop raised {r}"));
    }
    if vtl1::BENCHING.load(Ordering::Relaxed) {
        return Err(detail!("VTL 1 did not leave its loop of fast returns"));
    }
    crate::println!("testkernel: {}", guest_testkernel::bench::line(BENCH_FIGURE, &samples).as_str());
    Ok(())
}

/// VTL 1 enabled for the partition and this VP with [`vtl1::context`] and
/// entered once (its first entry sets up its hypercall and VP assist pages,
/// as in [`run`]); the address of VTL 0's VTL call sequence.
fn start_vtl1() -> Result<u64, Detail> {
    tlfs_suite::interface()?;
    tlfs_suite::hypercall_page()?;
    state::enable_sse();
    let vp = hw::rdmsr_checked(msr::VP_INDEX).unwrap_or(0) as u32;
    let [offsets, ..] = VTL0.get_registers(vp, 0, &[register::VSM_CODE_PAGE_OFFSETS])?;
    let offsets = CodePageOffsets::read(offsets);
    offsets_check(&offsets)?;
    let o = enable_partition_call(1, 0, PARTITION_SELF, 0)?;
    vsm::expect_one_of(o, &[status::SUCCESS]).map_err(|e| detail!("HvEnablePartitionVtl: {e}"))?;
    let (context, _) = vtl1::context();
    let o = enable_vp_call(vp, 1, 0, PARTITION_SELF, &context)?;
    vsm::expect_one_of(o, &[status::SUCCESS]).map_err(|e| detail!("HvEnableVpVtl: {e}"))?;
    let call_target = Page::Hypercall.addr() + u64::from(offsets.vtl_call);
    if let Some(r) = vtl_call(call_target, vsm::VTL_CALL_CONTROL) {
        return Err(detail!("the first VTL call raised {r}"));
    }
    let first = vtl1::FIRST.with(|f| f.take()).filter(|f| f.done == vtl1::MARKER);
    let first = first.ok_or(detail!("VTL 1's first entry did not write its marker"))?;
    first.hypercall_page.map_err(|e| detail!("VTL 1's hypercall page: {e}"))?;
    first.vp_assist.map_err(|e| detail!("VTL 1's VP assist page: {e}"))?;
    first.offsets.map_err(|e| detail!("VTL 1's HvRegisterVsmCodePageOffsets: {e}"))?;
    Ok(call_target)
}

/// The value VTL 0 leaves in test page `page` before it is protected.
fn page_pattern(page: u8) -> u64 {
    0x7e55_9a6e_0000_0000 | u64::from(page)
}

/// HvModifyVtlProtectionMask (15.15.2) through `hc` of test page `page`
/// for `input_vtl` (an `HV_INPUT_VTL`).
fn modify_protection(hc: &Hc, flags: u32, input_vtl: u8, page: u8) -> Result<Outcome, Detail> {
    let input = vsm::modify_vtl_protection_mask(PARTITION_SELF, flags, input_vtl, vtl1::test_page(page) >> 12);
    hc.call(Control::new(call::MODIFY_VTL_PROTECTION_MASK).reps(1, 0), &input)
}

/// VTL 1 protects VTL 0's test pages (15.5.1.1, 15.9.3, 15.15.2): page 0
/// no access, page 1 read-only no execute; with `access`, VTL 0 then
/// touches them and VTL 1 must get the intercepts (15.9.2).
fn protect(c: &mut Checks, call_target: u64, access: bool) {
    use status::{ACCESS_DENIED, INVALID_PARAMETER, OPERATION_DENIED, SUCCESS};
    for page in 0..2 {
        hw::write64(vtl1::test_page(page), page_pattern(page));
    }
    set_command(Command::Protect);
    vtl1::PROTECT.with(|p| *p = None);
    let mut frame = Frame::ZERO;
    let raised = switch::cross(0, &mut frame, call_target);
    set_command(Command::Idle);
    let seen = match (raised, vtl1::PROTECT.with(|p| p.take())) {
        (None, Some(seen)) => seen,
        (Some(r), _) => return c.fail("VTL call for the protections", detail!("raised {r}")),
        (None, None) => return c.fail("VTL call for the protections", detail!("VTL 1 did not record them")),
    };
    // 15.5.1.1: protections need EnableVtlProtection first.
    let what = "VTL 1 protects a page before EnableVtlProtection (15.5.1.1): INVALID_VTL_STATE or OPERATION_DENIED";
    c.require(what, expect(seen.before, &[status::INVALID_VTL_STATE, OPERATION_DENIED]));
    let what = "VTL 1 sets EnableVtlProtection, default mask RWX, in HvRegisterVsmPartitionConfig: SUCCESS";
    c.require(what, expect(seen.enable, &[SUCCESS]));
    let config = seen.config.and_then(|v| {
        use vsm::partition_config::ENABLE_VTL_PROTECTION;
        fail_unless(v & ENABLE_VTL_PROTECTION != 0, detail!("{v:#x}")).map(|_| detail!("{v:#x}"))
    });
    c.require("then HvRegisterVsmPartitionConfig reads EnableVtlProtection set", config);
    let what = "VTL 1: HvModifyVtlProtectionMask, page 0 no access for VTL 0: SUCCESS";
    c.require(what, expect(seen.no_access, &[SUCCESS]));
    let what = "VTL 1: HvModifyVtlProtectionMask, page 1 read-only no execute for VTL 0: SUCCESS";
    c.require(what, expect(seen.read_only, &[SUCCESS]));
    let what = "VTL 1 protects a page for itself (target VTL 1, 15.9.1): ACCESS_DENIED or INVALID_PARAMETER";
    c.require(what, expect(seen.own_vtl, &[ACCESS_DENIED, INVALID_PARAMETER]));
    // VTL 0's calls once VTL 1 has protections on: only the rule that a
    // VTL protects lower VTLs only (15.9.1, 15.15.2) refuses them.
    let what = "VTL 0 protects its own page (target VTL 0, 15.9.1): ACCESS_DENIED or INVALID_PARAMETER";
    let got = modify_protection(&VTL0, vsm::map_gpa::ALL, vsm::input_vtl(0), 0);
    c.require(what, expect(got, &[ACCESS_DENIED, INVALID_PARAMETER]));
    let what = "VTL 0 protects a page for VTL 1 (a higher VTL, 15.15.2): ACCESS_DENIED or INVALID_PARAMETER";
    let got = modify_protection(&VTL0, vsm::map_gpa::NO_ACCESS, vsm::input_vtl(1), 0);
    c.require(what, expect(got, &[ACCESS_DENIED, INVALID_PARAMETER]));
    if access {
        accesses(c);
    }
}

/// VTL 0 reads test page 0 (no access), reads and writes page 1 (read
/// only): each refused access is a secure intercept into VTL 1 (15.9.2),
/// which lifts the page's protection so the access runs again.
fn accesses(c: &mut Checks) {
    let touch = |c: &mut Checks, what: &str, page: u8, write: bool, intercept: bool| {
        set_command(Command::Intercept { page });
        vtl1::INTERCEPTED.with(|i| *i = None);
        let addr = vtl1::test_page(page);
        let want = if write { !page_pattern(page) } else { page_pattern(page) };
        if write {
            hw::write64(addr, want);
        }
        let got = hw::read64(addr);
        set_command(Command::Idle);
        let seen = vtl1::INTERCEPTED.with(|i| i.take());
        let check = match (seen, intercept) {
            (Some(s), true) => s.lifted.and_then(|o| {
                let good = s.entry_reason == vsm::entry_reason::INTERCEPT && o.status == status::SUCCESS && got == want;
                fail_unless(good, detail!("entry reason {}, lifting it: {o}, read {got:#x}", s.entry_reason))
            }),
            (None, false) => fail_unless(got == want, detail!("read {got:#x}, expected {want:#x}")),
            (Some(s), false) => Err(detail!("VTL 1 was entered (entry reason {})", s.entry_reason)),
            (None, true) => Err(detail!("no intercept: the access went through (read {got:#x})")),
        };
        c.require(what, check);
    };
    touch(c, "VTL 0 reads its no-access page: an intercept into VTL 1 (15.9.2)", 0, false, true);
    touch(c, "VTL 0 reads its read-only page: allowed", 1, false, false);
    touch(c, "VTL 0 writes its read-only page: an intercept into VTL 1 (15.9.2)", 1, true, true);
}
