//! The OpenRPC document served by `rpc.discover`: every registered method
//! (a test checks the list against the module), with JSON Schema for each
//! parameter and result. Parameters are positional only
//! (`"paramStructure": "by-position"`).

use serde_json::{json, Value};

/// The notification method and payload of a subscription.
struct Notification {
    method: &'static str,
    result: &'static str,
}

struct Method {
    name: &'static str,
    summary: &'static str,
    /// (name, required, schema)
    params: Vec<(&'static str, bool, Value)>,
    result: Value,
    notification: Option<Notification>,
}

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn nullable(schema: Value) -> Value {
    let mut v = json!({});
    v["oneOf"] = Value::Array(vec![schema, json!({"type": "null"})]);
    v
}

fn array(items: Value) -> Value {
    let mut v = json!({ "type": "array" });
    v["items"] = items;
    v
}

fn integer() -> Value {
    json!({ "type": "integer", "minimum": 0 })
}

fn string() -> Value {
    json!({ "type": "string" })
}

fn boolean() -> Value {
    json!({ "type": "boolean" })
}

/// A subscription id as jsonrpsee hands it out.
fn subscription_id() -> Value {
    json!({ "oneOf": [{"type": "integer"}, {"type": "string"}] })
}

fn method(
    name: &'static str,
    summary: &'static str,
    params: Vec<(&'static str, bool, Value)>,
    result: Value,
) -> Method {
    Method {
        name,
        summary,
        params,
        result,
        notification: None,
    }
}

fn methods() -> Vec<Method> {
    let block_number = json!({
        "oneOf": [
            {"type": "integer", "minimum": 0},
            {"type": "string", "enum": ["latest", "finalized"]}
        ]
    });
    vec![
        method("node_status", "Chain id, node version, latest and finalized height and hash, syncing flag, peer count.", vec![], r("NodeStatus")),
        method("chain_getParams", "The chain's protocol parameters.", vec![], r("Params")),
        method("chain_getBlockByNumber", "A block by height, or \"latest\" / \"finalized\"; null if there is none.", vec![("number", true, block_number), ("fullTransactions", false, boolean())], nullable(r("Block"))),
        method("chain_getBlockByHash", "A block by its hash; null if unknown.", vec![("hash", true, r("Hash")), ("fullTransactions", false, boolean())], nullable(r("Block"))),
        method("chain_getBlocks", "Up to `limit` block headers (at most max_page_len) from `fromHeight` upward, in height order, stopping at the tip.", vec![("fromHeight", true, integer()), ("limit", true, integer())], array(r("BlockHeader"))),
        method("chain_getValidators", "The validator set in force at a height (default: the next block).", vec![("height", false, integer())], r("ValidatorSet")),
        method("account_get", "Nonce, every asset balance, frozen assets and stake of an address.", vec![("address", true, r("Address"))], r("Account")),
        method("account_getBalance", "One balance: the amount as a decimal string in base units, the asset's decimals and symbol.", vec![("address", true, r("Address")), ("asset", true, r("Symbol"))], r("Balance")),
        method("account_getTransactions", "Finalized transactions of an address, newest first, optionally before a transaction hash.", vec![("address", true, r("Address")), ("before", false, nullable(r("Hash"))), ("limit", false, integer())], array(r("Transaction"))),
        method("asset_get", "An asset: supply, decimals, roles, paused; null if unknown.", vec![("symbol", true, r("Symbol"))], nullable(r("Asset"))),
        method("asset_list", "Every asset.", vec![], array(r("Asset"))),
        method("tx_send", "Admits a signed transaction (0x-hex borsh); returns its hash or the reason it was rejected.", vec![("raw", true, r("RawTransaction"))], r("Hash")),
        method("tx_sendBatch", "Admits many signed transactions at once (at most max_batch_len); returns a hash or an error per transaction, in order.", vec![("raw", true, array(r("RawTransaction")))], array(r("SendResult"))),
        method("tx_sendAndWait", "Admits a transaction and returns its receipt once finalized (timeoutMs at most max_wait_ms, default 30000).", vec![("raw", true, r("RawTransaction")), ("timeoutMs", false, integer())], r("Receipt")),
        method("tx_get", "A transaction, finalized (with its receipt) or pending; null if unknown.", vec![("hash", true, r("Hash"))], nullable(r("Transaction"))),
        method("tx_getReceipt", "The receipt of a finalized transaction (null while pending or unknown).", vec![("hash", true, r("Hash"))], nullable(r("Receipt"))),
        method("tx_getStatuses", "pending, finalized (with height), failed (with reason) or unknown, per hash (at most max_page_len hashes).", vec![("hashes", true, array(r("Hash")))], array(r("Status"))),
        Method {
            notification: Some(Notification { method: "chain_finalized", result: "BlockHeader" }),
            ..method("chain_subscribeFinalized", "WebSocket: every finalized block header after the subscription, in order, as chain_finalized notifications.", vec![], subscription_id())
        },
        method("chain_unsubscribeFinalized", "WebSocket: ends a chain_subscribeFinalized subscription.", vec![("subscription", true, subscription_id())], boolean()),
        Method {
            notification: Some(Notification { method: "tx_status", result: "Status" }),
            ..method("tx_subscribeStatus", "WebSocket: the status of each given transaction (at most max_page_len, more is refused with -32005) now and on every change, as tx_status notifications, until all are finalized or failed.", vec![("hashes", true, array(r("Hash")))], subscription_id())
        },
        method("tx_unsubscribeStatus", "WebSocket: ends a tx_subscribeStatus subscription.", vec![("subscription", true, subscription_id())], boolean()),
        method("rpc.discover", "This document (OpenRPC).", vec![], json!({"type": "object"})),
    ]
}

fn object(props: Value, required: &[&str]) -> Value {
    let mut v = json!({ "type": "object", "required": required });
    v["properties"] = props;
    v
}

fn schemas() -> Value {
    let hash = json!({"type": "string", "pattern": "^0x[0-9a-f]{64}$"});
    let amount = json!({"type": "string", "pattern": "^[0-9]+$", "description": "base units, as a decimal string"});
    let address = json!({"type": "string", "pattern": "^sou1[02-9ac-hj-np-z]+$"});
    let status_enum =
        json!({"type": "string", "enum": ["pending", "finalized", "failed", "unknown"]});
    let header_props = json!({
        "height": integer(), "hash": r("Hash"), "parentHash": r("Hash"), "proposer": r("Address"),
        "timestampMs": integer(), "txRoot": r("Hash"), "stateRoot": r("Hash"), "evidenceRoot": r("Hash"),
        "chainId": string(), "txCount": integer(),
    });
    let mut block_props = header_props.clone();
    block_props["transactions"] = array(json!({"oneOf": [r("Hash"), r("Transaction")]}));
    block_props["evidence"] = array(object(
        json!({"epoch": integer(), "offender": r("PublicKey"), "id": r("Hash")}),
        &["epoch", "offender", "id"],
    ));
    let header_required = [
        "height",
        "hash",
        "parentHash",
        "proposer",
        "timestampMs",
        "txRoot",
        "stateRoot",
        "evidenceRoot",
        "chainId",
        "txCount",
    ];
    let mut block_required = header_required.to_vec();
    block_required.extend(["transactions", "evidence"]);
    let balance_props = json!({
        "address": r("Address"), "asset": r("Symbol"), "symbol": r("Symbol"), "amount": r("Amount"),
        "decimals": integer(), "display": {"type": "string", "description": "the amount in whole units"},
    });
    json!({
        "Hash": hash,
        "PublicKey": hash,
        "Signature": {"type": "string", "pattern": "^0x[0-9a-f]{128}$"},
        "Address": address,
        "Amount": amount,
        "Symbol": {"type": "string", "pattern": "^[A-Z][A-Z0-9]{0,7}$"},
        "RawTransaction": {"type": "string", "pattern": "^(0x)?([0-9a-fA-F]{2})*$", "description": "a signed transaction, borsh-encoded, in hex"},
        "NodeStatus": object(json!({
            "chainId": string(), "nodeVersion": string(), "latestHeight": integer(), "latestHash": r("Hash"),
            "finalizedHeight": integer(), "finalizedHash": r("Hash"), "syncing": boolean(),
            "peerCount": integer(), "view": integer(), "isValidator": boolean(),
        }), &["chainId", "nodeVersion", "latestHeight", "latestHash", "finalizedHeight", "finalizedHash", "syncing", "peerCount"]),
        "Params": object(json!({
            "chainId": string(), "feeAsset": r("Symbol"), "txFee": r("Amount"), "maxBlockTxs": integer(),
            "maxBlockBytes": integer(), "maxTxBytes": integer(), "maxTxLifetimeBlocks": integer(),
            "epochLengthBlocks": integer(),
        }), &["chainId", "feeAsset", "txFee"]),
        "BlockHeader": object(header_props, &header_required),
        "Block": object(block_props, &block_required),
        "Transaction": object(json!({
            "hash": r("Hash"), "chainId": string(), "sender": r("Address"), "nonce": integer(),
            "maxFee": r("Amount"), "expiryHeight": integer(), "kind": string(),
            "payload": {"type": "object", "description": "the fields of the transaction's kind, camelCase"},
            "signature": r("Signature"), "blockHeight": integer(), "index": integer(),
            "receipt": r("Receipt"), "pending": boolean(),
        }), &["hash", "chainId", "sender", "nonce", "maxFee", "expiryHeight", "kind", "payload", "signature"]),
        "Receipt": object(json!({
            "txHash": r("Hash"), "blockHeight": integer(), "index": integer(), "fee": r("Amount"),
            "status": {"type": "string", "enum": ["success", "failed"]}, "reason": nullable(string()),
        }), &["txHash", "blockHeight", "index", "fee", "status", "reason"]),
        "Status": object(json!({
            "hash": r("Hash"), "status": status_enum, "blockHeight": integer(), "reason": string(),
        }), &["hash", "status"]),
        "Balance": object(balance_props, &["address", "asset", "symbol", "amount", "decimals", "display"]),
        "Account": object(json!({
            "address": r("Address"), "nonce": integer(),
            "balances": array(object(json!({
                "asset": r("Symbol"), "symbol": r("Symbol"), "amount": r("Amount"), "decimals": integer(), "display": string(),
            }), &["asset", "symbol", "amount", "decimals", "display"])),
            "frozen": array(r("Symbol")),
            "stake": {"type": "object"},
        }), &["address", "nonce", "balances", "frozen", "stake"]),
        "Asset": object(json!({
            "symbol": r("Symbol"), "name": string(), "decimals": integer(), "supply": r("Amount"),
            "paused": boolean(), "issuer": r("Address"), "masterMinter": r("Address"),
            "pauser": r("Address"), "freezer": r("Address"),
            "minters": array(object(json!({"address": r("Address"), "allowance": r("Amount")}), &["address", "allowance"])),
        }), &["symbol", "name", "decimals", "supply", "paused"]),
        "ValidatorSet": object(json!({
            "height": integer(), "epoch": integer(), "totalPower": r("Amount"),
            "validators": array(object(json!({
                "operator": r("Address"), "consensusKey": r("PublicKey"), "power": r("Amount"),
                "tokens": nullable(r("Amount")), "jailedUntil": nullable(integer()),
            }), &["operator", "consensusKey", "power"])),
        }), &["height", "epoch", "validators", "totalPower"]),
        "SendResult": {"oneOf": [
            object(json!({"hash": r("Hash")}), &["hash"]),
            object(json!({"error": object(json!({"code": {"type": "integer"}, "message": string()}), &["code", "message"])}), &["error"]),
        ]},
    })
}

/// The names of every method the document describes.
#[cfg(test)]
pub fn method_names() -> Vec<&'static str> {
    methods().iter().map(|m| m.name).collect()
}

pub fn document() -> Value {
    let methods: Vec<Value> = methods()
        .into_iter()
        .map(|m| {
            let mut v = json!({
                "name": m.name,
                "summary": m.summary,
                "paramStructure": "by-position",
                "params": m.params.into_iter().map(|(name, required, schema)| {
                    json!({"name": name, "required": required, "schema": schema})
                }).collect::<Vec<_>>(),
                "result": {"name": "result", "schema": m.result},
            });
            if let Some(n) = m.notification {
                v["x-notification"] = json!({"method": n.method, "result": {"name": "result", "schema": r(n.result)}});
            }
            v
        })
        .collect();
    json!({
        "openrpc": "1.2.6",
        "info": {"title": "Sou JSON-RPC", "version": env!("CARGO_PKG_VERSION")},
        "methods": methods,
        "components": {"schemas": schemas()},
    })
}
