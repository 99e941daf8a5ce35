//! Block execution: a block's transactions in, receipts, state writes and the
//! new state root out. Execution reads committed state through a
//! [`StateCache`] and writes nothing: [`crate::Store::commit`] persists the
//! result in one batch.
//!
//! # The rules for a transaction in a block
//! 1. **Inclusion checks** — signature, chain id, expiry, size, nonce equal
//!    to the account's next nonce, max fee at least the fee, and a fee-asset
//!    balance (not frozen) that pays the fee. A block holding a transaction
//!    that fails one is invalid; a proposer leaves such transactions out.
//! 2. **Fee and nonce** — the fee moves to the fee collector and the nonce is
//!    used. This is final even if the payload then fails.
//! 3. **Payload** — executed against a journal checkpoint. If it fails (for
//!    example, an earlier transaction in the block spent the balance it
//!    needed), its changes are rolled back and its receipt says why: failed
//!    receipt, nonce used, fee charged.
//!
//! After the transactions, the block's fees are shared out among the
//! validators and, at an epoch's last block, the next validator set is chosen.

use sou_types::block::{evidence_root, tx_root};
use sou_types::crypto::verify_batch;
use sou_types::{
    Address, Amount, Block, BlockHash, BlockHeader, ChainId, Hash, Misbehaviour, Payload,
    Signature, SignedTransaction, TxHash,
};

use crate::cache::StateCache;
use crate::error::{InvalidTx, TxError};
use crate::lthash::LtHash;
use crate::params::Params;
use crate::receipt::{Receipt, TxStatus};
use crate::state::StateKey;
use crate::store::StateReader;
use crate::writes::StateWrites;
use crate::{Error, Result};

/// What a block is built on and by whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockContext {
    pub chain_id: ChainId,
    pub height: u64,
    pub parent: BlockHash,
    pub proposer: Address,
    pub timestamp_ms: u64,
}

/// What to do with a transaction that fails an inclusion check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnInvalid {
    /// Building a block: leave it out and go on.
    Skip,
    /// Checking someone else's block: the whole block is invalid.
    Reject,
}

/// What applying a list of transactions did besides including them.
#[derive(Debug, Default)]
pub struct Applied {
    /// Left out because they failed an inclusion check (only with [`OnInvalid::Skip`]).
    pub invalid: Vec<(TxHash, InvalidTx)>,
    /// Left out because the block was full (only with [`OnInvalid::Skip`]).
    pub not_included: usize,
}

/// Most pieces of evidence in one block.
pub const MAX_BLOCK_EVIDENCE: usize = 16;

/// A transaction offered for a block, with its hash and the length of its
/// encoding (which the mempool computed when it admitted it).
#[derive(Clone, Debug)]
pub struct Candidate {
    pub tx: SignedTransaction,
    pub hash: TxHash,
    pub len: usize,
}

impl From<SignedTransaction> for Candidate {
    fn from(tx: SignedTransaction) -> Candidate {
        let (hash, len) = tx.hash_and_len();
        Candidate { tx, hash, len }
    }
}

/// A block executed but not yet committed.
#[derive(Debug)]
pub struct ExecutedBlock {
    pub block: Block,
    pub receipts: Vec<Receipt>,
    /// State writes, sorted by key; `None` deletes.
    pub writes: StateWrites,
    pub lthash: LtHash,
}

impl ExecutedBlock {
    pub fn state_root(&self) -> Hash {
        self.block.header.state_root
    }
}

/// A failed step inside execution: either the payload is refused (the
/// transaction gets a failed receipt) or something is wrong with the node
/// itself (storage), which aborts the block.
#[derive(Debug)]
pub(crate) enum Fail {
    Tx(TxError),
    Fatal(Error),
}

impl From<TxError> for Fail {
    fn from(e: TxError) -> Self {
        Fail::Tx(e)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Fatal(e)
    }
}

pub(crate) type Step<T = ()> = std::result::Result<T, Fail>;

