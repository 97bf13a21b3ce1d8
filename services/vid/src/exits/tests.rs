use super::*;
use tlfs::{
    HvX64InstructionLength, HvX64InterceptMessageHeader, HvX64IoPortAccessInfo, HvX64IoPortInterceptMessage,
    HvX64SegmentRegister, HvX64VpExecutionState,
};

fn segment() -> HvX64SegmentRegister {
    tlfs::segment_register_from_value(0, 0)
}

fn header(rip: u64, len: u8, access: HvInterceptAccessType) -> HvX64InterceptMessageHeader {
    HvX64InterceptMessageHeader {
        vp_index: 0,
        instruction_length_and_cr8: HvX64InstructionLength::new().with_instruction_length(len),
        intercept_access_type: access,
        execution_state: HvX64VpExecutionState::new(),
        cs_segment: segment(),
        rip,
        rflags: 2,
    }
}

fn io(port: u16, write: bool, rax: u64, len: u8) -> HvMessage {
    let access = if write { HvInterceptAccessType::WRITE } else { HvInterceptAccessType::READ };
    let info = HvX64IoPortAccessInfo::new().with_access_size(1);
    HvMessage::from_body(&port_access(header(0x1000, len, access), port, info, rax, [0; 3]), 0)
}

/// A port-access intercept: `header`, `port`, `info`, RAX and RCX, RSI, RDI.
fn port_access(
    header: HvX64InterceptMessageHeader,
    port: u16,
    info: HvX64IoPortAccessInfo,
    rax: u64,
    [rcx, rsi, rdi]: [u64; 3],
) -> HvMessageBody {
    HvMessageBody::X64IoPortIntercept(HvX64IoPortInterceptMessage {
        header,
        port_number: port,
        access_info: info,
        instruction_byte_count: 0,
        reserved: 0,
        rax,
        instruction_bytes: [0; 16],
        ds_segment: segment(),
        es_segment: segment(),
        rcx,
        rsi,
        rdi,
    })
}

fn updates(action: &Action) -> Vec<(HvRegisterName, u64)> {
    match action {
        Action::Resume(u) => u.to_vec(),
        Action::Halt(u) => panic!("unexpected halt {u:?}"),
        Action::Stop(s) => panic!("unexpected stop {s:?}"),
    }
}

#[test]
fn uart_writes_are_output_and_skip_the_instruction() {
    let mut out = Vec::new();
    let action = handle(&io(UART_DATA, true, 0x1234_5641, 1), |b| out.push(b));
    assert_eq!(out, b"A");
    assert_eq!(updates(&action), [(HvRegisterName::RIP, 0x1001)]);
}

#[test]
fn line_status_says_ready_and_unknown_ports_read_ones() {
    let action = handle(&io(UART_LINE_STATUS, false, 0xaaaa_0000, 1), |_| panic!("no output"));
    assert_eq!(updates(&action), [(HvRegisterName::RIP, 0x1001), (HvRegisterName::RAX, 0xaaaa_0060)]);
    let action = handle(&io(0x1234, false, 0x5500, 1), |_| {});
    assert_eq!(updates(&action)[1], (HvRegisterName::RAX, 0x55ff));
}

#[test]
fn every_port_the_hostile_guest_takes_for_unemulated_reads_all_ones() {
    use guest_testkernel::protocol;
    for port in (0..=0xffffu16).filter(|&p| !protocol::touches_emulated(p, 1)) {
        let action = handle(&io(port, false, 0x1234_5600, 1), |_| {});
        assert_eq!(updates(&action)[1], (HvRegisterName::RAX, 0x1234_56ff), "port {port:#x}");
    }
    // The ports its sweep leaves unwritten are those that end the partition.
    assert_eq!(protocol::PM1A_CNT, crate::acpi::PM1A_CNT_BLK);
    assert_eq!(protocol::RESET_PORT, crate::acpi::RESET_PORT);
    assert_eq!(protocol::PM_TMR, crate::acpi::PM_TMR_BLK);
    assert_eq!(protocol::TEST_EXIT, TEST_EXIT);
    assert_eq!(protocol::UART_DATA, UART_DATA);
}

#[test]
fn the_test_exit_port_stops_with_the_value() {
    let action = handle(&io(TEST_EXIT, true, 0x7, 2), |_| {});
    assert_eq!(action, Action::Stop(Stop::TestExit { value: 7 }));
}

#[test]
fn unknown_lengths_and_garbage_stop_the_vp_without_panicking() {
    assert!(matches!(handle(&io(UART_DATA, true, 0, 0), |_| {}), Action::Stop(Stop::Failed { .. })));
    assert!(matches!(handle(&HvMessage::empty(), |_| {}), Action::Stop(Stop::Failed { .. })));
}

#[test]
fn guest_console_assembles_bounded_lines() {
    let mut c = GuestConsole::default();
    let mut lines = Vec::new();
    for &b in b"hi\r\n\x01x\n" {
        if let Some(l) = c.byte(b) {
            lines.push(l.to_vec());
        }
    }
    assert_eq!(lines, [b"hi".to_vec(), b"?x".to_vec()]);
    let long: Vec<Vec<u8>> = (0..LINE_MAX + 5).filter_map(|_| c.byte(b'a')).map(|l| l.to_vec()).collect();
    assert_eq!(long.len(), 1);
    assert_eq!(long[0].len(), LINE_MAX);
}

#[test]
fn the_demo_guest_ends_with_its_message() {
    assert_eq!(&DEMO_GUEST[0x13..0x13 + 5], b"Hello");
    assert_eq!(*DEMO_GUEST.last().unwrap(), 0);
}

#[test]
fn the_bench_guest_loops_back_to_its_out() {
    // `loop` is E2 rel8, relative to the next instruction at offset 9: -3 is the OUT at 6.
    assert_eq!(BENCH_GUEST[6], 0xee);
    assert_eq!((BENCH_GUEST[7], BENCH_GUEST[8] as i8), (0xe2, -3));
    assert_eq!(u16::from_le_bytes([BENCH_GUEST[4], BENCH_GUEST[5]]), BENCH_EXITS);
}

// ---- The full handler over a fake guest ----

use crate::guest::Guest;
use std::collections::HashMap;
use tlfs::{HvX64CpuidInterceptMessage, HvX64HaltMessage, HvX64MemoryInterceptMessage, HvX64MsrInterceptMessage};

/// RAM at GPA 0..ram.len(), a read-only page, and a register file.
struct Fake {
    ram: Vec<u8>,
    rom: u64,
    regs: HashMap<u32, u64>,
}

impl Fake {
    fn new() -> Fake {
        // Protected mode without paging until a test builds page tables.
        let regs = HashMap::from([(HvRegisterName::CR0.0, 0x11)]);
        Fake { ram: vec![0; 0x40_0000], rom: 0xf_f000, regs }
    }
    fn set(&mut self, name: HvRegisterName, v: u64) {
        self.regs.insert(name.0, v);
    }
    fn put(&mut self, gpa: u64, bytes: &[u8]) {
        self.ram[gpa as usize..gpa as usize + bytes.len()].copy_from_slice(bytes);
    }
}

impl Guest for Fake {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        let end = gpa as usize + buf.len();
        if end > self.ram.len() {
            return false;
        }
        buf.copy_from_slice(&self.ram[gpa as usize..end]);
        true
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        let end = gpa as usize + data.len();
        if end > self.ram.len() || (gpa & !0xfff) == self.rom {
            return false;
        }
        self.ram[gpa as usize..end].copy_from_slice(data);
        true
    }
    fn register(&mut self, name: HvRegisterName) -> Option<(u64, u64)> {
        self.regs.get(&name.0).map(|&v| (v, 0))
    }
}

fn long_header(rip: u64, len: u8, access: HvInterceptAccessType) -> HvX64InterceptMessageHeader {
    let mut h = header(rip, len, access);
    h.execution_state = HvX64VpExecutionState::new().with_cr0_pe(true).with_efer_lma(true);
    h.cs_segment.attributes = h.cs_segment.attributes.with_long(true);
    h.rflags = 2 | crate::guest::rflags::IF;
    h
}

fn run(vmm: &mut Vmm, guest: &mut Fake, body: HvMessageBody) -> (Action, Vec<Event>) {
    let mut events = Vec::new();
    let action = vmm.handle(&HvMessage::from_body(&body, 0), guest, 0, |e| events.push(e));
    (action, events)
}

