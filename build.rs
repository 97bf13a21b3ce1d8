//! Builds the bare-metal parts of Tessera for `x86_64-unknown-none` and
//! hands their paths to the runner.
//!
//! - The microkernel is an ELF64 linked in the higher half.
//! - The loader is linked as ELF64 too, then rewritten as the ELF32 that
//!   QEMU's Multiboot v1 loader insists on (GRUB loads the same file).
//!
//! - Every task under `services/` (a package with `src/main.rs`) is built
//!   for ring 3, and `system.toml` is validated and packed with them into
//!   the default boot image (`bootfs`), the module the root task starts from.
//!
//! A nested cargo with its own target directory does the compiling, so the
//! outer build's lock is never contended. It runs under the nightly pinned
//! in `toolchain.toml`, which is installed first if something of it is
//! missing (`src/toolchain.rs`): the runner itself builds with any recent
//! toolchain, so `cargo run` works where rustup installs nothing by itself.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[path = "src/toolchain.rs"]
#[allow(dead_code)]
mod toolchain;

const BARE_TARGET: &str = "x86_64-unknown-none";
const GUEST_TEST_KERNEL: &str = "guest-testkernel";
/// Crates whose sources feed the bare-metal images.
const WATCHED: &[&str] = &[
    "loader",
    "microkernel",
    "userland",
    "services",
    "tests/guests",
    "system.toml",
    "Cargo.lock",
    "Cargo.toml",
    "toolchain.toml",
    "src/toolchain.rs",
];

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    for path in WATCHED {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    println!("cargo:rerun-if-env-changed=TESSERA_BARE_PROFILE");
    // The hostile task's storm seed (`services/hostile`).
    println!("cargo:rerun-if-env-changed=HOSTILE_SEED");

    // On a build for the bare-metal target itself there is nothing to nest.
    if env::var("TARGET").as_deref() == Ok(BARE_TARGET) {
        return;
    }

    let target_dir = root.join("target").join("bare");
    let profile = env::var("TESSERA_BARE_PROFILE").unwrap_or_else(|_| "release".into());
    let pin = toolchain::load(&root).unwrap_or_else(|e| panic!("{e}"));
    let rustup = toolchain::rustup();
    match &rustup {
        Some(rustup) => bring(&pin, rustup),
        None => println!(
            "cargo::warning=rustup not found: building the bare-metal images with $CARGO, \
             which must be {} with {} and the target {}",
            pin.channel,
            pin.components.join(", "),
            pin.targets.join(", ")
        ),
    }

    // One invocation per image, so features of shared crates are not
    // unified between them (the loader has no heap; the kernel has one).
    // The tasks share one invocation: they are built alike.
    let tasks = task_packages(&root.join("services"));
    let mut builds: Vec<Vec<String>> = vec![vec!["tessera-loader".into()], vec!["tessera-microkernel".into()]];
    builds.push(tasks.clone());
    // The guest test kernel runs inside partitions (its own linker script).
    builds.push(vec![GUEST_TEST_KERNEL.into()]);
    for packages in &builds {
        nested_build(pin.cargo(rustup.as_deref()), &root, &target_dir, &profile, packages);
    }

    let profile_dir = if profile == "dev" { "debug" } else { profile.as_str() };
    let out = target_dir.join(BARE_TARGET).join(profile_dir);
    let kernel = out.join("tessera-microkernel");
    let loader64 = out.join("tessera-loader");
    let loader32 = out.join("tessera-loader.elf32");
    elf64_to_elf32(&loader64, &loader32);

    println!("cargo:rustc-env=TESSERA_KERNEL_ELF={}", kernel.display());
    println!("cargo:rustc-env=TESSERA_LOADER_ELF32={}", loader32.display());

    // The default appliance: system.toml with the tasks just built.
    let manifest =
        tessera_manifest::load(&root.join("system.toml")).unwrap_or_else(|errors| panic!("system.toml:\n{errors}"));
    let image = tessera_manifest::build_image(&manifest, &out)
        .unwrap_or_else(|errors| panic!("building the boot image:\n{errors}"));
    let bootfs = out.join("bootfs.img");
    fs::write(&bootfs, image).unwrap_or_else(|e| panic!("writing {}: {e}", bootfs.display()));
    println!("cargo:rustc-env=TESSERA_BOOTFS={}", bootfs.display());
    println!("cargo:rustc-env=TESSERA_TASK_DIR={}", out.display());
    println!("cargo:rustc-env=TESSERA_GUEST_TEST_KERNEL={}", out.join(GUEST_TEST_KERNEL).display());
}

