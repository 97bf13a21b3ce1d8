//! The VID's device bus: which emulated device answers a port or MMIO
//! access. One static table per address space ([`PORT_ROUTES`],
//! [`MMIO_ROUTES`]) names every window and its device; a partition's
//! [`PortBus`] holds the windows of the devices it has (a device the
//! manifest leaves out claims nothing), refusing overlaps when it is built.
//!
//! An access goes to the device of its first port or byte, as on ISA: the
//! device sees the whole access and answers bytes past its ports itself.
//! Ports nobody claims read all ones and ignore writes; so do MMIO
//! addresses, with the local APICs' pages (which IA32_APIC_BASE moves per
//! VP) asked of the interrupt model before the table.

use crate::irq::Effects;
use x86decode::size_mask;

/// Who answers a port window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortId {
    /// The PICs (with their ELCRs) and the PIT (with port 0x61):
    /// [`crate::irq::Interrupts`].
    Interrupts,
    /// COM1, a 16550A ([`crate::uart::Uart`]).
    Uart,
    /// The ACPI PM1 registers, the PM timer and the reset register
    /// ([`crate::acpi::Pm1`]).
    Pm1,
    /// QEMU's `isa-debug-exit` convention ([`DebugExit`]).
    DebugExit,
    /// QEMU's `hyperv-testdev` ([`crate::testdev`]), if the manifest gives it.
    HvTestDev,
    /// The MC146818 RTC and CMOS RAM ([`crate::rtc::Rtc`]).
    Rtc,
    /// The 8042 keyboard controller, for its reset line ([`crate::reset_ports::Kbc`]).
    Kbc,
    /// The reset control register at 0xCF9 ([`crate::reset_ports::ResetControl`]).
    ResetControl,
}

/// Ports `first..first + count` go to `device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRoute {
    pub first: u16,
    pub count: u16,
    pub device: PortId,
}

impl PortRoute {
    pub const fn contains(&self, port: u16) -> bool {
        port >= self.first && port - self.first < self.count
    }

    const fn overlaps(&self, other: &PortRoute) -> bool {
        (self.first as u32) < other.first as u32 + other.count as u32
            && (other.first as u32) < self.first as u32 + self.count as u32
    }
}

const fn route(first: u16, count: u16, device: PortId) -> PortRoute {
    PortRoute { first, count, device }
}

/// Every port window a partition may have.
pub const PORT_ROUTES: &[PortRoute] = {
    use crate::acpi::{PM_TMR_BLK, PM_TMR_LEN, PM1_CNT_LEN, PM1_EVT_LEN, PM1A_CNT_BLK, PM1A_EVT_BLK, RESET_PORT};
    use crate::irq::{pic, pit};
    use PortId::*;
    &[
        route(pic::MASTER_CMD, 2, Interrupts),
        route(pit::CHANNEL0, pit::MODE_PORT - pit::CHANNEL0 + 1, Interrupts),
        route(pit::PORT_61, 1, Interrupts),
        route(pic::SLAVE_CMD, 2, Interrupts),
        route(crate::portio::TEST_EXIT, 1, DebugExit),
        route(crate::uart::COM1_BASE, crate::uart::PORTS, Uart),
        route(pic::ELCR_MASTER, 2, Interrupts),
        route(PM1A_EVT_BLK, PM1_EVT_LEN as u16, Pm1),
        route(PM1A_CNT_BLK, PM1_CNT_LEN as u16, Pm1),
        route(RESET_PORT, 1, Pm1),
        route(PM_TMR_BLK, PM_TMR_LEN as u16, Pm1),
        route(crate::testdev::PORT, crate::testdev::PORT_COUNT, HvTestDev),
        route(crate::rtc::INDEX_PORT, 2, Rtc),
        route(crate::reset_ports::KBC_DATA, 1, Kbc),
        route(crate::reset_ports::KBC_COMMAND, 1, Kbc),
        route(crate::reset_ports::RESET_CONTROL, 1, ResetControl),
    ]
};

