//! AMD SVM: enabling it, the VMCB of a virtual processor, the world switch
//! and the decoding of exits (AMD APM Vol. 2, chapter 15 and appendix B).
//!
//! The VMCB is one 4 KiB frame the kernel owns; it is read and written
//! through the direct map at the offsets of APM appendix B. Guest state that
//! is not in the VMCB (all general registers but RAX and RSP) lives in
//! [`GuestGprs`] and is swapped by the assembly around VMRUN. Host state that
//! VMRUN does not switch (FS, GS, TR, LDTR bases, the syscall MSRs) is saved
//! and restored with VMSAVE/VMLOAD around it.

use super::memory;
use core::arch::global_asm;
use hvdef::HvRegisterName;
use kerncore::frames::Frames;
use x86::msr::{IA32_EFER, rdmsr, wrmsr};

const EFER_SVME: u64 = 1 << 12;
const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;

/// VMCB offsets (APM Vol. 2, Table B-1 and B-2).
pub mod vmcb {
    pub const INTERCEPT_CR: u64 = 0x000;
    pub const INTERCEPT_EXCEPTIONS: u64 = 0x008;
    pub const INTERCEPT_MISC1: u64 = 0x00c;
    pub const INTERCEPT_MISC2: u64 = 0x010;
    pub const IOPM_BASE: u64 = 0x040;
    pub const MSRPM_BASE: u64 = 0x048;
    pub const GUEST_ASID: u64 = 0x058;
    pub const TLB_CONTROL: u64 = 0x05c;
    pub const V_INTR: u64 = 0x060;
    pub const EXIT_CODE: u64 = 0x070;
    pub const EXIT_INFO1: u64 = 0x078;
    pub const EXIT_INFO2: u64 = 0x080;
    pub const EXIT_INT_INFO: u64 = 0x088;
    pub const NP_ENABLE: u64 = 0x090;
    pub const EVENT_INJ: u64 = 0x0a8;
    pub const N_CR3: u64 = 0x0b0;
    pub const CLEAN_BITS: u64 = 0x0c0;
    pub const ES: u64 = 0x400;
    pub const CS: u64 = 0x410;
    pub const SS: u64 = 0x420;
    pub const DS: u64 = 0x430;
    pub const FS: u64 = 0x440;
    pub const GS: u64 = 0x450;
    pub const GDTR: u64 = 0x460;
    pub const LDTR: u64 = 0x470;
    pub const IDTR: u64 = 0x480;
    pub const TR: u64 = 0x490;
    pub const CPL: u64 = 0x4cb;
    pub const EFER: u64 = 0x4d0;
    pub const CR4: u64 = 0x548;
    pub const CR3: u64 = 0x550;
    pub const CR0: u64 = 0x558;
    pub const DR7: u64 = 0x560;
    pub const DR6: u64 = 0x568;
    pub const RFLAGS: u64 = 0x570;
    pub const RIP: u64 = 0x578;
    pub const RSP: u64 = 0x5d8;
    pub const RAX: u64 = 0x5f8;
    pub const KERNEL_GS_BASE: u64 = 0x620;
    pub const CR2: u64 = 0x640;
    pub const G_PAT: u64 = 0x668;
    /// Within a segment: selector u16, attributes u16, limit u32, base u64.
    pub const SEG_SELECTOR: u64 = 0;
    pub const SEG_ATTRIB: u64 = 2;
    pub const SEG_LIMIT: u64 = 4;
    pub const SEG_BASE: u64 = 8;
}

/// Intercept bits (APM Table B-1, vector 3 and 4).
mod intercept {
    pub const INTR: u32 = 1 << 0;
    pub const NMI: u32 = 1 << 1;
    pub const CPUID: u32 = 1 << 18;
    pub const HLT: u32 = 1 << 24;
    pub const INVLPGA: u32 = 1 << 26;
    pub const IOIO_PROT: u32 = 1 << 27;
    pub const MSR_PROT: u32 = 1 << 28;
    pub const SHUTDOWN: u32 = 1 << 31;
    pub const VMRUN: u32 = 1 << 0;
    pub const VMMCALL: u32 = 1 << 1;
    pub const VMLOAD: u32 = 1 << 2;
    pub const VMSAVE: u32 = 1 << 3;
    pub const STGI: u32 = 1 << 4;
    pub const CLGI: u32 = 1 << 5;
    pub const SKINIT: u32 = 1 << 6;
}

