//! The Linux loader's plan (`vid::linux::plan`): a hostile bzImage, initrd,
//! command line, e820 map and RAM size, for the 32- and 64-bit entries.
//!
//! Input: byte 0 the RAM size (`tessera_fuzz::ram_size`), byte 1 flags
//! (bit 0: the 64-bit entry; bit 1: the map from the input, else the
//! standard map), byte 2 the command line's length (x17), bytes 3-4 the
//! initrd's size in 256-byte units, byte 5 the map's entry count, each
//! entry as start and size (u16, in 64 KiB units) and a type byte, the
//! command line, 8 bytes of raw RAM size; the rest is the bzImage.
//!
//! Oracles: an accepted plan's writes are disjoint, inside RAM, each inside
//! the RAM entries of the map, and apply exactly; the kernel lies in its
//! footprint, above 1 MiB; the initrd is page-aligned, outside the
//! footprint and below `initrd_addr_max`; the entry is the kernel's start
//! (or `startup_64`); the zero page holds the command line pointer and the
//! initrd's place.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_fuzz::{Reader, check_writes, ram_size};
use vid::linux::{
    BootEntry, E820Entry, E820Type, LOW_AREA_LEN, LinuxRequest, STARTUP_64_OFFSET, offset, plan, standard_memory_map,
};
use vid::loader::HIGH_RAM_START;

fn in_ram(map: &[E820Entry], r: &std::ops::Range<u64>) -> bool {
    r.is_empty()
        || map.iter().any(|e| {
            e.kind == E820Type::RAM && e.addr <= r.start && e.addr.checked_add(e.size).is_some_and(|end| r.end <= end)
        })
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let (ram, flags, cmdline_len, initrd_units, count) = (r.u8(), r.u8(), r.u8(), r.u16(), r.u8() % 140);
    let entries: Vec<E820Entry> = (0..count)
        .map(|_| {
            let (start, size, kind) = (r.u16(), r.u16(), r.u8());
            E820Entry::new(u64::from(start) << 16, u64::from(size) << 16, E820Type(u32::from(kind % 6)))
        })
        .collect();
    let cmdline = r.string(usize::from(cmdline_len) * 17);
    let ram_size = ram_size(ram, r.u64());
    let kernel = r.rest();
    let initrd = vec![0x5a; usize::from(initrd_units % 4096) * 256];
    let standard = standard_memory_map(ram_size);
    let map: &[E820Entry] = if flags & 2 != 0 { &entries } else { &standard };
    let entry = if flags & 1 != 0 { BootEntry::Long64 } else { BootEntry::Protected32 };
    let request = LinuxRequest { kernel, initrd: &initrd, cmdline: &cmdline, ram_size, memory_map: map, entry };
    let mut area = Box::new([0u8; LOW_AREA_LEN]);
    let Ok(p) = plan(&request, &mut area) else { return };

    check_writes(&p.writes, ram_size, |ram| p.apply(ram).is_ok());
    for w in &p.writes {
        assert!(in_ram(map, &w.range()), "write {:x?} not in a RAM entry of {map:x?}", w.range());
    }
    assert!(in_ram(map, &p.footprint), "footprint {:x?} not in RAM", p.footprint);
    assert!(
        p.footprint.start >= HIGH_RAM_START && p.footprint.start <= p.kernel.start && p.kernel.end <= p.footprint.end
    );
    let start = match entry {
        BootEntry::Protected32 => p.kernel.start,
        BootEntry::Long64 => p.kernel.start + STARTUP_64_OFFSET,
    };
    assert_eq!(p.entry_point, start);
    if !initrd.is_empty() {
        assert!(p.initrd.start % 4096 == 0 && p.initrd.end - p.initrd.start == initrd.len() as u64);
        assert!(p.initrd.start >= p.footprint.end, "initrd {:x?} in the footprint {:x?}", p.initrd, p.footprint);
        assert!(
            p.initrd.end - 1 <= u64::from(p.header.initrd_addr_max),
            "initrd {:x?} above initrd_addr_max",
            p.initrd
        );
    }
    let zero_page = p.writes.last().expect("the low area is written").data;
    let word = |at: usize| u64::from(u32::from_le_bytes(zero_page[at..at + 4].try_into().unwrap()));
    assert_eq!(word(offset::CMD_LINE_PTR), p.cmdline);
    assert_eq!(word(offset::RAMDISK_SIZE), initrd.len() as u64);
    if !initrd.is_empty() {
        assert_eq!(word(offset::RAMDISK_IMAGE), p.initrd.start);
    }
    let words = p.set_registers_words();
    assert_eq!(words.len(), 1 + 3 * p.registers.len());
});
