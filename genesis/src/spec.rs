//! The chain spec file (`genesis.json`).
//!
//! ```json
//! {
//!   "chain_id": "sou-devnet",
//!   "genesis_time_ms": 1767225600000,
//!   "params": { "fee_asset": "USDT", "tx_fee_base_units": "100", ... },
//!   "assets": [
//!     { "symbol": "SOU", "name": "Sou", "decimals": 9 },
//!     { "symbol": "USDT", "name": "Tether USD", "decimals": 6,
//!       "issuer": "sou1...", "master_minter": "sou1...", "pauser": "sou1...",
//!       "freezer": "sou1...", "minters": [{ "address": "sou1...", "allowance": "1000000" }] }
//!   ],
//!   "balances": [{ "address": "sou1...", "asset": "USDT", "amount": "1000000000" }],
//!   "validators": [{ "operator": "sou1...", "consensus_key": "0x...", "stake": "1000000000000",
//!                    "commission_bps": 500 }]
//! }
//! ```
//! Amounts are strings of base units, so that no JSON parser rounds them.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sou_ledger::params::{BPS, PPM};
use sou_ledger::state::AssetRoles;
use sou_ledger::{GenesisAsset, GenesisState, GenesisValidator, Params};
use sou_types::amount::MAX_DECIMALS;
use sou_types::asset::NATIVE;
use sou_types::limits::{MAX_BATCH_RECIPIENTS, MAX_TX_BYTES};
use sou_types::{Address, Amount, ChainId, PublicKey, Symbol};

use crate::{Error, Result};

