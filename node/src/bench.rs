//! `sou bench`: how many transfers per second a running chain finalizes,
//! and how long each takes from submission to finality.
//!
//! It creates and funds sender accounts through ordinary transactions,
//! pre-signs each step's load before its clock starts (signing is not
//! measured), submits it open-loop at the step's rate in `tx_sendBatch`
//! calls spread over the given nodes, and measures from the chain: a
//! transfer counts when a finalized block (seen through the
//! `chain_subscribeFinalized` subscription) contains it. It then checks
//! its own figures: every block it counted has the same hash on every
//! node, and the senders' balances add up on every node.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use jsonrpsee::core::client::SubscriptionClientT;
use jsonrpsee::http_client::HttpClient;
use jsonrpsee::rpc_params;

use crate::client::{call, client};
use serde_json::{json, Value};
use sou_genesis::KeyFile;
use sou_types::tx::Payouts;
use sou_types::{
    Amount, ChainId, Keypair, Memo, Payload, Payout, SignedTransaction, Symbol, Transaction, TxHash,
};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// JSON-RPC addresses of the nodes to load (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:8545")]
    pub rpc: Vec<String>,
    /// Metrics addresses of the nodes (comma-separated, host:port), for
    /// their CPU and resident memory.
    #[arg(long, value_delimiter = ',')]
    pub metrics: Vec<String>,
    /// Key file of a funded account that pays for the sender accounts.
    #[arg(long, default_value = ".testnet/accounts/account-0.json")]
    pub funder: PathBuf,
    /// Sender accounts to create and fund.
    #[arg(long, default_value_t = 10_000)]
    pub accounts: usize,
    /// Offered load, transfers per second; a comma-separated list runs one
    /// step per rate, to find where the chain saturates.
    #[arg(long, value_delimiter = ',', default_value = "2000")]
    pub rate: Vec<u64>,
    /// Length of each step's measured window, seconds.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Transfers per `tx_sendBatch` call.
    #[arg(long, default_value_t = 200)]
    pub batch: usize,
    /// Seed of the sender keys.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write every figure to this JSON file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Draw throughput and latency against offered load in this SVG file
    /// (default: the --out file with an .svg extension).
    #[arg(long)]
    pub chart: Option<PathBuf>,
}

fn raw(tx: &SignedTransaction) -> String {
    format!("0x{}", hex::encode(tx.encode()))
}

struct Chain {
    chain_id: ChainId,
    fee: Amount,
    usdt: Symbol,
    expiry: u64,
}

