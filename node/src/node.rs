//! The running node: the consensus driver (the engine's only effect
//! handler), the mempool, block building and execution through the ledger,
//! JSON-RPC and metrics.
//!
//! # Ordering rules
//! - A vote the engine signs is appended to the consensus WAL and synced
//!   before the next action, so before it can be sent.
//! - A block this node proposes or votes for is written to the WAL before
//!   the vote (the vote's sync covers it), so a block finalized by votes
//!   recovered after a crash can still be executed and committed.
//! - A finalized block is committed to RocksDB (one fsynced batch, with its
//!   finality certificate) before subscribers, the mempool and metrics hear
//!   of it.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use sou_consensus::{
    Action, Application, Certificate, Config as EngineConfig, Digest, Engine, Evidence, Input,
    Message, Proposal, Recovered, Screened, Timer, ValidatorSet, Verdict, View,
};
use sou_genesis::{ChainSpec, KeyFile};
use sou_ledger::staking::epoch_of;
use sou_ledger::{AdmitError, Checks, ExecutedBlock, Ledger, Mempool, RecentlyVerified};
use sou_p2p::{P2p, P2pConfig, SyncRequest, SyncResponse, Topic};
use sou_rpc::{Backend, FinalizedEvent, NodeInfo};
use sou_types::{Address, Block, Keypair, Misbehaviour, Signature, SignedTransaction, TxHash};
use tokio::sync::{broadcast, watch};
use tracing::{debug, info, warn};

use crate::config::NodeConfig;
use crate::metrics::Metrics;
use crate::wal::{Wal, WalRecord};

/// What the RPC server and the driver share.
pub struct Shared {
    pub ledger: Ledger,
    pub mempool: Mutex<Mempool>,
    /// Signatures verified executing blocks, so that admission does not
    /// verify the gossiped copies again.
    verified: Mutex<RecentlyVerified>,
    /// The admission thread's queues, once it runs (a node with peers):
    /// clients' transactions are admitted there too, with the gossiped ones.
    admission: std::sync::OnceLock<AdmissionQueues>,
    /// Transactions received by gossip and waiting in the admission queue
    /// (its gossip jobs carry only their hashes): compact blocks are filled
    /// from here too, so that transactions a node has received but not yet
    /// admitted are not fetched from the proposer.
    received: Mutex<Received>,
    /// Notified when the admission thread is done with a batch of
    /// [`Received`] transactions (see [`Shared::fill_compact`]).
    admission_done: Condvar,
    pub events: broadcast::Sender<FinalizedEvent>,
    pub info: Mutex<NodeInfo>,
    pub metrics: Arc<Metrics>,
    /// Counts admitted transactions, for `tx_subscribeStatus`.
    admitted: watch::Sender<u64>,
    /// This node's largest transaction, for RPC and gossip alike.
    max_tx_bytes: usize,
    p2p: Option<P2p>,
}

/// Where a transaction came from, for `sou_transactions_rejected_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// A client, over JSON-RPC: admitted transactions are gossiped.
    Rpc,
    /// A peer, over gossip (which forwards the message itself).
    Gossip,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Rpc => "rpc",
            Source::Gossip => "gossip",
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shared")
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn new(
        ledger: Ledger,
        mempool: Mempool,
        metrics: Arc<Metrics>,
        max_tx_bytes: usize,
        p2p: Option<P2p>,
    ) -> Shared {
        Shared {
            ledger,
            mempool: Mutex::new(mempool),
            verified: Mutex::new(RecentlyVerified::new(RECENTLY_VERIFIED)),
            admission: std::sync::OnceLock::new(),
            received: Mutex::new(Received::default()),
            admission_done: Condvar::new(),
            events: broadcast::channel(4096).0,
            info: Mutex::new(NodeInfo::default()),
            metrics,
            admitted: watch::channel(0).0,
            max_tx_bytes,
            p2p,
        }
    }

    /// Counts a refused transaction.
    fn count_reject(&self, reason: &'static str, source: Source) {
        self.metrics
            .transactions_rejected
            .get_or_create(&crate::metrics::RejectLabel {
                reason,
                source: source.label(),
            })
            .inc();
    }

    /// Admits transactions from a client or a peer: this node's size limit
    /// (tighter than the chain's when configured so), then the mempool's
    /// rules with one batched signature check. Transactions a client sent
    /// are passed on to the other validators.
    fn admit(
        &self,
        txs: Vec<SignedTransaction>,
        source: Source,
    ) -> Vec<Result<TxHash, AdmitError>> {
        self.admit_from(hashed(txs), &|_| source)
    }

    /// [`Shared::admit`] for transactions (with their hashes and encoded
    /// lengths) from several sources at once (`source_of` gives the i-th
    /// one's).
    fn admit_from(
        &self,
        txs: Vec<Hashed>,
        source_of: &dyn Fn(usize) -> Source,
    ) -> Vec<Result<TxHash, AdmitError>> {
        let mut results: Vec<Option<Result<TxHash, AdmitError>>> = vec![None; txs.len()];
        let mut ok = Vec::with_capacity(txs.len());
        let mut slots = Vec::with_capacity(txs.len());
        let mut lens = vec![0; txs.len()];
        for (i, (tx, hash, len)) in txs.into_iter().enumerate() {
            lens[i] = len;
            if len > self.max_tx_bytes {
                results[i] = Some(Err(AdmitError::Invalid(sou_ledger::InvalidTx::TooLarge {
                    len,
                    max: self.max_tx_bytes,
                })));
            } else {
                ok.push((tx, hash, len));
                slots.push(i);
            }
        }
        let mut to_gossip = Vec::new();
        let mut admitted = 0u64;
        // Either the admission thread, or (a node without peers) a thread
        // of the RPC server's blocking pool: every method that admits runs
        // there (`tx_sendAndWait` moves its admission there).
        lower_admission_priority();
        if !ok.is_empty() {
            // What the pool holds already costs no signature check.
            {
                let pool = lock(&self.mempool);
                let mut kept = Vec::with_capacity(ok.len());
                let mut kept_slots = Vec::with_capacity(ok.len());
                for (item, slot) in ok.into_iter().zip(slots) {
                    if pool.contains(&item.1) {
                        results[slot] = Some(Err(AdmitError::Duplicate(item.1)));
                    } else {
                        kept.push(item);
                        kept_slots.push(slot);
                    }
                }
                ok = kept;
                slots = kept_slots;
            }
            // Signatures are verified without the pool's lock, which block
            // building and execution need.
            let reused = Cell::new(0u64);
            let fresh = Cell::new(0u64);
            let known = |h: &TxHash, s: &Signature| {
                let known = lock(&self.verified).contains(h, s);
                reused.set(reused.get() + u64::from(known));
                fresh.set(fresh.get() + u64::from(!known));
                known
            };
            let checked = sou_ledger::precheck(ok, &self.ledger, &known);
            self.metrics
                .admission_signatures_reused
                .inc_by(reused.get());
            self.metrics
                .admission_signatures_verified
                .inc_by(fresh.get());
            if fresh.get() > 0 {
                self.metrics.admission_signature_batches.inc();
            }
            let mut pool = lock(&self.mempool);
            let outcome = pool.admit_verified(checked, &self.ledger);
            self.metrics.mempool_transactions.set(pool.len() as i64);
            self.metrics.mempool_bytes.set(pool.bytes() as i64);
            for (slot, r) in slots.into_iter().zip(outcome) {
                if let Ok(hash) = &r {
                    admitted += 1;
                    // What was admitted is in the pool: gossip it from there.
                    if source_of(slot) == Source::Rpc && self.p2p.is_some() {
                        to_gossip.extend(pool.get(hash).map(|tx| (tx.clone(), lens[slot])));
                    }
                }
                results[slot] = Some(r);
            }
        }
        if admitted > 0 {
            self.admitted.send_modify(|n| *n = n.wrapping_add(admitted));
        }
        if let (Some(p2p), false) = (&self.p2p, to_gossip.is_empty()) {
            // Clients' batches admitted together can add up to more than a
            // gossip message may carry: split by size.
            let mut part: Vec<SignedTransaction> = Vec::new();
            let mut bytes = 0;
            for (tx, len) in to_gossip {
                if !part.is_empty() && bytes + len > GOSSIP_TXS_BYTES {
                    p2p.publish(
                        Topic::Transactions,
                        borsh::to_vec(&part).unwrap_or_default(),
                    );
                    part.clear();
                    bytes = 0;
                }
                bytes += len;
                part.push(tx);
            }
            p2p.publish(
                Topic::Transactions,
                borsh::to_vec(&part).unwrap_or_default(),
            );
        }
        results
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let r = r.unwrap_or_else(|| Err(AdmitError::Ledger("no result".into())));
                if let Err(e) = &r {
                    self.count_reject(sou_rpc::reject_reason(e), source_of(i));
                }
                r
            })
            .collect()
    }
}

impl Shared {
    /// After a block is committed: its transactions leave the mempool
    /// (which rechecks the rest against the new state), and gossiped copies
    /// still waiting for admission are let go, since admission would only
    /// refuse them now (their nonces are used).
    fn forget_committed(&self, included: &[TxHash]) -> Result<()> {
        {
            let mut pool = lock(&self.mempool);
            pool.update(included, &self.ledger)?;
            self.metrics.mempool_transactions.set(pool.len() as i64);
            self.metrics.mempool_bytes.set(pool.bytes() as i64);
        }
        lock(&self.received).release(included);
        Ok(())
    }

    /// The whole block of `compact`, from the mempool and, for what the
    /// mempool lacks, from transactions received by gossip and still
    /// waiting for admission; or the hashes found in neither. A waiting
    /// copy is used only with a valid signature: those not verified before
    /// are verified here in one batch (and remembered, so that neither
    /// execution nor admission verifies them again). A forged copy leaves
    /// its hash lacking, to be fetched.
    ///
    /// Copies the admission thread is verifying right now are waited for
    /// (up to [`ADMISSION_WAIT`]) rather than verified a second time: under
    /// load a block often arrives while its transactions are in the batch
    /// being admitted (at 12,000 transfers/s, 18% of each node's signature
    /// checks were such repeats: 1.23 per transfer).
    fn fill_compact(
        &self,
        compact: &sou_types::CompactBlock,
    ) -> std::result::Result<Block, Vec<TxHash>> {
        let fill = || {
            let pool = lock(&self.mempool);
            compact.fill(|h| pool.get(h))
        };
        let mut lacking = match fill() {
            Ok(block) => return Ok(block),
            Err(lacking) => lacking,
        };
        if self.await_admission(&lacking) {
            lacking = match fill() {
                Ok(block) => return Ok(block),
                Err(lacking) => lacking,
            };
        }
        let waiting: Vec<(SignedTransaction, TxHash)> = {
            let received = lock(&self.received);
            lacking
                .iter()
                .filter_map(|h| received.get(h).map(|tx| (tx.clone(), *h)))
                .collect()
        };
        if waiting.is_empty() {
            return Err(lacking);
        }
        let refs: Vec<(&SignedTransaction, TxHash)> =
            waiting.iter().map(|(tx, h)| (tx, *h)).collect();
        let checked =
            sou_ledger::verify_unless_known(&refs, &|h, s| lock(&self.verified).contains(h, s));
        self.metrics
            .block_signatures_verified
            .inc_by(checked.iter().filter(|c| c.is_some()).count() as u64);
        remember_verified(
            self,
            refs.iter()
                .zip(&checked)
                .filter(|(_, c)| **c == Some(true))
                .map(|((tx, h), _)| (*h, tx.signature))
                .collect(),
        );
        let found: HashMap<TxHash, SignedTransaction> = waiting
            .into_iter()
            .zip(checked)
            .filter(|(_, c)| *c != Some(false))
            .map(|((tx, h), _)| (h, tx))
            .collect();
        self.metrics
            .block_transactions_unadmitted
            .inc_by(found.len() as u64);
        let pool = lock(&self.mempool);
        compact.fill(|h| pool.get(h).or_else(|| found.get(h)))
    }

    /// The admission thread is done with the gossiped transactions of
    /// `held`: they are let go, and a block waiting for them is woken.
    fn admission_finished(&self, held: &[TxHash]) {
        lock(&self.received).release(held);
        self.admission_done.notify_all();
    }

    /// Waits, up to [`ADMISSION_WAIT`], until the admission thread is done
    /// with those of `hashes` it is admitting now; whether it waited.
    fn await_admission(&self, hashes: &[TxHash]) -> bool {
        let start = Instant::now();
        let deadline = start + ADMISSION_WAIT;
        let mut received = lock(&self.received);
        let mut waited = false;
        while hashes.iter().any(|h| received.in_admission(h)) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            waited = true;
            received = self
                .admission_done
                .wait_timeout(received, left)
                .map_or_else(|e| e.into_inner().0, |(g, _)| g);
        }
        if waited {
            self.metrics
                .block_admission_wait_seconds
                .inc_by(start.elapsed().as_secs_f64());
        }
        waited
    }
}

/// How long a compact block's filling waits for the admission thread to
/// finish verifying transactions the block holds (a batch of
/// [`ADMISSION_BATCH_TXS`] takes about 40 ms of CPU with AVX2, about 18 ms
/// with AVX-512 IFMA); past it, they are verified again on the consensus
/// thread.
const ADMISSION_WAIT: Duration = Duration::from_millis(250);

