//! System tools the emulators need, and installing them with apt-get.
//!
//! Each [`Requirement`] names a command or file and the Debian package that
//! provides it. [`ensure`] checks them; when some are missing and we are
//! root with `apt-get` available it runs `apt-get update` and
//! `apt-get install -y` for exactly the missing packages, otherwise it
//! returns the command the user should run.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::ui;

/// What must be present.
#[derive(Clone, Copy, Debug)]
pub enum Check {
    /// An executable found on `PATH`.
    Command(&'static str),
    /// Any one of these files or directories.
    AnyPath(&'static [&'static str]),
}

/// One thing an emulator needs and the Debian package providing it.
#[derive(Clone, Copy, Debug)]
pub struct Requirement {
    pub check: Check,
    pub package: &'static str,
}

const fn cmd(name: &'static str, package: &'static str) -> Requirement {
    Requirement { check: Check::Command(name), package }
}

const fn path(paths: &'static [&'static str], package: &'static str) -> Requirement {
    Requirement { check: Check::AnyPath(paths), package }
}

/// QEMU with TCG (AMD SVM + NPT is emulated).
pub const QEMU: &[Requirement] = &[cmd("qemu-system-x86_64", "qemu-system-x86")];

/// Building the fuzz targets: libFuzzer is C++, compiled by `libfuzzer-sys`.
pub const FUZZ: &[Requirement] = &[cmd("g++", "g++")];

/// Building a GRUB rescue ISO (BIOS; EFI is added when available).
pub const ISO: &[Requirement] = &[
    cmd("grub-mkrescue", "grub-common"),
    path(&["/usr/lib/grub/i386-pc"], "grub-pc-bin"),
    cmd("xorriso", "xorriso"),
    cmd("mformat", "mtools"),
];

/// GRUB's x86-64 UEFI modules: optional, makes the ISO boot on UEFI machines.
pub const ISO_EFI: &[Requirement] = &[path(&["/usr/lib/grub/x86_64-efi"], "grub-efi-amd64-bin")];

/// OVMF, the UEFI firmware for QEMU (`--firmware uefi`; the ISO needs
/// [`ISO`] and [`ISO_EFI`] too).
pub const OVMF: &[Requirement] = &[path(OVMF_PATHS, "ovmf")];

/// Where Debian's `ovmf` package puts a combined code+variables image that
/// QEMU's `-bios` accepts (the second path is a symlink in Debian 12).
pub const OVMF_PATHS: &[&str] = &["/usr/share/ovmf/OVMF.fd", "/usr/share/qemu/OVMF.fd"];

/// Bochs itself, its BIOS and VGA BIOS (the ISO needs [`ISO`] too).
pub const BOCHS: &[Requirement] = &[
    cmd("bochs", "bochs"),
    path(&["/usr/share/bochs/BIOS-bochs-latest"], "bochsbios"),
    path(VGABIOS_PATHS, "vgabios"),
];

/// Where Debian's `vgabios` package puts the LGPL VGA BIOS Bochs uses.
pub const VGABIOS_PATHS: &[&str] = &["/usr/share/bochs/VGABIOS-lgpl-latest", "/usr/share/vgabios/vgabios.bin"];

/// Find an executable on `PATH`.
pub fn find_command(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

impl Requirement {
    pub fn is_met(&self) -> bool {
        match self.check {
            Check::Command(name) => find_command(name).is_some(),
            Check::AnyPath(paths) => paths.iter().any(|p| Path::new(p).exists()),
        }
    }

    pub fn describe(&self) -> String {
        match self.check {
            Check::Command(name) => format!("command `{name}`"),
            Check::AnyPath(paths) => paths.join(" or "),
        }
    }
}

/// The packages (deduplicated, in order) of the requirements not met.
pub fn missing_packages(groups: &[&[Requirement]]) -> Vec<&'static str> {
    let mut pkgs: Vec<&'static str> = Vec::new();
    for req in groups.iter().flat_map(|g| g.iter()) {
        if !req.is_met() && !pkgs.contains(&req.package) {
            pkgs.push(req.package);
        }
    }
    pkgs
}

