//! `sou init` and `sou keys`, run as real processes on real files and a
//! real RocksDB.

use sou_genesis::{testnet, ChainSpec, KeyFile, TestnetOptions};
use sou_ledger::Ledger;
use sou_tests::{sou_err, sou_ok};
use sou_types::Symbol;

fn arg(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn init_writes_a_dev_node_home_with_funded_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("node");
    let out = sou_ok(&[
        "init",
        "--home",
        arg(&home),
        "--accounts",
        "3",
        "--seed",
        "7",
    ]);
    assert!(out.contains("chain id      sou-devnet"), "{out}");
    for f in [
        "config.toml",
        "genesis.json",
        "keys/validator.json",
        "keys/operator.json",
        "dev-accounts/account-2.json",
    ] {
        assert!(home.join(f).exists(), "{f} missing");
    }
    // The genesis is the seed's, and the database holds it.
    let spec = ChainSpec::read(&home.join("genesis.json")).unwrap();
    let expected = testnet(&TestnetOptions {
        seed: 7,
        validators: 1,
        accounts: 3,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(spec, expected.spec);
    let ledger = Ledger::open(&home.join("data")).unwrap();
    assert_eq!(ledger.tip().height, 0);
    assert!(
        out.contains(&ledger.tip().hash.to_string()),
        "banner lacks the genesis hash"
    );
    let key = KeyFile::read(&home.join("dev-accounts/account-2.json")).unwrap();
    assert_eq!(key.address(), expected.accounts[2].address());
    let usdt = Symbol::new("USDT").unwrap();
    assert_eq!(
        ledger.account(&key.address()).unwrap().balance(&usdt).0,
        1_000_000 * 1_000_000
    );
    assert!(
        out.contains(&format!("{}  1000000 USDT", key.address())),
        "{out}"
    );

    // A second init of the same home is refused and changes nothing.
    drop(ledger);
    let err = sou_err(&["init", "--home", arg(&home)]);
    assert!(err.contains("already a node home"), "{err}");
}

#[test]
fn init_from_a_chain_spec_and_errors_that_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let net = testnet(&TestnetOptions::default()).unwrap();
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, net.spec.to_json()).unwrap();
    let key_path = dir.path().join("v0.json");
    KeyFile::write(&key_path, &net.validators[0].1).unwrap();
    let home = dir.path().join("n0");
    sou_ok(&[
        "init",
        "--home",
        arg(&home),
        "--genesis",
        arg(&spec_path),
        "--validator-key",
        arg(&key_path),
    ]);
    let written = KeyFile::read(&home.join("keys/validator.json")).unwrap();
    assert_eq!(written.public(), net.validators[0].1.public());
    assert_eq!(
        Ledger::open(&home.join("data"))
            .unwrap()
            .chain_id()
            .as_str(),
        "sou-devnet"
    );

    let mut bad = net.spec.clone();
    bad.params.unbonding_period_blocks = 0;
    std::fs::write(&spec_path, bad.to_json()).unwrap();
    let err = sou_err(&[
        "init",
        "--home",
        arg(&dir.path().join("n1")),
        "--genesis",
        arg(&spec_path),
    ]);
    assert!(
        err.contains("params.unbonding_period_blocks") && err.contains("= 0"),
        "{err}"
    );

    std::fs::write(
        &spec_path,
        net.spec.to_json().replace("\"USDT\"", "\"usdt\""),
    )
    .unwrap();
    let err = sou_err(&[
        "init",
        "--home",
        arg(&dir.path().join("n2")),
        "--genesis",
        arg(&spec_path),
    ]);
    assert!(err.contains("usdt"), "{err}");
}

#[test]
fn keys_new_and_show() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("k.json");
    let out = sou_ok(&["keys", "new", "--out", arg(&file)]);
    let addr = out
        .lines()
        .find_map(|l| l.strip_prefix("address:"))
        .unwrap()
        .trim()
        .to_string();
    assert!(addr.starts_with("sou1"));
    let shown = sou_ok(&["keys", "show", "--key", arg(&file), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["address"], addr);
    // Never overwrites a key; a missing or broken file is a clear error.
    assert!(sou_err(&["keys", "new", "--out", arg(&file)]).contains("exists"));
    assert!(
        sou_err(&["keys", "show", "--key", arg(&dir.path().join("nope.json"))])
            .contains("nope.json")
    );
    std::fs::write(&file, "{}").unwrap();
    assert!(sou_err(&["keys", "show", "--key", arg(&file)]).contains("missing field"));
}
