//! A block's state writes, kept in one buffer.
//!
//! A block of 10,000 transfers writes about 10,000 records. Held as a
//! `Vec<(Vec<u8>, Option<Vec<u8>>)>`, that was two allocations to build and
//! two to free per record on the committing thread; here every key and value
//! is appended to one buffer, and an entry is three offsets.
//!
//! The encoding is borsh's for `Vec<(Vec<u8>, Option<Vec<u8>>)>`, so the
//! `state_changes` records of earlier versions read as they are.

use std::io::Write;

use borsh::BorshSerialize;

use crate::{Error, Result};

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// The key's first 8 bytes (zero-padded), big-endian: most comparisons
    /// while sorting end here.
    prefix: u64,
    start: usize,
    /// End of the key; the value (if any) runs from here to `end`.
    key_end: usize,
    end: usize,
    /// Which write of the value this is: of two writes of one key, the
    /// later wins.
    seq: u32,
    present: bool,
}

fn prefix(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

/// State writes sorted by key, each key once; a `None` value deletes.
#[derive(Clone, Debug, Default)]
pub struct StateWrites {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
}

impl StateWrites {
    /// Room for `records` writes of about `bytes_each` bytes (key and value).
    pub fn with_capacity(records: usize, bytes_each: usize) -> StateWrites {
        StateWrites {
            bytes: Vec::with_capacity(records.saturating_mul(bytes_each)),
            entries: Vec::with_capacity(records),
        }
    }

    /// Writes from (key, value) pairs in any order; a later pair for the
    /// same key replaces an earlier one.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    ) -> StateWrites {
        let mut w = StateWrites::default();
        for (key, value) in pairs {
            let mut pending = w.begin(key);
            if let Some(v) = value {
                pending.value().extend_from_slice(v);
            }
            pending.finish(value.is_some());
        }
        w.seal();
        w
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn key(&self, e: &Entry) -> &[u8] {
        &self.bytes[e.start..e.key_end]
    }

    fn value(&self, e: &Entry) -> Option<&[u8]> {
        e.present.then(|| &self.bytes[e.key_end..e.end])
    }

    /// Every write in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], Option<&[u8]>)> + '_ {
        self.entries.iter().map(|e| (self.key(e), self.value(e)))
    }

    /// The write to `key`: `None` if this block does not write it,
    /// `Some(None)` if it deletes it.
    pub fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.entries
            .binary_search_by(|e| self.key(e).cmp(key))
            .ok()
            .map(|i| self.value(&self.entries[i]))
    }

    /// Starts a write of `key`; its value is appended through the returned
    /// handle, which then keeps or drops the write.
    pub(crate) fn begin(&mut self, key: &[u8]) -> PendingWrite<'_> {
        self.begin_with(|buf| buf.extend_from_slice(key))
    }

    /// As [`StateWrites::begin`], the key appended by `key`.
    pub(crate) fn begin_with(&mut self, key: impl FnOnce(&mut Vec<u8>)) -> PendingWrite<'_> {
        let start = self.bytes.len();
        key(&mut self.bytes);
        PendingWrite {
            key_end: self.bytes.len(),
            start,
            writes: self,
        }
    }

    /// Sorts the writes by key; for a key written twice, the later write
    /// stays.
    pub(crate) fn seal(&mut self) {
        let bytes = &self.bytes;
        let key = |e: &Entry| &bytes[e.start..e.key_end];
        self.entries.sort_unstable_by(|a, b| {
            a.prefix
                .cmp(&b.prefix)
                .then_with(|| key(a).cmp(key(b)))
                .then(a.seq.cmp(&b.seq))
        });
        self.entries.dedup_by(|later, kept| {
            let same = key(later) == key(kept);
            if same {
                *kept = *later;
            }
            same
        });
    }

    /// Decodes the encoding of [`BorshSerialize`] (borsh's for
    /// `Vec<(Vec<u8>, Option<Vec<u8>>)>`), keys in ascending order.
    pub fn decode(mut input: &[u8]) -> Result<StateWrites> {
        fn corrupt(reason: impl std::fmt::Display) -> Error {
            Error::Corrupt {
                what: "state writes".into(),
                reason: reason.to_string(),
            }
        }
        fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
            if input.len() < n {
                return Err(corrupt("truncated"));
            }
            let (head, rest) = input.split_at(n);
            *input = rest;
            Ok(head)
        }
        fn len(input: &mut &[u8]) -> Result<usize> {
            let b = take(input, 4)?;
            Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        }
        let count = len(&mut input)?;
        // Each write takes at least 5 bytes, which bounds what a corrupt
        // count can make us reserve.
        let mut w = StateWrites::with_capacity(count.min(input.len() / 5), 0);
        w.bytes.reserve(input.len());
        for _ in 0..count {
            let key_len = len(&mut input)?;
            let key = take(&mut input, key_len)?;
            if let Some(last) = w.entries.last() {
                if w.key(last) >= key {
                    return Err(corrupt("keys out of order"));
                }
            }
            let present = match take(&mut input, 1)?[0] {
                0 => false,
                1 => true,
                t => return Err(corrupt(format!("option tag {t}"))),
            };
            let start = w.bytes.len();
            w.bytes.extend_from_slice(key);
            let key_end = w.bytes.len();
            if present {
                let value_len = len(&mut input)?;
                w.bytes.extend_from_slice(take(&mut input, value_len)?);
            }
            let seq = u32::try_from(w.entries.len()).map_err(|_| corrupt("too many writes"))?;
            w.entries.push(Entry {
                prefix: prefix(key),
                start,
                key_end,
                end: w.bytes.len(),
                seq,
                present,
            });
        }
        if !input.is_empty() {
            return Err(corrupt(format!("{} trailing bytes", input.len())));
        }
        Ok(w)
    }
}

