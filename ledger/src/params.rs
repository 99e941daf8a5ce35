//! Protocol parameters: every number the ledger's rules depend on, set in
//! genesis, with its unit in its name.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use sou_types::{Amount, Symbol};

/// Parts per million: the unit of slashing fractions.
pub const PPM: u32 = 1_000_000;
/// Basis points: the unit of commission rates.
pub const BPS: u16 = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The asset fees are paid in (the stablecoin).
    pub fee_asset: Symbol,
    /// Flat fee per transaction, in base units of `fee_asset`. Named
    /// `tx_fee` in specs written before the unit was in the name.
    #[serde(rename = "tx_fee_base_units", alias = "tx_fee")]
    pub tx_fee: Amount,
    /// Most transactions in one block.
    pub max_block_txs: u32,
    /// Most bytes of encoded transactions in one block.
    pub max_block_bytes: u64,
    /// Largest encoded transaction, in bytes (at most the wire limit).
    pub max_tx_bytes: u32,
    /// Most recipients of one batch transfer (at most the wire limit).
    pub max_batch_recipients: u32,
    /// Furthest ahead of the current height a transaction's expiry may be.
    pub max_tx_lifetime_blocks: u64,
    /// Blocks per epoch; the validator set is recomputed at each epoch's end.
    pub epoch_length_blocks: u64,
    /// Size of the validator set: the top N candidates by bonded stake.
    pub max_validators: u32,
    /// Least bonded stake, in base units of the native token, for a
    /// candidate to enter the validator set. Named `min_validator_stake` in
    /// specs written before the unit was in the name.
    #[serde(
        rename = "min_validator_stake_base_units",
        alias = "min_validator_stake"
    )]
    pub min_validator_stake: Amount,
    /// Blocks between unbonding and withdrawing; the stake stays slashable.
    pub unbonding_period_blocks: u64,
    /// Most pending unbonding entries one delegator may have per validator.
    pub max_unbonding_entries: u32,
    /// Fraction of stake slashed for double signing, in parts per million.
    pub slash_double_sign_ppm: u32,
    /// Fraction of stake slashed for downtime, in parts per million.
    pub slash_downtime_ppm: u32,
    /// How long a validator jailed for downtime stays jailed, in blocks.
    /// Double signing jails for good.
    pub downtime_jail_blocks: u64,
    /// Downtime: a validator of the set is jailed when no finalized block of
    /// the current epoch was proposed by it for as many blocks as it would
    /// take, at its share of the voting power, to propose this many (0: never).
    #[serde(default)]
    pub downtime_missed_proposals: u64,
}

impl Params {
    /// Defaults for a development chain whose fee asset is `fee_asset`.
    pub fn dev(fee_asset: Symbol) -> Params {
        Params {
            fee_asset,
            tx_fee: Amount(100), // 0.0001 of a 6-decimal stablecoin
            max_block_txs: 20_000,
            max_block_bytes: 8 * 1024 * 1024,
            max_tx_bytes: 16 * 1024,
            max_batch_recipients: 256,
            max_tx_lifetime_blocks: 100_000,
            epoch_length_blocks: 1_000,
            max_validators: 100,
            min_validator_stake: Amount(1_000_000_000), // 1 SOU
            unbonding_period_blocks: 10_000,
            max_unbonding_entries: 7,
            slash_double_sign_ppm: 50_000,
            slash_downtime_ppm: 100,
            downtime_jail_blocks: 1_000,
            downtime_missed_proposals: 100,
        }
    }
}
