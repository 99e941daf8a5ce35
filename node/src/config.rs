//! The node's configuration: `config.toml` in the node home. Every limit
//! has a default; a file may set any subset of them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sou_ledger::MempoolConfig;

pub const CONFIG_FILE: &str = "config.toml";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// The RocksDB directory, relative to the home.
    pub data_dir: PathBuf,
    /// The chain spec, relative to the home.
    pub genesis_file: PathBuf,
    /// This node's consensus key, relative to the home.
    pub validator_key_file: PathBuf,
    /// The consensus write-ahead log (signed votes, received messages).
    pub consensus_wal_file: PathBuf,
    /// Threads of the async runtime, which runs the network, JSON-RPC and
    /// metrics (0: one per core). The consensus thread, the admission
    /// thread and RocksDB's background threads run beside them. Nodes
    /// sharing one machine share its cores: `sou testnet` writes the cores
    /// divided by the validators, at least one. (On two cores, a 4-validator
    /// testnet with one each and with two each differed by less than the
    /// machine's noise in eight paired runs at 12,000 to 14,000 transfers/s.)
    pub worker_threads: usize,
    /// JSON-RPC over HTTP and WebSocket: address and limits.
    pub rpc: sou_rpc::RpcConfig,
    pub metrics: MetricsSection,
    pub mempool: MempoolSection,
    pub block: BlockSection,
    pub consensus: ConsensusSection,
    pub p2p: P2pSection,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct P2pSection {
    /// libp2p listen address.
    pub listen: String,
    /// Peers to stay connected to (libp2p addresses).
    pub peers: Vec<String>,
    /// This node's network identity (an ed25519 key file), relative to the home.
    pub node_key_file: PathBuf,
    /// Largest gossip message, in bytes (a full block must fit).
    pub max_message_bytes: usize,
    /// A peer is disconnected after this many invalid messages.
    pub max_invalid_messages: u32,
    /// Ask peers for missing blocks when none was committed for this long.
    pub sync_after_idle_ms: u64,
}

impl Default for P2pSection {
    fn default() -> Self {
        P2pSection {
            listen: "/ip4/127.0.0.1/tcp/26656".into(),
            peers: Vec::new(),
            node_key_file: "keys/node.json".into(),
            max_message_bytes: 16 * 1024 * 1024,
            max_invalid_messages: 20,
            sync_after_idle_ms: 2_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// Prometheus metrics on `http://<listen>/metrics`.
    pub listen: SocketAddr,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MempoolSection {
    /// Most transactions held.
    pub max_txs: usize,
    /// Most bytes of encoded transactions held.
    pub max_bytes: usize,
    /// Most transactions held for one sender.
    pub max_txs_per_sender: usize,
    /// How far past an account's next nonce a transaction may be.
    pub nonce_window: u64,
    /// Largest transaction admitted, in bytes (at most the chain's limit).
    pub max_tx_bytes: u32,
    /// Under load, transactions wait up to this long to be admitted in a
    /// larger batch (0: never): signatures checked 1,024 at a time cost
    /// less each than 100 at a time (a third less with AVX2, a few percent
    /// with AVX-512 IFMA), and fewer, larger batches are fewer gossip
    /// messages. A quiet node never waits.
    pub admission_gather_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlockSection {
    /// Most transactions in a block this node proposes (at most the chain's
    /// limit). Small blocks keep each view short under load: with 20,000,
    /// a backlog built blocks of 10,000 that took longer than a view timeout
    /// to build, propagate and execute on a busy machine, views were
    /// nullified and the backlog grew. At 2,500, a 4-validator testnet on
    /// two cores finalized 10,621 of 11,000 offered transfers/s (at 20,000:
    /// saturated at about 7,400); at 1,500 it finalized fewer (9,537).
    pub max_txs: u32,
    /// Most bytes of transactions in a block this node proposes.
    pub max_bytes: u64,
    /// With an empty mempool, propose an empty block at most this often.
    pub empty_block_interval_ms: u64,
    /// Unless a full block is waiting, propose at most this often: each
    /// block costs every validator fixed work (votes signed, fsynced and
    /// verified, a commit), which at a block per consensus round is spent
    /// on a few transactions each.
    pub min_block_interval_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsensusSection {
    /// Wait this long in a view for a notarization before nullifying it.
    pub view_timeout_ms: u64,
    /// Cap of the timeout's back-off after failed views.
    pub max_view_timeout_ms: u64,
    /// A leader waits this long after entering its view before proposing.
    pub propose_delay_ms: u64,
    /// Compact the consensus log after this many finalized blocks.
    pub wal_compact_every_blocks: u64,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 9615)),
        }
    }
}

impl Default for MempoolSection {
    fn default() -> Self {
        let d = MempoolConfig::default();
        MempoolSection {
            max_txs: d.max_txs,
            max_bytes: d.max_bytes,
            max_txs_per_sender: d.max_txs_per_sender,
            nonce_window: d.nonce_window,
            max_tx_bytes: 16 * 1024,
            admission_gather_ms: 20,
        }
    }
}

impl From<&MempoolSection> for MempoolConfig {
    fn from(m: &MempoolSection) -> Self {
        MempoolConfig {
            max_txs: m.max_txs,
            max_bytes: m.max_bytes,
            max_txs_per_sender: m.max_txs_per_sender,
            nonce_window: m.nonce_window,
        }
    }
}

impl Default for BlockSection {
    fn default() -> Self {
        BlockSection {
            max_txs: 2_500,
            max_bytes: 8 * 1024 * 1024,
            empty_block_interval_ms: 1_000,
            min_block_interval_ms: 100,
        }
    }
}

impl Default for ConsensusSection {
    fn default() -> Self {
        ConsensusSection {
            view_timeout_ms: 2_000,
            max_view_timeout_ms: 16_000,
            propose_delay_ms: 0,
            wal_compact_every_blocks: 500,
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: "data".into(),
            genesis_file: "genesis.json".into(),
            validator_key_file: "keys/validator.json".into(),
            consensus_wal_file: "consensus.wal".into(),
            worker_threads: 0,
            rpc: sou_rpc::RpcConfig::default(),
            metrics: MetricsSection::default(),
            mempool: MempoolSection::default(),
            block: BlockSection::default(),
            consensus: ConsensusSection::default(),
            p2p: P2pSection::default(),
        }
    }
}

impl NodeConfig {
    pub fn load(home: &Path) -> anyhow::Result<NodeConfig> {
        let path = home.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn to_toml(&self) -> String {
        let body = toml::to_string_pretty(self)
            .unwrap_or_else(|e| unreachable!("config always serialises: {e}"));
        format!("# Sou node configuration. Paths are relative to the node home.\n{body}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_partial_files() {
        let c = NodeConfig::default();
        assert_eq!(toml::from_str::<NodeConfig>(&c.to_toml()).unwrap(), c);
        let partial: NodeConfig = toml::from_str("[mempool]\nmax_txs = 5\n").unwrap();
        assert_eq!(partial.mempool.max_txs, 5);
        assert_eq!(partial.data_dir, PathBuf::from("data"));
        assert!(toml::from_str::<NodeConfig>("typo_field = 1").is_err());
    }
}
