//! RocksDB storage: one database per node, a column family per kind of
//! record, and one atomic, fsynced write batch per finalized block.
//!
//! | column family     | key                                  | value                      |
//! |-------------------|--------------------------------------|----------------------------|
//! | `blocks`          | height (u64 BE)                      | header + transaction hashes |
//! | `block_hashes`    | block hash                           | height (u64 BE)            |
//! | `transactions`    | height (u64 BE) ‖ page (u32 BE)      | a page of up to [`TX_PAGE`] records (signed tx, fee, status) |
//! | `tx_index`        | tx hash                              | height (u64 BE) ‖ index (u32 BE) |
//! | `address_history` | address ‖ !oldest height BE ‖ 1       | the address's positions in a chunk, height (u64 BE) ‖ index (u32 BE)…, newest first |
//! | `state`           | [`StateKey::encode`]                 | the record, borsh          |
//! | `state_changes`   | height (u64 BE)                      | layouts before 8: the block's state writes, until its chunk is in `state` |
//! | `meta`            | `schema`, `tip`, `lthash`, `indexed_to`, `state_to`, `paged_from` | layout version, tip height and hash, LtHash, last height whose index entries (state writes) are in `tx_index` and `address_history` (`state`), first height whose records are paged |
//! | `finality`        | height (u64 BE)                      | the proof the block is final (consensus's certificate, opaque here) |
//!
//! Big-endian heights make RocksDB's byte order the chain's order; address
//! history stores them inverted, so "newest first" is a forward scan of the
//! address's prefix. An address gets one history entry per chunk (below) it
//! appears in, listing its transactions' positions there, so a busy payee
//! costs one write per 64 blocks rather than one per payment. (Layouts
//! before 6 wrote one entry per block, `address ‖ !height`, listing
//! indexes; they are read as they are.)
//!
//! Transactions are keyed by where they sit in the chain, so a block's
//! records (nearly all the bytes a block writes) arrive in key order, and a
//! block's body is one range scan. They are stored [`TX_PAGE`] to a value
//! (a table of offsets, then the records), so a block of 10,000 costs 157
//! memtable inserts rather than 10,000, and a read by position decodes only
//! its own record. A record holds the signed transaction, its fee and its
//! status; the rest of its receipt (hash, height, index) is rebuilt on
//! read, which saves 44 of about 250 bytes a transfer (pages of layouts 5
//! and 6 hold whole receipts, and say so in their count's top bit being
//! clear). Databases written before layout 5 keep one record per
//! key below `meta/paged_from`. Only the small `tx_index` entries are keyed
//! by random hashes. An address's history lists positions (4 bytes each)
//! rather than hashes, and reads records directly by position.
//!
//! The other writes of a block go into the batch sorted by key within each
//! column family: RocksDB's memtable skip list then finds each insert
//! position next to the previous one.
//!
//! # The two indexes are written in chunks
//! `tx_index` and `address_history` are keyed by random hashes and
//! addresses, and RocksDB's skip-list memtables pay for random keys twice:
//! on insert, and again when a flush sorts them (measured: the two indexes
//! cost about half of the whole process's CPU per block). So a block's index
//! entries are held in memory ([`RecentIndex`]) and written to RocksDB every
//! [`INDEX_CHUNK_BLOCKS`] blocks: the block that closes the chunk seals it
//! after its batch, and a thread of its own (`sou-chunk`, at a lower
//! priority) writes it while the next blocks commit; until then it is read
//! from memory. Those two column families use vector memtables (an append
//! per insert, one `std::sort` at flush), and each chunk's memtable is
//! switched out at once, with reads of them in RocksDB held off meanwhile,
//! so a read never meets a mutable vector memtable (RocksDB copies and
//! sorts one on every read). Reads look in memory first (the blocks held,
//! then a sealed chunk), then in RocksDB up to `indexed_to`.
//!
//! A chunk is derived data: everything in it can be rebuilt from the
//! blocks' batches. So it is written without the WAL (which carried 18 MB
//! per chunk of 14 blocks of 10,000 transfers beside the blocks' 3.8 MB
//! each, a quarter of its bytes), and `meta/indexed_to` is moved up to it
//! only by the first block batch after its memtables are flushed to SST
//! files. After a crash the entries of blocks above `meta/indexed_to` are
//! rebuilt from the blocks' transaction records when the store opens:
//! nothing is lost, and the block's batch stays the only thing that makes
//! it durable.
//!
//! # So is the state
//! A block of transfers writes one state record per account it touches,
//! also under random keys, and the same accounts again block after block.
//! So the `state` column family is written in the same chunks, and a
//! block's batch holds none of its state writes: [`RecentState`] holds each
//! key's latest value in memory, and the block that closes a chunk writes
//! those values into `state` (an account changed in every block of the
//! chunk is written once), with the index entries and likewise without the
//! WAL, and with a marker of the block whose state `state` then holds (and
//! that state's LtHash). The marker goes into the same memtable as the
//! chunk, so it reaches the SST files exactly when the chunk does. When the
//! store is reopened, the ledger executes the blocks above the marker again
//! ([`Store::replay_from`], [`Store::hold_replayed`]), checking each one's
//! state root against its header: a block's batch stays the only thing that
//! makes it durable, and its state writes (about a million bytes a block of
//! 10,000 transfers, a quarter of the batch, until layout 7 kept in
//! `state_changes`) are computed again instead of written. `state` uses a
//! vector memtable switched out after each chunk, as the indexes do. Reads
//! look in memory, then in the read cache, then in RocksDB.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use borsh::{BorshDeserialize, BorshSerialize};
use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, Direction, IteratorMode, MemtableFactory, Options,
    ReadOptions, SliceTransform, WriteBatch, WriteOptions, DB,
};
use sou_types::{
    Address, Amount, Block, BlockHash, BlockHeader, Misbehaviour, SignedTransaction, TxHash,
};

use crate::exec::ExecutedBlock;
use crate::lthash::LtHash;
use crate::receipt::{Receipt, TxStatus};
use crate::state::STATE_KEY_MIN_BYTES;
use crate::writes::StateWrites;
use crate::{Error, Result};

const CF_BLOCKS: &str = "blocks";
const CF_BLOCK_HASHES: &str = "block_hashes";
const CF_TRANSACTIONS: &str = "transactions";
const CF_TX_INDEX: &str = "tx_index";
const CF_HISTORY: &str = "address_history";
const CF_STATE: &str = "state";
const CF_STATE_CHANGES: &str = "state_changes";
const CF_META: &str = "meta";
const CF_FINALITY: &str = "finality";
const ALL_CFS: [&str; 9] = [
    CF_FINALITY,
    CF_BLOCKS,
    CF_BLOCK_HASHES,
    CF_TRANSACTIONS,
    CF_TX_INDEX,
    CF_HISTORY,
    CF_STATE,
    CF_STATE_CHANGES,
    CF_META,
];
/// Written a chunk at a time (module docs), and by nothing else.
const CHUNK_CFS: [&str; 3] = [CF_TX_INDEX, CF_HISTORY, CF_STATE];
const META_TIP: &[u8] = b"tip";
const META_LTHASH: &[u8] = b"lthash";
const META_SCHEMA: &[u8] = b"schema";
const META_INDEXED_TO: &[u8] = b"indexed_to";
const META_STATE_TO: &[u8] = b"state_to";
const META_PAGED_FROM: &[u8] = b"paged_from";
/// The layout above. A database written before the layout had a version
/// (transactions keyed by hash) has a tip and no `schema`: version 1.
/// Version 2 wrote every block's index entries with the block, version 3
/// every block's state writes, version 4 one record per key, version 5 one
/// history entry per address and block, version 6 pages of whole records:
/// they read as this version with `indexed_to` (version 2) and `state_to`
/// (versions 2 and 3) at the tip and `paged_from` above it (versions 2 to
/// 4), and are marked as this version when opened. Their history entries
/// and pages stay as they are, and read as they did. Version 7 writes pages
/// of slim records (a flag in the page's count says which). Version 8
/// writes no `state_changes`: `state` carries a marker of the height it
/// holds, and the blocks above it are executed again on reopening. A
/// database of an earlier version is rebuilt from its `state_changes` once
/// and its held state written with the marker when it opens.
const SCHEMA_VERSION: u32 = 8;

/// In `state`: the height whose state the column family holds (u64 BE),
/// then the LtHash of that state. Written with every chunk, into the same
/// memtable, so it reaches an SST file exactly when the chunk does; a store
/// reopened after a crash executes the blocks above it again to rebuild
/// the state it held in memory. No state key starts with 0xff.
const STATE_HELD_AT: [u8; STATE_KEY_MIN_BYTES] = [0xff; STATE_KEY_MIN_BYTES];

/// Transaction records per value in `transactions`.
pub const TX_PAGE: u32 = 64;

/// Blocks whose index entries and state writes are held in memory before
/// they are written to RocksDB together. An account written in several
/// blocks of a chunk is written once, with one history entry: at 15,000
/// transfers/s among 10,000 senders (about 1,500 a block), chunks of 64
/// blocks rather than 16 cut a node's bytes written by 15% and left no
/// compaction to run in 30 s. Under heavier blocks the entry limits below
/// close a chunk first.
pub const INDEX_CHUNK_BLOCKS: u64 = 64;
/// Index entries (transactions, and each transaction's addresses) held in
/// memory at most: a chunk closes early when a block would take it past
/// this. About 30 bytes each: 16 blocks of 10,000 transfers (480,000
/// entries) take about 15 MB.
pub const INDEX_CHUNK_ENTRIES: usize = 524_288;
/// State keys written since the last chunk, held in memory at most.
pub const STATE_CHUNK_ENTRIES: usize = 262_144;

/// A committed block with the hashes of its transactions, in order: how a
/// block is stored (the transactions themselves live in `transactions`,
/// once each, under the block's height).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BlockSummary {
    pub header: BlockHeader,
    pub tx_hashes: Vec<TxHash>,
    pub evidence: Vec<Misbehaviour>,
}

/// A transaction as stored, with its receipt (which holds the height and
/// position where it was finalized).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct TxRecord {
    pub tx: SignedTransaction,
    pub receipt: Receipt,
}

/// A record in a page of layout 7: the transaction, and what its receipt
/// holds beside what the record's place gives (height and index) and the
/// transaction itself (its hash). 44 bytes a transaction fewer than
/// [`TxRecord`]'s encoding, written through the WAL with every block.
#[derive(BorshSerialize)]
struct SlimRecordRef<'a> {
    tx: &'a SignedTransaction,
    fee: &'a Amount,
    status: &'a TxStatus,
}

#[derive(BorshDeserialize)]
struct SlimRecord {
    tx: SignedTransaction,
    fee: Amount,
    status: TxStatus,
}

/// Set in a page's count (its first four bytes) when its records are
/// [`SlimRecordRef`]s; pages of layouts 5 and 6 hold whole [`TxRecord`]s.
const SLIM_PAGE: u32 = 1 << 31;

/// Decodes one record of a page (or a single record below `paged_from`,
/// always whole) at (`height`, `index`).
fn decode_record(bytes: &[u8], slim: bool, height: u64, index: u32) -> Result<TxRecord> {
    if !slim {
        return borsh::from_slice(bytes).map_err(|e| corrupt("transaction", e));
    }
    let r: SlimRecord = borsh::from_slice(bytes).map_err(|e| corrupt("transaction", e))?;
    let receipt = Receipt {
        tx_hash: r.tx.hash(),
        height,
        index,
        fee: r.fee,
        status: r.status,
    };
    Ok(TxRecord { tx: r.tx, receipt })
}

/// Decodes only the transaction of a record: a block's body needs no
/// receipts, and a slim record's receipt costs a hash of its transaction.
fn decode_tx(bytes: &[u8], slim: bool, _height: u64, _index: u32) -> Result<SignedTransaction> {
    let decoded = if slim {
        borsh::from_slice::<SlimRecord>(bytes).map(|r| r.tx)
    } else {
        borsh::from_slice::<TxRecord>(bytes).map(|r| r.tx)
    };
    decoded.map_err(|e| corrupt("transaction", e))
}

