//! A VP's registers in its VMCB, by TLFS name: what `VP_GET_REGISTERS` and
//! `VP_SET_REGISTERS` read and write under SVM (the general registers the
//! VMCB does not hold are the arch layer's). Segment attributes convert
//! between the TLFS's VMX-style access rights (AVL, L, D/B, G in bits
//! 12..15) and the VMCB's packing (those in bits 8..11).

use super::{EFER_SVME, SegmentAttributes, Vmcb, VmcbSegment};
use tlfs::exit_state::{self, CONTROL, ExitState, GPRS, SEGMENTS, gpr};
use tlfs::{HvRegisterName, HvX64InterruptStateRegister, HvX64SegmentAttributes, HvX64SegmentRegister};

// [`Vmcb::exit_state`] lays CONTROL and SEGMENTS out in their order.
const _: () = {
    use HvRegisterName as R;
    assert!(exit_state::same_names(&CONTROL, &[R::CR0, R::CR2, R::CR3, R::CR4, R::EFER]));
    assert!(exit_state::same_names(&SEGMENTS, &[R::DS, R::ES, R::FS, R::GS, R::SS]));
};

fn attributes_to_tlfs(a: SegmentAttributes) -> HvX64SegmentAttributes {
    HvX64SegmentAttributes::new()
        .with_segment_type(a.segment_type())
        .with_non_system_segment(a.code_or_data())
        .with_descriptor_privilege_level(a.dpl())
        .with_present(a.present())
        .with_available(a.available())
        .with_long(a.long_mode())
        .with_default(a.default_big())
        .with_granularity(a.granularity())
}

fn attributes_from_tlfs(a: HvX64SegmentAttributes) -> SegmentAttributes {
    SegmentAttributes::new()
        .with_segment_type(a.segment_type())
        .with_code_or_data(a.non_system_segment())
        .with_dpl(a.descriptor_privilege_level())
        .with_present(a.present())
        .with_available(a.available())
        .with_long_mode(a.long())
        .with_default_big(a.default())
        .with_granularity(a.granularity())
}

impl Vmcb {
    /// The segment register `name`, if it is one.
    fn segment(&mut self, name: HvRegisterName) -> Option<&mut VmcbSegment> {
        let s = &mut self.save;
        Some(match name {
            HvRegisterName::ES => &mut s.es,
            HvRegisterName::CS => &mut s.cs,
            HvRegisterName::SS => &mut s.ss,
            HvRegisterName::DS => &mut s.ds,
            HvRegisterName::FS => &mut s.fs,
            HvRegisterName::GS => &mut s.gs,
            HvRegisterName::LDTR => &mut s.ldtr,
            HvRegisterName::TR => &mut s.tr,
            _ => return None,
        })
    }

    /// The descriptor-table register `name` (only limit and base count).
    fn table(&mut self, name: HvRegisterName) -> Option<&mut VmcbSegment> {
        Some(match name {
            HvRegisterName::GDTR => &mut self.save.gdtr,
            HvRegisterName::IDTR => &mut self.save.idtr,
            _ => return None,
        })
    }

    /// The 64-bit register `name`, if the VMCB holds it.
    fn register(&mut self, name: HvRegisterName) -> Option<&mut u64> {
        let s = &mut self.save;
        Some(match name {
            HvRegisterName::RAX => &mut s.rax,
            HvRegisterName::RSP => &mut s.rsp,
            HvRegisterName::RIP => &mut s.rip,
            HvRegisterName::RFLAGS => &mut s.rflags,
            HvRegisterName::CR0 => &mut s.cr0,
            HvRegisterName::CR2 => &mut s.cr2,
            HvRegisterName::CR3 => &mut s.cr3,
            HvRegisterName::CR4 => &mut s.cr4,
            HvRegisterName::DR6 => &mut s.dr6,
            HvRegisterName::DR7 => &mut s.dr7,
            HvRegisterName::EFER => &mut s.efer,
            HvRegisterName::KERNEL_GS_BASE => &mut s.kernel_gs_base,
            HvRegisterName::LSTAR => &mut s.lstar,
            HvRegisterName::CSTAR => &mut s.cstar,
            HvRegisterName::SYSENTER_ESP => &mut s.sysenter_esp,
            HvRegisterName::SYSENTER_EIP => &mut s.sysenter_eip,
            HvRegisterName::PAT => &mut s.g_pat,
            _ => return None,
        })
    }

