//! Exits ring 0 handles itself, the same on both backends: the TLFS has no
//! intercept message for them, and what they touch (XCR0, the debug
//! registers, the caches, exception delivery) is the host's to switch or to
//! protect. Each is cheap and leaves the VP running; the time is the VP's,
//! charged to its scheduling context like its guest time.
//!
//! - XSETBV is emulated against the components ring 0 switches
//!   (`arch::fpu::offered`), with the checks of the SDM (#UD, #GP).
//! - INVD and WBINVD are skipped, never executed: guest memory is ordinary
//!   write-back RAM that no device writes behind the caches' back, so a
//!   flush changes nothing the guest can see, while INVD would throw away
//!   other partitions' dirty lines and WBINVD stall every CPU's caches.
//!   (A guest that relies on INVD discarding its own writes, as firmware
//!   running cache-as-RAM does, sees them kept.)
//! - RDPMC raises #GP(0): no performance counters are offered (CPUID has
//!   no leaf 0xA), so every counter index is invalid.
//! - An instruction the guest is not offered raises #UD, RIP unchanged:
//!   SVM's and VMX's own (CPUID has no SVM, VMX or SMX, EFER.SVME and
//!   CR4.VMXE read clear), GETSEC and MONITOR/MWAIT. The hardware exits on
//!   them because it has them (SVM: VMRUN must be intercepted, and the
//!   guest's EFER.SVME is set; VMX: its instructions and GETSEC exit
//!   unconditionally). MONITOR and MWAIT are intercepted on both, so that
//!   no guest puts the physical CPU to sleep.
//! - The first debug-register access makes them the VP's own
//!   (`arch::dr`); the access then runs again, natively.
//! - A CR0 or CR4 write that exits is emulated with the SDM's checks
//!   (`control_registers`).
//! - A WRMSR of an address MSR that SVM intercepts
//!   (`kerncore::intercept::CHECKED_ADDRESS_MSRS`: the segment bases, the
//!   syscall targets) raises #GP(0) for a non-canonical address (SDM Vol.
//!   2B WRMSR), as hardware does and QEMU's TCG does not; a canonical one
//!   is written into the VP.
//! - #DB and #AC are delivered to the guest from here, so a delivery that
//!   faults again is one exit more, not a hung CPU.

use super::Vcpu;
use crate::arch::vm::{Exit, ExitReason};
use kerncore::debugreg;
use kerncore::event::Interruption;
use kerncore::intercept::{IoDirection, IoSize, vector};
use kerncore::portset::{PortLatches, PortSet, PostedWrites};
use kerncore::xstate::XsetbvFault;
use tlfs::HvRegisterName;
use x86defs::mode::{CpuMode, ModeState};

const RFLAGS_TF: u64 = 1 << 8;
const CR4_OSXSAVE: u64 = 1 << 18;

pub(super) fn register(vcpu: &mut Vcpu, name: HvRegisterName) -> u64 {
    vcpu.get(name).map_or(0, |(low, _)| low)
}

/// Raises `event` in the guest at its next entry. A #DB or #AC that cut
/// short the delivery of another exception replaces it (both are benign:
/// SDM Vol. 3A Table 6-5; the instruction that raised the first runs again
/// and raises it again); an interrupt or NMI whose delivery it cut short is
/// delivered after it.
fn raise(vcpu: &mut Vcpu, event: Interruption) {
    if vcpu.reinject.is_some_and(|e| e.kind == tlfs::HvX64PendingInterruptionType::EXCEPTION) {
        vcpu.reinject = None;
    }
    vcpu.exception = Some(event);
}

pub(super) fn fault(vcpu: &mut Vcpu, vector: u8) {
    let error_code = (vector == vector::GENERAL_PROTECTION).then_some(0);
    raise(vcpu, Interruption::exception(vector, error_code));
}

/// Completes the instruction the exit stopped at: RIP past it and, if the
/// guest was single-stepping, the #DB that follows it.
pub(super) fn skip(vcpu: &mut Vcpu, exit: &Exit) {
    let len = u64::from(exit.instruction_length);
    let next = exit.rip.wrapping_add(len);
    // RIP wraps at the mode's width (IP, EIP); within a 64 KiB span it
    // wraps the same in every mode, so only a crossing asks for the mode.
    let next = if (exit.rip ^ next) >> 16 == 0 { next } else { mode(vcpu).next_ip(exit.rip, len) };
    vcpu.set(HvRegisterName::RIP, next, 0);
    if register(vcpu, HvRegisterName::RFLAGS) & RFLAGS_TF != 0 {
        let dr6 = debugreg::dr6_after_debug_exception(register(vcpu, HvRegisterName::DR6), debugreg::DR6_BS);
        vcpu.set(HvRegisterName::DR6, dr6, 0);
        raise(vcpu, Interruption::exception(vector::DEBUG, None));
    }
}

/// The VP's decoding mode, from CR0.PE, RFLAGS.VM, EFER.LMA and CS.
fn mode(vcpu: &mut Vcpu) -> CpuMode {
    let cs = vcpu.get(HvRegisterName::CS).map_or(0, |(_, high)| high);
    let cs = tlfs::HvX64SegmentAttributes::from_bits((cs >> 48) as u16);
    CpuMode::from_state(ModeState {
        cr0_pe: register(vcpu, HvRegisterName::CR0) & x86defs::CR0_PE != 0,
        rflags_vm: register(vcpu, HvRegisterName::RFLAGS) & x86defs::RFLAGS_VM != 0,
        efer_lma: register(vcpu, HvRegisterName::EFER) & x86defs::EFER_LMA != 0,
        cs_l: cs.long(),
        cs_d: cs.default(),
    })
}

