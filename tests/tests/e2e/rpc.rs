//! JSON-RPC of a running node over real HTTP and WebSocket: status
//! subscriptions, block ranges, batch submission, limits and CORS.

use jsonrpsee::core::client::{Error as ClientError, SubscriptionClientT};
use jsonrpsee::ws_client::{WsClient, WsClientBuilder};
use serde_json::{json, Value};
use sou_tests::TestNode;

use crate::helpers::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn ws(node: &TestNode) -> WsClient {
    WsClientBuilder::default()
        .build(format!("ws://{}", node.rpc))
        .await
        .unwrap()
}

/// The JSON-RPC error code and message of a refused call or subscription.
fn code(e: &ClientError) -> (i32, String) {
    match e {
        ClientError::Call(obj) => (obj.code(), obj.message().to_string()),
        other => panic!("not a JSON-RPC error: {other:?}"),
    }
}

/// The next notification of `sub`, before `deadline`.
async fn next(
    sub: &mut jsonrpsee::core::client::Subscription<Value>,
    deadline: tokio::time::Instant,
) -> Value {
    match tokio::time::timeout_at(deadline, sub.next()).await {
        Ok(Some(Ok(v))) => v,
        other => panic!("no notification in time: {other:?}"),
    }
}

fn set_rpc(cfg: &mut toml::Table, key: &str, value: i64) {
    let mut rpc = cfg["rpc"].as_table().cloned().unwrap();
    rpc.insert(key.into(), value.into());
    cfg.insert("rpc".into(), rpc.into());
}

#[test]
fn tx_subscribe_status_sees_pending_then_finalized_over_websocket() {
    let mut node = TestNode::init(3, |cfg| {
        set_rpc(cfg, "max_subscriptions_per_connection", 2);
    });
    node.start();
    let user = account_key(&node, 0);
    let to = account_key(&node, 1).address();
    let n = nonce(&node, &user.address());
    // The second cannot be final before the first: it stays pending until
    // the first is sent.
    let first = signed_at(&node, &user, n, transfer(to, 10));
    let second = signed_at(&node, &user, n + 1, transfer(to, 20));
    let (h1, h2) = (first.hash().to_string(), second.hash().to_string());

    let seen: Vec<Value> = runtime().block_on(async {
        let client = ws(&node).await;
        let mut sub = client
            .subscribe::<Value, _>(
                "tx_subscribeStatus",
                jsonrpsee::rpc_params![[&h1, &h2]],
                "tx_unsubscribeStatus",
            )
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut seen = Vec::new();
        // Both unknown at first, in the order asked.
        seen.push(next(&mut sub, deadline).await);
        seen.push(next(&mut sub, deadline).await);
        assert_eq!(seen[0]["hash"], h1.as_str());
        assert_eq!(seen[1]["hash"], h2.as_str());
        node.ok("tx_send", json!([raw(&second)]));
        let pending = next(&mut sub, deadline).await;
        assert_eq!(pending, json!({"hash": h2, "status": "pending"}));
        seen.push(pending);
        node.ok("tx_send", json!([raw(&first)]));
        let last = |seen: &[Value], h: &str| {
            seen.iter()
                .rev()
                .find(|v| v["hash"] == h)
                .map(|v| v["status"].clone())
        };
        while last(&seen, &h1) != Some(json!("finalized"))
            || last(&seen, &h2) != Some(json!("finalized"))
        {
            seen.push(next(&mut sub, deadline).await);
        }
        seen
    });
    let statuses = |h: &str| -> Vec<&str> {
        seen.iter()
            .filter(|v| v["hash"] == h)
            .map(|v| v["status"].as_str().unwrap())
            .collect()
    };
    assert_eq!(
        statuses(&h2),
        ["unknown", "pending", "finalized"],
        "{seen:?}"
    );
    let s1 = statuses(&h1);
    assert_eq!(s1.first(), Some(&"unknown"), "{seen:?}");
    assert_eq!(s1.last(), Some(&"finalized"), "{seen:?}");
    assert!(s1.len() <= 3, "repeated statuses: {seen:?}");
    // The finalized notices carry the heights the receipts have.
    for v in seen.iter().filter(|v| v["status"] == "finalized") {
        let r = node.ok("tx_getReceipt", json!([v["hash"]]));
        assert_eq!(r["blockHeight"], v["blockHeight"], "{v}");
    }
}

