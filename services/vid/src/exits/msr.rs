//! RDMSR/WRMSR: EFER, then the interrupt controllers' MSRs (APIC base,
//! TSC deadline, x2APIC), then the TLFS synthetic MSRs the partition's
//! profile gives (with the Hyper-V APIC MSRs forwarded to the APIC model),
//! then EFER and PAT (the VP's own), then [`crate::msr::Msrs`] (the MTRRs,
//! MISC_ENABLE, ...; an unknown MSR is #GP unless the manifest relaxes it,
//! the first ones reported).

use super::{Action, Event, Stop, Vmm, gp, resume};
use crate::guest::{Guest, cpu_mode};
use crate::irq::lapic::HvApicMsr;
use crate::msr::MsrResult;
use crate::synthetic::{self, ApicAccess, Now, SynMsrOutcome};
use tlfs::msr::HvX64Msr;
use tlfs::{HvInterceptAccessType, HvRegisterName, HvX64MsrInterceptMessage};

impl Vmm {
    pub(super) fn msr(
        &mut self,
        m: &HvX64MsrInterceptMessage,
        guest: &mut impl Guest,
        now: u64,
        events: &mut impl FnMut(Event),
    ) -> Action {
        let h = &m.header;
        let vp = h.vp_index;
        let write =
            (h.intercept_access_type == HvInterceptAccessType::WRITE).then_some((m.rdx << 32) | (m.rax & 0xffff_ffff));
        let rip = (HvRegisterName::RIP, cpu_mode(h).next_ip(h.rip, h.instruction_length().into()));
        let read = |v: u64| resume(&[rip, (HvRegisterName::RAX, v & 0xffff_ffff), (HvRegisterName::RDX, v >> 32)]);
        let msr = m.msr_number;
        if msr != crate::msr::EFER {
            match write {
                Some(value) => match self.irq.msr_write(vp, msr, value, now) {
                    Some(Ok(effects)) => {
                        self.effects.merge(effects);
                        return resume(&[rip]);
                    }
                    Some(Err(_)) => return gp(),
                    None => {}
                },
                None => match self.irq.msr_read(vp, msr, now) {
                    Some(Ok(v)) => return read(v),
                    Some(Err(_)) => return gp(),
                    None => {}
                },
            }
            if synthetic::is_synthetic(msr) {
                // The run time is the kernel's: asked only when read.
                let runtime = if msr == HvX64Msr::VP_RUNTIME.0 { guest.reg(HvRegisterName::VP_RUNTIME) } else { None };
                let at = Now { tsc: now, vp_runtime: runtime.unwrap_or(0) };
                let vtl = m.header.execution_state.vtl();
                let outcome = self.synthetic.access_vtl((vp, vtl), msr, write, guest, at);
                if write.is_some() && HvX64Msr(msr).sint_index().is_some() {
                    self.sync_auto_eoi(vp);
                }
                if write.is_some() && outcome.is_ok() && msr == HvX64Msr::VP_ASSIST_PAGE.0 && vtl == 0 {
                    self.assist_page_written(vp);
                }
                self.synic_interrupts();
                return match outcome {
                    Err(_) => gp(),
                    Ok(SynMsrOutcome::Read(v)) => read(v),
                    Ok(SynMsrOutcome::Written) => resume(&[rip]),
                    Ok(SynMsrOutcome::Apic(access)) => self.hv_apic(vp, access, rip),
                    Ok(SynMsrOutcome::Idle) => {
                        let after = super::updates(&[rip, (HvRegisterName::RAX, 0), (HvRegisterName::RDX, 0)]);
                        // An interrupt that arrived already, even a masked
                        // one, ends the idle state at once (TLFS 7.5).
                        if self.enter_idle(vp) { Action::Halt(after) } else { Action::Resume(after) }
                    }
                    Ok(SynMsrOutcome::Reset) => {
                        Action::Stop(Stop::Reset { rip: h.rip, by: super::ResetSource::HvResetMsr })
                    }
                    Ok(SynMsrOutcome::GuestCrash { p, message }) => {
                        let mut text = [0u8; 96];
                        let message = message.and_then(|m| m.read(guest, &mut text).map(|t| t.len()));
                        events(Event::GuestCrash { p, message: message.map(|n| (text, n)) });
                        resume(&[rip])
                    }
                };
            }
        }
        if msr == crate::msr::EFER {
            return self.efer(h, write, guest, read, rip);
        }
        if msr == crate::msr::num::PAT {
            // The VP's own PAT (the kernel switches it): reserved memory
            // types are #GP (SDM 11.12.2).
            return match write {
                None => read(guest.reg(HvRegisterName::PAT).unwrap_or(crate::msr::PAT_RESET)),
                Some(v) if crate::msr::pat_valid(v) => resume(&[rip, (HvRegisterName::PAT, v)]),
                Some(_) => gp(),
            };
        }
        let (result, first) = self.msrs.access(vp, msr, write, now);
        if first {
            events(Event::UnknownMsr { msr, write, rip: h.rip, result });
        }
        match result {
            MsrResult::Read(v) => read(v),
            MsrResult::Written | MsrResult::Ignored => resume(&[rip]),
            MsrResult::Fault => gp(),
        }
    }

