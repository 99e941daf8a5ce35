//! Sou's shared vocabulary: blake3 hashes, ed25519 keys and signatures,
//! bech32m addresses, integer amounts, asset symbols, and the transaction and
//! block wire types with their borsh encoding and domain-separated signing.
//!
//! Every other crate speaks in these types, so this crate depends on no other
//! crate of ours and holds no policy: it says what bytes mean, never whether a
//! transaction is allowed (that is the ledger's job) or how blocks are agreed
//! on (the consensus engine's).
//!
//! # Design
//! - An [`Address`] is the account's ed25519 public key, shown as bech32m with
//!   the `sou` prefix, so a typo is caught by the checksum and a transaction
//!   needs no separate public key field.
//! - A transaction is signed over its [`TxHash`], a blake3 hash in the
//!   transaction's own derive-key context, so a signature can never be
//!   replayed as a signature over a block or a vote.
//! - Decoding is bounded: [`codec::decode_bounded`] rejects input over the
//!   limit before borsh allocates anything, and every variable-length field
//!   has its own hard cap in [`limits`].

pub mod address;
pub mod amount;
pub mod asset;
pub mod block;
pub mod codec;
pub mod crypto;
pub mod hash;
pub mod limits;
pub mod tx;

pub use address::Address;
pub use amount::Amount;
pub use asset::Symbol;
pub use block::{Block, BlockHash, BlockHeader, CompactBlock, Misbehaviour};
pub use crypto::{Keypair, PublicKey, Signature};
pub use hash::Hash;
pub use tx::{ChainId, Memo, Payload, Payout, SignedTransaction, Transaction, TxHash};

/// Everything that can go wrong when parsing or decoding Sou's types.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("input is {len} bytes, over the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("malformed encoding: {0}")]
    Decode(String),
    #[error("invalid address {input:?}: {reason}")]
    Address { input: String, reason: String },
    #[error("invalid amount {input:?}: {reason}")]
    Amount { input: String, reason: String },
    #[error("invalid asset symbol {input:?}: symbols are 1 to 8 characters of A-Z and 0-9")]
    Symbol { input: String },
    #[error("invalid chain id {input:?}: 1 to 32 characters of a-z, 0-9 and '-'")]
    ChainId { input: String },
    #[error("memo is {len} bytes, over the limit of {max} bytes")]
    MemoTooLong { len: usize, max: usize },
    #[error("invalid hex {input:?}: {reason}")]
    Hex { input: String, reason: String },
    #[error("invalid public key: {0}")]
    PublicKey(String),
    #[error("invalid signature")]
    BadSignature,
    #[error("could not read randomness from the operating system: {0}")]
    Randomness(String),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