fn get(action: &Action, name: HvRegisterName) -> Option<u64> {
    updates(action).iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
}

fn string_io(port: u16, write: bool, rep: bool, rcx: u64, rsi: u64, rdi: u64, rflags: u64) -> HvMessageBody {
    let access = if write { HvInterceptAccessType::WRITE } else { HvInterceptAccessType::READ };
    let mut h = long_header(0x2000, 2, access);
    h.rflags |= rflags;
    let info = HvX64IoPortAccessInfo::new().with_access_size(1).with_string_op(true).with_rep_prefix(rep);
    port_access(h, port, info, 0, [rcx, rsi, rdi])
}

#[test]
fn rep_outsb_prints_guest_memory_and_updates_rcx_rsi() {
    let mut g = Fake::new();
    g.put(0x3000, b"hey\n");
    let mut vmm = Vmm::new();
    let (action, events) = run(&mut vmm, &mut g, string_io(UART_DATA, true, true, 4, 0x3000, 0, 0));
    let out: Vec<u8> = events.iter().filter_map(|e| if let Event::Console(b) = e { Some(*b) } else { None }).collect();
    assert_eq!(out, b"hey\n");
    assert_eq!(get(&action, HvRegisterName::RIP), Some(0x2002));
    assert_eq!(get(&action, HvRegisterName::RCX), Some(0));
    assert_eq!(get(&action, HvRegisterName::RSI), Some(0x3004));
    assert_eq!(get(&action, HvRegisterName::RDI), None);
}

#[test]
fn insb_and_rep_insb_write_all_ones_and_respect_df() {
    let mut g = Fake::new();
    let mut vmm = Vmm::new();
    let (action, _) = run(&mut vmm, &mut g, string_io(0x270, false, false, 99, 0, 0x4000, 0));
    assert_eq!(g.ram[0x4000], 0xff);
    assert_eq!(get(&action, HvRegisterName::RDI), Some(0x4001));
    assert_eq!(get(&action, HvRegisterName::RCX), None);
    assert_eq!(get(&action, HvRegisterName::RIP), Some(0x2002));
    let (action, _) = run(&mut vmm, &mut g, string_io(0x270, false, true, 4, 0, 0x5003, crate::guest::rflags::DF));
    assert_eq!(&g.ram[0x5000..0x5004], &[0xff; 4]);
    assert_eq!(g.ram[0x4fff], 0);
    assert_eq!(get(&action, HvRegisterName::RDI), Some(0x4fff));
    assert_eq!(get(&action, HvRegisterName::RCX), Some(0));
}

/// String I/O reaches the devices through the bus, as single accesses do:
/// `rep insb` drains COM1's receive FIFO in order, and an `outs` to the
/// test-exit port ends the run at that element.
#[test]
fn string_io_goes_through_the_device_bus() {
    let mut g = Fake::new();
    let mut vmm = Vmm::new();
    // FIFOs on (FCR bit 0), as a driver does before it reads in bursts.
    vmm.uart.port_write(crate::uart::reg::IIR_FCR, 1, &mut |_| {});
    assert_eq!(vmm.uart.push_input(b"ok!"), 3);
    let (action, _) = run(&mut vmm, &mut g, string_io(UART_DATA, false, true, 3, 0, 0x4000, 0));
    assert_eq!(&g.ram[0x4000..0x4003], b"ok!");
    assert_eq!(get(&action, HvRegisterName::RCX), Some(0));
    let (_, _) = run(&mut vmm, &mut g, string_io(UART_LINE_STATUS, false, false, 0, 0, 0x4010, 0));
    assert_eq!(g.ram[0x4010] & 1, 0, "the FIFO is empty: LSR.DR clear");
    g.put(0x3000, &[5, 9]);
    let m = string_io(TEST_EXIT, true, true, 2, 0x3000, 0, 0);
    assert_eq!(vmm.handle(&HvMessage::from_body(&m, 0), &mut g, 0, |_| {}), Action::Stop(Stop::TestExit { value: 5 }));
}

#[test]
fn huge_rep_counts_are_done_in_slices_without_moving_rip() {
    let mut g = Fake::new();
    let mut vmm = Vmm::new();
    let n = crate::portio::REP_BUDGET + 10;
    let (action, _) = run(&mut vmm, &mut g, string_io(0x80, true, true, n, 0x1000, 0, 0));
    assert_eq!(get(&action, HvRegisterName::RIP), None);
    assert_eq!(get(&action, HvRegisterName::RCX), Some(10));
    let (action, _) = run(&mut vmm, &mut g, string_io(0x80, true, true, 0, 0x1000, 0, 0));
    assert_eq!(get(&action, HvRegisterName::RIP), Some(0x2002));
}

#[test]
fn in_eax_zero_extends_and_sizes_are_masked() {
    let mut vmm = Vmm::new();
    let mut m = io(0x270, false, 0xdead_beef_0000_0000, 1);
    let HvMessageBody::X64IoPortIntercept(mut body) = m.parse().unwrap() else { panic!() };
    body.header = long_header(0x1000, 1, HvInterceptAccessType::READ);
    body.access_info = HvX64IoPortAccessInfo::new().with_access_size(4);
    m = HvMessage::from_body(&HvMessageBody::X64IoPortIntercept(body), 0);
    let action = vmm.handle(&m, &mut NoGuest, 0, |_| {});
    assert_eq!(get(&action, HvRegisterName::RAX), Some(0xffff_ffff));
    body.access_info = HvX64IoPortAccessInfo::new().with_access_size(2);
    let action =
        vmm.handle(&HvMessage::from_body(&HvMessageBody::X64IoPortIntercept(body), 0), &mut NoGuest, 0, |_| {});
    assert_eq!(get(&action, HvRegisterName::RAX), Some(0xdead_beef_0000_ffff));
    // The test-exit value is masked to the access size.
    assert_eq!(handle(&io(TEST_EXIT, true, 0x1_0000_0103, 1), |_| {}), Action::Stop(Stop::TestExit { value: 3 }));
    assert_eq!(Stop::TestExit { value: 3 }.to_string(), "guest reported status 7");
}

#[test]
fn cpuid_answers_from_the_table() {
    let cpuid = |leaf: u64| {
        HvMessageBody::X64CpuidIntercept(HvX64CpuidInterceptMessage {
            header: long_header(0x1000, 2, HvInterceptAccessType::EXECUTE),
            rax: leaf,
            rcx: 0,
            rdx: 0,
            rbx: 0xffff_ffff_ffff_ffff,
            default_result_rax: 0,
            default_result_rcx: 0,
            default_result_rdx: 0,
            default_result_rbx: 0,
        })
    };
    let mut vmm = Vmm::new();
    let mut g = Fake::new();
    let (a, _) = run(&mut vmm, &mut g, cpuid(0));
    assert_eq!(get(&a, HvRegisterName::RIP), Some(0x1002));
    assert_eq!(get(&a, HvRegisterName::RAX), Some(0xd));
    let mut vendor = Vec::new();
    for r in [HvRegisterName::RBX, HvRegisterName::RDX, HvRegisterName::RCX] {
        vendor.extend_from_slice(&(get(&a, r).unwrap() as u32).to_le_bytes());
    }
    assert_eq!(vendor, b"AuthenticAMD", "the (recorded) host's vendor");
    let (a, _) = run(&mut vmm, &mut g, cpuid(1));
    assert_ne!(get(&a, HvRegisterName::RAX), Some(0));
    assert_eq!(get(&a, HvRegisterName::RCX).unwrap() >> 31, 0, "no hypervisor bit before the TLFS leaves");
    let (a, _) = run(&mut vmm, &mut g, cpuid(0x4000_0000));
    assert_eq!(get(&a, HvRegisterName::RBX), Some(0));
    // The APIC flag follows IA32_APIC_BASE.EN (SDM 11.4.3).
    let apic = |a: &Action| get(a, HvRegisterName::RDX).unwrap() & (1 << 9) != 0;
    assert!(apic(&run(&mut vmm, &mut g, cpuid(1)).0));
    run(&mut vmm, &mut g, msr(0x1b, true, 0xfee0_0100, true));
    assert!(!apic(&run(&mut vmm, &mut g, cpuid(1)).0));
    run(&mut vmm, &mut g, msr(0x1b, true, 0xfee0_0900, true));
    assert!(apic(&run(&mut vmm, &mut g, cpuid(1)).0));
    // OSXSAVE follows the VP's CR4, the XSAVE size its XCR0.
    let osxsave = 1 << 27;
    let (a, _) = run(&mut vmm, &mut g, cpuid(1));
    assert_eq!(get(&a, HvRegisterName::RCX).unwrap() & osxsave, 0);
    g.set(HvRegisterName::CR4, 1 << 18);
    g.set(HvRegisterName::XFEM, 0b111);
    let (a, _) = run(&mut vmm, &mut g, cpuid(1));
    assert_eq!(get(&a, HvRegisterName::RCX).unwrap() & osxsave, osxsave);
    let (a, _) = run(&mut vmm, &mut g, cpuid(0xd));
    assert_eq!(get(&a, HvRegisterName::RBX), Some(0x340));
}

