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

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use foldhash::fast::RandomState;
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
        h.update(&(key.len() as u32).to_le_bytes());
        h.update(key);
        h.update(value);
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

    /// The lanes of one `(key, value)` entry.
    pub fn lanes(key: &[u8], value: &[u8], out: &mut [u16; LANES]) {
        let mut buf = [0u8; LANES * 2];
        Self::expand(key, value, &mut buf);
        for (lane, b) in out.iter_mut().zip(buf.chunks_exact(2)) {
            *lane = u16::from_le_bytes([b[0], b[1]]);
        }
    }

    /// Adds an entry given by its [lanes](Self::lanes).
    pub fn add_lanes(&mut self, lanes: &[u16; LANES]) {
        for (lane, l) in self.0.iter_mut().zip(lanes) {
            *lane = lane.wrapping_add(*l);
        }
    }

    /// Removes an entry given by its [lanes](Self::lanes).
    pub fn sub_lanes(&mut self, lanes: &[u16; LANES]) {
        for (lane, l) in self.0.iter_mut().zip(lanes) {
            *lane = lane.wrapping_sub(*l);
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

/// Most entries [`LanesMemo`] keeps by default: about 2.2 KB each, so
/// about 36 MB.
pub const DEFAULT_LANES_MEMO_ENTRIES: usize = 16_384;

type MemoEntry = (Vec<u8>, Box<[u16; LANES]>);

/// The lanes last computed for each state key, with the value they were
/// computed from. A block that changes a record removes the lanes of its
/// old value and adds those of its new one; the old value is usually the
/// one the previous block wrote, whose lanes were computed then, so keeping
/// them halves the expansions a block costs. It is a memo of a pure
/// function (an entry is used only for the very value it was computed
/// from), so it can never change a result.
#[derive(Debug)]
pub struct LanesMemo {
    inner: Mutex<MemoInner>,
}

#[derive(Debug)]
pub struct MemoInner {
    entries: HashMap<Vec<u8>, MemoEntry, RandomState>,
    max_entries: usize,
}

impl LanesMemo {
    /// A memo of at most `max_entries` entries (0: keeps nothing).
    pub fn new(max_entries: usize) -> LanesMemo {
        LanesMemo {
            inner: Mutex::new(MemoInner {
                entries: HashMap::default(),
                max_entries,
            }),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, MemoInner> {
        // A panic elsewhere cannot leave an entry half written: lanes are
        // written only into an entry taken out of the map.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl MemoInner {
    /// The lanes of `(key, value)`, if they are kept.
    pub fn get(&self, key: &[u8], value: &[u8]) -> Option<&[u16; LANES]> {
        match self.entries.get(key) {
            Some((v, lanes)) if v.as_slice() == value => Some(lanes),
            _ => None,
        }
    }

    /// Adds the lanes of `(key, value)` to `sum`, computing them (and
    /// keeping them, in place of the key's previous ones) unless they are
    /// kept already.
    pub fn add_to(&mut self, sum: &mut LtHash, key: &[u8], value: &[u8]) {
        if let Some(lanes) = self.get(key, value) {
            sum.add_lanes(lanes);
            return;
        }
        if self.max_entries == 0 {
            sum.add(key, value);
            return;
        }
        // The key's entry is rewritten in place; a new key reuses, at the
        // limit, an arbitrary entry (the map's hasher is seeded), so a full
        // memo allocates only the new key.
        if let Some((v, lanes)) = self.entries.get_mut(key) {
            LtHash::lanes(key, value, lanes);
            sum.add_lanes(lanes);
            v.clear();
            v.extend_from_slice(value);
            return;
        }
        let recycled = if self.entries.len() >= self.max_entries {
            let victim = self.entries.keys().next().cloned();
            victim.and_then(|k| self.entries.remove(&k))
        } else {
            None
        };
        let (mut v, mut lanes) = recycled.unwrap_or_else(|| (Vec::new(), Box::new([0; LANES])));
        LtHash::lanes(key, value, &mut lanes);
        sum.add_lanes(&lanes);
        v.clear();
        v.extend_from_slice(value);
        self.entries.insert(key.to_vec(), (v, lanes));
    }

    /// Removes `(key, value)`'s lanes from `sum`.
    pub fn sub_from(&self, sum: &mut LtHash, key: &[u8], value: &[u8]) {
        match self.get(key, value) {
            Some(lanes) => sum.sub_lanes(lanes),
            None => sum.remove(key, value),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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

    #[test]
    fn the_memo_gives_the_same_sums_and_stays_bounded() {
        let entry = |i: u32| (format!("key {}", i % 7), format!("value {i}"));
        for max in [0, 1, 3, 100] {
            let memo = LanesMemo::new(max);
            let mut with = LtHash::default();
            let mut without = LtHash::default();
            // Each step replaces key (i % 7)'s value i - 7 by value i, as
            // consecutive blocks do.
            for i in 0..60u32 {
                let (k, v) = entry(i);
                let mut m = memo.lock();
                if i >= 7 {
                    let (_, old) = entry(i - 7);
                    m.sub_from(&mut with, k.as_bytes(), old.as_bytes());
                    without.remove(k.as_bytes(), old.as_bytes());
                }
                m.add_to(&mut with, k.as_bytes(), v.as_bytes());
                without.add(k.as_bytes(), v.as_bytes());
                assert_eq!(with, without, "max {max}, step {i}");
                assert!(m.len() <= max, "max {max}: {} entries", m.len());
            }
            // What is kept is exactly the latest value of a key, and a
            // lookup with another value misses.
            let m = memo.lock();
            if max >= 7 {
                assert!(m.get(b"key 3", b"value 59").is_some());
                assert!(m.get(b"key 3", b"value 52").is_none());
            }
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
