//! AMD SVM: enabling it, the VMCB of a virtual processor, the world switch
//! and the decoding of exits (AMD APM Vol. 2, chapter 15 and appendix B).
//!
//! The VMCB is one 4 KiB frame the kernel owns. Its layout, intercept bits,
//! exit codes and EXITINFO formats are `kerncore::svm`'s; this module views
//! the frame as a [`Vmcb`] through the direct map (zerocopy, no pointer
//! cast) whenever the guest is not running. Guest state that is not in the
//! VMCB (all general registers but RAX and RSP) lives in [`GuestGprs`] and
//! is swapped by the assembly around VMRUN. Host state that VMRUN does not
//! switch (FS, GS, TR, LDTR bases, the syscall MSRs) is saved and restored
//! with VMSAVE/VMLOAD around it, all with GIF clear, so no host event runs
//! on the guest's TR or GS (`tests/world_switch.rs` guards the order).

use super::memory;
use super::vm::{EntryFlush, ExecutionState, InterceptState, VpOps};
use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use kerncore::event::Interruption;
use kerncore::frames::Frames;
use kerncore::intercept::{REFLECTED_EXCEPTIONS, instruction_length, vector};
use kerncore::svm::{
    EFER_SVME, GeneralIntercepts1, GeneralIntercepts2, IoioExitInfo, NestedControl, NpfExitInfo, RegisterIntercepts,
    SegmentAttributes, SvmExitCode, TlbControl, VirtualInterruptControl, Vmcb, VmcbSegment, length_to_next, msr,
};
use kerncore::tags::VpTag;
use kerncore::virt::VirtSupport;
use tlfs::HvRegisterName;
use tlfs::exit_state::ExitState;
use tlfs::zerocopy::FromBytes;
use x86::msr::{rdmsr, wrmsr};
use x86defs::{CR0_PE, RFLAGS_IF};

/// The guest's general registers that the VMCB does not hold, in the order
/// the world switch loads and stores them. Shared with the VMX backend,
/// which keeps RAX here too: SVM ignores [`GuestGprs::rax`] (the VMCB holds
/// the guest's RAX).
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
    /// VMX only; after every field the SVM world switch uses.
    pub rax: u64,
}

impl GuestGprs {
    /// The register `name` among RBX..R15 (not RAX, whose home differs
    /// between the backends, nor RSP, which both keep in hardware state).
    pub fn named(&mut self, name: HvRegisterName) -> Option<&mut u64> {
        Some(match name {
            HvRegisterName::RBX => &mut self.rbx,
            HvRegisterName::RCX => &mut self.rcx,
            HvRegisterName::RDX => &mut self.rdx,
            HvRegisterName::RSI => &mut self.rsi,
            HvRegisterName::RDI => &mut self.rdi,
            HvRegisterName::RBP => &mut self.rbp,
            HvRegisterName::R8 => &mut self.r8,
            HvRegisterName::R9 => &mut self.r9,
            HvRegisterName::R10 => &mut self.r10,
            HvRegisterName::R11 => &mut self.r11,
            HvRegisterName::R12 => &mut self.r12,
            HvRegisterName::R13 => &mut self.r13,
            HvRegisterName::R14 => &mut self.r14,
            HvRegisterName::R15 => &mut self.r15,
            _ => return None,
        })
    }

    /// All sixteen in `tlfs::exit_state::GPRS` order, with the backend's
    /// RAX and RSP.
    pub fn in_exit_order(&self, rax: u64, rsp: u64) -> [u64; 16] {
        let g = self;
        [rax, g.rcx, g.rdx, g.rbx, rsp, g.rbp, g.rsi, g.rdi, g.r8, g.r9, g.r10, g.r11, g.r12, g.r13, g.r14, g.r15]
    }
}

