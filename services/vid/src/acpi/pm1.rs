//! The fixed-hardware PM1a registers (ACPI 6.5 4.8.3.1, 4.8.3.2), the PM
//! timer (4.8.3.3) and the reset register the FADT describes, as a port
//! model for the VID.
//!
//! The PM timer counts at [`PM_TIMER_HZ`] from the partition's creation,
//! derived from the TSC the partition's reference time uses, 32 bits wide
//! (the FADT sets TMR_VAL_EXT), wrapping. TMR_STS is set whenever the
//! counter's bit 31 changes, as the guest finds it at its next PM1_STS
//! access; no SCI is raised for it, nor for anything else (no fixed power
//! or sleep button, no RTC alarm): PM1_STS holds what the timer and
//! [`Pm1::raise`] set. SMI_CMD is 0 in the FADT, so the platform is always
//! in ACPI mode: SCI_EN reads 1 whatever is written.

use super::{
    PM_TMR_BLK, PM_TMR_LEN, PM1_CNT_LEN, PM1_EVT_LEN, PM1A_CNT_BLK, PM1A_EVT_BLK, RESET_PORT, RESET_VALUE, SLP_TYP_S5,
};
use bitfield_struct::bitfield;

/// The PM timer's frequency (ACPI 6.5 4.8.3.3): 3.579545 MHz.
pub const PM_TIMER_HZ: u64 = 3_579_545;
/// The counter's width: 32 bits (TMR_VAL_EXT).
pub const PM_TIMER_BITS: u32 = 32;

/// The PM timer: ticks of [`PM_TIMER_HZ`] since TSC `origin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmTimer {
    /// The TSC's frequency; 0: the timer stands at 0.
    pub tsc_hz: u64,
    /// The TSC at which the count was 0.
    pub origin: u64,
}

impl PmTimer {
    /// Ticks since the origin, not wrapped, at TSC `now` (before the
    /// origin: 0).
    pub fn ticks(&self, now: u64) -> u64 {
        if self.tsc_hz == 0 {
            return 0;
        }
        let elapsed = u128::from(now.saturating_sub(self.origin));
        u64::try_from(elapsed * u128::from(PM_TIMER_HZ) / u128::from(self.tsc_hz)).unwrap_or(u64::MAX)
    }

    /// TMR_VAL as the guest reads it: the low [`PM_TIMER_BITS`] of the ticks.
    pub fn value(&self, now: u64) -> u32 {
        self.ticks(now) as u32
    }

    /// How often bit 31 of the counter has changed by `now`: TMR_STS is
    /// set each time.
    fn msb_toggles(&self, now: u64) -> u64 {
        self.ticks(now) >> (PM_TIMER_BITS - 1)
    }
}

/// PM1_STS (ACPI 6.5 table 4.16): write 1 to clear.
#[bitfield(u16)]
#[derive(PartialEq, Eq)]
pub struct Pm1Status {
    pub tmr_sts: bool,
    #[bits(3)]
    pub reserved0: u8,
    pub bm_sts: bool,
    pub gbl_sts: bool,
    #[bits(2)]
    pub reserved1: u8,
    pub pwrbtn_sts: bool,
    pub slpbtn_sts: bool,
    pub rtc_sts: bool,
    pub ignore: bool,
    #[bits(2)]
    pub reserved2: u8,
    pub pciexp_wake_sts: bool,
    pub wak_sts: bool,
}

/// PM1_EN (ACPI 6.5 table 4.17).
#[bitfield(u16)]
#[derive(PartialEq, Eq)]
pub struct Pm1Enable {
    pub tmr_en: bool,
    #[bits(4)]
    pub reserved0: u8,
    pub gbl_en: bool,
    #[bits(2)]
    pub reserved1: u8,
    pub pwrbtn_en: bool,
    pub slpbtn_en: bool,
    pub rtc_en: bool,
    #[bits(3)]
    pub reserved2: u8,
    pub pciexp_wake_dis: bool,
    pub reserved3: bool,
}

