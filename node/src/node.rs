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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use sou_consensus::{
    Action, Application, Certificate, Config as EngineConfig, Digest, Engine, Input, Message,
    Proposal, Recovered, Timer, ValidatorSet, View,
};
use sou_genesis::{ChainSpec, KeyFile};
use sou_ledger::staking::epoch_of;
use sou_ledger::{AdmitError, ExecutedBlock, Ledger, Mempool};
use sou_rpc::{Backend, FinalizedEvent, NodeInfo};
use sou_types::{Address, Block, Keypair, SignedTransaction, TxHash};
use tokio::sync::broadcast;
use tracing::{info, warn};

use crate::config::NodeConfig;
use crate::metrics::Metrics;
use crate::wal::{Wal, WalRecord};

/// What the RPC server and the driver share.
pub struct Shared {
    pub ledger: Ledger,
    pub mempool: Mutex<Mempool>,
    pub events: broadcast::Sender<FinalizedEvent>,
    pub info: Mutex<NodeInfo>,
    pub metrics: Arc<Metrics>,
    max_tx_bytes: usize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shared")
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Backend for Shared {
    fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    fn submit(&self, txs: Vec<SignedTransaction>) -> Vec<Result<TxHash, AdmitError>> {
        // The node's own size limit, tighter than the chain's when configured so.
        let mut results: Vec<Option<Result<TxHash, AdmitError>>> = vec![None; txs.len()];
        let mut ok = Vec::with_capacity(txs.len());
        let mut slots = Vec::with_capacity(txs.len());
        for (i, tx) in txs.into_iter().enumerate() {
            let len = tx.hash_and_len().1;
            if len > self.max_tx_bytes {
                results[i] = Some(Err(AdmitError::Invalid(sou_ledger::InvalidTx::TooLarge {
                    len,
                    max: self.max_tx_bytes,
                })));
            } else {
                ok.push(tx);
                slots.push(i);
            }
        }
        let admitted = {
            let mut pool = lock(&self.mempool);
            let r = pool.admit(ok, &self.ledger);
            self.metrics.mempool_transactions.set(pool.len() as i64);
            self.metrics.mempool_bytes.set(pool.bytes() as i64);
            r
        };
        for (slot, r) in slots.into_iter().zip(admitted) {
            results[slot] = Some(r);
        }
        results
            .into_iter()
            .map(|r| {
                let r = r.unwrap_or_else(|| Err(AdmitError::Ledger("no result".into())));
                if let Err(e) = &r {
                    self.metrics
                        .transactions_rejected
                        .get_or_create(&crate::metrics::ReasonLabel {
                            reason: e.label().to_string(),
                        })
                        .inc();
                }
                r
            })
            .collect()
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

/// The application side of consensus: builds and checks blocks.
struct ChainApp<'a> {
    shared: &'a Shared,
    pending: &'a mut HashMap<Digest, ExecutedBlock>,
    blocks_to_log: &'a mut Vec<Block>,
    proposer: Address,
    cfg: &'a NodeConfig,
    last_block_ms: u64,
    epoch_end: u64,
}

impl Application for ChainApp<'_> {
    fn propose(&mut self, _view: View, parent: Digest, parent_height: u64) -> Option<Digest> {
        let ledger = &self.shared.ledger;
        // Build only on the committed tip, and only within the epoch.
        if parent != ledger.tip().hash || parent_height >= self.epoch_end {
            return None;
        }
        let params = ledger.params();
        let max_txs = (self.cfg.block.max_txs.min(params.max_block_txs)) as usize;
        let max_bytes = self.cfg.block.max_bytes.min(params.max_block_bytes) as usize;
        let txs = lock(&self.shared.mempool).select(max_txs, max_bytes);
        let now = now_ms();
        if txs.is_empty()
            && now.saturating_sub(self.last_block_ms) < self.cfg.block.empty_block_interval_ms
        {
            return None;
        }
        let verified: HashSet<TxHash> = txs.iter().map(SignedTransaction::hash).collect();
        let start = Instant::now();
        let (executed, applied) =
            match ledger.propose(txs, self.proposer, now, &|h| verified.contains(h)) {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "could not build a block");
                    return None;
                }
            };
        self.shared
            .metrics
            .block_execution_seconds
            .observe(start.elapsed().as_secs_f64());
        if !applied.invalid.is_empty() {
            let drop: Vec<TxHash> = applied.invalid.iter().map(|(h, _)| *h).collect();
            lock(&self.shared.mempool).remove(&drop);
        }
        let hash = executed.block.hash();
        self.blocks_to_log.push(executed.block.clone());
        self.pending.insert(hash, executed);
        Some(hash)
    }

    fn verify(&mut self, p: &Proposal) -> bool {
        // Blocks from other validators arrive with networking; until then
        // only blocks this node built (and so executed) are known.
        match self.pending.get(&p.payload) {
            Some(b) => {
                b.block.header.height == p.height
                    && b.block.header.parent == p.parent
                    && p.height <= self.epoch_end
            }
            None => false,
        }
    }
}

/// The consensus driver and its state.
struct Driver {
    shared: Arc<Shared>,
    cfg: NodeConfig,
    key: Keypair,
    proposer: Address,
    engine: Engine,
    epoch_end: u64,
    wal: Wal,
    wal_path_buf: std::path::PathBuf,
    /// Blocks this node built or checked, not yet committed.
    pending: HashMap<Digest, ExecutedBlock>,
    /// Blocks recovered from the WAL, to re-execute if they turn out final.
    logged_blocks: HashMap<Digest, Block>,
    timers: BTreeMap<(Instant, u64), (View, Timer)>,
    timer_seq: u64,
    last_block_ms: u64,
    last_commit: Option<Instant>,
    blocks_since_compact: u64,
}

