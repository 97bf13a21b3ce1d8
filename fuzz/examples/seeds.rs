//! Writes the hand-made seeds: the repository's manifests (`manifest`) and
//! the boot images built from two of them (`sysimage`), one SynIC message of
//! every type the TLFS crate decodes (`tlfs_message`), Multiboot kernels
//! (ELF32, ELF64, a.out kludge) and bzImages in the loader targets' input
//! format, and an instruction of each kind x86decode decodes. The other
//! targets' seeds are corpora minimized from fuzzing runs (`-merge=1`).
//! Run from the repository root (uninstrumented):
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds
//! ```

use std::fs;
use std::path::Path;
use tlfs::zerocopy::{FromZeros, IntoBytes};
use tlfs::{HvMessage, HvMessageBody};

/// Little-endian bytes of `value`, `width` of them.
fn le(out: &mut Vec<u8>, value: u64, width: usize) {
    out.extend_from_slice(&value.to_le_bytes()[..width]);
}

/// A Multiboot kernel: one loadable segment at 1 MiB holding the header and
/// a HLT loop, with 4 KiB of bss. `class` 1: ELF32, 2: ELF64, 0: the a.out
/// kludge in a flat file.
fn multiboot_kernel(class: u8) -> Vec<u8> {
    const MAGIC: u64 = 0x1bad_b002;
    const LOAD: u64 = 0x10_0000;
    let (ehsize, phsize) = match class {
        1 => (52, 32),
        2 => (64, 56),
        _ => (0, 0),
    };
    let header_at = ehsize + phsize;
    let flags: u64 = if class == 0 { 1 << 16 | 3 } else { 3 };
    let code_at = header_at + if class == 0 { 32 } else { 12 };
    let len = code_at + 4;
    let mut f = Vec::new();
    if class != 0 {
        f.extend_from_slice(b"\x7fELF");
        f.extend_from_slice(&[class, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        le(&mut f, 2, 2); // ET_EXEC
        le(&mut f, if class == 1 { 3 } else { 62 }, 2);
        le(&mut f, 1, 4);
        let word = if class == 1 { 4 } else { 8 };
        le(&mut f, LOAD + code_at as u64, word); // entry
        le(&mut f, ehsize as u64, word); // phoff
        le(&mut f, 0, word); // shoff
        le(&mut f, 0, 4); // flags
        le(&mut f, ehsize as u64, 2);
        le(&mut f, phsize as u64, 2);
        le(&mut f, 1, 2); // phnum
        f.extend_from_slice(&[0; 6]);
        le(&mut f, 1, 4); // PT_LOAD
        if class == 1 {
            for v in [0, LOAD, LOAD, len as u64, len as u64 + 0x1000, 7, 0x1000] {
                le(&mut f, v, 4);
            }
        } else {
            le(&mut f, 7, 4);
            for v in [0, LOAD, LOAD, len as u64, len as u64 + 0x1000, 0x1000] {
                le(&mut f, v, 8);
            }
        }
    }
    assert_eq!(f.len(), header_at);
    for v in [MAGIC, flags, 0u64.wrapping_sub(MAGIC + flags) & 0xffff_ffff] {
        le(&mut f, v, 4);
    }
    if class == 0 {
        // header_addr, load_addr, load_end_addr (0: the file), bss_end_addr, entry_addr
        for v in [LOAD, LOAD, 0, LOAD + len as u64 + 0x1000, LOAD + code_at as u64] {
            le(&mut f, v, 4);
        }
    }
    f.extend_from_slice(&[0xf4, 0xeb, 0xfd, 0x90]); // hlt; jmp $-1
    f
}

/// A bzImage: the setup header (protocol 2.15, relocatable, 64-bit entry)
/// and `payload` bytes of protected-mode kernel.
fn bzimage(payload: usize) -> Vec<u8> {
    let setup_sects = 1;
    let mut f = vec![0u8; (setup_sects + 1) * 512 + payload];
    let mut put = |at: usize, v: u64, width: usize| f[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
    put(0x1f1, setup_sects as u64, 1);
    put(0x1f4, payload.div_ceil(16) as u64, 4); // syssize
    put(0x1fe, 0xaa55, 2);
    put(0x200, 0x66eb, 2); // jmp to the end of the header
    put(0x202, u64::from(u32::from_le_bytes(*b"HdrS")), 4);
    put(0x206, 0x020f, 2);
    put(0x211, 1, 1); // LOADED_HIGH
    put(0x214, 0x10_0000, 4);
    put(0x22c, 0x7fff_ffff, 4); // initrd_addr_max
    put(0x230, 0x20_0000, 4); // kernel_alignment
    put(0x234, 1, 1); // relocatable
    put(0x235, 21, 1);
    put(0x236, 3, 2); // XLF_KERNEL_64 | CAN_BE_LOADED_ABOVE_4G
    put(0x238, 0x7ff, 4); // cmdline_size
    put(0x258, 0x20_0000, 8); // pref_address
    put(0x260, 0x10_0000, 4); // init_size
    f
}

fn main() {
    let seeds = Path::new("fuzz/seeds");
    let dir = |name: &str| {
        let d = seeds.join(name);
        fs::create_dir_all(&d).unwrap();
        d
    };

    let manifests = dir("manifest");
    let mut files: Vec<_> = fs::read_dir("tests/manifests").unwrap().map(|e| e.unwrap().path()).collect();
    files.extend([Path::new("system.toml").to_path_buf(), Path::new("examples/minimal.toml").to_path_buf()]);
    for path in files {
        fs::copy(&path, manifests.join(path.file_name().unwrap())).unwrap();
    }

    // Loader inputs: RAM size selector, flags, command line length (x17),
    // module count, module shapes; then strings, raw RAM size, the file.
    let multiboot = dir("multiboot_loader");
    for (name, class) in [("aout", 0), ("elf32", 1), ("elf64", 2)] {
        let mut input = vec![0, 1, 1, 2, 6, 2, 0, 0, 0, 0];
        input.extend_from_slice(b"console=ttyS0 a=b");
        input.extend_from_slice(b"initrd");
        input.extend_from_slice(&[0; 8]);
        input.extend(multiboot_kernel(class));
        fs::write(multiboot.join(name), input).unwrap();
    }
    // RAM size, flags, command line length (x17), initrd size (256-byte
    // units), map entries (start, size in 64 KiB units, type), the
    // command line, raw RAM size, the bzImage.
    let linux = dir("linux_loader");
    for (name, flags, initrd, map) in [
        ("standard-32", 0u8, 4u16, &[][..]),
        ("standard-64", 1, 0, &[]),
        ("own-map-64", 3, 16, &[(0u16, 9u16, 1u8), (9, 7, 2), (16, 48, 1)][..]),
    ] {
        let mut input = vec![1, flags, 1];
        input.extend_from_slice(&initrd.to_le_bytes());
        input.push(map.len() as u8);
        for &(start, size, kind) in map {
            input.extend_from_slice(&start.to_le_bytes());
            input.extend_from_slice(&size.to_le_bytes());
            input.push(kind);
        }
        input.extend_from_slice(b"console=ttyS0 a=b");
        input.extend_from_slice(&[0; 8]);
        input.extend(bzimage(256));
        fs::write(linux.join(name), input).unwrap();
    }

    // x86decode: the mode (0 real, 1 16-bit, 2 32-bit, 3 64-bit), then the bytes.
    let x86 = dir("x86decode");
    let instructions: [(&str, u8, &[u8]); 12] = [
        ("mov-store-64", 3, &[0x89, 0x18]),
        ("mov-load-rip", 3, &[0x8b, 0x05, 0x10, 0x00, 0x00, 0x00]),
        ("mov-imm-sib", 3, &[0xc7, 0x44, 0x24, 0x08, 0x78, 0x56, 0x34, 0x12]),
        ("rex-w-xchg", 3, &[0x48, 0x87, 0x08]),
        ("movzx-32", 2, &[0x0f, 0xb6, 0x03]),
        ("movsx-16", 1, &[0x0f, 0xbe, 0x07]),
        ("rep-stosb", 3, &[0xf3, 0xaa]),
        ("movsw-a16", 0, &[0xa5]),
        ("lock-or", 3, &[0xf0, 0x09, 0x01]),
        ("cmp-imm8", 2, &[0x80, 0x38, 0x05]),
        ("fs-moffs", 3, &[0x64, 0xa1, 1, 2, 3, 4, 5, 6, 7, 8]),
        ("and-reg-mem", 2, &[0x67, 0x23, 0x00]),
    ];
    for (name, mode, bytes) in instructions {
        let mut input = vec![mode];
        input.extend_from_slice(bytes);
        fs::write(x86.join(name), input).unwrap();
    }

    let sysimage = dir("sysimage");
    for manifest in ["examples/minimal.toml", "tests/manifests/two-guests.toml"] {
        let text = fs::read_to_string(manifest).unwrap();
        let m = tessera_manifest::parse(&text, manifest).unwrap();
        let name = Path::new(manifest).file_stem().unwrap().to_string_lossy().into_owned();
        fs::write(sysimage.join(format!("{name}.bootfs")), tessera_fuzz::system_image(&m).unwrap()).unwrap();
        fs::write(sysimage.join(format!("{name}.manifest")), tessera_manifest::compile(&m).unwrap()).unwrap();
    }

    let tlfs = dir("tlfs_message");
    let bodies = [
        ("unmapped-gpa", HvMessageBody::UnmappedGpa(FromZeros::new_zeroed())),
        ("timer-expired", HvMessageBody::TimerExpired(FromZeros::new_zeroed())),
        ("invalid-vp-register", HvMessageBody::InvalidVpRegisterValue(FromZeros::new_zeroed())),
        ("unrecoverable-exception", HvMessageBody::UnrecoverableException(FromZeros::new_zeroed())),
        ("unsupported-feature", HvMessageBody::UnsupportedFeature(FromZeros::new_zeroed())),
        ("io-port", HvMessageBody::X64IoPortIntercept(FromZeros::new_zeroed())),
        ("msr", HvMessageBody::MsrIntercept(FromZeros::new_zeroed())),
        ("cpuid", HvMessageBody::X64CpuidIntercept(FromZeros::new_zeroed())),
        ("exception", HvMessageBody::ExceptionIntercept(FromZeros::new_zeroed())),
        ("apic-eoi", HvMessageBody::X64ApicEoi(FromZeros::new_zeroed())),
        ("halt", HvMessageBody::X64Halt(FromZeros::new_zeroed())),
        ("hypercall", HvMessageBody::HypercallIntercept(FromZeros::new_zeroed())),
    ];
    for (i, (name, body)) in bodies.iter().enumerate() {
        let mut bytes = HvMessage::from_body(body, 7).as_bytes().to_vec();
        // Then an exit-state mask (all groups) and a few register words.
        bytes.extend_from_slice(&7u64.to_le_bytes());
        bytes.extend((0..8 * (i + 4)).map(|b| b as u8));
        fs::write(tlfs.join(name), bytes).unwrap();
    }
}