impl Backend for Shared {
    fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// On a node with peers, a client's transactions wait in the admission
    /// thread's queue and are admitted with whatever else waits there, in
    /// one larger signature batch (a client's batch of about 100 cost
    /// about half as much again per signature as the admission thread's
    /// batches of about 1,000); a full queue holds the caller back.
    fn submit(&self, txs: Vec<SignedTransaction>) -> Vec<Result<TxHash, AdmitError>> {
        let Some(queues) = self.admission.get() else {
            return self.admit(txs, Source::Rpc);
        };
        // One result per transaction, whatever happens.
        let n = txs.len();
        let stopping = || vec![Err(AdmitError::Ledger("node stopping".into())); n];
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        // Hashed here, on the caller's thread, not the admission thread.
        let txs = hashed(txs);
        match queues.clients.send(ClientTxs { txs, reply }) {
            Ok(()) => answer.recv().unwrap_or_else(|_| stopping()),
            // The admission thread has ended (the node is stopping).
            Err(crossbeam_channel::SendError(ClientTxs { txs, .. })) => {
                self.admit_from(txs, &|_| Source::Rpc)
            }
        }
    }

    fn rejected(&self, reason: &'static str) {
        self.count_reject(reason, Source::Rpc);
    }

    fn admissions(&self) -> watch::Receiver<u64> {
        self.admitted.subscribe()
    }

    fn pending(&self, hash: &TxHash) -> Option<SignedTransaction> {
        lock(&self.mempool).get(hash).cloned()
    }

    fn info(&self) -> NodeInfo {
        lock(&self.info).clone()
    }

    fn subscribe(&self) -> broadcast::Receiver<FinalizedEvent> {
        self.events.subscribe()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Voting power in consensus: bonded stake in whole native tokens (at least
/// 1), so that sums fit comfortably in the engine's arithmetic.
fn power_units(stake: sou_types::Amount) -> u64 {
    let whole = stake.0 / 1_000_000_000;
    u64::try_from(whole).unwrap_or(u64::MAX).max(1)
}

/// Whether a block proposed in `p.view` names that view's leader as its
/// proposer. Consensus checks that the proposal is signed by the leader;
/// the header's `proposer` is what the ledger credits with the block (the
/// downtime rule jails validators that propose nothing), so a leader must
/// not name someone else. `operators` are the epoch's operators in the
/// order of `set`.
fn names_leader(
    header: &sou_types::BlockHeader,
    p: &Proposal,
    set: &ValidatorSet,
    operators: &[Address],
) -> bool {
    let leader = set.leader(p.view) as usize;
    operators.get(leader) == Some(&header.proposer)
}

/// The ledger's validator set of an epoch, as consensus weighs it.
fn consensus_set(set: &sou_ledger::state::ValidatorSet) -> ValidatorSet {
    ValidatorSet::new(
        set.epoch,
        set.validators
            .iter()
            .map(|v| (v.consensus_key, power_units(v.power)))
            .collect(),
    )
}

/// Whether `m` holds up: its proof is consensus evidence against the
/// validator set of `m.epoch`, naming `m.offender`, with id `m.id`.
fn check_misbehaviour(ledger: &Ledger, m: &Misbehaviour) -> bool {
    let Ok(e) = sou_types::codec::decode_bounded::<Evidence>(&m.proof, MAX_EVIDENCE_BYTES) else {
        return false;
    };
    e.first.vote.epoch() == m.epoch
        && e.id() == m.id
        && evidence_offender(ledger, &e).is_some_and(|key| key == m.offender)
}

/// The offender's consensus key, if `e` holds up against the validator set
/// of the epoch it was signed in.
fn evidence_offender(ledger: &Ledger, e: &Evidence) -> Option<sou_types::PublicKey> {
    let epoch = e.first.vote.epoch();
    if e.second.vote.epoch() != epoch {
        return None;
    }
    let set = ledger.validator_set(epoch).ok()??;
    let ns = ledger.chain_id().as_str().as_bytes().to_vec();
    e.verify(&consensus_set(&set), &ns).ok()
}

/// Whether this node verified the signature of the transaction `hash`
/// with `signature` when it admitted it: its mempool holds it with that
/// very signature.
///
/// A transaction's hash does not cover its signature (nor does a block's
/// transactions root), so a body from a peer can carry an admitted
/// transaction's hash with another signature; the ledger asks with each
/// occurrence's own signature, and verifies one that differs.
fn admitted_with(pool: &Mempool, hash: &TxHash, signature: &Signature) -> bool {
    pool.get(hash).is_some_and(|a| a.signature == *signature)
}

/// Executes a block proposed by another validator on `ancestors`: every
/// signature is verified (in one batch, by the ledger) except those of
/// transactions this node admitted with that very signature. Counts both
/// in the metrics.
fn execute_proposal(
    shared: &Shared,
    ancestors: &[&ExecutedBlock],
    block: Block,
) -> sou_ledger::Result<ExecutedBlock> {
    let ledger = &shared.ledger;
    // What the ledger is told to verify, counted as it asks. The ledger
    // asks for every transaction before executing any, so the mempool is
    // locked a moment per question, never across the execution.
    let fresh = std::cell::RefCell::new(Vec::new());
    let reused = Cell::new(0u64);
    let skip = |h: &TxHash, s: &Signature| {
        let known = verified_before(shared, h, s);
        if known {
            reused.set(reused.get() + 1);
        } else {
            fresh.borrow_mut().push((*h, *s));
        }
        known
    };
    let checks = Checks {
        verified: &skip,
        evidence: &|m| check_misbehaviour(ledger, m),
    };
    let result = ledger.execute_on(ancestors, block, &checks);
    let fresh = fresh.into_inner();
    shared
        .metrics
        .block_signatures_verified
        .inc_by(fresh.len() as u64);
    shared.metrics.block_signatures_reused.inc_by(reused.get());
    if result.is_ok() {
        remember_verified(shared, fresh);
    }
    result
}

/// Most (hash, signature) pairs remembered per generation of
/// [`RecentlyVerified`] (about 100 bytes each; two generations): several
/// seconds of transactions at the rates a node sustains.
const RECENTLY_VERIFIED: usize = 1 << 16;

/// Whether this node verified `signature` over `hash` before: admitted
/// to its mempool with it, or checked executing an earlier block.
fn verified_before(shared: &Shared, hash: &TxHash, signature: &Signature) -> bool {
    admitted_with(&lock(&shared.mempool), hash, signature)
        || lock(&shared.verified).contains(hash, signature)
}

/// Records the signatures a block's execution verified: every transaction
/// of a block that executed is validly signed (one that is not makes the
/// block invalid).
fn remember_verified(shared: &Shared, pairs: Vec<(TxHash, Signature)>) {
    if pairs.is_empty() {
        return;
    }
    let mut v = lock(&shared.verified);
    for (h, s) in pairs {
        v.insert(h, s);
    }
}

/// The application side of consensus: builds and checks blocks.
struct ChainApp<'a> {
    shared: &'a Shared,
    pending: &'a mut HashMap<Digest, ExecutedBlock>,
    /// Block bodies received from peers, not yet executed.
    bodies: &'a HashMap<Digest, Block>,
    /// Blocks recovered from the WAL, not yet executed.
    logged: &'a HashMap<Digest, Block>,
    /// Epoch seals voted on: seal digest to the epoch's last block.
    seals: &'a mut HashMap<Digest, Digest>,
    /// Evidence not yet in a block.
    evidence: &'a mut Vec<Misbehaviour>,
    /// Bodies of proposed blocks that a check waits for.
    missing: &'a mut HashSet<Digest>,
    /// When this node proposed its blocks not yet final.
    proposed_at: &'a mut HashMap<Digest, Instant>,
    blocks_to_log: &'a mut Vec<Block>,
    proposer: Address,
    /// The epoch's validator set and its operators, in the same order.
    set: &'a ValidatorSet,
    operators: &'a [Address],
    cfg: &'a NodeConfig,
    last_block_ms: u64,
    epoch_end: u64,
}

/// The digest that stands for "the epoch ends with block `end`" in a view
/// after the epoch's last block.
///
/// An epoch ends at a fixed height, but its last block may be notarized and
/// not finalized (some validators nullified its view after voting for it).
/// Simplex finalizes a block through its descendants, and there may be no
/// real block after the epoch's last, so the leaders of later views propose
/// seals: digests with no body that extend the last block. Finalizing a seal
/// finalizes the last block, which is then stored with the seal's
/// certificate as its proof.
fn epoch_seal(end: &Digest, height: u64) -> Digest {
    let mut data = end.0.to_vec();
    data.extend_from_slice(&height.to_be_bytes());
    sou_types::Hash::domain("sou/consensus/epoch-seal", &data)
}

/// Finds the epoch's last block that `seal` (at `height`) stands for, among
/// the seals voted on and the blocks held at `end_height`.
fn resolve_seal<'b>(
    seals: &HashMap<Digest, Digest>,
    held: impl IntoIterator<Item = (&'b Digest, u64)>,
    seal: &Digest,
    height: u64,
    end_height: u64,
) -> Option<Digest> {
    if let Some(end) = seals.get(seal) {
        return Some(*end);
    }
    held.into_iter()
        .filter(|(_, h)| *h == end_height)
        .map(|(d, _)| *d)
        .find(|d| epoch_seal(d, height) == *seal)
}

impl ChainApp<'_> {
    fn body(&self, digest: &Digest) -> Option<&Block> {
        self.bodies.get(digest).or_else(|| self.logged.get(digest))
    }

    /// The epoch's last block that a proposal after it extends: its parent
    /// itself, or the block an earlier seal stands for.
    fn epoch_end_block(&mut self, parent: Digest, parent_height: u64) -> Result<Digest, Verdict> {
        if parent_height == self.epoch_end {
            if parent != self.shared.ledger.tip().hash {
                self.ancestry(parent)?;
            }
            return Ok(parent);
        }
        self.seals.get(&parent).copied().ok_or(Verdict::Later)
    }

    /// The uncommitted blocks from the committed tip up to `parent`, oldest
    /// first, each executed (bodies not yet executed are executed now, in
    /// order). Simplex builds on a notarized parent that may not be final
    /// yet: a block is finalized through its descendants too, so waiting
    /// for the parent's own finalization could stall the chain for good.
    fn ancestry(&mut self, parent: Digest) -> Result<Vec<Digest>, Verdict> {
        let tip = self.shared.ledger.tip();
        let mut chain = Vec::new();
        let mut digest = parent;
        while digest != tip.hash {
            let (prev, height) = if let Some(e) = self.pending.get(&digest) {
                (e.block.header.parent, e.block.height())
            } else if let Some(b) = self.body(&digest) {
                (b.header.parent, b.height())
            } else {
                // A body on the way has not arrived: ask peers for it.
                self.missing.insert(digest);
                return Err(Verdict::Later);
            };
            if height <= tip.height {
                return Err(Verdict::Invalid); // off the finalized chain
            }
            chain.push(digest);
            digest = prev;
        }
        chain.reverse();
        for i in 0..chain.len() {
            if self.pending.contains_key(&chain[i]) {
                continue;
            }
            let Some(block) = self.body(&chain[i]).cloned() else {
                return Err(Verdict::Later);
            };
            match self.execute(&chain[..i], chain[i], block) {
                Verdict::Valid => {}
                v => return Err(v),
            }
        }
        Ok(chain)
    }

    /// Executes `block` on the uncommitted `chain` and keeps the result.
    fn execute(&mut self, chain: &[Digest], digest: Digest, block: Block) -> Verdict {
        let start = Instant::now();
        let ancestors: Vec<&ExecutedBlock> =
            chain.iter().filter_map(|d| self.pending.get(d)).collect();
        let result = execute_proposal(self.shared, &ancestors, block);
        match result {
            Ok(executed) => {
                self.shared
                    .metrics
                    .block_execution_seconds
                    .observe(start.elapsed().as_secs_f64());
                self.pending.insert(digest, executed);
                Verdict::Valid
            }
            Err(
                e @ (sou_ledger::Error::InvalidBlock { .. }
                | sou_ledger::Error::InvalidTxInBlock { .. }
                | sou_ledger::Error::NotNext { .. }),
            ) => {
                warn!(error = %e, block = %digest, "invalid proposal");
                Verdict::Invalid
            }
            Err(e) => {
                warn!(error = %e, "could not check a proposal");
                Verdict::Later
            }
        }
    }
}

impl Application for ChainApp<'_> {
    fn propose(&mut self, _view: View, parent: Digest, parent_height: u64) -> Option<Digest> {
        if parent_height >= self.epoch_end {
            // The epoch is over: seal its last block.
            let end = self.epoch_end_block(parent, parent_height).ok()?;
            let seal = epoch_seal(&end, parent_height + 1);
            self.seals.insert(seal, end);
            return Some(seal);
        }
        // On the notarized chain, final or not.
        let chain = self.ancestry(parent).ok()?;
        let ancestors: Vec<&ExecutedBlock> =
            chain.iter().filter_map(|d| self.pending.get(d)).collect();
        let ledger = &self.shared.ledger;
        let params = ledger.params();
        let max_txs = (self.cfg.block.max_txs.min(params.max_block_txs)) as usize;
        let max_bytes = self.cfg.block.max_bytes.min(params.max_block_bytes) as usize;
        let now = now_ms();
        let last_block_ms = ancestors
            .last()
            .map_or(self.last_block_ms, |e| e.block.header.timestamp_ms);
        if now.saturating_sub(last_block_ms) < self.cfg.block.min_block_interval_ms
            && lock(&self.shared.mempool).len() < max_txs
        {
            return None; // asked again shortly
        }
        let included: HashSet<TxHash> = ancestors
            .iter()
            .flat_map(|e| e.receipts.iter().map(|r| r.tx_hash))
            .collect();
        let txs =
            lock(&self.shared.mempool).select_after(max_txs, max_bytes, &|h| included.contains(h));
        if txs.is_empty()
            && now.saturating_sub(last_block_ms) < self.cfg.block.empty_block_interval_ms
        {
            return None;
        }
        // Evidence an ancestor already holds is not offered again.
        let evidence: Vec<Misbehaviour> = self
            .evidence
            .iter()
            .filter(|m| {
                !ancestors
                    .iter()
                    .any(|a| a.block.evidence.iter().any(|e| e.id == m.id))
            })
            .cloned()
            .collect();
        let offered: Vec<sou_types::Hash> = evidence.iter().map(|m| m.id).collect();
        let checks = Checks {
            // Every candidate comes from the mempool, which admitted it
            // (signature verified) with the signature it holds.
            verified: &|_, _| true,
            evidence: &|m| check_misbehaviour(ledger, m),
        };
        let start = Instant::now();
        let (executed, applied) =
            match ledger.propose_on(&ancestors, txs, evidence, self.proposer, now, &checks) {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "could not build a block");
                    return None;
                }
            };
        drop(ancestors);
        self.shared
            .metrics
            .block_execution_seconds
            .observe(start.elapsed().as_secs_f64());
        if !applied.invalid.is_empty() {
            let drop: Vec<TxHash> = applied.invalid.iter().map(|(h, _)| *h).collect();
            lock(&self.shared.mempool).remove(&drop);
        }
        // Evidence offered and refused (used, or its offender already
        // jailed for good) would be refused again: forget it.
        let held = &executed.block.evidence;
        if held.len() < sou_ledger::MAX_BLOCK_EVIDENCE {
            self.evidence
                .retain(|m| !offered.contains(&m.id) || held.iter().any(|e| e.id == m.id));
        }
        let hash = executed.block.hash();
        self.proposed_at.insert(hash, start);
        self.blocks_to_log.push(executed.block.clone());
        self.pending.insert(hash, executed);
        Some(hash)
    }

    fn verify(&mut self, p: &Proposal) -> Verdict {
        if p.height > self.epoch_end {
            let end = match self.epoch_end_block(p.parent, p.height - 1) {
                Ok(end) => end,
                Err(v) => return v,
            };
            if p.payload != epoch_seal(&end, p.height) {
                return Verdict::Invalid;
            }
            self.seals.insert(p.payload, end);
            return Verdict::Valid;
        }
        let set = self.set;
        if let Some(b) = self.pending.get(&p.payload) {
            let h = &b.block.header;
            return (h.height == p.height
                && h.parent == p.parent
                && names_leader(h, p, set, self.operators))
            .into();
        }
        let Some(block) = self.body(&p.payload).cloned() else {
            // Not arrived yet (it may be on its way): ask peers for it too.
            self.missing.insert(p.payload);
            return Verdict::Later;
        };
        let h = &block.header;
        if h.height != p.height || h.parent != p.parent || !names_leader(h, p, set, self.operators)
        {
            return Verdict::Invalid;
        }
        if h.timestamp_ms > now_ms().saturating_add(MAX_CLOCK_DRIFT_MS) {
            return Verdict::Invalid;
        }
        match self.ancestry(p.parent) {
            Ok(chain) => self.execute(&chain, p.payload, block),
            Err(v) => v,
        }
    }
}

