//! The OpenRPC document served by `rpc.discover`.

use serde_json::{json, Value};

/// (name, summary, params as (name, schema type, required), result description)
type Entry = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str, bool)],
    &'static str,
);

pub const METHODS: &[Entry] = &[
    ("node_status", "Chain id, node version, latest and finalized height and hash, syncing flag, peer count.", &[], "NodeStatus"),
    ("chain_getParams", "The chain's protocol parameters.", &[], "Params"),
    ("chain_getBlockByNumber", "A block by height, or \"latest\" / \"finalized\".", &[("number", "integer|string", true), ("fullTransactions", "boolean", false)], "Block or null"),
    ("chain_getBlockByHash", "A block by its hash.", &[("hash", "string", true), ("fullTransactions", "boolean", false)], "Block or null"),
    ("chain_getBlocks", "Up to `limit` block headers from `fromHeight` upward (explorer lists).", &[("fromHeight", "integer", true), ("limit", "integer", true)], "[BlockHeader]"),
    ("chain_getValidators", "The validator set in force at a height (default: the next block).", &[("height", "integer", false)], "ValidatorSet"),
    ("account_get", "Nonce, every asset balance, frozen assets and stake of an address.", &[("address", "string", true)], "Account"),
    ("account_getBalance", "One balance in base units, with the asset's decimals and symbol.", &[("address", "string", true), ("asset", "string", true)], "Balance"),
    ("account_getTransactions", "Transactions of an address, newest first, optionally before a transaction hash.", &[("address", "string", true), ("before", "string", false), ("limit", "integer", false)], "[Transaction]"),
    ("asset_get", "An asset: supply, decimals, roles, paused.", &[("symbol", "string", true)], "Asset or null"),
    ("asset_list", "Every asset.", &[], "[Asset]"),
    ("tx_send", "Admits a signed transaction (0x-hex borsh); returns its hash or the reason it was rejected.", &[("raw", "string", true)], "hash"),
    ("tx_sendBatch", "Admits many signed transactions at once; returns a hash or an error per transaction.", &[("raw", "[string]", true)], "[{hash}|{error}]"),
    ("tx_sendAndWait", "Admits a transaction and returns its receipt once finalized.", &[("raw", "string", true), ("timeoutMs", "integer", false)], "Receipt"),
    ("tx_get", "A transaction, finalized or pending.", &[("hash", "string", true)], "Transaction or null"),
    ("tx_getReceipt", "The receipt of a finalized transaction (null while pending).", &[("hash", "string", true)], "Receipt or null"),
    ("tx_getStatuses", "pending, finalized (with height), failed (with reason) or unknown, per hash.", &[("hashes", "[string]", true)], "[Status]"),
    ("chain_subscribeFinalized", "WebSocket: every finalized block header, in order.", &[], "subscription of BlockHeader"),
    ("tx_subscribeStatus", "WebSocket: status changes of the given transactions until all are final.", &[("hashes", "[string]", true)], "subscription of Status"),
    ("rpc.discover", "This document.", &[], "OpenRPC document"),
];

pub fn document() -> Value {
    let methods: Vec<Value> = METHODS
        .iter()
        .map(|(name, summary, params, result)| {
            json!({
                "name": name,
                "summary": summary,
                "params": params.iter().map(|(n, t, req)| json!({"name": n, "required": req, "schema": {"type": t}})).collect::<Vec<_>>(),
                "result": {"name": "result", "schema": {"description": result}},
            })
        })
        .collect();
    json!({
        "openrpc": "1.2.6",
        "info": {"title": "Sou JSON-RPC", "version": env!("CARGO_PKG_VERSION")},
        "methods": methods,
    })
}