/// PM1_CNT (ACPI 6.5 table 4.18).
#[bitfield(u16)]
#[derive(PartialEq, Eq)]
pub struct Pm1Control {
    /// Events raise the SCI (not an SMI). Read-only 1 here.
    pub sci_en: bool,
    pub bm_rld: bool,
    /// Write-only: releases the global lock. Reads 0.
    pub gbl_rls: bool,
    #[bits(6)]
    pub reserved0: u16,
    pub ignore: bool,
    /// The sleep type (`\_Sx` package's first value) entered on SLP_EN.
    #[bits(3)]
    pub slp_typ: u8,
    /// Write-only: enter the sleep state in SLP_TYP. Reads 0.
    pub slp_en: bool,
    #[bits(2)]
    pub reserved1: u8,
}

/// The bits of PM1_EN and PM1_STS a guest can change: the events this
/// platform could signal. Others read 0.
const EVENT_BITS: u16 = Pm1Enable::new()
    .with_tmr_en(true)
    .with_gbl_en(true)
    .with_pwrbtn_en(true)
    .with_slpbtn_en(true)
    .with_rtc_en(true)
    .into_bits();

/// What a PM1 port write means to the VID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pm1Effect {
    /// A register changed, or nothing did.
    Done,
    /// SLP_EN with SLP_TYP = 5 (`\_S5_`): stop the partition.
    PowerOff,
    /// SLP_EN with another sleep type: the DSDT declares no other state,
    /// so this is the guest's mistake; the VID treats it as unsupported.
    Sleep(u8),
    /// RESET_VALUE written to the reset register: restart the partition.
    Reset,
}

/// The PM1a event and control blocks, the PM timer and the reset register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pm1 {
    status: Pm1Status,
    enable: Pm1Enable,
    control: Pm1Control,
    timer: PmTimer,
    /// The timer's bit-31 changes already reflected in TMR_STS.
    toggles_seen: u64,
}

impl Default for Pm1 {
    fn default() -> Pm1 {
        Pm1::new()
    }
}

/// The bytes of one access that land in a 16-bit register: the value and
/// which bits were written.
#[derive(Clone, Copy, Default)]
struct Lanes {
    value: u16,
    mask: u16,
}

impl Lanes {
    fn merge(self, old: u16) -> u16 {
        (old & !self.mask) | (self.value & self.mask)
    }
}

impl Pm1 {
    /// Power-on state: ACPI mode, every event disabled, nothing pending,
    /// a PM timer that stands at 0 (see [`Pm1::with_timer`]).
    pub const fn new() -> Pm1 {
        Pm1::with_timer(PmTimer { tsc_hz: 0, origin: 0 })
    }

    /// Power-on state with a PM timer that counts as `timer` says.
    pub const fn with_timer(timer: PmTimer) -> Pm1 {
        Pm1 {
            status: Pm1Status::new(),
            enable: Pm1Enable::new(),
            control: Pm1Control::new().with_sci_en(true),
            timer,
            toggles_seen: 0,
        }
    }

    /// The PM timer.
    pub const fn timer(&self) -> PmTimer {
        self.timer
    }

    /// Whether `port` is one of PM1's: the event block, the control block,
    /// the PM timer or the reset register.
    pub const fn claims_port(port: u16) -> bool {
        let (evt, cnt, tmr) = (PM1A_EVT_BLK, PM1A_CNT_BLK, PM_TMR_BLK);
        (port >= evt && port - evt < PM1_EVT_LEN as u16)
            || (port >= cnt && port - cnt < PM1_CNT_LEN as u16)
            || (port >= tmr && port - tmr < PM_TMR_LEN as u16)
            || port == RESET_PORT
    }

    /// Sets TMR_STS if the timer's bit 31 changed since it was last
    /// reflected (ACPI 6.5 4.8.3.3: "set whenever the timer's MSB toggles").
    fn sync_timer(&mut self, now: u64) {
        let toggles = self.timer.msb_toggles(now);
        if toggles != self.toggles_seen {
            self.toggles_seen = toggles;
            self.status.set_tmr_sts(true);
        }
    }

    /// PM1_STS, PM1_EN and PM1_CNT as the guest reads them.
    pub const fn registers(&self) -> (Pm1Status, Pm1Enable, Pm1Control) {
        (self.status, self.enable, self.control)
    }

    /// Sets status bits (an event happened). The SCI is due while
    /// [`Pm1::sci_pending`].
    pub fn raise(&mut self, status: Pm1Status) {
        self.status = Pm1Status::from_bits(self.status.into_bits() | (status.into_bits() & EVENT_BITS));
    }

    /// An enabled event is pending: the SCI line is asserted (level).
    pub const fn sci_pending(&self) -> bool {
        self.status.into_bits() & self.enable.into_bits() != 0
    }

