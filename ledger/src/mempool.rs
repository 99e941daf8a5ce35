//! The mempool's admission rules and block selection, as library code the
//! node runs. Every transaction in the pool has had its signature verified
//! (in batches, on admission), so a block built from the pool, or received
//! holding pool transactions, need not verify them again.

use std::collections::BTreeMap;

use foldhash::HashMap;
use smallvec::SmallVec;

use sou_types::asset::NATIVE;
use sou_types::crypto::verify_batch;
use sou_types::crypto::Signature;
use sou_types::{Address, Amount, Payload, SignedTransaction, Symbol, TxHash};

use crate::error::InvalidTx;
use crate::exec::{check_static, Candidate};
use crate::ledger::Ledger;
use crate::state::Account;
use crate::Result;

/// Limits of the mempool, set in the node's config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Most transactions held.
    pub max_txs: usize,
    /// Most bytes of encoded transactions held.
    pub max_bytes: usize,
    /// Most transactions held for one sender.
    pub max_txs_per_sender: usize,
    /// How far past the account's next nonce a transaction may be.
    pub nonce_window: u64,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_txs: 200_000,
            max_bytes: 256 * 1024 * 1024,
            max_txs_per_sender: 256,
            nonce_window: 256,
        }
    }
}

/// Why the mempool turned a transaction away.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    #[error(transparent)]
    Invalid(#[from] InvalidTx),
    #[error("transaction {0} is already in the mempool")]
    Duplicate(TxHash),
    #[error("the sender already has a pending transaction with nonce {0}")]
    NonceTaken(u64),
    #[error("the sender has {max} pending transactions, the most allowed")]
    SenderFull { max: usize },
    #[error("the mempool is full ({max_txs} transactions or {max_bytes} bytes)")]
    Full { max_txs: usize, max_bytes: usize },
    #[error("ledger error while checking: {0}")]
    Ledger(String),
}

impl AdmitError {
    /// A short, stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            AdmitError::Invalid(InvalidTx::BadSignature) => "bad_signature",
            AdmitError::Invalid(InvalidTx::WrongChain { .. }) => "wrong_chain",
            AdmitError::Invalid(InvalidTx::NonceUsed { .. }) => "nonce_used",
            AdmitError::Invalid(InvalidTx::NonceTooFar { .. } | InvalidTx::NonceNotNext { .. }) => {
                "nonce_gap"
            }
            AdmitError::Invalid(InvalidTx::Expired { .. } | InvalidTx::ExpiryTooFar { .. }) => {
                "expiry"
            }
            AdmitError::Invalid(InvalidTx::InsufficientBalance { .. }) => "insufficient_balance",
            AdmitError::Invalid(InvalidTx::SenderFrozen(_)) => "frozen",
            AdmitError::Invalid(_) => "invalid",
            AdmitError::Duplicate(_) => "duplicate",
            AdmitError::NonceTaken(_) => "nonce_taken",
            AdmitError::SenderFull { .. } => "sender_full",
            AdmitError::Full { .. } => "mempool_full",
            AdmitError::Ledger(_) => "internal",
        }
    }
}

#[derive(Debug)]
struct Entry {
    tx: SignedTransaction,
    len: usize,
}

#[derive(Debug, Default)]
struct SenderQueue {
    /// Pending transactions, in nonce order. A sender has few (at most
    /// [`MempoolConfig::max_txs_per_sender`]), they mostly arrive in order
    /// and leave from the front, and a queue comes and goes with every
    /// block for a sender with one pending transfer: a vector costs one
    /// allocation where a `BTreeMap` cost a node of ~500 bytes.
    by_nonce: Vec<(u64, TxHash)>,
    /// What the pending transactions could spend at most, per asset (kept
    /// as they come and go, rather than added up for every admission).
    spend: Spends,
    /// The account's next nonce when last read from the ledger.
    account_nonce: u64,
    /// When the sender first got a pending transaction: selection is fair
    /// between senders in this order.
    arrival: u64,
}

impl SenderQueue {
    /// Where `nonce` is in `by_nonce`, or where it would go.
    fn position(&self, nonce: u64) -> std::result::Result<usize, usize> {
        match self.by_nonce.last() {
            None => Err(0),
            Some(&(last, _)) if last < nonce => Err(self.by_nonce.len()),
            Some(_) => self.by_nonce.binary_search_by_key(&nonce, |&(n, _)| n),
        }
    }

