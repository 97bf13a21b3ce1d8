//! The guest's ACPI tables ([`vid::acpi::build`]) as a third-party parser
//! sees them: the `acpi` crate (the kernel's own dependency, with its AML
//! interpreter) finds the tables from the RSDP, reads the MADT's interrupt
//! model and processors and the FADT's PM1 registers (through
//! [`vid::acpi::Pm1`], as port I/O), loads the DSDT and evaluates `\_S5_`,
//! then powers off as an OS does.
//!
//! The crate reads "physical memory" through raw pointers, so this is an
//! integration test: the `vid` library forbids `unsafe`.

use acpi::aml::object::Object;
use acpi::aml::{AmlError, Interpreter, namespace::AmlName};
use acpi::platform::interrupt::{InterruptModel, LocalInterruptLine, NmiProcessor, Polarity, TriggerMode};
use acpi::platform::{AcpiMode, AcpiPlatform, ProcessorState};
use acpi::registers::Pm1ControlBit;
use acpi::sdt::fadt::Fadt;
use acpi::sdt::madt::Madt;
use acpi::{AcpiTable, AcpiTables, Handle, Handler, PciAddress, PhysicalMapping};
use std::ptr::NonNull;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use vid::acpi::{AcpiConfig, DEFAULT_BASE_GPA, DEFAULT_FACS_GPA, Pm1, Pm1Effect, REGION_SIZE, build};
use zerocopy::IntoBytes;

/// Guest memory from the FACS (in the EBDA) to the end of the ACPI region,
/// and the PM1 ports.
#[derive(Clone)]
struct Guest {
    region: Arc<Vec<u8>>,
    pm1: Arc<Mutex<Pm1>>,
    effects: Arc<Mutex<Vec<Pm1Effect>>>,
}

impl Guest {
    fn new(vps: u32) -> (Guest, u64) {
        let mut region = vec![0; (DEFAULT_BASE_GPA - DEFAULT_FACS_GPA) as usize + REGION_SIZE];
        let tables_at = (DEFAULT_BASE_GPA - DEFAULT_FACS_GPA) as usize;
        let config = AcpiConfig { vps, cmos_rtc: false, facs_gpa: DEFAULT_FACS_GPA };
        let tables = build(&config, &mut region[tables_at..], DEFAULT_BASE_GPA).unwrap();
        region[..64].copy_from_slice(vid::acpi::facs().as_bytes());
        let guest = Guest {
            region: Arc::new(region),
            pm1: Arc::new(Mutex::new(Pm1::new())),
            effects: Arc::new(Mutex::new(Vec::new())),
        };
        (guest, tables.rsdp_gpa)
    }

    fn io_read(&self, port: u16, size: u8) -> u64 {
        self.pm1.lock().unwrap().port_read(port, size, 0).unwrap_or_else(|| panic!("read of port {port:#x}"))
    }

    fn io_write(&self, port: u16, size: u8, value: u64) {
        let effect = self.pm1.lock().unwrap().port_write(port, size, value, 0);
        let effect = effect.unwrap_or_else(|| panic!("write of port {port:#x}"));
        self.effects.lock().unwrap().push(effect);
    }
}

impl Handler for Guest {
    unsafe fn map_physical_region<T>(&self, physical_address: usize, size: usize) -> PhysicalMapping<Self, T> {
        let offset = physical_address.checked_sub(DEFAULT_FACS_GPA as usize).expect("below the FACS");
        assert!(offset + size <= self.region.len(), "{physical_address:#x}+{size:#x} is past the ACPI region");
        let start = self.region[offset..].as_ptr() as *mut T;
        PhysicalMapping {
            physical_start: physical_address,
            virtual_start: NonNull::new(start).unwrap(),
            region_length: size,
            mapped_length: size,
            handler: self.clone(),
        }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}

    fn read_u8(&self, address: usize) -> u8 {
        panic!("memory read at {address:#x}")
    }
    fn read_u16(&self, address: usize) -> u16 {
        panic!("memory read at {address:#x}")
    }
    fn read_u32(&self, address: usize) -> u32 {
        panic!("memory read at {address:#x}")
    }
    fn read_u64(&self, address: usize) -> u64 {
        panic!("memory read at {address:#x}")
    }
    fn write_u8(&self, address: usize, _: u8) {
        panic!("memory write at {address:#x}")
    }
    fn write_u16(&self, address: usize, _: u16) {
        panic!("memory write at {address:#x}")
    }
    fn write_u32(&self, address: usize, _: u32) {
        panic!("memory write at {address:#x}")
    }
    fn write_u64(&self, address: usize, _: u64) {
        panic!("memory write at {address:#x}")
    }

    fn read_io_u8(&self, port: u16) -> u8 {
        self.io_read(port, 1) as u8
    }
    fn read_io_u16(&self, port: u16) -> u16 {
        self.io_read(port, 2) as u16
    }
    fn read_io_u32(&self, port: u16) -> u32 {
        self.io_read(port, 4) as u32
    }
    fn write_io_u8(&self, port: u16, value: u8) {
        self.io_write(port, 1, value.into())
    }
    fn write_io_u16(&self, port: u16, value: u16) {
        self.io_write(port, 2, value.into())
    }
    fn write_io_u32(&self, port: u16, value: u32) {
        self.io_write(port, 4, value.into())
    }

    fn read_pci_u8(&self, _: PciAddress, _: u16) -> u8 {
        panic!("no PCI")
    }
    fn read_pci_u16(&self, _: PciAddress, _: u16) -> u16 {
        panic!("no PCI")
    }
    fn read_pci_u32(&self, _: PciAddress, _: u16) -> u32 {
        panic!("no PCI")
    }
    fn write_pci_u8(&self, _: PciAddress, _: u16, _: u8) {
        panic!("no PCI")
    }
    fn write_pci_u16(&self, _: PciAddress, _: u16, _: u16) {
        panic!("no PCI")
    }
    fn write_pci_u32(&self, _: PciAddress, _: u16, _: u32) {
        panic!("no PCI")
    }

