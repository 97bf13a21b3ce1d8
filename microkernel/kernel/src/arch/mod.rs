//! The arch layer: every `unsafe` block of the kernel lives below here
//! (but one in `trap.rs`), each with the reason it is sound. The kernel
//! crate denies `unsafe_code`; it is allowed here module by module, only
//! where a module needs it. The rest of the kernel calls safe wrappers.

#[allow(unsafe_code)]
pub mod acpi;
#[allow(unsafe_code)]
pub mod addrspace;
#[allow(unsafe_code)]
pub mod apic;
#[allow(unsafe_code)]
pub mod cpu;
#[allow(unsafe_code)]
pub mod dr;
#[allow(unsafe_code)]
pub mod entry;
#[allow(unsafe_code)]
pub mod fpu;
#[allow(unsafe_code)]
pub mod gdt;
#[allow(unsafe_code)]
pub mod heap;
#[allow(unsafe_code)]
pub mod idt;
#[allow(unsafe_code)]
pub mod io;
#[allow(unsafe_code)]
pub mod ioapic;
pub mod ipi;
#[allow(unsafe_code)]
pub mod lockup;
#[allow(unsafe_code)]
pub mod mce;
#[allow(unsafe_code)]
pub mod memory;
#[allow(unsafe_code)]
pub mod nmi;
#[allow(unsafe_code)]
pub mod percpu;
#[allow(unsafe_code)]
pub mod pit;
#[allow(unsafe_code)]
pub mod rtc;
#[allow(unsafe_code)]
pub mod smp;
#[allow(unsafe_code)]
pub mod speculation;
#[allow(unsafe_code)]
pub mod start;
#[allow(unsafe_code)]
pub mod svm;
#[allow(unsafe_code)]
pub mod virt;
#[allow(unsafe_code)]
pub mod vm;
// `unsafe` is allowed in the submodules that need it (`vmx/mod.rs`).
pub mod vmx;
