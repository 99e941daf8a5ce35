//! JSON views of Sou's types, with the camelCase field names wallets and
//! explorers expect. Amounts are decimal strings of base units (JSON numbers
//! lose precision above 2^53).

use serde_json::{json, Value};
use sou_ledger::state::{Account, AssetInfo};
use sou_ledger::{Receipt, TxStatus};
use sou_types::{Block, BlockHeader, Payload, SignedTransaction};

pub fn header(h: &BlockHeader, tx_count: usize) -> Value {
    json!({
        "height": h.height,
        "hash": h.hash(),
        "parentHash": h.parent,
        "proposer": h.proposer,
        "timestampMs": h.timestamp_ms,
        "txRoot": h.tx_root,
        "stateRoot": h.state_root,
        "evidenceRoot": h.evidence_root,
        "chainId": h.chain_id,
        "txCount": tx_count,
    })
}

/// A block with its transactions in full.
pub fn block(b: &Block) -> Value {
    let mut v = header(&b.header, b.transactions.len());
    v["transactions"] = b
        .transactions
        .iter()
        .map(|t| transaction(t, None))
        .collect();
    v["evidence"] = evidence(&b.evidence);
    v
}

/// [`block`] with its transactions' hashes only, from the stored summary.
pub fn block_summary(b: &sou_ledger::BlockSummary) -> Value {
    let mut v = header(&b.header, b.tx_hashes.len());
    v["transactions"] = b.tx_hashes.iter().map(|h| json!(h)).collect();
    v["evidence"] = evidence(&b.evidence);
    v
}

fn evidence(evidence: &[sou_types::Misbehaviour]) -> Value {
    evidence
        .iter()
        .map(|e| json!({"epoch": e.epoch, "offender": e.offender, "id": e.id}))
        .collect()
}

pub fn payload(p: &Payload) -> Value {
    let memo = |m: &sou_types::Memo| {
        if m.is_empty() {
            Value::Null
        } else {
            json!(format!("0x{}", hex::encode(m.as_bytes())))
        }
    };
    match p {
        Payload::Transfer {
            asset,
            to,
            amount,
            memo: m,
        } => {
            json!({"asset": asset, "to": to, "amount": amount, "memo": memo(m)})
        }
        Payload::BatchTransfer {
            asset,
            payouts,
            memo: m,
        } => json!({
            "asset": asset,
            "payouts": payouts.as_slice().iter().map(|p| json!({"to": p.to, "amount": p.amount})).collect::<Vec<_>>(),
            "memo": memo(m),
        }),
        Payload::Mint { asset, to, amount } => json!({"asset": asset, "to": to, "amount": amount}),
        Payload::Burn { asset, amount } => json!({"asset": asset, "amount": amount}),
        Payload::ConfigureMinter {
            asset,
            minter,
            allowance,
        } => {
            json!({"asset": asset, "minter": minter, "allowance": allowance})
        }
        Payload::RemoveMinter { asset, minter } => json!({"asset": asset, "minter": minter}),
        Payload::Freeze { asset, address }
        | Payload::Unfreeze { asset, address }
        | Payload::Seize { asset, address } => json!({"asset": asset, "address": address}),
        Payload::Pause { asset } | Payload::Unpause { asset } => json!({"asset": asset}),
        Payload::RegisterValidator {
            consensus_key,
            commission_bps,
        } => {
            json!({"consensusKey": consensus_key, "commissionBps": commission_bps})
        }
        Payload::Bond { validator, amount } | Payload::Unbond { validator, amount } => {
            json!({"validator": validator, "amount": amount})
        }
        Payload::Withdraw { validator } | Payload::ClaimRewards { validator } => {
            json!({"validator": validator})
        }
        Payload::Unjail => json!({}),
    }
}

pub fn transaction(t: &SignedTransaction, location: Option<(u64, u32)>) -> Value {
    let tx = &t.tx;
    let mut v = json!({
        "hash": t.hash(),
        "chainId": tx.chain_id,
        "sender": tx.sender,
        "nonce": tx.nonce,
        "maxFee": tx.max_fee,
        "expiryHeight": tx.expiry_height,
        "kind": tx.payload.kind(),
        "payload": payload(&tx.payload),
        "signature": t.signature,
    });
    if let Some((height, index)) = location {
        v["blockHeight"] = json!(height);
        v["index"] = json!(index);
    }
    v
}

pub fn receipt(r: &Receipt) -> Value {
    let (status, reason) = match &r.status {
        TxStatus::Success => ("success", Value::Null),
        TxStatus::Failed { reason } => ("failed", json!(reason)),
    };
    json!({
        "txHash": r.tx_hash,
        "blockHeight": r.height,
        "index": r.index,
        "fee": r.fee,
        "status": status,
        "reason": reason,
    })
}

pub fn asset(a: &AssetInfo) -> Value {
    json!({
        "symbol": a.symbol,
        "name": a.name,
        "decimals": a.decimals,
        "supply": a.supply,
        "paused": a.paused,
        "issuer": a.roles.issuer,
        "masterMinter": a.roles.master_minter,
        "pauser": a.roles.pauser,
        "freezer": a.roles.freezer,
        "minters": a.minters.iter().map(|(m, allowance)| json!({"address": m, "allowance": allowance})).collect::<Vec<_>>(),
    })
}

pub fn balances(acc: &Account, decimals: impl Fn(&sou_types::Symbol) -> u8) -> Value {
    acc.balances
        .iter()
        .map(|(s, a)| {
            let d = decimals(s);
            json!({"asset": s, "symbol": s, "amount": a, "decimals": d, "display": a.to_decimal(d)})
        })
        .collect()
}
