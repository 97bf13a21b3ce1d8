//! The partition manager's logic: partitions, their lifecycle, virtual
//! processors, guest-physical mappings and VP registers, with TLFS status
//! codes for every refusal.
//!
//! It creates the kernel objects behind each partition (guest RAM, the
//! PARTITION, its VPs, the pages of monitor connections) through the
//! [`Kernel`] trait, and this module is the
//! one place requests are checked before they reach them, so a request
//! refused here never reaches the kernel, and one the kernel refuses comes
//! back as a TLFS status ([`kernel::hv_error`]).
//!
//! Checks run in the order TLFS recommends (privilege first, so a caller
//! that does not own a partition learns nothing about it): unknown
//! partition, then `ACCESS_DENIED`, then the partition's state, then the
//! arguments.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod journal;
pub mod kernel;

pub use journal::{Held, JOURNAL_PAGES, JournalError, Restored};
pub use kernel::{GuestAccess, Handout, Kernel, hv_error};
use partition_manager_api::layout::{BIOS_AREA, HIGH_RAM_START, LOW_RAM_END, ROM_GPA, ROM_SIGNATURE};
use partition_manager_api::{Handover, PartitionState, Server};
use tessera_idl::{Badge, CapSlot, ErrorCode};
use tlfs::{HvError, HvMapGpaFlags, HvRegisterName, HvResult};
use x86defs::{RFLAGS_FIXED, RFLAGS_RESERVED_ZERO};

/// Partitions that can exist at once, and virtual processors per partition.
pub use abi::limits::{MAX_PARTITIONS, MAX_VPS_PER_PARTITION};
/// Monitor connections the manager keeps a page for, indexed as the
/// manifest's connections are.
pub const MAX_MONITORS: usize = sysimage::manifest::MAX_CONNECTIONS;
/// Distinct guest-physical mappings per partition.
pub const MAX_GPA_RANGES: usize = 16;
/// Guest-physical addresses are below 2^52 (the architectural maximum), so
/// guest page numbers are below 2^40.
pub const GPA_PAGE_LIMIT: u64 = 1 << 40;
/// Bytes in a page.
pub const PAGE: u64 = x86defs::PAGE_SIZE;
/// Longest partition name kept.
pub const MAX_NAME: usize = 32;
/// How long a VID may take to answer one exit of a VP made over IPC before
/// the kernel stops the VP and reports to the manager (a manifest
/// partition says its own, `exit_timeout_ms`).
pub const DEFAULT_EXIT_TIMEOUT_MS: u32 = sysimage::manifest::DEFAULT_EXIT_TIMEOUT_MS;

/// Kernel ticks for `ms` milliseconds, rounded up (0 stays 0: no limit).
pub const fn ticks(ms: u32) -> u64 {
    (ms as u64 * abi::TICK_HZ).div_ceil(1000)
}
/// Badges of the manager's VP monitor capabilities have this bit set;
/// client badges (a task's start index + 1) never do.
pub const MONITOR_BADGE: u64 = 1 << 63;

/// The badge of the monitor capability of VP `vp` of the partition in
/// table slot `slot`.
pub const fn monitor_badge(slot: usize, vp: usize) -> u64 {
    MONITOR_BADGE | ((slot as u64) << 16) | vp as u64
}

/// The (table slot, VP) a monitor badge names, if it is one.
pub const fn monitor_of(badge: u64) -> Option<(usize, usize)> {
    if badge & MONITOR_BADGE == 0 {
        return None;
    }
    Some((((badge >> 16) & 0xffff) as usize, (badge & 0xffff) as usize))
}

/// The registers `get_vp_register` and `set_vp_register` accept.
const REGISTERS: [HvRegisterName; 24] = [
    HvRegisterName::RAX,
    HvRegisterName::RCX,
    HvRegisterName::RDX,
    HvRegisterName::RBX,
    HvRegisterName::RSP,
    HvRegisterName::RBP,
    HvRegisterName::RSI,
    HvRegisterName::RDI,
    HvRegisterName::R8,
    HvRegisterName::R9,
    HvRegisterName::R10,
    HvRegisterName::R11,
    HvRegisterName::R12,
    HvRegisterName::R13,
    HvRegisterName::R14,
    HvRegisterName::R15,
    HvRegisterName::RIP,
    HvRegisterName::RFLAGS,
    HvRegisterName::CR0,
    HvRegisterName::CR2,
    HvRegisterName::CR3,
    HvRegisterName::CR4,
    HvRegisterName::CR8,
    HvRegisterName::EFER,
];

fn known_register(name: u32) -> bool {
    REGISTERS.iter().any(|r| r.0 == name)
}

/// Whether `value` is acceptable for register `name`.
fn register_value_ok(name: HvRegisterName, value: u64) -> bool {
    match name {
        HvRegisterName::RFLAGS => value & RFLAGS_FIXED != 0 && value & RFLAGS_RESERVED_ZERO == 0,
        HvRegisterName::CR8 => value <= 0xf,
        _ => true,
    }
}

/// A VP's capabilities: the VP and the monitor capability it reports on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Vp {
    cap: CapSlot,
    monitor: Option<CapSlot>,
}