/// Exit codes (APM Table C-1).
pub mod exit {
    pub const EXCEPTION_BASE: u64 = 0x40;
    pub const INTR: u64 = 0x60;
    pub const NMI: u64 = 0x61;
    pub const VINTR: u64 = 0x64;
    pub const CPUID: u64 = 0x72;
    pub const HLT: u64 = 0x78;
    pub const IOIO: u64 = 0x7b;
    pub const MSR: u64 = 0x7c;
    pub const SHUTDOWN: u64 = 0x7f;
    pub const VMMCALL: u64 = 0x81;
    pub const NPF: u64 = 0x400;
    pub const INVALID: u64 = u64::MAX;
}

/// The guest's general registers that the VMCB does not hold, in the order
/// the world switch loads and stores them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestGprs {
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

global_asm!(
    r#"
    .section .text
    .global svm_world_switch
    /* rdi: guest VMCB (physical), rsi: &mut GuestGprs, rdx: host save VMCB. */
svm_world_switch:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    push rdx
    push rsi
    push rdi
    mov rax, rdx
    vmsave
    mov rax, rsi
    mov rbx, [rax + 0]
    mov rcx, [rax + 8]
    mov rdx, [rax + 16]
    mov rsi, [rax + 24]
    mov rdi, [rax + 32]
    mov rbp, [rax + 40]
    mov r8, [rax + 48]
    mov r9, [rax + 56]
    mov r10, [rax + 64]
    mov r11, [rax + 72]
    mov r12, [rax + 80]
    mov r13, [rax + 88]
    mov r14, [rax + 96]
    mov r15, [rax + 104]
    mov rax, [rsp]
    vmload
    /* No interrupt reaches the host between here and VMRUN (GIF=0); with
       IF=1 a physical interrupt during the guest causes #VMEXIT(INTR). */
    clgi
    sti
    vmrun
    vmsave
    mov rax, [rsp + 8]
    mov [rax + 0], rbx
    mov [rax + 8], rcx
    mov [rax + 16], rdx
    mov [rax + 24], rsi
    mov [rax + 32], rdi
    mov [rax + 40], rbp
    mov [rax + 48], r8
    mov [rax + 56], r9
    mov [rax + 64], r10
    mov [rax + 72], r11
    mov [rax + 80], r12
    mov [rax + 88], r13
    mov [rax + 96], r14
    mov [rax + 104], r15
    mov rax, [rsp + 16]
    vmload
    /* Pending host interrupts stay pending (IF=0) until the kernel lets
       them in. */
    cli
    stgi
    add rsp, 24
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret
"#
);

unsafe extern "C" {
    fn svm_world_switch(vmcb: u64, gprs: *mut GuestGprs, host: u64);
}

/// Per-CPU SVM state: the host save area and the permission maps every
/// guest shares (all ones: every port and MSR access exits).
struct Host {
    host_vmcb: u64,
    iopm: u64,
    msrpm: u64,
}

static HOST: spin::Once<Host> = spin::Once::new();

/// Turns SVM on for this CPU. Idempotent.
pub fn enable() -> Result<(), &'static str> {
    if HOST.get().is_some() {
        return Ok(());
    }
    let page = |n| memory::alloc_frames(n).map(Frames::leak).ok_or("out of memory for SVM host state");
    let (save_area, host_vmcb, iopm, msrpm) = (page(1)?, page(1)?, page(4)?, page(2)?);
    memory::fill_phys(iopm, 3 * 4096, 0xff);
    memory::fill_phys(msrpm, 2 * 4096, 0xff);
    // SAFETY: enabling SVM (the CPU has it: `virt::detect` said so and
    // VM_CR.SVMDIS is clear) and pointing the host save area at a page the
    // kernel owns for good.
    unsafe {
        wrmsr(IA32_EFER, rdmsr(IA32_EFER) | EFER_SVME);
        wrmsr(MSR_VM_HSAVE_PA, save_area);
    }
    HOST.call_once(|| Host { host_vmcb, iopm, msrpm });
    Ok(())
}

fn read64(vmcb: u64, offset: u64) -> u64 {
    memory::read_phys_u64(vmcb + offset)
}

fn write64(vmcb: u64, offset: u64, value: u64) {
    memory::write_phys(vmcb + offset, &value.to_le_bytes());
}

fn write32(vmcb: u64, offset: u64, value: u32) {
    memory::write_phys(vmcb + offset, &value.to_le_bytes());
}

fn write16(vmcb: u64, offset: u64, value: u16) {
    memory::write_phys(vmcb + offset, &value.to_le_bytes());
}

