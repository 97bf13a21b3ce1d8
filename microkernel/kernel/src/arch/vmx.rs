//! Intel VMX with EPT: the second backend behind `arch::vm` (SDM Vol. 3C,
//! chapters 24-29).
//!
//! - `enable` checks IA32_FEATURE_CONTROL, fits CR0/CR4 to the fixed bits,
//!   works out the execution controls against the capability MSRs
//!   (`kerncore::vmx::ControlCapability::adjust`) and enters VMX operation
//!   with VMXON. It fails, naming what is missing, rather than running
//!   guests half-configured.
//! - Each VP has a VMCS (the frame `VpHardware` owns) and a little software
//!   state here ([`VpState`]): whether it was launched, and the guest state
//!   VMX does not switch (CR2, DR6, IA32_KERNEL_GS_BASE; RAX lives in
//!   [`GuestGprs::rax`]). The VMCS current on this CPU is tracked so that a
//!   VMPTRLD happens only when switching VPs.
//! - Every guest port access, MSR access, CPUID, HLT, CR8 access, external
//!   interrupt and NMI exits, and the VMX-preemption timer ends every run
//!   after about a tick (see [`preemption_timer_value`] for the Bochs quirk
//!   that needs it). Acknowledge-interrupt-on-exit is off: a host interrupt
//!   stays pending in the local APIC until the kernel lets it in after the
//!   exit (`cpu::take_pending_interrupts`), as with SVM.
//! - The guest's CR4 hides VMXE behind the read shadow; its CR0 shows NE,
//!   which VMX requires set (see [`Vmx::cr0_mask`]).
//! - A VMX instruction that fails, or a VM entry that fails, is reported as
//!   `ExitReason::Other` with a code no exit reason has ([`FAILED_INVALID`],
//!   [`FAILED_VALID`], [`FAILED_SETUP`], or the exit-reason field with bit
//!   31 set) and logged on the kernel console; it never panics.
//!
//! Every CPU enables VMX with its own VMXON region ([`enable`]); guests
//! run on the boot CPU only for now, so the current-VMCS pointer and the
//! host state written into a VMCS are the boot CPU's.

use super::gdt::{KERNEL_CODE, KERNEL_DATA};
use super::memory::{self, DirectMap};
use super::vm::{Access, ExecutionState, Exit, ExitReason, GuestGprs};
use core::arch::{asm, global_asm};
use core::mem::offset_of;
use core::sync::atomic::{AtomicU64, Ordering};
use kerncore::debugreg::{self, DR6_INIT, DR7_INIT};
use kerncore::ept::{EptMapper, Eptp};
use kerncore::event::Interruption;
use kerncore::intercept::{REFLECTED_EXCEPTIONS, vector};
use kerncore::slat::{GuestMapError, GuestRights, PhysAddrWidth};
use kerncore::virt::{EptVpidCap, VirtSupport};
use kerncore::vmx::{
    self, ControlCapability, EntryControls, EptViolationQualification, ExitControls, ExitReasonField, InterruptionInfo,
    InterruptionType, IoQualification, PinBasedControls, PrimaryControls, SecondaryControls, VmInstructionError,
    VmcsField, VmxBasic, msr as cap_msr,
};
use platform::println;
use tlfs::{HvRegisterName, HvX64InterruptStateRegister, HvX64SegmentAttributes, HvX64SegmentRegister};
use x86::controlregs::{Cr0, Cr4};
use x86::msr::{
    IA32_EFER, IA32_FEATURE_CONTROL, IA32_FS_BASE, IA32_GS_BASE, IA32_KERNEL_GSBASE, IA32_PAT, IA32_SYSENTER_CS,
    IA32_SYSENTER_EIP, IA32_SYSENTER_ESP, rdmsr, wrmsr,
};
use x86defs::{CR0_ET, CR0_PE, EFER_LMA, RFLAGS_FIXED, RFLAGS_IF, RFLAGS_TF};

pub const IMPLEMENTED: bool = true;

/// `ExitReason::Other` codes for failures that are not VM exits. Exit
/// reasons are 32-bit (a failed VM entry has bit 31 set), so these sit
/// above them. VMfailInvalid: no valid current VMCS.
pub const FAILED_INVALID: u64 = 1 << 32;
/// VMfailValid, ORed with the VM-instruction error number (SDM §31.4).
pub const FAILED_VALID: u64 = 2 << 32;
/// The VP has no usable VMCS: VMX is off, or setting it up failed.
pub const FAILED_SETUP: u64 = 3 << 32;

/// IA32_FEATURE_CONTROL: the lock bit and "VMX outside SMX" (SDM Vol. 3C §24.7).
const FEATURE_CONTROL_LOCKED: u64 = 1 << 0;
const FEATURE_CONTROL_VMX_OUTSIDE_SMX: u64 = 1 << 2;
/// Interruptibility state (SDM §25.4.2): blocking by STI and by MOV SS.
const BLOCKING_BY_STI: u64 = 1 << 0;
const BLOCKING_BY_MOV_SS: u64 = 1 << 1;
/// Access rights (SDM §25.4.1): bits 0-15 as TLFS segment attributes,
/// bit 16 "unusable".
const UNUSABLE: u64 = 1 << 16;
/// The architectural state after INIT: the power-on PAT (RFLAGS: `x86defs`;
/// DR6 and DR7: `kerncore::debugreg`).
const PAT_INIT: u64 = 0x0007_0406_0007_0406;
/// CR0 after INIT: only ET.
const CR0_INIT: u64 = CR0_ET;
/// INVEPT and INVVPID types (SDM Vol. 3C §30.3).
const INVEPT_SINGLE_CONTEXT: u64 = 1;
const INVEPT_ALL_CONTEXT: u64 = 2;
const INVVPID_SINGLE_CONTEXT: u64 = 1;
const INVVPID_ALL_CONTEXT: u64 = 2;

/// How a VMX instruction failed (SDM Vol. 3C §31.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VmFail {
    /// CF: there is no valid current VMCS (or the operand was unusable).
    Invalid,
    /// ZF: the current VMCS's VM-instruction error field says why.
    Valid(VmInstructionError),
}

impl VmFail {
    fn code(self) -> u64 {
        match self {
            VmFail::Invalid => FAILED_INVALID,
            VmFail::Valid(error) => FAILED_VALID | u64::from(error.0),
        }
    }
}

// ---------------------------------------------------------------------------
// VMX instructions. Each captures CF and ZF in the same asm block as the
// instruction, so no compiler-generated code can clobber them in between.

/// Turns the flags after a VMX instruction into its outcome.
fn outcome(cf: u8, zf: u8) -> Result<(), VmFail> {
    if cf != 0 {
        Err(VmFail::Invalid)
    } else if zf != 0 {
        Err(VmFail::Valid(instruction_error()))
    } else {
        Ok(())
    }
}

/// The VM-instruction error of the current VMCS.
fn instruction_error() -> VmInstructionError {
    let (value, cf, zf) = vmread_raw(VmcsField::VM_INSTRUCTION_ERROR.0);
    VmInstructionError(if cf == 0 && zf == 0 { value as u32 } else { 0 })
}

fn vmread_raw(field: u32) -> (u64, u8, u8) {
    let (value, cf, zf): (u64, u8, u8);
    // SAFETY: only called after `enable` (VMX operation is on, CPL 0).
    // VMREAD reads the current VMCS into a register; with no current VMCS
    // or an unsupported field it fails and sets the flags captured here.
    unsafe {
        asm!(
            "vmread {value}, {field}",
            "setc {cf}",
            "setz {zf}",
            field = in(reg) u64::from(field),
            value = out(reg) value,
            cf = out(reg_byte) cf,
            zf = out(reg_byte) zf,
            options(nostack),
        );
    }
    (value, cf, zf)
}

fn vmread(field: VmcsField) -> Result<u64, VmFail> {
    let (value, cf, zf) = vmread_raw(field.0);
    outcome(cf, zf).map(|()| value)
}

fn vmwrite(field: VmcsField, value: u64) -> Result<(), VmFail> {
    let (cf, zf): (u8, u8);
    // SAFETY: only called after `enable`. VMWRITE changes the current
    // VMCS, which belongs to the VP being set up or run; a field the CPU
    // lacks, or a read-only one, makes it fail with the flags captured.
    unsafe {
        asm!(
            "vmwrite {field}, {value}",
            "setc {cf}",
            "setz {zf}",
            field = in(reg) u64::from(field.0),
            value = in(reg) value,
            cf = out(reg_byte) cf,
            zf = out(reg_byte) zf,
            options(nostack),
        );
    }
    outcome(cf, zf)
}

/// VMXON, VMCLEAR or VMPTRLD of the region at physical `region`.
macro_rules! vmx_pointer_instruction {
    ($name:ident, $mnemonic:literal, $what:literal) => {
        #[doc = $what]
        fn $name(region: u64) -> Result<(), VmFail> {
            let (cf, zf): (u8, u8);
            // SAFETY: CPL 0, CR4.VMXE set (VMXON) or VMX operation on (the
            // others). `region` is a page-aligned frame the kernel owns for
            // the purpose (a VMXON region or a VP's VMCS) with the VMCS
            // revision identifier in its first word; the instruction reads
            // the 64-bit operand holding its address from our stack.
            unsafe {
                asm!(
                    concat!($mnemonic, " qword ptr [{pointer}]"),
                    "setc {cf}",
                    "setz {zf}",
                    pointer = in(reg) &region,
                    cf = out(reg_byte) cf,
                    zf = out(reg_byte) zf,
                    options(nostack),
                );
            }
            outcome(cf, zf)
        }
    };
}