    fn has_nonce(&self, nonce: u64) -> bool {
        self.position(nonce).is_ok()
    }

    fn insert(&mut self, nonce: u64, hash: TxHash) {
        if let Err(i) = self.position(nonce) {
            self.by_nonce.insert(i, (nonce, hash));
        }
    }

    fn remove(&mut self, nonce: u64) {
        if let Ok(i) = self.position(nonce) {
            self.by_nonce.remove(i);
        }
    }
}

/// Amounts per asset, held inline for the usual one or two (the fee's, and
/// what a transfer moves when it is another asset).
#[derive(Debug, Default)]
struct Spends(SmallVec<[(Symbol, u128); 2]>);

impl Spends {
    fn get(&self, asset: &Symbol) -> u128 {
        self.0
            .iter()
            .find(|(s, _)| s == asset)
            .map_or(0, |(_, v)| *v)
    }

    /// Adds `amount` of `asset` (`add`), or takes it away.
    fn change(&mut self, asset: Symbol, amount: u128, add: bool) {
        match self.0.iter_mut().find(|(s, _)| *s == asset) {
            Some((_, v)) if add => *v = v.saturating_add(amount),
            Some((_, v)) => *v = v.saturating_sub(amount),
            None if add && amount > 0 => self.0.push((asset, amount)),
            None => {}
        }
        if !add {
            self.0.retain(|(_, v)| *v > 0);
        }
    }
}

/// What a transaction could spend at most, per asset: the fee, and the
/// amount it moves (added to the fee's when it is the fee asset). Held
/// inline: every admission and removal computes one.
#[derive(Clone, Copy)]
struct Spend {
    items: [(Symbol, u128); 2],
    len: usize,
}

impl Spend {
    fn of(tx: &SignedTransaction, fee_asset: Symbol, fee: Amount) -> Spend {
        let moved = match &tx.tx.payload {
            Payload::Transfer { asset, amount, .. } | Payload::Burn { asset, amount } => {
                Some((*asset, amount.0))
            }
            Payload::BatchTransfer { asset, payouts, .. } => Some((
                *asset,
                payouts
                    .as_slice()
                    .iter()
                    .fold(0u128, |acc, p| acc.saturating_add(p.amount.0)),
            )),
            Payload::Bond { amount, .. } => Some((NATIVE, amount.0)),
            _ => None,
        };
        let mut s = Spend {
            items: [(fee_asset, fee.0), (fee_asset, 0)],
            len: 1,
        };
        match moved {
            Some((asset, amount)) if asset == fee_asset => {
                s.items[0].1 = s.items[0].1.saturating_add(amount);
            }
            Some(other) => {
                s.items[1] = other;
                s.len = 2;
            }
            None => {}
        }
        s
    }

    fn iter(&self) -> impl Iterator<Item = (Symbol, u128)> + '_ {
        self.items[..self.len].iter().copied()
    }
}

/// The pool. Hash maps use a seeded fast hasher: keys are hashes and
/// addresses that senders choose, and nothing depends on iteration order.
#[derive(Debug, Default)]
pub struct Mempool {
    config: MempoolConfig,
    entries: HashMap<TxHash, Entry>,
    senders: HashMap<Address, SenderQueue>,
    /// Entries by the last height they may be included at, kept lazily:
    /// an entry that leaves stays listed until its height passes or the
    /// lists are rebuilt (when they hold more than twice the pool), so that
    /// a transaction costs a push here, not a set insert and a removal.
    /// Many share a height (wallets set it a fixed distance ahead).
    by_expiry: BTreeMap<u64, Vec<TxHash>>,
    /// Hashes listed in `by_expiry`, stale ones included.
    expiry_listed: usize,
    bytes: usize,
    next_arrival: u64,
    /// The fee asset and fee the spends are counted with (from the
    /// ledger's parameters, which do not change).
    fee: Option<(Symbol, Amount)>,
}

