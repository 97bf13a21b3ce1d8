//! VTL call and return (TLFS 15.6-15.8) at hypercall intercepts: the #UD
//! cases, the switch ring 0 is asked for, where each VTL continues, the
//! entry reason and the return registers in VTL 1's VTL control.

use super::*;
use crate::vsm::protect::{Need, Protections};
use crate::vsm::{VtlCaller, VtlKernel};
use abi::ErrorCode;
use tlfs::HvMapGpaFlags;
use tlfs::msr::HvX64Msr;
use tlfs::vsm::{HvEnablePartitionVtlFlags, HvInitialVpContext, HvInputEnablePartitionVtl, HvInputEnableVpVtl};
use tlfs::zerocopy::FromZeros;

/// The exit test guest, and ring 0's switches.
struct VtlGuest {
    fake: Fake,
    switches: Vec<(u32, u8)>,
    refuse: bool,
    /// VTL 1's protections, checked as the VID's view checks them.
    protections: Protections,
    acting: u8,
}

impl Guest for VtlGuest {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        !self.denied(gpa, buf.len(), Need::Read) && self.fake.read(gpa, buf)
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        !self.denied(gpa, data.len(), Need::Write) && self.fake.write(gpa, data)
    }
    fn denied(&mut self, gpa: u64, len: usize, need: Need) -> bool {
        self.acting == 0 && !self.protections.allows(gpa, len, need)
    }
    fn act_for(&mut self, vtl: u8) -> u8 {
        core::mem::replace(&mut self.acting, vtl)
    }
    fn register(&mut self, name: HvRegisterName) -> Option<(u64, u64)> {
        self.fake.register(name)
    }
    fn vtl_kernel(&mut self) -> Option<&mut dyn VtlKernel> {
        Some(self)
    }
}

impl VtlKernel for VtlGuest {
    fn enable_partition_vtl(&mut self, _: u8) -> Result<(), ErrorCode> {
        Ok(())
    }
    fn may_run(&self, _: u32) -> bool {
        false
    }
    fn enable_vp_vtl(
        &mut self,
        _: u32,
        _: u8,
        _: u8,
        _: &[(HvRegisterName, tlfs::hypercall::HvRegisterValue)],
    ) -> Result<Result<(), ErrorCode>, ErrorCode> {
        Ok(Ok(()))
    }
    fn switch_vtl(&mut self, vp: u32, vtl: u8) -> Result<(), ErrorCode> {
        if self.refuse {
            return Err(ErrorCode::INVALID_STATE);
        }
        self.switches.push((vp, vtl));
        Ok(())
    }
    fn vtl_register(&mut self, _: u32, _: u8, _: u8, _: HvRegisterName) -> Result<(u64, u64), ErrorCode> {
        Err(ErrorCode::INVALID_STATE)
    }
}

/// VTL 1's assist page.
const ASSIST: u64 = 0x7000;
/// Where VP 0's VTL control is.
const CONTROL: usize = ASSIST as usize + 8;

/// A hyperv-vsm partition of one VP with VTL 1 enabled on it, and VTL 1's
/// assist page set.
fn vsm_vmm() -> (Vmm, VtlGuest) {
    let profile = crate::profile::EnlightenmentProfile::new(sysimage::Enlightenments::HYPERV_VSM, 1, 1).unwrap();
    let mut vmm = Vmm::with_config(VmmConfig { profile, ..VmmConfig::default() });
    let mut g =
        VtlGuest { fake: Fake::new(), switches: Vec::new(), refuse: false, protections: Protections::new(), acting: 0 };
    let partition = HvInputEnablePartitionVtl {
        partition_id: tlfs::HvPartitionId::SELF.0,
        target_vtl: 1,
        flags: HvEnablePartitionVtlFlags::new(),
        reserved_z0: 0,
        reserved_z1: 0,
    };
    vmm.vsm.enable_partition_vtl(&partition, VtlCaller { vp: 0, vtl: 0 }).unwrap();
    let mut context = HvInitialVpContext::new_zeroed();
    context.cr0 = x86defs::CR0_PE;
    let vp = HvInputEnableVpVtl {
        partition_id: tlfs::HvPartitionId::SELF.0,
        vp_index: 0,
        target_vtl: 1,
        reserved: [0; 3],
        context,
    };
    vmm.vsm.enable_vp_vtl(&vp, VtlCaller { vp: 0, vtl: 0 }).unwrap();
    let now = crate::synthetic::Now::default();
    vmm.synthetic.access_vtl((0, 1), HvX64Msr::VP_ASSIST_PAGE.0, Some(ASSIST | 1), &mut g, now).unwrap();
    (vmm, g)
}

