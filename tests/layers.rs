//! The layering of the workspace, checked from cargo's own dependency
//! graph (`cargo tree`): ring 0, the kernel and every crate under
//! `microkernel/` and `loader/`, depends on no crate under `userland/`,
//! `services/` or `tools/`. Needs no emulator.

use std::path::{Path, PathBuf};
use std::process::Command;

const RING0_DIRS: [&str; 2] = ["microkernel", "loader"];
const NOT_RING0_DIRS: [&str; 3] = ["userland", "services", "tools"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Workspace crates `package` depends on (normal and build dependencies,
/// every target), itself included: (name, directory).
fn workspace_dependencies(package: &str) -> Vec<(String, PathBuf)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root())
        .args(["tree", "--offline", "--locked", "-p", package, "-e", "normal,build", "--target", "all"])
        .args(["--prefix", "none", "--format", "{p}"])
        .output()
        .expect("run cargo tree");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "cargo tree -p {package} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    // Lines look like `abi v0.1.0 (/path/to/microkernel/abi)`, `(*)` after a repeat;
    // crates from the registry have no path.
    let mut deps: Vec<(String, PathBuf)> = stdout
        .lines()
        .filter_map(|line| {
            let name = line.split_whitespace().next()?;
            let path = line.split_once(" (")?.1.split_once(')')?.0;
            path.starts_with('/').then(|| (name.to_string(), PathBuf::from(path)))
        })
        .collect();
    deps.sort();
    deps.dedup();
    deps
}

/// The package name in `dir/Cargo.toml`.
fn package_name(dir: &Path) -> Option<String> {
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
    let package = manifest.split("[package]").nth(1)?;
    let line = package.lines().find(|l| l.trim_start().starts_with("name"))?;
    Some(line.split('"').nth(1)?.to_string())
}

/// Every package under the ring-0 directories.
fn ring0_packages() -> Vec<String> {
    let mut packages = Vec::new();
    for dir in RING0_DIRS.map(|d| root().join(d)) {
        packages.extend(package_name(&dir));
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            packages.extend(package_name(&entry.path()));
        }
    }
    packages.sort();
    packages
}

/// The dependencies of `package` that live under one of the non-ring-0 directories.
fn non_ring0_dependencies(package: &str) -> Vec<String> {
    let outside: Vec<PathBuf> = NOT_RING0_DIRS.map(|d| root().join(d)).to_vec();
    workspace_dependencies(package)
        .into_iter()
        .filter(|(_, path)| outside.iter().any(|dir| path.starts_with(dir)))
        .map(|(name, path)| format!("{name} ({})", path.display()))
        .collect()
}

#[test]
fn host_ring0_depends_on_no_userland_service_or_tool_crate() {
    let packages = ring0_packages();
    for expected in ["tessera-microkernel", "tessera-loader", "kerncore", "abi", "bootfs", "x86defs"] {
        assert!(packages.iter().any(|p| p == expected), "{expected} not found among {packages:?}");
    }
    let kernel = workspace_dependencies("tessera-microkernel");
    assert!(kernel.iter().any(|(name, _)| name == "kerncore"), "cargo tree output not understood: {kernel:?}");
    for package in &packages {
        let bad = non_ring0_dependencies(package);
        assert!(bad.is_empty(), "ring-0 crate {package} depends on crates outside microkernel/ and loader/: {bad:?}");
    }
}

#[test]
fn host_the_layer_check_sees_a_service_depend_on_userland() {
    // The check above would see such a dependency: the VID has several.
    let vid = non_ring0_dependencies("vid");
    for expected in ["tessera-rt", "x86decode", "sysimage"] {
        assert!(vid.iter().any(|d| d.starts_with(&format!("{expected} "))), "{expected} not seen in {vid:?}");
    }
}