/// Why [`ensure`] failed.
#[derive(Debug)]
pub struct DepsError {
    pub message: String,
}

/// The shell command a user should run to install `pkgs`.
pub fn install_hint(pkgs: &[&str]) -> String {
    let sudo = if is_root() { "" } else { "sudo " };
    format!("{sudo}apt-get update && {sudo}apt-get install -y --no-install-recommends {}", pkgs.join(" "))
}

/// Make sure every requirement in `groups` is met, installing missing
/// packages with apt-get when we are root. `purpose` says what they are for.
pub fn ensure(groups: &[&[Requirement]], purpose: &str) -> Result<(), DepsError> {
    if missing_packages(groups).is_empty() {
        return Ok(());
    }
    // Parallel runners (e.g. tests) must not race apt-get: serialise on a
    // lock file, then look again.
    let _lock = lock_file();
    let missing = missing_packages(groups);
    if missing.is_empty() {
        return Ok(());
    }
    let details: Vec<String> = groups
        .iter()
        .flat_map(|g| g.iter())
        .filter(|r| !r.is_met())
        .map(|r| format!("{} (package {})", r.describe(), r.package))
        .collect();
    ui::note(format!("{purpose} needs tools that are missing: {}", details.join(", ")));

    let apt = find_command("apt-get");
    if !is_root() || apt.is_none() {
        let why = if apt.is_none() { "apt-get is not available" } else { "not running as root" };
        return Err(DepsError {
            message: format!(
                "cannot install them automatically ({why}); install them with:\n    {}",
                install_hint(&missing)
            ),
        });
    }

    ui::note("running: apt-get update");
    run_apt(&["update"])?;
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(missing.iter().copied());
    ui::note(format!("running: apt-get {}", args.join(" ")));
    run_apt(&args)?;

    let still = missing_packages(groups);
    if !still.is_empty() {
        return Err(DepsError {
            message: format!(
                "still missing after apt-get install: packages {}; try:\n    {}",
                still.join(" "),
                install_hint(&still)
            ),
        });
    }
    ui::note("system packages installed");
    Ok(())
}

fn run_apt(args: &[&str]) -> Result<(), DepsError> {
    let status = Command::new("apt-get")
        // Wait for a concurrent apt/dpkg instead of failing on its lock.
        .args(["-o", "DPkg::Lock::Timeout=600"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .map_err(|e| DepsError { message: format!("cannot run apt-get: {e}") })?;
    if status.success() {
        Ok(())
    } else {
        Err(DepsError { message: format!("`apt-get {}` failed ({status})", args.join(" ")) })
    }
}

/// Whether the effective user is root (Linux: from /proc/self/status).
pub fn is_root() -> bool {
    if let Ok(status) = fs::read_to_string("/proc/self/status")
        && let Some(line) = status.lines().find(|l| l.starts_with("Uid:"))
    {
        // Uid: real effective saved fs
        return line.split_whitespace().nth(2) == Some("0");
    }
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// An exclusive machine-wide lock (`$TMPDIR/tessera-deps.lock`), held while
/// installing, so parallel runners (tests) do not race apt-get.
fn lock_file() -> Option<File> {
    let file = File::create(std::env::temp_dir().join("tessera-deps.lock")).ok()?;
    file.lock().ok()?;
    Some(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_on_path() {
        assert!(find_command("sh").is_some());
        assert!(find_command("surely-not-a-command-tessera").is_none());
    }

    #[test]
    fn missing_packages_are_deduplicated() {
        const FAKE: &[Requirement] =
            &[cmd("surely-not-a-command-tessera", "pkg-a"), path(&["/surely/not/a/path"], "pkg-a"), cmd("sh", "pkg-b")];
        assert_eq!(missing_packages(&[FAKE]), ["pkg-a"]);
    }
}