/// How a record (its bytes, whether slim, its height and index) is decoded.
type DecodeRecord<T> = fn(&[u8], bool, u64, u32) -> Result<T>;

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
    fn multi_get_state(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>>;
}

/// A position in an address's history: the newest entry older than it is
/// returned first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryCursor {
    pub height: u64,
    pub index: u32,
}

/// Most committed state entries kept in memory for reads; at the limit the
/// cache is emptied and refills with what blocks touch next.
pub const DEFAULT_STATE_CACHE_ENTRIES: usize = 262_144;

/// Committed state entries recently read or written, so that executing a
/// block reads the accounts it touches from memory, not from RocksDB. It
/// holds exactly what the `state` column family holds for the keys it has
/// (the chunk writer updates it as it hands a chunk over, and readers fill
/// it under the lock that keeps that hand-over out), so it can never change
/// a result.
#[derive(Debug, Default)]
struct StateReadCache {
    entries: HashMap<Vec<u8>, Option<Vec<u8>>, foldhash::fast::RandomState>,
    max_entries: usize,
}

impl StateReadCache {
    fn insert(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        if self.entries.len() >= self.max_entries && !self.entries.contains_key(&key) {
            self.entries.clear();
        }
        if self.max_entries > 0 {
            self.entries.insert(key, value);
        }
    }
}

/// A write batch encoded here, in RocksDB's own format (`db/write_batch.cc`:
/// a 12-byte header holding the sequence number, which the write assigns,
/// and the record count, then one record per operation), and handed to
/// RocksDB whole. A block's ~30,000 `put_cf` calls across the FFI, each
/// appending to a growing C++ string, cost more than encoding it here.
struct BatchEncoder {
    buf: Vec<u8>,
    count: u32,
}

/// Where a chunk's entries are put: one batch, or several ([`SplitBatch`]).
trait Puts {
    fn put(&mut self, cf: u32, key: &[u8], value: &[u8]) -> Result<()>;
    fn delete(&mut self, cf: u32, key: &[u8]) -> Result<()>;
}

impl Puts for BatchEncoder {
    fn put(&mut self, cf: u32, key: &[u8], value: &[u8]) -> Result<()> {
        BatchEncoder::put(self, cf, key, value)
    }

    fn delete(&mut self, cf: u32, key: &[u8]) -> Result<()> {
        BatchEncoder::delete(self, cf, key)
    }
}

/// Batches of at most [`CHUNK_WRITE_ENTRIES`] operations: a chunk's index
/// entries are handed to RocksDB in several writes, so a block's batch
/// committed meanwhile waits behind one of them (a few milliseconds), not
/// behind the whole chunk (about 100 ms at 15,000 transfers/s on the
/// 2-core development machine).
struct SplitBatch {
    done: Vec<BatchEncoder>,
    current: BatchEncoder,
}

/// The chunk writer's nice value (the admitting threads run at 5).
const CHUNK_WRITER_NICE: i32 = 10;

/// Operations per write of a chunk's index entries (see [`SplitBatch`]).
const CHUNK_WRITE_ENTRIES: u32 = 8_192;

impl SplitBatch {
    fn new() -> SplitBatch {
        SplitBatch {
            done: Vec::new(),
            current: BatchEncoder::with_capacity(CHUNK_WRITE_ENTRIES as usize * 64),
        }
    }

    fn roll(&mut self) {
        if self.current.count >= CHUNK_WRITE_ENTRIES {
            let full = std::mem::replace(
                &mut self.current,
                BatchEncoder::with_capacity(CHUNK_WRITE_ENTRIES as usize * 64),
            );
            self.done.push(full);
        }
    }

    fn finish(mut self) -> Vec<BatchEncoder> {
        if self.current.count > 0 {
            self.done.push(self.current);
        }
        self.done
    }
}

impl Puts for SplitBatch {
    fn put(&mut self, cf: u32, key: &[u8], value: &[u8]) -> Result<()> {
        self.roll();
        self.current.put(cf, key, value)
    }

    fn delete(&mut self, cf: u32, key: &[u8]) -> Result<()> {
        self.roll();
        self.current.delete(cf, key)
    }
}

/// Record tags of column-family operations in RocksDB's batch format.
const TAG_CF_PUT: u8 = 0x05;
const TAG_CF_DELETE: u8 = 0x04;
const BATCH_HEADER: usize = 12;

impl BatchEncoder {
    fn with_capacity(bytes: usize) -> BatchEncoder {
        let mut buf = Vec::with_capacity(BATCH_HEADER + bytes);
        buf.resize(BATCH_HEADER, 0);
        BatchEncoder { buf, count: 0 }
    }

    fn varint(&mut self, mut v: u32) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    /// `len` as a varint32; a key or value over 4 GiB cannot be written.
    fn len(&mut self, len: usize) -> Result<()> {
        let len = u32::try_from(len).map_err(|_| corrupt("write batch", "a record over 4 GiB"))?;
        self.varint(len);
        Ok(())
    }

    fn put(&mut self, cf: u32, key: &[u8], value: &[u8]) -> Result<()> {
        self.buf.push(TAG_CF_PUT);
        self.varint(cf);
        self.len(key.len())?;
        self.buf.extend_from_slice(key);
        self.len(value.len())?;
        self.buf.extend_from_slice(value);
        self.count += 1;
        Ok(())
    }

    fn delete(&mut self, cf: u32, key: &[u8]) -> Result<()> {
        self.buf.push(TAG_CF_DELETE);
        self.varint(cf);
        self.len(key.len())?;
        self.buf.extend_from_slice(key);
        self.count += 1;
        Ok(())
    }

    fn finish(mut self) -> WriteBatch {
        self.buf[8..BATCH_HEADER].copy_from_slice(&self.count.to_le_bytes());
        WriteBatch::from_data(&self.buf)
    }
}

/// The id RocksDB gave column family `cf`, read back from a batch holding
/// one put into it (ids are not exposed otherwise).
fn cf_id(cf: &rocksdb::ColumnFamily) -> Result<u32> {
    let mut probe = WriteBatch::default();
    probe.put_cf(cf, b"k", b"v");
    let data = probe.data();
    let bad = || corrupt("column families", "unexpected write batch format");
    if data.get(BATCH_HEADER) != Some(&TAG_CF_PUT) {
        return Err(bad());
    }
    let mut id = 0u32;
    for (i, b) in data.iter().skip(BATCH_HEADER + 1).take(5).enumerate() {
        id |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(id);
        }
    }
    Err(bad())
}

/// Column family ids for [`BatchEncoder`].
#[derive(Debug, Clone, Copy)]
struct CfIds {
    blocks: u32,
    block_hashes: u32,
    finality: u32,
    transactions: u32,
    tx_index: u32,
    history: u32,
    state: u32,
    state_changes: u32,
    meta: u32,
}

/// Index entries of the blocks above `indexed_to`, not yet in RocksDB (see
/// the module docs).
#[derive(Debug, Default)]
struct RecentIndex {
    /// Every block up to this height has its index entries in RocksDB.
    indexed_to: u64,
    /// Transaction hash to position (height, index).
    txs: HashMap<TxHash, (u64, u32), foldhash::fast::RandomState>,
    /// Per address: the positions (height, index) of its transactions,
    /// oldest first.
    history: HashMap<Address, Vec<(u64, u32)>, foldhash::fast::RandomState>,
    /// Positions held in `history`, all addresses together.
    positions: usize,
}

/// One block's index entries: its transactions' hashes in block order, and
/// (address, index) for each transaction and address it involves, in
/// block order, an address named twice in one transaction once.
struct BlockIndex {
    txs: Vec<TxHash>,
    involved: Vec<(Address, u32)>,
}

impl BlockIndex {
    fn of<'a>(txs: impl Iterator<Item = (&'a SignedTransaction, TxHash)>) -> BlockIndex {
        let n = txs.size_hint().0;
        let mut hashes = Vec::with_capacity(n);
        // A transfer involves its sender and its recipient.
        let mut involved = Vec::with_capacity(2 * n);
        for (i, (tx, hash)) in txs.enumerate() {
            let index = i as u32;
            hashes.push(hash);
            let first = involved.len();
            involved.push((tx.tx.sender, index));
            for addr in tx.tx.payload.counterparties() {
                if !involved[first..].iter().any(|(a, _)| *a == addr) {
                    involved.push((addr, index));
                }
            }
        }
        BlockIndex {
            txs: hashes,
            involved,
        }
    }

    fn entries(&self) -> usize {
        self.txs.len() + self.involved.len()
    }
}

impl RecentIndex {
    fn entries(&self) -> usize {
        self.txs.len() + self.positions
    }

    fn add(&mut self, height: u64, block: BlockIndex) {
        for (i, hash) in block.txs.into_iter().enumerate() {
            self.txs.insert(hash, (height, i as u32));
        }
        self.positions += block.involved.len();
        for (addr, index) in block.involved {
            self.history.entry(addr).or_default().push((height, index));
        }
    }

    /// Puts every entry held into `batch`: one `tx_index` entry per
    /// transaction, one `address_history` entry per address (its positions
    /// in the chunk, newest first).
    fn write(&self, batch: &mut impl Puts, ids: &CfIds) -> Result<()> {
        for (hash, (h, i)) in &self.txs {
            batch.put(ids.tx_index, &hash.0, &tx_key(*h, *i))?;
        }
        let mut buf = Vec::new();
        for (addr, positions) in &self.history {
            let Some((oldest, _)) = positions.first() else {
                continue;
            };
            buf.clear();
            for (h, i) in positions.iter().rev() {
                buf.extend_from_slice(&h.to_be_bytes());
                buf.extend_from_slice(&i.to_be_bytes());
            }
            batch.put(ids.history, &chunk_history_key(addr, *oldest), &buf)?;
        }
        Ok(())
    }

    /// Takes the entries held, leaving none (and `indexed_to` as it is).
    fn take(&mut self) -> RecentIndex {
        RecentIndex {
            indexed_to: self.indexed_to,
            txs: std::mem::take(&mut self.txs),
            history: std::mem::take(&mut self.history),
            positions: std::mem::take(&mut self.positions),
        }
    }

    fn clear(&mut self, indexed_to: u64) {
        self.txs.clear();
        // An address used in this chunk keeps its (emptied) vector for the
        // next: a payee busy in one chunk is likely busy in the next, and
        // its vector then need not grow again from nothing. The others go.
        self.history.retain(|_, positions| {
            let used = !positions.is_empty();
            positions.clear();
            used
        });
        self.positions = 0;
        self.indexed_to = indexed_to;
    }
}

/// State writes of the blocks above `state_to`, not yet in the `state`
/// column family (see the module docs).
#[derive(Debug, Default)]
struct RecentState {
    /// Every block up to this height has its state writes in `state`.
    state_to: u64,
    /// Each key written since: its latest value (`None`: deleted).
    latest: HashMap<Vec<u8>, Option<Vec<u8>>, foldhash::fast::RandomState>,
}

impl RecentState {
    /// Puts every value held into `state`, with the marker saying that
    /// `state` then holds the state of block `at`, whose LtHash is `lthash`.
    fn write(&self, batch: &mut impl Puts, ids: &CfIds, at: u64, lthash: &LtHash) -> Result<()> {
        for (key, value) in &self.latest {
            match value {
                Some(v) => batch.put(ids.state, key, v)?,
                None => batch.delete(ids.state, key)?,
            }
        }
        let mut marker = at.to_be_bytes().to_vec();
        marker.extend_from_slice(&lthash.to_bytes());
        batch.put(ids.state, &STATE_HELD_AT, &marker)
    }

    fn add(&mut self, block: &StateWrites) {
        for (key, value) in block.iter() {
            match self.latest.get_mut(key) {
                // Most keys were written by an earlier block of the chunk:
                // the held value's buffer is reused.
                Some(held) => match (held, value) {
                    (Some(buf), Some(v)) => {
                        buf.clear();
                        buf.extend_from_slice(v);
                    }
                    (held, v) => *held = v.map(<[u8]>::to_vec),
                },
                None => {
                    self.latest.insert(key.to_vec(), value.map(<[u8]>::to_vec));
                }
            }
        }
    }

