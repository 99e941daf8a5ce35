//! The ledger as the node uses it: a RocksDB store with a committed tip,
//! block building and checking on top of it, and read access for queries.

use std::path::Path;
use std::sync::RwLock;

use sou_types::asset::NATIVE;
use sou_types::{
    Address, Amount, Block, BlockHeader, ChainId, Hash, Misbehaviour, PublicKey, Signature, Symbol,
    TxHash,
};

use crate::cache::StateCache;
use crate::exec::{Applied, BlockContext, BlockExecutor, Candidate, ExecutedBlock, OnInvalid};
use crate::lthash::LtHash;
use crate::params::Params;
use crate::state::{
    bonded_pool, Account, AssetInfo, AssetRoles, Delegation, StateKey, Validator, ValidatorSet,
};
use crate::store::{StateReader, Store, Tip};
use crate::{Error, Result};

/// What a block's contents are checked against outside the ledger.
#[derive(Clone, Copy)]
pub struct Checks<'a> {
    /// Whether this transaction, with this very signature, had its
    /// signature verified already (on admission to the mempool): if so it
    /// is not verified again. The ledger computes each hash once and asks
    /// with it; a hash does not cover the signature, so an answer must
    /// compare the signature too.
    pub verified: &'a dyn Fn(&TxHash, &Signature) -> bool,
    /// Whether a piece of evidence holds up under the consensus rules.
    pub evidence: &'a dyn Fn(&Misbehaviour) -> bool,
}

impl std::fmt::Debug for Checks<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Checks")
    }
}

/// An issued asset as genesis creates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenesisAsset {
    pub symbol: Symbol,
    pub name: String,
    pub decimals: u8,
    pub roles: AssetRoles,
    pub minters: Vec<(Address, Amount)>,
}

/// A validator in genesis: registered, with `stake` native tokens self-bonded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenesisValidator {
    pub operator: Address,
    pub consensus_key: PublicKey,
    pub commission_bps: u16,
    pub stake: Amount,
}

/// The initial state of a chain, already validated by `sou-genesis`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenesisState {
    pub chain_id: ChainId,
    pub genesis_time_ms: u64,
    pub params: Params,
    /// Every asset, the native token included.
    pub assets: Vec<GenesisAsset>,
    pub balances: Vec<(Address, Symbol, Amount)>,
    pub validators: Vec<GenesisValidator>,
}

/// The ledger: shared by the node's tasks (`&self` everywhere; commits are
/// serialised by the caller, which is the one consensus driver).
#[derive(Debug)]
pub struct Ledger {
    store: Store,
    chain_id: ChainId,
    params: Params,
    tip: RwLock<(Tip, BlockHeader)>,
}

fn genesis_err(msg: impl Into<String>) -> Error {
    Error::Genesis(msg.into())
}

/// A state with nothing in it: what genesis is built on, whatever the
/// database already holds.
struct EmptyState;

impl StateReader for EmptyState {
    fn get_state(&self, _key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }

    fn multi_get_state(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        Ok(vec![None; keys.len()])
    }
}