fn msr(number: u32, write: bool, value: u64, lma: bool) -> HvMessageBody {
    let access = if write { HvInterceptAccessType::WRITE } else { HvInterceptAccessType::READ };
    let mut h = long_header(0x1000, 2, access);
    h.execution_state = h.execution_state.with_efer_lma(lma);
    HvMessageBody::MsrIntercept(HvX64MsrInterceptMessage {
        header: h,
        msr_number: number,
        reserved: 0,
        rdx: value >> 32,
        rax: value & 0xffff_ffff,
    })
}

#[test]
fn efer_is_the_vps_and_unknown_msrs_raise_gp_once_logged() {
    let mut vmm = Vmm::new();
    let mut g = Fake::new();
    let (a, ev) = run(&mut vmm, &mut g, msr(crate::msr::EFER, true, 0x100, false));
    assert!(ev.is_empty());
    assert_eq!(updates(&a), [(HvRegisterName::RIP, 0x1002), (HvRegisterName::EFER, 0x100)]);
    g.set(HvRegisterName::EFER, 0x500);
    let (a, _) = run(&mut vmm, &mut g, msr(crate::msr::EFER, false, 0, true));
    assert_eq!(get(&a, HvRegisterName::RAX), Some(0x500));
    assert_eq!(get(&a, HvRegisterName::RDX), Some(0));
    let gp = [(HvRegisterName::PENDING_INTERRUPTION, exception(13, Some(0)))];
    let (a, ev) = run(&mut vmm, &mut g, msr(0x1234, false, 0, false));
    assert_eq!(updates(&a), gp);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].to_string(), "rdmsr of unknown MSR 0x1234 at rip 0x1000 raises #GP");
    let (a, ev) = run(&mut vmm, &mut g, msr(0x1234, true, 5, false));
    assert_eq!(updates(&a), gp);
    assert!(ev.is_empty(), "logged once");
    // Relaxed by the manifest: reads 0, writes ignored, still logged.
    let mut vmm = Vmm::with_config(VmmConfig { ignore_unknown_msrs: true, ..VmmConfig::default() });
    let (a, ev) = run(&mut vmm, &mut g, msr(0x1234, true, 5, false));
    assert_eq!(updates(&a), [(HvRegisterName::RIP, 0x1002)]);
    assert_eq!(ev[0].to_string(), "wrmsr of 0x5 to MSR 0x1234 at rip 0x1000 is ignored");
    let (a, _) = run(&mut vmm, &mut g, msr(0x1234, false, 0, false));
    assert_eq!((get(&a, HvRegisterName::RAX), get(&a, HvRegisterName::RDX)), (Some(0), Some(0)));
}

#[test]
fn pat_is_the_vps_and_reserved_types_raise_gp() {
    let mut vmm = Vmm::new();
    let mut g = Fake::new();
    let pat = crate::msr::num::PAT;
    let (a, _) = run(&mut vmm, &mut g, msr(pat, false, 0, false));
    assert_eq!((get(&a, HvRegisterName::RAX), get(&a, HvRegisterName::RDX)), (Some(0x0007_0406), Some(0x0007_0406)));
    let (a, _) = run(&mut vmm, &mut g, msr(pat, true, 0x0007_0106_0007_0406, false));
    assert_eq!(get(&a, HvRegisterName::PAT), Some(0x0007_0106_0007_0406));
    for bad in [0x0007_0406_0007_0402, 0x0307_0406_0007_0406, 0x0007_0406_0008_0406] {
        let (a, _) = run(&mut vmm, &mut g, msr(pat, true, bad, false));
        assert_eq!(updates(&a), [(HvRegisterName::PENDING_INTERRUPTION, exception(13, Some(0)))], "{bad:#x}");
    }
}

#[test]
fn efer_reads_the_vps_own_value_so_a_loader_set_lme_survives_read_modify_write() {
    let mut vmm = Vmm::new();
    let mut g = Fake::new();
    // A long-mode entry: LME and LMA set by the loader, not by WRMSR.
    g.set(HvRegisterName::EFER, 0x500);
    let (a, _) = run(&mut vmm, &mut g, msr(crate::msr::EFER, false, 0, true));
    assert_eq!(get(&a, HvRegisterName::RAX), Some(0x500));
    let (a, _) = run(&mut vmm, &mut g, msr(crate::msr::EFER, true, 0x500 | 0x801, true));
    assert_eq!(get(&a, HvRegisterName::EFER), Some(0xd01));
}

#[test]
fn efer_writes_the_architecture_refuses_are_gp_and_change_nothing() {
    let mut vmm = Vmm::new();
    let mut g = Fake::new();
    g.set(HvRegisterName::EFER, 0x500);
    g.set(HvRegisterName::CR0, 0x8000_0011);
    let gp = exception(13, Some(0));
    // LME cleared under paging, SVME (not offered), reserved bits.
    for value in [0x400, 0x500 | 1 << 12, 0x500 | 1 << 63, 0x500 | 1 << 9, u64::MAX] {
        let (a, _) = run(&mut vmm, &mut g, msr(crate::msr::EFER, true, value, true));
        assert_eq!(updates(&a), [(HvRegisterName::PENDING_INTERRUPTION, gp)], "{value:#x}");
    }
    // NXE (NX is offered) and SCE, and LMA written clear (the CPU's bit).
    let (a, _) = run(&mut vmm, &mut g, msr(crate::msr::EFER, true, 0x901, true));
    assert_eq!(get(&a, HvRegisterName::EFER), Some(0xd01));
    // Paging off: LME may change.
    g.set(HvRegisterName::CR0, 0x11);
    g.set(HvRegisterName::EFER, 0);
    let (a, _) = run(&mut vmm, &mut g, msr(crate::msr::EFER, true, 0x100, false));
    assert_eq!(get(&a, HvRegisterName::EFER), Some(0x100));
}

#[test]
fn exits_and_refusals_are_counted_for_the_report() {
    let mut vmm = Vmm::new();
    let mut g = Fake::new();
    run(&mut vmm, &mut g, msr(0x4000_0001, false, 0, true));
    run(&mut vmm, &mut g, msr(crate::msr::EFER, true, 1 << 63, true));
    run(&mut vmm, &mut g, msr(0x8b, false, 0, true));
    let HvMessageBody::UnmappedGpa(mut m) = memory(0x100_0000, 0x100_0000, false, false) else { panic!() };
    m.header.intercept_access_type = HvInterceptAccessType::EXECUTE;
    run(&mut vmm, &mut g, HvMessageBody::UnmappedGpa(m));
    assert_eq!(
        vmm.stats.exits().to_string(),
        "exits: 0 port, 3 MSR, 0 CPUID, 0 hypercall, 1 memory, 0 HLT, 0 other; 0 EOIs without one"
    );
    assert_eq!(vmm.stats.refused().to_string(), "refused: 2 #GP, 1 #UD, 0 failed hypercalls");
}

#[test]
fn efer_rules_are_the_hostile_guests() {
    let mut rng = fastrand::Rng::with_seed(0xefe7);
    for _ in 0..20_000 {
        let current = [0, 0x100, 0x500, 0x501, 0xd01][rng.usize(0..5)];
        let value = match rng.u8(0..3) {
            0 => current ^ 1 << rng.u32(0..64),
            1 => rng.u64(..) & 0xfff,
            _ => rng.u64(..),
        };
        let paging = current & 0x400 != 0;
        let refused = !crate::msr::efer_write_allowed(current, value, paging, true);
        if paging {
            assert_eq!(refused, guest_testkernel::hostile::msr::efer_write_faults(current, value, true), "{value:#x}");
        }
    }
}

