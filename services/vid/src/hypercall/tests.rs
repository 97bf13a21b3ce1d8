//! The parser: modes, control values, parameter GPAs, fast input and
//! output, continuation. Per-call behaviour is in `tests/calls.rs`.

use super::*;
use std::collections::HashMap;

/// [`super::Outcome`] with the registers the call set, for the tests.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    InjectUd,
    Complete { result: HvHypercallOutput, updates: Updates, xmm: XmmUpdates },
    Continue { control: HvHypercallInput, updates: Updates },
    SwitchVtl { to: HvVtl, fast: bool },
}

impl Outcome {
    fn result(&self) -> Option<HvHypercallOutput> {
        match self {
            Outcome::Complete { result, .. } => Some(*result),
            _ => None,
        }
    }
}

/// [`super::handle`], its outcome with the registers it set; #UD sets none.
fn handle(
    caller: &Caller,
    xmm: &mut impl XmmRegisters,
    guest: &mut impl Guest,
    target: &mut impl HypercallTarget,
) -> Outcome {
    let (mut updates, mut xmm_out) = (Updates::new(), XmmUpdates::new());
    match super::handle(caller, xmm, guest, target, (&mut updates, &mut xmm_out)) {
        super::Outcome::InjectUd => {
            assert!(updates.is_empty() && xmm_out.is_empty(), "#UD sets no register");
            Outcome::InjectUd
        }
        super::Outcome::Complete { result } => Outcome::Complete { result, updates, xmm: xmm_out },
        super::Outcome::SwitchVtl { to, fast } => {
            assert!(updates.is_empty() && xmm_out.is_empty(), "a switch sets no register here");
            Outcome::SwitchVtl { to, fast }
        }
        super::Outcome::Continue { control } => {
            assert!(xmm_out.is_empty(), "a continuation has no output");
            Outcome::Continue { control, updates }
        }
    }
}
use tlfs::HvStatus;
use tlfs::hypercall::{HvInputGetSetVpRegisters, HvInputSendSyntheticClusterIpi, HvInputVtl};

mod calls;
mod hostile;
mod messaging;
mod vsm;

/// Input and output pages, and a read-only page.
const IN: u64 = 0x1000;
const OUT: u64 = 0x2000;
const ROM: u64 = 0x3000;
const RAM_END: u64 = 0x4000;

struct Mem {
    ram: Vec<u8>,
}

impl Mem {
    fn new() -> Mem {
        Mem { ram: vec![0; RAM_END as usize] }
    }
    fn put(&mut self, gpa: u64, bytes: &[u8]) {
        self.ram[gpa as usize..gpa as usize + bytes.len()].copy_from_slice(bytes);
    }
    fn get(&self, gpa: u64, len: usize) -> &[u8] {
        &self.ram[gpa as usize..gpa as usize + len]
    }
}

impl Guest for Mem {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        let Some(bytes) = self.ram.get(gpa as usize..gpa as usize + buf.len()) else { return false };
        buf.copy_from_slice(bytes);
        true
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        if gpa & !0xfff == ROM || gpa + data.len() as u64 > RAM_END {
            return false;
        }
        self.put(gpa, data);
        true
    }
    fn register(&mut self, _: HvRegisterName) -> Option<(u64, u64)> {
        None
    }
}

/// A partition that records what the handlers ask of it. APIC IDs are
/// twice the VP index.
struct Partition {
    vps: u32,
    flushes: Vec<(Vec<u32>, Flush, Option<Vec<u64>>)>,
    ipis: Vec<(u8, Vec<u32>)>,
    spins: Vec<(u32, u64)>,
    regs: HashMap<(u32, u32), HvRegisterValue>,
    /// HvPostMessage and HvSignalEvent passed on, and the broker's answer.
    posts: Vec<(u32, u32, Vec<u8>)>,
    signals: Vec<(u32, u16)>,
    broker: HvResult<()>,
    /// With VSM offered (`tests/vsm.rs`).
    vsm: Option<crate::vsm::PartitionVsm>,
}

impl Partition {
    fn new(vps: u32) -> Partition {
        Partition {
            vps,
            flushes: Vec::new(),
            ipis: Vec::new(),
            spins: Vec::new(),
            regs: HashMap::new(),
            posts: Vec::new(),
            signals: Vec::new(),
            broker: Ok(()),
            vsm: None,
        }
    }
    fn untouched(&self) -> bool {
        self.flushes.is_empty()
            && self.ipis.is_empty()
            && self.spins.is_empty()
            && self.regs.is_empty()
            && self.posts.is_empty()
            && self.signals.is_empty()
    }
}