/// Most windows one partition's bus holds.
pub const MAX_PORT_ROUTES: usize = 24;

/// Two windows of a bus share a port: (the one added, the one it hits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overlap(pub PortRoute, pub PortRoute);

/// A partition's port windows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortBus {
    routes: heapless::Vec<PortRoute, MAX_PORT_ROUTES>,
}

impl PortBus {
    /// The windows of [`PORT_ROUTES`] whose device `has`.
    pub fn with(has: impl Fn(PortId) -> bool) -> Result<PortBus, Overlap> {
        let mut bus = PortBus { routes: heapless::Vec::new() };
        for r in PORT_ROUTES.iter().filter(|r| has(r.device)) {
            bus.add(*r)?;
        }
        Ok(bus)
    }

    /// Adds a window; refused if it shares a port with one already there
    /// (or the bus is full, reported as an overlap with itself).
    pub fn add(&mut self, r: PortRoute) -> Result<(), Overlap> {
        if let Some(hit) = self.routes.iter().find(|o| o.overlaps(&r)) {
            return Err(Overlap(r, *hit));
        }
        self.routes.push(r).map_err(|r| Overlap(r, r))
    }

    /// The device of `port`, if any claims it.
    pub fn route(&self, port: u16) -> Option<PortId> {
        self.routes.iter().find(|r| r.contains(port)).map(|r| r.device)
    }

    /// The ports no window claims, as (first, count) runs in order: what
    /// reads all ones here, and what ring 0 may answer alike
    /// (`PARTITION_SET_FLOATING_PORTS`).
    pub fn unclaimed(&self) -> heapless::Vec<(u32, u32), { MAX_PORT_ROUTES + 1 }> {
        let mut claimed: heapless::Vec<PortRoute, MAX_PORT_ROUTES> = self.routes.clone();
        claimed.sort_unstable_by_key(|r| r.first);
        let mut runs = heapless::Vec::new();
        let mut next = 0u32;
        for r in claimed.iter().filter(|r| r.count != 0) {
            if u32::from(r.first) > next {
                let _ = runs.push((next, u32::from(r.first) - next));
            }
            next = next.max(u32::from(r.first) + u32::from(r.count));
        }
        if next < PORTS {
            let _ = runs.push((next, PORTS - next));
        }
        runs
    }
}

/// Ports in the x86 I/O space.
const PORTS: u32 = 1 << 16;

/// What a port write asks of the partition beyond the device itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortEffect {
    Done,
    /// Interrupt-controller effects (other VPs to kick, IPIs).
    Irq(Effects),
    /// The guest wrote `value` to the debug-exit port.
    TestExit(u32),
    PowerOff,
    /// The guest reset the machine through this device.
    Reset(crate::exits::ResetSource),
    /// The test device asks for SINT `sint` of VP `vp` to be asserted.
    AssertSint {
        vp: u32,
        sint: u8,
    },
    /// The test device ignored request `request`; `why` is for the log.
    Refused {
        request: u32,
        why: &'static str,
    },
}

/// A port access: the time and where console bytes go.
pub struct PortAccess<'a> {
    /// The TSC.
    pub now: u64,
    pub console: &'a mut dyn FnMut(u8),
}

/// A device on ports. Sizes are 1, 2 or 4.
pub trait PortDevice {
    /// The low `size` bytes read at `port`.
    fn read(&mut self, port: u16, size: u8, a: &mut PortAccess) -> u64;
    /// A write of the low `size` bytes of `value` at `port`.
    fn write(&mut self, port: u16, size: u8, value: u64, a: &mut PortAccess) -> PortEffect;
}

/// What nobody claims: reads all ones, writes dropped.
pub struct Unclaimed;

impl PortDevice for Unclaimed {
    fn read(&mut self, _: u16, size: u8, _: &mut PortAccess) -> u64 {
        size_mask(size)
    }
    fn write(&mut self, _: u16, _: u8, _: u64, _: &mut PortAccess) -> PortEffect {
        PortEffect::Done
    }
}

