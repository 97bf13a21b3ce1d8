//! The boot image ("bootfs"): a flat, read-only list of named files behind
//! a fixed header that names the root task.
//!
//! The kernel reads only this: the header's root task (the supervisor) and
//! the file table, to load the root task's binary. Everything else in the
//! image (the compiled manifest, the other tasks' binaries, guest files) is
//! the supervisor's business (`sysimage`).
//!
//! All integers are little-endian; offsets count from the start of the image.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `"TESSBFS1"` |
//! | 8 | 4 | format version ([`VERSION`]) |
//! | 12 | 4 | entry count (at most [`MAX_FILES`]) |
//! | 16 | 8 | image size in bytes, header included |
//! | 24 | 32 | root task: name (a valid name, zero-padded) |
//! | 56 | 32 | root task: its binary, the name of a file of this image |
//! | 88 | 8 | root task: stack bytes (whole pages, at least one) |
//! | 96 | 8 | root task: memory bytes (whole pages, may be 0) |
//! | 104 | 1 | root task: priority (at most [`abi::invoke::MAX_PRIORITY`]) |
//! | 105 | 1 | root task: what the kernel does when it dies ([`OnDeath`]: 0 halt, 1 reboot) |
//! | 106 | 6 | reserved, zero |
//! | 112 | 48 × count | entries: name (32 bytes, zero-padded), data offset (u64), data length (u64) |
//! | … | | file data, each file at an 8-byte aligned offset after the entry table |
//!
//! The image may be followed by padding (a boot module rounded up to a
//! page); only the declared image size is read. Every byte is an
//! allegation: [`Bootfs::parse`] checks every field, offset and length once.

#![no_std]
#![forbid(unsafe_code)]

#[cfg(any(test, feature = "std"))]
extern crate std;

use abi::limits::MAX_TASK_MEMORY;
use core::fmt;
use x86defs::PAGE_SIZE;

pub const MAGIC: [u8; 8] = *b"TESSBFS1";
/// Format version (2: the root-task header; 3: its [`OnDeath`] byte).
pub const VERSION: u32 = 3;
/// Most entries a bootfs may have.
pub const MAX_FILES: u32 = 256;
/// File data is aligned to this many bytes.
pub const ALIGN: u64 = 8;
/// Longest name of a file or of the root task, in bytes.
pub const MAX_NAME_LEN: usize = 32;
/// Bytes before the entry table.
pub const HEADER_SIZE: usize = 112;
/// Bytes of one entry.
pub const ENTRY_SIZE: usize = MAX_NAME_LEN + 16;

/// Offsets of the header's fields.
mod at {
    pub const VERSION: usize = 8;
    pub const COUNT: usize = 12;
    pub const SIZE: usize = 16;
    pub const ROOT_NAME: usize = 24;
    pub const ROOT_BINARY: usize = 56;
    pub const ROOT_STACK: usize = 88;
    pub const ROOT_MEMORY: usize = 96;
    pub const ROOT_PRIORITY: usize = 104;
    pub const ROOT_ON_DEATH: usize = 105;
    pub const RESERVED: usize = 106;
}
const _: () = assert!(at::RESERVED + 6 == HEADER_SIZE);

/// Why a bootfs was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The bytes end before the header, the entry table or the declared image size.
    Truncated,
    /// The image does not start with [`MAGIC`].
    BadMagic,
    /// A format version this reader does not know.
    Version(u32),
    /// More entries than [`MAX_FILES`].
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
    /// The header's root task is malformed, or its binary is not a file.
    BadRootTask(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Truncated => f.write_str("bootfs: truncated"),
            Error::BadMagic => f.write_str("bootfs: bad magic"),
            Error::Version(v) => write!(f, "bootfs: unsupported version {v}"),
            Error::TooManyFiles(n) => write!(f, "bootfs: {n} files (at most {MAX_FILES})"),
            Error::BadImageSize => f.write_str("bootfs: image size smaller than its entry table"),
            Error::BadName { index } => write!(f, "bootfs: entry {index}: bad name"),
            Error::DuplicateName { index } => write!(f, "bootfs: entry {index}: duplicate name"),
            Error::MisalignedFile { index } => write!(f, "bootfs: entry {index}: offset not 8-byte aligned"),
            Error::FileOutOfBounds { index } => write!(f, "bootfs: entry {index}: data out of bounds"),
            Error::BadRootTask(reason) => write!(f, "bootfs: root task: {reason}"),
        }
    }
}

/// What the kernel does when the root task dies (the manifest's
/// `[system] on_supervisor_death`): nothing can restart the supervisor,
/// so the machine either stops or starts again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OnDeath {
    /// Stop every CPU and power off (or halt) with a report.
    Halt = 0,
    /// Stop every CPU and reset the machine, with a report.
    Reboot = 1,
}

