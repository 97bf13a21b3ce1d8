//! One handler per hypercall, run on a [`Request`] the parser validated.
//! Each returns the call's status and, for rep calls, the reps completed
//! (counted from the start of the list, TLFS 3.8).

use super::{Caller, Flush, HypercallTarget, REPS_PER_EXIT, Request, VpSet};
use crate::guest::Guest;
use crate::vsm::{VtlCaller, kernel_status};
use tlfs::hypercall::{
    HV_IPI_VECTOR_MAX, HV_IPI_VECTOR_MIN, HvCallCode, HvFlushFlags, HvGenericSetFormat, HvGvaRange,
    HvInputFlushVirtualAddress, HvInputFlushVirtualAddressEx, HvInputGetSetVpRegisters, HvInputGetVpIndexFromApicId,
    HvInputNotifyLongSpinWait, HvInputPostMessage, HvInputSendSyntheticClusterIpi, HvInputSendSyntheticClusterIpiEx,
    HvInputSignalEvent, HvInputVtl, HvRegisterAssoc, HvRegisterValue, HvVpSetHeader,
};
use tlfs::vsm::{HvInputEnablePartitionVtl, HvInputEnableVpVtl, HvInputModifyVtlProtectionMask, HvVtl};
use tlfs::{HV_VP_INDEX_SELF, HvError, HvPartitionId, HvRegisterName, HvResult, HvVpIndex};

/// A call's status and the reps completed.
pub(super) type Done = (HvResult<()>, u16);

pub(super) fn dispatch(
    request: &mut Request,
    caller: &Caller,
    guest: &mut impl Guest,
    target: &mut impl HypercallTarget,
) -> Done {
    let simple = |status: HvResult<()>| (status, 0);
    match request.code {
        // The Ex forms differ only in how the VPs are named: see `flush_target`.
        HvCallCode::FLUSH_VIRTUAL_ADDRESS_SPACE | HvCallCode::FLUSH_VIRTUAL_ADDRESS_SPACE_EX => {
            simple(flush_space(request, target))
        }
        HvCallCode::FLUSH_VIRTUAL_ADDRESS_LIST | HvCallCode::FLUSH_VIRTUAL_ADDRESS_LIST_EX => {
            flush_list(request, guest, target)
        }
        HvCallCode::SEND_SYNTHETIC_CLUSTER_IPI => simple(send_ipi(request, target)),
        HvCallCode::SEND_SYNTHETIC_CLUSTER_IPI_EX => simple(send_ipi_ex(request, target)),
        HvCallCode::NOTIFY_LONG_SPIN_WAIT => simple(long_spin_wait(request, caller, target)),
        HvCallCode::GET_VP_REGISTERS => get_vp_registers(request, caller, guest, target),
        HvCallCode::SET_VP_REGISTERS => set_vp_registers(request, caller, guest, target),
        HvCallCode::ENABLE_PARTITION_VTL => simple(enable_partition_vtl(request, caller, guest, target)),
        HvCallCode::ENABLE_VP_VTL => simple(enable_vp_vtl(request, caller, guest, target)),
        HvCallCode::MODIFY_VTL_PROTECTION_MASK => modify_vtl_protection_mask(request, caller, guest, target),
        HvCallCode::GET_VP_INDEX_FROM_APIC_ID => vp_index_from_apic_id(request, guest, target),
        HvCallCode::TRANSLATE_VIRTUAL_ADDRESS => simple(translate_virtual_address(request, caller, guest, target)),
        HvCallCode::EXT_QUERY_CAPABILITIES => simple(query_capabilities(request, guest, target)),
        HvCallCode::POST_MESSAGE => simple(post_message(request, target)),
        HvCallCode::SIGNAL_EVENT => simple(signal_event(request, target)),
        // The parser only passes codes it has a spec for.
        _ => simple(Err(HvError::INVALID_HYPERCALL_CODE)),
    }
}

/// A CR3 value with a bit above the architectural 52-bit physical width.
const fn cr3_reserved(address_space: u64) -> bool {
    address_space >> 52 != 0
}

/// The flags and address space of a flush (TLFS 9.4.2, 9.4.4).
fn flush_scope(address_space: u64, flags: HvFlushFlags, list: bool) -> HvResult<Flush> {
    if flags.has_reserved_bits() || (list && flags.non_global_mappings_only()) {
        return Err(HvError::INVALID_PARAMETER);
    }
    let address_space = if flags.all_virtual_address_spaces() {
        None
    } else if cr3_reserved(address_space) {
        return Err(HvError::INVALID_PARAMETER);
    } else {
        Some(address_space)
    };
    Ok(Flush { address_space, non_global_only: flags.non_global_mappings_only() })
}