/// How far ahead of our clock a proposed block's timestamp may be.
const MAX_CLOCK_DRIFT_MS: u64 = 10_000;
/// Most block bodies held for proposals not yet decided.
const MAX_HELD_BODIES: usize = 256;
/// Largest encoded evidence (two votes) accepted.
const MAX_EVIDENCE_BYTES: usize = 4 * 1024;
/// Most pieces of evidence waiting for a block.
const MAX_HELD_EVIDENCE: usize = 256;
/// Most bodies of proposed blocks asked for in one request.
const MAX_WANTED_BODIES: usize = 16;
/// Most transactions asked for in one request (to complete compact blocks).
const MAX_WANTED_TXS: usize = 2048;
/// Most consensus messages one sync answer carries and is taken from.
const MAX_CATCH_UP_MESSAGES: usize = 512;
/// Most blocks in one sync response.
const MAX_SYNC_BLOCKS: u32 = 64;
/// Most bytes of blocks in one sync response.
const MAX_SYNC_BYTES: usize = 32 * 1024 * 1024;

/// What to ask a peer for: the whole bodies of `missing` blocks, and the
/// transactions `lacking` from the `partial` compact blocks (those are then
/// `asked`: filled from the answer, or asked for whole next time).
///
/// One answer carries at most [`MAX_WANTED_TXS`] transactions. When more
/// are lacking, the partial blocks are asked for whole instead: asked for
/// in pieces they never completed, and validators that lacked much of a
/// proposal's gossip never voted for it (the chain stalled).
fn fetch_plan(
    missing: &mut HashSet<Digest>,
    partial: &mut HashMap<Digest, sou_types::CompactBlock>,
    lacking: &mut HashSet<TxHash>,
) -> (Vec<[u8; 32]>, Vec<[u8; 32]>, HashSet<Digest>) {
    if lacking.len() > MAX_WANTED_TXS {
        missing.extend(partial.drain().map(|(d, _)| d));
        lacking.clear();
    }
    // Bodies whose compact block waits for transactions are not asked for
    // whole.
    let bodies = missing
        .iter()
        .filter(|d| !partial.contains_key(d))
        .take(MAX_WANTED_BODIES)
        .map(|d| d.0)
        .collect();
    let txs = lacking.iter().map(|h| h.0).collect();
    (bodies, txs, partial.keys().copied().collect())
}

/// The consensus driver and its state.
struct Driver {
    shared: Arc<Shared>,
    cfg: NodeConfig,
    key: Keypair,
    proposer: Address,
    /// The engine's validator set (a copy, for checks made while the
    /// engine is busy) and the validators' operators, in the same order.
    set: ValidatorSet,
    operators: Vec<Address>,
    engine: Engine,
    epoch_end: u64,
    wal: Wal,
    wal_path_buf: std::path::PathBuf,
    /// Blocks this node built or checked, not yet committed.
    pending: HashMap<Digest, ExecutedBlock>,
    /// Blocks recovered from the WAL, to re-execute if they turn out final.
    logged_blocks: HashMap<Digest, Block>,
    /// Block bodies from peers for proposals not yet decided.
    bodies: HashMap<Digest, Block>,
    /// Epoch seals voted on (see [`epoch_seal`]).
    seals: HashMap<Digest, Digest>,
    /// Evidence of double signing not yet in a block.
    evidence: Vec<Misbehaviour>,
    /// Bodies of proposed blocks a check waits for, to ask peers for.
    missing: HashSet<Digest>,
    /// Compact blocks waiting for transactions this node lacks, and those
    /// transactions, to ask peers for.
    partial: HashMap<Digest, sou_types::CompactBlock>,
    /// The peer each partial block came from: it holds the transactions
    /// (the proposer publishes to every peer), so it is asked first.
    partial_from: HashMap<Digest, sou_p2p::Peer>,
    lacking: HashSet<TxHash>,
    /// The compact blocks whose transactions the request in flight asks for.
    asked: HashSet<Digest>,
    /// When gossip last brought anything.
    last_gossip: Instant,
    /// Where sync answers go (to the driver loop).
    sync_tx: Option<tokio::sync::mpsc::Sender<Option<SyncResponse>>>,
    /// When this node proposed its blocks not yet final.
    proposed_at: HashMap<Digest, Instant>,
    p2p: Option<P2p>,
    /// Where transactions from gossip go to be admitted.
    admission: Option<AdmissionQueues>,
    /// A finalized block is missing here: ask peers.
    need_sync: bool,
    sync_inflight: bool,
    wake: bool,
    timers: BTreeMap<(Instant, u64), (View, Timer)>,
    timer_seq: u64,
    last_block_ms: u64,
    last_commit: Option<Instant>,
    blocks_since_compact: u64,
}

/// How much less CPU a thread admitting transactions gets than the
/// consensus thread when they compete for it (a nice value: at 5 the
/// consensus thread's share is about three times an admitting thread's).
const ADMISSION_NICE: i32 = 5;

/// Lowers the calling thread's scheduling priority, once per thread. A
/// machine saturated with incoming transactions spent its CPU verifying
/// them while blocks and votes waited, and finalized less the more was
/// offered; admission at a lower priority leaves the consensus thread its
/// share, and slows admission itself (which clients see as backpressure).
fn lower_admission_priority() {
    thread_local! {
        static LOWERED: Cell<bool> = const { Cell::new(false) };
    }
    LOWERED.with(|lowered| {
        if !lowered.replace(true) {
            if let Err(e) = rustix::process::nice(ADMISSION_NICE) {
                debug!(error = %e, "could not lower the admission thread's priority");
            }
        }
    });
}

/// A transaction with its hash and encoded length.
type Hashed = (SignedTransaction, TxHash, usize);

fn hashed(txs: Vec<SignedTransaction>) -> Vec<Hashed> {
    txs.into_iter()
        .map(|tx| {
            let (hash, len) = tx.hash_and_len();
            (tx, hash, len)
        })
        .collect()
}

/// A gossip message of transactions, waiting to be admitted: the
/// transactions themselves wait in [`Received`].
struct GossipTxs {
    hashes: Vec<TxHash>,
    /// Those not held (see [`Received::hold`]).
    unheld: Vec<Hashed>,
    source: sou_p2p::Peer,
    id: sou_p2p::MessageId,
}

/// Bytes of transactions waiting in [`Received`] at most: a peer's
/// message beyond them is ignored, as when the queue is full.
const RECEIVED_BYTES: usize = 64 << 20;

/// Transactions received by gossip, decoded and hashed as they arrive,
/// until the admission thread has admitted them (or not), or a block that
/// holds them is committed: while it verifies a batch, the batch's
/// transactions are still found here. An identical copy that arrives while
/// the first waits is neither held nor admitted again; a copy with another
/// signature goes with its own message's job (see [`Received::hold`]).
#[derive(Default)]
struct Received {
    /// Each transaction, its encoded length, and whether the admission
    /// thread has taken it into the batch it is admitting.
    txs: HashMap<TxHash, (SignedTransaction, usize, bool)>,
    bytes: usize,
}

impl Received {
    /// Holds a message's transactions, unless they would exceed
    /// [`RECEIVED_BYTES`]; returns the hashes of those it now holds, and
    /// the transactions it could not hold because another copy with the
    /// same hash but another signature is held (the hash does not cover
    /// the signature, and a forged copy must not crowd out a valid one).
    fn hold(&mut self, txs: Vec<Hashed>) -> Option<(Vec<TxHash>, Vec<Hashed>)> {
        let bytes: usize = txs.iter().map(|t| t.2).sum();
        if self.bytes + bytes > RECEIVED_BYTES {
            return None;
        }
        let mut held = Vec::with_capacity(txs.len());
        let mut other = Vec::new();
        for (tx, hash, len) in txs {
            match self.txs.entry(hash) {
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert((tx, len, false));
                    self.bytes += len;
                    held.push(hash);
                }
                std::collections::hash_map::Entry::Occupied(e) => {
                    if e.get().0.signature != tx.signature {
                        other.push((tx, hash, len));
                    }
                }
            }
        }
        Some((held, other))
    }

    /// Copies of the transactions of `hashes` still held, for admission:
    /// they are marked as being admitted until released.
    fn take_for_admission(&mut self, hashes: &[TxHash]) -> Vec<Hashed> {
        hashes
            .iter()
            .filter_map(|h| {
                self.txs.get_mut(h).map(|(tx, len, admitting)| {
                    *admitting = true;
                    (tx.clone(), *h, *len)
                })
            })
            .collect()
    }

    /// Whether the admission thread is admitting the transaction of `hash`.
    fn in_admission(&self, hash: &TxHash) -> bool {
        self.txs.get(hash).is_some_and(|t| t.2)
    }

    /// Lets go of the transactions of `hashes`.
    fn release(&mut self, hashes: &[TxHash]) {
        for h in hashes {
            if let Some((_, len, _)) = self.txs.remove(h) {
                self.bytes -= len;
            }
        }
    }

    fn get(&self, hash: &TxHash) -> Option<&SignedTransaction> {
        self.txs.get(hash).map(|(tx, _, _)| tx)
    }
}

/// Bytes of transactions in one gossip message at most (well within
/// `[p2p] max_message_bytes`, whose default is 16 MiB).
const GOSSIP_TXS_BYTES: usize = 1 << 20;

/// Results of admission, one per transaction, in order.
type Admitted = Vec<Result<TxHash, AdmitError>>;

/// A client's transactions (over JSON-RPC), and where their results go.
struct ClientTxs {
    txs: Vec<Hashed>,
    reply: std::sync::mpsc::SyncSender<Admitted>,
}

/// What the admission thread is given to admit.
enum AdmissionJob {
    /// A gossip message of transactions from a peer.
    Gossip(GossipTxs),
    Client(ClientTxs),
}

/// The admission thread's two queues. Clients' transactions go first: a
/// client waits for its answer, and its transactions reach the other
/// validators only once admitted, while a peer's transactions are already
/// on their way to every validator. In one FIFO queue a client's call
/// waited behind the gossip of up to a few seconds of load (at 12,000
/// transfers/s: p90 481 ms, p99 830 ms).
#[derive(Clone)]
struct AdmissionQueues {
    clients: crossbeam_channel::Sender<ClientTxs>,
    gossip: crossbeam_channel::Sender<GossipTxs>,
}

/// The admission thread's ends of [`AdmissionQueues`].
struct AdmissionInbox {
    clients: crossbeam_channel::Receiver<ClientTxs>,
    gossip: crossbeam_channel::Receiver<GossipTxs>,
}

