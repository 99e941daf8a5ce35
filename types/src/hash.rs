//! 32-byte blake3 hashes with domain separation.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use blake3::hazmat::{hash_derive_key_context, ContextKey, HasherExt};

use borsh::{BorshDeserialize, BorshSerialize};

use crate::{Error, Result};

/// A 32-byte blake3 digest. Shown as `0x`-prefixed lowercase hex.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub const ZERO: Hash = Hash([0; 32]);

    /// Hashes `data` in the blake3 derive-key mode with `context`, so that
    /// hashes of different kinds of object can never collide by construction.
    /// Contexts are fixed strings of the form `"sou <thing> v1"`.
    pub fn domain(context: &str, data: &[u8]) -> Hash {
        let mut h = blake3::Hasher::new_derive_key(context);
        h.update(data);
        Hash(*h.finalize().as_bytes())
    }

    /// Starts an incremental hasher in the given domain.
    pub fn hasher(context: &str) -> blake3::Hasher {
        blake3::Hasher::new_derive_key(context)
    }

    pub fn from_hasher(h: &blake3::Hasher) -> Hash {
        Hash(*h.finalize().as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// A hashing domain whose context string is hashed once: hashing in it
/// gives exactly what [`Hash::domain`] gives for the same context, without
/// hashing the context again for every message (which cost about as much
/// as hashing a transaction).
#[derive(Clone, Copy)]
pub struct Domain(ContextKey);

impl fmt::Debug for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Domain(0x{})", hex::encode(&self.0[..6]))
    }
}

impl Domain {
    pub fn new(context: &str) -> Domain {
        Domain(hash_derive_key_context(context))
    }

    pub fn hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_from_context_key(&self.0)
    }

    pub fn hash(&self, data: &[u8]) -> Hash {
        let mut h = self.hasher();
        h.update(data);
        Hash(*h.finalize().as_bytes())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // From a buffer on the stack: explorers and the bench read blocks
        // of thousands of hashes as JSON, which writes each through this.
        let mut buf = [0u8; 66];
        buf[..2].copy_from_slice(b"0x");
        hex::encode_to_slice(self.0, &mut buf[2..]).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(&self.0[..6]))
    }
}

/// Parses `0x`-prefixed (or bare) hex of exactly `N` bytes. (The hex
/// crate takes the one optional `0x` off itself.)
pub(crate) fn parse_hex_array<const N: usize>(s: &str) -> Result<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|e| Error::Hex {
        input: s.to_string(),
        reason: format!("{e} (expected {N} bytes as {} hex digits)", N * 2),
    })?;
    Ok(out)
}

impl FromStr for Hash {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_hex_array(s).map(Hash)
    }
}

crate::crypto::serde_via_str!(Hash);

/// Binary Merkle root over `leaves` (RFC 6962 shape: leaves and inner nodes
/// hashed in different domains, an odd node promoted unchanged). The root of
/// no leaves is [`Hash::ZERO`].
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    static LEAF: LazyLock<Domain> = LazyLock::new(|| Domain::new("sou merkle leaf v1"));
    static NODE: LazyLock<Domain> = LazyLock::new(|| Domain::new("sou merkle node v1"));
    if leaves.is_empty() {
        return Hash::ZERO;
    }
    let mut level: Vec<Hash> = leaves.iter().map(|l| LEAF.hash(&l.0)).collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => {
                    let mut h = NODE.hasher();
                    h.update(&l.0);
                    h.update(&r.0);
                    Hash::from_hasher(&h)
                }
                [single] => *single,
                _ => unreachable!("chunks(2) yields one or two items"),
            })
            .collect();
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Text and JSON carry `0x` and the 64 lowercase hex digits, and
        /// read back to the same hash.
        #[test]
        fn a_hash_is_written_as_0x_and_hex(bytes: [u8; 32]) {
            let h = Hash(bytes);
            let text = format!("0x{}", hex::encode(bytes));
            prop_assert_eq!(&h.to_string(), &text);
            prop_assert_eq!(serde_json::to_string(&h).unwrap(), format!("\"{text}\""));
            prop_assert_eq!(serde_json::from_str::<Hash>(&format!("\"{text}\"")).unwrap(), h);
            // Bare hex reads too; a second `0x`, an odd digit or a short
            // hash does not.
            prop_assert_eq!(text[2..].parse::<Hash>().unwrap(), h);
            let twice = format!("0x{text}");
            let odd = format!("{text}0");
            prop_assert!(twice.parse::<Hash>().is_err());
            prop_assert!(odd.parse::<Hash>().is_err());
            prop_assert!(text[..64].parse::<Hash>().is_err());
        }

        /// A domain's hash is the derive-key hash of its context, whatever
        /// the context and the data.
        #[test]
        fn a_domain_hashes_as_the_derive_key_mode(
            context in "\\PC{0,40}",
            data in proptest::collection::vec(any::<u8>(), 0..3000),
        ) {
            let domain = Domain::new(&context);
            prop_assert_eq!(domain.hash(&data), Hash::domain(&context, &data));
            let mut h = domain.hasher();
            h.update(&data);
            prop_assert_eq!(Hash::from_hasher(&h), Hash::domain(&context, &data));
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(s in "(0x)?[0-9a-fA-F]{0,70}|\\PC{0,70}") {
            if let Ok(h) = s.parse::<Hash>() {
                prop_assert_eq!(h.to_string().parse::<Hash>().unwrap(), h);
            }
        }
    }

    #[test]
    fn domains_separate() {
        assert_ne!(
            Hash::domain("sou a v1", b"x"),
            Hash::domain("sou b v1", b"x")
        );
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let h = Hash::domain("sou test v1", b"abc");
        assert_eq!(h.to_string().parse::<Hash>().unwrap(), h);
        assert!("0x1234".parse::<Hash>().is_err());
        assert!("zz".repeat(32).parse::<Hash>().is_err());
    }

    #[test]
    fn merkle_depends_on_order_and_content() {
        let a = Hash::domain("sou test v1", b"a");
        let b = Hash::domain("sou test v1", b"b");
        let c = Hash::domain("sou test v1", b"c");
        assert_eq!(merkle_root(&[]), Hash::ZERO);
        assert_ne!(merkle_root(&[a, b]), merkle_root(&[b, a]));
        assert_ne!(merkle_root(&[a, b, c]), merkle_root(&[a, b]));
        assert_ne!(merkle_root(&[a]), a, "a leaf is hashed in its own domain");
    }
}
