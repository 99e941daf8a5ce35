//! Executes and commits blocks of transfers and prints transfers per second,
//! with ed25519 signature verification measured on its own.
//!
//! ```sh
//! cargo bench -p sou-ledger --bench execute -- [--accounts 10000] [--txs 10000] [--blocks 5] [--skip-verify] [--per-block]
//! ```
//! Everything runs on one thread, so the figures are per core.

use std::time::{Duration, Instant};

use sou_ledger::state::AssetRoles;
use sou_ledger::{
    precheck, Candidate, GenesisAsset, GenesisState, GenesisValidator, Ledger, Mempool,
    MempoolConfig, Params,
};
use sou_types::asset::NATIVE;
use sou_types::crypto::verify_batch;
use sou_types::{Amount, ChainId, Keypair, Memo, Payload, SignedTransaction, Symbol, Transaction};

struct Args {
    accounts: usize,
    txs: usize,
    blocks: usize,
    /// Skip the verification stages (to profile execution and commit alone).
    skip_verify: bool,
    /// Print each block's execute and commit times.
    per_block: bool,
}

fn args() -> Args {
    let mut a = Args {
        accounts: 10_000,
        txs: 10_000,
        blocks: 5,
        skip_verify: false,
        per_block: false,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let value = || argv.get(i + 1).and_then(|v| v.parse().ok());
        match argv[i].as_str() {
            "--accounts" => a.accounts = value().expect("--accounts N"),
            "--txs" => a.txs = value().expect("--txs N"),
            "--blocks" => a.blocks = value().expect("--blocks N"),
            "--skip-verify" => a.skip_verify = true,
            "--per-block" => a.per_block = true,
            _ => {} // cargo bench passes --bench
        }
        i += 1;
    }
    a
}

/// A small deterministic generator, so every run measures the same blocks.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// CPU time used so far by the calling thread (user and system).
fn thread_cpu() -> Duration {
    cpu_of(nix::sys::resource::UsageWho::RUSAGE_THREAD)
}

/// CPU time used so far by the whole process: RocksDB's background
/// flushes and compactions included.
fn process_cpu() -> Duration {
    cpu_of(nix::sys::resource::UsageWho::RUSAGE_SELF)
}

fn cpu_of(who: nix::sys::resource::UsageWho) -> Duration {
    let usage = nix::sys::resource::getrusage(who).expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(usage.user_time()) + tv(usage.system_time())
}