#[test]
fn subscription_limits_are_refused_with_their_codes() {
    let mut node = TestNode::init(1, |cfg| {
        set_rpc(cfg, "max_subscriptions_per_connection", 2);
        set_rpc(cfg, "max_page_len", 5);
    });
    node.start();
    runtime().block_on(async {
        let client = ws(&node).await;
        // More hashes than max_page_len: refused, not cut short.
        let hashes: Vec<String> = (0..6u8)
            .map(|i| format!("0x{}", hex::encode([i; 32])))
            .collect();
        let e = client
            .subscribe::<Value, _>(
                "tx_subscribeStatus",
                jsonrpsee::rpc_params![hashes.clone()],
                "tx_unsubscribeStatus",
            )
            .await
            .unwrap_err();
        assert_eq!(
            code(&e),
            (-32005, "6 hashes, over the limit of 5".to_string())
        );
        // Five are fine.
        let mut sub = client
            .subscribe::<Value, _>(
                "tx_subscribeStatus",
                jsonrpsee::rpc_params![hashes[..5].to_vec()],
                "tx_unsubscribeStatus",
            )
            .await
            .unwrap();
        let first = tokio::time::timeout(std::time::Duration::from_secs(10), sub.next())
            .await
            .unwrap();
        assert_eq!(first.unwrap().unwrap()["status"], "unknown");
        // Two subscriptions per connection, then -32006.
        let _second = client
            .subscribe::<Value, _>(
                "chain_subscribeFinalized",
                jsonrpsee::rpc_params![],
                "chain_unsubscribeFinalized",
            )
            .await
            .unwrap();
        let e = client
            .subscribe::<Value, _>(
                "chain_subscribeFinalized",
                jsonrpsee::rpc_params![],
                "chain_unsubscribeFinalized",
            )
            .await
            .unwrap_err();
        assert_eq!(code(&e).0, -32006, "{e:?}");
        // A new connection has its own allowance.
        let other = ws(&node).await;
        other
            .subscribe::<Value, _>(
                "chain_subscribeFinalized",
                jsonrpsee::rpc_params![],
                "chain_unsubscribeFinalized",
            )
            .await
            .unwrap();
    });
    // tx_getStatuses has the same limit, as a plain call.
    let hashes: Vec<String> = (0..6u8)
        .map(|i| format!("0x{}", hex::encode([i; 32])))
        .collect();
    assert_eq!(
        node.call("tx_getStatuses", json!([hashes])).unwrap_err().0,
        -32005
    );
}

#[test]
fn chain_get_blocks_returns_the_requested_range_in_order() {
    let mut node = TestNode::init(1, |cfg| set_rpc(cfg, "max_page_len", 4));
    node.start();
    node.wait_height(8, 60);
    let blocks = node.ok("chain_getBlocks", json!([3, 3]));
    let blocks = blocks.as_array().unwrap();
    let heights: Vec<u64> = blocks
        .iter()
        .map(|b| b["height"].as_u64().unwrap())
        .collect();
    assert_eq!(heights, [3, 4, 5]);
    for b in blocks {
        let full = node.ok("chain_getBlockByNumber", json!([b["height"], false]));
        for field in ["hash", "parentHash", "stateRoot", "txRoot", "timestampMs"] {
            assert_eq!(b[field], full[field], "{field} at {}", b["height"]);
        }
        assert_eq!(
            b["txCount"].as_u64().unwrap() as usize,
            full["transactions"].as_array().unwrap().len()
        );
    }
    for pair in blocks.windows(2) {
        assert_eq!(pair[1]["parentHash"], pair[0]["hash"]);
    }
    // A longer page is cut to max_page_len; past the tip it stops.
    let page = node.ok("chain_getBlocks", json!([1, 50]));
    let heights: Vec<u64> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["height"].as_u64().unwrap())
        .collect();
    assert_eq!(heights, [1, 2, 3, 4]);
    let tip = node.height().unwrap();
    let end = node.ok("chain_getBlocks", json!([tip, 4]));
    let end = end.as_array().unwrap();
    assert!(!end.is_empty() && end.len() <= 4);
    assert_eq!(end[0]["height"], tip);
    let far = node.ok("chain_getBlocks", json!([tip + 1_000_000, 4]));
    assert_eq!(far, json!([]));
    // Parameters are positional.
    assert_eq!(
        node.call("chain_getBlocks", json!({"fromHeight": 1, "limit": 2}))
            .unwrap_err()
            .0,
        -32602
    );
}

