//! Classic scheduler parameters changed at run time (issue #10): the VP
//! scheduling contexts the VIDs hand over ([`Classic`] per partition, a
//! [`VpPlace`] per VP), and `set_classic`, which checks a change with the
//! manifest's rules ([`classic::check_all`] over every attached VP) before
//! anything is configured, then re-applies [`classic::sc_params`] to every
//! VP on the logical processors the partition's VPs run on (the weights of
//! the VPs on one LP share it).

use crate::SchedControl;
use crate::classic::{self, Classic, VpPlace};
use abi::CapSlot;
use abi::limits::{MAX_PARTITIONS, MAX_VPS_PER_PARTITION};
use scheduler_api::{CONTROL_BADGE, PARTITION_NAME_LEN, ServiceError};
use tessera_idl::Badge;

/// VPs the scheduler can hold (the kernel's VP table).
pub const MAX_VPS: usize = abi::limits::tables::VPS;

#[derive(Clone, Copy, Debug)]
struct Partition {
    name: [u8; PARTITION_NAME_LEN],
    name_len: usize,
    /// The badge of the VID that attached it.
    owner: Badge,
    params: Classic,
}

impl Partition {
    fn name(&self) -> &[u8] {
        &self.name[..self.name_len]
    }
}

#[derive(Clone, Copy, Debug)]
struct Vp {
    /// Index into the partitions.
    partition: usize,
    index: u32,
    lp: u32,
    context: CapSlot,
}

/// A partition the supervisor says a VID runs.
#[derive(Clone, Copy, Debug)]
struct Assigned {
    name: [u8; PARTITION_NAME_LEN],
    name_len: usize,
    vid: Badge,
}

/// The attached partitions and VPs.
pub struct Runtime {
    /// Which VID may attach which partition (the supervisor's word).
    assigned: [Option<Assigned>; MAX_PARTITIONS],
    partitions: [Option<Partition>; MAX_PARTITIONS],
    vps: [Option<Vp>; MAX_VPS],
    /// Logical processors (CPUs) of the machine.
    lps: u32,
}

/// The parameters of every partition slot (empty ones at the defaults, no
/// VP names them) and the places of the attached VPs, with each VP's index
/// in [`Runtime::vps`].
struct Snapshot {
    partitions: [Classic; MAX_PARTITIONS],
    places: [VpPlace; MAX_VPS],
    slots: [usize; MAX_VPS],
    count: usize,
}

impl Snapshot {
    fn places(&self) -> &[VpPlace] {
        &self.places[..self.count]
    }
}

impl Runtime {
    pub const fn new(lps: u32) -> Runtime {
        Runtime {
            assigned: [None; MAX_PARTITIONS],
            partitions: [None; MAX_PARTITIONS],
            vps: [None; MAX_VPS],
            lps: if lps == 0 { 1 } else { lps },
        }
    }

    /// `register_partition` (see the interface), the caller checked: the
    /// partition `name` may be attached by `vid` only (a later word for
    /// the same name replaces the earlier one).
    pub fn assign(&mut self, vid: Badge, name: &[u8]) -> Result<(), ServiceError> {
        if name.is_empty() || name.len() > PARTITION_NAME_LEN {
            return Err(ServiceError::InvalidArgument);
        }
        let same = |a: &Option<Assigned>| a.is_some_and(|a| &a.name[..a.name_len] == name);
        let at = match self.assigned.iter().position(same) {
            Some(i) => i,
            None => self.assigned.iter().position(Option::is_none).ok_or(ServiceError::NoResources)?,
        };
        let mut stored = [0; PARTITION_NAME_LEN];
        stored[..name.len()].copy_from_slice(name);
        self.assigned[at] = Some(Assigned { name: stored, name_len: name.len(), vid });
        Ok(())
    }

    fn find(&self, name: &[u8]) -> Option<usize> {
        self.partitions.iter().position(|p| p.is_some_and(|p| p.name() == name))
    }

    fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot {
            partitions: [Classic::DEFAULT; MAX_PARTITIONS],
            places: [VpPlace { partition: 0, lp: 0 }; MAX_VPS],
            slots: [0; MAX_VPS],
            count: 0,
        };
        for (i, p) in self.partitions.iter().enumerate() {
            if let Some(p) = p {
                s.partitions[i] = p.params;
            }
        }
        for (i, vp) in self.vps.iter().enumerate() {
            if let Some(vp) = vp {
                s.places[s.count] = VpPlace { partition: vp.partition, lp: vp.lp };
                s.slots[s.count] = i;
                s.count += 1;
            }
        }
        s
    }

    /// `attach_vp` (see the interface), with the context that came with
    /// the request. Returns a context the scheduler no longer needs (the
    /// one a re-attached VP had), for the caller to delete.
    #[allow(clippy::too_many_arguments)]
    pub fn attach(
        &mut self,
        caller: Badge,
        context: Option<CapSlot>,
        name: &[u8],
        index: u32,
        lp: u32,
        params: Classic,
    ) -> Result<Option<CapSlot>, ServiceError> {
        let context = context.ok_or(ServiceError::InvalidArgument)?;
        if name.is_empty() || name.len() > PARTITION_NAME_LEN || index as usize >= MAX_VPS_PER_PARTITION {
            return Err(ServiceError::InvalidArgument);
        }
        if lp >= self.lps || params.check().is_err() {
            return Err(ServiceError::InvalidArgument);
        }
        let assigned = self.assigned.iter().flatten().any(|a| &a.name[..a.name_len] == name && a.vid == caller);
        let existing = self.find(name);
        let taken = existing.is_some_and(|k| self.partitions[k].is_some_and(|p| p.owner != caller));
        if !assigned || taken {
            return Err(ServiceError::PermissionDenied);
        }
        let k = match existing {
            Some(k) => k,
            None => self.partitions.iter().position(Option::is_none).ok_or(ServiceError::NoResources)?,
        };
        let same = self.vps.iter().position(|v| v.is_some_and(|v| v.partition == k && v.index == index));
        let at = match same {
            Some(i) => i,
            None => self.vps.iter().position(Option::is_none).ok_or(ServiceError::NoResources)?,
        };
        // The reserves must fit with this VP where the VID says it runs.
        let mut s = self.snapshot();
        s.partitions[k] = params;
        match same {
            Some(_) => {
                if let Some(i) = s.slots[..s.count].iter().position(|&slot| slot == at) {
                    s.places[i].lp = lp;
                }
            }
            None => {
                s.places[s.count] = VpPlace { partition: k, lp };
                s.count += 1;
            }
        }
        classic::check_all(&s.partitions, s.places(), self.lps).map_err(|_| ServiceError::InvalidArgument)?;
        let mut stored = [0; PARTITION_NAME_LEN];
        stored[..name.len()].copy_from_slice(name);
        self.partitions[k] = Some(Partition { name: stored, name_len: name.len(), owner: caller, params });
        let old = self.vps[at].map(|v| v.context);
        self.vps[at] = Some(Vp { partition: k, index, lp, context });
        Ok(old)
    }

    /// `set_classic` (see the interface); `control` configures each VP's
    /// context and is told what it applied.
    pub fn set(
        &mut self,
        control: &mut impl SchedControl,
        caller: Badge,
        name: &[u8],
        params: Classic,
    ) -> Result<(), ServiceError> {
        if caller.0 & CONTROL_BADGE == 0 {
            return Err(ServiceError::PermissionDenied);
        }
        params.check().map_err(|_| ServiceError::InvalidArgument)?;
        let k = self.find(name).ok_or(ServiceError::NotFound)?;
        let mut s = self.snapshot();
        s.partitions[k] = params;
        classic::check_all(&s.partitions, s.places(), self.lps).map_err(|_| ServiceError::InvalidArgument)?;
        if let Some(p) = self.partitions[k].as_mut() {
            p.params = params;
        }
        let touched = |lp: u32| s.places().iter().any(|v| v.partition == k && v.lp == lp);
        let mut refused = false;
        for (i, place) in s.places().iter().enumerate() {
            if !touched(place.lp) {
                continue;
            }
            let (Some(vp), Some(sc)) = (self.vps[s.slots[i]], classic::sc_params(&s.partitions, s.places(), i)) else {
                continue;
            };
            match control.configure_classic(vp.context, &sc.words()) {
                Ok(()) => {
                    if let Some(p) = &self.partitions[vp.partition] {
                        control.applied(p.name(), vp.index, vp.lp, &sc);
                    }
                }
                Err(_) => refused = true,
            }
        }
        if refused { Err(ServiceError::Failed) } else { Ok(()) }
    }

    /// `classic` (see the interface): `(reserve, cap, weight)`.
    pub fn get(&self, name: &[u8]) -> Result<(u32, u32, u32), ServiceError> {
        let k = self.find(name).ok_or(ServiceError::NotFound)?;
        let p = self.partitions[k].ok_or(ServiceError::NotFound)?;
        Ok((p.params.reserve, p.params.cap, p.params.weight))
    }

    /// VPs attached.
    pub fn vps(&self) -> usize {
        self.vps.iter().flatten().count()
    }
}
