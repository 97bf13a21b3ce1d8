//! Hypercall intercepts: the TLFS hypercall engine ([`crate::hypercall`])
//! acting on this partition. Synthetic cluster IPIs go to the APIC model;
//! TLB flushes become a request the VID passes to the kernel
//! (`PARTITION_FLUSH_TLB`) before the caller resumes.

use super::{Action, Updates, Vmm, ud};
use crate::guest::{Guest, cpu_mode};
use crate::hypercall::{
    self, Caller, CallerRegisters, Flush, HypercallTarget, Outcome, VpSet, XmmRegisters, XmmSupport, XmmUpdates,
};
use crate::irq::{DeliveryMode, Destination, Effects, Interrupts, Message};
use crate::messaging::{self, Connections, Delivery};
use crate::synthetic::SyntheticPartition;
use crate::testdev::TestDev;
use tlfs::hypercall::{HV_XMM_FAST_REGISTERS, HvGvaRange, HvRegisterValue};
use tlfs::vsm::{HV_VP_VTL_CONTROL_OFFSET, HvVpVtlControl, HvVtlEntryReason};
use tlfs::zerocopy::{FromBytes, IntoBytes};
use tlfs::{HvError, HvRegisterName, HvResult, HvStatus, HvVpIndex, HvX64HypercallInterceptMessage};

/// The partition as the hypercall handlers see it.
struct Target<'v> {
    irq: &'v mut Interrupts,
    effects: &'v mut Effects,
    flush: &'v mut bool,
    caller: u32,
    connections: &'v mut dyn Connections,
    /// The partition's own connections (the test device's), looked up
    /// before the broker's.
    local: Option<&'v TestDev>,
    synthetic: &'v SyntheticPartition,
    /// What a local connection delivers, once the call has its answer.
    delivery: &'v mut Option<Delivery>,
    vsm: &'v mut crate::vsm::PartitionVsm,
    paging: crate::translate::PagingFeatures,
}

fn invalid_parameter() -> HvError {
    HvError::from_status(HvStatus::INVALID_PARAMETER).expect("a failure status")
}

impl HypercallTarget for Target<'_> {
    fn vp_count(&self) -> u32 {
        self.irq.vps()
    }

    fn flush_tlb(&mut self, _vps: &VpSet, _flush: Flush, _ranges: Option<&[HvGvaRange]>) {
        // The kernel flushes the partition's tagged translations (ASID or
        // VPID) before any of its VPs runs again: on one CPU, every VP.
        *self.flush = true;
    }

    fn send_ipi(&mut self, vector: u8, vps: &VpSet) {
        for vp in vps.iter() {
            let message = Message { mode: DeliveryMode::FIXED, vector, level: false, dest: Destination::Physical(vp) };
            self.effects.merge(self.irq.deliver(Some(self.caller), message));
        }
    }

    fn long_spin_wait(&mut self, _vp: HvVpIndex, _spin_count: u64) {}

    // Only the VSM registers (`vid::vsm`, reached before these) are served;
    // AccessVpRegisters comes only with VSM.
    fn get_vp_register(&mut self, _vp: HvVpIndex, _name: HvRegisterName) -> HvResult<HvRegisterValue> {
        Err(invalid_parameter())
    }

    fn set_vp_register(&mut self, _vp: HvVpIndex, _name: HvRegisterName, _value: HvRegisterValue) -> HvResult<()> {
        Err(invalid_parameter())
    }

    fn post_message(&mut self, connection_id: u32, message_type: u32, payload: &[u8]) -> HvResult<()> {
        let Some(to) = self.local.and_then(|t| t.message_target(connection_id)) else {
            return self.connections.post_message(connection_id, message_type, payload);
        };
        // The 11.11.1 table: the target VP's SynIC and SIM page, then the
        // queue (one message waits per VP, for its busy slot).
        let synic = self.synthetic.synic(to.vp).ok_or(HvError::INVALID_VP_INDEX)?;
        synic.accepts_messages(usize::from(to.sint))?;
        if synic.holds_message() {
            return Err(HvError::INSUFFICIENT_BUFFERS);
        }
        let message = messaging::message(connection_id, message_type, payload);
        *self.delivery = Some(Delivery::Message { vp: to.vp, sint: to.sint, message });
        Ok(())
    }

    fn signal_event(&mut self, connection_id: u32, flag_number: u16) -> HvResult<()> {
        let Some(to) = self.local.and_then(|t| t.event_target(connection_id)) else {
            return self.connections.signal_event(connection_id, flag_number);
        };
        // The port's one flag is its base, the connection ID.
        if flag_number != 0 {
            return Err(invalid_parameter());
        }
        let synic = self.synthetic.synic(to.vp).ok_or(HvError::INVALID_VP_INDEX)?;
        synic.accepts_events(usize::from(to.sint))?;
        *self.delivery = Some(Delivery::Event { vp: to.vp, sint: to.sint, flag: connection_id });
        Ok(())
    }

    fn vsm(&mut self) -> Option<&mut crate::vsm::PartitionVsm> {
        self.vsm.available().then_some(&mut *self.vsm)
    }

    fn apic_id_to_vp_index(&self, apic_id: u32) -> Option<HvVpIndex> {
        // APIC IDs are VP indices (the MADT says so).
        (apic_id < self.irq.vps()).then_some(apic_id)
    }

    fn paging_features(&self) -> crate::translate::PagingFeatures {
        self.paging
    }

    fn overlay_at(&self, gpn: u64) -> bool {
        self.synthetic.overlay_at(gpn)
    }
}

