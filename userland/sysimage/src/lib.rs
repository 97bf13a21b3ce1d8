//! The Tessera system image: what the supervisor is handed at boot.
//!
//! The kernel passes one boot module, a **bootfs** (the [`bootfs`] crate,
//! re-exported here), to the root task (the supervisor), which the bootfs
//! header names. It holds a file named [`MANIFEST_FILE`], the
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

pub mod cpuid_mask;
pub mod enlightenments;
pub mod manifest;
pub mod objects;

pub use bootfs;
pub use bootfs::{Bootfs, File, MAX_NAME_LEN, valid_name};
pub use cpuid_mask::CpuidMask;
pub use enlightenments::{Enlightenment, EnlightenmentError, Enlightenments};
pub use manifest::{
    Classic, Connection, Devices, Endpoint, EndpointIndex, Gsi, IoPortRange, Manifest, OnReset, Partition,
    PartitionIndex, PortType, Priority, Restart, SchedulerPolicy, Task, TaskIndex, Use,
};

use core::fmt;

/// The bootfs file that holds the compiled manifest.
pub const MANIFEST_FILE: &str = "manifest";
/// Task memory and stacks are whole pages of this size.
pub use x86defs::PAGE_SIZE;

/// Why an image, a bootfs or a compiled manifest was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The bootfs itself (header, root task or file table) is malformed.
    Bootfs(bootfs::Error),
    /// The bootfs header's root task is not the manifest's supervisor.
    RootTaskMismatch,
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
    /// Connection `connection` (manifest order) is inconsistent.
    BadConnection { connection: usize, reason: &'static str },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Bootfs(e) => write!(f, "{e}"),
            Error::RootTaskMismatch => {
                f.write_str("bootfs: the header's root task is not the manifest's supervisor (name, binary, priority, stack, memory)")
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
            Error::BadConnection { connection, reason } => write!(f, "manifest: connection {connection}: {reason}"),
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
    /// Parses and checks a bootfs image, its manifest, that the header's
    /// root task is the manifest's supervisor, and that every task's binary
    /// is present. (What the kernel does when the root task dies is the
    /// header's alone: the kernel's setting, which the compiled manifest
    /// does not carry.)
    pub fn parse(image: &'a [u8]) -> Result<SystemImage<'a>, Error> {
        let bootfs = Bootfs::parse(image).map_err(Error::Bootfs)?;
        let manifest = Manifest::parse(bootfs.file(MANIFEST_FILE).ok_or(Error::NoManifest)?)?;
        let supervisor = manifest.supervisor().ok_or(Error::BadManifest("no tasks"))?;
        if bootfs.root() != root_task(supervisor, bootfs.root().on_death) {
            return Err(Error::RootTaskMismatch);
        }
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

/// The bootfs header's description of the supervisor `task`, whose death
/// the kernel meets with `on_death`.
pub fn root_task<'a>(task: &Task<'a>, on_death: bootfs::OnDeath) -> bootfs::RootTask<'a> {
    bootfs::RootTask {
        on_death,
        name: task.name,
        binary: task.binary,
        priority: task.priority.0,
        stack: task.stack,
        memory: task.memory,
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

#[cfg(test)]
mod tests;
