//! The JSON-RPC client the wallet and the benchmark use.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use jsonrpsee::core::client::ClientT;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use serde_json::Value;

/// Largest request or response the client accepts (a benchmark batch).
const MAX_MESSAGE_BYTES: u32 = 256 * 1024 * 1024;

pub fn client(url: &str) -> Result<HttpClient> {
    HttpClientBuilder::default()
        .request_timeout(Duration::from_secs(120))
        .max_request_size(MAX_MESSAGE_BYTES)
        .max_response_size(MAX_MESSAGE_BYTES)
        .build(url)
        .with_context(|| format!("RPC address {url}"))
}

/// Calls `method`; a refusal by the node becomes an error saying why.
pub async fn call(
    c: &HttpClient,
    method: &str,
    params: jsonrpsee::core::params::ArrayParams,
) -> Result<Value> {
    c.request::<Value, _>(method, params)
        .await
        .map_err(|e| match e {
            jsonrpsee::core::client::Error::Call(obj) => {
                anyhow!("{method}: {} (code {})", obj.message(), obj.code())
            }
            other => anyhow!("{method}: {other}"),
        })
}
