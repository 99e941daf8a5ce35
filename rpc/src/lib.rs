//! Sou's JSON-RPC 2.0 server, over HTTP and WebSocket on one port: the
//! methods wallets and explorers call, subscriptions to finalized blocks and
//! transaction statuses, and the limits that protect the node.
//!
//! It reads committed state through the ledger and reaches the rest of the
//! node (mempool, consensus status, new blocks) through the [`Backend`]
//! trait that the node implements, so this crate depends on nothing above
//! the ledger.
//!
//! # Errors
//! Standard JSON-RPC codes (-32700 parse error, -32600 invalid request,
//! -32601 method not found, -32602 invalid params, -32603 internal) and the
//! EIP-1474 range: -32001 resource not found, -32002 resource unavailable
//! (for example not finalized in time), -32003 transaction rejected (the
//! message says why), -32005 limit exceeded.

mod json;
mod methods;
mod openrpc;

use std::net::SocketAddr;
use std::sync::Arc;

use jsonrpsee::server::{BatchRequestConfig, Server, ServerConfig, ServerHandle};
use sou_ledger::{AdmitError, Ledger};
use sou_types::{BlockHash, SignedTransaction, TxHash};
use tokio::sync::broadcast;
use tower_http::cors::{Any, CorsLayer};

pub use methods::module;

/// A block the node has just committed as final.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FinalizedEvent {
    pub height: u64,
    pub hash: BlockHash,
}

/// What the node tells `node_status` besides committed state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub view: u64,
    pub peers: usize,
    pub syncing: bool,
    pub is_validator: bool,
}

/// The node, as the RPC server sees it.
pub trait Backend: Send + Sync + 'static {
    fn ledger(&self) -> &Ledger;
    /// Admits transactions to the mempool (signatures verified in one batch).
    fn submit(&self, txs: Vec<SignedTransaction>) -> Vec<Result<TxHash, AdmitError>>;
    /// A transaction waiting in the mempool.
    fn pending(&self, hash: &TxHash) -> Option<SignedTransaction>;
    fn info(&self) -> NodeInfo;
    /// New finalized blocks, in order.
    fn subscribe(&self) -> broadcast::Receiver<FinalizedEvent>;
}

/// Limits and address of the server: the `[rpc]` section of the node's
/// `config.toml`, every field with a default.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RpcConfig {
    pub listen: SocketAddr,
    /// Largest request body, in bytes.
    pub max_request_body_bytes: u32,
    /// Largest response body, in bytes.
    pub max_response_body_bytes: u32,
    pub max_connections: u32,
    /// Most calls in one batch request.
    pub max_batch_len: u32,
    pub max_subscriptions_per_connection: u32,
    /// Longest wait `tx_sendAndWait` accepts, in milliseconds.
    pub max_wait_ms: u64,
    /// Most items one list call returns.
    pub max_page_len: u32,
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8545)),
            max_request_body_bytes: 10 * 1024 * 1024,
            max_response_body_bytes: 32 * 1024 * 1024,
            max_connections: 512,
            max_batch_len: 1_000,
            max_subscriptions_per_connection: 64,
            max_wait_ms: 60_000,
            max_page_len: 100,
        }
    }
}

/// Starts the server; returns the address it listens on and its handle
/// (drop or `stop()` it to shut down).
pub async fn serve(
    cfg: RpcConfig,
    backend: Arc<dyn Backend>,
) -> std::io::Result<(SocketAddr, ServerHandle)> {
    let server_cfg = ServerConfig::builder()
        .max_request_body_size(cfg.max_request_body_bytes)
        .max_response_body_size(cfg.max_response_body_bytes)
        .max_connections(cfg.max_connections)
        .max_subscriptions_per_connection(cfg.max_subscriptions_per_connection)
        .set_batch_request_config(BatchRequestConfig::Limit(cfg.max_batch_len))
        .build();
    // Browser explorers call from other origins.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods(Any)
        .allow_headers(Any);
    let server = Server::builder()
        .set_config(server_cfg)
        .set_http_middleware(tower::ServiceBuilder::new().layer(cors))
        .build(cfg.listen)
        .await?;
    let addr = server.local_addr()?;
    let handle = server.start(module(backend, cfg));
    Ok((addr, handle))
}