/// Executes one block. Create it on the parent's committed state, apply
/// transactions, optionally slash or jail, then [`finish`](Self::finish).
pub struct BlockExecutor<'a, R: StateReader> {
    pub(crate) cache: StateCache<'a, R>,
    pub(crate) params: Params,
    pub(crate) ctx: BlockContext,
    base: LtHash,
    txs: Vec<SignedTransaction>,
    receipts: Vec<Receipt>,
    evidence: Vec<Misbehaviour>,
    bytes: u64,
    /// Fees charged so far in this block, not yet in the fee collector.
    pub(crate) fees: Amount,
}

impl<R: StateReader> std::fmt::Debug for BlockExecutor<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BlockExecutor(height {}, {} txs)",
            self.ctx.height,
            self.txs.len()
        )
    }
}

impl<'a, R: StateReader> BlockExecutor<'a, R> {
    /// Starts a block on the committed state that `reader` shows, whose
    /// LtHash is `base`.
    pub fn new(reader: &'a R, base: LtHash, ctx: BlockContext) -> Result<Self> {
        let mut cache = StateCache::new(reader);
        let params = cache.params()?;
        Ok(BlockExecutor {
            cache,
            params,
            ctx,
            base,
            txs: Vec::new(),
            receipts: Vec::new(),
            evidence: Vec::new(),
            bytes: 0,
            fees: Amount::ZERO,
        })
    }

    pub fn context(&self) -> &BlockContext {
        &self.ctx
    }

    /// Applies transactions in order. `verified` says which transactions
    /// (by hash and signature) already had their signature checked (on
    /// mempool admission); the others are verified here, in one batch.
    pub fn apply(
        &mut self,
        txs: Vec<Candidate>,
        verified: &dyn Fn(&TxHash, &Signature) -> bool,
        on_invalid: OnInvalid,
    ) -> Result<Applied> {
        let mut applied = Applied::default();
        self.txs.reserve(txs.len());
        self.receipts.reserve(txs.len());

        // One batched signature check for everything not checked before.
        let unverified: Vec<usize> = (0..txs.len())
            .filter(|&i| !verified(&txs[i].hash, &txs[i].tx.signature))
            .collect();
        let items: Vec<_> = unverified
            .iter()
            .map(|&i| {
                let c = &txs[i];
                (c.tx.tx.sender.public_key(), c.hash, c.tx.signature)
            })
            .collect();
        let mut sig_ok = vec![true; txs.len()];
        for (&i, ok) in unverified.iter().zip(verify_batch(&items)) {
            sig_ok[i] = ok;
        }

        // One batched read of every account the block touches.
        let fee_asset = self.params.fee_asset;
        let mut keys = Vec::with_capacity(txs.len() * 3 + 1);
        for Candidate { tx, .. } in &txs {
            keys.push(StateKey::Account(tx.tx.sender));
            for a in tx.tx.payload.counterparties() {
                keys.push(StateKey::Account(a));
            }
            if let Payload::Transfer { asset, .. } | Payload::BatchTransfer { asset, .. } =
                &tx.tx.payload
            {
                keys.push(StateKey::Asset(*asset));
            }
        }
        keys.push(StateKey::Asset(fee_asset));
        self.cache.prefetch(keys)?;

        for (i, Candidate { tx, hash, len }) in txs.into_iter().enumerate() {
            let full = self.txs.len() >= self.params.max_block_txs as usize
                || self.bytes.saturating_add(len as u64) > self.params.max_block_bytes;
            if full {
                match on_invalid {
                    OnInvalid::Skip => {
                        applied.not_included += 1;
                        continue;
                    }
                    OnInvalid::Reject => {
                        return Err(Error::InvalidBlock {
                            height: self.ctx.height,
                            reason: format!(
                                "over the block limits of {} transactions or {} bytes",
                                self.params.max_block_txs, self.params.max_block_bytes
                            ),
                        })
                    }
                }
            }
            let checked = if sig_ok[i] {
                self.charge(&tx, len)
            } else {
                Ok(Err(InvalidTx::BadSignature))
            };
            match checked? {
                Ok(fee) => {
                    let status = self.run_payload(&tx)?;
                    self.cache.settle();
                    self.receipts.push(Receipt {
                        tx_hash: hash,
                        height: self.ctx.height,
                        index: self.txs.len() as u32,
                        fee,
                        status,
                    });
                    self.bytes += len as u64;
                    self.txs.push(tx);
                }
                Err(reason) => match on_invalid {
                    OnInvalid::Skip => applied.invalid.push((hash, reason)),
                    OnInvalid::Reject => {
                        return Err(Error::InvalidTxInBlock {
                            height: self.ctx.height,
                            index: self.txs.len(),
                            reason,
                        })
                    }
                },
            }
        }
        Ok(applied)
    }