/// Packages under `services/` that are tasks (they have a `src/main.rs`).
fn task_packages(services: &Path) -> Vec<String> {
    let mut packages: Vec<String> = fs::read_dir(services)
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|entry| entry.path().join("src/main.rs").is_file())
                .filter_map(|entry| entry.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    packages.sort();
    packages
}

/// Installs what is missing of the pinned toolchain. cargo shows a build
/// script's output only when it fails, so rustup's progress goes straight
/// to the terminal if there is one; otherwise (CI) it is kept, and the
/// outcome printed as a cargo warning.
fn bring(pin: &toolchain::Pin, rustup: &Path) {
    let tty = fs::OpenOptions::new().write(true).open("/dev/tty").ok();
    let on_tty = tty.is_some();
    let mut note = tty.as_ref().and_then(|tty| tty.try_clone().ok());
    let show = match tty {
        Some(tty) => toolchain::Show::To(tty),
        None => toolchain::Show::Capture,
    };
    let announce = |missing: &[String]| {
        if let Some(tty) = note.as_mut() {
            use std::io::Write;
            let _ = writeln!(
                tty,
                "\r[tessera] build.rs: installing the pinned toolchain {} (toolchain.toml): {}",
                pin.channel,
                missing.join(", ")
            );
        }
    };
    let t0 = Instant::now();
    match toolchain::ensure(pin, rustup, show, announce) {
        // On a terminal rustup's own output said it all; cargo would replay
        // a warning at every later build, so it is only given in CI logs.
        Ok(toolchain::Ensured::Installed(what)) if !on_tty => println!(
            "cargo::warning=rustup installed {} of the pin in toolchain.toml ({:.0} s)",
            what.join(", "),
            t0.elapsed().as_secs_f64()
        ),
        Ok(_) => {}
        Err(e) => panic!("the pinned toolchain (toolchain.toml) could not be installed: {e}"),
    }
}

fn nested_build(mut cmd: Command, root: &Path, target_dir: &Path, profile: &str, packages: &[String]) {
    if packages.is_empty() {
        return;
    }
    cmd.current_dir(root)
        .args(["build", "--target", BARE_TARGET, "--profile", profile])
        // The bare images (the kernel, the services, the guests) are each
        // optimised whole: ring 0's hot paths do not depend on how rustc
        // splits a crate or inlines across crates. Host builds are untouched.
        .args(["--config", &format!("profile.{profile}.lto = \"fat\"")])
        .arg("--target-dir")
        .arg(target_dir);
    for package in packages {
        cmd.args(["-p", package]);
    }
    // Everything cargo exported for this build script describes the host
    // build; the nested build must not inherit it.
    const HOST_ONLY: &[&str] = &[
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC",
        "RUSTDOC",
        "TARGET",
        "HOST",
        "OUT_DIR",
        "PROFILE",
        "OPT_LEVEL",
        "DEBUG",
    ];
    for (key, _) in env::vars() {
        if (key.starts_with("CARGO_") && key != "CARGO_HOME") || HOST_ONLY.contains(&key.as_str()) {
            cmd.env_remove(key);
        }
    }
    let status = cmd.status().expect("failed to start the nested cargo build of the bare-metal images");
    if !status.success() {
        panic!("building {} for {BARE_TARGET} failed (see the errors above)", packages.join(", "));
    }
}

/// Rewrites an ELF64 whose loadable segments all sit below 4 GiB as an
/// ELF32 with the same segments, so Multiboot v1 loaders accept it.
fn elf64_to_elf32(input: &Path, output: &Path) {
    let data = fs::read(input).unwrap_or_else(|e| panic!("reading {}: {e}", input.display()));
    let image = elf32conv::convert(&data).unwrap_or_else(|e| panic!("converting {} to ELF32: {e}", input.display()));
    fs::write(output, image).unwrap_or_else(|e| panic!("writing {}: {e}", output.display()));
}
