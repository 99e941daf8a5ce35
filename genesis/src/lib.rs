//! Sou's chain spec: the genesis JSON file that defines a chain (its id,
//! assets and their roles, balances, validators, and every protocol
//! parameter), its validation, the ledger's initial state built from it, and
//! the deterministic generation of local testnets with their keys.
//!
//! It decides what a valid genesis is; it executes nothing (the ledger
//! builds the state) and starts nothing (the node does).

pub mod keyfile;
pub mod spec;
pub mod testnet;

pub use keyfile::KeyFile;
pub use spec::{AssetSpec, BalanceSpec, ChainSpec, MinterSpec, ValidatorSpec};
pub use testnet::{testnet, Testnet, TestnetOptions};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field of the chain spec has a bad value; `field` is its path.
    #[error("genesis field `{field}` = {value}: {reason}")]
    Invalid {
        field: String,
        value: String,
        reason: String,
    },
    #[error("could not parse the chain spec at `{path}`: {reason}")]
    Parse { path: String, reason: String },
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