vmx_pointer_instruction!(vmxon, "vmxon", "Enters VMX operation with the VMXON region `region`.");
vmx_pointer_instruction!(vmclear, "vmclear", "Flushes VMCS `region` to memory, clear and not current.");
vmx_pointer_instruction!(vmptrld, "vmptrld", "Makes VMCS `region` the current VMCS.");

/// The 128-bit descriptor of INVEPT and INVVPID.
#[repr(C, align(16))]
struct InvalidationDescriptor([u64; 2]);

/// Defines an INVEPT-style instruction wrapper: `kind` is the invalidation
/// type, `tag` the first descriptor word (an EPTP or a VPID).
macro_rules! vmx_invalidation_instruction {
    ($name:ident, $mnemonic:literal, $doc:literal) => {
        #[doc = $doc]
        fn $name(kind: u64, tag: u64) -> Result<(), VmFail> {
            let descriptor = InvalidationDescriptor([tag, 0]);
            let (cf, zf): (u8, u8);
            // SAFETY: VMX operation is on; the instruction only invalidates
            // cached translations (EPT-derived, or linear tagged with a
            // VPID) of a type `enable` found supported, reading its 128-bit
            // descriptor from our stack.
            unsafe {
                asm!(
                    concat!($mnemonic, " {kind}, xmmword ptr [{descriptor}]"),
                    "setc {cf}",
                    "setz {zf}",
                    kind = in(reg) kind,
                    descriptor = in(reg) &descriptor,
                    cf = out(reg_byte) cf,
                    zf = out(reg_byte) zf,
                    options(nostack),
                );
            }
            outcome(cf, zf)
        }
    };
}

vmx_invalidation_instruction!(invept, "invept", "Invalidates translations derived from EPT `tag` (an EPTP).");
vmx_invalidation_instruction!(invvpid, "invvpid", "Invalidates linear translations tagged with VPID `tag`.");

fn read_msr(index: u32) -> u64 {
    // SAFETY: only MSRs every VMX-capable x86-64 CPU has: the
    // architectural ones (EFER, PAT, FS/GS bases, SYSENTER, feature
    // control) and the VMX capability MSRs, read only on a CPU whose CPUID
    // reports VMX (`vm::backend` chose VMX), PROCBASED_CTLS2 only because
    // EPT is usable and so secondary controls exist.
    unsafe { rdmsr(index) }
}

// ---------------------------------------------------------------------------
// The world switch.
//
// vmx_world_switch(gprs: *mut GuestGprs, resume: u64) -> u64
//   Saves the callee-saved registers and the GDTR/IDTR (a VM exit leaves
//   their limits at 0xffff), stores RSP into HOST_RSP, loads the guest's
//   general registers and enters the guest with VMLAUNCH (resume = 0) or
//   VMRESUME. Returns 0 after a VM exit, 1 if the instruction failed with
//   VMfailInvalid, 2 with VMfailValid. Entered with interrupts off; a VM
//   exit leaves RFLAGS = 2, so they stay off.
// vmx_vm_exit: HOST_RIP. RSP is what was stored in HOST_RSP, where the
//   GuestGprs pointer was pushed.
global_asm!(
    r#"
    .section .text
    .global vmx_world_switch
    .global vmx_vm_exit
vmx_world_switch:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    sub rsp, 32
    sgdt [rsp]
    sidt [rsp + 16]
    push rdi
    mov rax, {host_rsp}
    vmwrite rax, rsp
    jbe 3f
    /* Clear CPU buffers (MDS) where needed: after the last access to host
       data but the guest's own registers, and before `test` (VERW
       clobbers ZF). */
    cmp byte ptr [rip + {verw_on}], 0
    je 6f
    verw word ptr [rip + {verw_selector}]
6:
    test rsi, rsi
    mov rax, rdi
    mov rbx, [rax + {rbx}]
    mov rcx, [rax + {rcx}]
    mov rdx, [rax + {rdx}]
    mov rsi, [rax + {rsi}]
    mov rdi, [rax + {rdi}]
    mov rbp, [rax + {rbp}]
    mov r8, [rax + {r8}]
    mov r9, [rax + {r9}]
    mov r10, [rax + {r10}]
    mov r11, [rax + {r11}]
    mov r12, [rax + {r12}]
    mov r13, [rax + {r13}]
    mov r14, [rax + {r14}]
    mov r15, [rax + {r15}]
    mov rax, [rax + {rax}]
    /* The flags are still those of `test rsi, rsi`. */
    jnz 2f
    vmlaunch
    jmp 3f
2:
    vmresume
3:
    /* VMLAUNCH, VMRESUME or the VMWRITE failed: CF or ZF says how. */
    mov eax, 1
    jc 4f
    mov eax, 2
4:
    add rsp, 8
    jmp 5f

vmx_vm_exit:
    push rdi
    mov rdi, [rsp + 8]
    mov [rdi + {rax}], rax
    mov [rdi + {rbx}], rbx
    mov [rdi + {rcx}], rcx
    mov [rdi + {rdx}], rdx
    mov [rdi + {rsi}], rsi
    mov [rdi + {rbp}], rbp
    mov [rdi + {r8}], r8
    mov [rdi + {r9}], r9
    mov [rdi + {r10}], r10
    mov [rdi + {r11}], r11
    mov [rdi + {r12}], r12
    mov [rdi + {r13}], r13
    mov [rdi + {r14}], r14
    mov [rdi + {r15}], r15
    pop rax
    mov [rdi + {rdi}], rax
    add rsp, 8
    /* No return target the guest left in the RSB may steer the host's
       returns: fill it before the first RET. */
"#,
    super::speculation::rsb_fill!(),
    r#"
    xor eax, eax
5:
    lgdt [rsp]
    lidt [rsp + 16]
    add rsp, 32
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret
"#,
    host_rsp = const VmcsField::HOST_RSP.0,
    verw_on = sym super::speculation::VERW_ON_VM_ENTRY,
    verw_selector = sym super::speculation::VERW_SELECTOR,
    rax = const offset_of!(GuestGprs, rax),
    rbx = const offset_of!(GuestGprs, rbx),
    rcx = const offset_of!(GuestGprs, rcx),
    rdx = const offset_of!(GuestGprs, rdx),
    rsi = const offset_of!(GuestGprs, rsi),
    rdi = const offset_of!(GuestGprs, rdi),
    rbp = const offset_of!(GuestGprs, rbp),
    r8 = const offset_of!(GuestGprs, r8),
    r9 = const offset_of!(GuestGprs, r9),
    r10 = const offset_of!(GuestGprs, r10),
    r11 = const offset_of!(GuestGprs, r11),
    r12 = const offset_of!(GuestGprs, r12),
    r13 = const offset_of!(GuestGprs, r13),
    r14 = const offset_of!(GuestGprs, r14),
    r15 = const offset_of!(GuestGprs, r15),
);

unsafe extern "C" {
    fn vmx_world_switch(gprs: *mut GuestGprs, resume: u64) -> u64;
    /// Not a function: the host RIP of every VM exit. Only its address is taken.
    fn vmx_vm_exit();
}

// ---------------------------------------------------------------------------
// This CPU's VMX state.

/// The controls every VMCS gets, fitted to this CPU.
#[derive(Clone, Copy)]
struct Controls {
    pin: PinBasedControls,
    primary: PrimaryControls,
    secondary: SecondaryControls,
    exit: ExitControls,
    entry: EntryControls,
}

/// What `enable` found and set up.
struct Vmx {
    revision: u32,
    controls: Controls,
    cr0_fixed: (u64, u64),
    cr4_fixed: (u64, u64),
    /// All ones: every RDMSR and WRMSR exits.
    msr_bitmap: u64,
    /// The INVEPT type to flush one EPT hierarchy with.
    invept: u64,
    /// The INVVPID type to flush one VPID with, if VPIDs are on.
    invvpid: Option<u64>,
    /// The VMX-preemption timer value every entry starts with (about one
    /// kernel tick), if the CPU has the timer.
    preemption_timer: Option<u32>,
}

impl Vmx {
    /// CR0 bits the host owns: those fixed to 0. The guest reads them from
    /// the read shadow; writing a value that differs there exits.
    ///
    /// The bits fixed to 1 (NE; PE and PG are free for an unrestricted
    /// guest) are left to the guest: it sees CR0.NE set, and clearing it
    /// raises #GP. Shadowing NE too would make every CR0 write of a guest
    /// that sets NE (Linux does) exit, and emulating those writes (EFER.LMA,
    /// PAE PDPTEs) is not done in ring 0 yet.
    fn cr0_mask(&self) -> u64 {
        !self.cr0_fixed.1
    }

    /// CR4 bits the host owns: VMXE (fixed to 1, but the guest reads 0
    /// and may write 0 without an exit) and those fixed to 0.
    fn cr4_mask(&self) -> u64 {
        self.cr4_fixed.0 | !self.cr4_fixed.1
    }