impl HypercallTarget for Partition {
    fn vp_count(&self) -> u32 {
        self.vps
    }
    fn flush_tlb(&mut self, vps: &VpSet, flush: Flush, ranges: Option<&[HvGvaRange]>) {
        let ranges = ranges.map(|r| r.iter().map(|r| r.into_bits()).collect());
        self.flushes.push((vps.iter().collect(), flush, ranges));
    }
    fn send_ipi(&mut self, vector: u8, vps: &VpSet) {
        self.ipis.push((vector, vps.iter().collect()));
    }
    fn long_spin_wait(&mut self, vp: HvVpIndex, spin_count: u64) {
        self.spins.push((vp, spin_count));
    }
    fn get_vp_register(&mut self, vp: HvVpIndex, name: HvRegisterName) -> HvResult<HvRegisterValue> {
        self.regs.get(&(vp, name.0)).copied().ok_or(HvError::INVALID_PARAMETER)
    }
    fn set_vp_register(&mut self, vp: HvVpIndex, name: HvRegisterName, value: HvRegisterValue) -> HvResult<()> {
        name.name().ok_or(HvError::INVALID_PARAMETER)?;
        self.regs.insert((vp, name.0), value);
        Ok(())
    }
    fn post_message(&mut self, connection_id: u32, message_type: u32, payload: &[u8]) -> HvResult<()> {
        self.posts.push((connection_id, message_type, payload.to_vec()));
        self.broker
    }
    fn signal_event(&mut self, connection_id: u32, flag_number: u16) -> HvResult<()> {
        self.signals.push((connection_id, flag_number));
        self.broker
    }
    fn vsm(&mut self) -> Option<&mut crate::vsm::PartitionVsm> {
        self.vsm.as_mut()
    }
    fn apic_id_to_vp_index(&self, apic_id: u32) -> Option<HvVpIndex> {
        (apic_id.is_multiple_of(2) && apic_id / 2 < self.vps).then_some(apic_id / 2)
    }

    fn paging_features(&self) -> crate::translate::PagingFeatures {
        crate::translate::PagingFeatures { phys_bits: 40, huge_pages: true }
    }

    fn overlay_at(&self, gpn: u64) -> bool {
        gpn == OVERLAY_GPN
    }
}

/// The GPA page the test partition has an overlay on.
const OVERLAY_GPN: u64 = 0x77;

fn control(code: HvCallCode) -> HvHypercallInput {
    HvHypercallInput::new().with_call_code(code.0)
}

fn all_privileges() -> HvPartitionPrivilegeMask {
    HvPartitionPrivilegeMask::from_bits(HvPartitionPrivilegeMask::DEFINED_BITS)
}

/// A 64-bit caller at CPL 0 with every privilege and XMM input and output.
fn caller(control: HvHypercallInput, rdx: u64, r8: u64) -> Caller {
    Caller {
        vp_index: 1,
        mode: CpuMode::Long64,
        cpl: 0,
        vtl: 0,
        regs: CallerRegisters { rcx: control.into_bits(), rdx, r8, ..CallerRegisters::default() },
        privileges: all_privileges(),
        xmm_support: XmmSupport { input: true, output: true },
    }
}

fn run(caller: &Caller, mem: &mut Mem, partition: &mut Partition) -> Outcome {
    handle(caller, &mut [0u128; 6], mem, partition)
}

/// A memory-convention call with input at `IN` and output at `OUT`.
fn call(control: HvHypercallInput, mem: &mut Mem, partition: &mut Partition) -> Outcome {
    run(&caller(control, IN, OUT), mem, partition)
}

fn status(outcome: &Outcome) -> HvStatus {
    outcome.result().unwrap_or_else(|| panic!("not complete: {outcome:?}")).status()
}

fn reg(updates: &Updates, name: HvRegisterName) -> Option<u64> {
    updates.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
}

fn ipi(vector: u32, mask: u64) -> HvInputSendSyntheticClusterIpi {
    HvInputSendSyntheticClusterIpi { vector, target_vtl: HvInputVtl::new(), reserved: [0; 3], processor_mask: mask }
}

