//! The local APIC's register interfaces: the xAPIC page, the x2APIC MSRs,
//! IA32_APIC_BASE, IA32_TSC_DEADLINE and the Hyper-V APIC MSRs.

use super::*;

/// xAPIC ICR bits software writes (low and high halves).
const ICR_XAPIC_WRITABLE: u64 = 0xff00_0000_000c_cfff;

/// A register write that does not take effect.
enum Refused {
    ReadOnly,
    Reserved,
}

impl Lapic {
    /// A read of `size` bytes at `offset` in the xAPIC page.
    pub fn mmio_read(&mut self, offset: u64, size: u8, now: u64) -> u64 {
        let size = u64::from(size.clamp(1, 8));
        if self.mmio_base().is_none() {
            return u64::MAX >> (64 - 8 * size);
        }
        let slot = (offset & 0xff0) as u32;
        let value = self.read_xapic(slot, now).unwrap_or_else(|| {
            self.error(esr::ILLEGAL_REGISTER);
            0
        });
        (0..size).fold(0, |acc, i| {
            let at = (offset & 0xf) + i;
            let byte = if at < 4 { (value >> (8 * at)) & 0xff } else { 0 };
            acc | u64::from(byte) << (8 * i)
        })
    }

    /// A write of the low `size` bytes of `value` at `offset` in the page.
    pub fn mmio_write(&mut self, offset: u64, size: u8, value: u64, now: u64) -> LapicEffect {
        if self.mmio_base().is_none() || size != 4 || offset & 0xf != 0 {
            return LapicEffect::None;
        }
        match self.write_xapic((offset & 0xff0) as u32, value as u32, now) {
            Ok(effect) => effect,
            Err(Refused::ReadOnly) => LapicEffect::None,
            Err(Refused::Reserved) => {
                self.error(esr::ILLEGAL_REGISTER);
                LapicEffect::None
            }
        }
    }

    /// The register at xAPIC offset `slot` as both modes read it; `None`
    /// for a reserved one.
    fn read_common(&self, slot: u32, now: u64) -> Option<u32> {
        Some(match slot {
            reg::VERSION => VERSION,
            reg::TPR => self.tpr,
            reg::PPR => self.ppr(),
            reg::LDR => self.ldr,
            reg::SVR => self.svr,
            0x100..=0x170 => self.isr.0[((slot - reg::ISR) >> 4) as usize],
            0x180..=0x1f0 => self.tmr.0[((slot - reg::TMR) >> 4) as usize],
            0x200..=0x270 => self.irr.0[((slot - reg::IRR) >> 4) as usize],
            reg::ESR => self.esr,
            0x320..=0x370 => self.lvt[((slot - reg::LVT_TIMER) >> 4) as usize].into_bits(),
            reg::TIMER_INITIAL => self.timer.initial(),
            reg::TIMER_CURRENT => self.timer.current(now),
            reg::TIMER_DIVIDE => self.timer.divide(),
            _ => return None,
        })
    }

    fn read_xapic(&self, slot: u32, now: u64) -> Option<u32> {
        match slot {
            reg::ID => Some(self.id),
            reg::APR | reg::EOI | reg::RRD => Some(0),
            reg::DFR => Some(self.dfr),
            reg::ICR_LOW => Some(self.icr.into_bits() as u32),
            reg::ICR_HIGH => Some((self.icr.into_bits() >> 32) as u32),
            _ => self.read_common(slot, now),
        }
    }

    fn write_xapic(&mut self, slot: u32, value: u32, now: u64) -> Result<LapicEffect, Refused> {
        match slot {
            reg::ID => self.id = value & 0xff00_0000,
            reg::TPR => self.tpr = value & 0xff,
            reg::EOI => return Ok(self.eoi()),
            reg::LDR => self.ldr = value & 0xff00_0000,
            reg::DFR => self.dfr = value | 0x0fff_ffff,
            reg::ICR_LOW => {
                let icr = (self.icr.into_bits() & !0xffff_ffff) | u64::from(value);
                return Ok(self.send(icr & ICR_XAPIC_WRITABLE));
            }
            reg::ICR_HIGH => {
                let icr = (self.icr.into_bits() & 0xffff_ffff) | u64::from(value) << 32;
                self.icr = Icr::from_bits(icr & ICR_XAPIC_WRITABLE);
            }
            reg::VERSION | reg::APR | reg::PPR | reg::RRD | reg::TIMER_CURRENT | 0x100..=0x270 => {
                return Err(Refused::ReadOnly);
            }
            _ => return self.write_common(slot, value, now).map(|()| LapicEffect::None),
        }
        Ok(LapicEffect::None)
    }