    /// The CR0 the guest runs with when it asks for `value`.
    fn guest_cr0(&self, value: u64) -> u64 {
        let free = (Cr0::CR0_PROTECTED_MODE | Cr0::CR0_ENABLE_PAGING).bits() as u64;
        (vmx::apply_fixed_bits(value, self.cr0_fixed.0, self.cr0_fixed.1) & !free) | (value & free)
    }

    fn guest_cr4(&self, value: u64) -> u64 {
        vmx::apply_fixed_bits(value, self.cr4_fixed.0, self.cr4_fixed.1)
    }
}

static VMX: spin::Once<Vmx> = spin::Once::new();

/// The VMCS current on this CPU (0: none), and the one that last ran.
static CURRENT: AtomicU64 = AtomicU64::new(0);
static LAST_RUN: AtomicU64 = AtomicU64::new(0);

/// Software state of a VP's VMCS.
#[derive(Clone, Copy)]
struct VpState {
    vmcs: u64,
    /// VMLAUNCH succeeded since the last VMCLEAR: the next entry is VMRESUME.
    launched: bool,
    /// Setting the VMCS up failed with this code: the VP cannot run.
    broken: Option<u64>,
    eptp: u64,
    vpid: u16,
    /// Guest state VMX does not switch, loaded around each entry.
    cr2: u64,
    dr6: u64,
    kernel_gs_base: u64,
    /// The guest's STAR, LSTAR, CSTAR and SFMASK.
    syscall: [u64; 4],
}

/// STAR, LSTAR, CSTAR, SFMASK: the MSRs of SYSCALL, in `VpState::syscall` order.
const SYSCALL_MSRS: [u32; 4] = [cap_msr::IA32_STAR, cap_msr::IA32_LSTAR, cap_msr::IA32_CSTAR, cap_msr::IA32_FMASK];

static VPS: spin::Mutex<heapless::Vec<VpState, { crate::object::vm::MAX_VP_OBJECTS }>> =
    spin::Mutex::new(heapless::Vec::new());

fn state_of(vmcs: u64) -> Option<VpState> {
    VPS.lock().iter().find(|s| s.vmcs == vmcs).copied()
}

/// Changes the software state of `vmcs`; false if there is none.
fn update_state(vmcs: u64, f: impl FnOnce(&mut VpState)) -> bool {
    VPS.lock().iter_mut().find(|s| s.vmcs == vmcs).map(f).is_some()
}

/// Makes `vmcs` current on this CPU (VMPTRLD only when it is not).
fn make_current(vmcs: u64) -> Result<(), VmFail> {
    if CURRENT.load(Ordering::Relaxed) != vmcs {
        vmptrld(vmcs)?;
        CURRENT.store(vmcs, Ordering::Relaxed);
    }
    Ok(())
}

/// A VMX-capable CPU's EPT/VPID capabilities, as detected at boot.
fn ept_vpid_caps() -> EptVpidCap {
    match crate::boot::virt_support() {
        Some(VirtSupport::Vmx(v)) => v.ept_vpid.unwrap_or_default(),
        _ => EptVpidCap::new(),
    }
}

/// Reads a control capability MSR and fits `required` (and what the CPU
/// forces) to it.
fn fit<T>(msr: u32, required: T) -> Result<T, &'static str>
where
    T: From<u32>,
    u32: From<T>,
{
    ControlCapability(read_msr(msr)).adjust(required, T::from(0)).map_err(|missing| {
        println!("vmx: capability MSR {msr:#x} lacks required controls {:#x}", missing.missing);
        "the CPU lacks a VMX control the kernel needs"
    })
}

/// Each CPU's VMXON region (by `percpu::index`), 0 until VMX is on there.
static VMXON_REGIONS: [AtomicU64; super::smp::MAX_CPUS] = [const { AtomicU64::new(0) }; super::smp::MAX_CPUS];

/// Turns VMX on for this CPU: the controls once for all CPUs, then this
/// CPU's VMXON region and VMXON. Idempotent.
pub fn enable() -> Result<(), &'static str> {
    let cpu = super::percpu::index();
    if VMXON_REGIONS[cpu].load(Ordering::Relaxed) != 0 {
        return Ok(());
    }
    let control = read_msr(IA32_FEATURE_CONTROL);
    if control & FEATURE_CONTROL_LOCKED == 0 || control & FEATURE_CONTROL_VMX_OUTSIDE_SMX == 0 {
        return Err("IA32_FEATURE_CONTROL is not locked with VMX enabled");
    }
    let vmx = VMX.try_call_once(configure)?;
    let vmxon_region = memory::alloc_frames(1).ok_or("out of memory for VMX host state")?;
    memory::write_phys(vmxon_region.start(), &vmx.revision.to_le_bytes());
    let (cr0_fixed, cr4_fixed) = (vmx.cr0_fixed, vmx.cr4_fixed);
    // SAFETY: CR0 and CR4 get the bits VMX operation requires (SDM A.7,
    // A.8) on top of the kernel's own: CR4.VMXE and, at most, CR0.NE,
    // which only selects native x87 error reporting (the kernel uses no
    // x87). Nothing else changes: the fixed-1 masks allow every bit the
    // kernel sets.
    unsafe {
        let cr4 = x86::controlregs::cr4().bits() as u64 | Cr4::CR4_ENABLE_VMX.bits() as u64;
        x86::controlregs::cr4_write(Cr4::from_bits_truncate(
            vmx::apply_fixed_bits(cr4, cr4_fixed.0, cr4_fixed.1) as usize
        ));
        let cr0 = x86::controlregs::cr0().bits() as u64;
        x86::controlregs::cr0_write(Cr0::from_bits_truncate(
            vmx::apply_fixed_bits(cr0, cr0_fixed.0, cr0_fixed.1) as usize
        ));
    }
    if let Err(e) = vmxon(vmxon_region.start()) {
        println!("vmx: VMXON failed: {e:?}");
        memory::free_frames(vmxon_region);
        return Err("VMXON failed");
    }
    VMXON_REGIONS[cpu].store(vmxon_region.leak(), Ordering::Relaxed);
    Ok(())
}

/// The controls, the fixed CR bits and the MSR bitmap every CPU shares,
/// fitted to the capability MSRs (the same on every CPU).
fn configure() -> Result<Vmx, &'static str> {
    let basic = VmxBasic::from(read_msr(cap_msr::IA32_VMX_BASIC));
    if basic.vmcs_size() > 4096 || basic.vmcs_memory_type() != 6 || basic.physical_address_32bit() {
        return Err("the VMCS needs more than a write-back 4 KiB frame");
    }
    let (pin_msr, primary_msr, exit_msr, entry_msr) = if basic.true_controls() {
        (
            cap_msr::IA32_VMX_TRUE_PINBASED_CTLS,
            cap_msr::IA32_VMX_TRUE_PROCBASED_CTLS,
            cap_msr::IA32_VMX_TRUE_EXIT_CTLS,
            cap_msr::IA32_VMX_TRUE_ENTRY_CTLS,
        )
    } else {
        (
            cap_msr::IA32_VMX_PINBASED_CTLS,
            cap_msr::IA32_VMX_PROCBASED_CTLS,
            cap_msr::IA32_VMX_EXIT_CTLS,
            cap_msr::IA32_VMX_ENTRY_CTLS,
        )
    };
    // The preemption timer, where there is one, bounds every guest run to
    // about a tick (see `preemption_timer_value`). Virtual NMIs keep the
    // guest's NMI blocking (after an NMI the VMM injected, until its IRET)
    // apart from the host's: without them that blocking would hold off the
    // host's own NMIs for as long as the guest runs (SDM §26.6.1).
    let pin = ControlCapability(read_msr(pin_msr))
        .adjust(
            PinBasedControls::new()
                .with_external_interrupt_exiting(true)
                .with_nmi_exiting(true)
                .with_virtual_nmis(true),
            PinBasedControls::new().with_activate_preemption_timer(true),
        )
        .map_err(|_| "the CPU lacks external-interrupt or NMI exiting, or virtual NMIs")?;
    // CR8 accesses exit: without a TPR shadow a 64-bit guest would write
    // the host's own APIC TPR and could hold off every host interrupt. As
    // under SVM, RDPMC, MONITOR, MWAIT and debug-register accesses (until
    // the VP's first, see `dr`) exit, and so do XSETBV and INVD (always)
    // and WBINVD.
    let primary = fit(
        primary_msr,
        PrimaryControls::new()
            .with_hlt_exiting(true)
            .with_rdpmc_exiting(true)
            .with_monitor_exiting(true)
            .with_mwait_exiting(true)
            .with_mov_dr_exiting(true)
            .with_cr8_load_exiting(true)
            .with_cr8_store_exiting(true)
            .with_unconditional_io_exiting(true)
            .with_use_msr_bitmaps(true)
            .with_activate_secondary_controls(true),
    )?;
    let caps = ept_vpid_caps();
    let secondary_cap = ControlCapability(read_msr(cap_msr::IA32_VMX_PROCBASED_CTLS2));
    let invvpid = if caps.invvpid_single_context() {
        Some(INVVPID_SINGLE_CONTEXT)
    } else if caps.invvpid_all_context() {
        Some(INVVPID_ALL_CONTEXT)
    } else {
        None
    };
    // VPIDs only where INVVPID can flush them. RDTSCP and INVPCID raise
    // #UD in a guest unless enabled; they run natively, as under SVM.
    let secondary = secondary_cap
        .adjust(
            SecondaryControls::new().with_enable_ept(true).with_unrestricted_guest(true).with_wbinvd_exiting(true),
            SecondaryControls::new()
                .with_enable_vpid(invvpid.is_some())
                .with_enable_rdtscp(true)
                .with_enable_invpcid(true),
        )
        .map_err(|_| "the CPU lacks EPT, unrestricted guest or WBINVD exiting")?;
    let exit = fit(
        exit_msr,
        ExitControls::new()
            .with_host_address_space_size(true)
            .with_save_debug_controls(true)
            .with_save_ia32_pat(true)
            .with_load_ia32_pat(true)
            .with_save_ia32_efer(true)
            .with_load_ia32_efer(true),
    )?;
    let entry = fit(
        entry_msr,
        EntryControls::new().with_load_debug_controls(true).with_load_ia32_pat(true).with_load_ia32_efer(true),
    )?;
    if exit.acknowledge_interrupt_on_exit() || primary.use_io_bitmaps() || entry.ia32e_mode_guest() {
        return Err("the CPU forces a VMX control the kernel cannot use");
    }
    let invept = if caps.invept_single_context() {
        INVEPT_SINGLE_CONTEXT
    } else if caps.invept_all_context() {
        INVEPT_ALL_CONTEXT
    } else {
        return Err("the CPU has no INVEPT type the kernel can use");
    };
    let cr0_fixed = (read_msr(cap_msr::IA32_VMX_CR0_FIXED0), read_msr(cap_msr::IA32_VMX_CR0_FIXED1));
    let cr4_fixed = (read_msr(cap_msr::IA32_VMX_CR4_FIXED0), read_msr(cap_msr::IA32_VMX_CR4_FIXED1));

    let msr_bitmap = memory::alloc_frames(1).ok_or("out of memory for VMX host state")?;
    memory::fill_phys(msr_bitmap.start(), msr_bitmap.len_bytes(), 0xff);
    // The syscall and segment-base MSRs are the guest's own: the VMCS
    // switches the SYSENTER and FS/GS bases, `world_switch` the rest.
    for msr in kerncore::intercept::PASS_THROUGH_MSRS {
        if let Some((read, write, bit)) = kerncore::intercept::vmx_msr_bitmap_bit(msr) {
            for byte in [read, write] {
                let mut b = [0u8];
                memory::read_phys(msr_bitmap.start() + byte as u64, &mut b);
                memory::write_phys(msr_bitmap.start() + byte as u64, &[b[0] & !(1 << bit)]);
            }
        }
    }
    let revision = basic.vmcs_revision();
    let msr_bitmap = msr_bitmap.leak();
    let preemption_timer = pin.activate_preemption_timer().then(preemption_timer_value);
    Ok(Vmx {
        revision,
        controls: Controls { pin, primary, secondary, exit, entry },
        cr0_fixed,
        cr4_fixed,
        msr_bitmap,
        invept,
        invvpid: invvpid.filter(|_| secondary.enable_vpid()),
        preemption_timer,
    })
}

