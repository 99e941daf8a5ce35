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
