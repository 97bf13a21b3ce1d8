//! The VSM calls and registers (TLFS 15.15.3, 15.15.4, 15.3, 15.5) through
//! the engine: the statuses, and what ring 0 is asked ([`VtlKernel`]).

use super::*;
use crate::vsm::{PartitionVsm, VtlKernel};
use abi::ErrorCode;
use tlfs::vsm::{HvEnablePartitionVtlFlags, HvInitialVpContext, HvInputEnablePartitionVtl, HvInputEnableVpVtl};
use tlfs::zerocopy::{FromZeros, IntoBytes};

/// What ring 0 was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Asked {
    Partition(HvVtl),
    /// VP, VTL, the VTL switched back to, the registers' names.
    Vp(HvVpIndex, HvVtl, HvVtl, Vec<HvRegisterName>),
    /// A register of another VTL: VP, VTL, the VTL switched back to.
    Register(HvVpIndex, HvVtl, HvVtl, HvRegisterName),
    /// A page's protection: GPN, mask.
    Protect(u64, u32),
    /// The default mask on all RAM.
    Default(u32),
}

/// The fake's RAM, in pages, for HvModifyVtlProtectionMask.
const RAM_PAGES: u64 = 0x100;

/// Guest memory and a fake ring 0.
struct VsmGuest {
    mem: Mem,
    asked: Vec<Asked>,
    running: Vec<HvVpIndex>,
    refusal: Option<ErrorCode>,
    /// Ring 0 makes the VTL but refuses the registers.
    registers_refused: bool,
    /// The caller's registers at its exit.
    registers: Vec<(HvRegisterName, (u64, u64))>,
}

impl Guest for VsmGuest {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        self.mem.read(gpa, buf)
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        self.mem.write(gpa, data)
    }
    fn register(&mut self, name: HvRegisterName) -> Option<(u64, u64)> {
        self.registers.iter().find(|r| r.0 == name).map(|r| r.1).or_else(|| self.mem.register(name))
    }
    fn vtl_kernel(&mut self) -> Option<&mut dyn VtlKernel> {
        Some(self)
    }
}

impl VtlKernel for VsmGuest {
    fn enable_partition_vtl(&mut self, vtl: HvVtl) -> Result<(), ErrorCode> {
        self.asked.push(Asked::Partition(vtl));
        self.refusal.map_or(Ok(()), Err)
    }
    fn may_run(&self, vp: HvVpIndex) -> bool {
        self.running.contains(&vp)
    }
    fn enable_vp_vtl(
        &mut self,
        vp: HvVpIndex,
        vtl: HvVtl,
        active: HvVtl,
        registers: &[(HvRegisterName, HvRegisterValue)],
    ) -> Result<Result<(), ErrorCode>, ErrorCode> {
        self.asked.push(Asked::Vp(vp, vtl, active, registers.iter().map(|r| r.0).collect()));
        if let Some(e) = self.refusal {
            return Err(e);
        }
        Ok(if self.registers_refused { Err(ErrorCode::INVALID_ARGUMENT) } else { Ok(()) })
    }
    fn switch_vtl(&mut self, _: HvVpIndex, _: HvVtl) -> Result<(), ErrorCode> {
        Err(ErrorCode::INVALID_STATE)
    }
    fn protect_default(&mut self, mask: tlfs::HvMapGpaFlags) -> tlfs::HvResult<()> {
        self.asked.push(Asked::Default(mask.into_bits()));
        self.refusal.map_or(Ok(()), |_| Err(tlfs::HvError::INSUFFICIENT_MEMORY))
    }
    fn protect(&mut self, gpn: u64, mask: tlfs::HvMapGpaFlags) -> tlfs::HvResult<()> {
        if gpn >= RAM_PAGES {
            return Err(tlfs::HvError::INVALID_PARAMETER);
        }
        self.asked.push(Asked::Protect(gpn, mask.into_bits()));
        Ok(())
    }
    fn vtl_register(
        &mut self,
        vp: HvVpIndex,
        vtl: HvVtl,
        active: HvVtl,
        name: HvRegisterName,
    ) -> Result<(u64, u64), ErrorCode> {
        self.asked.push(Asked::Register(vp, vtl, active, name));
        Ok((0x1000 + u64::from(vtl), 0))
    }
}