/// The VMX-preemption timer value for about one kernel tick: the TSC is
/// measured against the PIT, and the timer counts down once every 2^N TSC
/// cycles, N from IA32_VMX_MISC bits 4:0 (SDM §26.5.1, A.6).
///
/// External-interrupt exiting alone should give ring 0 every host
/// interrupt, but Bochs 2.7 re-evaluates which events are masked only when
/// RFLAGS.IF changes, and its VM entry loads the guest's RFLAGS before it
/// enters non-root operation: a guest entered with IF clear takes no
/// external-interrupt exit until it touches IF (a guest spinning with
/// interrupts off would hold the CPU for good). The timer bounds every
/// run, so the kernel sees its tick whatever the guest does.
fn preemption_timer_value() -> u32 {
    const SAMPLE_US: u64 = 10_000;
    let mut start = 0;
    super::pit::one_shot(SAMPLE_US, || start = super::cpu::timestamp());
    let cycles = super::cpu::timestamp().wrapping_sub(start);
    let per_tick = cycles.saturating_mul(1_000_000) / (SAMPLE_US * super::apic::TICK_HZ);
    let rate = read_msr(cap_msr::IA32_VMX_MISC) & 0x1f;
    u32::try_from(per_tick >> rate).unwrap_or(u32::MAX).max(1)
}

// ---------------------------------------------------------------------------
// Setting up a VMCS.

/// VMWRITEs that remember the first failure instead of stopping.
struct Writer(Result<(), (VmcsField, VmFail)>);

impl Writer {
    fn put(&mut self, field: VmcsField, value: u64) {
        if let Err(e) = vmwrite(field, value)
            && self.0.is_ok()
        {
            self.0 = Err((field, e));
        }
    }
}

/// A guest segment register's VMCS fields: selector, base, limit, access rights.
struct SegmentFields {
    selector: VmcsField,
    base: VmcsField,
    limit: VmcsField,
    access_rights: VmcsField,
}

fn segment_fields(name: HvRegisterName) -> Option<SegmentFields> {
    use VmcsField as F;
    let (selector, base, limit, access_rights) = match name {
        HvRegisterName::ES => (F::GUEST_ES_SELECTOR, F::GUEST_ES_BASE, F::GUEST_ES_LIMIT, F::GUEST_ES_ACCESS_RIGHTS),
        HvRegisterName::CS => (F::GUEST_CS_SELECTOR, F::GUEST_CS_BASE, F::GUEST_CS_LIMIT, F::GUEST_CS_ACCESS_RIGHTS),
        HvRegisterName::SS => (F::GUEST_SS_SELECTOR, F::GUEST_SS_BASE, F::GUEST_SS_LIMIT, F::GUEST_SS_ACCESS_RIGHTS),
        HvRegisterName::DS => (F::GUEST_DS_SELECTOR, F::GUEST_DS_BASE, F::GUEST_DS_LIMIT, F::GUEST_DS_ACCESS_RIGHTS),
        HvRegisterName::FS => (F::GUEST_FS_SELECTOR, F::GUEST_FS_BASE, F::GUEST_FS_LIMIT, F::GUEST_FS_ACCESS_RIGHTS),
        HvRegisterName::GS => (F::GUEST_GS_SELECTOR, F::GUEST_GS_BASE, F::GUEST_GS_LIMIT, F::GUEST_GS_ACCESS_RIGHTS),
        HvRegisterName::LDTR => {
            (F::GUEST_LDTR_SELECTOR, F::GUEST_LDTR_BASE, F::GUEST_LDTR_LIMIT, F::GUEST_LDTR_ACCESS_RIGHTS)
        }
        HvRegisterName::TR => (F::GUEST_TR_SELECTOR, F::GUEST_TR_BASE, F::GUEST_TR_LIMIT, F::GUEST_TR_ACCESS_RIGHTS),
        _ => return None,
    };
    Some(SegmentFields { selector, base, limit, access_rights })
}

/// The VMCS access rights of TLFS attributes. TLFS has no "unusable": a
/// segment that is not present is unusable.
fn access_rights_from_tlfs(attributes: HvX64SegmentAttributes) -> u64 {
    let rights = u64::from(attributes.with_reserved(0).into_bits());
    if attributes.present() { rights } else { rights | UNUSABLE }
}

/// TLFS attributes of VMCS access rights; an unusable segment is not present.
fn access_rights_to_tlfs(rights: u64) -> HvX64SegmentAttributes {
    let attributes = HvX64SegmentAttributes::from_bits(rights as u16).with_reserved(0);
    if rights & UNUSABLE != 0 { attributes.with_present(false) } else { attributes }
}

/// Attributes of a present segment: `segment_type`, code/data or system.
fn present(segment_type: u8, code_or_data: bool) -> HvX64SegmentAttributes {
    HvX64SegmentAttributes::new()
        .with_segment_type(segment_type)
        .with_non_system_segment(code_or_data)
        .with_present(true)
}

/// The base of the TSS the current TR selects, from its GDT descriptor.
fn tss_base(gdt_base: u64, tr: u16) -> u64 {
    let at = gdt_base + u64::from(tr & !7);
    // SAFETY: TR selects the kernel's TSS descriptor (16 bytes in 64-bit
    // mode) in the loaded GDT, a kernel static that stays mapped; reading
    // it has no side effects.
    let (low, high) =
        unsafe { (core::ptr::read_volatile(at as *const u64), core::ptr::read_volatile((at + 8) as *const u64)) };
    ((low >> 16) & 0xff_ffff) | (((low >> 56) & 0xff) << 24) | ((high & 0xffff_ffff) << 32)
}

