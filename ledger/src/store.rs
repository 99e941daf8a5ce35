//! RocksDB storage: one database per node, a column family per kind of
//! record, and one atomic, fsynced write batch per finalized block.
//!
//! | column family     | key                                  | value                      |
//! |-------------------|--------------------------------------|----------------------------|
//! | `blocks`          | height (u64 BE)                      | header + transaction hashes |
//! | `block_hashes`    | block hash                           | height (u64 BE)            |
//! | `transactions`    | tx hash                              | height, index, signed tx   |
//! | `receipts`        | tx hash                              | receipt                    |
//! | `address_history` | address ‖ height BE ‖ index BE       | tx hash                    |
//! | `state`           | [`StateKey::encode`]                 | the record, borsh          |
//! | `meta`            | `tip`, `lthash`                      | tip height and hash, LtHash |
//!
//! Big-endian heights make RocksDB's byte order the chain's order, so
//! "newest first" is a reverse prefix scan.

use std::path::Path;

use borsh::{BorshDeserialize, BorshSerialize};
use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};
use sou_types::{Address, Block, BlockHash, BlockHeader, Hash, SignedTransaction, TxHash};

use crate::exec::ExecutedBlock;
use crate::lthash::LtHash;
use crate::receipt::Receipt;
use crate::{Error, Result};

const CF_BLOCKS: &str = "blocks";
const CF_BLOCK_HASHES: &str = "block_hashes";
const CF_TRANSACTIONS: &str = "transactions";
const CF_RECEIPTS: &str = "receipts";
const CF_HISTORY: &str = "address_history";
const CF_STATE: &str = "state";
const CF_META: &str = "meta";
const ALL_CFS: [&str; 7] = [
    CF_BLOCKS,
    CF_BLOCK_HASHES,
    CF_TRANSACTIONS,
    CF_RECEIPTS,
    CF_HISTORY,
    CF_STATE,
    CF_META,
];
const META_TIP: &[u8] = b"tip";
const META_LTHASH: &[u8] = b"lthash";

/// A block as stored: its header and its transactions' hashes (the
/// transactions themselves live in `transactions`, once each).
#[derive(BorshSerialize, BorshDeserialize)]
struct StoredBlock {
    header: BlockHeader,
    tx_hashes: Vec<TxHash>,
}

/// A transaction as stored, with where it was finalized.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct TxRecord {
    pub height: u64,
    pub index: u32,
    pub tx: SignedTransaction,
}

/// The last committed block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Tip {
    pub height: u64,
    pub hash: BlockHash,
}

/// Read access to committed state, so that execution can run over the
/// database or, later, over an overlay of blocks not yet committed.
pub trait StateReader {
    fn get_state(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    fn multi_get_state(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>>;
}

/// A position in an address's history: the newest entry older than it is
/// returned first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryCursor {
    pub height: u64,
    pub index: u32,
}

#[derive(Debug)]
pub struct Store {
    db: DB,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt {
        what: what.to_string(),
        reason: e.to_string(),
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_bytes_per_sync(1 << 20);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut o = Options::default();
            o.set_write_buffer_size(64 << 20);
            ColumnFamilyDescriptor::new(*name, o)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        Ok(Store { db })
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| corrupt("column families", format!("{name} is missing")))
    }

    /// The last committed block, or `None` before genesis is written.
    pub fn tip(&self) -> Result<Option<Tip>> {
        match self.db.get_cf(self.cf(CF_META)?, META_TIP)? {
            None => Ok(None),
            Some(b) => borsh::from_slice(&b)
                .map(Some)
                .map_err(|e| corrupt("tip", e)),
        }
    }

    /// The LtHash of the committed state.
    pub fn lthash(&self) -> Result<LtHash> {
        match self.db.get_cf(self.cf(CF_META)?, META_LTHASH)? {
            None => Ok(LtHash::default()),
            Some(b) => LtHash::from_bytes(&b).ok_or_else(|| corrupt("lthash", "wrong length")),
        }
    }

