//! The VID's hypercall parser and handlers (`vid::hypercall::handle`): any
//! registers, XMM registers, guest memory and partition.
//!
//! Oracles: the partition is only asked about its own VPs and valid IPI
//! vectors (the `HypercallTarget` contract); #UD changes nothing; guest
//! memory changes only in the output page, after the output GPA, and never
//! for a fast call; results use only the convention's registers (32-bit
//! halves for 32-bit callers); XMM output only where it is offered; a
//! continuation moves the rep start index forward and stays below the count;
//! HvPostMessage reaches the broker only with a payload of at most 240 bytes
//! and a message type a guest may post, whatever the broker answers.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tessera_fuzz::Ram;
use tlfs::hypercall::{
    HV_IPI_VECTOR_MAX, HV_IPI_VECTOR_MIN, HV_XMM_FAST_REGISTERS, HvCallCode, HvGvaRange, HvHypercallInput,
    HvPartitionPrivilegeMask, HvRegisterValue,
};
use tlfs::{HvError, HvRegisterName, HvResult, HvVpIndex};
use vid::exits::Updates;
use vid::hypercall::{Caller, CallerRegisters, Flush, HypercallTarget, Outcome, VpSet, XmmSupport, XmmUpdates, handle};
use x86decode::CpuMode;

const CODES: [HvCallCode; 13] = [
    HvCallCode::FLUSH_VIRTUAL_ADDRESS_SPACE,
    HvCallCode::FLUSH_VIRTUAL_ADDRESS_LIST,
    HvCallCode::NOTIFY_LONG_SPIN_WAIT,
    HvCallCode::SEND_SYNTHETIC_CLUSTER_IPI,
    HvCallCode::FLUSH_VIRTUAL_ADDRESS_SPACE_EX,
    HvCallCode::FLUSH_VIRTUAL_ADDRESS_LIST_EX,
    HvCallCode::SEND_SYNTHETIC_CLUSTER_IPI_EX,
    HvCallCode::GET_VP_REGISTERS,
    HvCallCode::SET_VP_REGISTERS,
    HvCallCode::GET_VP_INDEX_FROM_APIC_ID,
    HvCallCode::EXT_QUERY_CAPABILITIES,
    HvCallCode::POST_MESSAGE,
    HvCallCode::SIGNAL_EVENT,
];

/// Guest RAM: page 0 zero, 1 and 2 from the input, 3 read-only.
const PAGES: usize = 4;
const ROM_PAGE: u64 = 3;

/// A control value: raw, or built from a known call code.
#[derive(Arbitrary, Debug)]
enum Control {
    Raw(u64),
    Call { code: u8, fast: bool, variable_qwords: u16, rep_count: u16, rep_start: u16 },
}

impl Control {
    fn bits(&self) -> u64 {
        match *self {
            Control::Raw(bits) => bits,
            Control::Call { code, fast, variable_qwords, rep_count, rep_start } => HvHypercallInput::new()
                .with_call_code(CODES[usize::from(code) % CODES.len()].0)
                .with_fast(fast)
                .with_variable_header_size(variable_qwords & 0x1ff)
                .with_rep_count(rep_count & 0xfff)
                .with_rep_start_index(rep_start & 0xfff)
                .into_bits(),
        }
    }
}

/// A parameter GPA (or fast input): mostly somewhere in guest RAM.
#[derive(Arbitrary, Debug)]
enum Param {
    Ram { page: u8, offset: u16 },
    Raw(u64),
}