/// This CPU's state to return to on every VM exit (SDM §25.5). HOST_CR3
/// is rewritten before each entry (the kernel switches address spaces)
/// and HOST_RSP inside the world switch.
fn write_host_state(w: &mut Writer) {
    use VmcsField as F;
    let mut gdtr = x86::dtables::DescriptorTablePointer::<u64>::default();
    let mut idtr = x86::dtables::DescriptorTablePointer::<u64>::default();
    // SAFETY: SGDT, SIDT and STR only store the descriptor-table registers
    // and the TR selector; the pointers are to locals.
    let tr = unsafe {
        x86::dtables::sgdt(&mut gdtr);
        x86::dtables::sidt(&mut idtr);
        x86::task::tr().bits()
    };
    let (gdt_base, idt_base) = (gdtr.base as u64, idtr.base as u64);
    // SAFETY: reading control registers has no side effects.
    let (cr0, cr4) = unsafe { (x86::controlregs::cr0().bits() as u64, x86::controlregs::cr4().bits() as u64) };
    w.put(F::HOST_CR0, cr0);
    w.put(F::HOST_CR3, super::cpu::cr3());
    w.put(F::HOST_CR4, cr4);
    w.put(F::HOST_CS_SELECTOR, u64::from(KERNEL_CODE.bits()));
    for field in [F::HOST_SS_SELECTOR, F::HOST_DS_SELECTOR, F::HOST_ES_SELECTOR] {
        w.put(field, u64::from(KERNEL_DATA.bits()));
    }
    w.put(F::HOST_FS_SELECTOR, 0);
    w.put(F::HOST_GS_SELECTOR, 0);
    w.put(F::HOST_TR_SELECTOR, u64::from(tr));
    w.put(F::HOST_FS_BASE, read_msr(IA32_FS_BASE));
    // The per-CPU pointer: ring 0 runs with it in GS.
    w.put(F::HOST_GS_BASE, read_msr(IA32_GS_BASE));
    w.put(F::HOST_TR_BASE, tss_base(gdt_base, tr));
    w.put(F::HOST_GDTR_BASE, gdt_base);
    w.put(F::HOST_IDTR_BASE, idt_base);
    w.put(F::HOST_IA32_SYSENTER_CS, read_msr(IA32_SYSENTER_CS));
    w.put(F::HOST_IA32_SYSENTER_ESP, read_msr(IA32_SYSENTER_ESP));
    w.put(F::HOST_IA32_SYSENTER_EIP, read_msr(IA32_SYSENTER_EIP));
    w.put(F::HOST_IA32_EFER, read_msr(IA32_EFER));
    w.put(F::HOST_IA32_PAT, read_msr(IA32_PAT));
    w.put(F::HOST_RIP, vmx_vm_exit as *const () as u64);
}

/// Execution controls, EPT and VPID (SDM §25.6).
fn write_controls(w: &mut Writer, vmx: &Vmx, eptp: u64, vpid: u16) {
    use VmcsField as F;
    let c = vmx.controls;
    w.put(F::PIN_BASED_CONTROLS, u64::from(u32::from(c.pin)));
    w.put(F::PRIMARY_PROCESSOR_BASED_CONTROLS, u64::from(u32::from(c.primary)));
    w.put(F::SECONDARY_PROCESSOR_BASED_CONTROLS, u64::from(u32::from(c.secondary)));
    w.put(F::VM_EXIT_CONTROLS, u64::from(u32::from(c.exit)));
    w.put(F::VM_ENTRY_CONTROLS, u64::from(u32::from(c.entry)));
    // #DB and #AC are reflected from ring 0; a machine check is the host's
    // business, never the guest's.
    w.put(F::EXCEPTION_BITMAP, u64::from(REFLECTED_EXCEPTIONS) | 1 << kerncore::mce::VECTOR);
    for field in [
        F::PAGE_FAULT_ERROR_CODE_MASK,
        F::PAGE_FAULT_ERROR_CODE_MATCH,
        F::CR3_TARGET_COUNT,
        F::VM_EXIT_MSR_STORE_COUNT,
        F::VM_EXIT_MSR_LOAD_COUNT,
        F::VM_ENTRY_MSR_LOAD_COUNT,
        F::VM_ENTRY_INTERRUPTION_INFORMATION,
        F::TSC_OFFSET,
    ] {
        w.put(field, 0);
    }
    w.put(F::MSR_BITMAP, vmx.msr_bitmap);
    w.put(F::EPT_POINTER, eptp);
    if c.secondary.enable_vpid() {
        w.put(F::VIRTUAL_PROCESSOR_ID, u64::from(vpid));
    }
    // Without "save VMX-preemption timer value", every entry starts afresh.
    if let Some(value) = vmx.preemption_timer {
        w.put(F::VMX_PREEMPTION_TIMER_VALUE, u64::from(value));
    }
    w.put(F::CR0_GUEST_HOST_MASK, vmx.cr0_mask());
    w.put(F::CR4_GUEST_HOST_MASK, vmx.cr4_mask());
}

/// The architectural state after INIT, in real mode at 0000:0000 (the VMM
/// sets the real starting state), as `svm::init_vmcb` gives it.
fn write_guest_state(w: &mut Writer, vmx: &Vmx) {
    use VmcsField as F;
    let data = present(3, true);
    for name in [
        HvRegisterName::ES,
        HvRegisterName::CS,
        HvRegisterName::SS,
        HvRegisterName::DS,
        HvRegisterName::FS,
        HvRegisterName::GS,
        HvRegisterName::LDTR,
        HvRegisterName::TR,
    ] {
        // Read/write data (type 3), execute/read code (11), LDT (2), busy
        // TSS (11: VM entry wants a busy TSS), flat 64 KiB at 0.
        let attributes = match name {
            HvRegisterName::CS => present(11, true),
            HvRegisterName::LDTR => present(2, false),
            HvRegisterName::TR => present(11, false),
            _ => data,
        };
        if let Some(f) = segment_fields(name) {
            w.put(f.selector, 0);
            w.put(f.base, 0);
            w.put(f.limit, 0xffff);
            w.put(f.access_rights, access_rights_from_tlfs(attributes));
        }
    }
    for (base, limit) in [(F::GUEST_GDTR_BASE, F::GUEST_GDTR_LIMIT), (F::GUEST_IDTR_BASE, F::GUEST_IDTR_LIMIT)] {
        w.put(base, 0);
        w.put(limit, 0xffff);
    }
    w.put(F::GUEST_CR0, vmx.guest_cr0(CR0_INIT));
    w.put(F::CR0_READ_SHADOW, CR0_INIT);
    w.put(F::GUEST_CR3, 0);
    w.put(F::GUEST_CR4, vmx.guest_cr4(0));
    w.put(F::CR4_READ_SHADOW, 0);
    w.put(F::GUEST_DR7, DR7_INIT);
    w.put(F::GUEST_RSP, 0);
    w.put(F::GUEST_RIP, 0);
    w.put(F::GUEST_RFLAGS, RFLAGS_FIXED);
    for field in [
        F::GUEST_PENDING_DEBUG_EXCEPTIONS,
        F::GUEST_INTERRUPTIBILITY_STATE,
        F::GUEST_ACTIVITY_STATE,
        F::GUEST_IA32_SYSENTER_CS,
        F::GUEST_IA32_SYSENTER_ESP,
        F::GUEST_IA32_SYSENTER_EIP,
        F::GUEST_IA32_DEBUGCTL,
        F::GUEST_IA32_EFER,
        F::GUEST_PDPTE0,
        F::GUEST_PDPTE1,
        F::GUEST_PDPTE2,
        F::GUEST_PDPTE3,
    ] {
        w.put(field, 0);
    }
    w.put(F::GUEST_IA32_PAT, PAT_INIT);
    // No shadow VMCS.
    w.put(F::VMCS_LINK_POINTER, u64::MAX);
}

/// Sets up the VMCS in the (zeroed) frame `vmcs` for a partition whose EPT
/// is at `ept_root`, tagged `vpid`. A failure is remembered and reported
/// by the first `run`.
pub fn init_vmcs(vmcs: u64, ept_root: u64, vpid: u32) {
    let eptp = u64::from(Eptp::write_back_4_level(ept_root, false));
    let mut state = VpState {
        vmcs,
        launched: false,
        broken: None,
        eptp,
        vpid: 0,
        cr2: 0,
        dr6: DR6_INIT,
        kernel_gs_base: 0,
        syscall: [0; 4],
    };
    state.broken = match setup(vmcs, eptp, vpid) {
        Ok(tag) => {
            state.vpid = tag;
            None
        }
        Err(code) => Some(code),
    };
    let mut vps = VPS.lock();
    if let Some(s) = vps.iter_mut().find(|s| s.vmcs == vmcs) {
        *s = state;
    } else if vps.push(state).is_err() {
        // More VMCSs than VPs can exist: `run` reports FAILED_SETUP.
        crate::vm_println!("vmx: no room to track VMCS {vmcs:#x}");
    }
}

/// VMCLEAR, VMPTRLD and every field; the VPID used, or the failure code.
fn setup(vmcs: u64, eptp: u64, vpid: u32) -> Result<u16, u64> {
    let vmx = VMX.get().ok_or(FAILED_SETUP)?;
    let tag = u16::try_from(vpid).ok().filter(|&t| t != 0).ok_or(FAILED_SETUP)?;
    let fail = |what: &str, e: VmFail| {
        crate::vm_println!("vmx: {what} of VMCS {vmcs:#x} failed: {e:?}");
        e.code()
    };
    if state_of(vmcs).is_some() {
        // Set up again: the VMCS may be current and launched.
        vmclear(vmcs).map_err(|e| fail("VMCLEAR", e))?;
    }
    CURRENT.compare_exchange(vmcs, 0, Ordering::Relaxed, Ordering::Relaxed).ok();
    memory::write_phys(vmcs, &vmx.revision.to_le_bytes());
    vmclear(vmcs).map_err(|e| fail("VMCLEAR", e))?;
    make_current(vmcs).map_err(|e| fail("VMPTRLD", e))?;
    let mut w = Writer(Ok(()));
    write_controls(&mut w, vmx, eptp, tag);
    write_host_state(&mut w);
    write_guest_state(&mut w, vmx);
    w.0.map_err(|(field, e)| fail(if field == VmcsField::HOST_RIP { "VMWRITE HOST_RIP" } else { "VMWRITE" }, e))?;
    Ok(tag)
}

