//! TLFS hypercalls (TLFS 3) as the VID sees them at a VMCALL/VMMCALL
//! intercept: one parser, then one handler per call.
//!
//! [`handle`] takes the calling VP ([`Caller`]: mode, CPL, the registers of
//! the calling convention, the partition's privileges and XMM support), its
//! XMM registers ([`XmmRegisters`], read only for XMM fast calls), guest
//! memory ([`Guest`]) and the partition ([`HypercallTarget`], which the VID
//! implements over its VPs). It writes the registers to set into the
//! caller's [`Updates`] and [`XmmUpdates`] (a reply's, filled in place) and
//! returns an [`Outcome`]:
//!
//! - [`Outcome::InjectUd`]: the call is not allowed here (CPL > 0, real or
//!   virtual-8086 mode, XMM fast input or output the partition was not
//!   offered); inject #UD, change nothing else (no register is written).
//! - [`Outcome::Complete`]: set the registers (the result value in RAX or
//!   EDX:EAX, and any fast output) and advance RIP past the instruction.
//! - [`Outcome::Continue`]: a rep call made progress but is not done; set the
//!   control value (RCX or EDX:EAX) with the new rep start index and leave RIP
//!   on the instruction, so the guest executes it again (TLFS 3.3). At most
//!   [`REPS_PER_EXIT`] reps run per intercept.
//! - [`Outcome::SwitchVtl`]: a VTL call or return (TLFS 15.6, 15.7) of a
//!   partition with VSM, checked (`vtl_switch`); the VID switches the VP.
//!
//! # Order of checks
//!
//! TLFS 3.12.2 leaves the order undefined but asks that statuses which
//! reveal less win, access denial first. [`handle`] checks: the mode
//! (#UD); the call code (`INVALID_HYPERCALL_CODE`); the caller's privilege
//! (`ACCESS_DENIED`); the control value: reserved bits, rep count and start
//! index, variable header, fast flag (`INVALID_HYPERCALL_INPUT`); fast
//! input and output sizes; the parameter GPAs: 8-byte alignment, then page
//! crossing, then that they are guest RAM (`INVALID_ALIGNMENT`, the status
//! 3.12.3 gives for a GPA outside the GPA space; the VID has no parent to
//! send the memory intercept of 3.6 to). Then the call's own checks, in
//! `hypercall/calls.rs`. An error in rep element n completes the call with
//! that status and n reps completed.

mod calls;
mod vp_set;

pub use vp_set::VpSet;

use crate::exits::Updates;
use crate::guest::{Guest, cpu_mode};
use crate::vsm::protect::Need;
use tlfs::hypercall::{
    HV_FAST_INPUT_BYTES, HV_HYPERCALL_ALIGNMENT, HV_PAGE_SIZE, HV_VP_SET_MAX_BANKS, HV_XMM_FAST_BYTES,
    HV_XMM_FAST_REGISTERS, HvCallCode, HvExtCapabilities, HvGvaRange, HvHypercallInput, HvHypercallOutput,
    HvInputFlushVirtualAddress, HvInputFlushVirtualAddressEx, HvInputGetSetVpRegisters, HvInputGetVpIndexFromApicId,
    HvInputNotifyLongSpinWait, HvInputPostMessage, HvInputSendSyntheticClusterIpi, HvInputSendSyntheticClusterIpiEx,
    HvInputSignalEvent, HvPartitionPrivilegeMask, HvRegisterAssoc, HvRegisterValue,
};
use tlfs::vsm::{HvInputEnablePartitionVtl, HvInputEnableVpVtl, HvVtl};
use tlfs::zerocopy::{FromBytes, Immutable, IntoBytes};
use tlfs::{HvError, HvRegisterName, HvResult, HvVpIndex, HvX64InterceptMessageHeader};
use x86decode::CpuMode;

/// Most reps one intercept processes before the call continues.
pub const REPS_PER_EXIT: u16 = 16;

