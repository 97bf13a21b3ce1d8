//! The Linux guest: Debian's kernel and a busybox initramfs, fetched with
//! apt and cached under `<target>/linux/`, and a direct boot of them under
//! QEMU TCG, the baseline a Tessera boot of the same guest is compared with.
//!
//! [`fetch`] resolves the kernel package the `linux-image-amd64`
//! metapackage depends on (`apt-cache depends`), downloads both and
//! `busybox-static` with `apt-get download` (running `apt-get update` once
//! if apt knows nothing or a download fails), extracts `/boot/vmlinuz-*` and
//! `/bin/busybox` with `dpkg-deb -x`, and builds a gzip'd newc initramfs
//! ([`initramfs_cpio`]). Every file is keyed by its package's version, so a
//! second run downloads and builds nothing; concurrent runs take turns on
//! a lock file in the cache.
//!
//! [`direct`] boots them with `qemu-system-x86_64 -kernel -initrd` and
//! drives the serial console through [`interact`]: the init script's
//! [`MARKER`], the shell's [`PROMPT`], [`COMMAND`] whose output must be
//! [`EXPECTED`], then `poweroff -f`. [`tessera`] does the same with the
//! guest in a Tessera partition (`--guest linux`), typing through the VID's
//! COM1, and then waits for the VID's [`POWERED_OFF`] and the kernel's
//! [`HALTED_OK`].

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::boot::{self, BootError, BootOptions, Emulator, Firmware};
use crate::console::{Console, ConsoleOptions, ExpectError};
use crate::cpio::Archive;
use crate::progress::Progress;
use crate::{deps, images, qemu, ui, workdir};

/// The metapackage that names Debian's current kernel.
pub const KERNEL_METAPACKAGE: &str = "linux-image-amd64";
pub const BUSYBOX_PACKAGE: &str = "busybox-static";
/// Bump when [`init_script`] or the archive's layout changes.
pub const INITRAMFS_REVISION: u32 = 4;

/// Modules of the kernel package put into the initramfs (under
/// `/lib/modules/`) and loaded by `/init` in this order: Linux's VMBus
/// driver, which connects to the partition's VMBus host. Each module's
/// `depends=` (its `.modinfo`) must name only modules before it
/// ([`module_depends`]); `hv_vmbus`'s names none.
pub const MODULES: &[&str] = &["kernel/drivers/hv/hv_vmbus.ko"];

/// The line the init script prints once proc, sys and devtmpfs are mounted.
pub const MARKER: &str = "tessera-guest: busybox init up";
/// The shell's prompt (set by the init script).
pub const PROMPT: &str = "tessera-sh# ";
/// A command typed at the prompt, and what its output must contain (the
/// arithmetic happens in the guest, so the echoed input cannot match).
pub const COMMAND: &str = "echo tessera-$((6*7))";
pub const EXPECTED: &str = "tessera-42";
/// Typed after [`COMMAND`]: how many processors the guest brought up.
pub const NPROC_COMMAND: &str = "echo vps-$(nproc)";

/// Typed after [`NPROC_COMMAND`]: the clock event device of the boot CPU
/// (under Tessera, the synthetic timer: [`HYPERV_CLOCKEVENT`]).
pub const CLOCKEVENT_COMMAND: &str = "cat /sys/devices/system/clockevents/clockevent0/current_device";
/// The name Linux 6.1 gives its STIMER0 clock event device
/// (`drivers/clocksource/hyperv_timer.c`).
pub const HYPERV_CLOCKEVENT: &str = "Hyper-V clockevent";

/// What [`NPROC_COMMAND`] prints in a guest of `vps` processors.
pub fn nproc_answer(vps: u8) -> String {
    format!("vps-{vps}")
}
/// Powers the guest off without init's help (QEMU then exits).
pub const POWEROFF: &str = "poweroff -f";
/// Resets the machine without init's help: under Tessera the partition
/// restarts ([`RESTARTED`]) and Linux boots again.
pub const REBOOT: &str = "reboot -f";
/// What the VID prints (after the reset's source) when the guest's
/// partition restarts for the first time.
pub const RESTARTED: &str = "; restarting (1)";

/// The kernel command line of a boot (plus what the user adds).
pub const CMDLINE: &str = "console=ttyS0 panic=-1";
/// On the kernel command line: /init runs [`COMMAND`] itself (echoing it
/// after [`PROMPT`]) and powers off, for consoles nobody can type at
/// (Tessera's Bochs runs have an output-only COM1).
pub const SELFTEST: &str = "tessera.selftest";

