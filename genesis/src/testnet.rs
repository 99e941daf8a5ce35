//! Local testnets, generated deterministically from a seed: the same seed
//! gives the same keys, the same chain spec and so the same genesis hash.
//! The keys are derived from the seed and are public knowledge: never use a
//! testnet key for anything of value.

use sou_ledger::Params;
use sou_types::asset::NATIVE;
use sou_types::{Amount, ChainId, Keypair, Symbol};

use crate::spec::{AssetSpec, BalanceSpec, ChainSpec, MinterSpec, ValidatorSpec};

/// The dev stablecoin's symbol and decimals.
pub const STABLECOIN: &str = "USDT";
pub const STABLECOIN_DECIMALS: u8 = 6;
/// 2026-01-01T00:00:00Z: a fixed genesis time keeps the genesis hash a
/// function of the seed alone.
pub const DEV_GENESIS_TIME_MS: u64 = 1_767_225_600_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestnetOptions {
    pub chain_id: String,
    pub seed: u64,
    pub validators: usize,
    pub accounts: usize,
    /// Stablecoin given to each dev account, in whole units.
    pub account_usdt: u128,
    /// Native tokens given to each dev account, in whole units.
    pub account_sou: u128,
    /// Self-bonded stake of each validator, in whole native tokens.
    pub validator_stake_sou: u128,
    /// Blocks per epoch (`None`: the dev default).
    pub epoch_length_blocks: Option<u64>,
    /// See `Params::downtime_missed_proposals` (`None`: the dev default).
    pub downtime_missed_proposals: Option<u64>,
}

impl Default for TestnetOptions {
    fn default() -> Self {
        TestnetOptions {
            chain_id: "sou-devnet".into(),
            seed: 0,
            validators: 4,
            accounts: 10,
            account_usdt: 1_000_000,
            account_sou: 1_000,
            validator_stake_sou: 1_000_000,
            epoch_length_blocks: None,
            downtime_missed_proposals: None,
        }
    }
}

/// A generated testnet: its spec and every key in it.
#[derive(Debug)]
pub struct Testnet {
    pub spec: ChainSpec,
    /// (operator key, consensus key) of each validator.
    pub validators: Vec<(Keypair, Keypair)>,
    /// Funded dev accounts.
    pub accounts: Vec<Keypair>,
    /// Holds every role of the stablecoin and is its minter.
    pub issuer: Keypair,
}

fn whole(units: u128, decimals: u8) -> Amount {
    Amount(units.saturating_mul(10u128.pow(u32::from(decimals))))
}

