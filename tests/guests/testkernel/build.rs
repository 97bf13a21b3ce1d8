//! Links the bare-metal test kernel at 1 MiB with its own linker script.
//! Debug information is left out of the image: the VID carries the file.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo");
    println!("cargo:rerun-if-changed={dir}/linker.ld");
    if std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-none") {
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
        println!("cargo:rustc-link-arg-bins=--strip-debug");
    }
}
