//! Reading the ACPI tables as an OS finds them (ACPI 6.5 chapter 5): the
//! RSDP by the search of 5.2.5.1, then the RSDT or XSDT, the MADT and the
//! FADT, every field by its offset in the specification. Pure logic over
//! [`Memory`], so the host tests read the VID's tables with it too.

use crate::multiboot::Memory;
use core::ops::Range;
use heapless::Vec;

/// The RSDP's signature (5.2.5.3).
pub const RSDP_SIGNATURE: &[u8; 8] = b"RSD PTR ";
/// The BIOS read-only area the OS searches (5.2.5.1).
pub const BIOS_AREA: Range<u64> = 0xe_0000..0x10_0000;
/// The BDA word holding the EBDA's real-mode segment (5.2.5.1).
pub const EBDA_POINTER: u64 = 0x40e;
/// The EBDA's first KiB is searched.
pub const EBDA_SEARCHED: u64 = 1024;
/// Bytes of the ACPI 1.0 RSDP, which its `checksum` covers.
pub const RSDP_V1_LEN: u64 = 20;
/// A table header's length (5.2.6).
pub const HEADER_LEN: u64 = 36;
/// Most tables an RSDT or XSDT lists that are read.
pub const MAX_TABLES: usize = 32;
/// Longest table read (more is taken as garbage).
pub const MAX_TABLE_LEN: u32 = 1 << 20;

/// Whether the `len` bytes at `addr` sum to 0 (mod 256); `None` if unreadable.
pub fn sums_to_zero<M: Memory>(mem: &M, addr: u64, len: u64) -> Option<bool> {
    let mut sum = 0u8;
    let mut buf = [0u8; 64];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(buf.len() as u64) as usize;
        if !mem.read(addr + at, &mut buf[..n]) {
            return None;
        }
        sum = buf[..n].iter().fold(sum, |s, b| s.wrapping_add(*b));
        at += n as u64;
    }
    Some(sum == 0)
}

fn u8_at<M: Memory>(mem: &M, addr: u64) -> Option<u8> {
    let mut b = [0];
    mem.read(addr, &mut b).then_some(b[0])
}

fn u16_at<M: Memory>(mem: &M, addr: u64) -> Option<u16> {
    let mut b = [0; 2];
    mem.read(addr, &mut b).then_some(u16::from_le_bytes(b))
}

/// The first RSDP in `range` on a 16-byte boundary whose signature and
/// ACPI 1.0 checksum are right (5.2.5.1, 5.2.5.3).
pub fn scan_for_rsdp<M: Memory>(mem: &M, range: Range<u64>) -> Option<u64> {
    let mut at = range.start.next_multiple_of(16);
    while at + RSDP_V1_LEN <= range.end {
        let mut signature = [0u8; 8];
        if mem.read(at, &mut signature) && &signature == RSDP_SIGNATURE && sums_to_zero(mem, at, RSDP_V1_LEN)? {
            return Some(at);
        }
        at += 16;
    }
    None
}

/// The EBDA's first KiB, if the BDA names an EBDA below 640 KiB.
pub fn ebda<M: Memory>(mem: &M) -> Option<Range<u64>> {
    let segment = u16_at(mem, EBDA_POINTER)?;
    let start = u64::from(segment) << 4;
    (segment != 0 && start + EBDA_SEARCHED <= 0xa_0000).then_some(start..start + EBDA_SEARCHED)
}

/// Where the OS finds the RSDP (5.2.5.1): the EBDA's first KiB, then the
/// BIOS area.
pub fn find_rsdp<M: Memory>(mem: &M) -> Option<u64> {
    ebda(mem).and_then(|r| scan_for_rsdp(mem, r)).or_else(|| scan_for_rsdp(mem, BIOS_AREA))
}

/// The RSDP's fields (5.2.5.3, table 5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rsdp {
    pub revision: u8,
    pub rsdt: u32,
    /// Revision 2 and later: the length and the XSDT.
    pub length: u32,
    pub xsdt: u64,
    /// The checksum over the first 20 bytes, and (revision 2) the extended
    /// one over `length` bytes.
    pub checksum_ok: bool,
    pub extended_checksum_ok: bool,
}

pub fn read_rsdp<M: Memory>(mem: &M, at: u64) -> Option<Rsdp> {
    let revision = u8_at(mem, at + 15)?;
    let rsdt = mem.u32_at(at + 16)?;
    let checksum_ok = sums_to_zero(mem, at, RSDP_V1_LEN)?;
    let (length, xsdt, extended_checksum_ok) = if revision >= 2 {
        let length = mem.u32_at(at + 20)?;
        let ok = (36..=4096).contains(&length) && sums_to_zero(mem, at, length.into())?;
        (length, mem.u64_at(at + 24)?, ok)
    } else {
        (RSDP_V1_LEN as u32, 0, false)
    };
    Some(Rsdp { revision, rsdt, length, xsdt, checksum_ok, extended_checksum_ok })
}

