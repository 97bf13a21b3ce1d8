//! RDMSR/WRMSR: EFER, then the interrupt controllers' MSRs (APIC base,
//! TSC deadline, x2APIC), then the TLFS synthetic MSRs the partition's
//! profile gives (with the Hyper-V APIC MSRs forwarded to the APIC model),
//! then the rest (read 0, writes ignored, each reported once).

use super::{Action, Event, Stop, Vmm, gp, resume};
use crate::guest::{Guest, cpu_mode, next_rip};
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
        let rip = (HvRegisterName::RIP, next_rip(cpu_mode(h), h.rip, h.instruction_length().into()));
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
                let outcome = self.synthetic.access(vp, msr, write, guest, at);
                if write.is_some() && HvX64Msr(msr).sint_index().is_some() {
                    self.sync_auto_eoi(vp);
                }
                if write.is_some() && outcome.is_ok() && msr == HvX64Msr::VP_ASSIST_PAGE.0 {
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
        if msr == crate::msr::EFER
            && write.is_none()
            && let Some(efer) = guest.reg(HvRegisterName::EFER)
        {
            // The VP's own EFER: the loader may have set it (long-mode entry).
            return read(efer);
        }
        if let (true, Some(value)) = (msr == crate::msr::EFER, write) {
            let lma = h.execution_state.efer_lma();
            let current = guest.reg(HvRegisterName::EFER).unwrap_or_else(|| self.msrs.efer(vp));
            // LMA means paging is on; else CR0.PG says (unreadable: off).
            let paging = lma || guest.reg(HvRegisterName::CR0).is_some_and(|cr0| cr0 & (1 << 31) != 0);
            let nx = {
                let (profile, os) = (self.synthetic.profile(), self.synthetic.guest_os_id());
                let ext1 = crate::cpuid::cpuid_for_vp(profile, os, self.topology, vp, 0x8000_0001, 0);
                ext1[3] & crate::cpuid::EXT1_EDX_NX != 0
            };
            if !crate::msr::efer_write_allowed(current, value, paging, nx) {
                return gp();
            }
        }
        let lma = h.execution_state.efer_lma();
        let (result, first) = self.msrs.access(vp, msr, write, lma);
        if first {
            events(Event::UnknownMsr { msr, write: write.is_some(), rip: h.rip });
        }
        match result {
            MsrResult::Read(v) => read(v),
            MsrResult::EferWritten(v) => resume(&[rip, (HvRegisterName::EFER, v)]),
            MsrResult::Ignored => resume(&[rip]),
        }
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
