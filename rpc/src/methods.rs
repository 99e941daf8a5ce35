//! The RPC methods.

use std::sync::Arc;
use std::time::Duration;

use jsonrpsee::types::{ErrorObject, ErrorObjectOwned, Params};
use jsonrpsee::{PendingSubscriptionSink, RpcModule, SubscriptionMessage};
use serde_json::{json, Value};
use sou_ledger::staking::epoch_of;
use sou_ledger::{AdmitError, HistoryCursor, Ledger, TxStatus};
use sou_types::{Address, Hash, SignedTransaction, Symbol, TxHash};
use tokio::sync::broadcast::error::RecvError;

use crate::{
    json as view, openrpc, reject_reason, Backend, RpcConfig, REASON_MALFORMED, REASON_TOO_LARGE,
};

type RpcResult<T> = Result<T, ErrorObjectOwned>;

struct Ctx {
    backend: Arc<dyn Backend>,
    cfg: RpcConfig,
}

impl Ctx {
    fn ledger(&self) -> &Ledger {
        self.backend.ledger()
    }
}

fn err(code: i32, msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObject::owned(code, msg.into(), None::<()>)
}

fn invalid_params(msg: impl Into<String>) -> ErrorObjectOwned {
    err(-32602, msg)
}

fn internal(e: impl std::fmt::Display) -> ErrorObjectOwned {
    err(-32603, format!("internal error: {e}"))
}

fn rejected(e: &AdmitError) -> ErrorObjectOwned {
    ErrorObject::owned(
        -32003,
        format!("transaction rejected: {e}"),
        Some(json!({ "reason": reject_reason(e) })),
    )
}

fn parse<T: std::str::FromStr>(what: &str, s: &str) -> RpcResult<T>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e| invalid_params(format!("invalid {what}: {e}")))
}

/// Decodes a raw transaction; a refusal is counted by the node.
fn decode_raw(ctx: &Ctx, raw: &str) -> RpcResult<SignedTransaction> {
    // An optional `0x`, which the hex crate takes off.
    let bytes = hex::decode(raw).map_err(|e| {
        ctx.backend.rejected(REASON_MALFORMED);
        invalid_params(format!("raw transaction is not hex: {e}"))
    })?;
    SignedTransaction::decode(&bytes).map_err(|e| match e {
        sou_types::Error::TooLarge { len, max } => {
            ctx.backend.rejected(REASON_TOO_LARGE);
            ErrorObject::owned(
                -32003,
                format!("transaction rejected: {len} bytes, over the limit of {max} bytes"),
                Some(json!({ "reason": REASON_TOO_LARGE })),
            )
        }
        other => {
            ctx.backend.rejected(REASON_MALFORMED);
            invalid_params(format!("malformed transaction: {other}"))
        }
    })
}

/// The error of a list parameter longer than its limit.
fn too_many(what: &str, len: usize, max: u32) -> ErrorObjectOwned {
    ErrorObject::owned(
        -32005,
        format!("{len} {what}, over the limit of {max}"),
        Some(json!({ "limit": max })),
    )
}

fn status_of(ctx: &Ctx, hash: &TxHash) -> RpcResult<Value> {
    if let Some(r) = ctx.ledger().store().receipt(hash).map_err(internal)? {
        return Ok(match &r.status {
            TxStatus::Success => {
                json!({"hash": hash, "status": "finalized", "blockHeight": r.height})
            }
            TxStatus::Failed { reason } => {
                json!({"hash": hash, "status": "failed", "blockHeight": r.height, "reason": reason})
            }
        });
    }
    if ctx.backend.pending(hash).is_some() {
        return Ok(json!({"hash": hash, "status": "pending"}));
    }
    Ok(json!({"hash": hash, "status": "unknown"}))
}

fn decimals_of(ledger: &Ledger, s: &Symbol) -> u8 {
    ledger.asset(s).ok().flatten().map_or(0, |a| a.decimals)
}