/// The debug-exit port ([`crate::portio::TEST_EXIT`]): a write ends the
/// run; reads all ones.
pub struct DebugExit;

impl PortDevice for DebugExit {
    fn read(&mut self, _: u16, size: u8, _: &mut PortAccess) -> u64 {
        size_mask(size)
    }
    fn write(&mut self, _: u16, size: u8, value: u64, _: &mut PortAccess) -> PortEffect {
        PortEffect::TestExit((value & size_mask(size)) as u32)
    }
}

/// Who answers an MMIO window of [`MMIO_ROUTES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioId {
    /// The I/O APIC and the local APICs ([`crate::irq::Interrupts`]).
    Interrupts,
    /// The test kernel's device ([`crate::mmio::TestDevice`]).
    TestDevice,
}

/// Bytes `base..base + len` go to `device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioRoute {
    pub base: u64,
    pub len: u64,
    pub device: MmioId,
}

/// The fixed MMIO windows (the local APICs' pages move: asked of
/// [`crate::irq::Interrupts::claims_mmio`] first).
pub const MMIO_ROUTES: &[MmioRoute] = &[
    MmioRoute { base: crate::irq::ioapic::IOAPIC_BASE, len: 0x1000, device: MmioId::Interrupts },
    MmioRoute { base: crate::mmio::TEST_DEVICE, len: 0x1000, device: MmioId::TestDevice },
    MmioRoute { base: crate::irq::lapic::APIC_DEFAULT_BASE, len: 0x1000, device: MmioId::Interrupts },
];

/// The device of MMIO address `gpa` in the fixed table.
pub fn mmio_route(gpa: u64) -> Option<MmioId> {
    MMIO_ROUTES.iter().find(|r| gpa >= r.base && gpa - r.base < r.len).map(|r| r.device)
}

/// A device on MMIO. Sizes are 1 to 8.
pub trait MmioDevice {
    /// `None`: the access is not the device's after all (reads all ones).
    fn read(&mut self, vp: u32, gpa: u64, size: u8, now: u64) -> Option<u64>;
    fn write(&mut self, vp: u32, gpa: u64, size: u8, value: u64, now: u64) -> Option<Effects>;
}

// ---- The devices' adapters ---------------------------------------------

impl PortDevice for crate::uart::Uart {
    fn read(&mut self, port: u16, size: u8, _: &mut PortAccess) -> u64 {
        Self::com1_offset(port).map_or(size_mask(size), |offset| u64::from(self.read_sized(offset, size)))
    }
    fn write(&mut self, port: u16, size: u8, value: u64, a: &mut PortAccess) -> PortEffect {
        if let Some(offset) = Self::com1_offset(port) {
            self.write_sized(offset, size, value, &mut |b| (a.console)(b));
        }
        PortEffect::Done
    }
}

impl PortDevice for crate::acpi::Pm1 {
    fn read(&mut self, port: u16, size: u8, a: &mut PortAccess) -> u64 {
        self.port_read(port, size, a.now).unwrap_or(size_mask(size))
    }
    fn write(&mut self, port: u16, size: u8, value: u64, a: &mut PortAccess) -> PortEffect {
        use crate::acpi::Pm1Effect;
        match self.port_write(port, size, value, a.now) {
            Some(Pm1Effect::PowerOff) => PortEffect::PowerOff,
            Some(Pm1Effect::Reset) => PortEffect::Reset(crate::exits::ResetSource::AcpiResetRegister),
            Some(Pm1Effect::Sleep(_) | Pm1Effect::Done) | None => PortEffect::Done,
        }
    }
}

impl PortDevice for crate::rtc::Rtc {
    fn read(&mut self, port: u16, size: u8, a: &mut PortAccess) -> u64 {
        bytewise_read(port, size, |p| Self::claims(p).then(|| self.port_read(p, a.now)))
    }
    fn write(&mut self, port: u16, size: u8, value: u64, a: &mut PortAccess) -> PortEffect {
        bytewise_write(port, size, value, |p, byte| {
            if Self::claims(p) {
                self.port_write(p, byte, a.now);
            }
            false
        });
        PortEffect::Done
    }
}

