//! Hypercalls through the hypercall page (TLFS 3), called as Linux calls
//! them: RCX = control, RDX/R8 = input/output GPA (fast: the input).

use super::{Check, Checks, busy_ticks, fail_unless, hypercall_page, with_interface};
use crate::hw::hv::{self, Page};
use crate::hw::{self, Fault};
use guest_testkernel::tlfs::cpuid::{self as leaf, hypercall_privilege, recommend};
use guest_testkernel::tlfs::{self, Control, Outcome, call, flush, input, register, status};
use guest_testkernel::{Detail, detail};

const PAGE: usize = 4096;

fn raised(f: Fault) -> Detail {
    detail!("the hypercall raised {f}")
}

fn call(control: Control, rdx: u64, r8: u64) -> Result<Outcome, Detail> {
    hv::hypercall(control.0, rdx, r8).map(|r| Outcome::from_rax(r.rax)).map_err(raised)
}

/// A rep call, issued again from the reps completed while it returns early
/// with success (as Linux does); the last outcome and the calls made.
fn rep_call(control: Control, rdx: u64, r8: u64) -> Result<(Outcome, u32), Detail> {
    let mut control = control;
    let mut calls = 0;
    loop {
        calls += 1;
        let outcome = call(control, rdx, r8)?;
        if outcome.status != status::SUCCESS || outcome.reps >= control.rep_count() || calls == 64 {
            return Ok((outcome, calls));
        }
        control = control.reps(control.rep_count(), outcome.reps);
    }
}

/// A call's outcome or why it has none, as text.
fn shown<T: core::fmt::Display>(result: &Result<T, Detail>) -> Detail {
    match result {
        Ok(t) => detail!("{t}"),
        Err(why) => why.clone(),
    }
}

fn expect(result: Result<Outcome, Detail>, want: u16) -> Check {
    tlfs::expect_status(result?, want).map(|()| Detail::new())
}

/// Writes an input block at `offset` in the input pages; its GPA.
fn input_at(offset: usize, bytes: &[u8]) -> u64 {
    Page::Input.write(offset, bytes);
    Page::Input.addr() + offset as u64
}

pub fn hypercalls() -> super::Outcome {
    with_interface("hypercalls", |c| {
        let page = hypercall_page();
        if !c.require("hypercall page enabled", page.map(|i| detail!("{}", i.name()))) {
            return;
        }
        Page::Input.clear();
        Page::Output.clear();
        let f = hw::cpuid(leaf::FEATURES, 0);
        let ex = hw::cpuid(leaf::RECOMMENDATIONS, 0).eax & recommend::EX_PROCESSOR_MASKS != 0;
        control_value(c);
        alignment(c);
        vp_registers(c, f.ebx & hypercall_privilege::ACCESS_VP_REGISTERS != 0);
        vp_index_from_apic_id(c);
        flushes(c, ex);
        cluster_ipi(c, ex);

        let extended = f.ebx & hypercall_privilege::ENABLE_EXTENDED_HYPERCALLS != 0;
        let (want, what) = if extended {
            (status::SUCCESS, "HvExtCallQueryCapabilities: SUCCESS")
        } else {
            (status::ACCESS_DENIED, "HvExtCallQueryCapabilities: ACCESS_DENIED")
        };
        c.require(what, expect(call(Control::new(call::EXT_QUERY_CAPABILITIES), 0, Page::Output.addr()), want));

        // A fast call whose input (24 bytes) does not fit RDX and R8 needs
        // XMM fast input (3.7.2); what happens without it is not spelled out.
        let fast = Control::new(call::FLUSH_VIRTUAL_ADDRESS_SPACE).fast();
        let xmm = f.edx & (1 << 4) != 0;
        let what = "fast call, 24-byte input";
        match hv::hypercall(fast.0, 0, flush::ALL_PROCESSORS | flush::ALL_VIRTUAL_ADDRESS_SPACES) {
            Ok(r) => c.info(what, format_args!("{}, XMM input offered: {xmm}", Outcome::from_rax(r.rax))),
            Err(f) => c.info(what, format_args!("raised {f}, XMM input offered: {xmm}")),
        }
        c.info("hypercall from CPL 3 raises #UD (3.5)", format_args!("not exercised: this kernel has no ring 3"));
    })
}

