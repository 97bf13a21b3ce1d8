//! Writing a newc ("new ASCII", magic `070701`) cpio archive, the format
//! the Linux kernel unpacks an initramfs from
//! (`Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! Every header is 110 ASCII bytes: the magic and 13 eight-digit hex
//! fields (inode, mode, uid, gid, nlink, mtime, file size, device
//! major/minor, special-file major/minor, name size including its NUL,
//! checksum 0), then the name and its NUL padded to 4 bytes, then the data
//! padded to 4 bytes. The archive ends with the entry `TRAILER!!!`.
//! Owners are root and times 0, so the same inputs give the same bytes.

/// File type bits of `mode`.
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFCHR: u32 = 0o020000;

/// An archive being built in memory.
#[derive(Debug, Default)]
pub struct Archive {
    bytes: Vec<u8>,
    next_inode: u32,
}

impl Archive {
    pub fn new() -> Archive {
        Archive { bytes: Vec::new(), next_inode: 1 }
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        assert!(!name.is_empty() && !name.contains('\0'), "cpio names are non-empty without NUL");
        let nlink = if mode & 0o170000 == S_IFDIR { 2 } else { 1 };
        let fields = [
            self.next_inode,
            mode,
            0,
            0,
            nlink,
            0,
            u32::try_from(data.len()).expect("cpio entries are below 4 GiB"),
            0,
            0,
            rdev.0,
            rdev.1,
            u32::try_from(name.len() + 1).expect("short name"),
            0,
        ];
        self.next_inode += 1;
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    /// A directory (`perm` e.g. 0o755).
    pub fn dir(&mut self, name: &str, perm: u32) {
        self.entry(name, S_IFDIR | perm, (0, 0), &[]);
    }

    /// A regular file.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, S_IFREG | perm, (0, 0), data);
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, S_IFLNK | 0o777, (0, 0), target.as_bytes());
    }

    /// A character device node.
    pub fn char_device(&mut self, name: &str, perm: u32, major: u32, minor: u32) {
        self.entry(name, S_IFCHR | perm, (major, minor), &[]);
    }

    /// Ends the archive with the trailer and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.next_inode = 0;
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8], field: usize) -> u32 {
        let at = 6 + 8 * field;
        u32::from_str_radix(std::str::from_utf8(&bytes[at..at + 8]).unwrap(), 16).unwrap()
    }

    #[test]
    fn entries_follow_the_newc_layout() {
        let mut a = Archive::new();
        a.file("init", 0o755, b"#!/bin/sh\n");
        a.symlink("bin/sh", "busybox");
        a.char_device("dev/console", 0o600, 5, 1);
        let bytes = a.finish();
        assert_eq!(&bytes[..6], b"070701");
        assert_eq!(hex(&bytes, 1), S_IFREG | 0o755);
        assert_eq!(hex(&bytes, 6), 10, "file size");
        assert_eq!(hex(&bytes, 11), 5, "name size with its NUL");
        // 110 + "init\0" = 115, padded to 116; data 10 bytes padded to 12.
        assert_eq!(&bytes[110..115], b"init\0");
        assert_eq!(&bytes[116..126], b"#!/bin/sh\n");
        let link = &bytes[128..];
        assert_eq!(&link[..6], b"070701");
        assert_eq!(hex(link, 1), S_IFLNK | 0o777);
        assert_eq!(&link[110..117], b"bin/sh\0");
        assert_eq!(&link[120..127], b"busybox");
        let dev = &link[128..];
        assert_eq!((hex(dev, 1), hex(dev, 9), hex(dev, 10)), (S_IFCHR | 0o600, 5, 1));
        assert!(bytes.len().is_multiple_of(4));
        let trailer = &bytes[bytes.len() - 124..];
        assert_eq!(&trailer[110..121], b"TRAILER!!!\0");
    }

    #[test]
    fn the_same_inputs_give_the_same_archive() {
        let build = || {
            let mut a = Archive::new();
            a.dir("bin", 0o755);
            a.file("bin/x", 0o644, b"abc");
            a.finish()
        };
        assert_eq!(build(), build());
    }
}