/// The general-purpose registers the calling conventions use (TLFS 3.7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallerRegisters {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub r8: u64,
}

/// The XMM fast conventions the partition's CPUID offers (leaf 0x40000003
/// EDX bits 4 and 15); using one that is not offered raises #UD.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XmmSupport {
    pub input: bool,
    pub output: bool,
}

/// The VP that executed the hypercall instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub vp_index: HvVpIndex,
    /// From [`crate::guest::cpu_mode`]: 64-bit callers (EFER.LMA and CS.L)
    /// use RCX/RDX/R8, others EDX:EAX, EBX:ECX and EDI:ESI.
    pub mode: CpuMode,
    pub cpl: u8,
    /// The VTL it runs in (the exit's execution state, TLFS 15).
    pub vtl: HvVtl,
    pub regs: CallerRegisters,
    pub privileges: HvPartitionPrivilegeMask,
    pub xmm_support: XmmSupport,
}

impl Caller {
    /// The caller an intercept describes (VP, mode and CPL from its header).
    pub fn at(
        header: &HvX64InterceptMessageHeader,
        regs: CallerRegisters,
        privileges: HvPartitionPrivilegeMask,
        xmm_support: XmmSupport,
    ) -> Caller {
        Caller {
            vp_index: header.vp_index,
            mode: cpu_mode(header),
            cpl: header.execution_state.cpl(),
            vtl: header.execution_state.vtl(),
            regs,
            privileges,
            xmm_support,
        }
    }
}

/// XMM0-XMM5 of the calling VP, read only for XMM fast calls.
pub trait XmmRegisters {
    fn xmm(&mut self, index: usize) -> u128;
}

impl XmmRegisters for [u128; HV_XMM_FAST_REGISTERS] {
    fn xmm(&mut self, index: usize) -> u128 {
        self[index]
    }
}

/// Which address spaces a TLB flush covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flush {
    /// `None` for every address space, else the CR3 value.
    pub address_space: Option<u64>,
    /// Global translations may be kept.
    pub non_global_only: bool,
}

/// The partition as the hypercall handlers act on it. Sets of VPs passed in
/// hold only VPs below [`HypercallTarget::vp_count`].
pub trait HypercallTarget {
    /// VPs in the partition; VP indices are `0..vp_count()`.
    fn vp_count(&self) -> u32;
    /// Flushes the TLBs of `vps`: everything in `flush`'s address spaces, or
    /// only `ranges`. Complete when it returns (TLFS 9.4.2).
    fn flush_tlb(&mut self, vps: &VpSet, flush: Flush, ranges: Option<&[HvGvaRange]>);
    /// Asserts a fixed interrupt of `vector` (0x10..=0xff) on `vps`.
    fn send_ipi(&mut self, vector: u8, vps: &VpSet);
    /// A scheduling hint: `vp` has spun `spin_count` times on a lock.
    fn long_spin_wait(&mut self, vp: HvVpIndex, spin_count: u64);
    /// A register of VP `vp` (< `vp_count`); `INVALID_PARAMETER` for a name
    /// it does not support.
    fn get_vp_register(&mut self, vp: HvVpIndex, name: HvRegisterName) -> HvResult<HvRegisterValue>;
    /// Sets a register of VP `vp`; `INVALID_PARAMETER` for an unsupported
    /// or read-only name or a bad value.
    fn set_vp_register(&mut self, vp: HvVpIndex, name: HvRegisterName, value: HvRegisterValue) -> HvResult<()>;
    fn apic_id_to_vp_index(&self, apic_id: u32) -> Option<HvVpIndex>;
    /// What the partition's CPUID offers that a page walk's reserved bits
    /// depend on (HvTranslateVirtualAddress).
    fn paging_features(&self) -> crate::translate::PagingFeatures;
    /// Whether an overlay page covers GPA page `gpn`.
    fn overlay_at(&self, gpn: u64) -> bool;
    /// HvPostMessage on the caller's connection `connection_id` (the
    /// parser checked the privilege, `RsvdZ` and the payload size): the
    /// broker's answer. Without one, no connection exists.
    fn post_message(&mut self, connection_id: u32, message_type: u32, payload: &[u8]) -> HvResult<()> {
        let _ = (connection_id, message_type, payload);
        Err(HvError::INVALID_CONNECTION_ID)
    }
    /// HvSignalEvent on the caller's connection `connection_id`: the
    /// broker's answer. Without one, no connection exists.
    fn signal_event(&mut self, connection_id: u32, flag_number: u16) -> HvResult<()> {
        let _ = (connection_id, flag_number);
        Err(HvError::INVALID_CONNECTION_ID)
    }
    /// What HvExtCallQueryCapabilities reports.
    fn extended_capabilities(&self) -> HvExtCapabilities {
        HvExtCapabilities::new()
    }
    /// The partition's VSM state (TLFS 15), with VSM offered; the VSM
    /// registers and calls act on it.
    fn vsm(&mut self) -> Option<&mut crate::vsm::PartitionVsm> {
        None
    }
}