fn registers_header(vp_index: u32) -> HvInputGetSetVpRegisters {
    HvInputGetSetVpRegisters {
        partition_id: tlfs::HvPartitionId::SELF.0,
        vp_index,
        input_vtl: HvInputVtl::new(),
        reserved: [0; 3],
    }
}

#[test]
fn cpl_above_zero_and_real_mode_raise_ud_and_do_nothing() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(2));
    mem.put(IN, ipi(0x30, 1).as_bytes());
    let mut c = caller(control(HvCallCode::SEND_SYNTHETIC_CLUSTER_IPI), IN, 0);
    assert_eq!(status(&run(&c, &mut mem, &mut p)), HvStatus::SUCCESS);
    p.ipis.clear();
    for cpl in [1, 3] {
        c.cpl = cpl;
        assert_eq!(run(&c, &mut mem, &mut p), Outcome::InjectUd);
    }
    c.cpl = 0;
    c.mode = CpuMode::Real16;
    assert_eq!(run(&c, &mut mem, &mut p), Outcome::InjectUd);
    assert!(p.untouched());
}

#[test]
fn unknown_codes_are_invalid_hypercall_code() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(2));
    for code in [0x0000, 0x0001, 0x0040, 0x00af, 0x8002, 0xffff] {
        let outcome = call(HvHypercallInput::new().with_call_code(code), &mut mem, &mut p);
        assert_eq!(status(&outcome), HvStatus::INVALID_HYPERCALL_CODE, "{code:#x}");
        assert_eq!(outcome.result().unwrap().into_bits(), 2, "only the status is set");
    }
}

#[test]
fn reserved_control_bits_are_invalid_hypercall_input() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(2));
    mem.put(IN, ipi(0x30, 1).as_bytes());
    for bit in [27, 31, 44, 47, 60, 63] {
        let c = HvHypercallInput::from_bits(control(HvCallCode::SEND_SYNTHETIC_CLUSTER_IPI).into_bits() | 1 << bit);
        assert_eq!(status(&call(c, &mut mem, &mut p)), HvStatus::INVALID_HYPERCALL_INPUT, "bit {bit}");
    }
    assert!(p.untouched());
    // Is Nested is not reserved: Tessera is the L0 hypervisor.
    let nested = control(HvCallCode::SEND_SYNTHETIC_CLUSTER_IPI).with_is_nested(true);
    assert_eq!(status(&call(nested, &mut mem, &mut p)), HvStatus::SUCCESS);
}

#[test]
fn rep_counts_must_fit_the_call() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(2));
    mem.put(IN, ipi(0x30, 1).as_bytes());
    let simple = control(HvCallCode::SEND_SYNTHETIC_CLUSTER_IPI);
    let list = control(HvCallCode::FLUSH_VIRTUAL_ADDRESS_LIST);
    for bad in [
        simple.with_rep_count(1),
        simple.with_rep_start_index(1),
        list,
        list.with_rep_count(2).with_rep_start_index(2),
        list.with_rep_count(2).with_rep_start_index(3),
    ] {
        assert_eq!(status(&call(bad, &mut mem, &mut p)), HvStatus::INVALID_HYPERCALL_INPUT, "{bad:?}");
    }
    assert!(p.untouched());
}

#[test]
fn variable_headers_and_fast_forms_only_where_the_call_has_them() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(2));
    mem.put(IN, ipi(0x30, 1).as_bytes());
    let ipi_call = control(HvCallCode::SEND_SYNTHETIC_CLUSTER_IPI).with_variable_header_size(1);
    assert_eq!(status(&call(ipi_call, &mut mem, &mut p)), HvStatus::INVALID_HYPERCALL_INPUT);
    let too_many_banks = control(HvCallCode::SEND_SYNTHETIC_CLUSTER_IPI_EX).with_variable_header_size(65);
    assert_eq!(status(&call(too_many_banks, &mut mem, &mut p)), HvStatus::INVALID_HYPERCALL_INPUT);
    let apic = control(HvCallCode::GET_VP_INDEX_FROM_APIC_ID).with_rep_count(1).with_fast(true);
    assert_eq!(status(&call(apic, &mut mem, &mut p)), HvStatus::INVALID_HYPERCALL_INPUT);
    let caps = control(HvCallCode::EXT_QUERY_CAPABILITIES).with_fast(true);
    assert_eq!(status(&call(caps, &mut mem, &mut p)), HvStatus::INVALID_HYPERCALL_INPUT);
    assert!(p.untouched());
}