/// TLFS 3.7, 3.12: the control value.
fn control_value(c: &mut Checks) {
    let spin = Control::new(call::NOTIFY_LONG_SPIN_WAIT).fast();
    c.require("HvNotifyLongSpinWait (fast): SUCCESS", expect(call(spin, 1, 0), status::SUCCESS));
    let unknown = Control::new(call::UNDEFINED).fast();
    c.require("call code 0x7777: INVALID_HYPERCALL_CODE", expect(call(unknown, 0, 0), status::INVALID_HYPERCALL_CODE));
    let input_error = status::INVALID_HYPERCALL_INPUT;
    let bit31 = spin.with_bits(tlfs::CONTROL_RESERVED_BIT);
    c.require("control bit 31 (RsvdZ) set: INVALID_HYPERCALL_INPUT", expect(call(bit31, 1, 0), input_error));
    let bit63 = spin.with_bits(tlfs::CONTROL_RESERVED_HIGH_BIT);
    c.require("control bit 63 (RsvdZ) set: INVALID_HYPERCALL_INPUT", expect(call(bit63, 1, 0), input_error));
    let rep = spin.reps(1, 0);
    c.require("rep count on a simple call: INVALID_HYPERCALL_INPUT", expect(call(rep, 1, 0), input_error));

    let at = input_at(0, &input::flush(0, flush::ALL_PROCESSORS | flush::ALL_VIRTUAL_ADDRESS_SPACES, 0));
    input_at(24, &input::gva_range(Page::Input.addr(), 0).to_le_bytes());
    let list = Control::new(call::FLUSH_VIRTUAL_ADDRESS_LIST);
    c.require("rep call with rep count 0: INVALID_HYPERCALL_INPUT", expect(call(list, at, 0), input_error));
    let past = list.reps(1, 1);
    c.require("rep start index >= rep count: INVALID_HYPERCALL_INPUT", expect(call(past, at, 0), input_error));
    let variable = Control::new(call::FLUSH_VIRTUAL_ADDRESS_SPACE).variable_header(1);
    c.require("variable header on a fixed call: INVALID_HYPERCALL_INPUT", expect(call(variable, at, 0), input_error));
}

/// TLFS 3.6: parameter blocks are 8-byte aligned and cross no page.
fn alignment(c: &mut Checks) {
    let header = input::flush(0, flush::ALL_PROCESSORS | flush::ALL_VIRTUAL_ADDRESS_SPACES, 0);
    let space = Control::new(call::FLUSH_VIRTUAL_ADDRESS_SPACE);
    let aligned = status::INVALID_ALIGNMENT;
    let misaligned = input_at(8 + 4, &header);
    c.require("input GPA+4: INVALID_ALIGNMENT", expect(call(space, misaligned, 0), aligned));
    let crossing = input_at(PAGE - 8, &header);
    c.require("input crossing a page: INVALID_ALIGNMENT", expect(call(space, crossing, 0), aligned));

    let get = Control::new(call::GET_VP_INDEX_FROM_APIC_ID);
    let at = input_at(0, &input::vp_index_from_apic_id_header(tlfs::PARTITION_SELF));
    input_at(16, &[0; 16]);
    let out = Page::Output.addr();
    let result = call(get.reps(1, 0), at, out + 4);
    c.require("output GPA+4: INVALID_ALIGNMENT", expect(result, aligned));
    let result = call(get.reps(3, 0), at, out + PAGE as u64 - 8);
    c.require("output (12 bytes) crossing a page: INVALID_ALIGNMENT", expect(result, aligned));
}

/// TLFS 7.10.1, 7.10.2: the partition's own registers, only with
/// AccessVpRegisters.
fn vp_registers(c: &mut Checks, offered: bool) {
    let names = [register::RIP, register::RSP, register::RFLAGS];
    let header = input::vp_registers_header(tlfs::PARTITION_SELF, 0);
    let at = input_at(0, &header);
    for (i, name) in names.iter().enumerate() {
        input_at(16 + 4 * i, &name.to_le_bytes());
    }
    Page::Output.clear();
    let get = Control::new(call::GET_VP_REGISTERS).reps(names.len() as u16, 0);
    let result = rep_call(get, at, Page::Output.addr());
    if !offered {
        let denied = status::ACCESS_DENIED;
        let what = "HvGetVpRegisters(self): ACCESS_DENIED (7.10.2)";
        c.require(what, expect(result.map(|(o, _)| o), denied));
        // Should it be accepted after all, it sets RFLAGS to 0x2 (interrupts
        // are off here anyway): harmless, unlike RIP or RSP.
        let mut assoc = [0u8; 32];
        assoc[..4].copy_from_slice(&register::RFLAGS.to_le_bytes());
        assoc[16..24].copy_from_slice(&0x2u64.to_le_bytes());
        let at = input_at(0, &header);
        input_at(16, &assoc);
        let set = Control::new(call::SET_VP_REGISTERS).reps(1, 0);
        let what = "HvSetVpRegisters(self): ACCESS_DENIED (7.10.1)";
        c.require(what, expect(call(set, at, 0), denied));
        return;
    }
    let values = result.and_then(|(o, calls)| {
        tlfs::expect_status(o, status::SUCCESS)?;
        fail_unless(o.reps == 3, detail!("{o} after {calls} calls"))?;
        Ok([0, 1, 2].map(|i| Page::Output.read_u64(16 * i)))
    });
    let kernel = hw::kernel_extent();
    let page = Page::Hypercall.addr()..Page::Hypercall.addr() + PAGE as u64;
    let plausible = values.and_then(|[rip, rsp, rflags]| {
        let shown = detail!("RIP {rip:#x}, RSP {rsp:#x}, RFLAGS {rflags:#x}");
        let good = (kernel.contains(&rip) || page.contains(&rip)) && kernel.contains(&rsp) && rflags & 2 != 0;
        if good { Ok(shown) } else { Err(shown) }
    });
    c.require("HvGetVpRegisters RIP, RSP, RFLAGS of VP 0 (self)", plausible);
    let aligned = status::INVALID_ALIGNMENT;
    let get = Control::new(call::GET_VP_REGISTERS).reps(1, 0);
    let misaligned = input_at(8 + 4, &header);
    let result = call(get, misaligned, Page::Output.addr());
    c.require("HvGetVpRegisters input GPA+4: INVALID_ALIGNMENT", expect(result, aligned));
    let crossing = input_at(PAGE - 8, &header);
    let result = call(get, crossing, Page::Output.addr());
    c.require("HvGetVpRegisters header crossing a page: INVALID_ALIGNMENT", expect(result, aligned));
    c.info("HvSetVpRegisters", format_args!("not exercised (a write would take effect)"));
}