/// A write being appended (see [`StateWrites::begin`]). Writes appended
/// this way are in order only after [`StateWrites::seal`], which this
/// crate's two producers (the state cache's diff, `from_pairs`) call.
#[derive(Debug)]
pub(crate) struct PendingWrite<'a> {
    writes: &'a mut StateWrites,
    start: usize,
    key_end: usize,
}

impl PendingWrite<'_> {
    /// The buffer to append the value to.
    pub(crate) fn value(&mut self) -> &mut Vec<u8> {
        &mut self.writes.bytes
    }

    /// The value appended so far.
    pub(crate) fn value_bytes(&self) -> &[u8] {
        &self.writes.bytes[self.key_end..]
    }

    /// The key, and the value appended so far.
    pub(crate) fn parts(&self) -> (&[u8], &[u8]) {
        let (key, value) = self.writes.bytes[self.start..].split_at(self.key_end - self.start);
        (key, value)
    }

    /// Keeps the write: the value appended (`present`) or a deletion.
    pub(crate) fn finish(self, present: bool) {
        if !present {
            self.writes.bytes.truncate(self.key_end);
        }
        let end = self.writes.bytes.len();
        let prefix = prefix(&self.writes.bytes[self.start..self.key_end]);
        // (A block writes far fewer than 2^32 records; past that, ties
        // between equal keys would only lose their order.)
        let seq = u32::try_from(self.writes.entries.len()).unwrap_or(u32::MAX);
        self.writes.entries.push(Entry {
            prefix,
            start: self.start,
            key_end: self.key_end,
            end,
            seq,
            present,
        });
    }

    /// Drops the write and everything appended for it.
    pub(crate) fn cancel(self) {
        self.writes.bytes.truncate(self.start);
    }
}