    /// Register `name` as a TLFS 128-bit value (low, high); `None` if the
    /// VMCB does not hold it. (`&mut` only to share the field lookup.)
    pub fn get_register(&mut self, name: HvRegisterName) -> Option<(u64, u64)> {
        if name == HvRegisterName::INTERRUPT_STATE {
            // NMI blocking is visible only with vNMI, which is not used.
            let shadow = self.control.interrupt_state.interrupt_shadow();
            return Some((HvX64InterruptStateRegister::new().with_interrupt_shadow(shadow).into_bits(), 0));
        }
        if let Some(r) = self.register(name) {
            // The guest's EFER.SVME is the host's business.
            let value = if name == HvRegisterName::EFER { *r & !EFER_SVME } else { *r };
            return Some((value, 0));
        }
        if let Some(s) = self.segment(name) {
            return Some(Self::segment_value(s));
        }
        let t = self.table(name)?;
        Some(tlfs::table_register_value(t.base, t.limit as u16))
    }

    /// A segment as its TLFS 128-bit value.
    fn segment_value(s: &VmcbSegment) -> (u64, u64) {
        let tlfs = HvX64SegmentRegister {
            base: s.base,
            limit: s.limit,
            selector: s.selector,
            attributes: attributes_to_tlfs(s.attributes),
        };
        tlfs::segment_register_value(&tlfs)
    }

    /// CS as a TLFS 128-bit value (an intercept message's header).
    pub fn cs_value(&self) -> (u64, u64) {
        Self::segment_value(&self.save.cs)
    }

    /// DS and ES as TLFS 128-bit values (an I/O port intercept's).
    pub fn data_segments(&self) -> [(u64, u64); 2] {
        [Self::segment_value(&self.save.ds), Self::segment_value(&self.save.es)]
    }

    /// The words `mask` sends with an exit, laid out in `out` as
    /// [`ExitState::fill`] lays them, read straight from the save area with
    /// no lookup by name: every forwarded exit's path. `gprs` holds the
    /// general registers in [`exit_state::GPRS`] order; its RAX and RSP are
    /// not read (the VMCB holds those). Returns the words laid out. Equal
    /// to `fill` over [`get_register`](Self::get_register) (tested).
    pub fn exit_state(&self, mask: ExitState, gprs: &[u64; GPRS.len()], out: &mut [u64]) -> usize {
        if let Some(words) = out.first_chunk_mut::<{ exit_state::MAX_WORDS }>() {
            // Room for every group (the usual case): straight into `out`.
            return self.lay_out(mask, gprs, words);
        }
        let mut words = [0u64; exit_state::MAX_WORDS];
        let used = self.lay_out(mask, gprs, &mut words).min(out.len());
        out[..used].copy_from_slice(&words[..used]);
        used
    }

    /// [`exit_state`](Self::exit_state) into room for every group.
    fn lay_out(&self, mask: ExitState, gprs: &[u64; GPRS.len()], words: &mut [u64; exit_state::MAX_WORDS]) -> usize {
        let s = &self.save;
        let mut at = 0;
        if mask.gprs() {
            words[..GPRS.len()].copy_from_slice(gprs);
            (words[gpr::RAX], words[gpr::RSP]) = (s.rax, s.rsp);
            at = GPRS.len();
        }
        if mask.control() {
            // CONTROL's order; the guest's EFER.SVME is the host's business.
            words[at..at + CONTROL.len()].copy_from_slice(&[s.cr0, s.cr2, s.cr3, s.cr4, s.efer & !EFER_SVME]);
            at += CONTROL.len();
        }
        if mask.segments() {
            // SEGMENTS' order.
            for segment in [&s.ds, &s.es, &s.fs, &s.gs, &s.ss] {
                (words[at], words[at + 1]) = Self::segment_value(segment);
                at += 2;
            }
        }
        at
    }

