use super::*;
use crate::fixtures::elf64;

#[test]
fn segments_and_entry_survive_conversion() {
    let text = [0x90u8; 37];
    let data = [1u8, 2, 3, 4];
    let input = elf64(
        elf::EM_X86_64,
        0x10_0040,
        &[(0x10_0000, 37, &text, elf::PF_R | elf::PF_X), (0x10_2008, 0x2000, &data, elf::PF_R | elf::PF_W)],
    );
    let output = convert(&input).unwrap();
    let (entry, segments) = inspect_elf32(&output).unwrap();
    assert_eq!(entry, 0x10_0040);
    assert_eq!(segments.len(), 2);
    assert_eq!(segments[0], (0x10_0000, 37, text.to_vec()));
    assert_eq!(segments[1], (0x10_2008, 0x2000, data.to_vec()));
}

#[test]
fn file_offsets_are_congruent_to_addresses() {
    let input = elf64(elf::EM_X86_64, 0x10_0000, &[(0x10_0123, 4, &[7; 4], elf::PF_R)]);
    let output = convert(&input).unwrap();
    let header = elf::FileHeader32::<LE>::parse(&output[..]).unwrap();
    let ph = &header.program_headers(LE, &output[..]).unwrap()[0];
    assert_eq!(ph.p_offset(LE) % 0x1000, 0x123);
}

#[test]
fn high_segments_are_refused() {
    let input = elf64(elf::EM_X86_64, 0x10_0000, &[(0xffff_ffff_8000_0000, 16, &[0; 16], elf::PF_R)]);
    assert!(matches!(convert(&input), Err(ConvertError::SegmentAbove4G { .. })));
}

#[test]
fn high_entry_is_refused() {
    let input = elf64(elf::EM_X86_64, 1 << 40, &[(0x10_0000, 16, &[0; 16], elf::PF_R)]);
    assert_eq!(convert(&input), Err(ConvertError::EntryAbove4G(1 << 40)));
}

#[test]
fn other_machines_and_garbage_are_refused() {
    let input = elf64(elf::EM_AARCH64, 0x10_0000, &[(0x10_0000, 16, &[0; 16], elf::PF_R)]);
    assert_eq!(convert(&input), Err(ConvertError::NotX86_64));
    assert!(matches!(convert(b"not an elf"), Err(ConvertError::Parse(_))));
    let empty = elf64(elf::EM_X86_64, 0x10_0000, &[]);
    assert_eq!(convert(&empty), Err(ConvertError::NoLoadableSegments));
}
