//! The node's configuration: `config.toml` in the node home. Every limit
//! has a default; a file may set any subset of them.

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
    pub mempool: MempoolSection,
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
}

impl Default for MempoolSection {
    fn default() -> Self {
        let d = MempoolConfig::default();
        MempoolSection {
            max_txs: d.max_txs,
            max_bytes: d.max_bytes,
            max_txs_per_sender: d.max_txs_per_sender,
            nonce_window: d.nonce_window,
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

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: "data".into(),
            genesis_file: "genesis.json".into(),
            validator_key_file: "keys/validator.json".into(),
            mempool: MempoolSection::default(),
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