// The SVM world switch below addresses RBX..R15 at 0..=104.
const _: () = assert!(core::mem::offset_of!(GuestGprs, rbx) == 0 && core::mem::offset_of!(GuestGprs, r15) == 104);

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
    /* GIF=0 from here until the host's state is back: no NMI, SMI or
       interrupt may run host code while VMLOAD has put the guest's TR, FS,
       GS, KERNEL_GS_BASE and syscall MSRs into the CPU. With IF=1 a
       physical interrupt during the guest causes #VMEXIT(INTR); GIF=0
       holds it from the host until then. STI comes well before VMRUN:
       QEMU carries an STI shadow on VMRUN over into the guest, where it
       would hold a virtual interrupt past the guest's first instruction. */
    clgi
    sti
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
    /* No return target the guest left in the RSB may steer the host's
       returns: fill it before the first RET. */
"#,
    super::speculation::rsb_fill!(),
    r#"
    /* Pending host interrupts stay pending (IF=0) until the kernel lets
       them in; GIF stays 0 until `run` has disarmed what the guest left
       armed (`dr`), and a pending NMI is taken at its STGI, on the host's
       state. */
    cli
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

/// The SVM state shared by every CPU: the permission maps every guest
/// shares (all ones: every port and MSR access exits), and the VMSAVE area
/// of the CPU guests run on (the boot CPU, for now).
struct Host {
    iopm: u64,
    msrpm: u64,
    /// The CPU saves the next instruction's RIP on instruction intercepts.
    nrip_save: bool,
    /// ASIDs the CPU has (ASID 0 is the host's): the tag pools' size.
    asids: u32,
}

static HOST: spin::Once<Host> = spin::Once::new();

/// Each CPU's host save area (VM_HSAVE_PA, by `percpu::index`), 0 until
/// SVM is on there.
static HOST_SAVE_AREAS: [AtomicU64; super::smp::MAX_CPUS] = [const { AtomicU64::new(0) }; super::smp::MAX_CPUS];
/// Each CPU's VMSAVE/VMLOAD area for the host's own state around VMRUN.
static HOST_VMCBS: [AtomicU64; super::smp::MAX_CPUS] = [const { AtomicU64::new(0) }; super::smp::MAX_CPUS];

/// Turns SVM on for this CPU: the shared state once, then EFER.SVME and
/// this CPU's host save area. Idempotent.
pub fn enable() -> Result<(), &'static str> {
    let cpu = super::percpu::index();
    if HOST_SAVE_AREAS[cpu].load(Relaxed) != 0 {
        return Ok(());
    }
    let page = |n| memory::alloc_frames(n).map(Frames::leak).ok_or("out of memory for SVM host state");
    HOST.try_call_once(|| {
        let (iopm, msrpm) = (page(4)?, page(2)?);
        memory::fill_phys(iopm, 3 * 4096, 0xff);
        memory::fill_phys(msrpm, 2 * 4096, 0xff);
        // The syscall and segment-base MSRs are the guest's own: VMLOAD and
        // VMSAVE switch them around VMRUN. Writes of those holding an
        // address still exit, for ring 0's canonical check
        // (`CHECKED_ADDRESS_MSRS`).
        for msr in kerncore::intercept::PASS_THROUGH_MSRS {
            if let Some((byte, bit)) = kerncore::intercept::svm_msrpm_bit(msr) {
                let mut b = [0u8];
                let open = if kerncore::intercept::CHECKED_ADDRESS_MSRS.contains(&msr) { 0b01 } else { 0b11 };
                memory::read_phys(msrpm + byte as u64, &mut b);
                memory::write_phys(msrpm + byte as u64, &[b[0] & !(open << bit)]);
            }
        }
        let svm = match crate::boot::virt_support() {
            Some(VirtSupport::Svm(s)) => Some(s),
            _ => None,
        };
        let nrip_save = svm.is_some_and(|s| s.features.nrip_save());
        let asids = svm.map_or(0, |s| s.asids);
        Ok::<_, &'static str>(Host { iopm, msrpm, nrip_save, asids })
    })?;
    let (save_area, host_vmcb) = (page(1)?, page(1)?);
    // SAFETY: enabling SVM (the CPU has it: `virt::detect` said so and
    // VM_CR.SVMDIS is clear) and pointing the host save area at a page the
    // kernel owns for good.
    unsafe {
        wrmsr(msr::IA32_EFER, rdmsr(msr::IA32_EFER) | EFER_SVME);
        wrmsr(msr::VM_HSAVE_PA, save_area);
    }
    super::dr::set_host_dr7();
    HOST_VMCBS[cpu].store(host_vmcb, Relaxed);
    HOST_SAVE_AREAS[cpu].store(save_area, Relaxed);
    Ok(())
}