/// A system description table's header (5.2.6) and whether its checksum
/// holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sdt {
    pub addr: u64,
    pub signature: [u8; 4],
    pub length: u32,
    pub revision: u8,
    pub checksum_ok: bool,
}

impl Sdt {
    pub fn signature(&self) -> &str {
        core::str::from_utf8(&self.signature).unwrap_or("????")
    }
}

/// The table at `addr`; `None` if unreadable or its length is not that of
/// a table.
pub fn read_sdt<M: Memory>(mem: &M, addr: u64) -> Option<Sdt> {
    let mut signature = [0u8; 4];
    if !mem.read(addr, &mut signature) {
        return None;
    }
    let length = mem.u32_at(addr + 4)?;
    if u64::from(length) < HEADER_LEN || length > MAX_TABLE_LEN {
        return None;
    }
    let revision = u8_at(mem, addr + 8)?;
    let checksum_ok = sums_to_zero(mem, addr, length.into())?;
    Some(Sdt { addr, signature, length, revision, checksum_ok })
}

/// The table addresses an RSDT (`width` 4) or XSDT (`width` 8) lists.
pub fn entries<M: Memory>(mem: &M, root: &Sdt, width: u64) -> Vec<u64, MAX_TABLES> {
    let mut out = Vec::new();
    let count = (u64::from(root.length) - HEADER_LEN) / width;
    for i in 0..count.min(MAX_TABLES as u64) {
        let at = root.addr + HEADER_LEN + i * width;
        let entry = if width == 8 { mem.u64_at(at) } else { mem.u32_at(at).map(u64::from) };
        if let Some(entry) = entry {
            let _ = out.push(entry);
        }
    }
    out
}

/// The first listed table with `signature`.
pub fn find_table<M: Memory>(mem: &M, listed: &[u64], signature: &[u8; 4]) -> Option<Sdt> {
    listed.iter().filter_map(|&a| read_sdt(mem, a)).find(|t| &t.signature == signature)
}

/// A Processor Local APIC structure (5.2.12.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalApic {
    pub uid: u8,
    pub apic_id: u8,
    /// Bit 0: enabled; bit 1: online capable.
    pub flags: u32,
}

/// An I/O APIC structure (5.2.12.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApic {
    pub id: u8,
    pub address: u32,
    pub gsi_base: u32,
}

/// An Interrupt Source Override (5.2.12.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Override {
    pub bus: u8,
    pub source: u8,
    pub gsi: u32,
    pub flags: u16,
}

/// The MADT (5.2.12).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Madt {
    pub local_apic_address: u32,
    pub flags: u32,
    pub processors: Vec<LocalApic, 256>,
    pub io_apics: Vec<IoApic, 8>,
    pub overrides: Vec<Override, 16>,
    /// Entries of other types, or malformed (length < 2).
    pub other: u32,
}

pub fn read_madt<M: Memory>(mem: &M, t: &Sdt) -> Option<Madt> {
    let mut madt = Madt {
        local_apic_address: mem.u32_at(t.addr + 36)?,
        flags: mem.u32_at(t.addr + 40)?,
        processors: Vec::new(),
        io_apics: Vec::new(),
        overrides: Vec::new(),
        other: 0,
    };
    let end = t.addr + u64::from(t.length);
    let mut at = t.addr + 44;
    while at + 2 <= end {
        let (kind, len) = (u8_at(mem, at)?, u8_at(mem, at + 1)?);
        if len < 2 || at + u64::from(len) > end {
            madt.other += 1;
            break;
        }
        match (kind, len) {
            (0, 8) => {
                let lapic =
                    LocalApic { uid: u8_at(mem, at + 2)?, apic_id: u8_at(mem, at + 3)?, flags: mem.u32_at(at + 4)? };
                let _ = madt.processors.push(lapic);
            }
            (1, 12) => {
                let io =
                    IoApic { id: u8_at(mem, at + 2)?, address: mem.u32_at(at + 4)?, gsi_base: mem.u32_at(at + 8)? };
                let _ = madt.io_apics.push(io);
            }
            (2, 10) => {
                let o = Override {
                    bus: u8_at(mem, at + 2)?,
                    source: u8_at(mem, at + 3)?,
                    gsi: mem.u32_at(at + 4)?,
                    flags: u16_at(mem, at + 8)?,
                };
                let _ = madt.overrides.push(o);
            }
            _ => madt.other += 1,
        }
        at += u64::from(len);
    }
    Some(madt)
}

