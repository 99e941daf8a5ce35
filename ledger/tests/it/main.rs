//! The ledger's integration tests, in one binary: transaction kinds and
//! their failures, asset roles, staking, block rules, mempool admission,
//! properties, and crash durability.

mod blocks;
mod crash;
mod mempool;
mod properties;
mod roles;
mod staking;
mod support;
mod transactions;
