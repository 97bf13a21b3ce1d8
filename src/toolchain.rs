//! The pinned nightly toolchain, and bringing it in.
//!
//! The bare-metal images and the workspace's tests need a dated nightly
//! (the `acpi` crate uses `allocator_api`). It is pinned in `toolchain.toml`
//! at the root, in rustup's `[toolchain]` schema, but not under the name
//! `rust-toolchain.toml`: rustup would then resolve `cargo run` itself to
//! the nightly, and fail before any of our code runs where it does not
//! install toolchains by itself (`RUSTUP_AUTO_INSTALL=0`,
//! `rustup set auto-install disable`). So `cargo run` builds the runner
//! with whatever toolchain is the default, and `build.rs` (for the images)
//! and the runner (for `test` and `fuzz`) install the pin when something
//! of it is missing and run cargo under it with `rustup run`.
//!
//! This file is also compiled into `build.rs` (`#[path]`): std only.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The pin's file, at the repository's root.
pub const FILE: &str = "toolchain.toml";

/// What `toolchain.toml` pins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    /// e.g. `nightly-2026-05-19`.
    pub channel: String,
    /// rustup's install profile (`minimal`).
    pub profile: String,
    pub components: Vec<String>,
    pub targets: Vec<String>,
}

/// Reads the pin of the repository at `root`.
pub fn load(root: &Path) -> Result<Pin, String> {
    let path = root.join(FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses the `[toolchain]` table: `channel`, `profile` (strings),
/// `components` and `targets` (one-line arrays of strings). Comments and
/// other keys are ignored.
pub fn parse(text: &str) -> Result<Pin, String> {
    let mut pin = Pin { channel: String::new(), profile: "minimal".into(), components: vec![], targets: vec![] };
    let mut in_table = false;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            in_table = line == "[toolchain]";
            continue;
        }
        if !in_table {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: expected `key = value`", n + 1));
        };
        let value = value.trim();
        let bad = || format!("line {}: cannot read the value of `{}`", n + 1, key.trim());
        match key.trim() {
            "channel" => pin.channel = string(value).ok_or_else(bad)?,
            "profile" => pin.profile = string(value).ok_or_else(bad)?,
            "components" => pin.components = array(value).ok_or_else(bad)?,
            "targets" => pin.targets = array(value).ok_or_else(bad)?,
            _ => {}
        }
    }
    if pin.channel.is_empty() {
        return Err("no `channel` in [toolchain]".into());
    }
    Ok(pin)
}

fn string(value: &str) -> Option<String> {
    let inner = value.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('"')).then(|| inner.to_string())
}

fn array(value: &str) -> Option<Vec<String>> {
    let inner = value.strip_prefix('[')?.strip_suffix(']')?.trim().trim_end_matches(',');
    if inner.trim().is_empty() {
        return Some(vec![]);
    }
    inner.split(',').map(|item| string(item.trim())).collect()
}

impl Pin {
    /// The arguments of `rustup` that install the pin with its components
    /// and targets (adding what is missing to an installed one).
    pub fn install_args(&self) -> Vec<String> {
        let mut args: Vec<String> =
            ["toolchain", "install", &self.channel, "--profile", &self.profile, "--no-self-update"]
                .map(String::from)
                .into();
        for c in &self.components {
            args.extend(["--component".into(), c.clone()]);
        }
        for t in &self.targets {
            args.extend(["--target".into(), t.clone()]);
        }
        args
    }

    /// What of the pin `rustup` says is not installed: the toolchain itself
    /// (then the only entry), or components and targets. Empty: complete.
    pub fn missing(&self, rustup: &Path) -> io::Result<Vec<String>> {
        let components = list(rustup, &["component", "list", "--installed", "--toolchain", &self.channel])?;
        let targets = list(rustup, &["target", "list", "--installed", "--toolchain", &self.channel])?;
        let (Some(components), Some(targets)) = (components, targets) else {
            return Ok(vec![format!("toolchain {}", self.channel)]);
        };
        Ok(self.missing_from(&components, &targets))
    }