impl Vmm {
    pub(super) fn hypercall(
        &mut self,
        m: &HvX64HypercallInterceptMessage,
        guest: &mut impl Guest,
        connections: &mut dyn Connections,
    ) -> Action {
        let h = &m.header;
        let regs = CallerRegisters { rax: m.rax, rbx: m.rbx, rcx: m.rcx, rdx: m.rdx, rsi: m.rsi, rdi: m.rdi, r8: m.r8 };
        let profile = self.synthetic.profile();
        let features = profile.features();
        let xmm_support = XmmSupport {
            input: features.xmm_registers_for_fast_hypercall_available(),
            output: features.fast_hypercall_output_available(),
        };
        let caller = Caller::at(h, regs, profile.privileges(), xmm_support);
        let mut delivery = None;
        let mut target = Target {
            irq: &mut self.irq,
            effects: &mut self.effects,
            flush: &mut self.flush_tlb,
            caller: h.vp_index,
            connections,
            local: self.testdev.as_ref(),
            synthetic: &self.synthetic,
            delivery: &mut delivery,
            vsm: &mut self.vsm,
            paging: crate::translate::PagingFeatures {
                phys_bits: self.cpuid.phys_bits(),
                // CPUID 0x8000_0001 EDX bit 26, as the guest reads it.
                huge_pages: self.cpuid.leaf(h.vp_index, 0x8000_0001, 0, crate::cpuid::VpState::RESET)[3] & 1 << 26 != 0,
            },
        };
        let (mut updates, mut xmm_out) = (Updates::new(), XmmUpdates::new());
        let xmm = &mut InterceptXmm(&m.xmm);
        let outcome = hypercall::handle(&caller, xmm, guest, &mut target, (&mut updates, &mut xmm_out));
        if let Some(d) = &delivery {
            self.deliver(d, guest);
        }
        match outcome {
            Outcome::SwitchVtl { to, fast } => self.switch_vtl(h, to, fast, guest),
            Outcome::InjectUd => ud(),
            Outcome::Continue { .. } => Action::Resume(updates),
            Outcome::Complete { result } => {
                if result.call_status() != tlfs::HvStatus::SUCCESS.0 {
                    self.stats.failed_hypercalls += 1;
                }
                let rip = cpu_mode(h).next_ip(h.rip, h.instruction_length().max(3).into());
                let _ = updates.push((HvRegisterName::RIP, rip));
                for &(i, value) in &xmm_out {
                    let name = HvRegisterName(HvRegisterName::XMM0.0 + i as u32);
                    let _ = self.wide.push((name, value as u64, (value >> 64) as u64));
                }
                Action::Resume(updates)
            }
        }
    }
}

impl Vmm {
    /// A VTL call or return the engine allowed (TLFS 15.6, 15.7): ring 0
    /// switches the VP's VTL, the VTL left continues past its call or
    /// return when next entered, and the reply (which acts on the VTL
    /// entered) sets where that one continues. A VTL call writes the entry
    /// reason into VTL 1's VTL control; a return that is not fast loads
    /// RAX and RCX from it (15.7.1.1; shared registers, 15.11). Ring 0
    /// refusing the switch (nothing changed) is #UD.
    fn switch_vtl(
        &mut self,
        h: &tlfs::HvX64InterceptMessageHeader,
        to: u8,
        fast: bool,
        guest: &mut impl Guest,
    ) -> Action {
        let (vp, from) = (h.vp_index, h.execution_state.vtl());
        let resume = cpu_mode(h).next_ip(h.rip, h.instruction_length().max(3).into());
        // The VTL control of VTL 1, the higher one of the switch.
        let control = self.synthetic.vtl1_assist_page(vp).map(|page| page + HV_VP_VTL_CONTROL_OFFSET as u64);
        let mut restore = None;
        if let (false, Some(gpa)) = (fast || to > from, control) {
            let mut bytes = [0u8; size_of::<HvVpVtlControl>()];
            if guest.read(gpa, &mut bytes) {
                restore = HvVpVtlControl::read_from_bytes(&bytes).ok();
            }
        }
        let Some(kernel) = guest.vtl_kernel() else { return ud() };
        if kernel.switch_vtl(vp, to).is_err() {
            return ud();
        }
        self.vtl_switched = to > from;
        let rip = match self.vsm.switch(vp, from, resume, to) {
            Ok(rip) => rip,
            // Ring 0 switched a VP the VID's state does not know: stop it.
            Err(_) => {
                let message_type = tlfs::HvMessageType::HYPERCALL_INTERCEPT.0;
                return Action::Stop(crate::exits::Stop::Failed { message_type, rip: h.rip });
            }
        };
        if let (true, Some(gpa)) = (to > from, control) {
            // VTL 1's own page: written for VTL 1, whatever it protects
            // from VTL 0.
            let was = guest.act_for(to);
            let _ = guest.write(gpa, HvVtlEntryReason::VTL_CALL.as_bytes());
            guest.act_for(was);
        }
        let mut updates = Updates::new();
        if let Some(rip) = rip {
            let _ = updates.push((HvRegisterName::RIP, rip));
        }
        if let Some(c) = restore {
            let _ = updates.push((HvRegisterName::RAX, c.vtl_return_x64_rax));
            let _ = updates.push((HvRegisterName::RCX, c.vtl_return_x64_rcx));
        }
        Action::Resume(updates)
    }
}

/// The VP's XMM0-XMM5 as its intercept message has them, read only for
/// XMM fast calls.
struct InterceptXmm<'m>(&'m [[u64; 2]; HV_XMM_FAST_REGISTERS]);

impl XmmRegisters for InterceptXmm<'_> {
    fn xmm(&mut self, index: usize) -> u128 {
        let [low, high] = self.0[index];
        u128::from(low) | u128::from(high) << 64
    }
}
