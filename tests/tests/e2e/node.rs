//! A running node (`sou start`), over real HTTP and WebSocket: the wallet
//! CLI, the stablecoin controls, bad input, SIGKILL, subscriptions, metrics,
//! and `sou testnet`.

use serde_json::{json, Value};
use sou_genesis::KeyFile;
use sou_tests::{http_post, sou, sou_ok, TestNode};
use sou_types::{
    Address, Amount, ChainId, Keypair, Memo, Payload, Payout, SignedTransaction, Symbol,
    Transaction,
};

const FEE: u128 = 100; // the dev genesis's tx_fee

fn usdt() -> Symbol {
    Symbol::new("USDT").unwrap()
}

fn account_key(node: &TestNode, i: usize) -> Keypair {
    KeyFile::read(&node.home.join(format!("dev-accounts/account-{i}.json"))).unwrap()
}

fn issuer_key(node: &TestNode) -> Keypair {
    KeyFile::read(&node.home.join("keys/issuer.json")).unwrap()
}

fn nonce(node: &TestNode, a: &Address) -> u64 {
    node.ok("account_get", json!([a.to_string()]))["nonce"]
        .as_u64()
        .unwrap()
}

fn balance(node: &TestNode, a: &Address, asset: &str) -> u128 {
    node.ok("account_getBalance", json!([a.to_string(), asset]))["amount"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn signed(node: &TestNode, key: &Keypair, payload: Payload) -> SignedTransaction {
    let height = node.ok("node_status", json!([]))["latestHeight"]
        .as_u64()
        .unwrap();
    Transaction {
        chain_id: ChainId::new("sou-devnet").unwrap(),
        sender: key.address(),
        nonce: nonce(node, &key.address()),
        max_fee: Amount(FEE),
        expiry_height: height + 500,
        payload,
    }
    .sign(key)
}

fn raw(tx: &SignedTransaction) -> String {
    format!("0x{}", hex::encode(tx.encode()))
}

fn transfer(to: Address, amount: u128) -> Payload {
    Payload::Transfer {
        asset: usdt(),
        to,
        amount: Amount(amount),
        memo: Memo::empty(),
    }
}

fn send_wait(node: &TestNode, tx: &SignedTransaction) -> Value {
    node.ok("tx_sendAndWait", json!([raw(tx), 30_000]))
}

#[test]
fn a_wallet_transfer_finalizes_and_everything_agrees() {
    let mut node = TestNode::init(3, |_| {});
    node.start();
    let from = account_key(&node, 0);
    let to = account_key(&node, 1).address();
    let (from_before, to_before) = (
        balance(&node, &from.address(), "USDT"),
        balance(&node, &to, "USDT"),
    );
    let key_file = node.home.join("dev-accounts/account-0.json");
    let out = sou_ok(&[
        "wallet",
        "--rpc",
        &format!("http://{}", node.rpc),
        "transfer",
        "--key",
        key_file.to_str().unwrap(),
        "--to",
        &to.to_string(),
        "--amount",
        "1.25",
        "--memo",
        "meter-17",
        "--json",
    ]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["status"], "success", "{v}");
    let hash = v["hash"].as_str().unwrap().to_string();
    let height = v["blockHeight"].as_u64().unwrap();
    assert!(v["finalityMs"].as_u64().is_some());

    // Balances, nonce and fee.
    assert_eq!(
        balance(&node, &from.address(), "USDT"),
        from_before - 1_250_000 - FEE
    );
    assert_eq!(balance(&node, &to, "USDT"), to_before + 1_250_000);
    assert_eq!(nonce(&node, &from.address()), 1);
    // The receipt.
    let receipt = node.ok("tx_getReceipt", json!([hash]));
    assert_eq!(receipt["status"], "success");
    assert_eq!(receipt["blockHeight"], height);
    assert_eq!(receipt["fee"], FEE.to_string());
    // The block holds it, and links to its parent.
    let block = node.ok("chain_getBlockByNumber", json!([height, true]));
    let txs = block["transactions"].as_array().unwrap();
    assert!(txs.iter().any(|t| t["hash"] == hash.as_str()), "{block}");
    let memo = txs.iter().find(|t| t["hash"] == hash.as_str()).unwrap()["payload"]["memo"].clone();
    assert_eq!(memo, format!("0x{}", hex::encode("meter-17")));
    let parent = node.ok("chain_getBlockByNumber", json!([height - 1, false]));
    assert_eq!(block["parentHash"], parent["hash"]);
    assert_eq!(
        node.ok("chain_getBlockByHash", json!([block["hash"], false]))["height"],
        height
    );
    // Both addresses list it first in their history.
    for a in [from.address(), to] {
        let h = node.ok("account_getTransactions", json!([a.to_string(), null, 5]));
        assert_eq!(h[0]["hash"], hash.as_str(), "history of {a}");
    }
    let statuses = node.ok(
        "tx_getStatuses",
        json!([[hash, format!("0x{}", "11".repeat(32))]]),
    );
    assert_eq!(statuses[0]["status"], "finalized");
    assert_eq!(statuses[1]["status"], "unknown");
    // The wallet reads it back too.
    let shown = sou_ok(&[
        "wallet",
        "--rpc",
        &format!("http://{}", node.rpc),
        "tx",
        &hash,
        "--json",
    ]);
    assert!(shown.contains(&hash));
    let bal = sou_ok(&[
        "wallet",
        "--rpc",
        &format!("http://{}", node.rpc),
        "balance",
        &to.to_string(),
        "--asset",
        "USDT",
    ]);
    assert_eq!(
        bal.trim(),
        format!("{} USDT", Amount(to_before + 1_250_000).to_decimal(6))
    );

    // A mistyped address or too many decimals is refused before sending.
    let typo = format!("{}x", &to.to_string()[..to.to_string().len() - 1]);
    let out = sou(&[
        "wallet",
        "--rpc",
        &format!("http://{}", node.rpc),
        "transfer",
        "--key",
        key_file.to_str().unwrap(),
        "--to",
        &typo,
        "--amount",
        "1",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid address"));
    let out = sou(&[
        "wallet",
        "--rpc",
        &format!("http://{}", node.rpc),
        "transfer",
        "--key",
        key_file.to_str().unwrap(),
        "--to",
        &to.to_string(),
        "--amount",
        "0.0000001",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("7 decimal places"));
    assert_eq!(nonce(&node, &from.address()), 1, "nothing was sent");
}

#[test]
fn stablecoin_controls_work_over_rpc() {
    let mut node = TestNode::init(3, |_| {});
    node.start();
    let issuer = issuer_key(&node);
    let user = account_key(&node, 0);
    let other = account_key(&node, 1);
    // Mint by the minter.
    let before = balance(&node, &user.address(), "USDT");
    let supply: u128 = node.ok("asset_get", json!(["USDT"]))["supply"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let r = send_wait(
        &node,
        &signed(
            &node,
            &issuer,
            Payload::Mint {
                asset: usdt(),
                to: user.address(),
                amount: Amount(5_000_000),
            },
        ),
    );
    assert_eq!(r["status"], "success", "{r}");
    assert_eq!(balance(&node, &user.address(), "USDT"), before + 5_000_000);
    let after: u128 = node.ok("asset_get", json!(["USDT"]))["supply"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(after, supply + 5_000_000);

    // Freeze: transfers to the frozen address fail; the frozen address cannot send at all.
    let r = send_wait(
        &node,
        &signed(
            &node,
            &issuer,
            Payload::Freeze {
                asset: usdt(),
                address: other.address(),
            },
        ),
    );
    assert_eq!(r["status"], "success");
    let r = send_wait(&node, &signed(&node, &user, transfer(other.address(), 1)));
    assert_eq!(r["status"], "failed");
    assert!(r["reason"].as_str().unwrap().contains("frozen"), "{r}");
    let e = node
        .call(
            "tx_send",
            json!([raw(&signed(&node, &other, transfer(user.address(), 1)))]),
        )
        .unwrap_err();
    assert_eq!(e.0, -32003);
    assert!(e.1.contains("frozen"), "{e:?}");
    let r = send_wait(
        &node,
        &signed(
            &node,
            &issuer,
            Payload::Unfreeze {
                asset: usdt(),
                address: other.address(),
            },
        ),
    );
    assert_eq!(r["status"], "success");

    // Pause: every transfer fails until unpaused.
    let r = send_wait(
        &node,
        &signed(&node, &issuer, Payload::Pause { asset: usdt() }),
    );
    assert_eq!(r["status"], "success");
    assert_eq!(node.ok("asset_get", json!(["USDT"]))["paused"], true);
    let r = send_wait(&node, &signed(&node, &user, transfer(other.address(), 1)));
    assert_eq!(r["status"], "failed");
    assert!(r["reason"].as_str().unwrap().contains("paused"), "{r}");
    let r = send_wait(
        &node,
        &signed(&node, &issuer, Payload::Unpause { asset: usdt() }),
    );
    assert_eq!(r["status"], "success");
    let r = send_wait(&node, &signed(&node, &user, transfer(other.address(), 1)));
    assert_eq!(r["status"], "success");
    // Only the roles may act.
    let r = send_wait(
        &node,
        &signed(&node, &user, Payload::Pause { asset: usdt() }),
    );
    assert!(
        r["reason"].as_str().unwrap().contains("not the pauser"),
        "{r}"
    );
    let list = node.ok("asset_list", json!([]));
    assert_eq!(list.as_array().unwrap().len(), 2);
}

#[test]
fn bad_input_is_refused_with_the_right_error_and_changes_nothing() {
    let mut node = TestNode::init(3, |cfg| {
        let mut rpc = cfg["rpc"].as_table().cloned().unwrap();
        rpc.insert("max_request_body_bytes".into(), (64 * 1024).into());
        rpc.insert("max_batch_len".into(), 10.into());
        cfg.insert("rpc".into(), rpc.into());
        let mut mp = cfg["mempool"].as_table().cloned().unwrap();
        mp.insert("max_tx_bytes".into(), 1024.into());
        cfg.insert("mempool".into(), mp.into());
    });
    node.start();
    let user = account_key(&node, 0);
    let to = account_key(&node, 1).address();
    let issuer = issuer_key(&node);
    // One good transfer, so a replay has something to replay.
    let good = signed(&node, &user, transfer(to, 7));
    assert_eq!(send_wait(&node, &good)["status"], "success");
    let snapshot = |n: &TestNode| {
        (
            n.ok("account_get", json!([user.address().to_string()])),
            n.ok("account_get", json!([to.to_string()])),
        )
    };
    let before = snapshot(&node);

    let (status, body) =
        http_post(&node.rpc, b"{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": ").unwrap();
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{status} {body}"));
    assert_eq!(v["error"]["code"], -32700, "{v}");
    assert_eq!(
        node.call("no_such_method", json!([])).unwrap_err().0,
        -32601
    );
    assert_eq!(node.call("account_get", json!([42])).unwrap_err().0, -32602);
    let e = node
        .call("account_get", json!(["sou1notanaddress"]))
        .unwrap_err();
    assert_eq!(e.0, -32602);
    assert!(e.1.contains("invalid address"), "{e:?}");
    assert_eq!(node.call("tx_send", json!(["0xzz"])).unwrap_err().0, -32602);
    assert_eq!(
        node.call("tx_send", json!(["0x0102"])).unwrap_err().0,
        -32602
    );

    let reject = |tx: &SignedTransaction, needle: &str| {
        let e = node.call("tx_send", json!([raw(tx)])).unwrap_err();
        assert_eq!(e.0, -32003, "{needle}: {e:?}");
        assert!(e.1.contains(needle), "expected {needle:?} in {e:?}");
    };
    let mut bad_sig = signed(&node, &user, transfer(to, 1));
    bad_sig.signature.0[5] ^= 1;
    reject(&bad_sig, "invalid signature");
    reject(&good, "nonce 0 was already used");
    let mut wrong_chain = signed(&node, &user, transfer(to, 1)).tx;
    wrong_chain.chain_id = ChainId::new("other-chain").unwrap();
    reject(&wrong_chain.sign(&user), "wrong chain id");
    let big = Payload::BatchTransfer {
        asset: usdt(),
        payouts: sou_types::tx::Payouts::new(vec![
            Payout {
                to,
                amount: Amount(1)
            };
            40
        ])
        .unwrap(),
        memo: Memo::empty(),
    };
    reject(&signed(&node, &user, big), "over the limit of 1024 bytes");
    // A frozen sender.
    let other = account_key(&node, 2);
    assert_eq!(
        send_wait(
            &node,
            &signed(
                &node,
                &issuer,
                Payload::Freeze {
                    asset: usdt(),
                    address: other.address()
                }
            )
        )["status"],
        "success"
    );
    reject(&signed(&node, &other, transfer(to, 1)), "frozen");

    // An oversized body is refused at the HTTP layer.
    let huge = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tx_send\",\"params\":[\"0x{}\"]}}",
        "00".repeat(70 * 1024)
    );
    let (status, body) = http_post(&node.rpc, huge.as_bytes()).unwrap();
    assert!(
        status == 413 || body.contains("-32"),
        "oversized body: {status} {body}"
    );
    assert_ne!(status, 200, "an oversized body was accepted: {body}");
    // A batch over the limit is refused.
    let calls: Vec<Value> = (0..11)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "node_status", "params": []}))
        .collect();
    let (_, body) =
        http_post(&node.rpc, serde_json::to_string(&calls).unwrap().as_bytes()).unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v.get("error").is_some() || v[0].get("error").is_some(),
        "batch of 11 accepted: {v}"
    );
    let calls: Vec<Value> = (0..10)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "node_status", "params": []}))
        .collect();
    let (_, body) =
        http_post(&node.rpc, serde_json::to_string(&calls).unwrap().as_bytes()).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&body)
            .unwrap()
            .as_array()
            .map(Vec::len),
        Some(10)
    );

    // Nothing changed for the two accounts the bad transactions named.
    node.wait_height(
        node.ok("node_status", json!([]))["finalizedHeight"]
            .as_u64()
            .unwrap()
            + 2,
        30,
    );
    assert_eq!(snapshot(&node), before);
    let metrics = node.metrics_text();
    assert!(
        metrics.contains("sou_transactions_rejected_total{reason=\"bad_signature\"} 1"),
        "{metrics}"
    );
}