#[test]
fn the_apic_base_msr_is_the_local_apics_and_a_synthetic_msr_without_a_profile_is_gp() {
    let mut vmm = Vmm::new();
    let mut g = Fake::new();
    // IA32_APIC_BASE: 0xFEE00000, enabled, BSP.
    let (a, ev) = run(&mut vmm, &mut g, msr(0x1b, false, 0, false));
    assert_eq!(get(&a, HvRegisterName::RAX), Some(0xfee0_0900));
    assert!(ev.is_empty());
    // HV_X64_MSR_GUEST_OS_ID without enlightenments: #GP(0), RIP unchanged.
    let (a, _) = run(&mut vmm, &mut g, msr(0x4000_0000, false, 0, false));
    let gp = get(&a, HvRegisterName::PENDING_INTERRUPTION).expect("an exception");
    let gp = tlfs::HvX64PendingInterruptionRegister::from_bits(gp);
    assert_eq!((gp.interruption_vector(), gp.deliver_error_code(), gp.error_code()), (13, true, 0));
    assert_eq!(get(&a, HvRegisterName::RIP), None);
}

#[test]
fn a_pit_interrupt_wakes_hlt_and_rides_on_the_reply() {
    let (mut vmm, mut g, deadline, halt) = pit_armed_and_halted();
    let a = vmm.handle(&halt, &mut g, deadline, |_| {});
    let Action::Resume(u) = a else { panic!("{a:?}") };
    let posted = u.iter().find(|(n, _)| *n == HvRegisterName::PENDING_INTERRUPTION).expect("posted").1;
    let posted = tlfs::HvX64PendingInterruptionRegister::from_bits(posted);
    assert_eq!((posted.interruption_pending(), posted.interruption_vector()), (true, 0x20));
}

/// SMP: the loop posted an interruption to a VP whose exit (older than the
/// post, so its header shows none) was waiting. The reply to that exit
/// must not carry another, which would replace the posted one in the
/// kernel's slot and leave it acknowledged for good: the PIT's vector
/// stays for later.
#[test]
fn a_reply_never_replaces_an_interruption_the_kernel_holds() {
    let (mut vmm, mut g, deadline, halt) = pit_armed_and_halted();
    vmm.slot_taken = true;
    let a = vmm.handle(&halt, &mut g, deadline, |_| {});
    let updates = match &a {
        Action::Resume(u) | Action::Halt(u) => u.clone(),
        other => panic!("{other:?}"),
    };
    assert!(updates.iter().all(|(n, _)| *n != HvRegisterName::PENDING_INTERRUPTION), "{a:?}");
    let later = vmm.interruption_for(0).expect("IRQ 0 still pending, not acknowledged");
    assert_eq!(tlfs::HvX64PendingInterruptionRegister::from_bits(later).interruption_vector(), 0x20);
}

/// A VMM with the test kernel's 8259s and a 100 Hz PIT, the first IRQ 0's
/// deadline, and a HLT exit with interrupts on.
fn pit_armed_and_halted() -> (Vmm, Fake, u64, HvMessage) {
    let mut vmm = Vmm::new();
    let mut g = Fake::new();
    // (TSC at 1 GHz here.)
    for (port, value) in PIT_AT_100_HZ {
        let m = io(port, true, value, 2);
        let a = vmm.handle(&m, &mut g, 0, |_| {});
        assert!(matches!(a, Action::Resume(_)), "port {port:#x}: {a:?}");
    }
    let deadline = vmm.next_deadline().expect("the PIT runs");
    assert!((9_000_000..=10_100_000).contains(&deadline), "first IRQ 0 at {deadline}");
    let mut h = long_header(0x1000, 1, HvInterceptAccessType::EXECUTE);
    h.rflags = 0x202;
    let halt = HvMessage::from_body(&HvMessageBody::X64Halt(HvX64HaltMessage { header: h }), 0);
    // Before the deadline HLT waits; at it, HLT ends with vector 0x20 posted.
    assert!(matches!(vmm.handle(&halt, &mut g, deadline - 1, |_| {}), Action::Halt(_)));
    (vmm, g, deadline, halt)
}

/// The loop skips its own poll of a partition after a CPUID or HLT exit
/// (`serve`): the poll that began the exit, at the same TSC, left nothing
/// for it, the interruption the reply took included.
#[test]
fn after_cpuid_and_hlt_a_poll_at_the_same_tsc_finds_nothing_to_do() {
    let (mut vmm, mut g, deadline, halt) = pit_armed_and_halted();
    let cpuid = |leaf: u64| {
        let body = HvMessageBody::X64CpuidIntercept(HvX64CpuidInterceptMessage {
            header: long_header(0x1000, 2, HvInterceptAccessType::EXECUTE),
            rax: leaf,
            rcx: 0,
            rdx: 0,
            rbx: 0,
            default_result_rax: 0,
            default_result_rcx: 0,
            default_result_rdx: 0,
            default_result_rbx: 0,
        });
        HvMessage::from_body(&body, 0)
    };
    let exits = [halt, cpuid(0), cpuid(1), cpuid(0xd)];
    for now in [deadline - 1, deadline, deadline + 1, 3 * deadline, 3 * deadline + 7, 250 * deadline] {
        for m in &exits {
            assert!(Vmm::leaves_devices_alone(&m.parse().unwrap()));
            vmm.handle(m, &mut g, now, |_| {});
            let before = format!("{vmm:?}");
            vmm.poll_with(now, &mut g);
            assert_eq!(format!("{vmm:?}"), before, "at {now}");
        }
    }
    assert!(!Vmm::leaves_devices_alone(&io(0x40, false, 0, 2).parse().unwrap()));
}

#[test]
fn hlt_resumes_after_it_unless_interrupts_are_off_and_shutdown_stops() {
    let mut vmm = Vmm::new();
    let mut g = Fake::new();
    let halt = |rflags| {
        let mut h = long_header(0x1000, 1, HvInterceptAccessType::EXECUTE);
        h.rflags = rflags;
        HvMessageBody::X64Halt(HvX64HaltMessage { header: h })
    };
    let (a, _) = run(&mut vmm, &mut g, halt(0x202));
    assert_eq!(a, Action::Halt(super::updates(&[(HvRegisterName::RIP, 0x1001)])));
    let (a, _) = run(&mut vmm, &mut g, halt(0x2));
    assert_eq!(a, Action::Stop(Stop::Halted { rip: 0x1000 }));
    let shutdown = HvMessageBody::UnrecoverableException(tlfs::HvX64UnrecoverableExceptionMessage {
        header: long_header(0x1234, 0, HvInterceptAccessType::EXECUTE),
    });
    let (a, _) = run(&mut vmm, &mut g, shutdown);
    let Action::Stop(stop) = a else { panic!() };
    assert_eq!(stop.to_string(), "guest stopped (triple fault or shutdown) at rip 0x1234");
}

fn memory(gpa: u64, rip: u64, write: bool, read_only: bool) -> HvMessageBody {
    let access = if write { HvInterceptAccessType::WRITE } else { HvInterceptAccessType::READ };
    let m = HvX64MemoryInterceptMessage {
        header: long_header(rip, 0, access),
        cache_type: tlfs::HvCacheType(6),
        instruction_byte_count: 0,
        memory_access_info: tlfs::HvX64MemoryAccessInfo::new(),
        tpr_priority: 0,
        reserved: 0,
        guest_virtual_address: 0,
        guest_physical_address: gpa,
        instruction_bytes: [0; 16],
    };
    if read_only { HvMessageBody::GpaIntercept(m) } else { HvMessageBody::UnmappedGpa(m) }
}