fn sign(chain: &Chain, key: &Keypair, nonce: u64, payload: Payload) -> SignedTransaction {
    Transaction {
        chain_id: chain.chain_id,
        sender: key.address(),
        nonce,
        max_fee: chain.fee,
        expiry_height: chain.expiry,
        payload,
    }
    .sign(key)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Statuses of `hashes` on one node, 100 at a time.
async fn statuses(c: &HttpClient, hashes: &[TxHash]) -> Result<Vec<Value>> {
    let mut out = Vec::with_capacity(hashes.len());
    for chunk in hashes.chunks(100) {
        let strs: Vec<String> = chunk.iter().map(ToString::to_string).collect();
        let st = call(c, "tx_getStatuses", rpc_params![strs]).await?;
        out.extend(st.as_array().cloned().unwrap_or_default());
    }
    Ok(out)
}

/// Waits until every hash is final (or fails after `secs`).
async fn wait_final(c: &HttpClient, hashes: &[TxHash], secs: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut left: Vec<TxHash> = hashes.to_vec();
    while !left.is_empty() {
        if Instant::now() > deadline {
            bail!(
                "{} funding transactions not final after {secs} s",
                left.len()
            );
        }
        let st = statuses(c, &left).await?;
        let mut still = Vec::new();
        for (h, s) in left.iter().zip(st) {
            match s["status"].as_str() {
                Some("finalized") => {}
                Some("failed") => bail!("funding transaction {h} failed: {}", s["reason"]),
                _ => still.push(*h),
            }
        }
        left = still;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// This machine's ed25519 batch verification rate on one core, in batches
/// of 1024, every signature by a different key (so the nodes' cache of
/// decompressed keys does not flatter it): the textbook ceiling. The median
/// of [`VERIFY_ROUNDS`] rounds, each of its own signatures: one round was
/// seen to run 25% slower than the next on a machine shared with others.
fn verify_rate() -> (f64, f64, f64) {
    let batches: Vec<Vec<_>> = (0..48u32)
        .map(|b| {
            (0..1024u32)
                .map(|i| {
                    let k = Keypair::derive_insecure(u64::from(b) + 1_000, &format!("verify-{i}"));
                    let msg = sou_types::Hash::domain("sou bench verify", &i.to_be_bytes());
                    (k.public(), msg, k.sign(&msg))
                })
                .collect()
        })
        .collect();
    let mut rates: Vec<f64> = batches
        .chunks(batches.len() / VERIFY_ROUNDS)
        .map(|round| {
            let start = Instant::now();
            let mut n = 0usize;
            for items in round {
                n += sou_types::crypto::verify_batch(items)
                    .iter()
                    .filter(|v| **v)
                    .count();
            }
            n as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    (rates[rates.len() / 2], rates[0], rates[rates.len() - 1])
}

/// Rounds of [`verify_rate`].
const VERIFY_ROUNDS: usize = 6;

/// A node's metrics page.
fn metrics_text(addr: &str) -> Option<String> {
    // A node busy at the end of a run can be slow to answer: one retry.
    (0..2).find_map(|_| metrics_text_once(addr))
}

fn metrics_text_once(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let addr = addr.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}

/// One value (`name` with its trailing space) from a node's metrics.
fn metric(addr: &str, name: &str) -> Option<f64> {
    metrics_text(addr)?
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
}

/// The cumulative buckets (upper bound in seconds, count) of a histogram
/// on a node's metrics page.
fn histogram(addr: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    metrics_text(addr)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, count) = rest.split_once("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// Quantiles (upper bucket bounds, ms) of what the histograms counted
/// between `before` and `after`, summed over nodes.
fn histogram_quantiles(before: &[Vec<(f64, f64)>], after: &[Vec<(f64, f64)>]) -> Value {
    let mut sum: Vec<(f64, f64)> = Vec::new();
    for (b, a) in before.iter().zip(after) {
        for (i, (le, n)) in a.iter().enumerate() {
            let d = n - b.get(i).map_or(0.0, |x| x.1);
            match sum.get_mut(i) {
                Some(slot) => slot.1 += d,
                None => sum.push((*le, d)),
            }
        }
    }
    let total = sum.last().map_or(0.0, |x| x.1);
    let q = |p: f64| {
        sum.iter()
            .find(|(_, n)| *n >= p * total && total > 0.0)
            .map(|(le, _)| {
                if le.is_finite() {
                    json!(le * 1e3)
                } else {
                    Value::Null
                }
            })
            .unwrap_or(Value::Null)
    };
    json!({"blocks": total, "p50": q(0.5), "p99": q(0.99)})
}

/// A node's CPU seconds and resident bytes, from its metrics endpoint.
fn process_sample(addr: &str) -> Option<(f64, f64)> {
    let text = metrics_text(addr)?;
    let get = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
    };
    Some((
        get("sou_process_cpu_seconds ")?,
        get("sou_process_resident_memory_bytes ")?,
    ))
}

/// Senders and the next nonce of each.
struct Senders {
    keys: Vec<Keypair>,
    nonces: Vec<u64>,
}

impl Senders {
    /// `n` transfers of one base unit, round-robin over senders (so each
    /// sender's nonces go out in order), each to the next sender.
    fn sign(&mut self, chain: &Chain, n: usize) -> Vec<(TxHash, String)> {
        let count = self.keys.len();
        (0..n)
            .map(|j| {
                let i = j % count;
                let payload = Payload::Transfer {
                    asset: chain.usdt,
                    to: self.keys[(i + 1) % count].address(),
                    amount: Amount(1),
                    memo: Memo::empty(),
                };
                let tx = sign(chain, &self.keys[i], self.nonces[i], payload);
                self.nonces[i] += 1;
                (tx.hash(), raw(&tx))
            })
            .collect()
    }
}

/// Time from a node proposing a block to committing it (its histogram).
const P2F: &str = "sou_proposal_to_finality_seconds";

/// A finalized block as the watcher saw it: when, height, hash, transfers.
type SeenBlock = (Instant, u64, String, usize);

/// What one step measured.
struct Step {
    figures: Value,
    /// Heights and hashes (on the first node) of the blocks it counted.
    blocks: Vec<(u64, String)>,
    /// Transfers counted as finalized.
    finalized: Vec<TxHash>,
}

/// One step: `rate` transfers per second for `duration` seconds.
#[allow(clippy::too_many_lines)]
async fn step(
    args: &BenchArgs,
    clients: &[HttpClient],
    load: Vec<(TxHash, String)>,
    rate: u64,
) -> Result<Step> {
    // Watch finalized blocks on the first node.
    let ws_url = args.rpc[0].replacen("http://", "ws://", 1);
    let ws = jsonrpsee::ws_client::WsClientBuilder::default()
        .max_response_size(256 * 1024 * 1024)
        .build(&ws_url)
        .await
        .with_context(|| format!("WebSocket {ws_url}"))?;
    let mut sub = ws
        .subscribe::<Value, _>(
            "chain_subscribeFinalized",
            rpc_params![],
            "chain_unsubscribeFinalized",
        )
        .await?;
    let finalized: Arc<Mutex<HashMap<TxHash, Instant>>> = Arc::default();
    let blocks: Arc<Mutex<Vec<SeenBlock>>> = Arc::default();
    let watcher = {
        let finalized = finalized.clone();
        let blocks = blocks.clone();
        let c = client(&args.rpc[0])?;
        tokio::spawn(async move {
            while let Some(Ok(h)) = sub.next().await {
                let at = Instant::now();
                let Some(height) = h["height"].as_u64() else {
                    continue;
                };
                let Ok(b) = call(&c, "chain_getBlockByNumber", rpc_params![height, false]).await
                else {
                    continue;
                };
                let txs = b["transactions"].as_array().cloned().unwrap_or_default();
                let hash = b["hash"].as_str().unwrap_or_default().to_string();
                lock(&blocks).push((at, height, hash, txs.len()));
                let mut f = lock(&finalized);
                for t in txs {
                    if let Some(hash) = t.as_str().and_then(|s| s.parse::<TxHash>().ok()) {
                        f.insert(hash, at);
                    }
                }
            }
        })
    };
    // Processes: CPU at the start, resident memory sampled each second.
    let cpu0: Vec<Option<(f64, f64)>> = args.metrics.iter().map(|m| process_sample(m)).collect();
    let p2f0: Vec<Vec<(f64, f64)>> = args.metrics.iter().map(|m| histogram(m, P2F)).collect();
    let max_rss: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(vec![0.0; args.metrics.len()]));
    let sampler = {
        let metrics = args.metrics.clone();
        let max_rss = max_rss.clone();
        tokio::spawn(async move {
            loop {
                let m = metrics.clone();
                let samples = tokio::task::spawn_blocking(move || {
                    m.iter().map(|a| process_sample(a)).collect::<Vec<_>>()
                })
                .await
                .unwrap_or_default();
                {
                    let mut r = lock(&max_rss);
                    for (slot, s) in r.iter_mut().zip(samples) {
                        if let Some((_, rss)) = s {
                            *slot = slot.max(rss);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    // Open-loop load: every 10 ms, the transfers due by then.
    let submitted: Arc<Mutex<HashMap<TxHash, Instant>>> = Arc::default();
    let rejected = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut sent = 0usize;
    let mut tasks = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut next_client = 0usize;
    let mut last_progress = Instant::now();
    let total = load.len();
    while sent < total {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as usize).min(total);
        while sent < due {
            let end = (sent + args.batch).min(due);
            let chunk: Vec<(TxHash, String)> = load[sent..end].to_vec();
            sent = end;
            let c = clients[next_client % clients.len()].clone();
            next_client += 1;
            let submitted = submitted.clone();
            let rejected = rejected.clone();
            tasks.push(tokio::spawn(async move {
                let now = Instant::now();
                {
                    let mut s = lock(&submitted);
                    for (h, _) in &chunk {
                        s.insert(*h, now);
                    }
                }
                let raws: Vec<String> = chunk.into_iter().map(|(_, r)| r).collect();
                let bad = match call(&c, "tx_sendBatch", rpc_params![raws.clone()]).await {
                    Ok(r) => r.as_array().map_or(raws.len(), |a| {
                        a.iter().filter(|i| i.get("error").is_some()).count()
                    }),
                    Err(_) => raws.len(),
                };
                rejected.fetch_add(bad as u64, Ordering::Relaxed);
            }));
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            progress(start, sent, total, lock(&finalized).len(), args.duration);
        }
        if start.elapsed() > Duration::from_secs(args.duration * 3 + 30) {
            break;
        }
    }
    let offered_secs = start.elapsed().as_secs_f64();
    for t in tasks {
        let _ = t.await;
    }
    // Let the last transfers land.
    let drain = Instant::now() + Duration::from_secs(15);
    while Instant::now() < drain {
        let done = lock(&finalized).len();
        if done >= total.saturating_sub(rejected.load(Ordering::Relaxed) as usize) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    progress(start, sent, total, lock(&finalized).len(), args.duration);
    eprintln!();
    watcher.abort();
    sampler.abort();
    let cpu1: Vec<Option<(f64, f64)>> = args.metrics.iter().map(|m| process_sample(m)).collect();
    let p2f1: Vec<Vec<(f64, f64)>> = args.metrics.iter().map(|m| histogram(m, P2F)).collect();
    let elapsed = start.elapsed().as_secs_f64();

    // Figures, from what the chain finalized.
    let submitted = lock(&submitted).clone();
    let finalized = lock(&finalized).clone();
    let mut latencies: Vec<f64> = Vec::new();
    // Latencies by the second of the window a transfer was submitted in:
    // a backlog at the start or a stall partway shows up here, where the
    // whole window's percentiles only say that something was slow.
    let mut by_second: Vec<Vec<f64>> = vec![Vec::new(); offered_secs.ceil() as usize + 1];
    let mut counted = Vec::new();
    let mut last_final = start;
    for (h, at) in &submitted {
        if let Some(f) = finalized.get(h) {
            let ms = f.duration_since(*at).as_secs_f64() * 1e3;
            latencies.push(ms);
            let last = by_second.len() - 1;
            let second = at.duration_since(start).as_secs() as usize;
            by_second[second.min(last)].push(ms);
            last_final = last_final.max(*f);
            counted.push(*h);
        }
    }
    latencies.sort_by(f64::total_cmp);
    let by_second: Vec<Value> = by_second
        .into_iter()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(second, mut l)| {
            l.sort_by(f64::total_cmp);
            json!({
                "second": second,
                "finalized": l.len(),
                "p50": percentile(&l, 0.50),
                "p99": percentile(&l, 0.99),
                "max": l.last().copied().unwrap_or(0.0),
            })
        })
        .collect();
    let window = last_final
        .duration_since(start)
        .as_secs_f64()
        .max(offered_secs);
    let count = latencies.len();
    let tps = count as f64 / window;
    let blocks = lock(&blocks).clone();
    let in_window: Vec<&SeenBlock> = blocks
        .iter()
        .filter(|(t, ..)| *t >= start && *t <= last_final)
        .collect();
    let blocks_per_s = in_window.len() as f64 / window;
    let txs_per_block = if in_window.is_empty() {
        0.0
    } else {
        in_window.iter().map(|b| b.3 as f64).sum::<f64>() / in_window.len() as f64
    };
    let rejected = rejected.load(Ordering::Relaxed);
    let not_final = (total as u64).saturating_sub(count as u64 + rejected);
    let nodes: Vec<Value> = args
        .metrics
        .iter()
        .enumerate()
        .map(|(i, m)| {
            // Unknown (null) if the node did not answer either time.
            let cpu = match (cpu0[i], cpu1[i]) {
                (Some((a, _)), Some((b, _))) => json!((b - a) / elapsed * 100.0),
                _ => Value::Null,
            };
            json!({"metrics": m, "cpu_percent": cpu, "max_rss_bytes": lock(&max_rss)[i]})
        })
        .collect();
    let max_rss_bytes = lock(&max_rss).iter().copied().fold(0.0, f64::max);
    let figures = json!({
        "offered_tps": rate,
        "duration_s": args.duration,
        "submitted": total,
        "finalized": count,
        "finalized_tps": tps,
        "rejected": rejected,
        "not_finalized": not_final,
        "latency_ms": {
            "p50": percentile(&latencies, 0.50),
            "p90": percentile(&latencies, 0.90),
            "p99": percentile(&latencies, 0.99),
            "max": latencies.last().copied().unwrap_or(0.0),
        },
        "blocks_per_s": blocks_per_s,
        "txs_per_block": txs_per_block,
        "max_rss_bytes": max_rss_bytes,
        "proposal_to_finality_ms": histogram_quantiles(&p2f0, &p2f1),
        "latency_by_submission_second_ms": by_second,
        "processes": nodes,
    });
    let blocks = blocks.iter().map(|b| (b.1, b.2.clone())).collect();
    Ok(Step {
        figures,
        blocks,
        finalized: counted,
    })
}

fn progress(start: Instant, sent: usize, total: usize, finalized: usize, duration: u64) {
    let secs = start.elapsed().as_secs_f64().max(0.001);
    let width = 30usize;
    let done = (sent * width).checked_div(total).unwrap_or(width);
    eprint!(
        "\r  [{}{}] {:>3.0}/{duration} s  offered {:>7.0}/s  finalized {:>7.0}/s  ",
        "#".repeat(done),
        ".".repeat(width - done),
        secs,
        sent as f64 / secs,
        finalized as f64 / secs,
    );
}

/// How long a node that is behind (catching up by sync) is given to reach
/// the last counted block before the self-check fails.
const CATCH_UP_SECS: u64 = 60;

/// The self-check: every counted block has the same hash on every node;
/// counted transfers' receipts (failed or not) come from node 0. A node
/// still catching up is waited for (at most [`CATCH_UP_SECS`]): a block it
/// does not have yet is not a different block.
async fn check_blocks(clients: &[HttpClient], blocks: &[(u64, String)]) -> Result<()> {
    let Some(last) = blocks.iter().map(|(h, _)| *h).max() else {
        return Ok(());
    };
    for (i, c) in clients.iter().enumerate().skip(1) {
        let deadline = Instant::now() + Duration::from_secs(CATCH_UP_SECS);
        loop {
            let st = call(c, "node_status", rpc_params![]).await?;
            let height = st["finalizedHeight"].as_u64().unwrap_or(0);
            if height >= last {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "self-check: node {i} is at height {height}, behind block {last}, \
                     after {CATCH_UP_SECS} s"
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for (height, hash) in blocks {
            let b = call(c, "chain_getBlockByNumber", rpc_params![*height, false]).await?;
            if b["hash"].as_str() != Some(hash.as_str()) {
                bail!(
                    "self-check: block {height} differs between nodes: {hash} on node 0, \
                     {} on node {i}",
                    b["hash"]
                );
            }
        }
    }
    Ok(())
}

/// Counted transfers that finalized with a failed receipt.
async fn count_failed(c: &HttpClient, hashes: &[TxHash]) -> Result<u64> {
    let mut failed = 0u64;
    for s in statuses(c, hashes).await? {
        match s["status"].as_str() {
            Some("failed") => failed += 1,
            Some("finalized") => {}
            other => bail!("self-check: a counted transfer is {other:?} on the first node"),
        }
    }
    Ok(failed)
}

/// The senders' stablecoin and nonces (transactions included, each of
/// which paid a fee), summed, on one node.
async fn senders_total(c: &HttpClient, senders: &[Keypair], asset: Symbol) -> Result<(u128, u128)> {
    let (mut sum, mut nonces) = (0u128, 0u128);
    let symbol = asset.to_string();
    for k in senders {
        // One read gives both, from one state.
        let a = call(c, "account_get", rpc_params![k.address().to_string()]).await?;
        nonces += u128::from(a["nonce"].as_u64().unwrap_or(0));
        sum += a["balances"]
            .as_array()
            .and_then(|bs| bs.iter().find(|b| b["asset"] == symbol.as_str()))
            .and_then(|b| b["amount"].as_str()?.parse::<u128>().ok())
            .unwrap_or(0);
    }
    Ok((sum, nonces))
}

/// Throughput and latency against offered load, as an SVG line chart.
fn chart(steps: &[Value], ceiling: f64) -> String {
    let (w, h, pad) = (720.0, 420.0, 60.0);
    let offered: Vec<f64> = steps
        .iter()
        .map(|s| s["offered_tps"].as_f64().unwrap_or(0.0))
        .collect();
    let tps: Vec<f64> = steps
        .iter()
        .map(|s| s["finalized_tps"].as_f64().unwrap_or(0.0))
        .collect();
    let p50: Vec<f64> = steps
        .iter()
        .map(|s| s["latency_ms"]["p50"].as_f64().unwrap_or(0.0))
        .collect();
    let p99: Vec<f64> = steps
        .iter()
        .map(|s| s["latency_ms"]["p99"].as_f64().unwrap_or(0.0))
        .collect();
    let x_max = offered.iter().copied().fold(1.0, f64::max) * 1.05;
    let y_max = tps.iter().chain(&offered).copied().fold(ceiling, f64::max) * 1.05;
    let l_max = p99.iter().copied().fold(1.0, f64::max) * 1.1;
    let x = |v: f64| pad + v / x_max * (w - 2.0 * pad);
    let y = |v: f64, max: f64| h - pad - v / max * (h - 2.0 * pad);
    let line = |ys: &[f64], max: f64, color: &str, dash: &str| {
        let pts: Vec<String> = offered
            .iter()
            .zip(ys)
            .map(|(a, b)| format!("{:.1},{:.1}", x(*a), y(*b, max)))
            .collect();
        format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\" points=\"{}\"/>",
            pts.join(" ")
        )
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    svg += &format!(
        "<line x1=\"{pad}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"black\"/><line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{0}\" stroke=\"black\"/><line x1=\"{1}\" y1=\"{pad}\" x2=\"{1}\" y2=\"{0}\" stroke=\"black\"/>\n",
        h - pad,
        w - pad
    );
    for i in 0..=4 {
        let f = f64::from(i) / 4.0;
        svg += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.0}</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.0}</text><text x=\"{:.1}\" y=\"{:.1}\">{:.0}</text>\n",
            x(f * x_max),
            h - pad + 16.0,
            f * x_max,
            pad - 4.0,
            y(f * y_max, y_max) + 4.0,
            f * y_max,
            w - pad + 4.0,
            y(f * l_max, l_max) + 4.0,
            f * l_max
        );
    }
    svg += &format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">offered transfers/s</text>\n<text x=\"{pad}\" y=\"{:.1}\">finalized transfers/s (left), latency ms (right)</text>\n",
        w / 2.0,
        h - 16.0,
        pad - 20.0
    );
    if ceiling > 0.0 {
        svg += &format!(
            "<line x1=\"{pad}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"gray\" stroke-dasharray=\"2 4\"/><text x=\"{2:.1}\" y=\"{3:.1}\" fill=\"gray\">verification ceiling {ceiling:.0}/s</text>\n",
            y(ceiling, y_max),
            w - pad,
            pad + 6.0,
            y(ceiling, y_max) - 4.0
        );
    }
    svg += &line(&offered, y_max, "#bbbbbb", "4 4");
    svg += &line(&tps, y_max, "#1f77b4", "");
    svg += &line(&p50, l_max, "#2ca02c", "");
    svg += &line(&p99, l_max, "#d62728", "");
    let legend = [
        ("#1f77b4", "finalized/s"),
        ("#bbbbbb", "offered/s"),
        ("#2ca02c", "latency p50"),
        ("#d62728", "latency p99"),
    ];
    for (i, (color, label)) in legend.iter().enumerate() {
        let ly = pad + 14.0 * i as f64;
        svg += &format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\">{label}</text>\n",
            pad + 10.0,
            ly,
            pad + 24.0,
            ly + 9.0
        );
    }
    svg += "</svg>\n";
    svg
}

#[allow(clippy::too_many_lines)]
pub async fn run(args: BenchArgs) -> Result<()> {
    if args.rpc.is_empty()
        || args.accounts == 0
        || args.rate.is_empty()
        || args.rate.contains(&0)
        || args.duration == 0
    {
        bail!("--rpc, --accounts, --rate and --duration must be non-empty and positive");
    }
    let clients: Vec<HttpClient> = args.rpc.iter().map(|u| client(u)).collect::<Result<_>>()?;
    let c0 = &clients[0];
    let params = call(c0, "chain_getParams", rpc_params![]).await?;
    let height = call(c0, "node_status", rpc_params![]).await?["latestHeight"]
        .as_u64()
        .unwrap_or(0);
    let chain = Chain {
        chain_id: ChainId::new(params["chainId"].as_str().unwrap_or_default())?,
        fee: params["txFee"].as_str().unwrap_or("0").parse()?,
        usdt: params["feeAsset"].as_str().unwrap_or("USDT").parse()?,
        expiry: height
            + params["maxTxLifetimeBlocks"]
                .as_u64()
                .unwrap_or(1_000)
                .min(100_000),
    };
    let validators = call(c0, "chain_getValidators", rpc_params![]).await?["validators"]
        .as_array()
        .map_or(1, Vec::len)
        .max(1);

    // The ceiling every validator's signature checks set on this machine.
    println!("measuring ed25519 batch verification on one core...");
    let (rate_one_core, slowest, fastest) = tokio::task::spawn_blocking(verify_rate).await?;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let ceiling = rate_one_core * cores as f64 / validators as f64;
    let backend = sou_types::crypto::verify_backend();
    println!(
        "  {rate_one_core:.0} signatures/s per core ({backend}; median of {VERIFY_ROUNDS} rounds, {slowest:.0}-{fastest:.0}) x {cores} cores / {validators} validators = ceiling {ceiling:.0} transfers/s"
    );

    // Fund the senders (fees for every transfer of every step, plus the
    // base unit each moves), in batch transfers.
    let funder = KeyFile::read(&args.funder)?;
    let mut senders = Senders {
        keys: (0..args.accounts)
            .map(|i| Keypair::derive_insecure(args.seed, &format!("bench-sender-{i}")))
            .collect(),
        nonces: vec![0; args.accounts],
    };
    let grand_total: u64 = args.rate.iter().map(|r| r * args.duration).sum();
    let per_sender = (grand_total as usize).div_ceil(args.accounts);
    let each = Amount(((chain.fee.0 + 1) * per_sender as u128) + chain.fee.0 * 2);
    let mut nonce = call(c0, "account_get", rpc_params![funder.address().to_string()]).await?
        ["nonce"]
        .as_u64()
        .unwrap_or(0);
    let first = senders.keys[0].address().to_string();
    if call(c0, "account_get", rpc_params![first]).await?["nonce"]
        .as_u64()
        .unwrap_or(0)
        > 0
    {
        bail!(
            "the sender accounts of seed {} were used before: pass another --seed",
            args.seed
        );
    }
    let mut funding = Vec::new();
    for group in senders.keys.chunks(200) {
        let payouts = Payouts::new(
            group
                .iter()
                .map(|k| Payout {
                    to: k.address(),
                    amount: each,
                })
                .collect(),
        )?;
        let payload = Payload::BatchTransfer {
            asset: chain.usdt,
            payouts,
            memo: Memo::empty(),
        };
        funding.push(sign(&chain, &funder, nonce, payload));
        nonce += 1;
    }
    println!(
        "funding {} sender accounts with {} transactions...",
        senders.keys.len(),
        funding.len()
    );
    let raws: Vec<String> = funding.iter().map(raw).collect();
    for chunk in raws.chunks(200) {
        let r = call(c0, "tx_sendBatch", rpc_params![chunk.to_vec()]).await?;
        for item in r.as_array().cloned().unwrap_or_default() {
            if let Some(e) = item.get("error") {
                bail!("funding rejected: {}", e["message"]);
            }
        }
    }
    let hashes: Vec<TxHash> = funding.iter().map(SignedTransaction::hash).collect();
    wait_final(c0, &hashes, 120).await?;
    let funded = each.0 * senders.keys.len() as u128;

    let mut steps = Vec::new();
    let mut included = 0u128;
    for &rate in &args.rate {
        let n = (rate * args.duration) as usize;
        println!("step: pre-signing {n} transfers...");
        let load = senders.sign(&chain, n);
        println!(
            "step: offering {rate} transfers/s for {} s to {} node(s)",
            args.duration,
            clients.len()
        );
        let mut s = step(&args, &clients, load, rate).await?;
        check_blocks(&clients, &s.blocks).await?;
        let failed = count_failed(c0, &s.finalized).await?;
        included += s.finalized.len() as u128;
        let tps = s.figures["finalized_tps"].as_f64().unwrap_or(0.0);
        s.figures["failed"] = json!(failed);
        s.figures["verify_ceiling_tps"] = json!(ceiling);
        s.figures["ceiling_share"] = json!(if ceiling > 0.0 { tps / ceiling } else { 0.0 });
        print_step(&s.figures);
        steps.push(s.figures);
        // Transfers that never made it leave nonce gaps: the next step
        // starts each sender at the chain's nonce.
        let lost = steps.last().map_or(0, |f: &Value| {
            f["not_finalized"].as_u64().unwrap_or(0) + f["rejected"].as_u64().unwrap_or(0)
        });
        if lost > 0 {
            for (i, k) in senders.keys.iter().enumerate() {
                senders.nonces[i] = call(c0, "account_get", rpc_params![k.address().to_string()])
                    .await?["nonce"]
                    .as_u64()
                    .unwrap_or(0);
            }
        }
    }

    // Balances add up on every node: transfers between senders move
    // nothing out; every included transfer (each sender's nonce counts
    // them, those finalized after a step's window too) paid one fee, and
    // the ones this run counted are among them.
    // First let what is still pending land (or expire), so that every node
    // reads a settled state.
    let settle = Instant::now() + Duration::from_secs(120);
    while Instant::now() < settle {
        let metrics = args.metrics.clone();
        let pending: f64 = tokio::task::spawn_blocking(move || {
            metrics
                .iter()
                .map(|m| metric(m, "sou_mempool_transactions ").unwrap_or(0.0))
                .sum()
        })
        .await?;
        if pending == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut balances_ok = true;
    for (i, c) in clients.iter().enumerate() {
        let (got, nonces) = senders_total(c, &senders.keys, chain.usdt).await?;
        let expected = funded.saturating_sub(nonces * chain.fee.0);
        if got != expected || nonces < included {
            balances_ok = false;
            eprintln!(
                "self-check: node {i} holds {got} for the senders after {nonces} transfers, expected {expected} (and at least {included} transfers)"
            );
        }
    }
    if !balances_ok {
        bail!("self-check failed: balances do not add up");
    }
    println!(
        "self-check: every counted block is the same on every node; balances add up on every node"
    );

    // The best step is the headline.
    let best = steps
        .iter()
        .max_by(|a, b| {
            a["finalized_tps"]
                .as_f64()
                .unwrap_or(0.0)
                .total_cmp(&b["finalized_tps"].as_f64().unwrap_or(0.0))
        })
        .cloned()
        .unwrap_or(Value::Null);
    let mut report = best.clone();
    report["nodes"] = json!(args.rpc);
    report["validators"] = json!(validators);
    report["cores"] = json!(cores);
    report["verify_rate_per_core"] = json!(rate_one_core);
    report["verify_backend"] = json!(backend);
    report["steps"] = json!(steps);
    report["self_check"] = json!("passed");
    if args.rate.len() > 1 {
        println!(
            "\nsaturation: best {:.0} finalized transfers/s at an offered {} /s ({:.0}% of the ceiling)",
            best["finalized_tps"].as_f64().unwrap_or(0.0),
            best["offered_tps"],
            best["ceiling_share"].as_f64().unwrap_or(0.0) * 100.0
        );
    }
    let chart_path = args
        .chart
        .clone()
        .or_else(|| args.out.as_ref().map(|p| p.with_extension("svg")));
    if let Some(path) = &chart_path {
        std::fs::write(path, chart(&steps, ceiling))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("  chart written to {}", path.display());
    }
    if let Some(path) = &args.out {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("  figures written to {}", path.display());
    }
    Ok(())
}

fn print_step(f: &Value) {
    let n = |v: &Value| v.as_f64().unwrap_or(0.0);
    println!(
        "  offered               {:>10} transfers/s for {} s",
        f["offered_tps"], f["duration_s"]
    );
    println!(
        "  finalized             {:>10.0} transfers/s ({} of {}); {:.0}% of the {:.0}/s ceiling",
        n(&f["finalized_tps"]),
        f["finalized"],
        f["submitted"],
        n(&f["ceiling_share"]) * 100.0,
        n(&f["verify_ceiling_tps"])
    );
    println!(
        "  rejected / failed / not final  {} / {} / {}",
        f["rejected"], f["failed"], f["not_finalized"]
    );
    println!(
        "  latency ms            p50 {:.0}  p90 {:.0}  p99 {:.0}  max {:.0}",
        n(&f["latency_ms"]["p50"]),
        n(&f["latency_ms"]["p90"]),
        n(&f["latency_ms"]["p99"]),
        n(&f["latency_ms"]["max"])
    );
    println!(
        "  blocks                {:>10.2} /s, {:.0} transfers per block",
        n(&f["blocks_per_s"]),
        n(&f["txs_per_block"])
    );
    let p2f = &f["proposal_to_finality_ms"];
    if p2f["blocks"].as_f64().unwrap_or(0.0) > 0.0 {
        // A quantile past the last bucket is null.
        let bound = |v: &Value| {
            v.as_f64()
                .map_or_else(|| "> 5000".to_string(), |ms| format!("<= {ms:.0}"))
        };
        println!(
            "  proposal to finality  p50 {} ms  p99 {} ms (histogram bounds)",
            bound(&p2f["p50"]),
            bound(&p2f["p99"])
        );
    }
    for p in f["processes"].as_array().cloned().unwrap_or_default() {
        let cpu = p["cpu_percent"]
            .as_f64()
            .map_or_else(|| "    ?".to_string(), |c| format!("{c:>5.0}"));
        println!(
            "  node {:<22} cpu {cpu}%  max rss {:>6.0} MiB",
            p["metrics"].as_str().unwrap_or(""),
            n(&p["max_rss_bytes"]) / 1_048_576.0
        );
    }
}
