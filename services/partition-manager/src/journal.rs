//! The manager's table, kept where its next instance can read it.
//!
//! The supervisor keeps the manager's capabilities across its restart (it
//! moves them out of the dead task and back into the same slots of the new
//! one, `TASK_MOVE_CAP`), and one of them is this journal: a memory object
//! holding two copies of the table, each a header (magic, sequence,
//! length, checksum) and the table as little-endian words. A change is
//! written to the older copy, payload first and header last, so a manager
//! killed mid-write leaves the other copy whole; the next instance reads
//! the valid copy with the higher sequence.

use super::{
    GpaRange, MAX_GPA_RANGES, MAX_MONITORS, MAX_NAME, MAX_PARTITIONS, MAX_VPS_PER_PARTITION, Monitor, MonitorSpec,
    Objects, Partition, PartitionManager, Vp,
};
use partition_manager_api::PartitionState;
use tessera_idl::{Badge, CapSlot};
use tlfs::HvMapGpaFlags;

const WORD: usize = 8;
const MAGIC: u64 = u64::from_le_bytes(*b"TSPMJRN1");
const HEADER_WORDS: usize = 4;
/// Words of one partition's record: presence, id, owner, state, name
/// (length and bytes), index, exit time limit, objects, VPs, mappings,
/// flags (crash, stopped by its monitor), crash, and the VID instance it
/// was handed to.
const PARTITION_WORDS: usize =
    1 + 3 + 1 + MAX_NAME / WORD + 2 + 5 + 2 * MAX_VPS_PER_PARTITION + 3 * MAX_GPA_RANGES + 6 + 1;
/// Words of one monitor's record: presence, connection, from, its page,
/// the port's partition and page, the memory.
const MONITOR_WORDS: usize = 7;
/// Words of the whole table: next ID, crashes, last crash, partitions,
/// monitors.
const TABLE_WORDS: usize = 3 + MAX_PARTITIONS * PARTITION_WORDS + MAX_MONITORS * MONITOR_WORDS;
/// Bytes of one copy, a page multiple.
const COPY_BYTES: usize = ((HEADER_WORDS + TABLE_WORDS) * WORD).next_multiple_of(super::PAGE as usize);
/// Pages of the journal's memory object (the manifest tool's budget).
pub use sysimage::manifest::JOURNAL_PAGES;
const _: () = assert!(2 * COPY_BYTES as u64 <= JOURNAL_PAGES * super::PAGE, "two copies of the table fit the journal");
const NONE: u64 = u64::MAX;

/// Why a journal was not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalError {
    /// Neither copy is whole (never written, or both torn).
    NoValidCopy,
    /// A whole copy that does not decode (a different layout).
    Malformed,
}

/// Kinds of capability the table names, for the caller to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    Partition,
    Memory,
    Vp,
    /// A monitor capability (minted from the manager's endpoint).
    Endpoint,
}

/// What a restore found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub partitions: usize,
    /// Partitions dropped because a capability the table names is gone
    /// (deleted after the copy was written, before the old manager died).
    pub dropped: usize,
}

fn checksum(bytes: &[u8]) -> u64 {
    // FNV-1a.
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn word(bytes: &[u8], i: usize) -> u64 {
    let mut w = [0; WORD];
    if let Some(b) = bytes.get(i * WORD..(i + 1) * WORD) {
        w.copy_from_slice(b);
    }
    u64::from_le_bytes(w)
}

/// The copy's (sequence, payload) if it is whole.
fn valid(copy: &[u8]) -> Option<(u64, &[u8])> {
    let len = usize::try_from(word(copy, 2)).ok()?;
    let payload = copy.get(HEADER_WORDS * WORD..)?.get(..len)?;
    (word(copy, 0) == MAGIC && word(copy, 3) == checksum(payload)).then_some((word(copy, 1), payload))
}

/// The newest whole copy's table in a journal area.
pub fn latest(area: &[u8]) -> Option<&[u8]> {
    let (a, b) = area.split_at_checked(COPY_BYTES)?;
    // (A larger area, as the budget may be, holds the copies at its start.)
    match (valid(a), valid(b.get(..COPY_BYTES)?)) {
        (Some((sa, pa)), Some((sb, pb))) => Some(if sb > sa { pb } else { pa }),
        (Some((_, p)), None) | (None, Some((_, p))) => Some(p),
        (None, None) => None,
    }
}

struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, w: u64) {
        if let Some(b) = self.out.get_mut(self.at..self.at + WORD) {
            b.copy_from_slice(&w.to_le_bytes());
        }
        self.at += WORD;
    }

    fn slot(&mut self, s: Option<CapSlot>) {
        self.put(s.map_or(0, |s| u64::from(s.0)));
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn get(&mut self) -> Result<u64, JournalError> {
        let b = self.bytes.get(self.at..self.at + WORD).ok_or(JournalError::Malformed)?;
        self.at += WORD;
        let mut w = [0; WORD];
        w.copy_from_slice(b);
        Ok(u64::from_le_bytes(w))
    }

    fn u32(&mut self) -> Result<u32, JournalError> {
        u32::try_from(self.get()?).map_err(|_| JournalError::Malformed)
    }

    fn slot(&mut self) -> Result<Option<CapSlot>, JournalError> {
        Ok(Some(self.u32()?).filter(|&s| s != 0).map(CapSlot))
    }

    fn opt_u32(&mut self) -> Result<Option<u32>, JournalError> {
        match self.get()? {
            NONE => Ok(None),
            v => u32::try_from(v).map(Some).map_err(|_| JournalError::Malformed),
        }
    }
}