/// Identity-maps the low 1 GiB with 2 MiB pages, except the 4 KiB page at
/// linear 0x20_0000, which maps to `code_page`.
fn page_tables(g: &mut Fake, code_page: u64) {
    let (pml4, pdpt, pd, pt) = (0x10_0000u64, 0x10_1000u64, 0x10_2000u64, 0x10_3000u64);
    g.put(pml4, &(pdpt | 3).to_le_bytes());
    g.put(pdpt, &(pd | 3).to_le_bytes());
    for i in 0..512u64 {
        g.put(pd + i * 8, &((i << 21) | 0x83).to_le_bytes());
    }
    g.put(pd + 8, &(pt | 3).to_le_bytes());
    g.put(pt, &(code_page | 3).to_le_bytes());
    g.set(HvRegisterName::CR0, 0x8000_0011);
    g.set(HvRegisterName::CR3, pml4);
    g.set(HvRegisterName::CR4, 0x20);
}

#[test]
fn mmio_test_device_registers() {
    let mut vmm = Vmm::new();
    let mut g = Fake::new();
    page_tables(&mut g, 0x30_0000);
    // mov eax, dword [rdi]; movzx eax, byte [rdi]; mov dword [rdi], esi; mov rax, qword [rdi]
    g.put(0x1000, &[0x8b, 0x07, 0x0f, 0xb6, 0x07, 0x89, 0x37, 0x48, 0x8b, 0x07]);
    g.set(HvRegisterName::RAX, 0xffff_ffff_1111_1111);
    g.set(HvRegisterName::RSI, 0xc0ff_ee42);
    let base = crate::mmio::TEST_DEVICE;
    let (a, _) = run(&mut vmm, &mut g, memory(base, 0x1000, false, false));
    assert_eq!(updates(&a), [(HvRegisterName::RIP, 0x1002), (HvRegisterName::RAX, 0x5353_4554)]);
    let (a, _) = run(&mut vmm, &mut g, memory(base + 1, 0x1002, false, false));
    assert_eq!(updates(&a), [(HvRegisterName::RIP, 0x1005), (HvRegisterName::RAX, u64::from(b'E'))]);
    // Writes to the ID register are ignored; the scratch register keeps them.
    run(&mut vmm, &mut g, memory(base, 0x1005, true, false));
    let (a, _) = run(&mut vmm, &mut g, memory(base, 0x1000, false, false));
    assert_eq!(get(&a, HvRegisterName::RAX), Some(0x5353_4554));
    let (a, _) = run(&mut vmm, &mut g, memory(base + 8, 0x1005, true, false));
    assert_eq!(updates(&a), [(HvRegisterName::RIP, 0x1007)]);
    let (a, _) = run(&mut vmm, &mut g, memory(base + 8, 0x1000, false, false));
    assert_eq!(get(&a, HvRegisterName::RAX), Some(0xc0ff_ee42));
    // Offsets that are no register read all ones.
    let (a, _) = run(&mut vmm, &mut g, memory(base + 0x10, 0x1000, false, false));
    assert_eq!(get(&a, HvRegisterName::RAX), Some(0xffff_ffff));
    let (a, _) = run(&mut vmm, &mut g, memory(base + 4, 0x1007, false, false));
    assert_eq!(updates(&a), [(HvRegisterName::RIP, 0x100a), (HvRegisterName::RAX, 0xc0ff_ee42_ffff_ffff)]);
    let (a, _) = run(&mut vmm, &mut g, memory(base + 8, 0x1007, false, false));
    assert_eq!(get(&a, HvRegisterName::RAX), Some(0xffff_ffff_c0ff_ee42));
    assert_eq!(vmm.device.read(9, 2), 0xffee);
}

#[test]
fn unmapped_reads_are_all_ones_and_writes_vanish() {
    let mut vmm = Vmm::new();
    let mut g = Fake::new();
    page_tables(&mut g, 0x30_0000);
    // mov ax, word [rdi] (16-bit dest keeps the rest); mov dword [rdi], 0x12345678
    g.put(0x1000, &[0x66, 0x8b, 0x07, 0xc7, 0x07, 0x78, 0x56, 0x34, 0x12]);
    g.set(HvRegisterName::RAX, 0x1111_2222_3333_4444);
    let (a, ev) = run(&mut vmm, &mut g, memory(0xe000_0000, 0x1000, false, false));
    assert_eq!(updates(&a), [(HvRegisterName::RIP, 0x1003), (HvRegisterName::RAX, 0x1111_2222_3333_ffff)]);
    assert!(ev.is_empty());
    let (a, ev) = run(&mut vmm, &mut g, memory(0xe000_0000, 0x1003, true, false));
    assert_eq!(updates(&a), [(HvRegisterName::RIP, 0x1009)]);
    assert!(ev.is_empty());
}

#[test]
fn executing_where_nothing_is_raises_ud_there() {
    let mut vmm = Vmm::new();
    let mut g = Fake::new();
    page_tables(&mut g, 0x30_0000);
    let HvMessageBody::UnmappedGpa(mut m) = memory(0x100_0000, 0x100_0000, false, false) else { panic!() };
    m.header.intercept_access_type = HvInterceptAccessType::EXECUTE;
    let (a, ev) = run(&mut vmm, &mut g, HvMessageBody::UnmappedGpa(m));
    let ud = tlfs::HvX64PendingInterruptionRegister::pending(tlfs::HvX64PendingInterruptionType::EXCEPTION, 6, None);
    assert_eq!(updates(&a), [(HvRegisterName::PENDING_INTERRUPTION, ud.into_bits())], "RIP stays at the fetch");
    assert!(ev.is_empty(), "the guest's own business: nothing logged");
}

#[test]
fn writes_to_read_only_pages_are_dropped_and_logged() {
    let mut vmm = Vmm::new();
    let mut g = Fake::new();
    page_tables(&mut g, 0x30_0000);
    g.put(0xf_f000, b"TESSROM\0");
    // mov qword [rdi], rsi
    g.put(0x1000, &[0x48, 0x89, 0x37]);
    g.set(HvRegisterName::RSI, 0);
    let (a, ev) = run(&mut vmm, &mut g, memory(0xf_f000, 0x1000, true, true));
    assert_eq!(updates(&a), [(HvRegisterName::RIP, 0x1003)]);
    assert_eq!(ev, [Event::ReadOnlyWrite { gpa: 0xf_f000, rip: 0x1000 }]);
    assert_eq!(ev[0].to_string(), "write to read-only GPA 0xff000 at rip 0x1000 dropped");
    assert_eq!(&g.ram[0xf_f000..0xf_f008], b"TESSROM\0");
}

/// TLFS 3.13: "Attempts to write to the hypercall page will result in a
/// protection (#GP) exception." The kernel withholds the page's guest
/// write access; the write's intercept is answered with #GP(0) at the
/// instruction, whatever it is (not even decoded), and nothing changes.
#[test]
fn a_write_to_the_hypercall_page_is_gp() {
    let profile = crate::profile::EnlightenmentProfile::new(sysimage::Enlightenments::HYPERV, 1, 1).unwrap();
    let mut vmm = Vmm::with_config(VmmConfig { profile, ..VmmConfig::default() });
    let mut g = Fake::new();
    page_tables(&mut g, 0x30_0000);
    let (gpn, rip) = (0x50u64, 0x1000);
    let _ = run(&mut vmm, &mut g, msr(tlfs::msr::HvX64Msr::GUEST_OS_ID.0, true, 1 << 63, true));
    let (a, _) = run(&mut vmm, &mut g, msr(tlfs::msr::HvX64Msr::HYPERCALL.0, true, gpn << 12 | 1, true));
    assert_eq!(updates(&a), [(HvRegisterName::RIP, 0x1002)], "enabled");
    assert!(vmm.synthetic.read_only_overlay(gpn << 12 | 0xfff));
    let page = g.ram[(gpn as usize) << 12..((gpn as usize) + 1) << 12].to_vec();
    let gp0 =
        tlfs::HvX64PendingInterruptionRegister::pending(tlfs::HvX64PendingInterruptionType::EXCEPTION, 13, Some(0));
    let (a, ev) = run(&mut vmm, &mut g, memory(gpn << 12 | 0x7f, rip, true, true));
    assert_eq!(updates(&a), [(HvRegisterName::PENDING_INTERRUPTION, gp0.into_bits())], "RIP stays");
    assert!(ev.is_empty());
    assert_eq!(g.ram[(gpn as usize) << 12..((gpn as usize) + 1) << 12], page[..]);
    // A write to another read-only page is a ROM write, dropped.
    g.put(rip, &[0x48, 0x89, 0x37]);
    g.set(HvRegisterName::RSI, 0);
    let (a, ev) = run(&mut vmm, &mut g, memory((gpn + 1) << 12, rip, true, true));
    assert_eq!(updates(&a), [(HvRegisterName::RIP, rip + 3)]);
    assert_eq!(ev.len(), 1);
    // Disabled, the page is the guest's RAM again.
    let _ = run(&mut vmm, &mut g, msr(tlfs::msr::HvX64Msr::HYPERCALL.0, true, gpn << 12, true));
    assert!(!vmm.synthetic.read_only_overlay(gpn << 12));
}