#[test]
fn privileges_are_checked_before_anything_else_about_the_call() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(2));
    let cases = [
        (control(HvCallCode::GET_VP_REGISTERS).with_rep_count(1), all_privileges().with_access_vp_registers(false)),
        (control(HvCallCode::SET_VP_REGISTERS).with_rep_count(1), all_privileges().with_access_vp_registers(false)),
        (
            control(HvCallCode::GET_VP_INDEX_FROM_APIC_ID).with_rep_count(1),
            all_privileges().with_access_vp_index(false),
        ),
        (control(HvCallCode::EXT_QUERY_CAPABILITIES), all_privileges().with_enable_extended_hypercalls(false)),
        // A bad rep count and a misaligned GPA still say ACCESS_DENIED.
        (control(HvCallCode::GET_VP_REGISTERS), HvPartitionPrivilegeMask::new()),
    ];
    for (c, privileges) in cases {
        let mut who = caller(c, IN + 4, OUT);
        who.privileges = privileges;
        assert_eq!(status(&run(&who, &mut mem, &mut p)), HvStatus::ACCESS_DENIED, "{c:?}");
    }
    // Flushes, IPIs and spin-wait notifications need no privilege.
    mem.put(IN, ipi(0x30, 1).as_bytes());
    let mut who = caller(control(HvCallCode::SEND_SYNTHETIC_CLUSTER_IPI), IN, 0);
    who.privileges = HvPartitionPrivilegeMask::new();
    assert_eq!(status(&run(&who, &mut mem, &mut p)), HvStatus::SUCCESS);
}

#[test]
fn parameter_gpas_must_be_aligned_in_one_page_and_ram() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(2));
    let get = control(HvCallCode::GET_VP_REGISTERS).with_rep_count(2);
    let cases = [
        (IN + 4, OUT),                // misaligned input
        (IN, OUT + 12),               // misaligned output
        (IN + 0xff0, OUT),            // 16 + 2 * 4 bytes of input cross a page
        (IN, OUT + 0xff0),            // 2 * 16 bytes of output cross a page
        (RAM_END, OUT),               // input not RAM
        (IN, RAM_END + 0x1000),       // output not RAM
        (0xffff_ffff_ffff_f000, OUT), // beyond any GPA space
    ];
    for (input, output) in cases {
        let outcome = run(&caller(get, input, output), &mut mem, &mut p);
        assert_eq!(status(&outcome), HvStatus::INVALID_ALIGNMENT, "{input:#x} {output:#x}");
    }
    // An output page the guest cannot write fails when it is written.
    mem.put(IN, registers_header(0).as_bytes());
    mem.put(IN + 16, HvRegisterName::RIP.as_bytes());
    p.regs.insert((0, HvRegisterName::RIP.0), HvRegisterValue { low: 1, high: 0 });
    let outcome = run(&caller(get.with_rep_count(1), IN, ROM), &mut mem, &mut p);
    assert_eq!(status(&outcome), HvStatus::INVALID_ALIGNMENT);
    assert_eq!(outcome.result().unwrap().reps_completed(), 0);
    // GPAs of parameters a call does not have are ignored (TLFS 3.6).
    let caps = run(&caller(control(HvCallCode::EXT_QUERY_CAPABILITIES), 3, OUT), &mut mem, &mut p);
    assert_eq!(status(&caps), HvStatus::SUCCESS);
    mem.put(IN, ipi(0x30, 1).as_bytes());
    let ipi_call = run(&caller(control(HvCallCode::SEND_SYNTHETIC_CLUSTER_IPI), IN, 0xdead), &mut mem, &mut p);
    assert_eq!(status(&ipi_call), HvStatus::SUCCESS);
}