/// Transactions checked without the pool: the rules of a transaction on
/// its own, the sender's nonce not yet used, and the signature (verified in
/// one batch). What [`Mempool::admit_verified`] takes.
#[derive(Debug)]
pub struct Prechecked {
    /// A result per transaction, in order; refusals are final, the others
    /// are decided by `admit_verified`.
    results: Vec<Result<TxHash, AdmitError>>,
    /// (position, transaction, hash, encoded length) of those let through.
    candidates: Vec<(usize, SignedTransaction, TxHash, usize)>,
    /// The height the accounts below were read for (the tip's next).
    height: u64,
    /// The senders' accounts as read then: `admit_verified` uses them
    /// instead of reading them again if no block was committed since.
    accounts: HashMap<Address, Account>,
}

/// Verifies, in one batch, the signatures of `txs` (with their hashes)
/// that `known` does not say were verified before. For each: `None` if it
/// was known, else whether its signature is valid.
pub fn verify_unless_known(
    txs: &[(&SignedTransaction, TxHash)],
    known: &dyn Fn(&TxHash, &Signature) -> bool,
) -> Vec<Option<bool>> {
    let unchecked: Vec<usize> = (0..txs.len())
        .filter(|&i| !known(&txs[i].1, &txs[i].0.signature))
        .collect();
    let items: Vec<_> = unchecked
        .iter()
        .map(|&i| {
            let (tx, h) = txs[i];
            (tx.tx.sender.public_key(), h, tx.signature)
        })
        .collect();
    let mut out = vec![None; txs.len()];
    for (&i, ok) in unchecked.iter().zip(verify_batch(&items)) {
        out[i] = Some(ok);
    }
    out
}

