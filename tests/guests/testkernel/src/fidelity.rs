//! The fidelity suite (`tests=fidelity`): the virtual machine against the
//! architecture, one line per check (`testkernel: fidelity: <what>: ok`),
//! each naming the SDM, APM or ACPI section it follows. What a guest
//! written for real hardware relies on: CPUID, MSRs, control registers,
//! the local APIC (x2APIC, TSC-deadline), NMIs, the RTC and PM timer, ACPI
//! discovery, and reset.

mod acpi;
mod apic;
mod cpuid;
mod cr;
mod msr;
mod nmi;
mod pm_timer;
mod reset;
mod rtc;

pub use acpi::run as acpi;
pub use apic::interrupt as apic_interrupt;
pub use apic::run as apic;
pub use cpuid::run as cpuid;
pub use cr::run as cr;
pub use msr::run as msr;
pub use nmi::run as nmi;
pub use nmi::trap as nmi_trap;
pub use pm_timer::run as pm_timer;
pub use reset::run as reset;
pub use rtc::interrupt as rtc_interrupt;
pub use rtc::run as rtc;

/// The suite's name in its check lines.
const SUITE: &str = "fidelity";

type Outcome = Result<(), guest_testkernel::Detail>;

fn checks() -> crate::checks::Checks {
    crate::checks::Checks::new(SUITE)
}