/// Runs `f` on the VMCB at `vmcb`. Only while the guest is not running:
/// the CPU owns the frame during VMRUN.
fn with_vmcb<R>(vmcb: u64, f: impl FnOnce(&mut Vmcb) -> R) -> R {
    memory::with_frame_mut(vmcb, |page| match Vmcb::mut_from_bytes(page) {
        Ok(v) => f(v),
        // A page-aligned 4 KiB frame always holds a Vmcb (size and
        // alignment are pinned in kerncore).
        Err(_) => unreachable!("a VMCB frame is one aligned page"),
    })
}

/// Attributes of a present segment: `segment_type`, code/data or system.
fn present(segment_type: u8, code_or_data: bool) -> SegmentAttributes {
    SegmentAttributes::new().with_segment_type(segment_type).with_code_or_data(code_or_data).with_present(true)
}

/// Fills a fresh (zeroed) VMCB: intercepts, nested paging with `ncr3`,
/// `asid`, and the architectural state of a CPU after INIT in real mode at
/// 0000:0000 (the VMM sets the real starting state).
fn init_vmcb(vmcb: u64, ncr3: u64, asid: u32) {
    let host = HOST.get().expect("svm::enable runs first");
    // Nothing of an earlier guest stays (the save area's MSRs, CR2,
    // segment bases): the fields not set below start at 0.
    memory::zero_phys(vmcb, kerncore::paging::PAGE_SIZE);
    with_vmcb(vmcb, |v| {
        let c = &mut v.control;
        // As under VMX: #DB and #AC, XSETBV, INVD, WBINVD, RDPMC, MONITOR,
        // MWAIT and every debug-register access (until the VP's first, see
        // `dr`) exit; a machine check is the host's business, never the
        // guest's. SVM's own instructions exit too (VMRUN must).
        c.exception_intercepts = REFLECTED_EXCEPTIONS | 1 << kerncore::mce::VECTOR;
        c.intercepts1 = GeneralIntercepts1::new()
            .with_intr(true)
            .with_nmi(true)
            .with_rdpmc(true)
            .with_cpuid(true)
            .with_invd(true)
            .with_hlt(true)
            .with_invlpga(true)
            .with_ioio_prot(true)
            .with_msr_prot(true)
            .with_shutdown(true);
        c.intercepts2 = GeneralIntercepts2::new()
            .with_vmrun(true)
            .with_vmmcall(true)
            .with_vmload(true)
            .with_vmsave(true)
            .with_stgi(true)
            .with_clgi(true)
            .with_skinit(true)
            .with_wbinvd(true)
            .with_monitor(true)
            .with_mwait(true)
            .with_xsetbv(true);
        c.dr_intercepts = all_registers();
        // CR0 and CR4 writes (MOV, CLTS, LMSW) exit for ring 0 to check
        // them as the SDM and the APM say: QEMU's TCG does not.
        c.cr_intercepts = RegisterIntercepts::new().with_writes(1 << 0 | 1 << 4);
        c.iopm_base_pa = host.iopm;
        c.msrpm_base_pa = host.msrpm;
        // Replaced by the VP's own ASID at each entry (`run`).
        c.guest_asid = asid;
        // The guest's IF controls only virtual interrupts.
        c.virtual_interrupt = VirtualInterruptControl::new().with_v_intr_masking(true);
        c.nested_control = NestedControl::new().with_np_enable(true);
        c.n_cr3 = ncr3;

        let s = &mut v.save;
        // Read/write data (type 3), execute/read code (type 11), LDT (2),
        // busy 16-bit TSS (3): flat 64 KiB segments at 0.
        let data = VmcbSegment { selector: 0, attributes: present(3, true), limit: 0xffff, base: 0 };
        for segment in [&mut s.es, &mut s.ss, &mut s.ds, &mut s.fs, &mut s.gs] {
            *segment = data;
        }
        s.cs = VmcbSegment { attributes: present(11, true), ..data };
        s.ldtr = VmcbSegment { attributes: present(2, false), ..data };
        s.tr = VmcbSegment { attributes: present(3, false), ..data };
        s.gdtr = VmcbSegment { attributes: SegmentAttributes::new(), ..data };
        s.idtr = VmcbSegment { attributes: SegmentAttributes::new(), ..data };
        // The guest's EFER must keep SVME set (APM 15.5.1).
        s.efer = EFER_SVME;
        s.cr0 = 0x10;
        s.rflags = 0x2;
        s.dr6 = kerncore::debugreg::DR6_INIT;
        s.dr7 = kerncore::debugreg::DR7_INIT;
        s.g_pat = 0x0007_0406_0007_0406;
    });
}