/// XMM registers a fast call writes: (index, value).
pub type XmmUpdates = heapless::Vec<(usize, u128), HV_XMM_FAST_REGISTERS>;

/// What the VID does with the VP after a hypercall; see the module docs.
/// The registers to set are in the [`Updates`] and [`XmmUpdates`] given to
/// [`handle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    InjectUd,
    Complete {
        result: HvHypercallOutput,
    },
    Continue {
        control: HvHypercallInput,
    },
    /// A VTL call or return (TLFS 15.6, 15.7) that may be made: switch the
    /// VP to VTL `to`; on a return that is not `fast`, load RAX and RCX
    /// from the VTL control of the VTL left (15.7.1.1). No status.
    SwitchVtl {
        to: HvVtl,
        fast: bool,
    },
}

impl Outcome {
    /// The result value of a completed call.
    pub fn result(&self) -> Option<HvHypercallOutput> {
        match self {
            Outcome::Complete { result, .. } => Some(*result),
            _ => None,
        }
    }
}

/// The register convention of a caller's mode (TLFS 3.7, 3.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Convention {
    /// RCX, RDX, R8; result in RAX.
    X64,
    /// EDX:EAX, EBX:ECX, EDI:ESI; result in EDX:EAX.
    X86,
}

const fn pair(high: u64, low: u64) -> u64 {
    (high << 32) | (low & 0xffff_ffff)
}

impl Convention {
    fn control(self, r: &CallerRegisters) -> u64 {
        match self {
            Convention::X64 => r.rcx,
            Convention::X86 => pair(r.rdx, r.rax),
        }
    }

    /// The input and output parameters (GPAs, or fast input).
    fn params(self, r: &CallerRegisters) -> (u64, u64) {
        match self {
            Convention::X64 => (r.rdx, r.r8),
            Convention::X86 => (pair(r.rbx, r.rcx), pair(r.rdi, r.rsi)),
        }
    }

    /// Writes the result value (or the control value of a continuation).
    fn set_value(self, updates: &mut Updates, x64: HvRegisterName, value: u64) {
        let ok = match self {
            Convention::X64 => updates.push((x64, value)).is_ok(),
            Convention::X86 => {
                updates.push((HvRegisterName::RAX, value & 0xffff_ffff)).is_ok()
                    && updates.push((HvRegisterName::RDX, value >> 32)).is_ok()
            }
        };
        debug_assert!(ok, "register updates overflow");
    }
}

/// Per-call ABI facts (TLFS Appendix A and each call's native interface).
#[derive(Clone, Copy, Debug)]
struct CallSpec {
    rep: bool,
    variable_header: bool,
    fast: bool,
    /// Bytes of the fixed input header.
    header: usize,
    /// Bytes per rep input element.
    input_element: usize,
    /// Bytes of output: per rep for rep calls.
    output: usize,
    privileged: fn(&HvPartitionPrivilegeMask) -> bool,
}