/// Generates a testnet. Fails only if `chain_id` is not a valid chain id.
pub fn testnet(opts: &TestnetOptions) -> Result<Testnet, sou_types::Error> {
    let chain_id = ChainId::new(&opts.chain_id)?;
    let usdt = Symbol::new(STABLECOIN)?;
    let seed = opts.seed;
    let validators: Vec<(Keypair, Keypair)> = (0..opts.validators)
        .map(|i| {
            (
                Keypair::derive_insecure(seed, &format!("validator-{i}-operator")),
                Keypair::derive_insecure(seed, &format!("validator-{i}-consensus")),
            )
        })
        .collect();
    let accounts: Vec<Keypair> = (0..opts.accounts)
        .map(|i| Keypair::derive_insecure(seed, &format!("account-{i}")))
        .collect();
    let issuer = Keypair::derive_insecure(seed, "usdt-issuer");

    let mut balances = Vec::new();
    for a in &accounts {
        balances.push(BalanceSpec {
            address: a.address(),
            asset: usdt,
            amount: whole(opts.account_usdt, STABLECOIN_DECIMALS),
        });
        balances.push(BalanceSpec {
            address: a.address(),
            asset: NATIVE,
            amount: whole(opts.account_sou, crate::spec::NATIVE_DECIMALS),
        });
    }
    // Operators need the stablecoin to pay fees for staking transactions.
    for (op, _) in &validators {
        balances.push(BalanceSpec {
            address: op.address(),
            asset: usdt,
            amount: whole(1_000, STABLECOIN_DECIMALS),
        });
    }
    balances.push(BalanceSpec {
        address: issuer.address(),
        asset: usdt,
        amount: whole(1_000_000, STABLECOIN_DECIMALS),
    });

    let spec = ChainSpec {
        chain_id,
        genesis_time_ms: DEV_GENESIS_TIME_MS,
        params: Params {
            epoch_length_blocks: opts
                .epoch_length_blocks
                .unwrap_or(Params::dev(usdt).epoch_length_blocks),
            downtime_missed_proposals: opts
                .downtime_missed_proposals
                .unwrap_or(Params::dev(usdt).downtime_missed_proposals),
            ..Params::dev(usdt)
        },
        assets: vec![
            AssetSpec {
                symbol: NATIVE,
                name: "Sou".into(),
                decimals: crate::spec::NATIVE_DECIMALS,
                issuer: None,
                master_minter: None,
                pauser: None,
                freezer: None,
                minters: vec![],
            },
            AssetSpec {
                symbol: usdt,
                name: "Tether USD (dev)".into(),
                decimals: STABLECOIN_DECIMALS,
                issuer: Some(issuer.address()),
                master_minter: Some(issuer.address()),
                pauser: Some(issuer.address()),
                freezer: Some(issuer.address()),
                minters: vec![MinterSpec {
                    address: issuer.address(),
                    allowance: whole(1_000_000_000, STABLECOIN_DECIMALS),
                }],
            },
        ],
        balances,
        validators: validators
            .iter()
            .map(|(op, cons)| ValidatorSpec {
                operator: op.address(),
                consensus_key: cons.public(),
                stake: whole(opts.validator_stake_sou, crate::spec::NATIVE_DECIMALS),
                commission_bps: 500,
            })
            .collect(),
    };
    Ok(Testnet {
        spec,
        validators,
        accounts,
        issuer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn deterministic_and_valid() {
        let a = testnet(&TestnetOptions::default()).unwrap();
        let b = testnet(&TestnetOptions::default()).unwrap();
        assert_eq!(a.spec, b.spec);
        a.spec.validate().unwrap();
        assert_eq!(a.spec.validators.len(), 4);
        assert_eq!(a.accounts.len(), 10);
        let c = testnet(&TestnetOptions {
            seed: 1,
            ..Default::default()
        })
        .unwrap();
        assert_ne!(a.spec, c.spec);
    }

    #[test]
    fn json_round_trip() {
        let t = testnet(&TestnetOptions::default()).unwrap();
        let back = ChainSpec::from_json(&t.spec.to_json()).unwrap();
        assert_eq!(back, t.spec);
    }

    fn field_of(e: Error) -> (String, String) {
        match e {
            Error::Invalid { field, value, .. } => (field, value),
            Error::Parse { path, reason } => (path, reason),
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn errors_name_field_and_value() {
        let t = testnet(&TestnetOptions::default()).unwrap();
        let mut s = t.spec.clone();
        s.params.epoch_length_blocks = 0;
        assert_eq!(
            field_of(s.validate().unwrap_err()),
            ("params.epoch_length_blocks".into(), "0".into())
        );

        let mut s = t.spec.clone();
        s.validators[1].commission_bps = 10_001;
        assert_eq!(
            field_of(s.validate().unwrap_err()),
            ("validators[1].commission_bps".into(), "10001".into())
        );

        let mut s = t.spec.clone();
        s.balances[2].asset = Symbol::new("EUR").unwrap();
        assert_eq!(
            field_of(s.validate().unwrap_err()),
            ("balances[2].asset".into(), "EUR".into())
        );

        let mut s = t.spec.clone();
        s.validators[2].consensus_key = s.validators[0].consensus_key;
        assert_eq!(
            field_of(s.validate().unwrap_err()).0,
            "validators[2].consensus_key"
        );

        let mut s = t.spec.clone();
        s.params.slash_double_sign_ppm = 2_000_000;
        assert_eq!(
            field_of(s.validate().unwrap_err()).0,
            "params.slash_double_sign_ppm"
        );

        let mut s = t.spec.clone();
        s.params.fee_asset = Symbol::new("XYZ").unwrap();
        assert_eq!(
            field_of(s.validate().unwrap_err()),
            ("params.fee_asset".into(), "XYZ".into())
        );

        let mut s = t.spec.clone();
        s.assets[0].decimals = 6;
        assert_eq!(field_of(s.validate().unwrap_err()).0, "assets[0].decimals");

        // A malformed value is named by its JSON path.
        let json = t.spec.to_json().replacen(
            &t.spec.balances[2].address.to_string(),
            "sou1notanaddress",
            1,
        );
        let (path, reason) = field_of(ChainSpec::from_json(&json).unwrap_err());
        assert_eq!(path, "balances[2].address");
        assert!(reason.contains("sou1notanaddress"), "{reason}");

        let json = t
            .spec
            .to_json()
            .replacen("\"max_validators\"", "\"max_validatorz\"", 1);
        let (path, _) = field_of(ChainSpec::from_json(&json).unwrap_err());
        assert!(path.starts_with("params"), "{path}");
    }

    /// The spec's `params` object, parsed.
    fn params_json(spec: &ChainSpec) -> serde_json::Map<String, serde_json::Value> {
        let v: serde_json::Value = serde_json::from_str(&spec.to_json()).unwrap();
        v["params"].as_object().unwrap().clone()
    }

    /// A spec whose `params` object is `params`, as JSON text.
    fn with_params(spec: &ChainSpec, params: serde_json::Map<String, serde_json::Value>) -> String {
        let mut v: serde_json::Value = serde_json::from_str(&spec.to_json()).unwrap();
        v["params"] = serde_json::Value::Object(params);
        v.to_string()
    }

    #[test]
    fn amount_params_are_written_with_their_unit_and_old_names_still_load() {
        let t = testnet(&TestnetOptions::default()).unwrap();
        let p = &t.spec.params;
        let written = params_json(&t.spec);
        assert_eq!(
            written["tx_fee_base_units"],
            serde_json::json!(p.tx_fee.to_string())
        );
        assert_eq!(
            written["min_validator_stake_base_units"],
            serde_json::json!(p.min_validator_stake.to_string())
        );
        assert!(!written.contains_key("tx_fee"), "{written:?}");
        assert!(!written.contains_key("min_validator_stake"), "{written:?}");

        // A spec written before the rename loads to the same spec, and is
        // written back with the new names.
        let mut old = written.clone();
        for (new, legacy) in [
            ("tx_fee_base_units", "tx_fee"),
            ("min_validator_stake_base_units", "min_validator_stake"),
        ] {
            let v = old.remove(new).unwrap();
            old.insert(legacy.to_string(), v);
        }
        let back = ChainSpec::from_json(&with_params(&t.spec, old)).unwrap();
        assert_eq!(back, t.spec);
        assert_eq!(params_json(&back), written);

        // The old and the new name together are ambiguous: refused.
        let mut both = written;
        both.insert("tx_fee".into(), serde_json::json!("1"));
        let (path, reason) =
            field_of(ChainSpec::from_json(&with_params(&t.spec, both)).unwrap_err());
        assert!(path.starts_with("params"), "{path}");
        assert!(reason.contains("duplicate field"), "{reason}");
    }

    #[test]
    fn every_param_name_says_its_unit() {
        // STYLE.md: protocol parameters carry their unit in their name.
        // Counts name what they count; everything else ends with its unit.
        const UNITS: [&str; 4] = ["_base_units", "_bytes", "_blocks", "_ppm"];
        const COUNTS: [&str; 5] = [
            "max_block_txs",
            "max_validators",
            "max_batch_recipients",
            "max_unbonding_entries",
            "downtime_missed_proposals",
        ];
        let t = testnet(&TestnetOptions::default()).unwrap();
        for name in params_json(&t.spec).keys() {
            let ok = name == "fee_asset"
                || COUNTS.contains(&name.as_str())
                || UNITS.iter().any(|u| name.ends_with(u));
            assert!(ok, "params.{name} does not say its unit");
        }
    }
}