/// Files of the fetched guest.
#[derive(Clone, Debug)]
pub struct Guest {
    /// The bzImage.
    pub kernel: PathBuf,
    /// The gzip'd newc cpio.
    pub initramfs: PathBuf,
    /// e.g. `linux-image-6.1.0-56-amd64` at `6.1.192-2`.
    pub kernel_package: String,
    pub kernel_version: String,
    pub busybox_version: String,
}

/// `<target>/linux`, where everything is cached.
pub fn cache_dir() -> PathBuf {
    workdir::target_dir().unwrap_or_else(|| PathBuf::from("target")).join("linux")
}

/// A module's file name in the initramfs (`/lib/modules/<name>`).
fn module_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The init script: mounts, loads [`MODULES`], the marker, then a shell on
/// the console.
pub fn init_script() -> String {
    let modules = MODULES.iter().map(|m| module_name(m)).collect::<Vec<_>>().join(" ");
    format!(
        "#!/bin/sh\n\
         /bin/busybox --install -s\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         mount -t devtmpfs devtmpfs /dev\n\
         for m in {modules}; do insmod /lib/modules/$m || echo \"tessera-guest: insmod $m failed\"; done\n\
         echo \"{MARKER} (Linux $(uname -r))\"\n\
         export PS1='{PROMPT}' HOME=/root\n\
         cd /root\n\
         if grep -q {SELFTEST} /proc/cmdline; then\n\
         echo '{PROMPT}{COMMAND}'\n\
         sh -c '{COMMAND}'\n\
         echo '{PROMPT}{NPROC_COMMAND}'\n\
         sh -c '{NPROC_COMMAND}'\n\
         echo '{PROMPT}{CLOCKEVENT_COMMAND}'\n\
         {CLOCKEVENT_COMMAND}\n\
         {POWEROFF}\n\
         fi\n\
         exec setsid cttyhack sh\n"
    )
}

/// The initramfs: `/bin/busybox`, `/bin/sh` linking to it, `/init`, the
/// mount points, `/dev/console` and `modules` (file name, contents) in
/// `/lib/modules/`, as a newc cpio.
pub fn initramfs_cpio(busybox: &[u8], modules: &[(&str, &[u8])]) -> Vec<u8> {
    let mut a = Archive::new();
    for dir in
        ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "root", "tmp", "etc", "lib", "lib/modules"]
    {
        a.dir(dir, 0o755);
    }
    for (name, bytes) in modules {
        a.file(&format!("lib/modules/{name}"), 0o644, bytes);
    }
    a.char_device("dev/console", 0o600, 5, 1);
    a.file("bin/busybox", 0o755, busybox);
    a.symlink("bin/sh", "busybox");
    a.file("init", 0o755, init_script().as_bytes());
    a.finish()
}

/// A failure with what the user should do about it.
#[derive(Debug)]
pub struct FetchError {
    pub message: String,
    /// A required tool is missing (exit status 2) rather than a failure.
    pub missing_tool: bool,
}

fn fail(message: impl Into<String>) -> FetchError {
    FetchError { message: message.into(), missing_tool: false }
}

/// Runs a command, returning its stdout, or its stderr as the error.
fn output(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("cannot run {}: {e}", ui::shell_line(cmd)))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed ({}): {}",
            ui::shell_line(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn apt_cache(args: &[&str]) -> Result<String, String> {
    output(Command::new("apt-cache").args(args))
}

/// The package `linux-image-amd64` depends on.
fn kernel_package() -> Result<String, String> {
    let text = apt_cache(&["depends", KERNEL_METAPACKAGE])?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_owned)
        .ok_or_else(|| format!("`apt-cache depends {KERNEL_METAPACKAGE}` names no linux-image-* package"))
}

/// The versions `apt-get download` would fetch (`apt-cache policy`'s
/// candidates), in the order of `packages`.
fn candidate_versions(packages: &[&str]) -> Result<Vec<String>, String> {
    let mut args = vec!["policy"];
    args.extend_from_slice(packages);
    let text = apt_cache(&args)?;
    let candidates = parse_policy(&text);
    packages
        .iter()
        .map(|p| {
            candidates
                .iter()
                .find(|(name, _)| name == p)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| format!("apt has no candidate version of {p}"))
        })
        .collect()
}

/// (package, candidate) pairs from `apt-cache policy` output.
fn parse_policy(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut package = None;
    for line in text.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            package = Some(line.trim_end_matches(':').to_owned());
        } else if let (Some(p), Some(v)) = (&package, line.trim().strip_prefix("Candidate:")) {
            let v = v.trim();
            if v != "(none)" {
                out.push((p.clone(), v.to_owned()));
            }
        }
    }
    out
}

/// A version as apt spells it in file names (`:` as `%3a`).
fn file_version(version: &str) -> String {
    version.replace(':', "%3a")
}