fn anyone(_: &HvPartitionPrivilegeMask) -> bool {
    true
}

const fn spec(code: HvCallCode) -> Option<CallSpec> {
    let simple = CallSpec {
        rep: false,
        variable_header: false,
        fast: true,
        header: 0,
        input_element: 0,
        output: 0,
        privileged: anyone,
    };
    let flush = size_of::<HvInputFlushVirtualAddress>();
    let flush_ex = size_of::<HvInputFlushVirtualAddressEx>();
    let gva_range = size_of::<HvGvaRange>();
    let registers = size_of::<HvInputGetSetVpRegisters>();
    Some(match code {
        HvCallCode::FLUSH_VIRTUAL_ADDRESS_SPACE => CallSpec { header: flush, ..simple },
        HvCallCode::FLUSH_VIRTUAL_ADDRESS_LIST => {
            CallSpec { rep: true, header: flush, input_element: gva_range, ..simple }
        }
        HvCallCode::NOTIFY_LONG_SPIN_WAIT => CallSpec { header: size_of::<HvInputNotifyLongSpinWait>(), ..simple },
        HvCallCode::SEND_SYNTHETIC_CLUSTER_IPI => {
            CallSpec { header: size_of::<HvInputSendSyntheticClusterIpi>(), ..simple }
        }
        HvCallCode::FLUSH_VIRTUAL_ADDRESS_SPACE_EX => CallSpec { variable_header: true, header: flush_ex, ..simple },
        HvCallCode::FLUSH_VIRTUAL_ADDRESS_LIST_EX => {
            CallSpec { rep: true, variable_header: true, header: flush_ex, input_element: gva_range, ..simple }
        }
        HvCallCode::SEND_SYNTHETIC_CLUSTER_IPI_EX => {
            CallSpec { variable_header: true, header: size_of::<HvInputSendSyntheticClusterIpiEx>(), ..simple }
        }
        HvCallCode::GET_VP_REGISTERS => CallSpec {
            rep: true,
            header: registers,
            input_element: size_of::<HvRegisterName>(),
            output: size_of::<HvRegisterValue>(),
            privileged: HvPartitionPrivilegeMask::access_vp_registers,
            ..simple
        },
        HvCallCode::SET_VP_REGISTERS => CallSpec {
            rep: true,
            header: registers,
            input_element: size_of::<HvRegisterAssoc>(),
            privileged: HvPartitionPrivilegeMask::access_vp_registers,
            ..simple
        },
        HvCallCode::GET_VP_INDEX_FROM_APIC_ID => CallSpec {
            rep: true,
            fast: false,
            header: size_of::<HvInputGetVpIndexFromApicId>(),
            input_element: size_of::<u32>(),
            output: size_of::<HvVpIndex>(),
            privileged: HvPartitionPrivilegeMask::access_vp_index,
            ..simple
        },
        // TLFS 11.11.1: a memory call (its input is 256 bytes).
        HvCallCode::POST_MESSAGE => CallSpec {
            fast: false,
            header: size_of::<HvInputPostMessage>(),
            privileged: HvPartitionPrivilegeMask::post_messages,
            ..simple
        },
        // TLFS 11.11.2: its 8 bytes fit in RDX, fast or from memory.
        HvCallCode::SIGNAL_EVENT => CallSpec {
            header: size_of::<HvInputSignalEvent>(),
            privileged: HvPartitionPrivilegeMask::signal_events,
            ..simple
        },
        // TLFS 15.15.3: 16 bytes, fast or from memory.
        HvCallCode::ENABLE_PARTITION_VTL => CallSpec {
            header: size_of::<HvInputEnablePartitionVtl>(),
            privileged: HvPartitionPrivilegeMask::access_vsm,
            ..simple
        },
        // TLFS 15.15.2: a 16-byte header, then GPA page numbers.
        HvCallCode::MODIFY_VTL_PROTECTION_MASK => CallSpec {
            rep: true,
            header: size_of::<tlfs::vsm::HvInputModifyVtlProtectionMask>(),
            input_element: size_of::<u64>(),
            privileged: HvPartitionPrivilegeMask::access_vsm,
            ..simple
        },
        // TLFS 9.4.6: 32 bytes in, 16 out.
        HvCallCode::TRANSLATE_VIRTUAL_ADDRESS => CallSpec {
            fast: false,
            header: size_of::<tlfs::vsm::HvInputTranslateVirtualAddress>(),
            output: size_of::<tlfs::vsm::HvOutputTranslateVirtualAddress>(),
            privileged: HvPartitionPrivilegeMask::access_vsm,
            ..simple
        },
        // TLFS 15.15.4: 240 bytes, from memory only.
        HvCallCode::ENABLE_VP_VTL => CallSpec {
            fast: false,
            header: size_of::<HvInputEnableVpVtl>(),
            privileged: HvPartitionPrivilegeMask::access_vsm,
            ..simple
        },
        HvCallCode::EXT_QUERY_CAPABILITIES => CallSpec {
            fast: false,
            output: size_of::<HvExtCapabilities>(),
            privileged: HvPartitionPrivilegeMask::enable_extended_hypercalls,
            ..simple
        },
        _ => return None,
    })
}