/// TLFS 7.10.4: the boot VP's APIC ID (CPUID 1 EBX 31:24) is VP 0.
fn vp_index_from_apic_id(c: &mut Checks) {
    let apic_id = hw::cpuid(1, 0).ebx >> 24;
    let at = input_at(0, &input::vp_index_from_apic_id_header(tlfs::PARTITION_SELF));
    input_at(16, &apic_id.to_le_bytes());
    Page::Output.write(0, &[0xff; 8]);
    let get = Control::new(call::GET_VP_INDEX_FROM_APIC_ID).reps(1, 0);
    let result = rep_call(get, at, Page::Output.addr()).and_then(|(o, _)| {
        tlfs::expect_status(o, status::SUCCESS)?;
        let vp = Page::Output.read_u32(0);
        fail_unless(o.reps == 1 && vp == 0, detail!("{o}, VP {vp}"))
    });
    c.require(detail!("HvGetVpIndexFromApicId(APIC ID {apic_id}): VP 0").as_str(), result);
}

/// TLFS 9.4: the flushes, and the Ex forms (required when recommended).
fn flushes(c: &mut Checks, ex: bool) {
    let all = flush::ALL_PROCESSORS | flush::ALL_VIRTUAL_ADDRESS_SPACES;
    let invalid = status::INVALID_PARAMETER;
    let space = Control::new(call::FLUSH_VIRTUAL_ADDRESS_SPACE);
    let at = input_at(0, &input::flush(0, all, 0));
    c.require("HvFlushVirtualAddressSpace (all VPs, all spaces): SUCCESS", expect(call(space, at, 0), status::SUCCESS));
    let at = input_at(0, &input::flush(0, all | 1 << 8, 0));
    c.require("HvFlushVirtualAddressSpace flag bit 8: INVALID_PARAMETER", expect(call(space, at, 0), invalid));
    let at = input_at(0, &input::flush(0, flush::ALL_VIRTUAL_ADDRESS_SPACES, 0));
    c.require("HvFlushVirtualAddressSpace mask 0: INVALID_PARAMETER", expect(call(space, at, 0), invalid));

    let gvas = [Page::Input.addr(), Page::Output.addr(), hw::kernel_extent().start];
    let list_of = |header: &[u8], code: u16| {
        let at = input_at(0, header);
        for (i, gva) in gvas.iter().enumerate() {
            input_at(header.len() + 8 * i, &input::gva_range(*gva, 0).to_le_bytes());
        }
        rep_call(Control::new(code).reps(gvas.len() as u16, 0), at, 0).and_then(|(o, calls)| {
            tlfs::expect_status(o, status::SUCCESS)?;
            fail_unless(o.reps == 3, detail!("{o} after {calls} calls")).map(|_| detail!("{calls} calls"))
        })
    };
    let list = list_of(&input::flush(0, all, 0), call::FLUSH_VIRTUAL_ADDRESS_LIST);
    c.require("HvFlushVirtualAddressList 3 GVAs: SUCCESS, 3 reps", list);
    let at = input_at(0, &input::flush(0, all | flush::NON_GLOBAL_MAPPINGS_ONLY, 0));
    let list = Control::new(call::FLUSH_VIRTUAL_ADDRESS_LIST).reps(1, 0);
    let what = "HvFlushVirtualAddressList non-global: INVALID_PARAMETER";
    c.require(what, expect(call(list, at, 0), invalid));

    let header = input::flush_ex_all(0, flush::ALL_VIRTUAL_ADDRESS_SPACES);
    let at = input_at(0, &header);
    let space_ex = call(Control::new(call::FLUSH_VIRTUAL_ADDRESS_SPACE_EX), at, 0);
    let list_ex = list_of(&header, call::FLUSH_VIRTUAL_ADDRESS_LIST_EX);
    if ex {
        c.require("HvFlushVirtualAddressSpaceEx (set: all VPs): SUCCESS", expect(space_ex, status::SUCCESS));
        c.require("HvFlushVirtualAddressListEx 3 GVAs: SUCCESS, 3 reps", list_ex);
    } else {
        c.info("HvFlushVirtualAddressSpaceEx (not recommended)", format_args!("{}", shown(&space_ex)));
        c.info("HvFlushVirtualAddressListEx (not recommended)", format_args!("{}", shown(&list_ex)));
    }
}