/// Decimals of the native token.
pub const NATIVE_DECIMALS: u8 = 9;
/// Smallest `max_tx_bytes` a chain may set: room for any simple transaction.
pub const MIN_TX_BYTES: u32 = 512;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSpec {
    pub chain_id: ChainId,
    /// Timestamp of the genesis block, milliseconds since the Unix epoch.
    pub genesis_time_ms: u64,
    pub params: Params,
    pub assets: Vec<AssetSpec>,
    #[serde(default)]
    pub balances: Vec<BalanceSpec>,
    pub validators: Vec<ValidatorSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetSpec {
    pub symbol: Symbol,
    pub name: String,
    pub decimals: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_minter: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pauser: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freezer: Option<Address>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub minters: Vec<MinterSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinterSpec {
    pub address: Address,
    pub allowance: Amount,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceSpec {
    pub address: Address,
    pub asset: Symbol,
    pub amount: Amount,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorSpec {
    /// The validator's account: it receives commission and signs staking
    /// transactions.
    pub operator: Address,
    /// The key it signs consensus messages with.
    pub consensus_key: PublicKey,
    /// Self-bonded stake in base units of the native token.
    pub stake: Amount,
    pub commission_bps: u16,
}

fn invalid(
    field: impl Into<String>,
    value: impl std::fmt::Display,
    reason: impl Into<String>,
) -> Error {
    Error::Invalid {
        field: field.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

impl ChainSpec {
    /// Parses a chain spec; a bad field is named by its path
    /// (`balances[3].address`).
    pub fn from_json(text: &str) -> Result<ChainSpec> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let spec: ChainSpec = serde_path_to_error::deserialize(de).map_err(|e| Error::Parse {
            path: e.path().to_string(),
            reason: e.inner().to_string(),
        })?;
        spec.validate()?;
        Ok(spec)
    }

    pub fn read(path: &Path) -> Result<ChainSpec> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| unreachable!("a chain spec always serialises: {e}"))
    }

    /// Every rule a chain spec must follow, each failure naming the field.
    pub fn validate(&self) -> Result<()> {
        let p = &self.params;
        let positive: [(&str, u64); 6] = [
            ("params.max_block_txs", u64::from(p.max_block_txs)),
            ("params.epoch_length_blocks", p.epoch_length_blocks),
            ("params.max_validators", u64::from(p.max_validators)),
            ("params.unbonding_period_blocks", p.unbonding_period_blocks),
            (
                "params.max_unbonding_entries",
                u64::from(p.max_unbonding_entries),
            ),
            ("params.max_tx_lifetime_blocks", p.max_tx_lifetime_blocks),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(invalid(field, v, "must be at least 1"));
            }
        }
        if p.max_tx_bytes < MIN_TX_BYTES || p.max_tx_bytes as usize > MAX_TX_BYTES {
            return Err(invalid(
                "params.max_tx_bytes",
                p.max_tx_bytes,
                format!("must be between {MIN_TX_BYTES} and {MAX_TX_BYTES}"),
            ));
        }
        if p.max_block_bytes < u64::from(p.max_tx_bytes) {
            return Err(invalid(
                "params.max_block_bytes",
                p.max_block_bytes,
                format!(
                    "must hold at least one transaction of max_tx_bytes ({})",
                    p.max_tx_bytes
                ),
            ));
        }
        if p.max_batch_recipients == 0 || p.max_batch_recipients as usize > MAX_BATCH_RECIPIENTS {
            return Err(invalid(
                "params.max_batch_recipients",
                p.max_batch_recipients,
                format!("must be between 1 and {MAX_BATCH_RECIPIENTS}"),
            ));
        }
        for (field, v) in [
            ("params.slash_double_sign_ppm", p.slash_double_sign_ppm),
            ("params.slash_downtime_ppm", p.slash_downtime_ppm),
        ] {
            if v > PPM {
                return Err(invalid(
                    field,
                    v,
                    format!("a fraction in parts per million is at most {PPM}"),
                ));
            }
        }

        let mut symbols = BTreeSet::new();
        for (i, a) in self.assets.iter().enumerate() {
            let f = |name: &str| format!("assets[{i}].{name}");
            if !symbols.insert(a.symbol) {
                return Err(invalid(f("symbol"), a.symbol, "listed twice"));
            }
            if a.decimals > MAX_DECIMALS {
                return Err(invalid(
                    f("decimals"),
                    a.decimals,
                    format!("at most {MAX_DECIMALS}"),
                ));
            }
            if a.name.is_empty() || a.name.len() > 64 {
                return Err(invalid(f("name"), format!("{:?}", a.name), "1 to 64 bytes"));
            }
            if a.symbol == NATIVE {
                if a.decimals != NATIVE_DECIMALS {
                    return Err(invalid(
                        f("decimals"),
                        a.decimals,
                        format!("the native token has {NATIVE_DECIMALS}"),
                    ));
                }
                let has_roles = a.issuer.is_some()
                    || a.master_minter.is_some()
                    || a.pauser.is_some()
                    || a.freezer.is_some()
                    || !a.minters.is_empty();
                if has_roles {
                    return Err(invalid(
                        f("symbol"),
                        a.symbol,
                        "the native token has no issuer, minters, pauser or freezer",
                    ));
                }
            }
            let mut minters = BTreeSet::new();
            for (j, m) in a.minters.iter().enumerate() {
                if !minters.insert(m.address) {
                    return Err(invalid(
                        format!("assets[{i}].minters[{j}].address"),
                        m.address,
                        "listed twice",
                    ));
                }
            }
        }
        if !symbols.contains(&NATIVE) {
            return Err(invalid(
                "assets",
                "[..]",
                "the native token SOU must be listed",
            ));
        }
        if !symbols.contains(&p.fee_asset) {
            return Err(invalid(
                "params.fee_asset",
                p.fee_asset,
                "not among the assets",
            ));
        }

        let mut supply: std::collections::BTreeMap<Symbol, Amount> = Default::default();
        let mut pairs = BTreeSet::new();
        for (i, b) in self.balances.iter().enumerate() {
            if !symbols.contains(&b.asset) {
                return Err(invalid(
                    format!("balances[{i}].asset"),
                    b.asset,
                    "not among the assets",
                ));
            }
            if b.amount.is_zero() {
                return Err(invalid(
                    format!("balances[{i}].amount"),
                    b.amount,
                    "must be greater than zero",
                ));
            }
            if !pairs.insert((b.address, b.asset)) {
                return Err(invalid(
                    format!("balances[{i}].address"),
                    b.address,
                    format!("has a second {} balance", b.asset),
                ));
            }
            let s = supply.entry(b.asset).or_default();
            *s = s.checked_add(b.amount).ok_or_else(|| {
                invalid(
                    format!("balances[{i}].amount"),
                    b.amount,
                    "total supply overflows",
                )
            })?;
        }

        if self.validators.is_empty() {
            return Err(invalid(
                "validators",
                "[]",
                "at least one validator is needed",
            ));
        }
        let mut operators = BTreeSet::new();
        let mut keys = BTreeSet::new();
        for (i, v) in self.validators.iter().enumerate() {
            let f = |name: &str| format!("validators[{i}].{name}");
            if !operators.insert(v.operator) {
                return Err(invalid(f("operator"), v.operator, "listed twice"));
            }
            if !keys.insert(v.consensus_key) {
                return Err(invalid(
                    f("consensus_key"),
                    v.consensus_key,
                    "used by another validator",
                ));
            }
            if let Err(e) = v.consensus_key.verifying_key() {
                return Err(invalid(f("consensus_key"), v.consensus_key, e.to_string()));
            }
            if v.commission_bps > BPS {
                return Err(invalid(
                    f("commission_bps"),
                    v.commission_bps,
                    format!("at most {BPS}"),
                ));
            }
            if v.stake < p.min_validator_stake || v.stake.is_zero() {
                return Err(invalid(
                    f("stake"),
                    v.stake,
                    format!(
                        "below params.min_validator_stake_base_units ({})",
                        p.min_validator_stake
                    ),
                ));
            }
            let s = supply.entry(NATIVE).or_default();
            *s = s
                .checked_add(v.stake)
                .ok_or_else(|| invalid(f("stake"), v.stake, "total supply overflows"))?;
        }
        Ok(())
    }

    /// The ledger's initial state.
    pub fn genesis_state(&self) -> GenesisState {
        GenesisState {
            chain_id: self.chain_id,
            genesis_time_ms: self.genesis_time_ms,
            params: self.params.clone(),
            assets: self
                .assets
                .iter()
                .map(|a| GenesisAsset {
                    symbol: a.symbol,
                    name: a.name.clone(),
                    decimals: a.decimals,
                    roles: AssetRoles {
                        issuer: a.issuer,
                        master_minter: a.master_minter,
                        pauser: a.pauser,
                        freezer: a.freezer,
                    },
                    minters: a.minters.iter().map(|m| (m.address, m.allowance)).collect(),
                })
                .collect(),
            balances: self
                .balances
                .iter()
                .map(|b| (b.address, b.asset, b.amount))
                .collect(),
            validators: self
                .validators
                .iter()
                .map(|v| GenesisValidator {
                    operator: v.operator,
                    consensus_key: v.consensus_key,
                    commission_bps: v.commission_bps,
                    stake: v.stake,
                })
                .collect(),
        }
    }
}