#[test]
fn the_instruction_is_fetched_through_the_guest_page_tables() {
    let mut vmm = Vmm::new();
    let mut g = Fake::new();
    page_tables(&mut g, 0x30_0000);
    // Linear 0x20_0ffe is physical 0x30_0ffe (4 KiB page); the instruction
    // crosses into linear 0x20_1000, which the 4 KiB table leaves unmapped...
    g.put(0x30_0ff0, &[0x8b, 0x07]);
    g.set(HvRegisterName::RAX, 0);
    let (a, _) = run(&mut vmm, &mut g, memory(crate::mmio::TEST_DEVICE, 0x20_0ff0, false, false));
    assert_eq!(updates(&a), [(HvRegisterName::RIP, 0x20_0ff2), (HvRegisterName::RAX, 0x5353_4554)]);
    // ...so an instruction cut there cannot be decoded and the VP stops.
    g.put(0x30_0fff, &[0x8b]);
    let (a, ev) = run(&mut vmm, &mut g, memory(crate::mmio::TEST_DEVICE, 0x20_0fff, false, false));
    assert!(matches!(a, Action::Stop(Stop::Failed { .. })));
    assert!(matches!(ev[..], [Event::Unemulated { why: Unemulated::Decode(_), .. }]));
    // Without paging (real mode) the fetch is at CS.base + IP.
    let mut h = header(0x10, 0, HvInterceptAccessType::READ);
    h.cs_segment.base = 0x7000;
    g.put(0x7010, &[0x8a, 0x05]); // mov al, [di]
    let HvMessageBody::UnmappedGpa(mut m) = memory(0xe000_0000, 0, false, false) else { panic!() };
    m.header = h;
    let (a, _) = run(&mut vmm, &mut g, HvMessageBody::UnmappedGpa(m));
    assert_eq!(updates(&a), [(HvRegisterName::RIP, 0x12), (HvRegisterName::RAX, 0xff)]);
}

#[test]
fn translate_handles_32_bit_and_pae_paging() {
    let mut g = Fake::new();
    // 32-bit paging: a 4 MiB page at linear 0x40_0000 -> 0 and a 4 KiB one.
    g.put(0x20_0000 + 4, &0x83u32.to_le_bytes());
    g.put(0x20_0000, &0x20_1003u32.to_le_bytes());
    g.put(0x20_1000 + 5 * 4, &0x30_0003u32.to_le_bytes());
    g.set(HvRegisterName::CR0, 0x8000_0001);
    g.set(HvRegisterName::CR3, 0x20_0000);
    g.set(HvRegisterName::CR4, 0x10);
    assert_eq!(crate::guest::translate(&mut g, false, true, 0x41_2345), Ok(0x1_2345));
    assert_eq!(crate::guest::translate(&mut g, false, true, 0x5123), Ok(0x30_0123));
    assert!(crate::guest::translate(&mut g, false, true, 0x6000).is_err());
    // PAE: PDPTE 0 -> PD at 0x21_0000 with a 2 MiB page.
    g.put(0x22_0000, &0x21_0001u64.to_le_bytes());
    g.put(0x21_0000 + 8, &0x60_0083u64.to_le_bytes());
    g.set(HvRegisterName::CR3, 0x22_0000);
    g.set(HvRegisterName::CR4, 0x20);
    assert_eq!(crate::guest::translate(&mut g, false, true, 0x20_1234), Ok(0x60_1234));
}

/// The SynIC end to end through the exit handler: a one-shot synthetic
/// timer's deadline is the VMM's, its message lands in the SIM page at it,
/// and the auto-EOI SINT's vector rides on the reply to a HLT without
/// entering the ISR (TLFS 11.8.5, 12.5).
#[test]
fn a_synthetic_timer_wakes_hlt_with_its_auto_eoi_sint() {
    use sysimage::{Enlightenment, Enlightenments};
    let set = Enlightenments::HYPERV.with(Enlightenment::Synic, true).with(Enlightenment::SyntheticTimers, true);
    let profile = crate::profile::EnlightenmentProfile::new(set, 1, 1).unwrap();
    let mut vmm = Vmm::with_config(VmmConfig { profile, ..VmmConfig::default() });
    let mut g = Fake::new();
    // The local APIC software-enabled (SVR).
    let _ = vmm.irq.mmio_write(0, 0xfee0_00f0, 4, 0x1ff, 0);
    for (number, value) in [
        (0x4000_0080, 1),             // SCONTROL
        (0x4000_0083, 0x5000 | 1),    // SIMP
        (0x4000_0091, 0x2_0050),      // SINT1: vector 0x50, auto-EOI
        (0x4000_00b1, 1000),          // STIMER0_COUNT: reference time 1000 (100 us)
        (0x4000_00b0, 1 | (1 << 16)), // STIMER0_CONFIG: enabled, one-shot, SINT1
    ] {
        let (a, _) = run(&mut vmm, &mut g, msr(number, true, value, true));
        assert_eq!(get(&a, HvRegisterName::PENDING_INTERRUPTION), None, "{number:#x}: {a:?}");
    }
    assert!(vmm.irq.lapic(0).unwrap().auto_eoi().get(0x50));
    let deadline = vmm.next_deadline().expect("the timer's deadline");
    assert!((100_000..=100_200).contains(&deadline), "1 GHz: 100 us, got {deadline}");
    let mut h = long_header(0x1000, 1, HvInterceptAccessType::EXECUTE);
    h.rflags = 0x202;
    let halt = HvMessage::from_body(&HvMessageBody::X64Halt(HvX64HaltMessage { header: h }), 0);
    assert!(matches!(vmm.handle(&halt, &mut g, deadline - 200, |_| {}), Action::Halt(_)), "not yet");
    assert_eq!(&g.ram[0x5100..0x5104], &[0; 4], "no message yet");
    let a = vmm.handle(&halt, &mut g, deadline, |_| {});
    let posted = get(&a, HvRegisterName::PENDING_INTERRUPTION).expect("the SINT's vector");
    assert_eq!(tlfs::HvX64PendingInterruptionRegister::from_bits(posted).interruption_vector(), 0x50);
    assert!(!vmm.irq.lapic(0).unwrap().isr().get(0x50), "auto-EOI: not in service");
    assert_eq!(&g.ram[0x5100..0x5104], &0x8000_0010u32.to_le_bytes(), "HvMessageTimerExpired in SINT1's slot");
    assert_eq!(vmm.next_deadline(), None, "a one-shot");
}

/// A broker for one partition: records posts and signals, answers `answer`.
struct FakeBroker {
    posts: Vec<(u32, u32, Vec<u8>)>,
    signals: Vec<(u32, u16)>,
    answer: tlfs::HvResult<()>,
    /// (VP, accepting) as reported.
    states: Vec<(u32, u32)>,
}

impl FakeBroker {
    /// Answers `Ok` and records.
    fn new() -> FakeBroker {
        FakeBroker { posts: Vec::new(), signals: Vec::new(), answer: Ok(()), states: Vec::new() }
    }
}

impl crate::messaging::Connections for FakeBroker {
    fn post_message(&mut self, connection_id: u32, message_type: u32, payload: &[u8]) -> tlfs::HvResult<()> {
        self.posts.push((connection_id, message_type, payload.to_vec()));
        self.answer
    }
    fn signal_event(&mut self, connection_id: u32, flag_number: u16) -> tlfs::HvResult<()> {
        self.signals.push((connection_id, flag_number));
        self.answer
    }
    fn synic_state(&mut self, vp: u32, accepting: u32) -> tlfs::HvResult<()> {
        self.states.push((vp, accepting));
        self.answer
    }
}

