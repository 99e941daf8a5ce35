//! `sou bench`: how many transfers per second a running chain finalizes,
//! and how long each takes from submission to finality.
//!
//! It creates and funds sender accounts through ordinary transactions,
//! pre-signs the whole load before the clock starts (signing is not
//! measured), submits it open-loop at the target rate in `tx_sendBatch`
//! calls spread over the given nodes, and measures from the chain: a
//! transfer counts when a finalized block (seen through the
//! `chain_subscribeFinalized` subscription) contains it.

use std::collections::HashMap;
use std::path::PathBuf;
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
    /// Key file of a funded account that pays for the sender accounts.
    #[arg(long, default_value = ".testnet/accounts/account-0.json")]
    pub funder: PathBuf,
    /// Sender accounts to create and fund.
    #[arg(long, default_value_t = 1_000)]
    pub accounts: usize,
    /// Offered load, transfers per second.
    #[arg(long, default_value_t = 2_000)]
    pub rate: u64,
    /// Length of the measured window, seconds.
    #[arg(long, default_value_t = 20)]
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
}

fn raw(tx: &SignedTransaction) -> String {
    format!("0x{}", hex::encode(tx.encode()))
}

struct Chain {
    chain_id: ChainId,
    fee: Amount,
    usdt: Symbol,
}