fn vsm_privileges() -> HvPartitionPrivilegeMask {
    HvPartitionPrivilegeMask::new().with_access_vsm(true).with_access_vp_registers(true).with_access_synic_regs(true)
}

fn setup() -> (VsmGuest, Partition) {
    let mut p = Partition::new(2);
    p.vsm = PartitionVsm::new(vsm_privileges(), 2);
    let guest = VsmGuest {
        mem: Mem::new(),
        asked: Vec::new(),
        running: Vec::new(),
        refusal: None,
        registers_refused: false,
        registers: Vec::new(),
    };
    (guest, p)
}

/// VP `vp` in VTL `vtl` makes the call with input at `IN`, output at `OUT`.
fn call_as(vp: HvVpIndex, vtl: HvVtl, c: HvHypercallInput, g: &mut VsmGuest, p: &mut Partition) -> Outcome {
    let mut who = caller(c, IN, OUT);
    (who.vp_index, who.vtl, who.privileges) = (vp, vtl, vsm_privileges());
    handle(&who, &mut [0u128; 6], g, p)
}

fn enable_partition(g: &mut VsmGuest, p: &mut Partition, vtl: HvVtl) -> HvStatus {
    let input = HvInputEnablePartitionVtl {
        partition_id: tlfs::HvPartitionId::SELF.0,
        target_vtl: vtl,
        flags: HvEnablePartitionVtlFlags::new(),
        reserved_z0: 0,
        reserved_z1: 0,
    };
    g.mem.put(IN, input.as_bytes());
    status(&call_as(0, 0, control(HvCallCode::ENABLE_PARTITION_VTL), g, p))
}

fn enable_vp(g: &mut VsmGuest, p: &mut Partition, (vp, vtl): (HvVpIndex, HvVtl), target: HvVpIndex) -> HvStatus {
    let mut context = HvInitialVpContext::new_zeroed();
    (context.rip, context.cr0) = (0x2000, x86defs::CR0_PE);
    let input = HvInputEnableVpVtl {
        partition_id: tlfs::HvPartitionId::SELF.0,
        vp_index: target,
        target_vtl: 1,
        reserved: [0; 3],
        context,
    };
    g.mem.put(IN, input.as_bytes());
    status(&call_as(vp, vtl, control(HvCallCode::ENABLE_VP_VTL), g, p))
}

fn enabled_vtls(p: &mut Partition) -> u16 {
    p.vsm.as_ref().unwrap().enabled_vtls()
}

#[test]
fn enable_partition_vtl_asks_ring0_once() {
    let (mut g, mut p) = setup();
    g.refusal = Some(ErrorCode::OUT_OF_MEMORY);
    assert_eq!(enable_partition(&mut g, &mut p, 1), HvStatus::INSUFFICIENT_MEMORY);
    assert_eq!(enabled_vtls(&mut p), 1, "a refused call changes nothing");
    g.refusal = None;
    assert_eq!(enable_partition(&mut g, &mut p, 2), HvStatus::INVALID_PARAMETER);
    assert_eq!(enable_partition(&mut g, &mut p, 1), HvStatus::SUCCESS);
    assert_eq!(enabled_vtls(&mut p), 0b11);
    assert_eq!(enable_partition(&mut g, &mut p, 1), HvStatus::INVALID_VTL_STATE);
    assert_eq!(g.asked, [Asked::Partition(1), Asked::Partition(1)], "only the calls that pass the checks");
}

#[test]
fn without_vsm_the_calls_are_denied() {
    let (mut g, mut p) = setup();
    p.vsm = None;
    assert_eq!(enable_partition(&mut g, &mut p, 1), HvStatus::ACCESS_DENIED);
    assert_eq!(enable_vp(&mut g, &mut p, (0, 0), 0), HvStatus::ACCESS_DENIED);
    // Without AccessVsm the engine refuses before the handler.
    let (mut g, mut p) = setup();
    let mut who = caller(control(HvCallCode::ENABLE_PARTITION_VTL), IN, OUT);
    who.privileges = all_privileges().with_access_vsm(false);
    assert_eq!(status(&handle(&who, &mut [0u128; 6], &mut g, &mut p)), HvStatus::ACCESS_DENIED);
    assert!(g.asked.is_empty());
}

