//! The Tessera system image: what the supervisor is handed at boot.
//!
//! The kernel passes one boot module, a **bootfs** ([`bootfs`]), to the root
//! task (the supervisor). It holds a file named [`MANIFEST_FILE`], the
//! compiled manifest ([`manifest`]): the tasks to start, their priorities,
//! memory and capabilities, and the guest partitions. It also holds one ELF
//! executable per task binary and each partition's guest kernel and modules
//! (named `guest<k>:image`, `guest<k>:module<i>`, see [`guest_image_name`]).
//! `tools/manifest` (`tessera-manifest build`) writes both from `system.toml`.
//!
//! Everything here is read in `no_std` without a heap, and every byte is
//! treated as an allegation: [`SystemImage::parse`] checks every offset,
//! length, index and range once, so code that uses the result can index
//! without panicking. The writers (`std` feature) are for the host tool.

#![no_std]
#![forbid(unsafe_code)]

#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod bootfs;
pub mod enlightenments;
pub mod manifest;

pub use bootfs::{Bootfs, File};
pub use enlightenments::{Enlightenment, EnlightenmentError, Enlightenments};
pub use manifest::{
    Endpoint, EndpointIndex, Gsi, IoPortRange, Manifest, Partition, Priority, Restart, Task, TaskIndex, Use,
};

use core::fmt;

/// Longest name of a bootfs file, task, endpoint or system, in bytes.
pub const MAX_NAME_LEN: usize = 32;
/// The bootfs file that holds the compiled manifest.
pub const MANIFEST_FILE: &str = "manifest";
/// Task memory and stacks are whole pages of this size.
pub const PAGE_SIZE: u64 = 4096;

/// Why an image, a bootfs or a compiled manifest was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The bytes end before the header, the entry table or the declared image size.
    Truncated,
    /// The image does not start with [`bootfs::MAGIC`].
    BadMagic,
    /// A bootfs format version this reader does not know.
    BootfsVersion(u32),
    /// More entries than [`bootfs::MAX_FILES`].
    TooManyFiles(u32),
    /// The declared image size is smaller than the header and entry table.
    BadImageSize,
    /// Entry `index` has an empty, over-long, non-ASCII or badly padded name.
    BadName { index: u32 },
    /// Entry `index` has the same name as an earlier one.
    DuplicateName { index: u32 },
    /// Entry `index` starts at an offset that is not 8-byte aligned.
    MisalignedFile { index: u32 },
    /// Entry `index` overlaps the entry table or runs past the image.
    FileOutOfBounds { index: u32 },
    /// The bootfs has no [`MANIFEST_FILE`].
    NoManifest,
    /// A compiled-manifest version this reader does not know.
    ManifestVersion(u32),
    /// The manifest bytes are not a valid encoding (or a list exceeds its bound).
    Decode,
    /// Bytes follow the encoded manifest.
    TrailingBytes,
    /// The manifest is well-formed but inconsistent.
    BadManifest(&'static str),
    /// Task `task` (start-order index) is inconsistent.
    BadTask { task: usize, reason: &'static str },
    /// Task `task`'s binary is not in the bootfs.
    MissingBinary { task: usize },
    /// Partition `partition` (manifest order) is inconsistent.
    BadPartition { partition: usize, reason: &'static str },
    /// A guest file (kernel image or module) of partition `partition` is not in the bootfs.
    MissingGuestFile { partition: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Truncated => f.write_str("bootfs: truncated"),
            Error::BadMagic => f.write_str("bootfs: bad magic"),
            Error::BootfsVersion(v) => write!(f, "bootfs: unsupported version {v}"),
            Error::TooManyFiles(n) => {
                write!(f, "bootfs: {n} files (at most {})", bootfs::MAX_FILES)
            }
            Error::BadImageSize => f.write_str("bootfs: image size smaller than its entry table"),
            Error::BadName { index } => write!(f, "bootfs: entry {index}: bad name"),
            Error::DuplicateName { index } => write!(f, "bootfs: entry {index}: duplicate name"),
            Error::MisalignedFile { index } => {
                write!(f, "bootfs: entry {index}: offset not 8-byte aligned")
            }
            Error::FileOutOfBounds { index } => {
                write!(f, "bootfs: entry {index}: data out of bounds")
            }
            Error::NoManifest => write!(f, "bootfs: no \"{MANIFEST_FILE}\" file"),
            Error::ManifestVersion(v) => write!(f, "manifest: unsupported version {v}"),
            Error::Decode => f.write_str("manifest: malformed encoding"),
            Error::TrailingBytes => f.write_str("manifest: trailing bytes"),
            Error::BadManifest(reason) => write!(f, "manifest: {reason}"),
            Error::BadTask { task, reason } => write!(f, "manifest: task {task}: {reason}"),
            Error::MissingBinary { task } => {
                write!(f, "manifest: task {task}: binary not in the bootfs")
            }
            Error::BadPartition { partition, reason } => write!(f, "manifest: partition {partition}: {reason}"),
            Error::MissingGuestFile { partition } => {
                write!(f, "manifest: partition {partition}: guest file not in the bootfs")
            }
        }
    }
}

/// A checked system image: the bootfs and the manifest inside it.
#[derive(Clone, Debug)]
pub struct SystemImage<'a> {
    pub bootfs: Bootfs<'a>,
    pub manifest: Manifest<'a>,
}

impl<'a> SystemImage<'a> {
    /// Parses and checks a bootfs image, its manifest, and that every
    /// task's binary is present.
    pub fn parse(image: &'a [u8]) -> Result<SystemImage<'a>, Error> {
        let bootfs = Bootfs::parse(image)?;
        let manifest = Manifest::parse(bootfs.file(MANIFEST_FILE).ok_or(Error::NoManifest)?)?;
        if let Some(task) = manifest.tasks.iter().position(|t| bootfs.file(t.binary).is_none()) {
            return Err(Error::MissingBinary { task });
        }
        let missing =
            |p: &Partition<'_>| core::iter::once(&p.image).chain(&p.modules).any(|f| bootfs.file(f).is_none());
        if let Some(partition) = manifest.partitions.iter().position(missing) {
            return Err(Error::MissingGuestFile { partition });
        }
        Ok(SystemImage { bootfs, manifest })
    }

    /// The ELF executable of `task` (always present after [`SystemImage::parse`]).
    pub fn binary(&self, task: &Task<'_>) -> Option<&'a [u8]> {
        self.bootfs.file(task.binary)
    }

    /// The guest kernel of `partition` (always present after [`SystemImage::parse`]).
    pub fn guest_image(&self, partition: &Partition<'_>) -> Option<&'a [u8]> {
        self.bootfs.file(partition.image)
    }
}

/// Bootfs name of the guest kernel of partition `k` (manifest order):
/// `guest<k>:image`. It cannot clash with a task binary (no `:` there).
#[cfg(any(test, feature = "std"))]
pub fn guest_image_name(k: usize) -> std::string::String {
    std::format!("guest{k}:image")
}

/// Bootfs name of module `i` of partition `k`: `guest<k>:module<i>`.
#[cfg(any(test, feature = "std"))]
pub fn guest_module_name(k: usize, i: usize) -> std::string::String {
    std::format!("guest{k}:module{i}")
}

/// True if `name` can name a bootfs file: 1..=[`MAX_NAME_LEN`] printable
/// ASCII characters other than space.
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests;
