//! The boot images `build.rs` produced for this build of the runner.
//!
//! The runner builds nothing itself: cargo ran `build.rs`, which built the
//! loader and the microkernel and told us where they are.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// The loader: a Multiboot1 + Multiboot2 ELF32 file, usable both by
/// `qemu -kernel` and by GRUB's `multiboot2` command.
pub fn loader_elf32() -> &'static Path {
    Path::new(env!("TESSERA_LOADER_ELF32"))
}

/// The loader's ELF64, with its debug information (the ELF32 is made from
/// it; its symbols for `--gdb`).
pub fn loader_elf64() -> PathBuf {
    loader_elf32().with_extension("")
}

/// The microkernel ELF64, passed as the first boot module with the module
/// command line `microkernel`.
pub fn kernel_elf() -> &'static Path {
    Path::new(env!("TESSERA_KERNEL_ELF"))
}

/// The boot image the root task starts from: the default appliance's
/// (`system.toml`, packed by `build.rs`), or the one [`use_manifest`] made
/// last (`--manifest`, `--guest`; `bench` boots several systems).
pub fn bootfs() -> PathBuf {
    let chosen = CUSTOM_BOOTFS.read().unwrap_or_else(|e| e.into_inner()).clone();
    chosen.unwrap_or_else(|| PathBuf::from(env!("TESSERA_BOOTFS")))
}

static CUSTOM_BOOTFS: RwLock<Option<PathBuf>> = RwLock::new(None);

/// Where `build.rs` put the task binaries a manifest can name.
pub fn task_dir() -> &'static Path {
    Path::new(env!("TESSERA_TASK_DIR"))
}

/// Validates `manifest`, packs it with the built tasks into `out_dir`, and
/// makes that the boot image of this run. Returns the image and the guest
/// RAM of all the manifest's partitions, in bytes (see [`machine_mib`]).
pub fn use_manifest(manifest: &Path, out_dir: &Path) -> Result<(PathBuf, u64), String> {
    let parsed = tessera_manifest::load(manifest).map_err(|errors| format!("{}:\n{errors}", manifest.display()))?;
    let ram = parsed.partitions.iter().map(|p| p.memory).sum();
    let image = tessera_manifest::build_image(&parsed, task_dir())
        .map_err(|errors| format!("{}: cannot build the boot image:\n{errors}", manifest.display()))?;
    std::fs::create_dir_all(out_dir).map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let path = out_dir.join("bootfs.img");
    std::fs::write(&path, image).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    *CUSTOM_BOOTFS.write().unwrap_or_else(|e| e.into_inner()) = Some(path.clone());
    Ok((path, ram))
}

/// The default appliance's manifest (`system.toml` in the repository).
pub fn default_manifest() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/system.toml"))
}

/// A guest to boot as partition [`GUEST_PARTITION`] (`--guest`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guest {
    pub image: PathBuf,
    pub modules: Vec<PathBuf>,
    pub cmdline: String,
    pub memory_mib: u32,
    pub vcpus: u8,
    /// The partition's enlightenment profile (empty: the manifest default).
    pub enlightenments: String,
}

/// Memory the system needs beside a guest partition's RAM (kernel, boot
/// image, tasks, page tables).
pub const SYSTEM_MIB: u32 = 192;

/// The smallest machine (MiB) that holds partitions with `ram` bytes of
/// guest RAM in all, and the system: the RAM costs its size, since the
/// kernel builds a memory object from free blocks of any size (runs,
/// `abi::limits::MEMORY_RUNS`), not one contiguous block.
pub fn machine_mib(ram: u64) -> u32 {
    u32::try_from(ram.div_ceil(1 << 20)).unwrap_or(u32::MAX).saturating_add(SYSTEM_MIB)
}

/// Name of the partition `--guest` adds.
pub const GUEST_PARTITION: &str = "guest";
/// The task that runs it.
pub const GUEST_VID: &str = "vid";

/// Writes `out_dir/guest.toml`: the manifest `base` plus partition
/// [`GUEST_PARTITION`] run by [`GUEST_VID`] (created by the partition
/// manager), with absolute file paths; then uses it like `--manifest`. Returns
/// the generated manifest, the boot image and the guest RAM of all its
/// partitions, in bytes.
pub fn use_guest(base: &Path, guest: &Guest, out_dir: &Path) -> Result<(PathBuf, PathBuf, u64), String> {
    let absolute = |p: &Path| std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()));
    let spec = tessera_manifest::PartitionSpec {
        name: GUEST_PARTITION.into(),
        image: absolute(&guest.image)?,
        modules: guest.modules.iter().map(|m| absolute(m)).collect::<Result<_, _>>()?,
        cmdline: guest.cmdline.clone(),
        memory: u64::from(guest.memory_mib) << 20,
        vcpus: guest.vcpus,
        vid: GUEST_VID.into(),
        enlightenments: guest.enlightenments.clone(),
    };
    let text = std::fs::read_to_string(base).map_err(|e| format!("cannot read {}: {e}", base.display()))?;
    let origin = base.display().to_string();
    let generated = tessera_manifest::with_partition(&text, &origin, &spec).map_err(|e| format!("{origin}:\n{e}"))?;
    std::fs::create_dir_all(out_dir).map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let manifest = out_dir.join("guest.toml");
    let header = format!("# Generated by `tessera --guest` from {origin}.\n\n");
    std::fs::write(&manifest, header + &generated).map_err(|e| format!("cannot write {}: {e}", manifest.display()))?;
    let (image, ram) = use_manifest(&manifest, out_dir)?;
    Ok((manifest, image, ram))
}

/// Check that both images exist (a `cargo clean` of the image directory
/// after this binary was built would remove them).
pub fn check() -> Result<(), String> {
    let bootfs = bootfs();
    for (what, path) in [("loader", loader_elf32()), ("microkernel", kernel_elf()), ("boot image", bootfs.as_path())] {
        if !path.is_file() {
            return Err(format!(
                "the {what} image {} does not exist; rebuild with `cargo build` (build.rs produces it)",
                path.display()
            ));
        }
    }
    Ok(())
}
