//! The Multiboot loader's plan (`vid::loader::plan`): a hostile kernel file
//! (ELF32, ELF64 or a.out kludge), modules, command line and RAM size.
//!
//! Input: byte 0 the RAM size (`tessera_fuzz::ram_size`), byte 1 flags
//! (bit 0: fix the first Multiboot header's checksum, so mutations get past
//! it), byte 2 the command line's length, byte 3 the module count, per
//! module its string's length and its size (u16, in 64-byte units), then the
//! command line and module strings, 8 bytes of raw RAM size; the rest is the
//! kernel file.
//!
//! Oracles: an accepted plan's writes are disjoint, inside RAM and outside
//! the legacy hole, and apply exactly; the entry lies in the kernel; the
//! modules follow the kernel page-aligned with their sizes, then the boot
//! area, which holds the information and the GDT; the register words are
//! the count and a triple per register.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_fuzz::{Reader, check_writes, ram_size};
use vid::loader::{BOOT_AREA_MAX, HEADER_MAGIC, HEADER_SEARCH, HIGH_RAM_START, LOW_RAM_END, LoadRequest, Module, plan};

/// Sets the checksum of the first header in `kernel`.
fn fix_checksum(kernel: &mut [u8]) {
    let word = |k: &[u8], at: usize| u32::from_le_bytes(k[at..at + 4].try_into().unwrap());
    let end = kernel.len().min(HEADER_SEARCH);
    for at in (0..end.saturating_sub(11)).step_by(4) {
        if word(kernel, at) == HEADER_MAGIC {
            let sum = 0u32.wrapping_sub(HEADER_MAGIC).wrapping_sub(word(kernel, at + 4));
            kernel[at + 8..at + 12].copy_from_slice(&sum.to_le_bytes());
            return;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let (ram, flags, cmdline_len, count) = (r.u8(), r.u8(), r.u8(), r.u8() % 20);
    let shapes: Vec<(usize, usize)> =
        (0..count).map(|_| (usize::from(r.u8()), usize::from(r.u16() % 512) * 64)).collect();
    let cmdline = r.string(usize::from(cmdline_len) * 17);
    let strings: Vec<String> = shapes.iter().map(|&(len, _)| r.string(len)).collect();
    let contents: Vec<Vec<u8>> = shapes.iter().enumerate().map(|(i, &(_, size))| vec![i as u8 | 0x80; size]).collect();
    let ram_size = ram_size(ram, r.u64());
    let mut kernel = r.rest().to_vec();
    if flags & 1 != 0 {
        fix_checksum(&mut kernel);
    }
    let modules: Vec<Module<'_>> =
        strings.iter().zip(&contents).map(|(string, bytes)| Module { string, bytes }).collect();
    // The kernel's name: the first fuzzed string, if any.
    let name = strings.first().map_or("", String::as_str);
    let request = LoadRequest { kernel: &kernel, name, modules: &modules, cmdline: &cmdline, ram_size };
    let mut area = vec![0u8; BOOT_AREA_MAX];
    let Ok(p) = plan(&request, &mut area) else { return };

    check_writes(&p.writes, ram_size, |ram| p.apply(ram).is_ok());
    for w in &p.writes {
        let r = w.range();
        assert!(r.end <= LOW_RAM_END || r.start >= HIGH_RAM_START || r.is_empty(), "write {r:x?} in the legacy hole");
    }
    assert!(p.kernel.contains(&u64::from(p.entry)), "entry {:#x} outside the kernel {:x?}", p.entry, p.kernel);
    let mut cursor = p.kernel.end.max(HIGH_RAM_START);
    for (m, module) in p.modules.iter().zip(&modules) {
        assert!(m.start >= cursor && m.start % 4096 == 0, "module {m:x?} after {cursor:#x}");
        assert_eq!(m.end - m.start, module.bytes.len() as u64);
        cursor = m.end;
    }
    assert_eq!(p.modules.len(), modules.len());
    assert!(p.boot_area.start >= cursor && p.boot_area.end <= ram_size, "boot area {:x?}", p.boot_area);
    assert!(p.boot_area.contains(&p.info) && p.boot_area.contains(&p.gdt));
    let words = p.set_registers_words();
    assert_eq!(words.len(), 1 + 3 * p.registers.len());
    assert_eq!(words[0], p.registers.len() as u64);
});
