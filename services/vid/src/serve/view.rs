//! The guest as the exit handler sees it: RAM through the VID's window,
//! the ROM page, and registers.

use crate::guest::Guest;
use crate::host::Kernel;
use crate::vsm::VtlKernel;
use crate::vsm::protect::{Need, Protections, rights};
use abi::{CapSlot, ErrorCode, Rights};
use partition_manager_api::layout::{HIGH_RAM_START, LOW_RAM_END, ROM_GPA, ROM_SIGNATURE};
use tlfs::HvVpIndex;
use tlfs::exit_state::TransferredState;
use tlfs::hypercall::HvRegisterValue;
use tlfs::vsm::HvVtl;
use tlfs::{HvError, HvMapGpaFlags, HvRegisterName, HvResult};

const PAGE: u64 = x86defs::PAGE_SIZE;

/// The guest of one exit: RAM, the ROM page, registers from the state sent
/// with the exit or, failing that, through VP_GET_REGISTERS.
pub(super) struct View<'r, K> {
    pub kernel: &'r K,
    pub vp: CapSlot,
    pub partition: CapSlot,
    pub ram: &'r mut [u8],
    pub beneath: &'r mut [u8],
    pub state: TransferredState<'r>,
    /// The partition's VPs (the exiting one among them).
    pub vps: &'r [super::Vp],
    /// The VTL the VID's accesses act for: the exit's, unless changed.
    pub vtl: HvVtl,
    /// VTL 1's protections of VTL 0's pages.
    pub protections: &'r mut Protections,
}

impl<K> View<'_, K> {
    /// True if the VID acts for VTL 0 and VTL 1 refuses it `need` on a
    /// page of the range.
    fn refused(&self, gpa: u64, len: usize, need: Need) -> bool {
        self.vtl == 0 && !self.protections.allows(gpa, len, need)
    }
}

impl<K: Kernel> Guest for View<'_, K> {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        if let Some(range) = ram_range(self.ram.len(), gpa, buf.len()) {
            if self.refused(gpa, buf.len(), Need::Read) {
                return false;
            }
            buf.copy_from_slice(&self.ram[range]);
            return true;
        }
        let rom = ROM_GPA..ROM_GPA + PAGE;
        if rom.contains(&gpa) && gpa + buf.len() as u64 <= rom.end {
            for (i, b) in buf.iter_mut().enumerate() {
                let at = (gpa - ROM_GPA) as usize + i;
                *b = ROM_SIGNATURE.get(at).copied().unwrap_or(0);
            }
            return true;
        }
        false
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        !self.refused(gpa, data.len(), Need::Write) && ram_write(self.ram, gpa, data)
    }

    fn denied(&mut self, gpa: u64, len: usize, need: Need) -> bool {
        ram_range(self.ram.len(), gpa, len).is_some() && self.refused(gpa, len, need)
    }

    fn act_for(&mut self, vtl: u8) -> u8 {
        core::mem::replace(&mut self.vtl, vtl)
    }

    fn register(&mut self, name: HvRegisterName) -> Option<(u64, u64)> {
        if let Some(value) = self.state.get(name) {
            return Some(value);
        }
        self.kernel.register(self.vp, name).ok()
    }

    fn beneath(&mut self, slot: usize) -> Option<&mut [u8]> {
        beneath_page(self.beneath, slot)
    }

    /// A page the VID found writable RAM: the kernel refuses only a page
    /// the manager unmapped meanwhile, which then needs no hold.
    fn hold_write(&mut self, gpn: u64, held: bool, vtl: u8) {
        self.kernel.hold_write(self.partition, gpn, held, vtl);
    }

    fn vtl_kernel(&mut self) -> Option<&mut dyn VtlKernel> {
        Some(self)
    }
}