/// Executes the genesis state into block 0.
fn genesis_block(g: &GenesisState) -> Result<ExecutedBlock> {
    let ctx = BlockContext {
        chain_id: g.chain_id,
        height: 0,
        parent: Hash::ZERO,
        proposer: Address([0; 32]),
        timestamp_ms: g.genesis_time_ms,
    };
    let mut exec = BlockExecutor::genesis(&EmptyState, g.params.clone(), ctx)?;
    let mut supplies: std::collections::BTreeMap<Symbol, Amount> = Default::default();
    let mut add_supply = |s: Symbol, a: Amount| -> Result<()> {
        let e = supplies.entry(s).or_default();
        *e = e
            .checked_add(a)
            .ok_or_else(|| genesis_err(format!("supply of {s} overflows")))?;
        Ok(())
    };
    for (addr, asset, amount) in &g.balances {
        if !g.assets.iter().any(|a| a.symbol == *asset) {
            return Err(genesis_err(format!(
                "balance of {addr} is in unknown asset {asset}"
            )));
        }
        add_supply(*asset, *amount)?;
        exec.genesis_credit(*addr, *asset, *amount)?;
    }
    for v in &g.validators {
        add_supply(NATIVE, v.stake)?;
        exec.genesis_credit(bonded_pool(), NATIVE, v.stake)?;
    }
    let mut seen = std::collections::BTreeSet::new();
    for a in &g.assets {
        if !seen.insert(a.symbol) {
            return Err(genesis_err(format!("asset {} is listed twice", a.symbol)));
        }
        let mut minters = a.minters.clone();
        minters.sort();
        exec.cache.set_asset(AssetInfo {
            symbol: a.symbol,
            name: a.name.clone(),
            decimals: a.decimals,
            supply: supplies.get(&a.symbol).copied().unwrap_or_default(),
            paused: false,
            roles: a.roles.clone(),
            minters,
        })?;
    }
    exec.cache.set_asset_list(seen.iter().copied().collect())?;
    if !seen.contains(&NATIVE) {
        return Err(genesis_err("the native asset SOU is missing"));
    }
    if !seen.contains(&g.params.fee_asset) {
        return Err(genesis_err(format!(
            "fee asset {} is not among the assets",
            g.params.fee_asset
        )));
    }
    for v in &g.validators {
        exec.genesis_validator(v.operator, v.consensus_key, v.commission_bps, v.stake)?;
    }
    let executed = exec.finish()?;
    Ok(executed)
}

impl Ledger {
    /// Opens the ledger at `path`, writing `genesis` as block 0 if the
    /// database is new. An existing database must hold the same genesis.
    pub fn init(path: &Path, genesis: &GenesisState) -> Result<Ledger> {
        let store = Store::open(path)?;
        let executed = genesis_block(genesis)?;
        match store.tip()? {
            None => store.commit(&executed, None)?,
            Some(_) => {
                let ours = executed.block.hash();
                let theirs = store.header(0)?.map(|h| h.hash());
                if theirs != Some(ours) {
                    return Err(genesis_err(format!(
                        "the database holds another chain (genesis {theirs:?}, expected {ours})"
                    )));
                }
            }
        }
        drop(executed);
        Self::from_store(store)
    }

    /// Opens an initialised ledger.
    pub fn open(path: &Path) -> Result<Ledger> {
        Self::from_store(Store::open(path)?)
    }

    fn from_store(store: Store) -> Result<Ledger> {
        let tip = store.tip()?.ok_or(Error::NoGenesis)?;
        Self::replay_held_blocks(&store, tip.height)?;
        let tip_header = store.header(tip.height)?.ok_or_else(|| Error::Corrupt {
            what: "blocks".into(),
            reason: format!("the tip block {} is missing", tip.height),
        })?;
        let params = StateCache::new(&store).params()?;
        Ok(Ledger {
            chain_id: tip_header.chain_id,
            store,
            params,
            tip: RwLock::new((tip, tip_header)),
        })
    }