/// The VPs of an `HV_VP_SET` whose banks are the variable header.
fn vp_set(request: &Request, header: HvVpSetHeader, vp_count: u32) -> HvResult<VpSet> {
    match header.format {
        HvGenericSetFormat::ALL => Ok(VpSet::all(vp_count)),
        HvGenericSetFormat::SPARSE_4K => VpSet::sparse(header.valid_banks_mask, request.variable_header(), vp_count)
            .ok_or(HvError::INVALID_PARAMETER),
        _ => Err(HvError::INVALID_PARAMETER),
    }
}

/// True for a sparse set whose banks are all zero: like an all-zero
/// processor mask, it names no VP at all.
fn names_no_vp(request: &Request, header: HvVpSetHeader) -> bool {
    let banks = header.valid_banks_mask.count_ones() as usize;
    header.format == HvGenericSetFormat::SPARSE_4K && request.variable_header().take(banks).all(|b| b == 0)
}

/// The processor mask of a non-Ex flush: empty is invalid without
/// `HV_FLUSH_ALL_PROCESSORS`.
fn flush_mask(mask: u64, flags: HvFlushFlags, vp_count: u32) -> HvResult<VpSet> {
    match (flags.all_processors(), mask) {
        (true, _) => Ok(VpSet::all(vp_count)),
        (false, 0) => Err(HvError::INVALID_PARAMETER),
        (false, mask) => Ok(VpSet::from_mask(mask, vp_count)),
    }
}

/// The scope and VPs of any of the four flushes.
fn flush_target(request: &Request, vp_count: u32) -> HvResult<(Flush, VpSet)> {
    let list = request.spec.rep;
    if request.spec.variable_header {
        let input: HvInputFlushVirtualAddressEx = request.header();
        let flush = flush_scope(input.address_space, input.flags, list)?;
        let vps = if input.flags.all_processors() {
            VpSet::all(vp_count)
        } else if names_no_vp(request, input.processor_set) {
            return Err(HvError::INVALID_PARAMETER);
        } else {
            vp_set(request, input.processor_set, vp_count)?
        };
        Ok((flush, vps))
    } else {
        let input: HvInputFlushVirtualAddress = request.header();
        let flush = flush_scope(input.address_space, input.flags, list)?;
        Ok((flush, flush_mask(input.processor_mask, input.flags, vp_count)?))
    }
}

fn flush_space(request: &Request, target: &mut impl HypercallTarget) -> HvResult<()> {
    let (flush, vps) = flush_target(request, target.vp_count())?;
    target.flush_tlb(&vps, flush, None);
    Ok(())
}

/// HvFlushVirtualAddressList[Ex]: the GVA ranges of this intercept's reps
/// are flushed together.
fn flush_list(request: &Request, guest: &mut impl Guest, target: &mut impl HypercallTarget) -> Done {
    let start = request.control.rep_start_index();
    let (flush, vps) = match flush_target(request, target.vp_count()) {
        Ok(t) => t,
        Err(e) => return (Err(e), start),
    };
    let mut ranges = [HvGvaRange::new(); REPS_PER_EXIT as usize];
    let mut n = 0;
    let mut status = Ok(());
    for i in request.reps() {
        match request.element::<HvGvaRange>(guest, i) {
            Ok(range) => {
                ranges[n] = range;
                n += 1;
            }
            Err(e) => {
                status = Err(e);
                break;
            }
        }
    }
    if n != 0 {
        target.flush_tlb(&vps, flush, Some(&ranges[..n]));
    }
    (status, start + n as u16)
}

/// The checks both IPI calls share (TLFS 10.5.2).
fn ipi_vector(vector: u32, vtl: HvInputVtl, reserved: [u8; 3]) -> HvResult<u8> {
    if !(HV_IPI_VECTOR_MIN..=HV_IPI_VECTOR_MAX).contains(&vector) || !vtl.is_vtl0_or_self() || reserved != [0; 3] {
        return Err(HvError::INVALID_PARAMETER);
    }
    Ok(vector as u8)
}