    /// After [`RecentState::write`] succeeded: what was held is in RocksDB
    /// now, and goes to the read cache (which must not keep the older
    /// values it may hold for these keys).
    fn written(&mut self, cache: &mut StateReadCache, height: u64) {
        for (key, value) in self.latest.drain() {
            cache.insert(key, value);
        }
        self.state_to = height;
    }

    /// Takes the values held, leaving none (and `state_to` as it is).
    fn take(&mut self) -> RecentState {
        RecentState {
            state_to: self.state_to,
            latest: std::mem::take(&mut self.latest),
        }
    }
}

/// The chunk heights `meta` records (`indexed_to`, `state_to`): where a
/// store reopened after a crash rebuilds from.
#[derive(Clone, Copy, Debug, Default)]
struct Marks {
    indexed_to: u64,
    state_to: u64,
}

impl Marks {
    fn write(&self, batch: &mut BatchEncoder, ids: &CfIds) -> Result<()> {
        batch.put(ids.meta, META_INDEXED_TO, &self.indexed_to.to_be_bytes())?;
        batch.put(ids.meta, META_STATE_TO, &self.state_to.to_be_bytes())
    }
}

/// A chunk closed and being written to RocksDB by the chunk writer (see
/// [`Store::commit`]): the entries of the blocks up to `to` above the
/// last chunk written, read from here until the writer is done.
#[derive(Debug)]
struct Sealed {
    to: u64,
    /// The LtHash of block `to`'s state, for `state`'s marker.
    lthash: LtHash,
    index: RecentIndex,
    state: RecentState,
}

/// What the blocks above the last chunk wrote, held in memory.
#[derive(Debug, Default)]
struct Recent {
    /// The blocks above the sealed chunk, or above the last chunk written.
    index: RecentIndex,
    state: RecentState,
    /// A chunk closed and not yet written: between `index` and RocksDB.
    sealed: Option<Arc<Sealed>>,
    /// What `meta` records. Chunks are written without the WAL, so this
    /// lags the chunks written until their memtables are flushed.
    marked: Marks,
    /// After reopening: the blocks above this height, up to the tip, are
    /// still to be executed again (by the ledger) to rebuild the state
    /// held in memory; their LtHash starts from this one.
    replay: Option<(u64, LtHash)>,
}

impl Recent {
    fn entries(&self) -> usize {
        self.index.entries() + self.state.latest.len()
    }

    /// Every block up to this height has all it wrote in RocksDB.
    fn written_to(&self) -> u64 {
        self.index.indexed_to.min(self.state.state_to)
    }

    /// Whether a chunk has been written that `meta` does not record yet.
    fn unmarked(&self) -> bool {
        self.marked.indexed_to < self.index.indexed_to || self.marked.state_to < self.state.state_to
    }

    /// Records the chunks written so far in `meta` and deletes the
    /// `state_changes` they hold (only a database upgraded from a layout
    /// before 8 has any); only once their memtables are flushed.
    /// Returns the marks to keep once `batch` is written.
    fn mark(&self, batch: &mut BatchEncoder, ids: &CfIds) -> Result<Marks> {
        let marks = Marks {
            indexed_to: self.index.indexed_to,
            state_to: self.state.state_to,
        };
        marks.write(batch, ids)?;
        for h in self.marked.state_to + 1..=marks.state_to {
            batch.delete(ids.state_changes, &h.to_be_bytes())?;
        }
        Ok(marks)
    }
}

#[derive(Debug)]
pub struct Store {
    db: Arc<DB>,
    ids: CfIds,
    /// Records of blocks from this height on are paged (module docs).
    paged_from: u64,
    cache: Arc<Mutex<StateReadCache>>,
    /// Readers hold it (read) across their reads of the two indexes and of
    /// the state, in memory and in RocksDB (and the read cache's update); a
    /// commit holds it (write) to add its block's entries or to seal a
    /// chunk, and the chunk writer to hand over a chunk it has written
    /// (its values go to the read cache). So none sees an entry twice or
    /// not at all, and no reader puts a value older than RocksDB's into
    /// the cache.
    recent: Arc<RwLock<Recent>>,
    /// The chunk writer holds it (write) from its first write of a chunk
    /// until the memtables are switched; readers of the chunk column
    /// families in RocksDB hold it (read). So no read ever reaches a
    /// mutable vector memtable holding a chunk (RocksDB would copy and sort
    /// it for every such read).
    chunk_io: Arc<RwLock<()>>,
    /// The chunk writer's thread, until its result is collected.
    writer: Mutex<Option<std::thread::JoinHandle<Result<()>>>>,
}

impl Drop for Store {
    fn drop(&mut self) {
        // The writer holds the database open; the next open must not find
        // it locked. A chunk it failed to write is rebuilt on reopening.
        if let Some(handle) = lock_ignoring_poison(&self.writer).take() {
            let _ = handle.join();
        }
    }
}

fn lock_ignoring_poison<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write_ignoring_poison<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read_ignoring_poison<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the chunk writer shares with the store.
struct ChunkWriter {
    db: Arc<DB>,
    ids: CfIds,
    cache: Arc<Mutex<StateReadCache>>,
    recent: Arc<RwLock<Recent>>,
    chunk_io: Arc<RwLock<()>>,
}

impl ChunkWriter {
    /// Writes a sealed chunk into the chunk column families' memtables,
    /// without the WAL, and switches them out (their flush runs in the
    /// background); then hands the chunk over: it leaves memory, its
    /// values go to the read cache, and `indexed_to` and `state_to` move up
    /// to it. `meta` records it once its memtables are flushed (see
    /// [`Store::commit`]).
    fn write(&self, sealed: &Sealed) -> Result<()> {
        // The index entries in several writes; the state values and their
        // marker in one, last: a memtable RocksDB switched out between two
        // writes could reach the SST files with part of the chunk, which
        // is harmless for index entries (rewritten, the same, after a
        // crash) but not for the state, whose marker says which block's
        // state `state` holds.
        let mut index = SplitBatch::new();
        sealed.index.write(&mut index, &self.ids)?;
        let mut state = BatchEncoder::with_capacity(sealed.state.latest.len() * 128 + 4096);
        sealed
            .state
            .write(&mut state, &self.ids, sealed.to, &sealed.lthash)?;
        let mut no_wal = WriteOptions::default();
        no_wal.disable_wal(true);
        {
            let _io = write_ignoring_poison(&self.chunk_io);
            for batch in index.finish().into_iter().chain([state]) {
                self.db.write_opt(batch.finish(), &no_wal)?;
            }
            flush_chunk_memtables(&self.db, false)?;
        }
        let mut recent = write_ignoring_poison(&self.recent);
        let Some(held) = recent.sealed.take() else {
            return Err(corrupt("chunk", "the sealed chunk went missing"));
        };
        recent.index.indexed_to = held.to;
        recent.state.state_to = held.to;
        let mut cache = lock_ignoring_poison(&self.cache);
        match Arc::try_unwrap(held) {
            Ok(mut held) => held.state.written(&mut cache, held.to),
            Err(held) => {
                for (key, value) in &held.state.latest {
                    cache.insert(key.clone(), value.clone());
                }
            }
        }
        Ok(())
    }
}