#[test]
fn metrics_are_served_with_sou_names() {
    let mut node = TestNode::init(1, |_| {});
    node.start();
    node.wait_height(2, 30);
    let text = node.metrics_text();
    for name in [
        "sou_finalized_height",
        "sou_latest_height",
        "sou_consensus_view",
        "sou_block_interval_seconds_bucket",
        "sou_transactions_finalized_total",
        "sou_transactions_per_block_bucket",
        "sou_mempool_transactions",
        "sou_mempool_bytes",
        "sou_consensus_timeouts_total",
        "sou_block_execution_seconds_bucket",
        "sou_block_commit_seconds_bucket",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    let doc = node.ok("rpc.discover", json!([]));
    let names: Vec<&str> = doc["methods"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    for m in [
        "node_status",
        "tx_sendAndWait",
        "account_getTransactions",
        "chain_subscribeFinalized",
    ] {
        assert!(names.contains(&m), "{m} not in rpc.discover");
    }
}

#[test]
fn sigkill_while_transfers_flow_loses_nothing_finalized() {
    let mut node = TestNode::init(4, |_| {});
    node.start();
    let senders: Vec<Keypair> = (0..3).map(|i| account_key(&node, i)).collect();
    let to = account_key(&node, 3).address();
    let mut finalized: Vec<String> = Vec::new();
    let start = std::time::Instant::now();
    // Transfers in flight from three senders, in rounds; the kill lands mid-round.
    let mut round = 0u64;
    while start.elapsed() < std::time::Duration::from_secs(3) {
        let txs: Vec<SignedTransaction> = senders
            .iter()
            .map(|k| signed(&node, k, transfer(to, 1 + round as u128)))
            .collect();
        for tx in &txs {
            node.ok("tx_send", json!([raw(tx)]));
        }
        for tx in &txs {
            let r = node.ok("tx_sendAndWait", json!([raw(tx), 30_000]));
            assert_eq!(r["status"], "success", "{r}");
        }
        round += 1;
        finalized.extend(txs.iter().map(|t| t.hash().to_string()));
    }
    // More in flight, then SIGKILL without waiting.
    for k in &senders {
        let _ = node.call("tx_send", json!([raw(&signed(&node, k, transfer(to, 99)))]));
    }
    let height = node.ok("node_status", json!([]))["finalizedHeight"]
        .as_u64()
        .unwrap();
    node.kill();
    node.start();
    let status = node.ok("node_status", json!([]));
    assert!(
        status["finalizedHeight"].as_u64().unwrap() >= height,
        "went back in height: {status}"
    );
    for h in &finalized {
        let r = node.ok("tx_getReceipt", json!([h]));
        assert_eq!(
            r["status"], "success",
            "finalized transfer {h} lost after SIGKILL"
        );
    }
    // And the node goes on.
    let after = signed(&node, &senders[0], transfer(to, 5));
    assert_eq!(send_wait(&node, &after)["status"], "success");
    assert!(node.log().contains("node started"));
    // A clean stop exits 0.
    assert!(node.stop().is_some_and(|s| s.success()));
}

#[test]
fn a_websocket_subscriber_sees_every_finalized_block_in_order() {
    use jsonrpsee::core::client::SubscriptionClientT;
    let mut node = TestNode::init(2, |_| {});
    node.start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let headers: Vec<Value> = rt.block_on(async {
        let client = jsonrpsee::ws_client::WsClientBuilder::default()
            .build(format!("ws://{}", node.rpc))
            .await
            .unwrap();
        let mut sub = client
            .subscribe::<Value, _>(
                "chain_subscribeFinalized",
                jsonrpsee::rpc_params![],
                "chain_unsubscribeFinalized",
            )
            .await
            .unwrap();
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while got.len() < 12 {
            let next = tokio::time::timeout_at(deadline, sub.next()).await;
            match next {
                Ok(Some(Ok(h))) => got.push(h),
                other => panic!("subscription ended early: {other:?}"),
            }
        }
        got
    });
    for pair in headers.windows(2) {
        assert_eq!(
            pair[1]["height"].as_u64(),
            pair[0]["height"].as_u64().map(|h| h + 1),
            "gap or disorder"
        );
        assert_eq!(pair[1]["parentHash"], pair[0]["hash"]);
    }
    for h in &headers {
        let b = node.ok("chain_getBlockByNumber", json!([h["height"], false]));
        assert_eq!(b["hash"], h["hash"]);
    }
}

#[test]
fn sou_testnet_starts_a_node_writes_testnet_json_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let tn = dir.path().join("tn");
    let (rpc_port, metrics_port) = (sou_tests::free_port(), sou_tests::free_port());
    let mut child = std::process::Command::new(sou_tests::sou_bin())
        .args([
            "testnet",
            "--validators",
            "1",
            "--accounts",
            "3",
            "--dir",
            tn.to_str().unwrap(),
        ])
        .args([
            "--rpc-port",
            &rpc_port.to_string(),
            "--metrics-port",
            &metrics_port.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let file = tn.join("testnet.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !file.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("testnet.json")).unwrap();
    assert_eq!(v["accounts"].as_array().unwrap().len(), 3);
    let rpc = v["nodes"][0]["rpc"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .to_string();
    let pid = v["nodes"][0]["pid"].as_u64().unwrap() as i32;
    let (_, body) = http_post(
        &rpc,
        br#"{"jsonrpc":"2.0","id":1,"method":"node_status","params":[]}"#,
    )
    .unwrap();
    assert!(body.contains("sou-devnet"), "{body}");
    // A key file from testnet.json signs a transfer with the wallet.
    let key = v["accounts"][0]["key_file"].as_str().unwrap();
    let to = v["accounts"][1]["address"].as_str().unwrap();
    sou_ok(&[
        "wallet",
        "--rpc",
        &format!("http://{rpc}"),
        "transfer",
        "--key",
        key,
        "--to",
        to,
        "--amount",
        "2",
    ]);
    // Ctrl-C stops everything.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sou testnet did not stop on SIGINT"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success(), "exit {status:?}\n{out}");
    assert!(
        out.contains("chain id    sou-devnet") && out.contains("sou wallet --rpc"),
        "{out}"
    );
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err(),
        "the node process outlived Ctrl-C"
    );
}