    /// Whether the VMCB holds register `name`: what
    /// [`set_register`](Self::set_register) takes a value for.
    pub fn holds_register(&mut self, name: HvRegisterName) -> bool {
        self.register(name).is_some() || self.segment(name).is_some() || self.table(name).is_some()
    }

    /// Sets register `name` from a TLFS 128-bit value; false if the VMCB
    /// does not hold it.
    pub fn set_register(&mut self, name: HvRegisterName, low: u64, high: u64) -> bool {
        if name == HvRegisterName::RIP && self.save.rip != low {
            // Moving RIP completes the instruction an STI or MOV SS shadow
            // covered (HLT right after STI): the shadow ends with it.
            self.control.interrupt_state = self.control.interrupt_state.with_interrupt_shadow(false);
        }
        if let Some(r) = self.register(name) {
            // The guest's EFER.SVME stays set whatever the VMM asks for.
            *r = if name == HvRegisterName::EFER { low | EFER_SVME } else { low };
            return true;
        }
        if let Some(s) = self.segment(name) {
            let tlfs = tlfs::segment_register_from_value(low, high);
            let attributes = attributes_from_tlfs(tlfs.attributes);
            *s = VmcbSegment { selector: tlfs.selector, attributes, limit: tlfs.limit, base: tlfs.base };
            if name == HvRegisterName::SS {
                // VMRUN takes the CPL from this field, not from SS.DPL (APM
                // Vol. 2 §15.5.1); under VMX the CPL is SS.DPL (SDM Vol. 3C
                // §24.4.1). Keep them one, so both backends run the guest
                // at the same privilege.
                self.save.cpl = attributes.dpl();
            }
            return true;
        }
        let Some(t) = self.table(name) else { return false };
        let (base, limit) = tlfs::table_register_from_value(low, high);
        *t = VmcbSegment { selector: 0, attributes: SegmentAttributes::new(), limit: u32::from(limit), base };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tlfs::zerocopy::FromZeros;

    fn segment(selector: u16, dpl: u8) -> (u64, u64) {
        let attributes = HvX64SegmentAttributes::new()
            .with_segment_type(3)
            .with_non_system_segment(true)
            .with_descriptor_privilege_level(dpl)
            .with_present(true)
            .with_default(true)
            .with_granularity(true);
        tlfs::segment_register_value(&HvX64SegmentRegister { base: 0x1000, limit: 0xffff_ffff, selector, attributes })
    }

    #[test]
    fn setting_ss_sets_the_cpl_vmrun_runs_the_guest_at() {
        let mut v = Vmcb::new_zeroed();
        let (low, high) = segment(0x23, 3);
        assert!(v.set_register(HvRegisterName::SS, low, high));
        assert_eq!(v.save.cpl, 3);
        assert_eq!(v.get_register(HvRegisterName::SS), Some((low, high)), "the segment round-trips");
        let (low, high) = segment(0x10, 0);
        assert!(v.set_register(HvRegisterName::SS, low, high));
        assert_eq!(v.save.cpl, 0);
        // Other segments leave it.
        let (low, high) = segment(0x2b, 3);
        assert!(v.set_register(HvRegisterName::DS, low, high));
        assert_eq!(v.save.cpl, 0);
    }

    #[test]
    fn the_syscall_address_msrs_are_the_vmcbs() {
        let mut v = Vmcb::new_zeroed();
        for (name, value) in [
            (HvRegisterName::LSTAR, 0xffff_8000_0000_1000),
            (HvRegisterName::CSTAR, 0xffff_8000_0000_2000),
            (HvRegisterName::SYSENTER_ESP, 0xffff_8000_0000_3000),
            (HvRegisterName::SYSENTER_EIP, 0xffff_8000_0000_4000),
        ] {
            assert!(v.set_register(name, value, 0));
            assert_eq!(v.get_register(name), Some((value, 0)));
        }
        assert_eq!((v.save.lstar, v.save.cstar), (0xffff_8000_0000_1000, 0xffff_8000_0000_2000));
        assert_eq!((v.save.sysenter_esp, v.save.sysenter_eip), (0xffff_8000_0000_3000, 0xffff_8000_0000_4000));
    }

    #[test]
    fn efer_keeps_svme_and_rip_ends_an_interrupt_shadow() {
        let mut v = Vmcb::new_zeroed();
        assert!(v.set_register(HvRegisterName::EFER, 0x500, 0));
        assert_eq!(v.save.efer, 0x500 | EFER_SVME);
        assert_eq!(v.get_register(HvRegisterName::EFER), Some((0x500, 0)));
        v.control.interrupt_state = v.control.interrupt_state.with_interrupt_shadow(true);
        assert!(v.set_register(HvRegisterName::RIP, 0x1000, 0));
        assert!(!v.control.interrupt_state.interrupt_shadow());
        let (low, high) = tlfs::table_register_value(0x5000, 0x27);
        assert!(v.set_register(HvRegisterName::GDTR, low, high));
        assert_eq!((v.save.gdtr.base, v.save.gdtr.limit), (0x5000, 0x27));
        assert!(!v.set_register(HvRegisterName::RBX, 1, 0), "the arch layer's");
        assert_eq!(v.get_register(HvRegisterName::RBX), None);
    }

    #[test]
    fn exit_state_and_header_fields_are_what_get_register_reads() {
        // A VMCB whose every field of the groups differs.
        let mut v = Vmcb::new_zeroed();
        let mut next = 0x0123_4567_89ab_cdefu64;
        let mut value = || {
            next = next.rotate_left(7).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555;
            next
        };
        let s = &mut v.save;
        (s.rax, s.rsp, s.cr0, s.cr2, s.cr3, s.cr4) = (value(), value(), value(), value(), value(), value());
        s.efer = value() | EFER_SVME;
        for seg in [&mut s.ds, &mut s.es, &mut s.fs, &mut s.gs, &mut s.ss, &mut s.cs] {
            let bits = value();
            *seg = VmcbSegment {
                selector: bits as u16,
                attributes: SegmentAttributes::from_bits((bits >> 16) as u16 & 0xfff),
                limit: (bits >> 32) as u32,
                base: value(),
            };
        }
        let gprs: [u64; 16] = core::array::from_fn(|_| value());
        let by_name = |v: &mut Vmcb, name: HvRegisterName| match GPRS.iter().position(|&r| r == name) {
            Some(i) if i != gpr::RAX && i != gpr::RSP => Some((gprs[i], 0)),
            _ => v.get_register(name),
        };
        for bits in 0..8 {
            let mask = ExitState::from_wire(bits).unwrap();
            for len in [exit_state::MAX_WORDS, 20, 3, 0] {
                let (mut fast, mut slow) = ([0u64; exit_state::MAX_WORDS], [0u64; exit_state::MAX_WORDS]);
                let used = v.exit_state(mask, &gprs, &mut fast[..len]);
                let expected = mask.fill(&mut slow[..len], |name| by_name(&mut v, name));
                assert_eq!((used, fast), (expected, slow), "mask {bits:#b}, {len} words");
            }
        }
        assert_eq!(v.exit_state(ExitState::ALL, &gprs, &mut [0; 64]), exit_state::MAX_WORDS);
        let [ds, es] = v.data_segments();
        assert_eq!(Some(ds), v.get_register(HvRegisterName::DS));
        assert_eq!(Some(es), v.get_register(HvRegisterName::ES));
        assert_eq!(Some(v.cs_value()), v.get_register(HvRegisterName::CS));
    }

    #[test]
    fn holds_register_is_what_set_register_takes() {
        // Every name of the register groups the TLFS numbers (7.9, 7.10).
        let groups = [0x0000_0000..0x0000_0020, 0x0002_0000..0x0002_0020, 0x0004_0000..0x0004_0020];
        let more = [0x0006_0000..0x0006_0020, 0x0007_0000..0x0007_0020, 0x0008_0000..0x0008_0020];
        let mut held = 0;
        for raw in groups.into_iter().chain(more).flatten() {
            let name = HvRegisterName(raw);
            let mut v = Vmcb::new_zeroed();
            let holds = v.holds_register(name);
            assert_eq!(v.set_register(name, 0, 0), holds, "{name:?}");
            held += usize::from(holds);
        }
        assert!(held > 20, "only {held} registers held");
    }
}