/// Flushes the memtables of the column families written a chunk at a
/// time, which hold exactly the chunk just written: the switch to new,
/// empty memtables happens now; the flush (one sort) runs in the
/// background, and is waited for if `wait`.
fn flush_chunk_memtables(db: &DB, wait: bool) -> Result<()> {
    let mut fo = rocksdb::FlushOptions::default();
    fo.set_wait(wait);
    for name in CHUNK_CFS {
        let cf = db
            .cf_handle(name)
            .ok_or_else(|| corrupt("column families", format!("{name} is missing")))?;
        db.flush_cf_opt(cf, &fo)?;
    }
    Ok(())
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt {
        what: what.to_string(),
        reason: e.to_string(),
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path`. Its state reads
    /// are those of [`Store::replay_from`]'s height until the blocks above
    /// it are executed again: open it through [`crate::Ledger`], which does
    /// that first.
    pub fn open(path: &Path) -> Result<Store> {
        Self::open_with_cache(path, DEFAULT_STATE_CACHE_ENTRIES)
    }

    /// Opens the database with a state read cache of at most `cache_entries`
    /// entries (0: no cache).
    pub fn open_with_cache(path: &Path, cache_entries: usize) -> Result<Store> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        // Compactions and flushes run at the lowest CPU priority (and
        // compactions at the lowest I/O priority). Both can wait, and both
        // come in bursts that every validator has at the same moment,
        // since all write the same chunks: at 15,000 transfers/s the first
        // compaction into level 1 of the two hash-keyed indexes (below)
        // took about 2 s of a core on each, and each chunk's flush (a sort
        // and 9 MB of SST files) about 200 ms; on a machine the validators
        // share, each burst stalled the chain for as long. Memtables may
        // queue up to 4 deep (below) while a flush waits for CPU.
        let mut env = rocksdb::Env::new()?;
        env.lower_thread_pool_cpu_priority();
        env.lower_thread_pool_io_priority();
        env.lower_high_priority_thread_pool_cpu_priority();
        opts.set_env(&env);
        opts.set_bytes_per_sync(1 << 20);
        // Hash-bucketed memtables (below) take one writer at a time, which
        // is how the node writes anyway: one block after another.
        opts.set_allow_concurrent_memtable_write(false);
        let cfs = ALL_CFS
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, cf_options(name)));
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        let id = |name: &str| -> Result<u32> {
            cf_id(
                db.cf_handle(name)
                    .ok_or_else(|| corrupt("column families", format!("{name} is missing")))?,
            )
        };
        let ids = CfIds {
            blocks: id(CF_BLOCKS)?,
            block_hashes: id(CF_BLOCK_HASHES)?,
            finality: id(CF_FINALITY)?,
            transactions: id(CF_TRANSACTIONS)?,
            tx_index: id(CF_TX_INDEX)?,
            history: id(CF_HISTORY)?,
            state: id(CF_STATE)?,
            state_changes: id(CF_STATE_CHANGES)?,
            meta: id(CF_META)?,
        };
        check_schema(&db)?;
        let mut store = Store {
            db: Arc::new(db),
            ids,
            paged_from: 0,
            cache: Arc::new(Mutex::new(StateReadCache {
                entries: HashMap::default(),
                max_entries: cache_entries,
            })),
            recent: Arc::new(RwLock::new(Recent::default())),
            chunk_io: Arc::new(RwLock::new(())),
            writer: Mutex::new(None),
        };
        store.paged_from = match store.meta_height(META_PAGED_FROM)? {
            Some(h) => h,
            // A new database: written with genesis.
            None if store.tip()?.is_none() => 0,
            None => return Err(corrupt("paged_from", "missing")),
        };
        store.rebuild_recent()?;
        Ok(store)
    }

    /// The heights up to which `meta` records the index entries and the
    /// state as written to RocksDB (`indexed_to`, `state_to`); a store
    /// reopened after a crash rebuilds what is above them.
    pub fn chunk_marks(&self) -> Result<(u64, u64)> {
        Ok((
            self.meta_height(META_INDEXED_TO)?.unwrap_or(0),
            self.meta_height(META_STATE_TO)?.unwrap_or(0),
        ))
    }

    /// A height kept in `meta` (8 bytes, big-endian).
    fn meta_height(&self, key: &[u8]) -> Result<Option<u64>> {
        let what = String::from_utf8_lossy(key);
        match self.db.get_cf(self.cf(CF_META)?, key)? {
            None => Ok(None),
            Some(b) => Ok(Some(u64::from_be_bytes(
                b.as_slice()
                    .try_into()
                    .map_err(|_| corrupt(&what, "not 8 bytes"))?,
            ))),
        }
    }

    /// Rebuilds what the blocks above the last chunk had in memory when the
    /// process stopped: their index entries from their records, above
    /// `meta/indexed_to`. Their state writes, above `state`'s marker, are
    /// rebuilt by the ledger executing them again (in databases of layouts
    /// before 8, from `state_changes` above `meta/state_to`).
    fn rebuild_recent(&self) -> Result<()> {
        let Some(tip) = self.tip()? else {
            return Ok(());
        };
        // Written with genesis (and by the upgrade from layout 2); were it
        // missing, rebuilding from the first block is still right.
        let indexed_to = self.meta_height(META_INDEXED_TO)?.unwrap_or(0);
        // Written with genesis and by the upgrades; without it nothing
        // says which state writes are in `state`.
        let state_to = self
            .meta_height(META_STATE_TO)?
            .ok_or_else(|| corrupt("state_to", "missing"))?;
        for (what, to) in [("indexed_to", indexed_to), ("state_to", state_to)] {
            if to > tip.height {
                return Err(corrupt(
                    what,
                    format!("{to} is above the tip {}", tip.height),
                ));
            }
        }
        let mut recent = self.lock_recent();
        recent.index.clear(indexed_to);
        for height in indexed_to + 1..=tip.height {
            let count = self
                .block_summary(height)?
                .ok_or_else(|| corrupt("blocks", format!("block {height} is missing")))?
                .tx_hashes
                .len();
            let records = self.block_records(height, count, decode_record)?;
            let block = BlockIndex::of(records.iter().map(|r| (&r.tx, r.receipt.tx_hash)));
            recent.index.add(height, block);
        }
        recent.marked = Marks {
            indexed_to,
            state_to,
        };
        if let Some((held_at, lthash)) = self.state_held_at()? {
            // `state` holds exactly block `held_at`'s state (the marker
            // reached the SST files with its chunk; a later chunk lost in
            // the crash took its marker with it). The ledger executes the
            // blocks above it again.
            if held_at > tip.height || held_at < state_to {
                return Err(corrupt(
                    "state marker",
                    format!("{held_at} is outside {state_to}..={}", tip.height),
                ));
            }
            recent.state = RecentState {
                state_to: held_at,
                latest: HashMap::default(),
            };
            recent.replay = (held_at < tip.height).then_some((held_at, lthash));
            return Ok(());
        }
        // Layouts before 8 kept each block's state writes in `state_changes`
        // and had no marker.
        recent.state = RecentState {
            state_to,
            latest: HashMap::default(),
        };
        let changes = self.cf(CF_STATE_CHANGES)?;
        for height in state_to + 1..=tip.height {
            let bytes = self
                .db
                .get_cf(changes, height.to_be_bytes())?
                .ok_or_else(|| corrupt("state_changes", format!("block {height}'s are missing")))?;
            recent.state.add(&StateWrites::decode(&bytes)?);
        }
        drop(recent);
        // From now on blocks write no `state_changes`: the state is written,
        // with its marker, before any is committed.
        self.flush()
    }

    /// The height and LtHash of the state `state` holds (its marker), or
    /// `None` in a database of a layout before 8 or before genesis.
    fn state_held_at(&self) -> Result<Option<(u64, LtHash)>> {
        let Some(v) = self.db.get_cf(self.cf(CF_STATE)?, STATE_HELD_AT)? else {
            return Ok(None);
        };
        let bad = || corrupt("state marker", "malformed");
        let (height, lthash) = v.split_at_checked(8).ok_or_else(bad)?;
        let height = u64::from_be_bytes(height.try_into().map_err(|_| bad())?);
        Ok(Some((height, LtHash::from_bytes(lthash).ok_or_else(bad)?)))
    }

    /// Where the state held in memory is to be rebuilt from after reopening
    /// (see [`Store::hold_replayed`]): the height `state` holds and its
    /// LtHash, when blocks above it are not yet executed again.
    pub fn replay_from(&self) -> Option<(u64, LtHash)> {
        self.read_recent().replay.clone()
    }

    /// Holds the state writes of block `height`, executed again after
    /// reopening, as its commit did (`lthash`: the state's after it).
    /// Blocks come in order, from the one above [`Store::replay_from`]'s
    /// height to the tip.
    pub fn hold_replayed(&self, height: u64, writes: &StateWrites, lthash: &LtHash) -> Result<()> {
        let tip = self.tip()?.map_or(0, |t| t.height);
        let mut recent = self.lock_recent();
        let Some((from, _)) = recent.replay else {
            return Err(corrupt("replay", "nothing is being replayed"));
        };
        if height != from + 1 {
            return Err(corrupt(
                "replay",
                format!("block {height} replayed after {from}"),
            ));
        }
        recent.state.add(writes);
        recent.replay = (height < tip).then(|| (height, lthash.clone()));
        Ok(())
    }

    // Entries are added whole and a chunk is cleared only after it is
    // written: a panic elsewhere leaves nothing half done.
    fn lock_recent(&self) -> std::sync::RwLockWriteGuard<'_, Recent> {
        write_ignoring_poison(&self.recent)
    }

    fn read_recent(&self) -> std::sync::RwLockReadGuard<'_, Recent> {
        read_ignoring_poison(&self.recent)
    }

    /// Held (read) across a read of a chunk column family in RocksDB (see
    /// [`Store::chunk_io`]).
    fn chunk_io(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        read_ignoring_poison(&self.chunk_io)
    }

    /// See [`flush_chunk_memtables`].
    fn flush_chunk_memtables(&self, wait: bool) -> Result<()> {
        flush_chunk_memtables(&self.db, wait)
    }

    /// Starts the chunk writer on the chunk just sealed.
    fn spawn_writer(&self, sealed: Arc<Sealed>) -> Result<()> {
        let writer = self.chunk_writer();
        let handle = std::thread::Builder::new()
            .name("sou-chunk".into())
            .spawn(move || {
                // Below the committing and admitting threads: a chunk is
                // read from memory until it is written, and its bursts of
                // work (about 100 ms a chunk at 15,000 transfers/s) came
                // at the same moment on every validator.
                let _ = rustix::process::nice(CHUNK_WRITER_NICE);
                writer.write(&sealed)
            })
            .map_err(|e| corrupt("chunk writer", e))?;
        *lock_ignoring_poison(&self.writer) = Some(handle);
        Ok(())
    }

    /// Collects the chunk writer's result once it is done (waiting for it
    /// if `wait`). A chunk it failed to write stays sealed, is read from
    /// memory meanwhile, and is written again: by a new writer, or here if
    /// `wait`, so that nothing is left sealed when this returns.
    fn collect_writer(&self, wait: bool) -> Result<()> {
        let taken = {
            let mut slot = lock_ignoring_poison(&self.writer);
            match slot.take() {
                Some(h) if !wait && !h.is_finished() => {
                    *slot = Some(h);
                    return Ok(());
                }
                taken => taken,
            }
        };
        let Some(handle) = taken else {
            // (A writer that could not be started left its chunk sealed.)
            return self.rewrite_sealed(wait);
        };
        let failed = match handle.join() {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the writer panicked".to_string(),
        };
        tracing::warn!(error = %failed, "writing a chunk of indexes and state failed");
        self.rewrite_sealed(wait)
    }

    /// Writes the sealed chunk, if any, again (waiting for it if `wait`).
    fn rewrite_sealed(&self, wait: bool) -> Result<()> {
        let Some(sealed) = self.read_recent().sealed.clone() else {
            return Ok(());
        };
        if wait {
            self.chunk_writer().write(&sealed)
        } else {
            self.spawn_writer(sealed)
        }
    }

    fn chunk_writer(&self) -> ChunkWriter {
        ChunkWriter {
            db: self.db.clone(),
            ids: self.ids,
            cache: self.cache.clone(),
            recent: self.recent.clone(),
            chunk_io: self.chunk_io.clone(),
        }
    }

    /// Waits until the chunk writer has written the chunk it was given
    /// (for tests: a commit returns before its chunk is in RocksDB).
    #[cfg(test)]
    fn wait_for_chunk(&self) {
        self.collect_writer(true).unwrap();
    }

    /// Whether every chunk written is in SST files (durable without the
    /// WAL): no entries in the chunk column families' memtables, mutable or
    /// waiting for their flush.
    fn chunks_flushed(&self) -> Result<bool> {
        for name in CHUNK_CFS {
            let cf = self.cf(name)?;
            for property in [
                "rocksdb.num-entries-active-mem-table",
                "rocksdb.num-immutable-mem-table",
            ] {
                if self.db.property_int_value_cf(cf, property)? != Some(0) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Writes the index entries and state held in memory, then flushes
    /// every memtable to SST files (tests use it to read from disk; the
    /// ledger bench, so that its figures include every write).
    pub fn flush(&self) -> Result<()> {
        self.collect_writer(true)?;
        let mut recent = self.lock_recent();
        if recent.replay.is_some() {
            return Err(corrupt(
                "state",
                "the state held in memory is not rebuilt yet (open the store through the ledger)",
            ));
        }
        // The chunk written last is recorded before another is written, as
        // in `commit` (a crash then loses at most one chunk).
        self.record_written_chunks(&mut recent)?;
        let tip = self.tip()?.map_or(0, |t| t.height);
        // (A database of a layout before 8 may have all its state written
        // but no marker yet.)
        let marked_at_tip = self.state_held_at()?.is_some_and(|(h, _)| h == tip);
        if recent.entries() > 0 || recent.written_to() < tip || !marked_at_tip {
            let mut batch = BatchEncoder::with_capacity(recent.entries() * 128 + 4096);
            recent.index.write(&mut batch, &self.ids)?;
            recent
                .state
                .write(&mut batch, &self.ids, tip, &self.lthash()?)?;
            self.db.write(batch.finish())?;
            recent.index.clear(tip);
            recent.state.written(&mut self.lock_cache(), tip);
        }
        self.record_written_chunks(&mut recent)?;
        drop(recent);
        for name in ALL_CFS {
            self.db.flush_cf(self.cf(name)?)?;
        }
        Ok(())
    }

    /// Flushes the chunk column families, waiting, and records the chunks
    /// written so far in `meta`.
    fn record_written_chunks(&self, recent: &mut Recent) -> Result<()> {
        self.flush_chunk_memtables(true)?;
        if recent.unmarked() {
            let mut batch = BatchEncoder::with_capacity(4096);
            let marks = recent.mark(&mut batch, &self.ids)?;
            let mut wo = WriteOptions::default();
            wo.set_sync(true);
            self.db.write_opt(batch.finish(), &wo)?;
            recent.marked = marks;
        }
        Ok(())
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

    /// Commits an executed block in one atomic, fsynced write batch: after
    /// a crash either all of it is there or none. Its index entries and
    /// state writes are held in memory and written with the chunk (module
    /// docs); they are computed again from the block after a crash.
    pub fn commit(&self, executed: &ExecutedBlock, finality: Option<&[u8]>) -> Result<()> {
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
        // A chunk writer that is done: its result (a chunk it failed to
        // write is written again).
        self.collect_writer(false)?;
        let ids = self.ids;
        let tx_bytes: usize = block.transactions.len() * 320;
        let mut batch = BatchEncoder::with_capacity(
            tx_bytes + executed.writes.len() * 160 + executed.lthash.0.len() * 2 + 4096,
        );
        let hb = height.to_be_bytes();
        let tx_hashes: Vec<TxHash> = executed.receipts.iter().map(|r| r.tx_hash).collect();
        let stored = BlockSummary {
            header: block.header.clone(),
            tx_hashes,
            evidence: block.evidence.clone(),
        };
        batch.put(ids.blocks, &hb, &encode(&stored))?;
        batch.put(ids.block_hashes, &hash.0, &hb)?;
        if let Some(proof) = finality {
            batch.put(ids.finality, &hb, proof)?;
        }
        let pairs: Vec<(&SignedTransaction, &Receipt)> =
            block.transactions.iter().zip(&executed.receipts).collect();
        // Records in position order (key order), each encoded into one
        // reused buffer.
        let mut buf = Vec::with_capacity(TX_PAGE as usize * 320);
        for (page, records) in pairs.chunks(TX_PAGE as usize).enumerate() {
            encode_page(records, &mut buf)?;
            batch.put(ids.transactions, &tx_key(height, page as u32), &buf)?;
        }
        if height == 0 {
            batch.put(ids.meta, META_PAGED_FROM, &0u64.to_be_bytes())?;
        }
        let index = BlockIndex::of(pairs.iter().map(|(tx, r)| (*tx, r.tx_hash)));
        batch.put(ids.meta, META_LTHASH, &executed.lthash.to_bytes())?;
        batch.put(ids.meta, META_TIP, &encode(&Tip { height, hash }))?;
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        // See `Store::recent`. Commits are serialised by the caller.
        let mut recent = self.lock_recent();
        if recent.replay.is_some() {
            return Err(corrupt(
                "state",
                "the state held in memory is not rebuilt yet (open the store through the ledger)",
            ));
        }
        let over_limits = recent.index.entries() + index.entries() > INDEX_CHUNK_ENTRIES
            || recent.state.latest.len() + executed.writes.len() > STATE_CHUNK_ENTRIES;
        if over_limits && recent.sealed.is_some() {
            // The writer has fallen a whole chunk behind: wait for it
            // rather than hold ever more in memory.
            drop(recent);
            self.collect_writer(true)?;
            recent = self.lock_recent();
        }
        if over_limits && recent.unmarked() && !self.chunks_flushed()? {
            // The previous chunk's flush has fallen a whole chunk behind
            // (or its memtable switch failed): wait for it rather than hold
            // ever more in memory.
            self.flush_chunk_memtables(true)?;
        }
        // Chunks written (without the WAL) and flushed since: recorded in
        // `meta` by this block's batch.
        let marks = if recent.unmarked() && self.chunks_flushed()? {
            Some(recent.mark(&mut batch, &ids)?)
        } else {
            None
        };
        // A chunk waits until the one before it is recorded: then a crash
        // loses at most one chunk, which starts where the rebuild does, so
        // the rebuilt chunk's history entries replace its entries (keyed by
        // address and first height) rather than repeat them.
        let previous_recorded = (marks.is_some() || !recent.unmarked()) && recent.sealed.is_none();
        let closes_chunk = height == 0
            || previous_recorded
                && (height >= recent.written_to() + INDEX_CHUNK_BLOCKS || over_limits);
        if height == 0 {
            // Genesis: its chunk and marks go with it (nothing is held to
            // rebuild a chunk below the first block from).
            recent.index.add(height, index);
            recent.state.add(&executed.writes);
            recent.index.write(&mut batch, &ids)?;
            recent.state.write(&mut batch, &ids, 0, &executed.lthash)?;
            let marks = Marks {
                indexed_to: 0,
                state_to: 0,
            };
            marks.write(&mut batch, &ids)?;
            self.db.write_opt(batch.finish(), &wo)?;
            recent.marked = marks;
            recent.index.clear(height);
            recent.state.written(&mut self.lock_cache(), height);
            self.flush_chunk_memtables(false)?;
            return Ok(());
        }
        if !closes_chunk {
            drop(recent);
            self.db.write_opt(batch.finish(), &wo)?;
            let mut recent = self.lock_recent();
            if let Some(marks) = marks {
                recent.marked = marks;
            }
            recent.index.add(height, index);
            recent.state.add(&executed.writes);
            return Ok(());
        }
        // The block is durable with this write; its state writes can be
        // computed again from it, like any other block's.
        self.db.write_opt(batch.finish(), &wo)?;
        if let Some(marks) = marks {
            recent.marked = marks;
        }
        recent.index.add(height, index);
        recent.state.add(&executed.writes);
        // The chunk is derived data, so it goes to the memtables without
        // the WAL. `meta` records it only in the first batch after its
        // memtables are flushed; a crash before that rebuilds it from the
        // blocks above the marks (the state from those above the marker
        // `state` holds). It is sealed (read from memory until written)
        // and written by the chunk writer's thread: on this one, the
        // committing one, its 100,000 and more memtable inserts held every
        // validator's next block up by about 100 ms at once, every 64
        // blocks.
        let sealed = Arc::new(Sealed {
            to: height,
            lthash: executed.lthash.clone(),
            index: recent.index.take(),
            state: recent.state.take(),
        });
        recent.sealed = Some(sealed.clone());
        drop(recent);
        if let Err(e) = self.spawn_writer(sealed) {
            // The block is committed; its chunk stays sealed, read from
            // memory, and the next commit starts a writer again.
            tracing::warn!(height, error = %e, "could not start the chunk writer");
        }
        Ok(())
    }

    /// The header of the block at `height`.
    pub fn header(&self, height: u64) -> Result<Option<BlockHeader>> {
        Ok(self.block_summary(height)?.map(|s| s.header))
    }

    /// The block at `height` with its transactions' hashes, not the
    /// transactions: what explorers polling for new blocks ask for, read
    /// as one record (the transactions are a page per 64).
    pub fn block_summary(&self, height: u64) -> Result<Option<BlockSummary>> {
        match self.db.get_cf(self.cf(CF_BLOCKS)?, height.to_be_bytes())? {
            None => Ok(None),
            Some(b) => borsh::from_slice(&b)
                .map(Some)
                .map_err(|e| corrupt("block", e)),
        }
    }

    /// The block at `height`, with its transactions.
    pub fn block(&self, height: u64) -> Result<Option<Block>> {
        let Some(stored) = self.block_summary(height)? else {
            return Ok(None);
        };
        let transactions = self.block_records(height, stored.tx_hashes.len(), decode_tx)?;
        Ok(Some(Block {
            header: stored.header,
            transactions,
            evidence: stored.evidence,
        }))
    }

    /// The `count` transaction records of the block at `height`, in order:
    /// one scan of consecutive keys (pages, or single records below
    /// `paged_from`).
    fn block_records<T>(
        &self,
        height: u64,
        count: usize,
        decode: DecodeRecord<T>,
    ) -> Result<Vec<T>> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(match height.checked_add(1) {
            Some(next) => tx_key(next, 0).to_vec(),
            None => vec![0xff; 13],
        });
        let start = tx_key(height, 0);
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_TRANSACTIONS)?,
            ro,
            IteratorMode::From(&start, Direction::Forward),
        );
        let paged = height >= self.paged_from;
        let mut records = Vec::with_capacity(count);
        for (n, item) in iter.enumerate() {
            let (key, bytes) = item?;
            if *key != tx_key(height, n as u32) {
                return Err(corrupt("block", "a transaction is missing"));
            }
            if paged {
                page_records(&bytes, height, n as u32, &mut records, decode)?;
            } else {
                records.push(decode(&bytes, false, height, n as u32)?);
            }
        }
        if records.len() != count {
            return Err(corrupt("block", "a transaction is missing"));
        }
        Ok(records)
    }

    /// Where the record at (`height`, `index`) is: its key, and its slot
    /// in the page (`None`: a single record, below `paged_from`).
    fn record_key(&self, height: u64, index: u32) -> ([u8; 12], Option<usize>) {
        if height >= self.paged_from {
            (
                tx_key(height, index / TX_PAGE),
                Some((index % TX_PAGE) as usize),
            )
        } else {
            (tx_key(height, index), None)
        }
    }

    /// Decodes the record at (`height`, `index`) from the value read at its
    /// `record_key`.
    fn record_in(bytes: &[u8], slot: Option<usize>, height: u64, index: u32) -> Result<TxRecord> {
        let (one, slim) = match slot {
            Some(slot) => page_record(bytes, slot)?,
            None => (bytes, false),
        };
        decode_record(one, slim, height, index)
    }

    /// The proof of finality stored with the block at `height`.
    pub fn finality(&self, height: u64) -> Result<Option<Vec<u8>>> {
        Ok(self
            .db
            .get_cf(self.cf(CF_FINALITY)?, height.to_be_bytes())?)
    }

    /// The transaction hashes of the block at `height`.
    pub fn block_tx_hashes(&self, height: u64) -> Result<Option<Vec<TxHash>>> {
        Ok(self.block_summary(height)?.map(|s| s.tx_hashes))
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
        let recent = self.read_recent();
        let held = recent
            .index
            .txs
            .get(hash)
            .or_else(|| recent.sealed.as_ref()?.index.txs.get(hash))
            .copied();
        let (height, index) = match held {
            Some(at) => at,
            None => {
                let _io = self.chunk_io();
                match self.db.get_cf(self.cf(CF_TX_INDEX)?, hash.0)? {
                    Some(at) => parse_tx_key(&at)
                        .ok_or_else(|| corrupt("transaction index", "not 12 bytes"))?,
                    None => return Ok(None),
                }
            }
        };
        drop(recent);
        let (key, slot) = self.record_key(height, index);
        match self.db.get_cf(self.cf(CF_TRANSACTIONS)?, key)? {
            None => Err(corrupt("transaction", "indexed but missing")),
            Some(b) => Self::record_in(&b, slot, height, index).map(Some),
        }
    }

    pub fn receipt(&self, hash: &TxHash) -> Result<Option<Receipt>> {
        Ok(self.transaction(hash)?.map(|r| r.receipt))
    }

    /// Hashes of the transactions that involve `address`, newest first,
    /// starting strictly before (older than) `before` when given, at most
    /// `limit`.
    pub fn history(
        &self,
        address: &Address,
        before: Option<HistoryCursor>,
        limit: usize,
    ) -> Result<Vec<(HistoryCursor, TxHash)>> {
        Ok(self
            .history_records(address, before, limit)?
            .into_iter()
            .map(|r| {
                let at = HistoryCursor {
                    height: r.receipt.height,
                    index: r.receipt.index,
                };
                (at, r.receipt.tx_hash)
            })
            .collect())
    }

    /// The records of [`Store::history`]'s transactions.
    pub fn history_records(
        &self,
        address: &Address,
        before: Option<HistoryCursor>,
        limit: usize,
    ) -> Result<Vec<TxRecord>> {
        let at = self.history_positions(address, before, limit)?;
        let cf = self.cf(CF_TRANSACTIONS)?;
        let places: Vec<([u8; 12], Option<usize>)> = at
            .iter()
            .map(|c| self.record_key(c.height, c.index))
            .collect();
        let keys = places.iter().map(|(key, _)| (cf, *key));
        let mut out = Vec::with_capacity(at.len());
        for ((r, (_, slot)), c) in self.db.multi_get_cf(keys).into_iter().zip(&places).zip(&at) {
            let bytes = r?.ok_or_else(|| corrupt("history", "a transaction is missing"))?;
            out.push(Self::record_in(&bytes, *slot, c.height, c.index)?);
        }
        Ok(out)
    }

    fn history_positions(
        &self,
        address: &Address,
        before: Option<HistoryCursor>,
        limit: usize,
    ) -> Result<Vec<HistoryCursor>> {
        let older =
            |c: &HistoryCursor| before.is_none_or(|b| (c.height, c.index) < (b.height, b.index));
        let mut out = Vec::new();
        // The newest entries, held in memory, first. They are in order, so
        // a page starts with a binary search, not a walk from the newest.
        // (A sealed chunk's are older than the rest held.)
        let recent = self.read_recent();
        let held = [
            Some(&recent.index),
            recent.sealed.as_ref().map(|s| &s.index),
        ];
        for index in held.into_iter().flatten() {
            let positions = index.history.get(address).map_or(&[][..], Vec::as_slice);
            let end = positions
                .partition_point(|&(height, index)| older(&HistoryCursor { height, index }));
            for &(height, index) in positions[..end].iter().rev() {
                if out.len() >= limit {
                    return Ok(out);
                }
                out.push(HistoryCursor { height, index });
            }
        }
        let indexed_to = recent.index.indexed_to;
        let _io = self.chunk_io();
        // Then RocksDB's, up to `indexed_to`. Keys hold inverted heights
        // (a chunk entry's oldest): newest first is a forward scan within
        // the address's prefix, and an entry whose oldest position is above
        // `from` holds nothing at or below it. Entries list positions newest
        // first: a chunk's entry (height, index) pairs, a block's entry
        // (layouts before 6) indexes.
        let from = before.map_or(indexed_to, |c| c.height.min(indexed_to));
        let start = history_key(address, from);
        let mut ro = ReadOptions::default();
        ro.set_prefix_same_as_start(true);
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_HISTORY)?,
            ro,
            IteratorMode::From(&start, Direction::Forward),
        );
        let bad = |what: &str| corrupt("history", what);
        for item in iter {
            let (k, v) = item?;
            if k.get(..32) != Some(&address.0[..]) {
                break;
            }
            let inv_height = u64::from_be_bytes(
                k.get(32..40)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| bad("key"))?,
            );
            let positions: Box<dyn Iterator<Item = HistoryCursor>> = match k.len() {
                40 if v.len() % 4 == 0 => Box::new(v.chunks_exact(4).map(|b| HistoryCursor {
                    height: !inv_height,
                    index: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                })),
                41 if v.len() % 12 == 0 => {
                    let at = |i: usize| v.get(12 * i..12 * i + 12).map(chunk_position);
                    // Newest first: the page starts at the first position
                    // older than `before`, found by binary search.
                    let (mut lo, mut hi) = (0, v.len() / 12);
                    while lo < hi {
                        let mid = lo + (hi - lo) / 2;
                        if at(mid).is_some_and(|c| older(&c)) {
                            hi = mid;
                        } else {
                            lo = mid + 1;
                        }
                    }
                    Box::new((lo..v.len() / 12).filter_map(at))
                }
                _ => return Err(bad("an entry of unknown shape")),
            };
            for cursor in positions {
                if out.len() >= limit {
                    return Ok(out);
                }
                if cursor.height <= indexed_to && older(&cursor) {
                    out.push(cursor);
                }
            }
        }
        Ok(out)
    }

    /// Every state entry, in key order (for tests and audits; costs a full scan).
    pub fn state_entries(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let recent = self.read_recent();
        let io = self.chunk_io();
        let mut ro = ReadOptions::default();
        ro.set_total_order_seek(true);
        let mut entries = std::collections::BTreeMap::new();
        for item in self
            .db
            .iterator_cf_opt(self.cf(CF_STATE)?, ro, IteratorMode::Start)
        {
            let (k, v) = item?;
            if *k != STATE_HELD_AT {
                entries.insert(k.to_vec(), v.to_vec());
            }
        }
        drop(io);
        // The sealed chunk's values, then the newer ones.
        let sealed = recent.sealed.as_ref().map(|s| &s.state.latest);
        for (key, value) in sealed.into_iter().flatten().chain(&recent.state.latest) {
            match value {
                Some(v) => entries.insert(key.clone(), v.clone()),
                None => entries.remove(key),
            };
        }
        Ok(entries.into_iter().collect())
    }
}

impl Store {
    fn lock_cache(&self) -> std::sync::MutexGuard<'_, StateReadCache> {
        // The cache holds no invariant a panic elsewhere could break.
        lock_ignoring_poison(&self.cache)
    }
}

impl Store {
    /// Reads a committed state entry and hands it to `read` where it lies
    /// (in memory, or as read from RocksDB), without copying it out: the
    /// mempool reads every transaction's sender this way.
    pub fn read_state<T>(&self, key: &[u8], read: impl FnOnce(Option<&[u8]>) -> T) -> Result<T> {
        // Held until the cache is updated (see `Store::recent`).
        let recent = self.read_recent();
        let held = recent
            .state
            .latest
            .get(key)
            .or_else(|| recent.sealed.as_ref()?.state.latest.get(key));
        if let Some(v) = held {
            return Ok(read(v.as_deref()));
        }
        if let Some(v) = self.lock_cache().entries.get(key) {
            return Ok(read(v.as_deref()));
        }
        let v = {
            let _io = self.chunk_io();
            self.db.get_cf(self.cf(CF_STATE)?, key)?
        };
        let out = read(v.as_deref());
        self.lock_cache().insert(key.to_vec(), v);
        drop(recent);
        Ok(out)
    }
}

impl StateReader for Store {
    fn get_state(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.read_state(key, |v| v.map(<[u8]>::to_vec))
    }

    fn multi_get_state(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        // Held until the cache is updated (see `Store::recent`).
        let recent = self.read_recent();
        let mut out: Vec<Option<Option<Vec<u8>>>> = {
            let cache = self.lock_cache();
            keys.iter()
                .map(|k| {
                    recent
                        .state
                        .latest
                        .get(*k)
                        .or_else(|| recent.sealed.as_ref()?.state.latest.get(*k))
                        .or_else(|| cache.entries.get(*k))
                        .cloned()
                })
                .collect()
        };
        let missing: Vec<&[u8]> = keys
            .iter()
            .zip(&out)
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| *k)
            .collect();
        if !missing.is_empty() {
            let cf = self.cf(CF_STATE)?;
            let fetched = {
                let _io = self.chunk_io();
                self.db.batched_multi_get_cf(cf, &missing, false)
            };
            let mut cache = self.lock_cache();
            let mut fetched = fetched.into_iter();
            for (key, slot) in keys.iter().zip(out.iter_mut()) {
                if slot.is_none() {
                    let value = fetched
                        .next()
                        .ok_or_else(|| corrupt("multi-get", "fewer results than keys"))??
                        .map(|p| p.to_vec());
                    cache.insert(key.to_vec(), value.clone());
                    *slot = Some(value);
                }
            }
        }
        Ok(out.into_iter().map(Option::flatten).collect())
    }
}

/// Options of one column family.
///
/// Transaction hashes, block hashes, addresses and state keys are random, and
/// inserting random keys into RocksDB's default skip-list memtable costs
/// about 2.5 µs each on a two-core machine once the memtable holds a few
/// blocks. A hash-bucketed skip list (buckets chosen by a key prefix) costs
/// about 0.5 µs on the committing thread, but the cost comes back when the
/// memtable is flushed: the flush sorts every entry, on a background thread,
/// at about the price the insert saved (measured with `cargo bench -p
/// sou-ledger --bench execute`, whose whole-process CPU figure includes it).
/// Lookups by key and scans within one prefix (one address's history) stay
/// fast; a scan across prefixes needs `total_order_seek`. The two indexes
/// and the state, written a chunk at a time, use vector memtables instead
/// (module docs).
fn cf_options(name: &str) -> Options {
    let mut o = Options::default();
    o.set_write_buffer_size(64 << 20);
    // A memtable waiting for its flush does not stall writes until three
    // do (flushes run at a low priority: see `Store::open_with_cache`).
    o.set_max_write_buffer_number(4);
    // What is flushed from memtables and first compacted is written
    // uncompressed: hashes, addresses and signatures do not compress, and
    // snappy cost about 7% of a block's CPU (flushes included). Colder
    // levels, rewritten less often, keep snappy.
    {
        use rocksdb::DBCompressionType::{None as Plain, Snappy};
        o.set_compression_per_level(&[Plain, Plain, Snappy, Snappy, Snappy, Snappy, Snappy]);
    }
    let prefix = match name {
        CF_BLOCK_HASHES | CF_TX_INDEX => Some(SliceTransform::create_fixed_prefix(8)),
        // The tag and the next 8 bytes (every state key is at least 9 bytes).
        CF_STATE => Some(SliceTransform::create_fixed_prefix(STATE_KEY_MIN_BYTES)),
        // One bucket per address, so its history is one ordered run.
        CF_HISTORY => Some(SliceTransform::create_fixed_prefix(32)),
        // Heights (and transaction positions) arrive in order: the default
        // skip list is at its best.
        _ => None,
    };
    if matches!(name, CF_TX_INDEX | CF_HISTORY | CF_STATE) {
        // Written a chunk at a time and switched out at once (see the
        // module docs): appends, and one sort per flush.
        if let Some(p) = prefix {
            o.set_prefix_extractor(p);
        }
        // (A chunk's switch does not wait for the previous chunk's flush.)
        o.set_memtable_factory(MemtableFactory::Vector);
        if name != CF_STATE {
            // Keyed by random hashes, so every flushed chunk overlaps all
            // of level 1, and each compaction into it rewrites level 1
            // whole. Compacting every 8 files rather than every 4 halves
            // that: in 60 s at 14,000 transfers/s a node wrote 274 MB in
            // compactions of these two and spent about 2 s of CPU on them
            // (of its 45 s in all). Only clients read them; a bloom filter
            // per file keeps a read of a key that is not there from
            // searching each of the more files.
            o.set_level_zero_file_num_compaction_trigger(8);
            let mut table = BlockBasedOptions::default();
            table.set_bloom_filter(10.0, false);
            o.set_block_based_table_factory(&table);
        }
    } else if let Some(p) = prefix {
        o.set_prefix_extractor(p);
        o.set_memtable_factory(MemtableFactory::HashSkipList {
            bucket_count: 1 << 18,
            height: 4,
            branching_factor: 4,
        });
    }
    o
}

/// The (height, index) of a [`tx_key`].
fn parse_tx_key(key: &[u8]) -> Option<(u64, u32)> {
    let height = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let index = u32::from_be_bytes(key.get(8..)?.try_into().ok()?);
    Some((height, index))
}

/// Encodes a page of records into `buf`: their count (u32 LE, its top bit
/// set: the records are slim, see [`SLIM_PAGE`]), the offset
/// of each and of the end (u32 LE, from the first record), then the records.
fn encode_page(records: &[(&SignedTransaction, &Receipt)], buf: &mut Vec<u8>) -> Result<()> {
    buf.clear();
    buf.extend_from_slice(&(records.len() as u32 | SLIM_PAGE).to_le_bytes());
    let table = buf.len();
    buf.resize(table + 4 * (records.len() + 1), 0);
    let start = buf.len();
    let put_offset = |buf: &mut Vec<u8>, slot: usize| {
        let offset = (buf.len() - start) as u32;
        buf[table + 4 * slot..table + 4 * slot + 4].copy_from_slice(&offset.to_le_bytes());
    };
    for (slot, (tx, receipt)) in records.iter().enumerate() {
        put_offset(buf, slot);
        SlimRecordRef {
            tx,
            fee: &receipt.fee,
            status: &receipt.status,
        }
        .serialize(buf)
        .map_err(|e| corrupt("transaction record", e))?;
    }
    put_offset(buf, records.len());
    Ok(())
}

/// The count and the offset table of a page, checked: offsets ascend and
/// stay within the page.
fn page_table(page: &[u8]) -> Result<(usize, &[u8], &[u8], bool)> {
    let bad = || corrupt("transaction page", "malformed");
    let head = page
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(bad)?;
    let slim = head & SLIM_PAGE != 0;
    let count = (head & !SLIM_PAGE) as usize;
    // More would give its records the indexes of the next page's.
    if count > TX_PAGE as usize {
        return Err(bad());
    }
    let table_len = count
        .checked_add(1)
        .and_then(|n| n.checked_mul(4))
        .ok_or_else(bad)?;
    let table = page.get(4..4 + table_len).ok_or_else(bad)?;
    let data = &page[4 + table_len..];
    Ok((count, table, data, slim))
}

fn page_offset(table: &[u8], slot: usize) -> Option<usize> {
    table
        .get(4 * slot..4 * slot + 4)
        .and_then(|b| b.try_into().ok())
        .map(|b| u32::from_le_bytes(b) as usize)
}

/// The bytes of the record in `slot` of a page, and whether it is slim.
fn page_record(page: &[u8], slot: usize) -> Result<(&[u8], bool)> {
    let (count, table, data, slim) = page_table(page)?;
    if slot >= count {
        return Err(corrupt("transaction page", "no such record"));
    }
    match (page_offset(table, slot), page_offset(table, slot + 1)) {
        (Some(a), Some(b)) if a <= b => data
            .get(a..b)
            .map(|r| (r, slim))
            .ok_or_else(|| corrupt("transaction page", "malformed")),
        _ => Err(corrupt("transaction page", "malformed")),
    }
}

/// Decodes every record of page `page_no` of the block at `height` onto
/// `out`.
fn page_records<T>(
    page: &[u8],
    height: u64,
    page_no: u32,
    out: &mut Vec<T>,
    decode: DecodeRecord<T>,
) -> Result<()> {
    let (count, ..) = page_table(page)?;
    for slot in 0..count {
        let (bytes, slim) = page_record(page, slot)?;
        let index = page_no
            .checked_mul(TX_PAGE)
            .and_then(|i| i.checked_add(slot as u32))
            .ok_or_else(|| corrupt("transaction page", "index out of range"))?;
        out.push(decode(bytes, slim, height, index)?);
    }
    Ok(())
}

/// `height ‖ index`, big-endian: a transaction's place in the chain, in
/// chain order.
fn tx_key(height: u64, index: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&height.to_be_bytes());
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

/// Refuses a database laid out by another version of this code; marks a
/// new one with this version.
fn check_schema(db: &DB) -> Result<()> {
    let meta = db
        .cf_handle(CF_META)
        .ok_or_else(|| corrupt("column families", "meta is missing"))?;
    let found = match db.get_cf(meta, META_SCHEMA)? {
        Some(b) => u32::from_be_bytes(
            b.as_slice()
                .try_into()
                .map_err(|_| corrupt("schema", "not 4 bytes"))?,
        ),
        None if db.get_cf(meta, META_TIP)?.is_some() => 1,
        None => {
            let mut wo = WriteOptions::default();
            wo.set_sync(true);
            db.put_cf_opt(meta, META_SCHEMA, SCHEMA_VERSION.to_be_bytes(), &wo)?;
            SCHEMA_VERSION
        }
    };
    if (5..=7).contains(&found) {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        db.put_cf_opt(meta, META_SCHEMA, SCHEMA_VERSION.to_be_bytes(), &wo)?;
        return Ok(());
    }
    if (2..=4).contains(&found) {
        // Every state write (and in layout 2 every index entry) is in
        // RocksDB: written up to the tip. Records are single up to the tip.
        let tip: Option<Tip> = match db.get_cf(meta, META_TIP)? {
            Some(b) => Some(borsh::from_slice(&b).map_err(|e| corrupt("tip", e))?),
            None => None,
        };
        let tip = tip.map_or(0, |t| t.height);
        let mut batch = WriteBatch::default();
        batch.put_cf(meta, META_SCHEMA, SCHEMA_VERSION.to_be_bytes());
        if found == 2 {
            batch.put_cf(meta, META_INDEXED_TO, tip.to_be_bytes());
        }
        if found <= 3 {
            batch.put_cf(meta, META_STATE_TO, tip.to_be_bytes());
        }
        batch.put_cf(meta, META_PAGED_FROM, (tip + 1).to_be_bytes());
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        db.write_opt(batch, &wo)?;
        return Ok(());
    }
    if found != SCHEMA_VERSION {
        return Err(corrupt(
            "database layout",
            format!(
                "written with layout version {found}, this build reads version \
                 {SCHEMA_VERSION}: remove the node's database directory and let the node \
                 sync again"
            ),
        ));
    }
    Ok(())
}

/// `address ‖ !height`, big-endian: an address's entries sort newest first.
/// The key of a block's entry in layouts before 6, and where a scan for
/// positions at or below `height` starts.
fn history_key(address: &Address, height: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(&address.0);
    k[32..].copy_from_slice(&(!height).to_be_bytes());
    k
}

/// One position of a chunk's history entry: height (u64 BE), index (u32
/// BE), from exactly 12 bytes.
fn chunk_position(b: &[u8]) -> HistoryCursor {
    let (h, i) = b.split_at(8);
    HistoryCursor {
        height: u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]),
        index: u32::from_be_bytes([i[0], i[1], i[2], i[3]]),
    }
}

