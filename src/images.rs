//! The boot images `build.rs` produced for this build of the runner.
//!
//! The runner builds nothing itself: cargo ran `build.rs`, which built the
//! loader and the microkernel and told us where they are.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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

/// The boot image the root task starts from: the default appliance's
/// (`system.toml`, packed by `build.rs`), or one made from `--manifest`.
pub fn bootfs() -> &'static Path {
    CUSTOM_BOOTFS.get().map_or(Path::new(env!("TESSERA_BOOTFS")), PathBuf::as_path)
}

static CUSTOM_BOOTFS: OnceLock<PathBuf> = OnceLock::new();

/// Where `build.rs` put the task binaries a manifest can name.
pub fn task_dir() -> &'static Path {
    Path::new(env!("TESSERA_TASK_DIR"))
}

/// Validates `manifest`, packs it with the built tasks into `out_dir`, and
/// makes that the boot image of this run.
pub fn use_manifest(manifest: &Path, out_dir: &Path) -> Result<PathBuf, String> {
    let parsed = tessera_manifest::load(manifest).map_err(|errors| format!("{}:\n{errors}", manifest.display()))?;
    let image = tessera_manifest::build_image(&parsed, task_dir())
        .map_err(|errors| format!("{}: cannot build the boot image:\n{errors}", manifest.display()))?;
    std::fs::create_dir_all(out_dir).map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let path = out_dir.join("bootfs.img");
    std::fs::write(&path, image).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    CUSTOM_BOOTFS.set(path.clone()).map_err(|_| "the boot image was chosen twice".to_string())?;
    Ok(path)
}

/// Check that both images exist (a `cargo clean` of the image directory
/// after this binary was built would remove them).
pub fn check() -> Result<(), String> {
    for (what, path) in [("loader", loader_elf32()), ("microkernel", kernel_elf()), ("boot image", bootfs())] {
        if !path.is_file() {
            return Err(format!(
                "the {what} image {} does not exist; rebuild with `cargo build` (build.rs produces it)",
                path.display()
            ));
        }
    }
    Ok(())
}