/// The largest header: an Ex flush's fixed part and a full set of banks,
/// HvPostMessage's input or HvEnableVpVtl's.
const MAX_HEADER: usize = {
    let flush = size_of::<HvInputFlushVirtualAddressEx>() + HV_VP_SET_MAX_BANKS * 8;
    let post = size_of::<HvInputPostMessage>();
    let vp_vtl = size_of::<HvInputEnableVpVtl>();
    let max = if flush > post { flush } else { post };
    if max > vp_vtl { max } else { vp_vtl }
};
/// The largest rep element.
const MAX_ELEMENT: usize = size_of::<HvRegisterAssoc>();

/// Where the parameters are.
#[derive(Debug)]
enum Params<'b> {
    Memory {
        input: u64,
        output: u64,
    },
    /// RDX, R8 and XMM0-XMM5 as one block ([`handle`]'s); `output_len`
    /// bytes of output start at `output`.
    Fast {
        block: &'b mut [u8; HV_XMM_FAST_BYTES],
        output: usize,
        output_len: usize,
    },
}

/// Why parsing stopped.
enum Refused {
    Ud,
    Status(HvError),
}

impl From<HvError> for Refused {
    fn from(e: HvError) -> Refused {
        Refused::Status(e)
    }
}

/// A validated call: its header read, its rep elements and outputs at hand.
/// The header and the fast block are [`handle`]'s, so the request is small
/// and never copied whole.
struct Request<'b> {
    code: HvCallCode,
    control: HvHypercallInput,
    spec: CallSpec,
    params: Params<'b>,
    /// Exactly the header's bytes.
    header: &'b [u8],
}

/// Room for the longest header, filled only as far as a call's header goes.
type Header = heapless::Vec<u8, MAX_HEADER>;

