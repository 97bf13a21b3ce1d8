//! Where the runner keeps per-run files: `<target>/tessera/`.
//!
//! Each boot gets its own directory `<target>/tessera/runs/<emulator>-<ms>-<pid>/`
//! holding `serial.log` and, for Bochs, the ISO, `grub.cfg`, `bochsrc`,
//! `bochs.log` and Bochs's own output (for QEMU with UEFI, the ISO and
//! `grub.cfg`). Old run directories are pruned.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How many run directories to keep.
const KEEP_RUNS: usize = 20;
/// Run directories younger than this are never pruned (they may be in use).
const PRUNE_MIN_AGE: Duration = Duration::from_secs(30 * 60);

/// The cargo target directory this binary was built into, if it can be found:
/// the nearest ancestor (within three levels) of the executable that holds
/// cargo's `CACHEDIR.TAG`.
pub fn target_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return Some(if dir.is_absolute() { dir } else { std::env::current_dir().ok()?.join(dir) });
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors().skip(1).take(3).find(|dir| dir.join("CACHEDIR.TAG").is_file()).map(Path::to_path_buf)
}

/// `$TESSERA_WORK_DIR`, else `<target>/tessera`, else `$TMPDIR/tessera`.
pub fn tessera_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TESSERA_WORK_DIR") {
        return PathBuf::from(dir);
    }
    match target_dir() {
        Some(target) => target.join("tessera"),
        None => std::env::temp_dir().join("tessera"),
    }
}

/// A unique name: `<prefix>-<unix milliseconds>-<pid>`.
pub fn unique_name(prefix: &str) -> String {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    format!("{prefix}-{ms}-{}", std::process::id())
}

/// Create a fresh run directory under `<tessera_dir>/runs/` and prune old ones.
pub fn new_run_dir(prefix: &str) -> io::Result<PathBuf> {
    let runs = tessera_dir().join("runs");
    fs::create_dir_all(&runs)?;
    prune(&runs);
    let dir = runs.join(unique_name(prefix));
    fs::create_dir(&dir)?;
    Ok(dir)
}

/// Remove all but the newest [`KEEP_RUNS`] directories, never touching one
/// younger than [`PRUNE_MIN_AGE`]. Errors are ignored: pruning is tidying.
fn prune(runs: &Path) {
    let Ok(entries) = fs::read_dir(runs) else {
        return;
    };
    let mut dirs: Vec<(SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    let now = SystemTime::now();
    for (modified, dir) in dirs.into_iter().skip(KEEP_RUNS) {
        if now.duration_since(modified).is_ok_and(|age| age >= PRUNE_MIN_AGE) {
            let _ = fs::remove_dir_all(dir);
        }
    }
}