/// The broker hears what a VP's SINTs take whenever an exit changes it,
/// before the VP runs on (TLFS 11.11.1, 11.11.2 answered there): messages
/// with SCONTROL and the SIM page on, events with SCONTROL and the SIEF
/// page on and the SINT unmasked; a failed report is made again at the
/// VP's next exit.
#[test]
fn the_broker_is_told_what_each_sint_accepts_when_it_changes() {
    use broker_api::accepting::{events, messages};
    use sysimage::{Enlightenment, Enlightenments};
    let set = Enlightenments::HYPERV.with(Enlightenment::Synic, true);
    let profile = crate::profile::EnlightenmentProfile::new(set, 2, 1).unwrap();
    let mut vmm = Vmm::with_config(VmmConfig { profile, vps: 2, ..VmmConfig::default() });
    let mut g = Fake::new();
    let mut broker = FakeBroker::new();
    let mut write = |vmm: &mut Vmm, broker: &mut FakeBroker, number: u32, value: u64| {
        let m = HvMessage::from_body(&msr(number, true, value, true), 0);
        vmm.handle_with(&m, &mut g, 0, broker, |_| {})
    };
    write(&mut vmm, &mut broker, 0x4000_0083, 0x5000 | 1); // SIMP
    assert!(broker.states.is_empty(), "SCONTROL still off: nothing changed");
    write(&mut vmm, &mut broker, 0x4000_0080, 1); // SCONTROL
    let all_messages = (0..16).fold(0, |b, s| b | messages(s));
    assert_eq!(broker.states, [(0, all_messages)], "masked SINTs take messages");
    write(&mut vmm, &mut broker, 0x4000_0082, 0x6000 | 1); // SIEFP
    assert_eq!(broker.states.len(), 1, "every SINT masked: still no events");
    broker.answer = Err(tlfs::HvError::OPERATION_FAILED);
    write(&mut vmm, &mut broker, 0x4000_0093, 0x52); // SINT3 unmasked
    assert_eq!(broker.states[1], (0, all_messages | events(3)));
    broker.answer = Ok(());
    write(&mut vmm, &mut broker, 0x4000_0080, 1); // an exit that changes nothing
    assert_eq!(broker.states[2], (0, all_messages | events(3)), "the failed report is made again");
    write(&mut vmm, &mut broker, 0x4000_0080, 1);
    assert_eq!(broker.states.len(), 3, "and then not again");
    write(&mut vmm, &mut broker, 0x4000_0080, 0); // SCONTROL off
    assert_eq!(broker.states[3], (0, 0));
}

/// A VMM with the SynIC (and so PostMessages and SignalEvents), its local
/// APIC enabled, SCONTROL on, the SIM page at 0x5000 and the SIEF page at
/// 0x6000, SINT2 on vector 0x51 and SINT3 on vector 0x52, both auto-EOI.
fn synic_vmm(g: &mut Fake) -> Vmm {
    use sysimage::{Enlightenment, Enlightenments};
    let set = Enlightenments::HYPERV.with(Enlightenment::Synic, true);
    let profile = crate::profile::EnlightenmentProfile::new(set, 1, 1).unwrap();
    let mut vmm = Vmm::with_config(VmmConfig { profile, ..VmmConfig::default() });
    let _ = vmm.irq.mmio_write(0, 0xfee0_00f0, 4, 0x1ff, 0);
    for (number, value) in [
        (0x4000_0080, 1),          // SCONTROL
        (0x4000_0083, 0x5000 | 1), // SIMP
        (0x4000_0082, 0x6000 | 1), // SIEFP
        (0x4000_0092, 0x2_0051),   // SINT2: vector 0x51, auto-EOI
        (0x4000_0093, 0x2_0052),   // SINT3: vector 0x52, auto-EOI
    ] {
        let (a, _) = run(&mut vmm, g, msr(number, true, value, true));
        assert!(matches!(a, Action::Resume(_)), "{number:#x}: {a:?}");
    }
    vmm
}

fn halt() -> HvMessage {
    let mut h = long_header(0x1000, 1, HvInterceptAccessType::EXECUTE);
    h.rflags = 0x202;
    HvMessage::from_body(&HvMessageBody::X64Halt(HvX64HaltMessage { header: h }), 0)
}

fn posted_vector(a: &Action) -> Option<u8> {
    get(a, HvRegisterName::PENDING_INTERRUPTION)
        .map(|v| tlfs::HvX64PendingInterruptionRegister::from_bits(v).interruption_vector() as u8)
}

/// HvPostMessage and HvSignalEvent through the exit handler reach the
/// partition's broker, whose answer is the guest's RAX.
#[test]
fn post_and_signal_hypercalls_go_to_the_broker() {
    use tlfs::hypercall::{HvCallCode, HvHypercallInput, HvInputPostMessage};
    use tlfs::zerocopy::IntoBytes;
    let mut g = Fake::new();
    let mut vmm = synic_vmm(&mut g);
    let mut broker = FakeBroker::new();
    let mut input =
        HvInputPostMessage { connection_id: 0x10, reserved: 0, message_type: 0x42, payload_size: 3, payload: [0; 240] };
    input.payload[..3].copy_from_slice(b"abc");
    g.put(0x7000, input.as_bytes());
    let call = |rcx: u64, rdx: u64| HvMessage::from_body(&hypercall(rcx, rdx), 0);
    let post = HvHypercallInput::new().with_call_code(HvCallCode::POST_MESSAGE.0).into_bits();
    let a = vmm.handle_with(&call(post, 0x7000), &mut g, 0, &mut broker, |_| {});
    assert_eq!(get(&a, HvRegisterName::RAX), Some(0), "{a:?}");
    assert_eq!(get(&a, HvRegisterName::RIP), Some(0x1003));
    assert_eq!(broker.posts, vec![(0x10, 0x42, b"abc".to_vec())]);
    // A full queue at the port: the broker's INSUFFICIENT_BUFFERS.
    broker.answer = Err(tlfs::HvError::INSUFFICIENT_BUFFERS);
    let a = vmm.handle_with(&call(post, 0x7000), &mut g, 0, &mut broker, |_| {});
    assert_eq!(get(&a, HvRegisterName::RAX), Some(u64::from(tlfs::HvStatus::INSUFFICIENT_BUFFERS.0)));
    // Fast HvSignalEvent: connection 0x11, flag 2.
    broker.answer = Ok(());
    let signal = HvHypercallInput::new().with_call_code(HvCallCode::SIGNAL_EVENT.0).with_fast(true).into_bits();
    let a = vmm.handle_with(&call(signal, 2 << 32 | 0x11), &mut g, 0, &mut broker, |_| {});
    assert_eq!(get(&a, HvRegisterName::RAX), Some(0));
    assert_eq!(broker.signals, vec![(0x11, 2)]);
    // Without a broker (Vmm::handle): no connection exists.
    let a = vmm.handle(&call(signal, 2 << 32 | 0x11), &mut g, 0, |_| {});
    assert_eq!(get(&a, HvRegisterName::RAX), Some(u64::from(tlfs::HvStatus::INVALID_CONNECTION_ID.0)));
    // Without the SynIC, no privilege: ACCESS_DENIED before the broker.
    let mut plain = Vmm::with_config(VmmConfig {
        profile: crate::profile::EnlightenmentProfile::new(
            sysimage::Enlightenments::HYPERV
                .with(sysimage::Enlightenment::SyntheticTimers, false)
                .with(sysimage::Enlightenment::Synic, false),
            1,
            1,
        )
        .unwrap(),
        ..VmmConfig::default()
    });
    let a = plain.handle_with(&call(signal, 0x11), &mut g, 0, &mut broker, |_| {});
    assert_eq!(get(&a, HvRegisterName::RAX), Some(u64::from(tlfs::HvStatus::ACCESS_DENIED.0)));
    assert_eq!(broker.signals.len(), 1);
}