fn read_bytes<const N: usize>(vmcb: u64, offset: u64) -> [u8; N] {
    let mut buf = [0; N];
    memory::read_phys(vmcb + offset, &mut buf);
    buf
}

/// A segment as the VMCB stores it; attributes in VMCB packing (12 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub selector: u16,
    pub attrib: u16,
    pub limit: u32,
    pub base: u64,
}

pub fn read_segment(vmcb: u64, at: u64) -> Segment {
    let raw: [u8; 16] = read_bytes(vmcb, at);
    Segment {
        selector: u16::from_le_bytes([raw[0], raw[1]]),
        attrib: u16::from_le_bytes([raw[2], raw[3]]),
        limit: u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]),
        base: u64::from_le_bytes(raw[8..16].try_into().unwrap_or([0; 8])),
    }
}

pub fn write_segment(vmcb: u64, at: u64, s: Segment) {
    write16(vmcb, at + vmcb::SEG_SELECTOR, s.selector);
    write16(vmcb, at + vmcb::SEG_ATTRIB, s.attrib);
    write32(vmcb, at + vmcb::SEG_LIMIT, s.limit);
    write64(vmcb, at + vmcb::SEG_BASE, s.base);
}

/// Fills a fresh (zeroed) VMCB: intercepts, nested paging with `ncr3`,
/// `asid`, and the architectural state of a CPU after INIT in real mode at
/// 0000:0000 (the VMM sets the real starting state).
pub fn init_vmcb(vmcb: u64, ncr3: u64, asid: u32) {
    let host = HOST.get().expect("svm::enable runs first");
    write32(vmcb, vmcb::INTERCEPT_EXCEPTIONS, 0);
    write32(
        vmcb,
        vmcb::INTERCEPT_MISC1,
        intercept::INTR
            | intercept::NMI
            | intercept::CPUID
            | intercept::HLT
            | intercept::INVLPGA
            | intercept::IOIO_PROT
            | intercept::MSR_PROT
            | intercept::SHUTDOWN,
    );
    write32(
        vmcb,
        vmcb::INTERCEPT_MISC2,
        intercept::VMRUN
            | intercept::VMMCALL
            | intercept::VMLOAD
            | intercept::VMSAVE
            | intercept::STGI
            | intercept::CLGI
            | intercept::SKINIT,
    );
    write64(vmcb, vmcb::IOPM_BASE, host.iopm);
    write64(vmcb, vmcb::MSRPM_BASE, host.msrpm);
    write32(vmcb, vmcb::GUEST_ASID, asid);
    // Flush this ASID's TLB entries on the first run (QEMU has no
    // flush-by-ASID, so flush everything: encoding 1).
    write32(vmcb, vmcb::TLB_CONTROL, 1);
    // V_INTR_MASKING: the guest's IF controls only virtual interrupts.
    write64(vmcb, vmcb::V_INTR, 1 << 24);
    write64(vmcb, vmcb::NP_ENABLE, 1);
    write64(vmcb, vmcb::N_CR3, ncr3);

    let data = Segment { selector: 0, attrib: 0x093, limit: 0xffff, base: 0 };
    for at in [vmcb::ES, vmcb::SS, vmcb::DS, vmcb::FS, vmcb::GS] {
        write_segment(vmcb, at, data);
    }
    write_segment(vmcb, vmcb::CS, Segment { attrib: 0x09b, ..data });
    write_segment(vmcb, vmcb::LDTR, Segment { attrib: 0x082, ..data });
    write_segment(vmcb, vmcb::TR, Segment { attrib: 0x083, ..data });
    write_segment(vmcb, vmcb::GDTR, Segment { attrib: 0, ..data });
    write_segment(vmcb, vmcb::IDTR, Segment { attrib: 0, ..data });
    // The guest's EFER must keep SVME set (APM 15.5.1).
    write64(vmcb, vmcb::EFER, EFER_SVME);
    write64(vmcb, vmcb::CR0, 0x10);
    write64(vmcb, vmcb::RFLAGS, 0x2);
    write64(vmcb, vmcb::DR6, 0xffff_0ff0);
    write64(vmcb, vmcb::DR7, 0x400);
    write64(vmcb, vmcb::G_PAT, 0x0007_0406_0007_0406);
}

