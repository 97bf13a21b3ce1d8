//! Shared pieces of Tessera's fuzz targets (`fuzz_targets/*.rs`).
//!
//! Each target is a libFuzzer entry point built with coverage
//! instrumentation by `tessera fuzz` (`src/fuzz.rs` of the runner); see
//! `docs/FUZZING.md`. A target panics only when the code under test breaks
//! a rule it documents: a panic inside the code itself, or an oracle
//! written here (an invariant, a round trip, a differential check).

use vid::guest::Guest;

/// Guest RAM from guest-physical 0, with one read-only page (a ROM): what
/// the VID's handlers see through [`Guest`]. Registers cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ram {
    pub bytes: Vec<u8>,
    /// Guest-physical page number of the read-only page, if any.
    pub rom_page: Option<u64>,
    /// The pages that keep the RAM beneath the overlay pages.
    pub beneath: Vec<u8>,
}

impl Ram {
    pub const PAGE: u64 = 0x1000;

    /// `pages` zeroed pages.
    pub fn new(pages: usize, rom_page: Option<u64>) -> Ram {
        let beneath = vec![0; vid::overlay::slots(abi::limits::MAX_VPS_PER_PARTITION) * Self::PAGE as usize];
        Ram { bytes: vec![0; pages * Self::PAGE as usize], rom_page, beneath }
    }

    /// Copies `data` into page `page` (truncated to the page).
    pub fn fill_page(&mut self, page: usize, data: &[u8]) {
        let start = page * Self::PAGE as usize;
        let n = data.len().min(Self::PAGE as usize);
        self.bytes[start..start + n].copy_from_slice(&data[..n]);
    }

    fn range(&self, gpa: u64, len: usize) -> Option<std::ops::Range<usize>> {
        let start = usize::try_from(gpa).ok()?;
        let end = start.checked_add(len)?;
        (end <= self.bytes.len()).then_some(start..end)
    }

    /// The pages (guest-physical page numbers) that differ from `before`.
    pub fn pages_changed_since(&self, before: &Ram) -> Vec<u64> {
        let page = Self::PAGE as usize;
        let pairs = self.bytes.chunks(page).zip(before.bytes.chunks(page));
        pairs.enumerate().filter(|(_, (a, b))| a != b).map(|(n, _)| n as u64).collect()
    }

    /// Byte ranges that differ from `before` (same size), as guest-physical
    /// addresses of the first and last changed byte.
    pub fn changed_since(&self, before: &Ram) -> Option<(u64, u64)> {
        // One memcmp first: a byte loop would make a traced comparison per byte.
        if self.bytes == before.bytes {
            return None;
        }
        let first = self.bytes.iter().zip(&before.bytes).position(|(a, b)| a != b)?;
        let last = self.bytes.iter().zip(&before.bytes).rposition(|(a, b)| a != b)?;
        Some((first as u64, last as u64))
    }
}

impl Guest for Ram {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        match self.range(gpa, buf.len()) {
            Some(r) => {
                buf.copy_from_slice(&self.bytes[r]);
                true
            }
            None => false,
        }
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        let Some(r) = self.range(gpa, data.len()) else { return false };
        if let Some(rom) = self.rom_page {
            let rom = rom * Self::PAGE..(rom + 1) * Self::PAGE;
            if (r.start as u64) < rom.end && rom.start < r.end as u64 {
                return false;
            }
        }
        self.bytes[r].copy_from_slice(data);
        true
    }

    fn register(&mut self, _: tlfs::HvRegisterName) -> Option<(u64, u64)> {
        None
    }

    fn beneath(&mut self, slot: usize) -> Option<&mut [u8]> {
        let page = Self::PAGE as usize;
        self.beneath.get_mut(slot.checked_mul(page)?..(slot + 1) * page)
    }
}

/// The smallest file `tessera-manifest` takes for an x86-64 ELF executable:
/// an ELF64 header (`ET_EXEC`, `EM_X86_64`) and nothing else.
pub fn stub_elf() -> Vec<u8> {
    let mut elf = vec![0u8; 64];
    elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
    elf[16] = 2;
    elf[18] = 62;
    elf
}