impl Param {
    fn value(&self) -> u64 {
        match *self {
            Param::Ram { page, offset } => {
                u64::from(page) % (PAGES as u64 + 1) * Ram::PAGE + u64::from(offset % 0x1000)
            }
            Param::Raw(v) => v,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    mode: u8,
    cpl: u8,
    control: Control,
    input: Param,
    output: Param,
    /// Garbage in the upper halves of 32-bit callers' registers.
    upper: u32,
    privileges: u64,
    xmm_support: (bool, bool),
    xmm: [u128; HV_XMM_FAST_REGISTERS],
    vp_count: u8,
    vp_index: u16,
    /// The broker's answer to HvPostMessage and HvSignalEvent (0: success).
    broker: u16,
    page1: Vec<u8>,
    page2: Vec<u8>,
}

/// A partition that checks what the handlers ask of it.
struct Partition {
    vps: u32,
    touched: bool,
    broker: HvResult<()>,
}

impl Partition {
    fn check_set(&self, vps: &VpSet) {
        for vp in vps.iter() {
            assert!(vp < self.vps, "VP {vp} of a partition of {} in a set", self.vps);
        }
    }
}

impl HypercallTarget for Partition {
    fn vp_count(&self) -> u32 {
        self.vps
    }
    fn flush_tlb(&mut self, vps: &VpSet, flush: Flush, ranges: Option<&[HvGvaRange]>) {
        self.check_set(vps);
        if let Some(cr3) = flush.address_space {
            assert!(cr3 >> 52 == 0, "flush of CR3 {cr3:#x}");
        }
        let _ = ranges.map(|r| r.len());
        self.touched = true;
    }
    fn send_ipi(&mut self, vector: u8, vps: &VpSet) {
        self.check_set(vps);
        assert!((HV_IPI_VECTOR_MIN..=HV_IPI_VECTOR_MAX).contains(&u32::from(vector)), "IPI vector {vector:#x}");
        self.touched = true;
    }
    fn long_spin_wait(&mut self, _vp: HvVpIndex, _spin_count: u64) {
        self.touched = true;
    }
    fn get_vp_register(&mut self, vp: HvVpIndex, name: HvRegisterName) -> HvResult<HvRegisterValue> {
        assert!(vp < self.vps, "register of VP {vp} of {}", self.vps);
        self.touched = true;
        if name.0.is_multiple_of(3) {
            Err(HvError::INVALID_PARAMETER)
        } else {
            Ok(HvRegisterValue { low: name.0.into(), high: 1 })
        }
    }
    fn set_vp_register(&mut self, vp: HvVpIndex, name: HvRegisterName, _value: HvRegisterValue) -> HvResult<()> {
        assert!(vp < self.vps, "register of VP {vp} of {}", self.vps);
        self.touched = true;
        if name.0.is_multiple_of(3) { Err(HvError::INVALID_PARAMETER) } else { Ok(()) }
    }
    fn post_message(&mut self, _connection_id: u32, message_type: u32, payload: &[u8]) -> HvResult<()> {
        assert!(payload.len() <= 240, "a payload of {} bytes passed on", payload.len());
        assert!(message_type != 0 && message_type >> 31 == 0, "message type {message_type:#x} passed on");
        self.touched = true;
        // The broker's answer, in or out of the call's table.
        self.broker
    }
    fn signal_event(&mut self, _connection_id: u32, _flag_number: u16) -> HvResult<()> {
        self.touched = true;
        self.broker
    }
    fn apic_id_to_vp_index(&self, apic_id: u32) -> Option<HvVpIndex> {
        (apic_id.is_multiple_of(2) && apic_id / 2 < self.vps).then_some(apic_id / 2)
    }

    fn paging_features(&self) -> vid::translate::PagingFeatures {
        vid::translate::PagingFeatures { phys_bits: 40, huge_pages: true }
    }

    fn overlay_at(&self, gpn: u64) -> bool {
        gpn == 0
    }
}

fn split(value: u64, upper: u32) -> (u64, u64) {
    ((value >> 32) | u64::from(upper) << 32, value & 0xffff_ffff | u64::from(upper) << 32)
}

fuzz_target!(|input: Input| {
    let mode = match input.mode % 8 {
        0 => CpuMode::Real16,
        1 => CpuMode::Protected16,
        2 => CpuMode::Protected32,
        _ => CpuMode::Long64,
    };
    let cpl = if input.cpl >= 0xf0 { input.cpl & 3 } else { 0 };
    let (control, p1, p2) = (input.control.bits(), input.input.value(), input.output.value());
    let regs = if mode == CpuMode::Long64 {
        CallerRegisters { rcx: control, rdx: p1, r8: p2, rax: !0, rbx: !0, rsi: !0, rdi: !0 }
    } else {
        let ((rdx, rax), (rbx, rcx), (rdi, rsi)) =
            (split(control, input.upper), split(p1, input.upper), split(p2, input.upper));
        CallerRegisters { rax, rbx, rcx, rdx, rsi, rdi, r8: !0 }
    };
    let caller = Caller {
        vp_index: u32::from(input.vp_index),
        mode,
        cpl,
        vtl: 0,
        regs,
        privileges: HvPartitionPrivilegeMask::from_bits(input.privileges),
        xmm_support: XmmSupport { input: input.xmm_support.0, output: input.xmm_support.1 },
    };
    let mut ram = Ram::new(PAGES, Some(ROM_PAGE));
    ram.fill_page(1, &input.page1);
    ram.fill_page(2, &input.page2);
    let before = ram.clone();
    let broker = HvError::from_status(tlfs::HvStatus(input.broker)).map_or(Ok(()), Err);
    let mut partition = Partition { vps: u32::from(input.vp_count % 65).max(1), touched: false, broker };
    let mut xmm = input.xmm;
    let (mut updates, mut xmm_out) = (Updates::new(), XmmUpdates::new());
    let outcome = handle(&caller, &mut xmm, &mut ram, &mut partition, (&mut updates, &mut xmm_out));
    let (updates, xmm) = (&updates, &xmm_out);

    let control = HvHypercallInput::from_bits(control);
    let x64 = mode == CpuMode::Long64;
    let allowed: &[HvRegisterName] = if x64 {
        &[HvRegisterName::RAX, HvRegisterName::RDX, HvRegisterName::R8, HvRegisterName::RCX]
    } else {
        &[HvRegisterName::RAX, HvRegisterName::RDX]
    };
    match &outcome {
        // The partition offers no VSM: no VTL to switch to.
        Outcome::SwitchVtl { .. } => panic!("a VTL switch without VSM: {outcome:?}"),
        Outcome::InjectUd => {
            assert!(!partition.touched, "#UD after acting on the partition");
            assert_eq!(ram, before, "#UD after writing guest memory");
            assert!(updates.is_empty() && xmm.is_empty(), "#UD and registers set");
        }
        Outcome::Complete { result } => {
            assert!(result.reps_completed() <= control.rep_count(), "{result:?} for {control:?}");
            assert_eq!(result.into_bits() & !(0xffff | 0xfff << 32), 0, "reserved bits in {result:?}");
            for &(name, value) in updates {
                assert!(allowed.contains(&name), "result in {name:?}");
                assert!(x64 || value >> 32 == 0, "32-bit caller's {name:?} = {value:#x}");
            }
            if !xmm.is_empty() {
                assert!(x64 && control.fast() && caller.xmm_support.output, "XMM output {xmm:?} not offered");
            }
        }
        Outcome::Continue { control: next } => {
            assert!(xmm.is_empty(), "a continuation with XMM output");
            assert_eq!(
                next.into_bits() & !(0xfff << 48),
                control.into_bits() & !(0xfff << 48),
                "continuation changed more than the start index"
            );
            assert!(next.rep_start_index() > control.rep_start_index(), "no progress");
            assert!(next.rep_start_index() < control.rep_count(), "continued past the count");
            for &(name, _) in updates {
                assert!(allowed.contains(&name), "continuation in {name:?}");
            }
        }
    }
    if let Some((first, last)) = ram.changed_since(&before) {
        let out = if x64 { regs.r8 } else { (regs.rdi << 32) | (regs.rsi & 0xffff_ffff) };
        assert!(!control.fast(), "a fast call wrote guest memory at {first:#x}");
        assert!(first >= out && last < (out | 0xfff) + 1, "wrote {first:#x}..={last:#x}, output at {out:#x}");
    }
});