#[test]
fn enable_vp_vtl_sets_the_initial_context_through_ring0() {
    let (mut g, mut p) = setup();
    assert_eq!(enable_vp(&mut g, &mut p, (0, 0), 0), HvStatus::INVALID_VTL_STATE, "the partition first");
    assert_eq!(enable_partition(&mut g, &mut p, 1), HvStatus::SUCCESS);
    g.asked.clear();
    // VP 1 runs: not changed under it.
    g.running.push(1);
    assert_eq!(enable_vp(&mut g, &mut p, (0, 0), 1), HvStatus::INVALID_VP_STATE);
    assert!(g.asked.is_empty());
    // The caller's own VP (HV_VP_INDEX_SELF), at its exit.
    assert_eq!(enable_vp(&mut g, &mut p, (0, 0), tlfs::HV_VP_INDEX_SELF), HvStatus::SUCCESS);
    let names: Vec<_> = HvInitialVpContext::new_zeroed().registers().iter().map(|r| r.0).collect();
    assert_eq!(g.asked, [Asked::Vp(0, 1, 0, names)], "back to VTL 0, where the caller is");
    let status = p.vsm.as_ref().unwrap().vp_status(0).unwrap();
    assert_eq!((status.enabled_vtl_set(), status.active_vtl()), (0b11, 0));
    assert_eq!(enable_vp(&mut g, &mut p, (0, 1), 0), HvStatus::INVALID_VTL_STATE, "not twice");
    // Once a VP has VTL 1, VTL 0 enables it on no other (15.15.4).
    assert_eq!(enable_vp(&mut g, &mut p, (0, 0), 1), HvStatus::ACCESS_DENIED);
    // Ring 0 made the VTL and refused the registers: the VTL is enabled.
    g.running.clear();
    g.registers_refused = true;
    assert_eq!(enable_vp(&mut g, &mut p, (0, 1), 1), HvStatus::INVALID_REGISTER_VALUE);
    assert_eq!(p.vsm.as_ref().unwrap().vp_status(1).unwrap().enabled_vtl_set(), 0b11);
}

/// Get/SetVpRegisters of one register of VP `vp`, with `input_vtl`.
fn register_call(
    (vp, vtl): (HvVpIndex, HvVtl),
    input_vtl: HvInputVtl,
    name: HvRegisterName,
    set: Option<u64>,
    g: &mut VsmGuest,
    p: &mut Partition,
) -> (HvStatus, u64) {
    let mut header = registers_header(vp);
    header.input_vtl = input_vtl;
    g.mem.put(IN, header.as_bytes());
    let code = match set {
        Some(value) => {
            g.mem.put(
                IN + 16,
                HvRegisterAssoc { name, padding: Default::default(), value: HvRegisterValue { low: value, high: 0 } }
                    .as_bytes(),
            );
            HvCallCode::SET_VP_REGISTERS
        }
        None => {
            g.mem.put(IN + 16, name.as_bytes());
            HvCallCode::GET_VP_REGISTERS
        }
    };
    g.mem.put(OUT, &[0; 16]);
    let outcome = call_as(vp, vtl, control(code).with_rep_count(1), g, p);
    (status(&outcome), u64::from_le_bytes(g.mem.get(OUT, 8).try_into().unwrap()))
}