#[test]
fn a_page_filling_input_is_not_crossing() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(2));
    // 16 header bytes and 2 names end exactly at the page end.
    let at = IN + 0x1000 - 24;
    mem.put(at, registers_header(0).as_bytes());
    mem.put(at + 16, &[HvRegisterName::RIP.as_bytes(), HvRegisterName::RSP.as_bytes()].concat());
    p.regs.insert((0, HvRegisterName::RIP.0), HvRegisterValue { low: 7, high: 0 });
    p.regs.insert((0, HvRegisterName::RSP.0), HvRegisterValue { low: 8, high: 0 });
    let outcome = run(&caller(control(HvCallCode::GET_VP_REGISTERS).with_rep_count(2), at, OUT), &mut mem, &mut p);
    assert_eq!(status(&outcome), HvStatus::SUCCESS);
    assert_eq!(mem.get(OUT, 32), [7u64, 0, 8, 0].as_bytes());
}

/// Applies a continuation's register updates, as the kernel would.
fn resume(who: &mut Caller, updates: &Updates) {
    for &(name, value) in updates {
        match name {
            HvRegisterName::RAX => who.regs.rax = value,
            HvRegisterName::RCX => who.regs.rcx = value,
            HvRegisterName::RDX => who.regs.rdx = value,
            other => panic!("unexpected update of {other:?}"),
        }
    }
}

#[test]
fn long_rep_calls_continue_without_advancing_and_finish() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(4));
    let header = tlfs::hypercall::HvInputFlushVirtualAddress {
        address_space: 0x5000,
        flags: tlfs::hypercall::HvFlushFlags::new(),
        processor_mask: 0b11,
    };
    mem.put(IN, header.as_bytes());
    let ranges: Vec<u64> = (0..40u64).map(|i| (i + 1) << 12 | (i % 3)).collect();
    mem.put(IN + 24, ranges.as_bytes());
    let mut who = caller(control(HvCallCode::FLUSH_VIRTUAL_ADDRESS_LIST).with_rep_count(40), IN, 0);
    let mut exits = 0;
    let result = loop {
        exits += 1;
        match run(&who, &mut mem, &mut p) {
            Outcome::Continue { control, updates } => {
                assert_eq!(control.rep_start_index(), 16 * exits);
                assert_eq!(control.rep_count(), 40);
                assert_eq!(reg(&updates, HvRegisterName::RCX), Some(control.into_bits()));
                assert_eq!(reg(&updates, HvRegisterName::RAX), None, "RAX is left alone");
                resume(&mut who, &updates);
            }
            outcome => break outcome.result().unwrap(),
        }
    };
    assert_eq!(exits, 3);
    assert_eq!((result.status(), result.reps_completed()), (HvStatus::SUCCESS, 40));
    let flushed: Vec<u64> = p.flushes.iter().flat_map(|(_, _, r)| r.clone().unwrap()).collect();
    assert_eq!(flushed, ranges, "every range once, in order");
    assert_eq!(p.flushes.iter().map(|(_, _, r)| r.as_ref().unwrap().len()).collect::<Vec<_>>(), [16, 16, 8]);
}

#[test]
fn thirty_two_bit_callers_use_register_pairs() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(2));
    mem.put(OUT, ipi(0x41, 0b10).as_bytes());
    let c = control(HvCallCode::SEND_SYNTHETIC_CLUSTER_IPI).into_bits();
    let mut who = caller(HvHypercallInput::new(), 0, 0);
    who.mode = CpuMode::Protected32;
    // EDX:EAX = control, EBX:ECX = input GPA; upper halves are ignored.
    who.regs = CallerRegisters {
        rax: 0xdead_0000_0000_0000 | c,
        rdx: 0,
        rbx: 0,
        rcx: 0xbeef_0000_0000_0000 | OUT,
        ..CallerRegisters::default()
    };
    let outcome = run(&who, &mut mem, &mut p);
    let Outcome::Complete { updates, .. } = &outcome else { panic!("{outcome:?}") };
    assert_eq!(p.ipis, [(0x41, vec![1])]);
    assert_eq!((reg(updates, HvRegisterName::RAX), reg(updates, HvRegisterName::RDX)), (Some(0), Some(0)));
    // A failure's status lands in EAX, the reps in EDX.
    who.regs.rax = HvHypercallInput::new().with_call_code(0x7777).into_bits();
    let Outcome::Complete { updates, .. } = run(&who, &mut mem, &mut p) else { panic!() };
    assert_eq!(reg(&updates, HvRegisterName::RAX), Some(HvStatus::INVALID_HYPERCALL_CODE.0.into()));
}

