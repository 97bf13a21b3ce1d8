//! CPU identification and the control-register hardening of ring 0.

use x86::controlregs::{Cr0, Cr4, cr0, cr0_write, cr4, cr4_write};
use x86::cpuid::CpuId;
use x86::msr::{IA32_EFER, rdmsr};
use x86defs::EFER_NXE;

/// Vendor and brand strings plus the protections ring 0 switched on.
pub struct CpuInfo {
    pub vendor: heapless::String<16>,
    pub brand: heapless::String<64>,
    pub family: u8,
    pub model: u8,
    pub nx: bool,
    pub smep: bool,
    pub smap: bool,
    pub umip: bool,
    /// CPUID.1:EDX.MCE and .MCA: machine-check exceptions and the MCA banks.
    pub machine_check: bool,
    pub machine_check_architecture: bool,
}

pub fn identify() -> CpuInfo {
    let cpuid = CpuId::new();
    let mut info = CpuInfo {
        vendor: heapless::String::new(),
        brand: heapless::String::new(),
        family: 0,
        model: 0,
        nx: false,
        smep: false,
        smap: false,
        umip: false,
        machine_check: false,
        machine_check_architecture: false,
    };
    if let Some(v) = cpuid.get_vendor_info() {
        let _ = info.vendor.push_str(v.as_str());
    }
    if let Some(b) = cpuid.get_processor_brand_string() {
        let _ = info.brand.push_str(b.as_str().trim());
    }
    if let Some(f) = cpuid.get_feature_info() {
        info.family = f.family_id();
        info.model = f.model_id();
        info.machine_check = f.has_mce();
        info.machine_check_architecture = f.has_mca();
    }
    if let Some(e) = cpuid.get_extended_processor_and_feature_identifiers() {
        info.nx = e.has_execute_disable();
    }
    if let Some(e) = cpuid.get_extended_feature_info() {
        info.smep = e.has_smep();
        info.smap = e.has_smap();
        info.umip = e.has_umip();
    }
    info
}

/// Turns on every protection this CPU has: write protection in ring 0,
/// global pages, SMEP, SMAP and UMIP. NX was enabled by the loader; its
/// absence here is a boot error the caller reports.
pub fn harden(info: &CpuInfo) -> bool {
    // SAFETY: reading EFER has no side effects.
    let nx_on = unsafe { rdmsr(IA32_EFER) } & EFER_NXE != 0;
    // SAFETY: these bits only restrict what ring 0 may do (and turn caching
    // on, with no memory aliased at conflicting types); the kernel never
    // touches user pages without first clearing SMAP's AC check, and uses
    // no instruction UMIP forbids in ring 0.
    unsafe {
        // Caching on (the firmware or loader may leave CD/NW set, which
        // disables caches on real hardware), ring-0 write protection on.
        cr0_write((cr0() | Cr0::CR0_WRITE_PROTECT) & !(Cr0::CR0_CACHE_DISABLE | Cr0::CR0_NOT_WRITE_THROUGH));
        // FXSAVE/FXRSTOR of guests' SSE state need OSFXSR (see `fpu`);
        // ring 0 and the tasks are built without SSE and never use it.
        // DE: DR7 may type breakpoints as I/O ones (the SVM host's DR7,
        // `dr::host_dr7`), and DR4/DR5 are not aliases.
        let mut flags = cr4()
            | Cr4::CR4_ENABLE_GLOBAL_PAGES
            | Cr4::CR4_ENABLE_SSE
            | Cr4::CR4_UNMASKED_SSE
            | Cr4::CR4_DEBUGGING_EXTENSIONS;
        if info.smep {
            flags |= Cr4::CR4_ENABLE_SMEP;
        }
        if info.smap {
            flags |= Cr4::CR4_ENABLE_SMAP;
        }
        if info.umip {
            flags |= Cr4::CR4_ENABLE_UMIP;
        }
        cr4_write(flags);
    }
    nx_on
}

