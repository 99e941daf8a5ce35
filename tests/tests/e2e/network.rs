//! Several validators as real `sou` processes over libp2p on 127.0.0.1:
//! agreement, faults (SIGKILL, SIGSTOP, two down, a wiped database), and
//! transactions gossiped between nodes.

use nix::sys::signal::Signal;
use serde_json::json;
use sou_genesis::KeyFile;
use sou_tests::TestNet;

use crate::helpers::{raw, sign, transfer};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One network at a time: four validators already share two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Faster blocks and views for tests.
fn quick(cfg: &mut toml::Table) {
    let mut block = cfg["block"].as_table().cloned().unwrap();
    block.insert("empty_block_interval_ms".into(), 200.into());
    cfg.insert("block".into(), block.into());
    let mut cons = cfg["consensus"].as_table().cloned().unwrap();
    cons.insert("view_timeout_ms".into(), 1_000.into());
    cons.insert("max_view_timeout_ms".into(), 4_000.into());
    cfg.insert("consensus".into(), cons.into());
}

fn block(net: &TestNet, node: usize, height: u64) -> serde_json::Value {
    net.nodes[node].ok("chain_getBlockByNumber", json!([height, false]))
}

#[test]
fn four_validators_agree_on_every_block_and_transfers_reach_every_node() {
    let _serial = serial();
    let mut net = TestNet::new(4, quick);
    net.start_all();
    net.wait_all(30, 120);
    for h in 1..=30 {
        let b0 = block(&net, 0, h);
        for i in 1..4 {
            let b = block(&net, i, h);
            assert_eq!(b["hash"], b0["hash"], "height {h}: node {i} differs");
            assert_eq!(
                b["stateRoot"], b0["stateRoot"],
                "height {h}: state root of node {i} differs"
            );
        }
    }
    // A transfer sent to node 0 is final and readable on every node.
    let key = KeyFile::read(&net.dir.join("accounts/account-0.json")).unwrap();
    let to = KeyFile::read(&net.dir.join("accounts/account-1.json"))
        .unwrap()
        .address();
    let out = sou_tests::sou_ok(&[
        "wallet",
        "--rpc",
        &format!("http://{}", net.nodes[0].rpc),
        "transfer",
        "--key",
        net.dir.join("accounts/account-0.json").to_str().unwrap(),
        "--to",
        &to.to_string(),
        "--amount",
        "2.5",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let height = v["blockHeight"].as_u64().unwrap();
    net.wait_all(height, 30);
    for n in &net.nodes {
        let r = n.ok("tx_getReceipt", json!([v["hash"]]));
        assert_eq!(r["status"], "success");
        assert_eq!(
            n.ok("account_get", json!([key.address().to_string()]))["nonce"],
            1
        );
    }
    // Every node counts its peers. Every validator sends its certificates
    // to every peer, which mostly has formed them already: such copies are
    // dropped before their signatures are checked.
    for n in &net.nodes {
        assert_eq!(n.ok("node_status", json!([]))["peerCount"], 3);
        let stale = n.metric("sou_consensus_messages_stale_total");
        assert!(stale > 0.0, "{}: no copy skipped in 30 blocks", n.rpc);
    }

    // A batch sent to a validator with peers is admitted on its admission
    // thread, together with gossip: still one result per transaction, in
    // order, and what was admitted reaches every node.
    let user = KeyFile::read(&net.dir.join("accounts/account-2.json")).unwrap();
    let tip = net.nodes[1].ok("node_status", json!([]))["latestHeight"]
        .as_u64()
        .unwrap();
    let good: Vec<_> = (0..3)
        .map(|i| sign(&user, i, tip + 500, transfer(to, 10 + u128::from(i))))
        .collect();
    let mut forged = sign(&user, 3, tip + 500, transfer(to, 1));
    forged.signature.0[7] ^= 1;
    let mut raws: Vec<String> = good.iter().map(raw).collect();
    raws.push(raw(&forged));
    raws.push("0x0102".into());
    let out = net.nodes[1].ok("tx_sendBatch", json!([raws]));
    let out = out.as_array().unwrap();
    assert_eq!(out.len(), 5, "{out:?}");
    for (r, tx) in out.iter().zip(&good) {
        assert_eq!(r, &json!({"hash": tx.hash().to_string()}));
    }
    assert_eq!(out[3]["error"]["code"], -32003, "{}", out[3]);
    assert!(
        out[3]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid signature"),
        "{}",
        out[3]
    );
    assert_eq!(out[4]["error"]["code"], -32602, "{}", out[4]);
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in &net.nodes {
        for tx in &good {
            let hash = tx.hash().to_string();
            loop {
                let r = n.ok("tx_getReceipt", json!([hash]));
                if !r.is_null() {
                    assert_eq!(r["status"], "success", "{r}");
                    break;
                }
                assert!(Instant::now() < deadline, "{hash} not final on {}", n.rpc);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        assert_eq!(
            n.ok("account_get", json!([user.address().to_string()]))["nonce"],
            3
        );
    }
}

#[test]
fn a_killed_validator_catches_up_and_the_others_go_on() {
    let _serial = serial();
    let mut net = TestNet::new(4, quick);
    net.start_all();
    net.wait_all(5, 60);
    net.nodes[2].kill();
    let h = net.max_height();
    net.wait_all(h + 10, 60);
    net.nodes[2].start();
    let target = net.max_height();
    let start = Instant::now();
    while net.nodes[2].height().unwrap_or(0) < target {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not caught up within 20 s: {:?} < {target}",
            net.nodes[2].height()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        block(&net, 2, target)["hash"],
        block(&net, 0, target)["hash"]
    );
}

#[test]
fn a_paused_validator_catches_up_without_being_accused() {
    let _serial = serial();
    let mut net = TestNet::new(4, quick);
    net.start_all();
    net.wait_all(5, 60);
    net.nodes[1].signal(Signal::SIGSTOP);
    std::thread::sleep(Duration::from_secs(10));
    net.nodes[1].signal(Signal::SIGCONT);
    let target = net.max_height();
    net.wait_all(target, 20);
    for n in &net.nodes {
        let m = n.metrics_text();
        assert!(
            m.contains("sou_evidence_total 0"),
            "evidence after a pause:\n{m}"
        );
    }
}

#[test]
fn two_of_four_down_halts_finality_then_it_resumes() {
    let _serial = serial();
    let mut net = TestNet::new(4, quick);
    net.start_all();
    net.wait_all(5, 60);
    net.nodes[2].kill();
    net.nodes[3].kill();
    std::thread::sleep(Duration::from_secs(3));
    let stalled = net.max_height();
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(net.max_height(), stalled, "finalized without a quorum");
    net.nodes[2].start();
    net.nodes[3].start();
    net.wait_all(stalled + 5, 90);
    for h in 1..=stalled + 5 {
        assert_eq!(
            block(&net, 3, h)["hash"],
            block(&net, 0, h)["hash"],
            "height {h}"
        );
    }
}

#[test]
fn a_wiped_validator_syncs_back_to_the_same_state() {
    let _serial = serial();
    let mut net = TestNet::new(4, quick);
    net.start_all();
    net.wait_all(10, 60);
    net.nodes[3].kill();
    // The database goes; the double-sign record (consensus.wal) stays, as
    // an operator must keep it.
    std::fs::remove_dir_all(net.nodes[3].home.join("data")).unwrap();
    net.nodes[3].start();
    let target = net.max_height();
    let start = Instant::now();
    while net.nodes[3].height().unwrap_or(0) < target {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not synced: {:?} < {target}",
            net.nodes[3].height()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (a, b) = (block(&net, 3, target), block(&net, 0, target));
    assert_eq!(a["hash"], b["hash"]);
    assert_eq!(a["stateRoot"], b["stateRoot"]);
}

#[test]
fn a_peer_flooding_garbage_is_disconnected_and_the_chain_goes_on() {
    let _serial = serial();
    let mut net = TestNet::new(4, quick);
    net.start_all();
    net.wait_all(3, 60);
    let cfg: toml::Table = std::fs::read_to_string(net.nodes[0].home.join("config.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let target: sou_p2p::Address = cfg["p2p"]["listen"].as_str().unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let disconnected = rt.block_on(async {
        let secret = sou_types::Keypair::derive_insecure(99, "flooder").secret_bytes();
        let (p2p, mut events) = sou_p2p::P2p::start(sou_p2p::P2pConfig::new(
            secret,
            "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
            vec![target],
        ))
        .unwrap();
        // Connect, then flood the consensus topic with garbage.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut connected = false;
        let mut sent = 0u32;
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(sou_p2p::Event::PeerCount(n)) if n > 0 => connected = true,
                    Some(sou_p2p::Event::PeerCount(0)) if connected && sent > 0 => return true,
                    Some(_) => {}
                    None => return false,
                },
                _ = tokio::time::sleep(Duration::from_millis(20)) => {
                    if connected && sent < 500 {
                        let garbage: Vec<u8> = (0..64).map(|i| (i as u32 * 31 + sent) as u8).collect();
                        p2p.publish(sou_p2p::Topic::Consensus, garbage);
                        sent += 1;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return false,
            }
        }
    });
    assert!(disconnected, "the flooding peer was not disconnected");
    assert!(
        net.nodes[0]
            .log()
            .contains("disconnecting a peer that keeps sending invalid messages"),
        "no disconnect in node 0's log"
    );
    // The chain goes on.
    let h = net.max_height();
    net.wait_all(h + 5, 60);
}

/// Every running node has the same block hash and state root at every
/// height up to `to`.
fn assert_agree(net: &TestNet, to: u64) {
    let running: Vec<usize> = (0..net.nodes.len())
        .filter(|&i| net.nodes[i].is_running())
        .collect();
    for h in 1..=to {
        let b0 = block(net, running[0], h);
        for &i in &running[1..] {
            let b = block(net, i, h);
            assert_eq!(b["hash"], b0["hash"], "height {h}: node {i} differs");
            assert_eq!(b["stateRoot"], b0["stateRoot"], "height {h}: node {i}");
        }
    }
}

/// Every running node agrees on every block up to the lowest of their tips.
fn assert_all_agree(net: &TestNet) {
    let tip = net
        .nodes
        .iter()
        .filter(|n| n.is_running())
        .filter_map(sou_tests::TestNode::height)
        .min()
        .expect("a running node answers");
    assert_agree(net, tip);
}

/// A validator's record (stake, jail) as `account_get` shows it.
fn validator(net: &TestNet, node: usize, operator: &str) -> serde_json::Value {
    net.nodes[node].ok("account_get", json!([operator]))["stake"]["validator"].clone()
}

/// Whether `operator` is in the validator set of the next block.
fn in_set(net: &TestNet, node: usize, operator: &str) -> bool {
    net.nodes[node].ok("chain_getValidators", json!([]))["validators"]
        .as_array()
        .is_some_and(|vs| vs.iter().any(|v| v["operator"] == operator))
}

#[test]
fn a_twin_of_a_validator_is_caught_slashed_and_jailed_without_a_fork() {
    let _serial = serial();
    let mut net = TestNet::with_args(4, &["--epoch-length", "40"], quick);
    net.start_all();
    net.wait_all(3, 60);
    // A fifth process with a copy of validator 3's consensus key, its own
    // database, WAL and network identity.
    let twin_home = net.dir.join("twin");
    std::fs::create_dir_all(twin_home.join("keys")).unwrap();
    let src = net.dir.join("node3");
    for f in ["genesis.json", "keys/validator.json", "keys/operator.json"] {
        std::fs::copy(src.join(f), twin_home.join(f)).unwrap();
    }
    let mut cfg: toml::Table = std::fs::read_to_string(src.join("config.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let own_p2p = cfg["p2p"]["listen"].as_str().unwrap().to_string();
    let port = sou_tests::free_port();
    cfg["rpc"]["listen"] = format!("127.0.0.1:{}", sou_tests::free_port()).into();
    cfg["metrics"]["listen"] = format!("127.0.0.1:{}", sou_tests::free_port()).into();
    cfg["p2p"]["listen"] = format!("/ip4/127.0.0.1/tcp/{port}").into();
    let mut peers = cfg["p2p"]["peers"].as_array().unwrap().clone();
    peers.push(own_p2p.into());
    cfg["p2p"]["peers"] = peers.into();
    std::fs::write(
        twin_home.join("config.toml"),
        toml::to_string(&cfg).unwrap(),
    )
    .unwrap();
    let mut twin = sou_tests::TestNode::from_home(twin_home);
    twin.start();

    let operator = KeyFile::read(&net.dir.join("node3/keys/operator.json"))
        .unwrap()
        .address()
        .to_string();
    let stake_before = validator(&net, 0, &operator)["tokens"].clone();
    assert!(!stake_before.is_null(), "validator 3 is registered");
    assert!(in_set(&net, 0, &operator));
    // Both copies sign as validator 3: one of them signs a vote the other
    // contradicts; the evidence is gossiped, put in a block and slashes.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = validator(&net, 0, &operator);
        if v["jailedUntil"].as_u64() == Some(u64::MAX) {
            assert_ne!(v["tokens"], stake_before, "the stake was slashed");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "validator 3 was not slashed in 120 s: {v}\n{}",
            net.nodes[0].log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let evidence: u64 = net
        .nodes
        .iter()
        .map(|n| metric(&n.metrics_text(), "sou_evidence_total"))
        .sum();
    assert!(evidence > 0, "evidence was recorded");
    // The chain goes on, without the offender after the epoch ends, and
    // never forks.
    let tip = net.max_height();
    net.wait_all(tip.max(41) + 5, 120);
    twin.stop();
    assert_all_agree(&net);
    for i in 0..4 {
        let v = validator(&net, i, &operator);
        assert_eq!(v["jailedUntil"].as_u64(), Some(u64::MAX), "node {i}: {v}");
        assert!(!in_set(&net, i, &operator), "node {i}: still in the set");
    }
    // The block that carried the evidence shows it.
    let carried = (1..=tip).any(|h| {
        block(&net, 0, h)["evidence"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
    });
    assert!(carried, "no block carries the evidence");
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Runs `sou wallet ... stake` against node 0 and returns its JSON answer.
fn stake(net: &TestNet, key: &std::path::Path, action: &[&str]) -> serde_json::Value {
    let rpc = format!("http://{}", net.nodes[0].rpc);
    let mut args = vec![
        "wallet",
        "--rpc",
        &rpc,
        "stake",
        "--key",
        key.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(action);
    let out = sou_tests::sou_ok(&args);
    serde_json::from_str(out.trim()).unwrap()
}

/// Waits until every node's set for the next block does (or does not)
/// hold `operator`; returns the height then.
fn wait_membership(net: &TestNet, operator: &str, member: bool, secs: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if (0..net.nodes.len()).all(|i| in_set(net, i, operator) == member) {
            return net.max_height();
        }
        assert!(
            Instant::now() < deadline,
            "membership of {operator} did not become {member} in {secs} s (height {})",
            net.max_height()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_bonded_account_joins_the_set_at_the_next_epoch_and_leaves_when_unbonded() {
    let _serial = serial();
    let mut net = TestNet::with_args(4, &["--epoch-length", "20"], quick);
    net.start_all();
    net.wait_all(2, 60);
    let account = net.dir.join("accounts/account-0.json");
    let operator = KeyFile::read(&account).unwrap().address().to_string();
    let consensus = net.dir.join("new-validator.json");
    sou_tests::sou_ok(&["keys", "new", "--out", consensus.to_str().unwrap()]);
    assert!(!in_set(&net, 0, &operator));

    let r = stake(
        &net,
        &account,
        &["register", "--consensus-key", consensus.to_str().unwrap()],
    );
    assert_eq!(r["status"], "success", "{r}");
    let r = stake(
        &net,
        &account,
        &["bond", "--validator", &operator, "--amount", "100"],
    );
    assert_eq!(r["status"], "success", "{r}");
    let bonded_at = r["blockHeight"].as_u64().unwrap();
    // In the set from the first block of the next epoch, on every node.
    let joined = wait_membership(&net, &operator, true, 90);
    assert!(
        joined / 20 > (bonded_at - 1) / 20,
        "joined in the same epoch"
    );
    let v = net.nodes[0].ok("chain_getValidators", json!([]));
    assert_eq!(v["validators"].as_array().unwrap().len(), 5, "{v}");

    // Unbonding everything: out of the set at the next epoch's start.
    let r = stake(
        &net,
        &account,
        &["unbond", "--validator", &operator, "--amount", "100"],
    );
    assert_eq!(r["status"], "success", "{r}");
    wait_membership(&net, &operator, false, 90);
    // The chain went on through each change and never forked.
    let tip = net.max_height();
    net.wait_all(tip + 3, 60);
    assert_all_agree(&net);
}

#[test]
fn a_validator_that_stays_down_is_jailed_for_downtime() {
    let _serial = serial();
    let mut net = TestNet::with_args(4, &["--downtime-missed-proposals", "10"], quick);
    net.start_all();
    net.wait_all(3, 60);
    let operator = |i: usize| {
        KeyFile::read(&net.dir.join(format!("node{i}/keys/operator.json")))
            .unwrap()
            .address()
            .to_string()
    };
    let down = operator(3);
    let stake_before = validator(&net, 0, &down)["tokens"].clone();
    net.nodes[3].kill();
    // Four equal validators: 10 proposals' worth is 40 blocks.
    let deadline = Instant::now() + Duration::from_secs(120);
    let jailed_at = loop {
        let v = validator(&net, 0, &down);
        if let Some(until) = v["jailedUntil"].as_u64() {
            assert!(until < u64::MAX, "jailed for downtime, not for good: {v}");
            assert_ne!(v["tokens"], stake_before, "the downtime slash applied");
            break net.max_height();
        }
        assert!(
            Instant::now() < deadline,
            "the stopped validator was not jailed in 120 s (height {})",
            net.max_height()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        jailed_at > 40,
        "jailed at height {jailed_at}, before its window"
    );
    // The three that are up are not jailed, and agree.
    net.wait_all(jailed_at + 3, 60);
    for i in 0..3 {
        let v = validator(&net, 0, &operator(i));
        assert!(v["jailedUntil"].is_null(), "validator {i}: {v}");
    }
    assert_all_agree(&net);
}

#[test]
fn a_node_whose_mempool_refuses_gossip_fills_blocks_from_its_peers() {
    let _serial = serial();
    // Node 3 keeps nothing in its mempool (it refuses every transaction as
    // full), and node 2 takes no transaction over 100 bytes (a transfer is
    // about 200), from clients or peers alike: the transactions of the
    // compact blocks they are sent must come from their peers.
    let mut net = TestNet::new(4, quick);
    for (node, key, value) in [(3, "max_txs", 0), (2, "max_tx_bytes", 100)] {
        let home = net.dir.join(format!("node{node}/config.toml"));
        let mut cfg: toml::Table = std::fs::read_to_string(&home).unwrap().parse().unwrap();
        cfg["mempool"][key] = value.into();
        std::fs::write(&home, toml::to_string(&cfg).unwrap()).unwrap();
    }
    net.start_all();
    net.wait_all(2, 60);
    let rpc = format!("http://{}", net.nodes[0].rpc);
    let mut last = 0;
    for i in 0..3 {
        let key = net.dir.join(format!("accounts/account-{i}.json"));
        let to = KeyFile::read(&net.dir.join(format!("accounts/account-{}.json", i + 1)))
            .unwrap()
            .address()
            .to_string();
        let out = sou_tests::sou_ok(&[
            "wallet",
            "--rpc",
            &rpc,
            "transfer",
            "--key",
            key.to_str().unwrap(),
            "--to",
            &to,
            "--amount",
            "1",
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["status"], "success", "{v}");
        last = last.max(v["blockHeight"].as_u64().unwrap());
    }
    net.wait_all(last + 2, 60);
    assert_all_agree(&net);
    for (node, reason) in [(3, "mempool_full"), (2, "too_large")] {
        let m = net.nodes[node].metrics_text();
        let fetched = metric(&m, "sou_p2p_fetched_transactions_total")
            + metric(&m, "sou_p2p_fetched_blocks_total");
        assert!(fetched > 0, "node {node} fetched nothing:\n{m}");
        // The gossiped transactions it refused are counted, by reason.
        let series =
            format!("sou_transactions_rejected_total{{reason=\"{reason}\",source=\"gossip\"}}");
        assert!(metric(&m, &series) >= 1, "node {node}: no {series}:\n{m}");
        assert_eq!(metric(&m, "sou_mempool_transactions"), 0, "node {node}");
    }
    // Node 2 enforces the same limit on its clients.
    let out = sou_tests::sou(&[
        "wallet",
        "--rpc",
        &format!("http://{}", net.nodes[2].rpc),
        "transfer",
        "--key",
        net.dir.join("accounts/account-0.json").to_str().unwrap(),
        "--to",
        &KeyFile::read(&net.dir.join("accounts/account-1.json"))
            .unwrap()
            .address()
            .to_string(),
        "--amount",
        "1",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("over the limit of 100 bytes"),
        "{err}"
    );
}