impl OnDeath {
    /// The header byte's meaning, if it has one.
    pub fn from_byte(byte: u8) -> Option<OnDeath> {
        match byte {
            0 => Some(OnDeath::Halt),
            1 => Some(OnDeath::Reboot),
            _ => None,
        }
    }

    /// The manifest's word for it.
    pub fn name(self) -> &'static str {
        match self {
            OnDeath::Halt => "halt",
            OnDeath::Reboot => "reboot",
        }
    }
}

/// The task the kernel starts itself, as the header names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootTask<'a> {
    pub name: &'a str,
    /// The file holding its ELF executable.
    pub binary: &'a str,
    /// `0..=`[`abi::invoke::MAX_PRIORITY`].
    pub priority: u8,
    /// Bytes of stack for its thread: whole pages, at least one.
    pub stack: u64,
    /// Bytes of memory mapped for it besides its image and stack: whole pages.
    pub memory: u64,
    /// What the kernel does when it dies.
    pub on_death: OnDeath,
}

impl RootTask<'_> {
    /// Checks everything but the binary's presence.
    fn check(&self) -> Result<(), Error> {
        let pages = |n: u64| n.is_multiple_of(PAGE_SIZE) && n <= MAX_TASK_MEMORY;
        if !valid_name(self.name) {
            Err(Error::BadRootTask("bad name"))
        } else if !valid_name(self.binary) {
            Err(Error::BadRootTask("bad binary name"))
        } else if u64::from(self.priority) > abi::invoke::MAX_PRIORITY {
            Err(Error::BadRootTask("priority out of range"))
        } else if self.stack == 0 || !pages(self.stack) {
            Err(Error::BadRootTask("bad stack size"))
        } else if !pages(self.memory) {
            Err(Error::BadRootTask("bad memory size"))
        } else {
            Ok(())
        }
    }
}

/// A checked bootfs image.
#[derive(Clone, Copy, Debug)]
pub struct Bootfs<'a> {
    /// The image, cut to its declared size.
    image: &'a [u8],
    count: usize,
    root: RootTask<'a>,
}

/// One file of a bootfs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct File<'a> {
    pub name: &'a str,
    pub data: &'a [u8],
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// A raw entry: the name field, offset and length, not yet checked.
fn raw_entry(image: &[u8], index: usize) -> Option<(&[u8], u64, u64)> {
    let at = HEADER_SIZE + index * ENTRY_SIZE;
    let name = image.get(at..at + MAX_NAME_LEN)?;
    Some((name, u64_at(image, at + MAX_NAME_LEN)?, u64_at(image, at + MAX_NAME_LEN + 8)?))
}

/// The name in a zero-padded name field, if it is valid.
fn decode_name(field: &[u8]) -> Option<&str> {
    let len = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    if field[len..].iter().any(|&b| b != 0) {
        return None;
    }
    core::str::from_utf8(&field[..len]).ok().filter(|name| valid_name(name))
}

/// The root task in a header (already known to be [`HEADER_SIZE`] long).
fn root_task(header: &[u8]) -> Result<RootTask<'_>, Error> {
    let name_field = |at: usize| &header[at..at + MAX_NAME_LEN];
    if header[at::RESERVED..HEADER_SIZE].iter().any(|&b| b != 0) {
        return Err(Error::BadRootTask("reserved bytes not zero"));
    }
    let root = RootTask {
        name: decode_name(name_field(at::ROOT_NAME)).ok_or(Error::BadRootTask("bad name"))?,
        binary: decode_name(name_field(at::ROOT_BINARY)).ok_or(Error::BadRootTask("bad binary name"))?,
        priority: header[at::ROOT_PRIORITY],
        stack: u64_at(header, at::ROOT_STACK).ok_or(Error::Truncated)?,
        memory: u64_at(header, at::ROOT_MEMORY).ok_or(Error::Truncated)?,
        on_death: OnDeath::from_byte(header[at::ROOT_ON_DEATH]).ok_or(Error::BadRootTask("unknown on-death policy"))?,
    };
    root.check()?;
    Ok(root)
}

