//! The Tessera loader, entered by a Multiboot v1 or v2 boot loader in 32-bit
//! protected mode. It enters long mode on an identity map of the low 4 GiB,
//! reads the boot information, loads the microkernel ELF from the first boot
//! module into a fresh address space (W^X, NX direct map, guarded stack) and
//! jumps to it with one typed [`bootinfo::BootInfo`].

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("tessera-loader runs only on bare metal (x86_64-unknown-none); the runner boots it.");
}

#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
mod entry;
#[cfg(target_os = "none")]
mod memory;