/// The kernel objects behind a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Objects {
    partition: CapSlot,
    /// Guest RAM and its size in pages (manifest partitions only): GPA page
    /// n maps RAM page n.
    ram: Option<(CapSlot, u64)>,
    rom: Option<CapSlot>,
    /// Zeroed read-only memory filling the legacy hole below the BIOS area
    /// (VGA memory and option-ROM space), so firmware scans and ROM probes
    /// read zeros instead of exiting. (The BIOS area is RAM the guest sees
    /// read-only, filled by the VID.)
    legacy: Option<CapSlot>,
}

/// `count` guest pages from page number `first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpaRange {
    pub first: u64,
    pub count: u64,
    pub flags: HvMapGpaFlags,
}

impl GpaRange {
    pub const fn end(&self) -> u64 {
        self.first + self.count
    }

    fn overlaps(&self, first: u64, end: u64) -> bool {
        self.first < end && first < self.end()
    }
}

/// A partition the manifest declares, as the manager creates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec<'a> {
    pub name: &'a str,
    /// Its position among the manifest's partitions (what `attach` names).
    pub index: u32,
    /// The badge of its VID, the only task that may act on it.
    pub vid: Badge,
    /// Guest RAM in bytes (a page multiple).
    pub memory: u64,
    pub vcpus: u8,
    /// Milliseconds the VID may take to answer one exit (0: no limit).
    pub exit_timeout_ms: u32,
    /// Core-exclusive (`[scheduler] policy = "core"`): set on the kernel
    /// object before any VP exists.
    pub core_exclusive: bool,
}

/// A monitor connection the manifest declares (TLFS 11.7.4), as the manager
/// backs it: one page of memory, mapped read and write (no execute) at
/// `from_page` in manifest partition `from` and at the port's GPA in
/// manifest partition `to`, so both guests and the hypervisor (the VID of
/// `from`, through [`PartitionManager::attach_monitor`]) see the same page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MonitorSpec {
    pub connection_id: u32,
    /// The manifest index of the partition holding the connection.
    pub from: u32,
    /// The page's GPA in `from`.
    pub from_page: u64,
    /// The port's manifest partition and the page's GPA in it (`None`: the
    /// port is a task's, which has no guest-physical space).
    pub to: Option<(u32, u64)>,
}

impl MonitorSpec {
    /// The GPAs at which the page appears in manifest partition `index`
    /// (two for a self-connection).
    fn gpas_in(&self, index: u32) -> impl Iterator<Item = u64> {
        let from = (self.from == index).then_some(self.from_page);
        let to = self.to.filter(|&(k, _)| k == index).map(|(_, gpa)| gpa);
        from.into_iter().chain(to)
    }
}

/// A declared monitor connection and its page, once made. The page is
/// made by the first build of one of its partitions and kept for the
/// system's life: a deleted partition's mapping of it goes with the
/// partition, the other partition's stays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Monitor {
    spec: MonitorSpec,
    page: Option<CapSlot>,
}

/// What to log when a VP stopped because its VID was gone or too slow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopNotice {
    pub partition: heapless::String<MAX_NAME>,
    pub id: u64,
    pub vp: u64,
    pub reason: abi::VpStopReason,
    pub message_type: u64,
    pub rip: u64,
    /// The partition's exit time limit.
    pub timeout_ms: u32,
}

impl core::fmt::Display for StopNotice {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "partition {}: VP {} stopped: ", self.partition, self.vp)?;
        match self.reason {
            abi::VpStopReason::HANDLER_GONE => write!(f, "its VID is gone")?,
            abi::VpStopReason::HANDLER_TIMED_OUT => write!(f, "its VID did not answer in {} ms", self.timeout_ms)?,
            other => write!(f, "reason {}", other.0)?,
        }
        write!(
            f,
            " (exit message type {:#x} at rip {:#x}); partition {} is Finalized",
            self.message_type, self.rip, self.id
        )
    }
}

/// What to log when a VID took back a partition a previous instance of it
/// left ([`PartitionManager::attach`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reattached {
    pub partition: heapless::String<MAX_NAME>,
    pub id: u64,
    pub how: Handover,
}

impl core::fmt::Display for Reattached {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (name, id) = (&self.partition, self.id);
        match self.how {
            Handover::Running => write!(f, "partition {name}: stopped: its VID is gone (attached again while it ran)")?,
            _ => write!(f, "partition {name}: attached again after its VID was gone")?,
        }
        write!(f, "; its VPs are back at power-on and partition {id} is Active for the new instance")
    }
}

/// Not `Copy`: a partition is large, and copies of it are never wanted.
#[derive(Debug)]
struct Partition {
    id: u64,
    owner: Badge,
    state: PartitionState,
    name: heapless::String<MAX_NAME>,
    /// Its manifest index, for a manifest partition.
    index: Option<u32>,
    exit_timeout_ms: u32,
    objects: Objects,
    vps: [Option<Vp>; MAX_VPS_PER_PARTITION],
    gpa: [Option<GpaRange>; MAX_GPA_RANGES],
    /// The last guest crash notification (CRASH_P0..P4) its VID reported.
    crash: Option<[u64; 5]>,
    /// The instance of its VID it was last handed to (`attach`'s token):
    /// an attach from another instance gets it reset; one from the same
    /// instance is that attach again (its reply was lost with a manager
    /// that died) and gets it as before.
    attached: Option<u64>,
    /// Finalized by a VP's monitor (its VID gone or silent), not by its
    /// VID: a new instance of the VID may take it back.
    monitor_stopped: bool,
}