    fn write_common(&mut self, slot: u32, value: u32, now: u64) -> Result<(), Refused> {
        match slot {
            reg::SVR => {
                self.svr = value & SVR_WRITABLE;
                if self.svr & SVR_ENABLE == 0 {
                    for lvt in &mut self.lvt {
                        lvt.set_masked(true);
                    }
                }
            }
            reg::ESR => {
                self.esr = self.esr_pending;
                self.esr_pending = 0;
            }
            0x320..=0x370 => self.set_lvt(((slot - reg::LVT_TIMER) >> 4) as usize, value, now),
            reg::TIMER_INITIAL => self.timer.set_initial(value, now),
            reg::TIMER_DIVIDE => self.timer.set_divide(value, now),
            _ => return Err(Refused::Reserved),
        }
        Ok(())
    }

    fn set_lvt(&mut self, index: usize, value: u32, now: u64) {
        if index == LVT_TIMER {
            // Expiries up to now happen under the old entry.
            self.poll(now);
        }
        let old = self.lvt[index];
        let mut lvt = Lvt::from_bits(value & LVT_WRITABLE[index]).with_remote_irr(old.remote_irr());
        if self.svr & SVR_ENABLE == 0 {
            lvt.set_masked(true);
        }
        self.lvt[index] = lvt;
        if index == LVT_TIMER {
            self.timer.set_mode(TimerMode::from_bits(lvt.timer_mode()), now);
        }
    }

    /// Sends the IPI the ICR now describes.
    fn send(&mut self, icr: u64) -> LapicEffect {
        let icr = Icr::from_bits(icr);
        self.icr = icr;
        let mode = icr.delivery_mode();
        let vector = icr.vector();
        match mode {
            DeliveryMode::FIXED | DeliveryMode::LOWEST_PRIORITY if vector < 16 => {
                self.error(esr::SEND_ILLEGAL_VECTOR);
                return LapicEffect::None;
            }
            // INIT level de-assert only synchronises arbitration IDs.
            DeliveryMode::INIT if icr.level() && !icr.assert() => return LapicEffect::None,
            DeliveryMode::FIXED
            | DeliveryMode::LOWEST_PRIORITY
            | DeliveryMode::NMI
            | DeliveryMode::INIT
            | DeliveryMode::STARTUP => {}
            _ => return LapicEffect::None,
        }
        let x2 = self.base.x2apic();
        let dest = if x2 { icr.destination() } else { icr.destination() >> 24 };
        let broadcast = if x2 { u32::MAX } else { 0xff };
        let dest = match icr.shorthand() {
            1 => Destination::SelfOnly,
            2 => Destination::All,
            3 => Destination::AllButSelf,
            _ if dest == broadcast => Destination::All,
            _ if icr.logical() => Destination::Logical(dest),
            _ => Destination::Physical(dest),
        };
        LapicEffect::Ipi(Message { mode, vector, level: icr.level(), dest })
    }

    pub(super) fn enter_x2apic(&mut self) {
        self.ldr = ((self.vp >> 4) << 16) | (1 << (self.vp & 0xf));
    }

    /// A WRMSR of IA32_APIC_BASE (SDM 11.12.5: the valid mode transitions).
    pub fn write_apic_base(&mut self, value: u64) -> Result<(), GeneralProtection> {
        let reserved = 0xff | 1 << 9 | !((1u64 << PHYS_BITS) - 1);
        let new = ApicBase::from_bits(value).with_bsp(self.base.bsp());
        let old = self.base;
        let invalid = value & reserved != 0
            || (new.x2apic() && !new.enable())
            || (old.x2apic() && new.enable() && !new.x2apic())
            || (!old.enable() && new.x2apic());
        if invalid {
            return Err(GeneralProtection);
        }
        self.base = new;
        if old.enable() && !new.enable() {
            self.init();
            self.id = self.vp << 24;
        } else if new.x2apic() && !old.x2apic() {
            self.enter_x2apic();
        }
        Ok(())
    }

    /// RDMSR of an APIC MSR; `None` if `msr` is not one.
    pub fn msr_read(&mut self, msr: u32, now: u64) -> Option<Result<u64, GeneralProtection>> {
        Some(match msr {
            MSR_APIC_BASE => Ok(self.base.into_bits()),
            MSR_TSC_DEADLINE => Ok(self.timer.deadline(now)),
            X2APIC_FIRST..=X2APIC_LAST => self.x2apic_read((msr - X2APIC_FIRST) << 4, now),
            _ => return None,
        })
    }