fn block_at(ctx: &Ctx, height: u64, full: bool) -> RpcResult<Value> {
    let store = ctx.ledger().store();
    if !full {
        // The hashes are stored with the header: no transaction is read.
        return Ok(store
            .block_summary(height)
            .map_err(internal)?
            .map_or(Value::Null, |b| view::block_summary(&b)));
    }
    match store.block(height).map_err(internal)? {
        Some(b) => Ok(view::block(&b)),
        None => Ok(Value::Null),
    }
}

fn account(ctx: &Ctx, address: &Address) -> RpcResult<Value> {
    let ledger = ctx.ledger();
    let acc = ledger.account(address).map_err(internal)?;
    let mut delegations = Vec::new();
    let mut unbonding = Vec::new();
    for v in ledger.candidates().map_err(internal)? {
        let d = ledger.delegation(address, &v).map_err(internal)?;
        if d.shares > 0 {
            if let Some(val) = ledger.validator(&v).map_err(internal)? {
                let amount = if val.shares == 0 {
                    0
                } else {
                    sou_ledger::staking::mul_div(d.shares, val.tokens.0, val.shares).unwrap_or(0)
                };
                delegations.push(json!({"validator": v, "shares": d.shares.to_string(), "amount": amount.to_string()}));
            }
        }
        for e in ledger.unbonding(&v).map_err(internal)? {
            if e.delegator == *address {
                unbonding.push(json!({"validator": v, "amount": e.amount, "completeHeight": e.complete_height}));
            }
        }
    }
    let validator = ledger.validator(address).map_err(internal)?.map(|v| {
        json!({
            "consensusKey": v.consensus_key,
            "tokens": v.tokens,
            "commissionBps": v.commission_bps,
            "jailedUntil": v.jailed_until,
        })
    });
    Ok(json!({
        "address": address,
        "nonce": acc.nonce,
        "balances": view::balances(&acc, |s| decimals_of(ledger, s)),
        "frozen": acc.frozen,
        "stake": {"validator": validator, "delegations": delegations, "unbonding": unbonding},
    }))
}

/// `max_block_txs` -> `maxBlockTxs`, for the keys of a JSON object.
fn camel_case_keys(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let mut out = String::with_capacity(k.len());
                    let mut upper = false;
                    for c in k.chars() {
                        if c == '_' {
                            upper = true;
                        } else if upper {
                            out.extend(c.to_uppercase());
                            upper = false;
                        } else {
                            out.push(c);
                        }
                    }
                    (out, v)
                })
                .collect(),
        ),
        other => other,
    }
}

/// Builds the RPC module over `backend`.
pub fn module(backend: Arc<dyn Backend>, cfg: RpcConfig) -> RpcModule<()> {
    let mut m = RpcModule::new(Ctx { backend, cfg });
    register(&mut m).unwrap_or_else(|e| unreachable!("method names are unique: {e}"));
    m.remove_context()
}