/// Runs the guest until it exits. Interrupts that arrived meanwhile are
/// left pending for the caller to let in.
pub fn run(vmcb: u64, gprs: &mut GuestGprs, flush_tlb: bool) -> super::vm::Exit {
    let host = HOST.get().expect("svm::enable runs first");
    if flush_tlb {
        write32(vmcb, vmcb::TLB_CONTROL, 1);
    }
    // SAFETY: `vmcb` is a VMCB initialised by `init_vmcb` whose nested page
    // tables map only memory given to the partition; `host_vmcb` is this
    // CPU's VMSAVE area. The switch returns with host state restored.
    unsafe { svm_world_switch(vmcb, gprs, host.host_vmcb) };
    write32(vmcb, vmcb::TLB_CONTROL, 0);
    decode_exit(
        read64(vmcb, vmcb::EXIT_CODE),
        read64(vmcb, vmcb::EXIT_INFO1),
        read64(vmcb, vmcb::EXIT_INFO2),
        read64(vmcb, vmcb::RIP),
    )
}

/// An SVM exit in backend-neutral terms. QEMU has no nRIP save, so lengths
/// come from the instruction (IOIO gives the next RIP in EXITINFO2).
fn decode_exit(code: u64, info1: u64, info2: u64, rip: u64) -> super::vm::Exit {
    use super::vm::{Access, Exit, ExitReason};
    use kerncore::intercept::{IoDirection, IoPortAccess, IoSize};
    let (reason, length) = match code {
        exit::INTR | exit::NMI | exit::VINTR => (ExitReason::HostInterrupt, 0),
        exit::IOIO => {
            // EXITINFO1 (APM 15.10.2): bit 0 IN, 2 string, 3 REP, 4..6 size
            // (one-hot 8/16/32), 16..31 port.
            let size = match (info1 >> 4) & 7 {
                1 => IoSize::Byte,
                2 => IoSize::Word,
                _ => IoSize::Dword,
            };
            let access = IoPortAccess {
                port: (info1 >> 16) as u16,
                size,
                direction: if info1 & 1 != 0 { IoDirection::In } else { IoDirection::Out },
                string: info1 & (1 << 2) != 0,
                rep: info1 & (1 << 3) != 0,
            };
            (ExitReason::Io(access), info2.wrapping_sub(rip).min(15) as u8)
        }
        exit::CPUID => (ExitReason::Cpuid, 2),
        exit::HLT => (ExitReason::Hlt, 1),
        exit::MSR => (ExitReason::Msr { write: info1 & 1 != 0 }, 2),
        exit::NPF => {
            // EXITINFO1: bit 0 present, 1 write, 4 instruction fetch.
            let access = if info1 & (1 << 4) != 0 {
                Access::Execute
            } else if info1 & (1 << 1) != 0 {
                Access::Write
            } else {
                Access::Read
            };
            (ExitReason::GuestMemory { gpa: info2, access, mapped: info1 & 1 != 0 }, 0)
        }
        exit::SHUTDOWN => (ExitReason::Shutdown, 0),
        other => (ExitReason::Other(other), 0),
    };
    Exit { reason, rip, instruction_length: length }
}

/// CPL and mode bits for intercept messages.
pub fn execution_state(vmcb: u64) -> super::vm::ExecutionState {
    super::vm::ExecutionState {
        cpl: cpl(vmcb),
        cr0: read64(vmcb, vmcb::CR0),
        efer: read64(vmcb, vmcb::EFER) & !EFER_SVME,
        rflags: read64(vmcb, vmcb::RFLAGS),
    }
}

pub fn get(vmcb: u64, offset: u64) -> u64 {
    read64(vmcb, offset)
}

pub fn set(vmcb: u64, offset: u64, value: u64) {
    write64(vmcb, offset, value);
}

/// TLFS segment attributes (VMX-style access rights: bits 12..15 hold
/// AVL, L, D/B, G) from the VMCB's packing (those in bits 8..11), and back.
fn attrib_to_tlfs(attrib: u16) -> u16 {
    (attrib & 0xff) | ((attrib & 0xf00) << 4)
}

fn attrib_from_tlfs(attrib: u16) -> u16 {
    (attrib & 0xff) | ((attrib >> 4) & 0xf00)
}

fn segment_offset(name: HvRegisterName) -> Option<u64> {
    Some(match name {
        HvRegisterName::ES => vmcb::ES,
        HvRegisterName::CS => vmcb::CS,
        HvRegisterName::SS => vmcb::SS,
        HvRegisterName::DS => vmcb::DS,
        HvRegisterName::FS => vmcb::FS,
        HvRegisterName::GS => vmcb::GS,
        HvRegisterName::LDTR => vmcb::LDTR,
        HvRegisterName::TR => vmcb::TR,
        _ => return None,
    })
}