    fn x2apic_read(&self, slot: u32, now: u64) -> Result<u64, GeneralProtection> {
        if !self.base.x2apic() {
            return Err(GeneralProtection);
        }
        match slot {
            reg::ID => Ok(u64::from(self.vp)),
            reg::ICR_LOW => Ok(self.icr.into_bits()),
            _ => self.read_common(slot, now).map(u64::from).ok_or(GeneralProtection),
        }
    }

    /// WRMSR of an APIC MSR; `None` if `msr` is not one.
    pub fn msr_write(&mut self, msr: u32, value: u64, now: u64) -> Option<Result<LapicEffect, GeneralProtection>> {
        Some(match msr {
            MSR_APIC_BASE => self.write_apic_base(value).map(|()| LapicEffect::None),
            MSR_TSC_DEADLINE => {
                self.timer.set_deadline(value);
                Ok(LapicEffect::None)
            }
            X2APIC_FIRST..=X2APIC_LAST => self.x2apic_write((msr - X2APIC_FIRST) << 4, value, now),
            _ => return None,
        })
    }

    /// x2APIC writes: read-only and reserved registers, and reserved bits
    /// set, fault (SDM 11.12.1.2–3).
    fn x2apic_write(&mut self, slot: u32, value: u64, now: u64) -> Result<LapicEffect, GeneralProtection> {
        if !self.base.x2apic() {
            return Err(GeneralProtection);
        }
        if slot == reg::ICR_LOW {
            if value & !ICR_X2APIC_DEFINED != 0 {
                return Err(GeneralProtection);
            }
            return Ok(self.send(value));
        }
        let defined = match slot {
            reg::TPR => 0xff,
            reg::EOI | reg::ESR => 0,
            reg::SVR => SVR_WRITABLE,
            0x320..=0x370 => LVT_WRITABLE[((slot - reg::LVT_TIMER) >> 4) as usize] | LVT_STATUS,
            reg::TIMER_INITIAL => u32::MAX,
            reg::TIMER_DIVIDE => DIVIDE_BITS,
            reg::SELF_IPI => 0xff,
            _ => return Err(GeneralProtection),
        };
        if value & !u64::from(defined) != 0 {
            return Err(GeneralProtection);
        }
        let value = value as u32;
        match slot {
            reg::TPR => self.tpr = value,
            reg::EOI => return Ok(self.eoi()),
            reg::SELF_IPI => return Ok(self.send_self(value as u8)),
            _ => {
                let _ = self.write_common(slot, value, now);
            }
        }
        Ok(LapicEffect::None)
    }

    fn send_self(&mut self, vector: u8) -> LapicEffect {
        if vector < 16 {
            self.error(esr::SEND_ILLEGAL_VECTOR);
            return LapicEffect::None;
        }
        LapicEffect::Ipi(Message { mode: DeliveryMode::FIXED, vector, level: false, dest: Destination::SelfOnly })
    }

    /// RDMSR of a Hyper-V APIC MSR (HV_X64_MSR_EOI is write-only).
    pub fn hv_msr_read(&self, msr: HvApicMsr) -> Result<u64, GeneralProtection> {
        match msr {
            _ if !self.base.enable() => Err(GeneralProtection),
            HvApicMsr::Eoi => Err(GeneralProtection),
            HvApicMsr::Icr => Ok(self.icr.into_bits()),
            HvApicMsr::Tpr => Ok(u64::from(self.tpr)),
        }
    }

    /// WRMSR of a Hyper-V APIC MSR: EOI, ICR (as the 64-bit ICR of the
    /// APIC's mode) and TPR.
    pub fn hv_msr_write(&mut self, msr: HvApicMsr, value: u64) -> Result<LapicEffect, GeneralProtection> {
        if !self.base.enable() {
            return Err(GeneralProtection);
        }
        Ok(match msr {
            HvApicMsr::Eoi => self.eoi(),
            HvApicMsr::Icr if self.base.x2apic() => self.send(value & ICR_X2APIC_DEFINED),
            HvApicMsr::Icr => self.send(value & ICR_XAPIC_WRITABLE),
            HvApicMsr::Tpr => {
                self.tpr = value as u32 & 0xff;
                LapicEffect::None
            }
        })
    }
}