fn apt_update() -> Result<(), FetchError> {
    if !deps::is_root() {
        return Err(fail(
            "apt's package lists are missing or stale and only root can refresh them; run:\n    \
             sudo apt-get update\nthen run this again",
        ));
    }
    ui::note("running: apt-get update");
    let mut cmd = Command::new("apt-get");
    cmd.args(["-o", "DPkg::Lock::Timeout=600", "update"]);
    // In the runner's own work directory, not a shared /tmp path another
    // user could have planted a link at (apt-get runs as root).
    let dir = crate::workdir::tessera_dir();
    fs::create_dir_all(&dir).map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    let log = dir.join(crate::workdir::unique_name("apt-update") + ".log");
    let status = crate::progress::run_logged(&mut cmd, "apt-get update", &log, String::new).map_err(fail)?;
    let text = fs::read_to_string(&log).unwrap_or_default();
    let _ = fs::remove_file(&log);
    if !status.success() {
        return Err(fail(format!("`{}` failed ({status}): {}", ui::shell_line(&cmd), text.trim())));
    }
    Ok(())
}

/// The kernel package and the versions of it, the metapackage and busybox.
struct Resolved {
    kernel: String,
    kernel_version: String,
    meta_version: String,
    busybox_version: String,
}

fn resolve() -> Result<Resolved, String> {
    let kernel = kernel_package()?;
    let mut versions = candidate_versions(&[&kernel, KERNEL_METAPACKAGE, BUSYBOX_PACKAGE])?.into_iter();
    let mut next = || versions.next().unwrap_or_default();
    Ok(Resolved { kernel_version: next(), meta_version: next(), busybox_version: next(), kernel })
}

/// The cached .deb of `package` at `version`, if present.
fn cached_deb(debs: &Path, package: &str, version: &str) -> Option<PathBuf> {
    let prefix = format!("{package}_{}_", file_version(version));
    fs::read_dir(debs).ok()?.flatten().map(|e| e.path()).find(|p| {
        p.file_name().is_some_and(|n| {
            let n = n.to_string_lossy();
            n.starts_with(&prefix) && n.ends_with(".deb")
        })
    })
}

/// Downloads the packages not yet in `debs`: (package, version) pairs.
fn download(debs: &Path, wanted: &[(&str, &str)]) -> Result<(), String> {
    let missing: Vec<String> =
        wanted.iter().filter(|(p, v)| cached_deb(debs, p, v).is_none()).map(|(p, v)| format!("{p}={v}")).collect();
    if missing.is_empty() {
        return Ok(());
    }
    ui::note(format!("downloading {} into {}", missing.join(" "), debs.display()));
    // The sizes apt will fetch, for the progress (0 if apt does not say).
    let total: u64 = missing
        .iter()
        .filter_map(|spec| apt_cache(&["show", "--no-all-versions", spec]).ok())
        .map(|t| deb_size(&t))
        .sum();
    let names: Vec<String> = wanted.iter().map(|(p, _)| format!("{p}_")).collect();
    let before = bytes_of_debs(debs, &names);
    let log_path = debs.join("apt-get-download.log");
    let log = fs::File::create(&log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let err = log.try_clone().map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let mut cmd = Command::new("apt-get");
    cmd.arg("download").args(&missing).current_dir(debs).stdin(Stdio::null()).stdout(log).stderr(err);
    let mut progress = Progress::new("downloading the Linux packages", Duration::from_secs(5));
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {}: {e}", ui::shell_line(&cmd)))?;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for apt-get: {e}")),
        }
        let got = bytes_of_debs(debs, &names).saturating_sub(before);
        if total > 0 {
            progress.update_fraction(got, total, crate::progress::bytes_of(got, total));
        } else {
            progress.update(format!("{:.1} MB", got as f64 / 1e6));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    progress.finish(None);
    if !status.success() {
        return Err(format!(
            "`{}` failed ({status}): {}",
            ui::shell_line(&cmd),
            fs::read_to_string(&log_path).unwrap_or_default().trim()
        ));
    }
    let _ = fs::remove_file(&log_path);
    Ok(())
}

