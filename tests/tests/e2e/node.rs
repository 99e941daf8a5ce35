//! A running node (`sou start`), over real HTTP and WebSocket: the wallet
//! CLI, the stablecoin controls, bad input, SIGKILL, subscriptions, metrics,
//! and `sou testnet`.

use serde_json::{json, Value};
use sou_tests::{http_post, sou, sou_ok, TestNode};
use sou_types::{Address, Amount, ChainId, Keypair, Memo, Payload, Payout, SignedTransaction};

use crate::helpers::*;

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
    // Without the transactions (read from the stored summary): the same
    // block, with their hashes in the same order.
    let summary = node.ok("chain_getBlockByNumber", json!([height, false]));
    let hashes: Vec<&Value> = txs.iter().map(|t| &t["hash"]).collect();
    let listed: Vec<&Value> = summary["transactions"].as_array().unwrap().iter().collect();
    assert_eq!(listed, hashes);
    for field in ["hash", "parentHash", "txCount", "stateRoot", "evidence"] {
        assert_eq!(summary[field], block[field], "{field}");
    }
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
    assert!(!out.status.success(), "too many decimals accepted");
    assert!(String::from_utf8_lossy(&out.stderr).contains("7 decimal places"));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Nothing was sent: no nonce used, nothing pending, nothing refused.
    assert_eq!(nonce(&node, &from.address()), 1, "nothing was sent");
    let metrics = node.metrics_text();
    assert_eq!(
        sou_tests::metric(&metrics, "sou_mempool_transactions"),
        0.0,
        "{metrics}"
    );
    assert!(
        !metrics.contains("sou_transactions_rejected_total{"),
        "{metrics}"
    );
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
    let other = account_key(&node, 2);
    // One good transfer, so a replay has something to replay, and a frozen
    // sender.
    let good = signed(&node, &user, transfer(to, 7));
    assert_eq!(send_wait(&node, &good)["status"], "success");
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
    let snapshot = |n: &TestNode| {
        [user.address(), to, other.address(), issuer.address()]
            .map(|a| n.ok("account_get", json!([a.to_string()])))
    };
    let before = snapshot(&node);
    assert_eq!(before[2]["frozen"], json!(["USDT"]), "{}", before[2]);
    let mempool = |n: &TestNode| sou_tests::metric(&n.metrics_text(), "sou_mempool_transactions");
    assert_eq!(mempool(&node), 0.0);

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
    // Not hex, and hex that is no transaction.
    assert_eq!(node.call("tx_send", json!(["0xzz"])).unwrap_err().0, -32602);
    assert_eq!(
        node.call("tx_send", json!(["0x0102"])).unwrap_err().0,
        -32602
    );

    let mut refused: Vec<String> = Vec::new();
    let mut reject = |tx: &SignedTransaction, needle: &str| {
        let e = node.call("tx_send", json!([raw(tx)])).unwrap_err();
        assert_eq!(e.0, -32003, "{needle}: {e:?}");
        assert!(e.1.contains(needle), "expected {needle:?} in {e:?}");
        refused.push(tx.hash().to_string());
    };
    let mut bad_sig = signed(&node, &user, transfer(to, 1));
    bad_sig.signature.0[5] ^= 1;
    reject(&bad_sig, "invalid signature");
    let mut wrong_chain = signed(&node, &user, transfer(to, 2)).tx;
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
    reject(&signed(&node, &other, transfer(to, 1)), "frozen");
    // A replay (its hash is final, so it is not counted among the refused).
    let e = node.call("tx_send", json!([raw(&good)])).unwrap_err();
    assert_eq!(e.0, -32003);
    assert!(e.1.contains("nonce 0 was already used"), "{e:?}");

    // An oversized body is refused at the HTTP layer: 413, -32007.
    let huge = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tx_send\",\"params\":[\"0x{}\"]}}",
        "00".repeat(70 * 1024)
    );
    let (status, body) = http_post(&node.rpc, huge.as_bytes()).unwrap();
    assert_eq!(status, 413, "oversized body: {body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{body}"));
    assert_eq!(v["error"]["code"], -32007, "{v}");
    // A batch over the limit is refused as a whole: -32010.
    let calls: Vec<Value> = (0..11)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "node_status", "params": []}))
        .collect();
    let (_, body) =
        http_post(&node.rpc, serde_json::to_string(&calls).unwrap().as_bytes()).unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -32010, "batch of 11 accepted: {v}");
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

    // Nothing changed: after two more blocks, the accounts the bad
    // transactions named are as they were, none of them is pending or
    // known, and the mempool is empty.
    node.wait_height(
        node.ok("node_status", json!([]))["finalizedHeight"]
            .as_u64()
            .unwrap()
            + 2,
        30,
    );
    assert_eq!(snapshot(&node), before);
    assert_eq!(refused.len(), 4);
    for s in node
        .ok("tx_getStatuses", json!([refused]))
        .as_array()
        .unwrap()
    {
        assert_eq!(s["status"], "unknown", "{s}");
    }
    assert_eq!(mempool(&node), 0.0);
    // Each refusal is counted once, by reason.
    let metrics = node.metrics_text();
    for (reason, n) in [
        ("malformed", 2.0),
        ("bad_signature", 1.0),
        ("wrong_chain", 1.0),
        ("too_large", 1.0),
        ("frozen", 1.0),
        ("nonce_used", 1.0),
    ] {
        let series =
            format!("sou_transactions_rejected_total{{reason=\"{reason}\",source=\"rpc\"}}");
        assert_eq!(
            sou_tests::metric(&metrics, &series),
            n,
            "{series}\n{metrics}"
        );
    }
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
        "sou_block_signatures_verified_total",
        "sou_block_signatures_reused_total",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    // rpc.discover, as served: every method, positional parameters, and
    // schemas that are JSON Schema (a unit test of sou-rpc checks the list
    // against the registered methods).
    let doc = node.ok("rpc.discover", json!([]));
    let methods = doc["methods"].as_array().unwrap();
    let names: Vec<&str> = methods.iter().filter_map(|m| m["name"].as_str()).collect();
    for m in [
        "rpc.discover",
        "node_status",
        "chain_getParams",
        "chain_getBlockByNumber",
        "chain_getBlockByHash",
        "chain_getBlocks",
        "chain_getValidators",
        "account_get",
        "account_getBalance",
        "account_getTransactions",
        "asset_get",
        "asset_list",
        "tx_send",
        "tx_sendBatch",
        "tx_sendAndWait",
        "tx_get",
        "tx_getReceipt",
        "tx_getStatuses",
        "chain_subscribeFinalized",
        "chain_unsubscribeFinalized",
        "tx_subscribeStatus",
        "tx_unsubscribeStatus",
    ] {
        assert!(names.contains(&m), "{m} not in rpc.discover");
    }
    assert_eq!(names.len(), 22, "{names:?}");
    for m in methods {
        assert_eq!(m["paramStructure"], "by-position", "{m}");
    }
    let by_number = methods
        .iter()
        .find(|m| m["name"] == "chain_getBlockByNumber")
        .unwrap();
    assert_eq!(
        by_number["params"][0]["schema"]["oneOf"][1],
        json!({"type": "string", "enum": ["latest", "finalized"]})
    );
    assert!(!doc.to_string().contains("integer|string"));
}