    /// The components and targets of the pin not in rustup's lists of
    /// installed ones (components are listed with the host's triple:
    /// `rustfmt-x86_64-unknown-linux-gnu`, but `rust-src`).
    pub fn missing_from(&self, components: &[String], targets: &[String]) -> Vec<String> {
        let with_triple = |rest: &str| rest.strip_prefix('-').is_some_and(|triple| triple.split('-').count() >= 3);
        let has_component = |c: &str| components.iter().any(|i| i == c || i.strip_prefix(c).is_some_and(with_triple));
        let mut missing: Vec<String> =
            self.components.iter().filter(|c| !has_component(c)).map(|c| format!("component {c}")).collect();
        missing.extend(self.targets.iter().filter(|t| !targets.contains(t)).map(|t| format!("target {t}")));
        missing
    }

    /// `cargo` under the pin: `rustup run CHANNEL cargo`, or, without
    /// rustup, the calling cargo (`$CARGO`), which must then be the pin.
    pub fn cargo(&self, rustup: Option<&Path>) -> Command {
        match rustup {
            Some(rustup) => {
                let mut cmd = Command::new(rustup);
                cmd.args(["run", &self.channel, "cargo"]);
                cmd
            }
            None => Command::new(std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"))),
        }
    }
}

/// rustup's list of installed items, one per line; `None` when rustup
/// refuses (the toolchain is not installed).
fn list(rustup: &Path, args: &[&str]) -> io::Result<Option<Vec<String>>> {
    let out = quiet(rustup).args(args).output()?;
    if !out.status.success() {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().to_string()).collect()))
}

/// A rustup command that never installs anything on its own.
fn quiet(rustup: &Path) -> Command {
    let mut cmd = Command::new(rustup);
    cmd.env("RUSTUP_AUTO_INSTALL", "0").stdin(Stdio::null());
    cmd
}

/// The `rustup` executable: on PATH (rustup's proxies put `CARGO_HOME/bin`
/// there), else in `$CARGO_HOME/bin` or `~/.cargo/bin`.
pub fn rustup() -> Option<PathBuf> {
    let works = |p: &Path| quiet(p).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    let mut candidates = vec![PathBuf::from("rustup")];
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        candidates.push(Path::new(&home).join("bin").join("rustup"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cargo").join("bin").join("rustup"));
    }
    candidates.into_iter().find(|p| works(p))
}

/// How `ensure` shows rustup's own output while it installs.
pub enum Show {
    /// Inherited: the terminal, with rustup's progress bars, or the log.
    Inherit,
    /// Written to this file (e.g. `/dev/tty` from a build script, whose
    /// own output cargo keeps until it ends).
    To(std::fs::File),
    /// Captured, and returned in the error if the install fails.
    Capture,
}

/// What `ensure` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Ensured {
    /// Everything of the pin was there.
    Present,
    /// It installed these (the toolchain, or components and targets).
    Installed(Vec<String>),
}

/// Installs what is missing of the pin with `rustup toolchain install`,
/// calling `announce` with what is missing first.
pub fn ensure(pin: &Pin, rustup: &Path, show: Show, announce: impl FnOnce(&[String])) -> Result<Ensured, String> {
    let missing = pin.missing(rustup).map_err(|e| format!("cannot run {}: {e}", rustup.display()))?;
    if missing.is_empty() {
        return Ok(Ensured::Present);
    }
    announce(&missing);
    let mut cmd = quiet(rustup);
    cmd.args(pin.install_args());
    let line = format!("{} {}", rustup.display(), pin.install_args().join(" "));
    let result: io::Result<Output> = match show {
        Show::Inherit => cmd.status().map(|status| Output { status, stdout: vec![], stderr: vec![] }),
        Show::To(file) => {
            let err = file.try_clone();
            cmd.stdout(file);
            if let Ok(err) = err {
                cmd.stderr(err);
            }
            cmd.status().map(|status| Output { status, stdout: vec![], stderr: vec![] })
        }
        Show::Capture => cmd.output(),
    };
    let out = result.map_err(|e| format!("cannot run `{line}`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{line}` failed ({}){}{}",
            out.status,
            if out.stdout.is_empty() && out.stderr.is_empty() { "" } else { ":\n" },
            String::from_utf8_lossy(&[out.stdout, out.stderr].concat())
        ));
    }
    // rustup may succeed and still leave something out (a component this
    // dated nightly does not have): say so rather than fail later.
    let still = pin.missing(rustup).map_err(|e| format!("cannot run {}: {e}", rustup.display()))?;
    if !still.is_empty() {
        return Err(format!("`{line}` succeeded but these are still missing: {}", still.join(", ")));
    }
    Ok(Ensured::Installed(missing))
}