/// A Generic Address Structure (5.2.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gas {
    /// 0: system memory, 1: system I/O.
    pub space: u8,
    pub bit_width: u8,
    pub bit_offset: u8,
    pub access_size: u8,
    pub address: u64,
}

fn read_gas<M: Memory>(mem: &M, at: u64) -> Option<Gas> {
    Some(Gas {
        space: u8_at(mem, at)?,
        bit_width: u8_at(mem, at + 1)?,
        bit_offset: u8_at(mem, at + 2)?,
        access_size: u8_at(mem, at + 3)?,
        address: mem.u64_at(at + 4)?,
    })
}

/// FADT flags (table 5.10).
pub const FADT_TMR_VAL_EXT: u32 = 1 << 8;
pub const FADT_RESET_REG_SUP: u32 = 1 << 10;
pub const FADT_HW_REDUCED_ACPI: u32 = 1 << 20;
/// IAPC_BOOT_ARCH (table 5.11): the CMOS RTC is not present.
pub const BOOT_ARCH_CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;

/// The FADT fields the checks read (5.2.9, table 5.9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fadt {
    pub firmware_ctrl: u32,
    pub dsdt: u32,
    pub sci_int: u16,
    pub pm1a_evt_blk: u32,
    pub pm1a_cnt_blk: u32,
    pub pm_tmr_blk: u32,
    pub pm_tmr_len: u8,
    pub century: u8,
    pub iapc_boot_arch: u16,
    pub flags: u32,
    pub reset_reg: Gas,
    pub reset_value: u8,
    /// Revision 3 and later (length ≥ 244): the 64-bit forms.
    pub x_dsdt: u64,
    pub x_pm_tmr_blk: Option<Gas>,
}

impl Fadt {
    /// The PM timer's I/O port: X_PM_TMR_BLK if it is a system I/O
    /// register, else PM_TMR_BLK (0: none).
    pub fn pm_timer_port(&self) -> u64 {
        match self.x_pm_tmr_blk {
            Some(g) if g.space == 1 && g.address != 0 => g.address,
            _ => self.pm_tmr_blk.into(),
        }
    }

    /// The DSDT: X_DSDT if set, else DSDT.
    pub fn dsdt(&self) -> u64 {
        if self.x_dsdt != 0 { self.x_dsdt } else { self.dsdt.into() }
    }
}

pub fn read_fadt<M: Memory>(mem: &M, t: &Sdt) -> Option<Fadt> {
    let a = t.addr;
    let long = t.length >= 244;
    Some(Fadt {
        firmware_ctrl: mem.u32_at(a + 36)?,
        dsdt: mem.u32_at(a + 40)?,
        sci_int: u16_at(mem, a + 46)?,
        pm1a_evt_blk: mem.u32_at(a + 56)?,
        pm1a_cnt_blk: mem.u32_at(a + 64)?,
        pm_tmr_blk: mem.u32_at(a + 76)?,
        pm_tmr_len: u8_at(mem, a + 91)?,
        century: u8_at(mem, a + 108)?,
        iapc_boot_arch: u16_at(mem, a + 109)?,
        flags: mem.u32_at(a + 112)?,
        reset_reg: read_gas(mem, a + 116)?,
        reset_value: u8_at(mem, a + 128)?,
        x_dsdt: if long { mem.u64_at(a + 140)? } else { 0 },
        x_pm_tmr_blk: if long { Some(read_gas(mem, a + 208)?) } else { None },
    })
}

/// What an OS reaches from the RSDP: the root table (the XSDT if the RSDP
/// has one, else the RSDT) and the tables it lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovered {
    pub rsdp_at: u64,
    pub rsdp: Rsdp,
    pub rsdt: Option<Sdt>,
    pub xsdt: Option<Sdt>,
    /// The root's entries.
    pub listed: Vec<u64, MAX_TABLES>,
}

/// Finds the RSDP (5.2.5.1) and reads the RSDT and XSDT it names.
pub fn discover<M: Memory>(mem: &M) -> Option<Discovered> {
    let rsdp_at = find_rsdp(mem)?;
    let rsdp = read_rsdp(mem, rsdp_at)?;
    let rsdt = (rsdp.rsdt != 0).then(|| read_sdt(mem, rsdp.rsdt.into())).flatten();
    let xsdt = (rsdp.revision >= 2 && rsdp.xsdt != 0).then(|| read_sdt(mem, rsdp.xsdt)).flatten();
    let listed = match (&xsdt, &rsdt) {
        (Some(x), _) => entries(mem, x, 8),
        (None, Some(r)) => entries(mem, r, 4),
        (None, None) => Vec::new(),
    };
    Some(Discovered { rsdp_at, rsdp, rsdt, xsdt, listed })
}