/// Forgets the VMCS `vmcs` before its frame is freed: VMCLEAR writes back
/// whatever the CPU cached and makes it not current.
pub fn release(vmcs: u64) {
    let known = {
        let mut vps = VPS.lock();
        let before = vps.len();
        vps.retain(|s| s.vmcs != vmcs);
        vps.len() != before
    };
    if known && let Err(e) = vmclear(vmcs) {
        crate::vm_println!("vmx: VMCLEAR of VMCS {vmcs:#x} failed on release: {e:?}");
    }
    CURRENT.compare_exchange(vmcs, 0, Ordering::Relaxed, Ordering::Relaxed).ok();
    LAST_RUN.compare_exchange(vmcs, 0, Ordering::Relaxed, Ordering::Relaxed).ok();
}

// ---------------------------------------------------------------------------
// Running.

fn failed(code: u64) -> Exit {
    Exit { reason: ExitReason::Other(code), rip: 0, instruction_length: 0, interrupted: None }
}

/// Flushes what the CPU may have cached for this VP before it runs:
/// EPT translations after mapping changes, and linear translations tagged
/// with its VPID when another VMCS (perhaps with the same VPID: VPIDs are
/// per partition) ran last.
fn flush_before_run(vmx: &Vmx, state: &VpState, flush: bool) -> Result<(), VmFail> {
    if flush {
        invept(vmx.invept, state.eptp)?;
    }
    if LAST_RUN.swap(state.vmcs, Ordering::Relaxed) != state.vmcs
        && let Some(kind) = vmx.invvpid
    {
        invvpid(kind, u64::from(state.vpid))?;
    }
    Ok(())
}

/// Runs the guest until it exits. Interrupts that arrived meanwhile are
/// left pending for the caller to let in.
pub fn run(vmcs: u64, gprs: &mut GuestGprs, flush: bool) -> Exit {
    let (Some(vmx), Some(mut state)) = (VMX.get(), state_of(vmcs)) else { return failed(FAILED_SETUP) };
    if let Some(code) = state.broken {
        return failed(code);
    }
    let prepared = make_current(vmcs)
        .and_then(|()| vmwrite(VmcsField::HOST_CR3, super::cpu::cr3()))
        .and_then(|()| flush_before_run(vmx, &state, flush));
    if let Err(e) = prepared {
        crate::vm_println!("vmx: preparing VMCS {vmcs:#x} to run failed: {e:?}");
        return failed(e.code());
    }
    let mut status = world_switch(gprs, &mut state);
    // The launch state is the CPU's; should ours disagree (error 4 or 5),
    // believe the CPU and enter the other way once.
    if status == 2
        && matches!(
            instruction_error(),
            VmInstructionError::VMLAUNCH_NON_CLEAR_VMCS | VmInstructionError::VMRESUME_NON_LAUNCHED_VMCS
        )
    {
        state.launched = !state.launched;
        status = world_switch(gprs, &mut state);
    }
    let exit = match status {
        0 => {
            // Also after a failed VM entry, which the CPU reports as an exit.
            state.launched = true;
            decode_exit(&mut state)
        }
        1 => {
            crate::vm_println!("vmx: VM entry of VMCS {vmcs:#x} failed: {:?}", VmFail::Invalid);
            failed(FAILED_INVALID)
        }
        _ => {
            let e = VmFail::Valid(instruction_error());
            crate::vm_println!("vmx: VM entry of VMCS {vmcs:#x} failed: {e:?}");
            failed(e.code())
        }
    };
    update_state(vmcs, |s| *s = state);
    exit
}

/// One VM entry and exit, with the guest state VMX does not switch loaded
/// around it. Returns the world switch's status.
fn world_switch(gprs: &mut GuestGprs, state: &mut VpState) -> u64 {
    let host_kernel_gs_base = read_msr(IA32_KERNEL_GSBASE);
    let host_syscall = SYSCALL_MSRS.map(read_msr);
    // SAFETY: the guest's CR2, DR6 and IA32_KERNEL_GS_BASE go into the
    // hardware registers only for the guest's run: the host has no use for
    // CR2 and DR6 across it (no page fault or debug trap can happen in
    // between: interrupts are off and this code touches only mapped kernel
    // memory), and the host's KERNEL_GS_BASE (the user GS base) and
    // syscall MSRs (STAR, LSTAR, CSTAR, SFMASK) are put back before
    // anything can enter ring 3 or take a SYSCALL. The world switch enters the
    // guest of the current VMCS, which `init_vmcs` set up with host state
    // that resumes at `vmx_vm_exit` on this stack; its EPT maps only
    // memory given to the partition, and every exit lands back here.
    unsafe {
        wrmsr(IA32_KERNEL_GSBASE, state.kernel_gs_base);
        for (msr, value) in SYSCALL_MSRS.iter().zip(state.syscall) {
            wrmsr(*msr, value);
        }
        super::nmi::test_point(super::nmi::TestPoint::WorldSwitch);
        asm!("mov cr2, {}", in(reg) state.cr2, options(nostack, preserves_flags));
        asm!("mov dr6, {}", in(reg) state.dr6, options(nostack, preserves_flags));
        super::speculation::before_vm_entry();
        let status = vmx_world_switch(gprs, u64::from(state.launched));
        asm!("mov {}, cr2", out(reg) state.cr2, options(nostack, preserves_flags));
        asm!("mov {}, dr6", out(reg) state.dr6, options(nostack, preserves_flags));
        state.kernel_gs_base = rdmsr(IA32_KERNEL_GSBASE);
        wrmsr(IA32_KERNEL_GSBASE, host_kernel_gs_base);
        for ((msr, guest), host) in SYSCALL_MSRS.iter().zip(state.syscall.iter_mut()).zip(host_syscall) {
            *guest = rdmsr(*msr);
            wrmsr(*msr, host);
        }
        status
    }
}

/// Reads a field of the current VMCS for exit decoding; 0 if it cannot be
/// read (which cannot happen right after a VM exit).
fn exit_field(field: VmcsField) -> u64 {
    vmread(field).unwrap_or(0)
}

/// The VM exit just taken, in backend-neutral terms.
fn decode_exit(state: &mut VpState) -> Exit {
    use kerncore::vmx::ExitReason as Basic;
    let raw = exit_field(VmcsField::EXIT_REASON) as u32;
    let field = ExitReasonField::from(raw);
    let rip = exit_field(VmcsField::GUEST_RIP);
    let length = || exit_field(VmcsField::VM_EXIT_INSTRUCTION_LENGTH).min(15) as u8;
    let other = (ExitReason::Other(u64::from(raw)), 0);
    if field.entry_failure() && field.basic() == Basic::ENTRY_FAILURE_MACHINE_CHECK {
        return Exit { reason: ExitReason::MachineCheck, rip, instruction_length: 0, interrupted: None };
    }
    if field.entry_failure() {
        crate::vm_println!(
            "vmx: VM entry failed: exit reason {:?} (field {raw:#x}), qualification {:#x}",
            field.basic(),
            exit_field(VmcsField::EXIT_QUALIFICATION)
        );
        return Exit { reason: other.0, rip, instruction_length: 0, interrupted: None };
    }
    let (reason, instruction_length) = match field.basic() {
        Basic::EXTERNAL_INTERRUPT | Basic::PREEMPTION_TIMER_EXPIRED => (ExitReason::HostInterrupt, 0),
        Basic::INTERRUPT_WINDOW => (ExitReason::InterruptWindow, 0),
        Basic::EXCEPTION_OR_NMI => {
            // NMIs, and the exceptions intercepted: #MC (the host's), #DB and
            // #AC (reflected).
            let info = InterruptionInfo::from(exit_field(VmcsField::VM_EXIT_INTERRUPTION_INFORMATION) as u32);
            if info.valid() && info.interruption_type() == InterruptionType::NMI {
                super::nmi::deliver_after_vm_exit();
                (ExitReason::HostInterrupt, 0)
            } else if info.valid()
                && info.interruption_type() == InterruptionType::HARDWARE_EXCEPTION
                && info.vector() == kerncore::mce::VECTOR
            {
                (ExitReason::MachineCheck, 0)
            } else if let Some(event) = reflected_exception(info, state) {
                (ExitReason::Exception(event), 0)
            } else {
                other
            }
        }
        Basic::IO_INSTRUCTION => match IoQualification::from(exit_field(VmcsField::EXIT_QUALIFICATION)).access() {
            Some(access) => (ExitReason::Io(access), length()),
            None => other,
        },
        Basic::CPUID => (ExitReason::Cpuid, length()),
        Basic::HLT => (ExitReason::Hlt, length()),
        Basic::VMCALL => (ExitReason::Hypercall, length()),
        Basic::RDMSR => (ExitReason::Msr { write: false }, length()),
        Basic::WRMSR => (ExitReason::Msr { write: true }, length()),
        Basic::EPT_VIOLATION => {
            let q = EptViolationQualification::from(exit_field(VmcsField::EXIT_QUALIFICATION));
            let access = if q.instruction_fetch() {
                Access::Execute
            } else if q.data_write() {
                Access::Write
            } else {
                Access::Read
            };
            let mapped = q.readable() || q.writable() || q.executable();
            (ExitReason::GuestMemory { gpa: exit_field(VmcsField::GUEST_PHYSICAL_ADDRESS), access, mapped }, 0)
        }
        Basic::TRIPLE_FAULT => (ExitReason::Shutdown, 0),
        Basic::XSETBV => (ExitReason::Xsetbv, length()),
        Basic::INVD | Basic::WBINVD => (ExitReason::CacheFlush, length()),
        Basic::RDPMC => (ExitReason::Rdpmc, length()),
        basic if basic.is_not_offered_instruction() => (ExitReason::NotOffered, 0),
        Basic::MOV_DR => (ExitReason::DebugRegister, 0),
        // EPT misconfigurations and everything not intercepted on purpose.
        _ => other,
    };
    // The event an exit cut short (IDT-vectoring information), to deliver again.
    let vectoring = InterruptionInfo::from(exit_field(VmcsField::IDT_VECTORING_INFORMATION) as u32);
    let interrupted = Interruption::interrupted_vmx(vectoring, exit_field(VmcsField::IDT_VECTORING_ERROR_CODE) as u32);
    Exit { reason, rip, instruction_length, interrupted }
}

