//! `sou wallet` against a running node: the RPC address from `SOU_RPC`,
//! sending without waiting, balances and history.

use serde_json::json;
use sou_tests::{sou_env, TestNode};

use crate::helpers::*;

/// Runs `sou wallet ARGS` with `SOU_RPC` set to `rpc` and no `--rpc`;
/// asserts success and returns standard output.
fn wallet(rpc: &str, args: &[&str]) -> String {
    let mut all = vec!["wallet"];
    all.extend_from_slice(args);
    let out = sou_env(&all, &[("SOU_RPC", rpc)]);
    assert!(
        out.status.success(),
        "sou {all:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_wallet_uses_sou_rpc_sends_without_waiting_and_lists_history_newest_first() {
    let mut node = TestNode::init(3, |_| {});
    node.start();
    let url = rpc_url(&node);
    let key = node.home.join("dev-accounts/account-0.json");
    let key = key.to_str().unwrap();
    let from = account_key(&node, 0).address();
    let to = account_key(&node, 1).address();

    // Balances of every asset, without --asset, through SOU_RPC.
    let out = wallet(&url, &["balance", &from.to_string()]);
    let expected: Vec<String> = node.ok("account_get", json!([from.to_string()]))["balances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            format!(
                "{} {}",
                b["display"].as_str().unwrap(),
                b["asset"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), expected);
    assert!(expected.contains(&"1000000 USDT".to_string()), "{out}");
    assert!(expected.contains(&"1000 SOU".to_string()), "{out}");
    // SOU_RPC really is where the wallet goes: a dead address fails...
    let dead = format!("http://127.0.0.1:{}", sou_tests::free_port());
    let out = sou_env(
        &["wallet", "balance", &from.to_string()],
        &[("SOU_RPC", &dead)],
    );
    assert!(!out.status.success());
    // ... and --rpc wins over it.
    let out = sou_env(
        &["wallet", "--rpc", &url, "balance", &from.to_string()],
        &[("SOU_RPC", &dead)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // --no-wait prints the hash alone, as soon as the node admits it; the
    // transfer finalizes afterwards.
    let out = wallet(
        &url,
        &[
            "transfer",
            "--key",
            key,
            "--to",
            &to.to_string(),
            "--amount",
            "0.5",
            "--no-wait",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out:?}");
    let first = lines[0].to_string();
    assert!(
        first.len() == 66
            && first.starts_with("0x")
            && first[2..].bytes().all(|b| b.is_ascii_hexdigit()),
        "not a hash alone: {out:?}"
    );
    let statuses = wait_finalized(&node, std::slice::from_ref(&first), 30);
    let receipt = node.ok("tx_getReceipt", json!([first]));
    assert_eq!(receipt["status"], "success");
    assert_eq!(receipt["blockHeight"], statuses[0]["blockHeight"]);

    // Two more, waiting for each.
    let mut hashes = vec![first];
    for amount in ["0.25", "0.125"] {
        let out = wallet(
            &url,
            &[
                "transfer",
                "--key",
                key,
                "--to",
                &to.to_string(),
                "--amount",
                amount,
                "--json",
            ],
        );
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["status"], "success", "{v}");
        hashes.push(v["hash"].as_str().unwrap().to_string());
    }
    // History, newest first, for the sender and the recipient.
    for address in [from, to] {
        let out = wallet(&url, &["history", &address.to_string()]);
        let rows: Vec<(String, u64)> = out
            .lines()
            .map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                assert_eq!(w.get(1), Some(&"block"), "{l}");
                (w[0].to_string(), w[2].parse().unwrap())
            })
            .collect();
        let listed: Vec<&str> = rows.iter().map(|(h, _)| h.as_str()).collect();
        let newest_first: Vec<&str> = hashes.iter().rev().map(String::as_str).collect();
        assert_eq!(listed, newest_first, "history of {address}:\n{out}");
        assert!(
            rows.windows(2).all(|p| p[0].1 > p[1].1),
            "heights not newest first:\n{out}"
        );
        assert!(
            out.lines().all(|l| l.ends_with("transfer success")),
            "{out}"
        );
    }
    assert_eq!(nonce(&node, &from), 3);
}