fn sign(
    chain: &Chain,
    key: &Keypair,
    nonce: u64,
    expiry: u64,
    payload: Payload,
) -> SignedTransaction {
    Transaction {
        chain_id: chain.chain_id.clone(),
        sender: key.address(),
        nonce,
        max_fee: chain.fee,
        expiry_height: expiry,
        payload,
    }
    .sign(key)
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
        let mut still = Vec::new();
        for chunk in left.chunks(100) {
            let strs: Vec<String> = chunk.iter().map(ToString::to_string).collect();
            let st = call(c, "tx_getStatuses", rpc_params![strs]).await?;
            for (h, s) in chunk.iter().zip(st.as_array().cloned().unwrap_or_default()) {
                match s["status"].as_str() {
                    Some("finalized") => {}
                    Some("failed") => bail!("funding transaction {h} failed: {}", s["reason"]),
                    _ => still.push(*h),
                }
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

pub async fn run(args: BenchArgs) -> Result<()> {
    if args.rpc.is_empty() || args.accounts == 0 || args.rate == 0 || args.duration == 0 {
        bail!("--rpc, --accounts, --rate and --duration must be non-empty and positive");
    }
    let clients: Vec<HttpClient> = args.rpc.iter().map(|u| client(u)).collect::<Result<_>>()?;
    let c0 = &clients[0];
    let params = call(c0, "chain_getParams", rpc_params![]).await?;
    let chain = Chain {
        chain_id: ChainId::new(params["chainId"].as_str().unwrap_or_default())?,
        fee: params["txFee"].as_str().unwrap_or("0").parse()?,
        usdt: params["feeAsset"].as_str().unwrap_or("USDT").parse()?,
    };
    let height = call(c0, "node_status", rpc_params![]).await?["latestHeight"]
        .as_u64()
        .unwrap_or(0);
    let expiry = height
        + params["maxTxLifetimeBlocks"]
            .as_u64()
            .unwrap_or(1_000)
            .min(100_000);
    let funder = KeyFile::read(&args.funder)?;
    let senders: Vec<Keypair> = (0..args.accounts)
        .map(|i| Keypair::derive_insecure(args.seed, &format!("bench-sender-{i}")))
        .collect();
    let total = (args.rate * args.duration) as usize;
    let per_sender = total.div_ceil(args.accounts);
    let nonce_window = 256usize;
    if per_sender > nonce_window * 4 {
        eprintln!("note: {per_sender} transfers per sender; use more --accounts for high rates");
    }

    // 1. Fund the senders (fees for every transfer they will send, plus the
    //    one base unit each transfer moves), in batch transfers.
    let each = Amount(((chain.fee.0 + 1) * per_sender as u128) + chain.fee.0 * 2);
    let mut nonce = call(c0, "account_get", rpc_params![funder.address().to_string()]).await?
        ["nonce"]
        .as_u64()
        .unwrap_or(0);
    let mut funding = Vec::new();
    for group in senders.chunks(200) {
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
        funding.push(sign(&chain, &funder, nonce, expiry, payload));
        nonce += 1;
    }
    println!(
        "funding {} sender accounts with {} txs...",
        senders.len(),
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

    // 2. Pre-sign everything, round-robin over senders so that each
    //    sender's nonces are sent in order.
    println!("pre-signing {total} transfers...");
    let mut load: Vec<(TxHash, String)> = Vec::with_capacity(total);
    'outer: for k in 0..per_sender {
        for (i, key) in senders.iter().enumerate() {
            if load.len() >= total {
                break 'outer;
            }
            let to = senders[(i + 1) % senders.len()].address();
            let payload = Payload::Transfer {
                asset: chain.usdt,
                to,
                amount: Amount(1),
                memo: Memo::empty(),
            };
            let tx = sign(&chain, key, k as u64, expiry, payload);
            load.push((tx.hash(), raw(&tx)));
        }
    }

    // 3. Watch finalized blocks.
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
    let blocks: Arc<Mutex<Vec<(Instant, usize)>>> = Arc::default();
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
                blocks
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((at, txs.len()));
                let mut f = finalized
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for t in txs {
                    if let Some(hash) = t.as_str().and_then(|s| s.parse::<TxHash>().ok()) {
                        f.insert(hash, at);
                    }
                }
            }
        })
    };

    // 4. Open-loop load: every 10 ms, the transfers due by then.
    println!(
        "offering {} transfers/s for {} s to {} node(s)...",
        args.rate,
        args.duration,
        clients.len()
    );
    let submitted: Arc<Mutex<HashMap<TxHash, Instant>>> = Arc::default();
    let rejected = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let mut sent = 0usize;
    let mut tasks = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut next_client = 0usize;
    while sent < load.len() {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * args.rate as f64) as usize).min(load.len());
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
                    let mut s = submitted
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    for (h, _) in &chunk {
                        s.insert(*h, now);
                    }
                }
                let raws: Vec<String> = chunk.into_iter().map(|(_, r)| r).collect();
                match call(&c, "tx_sendBatch", rpc_params![raws.clone()]).await {
                    Ok(r) => {
                        let bad = r.as_array().map_or(raws.len(), |a| {
                            a.iter().filter(|i| i.get("error").is_some()).count()
                        });
                        rejected.fetch_add(bad as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(_) => {
                        rejected.fetch_add(raws.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }));
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
        let done = finalized
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len();
        if done >= load.len() - rejected.load(std::sync::atomic::Ordering::Relaxed) as usize {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watcher.abort();

    // 5. Figures.
    let submitted = submitted
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let finalized = finalized
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut latencies: Vec<f64> = Vec::new();
    let mut last_final = start;
    for (h, at) in &submitted {
        if let Some(f) = finalized.get(h) {
            latencies.push(f.duration_since(*at).as_secs_f64() * 1e3);
            last_final = last_final.max(*f);
        }
    }
    latencies.sort_by(f64::total_cmp);
    let window = last_final
        .duration_since(start)
        .as_secs_f64()
        .max(offered_secs);
    let count = latencies.len();
    let tps = count as f64 / window;
    let blocks = blocks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let in_window: Vec<&(Instant, usize)> = blocks
        .iter()
        .filter(|(t, _)| *t >= start && *t <= last_final)
        .collect();
    let blocks_per_s = in_window.len() as f64 / window;
    let txs_per_block = if in_window.is_empty() {
        0.0
    } else {
        in_window.iter().map(|(_, n)| *n as f64).sum::<f64>() / in_window.len() as f64
    };
    let rejected = rejected.load(std::sync::atomic::Ordering::Relaxed);
    let lost = load.len() as u64 - count as u64 - rejected;
    let fig = json!({
        "offered_tps": args.rate,
        "duration_s": args.duration,
        "nodes": args.rpc,
        "submitted": load.len(),
        "finalized": count,
        "finalized_tps": tps,
        "rejected": rejected,
        "not_finalized": lost,
        "latency_ms": {
            "p50": percentile(&latencies, 0.50),
            "p90": percentile(&latencies, 0.90),
            "p99": percentile(&latencies, 0.99),
            "max": latencies.last().copied().unwrap_or(0.0),
        },
        "blocks_per_s": blocks_per_s,
        "txs_per_block": txs_per_block,
    });
    println!();
    println!(
        "  offered               {:>10} transfers/s for {} s",
        args.rate, args.duration
    );
    println!(
        "  finalized             {:>10.0} transfers/s ({count} of {})",
        tps,
        load.len()
    );
    println!("  rejected / not final  {:>10} / {lost}", rejected);
    println!(
        "  latency ms            p50 {:.0}  p90 {:.0}  p99 {:.0}  max {:.0}",
        fig["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
        fig["latency_ms"]["p90"].as_f64().unwrap_or(0.0),
        fig["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
        fig["latency_ms"]["max"].as_f64().unwrap_or(0.0)
    );
    println!(
        "  blocks                {:>10.2} /s, {:.0} transfers per block",
        blocks_per_s, txs_per_block
    );
    if let Some(path) = &args.out {
        std::fs::write(path, serde_json::to_string_pretty(&fig)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("  figures written to {}", path.display());
    }
    Ok(())
}