    /// Inclusion checks, then the fee and the nonce. `Ok(Err(_))` means the
    /// transaction may not be included; nothing was changed.
    fn charge(
        &mut self,
        stx: &SignedTransaction,
        len: usize,
    ) -> Result<std::result::Result<Amount, InvalidTx>> {
        let tx = &stx.tx;
        let p = &self.params;
        let invalid = check_static(stx, len, p, &self.ctx.chain_id, self.ctx.height);
        if let Err(e) = invalid {
            return Ok(Err(e));
        }
        let fee_asset = p.fee_asset;
        let fee = p.tx_fee;
        let (nonce, frozen, have) = match self.cache.account_ref(&tx.sender)? {
            Some(acc) => (
                acc.nonce,
                acc.is_frozen(&fee_asset),
                acc.balance(&fee_asset),
            ),
            None => (0, false, Amount::ZERO),
        };
        // An account whose nonce reached u64::MAX can send nothing more.
        let Some(next_nonce) = nonce.checked_add(1) else {
            return Ok(Err(InvalidTx::NonceUsed {
                got: tx.nonce,
                expected: nonce,
            }));
        };
        if tx.nonce != nonce {
            return Ok(Err(if tx.nonce < nonce {
                InvalidTx::NonceUsed {
                    got: tx.nonce,
                    expected: nonce,
                }
            } else {
                InvalidTx::NonceNotNext {
                    got: tx.nonce,
                    expected: nonce,
                }
            }));
        }
        if frozen {
            return Ok(Err(InvalidTx::SenderFrozen(fee_asset)));
        }
        let Some(left) = have.checked_sub(fee) else {
            return Ok(Err(InvalidTx::InsufficientBalance {
                asset: fee_asset,
                have,
                need: fee,
            }));
        };
        // Fees are added up here and credited to the fee collector once, at
        // the end of the block; a payload's rollback never touches them.
        let Some(fees) = self.fees.checked_add(fee) else {
            return Ok(Err(InvalidTx::InsufficientBalance {
                asset: fee_asset,
                have,
                need: fee,
            }));
        };
        self.fees = fees;
        // Outside the payload's checkpoint: changed in place, not copied.
        self.cache.update_account(&tx.sender, |acc| {
            acc.set_balance(fee_asset, left);
            acc.nonce = next_nonce;
        })?;
        Ok(Ok(fee))
    }

    fn run_payload(&mut self, stx: &SignedTransaction) -> Result<TxStatus> {
        // A transfer makes every check before its first write, so a failed
        // one has written nothing: it needs no journal, and its writes go
        // in place.
        let journaled = !matches!(stx.tx.payload, Payload::Transfer { .. });
        let cp = journaled.then(|| self.cache.checkpoint());
        match self.execute_payload(stx.tx.sender, &stx.tx.payload) {
            Ok(()) => Ok(TxStatus::Success),
            Err(Fail::Tx(e)) => {
                if let Some(cp) = cp {
                    self.cache.rollback(cp);
                }
                Ok(TxStatus::Failed {
                    reason: e.to_string(),
                })
            }
            Err(Fail::Fatal(e)) => Err(e),
        }
    }

