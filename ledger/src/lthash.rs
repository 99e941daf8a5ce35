//! The state commitment: a lattice hash (LtHash, Bellare and Micciancio 1997;
//! the construction Solana adopted for its accounts hash in 2025).
//!
//! The state is a set of `(key, value)` entries. Each entry is expanded by
//! blake3's extendable output into 1024 sixteen-bit lanes, and the state's
//! LtHash is the lane-wise sum (mod 2^16) over all entries. Adding an entry
//! adds its lanes; removing one subtracts them. So a block that changes `k`
//! entries costs `2k` expansions whatever the size of the state, and the
//! result does not depend on the order of the changes. Finding two different
//! states with the same LtHash reduces to a short-vector lattice problem
//! (about 200 bits of security with these dimensions).
//!
//! It commits to the whole state but does not give inclusion proofs; a
//! Merkle tree can be added beside it when light clients need them.

use sou_types::Hash;

/// Number of 16-bit lanes.
pub const LANES: usize = 1024;
const CONTEXT: &str = "sou state lthash v1";

#[derive(Clone, PartialEq, Eq)]
pub struct LtHash(pub Box<[u16; LANES]>);

impl std::fmt::Debug for LtHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LtHash({:?})", self.root())
    }
}

impl Default for LtHash {
    fn default() -> Self {
        LtHash(Box::new([0; LANES]))
    }
}

impl LtHash {
    /// The lanes of one `(key, value)` entry: blake3 keyed with a key derived
    /// once from the context (the derive-key mode would hash the context
    /// string again for every entry).
    fn expand(key: &[u8], value: &[u8], out: &mut [u8; LANES * 2]) {
        static ENTRY_KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
        let entry_key = ENTRY_KEY.get_or_init(|| blake3::derive_key(CONTEXT, b"entry key"));
        let mut h = blake3::Hasher::new_keyed(entry_key);
        let len = (key.len() as u32).to_le_bytes();
        // An account's entry is about 100 bytes: one update of the whole
        // input costs less than three of its parts (the same bytes either way).
        let mut input = [0u8; 192];
        let total = len.len() + key.len() + value.len();
        if let Some(buf) = input.get_mut(..total) {
            let (l, rest) = buf.split_at_mut(len.len());
            let (k, v) = rest.split_at_mut(key.len());
            l.copy_from_slice(&len);
            k.copy_from_slice(key);
            v.copy_from_slice(value);
            h.update(buf);
        } else {
            h.update(&len);
            h.update(key);
            h.update(value);
        }
        h.finalize_xof().fill(out);
    }

    /// Replaces an entry: removes `key` with `old` (if it was there) and adds
    /// it with `new` (if it stays), in one pass over the lanes.
    pub fn replace(&mut self, key: &[u8], old: Option<&[u8]>, new: Option<&[u8]>) {
        let mut minus = [0u8; LANES * 2];
        let mut plus = [0u8; LANES * 2];
        if let Some(v) = old {
            Self::expand(key, v, &mut minus);
        }
        if let Some(v) = new {
            Self::expand(key, v, &mut plus);
        }
        for ((lane, p), m) in self
            .0
            .iter_mut()
            .zip(plus.chunks_exact(2))
            .zip(minus.chunks_exact(2))
        {
            let delta =
                u16::from_le_bytes([p[0], p[1]]).wrapping_sub(u16::from_le_bytes([m[0], m[1]]));
            *lane = lane.wrapping_add(delta);
        }
    }

    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        let mut buf = [0u8; LANES * 2];
        Self::expand(key, value, &mut buf);
        for (lane, b) in self.0.iter_mut().zip(buf.chunks_exact(2)) {
            *lane = lane.wrapping_add(u16::from_le_bytes([b[0], b[1]]));
        }
    }

    pub fn remove(&mut self, key: &[u8], value: &[u8]) {
        let mut buf = [0u8; LANES * 2];
        Self::expand(key, value, &mut buf);
        for (lane, b) in self.0.iter_mut().zip(buf.chunks_exact(2)) {
            *lane = lane.wrapping_sub(u16::from_le_bytes([b[0], b[1]]));
        }
    }

    /// The 32-byte state root that block headers carry.
    pub fn root(&self) -> Hash {
        Hash::domain("sou state root v1", &self.to_bytes())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|l| l.to_le_bytes()).collect()
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<LtHash> {
        if bytes.len() != LANES * 2 {
            return None;
        }
        let mut lanes = Box::new([0u16; LANES]);
        for (lane, b) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
            *lane = u16::from_le_bytes([b[0], b[1]]);
        }
        Some(LtHash(lanes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_independent_and_removable() {
        let mut a = LtHash::default();
        a.add(b"k1", b"v1");
        a.add(b"k2", b"v2");
        let mut b = LtHash::default();
        b.add(b"k2", b"v2");
        b.add(b"k1", b"v1");
        assert_eq!(a, b);
        b.add(b"k3", b"v3");
        assert_ne!(a.root(), b.root());
        b.remove(b"k3", b"v3");
        assert_eq!(a, b);
        assert_eq!(LtHash::from_bytes(&a.to_bytes()).unwrap(), a);
    }

    #[test]
    fn replace_is_remove_then_add() {
        let mut a = LtHash::default();
        a.add(b"k1", b"v1");
        a.add(b"k2", b"v2");
        let mut b = a.clone();
        a.remove(b"k1", b"v1");
        a.add(b"k1", b"v9");
        a.remove(b"k2", b"v2");
        a.add(b"k3", b"v3");
        b.replace(b"k1", Some(b"v1"), Some(b"v9"));
        b.replace(b"k2", Some(b"v2"), None);
        b.replace(b"k3", None, Some(b"v3"));
        assert_eq!(a, b);
        b.replace(b"k4", None, None);
        assert_eq!(a, b);
    }

    /// Short entries are hashed from one buffer, long ones part by part:
    /// the same bytes, so the same lanes.
    #[test]
    fn expansion_does_not_depend_on_how_the_input_is_fed() {
        for (k, v) in [(1usize, 0usize), (33, 60), (33, 155), (33, 156), (40, 400)] {
            let key = vec![7u8; k];
            let value: Vec<u8> = (0..v).map(|i| i as u8).collect();
            let mut got = [0u8; LANES * 2];
            LtHash::expand(&key, &value, &mut got);
            let entry_key = blake3::derive_key(CONTEXT, b"entry key");
            let mut h = blake3::Hasher::new_keyed(&entry_key);
            h.update(&(k as u32).to_le_bytes());
            h.update(&key);
            h.update(&value);
            let mut want = [0u8; LANES * 2];
            h.finalize_xof().fill(&mut want);
            assert_eq!(got, want, "key {k} bytes, value {v} bytes");
        }
    }

    #[test]
    fn key_value_boundary_is_unambiguous() {
        let mut a = LtHash::default();
        a.add(b"ab", b"c");
        let mut b = LtHash::default();
        b.add(b"a", b"bc");
        assert_ne!(a, b);
    }
}