/// The expensive half of admission, which needs no pool and so runs
/// without its lock: a node verifying a batch of signatures does not hold
/// up block building and execution, which need the pool too. The nonce is
/// checked against the ledger first, so replays of committed transactions
/// cost no signature check. `verified` says which (hash, signature) pairs
/// this node has verified already (see [`RecentlyVerified`]); those are
/// not verified again.
pub fn precheck(
    txs: Vec<(SignedTransaction, TxHash, usize)>,
    ledger: &Ledger,
    verified: &dyn Fn(&TxHash, &Signature) -> bool,
) -> Prechecked {
    let height = ledger.tip().height + 1;
    let p = ledger.params();
    let mut results = Vec::with_capacity(txs.len());
    let mut candidates = Vec::with_capacity(txs.len());
    let mut accounts: HashMap<Address, Account> = HashMap::default();
    for (i, (tx, hash, len)) in txs.into_iter().enumerate() {
        let refused = check_static(&tx, len, p, ledger.chain_id(), height)
            .map_err(AdmitError::from)
            .and_then(|()| {
                let sender = tx.tx.sender;
                let nonce = match accounts.entry(sender) {
                    std::collections::hash_map::Entry::Occupied(e) => e.get().nonce,
                    std::collections::hash_map::Entry::Vacant(e) => {
                        let acc = ledger
                            .account(&sender)
                            .map_err(|e| AdmitError::Ledger(e.to_string()))?;
                        e.insert(acc).nonce
                    }
                };
                if tx.tx.nonce < nonce {
                    return Err(InvalidTx::NonceUsed {
                        got: tx.tx.nonce,
                        expected: nonce,
                    }
                    .into());
                }
                Ok(())
            });
        match refused {
            Ok(()) => {
                // Decided by `admit_verified`.
                results.push(Ok(hash));
                candidates.push((i, tx, hash, len));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    let refs: Vec<(&SignedTransaction, TxHash)> =
        candidates.iter().map(|(_, tx, h, _)| (tx, *h)).collect();
    let valid: Vec<bool> = verify_unless_known(&refs, verified)
        .into_iter()
        .map(|v| v != Some(false))
        .collect();
    let mut passed = Vec::with_capacity(candidates.len());
    for (c, ok) in candidates.into_iter().zip(valid) {
        if ok {
            passed.push(c);
        } else {
            results[c.0] = Err(InvalidTx::BadSignature.into());
        }
    }
    Prechecked {
        results,
        candidates: passed,
        height,
        accounts,
    }
}

/// Transactions (by hash, with the signature) whose signature this node
/// verified outside admission: those of blocks it executed that its pool
/// did not hold. Under load a validator often receives a block before the
/// gossip of some of its transactions has been admitted; it fetches and
/// verifies them to execute the block, and the gossiped copies that arrive
/// afterwards need no second check. (Measured at 9,000 transfers/s on four
/// validators: about 40% of the transactions of other validators' blocks
/// were verified twice per node.)
///
/// Bounded: two generations of at most `capacity` entries each; when the
/// newer fills up, the older is dropped. An entry is useful for seconds
/// (until the gossiped copy arrives, or the block commits and the nonce
/// check refuses the copy before any signature check).
#[derive(Debug)]
pub struct RecentlyVerified {
    capacity: usize,
    newer: HashMap<TxHash, Signature>,
    older: HashMap<TxHash, Signature>,
}

impl RecentlyVerified {
    pub fn new(capacity: usize) -> RecentlyVerified {
        RecentlyVerified {
            capacity: capacity.max(1),
            newer: HashMap::default(),
            older: HashMap::default(),
        }
    }

    /// Records that `signature` over `hash` verified.
    pub fn insert(&mut self, hash: TxHash, signature: Signature) {
        if self.newer.len() >= self.capacity {
            self.older = std::mem::take(&mut self.newer);
        }
        self.newer.insert(hash, signature);
    }

    /// Whether `signature` over `hash` was recorded as verified. A copy of
    /// the transaction with another signature is not.
    pub fn contains(&self, hash: &TxHash, signature: &Signature) -> bool {
        self.newer
            .get(hash)
            .or_else(|| self.older.get(hash))
            .is_some_and(|s| s == signature)
    }

    /// Entries held, both generations.
    pub fn len(&self) -> usize {
        self.newer.len() + self.older.len()
    }

    pub fn is_empty(&self) -> bool {
        self.newer.is_empty() && self.older.is_empty()
    }
}

impl Mempool {
    pub fn new(config: MempoolConfig) -> Mempool {
        Mempool {
            config,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn contains(&self, hash: &TxHash) -> bool {
        self.entries.contains_key(hash)
    }

    pub fn get(&self, hash: &TxHash) -> Option<&SignedTransaction> {
        self.entries.get(hash).map(|e| &e.tx)
    }

    /// Checks and admits transactions against the ledger's committed state.
    /// Returns a result per transaction, in order. Signatures of those that
    /// pass every other check are verified in one batch.
    pub fn admit(
        &mut self,
        txs: Vec<SignedTransaction>,
        ledger: &Ledger,
    ) -> Vec<Result<TxHash, AdmitError>> {
        let txs = txs
            .into_iter()
            .map(|tx| {
                let (hash, len) = tx.hash_and_len();
                (tx, hash, len)
            })
            .collect();
        self.admit_hashed(txs, ledger)
    }

    /// [`Mempool::admit`] for transactions whose hash and encoded length
    /// (from [`SignedTransaction::hash_and_len`]) the caller computed.
    pub fn admit_hashed(
        &mut self,
        txs: Vec<(SignedTransaction, TxHash, usize)>,
        ledger: &Ledger,
    ) -> Vec<Result<TxHash, AdmitError>> {
        self.admit_verified(precheck(txs, ledger, &|_, _| false), ledger)
    }

    /// Admits what [`precheck`] let through: the checks that need the pool
    /// (duplicates, nonces taken, pending spend, limits), with the account
    /// read again, then the pool. Cheap: the signatures are verified.
    pub fn admit_verified(
        &mut self,
        pre: Prechecked,
        ledger: &Ledger,
    ) -> Vec<Result<TxHash, AdmitError>> {
        let height = ledger.tip().height + 1;
        let Prechecked {
            mut results,
            candidates,
            height: read_for,
            accounts,
        } = pre;
        // Accounts read before a commit are read again.
        let accounts = if read_for == height {
            accounts
        } else {
            HashMap::default()
        };
        let p = ledger.params();
        self.fee = Some((p.fee_asset, p.tx_fee));
        // Each is in the pool (or refused) before the next is checked, so a
        // batch's earlier transactions count like any pending ones: against
        // duplicates, taken nonces, the balance and the limits.
        for (i, tx, hash, len) in candidates {
            results[i] = self.admit_one(tx, hash, len, height, ledger, &accounts);
        }
        results
    }

    /// Checks one transaction against the pool and the sender's account
    /// (from `accounts` when read there), and admits it.
    fn admit_one(
        &mut self,
        tx: SignedTransaction,
        hash: TxHash,
        len: usize,
        height: u64,
        ledger: &Ledger,
        accounts: &HashMap<Address, Account>,
    ) -> Result<TxHash, AdmitError> {
        let p = ledger.params();
        if self.entries.contains_key(&hash) {
            return Err(AdmitError::Duplicate(hash));
        }
        check_static(&tx, len, p, ledger.chain_id(), height)?;
        let max_expiry = height.saturating_add(p.max_tx_lifetime_blocks);
        if tx.tx.expiry_height > max_expiry {
            return Err(InvalidTx::ExpiryTooFar {
                expiry: tx.tx.expiry_height,
                height,
                max: p.max_tx_lifetime_blocks,
            }
            .into());
        }
        let sender = tx.tx.sender;
        let read;
        let acc = match accounts.get(&sender) {
            Some(acc) => acc,
            None => {
                read = ledger
                    .account(&sender)
                    .map_err(|e| AdmitError::Ledger(e.to_string()))?;
                &read
            }
        };
        let nonce = tx.tx.nonce;
        if nonce < acc.nonce {
            return Err(InvalidTx::NonceUsed {
                got: nonce,
                expected: acc.nonce,
            }
            .into());
        }
        if nonce - acc.nonce >= self.config.nonce_window {
            return Err(InvalidTx::NonceTooFar {
                got: nonce,
                expected: acc.nonce,
                window: self.config.nonce_window,
            }
            .into());
        }
        let queue = self.senders.get(&sender);
        if queue.is_some_and(|q| q.has_nonce(nonce)) {
            return Err(AdmitError::NonceTaken(nonce));
        }
        if acc.is_frozen(&p.fee_asset) {
            return Err(InvalidTx::SenderFrozen(p.fee_asset).into());
        }
        // Balance: this transaction's spend plus everything pending from the
        // same sender must be covered by what the account holds now.
        let spend = Spend::of(&tx, p.fee_asset, p.tx_fee);
        for (asset, amount) in spend.iter() {
            let total = queue
                .map_or(0, |q| q.spend.get(&asset))
                .saturating_add(amount);
            let have = acc.balance(&asset);
            if have.0 < total {
                return Err(InvalidTx::InsufficientBalance {
                    asset,
                    have,
                    need: Amount(total),
                }
                .into());
            }
        }
        if self.entries.len() >= self.config.max_txs || self.bytes + len > self.config.max_bytes {
            return Err(AdmitError::Full {
                max_txs: self.config.max_txs,
                max_bytes: self.config.max_bytes,
            });
        }
        if queue.map_or(0, |q| q.by_nonce.len()) >= self.config.max_txs_per_sender {
            return Err(AdmitError::SenderFull {
                max: self.config.max_txs_per_sender,
            });
        }
        let account_nonce = acc.nonce;
        let next_arrival = &mut self.next_arrival;
        let queue = self.senders.entry(sender).or_insert_with(|| {
            *next_arrival += 1;
            SenderQueue {
                arrival: *next_arrival - 1,
                ..Default::default()
            }
        });
        // As read in this call (reading the account again cost a lookup
        // and a decode per transaction). A block committed since is
        // reconciled by `update`, which the node calls after every commit
        // and which needs this mempool, so it runs after.
        queue.account_nonce = account_nonce;
        queue.insert(nonce, hash);
        for (asset, amount) in spend.iter() {
            queue.spend.change(asset, amount, true);
        }
        self.bytes += len;
        self.by_expiry
            .entry(tx.tx.expiry_height)
            .or_default()
            .push(hash);
        self.expiry_listed += 1;
        self.entries.insert(hash, Entry { tx, len });
        Ok(hash)
    }

    /// Takes one transaction out of the pool, and its sender's queue with
    /// it if that was the last. Returns its sender if its queue is left
    /// holding others.
    fn drop_entry(&mut self, hash: &TxHash) -> Option<Address> {
        let e = self.entries.remove(hash)?;
        self.bytes -= e.len;
        let sender = e.tx.tx.sender;
        let std::collections::hash_map::Entry::Occupied(mut q) = self.senders.entry(sender) else {
            return None;
        };
        q.get_mut().remove(e.tx.tx.nonce);
        if let Some((fee_asset, fee)) = self.fee {
            for (asset, amount) in Spend::of(&e.tx, fee_asset, fee).iter() {
                q.get_mut().spend.change(asset, amount, false);
            }
        }
        if q.get().by_nonce.is_empty() {
            q.remove();
            None
        } else {
            Some(sender)
        }
    }

    /// Transactions for the next block: for each sender, a run of
    /// consecutive nonces from the account's next nonce, taken from senders
    /// in turn (in order of arrival) until the limits are reached.
    pub fn select(&self, max_txs: usize, max_bytes: usize) -> Vec<SignedTransaction> {
        self.select_after(max_txs, max_bytes, &|_| false)
            .into_iter()
            .map(|c| c.tx)
            .collect()
    }

    /// [`Mempool::select`] for a block whose uncommitted ancestors already
    /// hold the transactions for which `included` is true: those are passed
    /// over (their nonces counted as used). Each comes with the hash and
    /// length computed on admission, so that building the block does not
    /// hash it again.
    pub fn select_after(
        &self,
        max_txs: usize,
        max_bytes: usize,
        included: &dyn Fn(&TxHash) -> bool,
    ) -> Vec<Candidate> {
        let mut queues: Vec<(std::slice::Iter<'_, (u64, TxHash)>, u64)> = {
            let mut qs: Vec<&SenderQueue> = self.senders.values().collect();
            qs.sort_unstable_by_key(|q| q.arrival);
            qs.into_iter()
                .map(|q| (q.by_nonce.iter(), q.account_nonce))
                .collect()
        };
        let mut out = Vec::with_capacity(max_txs.min(self.entries.len()));
        let mut bytes = 0usize;
        loop {
            let mut progressed = false;
            for (iter, expected) in queues.iter_mut() {
                if out.len() >= max_txs {
                    return out;
                }
                let Some(&(nonce, ref hash)) = iter.next() else {
                    continue;
                };
                if nonce != *expected {
                    // A gap: nothing further from this sender can execute.
                    *iter = [].iter();
                    continue;
                }
                if included(hash) {
                    *expected += 1;
                    progressed = true;
                    continue;
                }
                let Some(entry) = self.entries.get(hash) else {
                    continue;
                };
                if bytes + entry.len > max_bytes {
                    return out;
                }
                bytes += entry.len;
                *expected += 1;
                out.push(Candidate {
                    tx: entry.tx.clone(),
                    hash: *hash,
                    len: entry.len,
                });
                progressed = true;
            }
            if !progressed {
                return out;
            }
        }
    }

    /// Drops transactions (for example ones a proposal found invalid).
    pub fn remove(&mut self, hashes: &[TxHash]) {
        for h in hashes {
            self.drop_entry(h);
        }
    }

    /// After a block is committed: drops the transactions it included and
    /// any others made stale (used nonces, expired), and refreshes the
    /// senders' nonces.
    pub fn update(&mut self, included: &[TxHash], ledger: &Ledger) -> Result<()> {
        // Senders left with pending transactions: their nonce moved.
        let mut touched: Vec<Address> =
            included.iter().filter_map(|h| self.drop_entry(h)).collect();
        touched.sort_unstable();
        touched.dedup();
        for sender in touched {
            let Some(q) = self.senders.get_mut(&sender) else {
                continue;
            };
            let nonce = ledger.account(&sender)?.nonce;
            q.account_nonce = nonce;
            let used = q.by_nonce.partition_point(|&(n, _)| n < nonce);
            let stale: Vec<TxHash> = q.by_nonce[..used].iter().map(|(_, h)| *h).collect();
            for h in stale {
                self.drop_entry(&h);
            }
        }
        let next_height = ledger.tip().height + 1;
        let live = self.by_expiry.split_off(&next_height);
        let expired = std::mem::replace(&mut self.by_expiry, live);
        for h in expired.into_values().flatten() {
            self.expiry_listed -= 1;
            self.drop_entry(&h);
        }
        // Most listed hashes left the pool in blocks: relist what is left
        // once they outnumber it, which costs a pass over the pool per
        // pool's worth of admissions.
        if self.expiry_listed > 2 * self.entries.len() + 1024 {
            self.by_expiry.clear();
            for (h, e) in &self.entries {
                self.by_expiry
                    .entry(e.tx.tx.expiry_height)
                    .or_default()
                    .push(*h);
            }
            self.expiry_listed = self.entries.len();
        }
        Ok(())
    }
}
