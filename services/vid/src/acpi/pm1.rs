//! The fixed-hardware PM1a registers (ACPI 6.5 4.8.3.1, 4.8.3.2) and the
//! reset register the FADT describes, as a port model for the VID.
//!
//! No fixed event is ever raised (no PM timer, no fixed power or sleep
//! button, no RTC alarm), so PM1_STS reads 0 unless [`Pm1::raise`] sets a
//! bit, and the SCI never fires from here. SMI_CMD is 0 in the FADT, so the
//! platform is always in ACPI mode: SCI_EN reads 1 whatever is written.

use super::{PM1_CNT_LEN, PM1_EVT_LEN, PM1A_CNT_BLK, PM1A_EVT_BLK, RESET_PORT, RESET_VALUE, SLP_TYP_S5};
use bitfield_struct::bitfield;

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

/// The PM1a event and control blocks and the reset register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pm1 {
    status: Pm1Status,
    enable: Pm1Enable,
    control: Pm1Control,
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
    /// Power-on state: ACPI mode, every event disabled, nothing pending.
    pub const fn new() -> Pm1 {
        Pm1 { status: Pm1Status::new(), enable: Pm1Enable::new(), control: Pm1Control::new().with_sci_en(true) }
    }

    /// Whether `port` is one of PM1's: the event block, the control block
    /// or the reset register.
    pub const fn claims_port(port: u16) -> bool {
        let (evt, cnt) = (PM1A_EVT_BLK, PM1A_CNT_BLK);
        (port >= evt && port - evt < PM1_EVT_LEN as u16)
            || (port >= cnt && port - cnt < PM1_CNT_LEN as u16)
            || port == RESET_PORT
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

    /// One byte of the register file at `port`; `None` if not PM1's.
    fn read_byte(&self, port: u16) -> Option<u8> {
        let evt = PM1A_EVT_BLK;
        let cnt = PM1A_CNT_BLK;
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

    /// A read of `size` (1, 2 or 4) bytes at `port`: `None` if `port` is not
    /// PM1's or the size is not an I/O size. Bytes past PM1's ports read
    /// all ones.
    pub fn port_read(&self, port: u16, size: u8) -> Option<u64> {
        if !Pm1::claims_port(port) || !matches!(size, 1 | 2 | 4) {
            return None;
        }
        let mut value = 0u64;
        for i in 0..size {
            let byte = self.read_byte(port.wrapping_add(i.into())).unwrap_or(0xff);
            value |= u64::from(byte) << (8 * i);
        }
        Some(value)
    }

    /// A write of the low `size` (1, 2 or 4) bytes of `value` at `port`:
    /// `None` if `port` is not PM1's or the size is not an I/O size. Bytes
    /// past PM1's ports are dropped.
    pub fn port_write(&mut self, port: u16, size: u8, value: u64) -> Option<Pm1Effect> {
        if !Pm1::claims_port(port) || !matches!(size, 1 | 2 | 4) {
            return None;
        }
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