fn send_ipi(request: &Request, target: &mut impl HypercallTarget) -> HvResult<()> {
    let input: HvInputSendSyntheticClusterIpi = request.header();
    let vector = ipi_vector(input.vector, input.target_vtl, input.reserved)?;
    let vps = VpSet::from_mask(input.processor_mask, target.vp_count());
    target.send_ipi(vector, &vps);
    Ok(())
}

fn send_ipi_ex(request: &Request, target: &mut impl HypercallTarget) -> HvResult<()> {
    let input: HvInputSendSyntheticClusterIpiEx = request.header();
    let vector = ipi_vector(input.vector, input.target_vtl, input.reserved)?;
    // An empty set sends nothing; unlike a flush it is not an error.
    let vps = vp_set(request, input.processor_set, target.vp_count())?;
    target.send_ipi(vector, &vps);
    Ok(())
}

fn long_spin_wait(request: &Request, caller: &Caller, target: &mut impl HypercallTarget) -> HvResult<()> {
    let input: HvInputNotifyLongSpinWait = request.header();
    target.long_spin_wait(caller.vp_index, input.long_spin_wait_count);
    Ok(())
}

/// A guest may name only itself (`HV_PARTITION_ID_SELF`) and VTL 0.
fn own_partition(partition: HvPartitionId, vtl: HvInputVtl, reserved_zero: bool) -> HvResult<()> {
    if partition != HvPartitionId::SELF {
        return Err(HvError::ACCESS_DENIED);
    }
    if !vtl.is_vtl0_or_self() || !reserved_zero {
        return Err(HvError::INVALID_PARAMETER);
    }
    Ok(())
}

/// The VP and VTL a Get/SetVpRegisters header names: with VSM, the
/// caller's VTL or one below it (15.15.1, `PartitionVsm::register_vtl`);
/// without, only VTL 0.
fn registers_vp(request: &Request, caller: &Caller, target: &mut impl HypercallTarget) -> HvResult<(HvVpIndex, HvVtl)> {
    let input: HvInputGetSetVpRegisters = request.header();
    let vp_count = target.vp_count();
    let Some(vsm) = target.vsm() else {
        own_partition(input.partition(), input.input_vtl, input.reserved == [0; 3])?;
        if input.vp_index >= vp_count {
            return Err(HvError::INVALID_VP_INDEX);
        }
        return Ok((input.vp_index, 0));
    };
    if input.partition() != HvPartitionId::SELF {
        return Err(HvError::ACCESS_DENIED);
    }
    if input.reserved != [0; 3] {
        return Err(HvError::INVALID_PARAMETER);
    }
    if input.vp_index >= vp_count {
        return Err(HvError::INVALID_VP_INDEX);
    }
    let vtl = vsm.register_vtl(input.vp_index, input.input_vtl, caller.vtl)?;
    Ok((input.vp_index, vtl))
}

/// Runs `rep` for each rep of this intercept, stopping at the first error.
fn each_rep(request: &mut Request, mut rep: impl FnMut(&mut Request, u16) -> HvResult<()>) -> Done {
    let mut done = request.control.rep_start_index();
    for i in request.reps() {
        if let Err(e) = rep(request, i) {
            return (Err(e), done);
        }
        done = i + 1;
    }
    (Ok(()), done)
}

/// A register of another VTL than the caller's that is not VSM's: the
/// VID would have ring 0 switch the VP's VTL to reach it, which it does
/// not do yet (ARCHITECTURE §6.5).
fn other_vtl(vtl: HvVtl, caller: &Caller) -> HvResult<()> {
    if vtl != caller.vtl { Err(HvError::INVALID_PARAMETER) } else { Ok(()) }
}

fn get_vp_registers(
    request: &mut Request,
    caller: &Caller,
    guest: &mut impl Guest,
    target: &mut impl HypercallTarget,
) -> Done {
    let (vp, vtl) = match registers_vp(request, caller, target) {
        Ok(t) => t,
        Err(e) => return (Err(e), request.control.rep_start_index()),
    };
    each_rep(request, |request, i| {
        let name: HvRegisterName = request.element(guest, i)?;
        let vsm = target.vsm().and_then(|v| v.get_register(vp, vtl, name));
        let value = match vsm {
            Some(value) => HvRegisterValue { low: value?, high: 0 },
            // With VSM: the caller's own VP, in its VTL or a lower one.
            None if vp == caller.vp_index && target.vsm().is_some() => own_register(guest, vtl, caller, name)?,
            None => {
                other_vtl(vtl, caller)?;
                target.get_vp_register(vp, name)?
            }
        };
        request.output(guest, i, &value)
    })
}