/// Every partition the manager knows, and the kernel that backs them.
pub struct PartitionManager<K> {
    kernel: K,
    partitions: [Option<Partition>; MAX_PARTITIONS],
    next_id: u64,
    /// Capabilities the current reply carries (derived for it).
    outgoing: heapless::Vec<CapSlot, { abi::MAX_TRANSFER_CAPS }>,
    /// Guest crash notifications received, and the partition of the last.
    crashes: u64,
    last_crash: Option<u64>,
    /// The manifest's monitor connections, by connection index.
    monitors: [Option<Monitor>; MAX_MONITORS],
    /// The partition the request just handled took back from a previous
    /// instance of its VID, for the task's log.
    reattached: Option<Reattached>,
}

/// Checks a page range: non-empty and below [`GPA_PAGE_LIMIT`]; returns its end.
fn page_range(first: u64, count: u64) -> HvResult<u64> {
    match first.checked_add(count) {
        Some(end) if count > 0 && end <= GPA_PAGE_LIMIT => Ok(end),
        _ => Err(HvError::INVALID_PARAMETER),
    }
}

/// The free entry of a partition's mapping table for pages
/// `first..end`: `INVALID_PARAMETER` if they overlap a mapping,
/// `INSUFFICIENT_MEMORY` if the table is full.
fn free_range(gpa: &[Option<GpaRange>], first: u64, end: u64) -> HvResult<usize> {
    if gpa.iter().flatten().any(|r| r.overlaps(first, end)) {
        return Err(HvError::INVALID_PARAMETER);
    }
    gpa.iter().position(Option::is_none).ok_or(HvError::INSUFFICIENT_MEMORY)
}

fn access(flags: HvMapGpaFlags) -> GuestAccess {
    GuestAccess {
        read: flags.readable(),
        write: flags.writable(),
        execute: flags.kernel_executable() || flags.user_executable(),
    }
}

/// The partition `id`, if `caller` owns it.
fn owned(partitions: &mut [Option<Partition>], caller: Badge, id: u64) -> HvResult<&mut Partition> {
    let partition = partitions.iter_mut().flatten().find(|p| p.id == id).ok_or(HvError::INVALID_PARTITION_ID)?;
    if partition.owner != caller {
        return Err(HvError::ACCESS_DENIED);
    }
    Ok(partition)
}

/// The partition `id`, if `caller` owns it and it is in `state`.
fn owned_in(
    partitions: &mut [Option<Partition>],
    caller: Badge,
    id: u64,
    state: PartitionState,
) -> HvResult<&mut Partition> {
    let partition = owned(partitions, caller, id)?;
    if partition.state != state {
        return Err(HvError::INVALID_PARTITION_STATE);
    }
    Ok(partition)
}

const RWX: u32 = 0b0111;
const RX: u32 = 0b0101;
const RW: u32 = 0b0011;

impl<K: Kernel> PartitionManager<K> {
    pub const fn new(kernel: K) -> PartitionManager<K> {
        PartitionManager {
            kernel,
            partitions: [const { None }; MAX_PARTITIONS],
            next_id: 1,
            outgoing: heapless::Vec::new(),
            crashes: 0,
            last_crash: None,
            monitors: [None; MAX_MONITORS],
            reattached: None,
        }
    }

    pub fn kernel(&mut self) -> &mut K {
        &mut self.kernel
    }

    fn vp(&mut self, caller: Badge, id: u64, vp_index: u32) -> HvResult<CapSlot> {
        let partition = owned_in(&mut self.partitions, caller, id, PartitionState::Active)?;
        let vp = partition.vps.get(vp_index as usize).copied().flatten().ok_or(HvError::INVALID_VP_INDEX)?;
        Ok(vp.cap)
    }

    /// A new table entry for a partition owned by `owner`, Created, with a
    /// kernel PARTITION object.
    fn new_partition(&mut self, owner: Badge, name: &str, index: Option<u32>) -> HvResult<usize> {
        let slot = self.partitions.iter().position(Option::is_none).ok_or(HvError::INSUFFICIENT_MEMORY)?;
        let id = self.next_id;
        let next = id.checked_add(1).ok_or(HvError::INSUFFICIENT_MEMORY)?;
        let partition = self.kernel.create_partition().map_err(hv_error)?;
        self.next_id = next;
        let mut short = heapless::String::new();
        for c in name.chars() {
            if short.push(c).is_err() {
                break;
            }
        }
        self.partitions[slot] = Some(Partition {
            id,
            owner,
            state: PartitionState::Created,
            name: short,
            index,
            exit_timeout_ms: DEFAULT_EXIT_TIMEOUT_MS,
            objects: Objects { partition, ram: None, rom: None, legacy: None },
            vps: [None; MAX_VPS_PER_PARTITION],
            gpa: [None; MAX_GPA_RANGES],
            crash: None,
            attached: None,
            monitor_stopped: false,
        });
        Ok(slot)
    }

    pub fn create_partition(&mut self, caller: Badge, flags: u64) -> HvResult<u64> {
        if flags != 0 {
            return Err(HvError::INVALID_PARAMETER);
        }
        let slot = self.new_partition(caller, "", None)?;
        Ok(self.partitions[slot].as_ref().map_or(0, |p| p.id))
    }

