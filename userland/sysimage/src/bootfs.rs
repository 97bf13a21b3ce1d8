//! The bootfs archive: a flat, read-only list of named files.
//!
//! All integers are little-endian; offsets count from the start of the image.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `"TESSBFS1"` |
//! | 8 | 4 | format version ([`VERSION`]) |
//! | 12 | 4 | entry count (at most [`MAX_FILES`]) |
//! | 16 | 8 | image size in bytes, header included |
//! | 24 | 48 × count | entries: name (32 bytes, ASCII, zero-padded), data offset (u64), data length (u64) |
//! | … | | file data, each file at an 8-byte aligned offset after the entry table |
//!
//! The image may be followed by padding (a boot module rounded up to a
//! page); only the declared image size is read.

use crate::{Error, MAX_NAME_LEN, valid_name};

pub const MAGIC: [u8; 8] = *b"TESSBFS1";
pub const VERSION: u32 = 1;
/// Most entries a bootfs may have.
pub const MAX_FILES: u32 = 256;
/// File data is aligned to this many bytes.
pub const ALIGN: u64 = 8;

const HEADER_SIZE: usize = 24;
const ENTRY_SIZE: usize = MAX_NAME_LEN + 16;

/// A checked bootfs image.
#[derive(Clone, Copy, Debug)]
pub struct Bootfs<'a> {
    /// The image, cut to its declared size.
    image: &'a [u8],
    count: usize,
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

impl<'a> Bootfs<'a> {
    /// Parses and checks the header and every entry: names valid and
    /// unique, data aligned, after the entry table and inside the image.
    pub fn parse(bytes: &'a [u8]) -> Result<Bootfs<'a>, Error> {
        let header = bytes.get(..HEADER_SIZE).ok_or(Error::Truncated)?;
        if header[..8] != MAGIC {
            return Err(Error::BadMagic);
        }
        let version = u32_at(header, 8).ok_or(Error::Truncated)?;
        if version != VERSION {
            return Err(Error::BootfsVersion(version));
        }
        let count = u32_at(header, 12).ok_or(Error::Truncated)?;
        if count > MAX_FILES {
            return Err(Error::TooManyFiles(count));
        }
        let size = u64_at(header, 16).ok_or(Error::Truncated)?;
        let table_end = (HEADER_SIZE + count as usize * ENTRY_SIZE) as u64;
        if size < table_end {
            return Err(Error::BadImageSize);
        }
        let size = usize::try_from(size).map_err(|_| Error::Truncated)?;
        let image = bytes.get(..size).ok_or(Error::Truncated)?;

        let fs = Bootfs { image, count: count as usize };
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
        Ok(fs)
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

/// Packs `files` into a bootfs image, in the order given.
#[cfg(any(test, feature = "std"))]
pub fn write(files: &[(&str, &[u8])]) -> Result<std::vec::Vec<u8>, Error> {
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
    let align = |n: usize| n.next_multiple_of(ALIGN as usize);
    let mut out = std::vec::Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    let size_at = out.len();
    out.extend_from_slice(&0u64.to_le_bytes());
    let mut offset = HEADER_SIZE + files.len() * ENTRY_SIZE;
    for (name, data) in files {
        let mut field = [0u8; MAX_NAME_LEN];
        field[..name.len()].copy_from_slice(name.as_bytes());
        out.extend_from_slice(&field);
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
    out[size_at..size_at + 8].copy_from_slice(&size.to_le_bytes());
    Ok(out)
}