#[test]
fn thirty_two_bit_continuations_rewrite_edx_eax() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(2));
    mem.put(IN, registers_header(0).as_bytes());
    let names: Vec<u32> = (0..20).map(|_| HvRegisterName::RIP.0).collect();
    mem.put(IN + 16, names.as_bytes());
    p.regs.insert((0, HvRegisterName::RIP.0), HvRegisterValue { low: 0x1234, high: 0 });
    let c = control(HvCallCode::GET_VP_REGISTERS).with_rep_count(20).into_bits();
    let mut who = caller(HvHypercallInput::new(), 0, 0);
    who.mode = CpuMode::Protected16;
    who.regs = CallerRegisters { rax: c & 0xffff_ffff, rdx: c >> 32, rcx: IN, rsi: OUT, ..CallerRegisters::default() };
    let Outcome::Continue { control, updates } = run(&who, &mut mem, &mut p) else { panic!() };
    let expected = control.into_bits();
    assert_eq!(control.rep_start_index(), 16);
    assert_eq!(reg(&updates, HvRegisterName::RAX), Some(expected & 0xffff_ffff));
    assert_eq!(reg(&updates, HvRegisterName::RDX), Some(expected >> 32));
    resume(&mut who, &updates);
    let done = run(&who, &mut mem, &mut p).result().unwrap();
    assert_eq!((done.status(), done.reps_completed()), (HvStatus::SUCCESS, 20));
    assert!(mem.get(OUT, 20 * 16).chunks(16).all(|v| v == [0x34, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
}

#[test]
fn register_fast_calls_need_no_xmm() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(3));
    let fast = control(HvCallCode::SEND_SYNTHETIC_CLUSTER_IPI).with_fast(true);
    let mut who = caller(fast, 0x31, 0b101);
    who.xmm_support = XmmSupport::default();
    let mut xmm = [u128::MAX; 6];
    assert_eq!(status(&handle(&who, &mut xmm, &mut mem, &mut p)), HvStatus::SUCCESS);
    assert_eq!(p.ipis, [(0x31, vec![0, 2])]);
    // RDX and R8 are input, not output: only RAX changes.
    let Outcome::Complete { updates, xmm, .. } = handle(&who, &mut xmm, &mut mem, &mut p) else { panic!() };
    assert_eq!(updates.as_slice(), [(HvRegisterName::RAX, 0)]);
    assert!(xmm.is_empty());
}

#[test]
fn xmm_fast_input_reads_xmm0_to_xmm5() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(4));
    // 24 bytes: address space and flags in RDX and R8, the mask in XMM0.
    let fast = control(HvCallCode::FLUSH_VIRTUAL_ADDRESS_SPACE).with_fast(true);
    let who = caller(fast, 0x7000, 0);
    let mut xmm = [0b1010u128 | 0xffff << 64, 0, 0, 0, 0, 0];
    assert_eq!(status(&handle(&who, &mut xmm, &mut mem, &mut p)), HvStatus::SUCCESS);
    let flush = Flush { address_space: Some(0x7000), non_global_only: false };
    assert_eq!(p.flushes, [(vec![1, 3], flush, None)]);
    // A fast list: 24 header bytes and 11 ranges fill 112 bytes.
    let list = control(HvCallCode::FLUSH_VIRTUAL_ADDRESS_LIST).with_fast(true).with_rep_count(11);
    let mut block = [0u64; 14];
    block[2] = 1; // XMM0 low: the processor mask
    for (i, slot) in block[3..].iter_mut().enumerate() {
        *slot = (i as u64 + 1) << 12;
    }
    let mut xmm: [u128; 6] =
        core::array::from_fn(|i| u128::from(block[2 + 2 * i]) | u128::from(block[3 + 2 * i]) << 64);
    let outcome = handle(&caller(list, 0x7000, 0), &mut xmm, &mut mem, &mut p);
    assert_eq!(status(&outcome), HvStatus::SUCCESS);
    assert_eq!(p.flushes[1].2.as_deref(), Some(&block[3..]));
    // One more range does not fit.
    let outcome = handle(&caller(list.with_rep_count(12), 0x7000, 0), &mut xmm, &mut mem, &mut p);
    assert_eq!(status(&outcome), HvStatus::INVALID_HYPERCALL_INPUT);
}