    /// Declares the manifest's monitor connection `index` (its position
    /// among the manifest's connections), before either of its partitions
    /// is created: each partition's build maps the page. Refused
    /// (`INVALID_PARAMETER`) for an index out of range or declared already,
    /// or a GPA that is not a page below [`GPA_PAGE_LIMIT`];
    /// `INVALID_PARTITION_STATE` once one of its partitions exists.
    pub fn declare_monitor(&mut self, index: usize, spec: MonitorSpec) -> HvResult<()> {
        let slot = self.monitors.get_mut(index).ok_or(HvError::INVALID_PARAMETER)?;
        let gpas = [Some(spec.from_page), spec.to.map(|(_, gpa)| gpa)];
        let page_ok = |gpa: u64| gpa.is_multiple_of(PAGE) && gpa / PAGE < GPA_PAGE_LIMIT;
        if slot.is_some() || !gpas.into_iter().flatten().all(page_ok) {
            return Err(HvError::INVALID_PARAMETER);
        }
        let built = |k: u32| self.partitions.iter().flatten().any(|p| p.index == Some(k));
        if built(spec.from) || spec.to.is_some_and(|(k, _)| built(k)) {
            return Err(HvError::INVALID_PARTITION_STATE);
        }
        self.monitors[index] = Some(Monitor { spec, page: None });
        Ok(())
    }

    /// Creates a manifest partition for its VID: guest RAM and the ROM page
    /// mapped as [`partition_manager_api::layout`] says, the page of each
    /// of its monitor connections (made by whichever of the connection's
    /// partitions is built first), and every VP, each with the manager as
    /// its monitor. It is Active; its ID is returned. Whatever was made for
    /// the partition is deleted again if a step fails (a monitor page
    /// stays, for the other partition).
    pub fn create_from_manifest(&mut self, spec: &Spec<'_>) -> HvResult<u64> {
        let pages = spec.memory / PAGE;
        if !spec.memory.is_multiple_of(PAGE)
            || pages <= HIGH_RAM_START / PAGE
            || usize::from(spec.vcpus) > MAX_VPS_PER_PARTITION
        {
            return Err(HvError::INVALID_PARAMETER);
        }
        let slot = self.new_partition(spec.vid, spec.name, Some(spec.index))?;
        if let Some(p) = self.partitions[slot].as_mut() {
            p.exit_timeout_ms = spec.exit_timeout_ms;
        }
        let built = self.build(slot, pages, spec.vcpus, spec.core_exclusive);
        let Some(partition) = self.partitions[slot].as_mut() else { return Err(HvError::OPERATION_FAILED) };
        match built {
            Ok(()) => {
                partition.state = PartitionState::Active;
                Ok(partition.id)
            }
            Err(e) => {
                self.destroy(slot);
                Err(e)
            }
        }
    }

    fn build(&mut self, slot: usize, pages: u64, vcpus: u8, core_exclusive: bool) -> HvResult<()> {
        let Some(p) = self.partitions[slot].as_mut() else { return Err(HvError::OPERATION_FAILED) };
        if core_exclusive {
            self.kernel.set_core_exclusive(p.objects.partition).map_err(hv_error)?;
        }
        let ram = self.kernel.create_memory(pages).map_err(hv_error)?;
        p.objects.ram = Some((ram, pages));
        let rom = self.kernel.create_memory(1).map_err(hv_error)?;
        p.objects.rom = Some(rom);
        self.kernel.fill(rom, ROM_SIGNATURE).map_err(hv_error)?;
        let legacy_pages = (BIOS_AREA - LOW_RAM_END) / PAGE;
        let legacy = self.kernel.create_memory(legacy_pages).map_err(hv_error)?;
        p.objects.legacy = Some(legacy);
        let partition = p.objects.partition;
        let ranges = [
            (ram, 0, LOW_RAM_END / PAGE, RWX),
            (ram, HIGH_RAM_START / PAGE, pages - HIGH_RAM_START / PAGE, RWX),
            (legacy, LOW_RAM_END / PAGE, legacy_pages, RX),
            (ram, BIOS_AREA / PAGE, (ROM_GPA - BIOS_AREA) / PAGE, RX),
            (rom, ROM_GPA / PAGE, 1, RX),
        ];
        for (k, (memory, first, count, flags)) in ranges.into_iter().enumerate() {
            let offset = if memory == ram { first } else { 0 };
            let flags = HvMapGpaFlags::from_bits(flags);
            self.kernel.map(partition, memory, first * PAGE, access(flags), offset, count).map_err(hv_error)?;
            p.gpa[k] = Some(GpaRange { first, count, flags });
        }
        let index = p.index;
        for monitor in self.monitors.iter_mut().flatten() {
            for gpa in index.into_iter().flat_map(|k| monitor.spec.gpas_in(k)) {
                let first = gpa / PAGE;
                let free = free_range(&p.gpa, first, first + 1)?;
                let page = match monitor.page {
                    Some(page) => page,
                    None => *monitor.page.insert(self.kernel.create_memory(1).map_err(hv_error)?),
                };
                let flags = HvMapGpaFlags::from_bits(RW);
                self.kernel.map(partition, page, gpa, access(flags), 0, 1).map_err(hv_error)?;
                p.gpa[free] = Some(GpaRange { first, count: 1, flags });
            }
        }
        for vp in 0..vcpus {
            let made = Self::new_vp(&mut self.kernel, partition, slot, usize::from(vp), p.exit_timeout_ms)?;
            p.vps[usize::from(vp)] = Some(made);
        }
        Ok(())
    }