/// A register of the caller's VP in VTL `vtl` (its own, or one below,
/// which ring 0 switches to and back: 15.2.1); one ring 0 does not give
/// is `INVALID_PARAMETER`.
fn own_register(
    guest: &mut impl Guest,
    vtl: HvVtl,
    caller: &Caller,
    name: HvRegisterName,
) -> HvResult<HvRegisterValue> {
    let value = if vtl == caller.vtl {
        guest.register(name)
    } else {
        let kernel = guest.vtl_kernel().ok_or(HvError::INVALID_PARAMETER)?;
        kernel.vtl_register(caller.vp_index, vtl, caller.vtl, name).ok()
    };
    let (low, high) = value.ok_or(HvError::INVALID_PARAMETER)?;
    Ok(HvRegisterValue { low, high })
}

fn set_vp_registers(
    request: &mut Request,
    caller: &Caller,
    guest: &mut impl Guest,
    target: &mut impl HypercallTarget,
) -> Done {
    let (vp, vtl) = match registers_vp(request, caller, target) {
        Ok(t) => t,
        Err(e) => return (Err(e), request.control.rep_start_index()),
    };
    each_rep(request, |request, i| {
        let assoc: HvRegisterAssoc = request.element(guest, i)?;
        default_protection(vp, vtl, &assoc, guest, target)?;
        match target.vsm().and_then(|v| v.set_register(vp, vtl, assoc.name, assoc.value.low)) {
            Some(status) => status,
            None => {
                other_vtl(vtl, caller)?;
                target.set_vp_register(vp, assoc.name, assoc.value)
            }
        }
    })
}

/// A write of HvRegisterVsmPartitionConfig that sets EnableVtlProtection
/// with a mask other than RWX: the mask goes to all of VTL 0's RAM first
/// (15.5.1.2), through ring 0 and the VID's table; a refusal fails the
/// write, which then changes nothing. The write itself is tried on a copy
/// of the VSM state, so only one that will succeed is applied.
fn default_protection(
    vp: HvVpIndex,
    vtl: HvVtl,
    assoc: &HvRegisterAssoc,
    guest: &mut impl Guest,
    target: &mut impl HypercallTarget,
) -> HvResult<()> {
    let Some(vsm) = target.vsm() else { return Ok(()) };
    if assoc.name != HvRegisterName::VSM_PARTITION_CONFIG || vsm.vtl_protection_enabled() {
        return Ok(());
    }
    let mut trial = vsm.clone();
    if trial.set_register(vp, vtl, assoc.name, assoc.value.low) != Some(Ok(())) || !trial.vtl_protection_enabled() {
        return Ok(());
    }
    let mask = trial.default_protection();
    if mask.into_bits() & 0x7 == 0x7 {
        return Ok(());
    }
    guest.vtl_kernel().ok_or(HvError::INVALID_PARTITION_STATE)?.protect_default(mask)
}

/// HvEnablePartitionVtl (15.15.3): `vid::vsm`'s checks, then ring 0's
/// second view.
fn enable_partition_vtl(
    request: &Request,
    caller: &Caller,
    guest: &mut impl Guest,
    target: &mut impl HypercallTarget,
) -> HvResult<()> {
    let input: HvInputEnablePartitionVtl = request.header();
    let vsm = target.vsm().ok_or(HvError::ACCESS_DENIED)?;
    let who = VtlCaller { vp: caller.vp_index, vtl: caller.vtl };
    vsm.enable_partition_vtl_with(&input, who, |vtl| {
        let kernel = guest.vtl_kernel().ok_or(HvError::INVALID_PARTITION_STATE)?;
        kernel.enable_partition_vtl(vtl).map_err(|e| kernel_status(e, HvError::INVALID_VTL_STATE))
    })
}