#[test]
fn the_vsm_registers_follow_the_callers_vtl() {
    let (mut g, mut p) = setup();
    let own = HvInputVtl::new();
    let vtl1 = HvInputVtl::new().with_use_target_vtl(true).with_target_vtl(1);
    let caps = crate::vsm::VSM_CAPABILITIES.into_bits();
    assert_eq!(
        register_call((0, 0), own, HvRegisterName::VSM_CAPABILITIES, None, &mut g, &mut p),
        (HvStatus::SUCCESS, caps)
    );
    let (s, v) = register_call((0, 0), own, HvRegisterName::VSM_PARTITION_STATUS, None, &mut g, &mut p);
    assert_eq!((s, v & 0xf_ffff), (HvStatus::SUCCESS, 1 | 1 << 16), "VTL 0 enabled, maximum VTL 1");
    // Read-only.
    let refused = register_call((0, 0), own, HvRegisterName::VSM_VP_STATUS, Some(0), &mut g, &mut p);
    assert_eq!(refused.0, HvStatus::INVALID_PARAMETER);
    // VTL 0 names VTL 1: higher than its own.
    let denied = register_call((0, 0), vtl1, HvRegisterName::VSM_PARTITION_CONFIG, None, &mut g, &mut p);
    assert_eq!(denied.0, HvStatus::ACCESS_DENIED);
    let denied = register_call((0, 0), own, HvRegisterName::VSM_PARTITION_CONFIG, None, &mut g, &mut p);
    assert_eq!(denied.0, HvStatus::ACCESS_DENIED, "VTL 0 has no instance");
    // VTL 1, once enabled on VP 0, writes its configuration and reads it back.
    assert_eq!(enable_partition(&mut g, &mut p, 1), HvStatus::SUCCESS);
    assert_eq!(enable_vp(&mut g, &mut p, (0, 0), 0), HvStatus::SUCCESS);
    let config = tlfs::vsm::HvRegisterVsmPartitionConfig::new()
        .with_enable_vtl_protection(true)
        .with_default_vtl_protection_mask(1);
    let set =
        register_call((0, 1), own, HvRegisterName::VSM_PARTITION_CONFIG, Some(config.into_bits()), &mut g, &mut p);
    assert_eq!(set.0, HvStatus::SUCCESS);
    let got = register_call((0, 1), vtl1, HvRegisterName::VSM_PARTITION_CONFIG, None, &mut g, &mut p);
    assert_eq!(got, (HvStatus::SUCCESS, config.into_bits()));
    // VP 1 has no VTL 1 yet.
    let (s, _) = register_call((1, 1), own, HvRegisterName::VSM_VP_SECURE_CONFIG_VTL0, None, &mut g, &mut p);
    assert_eq!(s, HvStatus::INVALID_VTL_STATE);
    // VTL 1 reads VTL 0's CR3 on its own VP: ring 0 switches there and back.
    g.asked.clear();
    let vtl0 = HvInputVtl::new().with_use_target_vtl(true).with_target_vtl(0);
    let got = register_call((0, 1), vtl0, HvRegisterName::CR3, None, &mut g, &mut p);
    assert_eq!(got, (HvStatus::SUCCESS, 0x1000));
    assert_eq!(g.asked, [Asked::Register(0, 0, 1, HvRegisterName::CR3)]);
    // Its own VTL's: from the exit (this guest has none to give).
    let got = register_call((0, 1), own, HvRegisterName::CR3, None, &mut g, &mut p);
    assert_eq!(got.0, HvStatus::INVALID_PARAMETER);
    // Nor are writes of registers not VSM's.
    let got = register_call((0, 1), vtl0, HvRegisterName::RIP, Some(1), &mut g, &mut p);
    assert_eq!(got.0, HvStatus::INVALID_PARAMETER);
}

/// HvModifyVtlProtectionMask by VP 0 in `vtl` of `pages` with `flags`
/// (target `input_vtl`): the status and the reps completed.
fn modify_protection(
    vtl: HvVtl,
    flags: u32,
    input_vtl: HvInputVtl,
    pages: &[u64],
    g: &mut VsmGuest,
    p: &mut Partition,
) -> (HvStatus, u16) {
    let input = tlfs::vsm::HvInputModifyVtlProtectionMask {
        partition_id: tlfs::HvPartitionId::SELF.0,
        map_flags: tlfs::HvMapGpaFlags::from_bits(flags),
        target_vtl: input_vtl,
        reserved: [0; 3],
    };
    g.mem.put(IN, input.as_bytes());
    g.mem.put(IN + 16, pages.as_bytes());
    let c = control(HvCallCode::MODIFY_VTL_PROTECTION_MASK).with_rep_count(pages.len() as u16);
    let result = call_as(0, vtl, c, g, p).result().unwrap();
    (result.status(), result.reps_completed())
}