    /// A VP object in `partition` as VP `vp`, with the manager as its
    /// monitor (a kernel without monitors leaves it without one). Only the
    /// manager configures VPs: a VID gets them to run, not to move.
    fn new_vp(kernel: &mut K, partition: CapSlot, slot: usize, vp: usize, timeout_ms: u32) -> HvResult<Vp> {
        let cap = kernel.create_vp().map_err(hv_error)?;
        if let Err(e) = kernel.configure_vp(cap, partition, vp as u32) {
            kernel.delete(cap);
            return Err(hv_error(e));
        }
        let monitor = kernel.set_monitor(cap, monitor_badge(slot, vp), ticks(timeout_ms)).ok();
        Ok(Vp { cap, monitor })
    }

    /// Revokes every capability handed out for the partition in `slot`:
    /// its VID loses RAM, partition, VPs and the pages of the monitor
    /// connections the partition holds (handed out only to the holder's
    /// VID).
    fn revoke(&mut self, slot: usize) {
        let Some(p) = self.partitions[slot].as_ref() else { return };
        let o = p.objects;
        let caps = [Some(o.partition), o.ram.map(|r| r.0), o.rom, o.legacy].into_iter().flatten();
        let held = self.monitors.iter().flatten().filter(|m| p.index == Some(m.spec.from));
        for cap in caps.chain(p.vps.iter().flatten().map(|v| v.cap)).chain(held.filter_map(|m| m.page)) {
            let _ = self.kernel.revoke(cap);
        }
    }

    /// Revokes and deletes every kernel object of the partition in `slot`
    /// and forgets it.
    fn destroy(&mut self, slot: usize) {
        self.revoke(slot);
        let Some(p) = self.partitions[slot].take() else { return };
        for vp in p.vps.iter().flatten() {
            if let Some(monitor) = vp.monitor {
                self.kernel.delete(monitor);
            }
            self.kernel.delete(vp.cap);
        }
        let o = p.objects;
        for cap in [o.ram.map(|r| r.0), o.rom, o.legacy, Some(o.partition)].into_iter().flatten() {
            self.kernel.delete(cap);
        }
    }

    pub fn initialize_partition(&mut self, caller: Badge, id: u64) -> HvResult<()> {
        owned_in(&mut self.partitions, caller, id, PartitionState::Created)?.state = PartitionState::Active;
        Ok(())
    }

    /// Active -> Finalized: the VID's capabilities to the partition's RAM,
    /// partition and VPs are revoked, so nobody but the manager can touch
    /// it until it is deleted. Its VID finalizing one a VP's monitor
    /// stopped first (`INVALID_PARTITION_STATE`) still means it ended: a
    /// later instance of the VID does not take it back.
    pub fn finalize_partition(&mut self, caller: Badge, id: u64) -> HvResult<()> {
        let p = owned(&mut self.partitions, caller, id)?;
        if p.state == PartitionState::Finalized {
            p.monitor_stopped = false;
        }
        owned_in(&mut self.partitions, caller, id, PartitionState::Active)?.state = PartitionState::Finalized;
        if let Some(slot) = self.slot_of(id) {
            self.revoke(slot);
        }
        Ok(())
    }

    /// Created or Finalized: every kernel object of the partition goes.
    pub fn delete_partition(&mut self, caller: Badge, id: u64) -> HvResult<()> {
        if owned(&mut self.partitions, caller, id)?.state == PartitionState::Active {
            return Err(HvError::INVALID_PARTITION_STATE);
        }
        if let Some(slot) = self.slot_of(id) {
            self.destroy(slot);
        }
        Ok(())
    }

    fn slot_of(&self, id: u64) -> Option<usize> {
        self.partitions.iter().position(|p| p.as_ref().is_some_and(|p| p.id == id))
    }

    pub fn partition_state(&mut self, caller: Badge, id: u64) -> HvResult<PartitionState> {
        Ok(owned(&mut self.partitions, caller, id)?.state)
    }

    pub fn create_vp(&mut self, caller: Badge, id: u64, vp_index: u32) -> HvResult<()> {
        let partition = owned_in(&mut self.partitions, caller, id, PartitionState::Active)?;
        match partition.vps.get(vp_index as usize) {
            Some(None) => {}
            // Out of range, or that VP exists already.
            _ => return Err(HvError::INVALID_VP_INDEX),
        }
        let partition = partition.objects.partition;
        let slot = self.slot_of(id).ok_or(HvError::INVALID_PARTITION_ID)?;
        let vp = Self::new_vp(&mut self.kernel, partition, slot, vp_index as usize, DEFAULT_EXIT_TIMEOUT_MS)?;
        if let Some(p) = self.partitions[slot].as_mut() {
            p.vps[vp_index as usize] = Some(vp);
        }
        Ok(())
    }