/// HvEnableVpVtl (15.15.4): `vid::vsm`'s checks, then ring 0 makes the
/// VP's VTL and sets its initial context. A VP other than the caller must
/// not be running (ring 0 changes only a VP at rest): `INVALID_VP_STATE`,
/// the table's status for "a virtual processor is not in the correct
/// state".
fn enable_vp_vtl(
    request: &Request,
    caller: &Caller,
    guest: &mut impl Guest,
    target: &mut impl HypercallTarget,
) -> HvResult<()> {
    let input: HvInputEnableVpVtl = request.header();
    let vsm = target.vsm().ok_or(HvError::ACCESS_DENIED)?;
    let vp = if input.vp_index == HV_VP_INDEX_SELF { caller.vp_index } else { input.vp_index };
    let active = if vp == caller.vp_index { caller.vtl } else { vsm.active_vtl(vp).unwrap_or(0) };
    let who = VtlCaller { vp: caller.vp_index, vtl: caller.vtl };
    let enabled = vsm.enable_vp_vtl_with(&input, who, |e| {
        let Some(kernel) = guest.vtl_kernel() else { return (false, Err(HvError::INVALID_PARTITION_STATE)) };
        if e.vp != caller.vp_index && kernel.may_run(e.vp) {
            return (false, Err(HvError::INVALID_VP_STATE));
        }
        let registers = e.context.registers();
        match kernel.enable_vp_vtl(e.vp, e.vtl, active, &registers) {
            Err(err) => (false, Err(kernel_status(err, HvError::INVALID_VP_STATE))),
            Ok(set) => (true, set.map_err(|err| kernel_status(err, HvError::INVALID_VP_STATE))),
        }
    })?;
    // Ring 0 has the context now.
    let _ = vsm.take_initial_context(enabled.vp);
    Ok(())
}

/// HvModifyVtlProtectionMask (15.15.2, 15.9): `vid::vsm`'s checks, then
/// each page through ring 0 and the VID's table ([`VtlKernel::protect`]:
/// a page that is not RAM is `INVALID_PARAMETER`). An error in rep n
/// completes the call with n reps done, the pages before it protected.
///
/// [`VtlKernel::protect`]: crate::vsm::VtlKernel::protect
fn modify_vtl_protection_mask(
    request: &mut Request,
    caller: &Caller,
    guest: &mut impl Guest,
    target: &mut impl HypercallTarget,
) -> Done {
    let input: HvInputModifyVtlProtectionMask = request.header();
    let mask = target.vsm().ok_or(HvError::ACCESS_DENIED).and_then(|vsm| vsm.protection_mask(&input, caller.vtl));
    let mask = match mask {
        Ok(mask) => mask,
        Err(e) => return (Err(e), request.control.rep_start_index()),
    };
    each_rep(request, |request, i| {
        let gpn: u64 = request.element(guest, i)?;
        guest.vtl_kernel().ok_or(HvError::INVALID_PARTITION_STATE)?.protect(gpn, mask)
    })
}

/// HvTranslateVirtualAddress (9.4.6) of the caller's own VP, in its VTL
/// or a lower one (a higher VTL inspects VTL 0's addresses): the VID reads
/// a VP's registers only at its exit, so another VP is INVALID_VP_STATE.
/// TlbFlushInhibit (an intercept-suspend register the VID does not keep)
/// and shadow-stack walks (CET is not offered) are INVALID_PARAMETER.
fn translate_virtual_address(
    request: &mut Request,
    caller: &Caller,
    guest: &mut impl Guest,
    target: &mut impl HypercallTarget,
) -> HvResult<()> {
    use crate::translate::{PagingRegisters, translate_gva};
    let input: tlfs::vsm::HvInputTranslateVirtualAddress = request.header();
    if input.partition() != HvPartitionId::SELF {
        return Err(HvError::ACCESS_DENIED);
    }
    let flags = input.control_flags;
    if input.has_reserved_bits()
        || !flags.validates_access()
        || flags.tlb_flush_inhibit()
        || flags.shadow_stack()
        || (flags.user_access() && flags.supervisor_access())
        || (flags.enforce_smap() && flags.override_smap())
    {
        return Err(HvError::INVALID_PARAMETER);
    }
    let vp = if input.vp_index == HV_VP_INDEX_SELF { caller.vp_index } else { input.vp_index };
    if vp >= target.vp_count() {
        return Err(HvError::INVALID_VP_INDEX);
    }
    if vp != caller.vp_index {
        return Err(HvError::INVALID_VP_STATE);
    }
    // The caller's VTL or a lower one it has (ACCESS_DENIED, INVALID_VTL_STATE).
    let vsm = target.vsm().ok_or(HvError::ACCESS_DENIED)?;
    let vtl = vsm.register_vtl(vp, flags.input_vtl(), caller.vtl)?;
    let mut read = |name| own_register(guest, vtl, caller, name);
    let ss = read(HvRegisterName::SS)?;
    let regs = PagingRegisters {
        cr0: read(HvRegisterName::CR0)?.low,
        cr3: read(HvRegisterName::CR3)?.low,
        cr4: read(HvRegisterName::CR4)?.low,
        efer: read(HvRegisterName::EFER)?.low,
        rflags: read(HvRegisterName::RFLAGS)?.low,
        // SS.DPL, as SVM keeps the CPL and VMX defines it.
        cpl: tlfs::segment_register_from_value(ss.low, ss.high).attributes.descriptor_privilege_level(),
    };
    let features = target.paging_features();
    let result = translate_gva(guest, &regs, features, flags, input.gva_page, |gpn| target.overlay_at(gpn));
    let output =
        tlfs::vsm::HvOutputTranslateVirtualAddress { translation_result: result.result, gpa_page: result.gpa_page };
    request.output(guest, 0, &output)
}

