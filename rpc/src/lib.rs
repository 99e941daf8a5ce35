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
//! message says why, `data.reason` is a short label such as
//! `bad_signature` or `too_large`).
//!
//! Limits, and the codes that are really returned when one is exceeded
//! (the server-level ones are jsonrpsee's):
//!
//! | limit (`[rpc]` in `config.toml`) | code | where |
//! |---|---|---|
//! | `max_request_body_bytes` | -32007 "Request is too big" (over HTTP, with status 413) | the whole request, single or batch |
//! | `max_response_body_bytes` | -32008 (one call), -32011 (a batch) | the answer |
//! | `max_batch_len` (JSON-RPC batch) | -32010 "The batch request was too large", HTTP 200, id null | a JSON array of calls |
//! | `max_subscriptions_per_connection` | -32006 "Too many subscriptions" | one WebSocket connection |
//! | `max_connections` | HTTP 429 "Too many connections" | the server |
//! | `max_batch_len` (`tx_sendBatch` list), `max_page_len` (`tx_getStatuses`, `tx_subscribeStatus` hashes) | -32005 limit exceeded | a list parameter of one call |
//!
//! `max_page_len` also caps the length of `chain_getBlocks` and
//! `account_getTransactions` pages (a longer `limit` returns a full page).

mod json;
mod methods;
mod openrpc;

use std::net::SocketAddr;
use std::sync::Arc;

use jsonrpsee::server::{BatchRequestConfig, Server, ServerConfig, ServerHandle};
use sou_ledger::{AdmitError, Ledger};
use sou_types::{BlockHash, SignedTransaction, TxHash};
use tokio::sync::{broadcast, watch};
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
    /// A transaction refused before it reached [`Backend::submit`] (not hex,
    /// undecodable, over the wire size limit), for the node's reject count;
    /// `reason` is the label of [`reject_reason`]'s vocabulary.
    fn rejected(&self, reason: &'static str);
    /// A transaction waiting in the mempool.
    fn pending(&self, hash: &TxHash) -> Option<SignedTransaction>;
    fn info(&self) -> NodeInfo;
    /// New finalized blocks, in order.
    fn subscribe(&self) -> broadcast::Receiver<FinalizedEvent>;
    /// A count of transactions admitted to the mempool, from RPC or gossip:
    /// it changes whenever some transaction became pending.
    fn admissions(&self) -> watch::Receiver<u64>;
}

/// The short label of why a transaction was refused, for `data.reason` of
/// a -32003 error and the node's `sou_transactions_rejected_total`.
pub fn reject_reason(e: &AdmitError) -> &'static str {
    match e {
        AdmitError::Invalid(sou_ledger::InvalidTx::TooLarge { .. }) => REASON_TOO_LARGE,
        other => other.label(),
    }
}

/// [`reject_reason`] of a transaction over a size limit.
pub const REASON_TOO_LARGE: &str = "too_large";
/// [`reject_reason`] of bytes that are not a transaction.
pub const REASON_MALFORMED: &str = "malformed";

/// Limits and address of the server: the `[rpc]` section of the node's
/// `config.toml`, every field with a default.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RpcConfig {
    pub listen: SocketAddr,
    /// Largest request body, in bytes (over it: HTTP 413, -32007).
    pub max_request_body_bytes: u32,
    /// Largest response body, in bytes (over it: -32008, or -32011 for a batch).
    pub max_response_body_bytes: u32,
    /// Most open connections (over it: HTTP 429).
    pub max_connections: u32,
    /// Most calls in one JSON-RPC batch (over it: -32010), and most
    /// transactions in one `tx_sendBatch` (over it: -32005).
    pub max_batch_len: u32,
    /// Most subscriptions on one WebSocket connection (over it: -32006).
    pub max_subscriptions_per_connection: u32,
    /// Longest wait `tx_sendAndWait` accepts, in milliseconds.
    pub max_wait_ms: u64,
    /// Most items one list call returns, and most hashes `tx_getStatuses`
    /// and `tx_subscribeStatus` take (over it: -32005).
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
