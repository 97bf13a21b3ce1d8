//! A partition's restart when its guest resets the machine and its
//! manifest's `on_reset` is `"restart"` (the default): the same partition
//! object, VPs and RAM, loaded and started again.
//!
//! - Every VP is stopped (VP_SUSPEND, also the one whose exit reset it:
//!   its reply then finds no caller, which the loop skips).
//! - The overlay pages go (the hypercall page's write access is given
//!   back to the guest).
//! - Guest RAM is zeroed and the guest loaded again by the task's loader
//!   ([`Boot`]): what a machine's firmware gives a booting OS, not what a
//!   warm reset leaves in DRAM; a reboot then never depends on what the
//!   last boot left.
//! - The VMM goes back to power-on ([`crate::exits::Vmm::reset`]): devices,
//!   interrupt controllers, timers, SynIC and synthetic MSRs; the RTC's
//!   time and CMOS RAM are kept (battery-backed). The broker learns that
//!   no SINT takes messages.
//! - Every VP goes back to its power-on state in the kernel (VP_RESET):
//!   registers, x87/SSE/AVX, debug registers and MSRs, nothing pending,
//!   and no VTL 1 context; then the partition loses VTL 1 and its view
//!   (PARTITION_DISABLE_VTL, TLFS 15.3.4), if it had it.
//! - VP 0 gets the loader's entry state and starts; the APs wait for INIT
//!   and SIPI, whose start-up state sets their registers.

use super::view::RamOnly;
use super::{Running, Vp, say};
use crate::exits::ResetSource;
use crate::guest::Guest;
use crate::host::{Kernel, Services};
use crate::loader::Module;
use crate::logs::Kind;
use crate::root::RootPolicy;
use abi::{CapSlot, ErrorCode};
use tlfs::HvRegisterName;

/// VP 0's entry registers as `VP_SET_REGISTERS` words.
pub type EntryWords = heapless::Vec<u64, { crate::entry::SET_REGISTERS_WORDS }>;
/// Most boot modules a partition has.
pub const MAX_BOOT_MODULES: usize = sysimage::manifest::MAX_MODULES;

/// How a partition's guest is loaded: what the loader reads, and the
/// task's loader itself, run at the start and again at each restart.
pub struct Boot<'m> {
    /// The partition's name, for the loader's log lines.
    pub name: &'m str,
    /// The guest kernel's bootfs name, first on a Multiboot command line.
    pub image: &'m str,
    pub cmdline: &'m str,
    pub vcpus: u8,
    pub kernel: &'m [u8],
    pub modules: heapless::Vec<Module<'m>, MAX_BOOT_MODULES>,
    /// Bytes of guest RAM.
    pub memory: u64,
    /// Loads the guest into RAM (GPA 0 up), returns VP 0's entry state.
    pub load: fn(&Boot<'_>, &mut [u8]) -> Result<EntryWords, ErrorCode>,
}

/// Restarts a partition may have within [`RESTART_WINDOW_SECS`]; a reset
/// beyond them ends it: a guest that resets in a loop would otherwise hold
/// the VID (each restart zeroes and reloads its RAM) from its neighbours.
pub const RESTART_BURST: u32 = 8;
pub const RESTART_WINDOW_SECS: u64 = 10;

/// Whether a reset of `r` at TSC `now` restarts it: its policy says so,
/// its guest can be loaded again, and it has not used up its burst.
pub(super) fn wanted(r: &mut Running<'_>, now: u64) -> bool {
    if r.on_reset != sysimage::OnReset::Restart || r.boot.is_none() {
        return false;
    }
    let window = RESTART_WINDOW_SECS.saturating_mul(r.vmm.config().clock.tsc_hz.max(1));
    let (start, count) = &mut r.restart_window;
    if *count == 0 || now.saturating_sub(*start) >= window {
        (*start, *count) = (now, 0);
    }
    *count += 1;
    *count <= RESTART_BURST
}

/// A guest whose overlays are being taken away: its RAM, and the kernel
/// for the hypercall page's held write access.
struct Uncovering<'r, K> {
    kernel: &'r K,
    partition: CapSlot,
    ram: RamOnly<'r>,
}

