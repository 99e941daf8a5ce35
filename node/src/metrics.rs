//! Prometheus metrics (prometheus-client), served as OpenMetrics text on
//! `GET /metrics` by a small HTTP responder of its own.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Why a transaction was refused, and where it came from (`rpc` or
/// `gossip`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabel {
    pub reason: &'static str,
    pub source: &'static str,
}

#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub latest_height: Gauge,
    pub finalized_height: Gauge,
    pub view: Gauge,
    pub block_interval_seconds: Histogram,
    pub transactions_finalized: Counter,
    pub transactions_per_block: Histogram,
    pub mempool_transactions: Gauge,
    pub mempool_bytes: Gauge,
    pub transactions_rejected: Family<RejectLabel, Counter>,
    pub block_signatures_verified: Counter,
    pub block_signatures_reused: Counter,
    pub admission_signatures_reused: Counter,
    pub admission_signatures_verified: Counter,
    pub admission_signature_batches: Counter,
    pub consensus_timeouts: Counter,
    pub consensus_messages_stale: Counter,
    pub block_execution_seconds: Histogram,
    pub block_commit_seconds: Histogram,
    pub evidence: Counter<u64, AtomicU64>,
    pub peers: Gauge,
    pub slashed: Counter,
    pub proposal_to_finality_seconds: Histogram,
    pub fetched_transactions: Counter,
    pub block_transactions_unadmitted: Counter,
    pub block_admission_wait_seconds: Counter<f64, AtomicU64>,
    pub reconnects: Counter,
    pub fetched_blocks: Counter,
    pub process_cpu_seconds: Gauge<f64, AtomicU64>,
    pub process_resident_bytes: Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sou");
        let m = Metrics {
            latest_height: Gauge::default(),
            finalized_height: Gauge::default(),
            view: Gauge::default(),
            block_interval_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
            transactions_finalized: Counter::default(),
            transactions_per_block: Histogram::new(exponential_buckets(1.0, 4.0, 10)),
            mempool_transactions: Gauge::default(),
            mempool_bytes: Gauge::default(),
            transactions_rejected: Family::default(),
            block_signatures_verified: Counter::default(),
            block_signatures_reused: Counter::default(),
            admission_signatures_reused: Counter::default(),
            admission_signatures_verified: Counter::default(),
            admission_signature_batches: Counter::default(),
            consensus_timeouts: Counter::default(),
            consensus_messages_stale: Counter::default(),
            block_execution_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            block_commit_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            evidence: Counter::default(),
            peers: Gauge::default(),
            slashed: Counter::default(),
            proposal_to_finality_seconds: Histogram::new(exponential_buckets(0.005, 1.25, 32)),
            fetched_transactions: Counter::default(),
            block_transactions_unadmitted: Counter::default(),
            block_admission_wait_seconds: Counter::default(),
            reconnects: Counter::default(),
            fetched_blocks: Counter::default(),
            process_cpu_seconds: Gauge::default(),
            process_resident_bytes: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "latest_height",
            "Height of the latest block",
            m.latest_height.clone(),
        );
        registry.register(
            "finalized_height",
            "Height of the latest finalized block",
            m.finalized_height.clone(),
        );
        registry.register("consensus_view", "Current consensus view", m.view.clone());
        registry.register(
            "block_interval_seconds",
            "Time between consecutive finalized blocks",
            m.block_interval_seconds.clone(),
        );
        registry.register(
            "transactions_finalized",
            "Transactions in finalized blocks",
            m.transactions_finalized.clone(),
        );
        registry.register(
            "transactions_per_block",
            "Transactions per finalized block",
            m.transactions_per_block.clone(),
        );
        registry.register(
            "mempool_transactions",
            "Transactions in the mempool",
            m.mempool_transactions.clone(),
        );
        registry.register(
            "mempool_bytes",
            "Bytes of transactions in the mempool",
            m.mempool_bytes.clone(),
        );
        registry.register(
            "transactions_rejected",
            "Transactions refused (undecodable, too large, or by the mempool), by reason and source (rpc, gossip)",
            m.transactions_rejected.clone(),
        );
        registry.register(
            "block_signatures_verified",
            "Signatures of transactions verified while checking proposed blocks (those not admitted to this node's mempool with the same signature)",
            m.block_signatures_verified.clone(),
        );
        registry.register(
            "block_signatures_reused",
            "Signatures of transactions in proposed blocks not verified again: admitted to this node's mempool, with the same signature",
            m.block_signatures_reused.clone(),
        );
        registry.register(
            "admission_signatures_reused",
            "Transactions admitted without a signature check: this node verified the same signature already, executing a block that held them",
            m.admission_signatures_reused.clone(),
        );
        registry.register(
            "admission_signatures_verified",
            "Signatures verified admitting transactions (from clients and from peers)",
            m.admission_signatures_verified.clone(),
        );
        registry.register(
            "admission_signature_batches",
            "Batch signature checks admitting transactions: admission_signatures_verified divided by this is the mean batch",
            m.admission_signature_batches.clone(),
        );
        registry.register(
            "consensus_timeouts",
            "Consensus view timeouts",
            m.consensus_timeouts.clone(),
        );
        registry.register(
            "consensus_messages_stale",
            "Consensus messages from peers already counted or outside the window: not checked, not relayed",
            m.consensus_messages_stale.clone(),
        );
        registry.register(
            "block_execution_seconds",
            "Time to execute a block",
            m.block_execution_seconds.clone(),
        );
        registry.register(
            "block_commit_seconds",
            "Time to commit a block to RocksDB",
            m.block_commit_seconds.clone(),
        );
        registry.register(
            "evidence",
            "Equivocation evidence observed",
            m.evidence.clone(),
        );
        registry.register("p2p_peers", "Connected peers", m.peers.clone());
        registry.register(
            "validators_slashed",
            "Pieces of evidence applied by finalized blocks (each slashes and jails)",
            m.slashed.clone(),
        );
        registry.register(
            "proposal_to_finality_seconds",
            "Time from this node proposing a block to committing it as final",
            m.proposal_to_finality_seconds.clone(),
        );
        registry.register(
            "p2p_fetched_transactions",
            "Transactions fetched from peers to complete compact blocks",
            m.fetched_transactions.clone(),
        );
        registry.register(
            "block_transactions_unadmitted",
            "Transactions of peers' compact blocks taken from gossip still waiting for admission, instead of fetched",
            m.block_transactions_unadmitted.clone(),
        );
        registry.register(
            "block_admission_wait_seconds",
            "Time peers' compact blocks waited for the admission thread to finish admitting their transactions",
            m.block_admission_wait_seconds.clone(),
        );
        registry.register(
            "p2p_reconnects",
            "Times every peer was reconnected after a silence on gossip",
            m.reconnects.clone(),
        );
        registry.register(
            "p2p_fetched_blocks",
            "Proposed block bodies fetched whole from peers",
            m.fetched_blocks.clone(),
        );
        registry.register(
            "process_cpu_seconds",
            "CPU time (user and system) this process has used",
            m.process_cpu_seconds.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of this process",
            m.process_resident_bytes.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Reads this process's CPU time and resident memory from /proc (Linux;
    /// elsewhere they stay 0).
    fn sample_process(&self) {
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .filter(|t| *t > 0)
            .unwrap_or(100) as f64;
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after the command name (which may hold spaces): utime
            // and stime are the 12th and 13th.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<&str> = rest.split_whitespace().collect();
            let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            self.process_cpu_seconds.set((t(11) + t(12)) / ticks);
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            let kb = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok());
            if let Some(kb) = kb {
                self.process_resident_bytes.set(kb * 1024);
            }
        }
    }

    pub fn encode(&self) -> String {
        self.sample_process();
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Largest request the metrics endpoint reads.
const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// Serves `GET /metrics` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_REQUEST_BYTES];
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
                    .await;
            let Ok(Ok(n)) = read else { return };
            let request = String::from_utf8_lossy(&buf[..n]);
            let response = if request.starts_with("GET /metrics ")
                || request.starts_with("GET /metrics?")
            {
                let body = metrics.encode();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                let body = "only GET /metrics is served here\n";
                format!(
                    "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            };
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
