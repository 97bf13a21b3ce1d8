//! Test fixtures: hand-built ELF64 executables, shared with the loader's tests.

use object::elf;

/// A minimal little-endian ELF64 executable for `machine`: header, program
/// headers, then the bytes of each `(vaddr, memsz, data, p_flags)` segment.
pub fn elf64(machine: u16, entry: u64, segments: &[(u64, u64, &[u8], u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&elf::ELFMAG);
    out.extend_from_slice(&[elf::ELFCLASS64, elf::ELFDATA2LSB, elf::EV_CURRENT, 0]);
    out.resize(16, 0);
    out.extend_from_slice(&elf::ET_EXEC.to_le_bytes());
    out.extend_from_slice(&machine.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&entry.to_le_bytes());
    out.extend_from_slice(&64u64.to_le_bytes()); // phoff
    out.extend_from_slice(&0u64.to_le_bytes()); // shoff
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&64u16.to_le_bytes());
    out.extend_from_slice(&56u16.to_le_bytes());
    out.extend_from_slice(&(segments.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0; 6]);
    let mut offset = 64 + 56 * segments.len() as u64;
    for &(vaddr, memsz, data, flags) in segments {
        out.extend_from_slice(&elf::PT_LOAD.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&vaddr.to_le_bytes());
        out.extend_from_slice(&vaddr.to_le_bytes());
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        out.extend_from_slice(&memsz.to_le_bytes());
        out.extend_from_slice(&0x1000u64.to_le_bytes());
        offset += data.len() as u64;
    }
    for &(_, _, data, _) in segments {
        out.extend_from_slice(data);
    }
    out
}