/// Threads that keep sending transfers to a node, one sender each, each
/// waiting for finality before its next, until stopped or the node goes.
struct Submitters {
    /// Transfers the node reported finalized: (hash, amount).
    finalized: std::sync::Arc<std::sync::Mutex<Vec<(String, u128)>>>,
    /// Calls under way right now.
    in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Submitters {
    /// One thread for each dev account in `senders`.
    fn start(node: &TestNode, senders: &[usize], to: Address) -> Submitters {
        use std::sync::atomic::Ordering;
        let finalized = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let in_flight = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = senders
            .iter()
            .map(|&i| {
                let key = account_key(node, i);
                let (rpc, finalized, in_flight, stop) = (
                    node.rpc.clone(),
                    finalized.clone(),
                    in_flight.clone(),
                    stop.clone(),
                );
                let mut next = nonce(node, &key.address());
                std::thread::spawn(move || {
                    let call = |method: &str, params: Value| {
                        in_flight.fetch_add(1, Ordering::SeqCst);
                        let r = sou_tests::rpc_call(&rpc, method, params);
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        r
                    };
                    let mut round = 0u128;
                    while !stop.load(Ordering::SeqCst) {
                        let Ok(status) = call("node_status", json!([])) else {
                            return;
                        };
                        let height = status["latestHeight"].as_u64().unwrap_or(0);
                        // Amounts name the sender and the round.
                        let amount = 1_000 * (i as u128 + 1) + round;
                        let tx = sign(&key, next, height + 500, transfer(to, amount));
                        match call("tx_sendAndWait", json!([raw(&tx), 30_000])) {
                            Ok(r) => {
                                assert_eq!(r["status"], "success", "{r}");
                                finalized
                                    .lock()
                                    .unwrap()
                                    .push((tx.hash().to_string(), amount));
                            }
                            // The node went away mid-call.
                            Err(_) => return,
                        }
                        next += 1;
                        round += 1;
                    }
                })
            })
            .collect();
        Submitters {
            finalized,
            in_flight,
            stop,
            threads,
        }
    }

    fn finalized(&self) -> Vec<(String, u128)> {
        self.finalized.lock().unwrap().clone()
    }

    /// Waits (up to `secs`) until at least `n` transfers are finalized and
    /// a call is under way.
    fn wait_busy(&self, n: usize, secs: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while self.finalized.lock().unwrap().len() < n
            || self.in_flight.load(std::sync::atomic::Ordering::SeqCst) == 0
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{} transfers finalized in {secs} s, {n} wanted",
                self.finalized.lock().unwrap().len()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Stops the threads (they end at once if the node is gone) and waits
    /// for them.
    fn join(self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("a submitter panicked");
        }
    }
}

/// The height a node's log says it started at, the last time it started.
fn started_at(node: &TestNode) -> u64 {
    // Without the terminal colours the log may carry.
    let mut log = String::new();
    let mut escape = false;
    for c in node.log().chars() {
        match (escape, c) {
            (false, '\u{1b}') => escape = true,
            (true, 'm') => escape = false,
            (true, _) => {}
            (false, c) => log.push(c),
        }
    }
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("node started"))
        .unwrap_or_else(|| panic!("no start in the log:\n{log}"));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("height="))
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| panic!("no height in {line:?}"))
}