fn register(m: &mut RpcModule<Ctx>) -> Result<(), jsonrpsee::core::RegisterMethodError> {
    m.register_method("rpc.discover", |_, _, _| openrpc::document())?;

    m.register_method("node_status", |_, ctx, _| -> RpcResult<Value> {
        let ledger = ctx.ledger();
        let tip = ledger.tip();
        let info = ctx.backend.info();
        Ok(json!({
            "chainId": ledger.chain_id(),
            "nodeVersion": env!("CARGO_PKG_VERSION"),
            "latestHeight": tip.height,
            "latestHash": tip.hash,
            "finalizedHeight": tip.height,
            "finalizedHash": tip.hash,
            "syncing": info.syncing,
            "peerCount": info.peers,
            "view": info.view,
            "isValidator": info.is_validator,
        }))
    })?;

    m.register_method("chain_getParams", |_, ctx, _| -> RpcResult<Value> {
        let ledger = ctx.ledger();
        let params = ledger.params();
        let mut v = camel_case_keys(serde_json::to_value(params).map_err(internal)?);
        v["chainId"] = json!(ledger.chain_id());
        // The names wallets read, whatever the chain spec's field names.
        v["txFee"] = json!(params.tx_fee);
        v["minValidatorStake"] = json!(params.min_validator_stake);
        Ok(v)
    })?;

    m.register_method(
        "chain_getBlockByNumber",
        |params: Params, ctx, _| -> RpcResult<Value> {
            let mut seq = params.sequence();
            let number: Value = seq.next()?;
            let full: Option<bool> = seq.optional_next()?;
            let height = match &number {
                Value::String(s) if s == "latest" || s == "finalized" => ctx.ledger().tip().height,
                Value::Number(n) => n
                    .as_u64()
                    .ok_or_else(|| invalid_params(format!("invalid block number {n}")))?,
                other => {
                    return Err(invalid_params(format!(
                        "block number must be an integer, \"latest\" or \"finalized\", not {other}"
                    )))
                }
            };
            block_at(ctx, height, full.unwrap_or(false))
        },
    )?;

    m.register_method(
        "chain_getBlockByHash",
        |params: Params, ctx, _| -> RpcResult<Value> {
            let mut seq = params.sequence();
            let hash: String = seq.next()?;
            let full: Option<bool> = seq.optional_next()?;
            let hash: Hash = parse("block hash", &hash)?;
            match ctx.ledger().store().height_of(&hash).map_err(internal)? {
                Some(h) => block_at(ctx, h, full.unwrap_or(false)),
                None => Ok(Value::Null),
            }
        },
    )?;

    m.register_method(
        "chain_getBlocks",
        |params: Params, ctx, _| -> RpcResult<Value> {
            let (from, limit): (u64, u32) = params.parse()?;
            let limit = limit.min(ctx.cfg.max_page_len);
            let store = ctx.ledger().store();
            let mut out = Vec::new();
            for h in from..from.saturating_add(u64::from(limit)) {
                let Some(header) = store.header(h).map_err(internal)? else {
                    break;
                };
                let count = store
                    .block_tx_hashes(h)
                    .map_err(internal)?
                    .map_or(0, |t| t.len());
                out.push(view::header(&header, count));
            }
            Ok(Value::Array(out))
        },
    )?;

    m.register_method("chain_getValidators", |params: Params, ctx, _| -> RpcResult<Value> {
        let height: Option<u64> = params.sequence().optional_next()?;
        let ledger = ctx.ledger();
        let height = height.unwrap_or(ledger.tip().height + 1);
        let epoch = epoch_of(height, ledger.params().epoch_length_blocks);
        match ledger.validator_set(epoch).map_err(internal)? {
            Some(set) => {
                let total = set.total_power().to_string();
                let mut validators = Vec::with_capacity(set.validators.len());
                for v in set.validators {
                    // The current record too: stake now, and whether jailed.
                    let now = ledger.validator(&v.operator).map_err(internal)?;
                    validators.push(json!({
                        "operator": v.operator,
                        "consensusKey": v.consensus_key,
                        "power": v.power,
                        "tokens": now.as_ref().map(|n| n.tokens),
                        "jailedUntil": now.as_ref().and_then(|n| n.jailed_until),
                    }));
                }
                Ok(json!({"height": height, "epoch": epoch, "validators": validators, "totalPower": total}))
            }
            None => Err(err(-32001, format!("no validator set for height {height} (epoch {epoch})"))),
        }
    })?;

    m.register_method(
        "account_get",
        |params: Params, ctx, _| -> RpcResult<Value> {
            let address: String = params.one()?;
            account(ctx, &parse("address", &address)?)
        },
    )?;

    m.register_method(
        "account_getBalance",
        |params: Params, ctx, _| -> RpcResult<Value> {
            let (address, asset): (String, String) = params.parse()?;
            let address: Address = parse("address", &address)?;
            let asset: Symbol = parse("asset", &asset)?;
            let ledger = ctx.ledger();
            let info = ledger
                .asset(&asset)
                .map_err(internal)?
                .ok_or_else(|| err(-32001, format!("unknown asset {asset}")))?;
            let amount = ledger.account(&address).map_err(internal)?.balance(&asset);
            Ok(json!({
                "address": address,
                "asset": asset,
                "symbol": info.symbol,
                "amount": amount,
                "decimals": info.decimals,
                "display": amount.to_decimal(info.decimals),
            }))
        },
    )?;

    m.register_method(
        "account_getTransactions",
        |params: Params, ctx, _| -> RpcResult<Value> {
            let mut seq = params.sequence();
            let address: String = seq.next()?;
            let before: Option<String> = seq.optional_next()?;
            let limit: Option<u32> = seq.optional_next()?;
            let address: Address = parse("address", &address)?;
            let store = ctx.ledger().store();
            let cursor = match before {
                None => None,
                Some(h) => {
                    let hash: Hash = parse("transaction hash", &h)?;
                    let r = store
                        .receipt(&hash)
                        .map_err(internal)?
                        .ok_or_else(|| err(-32001, format!("unknown transaction {hash}")))?;
                    Some(HistoryCursor {
                        height: r.height,
                        index: r.index,
                    })
                }
            };
            let limit = limit.unwrap_or(20).min(ctx.cfg.max_page_len) as usize;
            let mut out = Vec::new();
            for rec in store
                .history_records(&address, cursor, limit)
                .map_err(internal)?
            {
                let mut v =
                    view::transaction(&rec.tx, Some((rec.receipt.height, rec.receipt.index)));
                v["receipt"] = view::receipt(&rec.receipt);
                out.push(v);
            }
            Ok(Value::Array(out))
        },
    )?;

    m.register_method("asset_get", |params: Params, ctx, _| -> RpcResult<Value> {
        let symbol: String = params.one()?;
        let symbol: Symbol = parse("asset symbol", &symbol)?;
        Ok(ctx
            .ledger()
            .asset(&symbol)
            .map_err(internal)?
            .map_or(Value::Null, |a| view::asset(&a)))
    })?;

    m.register_method("asset_list", |_, ctx, _| -> RpcResult<Value> {
        let ledger = ctx.ledger();
        let mut out = Vec::new();
        for s in ledger.asset_symbols().map_err(internal)? {
            if let Some(a) = ledger.asset(&s).map_err(internal)? {
                out.push(view::asset(&a));
            }
        }
        Ok(Value::Array(out))
    })?;

    // Admission verifies signatures (about 20 µs each): on the blocking
    // pool, so that a burst of submissions never holds up the async workers
    // that run consensus and the network.
    m.register_blocking_method("tx_send", |params: Params, ctx, _| -> RpcResult<Value> {
        let raw: String = params.one()?;
        let tx = decode_raw(&ctx, &raw)?;
        match ctx.backend.submit(vec![tx]).pop() {
            Some(Ok(hash)) => Ok(json!(hash)),
            Some(Err(e)) => Err(rejected(&e)),
            None => Err(internal("no admission result")),
        }
    })?;

    m.register_blocking_method(
        "tx_sendBatch",
        |params: Params, ctx, _| -> RpcResult<Value> {
            let raws: Vec<String> = params.one()?;
            if raws.len() > ctx.cfg.max_batch_len as usize {
                return Err(too_many("transactions", raws.len(), ctx.cfg.max_batch_len));
            }
            let mut out = vec![Value::Null; raws.len()];
            let mut txs = Vec::new();
            let mut slots = Vec::new();
            for (i, raw) in raws.iter().enumerate() {
                match decode_raw(&ctx, raw) {
                    Ok(tx) => {
                        txs.push(tx);
                        slots.push(i);
                    }
                    Err(e) => out[i] = json!({"error": {"code": e.code(), "message": e.message()}}),
                }
            }
            for (slot, r) in slots.into_iter().zip(ctx.backend.submit(txs)) {
                out[slot] = match r {
                    Ok(h) => json!({"hash": h}),
                    Err(e) => {
                        let o = rejected(&e);
                        json!({"error": {"code": o.code(), "message": o.message()}})
                    }
                };
            }
            Ok(Value::Array(out))
        },
    )?;

    m.register_async_method(
        "tx_sendAndWait",
        |params: Params<'static>, ctx: Arc<Ctx>, _| async move {
            let mut seq = params.sequence();
            let raw: String = seq.next()?;
            let timeout_ms: Option<u64> = seq.optional_next()?;
            let timeout_ms = timeout_ms.unwrap_or(30_000).min(ctx.cfg.max_wait_ms);
            let tx = decode_raw(&ctx, &raw)?;
            let hash = tx.hash();
            let mut events = ctx.backend.subscribe();
            // Idempotent for wallets that retry: a transaction already final
            // returns its receipt, one already pending is waited for.
            if let Some(r) = ctx.ledger().store().receipt(&hash).map_err(internal)? {
                return Ok(view::receipt(&r));
            }
            // Admission verifies the signature: on a blocking thread, as
            // `tx_send` runs, not on one that serves the network.
            let backend = ctx.backend.clone();
            let admitted = tokio::task::spawn_blocking(move || backend.submit(vec![tx]))
                .await
                .map_err(internal)?;
            match admitted.into_iter().next() {
                Some(Ok(_) | Err(AdmitError::Duplicate(_))) => {}
                Some(Err(e)) => return Err(rejected(&e)),
                None => return Err(internal("no admission result")),
            }
            let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
            loop {
                if let Some(r) = ctx.ledger().store().receipt(&hash).map_err(internal)? {
                    return Ok::<Value, ErrorObjectOwned>(view::receipt(&r));
                }
                match tokio::time::timeout_at(deadline, events.recv()).await {
                    Ok(Ok(_) | Err(RecvError::Lagged(_))) => {}
                    Ok(Err(RecvError::Closed)) => {
                        return Err(err(-32002, "the node is shutting down"))
                    }
                    Err(_) => {
                        return Err(ErrorObject::owned(
                            -32002,
                            format!("transaction {hash} was not finalized within {timeout_ms} ms"),
                            Some(json!({"hash": hash})),
                        ))
                    }
                }
            }
        },
    )?;

    m.register_method("tx_get", |params: Params, ctx, _| -> RpcResult<Value> {
        let hash: String = params.one()?;
        let hash: Hash = parse("transaction hash", &hash)?;
        if let Some(rec) = ctx.ledger().store().transaction(&hash).map_err(internal)? {
            let mut v = view::transaction(&rec.tx, Some((rec.receipt.height, rec.receipt.index)));
            v["receipt"] = view::receipt(&rec.receipt);
            return Ok(v);
        }
        Ok(ctx.backend.pending(&hash).map_or(Value::Null, |tx| {
            let mut v = view::transaction(&tx, None);
            v["pending"] = json!(true);
            v
        }))
    })?;

    m.register_method(
        "tx_getReceipt",
        |params: Params, ctx, _| -> RpcResult<Value> {
            let hash: String = params.one()?;
            let hash: Hash = parse("transaction hash", &hash)?;
            Ok(ctx
                .ledger()
                .store()
                .receipt(&hash)
                .map_err(internal)?
                .map_or(Value::Null, |r| view::receipt(&r)))
        },
    )?;

    m.register_method(
        "tx_getStatuses",
        |params: Params, ctx, _| -> RpcResult<Value> {
            let hashes: Vec<String> = params.one()?;
            if hashes.len() > ctx.cfg.max_page_len as usize {
                return Err(too_many("hashes", hashes.len(), ctx.cfg.max_page_len));
            }
            let mut out = Vec::with_capacity(hashes.len());
            for h in hashes {
                out.push(status_of(ctx, &parse("transaction hash", &h)?)?);
            }
            Ok(Value::Array(out))
        },
    )?;

    m.register_subscription(
        "chain_subscribeFinalized",
        "chain_finalized",
        "chain_unsubscribeFinalized",
        |_, pending: PendingSubscriptionSink, ctx: Arc<Ctx>, _| async move {
            let mut events = ctx.backend.subscribe();
            let sink = pending.accept().await?;
            // Every block after the tip at subscription time, in order, read
            // from the store, so that a slow subscriber misses nothing.
            let mut next = ctx.ledger().tip().height + 1;
            loop {
                tokio::select! {
                    _ = sink.closed() => return Ok(()),
                    ev = events.recv() => match ev {
                        Ok(_) | Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => return Ok(()),
                    },
                }
                let tip = ctx.ledger().tip().height;
                while next <= tip {
                    let store = ctx.ledger().store();
                    let Some(header) = store.header(next)? else {
                        break;
                    };
                    let count = store.block_tx_hashes(next)?.map_or(0, |t| t.len());
                    let msg = SubscriptionMessage::from(serde_json::value::to_raw_value(
                        &view::header(&header, count),
                    )?);
                    sink.send(msg).await?;
                    next += 1;
                }
            }
        },
    )?;

    m.register_subscription(
        "tx_subscribeStatus",
        "tx_status",
        "tx_unsubscribeStatus",
        |params: Params<'static>, pending: PendingSubscriptionSink, ctx: Arc<Ctx>, _| async move {
            let raw: Vec<String> = match params.one() {
                Ok(h) => h,
                Err(e) => {
                    pending.reject(e).await;
                    return Ok(());
                }
            };
            if raw.len() > ctx.cfg.max_page_len as usize {
                pending
                    .reject(too_many("hashes", raw.len(), ctx.cfg.max_page_len))
                    .await;
                return Ok(());
            }
            let mut hashes = Vec::with_capacity(raw.len());
            for h in &raw {
                match h.parse::<Hash>() {
                    Ok(hash) => hashes.push(hash),
                    Err(e) => {
                        pending
                            .reject(invalid_params(format!("invalid transaction hash: {e}")))
                            .await;
                        return Ok(());
                    }
                }
            }
            let mut events = ctx.backend.subscribe();
            let mut admissions = ctx.backend.admissions();
            let mut admissions_open = true;
            let sink = pending.accept().await?;
            let mut last: Vec<Option<String>> = vec![None; hashes.len()];
            // A finalized block can change any status; an admission only
            // makes an unknown transaction pending.
            let mut only_unknown = false;
            loop {
                let mut open = false;
                for (i, h) in hashes.iter().enumerate() {
                    let known = last[i].as_deref().is_some_and(|l| l != "unknown");
                    if only_unknown && known {
                        open |= last[i].as_deref() == Some("pending");
                        continue;
                    }
                    let status = status_of(&ctx, h).map_err(|e| e.message().to_string())?;
                    let label = status["status"].as_str().unwrap_or("").to_string();
                    if last[i].as_deref() != Some(label.as_str()) {
                        sink.send(SubscriptionMessage::from(serde_json::value::to_raw_value(
                            &status,
                        )?))
                        .await?;
                        last[i] = Some(label.clone());
                    }
                    open |= label == "pending" || label == "unknown";
                }
                if !open {
                    return Ok(());
                }
                tokio::select! {
                    _ = sink.closed() => return Ok(()),
                    ev = events.recv() => {
                        if let Err(RecvError::Closed) = ev {
                            return Ok(());
                        }
                        only_unknown = false;
                    }
                    changed = admissions.changed(), if admissions_open => {
                        admissions_open = changed.is_ok();
                        only_unknown = true;
                    }
                }
            }
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use tokio::sync::{broadcast, watch};

    use super::*;
    use crate::{FinalizedEvent, NodeInfo};

    /// A backend for listing methods: registering never calls it.
    struct Unused;

    impl Backend for Unused {
        fn ledger(&self) -> &Ledger {
            unreachable!("registering methods reads no ledger")
        }
        fn submit(&self, _: Vec<SignedTransaction>) -> Vec<Result<TxHash, AdmitError>> {
            Vec::new()
        }
        fn rejected(&self, _: &'static str) {}
        fn pending(&self, _: &TxHash) -> Option<SignedTransaction> {
            None
        }
        fn info(&self) -> NodeInfo {
            NodeInfo::default()
        }
        fn subscribe(&self) -> broadcast::Receiver<FinalizedEvent> {
            broadcast::channel(1).1
        }
        fn admissions(&self) -> watch::Receiver<u64> {
            watch::channel(0).1
        }
    }

    #[test]
    fn discover_lists_exactly_the_registered_methods() {
        let m = module(Arc::new(Unused), RpcConfig::default());
        let registered: BTreeSet<&str> = m.method_names().collect();
        let documented: BTreeSet<&str> = openrpc::method_names().into_iter().collect();
        assert_eq!(
            openrpc::method_names().len(),
            documented.len(),
            "a method is documented twice"
        );
        let undocumented: Vec<_> = registered.difference(&documented).collect();
        let unregistered: Vec<_> = documented.difference(&registered).collect();
        assert!(
            undocumented.is_empty() && unregistered.is_empty(),
            "registered but not in rpc.discover: {undocumented:?}; in rpc.discover but not registered: {unregistered:?}"
        );
        // The subscriptions' unsubscribe methods are among them.
        for name in [
            "chain_unsubscribeFinalized",
            "tx_unsubscribeStatus",
            "tx_sendBatch",
        ] {
            assert!(documented.contains(name), "{name}");
        }
    }

    const TYPES: [&str; 7] = [
        "null", "boolean", "object", "array", "number", "string", "integer",
    ];
    const KEYWORDS: [&str; 12] = [
        "type",
        "properties",
        "required",
        "items",
        "oneOf",
        "enum",
        "pattern",
        "minimum",
        "description",
        "$ref",
        "additionalProperties",
        "const",
    ];

    /// Checks that `s` is a JSON Schema made of the keywords the document
    /// uses, with valid types and `$ref`s that resolve; returns the errors.
    fn check_schema(s: &Value, at: &str, schemas: &Value, errors: &mut Vec<String>) {
        let Some(obj) = s.as_object() else {
            errors.push(format!("{at}: a schema must be an object, not {s}"));
            return;
        };
        for (k, v) in obj {
            let at = format!("{at}.{k}");
            match k.as_str() {
                "type" => {
                    if !v.as_str().is_some_and(|t| TYPES.contains(&t)) {
                        errors.push(format!("{at}: {v} is not a JSON Schema type"));
                    }
                }
                "properties" => match v.as_object() {
                    Some(props) => {
                        for (name, p) in props {
                            check_schema(p, &format!("{at}.{name}"), schemas, errors);
                        }
                    }
                    None => errors.push(format!("{at}: not an object")),
                },
                "required" => {
                    let props = obj.get("properties").and_then(Value::as_object);
                    for name in v.as_array().into_iter().flatten() {
                        let known = name
                            .as_str()
                            .is_some_and(|n| props.is_some_and(|p| p.contains_key(n)));
                        if !known {
                            errors.push(format!("{at}: {name} is not a property"));
                        }
                    }
                }
                "items" | "additionalProperties" => check_schema(v, &at, schemas, errors),
                "oneOf" => match v.as_array() {
                    Some(alts) if alts.len() >= 2 => {
                        for (i, alt) in alts.iter().enumerate() {
                            check_schema(alt, &format!("{at}[{i}]"), schemas, errors);
                        }
                    }
                    _ => errors.push(format!("{at}: needs two or more schemas")),
                },
                "enum" => {
                    if v.as_array().is_none_or(|a| a.is_empty()) {
                        errors.push(format!("{at}: not a non-empty array"));
                    }
                }
                "$ref" => {
                    let target = v
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/components/schemas/"));
                    if target.is_none_or(|t| schemas.get(t).is_none()) {
                        errors.push(format!("{at}: {v} does not resolve"));
                    }
                }
                "pattern" | "description" => {
                    if !v.is_string() {
                        errors.push(format!("{at}: not a string"));
                    }
                }
                "minimum" => {
                    if !v.is_number() {
                        errors.push(format!("{at}: not a number"));
                    }
                }
                other if KEYWORDS.contains(&other) => {}
                other => errors.push(format!("{at}: unknown keyword {other:?}")),
            }
        }
    }

    #[test]
    fn discover_is_an_openrpc_document_with_valid_schemas() {
        let doc = openrpc::document();
        assert_eq!(doc["openrpc"], "1.2.6");
        let schemas = &doc["components"]["schemas"];
        let mut errors = Vec::new();
        for (name, s) in schemas.as_object().expect("components.schemas") {
            check_schema(
                s,
                &format!("components.schemas.{name}"),
                schemas,
                &mut errors,
            );
        }
        for m in doc["methods"].as_array().expect("methods") {
            let name = m["name"].as_str().expect("a name");
            assert_eq!(m["paramStructure"], "by-position", "{name}");
            assert!(
                m["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{name}"
            );
            let mut optional_seen = false;
            for p in m["params"].as_array().expect("params") {
                let pname = p["name"].as_str().expect("a param name");
                let required = p["required"].as_bool().expect("required");
                // Positional: a required parameter never follows an optional one.
                assert!(!(required && optional_seen), "{name}.{pname}");
                optional_seen |= !required;
                check_schema(
                    &p["schema"],
                    &format!("{name}.{pname}"),
                    schemas,
                    &mut errors,
                );
            }
            assert_eq!(m["result"]["name"], "result", "{name}");
            check_schema(
                &m["result"]["schema"],
                &format!("{name}.result"),
                schemas,
                &mut errors,
            );
            if let Some(n) = m.get("x-notification") {
                check_schema(
                    &n["result"]["schema"],
                    &format!("{name}.notification"),
                    schemas,
                    &mut errors,
                );
            }
        }
        assert!(errors.is_empty(), "{}", errors.join("\n"));
        // The old pseudo-types are gone.
        let text = doc.to_string();
        assert!(!text.contains("integer|string") && !text.contains("\"[string]\""));
    }

    #[test]
    fn the_schema_check_catches_bad_schemas() {
        let schemas = json!({"Hash": {"type": "string"}});
        for (bad, why) in [
            (json!({"type": "integer|string"}), "pseudo-type"),
            (json!({"type": "[string]"}), "pseudo-type"),
            (json!({"$ref": "#/components/schemas/Nope"}), "dangling ref"),
            (json!({"oneOf": [{"type": "integer"}]}), "one alternative"),
            (
                json!({"type": "object", "properties": {}, "required": ["x"]}),
                "unknown required",
            ),
            (json!({"typo": 1}), "unknown keyword"),
        ] {
            let mut errors = Vec::new();
            check_schema(&bad, "t", &schemas, &mut errors);
            assert!(!errors.is_empty(), "{why}: {bad} passed");
        }
        let mut errors = Vec::new();
        check_schema(
            &json!({"oneOf": [{"$ref": "#/components/schemas/Hash"}, {"type": "null"}]}),
            "t",
            &schemas,
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
    }
}