    fn execute_payload(&mut self, sender: Address, payload: &Payload) -> Step {
        match payload {
            Payload::Transfer {
                asset, to, amount, ..
            } => self.transfer(sender, *asset, *to, *amount),
            Payload::BatchTransfer { asset, payouts, .. } => {
                self.batch_transfer(sender, *asset, payouts.as_slice())
            }
            Payload::Mint { asset, to, amount } => self.mint(sender, *asset, *to, *amount),
            Payload::Burn { asset, amount } => self.burn(sender, *asset, *amount),
            Payload::ConfigureMinter {
                asset,
                minter,
                allowance,
            } => self.configure_minter(sender, *asset, *minter, Some(*allowance)),
            Payload::RemoveMinter { asset, minter } => {
                self.configure_minter(sender, *asset, *minter, None)
            }
            Payload::Freeze { asset, address } => self.set_frozen(sender, *asset, *address, true),
            Payload::Unfreeze { asset, address } => {
                self.set_frozen(sender, *asset, *address, false)
            }
            Payload::Seize { asset, address } => self.seize(sender, *asset, *address),
            Payload::Pause { asset } => self.set_paused(sender, *asset, true),
            Payload::Unpause { asset } => self.set_paused(sender, *asset, false),
            Payload::RegisterValidator {
                consensus_key,
                commission_bps,
            } => self.register_validator(sender, *consensus_key, *commission_bps),
            Payload::Bond { validator, amount } => self.bond(sender, *validator, *amount),
            Payload::Unbond { validator, amount } => self.unbond(sender, *validator, *amount),
            Payload::Withdraw { validator } => self.withdraw(sender, *validator),
            Payload::ClaimRewards { validator } => self.claim_rewards(sender, *validator),
            Payload::Unjail => self.unjail(sender),
        }
    }

    /// Slashes the offender of each piece of evidence by the genesis
    /// fraction for double signing and jails it for good. `checked` says
    /// whether a piece holds up under the consensus rules (the ledger cannot
    /// read consensus messages). Evidence that does not hold up, names no
    /// validator of its epoch, was used before, or accuses a validator
    /// already jailed for good is left out ([`OnInvalid::Skip`]) or makes
    /// the block invalid ([`OnInvalid::Reject`]). Returns how many the
    /// block holds.
    pub fn apply_evidence(
        &mut self,
        evidence: Vec<Misbehaviour>,
        checked: &dyn Fn(&Misbehaviour) -> bool,
        on_invalid: OnInvalid,
    ) -> Result<usize> {
        for (i, m) in evidence.into_iter().enumerate() {
            let refusal = if self.evidence.len() >= MAX_BLOCK_EVIDENCE {
                Some("the block holds the most evidence it may".to_string())
            } else if self.evidence.iter().any(|e| e.id == m.id) {
                Some("the evidence is in the block twice".to_string())
            } else if !checked(&m) {
                Some("the evidence does not hold up".to_string())
            } else {
                self.evidence_refusal(&m)?
            };
            if let Some(reason) = refusal {
                match on_invalid {
                    OnInvalid::Skip => continue,
                    OnInvalid::Reject => {
                        return Err(Error::InvalidBlock {
                            height: self.ctx.height,
                            reason: format!("evidence {i}: {reason}"),
                        })
                    }
                }
            }
            let operator = self
                .cache
                .validator_set(m.epoch)?
                .and_then(|set| {
                    set.validators
                        .iter()
                        .find(|v| v.consensus_key == m.offender)
                        .map(|v| v.operator)
                })
                .ok_or_else(|| Error::Corrupt {
                    what: "evidence".into(),
                    reason: "the offender vanished".into(),
                })?;
            let fraction = self.params.slash_double_sign_ppm;
            self.slash(operator, fraction, m.id)?;
            self.jail(operator, u64::MAX)?;
            self.evidence.push(m);
        }
        Ok(self.evidence.len())
    }