impl<K: Kernel> VtlKernel for View<'_, K> {
    fn enable_partition_vtl(&mut self, vtl: HvVtl) -> Result<(), ErrorCode> {
        self.kernel.enable_partition_vtl(self.partition, vtl)
    }

    /// A started VP other than the exiting one may be in guest mode (or
    /// halted in ring 0): the VID cannot tell, so it counts as running.
    fn may_run(&self, vp: HvVpIndex) -> bool {
        self.vps.get(vp as usize).is_some_and(|v| v.started && v.cap != self.vp)
    }

    fn enable_vp_vtl(
        &mut self,
        vp: HvVpIndex,
        vtl: HvVtl,
        active: HvVtl,
        registers: &[(HvRegisterName, HvRegisterValue)],
    ) -> Result<Result<(), ErrorCode>, ErrorCode> {
        let cap = self.vps.get(vp as usize).ok_or(ErrorCode::INVALID_ARGUMENT)?.cap;
        enable_vp_vtl(self.kernel, cap, vtl, active, registers)
    }

    /// Checked here (RAM, the mask, room in the table), then ring 0, then
    /// recorded: the table and ring 0 agree.
    fn protect(&mut self, gpn: u64, mask: HvMapGpaFlags) -> HvResult<()> {
        let rights = rights(mask)?;
        let gpa = gpn.checked_mul(PAGE).ok_or(HvError::INVALID_PARAMETER)?;
        if ram_range(self.ram.len(), gpa, PAGE as usize).is_none() {
            return Err(HvError::INVALID_PARAMETER);
        }
        if !self.protections.fits(gpn, mask) {
            return Err(HvError::INSUFFICIENT_MEMORY);
        }
        self.kernel.protect(self.partition, gpn, 1, rights).map_err(protect_status)?;
        self.protections.set(gpn, mask)
    }

    /// Both RAM ranges (below 640 KiB, and from 1 MiB); if the second is
    /// refused the first is given back RWX.
    fn protect_default(&mut self, mask: HvMapGpaFlags) -> HvResult<()> {
        let rights = rights(mask)?;
        let high = (self.ram.len() as u64).saturating_sub(HIGH_RAM_START) / PAGE;
        let low = (0, LOW_RAM_END.min(self.ram.len() as u64) / PAGE);
        self.kernel.protect(self.partition, low.0, low.1, rights).map_err(protect_status)?;
        if high != 0
            && let Err(e) = self.kernel.protect(self.partition, HIGH_RAM_START / PAGE, high, rights)
        {
            let rwx = Rights::NONE.with_read(true).with_write(true).with_execute(true);
            let _ = self.kernel.protect(self.partition, low.0, low.1, rwx);
            return Err(protect_status(e));
        }
        self.protections.set_default(mask);
        Ok(())
    }

    fn switch_vtl(&mut self, vp: HvVpIndex, vtl: HvVtl) -> Result<(), ErrorCode> {
        let cap = self.vps.get(vp as usize).ok_or(ErrorCode::INVALID_ARGUMENT)?.cap;
        if cap != self.vp {
            return Err(ErrorCode::INVALID_STATE);
        }
        self.kernel.switch_vtl(cap, vtl)
    }

    fn vtl_register(
        &mut self,
        vp: HvVpIndex,
        vtl: HvVtl,
        active: HvVtl,
        name: HvRegisterName,
    ) -> Result<(u64, u64), ErrorCode> {
        self.switch_vtl(vp, vtl)?;
        let value = self.kernel.register(self.vp, name);
        self.kernel.switch_vtl(self.vp, active)?;
        value
    }
}

const _: () = assert!(
    tlfs::vsm::HV_INITIAL_VP_CONTEXT_REGISTERS <= abi::limits::MAX_VP_REGISTERS
        && 3 * abi::limits::MAX_VP_REGISTERS < abi::MAX_MESSAGE_WORDS,
    "an initial context is one VP_SET_REGISTERS"
);