#[test]
fn modify_vtl_protection_mask_from_vtl1_onto_vtl0_only() {
    let (mut g, mut p) = setup();
    let vtl0 = HvInputVtl::new().with_use_target_vtl(true);
    assert_eq!(
        modify_protection(0, 1, vtl0, &[1], &mut g, &mut p),
        (HvStatus::ACCESS_DENIED, 0),
        "VTL 0 has no lower VTL"
    );
    assert_eq!(enable_partition(&mut g, &mut p, 1), HvStatus::SUCCESS);
    g.asked.clear();
    // Before EnableVtlProtection (15.5.1.1).
    assert_eq!(modify_protection(1, 1, vtl0, &[1], &mut g, &mut p), (HvStatus::INVALID_VTL_STATE, 0));
    let config = tlfs::vsm::HvRegisterVsmPartitionConfig::new()
        .with_enable_vtl_protection(true)
        .with_default_vtl_protection_mask(0xf);
    p.vsm.as_mut().unwrap().write_partition_config(1, config).unwrap();
    // A VTL does not protect itself (15.9.1): neither named nor implied.
    let own = HvInputVtl::new().with_use_target_vtl(true).with_target_vtl(1);
    assert_eq!(modify_protection(1, 1, own, &[1], &mut g, &mut p), (HvStatus::ACCESS_DENIED, 0));
    assert_eq!(modify_protection(1, 1, HvInputVtl::new(), &[1], &mut g, &mut p), (HvStatus::ACCESS_DENIED, 0));
    // Write or execute without read; a reserved flag.
    for flags in [2, 4, 6, 0x10] {
        assert_eq!(
            modify_protection(1, flags, vtl0, &[1], &mut g, &mut p),
            (HvStatus::INVALID_PARAMETER, 0),
            "{flags:#x}"
        );
    }
    assert!(g.asked.is_empty());
    // Each page in turn; one that is not RAM ends the call there.
    assert_eq!(modify_protection(1, 5, vtl0, &[1, 2, 3], &mut g, &mut p), (HvStatus::SUCCESS, 3));
    assert_eq!(modify_protection(1, 0, vtl0, &[4, RAM_PAGES, 5], &mut g, &mut p), (HvStatus::INVALID_PARAMETER, 1));
    assert_eq!(g.asked, [Asked::Protect(1, 5), Asked::Protect(2, 5), Asked::Protect(3, 5), Asked::Protect(4, 0)]);
}

/// EnableVtlProtection with a mask other than RWX puts the mask on all of
/// VTL 0's RAM first (15.5.1.2); ring 0 refusing fails the write, which
/// changes nothing. RWX, or protections already on, ask nothing.
#[test]
fn the_default_protection_mask_goes_to_all_ram_at_enable_vtl_protection() {
    let (mut g, mut p) = setup();
    assert_eq!(enable_partition(&mut g, &mut p, 1), HvStatus::SUCCESS);
    assert_eq!(enable_vp(&mut g, &mut p, (0, 0), 0), HvStatus::SUCCESS);
    g.asked.clear();
    let own = HvInputVtl::new();
    let name = HvRegisterName::VSM_PARTITION_CONFIG;
    let config = tlfs::vsm::HvRegisterVsmPartitionConfig::new().with_enable_vtl_protection(true);
    let read_only = config.with_default_vtl_protection_mask(1).into_bits();
    g.refusal = Some(ErrorCode::OUT_OF_MEMORY);
    assert_eq!(register_call((0, 1), own, name, Some(read_only), &mut g, &mut p).0, HvStatus::INSUFFICIENT_MEMORY);
    assert!(!p.vsm.as_ref().unwrap().vtl_protection_enabled());
    g.refusal = None;
    assert_eq!(register_call((0, 1), own, name, Some(read_only), &mut g, &mut p).0, HvStatus::SUCCESS);
    assert!(p.vsm.as_ref().unwrap().vtl_protection_enabled());
    assert_eq!(g.asked, [Asked::Default(1), Asked::Default(1)]);
    // Written again, unchanged: nothing more is asked.
    assert_eq!(register_call((0, 1), own, name, Some(read_only), &mut g, &mut p).0, HvStatus::SUCCESS);
    assert_eq!(g.asked.len(), 2);
    // RWX asks nothing.
    let (mut g, mut p) = setup();
    assert_eq!(enable_partition(&mut g, &mut p, 1), HvStatus::SUCCESS);
    assert_eq!(enable_vp(&mut g, &mut p, (0, 0), 0), HvStatus::SUCCESS);
    g.asked.clear();
    let rwx = config.with_default_vtl_protection_mask(0xf).into_bits();
    assert_eq!(register_call((0, 1), own, name, Some(rwx), &mut g, &mut p).0, HvStatus::SUCCESS);
    assert!(g.asked.is_empty());
}