    /// Why `m` may not be applied to the state, if it may not.
    fn evidence_refusal(&mut self, m: &Misbehaviour) -> Result<Option<String>> {
        let Some(set) = self.cache.validator_set(m.epoch)? else {
            return Ok(Some(format!("epoch {} has no validator set", m.epoch)));
        };
        let Some(v) = set
            .validators
            .iter()
            .find(|v| v.consensus_key == m.offender)
        else {
            return Ok(Some(format!(
                "the offender is not a validator of epoch {}",
                m.epoch
            )));
        };
        if self.cache.evidence_height(&m.id)?.is_some() {
            return Ok(Some("the evidence was used before".into()));
        }
        let jailed_for_good = self
            .cache
            .validator(&v.operator)?
            .is_some_and(|v| v.jailed_until == Some(u64::MAX));
        if jailed_for_good {
            return Ok(Some("the offender is already jailed for good".into()));
        }
        Ok(None)
    }

    /// Ends the block: shares out its fees, picks the next validator set at
    /// an epoch's end, and computes the state root and the header.
    pub fn finish(mut self) -> Result<ExecutedBlock> {
        self.end_block()?;
        self.cache.settle();
        let diff = self.cache.diff(&self.base);
        let hashes: Vec<TxHash> = self.receipts.iter().map(|r| r.tx_hash).collect();
        let header = BlockHeader {
            chain_id: self.ctx.chain_id,
            height: self.ctx.height,
            parent: self.ctx.parent,
            proposer: self.ctx.proposer,
            timestamp_ms: self.ctx.timestamp_ms,
            tx_root: tx_root(&hashes),
            evidence_root: evidence_root(&self.evidence),
            state_root: diff.lthash.root(),
        };
        Ok(ExecutedBlock {
            block: Block {
                header,
                transactions: self.txs,
                evidence: self.evidence,
            },
            receipts: self.receipts,
            writes: diff.writes,
            lthash: diff.lthash,
        })
    }
}

/// The inclusion checks that need no state: size, chain id, expiry, fee cap,
/// batch size. Shared by block execution and mempool admission.
pub(crate) fn check_static(
    stx: &SignedTransaction,
    len: usize,
    p: &Params,
    chain_id: &ChainId,
    height: u64,
) -> std::result::Result<(), InvalidTx> {
    let tx = &stx.tx;
    if len > p.max_tx_bytes as usize {
        return Err(InvalidTx::TooLarge {
            len,
            max: p.max_tx_bytes as usize,
        });
    }
    if &tx.chain_id != chain_id {
        return Err(InvalidTx::WrongChain {
            got: tx.chain_id.to_string(),
            expected: chain_id.to_string(),
        });
    }
    if tx.expiry_height < height {
        return Err(InvalidTx::Expired {
            expiry: tx.expiry_height,
            height,
        });
    }
    if tx.max_fee < p.tx_fee {
        return Err(InvalidTx::FeeTooLow {
            max_fee: tx.max_fee,
            fee: p.tx_fee,
        });
    }
    if let Payload::BatchTransfer { payouts, .. } = &tx.payload {
        let count = payouts.as_slice().len();
        if count > p.max_batch_recipients as usize {
            return Err(InvalidTx::TooManyRecipients {
                count,
                max: p.max_batch_recipients as usize,
            });
        }
    }
    Ok(())
}

impl<'a, R: StateReader> BlockExecutor<'a, R> {
    /// Genesis only: an executor over an empty state, with `params` written.
    pub(crate) fn genesis(reader: &'a R, params: Params, ctx: BlockContext) -> Result<Self> {
        let mut cache = StateCache::new(reader);
        cache.set_params(params.clone())?;
        cache.settle();
        Ok(BlockExecutor {
            cache,
            params,
            ctx,
            base: LtHash::default(),
            txs: Vec::new(),
            receipts: Vec::new(),
            evidence: Vec::new(),
            bytes: 0,
            fees: Amount::ZERO,
        })
    }

    /// Genesis only: credits an initial balance.
    pub(crate) fn genesis_credit(
        &mut self,
        to: Address,
        asset: sou_types::Symbol,
        amount: Amount,
    ) -> Result<()> {
        let r = self.credit(to, asset, amount);
        self.cache.settle();
        r.map_err(|f| match f {
            Fail::Fatal(e) => e,
            Fail::Tx(e) => Error::Genesis(format!("balance of {to}: {e}")),
        })
    }
}