impl Request<'_> {
    /// The fixed header as `T`.
    fn header<T: FromBytes>(&self) -> T {
        T::read_from_prefix(self.header).map(|(t, _)| t).unwrap_or_else(|_| T::new_zeroed())
    }

    /// The variable header, as qwords.
    fn variable_header(&self) -> impl Iterator<Item = u64> + '_ {
        self.header[self.spec.header..].chunks_exact(8).map(|q| u64::from_le_bytes(q.try_into().unwrap()))
    }

    /// The reps this intercept processes.
    fn reps(&self) -> core::ops::Range<u16> {
        let start = self.control.rep_start_index();
        start..self.control.rep_count().min(start.saturating_add(REPS_PER_EXIT))
    }

    /// Rep input element `i`.
    fn element<T: FromBytes>(&self, guest: &mut impl Guest, i: u16) -> HvResult<T> {
        let offset = self.header.len() + usize::from(i) * self.spec.input_element;
        let mut bytes = [0u8; MAX_ELEMENT];
        let buf = &mut bytes[..size_of::<T>().min(MAX_ELEMENT)];
        match &self.params {
            &Params::Memory { input, .. } => {
                if !guest.read(input + offset as u64, buf) {
                    return Err(HvError::INVALID_ALIGNMENT);
                }
            }
            Params::Fast { block, .. } => buf.copy_from_slice(&block[offset..offset + buf.len()]),
        }
        T::read_from_bytes(buf).map_err(|_| HvError::INVALID_PARAMETER)
    }

    /// Writes output `i` (rep output element `i`, or the output of a simple call).
    fn output<T: IntoBytes + Immutable>(&mut self, guest: &mut impl Guest, i: u16, value: &T) -> HvResult<()> {
        let bytes = value.as_bytes();
        let offset = usize::from(i) * self.spec.output;
        match &mut self.params {
            Params::Memory { output, .. } => {
                if !guest.write(*output + offset as u64, bytes) {
                    return Err(HvError::INVALID_ALIGNMENT);
                }
            }
            Params::Fast { block, output, .. } => {
                block[*output + offset..*output + offset + bytes.len()].copy_from_slice(bytes)
            }
        }
        Ok(())
    }
}

/// Handles the hypercall `caller` made; the registers to set are added to
/// `updates` and `xmm_out`. See the module docs.
pub fn handle(
    caller: &Caller,
    xmm: &mut impl XmmRegisters,
    guest: &mut impl Guest,
    target: &mut impl HypercallTarget,
    (updates, xmm_out): (&mut Updates, &mut XmmUpdates),
) -> Outcome {
    if caller.cpl != 0 || caller.mode == CpuMode::Real16 {
        return Outcome::InjectUd;
    }
    let convention = if caller.mode == CpuMode::Long64 { Convention::X64 } else { Convention::X86 };
    let control = HvHypercallInput::from_bits(convention.control(&caller.regs));
    let code = control.code();
    if (code == HvCallCode::VTL_CALL || code == HvCallCode::VTL_RETURN)
        && let Some(vsm) = target.vsm()
    {
        return vtl_switch(caller, convention, control, vsm);
    }
    let (mut header, mut block) = (Header::new(), [0; HV_XMM_FAST_BYTES]);
    let mut request = match parse(caller, convention, control, xmm, guest, (&mut header, &mut block)) {
        Ok(request) => request,
        Err(Refused::Ud) => return Outcome::InjectUd,
        Err(Refused::Status(e)) => return complete(convention, Err(e), 0, None, (updates, xmm_out)),
    };
    let (status, reps) = calls::dispatch(&mut request, caller, guest, target);
    if status.is_ok() && request.spec.rep && reps < control.rep_count() {
        let control = control.with_rep_start_index(reps);
        convention.set_value(updates, HvRegisterName::RCX, control.into_bits());
        return Outcome::Continue { control };
    }
    let fast_output = match request.params {
        Params::Fast { block, output, output_len } if output_len != 0 => Some((&*block, output..output + output_len)),
        _ => None,
    };
    complete(convention, status, reps, fast_output, (updates, xmm_out))
}