/// Reads and writes of DR0-DR15 (CR0-CR15 alike).
fn all_registers() -> RegisterIntercepts {
    RegisterIntercepts::new().with_reads(0xffff).with_writes(0xffff)
}

/// Intercepts (or stops intercepting) every debug-register access.
fn intercept_debug_registers(vmcb: u64, on: bool) {
    with_vmcb(vmcb, |v| {
        v.control.dr_intercepts = if on { all_registers() } else { RegisterIntercepts::new() };
    });
}

/// Runs the guest until it exits. Interrupts that arrived meanwhile are
/// left pending for the caller to let in.
/// `dr7_native`: the guest's next DR7 write runs natively (see `dr`);
/// set when this run's exit was one that the re-arming intercepted.
fn run(vmcb: u64, tag: &mut VpTag, gprs: &mut GuestGprs, flush: EntryFlush, dr7_native: &mut bool) -> super::vm::Exit {
    let host = HOST.get().expect("svm::enable runs first");
    // Its own ASID on this CPU: a fresh one when its translations are
    // stale (nested ones are tagged with the ASID too), and a flush of
    // every ASID when the CPU's ran out (QEMU has no flush by ASID).
    let entry = super::vm::enter_tag(tag, flush.vp || flush.partition, host.asids);
    let native = core::mem::take(dr7_native);
    let rearm_dr7 = with_vmcb(vmcb, |v| {
        v.control.guest_asid = entry.tag;
        if entry.flush_all {
            v.control.tlb_control = TlbControl::FLUSH_ALL;
        }
        // Its debug registers are live (no access intercepted): arm its
        // breakpoints before the entry, and intercept its DR7 writes
        // meanwhile, unless one is to run natively now.
        let live = v.control.dr_intercepts.reads() == 0;
        let rearm = (live && !native).then(|| kerncore::debugreg::dr7_to_rearm(v.save.dr7)).flatten();
        if live {
            v.control.dr_intercepts = RegisterIntercepts::new().with_writes(if rearm.is_some() { 1 << 7 } else { 0 });
        }
        rearm
    });
    if super::nmi::test_due(super::nmi::TestPoint::WorldSwitch) {
        // The NMI waits for GIF, so it ends the guest's run at once.
        clear_gif();
        super::nmi::send_test_nmi(super::nmi::TestPoint::WorldSwitch);
    }
    let host_vmcb = super::percpu::local(&HOST_VMCBS).load(Relaxed);
    if let Some(value) = rearm_dr7 {
        // With GIF=0 (the world switch's CLGI comes anyway): no NMI runs
        // host code while the guest's breakpoints are armed.
        clear_gif();
        super::dr::rearm(value);
    }
    // SAFETY: `vmcb` is a VMCB initialised by `init_vmcb` whose nested page
    // tables map only memory given to the partition; `host_vmcb` is this
    // CPU's VMSAVE area. The switch returns with host state restored.
    unsafe { svm_world_switch(vmcb, gprs, host_vmcb) };
    let exit = with_vmcb(vmcb, |v| {
        super::dr::disarm_after_exit(v.save.dr7);
        // Its DR7 write, intercepted because of the re-arming, runs again
        // natively next time (ring 0 resumes it unchanged).
        *dr7_native = rearm_dr7.is_some() && v.control.exit_code == SvmExitCode::dr_write(7);
        v.control.tlb_control = TlbControl::DO_NOTHING;
        let exit = decode_exit(v.control.exit_code, v.control.exit_info1, v.control.exit_info2, v.save.rip);
        let vi = v.control.virtual_interrupt;
        let offered = vi.v_irq().then_some(vi.v_intr_vector());
        let interrupted = Interruption::interrupted_svm(core::mem::take(&mut v.control.exit_int_info), offered);
        let next_rip = v.control.next_rip;
        let nrip = if host.nrip_save { length_to_next(exit.rip, next_rip) } else { None };
        let length = match nrip {
            Some(length) if exit.instruction_length != 0 => length,
            _ => exit.instruction_length,
        };
        super::vm::Exit { interrupted, instruction_length: length, ..exit }
    });
    // The guest's breakpoints are disarmed: NMIs may run host code again.
    set_gif();
    exit
}