    /// Maps guest RAM pages `first..first + count` (GPA page n is RAM page
    /// n) with `flags`. A mapping without read access is recorded but maps
    /// nothing (the guest faults on it either way). The kernel checks the
    /// range against the RAM object; a partition without RAM (one created
    /// over IPC) has nothing to map: `INSUFFICIENT_MEMORY`.
    pub fn map_gpa_pages(&mut self, caller: Badge, id: u64, first: u64, count: u64, flags: u32) -> HvResult<()> {
        let partition = owned_in(&mut self.partitions, caller, id, PartitionState::Active)?;
        let end = page_range(first, count)?;
        if !HvMapGpaFlags::is_valid(flags) {
            return Err(HvError::INVALID_PARAMETER);
        }
        let flags = HvMapGpaFlags::from_bits(flags);
        if flags.writable() && !flags.readable() {
            return Err(HvError::INVALID_PARAMETER);
        }
        let slot = free_range(&partition.gpa, first, end)?;
        let (ram, _) = partition.objects.ram.ok_or(HvError::INSUFFICIENT_MEMORY)?;
        if flags.readable() {
            self.kernel
                .map(partition.objects.partition, ram, first * PAGE, access(flags), first, count)
                .map_err(hv_error)?;
        }
        partition.gpa[slot] = Some(GpaRange { first, count, flags });
        Ok(())
    }

    pub fn unmap_gpa_pages(&mut self, caller: Badge, id: u64, first: u64, count: u64) -> HvResult<()> {
        let partition = owned_in(&mut self.partitions, caller, id, PartitionState::Active)?;
        let end = page_range(first, count)?;
        // Build the new table aside and commit it only if everything fits
        // and the kernel unmapped every part.
        let mut kept = [None; MAX_GPA_RANGES];
        let mut len = 0;
        let mut keep = |range: GpaRange| -> HvResult<()> {
            let slot = kept.get_mut(len).ok_or(HvError::INSUFFICIENT_MEMORY)?;
            *slot = Some(range);
            len += 1;
            Ok(())
        };
        for range in partition.gpa.iter().flatten() {
            if !range.overlaps(first, end) {
                keep(*range)?;
                continue;
            }
            if range.first < first {
                keep(GpaRange { first: range.first, count: first - range.first, flags: range.flags })?;
            }
            if range.end() > end {
                keep(GpaRange { first: end, count: range.end() - end, flags: range.flags })?;
            }
        }
        for range in partition.gpa.iter().flatten().filter(|r| r.overlaps(first, end) && r.flags.readable()) {
            let (from, to) = (range.first.max(first), range.end().min(end));
            self.kernel.unmap(partition.objects.partition, from * PAGE, to - from).map_err(hv_error)?;
        }
        partition.gpa = kept;
        Ok(())
    }

    pub fn get_vp_register(&mut self, caller: Badge, id: u64, vp_index: u32, name: u32) -> HvResult<u64> {
        let vp = self.vp(caller, id, vp_index)?;
        if !known_register(name) {
            return Err(HvError::INVALID_PARAMETER);
        }
        self.kernel.get_register(vp, name).map(|(low, _)| low).map_err(hv_error)
    }

    pub fn set_vp_register(&mut self, caller: Badge, id: u64, vp_index: u32, name: u32, value: u64) -> HvResult<()> {
        let vp = self.vp(caller, id, vp_index)?;
        if !known_register(name) {
            return Err(HvError::INVALID_PARAMETER);
        }
        if !register_value_ok(HvRegisterName(name), value) {
            return Err(HvError::INVALID_REGISTER_VALUE);
        }
        self.kernel.set_register(vp, name, value, 0).map_err(hv_error)
    }

    /// Hands manifest partition `index` to its VID: (ID, RAM bytes, VPs,
    /// how it was left), with RAM (read, write), partition and VP 0 (run)
    /// capabilities queued for the reply. A partition handed out before,
    /// Active or stopped by its VPs' monitor, was left by a previous
    /// instance of its VID (another `instance` token): it is taken back
    /// first ([`Self::take_back`]). Only its own VID (by badge) may take
    /// it; one its VID finalized stays ended.
    pub fn attach(&mut self, caller: Badge, index: u32, instance: u64) -> HvResult<(u64, u64, u32, Handover)> {
        let id = self.manifest_partition(index)?;
        let p = owned(&mut self.partitions, caller, id)?;
        let how = match (p.state, p.attached, p.monitor_stopped) {
            (PartitionState::Active, None, _) => Handover::First,
            (PartitionState::Active, Some(by), _) if by == instance => Handover::First,
            (PartitionState::Active, Some(_), _) => Handover::Running,
            (PartitionState::Finalized, _, true) => Handover::Stopped,
            _ => return Err(HvError::INVALID_PARTITION_STATE),
        };
        let (o, vp0) = (p.objects, p.vps[0]);
        let vcpus = p.vps.iter().flatten().count() as u32;
        let (Some((ram, pages)), Some(vp0)) = (o.ram, vp0) else { return Err(HvError::INVALID_PARTITION_STATE) };
        let slot = self.slot_of(id).ok_or(HvError::INVALID_PARTITION_ID)?;
        if how != Handover::First {
            self.take_back(slot)?;
        }
        self.hand_out(&[(ram, Handout::RamReadWrite), (o.partition, Handout::Run), (vp0.cap, Handout::Run)])?;
        let Some(p) = self.partitions[slot].as_mut() else { return Err(HvError::INVALID_PARTITION_ID) };
        p.attached = Some(instance);
        if how != Handover::First {
            self.reattached = Some(Reattached { partition: p.name.clone(), id, how });
        }
        Ok((id, pages * PAGE, vcpus, how))
    }