/// A fetched message lands in its SINT's slot with the port as origin and
/// its vector rides on the reply to HLT; a second one finds the slot busy,
/// sets MessagePending and is held until the guest's EOM, which delivers
/// it (the timers' redelivery path). Events set their SIEF flag and raise
/// the SINT only on clear to set.
#[test]
fn deliveries_from_the_broker_reach_the_synic_through_the_exit_handler() {
    use crate::messaging::{Delivered, Delivery};
    let mut g = Fake::new();
    let mut vmm = synic_vmm(&mut g);
    let first = Delivery::from_fetch(1, 0, 2, 0x20, 0x42, b"hello", 1).unwrap();
    assert_eq!(vmm.deliver(&first, &mut g), Delivered::Done);
    let slot = 0x5000 + 2 * 256;
    assert_eq!(&g.ram[slot..slot + 4], &0x42u32.to_le_bytes(), "type");
    assert_eq!(g.ram[slot + 4], 5, "payload size");
    assert_eq!(g.ram[slot + 5], 0, "no MessagePending");
    assert_eq!(&g.ram[slot + 8..slot + 16], &0x20u64.to_le_bytes(), "origination ID: the port");
    assert_eq!(&g.ram[slot + 16..slot + 21], b"hello");
    assert_eq!(posted_vector(&vmm.handle(&halt(), &mut g, 0, |_| {})), Some(0x51));

    let second = Delivery::from_fetch(1, 0, 2, 0x20, 0x43, b"again", 1).unwrap();
    assert_eq!(vmm.deliver(&second, &mut g), Delivered::Held);
    assert!(vmm.synthetic.holds_message());
    assert_eq!(g.ram[slot + 5] & 1, 1, "MessagePending in the busy slot");
    assert_eq!(&g.ram[slot..slot + 4], &0x42u32.to_le_bytes(), "the first is untouched");
    // One held message per VP: a third is not taken (the VID fetches no
    // more while one is held).
    assert_eq!(vmm.deliver(&second, &mut g), Delivered::Dropped);
    assert!(matches!(vmm.handle(&halt(), &mut g, 0, |_| {}), Action::Halt(_)), "nothing new to post");
    // The guest empties the slot and writes EOM.
    g.ram[slot..slot + 4].fill(0);
    let (a, _) = run(&mut vmm, &mut g, msr(0x4000_0084, true, 0, true));
    assert_eq!(posted_vector(&a), Some(0x51), "redelivered on EOM");
    assert!(!vmm.synthetic.holds_message());
    assert_eq!(&g.ram[slot..slot + 4], &0x43u32.to_le_bytes());
    assert_eq!(&g.ram[slot + 16..slot + 21], b"again");

    // Event flag 7 of SINT3: byte 3 * 256 + 0 of the SIEF page, bit 7.
    let event = Delivery::from_fetch(2, 0, 3, 0x21, 7, &[], 1).unwrap();
    assert_eq!(vmm.deliver(&event, &mut g), Delivered::Done);
    assert_eq!(g.ram[0x6000 + 3 * 256], 0x80);
    assert_eq!(posted_vector(&vmm.handle(&halt(), &mut g, 0, |_| {})), Some(0x52));
    assert_eq!(vmm.deliver(&event, &mut g), Delivered::Done);
    assert!(matches!(vmm.handle(&halt(), &mut g, 0, |_| {}), Action::Halt(_)), "already set: no interrupt");
    // An event for a masked SINT, or a message for a VP without a SynIC
    // page, is dropped and counted.
    let masked = Delivery::from_fetch(2, 0, 4, 0x21, 0, &[], 1).unwrap();
    assert_eq!(vmm.deliver(&masked, &mut g), Delivered::Dropped);
    assert_eq!(vmm.stats.dropped_deliveries, 2);
}

/// What the broker hands over is checked before it reaches a SynIC.
#[test]
fn malformed_deliveries_are_refused() {
    use crate::messaging::Delivery;
    assert!(Delivery::from_fetch(1, 0, 2, 0x20, 0x42, &[0; 240], 1).is_some());
    assert!(Delivery::from_fetch(1, 0, 2, 0x20, 0x42, &[0; 241], 1).is_none(), "payload over 240");
    assert!(Delivery::from_fetch(1, 1, 2, 0x20, 0x42, &[], 1).is_none(), "VP beyond the partition");
    assert!(Delivery::from_fetch(1, 0, 16, 0x20, 0x42, &[], 1).is_none(), "SINT 16");
    assert!(Delivery::from_fetch(1, 0, 2, 0x20, 0, &[], 1).is_none(), "type None");
    assert!(Delivery::from_fetch(1, 0, 2, 0x20, 0x8000_0010, &[], 1).is_none(), "a hypervisor type");
    assert!(Delivery::from_fetch(2, 0, 2, 0x20, 2047, &[], 1).is_some());
    assert!(Delivery::from_fetch(2, 0, 2, 0x20, 2048, &[], 1).is_none(), "flag 2048");
    assert!(Delivery::from_fetch(2, 0, 2, 0x20, 1, &[1], 1).is_none(), "an event with a payload");
    assert!(Delivery::from_fetch(3, 0, 2, 0x20, 1, &[], 1).is_none(), "unknown kind");
}

/// A hypercall intercept at RIP 0x1000 (VMCALL, 3 bytes) with input
/// control `rcx` and input `rdx` (a GPA, or a fast call's first word).
fn hypercall(rcx: u64, rdx: u64) -> HvMessageBody {
    HvMessageBody::HypercallIntercept(tlfs::HvX64HypercallInterceptMessage {
        header: long_header(0x1000, 3, HvInterceptAccessType::EXECUTE),
        rax: 0,
        rbx: 0,
        rcx,
        rdx,
        r8: 0,
        rsi: 0,
        rdi: 0,
        xmm: [[0; 2]; 6],
        flags: 0,
        reserved: 0,
    })
}

mod eoi_assist;
mod testdev;
mod vtl;

/// The guest idle state (TLFS 7.5) ends when an interrupt arrives even if
/// the VP cannot take it yet: Linux's paravirtual spinlock waits in it with
/// interrupts off, perhaps inside an interrupt handler whose vector blocks
/// the lower one of the kick (`hv_qlock_wait`, `hv_qlock_kick`).
#[test]
fn guest_idle_ends_on_an_interrupt_arriving_masked_or_not() {
    let profile = crate::profile::EnlightenmentProfile::new(sysimage::Enlightenments::HYPERV, 1, 1).unwrap();
    let mut vmm = Vmm::with_config(VmmConfig { profile, ..VmmConfig::default() });
    let mut g = Fake::new();
    let _ = vmm.irq.mmio_write(0, 0xfee0_00f0, 4, 0x1ff, 0);
    // 0xfc in service: 0xf7, of the same priority class, waits for its EOI.
    vmm.irq.lapic_mut(0).unwrap().accept(0xfc, false);
    assert!(vmm.interruption_for(0).is_some());
    assert!(vmm.irq.lapic(0).unwrap().isr().get(0xfc));
    let idle = || msr(tlfs::msr::HvX64Msr::GUEST_IDLE.0, false, 0, true);
    let (a, _) = run(&mut vmm, &mut g, idle());
    assert!(matches!(a, Action::Halt(_)), "nothing arrived: it sleeps, {a:?}");
    assert!(!vmm.wakes_from_idle(0));
    vmm.irq.lapic_mut(0).unwrap().accept(0xf7, false);
    assert_eq!(vmm.interruption_for(0), None, "below the vector in service: not deliverable");
    assert!(vmm.wakes_from_idle(0), "but it arrived: the idle state ends");
    vmm.woke(0);
    assert!(!vmm.wakes_from_idle(0), "once");
    // Read again with the kick still requested: no sleep at all.
    let (a, _) = run(&mut vmm, &mut g, idle());
    let Action::Resume(u) = &a else { panic!("resumes at once, {a:?}") };
    assert!(u.contains(&(HvRegisterName::RIP, 0x1002)) && u.contains(&(HvRegisterName::RAX, 0)));
    assert!(!vmm.wakes_from_idle(0), "not asleep");
}

/// The test kernel's sequence: 8259s at 0x20/0x28, only IRQ 0 unmasked,
/// PIT channel 0 rate generator at 100 Hz: (port, value) of each `out`.
pub(crate) const PIT_AT_100_HZ: [(u16, u64); 13] = [
    (0x20, 0x11),
    (0xa0, 0x11),
    (0x21, 0x20),
    (0xa1, 0x28),
    (0x21, 4),
    (0xa1, 2),
    (0x21, 1),
    (0xa1, 1),
    (0x21, 0xfe),
    (0xa1, 0xff),
    (0x43, 0x34),
    (0x40, 0x9b),
    (0x40, 0x2e),
];
