//! `sou wallet`: a wallet that talks to a node only through JSON-RPC.
//! Addresses and amounts are checked before anything is sent.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Subcommand;
use jsonrpsee::rpc_params;

use crate::client::{call, client};
use serde_json::{json, Value};
use sou_genesis::KeyFile;
use sou_types::{Address, Amount, ChainId, Memo, Payload, Symbol, Transaction};

#[derive(Subcommand, Debug)]
pub enum WalletCommand {
    /// Sign and send a transfer, then wait for it to be final.
    Transfer {
        /// Key file of the sender.
        #[arg(long)]
        key: PathBuf,
        /// Recipient address (sou1...).
        #[arg(long)]
        to: String,
        /// Amount in whole units, such as 1.25.
        #[arg(long)]
        amount: String,
        #[arg(long, default_value = "USDT")]
        asset: String,
        /// Up to 32 bytes of text (an invoice number, a device id).
        #[arg(long)]
        memo: Option<String>,
        /// Print the hash once the node admits it; do not wait.
        #[arg(long)]
        no_wait: bool,
        /// How long to wait for finality.
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
        #[arg(long)]
        json: bool,
    },
    /// Staking: become a validator, bond, unbond, withdraw, unjail. Signs,
    /// sends and waits for finality like `transfer`.
    Stake {
        /// Key file of the account that signs.
        #[arg(long)]
        key: PathBuf,
        #[command(subcommand)]
        action: StakeAction,
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
        #[arg(long)]
        json: bool,
    },
    /// Balances of an address.
    Balance {
        address: String,
        /// Only this asset.
        #[arg(long)]
        asset: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// A transaction and its receipt.
    Tx {
        hash: String,
        #[arg(long)]
        json: bool,
    },
    /// The transactions of an address, newest first.
    History {
        address: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum StakeAction {
    /// Register the signing account as a validator candidate; it enters
    /// the set at an epoch's end once enough stake is bonded to it.
    Register {
        /// Key file of the consensus key the validator will sign votes with.
        #[arg(long)]
        consensus_key: PathBuf,
        /// Commission on delegators' rewards, in basis points.
        #[arg(long, default_value_t = 500)]
        commission_bps: u16,
    },
    /// Bond native tokens (whole units, such as 10.5) to a validator.
    Bond {
        #[arg(long)]
        validator: String,
        #[arg(long)]
        amount: String,
    },
    /// Start unbonding native tokens from a validator.
    Unbond {
        #[arg(long)]
        validator: String,
        #[arg(long)]
        amount: String,
    },
    /// Withdraw matured unbonding entries held with a validator.
    Withdraw {
        #[arg(long)]
        validator: String,
    },
    /// Ask to return to the set after a downtime jail ends.
    Unjail,
}

impl StakeAction {
    fn payload(self) -> Result<Payload> {
        let native = |a: &str| Amount::from_decimal(a, sou_genesis::spec::NATIVE_DECIMALS);
        Ok(match self {
            StakeAction::Register {
                consensus_key,
                commission_bps,
            } => Payload::RegisterValidator {
                consensus_key: KeyFile::read(&consensus_key)?.public(),
                commission_bps,
            },
            StakeAction::Bond { validator, amount } => Payload::Bond {
                validator: validator.parse()?,
                amount: native(&amount)?,
            },
            StakeAction::Unbond { validator, amount } => Payload::Unbond {
                validator: validator.parse()?,
                amount: native(&amount)?,
            },
            StakeAction::Withdraw { validator } => Payload::Withdraw {
                validator: validator.parse()?,
            },
            StakeAction::Unjail => Payload::Unjail,
        })
    }
}

/// Signs `payload` with `key`'s next nonce and the chain's fee and expiry,
/// as the node reports them.
async fn sign(
    c: &jsonrpsee::http_client::HttpClient,
    key: &sou_types::Keypair,
    payload: Payload,
) -> Result<sou_types::SignedTransaction> {
    let params = call(c, "chain_getParams", rpc_params![]).await?;
    let account = call(c, "account_get", rpc_params![key.address().to_string()]).await?;
    let status = call(c, "node_status", rpc_params![]).await?;
    let chain_id = ChainId::new(params["chainId"].as_str().unwrap_or_default())?;
    let fee: Amount = params["txFee"].as_str().unwrap_or("0").parse()?;
    let lifetime = params["maxTxLifetimeBlocks"]
        .as_u64()
        .unwrap_or(100)
        .min(1_000);
    let height = status["latestHeight"].as_u64().unwrap_or(0);
    let nonce = account["nonce"].as_u64().unwrap_or(0);
    Ok(Transaction {
        chain_id,
        sender: key.address(),
        nonce,
        max_fee: fee,
        expiry_height: height + lifetime,
        payload,
    }
    .sign(key))
}

/// Sends `tx`, waits for its receipt, prints it; fails if the transaction
/// (a `what`) failed.
async fn send_and_wait(
    c: &jsonrpsee::http_client::HttpClient,
    tx: &sou_types::SignedTransaction,
    timeout_ms: u64,
    json_out: bool,
    what: &str,
) -> Result<()> {
    let hash = tx.hash();
    let raw = format!("0x{}", hex::encode(tx.encode()));
    let start = Instant::now();
    let receipt = call(c, "tx_sendAndWait", rpc_params![raw, timeout_ms]).await?;
    let ms = start.elapsed().as_millis();
    let v = json!({
        "hash": hash,
        "blockHeight": receipt["blockHeight"],
        "status": receipt["status"],
        "reason": receipt["reason"],
        "fee": receipt["fee"],
        "finalityMs": ms,
    });
    print(json_out, &v, || {
        let mut s = format!(
            "{hash}\nfinalized in block {} after {ms} ms: {}",
            receipt["blockHeight"],
            receipt["status"].as_str().unwrap_or("?")
        );
        if let Some(r) = receipt["reason"].as_str() {
            s.push_str(&format!(" ({r})"));
        }
        s
    });
    if receipt["status"] != "success" {
        bail!("the {what} failed: {}", receipt["reason"]);
    }
    Ok(())
}

fn print(json_out: bool, v: &Value, text: impl FnOnce() -> String) {
    if json_out {
        println!("{v}");
    } else {
        println!("{}", text());
    }
}

pub async fn run(rpc: &str, cmd: WalletCommand) -> Result<()> {
    match cmd {
        WalletCommand::Transfer {
            key,
            to,
            amount,
            asset,
            memo,
            no_wait,
            timeout_ms,
            json: json_out,
        } => {
            // Everything that can be checked locally, before any request.
            let to: Address = to.parse()?;
            let asset: Symbol = asset.parse()?;
            let memo = Memo::new(memo.unwrap_or_default().into_bytes())?;
            let key = KeyFile::read(&key)?;
            let c = client(rpc)?;
            let info = call(&c, "asset_get", rpc_params![asset.to_string()]).await?;
            if info.is_null() {
                bail!("the chain has no asset {asset}");
            }
            let decimals = info["decimals"]
                .as_u64()
                .and_then(|d| u8::try_from(d).ok())
                .unwrap_or(0);
            let amount = Amount::from_decimal(&amount, decimals)?;
            let payload = Payload::Transfer {
                asset,
                to,
                amount,
                memo,
            };
            let tx = sign(&c, &key, payload).await?;
            let hash = tx.hash();
            let raw = format!("0x{}", hex::encode(tx.encode()));
            if no_wait {
                let got = call(&c, "tx_send", rpc_params![raw]).await?;
                let v = json!({"hash": got});
                print(json_out, &v, || format!("{hash}"));
                return Ok(());
            }
            send_and_wait(&c, &tx, timeout_ms, json_out, "transfer").await
        }
        WalletCommand::Stake {
            key,
            action,
            timeout_ms,
            json: json_out,
        } => {
            let payload = action.payload()?;
            let key = KeyFile::read(&key)?;
            let c = client(rpc)?;
            let tx = sign(&c, &key, payload).await?;
            send_and_wait(&c, &tx, timeout_ms, json_out, "transaction").await
        }
        WalletCommand::Balance {
            address,
            asset,
            json: json_out,
        } => {
            let address: Address = address.parse()?;
            let c = client(rpc)?;
            let v = match asset {
                Some(a) => {
                    let a: Symbol = a.parse()?;
                    call(
                        &c,
                        "account_getBalance",
                        rpc_params![address.to_string(), a.to_string()],
                    )
                    .await?
                }
                None => call(&c, "account_get", rpc_params![address.to_string()]).await?
                    ["balances"]
                    .clone(),
            };
            print(json_out, &v, || {
                let rows: Vec<Value> = if v.is_array() {
                    v.as_array().cloned().unwrap_or_default()
                } else {
                    vec![v.clone()]
                };
                let lines: Vec<String> = rows
                    .iter()
                    .map(|b| {
                        format!(
                            "{} {}",
                            b["display"].as_str().unwrap_or("0"),
                            b["asset"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                if lines.is_empty() {
                    "no balances".into()
                } else {
                    lines.join("\n")
                }
            });
            Ok(())
        }
        WalletCommand::Tx {
            hash,
            json: json_out,
        } => {
            let hash: sou_types::Hash = hash.parse()?;
            let c = client(rpc)?;
            let v = call(&c, "tx_get", rpc_params![hash.to_string()]).await?;
            if v.is_null() {
                bail!("no transaction {hash} is known to the node");
            }
            print(json_out, &v, || {
                serde_json::to_string_pretty(&v).unwrap_or_default()
            });
            Ok(())
        }
        WalletCommand::History {
            address,
            limit,
            json: json_out,
        } => {
            let address: Address = address.parse()?;
            let c = client(rpc)?;
            let v = call(
                &c,
                "account_getTransactions",
                rpc_params![address.to_string(), Value::Null, limit],
            )
            .await?;
            print(json_out, &v, || {
                v.as_array()
                    .map(|rows| {
                        rows.iter()
                            .map(|t| {
                                format!(
                                    "{} block {} {} {}",
                                    t["hash"].as_str().unwrap_or(""),
                                    t["blockHeight"],
                                    t["kind"].as_str().unwrap_or(""),
                                    t["receipt"]["status"].as_str().unwrap_or("")
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default()
            });
            Ok(())
        }
    }
}