fn admission_queues() -> (AdmissionQueues, AdmissionInbox) {
    let (clients, client_rx) = crossbeam_channel::bounded(ADMISSION_QUEUE);
    let (gossip, gossip_rx) = crossbeam_channel::bounded(ADMISSION_QUEUE);
    (
        AdmissionQueues { clients, gossip },
        AdmissionInbox {
            clients: client_rx,
            gossip: gossip_rx,
        },
    )
}

impl AdmissionInbox {
    /// The next job, waiting for one: a client's first. `None` once the
    /// queues' senders are gone.
    fn next(&self) -> Option<AdmissionJob> {
        if let Some(job) = self.try_next(true) {
            return Some(job);
        }
        crossbeam_channel::select! {
            recv(self.clients) -> c => c.ok().map(AdmissionJob::Client),
            recv(self.gossip) -> g => g.ok().map(AdmissionJob::Gossip),
        }
    }

    /// The next job, waiting for one until `deadline` at most.
    fn next_until(&self, deadline: Instant) -> Option<AdmissionJob> {
        if let Some(job) = self.try_next(true) {
            return Some(job);
        }
        crossbeam_channel::select! {
            recv(self.clients) -> c => c.ok().map(AdmissionJob::Client),
            recv(self.gossip) -> g => g.ok().map(AdmissionJob::Gossip),
            default(deadline.saturating_duration_since(Instant::now())) => None,
        }
    }

    /// A job already waiting: a client's first, or a peer's.
    fn try_next(&self, clients_first: bool) -> Option<AdmissionJob> {
        let client = || self.clients.try_recv().ok().map(AdmissionJob::Client);
        let gossip = || self.gossip.try_recv().ok().map(AdmissionJob::Gossip);
        if clients_first {
            client().or_else(gossip)
        } else {
            gossip().or_else(client)
        }
    }
}

/// Jobs waiting for admission at most, in each queue. A peer's batch
/// beyond them is ignored (not forwarded, the peer not penalised); a
/// client waits.
const ADMISSION_QUEUE: usize = 256;

/// Transactions of waiting jobs admitted together at most.
const ADMISSION_BATCH_TXS: usize = 2048;

/// Under load, a batch is gathered (for up to the configured window) until
/// it holds this many transactions.
const ADMISSION_GATHER_TXS: usize = 1024;

/// A batch this large, taken from what was waiting, means the node is
/// under load: the next batch is gathered. Below it (a quiet node, or one
/// whose gathered batch stayed small) nothing waits.
const ADMISSION_LOADED_TXS: usize = 128;

/// Why a transaction batch from a peer was not looked at.
const REASON_BUSY: &str = "busy";

/// Starts the thread that admits transactions, from gossip and from
/// clients. Every validator receives most transactions from its peers, and
/// verifying their signatures on the consensus thread held up votes and
/// blocks behind them (blocks of 2,500 every 0.3-1.2 s under load, every
/// 0.1 s once the load stopped).
///
/// Under load, jobs queue up while one batch is verified: the waiting ones
/// are admitted together, so that signatures are verified in larger
/// batches (with the AVX2 backend, ed25519 batch checks cost about a third
/// less per signature at 1,024 than at 100, and under load about a tenth
/// less again at 2,048; with AVX-512 IFMA, 8.7 µs at 1,024 against 9.0 at
/// 128).
/// That alone gave batches of about 160 at 12,000 transfers/s on a
/// 4-validator testnet on two cores. So under load (the last batch held
/// [`ADMISSION_LOADED_TXS`] or more) a batch is gathered for up to
/// `gather` until it holds [`ADMISSION_GATHER_TXS`]: batches of about 500
/// with 20 ms, and the nodes' CPU at 12,000/s went from 1.65-1.87 cores to
/// 1.60-1.69, since fewer, larger batches also mean fewer, larger gossip
/// messages. A quiet node adds no wait.
///
/// The thread holds the node's state only while it admits: it ends when
/// the state is dropped (with the queues' other senders).
fn spawn_admission(shared: &Arc<Shared>, p2p: P2p, gather: Duration) -> Result<AdmissionQueues> {
    let (queues, inbox) = admission_queues();
    let weak = Arc::downgrade(shared);
    std::thread::Builder::new()
        .name("sou-admission".into())
        .spawn(move || {
            lower_admission_priority();
            let mut gathering = Gathering {
                window: gather,
                loaded: false,
            };
            loop {
                // Waiting holds no reference to the node's state.
                let Some(job) = inbox.next() else { break };
                let until = gathering.until(Instant::now());
                let Some(shared) = weak.upgrade() else {
                    break;
                };
                let mut batch = AdmissionBatch::default();
                batch.add(job, &shared);
                batch.fill(&inbox, &shared, until);
                gathering.took(batch.txs.len());
                batch.admit(&shared, &p2p);
            }
        })?;
    Ok(queues)
}

/// Whether the admission thread gathers its next batch: only under load
/// (see [`spawn_admission`]).
struct Gathering {
    window: Duration,
    /// The last batch held [`ADMISSION_LOADED_TXS`] or more.
    loaded: bool,
}

impl Gathering {
    /// Until when a batch started `now` waits for more jobs, if at all.
    fn until(&self, now: Instant) -> Option<Instant> {
        (self.loaded && !self.window.is_zero()).then(|| now + self.window)
    }

    /// Records how many transactions the batch just taken holds.
    fn took(&mut self, txs: usize) {
        self.loaded = txs >= ADMISSION_LOADED_TXS;
    }
}

/// Where a run of transactions in an [`AdmissionBatch`] came from.
enum Origin {
    Peer(sou_p2p::MessageId, sou_p2p::Peer),
    Client(std::sync::mpsc::SyncSender<Admitted>),
}

/// Jobs taken from the admission queue, admitted in one call.
#[derive(Default)]
struct AdmissionBatch {
    txs: Vec<Hashed>,
    sources: Vec<Source>,
    /// Each job's origin and how many transactions it added, in order.
    runs: Vec<(Origin, usize)>,
    /// Hashes of the gossiped transactions, held in [`Received`] until
    /// they are admitted.
    held: Vec<TxHash>,
}

impl AdmissionBatch {
    /// Adds what else waits in `inbox`, up to [`ADMISSION_BATCH_TXS`]
    /// transactions: clients' jobs first until they hold half the batch,
    /// then peers' first, so that a node flooded by its own clients still
    /// admits (and passes on) what its peers send. With `until`, waits for
    /// more jobs until then while the batch is smaller than
    /// [`ADMISSION_GATHER_TXS`].
    fn fill(&mut self, inbox: &AdmissionInbox, shared: &Shared, until: Option<Instant>) {
        while self.txs.len() < ADMISSION_BATCH_TXS {
            let from_clients = self.sources.iter().filter(|s| **s == Source::Rpc).count();
            let job = match (
                inbox.try_next(from_clients < ADMISSION_BATCH_TXS / 2),
                until,
            ) {
                (Some(job), _) => Some(job),
                (None, Some(until)) if self.txs.len() < ADMISSION_GATHER_TXS => {
                    inbox.next_until(until)
                }
                (None, _) => None,
            };
            let Some(job) = job else { break };
            self.add(job, shared);
        }
    }

    fn add(&mut self, job: AdmissionJob, shared: &Shared) {
        let (origin, source, txs) = match job {
            AdmissionJob::Gossip(m) => {
                let mut txs = lock(&shared.received).take_for_admission(&m.hashes);
                txs.extend(m.unheld);
                self.held.extend(m.hashes);
                (Origin::Peer(m.id, m.source), Source::Gossip, txs)
            }
            AdmissionJob::Client(ClientTxs { txs, reply }) => {
                (Origin::Client(reply), Source::Rpc, txs)
            }
        };
        self.runs.push((origin, txs.len()));
        self.sources.extend(std::iter::repeat_n(source, txs.len()));
        if self.txs.is_empty() {
            // The first job's vector is the batch's: no copy.
            self.txs = txs;
        } else {
            // Room for the whole batch at once, rather than doubling (each
            // doubling copied every transaction gathered so far).
            let to_fill = ADMISSION_BATCH_TXS.saturating_sub(self.txs.len());
            self.txs.reserve(txs.len().max(to_fill));
            self.txs.extend(txs);
        }
    }

    /// Admits every transaction, then answers each job: a client gets its
    /// results, gossip learns whether the peer's message may be passed on.
    fn admit(self, shared: &Shared, p2p: &P2p) {
        let sources = self.sources;
        let mut results = shared.admit_from(self.txs, &|i| sources[i]).into_iter();
        shared.admission_finished(&self.held);
        for (origin, n) in self.runs {
            let part: Admitted = results.by_ref().take(n).collect();
            match origin {
                // The client may have gone; nothing to do then.
                Origin::Client(reply) => drop(reply.send(part)),
                Origin::Peer(id, source) => {
                    // A forged signature is the sender's fault; a used nonce
                    // may just be a race with a block, and a transaction over
                    // this node's own size limit may be within a peer's.
                    let forged = part.iter().any(|r| {
                        matches!(
                            r,
                            Err(AdmitError::Invalid(sou_ledger::InvalidTx::BadSignature))
                        )
                    });
                    p2p.report(id, source, !forged);
                }
            }
        }
    }
}

impl Driver {
    /// The engine for the epoch of the block after the tip, recovered from
    /// the WAL records; the height where the epoch ends; this node's
    /// operator address (zero if it is not in the set); the set's operators.
    fn engine_for_tip(
        shared: &Shared,
        cfg: &NodeConfig,
        key: &Keypair,
        records: &[WalRecord],
    ) -> Result<(Engine, u64, Address, Vec<Address>)> {
        let ledger = &shared.ledger;
        let tip = ledger.tip();
        let length = ledger.params().epoch_length_blocks.max(1);
        let epoch = epoch_of(tip.height + 1, length);
        let set = ledger
            .validator_set(epoch)?
            .ok_or_else(|| anyhow!("the ledger has no validator set for epoch {epoch}"))?;
        let proposer = set
            .validators
            .iter()
            .find(|v| v.consensus_key == key.public())
            .map_or(Address([0; 32]), |v| v.operator);
        let cset = consensus_set(&set);
        let genesis_height = epoch * length;
        let genesis = ledger
            .store()
            .header(genesis_height)?
            .ok_or_else(|| {
                anyhow!("block {genesis_height}, where epoch {epoch} starts, is missing")
            })?
            .hash();
        let finalization = ledger
            .store()
            .finality(tip.height)?
            .and_then(|b| borsh::from_slice::<Certificate>(&b).ok());
        let signed = records
            .iter()
            .filter_map(|r| match r {
                WalRecord::Signed(v) => Some(v.clone()),
                _ => None,
            })
            .collect();
        let mut ecfg = EngineConfig::new(ledger.chain_id().as_str().as_bytes().to_vec());
        ecfg.view_timeout_ms = cfg.consensus.view_timeout_ms;
        ecfg.max_view_timeout_ms = cfg.consensus.max_view_timeout_ms;
        ecfg.propose_delay_ms = cfg.consensus.propose_delay_ms;
        let engine = Engine::new(
            ecfg,
            Keypair::from_secret(key.secret_bytes()),
            cset,
            genesis,
            genesis_height,
            Recovered {
                signed,
                finalization,
            },
        );
        let operators = set.validators.iter().map(|v| v.operator).collect();
        Ok((engine, (epoch + 1) * length, proposer, operators))
    }

    fn handle(&mut self, input: Input) -> Result<()> {
        self.handle_inner(input)
    }

    fn handle_inner(&mut self, input: Input) -> Result<()> {
        let mut blocks_to_log = Vec::new();
        let actions = {
            let mut app = ChainApp {
                shared: &self.shared,
                pending: &mut self.pending,
                bodies: &self.bodies,
                logged: &self.logged_blocks,
                seals: &mut self.seals,
                evidence: &mut self.evidence,
                missing: &mut self.missing,
                proposed_at: &mut self.proposed_at,
                blocks_to_log: &mut blocks_to_log,
                proposer: self.proposer,
                set: &self.set,
                operators: &self.operators,
                cfg: &self.cfg,
                last_block_ms: self.last_block_ms,
                epoch_end: self.epoch_end,
            };
            self.engine.handle(input, &mut app)
        };
        // Blocks first: the next vote's sync makes them durable with it,
        // and peers get the body before the vote that proposes it.
        for b in blocks_to_log {
            if let Some(p2p) = &self.p2p {
                // Peers hold the transactions already: send their hashes.
                p2p.publish(Topic::Blocks, b.compact().encode());
            }
            self.wal.append(&WalRecord::Block(b), false)?;
        }
        self.perform(actions)?;
        while std::mem::take(&mut self.wake) {
            self.handle_inner(Input::Wake)?;
        }
        Ok(())
    }

    fn perform(&mut self, actions: Vec<Action>) -> Result<()> {
        for action in actions {
            match action {
                Action::Persist(vote) => self.wal.append(&WalRecord::Signed(vote), true)?,
                Action::Broadcast(m) => {
                    if let Some(p2p) = &self.p2p {
                        p2p.publish(Topic::Consensus, borsh::to_vec(&m)?);
                    }
                }
                Action::ScheduleTimer {
                    view,
                    timer,
                    after_ms,
                } => {
                    self.timer_seq += 1;
                    let at = Instant::now() + Duration::from_millis(after_ms);
                    self.timers.insert((at, self.timer_seq), (view, timer));
                }
                Action::Notarized(_) => {}
                Action::Finalized(cert) => self.commit_finalized(&cert)?,
                Action::Evidence(e) => {
                    self.shared.metrics.evidence.inc();
                    warn!(
                        validator = e.first.signer,
                        view = e.first.vote.view(),
                        "equivocation evidence"
                    );
                    if let Some(p2p) = &self.p2p {
                        p2p.publish(Topic::Evidence, borsh::to_vec(&e)?);
                    }
                    self.hold_evidence(&e);
                }
            }
        }
        let view = self.engine.view();
        self.shared.metrics.view.set(view as i64);
        lock(&self.shared.info).view = view;
        Ok(())
    }

