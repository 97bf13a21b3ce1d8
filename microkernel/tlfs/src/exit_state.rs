//! Tessera's extension to intercept messages (not TLFS): the VP state a
//! handler asks to receive with every exit, as NOVA's message transfer
//! descriptor does, so that it need not read registers back one call at a
//! time. The words follow the 32 of the `HV_MESSAGE`, in the order of
//! [`ExitState::registers`]; segment registers take two words (their
//! 128-bit value), the others one.

use crate::HvRegisterName as R;
use bitfield_struct::bitfield;

/// Which register groups travel with each exit.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct ExitState {
    /// [`GPRS`]: RAX..R15.
    pub gprs: bool,
    /// [`CONTROL`]: CR0, CR2, CR3, CR4, EFER.
    pub control: bool,
    /// [`SEGMENTS`]: DS, ES, FS, GS, SS (CS is in the intercept header).
    pub segments: bool,
    #[bits(61)]
    pub reserved: u64,
}

pub const GPRS: [R; 16] = [
    R::RAX,
    R::RCX,
    R::RDX,
    R::RBX,
    R::RSP,
    R::RBP,
    R::RSI,
    R::RDI,
    R::R8,
    R::R9,
    R::R10,
    R::R11,
    R::R12,
    R::R13,
    R::R14,
    R::R15,
];
/// Where each register sits in [`GPRS`] (and in a backend's array of the
/// general registers in that order).
pub mod gpr {
    pub const RAX: usize = 0;
    pub const RCX: usize = 1;
    pub const RDX: usize = 2;
    pub const RBX: usize = 3;
    pub const RSP: usize = 4;
    pub const RBP: usize = 5;
    pub const RSI: usize = 6;
    pub const RDI: usize = 7;
    pub const R8: usize = 8;
}
const _: () = {
    use gpr::*;
    let at = [
        (RAX, R::RAX),
        (RCX, R::RCX),
        (RDX, R::RDX),
        (RBX, R::RBX),
        (RSP, R::RSP),
        (RBP, R::RBP),
        (RSI, R::RSI),
        (RDI, R::RDI),
        (R8, R::R8),
    ];
    let mut i = 0;
    while i < at.len() {
        assert!(GPRS[at[i].0].0 == at[i].1.0);
        i += 1;
    }
};

/// Whether `a` and `b` name the same registers in the same order (for
/// const assertions on a backend's layout of the groups).
pub const fn same_names(a: &[R], b: &[R]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i].0 != b[i].0 {
            return false;
        }
        i += 1;
    }
    true
}

pub const CONTROL: [R; 5] = [R::CR0, R::CR2, R::CR3, R::CR4, R::EFER];
pub const SEGMENTS: [R; 5] = [R::DS, R::ES, R::FS, R::GS, R::SS];

/// Words of every group together: they fit after the message.
pub const MAX_WORDS: usize = GPRS.len() + CONTROL.len() + 2 * SEGMENTS.len();
const _: () = assert!(crate::HV_MESSAGE_WORDS + MAX_WORDS <= abi::MAX_MESSAGE_WORDS);

impl ExitState {
    /// Every group.
    pub const ALL: ExitState = ExitState::new().with_gprs(true).with_control(true).with_segments(true);

    /// A mask from its wire form; `None` if reserved bits are set.
    pub fn from_wire(bits: u64) -> Option<ExitState> {
        let state = ExitState::from_bits(bits);
        (state.reserved() == 0).then_some(state)
    }

    /// The registers carried, in order, each with its word count.
    pub fn registers(self) -> impl Iterator<Item = (R, usize)> {
        let gprs = GPRS.iter().filter(move |_| self.gprs()).map(|&r| (r, 1));
        let control = CONTROL.iter().filter(move |_| self.control()).map(|&r| (r, 1));
        let segments = SEGMENTS.iter().filter(move |_| self.segments()).map(|&r| (r, 2));
        gprs.chain(control).chain(segments)
    }

    /// Words the groups take.
    pub fn words(self) -> usize {
        self.registers().map(|(_, n)| n).sum()
    }