/// Reads CR2 (the faulting address of the last page fault).
pub fn cr2() -> u64 {
    // SAFETY: reading CR2 has no side effects.
    unsafe { x86::controlregs::cr2() as u64 }
}

/// Reads CR3.
pub fn cr3() -> u64 {
    // SAFETY: reading CR3 has no side effects.
    unsafe { x86::controlregs::cr3() }
}

/// Logical processors per core (CPUID leaf 0xB, SMT level), where the CPU
/// says; more than 1 means SMT siblings.
pub fn threads_per_core() -> Option<u32> {
    if x86::cpuid::cpuid!(0).eax < 0xb {
        return None;
    }
    let leaf = x86::cpuid::cpuid!(0xb, 0);
    // Level type 1 is SMT; EBX[15:0] counts its logical processors.
    ((leaf.ecx >> 8) & 0xff == 1).then_some(leaf.ebx & 0xffff)
}

/// The SMT level's shift of the x2APIC ID (CPUID leaf 0xB), if the CPU
/// reports an SMT level: CPUs whose APIC IDs agree above it share a core.
pub fn smt_shift() -> Option<u32> {
    if x86::cpuid::cpuid!(0).eax < 0xb {
        return None;
    }
    let leaf = x86::cpuid::cpuid!(0xb, 0);
    kerncore::coresched::smt_shift(leaf.eax, leaf.ecx)
}

/// Loads CR3 with `root`, a complete top-level table whose kernel half is
/// the kernel's own.
pub fn load_cr3(root: u64) {
    // SAFETY: every root the kernel loads maps the kernel half identically
    // (callers pass a task's root or the kernel's), so ring 0 runs on.
    unsafe { x86::controlregs::cr3_write(root) };
}

/// Loads CR3 again: flushes every non-global TLB entry of this CPU.
pub fn reload_cr3() {
    load_cr3(cr3());
}

/// Waits for the next interrupt with interrupts enabled.
pub fn wait_for_interrupt() {
    // SAFETY: `sti; hlt` is the standard idle; the IDT is loaded before this
    // is ever called, and `sti`'s one-instruction shadow closes the race
    // between enabling interrupts and halting.
    unsafe { core::arch::asm!("sti; hlt", options(nomem, nostack)) }
}

/// Halts this CPU for good with interrupts disabled. Only an NMI (or an
/// SMI) wakes it; its handler returns here and the CPU halts again.
pub fn park() -> ! {
    loop {
        // SAFETY: `cli; hlt` only stops this CPU; the IDT is loaded, so an
        // NMI is handled (on its IST stack) and returns to the loop.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

pub fn disable_interrupts() {
    // SAFETY: masking interrupts has no memory effects.
    unsafe { core::arch::asm!("cli", options(nomem, nostack)) }
}

/// Lets interrupts that are pending (after a VM exit) reach their handlers,
/// then masks them again.
pub fn take_pending_interrupts() {
    // SAFETY: the IDT is loaded; `sti; nop` opens a one-instruction window
    // for pending interrupts, which run on the current kernel stack.
    unsafe { core::arch::asm!("sti", "nop", "cli", options(nomem, nostack)) }
}

/// The time-stamp counter (instruction count under QEMU `-icount`).
pub fn timestamp() -> u64 {
    // SAFETY: RDTSC only reads a counter; CR4.TSD does not apply in ring 0.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// MAXPHYADDR: the physical-address bits (CPUID 0x8000_0008 EAX bits
/// 7:0), or 36 where that leaf is absent (SDM Vol. 3A §4.1.4).
pub fn physical_address_bits() -> u8 {
    let max_extended = x86::cpuid::cpuid!(0x8000_0000).eax;
    if max_extended >= 0x8000_0008 { x86::cpuid::cpuid!(0x8000_0008).eax as u8 } else { 36 }
}