/// VMCALL at `rip` in VTL `vtl` with RCX `rcx` and RAX `rax` (the page's
/// sequences move the control input there).
fn vtl_hypercall(vtl: u8, rip: u64, rcx: u64, rax: u64) -> HvMessageBody {
    let HvMessageBody::HypercallIntercept(mut m) = hypercall(rcx, 0) else { unreachable!() };
    m.header.rip = rip;
    m.header.execution_state = m.header.execution_state.with_vtl(vtl);
    m.rax = rax;
    HvMessageBody::HypercallIntercept(m)
}

fn go(vmm: &mut Vmm, g: &mut VtlGuest, body: HvMessageBody) -> Action {
    vmm.handle(&HvMessage::from_body(&body, 0), g, 0, |_| {})
}

fn entry_reason(g: &VtlGuest) -> u32 {
    u32::from_le_bytes(g.fake.ram[CONTROL..CONTROL + 4].try_into().unwrap())
}

#[test]
fn a_vtl_call_and_return_switch_and_each_vtl_continues_past_its_own() {
    let (mut vmm, mut g) = vsm_vmm();
    // VTL 0 calls: VTL 1's first entry, at its initial context.
    let a = go(&mut vmm, &mut g, vtl_hypercall(0, 0x5018, 0x11, 0));
    assert_eq!(a, Action::Resume(Updates::new()), "no RIP: VTL 1 starts where its context says");
    assert_eq!((g.switches.as_slice(), entry_reason(&g)), (&[(0, 1)][..], 1), "entry reason VTL call");
    assert_eq!(vmm.vsm.vp_status(0).unwrap().active_vtl(), 1);
    // VTL 1 returns, not fast: RAX and RCX from its VTL control.
    g.fake.ram[CONTROL + 8..CONTROL + 16].copy_from_slice(&0xaaaa_u64.to_le_bytes());
    g.fake.ram[CONTROL + 16..CONTROL + 24].copy_from_slice(&0xcccc_u64.to_le_bytes());
    let a = go(&mut vmm, &mut g, vtl_hypercall(1, 0x9028, 0x12, 0));
    let expected = [(HvRegisterName::RIP, 0x501b), (HvRegisterName::RAX, 0xaaaa), (HvRegisterName::RCX, 0xcccc)];
    assert_eq!(updates(&a), &expected[..], "VTL 0 past its call");
    assert_eq!(g.switches.last(), Some(&(0, 0)));
    assert_eq!(vmm.vsm.vp_status(0).unwrap().active_vtl(), 0);
    // Called again: VTL 1 continues past its return.
    g.fake.ram[CONTROL..CONTROL + 4].fill(0);
    let a = go(&mut vmm, &mut g, vtl_hypercall(0, 0x6018, 0x11, 0));
    assert_eq!(updates(&a), &[(HvRegisterName::RIP, 0x902b)][..]);
    assert_eq!(entry_reason(&g), 1);
    // A fast return leaves RAX and RCX.
    let a = go(&mut vmm, &mut g, vtl_hypercall(1, 0x9028, 0x12, 1));
    assert_eq!(updates(&a), &[(HvRegisterName::RIP, 0x601b)][..]);
    assert_eq!(g.switches, [(0, 1), (0, 0), (0, 1), (0, 0)]);
}