/// The bootfs `tessera-manifest` would build for `manifest`, with a
/// [`stub_elf`] for each task binary and the partition's index as each
/// guest file, made in memory; an `Err` is what it would report.
pub fn system_image(manifest: &tessera_manifest::Manifest) -> Result<Vec<u8>, String> {
    let compiled = tessera_manifest::compile(manifest).map_err(|e| e.to_string())?;
    let elf = stub_elf();
    let mut files: Vec<(String, Vec<u8>)> = vec![(sysimage::MANIFEST_FILE.into(), compiled)];
    for t in &manifest.tasks {
        if !files.iter().any(|(name, _)| *name == t.binary) {
            files.push((t.binary.clone(), elf.clone()));
        }
    }
    for (k, p) in manifest.partitions.iter().enumerate() {
        files.push((sysimage::guest_image_name(k), vec![k as u8; 16]));
        for i in 0..p.modules.len() {
            files.push((sysimage::guest_module_name(k, i), vec![i as u8; 8]));
        }
    }
    let files: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), &b[..])).collect();
    // The header names the supervisor, as `tessera-manifest` writes it.
    let parsed = sysimage::Manifest::parse(&files[0].1).map_err(|e| e.to_string())?;
    let root = sysimage::root_task(parsed.supervisor().ok_or("no supervisor")?, manifest.on_supervisor_death);
    sysimage::bootfs::write(&root, &files).map_err(|e| e.to_string())
}

/// Reads a loader target's input: a few header bytes, then the file. Past
/// the end it yields zeros, so every input means something.
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data }
    }

    pub fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.data.split_first() else { return 0 };
        self.data = rest;
        b
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        (0..8).fold(0, |a, i| a | u64::from(self.u8()) << (8 * i))
    }

    /// Up to `n` bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// A string of up to `n` bytes (invalid UTF-8 replaced, byte for byte).
    pub fn string(&mut self, n: usize) -> String {
        self.bytes(n).iter().map(|&b| if b.is_ascii() { char::from(b) } else { '?' }).collect()
    }

    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// A guest RAM size from one byte: mostly valid sizes (small ones, so a
/// plan can be applied to a buffer), and the edges the loaders refuse.
pub fn ram_size(selector: u8, raw: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    match selector % 10 {
        0 => 2 * MIB,
        1 => 4 * MIB,
        2 => 16 * MIB,
        3 => 64 * MIB,
        4 => 0xC000_0000,
        5 => MIB,
        6 => MIB + 0x1000,
        7 => 0xC000_1000,
        8 => 3 * MIB + 0x800,
        _ => raw,
    }
}

const ZEROS: [u8; 4096] = [0; 4096];

/// Largest RAM a target renders a plan into.
pub const MAX_RENDERED_RAM: u64 = 16 << 20;

/// Checks what both loaders promise of their writes: pairwise disjoint,
/// inside `ram`, and (when `ram` is small enough to allocate) applied
/// exactly: data where the write says, zeros after it.
pub fn check_writes(writes: &[vid::entry::Write<'_>], ram_size: u64, apply: impl FnOnce(&mut [u8]) -> bool) {
    for (i, w) in writes.iter().enumerate() {
        let r = w.range();
        assert!(r.start <= r.end && r.end <= ram_size, "write {i} at {r:x?} outside RAM of {ram_size:#x}");
        for (j, v) in writes[..i].iter().enumerate() {
            let s = v.range();
            assert!(
                r.end <= s.start || s.end <= r.start || r.is_empty() || s.is_empty(),
                "writes {j} {s:x?} and {i} {r:x?} overlap"
            );
        }
    }
    if ram_size > MAX_RENDERED_RAM {
        return;
    }
    // Zeroed by the allocator page by page as touched: only the written
    // ranges are filled (with a pattern the writes must replace) and read.
    let mut ram = vec![0u8; ram_size as usize];
    for w in writes {
        ram[w.gpa as usize..w.range().end as usize].fill(0xcc);
    }
    assert!(apply(&mut ram), "a plan inside RAM does not apply");
    for w in writes {
        let start = w.gpa as usize;
        assert!(ram[start..start + w.data.len()] == *w.data, "write at {:#x} not applied", w.gpa);
        let zero = &ram[start + w.data.len()..start + w.data.len() + w.zero as usize];
        assert!(zero.chunks(4096).all(|c| c == &ZEROS[..c.len()]), "bss at {:#x} not zeroed", w.gpa);
    }
}