impl PartialEq for StateWrites {
    /// The same writes, wherever they sit in the buffer.
    fn eq(&self, other: &StateWrites) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for StateWrites {}

impl BorshSerialize for StateWrites {
    fn serialize<W: Write>(&self, writer: &mut W) -> std::io::Result<()> {
        let len = |n: usize| {
            u32::try_from(n).map_err(|_| std::io::Error::other("state write over 4 GiB"))
        };
        writer.write_all(&len(self.len())?.to_le_bytes())?;
        for (key, value) in self.iter() {
            writer.write_all(&len(key.len())?.to_le_bytes())?;
            writer.write_all(key)?;
            match value {
                None => writer.write_all(&[0])?,
                Some(v) => {
                    writer.write_all(&[1])?;
                    writer.write_all(&len(v.len())?.to_le_bytes())?;
                    writer.write_all(v)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Pairs = Vec<(Vec<u8>, Option<Vec<u8>>)>;

    fn sample() -> Pairs {
        vec![
            (vec![3, 1], Some(vec![7, 7, 7])),
            (vec![1], None),
            (vec![2, 0, 0], Some(vec![])),
            (vec![9; 40], Some(vec![5; 100])),
        ]
    }

    fn of(pairs: &Pairs) -> StateWrites {
        StateWrites::from_pairs(pairs.iter().map(|(k, v)| (k.as_slice(), v.as_deref())))
    }

    #[test]
    fn encodes_as_borsh_encodes_the_sorted_vec_and_decodes_back() {
        let pairs = sample();
        let w = of(&pairs);
        let mut sorted = pairs;
        sorted.sort();
        assert_eq!(borsh::to_vec(&w).unwrap(), borsh::to_vec(&sorted).unwrap());
        let back = StateWrites::decode(&borsh::to_vec(&sorted).unwrap()).unwrap();
        assert_eq!(back, w);
        let listed: Pairs = back
            .iter()
            .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
            .collect();
        assert_eq!(listed, sorted);
    }

    #[test]
    fn keys_sort_as_byte_strings_whatever_their_lengths() {
        // Keys that are prefixes of one another, and that share their
        // first 8 bytes.
        let keys: Vec<Vec<u8>> = vec![
            vec![2, 0],
            vec![2],
            vec![0; 12],
            vec![0; 8],
            vec![0; 9],
            vec![],
            vec![1, 2, 3, 4, 5, 6, 7, 8, 1],
            vec![1, 2, 3, 4, 5, 6, 7, 8, 0, 9],
            vec![1, 2, 3, 4, 5, 6, 7, 8],
            vec![255; 3],
        ];
        let pairs: Pairs = keys.iter().map(|k| (k.clone(), None)).collect();
        let w = of(&pairs);
        let mut sorted = keys.clone();
        sorted.sort();
        let got: Vec<Vec<u8>> = w.iter().map(|(k, _)| k.to_vec()).collect();
        assert_eq!(got, sorted);
        for k in &keys {
            assert_eq!(w.get(k), Some(None), "{k:?}");
        }
    }

    #[test]
    fn get_finds_writes_and_deletions_and_nothing_else() {
        let w = of(&sample());
        assert_eq!(w.get(&[3, 1]), Some(Some(&[7u8, 7, 7][..])));
        assert_eq!(w.get(&[1]), Some(None));
        assert_eq!(w.get(&[2, 0, 0]), Some(Some(&[][..])));
        assert_eq!(w.get(&[2]), None);
        assert_eq!(w.get(&[]), None);
    }

    #[test]
    fn the_later_write_of_a_key_wins_and_cancelled_writes_leave_nothing() {
        let mut w = StateWrites::default();
        let mut p = w.begin(&[1]);
        p.value().push(1);
        p.finish(true);
        let mut p = w.begin(&[2]);
        p.value().extend_from_slice(&[9; 10]);
        p.cancel();
        let mut p = w.begin(&[1]);
        p.value().push(2);
        assert_eq!(p.value_bytes(), &[2]);
        p.finish(true);
        w.seal();
        assert_eq!(w.len(), 1);
        assert_eq!(w.get(&[1]), Some(Some(&[2u8][..])));
        assert_eq!(w.get(&[2]), None);
        // Writes that take no bytes at all (an empty key deleted) still
        // keep their order.
        for later_present in [false, true] {
            let mut w = StateWrites::default();
            w.begin(&[]).finish(!later_present);
            w.begin(&[]).finish(later_present);
            w.seal();
            assert_eq!(w.len(), 1);
            assert_eq!(w.get(&[]), Some(later_present.then_some(&[][..])));
        }
    }

    #[test]
    fn malformed_encodings_are_errors() {
        let good = borsh::to_vec(&of(&sample())).unwrap();
        for cut in 0..good.len() {
            assert!(StateWrites::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = good;
        trailing.push(0);
        assert!(StateWrites::decode(&trailing).is_err());
        let unsorted: Pairs = vec![(vec![2], None), (vec![1], None)];
        assert!(StateWrites::decode(&borsh::to_vec(&unsorted).unwrap()).is_err());
        let bad_tag = [1, 0, 0, 0, 1, 0, 0, 0, 5, 2];
        assert!(StateWrites::decode(&bad_tag).is_err());
        let huge_count = [0xff, 0xff, 0xff, 0xff];
        assert!(StateWrites::decode(&huge_count).is_err());
    }
}