/// An intercepted #DB or #AC (`REFLECTED_EXCEPTIONS`), made ready to be
/// delivered as it would have been without the exit. A #DB caused no
/// change to DR6 or DR7 (SDM Vol. 3C §28.1): its causes are in the exit
/// qualification, so DR6 gets them and DR7.GD is cleared for a BD, as
/// delivery does. ICEBP's #DB (a privileged software exception) goes back
/// as one, with its length.
fn reflected_exception(info: InterruptionInfo, state: &mut VpState) -> Option<Interruption> {
    use VmcsField as F;
    let kind = info.interruption_type();
    let event = match info.vector() {
        vector::DEBUG if kind == InterruptionType::PRIVILEGED_SOFTWARE_EXCEPTION => Interruption {
            kind: tlfs::HvX64PendingInterruptionType::PRIVILEGED_SOFTWARE_EXCEPTION,
            vector: vector::DEBUG,
            error_code: None,
            instruction_length: exit_field(F::VM_EXIT_INSTRUCTION_LENGTH).clamp(1, 15) as u8,
        },
        vector::DEBUG if kind == InterruptionType::HARDWARE_EXCEPTION => Interruption::exception(vector::DEBUG, None),
        vector::ALIGNMENT_CHECK if kind == InterruptionType::HARDWARE_EXCEPTION => Interruption::exception(
            vector::ALIGNMENT_CHECK,
            Some(exit_field(F::VM_EXIT_INTERRUPTION_ERROR_CODE) as u32),
        ),
        _ => return None,
    };
    let mut interruptibility = exit_field(F::GUEST_INTERRUPTIBILITY_STATE);
    // A fault in an IRET that unblocked NMIs leaves them blocked again.
    if info.nmi_unblocking_due_to_iret() {
        interruptibility |= BLOCKING_BY_NMI;
    }
    if event.vector == vector::DEBUG {
        let causes = exit_field(F::EXIT_QUALIFICATION);
        state.dr6 = debugreg::dr6_after_debug_exception(state.dr6, causes);
        if causes & debugreg::DR6_BD != 0 {
            let _ = vmwrite(F::GUEST_DR7, exit_field(F::GUEST_DR7) & !debugreg::DR7_GD);
        }
        // With TF set under STI or MOV SS blocking, VM entry insists on a
        // pending single step (SDM Vol. 3C §27.3.1.5), which the exit on the
        // #DB did not record.
        if exit_field(F::GUEST_RFLAGS) & RFLAGS_TF != 0
            && interruptibility & (BLOCKING_BY_STI | BLOCKING_BY_MOV_SS) != 0
        {
            let pending = exit_field(F::GUEST_PENDING_DEBUG_EXCEPTIONS) | debugreg::DR6_BS;
            let _ = vmwrite(F::GUEST_PENDING_DEBUG_EXCEPTIONS, pending);
        }
    }
    let _ = vmwrite(F::GUEST_INTERRUPTIBILITY_STATE, interruptibility);
    Some(event)
}

/// Intercepts (or stops intercepting) every debug-register access.
pub fn intercept_debug_registers(vmcs: u64, on: bool) {
    let set = || -> Result<(), VmFail> {
        make_current(vmcs)?;
        let primary = PrimaryControls::from(vmread(VmcsField::PRIMARY_PROCESSOR_BASED_CONTROLS)? as u32);
        vmwrite(VmcsField::PRIMARY_PROCESSOR_BASED_CONTROLS, u64::from(u32::from(primary.with_mov_dr_exiting(on))))
    };
    if let Err(e) = set() {
        println!("vmx: MOV-DR exiting of VMCS {vmcs:#x}: {e:?}");
    }
}

// ---------------------------------------------------------------------------
// Events.

const BLOCKING_BY_NMI: u64 = 1 << 3;

fn set_interrupt_window_exiting(on: bool) -> Result<(), VmFail> {
    let primary = PrimaryControls::from(vmread(VmcsField::PRIMARY_PROCESSOR_BASED_CONTROLS)? as u32);
    if primary.interrupt_window_exiting() != on {
        let primary = primary.with_interrupt_window_exiting(on);
        vmwrite(VmcsField::PRIMARY_PROCESSOR_BASED_CONTROLS, u64::from(u32::from(primary)))?;
    }
    Ok(())
}

fn try_inject(vmcs: u64, event: &Interruption) -> Result<bool, VmFail> {
    use VmcsField as F;
    make_current(vmcs)?;
    let interrupts_enabled = vmread(F::GUEST_RFLAGS)? & RFLAGS_IF != 0;
    let shadow = vmread(F::GUEST_INTERRUPTIBILITY_STATE)? & (BLOCKING_BY_STI | BLOCKING_BY_MOV_SS) != 0;
    let deliverable = event.deliverable(interrupts_enabled, shadow);
    set_interrupt_window_exiting(!deliverable)?;
    if deliverable {
        let protected = vmread(F::GUEST_CR0)? & CR0_PE != 0;
        let info = event.to_vmx(protected);
        if info.deliver_error_code() {
            vmwrite(F::VM_ENTRY_EXCEPTION_ERROR_CODE, u64::from(event.error_code.unwrap_or(0)))?;
        }
        if event.is_software() {
            vmwrite(F::VM_ENTRY_INSTRUCTION_LENGTH, u64::from(event.instruction_length))?;
        }
        vmwrite(F::VM_ENTRY_INTERRUPTION_INFORMATION, u64::from(u32::from(info)))?;
    }
    Ok(deliverable)
}

/// Injects `event` at the next VM entry if the guest can take it now
/// (true); otherwise asks for an interrupt-window exit (false).
pub fn inject(vmcs: u64, event: &Interruption) -> bool {
    try_inject(vmcs, event).unwrap_or_else(|e| {
        crate::vm_println!("vmx: injecting into VMCS {vmcs:#x} failed: {e:?}");
        false
    })
}

/// Asks for (or stops asking for) an exit when the guest can take an interrupt.
pub fn request_window(vmcs: u64, open: bool) {
    if let Err(e) = make_current(vmcs).and_then(|()| set_interrupt_window_exiting(open)) {
        crate::vm_println!("vmx: interrupt-window exiting of VMCS {vmcs:#x}: {e:?}");
    }
}

// ---------------------------------------------------------------------------
// Registers by TLFS name.

/// The guest's view of CR0 or CR4: host-owned bits from the read shadow.
fn guest_view(actual: VmcsField, shadow: VmcsField, mask: VmcsField) -> Result<u64, VmFail> {
    let mask = vmread(mask)?;
    Ok((vmread(actual)? & !mask) | (vmread(shadow)? & mask))
}

/// A 64-bit register kept in a VMCS field.
fn plain_field(name: HvRegisterName) -> Option<VmcsField> {
    Some(match name {
        HvRegisterName::RSP => VmcsField::GUEST_RSP,
        HvRegisterName::CR3 => VmcsField::GUEST_CR3,
        HvRegisterName::DR7 => VmcsField::GUEST_DR7,
        HvRegisterName::PAT => VmcsField::GUEST_IA32_PAT,
        _ => return None,
    })
}