/// The `Size:` of a package in `apt-cache show` output.
fn deb_size(show: &str) -> u64 {
    show.lines().find_map(|l| l.strip_prefix("Size:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Bytes in the files of `dir` (and its `partial/`) whose names start with
/// one of `prefixes`: what apt has downloaded of them so far.
fn bytes_of_debs(dir: &Path, prefixes: &[String]) -> u64 {
    [dir.to_path_buf(), dir.join("partial")]
        .iter()
        .filter_map(|d| fs::read_dir(d).ok())
        .flat_map(|entries| entries.flatten())
        .filter(|e| prefixes.iter().any(|p| e.file_name().to_string_lossy().starts_with(p.as_str())))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Extracts `pick(root)` from `deb` into `to`, through a scratch directory.
fn extract(deb: &Path, to: &Path, pick: impl Fn(&Path) -> Option<PathBuf>) -> Result<(), String> {
    let scratch = with_suffix(to, &format!(".extract-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    let result = (|| {
        output(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&scratch))?;
        let found = pick(&scratch).ok_or_else(|| format!("{} does not hold the expected file", deb.display()))?;
        let partial = with_suffix(to, ".partial");
        fs::copy(&found, &partial).map_err(|e| format!("cannot copy {}: {e}", found.display()))?;
        fs::rename(&partial, to).map_err(|e| format!("cannot write {}: {e}", to.display()))
    })();
    let _ = fs::remove_dir_all(&scratch);
    result
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

fn vmlinuz_in(root: &Path) -> Option<PathBuf> {
    let boot = root.join("boot");
    fs::read_dir(boot)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
}

/// Fetches (or finds cached) the kernel and builds (or finds) the initramfs.
/// RAM a Linux partition gets from `--guest linux`.
pub const PARTITION_MIB: u32 = 256;

/// `--guest linux`: the fetched kernel and initramfs, the serial console
/// command line, the Hyper-V enlightenments, and [`PARTITION_MIB`] of RAM,
/// unless the command line chose otherwise.
pub fn as_partition(fetched: &Guest, guest: &mut crate::images::Guest) {
    guest.image = fetched.kernel.clone();
    if guest.modules.is_empty() {
        guest.modules = vec![fetched.initramfs.clone()];
    }
    if guest.cmdline.is_empty() {
        guest.cmdline = CMDLINE.to_string();
    }
    if guest.enlightenments.is_empty() {
        guest.enlightenments = "hyperv".to_string();
    }
    guest.memory_mib = guest.memory_mib.max(PARTITION_MIB);
}

pub fn fetch() -> Result<Guest, FetchError> {
    for (tool, package) in [("apt-get", "apt"), ("apt-cache", "apt"), ("dpkg-deb", "dpkg")] {
        if deps::find_command(tool).is_none() {
            return Err(FetchError {
                message: format!(
                    "`{tool}` (package {package}) is missing: fetching the Linux guest needs a Debian or Ubuntu \
                     system with apt, as it downloads Debian's {KERNEL_METAPACKAGE} and {BUSYBOX_PACKAGE} packages"
                ),
                missing_tool: true,
            });
        }
    }
    let dir = cache_dir();
    let debs = dir.join("debs");
    fs::create_dir_all(&debs).map_err(|e| fail(format!("cannot create {}: {e}", debs.display())))?;
    // Parallel fetches (tests) take turns; the later ones find the cache filled.
    let lock = fs::File::create(dir.join(".lock")).and_then(|f| f.lock().map(|()| f));
    let _lock = lock.map_err(|e| fail(format!("cannot lock {}: {e}", dir.join(".lock").display())))?;

    ui::note(format!("resolving {KERNEL_METAPACKAGE} and {BUSYBOX_PACKAGE} with apt-cache"));
    let r = match resolve() {
        Ok(r) => r,
        Err(e) => {
            ui::note(format!("apt does not know the packages yet ({e})"));
            apt_update()?;
            resolve().map_err(fail)?
        }
    };
    ui::note(format!(
        "{KERNEL_METAPACKAGE} {} depends on {} {}; {BUSYBOX_PACKAGE} {}",
        r.meta_version, r.kernel, r.kernel_version, r.busybox_version
    ));
    let wanted = [
        (KERNEL_METAPACKAGE, r.meta_version.as_str()),
        (r.kernel.as_str(), r.kernel_version.as_str()),
        (BUSYBOX_PACKAGE, r.busybox_version.as_str()),
    ];
    if let Err(e) = download(&debs, &wanted) {
        ui::note(format!("download failed ({e}); refreshing apt's lists and trying again"));
        apt_update()?;
        download(&debs, &wanted).map_err(fail)?;
    }
    let deb = |p: &str, v: &str| {
        cached_deb(&debs, p, v).ok_or_else(|| fail(format!("apt-get download left no .deb for {p} {v}")))
    };

    let abi = r.kernel.strip_prefix("linux-image-").unwrap_or(&r.kernel);
    let kernel = dir.join(format!("vmlinuz-{abi}_{}", file_version(&r.kernel_version)));
    if kernel.is_file() {
        ui::note(format!("kernel cached: {}", kernel.display()));
    } else {
        ui::note(format!("extracting /boot/vmlinuz-{abi} with dpkg-deb -x"));
        extract(&deb(&r.kernel, &r.kernel_version)?, &kernel, vmlinuz_in).map_err(fail)?;
    }

    let busybox_key = file_version(&r.busybox_version);
    let kernel_key = format!("{abi}_{}", file_version(&r.kernel_version));
    let initramfs = dir.join(format!("initramfs-busybox_{busybox_key}-{kernel_key}-r{INITRAMFS_REVISION}.cpio.gz"));
    if initramfs.is_file() {
        ui::note(format!("initramfs cached: {}", initramfs.display()));
    } else {
        let busybox = dir.join(format!("busybox_{busybox_key}"));
        if !busybox.is_file() {
            ui::note("extracting /bin/busybox with dpkg-deb -x");
            let pick = |root: &Path| Some(root.join("bin/busybox")).filter(|p| p.is_file());
            extract(&deb(BUSYBOX_PACKAGE, &r.busybox_version)?, &busybox, pick).map_err(fail)?;
        }
        let modules_dir = dir.join(format!("modules-{kernel_key}"));
        let read = |p: &Path| fs::read(p).map_err(|e| fail(format!("cannot read {}: {e}", p.display())));
        let mut modules = Vec::new();
        for (i, &m) in MODULES.iter().enumerate() {
            let file = modules_dir.join(module_name(m));
            if !file.is_file() {
                ui::note(format!("extracting {m} with dpkg-deb -x"));
                fs::create_dir_all(&modules_dir)
                    .map_err(|e| fail(format!("cannot create {}: {e}", modules_dir.display())))?;
                let inside = format!("lib/modules/{abi}/{m}");
                let pick = |root: &Path| Some(root.join(&inside)).filter(|p| p.is_file());
                extract(&deb(&r.kernel, &r.kernel_version)?, &file, pick).map_err(fail)?;
            }
            let bytes = read(&file)?;
            let loaded: Vec<&str> = MODULES[..i].iter().map(|m| module_name(m).trim_end_matches(".ko")).collect();
            if let Some(missing) = module_depends(&bytes).into_iter().find(|d| !loaded.contains(&d.as_str())) {
                return Err(fail(format!("{m} depends on {missing}, which MODULES does not load before it")));
            }
            modules.push((module_name(m), bytes));
        }
        ui::note("building the initramfs (newc cpio, gzip)");
        let bytes = read(&busybox)?;
        let modules: Vec<(&str, &[u8])> = modules.iter().map(|(n, b)| (*n, b.as_slice())).collect();
        write_gzip(&initramfs, &initramfs_cpio(&bytes, &modules)).map_err(fail)?;
    }
    Ok(Guest {
        kernel,
        initramfs,
        kernel_package: r.kernel,
        kernel_version: r.kernel_version,
        busybox_version: r.busybox_version,
    })
}

/// The modules a kernel module's `.modinfo` says it `depends=` on (none
/// if it has no such entry).
pub fn module_depends(module: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0depends=";
    let Some(at) = module.windows(KEY.len()).position(|w| w == KEY) else { return Vec::new() };
    let value = &module[at + KEY.len()..];
    let value = &value[..value.iter().position(|&b| b == 0).unwrap_or(value.len())];
    String::from_utf8_lossy(value).split(',').filter(|d| !d.is_empty()).map(str::to_owned).collect()
}

fn write_gzip(path: &Path, data: &[u8]) -> Result<(), String> {
    let partial = with_suffix(path, ".partial");
    let write = || -> std::io::Result<()> {
        let file = fs::File::create(&partial)?;
        let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::best());
        gz.write_all(data)?;
        gz.finish()?.sync_all()?;
        fs::rename(&partial, path)
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Pause between the bytes typed at the guest's console (both boots, so
/// their timings compare): the VID polls its 16-byte COM1 FIFO every few
/// ticks and loses bytes sent at pipe speed.
pub const KEYSTROKE_GAP: Duration = Duration::from_millis(40);

/// What the VID prints when the guest powers off through ACPI S5.
pub const POWERED_OFF: &str = "guest powered off";

/// The kernel's last line when the system ends well ([`crate::run::HALT_MARKER`] 0).
pub const HALTED_OK: &str = "tessera: halted status=0";

/// The console side of a run, for [`direct`] and [`tessera`].
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// For the whole run, from starting the emulator to its exit.
    pub timeout: Duration,
    pub echo: bool,
    pub serial_log: PathBuf,
}

/// Options of [`direct`].
#[derive(Clone, Debug)]
pub struct DirectOptions {
    pub memory_mib: u32,
    /// Appended to [`CMDLINE`].
    pub append: String,
    pub run: RunOptions,
}

/// Options of [`tessera`].
#[derive(Clone, Debug)]
pub struct TesseraOptions {
    pub emulator: Emulator,
    /// The partition's virtual processors.
    pub vcpus: u8,
    /// CPUs of the emulated machine.
    pub smp: u32,
    /// Reboot once ([`REBOOT`]) before powering off; the second boot's
    /// shell must answer [`COMMAND`] too.
    pub reboot: bool,
    /// Extra kernel options (e.g. `trace=on`), space separated.
    pub cmdline: String,
    /// Extra arguments for QEMU (e.g. `-icount shift=0`).
    pub qemu_args: Vec<String>,
    pub run: RunOptions,
}

/// When each step of [`interact`] completed, from the start of the run.
#[derive(Clone, Copy, Debug)]
pub struct Timings {
    pub marker: Duration,
    pub prompt: Duration,
    pub command: Duration,
}

/// A finished run.
#[derive(Clone, Debug)]
pub struct Run {
    pub timings: Timings,
    /// When each line expected after [`POWEROFF`] appeared (none for a
    /// direct boot; [`POWERED_OFF`] and the halt marker under Tessera).
    pub closing: Vec<(&'static str, Duration)>,
    /// Wall time until the emulator exited.
    pub total: Duration,
}

/// How a run ended instead.
#[derive(Debug)]
pub enum DirectError {
    /// The guest did not get there: the expectation that failed.
    Expect(ExpectError),
    /// The emulator could not be started.
    Start(String),
    /// The Tessera boot could not be prepared (tools, images, run files).
    Boot(BootError),
}

/// Drives a booting guest's console: waits for [`MARKER`] and [`PROMPT`],
/// runs [`COMMAND`] and checks for [`EXPECTED`], runs [`NPROC_COMMAND`] and
/// checks that the guest counts `vps` processors, runs
/// [`CLOCKEVENT_COMMAND`] (its answer is the caller's to check), then
/// types [`POWEROFF`].
/// Everything must happen before `deadline`. Does not wait for the exit.
pub fn interact(console: &mut Console, deadline: Instant, vps: u8, reboot: bool) -> Result<Timings, ExpectError> {
    let left = || deadline.saturating_duration_since(Instant::now());
    if reboot {
        // The first boot answers, resets, and the second boot's shell
        // answers in its turn; then the usual session.
        console.expect(MARKER, left())?;
        console.expect(PROMPT, left())?;
        let _ = console.send_line(COMMAND);
        console.expect(EXPECTED, left())?;
        console.expect(PROMPT, left())?;
        let _ = console.send_line(REBOOT);
        console.expect(RESTARTED, left())?;
    }
    console.expect(MARKER, left())?;
    let marker = console.elapsed();
    console.expect(PROMPT, left())?;
    let prompt = console.elapsed();
    let _ = console.send_line(COMMAND);
    console.expect(EXPECTED, left())?;
    let command = console.elapsed();
    console.expect(PROMPT, left())?;
    let _ = console.send_line(NPROC_COMMAND);
    console.expect(&nproc_answer(vps), left())?;
    console.expect(PROMPT, left())?;
    let _ = console.send_line(CLOCKEVENT_COMMAND);
    console.expect(PROMPT, left())?;
    let _ = console.send_line(POWEROFF);
    Ok(Timings { marker, prompt, command })
}

/// The QEMU command line of a direct boot.
pub fn qemu_command(guest: &Guest, opts: &DirectOptions) -> Command {
    let mut append = CMDLINE.to_owned();
    if !opts.append.trim().is_empty() {
        append.push(' ');
        append.push_str(opts.append.trim());
    }
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-accel", "tcg", "-cpu", "qemu64"])
        .arg("-m")
        .arg(format!("{}M", opts.memory_mib))
        .args(["-nographic", "-no-reboot", "-serial", "stdio", "-monitor", "none", "-display", "none"])
        .args(["-nic", "none"])
        .arg("-kernel")
        .arg(&guest.kernel)
        .arg("-initrd")
        .arg(&guest.initramfs)
        .arg("-append")
        .arg(append);
    cmd
}

/// Boots `guest` directly in QEMU and runs [`interact`].
pub fn direct(guest: &Guest, opts: &DirectOptions) -> Result<Run, DirectError> {
    // QEMU's default machine: one processor.
    drive(qemu_command(guest, opts), &opts.run, 1, false, &[])
}

/// Boots Tessera with `guest` as partition `guest` (`--guest linux`: the
/// default appliance plus the partition, [`as_partition`]) in QEMU, runs
/// [`interact`] through the VID's COM1, and waits for the VID's
/// [`POWERED_OFF`] and the kernel's `tessera: halted status=0`.
pub fn tessera(guest: &Guest, opts: &TesseraOptions) -> Result<Run, DirectError> {
    // Bochs's COM1 is an output file here (src/bochs.rs): nobody can type,
    // so /init runs the command itself.
    let bochs = opts.emulator == Emulator::Bochs;
    let mut partition = images::Guest {
        image: guest.kernel.clone(),
        modules: Vec::new(),
        cmdline: if bochs { format!("{CMDLINE} {SELFTEST}") } else { String::new() },
        memory_mib: 0,
        vcpus: opts.vcpus,
        enlightenments: String::new(),
    };
    as_partition(guest, &mut partition);
    let dir = workdir::tessera_dir().join("images").join(workdir::unique_name("linux"));
    let (manifest, _, ram) =
        images::use_guest(images::default_manifest(), &partition, &dir).map_err(BootError::runner)?;
    ui::note(format!("boot image: the default appliance plus partition \"guest\" ({})", manifest.display()));
    let boot = BootOptions {
        emulator: opts.emulator,
        firmware: Firmware::Bios,
        timeout: Some(opts.run.timeout),
        smp: opts.smp,
        smp_threads: 1,
        memory_mib: images::machine_mib(ram),
        cmdline: opts.cmdline.clone(),
        serial_log: Some(opts.run.serial_log.clone()),
        qemu_args: opts.qemu_args.clone(),
        bochs_cpu: None,
        gdb: None,
        reboots: 0,
    };
    if bochs {
        return self_tested(&boot, opts.vcpus);
    }
    let (files, words) = boot::prepare(&boot)?;
    let cmd = qemu::command(&boot, &words, false, &qemu::Start::Direct);
    let run = RunOptions { serial_log: files.serial_log, ..opts.run.clone() };
    drive(cmd, &run, opts.vcpus, opts.reboot, &[POWERED_OFF, HALTED_OK])
}

/// A boot whose /init runs the command by itself ([`SELFTEST`]): the
/// serial log must show the marker, the answer, the power-off and a clean
/// halt. Lines are not timed (the emulator writes the log itself): every
/// timing is the whole run's.
fn self_tested(boot_opts: &BootOptions, vps: u8) -> Result<Run, DirectError> {
    let start = Instant::now();
    let code = boot::boot(boot_opts)?;
    let total = start.elapsed();
    let log = boot_opts.serial_log.clone().unwrap_or_default();
    let serial = fs::read(&log).map(|b| String::from_utf8_lossy(&b).replace('\r', "")).unwrap_or_default();
    let answers = |answer: &str| serial.lines().any(|l| l.trim_end().ends_with(&format!(": {answer}")));
    let vps_answer = nproc_answer(vps);
    for (needle, found) in [
        (MARKER, serial.contains(MARKER)),
        (EXPECTED, answers(EXPECTED)),
        (vps_answer.as_str(), answers(&vps_answer)),
        (POWERED_OFF, serial.contains(POWERED_OFF)),
        (HALTED_OK, serial.contains(HALTED_OK) && code == 0),
    ] {
        if !found {
            return Err(DirectError::Start(format!(
                "no {needle:?} in {} (the boot ended with status {code} after {:.0} s)",
                log.display(),
                total.as_secs_f64()
            )));
        }
    }
    let timings = Timings { marker: total, prompt: total, command: total };
    Ok(Run { timings, closing: vec![(POWERED_OFF, total), (HALTED_OK, total)], total })
}

/// One line on when each step of `run` happened, e.g. "direct boot (...):
/// init marker after 9.12 s, ...; the emulator exited after 22.50 s wall".
pub fn summary(what: &str, run: &Run) -> String {
    let t = &run.timings;
    let mut text = format!(
        "{what}: init marker after {:.2} s, shell prompt {:.2} s, `{COMMAND}` answered {:.2} s",
        t.marker.as_secs_f64(),
        t.prompt.as_secs_f64(),
        t.command.as_secs_f64()
    );
    for (line, at) in &run.closing {
        text.push_str(&format!(", {line:?} {:.2} s", at.as_secs_f64()));
    }
    text.push_str(&format!("; the emulator exited after {:.2} s wall", run.total.as_secs_f64()));
    text
}

impl From<BootError> for DirectError {
    fn from(e: BootError) -> Self {
        DirectError::Boot(e)
    }
}

/// Starts `cmd` (an emulator with the guest's serial console on stdio),
/// runs [`interact`], waits for each of `closing` in turn and then for the
/// emulator's exit.
fn drive(cmd: Command, opts: &RunOptions, vps: u8, reboot: bool, closing: &[&'static str]) -> Result<Run, DirectError> {
    ui::note(format!("$ {}", ui::shell_line(&cmd)));
    ui::note(format!("serial log: {}", opts.serial_log.display()));
    let deadline = Instant::now() + opts.timeout;
    let console_opts = ConsoleOptions { echo: opts.echo, log: Some(&opts.serial_log), keystroke_gap: KEYSTROKE_GAP };
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut console =
        Console::spawn(cmd, &console_opts).map_err(|e| DirectError::Start(format!("cannot start {program}: {e}")))?;
    let timings = interact(&mut console, deadline, vps, reboot).map_err(DirectError::Expect)?;
    let mut seen = Vec::new();
    for &line in closing {
        console.expect(line, deadline.saturating_duration_since(Instant::now())).map_err(DirectError::Expect)?;
        seen.push((line, console.elapsed()));
    }
    let grace = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
    let status = console.wait_exit(grace).map_err(|e| DirectError::Start(format!("waiting for {program}: {e}")))?;
    if status.is_none() {
        ui::warn(format!("{program} did not exit after `{POWEROFF}`; it was killed"));
    }
    Ok(Run { timings, closing: seen, total: console.elapsed() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_sizes_and_downloaded_bytes_are_counted() {
        assert_eq!(deb_size("Package: busybox-static\nVersion: 1:1.35.0-4+b3\nSize: 929452\nMD5sum: x\n"), 929_452);
        assert_eq!(deb_size("Package: x\n"), 0);
        let dir = std::env::temp_dir().join(format!("tessera-debs-{}", std::process::id()));
        fs::create_dir_all(dir.join("partial")).unwrap();
        fs::write(dir.join("busybox-static_1_amd64.deb"), [0u8; 10]).unwrap();
        fs::write(dir.join("partial").join("linux-image-6.1_1_amd64.deb"), [0u8; 7]).unwrap();
        fs::write(dir.join("other_1_amd64.deb"), [0u8; 100]).unwrap();
        let names = ["busybox-static_".to_string(), "linux-image-6.1_".to_string()];
        assert_eq!(bytes_of_debs(&dir, &names), 17);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_initramfs_has_init_busybox_and_a_console() {
        let bytes = initramfs_cpio(b"\x7fELF fake busybox", &[("hv_vmbus.ko", b"\x7fELF fake module")]);
        let text = String::from_utf8_lossy(&bytes);
        for name in [
            "init\0",
            "bin/busybox\0",
            "bin/sh\0",
            "dev/console\0",
            "proc\0",
            "lib/modules/hv_vmbus.ko\0",
            "TRAILER!!!\0",
        ] {
            assert!(text.contains(name), "{name:?} in the archive");
        }
        assert!(text.contains(MARKER) && text.contains(PROMPT));
        assert!(text.contains("mount -t devtmpfs devtmpfs /dev"));
        assert!(text.contains(&format!("if grep -q {SELFTEST} /proc/cmdline")) && text.contains(POWEROFF));
    }

    #[test]
    fn init_loads_the_modules_before_the_marker() {
        let script = init_script();
        let insmod = script.find("insmod /lib/modules/$m").expect("init loads modules");
        assert!(insmod < script.find(MARKER).unwrap());
        assert!(script.contains("for m in hv_vmbus.ko; do"));
    }

    #[test]
    fn module_dependencies_are_read_from_modinfo() {
        assert_eq!(module_depends(b"\x7fELF\0license=GPL\0depends=\0name=hv_vmbus\0"), Vec::<String>::new());
        assert_eq!(module_depends(b"\0depends=hv_vmbus,hv_utils\0name=x\0"), ["hv_vmbus", "hv_utils"]);
        assert_eq!(module_depends(b"no modinfo"), Vec::<String>::new());
    }

    #[test]
    fn apt_cache_policy_is_read() {
        let text = "linux-image-amd64:\n  Installed: (none)\n  Candidate: 6.1.192-2\n  Version table:\n     \
                    6.1.192-2 500\n        500 http://deb.debian.org/debian-security bookworm-security/main amd64 \
                    Packages\nbusybox-static:\n  Installed: (none)\n  Candidate: 1:1.35.0-4+deb12u1+b1\n\
                    gone:\n  Installed: (none)\n  Candidate: (none)\n";
        assert_eq!(
            parse_policy(text),
            [
                ("linux-image-amd64".to_owned(), "6.1.192-2".to_owned()),
                ("busybox-static".to_owned(), "1:1.35.0-4+deb12u1+b1".to_owned())
            ]
        );
    }

    #[test]
    fn versions_are_spelled_as_apt_names_files() {
        assert_eq!(file_version("1:1.35.0-4+deb12u1+b1"), "1%3a1.35.0-4+deb12u1+b1");
        assert_eq!(file_version("6.1.192-2"), "6.1.192-2");
    }

    #[test]
    fn the_closing_marker_is_the_kernels_clean_halt() {
        assert_eq!(crate::run::parse_marker(HALTED_OK), Some(0));
    }

    #[test]
    fn the_command_cannot_match_its_own_echo() {
        assert!(!COMMAND.contains(EXPECTED));
    }
}