impl<K> PartitionManager<K> {
    /// Writes the table to the older copy of `area` (a journal of
    /// [`JOURNAL_PAGES`]): payload first, header last; the header is not
    /// written (the copy stays older) if the table equals the newer copy.
    pub fn save(&self, area: &mut [u8]) {
        let Some((a, rest)) = area.split_at_mut_checked(COPY_BYTES) else { return };
        let Some(b) = rest.get_mut(..COPY_BYTES) else { return };
        let (sa, sb) = (valid(a).map(|v| v.0), valid(b).map(|v| v.0));
        let (newest, write_a) = match (sa, sb) {
            (Some(x), Some(y)) => (x.max(y), y > x),
            (Some(x), None) => (x, false),
            (None, Some(y)) => (y, true),
            (None, None) => (0, true),
        };
        let (older, newer): (&mut [u8], &[u8]) = if write_a { (a, b) } else { (b, a) };
        let (header, body) = older.split_at_mut(HEADER_WORDS * WORD);
        let mut w = Writer { out: body, at: 0 };
        self.encode(&mut w);
        let len = w.at;
        let payload = &body[..len];
        if valid(newer).is_some_and(|(_, p)| p == payload) {
            return;
        }
        // The payload is in memory before the header that makes it valid
        // (x86 keeps stores in order; this keeps the compiler from moving
        // them), so a kill between them leaves this copy invalid.
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::Release);
        let mut h = Writer { out: header, at: 0 };
        for v in [MAGIC, newest + 1, payload.len() as u64, checksum(payload)] {
            h.put(v);
        }
    }

    /// Replaces the table with a journal's (see [`latest`]). Each partition
    /// whose capabilities `holds` confirms (slot, kind) is kept; one that
    /// names a capability no longer there is dropped, each of its
    /// capabilities passed to `dropped`; a monitor page gone is forgotten.
    pub fn restore(
        &mut self,
        table: &[u8],
        mut holds: impl FnMut(CapSlot, Held) -> bool,
        mut dropped: impl FnMut(CapSlot),
    ) -> Result<Restored, JournalError> {
        let mut r = Reader { bytes: table, at: 0 };
        let (next_id, crashes, last_crash) = (r.get()?, r.get()?, Some(r.get()?).filter(|&c| c != NONE));
        let mut partitions = [const { None }; MAX_PARTITIONS];
        let mut restored = Restored::default();
        for entry in &mut partitions {
            let Some(p) = decode_partition(&mut r)? else { continue };
            if partition_held(&p, &mut holds) {
                restored.partitions += 1;
                *entry = Some(p);
            } else {
                restored.dropped += 1;
                partition_caps(&p).for_each(&mut dropped);
            }
        }
        let mut monitors = [None; MAX_MONITORS];
        for entry in &mut monitors {
            *entry = decode_monitor(&mut r)?.map(|mut m| {
                m.page = m.page.filter(|&page| holds(page, Held::Memory));
                m
            });
        }
        (self.next_id, self.crashes, self.last_crash) = (next_id, crashes, last_crash);
        (self.partitions, self.monitors) = (partitions, monitors);
        Ok(restored)
    }

    /// Every capability slot the table names.
    pub fn slots(&self) -> impl Iterator<Item = CapSlot> + '_ {
        let partitions = self.partitions.iter().flatten().flat_map(partition_caps);
        partitions.chain(self.monitors.iter().flatten().filter_map(|m| m.page))
    }

    fn encode(&self, w: &mut Writer<'_>) {
        w.put(self.next_id);
        w.put(self.crashes);
        w.put(self.last_crash.unwrap_or(NONE));
        for p in &self.partitions {
            let Some(p) = p else {
                for _ in 0..PARTITION_WORDS {
                    w.put(0);
                }
                continue;
            };
            w.put(1);
            w.put(p.id);
            w.put(p.owner.0);
            w.put(p.state.code());
            w.put(p.name.len() as u64);
            let mut name = [0; MAX_NAME];
            name[..p.name.len()].copy_from_slice(p.name.as_bytes());
            for chunk in name.chunks(WORD) {
                w.put(u64::from_le_bytes(chunk.try_into().unwrap_or([0; WORD])));
            }
            w.put(p.index.map_or(NONE, u64::from));
            w.put(u64::from(p.exit_timeout_ms));
            let o = p.objects;
            w.slot(Some(o.partition));
            w.slot(o.ram.map(|r| r.0));
            w.put(o.ram.map_or(0, |r| r.1));
            w.slot(o.rom);
            w.slot(o.legacy);
            for vp in &p.vps {
                w.slot(vp.map(|v| v.cap));
                w.slot(vp.and_then(|v| v.monitor));
            }
            for r in &p.gpa {
                w.put(r.map_or(0, |r| r.first));
                w.put(r.map_or(0, |r| r.count));
                w.put(r.map_or(0, |r| u64::from(r.flags.into_bits())));
            }
            w.put(u64::from(p.crash.is_some()) | u64::from(p.monitor_stopped) << 2);
            for v in p.crash.unwrap_or_default() {
                w.put(v);
            }
            w.put(p.attached.unwrap_or(NONE));
        }
        for m in &self.monitors {
            let Some(m) = m else {
                for _ in 0..MONITOR_WORDS {
                    w.put(0);
                }
                continue;
            };
            w.put(1);
            w.put(u64::from(m.spec.connection_id));
            w.put(u64::from(m.spec.from));
            w.put(m.spec.from_page);
            w.put(m.spec.to.map_or(NONE, |t| u64::from(t.0)));
            w.put(m.spec.to.map_or(0, |t| t.1));
            w.slot(m.page);
        }
    }
}