fn read_register(vmcs: u64, name: HvRegisterName) -> Result<Option<(u64, u64)>, VmFail> {
    use VmcsField as F;
    make_current(vmcs)?;
    let value = |v| Ok(Some((v, 0)));
    if let Some(field) = plain_field(name) {
        return value(vmread(field)?);
    }
    let state = state_of(vmcs);
    match name {
        HvRegisterName::RIP => return value(vmread(F::GUEST_RIP)?),
        HvRegisterName::RFLAGS => return value(vmread(F::GUEST_RFLAGS)?),
        HvRegisterName::EFER => return value(vmread(F::GUEST_IA32_EFER)?),
        HvRegisterName::CR0 => return value(guest_view(F::GUEST_CR0, F::CR0_READ_SHADOW, F::CR0_GUEST_HOST_MASK)?),
        HvRegisterName::CR4 => return value(guest_view(F::GUEST_CR4, F::CR4_READ_SHADOW, F::CR4_GUEST_HOST_MASK)?),
        HvRegisterName::CR2 => return Ok(state.map(|s| (s.cr2, 0))),
        HvRegisterName::DR6 => return Ok(state.map(|s| (s.dr6, 0))),
        HvRegisterName::KERNEL_GS_BASE => return Ok(state.map(|s| (s.kernel_gs_base, 0))),
        HvRegisterName::GDTR => {
            return Ok(Some(tlfs::table_register_value(
                vmread(F::GUEST_GDTR_BASE)?,
                vmread(F::GUEST_GDTR_LIMIT)? as u16,
            )));
        }
        HvRegisterName::IDTR => {
            return Ok(Some(tlfs::table_register_value(
                vmread(F::GUEST_IDTR_BASE)?,
                vmread(F::GUEST_IDTR_LIMIT)? as u16,
            )));
        }
        HvRegisterName::INTERRUPT_STATE => {
            let blocking = vmread(F::GUEST_INTERRUPTIBILITY_STATE)?;
            let state = HvX64InterruptStateRegister::new()
                .with_interrupt_shadow(blocking & (BLOCKING_BY_STI | BLOCKING_BY_MOV_SS) != 0)
                .with_nmi_masked(blocking & BLOCKING_BY_NMI != 0);
            return Ok(Some((state.into_bits(), 0)));
        }
        _ => {}
    }
    let Some(f) = segment_fields(name) else { return Ok(None) };
    let segment = HvX64SegmentRegister {
        base: vmread(f.base)?,
        limit: vmread(f.limit)? as u32,
        selector: vmread(f.selector)? as u16,
        attributes: access_rights_to_tlfs(vmread(f.access_rights)?),
    };
    Ok(Some(tlfs::segment_register_value(&segment)))
}

/// A register as a TLFS 128-bit value (low, high); `None` if unsupported
/// (or if the VMCS cannot be read).
pub fn get_register(vmcs: u64, gprs: &mut GuestGprs, name: HvRegisterName) -> Option<(u64, u64)> {
    if name == HvRegisterName::RAX {
        return Some((gprs.rax, 0));
    }
    if let Some(r) = gprs.named(name) {
        return Some((*r, 0));
    }
    read_register(vmcs, name).unwrap_or_else(|e| {
        crate::vm_println!("vmx: reading {name:?} of VMCS {vmcs:#x} failed: {e:?}");
        None
    })
}

fn write_register(vmcs: u64, name: HvRegisterName, low: u64, high: u64) -> Result<bool, VmFail> {
    use VmcsField as F;
    let Some(vmx) = VMX.get() else { return Ok(false) };
    make_current(vmcs)?;
    if let Some(field) = plain_field(name) {
        vmwrite(field, low)?;
        return Ok(true);
    }
    let interruptibility = || vmread(F::GUEST_INTERRUPTIBILITY_STATE);
    match name {
        HvRegisterName::RIP => {
            // Moving RIP completes the instruction an STI or MOV SS shadow
            // covered: the shadow ends with it.
            if vmread(F::GUEST_RIP)? != low {
                vmwrite(
                    F::GUEST_INTERRUPTIBILITY_STATE,
                    interruptibility()? & !(BLOCKING_BY_STI | BLOCKING_BY_MOV_SS),
                )?;
            }
            vmwrite(F::GUEST_RIP, low)?;
        }
        HvRegisterName::RFLAGS => {
            // Blocking by STI needs IF set (a VM-entry check).
            if low & RFLAGS_IF == 0 {
                vmwrite(F::GUEST_INTERRUPTIBILITY_STATE, interruptibility()? & !BLOCKING_BY_STI)?;
            }
            vmwrite(F::GUEST_RFLAGS, low)?;
        }
        HvRegisterName::CR0 => {
            vmwrite(F::GUEST_CR0, vmx.guest_cr0(low))?;
            vmwrite(F::CR0_READ_SHADOW, low)?;
        }
        HvRegisterName::CR4 => {
            vmwrite(F::GUEST_CR4, vmx.guest_cr4(low))?;
            vmwrite(F::CR4_READ_SHADOW, low)?;
        }
        HvRegisterName::EFER => {
            // The "IA-32e mode guest" entry control must equal EFER.LMA.
            let entry =
                EntryControls::from(vmread(F::VM_ENTRY_CONTROLS)? as u32).with_ia32e_mode_guest(low & EFER_LMA != 0);
            vmwrite(F::VM_ENTRY_CONTROLS, u64::from(u32::from(entry)))?;
            vmwrite(F::GUEST_IA32_EFER, low)?;
        }
        HvRegisterName::CR2 => return Ok(update_state(vmcs, |s| s.cr2 = low)),
        HvRegisterName::DR6 => return Ok(update_state(vmcs, |s| s.dr6 = low)),
        HvRegisterName::KERNEL_GS_BASE => return Ok(update_state(vmcs, |s| s.kernel_gs_base = low)),
        HvRegisterName::GDTR | HvRegisterName::IDTR => {
            let (base, limit) = tlfs::table_register_from_value(low, high);
            let (base_field, limit_field) = if name == HvRegisterName::GDTR {
                (F::GUEST_GDTR_BASE, F::GUEST_GDTR_LIMIT)
            } else {
                (F::GUEST_IDTR_BASE, F::GUEST_IDTR_LIMIT)
            };
            vmwrite(base_field, base)?;
            vmwrite(limit_field, u64::from(limit))?;
        }
        _ => {
            let Some(f) = segment_fields(name) else { return Ok(false) };
            let segment = tlfs::segment_register_from_value(low, high);
            vmwrite(f.selector, u64::from(segment.selector))?;
            vmwrite(f.base, segment.base)?;
            vmwrite(f.limit, u64::from(segment.limit))?;
            vmwrite(f.access_rights, access_rights_from_tlfs(segment.attributes))?;
        }
    }
    Ok(true)
}

/// Sets a register from a TLFS 128-bit value; false if unsupported (or if
/// the VMCS cannot be written). Values are not checked here: one the CPU
/// refuses makes the next VM entry fail, which `run` reports.
pub fn set_register(vmcs: u64, gprs: &mut GuestGprs, name: HvRegisterName, low: u64, high: u64) -> bool {
    if name == HvRegisterName::RAX {
        gprs.rax = low;
        return true;
    }
    if let Some(r) = gprs.named(name) {
        *r = low;
        return true;
    }
    write_register(vmcs, name, low, high).unwrap_or_else(|e| {
        crate::vm_println!("vmx: writing {name:?} of VMCS {vmcs:#x} failed: {e:?}");
        false
    })
}

/// CPL and mode bits for intercept messages.
pub fn execution_state(vmcs: u64) -> ExecutionState {
    use VmcsField as F;
    let read = || -> Result<ExecutionState, VmFail> {
        make_current(vmcs)?;
        // The CPL is SS.DPL (SDM §25.4.1).
        let ss = access_rights_to_tlfs(vmread(F::GUEST_SS_ACCESS_RIGHTS)?);
        Ok(ExecutionState {
            cpl: ss.descriptor_privilege_level(),
            cr0: guest_view(F::GUEST_CR0, F::CR0_READ_SHADOW, F::CR0_GUEST_HOST_MASK)?,
            efer: vmread(F::GUEST_IA32_EFER)?,
            rflags: vmread(F::GUEST_RFLAGS)?,
        })
    };
    read().unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Extended page tables.

/// A mapper over the EPT at `root`: the CPU's EPT format (execute-only
/// leaves where it has them) and MAXPHYADDR, 4 KiB leaves only so that any
/// page can be unmapped on its own.
fn ept<M: kerncore::paging::PageTableMemory>(mem: &mut M, root: u64) -> EptMapper<'_, M> {
    let width = PhysAddrWidth::new(super::cpu::physical_address_bits()).unwrap_or(PhysAddrWidth::MAX);
    EptMapper::for_cpu(mem, root, width, ept_vpid_caps().with_pde_2mb(false))
}

pub fn ept_new_root(mem: &mut DirectMap) -> Result<u64, GuestMapError> {
    EptMapper::new_root(mem)
}

pub fn ept_map<M: kerncore::paging::PageTableMemory>(
    mem: &mut M,
    root: u64,
    gpa: u64,
    hpa: u64,
    len: u64,
    rights: GuestRights,
) -> Result<(), GuestMapError> {
    ept(mem, root).map(gpa, hpa, len, rights)
}

/// Removes mappings; the partition's next run flushes them with INVEPT.
pub fn ept_unmap(mem: &mut DirectMap, root: u64, gpa: u64, len: u64) -> Result<(), GuestMapError> {
    ept(mem, root).unmap(gpa, len, |_| {})
}

/// Removes whatever leaves a range has (teardown); flushed like `ept_unmap`.
pub fn ept_unmap_present(mem: &mut DirectMap, root: u64, gpa: u64, len: u64) {
    ept(mem, root).unmap_present(gpa, len, |_| {});
}

/// Every table of the hierarchy, children first and the root last.
pub fn ept_tables(mem: &mut DirectMap, root: u64, f: &mut impl FnMut(u64)) {
    ept(mem, root).for_each_table(f);
}
