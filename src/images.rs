//! The boot images `build.rs` produced for this build of the runner.
//!
//! The runner builds nothing itself: cargo ran `build.rs`, which built the
//! loader and the microkernel and told us where they are.

use std::path::Path;

/// The loader: a Multiboot1 + Multiboot2 ELF32 file, usable both by
/// `qemu -kernel` and by GRUB's `multiboot2` command.
pub fn loader_elf32() -> &'static Path {
    Path::new(env!("TESSERA_LOADER_ELF32"))
}

/// The microkernel ELF64, passed as the first boot module with the module
/// command line `microkernel`.
pub fn kernel_elf() -> &'static Path {
    Path::new(env!("TESSERA_KERNEL_ELF"))
}

/// Check that both images exist (a `cargo clean` of the image directory
/// after this binary was built would remove them).
pub fn check() -> Result<(), String> {
    for (what, path) in [("loader", loader_elf32()), ("microkernel", kernel_elf())] {
        if !path.is_file() {
            return Err(format!(
                "the {what} image {} does not exist; rebuild with `cargo build` (build.rs produces it)",
                path.display()
            ));
        }
    }
    Ok(())
}