    /// After reopening: executes again the blocks above the height the
    /// `state` column family holds, up to the tip, to rebuild the state
    /// held in memory (blocks write their state changes only with a chunk;
    /// see the store's module docs). Each block's state root is checked
    /// against its header; signatures and evidence were checked when the
    /// block was committed.
    fn replay_held_blocks(store: &Store, tip: u64) -> Result<()> {
        let Some((from, mut lthash)) = store.replay_from() else {
            return Ok(());
        };
        let corrupt = |height: u64, reason: String| Error::Corrupt {
            what: format!("block {height}, executed again"),
            reason,
        };
        tracing::info!(
            from = from + 1,
            to = tip,
            "rebuilding the state held in memory: executing blocks again"
        );
        for height in from + 1..=tip {
            let block = store
                .block(height)?
                .ok_or_else(|| corrupt(height, "missing".into()))?;
            let h = block.header.clone();
            let ctx = BlockContext {
                chain_id: h.chain_id,
                height: h.height,
                parent: h.parent,
                proposer: h.proposer,
                timestamp_ms: h.timestamp_ms,
            };
            let mut exec = BlockExecutor::new(store, lthash, ctx)?;
            exec.apply_evidence(block.evidence, &|_| true, OnInvalid::Reject)?;
            let txs = block
                .transactions
                .into_iter()
                .map(Candidate::from)
                .collect();
            exec.apply(txs, &|_, _| true, OnInvalid::Reject)?;
            let executed = exec.finish()?;
            if executed.block.header.state_root != h.state_root {
                return Err(corrupt(
                    height,
                    format!(
                        "state root {} is not the header's {}",
                        executed.block.header.state_root, h.state_root
                    ),
                ));
            }
            store.hold_replayed(height, &executed.writes, &executed.lthash)?;
            lthash = executed.lthash;
        }
        if lthash != store.lthash()? {
            return Err(corrupt(tip, "the LtHash is not the one stored".into()));
        }
        Ok(())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn read_tip(&self) -> std::sync::RwLockReadGuard<'_, (Tip, BlockHeader)> {
        // A panic while holding the lock cannot leave the pair inconsistent:
        // it is replaced whole.
        self.tip
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn tip(&self) -> Tip {
        self.read_tip().0
    }

    pub fn tip_header(&self) -> BlockHeader {
        self.read_tip().1.clone()
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn chain_id(&self) -> &ChainId {
        &self.chain_id
    }

    /// Starts executing the block after the tip.
    pub fn begin_block(
        &self,
        proposer: Address,
        timestamp_ms: u64,
    ) -> Result<BlockExecutor<'_, Store>> {
        let tip = self.tip();
        let ctx = BlockContext {
            chain_id: self.chain_id,
            height: tip.height + 1,
            parent: tip.hash,
            proposer,
            timestamp_ms,
        };
        BlockExecutor::new(&self.store, self.store.lthash()?, ctx)
    }

    /// The committed state seen through `ancestors`, uncommitted blocks
    /// that extend the tip (oldest first), and the header of the last of
    /// them (or of the tip): what the next block builds on.
    fn layered<'a>(
        &'a self,
        ancestors: &'a [&'a ExecutedBlock],
    ) -> Result<(Overlay<'a>, BlockHeader)> {
        let (tip, tip_header) = {
            let t = self.read_tip();
            (t.0, t.1.clone())
        };
        let mut expected = (tip.height + 1, tip.hash);
        for a in ancestors {
            let h = &a.block.header;
            if (h.height, h.parent) != expected {
                return Err(Error::InvalidBlock {
                    height: h.height,
                    reason: format!(
                        "an uncommitted ancestor does not extend {} at height {}",
                        expected.1,
                        expected.0 - 1
                    ),
                });
            }
            expected = (h.height + 1, a.block.hash());
        }
        let parent = ancestors
            .last()
            .map_or(tip_header, |a| a.block.header.clone());
        Ok((
            Overlay {
                store: &self.store,
                layers: ancestors,
            },
            parent,
        ))
    }

    /// Builds the next block from candidate transactions, leaving out those
    /// that may not be included and those that do not fit.
    pub fn propose<T: Into<Candidate>>(
        &self,
        txs: Vec<T>,
        proposer: Address,
        timestamp_ms: u64,
        verified: &dyn Fn(&TxHash) -> bool,
    ) -> Result<(ExecutedBlock, Applied)> {
        let checks = Checks {
            verified: &|h, _| verified(h),
            evidence: &|_| false,
        };
        self.propose_on(&[], txs, Vec::new(), proposer, timestamp_ms, &checks)
    }

    /// [`Ledger::propose`] on top of `ancestors`: uncommitted blocks that
    /// extend the tip, oldest first (a notarized chain not yet final).
    pub fn propose_on<T: Into<Candidate>>(
        &self,
        ancestors: &[&ExecutedBlock],
        txs: Vec<T>,
        evidence: Vec<Misbehaviour>,
        proposer: Address,
        timestamp_ms: u64,
        checks: &Checks<'_>,
    ) -> Result<(ExecutedBlock, Applied)> {
        let (overlay, parent) = self.layered(ancestors)?;
        let ctx = BlockContext {
            chain_id: self.chain_id,
            height: parent.height + 1,
            parent: parent.hash(),
            proposer,
            timestamp_ms: timestamp_ms.max(parent.timestamp_ms),
        };
        let mut exec = BlockExecutor::new(&overlay, overlay.lthash()?, ctx)?;
        exec.apply_evidence(evidence, checks.evidence, OnInvalid::Skip)?;
        let txs = txs.into_iter().map(Into::into).collect();
        let applied = exec.apply(txs, checks.verified, OnInvalid::Skip)?;
        Ok((exec.finish()?, applied))
    }

    /// Executes someone else's block on the tip and checks it: parent,
    /// height, chain, timestamp, every transaction, the transactions root
    /// and the state root.
    pub fn execute(
        &self,
        block: Block,
        verified: &dyn Fn(&TxHash) -> bool,
    ) -> Result<ExecutedBlock> {
        let checks = Checks {
            verified: &|h, _| verified(h),
            evidence: &|_| false,
        };
        self.execute_on(&[], block, &checks)
    }

    /// [`Ledger::execute`] on top of `ancestors`: uncommitted blocks that
    /// extend the tip, oldest first.
    pub fn execute_on(
        &self,
        ancestors: &[&ExecutedBlock],
        block: Block,
        checks: &Checks<'_>,
    ) -> Result<ExecutedBlock> {
        let h = &block.header;
        let invalid = |reason: String| Error::InvalidBlock {
            height: h.height,
            reason,
        };
        let (overlay, parent) = self.layered(ancestors)?;
        let parent_hash = parent.hash();
        if h.height != parent.height + 1 || h.parent != parent_hash {
            return Err(invalid(format!(
                "does not extend {} at height {}",
                parent_hash, parent.height
            )));
        }
        if h.chain_id != self.chain_id {
            return Err(invalid(format!(
                "chain id {} is not {}",
                h.chain_id, self.chain_id
            )));
        }
        if h.timestamp_ms < parent.timestamp_ms {
            return Err(invalid("timestamp is before the parent's".into()));
        }
        let ctx = BlockContext {
            chain_id: self.chain_id,
            height: h.height,
            parent: parent_hash,
            proposer: h.proposer,
            timestamp_ms: h.timestamp_ms,
        };
        let mut exec = BlockExecutor::new(&overlay, overlay.lthash()?, ctx)?;
        let expected = block.header.clone();
        exec.apply_evidence(block.evidence, checks.evidence, OnInvalid::Reject)?;
        let txs = block
            .transactions
            .into_iter()
            .map(Candidate::from)
            .collect();
        exec.apply(txs, checks.verified, OnInvalid::Reject)?;
        let executed = exec.finish()?;
        let got = &executed.block.header;
        if got.evidence_root != expected.evidence_root {
            return Err(invalid(format!(
                "evidence root {} does not match {}",
                expected.evidence_root, got.evidence_root
            )));
        }
        if got.tx_root != expected.tx_root {
            return Err(invalid(format!(
                "transactions root {} does not match {}",
                expected.tx_root, got.tx_root
            )));
        }
        if got.state_root != expected.state_root {
            return Err(invalid(format!(
                "state root {} does not match the executed {}",
                expected.state_root, got.state_root
            )));
        }
        Ok(executed)
    }

    /// Commits an executed block (see [`Store::commit`]) and moves the tip.
    pub fn commit(&self, executed: &ExecutedBlock) -> Result<()> {
        self.commit_with_finality(executed, None)
    }

    /// Commits an executed block with the proof of its finality (opaque
    /// bytes to the ledger: consensus's certificate), in the same batch.
    pub fn commit_with_finality(
        &self,
        executed: &ExecutedBlock,
        finality: Option<&[u8]>,
    ) -> Result<()> {
        let mut tip = self
            .tip
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.store.commit(executed, finality)?;
        *tip = (
            Tip {
                height: executed.block.height(),
                hash: executed.block.hash(),
            },
            executed.block.header.clone(),
        );
        Ok(())
    }

    // Queries over committed state.

    fn reader(&self) -> StateCache<'_, Store> {
        StateCache::new(&self.store)
    }

    /// Read straight from the store: the mempool reads an account for
    /// every transaction it admits, and a state cache (a map built and
    /// dropped per call) cost more than the read.
    pub fn account(&self, a: &Address) -> Result<Account> {
        let decoded = self.store.read_state(&StateKey::account(a), |v| {
            v.map(borsh::from_slice::<Account>)
        })?;
        match decoded {
            None => Ok(Account::default()),
            Some(Ok(account)) => Ok(account),
            Some(Err(e)) => Err(Error::Corrupt {
                what: format!("account {a}"),
                reason: e.to_string(),
            }),
        }
    }

    pub fn asset(&self, s: &Symbol) -> Result<Option<AssetInfo>> {
        self.reader().asset(s)
    }

    pub fn validator(&self, op: &Address) -> Result<Option<Validator>> {
        self.reader().validator(op)
    }

    pub fn delegation(&self, delegator: &Address, validator: &Address) -> Result<Delegation> {
        self.reader().delegation(delegator, validator)
    }

    pub fn validator_set(&self, epoch: u64) -> Result<Option<ValidatorSet>> {
        self.reader().validator_set(epoch)
    }

    /// Every asset's symbol, sorted.
    pub fn asset_symbols(&self) -> Result<Vec<Symbol>> {
        self.reader().asset_list()
    }

    /// The unbonding entries held with `validator`.
    pub fn unbonding(&self, validator: &Address) -> Result<Vec<crate::state::UnbondingEntry>> {
        self.reader().unbonding(validator)
    }

    pub fn candidates(&self) -> Result<Vec<Address>> {
        self.reader().candidates()
    }

    /// The state root of the committed tip.
    pub fn state_root(&self) -> Hash {
        self.read_tip().1.state_root
    }
}

