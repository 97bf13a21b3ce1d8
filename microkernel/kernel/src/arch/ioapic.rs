//! The I/O APIC: routes device interrupt lines (GSIs) to vectors on the
//! boot CPU. Every line starts masked; a line is unmasked only while a task
//! that holds its interrupt capability waits for it, and is masked again
//! when it fires until that task acknowledges it.

use super::acpi::{IoApic, IsaOverride, MAX_IOAPICS, MAX_OVERRIDES};
use super::memory;
use core::ptr::NonNull;
use spin::Mutex;
use volatile::VolatilePtr;

/// First vector used for GSIs; GSI n arrives on `GSI_VECTOR_BASE + n`.
pub const GSI_VECTOR_BASE: u8 = 48;
/// GSIs the kernel routes (vectors 48..=79).
pub const MAX_GSIS: u32 = abi::limits::GSIS;

const IOREGSEL: usize = 0x00;
const IOWIN: usize = 0x10;
const REG_VERSION: u32 = 0x01;
const REG_REDIRECTION: u32 = 0x10;
const MASKED: u64 = 1 << 16;
const LEVEL: u64 = 1 << 15;
const ACTIVE_LOW: u64 = 1 << 13;
/// Delivery mode NMI (bits 8..10 = 100b); the vector is ignored.
const DELIVERY_NMI: u64 = 0b100 << 8;

struct Chip {
    base: u64,
    gsi_base: u32,
    lines: u32,
}

struct State {
    chips: heapless::Vec<Chip, MAX_IOAPICS>,
    overrides: heapless::Vec<IsaOverride, MAX_OVERRIDES>,
}

static STATE: Mutex<State> = Mutex::new(State { chips: heapless::Vec::new(), overrides: heapless::Vec::new() });

fn register(base: u64, offset: usize) -> VolatilePtr<'static, u32> {
    let ptr = NonNull::new((base as usize + offset) as *mut u32).expect("mapped I/O APIC");
    // SAFETY: `base` is the uncached mapping of an I/O APIC's register page
    // made in `init`; IOREGSEL and IOWIN lie inside it.
    unsafe { VolatilePtr::new(ptr) }
}

fn read(chip: &Chip, reg: u32) -> u32 {
    register(chip.base, IOREGSEL).write(reg);
    register(chip.base, IOWIN).read()
}

fn write(chip: &Chip, reg: u32, value: u32) {
    register(chip.base, IOREGSEL).write(reg);
    register(chip.base, IOWIN).write(value);
}

/// Maps every I/O APIC and masks all of their lines.
pub fn init(io_apics: &[IoApic], overrides: &[IsaOverride]) -> u32 {
    let mut state = STATE.lock();
    for io in io_apics {
        let Ok(base) = memory::map_mmio(u64::from(io.address), 0x1000) else { continue };
        let mut chip = Chip { base, gsi_base: io.gsi_base, lines: 0 };
        chip.lines = ((read(&chip, REG_VERSION) >> 16) & 0xff) + 1;
        for line in 0..chip.lines {
            write(&chip, REG_REDIRECTION + 2 * line, MASKED as u32);
            write(&chip, REG_REDIRECTION + 2 * line + 1, 0);
        }
        let _ = state.chips.push(chip);
    }
    for o in overrides {
        let _ = state.overrides.push(*o);
    }
    state.chips.iter().map(|c| c.lines).sum()
}

/// True if some I/O APIC has this GSI and the kernel can route it.
pub fn exists(gsi: u32) -> bool {
    gsi < MAX_GSIS && STATE.lock().chips.iter().any(|c| gsi >= c.gsi_base && gsi < c.gsi_base + c.lines)
}

/// Programs `gsi`'s redirection entry (to the boot CPU, its vector),
/// masked or not. ISA lines use the firmware's overrides; others default to
/// PCI's level-triggered, active-low.
pub fn set(gsi: u32, masked: bool) {
    let state = STATE.lock();
    let Some(chip) = state.chips.iter().find(|c| gsi >= c.gsi_base && gsi < c.gsi_base + c.lines) else { return };
    let isa = state.overrides.iter().find(|o| o.gsi == gsi);
    let (level, active_low) = match isa {
        Some(o) => (o.level, o.active_low),
        None if gsi < 16 => (false, false),
        None => (true, true),
    };
    let mut entry = u64::from(GSI_VECTOR_BASE) + u64::from(gsi);
    if level {
        entry |= LEVEL;
    }
    if active_low {
        entry |= ACTIVE_LOW;
    }
    if masked {
        entry |= MASKED;
    }
    let line = gsi - chip.gsi_base;
    // Destination (bits 56..63): the boot CPU's APIC ID, 0.
    write(chip, REG_REDIRECTION + 2 * line + 1, 0);
    write(chip, REG_REDIRECTION + 2 * line, entry as u32);
}

/// Routes `gsi` to the boot CPU as an NMI (edge, active high, unmasked),
/// as an NMI watchdog wired to a timer would; false if no I/O APIC has it.
/// For the NMI test only: the line no longer reaches a task.
pub fn route_as_nmi(gsi: u32) -> bool {
    let state = STATE.lock();
    let Some(chip) = state.chips.iter().find(|c| gsi >= c.gsi_base && gsi < c.gsi_base + c.lines) else {
        return false;
    };
    let line = gsi - chip.gsi_base;
    write(chip, REG_REDIRECTION + 2 * line + 1, 0);
    write(chip, REG_REDIRECTION + 2 * line, DELIVERY_NMI as u32);
    true
}

/// The GSI an ISA IRQ arrives on.
pub fn isa_to_gsi(irq: u8) -> u32 {
    STATE.lock().overrides.iter().find(|o| o.isa_irq == irq).map_or(u32::from(irq), |o| o.gsi)
}