/// After a restart: every transfer reported finalized is there with its
/// receipt, the recipient holds at least what they brought, and the chain
/// goes on with a new transfer.
fn assert_nothing_lost(
    node: &TestNode,
    finalized: &[(String, u128)],
    to: Address,
    to_before: u128,
    sender: &Keypair,
) {
    for (h, _) in finalized {
        let r = node.ok("tx_getReceipt", json!([h]));
        assert_eq!(r["status"], "success", "finalized transfer {h} lost: {r}");
    }
    // Transfers under way at the stop may have finalized too, unreported.
    let sum: u128 = finalized.iter().map(|(_, a)| a).sum();
    assert!(balance(node, &to, "USDT") >= to_before + sum);
    let height = node.height().unwrap();
    node.wait_height(height + 3, 30);
    let after = signed(node, sender, transfer(to, 5));
    assert_eq!(send_wait(node, &after)["status"], "success");
}

#[test]
fn sigkill_while_transfers_flow_loses_nothing_finalized() {
    let mut node = TestNode::init(4, |_| {});
    node.start();
    let to = account_key(&node, 3).address();
    let to_before = balance(&node, &to, "USDT");
    // Three threads keep transfers flowing; SIGKILL lands while one of
    // their calls is under way.
    let submitters = Submitters::start(&node, &[0, 1, 2], to);
    submitters.wait_busy(12, 60);
    let height = node.height().unwrap();
    node.kill();
    let finalized = submitters.finalized();
    submitters.join();
    node.start();
    let status = node.ok("node_status", json!([]));
    assert!(
        status["finalizedHeight"].as_u64().unwrap() >= height,
        "went back in height: {status}"
    );
    assert!(started_at(&node) >= height);
    assert_nothing_lost(&node, &finalized, to, to_before, &account_key(&node, 0));
    assert!(node.log().contains("node started"));
    // A clean stop exits 0.
    assert!(node.stop().is_some_and(|s| s.success()));
}