    /// Validators rebroadcast their votes at least every longest view
    /// timeout, so connected peers that stay silent on gossip for longer
    /// than two of them have a dead gossip stream: reconnect them all.
    fn check_gossip_silence(&mut self) {
        let peers = lock(&self.shared.info).peers;
        let limit = Duration::from_millis(2 * self.cfg.consensus.max_view_timeout_ms + 2_000);
        if peers > 0 && self.last_gossip.elapsed() > limit {
            if let Some(p2p) = &self.p2p {
                warn!(
                    silent_ms = self.last_gossip.elapsed().as_millis() as u64,
                    peers, "no gossip from connected peers; reconnecting them"
                );
                p2p.reconnect_all();
                self.shared.metrics.reconnects.inc();
                self.last_gossip = Instant::now();
            }
        }
    }

    /// Keeps evidence that holds up for a block of ours to carry.
    fn hold_evidence(&mut self, e: &Evidence) -> bool {
        let id = e.id();
        if self.evidence.iter().any(|m| m.id == id) {
            return true;
        }
        let Some(offender) = evidence_offender(&self.shared.ledger, e) else {
            return false;
        };
        if self.evidence.len() < MAX_HELD_EVIDENCE {
            self.evidence.push(Misbehaviour {
                epoch: e.first.vote.epoch(),
                offender,
                id,
                proof: borsh::to_vec(e).unwrap_or_default(),
            });
        }
        true
    }

    /// Checks against our mempool and the consensus rules, for blocks
    /// executed outside consensus (committing, syncing): signatures this
    /// node verified before are not verified again.
    fn execute_block(&self, block: Block) -> Result<ExecutedBlock> {
        let ledger = &self.shared.ledger;
        let checks = Checks {
            verified: &|h, s| verified_before(&self.shared, h, s),
            evidence: &|m| check_misbehaviour(ledger, m),
        };
        Ok(ledger.execute_on(&[], block, &checks)?)
    }

    /// Commits the finalized block and any uncommitted ancestors, in order.
    fn commit_finalized(&mut self, cert: &Certificate) -> Result<()> {
        let Some(p) = cert.vote.proposal() else {
            return Ok(());
        };
        let ledger = &self.shared.ledger;
        let tip = ledger.tip();
        let mut digest = p.payload;
        if p.height > self.epoch_end {
            // A seal: the epoch's last block is final.
            let held = self
                .pending
                .iter()
                .map(|(d, e)| (d, e.block.height()))
                .chain(self.bodies.iter().map(|(d, b)| (d, b.height())))
                .chain(self.logged_blocks.iter().map(|(d, b)| (d, b.height())))
                .chain(std::iter::once((&tip.hash, tip.height)));
            match resolve_seal(&self.seals, held, &p.payload, p.height, self.epoch_end) {
                Some(end) => digest = end,
                None => {
                    self.need_sync = true;
                    return Ok(());
                }
            }
        }
        if digest == tip.hash || p.height.min(self.epoch_end) <= tip.height {
            return Ok(());
        }
        // Walk back to the tip through the blocks we hold.
        let mut chain = Vec::new();
        loop {
            if digest == tip.hash {
                break;
            }
            let (parent, height) = if let Some(e) = self.pending.get(&digest) {
                (e.block.header.parent, e.block.height())
            } else if let Some(b) = self.logged_blocks.get(&digest) {
                (b.header.parent, b.height())
            } else if let Some(b) = self.bodies.get(&digest) {
                (b.header.parent, b.height())
            } else {
                // Final elsewhere, missing here: fetch it with its proof.
                self.need_sync = true;
                return Ok(());
            };
            chain.push(digest);
            if height <= tip.height + 1 {
                break;
            }
            digest = parent;
        }
        let proof = borsh::to_vec(cert)?;
        for digest in chain.into_iter().rev() {
            let executed = match self.pending.remove(&digest) {
                Some(e) => e,
                None => {
                    let block = self
                        .logged_blocks
                        .remove(&digest)
                        .or_else(|| self.bodies.remove(&digest))
                        .ok_or_else(|| anyhow!("finalized block {digest} vanished"))?;
                    self.execute_block(block)?
                }
            };
            let start = Instant::now();
            ledger.commit_with_finality(&executed, Some(&proof))?;
            let m = &self.shared.metrics;
            m.block_commit_seconds
                .observe(start.elapsed().as_secs_f64());
            let height = executed.block.height();
            let txs = executed.receipts.len();
            m.latest_height.set(height as i64);
            m.finalized_height.set(height as i64);
            m.transactions_finalized.inc_by(txs as u64);
            m.transactions_per_block.observe(txs as f64);
            m.slashed.inc_by(executed.block.evidence.len() as u64);
            if let Some(at) = self.proposed_at.remove(&executed.block.hash()) {
                m.proposal_to_finality_seconds
                    .observe(at.elapsed().as_secs_f64());
            }
            for e in &executed.block.evidence {
                warn!(height, offender = %e.offender, "double signing slashed");
            }
            if let Some(prev) = self.last_commit.replace(Instant::now()) {
                m.block_interval_seconds
                    .observe(prev.elapsed().as_secs_f64());
            }
            self.last_block_ms = executed.block.header.timestamp_ms;
            let included: Vec<TxHash> = executed.receipts.iter().map(|r| r.tx_hash).collect();
            let used = &executed.block.evidence;
            self.evidence.retain(|m| !used.iter().any(|e| e.id == m.id));
            self.shared.forget_committed(&included)?;
            info!(height, txs, hash = %executed.block.hash(), view = p.view, "finalized block");
            let _ = self.shared.events.send(FinalizedEvent {
                height,
                hash: executed.block.hash(),
            });
            self.blocks_since_compact += 1;
        }
        let tip_height = ledger.tip().height;
        self.pending.retain(|_, e| e.block.height() > tip_height);
        self.logged_blocks.retain(|_, b| b.height() > tip_height);
        self.bodies.retain(|_, b| b.height() > tip_height);
        // Still missing, a body is asked for again when a check needs it.
        self.missing.clear();
        self.partial.retain(|_, c| c.header.height > tip_height);
        if self.partial.is_empty() {
            self.lacking.clear();
        }
        // Proposals of ours that did not make it.
        if self.proposed_at.len() > MAX_HELD_BODIES {
            self.proposed_at.clear();
        }
        // Proposals waiting for this parent can be checked now.
        self.wake = true;
        if tip_height >= self.epoch_end {
            self.next_epoch()?;
        } else if self.blocks_since_compact >= self.cfg.consensus.wal_compact_every_blocks {
            self.compact_wal()?;
        }
        Ok(())
    }

    /// Keeps only what a restart could still need: this epoch's records
    /// after the last finalization, and blocks above the tip.
    fn compact_wal(&mut self) -> Result<()> {
        let last = self.engine.last_finalized();
        let epoch = self.engine.epoch();
        let (_, records) = Wal::open(&self.wal_path())?;
        let keep: Vec<WalRecord> = records
            .into_iter()
            .filter(|r| match r {
                WalRecord::Signed(v) => v.vote.epoch() == epoch && v.vote.view() > last,
                WalRecord::Received(Message::Vote(v)) => {
                    v.vote.epoch() == epoch && v.vote.view() > last
                }
                WalRecord::Received(Message::Certificate(c)) => {
                    c.vote.epoch() == epoch && c.view() > last
                }
                WalRecord::Block(b) => b.height() > self.shared.ledger.tip().height,
            })
            .collect();
        self.wal.compact(&keep)?;
        self.blocks_since_compact = 0;
        Ok(())
    }

    fn wal_path(&self) -> std::path::PathBuf {
        self.wal_path_buf.clone()
    }

    /// The epoch ended: start the engine of the next one with the set the
    /// ledger elected.
    fn next_epoch(&mut self) -> Result<()> {
        self.wal.compact(&[])?;
        let (engine, epoch_end, proposer, operators) =
            Self::engine_for_tip(&self.shared, &self.cfg, &self.key, &[])?;
        info!(
            epoch = engine.epoch(),
            validators = engine.validator_set().len(),
            "new epoch"
        );
        self.engine = engine;
        self.epoch_end = epoch_end;
        self.seals.clear();
        self.proposer = proposer;
        self.operators = operators;
        self.set = self.engine.validator_set().clone();
        self.timers.clear();
        self.handle(Input::Start)
    }

    /// A gossip message: decode, check what is cheap, tell the network
    /// whether to pass it on, then act on it.
    fn on_gossip(
        &mut self,
        topic: Topic,
        data: &[u8],
        source: sou_p2p::Peer,
        id: sou_p2p::MessageId,
    ) -> Result<()> {
        let Some(p2p) = self.p2p.clone() else {
            return Ok(());
        };
        match topic {
            Topic::Consensus => {
                let Ok(m) = sou_types::codec::decode_bounded::<Message>(
                    data,
                    self.cfg.p2p.max_message_bytes,
                ) else {
                    p2p.report(id, source, false);
                    return Ok(());
                };
                match self.engine.screen(m) {
                    Screened::OtherEpoch(m) => {
                        // Another epoch's set is not ours to check it
                        // against: passed on and logged; the engine takes
                        // only its own epoch's messages.
                        p2p.report(id, source, true);
                        self.wal.append(&WalRecord::Received(m), false)?;
                    }
                    Screened::Stale => {
                        // A copy of what is counted already, or outside the
                        // window: no signature checked, nothing passed on.
                        // Each validator sends its own votes and
                        // certificates to every peer, so relaying copies
                        // only adds to the load.
                        self.shared.metrics.consensus_messages_stale.inc();
                        p2p.ignore(id, source);
                    }
                    Screened::Invalid => p2p.report(id, source, false),
                    // Checked once, here; the engine takes it as checked.
                    Screened::Verified(verified) => {
                        p2p.report(id, source, true);
                        self.wal
                            .append(&WalRecord::Received(verified.message().clone()), false)?;
                        self.handle(Input::Verified(verified))?;
                    }
                }
            }
            Topic::Blocks => {
                let Ok(compact) = sou_types::CompactBlock::decode(data) else {
                    p2p.report(id, source, false);
                    return Ok(());
                };
                let valid = compact.header.chain_id == *self.shared.ledger.chain_id()
                    && compact.roots_match();
                p2p.report(id, source, valid);
                let hash = compact.hash();
                if valid
                    && compact.header.height > self.shared.ledger.tip().height
                    && self.bodies.len() < MAX_HELD_BODIES
                    && !self.bodies.contains_key(&hash)
                {
                    // Fill it from what this node received; fetch from a
                    // peer the transactions that never reached us.
                    match self.shared.fill_compact(&compact) {
                        Ok(block) => {
                            self.missing.remove(&hash);
                            self.bodies.insert(hash, block);
                            self.handle(Input::Wake)?;
                        }
                        Err(lacking) if self.partial.len() < MAX_HELD_BODIES => {
                            // Ask peers for just the transactions we lack.
                            debug!(block = %hash, lacking = lacking.len(), "fetching transactions");
                            self.lacking.extend(lacking);
                            self.partial.insert(hash, compact);
                            self.partial_from.insert(hash, source);
                            if !self.sync_inflight {
                                self.request_sync();
                            }
                        }
                        Err(_) => {
                            self.missing.insert(hash);
                        }
                    }
                }
            }
            Topic::Evidence => {
                let Ok(e) = sou_types::codec::decode_bounded::<Evidence>(data, MAX_EVIDENCE_BYTES)
                else {
                    p2p.report(id, source, false);
                    return Ok(());
                };
                let valid = self.hold_evidence(&e);
                p2p.report(id, source, valid);
                if valid {
                    warn!(
                        validator = e.first.signer,
                        view = e.first.vote.view(),
                        "equivocation evidence from a peer"
                    );
                }
            }
            Topic::Transactions => {
                // Decoded and hashed here, held where compact blocks are
                // filled from, and admitted on their own thread (see
                // `spawn_admission`).
                let Ok(txs) = sou_types::codec::decode_bounded::<Vec<SignedTransaction>>(
                    data,
                    self.cfg.p2p.max_message_bytes,
                ) else {
                    self.shared
                        .count_reject(sou_rpc::REASON_MALFORMED, Source::Gossip);
                    p2p.report(id, source, false);
                    return Ok(());
                };
                let mut job = GossipTxs {
                    hashes: Vec::new(),
                    unheld: Vec::new(),
                    source,
                    id,
                };
                if let Some(queues) = &self.admission {
                    let txs = hashed(txs);
                    let held = lock(&self.shared.received).hold(txs);
                    if let Some((hashes, unheld)) = held {
                        job.hashes = hashes;
                        job.unheld = unheld;
                        use crossbeam_channel::TrySendError;
                        match queues.gossip.try_send(job) {
                            Ok(()) => return Ok(()),
                            Err(TrySendError::Full(j) | TrySendError::Disconnected(j)) => job = j,
                        }
                    }
                }
                // Not queued: the peer's message is left alone.
                lock(&self.shared.received).release(&job.hashes);
                self.shared.count_reject(REASON_BUSY, Source::Gossip);
                p2p.ignore(job.id, job.source);
            }
        }
        Ok(())
    }