fn vp_index_from_apic_id(request: &mut Request, guest: &mut impl Guest, target: &mut impl HypercallTarget) -> Done {
    let input: HvInputGetVpIndexFromApicId = request.header();
    if let Err(e) = own_partition(input.partition(), input.target_vtl, input.reserved == [0; 7]) {
        return (Err(e), request.control.rep_start_index());
    }
    each_rep(request, |request, i| {
        let apic_id: u32 = request.element(guest, i)?;
        let vp = target.apic_id_to_vp_index(apic_id).ok_or(HvError::INVALID_PARAMETER)?;
        request.output(guest, i, &vp)
    })
}

fn query_capabilities(
    request: &mut Request,
    guest: &mut impl Guest,
    target: &mut impl HypercallTarget,
) -> HvResult<()> {
    let capabilities = target.extended_capabilities();
    request.output(guest, 0, &capabilities)
}

/// The statuses HvPostMessage may return (TLFS 11.11.1), success aside.
pub const POST_MESSAGE_STATUSES: [HvError; 7] = [
    HvError::ACCESS_DENIED,
    HvError::INVALID_PARAMETER,
    HvError::INVALID_CONNECTION_ID,
    HvError::INVALID_PORT_ID,
    HvError::INSUFFICIENT_BUFFERS,
    HvError::INVALID_VP_INDEX,
    HvError::INVALID_SYNIC_STATE,
];

/// The statuses HvSignalEvent may return (TLFS 11.11.2), success aside.
pub const SIGNAL_EVENT_STATUSES: [HvError; 6] = [
    HvError::ACCESS_DENIED,
    HvError::INVALID_PARAMETER,
    HvError::INVALID_CONNECTION_ID,
    HvError::INVALID_PORT_ID,
    HvError::INVALID_VP_INDEX,
    HvError::INVALID_SYNIC_STATE,
];

/// The broker's answer, which is an allegation: a status outside the
/// call's table (a broker that is gone, or one that answers nonsense)
/// becomes `INVALID_CONNECTION_ID`, as the connection cannot be used.
fn broker_answer(answer: HvResult<()>, table: &[HvError]) -> HvResult<()> {
    match answer {
        Err(e) if !table.contains(&e) => Err(HvError::INVALID_CONNECTION_ID),
        other => other,
    }
}

/// A message type the guest may post: not `HvMessageTypeNone` (0), and
/// without bit 31, which marks the hypervisor's own messages (TLFS 11.10).
const fn guest_message_type(message_type: u32) -> bool {
    message_type != 0 && message_type & 0x8000_0000 == 0
}

/// HvPostMessage (TLFS 11.11.1): `RsvdZ`, the payload size (at most 240)
/// and the message type are checked here, the connection, its port and the
/// port's queue by the broker, whose answer is returned.
fn post_message(request: &Request, target: &mut impl HypercallTarget) -> HvResult<()> {
    let input: HvInputPostMessage = request.header();
    let size = input.payload_size as usize;
    if input.reserved != 0 || size > input.payload.len() || !guest_message_type(input.message_type) {
        return Err(HvError::INVALID_PARAMETER);
    }
    let answer = target.post_message(input.connection_id, input.message_type, &input.payload[..size]);
    broker_answer(answer, &POST_MESSAGE_STATUSES)
}

/// HvSignalEvent (TLFS 11.11.2): `RsvdZ` here, the connection, its port
/// and the flag number by the broker.
fn signal_event(request: &Request, target: &mut impl HypercallTarget) -> HvResult<()> {
    let input: HvInputSignalEvent = request.header();
    if input.reserved != 0 {
        return Err(HvError::INVALID_PARAMETER);
    }
    let answer = target.signal_event(input.connection_id, input.flag_number);
    broker_answer(answer, &SIGNAL_EVENT_STATUSES)
}
