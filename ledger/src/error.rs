//! The ledger's errors: [`Error`] for what stops the node or a block,
//! [`InvalidTx`] for a transaction that may not be included at all, and
//! [`TxError`] for a payload that fails in execution (failed receipt, nonce
//! used, fee charged).

use sou_types::{Address, Amount, Hash, Symbol};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage error: {0}")]
    Storage(#[from] rocksdb::Error),
    #[error("corrupt {what}: {reason}")]
    Corrupt { what: String, reason: String },
    #[error("block at height {height} does not follow the tip at height {tip}")]
    NotNext { height: u64, tip: u64 },
    #[error("invalid block at height {height}: {reason}")]
    InvalidBlock { height: u64, reason: String },
    #[error("transaction {index} of block {height} may not be included: {reason}")]
    InvalidTxInBlock {
        height: u64,
        index: usize,
        reason: InvalidTx,
    },
    #[error("invalid genesis: {0}")]
    Genesis(String),
    #[error("the database holds no chain: initialise it with a genesis first")]
    NoGenesis,
    #[error(transparent)]
    Rejected(#[from] TxError),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a transaction may not be included in a block (nor admitted to the
/// mempool). A block containing one is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTx {
    #[error("transaction is {len} bytes, over the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("wrong chain id {got:?}: this chain is {expected:?}")]
    WrongChain { got: String, expected: String },
    #[error("expired: expiry height {expiry} is below the next height {height}")]
    Expired { expiry: u64, height: u64 },
    #[error("expiry height {expiry} is more than {max} blocks after the next height {height}")]
    ExpiryTooFar { expiry: u64, height: u64, max: u64 },
    #[error("nonce {got} was already used: the account's next nonce is {expected}")]
    NonceUsed { got: u64, expected: u64 },
    #[error("nonce {got} is not the account's next nonce {expected}")]
    NonceNotNext { got: u64, expected: u64 },
    #[error("nonce {got} is more than {window} ahead of the account's next nonce {expected}")]
    NonceTooFar {
        got: u64,
        expected: u64,
        window: u64,
    },
    #[error("max fee {max_fee} is below the fee of {fee}")]
    FeeTooLow { max_fee: Amount, fee: Amount },
    #[error("sender is frozen in the fee asset {0}")]
    SenderFrozen(Symbol),
    #[error("insufficient {asset} balance: have {have}, need {need}")]
    InsufficientBalance {
        asset: Symbol,
        have: Amount,
        need: Amount,
    },
    #[error("invalid signature")]
    BadSignature,
    #[error("batch transfer has {count} recipients, over the limit of {max}")]
    TooManyRecipients { count: usize, max: usize },
}

/// Why a transaction's payload failed in execution. Its effects are undone;
/// its nonce is used and its fee charged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("unknown asset {0}")]
    UnknownAsset(Symbol),
    #[error("asset {0} is paused")]
    Paused(Symbol),
    #[error("asset {0} is not paused")]
    NotPaused(Symbol),
    #[error("{address} is frozen in {asset}")]
    Frozen { address: Address, asset: Symbol },
    #[error("{address} is not frozen in {asset}")]
    NotFrozen { address: Address, asset: Symbol },
    #[error("insufficient {asset} balance: have {have}, need {need}")]
    InsufficientBalance {
        asset: Symbol,
        have: Amount,
        need: Amount,
    },
    #[error("amount must be greater than zero")]
    ZeroAmount,
    #[error("amount overflows: {0}")]
    Overflow(&'static str),
    #[error("{sender} is not the {role} of {asset}")]
    NotRole {
        sender: Address,
        role: &'static str,
        asset: Symbol,
    },
    #[error("{sender} is not a minter of {asset}")]
    NotMinter { sender: Address, asset: Symbol },
    #[error("mint of {amount} exceeds the minter's remaining allowance of {allowance}")]
    OverAllowance { amount: Amount, allowance: Amount },
    #[error("batch transfer has {count} recipients, over the limit of {max}")]
    TooManyRecipients { count: usize, max: usize },
    #[error("{0} is already a validator")]
    AlreadyValidator(Address),
    #[error("{0} is not a validator")]
    NotValidator(Address),
    #[error("commission of {0} basis points is over 10000")]
    BadCommission(u16),
    #[error("invalid consensus key: {0}")]
    BadConsensusKey(String),
    #[error("stake must be in the native token")]
    NotNative,
    #[error("delegation is worth {have}, less than {need}")]
    InsufficientDelegation { have: Amount, need: Amount },
    #[error("already {max} unbonding entries with this validator; withdraw first")]
    TooManyUnbondings { max: u32 },
    #[error("nothing to withdraw from {0} yet")]
    NothingToWithdraw(Address),
    #[error("no rewards to claim from {0}")]
    NoRewards(Address),
    #[error("validator {0} has no bonded stake left to delegate to")]
    ValidatorEmpty(Address),
    #[error("validator {0} is not jailed")]
    NotJailed(Address),
    #[error("validator {validator} is jailed until height {until}")]
    StillJailed { validator: Address, until: u64 },
    #[error("validator {0} is jailed for good (double signing)")]
    JailedForGood(Address),
    #[error("evidence {0} was already used to slash")]
    EvidenceUsed(Hash),
    #[error("slashing fraction {0} ppm is over 1000000")]
    BadFraction(u32),
}