impl PortDevice for crate::reset_ports::Kbc {
    fn read(&mut self, port: u16, size: u8, _: &mut PortAccess) -> u64 {
        bytewise_read(port, size, |p| Self::claims(p).then(|| crate::reset_ports::Kbc::read(self, p)))
    }
    fn write(&mut self, port: u16, size: u8, value: u64, _: &mut PortAccess) -> PortEffect {
        let reset = bytewise_write(port, size, value, |p, byte| {
            Self::claims(p) && crate::reset_ports::Kbc::write(self, p, byte)
        });
        if reset { PortEffect::Reset(crate::exits::ResetSource::KeyboardController) } else { PortEffect::Done }
    }
}

impl PortDevice for crate::reset_ports::ResetControl {
    fn read(&mut self, port: u16, size: u8, _: &mut PortAccess) -> u64 {
        bytewise_read(port, size, |p| {
            (p == crate::reset_ports::RESET_CONTROL).then(|| crate::reset_ports::ResetControl::read(self))
        })
    }
    fn write(&mut self, port: u16, size: u8, value: u64, _: &mut PortAccess) -> PortEffect {
        let reset = bytewise_write(port, size, value, |p, byte| {
            p == crate::reset_ports::RESET_CONTROL && crate::reset_ports::ResetControl::write(self, byte)
        });
        if reset { PortEffect::Reset(crate::exits::ResetSource::ResetControl) } else { PortEffect::Done }
    }
}

/// A read of `size` bytes from `port` up, each byte from `byte` (all ones
/// for a port it does not answer).
fn bytewise_read(port: u16, size: u8, mut byte: impl FnMut(u16) -> Option<u8>) -> u64 {
    (0..size.clamp(1, 4)).fold(0, |acc, i| {
        let b = byte(port.wrapping_add(u16::from(i))).unwrap_or(0xff);
        acc | u64::from(b) << (8 * i)
    })
}

/// A write of `size` bytes of `value` from `port` up, each byte to
/// `byte`; true if any byte's write said so.
fn bytewise_write(port: u16, size: u8, value: u64, mut byte: impl FnMut(u16, u8) -> bool) -> bool {
    (0..size.clamp(1, 4)).fold(false, |any, i| byte(port.wrapping_add(u16::from(i)), (value >> (8 * i)) as u8) | any)
}

impl PortDevice for crate::irq::Interrupts {
    fn read(&mut self, port: u16, size: u8, a: &mut PortAccess) -> u64 {
        self.port_read(port, size, a.now).unwrap_or(size_mask(size))
    }
    fn write(&mut self, port: u16, size: u8, value: u64, a: &mut PortAccess) -> PortEffect {
        self.port_write(port, size, value, a.now).map_or(PortEffect::Done, PortEffect::Irq)
    }
}

impl MmioDevice for crate::irq::Interrupts {
    fn read(&mut self, vp: u32, gpa: u64, size: u8, now: u64) -> Option<u64> {
        self.mmio_read(vp, gpa, size, now)
    }
    fn write(&mut self, vp: u32, gpa: u64, size: u8, value: u64, now: u64) -> Option<Effects> {
        self.mmio_write(vp, gpa, size, value, now)
    }
}

impl MmioDevice for crate::mmio::TestDevice {
    fn read(&mut self, _: u32, gpa: u64, size: u8, _: u64) -> Option<u64> {
        Some(crate::mmio::TestDevice::read(self, gpa & 0xfff, size))
    }
    fn write(&mut self, _: u32, gpa: u64, size: u8, value: u64, _: u64) -> Option<Effects> {
        crate::mmio::TestDevice::write(self, gpa & 0xfff, size, value);
        None
    }
}

#[cfg(test)]
mod tests;