#[test]
fn what_a_vtl_call_or_return_refuses_is_ud() {
    let (mut vmm, mut g) = vsm_vmm();
    let is_ud = |a: &Action| get(a, HvRegisterName::PENDING_INTERRUPTION).is_some_and(|v| (v >> 16) & 0xff == 6);
    let cases = [
        (vtl_hypercall(0, 0x5018, 0x12, 0), "a return from VTL 0"),
        (vtl_hypercall(0, 0x5018, 0x11, 2), "a reserved call input bit"),
        (vtl_hypercall(0, 0x5018, 0x11 | 1 << 16, 0), "a control value with the fast flag"),
        (vtl_hypercall(0, 0x5018, 0x11 | 1 << 32, 0), "a control value with a rep count"),
        (vtl_hypercall(1, 0x9028, 0x12, 1 << 1), "a reserved return input bit"),
        (vtl_hypercall(1, 0x9028, 0x11, 0), "a call from VTL 1: none above"),
    ];
    for (body, why) in cases {
        let a = go(&mut vmm, &mut g, body);
        assert!(is_ud(&a), "{why}: {a:?}");
    }
    let HvMessageBody::HypercallIntercept(mut m) = vtl_hypercall(0, 0x5018, 0x11, 0) else { unreachable!() };
    m.header.execution_state = m.header.execution_state.with_cpl(3);
    let a = go(&mut vmm, &mut g, HvMessageBody::HypercallIntercept(m));
    assert!(is_ud(&a), "CPL 3");
    // Ring 0 refusing the switch: #UD, nothing recorded.
    g.refuse = true;
    let a = go(&mut vmm, &mut g, vtl_hypercall(0, 0x5018, 0x11, 0));
    assert!(is_ud(&a));
    assert!(g.switches.is_empty());
    assert_eq!(vmm.vsm.vp_status(0).unwrap().active_vtl(), 0);
}

#[test]
fn without_vsm_a_vtl_call_is_an_unknown_code() {
    let profile = crate::profile::EnlightenmentProfile::new(sysimage::Enlightenments::HYPERV, 1, 1).unwrap();
    let mut vmm = Vmm::with_config(VmmConfig { profile, ..VmmConfig::default() });
    let mut g =
        VtlGuest { fake: Fake::new(), switches: Vec::new(), refuse: false, protections: Protections::new(), acting: 0 };
    let a = go(&mut vmm, &mut g, vtl_hypercall(0, 0x5018, 0x11, 0));
    assert_eq!(get(&a, HvRegisterName::RAX), Some(u64::from(tlfs::HvStatus::INVALID_HYPERCALL_CODE.0)));
    assert!(g.switches.is_empty());
}

/// The interrupt controllers are VTL 0's: an interrupt waits while VTL 1
/// runs, and rides on the reply of the return to VTL 0.
#[test]
fn vtl0_interrupts_wait_for_the_return() {
    let (mut vmm, mut g) = vsm_vmm();
    let _ = vmm.irq.mmio_write(0, 0xfee0_00f0, 4, 0x1ff, 0);
    go(&mut vmm, &mut g, vtl_hypercall(0, 0x5018, 0x11, 0));
    vmm.irq.lapic_mut(0).unwrap().accept(0x40, false);
    assert_eq!(vmm.interruption_for(0), None, "VTL 1 runs");
    let a = go(&mut vmm, &mut g, vtl_hypercall(1, 0x9028, 0x12, 1));
    let pending = get(&a, HvRegisterName::PENDING_INTERRUPTION).expect("posted on the return");
    assert_eq!((pending >> 16) & 0xff, 0x40);
}

/// A memory intercept `body` of VTL `vtl`, the guest acting for it.
fn in_vtl(g: &mut VtlGuest, vtl: u8, body: HvMessageBody) -> HvMessageBody {
    g.acting = vtl;
    let (HvMessageBody::GpaIntercept(mut m) | HvMessageBody::UnmappedGpa(mut m)) = body else { unreachable!() };
    m.header.execution_state = m.header.execution_state.with_vtl(vtl);
    HvMessageBody::GpaIntercept(m)
}