    /// Takes the partition in `slot` back from the VID instance that ran
    /// it: what was handed out is revoked, every VP is stopped (a started
    /// one suspended, wherever it waits: a stale exit queued at the VID's
    /// endpoint goes with it) and put back to power-on (`VP_RESET`, which
    /// also withdraws a monitor report not yet delivered, so none arrives
    /// after this), the writable RAM is mapped again (a page the old VID
    /// write-protected for its guest's hypercall page is writable again),
    /// and the partition is Active.
    fn take_back(&mut self, slot: usize) -> HvResult<()> {
        self.revoke(slot);
        let Self { kernel, partitions, monitors, .. } = self;
        let Some(p) = partitions[slot].as_mut() else { return Err(HvError::INVALID_PARTITION_ID) };
        for vp in p.vps.iter().flatten() {
            // A VP not started (never, or stopped by its monitor) is
            // refused, which changes nothing.
            let _ = kernel.suspend_vp(vp.cap);
            kernel.reset_vp(vp.cap).map_err(hv_error)?;
        }
        if let Some((ram, _)) = p.objects.ram {
            let monitor_gpas =
                || monitors.iter().flatten().flat_map(|m| p.index.into_iter().flat_map(|k| m.spec.gpas_in(k)));
            for range in p.gpa.iter().flatten().filter(|r| r.flags.writable()) {
                if monitor_gpas().any(|gpa| range.overlaps(gpa / PAGE, gpa / PAGE + 1)) {
                    continue;
                }
                let (gpa, partition) = (range.first * PAGE, p.objects.partition);
                // Not mapped: an instance of the manager that died between
                // this unmap and the map below (its journal still has the
                // range); the attach, made again, maps it.
                match kernel.unmap(partition, gpa, range.count) {
                    Ok(()) | Err(ErrorCode::INVALID_ARGUMENT) => {}
                    Err(e) => return Err(hv_error(e)),
                }
                kernel.map(partition, ram, gpa, access(range.flags), range.first, range.count).map_err(hv_error)?;
            }
        }
        (p.state, p.monitor_stopped) = (PartitionState::Active, false);
        Ok(())
    }

    /// The partition the last request took back from a previous instance
    /// of its VID, once.
    pub fn take_reattached(&mut self) -> Option<Reattached> {
        self.reattached.take()
    }

    /// Hands the page of monitor connection `connection_id`, held by
    /// manifest partition `index`, to the partition's VID: its GPA in the
    /// partition, with the page (read, write) queued for the reply. The
    /// caller is checked as [`attach`](Self::attach) checks it.
    pub fn attach_monitor(&mut self, caller: Badge, index: u32, connection_id: u32) -> HvResult<u64> {
        let id = self.manifest_partition(index)?;
        owned_in(&mut self.partitions, caller, id, PartitionState::Active)?;
        let monitor = self
            .monitors
            .iter()
            .flatten()
            .find(|m| m.spec.from == index && m.spec.connection_id == connection_id)
            .ok_or(HvError::INVALID_CONNECTION_ID)?;
        let (gpa, page) = (monitor.spec.from_page, monitor.page.ok_or(HvError::INVALID_PARTITION_STATE)?);
        self.hand_out(&[(page, Handout::RamReadWrite)])?;
        Ok(gpa)
    }

    /// The ID of manifest partition `index`.
    fn manifest_partition(&self, index: u32) -> HvResult<u64> {
        let p = self.partitions.iter().flatten().find(|p| p.index == Some(index));
        p.map(|p| p.id).ok_or(HvError::INVALID_PARTITION_ID)
    }

    /// A guest crash notification from the partition's VID: kept, and
    /// returned (with the partition's name) for the caller to log.
    pub fn report_guest_crash(&mut self, caller: Badge, id: u64, p: [u64; 5]) -> HvResult<()> {
        let partition = owned(&mut self.partitions, caller, id)?;
        partition.crash = Some(p);
        self.crashes = self.crashes.saturating_add(1);
        self.last_crash = Some(id);
        Ok(())
    }

    /// The last guest crash reported for the partition.
    pub fn crash_report(&mut self, caller: Badge, id: u64) -> HvResult<Option<[u64; 5]>> {
        Ok(owned(&mut self.partitions, caller, id)?.crash)
    }

    /// Guest crashes reported so far (for the task's log).
    pub fn crashes(&self) -> u64 {
        self.crashes
    }

    /// The partition that reported a crash last, with its CRASH_P0..P4.
    pub fn last_crash(&self) -> Option<(&str, [u64; 5])> {
        let id = self.last_crash?;
        let p = self.partitions.iter().flatten().find(|p| p.id == id)?;
        Some((p.name.as_str(), p.crash?))
    }

    /// Hands VP `vp_index` of partition `id` to its owner, queued for the reply.
    pub fn attach_vp(&mut self, caller: Badge, id: u64, vp_index: u32) -> HvResult<()> {
        let vp = self.vp(caller, id, vp_index)?;
        self.hand_out(&[(vp, Handout::Run)])
    }

    /// Derives the capabilities a reply carries; all or none.
    fn hand_out(&mut self, caps: &[(CapSlot, Handout)]) -> HvResult<()> {
        self.release_outgoing();
        for &(cap, rights) in caps {
            match self.kernel.derive(cap, rights) {
                Ok(copy) => {
                    let _ = self.outgoing.push(copy);
                }
                Err(e) => {
                    self.release_outgoing();
                    return Err(hv_error(e));
                }
            }
        }
        Ok(())
    }

