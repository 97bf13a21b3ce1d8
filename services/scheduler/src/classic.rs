//! The Hyper-V *classic* scheduler's policy (TLFS 6.0b §14.2): per-partition
//! CPU reserve, cap and weight, turned into the parameters of each virtual
//! processor's scheduling context. Pure: the VID computes with it and
//! applies the result with `SCHED_CONFIGURE` and `SCHED_SET_CPU`; the
//! manifest tool checks manifests with the same rules.
//!
//! # Parameters (TLFS units)
//!
//! - `reserve`: the fraction of one logical processor guaranteed to each of
//!   the partition's VPs when it has work, `0..=0x10000` (0x10000 is one
//!   whole LP; 0, the default, is no reserve).
//! - `cap`: the most of one LP each VP may use, `1..=0x10000` (0x10000, the
//!   default, is no cap). TLFS allows 0; here a cap of 0 is refused
//!   ([`ClassicError::ZeroCap`]): a VP that may never run is no partition.
//! - `weight`: relative share among the VPs on one LP, `1..=10000`
//!   (default 100).
//! - `reserve <= cap`, and the reserves of all VPs at most the number of
//!   LPs; with VPs placed, at most one LP's worth on each LP.
//!
//! # Mapping onto the kernel's scheduling contexts
//!
//! Time is counted in kernel ticks (`abi::TICK_HZ`, 10 ms), so every share
//! is rounded to whole ticks:
//!
//! - a fixed period of [`PERIOD`] ticks;
//! - cap: budget `ceil(cap × PERIOD / 0x10000)` ticks per period (no cap:
//!   unlimited), so a cap is rounded up to 1/20 of an LP (5 %);
//! - reserve: `ceil(reserve × PERIOD / 0x10000)` ticks of each period at
//!   one priority above the VPs' own ([`VP_PRIORITY`] + 1); spent, the VP
//!   goes on at its own priority with the others;
//! - weight: among the VPs that share an LP, the slice of VP i is
//!   `max(1, round(ROUND × w_i / Σw))` ticks of a round of [`ROUND`] ticks.
//!   The granularity is one tick per round: weights closer than 1/10 of
//!   their sum are not told apart, and a VP whose share rounds to 0 still
//!   gets a tick per round (1/(ROUND + 1) at least against a heavy
//!   neighbour).
//!
//! A VP that is idle (halted, waiting for an interruption) is blocked in
//! the kernel, on no run queue: it uses none of its reserve, cap or turn,
//! and the others share its LP.

use core::fmt;

/// The period of every VP's scheduling context, in ticks (200 ms).
pub const PERIOD: u32 = 20;
/// The round over which weights share an LP, in ticks (100 ms).
pub const ROUND: u32 = 10;
/// One whole logical processor, in the TLFS's fixed point.
pub const ONE_LP: u32 = 0x10000;
/// The priority VPs run at (without reserve).
pub const VP_PRIORITY: u8 = 0;
/// The priority of a VP while it runs on its reserve.
pub const RESERVE_PRIORITY: u8 = VP_PRIORITY + 1;
pub const MIN_WEIGHT: u32 = 1;
pub const MAX_WEIGHT: u32 = 10_000;
pub const DEFAULT_WEIGHT: u32 = 100;

/// One partition's classic scheduling parameters, in TLFS units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classic {
    pub reserve: u32,
    pub cap: u32,
    pub weight: u32,
}

impl Classic {
    /// No reserve, no cap, weight 100.
    pub const DEFAULT: Classic = Classic { reserve: 0, cap: ONE_LP, weight: DEFAULT_WEIGHT };

    /// The rules of one partition's parameters.
    pub const fn check(&self) -> Result<(), ClassicError> {
        if self.reserve > ONE_LP {
            return Err(ClassicError::ReserveRange(self.reserve));
        }
        if self.cap > ONE_LP {
            return Err(ClassicError::CapRange(self.cap));
        }
        if self.cap == 0 {
            return Err(ClassicError::ZeroCap);
        }
        if self.weight < MIN_WEIGHT || self.weight > MAX_WEIGHT {
            return Err(ClassicError::WeightRange(self.weight));
        }
        if self.reserve > self.cap {
            return Err(ClassicError::ReserveAboveCap { reserve: self.reserve, cap: self.cap });
        }
        Ok(())
    }
}

