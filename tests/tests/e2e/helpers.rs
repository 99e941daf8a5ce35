//! What the end-to-end tests of a single node share: dev keys, signing,
//! and JSON-RPC shorthands.

use serde_json::{json, Value};
use sou_genesis::KeyFile;
use sou_tests::TestNode;
use sou_types::{
    Address, Amount, ChainId, Keypair, Memo, Payload, SignedTransaction, Symbol, Transaction,
};

pub const FEE: u128 = 100; // the dev genesis's tx_fee

pub fn usdt() -> Symbol {
    Symbol::new("USDT").unwrap()
}

pub fn account_key(node: &TestNode, i: usize) -> Keypair {
    KeyFile::read(&node.home.join(format!("dev-accounts/account-{i}.json"))).unwrap()
}

pub fn issuer_key(node: &TestNode) -> Keypair {
    KeyFile::read(&node.home.join("keys/issuer.json")).unwrap()
}

pub fn nonce(node: &TestNode, a: &Address) -> u64 {
    node.ok("account_get", json!([a.to_string()]))["nonce"]
        .as_u64()
        .unwrap()
}

pub fn balance(node: &TestNode, a: &Address, asset: &str) -> u128 {
    node.ok("account_getBalance", json!([a.to_string(), asset]))["amount"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// `payload` signed by `key` with its next nonce, as the node reports it.
pub fn signed(node: &TestNode, key: &Keypair, payload: Payload) -> SignedTransaction {
    signed_at(node, key, nonce(node, &key.address()), payload)
}

/// `payload` signed by `key` with `nonce`.
pub fn signed_at(
    node: &TestNode,
    key: &Keypair,
    nonce: u64,
    payload: Payload,
) -> SignedTransaction {
    let height = node.ok("node_status", json!([]))["latestHeight"]
        .as_u64()
        .unwrap();
    sign(key, nonce, height + 500, payload)
}

/// `payload` on the dev chain, signed by `key`, with no RPC call.
pub fn sign(key: &Keypair, nonce: u64, expiry_height: u64, payload: Payload) -> SignedTransaction {
    Transaction {
        chain_id: ChainId::new("sou-devnet").unwrap(),
        sender: key.address(),
        nonce,
        max_fee: Amount(FEE),
        expiry_height,
        payload,
    }
    .sign(key)
}

pub fn raw(tx: &SignedTransaction) -> String {
    format!("0x{}", hex::encode(tx.encode()))
}

pub fn transfer(to: Address, amount: u128) -> Payload {
    Payload::Transfer {
        asset: usdt(),
        to,
        amount: Amount(amount),
        memo: Memo::empty(),
    }
}

pub fn send_wait(node: &TestNode, tx: &SignedTransaction) -> Value {
    node.ok("tx_sendAndWait", json!([raw(tx), 30_000]))
}

/// Waits (up to `secs`) until every hash in `hashes` is finalized; returns
/// the statuses.
pub fn wait_finalized(node: &TestNode, hashes: &[String], secs: u64) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let statuses = node.ok("tx_getStatuses", json!([hashes]));
        let statuses = statuses.as_array().unwrap().clone();
        if statuses.iter().all(|s| s["status"] == "finalized") {
            return statuses;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not all finalized within {secs} s: {statuses:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `http://` and the node's RPC address, for `--rpc` and `SOU_RPC`.
pub fn rpc_url(node: &TestNode) -> String {
    format!("http://{}", node.rpc)
}