/// HvCallVtlCall and HvCallVtlReturn (15.6.1, 15.7.1), from the hypercall
/// page's sequences (RCX, the control input, moved to RAX; the call code
/// in RCX, [`crate::synthetic::vtl_sequence`]) or made directly. Each
/// refusal is #UD (15.6.1.1, 15.7.2): a control value other than the bare
/// call code, a reserved input bit, no VTL to go to; CPL > 0 and real
/// mode were refused before.
fn vtl_switch(
    caller: &Caller,
    convention: Convention,
    control: HvHypercallInput,
    vsm: &mut crate::vsm::PartitionVsm,
) -> Outcome {
    let call = control.code() == HvCallCode::VTL_CALL;
    let input = match convention {
        Convention::X64 => caller.regs.rax,
        Convention::X86 => caller.regs.rcx & 0xffff_ffff,
    };
    let (reserved, fast) = if call {
        (tlfs::vsm::HvVtlCallInput::from_bits(input).has_reserved_bits(), false)
    } else {
        let input = tlfs::vsm::HvVtlReturnInput::from_bits(input);
        (input.has_reserved_bits(), input.fast_return())
    };
    if control.into_bits() != u64::from(control.code().0) || reserved {
        return Outcome::InjectUd;
    }
    match vsm.switch_target(caller.vp_index, caller.vtl, call) {
        Some(to) => Outcome::SwitchVtl { to, fast },
        None => Outcome::InjectUd,
    }
}

/// The completed call's result and fast output registers.
fn complete(
    convention: Convention,
    status: HvResult<()>,
    reps: u16,
    fast_output: Option<(&[u8; HV_XMM_FAST_BYTES], core::ops::Range<usize>)>,
    (updates, xmm): (&mut Updates, &mut XmmUpdates),
) -> Outcome {
    let result = HvHypercallOutput::new().with_call_status(tlfs::status_of(&status).0).with_reps_completed(reps);
    convention.set_value(updates, HvRegisterName::RAX, result.into_bits());
    if let (Some((block, output)), Ok(())) = (fast_output, status) {
        for chunk in output.start / 16..output.end.div_ceil(16) {
            let bytes = &block[chunk * 16..chunk * 16 + 16];
            let low = u64::from_le_bytes(bytes[..8].try_into().unwrap());
            let high = u64::from_le_bytes(bytes[8..].try_into().unwrap());
            let pushed = if chunk == 0 {
                updates.push((HvRegisterName::RDX, low)).is_ok() && updates.push((HvRegisterName::R8, high)).is_ok()
            } else {
                xmm.push((chunk - 1, u128::from(low) | u128::from(high) << 64)).is_ok()
            };
            debug_assert!(pushed, "fast output overflows the registers");
        }
    }
    Outcome::Complete { result }
}

/// The one parser: validates the control value and the parameters, and
/// reads the header.
fn parse<'b>(
    caller: &Caller,
    convention: Convention,
    control: HvHypercallInput,
    xmm: &mut impl XmmRegisters,
    guest: &mut impl Guest,
    (header, block): (&'b mut Header, &'b mut [u8; HV_XMM_FAST_BYTES]),
) -> Result<Request<'b>, Refused> {
    let code = control.code();
    let spec = spec(code).ok_or(HvError::INVALID_HYPERCALL_CODE)?;
    if !(spec.privileged)(&caller.privileges) {
        return Err(HvError::ACCESS_DENIED.into());
    }
    let (count, start) = (control.rep_count(), control.rep_start_index());
    let reps_ok = if spec.rep { count != 0 && start < count } else { count == 0 && start == 0 };
    let var_qwords = usize::from(control.variable_header_size());
    if control.has_reserved_bits()
        || !reps_ok
        || (var_qwords != 0 && !spec.variable_header)
        || var_qwords > HV_VP_SET_MAX_BANKS
        || (control.fast() && !spec.fast)
    {
        return Err(HvError::INVALID_HYPERCALL_INPUT.into());
    }
    let header_len = spec.header + var_qwords * 8;
    let input_len = header_len + usize::from(count) * spec.input_element;
    let output_len = if spec.rep { usize::from(count) * spec.output } else { spec.output };
    let (p1, p2) = convention.params(&caller.regs);
    let params = if control.fast() {
        fast_params(caller, convention, (input_len, output_len), (p1, p2), xmm, block)?
    } else {
        memory_params(guest, input_len, output_len, p1, p2)?
    };
    // (At most MAX_HEADER, the specs and the bank limit above; fast, at
    // most the block, fast_params saw to it.)
    match &params {
        &Params::Memory { input, .. } => {
            let _ = header.resize(header_len, 0);
            if header_len != 0 && !guest.read(input, &mut header[..header_len]) {
                return Err(HvError::INVALID_ALIGNMENT.into());
            }
        }
        Params::Fast { block, .. } => {
            let _ = header.extend_from_slice(&block[..header_len]);
        }
    }
    let header: &'b Header = header;
    Ok(Request { code, control, spec, params, header })
}