impl Default for Classic {
    fn default() -> Classic {
        Classic::DEFAULT
    }
}

/// Why classic parameters cannot be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassicError {
    ReserveRange(u32),
    CapRange(u32),
    ZeroCap,
    WeightRange(u32),
    ReserveAboveCap {
        reserve: u32,
        cap: u32,
    },
    /// The reserves of all VPs, in 1/0x10000 of an LP, above `lps` LPs.
    ReservesAboveLps {
        total: u64,
        lps: u32,
    },
    /// The reserves of the VPs placed on LP `lp` above one LP.
    ReservesAboveOneLp {
        lp: u32,
        total: u64,
    },
    /// A VP names a partition that is not in the list.
    NoSuchPartition(usize),
}

impl fmt::Display for ClassicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ClassicError::ReserveRange(r) => write!(f, "reserve {r:#x} is above one logical processor (0x10000)"),
            ClassicError::CapRange(c) => write!(f, "cap {c:#x} is above one logical processor (0x10000)"),
            ClassicError::ZeroCap => write!(f, "a cap of 0 would never run the partition's VPs"),
            ClassicError::WeightRange(w) => write!(f, "weight {w} is outside 1..=10000"),
            ClassicError::ReserveAboveCap { reserve, cap } => {
                write!(f, "reserve {reserve:#x} is above the cap {cap:#x}")
            }
            ClassicError::ReservesAboveLps { total, lps } => write!(
                f,
                "the reserves of all VPs add up to {} logical processors, more than the {lps} there are",
                Lps(total)
            ),
            ClassicError::ReservesAboveOneLp { lp, total } => write!(
                f,
                "the reserves of the VPs on logical processor {lp} add up to {} of it, more than all of it",
                Lps(total)
            ),
            ClassicError::NoSuchPartition(p) => write!(f, "a VP of partition {p}, which is not there"),
        }
    }
}

/// A number of LPs in 1/0x10000, shown to two decimals (rounded down).
struct Lps(u64);

impl fmt::Display for Lps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hundredths = self.0 * 100 / u64::from(ONE_LP);
        write!(f, "{}.{:02}", hundredths / 100, hundredths % 100)
    }
}

/// Where a VP runs: its partition (an index into the partitions' list)
/// and its logical processor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VpPlace {
    pub partition: usize,
    pub lp: u32,
}

/// A scheduling context's parameters, as `SCHED_CONFIGURE` takes them
/// (MR0..MR5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScParams {
    pub priority: u8,
    /// Ticks per period; 0 with a period: unlimited.
    pub budget: u32,
    /// 0: no period (unlimited, no reserve).
    pub period: u32,
    pub slice: u32,
    pub reserve: u32,
    pub reserve_priority: u8,
}

impl ScParams {
    /// The message registers of `SCHED_CONFIGURE`.
    pub fn words(&self) -> [u64; 6] {
        [
            u64::from(self.priority),
            u64::from(self.budget),
            u64::from(self.period),
            u64::from(self.slice),
            u64::from(self.reserve),
            u64::from(self.reserve_priority),
        ]
    }
}

/// `ceil(fraction × PERIOD / ONE_LP)` ticks.
const fn ticks(fraction: u32) -> u32 {
    ((fraction as u64 * PERIOD as u64).div_ceil(ONE_LP as u64)) as u32
}