#[test]
fn tx_send_batch_admits_each_and_says_why_for_the_others() {
    let mut node = TestNode::init(3, |cfg| set_rpc(cfg, "max_batch_len", 8));
    node.start();
    let user = account_key(&node, 0);
    let to = account_key(&node, 1).address();
    let to_before = balance(&node, &to, "USDT");
    let n = nonce(&node, &user.address());
    let good: Vec<_> = (0..3)
        .map(|i| signed_at(&node, &user, n + i, transfer(to, 100 + u128::from(i))))
        .collect();
    let mut forged = signed_at(&node, &user, n + 3, transfer(to, 1));
    forged.signature.0[9] ^= 1;
    let mut raws: Vec<String> = good.iter().map(raw).collect();
    raws.push("0x0102".into());
    raws.push(raw(&forged));
    raws.push(raw(&good[0]));
    let out = node.ok("tx_sendBatch", json!([raws]));
    let out = out.as_array().unwrap();
    assert_eq!(out.len(), 6, "{out:?}");
    for (r, tx) in out.iter().zip(&good) {
        assert_eq!(r, &json!({"hash": tx.hash().to_string()}));
    }
    assert_eq!(out[3]["error"]["code"], -32602, "{}", out[3]);
    assert_eq!(out[4]["error"]["code"], -32003, "{}", out[4]);
    assert!(
        out[4]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid signature"),
        "{}",
        out[4]
    );
    assert_eq!(out[5]["error"]["code"], -32003, "{}", out[5]);
    assert!(
        out[5]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already in the mempool"),
        "{}",
        out[5]
    );
    // The admitted three finalize, in nonce order.
    let hashes: Vec<String> = good.iter().map(|t| t.hash().to_string()).collect();
    wait_finalized(&node, &hashes, 30);
    assert_eq!(nonce(&node, &user.address()), n + 3);
    assert_eq!(balance(&node, &to, "USDT"), to_before + 100 + 101 + 102);
    assert_eq!(
        node.ok("tx_getStatuses", json!([[forged.hash().to_string()]]))[0]["status"],
        "unknown"
    );
    // More than max_batch_len transactions: refused as a whole.
    let many: Vec<String> = (0..9).map(|_| raw(&forged)).collect();
    let e = node.call("tx_sendBatch", json!([many])).unwrap_err();
    assert_eq!(e.0, -32005, "{e:?}");
    assert!(e.1.contains("9 transactions, over the limit of 8"), "{e:?}");
    let metrics = node.metrics_text();
    for (reason, count) in [
        ("malformed", 1.0),
        ("bad_signature", 1.0),
        ("duplicate", 1.0),
    ] {
        let series =
            format!("sou_transactions_rejected_total{{reason=\"{reason}\",source=\"rpc\"}}");
        assert_eq!(sou_tests::metric(&metrics, &series), count, "{series}");
    }
}

#[test]
fn cors_allows_any_origin_and_answers_preflights() {
    let mut node = TestNode::init(1, |_| {});
    node.start();
    let origin = "http://explorer.example";
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"node_status","params":[]}"#;
    let r = sou_tests::http_request(&node.rpc, "POST", "/", &[("Origin", origin)], body).unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{r:?}");
    assert!(r.body.contains("sou-devnet"), "{r:?}");
    // A browser's preflight before a JSON POST.
    let r = sou_tests::http_request(
        &node.rpc,
        "OPTIONS",
        "/",
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    )
    .unwrap();
    assert!((200..300).contains(&r.status), "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{r:?}");
    let methods = r.header("access-control-allow-methods").unwrap_or("");
    assert!(methods == "*" || methods.contains("POST"), "{r:?}");
    let headers = r.header("access-control-allow-headers").unwrap_or("");
    assert!(
        headers == "*" || headers.to_ascii_lowercase().contains("content-type"),
        "{r:?}"
    );
    // Without an Origin (not a browser) the answer is the same JSON-RPC.
    let r = sou_tests::http_request(&node.rpc, "POST", "/", &[], body).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.contains("sou-devnet"));
}

#[test]
fn account_get_balance_names_the_symbol_and_decimals() {
    let mut node = TestNode::init(1, |_| {});
    node.start();
    let a = account_key(&node, 0).address().to_string();
    let b = node.ok("account_getBalance", json!([a, "USDT"]));
    assert_eq!(b["symbol"], "USDT", "{b}");
    assert_eq!(b["asset"], "USDT", "{b}");
    assert_eq!(b["decimals"], 6, "{b}");
    assert_eq!(b["amount"], "1000000000000", "{b}");
    assert_eq!(b["display"], "1000000", "{b}");
    let s = node.ok("account_getBalance", json!([a, "SOU"]));
    assert_eq!(
        (s["symbol"].clone(), s["decimals"].clone()),
        (json!("SOU"), json!(9))
    );
    for row in node.ok("account_get", json!([a]))["balances"]
        .as_array()
        .unwrap()
    {
        assert_eq!(row["symbol"], row["asset"], "{row}");
    }
    assert_eq!(
        node.call("account_getBalance", json!([a, "NOPE"]))
            .unwrap_err()
            .0,
        -32001
    );
    // chain_getParams keeps the fee under the name wallets read.
    let p = node.ok("chain_getParams", json!([]));
    assert_eq!(p["txFee"], FEE.to_string(), "{p}");
}