/// The capabilities of a partition's objects, VPs and monitor capabilities.
fn partition_caps(p: &Partition) -> impl Iterator<Item = CapSlot> + '_ {
    let o = p.objects;
    let vps = p.vps.iter().flatten().flat_map(|v| [Some(v.cap), v.monitor]);
    [Some(o.partition), o.ram.map(|r| r.0), o.rom, o.legacy].into_iter().chain(vps).flatten()
}

fn partition_held(p: &Partition, holds: &mut impl FnMut(CapSlot, Held) -> bool) -> bool {
    let o = p.objects;
    let memory = [o.ram.map(|r| r.0), o.rom, o.legacy].into_iter().flatten();
    holds(o.partition, Held::Partition)
        && memory.into_iter().all(|m| holds(m, Held::Memory))
        && p.vps.iter().flatten().all(|v| holds(v.cap, Held::Vp) && v.monitor.is_none_or(|m| holds(m, Held::Endpoint)))
}

fn decode_partition(r: &mut Reader<'_>) -> Result<Option<Partition>, JournalError> {
    let present = r.get()?;
    let (id, owner, state) = (r.get()?, Badge(r.get()?), r.get()?);
    let len = usize::try_from(r.get()?).map_err(|_| JournalError::Malformed)?;
    let mut bytes = [0; MAX_NAME];
    for chunk in bytes.chunks_mut(WORD) {
        chunk.copy_from_slice(&r.get()?.to_le_bytes());
    }
    let (index, exit_timeout_ms) = (r.opt_u32()?, r.u32()?);
    let partition = r.slot()?;
    let (ram, pages) = (r.slot()?, r.get()?);
    let (rom, legacy) = (r.slot()?, r.slot()?);
    let mut vps = [None; MAX_VPS_PER_PARTITION];
    for vp in &mut vps {
        let (cap, monitor) = (r.slot()?, r.slot()?);
        *vp = cap.map(|cap| Vp { cap, monitor });
    }
    let mut gpa = [None; MAX_GPA_RANGES];
    for range in &mut gpa {
        let (first, count, flags) = (r.get()?, r.get()?, r.u32()?);
        *range = (count != 0).then(|| GpaRange { first, count, flags: HvMapGpaFlags::from_bits(flags) });
    }
    let flags = r.get()?;
    let mut crash = [0; 5];
    for v in &mut crash {
        *v = r.get()?;
    }
    let attached = Some(r.get()?).filter(|&a| a != NONE);
    if present == 0 {
        return Ok(None);
    }
    let name = bytes.get(..len).and_then(|b| core::str::from_utf8(b).ok()).ok_or(JournalError::Malformed)?;
    let state = PartitionState::try_from(state).map_err(|_| JournalError::Malformed)?;
    let Some(partition) = partition else { return Err(JournalError::Malformed) };
    Ok(Some(Partition {
        id,
        owner,
        state,
        name: heapless::String::try_from(name).map_err(|_| JournalError::Malformed)?,
        index,
        exit_timeout_ms,
        objects: Objects { partition, ram: ram.map(|r| (r, pages)), rom, legacy },
        vps,
        gpa,
        crash: (flags & 1 != 0).then_some(crash),
        attached,
        monitor_stopped: flags & 4 != 0,
    }))
}

fn decode_monitor(r: &mut Reader<'_>) -> Result<Option<Monitor>, JournalError> {
    let (present, connection_id, from, from_page) = (r.get()?, r.u32()?, r.u32()?, r.get()?);
    let (to, to_page, page) = (r.opt_u32()?, r.get()?, r.slot()?);
    Ok((present != 0)
        .then(|| Monitor { spec: MonitorSpec { connection_id, from, from_page, to: to.map(|k| (k, to_page)) }, page }))
}