    fn nanos_since_boot(&self) -> u64 {
        0
    }
    fn stall(&self, _: u64) {}
    fn sleep(&self, _: u64) {}

    fn create_mutex(&self) -> Handle {
        Handle(0)
    }
    fn acquire(&self, _: Handle, _: u16) -> Result<(), AmlError> {
        Ok(())
    }
    fn release(&self, _: Handle) {}
}

fn platform(vps: u32) -> (Guest, AcpiPlatform<Guest>) {
    let (guest, rsdp) = Guest::new(vps);
    // SAFETY: `rsdp` is the RSDP `build` wrote into `guest`'s region, and
    // the handler maps only that region (it panics on anything else).
    let tables = unsafe { AcpiTables::from_rsdp(guest.clone(), rsdp as usize) }.expect("tables");
    assert_eq!(tables.rsdp_revision, 2);
    let platform = AcpiPlatform::new(tables, guest.clone()).expect("platform");
    (guest, platform)
}

#[test]
fn the_acpi_crate_validates_every_table() {
    let (_, platform) = platform(2);
    let signatures: Vec<String> =
        platform.tables.table_headers().map(|(_, header)| header.signature.as_str().to_owned()).collect();
    assert_eq!(signatures, ["FACP", "APIC"]);
    let fadt = platform.tables.find_table::<Fadt>().expect("FADT");
    fadt.validate().expect("FADT checksum");
    platform.tables.find_table::<Madt>().expect("MADT").get().validate().expect("MADT checksum");
    let dsdt = platform.tables.dsdt().expect("DSDT");
    assert_eq!(dsdt.phys_address, 0xe0240);
    assert_eq!(fadt.facs_address().unwrap(), 0x9_fc00);
    assert_eq!(platform.sci_interrupt, 9);
    let timer = platform.pm_timer.as_ref().expect("a PM timer");
    assert!(timer.supports_32bit);
    assert_eq!(timer.base.address, 0x60c);
    assert!(!{ fadt.flags }.system_is_hw_reduced_acpi());
    assert!({ fadt.flags }.supports_system_reset_via_fadt());
    assert!(!{ fadt.iapc_boot_arch }.motherboard_implements_8042());
    assert!({ fadt.iapc_boot_arch }.dont_probe_vga());
}

#[test]
fn the_acpi_crate_reads_the_interrupt_model_and_processors() {
    let (_, platform) = platform(4);
    let InterruptModel::Apic(apic) = &platform.interrupt_model else { panic!("not the APIC model") };
    assert_eq!(apic.local_apic_address, 0xfee0_0000);
    assert!(apic.also_has_legacy_pics);
    assert_eq!(apic.io_apics.len(), 1);
    assert_eq!(
        (apic.io_apics[0].id, apic.io_apics[0].address, apic.io_apics[0].global_system_interrupt_base),
        (0, 0xfec0_0000, 0)
    );
    let overrides: Vec<_> = apic
        .interrupt_source_overrides
        .iter()
        .map(|o| (o.isa_source, o.global_system_interrupt, o.polarity, o.trigger_mode))
        .collect();
    assert_eq!(
        overrides,
        [(0, 2, Polarity::SameAsBus, TriggerMode::SameAsBus), (9, 9, Polarity::ActiveHigh, TriggerMode::Level)]
    );
    assert_eq!(apic.local_apic_nmi_lines.len(), 1);
    assert!(matches!(apic.local_apic_nmi_lines[0].processor, NmiProcessor::All));
    assert!(matches!(apic.local_apic_nmi_lines[0].line, LocalInterruptLine::Lint1));

    let processors = platform.processor_info.as_ref().expect("processors");
    let bsp = processors.boot_processor;
    assert_eq!((bsp.processor_uid, bsp.local_apic_id), (0, 0));
    let aps: Vec<_> =
        processors.application_processors.iter().map(|p| (p.processor_uid, p.local_apic_id, p.state)).collect();
    let waiting = ProcessorState::WaitingForSipi;
    assert_eq!(aps, [(1, 1, waiting), (2, 2, waiting), (3, 3, waiting)]);
}

#[test]
fn the_acpi_crate_finds_acpi_mode_and_powers_off_through_s5() {
    let (guest, platform) = platform(1);
    assert_eq!(platform.read_mode().unwrap(), AcpiMode::Acpi, "SCI_EN reads 1");
    platform.initialize_events().expect("PM1 event registers");

    let interpreter = Interpreter::new_from_platform(&platform).expect("DSDT loads");
    let s5 = interpreter.evaluate(AmlName::from_str("\\_S5_").unwrap(), vec![]).expect("\\_S5_");
    let Object::Package(elements) = &*s5 else { panic!("\\_S5_ is not a package") };
    let values: Vec<u64> =
        elements.iter().map(|e| if let Object::Integer(v) = **e { v } else { panic!("not an integer") }).collect();
    assert_eq!(values, [5, 5, 0, 0]);

    // What an OS does with it: SLP_TYPa, then SLP_EN.
    guest.effects.lock().unwrap().clear();
    let control = &platform.registers.pm1_control_registers;
    control.set_sleep_typ(values[0] as u8).unwrap();
    control.set_bit(Pm1ControlBit::SleepEnable, true).unwrap();
    assert_eq!(guest.effects.lock().unwrap().last(), Some(&Pm1Effect::PowerOff));
}
