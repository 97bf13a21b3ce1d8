//! The arch layer: every `unsafe` block of the kernel lives below here, each
//! with the reason it is sound. The rest of the kernel calls safe wrappers.

pub mod acpi;
pub mod addrspace;
pub mod apic;
pub mod cpu;
pub mod entry;
pub mod fpu;
pub mod gdt;
pub mod heap;
pub mod idt;
pub mod io;
pub mod ioapic;
pub mod mce;
pub mod memory;
pub mod nmi;
pub mod percpu;
pub mod pit;
pub mod speculation;
pub mod svm;
pub mod virt;
pub mod vm;
pub mod vmx;