/// Checks every partition, then the reserves of the VPs in `vps` against
/// `lps` logical processors, in all and on each.
pub fn check_all(partitions: &[Classic], vps: &[VpPlace], lps: u32) -> Result<(), ClassicError> {
    for p in partitions {
        p.check()?;
    }
    let mut total = 0u64;
    for v in vps {
        let p = partitions.get(v.partition).ok_or(ClassicError::NoSuchPartition(v.partition))?;
        total += u64::from(p.reserve);
        let on_lp: u64 = vps
            .iter()
            .filter(|w| w.lp == v.lp)
            .filter_map(|w| partitions.get(w.partition))
            .map(|p| u64::from(p.reserve))
            .sum();
        if on_lp > u64::from(ONE_LP) {
            return Err(ClassicError::ReservesAboveOneLp { lp: v.lp, total: on_lp });
        }
    }
    if total > u64::from(lps) * u64::from(ONE_LP) {
        return Err(ClassicError::ReservesAboveLps { total, lps });
    }
    Ok(())
}

/// The scheduling context of `vps[vp]`, among the VPs `vps` of
/// `partitions` (the weights of those on its LP share it). `None` if `vp`
/// or its partition is not in the lists. Call [`check_all`] first: the
/// parameters of partitions that break the rules are clamped, not refused.
pub fn sc_params(partitions: &[Classic], vps: &[VpPlace], vp: usize) -> Option<ScParams> {
    let me = vps.get(vp)?;
    let p = partitions.get(me.partition)?;
    let weight = p.weight.clamp(MIN_WEIGHT, MAX_WEIGHT);
    let sum: u64 = vps
        .iter()
        .filter(|v| v.lp == me.lp)
        .filter_map(|v| partitions.get(v.partition))
        .map(|p| u64::from(p.weight.clamp(MIN_WEIGHT, MAX_WEIGHT)))
        .sum();
    // round(ROUND × w / Σw), at least 1 tick.
    let slice = ((2 * u64::from(ROUND) * u64::from(weight) + sum) / (2 * sum)).max(1) as u32;
    let cap = p.cap.clamp(1, ONE_LP);
    let budget = if cap < ONE_LP { ticks(cap) } else { 0 };
    let reserve = ticks(p.reserve.min(cap));
    let period = if budget != 0 || reserve != 0 { PERIOD } else { 0 };
    let reserve_priority = if reserve != 0 { RESERVE_PRIORITY } else { 0 };
    Some(ScParams { priority: VP_PRIORITY, budget, period, slice, reserve, reserve_priority })
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn classic(reserve: u32, cap: u32, weight: u32) -> Classic {
        Classic { reserve, cap, weight }
    }

    fn one_each(lps: &[u32]) -> Vec<VpPlace> {
        lps.iter().enumerate().map(|(partition, &lp)| VpPlace { partition, lp }).collect()
    }

    #[test]
    fn each_rule_has_its_own_error() {
        assert_eq!(Classic::DEFAULT.check(), Ok(()));
        assert_eq!(classic(ONE_LP, ONE_LP, MAX_WEIGHT).check(), Ok(()));
        assert_eq!(classic(0, 1, MIN_WEIGHT).check(), Ok(()));
        assert_eq!(classic(ONE_LP + 1, ONE_LP, 100).check(), Err(ClassicError::ReserveRange(ONE_LP + 1)));
        assert_eq!(classic(0, ONE_LP + 1, 100).check(), Err(ClassicError::CapRange(ONE_LP + 1)));
        assert_eq!(classic(0, 0, 100).check(), Err(ClassicError::ZeroCap));
        assert_eq!(classic(0, ONE_LP, 0).check(), Err(ClassicError::WeightRange(0)));
        assert_eq!(classic(0, ONE_LP, 10_001).check(), Err(ClassicError::WeightRange(10_001)));
        assert_eq!(
            classic(0x8000, 0x4000, 100).check(),
            Err(ClassicError::ReserveAboveCap { reserve: 0x8000, cap: 0x4000 })
        );
        for e in [
            ClassicError::ReserveRange(1),
            ClassicError::CapRange(1),
            ClassicError::ZeroCap,
            ClassicError::WeightRange(0),
            ClassicError::ReserveAboveCap { reserve: 2, cap: 1 },
            ClassicError::ReservesAboveLps { total: 3 * 0x10000, lps: 2 },
            ClassicError::ReservesAboveOneLp { lp: 1, total: 0x18000 },
            ClassicError::NoSuchPartition(3),
        ] {
            assert!(!e.to_string().is_empty());
        }
        assert_eq!(
            ClassicError::ReservesAboveOneLp { lp: 1, total: 0x18000 }.to_string(),
            "the reserves of the VPs on logical processor 1 add up to 1.50 of it, more than all of it"
        );
    }

    #[test]
    fn reserves_fit_the_lps_in_all_and_each() {
        let half = classic(0x8000, ONE_LP, 100);
        let three_halves = [half, half, half];
        assert_eq!(check_all(&three_halves, &one_each(&[0, 1, 1]), 2), Ok(()));
        assert_eq!(
            check_all(&three_halves, &one_each(&[0, 0, 0]), 2),
            Err(ClassicError::ReservesAboveOneLp { lp: 0, total: 0x18000 })
        );
        assert_eq!(
            check_all(&three_halves, &one_each(&[0, 1, 2]), 1),
            Err(ClassicError::ReservesAboveLps { total: 0x18000, lps: 1 })
        );
        let bad = [classic(0, 0, 100)];
        assert_eq!(check_all(&bad, &one_each(&[0]), 1), Err(ClassicError::ZeroCap));
        assert_eq!(check_all(&[half], &[VpPlace { partition: 1, lp: 0 }], 1), Err(ClassicError::NoSuchPartition(1)));
    }

    #[test]
    fn weights_become_slices_of_a_round_on_each_lp() {
        let parts = [classic(0, ONE_LP, 100), classic(0, ONE_LP, 200), classic(0, ONE_LP, 700)];
        let vps = one_each(&[0, 0, 0]);
        let slices: Vec<u32> = (0..3).map(|i| sc_params(&parts, &vps, i).unwrap().slice).collect();
        assert_eq!(slices, [1, 2, 7]);
        let p = sc_params(&parts, &vps, 0).unwrap();
        assert_eq!((p.priority, p.budget, p.period, p.reserve), (VP_PRIORITY, 0, 0, 0), "no cap, no reserve");
        // Alone on its LP, a VP has the whole round.
        let vps = one_each(&[0, 1, 2]);
        assert_eq!(sc_params(&parts, &vps, 0).unwrap().slice, ROUND);
        // A share that rounds to 0 is a tick.
        let parts = [classic(0, ONE_LP, 10_000), classic(0, ONE_LP, 1)];
        let vps = one_each(&[0, 0]);
        assert_eq!([0, 1].map(|i| sc_params(&parts, &vps, i).unwrap().slice), [10, 1]);
        assert_eq!(sc_params(&parts, &vps, 2), None);
    }

    #[test]
    fn a_cap_is_a_budget_and_a_reserve_ticks_at_a_higher_priority() {
        let parts = [classic(0, 0x4000, 100), classic(0x8000, ONE_LP, 100), classic(0x1000, 0x1001, 100)];
        let vps = one_each(&[0, 1, 2]);
        let capped = sc_params(&parts, &vps, 0).unwrap();
        assert_eq!((capped.budget, capped.period, capped.reserve), (5, PERIOD, 0));
        let reserved = sc_params(&parts, &vps, 1).unwrap();
        assert_eq!(
            reserved,
            ScParams {
                priority: VP_PRIORITY,
                budget: 0,
                period: PERIOD,
                slice: ROUND,
                reserve: 10,
                reserve_priority: RESERVE_PRIORITY
            }
        );
        // Rounded up, one tick at least, and never more reserve than budget.
        let small = sc_params(&parts, &vps, 2).unwrap();
        assert_eq!((small.budget, small.reserve), (2, 2));
        assert_eq!(reserved.words(), [u64::from(VP_PRIORITY), 0, 20, 10, 10, u64::from(RESERVE_PRIORITY)]);
        let full = sc_params(&[classic(ONE_LP, ONE_LP, 100)], &one_each(&[0]), 0).unwrap();
        assert_eq!((full.budget, full.period, full.reserve), (0, PERIOD, PERIOD));
    }
}