/// Committed state with the writes of uncommitted blocks laid over it
/// (later layers win): what a block extending a notarized chain reads.
struct Overlay<'a> {
    store: &'a Store,
    /// Oldest first.
    layers: &'a [&'a ExecutedBlock],
}

impl Overlay<'_> {
    fn lookup(&self, key: &[u8]) -> Option<Option<Vec<u8>>> {
        self.layers
            .iter()
            .rev()
            .find_map(|l| l.writes.get(key).map(|v| v.map(<[u8]>::to_vec)))
    }

    fn lthash(&self) -> Result<LtHash> {
        match self.layers.last() {
            Some(l) => Ok(l.lthash.clone()),
            None => self.store.lthash(),
        }
    }
}

impl StateReader for Overlay<'_> {
    fn get_state(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.lookup(key) {
            Some(v) => Ok(v),
            None => self.store.get_state(key),
        }
    }

    fn multi_get_state(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        if self.layers.is_empty() {
            return self.store.multi_get_state(keys);
        }
        let mut out: Vec<Option<Option<Vec<u8>>>> = keys.iter().map(|k| self.lookup(k)).collect();
        let missing: Vec<&[u8]> = keys
            .iter()
            .zip(&out)
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| *k)
            .collect();
        let mut fetched = self.store.multi_get_state(&missing)?.into_iter();
        for slot in &mut out {
            if slot.is_none() {
                *slot = Some(fetched.next().flatten());
            }
        }
        Ok(out.into_iter().map(Option::flatten).collect())
    }
}