    /// RDMSR/WRMSR of EFER: the VP's own (the loader may have set it for a
    /// long-mode entry), written only as [`crate::msr::efer_write_allowed`]
    /// says, LMA kept as the CPU has it.
    fn efer(
        &mut self,
        h: &tlfs::HvX64InterceptMessageHeader,
        write: Option<u64>,
        guest: &mut impl Guest,
        read: impl Fn(u64) -> Action,
        rip: (HvRegisterName, u64),
    ) -> Action {
        let lma = if h.execution_state.efer_lma() { crate::msr::EFER_LMA } else { 0 };
        let current = guest.reg(HvRegisterName::EFER).unwrap_or(lma);
        let Some(value) = write else { return read(current) };
        // LMA means paging is on; else CR0.PG says (unreadable: off).
        let paging = lma != 0 || guest.reg(HvRegisterName::CR0).is_some_and(|cr0| cr0 & (1 << 31) != 0);
        let ext1 = self.cpuid.leaf(h.vp_index, 0x8000_0001, 0, crate::cpuid::VpState::RESET);
        let nx = ext1[3] & crate::cpuid::EXT1_EDX_NX != 0;
        if !crate::msr::efer_write_allowed(current, value, paging, nx) {
            return gp();
        }
        resume(&[rip, (HvRegisterName::EFER, (value & !crate::msr::EFER_LMA) | lma)])
    }

    /// HV_X64_MSR_EOI, ICR and TPR, on the VP's local APIC.
    fn hv_apic(&mut self, vp: u32, access: ApicAccess, rip: (HvRegisterName, u64)) -> Action {
        let written = |this: &mut Vmm, msr, value| match this.irq.hv_apic_msr_write(vp, msr, value) {
            Ok(effects) => {
                this.effects.merge(effects);
                resume(&[rip])
            }
            Err(_) => gp(),
        };
        let read = |this: &mut Vmm, msr| match this.irq.hv_apic_msr_read(vp, msr) {
            Ok(v) => resume(&[rip, (HvRegisterName::RAX, v & 0xffff_ffff), (HvRegisterName::RDX, v >> 32)]),
            Err(_) => gp(),
        };
        match access {
            ApicAccess::Eoi => written(self, HvApicMsr::Eoi, 0),
            ApicAccess::WriteIcr(v) => written(self, HvApicMsr::Icr, v),
            ApicAccess::WriteTpr(v) => written(self, HvApicMsr::Tpr, u64::from(v)),
            ApicAccess::ReadIcr => read(self, HvApicMsr::Icr),
            ApicAccess::ReadTpr => read(self, HvApicMsr::Tpr),
        }
    }
}