/// An IN or OUT (not INS/OUTS) ring 0 answers for the VID: at a port that
/// floats in the partition (`floating`; the access is its first port's,
/// as on ISA), as an empty bus answers, reads all ones, writes dropped; a
/// byte IN at a latched port (`latched`), with its value; a byte OUT at
/// a posted port (`posted`), kept for the VID while there is room. True
/// if it was one (RIP past it; `in eax` zero-extends into RAX, `in
/// al`/`ax` keep the rest).
pub fn port(
    vcpu: &mut Vcpu,
    exit: &Exit,
    floating: &PortSet,
    latched: &PortLatches,
    posted: &mut PostedWrites,
) -> bool {
    let ExitReason::Io(io) = exit.reason else { return false };
    // A string instruction, or one of unknown length, is the VMM's.
    if io.string || exit.instruction_length == 0 {
        return false;
    }
    let read = if floating.holds(io.port, 1) {
        Some(u64::MAX)
    } else if let (IoDirection::In, IoSize::Byte, Some(value)) = (io.direction, io.size, latched.byte(io.port)) {
        Some(u64::from(value))
    } else if let (IoDirection::Out, IoSize::Byte, true) = (io.direction, io.size, posted.posts(io.port))
        && posted.write(io.port, register(vcpu, HvRegisterName::RAX) as u8)
    {
        None
    } else {
        return false;
    };
    if let (IoDirection::In, Some(value)) = (io.direction, read) {
        let rax = register(vcpu, HvRegisterName::RAX);
        let rax = match io.size {
            IoSize::Byte => rax & !0xff | value & 0xff,
            IoSize::Word => rax & !0xffff | value & 0xffff,
            IoSize::Dword => value & 0xffff_ffff,
        };
        vcpu.set(HvRegisterName::RAX, rax, 0);
    }
    skip(vcpu, exit);
    true
}

/// Handles `exit` if it is one of the exits above.
pub fn handle(vcpu: &mut Vcpu, exit: &Exit) {
    match exit.reason {
        ExitReason::Xsetbv => xsetbv(vcpu, exit),
        // The CPU checks the privilege before the intercept: at CPL > 0
        // there is no exit, but should one come, it is the #GP it stands for.
        ExitReason::CacheFlush if vcpu.hw.execution_state().cpl != 0 => fault(vcpu, vector::GENERAL_PROTECTION),
        ExitReason::CacheFlush => skip(vcpu, exit),
        ExitReason::Rdpmc => fault(vcpu, vector::GENERAL_PROTECTION),
        ExitReason::NotOffered => fault(vcpu, vector::INVALID_OPCODE),
        ExitReason::DebugRegister => vcpu.hw.activate_debug_registers(),
        ExitReason::Exception(event) => raise(vcpu, event),
        _ => {}
    }
}

/// Whether `exit` is a WRMSR of a checked address MSR ([`write_address`]).
pub fn is_address_write(vcpu: &mut Vcpu, exit: &Exit) -> bool {
    matches!(exit.reason, ExitReason::Msr { write: true })
        && kerncore::intercept::CHECKED_ADDRESS_MSRS.contains(&(register(vcpu, HvRegisterName::RCX) as u32))
}

/// WRMSR of one of `CHECKED_ADDRESS_MSRS`: #GP(0) for a non-canonical
/// address, else the value written (FS and GS: the segment's base, the
/// rest of the segment unchanged).
pub fn write_address(vcpu: &mut Vcpu, exit: &Exit) {
    use x86defs::msr;
    let number = register(vcpu, HvRegisterName::RCX) as u32;
    let value = register(vcpu, HvRegisterName::RDX) << 32 | register(vcpu, HvRegisterName::RAX) & 0xffff_ffff;
    if !kerncore::paging::is_canonical(value) {
        return fault(vcpu, vector::GENERAL_PROTECTION);
    }
    let plain = |name| Some((name, false));
    let target = match number {
        msr::IA32_FS_BASE => Some((HvRegisterName::FS, true)),
        msr::IA32_GS_BASE => Some((HvRegisterName::GS, true)),
        msr::IA32_KERNEL_GS_BASE => plain(HvRegisterName::KERNEL_GS_BASE),
        msr::IA32_LSTAR => plain(HvRegisterName::LSTAR),
        msr::IA32_CSTAR => plain(HvRegisterName::CSTAR),
        msr::IA32_SYSENTER_ESP => plain(HvRegisterName::SYSENTER_ESP),
        msr::IA32_SYSENTER_EIP => plain(HvRegisterName::SYSENTER_EIP),
        _ => None,
    };
    let written = match target {
        Some((name, true)) => vcpu.get(name).is_some_and(|(_, high)| vcpu.set(name, value, high)),
        Some((name, false)) => vcpu.set(name, value, 0),
        None => false,
    };
    if written { skip(vcpu, exit) } else { fault(vcpu, vector::GENERAL_PROTECTION) }
}

fn xsetbv(vcpu: &mut Vcpu, exit: &Exit) {
    let index = register(vcpu, HvRegisterName::RCX) as u32;
    let value = register(vcpu, HvRegisterName::RDX) << 32 | register(vcpu, HvRegisterName::RAX) & 0xffff_ffff;
    let cpl = vcpu.hw.execution_state().cpl;
    let osxsave = register(vcpu, HvRegisterName::CR4) & CR4_OSXSAVE != 0;
    match kerncore::xstate::xsetbv(index, value, cpl, osxsave, crate::arch::fpu::offered()) {
        Ok(xcr0) => {
            vcpu.hw.set_xcr0(xcr0);
            skip(vcpu, exit);
        }
        Err(XsetbvFault::InvalidOpcode) => fault(vcpu, vector::INVALID_OPCODE),
        Err(XsetbvFault::GeneralProtection) => fault(vcpu, vector::GENERAL_PROTECTION),
    }
}