/// Clears GIF: no interrupt, NMI or SMI reaches the host until the world
/// switch's STGI, which always follows.
fn clear_gif() {
    // SAFETY: CLGI only holds events pending (SVM is enabled: `run` is
    // called after `enable`); `run` sets GIF again after the switch.
    unsafe { core::arch::asm!("clgi", options(nomem, nostack)) };
}

/// Lets NMIs (and SMIs) in again after `run`'s world switch.
fn set_gif() {
    // SAFETY: STGI only lets held events in; the host's state is back
    // (the world switch's VMLOAD) and the guest's breakpoints disarmed.
    unsafe { core::arch::asm!("stgi", options(nomem, nostack)) };
}

/// An SVM exit in backend-neutral terms. Without nRIP save (QEMU), lengths
/// come from the instruction's shortest encoding (IOIO gives the next RIP
/// in EXITINFO2); `run` prefers the next RIP where the CPU saves it.
fn decode_exit(code: SvmExitCode, info1: u64, info2: u64, rip: u64) -> super::vm::Exit {
    use super::vm::{Access, CrAccess, Exit, ExitReason};
    let (reason, length) = match code {
        SvmExitCode::INTR => (ExitReason::HostInterrupt, 0),
        // The NMI stays pending until the world switch's STGI, where the
        // host's handler takes it.
        SvmExitCode::NMI => {
            super::nmi::note_vm_exit();
            (ExitReason::HostInterrupt, 0)
        }
        // The guest's NMI handler reached IRET (`Vp::run`).
        SvmExitCode::VINTR | SvmExitCode::IRET => (ExitReason::InterruptWindow, 0),
        SvmExitCode::IOIO => match IoioExitInfo::from(info1).access() {
            // 0 (not said) if EXITINFO2 is no next RIP: the VMM decodes.
            Some(access) => (ExitReason::Io(access), length_to_next(rip, info2).unwrap_or(0)),
            None => (ExitReason::Other(code.0), 0),
        },
        SvmExitCode::CPUID => (ExitReason::Cpuid, 2),
        SvmExitCode::HLT => (ExitReason::Hlt, 1),
        SvmExitCode::VMMCALL => (ExitReason::Hypercall, 3),
        // EXITINFO1 is 1 for WRMSR, 0 for RDMSR.
        SvmExitCode::MSR => (ExitReason::Msr { write: info1 & 1 != 0 }, 2),
        SvmExitCode::NPF => {
            let info = NpfExitInfo::from(info1);
            let access = if info.fetch() {
                Access::Execute
            } else if info.write() {
                Access::Write
            } else {
                Access::Read
            };
            (ExitReason::GuestMemory { gpa: info2, access, mapped: info.present() }, 0)
        }
        SvmExitCode::SHUTDOWN => (ExitReason::Shutdown, 0),
        SvmExitCode::XSETBV => (ExitReason::Xsetbv, instruction_length::XSETBV),
        SvmExitCode::INVD => (ExitReason::CacheFlush, instruction_length::INVD),
        SvmExitCode::WBINVD => (ExitReason::CacheFlush, instruction_length::WBINVD),
        SvmExitCode::RDPMC => (ExitReason::Rdpmc, instruction_length::RDPMC),
        code if code.is_not_offered_instruction() => (ExitReason::NotOffered, 0),
        code if code.is_dr_access() => (ExitReason::DebugRegister, 0),
        // Decoded by ring 0 (no decode assists in QEMU), length included.
        SvmExitCode::WRITE_CR0 => (ExitReason::ControlRegister(CrAccess::Undecoded { cr: 0 }), 0),
        SvmExitCode::WRITE_CR4 => (ExitReason::ControlRegister(CrAccess::Undecoded { cr: 4 }), 0),
        // The CPU has updated DR6 (and cleared DR7.GD) in the VMCB already:
        // the #DB only remains to be delivered. #AC's error code (0) is in
        // EXITINFO1.
        SvmExitCode::EXCEPTION_DB => (ExitReason::Exception(Interruption::exception(vector::DEBUG, None)), 0),
        SvmExitCode::EXCEPTION_AC => {
            (ExitReason::Exception(Interruption::exception(vector::ALIGNMENT_CHECK, Some(info1 as u32))), 0)
        }
        code if code.as_exception() == Some(kerncore::mce::VECTOR) => (ExitReason::MachineCheck, 0),
        other => (ExitReason::Other(other.0), 0),
    };
    Exit { reason, rip, instruction_length: length, interrupted: None }
}