    /// The capabilities the reply to the request just handled carries.
    pub fn outgoing(&self) -> &[CapSlot] {
        &self.outgoing
    }

    /// Deletes the copies made for a reply once it is sent (what the
    /// receiver got stays: it derives from the manager's own capability).
    pub fn release_outgoing(&mut self) {
        for cap in core::mem::take(&mut self.outgoing) {
            self.kernel.delete(cap);
        }
    }

    /// A VP_STOPPED report on monitor badge `badge`: the partition is
    /// Finalized (its VID loses its capabilities). `None` if the badge or
    /// report names nothing the manager knows.
    pub fn vp_stopped(&mut self, badge: u64, words: &[u64]) -> Option<StopNotice> {
        let (slot, vp) = monitor_of(badge)?;
        let report = abi::VpStopReport::from_words(words)?;
        let p = self.partitions.get_mut(slot)?.as_mut()?;
        p.vps.get(vp).copied().flatten()?;
        let was_active = p.state == PartitionState::Active;
        p.state = PartitionState::Finalized;
        p.monitor_stopped |= was_active;
        let notice = StopNotice {
            partition: p.name.clone(),
            id: p.id,
            vp: vp as u64,
            reason: report.reason,
            message_type: report.message_type,
            rip: report.rip,
            timeout_ms: p.exit_timeout_ms,
        };
        if was_active {
            self.revoke(slot);
        }
        Some(notice)
    }

    /// The guest-physical mappings of partition `id`, sorted by page.
    pub fn mappings(&self, id: u64) -> impl Iterator<Item = GpaRange> + '_ {
        let partition = self.partitions.iter().flatten().find(|p| p.id == id);
        let mut ranges = partition.map_or([None; MAX_GPA_RANGES], |p| p.gpa);
        ranges.sort_unstable_by_key(|r| r.map_or(u64::MAX, |r| r.first));
        ranges.into_iter().flatten()
    }

    /// How many partitions exist.
    pub fn count(&self) -> usize {
        self.partitions.iter().flatten().count()
    }
}

impl<K: Kernel> Server for PartitionManager<K> {
    fn create_partition(&mut self, caller: Badge, flags: u64) -> HvResult<u64> {
        PartitionManager::create_partition(self, caller, flags)
    }

    fn initialize_partition(&mut self, caller: Badge, partition: u64) -> HvResult<()> {
        PartitionManager::initialize_partition(self, caller, partition)
    }

    fn finalize_partition(&mut self, caller: Badge, partition: u64) -> HvResult<()> {
        PartitionManager::finalize_partition(self, caller, partition)
    }

    fn delete_partition(&mut self, caller: Badge, partition: u64) -> HvResult<()> {
        PartitionManager::delete_partition(self, caller, partition)
    }

    fn create_vp(&mut self, caller: Badge, partition: u64, vp_index: u32) -> HvResult<()> {
        PartitionManager::create_vp(self, caller, partition, vp_index)
    }

    fn map_gpa_pages(
        &mut self,
        caller: Badge,
        partition: u64,
        gpa_page: u64,
        page_count: u64,
        flags: u32,
    ) -> HvResult<()> {
        PartitionManager::map_gpa_pages(self, caller, partition, gpa_page, page_count, flags)
    }

    fn unmap_gpa_pages(&mut self, caller: Badge, partition: u64, gpa_page: u64, page_count: u64) -> HvResult<()> {
        PartitionManager::unmap_gpa_pages(self, caller, partition, gpa_page, page_count)
    }

    fn get_vp_register(&mut self, caller: Badge, partition: u64, vp_index: u32, name: u32) -> HvResult<u64> {
        PartitionManager::get_vp_register(self, caller, partition, vp_index, name)
    }

    fn set_vp_register(&mut self, caller: Badge, partition: u64, vp_index: u32, name: u32, value: u64) -> HvResult<()> {
        PartitionManager::set_vp_register(self, caller, partition, vp_index, name, value)
    }

    fn partition_state(&mut self, caller: Badge, partition: u64) -> HvResult<PartitionState> {
        PartitionManager::partition_state(self, caller, partition)
    }

    fn attach(&mut self, caller: Badge, index: u32, instance: u64) -> HvResult<(u64, u64, u32, Handover)> {
        PartitionManager::attach(self, caller, index, instance)
    }

    fn attach_vp(&mut self, caller: Badge, partition: u64, vp_index: u32) -> HvResult<()> {
        PartitionManager::attach_vp(self, caller, partition, vp_index)
    }

    fn report_guest_crash(
        &mut self,
        caller: Badge,
        partition: u64,
        p0: u64,
        p1: u64,
        p2: u64,
        p3: u64,
        p4: u64,
    ) -> HvResult<()> {
        PartitionManager::report_guest_crash(self, caller, partition, [p0, p1, p2, p3, p4])
    }

    fn crash_report(&mut self, caller: Badge, partition: u64) -> HvResult<(bool, u64, u64, u64, u64, u64)> {
        let crash = PartitionManager::crash_report(self, caller, partition)?;
        let p = crash.unwrap_or_default();
        Ok((crash.is_some(), p[0], p[1], p[2], p[3], p[4]))
    }

    fn attach_monitor(&mut self, caller: Badge, index: u32, connection_id: u32) -> HvResult<u64> {
        PartitionManager::attach_monitor(self, caller, index, connection_id)
    }
}

#[cfg(test)]
mod tests;
