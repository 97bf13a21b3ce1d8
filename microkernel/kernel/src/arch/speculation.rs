//! Speculative-execution mitigations on this CPU, chosen once at boot by
//! `kerncore::speculation` and applied where ring 0 switches worlds:
//!
//! - after every VM exit, before any `ret`, the world switch fills the
//!   return stack buffer ([`rsb_fill!`]), so no guest-planted return
//!   target is used by the host;
//! - entering another trust domain (a task or a partition other than the
//!   last one that ran, [`enter`]): IBPB where the CPU has it, and an RSB
//!   fill;
//! - VERW right before VM entry and before `iretq` to ring 3, where the CPU
//!   is affected by MDS and has MD_CLEAR (the asm tests the flags below);
//! - an L1D flush right before VM entry where L1TF needs it ([`before_vm_entry`]).
//!
//! One CPU runs the kernel for now; with more, the "last domain" becomes
//! per CPU, and SMT siblings need core scheduling (see docs/ARCHITECTURE.md).

use super::cpu::CpuInfo;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use kerncore::speculation::{AmdExt8Ebx, ArchCapabilities, CpuSpeculation, Domain, Leaf7Edx, Mitigations, Vendor, msr};
use x86::msr::{rdmsr, wrmsr};

/// Fills the return stack buffer with 32 harmless entries (each a
/// speculation trap), then drops them from the stack. Clobbers RCX and the
/// flags; needs 256 bytes of stack below RSP.
macro_rules! rsb_fill {
    () => {
        "
    mov ecx, 16
771:
    call 772f
773:
    pause
    lfence
    jmp 773b
772:
    call 774f
775:
    pause
    lfence
    jmp 775b
774:
    dec ecx
    jnz 771b
    add rsp, 256"
    };
}
pub(crate) use rsb_fill;

/// Read by the asm of `entry` and `vmx` (`cmp byte ptr [rip + ...], 0`).
pub static VERW_ON_USER_RETURN: AtomicBool = AtomicBool::new(false);
pub static VERW_ON_VM_ENTRY: AtomicBool = AtomicBool::new(false);
/// VERW's operand: a writable data segment (only the instruction's side
/// effect, clearing CPU buffers, matters).
pub static VERW_SELECTOR: u16 = super::gdt::KERNEL_DATA.bits();

static IBPB: AtomicBool = AtomicBool::new(false);
static L1D_FLUSH: AtomicBool = AtomicBool::new(false);
/// The trust domain that last ran ([`Domain::code`]).
static LAST_DOMAINS: [AtomicU64; super::smp::MAX_CPUS] = [const { AtomicU64::new(Domain::NONE) }; super::smp::MAX_CPUS];

/// What this CPU says about its speculation (CPUID, ARCH_CAPABILITIES).
fn read_cpu(info: &CpuInfo) -> CpuSpeculation {
    let max_leaf = x86::cpuid::cpuid!(0).eax;
    let max_extended = x86::cpuid::cpuid!(0x8000_0000).eax;
    let leaf7_edx = Leaf7Edx::from(if max_leaf >= 7 { x86::cpuid::cpuid!(7, 0).edx } else { 0 });
    let amd_ext8_ebx =
        AmdExt8Ebx::from(if max_extended >= 0x8000_0008 { x86::cpuid::cpuid!(0x8000_0008).ebx } else { 0 });
    let arch_capabilities = leaf7_edx.arch_capabilities().then(|| {
        // SAFETY: CPUID enumerates IA32_ARCH_CAPABILITIES; reading it has
        // no side effects.
        ArchCapabilities::from(unsafe { rdmsr(msr::IA32_ARCH_CAPABILITIES) })
    });
    CpuSpeculation { vendor: Vendor::from_cpuid(info.vendor.as_str()), leaf7_edx, amd_ext8_ebx, arch_capabilities }
}

/// Chooses the mitigations for this CPU and arms them.
pub fn init(info: &CpuInfo) -> Mitigations {
    let chosen = Mitigations::choose(&read_cpu(info));
    IBPB.store(chosen.ibpb.is_on(), Relaxed);
    L1D_FLUSH.store(chosen.l1d_flush.is_on(), Relaxed);
    VERW_ON_USER_RETURN.store(chosen.verw_on_user_return(), Relaxed);
    VERW_ON_VM_ENTRY.store(chosen.verw_on_vm_entry(), Relaxed);
    chosen
}

fn fill_rsb() {
    // SAFETY: the sequence only calls within itself and pops what it
    // pushed (256 bytes below RSP, on the kernel stack; there is no red
    // zone in the kernel); it clobbers RCX and the flags, declared here.
    unsafe { core::arch::asm!(rsb_fill!(), out("rcx") _) };
}

/// `domain` is about to run: a barrier if it is not the one that ran last.
pub fn enter(domain: Domain) {
    if !domain.crosses_from(super::percpu::local(&LAST_DOMAINS).swap(domain.code(), Relaxed)) {
        return;
    }
    if IBPB.load(Relaxed) {
        // SAFETY: CPUID enumerates IBPB; the write only flushes indirect
        // branch predictions.
        unsafe { wrmsr(msr::IA32_PRED_CMD, msr::PRED_CMD_IBPB) };
    }
    fill_rsb();
}

/// Right before VM entry: the L1D flush where L1TF needs it.
pub fn before_vm_entry() {
    if L1D_FLUSH.load(Relaxed) {
        // SAFETY: CPUID enumerates IA32_FLUSH_CMD; the write only
        // writes back and invalidates the L1 data cache.
        unsafe { wrmsr(msr::IA32_FLUSH_CMD, msr::FLUSH_CMD_L1D) };
    }
}