#[test]
fn sigterm_mid_run_then_restart_resumes_at_the_last_finalized_block() {
    let mut node = TestNode::init(4, |_| {});
    node.start();
    let to = account_key(&node, 3).address();
    let to_before = balance(&node, &to, "USDT");
    let submitters = Submitters::start(&node, &[0, 1, 2], to);
    submitters.wait_busy(12, 60);
    let seen = node.height().unwrap();
    let status = node.stop().expect("the node was running");
    assert!(status.success(), "SIGTERM exit: {status:?}\n{}", node.log());
    assert!(node.log().contains("shutting down"));
    let finalized = submitters.finalized();
    submitters.join();
    // What the database holds after the clean stop...
    let (tip, tip_hash) = {
        let ledger = sou_ledger::Ledger::open(&node.home.join("data")).unwrap();
        (ledger.tip().height, ledger.tip().hash.to_string())
    };
    assert!(
        tip >= seen,
        "the database ({tip}) is behind what RPC said ({seen})"
    );
    // ... is where the node resumes.
    node.start();
    assert_eq!(started_at(&node), tip);
    let block = node.ok("chain_getBlockByNumber", json!([tip, false]));
    assert_eq!(block["hash"], tip_hash.as_str());
    assert_nothing_lost(&node, &finalized, to, to_before, &account_key(&node, 0));
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
    // Each node's home and metrics address; the metrics answer there.
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    assert_eq!(v["nodes"][0]["metrics"], metrics_url.as_str(), "{v}");
    assert_eq!(
        v["nodes"][0]["home"],
        tn.join("node0").to_str().unwrap(),
        "{v}"
    );
    let metrics = sou_tests::http_request(
        &format!("127.0.0.1:{metrics_port}"),
        "GET",
        "/metrics",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("sou_finalized_height"), "{metrics:?}");
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
    // The banner names the metrics address, and each dev account's secret
    // key (the one in testnet.json) and balances.
    assert!(out.contains(&format!("metrics {metrics_url}")), "{out}");
    for a in v["accounts"].as_array().unwrap() {
        let address = a["address"].as_str().unwrap();
        let secret = a["secret_key"].as_str().unwrap();
        assert!(secret.starts_with("0x") && secret.len() == 66, "{secret}");
        assert!(
            out.contains(&format!("{address}  1000000 USDT, 1000 SOU")),
            "no balances of {address} in:\n{out}"
        );
        assert!(out.contains(&format!("secret {secret}")), "{out}");
    }
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err(),
        "the node process outlived Ctrl-C"
    );
}

#[test]
fn sou_testnet_stops_its_nodes_when_it_cannot_write_testnet_json() {
    let dir = tempfile::tempdir().unwrap();
    let tn = dir.path().join("tn");
    let (rpc_port, metrics_port, p2p_port) = (
        sou_tests::free_port(),
        sou_tests::free_port(),
        sou_tests::free_port(),
    );
    let ports = [
        "--rpc-port",
        &rpc_port.to_string(),
        "--metrics-port",
        &metrics_port.to_string(),
        "--p2p-port",
        &p2p_port.to_string(),
    ]
    .map(str::to_string);
    let mut args = vec!["testnet", "--validators", "1", "--accounts", "2", "--dir"];
    args.push(tn.to_str().unwrap());
    args.extend(ports.iter().map(String::as_str));
    let mut init = args.clone();
    init.push("--init-only");
    sou_ok(&init);
    // testnet.json cannot be written: a directory is in the way.
    std::fs::create_dir_all(tn.join("testnet.json")).unwrap();
    let mut child = std::process::Command::new(sou_tests::sou_bin())
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("sou testnet did not give up on an unwritable testnet.json");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let (mut out, mut err) = (String::new(), String::new());
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{out}");
    assert!(err.contains("testnet.json"), "{err}");
    // The node it started (its pid is in the banner) is gone.
    let pid: i32 = out
        .split_whitespace()
        .skip_while(|w| *w != "pid")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in the banner:\n{out}"));
    let pid = nix::unistd::Pid::from_raw(pid);
    let alive = nix::sys::signal::kill(pid, None).is_ok();
    if alive {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    assert!(!alive, "the node outlived sou testnet's failure");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", rpc_port)).is_err(),
        "something still answers on the node's RPC port"
    );
}