/// TLFS 10.5.2, 10.5.3: an IPI to itself; a vector below 16 is refused.
/// Whether the interrupt arrives depends on the VID's local APIC, so that
/// part is informational.
fn cluster_ipi(c: &mut Checks, ex: bool) {
    hw::lapic_enable();
    let hz = hw::rdmsr_checked(tlfs::msr::TSC_FREQUENCY).unwrap_or(0);
    let vp_mask = 1u64 << hw::rdmsr_checked(tlfs::msr::VP_INDEX).unwrap_or(0).min(63);
    let ipi = Control::new(call::SEND_SYNTHETIC_CLUSTER_IPI).fast();
    let before = hw::ipis();
    let (rdx, r8) = input::cluster_ipi_fast(u32::from(tlfs::IPI_VECTOR), vp_mask);
    let sent = expect(call(ipi, rdx, r8), status::SUCCESS);
    let was_sent = sent.is_ok();
    c.require("HvSendSyntheticClusterIpi 0x30 to self: SUCCESS", sent);
    if was_sent {
        let waited = hw::interrupt_window(busy_ticks(hz), || hw::ipis() != before);
        let arrived = hw::ipis() - before;
        let text = format_args!("{arrived} interrupt(s) in {waited} TSC ticks (needs the VID's APIC)");
        c.info("IPI 0x30 delivered", text);
    }
    let (rdx, r8) = input::cluster_ipi_fast(u32::from(tlfs::BAD_IPI_VECTOR), vp_mask);
    let bad = expect(call(ipi, rdx, r8), status::INVALID_PARAMETER);
    c.require("HvSendSyntheticClusterIpi 0x05: INVALID_PARAMETER", bad);

    let at = input_at(0, &input::cluster_ipi_ex_all(u32::from(tlfs::IPI_VECTOR)));
    let before = hw::ipis();
    let result = call(Control::new(call::SEND_SYNTHETIC_CLUSTER_IPI_EX), at, 0);
    if ex {
        c.require("HvSendSyntheticClusterIpiEx 0x30 to all: SUCCESS", expect(result, status::SUCCESS));
    } else {
        c.info("HvSendSyntheticClusterIpiEx (not recommended)", format_args!("{}", shown(&result)));
    }
    // Take the interrupt now if it is coming, not in a later test.
    hw::interrupt_window(busy_ticks(hz), || hw::ipis() != before);
}

/// Fast hypercalls timed for the benchmark.
const BENCH_CALLS: u32 = 200;

/// Times [`BENCH_CALLS`] fast HvCallNotifyLongSpinWait calls through the
/// hypercall page and prints the mean and least cost of one round trip.
pub fn hypercall_bench() -> super::Outcome {
    hypercall_page()?;
    let spin = Control::new(call::NOTIFY_LONG_SPIN_WAIT).fast();
    let (mut total, mut least) = (0u64, u64::MAX);
    for _ in 0..BENCH_CALLS {
        let start = hw::rdtsc();
        let outcome = call(spin, 1, 0)?;
        let spent = hw::rdtsc().wrapping_sub(start);
        if outcome.status != status::SUCCESS {
            return Err(detail!("HvCallNotifyLongSpinWait returned {}", status::name(outcome.status)));
        }
        total += spent;
        least = least.min(spent);
    }
    crate::println!(
        "testkernel: bench: fast hypercall round trip (HvCallNotifyLongSpinWait): {} cycles (min {least}) over {BENCH_CALLS} calls",
        total / u64::from(BENCH_CALLS)
    );
    Ok(())
}
