//! A few AML encoders (ACPI 6.5 chapter 20) for the DSDT: `NameOp`,
//! `PackageOp` with its `PkgLength`, integer and string constants,
//! `BufferOp` and `DeviceOp`. Enough for the sleep-state packages and the
//! VMBus device; anything larger should get its own encoder here rather
//! than a hand-written byte run.

use heapless::Vec;

/// `NameOp` (20.2.5.1): `NameOp NameString DataRefObject`.
pub const NAME_OP: u8 = 0x08;
/// `PackageOp` (20.2.5.4): `PackageOp PkgLength NumElements PackageElementList`.
pub const PACKAGE_OP: u8 = 0x12;
/// `ZeroOp` (20.2.3): the constant 0.
pub const ZERO_OP: u8 = 0x00;
/// `OneOp` (20.2.3): the constant 1.
pub const ONE_OP: u8 = 0x01;
/// `BytePrefix` (20.2.3): a one-byte integer follows.
pub const BYTE_PREFIX: u8 = 0x0a;
/// `WordPrefix`: a two-byte integer follows.
pub const WORD_PREFIX: u8 = 0x0b;
/// `DWordPrefix`: a four-byte integer follows.
pub const DWORD_PREFIX: u8 = 0x0c;
/// `QWordPrefix`: an eight-byte integer follows.
pub const QWORD_PREFIX: u8 = 0x0e;

/// `StringPrefix` (20.2.3): a NUL-terminated ASCII string follows.
pub const STRING_PREFIX: u8 = 0x0d;
/// `BufferOp` (20.2.5.4): `BufferOp PkgLength BufferSize ByteList`.
pub const BUFFER_OP: u8 = 0x11;
/// `ExtOpPrefix` (20.2.5.2), before `DeviceOp`.
pub const EXT_OP_PREFIX: u8 = 0x5b;
/// `DeviceOp` (20.2.5.2): `ExtOpPrefix 0x82 PkgLength NameString TermList`.
pub const DEVICE_OP: u8 = 0x82;
/// `RootChar` (20.2.2): a name string from the namespace root.
pub const ROOT_CHAR: u8 = 0x5c;
/// `DualNamePrefix` (20.2.2): two name segments follow.
pub const DUAL_NAME_PREFIX: u8 = 0x2e;
/// A resource template's `End Tag` (ACPI 6.5 6.4.2.9), checksum 0 ("none").
pub const END_TAG: [u8; 2] = [0x79, 0x00];

/// The largest value a `PkgLength` encodes (28 bits).
pub const PKG_LENGTH_MAX: usize = (1 << 28) - 1;

/// An AML stream, built into a fixed buffer.
pub type Aml<const N: usize> = Vec<u8, N>;

/// The stream did not fit its buffer, or a package is too long to encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AmlOverflow;

fn put<const N: usize>(aml: &mut Aml<N>, bytes: &[u8]) -> Result<(), AmlOverflow> {
    aml.extend_from_slice(bytes).map_err(|_| AmlOverflow)
}

/// Appends a `PkgLength` for `body` bytes following it. The encoded length
/// counts the `PkgLength` bytes themselves, so the encoding is the shortest
/// that holds `body + its own size`: one byte (bits 0-5) up to 63, else a
/// lead byte (count of extra bytes in bits 6-7, low nibble in bits 0-3)
/// followed by 1-3 bytes holding the rest, least significant first.
pub fn pkg_length<const N: usize>(aml: &mut Aml<N>, body: usize) -> Result<(), AmlOverflow> {
    if body < 63 {
        return put(aml, &[(body + 1) as u8]);
    }
    for extra in 1..=3usize {
        let total = body + 1 + extra;
        if total < 1 << (4 + 8 * extra) {
            put(aml, &[((extra as u8) << 6) | (total & 0xf) as u8])?;
            for i in 0..extra {
                put(aml, &[(total >> (4 + 8 * i)) as u8])?;
            }
            return Ok(());
        }
    }
    Err(AmlOverflow)
}

