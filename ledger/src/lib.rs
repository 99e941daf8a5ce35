//! Sou's ledger: accounts, assets (the native staking token and issued
//! stablecoins with their controls), transaction execution, fees, staking
//! and slashing, the mempool's admission rules, and RocksDB storage with a
//! state root whose cost follows what a block changes.
//!
//! It must stay deterministic and panic-free: no clocks, no randomness, no
//! map iteration order in results, checked arithmetic everywhere, errors as
//! values. It knows nothing of votes, peers or sockets, and runs no async code.
//!
//! # Design
//! - [`exec::BlockExecutor`] runs a block over a [`cache::StateCache`] of the
//!   committed state and produces an [`exec::ExecutedBlock`]: receipts, state
//!   writes and the new [`lthash::LtHash`]. [`store::Store::commit`] writes
//!   all of it, the block and its indexes in one fsynced RocksDB batch.
//! - The rules for transactions in a block (inclusion checks, then fee and
//!   nonce, then the payload that may fail) are in [`exec`].
//! - [`ledger::Ledger`] ties store and executor together for the node.

pub mod assets;
pub mod cache;
pub mod error;
pub mod exec;
pub mod ledger;
pub mod lthash;
pub mod mempool;
pub mod params;
pub mod receipt;
pub mod staking;
pub mod state;
pub mod store;
pub mod writes;

pub use error::{Error, InvalidTx, Result, TxError};
pub use exec::{
    Applied, BlockContext, BlockExecutor, Candidate, ExecutedBlock, OnInvalid, MAX_BLOCK_EVIDENCE,
};
pub use ledger::{Checks, GenesisAsset, GenesisState, GenesisValidator, Ledger};
pub use mempool::{
    precheck, verify_unless_known, AdmitError, Mempool, MempoolConfig, Prechecked, RecentlyVerified,
};
pub use params::Params;
pub use receipt::{Receipt, TxStatus};
pub use store::{BlockSummary, HistoryCursor, StateReader, Store, Tip, TxRecord};
pub use writes::StateWrites;