impl Driver {
    /// The engine for the epoch of the block after the tip, recovered from
    /// the WAL records.
    fn engine_for_tip(
        shared: &Shared,
        cfg: &NodeConfig,
        key: &Keypair,
        records: &[WalRecord],
    ) -> Result<(Engine, u64, Address)> {
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
        let cset = ValidatorSet::new(
            epoch,
            set.validators
                .iter()
                .map(|v| (v.consensus_key, power_units(v.power)))
                .collect(),
        );
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
        Ok((engine, (epoch + 1) * length, proposer))
    }

    fn handle(&mut self, input: Input) -> Result<()> {
        let mut blocks_to_log = Vec::new();
        let actions = {
            let mut app = ChainApp {
                shared: &self.shared,
                pending: &mut self.pending,
                blocks_to_log: &mut blocks_to_log,
                proposer: self.proposer,
                cfg: &self.cfg,
                last_block_ms: self.last_block_ms,
                epoch_end: self.epoch_end,
            };
            self.engine.handle(input, &mut app)
        };
        // Blocks first: the next vote's sync makes them durable with it.
        for b in blocks_to_log {
            self.wal.append(&WalRecord::Block(b), false)?;
        }
        self.perform(actions)
    }

    fn perform(&mut self, actions: Vec<Action>) -> Result<()> {
        for action in actions {
            match action {
                Action::Persist(vote) => self.wal.append(&WalRecord::Signed(vote), true)?,
                // No peers yet: a single validator's messages go nowhere.
                Action::Broadcast(_) => {}
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
                }
            }
        }
        let view = self.engine.view();
        self.shared.metrics.view.set(view as i64);
        lock(&self.shared.info).view = view;
        Ok(())
    }

    /// Commits the finalized block and any uncommitted ancestors, in order.
    fn commit_finalized(&mut self, cert: &Certificate) -> Result<()> {
        let Some(p) = cert.vote.proposal() else {
            return Ok(());
        };
        let ledger = &self.shared.ledger;
        let tip = ledger.tip();
        if p.height <= tip.height {
            return Ok(());
        }
        // Walk back to the tip through the blocks we hold.
        let mut chain = Vec::new();
        let mut digest = p.payload;
        loop {
            if digest == tip.hash {
                break;
            }
            let (parent, height) = if let Some(e) = self.pending.get(&digest) {
                (e.block.header.parent, e.block.height())
            } else if let Some(b) = self.logged_blocks.get(&digest) {
                (b.header.parent, b.height())
            } else {
                return Err(anyhow!(
                    "finalized block {digest} is not known to this node"
                ));
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
                        .ok_or_else(|| anyhow!("finalized block {digest} vanished"))?;
                    ledger.execute(block, &|_| false)?
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
            if let Some(prev) = self.last_commit.replace(Instant::now()) {
                m.block_interval_seconds
                    .observe(prev.elapsed().as_secs_f64());
            }
            self.last_block_ms = executed.block.header.timestamp_ms;
            let included: Vec<TxHash> = executed.receipts.iter().map(|r| r.tx_hash).collect();
            {
                let mut pool = lock(&self.shared.mempool);
                pool.update(&included, ledger)?;
                m.mempool_transactions.set(pool.len() as i64);
                m.mempool_bytes.set(pool.bytes() as i64);
            }
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
        let (engine, epoch_end, proposer) =
            Self::engine_for_tip(&self.shared, &self.cfg, &self.key, &[])?;
        info!(
            epoch = engine.epoch(),
            validators = engine.validator_set().len(),
            "new epoch"
        );
        self.engine = engine;
        self.epoch_end = epoch_end;
        self.proposer = proposer;
        self.timers.clear();
        self.handle(Input::Start)
    }

    async fn run(&mut self) -> Result<()> {
        loop {
            let next = self.timers.keys().next().copied();
            match next {
                Some((at, seq)) => {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                    if let Some((view, timer)) = self.timers.remove(&(at, seq)) {
                        if timer == Timer::View && view == self.engine.view() {
                            self.shared.metrics.consensus_timeouts.inc();
                        }
                        self.handle(Input::Timer { view, timer })?;
                    }
                }
                None => tokio::time::sleep(Duration::from_millis(100)).await,
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

/// `sou start`: runs the node in `home` until SIGINT or SIGTERM.
pub async fn start(home: &Path) -> Result<()> {
    let cfg = NodeConfig::load(home)?;
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
    let shared = Arc::new(Shared {
        ledger,
        mempool: Mutex::new(Mempool::new((&cfg.mempool).into())),
        events: broadcast::channel(4096).0,
        info: Mutex::new(NodeInfo::default()),
        metrics,
        max_tx_bytes,
    });
    let (engine, epoch_end, proposer) = Driver::engine_for_tip(&shared, &cfg, &key, &records)?;
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
    };
    // Rebuild the engine from the log, then start it.
    for r in &records {
        if let WalRecord::Received(m) = r {
            driver.handle(Input::Message(m.clone()))?;
        }
    }
    driver.handle(Input::Start)?;

    let (rpc_addr, rpc_handle) = sou_rpc::serve(cfg.rpc.to_rpc_config(), shared.clone())
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
        r = driver.run() => r,
        _ = shutdown_signal() => {
            info!("shutting down");
            Ok(())
        }
    };
    let _ = rpc_handle.stop();
    result
}
