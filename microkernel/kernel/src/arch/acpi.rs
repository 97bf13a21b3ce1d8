//! ACPI table discovery through the `acpi` crate: the MADT's processors,
//! local APIC address and I/O APICs.

use super::memory;
use acpi::platform::{InterruptModel, ProcessorState};
use acpi::{AcpiTables, Handler, PciAddress, PhysicalMapping};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use x86::io::{inb, inl, inw, outb, outl, outw};

/// Maps tables through the direct map (or the device window for tables
/// outside RAM) and performs the port and PCI accesses the crate asks for.
#[derive(Clone, Copy)]
pub struct KernelAcpiHandler;

fn virt_of(phys: usize, size: usize) -> Option<usize> {
    let (phys, size) = (phys as u64, size as u64);
    memory::phys_to_virt(phys, size).or_else(|| memory::map_firmware(phys, size).ok()).map(|v| v as usize)
}

/// PCI configuration mechanism #1 address for `address` and `offset`.
fn pci_config_address(address: PciAddress, offset: u16) -> u32 {
    (1 << 31)
        | (u32::from(address.bus()) << 16)
        | (u32::from(address.device()) << 11)
        | (u32::from(address.function()) << 8)
        | u32::from(offset & 0xfc)
}

const PCI_ADDRESS_PORT: u16 = 0xcf8;
const PCI_DATA_PORT: u16 = 0xcfc;

impl Handler for KernelAcpiHandler {
    unsafe fn map_physical_region<T>(&self, physical_address: usize, size: usize) -> PhysicalMapping<Self, T> {
        let virt = virt_of(physical_address, size).unwrap_or(0);
        PhysicalMapping {
            physical_start: physical_address,
            // The crate dereferences this; a table we cannot map is a firmware
            // error we cannot recover from at boot.
            virtual_start: NonNull::new(virt as *mut T).expect("ACPI table outside any mappable memory"),
            region_length: size,
            mapped_length: size,
            handler: *self,
        }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {
        // Direct-map and device-window mappings stay for the kernel's life.
    }

    fn read_u8(&self, address: usize) -> u8 {
        read_phys(address)
    }
    fn read_u16(&self, address: usize) -> u16 {
        read_phys(address)
    }
    fn read_u32(&self, address: usize) -> u32 {
        read_phys(address)
    }
    fn read_u64(&self, address: usize) -> u64 {
        read_phys(address)
    }
    fn write_u8(&self, address: usize, value: u8) {
        write_phys(address, value)
    }
    fn write_u16(&self, address: usize, value: u16) {
        write_phys(address, value)
    }
    fn write_u32(&self, address: usize, value: u32) {
        write_phys(address, value)
    }
    fn write_u64(&self, address: usize, value: u64) {
        write_phys(address, value)
    }

    // SAFETY (all port accesses below): the crate issues them on behalf of
    // the firmware's ACPI description of this machine's own registers.
    fn read_io_u8(&self, port: u16) -> u8 {
        unsafe { inb(port) }
    }
    fn read_io_u16(&self, port: u16) -> u16 {
        unsafe { inw(port) }
    }
    fn read_io_u32(&self, port: u16) -> u32 {
        unsafe { inl(port) }
    }
    fn write_io_u8(&self, port: u16, value: u8) {
        unsafe { outb(port, value) }
    }
    fn write_io_u16(&self, port: u16, value: u16) {
        unsafe { outw(port, value) }
    }
    fn write_io_u32(&self, port: u16, value: u32) {
        unsafe { outl(port, value) }
    }

    fn read_pci_u8(&self, address: PciAddress, offset: u16) -> u8 {
        (self.read_pci_u32(address, offset) >> ((offset & 3) * 8)) as u8
    }
    fn read_pci_u16(&self, address: PciAddress, offset: u16) -> u16 {
        (self.read_pci_u32(address, offset) >> ((offset & 2) * 8)) as u16
    }
    fn read_pci_u32(&self, address: PciAddress, offset: u16) -> u32 {
        // SAFETY: configuration mechanism #1 on its fixed ports.
        unsafe {
            outl(PCI_ADDRESS_PORT, pci_config_address(address, offset));
            inl(PCI_DATA_PORT)
        }
    }
    fn write_pci_u8(&self, address: PciAddress, offset: u16, value: u8) {
        // SAFETY: configuration mechanism #1 on its fixed ports.
        unsafe {
            outl(PCI_ADDRESS_PORT, pci_config_address(address, offset));
            outb(PCI_DATA_PORT + (offset & 3), value)
        }
    }
    fn write_pci_u16(&self, address: PciAddress, offset: u16, value: u16) {
        // SAFETY: configuration mechanism #1 on its fixed ports.
        unsafe {
            outl(PCI_ADDRESS_PORT, pci_config_address(address, offset));
            outw(PCI_DATA_PORT + (offset & 2), value)
        }
    }
    fn write_pci_u32(&self, address: PciAddress, offset: u16, value: u32) {
        // SAFETY: configuration mechanism #1 on its fixed ports.
        unsafe {
            outl(PCI_ADDRESS_PORT, pci_config_address(address, offset));
            outl(PCI_DATA_PORT, value)
        }
    }

    fn nanos_since_boot(&self) -> u64 {
        super::apic::ticks() * (1_000_000_000 / super::apic::TICK_HZ)
    }

    fn stall(&self, microseconds: u64) {
        super::pit::delay_us(microseconds);
    }

    fn sleep(&self, milliseconds: u64) {
        super::pit::delay_us(milliseconds * 1000);
    }

    fn create_mutex(&self) -> acpi::Handle {
        let index = NEXT_MUTEX.fetch_add(1, Ordering::Relaxed);
        acpi::Handle(index)
    }

    fn acquire(&self, mutex: acpi::Handle, timeout: u16) -> Result<(), acpi::aml::AmlError> {
        let slot = AML_MUTEXES.get(mutex.0 as usize).ok_or(acpi::aml::AmlError::MutexAcquireTimeout)?;
        // ACPI timeouts are in milliseconds; 0xffff means wait forever.
        let mut waited_ms = 0u32;
        while slot.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            if timeout != 0xffff && waited_ms >= u32::from(timeout) {
                return Err(acpi::aml::AmlError::MutexAcquireTimeout);
            }
            super::pit::delay_us(1000);
            waited_ms += 1;
        }
        Ok(())
    }

