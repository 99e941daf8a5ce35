//! The ledger's integration tests, in one binary: transaction kinds and
//! their failures, block rules, mempool admission, properties, and crash
//! durability.

mod blocks;
mod crash;
mod mempool;
mod properties;
mod staking;
mod support;
mod transactions;