    fn on_sync_request(&self, request: &SyncRequest) -> SyncResponse {
        let store = self.shared.ledger.store();
        let tip = self.shared.ledger.tip().height;
        let mut blocks = Vec::new();
        let mut bytes = 0usize;
        let last = request
            .from
            .saturating_add(u64::from(request.max_blocks.min(MAX_SYNC_BLOCKS)));
        for h in request.from.max(1)..last.min(tip + 1) {
            let (Ok(Some(b)), Ok(Some(proof))) = (store.block(h), store.finality(h)) else {
                break;
            };
            let enc = b.encode();
            bytes += enc.len() + proof.len();
            if bytes > MAX_SYNC_BYTES && !blocks.is_empty() {
                break;
            }
            blocks.push((enc, proof));
        }
        // Proposed blocks asked for by hash, from what this node holds.
        let bodies = request
            .bodies
            .iter()
            .take(MAX_WANTED_BODIES)
            .filter_map(|d| {
                let d = sou_types::Hash(*d);
                let held = self
                    .pending
                    .get(&d)
                    .map(|e| &e.block)
                    .or_else(|| self.bodies.get(&d))
                    .or_else(|| self.logged_blocks.get(&d))
                    .map(Block::encode);
                // Or committed already.
                held.or_else(|| {
                    let h = store.height_of(&d).ok().flatten()?;
                    store.block(h).ok().flatten().map(|b| b.encode())
                })
            })
            .collect();
        let txs = {
            let pool = lock(&self.shared.mempool);
            request
                .txs
                .iter()
                .take(MAX_WANTED_TXS)
                .filter_map(|h| {
                    let h = sou_types::Hash(*h);
                    // Pending here, or already in a block this node committed.
                    pool.get(&h)
                        .map(SignedTransaction::encode)
                        .or_else(|| store.transaction(&h).ok().flatten().map(|r| r.tx.encode()))
                })
                .collect()
        };
        // What our consensus engine has for a validator at the asker's view:
        // gossip may have lost the certificate it needs to move on.
        let consensus = if request.view == 0 {
            Vec::new()
        } else {
            self.engine
                .catch_up(request.view)
                .iter()
                .take(MAX_CATCH_UP_MESSAGES)
                .filter_map(|m| borsh::to_vec(m).ok())
                .collect()
        };
        SyncResponse {
            tip,
            blocks,
            bodies,
            txs,
            consensus,
        }
    }

    /// Asks a peer for the finalized blocks after our tip, without waiting:
    /// the answer comes back through `sync_tx` to the driver loop.
    fn request_sync(&mut self) {
        let (Some(p2p), Some(sync_tx)) = (self.p2p.clone(), self.sync_tx.clone()) else {
            return;
        };
        self.sync_inflight = true;
        let (bodies, txs, asked) =
            fetch_plan(&mut self.missing, &mut self.partial, &mut self.lacking);
        // Whole or in part, a block is asked of the peer that sent it.
        let (partial, missing) = (&self.partial, &self.missing);
        self.partial_from
            .retain(|d, _| partial.contains_key(d) || missing.contains(d));
        let prefer = asked
            .iter()
            .copied()
            .chain(bodies.iter().map(|b| sou_types::Hash(*b)))
            .find_map(|d| self.partial_from.get(&d).copied());
        let request = SyncRequest {
            from: self.shared.ledger.tip().height + 1,
            max_blocks: MAX_SYNC_BLOCKS,
            bodies,
            txs,
            view: self.engine.view(),
        };
        self.asked = asked;
        let tx = sync_tx;
        tokio::spawn(async move {
            let resp = tokio::time::timeout(Duration::from_secs(3), p2p.sync_from(prefer, request))
                .await
                .ok()
                .flatten();
            let _ = tx.send(resp).await;
        });
    }

    /// Checks each block of a sync answer against a finality certificate
    /// of its epoch's validator set, then executes and commits it.
    fn apply_sync(&mut self, resp: SyncResponse) -> Result<()> {
        // Consensus messages first, checked as gossip would be (the engine
        // verifies every signature and ignores what it has already).
        for bytes in resp.consensus.iter().take(MAX_CATCH_UP_MESSAGES) {
            let Ok(m) =
                sou_types::codec::decode_bounded::<Message>(bytes, self.cfg.p2p.max_message_bytes)
            else {
                continue;
            };
            if self.engine.is_new(&m) {
                self.wal.append(&WalRecord::Received(m.clone()), false)?;
                self.handle(Input::Message(m))?;
            }
        }
        // Bodies of proposed blocks this node lacked.
        let mut got_body = false;
        for bytes in &resp.bodies {
            let Ok(block) = Block::decode(bytes) else {
                continue;
            };
            let hash = block.hash();
            if self.missing.remove(&hash) && block.header.chain_id == *self.shared.ledger.chain_id()
            {
                self.shared.metrics.fetched_blocks.inc();
                self.bodies.insert(hash, block);
                got_body = true;
            }
        }
        // Transactions that complete compact blocks; a block still lacking
        // some after an answer is asked for whole.
        if !self.asked.is_empty() {
            let mut fetched: HashMap<TxHash, SignedTransaction> = HashMap::new();
            for bytes in &resp.txs {
                if let Ok(tx) = SignedTransaction::decode(bytes) {
                    let h = tx.hash();
                    if self.lacking.contains(&h) {
                        self.shared.metrics.fetched_transactions.inc();
                        fetched.insert(h, tx);
                    }
                }
            }
            let asked = std::mem::take(&mut self.asked);
            for hash in asked {
                let Some(compact) = self.partial.remove(&hash) else {
                    continue;
                };
                let filled = {
                    let pool = lock(&self.shared.mempool);
                    compact.fill(|h| pool.get(h).or_else(|| fetched.get(h)))
                };
                match filled {
                    Ok(block) => {
                        self.missing.remove(&hash);
                        self.bodies.insert(hash, block);
                        got_body = true;
                    }
                    Err(_) => {
                        self.missing.insert(hash);
                    }
                }
            }
            if self.partial.is_empty() {
                self.lacking.clear();
            }
        }
        if got_body {
            self.handle(Input::Wake)?;
        }
        let from = self.shared.ledger.tip().height + 1;
        if resp.tip < from {
            self.need_sync = false;
            return Ok(());
        }
        lock(&self.shared.info).syncing = true;
        let ns = self.shared.ledger.chain_id().as_str().as_bytes().to_vec();
        // Blocks waiting for a certificate on themselves or a descendant.
        let mut waiting: Vec<(Block, Vec<u8>)> = Vec::new();
        for (bytes, proof) in resp.blocks {
            let Ok(block) = Block::decode(&bytes) else {
                break;
            };
            let Ok(cert) = borsh::from_slice::<Certificate>(&proof) else {
                break;
            };
            let Some(p) = cert.vote.proposal().cloned() else {
                break;
            };
            let tip = self.shared.ledger.tip();
            let expected_parent = waiting.last().map_or(tip.hash, |(b, _)| b.hash());
            if block.header.parent != expected_parent {
                break;
            }
            let (hash, height) = (block.hash(), block.height());
            waiting.push((block, proof));
            // The certificate is on this block, or on a seal of the epoch
            // this block ends; otherwise on a descendant: wait for it.
            let length = self.shared.ledger.params().epoch_length_blocks.max(1);
            let certifies = p.payload == hash
                || (height % length == 0
                    && p.height > height
                    && p.payload == epoch_seal(&hash, p.height));
            if !certifies {
                continue;
            }
            // Check the certificate with the set of its epoch.
            let epoch = epoch_of(height, length);
            let Some(set) = self.shared.ledger.validator_set(epoch)? else {
                break;
            };
            if cert.vote.epoch() != epoch || cert.verify(&consensus_set(&set), &ns).is_err() {
                warn!(
                    height = p.height,
                    "a peer sent a block with an invalid finality certificate"
                );
                break;
            }
            for (block, proof) in std::mem::take(&mut waiting) {
                let executed = self.execute_block(block)?;
                self.shared
                    .ledger
                    .commit_with_finality(&executed, Some(&proof))?;
                let height = executed.block.height();
                self.shared.metrics.latest_height.set(height as i64);
                self.shared.metrics.finalized_height.set(height as i64);
                self.shared
                    .metrics
                    .transactions_finalized
                    .inc_by(executed.receipts.len() as u64);
                let included: Vec<TxHash> = executed.receipts.iter().map(|r| r.tx_hash).collect();
                self.shared.forget_committed(&included)?;
                info!(height, txs = executed.receipts.len(), "synced block");
                let _ = self.shared.events.send(FinalizedEvent {
                    height,
                    hash: executed.block.hash(),
                });
                self.last_commit = Some(Instant::now());
                if height >= self.epoch_end {
                    self.next_epoch()?;
                }
            }
            // The engine learns of the finalization too.
            if cert.vote.epoch() == self.engine.epoch() {
                self.handle(Input::Message(Message::Certificate(cert)))?;
            }
        }
        let tip = self.shared.ledger.tip().height;
        self.pending.retain(|_, e| e.block.height() > tip);
        self.bodies.retain(|_, b| b.height() > tip);
        self.need_sync = tip < resp.tip;
        lock(&self.shared.info).syncing = self.need_sync;
        self.handle(Input::Wake)
    }

