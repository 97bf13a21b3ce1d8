//! Interrupt controllers and timers of the partition's PC platform: a local
//! APIC per VP ([`lapic`], with its timer in [`apic_timer`]), an I/O APIC
//! ([`ioapic`]), the 8259 PIC pair ([`pic`]) and the 8254 PIT ([`pit`]),
//! gathered in [`Interrupts`] ([`platform`]), which routes MMIO, ports and
//! MSRs to them and messages between them.
//!
//! Pure models: time is the `now` argument in TSC ticks, and what the
//! caller must act on (kick a VP, INIT, SIPI) is returned as [`Effects`].
//!
//! # What the VID must publish in the MADT to match
//! - Local APIC address `0xFEE0_0000`, flags `PCAT_COMPAT` (8259s present).
//! - One Processor Local APIC entry per VP: ACPI processor UID = APIC ID =
//!   VP index, flags enabled.
//! - One I/O APIC entry: ID [`ioapic::IOAPIC_ID`], address
//!   [`ioapic::IOAPIC_BASE`], GSI base 0 (pins 0–23 are GSIs 0–23).
//! - Interrupt source override: bus 0 (ISA), source IRQ 0 → GSI 2, flags 0
//!   (conforming: edge, active high). ISA IRQs 1–15 are GSIs 1–15.
//! - Nothing drives LINT1, so a Local APIC NMI entry (all processors,
//!   LINT1) is optional.
//!
//! The CPUID the VID presents must match too: leaf 1 EDX.APIC, ECX.x2APIC,
//! ECX.TSC-deadline, and leaf 1 EBX[31:24] = the VP index.

pub mod apic_timer;
pub mod ioapic;
pub mod lapic;
pub mod pic;
pub mod pit;
pub mod platform;

use abi::open_enum;

pub use platform::{Config, Interrupts};

/// VPs with a local APIC: one per VP of the partition.
pub use abi::limits::MAX_VPS_PER_PARTITION;

open_enum! {
    /// Delivery mode of an ICR, LVT entry or redirection entry (3 bits).
    pub struct DeliveryMode(u8) {
        FIXED = 0,
        LOWEST_PRIORITY = 1,
        SMI = 2,
        NMI = 4,
        INIT = 5,
        STARTUP = 6,
        EXTINT = 7,
    }
}

impl DeliveryMode {
    pub const fn from_bits(bits: u8) -> DeliveryMode {
        DeliveryMode(bits & 7)
    }

    pub const fn into_bits(self) -> u8 {
        self.0
    }
}

/// Where an interrupt message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// The APIC whose ID is this (8 bits in xAPIC messages, 32 in x2APIC).
    Physical(u32),
    /// The APICs whose logical ID matches this message destination address.
    Logical(u32),
    /// The sender only (ICR shorthand 01, the x2APIC SELF IPI register).
    SelfOnly,
    /// Every APIC, the sender included (shorthand 10, physical broadcast).
    All,
    /// Every APIC but the sender (shorthand 11).
    AllButSelf,
}

/// An interrupt message: an IPI or an I/O APIC redirection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    pub mode: DeliveryMode,
    pub vector: u8,
    /// Level-triggered (TMR set on acceptance, EOI reported).
    pub level: bool,
    pub dest: Destination,
}

/// The guest's RDMSR/WRMSR faults with #GP(0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeneralProtection;

/// A set of VP indices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VpSet(pub u16);

impl VpSet {
    pub fn insert(&mut self, vp: u32) {
        if (vp as usize) < MAX_VPS_PER_PARTITION {
            self.0 |= 1 << vp;
        }
    }

    pub const fn contains(self, vp: u32) -> bool {
        vp < MAX_VPS_PER_PARTITION as u32 && self.0 & (1 << vp) != 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Its VPs, lowest first (a step per member, not per possible VP).
    pub fn iter(self) -> impl Iterator<Item = u32> {
        let mut bits = self.0;
        core::iter::from_fn(move || {
            let vp = (bits != 0).then(|| bits.trailing_zeros())?;
            bits &= bits - 1;
            Some(vp)
        })
    }
}

/// What the caller does after an access or a poll.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// VPs that may have a new interrupt: a halted one wakes, a running
    /// one is made to exit so [`Interrupts::highest_pending`] is asked.
    pub kick: VpSet,
    /// VPs that received INIT: the caller resets the VP's CPU state (the
    /// local APIC is already reset) and leaves it waiting for SIPI.
    pub init: VpSet,
    /// VPs to start in real mode at CS = `sipi_vector << 8`, IP = 0.
    pub sipi: VpSet,
    pub sipi_vector: u8,
}

impl Effects {
    pub fn merge(&mut self, other: Effects) {
        self.kick.0 |= other.kick.0;
        self.init.0 |= other.init.0;
        if !other.sipi.is_empty() {
            self.sipi.0 |= other.sipi.0;
            self.sipi_vector = other.sipi_vector;
        }
    }
}

/// An interrupt for the caller to inject into a VP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupt {
    /// NMI (vector 2).
    Nmi,
    /// From the 8259 through LINT0 (ExtINT): the vector the PIC gives.
    ExtInt(u8),
    /// From the local APIC's IRR.
    Fixed(u8),
}

impl Interrupt {
    pub const fn vector(self) -> u8 {
        match self {
            Interrupt::Nmi => 2,
            Interrupt::ExtInt(v) | Interrupt::Fixed(v) => v,
        }
    }
}

/// Whether the VP can take an interrupt now (from its intercept header).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interruptibility {
    /// RFLAGS.IF.
    pub rflags_if: bool,
    /// STI or MOV SS shadow.
    pub shadow: bool,
    /// NMIs blocked (an NMI handler is running, until IRET).
    pub nmi_blocked: bool,
}

/// `n * mul / div`, rounded down, saturating.
pub(crate) fn scale(n: u64, mul: u64, div: u64) -> u64 {
    u64::try_from(u128::from(n) * u128::from(mul) / u128::from(div.max(1))).unwrap_or(u64::MAX)
}

/// `n * mul / div`, rounded up, saturating.
pub(crate) fn scale_up(n: u64, mul: u64, div: u64) -> u64 {
    let div = u128::from(div.max(1));
    u64::try_from((u128::from(n) * u128::from(mul)).div_ceil(div)).unwrap_or(u64::MAX)
}