#[test]
fn xmm_fast_conventions_not_offered_raise_ud() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(4));
    let mut who = caller(control(HvCallCode::FLUSH_VIRTUAL_ADDRESS_SPACE).with_fast(true), 0x7000, 0);
    who.xmm_support = XmmSupport { input: false, output: true };
    assert_eq!(handle(&who, &mut [1; 6], &mut mem, &mut p), Outcome::InjectUd);
    let get = control(HvCallCode::GET_VP_REGISTERS).with_rep_count(1).with_fast(true);
    let mut who = caller(get, tlfs::HvPartitionId::SELF.0, 0);
    who.xmm_support = XmmSupport { input: true, output: false };
    assert_eq!(handle(&who, &mut [0; 6], &mut mem, &mut p), Outcome::InjectUd);
    assert!(p.untouched());
}

#[test]
fn xmm_fast_output_follows_the_input_in_16_byte_chunks() {
    let (mut mem, mut p) = (Mem::new(), Partition::new(2));
    p.regs.insert((1, HvRegisterName::RIP.0), HvRegisterValue { low: 0x1111, high: 0x2222 });
    p.regs.insert((1, HvRegisterName::CR3.0), HvRegisterValue { low: 0x3333, high: 0 });
    let get = control(HvCallCode::GET_VP_REGISTERS).with_rep_count(2).with_fast(true);
    // Header in RDX and R8, two names in XMM0: 24 bytes, so output starts at XMM1.
    let who = caller(get, tlfs::HvPartitionId::SELF.0, 1);
    let names = u128::from(HvRegisterName::RIP.0) | u128::from(HvRegisterName::CR3.0) << 32;
    let outcome = handle(&who, &mut [names, 9, 9, 9, 9, 9], &mut mem, &mut p);
    let Outcome::Complete { result, updates, xmm } = outcome else { panic!() };
    assert_eq!((result.status(), result.reps_completed()), (HvStatus::SUCCESS, 2));
    assert_eq!(updates.as_slice(), [(HvRegisterName::RAX, result.into_bits())]);
    assert_eq!(xmm.as_slice(), [(1, 0x2222 << 64 | 0x1111), (2, 0x3333)]);
    // Five names leave too little room for five values.
    let outcome = handle(&caller(get.with_rep_count(5), 0, 0), &mut [0; 6], &mut mem, &mut p);
    assert_eq!(status(&outcome), HvStatus::INVALID_HYPERCALL_INPUT);
    // 32-bit callers have no fast output.
    let mut who = caller(HvHypercallInput::new(), 0, 0);
    who.mode = CpuMode::Protected32;
    who.regs.rax = get.into_bits() & 0xffff_ffff;
    who.regs.rdx = get.into_bits() >> 32;
    assert_eq!(status(&handle(&who, &mut [0; 6], &mut mem, &mut p)), HvStatus::INVALID_HYPERCALL_INPUT);
}

#[test]
fn the_caller_comes_from_the_intercept_header() {
    use tlfs::{HvInterceptAccessType, HvX64InstructionLength, HvX64InterceptMessageHeader, HvX64VpExecutionState};
    let mut header = HvX64InterceptMessageHeader {
        vp_index: 3,
        instruction_length_and_cr8: HvX64InstructionLength::new().with_instruction_length(3),
        intercept_access_type: HvInterceptAccessType::EXECUTE,
        execution_state: HvX64VpExecutionState::new().with_cr0_pe(true).with_efer_lma(true),
        cs_segment: tlfs::segment_register_from_value(0, 0),
        rip: 0x1000,
        rflags: 2,
    };
    let regs = CallerRegisters { rcx: 0x1234, ..CallerRegisters::default() };
    // Compatibility mode (EFER.LMA without CS.L) is a 32-bit caller.
    let who = Caller::at(&header, regs, all_privileges(), XmmSupport::default());
    assert_eq!((who.vp_index, who.mode, who.cpl, who.regs), (3, CpuMode::Protected16, 0, regs));
    header.cs_segment.attributes = header.cs_segment.attributes.with_long(true);
    header.execution_state = header.execution_state.with_cpl(3);
    let who = Caller::at(&header, regs, all_privileges(), XmmSupport::default());
    assert_eq!((who.mode, who.cpl), (CpuMode::Long64, 3));
    assert_eq!(run(&who, &mut Mem::new(), &mut Partition::new(1)), Outcome::InjectUd);
}