    async fn run(
        &mut self,
        mut events: Option<tokio::sync::mpsc::Receiver<sou_p2p::Event>>,
    ) -> Result<()> {
        let mut sync_tick = tokio::time::interval(Duration::from_millis(100));
        let (sync_tx, mut sync_rx) = tokio::sync::mpsc::channel::<Option<SyncResponse>>(4);
        self.sync_tx = Some(sync_tx);
        loop {
            let next = self.timers.keys().next().copied();
            let sleep = async {
                match next {
                    Some((at, _)) => {
                        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                    }
                    None => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            };
            let event = async {
                match events.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {
                    if let Some((at, seq)) = next {
                        if at <= Instant::now() {
                            if let Some((view, timer)) = self.timers.remove(&(at, seq)) {
                                if timer == Timer::View && view == self.engine.view() {
                                    self.shared.metrics.consensus_timeouts.inc();
                                    info!(view, "view timed out");
                                }
                                self.handle(Input::Timer { view, timer })?;
                            }
                        }
                    }
                }
                ev = event => match ev {
                    Some(sou_p2p::Event::Gossip { topic, data, source, id }) => {
                        self.last_gossip = Instant::now();
                        self.on_gossip(topic, &data, source, id)?;
                    }
                    Some(sou_p2p::Event::SyncRequest { request, channel, .. }) => {
                        let resp = self.on_sync_request(&request);
                        if let Some(p2p) = &self.p2p {
                            p2p.respond(channel, resp);
                        }
                    }
                    Some(sou_p2p::Event::PeerCount(n)) => {
                        lock(&self.shared.info).peers = n;
                        self.shared.metrics.peers.set(n as i64);
                    }
                    None => return Err(anyhow!("the network task stopped")),
                },
                _ = sync_tick.tick(), if self.p2p.is_some() && !self.sync_inflight => {
                    self.check_gossip_silence();
                    let idle = self.last_commit.is_none_or(|t| t.elapsed() > Duration::from_millis(self.cfg.p2p.sync_after_idle_ms));
                    if self.need_sync || idle || !self.missing.is_empty() || !self.lacking.is_empty() {
                        self.request_sync();
                    }
                }
                Some(resp) = sync_rx.recv() => {
                    self.sync_inflight = false;
                    if let Some(resp) = resp {
                        self.apply_sync(resp)?;
                    }
                }
            }
        }
    }
}

async fn shutdown_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// `sou start`: runs the node in `home`, configured by `cfg` (its
/// `config.toml`), until SIGINT or SIGTERM.
pub async fn start(home: &Path, cfg: NodeConfig) -> Result<()> {
    let spec = ChainSpec::read(&home.join(&cfg.genesis_file))?;
    let ledger =
        Ledger::init(&home.join(&cfg.data_dir), &spec.genesis_state()).with_context(|| {
            format!(
                "opening the database in {}",
                home.join(&cfg.data_dir).display()
            )
        })?;
    let key = KeyFile::read(&home.join(&cfg.validator_key_file))?;
    let wal_path = home.join(&cfg.consensus_wal_file);
    let (wal, records) = Wal::open(&wal_path)?;
    let metrics = Arc::new(Metrics::new());
    let tip = ledger.tip();
    metrics.latest_height.set(tip.height as i64);
    metrics.finalized_height.set(tip.height as i64);
    let max_tx_bytes = (cfg.mempool.max_tx_bytes.min(ledger.params().max_tx_bytes)) as usize;
    // The network, unless this is a lone validator with no peers configured.
    let (p2p, p2p_events) = if cfg.p2p.peers.is_empty() && spec.validators.len() == 1 {
        (None, None)
    } else {
        let node_key_path = home.join(&cfg.p2p.node_key_file);
        let node_key = if node_key_path.exists() {
            KeyFile::read(&node_key_path)?
        } else {
            let k = Keypair::generate()?;
            KeyFile::write(&node_key_path, &k)?;
            k
        };
        let parse = |a: &str| {
            a.parse::<sou_p2p::Address>()
                .with_context(|| format!("p2p address {a:?}"))
        };
        let mut pcfg = P2pConfig::new(
            node_key.secret_bytes(),
            parse(&cfg.p2p.listen)?,
            cfg.p2p
                .peers
                .iter()
                .map(|a| parse(a))
                .collect::<Result<_>>()?,
        );
        pcfg.max_message_bytes = cfg.p2p.max_message_bytes;
        pcfg.max_invalid_messages = cfg.p2p.max_invalid_messages;
        let (p2p, events) = P2p::start(pcfg)?;
        info!(peer_id = %p2p.peer_id, listen = %cfg.p2p.listen, peers = cfg.p2p.peers.len(), "p2p started");
        (Some(p2p), Some(events))
    };
    let shared = Arc::new(Shared::new(
        ledger,
        Mempool::new((&cfg.mempool).into()),
        metrics,
        max_tx_bytes,
        p2p.clone(),
    ));
    let (engine, epoch_end, proposer, operators) =
        Driver::engine_for_tip(&shared, &cfg, &key, &records)?;
    lock(&shared.info).is_validator = engine.me().is_some();
    let logged_blocks = records
        .iter()
        .filter_map(|r| match r {
            WalRecord::Block(b) if b.height() > tip.height => Some((b.hash(), b.clone())),
            _ => None,
        })
        .collect();
    let mut driver = Driver {
        shared: shared.clone(),
        cfg: cfg.clone(),
        key,
        proposer,
        operators,
        set: engine.validator_set().clone(),
        engine,
        epoch_end,
        wal,
        wal_path_buf: wal_path,
        pending: HashMap::new(),
        logged_blocks,
        timers: BTreeMap::new(),
        timer_seq: 0,
        last_block_ms: shared.ledger.tip_header().timestamp_ms,
        last_commit: None,
        blocks_since_compact: 0,
        bodies: HashMap::new(),
        seals: HashMap::new(),
        evidence: Vec::new(),
        missing: HashSet::new(),
        partial: HashMap::new(),
        partial_from: HashMap::new(),
        lacking: HashSet::new(),
        asked: HashSet::new(),
        sync_tx: None,
        last_gossip: Instant::now(),
        proposed_at: HashMap::new(),
        admission: p2p
            .clone()
            .map(|p| {
                let gather = Duration::from_millis(cfg.mempool.admission_gather_ms);
                spawn_admission(&shared, p, gather)
            })
            .transpose()?,
        p2p,
        need_sync: false,
        sync_inflight: false,
        wake: false,
    };
    if let Some(queues) = &driver.admission {
        // Clients' transactions go through the admission thread too.
        let _ = shared.admission.set(queues.clone());
    }
    // Rebuild the engine from the log, then start it.
    for r in &records {
        if let WalRecord::Received(m) = r {
            driver.handle(Input::Message(m.clone()))?;
        }
    }
    driver.handle(Input::Start)?;

    let (rpc_addr, rpc_handle) = sou_rpc::serve(cfg.rpc.clone(), shared.clone())
        .await
        .with_context(|| format!("starting JSON-RPC on {}", cfg.rpc.listen))?;
    let listener = tokio::net::TcpListener::bind(cfg.metrics.listen)
        .await
        .with_context(|| format!("starting metrics on {}", cfg.metrics.listen))?;
    let metrics_addr = listener.local_addr()?;
    tokio::spawn(crate::metrics::serve(listener, shared.metrics.clone()));
    info!(
        chain = %shared.ledger.chain_id(),
        height = shared.ledger.tip().height,
        rpc = %rpc_addr,
        metrics = %metrics_addr,
        validator = shared.info().is_validator,
        "node started"
    );
    let result = tokio::select! {
        r = driver.run(p2p_events) => r,
        _ = shutdown_signal() => {
            info!("shutting down");
            Ok(())
        }
    };
    let _ = rpc_handle.stop();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::RejectLabel;
    use sou_genesis::{testnet, TestnetOptions};
    use sou_types::{Amount, Memo, Payload, Payout, Transaction};

    struct Fixture {
        shared: Shared,
        accounts: Vec<Keypair>,
        proposer: Address,
        _dir: tempfile::TempDir,
    }

    /// A one-validator dev chain at genesis, with an empty mempool.
    fn fixture(max_tx_bytes: usize) -> Fixture {
        let net = testnet(&TestnetOptions {
            validators: 1,
            accounts: 3,
            ..TestnetOptions::default()
        })
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::init(&dir.path().join("data"), &net.spec.genesis_state()).unwrap();
        Fixture {
            shared: Shared::new(
                ledger,
                Mempool::new(sou_ledger::MempoolConfig::default()),
                Arc::new(Metrics::new()),
                max_tx_bytes,
                None,
            ),
            accounts: net.accounts,
            proposer: net.validators[0].0.address(),
            _dir: dir,
        }
    }

    fn signed(f: &Fixture, from: usize, nonce: u64, payload: Payload) -> SignedTransaction {
        let ledger = &f.shared.ledger;
        Transaction {
            chain_id: *ledger.chain_id(),
            sender: f.accounts[from].address(),
            nonce,
            max_fee: ledger.params().tx_fee,
            expiry_height: 100,
            payload,
        }
        .sign(&f.accounts[from])
    }

    fn transfer(f: &Fixture, from: usize, nonce: u64) -> SignedTransaction {
        let payload = Payload::Transfer {
            asset: f.shared.ledger.params().fee_asset,
            to: f.accounts[2].address(),
            amount: Amount(1),
            memo: Memo::empty(),
        };
        signed(f, from, nonce, payload)
    }

    /// The block the validator would propose with `txs` (every signature
    /// checked by the ledger here).
    fn block_of(f: &Fixture, txs: Vec<SignedTransaction>) -> Block {
        let (executed, applied) = f
            .shared
            .ledger
            .propose(txs, f.proposer, now_ms(), &|_| false)
            .unwrap();
        assert!(applied.invalid.is_empty(), "{:?}", applied.invalid);
        executed.block
    }

    fn counts(f: &Fixture) -> (u64, u64) {
        let m = &f.shared.metrics;
        (
            m.block_signatures_verified.get(),
            m.block_signatures_reused.get(),
        )
    }

    #[test]
    fn a_block_must_name_its_views_leader_as_proposer() {
        let f = fixture(16 * 1024);
        let keys: Vec<Keypair> = (0..4)
            .map(|i| Keypair::derive_insecure(9, &format!("validator {i}")))
            .collect();
        let operators: Vec<Address> = keys.iter().map(Keypair::address).collect();
        let set = ValidatorSet::new(0, keys.iter().map(|k| (k.public(), 10)).collect());
        let mut header = block_of(&f, vec![]).header;
        let proposal = |view| Proposal {
            epoch: 0,
            view,
            parent_view: 0,
            parent: header.parent,
            height: header.height,
            payload: Digest::ZERO,
        };
        // Over a few views the leader changes; only its operator passes.
        let mut leaders = HashSet::new();
        for view in 1..=16 {
            let p = proposal(view);
            let leader = set.leader(view) as usize;
            leaders.insert(leader);
            for (i, op) in operators.iter().enumerate() {
                header.proposer = *op;
                assert_eq!(names_leader(&header, &p, &set, &operators), i == leader);
            }
            header.proposer = Address([7; 32]);
            assert!(!names_leader(&header, &p, &set, &operators));
            // Without the operators (a set this node does not know), nothing passes.
            header.proposer = operators[leader];
            assert!(!names_leader(&header, &p, &set, &[]));
        }
        assert!(leaders.len() > 1, "the leader never changed: {leaders:?}");
    }

    #[test]
    fn an_admitted_transaction_in_a_block_is_not_verified_again() {
        let f = fixture(16 * 1024);
        let admitted = transfer(&f, 0, 0);
        let unknown = transfer(&f, 1, 0);
        let r = f.shared.admit(vec![admitted.clone()], Source::Rpc);
        assert_eq!(r, vec![Ok(admitted.hash())]);
        // A peer's block with the admitted transaction and one this node
        // never saw: only the second signature is verified.
        let block = block_of(&f, vec![admitted, unknown]);
        execute_proposal(&f.shared, &[], block).unwrap();
        assert_eq!(counts(&f), (1, 1), "(verified, reused)");
    }

    #[test]
    fn a_block_carrying_an_admitted_hash_with_a_tampered_signature_is_refused() {
        let f = fixture(16 * 1024);
        let tx = transfer(&f, 0, 0);
        assert_eq!(
            f.shared.admit(vec![tx.clone()], Source::Rpc),
            vec![Ok(tx.hash())]
        );
        let genuine = block_of(&f, vec![tx]);
        let mut forged = genuine.clone();
        forged.transactions[0].signature.0[5] ^= 1;
        // Neither the transaction hash nor the block hash covers the
        // signature: the forged body passes for the genuine block.
        assert_eq!(
            forged.transactions[0].hash(),
            genuine.transactions[0].hash()
        );
        assert_eq!(forged.hash(), genuine.hash());
        assert!(forged.transactions[0].verify_signature().is_err());
        // Trusting the hash alone (the old shortcut) would accept it.
        {
            let pool = lock(&f.shared.mempool);
            let ledger = &f.shared.ledger;
            let by_hash = Checks {
                verified: &|h, _| pool.contains(h),
                evidence: &|_| false,
            };
            assert!(ledger.execute_on(&[], forged.clone(), &by_hash).is_ok());
        }
        let err = execute_proposal(&f.shared, &[], forged).unwrap_err();
        assert!(
            matches!(
                err,
                sou_ledger::Error::InvalidTxInBlock {
                    index: 0,
                    reason: sou_ledger::InvalidTx::BadSignature,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(counts(&f), (1, 0), "(verified, reused)");
        // The genuine body is still accepted without verifying it again.
        execute_proposal(&f.shared, &[], genuine).unwrap();
        assert_eq!(counts(&f), (1, 1), "(verified, reused)");
    }

    #[test]
    fn each_occurrence_of_an_admitted_hash_is_checked_with_its_own_signature() {
        let f = fixture(16 * 1024);
        let tx = transfer(&f, 0, 0);
        f.shared.admit(vec![tx.clone()], Source::Rpc);
        let mut forged = tx.clone();
        forged.signature.0[0] ^= 0x80;
        let hash = tx.hash();
        {
            let pool = lock(&f.shared.mempool);
            assert!(admitted_with(&pool, &hash, &tx.signature));
            assert!(!admitted_with(&pool, &hash, &forged.signature));
            assert!(!admitted_with(
                &pool,
                &sou_types::Hash([7; 32]),
                &tx.signature
            ));
        }
        // A body with the admitted transaction and a forged copy, in either
        // order: the forged copy's signature is verified, and fails.
        let genuine = block_of(&f, vec![tx.clone()]);
        for (i, order) in [vec![tx.clone(), forged.clone()], vec![forged, tx]]
            .into_iter()
            .enumerate()
        {
            let mut body = genuine.clone();
            body.transactions = order;
            let before = counts(&f);
            let err = execute_proposal(&f.shared, &[], body).unwrap_err();
            assert!(
                matches!(
                    err,
                    sou_ledger::Error::InvalidTxInBlock {
                        reason: sou_ledger::InvalidTx::BadSignature,
                        ..
                    }
                ),
                "order {i}: {err}"
            );
            let after = counts(&f);
            assert_eq!(
                (after.0 - before.0, after.1 - before.1),
                (1, 1),
                "order {i}: (verified, reused)"
            );
        }
    }

    #[test]
    fn a_clients_transactions_are_admitted_before_gossip_queued_earlier() {
        let f = fixture(16 * 1024);
        let (queues, inbox) = admission_queues();
        let gossip = |tx: SignedTransaction| {
            let (hashes, unheld) = lock(&f.shared.received).hold(hashed(vec![tx])).unwrap();
            GossipTxs {
                hashes,
                unheld,
                source: sou_p2p::Peer::random(),
                id: sou_p2p::MessageId::new(b"m"),
            }
        };
        let (g1, g2) = (transfer(&f, 1, 0), transfer(&f, 1, 1));
        queues.gossip.try_send(gossip(g1.clone())).unwrap();
        queues.gossip.try_send(gossip(g2.clone())).unwrap();
        let client = transfer(&f, 2, 0);
        let (reply, _answer) = std::sync::mpsc::sync_channel(1);
        let txs = hashed(vec![client.clone()]);
        queues.clients.try_send(ClientTxs { txs, reply }).unwrap();

        let first = inbox.next().unwrap();
        assert!(matches!(first, AdmissionJob::Client(_)));
        let mut batch = AdmissionBatch::default();
        batch.add(first, &f.shared);
        batch.fill(&inbox, &f.shared, None);
        assert_eq!(batch.sources, [Source::Rpc, Source::Gossip, Source::Gossip]);
        let order: Vec<Signature> = batch.txs.iter().map(|(tx, ..)| tx.signature).collect();
        assert_eq!(order, [client.signature, g1.signature, g2.signature]);

        // The queues' senders gone (the node stopping), the thread's wait ends.
        drop(queues);
        assert!(inbox.next().is_none());
    }

    #[test]
    fn clients_take_at_most_half_a_batch_while_gossip_waits() {
        let f = fixture(16 * 1024);
        let (queues, inbox) = admission_queues();
        let peer = transfer(&f, 1, 0);
        let (hashes, unheld) = lock(&f.shared.received)
            .hold(hashed(vec![peer.clone()]))
            .unwrap();
        let message = GossipTxs {
            hashes,
            unheld,
            source: sou_p2p::Peer::random(),
            id: sou_p2p::MessageId::new(b"m"),
        };
        queues.gossip.try_send(message).unwrap();
        // Four calls of 600: together more than a batch.
        let per_call = 600;
        let mut answers = Vec::new();
        for call in 0..4u64 {
            let txs = (0..per_call)
                .map(|i| transfer(&f, 2, call * per_call + i))
                .collect();
            let (reply, answer) = std::sync::mpsc::sync_channel(1);
            answers.push(answer);
            let job = ClientTxs {
                txs: hashed(txs),
                reply,
            };
            queues.clients.try_send(job).unwrap();
        }
        let mut batch = AdmissionBatch::default();
        batch.add(inbox.next().unwrap(), &f.shared);
        batch.fill(&inbox, &f.shared, None);
        // Two calls (half the batch), then the peer's message, then
        // clients' calls again until the batch is full.
        let at = batch.sources.iter().position(|s| *s == Source::Gossip);
        assert_eq!(at, Some(2 * per_call as usize));
        assert_eq!(batch.txs[2 * per_call as usize].0.signature, peer.signature);
        assert_eq!(batch.txs.len(), 4 * per_call as usize + 1);
    }

    #[test]
    fn admission_gathers_batches_only_under_load() {
        let now = Instant::now();
        let window = Duration::from_millis(20);
        let mut g = Gathering {
            window,
            loaded: false,
        };
        // A quiet node admits what it has at once.
        assert_eq!(g.until(now), None);
        g.took(ADMISSION_LOADED_TXS - 1);
        assert_eq!(g.until(now), None);
        // A batch that large means load: the next one is gathered.
        g.took(ADMISSION_LOADED_TXS);
        assert_eq!(g.until(now), Some(now + window));
        // The load gone, nothing waits again.
        g.took(3);
        assert_eq!(g.until(now), None);
        // A window of zero turns gathering off.
        let off = Gathering {
            window: Duration::ZERO,
            loaded: true,
        };
        assert_eq!(off.until(now), None);
    }

    /// A client's job of `n` transfers from account `from`, and where its
    /// answer arrives.
    fn client_job(
        f: &Fixture,
        from: usize,
        n: u64,
    ) -> (ClientTxs, std::sync::mpsc::Receiver<Admitted>) {
        let txs = (0..n).map(|i| transfer(f, from, i)).collect();
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let job = ClientTxs {
            txs: hashed(txs),
            reply,
        };
        (job, answer)
    }

    #[test]
    fn a_gathered_batch_takes_jobs_arriving_until_its_deadline() {
        let f = fixture(16 * 1024);
        let (queues, inbox) = admission_queues();
        let (first, _a1) = client_job(&f, 0, 1);
        let (later, _a2) = client_job(&f, 1, 1);
        queues.clients.try_send(first).unwrap();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            queues.clients.send(later).unwrap();
            queues
        });
        let start = Instant::now();
        let window = Duration::from_millis(400);
        let mut batch = AdmissionBatch::default();
        batch.add(inbox.next().unwrap(), &f.shared);
        batch.fill(&inbox, &f.shared, Some(start + window));
        // The later job was waited for, and the batch (far from full)
        // waited out the window.
        assert_eq!(batch.txs.len(), 2);
        assert!(start.elapsed() >= window);
        // Without a deadline nothing is waited for.
        let queues = sender.join().unwrap();
        let (again, _a3) = client_job(&f, 2, 1);
        queues.clients.try_send(again).unwrap();
        let mut quiet = AdmissionBatch::default();
        quiet.add(inbox.next().unwrap(), &f.shared);
        let start = Instant::now();
        quiet.fill(&inbox, &f.shared, None);
        assert_eq!(quiet.txs.len(), 1);
        assert!(start.elapsed() < window);
    }

    #[test]
    fn a_gathered_batch_stops_waiting_once_it_is_large_enough() {
        let f = fixture(16 * 1024);
        let (queues, inbox) = admission_queues();
        let per_call = ADMISSION_GATHER_TXS as u64 / 2 + 1;
        let mut answers = Vec::new();
        for from in [0, 1] {
            let (job, answer) = client_job(&f, from, per_call);
            answers.push(answer);
            queues.clients.try_send(job).unwrap();
        }
        let start = Instant::now();
        let mut batch = AdmissionBatch::default();
        batch.add(inbox.next().unwrap(), &f.shared);
        batch.fill(&inbox, &f.shared, Some(start + Duration::from_secs(60)));
        assert_eq!(batch.txs.len(), 2 * per_call as usize);
        // Bounded well below the deadline, so a wait for it would show.
        assert!(start.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn a_compact_block_is_filled_from_transactions_waiting_for_admission() {
        let f = fixture(16 * 1024);
        let admitted = transfer(&f, 0, 0);
        let waiting = transfer(&f, 1, 0);
        let unknown = transfer(&f, 0, 1);
        assert!(f.shared.admit(vec![admitted.clone()], Source::Rpc)[0].is_ok());
        let (held, unheld) = lock(&f.shared.received)
            .hold(hashed(vec![waiting.clone()]))
            .unwrap();
        assert_eq!(held, vec![waiting.hash()]);
        assert!(unheld.is_empty());
        // Held again (a second message with it), it is not held twice.
        assert_eq!(
            lock(&f.shared.received).hold(hashed(vec![waiting.clone()])),
            Some((vec![], vec![]))
        );
        let block = block_of(&f, vec![admitted.clone(), waiting]);
        let filled = f.shared.fill_compact(&block.compact()).unwrap();
        assert_eq!(filled, block);
        let m = &f.shared.metrics;
        assert_eq!(m.block_transactions_unadmitted.get(), 1);
        assert_eq!(counts(&f), (1, 0), "(verified, reused)");
        // Its signature was verified filling the block: executing the
        // block verifies nothing again.
        execute_proposal(&f.shared, &[], filled).unwrap();
        assert_eq!(counts(&f), (1, 2), "(verified, reused)");
        // What is neither admitted nor waiting is lacking, to be fetched.
        let with_unknown = block_of(&f, vec![admitted, unknown.clone()]);
        assert_eq!(
            f.shared.fill_compact(&with_unknown.compact()),
            Err(vec![unknown.hash()])
        );
        // Once admitted (or refused), a waiting transaction is let go.
        lock(&f.shared.received).release(&held);
        assert_eq!(lock(&f.shared.received).bytes, 0);
        assert!(lock(&f.shared.received)
            .take_for_admission(&held)
            .is_empty());
    }

    /// A block of one gossiped transaction that the admission thread has
    /// taken into its batch: the block, the held hashes and the batch.
    fn taken_for_admission(f: &Fixture) -> (Block, Vec<TxHash>, Vec<Hashed>) {
        let tx = transfer(f, 1, 0);
        let (held, _) = lock(&f.shared.received)
            .hold(hashed(vec![tx.clone()]))
            .unwrap();
        let batch = lock(&f.shared.received).take_for_admission(&held);
        (block_of(f, vec![tx]), held, batch)
    }

    #[test]
    fn a_block_arriving_while_admission_verifies_its_transactions_waits_for_it() {
        let f = fixture(16 * 1024);
        let (block, held, batch) = taken_for_admission(&f);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(100));
                let results = f.shared.admit_from(batch, &|_| Source::Gossip);
                assert!(results[0].is_ok());
                f.shared.admission_finished(&held);
            });
            let filled = f.shared.fill_compact(&block.compact()).unwrap();
            assert_eq!(filled, block);
        });
        // Filled from the mempool once admitted: verified once, by admission.
        assert_eq!(counts(&f), (0, 0), "(verified, reused)");
        assert_eq!(f.shared.metrics.block_transactions_unadmitted.get(), 0);
        assert_eq!(f.shared.metrics.admission_signatures_verified.get(), 1);
        // The wait is counted (the admission took at least 100 ms).
        let waited = f.shared.metrics.block_admission_wait_seconds.get();
        assert!(
            (0.1..ADMISSION_WAIT.as_secs_f64()).contains(&waited),
            "{waited}"
        );
    }

    #[test]
    fn a_block_waits_for_admission_only_so_long() {
        let f = fixture(16 * 1024);
        // Taken for admission, which never finishes.
        let (block, _, _) = taken_for_admission(&f);
        let start = Instant::now();
        let filled = f.shared.fill_compact(&block.compact()).unwrap();
        assert!(start.elapsed() >= ADMISSION_WAIT);
        assert_eq!(filled, block);
        // Verified on the consensus thread after all.
        assert_eq!(counts(&f), (1, 0), "(verified, reused)");
        assert_eq!(f.shared.metrics.block_transactions_unadmitted.get(), 1);
        let waited = f.shared.metrics.block_admission_wait_seconds.get();
        assert!(waited >= ADMISSION_WAIT.as_secs_f64(), "{waited}");
    }

    #[test]
    fn a_forged_copy_waiting_for_admission_is_not_used_to_fill_a_block() {
        let f = fixture(16 * 1024);
        let genuine = transfer(&f, 0, 0);
        let mut forged = genuine.clone();
        forged.signature.0[5] ^= 1;
        assert_eq!(forged.hash(), genuine.hash());
        lock(&f.shared.received).hold(hashed(vec![forged])).unwrap();
        // The genuine copy, arriving after the forged one, is not held but
        // handed to admission with its message, not dropped as a duplicate.
        let (held, unheld) = lock(&f.shared.received)
            .hold(hashed(vec![genuine.clone()]))
            .unwrap();
        assert!(held.is_empty());
        assert_eq!(unheld.len(), 1);
        assert_eq!(unheld[0].0, genuine);
        let block = block_of(&f, vec![genuine.clone()]);
        // The forged copy is checked and left out: the hash is fetched.
        assert_eq!(
            f.shared.fill_compact(&block.compact()),
            Err(vec![genuine.hash()])
        );
        assert_eq!(f.shared.metrics.block_transactions_unadmitted.get(), 0);
        assert_eq!(counts(&f), (1, 0), "(verified, reused)");
    }

    #[test]
    fn transactions_waiting_for_admission_are_bounded_in_bytes() {
        let f = fixture(16 * 1024);
        let mut received = lock(&f.shared.received);
        received.bytes = RECEIVED_BYTES - 10;
        let tx = hashed(vec![transfer(&f, 0, 0)]);
        assert!(tx[0].2 > 10);
        assert_eq!(received.hold(tx), None);
        assert!(received.txs.is_empty());
    }

    #[test]
    fn a_compact_block_lacking_more_than_one_answer_carries_is_asked_for_whole() {
        let f = fixture(16 * 1024);
        let block = block_of(&f, vec![transfer(&f, 0, 0)]);
        let digest = block.hash();
        let hashes = |n: usize| -> HashSet<TxHash> {
            (0..n as u64)
                .map(|i| {
                    let mut h = [0u8; 32];
                    h[..8].copy_from_slice(&i.to_le_bytes());
                    sou_types::Hash(h)
                })
                .collect()
        };
        let mut missing = HashSet::new();
        let mut partial = HashMap::from([(digest, block.compact())]);
        // A few lacking: they are asked for, and the block is filled from
        // the answer.
        let mut lacking = hashes(10);
        let (bodies, txs, asked) = fetch_plan(&mut missing, &mut partial, &mut lacking);
        assert!(bodies.is_empty());
        assert_eq!(txs.len(), 10);
        assert_eq!(asked, HashSet::from([digest]));
        // More than one answer carries: the whole body is asked for.
        let mut lacking = hashes(MAX_WANTED_TXS + 1);
        let (bodies, txs, asked) = fetch_plan(&mut missing, &mut partial, &mut lacking);
        assert_eq!(bodies, vec![digest.0]);
        assert!(txs.is_empty() && asked.is_empty());
        assert!(partial.is_empty() && lacking.is_empty());
        assert!(missing.contains(&digest));
    }

    fn rejected(f: &Fixture, reason: &'static str, source: &'static str) -> u64 {
        f.shared
            .metrics
            .transactions_rejected
            .get_or_create(&RejectLabel { reason, source })
            .get()
    }

    #[test]
    fn gossip_obeys_the_nodes_size_limit_and_rejects_are_counted_by_source() {
        let f = fixture(300);
        let small = transfer(&f, 0, 0);
        let payouts = vec![
            Payout {
                to: f.accounts[2].address(),
                amount: Amount(1),
            };
            8
        ];
        let big = signed(
            &f,
            1,
            0,
            Payload::BatchTransfer {
                asset: f.shared.ledger.params().fee_asset,
                payouts: sou_types::tx::Payouts::new(payouts).unwrap(),
                memo: Memo::empty(),
            },
        );
        let big_len = big.hash_and_len().1;
        assert!(small.hash_and_len().1 <= 300 && big_len > 300, "{big_len}");
        let mut admissions = f.shared.admissions();
        let r = f
            .shared
            .admit(vec![big.clone(), small.clone()], Source::Gossip);
        assert_eq!(
            r,
            vec![
                Err(AdmitError::Invalid(sou_ledger::InvalidTx::TooLarge {
                    len: big_len,
                    max: 300
                })),
                Ok(small.hash())
            ]
        );
        assert!(f.shared.pending(&big.hash()).is_none());
        assert!(f.shared.pending(&small.hash()).is_some());
        assert_eq!(rejected(&f, "too_large", "gossip"), 1);
        assert_eq!(rejected(&f, "too_large", "rpc"), 0);
        // The admission is announced to status subscribers.
        assert!(admissions.has_changed().unwrap());
        assert_eq!(*admissions.borrow_and_update(), 1);
        // The same over RPC, and a duplicate from a peer.
        assert!(f.shared.submit(vec![big]).pop().unwrap().is_err());
        assert_eq!(rejected(&f, "too_large", "rpc"), 1);
        assert!(f.shared.admit(vec![small], Source::Gossip)[0].is_err());
        assert_eq!(rejected(&f, "duplicate", "gossip"), 1);
        assert!(!admissions.has_changed().unwrap(), "nothing new admitted");
        // Undecodable input reported by the RPC server.
        f.shared.rejected(sou_rpc::REASON_MALFORMED);
        assert_eq!(rejected(&f, "malformed", "rpc"), 1);
    }
}