impl<K: Kernel> Guest for Uncovering<'_, K> {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        self.ram.read(gpa, buf)
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        self.ram.write(gpa, data)
    }
    fn register(&mut self, _: HvRegisterName) -> Option<(u64, u64)> {
        None
    }
    fn beneath(&mut self, slot: usize) -> Option<&mut [u8]> {
        self.ram.beneath(slot)
    }
    fn hold_write(&mut self, gpn: u64, held: bool, vtl: u8) {
        self.kernel.hold_write(self.partition, gpn, held, vtl);
    }
}

/// Restarts partition `r`, reset by `by`, at TSC `now` (see the module's
/// text). If its guest cannot be loaded again, it ends.
pub(super) fn restart(kernel: &impl Kernel, services: &impl Services, r: &mut Running<'_>, by: ResetSource, now: u64) {
    let name = r.name;
    for vp in r.vps.iter_mut() {
        // An AP the root policy holds, or one never started, is not
        // running: the kernel refuses, which changes nothing.
        if vp.started {
            let _ = kernel.suspend_vp(vp.cap);
        }
        *vp = Vp::new(vp.cap);
    }
    // What the guest wrote before its reset comes before the reset.
    super::drain(kernel, r, now, None);
    r.restarts += 1;
    say(kernel, &mut r.logs, name, Kind::Event, format_args!("reset by {by}; restarting ({})", r.restarts));
    let mut uncovering = Uncovering { kernel, partition: r.partition, ram: RamOnly(r.ram, r.beneath, None) };
    r.vmm.synthetic.uncover_all(&mut uncovering);
    r.ram.fill(0);
    r.beneath.fill(0);
    let loaded = match r.boot.as_ref() {
        Some(boot) => (boot.load)(boot, r.ram),
        None => Err(ErrorCode::INVALID_STATE),
    };
    let entry = match loaded {
        Ok(entry) => entry,
        Err(e) => {
            let why = format_args!("guest reset by {by}, and it cannot be loaded again ({e:?})");
            super::end(kernel, services, r, None, why);
            return;
        }
    };
    r.vmm.reset(now);
    if services.has_broker() {
        for vp in 0..r.vps.len() as u32 {
            let _ = services.synic_state(r.index, vp, 0);
        }
    }
    for monitor in r.monitors.iter_mut() {
        monitor.monitor = crate::monitor::Monitor::new(r.vmm.config().clock.tsc_hz);
    }
    if r.root.is_some() {
        r.root = Some(RootPolicy::new());
    }
    r.console = Default::default();
    for v in 0..r.vps.len() {
        if let Err(e) = kernel.reset_vp(r.vps[v].cap) {
            super::end(kernel, services, r, None, format_args!("VP {v} cannot be reset: {e:?}"));
            return;
        }
    }
    // Asked whatever the VID's state said: a previous instance may have
    // enabled it. INVALID_STATE: the partition has no VTL 1.
    match kernel.disable_partition_vtl(r.partition, 1) {
        // VTL 0's protections went with VTL 1.
        Ok(()) | Err(ErrorCode::INVALID_STATE) => r.protections.reset(),
        Err(e) => {
            super::end(kernel, services, r, None, format_args!("VTL 1 cannot be taken away: {e:?}"));
            return;
        }
    }
    let Some(vp0) = r.vps.first_mut() else { return };
    match kernel.set_registers(vp0.cap, &entry).and_then(|()| kernel.start_vp(vp0.cap)) {
        Ok(()) => vp0.started = true,
        Err(e) => super::end(kernel, services, r, None, format_args!("VP 0 cannot start again after a reset: {e:?}")),
    }
}

/// Partition `r`, just attached, was left by a previous instance of this
/// VID, which died with it: its device state went with that instance, and
/// the partition manager stopped its VPs and put them back to power-on.
/// Its `on_reset` decides, as after a guest reset: restarted from scratch
/// by [`ResetSource::VidRestart`] (counted in its restart burst), or left
/// stopped (finalized at the partition manager). None of its VPs runs yet.
pub fn after_vid_restart(kernel: &impl Kernel, services: &impl Services, r: &mut Running<'_>, now: u64) {
    if wanted(r, now) {
        restart(kernel, services, r, ResetSource::VidRestart, now);
        return;
    }
    let why = match r.on_reset {
        sysimage::OnReset::Stop => "stopped by its VID's restart; left stopped (on_reset = \"stop\")",
        _ => "stopped by its VID's restart; it cannot be loaded again",
    };
    super::end(kernel, services, r, None, why);
}
