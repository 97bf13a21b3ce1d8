use super::*;
use std::vec::Vec;

const ROOT: RootTask<'static> = RootTask {
    name: "supervisor",
    binary: "sup.elf",
    priority: 31,
    stack: 0x4000,
    memory: 0x10_0000,
    on_death: OnDeath::Reboot,
};

fn write_with_root(files: &[(&str, &[u8])]) -> Result<Vec<u8>, Error> {
    let mut all: Vec<(&str, &[u8])> = std::vec![(ROOT.binary, b"\x7fELF")];
    all.extend_from_slice(files);
    write(&ROOT, &all)
}

#[test]
fn bootfs_round_trips_with_aligned_data() {
    let files: [(&str, &[u8]); 3] = [("a", b"12345"), ("bb", b""), ("ccc", b"xyz")];
    let img = write_with_root(&files).unwrap();
    assert_eq!(&img[..8], &MAGIC);
    let fs = Bootfs::parse(&img).unwrap();
    assert_eq!(fs.len(), 4);
    let got: Vec<_> = fs.files().skip(1).map(|f| (f.name, f.data)).collect();
    assert_eq!(got, files);
    assert!(fs.files().all(|f| (f.data.as_ptr() as usize - img.as_ptr() as usize).is_multiple_of(8)));
    assert_eq!(fs.file("ccc"), Some(&b"xyz"[..]));
    assert_eq!(fs.file("d"), None);
    // Padding after the declared size (a page-rounded module) is ignored.
    let mut padded = img.clone();
    padded.resize(4096, 0xff);
    assert_eq!(Bootfs::parse(&padded).unwrap().file("a"), Some(&b"12345"[..]));
}

#[test]
fn the_header_names_the_root_task() {
    let img = write_with_root(&[("other", b"x")]).unwrap();
    let fs = Bootfs::parse(&img).unwrap();
    assert_eq!(fs.root(), ROOT);
    assert_eq!(fs.root_binary(), Some(&b"\x7fELF"[..]));
    // The documented layout, byte for byte.
    assert_eq!(u32::from_le_bytes(img[8..12].try_into().unwrap()), VERSION);
    assert_eq!(&img[24..34], b"supervisor");
    assert_eq!(&img[56..63], b"sup.elf");
    assert_eq!(u64::from_le_bytes(img[88..96].try_into().unwrap()), ROOT.stack);
    assert_eq!(u64::from_le_bytes(img[96..104].try_into().unwrap()), ROOT.memory);
    assert_eq!(img[104], 31);
    assert_eq!(img[105], 1);
    assert_eq!(&img[HEADER_SIZE..HEADER_SIZE + 7], b"sup.elf");
}

#[test]
fn the_writer_refuses_bad_and_duplicate_names() {
    assert_eq!(write_with_root(&[("", b"")]), Err(Error::BadName { index: 1 }));
    assert_eq!(write_with_root(&[("a b", b"")]), Err(Error::BadName { index: 1 }));
    assert_eq!(write_with_root(&[(&"x".repeat(33), b"")]), Err(Error::BadName { index: 1 }));
    assert_eq!(write_with_root(&[("a", b""), ("a", b"")]), Err(Error::DuplicateName { index: 2 }));
}

#[test]
fn the_writer_refuses_a_bad_root_task() {
    let files: [(&str, &[u8]); 1] = [("sup.elf", b"")];
    let bad = |root: RootTask<'_>| write(&root, &files).unwrap_err();
    assert_eq!(bad(RootTask { name: "", ..ROOT }), Error::BadRootTask("bad name"));
    assert_eq!(bad(RootTask { binary: "a b", ..ROOT }), Error::BadRootTask("bad binary name"));
    assert_eq!(bad(RootTask { binary: "other", ..ROOT }), Error::BadRootTask("binary not in the bootfs"));
    assert_eq!(bad(RootTask { priority: 32, ..ROOT }), Error::BadRootTask("priority out of range"));
    assert_eq!(bad(RootTask { stack: 0, ..ROOT }), Error::BadRootTask("bad stack size"));
    assert_eq!(bad(RootTask { stack: 0x4001, ..ROOT }), Error::BadRootTask("bad stack size"));
    assert_eq!(bad(RootTask { memory: 0x800, ..ROOT }), Error::BadRootTask("bad memory size"));
    assert_eq!(bad(RootTask { memory: MAX_TASK_MEMORY + PAGE_SIZE, ..ROOT }), Error::BadRootTask("bad memory size"));
    assert!(write(&RootTask { memory: 0, ..ROOT }, &files).is_ok());
}

/// Offsets of the fields of entry `i`.
const fn entry(i: usize) -> usize {
    HEADER_SIZE + ENTRY_SIZE * i
}

fn patch(img: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut img = img.to_vec();
    img[at..at + bytes.len()].copy_from_slice(bytes);
    img
}