fn vmcb_offset(name: HvRegisterName) -> Option<u64> {
    Some(match name {
        HvRegisterName::RAX => vmcb::RAX,
        HvRegisterName::RSP => vmcb::RSP,
        HvRegisterName::RIP => vmcb::RIP,
        HvRegisterName::RFLAGS => vmcb::RFLAGS,
        HvRegisterName::CR0 => vmcb::CR0,
        HvRegisterName::CR2 => vmcb::CR2,
        HvRegisterName::CR3 => vmcb::CR3,
        HvRegisterName::CR4 => vmcb::CR4,
        HvRegisterName::DR6 => vmcb::DR6,
        HvRegisterName::DR7 => vmcb::DR7,
        HvRegisterName::EFER => vmcb::EFER,
        HvRegisterName::KERNEL_GS_BASE => vmcb::KERNEL_GS_BASE,
        HvRegisterName::PAT => vmcb::G_PAT,
        _ => return None,
    })
}

fn gpr(gprs: &mut GuestGprs, name: HvRegisterName) -> Option<&mut u64> {
    Some(match name {
        HvRegisterName::RBX => &mut gprs.rbx,
        HvRegisterName::RCX => &mut gprs.rcx,
        HvRegisterName::RDX => &mut gprs.rdx,
        HvRegisterName::RSI => &mut gprs.rsi,
        HvRegisterName::RDI => &mut gprs.rdi,
        HvRegisterName::RBP => &mut gprs.rbp,
        HvRegisterName::R8 => &mut gprs.r8,
        HvRegisterName::R9 => &mut gprs.r9,
        HvRegisterName::R10 => &mut gprs.r10,
        HvRegisterName::R11 => &mut gprs.r11,
        HvRegisterName::R12 => &mut gprs.r12,
        HvRegisterName::R13 => &mut gprs.r13,
        HvRegisterName::R14 => &mut gprs.r14,
        HvRegisterName::R15 => &mut gprs.r15,
        _ => return None,
    })
}

/// A register as a TLFS 128-bit value (low, high); `None` if unsupported.
pub fn get_register(vmcb: u64, gprs: &mut GuestGprs, name: HvRegisterName) -> Option<(u64, u64)> {
    if let Some(r) = gpr(gprs, name) {
        return Some((*r, 0));
    }
    if let Some(at) = vmcb_offset(name) {
        let mut value = read64(vmcb, at);
        if name == HvRegisterName::EFER {
            value &= !EFER_SVME;
        }
        return Some((value, 0));
    }
    if let Some(at) = segment_offset(name) {
        let s = read_segment(vmcb, at);
        let high = u64::from(s.limit) | u64::from(s.selector) << 32 | u64::from(attrib_to_tlfs(s.attrib)) << 48;
        return Some((s.base, high));
    }
    let table = match name {
        HvRegisterName::GDTR => vmcb::GDTR,
        HvRegisterName::IDTR => vmcb::IDTR,
        _ => return None,
    };
    let s = read_segment(vmcb, table);
    Some((u64::from(s.limit as u16) << 48, s.base))
}

/// Sets a register from a TLFS 128-bit value; false if unsupported.
pub fn set_register(vmcb: u64, gprs: &mut GuestGprs, name: HvRegisterName, low: u64, high: u64) -> bool {
    if let Some(r) = gpr(gprs, name) {
        *r = low;
        return true;
    }
    if let Some(at) = vmcb_offset(name) {
        // The guest's EFER.SVME stays set whatever the VMM asks for.
        let value = if name == HvRegisterName::EFER { low | EFER_SVME } else { low };
        write64(vmcb, at, value);
        return true;
    }
    if let Some(at) = segment_offset(name) {
        let segment = Segment {
            base: low,
            limit: high as u32,
            selector: (high >> 32) as u16,
            attrib: attrib_from_tlfs((high >> 48) as u16),
        };
        write_segment(vmcb, at, segment);
        return true;
    }
    let table = match name {
        HvRegisterName::GDTR => vmcb::GDTR,
        HvRegisterName::IDTR => vmcb::IDTR,
        _ => return false,
    };
    write_segment(vmcb, table, Segment { selector: 0, attrib: 0, limit: u32::from((low >> 48) as u16), base: high });
    true
}

/// The current CPL and mode bits for an exit message.
pub fn cpl(vmcb: u64) -> u8 {
    read_bytes::<1>(vmcb, vmcb::CPL)[0]
}