/// Injects `event` at the next VMRUN if the guest can take it now (true);
/// otherwise opens the interrupt window (false).
fn inject(vmcb: u64, event: &Interruption) -> bool {
    with_vmcb(vmcb, |v| {
        let interrupts_enabled = v.save.rflags & RFLAGS_IF != 0;
        let shadow = v.control.interrupt_state.interrupt_shadow();
        let deliverable = event.deliverable(interrupts_enabled, shadow);
        set_window(v, !deliverable);
        if deliverable {
            if event.is_software() {
                // No next-RIP in QEMU: the CPU pushes RIP as it is.
                v.save.rip = v.save.rip.wrapping_add(u64::from(event.instruction_length));
            }
            v.control.event_injection = event.to_svm(v.save.cr0 & CR0_PE != 0);
        }
        deliverable
    })
}

/// Opens or closes the interrupt window: a virtual interrupt request with
/// the TPR ignored and VINTR intercepted exits as soon as the guest could
/// take an interrupt; no virtual interrupt is ever delivered by it.
fn set_window(v: &mut Vmcb, open: bool) {
    v.control.virtual_interrupt = v.control.virtual_interrupt.with_v_irq(open).with_v_ignore_tpr(open);
    v.control.intercepts1 = v.control.intercepts1.with_vintr(open);
}

/// Asks for (or stops asking for) an exit when the guest can take an interrupt.
fn request_window(vmcb: u64, open: bool) {
    with_vmcb(vmcb, |v| set_window(v, open));
}

/// Offers external interrupt `vector` as a virtual interrupt: the CPU
/// delivers it itself once RFLAGS.IF is set and no shadow is on (the TPR
/// is the VMM's business: ignored), with no exit, and clears V_IRQ when it
/// does. EVENTINJ would be exact too, but QEMU's TCG leaves an injected
/// INTR's vector behind in its CPU loop and can deliver it a second time,
/// with IF clear (SECURITY.md 5); it never does so for V_IRQ.
fn offer(vmcb: u64, vector: u8) {
    with_vmcb(vmcb, |v| {
        v.control.virtual_interrupt = v
            .control
            .virtual_interrupt
            .with_v_irq(true)
            .with_v_ignore_tpr(true)
            .with_v_intr_priority(0xf)
            .with_v_intr_vector(vector);
        v.control.intercepts1 = v.control.intercepts1.with_vintr(false);
    });
}