    fn release(&self, mutex: acpi::Handle) {
        if let Some(slot) = AML_MUTEXES.get(mutex.0 as usize) {
            slot.store(false, Ordering::Release);
        }
    }
}

/// AML mutexes (ACPI 6.5 §19.6.87): a fixed table of flags. A handle past
/// the table cannot be acquired, which AML sees as a timeout.
static AML_MUTEXES: [AtomicBool; 64] = [const { AtomicBool::new(false) }; 64];
static NEXT_MUTEX: AtomicU32 = AtomicU32::new(0);

fn read_phys<T: Copy>(address: usize) -> T {
    match virt_of(address, core::mem::size_of::<T>()) {
        // SAFETY: `virt_of` returned a mapping of at least size_of::<T>()
        // bytes at `address`; firmware registers are read with one access.
        Some(v) => unsafe { core::ptr::read_volatile(v as *const T) },
        None => panic!("ACPI read of unmappable physical address {address:#x}"),
    }
}

fn write_phys<T: Copy>(address: usize, value: T) {
    match virt_of(address, core::mem::size_of::<T>()) {
        // SAFETY: as for `read_phys`.
        Some(v) => unsafe { core::ptr::write_volatile(v as *mut T, value) },
        None => panic!("ACPI write to unmappable physical address {address:#x}"),
    }
}

pub const MAX_CPUS: usize = 64;
pub const MAX_IOAPICS: usize = 8;

#[derive(Clone, Copy, Debug)]
pub struct Cpu {
    pub apic_id: u32,
    pub is_bsp: bool,
    pub usable: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct IoApic {
    pub id: u8,
    pub address: u32,
    pub gsi_base: u32,
}

/// What the MADT says about this machine.
/// How an ISA IRQ reaches the I/O APIC, when firmware says it differs
/// from the identity mapping (edge-triggered, active high).
#[derive(Clone, Copy, Debug)]
pub struct IsaOverride {
    pub isa_irq: u8,
    pub gsi: u32,
    pub active_low: bool,
    pub level: bool,
}

pub const MAX_OVERRIDES: usize = 16;

pub struct Madt {
    pub local_apic_address: u64,
    pub overrides: heapless::Vec<IsaOverride, MAX_OVERRIDES>,
    pub cpus: heapless::Vec<Cpu, MAX_CPUS>,
    pub io_apics: heapless::Vec<IoApic, MAX_IOAPICS>,
    pub legacy_pics: bool,
    pub oem_id: heapless::String<8>,
    pub revision: u8,
}

/// Parses the tables at `rsdp` and returns the MADT's contents.
pub fn discover(rsdp: u64) -> Result<Madt, acpi::AcpiError> {
    // SAFETY: `rsdp` was found by the loader (checksummed) or handed over by
    // the boot loader, and lies in memory the handler can map.
    let tables = unsafe { AcpiTables::from_rsdp(KernelAcpiHandler, rsdp as usize)? };
    let revision = tables.rsdp_revision;
    let (model, processors) = InterruptModel::new(&tables)?;
    let InterruptModel::Apic(apic) = model else {
        return Err(acpi::AcpiError::TableNotFound(acpi::sdt::Signature::MADT));
    };
    let mut madt = Madt {
        local_apic_address: apic.local_apic_address,
        cpus: heapless::Vec::new(),
        io_apics: heapless::Vec::new(),
        legacy_pics: apic.also_has_legacy_pics,
        overrides: heapless::Vec::new(),
        oem_id: heapless::String::new(),
        revision,
    };
    for o in apic.interrupt_source_overrides.iter() {
        let _ = madt.overrides.push(IsaOverride {
            isa_irq: o.isa_source,
            gsi: o.global_system_interrupt,
            active_low: matches!(o.polarity, acpi::platform::interrupt::Polarity::ActiveLow),
            level: matches!(o.trigger_mode, acpi::platform::interrupt::TriggerMode::Level),
        });
    }
    for io in apic.io_apics.iter() {
        let _ =
            madt.io_apics.push(IoApic { id: io.id, address: io.address, gsi_base: io.global_system_interrupt_base });
    }
    if let Some(info) = processors {
        let all = core::iter::once(&info.boot_processor).chain(info.application_processors.iter());
        for p in all {
            let usable = !matches!(p.state, ProcessorState::Disabled);
            let _ = madt.cpus.push(Cpu { apic_id: p.local_apic_id, is_bsp: !p.is_ap, usable });
        }
    }
    if let Some((_, header)) = tables.table_headers().next() {
        let _ = madt.oem_id.push_str(header.oem_id().unwrap_or("?"));
    }
    Ok(madt)
}
