//! The consensus write-ahead log: every vote this validator signs (synced
//! to disk before the vote may leave the node) and every consensus message
//! it receives, so that a restart rebuilds the engine exactly and can never
//! sign a vote that conflicts with one it signed before.
//!
//! Records are `len (u32 LE) ‖ checksum (first 4 bytes of blake3) ‖ borsh`.
//! A torn record at the end (a crash mid-write) is cut off on open.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use borsh::{BorshDeserialize, BorshSerialize};
use sou_consensus::{Message, SignedVote};

/// Largest record accepted when reading back (a full block).
const MAX_RECORD_BYTES: usize = sou_types::limits::MAX_BLOCK_BYTES + 1024;

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum WalRecord {
    /// A vote this validator signed.
    Signed(SignedVote),
    /// A message received from a peer.
    Received(Message),
    /// A block this node built or checked, written before its vote.
    Block(sou_types::Block),
}

#[derive(Debug)]
pub struct Wal {
    path: PathBuf,
    file: File,
}

fn encode(r: &WalRecord) -> Vec<u8> {
    let body = borsh::to_vec(r).unwrap_or_default();
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&blake3::hash(&body).as_bytes()[..4]);
    out.extend_from_slice(&body);
    out
}

impl Wal {
    /// Opens the log, returning it and every intact record in it.
    pub fn open(path: &Path) -> Result<(Wal, Vec<WalRecord>)> {
        let mut records = Vec::new();
        let mut good_len = 0u64;
        if path.exists() {
            let mut r = BufReader::new(
                File::open(path).with_context(|| format!("opening {}", path.display()))?,
            );
            loop {
                let mut head = [0u8; 8];
                if r.read_exact(&mut head).is_err() {
                    break;
                }
                let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
                if len > MAX_RECORD_BYTES {
                    break;
                }
                let mut body = vec![0u8; len];
                if r.read_exact(&mut body).is_err()
                    || blake3::hash(&body).as_bytes()[..4] != head[4..8]
                {
                    break;
                }
                let Ok(rec) = borsh::from_slice::<WalRecord>(&body) else {
                    break;
                };
                records.push(rec);
                good_len += 8 + len as u64;
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        // Cut a torn tail so new records follow the last intact one.
        file.set_len(good_len)?;
        Ok((
            Wal {
                path: path.to_path_buf(),
                file,
            },
            records,
        ))
    }

    /// Appends a record; with `sync`, it is on disk when this returns.
    pub fn append(&mut self, r: &WalRecord, sync: bool) -> Result<()> {
        self.file.write_all(&encode(r))?;
        if sync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Replaces the log with `keep` (written to a new file, synced, then
    /// renamed over the old one, so a crash leaves one or the other whole).
    pub fn compact(&mut self, keep: &[WalRecord]) -> Result<()> {
        let tmp = self.path.with_extension("wal.tmp");
        {
            let mut f = File::create(&tmp)?;
            for r in keep {
                f.write_all(&encode(r))?;
            }
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sou_consensus::Vote;
    use sou_types::Signature;

    fn rec(view: u64) -> WalRecord {
        WalRecord::Signed(SignedVote {
            vote: Vote::Nullify { epoch: 0, view },
            signer: 0,
            signature: Signature([1; 64]),
        })
    }

    #[test]
    fn records_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.wal");
        let (mut w, got) = Wal::open(&path).unwrap();
        assert!(got.is_empty());
        w.append(&rec(1), true).unwrap();
        w.append(&rec(2), true).unwrap();
        drop(w);
        // A crash mid-write leaves half a record.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&encode(&rec(3))[..10]).unwrap();
        drop(f);
        let (mut w, got) = Wal::open(&path).unwrap();
        assert_eq!(got, vec![rec(1), rec(2)]);
        w.append(&rec(4), true).unwrap();
        drop(w);
        let (mut w, got) = Wal::open(&path).unwrap();
        assert_eq!(got, vec![rec(1), rec(2), rec(4)]);
        w.compact(&[rec(4)]).unwrap();
        w.append(&rec(5), true).unwrap();
        drop(w);
        assert_eq!(Wal::open(&path).unwrap().1, vec![rec(4), rec(5)]);
    }
}