/// The offered interrupt is gone from V_IRQ: the guest took it.
fn offer_taken(vmcb: u64) -> bool {
    with_vmcb(vmcb, |v| !v.control.virtual_interrupt.v_irq())
}

/// CPL and mode bits for intercept messages.
fn execution_state(vmcb: u64) -> ExecutionState {
    with_vmcb(vmcb, execution)
}

fn execution(v: &mut Vmcb) -> ExecutionState {
    ExecutionState { cpl: v.save.cpl, cr0: v.save.cr0, efer: v.save.efer & !EFER_SVME, rflags: v.save.rflags }
}

/// A register as a TLFS 128-bit value (low, high); `None` if unsupported.
fn get_register(vmcb: u64, gprs: &mut GuestGprs, name: HvRegisterName) -> Option<(u64, u64)> {
    if let Some(r) = gprs.named(name) {
        return Some((*r, 0));
    }
    with_vmcb(vmcb, |v| v.get_register(name))
}

/// Sets a register from a TLFS 128-bit value; false if unsupported.
fn set_register(vmcb: u64, gprs: &mut GuestGprs, name: HvRegisterName, low: u64, high: u64) -> bool {
    if let Some(r) = gprs.named(name) {
        *r = low;
        return true;
    }
    with_vmcb(vmcb, |v| v.set_register(name, low, high))
}

/// A VP under SVM: its VMCB, one frame the kernel owns.
pub struct Vp {
    vmcb: Frames,
    /// Its ASID on the CPU it last ran on.
    tag: VpTag,
    /// Whether the guest's NMIs are blocked.
    nmi: GuestNmi,
    /// Its next DR7 write runs natively (`run`).
    dr7_native: bool,
}

/// The guest's NMI blocking (SDM Vol. 3A §6.7.1, APM Vol. 2 §8.2.4): from
/// the delivery of an NMI until the next IRET. Without vNMI the CPU does
/// not track it for an injected NMI (and QEMU's TCG does not either), so
/// ring 0 does, as KVM does: IRET is intercepted while NMIs are blocked,
/// and the IRET has run once the guest exits anywhere else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GuestNmi {
    Unblocked,
    /// An NMI was injected; its handler has not reached IRET.
    Blocked,
    /// The handler's IRET at this RIP exited and runs at the next entry.
    Unblocking(u64),
}

/// Intercepts IRET (or stops).
fn intercept_iret(vmcb: u64, on: bool) {
    with_vmcb(vmcb, |v| v.control.intercepts1 = v.control.intercepts1.with_iret(on));
}

impl VpOps for Vp {
    fn new() -> Option<Vp> {
        memory::alloc_frames(1).map(|vmcb| Vp {
            vmcb,
            tag: VpTag::default(),
            nmi: GuestNmi::Unblocked,
            dr7_native: false,
        })
    }

    fn init(&mut self, ncr3: u64, asid: u32) {
        init_vmcb(self.vmcb.start(), ncr3, asid);
        // Perhaps another partition's now: nothing cached under its old ASID may serve it.
        self.tag = VpTag::default();
        self.nmi = GuestNmi::Unblocked;
        self.dr7_native = false;
    }

