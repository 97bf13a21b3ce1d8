//! EOI assist (TLFS 10.3.5): the `NoEoiRequired` bit, bit 0 of the VP
//! assist page's first dword. The VID sets it when it injects an interrupt
//! whose EOI only updates the local APIC ([`Lapic::offer_lazy_eoi`]); a
//! guest that clears it instead of writing the EOI takes no exit, and the
//! VID retires the vector when it next sees the bit clear: in every poll
//! and before every exit of the partition is handled, so before any EOI or
//! injection that depends on it.
//!
//! Only the guest clears the bit once set, and the VID sets or clears it
//! only while its VP is stopped at an exit (the guest's `xchg` and the
//! VID's write never race): a clear bit seen while the VP runs is a done
//! EOI. An interrupt requested behind the one in service takes the bit
//! back at the VP's next exit ("the hypervisor clears the No EOI required
//! bit"), so the guest's EOI exits and reveals it.
//!
//! [`Lapic::offer_lazy_eoi`]: crate::irq::lapic::Lapic::offer_lazy_eoi

use super::Vmm;
use crate::guest::Guest;

/// `NoEoiRequired`, in the EOI Assist dword at offset 0 of the page.
const NO_EOI_REQUIRED: u32 = 1;

impl Vmm {
    /// The assist page's EOI Assist dword of VP `vp`, if the page is on.
    fn eoi_assist(&self, vp: u32, guest: &mut impl Guest) -> Option<u32> {
        let gpa = self.synthetic.vp_assist_page(vp)?;
        let mut dword = [0u8; 4];
        guest.read(gpa, &mut dword).then(|| u32::from_le_bytes(dword))
    }

    fn set_eoi_assist(&self, vp: u32, value: u32, guest: &mut impl Guest) -> bool {
        self.synthetic.vp_assist_page(vp).is_some_and(|gpa| guest.write(gpa, &value.to_le_bytes()))
    }

    /// Retires the lazy EOIs the guests did (their bit is clear). Safe while
    /// the VPs run: a clear bit stays clear until the VID sets it again.
    pub(super) fn complete_lazy_eois(&mut self, guest: &mut impl Guest) {
        for vp in 0..self.irq.vps() {
            if !self.irq.lapic(vp).is_some_and(|l| l.lazy_eoi()) {
                continue;
            }
            // A page turned off or moved was withdrawn when it was written.
            let done = self.eoi_assist(vp, guest).is_none_or(|d| d & NO_EOI_REQUIRED == 0);
            if done {
                let effects = self.irq.complete_lazy_eoi(vp);
                self.effects.merge(effects);
                self.stats.lazy_eois += 1;
            }
        }
    }

    /// At VP `vp`'s exit, before its next injection: an outstanding lazy
    /// EOI with an interrupt requested behind it is taken back (the bit
    /// cleared), so the guest writes the EOI that lets that one in.
    pub(super) fn withdraw_lazy_eoi_if_requested(&mut self, vp: u32, guest: &mut impl Guest) {
        let Some(lapic) = self.irq.lapic(vp) else { return };
        if lapic.lazy_eoi() && lapic.requested() {
            self.set_eoi_assist(vp, 0, guest);
            if let Some(lapic) = self.irq.lapic_mut(vp) {
                lapic.withdraw_lazy_eoi();
            }
        }
    }

    /// The assist page was written (turned off, moved or zeroed again): an
    /// outstanding lazy EOI is the guest's to write.
    pub(super) fn assist_page_written(&mut self, vp: u32) {
        if let Some(lapic) = self.irq.lapic_mut(vp) {
            lapic.withdraw_lazy_eoi();
        }
    }

    /// VP `vp`, stopped at its exit, is given `vector`: `NoEoiRequired` is
    /// set if its assist page is on and the APIC model offers it. A bit
    /// left set with no lazy EOI outstanding (from before an INIT, or the
    /// guest's own) is cleared: it would swallow this vector's EOI.
    pub(super) fn offer_lazy_eoi(&mut self, vp: u32, vector: u8, guest: &mut impl Guest) {
        let Some(dword) = self.eoi_assist(vp, guest) else { return };
        let Some(lapic) = self.irq.lapic_mut(vp) else { return };
        let outstanding = lapic.lazy_eoi();
        if lapic.offer_lazy_eoi(vector) {
            if !self.set_eoi_assist(vp, NO_EOI_REQUIRED, guest) {
                self.assist_page_written(vp);
            }
        } else if !outstanding && dword & NO_EOI_REQUIRED != 0 {
            self.set_eoi_assist(vp, 0, guest);
        }
    }
}