/// Fast input: RDX and R8, then XMM0-XMM5 if the input or output needs them.
fn fast_params<'b>(
    caller: &Caller,
    convention: Convention,
    (input_len, output_len): (usize, usize),
    (p1, p2): (u64, u64),
    xmm: &mut impl XmmRegisters,
    block: &'b mut [u8; HV_XMM_FAST_BYTES],
) -> Result<Params<'b>, Refused> {
    let output = input_len.next_multiple_of(16);
    if output_len != 0 && convention == Convention::X86 {
        // XMM fast output is x64 only (TLFS 3.8.1).
        return Err(HvError::INVALID_HYPERCALL_INPUT.into());
    }
    let uses_xmm = input_len > HV_FAST_INPUT_BYTES || output_len != 0;
    if (input_len > HV_FAST_INPUT_BYTES && !caller.xmm_support.input) || (output_len != 0 && !caller.xmm_support.output)
    {
        return Err(Refused::Ud);
    }
    if input_len > HV_XMM_FAST_BYTES || output + output_len > HV_XMM_FAST_BYTES {
        return Err(HvError::INVALID_HYPERCALL_INPUT.into());
    }
    block[..8].copy_from_slice(&p1.to_le_bytes());
    block[8..16].copy_from_slice(&p2.to_le_bytes());
    if uses_xmm {
        for i in 0..HV_XMM_FAST_REGISTERS {
            block[16 + i * 16..32 + i * 16].copy_from_slice(&xmm.xmm(i).to_le_bytes());
        }
    }
    Ok(Params::Fast { block, output, output_len })
}

/// Memory parameters: 8-byte aligned, within one page, and guest RAM (TLFS 3.6).
fn memory_params(
    guest: &mut impl Guest,
    input_len: usize,
    output_len: usize,
    input: u64,
    output: u64,
) -> HvResult<Params<'static>> {
    let lists = [(input, input_len), (output, output_len)];
    let used = || lists.into_iter().filter(|&(_, len)| len != 0);
    if used().any(|(gpa, _)| gpa % HV_HYPERCALL_ALIGNMENT != 0) {
        return Err(HvError::INVALID_ALIGNMENT);
    }
    if used().any(|(gpa, len)| gpa % HV_PAGE_SIZE + len as u64 > HV_PAGE_SIZE) {
        return Err(HvError::INVALID_ALIGNMENT);
    }
    // A page VTL 1 protects from a VTL 0 caller: 3.6's memory intercept
    // would go to VTL 1 (15.9.2), which the VID does not build; the caller
    // lacks the access (ACCESS_DENIED), and nothing is read or written.
    let (input_used, output_used) = ((input_len != 0).then_some(input), (output_len != 0).then_some(output));
    if input_used.is_some_and(|gpa| guest.denied(gpa, input_len, Need::Read))
        || output_used.is_some_and(|gpa| guest.denied(gpa, output_len, Need::Write))
    {
        return Err(HvError::ACCESS_DENIED);
    }
    if used().any(|(gpa, _)| !guest.read(gpa, &mut [0u8; 1])) {
        return Err(HvError::INVALID_ALIGNMENT);
    }
    Ok(Params::Memory { input, output })
}

#[cfg(test)]
mod tests;