    fn run(&mut self, gprs: &mut GuestGprs, flush: EntryFlush) -> super::vm::Exit {
        let vmcb = self.vmcb.start();
        let exit = run(vmcb, &mut self.tag, gprs, flush, &mut self.dr7_native);
        let before = self.nmi;
        if before == GuestNmi::Unblocked {
            // Nothing to track: the common exit touches the VMCB no more.
            return exit;
        }
        let iret = with_vmcb(vmcb, |v| v.control.exit_code == SvmExitCode::IRET);
        self.nmi = match before {
            // An NMI whose delivery the exit cut short was not delivered.
            _ if exit.interrupted.is_some_and(|e| e.is_nmi()) => GuestNmi::Unblocked,
            GuestNmi::Blocked if iret => GuestNmi::Unblocking(exit.rip),
            GuestNmi::Unblocking(rip) if exit.rip != rip => GuestNmi::Unblocked,
            other => other,
        };
        if (before == GuestNmi::Blocked) != (self.nmi == GuestNmi::Blocked) {
            intercept_iret(vmcb, self.nmi == GuestNmi::Blocked);
        }
        exit
    }

    fn get_register(&mut self, gprs: &mut GuestGprs, name: HvRegisterName) -> Option<(u64, u64)> {
        get_register(self.vmcb.start(), gprs, name)
    }

    fn set_register(&mut self, gprs: &mut GuestGprs, name: HvRegisterName, low: u64, high: u64) -> bool {
        set_register(self.vmcb.start(), gprs, name, low, high)
    }

    fn writable(&mut self, gprs: &mut GuestGprs, name: HvRegisterName) -> bool {
        gprs.named(name).is_some() || with_vmcb(self.vmcb.start(), |v| v.holds_register(name))
    }

    /// One look at the VMCB for the whole state, with no lookup by name.
    fn exit_state(&mut self, gprs: &mut GuestGprs, mask: ExitState, out: &mut [u64]) -> usize {
        with_vmcb(self.vmcb.start(), |v| v.exit_state(mask, &gprs.in_exit_order(0, 0), out))
    }

    fn general_registers(&mut self, gprs: &mut GuestGprs) -> [u64; 16] {
        with_vmcb(self.vmcb.start(), |v| gprs.in_exit_order(v.save.rax, v.save.rsp))
    }

    fn data_segments(&mut self, _: &mut GuestGprs) -> [(u64, u64); 2] {
        with_vmcb(self.vmcb.start(), |v| v.data_segments())
    }

    /// One look at the VMCB for the header.
    fn intercept_state(&mut self, _: &mut GuestGprs) -> InterceptState {
        with_vmcb(self.vmcb.start(), |v| InterceptState {
            execution: execution(v),
            cs: v.cs_value(),
            interrupt_shadow: v.control.interrupt_state.interrupt_shadow(),
        })
    }

    /// An NMI waits while the guest's NMIs are blocked, with no window:
    /// the exit after the IRET lets it in.
    fn inject(&mut self, event: &Interruption) -> bool {
        if event.is_nmi() && self.nmi != GuestNmi::Unblocked {
            request_window(self.vmcb.start(), false);
            return false;
        }
        let injected = inject(self.vmcb.start(), event);
        if injected && event.is_nmi() {
            self.nmi = GuestNmi::Blocked;
            intercept_iret(self.vmcb.start(), true);
        }
        injected
    }

    fn request_window(&mut self, open: bool) {
        request_window(self.vmcb.start(), open);
    }

    fn offers(&self, event: &Interruption) -> bool {
        event.is_maskable()
    }

    fn offer(&mut self, event: &Interruption) {
        offer(self.vmcb.start(), event.vector);
    }

    fn offer_taken(&mut self) -> bool {
        offer_taken(self.vmcb.start())
    }

    fn execution_state(&mut self) -> ExecutionState {
        execution_state(self.vmcb.start())
    }

    fn intercept_debug_registers(&mut self, on: bool) {
        intercept_debug_registers(self.vmcb.start(), on);
    }

    /// The VMCB has no PDPTEs: a PAE guest's table walk reads them.
    fn set_pdptes(&mut self, _: [u64; 4]) {}

    fn leave_cpu(&mut self) -> u64 {
        // A VMCB is memory only (no clean bits are set): nothing to clear.
        0
    }

    fn release(self) {
        memory::free_frames(self.vmcb);
    }
}