    /// Lays the registers out in `out` as they travel, each read by `get`
    /// (0 for one it does not know; words past `out` are dropped); returns
    /// the words laid out.
    /// (Group by group, as [`ExitState::registers`] orders them: a
    /// register exit's hot path.)
    pub fn fill(self, out: &mut [u64], mut get: impl FnMut(R) -> Option<(u64, u64)>) -> usize {
        let groups: [(bool, &[R], bool); 3] =
            [(self.gprs(), &GPRS, false), (self.control(), &CONTROL, false), (self.segments(), &SEGMENTS, true)];
        let mut at = 0;
        for (_, names, wide) in groups.into_iter().filter(|(on, _, _)| *on) {
            for &name in names {
                let (low, high) = get(name).unwrap_or((0, 0));
                if let Some(w) = out.get_mut(at) {
                    *w = low;
                }
                at += 1;
                if wide {
                    if let Some(w) = out.get_mut(at) {
                        *w = high;
                    }
                    at += 1;
                }
            }
        }
        at.min(out.len())
    }
}

/// The state that came with one exit: the words after the message.
#[derive(Clone, Copy, Debug)]
pub struct TransferredState<'w> {
    mask: ExitState,
    words: &'w [u64],
}

impl<'w> TransferredState<'w> {
    /// Over `words` (those after the message); short words carry less.
    pub fn new(mask: ExitState, words: &'w [u64]) -> TransferredState<'w> {
        TransferredState { mask, words }
    }

    /// A register's (low, high) value, if it travelled.
    pub fn get(&self, name: R) -> Option<(u64, u64)> {
        let mut at = 0;
        for (r, n) in self.mask.registers() {
            if r == name {
                let low = *self.words.get(at)?;
                let high = if n == 2 { *self.words.get(at + 1)? } else { 0 };
                return Some((low, high));
            }
            at += n;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_laid_out_in_order_and_fit() {
        assert_eq!(ExitState::ALL.words(), 31);
        assert_eq!(ExitState::new().words(), 0);
        let control = ExitState::new().with_control(true);
        assert_eq!(control.registers().map(|(r, _)| r).collect::<Vec<_>>(), CONTROL.to_vec());
        assert_eq!(ExitState::from_wire(1 << 3), None);
        assert_eq!(ExitState::from_wire(7), Some(ExitState::ALL));
    }

    #[test]
    fn filled_state_is_read_back_where_it_was_laid_out() {
        let value = |r: R| (u64::from(r.0), u64::from(r.0) << 32);
        let mut out = [u64::MAX; 40];
        let n = ExitState::ALL.fill(&mut out, |r| (r != R::CR2).then(|| value(r)));
        assert_eq!(n, 31);
        assert_eq!(out[31..], [u64::MAX; 9], "nothing past the state");
        let state = TransferredState::new(ExitState::ALL, &out[..n]);
        for (r, words) in ExitState::ALL.registers() {
            let (low, high) = if r == R::CR2 { (0, 0) } else { value(r) };
            assert_eq!(state.get(r), Some((low, if words == 2 { high } else { 0 })), "{r:?}");
        }
        let mask = ExitState::new().with_segments(true);
        let mut segments = [0u64; 10];
        assert_eq!(mask.fill(&mut segments, |r| Some(value(r))), 10);
        assert_eq!(TransferredState::new(mask, &segments).get(R::GS), Some(value(R::GS)));
        let mut short = [0u64; 3];
        assert_eq!(ExitState::ALL.fill(&mut short, |r| Some(value(r))), 3);
        assert_eq!(short, [value(R::RAX).0, value(R::RCX).0, value(R::RDX).0]);
    }

    #[test]
    fn registers_are_found_where_the_mask_puts_them() {
        let mask = ExitState::new().with_control(true).with_segments(true);
        let mut words = [0u64; 15];
        for (i, w) in words.iter_mut().enumerate() {
            *w = 100 + i as u64;
        }
        let state = TransferredState::new(mask, &words);
        assert_eq!(state.get(R::CR0), Some((100, 0)));
        assert_eq!(state.get(R::EFER), Some((104, 0)));
        assert_eq!(state.get(R::DS), Some((105, 106)));
        assert_eq!(state.get(R::SS), Some((113, 114)));
        assert_eq!(state.get(R::RAX), None);
        assert_eq!(TransferredState::new(mask, &words[..6]).get(R::DS), None);
    }
}