/// Appends an integer constant in its shortest encoding (`ZeroOp`, `OneOp`,
/// or a prefix and 1, 2, 4 or 8 little-endian bytes).
pub fn integer<const N: usize>(aml: &mut Aml<N>, value: u64) -> Result<(), AmlOverflow> {
    match value {
        0 => put(aml, &[ZERO_OP]),
        1 => put(aml, &[ONE_OP]),
        _ => {
            let (prefix, len) = if value <= u8::MAX.into() {
                (BYTE_PREFIX, 1)
            } else if value <= u16::MAX.into() {
                (WORD_PREFIX, 2)
            } else if value <= u32::MAX.into() {
                (DWORD_PREFIX, 4)
            } else {
                (QWORD_PREFIX, 8)
            };
            put(aml, &[prefix])?;
            put(aml, &value.to_le_bytes()[..len])
        }
    }
}

/// Appends `Package (n) { elements }` of integer constants.
pub fn integer_package<const N: usize>(aml: &mut Aml<N>, elements: &[u64]) -> Result<(), AmlOverflow> {
    let count = u8::try_from(elements.len()).map_err(|_| AmlOverflow)?;
    // NumElements, then the elements: encoded first so the length is known.
    let mut body: Aml<N> = Vec::new();
    put(&mut body, &[count])?;
    for &element in elements {
        integer(&mut body, element)?;
    }
    put(aml, &[PACKAGE_OP])?;
    pkg_length(aml, body.len())?;
    put(aml, &body)
}

/// Appends `Name (seg, ...)` and the object `value` appends; `seg` is a
/// four-character name segment in the current scope (the root, at a DSDT's
/// top level).
pub fn name<const N: usize>(
    aml: &mut Aml<N>,
    seg: &[u8; 4],
    value: impl FnOnce(&mut Aml<N>) -> Result<(), AmlOverflow>,
) -> Result<(), AmlOverflow> {
    put(aml, &[NAME_OP])?;
    put(aml, seg)?;
    value(aml)
}

/// Appends a string constant (`StringPrefix AsciiCharList NullChar`);
/// `text` is ASCII without NUL (1..=0x7f each).
pub fn string<const N: usize>(aml: &mut Aml<N>, text: &str) -> Result<(), AmlOverflow> {
    if !text.bytes().all(|b| (1..0x80).contains(&b)) {
        return Err(AmlOverflow);
    }
    put(aml, &[STRING_PREFIX])?;
    put(aml, text.as_bytes())?;
    put(aml, &[0])
}

/// Appends `Buffer (n) { bytes }`.
pub fn buffer<const N: usize>(aml: &mut Aml<N>, bytes: &[u8]) -> Result<(), AmlOverflow> {
    let mut body: Aml<N> = Vec::new();
    integer(&mut body, bytes.len() as u64)?;
    put(&mut body, bytes)?;
    put(aml, &[BUFFER_OP])?;
    pkg_length(aml, body.len())?;
    put(aml, &body)
}

/// Appends `Device (\<scope>.<seg>) { terms }`: a device at the absolute
/// path of two name segments (e.g. `_SB_` and `VMBS`).
pub fn device<const N: usize>(
    aml: &mut Aml<N>,
    scope: &[u8; 4],
    seg: &[u8; 4],
    terms: impl FnOnce(&mut Aml<N>) -> Result<(), AmlOverflow>,
) -> Result<(), AmlOverflow> {
    let mut body: Aml<N> = Vec::new();
    put(&mut body, &[ROOT_CHAR, DUAL_NAME_PREFIX])?;
    put(&mut body, scope)?;
    put(&mut body, seg)?;
    terms(&mut body)?;
    put(aml, &[EXT_OP_PREFIX, DEVICE_OP])?;
    pkg_length(aml, body.len())?;
    put(aml, &body)
}