    /// Commits an executed block and everything it changed in one atomic,
    /// fsynced write batch: after a crash either all of it is there or none.
    pub fn commit(&self, executed: &ExecutedBlock) -> Result<()> {
        let block = &executed.block;
        let height = block.height();
        let hash = block.hash();
        match self.tip()? {
            Some(tip) if height != tip.height + 1 || block.header.parent != tip.hash => {
                return Err(Error::NotNext {
                    height,
                    tip: tip.height,
                })
            }
            None if height != 0 => return Err(Error::NoGenesis),
            _ => {}
        }
        let mut batch = WriteBatch::default();
        let hb = height.to_be_bytes();
        let tx_hashes: Vec<TxHash> = executed.receipts.iter().map(|r| r.tx_hash).collect();
        let stored = StoredBlock {
            header: block.header.clone(),
            tx_hashes,
        };
        batch.put_cf(self.cf(CF_BLOCKS)?, hb, encode(&stored));
        batch.put_cf(self.cf(CF_BLOCK_HASHES)?, hash.0, hb);
        let cf_tx = self.cf(CF_TRANSACTIONS)?;
        let cf_rc = self.cf(CF_RECEIPTS)?;
        let cf_hist = self.cf(CF_HISTORY)?;
        for (i, (tx, receipt)) in block
            .transactions
            .iter()
            .zip(&executed.receipts)
            .enumerate()
        {
            let index = i as u32;
            let record = TxRecord {
                height,
                index,
                tx: tx.clone(),
            };
            batch.put_cf(cf_tx, receipt.tx_hash.0, encode(&record));
            batch.put_cf(cf_rc, receipt.tx_hash.0, encode(receipt));
            let mut parties = tx.tx.payload.counterparties();
            parties.push(tx.tx.sender);
            parties.sort();
            parties.dedup();
            for addr in parties {
                batch.put_cf(
                    cf_hist,
                    history_key(&addr, height, index),
                    receipt.tx_hash.0,
                );
            }
        }
        let cf_state = self.cf(CF_STATE)?;
        for (key, value) in &executed.writes {
            match value {
                Some(v) => batch.put_cf(cf_state, key, v),
                None => batch.delete_cf(cf_state, key),
            }
        }
        let cf_meta = self.cf(CF_META)?;
        batch.put_cf(cf_meta, META_LTHASH, executed.lthash.to_bytes());
        batch.put_cf(cf_meta, META_TIP, encode(&Tip { height, hash }));
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo)?;
        Ok(())
    }

    /// The header of the block at `height`.
    pub fn header(&self, height: u64) -> Result<Option<BlockHeader>> {
        Ok(self.stored_block(height)?.map(|s| s.header))
    }

    fn stored_block(&self, height: u64) -> Result<Option<StoredBlock>> {
        match self.db.get_cf(self.cf(CF_BLOCKS)?, height.to_be_bytes())? {
            None => Ok(None),
            Some(b) => borsh::from_slice(&b)
                .map(Some)
                .map_err(|e| corrupt("block", e)),
        }
    }

    /// The block at `height`, with its transactions.
    pub fn block(&self, height: u64) -> Result<Option<Block>> {
        let Some(stored) = self.stored_block(height)? else {
            return Ok(None);
        };
        let cf = self.cf(CF_TRANSACTIONS)?;
        let keys = stored.tx_hashes.iter().map(|h| (cf, h.0));
        let mut transactions = Vec::with_capacity(stored.tx_hashes.len());
        for r in self.db.multi_get_cf(keys) {
            let bytes = r?.ok_or_else(|| corrupt("block", "a transaction is missing"))?;
            let rec: TxRecord = borsh::from_slice(&bytes).map_err(|e| corrupt("transaction", e))?;
            transactions.push(rec.tx);
        }
        Ok(Some(Block {
            header: stored.header,
            transactions,
        }))
    }

    /// The transaction hashes of the block at `height`.
    pub fn block_tx_hashes(&self, height: u64) -> Result<Option<Vec<TxHash>>> {
        Ok(self.stored_block(height)?.map(|s| s.tx_hashes))
    }

    pub fn height_of(&self, hash: &BlockHash) -> Result<Option<u64>> {
        match self.db.get_cf(self.cf(CF_BLOCK_HASHES)?, hash.0)? {
            None => Ok(None),
            Some(b) => {
                let arr: [u8; 8] = b
                    .as_slice()
                    .try_into()
                    .map_err(|_| corrupt("block hash index", "not 8 bytes"))?;
                Ok(Some(u64::from_be_bytes(arr)))
            }
        }
    }

    pub fn transaction(&self, hash: &TxHash) -> Result<Option<TxRecord>> {
        match self.db.get_cf(self.cf(CF_TRANSACTIONS)?, hash.0)? {
            None => Ok(None),
            Some(b) => borsh::from_slice(&b)
                .map(Some)
                .map_err(|e| corrupt("transaction", e)),
        }
    }

    pub fn receipt(&self, hash: &TxHash) -> Result<Option<Receipt>> {
        match self.db.get_cf(self.cf(CF_RECEIPTS)?, hash.0)? {
            None => Ok(None),
            Some(b) => borsh::from_slice(&b)
                .map(Some)
                .map_err(|e| corrupt("receipt", e)),
        }
    }

    /// Hashes of the transactions that involve `address`, newest first,
    /// starting strictly before `before` when given, at most `limit`.
    pub fn history(
        &self,
        address: &Address,
        before: Option<HistoryCursor>,
        limit: usize,
    ) -> Result<Vec<(HistoryCursor, TxHash)>> {
        let start = match before {
            Some(c) if c.height == 0 && c.index == 0 => return Ok(Vec::new()),
            Some(c) => {
                // The key just below the cursor: keys sort by (height, index).
                let (h, i) = if c.index == 0 {
                    (c.height - 1, u32::MAX)
                } else {
                    (c.height, c.index - 1)
                };
                history_key(address, h, i)
            }
            None => history_key(address, u64::MAX, u32::MAX),
        };
        let iter = self.db.iterator_cf(
            self.cf(CF_HISTORY)?,
            IteratorMode::From(&start, Direction::Reverse),
        );
        let mut out = Vec::new();
        for item in iter {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            if k.len() != 44 || k[..32] != address.0 {
                break;
            }
            let height = u64::from_be_bytes(
                k[32..40]
                    .try_into()
                    .map_err(|_| corrupt("history", "key"))?,
            );
            let index = u32::from_be_bytes(
                k[40..44]
                    .try_into()
                    .map_err(|_| corrupt("history", "key"))?,
            );
            let hash: [u8; 32] = v
                .as_ref()
                .try_into()
                .map_err(|_| corrupt("history", "value"))?;
            out.push((HistoryCursor { height, index }, Hash(hash)));
        }
        Ok(out)
    }

    /// Every state entry, in key order (for tests and audits; costs a full scan).
    pub fn state_entries(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.db
            .iterator_cf(self.cf(CF_STATE)?, IteratorMode::Start)
            .map(|r| {
                r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(Error::from)
            })
            .collect()
    }
}

impl StateReader for Store {
    fn get_state(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(CF_STATE)?, key)?)
    }

    fn multi_get_state(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let cf = self.cf(CF_STATE)?;
        self.db
            .batched_multi_get_cf(cf, keys, false)
            .into_iter()
            .map(|r| r.map(|o| o.map(|p| p.to_vec())).map_err(Error::from))
            .collect()
    }
}

fn history_key(address: &Address, height: u64, index: u32) -> [u8; 44] {
    let mut k = [0u8; 44];
    k[..32].copy_from_slice(&address.0);
    k[32..40].copy_from_slice(&height.to_be_bytes());
    k[40..].copy_from_slice(&index.to_be_bytes());
    k
}

fn encode<T: BorshSerialize>(v: &T) -> Vec<u8> {
    sou_types::codec::encode(v)
}
