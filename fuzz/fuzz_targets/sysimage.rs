//! The supervisor's side of the boot image (`sysimage`): any bytes as a
//! bootfs archive and as a compiled manifest (postcard).
//!
//! Oracles: every entry of an accepted bootfs can be read, and packing its
//! files again under the same root-task header gives an archive that reads
//! back the same; an accepted
//! compiled manifest encodes to bytes that decode to the same manifest.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sysimage::{Bootfs, Manifest, SystemImage, bootfs};

fuzz_target!(|data: &[u8]| {
    if let Ok(fs) = Bootfs::parse(data) {
        let files: Vec<(&str, &[u8])> = fs.files().map(|f| (f.name, f.data)).collect();
        assert_eq!(files.len(), fs.len(), "an entry of an accepted bootfs cannot be read");
        for (name, bytes) in &files {
            assert_eq!(fs.file(name), Some(*bytes));
        }
        let again = bootfs::write(&fs.root(), &files).unwrap_or_else(|e| panic!("repacking refused: {e}"));
        let reread = Bootfs::parse(&again).unwrap_or_else(|e| panic!("repacked bootfs refused: {e}"));
        assert_eq!(reread.root(), fs.root(), "the root task's header changed in a round trip");
        assert!(reread.files().map(|f| (f.name, f.data)).eq(files.iter().copied()));
        if let Ok(system) = SystemImage::parse(data) {
            for task in &system.manifest.tasks {
                assert!(system.binary(task).is_some());
            }
            for partition in &system.manifest.partitions {
                assert!(system.guest_image(partition).is_some());
            }
        }
    }
    if let Ok(manifest) = Manifest::parse(data) {
        let bytes = manifest.to_vec();
        let again = Manifest::parse(&bytes).unwrap_or_else(|e| panic!("re-encoded manifest refused: {e}"));
        assert_eq!(again, manifest);
    }
});