/// A VTL 0 access VTL 1 protects (TLFS 15.9.2) is never emulated: the VP
/// stops, with the line that says why, and the page is neither read nor
/// written. VTL 1's own access to the page is not refused.
#[test]
fn a_vtl0_access_to_a_protected_page_stops_the_vp_unemulated() {
    let (mut vmm, mut g) = vsm_vmm();
    const PAGE: u64 = 0x9000;
    g.protections.set(PAGE >> 12, HvMapGpaFlags::from_bits(0)).unwrap();
    g.fake.ram[PAGE as usize] = 0x5a;
    g.fake.regs.insert(HvRegisterName::RAX.0, 0);
    // MOV [RAX], BL; and MOV AL, [RAX] (read through on a present page).
    for (write, code) in [(true, [0x88u8, 0x18]), (false, [0x8a, 0x00])] {
        let mut body = in_vtl(&mut g, 0, memory(PAGE, 0x1000, write, true));
        let HvMessageBody::GpaIntercept(m) = &mut body else { unreachable!() };
        m.instruction_byte_count = 2;
        m.instruction_bytes[..2].copy_from_slice(&code);
        let mut seen = Vec::new();
        let a = vmm.handle(&HvMessage::from_body(&body, 0), &mut g, 0, |e| seen.push(e.to_string()));
        assert!(matches!(a, Action::Stop(Stop::Failed { rip: 0x1000, .. })), "{a:?}");
        assert_eq!(seen.len(), 1);
        assert!(seen[0].contains("VTL 0 violated a VTL 1 protection") && seen[0].contains("0x9000"), "{}", seen[0]);
        // VTL 1 reading the page is served (the read goes through).
        let mut body = in_vtl(&mut g, 1, memory(PAGE, 0x1000, false, true));
        let HvMessageBody::GpaIntercept(m) = &mut body else { unreachable!() };
        m.instruction_byte_count = 2;
        m.instruction_bytes[..2].copy_from_slice(&[0x8a, 0x00]);
        let a = vmm.handle(&HvMessage::from_body(&body, 0), &mut g, 0, |e| panic!("{e}"));
        assert!(matches!(a, Action::Resume(_)), "{a:?}");
        assert_eq!(get(&a, HvRegisterName::RAX).map(|v| v & 0xff), Some(0x5a));
    }
    assert_eq!(g.fake.ram[PAGE as usize], 0x5a);
    // A page next to it is not refused: VTL 0 reads it through.
    let mut body = in_vtl(&mut g, 0, memory(PAGE - 0x1000, 0x1000, false, true));
    let HvMessageBody::GpaIntercept(m) = &mut body else { unreachable!() };
    m.instruction_byte_count = 2;
    m.instruction_bytes[..2].copy_from_slice(&[0x8a, 0x00]);
    let a = vmm.handle(&HvMessage::from_body(&body, 0), &mut g, 0, |_| {});
    assert!(matches!(a, Action::Resume(_)), "{a:?}");
}

/// Hypercall parameters on a page VTL 1 protects from a VTL 0 caller:
/// ACCESS_DENIED, nothing read or written; from VTL 1 the call goes on.
#[test]
fn vtl0_hypercall_parameters_on_a_protected_page_are_access_denied() {
    let (mut vmm, mut g) = vsm_vmm();
    g.protections.set(0x9, HvMapGpaFlags::from_bits(1)).unwrap();
    g.protections.set(0xa, HvMapGpaFlags::from_bits(0)).unwrap();
    // HvCallFlushVirtualAddressSpace (0x0002): its input read from 0xa000.
    let status = |vmm: &mut Vmm, g: &mut VtlGuest, vtl: u8, input: u64| {
        g.acting = vtl;
        let HvMessageBody::HypercallIntercept(mut m) = hypercall(0x0002, input) else { unreachable!() };
        m.header.execution_state = m.header.execution_state.with_vtl(vtl);
        let a = go(vmm, g, HvMessageBody::HypercallIntercept(m));
        get(&a, HvRegisterName::RAX).map(|v| v & 0xffff)
    };
    assert_eq!(status(&mut vmm, &mut g, 0, 0xa000), Some(6));
    // Readable, so an input there is read (its flags then refused or not).
    assert_ne!(status(&mut vmm, &mut g, 0, 0x9000), Some(6));
    assert_ne!(status(&mut vmm, &mut g, 1, 0xa000), Some(6));
}