#[test]
fn malformed_bootfs_images_are_refused() {
    // Entry 0 is the root binary; 1 and 2 are "a" and "b".
    let img = write_with_root(&[("a", b"12345678"), ("b", b"xy")]).unwrap();
    let size = img.len() as u64;
    assert_eq!(Bootfs::parse(&img[..10]).unwrap_err(), Error::Truncated);
    assert_eq!(Bootfs::parse(&img[..HEADER_SIZE - 1]).unwrap_err(), Error::Truncated);
    assert_eq!(Bootfs::parse(&img[..img.len() - 1]).unwrap_err(), Error::Truncated);
    assert_eq!(Bootfs::parse(&patch(&img, 0, b"X")).unwrap_err(), Error::BadMagic);
    assert_eq!(Bootfs::parse(&patch(&img, 8, &[1])).unwrap_err(), Error::Version(1));
    assert_eq!(Bootfs::parse(&patch(&img, 8, &[2])).unwrap_err(), Error::Version(2));
    assert_eq!(Bootfs::parse(&patch(&img, 8, &[4])).unwrap_err(), Error::Version(4));
    assert_eq!(Bootfs::parse(&patch(&img, 12, &1000u32.to_le_bytes())).unwrap_err(), Error::TooManyFiles(1000));
    assert_eq!(Bootfs::parse(&patch(&img, 16, &30u64.to_le_bytes())).unwrap_err(), Error::BadImageSize);
    assert_eq!(Bootfs::parse(&patch(&img, 16, &(size + 8).to_le_bytes())).unwrap_err(), Error::Truncated);
    assert_eq!(Bootfs::parse(&patch(&img, entry(2), b"a")).unwrap_err(), Error::DuplicateName { index: 2 });
    assert_eq!(Bootfs::parse(&patch(&img, entry(2), &[0])).unwrap_err(), Error::BadName { index: 2 });
    assert_eq!(Bootfs::parse(&patch(&img, entry(1) + 5, b"z")).unwrap_err(), Error::BadName { index: 1 });
    assert_eq!(Bootfs::parse(&patch(&img, entry(1) + 1, b"\n")).unwrap_err(), Error::BadName { index: 1 });
    let offset = |i| entry(i) + 32;
    let len = |i| entry(i) + 40;
    assert_eq!(Bootfs::parse(&patch(&img, offset(2), &[0x71])).unwrap_err(), Error::MisalignedFile { index: 2 });
    assert_eq!(
        Bootfs::parse(&patch(&img, offset(1), &8u64.to_le_bytes())).unwrap_err(),
        Error::FileOutOfBounds { index: 1 }
    );
    assert_eq!(
        Bootfs::parse(&patch(&img, len(2), &size.to_le_bytes())).unwrap_err(),
        Error::FileOutOfBounds { index: 2 }
    );
    assert_eq!(
        Bootfs::parse(&patch(&img, len(2), &u64::MAX.to_le_bytes())).unwrap_err(),
        Error::FileOutOfBounds { index: 2 }
    );
    assert_eq!(
        Bootfs::parse(&patch(&img, offset(2), &u64::MAX.to_le_bytes()[..7])).unwrap_err(),
        Error::MisalignedFile { index: 2 }
    );
}

#[test]
fn a_bad_root_task_header_is_refused() {
    let img = write_with_root(&[("a", b"12345678")]).unwrap();
    let refused = |at: usize, bytes: &[u8]| Bootfs::parse(&patch(&img, at, bytes)).unwrap_err();
    let root = |reason| Error::BadRootTask(reason);
    assert_eq!(refused(24, &[0]), root("bad name"));
    assert_eq!(refused(24, b" "), root("bad name"));
    assert_eq!(refused(24 + 12, b"x"), root("bad name")); // a byte after the padding starts
    assert_eq!(refused(56, &[0]), root("bad binary name"));
    // Any file may be the binary.
    let other = patch(&img, 56, b"a\0\0\0\0\0\0");
    assert_eq!(Bootfs::parse(&other).unwrap().root_binary(), Some(&b"12345678"[..]));
    assert_eq!(refused(56, b"nothere"), root("binary not in the bootfs"));
    assert_eq!(refused(88, &0u64.to_le_bytes()), root("bad stack size"));
    assert_eq!(refused(88, &0x1001u64.to_le_bytes()), root("bad stack size"));
    assert_eq!(refused(88, &(MAX_TASK_MEMORY + PAGE_SIZE).to_le_bytes()), root("bad stack size"));
    assert_eq!(refused(96, &0x10u64.to_le_bytes()), root("bad memory size"));
    assert_eq!(refused(96, &u64::MAX.to_le_bytes()), root("bad memory size"));
    assert_eq!(refused(104, &[32]), root("priority out of range"));
    assert_eq!(refused(104, &[0xff]), root("priority out of range"));
    assert_eq!(refused(105, &[2]), root("unknown on-death policy"));
    assert_eq!(Bootfs::parse(&patch(&img, 105, &[0])).unwrap().root().on_death, OnDeath::Halt);
    for at in 106..HEADER_SIZE {
        assert_eq!(refused(at, &[1]), root("reserved bytes not zero"), "reserved byte {at}");
    }
}

#[test]
fn every_truncated_or_bit_flipped_image_is_handled_without_panicking() {
    let img = write_with_root(&[("a", b"12345678"), ("b", b"xy")]).unwrap();
    for len in 0..img.len() {
        assert!(Bootfs::parse(&img[..len]).is_err(), "prefix of {len} bytes accepted");
    }
    for i in 0..img.len() {
        for bit in 0..8 {
            let mut flipped = img.clone();
            flipped[i] ^= 1 << bit;
            if let Ok(fs) = Bootfs::parse(&flipped) {
                assert!(fs.root_binary().is_some());
                assert_eq!(fs.files().count(), fs.len());
            }
        }
    }
}

#[test]
fn errors_display_their_subject() {
    assert_eq!(std::format!("{}", Error::BadRootTask("bad name")), "bootfs: root task: bad name");
    assert_eq!(std::format!("{}", Error::TooManyFiles(300)), "bootfs: 300 files (at most 256)");
    assert_eq!(std::format!("{}", Error::Version(1)), "bootfs: unsupported version 1");
}