/// HvTranslateVirtualAddress of GVA page `gva_page` with `flags` by VP 0 in
/// VTL `vtl`: the status and the output.
fn translate_call(
    vtl: HvVtl,
    vp_index: HvVpIndex,
    flags: tlfs::vsm::HvTranslateGvaControlFlags,
    gva_page: u64,
    g: &mut VsmGuest,
    p: &mut Partition,
) -> (HvStatus, tlfs::vsm::HvOutputTranslateVirtualAddress) {
    let input = tlfs::vsm::HvInputTranslateVirtualAddress {
        partition_id: tlfs::HvPartitionId::SELF.0,
        vp_index,
        padding: 0,
        control_flags: flags,
        gva_page,
    };
    g.mem.put(IN, input.as_bytes());
    g.mem.put(OUT, &[0; 16]);
    let status = status(&call_as(0, vtl, control(HvCallCode::TRANSLATE_VIRTUAL_ADDRESS), g, p));
    let mut out = tlfs::vsm::HvOutputTranslateVirtualAddress::new_zeroed();
    out.as_mut_bytes().copy_from_slice(g.mem.get(OUT, 16));
    (status, out)
}

#[test]
fn translate_virtual_address_walks_the_callers_tables() {
    use tlfs::vsm::{HvTranslateGvaControlFlags as Flags, HvTranslateGvaResultCode as Code};
    let (mut g, mut p) = setup();
    // One table at 0x3000 serves every level (entries 0, 1, 2), the leaf
    // (entry 3) maps the test partition's overlay page.
    for (i, value) in [0x3007u64, 0x3007, 0x3007, OVERLAY_GPN << 12 | 7].into_iter().enumerate() {
        g.mem.put(0x3000 + 8 * i as u64, &value.to_le_bytes());
    }
    let gva_page = (1 << 30 | 2 << 21 | 3 << 12) >> 12;
    g.registers = vec![
        (HvRegisterName::CR0, (x86defs::CR0_PG | x86defs::CR0_PE, 0)),
        (HvRegisterName::CR3, (0x3000, 0)),
        (HvRegisterName::CR4, (x86defs::CR4_PAE, 0)),
        (HvRegisterName::EFER, (x86defs::EFER_LMA | x86defs::EFER_NXE, 0)),
        (HvRegisterName::RFLAGS, (2, 0)),
        (HvRegisterName::SS, (0, 0)),
    ];
    let read = Flags::new().with_validate_read(true);
    let (status, out) = translate_call(0, tlfs::HV_VP_INDEX_SELF, read, gva_page, &mut g, &mut p);
    assert_eq!(status, HvStatus::SUCCESS);
    assert_eq!((out.translation_result.code(), out.gpa_page), (Code::SUCCESS, OVERLAY_GPN));
    assert!(out.translation_result.overlay_page());
    // A page not present is a result, not a status.
    let (status, out) = translate_call(0, 0, read, gva_page + 1, &mut g, &mut p);
    assert_eq!((status, out.translation_result.code()), (HvStatus::SUCCESS, Code::PAGE_NOT_PRESENT));
    // The statuses of 9.4.6.
    let cases = [
        (0, 0, Flags::new(), HvStatus::INVALID_PARAMETER),
        (0, 0, read.with_tlb_flush_inhibit(true), HvStatus::INVALID_PARAMETER),
        (0, 0, Flags::from_bits(read.into_bits() | 1 << 20), HvStatus::INVALID_PARAMETER),
        (0, 1, read, HvStatus::INVALID_VP_STATE),
        (0, 2, read, HvStatus::INVALID_VP_INDEX),
        (
            0,
            0,
            read.with_input_vtl(HvInputVtl::new().with_target_vtl(1).with_use_target_vtl(true)),
            HvStatus::ACCESS_DENIED,
        ),
    ];
    for (vtl, vp, flags, want) in cases {
        assert_eq!(translate_call(vtl, vp, flags, gva_page, &mut g, &mut p).0, want, "{flags:?} on VP {vp}");
    }
    // VTL 1 translating VTL 0's addresses reads VTL 0's registers through ring 0.
    assert_eq!(enable_partition(&mut g, &mut p, 1), HvStatus::SUCCESS);
    assert_eq!(enable_vp(&mut g, &mut p, (0, 0), 0), HvStatus::SUCCESS);
    g.asked.clear();
    let vtl0 = read.with_input_vtl(HvInputVtl::new().with_target_vtl(0).with_use_target_vtl(true));
    let (status, _) = translate_call(1, 0, vtl0, gva_page, &mut g, &mut p);
    assert_eq!(status, HvStatus::SUCCESS);
    assert!(g.asked.contains(&Asked::Register(0, 0, 1, HvRegisterName::CR3)), "{:?}", g.asked);
}