fn per_second(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let a = args();
    let usdt = Symbol::new("USDT").unwrap();
    let keys: Vec<Keypair> = (0..a.accounts)
        .map(|i| Keypair::derive_insecure(1, &format!("bench-{i}")))
        .collect();
    let validator = Keypair::derive_insecure(1, "bench-validator");
    let mut params = Params::dev(usdt);
    params.max_block_txs = a.txs as u32;
    params.max_block_bytes = 64 << 20;
    let genesis = GenesisState {
        chain_id: ChainId::new("sou-bench").unwrap(),
        genesis_time_ms: 0,
        params,
        assets: vec![
            GenesisAsset {
                symbol: NATIVE,
                name: "Sou".into(),
                decimals: 9,
                roles: AssetRoles::default(),
                minters: vec![],
            },
            GenesisAsset {
                symbol: usdt,
                name: "Tether USD".into(),
                decimals: 6,
                roles: AssetRoles::default(),
                minters: vec![],
            },
        ],
        balances: keys
            .iter()
            .map(|k| (k.address(), usdt, Amount(1_000_000_000_000)))
            .collect(),
        validators: vec![GenesisValidator {
            operator: validator.address(),
            consensus_key: Keypair::derive_insecure(1, "bench-consensus").public(),
            commission_bps: 500,
            stake: Amount(1_000_000_000_000),
        }],
    };
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::init(&dir.path().join("db"), &genesis).unwrap();
    let chain_id = *ledger.chain_id();

    println!(
        "sou-ledger execute benchmark: {} blocks of {} transfers among {} accounts (one core)",
        a.blocks, a.txs, a.accounts
    );
    let sign_start = Instant::now();
    let mut rng = SplitMix(7);
    let mut nonces = vec![0u64; a.accounts];
    let blocks: Vec<Vec<SignedTransaction>> = (0..a.blocks as u64)
        .map(|b| {
            (0..a.txs)
                .map(|i| {
                    let from = i % a.accounts;
                    let to = (rng.next() % a.accounts as u64) as usize;
                    let nonce = nonces[from];
                    nonces[from] += 1;
                    Transaction {
                        chain_id,
                        sender: keys[from].address(),
                        nonce,
                        max_fee: Amount(100),
                        // Within the longest lifetime the mempool takes,
                        // and shared by a block's worth, as wallets do.
                        expiry_height: 1_000 + b,
                        payload: Payload::Transfer {
                            asset: usdt,
                            to: keys[to].address(),
                            amount: Amount(u128::from(1 + rng.next() % 1_000_000)),
                            memo: Memo::empty(),
                        },
                    }
                    .sign(&keys[from])
                })
                .collect()
        })
        .collect();
    println!(
        "  signed {} transfers in {:.2?} (not measured)",
        a.blocks * a.txs,
        sign_start.elapsed()
    );

    // Signature verification, as the mempool does it, in batches of
    // several sizes (a bigger batch amortises more).
    let batch_sizes = [64usize, 256, 1024];
    let mut verify_times = vec![Duration::ZERO; batch_sizes.len()];
    for txs in blocks.iter().filter(|_| !a.skip_verify) {
        let items: Vec<_> = txs
            .iter()
            .map(|t| (t.tx.sender.public_key(), t.hash(), t.signature))
            .collect();
        for (size, time) in batch_sizes.iter().zip(verify_times.iter_mut()) {
            let start = Instant::now();
            for chunk in items.chunks(*size) {
                assert!(verify_batch(chunk).iter().all(|ok| *ok));
            }
            *time += start.elapsed();
        }
    }
    let total = a.blocks * a.txs;
    let single: Vec<_> = blocks[0]
        .iter()
        .take(if a.skip_verify { 0 } else { 2_000 })
        .map(|t| (t.tx.sender.public_key(), t.hash(), t.signature))
        .collect();
    let start = Instant::now();
    for (pk, h, s) in &single {
        pk.verify(h, s).unwrap();
    }
    let single_time = start.elapsed();

    // The mempool's work on every transaction, as a validator does it:
    // admission (signatures taken as verified), selection for a block, and
    // the update after the block commits.
    let mut pool = Mempool::new(MempoolConfig {
        max_txs: 4 * a.txs,
        ..MempoolConfig::default()
    });
    let [mut precheck_cpu, mut admit_cpu, mut select_cpu, mut update_cpu] = [Duration::ZERO; 4];
    // Execution and commit, signatures taken as verified (as they are for
    // transactions that came through this node's mempool).
    let mut exec_time = Duration::ZERO;
    let mut commit_time = Duration::ZERO;
    let mut exec_cpu = Duration::ZERO;
    let mut commit_cpu = Duration::ZERO;
    // Each block's execute + commit, for the median and the fastest: the
    // mean moves with whatever else the machine runs, these move less.
    let mut per_block: Vec<Duration> = Vec::with_capacity(a.blocks);
    let process_start = process_cpu();
    for (i, txs) in blocks.into_iter().enumerate() {
        // Hashed on arrival, as the node does; a proposer's candidates come
        // from the pool with their hash and length.
        let hashed = txs
            .into_iter()
            .map(|tx| {
                let (hash, len) = tx.hash_and_len();
                (tx, hash, len)
            })
            .collect();
        let cpu = thread_cpu();
        let checked = precheck(hashed, &ledger, &|_, _| true);
        precheck_cpu += thread_cpu() - cpu;
        let cpu = thread_cpu();
        let admitted = pool.admit_verified(checked, &ledger);
        admit_cpu += thread_cpu() - cpu;
        assert!(admitted.iter().all(|r| r.is_ok()), "{:?}", admitted.first());
        let cpu = thread_cpu();
        let candidates: Vec<Candidate> = pool.select_after(a.txs, 64 << 20, &|_| false);
        select_cpu += thread_cpu() - cpu;
        assert_eq!(candidates.len(), a.txs);
        let included: Vec<_> = candidates.iter().map(|c| c.hash).collect();
        let block_start = Instant::now();
        let start = Instant::now();
        let cpu = thread_cpu();
        let (executed, applied) = ledger
            .propose(candidates, validator.address(), i as u64 + 1, &|_| true)
            .unwrap();
        exec_time += start.elapsed();
        exec_cpu += thread_cpu() - cpu;
        assert!(
            applied.invalid.is_empty() && applied.not_included == 0,
            "{:?}",
            applied.invalid.first()
        );
        assert!(executed.receipts.iter().all(|r| r.succeeded()));
        let start = Instant::now();
        let cpu = thread_cpu();
        ledger.commit(&executed).unwrap();
        commit_time += start.elapsed();
        commit_cpu += thread_cpu() - cpu;
        per_block.push(block_start.elapsed());
        let cpu = thread_cpu();
        pool.update(&included, &ledger).unwrap();
        update_cpu += thread_cpu() - cpu;
        assert!(pool.is_empty());
        if a.per_block {
            let took = block_start.elapsed();
            println!(
                "  block {:>3}: execute {:5.1} ms, commit {:5.1} ms",
                i + 1,
                (took - start.elapsed()).as_secs_f64() * 1e3,
                start.elapsed().as_secs_f64() * 1e3
            );
        }
    }
    // Every byte committed is flushed from memtables to SST files once;
    // flush what is left so the process CPU covers all of it.
    ledger.store().flush().unwrap();
    let mempool_cpu = precheck_cpu + admit_cpu + select_cpu + update_cpu;
    let process_used = process_cpu() - process_start - mempool_cpu;

    println!();
    if !a.skip_verify {
        println!("  {:<44} {:>14}", "stage", "transfers/s");
        println!(
            "  {:<44} {:>14.0}",
            "ed25519 verify, one by one",
            per_second(single.len(), single_time)
        );
        for (size, time) in batch_sizes.iter().zip(&verify_times) {
            let label = format!("ed25519 verify, batches of {size}");
            println!("  {:<44} {:>14.0}", label, per_second(total, *time));
        }
    }
    println!();
    println!(
        "  {:<44} {:>14} {:>14}",
        "stage (this thread)", "transfers/s", "per CPU-second"
    );
    let stages = [
        (
            "mempool: precheck (signatures as verified)",
            precheck_cpu,
            precheck_cpu,
        ),
        ("mempool: admit", admit_cpu, admit_cpu),
        ("mempool: select for a block", select_cpu, select_cpu),
        ("mempool: update after commit", update_cpu, update_cpu),
        ("execute (incl. state root)", exec_time, exec_cpu),
        (
            "commit (one fsynced RocksDB batch per block)",
            commit_time,
            commit_cpu,
        ),
        (
            "execute + commit",
            exec_time + commit_time,
            exec_cpu + commit_cpu,
        ),
    ];
    for (label, wall, cpu) in stages {
        println!(
            "  {:<44} {:>14.0} {:>14.0}",
            label,
            per_second(total, wall),
            per_second(total, cpu)
        );
    }
    println!(
        "  per block of {}: execute {:.1} ms ({:.1} ms CPU), commit {:.1} ms ({:.1} ms CPU)",
        a.txs,
        exec_time.as_secs_f64() * 1e3 / a.blocks as f64,
        exec_cpu.as_secs_f64() * 1e3 / a.blocks as f64,
        commit_time.as_secs_f64() * 1e3 / a.blocks as f64,
        commit_cpu.as_secs_f64() * 1e3 / a.blocks as f64
    );
    per_block.sort_unstable();
    if let (Some(fastest), Some(median)) = (per_block.first(), per_block.get(per_block.len() / 2)) {
        println!(
            "  execute + commit per block: median {:.1} ms ({:.0} transfers/s), fastest {:.1} ms ({:.0} transfers/s)",
            median.as_secs_f64() * 1e3,
            per_second(a.txs, *median),
            fastest.as_secs_f64() * 1e3,
            per_second(a.txs, *fastest)
        );
    }
    println!(
        "  whole process, background flushes included, mempool excluded: {:.1} ms CPU per block, {:.0} transfers per CPU-second",
        process_used.as_secs_f64() * 1e3 / a.blocks as f64,
        per_second(total, process_used)
    );
    println!(
        "  (transfers/s is over wall-clock time; per CPU-second counts this thread's CPU time \
         only: RocksDB's background flushes and compactions run on other threads)"
    );
}