/// `address ‖ !oldest ‖ 1`: the key of an address's entry for a chunk,
/// whose oldest position is at height `oldest`. (One byte longer than a
/// block's entry, which tells the two apart.)
fn chunk_history_key(address: &Address, oldest: u64) -> [u8; 41] {
    let mut k = [1u8; 41];
    k[..40].copy_from_slice(&history_key(address, oldest));
    k
}

fn encode<T: BorshSerialize>(v: &T) -> Vec<u8> {
    sou_types::codec::encode(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database laid out by another version is refused with a message
    /// that says what to do; one of this layout reopens.
    #[test]
    fn a_database_of_another_layout_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let store = Store::open(dir.path()).unwrap();
        // What a database from before layout versions looks like: a tip and
        // no version.
        let meta = store.cf(CF_META).unwrap();
        store.db.put_cf(meta, META_TIP, b"tip").unwrap();
        store.db.delete_cf(meta, META_SCHEMA).unwrap();
        drop(store);
        let err = Store::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("layout version 1"), "{err}");
        assert!(
            err.contains("remove the node's database directory"),
            "{err}"
        );
    }

    /// Databases of layout 2 (every index entry and state write written
    /// with its block), 3 (every state write), 4 (one record per key), 5
    /// (a history entry per block), 6 (pages of whole records) and 7
    /// (state writes in `state_changes`) open, marked as this layout,
    /// written up to their tip, (before 5) paged above it, and with the
    /// state's marker.
    #[test]
    fn layouts_2_to_7_are_upgraded_in_place() {
        for layout in [2u32, 3, 4, 5, 6, 7] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let meta = store.cf(CF_META).unwrap();
            let tip = Tip {
                height: 7,
                hash: BlockHash::ZERO,
            };
            store.db.put_cf(meta, META_TIP, encode(&tip)).unwrap();
            store
                .db
                .put_cf(meta, META_SCHEMA, layout.to_be_bytes())
                .unwrap();
            if layout == 2 {
                store.db.delete_cf(meta, META_INDEXED_TO).unwrap();
            } else {
                store
                    .db
                    .put_cf(meta, META_INDEXED_TO, 7u64.to_be_bytes())
                    .unwrap();
            }
            if layout >= 4 {
                store
                    .db
                    .put_cf(meta, META_STATE_TO, 7u64.to_be_bytes())
                    .unwrap();
            } else {
                store.db.delete_cf(meta, META_STATE_TO).unwrap();
            }
            if layout >= 5 {
                store
                    .db
                    .put_cf(meta, META_PAGED_FROM, 3u64.to_be_bytes())
                    .unwrap();
            } else {
                store.db.delete_cf(meta, META_PAGED_FROM).unwrap();
            }
            // Opening holds nothing in memory (the blocks are all written)
            // and, finding no marker, writes the state's at the tip.
            check_schema(&store.db).unwrap();
            let get = |key: &[u8]| store.db.get_cf(meta, key).unwrap();
            assert_eq!(
                get(META_SCHEMA),
                Some(SCHEMA_VERSION.to_be_bytes().to_vec())
            );
            assert_eq!(get(META_INDEXED_TO), Some(7u64.to_be_bytes().to_vec()));
            assert_eq!(get(META_STATE_TO), Some(7u64.to_be_bytes().to_vec()));
            let paged_from: u64 = if layout >= 5 { 3 } else { 8 };
            assert_eq!(
                get(META_PAGED_FROM),
                Some(paged_from.to_be_bytes().to_vec())
            );
            assert_eq!(store.state_held_at().unwrap().map(|(h, _)| h), None);
            store.rebuild_recent().unwrap();
            assert_eq!(store.lock_recent().index.indexed_to, 7);
            assert_eq!(store.lock_recent().state.state_to, 7);
            assert_eq!(store.lock_recent().entries(), 0);
            // Without a marker, the held state is rebuilt from
            // `state_changes` and written at once, with its marker: from
            // then on no block writes `state_changes`.
            assert_eq!(store.state_held_at().unwrap().map(|(h, _)| h), Some(7));
            assert_eq!(store.replay_from().map(|(h, _)| h), None);
        }
    }

    /// An address's history reads as one list, newest first, across the
    /// positions held in memory (a sealed chunk's included), its chunk
    /// entries and the block entries of
    /// layouts before 6, whatever the page size; entries above `indexed_to`
    /// (a chunk written but not recorded) are not read from RocksDB.
    #[test]
    fn history_reads_across_block_entries_chunk_entries_and_memory() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cf = store.cf(CF_HISTORY).unwrap();
        let (who, other) = (Address([7; 32]), Address([8; 32]));
        // Layout 5: one entry per block, indexes newest first.
        for height in 1..=4u64 {
            let indexes: Vec<u8> = [3u32, 1].iter().flat_map(|i| i.to_be_bytes()).collect();
            store
                .db
                .put_cf(cf, history_key(&who, height), &indexes)
                .unwrap();
        }
        // Two chunks, and a third above `indexed_to`.
        let chunk = |positions: &[(u64, u32)]| -> Vec<u8> {
            positions
                .iter()
                .rev()
                .flat_map(|(h, i)| h.to_be_bytes().into_iter().chain(i.to_be_bytes()))
                .collect()
        };
        let first = [(5, 0), (5, 9), (7, 2)];
        let second = [(9, 4), (12, 0), (12, 1)];
        let unrecorded = [(13, 5)];
        for (positions, oldest) in [(&first[..], 5), (&second[..], 9), (&unrecorded[..], 13)] {
            store
                .db
                .put_cf(cf, chunk_history_key(&who, oldest), chunk(positions))
                .unwrap();
        }
        store
            .db
            .put_cf(cf, chunk_history_key(&other, 5), chunk(&[(6, 6)]))
            .unwrap();
        {
            // Block 13's chunk is sealed (being written), block 14 held.
            let mut recent = store.lock_recent();
            recent.index.indexed_to = 12;
            let mut sealed = RecentIndex {
                indexed_to: 12,
                ..RecentIndex::default()
            };
            sealed.history.insert(who, vec![(13, 5)]);
            recent.sealed = Some(Arc::new(Sealed {
                to: 13,
                lthash: LtHash::default(),
                index: sealed,
                state: RecentState::default(),
            }));
            recent.index.history.insert(who, vec![(14, 0)]);
        }
        let mut expected: Vec<(u64, u32)> = (1..=4u64).flat_map(|h| [(h, 1), (h, 3)]).collect();
        expected.extend(first.iter().chain(&second));
        expected.extend([(13, 5), (14, 0)]);
        expected.reverse();
        let all: Vec<(u64, u32)> = store
            .history_positions(&who, None, 1_000)
            .unwrap()
            .iter()
            .map(|c| (c.height, c.index))
            .collect();
        assert_eq!(all, expected);
        for limit in 1..=4 {
            let mut walked = Vec::new();
            let mut cursor = None;
            for _ in 0..100 {
                let page = store.history_positions(&who, cursor, limit).unwrap();
                let Some(last) = page.last() else { break };
                assert!(page.len() <= limit);
                cursor = Some(*last);
                walked.extend(page.iter().map(|c| (c.height, c.index)));
            }
            assert_eq!(walked, expected, "page size {limit}");
        }
        // A malformed entry is an error, not a panic or a silent gap.
        store
            .db
            .put_cf(cf, chunk_history_key(&who, 2), [0u8; 5])
            .unwrap();
        assert!(store.history_positions(&who, None, 1_000).is_err());
    }

    /// A chunk does not close while the one before it is not recorded in
    /// `meta` (its memtables not flushed): the blocks stay held, and the
    /// chunk closes with the first block after the flush, whose batch
    /// records the one before; or, past the held limits, with a block that
    /// waits for that flush.
    #[test]
    fn a_chunk_waits_until_the_one_before_it_is_recorded() {
        use sou_types::{ChainId, Hash};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut parent = BlockHash::ZERO;
        // A block writing key [9; 9] and `extra` other keys.
        let mut commit = |height: u64, extra: u32| {
            let mut writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..extra)
                .map(|i| {
                    let mut key = vec![8; STATE_KEY_MIN_BYTES];
                    key[1..5].copy_from_slice(&i.to_be_bytes());
                    (key, Some(height.to_be_bytes().to_vec()))
                })
                .collect();
            writes.push((
                vec![9; STATE_KEY_MIN_BYTES],
                Some(height.to_be_bytes().to_vec()),
            ));
            let executed = ExecutedBlock {
                block: Block {
                    header: BlockHeader {
                        chain_id: ChainId::new("sou-chunks").unwrap(),
                        height,
                        parent,
                        proposer: Address([1; 32]),
                        timestamp_ms: height,
                        tx_root: Hash::ZERO,
                        evidence_root: Hash::ZERO,
                        state_root: Hash::ZERO,
                    },
                    transactions: vec![],
                    evidence: vec![],
                },
                receipts: vec![],
                writes: StateWrites::from_pairs(
                    writes.iter().map(|(k, v)| (k.as_slice(), v.as_deref())),
                ),
                lthash: LtHash::default(),
            };
            parent = executed.block.hash();
            store.commit(&executed, None).unwrap();
        };
        let wait_for_flushes = || store.flush_chunk_memtables(true).unwrap();
        for height in 0..=INDEX_CHUNK_BLOCKS {
            commit(height, 0);
        }
        store.wait_for_chunk();
        assert_eq!(store.lock_recent().written_to(), INDEX_CHUNK_BLOCKS);
        // Something in a chunk memtable: the chunk is not flushed yet.
        store
            .db
            .put_cf(store.cf(CF_TX_INDEX).unwrap(), [0u8; 32], [0u8; 12])
            .unwrap();
        let held_until = 3 * INDEX_CHUNK_BLOCKS;
        for height in INDEX_CHUNK_BLOCKS + 1..=held_until {
            commit(height, 0);
        }
        assert_eq!(store.chunk_marks().unwrap(), (0, 0));
        assert_eq!(store.lock_recent().written_to(), INDEX_CHUNK_BLOCKS);
        assert_eq!(
            store.get_state(&[9; STATE_KEY_MIN_BYTES]).unwrap(),
            Some(held_until.to_be_bytes().to_vec())
        );
        wait_for_flushes();
        commit(held_until + 1, 0);
        let recorded = (INDEX_CHUNK_BLOCKS, INDEX_CHUNK_BLOCKS);
        assert_eq!(store.chunk_marks().unwrap(), recorded);
        store.wait_for_chunk();
        assert_eq!(store.lock_recent().written_to(), held_until + 1);
        wait_for_flushes();
        commit(held_until + 2, 0);
        assert_eq!(
            store.chunk_marks().unwrap(),
            (held_until + 1, held_until + 1)
        );
        // No block writes `state_changes` (layout 8): `state`'s marker says
        // which block's state it holds.
        let changes = store.cf(CF_STATE_CHANGES).unwrap();
        for height in 1..=held_until + 2 {
            let kept = store.db.get_cf(changes, height.to_be_bytes()).unwrap();
            assert!(kept.is_none(), "{height}");
        }
        assert_eq!(
            store.state_held_at().unwrap().map(|(h, _)| h),
            Some(held_until + 1)
        );
        // A block that takes the held state past its limit closes a chunk;
        // while that one is being written, or is unrecorded, the next such
        // block waits for its writer and its flush: it is recorded, and the
        // next chunk closes.
        let first_big = held_until + 3;
        commit(first_big, STATE_CHUNK_ENTRIES as u32);
        {
            let recent = store.lock_recent();
            let sealed_to = recent.sealed.as_ref().map(|s| s.to);
            assert!(sealed_to == Some(first_big) || recent.written_to() == first_big);
        }
        store
            .db
            .put_cf(store.cf(CF_TX_INDEX).unwrap(), [1u8; 32], [0u8; 12])
            .unwrap();
        let big = first_big + 1;
        commit(big, STATE_CHUNK_ENTRIES as u32);
        assert_eq!(store.chunk_marks().unwrap(), (first_big, first_big));
        store.wait_for_chunk();
        assert_eq!(store.lock_recent().written_to(), big);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.get_state(&[9; STATE_KEY_MIN_BYTES]).unwrap(),
            Some(big.to_be_bytes().to_vec())
        );
    }

    /// Records read the same stored in pages (from `paged_from` on) and one
    /// per key (below it), by position and as a block.
    /// A sealed chunk is read from memory until it is written; one whose
    /// writer never started (or failed) is written by the next collection,
    /// and is then read from RocksDB, with `state`'s marker at its height.
    #[test]
    fn a_sealed_chunk_is_read_from_memory_and_written_later() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = vec![5u8; STATE_KEY_MIN_BYTES];
        let (who, tx): (Address, TxHash) = (Address([6; 32]), sou_types::Hash([7; 32]));
        {
            let mut index = RecentIndex::default();
            index.add(
                1,
                BlockIndex {
                    txs: vec![tx],
                    involved: vec![(who, 0)],
                },
            );
            let mut state = RecentState::default();
            state.latest.insert(key.clone(), Some(b"value".to_vec()));
            store.lock_recent().sealed = Some(Arc::new(Sealed {
                to: 1,
                lthash: LtHash::default(),
                index,
                state,
            }));
        }
        let position = |store: &Store| -> Vec<(u64, u32)> {
            let page = store.history_positions(&who, None, 10).unwrap();
            page.iter().map(|c| (c.height, c.index)).collect()
        };
        assert_eq!(store.get_state(&key).unwrap(), Some(b"value".to_vec()));
        assert_eq!(position(&store), vec![(1, 0)]);
        let in_rocksdb = |store: &Store, cf: &str, key: &[u8]| {
            store.db.get_cf(store.cf(cf).unwrap(), key).unwrap()
        };
        assert_eq!(in_rocksdb(&store, CF_STATE, &key), None);
        // No writer is running: the next collection starts one.
        store.collect_writer(false).unwrap();
        store.wait_for_chunk();
        {
            let recent = store.read_recent();
            assert!(recent.sealed.is_none());
            assert_eq!(recent.written_to(), 1);
        }
        assert_eq!(in_rocksdb(&store, CF_STATE, &key), Some(b"value".to_vec()));
        assert_eq!(
            in_rocksdb(&store, CF_TX_INDEX, &tx.0),
            Some(tx_key(1, 0).to_vec())
        );
        assert_eq!(store.get_state(&key).unwrap(), Some(b"value".to_vec()));
        assert_eq!(position(&store), vec![(1, 0)]);
        assert_eq!(store.state_held_at().unwrap().map(|(h, _)| h), Some(1));
    }

    #[test]
    fn records_read_the_same_paged_and_single() {
        use sou_types::{Amount, ChainId, Keypair, Memo, Payload, Transaction};
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store.paged_from = 5;
        let key = Keypair::derive_insecure(1, "pages");
        let n = 2 * TX_PAGE + 22;
        let records: Vec<TxRecord> = (0..n)
            .map(|i| {
                let tx = Transaction {
                    chain_id: ChainId::new("sou-pages").unwrap(),
                    sender: key.address(),
                    nonce: u64::from(i),
                    max_fee: Amount(1),
                    expiry_height: 100,
                    payload: Payload::Transfer {
                        asset: sou_types::asset::NATIVE,
                        to: key.address(),
                        amount: Amount(u128::from(i) + 1),
                        memo: Memo::empty(),
                    },
                }
                .sign(&key);
                let receipt = Receipt {
                    tx_hash: tx.hash(),
                    height: 7,
                    index: i,
                    fee: Amount(1),
                    status: if i % 5 == 0 {
                        TxStatus::Failed {
                            reason: "x".repeat(i as usize),
                        }
                    } else {
                        TxStatus::Success
                    },
                };
                TxRecord { tx, receipt }
            })
            .collect();
        let cf = store.cf(CF_TRANSACTIONS).unwrap();
        let pairs: Vec<(&SignedTransaction, &Receipt)> =
            records.iter().map(|r| (&r.tx, &r.receipt)).collect();
        // Layouts 5 and 6 wrote pages of whole records.
        let full_page = |records: &[(&SignedTransaction, &Receipt)]| {
            let mut page = (records.len() as u32).to_le_bytes().to_vec();
            let mut offset = 0u32;
            let encoded: Vec<Vec<u8>> = records
                .iter()
                .map(|(tx, r)| {
                    encode(&TxRecord {
                        tx: (*tx).clone(),
                        receipt: (*r).clone(),
                    })
                })
                .collect();
            for e in &encoded {
                page.extend_from_slice(&offset.to_le_bytes());
                offset += e.len() as u32;
            }
            page.extend_from_slice(&offset.to_le_bytes());
            encoded.iter().for_each(|e| page.extend_from_slice(e));
            page
        };
        let mut buf = Vec::new();
        for (page, chunk) in pairs.chunks(TX_PAGE as usize).enumerate() {
            encode_page(chunk, &mut buf).unwrap();
            // A slim record is 44 bytes shorter: no hash, height or index.
            assert_eq!(buf.len() + 44 * chunk.len(), full_page(chunk).len());
            store.db.put_cf(cf, tx_key(7, page as u32), &buf).unwrap();
            let full = full_page(chunk);
            store.db.put_cf(cf, tx_key(8, page as u32), &full).unwrap();
        }
        for (i, r) in records.iter().enumerate() {
            store.db.put_cf(cf, tx_key(3, i as u32), encode(r)).unwrap();
        }
        for height in [3, 7, 8] {
            // Whole records (at 3 and 8) read back as stored; slim ones (at
            // 7) rebuild the same receipts from their place and their hash.
            let want = &records;
            assert_eq!(
                &store
                    .block_records(height, n as usize, decode_record)
                    .unwrap(),
                want
            );
            let txs: Vec<SignedTransaction> = want.iter().map(|r| r.tx.clone()).collect();
            assert_eq!(
                store.block_records(height, n as usize, decode_tx).unwrap(),
                txs
            );
            for i in [0, TX_PAGE - 1, TX_PAGE, n - 1] {
                let (key, slot) = store.record_key(height, i);
                assert_eq!(slot.is_some(), height >= 7);
                let bytes = store.db.get_cf(cf, key).unwrap().unwrap();
                let read = Store::record_in(&bytes, slot, height, i).unwrap();
                assert_eq!(read, want[i as usize]);
            }
        }
        // A page cut short or scribbled on is an error, never a panic.
        encode_page(&pairs[..5], &mut buf).unwrap();
        for cut in 0..buf.len() {
            let mut out = Vec::new();
            assert!(
                page_records(&buf[..cut], 7, 0, &mut out, decode_record).is_err()
                    || cut == buf.len()
            );
            let _ = page_record(&buf[..cut], 4);
        }
        for at in 0..buf.len().min(64) {
            let mut bad = buf.clone();
            bad[at] ^= 0xa5;
            let mut out = Vec::new();
            let _ = page_records(&bad, 7, 0, &mut out, decode_record);
            let _ = page_record(&bad, 2);
        }
        assert!(page_record(&buf, 5).is_err());
        // A page may not claim more than TX_PAGE records.
        let mut over = (SLIM_PAGE | (TX_PAGE + 1)).to_le_bytes().to_vec();
        over.resize(4 + 4 * (TX_PAGE as usize + 2), 0);
        assert!(page_table(&over).is_err());
        // A page number whose first index overflows u32.
        let mut out = Vec::new();
        assert!(page_records(&buf, 7, u32::MAX, &mut out, decode_record).is_err());
    }

    /// The encoder writes exactly the bytes RocksDB's own batch calls do,
    /// and RocksDB applies them.
    #[test]
    fn an_encoded_batch_is_byte_for_byte_rocksdbs_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // Keys at least as long as each family's prefix; lengths over 127
        // take two varint bytes.
        let long = vec![7u8; 300];
        let (key, gone, tx) = ([1u8; 40], [2u8; 40], [3u8; 32]);
        /// Column family, its id, key, value (`None`: delete).
        type Op<'a> = (&'a str, u32, &'a [u8], Option<&'a [u8]>);
        let ops: [Op<'_>; 5] = [
            (CF_STATE, store.ids.state, &key, Some(b"a value")),
            (CF_HISTORY, store.ids.history, &long, Some(&long)),
            (CF_STATE, store.ids.state, &gone, None),
            (CF_META, store.ids.meta, META_TIP, Some(b"")),
            (CF_TX_INDEX, store.ids.tx_index, &tx, Some(&long)),
        ];
        let mut ours = BatchEncoder::with_capacity(0);
        let mut theirs = WriteBatch::default();
        for (name, id, key, value) in ops {
            let cf = store.cf(name).unwrap();
            match value {
                Some(v) => {
                    ours.put(id, key, v).unwrap();
                    theirs.put_cf(cf, key, v);
                }
                None => {
                    ours.delete(id, key).unwrap();
                    theirs.delete_cf(cf, key);
                }
            }
        }
        let ours = ours.finish();
        assert_eq!(ours.len(), 5);
        assert_eq!(ours.data(), theirs.data());
        store.db.write(ours).unwrap();
        let cf = store.cf(CF_TX_INDEX).unwrap();
        assert_eq!(store.db.get_cf(cf, tx).unwrap(), Some(long.clone()));
        let cf = store.cf(CF_HISTORY).unwrap();
        assert_eq!(store.db.get_cf(cf, &long).unwrap(), Some(long));
        // Distinct ids, as RocksDB numbers its column families.
        let ids = store.ids;
        let mut all = vec![
            ids.blocks,
            ids.block_hashes,
            ids.finality,
            ids.transactions,
            ids.tx_index,
            ids.history,
            ids.state,
            ids.state_changes,
            ids.meta,
        ];
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), ALL_CFS.len());
    }
}