    /// One byte of the register file at `port` at TSC `now`; `None` if not
    /// PM1's.
    fn read_byte(&self, port: u16, now: u64) -> Option<u8> {
        let evt = PM1A_EVT_BLK;
        let cnt = PM1A_CNT_BLK;
        let tmr = PM_TMR_BLK;
        if port >= tmr && port - tmr < PM_TMR_LEN as u16 {
            return Some(self.timer.value(now).to_le_bytes()[usize::from(port - tmr)]);
        }
        let word = match port {
            p if p == evt || p == evt + 1 => (self.status.into_bits(), p - evt),
            p if p == evt + 2 || p == evt + 3 => (self.enable.into_bits(), p - evt - 2),
            p if p == cnt || p == cnt + 1 => (self.control.into_bits(), p - cnt),
            // The reset register is write-only.
            RESET_PORT => return Some(0),
            _ => return None,
        };
        Some(word.0.to_le_bytes()[usize::from(word.1)])
    }

    /// A read of `size` (1, 2 or 4) bytes at `port` at TSC `now`: `None` if
    /// `port` is not PM1's or the size is not an I/O size. Bytes past PM1's
    /// ports read all ones.
    pub fn port_read(&mut self, port: u16, size: u8, now: u64) -> Option<u64> {
        if !Pm1::claims_port(port) || !matches!(size, 1 | 2 | 4) {
            return None;
        }
        self.sync_timer(now);
        let mut value = 0u64;
        for i in 0..size {
            let byte = self.read_byte(port.wrapping_add(i.into()), now).unwrap_or(0xff);
            value |= u64::from(byte) << (8 * i);
        }
        Some(value)
    }

    /// A write of the low `size` (1, 2 or 4) bytes of `value` at `port` at
    /// TSC `now`: `None` if `port` is not PM1's or the size is not an I/O
    /// size. Bytes past PM1's ports, and the read-only PM timer's, are
    /// dropped.
    pub fn port_write(&mut self, port: u16, size: u8, value: u64, now: u64) -> Option<Pm1Effect> {
        if !Pm1::claims_port(port) || !matches!(size, 1 | 2 | 4) {
            return None;
        }
        // A toggle before the write is set first, so writing 1 clears it.
        self.sync_timer(now);
        let evt = PM1A_EVT_BLK;
        let cnt = PM1A_CNT_BLK;
        let (mut sts, mut en, mut ctl) = (Lanes::default(), Lanes::default(), Lanes::default());
        let mut reset = false;
        for i in 0..size {
            let p = port.wrapping_add(i.into());
            let byte = (value >> (8 * i)) as u8;
            let (lanes, shift) = match p {
                p if p == evt || p == evt + 1 => (&mut sts, 8 * (p - evt)),
                p if p == evt + 2 || p == evt + 3 => (&mut en, 8 * (p - evt - 2)),
                p if p == cnt || p == cnt + 1 => (&mut ctl, 8 * (p - cnt)),
                RESET_PORT => {
                    reset |= byte == RESET_VALUE;
                    continue;
                }
                _ => continue,
            };
            lanes.value |= u16::from(byte) << shift;
            lanes.mask |= 0xff << shift;
        }
        // PM1_STS: write 1 to clear.
        self.status = Pm1Status::from_bits(self.status.into_bits() & !(sts.value & sts.mask));
        self.enable = Pm1Enable::from_bits(en.merge(self.enable.into_bits()) & EVENT_BITS);
        let mut effect = Pm1Effect::Done;
        if ctl.mask != 0 {
            let written = Pm1Control::from_bits(ctl.merge(self.control.into_bits()));
            // Only BM_RLD and SLP_TYP are kept: SCI_EN stays set, GBL_RLS
            // and SLP_EN are write-only, the rest is reserved.
            self.control =
                Pm1Control::new().with_sci_en(true).with_bm_rld(written.bm_rld()).with_slp_typ(written.slp_typ());
            effect = match written {
                w if !w.slp_en() => Pm1Effect::Done,
                w if w.slp_typ() == SLP_TYP_S5 => Pm1Effect::PowerOff,
                w => Pm1Effect::Sleep(w.slp_typ()),
            };
        }
        Some(if reset { Pm1Effect::Reset } else { effect })
    }
}
