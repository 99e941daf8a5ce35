//! Bounded borsh decoding.

use borsh::{BorshDeserialize, BorshSerialize};

use crate::{Error, Result};

/// Decodes `bytes` as a `T`, refusing input longer than `max_bytes` before any
/// decoding (and so any allocation) happens, and refusing trailing bytes.
pub fn decode_bounded<T: BorshDeserialize>(bytes: &[u8], max_bytes: usize) -> Result<T> {
    if bytes.len() > max_bytes {
        return Err(Error::TooLarge {
            len: bytes.len(),
            max: max_bytes,
        });
    }
    borsh::from_slice(bytes).map_err(|e| Error::Decode(e.to_string()))
}

/// Encodes a value with borsh. Encoding into a `Vec` cannot fail for our types.
pub fn encode<T: BorshSerialize>(value: &T) -> Vec<u8> {
    // Room for a transaction, so that encoding one does not reallocate.
    let mut out = Vec::with_capacity(256);
    // Writing into a Vec<u8> has no I/O error path, and none of our types
    // return an error from `serialize`.
    value
        .serialize(&mut out)
        .unwrap_or_else(|e| unreachable!("borsh encoding into a Vec failed: {e}"));
    out
}

/// Reads a borsh `Vec<T>`-style length prefix and rejects it if it exceeds `max`.
pub(crate) fn read_bounded_len<R: borsh::io::Read>(
    reader: &mut R,
    max: usize,
) -> borsh::io::Result<usize> {
    let len = u32::deserialize_reader(reader)? as usize;
    if len > max {
        return Err(borsh::io::Error::new(
            borsh::io::ErrorKind::InvalidData,
            format!("length {len} over the limit of {max}"),
        ));
    }
    Ok(len)
}

pub(crate) fn invalid(msg: impl Into<String>) -> borsh::io::Error {
    borsh::io::Error::new(borsh::io::ErrorKind::InvalidData, msg.into())
}

/// A short ASCII string held inline, at most `N` (< 256) bytes: what
/// [`Symbol`](crate::Symbol) and [`ChainId`](crate::tx::ChainId) are made
/// of, so that copying a transaction allocates nothing for them. Encoded as
/// a borsh string; the types that hold one check its characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct InlineStr<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> InlineStr<N> {
    /// `s`, if it is at most `N` bytes.
    pub(crate) const fn new(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() > N {
            return None;
        }
        let mut bytes = [0u8; N];
        let mut i = 0;
        while i < b.len() {
            bytes[i] = b[i];
            i += 1;
        }
        Some(InlineStr {
            len: b.len() as u8,
            bytes,
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        // Made only from a `&str`, cut at its end.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl<const N: usize> BorshSerialize for InlineStr<N> {
    fn serialize<W: borsh::io::Write>(&self, w: &mut W) -> borsh::io::Result<()> {
        self.as_str().serialize(w)
    }
}

impl<const N: usize> BorshDeserialize for InlineStr<N> {
    fn deserialize_reader<R: borsh::io::Read>(r: &mut R) -> borsh::io::Result<Self> {
        let len = read_bounded_len(r, N)?;
        let mut buf = [0u8; N];
        r.read_exact(&mut buf[..len])?;
        let s = std::str::from_utf8(&buf[..len]).map_err(|_| invalid("text is not UTF-8"))?;
        InlineStr::new(s).ok_or_else(|| invalid("text too long"))
    }
}