/// The runner's way in: the pin of this repository, with what was missing
/// of it installed (rustup's own progress on the terminal, or its plain
/// lines in a log). Without rustup, the calling cargo is trusted.
pub fn bring() -> Result<Pin, String> {
    let pin = load(Path::new(env!("CARGO_MANIFEST_DIR")))?;
    let Some(rustup) = rustup() else {
        eprintln!("[tessera] warning: rustup not found; cargo is trusted to be {}", pin.channel);
        return Ok(pin);
    };
    let announce = |missing: &[String]| {
        eprintln!("[tessera] ==> installing the pinned toolchain {} ({}): {}", pin.channel, FILE, missing.join(", "));
    };
    match ensure(&pin, &rustup, Show::Inherit, announce)? {
        Ensured::Present => {}
        Ensured::Installed(_) => eprintln!("[tessera] installed {}", pin.channel),
    }
    Ok(pin)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE_TEXT: &str = r#"
[toolchain]
# The acpi crate uses `allocator_api`.
channel = "nightly-2026-05-19"
components = ["rust-src", "rustfmt", "clippy"]
targets = ["x86_64-unknown-none"]
profile = "minimal"
"#;

    fn pin() -> Pin {
        parse(FILE_TEXT).unwrap()
    }

    #[test]
    fn parses_the_toolchain_table() {
        assert_eq!(
            pin(),
            Pin {
                channel: "nightly-2026-05-19".into(),
                profile: "minimal".into(),
                components: vec!["rust-src".into(), "rustfmt".into(), "clippy".into()],
                targets: vec!["x86_64-unknown-none".into()],
            }
        );
        assert_eq!(parse("[toolchain]\nchannel = \"x\"\ntargets = []\n").unwrap().targets, Vec::<String>::new());
    }

    #[test]
    fn refuses_a_file_without_a_channel_or_with_bad_values() {
        assert!(parse("[toolchain]\nprofile = \"minimal\"\n").is_err());
        assert!(parse("[other]\nchannel = \"x\"\n").is_err());
        assert!(parse("[toolchain]\nchannel = nightly\n").is_err());
        assert!(parse("[toolchain]\nchannel = \"x\"\ntargets = [x86]\n").is_err());
    }

    #[test]
    fn the_repository_pins_a_dated_toolchain() {
        let pin = load(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(pin.channel.starts_with("nightly-20"), "{}", pin.channel);
        assert!(pin.targets.contains(&"x86_64-unknown-none".to_string()));
    }

    #[test]
    fn install_args_name_every_component_and_target() {
        assert_eq!(
            pin().install_args().join(" "),
            "toolchain install nightly-2026-05-19 --profile minimal --no-self-update \
             --component rust-src --component rustfmt --component clippy --target x86_64-unknown-none"
        );
    }

    #[test]
    fn missing_components_and_targets_are_found_by_rustups_names() {
        let installed: Vec<String> =
            ["cargo-x86_64-unknown-linux-gnu", "rust-src", "rustfmt-x86_64-unknown-linux-gnu", "rust-std-x86_64"]
                .map(String::from)
                .into();
        let targets = vec!["x86_64-unknown-linux-gnu".to_string()];
        assert_eq!(pin().missing_from(&installed, &targets), ["component clippy", "target x86_64-unknown-none"]);
        let mut all = installed.clone();
        all.push("clippy-x86_64-unknown-linux-gnu".into());
        assert!(pin().missing_from(&all, &["x86_64-unknown-none".to_string()]).is_empty());
        // `rust-src-extra` is not `rust-src`.
        let src_only = vec!["rust-src-extra".to_string()];
        assert!(pin().missing_from(&src_only, &[]).contains(&"component rust-src".to_string()));
    }

    #[test]
    fn cargo_runs_under_the_pin_through_rustup() {
        let cmd = pin().cargo(Some(Path::new("/opt/rustup")));
        assert_eq!(cmd.get_program(), "/opt/rustup");
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["run", "nightly-2026-05-19", "cargo"]);
    }
}