/// VP_ENABLE_VTL of `vtl` on `vp`, then `registers` set in that VTL:
/// switched there, set, switched back to `active` (register access acts
/// on the active VTL). `Err`: the VTL was not made.
pub(super) fn enable_vp_vtl(
    kernel: &impl Kernel,
    vp: CapSlot,
    vtl: HvVtl,
    active: HvVtl,
    registers: &[(HvRegisterName, HvRegisterValue)],
) -> Result<Result<(), ErrorCode>, ErrorCode> {
    let mut words = heapless::Vec::<u64, { abi::MAX_MESSAGE_WORDS }>::new();
    let _ = words.push(registers.len() as u64);
    for (name, value) in registers {
        words
            .extend_from_slice(&[u64::from(name.0), value.low, value.high])
            .map_err(|_| ErrorCode::INVALID_ARGUMENT)?;
    }
    kernel.enable_vp_vtl(vp, vtl)?;
    let set = kernel.switch_vtl(vp, vtl).and_then(|()| {
        let set = kernel.set_registers(vp, &words);
        set.and(kernel.switch_vtl(vp, active))
    });
    Ok(set)
}

/// The partition's RAM alone, for what the VID does between exits (the
/// synthetic timers' messages, SynIC deliveries: VTL 0's, checked against
/// the protections if given): no ROM, no registers; then the pages that
/// keep the RAM beneath the overlays.
pub(super) struct RamOnly<'r>(pub &'r mut [u8], pub &'r mut [u8], pub Option<&'r Protections>);

impl RamOnly<'_> {
    fn refused(&self, gpa: u64, len: usize, need: Need) -> bool {
        self.2.is_some_and(|p| !p.allows(gpa, len, need))
    }
}

impl Guest for RamOnly<'_> {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        match ram_range(self.0.len(), gpa, buf.len()) {
            Some(range) if !self.refused(gpa, buf.len(), Need::Read) => {
                buf.copy_from_slice(&self.0[range]);
                true
            }
            _ => false,
        }
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        !self.refused(gpa, data.len(), Need::Write) && ram_write(self.0, gpa, data)
    }

    fn denied(&mut self, gpa: u64, len: usize, need: Need) -> bool {
        ram_range(self.0.len(), gpa, len).is_some() && self.refused(gpa, len, need)
    }

    fn register(&mut self, _name: HvRegisterName) -> Option<(u64, u64)> {
        None
    }

    fn beneath(&mut self, slot: usize) -> Option<&mut [u8]> {
        beneath_page(self.1, slot)
    }
}

/// The status of a PARTITION_PROTECT refusal.
fn protect_status(e: ErrorCode) -> HvError {
    match e {
        ErrorCode::OUT_OF_MEMORY => HvError::INSUFFICIENT_MEMORY,
        ErrorCode::INVALID_STATE => HvError::INVALID_VTL_STATE,
        ErrorCode::BAD_ADDRESS | ErrorCode::INVALID_ARGUMENT => HvError::INVALID_PARAMETER,
        _ => HvError::INVALID_PARTITION_STATE,
    }
}

/// Writes `data` to RAM at `gpa`; false (nothing written) unless all RAM.
fn ram_write(ram: &mut [u8], gpa: u64, data: &[u8]) -> bool {
    match ram_range(ram.len(), gpa, data.len()) {
        Some(range) => {
            ram[range].copy_from_slice(data);
            true
        }
        None => false,
    }
}

/// Overlay slot `slot`'s page of `beneath`.
fn beneath_page(beneath: &mut [u8], slot: usize) -> Option<&mut [u8]> {
    let at = slot.checked_mul(PAGE as usize)?;
    beneath.get_mut(at..at.checked_add(PAGE as usize)?)
}

/// The bytes of `ram` (of `ram_len` bytes) at `gpa..gpa + len`, if all RAM.
fn ram_range(ram_len: usize, gpa: u64, len: usize) -> Option<core::ops::Range<usize>> {
    let end = gpa.checked_add(len as u64)?;
    let ram = (gpa < LOW_RAM_END && end <= LOW_RAM_END) || (gpa >= HIGH_RAM_START && end <= ram_len as u64);
    ram.then_some(gpa as usize..end as usize)
}

#[cfg(test)]
mod tests;