impl<'a> Bootfs<'a> {
    /// Parses and checks the header and every entry: the root task well
    /// formed and its binary present; names valid and unique, data aligned,
    /// after the entry table and inside the image.
    pub fn parse(bytes: &'a [u8]) -> Result<Bootfs<'a>, Error> {
        let header = bytes.get(..HEADER_SIZE).ok_or(Error::Truncated)?;
        if header[..MAGIC.len()] != MAGIC {
            return Err(Error::BadMagic);
        }
        let version = u32_at(header, at::VERSION).ok_or(Error::Truncated)?;
        if version != VERSION {
            return Err(Error::Version(version));
        }
        let count = u32_at(header, at::COUNT).ok_or(Error::Truncated)?;
        if count > MAX_FILES {
            return Err(Error::TooManyFiles(count));
        }
        let size = u64_at(header, at::SIZE).ok_or(Error::Truncated)?;
        let table_end = (HEADER_SIZE + count as usize * ENTRY_SIZE) as u64;
        if size < table_end {
            return Err(Error::BadImageSize);
        }
        let size = usize::try_from(size).map_err(|_| Error::Truncated)?;
        let image = bytes.get(..size).ok_or(Error::Truncated)?;
        let root = root_task(header)?;

        let fs = Bootfs { image, count: count as usize, root };
        for i in 0..fs.count {
            let index = i as u32;
            let (name, offset, len) = raw_entry(image, i).ok_or(Error::Truncated)?;
            let name = decode_name(name).ok_or(Error::BadName { index })?;
            if !offset.is_multiple_of(ALIGN) {
                return Err(Error::MisalignedFile { index });
            }
            if offset < table_end || offset.checked_add(len).is_none_or(|end| end > size as u64) {
                return Err(Error::FileOutOfBounds { index });
            }
            if fs.files().take(i).any(|f| f.name == name) {
                return Err(Error::DuplicateName { index });
            }
        }
        if fs.file(root.binary).is_none() {
            return Err(Error::BadRootTask("binary not in the bootfs"));
        }
        Ok(fs)
    }

    /// The root task the header names (checked by [`Bootfs::parse`]).
    pub fn root(&self) -> RootTask<'a> {
        self.root
    }

    /// The root task's ELF executable (always present after [`Bootfs::parse`]).
    pub fn root_binary(&self) -> Option<&'a [u8]> {
        self.file(self.root.binary)
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The file at `index`, in archive order.
    pub fn get(&self, index: usize) -> Option<File<'a>> {
        if index >= self.count {
            return None;
        }
        let (name, offset, len) = raw_entry(self.image, index)?;
        let start = usize::try_from(offset).ok()?;
        let data = self.image.get(start..start.checked_add(usize::try_from(len).ok()?)?)?;
        Some(File { name: decode_name(name)?, data })
    }

    /// The contents of the file called `name`.
    pub fn file(&self, name: &str) -> Option<&'a [u8]> {
        self.files().find(|f| f.name == name).map(|f| f.data)
    }

    /// Every file, in archive order.
    pub fn files(&self) -> impl Iterator<Item = File<'a>> + 'a {
        let fs = *self;
        (0..fs.count).filter_map(move |i| fs.get(i))
    }
}

/// True if `name` can name a bootfs file or the root task:
/// 1..=[`MAX_NAME_LEN`] printable ASCII characters other than space.
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_graphic())
}

/// Packs `files` into a bootfs image, in the order given, behind a header
/// naming `root` (whose binary must be one of `files`).
#[cfg(any(test, feature = "std"))]
pub fn write(root: &RootTask<'_>, files: &[(&str, &[u8])]) -> Result<std::vec::Vec<u8>, Error> {
    let count = u32::try_from(files.len()).unwrap_or(u32::MAX);
    if count > MAX_FILES {
        return Err(Error::TooManyFiles(count));
    }
    for (i, (name, _)) in files.iter().enumerate() {
        let index = i as u32;
        if !valid_name(name) {
            return Err(Error::BadName { index });
        }
        if files[..i].iter().any(|(other, _)| other == name) {
            return Err(Error::DuplicateName { index });
        }
    }
    root.check()?;
    if !files.iter().any(|(name, _)| *name == root.binary) {
        return Err(Error::BadRootTask("binary not in the bootfs"));
    }
    let name_field = |name: &str| {
        let mut field = [0u8; MAX_NAME_LEN];
        field[..name.len()].copy_from_slice(name.as_bytes());
        field
    };
    let align = |n: usize| n.next_multiple_of(ALIGN as usize);
    let mut out = std::vec::Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes()); // the size, patched below
    out.extend_from_slice(&name_field(root.name));
    out.extend_from_slice(&name_field(root.binary));
    out.extend_from_slice(&root.stack.to_le_bytes());
    out.extend_from_slice(&root.memory.to_le_bytes());
    out.push(root.priority);
    out.push(root.on_death as u8);
    out.resize(HEADER_SIZE, 0);
    let mut offset = HEADER_SIZE + files.len() * ENTRY_SIZE;
    for (name, data) in files {
        out.extend_from_slice(&name_field(name));
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        offset = align(offset + data.len());
    }
    for (_, data) in files {
        out.resize(align(out.len()), 0);
        out.extend_from_slice(data);
    }
    out.resize(align(out.len()), 0);
    let size = out.len() as u64;
    out[at::SIZE..at::SIZE + 8].copy_from_slice(&size.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests;
